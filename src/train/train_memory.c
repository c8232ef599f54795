/*
 * train_memory.c - the training loop over an in-memory data set (train.h).
 */
#include "vitrain/train.h"

#include "vitrain/rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

int label_rank(const float *logits, int label, int K)
{
    const float own = logits[label];
    if (isnan(own))
        return K;
    int rank = 0;
    for (int k = 0; k < K; k++) /* a NaN elsewhere ranks first, as in torch's argmax */
        rank += logits[k] > own || (logits[k] == own && k < label) || isnan(logits[k]);
    return rank;
}

int count_correct(const float *logits, const int *labels, int B, int K)
{
    int correct = 0;
    for (int b = 0; b < B; b++)
        correct += label_rank(logits + (int64_t)b * K, labels[b], K) == 0;
    return correct;
}

/* Copies the samples order[first .. first+B) into the batch buffers. */
static void gather_batch(float *images, int *labels, const MemoryDataset *data, const int *order,
                         int first, int B, size_t image_len)
{
    for (int i = 0; i < B; i++) {
        int s = order[first + i];
        memcpy(images + (size_t)i * image_len, data->images + (size_t)s * image_len,
               image_len * sizeof(float));
        labels[i] = data->labels[s];
    }
}

static void shuffle_epoch(int *order, int count, uint64_t seed, int64_t epoch)
{
    for (int i = 0; i < count; i++)
        order[i] = i;
    Rng rng = rng_stream(seed, RNG_DATA_ORDER, (uint64_t)epoch, 0);
    rng_shuffle(&rng, order, count);
}

VtCode train_in_memory(Vit *m, const MemoryDataset *data, const TrainOptions *opts,
                       StepCallback callback, void *user, VtError *err)
{
    const int B = opts->batch_size;
    if (B <= 0 || B > m->batch_cap)
        return vt_fail(err, VT_ERR_ARGUMENT, "batch size %d is outside 1..%d", B, m->batch_cap);
    if (data->count < B)
        return vt_fail(err, VT_ERR_ARGUMENT, "the data set has %d samples, fewer than one batch of %d",
                       data->count, B);
    const VitConfig *c = &m->cfg;
    const size_t image_len = (size_t)c->channels * c->img_size * c->img_size;
    const int batches_per_epoch = data->count / B;

    float *images = vt_xmalloc((size_t)B * image_len * sizeof(float));
    int *labels = vt_xmalloc((size_t)B * sizeof(int));
    int *order = vt_xmalloc((size_t)data->count * sizeof(int));
    AdamW opt;
    adamw_create(&opt, &m->param_list, &opts->optim);

    VtCode code = VT_OK;
    for (int64_t step = 0; step < opts->steps; step++) {
        const int64_t epoch = step / batches_per_epoch;
        const int batch_in_epoch = (int)(step % batches_per_epoch);
        if (batch_in_epoch == 0)
            shuffle_epoch(order, data->count, opts->seed, epoch);
        gather_batch(images, labels, data, order, batch_in_epoch * B, B, image_len);

        const VitPass pass = {.train = true, .step = step, .seed = opts->seed,
                              .smoothing = opts->smoothing};
        arena_zero(&m->grads);
        double loss = vit_forward_loss(m, images, labels, B, &pass);
        if (!isfinite(loss)) {
            code = vt_fail(err, VT_ERR_NUMERIC, "step %lld: the loss is %g",
                           (long long)step, loss);
            break;
        }
        vit_backward(m, labels, &pass);
        float lr = lr_at_step(&opts->schedule, step);
        double norm = grad_global_norm(&opt, &m->grads);
        if (!isfinite(norm)) {
            int t = arena_first_non_finite(&m->grads);
            code = vt_fail(err, VT_ERR_NUMERIC, "step %lld: the gradient of %s is not finite",
                           (long long)step, t >= 0 ? m->param_list.specs[t].name : "?");
            break;
        }
        adamw_apply(&opt, &m->params, &m->grads, lr, norm);
        StepStats stats = {.step = step, .epoch = epoch, .loss = loss, .grad_norm = norm,
                           .lr = lr, .batch = B,
                           .correct = count_correct(m->logits, labels, B, c->num_classes)};
        if (callback && !callback(&stats, user))
            break;
    }
    adamw_free(&opt);
    free(images);
    free(labels);
    free(order);
    return code;
}

void evaluate_in_memory(Vit *m, const MemoryDataset *data, double *loss, double *accuracy)
{
    const VitConfig *c = &m->cfg;
    const size_t image_len = (size_t)c->channels * c->img_size * c->img_size;
    const VitPass pass = {.train = false};
    double loss_sum = 0.0;
    int correct = 0;
    for (int first = 0; first < data->count; first += m->batch_cap) {
        int B = VT_MIN(m->batch_cap, data->count - first);
        loss_sum += B * vit_forward_loss(m, data->images + (size_t)first * image_len,
                                         data->labels + first, B, &pass);
        correct += count_correct(m->logits, data->labels + first, B, c->num_classes);
    }
    *loss = loss_sum / data->count;
    *accuracy = (double)correct / data->count;
}
