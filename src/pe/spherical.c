/*
 * spherical.c - the spherical encoding of van de Geijn et al. 2025, "A
 * Circular Argument" (DESIGN §4.4): channel triplets rotated on the sphere,
 * yaw by the patch column, roll by the patch row.
 *
 * The paper leaves these points open; this is our documented reading:
 *   - Triplet d is channels (3d, 3d+1, 3d+2), d < T = floor(Dh/3); the
 *     Dh mod 3 channels after the last triplet are not rotated.
 *   - R_d = Yaw(w_d x) Roll(w_d y) acting on the column vector: the roll
 *     (row, about the first channel's axis) is applied first, then the yaw
 *     (column, about the third channel's axis). The two generators do not
 *     commute, so logits are not a function of the position difference
 *     alone (not strictly relative).
 *   - One frequency per triplet, shared by both axes, every head and every
 *     layer: w_d = base^(-d/T), base = 100 (pe.theta > 0 overrides it, as
 *     for the RoPE kinds).
 *   - Positions per axis of g patches: linspace(-pi g/g0, pi g/g0, g),
 *     computed like torch.linspace (from the start for the first half,
 *     from the end for the second, so both ends are exact; g == 1 gives the
 *     start). x uses the column over grid_w / grid_w0, y the row over
 *     grid_h / grid_h0. Both ends lie on the circle's seam: at the training
 *     grid the first and last patch of an axis get the same angle in
 *     triplet 0 (w_0 = 1), as the linspace reading implies.
 *   - The CLS token is not rotated.
 *   - learned = true: freqs (2, depth, H, T), [0] yaw/x, [1] roll/y, one
 *     pair per (layer, head, triplet), initialised to w_d, no weight decay.
 *
 * Rotations depend only on positions and frequencies: fixed, they are
 * computed once in create; learned, once per pass in prepare. The attention
 * rotates one (image, head) at a time. The learned backward collects dL/da
 * and dL/db per (chunk of the batch, head, token, triplet), summed over q
 * and k; the reduce after each layer sums the chunks into (layer, head,
 * token, triplet), and finish turns those into the frequency gradient:
 * a = fx x, b = fy y, so dfx += x da and dfy += y db.
 */
#include "vitrain/pe.h"

#include "raw_rows.h"
#include "rotate3.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct SphState {
    int triplets;          /* T = Dh / 3 */
    int tokens;            /* N = 1 + patches */
    int tables;            /* 1 fixed, depth learned */
    float *pos_x, *pos_y;  /* (N) angle positions; 0 for CLS */
    int dim;               /* Dh */
    float *rot;            /* (tables, H, N, T, 9) row-major R_d */
    float *band;           /* (tables, H, N, 2, BAND, Dh): R and R^T as bands (rotate3.h) */
    float *dangle;         /* learned: (depth, H, N, T, 2) = (da, db) */
} SphState;

static VtCode spherical_check(const PeOptions *o, const PeGeometry *g, VtError *err)
{
    if (g->head_dim < 3)
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "pe.type %s needs a head dimension of at least 3 (one channel triplet), "
                       "model.dim / model.heads is %d",
                       o->type, g->head_dim);
    return VT_OK;
}

/* Point i of torch.linspace(-pi g/g0, pi g/g0, g), in double. */
static double linspace_at(int i, int g, int g0)
{
    const double end = M_PI * g / g0, start = -end;
    if (g == 1)
        return start;
    const double step = (end - start) / (g - 1);
    return i < g / 2 ? start + step * i : end - step * (g - 1 - i);
}

/* w_d = base^(-d/T). */
static double frequency(const Pe *pe, int d, int triplets)
{
    const double base = pe->opt.theta > 0.0f ? pe->opt.theta : 100.0;
    return pow(base, -(double)d / triplets);
}

static SphState *state_new(Pe *pe, int tables)
{
    SphState *st = vt_xcalloc(1, sizeof *st);
    const PeGeometry *g = &pe->geo;
    st->triplets = g->head_dim / 3;
    st->tokens = 1 + g->grid_h * g->grid_w;
    st->tables = tables;
    st->pos_x = vt_xcalloc((size_t)st->tokens, sizeof(float));
    st->pos_y = vt_xcalloc((size_t)st->tokens, sizeof(float));
    for (int n = 1; n < st->tokens; n++) {
        st->pos_x[n] = (float)linspace_at(pe_col(g, n), g->grid_w, g->grid_w0);
        st->pos_y[n] = (float)linspace_at(pe_row(g, n), g->grid_h, g->grid_h0);
    }
    const size_t entries = (size_t)tables * g->heads * st->tokens * st->triplets;
    st->rot = vt_xmalloc(entries * ROT3 * sizeof(float));
    st->dim = g->head_dim;
    st->band = vt_xmalloc((size_t)tables * g->heads * st->tokens * 2 * BAND * st->dim *
                          sizeof(float));
    pe->state = st;
    return st;
}

