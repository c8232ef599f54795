/*
 * test_core.c - the core and optim modules: tensor lists and arenas, the
 * random streams, the learning-rate schedule, AdamW with gradient clipping,
 * and the thread-count independence of the gradient norm.
 *
 * Every expected value is computed here, in double, from the formula the
 * header promises (or from a property such as "is a permutation"); none is
 * a number printed by the code under test. The seeds are fixed; statistical
 * checks state their tolerance in standard errors, wide enough that a correct
 * generator would fail under one seed in a million.
 */
#include "suites.h"

#include "vitrain/optim.h"
#include "vitrain/parallel.h"
#include "vitrain/profile.h"
#include "vitrain/rng.h"
#include "vitrain/tensor.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- tensor lists and arenas ---------------------------------------- */

static TensorList layout_list(void)
{
    TensorList list;
    tensor_list_init(&list);
    const int64_t a[] = {3}, b[] = {4, 5}, c[] = {17}, d[] = {2, 3, 4}, e[] = {16};
    tensor_list_add(&list, a, 1, 0, INIT_ZEROS, 0.0f, "tiny");
    tensor_list_add(&list, b, 2, VT_TENSOR_NO_DECAY, INIT_ONES, 0.0f, "blocks.%d.w", 0);
    tensor_list_add(&list, c, 1, 0, INIT_NORMAL, 0.02f, "blocks.%d.w", 1);
    tensor_list_add(&list, d, 3, 0, INIT_CONST, 0.5f, "blocks.%d.%s", 1, "bias");
    tensor_list_add(&list, e, 1, 0, INIT_ZEROS, 0.0f, "exact16");
    return list;
}

static size_t product(const int64_t *shape, int ndim)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)shape[i];
    return n;
}

START_TEST(test_tensor_list_offsets)
{
    TensorList list = layout_list();
    ck_assert_int_eq(list.count, 5);
    for (int i = 0; i < list.count; i++) {
        const TensorSpec *s = &list.specs[i];
        ck_assert_uint_eq(s->numel, product(s->shape, s->ndim));
        ck_assert_msg(s->offset % 16 == 0, "%s: offset %zu not 16-aligned", s->name, s->offset);
        ck_assert_msg(s->offset + s->numel <= list.total, "%s runs past total", s->name);
        for (int j = 0; j < i; j++) {
            const TensorSpec *o = &list.specs[j];
            int disjoint = s->offset >= o->offset + o->numel || o->offset >= s->offset + s->numel;
            ck_assert_msg(disjoint, "%s overlaps %s", s->name, o->name);
        }
    }
    /* Sizes rounded up to 16: 16 + 32 + 32 + 32 + 16. */
    ck_assert_uint_eq(list.total, 128);
    tensor_list_free(&list);
}
END_TEST

START_TEST(test_tensor_list_find)
{
    TensorList list = layout_list();
    ck_assert_int_eq(tensor_list_find(&list, "tiny"), 0);
    ck_assert_int_eq(tensor_list_find(&list, "blocks.0.w"), 1);
    ck_assert_int_eq(tensor_list_find(&list, "blocks.1.w"), 2);
    ck_assert_int_eq(tensor_list_find(&list, "blocks.1.bias"), 3);
    ck_assert_int_eq(tensor_list_find(&list, "exact16"), 4);
    ck_assert_int_eq(tensor_list_find(&list, "blocks.1"), -1);
    ck_assert_int_eq(tensor_list_find(&list, "blocks.1.w.x"), -1);
    ck_assert_int_eq(tensor_list_find(&list, ""), -1);
    ck_assert_str_eq(list.specs[3].name, "blocks.1.bias");
    ck_assert_uint_eq(list.specs[1].flags, VT_TENSOR_NO_DECAY);
    tensor_list_free(&list);
}
END_TEST

START_TEST(test_arena_layout)
{
    TensorList list = layout_list();
    Arena arena;
    arena_create(&arena, &list);
    ck_assert_ptr_eq(arena.list, &list);
    ck_assert_msg((uintptr_t)arena.data % 64 == 0, "arena data not 64-byte aligned");
    for (int i = 0; i < list.count; i++)
        ck_assert_ptr_eq(arena_tensor(&arena, i), arena.data + list.specs[i].offset);
    memset(arena.data, 0x7f, list.total * sizeof(float));
    arena_zero(&arena);
    for (size_t i = 0; i < list.total; i++)
        ck_assert_msg(arena.data[i] == 0.0f, "element %zu not zeroed by arena_zero", i);
    arena_free(&arena);
    tensor_list_free(&list);
}
END_TEST

