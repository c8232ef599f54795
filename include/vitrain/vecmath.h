/*
 * vecmath.h - e^x as a branch-free polynomial that loops vectorize, and
 * the fused multiply-add its polynomials (and GELU's) are made of.
 *
 * libm's expf is a scalar call: inside GELU and the attention softmax it
 * costs as much as the GEMMs around them. This one is Cody-Waite range
 * reduction and Cephes' polynomial, about 1 ulp on [-87, 88].
 */
#ifndef VITRAIN_VECMATH_H
#define VITRAIN_VECMATH_H

#include <math.h>
#include <stdint.h>

/* a b + c for polynomial steps: one fused instruction with one rounding
 * where the target has FMA (ISO C does not let the compiler fuse a b + c
 * by itself, and unfused the polynomials below cost twice the
 * instructions); elsewhere a product and a sum, as a libm fmaf call would
 * not vectorize. The last bits therefore depend on the target, like
 * everything the build flags choose. */
static inline float vec_fmaf(float a, float b, float c)
{
#ifdef __FMA__
    return fmaf(a, b, c);
#else
    return a * b + c;
#endif
}

/* Cephes' e^r = 1 + r + r^2 p(r) on |r| <= ln(2) / 2: p's coefficients,
 * highest degree first (the vector versions in head_kernels.c and gelu.c
 * use them too). */
enum { VEC_EXP_TERMS = 6 };
static const float VEC_EXP_POLY[VEC_EXP_TERMS] = {1.9875691500e-4f, 1.3981999507e-3f,
                                                  8.3334519073e-3f, 4.1665795894e-2f,
                                                  1.6666665459e-1f, 5.0000001201e-1f};

/* e^x for x the caller keeps in [-87, 88] (so never NaN): the clamps of
 * vec_expf cost a fifth of GELU's time, which bounds its argument once
 * instead. Written without libm calls (floorf) so that loops vectorize. */
static inline float vec_expf_in_range(float x)
{
    /* k = round(x / ln 2): adding 1.5 * 2^23 pushes the fraction out. */
    const float k = (x * 1.44269504088896341f + 12582912.0f) - 12582912.0f;
    const float r = (x - k * 0.693359375f) + k * 2.12194440e-4f;
    /* Written out: a loop here would keep the callers' loops from
     * vectorizing. */
    float p = VEC_EXP_POLY[0];
    p = vec_fmaf(p, r, VEC_EXP_POLY[1]);
    p = vec_fmaf(p, r, VEC_EXP_POLY[2]);
    p = vec_fmaf(p, r, VEC_EXP_POLY[3]);
    p = vec_fmaf(p, r, VEC_EXP_POLY[4]);
    p = vec_fmaf(p, r, VEC_EXP_POLY[5]);
    p = vec_fmaf(p, r * r, r + 1.0f);
    const union {
        uint32_t bits;
        float value;
    } scale = {.bits = (uint32_t)((int32_t)k + 127) << 23};
    return p * scale.value;
}

/* e^x for any x: inputs beyond [-87, 88] are clamped, so the result is
 * never 0 or infinite (the softmax never needs those); NaN stays NaN, so
 * that a diverging step still shows in the loss. */
static inline float vec_expf(float x_in)
{
    /* NaN clamps too (every comparison with NaN is false), which keeps the
     * conversion of k in vec_expf_in_range defined; it is given back at
     * the end. */
    float x = x_in > -87.0f ? x_in : -87.0f;
    x = x < 88.0f ? x : 88.0f;
    const float y = vec_expf_in_range(x);
    return x_in == x_in ? y : x_in;
}

#endif
