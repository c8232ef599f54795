/*
 * rotation_bench - the phases of a rotary encoding's training step, timed
 * apart: prepare (the rotations of every layer), forward (q and k of every
 * layer), backward (dq and dk, with the rotation gradients) and finish (the
 * parameter gradients), in ms per training step.
 *
 *   build/release/bench/rotation_bench [PE BLOCK DIM DEPTH HEADS IMG PATCH BATCH]
 *
 * q and k go through the encoding's hook (pe_rotation) as the attention
 * drives it: in the rows of a (B, N, 3 D) qkv buffer, turned in place by a
 * whole-tensor hook (their gradients likewise in dL/dqkv), or for an
 * encoding with per-head forms read one (image, head) at a time into a
 * tile per thread, the backward in units of (chunk of the batch, head)
 * followed by the reduce; the attention's own products are left out.
 * Rotated in place step after step, the rows keep their norms.
 *
 * Defaults: LieRE, b = 8, on ViT-Tiny at 28 px, patch 4, batch 64: the
 * configuration whose encoding overhead docs/PERFORMANCE.md tracks.
 */
#include "median.h"

#include "vitrain/metrics.h"
#include "vitrain/parallel.h"
#include "vitrain/pe.h"
#include "vitrain/rng.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { ROUNDS = 7, PHASES = 4 };

static const char *const PHASE_NAMES[PHASES] = {"prepare", "forward", "backward", "finish"};

typedef struct Setup {
    Pe pe;
    TensorList list;
    Arena params, grads;
    AttnDims d;
    int depth;
    float *qkv, *dqkv;       /* (B, N, 3 D): the rows, as the qkv linear leaves them */
    float *rotated, *grad;   /* per-head forms: q and k rotated and their gradients,
                                two (N, Dh) tiles per thread each */
} Setup;

static void fill_normal(float *x, size_t n, uint64_t seed)
{
    Rng rng = rng_stream(seed, RNG_TEST, 1, 2);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(&rng);
}

/* The thread's two tiles (q, k) in `buffer`. */
static float *tiles_of(const Setup *s, float *buffer, int thread)
{
    return buffer + (size_t)thread * 2 * s->d.N * s->d.Dh;
}

static void forward_layer(const Setup *s, const QkRotation *hook, int layer)
{
    const AttnDims *d = &s->d;
    const int D = d->H * d->Dh, tile = d->N * d->Dh;
    if (!hook->forward_head) {
        hook->forward(hook, layer, s->qkv, 3 * D, d);
        hook->forward(hook, layer, s->qkv + D, 3 * D, d);
        return;
    }
#pragma omp parallel for schedule(static)
    for (int bh = 0; bh < d->B * d->H; bh++) {
        float *q = tiles_of(s, s->rotated, omp_get_thread_num());
        hook->forward_head(hook, layer, bh / d->H, bh % d->H, q, q + tile, s->qkv, s->qkv + D,
                           3 * D, d);
    }
}

static void backward_layer(const Setup *s, const QkRotation *hook, int layer)
{
    const AttnDims *d = &s->d;
    const int D = d->H * d->Dh, tile = d->N * d->Dh;
    if (!hook->backward_head) {
        hook->backward(hook, layer, s->dqkv, s->qkv, 3 * D, d);
        hook->backward(hook, layer, s->dqkv + D, s->qkv + D, 3 * D, d);
        return;
    }
    const int chunks = attention_grad_chunks(d->B);
    float *parts = hook->grad_floats
                       ? calloc((size_t)chunks * d->H * hook->grad_floats, sizeof(float))
                       : NULL;
#pragma omp parallel for schedule(static)
    for (int unit = 0; unit < chunks * d->H; unit++) {
        float *dq = tiles_of(s, s->grad, omp_get_thread_num());
        float *part = parts ? parts + (size_t)unit * hook->grad_floats : NULL;
        int first, end;
        attention_grad_chunk(d->B, unit / d->H, &first, &end);
        for (int b = first; b < end; b++)
            hook->backward_head(hook, layer, b, unit % d->H, s->dqkv, s->dqkv + D, dq, dq + tile,
                                s->qkv, s->qkv + D, 3 * D, part, d);
    }
    if (hook->backward_reduce)
        hook->backward_reduce(hook, layer, parts, chunks, d);
    free(parts);
}

/* One training step of the encoding alone; adds each phase's seconds.
 * Every step first moves one parameter by an ulp, as the optimizer moves
 * them all: an encoding that keeps its rotations while its parameters stay
 * put (LieRE's evaluation cache) must make them anew, as in training. */
