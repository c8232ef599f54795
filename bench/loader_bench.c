/*
 * loader_bench - does the data loader keep up with training? Measures, on
 * one config, the loader alone (batches per second, consumed as fast as it
 * delivers them) and the training step alone (forward, backward, AdamW on
 * batches already in memory), and prints both and their ratio.
 *
 *   build/release/bench/loader_bench CONFIG [BATCHES] [--set k=v]...
 *
 * The loader runs in its own thread while training runs on every core, so
 * the ratio shows how much headroom the background preparation has.
 */
#include "vitrain/config.h"
#include "vitrain/data.h"
#include "vitrain/metrics.h"
#include "vitrain/optim.h"
#include "vitrain/parallel.h"
#include "vitrain/trainer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void die(const VtError *err)
{
    fprintf(stderr, "loader_bench: %s\n", err->message);
    exit(1);
}

static double loader_rate(const Dataset *ds, const RunConfig *cfg, int batches, bool rrc)
{
    RunConfig c = *cfg;
    c.data.random_resized_crop = rrc;
    LoaderOptions lo = loader_options_from_run(&c, c.data.img_size, true, 0);
    Loader *ld;
    VtError err;
    if (loader_create(&ld, ds, &lo, &err))
        die(&err);
    Batch b;
    loader_next(ld, &b); /* the first batch includes thread start-up */
    double t0 = now_seconds();
    for (int i = 0; i < batches; i++)
        loader_next(ld, &b);
    double rate = (double)batches * b.size / (now_seconds() - t0);
    loader_destroy(ld);
    return rate;
}

static double training_rate(const Dataset *ds, const RunConfig *cfg, int steps)
{
    VitConfig vc;
    Vit m;
    VtError err;
    if (vit_config_from_run(&vc, cfg, cfg->data.img_size, &err) ||
        vit_create(&m, &vc, cfg->train.batch_size, &err))
        die(&err);
    vit_init_params(&m, 0);
    AdamWConfig ac = adamw_defaults();
    AdamW opt;
    adamw_create(&opt, &m.param_list, &ac);
    LoaderOptions lo = loader_options_from_run(cfg, cfg->data.img_size, true, 0);
    Loader *ld;
    if (loader_create(&ld, ds, &lo, &err))
        die(&err);
    Batch b;
    loader_next(ld, &b);
    const VitPass pass = {.train = true, .smoothing = 0.1f};
    double elapsed = 0.0;
    for (int i = 0; i <= steps; i++) {
        double t0 = now_seconds();
        arena_zero(&m.grads);
        vit_forward_loss(&m, b.images, b.labels, b.size, &pass);
        vit_backward(&m, b.labels, &pass);
        adamw_step(&opt, &m.params, &m.grads, 1e-4f);
        if (i > 0) /* step 0 warms caches and the BLAS buffers */
            elapsed += now_seconds() - t0;
    }
    loader_destroy(ld);
    adamw_free(&opt);
    vit_free(&m);
    return (double)steps * b.size / elapsed;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: loader_bench CONFIG [BATCHES] [--set k=v]...\n");
        return 2;
    }
    static RunConfig cfg;
    VtError err;
    config_defaults(&cfg);
    if (config_load(&cfg, argv[1], &err))
        die(&err);
    int batches = 200, arg = 2;
    if (argc > 2 && argv[2][0] != '-')
        batches = atoi(argv[arg++]);
    for (; arg + 1 < argc; arg += 2)
        if (strcmp(argv[arg], "--set") != 0 || config_set(&cfg, argv[arg + 1], &err))
            die(&err);
    if (config_validate(&cfg, &err))
        die(&err);
    int threads = threads_setup(cfg.train.threads);

    Dataset ds;
    DatasetOptions o = {.channels = cfg.data.channels,
                        .cache_side = loader_eval_side(cfg.data.img_size, cfg.data.crop_pct),
                        .on_bad_image = cfg.data.on_bad_image, .cache = CACHE_MEMORY};
    double t0 = now_seconds();
    if (dataset_open(&ds, cfg.data.root, "train", &o, NULL, &err))
        die(&err);
    double decode = ds.count / (now_seconds() - t0);
    cfg.model.num_classes = ds.num_classes;

    double plain = loader_rate(&ds, &cfg, batches, false);
    double rrc = loader_rate(&ds, &cfg, batches, true);
    double train = training_rate(&ds, &cfg, 20);
    printf("config %s, %d px, batch %d, %d threads\n", argv[1], cfg.data.img_size,
           cfg.train.batch_size, threads);
    printf("decode + cache:                 %10.0f img/s\n", decode);
    printf("loader (config's augmentation): %10.0f img/s\n", plain);
    printf("loader (random-resized-crop):   %10.0f img/s\n", rrc);
    printf("training step:                  %10.0f img/s\n", train);
    printf("loader / training:              %10.1fx (%.1fx with rrc)\n", plain / train,
           rrc / train);
    dataset_close(&ds);
    return 0;
}
