/*
 * data.h - ImageNet-style image folders: scanning, decoding, caching,
 * augmentation and background batch preparation (DESIGN §1, §3, §6).
 *
 * A split is root/<split>/<class>/<file>; classes are the subfolder names
 * sorted by strcmp, like torchvision's ImageFolder, and label i is the i-th
 * class. Files are taken by content, not extension: whatever stb_image
 * decodes (JPEG, PNG, BMP, PGM/PPM, TGA, GIF). Hidden files (".*") are
 * ignored.
 *
 * Each image is decoded once, converted to the configured channel count
 * (gray -> RGB replicates, RGB -> gray uses ITU-R BT.601 luma, for 1 or 3
 * channels alpha is composited over black, 4 channels keep straight alpha
 * or add an opaque one; details in src/data/folder.c), resized so that its
 * shorter side is the cache side (antialiased bilinear), and kept as uint8
 * in the cache (memory, or an unlinked file under cache_dir, mapped).
 * Files that are not images, unreadable, truncated, empty, or declare more
 * than 16384 pixels per side or 2^28 pixels are bad images (see
 * BadImagePolicy). Batches are cut from the cache by a background thread
 * (src/data/loader.c); augmentation follows torchvision (src/data/augment.c).
 */
#ifndef VITRAIN_DATA_H
#define VITRAIN_DATA_H

#include "vitrain/common.h"
#include "vitrain/config.h"

#include <stdbool.h>
#include <stdint.h>

/* The largest image side decoded or cached, in pixels. */
enum { DATA_MAX_SIDE = 16384 };

/* One split of an image folder, decoded into the cache. */
typedef struct Dataset {
    int num_classes;
    char **class_names;   /* (num_classes) */
    int count;            /* images kept (after skipping bad ones) */
    char **paths;         /* (count) full paths, root/split/class/file */
    int *labels;          /* (count) */
    int skipped;          /* bad images left out under BAD_IMAGE_SKIP */
    int channels;         /* C of the cached images */
    int cache_side;       /* shorter side of every cached image */
    /* Cached pixels: image i is (height[i], width[i], C) HWC uint8 at
     * pixels + offset[i]. */
    int *height, *width;
    uint64_t *offset;
    uint8_t *pixels;
    uint64_t pixel_bytes; /* bytes used by the images */
    uint64_t map_bytes;   /* bytes allocated or mapped at pixels */
    bool mapped;          /* pixels is a mapping of a cache file */
} Dataset;

typedef struct DatasetOptions {
    int channels;
    int cache_side;              /* resize so the shorter side is this */
    BadImagePolicy on_bad_image;
    CacheMode cache;
    const char *cache_dir;       /* where CACHE_FILE puts its file (NULL: $TMPDIR or /tmp) */
    bool progress;               /* print decoding progress to stderr */
    /* A class-stratified subset (data.train_fraction): keep round(fraction * n),
     * at least one, of the n files of each class, chosen by fraction_seed.
     * 0 or 1 keep everything. */
    float fraction;
    uint64_t fraction_seed;
} DatasetOptions;

/* Scans root/split and decodes every image. `expected_classes`, when not
 * NULL, is the class list of another split that this one must match.
 * Errors name the folder or file and the reason (stbi_failure_reason,
 * strerror): missing split, no classes, an empty class folder, a
 * mismatched class list, a bad image under BAD_IMAGE_ERROR. */
VtCode dataset_open(Dataset *ds, const char *root, const char *split,
                    const DatasetOptions *opts, const Dataset *expected_classes, VtError *err);
void dataset_close(Dataset *ds);

/* CRC-32 over the class folder names in label order, each followed by a
 * NUL: what a model records of the classes it was trained on
 * (model.class_digest), so that a folder with other classes, or the same
 * ones in another order, is not evaluated against the wrong labels. */
long long dataset_class_digest(const Dataset *ds);

/* How a loader cuts samples out of the cache. */
/* Mixup and CutMix on training batches (timm's Mixup, mode "batch"): with
 * probability prob a batch is mixed, by CutMix with probability
 * switch_prob where both alphas are set; lambda ~ Beta(alpha, alpha). An
 * alpha of 0 turns that kind off. */
typedef struct MixupOptions {
    float mixup_alpha, cutmix_alpha, prob, switch_prob;
} MixupOptions;

typedef struct LoaderOptions {
    int batch_size;
    int img_size;                /* output side S */
    bool train;                  /* shuffle + augment + drop the last partial batch */
    uint64_t seed;
    int64_t start_step;          /* training: the first batch delivered is this step's */
    /* Augmentation (train) and evaluation geometry. */
    bool random_resized_crop;
    float scale[2], ratio[2];
    int pad;
    float hflip;
    float crop_pct;              /* eval: resize to S / crop_pct, center crop S; (0, 1] */
    float mean[VT_MAX_CHANNELS], std[VT_MAX_CHANNELS];
    int prefetch;                /* batches prepared ahead (>= 1); one more slot is
                                  * the batch the caller holds */
    /* Data-parallel sharding (dist.h): this loader delivers part `shard` of
     * `shards` (0 or 1: everything). */
    int shard, shards;
    MixupOptions mixup;          /* training batches only */
} LoaderOptions;

