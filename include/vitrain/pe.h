/*
 * pe.h - positional encodings (DESIGN §4) behind one interface.
 *
 * An encoding is a PeKind: a table of functions in its own file under
 * src/pe/, listed once in the registry (pe.c). The model calls it at fixed
 * points:
 *   create    registers the encoding's parameters (DESIGN §4 names/layouts)
 *   init      overwrites them with the encoding's own initialisation
 *   prepare   once per forward pass: everything that depends only on
 *             positions and parameters (the rotations), shared by the batch
 *   forward   per layer, on q and on k: x_n <- R(p_n) x_n in place, in
 *             the rows of the qkv buffer (QkRotation in attention.h says
 *             how they lie)
 *   backward  per layer, on dq and on dk: dx_n <- R(p_n)^T dx_n in place,
 *             in the rows of dL/dqkv, and collects what the parameter
 *             gradient needs from them and the rotated rows forward left
 *   finish    after the whole backward: parameter gradients, added into
 *             the gradient arena
 * or, instead of forward and backward, the same one (image, head) at a
 * time, which the attention calls inside its loop over heads, on q and k
 * together (PeHeadRows):
 *   forward_head     tile (N, Dh) <- R raw for image b, head h
 *   backward_head    the rows of (b, h) in raw_grad <- R^T tile; adds
 *                    what the parameter gradient needs to head_grad
 *                    (head_grad_floats of them, NULL when 0), the part of
 *                    b's chunk of the batch and head h
 *   backward_reduce  adds those parts, laid out (chunks, H,
 *                    head_grad_floats), to the encoding's sums
 * (pe_forward and pe_backward run either form on whole tensors). A kind
 * may have both forms, the per-head one used where by_heads says so.
 * The learned absolute encoding is additive instead (pos_embed, added after
 * the CLS concat by the model); encodings without rotation leave forward
 * NULL. Token 0 is the CLS token; token 1 + r * grid_w + c is the patch at
 * row r, column c.
 */
#ifndef VITRAIN_PE_H
#define VITRAIN_PE_H

#include "vitrain/attention.h"
#include "vitrain/common.h"
#include "vitrain/tensor.h"

#include <stdbool.h>
#include <stdint.h>

enum { PE_NAME_MAX = 32, PE_MAX_PARAMS = 4 };

/* The [pe] section of a config (DESIGN §4, §5). */
typedef struct PeOptions {
    char type[PE_NAME_MAX];  /* none, absolute, rope_axial, rope_mixed, spherical,
                                comrope_ap, comrope_ld, liere */
    float theta;             /* RoPE frequency base */
    int block_size;          /* ComRoPE / LieRE block size b */
    float init_std;          /* ComRoPE generator init std */
    float sigma;             /* ComRoPE training position perturbation */
    bool learned;            /* spherical: trainable frequencies */
    bool share_layers;       /* LieRE: one generator set for every layer */
    bool share_heads;        /* LieRE: one generator set for every head */
} PeOptions;

/* Defaults of DESIGN §4 with the given type. */
PeOptions pe_options(const char *type);

/* Writes into out the names of o's options (comma-separated) that differ
 * from their defaults although its type does not read them, "" if none;
 * returns how many. A known type is assumed (pe_find). */
int pe_ignored_options(const PeOptions *o, char *out, size_t size);

typedef struct PeGeometry {
    int depth, heads, head_dim;
    int grid_h, grid_w;    /* patch grid at the current resolution */
    int grid_h0, grid_w0;  /* patch grid at the training resolution */
} PeGeometry;

/* What a pass needs to know beyond the parameters. */
typedef struct PeStep {
    bool train;      /* ComRoPE perturbs positions only in training */
    int64_t step;    /* keys the perturbation */
    uint64_t seed;
} PeStep;

typedef struct Pe Pe;

/* The rows a per-head call turns for one (image, head): q and k of the
 * attention (count 2), token by token, so that each token's rotation is
 * read once for both; or one tensor alone (count 1, pe_forward). */
typedef struct PeHeadRows {
    int count;
    float *tile[2];         /* (N, Dh): the rotated rows, or their gradient */
    const float *raw[2];    /* the raw rows (QkRotation, attention.h) */
    float *raw_grad[2];     /* the backward's output: raw rows of the gradient */
    int raw_stride;
} PeHeadRows;

/* The options besides type, as bits of PeKind.reads. */
enum {
    PE_READS_THETA = 1 << 0,
    PE_READS_BLOCK_SIZE = 1 << 1,
    PE_READS_INIT_STD = 1 << 2,
    PE_READS_SIGMA = 1 << 3,
    PE_READS_LEARNED = 1 << 4,
    PE_READS_SHARE_LAYERS = 1 << 5,
    PE_READS_SHARE_HEADS = 1 << 6,
};

