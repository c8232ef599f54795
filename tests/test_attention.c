/*
 * test_attention.c - multi-head self-attention: values against a naive
 * double-precision reference, gradients against finite differences, with
 * and without a rotary hook (DESIGN §4), and the hook's parameter gradient;
 * the head kernels (head_kernels.h) against plain loops in double.
 */
#include "gradcheck.h"
#include "suites.h"

#include "vitrain/attention.h"
#include "vitrain/common.h"

#include "../src/attention/head_kernels.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Same reasoning as test_ops.c: fp32 forward, 1e-2 relative steps. */
static const double ATTN_TOLERANCE = 1e-3;

/* ---- a test rotary encoding ------------------------------------------------
 * Pair j of token n in head h is rotated by the angle n * theta[h, j]: a
 * 1-D RoPE with learnable frequencies, enough to exercise every path of the
 * hook, including a parameter gradient reduced over the batch. It has
 * both forms: whole tensors, and one (image, head) at a time. */
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

/* Where (image b, token n, head h) starts in rows `stride` apart. */
static int64_t row_offset(int stride, int b, int n, int h, const AttnDims *d)
{
    return ((int64_t)b * d->N + n) * stride + h * d->Dh;
}

static const float *raw_row(const float *x_raw, int raw_stride, int b, int n, int h,
                            const AttnDims *d)
{
    return x_raw + row_offset(raw_stride, b, n, h, d);
}

/* Rows of image b, head h: x (N, Dh) <- R x_raw. */
static void rope_rows(const TestRope *r, int b, int h, float *x, const float *x_raw,
                      int raw_stride, const AttnDims *d)
{
    for (int n = 0; n < d->N; n++) {
        float *v = x + (int64_t)n * d->Dh;
        memcpy(v, raw_row(x_raw, raw_stride, b, n, h, d), (size_t)d->Dh * sizeof(float));
        rope_rotate(r->theta + h * d->Dh / 2, v, n, d->Dh / 2, 1.0f);
    }
}

/* Their backward: dtheta (Dh/2) += the head's part, dx_raw <- R^T dx. */
static void rope_rows_backward(const TestRope *r, int b, int h, float *dx_raw, float *dx,
                               const float *x_raw, int raw_stride, float *dtheta,
                               const AttnDims *d)
{
    for (int n = 0; n < d->N; n++) {
        float *g = dx + (int64_t)n * d->Dh;
        const float *raw = raw_row(x_raw, raw_stride, b, n, h, d);
        for (int j = 0; j < d->Dh / 2; j++) {
            /* y = R(t) x with t = n theta: dtheta += n (dy0 (-y1) + dy1 y0) */
            float t = (float)n * r->theta[h * d->Dh / 2 + j];
            float c = cosf(t), s = sinf(t), a = raw[2 * j], bb = raw[2 * j + 1];
            float y0 = a * c - bb * s, y1 = a * s + bb * c;
            dtheta[j] += (float)n * (g[2 * j + 1] * y0 - g[2 * j] * y1);
        }
        rope_rotate(r->theta + h * d->Dh / 2, g, n, d->Dh / 2, -1.0f); /* dx = R^T dy */
        memcpy(dx_raw + (raw - x_raw), g, (size_t)d->Dh * sizeof(float));
    }
}

/* The whole-tensor form, in place: rows x <- R x. */
static void rope_forward(const QkRotation *self, int layer, float *x, int stride,
                         const AttnDims *d)
{
    (void)layer;
    const TestRope *r = self->ctx;
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int n = 0; n < d->N; n++)
                rope_rotate(r->theta + h * d->Dh / 2, x + row_offset(stride, b, n, h, d), n,
                            d->Dh / 2, 1.0f);
}

/* And its backward from the rotated rows y: dtheta += n (dy1 y0 - dy0 y1)
 * per pair, then dx <- R^T dx in place. */
