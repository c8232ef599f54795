/*
 * optim.h - AdamW with global gradient-norm clipping, and the learning-rate
 * schedule (DESIGN §3).
 *
 * The moments m and v are arenas of the parameters' TensorList, so the step
 * is one pass over flat arrays, tensor by tensor for the weight-decay flag.
 */
#ifndef VITRAIN_OPTIM_H
#define VITRAIN_OPTIM_H

#include "vitrain/tensor.h"

#include <stdbool.h>

/* Linear warmup from warmup_lr to lr over warmup_steps, then cosine from lr
 * to min_lr over the steps from warmup_steps to total_steps, min_lr after,
 * stepped per iteration; steps count from 0. (timm's CosineLRScheduler by
 * default runs its cosine over the whole run, the warmup overriding its
 * first steps; with warmup_prefix=True it runs it after the warmup, as
 * here, but its factory then adds the warmup epochs to the run.) */
typedef struct LrSchedule {
    float lr, min_lr, warmup_lr;
    int64_t warmup_steps, total_steps;
} LrSchedule;

float lr_at_step(const LrSchedule *s, int64_t step);

typedef struct AdamWConfig {
    float beta1, beta2, eps;
    float weight_decay;  /* decoupled; skipped for VT_TENSOR_NO_DECAY tensors */
    float clip_grad;     /* max global L2 norm of the gradient; 0 = no clipping */
    bool lamb;           /* LAMB's layer-wise trust ratio on top (adamw.c) */
} AdamWConfig;

/* timm's defaults: betas (0.9, 0.999), eps 1e-8, weight decay 0.05. */
AdamWConfig adamw_defaults(void);

typedef struct AdamW {
    AdamWConfig cfg;
    Arena m, v;
    int64_t t;          /* steps taken; the bias correction uses t + 1 */
    double *partials;   /* per-chunk sums of squares for the gradient norm */
    int64_t chunks;
} AdamW;

void adamw_create(AdamW *opt, const TensorList *params, const AdamWConfig *cfg);
void adamw_free(AdamW *opt);

/* Global L2 norm of an arena. Summed in fixed chunks combined in order, so it
 * is the same for any thread count. */
double grad_global_norm(AdamW *opt, const Arena *grads);

/* Applies one AdamW step with learning rate lr to the gradients scaled by
 * clip_grad / (norm + 1e-6) when their global norm exceeds cfg.clip_grad > 0
 * (torch's clip_grad_norm_; the scaling is applied on the fly, the gradient
 * arena is left unchanged). Returns the gradient norm before clipping. */
double adamw_step(AdamW *opt, Arena *params, Arena *grads, float lr);

/* adamw_step with the gradient norm already known (grad_global_norm), so a
 * caller can refuse a non-finite gradient before any parameter changes. */
void adamw_apply(AdamW *opt, Arena *params, Arena *grads, float lr, double norm);

/* Index of the first tensor of the arena holding a NaN or an infinity, -1
 * if none: names the culprit of a numerical fault. */
int arena_first_non_finite(const Arena *arena);

#endif
