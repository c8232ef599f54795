/*
 * cmd_arrows.c - `vitrain arrows`: write the arrow task of LieRE §5.2
 * (src/data/arrows.c) as an image folder for `vitrain train` and
 * `vitrain eval --data`.
 */
#include "vitrain/arrows.h"
#include "vitrain/cli.h"

#include <limits.h>
#include <string.h>

static const char ARROWS_HELP[] =
    "usage: vitrain arrows --out DIR [--grid N] [--train N] [--val N] [--seed N]\n"
    "\n"
    "Writes the synthetic arrow task (LieRE section 5.2) as DIR/{train,val}/<class>/NNNNNN.png:\n"
    "gray images of N x N cells of 12 px holding 8 arrows and the letters A-E and Y;\n"
    "the Y's stem points at one arrow, whose direction (down, left, right, up) is\n"
    "the label. A split that already exists is an error; a count of 0 skips it.\n"
    "\n"
    "  --out DIR    the data set folder (created; its parent must exist)\n"
    "  --grid N     cells per side, 4..256 [9]: 9 gives 108 px, 14 168 px, 23 276 px\n"
    "  --train N    training images [20000]\n"
    "  --val N      validation images [2000]\n"
    "  --seed N     the same seed gives the same images [0]\n"
    "\n"
    "The paper trains at 9 x 9 and tests at 14 x 14 and 23 x 23, e.g.\n"
    "  vitrain arrows --out data/arrows --grid 9\n"
    "  vitrain arrows --out data/arrows-168 --grid 14 --train 0\n"
    "  vitrain eval --checkpoint RUN --data data/arrows-168 --img-size 168\n";

typedef struct ArrowsArgs {
    const char *out;
    long grid, train, val, seed;
} ArrowsArgs;

static int parse_args(ArrowsArgs *a, int argc, char **argv)
{
    static const struct {
        const char *name;
        size_t offset;
        long min, max;
    } ints[] = {
        {"--grid", offsetof(ArrowsArgs, grid), ARROWS_MIN_GRID, ARROWS_MAX_GRID},
        {"--train", offsetof(ArrowsArgs, train), 0, 100000000},
        {"--val", offsetof(ArrowsArgs, val), 0, 100000000},
        {"--seed", offsetof(ArrowsArgs, seed), 0, LONG_MAX},
    };
    for (int i = 0; i < argc; i++) {
        const char *opt = argv[i];
        if (strcmp(opt, "--help") == 0 || strcmp(opt, "-h") == 0) {
            fputs(ARROWS_HELP, stdout);
            return -1;
        }
        static const char *const options[] = {"--grid", "--train", "--val", "--seed", "--out",
                                              NULL};
        int rc = cli_option_check(opt, options, i + 1 < argc);
        if (rc)
            return rc;
        const char *value = argv[++i];
        for (size_t k = 0; k < sizeof ints / sizeof ints[0]; k++) {
            if (strcmp(opt, ints[k].name) == 0) {
                long *field = (long *)((char *)a + ints[k].offset);
                if (!cli_parse_int(value, ints[k].min, ints[k].max, field))
                    return cli_usage_error("bad %s '%s' (expected %ld..%ld)", opt, value,
                                           ints[k].min, ints[k].max);
            }
        }
        if (strcmp(opt, "--out") == 0)
            a->out = value;
    }
    if (!a->out)
        return cli_usage_error("%s", "arrows needs --out DIR");
    return 0;
}

int cli_arrows(int argc, char **argv)
{
    ArrowsArgs a = {.grid = 9, .train = 20000, .val = 2000, .seed = 0};
    int rc = parse_args(&a, argc, argv);
    if (rc)
        return rc < 0 ? EXIT_OK : rc;
    const struct {
        ArrowSplit split;
        const char *name;
        long count;
    } splits[] = {{ARROWS_TRAIN, "train", a.train}, {ARROWS_VAL, "val", a.val}};
    for (int s = 0; s < 2; s++) {
        if (splits[s].count == 0)
            continue;
        VtError err;
        VtCode code = arrows_write_split(a.out, splits[s].split, (int)a.grid,
                                         (int)splits[s].count, (uint64_t)a.seed, &err);
        if (code)
            return cli_report(code, err.message);
        printf("arrows: %s/%s: %ld images of %ld px (%ld x %ld cells), seed %ld\n", a.out,
               splits[s].name, splits[s].count, a.grid * ARROWS_CELL, a.grid, a.grid, a.seed);
    }
    return EXIT_OK;
}
