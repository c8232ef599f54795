/*
 * test_ops.c - every op's backward against finite differences of its
 * forward (gradcheck.h), w.r.t. every input and parameter.
 *
 * Tolerance: 1e-3 of the tensor's gradient scale. The forward runs in fp32;
 * with h = 1e-2 relative steps the central difference's truncation error is
 * O(h^2) ~ 1e-4 for these smooth ops, and the rounding noise of the fp32
 * outputs that change is ~1e-5. A gradient wrong by 1 % gives an error of
 * about 1e-2, ten times the tolerance (test_gradcheck.c shows it fails).
 */
#include "gradcheck.h"
#include "suites.h"

#include "vitrain/common.h"
#include "vitrain/ops.h"
#include "vitrain/vecmath.h"

#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const double OP_TOLERANCE = 1e-3;

/* The gradient check, and the promise of ops.h that the backward writes
 * the gradients of the first `written` tensors (the op's inputs) without
 * reading them and adds into the others (its parameters). */
static void check(const char *title, GcProblem *p, int written)
{
    GcResult r;
    gradcheck_run(p, NULL, &r);
    gradcheck_print(title, p, &r);
    ck_assert_msg(r.max_error < OP_TOLERANCE, "%s: gradient error %.3g in %s exceeds %.3g", title,
                  r.max_error, p->tensors[r.worst].name, OP_TOLERANCE);
    double mismatch = gradcheck_overwrite(p, written);
    ck_assert_msg(mismatch < 1e-6, "%s: backward reads a gradient it should write, or overwrites "
                  "one it should add into (difference %.3g)", title, mismatch);
}

/* ---- linear -------------------------------------------------------------- */

typedef struct {
    int T, I, O;
    float *x, *w, *b, *y, *dx, *dw, *db, *dy;
} LinearCase;

static void linear_fwd(void *c)
{
    LinearCase *l = c;
    linear_forward(l->y, l->x, l->w, l->b, l->T, l->I, l->O);
}

static void linear_bwd(void *c)
{
    LinearCase *l = c;
    linear_backward(l->dx, l->dw, l->db, l->dy, l->x, l->w, l->T, l->I, l->O);
}

START_TEST(test_linear)
{
    LinearCase l = {.T = 7, .I = 11, .O = 5};
    l.x = gc_randn(77, 1, 1), l.w = gc_randn(55, 1, 2), l.b = gc_randn(5, 1, 3);
    l.y = gc_zeros(35), l.dy = gc_zeros(35), l.dx = gc_zeros(77), l.dw = gc_zeros(55), l.db = gc_zeros(5);
    GcProblem p = {.ctx = &l, .forward = linear_fwd, .backward = linear_bwd, .out = l.y,
                   .dout = l.dy, .out_n = 35};
    gc_add(gc_add(gc_add(&p, "x", l.x, l.dx, 77), "weight", l.w, l.dw, 55), "bias", l.b, l.db, 5);
    check("linear", &p, 1);
}
END_TEST

START_TEST(test_linear_residual_and_in_place_backward)
{
    /* linear_residual_forward = residual + linear_forward; and the model
     * lets linear_backward write dx over x. */
    enum { T = 33, I = 20, O = 12 };
    float *x = gc_randn(T * I, 1, 51), *w = gc_randn(O * I, 1, 52), *b = gc_randn(O, 1, 53);
    float *res = gc_randn(T * O, 1, 54), *y = gc_zeros(T * O), *y2 = gc_zeros(T * O);
    linear_forward(y, x, w, b, T, I, O);
    linear_residual_forward(y2, res, x, w, b, T, I, O);
    for (int i = 0; i < T * O; i++)
        ck_assert_float_eq_tol(y2[i], res[i] + y[i], 1e-5f * (1.0f + fabsf(y[i])));
    linear_residual_forward(y2, NULL, x, w, b, T, I, O); /* no residual: linear_forward */
    ck_assert(memcmp(y, y2, sizeof(float) * T * O) == 0);

    float *dy = gc_randn(T * O, 1, 55), *dx = gc_zeros(T * I), *dw = gc_zeros(O * I);
    float *dw2 = gc_zeros(O * I), *db = gc_zeros(O), *db2 = gc_zeros(O);
    linear_backward(dx, dw, db, dy, x, w, T, I, O);
    linear_backward(x, dw2, db2, dy, x, w, T, I, O); /* dx over x */
    ck_assert(memcmp(dw, dw2, sizeof(float) * O * I) == 0);
    ck_assert(memcmp(db, db2, sizeof(float) * O) == 0);
    ck_assert(memcmp(dx, x, sizeof(float) * T * I) == 0);
}
END_TEST

/* ---- layernorm ----------------------------------------------------------- */

