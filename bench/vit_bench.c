/*
 * vit_bench - one configuration of `make bench` (bench/bench.sh), on
 * generated images:
 *
 *   vit_bench sgemm N THREADS
 *       GFLOP/s of a square N^3 cblas_sgemm (median of 7).
 *   vit_bench fma THREADS
 *       the single-precision FMA limit of THREADS cores (median of 5): the
 *       ceiling of every GFLOP/s figure here.
 *   vit_bench train PRESET IMG CHANNELS PATCH PE BLOCK BATCH STEPS THREADS [EXPORT]
 *       training and inference img/s (medians over STEPS steps after two
 *       warm-up steps), achieved GFLOP/s, seconds per step in each phase
 *       (profile.h) and peak RSS; EXPORT writes the initial model as
 *       safetensors with its config, from which bench/torch_peer.py builds
 *       the same model. PE may end in ":recompute" for a run with
 *       train.recompute_attention (the peer has nothing to match it).
 *
 * Output: one line of key=value pairs, for the script to read.
 *
 * FLOPs are counted as the usual 2 per multiply-add of the matrix products
 * (patch embedding, qkv, the two attention products, proj, fc1, fc2, head),
 * three forward passes' worth per training step; element-wise work is not
 * counted. For ViT-Tiny at 28 px, patch 4 this is 1.66 GFLOP per image.
 */
#include "median.h"

#include "vitrain/checkpoint.h"
#include "vitrain/config.h"
#include "vitrain/metrics.h"
#include "vitrain/optim.h"
#include "vitrain/parallel.h"
#include "vitrain/profile.h"
#include "vitrain/simd.h"
#include "vitrain/synthetic.h"
#include "vitrain/trainer.h"
#include "vitrain/vit.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

static double peak_rss_mib(void)
{
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return (double)u.ru_maxrss / 1024.0; /* ru_maxrss is in KiB on Linux */
}

static int sgemm_bench(int n)
{
    enum { REPS = 7 };
    float *a = malloc((size_t)n * n * sizeof(float)), *b = malloc((size_t)n * n * sizeof(float)),
          *c = malloc((size_t)n * n * sizeof(float));
    for (size_t i = 0; i < (size_t)n * n; i++)
        a[i] = b[i] = (float)(i % 17) * 0.01f;
    double t[REPS];
    for (int r = -1; r < REPS; r++) {
        double t0 = now_seconds();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c,
                    n);
        if (r >= 0)
            t[r] = now_seconds() - t0;
    }
    printf("sgemm_n=%d gflops=%.2f\n", n, 2.0 * n * n * (double)n / median(t, REPS) * 1e-9);
    free(a);
    free(b);
    free(c);
    return 0;
}

/* The machine's single-precision multiply-add limit at the current thread
 * count: every thread runs CHAINS independent chains of vector FMAs (more
 * than the latency times the issue rate of any x86 core), in the widest
 * vectors of the build, from registers only. No GEMM can pass this rate;
 * what fraction of it sgemm reaches says how much a better kernel could win. */
static int fma_bench(void)
{
#ifdef VT_SIMD
    enum { REPS = 5, CHAINS = 12, ITERATIONS = 20000000 };
    double t[REPS], sink = 0.0;
    for (int r = -1; r < REPS; r++) {
        const double t0 = now_seconds();
#pragma omp parallel reduction(+ : sink)
        {
            Vec acc[CHAINS];
            const Vec a = v_set1(1.0000001f), b = v_set1(-1e-7f);
            for (int c = 0; c < CHAINS; c++)
                acc[c] = v_set1((float)c);
            for (long i = 0; i < ITERATIONS; i++)
#pragma GCC unroll 12
                for (int c = 0; c < CHAINS; c++)
                    acc[c] = v_fmadd(acc[c], a, b);
            for (int c = 0; c < CHAINS; c++)
                sink += v_sum(acc[c]); /* keeps the chains live */
        }
        if (r >= 0)
            t[r] = now_seconds() - t0;
    }
    const double flops = 2.0 * LANES * CHAINS * (double)ITERATIONS * omp_get_max_threads();
    printf("fma_gflops=%.2f lanes=%d check=%g\n", flops / median(t, REPS) * 1e-9, LANES, sink);
    return 0;
#else
    fprintf(stderr, "vit_bench: fma needs a build with AVX2 or AVX-512 (VT_SIMD)\n");
    return 1;
#endif
}

