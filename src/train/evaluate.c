/*
 * evaluate.c - the model of a run and its evaluation over a folder split.
 */
#include "vitrain/trainer.h"

#include "vitrain/ops.h"
#include "vitrain/train.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

VtCode vit_config_from_run(VitConfig *vc, const RunConfig *cfg, int img_size, VtError *err)
{
    memset(vc, 0, sizeof *vc);
    config_model_sizes(cfg, &vc->dim, &vc->depth, &vc->heads, &vc->mlp_dim);
    vc->img_size = img_size;
    vc->channels = cfg->data.channels;
    vc->patch_size = cfg->model.patch_size;
    vc->num_classes = cfg->model.num_classes;
    vc->layer_scale_init = cfg->model.layer_scale;
    vc->drop_path = cfg->model.drop_path;
    vc->recompute_attention = cfg->train.recompute_attention;
    vc->pool = strcmp(cfg->model.pool, "avg") == 0 ? POOL_MEAN : POOL_CLS;
    vc->train_img_size = cfg->data.img_size;
    const PeSection *p = &cfg->pe;
    vc->pe = pe_options(p->type);
    vc->pe.theta = p->theta;
    vc->pe.block_size = p->block_size;
    vc->pe.init_std = p->init_std;
    vc->pe.sigma = p->sigma;
    vc->pe.learned = p->learned;
    vc->pe.share_layers = p->share_layers;
    vc->pe.share_heads = p->share_heads;
    return vit_config_validate(vc, err);
}

LoaderOptions loader_options_from_run(const RunConfig *cfg, int img_size, bool train,
                                      int64_t start_step)
{
    const DataSection *d = &cfg->data;
    LoaderOptions o = {
        .batch_size = cfg->train.batch_size, .img_size = img_size, .train = train,
        .seed = (uint64_t)cfg->train.seed, .start_step = start_step,
        .random_resized_crop = d->random_resized_crop, .pad = d->pad, .hflip = d->hflip,
        .crop_pct = d->crop_pct, .prefetch = d->prefetch,
    };
    memcpy(o.scale, d->scale, sizeof o.scale);
    memcpy(o.ratio, d->ratio, sizeof o.ratio);
    memcpy(o.mean, d->mean, sizeof o.mean);
    memcpy(o.std, d->std, sizeof o.std);
    if (train)
        o.mixup = (MixupOptions){.mixup_alpha = cfg->train.mixup, .cutmix_alpha = cfg->train.cutmix,
                                 .prob = cfg->train.mixup_prob,
                                 .switch_prob = cfg->train.mixup_switch_prob};
    return o;
}

/* Adds the images whose label ranks first, and among the first min(5, K). */
static void count_hits(const float *logits /* (B, K) */, const int *labels /* (B) */, int B,
                       int K, int64_t *top1, int64_t *topk)
{
    const int top_k = K < 5 ? K : 5;
    for (int i = 0; i < B; i++) {
        int rank = label_rank(logits + (int64_t)i * K, labels[i], K);
        *top1 += rank == 0;
        *topk += rank < top_k;
    }
}

/* A CSV field in double quotes, inner quotes doubled (RFC 4180). */
static int put_quoted(FILE *out, const char *text)
{
    if (fputc('"', out) == EOF)
        return -1;
    for (const char *c = text; *c; c++)
        if ((*c == '"' && fputc('"', out) == EOF) || fputc(*c, out) == EOF)
            return -1;
    return fputc('"', out) == EOF ? -1 : 0;
}

static VtCode dump_rows(FILE *dump, const Batch *b, const Dataset *ds, const float *logits, int K,
                        VtError *err)
{
    for (int i = 0; i < b->size; i++) {
        int rc = put_quoted(dump, ds->paths[b->indices[i]]);
        if (rc >= 0)
            rc = fprintf(dump, ",%d", b->labels[i]);
        for (int k = 0; rc >= 0 && k < K; k++)
            rc = fprintf(dump, ",%.9g", (double)logits[(int64_t)i * K + k]);
        if (rc < 0 || fputc('\n', dump) == EOF)
            return vt_fail(err, VT_ERR_IO, "cannot write the logits: %s", strerror(errno));
    }
    return VT_OK;
}

VtCode evaluate(Vit *m, Loader *ld, const Dataset *ds, const EvalOptions *opts,
                EvalResult *result, VtError *err)
{
    const EvalOptions none = {0};
    opts = opts ? opts : &none;
    FILE *dump = opts->dump;
    const VitConfig *c = &m->cfg;
    const int K = c->num_classes;
    float *scratch = opts->patch_order
                         ? vt_xmalloc((size_t)c->channels * c->img_size * c->img_size *
                                      sizeof(float))
                         : NULL;
    VtCode code = VT_OK;
    const VitPass pass = {.train = false};
    double loss_sum = 0.0;
    int64_t top1 = 0, topk = 0, count = 0;
    Batch b;
    while (!code && loader_next(ld, &b)) {
        /* The batch is the caller's until the next loader_next: shuffled in place. */
        if (opts->patch_order)
            patch_shuffle(b.images, scratch, b.size, c->channels, c->img_size, c->patch_size,
                          opts->patch_order);
        double loss = vit_forward_loss(m, b.images, b.labels, b.size, &pass);
        if (!isfinite(loss)) {
            code = vt_fail(err, VT_ERR_NUMERIC, "the evaluation loss is %g (batch %lld)", loss,
                           (long long)b.step);
            break;
        }
        loss_sum += loss * b.size;
        count_hits(m->logits, b.labels, b.size, K, &top1, &topk);
        count += b.size;
        if (dump)
            code = dump_rows(dump, &b, ds, m->logits, K, err);
    }
    free(scratch);
    if (code)
        return code;
    result->img_size = m->cfg.img_size;
    result->count = (int)count;
    result->loss_sum = loss_sum;
    result->top1_hits = top1;
    result->top5_hits = topk;
    evaluate_finish(result);
    return VT_OK;
}

void evaluate_finish(EvalResult *r)
{
    const double n = r->count;
    r->loss = r->count ? r->loss_sum / n : NAN;
    r->top1 = r->count ? 100.0 * (double)r->top1_hits / n : NAN;
    r->top5 = r->count ? 100.0 * (double)r->top5_hits / n : NAN;
}
