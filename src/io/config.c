/*
 * config.c - the run configuration (DESIGN §5, config.h).
 *
 * One schema table (`keys` below) drives everything: defaults are its
 * default texts run through the same parser as user input, the INI and
 * --set parsers look keys up in it, config_validate re-checks every value
 * against it, and config_write / config_print_reference print it. Adding a
 * key is one table row plus the RunConfig field.
 *
 * Promises: strict input (unknown sections or keys, duplicates, malformed,
 * non-finite, overflowing or out-of-range values are errors naming origin,
 * line and key); a failed call leaves the RunConfig unchanged; the written
 * INI parses back to the identical RunConfig. Numbers are read with strtod,
 * so the C locale is assumed (vitrain never calls setlocale).
 */
#include "vitrain/config.h"
#include "vitrain/data.h"
#include "vitrain/utf8.h"
#include "vitrain/vit.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    /* Longer lines are errors, never truncated; a path of VT_PATH_MAX - 1
     * bytes with every byte escaped still fits. */
    LINE_MAX_BYTES = 4 * VT_PATH_MAX,
    FILE_MAX_BYTES = 1 << 20,       /* a config is a few KiB; more is a wrong path */
    WHY_MAX = 768,                  /* one reason, before the origin prefix */
    SHOWN_MAX = 80,                 /* bytes of user text quoted back in messages */
    VALUE_TEXT_MAX = 2 * VT_PATH_MAX + 8, /* a written value: escapes may double it */
    SUGGEST_MAX = 64                /* longer names get no did-you-mean */
};

/* Enums are stored through an int (memcpy), so they must be int-sized. */
_Static_assert(sizeof(BadImagePolicy) == sizeof(int), "enum size");
_Static_assert(sizeof(CacheMode) == sizeof(int), "enum size");

typedef enum KeyType { T_INT, T_INT64, T_FLOAT, T_BOOL, T_STRING, T_ENUM, T_FLOATS } KeyType;

/* What a string value may hold. */
typedef enum StringRule {
    STR_PATH,      /* non-empty, no control characters */
    STR_IDENT,     /* [a-z0-9_]+; the module using it checks the name itself */
    STR_RUN_NAME,  /* [A-Za-z0-9._-]+ but not "." or "..": one folder name */
    STR_CHOICE     /* one of .choices ("" allowed where listed) */
} StringRule;

enum { OPEN_LO = 1, OPEN_HI = 2 }; /* a float bound that is excluded */

typedef struct KeySpec {
    const char *section, *key;
    KeyType type;
    size_t offset, size;        /* the RunConfig field and its size in bytes */
    long long ilo, ihi;         /* T_INT, T_INT64: inclusive range */
    double flo, fhi;            /* T_FLOAT, T_FLOATS (each element) */
    int open;                   /* OPEN_LO | OPEN_HI */
    int min_len, max_len;       /* T_FLOATS: how many elements */
    bool has_count;             /* T_FLOATS of variable length: count stored at... */
    size_t count_offset;        /* ...this int field */
    StringRule rule;            /* T_STRING */
    const char *const *choices; /* T_ENUM (index = enum value), STR_CHOICE; NULL-ended */
    const char *def;            /* default, as INI value text */
    const char *help;           /* one line, no '|' (it lands in a markdown table) */
} KeySpec;

#define FIELD(sec, name, member)                                            \
    .section = (sec), .key = (name), .offset = offsetof(RunConfig, member), \
    .size = sizeof(((RunConfig *)0)->member)
#define INT(lo, hi) .type = T_INT, .ilo = (lo), .ihi = (hi)
#define INT64(lo, hi) .type = T_INT64, .ilo = (lo), .ihi = (hi)
#define FLOAT(lo, hi, op) .type = T_FLOAT, .flo = (lo), .fhi = (hi), .open = (op)
#define FLOATS(n0, n1, lo, hi, op) \
    .type = T_FLOATS, .min_len = (n0), .max_len = (n1), .flo = (lo), .fhi = (hi), .open = (op)
#define COUNT(member) .has_count = true, .count_offset = offsetof(RunConfig, member)
#define BOOL .type = T_BOOL
#define STRING(r) .type = T_STRING, .rule = (r)
#define CHOICE(list) .type = T_STRING, .rule = STR_CHOICE, .choices = (list)
#define ENUM(list) .type = T_ENUM, .choices = (list)

static const char *const bad_image_names[] = {"error", "skip", NULL};      /* BadImagePolicy */
static const char *const nan_names[] = {"stop", "skip_step", NULL};        /* NanPolicy */
static const char *const cache_names[] = {"memory", "file", "auto", NULL}; /* CacheMode */
static const char *const preset_names[] = {"", "tiny", "small", "base", NULL};
static const char *const pool_names[] = {"token", "avg", NULL};
static const char *const opt_names[] = {"adamw", "lamb", NULL};

static const char *const sections[] = {"data", "model", "pe", "optim", "train", "log"};
enum { SECTION_COUNT = sizeof sections / sizeof sections[0] };

/* Rows of one section are contiguous and in section order: the writer
 * prints them in table order. */
