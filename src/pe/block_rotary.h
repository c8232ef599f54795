/*
 * block_rotary.h - the engine shared by the block-rotation encodings,
 * ComRoPE (DESIGN §4.5) and LieRE (§4.6): each head's channels
 * [j b, (j+1) b) are rotated by R = exp(G), G a b x b skew-symmetric
 * generator that depends on (layer, head, block j, token) and on the
 * encoding's parameters; channels after the last whole block are left alone.
 *
 * The encoding supplies G through a callback; the engine does the rest:
 *   br_prepare   R = exp(G) for every (layer, head, token, block), in double
 *                (the powers along a ray in float for blocks of 16 channels
 *                and more), stored as float, once per pass (the batch
 *                shares them, §4.7); resets dR
 *   br_forward   y = R x per block: one (image, head) at a time for
 *                blocks under 16 channels (br_forward_head, inside the
 *                attention's loop), as products over the batch, in place,
 *                for larger
 *   br_backward  dx = R^T dy and dR += dy x^T, dR summed over the batch and
 *                over q and k: per (image, head) into parts per chunk of
 *                the batch, then summed (br_backward_head, _reduce), or as
 *                products, in place, which gather dy y^T instead (x is
 *                gone; dR = dy y^T R); one writer per (table head, token)
 *   br_finish    dG = skew_expm_backward_f(G, dR) per item (in float: the
 *                dR it starts from is float already), written over dR;
 *                the encoding then chains dG to its parameters
 * An encoding whose generators are integer multiples of each other along
 * rays of tokens (LieRE: G is linear in the position, and positions form a
 * lattice) declares them with br_set_rays; the engine then takes powers of
 * one exponential per ray instead of an exponential per token.
 * Results never depend on the thread count: every item is computed by one
 * thread from its own inputs, and every sum runs in a fixed order.
 *
 * Tables: an encoding that shares generators across layers or heads (LieRE's
 * options) asks for 1 layer or 1 head table; every layer / head then reads
 * table 0, and the backward sums their dR into it (layers run one after the
 * other, heads inside one writer's loop), so the exp and its backward run
 * once per distinct rotation.
 */
#ifndef VITRAIN_PE_BLOCK_ROTARY_H
#define VITRAIN_PE_BLOCK_ROTARY_H

#include "vitrain/pe.h"
#include "vitrain/skew_expm.h"

#include <stdbool.h>
#include <stddef.h>

/* §4.7: the exponential is specified (and tested) up to b = 64. */
enum { BR_MAX_BLOCK = 64 };

/* Writes the generator G (b, b) of table (layer, head), token, block. Called
 * from several threads at once, so it may only read shared state. */
typedef void (*BrGenerator)(const Pe *pe, const float *params, int layer, int head, int token,
                            int block, double *G);

typedef struct BrScratch {
    SkewExpmWork *work;
    double *g, *root;            /* a ray's generator and R = exp(G) */
    double *cur, *next, *acc;    /* the ray's products and adjoints */
    double *prev;                /* R^(k-1), read back for the backward */
    float *g32, *adj32;          /* the backward's float inputs (before them, a dense
                                    ray's fold: finish_ray_dense) */
    float *sum32;                /* that fold's sum of adjoints */
} BrScratch;

typedef struct BlockRotary {
    int b;            /* block size */
    int blocks;       /* K = Dh / b rotated blocks per head */
    int layers;       /* layer tables: depth, or 1 when layers share */
    int heads;        /* head tables: H, or 1 when heads share */
    int tokens;       /* N = 1 + patches at the current grid */
    int first_token;  /* tokens below it are not rotated (LieRE's CLS) */
    float *rot;       /* (layers, heads, N, K, b, b) R = exp(G), row-major */
    float *rot_t;     /* the same R stored transposed, so that both y = R x and
                         dx = R^T dy run as vectorisable column sweeps (for
                         b = 8 with AVX-512, pairs of blocks with their rows
                         interleaved); NULL for blocks rotated by products
                         (block_rotary.c) */
    float *grad;      /* same shape: dL/dR while backward runs (for blocks rotated by
                         products dL/dR R^T, br_backward), dL/dG after br_finish */
    bool grad_written; /* whether grad may hold anything but zeros (br_clear_grads) */
    int rays;         /* ray r holds the tokens ray_token[ray_start[r] ..
                         ray_start[r + 1]) in power order (br_set_rays) */
    int *ray_start;   /* (rays + 1) */
    int *ray_token;   /* (N - first_token) */
    BrScratch *scratch;  /* one per thread */
    int threads;
} BlockRotary;

