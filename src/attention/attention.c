/*
 * attention.c - multi-head self-attention, forward and backward (see
 * attention.h). Per (image, head) the work is two small GEMMs and a row
 * softmax forward, four GEMMs backward, on the head kernels (or OpenBLAS,
 * head_kernels.h); the pairs run in parallel, each on one thread, so
 * OpenBLAS runs single-threaded inside our region.
 *
 * The GEMMs read q, k and v where the qkv linear left them, a row stride
 * of 3D apart, and the backward writes dq, dk and dv straight into dqkv.
 * A per-head rotary hook rotates each head's q and k into the thread's
 * tiles just before its products (and its backward takes dq and dk from
 * tiles too), leaving the raw q and k alone; a whole-tensor hook has
 * rotated them in place in qkv before the forward (attention_rotate), so
 * the core reads them as it reads unrotated ones, and turns dq and dk in
 * place in dqkv once every head is done.
 */
#include "vitrain/attention.h"
#include "vitrain/profile.h"

#include "head_kernels.h"

#include "vitrain/common.h"
#include "vitrain/parallel.h"

#include <math.h>
#include <omp.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Which of q, k, v a slice of the qkv buffer holds. */
enum { SLOT_Q = 0, SLOT_K = 1, SLOT_V = 2 };

/* One head's (N, Dh) matrix inside a larger buffer: where it starts and
 * its row stride; HeadSlice to read, HeadOut to write. */
typedef struct HeadSlice {
    const float *at;
    int ld;
} HeadSlice;
typedef struct HeadOut {
    float *at;
    int ld;
} HeadOut;

/* Offset of head (b, h) in slot `slot` of a (B, N, 3D) qkv-shaped buffer,
 * whose rows are 3D apart. */
static int64_t qkv_offset(int slot, int bh, const AttnDims *d)
{
    const int D = d->H * d->Dh, b = bh / d->H, h = bh % d->H;
    return (int64_t)b * d->N * 3 * D + slot * D + h * d->Dh;
}

static HeadSlice qkv_slice(const float *qkv, int slot, int bh, const AttnDims *d)
{
    return (HeadSlice){qkv + qkv_offset(slot, bh, d), 3 * d->H * d->Dh};
}

static HeadOut qkv_out(float *dqkv, int slot, int bh, const AttnDims *d)
{
    return (HeadOut){dqkv + qkv_offset(slot, bh, d), 3 * d->H * d->Dh};
}

/* Chunks of memory queued per head for the kernels to fetch ahead: the
 * backward of ViT-S at 32 px needs 537 (dO, q, k, v, P, dq, dk, dv at
 * N = 65, Dh = 64); what does not fit is not fetched ahead. */
enum { CHUNKS_AHEAD = 1024 };

static void queue_slice(FetchQueue *ahead, HeadSlice s, const AttnDims *d)
{
    fetch_queue_rows(ahead, s.at, s.ld, d->N, d->Dh);
}

/* Head (b, h)'s output columns in a (B, N, D) buffer. */
static HeadSlice output_slice(const float *out, int bh, const AttnDims *d)
{
    const int D = d->H * d->Dh, b = bh / d->H, h = bh % d->H;
    return (HeadSlice){out + (int64_t)b * d->N * D + h * d->Dh, D};
}

static void queue_probs(FetchQueue *ahead, const float *probs, int bh, const AttnDims *d)
{
    const int64_t NN = (int64_t)d->N * d->N;
    fetch_queue_rows(ahead, probs + bh * NN, 0, 1, (int)NN);
}

/* ---- the rotation hook ------------------------------------------------------ */

/* A per-head hook (else whole tensors, in place, or none). */
static bool by_heads(const QkRotation *rotation)
{
    return rotation && rotation->forward_head;
}

int attention_scratch_tiles(void)
{
    return threads_planned();
}

/* Per-head gradient parts are kept per chunk of the batch (fixed_chunks,
 * parallel.h): 16 chunks give ViT-Tiny's 3 heads 48 (chunk, head) units to
 * share among the threads, and cost 16 parts per head to sum. */
int attention_grad_chunks(int B)
{
    return fixed_chunks(B);
}

/* Images [first, end) of chunk c of `chunks`. */
static void chunk_bounds(int B, int chunks, int c, int *first, int *end)
{
    int64_t from, to;
    fixed_chunk(B, chunks, c, &from, &to);
    *first = (int)from;
    *end = (int)to;
}

void attention_grad_chunk(int B, int c, int *first, int *end)
{
    chunk_bounds(B, attention_grad_chunks(B), c, first, end);
}