static const KeySpec keys[] = {
    {FIELD("data", "root", data.root), STRING(STR_PATH), .def = "data/fashion-mnist",
     .help = "folder holding train/ and val/, one sub-folder per class"},
    {FIELD("data", "img_size", data.img_size), INT(1, 8192), .def = "28",
     .help = "training resolution in pixels (square images)"},
    {FIELD("data", "channels", data.channels), INT(1, 4), .def = "1",
     .help = "image channels: 1 (grey), 3 (RGB) or 4 (RGBA); images are converted"},
    {FIELD("data", "mean", data.mean), FLOATS(1, VT_MAX_CHANNELS, 0.0, 1.0, 0),
     COUNT(data.mean_count), .def = "0.2860",
     .help = "per-channel mean in [0,1] units; one value applies to every channel"},
    {FIELD("data", "std", data.std), FLOATS(1, VT_MAX_CHANNELS, 0.0, 1.0, OPEN_LO),
     COUNT(data.std_count), .def = "0.3530",
     .help = "per-channel standard deviation; one value applies to every channel"},
    {FIELD("data", "crop_pct", data.crop_pct), FLOAT(0.0, 1.0, OPEN_LO), .def = "1.0",
     .help = "evaluation: resize to img_size / crop_pct, then center-crop img_size"},
    {FIELD("data", "scale", data.scale), FLOATS(2, 2, 0.0, 1.0, OPEN_LO), .def = "0.08,1.0",
     .help = "random-resized-crop area range, as fractions of the image"},
    {FIELD("data", "ratio", data.ratio), FLOATS(2, 2, 0.0, INFINITY, OPEN_LO | OPEN_HI),
     .def = "0.75,1.3333333", .help = "random-resized-crop aspect-ratio range"},
    {FIELD("data", "rrc", data.random_resized_crop), BOOL, .def = "false",
     .help = "train with random-resized-crop (scale, ratio)"},
    {FIELD("data", "pad", data.pad), INT(0, 1024), .def = "0",
     .help = "pad-and-random-crop margin in pixels, 0 = off"},
    {FIELD("data", "train_fraction", data.train_fraction), FLOAT(0.0, 1.0, OPEN_LO),
     .def = "1.0",
     .help = "share of each training class to use (a class-stratified subset drawn with train.seed; at least one image per class)"},
    {FIELD("data", "hflip", data.hflip), FLOAT(0.0, 1.0, 0), .def = "0.0",
     .help = "horizontal flip probability"},
    {FIELD("data", "on_bad_image", data.on_bad_image), ENUM(bad_image_names), .def = "error",
     .help = "an undecodable image: error stops before training, skip leaves it out"},
    {FIELD("data", "cache", data.cache), ENUM(cache_names), .def = "auto",
     .help = "decoded images in memory, in a mapped file, or auto (memory if they fit in half the RAM)"},
    {FIELD("data", "prefetch", data.prefetch), INT(1, 64), .def = "4",
     .help = "batches prepared ahead in the background"},

    {FIELD("model", "preset", model.preset), CHOICE(preset_names), .def = "",
     .help = "tiny, small or base decide dim, depth, heads and mlp_dim (do not set those too); empty: use them"},
    {FIELD("model", "dim", model.dim), INT(1, 65536), .def = "192",
     .help = "embedding width D"},
    {FIELD("model", "depth", model.depth), INT(1, 1024), .def = "12",
     .help = "number of transformer blocks"},
    {FIELD("model", "heads", model.heads), INT(1, 1024), .def = "3",
     .help = "attention heads H; dim must be a multiple"},
    {FIELD("model", "mlp_dim", model.mlp_dim), INT(1, 1048576), .def = "768",
     .help = "MLP hidden width F"},
    {FIELD("model", "patch_size", model.patch_size), INT(1, 8192), .def = "4",
     .help = "patch side in pixels; img_size must be a multiple"},
    {FIELD("model", "num_classes", model.num_classes), INT(0, 1048576), .def = "0",
     .help = "classes; 0 = the class folders of data.root/train (the run's config.ini records the count)"},
    {FIELD("model", "class_digest", model.class_digest), INT64(-1, 4294967295LL), .def = "-1",
     .help = "CRC-32 of the training class folder names in label order, -1 = not recorded; the trainer records it, eval checks a val folder against it"},
    {FIELD("model", "pool", model.pool), CHOICE(pool_names), .def = "token",
     .help = "classifier input: token (the CLS token) or avg (mean of the patch tokens)"},
    {FIELD("model", "layer_scale", model.layer_scale), FLOAT(0.0, INFINITY, OPEN_HI),
     .def = "0", .help = "LayerScale init value, 0 = off (timm init_values)"},
    {FIELD("model", "drop_path", model.drop_path), FLOAT(0.0, 1.0, OPEN_HI), .def = "0.1",
     .help = "stochastic depth rate of the last block (timm drop_path_rate)"},

    {FIELD("pe", "type", pe.type), STRING(STR_IDENT), .def = "absolute",
     .help = "positional encoding: none, absolute or a rotary type of DESIGN 4 (the model checks the name)"},
    {FIELD("pe", "theta", pe.theta), FLOAT(0.0, INFINITY, OPEN_HI), .def = "0",
     .help = "frequency base; 0 = the paper's (100 for rope_axial and spherical, 10 for rope_mixed)"},
    {FIELD("pe", "block_size", pe.block_size), INT(1, 4096), .def = "8",
     .help = "ComRoPE / LieRE generator block size"},
    {FIELD("pe", "init_std", pe.init_std), FLOAT(0.0, INFINITY, OPEN_HI), .def = "0.5",
     .help = "ComRoPE generator initialisation standard deviation"},
    {FIELD("pe", "sigma", pe.sigma), FLOAT(0.0, INFINITY, OPEN_HI), .def = "0",
     .help = "ComRoPE position perturbation, 0 = off"},
    {FIELD("pe", "learned", pe.learned), BOOL, .def = "false",
     .help = "spherical: the frequencies are trainable"},
    {FIELD("pe", "share_layers", pe.share_layers), BOOL, .def = "false",
     .help = "LieRE: one set of generators for all layers"},
    {FIELD("pe", "share_heads", pe.share_heads), BOOL, .def = "false",
     .help = "LieRE: one set of generators for all heads"},

    {FIELD("optim", "opt", optim.opt), CHOICE(opt_names), .def = "adamw",
     .help = "optimizer: adamw, or lamb (AdamW's moments, each decayed tensor's step scaled by "
             "its trust ratio, the norm of the tensor over that of its update, as timm's Lamb)"},
    {FIELD("optim", "lr", optim.lr), FLOAT(0.0, INFINITY, OPEN_HI), .def = "5e-4",
     .help = "peak learning rate, reached after warmup"},
    {FIELD("optim", "min_lr", optim.min_lr), FLOAT(0.0, INFINITY, OPEN_HI), .def = "1e-5",
     .help = "learning rate at the end of the cosine decay"},
    {FIELD("optim", "warmup_lr", optim.warmup_lr), FLOAT(0.0, INFINITY, OPEN_HI),
     .def = "1e-6", .help = "learning rate at the start of warmup"},
    {FIELD("optim", "warmup_epochs", optim.warmup_epochs), FLOAT(0.0, INFINITY, OPEN_HI),
     .def = "5", .help = "linear warmup length in epochs (may be fractional)"},
    {FIELD("optim", "weight_decay", optim.weight_decay), FLOAT(0.0, INFINITY, OPEN_HI),
     .def = "0.05", .help = "decoupled weight decay"},
    {FIELD("optim", "opt_betas", optim.betas), FLOATS(2, 2, 0.0, 1.0, OPEN_HI),
     .def = "0.9,0.999", .help = "Adam beta1,beta2"},
    {FIELD("optim", "opt_eps", optim.eps), FLOAT(0.0, INFINITY, OPEN_LO | OPEN_HI),
     .def = "1e-8", .help = "Adam epsilon"},
    {FIELD("optim", "clip_grad", optim.clip_grad), FLOAT(0.0, INFINITY, OPEN_HI), .def = "0",
     .help = "clip the global gradient norm to this, 0 = off"},

    {FIELD("train", "epochs", train.epochs), INT(1, 1000000), .def = "100",
     .help = "training epochs"},
    {FIELD("train", "batch_size", train.batch_size), INT(1, 1048576), .def = "128",
     .help = "images per optimizer step"},
    {FIELD("train", "seed", train.seed), INT64(0, LLONG_MAX), .def = "0",
     .help = "seed of every random stream (init, data order, augmentation, drop path)"},
    {FIELD("train", "max_steps", train.max_steps), INT64(0, LLONG_MAX), .def = "0",
     .help = "stop after this many optimizer steps, 0 = no limit (smoke runs)"},
    {FIELD("train", "smoothing", train.smoothing), FLOAT(0.0, 1.0, OPEN_HI), .def = "0.1",
     .help = "label smoothing"},
    {FIELD("train", "eval_every", train.eval_every), INT(1, 1000000), .def = "1",
     .help = "evaluate every N epochs, and after the last"},
    {FIELD("train", "recompute_attention", train.recompute_attention), BOOL, .def = "false",
     .help = "recompute the attention probabilities in the backward instead of keeping "
             "them: about 1 (batch, tokens, dim) unit less memory per block for a few % of "
             "step time"},
    {FIELD("train", "threads", train.threads), INT(0, 4096), .def = "0",
     .help = "worker threads (per MPI rank), 0 = OMP_NUM_THREADS, else the cores split "
             "among the ranks on the machine"},

    {FIELD("train", "mixup", train.mixup), FLOAT(0.0, INFINITY, OPEN_HI), .def = "0",
     .help = "mixup alpha: a batch's images and targets mixed in pairs, lambda ~ Beta(alpha, "
             "alpha); 0 = off (timm's --mixup)"},
    {FIELD("train", "cutmix", train.cutmix), FLOAT(0.0, INFINITY, OPEN_HI), .def = "0",
     .help = "CutMix alpha: a box of the pair's other image pasted in; 0 = off (timm's --cutmix)"},
    {FIELD("train", "mixup_prob", train.mixup_prob), FLOAT(0.0, 1.0, 0), .def = "1",
     .help = "probability that a batch is mixed when mixup or cutmix is on"},
    {FIELD("train", "mixup_switch_prob", train.mixup_switch_prob), FLOAT(0.0, 1.0, 0),
     .def = "0.5", .help = "with both on: probability of CutMix rather than mixup for a batch"},
    {FIELD("train", "on_nan", train.on_nan), ENUM(nan_names), .def = "stop",
     .help = "a non-finite loss or gradient: stop names the step and tensor; skip_step leaves the parameters unchanged and goes on (10 in a row stop)"},

    {FIELD("log", "name", log.name), STRING(STR_RUN_NAME), .def = "default",
     .help = "run name: the run folder is <dir>/<name>"},
    {FIELD("log", "dir", log.dir), STRING(STR_PATH), .def = "runs",
     .help = "parent folder of the run folders"},
    {FIELD("log", "every", log.every), INT(1, 1000000000), .def = "50",
     .help = "steps between progress lines when the output is not a terminal"},
};
enum { KEY_COUNT = sizeof keys / sizeof keys[0] };