/* Checks 2 <= b <= BR_MAX_BLOCK and Dh % (pair_multiple * b) == 0, with
 * messages naming pe.block_size and the head dimension. pair_multiple is 1,
 * or 2 for ComRoPE-AP, whose blocks alternate between the two axes. */
VtCode br_check(const PeOptions *o, const PeGeometry *g, int pair_multiple, VtError *err);

/* Allocates everything the passes need (nothing is allocated later). */
void br_init(BlockRotary *br, const PeGeometry *g, int b, int layers, int heads, int first_token);
void br_free(BlockRotary *br);

/* Offset of table (layer, head), token, block in rot / rot_t / grad, in floats. */
static inline size_t br_at(const BlockRotary *br, int layer, int head, int token, int block)
{
    return ((((size_t)layer * br->heads + head) * br->tokens + token) * br->blocks + block) *
           br->b * br->b;
}

/* Declares G_t = power[t] G_root[t] for every rotated token t, the root
 * itself having power 1 (indexed by token; entries below first_token are
 * not read). Then R_t = R_root^power[t], so each ray (a root and its
 * multiples) costs one exponential and one product per further token in
 * br_prepare, one Frechet derivative and two products per further token in
 * br_finish. Until called, every token is a ray of its own. A root's powers
 * must run 1, 2, ..., K. */
void br_set_rays(BlockRotary *br, const int *root, const int *power);

void br_prepare(BlockRotary *br, const Pe *pe, const float *params, BrGenerator generator);
/* The part of br_prepare that a pass needs even when the rotations of the
 * last one still hold: dR back to zero. */
void br_clear_grads(BlockRotary *br);

/* Blocks under 16 channels rotate vector by vector, one (image, head) at a
 * time (br_by_heads): each tile (N, Dh) <- R raw of image `image`, head h,
 * and back: the rows of raw_grad <- R^T tile, with dR += dy x^T added to `part`,
 * (N, K, b, b) of br_head_grad_floats, which br_backward_reduce sums over
 * the chunks of the batch (attention_grad_chunks) into grad. */
bool br_by_heads(const BlockRotary *br);
void br_forward_head(const BlockRotary *br, int layer, int image, int h, const PeHeadRows *rows,
                     const AttnDims *d);
int br_head_grad_floats(const BlockRotary *br);
void br_backward_head(const BlockRotary *br, int layer, int image, int h, const PeHeadRows *rows,
                      float *part, const AttnDims *d);
void br_backward_reduce(BlockRotary *br, int layer, const float *parts, int chunks,
                        const AttnDims *d);

/* Larger blocks (dense LieRE) rotate whole tensors in place, as products
 * over the batch: the rows x <- R x; the rows dx <- R^T dx, given the
 * rows y the forward left, with dY^T Y added to grad: the layouts of
 * QkRotation (attention.h). */
void br_forward(const BlockRotary *br, int layer, float *x, int stride, const AttnDims *d);
void br_backward(BlockRotary *br, int layer, float *dx, const float *y, int stride,
                 const AttnDims *d);
/* Turns grad from dL/dR into dL/dG: each ray's whole gradient lands on its
 * root's generator and its other tokens get zero (their rotations reach the
 * parameters only through the root's), so the encoding may chain dG to its
 * parameters over all tokens or over the roots alone (br_ray_root). */
void br_finish(BlockRotary *br, const Pe *pe, const float *params, BrGenerator generator);

/* The first token of ray r, its root (ascending with r). */
static inline int br_ray_root(const BlockRotary *br, int ray)
{
    return br->ray_token[br->ray_start[ray]];
}

/* torch.linspace(start, end, count)[i] in double (from the nearer end, so
 * both ends are exact; count 1 gives start). */
double br_linspace(double start, double end, int count, int i);

#endif
