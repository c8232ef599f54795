/*
 * tokens.c - the small token-level layers: CLS concat, residual add,
 * LayerScale, drop path, CLS/mean pooling and the additive position
 * embedding. Each is a few lines; together they are the glue of DESIGN §2.
 */
#include "vitrain/common.h"
#include "vitrain/ops.h"
#include "vitrain/rng.h"

#include "reduce.h"

#include <string.h>

/* ---- CLS concat --------------------------------------------------------- */

void cls_concat_forward(float *x, const float *patches, const float *cls, int B, int Np, int D)
{
    const int N = Np + 1;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *xb = x + (int64_t)b * N * D;
        memcpy(xb, cls, (size_t)D * sizeof(float));
        memcpy(xb + D, patches + (int64_t)b * Np * D, (size_t)Np * D * sizeof(float));
    }
}

void cls_concat_backward(float *dpatches, float *dcls, const float *dx, int B, int Np, int D)
{
    const int N = Np + 1;
    if (dpatches) {
#pragma omp parallel for schedule(static)
        for (int b = 0; b < B; b++) {
            const float *src = dx + (int64_t)b * N * D + D;
            float *dst = dpatches + (int64_t)b * Np * D;
            memcpy(dst, src, (size_t)Np * D * sizeof(float));
        }
    }
    /* Every image's token 0 is the same cls vector: sum over b, in order. */
    for (int b = 0; b < B; b++) {
        const float *src = dx + (int64_t)b * N * D;
        for (int i = 0; i < D; i++)
            dcls[i] += src[i];
    }
}

/* ---- residual add --------------------------------------------------------- */

void residual_forward(float *y, const float *a, const float *b, int64_t n)
{
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        y[i] = a[i] + b[i];
}

void residual_backward(float *da, float *db, const float *dy, int64_t n)
{
    /* y = a + b: both inputs receive dy unchanged. */
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        if (da)
            da[i] = dy[i];
        if (db)
            db[i] = dy[i];
    }
}

void residual_branch_forward(float *y, const float *x, const float *branch, const float *gamma,
                             const float *scale, int B, int N, int D)
{
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const float s = scale ? scale[b] : 1.0f; /* times 1 is exact */
        for (int n = 0; n < N; n++) {
            const int64_t at = ((int64_t)b * N + n) * D;
            if (gamma) {
#pragma omp simd
                for (int i = 0; i < D; i++)
                    y[at + i] = x[at + i] + branch[at + i] * gamma[i] * s;
            } else {
#pragma omp simd
                for (int i = 0; i < D; i++)
                    y[at + i] = x[at + i] + branch[at + i] * s;
            }
        }
    }
}

/* ---- LayerScale ----------------------------------------------------------- */

void layerscale_forward(float *y, const float *x, const float *gamma, int T, int D)
{
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        for (int i = 0; i < D; i++)
            y[(int64_t)t * D + i] = x[(int64_t)t * D + i] * gamma[i];
}

void layerscale_backward(float *dx, float *dgamma, const float *dy, const float *x,
                         const float *gamma, int T, int D)
{
    /* y = x * gamma, so dx = dy * gamma and dgamma += sum_t dy * x. */
    if (dx) {
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++)
            for (int i = 0; i < D; i++)
                dx[(int64_t)t * D + i] = dy[(int64_t)t * D + i] * gamma[i];
    }
    rows_dot_add(dgamma, dy, x, T, D);
}

/* ---- drop path -------------------------------------------------------------- */

void drop_path_scales(float *scale, uint64_t seed, int64_t step, int slot, float drop_prob,
                      int first, int B)
{
    /* One stream per (step, slot): the same masks whatever the thread count,
     * and again on a resumed run. Sample b of the global batch takes draw b. */
    Rng rng = rng_stream(seed, RNG_DROP_PATH, (uint64_t)step, (uint64_t)slot);
    for (int b = 0; drop_prob > 0.0f && b < first; b++)
        rng_uniform(&rng);
    const float keep = 1.0f - drop_prob;
    for (int b = 0; b < B; b++)
        scale[b] = drop_prob <= 0.0f ? 1.0f : (rng_uniform(&rng) < keep ? 1.0f / keep : 0.0f);
}

void drop_path_forward(float *y, const float *x, const float *scale, int B, int64_t L)
{
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        for (int64_t i = 0; i < L; i++)
            y[b * L + i] = x[b * L + i] * scale[b];
}

void drop_path_backward(float *dx, const float *dy, const float *scale, int B, int64_t L)
{
    /* y = x * scale[b], so dx = dy * scale[b]. */
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        for (int64_t i = 0; i < L; i++)
            dx[b * L + i] = dy[b * L + i] * scale[b];
}

/* ---- pooling ------------------------------------------------------------------ */

/* Image b of a (B, N, D) token tensor. */
static float *x_image(float *x, int b, int N, int D)
{
    return x + (int64_t)b * N * D;
}

void pool_cls_forward(float *y, const float *x, int B, int N, int D)
{
    for (int b = 0; b < B; b++)
        memcpy(y + (int64_t)b * D, x + (int64_t)b * N * D, (size_t)D * sizeof(float));
}

void pool_cls_backward(float *dx, const float *dy, int B, int N, int D)
{
    /* Token 0 receives dy, the others nothing. */
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *dxb = x_image(dx, b, N, D);
        memcpy(dxb, dy + (int64_t)b * D, (size_t)D * sizeof(float));
        memset(dxb + D, 0, (size_t)(N - 1) * D * sizeof(float));
    }
}

void pool_mean_forward(float *y, const float *x, int B, int N, int D)
{
    VT_ASSERT(N > 1);
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *yb = y + (int64_t)b * D;
        for (int i = 0; i < D; i++)
            yb[i] = 0.0f;
        for (int n = 1; n < N; n++)
            for (int i = 0; i < D; i++)
                yb[i] += x[((int64_t)b * N + n) * D + i];
        for (int i = 0; i < D; i++)
            yb[i] /= (float)(N - 1);
    }
}

void pool_mean_backward(float *dx, const float *dy, int B, int N, int D)
{
    /* y = sum_{n>=1} x_n / (N-1): each patch token receives dy / (N-1),
     * the CLS token nothing. */
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *dxb = x_image(dx, b, N, D);
        memset(dxb, 0, (size_t)D * sizeof(float));
        for (int n = 1; n < N; n++)
            for (int i = 0; i < D; i++)
                dxb[(int64_t)n * D + i] = dy[(int64_t)b * D + i] / (float)(N - 1);
    }
}

/* ---- additive position embedding ---------------------------------------------- */

void pos_embed_forward(float *x, const float *pos, int B, int N, int D)
{
    const int64_t L = (int64_t)N * D;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++)
        for (int64_t i = 0; i < L; i++)
            x[b * L + i] += pos[i];
}

void pos_embed_backward(float *dpos, const float *dx, int B, int N, int D)
{
    /* x_b += pos for every image b, so dpos += sum_b dx_b. */
    rows_sum_add(dpos, dx, B, (int64_t)N * D);
}
