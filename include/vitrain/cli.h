/*
 * cli.h - the vitrain subcommands. Each takes the arguments after its name,
 * prints its own messages and returns the process exit status; main.c only
 * dispatches and exits.
 */
#ifndef VITRAIN_CLI_H
#define VITRAIN_CLI_H

#include "vitrain/common.h"
#include "vitrain/config.h"
#include "vitrain/tensor.h"

#include <stdio.h>

/* Exit statuses, documented in --help. */
enum {
    EXIT_OK = 0,
    EXIT_NUMERIC = 1,  /* training stopped on a non-finite loss or gradient */
    EXIT_USAGE = 2,    /* bad command line or configuration */
    EXIT_DATA = 3,     /* bad input data: images, folders, checkpoint contents */
    EXIT_IO = 4,       /* a file or folder could not be read or written */
    EXIT_NOMEM = 5,    /* not enough memory */
    EXIT_INTERRUPTED = 130 /* SIGINT/SIGTERM: checkpoint written, resume with --resume */
};

int cli_train(int argc, char **argv);     /* --config FILE / --resume PATH */
int cli_eval(int argc, char **argv);
int cli_export(int argc, char **argv);
int cli_synthetic(int argc, char **argv);
int cli_arrows(int argc, char **argv);

/* Prints "vitrain: MESSAGE" ("vitrain: rank R: MESSAGE" with several MPI
 * ranks; nothing for an empty message, which another rank reports) and
 * returns the exit status for code. */
int cli_report(VtCode code, const char *message);
/* Prints "vitrain: ..." plus a pointer to --help; returns EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 1, 2)))
#endif
    ;
/* For "--name value" options: 0 if opt is one of `known` (NULL-terminated)
 * and has a value after it, else the usage error: an unknown option (with
 * a hint for "--name=value"), or a known one at the end of the line. */
int cli_option_check(const char *opt, const char *const *known, bool has_value);
/* Resolves a run folder to its checkpoint-last (a file is kept as is). */
void cli_checkpoint_path(char *out, size_t size, const char *run_dir_or_file);
/* Model files are checkpoints, or safetensors exports (named *.safetensors)
 * whose __metadata__ holds the config. */
bool cli_is_safetensors(const char *path);
/* The config text saved in a checkpoint or safetensors export (malloc'ed). */
VtCode cli_config_text(const char *checkpoint, char **text, VtError *err);
/* Rebuilds the RunConfig saved in a checkpoint or safetensors export. */
VtCode cli_config_from_checkpoint(RunConfig *cfg, const char *checkpoint, VtError *err);
/* Loads the parameters of either kind of model file. */
VtCode cli_load_params(const char *path, const TensorList *list, float *params, VtError *err);
/* Parses an integer option value in [min, max]. */
bool cli_parse_int(const char *text, long min, long max, long *out);

#endif
