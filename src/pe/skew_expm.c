/*
 * skew_expm.c - exp(G) and the adjoint of its Frechet derivative for the
 * b x b generators of ComRoPE and LieRE (skew_expm.h, DESIGN §4.7).
 *
 * Forward: Higham (2005), "The scaling and squaring method for the matrix
 * exponential revisited", Algorithm 2.3: the diagonal Pade approximant
 * r_m = q_m^-1 p_m of the smallest degree m in {3, 5, 7, 9} whose bound
 * theta_m covers ||G||_1, else m = 13 after scaling G by 2^-s so that
 * ||G/2^s||_1 <= theta_13; then r_m is squared s times. The bounds keep the
 * backward error of the approximant below the unit roundoff in double.
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
 */
#include "vitrain/skew_expm.h"

#include "vitrain/common.h"
#include "vitrain/parallel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { MAX_DEGREE = 13, LOW_DEGREES = 4, POWERS = 4 };

static const int DEGREES[LOW_DEGREES + 1] = {3, 5, 7, 9, 13};
/* Higham 2005, Table 2.3: theta_m for double precision. */
static const double THETA_EXPM[LOW_DEGREES + 1] = {
    1.495585217958292e-2, 2.539398330063230e-1, 9.504178996162932e-1, 2.097847961257068e0,
    5.371920351148152e0};
/* Al-Mohy & Higham 2009, Table 6.1: ell_m for the exponential and its
 * Frechet derivative together. */
static const double ELL_FRECHET[LOW_DEGREES + 1] = {1.08e-2, 2.00e-1, 7.83e-1, 1.78e0, 4.74e0};

struct SkewExpmWork {
    int max_b;
    int *piv;                 /* (max_b) row swaps of the LU factorisation */
    double *a, *e;            /* scaled A and E */
    double *pw[POWERS + 1];   /* pw[j] = A^(2j), j = 1..4 (pw[0] unused) */
    double *mw[POWERS + 1];   /* mw[j] = L(A^(2j), E) */
    double *u, *v, *lu, *lv;  /* Pade parts and their derivatives */
    double *w, *t;            /* scratch */
    double *q;                /* LU factors of q_m(A) = V - U */
    double *r, *l;            /* r_m(A), then its squares; L likewise */
    double *gin, *din, *out;  /* double copies for the float variants */
    double *block;            /* the single allocation the above point into */
};

enum { WORK_MATRICES = 2 + 2 * POWERS + 4 + 2 + 1 + 2 + 3 };

