/*
 * skew_expm.c - exp(G) and the adjoint of its Frechet derivative for the
 * b x b generators of ComRoPE and LieRE (skew_expm.h, DESIGN §4.7).
 *
 * Forward: Higham (2005), "The scaling and squaring method for the matrix
 * exponential revisited", Algorithm 2.3: the diagonal Pade approximant
 * r_m = q_m^-1 p_m of the smallest degree m in {3, 5, 7, 9} whose bound
 * theta_m covers ||G||_1, else m = 13 after scaling G by 2^-s so that
 * ||G/2^s||_1 <= theta_13; then r_m is squared s times. The bounds keep the
 * backward error of the approximant below the unit roundoff in double;
 * the float build (the backward) uses those of single precision (degrees
 * 3, 5, 7). For skew-symmetric G a bound on ||G||_2, which the bounds
 * allow as well, stands in for ||G||_1 (degree_norm in skew_expm_impl.h).
 *
 * Backward: Al-Mohy & Higham (2009), "Computing the Frechet derivative of
 * the matrix exponential, with an application to condition number
 * estimation", Algorithm 6.4: the same scheme carrying L = L_r(A, E), the
 * derivative of the approximant in direction E, through the solve and
 * through each squaring (L <- R L + L R, the product rule for R^2), with its
 * own, smaller bounds ell_m. With A = G^T and E = dR this is the adjoint:
 * <W, L(G, X)> = <L(G^T, W), X> for the exponential.
 *
 * Notation: p_m(A) = V + U, q_m(A) = V - U with U odd and V even in A;
 * Lu, Lv are their Frechet derivatives in direction E.
 *
 * The algorithm is written once, in skew_expm_impl.h, and compiled in
 * double (every promise of skew_expm.h) and in float (the backward for
 * training, where sgemm runs 64 x 64 products 2.4x faster than dgemm).
 */
#include "vitrain/skew_expm.h"

#include "vitrain/common.h"
#include "vitrain/parallel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_DEGREE = 13, POWERS = 4 };

/* The degrees a precision chooses from, each with the largest ||A||_1 it
 * covers (theta_m); the last one is taken after scaling for larger norms. */
typedef struct DegreeBounds {
    int count;
    int degree[5];
    double theta[5];
} DegreeBounds;

/* Double. Higham 2005, Table 2.3: theta_m of the exponential. */
static const DegreeBounds EXPM_DOUBLE = {
    5, {3, 5, 7, 9, 13},
    {1.495585217958292e-2, 2.539398330063230e-1, 9.504178996162932e-1, 2.097847961257068e0,
     5.371920351148152e0}};
/* Al-Mohy & Higham 2009, Table 6.1: ell_m for the exponential and its
 * Frechet derivative together. */
static const DegreeBounds FRECHET_DOUBLE = {
    5, {3, 5, 7, 9, 13}, {1.08e-2, 2.00e-1, 7.83e-1, 1.78e0, 4.74e0}};

/* Single (unit roundoff 2^-24), for the float build, where degree 7 after
 * scaling costs fewer products than 9 or 13 at any norm (Higham 2005, §2).
 * theta_m from his Table 2.3 (for the float exponential, which training
 * does not call: its forward runs in double, DESIGN §4.7); ell_m from the
 * bound of Al-Mohy & Higham 2009, §6, on the Frechet derivative of
 * h_2m+1(x) = log(e^-x r_m(x)), sum k |h_k| x^(k-1) <= 2^-24, evaluated
 * from the exact series (the same evaluation gives Higham's single
 * theta_m to eight digits). */
static const DegreeBounds EXPM_SINGLE = {
    3, {3, 5, 7}, {4.258730016922831e-1, 1.880152677804762e0, 3.925724783138660e0}};
static const DegreeBounds FRECHET_SINGLE = {
    3, {3, 5, 7}, {3.080330e-1, 1.482532e0, 3.248671e0}};

/* c[j], j = 0..m, of p_m(x) = sum c_j x^j with q_m(x) = p_m(-x), from
 * c_j = (2m - j)! m! / ((2m)! j! (m - j)!), normalised to c_0 = 1. */
static void pade_coefficients(double *c, int m)
{
    c[0] = 1.0;
    for (int j = 0; j < m; j++)
        c[j + 1] = c[j] * (double)(m - j) / ((double)(2 * m - j) * (double)(j + 1));
}

/* Degree m and squarings s for ||A|| <= norm under the bounds (the
 * 1-norm, or for skew-symmetric A a bound on the 2-norm: degree_norm). */
