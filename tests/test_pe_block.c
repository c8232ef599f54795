/*
 * test_pe_block.c - the block-rotation encodings comrope_ap, comrope_ld
 * (DESIGN §4.5) and liere (§4.6) on their shared engine: gradients at the
 * training grid and an extended one (blocked and dense b = Dh, LieRE's
 * sharing options), the relative-position property ComRoPE has and LieRE
 * lacks, orthogonality, clean errors for head sizes that do not fit, the
 * training-only position perturbation, and results that do not depend on
 * the thread count.
 */
#include "gradcheck.h"
#include "pe_harness.h"
#include "suites.h"

#include "vitrain/parallel.h"
#include "vitrain/skew_expm.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


/* fp32 rotations like the ops: the tolerance of test_pe_rope.c (1e-3 of
 * each tensor's gradient scale). */
static const double PE_TOLERANCE = 1e-3;

static PeOptions block_options(const char *type, int b)
{
    PeOptions o = pe_options(type);
    o.block_size = b;
    return o;
}

/* At the training grid 3 and an extended grid 5, head_dim 8. */
static void check_gradients(const PeOptions *o, double param_noise)
{
    const PeGeometry at_training = pe_test_geometry(8, 3, 3), extended = pe_test_geometry(8, 5, 3);
    ck_assert_double_lt(pe_gradcheck(o, &at_training, param_noise, 11), PE_TOLERANCE);
    ck_assert_double_lt(pe_gradcheck(o, &extended, param_noise, 12), PE_TOLERANCE);
}

START_TEST(test_comrope_ap_gradients)
{
    /* b = 4: blocks alternate row, column; b = 8 would leave AP no column
     * block at head_dim 8, so the check refuses it (test_head_dim_must_fit). */
    PeOptions o = block_options("comrope_ap", 4);
    check_gradients(&o, 0.05);
}
END_TEST

START_TEST(test_comrope_ld_gradients)
{
    for (int b = 4; b <= 8; b += 4) {
        PeOptions o = block_options("comrope_ld", b);
        check_gradients(&o, 0.05);
    }
}
END_TEST

START_TEST(test_liere_gradients)
{
    /* At the U[0, 2 pi) init the generators reach ||G|| ~ 10 to 40 (b = 4
     * to 8, positions up to 5/3 at grid 5). The harness can only add noise
     * to the init, not shrink it, and the fp32 central differences still
     * hold at these norms: errors measure 1e-4 to 3e-4. */
    for (int b = 4; b <= 8; b += 4) {
        PeOptions o = block_options("liere", b);
        check_gradients(&o, 0.05);
    }
}
END_TEST

START_TEST(test_liere_dense_gradients)
{
    /* b = Dh = 16: the rotations run as products over the batch
     * (block_rotary.c), and grid 5 holds rays of up to four tokens. */
    PeOptions o = block_options("liere", 16);
    const PeGeometry at_training = pe_test_geometry(16, 3, 3);
    const PeGeometry extended = pe_test_geometry(16, 5, 3);
    ck_assert_double_lt(pe_gradcheck(&o, &at_training, 0.05, 14), PE_TOLERANCE);
    ck_assert_double_lt(pe_gradcheck(&o, &extended, 0.05, 15), PE_TOLERANCE);
}
END_TEST

/* G of LieRE table (layer, head), block, at grid position (row, col), built
 * here from the parameters as DESIGN §4.6 states it. */
static void liere_generator(double *G, const float *raw, const PeGeometry *g, int b, int layer,
                            int head, int block, int row, int col)
{
    const int K = g->head_dim / b, per_layer = g->heads * K;
    const double pr = row * ((double)g->grid_h / g->grid_h0) / (g->grid_h - 1);
    const double pc = col * ((double)g->grid_w / g->grid_w0) / (g->grid_w - 1);
    const float *ur = raw + ((size_t)(0 * g->depth + layer) * per_layer + head * K + block) * b * b;
    const float *uc = raw + ((size_t)(1 * g->depth + layer) * per_layer + head * K + block) * b * b;
    for (int r = 0; r < b; r++)
        for (int c = 0; c < b; c++) {
            const int lo = r < c ? r : c, hi = r < c ? c : r;
            const double a = pr * ur[lo * b + hi] + pc * uc[lo * b + hi];
            G[r * b + c] = r == c ? 0.0 : r < c ? a : -a;
        }
}

