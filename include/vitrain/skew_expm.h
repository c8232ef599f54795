/*
 * skew_expm.h - the matrix exponential of a small b x b real matrix and the
 * adjoint of its Frechet derivative: the map from generators to rotations
 * of the ComRoPE and LieRE encodings (DESIGN §4.5-4.7).
 *
 * Matrices are row-major b x b; b is the block size (2 to 64 in practice,
 * any b >= 1 works). Everything is computed in double, except
 * skew_expm_backward_f, which runs the same algorithm in float.
 *
 * Promises (tests/test_skew_expm.c measures them for b in {2, 4, 8, 16, 64}):
 * - skew_expm(G) equals exp(G) to about 1e-12 in max-norm for skew-symmetric
 *   G with ||G||_1 up to 4 pi * 64 (the largest generator norm of §4.7).
 * - For skew-symmetric G the result is orthogonal to rounding:
 *   ||R^T R - I||_max < 1e-12.
 * - skew_expm_backward is the exact adjoint of the derivative of exp (not of
 *   the approximant): dG = L_exp(G^T, dR), the upper-right block of
 *   exp([[G^T, dR], [0, G^T]]), to about 1e-12 relative at the same norms.
 * - A non-finite entry in G gives an all-NaN result, never a hang or a trap,
 *   so that the trainer's non-finite check sees it.
 *
 * No allocation per call: each thread owns a workspace made once for the
 * largest b it will see. Calls with different workspaces may run in parallel.
 */
#ifndef VITRAIN_SKEW_EXPM_H
#define VITRAIN_SKEW_EXPM_H

typedef struct SkewExpmWork SkewExpmWork;

/* Workspace for any b <= max_b (max_b >= 1): about 22 max_b^2 doubles.
 * Aborts if memory runs out (a size planned at start-up). */
SkewExpmWork *skew_expm_work_create(int max_b);
void skew_expm_work_free(SkewExpmWork *work);

/* R = exp(G) for a general real G. Scaling and squaring with a diagonal
 * Pade approximant of degree 3, 5, 7, 9 or 13 chosen by ||G||_1 (Higham
 * 2005). For skew-symmetric G the approximant r = q(G)^-1 p(G) has
 * p(G) = q(-G) = q(G)^T, so r = q(G)^-1 q(G)^T is orthogonal in exact
 * arithmetic, and so are its squares: only rounding breaks orthogonality.
 * R and G may not overlap. */
void skew_expm(double *R /* (b, b) */, const double *G /* (b, b) */, int b, SkewExpmWork *work);

/* Given G and dL/dR, writes (does not add) dL/dG = L_exp(G^T, dR), the
 * adjoint of the Frechet derivative of exp at G applied to dR, for a general
 * real G (for skew-symmetric G, G^T = -G). Computed by Al-Mohy & Higham
 * 2009, Algorithm 6.4: the Frechet derivative of the scaled Pade approximant
 * alongside it, then squared; about 3x the cost of skew_expm. dG may not
 * overlap G or dR. */
void skew_expm_backward(double *dG /* (b, b) */, const double *G /* (b, b) */,
                        const double *dR /* (b, b) */, int b, SkewExpmWork *work);

/* skew_expm in float at the boundary, double inside. */
void skew_expm_f(float *R /* (b, b) */, const float *G /* (b, b) */, int b, SkewExpmWork *work);

/* skew_expm_backward computed in float throughout, for training, its
 * degree chosen by the bounds of single precision (3, 5 or 7): 1.9x
 * faster at b = 64 (sgemm against dgemm), and within about 1e-5 of
 * max |dG| of the double result for ||G||_1 up to a few hundred (float
 * rounding carried through the squarings; tests/test_skew_expm.c). The
 * gradient it feeds is float already. */
void skew_expm_backward_f(float *dG /* (b, b) */, const float *G /* (b, b) */,
                          const float *dR /* (b, b) */, int b, SkewExpmWork *work);

#endif
