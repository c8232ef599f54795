/*
 * test_gradcheck.c - the gradient checker must be able to fail: copies of
 * two ops with a gradient planted 1 % wrong (one in a parameter gradient,
 * one in an input gradient) are rejected at the tolerance the op tests use,
 * while the correct ops, checked the same way, pass.
 */
#include "gradcheck.h"
#include "suites.h"

#include "vitrain/common.h"
#include "vitrain/ops.h"

/* The tolerance of test_ops.c. */
static const double OP_TOLERANCE = 1e-3;

typedef struct {
    int T, D;
    float *x, *gamma, *y, *dx, *dgamma, *dy;
    float gamma_grad_factor;  /* 1 for the real op, 1.01 for the planted bug */
    float input_grad_factor;
} ScaleCase;

static void scale_fwd(void *c)
{
    ScaleCase *s = c;
    layerscale_forward(s->y, s->x, s->gamma, s->T, s->D);
}

/* A copy of layerscale_backward with optional planted errors. */
static void scale_bwd(void *c)
{
    ScaleCase *s = c;
    for (int t = 0; t < s->T; t++)
        for (int i = 0; i < s->D; i++) {
            float dy = s->dy[t * s->D + i];
            s->dx[t * s->D + i] += s->input_grad_factor * dy * s->gamma[i];
            s->dgamma[i] += s->gamma_grad_factor * dy * s->x[t * s->D + i];
        }
}

static double layerscale_error(float gamma_factor, float input_factor)
{
    enum { T = 6, D = 8 };
    float x[T * D], gamma[D], y[T * D], dx[T * D], dgamma[D], dy[T * D];
    gc_fill_normal(x, T * D, 1.0, 31);
    gc_fill_normal(gamma, D, 1.0, 32);
    ScaleCase s = {T, D, x, gamma, y, dx, dgamma, dy, gamma_factor, input_factor};
    GcProblem p = {.ctx = &s, .forward = scale_fwd, .backward = scale_bwd, .out = y, .dout = dy,
                   .out_n = T * D};
    gc_add(gc_add(&p, "x", x, dx, T * D), "gamma", gamma, dgamma, D);
    GcResult r;
    return gradcheck_run(&p, NULL, &r);
}

START_TEST(test_checker_accepts_correct_op)
{
    ck_assert_double_lt(layerscale_error(1.0f, 1.0f), OP_TOLERANCE);
}
END_TEST

START_TEST(test_checker_rejects_parameter_gradient_1pct_off)
{
    double err = layerscale_error(1.01f, 1.0f);
    ck_assert_msg(err > OP_TOLERANCE, "planted 1%% error in dgamma not caught: %.3g", err);
}
END_TEST

START_TEST(test_checker_rejects_input_gradient_1pct_off)
{
    double err = layerscale_error(1.0f, 0.99f);
    ck_assert_msg(err > OP_TOLERANCE, "planted 1%% error in dx not caught: %.3g", err);
}
END_TEST

Suite *gradcheck_suite(void)
{
    Suite *s = suite_create("gradcheck");
    TCase *tc = tcase_with_timeout("planted bugs", 30, NULL);
    tcase_add_test(tc, test_checker_accepts_correct_op);
    tcase_add_test(tc, test_checker_rejects_parameter_gradient_1pct_off);
    tcase_add_test(tc, test_checker_rejects_input_gradient_1pct_off);
    suite_add_tcase(s, tc);
    return s;
}
