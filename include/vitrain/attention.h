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
 * forward once for q and once for k of each layer, before the scores;
 * backward maps the gradient w.r.t. the rotated tensor to the gradient
 * w.r.t. the raw one and adds the encoding's parameter gradients to
 * wherever the encoding keeps them. A NULL hook means no rotation (the
 * absolute encoding, or none).
 *
 * The raw q or k is read where the qkv linear left it: row (b, n) at
 * x_raw + (b N + n) raw_stride, head h at columns [h Dh, (h+1) Dh); its
 * gradient goes to the same place of dL/dqkv. The rotated copies are
 * head-major, (B, H, N, Dh).
 */
typedef struct QkRotation QkRotation;
struct QkRotation {
    /* x <- R x_raw for every token (those without a position copied). */
    void (*forward)(const QkRotation *self, int layer, float *x, const float *x_raw,
                    int raw_stride, const AttnDims *dims);
    /* dx_raw <- R^T dx, with dx = dL/d(rotated), which it may overwrite. */
    void (*backward)(const QkRotation *self, int layer, float *dx_raw, float *dx,
                     const float *x_raw, int raw_stride, const AttnDims *dims);
    void *ctx;
};

/* q_rot and k_rot (B, H, N, Dh) <- the rotated q and k of qkv: the
 * forward's first step, and the backward's rebuild of them. */
void attention_rotate(float *q_rot, float *k_rot, const float *qkv /* (B, N, 3D) */,
                      const QkRotation *rotation, int layer, const AttnDims *dims);

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
