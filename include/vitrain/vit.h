/*
 * vit.h - the Vision Transformer of DESIGN §2: configuration, named
 * parameters, forward, loss and backward over a batch.
 *
 * All memory is planned in vit_create for a maximum batch size: parameters
 * and gradients are two arenas of one TensorList with timm's names, the
 * activations a third. Nothing is allocated by forward or backward.
 */
#ifndef VITRAIN_VIT_H
#define VITRAIN_VIT_H

#include "vitrain/attention.h"
#include "vitrain/common.h"
#include "vitrain/pe.h"
#include "vitrain/tensor.h"

#include <stdbool.h>

typedef enum PoolMode {
    POOL_CLS,  /* classify from the CLS token (timm's 'token') */
    POOL_MEAN  /* mean of the patch tokens (timm's 'avg') */
} PoolMode;

typedef struct VitConfig {
    int img_size;     /* square images, pixels */
    int train_img_size; /* the resolution the encoding was trained at; 0 = img_size */
    int channels;     /* C */
    int patch_size;   /* P; img_size % P == 0 */
    int dim;          /* D */
    int depth;        /* number of blocks */
    int heads;        /* H; D % H == 0 */
    int mlp_dim;      /* F */
    int num_classes;  /* K */
    PeOptions pe;     /* positional encoding (pe.h, DESIGN §4) */
    PoolMode pool;
    float layer_scale_init; /* LayerScale gamma init; 0 disables ls1/ls2 */
    float drop_path;        /* stochastic depth rate of the last block (timm's drop_path_rate) */
    bool recompute_attention; /* the backward recomputes the attention core (VitBlockActs) */
} VitConfig;

/* Fills dim, depth, heads and mlp_dim from "tiny", "small" or "base". */
VtCode vit_config_preset(VitConfig *cfg, const char *preset, VtError *err);
/* Checks sizes and their relations, naming the offending field. */
VtCode vit_config_validate(const VitConfig *cfg, VtError *err);

/* Indices of one block's parameters in Vit.param_list (-1 when absent). */
typedef struct VitBlockParams {
    int norm1_w, norm1_b, qkv_w, qkv_b, proj_w, proj_b, ls1;
    int norm2_w, norm2_b, fc1_w, fc1_b, fc2_w, fc2_b, ls2;
} VitBlockParams;

/* One block's saved activations and its drop-path scales. What is cheap
 * to recompute is not kept: the LayerNorm outputs (from the stream and
 * the saved row statistics), GELU's output (from fc1) and the attention
 * output (P v, from probs and qkv) and a rotary encoding's rotated q and
 * k (from qkv) are recomputed by the backward into shared scratch, and q,
 * k, v are read from qkv in place. That keeps about 9 (B, N, D) units per
 * block instead of 21. With recompute_attention the backward also reruns
 * the rest of the attention core (the probabilities) from qkv: probs then
 * points at scratch shared by every block, which saves about 1 unit per
 * block for a few % of step time. */
typedef struct VitBlockActs {
    float *x_mid;                 /* (B, N, D) stream after the attention branch */
    float *ln1_mean, *ln1_rstd;   /* (B*N) statistics of norm1 */
    float *qkv;                   /* (B, N, 3D) */
    float *probs;                 /* (B, H, N, N) */
    float *attn;                  /* (B, N, D) heads merged, before proj: normed */
    float *proj;                  /* (B, N, D) kept for LayerScale's gradient; else NULL */
    float *ln2_mean, *ln2_rstd;   /* (B*N) statistics of norm2 */
    float *fc1;                   /* (B, N, F) before GELU; the backward overwrites it */
    float *fc2;                   /* (B, N, D) as proj */
    float *drop1, *drop2;         /* (B) drop-path scales of the two branches */
} VitBlockActs;

/* Gradient scratch, reused by every block. Buffers whose uses never
 * overlap share memory: ln, attn and patches are the model's normed
 * buffer (each linear backward that writes one of them has read normed,
 * its input, by then; attn is read by the attention backward before ln is
 * written). dL/d(fc1 output), then drop path's gradient for the attention
 * branch, then dL/dqkv live in the block's own fc1 activation, which the
 * backward consumes (fc1 is never read again once GELU's slope is known);
 * tmp and qkv have buffers of their own only when fc1 is smaller (mlp_dim
 * below dim, below 3 dim). */
typedef struct VitGradScratch {
    float *stream;      /* (B, N, D) dL/d(residual stream) */
    float *branch;      /* (B, N, D) dL/d(branch output before LayerScale); with LayerScale only */
    float *tmp;         /* (B, N, D) through drop path when mlp_dim < dim; else NULL */
    float *ln;          /* (B, N, D) dL/d(a LayerNorm's output), shares normed */
    float *attn;        /* (B, N, D) dL/d(attention output), shares normed */
    float *qkv;         /* (B, N, 3D) when mlp_dim < 3 dim; else NULL (the block's fc1 serves) */
    float *patches;     /* (B*Np, D), shares normed */
    float *cls;         /* (B, D) dL/d(stream) of the last block's CLS rows (cls_only_last) */
    float *pooled;      /* (B, D) */
    float *logits;      /* (B, K) */
} VitGradScratch;