static void rope_backward(const QkRotation *self, int layer, float *dx, const float *y,
                          int stride, const AttnDims *d)
{
    (void)layer;
    const TestRope *r = self->ctx;
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int n = 0; n < d->N; n++) {
                float *g = dx + row_offset(stride, b, n, h, d);
                const float *yr = raw_row(y, stride, b, n, h, d);
                for (int j = 0; j < d->Dh / 2; j++)
                    r->dtheta[h * d->Dh / 2 + j] +=
                        (float)n * (g[2 * j + 1] * yr[2 * j] - g[2 * j] * yr[2 * j + 1]);
                rope_rotate(r->theta + h * d->Dh / 2, g, n, d->Dh / 2, -1.0f);
            }
}

static void rope_forward_head(const QkRotation *self, int layer, int b, int h, float *q, float *k,
                              const float *q_raw, const float *k_raw, int raw_stride,
                              const AttnDims *d)
{
    (void)layer;
    rope_rows(self->ctx, b, h, q, q_raw, raw_stride, d);
    rope_rows(self->ctx, b, h, k, k_raw, raw_stride, d);
}

/* head_grad: the dtheta part (Dh/2) of head h and b's chunk, added to. */
static void rope_backward_head(const QkRotation *self, int layer, int b, int h, float *dq_raw,
                               float *dk_raw, float *dq, float *dk, const float *q_raw,
                               const float *k_raw, int raw_stride, float *head_grad,
                               const AttnDims *d)
{
    (void)layer;
    rope_rows_backward(self->ctx, b, h, dq_raw, dq, q_raw, raw_stride, head_grad, d);
    rope_rows_backward(self->ctx, b, h, dk_raw, dk, k_raw, raw_stride, head_grad, d);
}

static void rope_backward_reduce(const QkRotation *self, int layer, const float *head_grads,
                                 int chunks, const AttnDims *d)
{
    (void)layer;
    const TestRope *r = self->ctx;
    const int pairs = d->Dh / 2;
    for (int c = 0; c < chunks; c++)
        for (int h = 0; h < d->H; h++)
            for (int j = 0; j < pairs; j++)
                r->dtheta[h * pairs + j] += head_grads[((int64_t)c * d->H + h) * pairs + j];
}

static QkRotation whole_hook(TestRope *r)
{
    return (QkRotation){.forward = rope_forward, .backward = rope_backward, .ctx = r};
}

static QkRotation per_head_hook(TestRope *r, int head_dim)
{
    QkRotation hook = {.ctx = r};
    hook.forward_head = rope_forward_head;
    hook.backward_head = rope_backward_head;
    hook.backward_reduce = rope_backward_reduce;
    hook.grad_floats = head_dim / 2;
    return hook;
}

/* ---- the attention problem ------------------------------------------------- */

typedef struct {
    AttnDims d;
    float *qkv, *out, *probs, *dqkv, *dout;
    float *turned; /* qkv as the attention reads it: q and k turned in place by a whole hook */
    AttnScratch scratch;
    const QkRotation *rotation;
} AttnCase;

static float *zeros_or_null(int64_t n)
{
    return n ? gc_zeros((size_t)n) : NULL;
}

static void attn_case_init_dims(AttnCase *a, const QkRotation *rotation, AttnDims dims)
{
    a->d = dims;
    const size_t D = (size_t)dims.H * dims.Dh, T = (size_t)dims.B * dims.N, heads = T * D;
    const size_t probs = (size_t)dims.B * dims.H * dims.N * dims.N;
    a->qkv = gc_randn(T * 3 * D, 1.0, 21);
    a->turned = gc_zeros(T * 3 * D);
    a->out = gc_zeros(heads), a->dout = gc_zeros(heads);
    a->probs = gc_zeros(probs);
    a->dqkv = gc_zeros(T * 3 * D);
    a->rotation = rotation;
    AttnScratch *s = &a->scratch;
    s->tiles = attention_scratch_tiles();
    const AttnScratchSizes size = attention_scratch_sizes(rotation, &dims, s->tiles);
    s->q_rot = zeros_or_null(size.rotated), s->k_rot = zeros_or_null(size.rotated);
    s->dq_rot = zeros_or_null(size.rotated_grad), s->dk_rot = zeros_or_null(size.rotated_grad);
    s->head_grads = zeros_or_null(size.head_grads);
    s->dp_tiles = gc_zeros((size_t)size.dp_tiles);
}

