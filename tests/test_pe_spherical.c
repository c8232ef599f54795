/*
 * test_pe_spherical.c - the spherical encoding (DESIGN §4.4): gradients
 * (fixed and learned frequencies, at the training grid and an extended
 * one, with and without leftover channels), orthogonality, the paper's
 * point that it is not strictly relative, the rotation and positions
 * against values computed here independently, determinism of the learned
 * gradient across thread counts, and the error for a head too small.
 */
#include "gradcheck.h"
#include "pe_harness.h"
#include "suites.h"

#include <math.h>
#include <omp.h>
#include <string.h>


/* fp32 rotations, as in test_pe_rope.c: 1e-3 of each tensor's gradient scale. */
static const double PE_TOLERANCE = 1e-3;
/* Values below are single cos/sin products in fp32. */
static const double VALUE_TOLERANCE = 1e-6;

static PeOptions spherical_options(bool learned)
{
    PeOptions o = pe_options("spherical");
    o.learned = learned;
    return o;
}

/* ---- an encoding driven by hand ------------------------------------------ */

typedef struct Sph {
    Pe pe;
    TensorList list;
    Arena params, grads;
} Sph;

static void sph_create(Sph *s, const PeOptions *o, const PeGeometry *g)
{
    memset(s, 0, sizeof *s);
    tensor_list_init(&s->list);
    VtError err;
    ck_assert_msg(pe_create(&s->pe, o, g, &s->list, &err) == VT_OK, "%s", err.message);
    arena_create(&s->params, &s->list);
    arena_create(&s->grads, &s->list);
    s->pe.kind->init(&s->pe, s->params.data, 1);
    const PeStep step = {.train = true};
    s->pe.kind->prepare(&s->pe, s->params.data, &step);
}

static void sph_free(Sph *s)
{
    pe_destroy(&s->pe);
    arena_free(&s->params);
    arena_free(&s->grads);
    tensor_list_free(&s->list);
}

/* ---- independent reference: Yaw(a) Roll(b) in double -------------------- */

static void yaw_roll(double R[3][3], double a, double b)
{
    const double yaw[3][3] = {{cos(a), -sin(a), 0}, {sin(a), cos(a), 0}, {0, 0, 1}};
    const double roll[3][3] = {{1, 0, 0}, {0, cos(b), -sin(b)}, {0, sin(b), cos(b)}};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            R[i][j] = 0.0;
            for (int k = 0; k < 3; k++)
                R[i][j] += yaw[i][k] * roll[k][j];
        }
}

/* ---- gradients ------------------------------------------------------------- */

static void check_gradients(bool learned, int head_dim)
{
    PeOptions o = spherical_options(learned);
    const PeGeometry at_training = pe_test_geometry(head_dim, 3, 3);
    const PeGeometry extended = pe_test_geometry(head_dim, 5, 3);
    ck_assert_double_lt(pe_gradcheck(&o, &at_training, 0.05, 31), PE_TOLERANCE);
    ck_assert_double_lt(pe_gradcheck(&o, &extended, 0.05, 32), PE_TOLERANCE);
}

START_TEST(test_fixed_gradients)
{
    check_gradients(false, 8); /* 2 triplets + 2 leftover channels */
    check_gradients(false, 9);  /* 3 whole triplets */
    check_gradients(false, 32); /* a multiple of 16: the vectorised band product */
}
END_TEST

START_TEST(test_learned_gradients)
{
    check_gradients(true, 8);
    check_gradients(true, 9);
    check_gradients(true, 32);
}
END_TEST

/* ---- properties ------------------------------------------------------------ */

START_TEST(test_spherical_is_orthogonal)
{
    for (int learned = 0; learned < 2; learned++) {
        PeOptions o = spherical_options(learned);
        PeGeometry g = pe_test_geometry(8, 4, 4);
        ck_assert_double_lt(pe_norm_violation(&o, &g, 33), 1e-5);
    }
}
END_TEST

