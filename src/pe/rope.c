/*
 * rope.c - RoPE for vision (Heo et al. 2024): rope_axial (fixed
 * frequencies, DESIGN §4.2) and rope_mixed (learned frequencies mixing both
 * axes, DESIGN §4.3). Both rotate interleaved channel pairs by an angle
 * that is linear in the patch's integer (col, row) = (x, y); the CLS token
 * is not rotated. At another resolution the grid simply extends.
 *
 * prepare computes cos/sin of every (layer, head, token, pair) angle once
 * per pass; the batch shares them. The attention rotates one (image,
 * head) at a time. The backward of rope_mixed collects dL/d(angle) per
 * (chunk of the batch, head, token, pair), summed over q and k; the reduce
 * after each layer sums the chunks into (layer, head, token, pair), and
 * finish turns that into the frequency gradient:
 * angle = fx x + fy y, so dfx += x dangle and dfy += y dangle.
 */
#include "vitrain/pe.h"
#include "vitrain/rng.h"

#include "raw_rows.h"
#include "rotate.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct RopeState {
    int pairs;             /* Dh / 2 */
    int tokens;            /* N = 1 + patches */
    int tables;            /* angle tables: 1 for axial, depth for mixed */
    float *cos_t, *sin_t;  /* (tables, H, N, pairs) */
    float *dangle;         /* mixed: (depth, H, N, pairs) */
} RopeState;

/* Default frequency bases of the paper's code: 100 axial, 10 mixed. */
static float base_of(const Pe *pe, float paper_default)
{
    return pe->opt.theta > 0.0f ? pe->opt.theta : paper_default;
}

static VtCode rope_check(const PeOptions *o, const PeGeometry *g, VtError *err)
{
    if (g->head_dim % 4 != 0)
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "pe.type %s needs a head dimension divisible by 4 (one half of the pairs "
                       "per axis), model.dim / model.heads is %d",
                       o->type, g->head_dim);
    return VT_OK;
}

static RopeState *state_new(Pe *pe, int tables, bool learned)
{
    RopeState *st = vt_xcalloc(1, sizeof *st);
    const PeGeometry *g = &pe->geo;
    st->pairs = g->head_dim / 2;
    st->tokens = 1 + g->grid_h * g->grid_w;
    st->tables = tables;
    const size_t n = (size_t)tables * g->heads * st->tokens * st->pairs;
    st->cos_t = vt_xmalloc(n * sizeof(float));
    st->sin_t = vt_xmalloc(n * sizeof(float));
    if (learned)
        st->dangle = vt_xcalloc((size_t)g->depth * g->heads * st->tokens * st->pairs,
                                sizeof(float));
    pe->state = st;
    return st;
}

static void rope_destroy(Pe *pe)
{
    RopeState *st = pe->state;
    if (!st)
        return;
    free(st->cos_t);
    free(st->sin_t);
    free(st->dangle);
    free(st);
}

/* Offset of (table, head, token) in the (tables, H, N, pairs) arrays. */
static size_t table_at(const RopeState *st, int heads, int table, int h, int n)
{
    return (((size_t)table * heads + h) * st->tokens + n) * st->pairs;
}

static void set_angle(RopeState *st, size_t at, int j, float angle)
{
    st->cos_t[at + j] = cosf(angle);
    st->sin_t[at + j] = sinf(angle);
}

/* ---- the shared pair rotation -------------------------------------------- */

static int table_of(const RopeState *st, int layer)
{
    return st->tables == 1 ? 0 : layer;
}

/* Each row of image b, head h copied from the raw q or k, then rotated in
 * place while it is in L1; token 0 (CLS) is copied only. */
static void rope_forward_head(const Pe *pe, int layer, int b, int h, const PeHeadRows *rows,
                              const AttnDims *d)
{
    const RopeState *st = pe->state;
    const int table = table_of(st, layer);
    const size_t row = (size_t)d->Dh * sizeof(float);
    for (int n = 0; n < d->N; n++) {
        const size_t at = table_at(st, d->H, table, h, n);
        for (int i = 0; i < rows->count; i++) {
            float *v = rows->tile[i] + (size_t)n * d->Dh;
            memcpy(v, rows->raw[i] + raw_at(rows->raw_stride, b, n, h, d), row);
            if (n > 0)
                rotate_pairs(v, st->cos_t + at, st->sin_t + at, st->pairs);
        }
    }
}

