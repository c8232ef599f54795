/*
 * liere.c - LieRE (Ostmeier et al., ICML 2025; DESIGN §4.6): learned
 * rotations R = exp(p_row A_row + p_col A_col) of consecutive channel
 * blocks, A skew-symmetric and trained freely. The two generators of a
 * block do not commute in general, so LieRE is not strictly relative.
 *
 * Parameter position_encoder.generator_raw_params (2, Ld, Kh, b, b), init
 * U[0, 2 pi), no weight decay: [0] the row generators, [1] the column ones.
 * Only the strict upper triangle is used, A = U - U^T with U = triu(raw, 1),
 * so entries on and below the diagonal get zero gradient.
 *   Kh = H * Dh/b blocks, block k = h Dh/b + j of head h; Kh = Dh/b with
 *        pe.share_heads (block j serves every head);
 *   Ld = depth, one generator set per layer (the paper's method; the
 *        released code reuses layer 0's set in every layer); Ld = 1 with
 *        pe.share_layers. Shared sets shrink the tensor rather than
 *        leaving unused slots, so a checkpoint holds only what is trained.
 * b = pe.block_size (8 by default, LieRE_8); b = Dh is the dense LieRE.
 *
 * Positions per axis: linspace(0, g/g0, g) at a grid of g patches trained
 * at g0, i.e. linspace(0, 1, g0) at the training grid and a range that
 * grows with the grid beyond it (extrapolation), computed like
 * torch.linspace. The CLS token gets the identity. Positions are a
 * lattice (row dr, col dc), so G is an integer multiple of the generator at
 * the first lattice point on its ray from the origin: the engine computes
 * one exponential per ray and powers of it (block_rotary.h, br_set_rays),
 * 25 exponentials instead of 48 on a 7 x 7 grid.
 *
 * Gradients: the engine (block_rotary.h) gives dG per (layer, head, token,
 * block); G = p_row A_row + p_col A_col, so dA_a = sum_t p_a(t) dG_t over
 * tokens in order, and d raw = (dA - dA^T) on the strict upper triangle.
 */
#include "vitrain/pe.h"
#include "vitrain/rng.h"

#include "block_rotary.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct Liere {
    BlockRotary br;
    int raw;        /* index of generator_raw_params */
    double *pos;    /* (N, 2) (row, col); CLS unused */
    float *made_from;  /* the raw parameters br's rotations were made from */
    bool made;         /* whether made_from holds them (false before the first pass) */
} Liere;

static VtCode liere_check(const PeOptions *o, const PeGeometry *g, VtError *err)
{
    return br_check(o, g, 1, err);
}

static int gcd(int a, int b)
{
    while (b) {
        const int r = a % b;
        a = b;
        b = r;
    }
    return a;
}

/* Patch (row, col) sits at (row dr, col dc) for the grid's steps dr, dc, so
 * G(row, col) = d G(row / d, col / d) with d = gcd(row, col): the rays from
 * the origin through the grid (block_rotary.h). The origin is a ray alone. */
static void declare_rays(Liere *st, const PeGeometry *g)
{
    const int n = st->br.tokens;
    int *root = vt_xcalloc((size_t)n * 2, sizeof(int)), *power = root + n;
    for (int t = 1; t < n; t++) {
        const int row = pe_row(g, t), col = pe_col(g, t), d = gcd(row, col);
        root[t] = d ? 1 + (row / d) * g->grid_w + col / d : t;
        power[t] = d ? d : 1;
    }
    br_set_rays(&st->br, root, power);
    free(root);
}

static void liere_create(Pe *pe, TensorList *params)
{
    const PeGeometry *g = &pe->geo;
    const int b = pe->opt.block_size, K = g->head_dim / b;
    Liere *st = vt_xcalloc(1, sizeof *st);
    const int layers = pe->opt.share_layers ? 1 : g->depth;
    const int heads = pe->opt.share_heads ? 1 : g->heads;
    br_init(&st->br, g, b, layers, heads, 1);
    const int64_t shape[5] = {2, layers, (int64_t)heads * K, b, b};
    st->raw = tensor_list_add(params, shape, 5, VT_TENSOR_NO_DECAY, INIT_ZEROS, 0,
                              "position_encoder.generator_raw_params");
    pe->param[0] = st->raw;
    st->made_from = vt_xmalloc(params->specs[st->raw].numel * sizeof(float));
    /* Positions depend on the grid only: fixed for the life of the Pe. */
    st->pos = vt_xcalloc((size_t)st->br.tokens * 2, sizeof(double));
    for (int t = 1; t < st->br.tokens; t++) {
        st->pos[2 * t] = br_linspace(0.0, (double)g->grid_h / g->grid_h0, g->grid_h, pe_row(g, t));
        st->pos[2 * t + 1] =
            br_linspace(0.0, (double)g->grid_w / g->grid_w0, g->grid_w, pe_col(g, t));
    }
    declare_rays(st, g);
    pe->state = st;
}

static void liere_init(Pe *pe, float *params, uint64_t seed)
{
    const Liere *st = pe->state;
    Rng rng = rng_stream(seed, RNG_INIT, 0x6c696572 /* "lier" */, 0);
    float *raw = pe_tensor(pe, params, st->raw);
    for (size_t i = 0; i < pe->list->specs[st->raw].numel; i++)
        raw[i] = (float)(2.0 * M_PI * rng_uniform_double(&rng));
}

static void liere_destroy(Pe *pe)
{
    Liere *st = pe->state;
    if (!st)
        return;
    br_free(&st->br);
    free(st->pos);
    free(st->made_from);
    free(st);
}

