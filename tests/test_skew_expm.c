/*
 * test_skew_expm.c - the matrix exponential and its backward (skew_expm.h,
 * DESIGN §4.7), measured against references that share no code with it.
 *
 * - exp: a plain Taylor series in long double (64-bit mantissa), scaled so
 *   that ||G/2^s||_1 < 0.01 and summed to 30 terms, then squared s times.
 *   Its truncation error is ~0.01^31/31! (nil) and its rounding ~2^s * 1e-19
 *   <= 3e-14 at the largest norm (s = 17), far below the 1e-12 under test.
 *   Also the closed form of a 2 x 2 rotation.
 * - backward: the same long-double Taylor on the 2b x 2b block matrix
 *   [[G^T, W], [0, G^T]], whose upper-right block is L_exp(G^T, W) exactly
 *   (DESIGN §4.7); and fourth-order central differences in double of
 *   L = sum(W o exp(G)), in G and in U for G = U - U^T.
 *
 * Sizes b = 2, 4, 8, 16, 64; generator norms ||G||_1 from 0.01 (degree 3)
 * through 0.1, 0.5, 1 (degrees 5, 7, 9) to 10, 4 pi * 8 and 4 pi * 64
 * (degree 13 with 1 to 8 squarings), so every branch of the method runs.
 * Random data come from RNG_TEST streams with fixed keys.
 */
#include "suites.h"

#include "vitrain/rng.h"
#include "vitrain/skew_expm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#define FOUR_PI (4.0 * 3.14159265358979323846)

static const int SIZES[] = {2, 4, 8, 16, 64};
enum { N_SIZES = sizeof(SIZES) / sizeof(SIZES[0]) };
static const double NORMS[] = {0.01, 0.1, 0.5, 1.0, 10.0, FOUR_PI * 8, FOUR_PI * 64};
enum { N_NORMS = sizeof(NORMS) / sizeof(NORMS[0]) };

/* exp of a skew-symmetric G has 2-norm 1, so max-norm errors of R are
 * relative errors. Conditioning of exp at skew G is ~||G||, ~1e-13 at the
 * largest norm; the squarings double the approximant's rounding s <= 8
 * times. 1e-12 is the header's promise, with a margin of a few. */
static const double EXP_TOL = 1e-12;

/* ---- helpers ------------------------------------------------------------ */

static double *alloc_matrix(int n)
{
    double *m = calloc((size_t)n * (size_t)n, sizeof(double));
    ck_assert_ptr_nonnull(m);
    return m;
}

static double norm1(const double *A, int n)
{
    double best = 0.0;
    for (int j = 0; j < n; j++) {
        double sum = 0.0;
        for (int i = 0; i < n; i++)
            sum += fabs(A[i * n + j]);
        best = fmax(best, sum);
    }
    return best;
}

static double max_abs(const double *A, size_t len)
{
    double best = 0.0;
    for (size_t i = 0; i < len; i++)
        best = fmax(best, fabs(A[i]));
    return best;
}

static double max_diff(const double *A, const double *B, size_t len)
{
    double best = 0.0;
    for (size_t i = 0; i < len; i++)
        best = fmax(best, fabs(A[i] - B[i]));
    return best;
}

static void scale_to_norm(double *A, int n, double norm)
{
    const double f = norm / norm1(A, n);
    for (int i = 0; i < n * n; i++)
        A[i] *= f;
}

/* G = X - X^T for X ~ N(0, 1), scaled to ||G||_1 = norm. */
static void random_skew(double *G, int n, double norm, Rng *rng)
{
    for (int i = 0; i < n; i++) {
        G[i * n + i] = 0.0;
        for (int j = i + 1; j < n; j++) {
            G[i * n + j] = rng_normal(rng);
            G[j * n + i] = -G[i * n + j];
        }
    }
    scale_to_norm(G, n, norm);
}

/* A general (non-symmetric, non-skew) matrix with ||A||_1 = norm. */
static void random_general(double *A, int n, double norm, Rng *rng)
{
    for (int i = 0; i < n * n; i++)
        A[i] = rng_normal(rng);
    scale_to_norm(A, n, norm);
}

static void transpose(double *T, const double *A, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            T[j * n + i] = A[i * n + j];
}

