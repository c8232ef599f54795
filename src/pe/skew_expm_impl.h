/*
 * skew_expm_impl.h - the body of skew_expm.c written once for a scalar
 * type: skew_expm.c includes it twice, with REAL double (everything whose
 * accuracy skew_expm.h promises) and REAL float (skew_expm_backward_f, the
 * training path's backward). Before including, define REAL, NAME(x) (the
 * name of x in that precision), GEMM and TRSM (the BLAS wrappers of that
 * precision), EXPM_BOUNDS and FRECHET_BOUNDS (its DegreeBounds); the
 * constants, choose_degree and pade_coefficients come from skew_expm.c. No
 * include guard: it is meant to be included twice.
 */

/* The scratch matrices of one call, (n, n) each, and the LU row swaps. */
typedef struct NAME(Mats) {
    int *piv;
    REAL *a, *e;            /* scaled A and E */
    REAL *pw[POWERS + 1];   /* pw[j] = A^(2j), j = 1..4 (pw[0] unused) */
    int powers_made;        /* pw[1 .. powers_made] made before the Pade step */
    REAL *mw[POWERS + 1];   /* mw[j] = L(A^(2j), E) */
    REAL *u, *v, *lu, *lv;  /* Pade parts and their derivatives */
    REAL *w, *t;            /* scratch */
    REAL *q;                /* LU factors of q_m(A) = V - U */
    REAL *r, *l;            /* r_m(A), then its squares; L likewise */
} NAME(Mats);

/* Points the matrices at consecutive (nn-entry) slices of block; returns
 * the first entry after them. */
static REAL *NAME(mats_bind)(NAME(Mats) *w, REAL *block, int *piv, size_t nn)
{
    REAL **slots[] = {&w->a,     &w->e,     &w->pw[1], &w->pw[2], &w->pw[3], &w->pw[4],
                      &w->mw[1], &w->mw[2], &w->mw[3], &w->mw[4], &w->u,     &w->v,
                      &w->lu,    &w->lv,    &w->w,     &w->t,     &w->q,     &w->r,
                      &w->l};
    _Static_assert(sizeof(slots) / sizeof(slots[0]) == MATS, "one slot per matrix");
    w->piv = piv;
    w->powers_made = 0;
    w->pw[0] = w->mw[0] = NULL;
    for (int i = 0; i < MATS; i++, block += nn)
        *slots[i] = block;
    return block;
}

/* ---- small dense kernels (n <= 64) --------------------------------------- */

/* matmul for n = 8, the default block size: fixed trip counts keep a row
 * of C in vector registers, one multiply-add per row of B. */
