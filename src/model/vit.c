/*
 * vit.c - ViT memory planning, forward and backward (DESIGN §2).
 *
 * Block l maps the residual stream x_l to x_{l+1}:
 *   x_mid  = x_l   + drop_path(ls1 * proj(attn(qkv(norm1(x_l)))))
 *   x_l+1  = x_mid + drop_path(ls2 * fc2(gelu(fc1(norm2(x_mid)))))
 * The backward walks the same steps in reverse with one gradient buffer for
 * the stream: the identity path of each residual passes it through
 * untouched and each branch adds its contribution into it.
 *
 * Classifying from the CLS token, only the last block's CLS row reaches the
 * loss: past its attention (whose keys and values need every token) that
 * block runs on the B CLS rows alone (cls_only_last, vit.h), a twelfth of
 * a 12-block ViT's proj and MLP products.
 */
#include "vitrain/vit.h"
#include "vitrain/profile.h"

#include "vitrain/ops.h"
#include "vitrain/pe.h"

#include "vit_internal.h"

#include <stdarg.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

/* ---- memory planning ----------------------------------------------------- */

/* Activation buffers are registered by name, then bound to their pointers
 * once the arena exists. */
typedef struct ActPlan {
    TensorList *list;
    float ***slots;  /* (capacity) where each buffer's pointer goes */
    int *indices;    /* (capacity) its tensor in list */
    int count, capacity;
} ActPlan;

/* Room for the global buffers and every block's (VitBlockActs). */
static ActPlan *act_plan_new(TensorList *list, int depth)
{
    ActPlan *p = vt_xcalloc(1, sizeof *p);
    p->list = list;
    p->capacity = 64 + (depth + 1) * (int)(sizeof(VitBlockActs) / sizeof(float *) + 1);
    p->slots = vt_xcalloc((size_t)p->capacity, sizeof *p->slots);
    p->indices = vt_xcalloc((size_t)p->capacity, sizeof *p->indices);
    return p;
}

static void act_plan_free(ActPlan *p)
{
    free(p->slots);
    free(p->indices);
    free(p);
}

static void plan(ActPlan *p, float **slot, int64_t numel, const char *name_fmt, ...)
{
    VT_ASSERT(p->count < p->capacity);
    char name[VT_TENSOR_NAME_MAX];
    va_list args;
    va_start(args, name_fmt);
    vsnprintf(name, sizeof name, name_fmt, args);
    va_end(args);
    p->slots[p->count] = slot;
    p->indices[p->count] = tensor_list_add(p->list, &numel, 1, 0, INIT_ZEROS, 0, "%s", name);
    p->count++;
}

static void plan_block(ActPlan *p, VitBlockActs *a, int l, int64_t B, const Vit *m)
{
    const int64_t N = m->tokens, D = m->cfg.dim, H = m->cfg.heads, F = m->cfg.mlp_dim;
    const int64_t T = B * N;
    plan(p, &a->x_mid, T * D, "blocks.%d.x_mid", l);
    plan(p, &a->ln1_mean, T, "blocks.%d.norm1.mean", l);
    plan(p, &a->ln1_rstd, T, "blocks.%d.norm1.rstd", l);
    plan(p, &a->qkv, T * 3 * D, "blocks.%d.attn.qkv", l);
    /* With recompute_attention probs points at shared scratch
     * (bind_activations); the rotated q and k are the attention's scratch. */
    if (!m->cfg.recompute_attention)
        plan(p, &a->probs, B * H * N * N, "blocks.%d.attn.probs", l);
    plan(p, &a->ln2_mean, T, "blocks.%d.norm2.mean", l);
    plan(p, &a->ln2_rstd, T, "blocks.%d.norm2.rstd", l);
    plan(p, &a->fc1, T * F, "blocks.%d.mlp.fc1", l);
    if (m->blocks[l].ls1 >= 0) {
        plan(p, &a->proj, T * D, "blocks.%d.attn.proj", l);
        plan(p, &a->fc2, T * D, "blocks.%d.mlp.fc2", l);
    }
    plan(p, &a->drop1, B, "blocks.%d.drop1", l);
    plan(p, &a->drop2, B, "blocks.%d.drop2", l);
}