/* The tiles (N, Dh) of image b, head h back through the rotation into the
 * raw rows; rope_mixed adds dL/d(angle) per (token, pair) to head_grad. */
static void rope_backward_head(const Pe *pe, int layer, int b, int h, const PeHeadRows *rows,
                               float *head_grad, const AttnDims *d)
{
    const RopeState *st = pe->state;
    const int table = table_of(st, layer);
    const size_t row = (size_t)d->Dh * sizeof(float);
    for (int n = 0; n < d->N; n++) {
        const size_t at = table_at(st, d->H, table, h, n);
        const size_t raw = raw_at(rows->raw_stride, b, n, h, d);
        for (int i = 0; i < rows->count; i++) {
            float *g = rows->tile[i] + (size_t)n * d->Dh;
            if (n > 0) {
                if (head_grad)
                    rotate_pairs_angle_grad(head_grad + (size_t)n * st->pairs, g,
                                            rows->raw[i] + raw, st->cos_t + at, st->sin_t + at,
                                            st->pairs);
                rotate_pairs_transposed(g, st->cos_t + at, st->sin_t + at, st->pairs);
            }
            memcpy(rows->raw_grad[i] + raw, g, row);
        }
    }
}

/* ---- rope_axial ------------------------------------------------------------ */

static void axial_create(Pe *pe, TensorList *params)
{
    (void)params;
    RopeState *st = state_new(pe, 1, false);
    const PeGeometry *g = &pe->geo;
    const int quarter = g->head_dim / 4;
    const float base = base_of(pe, 100.0f);
    /* Fixed: the table is filled once. Pairs j < Dh/4 turn with the column,
     * the others with the row, at w_k = base^(-4k/Dh). */
    for (int h = 0; h < g->heads; h++)
        for (int n = 0; n < st->tokens; n++) {
            size_t at = table_at(st, g->heads, 0, h, n);
            for (int j = 0; j < st->pairs; j++) {
                int k = j % quarter;
                float w = powf(base, -4.0f * (float)k / (float)g->head_dim);
                float pos = n == 0 ? 0.0f : (float)(j < quarter ? pe_col(g, n) : pe_row(g, n));
                set_angle(st, at, j, w * pos);
            }
        }
}

const PeKind PE_ROPE_AXIAL = {
    .name = "rope_axial", .reads = PE_READS_THETA, .check = rope_check, .create = axial_create,
    .forward_head = rope_forward_head, .backward_head = rope_backward_head,
    .destroy = rope_destroy,
};

/* ---- rope_mixed ------------------------------------------------------------ */

static void mixed_create(Pe *pe, TensorList *params)
{
    const PeGeometry *g = &pe->geo;
    state_new(pe, g->depth, true);
    /* freqs (2, depth, H*Dh/2): [0] the x (column) frequencies, [1] the y (row). */
    const int64_t shape[3] = {2, g->depth, (int64_t)g->heads * g->head_dim / 2};
    pe->param[0] = tensor_list_add(params, shape, 3, VT_TENSOR_NO_DECAY, INIT_ZEROS, 0, "freqs");
}

static void mixed_init(Pe *pe, float *params, uint64_t seed)
{
    const PeGeometry *g = &pe->geo;
    const int quarter = g->head_dim / 4, per_head = g->head_dim / 2;
    const size_t plane = (size_t)g->depth * g->heads * per_head;
    const float base = base_of(pe, 10.0f);
    float *fx = pe_tensor(pe, params, pe->param[0]), *fy = fx + plane;
    for (int l = 0; l < g->depth; l++)
        for (int h = 0; h < g->heads; h++) {
            /* One random direction per (layer, head); the second half of the
             * pairs turns a quarter turn further. */
            Rng rng = rng_stream(seed, RNG_INIT, 0x66726571 /* "freq" */, (uint64_t)(l * g->heads + h));
            const double a = 2.0 * M_PI * rng_uniform_double(&rng);
            for (int k = 0; k < quarter; k++) {
                const double m = pow(base, -4.0 * k / g->head_dim);
                size_t at = ((size_t)l * g->heads + h) * per_head;
                fx[at + k] = (float)(m * cos(a));
                fy[at + k] = (float)(m * sin(a));
                fx[at + quarter + k] = (float)(m * cos(a + M_PI / 2));
                fy[at + quarter + k] = (float)(m * sin(a + M_PI / 2));
            }
        }
}