START_TEST(test_arena_create_zeroes)
{
    /* Fresh heap memory is zero anyway, so first free a dirty block that
     * the arena will be carved from: 64 KiB is below glibc's mmap
     * threshold, and the guard allocated after it keeps it from merging
     * into the top of the heap (which could be trimmed and come back
     * clean). Freeing a dirty arena instead does not work: aligned_alloc
     * asks for more than the freed block holds. */
    enum { DIRTY_BYTES = 64 * 1024 };
    unsigned char *dirty = malloc(DIRTY_BYTES);
    void *guard = malloc(64);
    ck_assert(dirty && guard);
    memset(dirty, 0x7f, DIRTY_BYTES);
    free(dirty);

    TensorList list;
    tensor_list_init(&list);
    const int64_t shape[] = {64, 64};
    tensor_list_add(&list, shape, 2, 0, INIT_ZEROS, 0.0f, "big");
    Arena arena;
    arena_create(&arena, &list);
    for (size_t i = 0; i < list.total; i++)
        ck_assert_msg(arena.data[i] == 0.0f, "element %zu not zeroed", i);
    arena_free(&arena);
    tensor_list_free(&list);
    free(guard);
}
END_TEST

/* ---- random streams ------------------------------------------------- */

/* True if the first 8 outputs of the two streams are all equal. */
static int same_stream(Rng x, Rng y)
{
    for (int i = 0; i < 8; i++)
        if (rng_next_u64(&x) != rng_next_u64(&y))
            return 0;
    return 1;
}

START_TEST(test_rng_keys)
{
    Rng base = rng_stream(1, RNG_TEST, 2, 3);
    ck_assert(same_stream(base, rng_stream(1, RNG_TEST, 2, 3)));
    ck_assert(!same_stream(base, rng_stream(2, RNG_TEST, 2, 3)));
    ck_assert(!same_stream(base, rng_stream(1, RNG_AUGMENT, 2, 3)));
    ck_assert(!same_stream(base, rng_stream(1, RNG_TEST, 4, 3)));
    ck_assert(!same_stream(base, rng_stream(1, RNG_TEST, 2, 4)));
    ck_assert(!same_stream(base, rng_stream(1, RNG_TEST, 3, 2)));
    ck_assert(!same_stream(rng_stream(0, RNG_INIT, 1, 0), rng_stream(0, RNG_INIT, 0, 1)));
    /* Drawing from one stream does not move another. */
    Rng x = rng_stream(7, RNG_DATA_ORDER, 0, 0), y = x;
    Rng other = rng_stream(7, RNG_DATA_ORDER, 1, 0);
    for (int i = 0; i < 100; i++)
        rng_next_u64(&other);
    ck_assert(same_stream(x, y));
}
END_TEST

START_TEST(test_rng_uniform)
{
    enum { N = 100000 };
    Rng rng = rng_stream(11, RNG_TEST, 0, 0);
    double sum = 0.0;
    for (int i = 0; i < N; i++) {
        float u = rng_uniform(&rng);
        double d = rng_uniform_double(&rng);
        ck_assert_msg(u >= 0.0f && u < 1.0f, "rng_uniform gave %.9g", u);
        ck_assert_msg(d >= 0.0 && d < 1.0, "rng_uniform_double gave %.17g", d);
        sum += u;
    }
    /* Standard error of the mean: sqrt(1/12 / N) = 9.1e-4; 0.005 is 5.5 of them. */
    double mean = sum / N;
    ck_assert_msg(fabs(mean - 0.5) < 0.005, "uniform mean %.6f", mean);
}
END_TEST

START_TEST(test_rng_normal)
{
    enum { N = 200000 };
    Rng rng = rng_stream(12, RNG_TEST, 0, 0);
    double sum = 0.0, sum_sq = 0.0;
    for (int i = 0; i < N; i++) {
        double z = rng_normal(&rng);
        ck_assert(isfinite(z));
        sum += z;
        sum_sq += z * z;
    }
    double mean = sum / N, var = sum_sq / N - mean * mean;
    /* Standard errors: mean 1/sqrt(N) = 2.2e-3, variance sqrt(2/N) = 3.2e-3;
     * both tolerances are about 5.5 standard errors. */
    ck_assert_msg(fabs(mean) < 0.012, "normal mean %.6f", mean);
    ck_assert_msg(fabs(var - 1.0) < 0.018, "normal variance %.6f", var);
}
END_TEST