SkewExpmWork *skew_expm_work_create(int max_b)
{
    VT_ASSERT(max_b >= 1);
    SkewExpmWork *work = vt_xcalloc(1, sizeof(*work));
    const size_t nn = (size_t)max_b * (size_t)max_b;
    work->max_b = max_b;
    work->piv = vt_xmalloc((size_t)max_b * sizeof(int));
    work->block = vt_xmalloc(WORK_MATRICES * nn * sizeof(double));
    double *next = work->block;
    double **slots[] = {
        &work->a,  &work->e,  &work->pw[1], &work->pw[2], &work->pw[3], &work->pw[4],
        &work->mw[1], &work->mw[2], &work->mw[3], &work->mw[4], &work->u, &work->v,
        &work->lu, &work->lv, &work->w, &work->t, &work->q, &work->r, &work->l,
        &work->gin, &work->din, &work->out};
    _Static_assert(sizeof(slots) / sizeof(slots[0]) == WORK_MATRICES, "one slot per matrix");
    for (int i = 0; i < WORK_MATRICES; i++, next += nn)
        *slots[i] = next;
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

/* ---- small dense kernels (n <= 64) --------------------------------------- */

/* Below this size the plain loop beats a BLAS call's packing overhead. */
enum { BLAS_MIN_N = 16 };

/* matmul for n = 8, the default block size: fixed trip counts keep a row
 * of C in vector registers, one multiply-add per row of B. */
static void matmul8(double *restrict C, const double *restrict A, const double *restrict B,
                    int accumulate)
{
    for (int i = 0; i < 8; i++) {
        double c[8];
#pragma omp simd
        for (int j = 0; j < 8; j++)
            c[j] = accumulate ? C[i * 8 + j] : 0.0;
        for (int k = 0; k < 8; k++)
#pragma omp simd
            for (int j = 0; j < 8; j++)
                c[j] += A[i * 8 + k] * B[k * 8 + j];
        memcpy(C + i * 8, c, sizeof c);
    }
}

/* C = A B, or C += A B when accumulate; C overlaps neither A nor B. A
 * dense LieRE generator is 64 x 64, where OpenBLAS runs about three times
 * the plain loop. The encodings call this from their parallel regions, one
 * matrix per thread, where OpenBLAS does not start threads of its own. */
static void matmul(double *restrict C, const double *restrict A, const double *restrict B, int n,
                   int accumulate)
{
    if (n == 8) {
        matmul8(C, A, B, accumulate);
        return;
    }
    if (n >= BLAS_MIN_N) {
        blas_dgemm(false, false, n, n, n, 1.0, A, n, B, n, accumulate ? 1.0 : 0.0, C, n);
        return;
    }
    if (!accumulate)
        memset(C, 0, (size_t)n * (size_t)n * sizeof(double));
    for (int i = 0; i < n; i++) {
        double *restrict c = C + (size_t)i * n;
        for (int k = 0; k < n; k++) {
            const double aik = A[(size_t)i * n + k];
            const double *restrict brow = B + (size_t)k * n;
            for (int j = 0; j < n; j++)
                c[j] += aik * brow[j];
        }
    }
}

/* y += alpha x over n*n entries. */
static void axpy(double *restrict y, double alpha, const double *restrict x, int n)
{
    const size_t len = (size_t)n * (size_t)n;
    for (size_t i = 0; i < len; i++)
        y[i] += alpha * x[i];
}

/* y = alpha I. */
static void set_identity(double *y, double alpha, int n)
{
    memset(y, 0, (size_t)n * (size_t)n * sizeof(double));
    for (int i = 0; i < n; i++)
        y[(size_t)i * n + i] = alpha;
}

static double norm1(const double *A, int n)
{
    double best = 0.0;
    for (int j = 0; j < n; j++) {
        double sum = 0.0;
        for (int i = 0; i < n; i++)
            sum += fabs(A[(size_t)i * n + j]);
        /* A NaN must stick, so that the caller sees it: no later column
         * may replace it (every comparison with NaN is false). */
        if (sum > best || isnan(sum))
            best = sum;
        if (isnan(best))
            break;
    }
    return best;
}

static inline void swap_rows(double *X, int a, int b, int n)
{
    for (int j = 0; j < n; j++) {
        const double tmp = X[(size_t)a * n + j];
        X[(size_t)a * n + j] = X[(size_t)b * n + j];
        X[(size_t)b * n + j] = tmp;
    }
}

/* In place q = P L U with partial pivoting; piv[k] is the row swapped with
 * row k at step k. q_m(A) is nonsingular (well conditioned, even) for
 * ||A||_1 <= theta_13, so no zero pivot can occur for finite input. */
static inline void lu_factor_sized(double *q, int *piv, int n)
{
    for (int k = 0; k < n; k++) {
        int p = k;
        for (int i = k + 1; i < n; i++)
            if (fabs(q[(size_t)i * n + k]) > fabs(q[(size_t)p * n + k]))
                p = i;
        piv[k] = p;
        if (p != k)
            swap_rows(q, k, p, n);
        const double inv = 1.0 / q[(size_t)k * n + k];
        for (int i = k + 1; i < n; i++) {
            double *row = q + (size_t)i * n;
            const double f = row[k] * inv;
            row[k] = f;
            for (int j = k + 1; j < n; j++)
                row[j] -= f * q[(size_t)k * n + j];
        }
    }
}

/* X <- q^-1 X for the n right-hand sides in the columns of X (n x n),
 * working on whole rows so that the inner loops run along memory. */
static inline void lu_solve_sized(const double *q, const int *piv, double *X, int n)
{
    for (int k = 0; k < n; k++)
        if (piv[k] != k)
            swap_rows(X, k, piv[k], n);
    for (int i = 1; i < n; i++)
        for (int k = 0; k < i; k++) {
            const double f = q[(size_t)i * n + k];
#pragma omp simd
            for (int j = 0; j < n; j++)
                X[(size_t)i * n + j] -= f * X[(size_t)k * n + j];
        }
    for (int i = n - 1; i >= 0; i--) {
        for (int k = i + 1; k < n; k++) {
            const double f = q[(size_t)i * n + k];
#pragma omp simd
            for (int j = 0; j < n; j++)
                X[(size_t)i * n + j] -= f * X[(size_t)k * n + j];
        }
        const double inv = 1.0 / q[(size_t)i * n + i];
#pragma omp simd
        for (int j = 0; j < n; j++)
            X[(size_t)i * n + j] *= inv;
    }
}

/* b = 8, the default block size, gets its own copies of the two: fixed
 * trip counts turn every row update into whole-vector operations. */
static void lu_factor(double *q, int *piv, int n)
{
    if (n == 8)
        lu_factor_sized(q, piv, 8);
    else
        lu_factor_sized(q, piv, n);
}

static void lu_solve(const double *q, const int *piv, double *X, int n)
{
    if (n == 8) {
        lu_solve_sized(q, piv, X, 8);
        return;
    }
    if (n < BLAS_MIN_N) {
        lu_solve_sized(q, piv, X, n);
        return;
    }
    /* Dense LieRE's 64 x 64: OpenBLAS's triangular solves (its encoding
     * phase ran 10 % shorter than with the loops above). */
    for (int k = 0; k < n; k++)
        if (piv[k] != k)
            swap_rows(X, k, piv[k], n);
    blas_dtrsm(false, true, n, n, q, n, X, n);
    blas_dtrsm(true, false, n, n, q, n, X, n);
}

/* ---- Pade approximant ------------------------------------------------- */

/* c[j], j = 0..m, of p_m(x) = sum c_j x^j with q_m(x) = p_m(-x), from
 * c_j = (2m - j)! m! / ((2m)! j! (m - j)!), normalised to c_0 = 1. */
static void pade_coefficients(double *c, int m)
{
    c[0] = 1.0;
    for (int j = 0; j < m; j++)
        c[j + 1] = c[j] * (double)(m - j) / ((double)(2 * m - j) * (double)(j + 1));
}

/* Even powers pw[j] = A^(2j), j = 1..k, and when E is given their
 * derivatives mw[j] = L(A^(2j), E) by the product rule on
 * A^(2j) = A^(2j-2) A^2: mw[j] = A^(2j-2) mw[1] + mw[j-1] A^2. */
static void even_powers(SkewExpmWork *w, int k, int with_e, int n)
{
    matmul(w->pw[1], w->a, w->a, n, 0);
    if (with_e) {
        matmul(w->mw[1], w->a, w->e, n, 0);
        matmul(w->mw[1], w->e, w->a, n, 1);
    }
    for (int j = 2; j <= k; j++) {
        matmul(w->pw[j], w->pw[j - 1], w->pw[1], n, 0);
        if (with_e) {
            matmul(w->mw[j], w->pw[j - 1], w->mw[1], n, 0);
            matmul(w->mw[j], w->mw[j - 1], w->pw[1], n, 1);
        }
    }
}

/* Degrees 3..9, evaluated directly from the even powers:
 * U = A W with W = sum_j c_(2j+1) A^(2j), V = sum_j c_(2j) A^(2j);
 * Lu = A Lw + E W with Lw = sum_(j>=1) c_(2j+1) M_(2j), Lv = sum c_(2j) M_(2j). */
static void pade_low(SkewExpmWork *w, int m, int with_e, int n)
{
    double c[MAX_DEGREE + 1];
    pade_coefficients(c, m);
    const int k = m / 2;
    even_powers(w, k, with_e, n);
    set_identity(w->w, c[1], n);
    set_identity(w->v, c[0], n);
    for (int j = 1; j <= k; j++) {
        axpy(w->w, c[2 * j + 1], w->pw[j], n);
        axpy(w->v, c[2 * j], w->pw[j], n);
    }
    matmul(w->u, w->a, w->w, n, 0);
    if (!with_e)
        return;
    memset(w->t, 0, (size_t)n * (size_t)n * sizeof(double));
    memset(w->lv, 0, (size_t)n * (size_t)n * sizeof(double));
    for (int j = 1; j <= k; j++) {
        axpy(w->t, c[2 * j + 1], w->mw[j], n);
        axpy(w->lv, c[2 * j], w->mw[j], n);
    }
    matmul(w->lu, w->a, w->t, n, 0);
    matmul(w->lu, w->e, w->w, n, 1);
}

/* y = c6 X6 + c4 X4 + c2 X2 (+ c0 I when with_identity), the blocks of
 * Higham's degree-13 scheme. */
static void combine3(double *y, const double *c, int first, double *const *x, int with_identity,
                     int n)
{
    if (with_identity)
        set_identity(y, c[first], n);
    else
        memset(y, 0, (size_t)n * (size_t)n * sizeof(double));
    for (int j = 1; j <= 3; j++)
        axpy(y, c[first + 2 * j], x[j], n);
}

/* Degree 13 (Higham 2005, eq. 2.3-2.4; Al-Mohy & Higham 2009, Alg. 6.4):
 * W = A6 (c13 A6 + c11 A4 + c9 A2) + (c7 A6 + c5 A4 + c3 A2 + c1 I), U = A W,
 * V = A6 (c12 A6 + c10 A4 + c8 A2) + (c6 A6 + c4 A4 + c2 A2 + c0 I),
 * and their derivatives by the product rule. Uses pw[4]/mw[4] as scratch. */
static void pade13(SkewExpmWork *w, int with_e, int n)
{
    double c[MAX_DEGREE + 1];
    pade_coefficients(c, 13);
    even_powers(w, 3, with_e, n);
    double *w1 = w->pw[4], *z1 = w->t;
    combine3(w1, c, 7, w->pw, 0, n); /* c9 A2 + c11 A4 + c13 A6 */
    combine3(w->w, c, 1, w->pw, 1, n);
    matmul(w->w, w->pw[3], w1, n, 1);
    matmul(w->u, w->a, w->w, n, 0);
    combine3(z1, c, 6, w->pw, 0, n); /* c8 A2 + c10 A4 + c12 A6 */
    combine3(w->v, c, 0, w->pw, 1, n);
    matmul(w->v, w->pw[3], z1, n, 1);
    if (!with_e)
        return;
    /* Lv = A6 Lz1 + M6 Z1 + Lz2, with Lz1, Lz2 the same sums over the M's. */
    double *lx = w->mw[4];
    combine3(w->lv, c, 0, w->mw, 0, n);
    matmul(w->lv, w->mw[3], z1, n, 1);
    combine3(lx, c, 6, w->mw, 0, n);
    matmul(w->lv, w->pw[3], lx, n, 1);
    /* Lw = A6 Lw1 + M6 W1 + Lw2 (into z1, free now); Lu = A Lw + E W. */
    combine3(z1, c, 1, w->mw, 0, n);
    matmul(z1, w->mw[3], w1, n, 1);
    combine3(lx, c, 7, w->mw, 0, n);
    matmul(z1, w->pw[3], lx, n, 1);
    matmul(w->lu, w->a, z1, n, 0);
    matmul(w->lu, w->e, w->w, n, 1);
}

/* ---- scaling and squaring ---------------------------------------------- */

/* Degree m and squarings s for ||A||_1 = norm under the bounds theta. */
static void choose_degree(double norm, const double *theta, int *m, int *s)
{
    VT_ASSERT(isfinite(norm)); /* else the halving loop below never ends */
    *s = 0;
    for (int i = 0; i < LOW_DEGREES; i++)
        if (norm <= theta[i]) {
            *m = DEGREES[i];
            return;
        }
    *m = MAX_DEGREE;
    /* Smallest s with norm / 2^s <= theta_13; halving is exact, and a finite
     * norm ends the loop after at most ~1030 steps. */
    for (double x = norm / theta[LOW_DEGREES]; x > 1.0; x *= 0.5)
        (*s)++;
}

/* w->r = r_m(A) and, with E, w->l = L_r(A, E), for the scaled w->a, w->e:
 * solve q R = p and q L = Lu + Lv + (Lu - Lv) R, where the right side is
 * the derivative of p minus that of q times R. */
static void pade_solve(SkewExpmWork *w, int m, int with_e, int n)
{
    if (m == MAX_DEGREE)
        pade13(w, with_e, n);
    else
        pade_low(w, m, with_e, n);
    const size_t len = (size_t)n * (size_t)n;
    for (size_t i = 0; i < len; i++) {
        w->q[i] = w->v[i] - w->u[i];
        w->r[i] = w->v[i] + w->u[i];
    }
    lu_factor(w->q, w->piv, n);
    lu_solve(w->q, w->piv, w->r, n);
    if (!with_e)
        return;
    for (size_t i = 0; i < len; i++) {
        w->l[i] = w->lu[i] + w->lv[i];
        w->t[i] = w->lu[i] - w->lv[i];
    }
    matmul(w->l, w->t, w->r, n, 1);
    lu_solve(w->q, w->piv, w->l, n);
}

/* Undoes the scaling by 2^-s: exp(2X) = R^2 for R = exp(X) and, by the
 * product rule on R^2, L(2X, 2E) = R L + L R for L = L(X, E). */
static void square(SkewExpmWork *w, int s, int with_e, int n)
{
    const size_t bytes = (size_t)n * (size_t)n * sizeof(double);
    for (int k = 0; k < s; k++) {
        if (with_e) {
            matmul(w->t, w->r, w->l, n, 0);
            matmul(w->t, w->l, w->r, n, 1);
            memcpy(w->l, w->t, bytes);
        }
        matmul(w->t, w->r, w->r, n, 0);
        memcpy(w->r, w->t, bytes);
    }
}

static void fill_nan(double *y, int n)
{
    const size_t len = (size_t)n * (size_t)n;
    for (size_t i = 0; i < len; i++)
        y[i] = NAN;
}

void skew_expm(double *R, const double *G, int b, SkewExpmWork *work)
{
    VT_ASSERT(work && b >= 1 && b <= work->max_b);
    const double norm = norm1(G, b);
    if (!isfinite(norm)) {
        fill_nan(R, b);
        return;
    }
    if (norm == 0.0) { /* exp(0) = I exactly (LieRE's patch at the origin) */
        set_identity(R, 1.0, b);
        return;
    }
    int m, s;
    choose_degree(norm, THETA_EXPM, &m, &s);
    const size_t len = (size_t)b * (size_t)b;
    const double scale = ldexp(1.0, -s); /* a product with it is exact, like ldexp */
    for (size_t i = 0; i < len; i++)
        work->a[i] = G[i] * scale;
    pade_solve(work, m, 0, b);
    square(work, s, 0, b);
    memcpy(R, work->r, len * sizeof(double));
}

void skew_expm_backward(double *dG, const double *G, const double *dR, int b, SkewExpmWork *work)
{
    VT_ASSERT(work && b >= 1 && b <= work->max_b);
    for (int i = 0; i < b; i++)
        for (int j = 0; j < b; j++)
            work->a[(size_t)i * b + j] = G[(size_t)j * b + i];
    /* A non-finite dR needs no check: the result is linear in it, so its
     * NaNs and infinities reach dG by themselves. */
    const double norm = norm1(work->a, b);
    if (!isfinite(norm)) {
        fill_nan(dG, b);
        return;
    }
    if (norm == 0.0) { /* L_exp(0, E) = E */
        memcpy(dG, dR, (size_t)b * (size_t)b * sizeof(double));
        return;
    }
    int m, s;
    choose_degree(norm, ELL_FRECHET, &m, &s);
    const size_t len = (size_t)b * (size_t)b;
    const double scale = ldexp(1.0, -s);
    for (size_t i = 0; i < len; i++) {
        work->a[i] *= scale;
        work->e[i] = dR[i] * scale;
    }
    pade_solve(work, m, 1, b);
    square(work, s, 1, b);
    memcpy(dG, work->l, len * sizeof(double));
}

void skew_expm_f(float *R, const float *G, int b, SkewExpmWork *work)
{
    VT_ASSERT(work && b >= 1 && b <= work->max_b);
    const size_t len = (size_t)b * (size_t)b;
    for (size_t i = 0; i < len; i++)
        work->gin[i] = G[i];
    skew_expm(work->out, work->gin, b, work);
    for (size_t i = 0; i < len; i++)
        R[i] = (float)work->out[i];
}

void skew_expm_backward_f(float *dG, const float *G, const float *dR, int b, SkewExpmWork *work)
{
    VT_ASSERT(work && b >= 1 && b <= work->max_b);
    const size_t len = (size_t)b * (size_t)b;
    for (size_t i = 0; i < len; i++) {
        work->gin[i] = G[i];
        work->din[i] = dR[i];
    }
    skew_expm_backward(work->out, work->gin, work->din, b, work);
    for (size_t i = 0; i < len; i++)
        dG[i] = (float)work->out[i];
}
