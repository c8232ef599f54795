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

/* y = the band's product with x, both (dim >= 3); they must not overlap.
 * Channels 2..dim-3 read all five neighbours in one vectorised loop; the
 * two at each end skip the neighbours outside the vector. */
static inline void rotate3_band_apply(float *restrict y, const float *restrict x,
                                      const float *restrict band, int dim)
{
    const float *b0 = band, *b1 = band + dim, *b2 = band + 2 * dim, *b3 = band + 3 * dim,
                *b4 = band + 4 * dim;
#pragma omp simd
    for (int i = BAND_REACH; i < dim - BAND_REACH; i++)
        y[i] = b0[i] * x[i - 2] + b1[i] * x[i - 1] + b2[i] * x[i] + b3[i] * x[i + 1] +
               b4[i] * x[i + 2];
    const int ends[4] = {0, 1, dim - 2, dim - 1};
    for (int e = 0; e < 4; e++) {
        const int i = ends[e];
        float sum = 0.0f;
        for (int o = -BAND_REACH; o <= BAND_REACH; o++)
            if (i + o >= 0 && i + o < dim)
                sum += band[(o + BAND_REACH) * dim + i] * x[i + o];
        y[i] = sum;
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
