/*
 * comrope.c - ComRoPE (Yu et al., CVPR 2025; DESIGN §4.5): trainable
 * commuting block rotations, in its two variants.
 *
 * Per layer i, head h, block j (size b): S = F[h,j] - F[h,j]^T with
 * F = blocks.{i}.attn.freqs (H, 1, Dh/b, b, b), and R = exp(c S) where
 *   AP (axis-partitioned): c = p_row for even j, p_col for odd j;
 *   LD (linearly dependent): c = m[0,j] p_row + m[1,j] p_col with
 *       m = blocks.{i}.attn.multiplier (1, 2, Dh/b, 1, 1), shared by heads.
 * One generator per block, scaled by a scalar: the rotations of all
 * positions commute, so logits depend on position differences only
 * (ComRoPE Thm. 1).
 *
 * Positions (row, col) are patch centres ((r + 0.5)/gh, (c + 0.5)/gw) in
 * (0, 1) at any grid (interpolation); the CLS token sits at (0.5, 0.5).
 * In training with pe.sigma > 0 each patch's row and column move by
 * clamp(N(0, (0.5 sigma)^2), -0.5, 0.5) patches before the scaling. The
 * perturbation is drawn once per pass (the batch shares the rotations,
 * §4.7), for patches only (CLS stays at the centre), from the stream
 * rng_stream(seed, RNG_AUGMENT, PERTURB_KEY, step): RNG_AUGMENT because a
 * perturbation is an augmentation; PERTURB_KEY lies far outside the epochs
 * that key the image augmentation streams, so the streams never meet.
 *
 * Parameters are registered with INIT_ZEROS and drawn by comrope_init
 * (freqs N(0, init_std^2), multiplier N(0, 1)); none takes weight decay.
 * They live in per-layer tensors, so their indices are kept here, not in
 * Pe.param (which holds at most PE_MAX_PARAMS).
 *
 * Gradients: the engine (block_rotary.h) gives dG per (layer, head, token,
 * block); G = c S, so dS = sum_t c_t dG_t, dF = dS - dS^T, and for LD
 * dc_t = <S, dG_t>, dm[0,j] += p_row dc_t, dm[1,j] += p_col dc_t, each sum
 * over tokens (and heads for m) in order.
 */
#include "vitrain/pe.h"
#include "vitrain/rng.h"

#include "block_rotary.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* "ComRoPE" in ASCII: the RNG_AUGMENT key of the position perturbation. */
static const uint64_t PERTURB_KEY = 0x436f6d526f5045ULL;

typedef struct ComRope {
    BlockRotary br;
    bool ld;
    int *freqs;    /* (depth) parameter indices of blocks.{i}.attn.freqs */
    int *mult;     /* (depth) of blocks.{i}.attn.multiplier (LD) */
    double *pos;   /* (N, 2) (row, col) of this pass */
} ComRope;

static VtCode ap_check(const PeOptions *o, const PeGeometry *g, VtError *err)
{
    return br_check(o, g, 2, err);
}

static VtCode ld_check(const PeOptions *o, const PeGeometry *g, VtError *err)
{
    return br_check(o, g, 1, err);
}

static void comrope_create(Pe *pe, TensorList *params, bool ld)
{
    const PeGeometry *g = &pe->geo;
    ComRope *st = vt_xcalloc(1, sizeof *st);
    const int b = pe->opt.block_size;
    br_init(&st->br, g, b, g->depth, g->heads, 0);
    st->ld = ld;
    st->freqs = vt_xmalloc((size_t)g->depth * sizeof(int));
    st->mult = vt_xmalloc((size_t)g->depth * sizeof(int));
    st->pos = vt_xcalloc((size_t)st->br.tokens * 2, sizeof(double));
    const int64_t K = g->head_dim / b;
    for (int i = 0; i < g->depth; i++) {
        const int64_t fshape[5] = {g->heads, 1, K, b, b}, mshape[5] = {1, 2, K, 1, 1};
        st->freqs[i] = tensor_list_add(params, fshape, 5, VT_TENSOR_NO_DECAY, INIT_ZEROS, 0,
                                       "blocks.%d.attn.freqs", i);
        st->mult[i] = ld ? tensor_list_add(params, mshape, 5, VT_TENSOR_NO_DECAY, INIT_ZEROS, 0,
                                           "blocks.%d.attn.multiplier", i)
                         : -1;
    }
    pe->state = st;
}

static void ap_create(Pe *pe, TensorList *params) { comrope_create(pe, params, false); }
static void ld_create(Pe *pe, TensorList *params) { comrope_create(pe, params, true); }

