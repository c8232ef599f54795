/*
 * attention.h - multi-head self-attention core and the positional-encoding
 * hook it calls on q and k (DESIGN §2, §4).
 *
 * Input is the output of the qkv linear, (B, N, 3D): q, k, v stacked in that
 * order along the last dimension, each split into H heads of Dh channels.
 * The core computes softmax(q k^T / sqrt(Dh)) v per (image, head), in
 * parallel over the B*H pairs, and writes (B, N, D) with head h in columns
 * [h Dh, (h+1) Dh) -- the input of the output projection `proj`.
 */
#ifndef VITRAIN_ATTENTION_H
#define VITRAIN_ATTENTION_H

#include <stdint.h>

typedef struct AttnDims {
    int B, N, H, Dh;
} AttnDims;

/*
 * A rotary positional encoding (DESIGN §4): q_n <- R(p_n) q_n and
 * k_n <- R(p_n) k_n with R orthogonal, never v. A NULL hook means no
 * rotation (the absolute encoding, or none).
 *
 * The raw q or k is read where the qkv linear left it: row (b, n) at
 * x_raw + (b N + n) raw_stride, head h at columns [h Dh, (h+1) Dh); its
 * gradient goes to the same place of dL/dqkv.
 *
 * A hook rotates either whole tensors (forward, backward: every image and
 * head at once) or one (image, head) at a time (forward_head,
 * backward_head), never both. Whole tensors turn in place: the caller
 * rotates q and k where the qkv linear left them (attention_rotate) before
 * the forward, the core then reads them there like unrotated ones, and
 * the backward turns dq and dk in place in dL/dqkv; the raw q and k are
 * gone, which the rotation's gradient does without (it reads the rotated
 * rows). This suits rotations that are products over the batch (dense
 * LieRE), and keeps no copy of q and k and no second rotation in the
 * backward. A per-head hook leaves the raw q and k alone: the attention
 * rotates each head's q and k into tiles of its own as it gets to them,
 * while their rows are in cache.
 */
typedef struct QkRotation QkRotation;
struct QkRotation {
    /* Whole tensors, in place: rows x (B, N, stride), head h at channels
     * [h Dh, (h+1) Dh), x <- R x for every token (those without a
     * position left as they are). */
    void (*forward)(const QkRotation *self, int layer, float *x, int stride,
                    const AttnDims *dims);
    /* dx (the same rows, dL/d(rotated)) <- R^T dx in place, given y, the
     * rows forward left; adds the encoding's parameter gradients to
     * wherever it keeps them. */
    void (*backward)(const QkRotation *self, int layer, float *dx, const float *y, int stride,
                     const AttnDims *dims);

    /* Or image b, head h, q and k: tiles (N, Dh), rows Dh apart. */
    void (*forward_head)(const QkRotation *self, int layer, int b, int h, float *q, float *k,
                         const float *q_raw, const float *k_raw, int raw_stride,
                         const AttnDims *dims);
    /* With forward_head: the rows of (b, h) in dq_raw and dk_raw
     * <- R^T dq, R^T dk (tiles, which it may overwrite). What the parameter
     * gradient needs, grad_floats numbers, it adds to head_grad: one part
     * per head and chunk of the batch (attention_grad_chunks), which one
     * thread fills image by image in order. backward_reduce then adds the
     * parts, laid out (chunks, H, grad_floats), to the encoding's gradient
     * in a fixed order: the sums do not depend on the thread count. */
    void (*backward_head)(const QkRotation *self, int layer, int b, int h, float *dq_raw,
                          float *dk_raw, float *dq, float *dk, const float *q_raw,
                          const float *k_raw, int raw_stride, float *head_grad,
                          const AttnDims *dims);
    void (*backward_reduce)(const QkRotation *self, int layer, const float *head_grads,
                            int chunks, const AttnDims *dims);
    int grad_floats;
    void *ctx;
};

/* What the core works in besides its inputs and outputs. With a per-head
 * rotation: q_rot and k_rot hold the rotated q and k, dq_rot and dk_rot
 * their gradients, one (N, Dh) tile per thread each, and head_grads
 * (chunks, H, grad_floats) the parts of its parameter gradient. The
 * backward keeps dP in dp_tiles, one (N, N) tile per thread; `tiles` is
 * how many threads the core runs on at most. */
typedef struct AttnScratch {
    float *q_rot, *k_rot;
    float *dq_rot, *dk_rot;
    float *head_grads;
    float *dp_tiles;
    int tiles;
} AttnScratch;

/* How many floats each part of the scratch needs, for `tiles` threads
 * (attention_scratch_tiles() is the usual count). */
typedef struct AttnScratchSizes {
    int64_t rotated;       /* each of q_rot and k_rot (0 without a per-head rotation) */
    int64_t rotated_grad;  /* each of dq_rot and dk_rot, likewise */
    int64_t head_grads;
    int64_t dp_tiles;
} AttnScratchSizes;
AttnScratchSizes attention_scratch_sizes(const QkRotation *rotation, const AttnDims *dims,
                                         int tiles);

/* How many threads the scratch should be planned for: as many as a
 * region may run on. */
int attention_scratch_tiles(void);

/* The chunks a batch of B splits into for per-head parameter-gradient
 * parts (QkRotation.backward_head), and chunk c's images [first, end):
 * fixed by B alone, and enough (chunk, head) pairs to spread over the
 * threads. */
int attention_grad_chunks(int B);
void attention_grad_chunk(int B, int c, int *first, int *end);

/* Before attention_forward: q and k of qkv <- R q, R k in place for a
 * whole-tensor hook; nothing for a per-head one (the core calls it head
 * by head) or none. Once only: the core and its backward then read the
 * rotated q and k there. */
void attention_rotate(float *qkv /* (B, N, 3D) */, const QkRotation *rotation, int layer,
                      const AttnDims *dims);

/* Saves the softmax probabilities. qkv as attention_rotate left it. */
void attention_forward(float *out /* (B, N, D) */, float *probs /* (B, H, N, N) */,
                       const float *qkv /* (B, N, 3D) */, const QkRotation *rotation, int layer,
                       const AttnDims *dims, const AttnScratch *scratch);

/* out = P v per head from the saved probabilities: the attention output
 * again, for the backward of the projection that reads it, so that the
 * forward need not keep it. */
void attention_output(float *out /* (B, N, D) */, const float *probs /* (B, H, N, N) */,
                      const float *qkv /* (B, N, 3D) */, const AttnDims *dims);

/* Writes dqkv whole; qkv as the forward read it. */
void attention_backward(float *dqkv /* (B, N, 3D) */, const float *dout /* (B, N, D) */,
                        const float *probs, const float *qkv /* (B, N, 3D) */,
                        const QkRotation *rotation, int layer, const AttnDims *dims,
                        const AttnScratch *scratch);

#endif