typedef struct {
    int T, D;
    float *x, *w, *b, *y, *mean, *rstd, *dx, *dw, *db, *dy;
} NormCase;

static void norm_fwd(void *c)
{
    NormCase *n = c;
    layernorm_forward(n->y, n->mean, n->rstd, n->x, n->w, n->b, n->T, n->D);
}

static void norm_bwd(void *c)
{
    NormCase *n = c;
    layernorm_backward(n->dx, n->dw, n->db, n->dy, n->x, n->mean, n->rstd, n->w, n->T, n->D);
}

START_TEST(test_layernorm)
{
    NormCase n = {.T = 6, .D = 24};
    const size_t len = 6 * 24;
    n.x = gc_randn(len, 2, 4), n.w = gc_randn(24, 1, 5), n.b = gc_randn(24, 1, 6);
    n.y = gc_zeros(len), n.dy = gc_zeros(len), n.dx = gc_zeros(len), n.dw = gc_zeros(24), n.db = gc_zeros(24);
    n.mean = gc_zeros(6), n.rstd = gc_zeros(6);
    GcProblem p = {.ctx = &n, .forward = norm_fwd, .backward = norm_bwd, .out = n.y,
                   .dout = n.dy, .out_n = len};
    gc_add(gc_add(gc_add(&p, "x", n.x, n.dx, len), "weight", n.w, n.dw, 24), "bias", n.b, n.db, 24);
    check("layernorm", &p, 0); /* its dx adds into the stream gradient */
}
END_TEST

START_TEST(test_layernorm_recompute_matches_forward)
{
    enum { T = 37, D = 200 };
    float *x = gc_randn(T * D, 3, 43), *w = gc_randn(D, 1, 44), *b = gc_randn(D, 1, 45);
    float *y = gc_zeros(T * D), *y2 = gc_zeros(T * D), *mean = gc_zeros(T), *rstd = gc_zeros(T);
    layernorm_forward(y, mean, rstd, x, w, b, T, D);
    layernorm_recompute(y2, x, mean, rstd, w, b, T, D);
    ck_assert(memcmp(y, y2, sizeof(float) * T * D) == 0);
}
END_TEST

/* The parameter gradients that sum over rows, from T rows of width D. */
typedef struct {
    float *ln_dw, *ln_db, *lin_db, *dgamma, *dpos;
} RowSums;

static RowSums row_sums(int threads, const float *dy, const float *x, const float *mean,
                        const float *rstd, const float *w, int T, int D)
{
    RowSums r = {gc_zeros(D), gc_zeros(D), gc_zeros(D), gc_zeros(D), gc_zeros((size_t)T * D / 8)};
    float *dx = gc_zeros((size_t)T * D), *dw = gc_zeros((size_t)D * 3);
    omp_set_num_threads(threads);
    layernorm_backward(dx, r.ln_dw, r.ln_db, dy, x, mean, rstd, w, T, D);
    linear_backward(NULL, dw, r.lin_db, dy, x, w, T, 3, D);
    layerscale_backward(dx, r.dgamma, dy, x, w, T, D);
    pos_embed_backward(r.dpos, dy, 8, T / 8, D); /* 8 images of T / 8 tokens */
    omp_set_num_threads(1);
    return r;
}

/* Sums over rows by chunks (src/ops/reduce.h): the same bits for 1 and 3
 * threads, and the sums of a reference in double, at a row count that
 * splits unevenly. */
START_TEST(test_row_sums_do_not_depend_on_threads)
{
    enum { T = 1000, D = 70 };
    float *x = gc_randn(T * D, 2, 61), *dy = gc_randn(T * D, 1, 62), *w = gc_randn(D, 1, 63);
    float *y = gc_zeros(T * D), *b = gc_zeros(D), *mean = gc_zeros(T), *rstd = gc_zeros(T);
    layernorm_forward(y, mean, rstd, x, w, b, T, D);
    const RowSums one = row_sums(1, dy, x, mean, rstd, w, T, D);
    const RowSums three = row_sums(3, dy, x, mean, rstd, w, T, D);
    ck_assert(memcmp(one.ln_dw, three.ln_dw, D * sizeof(float)) == 0);
    ck_assert(memcmp(one.ln_db, three.ln_db, D * sizeof(float)) == 0);
    ck_assert(memcmp(one.lin_db, three.lin_db, D * sizeof(float)) == 0);
    ck_assert(memcmp(one.dgamma, three.dgamma, D * sizeof(float)) == 0);
    ck_assert(memcmp(one.dpos, three.dpos, (size_t)T * D / 8 * sizeof(float)) == 0);
    for (int j = 0; j < D; j++) {
        double sum = 0.0, dot = 0.0, xhat = 0.0, pos = 0.0;
        for (int t = 0; t < T; t++) {
            sum += dy[t * D + j];
            dot += (double)dy[t * D + j] * x[t * D + j];
            xhat += (double)dy[t * D + j] * (x[t * D + j] - mean[t]) * rstd[t];
        }
        for (int image = 0; image < 8; image++)
            pos += dy[image * (T / 8) * D + j]; /* token 0, channel j */
        ck_assert_double_eq_tol(one.ln_db[j], sum, 1e-4);
        ck_assert_double_eq_tol(one.lin_db[j], sum, 1e-4);
        ck_assert_double_eq_tol(one.dgamma[j], dot, 1e-3);
        ck_assert_double_eq_tol(one.ln_dw[j], xhat, 1e-3);
        ck_assert_double_eq_tol(one.dpos[j], pos, 1e-5);
    }
}
END_TEST