AttnScratchSizes attention_scratch_sizes(const QkRotation *rotation, const AttnDims *d, int tiles)
{
    const int64_t tile = (int64_t)d->N * d->Dh;
    AttnScratchSizes s = {.dp_tiles = (int64_t)tiles * d->N * d->N};
    if (!by_heads(rotation))
        return s;
    s.rotated = s.rotated_grad = tiles * tile;
    s.head_grads = (int64_t)attention_grad_chunks(d->B) * d->H * rotation->grad_floats;
    return s;
}

/* Thread t's tile of a per-head scratch part. */
static float *tile_of(float *part, int thread, const AttnDims *d)
{
    return part + (int64_t)thread * d->N * d->Dh;
}

/* q and k of head bh as the products read them: rotated now into the
 * thread's tiles, or their slots of qkv (rotated there already by a
 * whole-tensor hook). */
typedef struct HeadQk {
    HeadSlice q, k;
} HeadQk;

static HeadQk head_qk(const QkRotation *rotation, int layer, const AttnScratch *s, int thread,
                      const float *qkv, int bh, const AttnDims *d)
{
    const int D = d->H * d->Dh;
    if (by_heads(rotation)) {
        float *q = tile_of(s->q_rot, thread, d), *k = tile_of(s->k_rot, thread, d);
        rotation->forward_head(rotation, layer, bh / d->H, bh % d->H, q, k, qkv + SLOT_Q * D,
                               qkv + SLOT_K * D, 3 * D, d);
        return (HeadQk){{q, d->Dh}, {k, d->Dh}};
    }
    return (HeadQk){qkv_slice(qkv, SLOT_Q, bh, d), qkv_slice(qkv, SLOT_K, bh, d)};
}

void attention_rotate(float *qkv, const QkRotation *rotation, int layer, const AttnDims *dims)
{
    if (!rotation || by_heads(rotation))
        return;
    const int D = dims->H * dims->Dh;
    rotation->forward(rotation, layer, qkv + SLOT_Q * D, 3 * D, dims);
    rotation->forward(rotation, layer, qkv + SLOT_K * D, 3 * D, dims);
}

/* Threads of a region: no more than the scratch has tiles for. */
static int region_threads(const AttnScratch *s)
{
    VT_ASSERT(s->tiles >= 1);
    return VT_MIN(omp_get_max_threads(), s->tiles);
}

/* ---- forward ------------------------------------------------------------------ */

/* What the forward of head bh reads and writes, in the order it does. */
static void queue_forward(FetchQueue *ahead, const float *probs, const float *out,
                          const float *qkv, int bh, const AttnDims *d)
{
    fetch_queue_clear(ahead);
    if (bh >= d->B * d->H)
        return;
    queue_slice(ahead, qkv_slice(qkv, SLOT_K, bh, d), d);
    queue_slice(ahead, qkv_slice(qkv, SLOT_Q, bh, d), d);
    queue_probs(ahead, probs, bh, d);
    queue_slice(ahead, qkv_slice(qkv, SLOT_V, bh, d), d);
    queue_slice(ahead, output_slice(out, bh, d), d);
}

/* What the rebuild of head bh's output reads and writes. */
static void queue_output(FetchQueue *ahead, const float *probs, const float *out,
                         const float *qkv, int bh, const AttnDims *d)
{
    fetch_queue_clear(ahead);
    if (bh >= d->B * d->H)
        return;
    queue_probs(ahead, probs, bh, d);
    queue_slice(ahead, qkv_slice(qkv, SLOT_V, bh, d), d);
    queue_slice(ahead, output_slice(out, bh, d), d);
}

/* out[b, :, head h] = P v, (N, Dh) in a row stride of D. */
static void head_output(float *out, const float *p, const float *qkv, int bh, const AttnDims *dims,
                        FetchQueue *ahead)
{
    const int N = dims->N, Dh = dims->Dh, D = dims->H * Dh;
    const int b = bh / dims->H, h = bh % dims->H;
    const HeadSlice v = qkv_slice(qkv, SLOT_V, bh, dims);
    head_sgemm(false, false, N, Dh, N, 1.0f, p, N, v.at, v.ld, out + (int64_t)b * N * D + h * Dh,
               D, ahead);
}

void attention_output(float *out, const float *probs, const float *qkv, const AttnDims *dims)
{
    const int64_t NN = (int64_t)dims->N * dims->N;
    prof_push(PROF_ATTENTION);
#pragma omp parallel
    {
        const char *lines[CHUNKS_AHEAD];
        FetchQueue ahead = {lines, 0, 0, CHUNKS_AHEAD};
#pragma omp for schedule(static)
        for (int bh = 0; bh < dims->B * dims->H; bh++) {
            queue_output(&ahead, probs, out, qkv, bh + 1, dims);
            head_output(out, probs + bh * NN, qkv, bh, dims, &ahead);
        }
    }
    prof_pop();
}

