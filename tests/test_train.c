/*
 * test_train.c - the engine trains: it memorizes random labels, learns a
 * task that needs position, and is reproducible.
 */
#include "suites.h"

#include "vitrain/parallel.h"
#include "vitrain/synthetic.h"
#include "vitrain/train.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static VitConfig tiny_config(int num_classes)
{
    return (VitConfig){.img_size = 16, .channels = 1, .patch_size = 4, .dim = 64, .depth = 2,
                       .heads = 2, .mlp_dim = 128, .num_classes = num_classes,
                       .pe = pe_options("absolute"), .pool = POOL_CLS};
}

static TrainOptions options(int batch, int64_t steps, float lr)
{
    TrainOptions o = {.batch_size = batch, .steps = steps, .seed = 3, .optim = adamw_defaults()};
    o.optim.weight_decay = 0.0f;
    o.optim.clip_grad = 1.0f;
    o.schedule = (LrSchedule){.lr = lr, .min_lr = lr * 0.1f, .warmup_lr = lr * 0.1f,
                              .warmup_steps = 10, .total_steps = steps};
    return o;
}

/* Records every step's loss. */
typedef struct {
    double losses[1024];
    int count;
} LossLog;

static bool record_loss(const StepStats *s, void *user)
{
    LossLog *log = user;
    if (log->count < 1024)
        log->losses[log->count++] = s->loss;
    return true;
}

static void train_ok(Vit *m, const MemoryDataset *data, const TrainOptions *o, LossLog *log)
{
    VtError err;
    VtCode code = train_in_memory(m, data, o, record_loss, log, &err);
    ck_assert_msg(code == VT_OK, "training failed: %s", err.message);
}

START_TEST(test_memorizes_random_labels)
{
    enum { COUNT = 64, LEN = 16 * 16 };
    VitConfig cfg = tiny_config(10);
    float *images = malloc(COUNT * LEN * sizeof(float));
    int labels[COUNT];
    synthetic_noise(images, labels, COUNT, 1, 16, 10, 11);
    Vit m;
    VtError err;
    ck_assert(vit_create(&m, &cfg, COUNT, &err) == VT_OK);
    vit_init_params(&m, 1);
    TrainOptions o = options(16, 400, 2e-3f);
    LossLog log = {0};
    MemoryDataset data = {images, labels, COUNT};
    train_ok(&m, &data, &o, &log);
    double loss, accuracy;
    evaluate_in_memory(&m, &data, &loss, &accuracy);
    printf("memorize: loss %.4f -> %.4f, train accuracy %.1f%% after %d steps\n", log.losses[0],
           loss, 100 * accuracy, log.count);
    ck_assert_double_eq(accuracy, 1.0);
    vit_free(&m);
    free(images);
}
END_TEST

/* Train and held-out sets of the quadrant task at 16 px. */
typedef struct QuadrantTask {
    MemoryDataset train, held_out;
    float *images, *test_images;
    int *labels, *test_labels;
} QuadrantTask;

static void quadrant_task(QuadrantTask *q, int count, int held_out, uint64_t seed)
{
    const size_t len = 16 * 16;
    q->images = malloc((size_t)count * len * sizeof(float));
    q->test_images = malloc((size_t)held_out * len * sizeof(float));
    q->labels = malloc((size_t)count * sizeof(int));
    q->test_labels = malloc((size_t)held_out * sizeof(int));
    synthetic_quadrant(q->images, q->labels, count, 1, 16, seed);
    synthetic_quadrant(q->test_images, q->test_labels, held_out, 1, 16, seed + 1);
    q->train = (MemoryDataset){q->images, q->labels, count};
    q->held_out = (MemoryDataset){q->test_images, q->test_labels, held_out};
}

static void quadrant_task_free(QuadrantTask *q)
{
    free(q->images);
    free(q->test_images);
    free(q->labels);
    free(q->test_labels);
}

/* Trains a fresh model of cfg on the task; returns held-out accuracy. */
static double train_on_quadrants(const VitConfig *cfg, const QuadrantTask *q, int64_t steps,
                                 uint64_t init_seed, LossLog *log)
{
    Vit m;
    VtError err;
    ck_assert_msg(vit_create(&m, cfg, 64, &err) == VT_OK, "%s: %s", cfg->pe.type, err.message);
    vit_init_params(&m, init_seed);
    TrainOptions o = options(64, steps, 2e-3f);
    train_ok(&m, &q->train, &o, log);
    double loss, accuracy;
    evaluate_in_memory(&m, &q->held_out, &loss, &accuracy);
    vit_free(&m);
    return accuracy;
}