/* C = A B in double (for products of results). */
static void matmul(double *C, const double *A, const double *B, int n)
{
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            double sum = 0.0;
            for (int k = 0; k < n; k++)
                sum += A[i * n + k] * B[k * n + j];
            C[i * n + j] = sum;
        }
}

/* ---- the long double reference ----------------------------------------- */

static void matmul_ld(long double *C, const long double *A, const long double *B, int n)
{
    for (int i = 0; i < n; i++) {
        for (int j = 0; j < n; j++)
            C[i * n + j] = 0.0L;
        for (int k = 0; k < n; k++) {
            const long double a = A[i * n + k];
            for (int j = 0; j < n; j++)
                C[i * n + j] += a * B[k * n + j];
        }
    }
}

/* R = exp(G): G/2^s with ||G/2^s||_1 < 0.01, the Taylor series to 30 terms
 * by Horner (T <- I + X T / k, k = 30..1), squared s times. */
static void reference_expm(double *R, const double *G, int n)
{
    const size_t len = (size_t)n * (size_t)n;
    long double *X = malloc(len * sizeof(long double));
    long double *T = malloc(len * sizeof(long double));
    long double *P = malloc(len * sizeof(long double));
    ck_assert(X && T && P);
    int s = 0;
    while (ldexp(norm1(G, n), -s) >= 0.01)
        s++;
    for (size_t i = 0; i < len; i++) {
        X[i] = ldexpl((long double)G[i], -s);
        T[i] = 0.0L;
    }
    for (int i = 0; i < n; i++)
        T[i * n + i] = 1.0L;
    for (int k = 30; k >= 1; k--) {
        matmul_ld(P, X, T, n);
        for (size_t i = 0; i < len; i++)
            T[i] = P[i] / k;
        for (int i = 0; i < n; i++)
            T[i * n + i] += 1.0L;
    }
    for (int k = 0; k < s; k++) {
        matmul_ld(P, T, T, n);
        memcpy(T, P, len * sizeof(long double));
    }
    for (size_t i = 0; i < len; i++)
        R[i] = (double)T[i];
    free(X);
    free(T);
    free(P);
}

/* L_exp(G^T, W): the upper-right block of exp([[G^T, W], [0, G^T]]). */
static void reference_backward(double *dG, const double *G, const double *W, int n)
{
    const int m = 2 * n;
    double *M = alloc_matrix(m), *E = alloc_matrix(m);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++) {
            M[i * m + j] = G[j * n + i];
            M[(n + i) * m + n + j] = G[j * n + i];
            M[i * m + n + j] = W[i * n + j];
        }
    reference_expm(E, M, m);
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            dG[i * n + j] = E[i * m + n + j];
    free(M);
    free(E);
}

/* ---- exp against the reference ------------------------------------------ */

START_TEST(test_exp_reference)
{
    const int b = SIZES[_i];
    SkewExpmWork *work = skew_expm_work_create(b);
    double *G = alloc_matrix(b), *R = alloc_matrix(b), *ref = alloc_matrix(b);
    for (int k = 0; k < N_NORMS; k++) {
        Rng rng = rng_stream(1, RNG_TEST, 100 + (uint64_t)b, (uint64_t)k);
        random_skew(G, b, NORMS[k], &rng);
        skew_expm(R, G, b, work);
        reference_expm(ref, G, b);
        const double err = max_diff(R, ref, (size_t)b * b);
        printf("skew_expm b=%2d |G|_1=%8.3g  max|R - ref| = %.2e\n", b, NORMS[k], err);
        ck_assert_msg(err < EXP_TOL, "b=%d norm %g: error %.3g", b, NORMS[k], err);
    }
    free(G);
    free(R);
    free(ref);
    skew_expm_work_free(work);
}
END_TEST

/* G = [[0, -t], [t, 0]] rotates by t. libm's cos and sin are within an ulp
 * or so; the rest is the method's error, ~|t| * u. */
