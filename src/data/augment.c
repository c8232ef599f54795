/*
 * augment.c - crop, resize, flip and normalize one cached image (see
 * augment.h, DESIGN §3).
 *
 * The geometry follows torchvision/timm so that recipes transfer:
 * RandomResizedCrop.get_params for the training crop, Resize + CenterCrop
 * with crop_pct for evaluation, RandomCrop(padding) with zero padding for
 * pad-and-crop, then RandomHorizontalFlip. Rounding uses nearbyint (ties to
 * even), like Python's round(). Crops are whole pixels; resampling is
 * PIL's antialiased bilinear (torchvision's default for PIL images), written
 * here because stb_image_resize 0.97 aborts on an assertion for some size
 * ratios (nothings/stb#1449). A crop that already has the output size is
 * copied, not resampled, so that identity transforms are exact.
 */
#include "augment.h"

#include "vitrain/common.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>


enum { RRC_ATTEMPTS = 10 };
static const int64_t MAX_RESIZED_PIXELS = (int64_t)1 << 28;

void augment_params_init(AugmentParams *p, int S, int C, bool train, bool rrc,
                         const float scale[2], const float ratio[2], int pad, float hflip,
                         float crop_pct, const float *mean, const float *std)
{
    VT_ASSERT(C >= 1 && C <= VT_MAX_CHANNELS);
    *p = (AugmentParams){.S = S, .C = C, .train = train, .rrc = rrc, .pad = pad, .hflip = hflip};
    memcpy(p->scale, scale, sizeof p->scale);
    memcpy(p->ratio, ratio, sizeof p->ratio);
    p->eval_side = augment_eval_side(S, crop_pct);
    for (int c = 0; c < C; c++)
        for (int x = 0; x < 256; x++)
            p->lut[c][x] = ((float)x / 255.0f - mean[c]) / std[c];
}

int augment_eval_side(int S, float crop_pct)
{
    /* 1e-6 relative is far above float's 6e-8 representation error and far
     * below the distance to the next integer for any sane S. */
    const double side = floor((double)S / (double)crop_pct * (1.0 + 1e-6));
    return side < (double)INT_MAX ? (int)side : INT_MAX; /* larger: undefined as an int */
}

bool augment_resized_dims(int *rh, int *rw, int h, int w, int side)
{
    VT_ASSERT(h > 0 && w > 0 && side > 0);
    const int64_t s = side;
    int64_t oh = s, ow = s;
    if (h < w)
        ow = s * w / h;
    else if (w < h)
        oh = s * h / w;
    if (oh > MAX_RESIZED_PIXELS || ow > MAX_RESIZED_PIXELS || oh * ow > MAX_RESIZED_PIXELS)
        return false;
    *rh = (int)oh;
    *rw = (int)ow;
    return true;
}

/* One axis of a resampling: output i reads count[i] inputs from first[i]
 * with weights w[i * K ...]. */
typedef struct Taps {
    int K;
    int *first, *count;
    float *w;
} Taps;

static double tent(double t)
{
    t = fabs(t);
    return t < 1.0 ? 1.0 - t : 0.0;
}

/* PIL's antialiased bilinear weights for n inputs to m outputs: a tent as
 * wide as one output pixel when shrinking (one input pixel when
 * enlarging), centred on the output pixel's centre, cut at the edges and
 * renormalized. */
static bool taps_init(Taps *t, int n, int m)
{
    const double scale = (double)n / m, fs = scale > 1.0 ? scale : 1.0;
    t->K = (int)ceil(2.0 * fs) + 2;
    t->first = malloc((size_t)m * sizeof *t->first);
    t->count = malloc((size_t)m * sizeof *t->count);
    t->w = malloc((size_t)m * t->K * sizeof *t->w);
    if (!t->first || !t->count || !t->w)
        return false;
    for (int i = 0; i < m; i++) {
        const double center = (i + 0.5) * scale;
        const int lo = VT_MAX((int)(center - fs + 0.5), 0);
        const int hi = VT_MIN((int)(center + fs + 0.5), n);
        VT_ASSERT(hi > lo && hi - lo <= t->K);
        double total = 0.0;
        for (int x = lo; x < hi; x++)
            total += tent((x - center + 0.5) / fs);
        for (int x = lo; x < hi; x++)
            t->w[(size_t)i * t->K + (x - lo)] = (float)(tent((x - center + 0.5) / fs) / total);
        t->first[i] = lo;
        t->count[i] = hi - lo;
    }
    return true;
}

