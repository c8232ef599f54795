/*
 * ops.h - the layers of the ViT, each a forward/backward pair (DESIGN §2).
 *
 * Conventions (STYLE):
 *   - outputs first, then saved activations, then inputs, parameters, sizes;
 *   - every pointer carries its shape, in the letters of common.h;
 *   - backward *overwrites* input gradients and *adds* into parameter
 *     gradients (the trainer zeroes those once per step): no activation-
 *     sized buffer is cleared before a pass and GEMMs write with beta 0,
 *     which saved a memset and a read of every gradient (about 4 % of a
 *     step); the one exception is LayerNorm, whose input gradient adds
 *     into the residual stream's, which the identity path already holds;
 *   - a NULL input gradient means "not needed" and is skipped;
 *   - work is split by output with schedule(static); reductions over rows
 *     (bias, norm and scale gradients) are split by column, so each output is
 *     summed by one thread in a fixed order, whatever the thread count.
 */
#ifndef VITRAIN_OPS_H
#define VITRAIN_OPS_H

#include <stdint.h>

/* The backward ops sum their parameter gradients over rows by fixed
 * chunks (src/ops/reduce.h), in scratch they share. This sizes it for sums
 * over rows of up to `widest` floats (LayerNorm's count 2 D), so that no
 * later call allocates; the model calls it when it is built, and a call
 * with wider rows still works (it allocates then). */
void ops_reserve(int64_t widest);

/* ---- linear: y = x W^T + b -------------------------------------------- */
void linear_forward(float *y /* (T, O) */, const float *x /* (T, I) */,
                    const float *w /* (O, I) */, const float *b /* (O) or NULL */,
                    int T, int I, int O);
/* y = residual + x W^T + b: a linear layer that ends a residual branch,
 * without a pass of its own for the add (the GEMM accumulates onto it);
 * residual NULL is linear_forward. Its backward is linear_backward's,
 * with dL/dy passing to the residual. */
void linear_residual_forward(float *y /* (T, O) */, const float *residual /* (T, O) or NULL */,
                             const float *x /* (T, I) */, const float *w /* (O, I) */,
                             const float *b /* (O) or NULL */, int T, int I, int O);
/* dx is written (it may be x itself), dw and db accumulate. */
void linear_backward(float *dx /* (T, I) or NULL */, float *dw /* (O, I) */,
                     float *db /* (O) or NULL */, const float *dy /* (T, O) */,
                     const float *x /* (T, I) */, const float *w /* (O, I) */,
                     int T, int I, int O);

/* ---- LayerNorm over the last dimension, eps 1e-6 ------------------------ */
#define VT_LAYERNORM_EPS 1e-6f
void layernorm_forward(float *y /* (T, D) */, float *mean /* (T) */, float *rstd /* (T) */,
                       const float *x /* (T, D) */, const float *w /* (D) */,
                       const float *b /* (D) */, int T, int D);
/* y of layernorm_forward again, from its saved statistics, bit for bit:
 * the model keeps only mean and rstd and recomputes y for the backward. */
void layernorm_recompute(float *y /* (T, D) */, const float *x /* (T, D) */,
                         const float *mean /* (T) */, const float *rstd /* (T) */,
                         const float *w /* (D) */, const float *b /* (D) */, int T, int D);
/* Adds into dx (the stream gradient); dw and db accumulate. */
void layernorm_backward(float *dx /* (T, D) */, float *dw /* (D) */, float *db /* (D) */,
                        const float *dy /* (T, D) */, const float *x /* (T, D) */,
                        const float *mean /* (T) */, const float *rstd /* (T) */,
                        const float *w /* (D) */, int T, int D);

/* ---- exact GELU: y = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) ------------ */
void gelu_forward(float *y /* (n) */, const float *x /* (n) */, int64_t n);
/* dx may be dy itself. (The model uses the slope form below, which needs
 * no saved output.) */
void gelu_backward(float *dx /* (n) */, const float *dy /* (n) */, const float *x /* (n) */,
                   int64_t n);
/* The backward's half of GELU without the saved output: recomputes
 * y = gelu(x) and writes the slope dy/dx, so that dL/dx = dL/dy * slope
 * (gelu_slope_backward) once dL/dy is known. slope may be x. */
void gelu_forward_slope(float *y /* (n) */, float *slope /* (n) */, const float *x /* (n) */,
                        int64_t n);
/* dx = dy * slope; dx may be dy or slope. */
void gelu_slope_backward(float *dx /* (n) */, const float *dy /* (n) */,
                         const float *slope /* (n) */, int64_t n);

/* ---- GELU then linear: an MLP's second layer -----------------------------
 * y = [residual +] gelu(x) W^T + b, with GELU's output made for
 * GELU_LINEAR_ROWS rows at a time in scratch (min(T, GELU_LINEAR_ROWS), I)
 * instead of stored whole. The backward makes it again: x holds GELU's
 * input on entry and dL/dx on return; dw and db accumulate. */
enum { GELU_LINEAR_ROWS = 512 };
void gelu_linear_forward(float *y /* (T, O) */, const float *residual /* (T, O) or NULL */,
                         const float *x /* (T, I) */, const float *w /* (O, I) */,
                         const float *b /* (O) or NULL */, int T, int I, int O, float *scratch);
void gelu_linear_backward(float *x /* (T, I) */, float *dw /* (O, I) */, float *db /* (O) or NULL */,
                          const float *dy /* (T, O) */, const float *w /* (O, I) */, int T, int I,
                          int O, float *scratch);