/* LAMB, its trust ratio on (weight decay), learns the quadrant task as
 * AdamW does: the optimizer as a whole, not only its step (test_core.c). */
START_TEST(test_lamb_learns_quadrant_task)
{
    QuadrantTask q;
    quadrant_task(&q, 1024, 512, 21);
    VitConfig cfg = tiny_config(SYNTHETIC_QUADRANT_CLASSES);
    Vit m;
    VtError err;
    ck_assert_msg(vit_create(&m, &cfg, 64, &err) == VT_OK, "%s", err.message);
    vit_init_params(&m, 2);
    TrainOptions o = options(64, 400, 2e-3f);
    o.optim.lamb = true;
    o.optim.weight_decay = 0.05f;
    LossLog log = {0};
    train_ok(&m, &q.train, &o, &log);
    double loss, accuracy;
    evaluate_in_memory(&m, &q.held_out, &loss, &accuracy);
    vit_free(&m);
    quadrant_task_free(&q);
    printf("quadrant with LAMB: held-out %.1f%%\n", 100 * accuracy);
    ck_assert_msg(accuracy > 0.8, "LAMB reached only %.1f%%", 100 * accuracy);
}
END_TEST

START_TEST(test_learns_quadrant_task)
{
    /* The label is where a square sits: only learnable with the position
     * information the absolute encoding gives. Chance is 25 %. */
    QuadrantTask q;
    quadrant_task(&q, 1024, 512, 21);
    VitConfig cfg = tiny_config(SYNTHETIC_QUADRANT_CLASSES);
    LossLog log = {0};
    double accuracy = train_on_quadrants(&cfg, &q, 400, 2, &log);
    double first = 0, last = 0;
    for (int i = 0; i < 10; i++) {
        first += log.losses[i] / 10;
        last += log.losses[log.count - 10 + i] / 10;
    }
    printf("quadrant: mean loss of the first 10 steps %.4f, last 10 %.4f; held-out %.1f%%\n",
           first, last, 100 * accuracy);
    ck_assert_double_lt(last, 0.5 * first);
    ck_assert_double_gt(accuracy, 0.9);
    quadrant_task_free(&q);
}
END_TEST

START_TEST(test_every_encoding_learns_quadrant_task)
{
    /* DESIGN §4: each encoding gives a 2-block model enough position
     * information for the quadrant task (chance 25 %). Head width 16 fits
     * every encoding's blocks (pairs, triplets, blocks of 8). */
    const char *types[] = {"absolute", "rope_axial", "rope_mixed", "spherical",
                           "comrope_ap", "comrope_ld", "liere"};
    QuadrantTask q;
    quadrant_task(&q, 512, 256, 51);
    for (size_t t = 0; t < sizeof types / sizeof types[0]; t++) {
        VitConfig cfg = tiny_config(SYNTHETIC_QUADRANT_CLASSES);
        cfg.dim = 32;
        cfg.pe = pe_options(types[t]);
        LossLog log = {0};
        double accuracy = train_on_quadrants(&cfg, &q, 300, 6, &log);
        printf("quadrant task, %-10s: held-out %.1f%%\n", types[t], 100 * accuracy);
        ck_assert_msg(accuracy > 0.8, "%s reached only %.1f%%", types[t], 100 * accuracy);
    }
    quadrant_task_free(&q);
}
END_TEST

/* A tie at the top is one hit (argmax's first index), not one for every
 * class tied: all-zero logits, as from a dead head, would otherwise score
 * 100 % top-1. */
START_TEST(test_label_rank_breaks_ties_by_index)
{
    const float zeros[6] = {0};
    ck_assert_int_eq(label_rank(zeros, 0, 6), 0);
    ck_assert_int_eq(label_rank(zeros, 3, 6), 3);
    ck_assert_int_eq(label_rank(zeros, 5, 6), 5);
    const float z[4] = {1.0f, 3.0f, 3.0f, 2.0f};
    ck_assert_int_eq(label_rank(z, 1, 4), 0);
    ck_assert_int_eq(label_rank(z, 2, 4), 1); /* behind its tie at index 1 */
    ck_assert_int_eq(label_rank(z, 3, 4), 2);
    ck_assert_int_eq(label_rank(z, 0, 4), 3);
    const float with_nan[3] = {0.5f, NAN, -1.0f};
    ck_assert_int_eq(label_rank(with_nan, 1, 3), 3); /* a NaN logit is no hit */
    ck_assert_int_eq(label_rank(with_nan, 0, 3), 1);  /* behind another class's NaN */
    const int labels[2] = {2, 4};
    const float two[12] = {0};
    ck_assert_int_eq(count_correct(two, labels, 2, 6), 0);
}
END_TEST