/* Variance of N(0, std^2) truncated to [-2, 2] (absolute bounds, c = 2 /
 * std of them): std^2 (1 - 2 c phi(c) / (Phi(c) - Phi(-c))). */
static double trunc_normal_variance(double std)
{
    const double c = 2.0 / std, phi = exp(-0.5 * c * c) / sqrt(2.0 * acos(-1.0));
    return std * std * (1.0 - 2.0 * c * phi / erf(c / sqrt(2.0)));
}

START_TEST(test_rng_trunc_normal)
{
    /* timm's std 0.02, where the bounds never bind (bounds of 2 std would
     * give 0.774 of the variance), and std 1.5, where they cut at 1.33 std
     * (0.465 of it; clamping instead of rejecting would give 0.706). The
     * standard error of the variance is at most sqrt(2 / N) of it, 4.5e-3;
     * 0.025 of it is 5.6 of them. */
    enum { N = 100000 };
    const double stds[] = {0.02, 1.5};
    for (int k = 0; k < 2; k++) {
        Rng rng = rng_stream(13, RNG_TEST, (uint64_t)k, 0);
        double sum_sq = 0.0;
        for (int i = 0; i < N; i++) {
            double x = rng_trunc_normal(&rng, stds[k]);
            ck_assert_msg(x >= -2.0 && x <= 2.0, "trunc normal gave %.17g", x);
            sum_sq += x * x;
        }
        const double var = sum_sq / N, want = trunc_normal_variance(stds[k]);
        ck_assert_msg(fabs(var / want - 1.0) < 0.025, "std %g: variance %.6g, want %.6g",
                      stds[k], var, want);
    }
}
END_TEST

START_TEST(test_rng_below)
{
    enum { N = 70000, K = 7 };
    Rng rng = rng_stream(14, RNG_TEST, 0, 0);
    long counts[K] = {0};
    for (int i = 0; i < N; i++) {
        uint32_t v = rng_below(&rng, K);
        ck_assert_uint_lt(v, K);
        counts[v]++;
    }
    /* Chi-square with 6 degrees of freedom: P(X > 40) = e^-20 (1 + 20 + 200)
     * = 4.6e-7 for a uniform generator. */
    double chi2 = 0.0, expect = (double)N / K;
    for (int k = 0; k < K; k++)
        chi2 += (counts[k] - expect) * (counts[k] - expect) / expect;
    ck_assert_msg(chi2 < 40.0, "chi-square %.2f over %d buckets", chi2, K);
    for (int i = 0; i < 100; i++)
        ck_assert_uint_eq(rng_below(&rng, 1), 0);
}
END_TEST

START_TEST(test_rng_below_no_bias)
{
    /* n = 3 * 2^30 shows both classic biases of 32 random bits: `x % n`
     * lands below 2^30 half the time instead of a third, and a
     * multiply-shift without rejection, floor(3x/4), gives multiples of 3
     * half the time instead of a third. Standard error sqrt(2/9/N) = 4.7e-3;
     * the tolerance 0.03 is 6 of them and far from 1/6. */
    enum { N = 10000 };
    const uint32_t n = 3u << 30;
    Rng rng = rng_stream(15, RNG_TEST, 0, 0);
    int low = 0, mult3 = 0;
    for (int i = 0; i < N; i++) {
        uint32_t v = rng_below(&rng, n);
        ck_assert_uint_lt(v, n);
        low += v < (1u << 30);
        mult3 += v % 3 == 0;
    }
    double frac_low = (double)low / N, frac_mult3 = (double)mult3 / N;
    ck_assert_msg(fabs(frac_low - 1.0 / 3.0) < 0.03, "fraction below 2^30: %.4f", frac_low);
    ck_assert_msg(fabs(frac_mult3 - 1.0 / 3.0) < 0.03, "fraction of multiples of 3: %.4f",
                  frac_mult3);
}
END_TEST