START_TEST(test_exp_rotation_2x2)
{
    const double ts[] = {1e-3, 0.3, -1.0, 2.0, -7.5, 100.0, FOUR_PI * 64};
    SkewExpmWork *work = skew_expm_work_create(2);
    for (size_t k = 0; k < sizeof(ts) / sizeof(ts[0]); k++) {
        const double t = ts[k];
        const double G[4] = {0.0, -t, t, 0.0};
        const double want[4] = {cos(t), -sin(t), sin(t), cos(t)};
        double R[4];
        skew_expm(R, G, 2, work);
        const double err = max_diff(R, want, 4);
        ck_assert_msg(err < EXP_TOL, "t=%g: error %.3g", t, err);
    }
    skew_expm_work_free(work);
}
END_TEST

/* ---- properties --------------------------------------------------------- */

/* det by Gaussian elimination with partial pivoting (destroys A). */
static double determinant(double *A, int n)
{
    double det = 1.0;
    for (int k = 0; k < n; k++) {
        int p = k;
        for (int i = k + 1; i < n; i++)
            if (fabs(A[i * n + k]) > fabs(A[p * n + k]))
                p = i;
        if (p != k) {
            for (int j = 0; j < n; j++) {
                double t = A[k * n + j];
                A[k * n + j] = A[p * n + j];
                A[p * n + j] = t;
            }
            det = -det;
        }
        det *= A[k * n + k];
        for (int i = k + 1; i < n; i++) {
            const double f = A[i * n + k] / A[k * n + k];
            for (int j = k; j < n; j++)
                A[i * n + j] -= f * A[k * n + j];
        }
    }
    return det;
}

/* max |A - I| */
static double identity_error(const double *A, int n)
{
    double best = 0.0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < n; j++)
            best = fmax(best, fabs(A[i * n + j] - (i == j ? 1.0 : 0.0)));
    return best;
}

/* R^T R = I to 1e-12 at every size and norm (the header's promise), and
 * det R = +1 (a rotation, not a reflection) for small b. */
START_TEST(test_exp_orthogonal)
{
    const int b = SIZES[_i];
    SkewExpmWork *work = skew_expm_work_create(b);
    double *G = alloc_matrix(b), *R = alloc_matrix(b), *Rt = alloc_matrix(b);
    double *P = alloc_matrix(b);
    for (int k = 0; k < N_NORMS; k++) {
        Rng rng = rng_stream(2, RNG_TEST, 200 + (uint64_t)b, (uint64_t)k);
        random_skew(G, b, NORMS[k], &rng);
        skew_expm(R, G, b, work);
        transpose(Rt, R, b);
        matmul(P, Rt, R, b);
        const double err = identity_error(P, b);
        printf("skew_expm b=%2d |G|_1=%8.3g  max|R^T R - I| = %.2e\n", b, NORMS[k], err);
        ck_assert_msg(err < 1e-12, "b=%d norm %g: orthogonality %.3g", b, NORMS[k], err);
        if (b <= 8) {
            const double det = determinant(R, b);
            ck_assert_msg(fabs(det - 1.0) < 1e-12, "b=%d norm %g: det %.17g", b, NORMS[k], det);
        }
    }
    free(G);
    free(R);
    free(Rt);
    free(P);
    skew_expm_work_free(work);
}
END_TEST

/* exp(G) exp(-G) = I; two errors of EXP_TOL each. */
START_TEST(test_exp_inverse)
{
    const int b = SIZES[_i];
    SkewExpmWork *work = skew_expm_work_create(b);
    double *G = alloc_matrix(b), *R = alloc_matrix(b), *Rn = alloc_matrix(b);
    double *P = alloc_matrix(b);
    for (int k = 0; k < N_NORMS; k++) {
        Rng rng = rng_stream(3, RNG_TEST, 300 + (uint64_t)b, (uint64_t)k);
        random_skew(G, b, NORMS[k], &rng);
        skew_expm(R, G, b, work);
        for (int i = 0; i < b * b; i++)
            G[i] = -G[i];
        skew_expm(Rn, G, b, work);
        matmul(P, R, Rn, b);
        const double err = identity_error(P, b);
        ck_assert_msg(err < 2 * EXP_TOL, "b=%d norm %g: |exp(G)exp(-G) - I| %.3g", b, NORMS[k],
                      err);
    }
    free(G);
    free(R);
    free(Rn);
    free(P);
    skew_expm_work_free(work);
}
END_TEST

