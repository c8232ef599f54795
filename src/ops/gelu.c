/*
 * gelu.c - exact GELU, y = x * Phi(x), with Phi the standard normal CDF
 * (erf form, as torch.nn.GELU() and timm's default; not the tanh fit).
 *
 * libm's erff and expf are scalar calls: in a ViT step they cost as much as
 * a GEMM. Both are branch-free polynomials that the compiler vectorizes:
 * expf is vec_expf (vecmath.h), erf is 1 - erfc with the erfc fit of
 * Numerical Recipes' erfcc (relative error below 1.2e-7). Against GELU in double on
 * [-12, 12]: at most 4e-7 absolute error, and about 1e-6 relative where
 * |y| > 1e-6 (test_ops.c checks 2e-6; deep in the negative tail, where y
 * falls below 1e-27, it reaches 4e-6); the gradient check compares this
 * backward with finite differences of this forward.
 *
 * With AVX-512, or AVX2 with FMA (vitrain/simd.h), the same formulas run
 * on groups of four vectors, every step over the four side by side. The
 * polynomials are chains of dependent multiply-adds; one vector at a time
 * (the loops below, as the compiler vectorizes them) the core mostly waits
 * on their latency, and interleaved in program order the four chains
 * overlap: 1.6x faster on the MLP's sizes with AVX-512, 2-2.5x with AVX2.
 * The division becomes a reciprocal estimate (14 bits on AVX-512, 12 on
 * AVX2) and one Newton step (within an ulp or two; the bounds above still
 * hold).
 */
#include "vitrain/ops.h"
#include "vitrain/simd.h"
#include "vitrain/vecmath.h"

#include <math.h>
#include <stdbool.h>
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

#ifdef VT_SIMD

/* Vectors per group, on either width (on AVX2 three and four ran alike,
 * 2.2x and 2.4x faster than one at a time). */
enum { GROUP = 4, GROUP_FLOATS = GROUP * LANES };

/* GROUP vectors that go through every step together. */
typedef struct Group {
    Vec v[GROUP];
} Group;

#define EACH(j) for (int j = 0; j < GROUP; j++)

/* p t + c in every vector: one step of a polynomial in t. */
VT_SIMD_INLINE Group poly_step(Group p, Group t, float c)
{
    EACH(j) p.v[j] = v_fmadd(p.v[j], t.v[j], v_set1(c));
    return p;
}

/* vec_expf_in_range on the group: x in [-87, 88], so 2^k is a normal float. */
VT_SIMD_INLINE Group exp_group(Group x)
{
    Group k, r, p;
    EACH(j) k.v[j] = v_round(v_mul(x.v[j], v_set1(1.44269504088896341f)));
    EACH(j) r.v[j] = v_fmadd(k.v[j], v_set1(2.12194440e-4f),
                             v_fnmadd(k.v[j], v_set1(0.693359375f), x.v[j]));
    EACH(j) p.v[j] = v_set1(VEC_EXP_POLY[0]);
    for (int i = 1; i < VEC_EXP_TERMS; i++)
        p = poly_step(p, r, VEC_EXP_POLY[i]);
    EACH(j) p.v[j] = v_fmadd(p.v[j], v_mul(r.v[j], r.v[j]), v_add(r.v[j], v_set1(1.0f)));
    EACH(j) p.v[j] = v_scale2(p.v[j], k.v[j]);
    return p;
}

/* Phi(x), and phi(x) where pdf is not NULL: normal_cdf and normal_pdf. */
VT_SIMD_INLINE void normal_group(Group x, Group *cdf, Group *pdf)
{
    Group a, t, p, hi, lo;
    /* min gives its second operand for a NaN, so NaN becomes TAIL as in magnitude(). */
    EACH(j) a.v[j] = v_min(v_abs(x.v[j]), v_set1(TAIL));
    EACH(j) { /* t = 1 / d: the estimate and one Newton step */
        const Vec d = v_fmadd(v_mul(a.v[j], v_set1(SQRT_HALF)), v_set1(0.5f), v_set1(1.0f));
        const Vec r = v_rcp_estimate(d);
        t.v[j] = v_fmadd(r, v_fnmadd(d, r, v_set1(1.0f)), r);
    }
    EACH(j) p.v[j] = v_set1(ERFC_POLY[0]);
    for (int i = 1; i < ERFC_TERMS; i++)
        p = poly_step(p, t, ERFC_POLY[i]);
    EACH(j) {
        const Vec aa = v_mul(a.v[j], a.v[j]);
        hi.v[j] = v_mul(v_set1(0.5f), aa);
        lo.v[j] = v_mul(v_set1(0.5f), v_fmsub(a.v[j], a.v[j], aa));
        p.v[j] = v_sub(p.v[j], hi.v[j]);
    }
    const Group e = exp_group(p);
    EACH(j) {
        const Vec erfc_z = v_mul(v_mul(t.v[j], e.v[j]), v_sub(v_set1(1.0f), lo.v[j]));
        const Vec half = v_mul(v_set1(0.5f), erfc_z);
        cdf->v[j] = v_select(v_nonnegative(x.v[j]), v_sub(v_set1(1.0f), half), half);
    }
    if (!pdf)
        return;
    EACH(j) hi.v[j] = v_mul(v_mul(v_set1(-0.5f), a.v[j]), a.v[j]);
    *pdf = exp_group(hi);
    EACH(j) pdf->v[j] = v_mul(v_set1(INV_SQRT_2PI), pdf->v[j]);
}

