/*
 * augment.h - image geometry shared by the cache (folder.c) and the loader
 * (loader.c): resizing, timm's evaluation crop, torchvision's
 * random-resized-crop, pad-and-crop, horizontal flip, normalization.
 * Private to src/data (DESIGN §3).
 *
 * Images are HWC uint8 with C <= VT_MAX_CHANNELS; the loader's output is
 * CHW float. Every random choice of a sample is drawn from the one Rng the
 * caller passes (the RNG_AUGMENT stream of (seed, epoch, sample index)), in
 * a fixed order: crop, then flip.
 */
#ifndef VITRAIN_DATA_AUGMENT_H
#define VITRAIN_DATA_AUGMENT_H

#include "vitrain/config.h"
#include "vitrain/rng.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A rectangle of whole pixels inside an image. */
typedef struct CropBox {
    int top, left, height, width;
} CropBox;

/* What the loader does to each sample; filled by augment_params_init. */
typedef struct AugmentParams {
    int S, C;                   /* output side and channels */
    bool train, rrc;
    float scale[2], ratio[2];
    int pad;
    float hflip;
    int eval_side;              /* shorter side before the eval center crop */
    float lut[VT_MAX_CHANNELS][256]; /* (x/255 - mean[c]) / std[c] for every x */
} AugmentParams;

/* Fills p from the loader options; precomputes the normalization table. */
void augment_params_init(AugmentParams *p, int S, int C, bool train, bool rrc,
                         const float scale[2], const float ratio[2], int pad, float hflip,
                         float crop_pct, const float *mean, const float *std);

/* timm's eval resize: floor(S / crop_pct), robust to crop_pct being a float
 * (0.8f is slightly above 0.8, yet 8 / 0.8 must give 10). */
int augment_eval_side(int S, float crop_pct);

/* torchvision Resize(side): the shorter side becomes `side`, the longer one
 * int(side * long / short). Returns false when the result would exceed
 * 2^28 pixels (an absurd aspect ratio). */
bool augment_resized_dims(int *rh, int *rw, int h, int w, int side);

/* Resamples an (h, w, C) image with row stride `stride` bytes to (oh, ow, C)
 * with a triangle filter: bilinear when enlarging, an antialiasing tent
 * when shrinking (PIL's and torchvision's antialiased bilinear), edges
 * clamped. C == 4 is straight alpha, resampled premultiplied. Outputs are
 * convex combinations of inputs. Returns false if its work memory (weights
 * and an (h, ow, C) float buffer) cannot be allocated. */
bool augment_resize(uint8_t *out, int oh, int ow, const uint8_t *in, int h, int w, size_t stride,
                    int C);

/* torchvision CenterCrop offsets: round((h - S) / 2), ties to even. */
CropBox augment_center_box(int h, int w, int S);

/* torchvision RandomResizedCrop.get_params: 10 tries of an area fraction in
 * `scale` and a log-uniform aspect ratio in `ratio`, else a center crop of
 * the whole image with its aspect ratio clamped into `ratio`. */
CropBox augment_rrc_box(int h, int w, const float scale[2], const float ratio[2], Rng *rng);

/* Scratch bytes augment_sample needs for an (h, w) cached image. */
size_t augment_scratch_bytes(const AugmentParams *p, int h, int w);

/* One sample: out (C, S, S) normalized, from an (h, w, C) cached image.
 * rng is used only when p->train. Returns false on an allocation failure
 * inside augment_resize. */
bool augment_sample(float *out, const uint8_t *img, int h, int w, const AugmentParams *p,
                    Rng *rng, uint8_t *scratch);

#endif
