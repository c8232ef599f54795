/*
 * pe_harness.c - shared positional-encoding checks (see pe_harness.h).
 *
 * The encoding is driven exactly as the model drives it: create on a
 * parameter list, init, then per pass prepare, forward per layer, backward
 * per layer, finish.
 */
#include "pe_harness.h"

#include "gradcheck.h"

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
    float *raw;    /* (depth, B, N, H*Dh): q as it sits in the qkv buffer (stride H*Dh) */
    float *draw;
    float *out;    /* (depth, B, H, N, Dh) rotated */
    float *dout;
    float *work;   /* (B, H, N, Dh) */
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
    const size_t per_layer = (size_t)BATCH * c->tokens * g->heads * g->head_dim;
    c->raw = gc_randn(per_layer * g->depth, 1.0, seed + 1);
    c->draw = gc_zeros(per_layer * g->depth);
    c->out = gc_zeros(per_layer * g->depth);
    c->dout = gc_zeros(per_layer * g->depth);
    c->work = gc_zeros(per_layer);
}

static void case_free(PeCase *c)
{
    pe_destroy(&c->pe);
    arena_free(&c->params);
    arena_free(&c->grads);
    tensor_list_free(&c->list);
}

static size_t layer_size(const PeCase *c)
{
    return (size_t)BATCH * c->tokens * c->dims.H * c->dims.Dh;
}

/* (B, N, H*Dh) rows -> (B, H, N, Dh): raw rows into the head-major layout. */
static void split(float *dst, const float *src, const AttnDims *d)
{
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int n = 0; n < d->N; n++)
                memcpy(dst + (((size_t)b * d->H + h) * d->N + n) * d->Dh,
                       src + ((size_t)b * d->N + n) * d->H * d->Dh + h * d->Dh,
                       (size_t)d->Dh * sizeof(float));
}

static void merge_add(float *dst, const float *src, const AttnDims *d)
{
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int n = 0; n < d->N; n++)
                for (int i = 0; i < d->Dh; i++)
                    dst[((size_t)b * d->N + n) * d->H * d->Dh + h * d->Dh + i] +=
                        src[(((size_t)b * d->H + h) * d->N + n) * d->Dh + i];
}

/* (B, H, N, Dh) -> (B, N, H*Dh) rows: the inverse of split. */
static void merge(float *dst, const float *src, const AttnDims *d)
{
    for (int b = 0; b < d->B; b++)
        for (int h = 0; h < d->H; h++)
            for (int n = 0; n < d->N; n++)
                memcpy(dst + ((size_t)b * d->N + n) * d->H * d->Dh + h * d->Dh,
                       src + (((size_t)b * d->H + h) * d->N + n) * d->Dh,
                       (size_t)d->Dh * sizeof(float));
}

void pe_forward_in_place(const Pe *pe, int layer, float *x, const AttnDims *d)
{
    const size_t n = (size_t)d->B * d->N * d->H * d->Dh;
    float *raw = malloc(n * sizeof(float));
    merge(raw, x, d);
    memset(x, 0, n * sizeof(float)); /* every row must be written */
    pe_forward(pe, layer, x, raw, d->H * d->Dh, d);
    free(raw);
}

void pe_backward_in_place(Pe *pe, int layer, float *dx, const float *x_raw, const AttnDims *d)
{
    const size_t n = (size_t)d->B * d->N * d->H * d->Dh;
    float *dx_raw = calloc(n, sizeof(float));
    pe_backward(pe, layer, dx_raw, dx, x_raw, d->H * d->Dh, d);
    split(dx, dx_raw, d);
    free(dx_raw);
}

static void prepare(PeCase *c)
{
    const PeStep step = {.train = false};
    if (c->pe.kind->prepare)
        c->pe.kind->prepare(&c->pe, c->params.data, &step);
}

static void case_forward(void *ctx)
{
    PeCase *c = ctx;
    prepare(c);
    for (int l = 0; l < c->pe.geo.depth; l++) {
        float *out = c->out + l * layer_size(c);
        memset(out, 0, layer_size(c) * sizeof(float)); /* every row must be written */
        if (pe_rotation(&c->pe))
            pe_forward(&c->pe, l, out, c->raw + l * layer_size(c), c->dims.H * c->dims.Dh,
                       &c->dims);
        else
            split(out, c->raw + l * layer_size(c), &c->dims);
    }
}

static void case_backward(void *ctx)
{
    PeCase *c = ctx;
    for (int l = 0; l < c->pe.geo.depth; l++) {
        memcpy(c->work, c->dout + l * layer_size(c), layer_size(c) * sizeof(float));
        if (pe_rotation(&c->pe))
            pe_backward_in_place(&c->pe, l, c->work, c->raw + l * layer_size(c), &c->dims);
        merge_add(c->draw + l * layer_size(c), c->work, &c->dims);
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
    const size_t vectors = layer_size(&c) / g->head_dim;
    for (int l = 0; l < g->depth; l++) {
        float *split_raw = c.work;
        split(split_raw, c.raw + l * layer_size(&c), &c.dims);
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