/* Keys a preset decides; bit i of ModelSection.sizes_set is size_keys[i]. */
static const char *const size_keys[] = {"dim", "depth", "heads", "mlp_dim"};
enum { SIZE_KEY_COUNT = sizeof size_keys / sizeof size_keys[0] };

/* ---- small text helpers ---------------------------------------------- */

static bool is_blank(char c)
{
    return c == ' ' || c == '\t';
}

static char *skip_blanks(char *s)
{
    while (is_blank(*s))
        s++;
    return s;
}

static void trim_end(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && is_blank(s[n - 1]))
        s[--n] = '\0';
}

/* Trims both ends in place and returns the start. */
static char *trim(char *s)
{
    s = skip_blanks(s);
    trim_end(s);
    return s;
}

static void *field(RunConfig *cfg, const KeySpec *k)
{
    return (char *)cfg + k->offset;
}

static const void *cfield(const RunConfig *cfg, const KeySpec *k)
{
    return (const char *)cfg + k->offset;
}

/* Levenshtein distance, for did-you-mean hints; only called on short names. */
static int edit_distance(const char *a, const char *b)
{
    int row[SUGGEST_MAX + 1];
    int nb = (int)strlen(b);
    for (int j = 0; j <= nb; j++)
        row[j] = j;
    for (int i = 1; a[i - 1]; i++) {
        int diag = row[0];
        row[0] = i;
        for (int j = 1; j <= nb; j++) {
            int up = row[j];
            int sub = diag + (a[i - 1] != b[j - 1]);
            row[j] = VT_MIN(sub, VT_MIN(up, row[j - 1]) + 1);
            diag = up;
        }
    }
    return row[nb];
}

/* Close enough to be a typo: one edit for short names, two otherwise. */
static bool is_near(const char *typed, const char *name)
{
    if (strlen(typed) > SUGGEST_MAX || strlen(name) > SUGGEST_MAX)
        return false;
    if (strcasecmp(typed, name) == 0)
        return true; /* names are case-sensitive: "LR" is a typo of "lr" */
    int limit = strlen(name) <= 3 ? 1 : 2;
    return edit_distance(typed, name) <= limit;
}

/* ---- schema lookups -------------------------------------------------- */

static int find_section(const char *name)
{
    for (int s = 0; s < SECTION_COUNT; s++)
        if (strcmp(sections[s], name) == 0)
            return s;
    return -1;
}

static int find_key(int section, const char *name)
{
    for (int i = 0; i < KEY_COUNT; i++)
        if (strcmp(keys[i].section, sections[section]) == 0 && strcmp(keys[i].key, name) == 0)
            return i;
    return -1;
}

static VtCode unknown_section(const char *name, char *why)
{
    int n = snprintf(why, WHY_MAX, "unknown section [%.*s]", SHOWN_MAX, name);
    for (int s = 0; s < SECTION_COUNT; s++) {
        if (is_near(name, sections[s])) {
            snprintf(why + n, (size_t)(WHY_MAX - n), " (did you mean [%s]?)", sections[s]);
            break;
        }
    }
    return VT_ERR_ARGUMENT;
}

/* The hint for an unknown key: a near name in the section, else the
 * section that does have this key. */
static void key_hint(int section, const char *name, char *out, size_t size)
{
    out[0] = '\0';
    for (int i = 0; i < KEY_COUNT; i++) {
        if (strcmp(keys[i].section, sections[section]) == 0 && is_near(name, keys[i].key)) {
            snprintf(out, size, " (did you mean '%s'?)", keys[i].key);
            return;
        }
    }
    for (int i = 0; i < KEY_COUNT; i++) {
        if (strcmp(keys[i].key, name) == 0) {
            snprintf(out, size, " (%s is a key of [%s])", name, keys[i].section);
            return;
        }
    }
}

static VtCode unknown_key(int section, const char *name, char *why)
{
    char hint[128];
    key_hint(section, name, hint, sizeof hint);
    snprintf(why, WHY_MAX, "unknown key '%.*s' in section [%s]%s", SHOWN_MAX, name,
             sections[section], hint);
    return VT_ERR_ARGUMENT;
}

/* ---- values: text to field ------------------------------------------ */

typedef enum NumStatus { NUM_OK, NUM_SYNTAX, NUM_RANGE, NUM_NONFINITE, NUM_HUGE, NUM_TINY } NumStatus;

static NumStatus read_integer(const char *s, long long *out)
{
    const char *digits = (*s == '-' || *s == '+') ? s + 1 : s;
    if (!isdigit((unsigned char)*digits))
        return NUM_SYNTAX; /* strtoll would skip blanks and accept "" */
    char *end;
    errno = 0;
    *out = strtoll(s, &end, 10);
    if (*end != '\0')
        return NUM_SYNTAX;
    return errno == ERANGE ? NUM_RANGE : NUM_OK;
}

static NumStatus read_float(const char *s, float *out)
{
    /* strtod also takes hex floats and leading blanks; an INI number is decimal. */
    if (*s == '\0' || isspace((unsigned char)*s) || strpbrk(s, "xX"))
        return NUM_SYNTAX;
    char *end;
    errno = 0;
    double d = strtod(s, &end);
    if (*end != '\0')
        return NUM_SYNTAX;
    if (isnan(d) || (isinf(d) && errno != ERANGE))
        return NUM_NONFINITE;
    float f = (float)d;
    if (isinf(f))
        return NUM_HUGE; /* beyond FLT_MAX */
    if (d != 0.0 && f == 0.0f)
        return NUM_TINY; /* would silently become 0 */
    *out = f;
    return NUM_OK;
}

static void float_range_text(const KeySpec *k, char *out, size_t size)
{
    char hi[32];
    if (isinf(k->fhi))
        snprintf(hi, sizeof hi, "inf");
    else
        snprintf(hi, sizeof hi, "%g", k->fhi);
    snprintf(out, size, "%c%g, %s%c", (k->open & OPEN_LO) ? '(' : '[', k->flo, hi,
             (k->open & OPEN_HI || isinf(k->fhi)) ? ')' : ']');
}