static void plan_grads(ActPlan *p, VitGradScratch *g, int64_t B, const Vit *m)
{
    const int64_t N = m->tokens, D = m->cfg.dim, F = m->cfg.mlp_dim;
    const int64_t T = B * N, K = m->cfg.num_classes;
    plan(p, &g->stream, T * D, "grad.stream");
    if (m->cfg.layer_scale_init > 0.0f)
        plan(p, &g->branch, T * D, "grad.branch");
    /* Through drop path the attention branch's gradient takes the
     * block's spent fc1 activation, and the MLP branch's takes normed
     * (residual_branch_backward): a buffer of its own only where fc1 is
     * smaller than the stream (an MLP ratio below 1). */
    if (m->cfg.drop_path > 0.0f && F < D)
        plan(p, &g->tmp, T * D, "grad.tmp");
    /* dL/d(fc1 output) overwrites fc1's saved output, and dL/dqkv takes
     * fc1's memory too once the MLP half is done: a buffer of its own only where
     * fc1 is smaller than qkv (an MLP ratio below 3). */
    if (F < 3 * D)
        plan(p, &g->qkv, T * 3 * D, "grad.qkv");
    if (m->cfg.pool == POOL_CLS)
        plan(p, &g->cls, B * D, "grad.last_block.cls");
    plan(p, &g->pooled, B * D, "grad.pooled");
    plan(p, &g->logits, B * K, "grad.logits");
}

/* The attention core's scratch, shared by every block: a per-head
 * rotation's tiles of q and k and of their gradients, and dP. (A
 * whole-tensor rotation turns q and k in place in the block's qkv.) */
static void plan_attention_scratch(ActPlan *p, Vit *m, int64_t B)
{
    AttnScratch *s = &m->attn;
    const AttnDims dims = {(int)B, m->tokens, m->cfg.heads, m->cfg.dim / m->cfg.heads};
    s->tiles = attention_scratch_tiles();
    const AttnScratchSizes size = attention_scratch_sizes(m->rotation, &dims, s->tiles);
    if (size.rotated) {
        plan(p, &s->q_rot, size.rotated, "attn.q_rot");
        plan(p, &s->k_rot, size.rotated, "attn.k_rot");
    }
    if (m->inference)
        return; /* the rest serves the backward */
    if (size.rotated) {
        plan(p, &s->dq_rot, size.rotated_grad, "grad.attn.dq_rot");
        plan(p, &s->dk_rot, size.rotated_grad, "grad.attn.dk_rot");
    }
    if (size.head_grads)
        plan(p, &s->head_grads, size.head_grads, "grad.attn.head_grads");
    plan(p, &s->dp_tiles, size.dp_tiles, "grad.attn.dp_tiles");
}

/* Buffers a forward pass needs from each block to the next: all of them,
 * kept for the backward; without a backward (m->inference), stream l+1
 * takes the memory of stream l-1 and every block the buffers of block 0
 * (bind_activations), since a block reads only its input stream and its
 * own buffers. */
static int planned_streams(const Vit *m)
{
    return m->inference ? VT_MIN(2, m->cfg.depth + 1) : m->cfg.depth + 1;
}

static int planned_blocks(const Vit *m)
{
    return m->inference ? VT_MIN(1, m->cfg.depth) : m->cfg.depth;
}