/* x Phi(x), and its slope Phi(x) + x phi(x) where slope is not NULL. */
VT_SIMD_INLINE void gelu_group(Group x, Group *y, Group *slope)
{
    Group cdf, pdf;
    normal_group(x, &cdf, slope ? &pdf : NULL);
    EACH(j) y->v[j] = v_mul(x.v[j], cdf.v[j]);
    if (slope)
        EACH(j) slope->v[j] = v_fmadd(x.v[j], pdf.v[j], cdf.v[j]);
}

/*
 * A group's floats: the whole groups with plain loads and stores, the last
 * one, part-filled, through lanes (each of its vectors the first `left`
 * lanes; on AVX2 a masked access costs two operations, so whole groups
 * avoid them).
 */
typedef struct Span {
    int64_t at;         /* first float */
    bool part;          /* fewer than GROUP_FLOATS floats */
    Lanes lanes[GROUP]; /* part: the lanes of each vector that hold some */
} Span;

VT_SIMD_INLINE Span last_span(int64_t n)
{
    Span s = {.at = n / GROUP_FLOATS * GROUP_FLOATS, .part = true};
    EACH(j) {
        const int64_t left = n - s.at - (int64_t)j * LANES;
        s.lanes[j] = first_lanes(left >= LANES ? LANES : left <= 0 ? 0 : (int)left);
    }
    return s;
}

VT_SIMD_INLINE Group load_group(const float *x, Span s)
{
    Group v;
    EACH(j) v.v[j] = s.part ? v_load_lanes(s.lanes[j], x + s.at + j * LANES)
                             : v_load(x + s.at + j * LANES);
    return v;
}

VT_SIMD_INLINE void store_group(float *y, Span s, Group v)
{
    EACH(j) {
        if (s.part)
            v_store_lanes(y + s.at + j * LANES, s.lanes[j], v.v[j]);
        else
            v_store(y + s.at + j * LANES, v.v[j]);
    }
}

/* The three passes, each on one span. */
VT_SIMD_INLINE void forward_span(float *y, const float *x, Span s)
{
    Group out;
    gelu_group(load_group(x, s), &out, NULL);
    store_group(y, s, out);
}

VT_SIMD_INLINE void backward_span(float *dx, const float *dy, const float *x, Span s)
{
    Group out, slope;
    gelu_group(load_group(x, s), &out, &slope);
    const Group d = load_group(dy, s);
    EACH(j) slope.v[j] = v_mul(d.v[j], slope.v[j]);
    store_group(dx, s, slope);
}

VT_SIMD_INLINE void forward_slope_span(float *y, float *slope, const float *x, Span s)
{
    Group out, sl;
    gelu_group(load_group(x, s), &out, &sl);
    store_group(y, s, out);
    store_group(slope, s, sl);
}

VT_SIMD_INLINE Span whole_span(int64_t g)
{
    return (Span){.at = g * GROUP_FLOATS, .part = false};
}

/* Each pass: the whole groups, which threads share, then the part-filled
 * last one, if any. */
void gelu_forward(float *y, const float *x, int64_t n)
{
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < n / GROUP_FLOATS; g++)
        forward_span(y, x, whole_span(g));
    if (n % GROUP_FLOATS)
        forward_span(y, x, last_span(n));
}

void gelu_backward(float *dx, const float *dy, const float *x, int64_t n)
{
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < n / GROUP_FLOATS; g++)
        backward_span(dx, dy, x, whole_span(g));
    if (n % GROUP_FLOATS)
        backward_span(dx, dy, x, last_span(n));
}

void gelu_forward_slope(float *y, float *slope, const float *x, int64_t n)
{
#pragma omp parallel for schedule(static)
    for (int64_t g = 0; g < n / GROUP_FLOATS; g++)
        forward_slope_span(y, slope, x, whole_span(g));
    if (n % GROUP_FLOATS)
        forward_slope_span(y, slope, x, last_span(n));
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
