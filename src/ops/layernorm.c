/*
 * layernorm.c - LayerNorm over the last dimension (eps 1e-6, DESIGN §2).
 * The forward saves each row's mean and 1/std for the backward. Row sums
 * are `omp simd` reductions: summed in vector lanes, in an order fixed by
 * the build, not by the thread count.
 */
#include "vitrain/common.h"
#include "vitrain/ops.h"

#include "reduce.h"

#include <math.h>

/* y = (x - mu) * rstd * w + b for one row: the forward's output, and the
 * same arithmetic when the backward recomputes it. */
static inline void normalize_row(float *y, const float *x, float mu, float rs, const float *w,
                                 const float *b, int D)
{
    for (int i = 0; i < D; i++)
        y[i] = (x[i] - mu) * rs * w[i] + b[i];
}

void layernorm_forward(float *y, float *mean, float *rstd, const float *x, const float *w,
                       const float *b, int T, int D)
{
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++) {
        const float *xr = x + (int64_t)t * D;
        float *yr = y + (int64_t)t * D;
        /* Two passes: the variance of centred values does not cancel. */
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int i = 0; i < D; i++)
            sum += xr[i];
        float mu = sum / (float)D;
        float sq = 0.0f;
#pragma omp simd reduction(+ : sq)
        for (int i = 0; i < D; i++) {
            float c = xr[i] - mu;
            sq += c * c;
        }
        float rs = 1.0f / sqrtf(sq / (float)D + VT_LAYERNORM_EPS);
        normalize_row(yr, xr, mu, rs, w, b, D);
        mean[t] = mu;
        rstd[t] = rs;
    }
}

void layernorm_recompute(float *y, const float *x, const float *mean, const float *rstd,
                         const float *w, const float *b, int T, int D)
{
#pragma omp parallel for schedule(static)
    for (int t = 0; t < T; t++)
        normalize_row(y + (int64_t)t * D, x + (int64_t)t * D, mean[t], rstd[t], w, b, D);
}

static void layernorm_param_grads(float *dw, float *db, const float *dy, const float *x,
                                  const float *mean, const float *rstd, int T, int D)
{
    /* y = xhat * w + b, so dw += sum_t dy * xhat and db += sum_t dy.
     * Columns are split between threads: each sum runs over t in order. */
    enum { TILE = REDUCE_TILE };
#pragma omp parallel for schedule(static)
    for (int j0 = 0; j0 < D; j0 += TILE) {
        int width = VT_MIN(TILE, D - j0);
        float acc_w[TILE] = {0}, acc_b[TILE] = {0};
        for (int t = 0; t < T; t++) {
            const float *dyr = dy + (int64_t)t * D + j0;
            const float *xr = x + (int64_t)t * D + j0;
            for (int j = 0; j < width; j++) {
                acc_w[j] += dyr[j] * (xr[j] - mean[t]) * rstd[t];
                acc_b[j] += dyr[j];
            }
        }
        for (int j = 0; j < width; j++) {
            dw[j0 + j] += acc_w[j];
            db[j0 + j] += acc_b[j];
        }
    }
}

void layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *mean, const float *rstd, const float *w, int T, int D)
{
    /* With g = dy * w and xhat = (x - mu) * rstd:
     * dx += rstd * (g - mean(g) - xhat * mean(g * xhat)), added into the
     * stream gradient (ops.h). */
    if (dx) {
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++) {
            const float *dyr = dy + (int64_t)t * D;
            const float *xr = x + (int64_t)t * D;
            float *dxr = dx + (int64_t)t * D;
            float mu = mean[t], rs = rstd[t];
            float g_sum = 0.0f, gx_sum = 0.0f;
#pragma omp simd reduction(+ : g_sum, gx_sum)
            for (int i = 0; i < D; i++) {
                float g = dyr[i] * w[i];
                g_sum += g;
                gx_sum += g * (xr[i] - mu) * rs;
            }
            float g_mean = g_sum / (float)D, gx_mean = gx_sum / (float)D;
            for (int i = 0; i < D; i++) {
                float xhat = (xr[i] - mu) * rs;
                dxr[i] += rs * (dyr[i] * w[i] - g_mean - xhat * gx_mean);
            }
        }
    }
    layernorm_param_grads(dw, db, dy, x, mean, rstd, T, D);
}
