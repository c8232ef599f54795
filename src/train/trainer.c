/*
 * trainer.c - a training run over an image folder (see trainer.h): the run
 * folder, the step loop, per-epoch evaluation, logs and checkpoints.
 *
 * Everything a step depends on is a function of (seed, step): the batch
 * (the loader's contract), the drop-path masks, the learning rate. With the
 * parameters and AdamW moments from a checkpoint, a resumed run therefore
 * repeats the uninterrupted one bit for bit.
 *
 * Data parallel (dist.h): each rank takes its shard of every global batch,
 * the gradients are averaged over the ranks before the optimizer step, and
 * the evaluation is split over the ranks and summed. Rank 0 alone writes
 * the run folder and prints. Every phase that can fail on some ranks only
 * ends in dist_agree, so the ranks always stop together; the checkpoints
 * hold no per-rank state, so a run resumes on any number of ranks.
 */
#include "vitrain/trainer.h"

#include "fault_injection.h"

#include "vitrain/checkpoint.h"
#include "vitrain/dist.h"
#include "vitrain/interrupt.h"
#include "vitrain/metrics.h"
#include "vitrain/optim.h"
#include "vitrain/parallel.h"
#include "vitrain/pe.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* steps.csv holds what the seed determines, so two runs with the same
 * config and thread count write the same bytes; wall-clock numbers go to
 * timing.csv. */
static const char *const STEP_COLUMNS[] = {"step", "epoch", "loss", "lr", "grad_norm"};
static const char *const TIMING_COLUMNS[] = {"step", "seconds", "img_per_sec"};
static const char *const SUMMARY_COLUMNS[] = {"epoch",     "train_loss", "eval_loss",
                                              "eval_top1", "eval_top5",  "lr",
                                              "img_per_sec", "epoch_seconds"};
enum { STEP_COLUMN_COUNT = 5, TIMING_COLUMN_COUNT = 3, SUMMARY_COLUMN_COUNT = 8 };

double (*trainer_loss_hook)(int64_t step, double loss);

/* Everything a run holds while it trains. */
typedef struct Run {
    RunConfig cfg;         /* with model.num_classes resolved from the data */
    char dir[VT_PATH_MAX];
    char *config_text;
    Dataset train, val;
    Vit model;
    AdamW opt;
    LrSchedule schedule;
    Loader *train_loader;
    CsvLog steps, timing, summary;
    Progress progress;
    int64_t steps_per_epoch, total_steps, last_step;
    int64_t step;          /* steps completed */
    int64_t skipped, skipped_in_a_row; /* steps left out under train.on_nan = skip_step */
    double best_top1;
    /* Running totals of the current epoch. */
    double epoch_loss_sum, epoch_start;
    int64_t epoch_steps, epoch_loss_steps; /* all steps / those with a finite loss */
    float last_lr;
    /* Data parallel: this process's rank among `ranks`; rank 0 writes. */
    int rank, ranks;
    bool root;
    double step_seconds;   /* time in training steps, for the communication share */
} Run;

/* printf on rank 0 only: the other ranks would repeat it word for word. */
static void say(const Run *run, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void say(const Run *run, const char *fmt, ...)
{
    if (!run->root)
        return;
    va_list args;
    va_start(args, fmt);
    vprintf(fmt, args);
    va_end(args);
}

static void run_path(char *out, size_t size, const Run *run, const char *file)
{
    snprintf(out, size, "%s/%s", run->dir, file);
}

/* mkdir -p */
static VtCode make_dirs(const char *path, VtError *err)
{
    char buf[VT_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char saved = *p;
            *p = '\0';
            if (mkdir(buf, 0755) != 0 && errno != EEXIST)
                return vt_fail(err, VT_ERR_IO, "cannot create the run folder %s: %s", buf,
                               strerror(errno));
            *p = saved;
            if (saved == '\0')
                return VT_OK;
        }
    }
}