static ActPlan *plan_activations(Vit *m, int64_t B)
{
    const VitConfig *c = &m->cfg;
    const int64_t N = m->tokens, D = c->dim, T = B * N, Np = m->num_patches;
    const int64_t patch_len = (int64_t)c->channels * c->patch_size * c->patch_size;
    tensor_list_init(&m->act_list);
    ActPlan *p = act_plan_new(&m->act_list, c->depth);

    m->stream = vt_xcalloc((size_t)c->depth + 1, sizeof *m->stream);
    m->block_acts = vt_xcalloc((size_t)c->depth, sizeof *m->block_acts);
    plan(p, &m->cols, B * Np * patch_len, "patch_embed.cols");
    for (int l = 0; l < planned_streams(m); l++)
        plan(p, &m->stream[l], T * D, "stream.%d", l);
    for (int l = 0; l < planned_blocks(m); l++)
        plan_block(p, &m->block_acts[l], l, B, m);
    plan(p, &m->normed, T * D, "normed");
    plan_attention_scratch(p, m, B);
    /* With recompute_attention, one block's probabilities at a time. */
    if (c->recompute_attention)
        plan(p, &m->recomputed.probs, B * c->heads * N * N, "recomputed.attn.probs");
    plan(p, &m->hidden, VT_MIN(T, (int64_t)GELU_LINEAR_ROWS) * c->mlp_dim, "hidden");
    plan(p, &m->norm_mean, T, "norm.mean");
    plan(p, &m->norm_rstd, T, "norm.rstd");
    if (c->pool == POOL_CLS) {
        plan(p, &m->cls_in, B * D, "last_block.cls_in");
        plan(p, &m->cls_attn, B * D, "last_block.cls_attn");
    }
    plan(p, &m->pooled, B * D, "pooled");
    plan(p, &m->logits, B * c->num_classes, "logits");
    plan(p, &m->probs, B * c->num_classes, "probs");
    plan(p, &m->losses, B, "losses");
    if (!m->inference)
        plan_grads(p, &m->grad, B, m);
    return p;
}

/* Allocates the planned activations and binds every named pointer. */
static void bind_activations(Vit *m, ActPlan *p)
{
    arena_create(&m->acts, &m->act_list);
    for (int i = 0; i < p->count; i++)
        *p->slots[i] = arena_tensor(&m->acts, p->indices[i]);
    act_plan_free(p);
    for (int l = planned_streams(m); l <= m->cfg.depth; l++)
        m->stream[l] = m->stream[l % 2];
    for (int l = planned_blocks(m); l < m->cfg.depth; l++)
        m->block_acts[l] = m->block_acts[0];
    /* The patch embedding is copied into stream 0 before any LayerNorm
     * runs; gradient scratch of disjoint lifetimes shares memory
     * (VitGradScratch), and dL/d(a LayerNorm's output) takes normed: each
     * linear backward that writes it reads normed as its input first. */
    m->patches = m->normed;
    for (int l = 0; l < m->cfg.depth; l++) {
        VitBlockActs *a = &m->block_acts[l];
        a->attn = m->normed; /* free from the qkv linear to the proj linear */
        if (m->cfg.recompute_attention)
            a->probs = m->recomputed.probs;
    }
    VitGradScratch *g = &m->grad;
    g->ln = g->attn = g->patches = m->normed;
}

static double gib(size_t floats)
{
    return (double)floats * sizeof(float) / (1024.0 * 1024.0 * 1024.0);
}

/* Refuses a plan that cannot fit, before anything big is allocated: the
 * activations and the parameters, for training also their gradients and
 * the two AdamW moments. */
static VtCode check_memory(const Vit *m, VtError *err)
{
    const size_t params = m->param_list.total, acts = m->act_list.total;
    const int copies = m->inference ? 1 : 4;
    const size_t planned = (size_t)copies * params + acts;
    const uint64_t available = vt_memory_available();
    if (available == 0 || (double)planned * sizeof(float) <= (double)available)
        return VT_OK;
    return vt_fail(err, VT_ERR_NOMEM,
                   "%s this model needs %.2f GiB (%s %d x %.2f GiB, activations for batch %d "
                   "%.2f GiB) but %.2f GiB of memory is available; use a smaller model or "
                   "train.batch_size",
                   m->inference ? "evaluating" : "training", gib(planned),
                   m->inference ? "parameters" : "parameters, gradients and AdamW moments",
                   copies, gib(params), m->batch_cap, gib(acts),
                   (double)available / (1024.0 * 1024.0 * 1024.0));
}

