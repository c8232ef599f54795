/*
 * test_attention.c - multi-head self-attention: values against a naive
 * double-precision reference, gradients against finite differences, with
 * and without a rotary hook (DESIGN §4), and the hook's parameter gradient.
 */
#include "gradcheck.h"
#include "suites.h"

#include "vitrain/attention.h"
#include "vitrain/common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Same reasoning as test_ops.c: fp32 forward, 1e-2 relative steps. */
static const double ATTN_TOLERANCE = 1e-3;

/* ---- a test rotary encoding ------------------------------------------------
 * Pair j of token n in head h is rotated by the angle n * theta[h, j]: a
 * 1-D RoPE with learnable frequencies, enough to exercise every path of the
 * hook, including a parameter gradient reduced over the batch. */
typedef struct {
    QkRotation hook;
    float *theta;   /* (H, Dh/2) */
    float *dtheta;  /* (H, Dh/2) */
} TestRope;

static void rope_rotate(const float *theta, float *x, int n, int pairs, float sign)
{
    for (int j = 0; j < pairs; j++) {
        float t = sign * (float)n * theta[j], c = cosf(t), s = sinf(t);
        float a = x[2 * j], b = x[2 * j + 1];
        x[2 * j] = a * c - b * s;
        x[2 * j + 1] = a * s + b * c;
    }
}

static void rope_forward(const QkRotation *self, int layer, float *x, const AttnDims *d)
{
    (void)layer;
    const TestRope *r = self->ctx;
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int n = 0; n < d->N; n++)
                rope_rotate(r->theta + h * d->Dh / 2,
                            x + (((int64_t)b * d->H + h) * d->N + n) * d->Dh, n, d->Dh / 2, 1.0f);
}

static void rope_backward(const QkRotation *self, int layer, float *dx, const float *x_raw,
                          int raw_stride, const AttnDims *d)
{
    (void)layer;
    const TestRope *r = self->ctx;
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int n = 0; n < d->N; n++) {
                float *g = dx + (((int64_t)b * d->H + h) * d->N + n) * d->Dh;
                const float *raw = x_raw + ((int64_t)b * d->N + n) * raw_stride + h * d->Dh;
                for (int j = 0; j < d->Dh / 2; j++) {
                    /* y = R(t) x with t = n theta: dtheta += n (dy0 (-y1) + dy1 y0) */
                    float t = (float)n * r->theta[h * d->Dh / 2 + j];
                    float c = cosf(t), s = sinf(t), a = raw[2 * j], bb = raw[2 * j + 1];
                    float y0 = a * c - bb * s, y1 = a * s + bb * c;
                    r->dtheta[h * d->Dh / 2 + j] += (float)n * (g[2 * j + 1] * y0 - g[2 * j] * y1);
                }
                /* dx = R^T dy */
                rope_rotate(r->theta + h * d->Dh / 2, g, n, d->Dh / 2, -1.0f);
            }
}

/* ---- the attention problem ------------------------------------------------- */

typedef struct {
    AttnDims d;
    float *qkv, *out, *q, *k, *probs;
    float *dqkv, *dout, *dq, *dk, *dp_tiles;
    int tiles;
    const QkRotation *rotation;
} AttnCase;

static void attn_case_init(AttnCase *a, const QkRotation *rotation)
{
    a->d = (AttnDims){.B = 2, .N = 5, .H = 2, .Dh = 4};
    const size_t D = 8, T = 10, heads = T * D, probs = 2 * 2 * 5 * 5;
    a->qkv = gc_randn(T * 3 * D, 1.0, 21);
    a->out = gc_zeros(heads), a->dout = gc_zeros(heads);
    a->q = gc_zeros(heads), a->k = gc_zeros(heads);
    a->dq = gc_zeros(heads), a->dk = gc_zeros(heads);
    a->probs = gc_zeros(probs);
    a->tiles = attention_scratch_tiles();
    a->dp_tiles = gc_zeros((size_t)a->tiles * 5 * 5);
    a->dqkv = gc_zeros(T * 3 * D);
    a->rotation = rotation;
}

static void attn_fwd(void *c)
{
    AttnCase *a = c;
    attention_forward(a->out, a->q, a->k, a->probs, a->qkv, a->rotation, 0, &a->d);
}

static void attn_bwd(void *c)
{
    AttnCase *a = c;
    attention_backward(a->dqkv, a->dq, a->dk, a->dp_tiles, a->tiles, a->dout, a->q, a->k,
                       a->probs, a->qkv, a->rotation, 0, &a->d);
}

