/*
 * mixup.c - mixup (Zhang et al. 2018) and CutMix (Yun et al. 2019) on
 * training batches, as timm's Mixup in mode "batch": one lambda per batch,
 * CutMix's box from rand_bbox with lambda corrected to its area. timm pairs
 * each sample with the reversed batch; here neighbours pair (the batch is
 * in random order either way), which keeps each pair on one rank of a
 * data-parallel run.
 */
#include "vitrain/data.h"
#include "vitrain/rng.h"

#include <math.h>
#include <string.h>

MixDraw mixup_draw(const MixupOptions *o, uint64_t seed, int64_t step, int S)
{
    MixDraw d = {.lambda = 1.0f};
    const bool mixup = o->mixup_alpha > 0.0f, cutmix = o->cutmix_alpha > 0.0f;
    if (!mixup && !cutmix)
        return d;
    Rng rng = rng_stream(seed, RNG_MIXUP, (uint64_t)step, 0);
    if (rng_uniform_double(&rng) >= o->prob)
        return d;
    d.cutmix = cutmix && (!mixup || rng_uniform_double(&rng) < o->switch_prob);
    const double lambda = rng_beta_symmetric(&rng, d.cutmix ? o->cutmix_alpha : o->mixup_alpha);
    if (!d.cutmix) {
        d.lambda = (float)lambda;
        return d;
    }
    /* timm's rand_bbox: a box of sides S sqrt(1 - lambda) around a uniform
     * centre, cut at the border; then lambda = 1 - its area share. */
    const int cut = (int)(S * sqrt(1.0 - lambda));
    const int cy = (int)rng_below(&rng, (uint32_t)S), cx = (int)rng_below(&rng, (uint32_t)S);
    d.y0 = cy - cut / 2 < 0 ? 0 : cy - cut / 2;
    d.y1 = cy + cut / 2 > S ? S : cy + cut / 2;
    d.x0 = cx - cut / 2 < 0 ? 0 : cx - cut / 2;
    d.x1 = cx + cut / 2 > S ? S : cx + cut / 2;
    d.lambda = 1.0f - (float)((d.y1 - d.y0) * (d.x1 - d.x0)) / (float)(S * S);
    return d;
}

/* a, b <- lambda a + (1 - lambda) b, lambda b + (1 - lambda) a. */
static void blend_pair(float *a, float *b, size_t n, float lambda)
{
    for (size_t i = 0; i < n; i++) {
        const float x = a[i], y = b[i];
        a[i] = lambda * x + (1.0f - lambda) * y;
        b[i] = lambda * y + (1.0f - lambda) * x;
    }
}

/* The box's pixels of every channel trade places between a and b. */
static void swap_box(float *a, float *b, const MixDraw *d, int C, int S)
{
    for (int c = 0; c < C; c++)
        for (int y = d->y0; y < d->y1; y++)
            for (int x = d->x0; x < d->x1; x++) {
                const size_t at = ((size_t)c * S + y) * S + x;
                const float t = a[at];
                a[at] = b[at];
                b[at] = t;
            }
}

void mixup_apply(const MixDraw *d, Batch *b, int C, int S)
{
    const size_t len = (size_t)C * S * S;
    b->mix_lambda = d->lambda;
    memcpy(b->mix_labels, b->labels, (size_t)b->size * sizeof(int));
    if (d->lambda >= 1.0f)
        return;
    for (int i = 0; i + 1 < b->size; i += 2) {
        float *x = b->images + (size_t)i * len, *y = x + len;
        if (d->cutmix)
            swap_box(x, y, d, C, S);
        else
            blend_pair(x, y, len, d->lambda);
        b->mix_labels[i] = b->labels[i + 1];
        b->mix_labels[i + 1] = b->labels[i];
    }
}
