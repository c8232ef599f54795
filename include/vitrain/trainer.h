/*
 * trainer.h - training and evaluation runs over image folders: the model
 * a RunConfig describes, its run folder, logs, checkpoints and export
 * (DESIGN §1, §5).
 *
 * Run folder <log.dir>/<log.name>/:
 *   config.ini         the resolved config
 *   steps.csv          step,epoch,loss,lr,grad_norm,img_per_sec
 *   summary.csv        epoch,train_loss,eval_loss,eval_top1,eval_top5,lr,
 *                      img_per_sec,epoch_seconds (one row per epoch)
 *   checkpoint-last    after every epoch (and at max_steps)
 *   checkpoint-best    the checkpoint with the best eval_top1
 *   model.safetensors  the final parameters, timm names
 *   report.md          the final numbers
 */
#ifndef VITRAIN_TRAINER_H
#define VITRAIN_TRAINER_H

#include "vitrain/config.h"
#include "vitrain/data.h"
#include "vitrain/vit.h"

#include <stdio.h>

/* The model config of a run: sizes (preset resolved), encoding, pooling,
 * classes (model.num_classes, resolved), at resolution img_size. */
VtCode vit_config_from_run(VitConfig *vc, const RunConfig *cfg, int img_size, VtError *err);

/* Loader options of a run for one split and resolution. */
LoaderOptions loader_options_from_run(const RunConfig *cfg, int img_size, bool train,
                                      int64_t start_step);

typedef struct EvalResult {
    int img_size;
    int count;
    double loss, top1, top5;  /* top-k in percent; k = min(5, K) for top5 */
    /* The sums behind them, which shards of a split add up. */
    double loss_sum;
    int64_t top1_hits, top5_hits;
} EvalResult;

typedef struct EvalOptions {
    FILE *dump;              /* not NULL: one CSV row per image, path,label,logit_0,... */
    const int *patch_order;  /* not NULL: (Np) tiles moved by patch_shuffle before the
                              * model sees a batch (LieRE Table 5) */
} EvalOptions;

/* Evaluates m over every batch of an eval loader (opts may be NULL). */
VtCode evaluate(Vit *m, Loader *ld, const Dataset *ds, const EvalOptions *opts,
                EvalResult *result, VtError *err);
/* loss, top1 and top5 from count and the sums (NaN for no images). */
void evaluate_finish(EvalResult *result);

/* Trains the run cfg describes into run_dir. resume_checkpoint: NULL for a
 * new run (run_dir must not hold one already), else the checkpoint to
 * continue from; the caller builds cfg from that checkpoint's config (plus
 * any overrides), so the run continues bit-identically. */
VtCode train_run(const RunConfig *cfg, const char *run_dir, const char *resume_checkpoint,
                 VtError *err);

#endif
