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
 *
 * With AVX-512 the same formulas run on groups of four vectors, every step
 * over the four side by side. The polynomials are chains of dependent
 * multiply-adds; one vector at a time (the loops below, as the compiler
 * vectorizes them) the core mostly waits on their latency, and
 * interleaved in program order the four chains overlap: 1.6x faster on
 * the MLP's sizes. The division becomes a reciprocal estimate and one
 * Newton step (within an ulp or two; the bounds above still hold).
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
static const float SQRT_HALF = 0.70710678118654752f, INV_SQRT_2PI = 0.39894228040143268f;

static inline float magnitude(float x)
{
    const float a = fabsf(x);
    return a < TAIL ? a : TAIL;
}

/* erfcc's fit: erfc(z) = t e^(-z^2 + P(t)), t = 1 / (1 + z / 2), with P's
 * coefficients highest degree first. */
enum { ERFC_TERMS = 10 };
static const float ERFC_POLY[ERFC_TERMS] = {0.17087277f,  -0.82215223f, 1.48851587f, -1.13520398f,
                                            0.27886807f,  -0.18628806f, 0.09678418f, 0.37409196f,
                                            1.00002368f, -1.26551223f};

/* Phi(x) = erfc(-x / sqrt 2) / 2, with erfc from Numerical Recipes' erfcc
 * (Chebyshev fit, relative error < 1.2e-7 for every argument). */
static inline float normal_cdf(float x)
{
    const float a = magnitude(x), z = a * SQRT_HALF;
    const float t = 1.0f / (1.0f + 0.5f * z);
    float p = ERFC_POLY[0]; /* written out, so that the callers' loops vectorize */
    p = vec_fmaf(p, t, ERFC_POLY[1]);
    p = vec_fmaf(p, t, ERFC_POLY[2]);
    p = vec_fmaf(p, t, ERFC_POLY[3]);
    p = vec_fmaf(p, t, ERFC_POLY[4]);
    p = vec_fmaf(p, t, ERFC_POLY[5]);
    p = vec_fmaf(p, t, ERFC_POLY[6]);
    p = vec_fmaf(p, t, ERFC_POLY[7]);
    p = vec_fmaf(p, t, ERFC_POLY[8]);
    p = vec_fmaf(p, t, ERFC_POLY[9]);
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
    return INV_SQRT_2PI * vec_expf_in_range(-0.5f * a * a);
}

/* y = x Phi(x), so dy/dx = Phi(x) + x phi(x), phi the normal density. */
static inline float gelu_slope(float x, float cdf)
{
    return cdf + x * normal_pdf(x);
}

#ifdef __AVX512F__
#include <immintrin.h>

enum { GROUP = 4, LANES = 16, GROUP_FLOATS = GROUP * LANES };

/* Four vectors that go through every step together. */
typedef struct Group {
    __m512 v[GROUP];
} Group;

#define INLINE static inline __attribute__((always_inline))
#define EACH(j) for (int j = 0; j < GROUP; j++)

INLINE __m512 splat(float c)
{
    return _mm512_set1_ps(c);
}

/* p t + c in every vector: one step of a polynomial in t. */
INLINE Group poly_step(Group p, Group t, float c)
{
    EACH(j) p.v[j] = _mm512_fmadd_ps(p.v[j], t.v[j], splat(c));
    return p;
}

