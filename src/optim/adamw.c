/*
 * adamw.c - AdamW (Loshchilov & Hutter) with decoupled weight decay, as
 * torch.optim.AdamW: p -= lr*wd*p, then the Adam update with bias correction.
 *
 * LAMB (You et al. 2020, as timm's Lamb) keeps the same moments: the
 * update u = m_hat / (sqrt(v_hat) + eps) + wd p of a tensor is scaled by
 * its trust ratio ||p|| / ||u|| (1 where either norm is 0), p -= lr r u, so
 * that each tensor moves by lr times its own norm. Like timm, tensors
 * without weight decay (biases, norms, positional parameters) skip the
 * ratio and take the plain Adam step.
 */
#include "vitrain/optim.h"
#include "vitrain/profile.h"

#include <math.h>
#include <stdlib.h>

/* Fixed chunk for the norm's partial sums: independent of the thread count. */
enum { NORM_CHUNK = 8192 };

AdamWConfig adamw_defaults(void)
{
    return (AdamWConfig){.beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f, .weight_decay = 0.05f,
                         .clip_grad = 0.0f};
}

void adamw_create(AdamW *opt, const TensorList *params, const AdamWConfig *cfg)
{
    opt->cfg = *cfg;
    opt->t = 0;
    arena_create(&opt->m, params);
    arena_create(&opt->v, params);
    opt->chunks = ((int64_t)params->total + NORM_CHUNK - 1) / NORM_CHUNK;
    /* Two sums per chunk: LAMB's ||p|| and ||u|| of a tensor. */
    opt->partials = vt_xcalloc(2 * (size_t)VT_MAX(opt->chunks, 1), sizeof(double));
}

void adamw_free(AdamW *opt)
{
    arena_free(&opt->m);
    arena_free(&opt->v);
    free(opt->partials);
    opt->partials = NULL;
}

double grad_global_norm(AdamW *opt, const Arena *grads)
{
    const int64_t total = (int64_t)grads->list->total;
    VT_ASSERT(grads->list->total == opt->m.list->total);
    prof_push(PROF_OPTIMIZER);
    /* Padding between tensors is never written and stays zero, so the whole
     * arena can be summed in flat chunks. */
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < opt->chunks; c++) {
        int64_t end = VT_MIN((c + 1) * NORM_CHUNK, total);
        double sum = 0.0;
        for (int64_t i = c * NORM_CHUNK; i < end; i++)
            sum += (double)grads->data[i] * grads->data[i];
        opt->partials[c] = sum;
    }
    double total_sq = 0.0;
    for (int64_t c = 0; c < opt->chunks; c++)
        total_sq += opt->partials[c];
    prof_pop();
    return sqrt(total_sq);
}

static void adamw_update_tensor(float *p, const float *g, float *m, float *v, size_t n, float lr,
                                float wd, float grad_scale, const AdamWConfig *c, float step,
                                float inv_sqrt_bias2)
{
#pragma omp parallel for schedule(static)
    for (size_t i = 0; i < n; i++) {
        float gi = g[i] * grad_scale;
        p[i] -= lr * wd * p[i];
        m[i] = c->beta1 * m[i] + (1.0f - c->beta1) * gi;
        v[i] = c->beta2 * v[i] + (1.0f - c->beta2) * gi * gi;
        p[i] -= step * m[i] / (sqrtf(v[i]) * inv_sqrt_bias2 + c->eps);
    }
}

/* The constants of one step that every element shares. */
typedef struct StepScale {
    float lr, wd, grad_scale, bias1, inv_sqrt_bias2;
} StepScale;

/* LAMB's update u of one element, from its new moments. */
static inline float lamb_update(float p, float m, float v, const StepScale *k,
                                const AdamWConfig *c)
{
    return m / k->bias1 / (sqrtf(v) * k->inv_sqrt_bias2 + c->eps) + k->wd * p;
}

/* LAMB's step of one tensor: the moments, then ||p|| and ||u|| summed in
 * fixed chunks combined in order (the same for any thread count), then p
 * -= lr r u with u formed again from the new moments. */