/* The widest rows a backward op sums over for a parameter gradient: the
 * linear layers' outputs (3 D for qkv, F, the classes), LayerNorm's 2 D
 * and pos_embed's N D (ops_reserve). */
static void reserve_row_sums(const Vit *m)
{
    const VitConfig *c = &m->cfg;
    int64_t widest = VT_MAX(3 * (int64_t)c->dim, VT_MAX((int64_t)c->mlp_dim, c->num_classes));
    if (m->pos_embed >= 0)
        widest = VT_MAX(widest, (int64_t)m->tokens * c->dim);
    ops_reserve(widest);
}

static VtCode create(Vit *m, const VitConfig *cfg, int batch_cap, bool inference,
                     VtError *err)
{
    memset(m, 0, sizeof *m);
    m->inference = inference;
    VtCode code = vit_config_validate(cfg, err);
    if (code)
        return code;
    if (batch_cap <= 0)
        return vt_fail(err, VT_ERR_ARGUMENT, "batch size must be positive, got %d", batch_cap);
    m->cfg = *cfg;
    m->grid = cfg->img_size / cfg->patch_size;
    m->grid0 = (cfg->train_img_size > 0 ? cfg->train_img_size : cfg->img_size) / cfg->patch_size;
    m->num_patches = m->grid * m->grid;
    m->tokens = m->num_patches + 1;
    m->batch_cap = batch_cap;
    m->blocks = vt_xcalloc((size_t)cfg->depth, sizeof *m->blocks);
    code = vit_build_params(m, err);
    if (code) {
        vit_free(m);
        return code;
    }
    ActPlan *plan = plan_activations(m, batch_cap);
    code = check_memory(m, err);
    if (code) {
        act_plan_free(plan);
        vit_free(m);
        return code;
    }
    arena_create(&m->params, &m->param_list);
    if (!inference)
        arena_create(&m->grads, &m->param_list);
    bind_activations(m, plan);
    reserve_row_sums(m);
    m->cls_only_last = cfg->pool == POOL_CLS;
    return VT_OK;
}

VtCode vit_create(Vit *m, const VitConfig *cfg, int batch_cap, VtError *err)
{
    return create(m, cfg, batch_cap, false, err);
}

VtCode vit_create_inference(Vit *m, const VitConfig *cfg, int batch_cap, VtError *err)
{
    return create(m, cfg, batch_cap, true, err);
}

void vit_free(Vit *m)
{
    pe_destroy(&m->pe);
    arena_free(&m->params);
    arena_free(&m->grads);
    arena_free(&m->acts);
    tensor_list_free(&m->param_list);
    tensor_list_free(&m->act_list);
    free(m->blocks);
    free(m->stream);
    free(m->block_acts);
    memset(m, 0, sizeof *m);
}

void vit_transfer_params(Vit *dst, const Vit *src)
{
    for (int t = 0; t < dst->param_list.count; t++) {
        const TensorSpec *d = &dst->param_list.specs[t];
        int s = tensor_list_find(&src->param_list, d->name);
        VT_ASSERT(s >= 0);
        float *to = arena_tensor(&dst->params, t);
        const float *from = arena_tensor(&src->params, s);
        if (t == dst->pos_embed && dst->grid != src->grid) {
            /* The CLS slot is kept; the patch grid is resampled. */
            const int D = dst->cfg.dim;
            memcpy(to, from, (size_t)D * sizeof(float));
            pos_embed_resample(to + D, dst->grid, dst->grid, from + D, src->grid, src->grid, D);
        } else {
            VT_ASSERT(src->param_list.specs[s].numel == d->numel);
            memcpy(to, from, d->numel * sizeof(float));
        }
    }
}

size_t vit_param_count(const Vit *m)
{
    size_t count = 0;
    for (int t = 0; t < m->param_list.count; t++)
        count += m->param_list.specs[t].numel;
    return count;
}