/* ---- GELU ---------------------------------------------------------------- */

typedef struct {
    int64_t n;
    float *x, *y, *dx, *dy;
} UnaryCase;

static void gelu_fwd(void *c)
{
    UnaryCase *u = c;
    gelu_forward(u->y, u->x, u->n);
}

static void gelu_bwd(void *c)
{
    UnaryCase *u = c;
    gelu_backward(u->dx, u->dy, u->x, u->n);
}

START_TEST(test_gelu)
{
    UnaryCase u = {.n = 200};
    u.x = gc_randn(200, 2, 7), u.y = gc_zeros(200), u.dx = gc_zeros(200), u.dy = gc_zeros(200);
    GcProblem p = {.ctx = &u, .forward = gelu_fwd, .backward = gelu_bwd, .out = u.y,
                   .dout = u.dy, .out_n = 200};
    gc_add(&p, "x", u.x, u.dx, 200);
    check("gelu", &p, 1);
}
END_TEST

START_TEST(test_vec_expf_matches_exp_in_double)
{
    /* vecmath.h promises about 1 ulp on [-87, 88]: 2 ulp (2^-22 relative)
     * is the bound here, for the clamped form and the one without clamps. */
    enum { N = 350001 };
    double worst = 0.0;
    for (int i = 0; i < N; i++) {
        const float x = -87.0f + 175.0f * (float)i / (N - 1);
        const double want = exp((double)x);
        worst = fmax(worst, fabs(vec_expf(x) - want) / want);
        worst = fmax(worst, fabs(vec_expf_in_range(x) - want) / want);
    }
    printf("vec_expf: max relative error %.3g on [-87, 88]\n", worst);
    ck_assert_msg(worst < 0x1p-22, "vec_expf: relative error %.3g", worst);
    /* Beyond the range vec_expf clamps (finite, positive); NaN stays NaN. */
    ck_assert(vec_expf(-1000.0f) == vec_expf(-87.0f) && vec_expf(-1000.0f) > 0.0f);
    ck_assert(vec_expf(1000.0f) == vec_expf(88.0f) && isfinite(vec_expf(1000.0f)));
    ck_assert(isnan(vec_expf(NAN)));
}
END_TEST

START_TEST(test_gelu_matches_erf_in_double)
{
    /* GELU against 0.5 x (1 + erf(x / sqrt 2)) in double on [-12, 12]:
     * 2e-6 relative where |y| > 1e-6 (fp32 holds 6e-8; the polynomial erf
     * and exp cost a few ulp more), 1e-6 absolute everywhere. */
    enum { N = 240001 };
    float *x = gc_zeros(N), *y = gc_zeros(N);
    for (int i = 0; i < N; i++)
        x[i] = -12.0f + 24.0f * (float)i / (N - 1);
    gelu_forward(y, x, N);
    for (int i = 0; i < N; i++) {
        double ref = 0.5 * x[i] * (1.0 + erf(x[i] / sqrt(2.0)));
        double err = fabs(y[i] - ref);
        ck_assert_msg(err < 1e-6, "gelu(%g) = %.9g, expected %.9g", (double)x[i], (double)y[i], ref);
        if (fabs(ref) > 1e-6)
            ck_assert_msg(err / fabs(ref) < 2e-6, "gelu(%g) = %.9g, expected %.9g", (double)x[i],
                          (double)y[i], ref);
    }
    /* Beyond the range above the tails are exact to float: x and 0, with
     * slopes 1 and 0. */
    const float far[4] = {20.0f, -20.0f, 1e6f, -1e6f};
    float slope[4], y_far[4];
    gelu_forward_slope(y_far, slope, far, 4);
    for (int i = 0; i < 4; i++) {
        const bool positive = far[i] > 0.0f;
        ck_assert_msg(positive ? y_far[i] == far[i] : fabsf(y_far[i]) < 1e-30f, "gelu(%g) = %g",
                      (double)far[i], (double)y_far[i]);
        ck_assert_msg(positive ? slope[i] == 1.0f : fabsf(slope[i]) < 1e-30f, "gelu'(%g) = %g",
                      (double)far[i], (double)slope[i]);
    }
    /* A NaN must come out as NaN, so that a broken step is noticed. */
    x[0] = NAN;
    gelu_forward(y, x, 1);
    ck_assert(isnan(y[0]));
    gelu_forward_slope(y, slope, x, 1);
    ck_assert(isnan(y[0]) && isnan(slope[0]));
}
END_TEST

