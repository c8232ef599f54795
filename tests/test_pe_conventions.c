/*
 * test_pe_conventions.c - the numeric conventions of DESIGN §4 that the
 * gradient, relative-position and orthogonality checks cannot see: a wrong
 * frequency base, swapped axes, a misplaced position or a wrong init scale
 * still give a smooth, orthogonal, relative rotation. Each test reads the
 * rotations back through the forward pass (or reads the initialised
 * parameters) and compares them with numbers worked out by hand from
 * DESIGN §4.2, §4.3, §4.5 and §4.6.
 */
#include "gradcheck.h"
#include "pe_harness.h"
#include "suites.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* fp32 rotations of angles up to 3 rad, and an exp accurate to 1e-6
 * (DESIGN §4.7): 1e-5 leaves room for rounding, while every mutation these
 * tests guard against moves an angle by 0.05 or more. */
static const double ANGLE_TOLERANCE = 1e-5;

typedef struct Encoding {
    Pe pe; /* must not move after pe_create: the hook points at it */
    TensorList list;
    Arena params;
} Encoding;

/* Creates the encoding and runs its own init (DESIGN §4) from seed. */
static void encoding_create(Encoding *e, const PeOptions *o, const PeGeometry *g, uint64_t seed)
{
    tensor_list_init(&e->list);
    VtError err;
    ck_assert_msg(pe_create(&e->pe, o, g, &e->list, &err) == VT_OK, "%s", err.message);
    arena_create(&e->params, &e->list);
    if (e->pe.kind->init)
        e->pe.kind->init(&e->pe, e->params.data, seed);
}

static void encoding_free(Encoding *e)
{
    pe_destroy(&e->pe);
    arena_free(&e->params);
    tensor_list_free(&e->list);
}

/* The parameter tensor named as in DESIGN §4. */
static float *encoding_tensor(const Encoding *e, const char *name)
{
    const int t = tensor_list_find(&e->list, name);
    ck_assert_msg(t >= 0, "no tensor %s", name);
    return arena_tensor(&e->params, t);
}

/* Head 0 of layer 0, (N, Dh), after prepare(step) and the forward, when
 * every raw row (any head, any token) is v (Dh). */
static float *rotated_rows(Encoding *e, const PeStep *step, const float *v)
{
    const PeGeometry *g = &e->pe.geo;
    const AttnDims d = {.B = 1, .N = 1 + g->grid_h * g->grid_w, .H = g->heads, .Dh = g->head_dim};
    if (e->pe.kind->prepare)
        e->pe.kind->prepare(&e->pe, e->params.data, step);
    float *x = gc_zeros((size_t)d.H * d.N * d.Dh); /* (B = 1, H, N, Dh) */
    for (int r = 0; r < d.H * d.N; r++)
        memcpy(x + (size_t)r * d.Dh, v, (size_t)d.Dh * sizeof(float));
    pe_forward_in_place(&e->pe, 0, x, &d);
    return x;
}

/* Token 1 + row * grid_w + col is the patch at (row, col) (pe.h). */
static const float *token_row(const float *rows, const PeGeometry *g, int row, int col)
{
    return rows + (size_t)(1 + row * g->grid_w + col) * g->head_dim;
}

/* A raw pair (1, 0) turned by t is (cos t, sin t) (DESIGN §4's pair
 * convention); checks channels (ch, ch + 1) of row against that. */
static void expect_turn(const float *row, int ch, double t, const char *what)
{
    ck_assert_msg(fabs(row[ch] - cos(t)) < ANGLE_TOLERANCE &&
                      fabs(row[ch + 1] - sin(t)) < ANGLE_TOLERANCE,
                  "%s: channels (%d, %d) are (%.6f, %.6f), a turn by %.6f gives (%.6f, %.6f)",
                  what, ch, ch + 1, row[ch], row[ch + 1], t, cos(t), sin(t));
}

/* ---- rope_axial (DESIGN §4.2) ---------------------------------------------- */