size_t vit_memory_bytes(const Vit *m)
{
    return ((m->inference ? 1 : 2) * m->param_list.total + m->act_list.total) * sizeof(float);
}

/* ---- forward ------------------------------------------------------------- */

static float *param(const Vit *m, int index)
{
    return index >= 0 ? arena_tensor(&m->params, index) : NULL;
}

static float *grad(const Vit *m, int index)
{
    return index >= 0 ? arena_tensor(&m->grads, index) : NULL;
}

/* The linear layer that ends a residual branch and the residual add:
 * x_out = x_in + drop_path(gamma * (act(h) W^T + b)), gamma and scale
 * optional, act GELU for the MLP (gelu_linear.c) or the identity, over
 * `tokens` rows per image (all N, or the CLS row alone). With neither
 * gamma nor scale, the GEMM adds straight onto the stream; otherwise the
 * branch output goes to `kept` (LayerScale's gradient needs it), else to
 * x_out itself, and one element-wise pass scales it onto the stream. */
static void branch_end_forward(Vit *m, float *x_out, const float *x_in, const float *h, bool gelu,
                               int weight, int bias, int I, const float *gamma, float *kept,
                               const float *scale, int B, int tokens)
{
    const int T = B * tokens, D = m->cfg.dim;
    const bool plain = !gamma && !scale;
    float *y = !plain && kept ? kept : x_out; /* else scaled onto x_in in place */
    const float *residual = plain ? x_in : NULL;
    if (gelu)
        gelu_linear_forward(y, residual, h, param(m, weight), param(m, bias), T, I, D, m->hidden);
    else
        linear_residual_forward(y, residual, h, param(m, weight), param(m, bias), T, I, D);
    if (!plain)
        residual_branch_forward(x_out, x_in, y, gamma, scale, B, tokens, D);
}

/* timm's stochastic depth: the rate grows linearly to drop_path at the last block. */
static float drop_path_rate(const Vit *m, int l)
{
    const VitConfig *c = &m->cfg;
    return c->depth > 1 ? c->drop_path * (float)l / (float)(c->depth - 1) : c->drop_path;
}

static bool drops_paths(const Vit *m, int l, const VitPass *pass)
{
    return pass->train && drop_path_rate(m, l) > 0.0f;
}

/* Whether block l runs past its attention on the CLS rows alone. */
static bool cls_only(const Vit *m, int l)
{
    return m->cls_only_last && l == m->cfg.depth - 1;
}

static void block_forward(Vit *m, int l, int B, const VitPass *pass)
{
    const VitConfig *c = &m->cfg;
    const VitBlockParams *p = &m->blocks[l];
    VitBlockActs *a = &m->block_acts[l];
    const int T = B * m->tokens, D = c->dim, F = c->mlp_dim;
    /* Past the attention: every token, or the CLS rows compacted. */
    const bool cls = cls_only(m, l);
    const int tokens = cls ? 1 : m->tokens, rows = B * tokens;
    const AttnDims dims = {B, m->tokens, c->heads, D / c->heads};
    const bool drop = drops_paths(m, l, pass);
    if (drop) {
        const float rate = drop_path_rate(m, l);
        drop_path_scales(a->drop1, pass->seed, pass->step, 2 * l, rate, pass->batch_first, B);
        drop_path_scales(a->drop2, pass->seed, pass->step, 2 * l + 1, rate, pass->batch_first, B);
    }
    const float *x = m->stream[l];
    layernorm_forward(m->normed, a->ln1_mean, a->ln1_rstd, x, param(m, p->norm1_w),
                      param(m, p->norm1_b), T, D);
    linear_forward(a->qkv, m->normed, param(m, p->qkv_w), param(m, p->qkv_b), T, D, 3 * D);
    attention_rotate(a->qkv, m->rotation, l, &dims);
    attention_forward(a->attn, a->probs, a->qkv, m->rotation, l, &dims, &m->attn);
    const float *attn = a->attn, *x_cls = x;
    if (cls) {
        pool_cls_forward(m->cls_attn, a->attn, B, m->tokens, D);
        pool_cls_forward(m->cls_in, x, B, m->tokens, D);
        attn = m->cls_attn;
        x_cls = m->cls_in;
    }
    branch_end_forward(m, a->x_mid, x_cls, attn, false, p->proj_w, p->proj_b, D,
                       param(m, p->ls1), a->proj, drop ? a->drop1 : NULL, B, tokens);

    layernorm_forward(m->normed, a->ln2_mean, a->ln2_rstd, a->x_mid, param(m, p->norm2_w),
                      param(m, p->norm2_b), rows, D);
    linear_forward(a->fc1, m->normed, param(m, p->fc1_w), param(m, p->fc1_b), rows, D, F);
    branch_end_forward(m, m->stream[l + 1], a->x_mid, a->fc1, true, p->fc2_w, p->fc2_b, F,
                       param(m, p->ls2), a->fc2, drop ? a->drop2 : NULL, B, tokens);
}