START_TEST(test_spherical_is_not_relative)
{
    /* Yaw and Roll do not commute, so R(p_m)^T R(p_n) is not a function of
     * p_n - p_m (ComRoPE Thm. 1; the paper says so of its own method): the
     * shift violation is of the order of the logits, far above the ~1e-7
     * of the relative RoPE kinds. Checked at init (fixed) and for random
     * learned frequencies. */
    for (int learned = 0; learned < 2; learned++) {
        PeOptions o = spherical_options(learned);
        PeGeometry g = pe_test_geometry(9, 5, 5);
        double v = pe_shift_violation(&o, &g, 1, learned ? 0.3 : 0.0, 34);
        ck_assert_msg(v > 1e-3, "learned=%d: shift violation %.3g", learned, v);
    }
}
END_TEST

/* ---- values ---------------------------------------------------------------- */

START_TEST(test_rotation_by_hand)
{
    /* Learned frequencies all 0.5: the patch at row 2, column 2 of a 3x3
     * grid trained at 3 sits at (x, y) = (pi, pi), so every triplet turns
     * by a = b = pi/2. Yaw(pi/2) Roll(pi/2) maps e1 -> e2 (roll keeps e1,
     * yaw turns it to e2), e2 -> e3 (roll turns e2 to e3, yaw keeps it) and
     * e3 -> e1 (roll: -e2, yaw: e1). The 2 leftover channels stay. */
    PeOptions o = spherical_options(true);
    PeGeometry g = pe_test_geometry(11, 3, 3);
    Sph s;
    sph_create(&s, &o, &g);
    float *f = arena_tensor(&s.params, s.pe.param[0]);
    for (size_t i = 0; i < s.list.specs[s.pe.param[0]].numel; i++)
        f[i] = 0.5f;
    const PeStep step = {.train = true};
    s.pe.kind->prepare(&s.pe, s.params.data, &step);
    const AttnDims d = {.B = 1, .N = 10, .H = 2, .Dh = 11};
    float *x = gc_zeros((size_t)d.B * d.H * d.N * d.Dh);
    const float in[11] = {1, 0, 0, 0, 1, 0, 0, 0, 1, 7, -3};
    const float want[11] = {0, 1, 0, 0, 0, 1, 1, 0, 0, 7, -3};
    const int token = 1 + 2 * 3 + 2;
    memcpy(x + (size_t)token * d.Dh, in, sizeof in);
    pe_forward_in_place(&s.pe, 1, x, &d);
    for (int i = 0; i < 11; i++)
        ck_assert_msg(fabs(x[(size_t)token * d.Dh + i] - want[i]) < VALUE_TOLERANCE,
                      "channel %d: %g, want %g", i, x[(size_t)token * d.Dh + i], want[i]);
    sph_free(&s);
}
END_TEST

/* Every patch's triplet matrices of the fixed encoding equal
 * Yaw(w_d x_col) Roll(w_d y_row) with the expected positions pos[]
 * (same on both axes) and w = (1, 100^(-1/2)) for head_dim 8 (T = 2).
 * Batch entry b carries e_b in both triplets, so column b of R_d comes out;
 * the leftover channels and the CLS token must not move. */