static void step(Setup *s, double seconds[PHASES])
{
    const PeStep pass = {.train = true, .step = 1, .seed = 3};
    const QkRotation *hook = pe_rotation(&s->pe);
    if (s->list.total > 0)
        s->params.data[0] = nextafterf(s->params.data[0], INFINITY);
    double t = now_seconds(), t1;
    s->pe.kind->prepare(&s->pe, s->params.data, &pass);
    t1 = now_seconds(), seconds[0] += t1 - t, t = t1;
    for (int l = 0; l < s->depth; l++)
        forward_layer(s, hook, l);
    t1 = now_seconds(), seconds[1] += t1 - t, t = t1;
    for (int l = 0; l < s->depth; l++)
        backward_layer(s, hook, l);
    t1 = now_seconds(), seconds[2] += t1 - t, t = t1;
    s->pe.kind->finish(&s->pe, s->params.data, s->grads.data);
    seconds[3] += now_seconds() - t;
}

int main(int argc, char **argv)
{
    const char *type = "liere";
    int block = 8, dim = 192, depth = 12, heads = 3, img = 28, patch = 4, batch = 64;
    if (argc == 9) {
        type = argv[1], block = atoi(argv[2]), dim = atoi(argv[3]), depth = atoi(argv[4]);
        heads = atoi(argv[5]), img = atoi(argv[6]), patch = atoi(argv[7]), batch = atoi(argv[8]);
    } else if (argc != 1) {
        fprintf(stderr, "usage: rotation_bench [PE BLOCK DIM DEPTH HEADS IMG PATCH BATCH]\n");
        return 2;
    }
    const int threads = threads_setup(0), grid = img / patch;
    Setup s = {.depth = depth};
    PeOptions o = pe_options(type);
    o.block_size = block;
    const PeGeometry g = {.depth = depth, .heads = heads, .head_dim = dim / heads,
                          .grid_h = grid, .grid_w = grid, .grid_h0 = grid, .grid_w0 = grid};
    VtError err;
    tensor_list_init(&s.list);
    if (pe_create(&s.pe, &o, &g, &s.list, &err) != VT_OK || !pe_rotation(&s.pe)) {
        fprintf(stderr, "rotation_bench: %s\n",
                s.pe.kind ? "not a rotary encoding" : err.message);
        return 1;
    }
    arena_create(&s.params, &s.list);
    arena_create(&s.grads, &s.list);
    s.pe.kind->init(&s.pe, s.params.data, 1);
    s.d = (AttnDims){.B = batch, .N = 1 + grid * grid, .H = heads, .Dh = dim / heads};
    const size_t whole = (size_t)batch * s.d.N * dim;
    const size_t copies = pe_rotation(&s.pe)->forward_head
                              ? (size_t)2 * threads * s.d.N * s.d.Dh : 1;
    s.qkv = malloc(3 * whole * sizeof(float));
    s.dqkv = malloc(3 * whole * sizeof(float));
    s.rotated = malloc(copies * sizeof(float));
    s.grad = malloc(copies * sizeof(float));
    fill_normal(s.qkv, 3 * whole, 1);
    fill_normal(s.dqkv, 3 * whole, 3);
    fill_normal(s.grad, copies, 2); /* rotations keep the gradients bounded */

    double warm[PHASES] = {0}, rounds[PHASES][ROUNDS] = {{0}};
    step(&s, warm);
    for (int r = 0; r < ROUNDS; r++) {
        double seconds[PHASES] = {0};
        step(&s, seconds);
        for (int p = 0; p < PHASES; p++)
            rounds[p][r] = seconds[p];
    }
    printf("%s b=%d: dim %d, depth %d, heads %d, %d px, patch %d, batch %d, %d threads; "
           "median of %d steps, ms\n",
           type, block, dim, depth, heads, img, patch, batch, threads, ROUNDS);
    double total = 0.0;
    for (int p = 0; p < PHASES; p++) {
        const double phase = median(rounds[p], ROUNDS);
        total += phase;
        printf("%s=%.2f ", PHASE_NAMES[p], 1e3 * phase);
    }
    printf("total=%.2f\n", 1e3 * total);
    pe_destroy(&s.pe);
    arena_free(&s.params);
    arena_free(&s.grads);
    tensor_list_free(&s.list);
    free(s.qkv), free(s.dqkv), free(s.rotated), free(s.grad);
    return 0;
}
