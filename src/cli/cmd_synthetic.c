/*
 * cmd_synthetic.c - `vitrain synthetic`: train on a generated in-memory
 * data set, the engine's own smoke run (no image files needed).
 */
#include "vitrain/cli.h"
#include "vitrain/parallel.h"
#include "vitrain/synthetic.h"
#include "vitrain/train.h"
#include "vitrain/vit.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

static const char SYNTHETIC_HELP[] =
    "usage: vitrain synthetic [options]\n"
    "\n"
    "Trains a small ViT on a generated data set and reports its accuracy on the\n"
    "training set and on a held-out set generated with another seed.\n"
    "\n"
    "options (defaults in brackets):\n"
    "  --task quadrant|noise   quadrant: find the quadrant holding a bright\n"
    "                          square; noise: memorize random labels [quadrant]\n"
    "  --preset tiny|small|base  model size; or set each of:\n"
    "  --dim D [64]  --depth L [2]  --heads H [2]  --mlp-dim F [128]\n"
    "  --img-size S [16]  --patch-size P [4]  --channels C [1]\n"
    "  --pe TYPE               positional encoding (see configs/) [absolute]\n"
    "  --samples N [1024]  --batch N [64]  --steps N [200]\n"
    "  --lr X [0.001]  --weight-decay X [0.05]  --warmup N [10]\n"
    "  --seed N [0]  --threads N [0: OMP_NUM_THREADS or all cores]\n";

static bool parse_float(const char *text, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(text, &end);
    if (errno || end == text || *end || !isfinite(v))
        return false;
    *out = v;
    return true;
}

typedef struct SyntheticArgs {
    VitConfig model;
    const char *preset;    /* --preset, or NULL */
    const char *size_set;  /* the first of --dim, --depth, --heads, --mlp-dim given, or NULL */
    const char *task;
    int samples, batch, threads;
    long steps, warmup;
    float lr, weight_decay;
    uint64_t seed;
} SyntheticArgs;

/* One "--name value" option; returns 0 when consumed, else an exit code. */
static int parse_option(SyntheticArgs *a, const char *name, const char *value)
{
    static const struct {
        const char *name;
        size_t offset;
        long min, max;
    } ints[] = {
        {"--dim", offsetof(SyntheticArgs, model.dim), 1, 65536},
        {"--depth", offsetof(SyntheticArgs, model.depth), 1, 1024},
        {"--heads", offsetof(SyntheticArgs, model.heads), 1, 1024},
        {"--mlp-dim", offsetof(SyntheticArgs, model.mlp_dim), 1, 1 << 20},
        {"--img-size", offsetof(SyntheticArgs, model.img_size), 4, 4096},
        {"--patch-size", offsetof(SyntheticArgs, model.patch_size), 1, 4096},
        {"--channels", offsetof(SyntheticArgs, model.channels), 1, 4},
        {"--samples", offsetof(SyntheticArgs, samples), 1, 1 << 24},
        {"--batch", offsetof(SyntheticArgs, batch), 1, 1 << 16},
        {"--threads", offsetof(SyntheticArgs, threads), 0, 1024},
    };
    long v;
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (strcmp(name, ints[i].name) == 0) {
            if (!cli_parse_int(value, ints[i].min, ints[i].max, &v))
                return cli_usage_error("bad value for option: %s", name);
            *(int *)((char *)a + ints[i].offset) = (int)v;
            if (i < 4 && !a->size_set) /* the model sizes a preset sets */
                a->size_set = ints[i].name;
            return 0;
        }
    }
    VtError err;
    if (strcmp(name, "--preset") == 0) {
        if (vit_config_preset(&a->model, value, &err))
            return cli_usage_error("%s", err.message);
        a->preset = value;
    } else if (strcmp(name, "--pe") == 0) {
        if (!pe_find(value))
            return cli_usage_error("unknown encoding '%s' (expected one of %s)", value,
                                   pe_names());
        a->model.pe = pe_options(value);
    } else if (strcmp(name, "--task") == 0) {
        if (strcmp(value, "quadrant") && strcmp(value, "noise"))
            return cli_usage_error("unknown task '%s' (expected quadrant or noise)", value);
        a->task = value;
    } else if (strcmp(name, "--steps") == 0 || strcmp(name, "--warmup") == 0) {
        if (!cli_parse_int(value, 0, LONG_MAX, &v))
            return cli_usage_error("bad value for option: %s", name);
        *(name[2] == 's' ? &a->steps : &a->warmup) = v;
    } else if (strcmp(name, "--seed") == 0) {
        if (!cli_parse_int(value, 0, LONG_MAX, &v))
            return cli_usage_error("bad value for option: %s", name);
        a->seed = (uint64_t)v;
    } else if (strcmp(name, "--lr") == 0 || strcmp(name, "--weight-decay") == 0) {
        float f;
        if (!parse_float(value, &f) || f < 0)
            return cli_usage_error("bad value for option: %s", name);
        *(name[2] == 'l' ? &a->lr : &a->weight_decay) = f;
    } else {
        return cli_usage_error("unknown option: %s", name);
    }
    return 0;
}

