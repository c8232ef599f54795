/*
 * cli_common.c - helpers the subcommands share: error reporting with the
 * documented exit statuses, option value parsing.
 */
#include "vitrain/cli.h"

#include "vitrain/checkpoint.h"
#include "vitrain/dist.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int cli_report(VtCode code, const char *message)
{
    /* An empty message: another rank reports this failure (dist_agree). */
    if (message[0] && dist_size() > 1)
        fprintf(stderr, "vitrain: rank %d: %s\n", dist_rank(), message);
    else if (message[0])
        fprintf(stderr, "vitrain: %s\n", message);
    switch (code) {
    case VT_OK: return EXIT_OK;
    case VT_ERR_NUMERIC: return EXIT_NUMERIC;
    case VT_ERR_ARGUMENT: return EXIT_USAGE;
    case VT_ERR_DATA: return EXIT_DATA;
    case VT_ERR_IO: return EXIT_IO;
    case VT_ERR_NOMEM: return EXIT_NOMEM;
    case VT_ERR_INTERRUPTED: return EXIT_INTERRUPTED;
    }
    return EXIT_USAGE;
}

int cli_usage_error(const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    fprintf(stderr, "vitrain: ");
    vfprintf(stderr, fmt, args);
    fprintf(stderr, "\nTry 'vitrain --help'.\n");
    va_end(args);
    return EXIT_USAGE;
}

bool cli_parse_int(const char *text, long min, long max, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(text, &end, 10);
    if (errno || end == text || *end || v < min || v > max)
        return false;
    *out = v;
    return true;
}

static bool listed(const char *name, size_t len, const char *const *known)
{
    for (; *known; known++)
        if (strlen(*known) == len && strncmp(name, *known, len) == 0)
            return true;
    return false;
}

int cli_option_check(const char *opt, const char *const *known, bool has_value)
{
    if (listed(opt, strlen(opt), known))
        return has_value ? 0 : cli_usage_error("option %s needs a value", opt);
    const char *eq = strchr(opt, '=');
    if (eq && listed(opt, (size_t)(eq - opt), known))
        return cli_usage_error("unknown option '%s' (give the value after a space: %.*s %s)", opt,
                               (int)(eq - opt), opt, eq + 1);
    return cli_usage_error("unknown option '%s'", opt);
}

void cli_checkpoint_path(char *out, size_t size, const char *run_dir_or_file)
{
    struct stat st;
    if (stat(run_dir_or_file, &st) == 0 && S_ISDIR(st.st_mode))
        snprintf(out, size, "%s/checkpoint-last", run_dir_or_file);
    else
        snprintf(out, size, "%s", run_dir_or_file);
}

bool cli_is_safetensors(const char *path)
{
    static const char ext[] = ".safetensors";
    size_t n = strlen(path), e = sizeof ext - 1;
    return n > e && strcmp(path + n - e, ext) == 0;
}

VtCode cli_load_params(const char *path, const TensorList *list, float *params, VtError *err)
{
    if (cli_is_safetensors(path))
        return safetensors_load(path, list, params, NULL, err);
    CheckpointState st;
    VtCode code = checkpoint_load(path, &st, list, params, NULL, NULL, err);
    if (!code)
        free((char *)st.config);
    return code;
}

VtCode cli_config_text(const char *checkpoint, char **text, VtError *err)
{
    return cli_is_safetensors(checkpoint) ? safetensors_read_config(checkpoint, text, err)
                                          : checkpoint_read_config(checkpoint, text, err);
}

VtCode cli_config_from_checkpoint(RunConfig *cfg, const char *checkpoint, VtError *err)
{
    char *text = NULL;
    VtCode code = cli_config_text(checkpoint, &text, err);
    if (code)
        return code;
    config_defaults(cfg);
    code = config_parse(cfg, text, checkpoint, err);
    free(text);
    return code;
}
