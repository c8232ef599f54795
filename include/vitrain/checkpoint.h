/*
 * checkpoint.h - training checkpoints and the safetensors export
 * (DESIGN §5).
 *
 * A checkpoint holds the resolved config text, the step and epoch, the best
 * eval top-1 so far, and three named tensor sets with the parameter
 * layout: parameters, AdamW m and v (and the AdamW step count). The RNG
 * needs no state of its own: every stream is keyed by (seed, purpose,
 * epoch/step, index), so the seed in the config and the step restore it.
 * Files are written to a temporary file in the same folder, flushed,
 * fsync'ed and renamed over the target: a crash leaves the old file or the
 * new one, never a mix. A checksum detects corruption on load.
 */
#ifndef VITRAIN_CHECKPOINT_H
#define VITRAIN_CHECKPOINT_H

#include "vitrain/common.h"
#include "vitrain/tensor.h"

#include <stdbool.h>

typedef struct CheckpointState {
    int64_t step;          /* steps completed */
    int64_t epoch;         /* epochs completed */
    int64_t optim_t;       /* AdamW step count */
    double best_top1;      /* best eval top-1 so far, -1 if none */
    const char *config;    /* resolved INI text */
} CheckpointState;

/* Writes params, m and v (all laid out by `list`) atomically to path. */
VtCode checkpoint_save(const char *path, const CheckpointState *state, const TensorList *list,
                       const float *params, const float *m, const float *v, VtError *err);

/* Reads only the config text of a checkpoint (malloc'ed, caller frees), to
 * rebuild the model before checkpoint_load. */
VtCode checkpoint_read_config(const char *path, char **config, VtError *err);

/* Loads into buffers laid out by `list`; every tensor of the list must be
 * in the file with the same shape (an error names the first that is not).
 * m and v may be NULL (evaluation). state->config is malloc'ed. */
VtCode checkpoint_load(const char *path, CheckpointState *state, const TensorList *list,
                       float *params, float *m, float *v, VtError *err);

/* Writes the tensors of `list` from params as F32 safetensors with
 * __metadata__ {"format": "vitrain", "config": config_text}, atomically. */
VtCode safetensors_save(const char *path, const TensorList *list, const float *params,
                        const char *config_text, VtError *err);

/* Reads a safetensors file into buffers laid out by `list` (same names and
 * shapes, F32); config_text (may be NULL) receives __metadata__.config,
 * malloc'ed. The header is validated: its length, the JSON syntax, dtypes,
 * shapes and offsets against the file size. */
VtCode safetensors_load(const char *path, const TensorList *list, float *params,
                        char **config_text, VtError *err);

#endif
