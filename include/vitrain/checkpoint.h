/*
 * checkpoint.h - training checkpoints and the safetensors export
 * (DESIGN §5).
 *
 * A checkpoint holds the resolved config text, the step and epoch, the best
 * eval top-1 so far, the current epoch's loss totals (so that a run resumed
 * mid-epoch logs that epoch's train_loss over all its steps), and three
 * named tensor sets with the parameter
 * layout: parameters, AdamW m and v (and the AdamW step count). The RNG
 * needs no state of its own: every stream is keyed by (seed, purpose,
 * epoch/step, index), so the seed in the config and the step restore it.
 * Files are written to a temporary file in the same folder, flushed,
 * fsync'ed and renamed over the target: a crash leaves the old file or the
 * new one, never a mix; a failed save returns VT_ERR_IO ("cannot write
 * <path>: <strerror>") and leaves the old file and no temporary file. A
 * CRC-32 over the whole file detects corruption on load. The byte layout is
 * documented at the top of src/io/checkpoint.c.
 *
 * Errors on load: VT_ERR_IO when the file cannot be read, VT_ERR_DATA for
 * its content: bad magic, another format version, truncation ("<path> is
 * truncated"), a checksum mismatch ("<path> is corrupt: checksum
 * mismatch"), a length field the file cannot hold, and any difference from
 * the model's TensorList: a tensor with another shape ("checkpoint <path>:
 * <name> has shape (48, 16) in the file, the model expects (96, 32)"), one
 * the file lacks, or one the model lacks.
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
    double epoch_loss_sum; /* the current epoch's finite losses, summed (0 at its start) */
    int64_t epoch_loss_steps; /* how many; a version-1 file loads 0 and 0 */
    const char *config;    /* resolved INI text */
} CheckpointState;

/* Writes params, m and v (all laid out by `list`, none NULL) atomically to
 * path. A NULL state->config is written as empty text. */
VtCode checkpoint_save(const char *path, const CheckpointState *state, const TensorList *list,
                       const float *params, const float *m, const float *v, VtError *err);

/* Reads only the config text of a checkpoint (malloc'ed, caller frees), to
 * rebuild the model before checkpoint_load. The file is verified as by
 * checkpoint_load (magic, version, size, checksum) first. */
VtCode checkpoint_read_config(const char *path, char **config, VtError *err);

/* Loads into buffers laid out by `list`; every tensor of the list must be
 * in the file with the same shape, and every tensor of the file in the list
 * (an error names the first that is not; the file's order may differ from
 * the list's). m and v may be NULL (evaluation): their data is skipped.
 * state->config is malloc'ed (caller frees). The whole file is verified
 * before any buffer is written; on failure state is untouched, and the
 * buffers too unless the file could not be read or changed during the
 * load. */
VtCode checkpoint_load(const char *path, CheckpointState *state, const TensorList *list,
                       float *params, float *m, float *v, VtError *err);

/* Writes the tensors of `list` from params as F32 safetensors with
 * __metadata__ {"format": "vitrain", "config": config_text}, atomically:
 * tensors in list order, contiguous, the header padded with spaces to a
 * multiple of 8 bytes. config_text must be valid UTF-8 (VT_ERR_ARGUMENT
 * otherwise, nothing written); NULL leaves "config" out. */
VtCode safetensors_save(const char *path, const TensorList *list, const float *params,
                        const char *config_text, VtError *err);

/* Reads a safetensors file into buffers laid out by `list` (same names and
 * shapes, F32; tensors the model lacks are an error too); config_text (may
 * be NULL) receives __metadata__.config, malloc'ed, or NULL if the file
 * has none. The header is validated before any data is read: its length
 * against the file size, the JSON syntax (strict), dtypes, shapes and
 * data_offsets against the data section. Errors name the file and the
 * tensor or the header byte at fault. */
VtCode safetensors_load(const char *path, const TensorList *list, float *params,
                        char **config_text, VtError *err);

/* Reads only __metadata__.config (malloc'ed, caller frees), validating the
 * header as safetensors_load does; a file without one is VT_ERR_DATA. */
VtCode safetensors_read_config(const char *path, char **config_text, VtError *err);

#endif