static void NAME(matmul8)(REAL *restrict C, const REAL *restrict A, const REAL *restrict B,
                          int accumulate)
{
    for (int i = 0; i < 8; i++) {
        REAL c[8];
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
static void NAME(matmul)(REAL *restrict C, const REAL *restrict A, const REAL *restrict B,
                         int n, int accumulate)
{
    if (n == 8) {
        NAME(matmul8)(C, A, B, accumulate);
        return;
    }
    if (n >= BLAS_MIN_N) {
        GEMM(false, false, n, n, n, 1.0, A, n, B, n, accumulate ? 1.0 : 0.0, C, n);
        return;
    }
    if (!accumulate)
        memset(C, 0, (size_t)n * (size_t)n * sizeof(REAL));
    for (int i = 0; i < n; i++) {
        REAL *restrict c = C + (size_t)i * n;
        for (int k = 0; k < n; k++) {
            const REAL aik = A[(size_t)i * n + k];
            const REAL *restrict brow = B + (size_t)k * n;
            for (int j = 0; j < n; j++)
                c[j] += aik * brow[j];
        }
    }
}

/* y = sum_(j=1..K) c[first + 2j] x[j] over len entries, K a constant
 * where it is inlined: one pass, the sum of an entry in registers. */
static inline __attribute__((always_inline)) void NAME(power_sum_k)(REAL *restrict y,
                                                                     const double *c, int first,
                                                                     REAL *const *x, const int K,
                                                                     size_t len)
{
    REAL cj[POWERS + 1];
    const REAL *xj[POWERS + 1];
    for (int j = 1; j <= K; j++) {
        cj[j] = (REAL)c[first + 2 * j];
        xj[j] = x[j];
    }
#pragma omp simd
    for (size_t e = 0; e < len; e++) {
        REAL sum = cj[1] * xj[1][e];
        for (int j = 2; j <= K; j++)
            sum += cj[j] * xj[j][e];
        y[e] = sum;
    }
}

/* y = sum_(j=1..k) c[first + 2j] x[j] (+ c[first] I when with_identity),
 * k <= POWERS: the Pade parts' sums of even powers and of their
 * derivatives, in one pass over the x[j] (as separate passes of y += c x,
 * the Frechet derivative spent a tenth of its time here). */
static void NAME(power_sum)(REAL *y, const double *c, int first, REAL *const *x, int k,
                            int with_identity, int n)
{
    const size_t len = (size_t)n * (size_t)n;
    switch (k) {
    case 1: NAME(power_sum_k)(y, c, first, x, 1, len); break;
    case 2: NAME(power_sum_k)(y, c, first, x, 2, len); break;
    case 3: NAME(power_sum_k)(y, c, first, x, 3, len); break;
    default: VT_ASSERT(k == POWERS); NAME(power_sum_k)(y, c, first, x, POWERS, len); break;
    }
    if (with_identity)
        for (int i = 0; i < n; i++)
            y[(size_t)i * n + i] += (REAL)c[first];
}

/* y = alpha I. */
static void NAME(set_identity)(REAL *y, REAL alpha, int n)
{
    memset(y, 0, (size_t)n * (size_t)n * sizeof(REAL));
    for (int i = 0; i < n; i++)
        y[(size_t)i * n + i] = alpha;
}

/* ||A||_1, the largest column sum of |a_ij|. The sums of a chunk of
 * NORM_CHUNK columns grow together, row by row along memory (a column at
 * a time, each sum was a chain of dependent additions down a stride). */
static double NAME(norm1)(const REAL *A, int n)
{
    double best = 0.0;
    for (int j0 = 0; j0 < n; j0 += NORM_CHUNK) {
        const int width = n - j0 < NORM_CHUNK ? n - j0 : NORM_CHUNK;
        double sum[NORM_CHUNK] = {0};
        for (int i = 0; i < n; i++) {
            const REAL *row = A + (size_t)i * n + j0;
#pragma omp simd
            for (int j = 0; j < width; j++)
                sum[j] += fabs((double)row[j]);
        }
        for (int j = 0; j < width; j++) {
            /* A NaN must stick, so that the caller sees it: no later
             * column may replace it (every comparison with NaN is false). */
            if (sum[j] > best || isnan(sum[j]))
                best = sum[j];
            if (isnan(best))
                return best;
        }
    }
    return best;
}

static inline void NAME(swap_rows)(REAL *X, int a, int b, int n)
{
    for (int j = 0; j < n; j++) {
        const REAL tmp = X[(size_t)a * n + j];
        X[(size_t)a * n + j] = X[(size_t)b * n + j];
        X[(size_t)b * n + j] = tmp;
    }
}

/* Steps k0 .. k1 - 1 of the factorisation q = P L U in place, with
 * partial pivoting (piv[k]: the row swapped with row k at step k, whole
 * rows), each step updating the columns before j1. q_m(A) is nonsingular
 * (well conditioned, even) for ||A||_1 <= theta_13, so no zero pivot can
 * occur for finite input. The rows are told apart (restrict), so that
 * each row update vectorises. */
static inline void NAME(lu_steps)(REAL *q, int *piv, int n, int k0, int k1, int j1)
{
    for (int k = k0; k < k1; k++) {
        int p = k;
        for (int i = k + 1; i < n; i++)
            if (fabs(q[(size_t)i * n + k]) > fabs(q[(size_t)p * n + k]))
                p = i;
        piv[k] = p;
        if (p != k)
            NAME(swap_rows)(q, k, p, n);
        const REAL *restrict pivot_row = q + (size_t)k * n;
        const REAL inv = 1.0 / pivot_row[k];
        for (int i = k + 1; i < n; i++) {
            REAL *restrict row = q + (size_t)i * n;
            const REAL f = row[k] * inv;
            row[k] = f;
#pragma omp simd
            for (int j = k + 1; j < j1; j++)
                row[j] -= f * pivot_row[j];
        }
    }
}

/* The whole factorisation, every step updating every column. */
static inline void NAME(lu_factor_sized)(REAL *q, int *piv, int n)
{
    NAME(lu_steps)(q, piv, n, 0, n, n);
}

/* lu_factor_sized for b = 64 by panels of 4 columns: the panel is
 * factored as there (its pivots chosen, its rows swapped whole), then each
 * row below takes the panel's four updates of its remaining columns in one
 * pass (before: a pass per column, each loading and storing the row). The
 * updates reach every entry in the same order, so the factors are the same
 * bit for bit. 64 x 64, 1 thread: double 13.4 -> 9.6 us, float 10.2 -> 8.5.
 */
static void NAME(lu_factor64)(REAL *q, int *piv)
{
    enum { n = 64, P = 4 };
    for (int k0 = 0; k0 < n; k0 += P) {
        const int rest = k0 + P; /* the first column right of the panel */
        NAME(lu_steps)(q, piv, n, k0, rest, rest);
        /* U's rows of the panel, each after the ones above it. */
        for (int i = k0 + 1; i < rest; i++) {
            REAL *restrict row = q + (size_t)i * n;
            for (int t = k0; t < i; t++) {
                const REAL f = row[t];
                const REAL *restrict u = q + (size_t)t * n;
#pragma omp simd
                for (int j = rest; j < n; j++)
                    row[j] -= f * u[j];
            }
        }
        const REAL *restrict u0 = q + (size_t)k0 * n, *restrict u1 = u0 + n;
        const REAL *restrict u2 = u1 + n, *restrict u3 = u2 + n;
        for (int i = rest; i < n; i++) {
            REAL *restrict row = q + (size_t)i * n;
            const REAL f0 = row[k0], f1 = row[k0 + 1], f2 = row[k0 + 2], f3 = row[k0 + 3];
#pragma omp simd
            for (int j = rest; j < n; j++)
                row[j] = (((row[j] - f0 * u0[j]) - f1 * u1[j]) - f2 * u2[j]) - f3 * u3[j];
        }
    }
}

/* X <- q^-1 X for the n right-hand sides in the columns of X (n x n),
 * n <= SOLVE_MAX_N: each row of X is formed in an accumulator from the
 * rows already solved (going up, from the last), read along memory; with
 * n a constant the compiler keeps the accumulator in vector registers
 * rather than storing the row back after every update. */
static inline void NAME(lu_solve_sized)(const REAL *q, const int *piv, REAL *X, int n)
{
    REAL acc[SOLVE_MAX_N];
    for (int k = 0; k < n; k++)
        if (piv[k] != k)
            NAME(swap_rows)(X, k, piv[k], n);
    for (int i = 1; i < n; i++) { /* L y = P X, L unit lower */
        REAL *restrict xi = X + (size_t)i * n;
#pragma omp simd
        for (int j = 0; j < n; j++)
            acc[j] = xi[j];
        for (int k = 0; k < i; k++) {
            const REAL f = q[(size_t)i * n + k];
            const REAL *restrict xk = X + (size_t)k * n;
#pragma omp simd
            for (int j = 0; j < n; j++)
                acc[j] -= f * xk[j];
        }
#pragma omp simd
        for (int j = 0; j < n; j++)
            xi[j] = acc[j];
    }
    for (int i = n - 1; i >= 0; i--) { /* U x = y, the solved rows from the last */
        REAL *restrict xi = X + (size_t)i * n;
#pragma omp simd
        for (int j = 0; j < n; j++)
            acc[j] = xi[j];
        for (int k = n - 1; k > i; k--) {
            const REAL f = q[(size_t)i * n + k];
            const REAL *restrict xk = X + (size_t)k * n;
#pragma omp simd
            for (int j = 0; j < n; j++)
                acc[j] -= f * xk[j];
        }
        const REAL inv = 1.0 / q[(size_t)i * n + i];
#pragma omp simd
        for (int j = 0; j < n; j++)
            xi[j] = acc[j] * inv;
    }
}

/*
 * The solve of b = 64 (dense LieRE) forms 4 rows of X at a time over a
 * panel of SOLVE_PANEL_BYTES of columns (on AVX-512 4 x 32 doubles or
 * 4 x 64 floats: 16 vectors in registers): each solved row of the panel is
 * read once for four rows rather than once for each. A row at a time, the
 * loads set the pace: 64 x 64, 1 thread, 18.1 -> 13.9 us in double, 10.8
 * -> 6.9 in float. Every entry sees the same operations in the same order
 * as in lu_solve_sized, so the results are the same bit for bit.
 */

/* Rows [i0, i0 + 4) of the panel at column c0 of X (64 x 64):
 * acc = X - sum over the solved rows k of q[i][k] X[k], those rows being
 * [0, i0) going down (L, unit diagonal) or [i0 + 4, 64) going up (U), in
 * lu_solve_sized's order; then the block's own triangle, and the diagonal
 * for U. */
static inline void NAME(solve_block64)(const REAL *q, REAL *X, int i0, int c0, bool lower)
{
    enum { n = 64, R = 4, C = (int)(SOLVE_PANEL_BYTES / sizeof(REAL)) };
    REAL acc[R][C];
    for (int r = 0; r < R; r++)
#pragma omp simd
        for (int j = 0; j < C; j++)
            acc[r][j] = X[(size_t)(i0 + r) * n + c0 + j];
    /* Down: rows 0 .. i0 - 1 in turn; up: rows 63 .. i0 + 4 in turn. */
    const int count = lower ? i0 : n - i0 - R;
    for (int step = 0; step < count; step++) {
        const int k = lower ? step : n - 1 - step;
        const REAL *restrict xk = X + (size_t)k * n + c0;
        REAL f[R];
        for (int r = 0; r < R; r++)
            f[r] = q[(size_t)(i0 + r) * n + k];
        for (int r = 0; r < R; r++)
#pragma omp simd
            for (int j = 0; j < C; j++)
                acc[r][j] -= f[r] * xk[j];
    }
    if (lower) {
        for (int r = 1; r < R; r++)
            for (int k = 0; k < r; k++) {
                const REAL f = q[(size_t)(i0 + r) * n + i0 + k];
#pragma omp simd
                for (int j = 0; j < C; j++)
                    acc[r][j] -= f * acc[k][j];
            }
    } else {
        for (int r = R - 1; r >= 0; r--) {
            for (int k = R - 1; k > r; k--) {
                const REAL f = q[(size_t)(i0 + r) * n + i0 + k];
#pragma omp simd
                for (int j = 0; j < C; j++)
                    acc[r][j] -= f * acc[k][j];
            }
            const REAL inv = 1.0 / q[(size_t)(i0 + r) * n + i0 + r];
#pragma omp simd
            for (int j = 0; j < C; j++)
                acc[r][j] *= inv;
        }
    }
    for (int r = 0; r < R; r++)
#pragma omp simd
        for (int j = 0; j < C; j++)
            X[(size_t)(i0 + r) * n + c0 + j] = acc[r][j];
}

static void NAME(lu_solve64)(const REAL *q, const int *piv, REAL *X)
{
    enum { n = 64, R = 4, C = (int)(SOLVE_PANEL_BYTES / sizeof(REAL)) };
    for (int k = 0; k < n; k++)
        if (piv[k] != k)
            NAME(swap_rows)(X, k, piv[k], n);
    for (int c0 = 0; c0 < n; c0 += C) {
        for (int i0 = 0; i0 < n; i0 += R)
            NAME(solve_block64)(q, X, i0, c0, true);
        for (int i0 = n - R; i0 >= 0; i0 -= R)
            NAME(solve_block64)(q, X, i0, c0, false);
    }
}

/* b = 8, the default block size, and b = 64, dense LieRE's, get their
 * own copies of the two: fixed trip counts turn every row update into
 * whole-vector operations. */
static void NAME(lu_factor)(REAL *q, int *piv, int n)
{
    if (n == 8)
        NAME(lu_factor_sized)(q, piv, 8);
    else if (n == 64)
        NAME(lu_factor64)(q, piv);
    else
        NAME(lu_factor_sized)(q, piv, n);
}

static void NAME(lu_solve)(const REAL *q, const int *piv, REAL *X, int n)
{
    if (n == 8) {
        NAME(lu_solve_sized)(q, piv, X, 8);
        return;
    }
    if (n == 64) {
        NAME(lu_solve64)(q, piv, X);
        return;
    }
    if (n < BLAS_MIN_N) {
        NAME(lu_solve_sized)(q, piv, X, n);
        return;
    }
    /* Other sizes from 16 up: OpenBLAS's triangular solves. */
    for (int k = 0; k < n; k++)
        if (piv[k] != k)
            NAME(swap_rows)(X, k, piv[k], n);
    TRSM(false, true, n, n, q, n, X, n);
    TRSM(true, false, n, n, q, n, X, n);
}

/* Even powers pw[j] = A^(2j), j = 1..k, and when E is given their
 * derivatives mw[j] = L(A^(2j), E) by the product rule on
 * A^(2j) = A^(2j-2) A^2: mw[j] = A^(2j-2) mw[1] + mw[j-1] A^2. */
static void NAME(even_powers)(NAME(Mats) *w, int k, int with_e, int n)
{
    if (w->powers_made < 1)
        NAME(matmul)(w->pw[1], w->a, w->a, n, 0);
    if (with_e) {
        NAME(matmul)(w->mw[1], w->a, w->e, n, 0);
        NAME(matmul)(w->mw[1], w->e, w->a, n, 1);
    }
    for (int j = 2; j <= k; j++) {
        if (w->powers_made < j)
            NAME(matmul)(w->pw[j], w->pw[j - 1], w->pw[1], n, 0);
        if (with_e) {
            NAME(matmul)(w->mw[j], w->pw[j - 1], w->mw[1], n, 0);
            NAME(matmul)(w->mw[j], w->mw[j - 1], w->pw[1], n, 1);
        }
    }
}

/* Degrees 3..9, evaluated directly from the even powers:
 * U = A W with W = sum_j c_(2j+1) A^(2j), V = sum_j c_(2j) A^(2j);
 * Lu = A Lw + E W with Lw = sum_(j>=1) c_(2j+1) M_(2j), Lv = sum c_(2j) M_(2j). */
static void NAME(pade_low)(NAME(Mats) *w, int m, int with_e, int n)
{
    double c[MAX_DEGREE + 1];
    pade_coefficients(c, m);
    const int k = m / 2;
    NAME(even_powers)(w, k, with_e, n);
    NAME(power_sum)(w->w, c, 1, w->pw, k, 1, n);
    NAME(power_sum)(w->v, c, 0, w->pw, k, 1, n);
    NAME(matmul)(w->u, w->a, w->w, n, 0);
    if (!with_e)
        return;
    NAME(power_sum)(w->t, c, 1, w->mw, k, 0, n);
    NAME(power_sum)(w->lv, c, 0, w->mw, k, 0, n);
    NAME(matmul)(w->lu, w->a, w->t, n, 0);
    NAME(matmul)(w->lu, w->e, w->w, n, 1);
}

/* Degree 13 (Higham 2005, eq. 2.3-2.4; Al-Mohy & Higham 2009, Alg. 6.4):
 * W = A6 (c13 A6 + c11 A4 + c9 A2) + (c7 A6 + c5 A4 + c3 A2 + c1 I), U = A W,
 * V = A6 (c12 A6 + c10 A4 + c8 A2) + (c6 A6 + c4 A4 + c2 A2 + c0 I),
 * and their derivatives by the product rule. Uses pw[4]/mw[4] as scratch. */
static void NAME(pade13)(NAME(Mats) *w, int with_e, int n)
{
    double c[MAX_DEGREE + 1];
    pade_coefficients(c, 13);
    NAME(even_powers)(w, 3, with_e, n);
    REAL *w1 = w->pw[4], *z1 = w->t;
    NAME(power_sum)(w1, c, 7, w->pw, 3, 0, n); /* c9 A2 + c11 A4 + c13 A6 */
    NAME(power_sum)(w->w, c, 1, w->pw, 3, 1, n);
    NAME(matmul)(w->w, w->pw[3], w1, n, 1);
    NAME(matmul)(w->u, w->a, w->w, n, 0);
    NAME(power_sum)(z1, c, 6, w->pw, 3, 0, n); /* c8 A2 + c10 A4 + c12 A6 */
    NAME(power_sum)(w->v, c, 0, w->pw, 3, 1, n);
    NAME(matmul)(w->v, w->pw[3], z1, n, 1);
    if (!with_e)
        return;
    /* Lv = A6 Lz1 + M6 Z1 + Lz2, with Lz1, Lz2 the same sums over the M's. */
    REAL *lx = w->mw[4];
    NAME(power_sum)(w->lv, c, 0, w->mw, 3, 0, n);
    NAME(matmul)(w->lv, w->mw[3], z1, n, 1);
    NAME(power_sum)(lx, c, 6, w->mw, 3, 0, n);
    NAME(matmul)(w->lv, w->pw[3], lx, n, 1);
    /* Lw = A6 Lw1 + M6 W1 + Lw2 (into z1, free now); Lu = A Lw + E W. */
    NAME(power_sum)(z1, c, 1, w->mw, 3, 0, n);
    NAME(matmul)(z1, w->mw[3], w1, n, 1);
    NAME(power_sum)(lx, c, 7, w->mw, 3, 0, n);
    NAME(matmul)(z1, w->pw[3], lx, n, 1);
    NAME(matmul)(w->lu, w->a, z1, n, 0);
    NAME(matmul)(w->lu, w->e, w->w, n, 1);
}

/* w->r = r_m(A) and, with E, w->l = L_r(A, E), for the scaled w->a, w->e:
 * solve q R = p and q L = Lu + Lv + (Lu - Lv) R, where the right side is
 * the derivative of p minus that of q times R. */
static void NAME(pade_solve)(NAME(Mats) *w, int m, int with_e, int n)
{
    if (m == MAX_DEGREE)
        NAME(pade13)(w, with_e, n);
    else
        NAME(pade_low)(w, m, with_e, n);
    const size_t len = (size_t)n * (size_t)n;
    for (size_t i = 0; i < len; i++) {
        w->q[i] = w->v[i] - w->u[i];
        w->r[i] = w->v[i] + w->u[i];
    }
    NAME(lu_factor)(w->q, w->piv, n);
    NAME(lu_solve)(w->q, w->piv, w->r, n);
    if (!with_e)
        return;
    for (size_t i = 0; i < len; i++) {
        w->l[i] = w->lu[i] + w->lv[i];
        w->t[i] = w->lu[i] - w->lv[i];
    }
    NAME(matmul)(w->l, w->t, w->r, n, 1);
    NAME(lu_solve)(w->q, w->piv, w->l, n);
}

/* Exchanges two matrices of the call (slots of the same size). */
static void NAME(swap_slots)(REAL **a, REAL **b)
{
    REAL *tmp = *a;
    *a = *b;
    *b = tmp;
}

/* Undoes the scaling by 2^-s: exp(2X) = R^2 for R = exp(X) and, by the
 * product rule on R^2, L(2X, 2E) = R L + L R for L = L(X, E). Each
 * product goes to the scratch t, which then trades places with its
 * target rather than being copied there. */
static void NAME(square)(NAME(Mats) *w, int s, int with_e, int n)
{
    for (int k = 0; k < s; k++) {
        if (with_e) {
            NAME(matmul)(w->t, w->r, w->l, n, 0);
            NAME(matmul)(w->t, w->l, w->r, n, 1);
            NAME(swap_slots)(&w->t, &w->l);
        }
        NAME(matmul)(w->t, w->r, w->r, n, 0);
        NAME(swap_slots)(&w->t, &w->r);
    }
}

/* Whether A^T = -A exactly. */
static bool NAME(is_skew)(const REAL *A, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j <= i; j++)
            if (A[(size_t)i * n + j] != -A[(size_t)j * n + i])
                return false;
    return true;
}

/*
 * The norm that chooses the degree and the squarings of w->a (unscaled):
 * ||A||_1 = norm1 in general; for skew-symmetric A a bound on ||A||_2 from
 * the even powers the Pade step needs anyway, formed here (pw[1..], the
 * count in powers_made). A^2j is symmetric for skew A, so ||A||_2^2j =
 * ||A^2j||_2 <= ||A^2j||_1, and the bounds theta_m hold in any subordinate
 * norm (Higham 2005, §2; Al-Mohy & Higham 2009, §6). For LieRE's 64 x 64
 * generators ||A||_2 runs well under ||A||_1 (250 against 400 at a 7 x 7
 * grid's far corner): 0.6 squarings fewer per exponential on average, 0.8
 * per float Frechet derivative. A power is formed only while the degree
 * the bound so far chooses needs it; above SKEW_BOUND_MAX (far beyond any
 * generator of training) the powers could overflow, and ||A||_1 is used.
 */
static double NAME(degree_norm)(NAME(Mats) *w, double norm1, const DegreeBounds *bounds, int n)
{
    w->powers_made = 0;
    if (norm1 <= bounds->theta[0] || norm1 > SKEW_BOUND_MAX || !NAME(is_skew)(w->a, n))
        return norm1;
    double bound = norm1;
    for (int j = 1; j <= 3; j++) {
        int m, s;
        choose_degree(bound, bounds, &m, &s);
        if (m / 2 < j)
            break; /* the degree chosen does not need A^2j */
        if (j == 1)
            NAME(matmul)(w->pw[1], w->a, w->a, n, 0);
        else
            NAME(matmul)(w->pw[j], w->pw[j - 1], w->pw[1], n, 0);
        w->powers_made = j;
        bound = fmin(bound, pow(NAME(norm1)(w->pw[j], n), 1.0 / (2 * j)));
    }
    return bound;
}

/* A <- A / 2^s and the powers made so far with it (exact: powers of two). */
static void NAME(scale_down)(NAME(Mats) *w, int s, int n)
{
    const size_t len = (size_t)n * (size_t)n;
    for (int j = 0; j <= w->powers_made; j++) {
        REAL *x = j ? w->pw[j] : w->a;
        const double scale = ldexp(1.0, j ? -2 * j * s : -s); /* A^2j / 2^(2js) */
        for (size_t i = 0; i < len; i++)
            x[i] *= scale;
    }
}

static void NAME(fill_nan)(REAL *y, int n)
{
    const size_t len = (size_t)n * (size_t)n;
    for (size_t i = 0; i < len; i++)
        y[i] = NAN;
}

/* static inline: the float build uses the backward only. */
static inline void NAME(expm)(REAL *R, const REAL *G, int b, NAME(Mats) *work)
{
    const double norm = NAME(norm1)(G, b);
    if (!isfinite(norm)) {
        NAME(fill_nan)(R, b);
        return;
    }
    if (norm == 0.0) { /* exp(0) = I exactly (LieRE's patch at the origin) */
        NAME(set_identity)(R, 1.0, b);
        return;
    }
    const size_t len = (size_t)b * (size_t)b;
    memcpy(work->a, G, len * sizeof(REAL));
    int m, s;
    choose_degree(NAME(degree_norm)(work, norm, &EXPM_BOUNDS, b), &EXPM_BOUNDS, &m, &s);
    NAME(scale_down)(work, s, b);
    NAME(pade_solve)(work, m, 0, b);
    NAME(square)(work, s, 0, b);
    memcpy(R, work->r, len * sizeof(REAL));
}

static void NAME(expm_backward)(REAL *dG, const REAL *G, const REAL *dR, int b, NAME(Mats) *work)
{
    for (int i = 0; i < b; i++)
        for (int j = 0; j < b; j++)
            work->a[(size_t)i * b + j] = G[(size_t)j * b + i];
    /* A non-finite dR needs no check: the result is linear in it, so its
     * NaNs and infinities reach dG by themselves. */
    const double norm = NAME(norm1)(work->a, b);
    if (!isfinite(norm)) {
        NAME(fill_nan)(dG, b);
        return;
    }
    if (norm == 0.0) { /* L_exp(0, E) = E */
        memcpy(dG, dR, (size_t)b * (size_t)b * sizeof(REAL));
        return;
    }
    int m, s;
    choose_degree(NAME(degree_norm)(work, norm, &FRECHET_BOUNDS, b), &FRECHET_BOUNDS, &m, &s);
    NAME(scale_down)(work, s, b);
    const size_t len = (size_t)b * (size_t)b;
    const double scale = ldexp(1.0, -s);
    for (size_t i = 0; i < len; i++)
        work->e[i] = dR[i] * scale;
    NAME(pade_solve)(work, m, 1, b);
    NAME(square)(work, s, 1, b);
    memcpy(dG, work->l, len * sizeof(REAL));
}
