/*
 * pe_harness.c - shared positional-encoding checks (see pe_harness.h).
 *
 * The encoding is driven exactly as the model drives it: create on a
 * parameter list, init, then per pass prepare, forward per layer, backward
 * per layer, finish; q and k of a layer go through its attention hook
 * (pe_rotation) together, per (image, head) where it has per-head forms,
 * as the attention calls it.
 */
#include "pe_harness.h"

#include "gradcheck.h"

#include "../src/pe/raw_rows.h"

#include <check.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BATCH = 2 };

typedef struct PeCase {
    Pe pe;
    TensorList list;
    Arena params, grads;
    AttnDims dims;
    int tokens;
    float *raw;    /* (depth, B, N, 2 H Dh): q and k rows as in the qkv buffer */
    float *draw;
    float *out;    /* (depth, 2, B, H, N, Dh): q, then k, rotated */
    float *dout;
    float *work;   /* (2, B, H, N, Dh) */
    float *work_raw; /* (B, N, 2 H Dh) */
    float *rotated_raw; /* (B, N, 2 H Dh): a whole-tensor hook's q and k turned in place */
} PeCase;

PeGeometry pe_test_geometry(int head_dim, int grid, int grid0)
{
    return (PeGeometry){.depth = 2, .heads = 2, .head_dim = head_dim, .grid_h = grid,
                        .grid_w = grid, .grid_h0 = grid0, .grid_w0 = grid0};
}

static void case_create(PeCase *c, const PeOptions *o, const PeGeometry *g, double param_noise,
                        uint64_t seed)
{
    memset(c, 0, sizeof *c);
    tensor_list_init(&c->list);
    VtError err;
    ck_assert_msg(pe_create(&c->pe, o, g, &c->list, &err) == VT_OK, "%s", err.message);
    arena_create(&c->params, &c->list);
    arena_create(&c->grads, &c->list);
    if (c->pe.kind->init)
        c->pe.kind->init(&c->pe, c->params.data, seed);
    /* Off the init, where symmetric values could hide a wrong index. */
    for (int t = 0; t < c->list.count; t++) {
        float *p = arena_tensor(&c->params, t);
        float *noise = gc_randn(c->list.specs[t].numel, param_noise, seed + 7 + (uint64_t)t);
        for (size_t i = 0; i < c->list.specs[t].numel; i++)
            p[i] += noise[i];
    }
    c->tokens = 1 + g->grid_h * g->grid_w;
    c->dims = (AttnDims){.B = BATCH, .N = c->tokens, .H = g->heads, .Dh = g->head_dim};
    const size_t per_layer = 2 * (size_t)BATCH * c->tokens * g->heads * g->head_dim;
    c->raw = gc_randn(per_layer * g->depth, 1.0, seed + 1);
    c->draw = gc_zeros(per_layer * g->depth);
    c->out = gc_zeros(per_layer * g->depth);
    c->dout = gc_zeros(per_layer * g->depth);
    c->work = gc_zeros(per_layer);
    c->work_raw = gc_zeros(per_layer);
    c->rotated_raw = gc_zeros(per_layer);
}

static void case_free(PeCase *c)
{
    pe_destroy(&c->pe);
    arena_free(&c->params);
    arena_free(&c->grads);
    tensor_list_free(&c->list);
}

/* One of q or k: (B, H, N, Dh) floats. */
static size_t tensor_size(const PeCase *c)
{
    return (size_t)BATCH * c->tokens * c->dims.H * c->dims.Dh;
}

/* q and k of a layer. */
static size_t layer_size(const PeCase *c)
{
    return 2 * tensor_size(c);
}

void pe_forward_in_place(const Pe *pe, int layer, float *x, const AttnDims *d)
{
    const size_t n = (size_t)d->B * d->N * d->H * d->Dh;
    float *raw = malloc(n * sizeof(float));
    head_major_to_rows(raw, x, d->H * d->Dh, d);
    memset(x, 0, n * sizeof(float)); /* every row must be written */
    pe_forward(pe, layer, x, raw, d->H * d->Dh, d);
    free(raw);
}

void pe_backward_in_place(Pe *pe, int layer, float *dx, const float *x_raw, const AttnDims *d)
{
    const size_t n = (size_t)d->B * d->N * d->H * d->Dh;
    float *dx_raw = calloc(n, sizeof(float));
    pe_backward(pe, layer, dx_raw, dx, x_raw, d->H * d->Dh, d);
    rows_to_head_major(dx, dx_raw, d->H * d->Dh, d);
    free(dx_raw);
}

static void prepare(PeCase *c)
{
    const PeStep step = {.train = false};
    if (c->pe.kind->prepare)
        c->pe.kind->prepare(&c->pe, c->params.data, &step);
}

/* A whole-tensor hook's forward: a copy of the raw rows (B, N, 2 D) of
 * q and k turned in place into c->rotated_raw, as the attention has them
 * turned in the qkv buffer. */
