/*
 * patch_shuffle.c - the patch-shuffle evaluation of LieRE Table 5: the
 * patch tiles of every image are moved by one seeded permutation before the
 * model sees them (see data.h).
 *
 * Moving tiles in pixel space is the same as permuting the patch tokens
 * after the embedding (a stride-P patch embedding sees each tile alone), so
 * it needs nothing from the model and works for every encoding.
 */
#include "vitrain/data.h"

#include "vitrain/rng.h"

#include <string.h>

void patch_order_shuffled(int *order, int tiles, uint64_t seed)
{
    for (int t = 0; t < tiles; t++)
        order[t] = t;
    /* Keyed by the tile count too: each resolution gets its own permutation. */
    Rng rng = rng_stream(seed, RNG_PATCH_SHUFFLE, (uint64_t)tiles, 0);
    rng_shuffle(&rng, order, tiles);
}

void patch_shuffle(float *images, float *scratch, int B, int C, int S, int P, const int *order)
{
    VT_ASSERT(P > 0 && S % P == 0);
    const int g = S / P;
    const size_t image_len = (size_t)C * S * S;
    for (int b = 0; b < B; b++) {
        float *img = images + b * image_len;
        memcpy(scratch, img, image_len * sizeof(float));
        for (int c = 0; c < C; c++)
            for (int t = 0; t < g * g; t++) {
                const int from = order[t];
                VT_ASSERT(from >= 0 && from < g * g);
                for (int y = 0; y < P; y++)
                    memcpy(img + ((size_t)c * S + (t / g) * P + y) * S + (t % g) * P,
                           scratch + ((size_t)c * S + (from / g) * P + y) * S + (from % g) * P,
                           (size_t)P * sizeof(float));
            }
    }
}