START_TEST(test_gelu_recompute_matches_forward_and_backward)
{
    /* The model's backward recomputes GELU: its output must be the
     * forward's bit for bit, and slope * dy the backward's. */
    enum { N = 4099 }; /* not a multiple of any vector width */
    float *x = gc_randn(N, 3, 41), *dy = gc_randn(N, 1, 42);
    float *y = gc_zeros(N), *y2 = gc_zeros(N), *slope = gc_zeros(N);
    float *dx = gc_zeros(N), *dx2 = gc_zeros(N);
    gelu_forward(y, x, N);
    gelu_backward(dx, dy, x, N);
    gelu_forward_slope(y2, slope, x, N);
    gelu_slope_backward(dx2, dy, slope, N);
    ck_assert(memcmp(y, y2, N * sizeof(float)) == 0);
    for (int i = 0; i < N; i++)
        ck_assert_msg(fabsf(dx[i] - dx2[i]) <= 1e-6f * fabsf(dx[i]), "x = %g: %.9g vs %.9g",
                      (double)x[i], (double)dx[i], (double)dx2[i]);
    /* In place, as the model calls it. */
    gelu_slope_backward(dy, dy, slope, N);
    ck_assert(memcmp(dy, dx2, N * sizeof(float)) == 0);
}
END_TEST

START_TEST(test_gelu_any_length_writes_its_elements_only)
{
    /* The vector path runs whole groups of lanes and masks the last one:
     * at every length each element gets the value it has in a longer
     * array, and nothing past the end is written. */
    enum { MAX = 3 * 64 + 17, GUARD = 64 };
    const float untouched = -7.0f;
    float *x = gc_randn(MAX, 3, 43), *dy = gc_randn(MAX, 1, 44);
    float *ref_y = gc_zeros(MAX), *ref_slope = gc_zeros(MAX), *ref_dx = gc_zeros(MAX);
    float *y = gc_zeros(MAX + GUARD), *slope = gc_zeros(MAX + GUARD);
    gelu_forward_slope(ref_y, ref_slope, x, MAX);
    gelu_backward(ref_dx, dy, x, MAX);
    for (int n = 1; n <= MAX; n++) {
        for (int pass = 0; pass < 3; pass++) {
            for (int i = 0; i < MAX + GUARD; i++)
                y[i] = slope[i] = untouched;
            const float *want = pass == 2 ? ref_dx : ref_y;
            if (pass == 0)
                gelu_forward(y, x, n);
            else if (pass == 1)
                gelu_forward_slope(y, slope, x, n);
            else
                gelu_backward(y, dy, x, n);
            for (int i = 0; i < n; i++) {
                ck_assert_msg(y[i] == want[i], "pass %d, n = %d: element %d %.9g, expected %.9g",
                              pass, n, i, (double)y[i], (double)want[i]);
                if (pass == 1)
                    ck_assert_msg(slope[i] == ref_slope[i], "n = %d: slope %d", n, i);
            }
            for (int i = n; i < MAX + GUARD; i++)
                ck_assert_msg(y[i] == untouched && slope[i] == untouched,
                              "pass %d, n = %d: element %d past the end was written", pass, n, i);
        }
    }
}
END_TEST

/* ---- GELU then linear ------------------------------------------------------ */

/* Two chunks of rows, the second short, so that every chunk boundary of
 * gelu_linear.c is crossed. */
enum { GL_T = GELU_LINEAR_ROWS + 37 };

typedef struct {
    int T, I, O;
    float *x, *w, *b, *y, *dx, *dw, *db, *dy, *scratch;
} GeluLinearCase;

static void gelu_linear_fwd(void *c)
{
    GeluLinearCase *l = c;
    gelu_linear_forward(l->y, NULL, l->x, l->w, l->b, l->T, l->I, l->O, l->scratch);
}

/* The op turns x into dL/dx in place; the check wants dx apart. */
static void gelu_linear_bwd(void *c)
{
    GeluLinearCase *l = c;
    memcpy(l->dx, l->x, sizeof(float) * (size_t)l->T * (size_t)l->I);
    gelu_linear_backward(l->dx, l->dw, l->db, l->dy, l->w, l->T, l->I, l->O, l->scratch);
}

