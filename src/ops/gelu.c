/*
 * gelu.c - exact GELU, y = x * Phi(x), with Phi the standard normal CDF
 * (erf form, as torch.nn.GELU() and timm's default; not the tanh fit).
 */
#include "vitrain/ops.h"

#include <math.h>

void gelu_forward(float *y, const float *x, int64_t n)
{
    const float inv_sqrt2 = 0.70710678118654752f;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
        y[i] = 0.5f * x[i] * (1.0f + erff(x[i] * inv_sqrt2));
}

void gelu_backward(float *dx, const float *dy, const float *x, int64_t n)
{
    /* y = x Phi(x), so dy/dx = Phi(x) + x phi(x), phi the normal density. */
    const float inv_sqrt2 = 0.70710678118654752f;
    const float inv_sqrt_2pi = 0.39894228040143268f;
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++) {
        float cdf = 0.5f * (1.0f + erff(x[i] * inv_sqrt2));
        float pdf = inv_sqrt_2pi * expf(-0.5f * x[i] * x[i]);
        dx[i] += dy[i] * (cdf + x[i] * pdf);
    }
}