/* vec_expf_in_range on the group: x in [-87, 88]. */
INLINE Group exp_group(Group x)
{
    Group k, r, p;
    EACH(j) k.v[j] = _mm512_roundscale_ps(_mm512_mul_ps(x.v[j], splat(1.44269504088896341f)),
                                          _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    EACH(j) r.v[j] = _mm512_fmadd_ps(k.v[j], splat(2.12194440e-4f),
                                     _mm512_fnmadd_ps(k.v[j], splat(0.693359375f), x.v[j]));
    EACH(j) p.v[j] = splat(VEC_EXP_POLY[0]);
    for (int i = 1; i < VEC_EXP_TERMS; i++)
        p = poly_step(p, r, VEC_EXP_POLY[i]);
    EACH(j) p.v[j] = _mm512_fmadd_ps(p.v[j], _mm512_mul_ps(r.v[j], r.v[j]),
                                     _mm512_add_ps(r.v[j], splat(1.0f)));
    EACH(j) p.v[j] = _mm512_scalef_ps(p.v[j], k.v[j]);
    return p;
}

/* Phi(x), and phi(x) where pdf is not NULL: normal_cdf and normal_pdf. */
INLINE void normal_group(Group x, Group *cdf, Group *pdf)
{
    Group a, t, p, hi, lo;
    /* min gives its second operand for a NaN, so NaN becomes TAIL as in magnitude(). */
    EACH(j) a.v[j] = _mm512_min_ps(_mm512_abs_ps(x.v[j]), splat(TAIL));
    EACH(j) {
        const __m512 d = _mm512_fmadd_ps(_mm512_mul_ps(a.v[j], splat(SQRT_HALF)), splat(0.5f),
                                         splat(1.0f));
        const __m512 r = _mm512_rcp14_ps(d);
        t.v[j] = _mm512_fmadd_ps(r, _mm512_fnmadd_ps(d, r, splat(1.0f)), r);
    }
    EACH(j) p.v[j] = splat(ERFC_POLY[0]);
    for (int i = 1; i < ERFC_TERMS; i++)
        p = poly_step(p, t, ERFC_POLY[i]);
    EACH(j) {
        const __m512 aa = _mm512_mul_ps(a.v[j], a.v[j]);
        hi.v[j] = _mm512_mul_ps(splat(0.5f), aa);
        lo.v[j] = _mm512_mul_ps(splat(0.5f), _mm512_fmsub_ps(a.v[j], a.v[j], aa));
        p.v[j] = _mm512_sub_ps(p.v[j], hi.v[j]);
    }
    const Group e = exp_group(p);
    EACH(j) {
        const __m512 erfc_z = _mm512_mul_ps(_mm512_mul_ps(t.v[j], e.v[j]),
                                            _mm512_sub_ps(splat(1.0f), lo.v[j]));
        const __m512 half = _mm512_mul_ps(splat(0.5f), erfc_z);
        const __mmask16 positive = _mm512_cmp_ps_mask(x.v[j], _mm512_setzero_ps(), _CMP_GE_OQ);
        cdf->v[j] = _mm512_mask_sub_ps(half, positive, splat(1.0f), half);
    }
    if (!pdf)
        return;
    EACH(j) hi.v[j] = _mm512_mul_ps(_mm512_mul_ps(splat(-0.5f), a.v[j]), a.v[j]);
    *pdf = exp_group(hi);
    EACH(j) pdf->v[j] = _mm512_mul_ps(splat(INV_SQRT_2PI), pdf->v[j]);
}

/* The lanes of group g that hold some of the n elements: all, but in the
 * last group. */
INLINE void group_lanes(__mmask16 lanes[GROUP], int64_t g, int64_t n)
{
    EACH(j) {
        const int64_t left = n - g * GROUP_FLOATS - j * LANES;
        lanes[j] = left >= LANES ? (__mmask16)0xFFFF
                 : left <= 0     ? (__mmask16)0
                                 : (__mmask16)((1u << left) - 1);
    }
}

INLINE Group load_group(const float *x, int64_t g, const __mmask16 lanes[GROUP])
{
    Group v;
    EACH(j) v.v[j] = _mm512_maskz_loadu_ps(lanes[j], x + g * GROUP_FLOATS + j * LANES);
    return v;
}

INLINE void store_group(float *y, int64_t g, const __mmask16 lanes[GROUP], Group v)
{
    EACH(j) _mm512_mask_storeu_ps(y + g * GROUP_FLOATS + j * LANES, lanes[j], v.v[j]);
}

/* x Phi(x), and its slope Phi(x) + x phi(x) where slope is not NULL. */
INLINE void gelu_group(Group x, Group *y, Group *slope)
{
    Group cdf, pdf;
    normal_group(x, &cdf, slope ? &pdf : NULL);
    EACH(j) y->v[j] = _mm512_mul_ps(x.v[j], cdf.v[j]);
    if (slope)
        EACH(j) slope->v[j] = _mm512_fmadd_ps(x.v[j], pdf.v[j], cdf.v[j]);
}

static int64_t groups_of(int64_t n)
{
    return (n + GROUP_FLOATS - 1) / GROUP_FLOATS;
}

void gelu_forward(float *y, const float *x, int64_t n)
{
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < groups_of(n); g++) {
        __mmask16 lanes[GROUP];
        group_lanes(lanes, g, n);
        Group out;
        gelu_group(load_group(x, g, lanes), &out, NULL);
        store_group(y, g, lanes, out);
    }
}

void gelu_backward(float *dx, const float *dy, const float *x, int64_t n)
{
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < groups_of(n); g++) {
        __mmask16 lanes[GROUP];
        group_lanes(lanes, g, n);
        Group out, slope;
        gelu_group(load_group(x, g, lanes), &out, &slope);
        const Group d = load_group(dy, g, lanes);
        EACH(j) slope.v[j] = _mm512_mul_ps(d.v[j], slope.v[j]);
        store_group(dx, g, lanes, slope);
    }
}

void gelu_forward_slope(float *y, float *slope, const float *x, int64_t n)
{
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < groups_of(n); g++) {
        __mmask16 lanes[GROUP];
        group_lanes(lanes, g, n);
        Group out, s;
        gelu_group(load_group(x, g, lanes), &out, &s);
        store_group(y, g, lanes, out);
        store_group(slope, g, lanes, s);
    }
}

#else

void gelu_forward(float *y, const float *x, int64_t n)
{
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++)
        y[i] = x[i] * normal_cdf(x[i]);
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

#endif

void gelu_slope_backward(float *dx, const float *dy, const float *slope, int64_t n)
{
#pragma omp parallel for simd schedule(static)
    for (int64_t i = 0; i < n; i++)
        dx[i] = dy[i] * slope[i];
}