static bool print_progress(const StepStats *s, void *user)
{
    const int64_t *total = user;
    if (s->step % 10 == 9 || s->step + 1 == *total)
        printf("step %6lld/%lld  epoch %3lld  loss %.4f  acc %5.1f%%  lr %.2e  |g| %.3f\n",
               (long long)s->step + 1, (long long)*total, (long long)s->epoch, s->loss,
               100.0 * s->correct / s->batch, (double)s->lr, s->grad_norm);
    return true;
}

static void generate(float *images, int *labels, const SyntheticArgs *a, int count, uint64_t seed)
{
    const VitConfig *c = &a->model;
    if (strcmp(a->task, "noise") == 0)
        synthetic_noise(images, labels, count, c->channels, c->img_size, c->num_classes, seed);
    else
        synthetic_quadrant(images, labels, count, c->channels, c->img_size, seed);
}

static int run_synthetic(SyntheticArgs *a)
{
    VitConfig *c = &a->model;
    c->num_classes = strcmp(a->task, "noise") == 0 ? 10 : SYNTHETIC_QUADRANT_CLASSES;
    VtError err;
    Vit model;
    VtCode code = vit_create(&model, c, a->batch, &err);
    if (code)
        return cli_report(code, err.message);
    int threads = threads_setup(a->threads);
    vit_init_params(&model, a->seed);
    printf("model: dim %d, depth %d, heads %d, mlp %d, %d tokens, %zu parameters, pe %s, "
           "%d threads, %.1f MiB\n",
           c->dim, c->depth, c->heads, c->mlp_dim, model.tokens, vit_param_count(&model),
           c->pe.type, threads, vit_memory_bytes(&model) / 1048576.0);

    const size_t image_len = (size_t)c->channels * c->img_size * c->img_size;
    const size_t bytes = (size_t)a->samples * image_len * sizeof(float);
    float *images = malloc(bytes);
    int *labels = malloc((size_t)a->samples * sizeof(int));
    if (!images || !labels) {
        free(images);
        free(labels);
        vit_free(&model);
        char message[200];
        snprintf(message, sizeof message,
                 "not enough memory for %d generated images of %d x %d x %d (%.1f MiB); ask for "
                 "fewer --samples",
                 a->samples, c->channels, c->img_size, c->img_size, (double)bytes / 1048576.0);
        return cli_report(VT_ERR_NOMEM, message);
    }
    generate(images, labels, a, a->samples, a->seed);

    TrainOptions opts = {.batch_size = a->batch, .steps = a->steps, .seed = a->seed,
                         .optim = adamw_defaults()};
    opts.optim.weight_decay = a->weight_decay;
    opts.schedule = (LrSchedule){.lr = a->lr, .min_lr = a->lr * 0.01f, .warmup_lr = 1e-6f,
                                 .warmup_steps = a->warmup, .total_steps = a->steps};
    int64_t total = a->steps;
    code = train_in_memory(&model, &(MemoryDataset){images, labels, a->samples}, &opts,
                                  print_progress, &total, &err);
    if (code == VT_OK) {
        double loss, acc;
        evaluate_in_memory(&model, &(MemoryDataset){images, labels, a->samples}, &loss, &acc);
        printf("train: loss %.4f  top-1 %.2f%%\n", loss, 100.0 * acc);
        generate(images, labels, a, a->samples, a->seed + 1);
        evaluate_in_memory(&model, &(MemoryDataset){images, labels, a->samples}, &loss, &acc);
        printf("held-out: loss %.4f  top-1 %.2f%%\n", loss, 100.0 * acc);
    }
    free(images);
    free(labels);
    vit_free(&model);
    return code == VT_OK ? EXIT_OK : cli_report(code, err.message);
}

int cli_synthetic(int argc, char **argv)
{
    SyntheticArgs a = {
        .model = {.img_size = 16, .channels = 1, .patch_size = 4, .dim = 64, .depth = 2,
                  .heads = 2, .mlp_dim = 128, .pool = POOL_CLS},
        .task = "quadrant", .samples = 1024, .batch = 64, .steps = 200, .warmup = 10,
        .lr = 1e-3f, .weight_decay = 0.05f,
    };
    a.model.pe = pe_options("absolute");
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(SYNTHETIC_HELP, stdout);
            return 0;
        }
        static const char *const options[] = {
            "--dim",  "--depth", "--heads", "--mlp-dim", "--img-size", "--patch-size",
            "--channels", "--samples", "--batch", "--threads", "--preset", "--pe",
            "--task", "--steps", "--warmup", "--seed", "--lr", "--weight-decay", NULL};
        int rc = cli_option_check(argv[i], options, i + 1 < argc);
        if (!rc)
            rc = parse_option(&a, argv[i], argv[i + 1]);
        if (rc)
            return rc;
        i++;
    }
    if (a.batch > a.samples)
        return cli_usage_error("%s", "--batch must not exceed --samples");
    if (a.preset && a.size_set)
        return cli_usage_error("--preset %s cannot be combined with %s (a preset sets --dim, "
                               "--depth, --heads and --mlp-dim)",
                               a.preset, a.size_set);
    return run_synthetic(&a);
}