/* Dh 16 (4 pairs per axis), one head, one layer, a 4 x 4 grid; raw rows
 * with (1, 0) in every pair, so each pair shows its own turn. */
static float *axial_rows(Encoding *e)
{
    const PeOptions o = pe_options("rope_axial");
    const PeGeometry g = {.depth = 1, .heads = 1, .head_dim = 16, .grid_h = 4, .grid_w = 4,
                          .grid_h0 = 4, .grid_w0 = 4};
    encoding_create(e, &o, &g, 1);
    float v[16] = {0};
    for (int j = 0; j < 8; j++)
        v[2 * j] = 1.0f;
    const PeStep step = {.train = false};
    return rotated_rows(e, &step, v);
}

START_TEST(test_rope_axial_frequencies)
{
    /* w_k = 100^(-4k/Dh) = 100^(-k/4) at Dh = 16: 1, 10^-0.5, 10^-1,
     * 10^-1.5. On the diagonal patch x = y = 3 pair k and pair 4 + k both
     * turn by 3 w_k, whichever axis each follows. Base 10000 would give
     * 1, 0.1, 0.01, 0.001. */
    const double w[4] = {1.0, 0.316227766, 0.1, 0.0316227766};
    Encoding e;
    const float *rows = axial_rows(&e);
    const float *patch = token_row(rows, &e.pe.geo, 3, 3);
    for (int k = 0; k < 4; k++) {
        expect_turn(patch, 2 * k, 3.0 * w[k], "rope_axial x = y = 3, first half");
        expect_turn(patch, 2 * (4 + k), 3.0 * w[k], "rope_axial x = y = 3, second half");
    }
    encoding_free(&e);
}
END_TEST

START_TEST(test_rope_axial_axes)
{
    /* Pairs j < Dh/4 follow the column x, the rest the row y. Pair 0 and
     * pair Dh/4 have frequency w_0 = 1 whatever the base, so at the patch
     * (row 1, col 2) they turn by exactly x = 2 and y = 1. */
    Encoding e;
    const float *rows = axial_rows(&e);
    const float *patch = token_row(rows, &e.pe.geo, 1, 2);
    expect_turn(patch, 0, 2.0, "rope_axial pair 0 at column 2, row 1");
    expect_turn(patch, 2 * 4, 1.0, "rope_axial pair Dh/4 at column 2, row 1");
    encoding_free(&e);
}
END_TEST

/* ---- rope_mixed (DESIGN §4.3) ---------------------------------------------- */

enum { MIXED_DH = 16, MIXED_QUARTER = MIXED_DH / 4, MIXED_PAIRS = MIXED_DH / 2 };

/* freqs (2, depth, H*Dh/2) at init: [0] fx, [1] fy; depth 2, 2 heads. */
static const float *mixed_freqs(Encoding *e, int *tables)
{
    const PeOptions o = pe_options("rope_mixed");
    const PeGeometry g = {.depth = 2, .heads = 2, .head_dim = MIXED_DH, .grid_h = 3, .grid_w = 3,
                          .grid_h0 = 3, .grid_w0 = 3};
    encoding_create(e, &o, &g, 17);
    *tables = g.depth * g.heads;
    return encoding_tensor(e, "freqs");
}

START_TEST(test_rope_mixed_init_magnitudes)
{
    /* |(fx, fy)| of pair k and of pair Dh/4 + k is m_k = 10^(-4k/Dh) =
     * 10^(-k/4) at Dh = 16: 1, 10^-0.25, 10^-0.5, 10^-0.75. Base 100 would
     * give 1, 0.316, 0.1, 0.0316. */
    const double m[MIXED_QUARTER] = {1.0, 0.562341325, 0.316227766, 0.177827941};
    Encoding e;
    int tables;
    const float *fx = mixed_freqs(&e, &tables), *fy = fx + (size_t)tables * MIXED_PAIRS;
    for (int lh = 0; lh < tables; lh++)
        for (int j = 0; j < MIXED_PAIRS; j++) {
            const int at = lh * MIXED_PAIRS + j;
            const double got = hypot(fx[at], fy[at]);
            ck_assert_msg(fabs(got - m[j % MIXED_QUARTER]) < 1e-6,
                          "rope_mixed (layer, head) %d pair %d: |f| = %.7f, expected %.7f", lh, j,
                          got, m[j % MIXED_QUARTER]);
        }
    encoding_free(&e);
}
END_TEST

