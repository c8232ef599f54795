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

typedef struct AttnDims {
    int B, N, H, Dh;
} AttnDims;

/*
 * A rotary positional encoding (DESIGN §4): q_n <- R(p_n) q_n and
 * k_n <- R(p_n) k_n with R orthogonal, never v. The attention core calls
 * forward once for q and once for k of each layer, after splitting heads and
 * before the scores; backward maps the gradient w.r.t. the rotated tensor to
 * the gradient w.r.t. the raw one and adds the encoding's parameter
 * gradients to wherever the encoding keeps them. A NULL hook means no
 * rotation (the absolute encoding, or none).
 */
typedef struct QkRotation QkRotation;
struct QkRotation {
    /* x (B, H, N, Dh): raw on entry, rotated on return. */
    void (*forward)(const QkRotation *self, int layer, float *x, const AttnDims *dims);
    /* dx (B, H, N, Dh): dL/d(rotated) on entry, dL/d(raw) on return.
     * x_raw: the raw tensor as it sits in the qkv buffer, row (b, n) at
     * x_raw + (b N + n) raw_stride, head h at columns [h Dh, (h+1) Dh). */
    void (*backward)(const QkRotation *self, int layer, float *dx, const float *x_raw,
                     int raw_stride, const AttnDims *dims);
    void *ctx;
};

/* Saves the softmax probabilities and, when there is a rotation, the
 * rotated q and k (head-major copies; NULL is fine without a rotation). */
void attention_forward(float *out /* (B, N, D) */, float *q_rot /* (B, H, N, Dh) or NULL */,
                       float *k_rot /* (B, H, N, Dh) or NULL */, float *probs /* (B, H, N, N) */,
                       const float *qkv /* (B, N, 3D) */, const QkRotation *rotation, int layer,
                       const AttnDims *dims);

/* out = P v per head from the saved probabilities: the attention output
 * again, for the backward of the projection that reads it, so that the
 * forward need not keep it. */
void attention_output(float *out /* (B, N, D) */, const float *probs /* (B, H, N, N) */,
                      const float *qkv /* (B, N, 3D) */, const AttnDims *dims);

/* How many (N, N) tiles of scratch the backward should be given: one per
 * thread it may run on. */
int attention_scratch_tiles(void);

/* Writes dqkv whole. dq_rot and dk_rot (needed with a rotation only) are
 * scratch of the shape of q_rot; dp_tiles holds `tiles` (N, N) tiles, one
 * per thread (the backward runs on at most that many). */
void attention_backward(float *dqkv /* (B, N, 3D) */, float *dq_rot /* (B, H, N, Dh) or NULL */,
                        float *dk_rot /* (B, H, N, Dh) or NULL */,
                        float *dp_tiles /* (tiles, N, N) */, int tiles,
                        const float *dout /* (B, N, D) */, const float *q_rot,
                        const float *k_rot, const float *probs, const float *qkv /* (B, N, 3D) */,
                        const QkRotation *rotation, int layer, const AttnDims *dims);

#endif