/* raw[axis] of table (layer, head), block (b, b). */
static const float *raw_block(const Pe *pe, const float *base, int axis, int layer, int head,
                              int block)
{
    const BlockRotary *br = &((const Liere *)pe->state)->br;
    const size_t bb = (size_t)br->b * br->b, per_layer = (size_t)br->heads * br->blocks;
    const size_t k = (size_t)head * br->blocks + block;
    return pe_tensor(pe, base, ((const Liere *)pe->state)->raw) +
           (((size_t)axis * br->layers + layer) * per_layer + k) * bb;
}

/* G = p_row A_row + p_col A_col, A = U - U^T, U = triu(raw, 1). */
static void generator(const Pe *pe, const float *params, int layer, int head, int token, int block,
                      double *G)
{
    const Liere *st = pe->state;
    const int b = st->br.b;
    const double pr = st->pos[2 * token], pc = st->pos[2 * token + 1];
    const float *ur = raw_block(pe, params, 0, layer, head, block);
    const float *uc = raw_block(pe, params, 1, layer, head, block);
    for (int r = 0; r < b; r++) {
        G[r * b + r] = 0.0;
        for (int c = r + 1; c < b; c++) {
            const double a = pr * ur[r * b + c] + pc * uc[r * b + c];
            G[r * b + c] = a;
            G[c * b + r] = -a;
        }
    }
}

/* The rotations depend on the raw parameters alone (positions are fixed
 * and nothing is perturbed), so a pass with the parameters of the last one
 * keeps its rotations: every batch of an evaluation after the first, where
 * dense LieRE's exponentials took a fifth of the forward pass. The
 * parameters are compared bit for bit with a copy of them, so a change by
 * any writer (the optimizer, a checkpoint load) makes new rotations. */
static void liere_prepare(Pe *pe, const float *params, const PeStep *step)
{
    (void)step;
    Liere *st = pe->state;
    const float *raw = pe_tensor(pe, params, st->raw);
    const size_t bytes = pe->list->specs[st->raw].numel * sizeof(float);
    if (st->made && memcmp(raw, st->made_from, bytes) == 0) {
        br_clear_grads(&st->br);
        return;
    }
    br_prepare(&st->br, pe, params, generator);
    memcpy(st->made_from, raw, bytes);
    st->made = true;
}

static void liere_forward(const Pe *pe, int layer, float *x, int stride, const AttnDims *d)
{
    br_forward(&((const Liere *)pe->state)->br, layer, x, stride, d);
}

static void liere_forward_head(const Pe *pe, int layer, int b, int h, const PeHeadRows *rows,
                               const AttnDims *d)
{
    br_forward_head(&((const Liere *)pe->state)->br, layer, b, h, rows, d);
}

static void liere_backward_head(const Pe *pe, int layer, int b, int h, const PeHeadRows *rows,
                                float *part, const AttnDims *d)
{
    br_backward_head(&((const Liere *)pe->state)->br, layer, b, h, rows, part, d);
}

static void liere_backward_reduce(Pe *pe, int layer, const float *parts, int chunks,
                                  const AttnDims *d)
{
    br_backward_reduce(&((Liere *)pe->state)->br, layer, parts, chunks, d);
}

static int liere_head_grad_floats(const Pe *pe)
{
    return br_head_grad_floats(&((const Liere *)pe->state)->br);
}

static bool liere_by_heads(const Pe *pe)
{
    return br_by_heads(&((const Liere *)pe->state)->br);
}

static void liere_backward(Pe *pe, int layer, float *dx, const float *y, int stride,
                                const AttnDims *d)
{
    br_backward(&((Liere *)pe->state)->br, layer, dx, y, stride, d);
}

/* d raw[axis] += (dA - dA^T) on the strict upper triangle, with
 * dA = sum_t p_axis(t) dG_t, over the rays' roots in token order: the
 * other tokens' dG are zero (br_finish). */
static void raw_grad(const Pe *pe, float *grads, int layer, int head, int block)
{
    const Liere *st = pe->state;
    const BlockRotary *br = &st->br;
    const int b = br->b;
    for (int axis = 0; axis < 2; axis++) {
        double dA[BR_MAX_BLOCK * BR_MAX_BLOCK] = {0};
        for (int r = 0; r < br->rays; r++) {
            const int t = br_ray_root(br, r);
            const double p = st->pos[2 * t + axis];
            const float *dG = br->grad + br_at(br, layer, head, t, block);
            for (int e = 0; e < b * b; e++)
                dA[e] += p * dG[e];
        }
        float *d = (float *)raw_block(pe, grads, axis, layer, head, block);
        for (int r = 0; r < b; r++)
            for (int c = r + 1; c < b; c++)
                d[r * b + c] += (float)(dA[r * b + c] - dA[c * b + r]);
    }
}

static void liere_finish(Pe *pe, const float *params, float *grads)
{
    BlockRotary *br = &((Liere *)pe->state)->br;
    br_finish(br, pe, params, generator);
    const int per_layer = br->heads * br->blocks;
    /* One parameter block per iteration, tokens summed in order. */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < br->layers * per_layer; i++)
        raw_grad(pe, grads, i / per_layer, i % per_layer / br->blocks, i % br->blocks);
}

const PeKind PE_LIERE = {
    .name = "liere", .reads = PE_READS_BLOCK_SIZE | PE_READS_SHARE_LAYERS | PE_READS_SHARE_HEADS,
    .check = liere_check, .create = liere_create, .init = liere_init,
    .prepare = liere_prepare, .forward = liere_forward, .backward = liere_backward,
    .forward_head = liere_forward_head, .backward_head = liere_backward_head,
    .backward_reduce = liere_backward_reduce, .head_grad_floats = liere_head_grad_floats,
    .by_heads = liere_by_heads,
    .finish = liere_finish, .destroy = liere_destroy,
};