START_TEST(test_rng_shuffle)
{
    enum { N = 100 };
    int values[N], seen[N] = {0};
    for (int i = 0; i < N; i++)
        values[i] = i;
    Rng rng = rng_stream(16, RNG_TEST, 0, 0);
    rng_shuffle(&rng, values, N);
    int moved = 0;
    for (int i = 0; i < N; i++) {
        ck_assert_int_ge(values[i], 0);
        ck_assert_int_lt(values[i], N);
        ck_assert_msg(!seen[values[i]], "value %d appears twice", values[i]);
        seen[values[i]] = 1;
        moved += values[i] != i;
    }
    /* A uniform permutation of 100 has on average 1 fixed point. */
    ck_assert_int_gt(moved, N / 2);
    int one = 5;
    rng_shuffle(&rng, &one, 1);
    ck_assert_int_eq(one, 5);
    rng_shuffle(&rng, NULL, 0);
}
END_TEST

START_TEST(test_rng_shuffle_uniform)
{
    /* All 6 orders of 3 values equally likely. Chi-square with 5 degrees of
     * freedom is below one with 6, so P(X > 40) < 4.6e-7 (see test_rng_below). */
    enum { N = 60000, PERMS = 6 };
    Rng rng = rng_stream(17, RNG_TEST, 0, 0);
    long counts[PERMS] = {0};
    for (int i = 0; i < N; i++) {
        int v[3] = {0, 1, 2};
        rng_shuffle(&rng, v, 3);
        ck_assert_int_eq(v[0] + v[1] + v[2], 3);
        ck_assert(v[0] != v[1] && v[1] != v[2] && v[0] != v[2]);
        counts[2 * v[0] + (v[1] > v[2])]++;
    }
    double chi2 = 0.0, expect = (double)N / PERMS;
    for (int k = 0; k < PERMS; k++)
        chi2 += (counts[k] - expect) * (counts[k] - expect) / expect;
    ck_assert_msg(chi2 < 40.0, "chi-square %.2f over %d orders", chi2, PERMS);
}
END_TEST

/* ---- learning-rate schedule ----------------------------------------- */

/* lr_at_step returns a float: a few float operations, 1e-6 relative. */
static void check_lr(const LrSchedule *s, int64_t step, double want)
{
    double got = lr_at_step(s, step);
    ck_assert_msg(fabs(got - want) <= 1e-6 * fabs(want), "step %lld: lr %.9g, want %.9g",
                  (long long)step, got, want);
}

START_TEST(test_lr_warmup_cosine)
{
    const LrSchedule s = {.lr = 1e-3f, .min_lr = 1e-5f, .warmup_lr = 1e-6f,
                          .warmup_steps = 10, .total_steps = 110};
    const double lr = s.lr, min = s.min_lr, w = s.warmup_lr;
    check_lr(&s, 0, w);
    check_lr(&s, 5, (w + lr) / 2.0);
    check_lr(&s, 9, w + (lr - w) * 0.9);
    check_lr(&s, 10, lr);
    /* Cosine over the 100 steps after warmup: a quarter of the way,
     * cos(pi/4) = sqrt(1/2); half way, the mean of lr and min_lr. */
    check_lr(&s, 35, min + (lr - min) * (1.0 + sqrt(0.5)) / 2.0);
    check_lr(&s, 60, (lr + min) / 2.0);
    check_lr(&s, 85, min + (lr - min) * (1.0 - sqrt(0.5)) / 2.0);
    check_lr(&s, 110, min);
    check_lr(&s, 111, min);
    check_lr(&s, 100000, min);
    for (int64_t t = 11; t <= 110; t++)
        ck_assert_msg(lr_at_step(&s, t) <= lr_at_step(&s, t - 1), "lr rises at step %lld",
                      (long long)t);
}
END_TEST

START_TEST(test_lr_no_warmup)
{
    const LrSchedule s = {.lr = 0.5f, .min_lr = 0.0f, .warmup_lr = 0.0f,
                          .warmup_steps = 0, .total_steps = 40};
    const double lr = s.lr, pi = acos(-1.0);
    check_lr(&s, 0, lr);
    check_lr(&s, 10, lr * (1.0 + sqrt(0.5)) / 2.0);
    check_lr(&s, 20, lr / 2.0);
    check_lr(&s, 13, 0.5 * lr * (1.0 + cos(pi * 13.0 / 40.0)));
    ck_assert(lr_at_step(&s, 40) == 0.0f);
    ck_assert(lr_at_step(&s, 41) == 0.0f);
}
END_TEST

/* ---- AdamW ---------------------------------------------------------- */

enum { OPT_STEPS = 5 };