static bool float_in_range(const KeySpec *k, float v)
{
    double d = v;
    bool lo_ok = (k->open & OPEN_LO) ? d > k->flo : d >= k->flo;
    bool hi_ok = (k->open & OPEN_HI) ? d < k->fhi : d <= k->fhi;
    return lo_ok && hi_ok;
}

/* One float element: syntax, finiteness and the key's range. */
static VtCode check_float(const KeySpec *k, const char *text, float *out, char *why)
{
    char range[64];
    float_range_text(k, range, sizeof range);
    NumStatus st = read_float(text, out);
    if (st == NUM_OK && !float_in_range(k, *out))
        st = NUM_RANGE; /* reported like an overflow */
    switch (st) {
    case NUM_OK: return VT_OK;
    case NUM_RANGE:
        snprintf(why, WHY_MAX, "%.*s is out of range %s", SHOWN_MAX, text, range);
        break;
    case NUM_HUGE:
        snprintf(why, WHY_MAX, "%.*s is too large for a float", SHOWN_MAX, text);
        break;
    case NUM_TINY:
        snprintf(why, WHY_MAX, "%.*s is too close to 0 for a float (write 0)", SHOWN_MAX, text);
        break;
    case NUM_NONFINITE:
        snprintf(why, WHY_MAX, "'%.*s' is not a finite number", SHOWN_MAX, text);
        break;
    case NUM_SYNTAX:
        snprintf(why, WHY_MAX, "'%.*s' is not a number", SHOWN_MAX, text);
        break;
    }
    return VT_ERR_ARGUMENT;
}

static VtCode set_integer(RunConfig *cfg, const KeySpec *k, const char *text, char *why)
{
    long long v = 0;
    NumStatus st = read_integer(text, &v);
    if (st == NUM_SYNTAX) {
        snprintf(why, WHY_MAX, "'%.*s' is not an integer", SHOWN_MAX, text);
        return VT_ERR_ARGUMENT;
    }
    if (st == NUM_RANGE || v < k->ilo || v > k->ihi) {
        snprintf(why, WHY_MAX, "%.*s is out of range [%lld, %lld]", SHOWN_MAX, text, k->ilo,
                 k->ihi);
        return VT_ERR_ARGUMENT;
    }
    if (k->type == T_INT) {
        int i = (int)v; /* the range lies within int */
        memcpy(field(cfg, k), &i, sizeof i);
    } else {
        memcpy(field(cfg, k), &v, sizeof v);
    }
    return VT_OK;
}

static VtCode set_float(RunConfig *cfg, const KeySpec *k, const char *text, char *why)
{
    float f;
    VtCode code = check_float(k, text, &f, why);
    if (!code)
        memcpy(field(cfg, k), &f, sizeof f);
    return code;
}

static VtCode set_bool(RunConfig *cfg, const KeySpec *k, const char *text, char *why)
{
    static const char *const yes[] = {"true", "yes", "on", "1"};
    static const char *const no[] = {"false", "no", "off", "0"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
        if (strcmp(text, yes[i]) == 0 || strcmp(text, no[i]) == 0) {
            *(bool *)field(cfg, k) = strcmp(text, yes[i]) == 0;
            return VT_OK;
        }
    }
    snprintf(why, WHY_MAX, "'%.*s' is not a boolean (true or false)", SHOWN_MAX, text);
    return VT_ERR_ARGUMENT;
}

/* "a, b or c" (an empty choice shown as ""). */
static void choices_text(const char *const *choices, char *out, size_t size)
{
    size_t n = 0;
    out[0] = '\0';
    for (int i = 0; choices[i] && n < size; i++) {
        const char *sep = i == 0 ? "" : choices[i + 1] ? ", " : " or ";
        n += (size_t)snprintf(out + n, size - n, "%s%s", sep, choices[i][0] ? choices[i] : "\"\"");
    }
}

static int count_choices(const char *const *choices)
{
    int n = 0;
    while (choices[n])
        n++;
    return n;
}

static int find_choice(const char *const *choices, const char *text)
{
    for (int i = 0; choices[i]; i++)
        if (strcmp(choices[i], text) == 0)
            return i;
    return -1;
}

static VtCode not_a_choice(const KeySpec *k, const char *text, char *why)
{
    char list[256];
    choices_text(k->choices, list, sizeof list);
    snprintf(why, WHY_MAX, "'%.*s' is not one of %s", SHOWN_MAX, text, list);
    return VT_ERR_ARGUMENT;
}

static VtCode set_enum(RunConfig *cfg, const KeySpec *k, const char *text, char *why)
{
    int i = find_choice(k->choices, text);
    if (i < 0)
        return not_a_choice(k, text, why);
    memcpy(field(cfg, k), &i, sizeof i);
    return VT_OK;
}

static bool all_chars_in(const char *s, const char *extra, bool upper)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        bool ok = islower(c) || isdigit(c) || (upper && isupper(c)) || strchr(extra, c);
        if (!ok)
            return false;
    }
    return true;
}

/* The rule of a string key; text is non-empty unless the key allows it. */
static VtCode check_string_rule(const KeySpec *k, const char *text, char *why)
{
    const char *shown = text;
    switch (k->rule) {
    case STR_CHOICE:
        return find_choice(k->choices, text) < 0 ? not_a_choice(k, text, why) : VT_OK;
    case STR_IDENT:
        if (all_chars_in(text, "_", false))
            return VT_OK;
        snprintf(why, WHY_MAX, "'%.*s' is not a name of [a-z0-9_]", SHOWN_MAX, shown);
        return VT_ERR_ARGUMENT;
    case STR_RUN_NAME:
        if (all_chars_in(text, "._-", true) && strcmp(text, ".") && strcmp(text, ".."))
            return VT_OK;
        snprintf(why, WHY_MAX,
                 "'%.*s' is not a folder name (letters, digits, '.', '_', '-'; not . or ..)",
                 SHOWN_MAX, shown);
        return VT_ERR_ARGUMENT;
    case STR_PATH:
        break;
    }
    return VT_OK;
}

static VtCode set_string(RunConfig *cfg, const KeySpec *k, const char *text, char *why)
{
    size_t n = strlen(text);
    if (n >= k->size) {
        snprintf(why, WHY_MAX, "value is %zu bytes long, the limit is %zu", n, k->size - 1);
        return VT_ERR_ARGUMENT;
    }
    for (size_t i = 0; i < n; i++) {
        /* A control character could not be written back into one INI line. */
        if (iscntrl((unsigned char)text[i])) {
            snprintf(why, WHY_MAX, "control character (byte %d) in the value", text[i]);
            return VT_ERR_ARGUMENT;
        }
    }
    VtCode code = check_string_rule(k, text, why);
    if (code)
        return code;
    /* Clear the whole buffer: equal configs are equal byte for byte. */
    memset(field(cfg, k), 0, k->size);
    memcpy(field(cfg, k), text, n);
    return VT_OK;
}

/* Copies list element `text` (up to a ',' or the end) trimmed into out. */
static const char *next_element(const char *text, char *out, size_t size, bool *too_long)
{
    const char *comma = strchr(text, ',');
    size_t n = comma ? (size_t)(comma - text) : strlen(text);
    *too_long = n > size - 1; /* cut, it could read as a number it is not */
    size_t kept = VT_MIN(n, size - 1);
    memcpy(out, text, kept);
    out[kept] = '\0';
    char *t = trim(out);
    memmove(out, t, strlen(t) + 1);
    return comma ? comma + 1 : NULL;
}