/* Max |R_t - exp(G_t)| over layers, heads, patch tokens and blocks, with R_t
 * read back through the forward pass one basis vector at a time. */
static double liere_rotation_error(int b, int grid, int grid0)
{
    PeOptions o = block_options("liere", b);
    const PeGeometry g = pe_test_geometry(b > 16 ? b : 16, grid, grid0);
    TensorList list;
    tensor_list_init(&list);
    Pe pe;
    VtError err;
    ck_assert_msg(pe_create(&pe, &o, &g, &list, &err) == VT_OK, "%s", err.message);
    Arena params;
    arena_create(&params, &list);
    pe.kind->init(&pe, params.data, 9);
    const PeStep step = {.train = true, .step = 1, .seed = 1};
    pe.kind->prepare(&pe, params.data, &step);
    const int N = 1 + grid * grid, H = g.heads, Dh = g.head_dim;
    const AttnDims d = {.B = 1, .N = N, .H = H, .Dh = Dh};
    const size_t per_pass = (size_t)H * N * Dh;
    float *columns = malloc((size_t)Dh * per_pass * sizeof(float)); /* [c]: R e_c per token */
    double G[64 * 64], R[64 * 64], worst = 0.0;
    SkewExpmWork *work = skew_expm_work_create(b);
    for (int layer = 0; layer < g.depth; layer++) {
        for (int c = 0; c < Dh; c++) {
            float *x = columns + (size_t)c * per_pass;
            memset(x, 0, per_pass * sizeof(float));
            for (int ht = 0; ht < H * N; ht++)
                x[(size_t)ht * Dh + c] = 1.0f;
            pe_forward_in_place(&pe, layer, x, &d);
        }
        for (int h = 0; h < H; h++)
            for (int t = 1; t < N; t++)
                for (int j = 0; j < Dh / b; j++) {
                    liere_generator(G, arena_tensor(&params, 0), &g, b, layer, h, j, pe_row(&g, t),
                                    pe_col(&g, t));
                    skew_expm(R, G, b, work);
                    for (int r = 0; r < b; r++)
                        for (int c = 0; c < b; c++) {
                            const float *x = columns + (size_t)(j * b + c) * per_pass;
                            const double got = x[((size_t)h * N + t) * Dh + j * b + r];
                            worst = fmax(worst, fabs(got - R[r * b + c]));
                        }
                }
    }
    skew_expm_work_free(work);
    free(columns);
    pe_destroy(&pe);
    arena_free(&params);
    tensor_list_free(&list);
    return worst;
}

START_TEST(test_liere_rotations_match_their_generators)
{
    /* The engine takes one exponential per ray of positions and powers of it
     * for the rest (G(k p) = k G(p)); each token's rotation must still be
     * exp of its own generator, built here from the parameters. Grid 7 has
     * powers up to 6; grid 9 trained at 7 extrapolates. fp32 storage bounds
     * the error where the rotations are made in double (b < 16); dense
     * blocks (b = 16 and 64, a head each) take the powers in float from
     * the stored root (measured 2e-7 to 3e-7). A wrong root or power would
     * be of order 1. b = 8 gives a head of 16 two blocks: on AVX-512 one
     * vector turns both. */
    const int sizes[] = {4, 8, 16, 64}, grids[][2] = {{7, 7}, {9, 7}};
    for (int i = 0; i < 4; i++)
        for (int k = 0; k < 2; k++) {
            double e = liere_rotation_error(sizes[i], grids[k][0], grids[k][1]);
            printf("liere b=%d grid %d/%d: max |R - exp(G)| %.3g\n", sizes[i], grids[k][0],
                   grids[k][1], e);
            ck_assert_msg(e < 1e-6, "liere b=%d grid %d/%d: max |R - exp(G)| %.3g", sizes[i],
                          grids[k][0], grids[k][1], e);
        }
}
END_TEST