/* exp(diag(G1, G2)) = diag(exp G1, exp G2): blocks of 3 and 5 in b = 8,
 * 24 and 40 in b = 64, with different norms so that the whole matrix and
 * its blocks take different degrees and scalings. */
START_TEST(test_exp_block_diagonal)
{
    const int splits[][2] = {{3, 5}, {24, 40}};
    for (int c = 0; c < 2; c++) {
        const int b1 = splits[c][0], b2 = splits[c][1], b = b1 + b2;
        SkewExpmWork *work = skew_expm_work_create(b);
        double *G = alloc_matrix(b), *R = alloc_matrix(b), *want = alloc_matrix(b);
        double *G1 = alloc_matrix(b1), *G2 = alloc_matrix(b2);
        double *R1 = alloc_matrix(b1), *R2 = alloc_matrix(b2);
        Rng rng = rng_stream(4, RNG_TEST, (uint64_t)b, 0);
        random_skew(G1, b1, 0.4, &rng);
        random_skew(G2, b2, 30.0, &rng);
        for (int i = 0; i < b1; i++)
            for (int j = 0; j < b1; j++)
                G[i * b + j] = G1[i * b1 + j];
        for (int i = 0; i < b2; i++)
            for (int j = 0; j < b2; j++)
                G[(b1 + i) * b + b1 + j] = G2[i * b2 + j];
        skew_expm(R, G, b, work);
        skew_expm(R1, G1, b1, work);
        skew_expm(R2, G2, b2, work);
        for (int i = 0; i < b1; i++)
            for (int j = 0; j < b1; j++)
                want[i * b + j] = R1[i * b1 + j];
        for (int i = 0; i < b2; i++)
            for (int j = 0; j < b2; j++)
                want[(b1 + i) * b + b1 + j] = R2[i * b2 + j];
        const double err = max_diff(R, want, (size_t)b * b);
        ck_assert_msg(err < EXP_TOL, "b=%d: block-diagonal error %.3g", b, err);
        free(G);
        free(R);
        free(want);
        free(G1);
        free(G2);
        free(R1);
        free(R2);
        skew_expm_work_free(work);
    }
}
END_TEST

/* Non-finite generators give NaN (for the trainer's check), not a hang. */
START_TEST(test_exp_nonfinite)
{
    SkewExpmWork *work = skew_expm_work_create(4);
    double G[16] = {0}, R[16], W[16] = {0};
    G[1] = INFINITY;
    G[4] = -INFINITY;
    skew_expm(R, G, 4, work);
    for (int i = 0; i < 16; i++)
        ck_assert(isnan(R[i]));
    G[1] = NAN;
    skew_expm_backward(R, G, W, 4, work);
    for (int i = 0; i < 16; i++)
        ck_assert(isnan(R[i]));
    skew_expm_work_free(work);
}
END_TEST

/* skew_expm_f equals the double path on the same (widened) input up to
 * the final rounding to float (2^-24 relative, entries <= 1 here). */
START_TEST(test_exp_float)
{
    const int b = 8;
    SkewExpmWork *work = skew_expm_work_create(b);
    double G[64], R[64];
    float Gf[64], Rf[64];
    Rng rng = rng_stream(5, RNG_TEST, 0, 0);
    random_skew(G, b, 20.0, &rng);
    for (int i = 0; i < 64; i++) {
        Gf[i] = (float)G[i];
        G[i] = Gf[i];
    }
    skew_expm(R, G, b, work);
    skew_expm_f(Rf, Gf, b, work);
    for (int i = 0; i < 64; i++)
        ck_assert_double_eq_tol(Rf[i], R[i], 6e-8);
    skew_expm_work_free(work);
}
END_TEST

/* skew_expm_backward_f, the algorithm in float, against the double
 * backward on the same (widened) input, max-norm error relative to
 * max |dG|: float rounding (6e-8) grows through the products and up to 7
 * squarings to a measured 5e-7 to 6e-6 (b = 8 and 64, ||G||_1 = 20 and
 * 230); 2e-5 leaves room, while dR scaled by 1 + 1e-4 already fails. */
