/*
 * rotate.h - the rotation kernels the rotary encodings share (DESIGN §4):
 * interleaved 2x2 pair rotations. (Triplet and block kernels live beside
 * the encodings that use them.)
 */
#ifndef VITRAIN_PE_ROTATE_H
#define VITRAIN_PE_ROTATE_H

/* x (2*pairs) in place: pair j (x[2j], x[2j+1]) -> (a c - b s, a s + b c). */
static inline void rotate_pairs(float *x, const float *c, const float *s, int pairs)
{
    for (int j = 0; j < pairs; j++) {
        const float a = x[2 * j], b = x[2 * j + 1];
        x[2 * j] = a * c[j] - b * s[j];
        x[2 * j + 1] = a * s[j] + b * c[j];
    }
}

/* The transpose, for the backward: dx = R^T dy. */
static inline void rotate_pairs_transposed(float *x, const float *c, const float *s, int pairs)
{
    for (int j = 0; j < pairs; j++) {
        const float a = x[2 * j], b = x[2 * j + 1];
        x[2 * j] = a * c[j] + b * s[j];
        x[2 * j + 1] = -a * s[j] + b * c[j];
    }
}

/* dL/dt of pair j for y = R(t) x and upstream dy: dy . (dR/dt) x
 * = dy0 (-a s - b c) + dy1 (a c - b s) = -dy0 y1 + dy1 y0. Adds into dt. */
static inline void rotate_pairs_angle_grad(float *dt, const float *dy, const float *x,
                                           const float *c, const float *s, int pairs)
{
    for (int j = 0; j < pairs; j++) {
        const float a = x[2 * j], b = x[2 * j + 1];
        const float y0 = a * c[j] - b * s[j], y1 = a * s[j] + b * c[j];
        dt[j] += dy[2 * j + 1] * y0 - dy[2 * j] * y1;
    }
}

#endif