START_TEST(test_gelu_linear)
{
    enum { I = 3, O = 2 };
    GeluLinearCase l = {.T = GL_T, .I = I, .O = O};
    l.x = gc_randn(GL_T * I, 1.5, 61), l.w = gc_randn(O * I, 1, 62), l.b = gc_randn(O, 1, 63);
    l.y = gc_zeros(GL_T * O), l.dy = gc_zeros(GL_T * O), l.dx = gc_zeros(GL_T * I);
    l.dw = gc_zeros(O * I), l.db = gc_zeros(O), l.scratch = gc_zeros(GELU_LINEAR_ROWS * I);
    GcProblem p = {.ctx = &l, .forward = gelu_linear_fwd, .backward = gelu_linear_bwd, .out = l.y,
                   .dout = l.dy, .out_n = GL_T * O};
    gc_add(gc_add(gc_add(&p, "x", l.x, l.dx, GL_T * I), "weight", l.w, l.dw, O * I), "bias", l.b,
           l.db, O);
    check("gelu_linear", &p, 1);
}
END_TEST

START_TEST(test_gelu_linear_matches_gelu_and_linear)
{
    /* Chunk by chunk, the op must give what GELU over all rows and then one
     * linear layer give: the same rows, the same dW up to the order of its
     * sum over rows, the same bias gradient bit for bit. */
    enum { I = 20, O = 12 };
    float *x = gc_randn(GL_T * I, 2, 71), *w = gc_randn(O * I, 1, 72), *b = gc_randn(O, 1, 73);
    float *res = gc_randn(GL_T * O, 1, 74), *dy = gc_randn(GL_T * O, 1, 75);
    float *h = gc_zeros(GL_T * I), *scratch = gc_zeros(GELU_LINEAR_ROWS * I);
    float *y = gc_zeros(GL_T * O), *y2 = gc_zeros(GL_T * O);
    gelu_forward(h, x, GL_T * I);
    linear_residual_forward(y, res, h, w, b, GL_T, I, O);
    gelu_linear_forward(y2, res, x, w, b, GL_T, I, O, scratch);
    for (int i = 0; i < GL_T * O; i++)
        ck_assert_float_eq_tol(y2[i], y[i], 1e-5f * (1.0f + fabsf(y[i])));

    float *dx = gc_zeros(GL_T * I), *dw = gc_zeros(O * I), *db = gc_zeros(O);
    float *dw2 = gc_zeros(O * I), *db2 = gc_zeros(O);
    linear_backward(dx, dw, db, dy, h, w, GL_T, I, O);
    gelu_backward(dx, dx, x, GL_T * I);
    gelu_linear_backward(x, dw2, db2, dy, w, GL_T, I, O, scratch); /* x becomes dL/dx */
    for (int i = 0; i < GL_T * I; i++)
        ck_assert_float_eq_tol(x[i], dx[i], 1e-5f * (1.0f + fabsf(dx[i])));
    for (int i = 0; i < O * I; i++)
        ck_assert_float_eq_tol(dw2[i], dw[i], 1e-4f * (1.0f + fabsf(dw[i])));
    ck_assert(memcmp(db, db2, sizeof(float) * O) == 0);
}
END_TEST

/* ---- softmax cross-entropy ----------------------------------------------- */

typedef struct {
    int B, K;
    XentTargets t;
    float *logits, *probs, *losses, *dlogits;
    float loss, dloss;
} XentCase;

static void xent_fwd(void *c)
{
    XentCase *x = c;
    x->loss = (float)softmax_xent_forward(x->probs, x->losses, x->logits, &x->t, x->B, x->K);
}

static void xent_bwd(void *c)
{
    XentCase *x = c;
    softmax_xent_backward(x->dlogits, x->probs, &x->t, x->dloss, x->B, x->K);
}

/* mix_labels: mixup partners' labels (NULL: none), lambda the labels' share. */
static void check_xent(const char *name, float smoothing, const int *mix_labels, float lambda)
{
    static const int labels[5] = {0, 6, 3, 3, 1};
    XentCase x = {.B = 5, .K = 7,
                  .t = {.labels = labels, .mix_labels = mix_labels, .lambda = lambda,
                        .smoothing = smoothing}};
    x.logits = gc_randn(35, 3, 8), x.probs = gc_zeros(35), x.losses = gc_zeros(5), x.dlogits = gc_zeros(35);
    GcProblem p = {.ctx = &x, .forward = xent_fwd, .backward = xent_bwd, .out = &x.loss,
                   .dout = &x.dloss, .out_n = 1};
    gc_add(&p, "logits", x.logits, x.dlogits, 35);
    check(name, &p, 1);
}

