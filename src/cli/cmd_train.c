/*
 * cmd_train.c - `vitrain --config FILE` and `vitrain --resume PATH`.
 */
#include "vitrain/cli.h"
#include "vitrain/dist.h"
#include "vitrain/trainer.h"

#include <libgen.h>
#include <string.h>

static const char TRAIN_HELP[] =
    "usage: vitrain --config FILE [--set section.key=value]... [--threads N]\n"
    "       vitrain --resume RUN_DIR_OR_CHECKPOINT [--set section.key=value]... [--threads N]\n"
    "\n"
    "Trains the ViT the config describes on data.root/{train,val}/<class>/<image>\n"
    "and writes log.dir/log.name/ (default runs/<name>/): config.ini, steps.csv,\n"
    "summary.csv, checkpoint-last, checkpoint-best, model.safetensors, report.md.\n"
    "A folder that already holds a run is not overwritten.\n"
    "\n"
    "  --config FILE        the INI config ('vitrain config-reference' lists the keys)\n"
    "  --set S.K=V          override one key after the file (repeatable)\n"
    "  --resume PATH        continue the run in PATH (its checkpoint-last) or from a\n"
    "                       checkpoint file, with the config saved in it; --set may\n"
    "                       change keys such as train.epochs (not train.batch_size\n"
    "                       or data.train_fraction: the run's epochs follow them)\n"
    "  --threads N          same as --set train.threads=N\n"
    "\n"
    "A run is reproducible for a given seed and thread count: resuming continues\n"
    "the uninterrupted run bit for bit. See 'vitrain --help' for exit statuses.\n";

enum { MAX_SETS = 256 };

typedef struct TrainArgs {
    const char *config;
    const char *resume;
    const char *sets[MAX_SETS];
    int set_count;
    char threads_set[64];  /* --threads N as "train.threads=N" */
} TrainArgs;

static const char *const TRAIN_OPTIONS[] = {"--config", "--resume", "--set", "--threads", NULL};

static int parse_args(TrainArgs *a, int argc, char **argv)
{
    for (int i = 0; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            fputs(TRAIN_HELP, stdout);
            return -1;
        }
        int rc = cli_option_check(opt, TRAIN_OPTIONS, i + 1 < argc);
        if (rc)
            return rc;
        const char *value = argv[++i];
        if (strcmp(opt, "--config") == 0 || strcmp(opt, "--resume") == 0) {
            const char **slot = opt[2] == 'c' ? &a->config : &a->resume;
            if (*slot)
                return cli_usage_error("%s is given twice", opt);
            *slot = value;
        } else {
            if (a->set_count == MAX_SETS)
                return cli_usage_error("more than %d --set options", MAX_SETS);
            if (opt[2] == 't') {
                snprintf(a->threads_set, sizeof a->threads_set, "train.threads=%s", value);
                value = a->threads_set;
            }
            a->sets[a->set_count++] = value;
        }
    }
    /* A resumed run stays where its checkpoint is (cli_train). */
    static const char *const folder_keys[] = {"log.name", "log.dir"};
    for (int i = 0; a->resume && i < a->set_count; i++)
        for (int k = 0; k < 2; k++) {
            const size_t n = strlen(folder_keys[k]);
            if (strncmp(a->sets[i], folder_keys[k], n) == 0 && strchr("= \t", a->sets[i][n]))
                return cli_usage_error("--set %s does not apply with --resume: a resumed run "
                                       "stays in the folder of its checkpoint (move the folder "
                                       "to rename the run)",
                                       folder_keys[k]);
        }
    if (!a->config == !a->resume)
        return cli_usage_error("%s", a->config ? "--config and --resume exclude each other: a "
                                                 "resumed run uses its saved config (change keys "
                                                 "with --set)"
                                               : "give --config FILE or --resume PATH");
    return 0;
}

/* A resumed run keeps the keys that make its epochs: its steps so far
 * count batches of that size over a split of that size, and the loader
 * finds its place in the data from them. */
static VtCode check_epochs_kept(const RunConfig *cfg, int saved_batch, float saved_fraction,
                                VtError *err)
{
    if (cfg->train.batch_size != saved_batch)
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "train.batch_size cannot change on --resume (%d, the run's, against %d): "
                       "its steps and epochs are counted in batches of %d; start a new run with "
                       "--config to train with another",
                       saved_batch, cfg->train.batch_size, saved_batch);
    if (cfg->data.train_fraction != saved_fraction)
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "data.train_fraction cannot change on --resume (%g, the run's, against "
                       "%g): its epochs are passes over that share of the train split; start a "
                       "new run with --config to train on another",
                       (double)saved_fraction, (double)cfg->data.train_fraction);
    return VT_OK;
}

int cli_train(int argc, char **argv)
{
    TrainArgs a = {0};
    int rc = parse_args(&a, argc, argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;

    static RunConfig cfg; /* large: kept off the stack */
    char checkpoint[VT_PATH_MAX], run_dir[VT_PATH_MAX + VT_NAME_MAX + 2];
    VtError err;
    VtCode code;
    if (a.resume) {
        cli_checkpoint_path(checkpoint, sizeof checkpoint, a.resume);
        code = cli_config_from_checkpoint(&cfg, checkpoint, &err);
        /* The run folder is where the checkpoint is, wherever it was moved. */
        char copy[VT_PATH_MAX];
        snprintf(copy, sizeof copy, "%s", checkpoint);
        snprintf(run_dir, sizeof run_dir, "%s", dirname(copy));
    } else {
        config_defaults(&cfg);
        code = config_load(&cfg, a.config, &err);
    }
    const int saved_batch = cfg.train.batch_size;
    const float saved_fraction = cfg.data.train_fraction;
    for (int i = 0; i < a.set_count && !code; i++)
        code = config_set(&cfg, a.sets[i], &err);
    if (!code && a.resume)
        code = check_epochs_kept(&cfg, saved_batch, saved_fraction, &err);
    if (!code)
        code = config_validate(&cfg, &err);
    /* Under mpirun: one message for a config every rank rejects, and no rank
     * left training alone when only some can read it. */
    code = dist_agree(code, &err);
    if (code)
        return cli_report(code, err.message);
    if (!a.resume &&
        snprintf(run_dir, sizeof run_dir, "%s/%s", cfg.log.dir, cfg.log.name) >= VT_PATH_MAX)
        return cli_usage_error("the run folder %s/%s is too long a path", cfg.log.dir,
                               cfg.log.name);

    code = train_run(&cfg, run_dir, a.resume ? checkpoint : NULL, &err);
    return code ? cli_report(code, err.message) : EXIT_OK;
}