static bool file_exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* Writes the resolved config to config.ini (rank 0). */
static VtCode write_config(Run *run, VtError *err)
{
    char path[VT_PATH_MAX + 32];
    free(run->config_text);
    run->config_text = config_to_string(&run->cfg);
    if (!run->root)
        return VT_OK;
    run_path(path, sizeof path, run, "config.ini");
    FILE *f = fopen(path, "w");
    if (!f)
        return vt_fail(err, VT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    bool ok = fputs(run->config_text, f) >= 0;
    ok = fclose(f) == 0 && ok;
    if (!ok)
        return vt_fail(err, VT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    return VT_OK;
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* A write killed midway leaves <file>.tmp.<pid> behind (the old <file> is
 * intact, see binfile.c). A run folder serves one run at a time, so any
 * such file is stale when a run starts in it. */
static void remove_stale_temporaries(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *tag = strstr(e->d_name, ".tmp.");
        char path[VT_PATH_MAX + 300];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (tag && all_digits(tag + 5) && unlink(path) == 0)
            printf("removed %s, left by an interrupted write\n", path);
    }
    closedir(d);
}

/* A resumed run writes its files next to the checkpoint. A folder that
 * holds some of them but no steps.csv (which every run writes first) is
 * not this run's: its files would be overwritten, so it is refused. A
 * folder with none of them (the checkpoint alone, moved) takes the run. */
static VtCode check_resume_dir(Run *run, VtError *err)
{
    static const char *const outputs[] = {"config.ini",  "summary.csv",     "timing.csv",
                                          "report.md",   "model.safetensors", "checkpoint-best"};
    char path[VT_PATH_MAX + 32];
    run_path(path, sizeof path, run, "steps.csv");
    if (file_exists(path))
        return VT_OK;
    for (size_t i = 0; i < sizeof outputs / sizeof outputs[0]; i++) {
        run_path(path, sizeof path, run, outputs[i]);
        if (file_exists(path))
            return vt_fail(err, VT_ERR_ARGUMENT,
                           "cannot resume in %s: it holds %s but no steps.csv, so it is not the "
                           "folder of the run this checkpoint continues, and the run would "
                           "overwrite it; move the checkpoint to its run folder or to an empty "
                           "folder",
                           run->dir, path);
    }
    return VT_OK;
}

/* Checkpoints go through temporary files created next to them: a folder
 * where no file can be created fails now, not at the first checkpoint
 * after an epoch of training (config.ini alone may still be writable in
 * a read-only folder). The probe's name is one remove_stale_temporaries
 * clears should it be left behind. */
static VtCode check_writable(const char *dir, VtError *err)
{
    char path[VT_PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/write-test.tmp.%ld", dir, (long)getpid());
    const int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return vt_fail(err, VT_ERR_IO, "cannot create files in %s: %s", dir, strerror(errno));
    close(fd);
    unlink(path);
    return VT_OK;
}

/* Creates the run folder and writes config.ini: a folder that cannot be
 * written fails here, before any data is decoded. Rank 0's business: the
 * other ranks only hear the outcome (dist_agree). */
static VtCode prepare_run_dir(Run *run, bool resuming, VtError *err)
{
    char path[VT_PATH_MAX + 32];
    if (!run->root)
        return write_config(run, err);
    VtCode code = make_dirs(run->dir, err);
    if (!code && resuming)
        code = check_resume_dir(run, err);
    if (!code)
        code = check_writable(run->dir, err);
    if (code)
        return code;
    remove_stale_temporaries(run->dir);
    run_path(path, sizeof path, run, "checkpoint-last");
    if (!resuming && file_exists(path))
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "%s already holds a run; continue it with --resume %s, or choose another "
                       "log.name",
                       run->dir, run->dir);
    return write_config(run, err);
}

/* model.num_classes 0 means "the class folders of the data"; the resolved
 * config then records the count, so the model can be rebuilt from it, and
 * the digest of the class names, so that eval can tell a folder of other
 * classes. A run resumed on a folder whose classes changed stops here. */
static VtCode resolve_classes(Run *run, VtError *err)
{
    int *classes = &run->cfg.model.num_classes;
    if (*classes != 0 && *classes != run->train.num_classes)
        return vt_fail(err, VT_ERR_DATA,
                       "model.num_classes is %d, but %s/train has %d class folders", *classes,
                       run->cfg.data.root, run->train.num_classes);
    *classes = run->train.num_classes;
    long long *digest = &run->cfg.model.class_digest;
    const long long found = dataset_class_digest(&run->train);
    if (*digest >= 0 && *digest != found)
        return vt_fail(err, VT_ERR_DATA,
                       "the class folders of %s/train are not those this run was trained on "
                       "(model.class_digest %lld, the folder's %lld: other names or another "
                       "order)",
                       run->cfg.data.root, *digest, found);
    *digest = found;
    return write_config(run, err);
}

static VtCode open_data(Run *run, VtError *err)
{
    const RunConfig *cfg = &run->cfg;
    DatasetOptions o = {
        .channels = cfg->data.channels,
        /* timm's eval resize; training crops come from the same cache. */
        .cache_side = loader_eval_side(cfg->data.img_size, cfg->data.crop_pct),
        .on_bad_image = cfg->data.on_bad_image, .cache = cfg->data.cache,
        /* Only rank 0 may create files in the run folder. */
        .cache_dir = run->root ? run->dir : NULL, .progress = run->root,
    };
    DatasetOptions train_o = o;
    train_o.fraction = cfg->data.train_fraction;
    train_o.fraction_seed = (uint64_t)cfg->train.seed;
    VtCode code = dataset_open(&run->train, cfg->data.root, "train", &train_o, NULL, err);
    if (code)
        return code;
    code = dataset_open(&run->val, cfg->data.root, "val", &o, &run->train, err);
    if (code)
        return code;
    const bool subset = cfg->data.train_fraction > 0.0f && cfg->data.train_fraction < 1.0f;
    if (run->train.count < cfg->train.batch_size)
        return vt_fail(err, VT_ERR_DATA,
                       "%s/train has %d images%s, fewer than one batch (train.batch_size %d)",
                       cfg->data.root, run->train.count,
                       subset ? " in its data.train_fraction subset" : "",
                       cfg->train.batch_size);
    return VT_OK;
}

/* Builds the model once before the run folder is touched and any image is
 * decoded, so that a bad encoding option, a model too big for memory, or a
 * checkpoint to resume that does not fit the model (another shape after
 * --set, a damaged file) fails in a moment and changes nothing. Without a
 * checkpoint the parameters are never touched, so their pages are never
 * faulted in. */
static VtCode check_model(const Run *run, const char *resume_checkpoint, VtError *err)
{
    RunConfig *cfg = vt_xmalloc(sizeof *cfg);
    *cfg = run->cfg;
    if (cfg->model.num_classes == 0)
        cfg->model.num_classes = 2; /* the data decides later; the count hardly weighs */
    VitConfig vc;
    Vit probe;
    VtCode code = vit_config_from_run(&vc, cfg, cfg->data.img_size, err);
    if (!code)
        code = vit_create(&probe, &vc, VT_MAX(1, cfg->train.batch_size / run->ranks), err);
    free(cfg);
    if (code)
        return code;
    CheckpointState st;
    if (resume_checkpoint) {
        code = checkpoint_load(resume_checkpoint, &st, &probe.param_list, probe.params.data,
                               NULL, NULL, err);
        if (!code)
            free((char *)st.config);
    }
    vit_free(&probe);
    return code;
}

static VtCode build_model(Run *run, VtError *err)
{
    const RunConfig *cfg = &run->cfg;
    VitConfig vc;
    if (cfg->train.batch_size % run->ranks != 0)
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "train.batch_size %d is not a multiple of the %d ranks: every rank "
                       "takes an equal part of each global batch",
                       cfg->train.batch_size, run->ranks);
    /* Mixing pairs neighbours: an odd share would pair across ranks. */
    if ((cfg->train.mixup > 0.0f || cfg->train.cutmix > 0.0f) && run->ranks > 1 &&
        cfg->train.batch_size / run->ranks % 2 != 0)
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "mixup and CutMix pair neighbouring samples, so each of the %d ranks "
                       "needs an even share of train.batch_size %d",
                       run->ranks, cfg->train.batch_size);
    VtCode code = vit_config_from_run(&vc, cfg, cfg->data.img_size, err);
    if (code)
        return code;
    /* Each rank holds the activations of its shard only. */
    code = vit_create(&run->model, &vc, cfg->train.batch_size / run->ranks, err);
    if (code)
        return code;
    vit_init_params(&run->model, (uint64_t)cfg->train.seed);

    AdamWConfig ac = {.beta1 = cfg->optim.betas[0], .beta2 = cfg->optim.betas[1],
                      .eps = cfg->optim.eps, .weight_decay = cfg->optim.weight_decay,
                      .clip_grad = cfg->optim.clip_grad,
                      .lamb = strcmp(cfg->optim.opt, "lamb") == 0};
    adamw_create(&run->opt, &run->model.param_list, &ac);

    run->steps_per_epoch = run->train.count / cfg->train.batch_size;
    run->total_steps = run->steps_per_epoch * cfg->train.epochs;
    run->last_step = cfg->train.max_steps > 0 && cfg->train.max_steps < run->total_steps
                         ? cfg->train.max_steps
                         : run->total_steps;
    run->schedule = (LrSchedule){
        .lr = cfg->optim.lr, .min_lr = cfg->optim.min_lr, .warmup_lr = cfg->optim.warmup_lr,
        .warmup_steps = (int64_t)llround(cfg->optim.warmup_epochs * run->steps_per_epoch),
        .total_steps = run->total_steps};
    return VT_OK;
}