START_TEST(test_softmax_xent)
{
    check_xent("softmax_xent", 0.0f, NULL, 1.0f);
    check_xent("softmax_xent (smoothing 0.1)", 0.1f, NULL, 1.0f);
    /* Mixed targets, one sample with its own label as partner. */
    static const int partners[5] = {1, 3, 6, 3, 0};
    check_xent("softmax_xent (mixup 0.7, smoothing 0.1)", 0.1f, partners, 0.7f);
}
END_TEST

START_TEST(test_softmax_xent_value)
{
    /* Two classes, logits (0, log 3): p = (1/4, 3/4). With smoothing s the
     * target is (1 - s/2, s/2) for label 0, so the loss is
     * -(1 - s/2) log(1/4) - (s/2) log(3/4). */
    float logits[2] = {0.0f, logf(3.0f)}, probs[2], losses[1];
    int label = 0;
    XentTargets t = {.labels = &label, .lambda = 1.0f, .smoothing = 0.2f};
    double loss = softmax_xent_forward(probs, losses, logits, &t, 1, 2);
    double expected = -0.9 * log(0.25) - 0.1 * log(0.75);
    ck_assert_double_eq_tol(loss, expected, 1e-6);
    ck_assert_float_eq_tol(probs[1], 0.75f, 1e-6f);
    /* Mixed with label 1 at lambda 0.6: before smoothing the target is
     * (0.6, 0.4), after it (0.8 * 0.6 + 0.1, 0.8 * 0.4 + 0.1) = (0.58, 0.42). */
    int partner = 1;
    t.mix_labels = &partner;
    t.lambda = 0.6f;
    loss = softmax_xent_forward(probs, losses, logits, &t, 1, 2);
    expected = -0.58 * log(0.25) - 0.42 * log(0.75);
    ck_assert_double_eq_tol(loss, expected, 1e-6);
}
END_TEST

/* ---- patch embedding ---------------------------------------------------- */

typedef struct {
    int B, C, S, P, D, Np;
    float *img, *w, *b, *y, *cols, *dimg, *dcols, *dw, *db, *dy;
} PatchCase;

static void patch_fwd(void *c)
{
    PatchCase *e = c;
    patch_embed_forward(e->y, e->cols, e->img, e->w, e->b, e->B, e->C, e->S, e->S, e->P, e->D);
}

static void patch_bwd(void *c)
{
    PatchCase *e = c;
    patch_embed_backward(e->dimg, e->dcols, e->dw, e->db, e->dy, e->cols, e->w, e->B, e->C, e->S,
                         e->S, e->P, e->D);
}

START_TEST(test_patch_embed)
{
    PatchCase e = {.B = 2, .C = 3, .S = 8, .P = 4, .D = 5, .Np = 4};
    const size_t img = 2 * 3 * 8 * 8, w = 5 * 3 * 4 * 4, out = 2 * 4 * 5, cols = 2 * 4 * 48;
    e.img = gc_randn(img, 1, 9), e.w = gc_randn(w, 0.2, 10), e.b = gc_randn(5, 1, 11);
    e.y = gc_zeros(out), e.dy = gc_zeros(out), e.cols = gc_zeros(cols), e.dcols = gc_zeros(cols);
    e.dimg = gc_zeros(img), e.dw = gc_zeros(w), e.db = gc_zeros(5);
    GcProblem p = {.ctx = &e, .forward = patch_fwd, .backward = patch_bwd, .out = e.y,
                   .dout = e.dy, .out_n = out};
    gc_add(gc_add(gc_add(&p, "image", e.img, e.dimg, img), "weight", e.w, e.dw, w), "bias", e.b,
           e.db, 5);
    check("patch_embed", &p, 1);
}
END_TEST

START_TEST(test_patch_embed_layout)
{
    /* One channel, 4x4 image of pixel values 0..15, patch 2, a weight that
     * picks element j of the flattened patch: token (gy, gx) output j must
     * be pixel (2gy + j/2, 2gx + j%2), the conv's (row, col) order. */
    float img[16], w[4 * 4] = {0}, b[4] = {0}, y[4 * 4], cols[4 * 4];
    for (int i = 0; i < 16; i++)
        img[i] = (float)i;
    for (int j = 0; j < 4; j++)
        w[j * 4 + j] = 1.0f;
    patch_embed_forward(y, cols, img, w, b, 1, 1, 4, 4, 2, 4);
    for (int gy = 0; gy < 2; gy++)
        for (int gx = 0; gx < 2; gx++)
            for (int j = 0; j < 4; j++)
                ck_assert_float_eq(y[(gy * 2 + gx) * 4 + j],
                                   (float)((2 * gy + j / 2) * 4 + 2 * gx + j % 2));
}
END_TEST

/* ---- token glue: CLS concat, residual, LayerScale, drop path, pooling,
 *      position embedding ------------------------------------------------- */