static void check_attention(const char *title, const QkRotation *rotation, TestRope *rope)
{
    AttnCase a;
    attn_case_init(&a, rotation);
    GcProblem p = {.ctx = &a, .forward = attn_fwd, .backward = attn_bwd, .out = a.out,
                   .dout = a.dout, .out_n = 10 * 8};
    gc_add(&p, "qkv", a.qkv, a.dqkv, 10 * 24);
    if (rope)
        gc_add(&p, "theta", rope->theta, rope->dtheta, 2 * 2);
    GcResult r;
    GcOptions o = {.max_samples = 240};
    gradcheck_run(&p, &o, &r);
    gradcheck_print(title, &p, &r);
    ck_assert_msg(r.max_error < ATTN_TOLERANCE, "%s: gradient error %.3g in %s", title,
                  r.max_error, p.tensors[r.worst].name);
    /* dqkv is written whole, never read; theta's gradient adds up. */
    double mismatch = gradcheck_overwrite(&p, 1);
    ck_assert_msg(mismatch < 1e-6, "%s: dqkv read or theta's gradient overwritten (%.3g)", title,
                  mismatch);
}

START_TEST(test_attention_gradients)
{
    check_attention("attention", NULL, NULL);
}
END_TEST

START_TEST(test_attention_rotary_hook_gradients)
{
    float theta[4] = {0.3f, -0.7f, 1.1f, 0.05f}, dtheta[4];
    TestRope rope = {.theta = theta, .dtheta = dtheta};
    rope.hook = (QkRotation){.forward = rope_forward, .backward = rope_backward, .ctx = &rope};
    check_attention("attention + rotary hook", &rope.hook, &rope);
}
END_TEST

START_TEST(test_attention_matches_reference)
{
    AttnCase a;
    attn_case_init(&a, NULL);
    attn_fwd(&a);
    const AttnDims *d = &a.d;
    const int D = d->H * d->Dh;
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int i = 0; i < d->N; i++) {
                /* out_i = sum_j softmax_j(q_i . k_j / sqrt(Dh)) v_j, in double */
                double logits[5], m = -INFINITY, sum = 0.0;
                const float *qi = a.qkv + (b * d->N + i) * 3 * D + h * d->Dh;
                for (int j = 0; j < d->N; j++) {
                    const float *kj = a.qkv + (b * d->N + j) * 3 * D + D + h * d->Dh;
                    double dot = 0.0;
                    for (int c = 0; c < d->Dh; c++)
                        dot += (double)qi[c] * kj[c];
                    logits[j] = dot / sqrt(d->Dh);
                    m = fmax(m, logits[j]);
                }
                for (int j = 0; j < d->N; j++)
                    sum += exp(logits[j] - m);
                for (int c = 0; c < d->Dh; c++) {
                    double o = 0.0;
                    for (int j = 0; j < d->N; j++)
                        o += exp(logits[j] - m) / sum *
                             a.qkv[(b * d->N + j) * 3 * D + 2 * D + h * d->Dh + c];
                    ck_assert_double_eq_tol(a.out[(b * d->N + i) * D + h * d->Dh + c], o, 1e-5);
                }
            }
}
END_TEST

START_TEST(test_attention_permutation_equivariant)
{
    /* Without a positional hook, permuting the tokens permutes the output. */
    AttnCase a, p;
    attn_case_init(&a, NULL);
    attn_case_init(&p, NULL);
    const int perm[5] = {3, 0, 4, 1, 2}, row = 24, D = 8;
    for (int b = 0; b < 2; b++)
        for (int n = 0; n < 5; n++)
            memcpy(p.qkv + (b * 5 + n) * row, a.qkv + (b * 5 + perm[n]) * row, row * sizeof(float));
    attn_fwd(&a);
    attn_fwd(&p);
    for (int b = 0; b < 2; b++)
        for (int n = 0; n < 5; n++)
            for (int c = 0; c < D; c++)
                ck_assert_float_eq_tol(p.out[(b * 5 + n) * D + c], a.out[(b * 5 + perm[n]) * D + c],
                                       1e-6f);
}
END_TEST

START_TEST(test_attention_keeps_nan)
{
    /* A NaN score must reach the output (and so the loss, where on_nan
     * sees it), not be clamped away by the vectorized exp. Token 2 of
     * image 0 gets a NaN in its key of head 0: every query of that head
     * attends to it. */
    AttnCase a;
    attn_case_init(&a, NULL);
    const int D = 8;
    a.qkv[(0 * 5 + 2) * 3 * D + D + 1] = NAN;
    attn_fwd(&a);
    for (int i = 0; i < 5; i++) {
        ck_assert_msg(isnan(a.out[i * D + 0]), "query %d of head 0 lost the NaN", i);
        ck_assert_msg(!isnan(a.out[(5 + i) * D + 0]), "image 1 caught image 0's NaN");
    }
}
END_TEST

Suite *attention_suite(void)
{
    Suite *s = suite_create("attention");
    TCase *tc = tcase_with_timeout("attention", 60, NULL);
    tcase_add_checked_fixture(tc, NULL, gc_free_all);
    tcase_add_test(tc, test_attention_gradients);
    tcase_add_test(tc, test_attention_rotary_hook_gradients);
    tcase_add_test(tc, test_attention_matches_reference);
    tcase_add_test(tc, test_attention_permutation_equivariant);
    tcase_add_test(tc, test_attention_keeps_nan);
    suite_add_tcase(s, tc);
    return s;
}