static void fill_normal(float *x, size_t n, double std, Rng *rng)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(std * rng_normal(rng));
}

static void comrope_init(Pe *pe, float *params, uint64_t seed)
{
    const ComRope *st = pe->state;
    for (int i = 0; i < pe->geo.depth; i++) {
        /* One stream per tensor, as vit_init_params keys them. */
        Rng rng = rng_stream(seed, RNG_INIT, 0x66726571 /* "freq" */, (uint64_t)i);
        fill_normal(pe_tensor(pe, params, st->freqs[i]), pe->list->specs[st->freqs[i]].numel,
                    pe->opt.init_std, &rng);
        if (st->mult[i] < 0)
            continue;
        rng = rng_stream(seed, RNG_INIT, 0x6d756c74 /* "mult" */, (uint64_t)i);
        fill_normal(pe_tensor(pe, params, st->mult[i]), pe->list->specs[st->mult[i]].numel, 1.0,
                    &rng);
    }
}

static void comrope_destroy(Pe *pe)
{
    ComRope *st = pe->state;
    if (!st)
        return;
    br_free(&st->br);
    free(st->freqs);
    free(st->mult);
    free(st->pos);
    free(st);
}

/* clamp(N(0, (0.5 sigma)^2), -0.5, 0.5), in patches. */
static double perturbation(Rng *rng, double sigma)
{
    return fmin(0.5, fmax(-0.5, 0.5 * sigma * rng_normal(rng)));
}

static void set_positions(const Pe *pe, ComRope *st, const PeStep *step)
{
    const PeGeometry *g = &pe->geo;
    const bool perturb = step->train && pe->opt.sigma > 0.0f;
    Rng rng = rng_stream(step->seed, RNG_AUGMENT, PERTURB_KEY, (uint64_t)step->step);
    st->pos[0] = st->pos[1] = 0.5;
    for (int t = 1; t < st->br.tokens; t++) {
        double dr = perturb ? perturbation(&rng, pe->opt.sigma) : 0.0;
        double dc = perturb ? perturbation(&rng, pe->opt.sigma) : 0.0;
        st->pos[2 * t] = (pe_row(g, t) + 0.5 + dr) / g->grid_h;
        st->pos[2 * t + 1] = (pe_col(g, t) + 0.5 + dc) / g->grid_w;
    }
}

/* The scalar c of layer, token, block (head-independent). */
static double coefficient(const Pe *pe, const float *params, int layer, int token, int block)
{
    const ComRope *st = pe->state;
    const double *p = st->pos + 2 * token;
    if (!st->ld)
        return p[block % 2];
    const float *m = pe_tensor(pe, params, st->mult[layer]);
    return m[block] * p[0] + m[st->br.blocks + block] * p[1];
}

/* F[h, j] of layer (b, b). */
static const float *freq_block(const Pe *pe, const float *base, int layer, int head, int block)
{
    const ComRope *st = pe->state;
    const size_t bb = (size_t)st->br.b * st->br.b;
    return pe_tensor(pe, base, st->freqs[layer]) + ((size_t)head * st->br.blocks + block) * bb;
}

/* G = c (F - F^T). */
static void generator(const Pe *pe, const float *params, int layer, int head, int token, int block,
                      double *G)
{
    const int b = ((const ComRope *)pe->state)->br.b;
    const double c = coefficient(pe, params, layer, token, block);
    const float *F = freq_block(pe, params, layer, head, block);
    for (int r = 0; r < b; r++)
        for (int col = 0; col < b; col++)
            G[r * b + col] = c * ((double)F[r * b + col] - F[col * b + r]);
}

static void comrope_prepare(Pe *pe, const float *params, const PeStep *step)
{
    ComRope *st = pe->state;
    set_positions(pe, st, step);
    br_prepare(&st->br, pe, params, generator);
}

static void comrope_forward(const Pe *pe, int layer, float *x, int stride, const AttnDims *d)
{
    br_forward(&((const ComRope *)pe->state)->br, layer, x, stride, d);
}

static void comrope_forward_head(const Pe *pe, int layer, int b, int h, const PeHeadRows *rows,
                                 const AttnDims *d)
{
    br_forward_head(&((const ComRope *)pe->state)->br, layer, b, h, rows, d);
}

static void comrope_backward_head(const Pe *pe, int layer, int b, int h, const PeHeadRows *rows,
                                  float *part, const AttnDims *d)
{
    br_backward_head(&((const ComRope *)pe->state)->br, layer, b, h, rows, part, d);
}

static void comrope_backward_reduce(Pe *pe, int layer, const float *parts, int chunks,
                                    const AttnDims *d)
{
    br_backward_reduce(&((ComRope *)pe->state)->br, layer, parts, chunks, d);
}