/* A Vit's arenas point at its own tensor lists: create it where it will
 * live and pass it by pointer, never by value. */
typedef struct Vit {
    VitConfig cfg;
    int grid;         /* patches per side */
    int grid0;        /* patches per side at the training resolution */
    int num_patches;  /* Np = grid^2 */
    int tokens;       /* N = Np + 1 */
    int batch_cap;    /* largest batch the activations hold */
    bool inference;   /* made by vit_create_inference: forward only */

    TensorList param_list;
    Arena params, grads;
    int patch_w, patch_b, cls_token, pos_embed, norm_w, norm_b, head_w, head_b;
    VitBlockParams *blocks; /* (depth) */

    /* The positional encoding and its q/k hook (NULL when it rotates nothing). */
    Pe pe;
    const QkRotation *rotation;

    TensorList act_list;
    Arena acts;
    float *cols;      /* (B*Np, C*P*P) im2col of the input */
    float *patches;   /* (B*Np, D) the patch embedding; shares normed */
    float **stream;   /* (depth+1) x (B, N, D): stream[0] embedded, stream[l+1] after block l
                       * (the last one (B, D), the CLS rows, with cls_only_last) */
    VitBlockActs *block_acts; /* (depth) */
    VitBlockActs recomputed;  /* with recompute_attention: the shared probs */
    AttnScratch attn;         /* the attention core's scratch, shared by every block */
    float *normed;    /* (B, N, D) scratch: the output of a LayerNorm, the
                       * attention output (attn of every block), and in the
                       * backward the gradients of VitGradScratch that share it */
    float *hidden;    /* (GELU_LINEAR_ROWS, F) scratch: GELU's output, then
                       * its gradient, for a chunk of rows (gelu_linear.c) */
    float *norm_mean, *norm_rstd; /* statistics of the final LayerNorm */
    float *pooled;    /* (B, D) */
    float *logits;    /* (B, K) */
    float *probs;     /* (B, K) softmax of logits */
    float *losses;    /* (B) */
    VitGradScratch grad;
    int last_batch;   /* B of the last forward */
    /* Classifying from the CLS token, the last block needs its attention's
     * keys and values at every token but the rest (proj, the MLP, their
     * norms and residuals, the final norm) at the CLS token alone: those
     * run on the B CLS rows, compacted (B, D) into the first rows of their
     * buffers. cls_in and cls_attn hold the block's input and attention
     * output at the CLS rows. Tests clear cls_only_last to run every token
     * and compare. */
    bool cls_only_last;
    float *cls_in, *cls_attn; /* (B, D) with cls_only_last */
} Vit;

/* How a forward/backward pass runs. */
typedef struct VitPass {
    bool train;         /* drop path active */
    int64_t step;       /* keys the drop-path masks */
    int batch_first;    /* position of this batch's first sample in the global
                         * batch (a data-parallel shard), for the masks */
    uint64_t seed;
    float smoothing;    /* label smoothing of the loss */
    const int *mix_labels; /* mixup/CutMix: each sample's partner's label, or NULL */
    float mix_lambda;      /* the sample's own share of its target (1: unmixed) */
} VitPass;

VtCode vit_create(Vit *m, const VitConfig *cfg, int batch_cap, VtError *err);
/* A model for forward passes alone (evaluation, export): no gradients, and
 * one block's activations and two streams shared by every block instead of
 * every block's kept for the backward (about 1/depth of the activation
 * memory). Its logits equal vit_create's bit for bit; vit_backward refuses
 * it. */
VtCode vit_create_inference(Vit *m, const VitConfig *cfg, int batch_cap, VtError *err);
void vit_free(Vit *m);

/* timm-style initialisation from RNG_INIT streams keyed by tensor index. */
void vit_init_params(Vit *m, uint64_t seed);

/* Logits (B, K) of images (B, C, img, img); valid until the next call. */
const float *vit_forward(Vit *m, const float *images, int B, const VitPass *pass);
/* Forward and mean loss. */
double vit_forward_loss(Vit *m, const float *images, const int *labels, int B,
                        const VitPass *pass);
/* Adds dL/d(parameters) of the last vit_forward_loss into m->grads. It
 * consumes the saved activations: a second backward needs a new forward. */
void vit_backward(Vit *m, const int *labels, const VitPass *pass);

/* Copies src's parameters into dst, a model of the same architecture at
 * another resolution: tensors match by name and shape, except pos_embed,
 * whose patch grid is resampled (pe.h). */
void vit_transfer_params(Vit *dst, const Vit *src);

/* Number of parameters (scalars). */
size_t vit_param_count(const Vit *m);

/* Bytes of the parameter, gradient and activation arenas. */
size_t vit_memory_bytes(const Vit *m);

#endif
