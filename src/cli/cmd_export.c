/*
 * cmd_export.c - `vitrain export`: a checkpoint's parameters as safetensors.
 */
#include "vitrain/checkpoint.h"
#include "vitrain/cli.h"
#include "vitrain/trainer.h"

#include <stdlib.h>
#include <string.h>

static const char EXPORT_HELP[] =
    "usage: vitrain export --checkpoint FILE --out model.safetensors\n"
    "\n"
    "Writes the parameters of a checkpoint (a file, a run folder for its\n"
    "checkpoint-last, or a model.safetensors) as F32 safetensors with timm's tensor\n"
    "names, and the resolved config in __metadata__ (\"format\": \"vitrain\",\n"
    "\"config\": INI text).\n";

static VtCode export_checkpoint(const char *checkpoint, const char *out, VtError *err)
{
    static RunConfig cfg;
    char *text = NULL;
    VtCode code = cli_config_text(checkpoint, &text, err);
    if (!code) {
        config_defaults(&cfg);
        code = config_parse(&cfg, text, checkpoint, err);
    }
    VitConfig vc;
    if (!code)
        code = vit_config_from_run(&vc, &cfg, cfg.data.img_size, err);
    Vit m = {0};
    if (!code)
        code = vit_create_inference(&m, &vc, 1, err);
    if (!code)
        code = cli_load_params(checkpoint, &m.param_list, m.params.data, err);
    if (!code)
        code = safetensors_save(out, &m.param_list, m.params.data, text, err);
    free(text);
    if (m.params.data)
        vit_free(&m);
    return code;
}

static const char *const EXPORT_OPTIONS[] = {"--checkpoint", "--out", NULL};

int cli_export(int argc, char **argv)
{
    const char *checkpoint = NULL, *out = NULL;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(EXPORT_HELP, stdout);
            return EXIT_OK;
        }
        int rc = cli_option_check(argv[i], EXPORT_OPTIONS, i + 1 < argc);
        if (rc)
            return rc;
        if (strcmp(argv[i], "--checkpoint") == 0)
            checkpoint = argv[++i];
        else
            out = argv[++i];
    }
    if (!checkpoint || !out)
        return cli_usage_error("%s", "export needs --checkpoint FILE and --out FILE");
    char path[VT_PATH_MAX];
    cli_checkpoint_path(path, sizeof path, checkpoint);
    VtError err;
    VtCode code = export_checkpoint(path, out, &err);
    if (code)
        return cli_report(code, err.message);
    printf("wrote %s\n", out);
    return EXIT_OK;
}