const float *vit_forward(Vit *m, const float *images, int B, const VitPass *pass)
{
    const VitConfig *c = &m->cfg;
    VT_ASSERT(B > 0 && B <= m->batch_cap);
    VT_ASSERT(m->params.list == &m->param_list); /* a copied Vit points at stale lists */
    VT_ASSERT(!m->cls_only_last || c->pool == POOL_CLS); /* its buffers exist then only */
    const int D = c->dim, N = m->tokens, T = B * N;
    m->last_batch = B;
    if (m->pe.kind->prepare) {
        const PeStep step = {.train = pass->train, .step = pass->step, .seed = pass->seed};
        prof_push(PROF_ENCODING);
        m->pe.kind->prepare(&m->pe, m->params.data, &step);
        prof_pop();
    }

    patch_embed_forward(m->patches, m->cols, images, param(m, m->patch_w), param(m, m->patch_b), B,
                        c->channels, c->img_size, c->img_size, c->patch_size, D);
    cls_concat_forward(m->stream[0], m->patches, param(m, m->cls_token), B, m->num_patches, D);
    if (m->pos_embed >= 0)
        pos_embed_forward(m->stream[0], param(m, m->pos_embed), B, N, D);
    for (int l = 0; l < c->depth; l++)
        block_forward(m, l, B, pass);
    if (m->cls_only_last) { /* the last stream holds the CLS rows alone */
        layernorm_forward(m->pooled, m->norm_mean, m->norm_rstd, m->stream[c->depth],
                          param(m, m->norm_w), param(m, m->norm_b), B, D);
    } else {
        layernorm_forward(m->normed, m->norm_mean, m->norm_rstd, m->stream[c->depth],
                          param(m, m->norm_w), param(m, m->norm_b), T, D);
        if (c->pool == POOL_CLS)
            pool_cls_forward(m->pooled, m->normed, B, N, D);
        else
            pool_mean_forward(m->pooled, m->normed, B, N, D);
    }
    linear_forward(m->logits, m->pooled, param(m, m->head_w), param(m, m->head_b), B, D,
                   c->num_classes);
    return m->logits;
}

/* The loss's targets for a pass: its labels, mixed where the pass says. */
static XentTargets targets_of(const int *labels, const VitPass *pass)
{
    return (XentTargets){.labels = labels, .mix_labels = pass->mix_labels,
                         .lambda = pass->mix_labels ? pass->mix_lambda : 1.0f,
                         .smoothing = pass->smoothing};
}

double vit_forward_loss(Vit *m, const float *images, const int *labels, int B,
                        const VitPass *pass)
{
    vit_forward(m, images, B, pass);
    const XentTargets t = targets_of(labels, pass);
    return softmax_xent_forward(m->probs, m->losses, m->logits, &t, B, m->cfg.num_classes);
}

/* ---- backward ------------------------------------------------------------ */

