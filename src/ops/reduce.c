/*
 * reduce.c - row sums by chunks of rows (see reduce.h).
 *
 * The chunks replace tiles of columns that each thread summed over every
 * row: a tile read 256 bytes of each row and jumped a row ahead (3 KB on
 * ViT-Tiny's MLP: a new 4 KB page every row or two, which the hardware
 * prefetchers do not run into); a chunk streams its rows whole.
 */
#include "reduce.h"

#include "vitrain/common.h"
#include "vitrain/ops.h"
#include "vitrain/parallel.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

static float *partials_buffer;
static size_t partials_capacity;

float *reduce_partials(size_t floats)
{
    VT_ASSERT(!omp_in_parallel());
    if (floats > partials_capacity) {
        free(partials_buffer);
        partials_buffer = vt_xmalloc(floats * sizeof(float));
        partials_capacity = floats;
    }
    return partials_buffer;
}

void ops_reserve(int64_t widest)
{
    reduce_partials((size_t)FIXED_CHUNKS * (size_t)widest);
}

void add_partials(float *out, const float *partials, int chunks, int64_t stride, int64_t L)
{
    for (int c = 0; c < chunks; c++)
        for (int64_t j = 0; j < L; j++)
            out[j] += partials[c * stride + j];
}

/* out[j] += sum_r a[r, j] (b NULL), or sum_r a[r, j] * b[r, j]. */
static void rows_reduce_add(float *out, const float *a, const float *b, int64_t R, int64_t L)
{
    const int chunks = fixed_chunks(R);
    float *partials = reduce_partials((size_t)chunks * (size_t)L);
#pragma omp parallel for schedule(static)
    for (int c = 0; c < chunks; c++) {
        float *sum = partials + c * L;
        memset(sum, 0, (size_t)L * sizeof(float));
        int64_t first, end;
        fixed_chunk(R, chunks, c, &first, &end);
        for (int64_t r = first; r < end; r++) {
            const float *ra = a + r * L, *rb = b ? b + r * L : NULL;
            if (rb) {
#pragma omp simd
                for (int64_t j = 0; j < L; j++)
                    sum[j] += ra[j] * rb[j];
            } else {
#pragma omp simd
                for (int64_t j = 0; j < L; j++)
                    sum[j] += ra[j];
            }
        }
    }
    add_partials(out, partials, chunks, L, L);
}

void rows_sum_add(float *out, const float *x, int64_t R, int64_t L)
{
    rows_reduce_add(out, x, NULL, R, L);
}

void rows_dot_add(float *out, const float *a, const float *b, int64_t R, int64_t L)
{
    rows_reduce_add(out, a, b, R, L);
}
