/*
 * attention.c - multi-head self-attention, forward and backward (see
 * attention.h). Per (image, head) the work is three small GEMMs and a
 * row softmax; the pairs run in parallel, each on one thread, so OpenBLAS
 * runs those GEMMs single-threaded inside our region.
 */
#include "vitrain/attention.h"
#include "vitrain/profile.h"

#include "vitrain/parallel.h"

#include <math.h>
#include <stdint.h>

/* Which of q, k, v a slice of the qkv buffer holds. */
enum { SLOT_Q = 0, SLOT_K = 1, SLOT_V = 2 };

/* (B, N, 3D) slot -> (B, H, N, Dh) */
static void split_heads(float *dst, const float *qkv, int slot, const AttnDims *d)
{
    const int D = d->H * d->Dh;
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < d->B * d->H; bh++) {
        int b = bh / d->H, h = bh % d->H;
        for (int n = 0; n < d->N; n++) {
            const float *src = qkv + ((int64_t)b * d->N + n) * 3 * D + slot * D + h * d->Dh;
            float *out = dst + ((int64_t)bh * d->N + n) * d->Dh;
            for (int c = 0; c < d->Dh; c++)
                out[c] = src[c];
        }
    }
}

/* (B, H, N, Dh) -> adds into slot of (B, N, 3D); the inverse of split_heads. */
static void merge_heads_add(float *dqkv, const float *src, int slot, const AttnDims *d)
{
    const int D = d->H * d->Dh;
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < d->B * d->H; bh++) {
        int b = bh / d->H, h = bh % d->H;
        for (int n = 0; n < d->N; n++) {
            float *dst = dqkv + ((int64_t)b * d->N + n) * 3 * D + slot * D + h * d->Dh;
            const float *in = src + ((int64_t)bh * d->N + n) * d->Dh;
            for (int c = 0; c < d->Dh; c++)
                dst[c] += in[c];
        }
    }
}

static void softmax_rows(float *s /* (N, N) */, int N)
{
    for (int i = 0; i < N; i++) {
        float *row = s + (int64_t)i * N;
        float m = row[0];
        for (int j = 1; j < N; j++)
            m = row[j] > m ? row[j] : m;
        float sum = 0.0f;
        for (int j = 0; j < N; j++) {
            row[j] = expf(row[j] - m);
            sum += row[j];
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < N; j++)
            row[j] *= inv;
    }
}

void attention_forward(float *out, float *q, float *k, float *v, float *probs, const float *qkv,
                       const QkRotation *rotation, int layer, const AttnDims *dims)
{
    const int N = dims->N, Dh = dims->Dh, D = dims->H * Dh;
    const float scale = 1.0f / sqrtf((float)Dh);
    prof_push(PROF_ATTENTION);
    split_heads(q, qkv, SLOT_Q, dims);
    split_heads(k, qkv, SLOT_K, dims);
    split_heads(v, qkv, SLOT_V, dims);
    if (rotation) {
        rotation->forward(rotation, layer, q, dims);
        rotation->forward(rotation, layer, k, dims);
    }
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < dims->B * dims->H; bh++) {
        int b = bh / dims->H, h = bh % dims->H;
        const int64_t head = (int64_t)bh * N * Dh;
        float *p = probs + (int64_t)bh * N * N;
        /* P = softmax(q k^T * scale), (N, N) */
        blas_sgemm(false, true, N, N, Dh, scale, q + head, Dh, k + head, Dh, 0.0f, p, N);
        softmax_rows(p, N);
        /* out[b, :, head h] = P v, (N, Dh) in a row stride of D */
        blas_sgemm(false, false, N, Dh, N, 1.0f, p, N, v + head, Dh, 0.0f,
                   out + (int64_t)b * N * D + h * Dh, D);
    }
    prof_pop();
}

/* Softmax backward, O(N) per row: with P = softmax(S),
 * dS_ij = P_ij (dP_ij - sum_k dP_ik P_ik). Overwrites dp with dS * scale. */
static void softmax_rows_backward(float *dp /* (N, N) */, const float *p /* (N, N) */, int N,
                                  float scale)
{
    for (int i = 0; i < N; i++) {
        float *drow = dp + (int64_t)i * N;
        const float *prow = p + (int64_t)i * N;
        float dot = 0.0f;
        for (int j = 0; j < N; j++)
            dot += drow[j] * prow[j];
        for (int j = 0; j < N; j++)
            drow[j] = prow[j] * (drow[j] - dot) * scale;
    }
}

void attention_backward(float *dqkv, float *dq, float *dk, float *dv, float *dprobs,
                        const float *dout, const float *q, const float *k, const float *v,
                        const float *probs, const float *qkv, const QkRotation *rotation,
                        int layer, const AttnDims *dims)
{
    const int N = dims->N, Dh = dims->Dh, D = dims->H * Dh;
    const float scale = 1.0f / sqrtf((float)Dh);
    prof_push(PROF_ATTENTION);
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < dims->B * dims->H; bh++) {
        int b = bh / dims->H, h = bh % dims->H;
        const int64_t head = (int64_t)bh * N * Dh;
        const float *p = probs + (int64_t)bh * N * N;
        float *dp = dprobs + (int64_t)bh * N * N;
        const float *dO = dout + (int64_t)b * N * D + h * Dh; /* (N, Dh), row stride D */
        /* O = P v: dP = dO v^T, dv = P^T dO */
        blas_sgemm(false, true, N, N, Dh, 1.0f, dO, D, v + head, Dh, 0.0f, dp, N);
        blas_sgemm(true, false, N, Dh, N, 1.0f, p, N, dO, D, 0.0f, dv + head, Dh);
        /* P = softmax(S), S = scale q k^T: dS = scale * softmax'(dP) */
        softmax_rows_backward(dp, p, N, scale);
        /* dq = dS k, dk = dS^T q */
        blas_sgemm(false, false, N, Dh, N, 1.0f, dp, N, k + head, Dh, 0.0f, dq + head, Dh);
        blas_sgemm(true, false, N, Dh, N, 1.0f, dp, N, q + head, Dh, 0.0f, dk + head, Dh);
    }
    if (rotation) {
        rotation->backward(rotation, layer, dq, qkv + SLOT_Q * D, 3 * D, dims);
        rotation->backward(rotation, layer, dk, qkv + SLOT_K * D, 3 * D, dims);
    }
    merge_heads_add(dqkv, dq, SLOT_Q, dims);
    merge_heads_add(dqkv, dk, SLOT_K, dims);
    merge_heads_add(dqkv, dv, SLOT_V, dims);
    prof_pop();
}