static void rotate_in_place(PeCase *c, int layer, const float *raw)
{
    const QkRotation *hook = pe_rotation(&c->pe);
    const AttnDims *d = &c->dims;
    const int D = d->H * d->Dh;
    memcpy(c->rotated_raw, raw, layer_size(c) * sizeof(float));
    hook->forward(hook, layer, c->rotated_raw, 2 * D, d);
    hook->forward(hook, layer, c->rotated_raw + D, 2 * D, d);
}

/* q and k of one layer through the hook, as the attention calls it: raw
 * rows (B, N, 2 D), q then k; out (2, B, H, N, Dh). */
static void hook_forward(PeCase *c, int layer, float *out, const float *raw)
{
    const QkRotation *hook = pe_rotation(&c->pe);
    const AttnDims *d = &c->dims;
    const int D = d->H * d->Dh;
    float *k = out + tensor_size(c);
    if (!hook->forward_head) {
        rotate_in_place(c, layer, raw);
        rows_to_head_major(out, c->rotated_raw, 2 * D, d);
        rows_to_head_major(k, c->rotated_raw + D, 2 * D, d);
        return;
    }
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            hook->forward_head(hook, layer, b, h, out + head_at(b, h, 0, d),
                               k + head_at(b, h, 0, d), raw, raw + D, 2 * D, d);
}

/* Its backward: dout (2, B, H, N, Dh), overwritten, into the raw rows of
 * draw; per-head forms in units of (chunk of the batch, head), then the
 * reduce; a whole-tensor hook in place in draw, from the rows its forward
 * turned (made again from raw). */
static void hook_backward(PeCase *c, int layer, float *draw, float *dout, const float *raw)
{
    const QkRotation *hook = pe_rotation(&c->pe);
    const AttnDims *d = &c->dims;
    const int D = d->H * d->Dh;
    float *dk = dout + tensor_size(c);
    if (!hook->backward_head) {
        rotate_in_place(c, layer, raw);
        head_major_to_rows(draw, dout, 2 * D, d);
        head_major_to_rows(draw + D, dk, 2 * D, d);
        hook->backward(hook, layer, draw, c->rotated_raw, 2 * D, d);
        hook->backward(hook, layer, draw + D, c->rotated_raw + D, 2 * D, d);
        return;
    }
    const int chunks = attention_grad_chunks(d->B), per_part = hook->grad_floats;
    float *parts = per_part ? calloc((size_t)chunks * d->H * per_part, sizeof(float)) : NULL;
    for (int unit = 0; unit < chunks * d->H; unit++) {
        const int h = unit % d->H;
        int first, end;
        attention_grad_chunk(d->B, unit / d->H, &first, &end);
        for (int b = first; b < end; b++)
            hook->backward_head(hook, layer, b, h, draw, draw + D, dout + head_at(b, h, 0, d),
                                dk + head_at(b, h, 0, d), raw, raw + D, 2 * D,
                                parts ? parts + (size_t)unit * per_part : NULL, d);
    }
    if (hook->backward_reduce)
        hook->backward_reduce(hook, layer, parts, chunks, d);
    free(parts);
}

static void case_forward(void *ctx)
{
    PeCase *c = ctx;
    const AttnDims *d = &c->dims;
    const int D = d->H * d->Dh;
    prepare(c);
    for (int l = 0; l < c->pe.geo.depth; l++) {
        float *out = c->out + l * layer_size(c);
        const float *raw = c->raw + l * layer_size(c);
        memset(out, 0, layer_size(c) * sizeof(float)); /* every row must be written */
        if (pe_rotation(&c->pe)) {
            hook_forward(c, l, out, raw);
        } else {
            rows_to_head_major(out, raw, 2 * D, d);
            rows_to_head_major(out + tensor_size(c), raw + D, 2 * D, d);
        }
    }
}

static void case_backward(void *ctx)
{
    PeCase *c = ctx;
    const AttnDims *d = &c->dims;
    const int D = d->H * d->Dh;
    for (int l = 0; l < c->pe.geo.depth; l++) {
        memcpy(c->work, c->dout + l * layer_size(c), layer_size(c) * sizeof(float));
        for (size_t i = 0; i < layer_size(c); i++) /* every row must be written */
            c->work_raw[i] = NAN;
        if (pe_rotation(&c->pe)) {
            hook_backward(c, l, c->work_raw, c->work, c->raw + l * layer_size(c));
        } else {
            head_major_to_rows(c->work_raw, c->work, 2 * D, d);
            head_major_to_rows(c->work_raw + D, c->work + tensor_size(c), 2 * D, d);
        }
        float *draw = c->draw + l * layer_size(c);
        for (size_t i = 0; i < layer_size(c); i++)
            draw[i] += c->work_raw[i];
    }
    if (c->pe.kind->finish)
        c->pe.kind->finish(&c->pe, c->params.data, c->grads.data);
}

