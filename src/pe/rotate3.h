/*
 * rotate3.h - the triplet rotation kernels of the spherical encoding
 * (DESIGN §4.4). Channels (3d, 3d+1, 3d+2) of a vector are rotated by
 * R_d = Yaw(a_d) Roll(b_d), a 3x3 matrix stored row-major in 9 floats.
 *
 * Both generators are fixed skew matrices, so their derivatives are
 * cheap: Yaw(a) = exp(a Gz), Roll(b) = exp(b Gx) with
 *   Gz = [[0,-1,0],[1,0,0],[0,0,0]],  Gx = [[0,0,0],[0,0,-1],[0,1,0]],
 * and each commutes with its own exponential.
 */
#ifndef VITRAIN_PE_ROTATE3_H
#define VITRAIN_PE_ROTATE3_H

#include <math.h>
#include <stddef.h>
#include <string.h>

#include "vitrain/simd.h"

enum { ROT3 = 9 }; /* floats per stored 3x3 matrix */

/* R (3x3 row-major) = Yaw(a) Roll(b), multiplied out:
 *   [[ca, -sa cb,  sa sb],
 *    [sa,  ca cb, -ca sb],
 *    [ 0,     sb,     cb]]. */
static inline void rotate3_matrix(float *R, float a, float b)
{
    const float ca = cosf(a), sa = sinf(a), cb = cosf(b), sb = sinf(b);
    R[0] = ca, R[1] = -sa * cb, R[2] = sa * sb;
    R[3] = sa, R[4] = ca * cb, R[5] = -ca * sb;
    R[6] = 0.0f, R[7] = sb, R[8] = cb;
}

/* y = R v for one triplet. */
static inline void rotate3_apply(float *y, const float *R, const float *v)
{
    const float v0 = v[0], v1 = v[1], v2 = v[2];
    y[0] = R[0] * v0 + R[1] * v1 + R[2] * v2;
    y[1] = R[3] * v0 + R[4] * v1 + R[5] * v2;
    y[2] = R[6] * v0 + R[7] * v1 + R[8] * v2;
}

/* y = R^T v for one triplet. */
static inline void rotate3_apply_transposed(float *y, const float *R, const float *v)
{
    const float v0 = v[0], v1 = v[1], v2 = v[2];
    y[0] = R[0] * v0 + R[3] * v1 + R[6] * v2;
    y[1] = R[1] * v0 + R[4] * v1 + R[7] * v2;
    y[2] = R[2] * v0 + R[5] * v1 + R[8] * v2;
}

/*
 * A whole vector's rotation as a band: triplet d's R_d acts on channels
 * 3d..3d+2, so output channel i = 3d + r reads channels i + o for
 * o = c - r in -2..2. Stored as BAND rows of dim coefficients, row o + 2
 * holding R_d[r][r + o] at channel i (zero where r + o leaves the
 * triplet, so never outside the vector; channels past the last triplet
 * get 1 on the diagonal), the product is five contiguous multiply-adds
 * over the vector, which vectorise, instead of 3 x 3 products on
 * interleaved triplets, which do not.
 */
enum { BAND = 5, BAND_REACH = 2 };

/* band (BAND, dim) of the rotation R (triplets, 9), or of R^T. */
static inline void rotate3_band(float *band, const float *R, int triplets, int dim,
                                int transposed)
{
    for (int i = 0; i < BAND * dim; i++)
        band[i] = 0.0f;
    for (int d = 0; d < triplets; d++)
        for (int r = 0; r < 3; r++)
            for (int c = 0; c < 3; c++) {
                const float *Rd = R + (ptrdiff_t)ROT3 * d;
                band[(c - r + BAND_REACH) * dim + 3 * d + r] =
                    transposed ? Rd[c * 3 + r] : Rd[r * 3 + c];
            }
    for (int i = 3 * triplets; i < dim; i++)
        band[BAND_REACH * dim + i] = 1.0f;
}