static int count_elements(const char *text)
{
    int n = 1;
    for (; *text; text++)
        n += *text == ',';
    return n;
}

static VtCode list_length_error(const KeySpec *k, int n, char *why)
{
    if (k->min_len == k->max_len)
        snprintf(why, WHY_MAX, "expected %d comma-separated numbers, got %d", k->min_len, n);
    else
        snprintf(why, WHY_MAX, "expected %d to %d comma-separated numbers, got %d", k->min_len,
                 k->max_len, n);
    return VT_ERR_ARGUMENT;
}

static VtCode set_floats(RunConfig *cfg, const KeySpec *k, const char *text, char *why)
{
    int n = count_elements(text);
    if (n < k->min_len || n > k->max_len)
        return list_length_error(k, n, why);
    float v[VT_MAX_CHANNELS] = {0};
    char elem[64];
    const char *rest = text;
    for (int i = 0; i < n; i++) {
        bool too_long;
        rest = next_element(rest, elem, sizeof elem, &too_long);
        if (too_long) {
            snprintf(why, WHY_MAX, "element %d of the list is over %zu characters: not a number",
                     i + 1, sizeof elem - 1);
            return VT_ERR_ARGUMENT;
        }
        if (elem[0] == '\0') {
            snprintf(why, WHY_MAX, "empty element %d in the list", i + 1);
            return VT_ERR_ARGUMENT;
        }
        VtCode code = check_float(k, elem, &v[i], why);
        if (code)
            return code;
    }
    int capacity = (int)(k->size / sizeof(float));
    /* One value stands for every channel: copy it so readers can index. */
    for (int i = n; i < capacity; i++)
        v[i] = (n == 1 && k->has_count) ? v[0] : 0.0f;
    memcpy(field(cfg, k), v, k->size);
    if (k->has_count)
        memcpy((char *)cfg + k->count_offset, &n, sizeof n);
    return VT_OK;
}

static bool allows_empty(const KeySpec *k)
{
    return k->type == T_STRING && k->rule == STR_CHOICE && find_choice(k->choices, "") >= 0;
}

/* Parses text (already unquoted and trimmed) into the key's field. On
 * error writes the reason, without origin or key, into why. */
static VtCode set_value(RunConfig *cfg, const KeySpec *k, const char *text, char *why)
{
    if (text[0] == '\0' && !allows_empty(k)) {
        snprintf(why, WHY_MAX, "empty value");
        return VT_ERR_ARGUMENT;
    }
    switch (k->type) {
    case T_INT:
    case T_INT64: return set_integer(cfg, k, text, why);
    case T_FLOAT: return set_float(cfg, k, text, why);
    case T_BOOL: return set_bool(cfg, k, text, why);
    case T_STRING: return set_string(cfg, k, text, why);
    case T_ENUM: return set_enum(cfg, k, text, why);
    case T_FLOATS: return set_floats(cfg, k, text, why);
    }
    VT_ASSERT(!"unknown key type");
    return VT_ERR_ARGUMENT;
}

/* ---- presets --------------------------------------------------------- */

static int size_key_index(const KeySpec *k)
{
    if (strcmp(k->section, "model") != 0)
        return -1;
    for (int i = 0; i < SIZE_KEY_COUNT; i++)
        if (strcmp(k->key, size_keys[i]) == 0)
            return i;
    return -1;
}

/* A preset decides the sizes, so setting both would silently drop one of
 * them: refuse the second, whichever order they come in. */
static VtCode note_preset_sizes(RunConfig *cfg, const KeySpec *k, char *why)
{
    ModelSection *m = &cfg->model;
    int size = size_key_index(k);
    if (size >= 0) {
        if (m->preset[0]) {
            snprintf(why, WHY_MAX, "cannot be set together with model.preset = %s (the preset decides dim, depth, heads and mlp_dim)", m->preset);
            return VT_ERR_ARGUMENT;
        }
        m->sizes_set |= 1u << size;
    } else if (strcmp(k->section, "model") == 0 && strcmp(k->key, "preset") == 0 &&
               m->preset[0] && m->sizes_set) {
        int first = 0;
        while (!(m->sizes_set & (1u << first)))
            first++;
        snprintf(why, WHY_MAX, "cannot be set together with model.%s (the preset decides dim, depth, heads and mlp_dim)", size_keys[first]);
        return VT_ERR_ARGUMENT;
    }
    return VT_OK;
}

static VtCode apply_key(RunConfig *cfg, const KeySpec *k, const char *text, char *why)
{
    VtCode code = set_value(cfg, k, text, why);
    return code ? code : note_preset_sizes(cfg, k, why);
}

void config_model_sizes(const RunConfig *cfg, int *dim, int *depth, int *heads, int *mlp_dim)
{
    *dim = cfg->model.dim;
    *depth = cfg->model.depth;
    *heads = cfg->model.heads;
    *mlp_dim = cfg->model.mlp_dim;
    if (!cfg->model.preset[0])
        return;
    /* The model owns the preset table; the schema only admits its names. */
    VitConfig vc;
    VtError err;
    VT_ASSERT(vit_config_preset(&vc, cfg->model.preset, &err) == VT_OK);
    *dim = vc.dim;
    *depth = vc.depth;
    *heads = vc.heads;
    *mlp_dim = vc.mlp_dim;
}

/* ---- defaults -------------------------------------------------------- */

/* The table's own consistency: a wrong row is a bug, found at start-up. */
static void check_row(const KeySpec *k)
{
    size_t want[] = {[T_INT] = sizeof(int), [T_INT64] = sizeof(long long),
                     [T_FLOAT] = sizeof(float), [T_BOOL] = sizeof(bool), [T_ENUM] = sizeof(int)};
    if (k->type == T_FLOATS)
        VT_ASSERT(k->size == (size_t)k->max_len * sizeof(float) && k->max_len <= VT_MAX_CHANNELS);
    else if (k->type != T_STRING)
        VT_ASSERT(k->size == want[k->type]);
    VT_ASSERT(find_section(k->section) >= 0 && !strchr(k->help, '|'));
}

void config_defaults(RunConfig *cfg)
{
    memset(cfg, 0, sizeof *cfg);
    char why[WHY_MAX];
    for (int i = 0; i < KEY_COUNT; i++) {
        check_row(&keys[i]);
        VtCode code = set_value(cfg, &keys[i], keys[i].def, why);
        if (code)
            fprintf(stderr, "config default %s.%s: %s\n", keys[i].section, keys[i].key, why);
        VT_ASSERT(code == VT_OK);
    }
}

/* ---- the INI parser -------------------------------------------------- */

typedef struct Parser {
    RunConfig *cfg;
    const char *origin;
    int line;
    int section;                /* index in sections[]; -1 before the first header */
    int first_line[KEY_COUNT];  /* line each key was set on, 0 = not yet */
    char why[WHY_MAX];
} Parser;

/* Decodes a quoted string in place. s points at the opening quote; returns
 * the byte after the closing quote, or NULL when there is none. */
static char *unquote(char *s)
{
    char *w = s;
    for (char *r = s + 1; *r; r++) {
        if (*r == '"') {
            *w = '\0';
            return r + 1;
        }
        if (*r == '\\' && (r[1] == '"' || r[1] == '\\'))
            r++;
        *w++ = *r;
    }
    return NULL;
}