/* Two tensors: "w" is decayed, "b" is not. 15 + 7 elements, 32 with padding. */
static TensorList opt_list(void)
{
    TensorList list;
    tensor_list_init(&list);
    const int64_t w[] = {3, 5}, b[] = {7};
    tensor_list_add(&list, w, 2, 0, INIT_ZEROS, 0.0f, "w");
    tensor_list_add(&list, b, 1, VT_TENSOR_NO_DECAY, INIT_ZEROS, 0.0f, "b");
    return list;
}

/* The reference optimizer: torch.optim.AdamW in double over the flat arena. */
typedef struct RefAdamW {
    size_t n;
    double *p, *m, *v, *wd;
    int64_t t;
} RefAdamW;

static RefAdamW ref_create(const Arena *params, double weight_decay)
{
    const TensorList *list = params->list;
    RefAdamW r = {.n = list->total, .t = 0};
    r.p = calloc(r.n, sizeof(double));
    r.m = calloc(r.n, sizeof(double));
    r.v = calloc(r.n, sizeof(double));
    r.wd = calloc(r.n, sizeof(double));
    ck_assert(r.p && r.m && r.v && r.wd);
    for (size_t i = 0; i < r.n; i++)
        r.p[i] = params->data[i];
    for (int k = 0; k < list->count; k++) {
        const TensorSpec *s = &list->specs[k];
        for (size_t i = 0; i < s->numel; i++)
            r.wd[s->offset + i] = (s->flags & VT_TENSOR_NO_DECAY) ? 0.0 : weight_decay;
    }
    return r;
}

static void ref_free(RefAdamW *r)
{
    free(r->p);
    free(r->m);
    free(r->v);
    free(r->wd);
}

/* One step on gradients g * scale. The hyperparameters are the float values
 * the library was given, widened to double. */
static void ref_step(RefAdamW *r, const AdamWConfig *c, const float *g, double scale, double lr)
{
    const double b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    r->t++;
    const double bias1 = 1.0 - pow(b1, (double)r->t), bias2 = 1.0 - pow(b2, (double)r->t);
    for (size_t i = 0; i < r->n; i++) {
        double gi = g[i] * scale;
        r->p[i] -= lr * r->wd[i] * r->p[i];
        r->m[i] = b1 * r->m[i] + (1.0 - b1) * gi;
        r->v[i] = b2 * r->v[i] + (1.0 - b2) * gi * gi;
        r->p[i] -= lr / bias1 * r->m[i] / (sqrt(r->v[i]) / sqrt(bias2) + eps);
    }
}

/* LAMB's step (timm's Lamb), tensor by tensor: a decayed tensor's update
 * u = m_hat / (sqrt(v_hat) + eps) + wd p is scaled by ||p|| / ||u||; the
 * others take the AdamW step (their wd is 0). */
static void ref_lamb_step(RefAdamW *r, const TensorList *list, const AdamWConfig *c,
                          const float *g, double scale, double lr)
{
    const double b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    r->t++;
    const double bias1 = 1.0 - pow(b1, (double)r->t), bias2 = 1.0 - pow(b2, (double)r->t);
    for (int k = 0; k < list->count; k++) {
        const TensorSpec *s = &list->specs[k];
        double *p = r->p + s->offset, *m = r->m + s->offset, *v = r->v + s->offset;
        const double wd = r->wd[s->offset];
        double *u = calloc(s->numel, sizeof(double)), pp = 0.0, uu = 0.0;
        for (size_t i = 0; i < s->numel; i++) {
            const double gi = g[s->offset + i] * scale;
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            u[i] = m[i] / bias1 / (sqrt(v[i]) / sqrt(bias2) + eps) + wd * p[i];
            pp += p[i] * p[i];
            uu += u[i] * u[i];
        }
        const double ratio = wd > 0.0 && pp > 0.0 && uu > 0.0 ? sqrt(pp / uu) : 1.0;
        for (size_t i = 0; i < s->numel; i++)
            p[i] -= lr * ratio * u[i];
        free(u);
    }
}

/* Parameters of either sign with magnitude in [0.5, 1.5), so that a relative
 * tolerance is never measured against a value near zero. */
static void fill_params(Arena *params)
{
    const TensorList *list = params->list;
    Rng rng = rng_stream(21, RNG_TEST, 0, 0);
    for (int k = 0; k < list->count; k++) {
        float *p = arena_tensor(params, k);
        for (size_t i = 0; i < list->specs[k].numel; i++) {
            double mag = 0.5 + rng_uniform_double(&rng);
            p[i] = (float)(rng_below(&rng, 2) ? mag : -mag);
        }
    }
}

