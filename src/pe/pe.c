/*
 * pe.c - the registry of positional encodings and the two that rotate
 * nothing: none and the learned absolute pos_embed (DESIGN §4.1).
 */
#include "vitrain/pe.h"
#include "vitrain/profile.h"

#include "raw_rows.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void absolute_create(Pe *pe, TensorList *params)
{
    /* (1, 1+N, D) at the current grid, trunc-normal std 0.02, no weight decay. */
    const int64_t shape[3] = {1, 1 + (int64_t)pe->geo.grid_h * pe->geo.grid_w,
                              (int64_t)pe->geo.heads * pe->geo.head_dim};
    pe->param[0] = tensor_list_add(params, shape, 3, VT_TENSOR_NO_DECAY, INIT_TRUNC_NORMAL, 0.02f,
                                   "pos_embed");
}

static const PeKind PE_NONE_KIND = {.name = "none"};
static const PeKind PE_ABSOLUTE_KIND = {.name = "absolute", .additive = true,
                                        .create = absolute_create};

/* One line per encoding, defined in its own file under src/pe/. */
extern const PeKind PE_ROPE_AXIAL, PE_ROPE_MIXED, PE_SPHERICAL, PE_COMROPE_AP, PE_COMROPE_LD,
    PE_LIERE;

static const PeKind *const KINDS[] = {
    &PE_NONE_KIND,  &PE_ABSOLUTE_KIND, &PE_ROPE_AXIAL, &PE_ROPE_MIXED,
    &PE_SPHERICAL,  &PE_COMROPE_AP,    &PE_COMROPE_LD, &PE_LIERE,
};
enum { KIND_COUNT = sizeof KINDS / sizeof KINDS[0] };

const PeKind *pe_find(const char *name)
{
    for (int i = 0; i < KIND_COUNT; i++)
        if (strcmp(KINDS[i]->name, name) == 0)
            return KINDS[i];
    return NULL;
}

const char *pe_names(void)
{
    static char names[256];
    if (!names[0])
        for (int i = 0; i < KIND_COUNT; i++) {
            strcat(names, KINDS[i]->name);
            if (i + 1 < KIND_COUNT)
                strcat(names, ", ");
        }
    return names;
}

PeOptions pe_options(const char *type)
{
    PeOptions o = {.theta = 0.0f, .block_size = 8, .init_std = 0.5f};
    strncpy(o.type, type, sizeof o.type - 1);
    return o;
}

int pe_ignored_options(const PeOptions *o, char *out, size_t size)
{
    const PeKind *kind = pe_find(o->type);
    const PeOptions d = pe_options(o->type);
    const struct {
        unsigned bit;
        const char *name;
        bool changed;
    } options[] = {
        {PE_READS_THETA, "theta", o->theta != d.theta},
        {PE_READS_BLOCK_SIZE, "block_size", o->block_size != d.block_size},
        {PE_READS_INIT_STD, "init_std", o->init_std != d.init_std},
        {PE_READS_SIGMA, "sigma", o->sigma != d.sigma},
        {PE_READS_LEARNED, "learned", o->learned != d.learned},
        {PE_READS_SHARE_LAYERS, "share_layers", o->share_layers != d.share_layers},
        {PE_READS_SHARE_HEADS, "share_heads", o->share_heads != d.share_heads},
    };
    VT_ASSERT(kind && size > 0);
    int count = 0;
    out[0] = '\0';
    for (size_t i = 0; i < sizeof options / sizeof options[0]; i++)
        if (options[i].changed && !(kind->reads & options[i].bit)) {
            const size_t used = strlen(out);
            snprintf(out + used, size - used, "%spe.%s", count ? ", " : "", options[i].name);
            count++;
        }
    return count;
}

/* ---- whole tensors from either form -------------------------------------- */

static int head_grad_floats(const Pe *pe)
{
    return pe->kind->head_grad_floats ? pe->kind->head_grad_floats(pe) : 0;
}

static bool rotates_by_heads(const Pe *pe)
{
    return pe->kind->forward_head && (!pe->kind->by_heads || pe->kind->by_heads(pe));
}

/* For a kind that turns whole tensors in place: the rows of x_raw copied,
 * (B, N, D), and rotated. */
static float *rotated_rows(const Pe *pe, int layer, const float *x_raw, int raw_stride,
                           const AttnDims *d)
{
    const int D = d->H * d->Dh;
    float *rows = vt_xmalloc((size_t)d->B * d->N * D * sizeof(float));
    copy_rows(rows, D, x_raw, raw_stride, d);
    pe->kind->forward(pe, layer, rows, D, d);
    return rows;
}

void pe_forward(const Pe *pe, int layer, float *x, const float *x_raw, int raw_stride,
                const AttnDims *d)
{
    if (!rotates_by_heads(pe)) {
        float *rows = rotated_rows(pe, layer, x_raw, raw_stride, d);
        rows_to_head_major(x, rows, d->H * d->Dh, d);
        free(rows);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < d->B * d->H; bh++) {
        const int b = bh / d->H, h = bh % d->H;
        const PeHeadRows rows = {1, {x + head_at(b, h, 0, d)}, {x_raw}, {NULL}, raw_stride};
        pe->kind->forward_head(pe, layer, b, h, &rows, d);
    }
}

/* The per-head form over whole tensors: units of (chunk, head) as the
 * attention runs them, each chunk's images in order. */
