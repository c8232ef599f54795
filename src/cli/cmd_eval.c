/*
 * cmd_eval.c - `vitrain eval`: evaluate a checkpoint on a val split at one
 * or more resolutions, optionally dumping every image's logits.
 */
#include "vitrain/checkpoint.h"
#include "vitrain/cli.h"
#include "vitrain/parallel.h"
#include "vitrain/trainer.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char EVAL_HELP[] =
    "usage: vitrain eval --checkpoint FILE [--data DIR] [--img-size N]...\n"
    "                    [--dump-logits FILE] [--shuffle-patches SEED] [--threads N]\n"
    "\n"
    "Evaluates the checkpoint (a file, a run folder for its checkpoint-last, or a\n"
    "model.safetensors written by training or export) on\n"
    "DIR/val (default: the data.root it was trained on), with the eval transform of\n"
    "its config: resize to N / crop_pct, center crop N. Prints CSV to stdout:\n"
    "  img_size,images,eval_loss,eval_top1,eval_top5\n"
    "one row per --img-size (default: the training resolution).\n"
    "\n"
    "  --dump-logits FILE   write path,label,logit_0,...,logit_{K-1} per image; with\n"
    "                       several --img-size, FILE gets '-<N>' before its extension\n"
    "  --shuffle-patches SEED  move the patch tiles of every image by one permutation\n"
    "                       drawn from SEED (one per resolution, the same for every\n"
    "                       image) before the model: the patch-shuffle accuracy drop of\n"
    "                       LieRE Table 5. Without a positional encoding the result is\n"
    "                       unchanged; with one it measures how much position is used.\n"
    "  --threads N          worker threads, 0 for OMP_NUM_THREADS (default: the\n"
    "                       train.threads of the checkpoint's run)\n"
    "\n"
    "See 'vitrain --help' for exit statuses.\n";

enum { MAX_SIZES = 16 };

typedef struct EvalArgs {
    const char *checkpoint, *data, *dump;
    int sizes[MAX_SIZES];
    int size_count;
    int threads;  /* -1: the run's train.threads */
    bool shuffle;
    uint64_t shuffle_seed;
} EvalArgs;

static const char *const EVAL_OPTIONS[] = {"--checkpoint", "--data",    "--dump-logits",
                                            "--img-size",   "--shuffle-patches", "--threads",
                                            NULL};

static int parse_args(EvalArgs *a, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            fputs(EVAL_HELP, stdout);
            return -1;
        }
        int rc = cli_option_check(opt, EVAL_OPTIONS, i + 1 < argc);
        if (rc)
            return rc;
        const char *value = argv[++i];
        long v;
        if (strcmp(opt, "--checkpoint") == 0) {
            a->checkpoint = value;
        } else if (strcmp(opt, "--data") == 0) {
            a->data = value;
        } else if (strcmp(opt, "--dump-logits") == 0) {
            a->dump = value;
        } else if (strcmp(opt, "--img-size") == 0) {
            if (a->size_count == MAX_SIZES || !cli_parse_int(value, 1, 8192, &v))
                return cli_usage_error("bad --img-size '%s' (at most %d sizes, 1..8192)", value,
                                       MAX_SIZES);
            a->sizes[a->size_count++] = (int)v;
        } else if (strcmp(opt, "--shuffle-patches") == 0) {
            if (!cli_parse_int(value, 0, LONG_MAX, &v))
                return cli_usage_error("bad --shuffle-patches '%s' (a seed >= 0)", value);
            a->shuffle = true;
            a->shuffle_seed = (uint64_t)v;
        } else if (strcmp(opt, "--threads") == 0) {
            if (!cli_parse_int(value, 0, 4096, &v))
                return cli_usage_error("bad --threads '%s' (0 to 4096)", value);
            a->threads = (int)v;
        }
    }
    if (!a->checkpoint)
        return cli_usage_error("%s", "eval needs --checkpoint FILE");
    return 0;
}

/* FILE, or FILE with "-<size>" before its extension when several sizes run. */
static void dump_path(char *out, size_t size, const char *path, int img_size, bool several)
{
    const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
    if (!several)
        snprintf(out, size, "%s", path);
    else if (dot && (!slash || dot > slash))
        snprintf(out, size, "%.*s-%d%s", (int)(dot - path), path, img_size, dot);
    else
        snprintf(out, size, "%s-%d", path, img_size);
}

static int write_dump_header(FILE *dump, int K)
{
    int rc = fputs("path,label", dump);
    for (int k = 0; k < K && rc >= 0; k++)
        rc = fprintf(dump, ",logit_%d", k);
    return rc < 0 ? rc : fputc('\n', dump);
}

/* Loads the trained parameters into a model at the training resolution,
 * then moves them to one at img_size (resampling what depends on the grid). */
static VtCode load_model(Vit *m, const RunConfig *cfg, const char *checkpoint, int img_size,
                         VtError *err)
{
    VitConfig vc, at;
    Vit trained;
    VtCode code = vit_config_from_run(&vc, cfg, cfg->data.img_size, err);
    if (!code)
        code = vit_create_inference(&trained, &vc, 1, err);
    if (code)
        return code;
    code = cli_load_params(checkpoint, &trained.param_list, trained.params.data, err);
    if (!code) {
        at = vc;
        at.img_size = img_size; /* train_img_size stays: the encoding extrapolates from it */
        code = vit_create_inference(m, &at, cfg->train.batch_size, err);
    }
    if (!code)
        vit_transfer_params(m, &trained);
    vit_free(&trained);
    return code;
}

