/*
 * gelu.c - exact GELU, y = x * Phi(x), with Phi the standard normal CDF
 * (erf form, as torch.nn.GELU() and timm's default; not the tanh fit).
 *
 * libm's erff and expf are scalar calls: in a ViT step they cost as much as
 * a GEMM. Both are branch-free polynomials that the compiler vectorizes:
 * expf is vec_expf (vecmath.h), erf is 1 - erfc with the erfc fit of
 * Numerical Recipes' erfcc (relative error below 1.2e-7). Against GELU in double on
 * [-12, 12]: at most 4e-7 absolute and 1e-6 relative error (test_ops.c
 * checks 2e-6); the gradient check compares this backward with finite
 * differences of this forward.
 */
#include "vitrain/ops.h"
#include "vitrain/vecmath.h"

#include <math.h>
#include <stdint.h>

/* |x| beyond this changes neither Phi(x) nor phi(x) in float beyond
 * 1e-37 (phi(13) = 5e-38); capped there, the exponentials below stay in
 * vec_expf_in_range's range, and a NaN x becomes 13 there while x itself
 * still carries the NaN into GELU's output. */
static const float TAIL = 13.0f;

static inline float magnitude(float x)
{
    const float a = fabsf(x);
    return a < TAIL ? a : TAIL;
}

/* Phi(x) = erfc(-x / sqrt 2) / 2, with erfc from Numerical Recipes' erfcc
 * (Chebyshev fit, relative error < 1.2e-7 for every argument). */
static inline float normal_cdf(float x)
{
    const float a = magnitude(x), z = a * 0.70710678118654752f;
    const float t = 1.0f / (1.0f + 0.5f * z);
    float p = 0.17087277f;
    p = vec_fmaf(p, t, -0.82215223f);
    p = vec_fmaf(p, t, 1.48851587f);
    p = vec_fmaf(p, t, -1.13520398f);
    p = vec_fmaf(p, t, 0.27886807f);
    p = vec_fmaf(p, t, -0.18628806f);
    p = vec_fmaf(p, t, 0.09678418f);
    p = vec_fmaf(p, t, 0.37409196f);
    p = vec_fmaf(p, t, 1.00002368f);
    p = vec_fmaf(p, t, -1.26551223f);
    /* z^2 = a^2 / 2 = hi + lo exactly, from a rather than the rounded z:
     * any rounding of the exponent costs its size (up to ~85) times
     * 6e-8 in relative error of the tail. The exponent is in [-86, 0]. */
    const float hi = 0.5f * (a * a), lo = 0.5f * fmaf(a, a, -(a * a));
    const float erfc_z = t * vec_expf_in_range(-hi + p) * (1.0f - lo); /* erfc(|x| / sqrt 2) */
    return x >= 0.0f ? 1.0f - 0.5f * erfc_z : 0.5f * erfc_z;
}

static inline float normal_pdf(float x)
{
    const float a = magnitude(x);
    return 0.39894228040143268f * vec_expf_in_range(-0.5f * a * a);
}

void gelu_forward(float *y, const float *x, int64_t n)
{
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * normal_cdf(x[i]);
}

/* y = x Phi(x), so dy/dx = Phi(x) + x phi(x), phi the normal density. */
static inline float gelu_slope(float x, float cdf)
{
    return cdf + x * normal_pdf(x);
}

void gelu_backward(float *dx, const float *dy, const float *x, int64_t n)
{
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++)
        dx[i] = dy[i] * gelu_slope(x[i], normal_cdf(x[i]));
}

void gelu_forward_slope(float *y, float *slope, const float *x, int64_t n)
{
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++) {
        const float cdf = normal_cdf(x[i]);
        y[i] = x[i] * cdf;
        slope[i] = gelu_slope(x[i], cdf);
    }
}

void gelu_slope_backward(float *dx, const float *dy, const float *slope, int64_t n)
{
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++)
        dx[i] = dy[i] * slope[i];
}