static void choose_degree(double norm, const DegreeBounds *bounds, int *m, int *s)
{
    VT_ASSERT(isfinite(norm)); /* else the halving loop below never ends */
    *s = 0;
    const int last = bounds->count - 1;
    for (int i = 0; i < last; i++)
        if (norm <= bounds->theta[i]) {
            *m = bounds->degree[i];
            return;
        }
    *m = bounds->degree[last];
    /* Smallest s with norm / 2^s <= theta of the last degree; halving is
     * exact, and a finite norm ends the loop after at most ~1030 steps. */
    for (double x = norm / bounds->theta[last]; x > 1.0; x *= 0.5)
        (*s)++;
}

/* Below this size the plain loop beats a BLAS call's packing overhead. */
enum { BLAS_MIN_N = 16 };

/* Columns whose 1-norm sums grow together (norm1). */
enum { NORM_CHUNK = 64 };

/* Largest ||A||_1 whose even powers (to A^6) are formed to bound ||A||_2
 * (degree_norm): their entries stay far inside float's range. */
#define SKEW_BOUND_MAX 1e4

/* Longest row the LU solve holds in its accumulator (lu_solve_sized). */
enum { SOLVE_MAX_N = 64 };

/* Columns of the b = 64 solve's panel (lu_solve64): four rows of it fill
 * 16 vector registers. */
#ifdef __AVX512F__
enum { SOLVE_PANEL_BYTES = 256 };
#else
enum { SOLVE_PANEL_BYTES = 128 };
#endif

/* Matrices per call (skew_expm_impl.h's Mats). */
enum { MATS = 2 + 2 * POWERS + 4 + 2 + 1 + 2 };

#define REAL double
#define NAME(x) x##_d
#define GEMM blas_dgemm
#define TRSM blas_dtrsm
#define EXPM_BOUNDS EXPM_DOUBLE
#define FRECHET_BOUNDS FRECHET_DOUBLE
#include "skew_expm_impl.h"
#undef REAL
#undef NAME
#undef GEMM
#undef TRSM
#undef EXPM_BOUNDS
#undef FRECHET_BOUNDS

#define REAL float
#define NAME(x) x##_f
#define GEMM blas_sgemm
#define TRSM blas_strsm
#define EXPM_BOUNDS EXPM_SINGLE
#define FRECHET_BOUNDS FRECHET_SINGLE
#include "skew_expm_impl.h"
#undef REAL
#undef NAME
#undef GEMM
#undef TRSM
#undef EXPM_BOUNDS
#undef FRECHET_BOUNDS

struct SkewExpmWork {
    int max_b;
    int *piv;                 /* (max_b) row swaps of the LU factorisation */
    double *gin, *out;        /* double copies for skew_expm_f */
    Mats_d d;                 /* the double matrices */
    Mats_f f;                 /* float matrices over the same memory */
    double *block;            /* the single allocation the above point into */
};

SkewExpmWork *skew_expm_work_create(int max_b)
{
    VT_ASSERT(max_b >= 1);
    SkewExpmWork *work = vt_xcalloc(1, sizeof(*work));
    const size_t nn = (size_t)max_b * (size_t)max_b;
    work->max_b = max_b;
    work->piv = vt_xmalloc((size_t)max_b * sizeof(int));
    work->block = vt_xmalloc((MATS + 2) * nn * sizeof(double));
    work->gin = mats_bind_d(&work->d, work->block, work->piv, nn);
    work->out = work->gin + nn;
    /* A call runs in one precision, so the float matrices may overlay the
     * double ones (they take half the bytes). */
    mats_bind_f(&work->f, (float *)work->block, work->piv, nn);
    return work;
}

void skew_expm_work_free(SkewExpmWork *work)
{
    if (!work)
        return;
    free(work->piv);
    free(work->block);
    free(work);
}

void skew_expm(double *R, const double *G, int b, SkewExpmWork *work)
{
    VT_ASSERT(work && b >= 1 && b <= work->max_b);
    expm_d(R, G, b, &work->d);
}

void skew_expm_backward(double *dG, const double *G, const double *dR, int b, SkewExpmWork *work)
{
    VT_ASSERT(work && b >= 1 && b <= work->max_b);
    expm_backward_d(dG, G, dR, b, &work->d);
}

void skew_expm_f(float *R, const float *G, int b, SkewExpmWork *work)
{
    VT_ASSERT(work && b >= 1 && b <= work->max_b);
    const size_t len = (size_t)b * (size_t)b;
    for (size_t i = 0; i < len; i++)
        work->gin[i] = G[i];
    expm_d(work->out, work->gin, b, &work->d);
    for (size_t i = 0; i < len; i++)
        R[i] = (float)work->out[i];
}

void skew_expm_backward_f(float *dG, const float *G, const float *dR, int b, SkewExpmWork *work)
{
    VT_ASSERT(work && b >= 1 && b <= work->max_b);
    expm_backward_f(dG, G, dR, b, &work->f);
}