static void fill_grads(Arena *grads, double std, int64_t step)
{
    const TensorList *list = grads->list;
    for (int k = 0; k < list->count; k++) {
        Rng rng = rng_stream(22, RNG_TEST, (uint64_t)step, (uint64_t)k);
        float *g = arena_tensor(grads, k);
        for (size_t i = 0; i < list->specs[k].numel; i++)
            g[i] = (float)(std * rng_normal(&rng));
    }
}

static double l2_norm(const float *x, size_t n)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += (double)x[i] * x[i];
    return sqrt(sum);
}

/* The library computes in float: each step rounds p to float (6e-8
 * relative), and the update (about lr = 1e-2, against |p| >= 0.5) carries
 * float error in m, v and the bias corrections, at most ~1e-5 of itself.
 * Together that stays under 1e-6 of |p| over 5 steps, while a missing or
 * misplaced weight decay (lr*wd = 5e-4 of p), a wrong bias correction or an
 * unclipped gradient moves p by 1e-4 or more. */
static void compare_params(const Arena *params, const RefAdamW *r, int64_t step)
{
    for (size_t i = 0; i < r->n; i++) {
        double got = params->data[i], want = r->p[i];
        ck_assert_msg(fabs(got - want) <= 1e-6 * fabs(want),
                      "step %lld, element %zu: p = %.9g, want %.9g", (long long)step, i, got,
                      want);
    }
}

/* Runs OPT_STEPS steps of adamw_step next to the reference, with gradients of
 * standard deviation grad_std[step] and learning rate varying per step.
 * Returns how many steps were clipped. */
static int run_against_reference(const AdamWConfig *cfg, const double *grad_std)
{
    TensorList list = opt_list();
    Arena params, grads;
    arena_create(&params, &list);
    arena_create(&grads, &list);
    fill_params(&params);
    AdamW opt;
    adamw_create(&opt, &list, cfg);
    RefAdamW ref = ref_create(&params, cfg->weight_decay);
    int clipped = 0;
    for (int64_t step = 0; step < OPT_STEPS; step++) {
        fill_grads(&grads, grad_std[step], step);
        const float lr = 1e-2f * (1.0f + 0.25f * (float)step);
        const double norm = l2_norm(grads.data, list.total);
        double got = adamw_step(&opt, &params, &grads, lr);
        ck_assert_msg(fabs(got - norm) <= 1e-12 * norm, "step %lld: norm %.17g, want %.17g",
                      (long long)step, got, norm);
        double scale = 1.0;
        if (cfg->clip_grad > 0.0f && norm > cfg->clip_grad) {
            scale = cfg->clip_grad / (norm + 1e-6);
            clipped++;
        }
        if (cfg->lamb)
            ref_lamb_step(&ref, &list, cfg, grads.data, scale, lr);
        else
            ref_step(&ref, cfg, grads.data, scale, lr);
        compare_params(&params, &ref, step);
    }
    ck_assert_int_eq(opt.t, OPT_STEPS);
    ref_free(&ref);
    adamw_free(&opt);
    arena_free(&grads);
    arena_free(&params);
    tensor_list_free(&list);
    return clipped;
}

START_TEST(test_adamw_reference)
{
    AdamWConfig cfg = adamw_defaults();
    ck_assert(cfg.beta1 == 0.9f && cfg.beta2 == 0.999f && cfg.eps == 1e-8f);
    ck_assert(cfg.weight_decay == 0.05f && cfg.clip_grad == 0.0f);
    /* Varying gradient scales: Adam is nearly invariant to one constant scale. */
    const double std[OPT_STEPS] = {1.0, 0.3, 2.0, 0.05, 1.0};
    ck_assert_int_eq(run_against_reference(&cfg, std), 0);
}
END_TEST

START_TEST(test_adamw_clipping)
{
    AdamWConfig cfg = adamw_defaults();
    cfg.clip_grad = 0.5f;
    /* 22 elements: std 1 gives a norm near 4.7 (clipped), std 0.01 near 0.05
     * (not clipped). Mixing both matters: a constant clipping factor would
     * hardly change Adam's update, so only the mix shows a missed clip. */
    const double std[OPT_STEPS] = {1.0, 0.01, 2.0, 0.02, 0.5};
    int clipped = run_against_reference(&cfg, std);
    ck_assert_msg(clipped > 0 && clipped < OPT_STEPS, "%d of %d steps clipped", clipped,
                  OPT_STEPS);
}
END_TEST

