/*
 * config.h - the run configuration: INI files with a strict schema
 * (DESIGN §5).
 *
 * Sections [data] [model] [pe] [optim] [train] [log]. Every key has a type,
 * a range and a default in one schema table (config.c); a file may set any
 * subset. Unknown sections or keys, duplicate keys, malformed or
 * out-of-range values are errors naming the file, the line and the key.
 * `--set section.key=value` overrides apply after the file, with the same
 * checks (the "file" in their messages is "--set"). A call that fails
 * leaves the RunConfig as it was.
 *
 * INI dialect: "[section]" headers and "key = value" lines; comments start
 * with '#' or ';' at the start of a line or after whitespace; a value may be
 * double-quoted (inside quotes \" and \\ are the escapes), which is how to
 * write an empty string or one holding a comment character. CRLF line ends,
 * a UTF-8 byte order mark and a missing final newline are accepted; NUL
 * bytes and lines over 16384 bytes are errors. Booleans: true/false (also
 * yes/no, on/off, 1/0). Lists: comma-separated numbers.
 */
#ifndef VITRAIN_CONFIG_H
#define VITRAIN_CONFIG_H

#include "vitrain/common.h"

#include <stdbool.h>
#include <stdio.h>

enum { VT_PATH_MAX = 4096, VT_NAME_MAX = 128, VT_MAX_CHANNELS = 4 };

typedef enum BadImagePolicy {
    BAD_IMAGE_ERROR,  /* stop before training, naming the file and the reason */
    BAD_IMAGE_SKIP    /* leave the image out, report how many were skipped */
} BadImagePolicy;

typedef enum NanPolicy {
    NAN_STOP,       /* stop the run, naming the step and the tensor */
    NAN_SKIP_STEP   /* leave the parameters as they are and go on (10 in a row stop) */
} NanPolicy;

typedef enum CacheMode {
    CACHE_MEMORY,  /* decoded images in RAM */
    CACHE_FILE,    /* decoded images in a file under the run folder, memory-mapped */
    CACHE_AUTO     /* memory if the decoded set fits in half the available RAM, else file */
} CacheMode;

typedef struct DataSection {
    char root[VT_PATH_MAX];        /* root: folder holding train/ and val/ */
    int img_size;                  /* img_size: training resolution (square) */
    int channels;                  /* channels: 1, 3 (or 4); images are converted */
    float mean[VT_MAX_CHANNELS];   /* mean: per channel, comma-separated, in [0,1] units */
    float std[VT_MAX_CHANNELS];    /* std: per channel, > 0 */
    /* Values given for mean and std: 1 (that value is copied into every
     * entry, so mean[c] is always the channel's value) or `channels`. */
    int mean_count, std_count;
    float crop_pct;                /* crop_pct: eval resize to img_size / crop_pct, center crop */
    float scale[2];                /* scale: random-resized-crop area range, e.g. 0.08,1.0 */
    float ratio[2];                /* ratio: random-resized-crop aspect range, e.g. 0.75,1.3333 */
    bool random_resized_crop;      /* rrc: use random-resized-crop for training */
    int pad;                       /* pad: pad-and-crop margin in pixels (0 = off) */
    float hflip;                   /* hflip: horizontal flip probability */
    float train_fraction;          /* train_fraction: share of each training class, (0, 1] */
    BadImagePolicy on_bad_image;   /* on_bad_image: error | skip */
    CacheMode cache;               /* cache: memory | file | auto */
    int prefetch;                  /* prefetch: batches prepared ahead in the background */
} DataSection;

typedef struct ModelSection {
    char preset[VT_NAME_MAX];      /* preset: tiny | small | base | "" (use the sizes below) */
    int dim, depth, heads, mlp_dim; /* dim, depth, heads, mlp_dim: ignored when preset is
                                     * set; read them through config_model_sizes */
    int patch_size;
    int num_classes;               /* num_classes: 0 = the class folders of data.root/train */
    long long class_digest;        /* class_digest: CRC-32 of the class folder names in label
                                    * order (dataset_class_digest), -1 = not recorded */
    char pool[16];                 /* pool: token | avg (timm's global_pool) */
    float layer_scale;             /* layer_scale: LayerScale init, 0 = off (timm init_values) */
    float drop_path;               /* drop_path: stochastic depth rate (timm drop_path_rate) */
    /* Bookkeeping, not a key: bit 0..3 = dim, depth, heads, mlp_dim were
     * given by a file or --set, so that combining them with a preset is an
     * error in either order. Not written; ignore it when comparing configs. */
    unsigned sizes_set;
} ModelSection;