static void backward_by_heads(Pe *pe, int layer, float *dx_raw, float *dx, const float *x_raw,
                              int raw_stride, const AttnDims *d)
{
    const int per_part = head_grad_floats(pe), chunks = attention_grad_chunks(d->B);
    float *parts = per_part ? vt_xcalloc((size_t)chunks * d->H * per_part, sizeof(float)) : NULL;
#pragma omp parallel for schedule(static)
    for (int unit = 0; unit < chunks * d->H; unit++) {
        const int h = unit % d->H;
        int first, end;
        attention_grad_chunk(d->B, unit / d->H, &first, &end);
        for (int b = first; b < end; b++) {
            const PeHeadRows rows = {1, {dx + head_at(b, h, 0, d)}, {x_raw}, {dx_raw}, raw_stride};
            pe->kind->backward_head(pe, layer, b, h, &rows,
                                    parts ? parts + (size_t)unit * per_part : NULL, d);
        }
    }
    if (parts)
        pe->kind->backward_reduce(pe, layer, parts, chunks, d);
    free(parts);
}

void pe_backward(Pe *pe, int layer, float *dx_raw, float *dx, const float *x_raw, int raw_stride,
                 const AttnDims *d)
{
    if (rotates_by_heads(pe)) {
        backward_by_heads(pe, layer, dx_raw, dx, x_raw, raw_stride, d);
        return;
    }
    const int D = d->H * d->Dh;
    float *y = rotated_rows(pe, layer, x_raw, raw_stride, d);
    float *rows = vt_xmalloc((size_t)d->B * d->N * D * sizeof(float));
    head_major_to_rows(rows, dx, D, d);
    pe->kind->backward(pe, layer, rows, y, D, d);
    copy_rows(dx_raw, raw_stride, rows, D, d);
    free(rows);
    free(y);
}

/* ---- the hook the attention calls ------------------------------------------ */

static void hook_forward(const QkRotation *self, int layer, float *x, int stride,
                         const AttnDims *d)
{
    const Pe *pe = self->ctx;
    prof_push(PROF_ENCODING);
    pe->kind->forward(pe, layer, x, stride, d);
    prof_pop();
}

static void hook_backward(const QkRotation *self, int layer, float *dx, const float *y,
                          int stride, const AttnDims *d)
{
    Pe *pe = self->ctx;
    prof_push(PROF_ENCODING);
    pe->kind->backward(pe, layer, dx, y, stride, d);
    prof_pop();
}

/* Per head (inside the attention's parallel loop: no profile phases). */
static void hook_forward_head(const QkRotation *self, int layer, int b, int h, float *q, float *k,
                              const float *q_raw, const float *k_raw, int raw_stride,
                              const AttnDims *d)
{
    const Pe *pe = self->ctx;
    const PeHeadRows rows = {2, {q, k}, {q_raw, k_raw}, {NULL, NULL}, raw_stride};
    pe->kind->forward_head(pe, layer, b, h, &rows, d);
}

/* q and k add into the same part. */
static void hook_backward_head(const QkRotation *self, int layer, int b, int h, float *dq_raw,
                               float *dk_raw, float *dq, float *dk, const float *q_raw,
                               const float *k_raw, int raw_stride, float *head_grad,
                               const AttnDims *d)
{
    const Pe *pe = self->ctx;
    const PeHeadRows rows = {2, {dq, dk}, {q_raw, k_raw}, {dq_raw, dk_raw}, raw_stride};
    pe->kind->backward_head(pe, layer, b, h, &rows, head_grad, d);
}

static void hook_backward_reduce(const QkRotation *self, int layer, const float *head_grads,
                                 int chunks, const AttnDims *d)
{
    Pe *pe = self->ctx;
    prof_push(PROF_ENCODING);
    pe->kind->backward_reduce(pe, layer, head_grads, chunks, d);
    prof_pop();
}

/* The hook for the form the kind uses; called once the kind's state
 * exists. */
static QkRotation hook_of(Pe *pe)
{
    if (!rotates_by_heads(pe))
        return (QkRotation){.forward = hook_forward, .backward = hook_backward, .ctx = pe};
    VT_ASSERT(pe->kind->backward_head); /* the per-head forms come in pairs */
    QkRotation hook = {.forward_head = hook_forward_head, .backward_head = hook_backward_head,
                       .ctx = pe};
    hook.grad_floats = head_grad_floats(pe);
    if (hook.grad_floats)
        hook.backward_reduce = hook_backward_reduce;
    return hook;
}

VtCode pe_create(Pe *pe, const PeOptions *o, const PeGeometry *g, TensorList *params,
                 VtError *err)
{
    memset(pe, 0, sizeof *pe);
    for (int i = 0; i < PE_MAX_PARAMS; i++)
        pe->param[i] = -1;
    pe->kind = pe_find(o->type);
    if (!pe->kind)
        return vt_fail(err, VT_ERR_ARGUMENT, "pe.type: unknown encoding '%s' (expected one of %s)",
                       o->type, pe_names());
    pe->opt = *o;
    pe->geo = *g;
    pe->list = params;
    if (pe->kind->check) {
        VtCode code = pe->kind->check(o, g, err);
        if (code)
            return code;
    }
    if (pe->kind->create)
        pe->kind->create(pe, params);
    pe->hook = hook_of(pe);
    return VT_OK;
}

void pe_destroy(Pe *pe)
{
    if (pe->kind && pe->kind->destroy)
        pe->kind->destroy(pe);
    pe->state = NULL;
}

const QkRotation *pe_rotation(const Pe *pe)
{
    return pe->kind && (pe->kind->forward || pe->kind->forward_head) ? &pe->hook : NULL;
}