static VtCode resume_from(Run *run, const char *checkpoint, VtError *err)
{
    CheckpointState st;
    VtCode code = checkpoint_load(checkpoint, &st, &run->model.param_list,
                                  run->model.params.data, run->opt.m.data, run->opt.v.data, err);
    if (code)
        return code;
    free((char *)st.config);
    /* The loader finds its place from the step and the steps per epoch; a
     * train split of another size would put it in another epoch than the
     * checkpoint's and skip or repeat epochs without a word. */
    if (st.epoch != st.step / run->steps_per_epoch)
        return vt_fail(err, VT_ERR_DATA,
                       "cannot resume %s: it stopped in epoch %lld at step %lld, but the train "
                       "split of %s now gives %lld steps per epoch (%lld images, batch %d), "
                       "which would put that step in epoch %lld: its images changed since",
                       checkpoint, (long long)st.epoch, (long long)st.step, run->cfg.data.root,
                       (long long)run->steps_per_epoch, (long long)run->train.count,
                       run->cfg.train.batch_size, (long long)(st.step / run->steps_per_epoch));
    run->step = st.step;
    run->opt.t = st.optim_t;
    run->best_top1 = st.best_top1;
    /* A resume mid-epoch: summary.csv's train_loss covers the steps before it too. */
    run->epoch_loss_sum = st.epoch_loss_sum;
    run->epoch_loss_steps = st.epoch_loss_steps;
    say(run, "resuming %s at step %lld (epoch %lld) on %d rank%s\n", checkpoint,
        (long long)st.step, (long long)st.epoch, run->ranks, run->ranks > 1 ? "s" : "");
    if (!run->root)
        return VT_OK;
    /* Logged rows past the checkpoint belong to the interrupted attempt. */
    char path[VT_PATH_MAX + 32];
    run_path(path, sizeof path, run, "steps.csv");
    code = csv_truncate_after(path, (double)run->step - 1, err);
    run_path(path, sizeof path, run, "timing.csv");
    if (!code)
        code = csv_truncate_after(path, (double)run->step - 1, err);
    run_path(path, sizeof path, run, "summary.csv");
    if (!code)
        code = csv_truncate_after(path, (double)(run->step / run->steps_per_epoch) - 1, err);
    return code;
}