typedef struct Batch {
    float *images;     /* (B, C, S, S) normalized */
    int *labels;       /* (B) */
    int *mix_labels;   /* (B) the label of each sample's mixing partner */
    float mix_lambda;  /* each sample's own share of its image and target; 1: unmixed */
    int *indices;      /* (B) dataset indices */
    int size;          /* B: batch_size / shards, or less for the last eval batch */
    int first;         /* training: position of images[0] in the global batch */
    int64_t step;      /* training: global step; eval: batch number */
    int64_t epoch;
} Batch;

typedef struct Loader Loader;

/* Training loaders deliver an endless stream: step s is batch
 * s % batches_per_epoch of epoch s / batches_per_epoch, in the order of
 * the RNG_DATA_ORDER stream of that epoch (seed, epoch): a Fisher-Yates
 * shuffle (rng_shuffle) of 0..count-1, whose last count % B samples are
 * dropped. Each sample is augmented from the RNG_AUGMENT stream (seed,
 * epoch, dataset index): crop (random-resized-crop, or eval resize + center
 * crop then pad-and-crop), then horizontal flip. The result depends only on
 * (seed, step), never on timing, threads or the batch position: a resumed
 * run sees the same batches. Eval loaders deliver every sample once, in
 * dataset order, the last batch possibly partial; Batch.epoch is 0.
 * Sharded (shards > 1), a training loader delivers samples
 * [shard * B/shards, (shard + 1) * B/shards) of each global batch of B
 * (B % shards == 0, else VT_ERR_ARGUMENT), exactly as the unsharded one
 * prepares them; an eval loader delivers the contiguous part
 * [shard * count/shards, (shard + 1) * count/shards) of the split, in
 * batches of B/shards, and nothing when that part is empty.
 * Errors: bad options (VT_ERR_ARGUMENT), a training set smaller than one
 * batch (VT_ERR_DATA). One background pthread prepares the batches; it never
 * uses OpenMP. ds must outlive the loader. Memory: prefetch + 1 slots of
 * B * C * S * S floats. */
VtCode loader_create(Loader **out, const Dataset *ds, const LoaderOptions *opts, VtError *err);
/* The next batch; valid until the following call. Returns false when an
 * eval loader is exhausted. */
bool loader_next(Loader *ld, Batch *batch);
/* Training: full batches per epoch (count / B); eval: the batches of this
 * shard, ceil(count / B) unsharded. */
int64_t loader_batches_per_epoch(const Loader *ld);
/* Stops the background thread (also mid-stream) and frees the loader. */
void loader_destroy(Loader *ld);

/* timm's eval resize floor(S / crop_pct), exact for float crop_pct values
 * such as 0.8f: the cache side that makes evaluation at S crop without
 * resampling. INT_MAX where that exceeds an int; a side above
 * DATA_MAX_SIDE is refused by dataset_open. */
int loader_eval_side(int img_size, float crop_pct);

/* ---- mixup and CutMix (src/data/mixup.c) ---------------------------------- */

/* One batch's draw: lambda (1: no mixing) and, for CutMix, the box
 * [y0, y1) x [x0, x1) pasted from the partner, lambda corrected to the
 * share the box leaves. */
typedef struct MixDraw {
    float lambda;
    bool cutmix;
    int y0, y1, x0, x1;
} MixDraw;

/* The draw of training step `step`, from the stream (seed, RNG_MIXUP,
 * step): every rank of a data-parallel run draws the same. */
MixDraw mixup_draw(const MixupOptions *o, uint64_t seed, int64_t step, int S);

/* Mixes the batch's images (B, C, S, S) in pairs (0 with 1, 2 with 3, ...;
 * an odd last sample stays itself), by d, and fills mix_labels and
 * mix_lambda. Pairs of neighbours keep each pair inside an even shard of
 * the global batch, so a data-parallel run mixes as one process does (the
 * trainer refuses odd shards). */
void mixup_apply(const MixDraw *d, Batch *b, int C, int S);

/* ---- patch shuffle (LieRE Table 5) --------------------------------------- */

/* A permutation of `tiles` patch positions drawn from the RNG_PATCH_SHUFFLE
 * stream (seed, tiles): order (tiles). */
void patch_order_shuffled(int *order, int tiles, uint64_t seed);

/* Moves patch tile order[t] of every image to tile t (tiles row-major, the
 * token order of DESIGN §2), in place. images (B, C, S, S), scratch
 * (C, S, S), order (Np) with Np = (S / P)^2, S a multiple of P. */
void patch_shuffle(float *images, float *scratch, int B, int C, int S, int P, const int *order);

#endif
