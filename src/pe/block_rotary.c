/*
 * block_rotary.c - the block-rotation engine of ComRoPE and LieRE (see
 * block_rotary.h; DESIGN §4.5-4.7).
 *
 * Memory: three float tables of (layers, heads, N, K, b, b) entries, i.e.
 * layers * heads * N * Dh * b floats each (R, R^T and the gradient);
 * generators are rebuilt by the callback in br_finish rather than stored,
 * which spares a fourth, double-precision table (dense LieRE, b = Dh, makes
 * these tables large: 12 layers, 6 heads, 197 tokens, Dh = b = 64 take
 * about 230 MB each).
 */
#include "block_rotary.h"

#include "vitrain/parallel.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

VtCode br_check(const PeOptions *o, const PeGeometry *g, int pair_multiple, VtError *err)
{
    const int b = o->block_size;
    if (b < 2 || b > BR_MAX_BLOCK)
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "pe.block_size must be between 2 and %d for pe.type %s, got %d",
                       BR_MAX_BLOCK, o->type, b);
    if (g->head_dim % (pair_multiple * b) != 0) {
        if (pair_multiple > 1)
            return vt_fail(err, VT_ERR_ARGUMENT,
                           "pe.type %s needs half the head dimension divisible by pe.block_size "
                           "(blocks alternate between rows and columns): model.dim / model.heads "
                           "is %d, pe.block_size is %d",
                           o->type, g->head_dim, b);
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "pe.type %s needs the head dimension divisible by pe.block_size: "
                       "model.dim / model.heads is %d, pe.block_size is %d",
                       o->type, g->head_dim, b);
    }
    return VT_OK;
}

void br_init(BlockRotary *br, const PeGeometry *g, int b, int layers, int heads, int first_token)
{
    memset(br, 0, sizeof *br);
    br->b = b;
    br->blocks = g->head_dim / b;
    br->layers = layers;
    br->heads = heads;
    br->tokens = 1 + g->grid_h * g->grid_w;
    br->first_token = first_token;
    const size_t n = br_at(br, layers, 0, 0, 0);
    /* Entries of tokens below first_token are never read (zeroed all the same). */
    br->rot = vt_xcalloc(n, sizeof(float));
    br->rot_t = vt_xcalloc(n, sizeof(float));
    br->grad = vt_xcalloc(n, sizeof(float));
    /* Regions never use more threads than this (region_threads). */
    br->threads = threads_planned();
    br->scratch = vt_xcalloc((size_t)br->threads, sizeof *br->scratch);
    for (int i = 0; i < br->threads; i++) {
        BrScratch *s = &br->scratch[i];
        s->work = skew_expm_work_create(b);
        s->g = vt_xmalloc(4 * (size_t)b * b * sizeof(double));
        s->r = s->g + (size_t)b * b;
        s->dr = s->r + (size_t)b * b;
        s->dg = s->dr + (size_t)b * b;
    }
}

void br_free(BlockRotary *br)
{
    for (int i = 0; i < br->threads; i++) {
        skew_expm_work_free(br->scratch[i].work);
        free(br->scratch[i].g);
    }
    free(br->scratch);
    free(br->rot);
    free(br->rot_t);
    free(br->grad);
    memset(br, 0, sizeof *br);
}

/* Items are the rotated (layer table, head table, token, block) tuples. */
static int item_count(const BlockRotary *br)
{
    return br->layers * br->heads * (br->tokens - br->first_token) * br->blocks;
}

/* Unpacks an item index into its table offset, calling the generator. */
static size_t item_generator(const BlockRotary *br, int item, const Pe *pe, const float *params,
                             BrGenerator generator, double *G)
{
    const int rotated = br->tokens - br->first_token;
    const int j = item % br->blocks;
    const int t = br->first_token + (item / br->blocks) % rotated;
    const int lh = item / (br->blocks * rotated);
    const int l = lh / br->heads, h = lh % br->heads;
    generator(pe, params, l, h, t, j, G);
    return br_at(br, l, h, t, j);
}

static int region_threads(const BlockRotary *br)
{
    return VT_MIN(omp_get_max_threads(), br->threads);
}

void br_prepare(BlockRotary *br, const Pe *pe, const float *params, BrGenerator generator)
{
    const int items = item_count(br);
#pragma omp parallel num_threads(region_threads(br))
    {
        BrScratch *s = &br->scratch[omp_get_thread_num()];
#pragma omp for schedule(static)
        for (int i = 0; i < items; i++) {
            const size_t at = item_generator(br, i, pe, params, generator, s->g);
            skew_expm(s->r, s->g, br->b, s->work);
            for (int r = 0; r < br->b; r++)
                for (int c = 0; c < br->b; c++) {
                    br->rot[at + r * br->b + c] = (float)s->r[r * br->b + c];
                    br->rot_t[at + c * br->b + r] = (float)s->r[r * br->b + c];
                }
        }
    }
    memset(br->grad, 0, br_at(br, br->layers, 0, 0, 0) * sizeof(float));
}

/* x (b) <- R x, given Rt = R^T row-major: y = sum_c x_c R[:, c], a sweep
 * over contiguous columns that vectorises (a row dot product would be a
 * float reduction, which the compiler may not reorder). */
static inline void rotate_block(float *x, const float *Rt, int b)
{
    float y[BR_MAX_BLOCK] = {0};
    for (int c = 0; c < b; c++) {
        const float xc = x[c];
        for (int r = 0; r < b; r++)
            y[r] += Rt[c * b + r] * xc;
    }
    memcpy(x, y, (size_t)b * sizeof(float));
}

/* y = sum_k v[k] M[k, :] for a row-major 8 x 8 M: the b = 8 kernel of both
 * directions (fixed trip counts keep everything in vector registers, one
 * multiply-add per row). y may be v: it is written after the last read. */
