/*
 * pe_bench - training-step time of every positional encoding on the same
 * model, and its overhead over the absolute encoding, measured in one run
 * (interleaved rounds, median per encoding).
 *
 *   build/release/bench/pe_bench [DIM DEPTH HEADS IMG PATCH BATCH]
 *
 * Defaults: the study model (128 dim, 6 blocks, 2 heads, 28 px, patch 4,
 * batch 128) on generated images.
 */
#include "median.h"

#include "vitrain/metrics.h"
#include "vitrain/optim.h"
#include "vitrain/parallel.h"
#include "vitrain/synthetic.h"
#include "vitrain/vit.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ROUNDS = 5, STEPS = 8, TYPES = 8 };

static const char *const TYPE_NAMES[TYPES] = {"absolute", "none", "rope_axial", "rope_mixed",
                                              "spherical", "comrope_ap", "comrope_ld", "liere"};

typedef struct Bench {
    Vit model;
    AdamW opt;
    bool ok;
} Bench;

static double time_steps(Bench *b, const float *images, const int *labels, int batch)
{
    const VitPass pass = {.train = true, .smoothing = 0.1f};
    double t0 = now_seconds();
    for (int s = 0; s < STEPS; s++) {
        arena_zero(&b->model.grads);
        vit_forward_loss(&b->model, images, labels, batch, &pass);
        vit_backward(&b->model, labels, &pass);
        adamw_step(&b->opt, &b->model.params, &b->model.grads, 1e-4f);
    }
    return (now_seconds() - t0) / STEPS;
}

int main(int argc, char **argv)
{
    int dim = 128, depth = 6, heads = 2, img = 28, patch = 4, batch = 128;
    if (argc == 7) {
        dim = atoi(argv[1]), depth = atoi(argv[2]), heads = atoi(argv[3]);
        img = atoi(argv[4]), patch = atoi(argv[5]), batch = atoi(argv[6]);
    }
    int threads = threads_setup(0);
    float *images = malloc((size_t)batch * img * img * sizeof(float));
    int *labels = malloc((size_t)batch * sizeof(int));
    synthetic_quadrant(images, labels, batch, 1, img, 1);

    static Bench benches[TYPES];
    for (int t = 0; t < TYPES; t++) {
        VitConfig c = {.img_size = img, .channels = 1, .patch_size = patch, .dim = dim,
                       .depth = depth, .heads = heads, .mlp_dim = 2 * dim,
                       .num_classes = SYNTHETIC_QUADRANT_CLASSES, .pe = pe_options(TYPE_NAMES[t])};
        VtError err;
        benches[t].ok = vit_create(&benches[t].model, &c, batch, &err) == VT_OK;
        if (!benches[t].ok) {
            printf("%-10s  skipped: %s\n", TYPE_NAMES[t], err.message);
            continue;
        }
        vit_init_params(&benches[t].model, 0);
        AdamWConfig ac = adamw_defaults();
        adamw_create(&benches[t].opt, &benches[t].model.param_list, &ac);
        time_steps(&benches[t], images, labels, batch); /* warm-up */
    }
    double times[TYPES][ROUNDS];
    for (int r = 0; r < ROUNDS; r++)
        for (int t = 0; t < TYPES; t++)
            if (benches[t].ok)
                times[t][r] = time_steps(&benches[t], images, labels, batch);

    printf("dim %d, depth %d, heads %d, %d px, patch %d, batch %d, %d threads; "
           "median of %d rounds of %d steps\n\n",
           dim, depth, heads, img, patch, batch, threads, ROUNDS, STEPS);
    printf("| encoding | ms/step | img/s | overhead vs absolute |\n|---|---|---|---|\n");
    double base = 0.0;
    for (int t = 0; t < TYPES; t++) {
        if (!benches[t].ok)
            continue;
        const double step = median(times[t], ROUNDS);
        if (t == 0)
            base = step;
        printf("| %s | %.1f | %.0f | %+.1f %% |\n", TYPE_NAMES[t], 1e3 * step, batch / step,
               100.0 * (step / base - 1.0));
        adamw_free(&benches[t].opt);
        vit_free(&benches[t].model);
    }
    free(images);
    free(labels);
    return 0;
}