START_TEST(test_lamb_reference)
{
    AdamWConfig cfg = adamw_defaults();
    cfg.lamb = true;
    cfg.clip_grad = 0.5f;
    const double std[OPT_STEPS] = {1.0, 0.01, 2.0, 0.02, 0.5};
    ck_assert_int_gt(run_against_reference(&cfg, std), 0);
}
END_TEST

/* LAMB moves each decayed tensor by lr times its own norm, whatever the
 * gradient's scale (the point of the trust ratio); a tensor without decay
 * takes the AdamW step. Gradients a million times apart give the same
 * relative move. */
START_TEST(test_lamb_moves_each_tensor_by_lr_of_its_norm)
{
    const double scales[2] = {1e-3, 1e3};
    for (int k = 0; k < 2; k++) {
        TensorList list = opt_list();
        Arena params, grads;
        arena_create(&params, &list);
        arena_create(&grads, &list);
        fill_params(&params);
        fill_grads(&grads, scales[k], 0);
        AdamWConfig cfg = adamw_defaults();
        cfg.lamb = true;
        AdamW opt;
        adamw_create(&opt, &list, &cfg);
        const float *w = arena_tensor(&params, 0); /* "w", decayed */
        const size_t n = list.specs[0].numel;
        float before[16];
        memcpy(before, w, n * sizeof(float));
        const float lr = 1e-2f;
        adamw_step(&opt, &params, &grads, lr);
        double moved = 0.0;
        for (size_t i = 0; i < n; i++)
            moved += ((double)w[i] - before[i]) * ((double)w[i] - before[i]);
        const double want = lr * l2_norm(before, n);
        ck_assert_msg(fabs(sqrt(moved) / want - 1.0) < 1e-5,
                      "gradient scale %g: ||dw|| %.9g, lr ||w|| %.9g", scales[k], sqrt(moved),
                      want);
        adamw_free(&opt);
        arena_free(&grads);
        arena_free(&params);
        tensor_list_free(&list);
    }
}
END_TEST

/* ---- thread-count independence -------------------------------------- */

START_TEST(test_grad_norm_threads)
{
    TensorList list;
    tensor_list_init(&list);
    const int64_t a[] = {200, 200}, b[] = {35001}, c[] = {25003};
    tensor_list_add(&list, a, 2, 0, INIT_ZEROS, 0.0f, "a");
    tensor_list_add(&list, b, 1, 0, INIT_ZEROS, 0.0f, "b");
    tensor_list_add(&list, c, 1, VT_TENSOR_NO_DECAY, INIT_ZEROS, 0.0f, "c");
    Arena grads;
    arena_create(&grads, &list);
    /* Magnitudes spread over six decades, so a change of summation order
     * changes the rounding of the sum. */
    Rng rng = rng_stream(31, RNG_TEST, 0, 0);
    for (int k = 0; k < list.count; k++) {
        float *g = arena_tensor(&grads, k);
        for (size_t i = 0; i < list.specs[k].numel; i++)
            g[i] = (float)(rng_normal(&rng) * pow(10.0, -6.0 * rng_uniform_double(&rng)));
    }
    const AdamWConfig cfg = adamw_defaults();
    AdamW opt;
    adamw_create(&opt, &list, &cfg);
    ck_assert_int_eq(threads_setup(1), 1);
    double one = grad_global_norm(&opt, &grads);
    ck_assert_int_eq(threads_setup(2), 2);
    double two = grad_global_norm(&opt, &grads);
    ck_assert_msg(memcmp(&one, &two, sizeof one) == 0, "1 thread %.17g, 2 threads %.17g", one,
                  two);
    double want = l2_norm(grads.data, list.total);
    ck_assert_msg(fabs(one - want) <= 1e-12 * want, "norm %.17g, want %.17g", one, want);
    /* LAMB's per-tensor norms too: one step from the same state at 1 and
     * 2 threads gives the same parameters bit for bit. */
    float *after[2];
    for (int t = 0; t < 2; t++) {
        ck_assert_int_eq(threads_setup(t + 1), t + 1);
        AdamWConfig lamb_cfg = adamw_defaults();
        lamb_cfg.lamb = true;
        AdamW lamb;
        adamw_create(&lamb, &list, &lamb_cfg);
        Arena params;
        arena_create(&params, &list);
        fill_params(&params);
        adamw_step(&lamb, &params, &grads, 1e-2f);
        after[t] = malloc(list.total * sizeof(float));
        memcpy(after[t], params.data, list.total * sizeof(float));
        arena_free(&params);
        adamw_free(&lamb);
    }
    ck_assert_msg(memcmp(after[0], after[1], list.total * sizeof(float)) == 0,
                  "LAMB differs between 1 and 2 threads");
    free(after[0]);
    free(after[1]);
    adamw_free(&opt);
    arena_free(&grads);
    tensor_list_free(&list);
}
END_TEST