static void check_fixed_matrices(int grid, int grid0, const double *pos)
{
    PeOptions o = spherical_options(false);
    PeGeometry g = pe_test_geometry(8, grid, grid0);
    Sph s;
    memset(&s, 0, sizeof s);
    tensor_list_init(&s.list);
    VtError err;
    ck_assert_msg(pe_create(&s.pe, &o, &g, &s.list, &err) == VT_OK, "%s", err.message);
    ck_assert_int_eq(s.list.count, 0); /* fixed: no parameters */
    const AttnDims d = {.B = 3, .N = 1 + grid * grid, .H = 2, .Dh = 8};
    float *x = gc_zeros((size_t)d.B * d.H * d.N * d.Dh);
    for (int b = 0; b < 3; b++)
        for (int hn = 0; hn < d.H * d.N; hn++) {
            float *v = x + ((size_t)b * d.H * d.N + hn) * d.Dh;
            v[b] = v[3 + b] = 1.0f;
            v[6] = 5.0f, v[7] = -2.0f;
        }
    pe_forward_in_place(&s.pe, 0, x, &d);
    const double w[2] = {1.0, 0.1};
    for (int b = 0; b < 3; b++)
        for (int h = 0; h < d.H; h++)
            for (int n = 0; n < d.N; n++) {
                const float *v = x + (((size_t)b * d.H + h) * d.N + n) * d.Dh;
                for (int t = 0; t < 2; t++) {
                    double R[3][3];
                    if (n == 0)
                        yaw_roll(R, 0.0, 0.0);
                    else
                        yaw_roll(R, w[t] * pos[pe_col(&g, n)], w[t] * pos[pe_row(&g, n)]);
                    for (int i = 0; i < 3; i++)
                        ck_assert_msg(fabs(v[3 * t + i] - R[i][b]) < VALUE_TOLERANCE,
                                      "grid %d token %d triplet %d: R[%d][%d] = %g, want %g",
                                      grid, n, t, i, b, v[3 * t + i], R[i][b]);
                }
                ck_assert(v[6] == 5.0f && v[7] == -2.0f);
            }
    sph_free(&s);
}

START_TEST(test_positions_at_training_grid)
{
    const double pos[3] = {-M_PI, 0.0, M_PI};
    check_fixed_matrices(3, 3, pos);
}
END_TEST

START_TEST(test_positions_extended)
{
    /* linspace(-5pi/3, 5pi/3, 5): the range grows with the grid. */
    const double pos[5] = {-5 * M_PI / 3, -5 * M_PI / 6, 0.0, 5 * M_PI / 6, 5 * M_PI / 3};
    check_fixed_matrices(5, 3, pos);
}
END_TEST

START_TEST(test_single_patch_axis)
{
    /* A grid of one patch: torch.linspace(-pi/3, pi/3, 1) is its start. */
    const double pos[1] = {-M_PI / 3};
    check_fixed_matrices(1, 3, pos);
}
END_TEST

/* Random vectors at head dims that take each path of the band product
 * (multiples of the vector width, 16 or 8, by lane shifts; others, and more
 * than one 128-channel chunk), forward and backward, against R_d and R_d^T
 * applied here in double: triplet t of token n turned by Yaw(w_t x)
 * Roll(w_t y), w_t = 100^(-t/T), positions linspace(-pi, pi, 3); the
 * leftover channels and CLS unchanged. */
static double worst_rotation_error(const float *in, const float *out, const PeGeometry *g,
                                   int dim, int tokens, bool transposed)
{
    const double pos[3] = {-M_PI, 0.0, M_PI};
    const int triplets = dim / 3;
    double worst = 0.0;
    for (int row = 0; row < 2 * tokens; row++) { /* (head, token) */
        const int n = row % tokens;
        const float *u = in + (size_t)row * dim, *v = out + (size_t)row * dim;
        for (int t = 0; t < triplets; t++) {
            const double w = pow(100.0, -(double)t / triplets);
            double R[3][3];
            if (n == 0)
                yaw_roll(R, 0.0, 0.0);
            else
                yaw_roll(R, w * pos[pe_col(g, n)], w * pos[pe_row(g, n)]);
            for (int i = 0; i < 3; i++) {
                double want = 0.0;
                for (int j = 0; j < 3; j++)
                    want += (transposed ? R[j][i] : R[i][j]) * u[3 * t + j];
                worst = fmax(worst, fabs(v[3 * t + i] - want));
            }
        }
        for (int c = 3 * triplets; c < dim; c++)
            ck_assert(v[c] == u[c]);
    }
    return worst;
}