static void lamb_update_tensor(float *p, const float *g, float *m, float *v, int64_t n,
                               const StepScale *k, const AdamWConfig *c, double *partials)
{
    const int64_t chunks = (n + NORM_CHUNK - 1) / NORM_CHUNK;
#pragma omp parallel for schedule(static)
    for (int64_t ch = 0; ch < chunks; ch++) {
        double pp = 0.0, uu = 0.0;
        for (int64_t i = ch * NORM_CHUNK; i < VT_MIN(n, (ch + 1) * NORM_CHUNK); i++) {
            const float gi = g[i] * k->grad_scale;
            m[i] = c->beta1 * m[i] + (1.0f - c->beta1) * gi;
            v[i] = c->beta2 * v[i] + (1.0f - c->beta2) * gi * gi;
            const float u = lamb_update(p[i], m[i], v[i], k, c);
            pp += (double)p[i] * p[i];
            uu += (double)u * u;
        }
        partials[2 * ch] = pp;
        partials[2 * ch + 1] = uu;
    }
    double pp = 0.0, uu = 0.0;
    for (int64_t ch = 0; ch < chunks; ch++) {
        pp += partials[2 * ch];
        uu += partials[2 * ch + 1];
    }
    const float ratio = pp > 0.0 && uu > 0.0 ? (float)sqrt(pp / uu) : 1.0f;
    const float step = k->lr * ratio;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        p[i] -= step * lamb_update(p[i], m[i], v[i], k, c);
}

double adamw_step(AdamW *opt, Arena *params, Arena *grads, float lr)
{
    double norm = grad_global_norm(opt, grads);
    adamw_apply(opt, params, grads, lr, norm);
    return norm;
}

int arena_first_non_finite(const Arena *arena)
{
    const TensorList *list = arena->list;
    for (int t = 0; t < list->count; t++) {
        const float *x = arena->data + list->specs[t].offset;
        for (size_t i = 0; i < list->specs[t].numel; i++)
            if (!isfinite(x[i]))
                return t;
    }
    return -1;
}

void adamw_apply(AdamW *opt, Arena *params, Arena *grads, float lr, double norm)
{
    const AdamWConfig *c = &opt->cfg;
    /* torch.nn.utils.clip_grad_norm_: scale by max_norm / (norm + 1e-6) when above. */
    float grad_scale = 1.0f;
    if (c->clip_grad > 0.0f && norm > c->clip_grad)
        grad_scale = (float)(c->clip_grad / (norm + 1e-6));
    opt->t++;
    /* In double, as torch does: 1 - beta2^t cancels badly in fp32 for small t. */
    const double bias1 = 1.0 - pow((double)c->beta1, (double)opt->t);
    const double bias2 = 1.0 - pow((double)c->beta2, (double)opt->t);
    const float step = (float)(lr / bias1), inv_sqrt_bias2 = (float)(1.0 / sqrt(bias2));
    const TensorList *list = params->list;
    prof_push(PROF_OPTIMIZER);
    for (int i = 0; i < list->count; i++) {
        const TensorSpec *s = &list->specs[i];
        float wd = (s->flags & VT_TENSOR_NO_DECAY) ? 0.0f : c->weight_decay;
        float *p = params->data + s->offset, *m = opt->m.data + s->offset,
              *v = opt->v.data + s->offset;
        const float *g = grads->data + s->offset;
        if (c->lamb && wd > 0.0f) {
            const StepScale k = {.lr = lr, .wd = wd, .grad_scale = grad_scale,
                                 .bias1 = (float)bias1, .inv_sqrt_bias2 = inv_sqrt_bias2};
            lamb_update_tensor(p, g, m, v, (int64_t)s->numel, &k, c, opt->partials);
        } else {
            adamw_update_tensor(p, g, m, v, s->numel, lr, wd, grad_scale, c, step,
                                inv_sqrt_bias2);
        }
    }
    prof_pop();
}