/* Turns the raw text after '=' into the value, in place: unquotes, or cuts
 * a comment ('#' or ';' after whitespace) when `comments`, and trims. */
static VtCode extract_value(char *raw, bool comments, char **value, char *why)
{
    char *s = skip_blanks(raw);
    *value = s;
    if (*s == '"') {
        char *rest = unquote(s);
        if (!rest) {
            snprintf(why, WHY_MAX, "unterminated quoted value");
            return VT_ERR_ARGUMENT;
        }
        rest = skip_blanks(rest);
        if (*rest && !(comments && (*rest == '#' || *rest == ';'))) {
            snprintf(why, WHY_MAX, "unexpected text after the closing quote: '%.*s'", SHOWN_MAX,
                     rest);
            return VT_ERR_ARGUMENT;
        }
        return VT_OK;
    }
    for (char *c = s; comments && *c; c++) {
        if ((*c == '#' || *c == ';') && (c == s || is_blank(c[-1]))) {
            *c = '\0';
            break;
        }
    }
    trim_end(s);
    return VT_OK;
}

static VtCode parse_fail(Parser *p, VtError *err, const char *what)
{
    return vt_fail(err, VT_ERR_ARGUMENT, "%s:%d: %s", p->origin, p->line, what);
}

/* s points at '['. */
static VtCode parse_header(Parser *p, char *s, VtError *err)
{
    char *close = strchr(s, ']');
    if (!close) {
        trim_end(s);
        snprintf(p->why, WHY_MAX, "unterminated section header '%.*s'", SHOWN_MAX, s);
        return parse_fail(p, err, p->why);
    }
    char *rest = skip_blanks(close + 1);
    if (*rest && *rest != '#' && *rest != ';') {
        snprintf(p->why, WHY_MAX, "unexpected text after section header: '%.*s'", SHOWN_MAX,
                 rest);
        return parse_fail(p, err, p->why);
    }
    *close = '\0';
    char *name = trim(s + 1);
    p->section = find_section(name);
    if (p->section < 0) {
        unknown_section(name, p->why);
        return parse_fail(p, err, p->why);
    }
    return VT_OK;
}

static VtCode parse_assignment(Parser *p, char *s, VtError *err)
{
    char *eq = strchr(s, '=');
    if (!eq)
        return parse_fail(p, err, "expected 'key = value'");
    *eq = '\0';
    char *name = trim(s);
    if (name[0] == '\0')
        return parse_fail(p, err, "expected 'key = value'");
    if (p->section < 0)
        return parse_fail(p, err, "key outside any section");
    int i = find_key(p->section, name);
    if (i < 0) {
        unknown_key(p->section, name, p->why);
        return parse_fail(p, err, p->why);
    }
    const KeySpec *k = &keys[i];
    if (p->first_line[i]) {
        snprintf(p->why, WHY_MAX, "duplicate key '%s' in section [%s] (first set on line %d)",
                 k->key, k->section, p->first_line[i]);
        return parse_fail(p, err, p->why);
    }
    p->first_line[i] = p->line;
    char *value;
    if (extract_value(eq + 1, true, &value, p->why) || apply_key(p->cfg, k, value, p->why))
        return vt_fail(err, VT_ERR_ARGUMENT, "%s:%d: %s.%s: %s", p->origin, p->line, k->section,
                       k->key, p->why);
    return VT_OK;
}

static VtCode parse_line(Parser *p, char *line, VtError *err)
{
    char *s = skip_blanks(line);
    if (*s == '\0' || *s == '#' || *s == ';')
        return VT_OK;
    if (*s == '[')
        return parse_header(p, s, err);
    return parse_assignment(p, s, err);
}

/* Copies line `n` bytes at text into buf, checking what a C string cannot
 * hold (NUL) and what the buffer cannot (length). */
static VtCode take_line(Parser *p, const char *text, size_t n, char *buf, VtError *err)
{
    if (n > 0 && text[n - 1] == '\r')
        n--; /* CRLF */
    if (memchr(text, '\0', n))
        return parse_fail(p, err, "NUL byte in the line");
    long bad = utf8_invalid_at(text, n);
    if (bad >= 0) {
        snprintf(p->why, WHY_MAX, "byte %ld of the line is not UTF-8 (config text is stored as "
                 "UTF-8 in checkpoints and exports)", bad + 1);
        return parse_fail(p, err, p->why);
    }
    if (n > LINE_MAX_BYTES) {
        snprintf(p->why, WHY_MAX, "line is longer than %d bytes", LINE_MAX_BYTES);
        return parse_fail(p, err, p->why);
    }
    memcpy(buf, text, n);
    buf[n] = '\0';
    return VT_OK;
}

static VtCode parse_lines(Parser *p, const char *text, size_t len, VtError *err)
{
    static const char bom[] = "\xEF\xBB\xBF";
    char *buf = vt_xmalloc(LINE_MAX_BYTES + 1);
    size_t pos = (len >= 3 && memcmp(text, bom, 3) == 0) ? 3 : 0;
    VtCode code = VT_OK;
    while (pos < len && !code) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        p->line++;
        code = take_line(p, text + pos, n, buf, err);
        if (!code)
            code = parse_line(p, buf, err);
        pos += n + 1;
    }
    free(buf);
    return code;
}

/* Parses into a copy so that an error leaves cfg unchanged. */
static VtCode parse_text(RunConfig *cfg, const char *text, size_t len, const char *origin,
                         VtError *err)
{
    Parser *p = vt_xcalloc(1, sizeof *p);
    RunConfig *work = vt_xmalloc(sizeof *work);
    memcpy(work, cfg, sizeof *work); /* memcpy keeps padding: configs compare bytewise */
    p->cfg = work;
    p->origin = origin;
    p->section = -1;
    VtCode code = parse_lines(p, text, len, err);
    if (!code)
        memcpy(cfg, work, sizeof *cfg);
    free(work);
    free(p);
    return code;
}

VtCode config_parse(RunConfig *cfg, const char *text, const char *origin, VtError *err)
{
    return parse_text(cfg, text, strlen(text), origin, err);
}

/* Reads a whole file (at most FILE_MAX_BYTES) into a malloc'ed buffer. */
static VtCode read_file(const char *path, char **text, size_t *len, VtError *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return vt_fail(err, VT_ERR_IO, "cannot open config file %s: %s", path, strerror(errno));
    char *buf = vt_xmalloc(FILE_MAX_BYTES + 1);
    size_t n = fread(buf, 1, FILE_MAX_BYTES + 1, f);
    int read_errno = errno;
    bool failed = ferror(f) != 0;
    fclose(f); /* read-only: nothing to lose on close */
    if (failed) {
        free(buf);
        return vt_fail(err, VT_ERR_IO, "cannot read config file %s: %s", path,
                       strerror(read_errno));
    }
    if (n > FILE_MAX_BYTES) {
        free(buf);
        return vt_fail(err, VT_ERR_IO, "config file %s is larger than %d bytes", path,
                       FILE_MAX_BYTES);
    }
    *text = buf;
    *len = n;
    return VT_OK;
}

VtCode config_load(RunConfig *cfg, const char *path, VtError *err)
{
    char *text = NULL;
    size_t len = 0;
    VtCode code = read_file(path, &text, &len, err);
    if (code)
        return code;
    code = parse_text(cfg, text, len, path, err);
    free(text);
    return code;
}

