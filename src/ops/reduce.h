/*
 * reduce.h - column reductions shared by the ops' parameter gradients.
 *
 * A parameter gradient is a sum over rows (tokens, images). Each thread owns a
 * tile of columns and sums every row of it in order, so the result is the
 * same for any thread count and no thread writes another's output.
 */
#ifndef VITRAIN_OPS_REDUCE_H
#define VITRAIN_OPS_REDUCE_H

#include <stdint.h>

/* Columns per thread's tile: 64 floats are four AVX-512 registers of sums
 * and four cache lines per row, which the prefetcher streams about 1.6x
 * faster than one line. Every column reduction of the ops uses it. */
enum { REDUCE_TILE = 64 };

/* out[j] += sum_r x[r, j] */
void rows_sum_add(float *out /* (L) */, const float *x /* (R, L) */, int64_t R, int64_t L);
/* out[j] += sum_r a[r, j] * b[r, j] */
void rows_dot_add(float *out /* (L) */, const float *a /* (R, L) */, const float *b /* (R, L) */,
                  int64_t R, int64_t L);

#endif