typedef struct PeSection {
    char type[VT_NAME_MAX];        /* type: none | absolute | (rotary types, DESIGN §4) */
    float theta;                   /* theta: RoPE base (rope_axial, rope_mixed) */
    int block_size;                /* block_size: ComRoPE/LieRE block size */
    float init_std;                /* init_std: ComRoPE generator init std */
    float sigma;                   /* sigma: ComRoPE position perturbation */
    bool learned;                  /* learned: spherical frequencies trainable */
    bool share_layers;             /* share_layers: LieRE generators shared across layers */
    bool share_heads;              /* share_heads: LieRE generators shared across heads */
} PeSection;

typedef struct OptimSection {
    char opt[16];                  /* opt: adamw or lamb */
    float lr, min_lr, warmup_lr;   /* lr, min_lr, warmup_lr */
    float warmup_epochs;           /* warmup_epochs: may be fractional */
    float weight_decay;
    float betas[2];                /* opt_betas: 0.9,0.999 */
    float eps;                     /* opt_eps */
    float clip_grad;               /* clip_grad: 0 = off */
} OptimSection;

typedef struct TrainSection {
    int epochs;
    int batch_size;
    long long seed;
    long long max_steps;           /* max_steps: 0 = no limit (smoke runs) */
    float smoothing;               /* smoothing: label smoothing */
    float mixup, cutmix;           /* mixup, cutmix: Beta alphas, 0 = off */
    float mixup_prob;              /* mixup_prob: share of batches mixed */
    float mixup_switch_prob;       /* mixup_switch_prob: CutMix's share with both on */
    int eval_every;                /* eval_every: evaluate every N epochs (and at the end) */
    int threads;                   /* threads: 0 = OMP_NUM_THREADS or all cores */
    bool recompute_attention;      /* recompute_attention: less memory, a slightly slower step */
    NanPolicy on_nan;              /* on_nan: stop | skip_step */
} TrainSection;

typedef struct LogSection {
    char name[VT_NAME_MAX];        /* name: run folder runs/<name> */
    char dir[VT_PATH_MAX];         /* dir: parent of run folders, default "runs" */
    int every;                     /* every: steps between progress lines when not a terminal */
} LogSection;

typedef struct RunConfig {
    DataSection data;
    ModelSection model;
    PeSection pe;
    OptimSection optim;
    TrainSection train;
    LogSection log;
} RunConfig;

/* Fills every key with its schema default (all bytes are set, so two
 * configs given the same keys compare equal with memcmp once
 * model.sizes_set is cleared). */
void config_defaults(RunConfig *cfg);

/* Reads an INI file over the current values of cfg (call config_defaults
 * first). Errors: "FILE:LINE: ..." naming the key. */
VtCode config_load(RunConfig *cfg, const char *path, VtError *err);

/* Parses INI text; `origin` names it in messages (a path, or "--set"). */
VtCode config_parse(RunConfig *cfg, const char *text, const char *origin, VtError *err);

/* Applies one "section.key=value" override (no comments; the value may be
 * quoted). Errors: "--set section.key=value: ...". */
VtCode config_set(RunConfig *cfg, const char *assignment, VtError *err);

/* The model sizes in effect: the preset's when model.preset is set, else
 * model.dim, depth, heads and mlp_dim. */
void config_model_sizes(const RunConfig *cfg, int *dim, int *depth, int *heads, int *mlp_dim);

/* Checks relations between keys once everything is set (e.g. img_size
 * divisible by patch_size, preset or full sizes, mean/std per channel). */
VtCode config_validate(const RunConfig *cfg, VtError *err);

/* Writes every key, section by section, as a loadable INI (the resolved
 * config) with each key's help as a comment; with a preset, the sizes it
 * decides are written as comments. Parsing the text over config_defaults
 * gives back the same RunConfig (floats use the shortest exact digits).
 * Flushes out; returns false on a write error (errno set). */
bool config_write(const RunConfig *cfg, FILE *out);

/* The text config_write writes, as a malloc'ed string (never NULL: aborts
 * when out of memory, like vt_xmalloc). */
char *config_to_string(const RunConfig *cfg);

/* Prints the schema (section, key, type, range, default, help) as a
 * markdown table: the configuration reference of README/docs. */
void config_print_reference(FILE *out);

#endif