START_TEST(test_rope_mixed_init_quarter_turn)
{
    /* Pair Dh/4 + k is m_k (cos(a + pi/2), sin(a + pi/2)) = m_k (-sin a,
     * cos a), pair k is m_k (cos a, sin a): the second is the first turned
     * a quarter turn, (fx, fy) -> (-fy, fx). Without the pi/2 both halves
     * would point the same way, and then x and y would mix identically. */
    Encoding e;
    int tables;
    const float *fx = mixed_freqs(&e, &tables), *fy = fx + (size_t)tables * MIXED_PAIRS;
    for (int lh = 0; lh < tables; lh++)
        for (int k = 0; k < MIXED_QUARTER; k++) {
            const int first = lh * MIXED_PAIRS + k, second = first + MIXED_QUARTER;
            ck_assert_msg(fabs(fx[second] + fy[first]) < 1e-6 &&
                              fabs(fy[second] - fx[first]) < 1e-6,
                          "rope_mixed (layer, head) %d: pair %d is (%.6f, %.6f), pair %d "
                          "(%.6f, %.6f), not a quarter turn further",
                          lh, k, fx[first], fy[first], k + MIXED_QUARTER, fx[second], fy[second]);
        }
    encoding_free(&e);
}
END_TEST

/* ---- ComRoPE (DESIGN §4.5) ------------------------------------------------- */

enum { COM_B = 4 };

/* comrope_ap with b = 4, one layer, one head, and generators set by hand:
 * F[j] holds the single entry F[0][1] = 1, so S = F - F^T turns channels
 * (4j, 4j+1) and exp(c S) e_4j = (cos c, -sin c) (d/dc x0 = x1, d/dc x1 =
 * -x0): block j turns by -c, c its coordinate (row for even j, column for
 * odd j). */
static void comrope_create(Encoding *e, const PeGeometry *g, float sigma)
{
    PeOptions o = pe_options("comrope_ap");
    o.block_size = COM_B;
    o.sigma = sigma;
    encoding_create(e, &o, g, 1);
    const int blocks = g->head_dim / COM_B;
    float *F = encoding_tensor(e, "blocks.0.attn.freqs"); /* (H = 1, 1, Dh/b, b, b) */
    memset(F, 0, (size_t)blocks * COM_B * COM_B * sizeof(float));
    for (int j = 0; j < blocks; j++)
        F[(size_t)j * COM_B * COM_B + 1] = 1.0f;
}

/* Rows (N, Dh) of the hand-set encoding, raw rows e_0 + e_4 + ... (the
 * first channel of every block). */
static float *comrope_rows(Encoding *e, const PeStep *step)
{
    float v[64] = {0};
    for (int j = 0; j < e->pe.geo.head_dim / COM_B; j++)
        v[j * COM_B] = 1.0f;
    return rotated_rows(e, step, v);
}

/* Block j of a token follows coordinate c: checks the turn by -c. */
static void expect_coordinate(const float *row, int block, double c, const char *what)
{
    char label[128];
    snprintf(label, sizeof label, "%s, block %d (coordinate %.6f)", what, block, c);
    expect_turn(row, block * COM_B, -c, label);
}

/* Dh 16: four blocks, two per axis. */
static PeGeometry comrope_geometry(int gh, int gw, int gh0, int gw0)
{
    return (PeGeometry){.depth = 1, .heads = 1, .head_dim = 16, .grid_h = gh, .grid_w = gw,
                        .grid_h0 = gh0, .grid_w0 = gw0};
}

static const PeStep EVAL = {.train = false};