START_TEST(test_backward_float)
{
    const int sizes[2] = {8, 64};
    const double norms[2] = {20.0, 230.0};
    for (int k = 0; k < 2; k++)
        for (int n = 0; n < 2; n++) {
            const int b = sizes[k], bb = b * b;
            SkewExpmWork *work = skew_expm_work_create(b);
            double *G = alloc_matrix(b), *W = alloc_matrix(b), *dG = alloc_matrix(b);
            float *Gf = malloc((size_t)bb * sizeof(float));
            float *Wf = malloc((size_t)bb * sizeof(float));
            float *dGf = malloc((size_t)bb * sizeof(float));
            Rng rng = rng_stream(6, RNG_TEST, (uint64_t)k, (uint64_t)n);
            random_skew(G, b, norms[n], &rng);
            random_general(W, b, 1.0, &rng);
            for (int i = 0; i < bb; i++) {
                Gf[i] = (float)G[i];
                Wf[i] = (float)W[i];
                G[i] = Gf[i];
                W[i] = Wf[i];
            }
            skew_expm_backward(dG, G, W, b, work);
            skew_expm_backward_f(dGf, Gf, Wf, b, work);
            double err = 0.0, scale = 1e-30;
            for (int i = 0; i < bb; i++) {
                err = fmax(err, fabs(dGf[i] - dG[i]));
                scale = fmax(scale, fabs(dG[i]));
            }
            printf("skew_expm_backward_f b=%2d |G|_1=%5.0f  max|dG_f - dG| / scale = %.2e\n", b,
                   norms[n], err / scale);
            ck_assert_msg(err / scale < 2e-5, "b=%d norm %g: float backward off by %.3g", b,
                          norms[n], err / scale);
            free(G);
            free(W);
            free(dG);
            free(Gf);
            free(Wf);
            free(dGf);
            skew_expm_work_free(work);
        }
}
END_TEST

/* ---- backward ------------------------------------------------------------ */

/* Backward against the long-double block reference, max-norm error
 * relative to max|reference|. W is scaled to ||W||_1 = 1 (L is linear in
 * W) to keep the block matrix's norm, and so the reference's squarings,
 * close to those of G. For skew G, ||L_exp(G^T, W)||_2 <= ||W||_2; the
 * conditioning and squaring arguments for exp give ~1e-13, so 1e-12 again.
 * General (non-skew) G of norm 1 and 4 exercise the transpose. */
START_TEST(test_backward_reference)
{
    const int b = SIZES[_i];
    SkewExpmWork *work = skew_expm_work_create(b);
    double *G = alloc_matrix(b), *W = alloc_matrix(b), *dG = alloc_matrix(b);
    double *ref = alloc_matrix(b);
    for (int k = 0; k < N_NORMS + 2; k++) {
        const int general = k >= N_NORMS;
        const double norm = general ? (k == N_NORMS ? 1.0 : 4.0) : NORMS[k];
        Rng rng = rng_stream(6, RNG_TEST, 600 + (uint64_t)b, (uint64_t)k);
        if (general)
            random_general(G, b, norm, &rng);
        else
            random_skew(G, b, norm, &rng);
        random_general(W, b, 1.0, &rng);
        skew_expm_backward(dG, G, W, b, work);
        reference_backward(ref, G, W, b);
        const size_t len = (size_t)b * b;
        const double err = max_diff(dG, ref, len) / max_abs(ref, len);
        printf("skew_expm_backward b=%2d |G|_1=%8.3g %s  max|dG - ref| / scale = %.2e\n", b, norm,
               general ? "general" : "skew   ", err);
        ck_assert_msg(err < EXP_TOL, "b=%d norm %g%s: backward error %.3g", b, norm,
                      general ? " (general G)" : "", err);
    }
    free(G);
    free(W);
    free(dG);
    free(ref);
    skew_expm_work_free(work);
}
END_TEST

/* L(G) = sum(W o exp(G)) in double. */
static double loss(const double *G, const double *W, double *R, int b, SkewExpmWork *work)
{
    skew_expm(R, G, b, work);
    double sum = 0.0;
    for (int i = 0; i < b * b; i++)
        sum += W[i] * R[i];
    return sum;
}