/* ---- softmax cross-entropy with label smoothing -------------------------
 * Target t = (1 - s) y + s / K with y = onehot(label), or under mixup and
 * CutMix y = lambda onehot(label) + (1 - lambda) onehot(mix_label);
 * loss = mean_b -sum_k t_k log p_k, which equals timm's
 * LabelSmoothingCrossEntropy, and with mixing its SoftTargetCrossEntropy of
 * mixup_target. */
typedef struct XentTargets {
    const int *labels;     /* (B) */
    const int *mix_labels; /* (B) each sample's mixing partner's label, or NULL */
    float lambda;          /* the labels' share; 1 without mixing */
    float smoothing;
} XentTargets;

/* Returns the mean loss; losses[b] holds each sample's. */
double softmax_xent_forward(float *probs /* (B, K) */, float *losses /* (B) */,
                            const float *logits /* (B, K) */, const XentTargets *t, int B, int K);
/* dlogits = dloss / B * (p - t) */
void softmax_xent_backward(float *dlogits /* (B, K) */, const float *probs /* (B, K) */,
                           const XentTargets *t, float dloss, int B, int K);

/* ---- patch embedding: a stride-P convolution as im2col + linear ----------
 * Image (B, C, Hi, Wi), patches in row-major grid order, each flattened in
 * (channel, row, col) order to match the conv weight (D, C, P, P). */
void patch_embed_forward(float *y /* (B*Np, D) */, float *cols /* (B*Np, C*P*P) */,
                         const float *img /* (B, C, Hi, Wi) */, const float *w /* (D, C*P*P) */,
                         const float *b /* (D) */, int B, int C, int Hi, int Wi, int P, int D);
/* dcols is scratch (B*Np, C*P*P), needed only when dimg is wanted. The
 * patches tile the image, so dimg is written whole. */
void patch_embed_backward(float *dimg /* (B, C, Hi, Wi) or NULL */, float *dcols /* scratch */,
                          float *dw /* (D, C*P*P) */, float *db /* (D) */,
                          const float *dy /* (B*Np, D) */, const float *cols /* (B*Np, C*P*P) */,
                          const float *w /* (D, C*P*P) */, int B, int C, int Hi, int Wi, int P,
                          int D);

/* ---- CLS concat: x = [cls; patches] per image ---------------------------- */
void cls_concat_forward(float *x /* (B, Np+1, D) */, const float *patches /* (B, Np, D) */,
                        const float *cls /* (D) */, int B, int Np, int D);
void cls_concat_backward(float *dpatches /* (B, Np, D) or NULL */, float *dcls /* (D) */,
                         const float *dx /* (B, Np+1, D) */, int B, int Np, int D);

/* ---- residual add: y = a + b --------------------------------------------- */
void residual_forward(float *y /* (n) */, const float *a /* (n) */, const float *b /* (n) */,
                      int64_t n);
/* (The model lets dy pass to both inputs without a copy.) */
void residual_backward(float *da /* (n) or NULL */, float *db /* (n) or NULL */,
                       const float *dy /* (n) */, int64_t n);

/* ---- LayerScale: y = x * gamma, per channel ------------------------------ */
void layerscale_forward(float *y /* (T, D) */, const float *x /* (T, D) */,
                        const float *gamma /* (D) */, int T, int D);
void layerscale_backward(float *dx /* (T, D) */, float *dgamma /* (D) */,
                         const float *dy /* (T, D) */, const float *x /* (T, D) */,
                         const float *gamma /* (D) */, int T, int D);

/* ---- drop path (stochastic depth): y = x * scale[b] ----------------------
 * scale[b] is 0 for a dropped sample and 1/keep_prob for a kept one. The
 * scales are those of samples [first, first + B) of the global batch, so a
 * data-parallel rank holding that slice drops what one process would. */
void drop_path_scales(float *scale /* (B) */, uint64_t seed, int64_t step, int slot,
                      float drop_prob, int first, int B);
void drop_path_forward(float *y /* (B, L) */, const float *x /* (B, L) */,
                       const float *scale /* (B) */, int B, int64_t L);
void drop_path_backward(float *dx /* (B, L) */, const float *dy /* (B, L) */,
                        const float *scale /* (B) */, int B, int64_t L);

/* ---- the end of a residual branch, fused ----------------------------------
 * y = x + scale[b] * (gamma * branch) over B samples of N tokens: LayerScale
 * (gamma NULL: none), drop path (scale NULL: none) and the residual add in
 * one pass, bit for bit the three ops above in that order. The model calls
 * this form; the three forwards stay beside their backwards as the
 * reference the gradient checks and this op's test use. y may be branch. */
void residual_branch_forward(float *y /* (B, N, D) */, const float *x /* (B, N, D) */,
                             const float *branch /* (B, N, D) */, const float *gamma /* (D) */,
                             const float *scale /* (B) */, int B, int N, int D);

/* ---- pooling to one vector per image ------------------------------------- */
/* CLS pooling: y[b] = x[b, 0] */
void pool_cls_forward(float *y /* (B, D) */, const float *x /* (B, N, D) */, int B, int N, int D);
void pool_cls_backward(float *dx /* (B, N, D) */, const float *dy /* (B, D) */, int B, int N,
                       int D);
/* Mean pooling over the patch tokens 1..N-1 (the CLS token is left out). */
void pool_mean_forward(float *y /* (B, D) */, const float *x /* (B, N, D) */, int B, int N,
                       int D);
void pool_mean_backward(float *dx /* (B, N, D) */, const float *dy /* (B, D) */, int B, int N,
                        int D);

/* ---- learned absolute position embedding: x += pos ---------------------- */
void pos_embed_forward(float *x /* (B, N, D) in place */, const float *pos /* (N, D) */, int B,
                       int N, int D);
void pos_embed_backward(float *dpos /* (N, D) */, const float *dx /* (B, N, D) */, int B, int N,
                        int D);

#endif
