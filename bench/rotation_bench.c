/*
 * rotation_bench - the phases of a rotary encoding's training step, timed
 * apart: prepare (the rotations of every layer), forward (q and k of every
 * layer), backward (dq and dk, with the rotation gradients) and finish (the
 * parameter gradients), in ms per training step.
 *
 *   build/release/bench/rotation_bench [PE BLOCK DIM DEPTH HEADS IMG PATCH BATCH]
 *
 * Defaults: LieRE, b = 8, on ViT-Tiny at 28 px, patch 4, batch 64: the
 * configuration whose encoding overhead docs/PERFORMANCE.md tracks.
 */
#include "median.h"

#include "vitrain/metrics.h"
#include "vitrain/parallel.h"
#include "vitrain/pe.h"
#include "vitrain/rng.h"

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
    float *x, *raw, *dx, *dx_raw; /* (B, H, N, Dh) each; raw and dx_raw as (B, N, H Dh) rows */
} Setup;

static void fill_normal(float *x, size_t n, uint64_t seed)
{
    Rng rng = rng_stream(seed, RNG_TEST, 1, 2);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)rng_normal(&rng);
}

/* One training step of the encoding alone; adds each phase's seconds. */
static void step(Setup *s, double seconds[PHASES])
{
    const PeStep pass = {.train = true, .step = 1, .seed = 3};
    double t = now_seconds(), t1;
    s->pe.kind->prepare(&s->pe, s->params.data, &pass);
    t1 = now_seconds(), seconds[0] += t1 - t, t = t1;
    for (int l = 0; l < s->depth; l++)
        for (int qk = 0; qk < 2; qk++)
            pe_forward(&s->pe, l, s->x, s->raw, s->d.H * s->d.Dh, &s->d);
    t1 = now_seconds(), seconds[1] += t1 - t, t = t1;
    for (int l = 0; l < s->depth; l++)
        for (int qk = 0; qk < 2; qk++) /* rotations keep dx bounded */
            pe_backward(&s->pe, l, s->dx_raw, s->dx, s->raw, s->d.H * s->d.Dh, &s->d);
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
    const size_t n = (size_t)batch * s.d.N * dim;
    s.x = malloc(n * sizeof(float));
    s.raw = malloc(n * sizeof(float));
    s.dx = malloc(n * sizeof(float));
    s.dx_raw = malloc(n * sizeof(float));
    fill_normal(s.raw, n, 1);
    fill_normal(s.dx, n, 2);

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
    free(s.x), free(s.raw), free(s.dx), free(s.dx_raw);
    return 0;
}