static void mixed_prepare(Pe *pe, const float *params, const PeStep *step)
{
    (void)step;
    RopeState *st = pe->state;
    const PeGeometry *g = &pe->geo;
    const int per_head = g->head_dim / 2;
    const size_t plane = (size_t)g->depth * g->heads * per_head;
    const float *fx = pe_tensor(pe, params, pe->param[0]), *fy = fx + plane;
#pragma omp parallel for schedule(static)
    for (int lh = 0; lh < g->depth * g->heads; lh++) {
        const int l = lh / g->heads, h = lh % g->heads;
        for (int n = 0; n < st->tokens; n++) {
            size_t at = table_at(st, g->heads, l, h, n);
            const float x = n ? (float)pe_col(g, n) : 0.0f, y = n ? (float)pe_row(g, n) : 0.0f;
            for (int j = 0; j < per_head; j++) {
                size_t f = (size_t)lh * per_head + j;
                set_angle(st, at, j, fx[f] * x + fy[f] * y);
            }
        }
    }
    memset(st->dangle, 0, plane * st->tokens * sizeof(float));
}

static int mixed_head_grad_floats(const Pe *pe)
{
    const RopeState *st = pe->state;
    return st->tokens * st->pairs;
}

/* dangle of the layer += the parts of every chunk of the batch, in order,
 * one (head, token) per iteration: the same sums whatever the threads. */
static void mixed_backward_reduce(Pe *pe, int layer, const float *head_grads, int chunks,
                                   const AttnDims *d)
{
    RopeState *st = pe->state;
    VT_ASSERT(d->N == st->tokens);
#pragma omp parallel for schedule(static)
    for (int hn = 0; hn < d->H * (d->N - 1); hn++) {
        const int h = hn / (d->N - 1), n = 1 + hn % (d->N - 1);
        add_chunk_parts(st->dangle + table_at(st, d->H, layer, h, n), head_grads, chunks, h, n,
                        st->pairs, d);
    }
}

static void mixed_finish(Pe *pe, const float *params, float *grads)
{
    (void)params; /* the angle is linear in the frequencies */
    const RopeState *st = pe->state;
    const PeGeometry *g = &pe->geo;
    const int per_head = g->head_dim / 2;
    const size_t plane = (size_t)g->depth * g->heads * per_head;
    float *dfx = pe_tensor(pe, grads, pe->param[0]), *dfy = dfx + plane;
    /* angle = fx x + fy y: sum the angle gradients over tokens, weighted. */
#pragma omp parallel for schedule(static)
    for (int lh = 0; lh < g->depth * g->heads; lh++)
        for (int n = 1; n < st->tokens; n++) {
            const float *da = st->dangle + table_at(st, g->heads, lh / g->heads, lh % g->heads, n);
            const float x = (float)pe_col(g, n), y = (float)pe_row(g, n);
            for (int j = 0; j < per_head; j++) {
                dfx[(size_t)lh * per_head + j] += x * da[j];
                dfy[(size_t)lh * per_head + j] += y * da[j];
            }
        }
}

const PeKind PE_ROPE_MIXED = {
    .name = "rope_mixed", .reads = PE_READS_THETA, .check = rope_check, .create = mixed_create, .init = mixed_init,
    .prepare = mixed_prepare, .forward_head = rope_forward_head,
    .backward_head = rope_backward_head, .backward_reduce = mixed_backward_reduce,
    .head_grad_floats = mixed_head_grad_floats, .finish = mixed_finish, .destroy = rope_destroy,
};