START_TEST(test_comrope_cls_position)
{
    /* The CLS token is rotated at (0.5, 0.5): every block turns by -0.5,
     * not left alone like the CLS of RoPE. */
    const PeGeometry g = comrope_geometry(3, 3, 3, 3);
    Encoding e;
    comrope_create(&e, &g, 0.0f);
    const float *cls = comrope_rows(&e, &EVAL);
    for (int j = 0; j < 4; j++)
        expect_coordinate(cls, j, 0.5, "comrope CLS");
    encoding_free(&e);
}
END_TEST

START_TEST(test_comrope_ap_axes)
{
    /* AP: even blocks follow the row, odd ones the column. Patch (row 0,
     * col 2) of a 3 x 3 grid is at ((0 + 0.5)/3, (2 + 0.5)/3) = (1/6, 5/6). */
    const PeGeometry g = comrope_geometry(3, 3, 3, 3);
    Encoding e;
    comrope_create(&e, &g, 0.0f);
    const float *patch = token_row(comrope_rows(&e, &EVAL), &g, 0, 2);
    const double row = 1.0 / 6.0, col = 5.0 / 6.0;
    for (int j = 0; j < 4; j++)
        expect_coordinate(patch, j, j % 2 == 0 ? row : col, "comrope_ap patch (0, 2)");
    encoding_free(&e);
}
END_TEST

START_TEST(test_comrope_interpolates)
{
    /* At a 4 x 5 grid trained at 2 x 3 the patch centres are divided by
     * the current grid, (r + 0.5)/4 and (c + 0.5)/5, and stay in (0, 1);
     * dividing by the training grid would put (3, 4) at (1.75, 1.5). */
    const PeGeometry g = comrope_geometry(4, 5, 2, 3);
    const struct {
        int row, col;
        double p_row, p_col;
    } cases[] = {{0, 0, 0.125, 0.1}, {1, 2, 0.375, 0.5}, {3, 4, 0.875, 0.9}};
    Encoding e;
    comrope_create(&e, &g, 0.0f);
    const float *rows = comrope_rows(&e, &EVAL);
    for (int i = 0; i < 3; i++) {
        const float *patch = token_row(rows, &g, cases[i].row, cases[i].col);
        expect_coordinate(patch, 0, cases[i].p_row, "comrope at a new grid, row");
        expect_coordinate(patch, 1, cases[i].p_col, "comrope at a new grid, column");
    }
    encoding_free(&e);
}
END_TEST

/* ---- the training perturbation -------------------------------------------- */

enum { PERTURB_GRID = 8, PERTURB_STEPS = 40 };

typedef struct Shifts {
    int n;
    double sd;           /* about 0: the root mean square */
    double max_abs;
    double at_clamp;     /* fraction with |shift| at 0.5 */
} Shifts;

/* The shifts, in patches, of every patch's row and column over
 * PERTURB_STEPS training steps: coordinate * g - (index + 0.5), read back
 * from blocks 0 (row) and 1 (column) as angles. */
static Shifts perturbation_shifts(float sigma)
{
    const PeGeometry g = comrope_geometry(PERTURB_GRID, PERTURB_GRID, PERTURB_GRID, PERTURB_GRID);
    Encoding e;
    comrope_create(&e, &g, sigma);
    Shifts s = {0};
    double sum2 = 0.0;
    for (int step = 1; step <= PERTURB_STEPS; step++) {
        const PeStep train = {.train = true, .step = step, .seed = 5};
        const float *rows = comrope_rows(&e, &train);
        for (int t = 1; t <= PERTURB_GRID * PERTURB_GRID; t++)
            for (int axis = 0; axis < 2; axis++) {
                const float *pair = rows + (size_t)t * g.head_dim + axis * COM_B;
                const double c = atan2(-pair[1], pair[0]); /* in [0, 1]: no wrap */
                const int index = axis == 0 ? pe_row(&g, t) : pe_col(&g, t);
                const double shift = c * PERTURB_GRID - (index + 0.5);
                sum2 += shift * shift;
                s.max_abs = fmax(s.max_abs, fabs(shift));
                s.at_clamp += fabs(shift) > 0.5 - 1e-4;
                s.n++;
            }
    }
    encoding_free(&e);
    s.sd = sqrt(sum2 / s.n);
    s.at_clamp /= s.n;
    return s;
}