START_TEST(test_rotation_at_wide_heads)
{
    const int dims[] = {16, 40, 48, 64, 131, 144, 272};
    for (size_t k = 0; k < sizeof dims / sizeof dims[0]; k++) {
        const int dim = dims[k];
        PeOptions o = spherical_options(false);
        PeGeometry g = pe_test_geometry(dim, 3, 3);
        Sph s;
        sph_create(&s, &o, &g);
        const AttnDims d = {.B = 1, .N = 10, .H = 2, .Dh = dim};
        const size_t n_all = (size_t)d.H * d.N * d.Dh;
        const float *raw = gc_randn(n_all, 1.0, 40 + (uint64_t)k);
        float *x = gc_zeros(n_all);
        memcpy(x, raw, n_all * sizeof(float));
        pe_forward_in_place(&s.pe, 0, x, &d);
        const double forward = worst_rotation_error(raw, x, &g, dim, d.N, false);
        ck_assert_msg(forward < 1e-5, "head dim %d forward: error %.3g", dim, forward);
        /* The fixed encoding's backward reads no raw values (they only
         * serve learned frequencies' gradients): zeros stand in. */
        memcpy(x, raw, n_all * sizeof(float));
        pe_backward_in_place(&s.pe, 0, x, gc_zeros(n_all), &d);
        const double backward = worst_rotation_error(raw, x, &g, dim, d.N, true);
        ck_assert_msg(backward < 1e-5, "head dim %d backward: error %.3g", dim, backward);
        sph_free(&s);
    }
}
END_TEST

/* ---- determinism ----------------------------------------------------------- */

/* freqs gradient of one backward of random x and dy with `threads`. */
static void learned_gradient(float *out, size_t n_out, int threads)
{
    omp_set_num_threads(threads);
    PeOptions o = spherical_options(true);
    PeGeometry g = pe_test_geometry(9, 5, 3);
    Sph s;
    sph_create(&s, &o, &g);
    const AttnDims d = {.B = 3, .N = 26, .H = 2, .Dh = 9};
    const size_t n = (size_t)d.B * d.N * d.H * d.Dh;
    const float *raw = gc_randn(n, 1.0, 35);
    for (int l = 0; l < g.depth; l++) {
        float *dy = gc_randn(n, 1.0, 36 + (uint64_t)l);
        pe_backward_in_place(&s.pe, l, dy, raw, &d);
    }
    s.pe.kind->finish(&s.pe, s.params.data, s.grads.data);
    ck_assert_uint_eq(s.list.specs[s.pe.param[0]].numel, n_out);
    memcpy(out, arena_tensor(&s.grads, s.pe.param[0]), n_out * sizeof(float));
    sph_free(&s);
}

START_TEST(test_learned_gradient_is_deterministic)
{
    /* One writer per (head, token) summing the batch in order: the same
     * bits for any thread count. */
    const size_t n = 2 * 2 * 2 * 3; /* (2, depth, H, T) */
    float one[24], many[24];
    learned_gradient(one, n, 1);
    learned_gradient(many, n, 4);
    ck_assert_mem_eq(one, many, sizeof one);
}
END_TEST

/* ---- errors ---------------------------------------------------------------- */

START_TEST(test_head_dim_too_small)
{
    PeOptions o = spherical_options(false);
    PeGeometry g = pe_test_geometry(2, 3, 3);
    TensorList list;
    tensor_list_init(&list);
    Pe pe;
    VtError err;
    ck_assert_int_eq(pe_create(&pe, &o, &g, &list, &err), VT_ERR_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "head dimension"));
    tensor_list_free(&list);
}
END_TEST

Suite *pe_spherical_suite(void)
{
    Suite *s = suite_create("pe_spherical");
    TCase *tc = tcase_with_timeout("spherical", 60, NULL);
    tcase_add_checked_fixture(tc, NULL, gc_free_all);
    tcase_add_test(tc, test_fixed_gradients);
    tcase_add_test(tc, test_learned_gradients);
    tcase_add_test(tc, test_spherical_is_orthogonal);
    tcase_add_test(tc, test_rotation_at_wide_heads);
    tcase_add_test(tc, test_spherical_is_not_relative);
    tcase_add_test(tc, test_rotation_by_hand);
    tcase_add_test(tc, test_positions_at_training_grid);
    tcase_add_test(tc, test_positions_extended);
    tcase_add_test(tc, test_single_patch_axis);
    tcase_add_test(tc, test_learned_gradient_is_deterministic);
    tcase_add_test(tc, test_head_dim_too_small);
    suite_add_tcase(s, tc);
    return s;
}
