/*
 * main.c - the vitrain command line: dispatch to a subcommand and exit.
 * The only file that exits; the commands live in src/cli/.
 */
#include "vitrain/cli.h"
#include "vitrain/dist.h"
#include "vitrain/interrupt.h"

#include <string.h>

static const char USAGE[] =
    "vitrain " VT_VERSION " - Vision Transformer training on CPU\n"
    "\n"
    "usage:\n"
    "  vitrain --config FILE [--set section.key=value]... [--threads N]\n"
    "                      train a run (see 'vitrain train --help')\n"
    "  vitrain --resume RUN_DIR_OR_CHECKPOINT [--set section.key=value]... [--threads N]\n"
    "                      continue a run exactly where its checkpoint left it\n"
    "  vitrain eval --checkpoint FILE [--data DIR] [--img-size N]... [--dump-logits FILE]\n"
    "               [--shuffle-patches SEED] [--threads N]\n"
    "                      top-1/top-5/loss on a val split, at one or more resolutions\n"
    "  vitrain export --checkpoint FILE --out model.safetensors\n"
    "                      write the parameters as safetensors with timm names\n"
    "  vitrain synthetic [options]\n"
    "                      train on a generated data set (no files needed)\n"
    "  vitrain arrows --out DIR [--grid N] [--train N] [--val N] [--seed N]\n"
    "                      write the arrow task (LieRE 5.2) as an image folder\n"
    "  vitrain config-reference\n"
    "                      every config key with its type, range and default\n"
    "  vitrain --help | --version\n"
    "\n"
    "Each command takes --help.\n"
    "\n"
    "exit status:\n"
    "  0  success\n"
    "  1  training stopped on a non-finite loss or gradient\n"
    "  2  bad command line or configuration\n"
    "  3  bad input data (images, folders, checkpoint contents)\n"
    "  4  a file or folder could not be read or written\n"
    "  5  not enough memory\n"
    "  130  interrupted by SIGINT or SIGTERM: the current step finished and\n"
    "       checkpoint-last was written; continue with --resume RUN_DIR\n";

static int dispatch(int argc, char **argv)
{
    if (argc < 2) {
        fputs(USAGE, stderr);
        return EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(USAGE, stdout);
        return EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("vitrain %s\n", VT_VERSION);
        return EXIT_OK;
    }
    if (strcmp(cmd, "train") == 0)
        return cli_train(argc - 2, argv + 2);
    if (strcmp(cmd, "eval") == 0)
        return cli_eval(argc - 2, argv + 2);
    if (strcmp(cmd, "export") == 0)
        return cli_export(argc - 2, argv + 2);
    if (strcmp(cmd, "synthetic") == 0)
        return cli_synthetic(argc - 2, argv + 2);
    if (strcmp(cmd, "arrows") == 0)
        return cli_arrows(argc - 2, argv + 2);
    if (strcmp(cmd, "config-reference") == 0) {
        if (argc > 2)
            return cli_usage_error("config-reference takes no options, got '%s'", argv[2]);
        config_print_reference(stdout);
        return EXIT_OK;
    }
    if (cmd[0] == '-')
        return cli_train(argc - 1, argv + 1);
    return cli_usage_error("unknown command '%s'", cmd);
}

int main(int argc, char **argv)
{
    /* Under mpirun every rank runs the same command (dist.h). */
    file_limit_fails_writes();
    VtError err;
    if (dist_init(&argc, &argv, &err))
        return cli_report(err.code, err.message);
    const int status = dispatch(argc, argv);
    dist_finalize();
    return status;
}