/* 20 steps of a small model with drop path on, at a given thread count. */
static void run_20_steps(int threads, LossLog *log, float *final_params, size_t *n_params)
{
    enum { COUNT = 128, LEN = 16 * 16 };
    threads_setup(threads);
    VitConfig cfg = tiny_config(SYNTHETIC_QUADRANT_CLASSES);
    cfg.drop_path = 0.1f;
    cfg.layer_scale_init = 0.1f;
    float *images = malloc(COUNT * LEN * sizeof(float));
    int labels[COUNT];
    synthetic_quadrant(images, labels, COUNT, 1, 16, 31);
    Vit m;
    VtError err;
    ck_assert(vit_create(&m, &cfg, 32, &err) == VT_OK);
    vit_init_params(&m, 4);
    TrainOptions o = options(32, 20, 1e-3f);
    o.optim.weight_decay = 0.05f;
    o.smoothing = 0.1f;
    memset(log, 0, sizeof *log);
    train_ok(&m, &(MemoryDataset){images, labels, COUNT}, &o, log);
    if (final_params) {
        memcpy(final_params, m.params.data, m.param_list.total * sizeof(float));
        *n_params = m.param_list.total;
    }
    vit_free(&m);
    free(images);
}

START_TEST(test_same_seed_same_threads_is_bit_identical)
{
    static LossLog a, b;
    static float pa[1 << 18], pb[1 << 18];
    size_t na, nb;
    run_20_steps(2, &a, pa, &na);
    run_20_steps(2, &b, pb, &nb);
    ck_assert_int_eq(a.count, 20);
    ck_assert(memcmp(a.losses, b.losses, sizeof a.losses) == 0);
    ck_assert(na == nb && memcmp(pa, pb, na * sizeof(float)) == 0);
}
END_TEST

START_TEST(test_thread_counts_agree)
{
    /* Thread counts change only the order of float sums inside OpenBLAS and
     * the per-thread splits, each a relative change of ~1e-7 per operation;
     * over 20 steps of Adam they grow, but the losses must stay within
     * 1e-3 relative of each other. 16 threads outnumber the cores of a
     * small machine and the items of some parallel loops. */
    static LossLog one, many;
    const int before = threads_count();
    run_20_steps(1, &one, NULL, NULL);
    const int counts[] = {2, 16};
    for (int c = 0; c < 2; c++) {
        run_20_steps(counts[c], &many, NULL, NULL);
        double worst = 0.0;
        for (int i = 0; i < 20; i++)
            worst = fmax(worst, fabs(one.losses[i] - many.losses[i]) / fabs(one.losses[i]));
        printf("1 vs %d threads: max relative loss difference over 20 steps %.2e\n", counts[c],
               worst);
        ck_assert_double_lt(worst, 1e-3);
    }
    threads_setup(before);
}
END_TEST

START_TEST(test_non_finite_loss_stops_training)
{
    enum { COUNT = 32, LEN = 16 * 16 };
    VitConfig cfg = tiny_config(4);
    float *images = malloc(COUNT * LEN * sizeof(float));
    int labels[COUNT];
    synthetic_quadrant(images, labels, COUNT, 1, 16, 41);
    images[5] = NAN;
    Vit m;
    VtError err;
    ck_assert(vit_create(&m, &cfg, 32, &err) == VT_OK);
    vit_init_params(&m, 4);
    TrainOptions o = options(32, 5, 1e-3f);
    ck_assert_int_eq(train_in_memory(&m, &(MemoryDataset){images, labels, COUNT}, &o, NULL, NULL,
                                     &err),
                     VT_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(err.message, "step 0"));
    vit_free(&m);
    free(images);
}
END_TEST

Suite *train_suite(void)
{
    Suite *s = suite_create("train");
    TCase *tc = tcase_with_timeout("training", 240, NULL);
    tcase_add_test(tc, test_memorizes_random_labels);
    tcase_add_test(tc, test_learns_quadrant_task);
    tcase_add_test(tc, test_every_encoding_learns_quadrant_task);
    tcase_add_test(tc, test_same_seed_same_threads_is_bit_identical);
    tcase_add_test(tc, test_thread_counts_agree);
    tcase_add_test(tc, test_label_rank_breaks_ties_by_index);
    tcase_add_test(tc, test_lamb_learns_quadrant_task);
    tcase_add_test(tc, test_non_finite_loss_stops_training);
    suite_add_tcase(s, tc);
    return s;
}