static int comrope_head_grad_floats(const Pe *pe)
{
    return br_head_grad_floats(&((const ComRope *)pe->state)->br);
}

static bool comrope_by_heads(const Pe *pe)
{
    return br_by_heads(&((const ComRope *)pe->state)->br);
}

static void comrope_backward(Pe *pe, int layer, float *dx, const float *y, int stride,
                                  const AttnDims *d)
{
    br_backward(&((ComRope *)pe->state)->br, layer, dx, y, stride, d);
}

/* dF[h,j] += dS - dS^T with dS = sum_t c_t dG_t. */
static void freq_grad(const Pe *pe, const float *params, float *grads, int layer, int head,
                      int block)
{
    const BlockRotary *br = &((const ComRope *)pe->state)->br;
    const int b = br->b;
    double dS[BR_MAX_BLOCK * BR_MAX_BLOCK] = {0};
    for (int t = 0; t < br->tokens; t++) {
        const double c = coefficient(pe, params, layer, t, block);
        const float *dG = br->grad + br_at(br, layer, head, t, block);
        for (int e = 0; e < b * b; e++)
            dS[e] += c * dG[e];
    }
    float *dF = (float *)freq_block(pe, grads, layer, head, block);
    for (int r = 0; r < b; r++)
        for (int col = 0; col < b; col++)
            dF[r * b + col] += (float)(dS[r * b + col] - dS[col * b + r]);
}

/* LD: dm[a,j] += sum over heads, tokens of p_a <S, dG_t>. */
static void multiplier_grad(const Pe *pe, const float *params, float *grads, int layer, int block)
{
    const ComRope *st = pe->state;
    const BlockRotary *br = &st->br;
    const int b = br->b;
    double dm[2] = {0.0, 0.0};
    for (int h = 0; h < br->heads; h++) {
        const float *F = freq_block(pe, params, layer, h, block);
        for (int t = 0; t < br->tokens; t++) {
            const float *dG = br->grad + br_at(br, layer, h, t, block);
            double dc = 0.0;
            for (int r = 0; r < b; r++)
                for (int col = 0; col < b; col++)
                    dc += ((double)F[r * b + col] - F[col * b + r]) * dG[r * b + col];
            dm[0] += st->pos[2 * t] * dc;
            dm[1] += st->pos[2 * t + 1] * dc;
        }
    }
    float *m = pe_tensor(pe, grads, st->mult[layer]);
    m[block] += (float)dm[0];
    m[br->blocks + block] += (float)dm[1];
}

static void comrope_finish(Pe *pe, const float *params, float *grads)
{
    ComRope *st = pe->state;
    BlockRotary *br = &st->br;
    br_finish(br, pe, params, generator);
    const int per_layer = br->heads * br->blocks;
    /* One parameter block per iteration, tokens summed in order. */
#pragma omp parallel for schedule(static)
    for (int i = 0; i < br->layers * per_layer; i++)
        freq_grad(pe, params, grads, i / per_layer, i % per_layer / br->blocks, i % br->blocks);
    if (!st->ld)
        return;
#pragma omp parallel for schedule(static)
    for (int i = 0; i < br->layers * br->blocks; i++)
        multiplier_grad(pe, params, grads, i / br->blocks, i % br->blocks);
}

const PeKind PE_COMROPE_AP = {
    .name = "comrope_ap", .reads = PE_READS_BLOCK_SIZE | PE_READS_INIT_STD | PE_READS_SIGMA,
    .check = ap_check, .create = ap_create, .init = comrope_init,
    .prepare = comrope_prepare, .forward = comrope_forward, .backward = comrope_backward,
    .forward_head = comrope_forward_head, .backward_head = comrope_backward_head,
    .backward_reduce = comrope_backward_reduce, .head_grad_floats = comrope_head_grad_floats,
    .by_heads = comrope_by_heads,
    .finish = comrope_finish, .destroy = comrope_destroy,
};

const PeKind PE_COMROPE_LD = {
    .name = "comrope_ld", .reads = PE_READS_BLOCK_SIZE | PE_READS_INIT_STD | PE_READS_SIGMA,
    .check = ld_check, .create = ld_create, .init = comrope_init,
    .prepare = comrope_prepare, .forward = comrope_forward, .backward = comrope_backward,
    .forward_head = comrope_forward_head, .backward_head = comrope_backward_head,
    .backward_reduce = comrope_backward_reduce, .head_grad_floats = comrope_head_grad_floats,
    .by_heads = comrope_by_heads,
    .finish = comrope_finish, .destroy = comrope_destroy,
};