START_TEST(test_block8_gradients_with_several_blocks)
{
    /* b = 8 has kernels of its own (block_rotary.c, skew_expm.c); heads of
     * 24 and 32 give them three and four blocks, so block offsets are
     * checked too, and an even count takes the forward that turns two
     * blocks per vector on AVX-512. */
    const char *types[] = {"comrope_ld", "liere"};
    const int dims[] = {24, 32};
    for (int i = 0; i < 2; i++)
        for (int k = 0; k < 2; k++) {
            PeOptions o = block_options(types[i], 8);
            const PeGeometry g = pe_test_geometry(dims[k], 3, 3);
            double e = pe_gradcheck(&o, &g, 0.05, 13);
            ck_assert_msg(e < PE_TOLERANCE, "%s b=8, %d blocks: gradient error %.3g", types[i],
                          dims[k] / 8, e);
        }
}
END_TEST

START_TEST(test_liere_shared_gradients)
{
    const bool layers[3] = {true, false, true}, heads[3] = {false, true, true};
    for (int i = 0; i < 3; i++) {
        PeOptions o = block_options("liere", 4);
        o.share_layers = layers[i];
        o.share_heads = heads[i];
        check_gradients(&o, 0.05);
    }
}
END_TEST

START_TEST(test_comrope_is_relative)
{
    /* One generator per block scaled by a scalar: the rotations of all
     * positions commute (ComRoPE Thm. 1), so logits depend on the position
     * difference only, to fp32 rounding. */
    const char *types[] = {"comrope_ap", "comrope_ld"};
    for (int i = 0; i < 2; i++) {
        PeOptions o = block_options(types[i], 4);
        PeGeometry g = pe_test_geometry(16, 5, 5);
        double v = pe_shift_violation(&o, &g, 1, 0.3, 21);
        printf("%s: shift violation %.3g\n", types[i], v);
        ck_assert_msg(v < 1e-5, "%s: shift violation %.3g", types[i], v);
    }
}
END_TEST

START_TEST(test_liere_is_not_relative)
{
    /* The row and column generators of a block do not commute, so LieRE
     * logits change under a shift (the paper's claim of relative encoding
     * holds only approximately): at random init the violation is far above
     * fp32 rounding (1e-6). */
    PeOptions o = block_options("liere", 8);
    PeGeometry g = pe_test_geometry(16, 5, 5);
    double v = pe_shift_violation(&o, &g, 1, 0.0, 21);
    printf("liere: shift violation %.3g\n", v);
    ck_assert_msg(v > 1e-3, "liere: shift violation %.3g", v);
}
END_TEST

START_TEST(test_block_rotations_are_orthogonal)
{
    const char *types[] = {"comrope_ap", "comrope_ld", "liere", "liere"};
    const int sizes[] = {4, 4, 4, 8};
    for (int i = 0; i < 4; i++) {
        PeOptions o = block_options(types[i], sizes[i]);
        PeGeometry g = pe_test_geometry(8, 4, 4);
        double v = pe_norm_violation(&o, &g, 22);
        printf("%s b=%d: norm violation %.3g\n", types[i], sizes[i], v);
        ck_assert_msg(v < 1e-5, "%s b=%d: norm violation %.3g", types[i], sizes[i], v);
    }
}
END_TEST

static void expect_error(const char *type, int b, int head_dim, const char *needle)
{
    PeOptions o = block_options(type, b);
    PeGeometry g = pe_test_geometry(head_dim, 3, 3);
    TensorList list;
    tensor_list_init(&list);
    Pe pe;
    VtError err;
    ck_assert_int_eq(pe_create(&pe, &o, &g, &list, &err), VT_ERR_ARGUMENT);
    ck_assert_msg(strstr(err.message, "pe.block_size") && strstr(err.message, needle),
                  "%s b=%d Dh=%d: %s", type, b, head_dim, err.message);
    ck_assert_int_eq(list.count, 0);
    tensor_list_free(&list);
}

START_TEST(test_head_dim_must_fit)
{
    expect_error("comrope_ap", 8, 8, "is 8");   /* Dh/2 = 4 not a multiple of 8 */
    expect_error("comrope_ap", 4, 12, "is 12"); /* Dh/2 = 6 */
    expect_error("comrope_ld", 8, 12, "is 12");
    expect_error("liere", 4, 6, "is 6");
    expect_error("liere", 1, 8, "got 1");       /* a 1 x 1 skew matrix is 0 */
    expect_error("liere", 128, 128, "got 128"); /* beyond the exp's tested range */
}
END_TEST