/* Two images of 5 tokens, two heads of 4 channels. */
static void attn_case_init(AttnCase *a, const QkRotation *rotation)
{
    attn_case_init_dims(a, rotation, (AttnDims){.B = 2, .N = 5, .H = 2, .Dh = 4});
}

/* As the model runs it: attention_rotate on the qkv buffer, then the core
 * (on a copy here, so that qkv stays the input the gradient check moves). */
static void attn_fwd(void *c)
{
    AttnCase *a = c;
    const AttnDims *d = &a->d;
    memcpy(a->turned, a->qkv, (size_t)d->B * d->N * 3 * d->H * d->Dh * sizeof(float));
    attention_rotate(a->turned, a->rotation, 0, d);
    attention_forward(a->out, a->probs, a->turned, a->rotation, 0, d, &a->scratch);
}

static void attn_bwd(void *c)
{
    AttnCase *a = c;
    attention_backward(a->dqkv, a->dout, a->probs, a->turned, a->rotation, 0, &a->d,
                       &a->scratch);
}

static void check_attention_dims(const char *title, const QkRotation *rotation, TestRope *rope,
                                 AttnDims dims)
{
    AttnCase a;
    attn_case_init_dims(&a, rotation, dims);
    const int T = dims.B * dims.N, D = dims.H * dims.Dh;
    GcProblem p = {.ctx = &a, .forward = attn_fwd, .backward = attn_bwd, .out = a.out,
                   .dout = a.dout, .out_n = T * D};
    gc_add(&p, "qkv", a.qkv, a.dqkv, T * 3 * D);
    if (rope)
        gc_add(&p, "theta", rope->theta, rope->dtheta, dims.H * dims.Dh / 2);
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

static void check_attention(const char *title, const QkRotation *rotation, TestRope *rope)
{
    check_attention_dims(title, rotation, rope, (AttnDims){.B = 2, .N = 5, .H = 2, .Dh = 4});
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
    rope.hook = whole_hook(&rope);
    check_attention("attention + rotary hook", &rope.hook, &rope);
    rope.hook = per_head_hook(&rope, 4);
    check_attention("attention + per-head rotary hook", &rope.hook, &rope);
}
END_TEST

/* A hook's two forms give the same attention: the outputs and dqkv bit for
 * bit (each value goes through the same operations), the parameter
 * gradient up to the order of its sums. At N = 65, Dh = 64 (the head
 * kernels), and on a batch of 20, whose chunks hold one or two images
 * (attention_grad_chunks). */
START_TEST(test_attention_per_head_rotation_matches_whole)
{
    const AttnDims dims = {.B = 20, .N = 65, .H = 2, .Dh = 64};
    const int pairs = dims.H * dims.Dh / 2;
    float *theta = gc_randn((size_t)pairs, 0.3, 5), *dtheta[2];
    AttnCase a[2];
    TestRope rope[2];
    QkRotation hooks[2];
    for (int form = 0; form < 2; form++) {
        dtheta[form] = gc_zeros((size_t)pairs);
        rope[form] = (TestRope){.theta = theta, .dtheta = dtheta[form]};
        hooks[form] = form ? per_head_hook(&rope[form], dims.Dh) : whole_hook(&rope[form]);
        attn_case_init_dims(&a[form], &hooks[form], dims);
        float *dout = gc_randn((size_t)dims.B * dims.N * dims.H * dims.Dh, 1.0, 6);
        memcpy(a[form].dout, dout, (size_t)dims.B * dims.N * dims.H * dims.Dh * sizeof(float));
        attn_fwd(&a[form]);
        attn_bwd(&a[form]);
    }
    const size_t out_n = (size_t)dims.B * dims.N * dims.H * dims.Dh;
    ck_assert_mem_eq(a[0].out, a[1].out, out_n * sizeof(float));
    ck_assert_mem_eq(a[0].probs, a[1].probs,
                     (size_t)dims.B * dims.H * dims.N * dims.N * sizeof(float));
    ck_assert_mem_eq(a[0].dqkv, a[1].dqkv, 3 * out_n * sizeof(float));
    for (int j = 0; j < pairs; j++)
        ck_assert_msg(fabsf(dtheta[0][j] - dtheta[1][j]) <= 1e-4f * (1.0f + fabsf(dtheta[0][j])),
                      "dtheta[%d]: whole %g, per head %g", j, dtheta[0][j], dtheta[1][j]);
}
END_TEST

/* Every output of attention_forward against the formula in double. */
static void check_attention_values(AttnDims dims)
{
    AttnCase a;
    attn_case_init_dims(&a, NULL, dims);
    attn_fwd(&a);
    const AttnDims *d = &a.d;
    const int D = d->H * d->Dh;
    double *logits = malloc((size_t)d->N * sizeof(double));
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int i = 0; i < d->N; i++) {
                /* out_i = sum_j softmax_j(q_i . k_j / sqrt(Dh)) v_j, in double */
                double m = -INFINITY, sum = 0.0;
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
    free(logits);
}

START_TEST(test_attention_matches_reference)
{
    check_attention_values((AttnDims){.B = 2, .N = 5, .H = 2, .Dh = 4});
}
END_TEST

/* The sizes the models use, values and gradients: N = 17 tokens of 64
 * channels (OpenBLAS's side of head_sgemm), 50 and 65 (the head kernels'
 * column tails and row blocks). */
START_TEST(test_attention_model_sizes)
{
    const int tokens[] = {17, 50, 65};
    for (int i = 0; i < 3; i++) {
        const AttnDims dims = {.B = 1, .N = tokens[i], .H = 2, .Dh = 64};
        check_attention_values(dims);
        char title[64];
        snprintf(title, sizeof title, "attention N=%d Dh=64", tokens[i]);
        check_attention_dims(title, NULL, NULL, dims);
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

/* ---- the head kernels against plain loops in double ------------------------
 * Every output cell within 1e-5 of the sum of its terms' magnitudes, and
 * every cell around the output (row and column padding) untouched. */

static const float GUARD = 12345.0f;

/* Whether `got` is cell (i, j) of alpha A B, computed in double, to within
 * 1e-5 of the sum of the terms' magnitudes; A's element (i, k) is at
 * a[i a_row + k a_col], B's (k, j) at b[k b_row + j b_col]. */
static bool cell_matches(float got, float alpha, const float *a, int a_row, int a_col,
                         const float *b, int b_row, int b_col, int i, int j, int K)
{
    double sum = 0.0, size = 0.0;
    for (int k = 0; k < K; k++) {
        const double term = (double)a[i * a_row + k * a_col] * b[k * b_row + j * b_col];
        sum += term;
        size += fabs(term);
    }
    return fabs(got - alpha * sum) <= 1e-5 * (1.0 + size);
}

static void check_head_gemm(int M, int Nc, int K, bool transposed)
{
    const int lda = (transposed ? M : K) + 3, ldb = Nc + 5, ldc = Nc + 7;
    const float *a = gc_randn((size_t)lda * (transposed ? K : M), 1.0, 31);
    const float *b = gc_randn((size_t)ldb * K, 1.0, 32);
    float *c = gc_zeros((size_t)ldc * (M + 1));
    for (int i = 0; i < ldc * (M + 1); i++)
        c[i] = GUARD;
    const int a_row = transposed ? 1 : lda, a_col = transposed ? lda : 1;
    head_gemm(c, ldc, a, a_row, a_col, b, ldb, M, Nc, K, 0.5f, NULL);
    for (int i = 0; i <= M; i++)
        for (int j = 0; j < ldc; j++) {
            const float got = c[i * ldc + j];
            if (i == M || j >= Nc) {
                ck_assert_msg(got == GUARD, "head_gemm %dx%dx%d%s wrote (%d, %d)", M, Nc, K,
                              transposed ? " (A^T)" : "", i, j);
                continue;
            }
            ck_assert_msg(cell_matches(got, 0.5f, a, a_row, a_col, b, ldb, 1, i, j, K),
                          "head_gemm %dx%dx%d%s (%d, %d): %.9g", M, Nc, K,
                          transposed ? " (A^T)" : "", i, j, got);
        }
}

START_TEST(test_head_gemm_matches_reference)
{
    /* Full and partial blocks of 5 rows and of 16 and 64 columns. */
    const int sizes[][3] = {{1, 1, 1},   {5, 16, 64},  {7, 17, 3},  {13, 65, 64},
                            {50, 50, 64}, {65, 64, 65}, {4, 130, 9}, {6, 15, 33}};
    for (int s = 0; s < (int)(sizeof sizes / sizeof sizes[0]); s++)
        for (int t = 0; t < 2; t++)
            check_head_gemm(sizes[s][0], sizes[s][1], sizes[s][2], t == 1);
}
END_TEST

/* The queue covers every byte of the rows with line-aligned chunks, in
 * row order, and stops at its capacity. */
START_TEST(test_fetch_queue_covers_rows)
{
    const int rows = 7, cols = 64, ld = 3 * 64 + 5; /* rows that start mid-line */
    const float *x = gc_zeros((size_t)rows * ld);
    const char *storage[64];
    FetchQueue q = {storage, 0, 0, 64};
    fetch_queue_rows(&q, x + 3, ld, rows, cols);
    for (int c = 0; c < q.count; c++) {
        ck_assert_msg((uintptr_t)q.chunk[c] % HEAD_LINE_BYTES == 0, "chunk %d not on a line", c);
        ck_assert(c == 0 || q.chunk[c] > q.chunk[c - 1]);
    }
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++) {
            const char *byte = (const char *)(x + 3 + i * ld + j);
            bool covered = false;
            for (int c = 0; c < q.count; c++)
                covered |= byte >= q.chunk[c] && byte < q.chunk[c] + HEAD_CHUNK_BYTES;
            ck_assert_msg(covered, "row %d float %d not queued", i, j);
        }
    FetchQueue small = {storage, 0, 0, 3};
    fetch_queue_rows(&small, x, ld, rows, cols);
    ck_assert_int_eq(small.count, 3);
    fetch_queue_clear(&q);
    ck_assert_int_eq(q.count + q.next, 0);
}
END_TEST

/* Fetching ahead changes nothing: the same product bit for bit, with the
 * queue drained a chunk per four steps along k of each block. */
START_TEST(test_head_gemm_fetching_ahead_changes_nothing)
{
    const int M = 50, Nc = 64, K = 50, ld = 3 * 64;
    const float *a = gc_randn((size_t)M * K, 1.0, 38);
    const float *b = gc_randn((size_t)K * ld, 1.0, 39);
    float *plain = gc_zeros((size_t)M * Nc), *fetching = gc_zeros((size_t)M * Nc);
    const char *storage[1024];
    FetchQueue q = {storage, 0, 0, 1024};
    fetch_queue_rows(&q, b, ld, K, ld);
    head_gemm(plain, Nc, a, K, 1, b, ld, M, Nc, K, 1.0f, NULL);
    head_gemm(fetching, Nc, a, K, 1, b, ld, M, Nc, K, 1.0f, &q);
    for (int i = 0; i < M * Nc; i++)
        ck_assert_msg(plain[i] == fetching[i], "element %d: %.9g, not %.9g", i, fetching[i],
                      plain[i]);
    const int blocks = (M + HEAD_BLOCK_ROWS - 1) / HEAD_BLOCK_ROWS *
                       ((Nc + HEAD_BLOCK_COLS - 1) / HEAD_BLOCK_COLS);
    if (head_kernels_take(M, Nc, K, false))
        ck_assert_int_eq(q.next, VT_MIN(q.count, blocks * (K / 4)));
}
END_TEST

/* The score kernels (rows finished in L1 on the head kernels; at N = 17
 * the unfused path) against softmax and its backward in double, with
 * whole vectors only (N = 64), a rest (50, 65) and two column panels
 * (130). */
START_TEST(test_head_scores_softmax_matches_double)
{
    const int sizes[] = {17, 50, 64, 65, 130}, K = 64, ld = 3 * K;
    const float scale = 0.125f;
    for (int s = 0; s < (int)(sizeof sizes / sizeof *sizes); s++) {
        const int N = sizes[s];
        const float *q = gc_randn((size_t)N * ld, 1.0, 40), *k = gc_randn((size_t)N * ld, 1.0, 41);
        const float *dout = gc_randn((size_t)N * ld, 1.0, 42);
        float *p = gc_zeros((size_t)N * N), *ds = gc_zeros((size_t)N * N);
        head_scores_softmax(p, q, ld, k, ld, N, K, scale, NULL);
        head_scores_softmax_backward(ds, dout, ld, k, ld, p, N, K, scale, NULL);
        for (int i = 0; i < N; i++) {
            /* size[j]: the scale of the rounding of float score j, whose
             * error P(i, j) carries relative to its own value */
            double e[130], dp[130], size[130], m = -INFINITY, sum = 0.0, dot = 0.0;
            for (int j = 0; j < N; j++) {
                e[j] = dp[j] = size[j] = 0.0;
                for (int c = 0; c < K; c++) {
                    e[j] += (double)q[i * ld + c] * k[j * ld + c];
                    dp[j] += (double)dout[i * ld + c] * k[j * ld + c];
                    size[j] += scale * fabs((double)q[i * ld + c] * k[j * ld + c]);
                }
                e[j] *= scale;
                m = fmax(m, e[j]);
            }
            for (int j = 0; j < N; j++)
                sum += e[j] = exp(e[j] - m);
            for (int j = 0; j < N; j++) {
                e[j] /= sum;
                const double tolerance = 1e-8 + e[j] * (size[j] * 0x1p-21 + 0x1p-21);
                ck_assert_msg(fabs(p[i * N + j] - e[j]) <= tolerance,
                              "N %d: P(%d, %d) %.9g, not %.9g", N, i, j, p[i * N + j], e[j]);
                dot += dp[j] * p[i * N + j];
            }
            for (int j = 0; j < N; j++) {
                const double want = scale * p[i * N + j] * (dp[j] - dot);
                ck_assert_msg(fabs(ds[i * N + j] - want) <= 2e-6 * (1.0 + fabs(dp[j])),
                              "N %d: dS(%d, %d) %.9g, not %.9g", N, i, j, ds[i * N + j], want);
            }
        }
    }
}
END_TEST

START_TEST(test_head_transpose_exact)
{
    const int sizes[][2] = {{1, 1}, {16, 16}, {17, 64}, {65, 64}, {50, 3}, {33, 47}};
    for (int s = 0; s < (int)(sizeof sizes / sizeof sizes[0]); s++) {
        const int rows = sizes[s][0], cols = sizes[s][1], ld_from = cols + 2, ld_to = rows + 5;
        const float *from = gc_randn((size_t)rows * ld_from, 1.0, 33);
        float *to = gc_zeros((size_t)(cols + 1) * ld_to);
        for (int i = 0; i < (cols + 1) * ld_to; i++)
            to[i] = GUARD;
        head_transpose(to, ld_to, from, ld_from, rows, cols);
        for (int j = 0; j <= cols; j++)
            for (int i = 0; i < ld_to; i++) {
                const float want = j < cols && i < rows ? from[i * ld_from + j] : GUARD;
                ck_assert_msg(to[j * ld_to + i] == want, "transpose %dx%d: (%d, %d) is %g, not %g",
                              rows, cols, j, i, to[j * ld_to + i], want);
            }
    }
}
END_TEST

START_TEST(test_head_gemm_nt_matches_reference)
{
    const int sizes[][3] = {{65, 65, 64}, {17, 17, 64}, {3, 50, 7}};
    for (int s = 0; s < 3; s++) {
        const int M = sizes[s][0], Nc = sizes[s][1], K = sizes[s][2];
        const int lda = K + 1, ldb = K + 2, ldc = Nc + 3;
        const float *a = gc_randn((size_t)M * lda, 1.0, 34);
        const float *b = gc_randn((size_t)Nc * ldb, 1.0, 35);
        float *c = gc_zeros((size_t)M * ldc);
        head_gemm_nt(c, ldc, a, lda, b, ldb, M, Nc, K, 0.125f, NULL);
        for (int i = 0; i < M; i++)
            for (int j = 0; j < Nc; j++) {
                ck_assert_msg(cell_matches(c[i * ldc + j], 0.125f, a, lda, 1, b, 1, ldb, i, j, K),
                              "head_gemm_nt %dx%dx%d (%d, %d)", M, Nc, K, i, j);
            }
    }
}
END_TEST

START_TEST(test_head_sgemm_sizes)
{
    /* Every form attention uses, at a size the kernels take and at one
     * they leave to OpenBLAS, against the plain-loop reference. */
    const int sides[] = {65, HEAD_KERNEL_MAX_SIDE + 1};
    for (int s = 0; s < 2; s++)
        for (int form = 0; form < 3; form++) {
            const bool ta = form == 1, tb = form == 2;
            const int M = sides[s], N = 64, K = sides[s], ld = sides[s];
            const float *A = gc_randn((size_t)M * ld, 1.0, 36);
            const float *B = gc_randn((size_t)K * ld, 1.0, 37);
            float *C = gc_zeros((size_t)M * N);
            head_sgemm(ta, tb, M, N, K, 0.5f, A, ld, B, ld, C, N, NULL);
            for (int i = 0; i < M; i++)
                for (int j = 0; j < N; j++) {
                    ck_assert_msg(cell_matches(C[i * N + j], 0.5f, A, ta ? 1 : ld, ta ? ld : 1, B,
                                               tb ? 1 : ld, tb ? ld : 1, i, j, K),
                                  "head_sgemm form %d side %d (%d, %d)", form, sides[s], i, j);
                }
        }
    ck_assert(!head_kernels_take(HEAD_KERNEL_MAX_SIDE + 1, 64, 64, false));
    ck_assert(!head_kernels_take(HEAD_KERNEL_MIN_SIDE - 1, 64, 64, false));
    ck_assert(!head_kernels_take(64, HEAD_KERNEL_MAX_SIDE, HEAD_KERNEL_MAX_SIDE, true));
}
END_TEST

/* head_sgemm_in_place's promise, at dense LieRE's products (B rows of 64
 * channels, a row-block tail): C written over A gives the bits a
 * separate C gets, and the columns of A's rows beyond C's stay. On AVX2,
 * whose blocks are 16 columns, no product of 64 may go in place. */
START_TEST(test_head_sgemm_in_place)
{
    const int M = 131, N = 64, K = 64, ld = 3 * 64;
    const float *R = gc_randn((size_t)K * N, 1.0, 38);
    for (int form = 0; form < 2; form++) {
        const bool tb = form == 1;
        const float *A = gc_randn((size_t)M * ld, 1.0, 39);
        float *C = gc_zeros((size_t)M * N), *rows = gc_zeros((size_t)M * ld);
        memcpy(rows, A, (size_t)M * ld * sizeof(float));
        head_sgemm(false, tb, M, N, K, 1.0f, A, ld, R, N, C, N, NULL);
        ck_assert(head_sgemm_in_place(M, N, K, tb) == (HEAD_BLOCK_COLS >= N));
        if (!head_sgemm_in_place(M, N, K, tb))
            continue;
        head_sgemm(false, tb, M, N, K, 1.0f, rows, ld, R, N, rows, ld, NULL);
        for (int i = 0; i < M; i++) {
            ck_assert_msg(memcmp(rows + (size_t)i * ld, C + (size_t)i * N, N * sizeof(float)) == 0,
                          "in place, form %d: row %d differs", form, i);
            ck_assert_msg(memcmp(rows + (size_t)i * ld + N, A + (size_t)i * ld + N,
                                 (size_t)(ld - N) * sizeof(float)) == 0,
                          "in place, form %d: row %d changed beyond its columns", form, i);
        }
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
    tcase_add_test(tc, test_attention_per_head_rotation_matches_whole);
    tcase_add_test(tc, test_attention_matches_reference);
    tcase_add_test(tc, test_attention_model_sizes);
    tcase_add_test(tc, test_attention_permutation_equivariant);
    tcase_add_test(tc, test_attention_keeps_nan);
    tcase_add_test(tc, test_head_gemm_matches_reference);
    tcase_add_test(tc, test_head_transpose_exact);
    tcase_add_test(tc, test_fetch_queue_covers_rows);
    tcase_add_test(tc, test_head_scores_softmax_matches_double);
    tcase_add_test(tc, test_head_gemm_fetching_ahead_changes_nothing);
    tcase_add_test(tc, test_head_gemm_nt_matches_reference);
    tcase_add_test(tc, test_head_sgemm_sizes);
    tcase_add_test(tc, test_head_sgemm_in_place);
    suite_add_tcase(s, tc);
    return s;
}