/* ---- --set ----------------------------------------------------------- */

/* Finds the key of "section.key" (cut in place); reason in why. */
static const KeySpec *lookup_dotted(char *name, char *why)
{
    char *dot = strchr(name, '.');
    if (!dot) {
        snprintf(why, WHY_MAX, "expected section.key=value");
        return NULL;
    }
    *dot = '\0';
    int s = find_section(trim(name));
    if (s < 0) {
        unknown_section(trim(name), why);
        return NULL;
    }
    int i = find_key(s, trim(dot + 1));
    if (i < 0) {
        unknown_key(s, trim(dot + 1), why);
        return NULL;
    }
    return &keys[i];
}

static VtCode set_assignment(RunConfig *cfg, char *buf, char *why)
{
    char *eq = strchr(buf, '=');
    if (!eq) {
        snprintf(why, WHY_MAX, "expected section.key=value");
        return VT_ERR_ARGUMENT;
    }
    *eq = '\0';
    const KeySpec *k = lookup_dotted(buf, why);
    if (!k)
        return VT_ERR_ARGUMENT;
    char *value;
    VtCode code = extract_value(eq + 1, false, &value, why);
    return code ? code : apply_key(cfg, k, value, why);
}

VtCode config_set(RunConfig *cfg, const char *assignment, VtError *err)
{
    size_t n = strlen(assignment);
    if (n > LINE_MAX_BYTES)
        return vt_fail(err, VT_ERR_ARGUMENT, "--set %.*s...: longer than %d bytes", SHOWN_MAX,
                       assignment, LINE_MAX_BYTES);
    long bad = utf8_invalid_at(assignment, n);
    if (bad >= 0)
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "--set: byte %ld is not UTF-8 (config text is stored as UTF-8 in "
                       "checkpoints and exports)", bad + 1);
    char *buf = vt_xmalloc(n + 1);
    char *why = vt_xmalloc(WHY_MAX);
    RunConfig *work = vt_xmalloc(sizeof *work);
    memcpy(buf, assignment, n + 1);
    memcpy(work, cfg, sizeof *work);
    VtCode code = set_assignment(work, buf, why);
    if (code)
        vt_fail(err, code, "--set %.*s: %s", 2 * SHOWN_MAX, assignment, why);
    else
        memcpy(cfg, work, sizeof *cfg);
    free(work);
    free(why);
    free(buf);
    return code;
}

/* ---- values: field to text ------------------------------------------- */

/* The fewest digits that read back as the same float (9 always do), but
 * no fewer than the integer part has, so that 10000 is not written 1e+04. */
static void format_float(float v, char *out, size_t size)
{
    double a = fabs((double)v);
    int int_digits = a >= 1.0 && a < 1e9 ? (int)floor(log10(a)) + 1 : 1;
    for (int digits = 1; digits <= 9; digits++) {
        snprintf(out, size, "%.*g", VT_MAX(digits, int_digits), (double)v);
        if ((float)strtod(out, NULL) == v)
            return;
    }
}

/* Quotes only where the bare text would read back differently. */
static bool needs_quotes(const char *s)
{
    size_t n = strlen(s);
    return n == 0 || is_blank(s[0]) || is_blank(s[n - 1]) || s[0] == '"' || strpbrk(s, "#;");
}

static void format_string(const char *s, char *out, size_t size)
{
    if (!needs_quotes(s)) {
        snprintf(out, size, "%s", s);
        return;
    }
    size_t n = 0;
    out[n++] = '"';
    for (; *s && n + 3 < size; s++) {
        if (*s == '"' || *s == '\\')
            out[n++] = '\\';
        out[n++] = *s;
    }
    out[n++] = '"';
    out[n] = '\0';
}

static void format_floats(const RunConfig *cfg, const KeySpec *k, char *out, size_t size)
{
    int n = k->max_len;
    if (k->has_count)
        memcpy(&n, (const char *)cfg + k->count_offset, sizeof n);
    /* A count no parser produced (config_validate reports it): write what fits. */
    n = VT_MAX(k->min_len, VT_MIN(n, k->max_len));
    const float *v = cfield(cfg, k);
    size_t used = 0;
    for (int i = 0; i < n; i++) {
        char one[32];
        format_float(v[i], one, sizeof one);
        used += (size_t)snprintf(out + used, size - used, "%s%s", i ? "," : "", one);
    }
}

static void format_value(const RunConfig *cfg, const KeySpec *k, char *out, size_t size)
{
    int i;
    long long ll;
    float f;
    switch (k->type) {
    case T_INT:
        memcpy(&i, cfield(cfg, k), sizeof i);
        snprintf(out, size, "%d", i);
        return;
    case T_INT64:
        memcpy(&ll, cfield(cfg, k), sizeof ll);
        snprintf(out, size, "%lld", ll);
        return;
    case T_FLOAT:
        memcpy(&f, cfield(cfg, k), sizeof f);
        format_float(f, out, size);
        return;
    case T_BOOL: snprintf(out, size, "%s", *(const bool *)cfield(cfg, k) ? "true" : "false"); return;
    case T_ENUM:
        memcpy(&i, cfield(cfg, k), sizeof i);
        /* An out-of-range enum writes as a number, which validation rejects. */
        if (i >= 0 && i < count_choices(k->choices))
            snprintf(out, size, "%s", k->choices[i]);
        else
            snprintf(out, size, "%d", i);
        return;
    case T_STRING: format_string(cfield(cfg, k), out, size); return;
    case T_FLOATS: format_floats(cfg, k, out, size); return;
    }
}

/* ---- writing --------------------------------------------------------- */

static const char *type_name(const KeySpec *k)
{
    static const char *const names[] = {[T_INT] = "int", [T_INT64] = "int64",
                                        [T_FLOAT] = "float", [T_BOOL] = "bool",
                                        [T_STRING] = "string", [T_ENUM] = "enum",
                                        [T_FLOATS] = "floats"};
    return names[k->type];
}

/* The allowed values, as the reference and the written comments show them. */
static void range_text(const KeySpec *k, char *out, size_t size)
{
    char r[64];
    static const char *const rules[] = {[STR_PATH] = "a path", [STR_IDENT] = "[a-z0-9_]+",
                                        [STR_RUN_NAME] = "[A-Za-z0-9._-]+"};
    switch (k->type) {
    case T_INT:
    case T_INT64: snprintf(out, size, "[%lld, %lld]", k->ilo, k->ihi); return;
    case T_FLOAT: float_range_text(k, out, size); return;
    case T_BOOL: snprintf(out, size, "true or false"); return;
    case T_ENUM: choices_text(k->choices, out, size); return;
    case T_STRING:
        if (k->rule == STR_CHOICE)
            choices_text(k->choices, out, size);
        else
            snprintf(out, size, "%s", rules[k->rule]);
        return;
    case T_FLOATS:
        float_range_text(k, r, sizeof r);
        if (k->min_len == k->max_len)
            snprintf(out, size, "%d values in %s", k->min_len, r);
        else
            snprintf(out, size, "%d to %d values in %s", k->min_len, k->max_len, r);
        return;
    }
}

static bool decided_by_preset(const RunConfig *cfg, const KeySpec *k)
{
    return size_key_index(k) >= 0 && cfg->model.preset[0] != '\0';
}

