/*
 * synthetic.c - generated data sets (see synthetic.h).
 */
#include "vitrain/synthetic.h"

#include "vitrain/common.h"
#include "vitrain/rng.h"

void synthetic_noise(float *images, int *labels, int count, int C, int S, int K, uint64_t seed)
{
    const int64_t len = (int64_t)C * S * S;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < count; i++) {
        Rng rng = rng_stream(seed, RNG_SYNTHETIC, (uint64_t)i, 0);
        labels[i] = (int)rng_below(&rng, (uint32_t)K);
        for (int64_t j = 0; j < len; j++)
            images[i * len + j] = 2.0f * rng_uniform(&rng) - 1.0f;
    }
}

void synthetic_quadrant(float *images, int *labels, int count, int C, int S, uint64_t seed)
{
    VT_ASSERT(S >= 4);
    const int64_t len = (int64_t)C * S * S;
    const int half = S / 2, side = VT_MAX(2, S / 4);
    VT_ASSERT(side <= half);
#pragma omp parallel for schedule(static)
    for (int i = 0; i < count; i++) {
        Rng rng = rng_stream(seed, RNG_SYNTHETIC, (uint64_t)i, 0);
        int quadrant = (int)rng_below(&rng, SYNTHETIC_QUADRANT_CLASSES);
        int top = (quadrant / 2) * half + (int)rng_below(&rng, (uint32_t)(half - side + 1));
        int left = (quadrant % 2) * half + (int)rng_below(&rng, (uint32_t)(half - side + 1));
        float *img = images + i * len;
        for (int64_t j = 0; j < len; j++)
            img[j] = 0.2f * rng_uniform(&rng) - 0.5f;
        for (int c = 0; c < C; c++)
            for (int y = top; y < top + side; y++)
                for (int x = left; x < left + side; x++)
                    img[((int64_t)c * S + y) * S + x] = 1.0f;
        labels[i] = quadrant;
    }
}