static void taps_free(Taps *t)
{
    free(t->first);
    free(t->count);
    free(t->w);
}

/* Horizontal pass: tmp (h, ow, C) float from in (h, w, C); with 4 channels
 * the color is premultiplied by alpha, so transparent pixels do not bleed. */
static void resize_rows(float *tmp, int ow, const uint8_t *in, int h, size_t stride, int C,
                        const Taps *tx)
{
    for (int y = 0; y < h; y++) {
        const uint8_t *row = in + (size_t)y * stride;
        for (int j = 0; j < ow; j++) {
            const float *w = tx->w + (size_t)j * tx->K;
            float acc[VT_MAX_CHANNELS] = {0};
            for (int k = 0; k < tx->count[j]; k++) {
                const uint8_t *p = row + (size_t)(tx->first[j] + k) * C;
                const float alpha = C == 4 ? p[3] * (1.0f / 255.0f) : 1.0f;
                for (int c = 0; c < C; c++)
                    acc[c] += w[k] * (c < 3 ? p[c] * alpha : p[c]);
            }
            memcpy(tmp + ((size_t)y * ow + j) * C, acc, (size_t)C * sizeof *acc);
        }
    }
}

static uint8_t to_byte(float v)
{
    return (uint8_t)(v <= 0.0f ? 0 : v >= 255.0f ? 255 : (int)(v + 0.5f));
}

/* Vertical pass: out (oh, ow, C) from tmp (h, ow, C); undoes the alpha
 * premultiplication. */
static void resize_cols(uint8_t *out, int oh, int ow, const float *tmp, int C, const Taps *ty)
{
    for (int i = 0; i < oh; i++) {
        const float *w = ty->w + (size_t)i * ty->K;
        for (int j = 0; j < ow; j++) {
            float acc[VT_MAX_CHANNELS] = {0};
            for (int k = 0; k < ty->count[i]; k++) {
                const float *p = tmp + ((size_t)(ty->first[i] + k) * ow + j) * C;
                for (int c = 0; c < C; c++)
                    acc[c] += w[k] * p[c];
            }
            uint8_t *o = out + ((size_t)i * ow + j) * C;
            const float unmul = C == 4 && acc[3] > 0.0f ? 255.0f / acc[3] : 1.0f;
            for (int c = 0; c < C; c++)
                o[c] = to_byte(C == 4 && c < 3 ? acc[c] * unmul : acc[c]);
        }
    }
}

bool augment_resize(uint8_t *out, int oh, int ow, const uint8_t *in, int h, int w, size_t stride,
                    int C)
{
    Taps tx = {0}, ty = {0};
    float *tmp = malloc((size_t)h * ow * C * sizeof *tmp);
    bool ok = tmp && taps_init(&tx, w, ow) && taps_init(&ty, h, oh);
    if (ok) {
        resize_rows(tmp, ow, in, h, stride, C, &tx);
        resize_cols(out, oh, ow, tmp, C, &ty);
    }
    taps_free(&tx);
    taps_free(&ty);
    free(tmp);
    return ok;
}

CropBox augment_center_box(int h, int w, int S)
{
    return (CropBox){.top = (int)nearbyint((h - S) / 2.0), .left = (int)nearbyint((w - S) / 2.0),
                     .height = S, .width = S};
}

static double uniform_in(Rng *rng, double lo, double hi)
{
    return lo + (hi - lo) * rng_uniform_double(rng);
}

/* get_params' fallback: the whole image, its aspect ratio clamped. */
static CropBox rrc_fallback(int h, int w, const float ratio[2])
{
    const double in_ratio = (double)w / (double)h;
    int bh = h, bw = w;
    if (in_ratio < (double)ratio[0])
        bh = VT_MAX(1, (int)nearbyint((double)w / (double)ratio[0]));
    else if (in_ratio > (double)ratio[1])
        bw = VT_MAX(1, (int)nearbyint((double)h * (double)ratio[1]));
    return (CropBox){.top = (h - bh) / 2, .left = (w - bw) / 2, .height = bh, .width = bw};
}