static VtCode open_logs(Run *run, VtError *err)
{
    char path[VT_PATH_MAX + 32];
    if (!run->root)
        return VT_OK;
    run_path(path, sizeof path, run, "steps.csv");
    VtCode code = csv_open(&run->steps, path, STEP_COLUMNS, STEP_COLUMN_COUNT, err);
    run_path(path, sizeof path, run, "timing.csv");
    if (!code)
        code = csv_open(&run->timing, path, TIMING_COLUMNS, TIMING_COLUMN_COUNT, err);
    run_path(path, sizeof path, run, "summary.csv");
    if (!code)
        code = csv_open(&run->summary, path, SUMMARY_COLUMNS, SUMMARY_COLUMN_COUNT, err);
    return code;
}

/* The ranks must hold the same parameters: a checkpoint of rank 0's would
 * otherwise silently stand for a model nobody trained. Collective. */
static VtCode check_ranks_agree(Run *run, uint64_t *hash, VtError *err)
{
    return dist_check_identical(run->model.params.data, run->model.param_list.total,
                                "parameters", hash, err);
}

/* Collective: the parameter check on every rank, the file on rank 0, and
 * its outcome on every rank. */
static VtCode save_checkpoint(Run *run, const char *name, VtError *err)
{
    char path[VT_PATH_MAX + 32];
    uint64_t hash;
    VtCode code = check_ranks_agree(run, &hash, err);
    if (code || !run->root)
        return dist_agree(code, err);
    run_path(path, sizeof path, run, name);
    CheckpointState st = {.step = run->step, .epoch = run->step / run->steps_per_epoch,
                          .optim_t = run->opt.t, .best_top1 = run->best_top1,
                          .epoch_loss_sum = run->epoch_loss_sum,
                          .epoch_loss_steps = run->epoch_loss_steps,
                          .config = run->config_text};
    return dist_agree(checkpoint_save(path, &st, &run->model.param_list, run->model.params.data,
                                      run->opt.m.data, run->opt.v.data, err),
                      err);
}