/* ---- profile -------------------------------------------------------------- */

static double wall(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void spin(double seconds)
{
    const double end = wall() + seconds;
    while (wall() < end)
        ;
}

/* Nested phases: each second lands in the innermost phase only, so the
 * phases add up to the outer span and the inner phase is the inner span.
 * Both spans are measured here around the pushes; the profiler reads its
 * own clock, so agreement within 2 ms is required, not equality. */
START_TEST(test_profile_exclusive_time)
{
    prof_enable(true);
    prof_reset();
    const double t0 = wall();
    prof_push(PROF_ELEMENTWISE);
    spin(0.004);
    const double t1 = wall();
    prof_push(PROF_GEMM);
    spin(0.006);
    prof_push(PROF_ENCODING);
    spin(0.002);
    prof_pop();
    prof_pop();
    const double t2 = wall();
    spin(0.003);
    prof_pop();
    const double t3 = wall();
    double s[PROF_PHASES];
    prof_seconds(s);
    prof_enable(false);
    ck_assert_double_eq_tol(s[PROF_ELEMENTWISE] + s[PROF_GEMM] + s[PROF_ENCODING], t3 - t0, 2e-3);
    ck_assert_double_eq_tol(s[PROF_GEMM] + s[PROF_ENCODING], t2 - t1, 2e-3);
    ck_assert_double_ge(s[PROF_ENCODING], 0.002);
    ck_assert_double_ge(s[PROF_GEMM], 0.006);
    ck_assert_double_eq(s[PROF_ATTENTION], 0.0);
    /* Off: pushes and pops record nothing. */
    prof_reset();
    prof_push(PROF_GEMM);
    spin(0.001);
    prof_pop();
    prof_seconds(s);
    ck_assert_double_eq(s[PROF_GEMM], 0.0);
}
END_TEST

Suite *core_suite(void)
{
    Suite *s = suite_create("core");

    TCase *tensor = tcase_with_timeout("tensor", 10, NULL);
    tcase_add_test(tensor, test_tensor_list_offsets);
    tcase_add_test(tensor, test_tensor_list_find);
    tcase_add_test(tensor, test_arena_layout);
    tcase_add_test(tensor, test_arena_create_zeroes);
    suite_add_tcase(s, tensor);

    TCase *rng = tcase_with_timeout("rng", 30, NULL);
    tcase_add_test(rng, test_rng_keys);
    tcase_add_test(rng, test_rng_uniform);
    tcase_add_test(rng, test_rng_normal);
    tcase_add_test(rng, test_rng_trunc_normal);
    tcase_add_test(rng, test_rng_below);
    tcase_add_test(rng, test_rng_below_no_bias);
    tcase_add_test(rng, test_rng_shuffle);
    tcase_add_test(rng, test_rng_shuffle_uniform);
    suite_add_tcase(s, rng);

    TCase *schedule = tcase_with_timeout("schedule", 10, NULL);
    tcase_add_test(schedule, test_lr_warmup_cosine);
    tcase_add_test(schedule, test_lr_no_warmup);
    suite_add_tcase(s, schedule);

    TCase *adamw = tcase_with_timeout("adamw", 30, NULL);
    tcase_add_test(adamw, test_adamw_reference);
    tcase_add_test(adamw, test_adamw_clipping);
    tcase_add_test(adamw, test_lamb_reference);
    tcase_add_test(adamw, test_lamb_moves_each_tensor_by_lr_of_its_norm);
    tcase_add_test(adamw, test_grad_norm_threads);
    suite_add_tcase(s, adamw);

    TCase *profile = tcase_with_timeout("profile", 10, NULL);
    tcase_add_test(profile, test_profile_exclusive_time);
    suite_add_tcase(s, profile);

    return s;
}
