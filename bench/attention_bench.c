/*
 * attention_bench - the attention core alone (forward, the backward's
 * rebuild of P v, backward) at the shapes of the bench models, against
 * cblas_sgemm 1024^3 measured in the same run.
 *
 *   build/release/bench/attention_bench [THREADS]
 *
 * Each shape runs twice: with the batch of the models (128 images, so that
 * q, k, v and the probabilities come from memory, as in training) and with
 * 2 images whose buffers stay in the L2 cache (what the kernels reach when
 * nothing waits for memory). GFLOP/s counts the six products of a training
 * step (two forward, four backward), as vit_bench's attn_gflops does; the
 * rebuilt P v is timed but not counted.
 */
#include "median.h"

#include "vitrain/attention.h"
#include "vitrain/common.h"
#include "vitrain/metrics.h"
#include "vitrain/parallel.h"

#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ROUNDS = 7, SGEMM_N = 1024 };

typedef struct Shape {
    const char *name;
    AttnDims dims;
} Shape;

/* The buffers of one attention call, filled with values of softmax-like size. */
typedef struct Buffers {
    float *qkv, *out, *probs, *dout, *dqkv;
    AttnScratch scratch; /* dP tiles only: no rotation */
} Buffers;

static float *filled(int64_t n, unsigned seed)
{
    float *x = malloc((size_t)n * sizeof(float));
    VT_ASSERT(x);
    for (int64_t i = 0; i < n; i++) {
        seed = seed * 1664525u + 1013904223u;
        x[i] = (float)(seed >> 8) * (1.0f / 16777216.0f) - 0.5f;
    }
    return x;
}

static Buffers buffers_new(const AttnDims *d)
{
    const int64_t BN = (int64_t)d->B * d->N, D = (int64_t)d->H * d->Dh;
    Buffers b = {.scratch.tiles = attention_scratch_tiles()};
    b.qkv = filled(BN * 3 * D, 1);
    b.dout = filled(BN * D, 2);
    b.out = filled(BN * D, 3);
    b.dqkv = filled(BN * 3 * D, 4);
    b.probs = filled((int64_t)d->B * d->H * d->N * d->N, 5);
    b.scratch.dp_tiles = filled(attention_scratch_sizes(NULL, d, b.scratch.tiles).dp_tiles, 6);
    return b;
}

static void buffers_free(Buffers *b)
{
    free(b->qkv);
    free(b->out);
    free(b->probs);
    free(b->dout);
    free(b->dqkv);
    free(b->scratch.dp_tiles);
}

static double sgemm_seconds(const float *a, const float *b, float *c)
{
    double t0 = now_seconds();
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, SGEMM_N, SGEMM_N, SGEMM_N, 1.0f, a,
                SGEMM_N, b, SGEMM_N, 0.0f, c, SGEMM_N);
    return now_seconds() - t0;
}

/* Seconds of `calls` forward, rebuild and backward passes. */
static void attention_seconds(Buffers *b, const AttnDims *d, int calls, double seconds[3])
{
    double t0 = now_seconds();
    for (int i = 0; i < calls; i++)
        attention_forward(b->out, b->probs, b->qkv, NULL, 0, d, &b->scratch);
    double t1 = now_seconds();
    for (int i = 0; i < calls; i++)
        attention_output(b->out, b->probs, b->qkv, d);
    double t2 = now_seconds();
    for (int i = 0; i < calls; i++)
        attention_backward(b->dqkv, b->dout, b->probs, b->qkv, NULL, 0, d, &b->scratch);
    double t3 = now_seconds();
    seconds[0] = t1 - t0;
    seconds[1] = t2 - t1;
    seconds[2] = t3 - t2;
}

/* One shape at one batch: median times per image of forward, rebuild and
 * backward, and the six products' rate against sgemm's. */
static void run_shape(const Shape *s, int batch, const char *where, const float *ga,
                      const float *gb, float *gc)
{
    AttnDims d = s->dims;
    d.B = batch;
    /* About as many images per measurement either way. */
    const int calls = VT_MAX(1, 256 / batch);
    Buffers b = buffers_new(&d);
    double t[3][ROUNDS], g[ROUNDS], once[3];
    attention_seconds(&b, &d, 1, once); /* warm-up */
    for (int r = 0; r < ROUNDS; r++) {
        g[r] = sgemm_seconds(ga, gb, gc);
        attention_seconds(&b, &d, calls, once);
        for (int p = 0; p < 3; p++)
            t[p][r] = once[p] / ((double)calls * batch);
    }
    const double fwd = median(t[0], ROUNDS), out = median(t[1], ROUNDS),
                 bwd = median(t[2], ROUNDS);
    const double sgemm = 2.0 * SGEMM_N * SGEMM_N * (double)SGEMM_N / median(g, ROUNDS) * 1e-9;
    const double flops = 3.0 * 4.0 * d.N * d.N * (double)(d.H * d.Dh); /* per image */
    const double rate = flops / (fwd + out + bwd) * 1e-9;
    printf("| %s | %s | %d | %.1f | %.1f | %.1f | %.1f | %.1f | %.0f %% |\n", s->name, where,
           batch, fwd * 1e6, out * 1e6, bwd * 1e6, rate, sgemm, 100.0 * rate / sgemm);
    buffers_free(&b);
}

int main(int argc, char **argv)
{
    const int threads = argc > 1 ? atoi(argv[1]) : 1;
    if (argc > 2 || threads < 1) {
        fprintf(stderr, "usage: attention_bench [THREADS]\n");
        return 2;
    }
    threads_setup(threads);
    const Shape shapes[] = {
        {"ViT-Tiny 28 px (N 50, 3 x 64)", {0, 50, 3, 64}},
        {"ViT-S 32 px (N 65, 6 x 64)", {0, 65, 6, 64}},
    };
    const int64_t nn = (int64_t)SGEMM_N * SGEMM_N;
    float *ga = filled(nn, 7), *gb = filled(nn, 8), *gc = filled(nn, 9);
    printf("attention core, %d thread(s); microseconds per image (all layers' heads of one "
           "block)\n\n",
           threads);
    printf("| shape | operands | batch | forward | rebuild P v | backward | GFLOP/s | sgemm "
           "1024 | of sgemm |\n|---|---|---|---|---|---|---|---|---|\n");
    for (size_t i = 0; i < sizeof shapes / sizeof *shapes; i++) {
        run_shape(&shapes[i], 128, "memory", ga, gb, gc);
        run_shape(&shapes[i], 2, "L2", ga, gb, gc);
    }
    free(ga);
    free(gb);
    free(gc);
    return 0;
}