/* Each rank evaluates its part of the split; the sums meet on every rank. */
static VtCode evaluate_val(Run *run, EvalResult *result, VtError *err)
{
    LoaderOptions lo = loader_options_from_run(&run->cfg, run->cfg.data.img_size, false, 0);
    lo.shard = run->rank;
    lo.shards = run->ranks;
    Loader *ld;
    VtCode code = loader_create(&ld, &run->val, &lo, err);
    if (!code) {
        code = evaluate(&run->model, ld, &run->val, NULL, result, err);
        loader_destroy(ld);
    }
    code = dist_agree(code, err);
    if (code)
        return code;
    double sums[4] = {(double)result->count, result->loss_sum, (double)result->top1_hits,
                      (double)result->top5_hits};
    dist_sum(sums, 4);
    result->count = (int)sums[0];
    result->loss_sum = sums[1];
    result->top1_hits = (int64_t)sums[2];
    result->top5_hits = (int64_t)sums[3];
    evaluate_finish(result);
    return VT_OK;
}

/* Evaluates (when due), logs the epoch's summary row and writes the
 * checkpoints. `epoch` is 0-based, like timm's summary.csv. */
static VtCode end_epoch(Run *run, int64_t epoch, VtError *err)
{
    const RunConfig *cfg = &run->cfg;
    const bool last = run->step == run->last_step;
    /* Throughput of the training steps alone; epoch_seconds includes eval. */
    const double img_per_sec = (double)(run->epoch_steps * cfg->train.batch_size) /
                               (now_seconds() - run->epoch_start);
    EvalResult eval = {.loss = NAN, .top1 = NAN, .top5 = NAN};
    if (run->root)
        progress_break(&run->progress, stdout);
    if (last || (epoch + 1) % cfg->train.eval_every == 0) {
        VtCode code = evaluate_val(run, &eval, err);
        if (code)
            return code;
    }
    const double seconds = now_seconds() - run->epoch_start;
    const double train_loss =
        run->epoch_loss_steps ? run->epoch_loss_sum / (double)run->epoch_loss_steps : NAN;
    say(run,
        "epoch %lld: train_loss %.4f  eval_loss %.4f  top1 %.2f%%  top5 %.2f%%  %.0f img/s  "
        "%.1f s\n",
        (long long)epoch, train_loss, eval.loss, eval.top1, eval.top5, img_per_sec, seconds);
    const double row[SUMMARY_COLUMN_COUNT] = {(double)epoch, train_loss, eval.loss, eval.top1,
                                              eval.top5, run->last_lr, img_per_sec, seconds};
    VtCode code = run->root ? csv_row(&run->summary, row, SUMMARY_COLUMN_COUNT, err) : VT_OK;
    /* Rank 0's failure to log must not leave the others in the checkpoint's check. */
    code = dist_agree(code, err);
    const bool best = !isnan(eval.top1) && eval.top1 > run->best_top1;
    if (best)
        run->best_top1 = eval.top1;
    /* After a whole epoch the checkpoints stand at the next one's start,
     * with empty totals; a run stopped inside an epoch (train.max_steps)
     * keeps that epoch's totals for its resume. */
    if (run->step % run->steps_per_epoch == 0) {
        run->epoch_loss_sum = 0.0;
        run->epoch_loss_steps = 0;
    }
    if (!code)
        code = save_checkpoint(run, "checkpoint-last", err);
    if (!code && best)
        code = save_checkpoint(run, "checkpoint-best", err);
    run->epoch_steps = 0;
    run->epoch_start = now_seconds();
    return code;
}