/* ---- a full pass, driven by hand (train flag, step, threads) ---------------- */

enum { BATCH = 2 };

typedef struct Pass {
    float *out;    /* (depth, B, H, N, Dh) rotated */
    float *dx;     /* (depth, B, H, N, Dh) */
    float *grads;  /* the gradient arena, list->total floats */
    size_t total;
} Pass;

/* One pass of pe over every layer with the given params: rotated x into
 * out, dL/dx_raw into dx, the parameter gradients into grads (zeroed
 * first). The same numbers serve as the split x and as the raw qkv rows:
 * only the equality of passes is checked, not their values. */
static void pass_with(Pe *pe, const float *params, float *grads, const PeGeometry *g,
                      const PeStep *step, float *out, float *dx)
{
    const AttnDims d = {.B = BATCH, .N = 1 + g->grid_h * g->grid_w, .H = g->heads,
                        .Dh = g->head_dim};
    const size_t n = (size_t)d.B * d.N * d.H * d.Dh;
    memset(grads, 0, pe->list->total * sizeof(float));
    pe->kind->prepare(pe, params, step);
    for (int l = 0; l < g->depth; l++) {
        const float *raw = gc_randn(n, 1.0, 100 + (uint64_t)l);
        memcpy(out + l * n, raw, n * sizeof(float));
        pe_forward_in_place(pe, l, out + l * n, &d);
        memcpy(dx + l * n, gc_randn(n, 1.0, 200 + (uint64_t)l), n * sizeof(float));
        pe_backward_in_place(pe, l, dx + l * n, raw, &d);
    }
    pe->kind->finish(pe, params, grads);
}

/* Raw x and dy are drawn from fixed seeds; the Pe is fresh each time. */
static Pass run_pass(const PeOptions *o, const PeGeometry *g, const PeStep *step)
{
    TensorList list;
    tensor_list_init(&list);
    Pe pe;
    VtError err;
    ck_assert_msg(pe_create(&pe, o, g, &list, &err) == VT_OK, "%s", err.message);
    Arena params, grads;
    arena_create(&params, &list);
    arena_create(&grads, &list);
    pe.kind->init(&pe, params.data, 5);
    const size_t n = (size_t)BATCH * (1 + g->grid_h * g->grid_w) * g->heads * g->head_dim;
    Pass p = {.out = gc_zeros(n * g->depth), .dx = gc_zeros(n * g->depth),
              .grads = gc_zeros(list.total), .total = list.total};
    pass_with(&pe, params.data, grads.data, g, step, p.out, p.dx);
    memcpy(p.grads, grads.data, list.total * sizeof(float));
    pe_destroy(&pe);
    arena_free(&params);
    arena_free(&grads);
    tensor_list_free(&list);
    return p;
}

static bool same_pass(const Pass *a, const Pass *b, const PeGeometry *g)
{
    const size_t n = (size_t)BATCH * (1 + g->grid_h * g->grid_w) * g->heads * g->head_dim *
                     g->depth;
    return memcmp(a->out, b->out, n * sizeof(float)) == 0 &&
           memcmp(a->dx, b->dx, n * sizeof(float)) == 0 &&
           memcmp(a->grads, b->grads, a->total * sizeof(float)) == 0;
}

START_TEST(test_perturbation_only_in_training)
{
    const char *types[] = {"comrope_ap", "comrope_ld"};
    const PeGeometry g = pe_test_geometry(8, 4, 4);
    for (int i = 0; i < 2; i++) {
        PeOptions o = block_options(types[i], 4);
        o.sigma = 0.5f;
        const PeStep eval1 = {.train = false, .step = 1, .seed = 3};
        const PeStep eval2 = {.train = false, .step = 2, .seed = 3};
        const PeStep train1 = {.train = true, .step = 1, .seed = 3};
        const PeStep train2 = {.train = true, .step = 2, .seed = 3};
        Pass e1 = run_pass(&o, &g, &eval1), e2 = run_pass(&o, &g, &eval2);
        Pass t1 = run_pass(&o, &g, &train1), t1b = run_pass(&o, &g, &train1);
        Pass t2 = run_pass(&o, &g, &train2);
        ck_assert_msg(same_pass(&e1, &e2, &g), "%s: eval depends on the step", types[i]);
        ck_assert_msg(same_pass(&t1, &t1b, &g), "%s: a step is not reproducible", types[i]);
        ck_assert_msg(!same_pass(&t1, &t2, &g), "%s: steps share a perturbation", types[i]);
        ck_assert_msg(!same_pass(&t1, &e1, &g), "%s: training is not perturbed", types[i]);
        /* sigma = 0 (the default) leaves training positions alone. */
        o.sigma = 0.0f;
        Pass t0 = run_pass(&o, &g, &train1), e0 = run_pass(&o, &g, &eval1);
        ck_assert_msg(same_pass(&t0, &e0, &g), "%s: sigma 0 perturbs", types[i]);
        /* Evaluation uses the exact positions whatever sigma is. */
        ck_assert_msg(same_pass(&e0, &e1, &g), "%s: sigma perturbs evaluation", types[i]);
    }
}
END_TEST

