/*
 * raw_rows.h - where the rotary encodings read q and k and write their
 * gradients (QkRotation, attention.h): the raw rows of the qkv buffer and
 * of dL/dqkv, and head-major (B, H, N, Dh) tensors; copies between the
 * two; and the sum of per-head gradient parts over the chunks of a batch.
 */
#ifndef VITRAIN_PE_RAW_ROWS_H
#define VITRAIN_PE_RAW_ROWS_H

#include "vitrain/attention.h"

#include <stddef.h>
#include <string.h>

/* Offset of (image b, token n, head h) in raw rows raw_stride apart. */
static inline size_t raw_at(int raw_stride, int b, int n, int h, const AttnDims *d)
{
    return ((size_t)b * d->N + n) * raw_stride + (size_t)h * d->Dh;
}

/* Offset of (image b, head h, token n) in a head-major (B, H, N, Dh) buffer. */
static inline size_t head_at(int b, int h, int n, const AttnDims *d)
{
    return (((size_t)b * d->H + h) * d->N + n) * d->Dh;
}

/* The H Dh channels of every (image, token) row, from rows `from_stride`
 * apart to rows `to_stride` apart. */
static inline void copy_rows(float *to, int to_stride, const float *from, int from_stride,
                             const AttnDims *d)
{
    for (size_t bn = 0; bn < (size_t)d->B * d->N; bn++)
        memcpy(to + bn * to_stride, from + bn * from_stride,
               (size_t)d->H * d->Dh * sizeof(float));
}

/* Raw rows into the head-major x. */
static inline void rows_to_head_major(float *x, const float *rows, int stride, const AttnDims *d)
{
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int n = 0; n < d->N; n++)
                memcpy(x + head_at(b, h, n, d), rows + raw_at(stride, b, n, h, d),
                       (size_t)d->Dh * sizeof(float));
}

/* sum (per_token) += token n of head h in the per-head gradient part of
 * every chunk of the batch, parts laid out (chunks, H, N, per_token)
 * (QkRotation.backward_reduce), the chunks in order. */
static inline void add_chunk_parts(float *sum, const float *parts, int chunks, int h, int n,
                                   int per_token, const AttnDims *d)
{
    for (int c = 0; c < chunks; c++) {
        const float *part = parts + (((size_t)c * d->H + h) * d->N + n) * per_token;
        for (int j = 0; j < per_token; j++)
            sum[j] += part[j];
    }
}

/* And back: the head-major x into raw rows. */
static inline void head_major_to_rows(float *rows, const float *x, int stride, const AttnDims *d)
{
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int n = 0; n < d->N; n++)
                memcpy(rows + raw_at(stride, b, n, h, d), x + head_at(b, h, n, d),
                       (size_t)d->Dh * sizeof(float));
}

#endif