void attention_forward(float *out, float *probs, const float *qkv, const QkRotation *rotation,
                       int layer, const AttnDims *dims, const AttnScratch *scratch)
{
    const int N = dims->N, Dh = dims->Dh;
    const float scale = 1.0f / sqrtf((float)Dh);
    prof_push(PROF_ATTENTION);
    VT_ASSERT(!by_heads(rotation) || (scratch->q_rot && scratch->k_rot));
#pragma omp parallel num_threads(region_threads(scratch))
    {
        const int thread = omp_get_thread_num();
        const char *lines[CHUNKS_AHEAD];
        FetchQueue ahead = {lines, 0, 0, CHUNKS_AHEAD};
#pragma omp for schedule(static)
        for (int bh = 0; bh < dims->B * dims->H; bh++) {
            const HeadQk qk = head_qk(rotation, layer, scratch, thread, qkv, bh, dims);
            float *p = probs + (int64_t)bh * N * N;
            queue_forward(&ahead, probs, out, qkv, bh + 1, dims);
            /* P = softmax(q k^T * scale), (N, N) */
            head_scores_softmax(p, qk.q.at, qk.q.ld, qk.k.at, qk.k.ld, N, Dh, scale, &ahead);
            head_output(out, p, qkv, bh, dims, &ahead);
        }
    }
    prof_pop();
}

/* ---- backward ----------------------------------------------------------------- */

/* What the backward of head bh reads and writes, in the order it does. */
static void queue_backward(FetchQueue *ahead, const float *dqkv, bool dqk_in_tiles,
                           const float *dout, const float *probs, const float *qkv, int bh,
                           const AttnDims *d)
{
    fetch_queue_clear(ahead);
    if (bh >= d->B * d->H)
        return;
    queue_slice(ahead, output_slice(dout, bh, d), d);
    queue_slice(ahead, qkv_slice(qkv, SLOT_V, bh, d), d);
    queue_probs(ahead, probs, bh, d);
    queue_slice(ahead, qkv_slice(dqkv, SLOT_V, bh, d), d);
    queue_slice(ahead, qkv_slice(qkv, SLOT_K, bh, d), d);
    if (!dqk_in_tiles)
        queue_slice(ahead, qkv_slice(dqkv, SLOT_Q, bh, d), d);
    queue_slice(ahead, qkv_slice(qkv, SLOT_Q, bh, d), d);
    if (!dqk_in_tiles)
        queue_slice(ahead, qkv_slice(dqkv, SLOT_K, bh, d), d);
}

/* Where head bh's dq or dk goes: the thread's tile for a per-head hook,
 * else dqkv (which a whole-tensor hook turns in place afterwards). */
static HeadOut head_dqk(const QkRotation *rotation, float *rotated_grad, float *dqkv, int slot,
                        int thread, int bh, const AttnDims *d)
{
    if (by_heads(rotation))
        return (HeadOut){tile_of(rotated_grad, thread, d), d->Dh};
    return qkv_out(dqkv, slot, bh, d);
}

/* The backward of one head (b, h), its dP in the thread's tile. */
static void head_backward(float *dqkv, const float *dout, const float *probs, const float *qkv,
                          const QkRotation *rotation, int layer, const AttnScratch *s, int thread,
                          int bh, int next, float *grad_part, const AttnDims *dims,
                          FetchQueue *ahead)
{
    const int N = dims->N, Dh = dims->Dh, D = dims->H * Dh;
    const int b = bh / dims->H, h = bh % dims->H;
    const float scale = 1.0f / sqrtf((float)Dh);
    const HeadQk qk = head_qk(rotation, layer, s, thread, qkv, bh, dims);
    const HeadSlice v = qkv_slice(qkv, SLOT_V, bh, dims);
    const HeadOut dq = head_dqk(rotation, s->dq_rot, dqkv, SLOT_Q, thread, bh, dims);
    const HeadOut dk = head_dqk(rotation, s->dk_rot, dqkv, SLOT_K, thread, bh, dims);
    const HeadOut dv = qkv_out(dqkv, SLOT_V, bh, dims);
    const float *p = probs + (int64_t)bh * N * N;
    const float *dO = dout + (int64_t)b * N * D + h * Dh; /* (N, Dh), row stride D */
    float *dp = s->dp_tiles + (int64_t)thread * N * N;
    queue_backward(ahead, dqkv, by_heads(rotation), dout, probs, qkv, next, dims);
    /* O = P v: dv = P^T dO, dP = dO v^T; P = softmax(S), S = scale q k^T:
     * dS = scale * softmax'(dP), formed row by row with dP */
    head_sgemm(true, false, N, Dh, N, 1.0f, p, N, dO, D, dv.at, dv.ld, ahead);
    head_scores_softmax_backward(dp, dO, D, v.at, v.ld, p, N, Dh, scale, ahead);
    /* dq = dS k, dk = dS^T q */
    head_sgemm(false, false, N, Dh, N, 1.0f, dp, N, qk.k.at, qk.k.ld, dq.at, dq.ld, ahead);
    head_sgemm(true, false, N, Dh, N, 1.0f, dp, N, qk.q.at, qk.q.ld, dk.at, dk.ld, ahead);
    if (by_heads(rotation))
        rotation->backward_head(rotation, layer, b, h, dqkv + SLOT_Q * D, dqkv + SLOT_K * D,
                                dq.at, dk.at, qkv + SLOT_Q * D, qkv + SLOT_K * D, 3 * D,
                                grad_part, dims);
}