/* The backward of branch_end_forward's scaling for the branch: from the
 * stream gradient `stream` (B images of `tokens` rows), returns
 * dL/d(branch) and adds dgamma. Without LayerScale and drop path that is
 * the stream gradient itself; the identity path needs no work either way:
 * the stream gradient passes through. Drop path's gradient goes to tmp,
 * (B, N, D) that the caller has free until the branch's backward has read
 * dL/d(branch). */
static const float *residual_branch_backward(Vit *m, const float *stream, float *tmp,
                                             const float *branch, const float *gamma,
                                             float *dgamma, const float *scale, int B, int tokens)
{
    VitGradScratch *g = &m->grad;
    const int64_t T = (int64_t)B * tokens, D = m->cfg.dim;
    const float *dy = stream;
    if (scale) {
        drop_path_backward(tmp, dy, scale, B, tokens * D);
        dy = tmp;
    }
    if (gamma) {
        layerscale_backward(g->branch, dgamma, dy, branch, gamma, (int)T, (int)D);
        dy = g->branch;
    }
    return dy;
}

static void block_backward(Vit *m, int l, int B, const VitPass *pass)
{
    const VitConfig *c = &m->cfg;
    const VitBlockParams *p = &m->blocks[l];
    VitBlockActs *a = &m->block_acts[l];
    VitGradScratch *g = &m->grad;
    const int T = B * m->tokens, D = c->dim, F = c->mlp_dim;
    const AttnDims dims = {B, m->tokens, c->heads, D / c->heads};
    const bool drop = drops_paths(m, l, pass);
    /* Past the attention, the CLS rows alone (block_forward), whose stream
     * gradient vit_backward left in g.cls. */
    const bool cls = cls_only(m, l);
    const int tokens = cls ? 1 : m->tokens, rows = B * tokens;
    float *stream = cls ? g->cls : g->stream;
    const float *dbranch;

    /* MLP branch: the stream gradient holds dL/dx_{l+1}, which is also
     * dL/dx_mid's identity part; normed is free until norm2's recompute. */
    dbranch = residual_branch_backward(m, stream, m->normed, a->fc2, param(m, p->ls2),
                                       grad(m, p->ls2), drop ? a->drop2 : NULL, B, tokens);
    /* dL/d(fc1 output) replaces the saved fc1 output, which nothing reads
     * afterwards (GELU's output is made again, by chunks, in m.hidden). */
    float *dfc1 = a->fc1;
    gelu_linear_backward(dfc1, grad(m, p->fc2_w), grad(m, p->fc2_b), dbranch, param(m, p->fc2_w),
                         rows, F, D, m->hidden);
    layernorm_recompute(m->normed, a->x_mid, a->ln2_mean, a->ln2_rstd, param(m, p->norm2_w),
                        param(m, p->norm2_b), rows, D);
    linear_backward(g->ln, grad(m, p->fc1_w), grad(m, p->fc1_b), dfc1, m->normed,
                    param(m, p->fc1_w), rows, D, F);
    layernorm_backward(stream, grad(m, p->norm2_w), grad(m, p->norm2_b), g->ln, a->x_mid,
                       a->ln2_mean, a->ln2_rstd, param(m, p->norm2_w), rows, D);

    /* Attention branch: the stream gradient now holds dL/dx_mid; dL/d(fc1
     * output) is spent, so drop path's gradient and then dL/dqkv may take
     * its memory. normed is free until norm1's recompute: the attention
     * output, rebuilt for proj's weight gradient, goes there (with the
     * whole attention core under recompute_attention), and proj's backward
     * writes dL/d(attention output) over it. */
    float *dqkv = g->qkv ? g->qkv : dfc1;
    if (c->recompute_attention)
        attention_forward(a->attn, a->probs, a->qkv, m->rotation, l, &dims, &m->attn);
    else
        attention_output(a->attn, a->probs, a->qkv, &dims);
    dbranch = residual_branch_backward(m, stream, g->tmp ? g->tmp : dfc1, a->proj,
                                       param(m, p->ls1), grad(m, p->ls1), drop ? a->drop1 : NULL,
                                       B, tokens);
    if (cls) {
        /* proj saw the CLS rows alone: its dL/d(input) there, zero at the
         * other tokens, and the stream gradient's identity path the same. */
        pool_cls_forward(m->cls_attn, a->attn, B, m->tokens, D);
        linear_backward(m->cls_attn, grad(m, p->proj_w), grad(m, p->proj_b), dbranch,
                        m->cls_attn, param(m, p->proj_w), B, D, D);
        pool_cls_backward(g->attn, m->cls_attn, B, m->tokens, D);
        pool_cls_backward(g->stream, g->cls, B, m->tokens, D);
    } else {
        linear_backward(g->attn, grad(m, p->proj_w), grad(m, p->proj_b), dbranch, a->attn,
                        param(m, p->proj_w), T, D, D);
    }
    attention_backward(dqkv, g->attn, a->probs, a->qkv, m->rotation, l, &dims, &m->attn);
    layernorm_recompute(m->normed, m->stream[l], a->ln1_mean, a->ln1_rstd, param(m, p->norm1_w),
                        param(m, p->norm1_b), T, D);
    linear_backward(g->ln, grad(m, p->qkv_w), grad(m, p->qkv_b), dqkv, m->normed,
                    param(m, p->qkv_w), T, D, 3 * D);
    layernorm_backward(g->stream, grad(m, p->norm1_w), grad(m, p->norm1_b), g->ln, m->stream[l],
                       a->ln1_mean, a->ln1_rstd, param(m, p->norm1_w), T, D);
}

