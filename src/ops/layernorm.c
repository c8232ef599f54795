/*
 * layernorm.c - LayerNorm over the last dimension (eps 1e-6, DESIGN §2).
 * The forward saves each row's mean and 1/std for the backward. Row sums
 * are `omp simd` reductions: summed in vector lanes, in an order fixed by
 * the build, not by the thread count.
 */
#include "vitrain/common.h"
#include "vitrain/ops.h"
#include "vitrain/parallel.h"

#include "reduce.h"

#include <math.h>
#include <string.h>

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

/* The rows [first, end) of the backward: dx (when wanted) and the rows'
 * parts of dw and db, added to sum_w and sum_b in row order. */
static void backward_rows(float *dx, float *sum_w, float *sum_b, const float *dy, const float *x,
                          const float *mean, const float *rstd, const float *w, int64_t first,
                          int64_t end, int D)
{
    for (int64_t t = first; t < end; t++) {
        const float *dyr = dy + t * D, *xr = x + t * D;
        const float mu = mean[t], rs = rstd[t];
        float g_sum = 0.0f, gx_sum = 0.0f;
        if (dx) {
#pragma omp simd reduction(+ : g_sum, gx_sum)
            for (int i = 0; i < D; i++) {
                float g = dyr[i] * w[i];
                g_sum += g;
                gx_sum += g * (xr[i] - mu) * rs;
            }
        }
        const float g_mean = g_sum / (float)D, gx_mean = gx_sum / (float)D;
        float *dxr = dx ? dx + t * D : NULL;
#pragma omp simd
        for (int i = 0; i < D; i++) {
            const float xhat = (xr[i] - mu) * rs;
            if (dxr)
                dxr[i] += rs * (dyr[i] * w[i] - g_mean - xhat * gx_mean);
            sum_w[i] += dyr[i] * xhat;
            sum_b[i] += dyr[i];
        }
    }
}

void layernorm_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                        const float *mean, const float *rstd, const float *w, int T, int D)
{
    /* With g = dy * w and xhat = (x - mu) * rstd:
     * dx += rstd * (g - mean(g) - xhat * mean(g * xhat)), added into the
     * stream gradient (ops.h); y = xhat * w + b, so dw += sum_t dy * xhat
     * and db += sum_t dy, summed by chunks of rows (reduce.h) in the same
     * pass over dy and x. */
    const int chunks = fixed_chunks(T);
    float *partials = reduce_partials((size_t)chunks * 2 * D); /* (chunks, 2, D) */
#pragma omp parallel for schedule(static)
    for (int c = 0; c < chunks; c++) {
        float *sum_w = partials + (int64_t)c * 2 * D;
        memset(sum_w, 0, 2 * (size_t)D * sizeof(float));
        int64_t first, end;
        fixed_chunk(T, chunks, c, &first, &end);
        backward_rows(dx, sum_w, sum_w + D, dy, x, mean, rstd, w, first, end, D);
    }
    add_partials(dw, partials, chunks, 2 * D, D);
    add_partials(db, partials + D, chunks, 2 * D, D);
}