typedef struct PeKind {
    const char *name;
    unsigned reads; /* the PeOptions it reads (PE_READS_*); the rest it ignores */
    bool additive;  /* the model adds pos_embed (absolute) */
    VtCode (*check)(const PeOptions *o, const PeGeometry *g, VtError *err);
    void (*create)(Pe *pe, TensorList *params);
    void (*init)(Pe *pe, float *params, uint64_t seed);           /* params: arena base */
    void (*prepare)(Pe *pe, const float *params, const PeStep *step);
    void (*forward)(const Pe *pe, int layer, float *x, int stride, const AttnDims *d);
    void (*backward)(Pe *pe, int layer, float *dx, const float *y, int stride,
                     const AttnDims *d);
    void (*forward_head)(const Pe *pe, int layer, int b, int h, const PeHeadRows *rows,
                         const AttnDims *d);
    void (*backward_head)(const Pe *pe, int layer, int b, int h, const PeHeadRows *rows,
                          float *head_grad, const AttnDims *d);
    void (*backward_reduce)(Pe *pe, int layer, const float *head_grads, int chunks,
                            const AttnDims *d);
    int (*head_grad_floats)(const Pe *pe);  /* NULL: none */
    bool (*by_heads)(const Pe *pe);         /* NULL: whenever forward_head is set */
    void (*finish)(Pe *pe, const float *params, float *grads);     /* arena bases */
    void (*destroy)(Pe *pe);
} PeKind;

struct Pe {
    const PeKind *kind;
    PeOptions opt;
    PeGeometry geo;
    const TensorList *list;       /* the parameter list: offsets of param[] */
    QkRotation hook;              /* calls kind->forward/backward; ctx = this Pe */
    int param[PE_MAX_PARAMS];     /* the encoding's tensors in the parameter list, -1 unused */
    void *state;                  /* the kind's own */
};

/* Tensor `index` of the parameter list inside an arena (params or grads). */
static inline float *pe_tensor(const Pe *pe, const float *arena_base, int index)
{
    return (float *)arena_base + pe->list->specs[index].offset;
}

/* The kind called name, or NULL. */
const PeKind *pe_find(const char *name);
/* Comma-separated list of every kind's name, for messages. */
const char *pe_names(void);

/* Validates the options (an unknown type or a head dim that does not fit
 * is an error naming pe.type / pe.block_size) and registers the
 * parameters. The Pe must not move afterwards (its hook points at it). */
VtCode pe_create(Pe *pe, const PeOptions *o, const PeGeometry *g, TensorList *params,
                 VtError *err);
void pe_destroy(Pe *pe);
/* The hook the attention calls, NULL for encodings without rotation. */
const QkRotation *pe_rotation(const Pe *pe);

/* The encoding's rotation of whole tensors, in whichever form its kind
 * has, for tests and tools: x (B, H, N, Dh) <- R x_raw, raw rows as in
 * QkRotation (attention.h); dx_raw's rows <- R^T dx (dx overwritten), with
 * x_raw the forward's input. For a kind that rotates in place these copy
 * the rows (and the backward rotates x_raw again): they allocate. */
void pe_forward(const Pe *pe, int layer, float *x, const float *x_raw, int raw_stride,
                const AttnDims *d);
void pe_backward(Pe *pe, int layer, float *dx_raw, float *dx, const float *x_raw, int raw_stride,
                 const AttnDims *d);

/* Patch positions used by the encodings: token t >= 1 is patch
 * (row, col) = ((t-1) / grid_w, (t-1) % grid_w). */
static inline int pe_row(const PeGeometry *g, int token) { return (token - 1) / g->grid_w; }
static inline int pe_col(const PeGeometry *g, int token) { return (token - 1) % g->grid_w; }

/*
 * Resamples the patch part of a learned absolute position embedding from a
 * gh0 x gw0 grid to gh x gw, bicubic, like timm's resample_abs_pos_embed:
 * torch.nn.functional.interpolate(mode='bicubic', antialias=True,
 * align_corners=False), i.e. the separable cubic kernel with a = -0.5,
 * widened by the scale when shrinking, weights normalised over the pixels
 * inside the grid (DESIGN §4.1). The CLS slot is not part of src or dst.
 */
void pos_embed_resample(float *dst /* (gh*gw, D) */, int gh, int gw,
                        const float *src /* (gh0*gw0, D) */, int gh0, int gw0, int D);

#endif
