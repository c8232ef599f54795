/*
 * attention.c - multi-head self-attention, forward and backward (see
 * attention.h). Per (image, head) the work is two small GEMMs and a row
 * softmax forward, four GEMMs backward, on the head kernels (or OpenBLAS,
 * head_kernels.h); the pairs run in parallel, each on one thread, so
 * OpenBLAS runs single-threaded inside our region.
 *
 * The GEMMs read q, k and v where the qkv linear left them, a row stride
 * of 3D apart, and the backward writes dq, dk and dv straight into dqkv:
 * only a rotary encoding, which must not touch the raw q and k its
 * backward reads, writes head-major rotated copies of the two (from the
 * raw rows, and its backward writes dq and dk back into dqkv).
 */
#include "vitrain/attention.h"
#include "vitrain/profile.h"

#include "head_kernels.h"

#include "vitrain/common.h"
#include "vitrain/parallel.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>

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

/* Offset of head (b, h) in a head-major (B, H, N, Dh) buffer. */
static int64_t head_major_offset(int bh, const AttnDims *d)
{
    return (int64_t)bh * d->N * d->Dh;
}

static HeadSlice qkv_slice(const float *qkv, int slot, int bh, const AttnDims *d)
{
    return (HeadSlice){qkv + qkv_offset(slot, bh, d), 3 * d->H * d->Dh};
}

static HeadOut qkv_out(float *dqkv, int slot, int bh, const AttnDims *d)
{
    return (HeadOut){dqkv + qkv_offset(slot, bh, d), 3 * d->H * d->Dh};
}

/* q or k of head (b, h): the rotated copy when there is one, else the raw slot. */
static HeadSlice qk_slice(const float *rotated, const float *qkv, int slot, int bh,
                          const AttnDims *d)
{
    return rotated ? (HeadSlice){rotated + head_major_offset(bh, d), d->Dh}
                   : qkv_slice(qkv, slot, bh, d);
}