START_TEST(test_results_do_not_depend_on_threads)
{
    /* liere three times: b = 4 runs the generic kernels, b = 8 its own,
     * b = 16 = Dh products over the batch. */
    const char *types[] = {"comrope_ap", "comrope_ld", "liere", "liere", "liere"};
    const int sizes[] = {4, 4, 4, 8, 16};
    const PeGeometry g = pe_test_geometry(16, 5, 4);
    const PeStep step = {.train = true, .step = 7, .seed = 1};
    const int before = threads_count();
    for (int i = 0; i < 5; i++) {
        PeOptions o = block_options(types[i], sizes[i]);
        o.sigma = 0.3f;
        threads_setup(1);
        Pass one = run_pass(&o, &g, &step);
        /* 16: more threads than the cores of a small machine and than the
         * rays, tokens or heads of some parallel loops */
        const int counts[] = {3, 16};
        for (int c = 0; c < 2; c++) {
            threads_setup(counts[c]);
            Pass many = run_pass(&o, &g, &step);
            ck_assert_msg(same_pass(&one, &many, &g), "%s b = %d differs between 1 and %d threads",
                          types[i], sizes[i], counts[c]);
        }
    }
    threads_setup(before);
}
END_TEST

/* LieRE keeps its rotations from one pass to the next while its parameters
 * stay the same bit for bit: a changed parameter must give the rotations
 * of a fresh encoding, and a pass on kept rotations its own gradients,
 * not those of the last pass added. b = 4 rotates head by head, b = 16 =
 * Dh by products over the batch. */
START_TEST(test_liere_rotations_follow_their_parameters)
{
    const PeGeometry g = pe_test_geometry(16, 3, 2);
    const size_t n = (size_t)BATCH * (1 + g.grid_h * g.grid_w) * g.heads * g.head_dim * g.depth;
    const PeStep step = {.train = true, .step = 1, .seed = 1};
    const int sizes[] = {4, 16};
    for (int i = 0; i < 2; i++) {
        const PeOptions o = block_options("liere", sizes[i]);
        TensorList list;
        tensor_list_init(&list);
        Pe pe, fresh;
        VtError err;
        ck_assert_msg(pe_create(&pe, &o, &g, &list, &err) == VT_OK, "%s", err.message);
        Arena params, grads;
        arena_create(&params, &list);
        arena_create(&grads, &list);
        pe.kind->init(&pe, params.data, 5);
        float *out[3], *dx[3], *grad[2];
        for (int k = 0; k < 3; k++) {
            out[k] = gc_zeros(n);
            dx[k] = gc_zeros(n);
        }
        grad[0] = gc_zeros(list.total);
        grad[1] = gc_zeros(list.total);

        pass_with(&pe, params.data, grads.data, &g, &step, out[0], dx[0]);
        memcpy(grad[0], grads.data, list.total * sizeof(float));
        pass_with(&pe, params.data, grads.data, &g, &step, out[1], dx[1]);
        ck_assert_msg(memcmp(out[0], out[1], n * sizeof(float)) == 0 &&
                          memcmp(dx[0], dx[1], n * sizeof(float)) == 0 &&
                          memcmp(grad[0], grads.data, list.total * sizeof(float)) == 0,
                      "b = %d: a second pass with the same parameters differs", sizes[i]);

        pe_tensor(&pe, params.data, pe.param[0])[1] += 0.25f; /* block 0's entry (0, 1) */
        pass_with(&pe, params.data, grads.data, &g, &step, out[1], dx[1]);
        memcpy(grad[1], grads.data, list.total * sizeof(float));
        TensorList fresh_list;
        tensor_list_init(&fresh_list);
        ck_assert(pe_create(&fresh, &o, &g, &fresh_list, &err) == VT_OK);
        pass_with(&fresh, params.data, grads.data, &g, &step, out[2], dx[2]);
        ck_assert_msg(memcmp(out[0], out[1], n * sizeof(float)) != 0,
                      "b = %d: the changed parameter does not reach the rotations", sizes[i]);
        ck_assert_msg(memcmp(out[1], out[2], n * sizeof(float)) == 0 &&
                          memcmp(dx[1], dx[2], n * sizeof(float)) == 0 &&
                          memcmp(grad[1], grads.data, list.total * sizeof(float)) == 0,
                      "b = %d: the pass after a change kept rotations of the old parameters",
                      sizes[i]);
        pe_destroy(&fresh);
        tensor_list_free(&fresh_list);
        pe_destroy(&pe);
        arena_free(&params);
        arena_free(&grads);
        tensor_list_free(&list);
    }
}
END_TEST

