/*
 * reduce.h - column reductions shared by the ops' parameter gradients.
 *
 * A parameter gradient is a sum over rows (tokens, images). The rows split
 * into the fixed chunks of parallel.h (fixed_chunks, fixed_chunk); one
 * thread sums a chunk's rows in order into a partial of its own, reading
 * whole rows as they lie in memory, and the partials are then added in
 * chunk order. The result is the same for any thread count and no thread
 * writes another's output.
 */
#ifndef VITRAIN_OPS_REDUCE_H
#define VITRAIN_OPS_REDUCE_H

#include <stddef.h>
#include <stdint.h>

/* Room for `floats` partials, in a buffer kept between calls: the ops sum
 * one at a time, from the thread that drives the step, outside parallel
 * regions, so one buffer serves them all, and once ops_reserve (ops.h) has
 * sized it no call allocates. Its contents are left over from the last
 * sum: each chunk clears its own partial. */
float *reduce_partials(size_t floats);

/* out[j] += sum over chunks c, in order, of partials[c * stride + j], j < L. */
void add_partials(float *out, const float *partials, int chunks, int64_t stride, int64_t L);

/* out[j] += sum_r x[r, j] */
void rows_sum_add(float *out /* (L) */, const float *x /* (R, L) */, int64_t R, int64_t L);
/* out[j] += sum_r a[r, j] * b[r, j] */
void rows_dot_add(float *out /* (L) */, const float *a /* (R, L) */, const float *b /* (R, L) */,
                  int64_t R, int64_t L);

#endif