/* The val classes must be the ones the model was trained on: their count,
 * and where the model recorded them (model.class_digest), their names in
 * order, else its labels would be read against other classes. */
static VtCode check_classes(const RunConfig *cfg, const Dataset *val, VtError *err)
{
    if (val->num_classes != cfg->model.num_classes)
        return vt_fail(err, VT_ERR_DATA, "%s/val has %d classes, the model was trained on %d",
                       cfg->data.root, val->num_classes, cfg->model.num_classes);
    if (cfg->model.class_digest >= 0 && dataset_class_digest(val) != cfg->model.class_digest)
        return vt_fail(err, VT_ERR_DATA,
                       "the class folders of %s/val (%s, ...) are not those the model was "
                       "trained on: other names or another order (model.class_digest %lld, the "
                       "folder's %lld)",
                       cfg->data.root, val->class_names[0], cfg->model.class_digest,
                       dataset_class_digest(val));
    return VT_OK;
}

static VtCode eval_at(const RunConfig *cfg, const char *checkpoint, const EvalArgs *a,
                      int img_size, VtError *err)
{
    DatasetOptions o = {.channels = cfg->data.channels,
                        .cache_side = loader_eval_side(img_size, cfg->data.crop_pct),
                        .on_bad_image = cfg->data.on_bad_image, .cache = CACHE_MEMORY,
                        .progress = true};
    Dataset val = {0};
    Vit m = {0};
    Loader *ld = NULL;
    FILE *dump = NULL;
    VtCode code = dataset_open(&val, cfg->data.root, "val", &o, NULL, err);
    if (!code)
        code = check_classes(cfg, &val, err);
    if (!code)
        code = load_model(&m, cfg, checkpoint, img_size, err);
    LoaderOptions lo = loader_options_from_run(cfg, img_size, false, 0);
    if (!code)
        code = loader_create(&ld, &val, &lo, err);
    char path[VT_PATH_MAX + 16];
    if (!code && a->dump) {
        dump_path(path, sizeof path, a->dump, img_size, a->size_count > 1);
        if (!(dump = fopen(path, "w")) || write_dump_header(dump, cfg->model.num_classes) < 0)
            code = vt_fail(err, VT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    }
    const int grid = img_size / cfg->model.patch_size;
    int *order = a->shuffle ? vt_xmalloc((size_t)grid * grid * sizeof(int)) : NULL;
    if (order)
        patch_order_shuffled(order, grid * grid, a->shuffle_seed);
    const EvalOptions eo = {.dump = dump, .patch_order = order};
    EvalResult r;
    if (!code)
        code = evaluate(&m, ld, &val, &eo, &r, err);
    free(order);
    if (dump && fclose(dump) != 0 && !code)
        code = vt_fail(err, VT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    if (!code) {
        printf("%d,%d,%.6f,%.4f,%.4f\n", img_size, r.count, r.loss, r.top1, r.top5);
        fflush(stdout);
    }
    if (ld)
        loader_destroy(ld);
    if (m.params.data)
        vit_free(&m);
    dataset_close(&val);
    return code;
}

int cli_eval(int argc, char **argv)
{
    EvalArgs a = {.threads = -1};
    int rc = parse_args(&a, argc, argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    static RunConfig cfg;
    char checkpoint[VT_PATH_MAX];
    VtError err;
    cli_checkpoint_path(checkpoint, sizeof checkpoint, a.checkpoint);
    VtCode code = cli_config_from_checkpoint(&cfg, checkpoint, &err);
    if (code)
        return cli_report(code, err.message);
    if (a.data)
        snprintf(cfg.data.root, sizeof cfg.data.root, "%s", a.data);
    if (a.size_count == 0)
        a.sizes[a.size_count++] = cfg.data.img_size;
    /* Every size checked before the CSV header goes out. */
    for (int i = 0; i < a.size_count; i++) {
        if (a.sizes[i] % cfg.model.patch_size != 0)
            return cli_usage_error("--img-size %d is not a multiple of the model's patch size %d",
                                   a.sizes[i], cfg.model.patch_size);
        if (loader_eval_side(a.sizes[i], cfg.data.crop_pct) > DATA_MAX_SIDE)
            return cli_usage_error("--img-size %d with the run's data.crop_pct %g resizes images "
                                   "to %.6g pixels a side, over the %d an image may have",
                                   a.sizes[i], (double)cfg.data.crop_pct,
                                   (double)a.sizes[i] / cfg.data.crop_pct, DATA_MAX_SIDE);
    }
    threads_setup(a.threads >= 0 ? a.threads : cfg.train.threads);
    printf("img_size,images,eval_loss,eval_top1,eval_top5\n");
    for (int i = 0; i < a.size_count && !code; i++)
        code = eval_at(&cfg, checkpoint, &a, a.sizes[i], &err);
    return code ? cli_report(code, err.message) : EXIT_OK;
}