/* Standard deviation of clamp(N(0, sd^2), -h, h), with c = h/sd:
 * E[Z^2; |Z| < c] = erf(c/sqrt2) - 2 c phi(c), plus c^2 P(|Z| > c). */
static double clamped_normal_sd(double sd, double h)
{
    const double c = h / sd, phi = exp(-0.5 * c * c) / sqrt(2.0 * M_PI);
    const double tail = erfc(c / sqrt(2.0));
    return sd * sqrt(erf(c / sqrt(2.0)) - 2.0 * c * phi + c * c * tail);
}

START_TEST(test_comrope_perturbation)
{
    /* DESIGN §4.5: shifts clamp(N(0, (0.5 sigma)^2), -0.5, 0.5) patches.
     * 64 patches x 2 axes x 40 steps = 5120 draws (fixed seeds, so the
     * test is deterministic; the tolerances say how far luck could take a
     * correct encoding).
     * sigma 0.4: sd 0.2, clamped at 2.5 sd, expected sd 0.1977. The sample
     * sd's standard error is about sd / sqrt(2n) = 1%: 5% is 5 of them,
     * while sd sigma (0.326 after the clamp) or 0.25 sigma (0.1) is off
     * by about half. */
    const Shifts narrow = perturbation_shifts(0.4f);
    const double expected = clamped_normal_sd(0.2, 0.5);
    printf("comrope perturbation sigma 0.4: sd %.4f, expected %.4f (n %d)\n", narrow.sd, expected,
           narrow.n);
    ck_assert_msg(fabs(narrow.sd / expected - 1.0) < 0.05,
                  "sigma 0.4: shift sd %.4f, expected %.4f", narrow.sd, expected);
    /* sigma 4: sd 2, so the clamp binds for P(|Z| > 0.25) = 80.3% of the
     * draws. No shift may pass 0.5 (atan2 and fp32 positions are good to
     * 1e-5 patches), and the share at +-0.5 is within 0.03 (5 standard
     * errors of a proportion of 5120 draws) of 80.3%: a clamp at 0.25
     * would leave none there. */
    const Shifts wide = perturbation_shifts(4.0f);
    const double clamped = erfc(0.25 / sqrt(2.0));
    printf("comrope perturbation sigma 4: max |shift| %.6f, %.3f at the clamp, expected %.3f\n",
           wide.max_abs, wide.at_clamp, clamped);
    ck_assert_msg(wide.max_abs < 0.5 + 1e-4, "sigma 4: a shift of %.4f patches passes the clamp",
                  wide.max_abs);
    ck_assert_msg(fabs(wide.at_clamp - clamped) < 0.03,
                  "sigma 4: %.3f of shifts at +-0.5, expected %.3f", wide.at_clamp, clamped);
}
END_TEST

/* ---- initial distributions ------------------------------------------------ */

typedef struct Moments {
    double min, max, mean, sd;
} Moments;

static Moments moments(const float *x, size_t n)
{
    Moments m = {.min = x[0], .max = x[0]};
    double sum = 0.0, sum2 = 0.0;
    for (size_t i = 0; i < n; i++) {
        m.min = fmin(m.min, x[i]);
        m.max = fmax(m.max, x[i]);
        sum += x[i];
        sum2 += (double)x[i] * x[i];
    }
    m.mean = sum / n;
    m.sd = sqrt(sum2 / n - m.mean * m.mean);
    return m;
}