typedef struct {
    int B, N, D;
    float *a, *b, *y, *da, *db, *dy, *scale;
    void (*fwd)(void *);
    void (*bwd)(void *);
} TokenCase;

static void cls_fwd(void *c)
{
    TokenCase *t = c;
    cls_concat_forward(t->y, t->a, t->b, t->B, t->N - 1, t->D);
}
static void cls_bwd(void *c)
{
    TokenCase *t = c;
    cls_concat_backward(t->da, t->db, t->dy, t->B, t->N - 1, t->D);
}
static void residual_fwd(void *c)
{
    TokenCase *t = c;
    residual_forward(t->y, t->a, t->b, (int64_t)t->B * t->N * t->D);
}
static void residual_bwd(void *c)
{
    TokenCase *t = c;
    residual_backward(t->da, t->db, t->dy, (int64_t)t->B * t->N * t->D);
}
static void ls_fwd(void *c)
{
    TokenCase *t = c;
    layerscale_forward(t->y, t->a, t->b, t->B * t->N, t->D);
}
static void ls_bwd(void *c)
{
    TokenCase *t = c;
    layerscale_backward(t->da, t->db, t->dy, t->a, t->b, t->B * t->N, t->D);
}
static void drop_fwd(void *c)
{
    TokenCase *t = c;
    drop_path_forward(t->y, t->a, t->scale, t->B, (int64_t)t->N * t->D);
}
static void drop_bwd(void *c)
{
    TokenCase *t = c;
    drop_path_backward(t->da, t->dy, t->scale, t->B, (int64_t)t->N * t->D);
}
static void pool_cls_fwd(void *c)
{
    TokenCase *t = c;
    pool_cls_forward(t->y, t->a, t->B, t->N, t->D);
}
static void pool_cls_bwd(void *c)
{
    TokenCase *t = c;
    pool_cls_backward(t->da, t->dy, t->B, t->N, t->D);
}
static void pool_mean_fwd(void *c)
{
    TokenCase *t = c;
    pool_mean_forward(t->y, t->a, t->B, t->N, t->D);
}
static void pool_mean_bwd(void *c)
{
    TokenCase *t = c;
    pool_mean_backward(t->da, t->dy, t->B, t->N, t->D);
}
static void pos_fwd(void *c)
{
    TokenCase *t = c;
    /* In place: y = a, then y += pos. */
    memcpy(t->y, t->a, (size_t)t->B * t->N * t->D * sizeof(float));
    pos_embed_forward(t->y, t->b, t->B, t->N, t->D);
}
static void pos_bwd(void *c)
{
    TokenCase *t = c;
    residual_backward(t->da, NULL, t->dy, (int64_t)t->B * t->N * t->D);
    pos_embed_backward(t->db, t->dy, t->B, t->N, t->D);
}

/* Checks one token op: input a has a_n elements, b (may be absent) b_n, the output out_n. */
static void check_token_op(const char *title, void (*fwd)(void *), void (*bwd)(void *),
                           size_t a_n, size_t b_n, size_t out_n, int written)
{
    TokenCase t = {.B = 3, .N = 5, .D = 4};
    t.a = gc_randn(a_n, 1, 12), t.da = gc_zeros(a_n);
    t.b = b_n ? gc_randn(b_n, 1, 13) : NULL, t.db = b_n ? gc_zeros(b_n) : NULL;
    t.y = gc_zeros(out_n), t.dy = gc_zeros(out_n);
    float scale[3] = {0.0f, 1.25f, 1.25f}; /* one dropped sample, two kept at keep 0.8 */
    t.scale = scale;
    GcProblem p = {.ctx = &t, .forward = fwd, .backward = bwd, .out = t.y, .dout = t.dy,
                   .out_n = out_n};
    gc_add(&p, "a", t.a, t.da, a_n);
    if (b_n)
        gc_add(&p, "b", t.b, t.db, b_n);
    check(title, &p, written);
}

START_TEST(test_token_ops)
{
    const size_t BND = 3 * 5 * 4, BD = 3 * 4, ND = 5 * 4;
    /* The last argument: how many of a, b are inputs (written), not parameters. */
    check_token_op("cls_concat", cls_fwd, cls_bwd, 3 * 4 * 4, 4, BND, 1);
    check_token_op("residual", residual_fwd, residual_bwd, BND, BND, BND, 2);
    check_token_op("layerscale", ls_fwd, ls_bwd, BND, 4, BND, 1);
    check_token_op("drop_path", drop_fwd, drop_bwd, BND, 0, BND, 1);
    check_token_op("pool_cls", pool_cls_fwd, pool_cls_bwd, BND, 0, BD, 1);
    check_token_op("pool_mean", pool_mean_fwd, pool_mean_bwd, BND, 0, BD, 1);
    check_token_op("pos_embed", pos_fwd, pos_bwd, BND, ND, BND, 1);
}
END_TEST

