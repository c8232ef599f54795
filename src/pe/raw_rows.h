/*
 * raw_rows.h - where the rotary encodings read q and k and write their
 * gradients (QkRotation, attention.h): the raw rows of the qkv buffer and
 * of dL/dqkv, and the head-major rotated copies; the copies of the
 * tokens an encoding does not rotate; and the sum of per-head gradient
 * parts over the chunks of a batch.
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

/* Tokens [0, tokens) of every (image, head) as they are: raw rows into
 * the head-major x. */
static inline void copy_unrotated(float *x, const float *x_raw, int raw_stride, int tokens,
                                  const AttnDims *d)
{
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int n = 0; n < tokens; n++)
                memcpy(x + head_at(b, h, n, d), x_raw + raw_at(raw_stride, b, n, h, d),
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

/* Their gradients back: head-major dx into the raw rows of dx_raw. */
static inline void copy_unrotated_grads(float *dx_raw, const float *dx, int raw_stride,
                                        int tokens, const AttnDims *d)
{
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int n = 0; n < tokens; n++)
                memcpy(dx_raw + raw_at(raw_stride, b, n, h, d), dx + head_at(b, h, n, d),
                       (size_t)d->Dh * sizeof(float));
}

#endif