/* A non-finite loss or gradient: name the step and the first tensor of
 * `suspects` (the parameters for a loss, the gradients for a gradient) that
 * holds a NaN or an infinity. checkpoint-last keeps the last good state. */
static VtCode numerical_fault(Run *run, const char *what, double value, const Arena *suspects,
                              VtError *err)
{
    if (run->root)
        progress_break(&run->progress, stdout);
    const int t = arena_first_non_finite(suspects);
    const char *kind = suspects == &run->model.grads ? "gradient" : "parameter";
    if (t >= 0)
        return vt_fail(err, VT_ERR_NUMERIC,
                       "step %lld: the %s is %g; first non-finite %s: %s; checkpoint-last in %s "
                       "holds the last good state",
                       (long long)run->step, what, value, kind,
                       run->model.param_list.specs[t].name, run->dir);
    return vt_fail(err, VT_ERR_NUMERIC,
                   "step %lld: the %s is %g (every %s is finite: the activations overflowed); "
                   "checkpoint-last in %s holds the last good state",
                   (long long)run->step, what, value, kind, run->dir);
}

/* train.on_nan = skip_step: the batch is consumed, the parameters and the
 * optimizer are left as they are. Ten in a row mean the state itself is
 * broken: then the run stops as under on_nan = stop. */
static VtCode skip_step(Run *run, const char *what, double value, const Arena *suspects,
                        VtError *err)
{
    enum { MAX_IN_A_ROW = 10 };
    run->skipped++;
    if (++run->skipped_in_a_row >= MAX_IN_A_ROW) {
        VtError fault;
        VtCode code = numerical_fault(run, what, value, suspects, &fault);
        return vt_fail(err, code, "%d steps in a row were skipped (train.on_nan = skip_step); %s",
                       MAX_IN_A_ROW, fault.message);
    }
    if (run->root) {
        progress_break(&run->progress, stdout);
        fprintf(stderr, "vitrain: step %lld: the %s is %g; step skipped (%lld so far)\n",
                (long long)run->step, what, value, (long long)run->skipped);
    }
    return VT_OK;
}

static VtCode train_step(Run *run, const Batch *b, VtError *err)
{
    const RunConfig *cfg = &run->cfg;
    const int64_t step = run->step;
    VT_ASSERT(b->step == step);
    const double t0 = now_seconds();
    const VitPass pass = {.train = true, .step = step, .seed = (uint64_t)cfg->train.seed,
                          .batch_first = b->first, .smoothing = cfg->train.smoothing,
                          .mix_labels = b->mix_lambda < 1.0f ? b->mix_labels : NULL,
                          .mix_lambda = b->mix_lambda};
    arena_zero(&run->model.grads);
    /* The mean over the global batch is the mean of the ranks' means (equal
     * shards); a NaN anywhere reaches every rank, which then all decide alike. */
    double loss = vit_forward_loss(&run->model, b->images, b->labels, b->size, &pass);
    dist_sum(&loss, 1);
    loss /= run->ranks;
    if (trainer_loss_hook)
        loss = trainer_loss_hook(step, loss);
    const float lr = lr_at_step(&run->schedule, step);
    double norm = NAN;
    if (!isfinite(loss)) {
        if (cfg->train.on_nan == NAN_STOP)
            return numerical_fault(run, "loss", loss, &run->model.params, err);
    } else {
        vit_backward(&run->model, b->labels, &pass);
        dist_average(run->model.grads.data, run->model.param_list.total);
        /* Checked before the update: a bad step never reaches the parameters. */
        norm = grad_global_norm(&run->opt, &run->model.grads);
        if (!isfinite(norm) && cfg->train.on_nan == NAN_STOP)
            return numerical_fault(run, "gradient norm", norm, &run->model.grads, err);
    }
    if (isfinite(loss) && isfinite(norm)) {
        adamw_apply(&run->opt, &run->model.params, &run->model.grads, lr, norm);
        run->skipped_in_a_row = 0;
    } else {
        VtCode code = isfinite(loss)
                          ? skip_step(run, "gradient norm", norm, &run->model.grads, err)
                          : skip_step(run, "loss", loss, &run->model.params, err);
        if (code)
            return code;
    }
    run->step++;
    run->last_lr = lr;
    run->epoch_steps++;
    if (isfinite(loss)) {
        run->epoch_loss_sum += loss;
        run->epoch_loss_steps++;
    }

    const double seconds = now_seconds() - t0;
    run->step_seconds += seconds;
    const double img_per_sec = cfg->train.batch_size / seconds;
    const int64_t epoch = step / run->steps_per_epoch;
    const double row[STEP_COLUMN_COUNT] = {(double)step, (double)epoch, loss, lr, norm};
    const double timing[TIMING_COLUMN_COUNT] = {(double)step, seconds, img_per_sec};
    if (!run->root)
        return VT_OK;
    progress_step(&run->progress, stdout, epoch, step, run->last_step, loss, lr, img_per_sec);
    VtCode code = csv_row(&run->steps, row, STEP_COLUMN_COUNT, err);
    return code ? code : csv_row(&run->timing, timing, TIMING_COLUMN_COUNT, err);
}