static inline void sum_rows8(float *y, const float *restrict M, const float *v)
{
    float even[8], odd[8]; /* two partial sums halve the chain of multiply-adds */
#pragma omp simd
    for (int c = 0; c < 8; c++) {
        even[c] = M[c] * v[0];
        odd[c] = M[8 + c] * v[1];
    }
    for (int k = 2; k < 8; k += 2)
#pragma omp simd
        for (int c = 0; c < 8; c++) {
            even[c] += M[k * 8 + c] * v[k];
            odd[c] += M[(k + 1) * 8 + c] * v[k + 1];
        }
#pragma omp simd
    for (int c = 0; c < 8; c++)
        y[c] = even[c] + odd[c];
}

/* The blocks of one head vector; Rt: its (K, b, b) consecutive matrices. */
static inline void rotate_vector(float *v, const float *Rt, int blocks, int b)
{
    if (b == 8) {
        for (int j = 0; j < blocks; j++)
            sum_rows8(v + j * 8, Rt + (size_t)j * 64, v + j * 8); /* R x = sum_c x_c Rt[c, :] */
        return;
    }
    for (int j = 0; j < blocks; j++)
        rotate_block(v + j * b, Rt + (size_t)j * b * b, b);
}

void br_forward(const BlockRotary *br, int layer, float *x, const AttnDims *d)
{
    const int table = br->layers == 1 ? 0 : layer;
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < d->B * d->H; bh++) {
        const int h = br->heads == 1 ? 0 : bh % d->H;
        for (int n = br->first_token; n < d->N; n++) {
            float *v = x + ((size_t)bh * d->N + n) * d->Dh;
            const float *Rt = br->rot_t + br_at(br, table, h, n, 0);
            rotate_vector(v, Rt, br->blocks, br->b);
        }
    }
}

/* y = R x with upstream dy (b): dR += dy x^T, then dy <- R^T dy, both as
 * sweeps over the contiguous rows of dR and R. */
static inline void rotate_block_backward(float *dy, float *dR, const float *x, const float *R,
                                         int b)
{
    float dx[BR_MAX_BLOCK] = {0};
    for (int r = 0; r < b; r++) {
        const float g = dy[r];
        for (int c = 0; c < b; c++) {
            dR[r * b + c] += g * x[c];
            dx[c] += R[r * b + c] * g;
        }
    }
    memcpy(dy, dx, (size_t)b * sizeof(float));
}

/* rotate_block_backward for b = 8, the default block size: fixed trip
 * counts make every update one multiply-add on a vector of 8. */
static inline void rotate_block8_backward(float *dy, float *restrict dR, const float *restrict x,
                                          const float *restrict R)
{
    for (int r = 0; r < 8; r++)
#pragma omp simd
        for (int c = 0; c < 8; c++)
            dR[r * 8 + c] += dy[r] * x[c];
    sum_rows8(dy, R, dy); /* dx = R^T dy = sum_r dy_r R[r, :] */
}

/* The blocks of one head vector; dR and R: its (K, b, b) matrices. */
static inline void rotate_vector_backward(float *dy, float *dR, const float *x, const float *R,
                                          int blocks, int b)
{
    if (b == 8) {
        for (int j = 0; j < blocks; j++)
            rotate_block8_backward(dy + j * 8, dR + j * 64, x + j * 8, R + j * 64);
        return;
    }
    for (int j = 0; j < blocks; j++) {
        const size_t at = (size_t)j * b * b;
        rotate_block_backward(dy + j * b, dR + at, x + j * b, R + at, b);
    }
}

void br_backward(BlockRotary *br, int layer, float *dx, const float *x_raw, int raw_stride,
                 const AttnDims *d)
{
    const int table = br->layers == 1 ? 0 : layer;
    const int rotated = d->N - br->first_token;
    const int group = br->heads == 1 ? d->H : 1; /* heads reading one table */
    /* One (head table, token) per iteration, its heads and the batch summed
     * inside in order: each dR entry has one writer, whatever the threads. */
#pragma omp parallel for schedule(static)
    for (int hn = 0; hn < br->heads * rotated; hn++) {
        const int th = hn / rotated, n = br->first_token + hn % rotated;
        const size_t at = br_at(br, table, th, n, 0);
        for (int h = th * group; h < (th + 1) * group; h++)
            for (int bi = 0; bi < d->B; bi++) {
                float *g = dx + (((size_t)bi * d->H + h) * d->N + n) * d->Dh;
                const float *x = x_raw + ((size_t)bi * d->N + n) * raw_stride + (size_t)h * d->Dh;
                rotate_vector_backward(g, br->grad + at, x, br->rot + at, br->blocks, br->b);
            }
    }
}

void br_finish(BlockRotary *br, const Pe *pe, const float *params, BrGenerator generator)
{
    const int bb = br->b * br->b, items = item_count(br);
#pragma omp parallel num_threads(region_threads(br))
    {
        BrScratch *s = &br->scratch[omp_get_thread_num()];
#pragma omp for schedule(static)
        for (int i = 0; i < items; i++) {
            const size_t at = item_generator(br, i, pe, params, generator, s->g);
            for (int e = 0; e < bb; e++)
                s->dr[e] = br->grad[at + e];
            skew_expm_backward(s->dg, s->g, s->dr, br->b, s->work);
            for (int e = 0; e < bb; e++)
                br->grad[at + e] = (float)s->dg[e];
        }
    }
}

double br_linspace(double start, double end, int count, int i)
{
    if (count == 1)
        return start;
    const double step = (end - start) / (count - 1);
    return i < count / 2 ? start + step * i : end - step * (count - 1 - i);
}