double pe_gradcheck(const PeOptions *o, const PeGeometry *g, double param_noise, uint64_t seed)
{
    PeCase c;
    case_create(&c, o, g, param_noise, seed);
    GcProblem p = {.ctx = &c, .forward = case_forward, .backward = case_backward, .out = c.out,
                   .dout = c.dout, .out_n = layer_size(&c) * g->depth};
    gc_add(&p, "x", c.raw, c.draw, layer_size(&c) * g->depth);
    for (int t = 0; t < c.list.count; t++)
        gc_add(&p, c.list.specs[t].name, arena_tensor(&c.params, t), arena_tensor(&c.grads, t),
               c.list.specs[t].numel);
    GcResult r;
    GcOptions opts = {.max_samples = 48, .seed = seed};
    gradcheck_run(&p, &opts, &r);
    char title[96];
    snprintf(title, sizeof title, "%s (grid %d, trained at %d)", o->type, g->grid_h, g->grid_h0);
    gradcheck_print(title, &p, &r);
    case_free(&c);
    return r.max_error;
}

/* Rotates the same vector v at every token of head 0, layer `layer`,
 * into rot (N, Dh). */
static void rotate_everywhere(PeCase *c, int layer, const float *v, float *rot)
{
    const AttnDims *d = &c->dims;
    float *x = c->work;
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int n = 0; n < d->N; n++)
                memcpy(x + (((size_t)b * d->H + h) * d->N + n) * d->Dh, v,
                       (size_t)d->Dh * sizeof(float));
    if (pe_rotation(&c->pe))
        pe_forward_in_place(&c->pe, layer, x, d);
    memcpy(rot, x, (size_t)d->N * d->Dh * sizeof(float));
}

static double dot(const float *a, const float *b, int n)
{
    double s = 0.0;
    for (int i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

double pe_shift_violation(const PeOptions *o, const PeGeometry *g, int layer, double param_noise,
                          uint64_t seed)
{
    PeCase c;
    case_create(&c, o, g, param_noise, seed);
    prepare(&c);
    const int Dh = g->head_dim, W = g->grid_w, H = g->grid_h;
    float *q = gc_randn((size_t)Dh, 1.0, seed + 3), *k = gc_randn((size_t)Dh, 1.0, seed + 4);
    float *rq = gc_zeros((size_t)c.tokens * Dh), *rk = gc_zeros((size_t)c.tokens * Dh);
    rotate_everywhere(&c, layer, q, rq);
    rotate_everywhere(&c, layer, k, rk);
    double worst = 0.0, scale = 1e-30;
    for (int t1 = 1; t1 < c.tokens; t1++)
        for (int t2 = 1; t2 < c.tokens; t2++) {
            const int r1 = pe_row(g, t1), c1 = pe_col(g, t1), r2 = pe_row(g, t2), c2 = pe_col(g, t2);
            const double base = dot(rq + (size_t)t1 * Dh, rk + (size_t)t2 * Dh, Dh);
            scale = fmax(scale, fabs(base));
            for (int dr = -r1; dr < H - r1; dr++)
                for (int dc = -c1; dc < W - c1; dc++) {
                    if (r2 + dr < 0 || r2 + dr >= H || c2 + dc < 0 || c2 + dc >= W)
                        continue;
                    const int s1 = 1 + (r1 + dr) * W + c1 + dc, s2 = 1 + (r2 + dr) * W + c2 + dc;
                    double shifted = dot(rq + (size_t)s1 * Dh, rk + (size_t)s2 * Dh, Dh);
                    worst = fmax(worst, fabs(shifted - base));
                }
        }
    case_free(&c);
    return worst / scale;
}

double pe_norm_violation(const PeOptions *o, const PeGeometry *g, uint64_t seed)
{
    PeCase c;
    case_create(&c, o, g, 0.1, seed);
    case_forward(&c);
    double worst = 0.0;
    const int D = g->heads * g->head_dim;
    const size_t vectors = layer_size(&c) / g->head_dim;
    for (int l = 0; l < g->depth; l++) {
        float *split_raw = c.work; /* q, then k, as in out */
        const float *raw = c.raw + l * layer_size(&c);
        rows_to_head_major(split_raw, raw, 2 * D, &c.dims);
        rows_to_head_major(split_raw + tensor_size(&c), raw + D, 2 * D, &c.dims);
        for (size_t v = 0; v < vectors; v++) {
            const float *x = split_raw + v * g->head_dim;
            const float *y = c.out + l * layer_size(&c) + v * g->head_dim;
            double n2 = dot(x, x, g->head_dim);
            worst = fmax(worst, fabs(n2 - dot(y, y, g->head_dim)) / n2);
        }
    }
    case_free(&c);
    return worst;
}