static void spherical_destroy(Pe *pe)
{
    SphState *st = pe->state;
    if (!st)
        return;
    free(st->pos_x);
    free(st->pos_y);
    free(st->rot);
    free(st->band);
    free(st->dangle);
    free(st);
}

/* Index of (table, head, token, triplet 0) in units of triplets. */
static size_t entry_at(const SphState *st, int heads, int table, int h, int n)
{
    return (((size_t)table * heads + h) * st->tokens + n) * st->triplets;
}

/* The bands of (table, head, token): R's, then R^T's. */
static float *band_at(const SphState *st, int heads, int table, int h, int n)
{
    return st->band + (((size_t)table * heads + h) * st->tokens + n) * 2 * BAND * st->dim;
}

/* Every token's R_d for one (table, head) from its frequencies fx, fy (T),
 * and its bands. CLS has position 0, so it gets the identity. */
static void fill_head(SphState *st, int heads, int table, int h, const float *fx, const float *fy)
{
    for (int n = 0; n < st->tokens; n++) {
        float *R = st->rot + entry_at(st, heads, table, h, n) * ROT3;
        for (int d = 0; d < st->triplets; d++)
            rotate3_matrix(R + (size_t)ROT3 * d, fx[d] * st->pos_x[n], fy[d] * st->pos_y[n]);
        float *band = band_at(st, heads, table, h, n);
        rotate3_band(band, R, st->triplets, st->dim, 0);
        rotate3_band(band + BAND * st->dim, R, st->triplets, st->dim, 1);
    }
}

static int table_of(const SphState *st, int layer)
{
    return st->tables == 1 ? 0 : layer;
}

/* Each row of image b, head h rotated from the raw q or k (channels past
 * the last triplet stay so); token 0 (CLS) is copied only. */
static void spherical_forward_head(const Pe *pe, int layer, int b, int h, const PeHeadRows *rows,
                                   const AttnDims *d)
{
    const SphState *st = pe->state;
    const int table = table_of(st, layer);
    for (int n = 0; n < d->N; n++) {
        const size_t raw = raw_at(rows->raw_stride, b, n, h, d);
        const float *band = band_at(st, d->H, table, h, n);
        for (int i = 0; i < rows->count; i++) {
            float *v = rows->tile[i] + (size_t)n * d->Dh;
            if (n == 0)
                memcpy(v, rows->raw[i] + raw, (size_t)d->Dh * sizeof(float));
            else
                rotate3_band_apply(v, rows->raw[i] + raw, band, d->Dh);
        }
    }
}

/* The tiles (N, Dh) of image b, head h back through the rotation into the
 * raw rows; learned, adds (dL/da, dL/db) per (token, triplet) to head_grad. */
static void spherical_backward_head(const Pe *pe, int layer, int b, int h, const PeHeadRows *rows,
                                    float *head_grad, const AttnDims *d)
{
    const SphState *st = pe->state;
    const int table = table_of(st, layer);
    for (int n = 0; n < d->N; n++) {
        const size_t raw = raw_at(rows->raw_stride, b, n, h, d);
        const float *band_t = band_at(st, d->H, table, h, n) + BAND * st->dim;
        const float *R = st->rot + entry_at(st, d->H, table, h, n) * ROT3;
        for (int i = 0; i < rows->count; i++) {
            const float *g = rows->tile[i] + (size_t)n * d->Dh;
            if (n == 0) {
                memcpy(rows->raw_grad[i] + raw, g, (size_t)d->Dh * sizeof(float));
                continue;
            }
            if (head_grad)
                rotate_triplets_angle_grad(head_grad + (size_t)n * st->triplets * 2, g,
                                           rows->raw[i] + raw, R, st->triplets);
            rotate3_band_apply(rows->raw_grad[i] + raw, g, band_t, d->Dh);
        }
    }
}

static int spherical_head_grad_floats(const Pe *pe)
{
    const SphState *st = pe->state;
    return st->dangle ? st->tokens * st->triplets * 2 : 0;
}

/* dangle of the layer += the parts of every chunk of the batch, in order,
 * one (head, token) per iteration: the same sums whatever the threads. */
static void spherical_backward_reduce(Pe *pe, int layer, const float *head_grads,
                                      int chunks, const AttnDims *d)
{
    SphState *st = pe->state;
    VT_ASSERT(d->N == st->tokens);
#pragma omp parallel for schedule(static)
    for (int hn = 0; hn < d->H * (d->N - 1); hn++) {
        const int h = hn / (d->N - 1), n = 1 + hn % (d->N - 1);
        add_chunk_parts(st->dangle + entry_at(st, d->H, layer, h, n) * 2, head_grads, chunks, h,
                        n, st->triplets * 2, d);
    }
}

/* ---- fixed ----------------------------------------------------------------- */