START_TEST(test_parameter_names_and_shapes)
{
    PeGeometry g = pe_test_geometry(16, 3, 3);
    const struct {
        const char *type, *name;
        bool share_layers, share_heads;
        int64_t shape[5];
    } cases[] = {
        {"comrope_ap", "blocks.1.attn.freqs", false, false, {2, 1, 4, 4, 4}},
        {"comrope_ld", "blocks.1.attn.multiplier", false, false, {1, 2, 4, 1, 1}},
        {"liere", "position_encoder.generator_raw_params", false, false, {2, 2, 8, 4, 4}},
        {"liere", "position_encoder.generator_raw_params", true, false, {2, 1, 8, 4, 4}},
        {"liere", "position_encoder.generator_raw_params", true, true, {2, 1, 4, 4, 4}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        PeOptions o = block_options(cases[i].type, 4);
        o.share_layers = cases[i].share_layers;
        o.share_heads = cases[i].share_heads;
        TensorList list;
        tensor_list_init(&list);
        Pe pe;
        VtError err;
        ck_assert_int_eq(pe_create(&pe, &o, &g, &list, &err), VT_OK);
        const int t = tensor_list_find(&list, cases[i].name);
        ck_assert_msg(t >= 0, "%s: no %s", cases[i].type, cases[i].name);
        ck_assert_int_eq(list.specs[t].ndim, 5);
        for (int k = 0; k < 5; k++)
            ck_assert_int_eq(list.specs[t].shape[k], cases[i].shape[k]);
        for (int k = 0; k < list.count; k++)
            ck_assert(list.specs[k].flags & VT_TENSOR_NO_DECAY);
        pe_destroy(&pe);
        tensor_list_free(&list);
    }
}
END_TEST

Suite *pe_block_suite(void)
{
    Suite *s = suite_create("pe_block");
    TCase *tc = tcase_with_timeout("block", 120, NULL);
    tcase_add_checked_fixture(tc, NULL, gc_free_all);
    tcase_add_test(tc, test_comrope_ap_gradients);
    tcase_add_test(tc, test_comrope_ld_gradients);
    tcase_add_test(tc, test_liere_gradients);
    tcase_add_test(tc, test_block8_gradients_with_several_blocks);
    tcase_add_test(tc, test_liere_shared_gradients);
    tcase_add_test(tc, test_liere_dense_gradients);
    tcase_add_test(tc, test_liere_rotations_match_their_generators);
    tcase_add_test(tc, test_comrope_is_relative);
    tcase_add_test(tc, test_liere_is_not_relative);
    tcase_add_test(tc, test_block_rotations_are_orthogonal);
    tcase_add_test(tc, test_head_dim_must_fit);
    tcase_add_test(tc, test_perturbation_only_in_training);
    tcase_add_test(tc, test_results_do_not_depend_on_threads);
    tcase_add_test(tc, test_parameter_names_and_shapes);
    tcase_add_test(tc, test_liere_rotations_follow_their_parameters);
    suite_add_tcase(s, tc);
    return s;
}