START_TEST(test_liere_init_uniform)
{
    /* U[0, 2 pi): 4096 draws (Dh 64, b 8, 2 heads, 2 layers, 2 axes).
     * Mean pi and sd 2 pi / sqrt(12) = 1.814, standard errors 0.028 and
     * about 0.013: tolerances 0.15 and 0.07 are five of them. The extremes
     * come within 0.05 of both ends unless the range is wrong (chance
     * (1 - 0.05 / 2 pi)^4096 ~ 1e-14 for a correct one). */
    const PeOptions o = pe_options("liere");
    const PeGeometry g = {.depth = 2, .heads = 2, .head_dim = 64, .grid_h = 3, .grid_w = 3,
                          .grid_h0 = 3, .grid_w0 = 3};
    Encoding e;
    encoding_create(&e, &o, &g, 23);
    const int t = tensor_list_find(&e.list, "position_encoder.generator_raw_params");
    ck_assert_int_eq(e.list.specs[t].numel, 4096);
    const Moments m = moments(arena_tensor(&e.params, t), e.list.specs[t].numel);
    printf("liere init: min %.4f max %.4f mean %.4f sd %.4f\n", m.min, m.max, m.mean, m.sd);
    ck_assert_msg(m.min >= 0.0 && m.max <= (float)(2.0 * M_PI), "range [%.4f, %.4f]", m.min, m.max);
    ck_assert_msg(m.min < 0.05 && m.max > 2.0 * M_PI - 0.05, "range [%.4f, %.4f]", m.min, m.max);
    ck_assert_msg(fabs(m.mean - M_PI) < 0.15, "mean %.4f, expected pi", m.mean);
    ck_assert_msg(fabs(m.sd - 2.0 * M_PI / sqrt(12.0)) < 0.07, "sd %.4f, expected 1.8138", m.sd);
    encoding_free(&e);
}
END_TEST

START_TEST(test_comrope_ld_multiplier_init)
{
    /* multiplier (1, 2, Dh/b, 1, 1) ~ N(0, 1) per layer, whatever
     * pe.init_std (0.5 here, the freqs' std): 64 layers x 2 x 16 = 2048
     * draws. Standard errors 1/sqrt(n) = 0.022 (mean) and 1/sqrt(2n) =
     * 0.016 (sd): tolerances 0.11 and 0.08 are five of them. */
    PeOptions o = pe_options("comrope_ld");
    o.block_size = 4;
    const PeGeometry g = {.depth = 64, .heads = 1, .head_dim = 64, .grid_h = 2, .grid_w = 2,
                          .grid_h0 = 2, .grid_w0 = 2};
    Encoding e;
    encoding_create(&e, &o, &g, 29);
    float *all = gc_zeros((size_t)g.depth * 32);
    for (int l = 0; l < g.depth; l++) {
        char name[64];
        snprintf(name, sizeof name, "blocks.%d.attn.multiplier", l);
        memcpy(all + (size_t)l * 32, encoding_tensor(&e, name), 32 * sizeof(float));
    }
    const Moments m = moments(all, (size_t)g.depth * 32);
    printf("comrope_ld multiplier init: mean %.4f sd %.4f\n", m.mean, m.sd);
    ck_assert_msg(fabs(m.mean) < 0.11, "mean %.4f, expected 0", m.mean);
    ck_assert_msg(fabs(m.sd - 1.0) < 0.08, "sd %.4f, expected 1", m.sd);
    encoding_free(&e);
}
END_TEST

Suite *pe_conventions_suite(void)
{
    Suite *s = suite_create("pe_conventions");
    TCase *tc = tcase_with_timeout("conventions", 30, NULL);
    tcase_add_checked_fixture(tc, NULL, gc_free_all);
    tcase_add_test(tc, test_rope_axial_frequencies);
    tcase_add_test(tc, test_rope_axial_axes);
    tcase_add_test(tc, test_rope_mixed_init_magnitudes);
    tcase_add_test(tc, test_rope_mixed_init_quarter_turn);
    tcase_add_test(tc, test_comrope_cls_position);
    tcase_add_test(tc, test_comrope_ap_axes);
    tcase_add_test(tc, test_comrope_interpolates);
    tcase_add_test(tc, test_comrope_perturbation);
    tcase_add_test(tc, test_liere_init_uniform);
    tcase_add_test(tc, test_comrope_ld_multiplier_init);
    suite_add_tcase(s, tc);
    return s;
}