/* The fixed frequencies w (T) as the float the tables are built from. */
static float *fixed_frequencies(const Pe *pe, int triplets)
{
    float *w = vt_xmalloc((size_t)triplets * sizeof(float));
    for (int d = 0; d < triplets; d++)
        w[d] = (float)frequency(pe, d, triplets);
    return w;
}

static void fixed_create(Pe *pe)
{
    SphState *st = state_new(pe, 1);
    float *w = fixed_frequencies(pe, st->triplets);
    for (int h = 0; h < pe->geo.heads; h++)
        fill_head(st, pe->geo.heads, 0, h, w, w);
    free(w);
}

/* ---- learned --------------------------------------------------------------- */

static void learned_create(Pe *pe, TensorList *params)
{
    const PeGeometry *g = &pe->geo;
    SphState *st = state_new(pe, g->depth);
    st->dangle = vt_xcalloc((size_t)g->depth * g->heads * st->tokens * st->triplets * 2,
                            sizeof(float));
    /* freqs (2, depth, H, T): [0] yaw (x, column), [1] roll (y, row). */
    const int64_t shape[4] = {2, g->depth, g->heads, st->triplets};
    pe->param[0] = tensor_list_add(params, shape, 4, VT_TENSOR_NO_DECAY, INIT_ZEROS, 0, "freqs");
}

static void spherical_create(Pe *pe, TensorList *params)
{
    if (pe->opt.learned)
        learned_create(pe, params);
    else
        fixed_create(pe);
}

static void learned_init(Pe *pe, float *params, uint64_t seed)
{
    (void)seed; /* deterministic: the fixed frequencies */
    const SphState *st = pe->state;
    const size_t heads = (size_t)pe->geo.depth * pe->geo.heads;
    float *f = pe_tensor(pe, params, pe->param[0]);
    float *w = fixed_frequencies(pe, st->triplets);
    /* Both planes (x and y), every (layer, head): the same w. */
    for (size_t lh = 0; lh < 2 * heads; lh++)
        memcpy(f + lh * st->triplets, w, (size_t)st->triplets * sizeof(float));
    free(w);
}

static void learned_prepare(Pe *pe, const float *params, const PeStep *step)
{
    (void)step;
    SphState *st = pe->state;
    const PeGeometry *g = &pe->geo;
    const size_t plane = (size_t)g->depth * g->heads * st->triplets;
    const float *fx = pe_tensor(pe, params, pe->param[0]), *fy = fx + plane;
#pragma omp parallel for schedule(static)
    for (int lh = 0; lh < g->depth * g->heads; lh++)
        fill_head(st, g->heads, lh / g->heads, lh % g->heads, fx + (size_t)lh * st->triplets,
                  fy + (size_t)lh * st->triplets);
    memset(st->dangle, 0, plane * st->tokens * 2 * sizeof(float));
}

static void learned_finish(Pe *pe, const float *params, float *grads)
{
    (void)params; /* the angles are linear in the frequencies */
    const SphState *st = pe->state;
    const PeGeometry *g = &pe->geo;
    const int T = st->triplets;
    const size_t plane = (size_t)g->depth * g->heads * T;
    float *dfx = pe_tensor(pe, grads, pe->param[0]), *dfy = dfx + plane;
    /* a = fx x and b = fy y: sum the angle gradients over tokens, weighted
     * by the token's position. One (layer, head) per writer. */
#pragma omp parallel for schedule(static)
    for (int lh = 0; lh < g->depth * g->heads; lh++)
        for (int n = 1; n < st->tokens; n++) {
            const float *dab =
                st->dangle + entry_at(st, g->heads, lh / g->heads, lh % g->heads, n) * 2;
            for (int d = 0; d < T; d++) {
                dfx[(size_t)lh * T + d] += st->pos_x[n] * dab[2 * d];
                dfy[(size_t)lh * T + d] += st->pos_y[n] * dab[2 * d + 1];
            }
        }
}

/* Fixed and learned share one kind (pe.learned picks); the learned-only
 * hooks return early when there is no parameter. */
static void spherical_init(Pe *pe, float *params, uint64_t seed)
{
    if (pe->opt.learned)
        learned_init(pe, params, seed);
}

static void spherical_prepare(Pe *pe, const float *params, const PeStep *step)
{
    if (pe->opt.learned)
        learned_prepare(pe, params, step);
}

static void spherical_finish(Pe *pe, const float *params, float *grads)
{
    if (pe->opt.learned)
        learned_finish(pe, params, grads);
}

const PeKind PE_SPHERICAL = {
    .name = "spherical", .reads = PE_READS_THETA | PE_READS_LEARNED, .check = spherical_check, .create = spherical_create,
    .init = spherical_init, .prepare = spherical_prepare,
    .forward_head = spherical_forward_head, .backward_head = spherical_backward_head,
    .backward_reduce = spherical_backward_reduce,
    .head_grad_floats = spherical_head_grad_floats, .finish = spherical_finish,
    .destroy = spherical_destroy,
};