static HeadOut qk_out(float *rotated, float *dqkv, int slot, int bh, const AttnDims *d)
{
    return rotated ? (HeadOut){rotated + head_major_offset(bh, d), d->Dh}
                   : qkv_out(dqkv, slot, bh, d);
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

/* What the forward of head bh reads and writes, in the order it does. */
static void queue_forward(FetchQueue *ahead, const float *q_rot, const float *k_rot,
                          const float *probs, const float *out, const float *qkv, int bh,
                          const AttnDims *d)
{
    fetch_queue_clear(ahead);
    if (bh >= d->B * d->H)
        return;
    queue_slice(ahead, qk_slice(k_rot, qkv, SLOT_K, bh, d), d);
    queue_slice(ahead, qk_slice(q_rot, qkv, SLOT_Q, bh, d), d);
    queue_probs(ahead, probs, bh, d);
    queue_slice(ahead, qkv_slice(qkv, SLOT_V, bh, d), d);
    queue_slice(ahead, output_slice(out, bh, d), d);
}

int attention_scratch_tiles(void)
{
    return threads_planned();
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

void attention_rotate(float *q_rot, float *k_rot, const float *qkv, const QkRotation *rotation,
                      int layer, const AttnDims *dims)
{
    const int D = dims->H * dims->Dh;
    rotation->forward(rotation, layer, q_rot, qkv + SLOT_Q * D, 3 * D, dims);
    rotation->forward(rotation, layer, k_rot, qkv + SLOT_K * D, 3 * D, dims);
}

void attention_forward(float *out, float *q_rot, float *k_rot, float *probs, const float *qkv,
                       const QkRotation *rotation, int layer, const AttnDims *dims)
{
    const int N = dims->N, Dh = dims->Dh;
    const float scale = 1.0f / sqrtf((float)Dh);
    prof_push(PROF_ATTENTION);
    VT_ASSERT(!rotation || (q_rot && k_rot));
    if (rotation)
        attention_rotate(q_rot, k_rot, qkv, rotation, layer, dims);
    else
        q_rot = k_rot = NULL;
#pragma omp parallel
    {
        const char *lines[CHUNKS_AHEAD];
        FetchQueue ahead = {lines, 0, 0, CHUNKS_AHEAD};
#pragma omp for schedule(static)
        for (int bh = 0; bh < dims->B * dims->H; bh++) {
            const HeadSlice q = qk_slice(q_rot, qkv, SLOT_Q, bh, dims);
            const HeadSlice k = qk_slice(k_rot, qkv, SLOT_K, bh, dims);
            float *p = probs + (int64_t)bh * N * N;
            queue_forward(&ahead, q_rot, k_rot, probs, out, qkv, bh + 1, dims);
            /* P = softmax(q k^T * scale), (N, N) */
            head_scores_softmax(p, q.at, q.ld, k.at, k.ld, N, Dh, scale, &ahead);
            head_output(out, p, qkv, bh, dims, &ahead);
        }
    }
    prof_pop();
}

/* What the backward of head bh reads and writes, in the order it does. */
static void queue_backward(FetchQueue *ahead, const float *dqkv, const float *dq_rot,
                           const float *dk_rot, const float *dout, const float *q_rot,
                           const float *k_rot, const float *probs, const float *qkv, int bh,
                           const AttnDims *d)
{
    fetch_queue_clear(ahead);
    if (bh >= d->B * d->H)
        return;
    queue_slice(ahead, output_slice(dout, bh, d), d);
    queue_slice(ahead, qkv_slice(qkv, SLOT_V, bh, d), d);
    queue_probs(ahead, probs, bh, d);
    queue_slice(ahead, qkv_slice(dqkv, SLOT_V, bh, d), d);
    queue_slice(ahead, qk_slice(k_rot, qkv, SLOT_K, bh, d), d);
    queue_slice(ahead, qk_slice(dq_rot, dqkv, SLOT_Q, bh, d), d);
    queue_slice(ahead, qk_slice(q_rot, qkv, SLOT_Q, bh, d), d);
    queue_slice(ahead, qk_slice(dk_rot, dqkv, SLOT_K, bh, d), d);
}

/* The backward of one head (b, h), its dP in the thread's tile dp. */
static void head_backward(float *dqkv, float *dq_rot, float *dk_rot, float *dp, const float *dout,
                          const float *q_rot, const float *k_rot, const float *probs,
                          const float *qkv, int bh, const AttnDims *dims, FetchQueue *ahead)
{
    const int N = dims->N, Dh = dims->Dh, D = dims->H * Dh;
    const int b = bh / dims->H, h = bh % dims->H;
    const float scale = 1.0f / sqrtf((float)Dh);
    const HeadSlice q = qk_slice(q_rot, qkv, SLOT_Q, bh, dims);
    const HeadSlice k = qk_slice(k_rot, qkv, SLOT_K, bh, dims);
    const HeadSlice v = qkv_slice(qkv, SLOT_V, bh, dims);
    const HeadOut dq = qk_out(dq_rot, dqkv, SLOT_Q, bh, dims);
    const HeadOut dk = qk_out(dk_rot, dqkv, SLOT_K, bh, dims);
    const HeadOut dv = qkv_out(dqkv, SLOT_V, bh, dims);
    const float *p = probs + (int64_t)bh * N * N;
    const float *dO = dout + (int64_t)b * N * D + h * Dh; /* (N, Dh), row stride D */
    queue_backward(ahead, dqkv, dq_rot, dk_rot, dout, q_rot, k_rot, probs, qkv, bh + 1, dims);
    /* O = P v: dv = P^T dO, dP = dO v^T; P = softmax(S), S = scale q k^T:
     * dS = scale * softmax'(dP), formed row by row with dP */
    head_sgemm(true, false, N, Dh, N, 1.0f, p, N, dO, D, dv.at, dv.ld, ahead);
    head_scores_softmax_backward(dp, dO, D, v.at, v.ld, p, N, Dh, scale, ahead);
    /* dq = dS k, dk = dS^T q */
    head_sgemm(false, false, N, Dh, N, 1.0f, dp, N, k.at, k.ld, dq.at, dq.ld, ahead);
    head_sgemm(true, false, N, Dh, N, 1.0f, dp, N, q.at, q.ld, dk.at, dk.ld, ahead);
}

void attention_backward(float *dqkv, float *dq_rot, float *dk_rot, float *dp_tiles, int tiles,
                        const float *dout, const float *q_rot, const float *k_rot,
                        const float *probs, const float *qkv, const QkRotation *rotation,
                        int layer, const AttnDims *dims)
{
    const int N = dims->N, D = dims->H * dims->Dh;
    VT_ASSERT(!rotation || (q_rot && k_rot && dq_rot && dk_rot));
    VT_ASSERT(tiles >= 1);
    prof_push(PROF_ATTENTION);
    if (!rotation)
        q_rot = k_rot = dq_rot = dk_rot = NULL;
    /* One thread per tile of scratch, at most: each keeps dP of its heads. */
#pragma omp parallel num_threads(VT_MIN(omp_get_max_threads(), tiles))
    {
        float *dp = dp_tiles + (int64_t)omp_get_thread_num() * N * N;
        const char *lines[CHUNKS_AHEAD];
        FetchQueue ahead = {lines, 0, 0, CHUNKS_AHEAD};
#pragma omp for schedule(static)
        for (int bh = 0; bh < dims->B * dims->H; bh++)
            head_backward(dqkv, dq_rot, dk_rot, dp, dout, q_rot, k_rot, probs, qkv, bh, dims,
                          &ahead);
    }
    if (rotation) {
        rotation->backward(rotation, layer, dqkv + SLOT_Q * D, dq_rot, qkv + SLOT_Q * D, 3 * D,
                           dims);
        rotation->backward(rotation, layer, dqkv + SLOT_K * D, dk_rot, qkv + SLOT_K * D, 3 * D,
                           dims);
    }
    prof_pop();
}