/* FLOPs of attention's own products, q k^T and P v, in one forward pass of
 * one image (the backward's four products count as two more passes). */
static double attention_flops(const Vit *m)
{
    const double T = m->tokens, D = m->cfg.dim;
    return m->cfg.depth * 4.0 * T * T * D;
}

/* Matrix-product FLOPs of one forward pass of one image, those the model
 * runs: classifying from the CLS token, the last block's proj and MLP see
 * the CLS row alone (vit.h, cls_only_last), which leaves out about 6 % of
 * the products timm's ViT runs. */
static double forward_flops(const Vit *m)
{
    const VitConfig *c = &m->cfg;
    const double T = m->tokens, D = c->dim, F = c->mlp_dim, K = c->num_classes;
    const double patch = 2.0 * m->num_patches * c->channels * c->patch_size * c->patch_size * D;
    const double block = 2.0 * T * (3 * D * D + D * D + 2 * D * F);
    const double skipped = m->cls_only_last ? 2.0 * (T - 1) * (D * D + 2 * D * F) : 0.0;
    return patch + c->depth * block - skipped + attention_flops(m) + 2.0 * D * K;
}

typedef struct Setup {
    const char *preset, *pe, *export_path;
    int img, channels, patch, block, batch, steps;
} Setup;

/* The run config of a setup, so that the exported model carries the same
 * config text a training run would. */
static VtCode setup_config(RunConfig *cfg, const Setup *s, VtError *err)
{
    config_defaults(cfg);
    char sets[9][96];
    const char *suffix = strchr(s->pe, ':');
    const int pe_len = suffix ? (int)(suffix - s->pe) : (int)strlen(s->pe);
    snprintf(sets[0], sizeof sets[0], "model.preset=%s", s->preset);
    snprintf(sets[1], sizeof sets[1], "data.img_size=%d", s->img);
    snprintf(sets[2], sizeof sets[2], "data.channels=%d", s->channels);
    snprintf(sets[3], sizeof sets[3], "model.patch_size=%d", s->patch);
    snprintf(sets[4], sizeof sets[4], "pe.type=%.*s", pe_len, s->pe);
    snprintf(sets[5], sizeof sets[5], "pe.block_size=%d", s->block);
    snprintf(sets[6], sizeof sets[6], "train.batch_size=%d", s->batch);
    snprintf(sets[7], sizeof sets[7], "model.num_classes=%d", SYNTHETIC_QUADRANT_CLASSES);
    snprintf(sets[8], sizeof sets[8], "train.recompute_attention=%s",
             suffix && strcmp(suffix, ":recompute") == 0 ? "true" : "false");
    if (suffix && strcmp(suffix, ":recompute") != 0)
        return vt_fail(err, VT_ERR_ARGUMENT, "unknown encoding suffix '%s' (only :recompute)",
                       suffix);
    VtCode code = VT_OK;
    for (int i = 0; i < 9 && !code; i++)
        code = config_set(cfg, sets[i], err);
    return code ? code : config_validate(cfg, err);
}

static double train_step(Vit *m, AdamW *opt, const float *images, const int *labels, int B)
{
    const VitPass pass = {.train = true, .smoothing = 0.1f};
    const double t0 = now_seconds();
    arena_zero(&m->grads);
    vit_forward_loss(m, images, labels, B, &pass);
    vit_backward(m, labels, &pass);
    adamw_step(opt, &m->params, &m->grads, 1e-4f);
    return now_seconds() - t0;
}

