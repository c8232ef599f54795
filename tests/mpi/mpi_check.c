/*
 * mpi_check.c - the helper of tests/mpi/run.sh and bench/mpi_bench.sh:
 *
 *   mpi_check folder ROOT PER_CLASS [bad]
 *       writes a two-class image folder ROOT/{train,val}/{dark,light}/NNN.pgm
 *       of 12 x 12 gray images (with `bad`, one more file in train/dark
 *       that is not an image);
 *   mpi_check compare CHECKPOINT_A CHECKPOINT_B TOLERANCE
 *       prints the largest difference between the parameters of two
 *       checkpoints of the same model, relative to the largest magnitude
 *       of a parameter, and fails when it exceeds TOLERANCE.
 */
#include "vitrain/checkpoint.h"
#include "vitrain/config.h"
#include "vitrain/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

enum { SIDE = 12 };

static int fail(const char *what, const char *detail)
{
    fprintf(stderr, "mpi_check: %s: %s\n", what, detail);
    return 1;
}

static int make_dir(const char *path)
{
    return mkdir(path, 0755) == 0 ? 0 : fail("cannot create", path);
}

/* A binary PGM that stb_image reads; the two classes differ in brightness. */
static int write_image(const char *path, int cls, int index, int split)
{
    unsigned char px[SIDE * SIDE];
    for (int p = 0; p < SIDE * SIDE; p++)
        px[p] = (unsigned char)((cls ? 140 : 40) + (p * 7 + index * 13 + split * 5) % 80);
    FILE *f = fopen(path, "wb");
    if (!f)
        return fail("cannot write", path);
    int ok = fprintf(f, "P5\n%d %d\n255\n", SIDE, SIDE) > 0 &&
             fwrite(px, 1, sizeof px, f) == sizeof px;
    ok = fclose(f) == 0 && ok;
    return ok ? 0 : fail("cannot write", path);
}

static int make_folder(const char *root, int per_class, int bad)
{
    const char *splits[] = {"train", "val"}, *classes[] = {"dark", "light"};
    char path[4200];
    if (make_dir(root))
        return 1;
    for (int s = 0; s < 2; s++) {
        snprintf(path, sizeof path, "%s/%s", root, splits[s]);
        if (make_dir(path))
            return 1;
        for (int c = 0; c < 2; c++) {
            snprintf(path, sizeof path, "%s/%s/%s", root, splits[s], classes[c]);
            if (make_dir(path))
                return 1;
            for (int i = 0; i < per_class; i++) {
                snprintf(path, sizeof path, "%s/%s/%s/%03d.pgm", root, splits[s], classes[c], i);
                if (write_image(path, c, i, s))
                    return 1;
            }
        }
    }
    if (!bad)
        return 0;
    snprintf(path, sizeof path, "%s/train/dark/broken.pgm", root);
    FILE *f = fopen(path, "w");
    if (!f || fputs("this is not an image\n", f) < 0 || fclose(f) != 0)
        return fail("cannot write", path);
    return 0;
}

/* The parameters of a checkpoint, in the model's tensor order. */
static float *load_params(const char *path, size_t *count)
{
    VtError err;
    char *text;
    RunConfig cfg;
    VitConfig vc;
    static Vit m;
    if (checkpoint_read_config(path, &text, &err)) {
        fail(path, err.message);
        return NULL;
    }
    config_defaults(&cfg);
    VtCode code = config_parse(&cfg, text, path, &err);
    free(text);
    if (!code)
        code = vit_config_from_run(&vc, &cfg, cfg.data.img_size, &err);
    if (!code)
        code = vit_create(&m, &vc, 1, &err);
    CheckpointState st = {0};
    if (!code)
        code = checkpoint_load(path, &st, &m.param_list, m.params.data, NULL, NULL, &err);
    if (code) {
        fail(path, err.message);
        return NULL;
    }
    free((char *)st.config);
    *count = m.param_list.total;
    float *params = malloc(*count * sizeof *params);
    memcpy(params, m.params.data, *count * sizeof *params);
    vit_free(&m);
    return params;
}

static int compare(const char *a_path, const char *b_path, double tolerance)
{
    size_t na, nb;
    float *a = load_params(a_path, &na), *b = load_params(b_path, &nb);
    if (!a || !b || na != nb) {
        free(a);
        free(b);
        return a && b ? fail("compare", "the checkpoints hold different models") : 1;
    }
    double largest = 0.0, diff = 0.0;
    size_t identical = 0;
    for (size_t i = 0; i < na; i++) {
        largest = fmax(largest, fabs((double)a[i]));
        diff = fmax(diff, fabs((double)a[i] - (double)b[i]));
        identical += a[i] == b[i];
    }
    free(a);
    free(b);
    const double relative = largest > 0.0 ? diff / largest : diff;
    printf("parameters: max |a - b| %.3g, relative to max |a| %.3g (tolerance %.3g); %zu of %zu "
           "identical\n",
           diff, relative, tolerance, identical, na);
    return relative <= tolerance ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "folder") == 0)
        return make_folder(argv[2], atoi(argv[3]), argc > 4 && strcmp(argv[4], "bad") == 0);
    if (argc == 5 && strcmp(argv[1], "compare") == 0)
        return compare(argv[2], argv[3], atof(argv[4]));
    fprintf(stderr, "usage: mpi_check folder ROOT PER_CLASS [bad]\n"
                    "       mpi_check compare CHECKPOINT_A CHECKPOINT_B TOLERANCE\n");
    return 2;
}
