/*
 * rng.h - explicit random streams (DESIGN §3).
 *
 * Every random choice comes from a stream keyed by (seed, purpose, a, b),
 * where a and b are e.g. the epoch and the sample index, or the step and the
 * layer. A stream depends on nothing else: not on the thread that draws
 * from it, not on how many numbers other streams drew. That is what makes a
 * run reproducible for a given thread count and a resumed run continue the
 * same sequence. The generator is SplitMix64 (Steele et al. 2014), whose
 * output function also serves as the key hash.
 */
#ifndef VITRAIN_RNG_H
#define VITRAIN_RNG_H

#include <stdint.h>

typedef enum RngPurpose {
    RNG_INIT = 1,      /* parameter initialisation: a = hash of the tensor name */
    RNG_DATA_ORDER,    /* sample order: a = epoch */
    RNG_AUGMENT,       /* augmentation: a = epoch, b = sample index */
    RNG_DROP_PATH,     /* drop path masks: a = step, b = layer */
    RNG_SYNTHETIC,     /* generated data sets: a = sample index */
    RNG_TEST,          /* tests and tools */
    RNG_ARROWS,        /* the arrow task: a = 2 * grid + split, b = image index */
    RNG_SUBSET,        /* data.train_fraction: a = class index */
    RNG_PATCH_SHUFFLE, /* eval --shuffle-patches: a = patch count */
    RNG_MIXUP          /* mixup and CutMix: a = step */
} RngPurpose;

typedef struct Rng {
    uint64_t state;
} Rng;

Rng rng_stream(uint64_t seed, RngPurpose purpose, uint64_t a, uint64_t b);

uint64_t rng_next_u64(Rng *rng);
/* Uniform in [0, 1), 24 random bits. */
float rng_uniform(Rng *rng);
/* Uniform in [0, 1), 53 random bits. */
double rng_uniform_double(Rng *rng);
/* Uniform integer in [0, n), n > 0, without modulo bias. */
uint32_t rng_below(Rng *rng, uint32_t n);
/* Standard normal (Box-Muller, one value per call). */
double rng_normal(Rng *rng);
/* N(0, std^2) truncated to [-2, 2] by rejection, as timm's and torch's
 * trunc_normal_(std=std) with their default bounds: the bounds are
 * absolute, so at std 0.02 they never bind and the values keep std 0.02
 * (bounds of 2 std would leave 0.88 of it). */
double rng_trunc_normal(Rng *rng, double std);
/* Beta(a, a) for a > 0, as the ratio of two Gamma(a) draws
 * (Marsaglia & Tsang 2000; below a = 1 through Gamma(a + 1) U^(1/a)). */
double rng_beta_symmetric(Rng *rng, double a);
/* Fisher-Yates shuffle of an int array. */
void rng_shuffle(Rng *rng, int *values, int count);

#endif