void vit_backward(Vit *m, const int *labels, const VitPass *pass)
{
    const VitConfig *c = &m->cfg;
    VitGradScratch *g = &m->grad;
    const int B = m->last_batch, D = c->dim, N = m->tokens, T = B * N, K = c->num_classes;
    VT_ASSERT(!m->inference); /* its activations were not kept */

    const XentTargets t = targets_of(labels, pass);
    softmax_xent_backward(g->logits, m->probs, &t, 1.0f, B, K);
    linear_backward(g->pooled, grad(m, m->head_w), grad(m, m->head_b), g->logits, m->pooled,
                    param(m, m->head_w), B, D, K);
    /* The stream gradient starts here; every LayerNorm adds into it. */
    if (m->cls_only_last) { /* the last block's CLS rows alone */
        memset(g->cls, 0, (size_t)B * D * sizeof(float));
        layernorm_backward(g->cls, grad(m, m->norm_w), grad(m, m->norm_b), g->pooled,
                           m->stream[c->depth], m->norm_mean, m->norm_rstd, param(m, m->norm_w),
                           B, D);
    } else {
        if (c->pool == POOL_CLS)
            pool_cls_backward(g->ln, g->pooled, B, N, D);
        else
            pool_mean_backward(g->ln, g->pooled, B, N, D);
        memset(g->stream, 0, (size_t)T * D * sizeof(float));
        layernorm_backward(g->stream, grad(m, m->norm_w), grad(m, m->norm_b), g->ln,
                           m->stream[c->depth], m->norm_mean, m->norm_rstd, param(m, m->norm_w),
                           T, D);
    }
    for (int l = c->depth - 1; l >= 0; l--)
        block_backward(m, l, B, pass);
    if (m->pos_embed >= 0)
        pos_embed_backward(grad(m, m->pos_embed), g->stream, B, N, D);
    cls_concat_backward(g->patches, grad(m, m->cls_token), g->stream, B, m->num_patches, D);
    patch_embed_backward(NULL, NULL, grad(m, m->patch_w), grad(m, m->patch_b), g->patches, m->cols,
                         param(m, m->patch_w), B, c->channels, c->img_size, c->img_size,
                         c->patch_size, D);
    if (m->pe.kind->finish) {
        prof_push(PROF_ENCODING);
        m->pe.kind->finish(&m->pe, m->params.data, m->grads.data);
        prof_pop();
    }
}