/* dL/dx for the direction D (x -> G + x D) by the fourth-order central
 * difference (8 (L(h) - L(-h)) - (L(2h) - L(-2h))) / 12h, h = 1e-3: its
 * truncation error h^4/30 * L''''' is ~1e-14 here (for skew G every
 * derivative of exp along a unit direction is bounded by ||W||), and its
 * rounding noise is the forward's error (<= 3e-14 per entry, summed over
 * b^2 entries of W) over h: measured <= 2e-10 of the gradient scale at
 * b = 64, ||G||_1 = 100. A tolerance of 1e-7 leaves room; a gradient
 * wrong by 1e-5 of its size would still fail. A second-order difference
 * would need h ~ 1e-5 and leave ~1e-8 of rounding noise. */
static double central_difference(const double *G, const double *D, const double *W, int b,
                                 double *Gp, double *R, SkewExpmWork *work)
{
    const double h = 1e-3, steps[4] = {h, -h, 2 * h, -2 * h};
    double L[4];
    for (int s = 0; s < 4; s++) {
        for (int i = 0; i < b * b; i++)
            Gp[i] = G[i] + steps[s] * D[i];
        L[s] = loss(Gp, W, R, b, work);
    }
    return (8.0 * (L[0] - L[1]) - (L[2] - L[3])) / (12.0 * h);
}

static const double FD_TOL = 1e-7;
/* Entries checked for b > 8 (each costs four exps). */
enum { FD_SAMPLES = 32 };

typedef struct FdCase {
    int b;
    double *G, *W, *D, *Gp, *R, *grad;
    SkewExpmWork *work;
} FdCase;

static FdCase fd_case_create(int b)
{
    FdCase c = {b, alloc_matrix(b), alloc_matrix(b), alloc_matrix(b), alloc_matrix(b),
                alloc_matrix(b), alloc_matrix(b), skew_expm_work_create(b)};
    return c;
}

static void fd_case_free(FdCase *c)
{
    free(c->G);
    free(c->W);
    free(c->D);
    free(c->Gp);
    free(c->R);
    free(c->grad);
    skew_expm_work_free(c->work);
}

/* Entry (i, j) to check, number t of count: all for b <= 8, else random. */
static void pick_entry(int b, int t, Rng *rng, int *i, int *j)
{
    if (b <= 8) {
        *i = t / b;
        *j = t % b;
    } else {
        *i = (int)rng_below(rng, (uint32_t)b);
        *j = (int)rng_below(rng, (uint32_t)b);
    }
}

/* max |dG - fd| / max |fd| over the checked entries of G, each perturbed
 * alone (a general direction, as the backward promises for any G). */
static double fd_error_entries(FdCase *c, const double *dG, Rng *rng)
{
    const int b = c->b, count = b <= 8 ? b * b : FD_SAMPLES;
    double err = 0.0, scale = 1e-12;
    for (int t = 0; t < count; t++) {
        int i, j;
        pick_entry(b, t, rng, &i, &j);
        memset(c->D, 0, (size_t)b * b * sizeof(double));
        c->D[i * b + j] = 1.0;
        const double fd = central_difference(c->G, c->D, c->W, b, c->Gp, c->R, c->work);
        err = fmax(err, fabs(dG[i * b + j] - fd));
        scale = fmax(scale, fabs(fd));
    }
    return err / scale;
}

START_TEST(test_backward_fd)
{
    const int b = SIZES[_i];
    FdCase c = fd_case_create(b);
    const double norms[] = {0.01, 0.5, 1.0, 10.0, FOUR_PI * 8};
    for (int k = 0; k < 6; k++) {
        const int general = k == 5;
        Rng rng = rng_stream(7, RNG_TEST, 700 + (uint64_t)b, (uint64_t)k);
        if (general)
            random_general(c.G, b, 1.5, &rng);
        else
            random_skew(c.G, b, norms[k], &rng);
        random_general(c.W, b, (double)b, &rng);
        skew_expm_backward(c.grad, c.G, c.W, b, c.work);
        const double err = fd_error_entries(&c, c.grad, &rng);
        printf("skew_expm_backward b=%2d %s |G|_1=%6.3g  fd error %.2e\n", b,
               general ? "general" : "skew   ", general ? 1.5 : norms[k], err);
        ck_assert_msg(err < FD_TOL, "b=%d case %d: fd error %.3g", b, k, err);
    }
    fd_case_free(&c);
}
END_TEST