static bool write_key(const RunConfig *cfg, const KeySpec *k, FILE *out)
{
    char range[256], *value = vt_xmalloc(VALUE_TEXT_MAX);
    range_text(k, range, sizeof range);
    bool ok = fprintf(out, "# %s; %s: %s\n", k->help, type_name(k), range) >= 0;
    if (decided_by_preset(cfg, k)) {
        int s[SIZE_KEY_COUNT];
        config_model_sizes(cfg, &s[0], &s[1], &s[2], &s[3]);
        ok = ok && fprintf(out, "# %s = %d  (decided by preset %s)\n", k->key,
                           s[size_key_index(k)], cfg->model.preset) >= 0;
    } else {
        format_value(cfg, k, value, VALUE_TEXT_MAX);
        ok = ok && fprintf(out, "%s = %s\n", k->key, value) >= 0;
    }
    free(value);
    return ok;
}

bool config_write(const RunConfig *cfg, FILE *out)
{
    bool ok = fprintf(out, "# vitrain %s run configuration: every key, resolved.\n",
                      VT_VERSION) >= 0;
    for (int s = 0; s < SECTION_COUNT && ok; s++) {
        ok = fprintf(out, "\n[%s]\n", sections[s]) >= 0;
        for (int i = 0; i < KEY_COUNT && ok; i++)
            if (strcmp(keys[i].section, sections[s]) == 0)
                ok = write_key(cfg, &keys[i], out);
    }
    return fflush(out) == 0 && ok;
}

char *config_to_string(const RunConfig *cfg)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    /* A memory stream only fails for lack of memory. */
    bool ok = f && config_write(cfg, f);
    ok = f && fclose(f) == 0 && ok;
    if (!ok || !text) {
        fprintf(stderr, "vitrain: out of memory writing the configuration\n");
        abort();
    }
    return text;
}

void config_print_reference(FILE *out)
{
    char range[256];
    fprintf(out, "| key | type | values | default | description |\n");
    fprintf(out, "|---|---|---|---|---|\n");
    for (int i = 0; i < KEY_COUNT; i++) {
        const KeySpec *k = &keys[i];
        range_text(k, range, sizeof range);
        fprintf(out, "| `%s.%s` | %s | %s | `%s` | %s |\n", k->section, k->key, type_name(k),
                range, k->def[0] ? k->def : "\"\"", k->help);
    }
}

/* ---- validation ------------------------------------------------------ */

/* Every value through its key's own checks, by writing it and reading it
 * back (exact, see format_float): catches configs filled in by code. */
static VtCode validate_keys(const RunConfig *cfg, VtError *err)
{
    RunConfig *scratch = vt_xmalloc(sizeof *scratch);
    char *value = vt_xmalloc(VALUE_TEXT_MAX), *why = vt_xmalloc(WHY_MAX);
    VtCode code = VT_OK;
    *scratch = *cfg;
    for (int i = 0; i < KEY_COUNT && !code; i++) {
        const KeySpec *k = &keys[i];
        format_value(cfg, k, value, VALUE_TEXT_MAX);
        if (k->type == T_STRING) { /* checked as stored, not as quoted */
            const char *s = cfield(cfg, k);
            size_t n = strnlen(s, k->size);
            memcpy(value, s, n);
            value[n] = '\0'; /* an unterminated buffer then fails the length check */
        }
        code = set_value(scratch, k, value, why);
        if (code)
            vt_fail(err, code, "%s.%s: %s", k->section, k->key, why);
    }
    free(why);
    free(value);
    free(scratch);
    return code;
}

static VtCode check_count(const char *key, int count, int channels, VtError *err)
{
    if (count == 1 || count == channels)
        return VT_OK;
    return vt_fail(err, VT_ERR_ARGUMENT,
                   "data.%s has %d values but data.channels is %d (give 1 value, used for every "
                   "channel, or %d)",
                   key, count, channels, channels);
}

static VtCode check_order(const char *key, const float *v, VtError *err)
{
    if (v[0] <= v[1])
        return VT_OK;
    return vt_fail(err, VT_ERR_ARGUMENT, "data.%s: the minimum %g is larger than the maximum %g",
                   key, (double)v[0], (double)v[1]);
}

static VtCode validate_data(const RunConfig *cfg, VtError *err)
{
    const DataSection *d = &cfg->data;
    if (d->channels != 1 && d->channels != 3 && d->channels != 4)
        return vt_fail(err, VT_ERR_ARGUMENT, "data.channels: %d is not supported (1, 3 or 4)",
                       d->channels);
    VtCode code = check_count("mean", d->mean_count, d->channels, err);
    if (!code)
        code = check_count("std", d->std_count, d->channels, err);
    if (!code)
        code = check_order("scale", d->scale, err);
    if (!code)
        code = check_order("ratio", d->ratio, err);
    if (!code && d->pad > d->img_size)
        code = vt_fail(err, VT_ERR_ARGUMENT, "data.pad %d is larger than data.img_size %d",
                       d->pad, d->img_size);
    if (!code && loader_eval_side(d->img_size, d->crop_pct) > DATA_MAX_SIDE)
        code = vt_fail(err, VT_ERR_ARGUMENT,
                       "data.crop_pct %g is too small for data.img_size %d: evaluation resizes "
                       "images to img_size / crop_pct = %.6g pixels a side, over the %d an "
                       "image may have",
                       (double)d->crop_pct, d->img_size, (double)d->img_size / d->crop_pct,
                       DATA_MAX_SIDE);
    return code;
}

static VtCode validate_model(const RunConfig *cfg, VtError *err)
{
    const ModelSection *m = &cfg->model;
    if (m->preset[0] && m->sizes_set)
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "model.preset = %s cannot be combined with model.dim, depth, heads or "
                       "mlp_dim set explicitly",
                       m->preset);
    if (cfg->data.img_size % m->patch_size != 0)
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "data.img_size %d is not a multiple of model.patch_size %d",
                       cfg->data.img_size, m->patch_size);
    int dim, depth, heads, mlp_dim;
    config_model_sizes(cfg, &dim, &depth, &heads, &mlp_dim);
    if (dim % heads != 0)
        return vt_fail(err, VT_ERR_ARGUMENT, "model.dim %d is not a multiple of model.heads %d",
                       dim, heads);
    return VT_OK;
}

static VtCode validate_optim(const RunConfig *cfg, VtError *err)
{
    const OptimSection *o = &cfg->optim;
    if (o->min_lr > o->lr)
        return vt_fail(err, VT_ERR_ARGUMENT, "optim.min_lr %g is larger than optim.lr %g",
                       (double)o->min_lr, (double)o->lr);
    if (o->warmup_epochs > (float)cfg->train.epochs)
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "optim.warmup_epochs %g is larger than train.epochs %d",
                       (double)o->warmup_epochs, cfg->train.epochs);
    return VT_OK;
}

VtCode config_validate(const RunConfig *cfg, VtError *err)
{
    const DataSection *d = &cfg->data;
    /* Counts first: the value check below writes lists by their counts. */
    if (d->mean_count < 1 || d->mean_count > VT_MAX_CHANNELS || d->std_count < 1 ||
        d->std_count > VT_MAX_CHANNELS)
        return vt_fail(err, VT_ERR_ARGUMENT, "data.mean_count %d / data.std_count %d: not 1 to %d",
                       d->mean_count, d->std_count, VT_MAX_CHANNELS);
    VtCode code = validate_keys(cfg, err);
    if (!code)
        code = validate_data(cfg, err);
    if (!code)
        code = validate_model(cfg, err);
    if (!code)
        code = validate_optim(cfg, err);
    return code;
}