START_TEST(test_residual_branch_is_the_three_ops)
{
    /* Bit for bit layerscale, then drop path, then the residual add, with
     * each of the two scalings on or off. */
    enum { B = 3, N = 5, D = 19, L = N * D, n = B * L };
    const float *x = gc_randn(n, 1, 51), *branch = gc_randn(n, 1, 52), *gamma = gc_randn(D, 1, 53);
    const float scale[B] = {0.0f, 1.25f, 1.25f};
    float *want = gc_zeros(n), *got = gc_zeros(n), *tmp = gc_zeros(n), *tmp2 = gc_zeros(n);
    for (int with = 0; with < 4; with++) {
        const float *g = with & 1 ? gamma : NULL, *s = with & 2 ? scale : NULL;
        const float *y = branch;
        if (g) {
            layerscale_forward(tmp, y, g, B * N, D);
            y = tmp;
        }
        if (s) {
            drop_path_forward(tmp2, y, s, B, L);
            y = tmp2;
        }
        residual_forward(want, x, y, n);
        residual_branch_forward(got, x, branch, g, s, B, N, D);
        ck_assert_msg(memcmp(want, got, n * sizeof(float)) == 0, "gamma %s, scale %s",
                      g ? "on" : "off", s ? "on" : "off");
        /* In place over the branch, as the model calls it. */
        memcpy(got, branch, n * sizeof(float));
        residual_branch_forward(got, x, got, g, s, B, N, D);
        ck_assert_msg(memcmp(want, got, n * sizeof(float)) == 0, "in place: gamma %s, scale %s",
                      g ? "on" : "off", s ? "on" : "off");
    }
}
END_TEST

START_TEST(test_drop_path_scales)
{
    /* Scales are 0 or 1/keep, the kept fraction is near keep, and the same
     * (seed, step, slot) gives the same masks. */
    enum { B = 20000 };
    float *s1 = gc_zeros(B), *s2 = gc_zeros(B);
    drop_path_scales(s1, 7, 3, 1, 0.25f, 0, B);
    drop_path_scales(s2, 7, 3, 1, 0.25f, 0, B);
    int kept = 0;
    for (int b = 0; b < B; b++) {
        ck_assert(s1[b] == 0.0f || s1[b] == 1.0f / 0.75f);
        ck_assert(s1[b] == s2[b]);
        kept += s1[b] > 0;
    }
    /* Binomial(20000, 0.75): std 61, so 5 std is 306 samples. */
    ck_assert_int_lt(abs(kept - 15000), 306);
    /* A slice of the batch (a data-parallel rank's) gets the slice's scales. */
    drop_path_scales(s2, 7, 3, 1, 0.25f, 5000, 100);
    ck_assert(memcmp(s1 + 5000, s2, 100 * sizeof(float)) == 0);
    drop_path_scales(s2, 7, 4, 1, 0.25f, 0, B);
    ck_assert(memcmp(s1, s2, B * sizeof(float)) != 0);
}
END_TEST

Suite *ops_suite(void)
{
    Suite *s = suite_create("ops");
    TCase *tc = tcase_with_timeout("gradients", 60, NULL);
    tcase_add_checked_fixture(tc, NULL, gc_free_all);
    tcase_add_test(tc, test_linear);
    tcase_add_test(tc, test_layernorm);
    tcase_add_test(tc, test_gelu);
    tcase_add_test(tc, test_gelu_linear);
    tcase_add_test(tc, test_softmax_xent);
    tcase_add_test(tc, test_patch_embed);
    tcase_add_test(tc, test_token_ops);
    suite_add_tcase(s, tc);
    TCase *values = tcase_with_timeout("values", 30, NULL);
    tcase_add_checked_fixture(values, NULL, gc_free_all);
    tcase_add_test(values, test_softmax_xent_value);
    tcase_add_test(values, test_vec_expf_matches_exp_in_double);
    tcase_add_test(values, test_gelu_matches_erf_in_double);
    tcase_add_test(values, test_gelu_recompute_matches_forward_and_backward);
    tcase_add_test(values, test_gelu_any_length_writes_its_elements_only);
    tcase_add_test(values, test_linear_residual_and_in_place_backward);
    tcase_add_test(values, test_gelu_linear_matches_gelu_and_linear);
    tcase_add_test(values, test_layernorm_recompute_matches_forward);
    tcase_add_test(values, test_row_sums_do_not_depend_on_threads);
    tcase_add_test(values, test_patch_embed_layout);
    tcase_add_test(values, test_drop_path_scales);
    tcase_add_test(values, test_residual_branch_is_the_three_ops);
    suite_add_tcase(s, values);
    return s;
}