static int train_bench(const Setup *s)
{
    static RunConfig cfg;
    VitConfig vc;
    Vit m;
    VtError err;
    VtCode code = setup_config(&cfg, s, &err);
    if (!code)
        code = vit_config_from_run(&vc, &cfg, s->img, &err);
    if (!code)
        code = vit_create(&m, &vc, s->batch, &err);
    if (code) {
        fprintf(stderr, "vit_bench: %s\n", err.message);
        return 1;
    }
    vit_init_params(&m, 0);
    if (s->export_path) {
        char *text = config_to_string(&cfg);
        code = safetensors_save(s->export_path, &m.param_list, m.params.data, text, &err);
        free(text);
        if (code) {
            fprintf(stderr, "vit_bench: %s\n", err.message);
            return 1;
        }
    }
    const int B = s->batch;
    float *images = malloc((size_t)B * s->channels * s->img * s->img * sizeof(float));
    int *labels = malloc((size_t)B * sizeof(int));
    synthetic_quadrant(images, labels, B, s->channels, s->img, 1);
    AdamWConfig ac = adamw_defaults();
    AdamW opt;
    adamw_create(&opt, &m.param_list, &ac);

    double *train = malloc((size_t)s->steps * sizeof(double));
    double *infer = malloc((size_t)s->steps * sizeof(double));
    for (int w = 0; w < 2; w++)
        train_step(&m, &opt, images, labels, B);
    prof_enable(true);
    prof_reset();
    for (int i = 0; i < s->steps; i++) {
        prof_push(PROF_ELEMENTWISE);
        train[i] = train_step(&m, &opt, images, labels, B);
        prof_pop();
    }
    prof_enable(false);
    double phases[PROF_PHASES];
    prof_seconds(phases);
    const VitPass eval = {.train = false};
    vit_forward(&m, images, B, &eval);
    for (int i = 0; i < s->steps; i++) {
        const double t0 = now_seconds();
        vit_forward(&m, images, B, &eval);
        infer[i] = now_seconds() - t0;
    }
    const double step = median(train, s->steps), gflop = 3.0 * forward_flops(&m) * 1e-9;
    printf("train_img_s=%.2f infer_img_s=%.2f gflop_per_img=%.4f gflops=%.2f rss_mib=%.1f",
           B / step, B / median(infer, s->steps), gflop, gflop * B / step, peak_rss_mib());
    for (int p = 0; p < PROF_PHASES; p++)
        printf(" phase_%d=%.5f", p, phases[p] / s->steps);
    if (phases[PROF_ATTENTION] > 0)
        printf(" attn_gflops=%.2f",
               3.0 * attention_flops(&m) * 1e-9 * B / (phases[PROF_ATTENTION] / s->steps));
    printf("\n");
    free(train);
    free(infer);
    free(images);
    free(labels);
    adamw_free(&opt);
    vit_free(&m);
    return 0;
}

static int usage(void)
{
    fprintf(stderr, "usage: vit_bench sgemm N THREADS\n"
                    "       vit_bench fma THREADS\n"
                    "       vit_bench train PRESET IMG CHANNELS PATCH PE BLOCK BATCH STEPS "
                    "THREADS [EXPORT]\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "sgemm") == 0) {
        threads_setup(atoi(argv[3]));
        return sgemm_bench(atoi(argv[2]));
    }
    if (argc == 3 && strcmp(argv[1], "fma") == 0) {
        threads_setup(atoi(argv[2]));
        return fma_bench();
    }
    if ((argc == 11 || argc == 12) && strcmp(argv[1], "train") == 0) {
        Setup s = {.preset = argv[2], .img = atoi(argv[3]), .channels = atoi(argv[4]),
                   .patch = atoi(argv[5]), .pe = argv[6], .block = atoi(argv[7]),
                   .batch = atoi(argv[8]), .steps = atoi(argv[9]),
                   .export_path = argc == 12 ? argv[11] : NULL};
        if (s.steps < 1)
            return usage();
        threads_setup(atoi(argv[10]));
        return train_bench(&s);
    }
    return usage();
}