/* The encodings' parametrisation G = U - U^T (U strictly upper): moving
 * U_ij moves G_ij by +1 and G_ji by -1, so dL/dU_ij = dG_ij - dG_ji. */
START_TEST(test_backward_skew_parametrisation)
{
    const int b = SIZES[_i];
    FdCase c = fd_case_create(b);
    Rng rng = rng_stream(8, RNG_TEST, 800 + (uint64_t)b, 0);
    random_skew(c.G, b, 3.0, &rng);
    random_general(c.W, b, (double)b, &rng);
    skew_expm_backward(c.grad, c.G, c.W, b, c.work);
    const int count = b <= 8 ? b * b : FD_SAMPLES;
    double err = 0.0, scale = 1e-12;
    for (int t = 0; t < count; t++) {
        int i, j;
        pick_entry(b, t, &rng, &i, &j);
        if (i == j)
            continue;
        if (i > j) {
            if (b <= 8)
                continue; /* each pair once */
            int swap = i;
            i = j;
            j = swap;
        }
        memset(c.D, 0, (size_t)b * b * sizeof(double));
        c.D[i * b + j] = 1.0;
        c.D[j * b + i] = -1.0;
        const double fd = central_difference(c.G, c.D, c.W, b, c.Gp, c.R, c.work);
        const double dU = c.grad[i * b + j] - c.grad[j * b + i];
        err = fmax(err, fabs(dU - fd));
        scale = fmax(scale, fabs(fd));
    }
    printf("skew_expm_backward b=%2d  dL/dU fd error %.2e\n", b, err / scale);
    ck_assert_msg(err / scale < FD_TOL, "b=%d: dL/dU error %.3g", b, err / scale);
    fd_case_free(&c);
}
END_TEST

/* Planted bug: L_exp(G, W) instead of L_exp(G^T, W), i.e. forgetting the
 * transpose, computed here by handing the backward G^T. On a general G,
 * and on a skew one (where it is L_exp(-G, W)), the finite-difference check
 * above must see an O(1) error, so that test can fail. */
START_TEST(test_backward_planted_transpose_bug)
{
    const int b = 8;
    FdCase c = fd_case_create(b);
    double *Gt = alloc_matrix(b);
    for (int k = 0; k < 2; k++) {
        Rng rng = rng_stream(9, RNG_TEST, (uint64_t)k, 0);
        if (k == 0)
            random_general(c.G, b, 1.5, &rng);
        else
            random_skew(c.G, b, 3.0, &rng);
        random_general(c.W, b, (double)b, &rng);
        transpose(Gt, c.G, b);
        skew_expm_backward(c.grad, Gt, c.W, b, c.work);
        const double err = fd_error_entries(&c, c.grad, &rng);
        printf("skew_expm_backward planted bug (%s G): fd error %.2e\n", k ? "skew" : "general",
               err);
        ck_assert_msg(err > 1e-2, "the transpose bug went unnoticed: error %.3g", err);
    }
    free(Gt);
    fd_case_free(&c);
}
END_TEST

Suite *skew_expm_suite(void)
{
    Suite *s = suite_create("skew_expm");
    TCase *tc = tcase_with_timeout("exp", 60, NULL);
    tcase_add_loop_test(tc, test_exp_reference, 0, N_SIZES);
    tcase_add_test(tc, test_exp_rotation_2x2);
    tcase_add_loop_test(tc, test_exp_orthogonal, 0, N_SIZES);
    tcase_add_loop_test(tc, test_exp_inverse, 0, N_SIZES);
    tcase_add_test(tc, test_exp_block_diagonal);
    tcase_add_test(tc, test_exp_nonfinite);
    tcase_add_test(tc, test_exp_float);
    tcase_add_test(tc, test_backward_float);
    suite_add_tcase(s, tc);
    tc = tcase_with_timeout("backward", 120, NULL);
    tcase_add_loop_test(tc, test_backward_reference, 0, N_SIZES);
    tcase_add_loop_test(tc, test_backward_fd, 0, N_SIZES);
    tcase_add_loop_test(tc, test_backward_skew_parametrisation, 0, N_SIZES);
    tcase_add_test(tc, test_backward_planted_transpose_bug);
    suite_add_tcase(s, tc);
    return s;
}