CropBox augment_rrc_box(int h, int w, const float scale[2], const float ratio[2], Rng *rng)
{
    const double area = (double)h * (double)w;
    const double log_r0 = log((double)ratio[0]), log_r1 = log((double)ratio[1]);
    for (int attempt = 0; attempt < RRC_ATTEMPTS; attempt++) {
        double target = area * uniform_in(rng, scale[0], scale[1]);
        double aspect = exp(uniform_in(rng, log_r0, log_r1));
        double cw = nearbyint(sqrt(target * aspect)), ch = nearbyint(sqrt(target / aspect));
        if (cw > 0 && cw <= w && ch > 0 && ch <= h) {
            CropBox b = {.height = (int)ch, .width = (int)cw};
            b.top = (int)rng_below(rng, (uint32_t)(h - b.height + 1));
            b.left = (int)rng_below(rng, (uint32_t)(w - b.width + 1));
            return b;
        }
    }
    return rrc_fallback(h, w, ratio);
}

/* The box of an (h, w, C) image resampled to out (S, S, C). */
static bool crop_resize(uint8_t *out, int S, const uint8_t *img, int w, int C, CropBox b)
{
    const size_t stride = (size_t)w * (size_t)C;
    const uint8_t *origin = img + (size_t)b.top * stride + (size_t)b.left * (size_t)C;
    if (b.height != S || b.width != S)
        return augment_resize(out, S, S, origin, b.height, b.width, stride, C);
    for (int y = 0; y < S; y++)
        memcpy(out + (size_t)y * S * C, origin + (size_t)y * stride, (size_t)S * C);
    return true;
}

/* timm's eval transform into out (S, S, C): resize the shorter side to
 * eval_side (in `resized` unless the image already has that size), then
 * center crop. */
static bool eval_crop(uint8_t *out, const uint8_t *img, int h, int w, const AugmentParams *p,
                      uint8_t *resized)
{
    int rh, rw;
    VT_ASSERT(augment_resized_dims(&rh, &rw, h, w, p->eval_side));
    const uint8_t *src = img;
    if (rh != h || rw != w) {
        if (!augment_resize(resized, rh, rw, img, h, w, (size_t)w * p->C, p->C))
            return false;
        src = resized;
    }
    return crop_resize(out, p->S, src, rw, p->C, augment_center_box(rh, rw, p->S));
}

size_t augment_scratch_bytes(const AugmentParams *p, int h, int w)
{
    const size_t square = (size_t)p->S * p->S * p->C;
    if (p->train && p->rrc)
        return square;
    int rh, rw;
    if (!augment_resized_dims(&rh, &rw, h, w, p->eval_side))
        return SIZE_MAX;
    return square + (rh != h || rw != w ? (size_t)rh * rw * p->C : 0);
}

/* out (C, S, S) from sq (S, S, C): output pixel (y, x) reads
 * sq(y + dy, x' + dx) with x' = x, or S-1-x when flipped; pixels shifted in
 * from outside are zero (torchvision pads with 0 before normalizing). */
static void to_float(float *out, const uint8_t *sq, const AugmentParams *p, int dy, int dx,
                     bool flip)
{
    const int S = p->S, C = p->C;
    for (int c = 0; c < C; c++) {
        const float *lut = p->lut[c];
        for (int y = 0; y < S; y++) {
            float *row = out + ((size_t)c * S + y) * S;
            const int sy = y + dy;
            if (sy < 0 || sy >= S) {
                for (int x = 0; x < S; x++)
                    row[x] = lut[0];
                continue;
            }
            const uint8_t *src = sq + (size_t)sy * S * C + c;
            for (int x = 0; x < S; x++) {
                int sx = (flip ? S - 1 - x : x) + dx;
                row[x] = sx >= 0 && sx < S ? lut[src[(size_t)sx * C]] : lut[0];
            }
        }
    }
}

bool augment_sample(float *out, const uint8_t *img, int h, int w, const AugmentParams *p,
                    Rng *rng, uint8_t *scratch)
{
    uint8_t *square = scratch; /* (S, S, C) */
    uint8_t *resized = scratch + (size_t)p->S * p->S * p->C;
    int dy = 0, dx = 0;
    if (p->train && p->rrc) {
        CropBox b = augment_rrc_box(h, w, p->scale, p->ratio, rng);
        if (!crop_resize(square, p->S, img, w, p->C, b))
            return false;
    } else {
        if (!eval_crop(square, img, h, w, p, resized))
            return false;
        if (p->train && p->pad > 0) {
            /* RandomCrop(S, padding=pad): top offset first, then left. */
            dy = (int)rng_below(rng, (uint32_t)(2 * p->pad + 1)) - p->pad;
            dx = (int)rng_below(rng, (uint32_t)(2 * p->pad + 1)) - p->pad;
        }
    }
    bool flip = p->train && rng_uniform(rng) < p->hflip;
    to_float(out, square, p, dy, dx, flip);
    return true;
}