/* SIGINT/SIGTERM (on any rank): the step in progress has finished; save it
 * and stop. Collective. */
static VtCode stop_on_signal(Run *run, VtError *err)
{
    if (run->root)
        progress_break(&run->progress, stdout);
    VtCode code = save_checkpoint(run, "checkpoint-last", err);
    if (code)
        return code;
    char by[64] = "a signal to another rank";
    if (interrupt_signal())
        snprintf(by, sizeof by, "signal %d", interrupt_signal());
    return vt_fail(err, VT_ERR_INTERRUPTED,
                   "stopped by %s after step %lld; checkpoint-last is written: continue "
                   "with --resume %s",
                   by, (long long)run->step, run->dir);
}

static VtCode train_loop(Run *run, VtError *err)
{
    LoaderOptions lo = loader_options_from_run(&run->cfg, run->cfg.data.img_size, true, run->step);
    lo.shard = run->rank;
    lo.shards = run->ranks;
    VtCode code = dist_agree(loader_create(&run->train_loader, &run->train, &lo, err), err);
    if (code)
        return code;
    progress_init(&run->progress, stdout, run->cfg.log.every, run->step);
    run->epoch_start = now_seconds();
    while (run->step < run->last_step && !code) {
        Batch b;
        VT_ASSERT(loader_next(run->train_loader, &b));
        /* A failed step (rank 0's log write, say) stops every rank here. */
        code = dist_agree(train_step(run, &b, err), err);
        if (!code && (run->step % run->steps_per_epoch == 0 || run->step == run->last_step))
            code = dist_agree(end_epoch(run, (run->step - 1) / run->steps_per_epoch, err), err);
        /* The ranks stop at the same step, whichever of them got the signal. */
        if (!code && dist_any(interrupt_requested()) && run->step < run->last_step)
            code = stop_on_signal(run, err);
    }
    if (run->root)
        progress_break(&run->progress, stdout);
    return code;
}

