/*
 * simd.h - the few vector operations that vitrain's hand-vectorised
 * kernels (attention heads, GELU, the spherical encoding's band product,
 * the b = 8 block rotations) are written in, once for AVX-512 and once for
 * AVX2 with FMA, so that each kernel is written once for both.
 *
 * VT_SIMD is defined where one of them is available. A Vec holds LANES
 * floats (16 or 8); Lanes selects some of them: a mask register on
 * AVX-512, a vector of all-ones or zero lanes on AVX2. On AVX2 a masked
 * load or store costs two operations, so kernels use them for the
 * part-filled vector at the end of a row only.
 */
#ifndef VITRAIN_SIMD_H
#define VITRAIN_SIMD_H

#if defined(__AVX512F__) || (defined(__AVX2__) && defined(__FMA__))
#define VT_SIMD 1
#include <immintrin.h>

#define VT_SIMD_INLINE static inline __attribute__((always_inline))

#ifdef __AVX512F__
typedef __m512 Vec;
typedef __mmask16 Lanes;
enum { LANES = 16 };

/* The first n lanes, 0 <= n <= LANES. */
VT_SIMD_INLINE Lanes first_lanes(int n) { return (Lanes)(0xFFFFu >> (LANES - n)); }
VT_SIMD_INLINE Vec v_load(const float *p) { return _mm512_loadu_ps(p); }
VT_SIMD_INLINE Vec v_load_lanes(Lanes m, const float *p) { return _mm512_maskz_loadu_ps(m, p); }
VT_SIMD_INLINE void v_store(float *p, Vec v) { _mm512_storeu_ps(p, v); }
VT_SIMD_INLINE void v_store_lanes(float *p, Lanes m, Vec v) { _mm512_mask_storeu_ps(p, m, v); }
VT_SIMD_INLINE Vec v_set1(float x) { return _mm512_set1_ps(x); }
VT_SIMD_INLINE Vec v_zero(void) { return _mm512_setzero_ps(); }
VT_SIMD_INLINE Vec v_add(Vec a, Vec b) { return _mm512_add_ps(a, b); }
VT_SIMD_INLINE Vec v_sub(Vec a, Vec b) { return _mm512_sub_ps(a, b); }
VT_SIMD_INLINE Vec v_mul(Vec a, Vec b) { return _mm512_mul_ps(a, b); }
/* a b + c, c - a b and a b - c, each with one rounding. */
VT_SIMD_INLINE Vec v_fmadd(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
VT_SIMD_INLINE Vec v_fnmadd(Vec a, Vec b, Vec c) { return _mm512_fnmadd_ps(a, b, c); }
VT_SIMD_INLINE Vec v_fmsub(Vec a, Vec b, Vec c) { return _mm512_fmsub_ps(a, b, c); }
/* max and min give their second operand where either is NaN. */
VT_SIMD_INLINE Vec v_max(Vec a, Vec b) { return _mm512_max_ps(a, b); }
VT_SIMD_INLINE Vec v_min(Vec a, Vec b) { return _mm512_min_ps(a, b); }
VT_SIMD_INLINE Vec v_abs(Vec a) { return _mm512_abs_ps(a); }
/* Round to the nearest whole number, ties to even. */
VT_SIMD_INLINE Vec v_round(Vec a)
{
    return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/* 1 / a to within 2^-14 (a starting point for a Newton step). */
VT_SIMD_INLINE Vec v_rcp_estimate(Vec a) { return _mm512_rcp14_ps(a); }
VT_SIMD_INLINE Vec v_keep(Lanes m, Vec v) { return _mm512_maskz_mov_ps(m, v); }
VT_SIMD_INLINE Vec v_select(Lanes m, Vec yes, Vec no) { return _mm512_mask_blend_ps(m, no, yes); }
VT_SIMD_INLINE float v_sum(Vec v) { return _mm512_reduce_add_ps(v); }
VT_SIMD_INLINE float v_top(Vec v) { return _mm512_reduce_max_ps(v); }
/* The lanes that hold numbers (not NaN), and those at or above zero. */
VT_SIMD_INLINE Lanes v_numbers(Vec x) { return _mm512_cmp_ps_mask(x, x, _CMP_ORD_Q); }
VT_SIMD_INLINE Lanes v_nonnegative(Vec x)
{
    return _mm512_cmp_ps_mask(x, _mm512_setzero_ps(), _CMP_GE_OQ);
}
/* 2^k for whole k in the float exponent's range. */
VT_SIMD_INLINE Vec v_pow2(Vec k)
{
    const __m512i e = _mm512_add_epi32(_mm512_cvtps_epi32(k), _mm512_set1_epi32(127));
    return _mm512_castsi512_ps(_mm512_slli_epi32(e, 23));
}
/* a 2^k for whole k with 2^k in the float range: one instruction here. */
VT_SIMD_INLINE Vec v_scale2(Vec a, Vec k) { return _mm512_scalef_ps(a, k); }
/* Each run of 8 lanes of x filled with its own lane k (0 <= k < 8). */
VT_SIMD_INLINE Vec v_spread8(Vec x, int k)
{
    const __m512i first = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 8, 8, 8, 8, 8, 8, 8, 8);
    return _mm512_permutexvar_ps(_mm512_add_epi32(first, _mm512_set1_epi32(k)), x);
}
/* Of consecutive vectors before, here and after: here moved up by one or
 * two lanes, the first lanes from the end of before (x[i-1], x[i-2] at
 * lane i), or down, the last lanes from the start of after (x[i+1],
 * x[i+2]). */
VT_SIMD_INLINE Vec v_before1(Vec before, Vec here)
{
    return _mm512_castsi512_ps(
        _mm512_alignr_epi32(_mm512_castps_si512(here), _mm512_castps_si512(before), 15));
}
VT_SIMD_INLINE Vec v_before2(Vec before, Vec here)
{
    return _mm512_castsi512_ps(
        _mm512_alignr_epi32(_mm512_castps_si512(here), _mm512_castps_si512(before), 14));
}
VT_SIMD_INLINE Vec v_after1(Vec here, Vec after)
{
    return _mm512_castsi512_ps(
        _mm512_alignr_epi32(_mm512_castps_si512(after), _mm512_castps_si512(here), 1));
}
VT_SIMD_INLINE Vec v_after2(Vec here, Vec after)
{
    return _mm512_castsi512_ps(
        _mm512_alignr_epi32(_mm512_castps_si512(after), _mm512_castps_si512(here), 2));
}

#else /* AVX2 with FMA */
typedef __m256 Vec;
typedef __m256i Lanes;
enum { LANES = 8 };

VT_SIMD_INLINE Lanes first_lanes(int n)
{
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
VT_SIMD_INLINE Vec v_load(const float *p) { return _mm256_loadu_ps(p); }
VT_SIMD_INLINE Vec v_load_lanes(Lanes m, const float *p) { return _mm256_maskload_ps(p, m); }
VT_SIMD_INLINE void v_store(float *p, Vec v) { _mm256_storeu_ps(p, v); }
VT_SIMD_INLINE void v_store_lanes(float *p, Lanes m, Vec v) { _mm256_maskstore_ps(p, m, v); }
VT_SIMD_INLINE Vec v_set1(float x) { return _mm256_set1_ps(x); }
VT_SIMD_INLINE Vec v_zero(void) { return _mm256_setzero_ps(); }
VT_SIMD_INLINE Vec v_add(Vec a, Vec b) { return _mm256_add_ps(a, b); }
VT_SIMD_INLINE Vec v_sub(Vec a, Vec b) { return _mm256_sub_ps(a, b); }
VT_SIMD_INLINE Vec v_mul(Vec a, Vec b) { return _mm256_mul_ps(a, b); }
VT_SIMD_INLINE Vec v_fmadd(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
VT_SIMD_INLINE Vec v_fnmadd(Vec a, Vec b, Vec c) { return _mm256_fnmadd_ps(a, b, c); }
VT_SIMD_INLINE Vec v_fmsub(Vec a, Vec b, Vec c) { return _mm256_fmsub_ps(a, b, c); }
VT_SIMD_INLINE Vec v_max(Vec a, Vec b) { return _mm256_max_ps(a, b); }
VT_SIMD_INLINE Vec v_min(Vec a, Vec b) { return _mm256_min_ps(a, b); }
VT_SIMD_INLINE Vec v_abs(Vec a) { return _mm256_andnot_ps(_mm256_set1_ps(-0.0f), a); }
VT_SIMD_INLINE Vec v_round(Vec a)
{
    return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
}
/* 1 / a to within 1.5 * 2^-12. */
VT_SIMD_INLINE Vec v_rcp_estimate(Vec a) { return _mm256_rcp_ps(a); }
VT_SIMD_INLINE Vec v_keep(Lanes m, Vec v) { return _mm256_and_ps(v, _mm256_castsi256_ps(m)); }
VT_SIMD_INLINE Vec v_select(Lanes m, Vec yes, Vec no)
{
    return _mm256_blendv_ps(no, yes, _mm256_castsi256_ps(m));
}
VT_SIMD_INLINE float v_sum(Vec v)
{
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
VT_SIMD_INLINE float v_top(Vec v)
{
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}
VT_SIMD_INLINE Lanes v_numbers(Vec x)
{
    return _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_ORD_Q));
}
VT_SIMD_INLINE Lanes v_nonnegative(Vec x)
{
    return _mm256_castps_si256(_mm256_cmp_ps(x, _mm256_setzero_ps(), _CMP_GE_OQ));
}
VT_SIMD_INLINE Vec v_pow2(Vec k)
{
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(k), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
}
VT_SIMD_INLINE Vec v_scale2(Vec a, Vec k) { return _mm256_mul_ps(a, v_pow2(k)); }
VT_SIMD_INLINE Vec v_spread8(Vec x, int k)
{
    return _mm256_permutevar8x32_ps(x, _mm256_set1_epi32(k));
}
/* Byte shifts work within 128-bit halves here: each pairs the half it
 * needs from the neighbour (permute2f128) with the vector's own. */
VT_SIMD_INLINE Vec v_before1(Vec before, Vec here)
{
    const __m256 middle = _mm256_permute2f128_ps(before, here, 0x21);
    return _mm256_castsi256_ps(
        _mm256_alignr_epi8(_mm256_castps_si256(here), _mm256_castps_si256(middle), 12));
}
VT_SIMD_INLINE Vec v_before2(Vec before, Vec here)
{
    const __m256 middle = _mm256_permute2f128_ps(before, here, 0x21);
    return _mm256_castsi256_ps(
        _mm256_alignr_epi8(_mm256_castps_si256(here), _mm256_castps_si256(middle), 8));
}
VT_SIMD_INLINE Vec v_after1(Vec here, Vec after)
{
    const __m256 middle = _mm256_permute2f128_ps(here, after, 0x21);
    return _mm256_castsi256_ps(
        _mm256_alignr_epi8(_mm256_castps_si256(middle), _mm256_castps_si256(here), 4));
}
VT_SIMD_INLINE Vec v_after2(Vec here, Vec after)
{
    const __m256 middle = _mm256_permute2f128_ps(here, after, 0x21);
    return _mm256_castsi256_ps(
        _mm256_alignr_epi8(_mm256_castps_si256(middle), _mm256_castps_si256(here), 8));
}
#endif

#endif /* VT_SIMD */

#endif