/* The head after image b's in the backward's order (B H for none): the
 * chunk's next image, or the first of the next unit's chunk. */
static int next_head(int b, int end, int unit, int chunks, const AttnDims *d)
{
    if (b + 1 < end)
        return (b + 1) * d->H + unit % d->H;
    if (unit + 1 >= chunks * d->H)
        return d->B * d->H;
    int first, next_end;
    chunk_bounds(d->B, chunks, (unit + 1) / d->H, &first, &next_end);
    return first * d->H + (unit + 1) % d->H;
}

/* A unit's gradient part, zeroed for the hook to add into; NULL if none. */
static float *unit_grad_part(const QkRotation *rotation, const AttnScratch *s, int unit)
{
    if (!by_heads(rotation) || !rotation->grad_floats)
        return NULL;
    float *part = s->head_grads + (int64_t)unit * rotation->grad_floats;
    memset(part, 0, (size_t)rotation->grad_floats * sizeof(float));
    return part;
}

/* The rotation's backward once every head is done. */
static void rotation_backward(float *dqkv, const float *qkv, const QkRotation *rotation,
                              int layer, const AttnDims *dims, const AttnScratch *s)
{
    const int D = dims->H * dims->Dh;
    if (by_heads(rotation)) {
        if (rotation->backward_reduce)
            rotation->backward_reduce(rotation, layer, s->head_grads,
                                      attention_grad_chunks(dims->B), dims);
        return;
    }
    rotation->backward(rotation, layer, dqkv + SLOT_Q * D, qkv + SLOT_Q * D, 3 * D, dims);
    rotation->backward(rotation, layer, dqkv + SLOT_K * D, qkv + SLOT_K * D, 3 * D, dims);
}

void attention_backward(float *dqkv, const float *dout, const float *probs, const float *qkv,
                        const QkRotation *rotation, int layer, const AttnDims *dims,
                        const AttnScratch *scratch)
{
    VT_ASSERT(!by_heads(rotation) || (rotation->backward_head && scratch->q_rot &&
                                      scratch->k_rot && scratch->dq_rot && scratch->dk_rot));
    prof_push(PROF_ATTENTION);
    /* Units of (chunk of images, head), the images in order: a hook's
     * gradient parts have one writer each. Without parts every image is
     * a chunk, and the units run image by image as in the forward. */
    const int chunks = by_heads(rotation) ? attention_grad_chunks(dims->B) : dims->B;
    const int units = chunks * dims->H;
#pragma omp parallel num_threads(region_threads(scratch))
    {
        const int thread = omp_get_thread_num();
        const char *lines[CHUNKS_AHEAD];
        FetchQueue ahead = {lines, 0, 0, CHUNKS_AHEAD};
#pragma omp for schedule(static)
        for (int unit = 0; unit < units; unit++) {
            const int h = unit % dims->H;
            int first, end;
            chunk_bounds(dims->B, chunks, unit / dims->H, &first, &end);
            float *part = unit_grad_part(rotation, scratch, unit);
            for (int b = first; b < end; b++)
                head_backward(dqkv, dout, probs, qkv, rotation, layer, scratch, thread,
                              b * dims->H + h, next_head(b, end, unit, chunks, dims), part,
                              dims, &ahead);
        }
    }
    if (rotation)
        rotation_backward(dqkv, qkv, rotation, layer, dims, scratch);
    prof_pop();
}