static VtCode write_report(Run *run, double seconds, VtError *err)
{
    char path[VT_PATH_MAX + 32];
    run_path(path, sizeof path, run, "report.md");
    FILE *f = fopen(path, "w");
    if (!f)
        return vt_fail(err, VT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
    const VitConfig *c = &run->model.cfg;
    int rc = fprintf(f,
                     "# %s\n\n"
                     "| | |\n|---|---|\n"
                     "| model | dim %d, depth %d, heads %d, mlp %d, patch %d, %d px |\n"
                     "| positional encoding | %s |\n"
                     "| parameters | %zu |\n"
                     "| data | %s: %d train, %d val images, %d classes |\n"
                     "| steps | %lld (%lld per epoch) |\n"
                     "| best eval top-1 | %.2f %% |\n"
                     "| wall time of this session | %.1f s |\n"
                     "| ranks x threads | %d x %d |\n"
                     "| gradient averaging | %.1f %% of the step time |\n",
                     run->cfg.log.name, c->dim, c->depth, c->heads, c->mlp_dim, c->patch_size,
                     c->img_size, run->cfg.pe.type, vit_param_count(&run->model),
                     run->cfg.data.root, run->train.count, run->val.count,
                     run->train.num_classes, (long long)run->step,
                     (long long)run->steps_per_epoch, run->best_top1, seconds, run->ranks,
                     threads_count(),
                     run->step_seconds > 0 ? 100.0 * dist_comm_seconds() / run->step_seconds
                                           : 0.0);
    rc = fclose(f) == 0 && rc >= 0;
    return rc ? VT_OK : vt_fail(err, VT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
}

/* Collective: the final parameter check, then rank 0 writes. */
static VtCode finish(Run *run, double start, VtError *err)
{
    char path[VT_PATH_MAX + 32];
    uint64_t hash;
    VtCode check = check_ranks_agree(run, &hash, err);
    if (check)
        return check;
    if (run->ranks > 1)
        say(run, "parameters identical on all %d ranks (hash %016llx)\n", run->ranks,
            (unsigned long long)hash);
    if (!run->root)
        return VT_OK;
    run_path(path, sizeof path, run, "model.safetensors");
    VtCode code = safetensors_save(path, &run->model.param_list, run->model.params.data,
                                   run->config_text, err);
    if (!code)
        code = write_report(run, now_seconds() - start, err);
    if (!code)
        say(run, "done: best eval top-1 %.2f%%; outputs in %s/\n", run->best_top1, run->dir);
    return code;
}

static void close_run(Run *run)
{
    VtError ignored;
    if (run->train_loader)
        loader_destroy(run->train_loader);
    csv_close(&run->steps, &ignored);
    csv_close(&run->timing, &ignored);
    csv_close(&run->summary, &ignored);
    if (run->model.params.data) {
        adamw_free(&run->opt);
        vit_free(&run->model);
    }
    dataset_close(&run->train);
    dataset_close(&run->val);
    free(run->config_text);
}

/* Threads of this rank: train.threads, else OMP_NUM_THREADS, else the
 * machine's cores split among the ranks running on it. */
static int rank_threads(int configured)
{
    const int sharing = dist_ranks_on_node();
    if (configured > 0 || getenv("OMP_NUM_THREADS") || sharing == 1)
        return configured;
    return VT_MAX(1, threads_cores() / sharing);
}

/* Options of another encoding left in a config (a sweep that changes
 * pe.type, say) do nothing: said once, so that nobody believes them in
 * effect. */
static void warn_ignored_options(const Run *run)
{
    char names[200];
    const int count = pe_ignored_options(&run->model.cfg.pe, names, sizeof names);
    if (count && run->root)
        fprintf(stderr, "vitrain: warning: pe.type %s does not read %s; %s ignored\n",
                run->model.cfg.pe.type, names, count > 1 ? "they are" : "it is");
}

VtCode train_run(const RunConfig *cfg, const char *run_dir, const char *resume_checkpoint,
                 VtError *err)
{
    const double start = now_seconds();
    Run *run = vt_xcalloc(1, sizeof *run);
    run->cfg = *cfg;
    run->best_top1 = -1.0;
    run->rank = dist_rank();
    run->ranks = dist_size();
    run->root = dist_is_root();
    snprintf(run->dir, sizeof run->dir, "%s", run_dir);
    threads_setup(rank_threads(cfg->train.threads));
    interrupt_install();

    /* Each phase ends in dist_agree: a rank that fails (a folder rank 0
     * cannot write, an image one machine cannot read) stops them all. */
    VtCode code = dist_agree(check_model(run, resume_checkpoint, err), err);
    if (!code)
        code = dist_agree(prepare_run_dir(run, resume_checkpoint != NULL, err), err);
    if (!code)
        code = dist_agree(open_data(run, err), err);
    if (!code)
        code = dist_agree(resolve_classes(run, err), err);
    if (!code)
        code = dist_agree(build_model(run, err), err);
    if (!code)
        warn_ignored_options(run);
    if (!code)
        say(run, "model: %zu parameters, %d tokens, %lld steps (%lld per epoch), %d rank%s x %d "
                 "threads\n",
            vit_param_count(&run->model), run->model.tokens, (long long)run->last_step,
            (long long)run->steps_per_epoch, run->ranks, run->ranks > 1 ? "s" : "",
            threads_count());
    if (!code && resume_checkpoint)
        code = dist_agree(resume_from(run, resume_checkpoint, err), err);
    if (!code)
        code = dist_agree(open_logs(run, err), err);
    if (!code) /* a stop on a signal reaches every rank: one of them says so */
        code = dist_agree(train_loop(run, err), err);
    if (!code)
        code = dist_agree(finish(run, start, err), err);
    close_run(run);
    free(run);
    interrupt_uninstall();
    return code;
}
