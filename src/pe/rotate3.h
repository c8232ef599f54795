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

/* x (>= 3*triplets) in place: triplet d <- R_d triplet d; R (triplets, 9).
 * Channels past the last triplet are left alone. */
static inline void rotate_triplets(float *x, const float *R, int triplets)
{
    for (int d = 0; d < triplets; d++)
        rotate3_apply(x + 3 * d, R + (ptrdiff_t)ROT3 * d, x + 3 * d);
}

/* The transpose, for the backward: dx = R^T dy, in place. */
static inline void rotate_triplets_transposed(float *x, const float *R, int triplets)
{
    for (int d = 0; d < triplets; d++)
        rotate3_apply_transposed(x + 3 * d, R + (ptrdiff_t)ROT3 * d, x + 3 * d);
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