#ifdef VT_SIMD
/* rotate3_band_apply for dim a multiple of LANES: the neighbours
 * x[i-2] .. x[i+2] of a vector come from it and the vectors either side by
 * lane shifts, zeros beyond the ends, so x is read once and every load is
 * whole. */
static inline void rotate3_band_apply_vec(float *restrict y, const float *restrict x,
                                          const float *restrict band, int dim)
{
    Vec before = v_zero(), here = v_load(x);
    for (int i = 0; i < dim; i += LANES) {
        const Vec after = i + LANES < dim ? v_load(x + i + LANES) : v_zero();
        Vec sum = v_mul(v_load(band + i), v_before2(before, here));
        sum = v_fmadd(v_load(band + dim + i), v_before1(before, here), sum);
        sum = v_fmadd(v_load(band + 2 * dim + i), here, sum);
        sum = v_fmadd(v_load(band + 3 * dim + i), v_after1(here, after), sum);
        sum = v_fmadd(v_load(band + 4 * dim + i), v_after2(here, after), sum);
        v_store(y + i, sum);
        before = here;
        here = after;
    }
}
#endif

/* y = the band's product with x, both (dim >= 3); they must not overlap.
 * Every channel, the first and last two included, is the same five
 * multiply-adds: the taps beyond the ends read zeros. With vectors
 * (vitrain/simd.h) and dim a multiple of their width, the zeros are
 * shifted in (64-channel heads on AVX-512: a third of the time of a
 * scalar treatment of the ends); otherwise x goes through a window with
 * BAND_REACH zeros at either end. */
static inline void rotate3_band_apply(float *restrict y, const float *restrict x,
                                      const float *restrict band, int dim)
{
#ifdef VT_SIMD
    if (dim % LANES == 0) {
        rotate3_band_apply_vec(y, x, band, dim);
        return;
    }
#endif
    enum { CHUNK = 128 };
    float window[BAND_REACH + CHUNK + BAND_REACH];
    for (int first = 0; first < dim; first += CHUNK) {
        const int count = dim - first < CHUNK ? dim - first : CHUNK;
        /* window[j] = x[first - BAND_REACH + j], zero outside the vector */
        for (int j = 0; j < BAND_REACH; j++) {
            const int before = first - BAND_REACH + j, after = first + count + j;
            window[j] = before >= 0 ? x[before] : 0.0f;
            window[BAND_REACH + count + j] = after < dim ? x[after] : 0.0f;
        }
        memcpy(window + BAND_REACH, x + first, (size_t)count * sizeof(float));
        const float *b0 = band + first, *b1 = b0 + dim, *b2 = b1 + dim, *b3 = b2 + dim,
                    *b4 = b3 + dim;
        float *out = y + first;
#pragma omp simd
        for (int i = 0; i < count; i++)
            out[i] = b0[i] * window[i] + b1[i] * window[i + 1] + b2[i] * window[i + 2] +
                     b3[i] * window[i + 3] + b4[i] * window[i + 4];
    }
}

/*
 * Angle gradients of y = Yaw(a) Roll(b) x for upstream dy; adds into
 * dab (triplets, 2) = (dL/da, dL/db). x is the raw (unrotated) input.
 *   dR/da = Gz Yaw Roll = Gz R, so dL/da = dy . Gz y = dy1 y0 - dy0 y1
 *           with y = R x;
 *   dR/db = Yaw Roll Gx = R Gx, so dL/db = (R^T dy) . Gx x
 *           = g2 x1 - g1 x2 with g = R^T dy.
 */
static inline void rotate_triplets_angle_grad(float *dab, const float *dy, const float *x,
                                              const float *R, int triplets)
{
    for (int d = 0; d < triplets; d++) {
        const float *Rd = R + (ptrdiff_t)ROT3 * d, *v = x + 3 * d, *u = dy + 3 * d;
        float y[3], g[3];
        rotate3_apply(y, Rd, v);
        rotate3_apply_transposed(g, Rd, u);
        dab[2 * d] += u[1] * y[0] - u[0] * y[1];
        dab[2 * d + 1] += g[2] * v[1] - g[1] * v[2];
    }
}

#endif
