/*
 * reduce.c - column-tiled row sums (see reduce.h).
 */
#include "reduce.h"

enum { TILE = REDUCE_TILE };

void rows_sum_add(float *out, const float *x, int64_t R, int64_t L)
{
#pragma omp parallel for schedule(static)
    for (int64_t j0 = 0; j0 < L; j0 += TILE) {
        int64_t width = L - j0 < TILE ? L - j0 : TILE;
        float acc[TILE] = {0};
        for (int64_t r = 0; r < R; r++) {
            const float *row = x + r * L + j0;
            for (int64_t j = 0; j < width; j++)
                acc[j] += row[j];
        }
        for (int64_t j = 0; j < width; j++)
            out[j0 + j] += acc[j];
    }
}

void rows_dot_add(float *out, const float *a, const float *b, int64_t R, int64_t L)
{
#pragma omp parallel for schedule(static)
    for (int64_t j0 = 0; j0 < L; j0 += TILE) {
        int64_t width = L - j0 < TILE ? L - j0 : TILE;
        float acc[TILE] = {0};
        for (int64_t r = 0; r < R; r++) {
            const float *ra = a + r * L + j0;
            const float *rb = b + r * L + j0;
            for (int64_t j = 0; j < width; j++)
                acc[j] += ra[j] * rb[j];
        }
        for (int64_t j = 0; j < width; j++)
            out[j0 + j] += acc[j];
    }
}
