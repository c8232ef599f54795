/*
 * test_study.c - the options the reproduction study needs: the patch
 * shuffle of LieRE Table 5 (src/data/patch_shuffle.c) and the
 * class-stratified training subset of data.train_fraction
 * (src/data/folder.c). Their command-line ends are in test_cli.c.
 */
#include "fixtures.h"
#include "gradcheck.h"
#include "suites.h"

#include "vitrain/data.h"
#include "vitrain/pe.h"
#include "vitrain/vit.h"

#include <stb_image_write.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- patch shuffle -------------------------------------------------------- */

START_TEST(test_patch_order_is_a_seeded_permutation)
{
    enum { TILES = 16 };
    int a[TILES], b[TILES], other[TILES];
    patch_order_shuffled(a, TILES, 3);
    patch_order_shuffled(b, TILES, 3);
    patch_order_shuffled(other, TILES, 4);
    int seen[TILES] = {0};
    for (int t = 0; t < TILES; t++) {
        ck_assert(a[t] >= 0 && a[t] < TILES);
        seen[a[t]]++;
    }
    for (int t = 0; t < TILES; t++)
        ck_assert_int_eq(seen[t], 1);
    ck_assert(memcmp(a, b, sizeof a) == 0);
    ck_assert(memcmp(a, other, sizeof a) != 0);
}
END_TEST

START_TEST(test_patch_shuffle_moves_whole_tiles)
{
    enum { B = 2, C = 2, S = 12, P = 4, G = S / P };
    float images[B * C * S * S], original[B * C * S * S], scratch[C * S * S];
    for (int i = 0; i < B * C * S * S; i++)
        original[i] = images[i] = (float)i;
    int order[G * G];
    patch_order_shuffled(order, G * G, 9);
    patch_shuffle(images, scratch, B, C, S, P, order);
    for (int b = 0; b < B; b++)
        for (int c = 0; c < C; c++)
            for (int y = 0; y < S; y++)
                for (int x = 0; x < S; x++) {
                    const int from = order[(y / P) * G + x / P];
                    const int fy = (from / G) * P + y % P, fx = (from % G) * P + x % P;
                    ck_assert_float_eq(images[((b * C + c) * S + y) * S + x],
                                       original[((b * C + c) * S + fy) * S + fx]);
                }
}
END_TEST

/* Largest logit change when the patches of a batch are shuffled. */
static double logit_change_under_shuffle(const char *pe, PoolMode pool)
{
    enum { B = 3, C = 1, S = 12, P = 4, K = 4 };
    VitConfig cfg = {.img_size = S, .channels = C, .patch_size = P, .dim = 16, .depth = 2,
                     .heads = 2, .mlp_dim = 32, .num_classes = K, .pe = pe_options(pe),
                     .pool = pool};
    Vit m;
    VtError err;
    ck_assert_msg(vit_create(&m, &cfg, B, &err) == VT_OK, "%s", err.message);
    vit_init_params(&m, 1);
    gc_fill_normal(m.params.data, m.param_list.total, 0.3, 2);
    float images[B * C * S * S], scratch[C * S * S], logits[B * K];
    gc_fill_normal(images, B * C * S * S, 1.0, 3);
    const VitPass eval = {.train = false};
    memcpy(logits, vit_forward(&m, images, B, &eval), sizeof logits);
    int order[(S / P) * (S / P)];
    patch_order_shuffled(order, (S / P) * (S / P), 5);
    patch_shuffle(images, scratch, B, C, S, P, order);
    const float *moved = vit_forward(&m, images, B, &eval);
    double change = 0.0;
    for (int i = 0; i < B * K; i++)
        change = fmax(change, fabs((double)moved[i] - logits[i]));
    vit_free(&m);
    return change;
}

START_TEST(test_shuffle_leaves_a_model_without_position_unchanged)
{
    /* No encoding and mean pooling: the model is a function of the set of
     * patches, so only summation order may change the logits. */
    ck_assert_double_lt(logit_change_under_shuffle("none", POOL_MEAN), 1e-5);
    /* With positions it is not (else the first check proves nothing). */
    ck_assert_double_gt(logit_change_under_shuffle("absolute", POOL_MEAN), 1e-3);
    ck_assert_double_gt(logit_change_under_shuffle("liere", POOL_CLS), 1e-3);
}
END_TEST

/* ---- training subset ------------------------------------------------------ */

static char root[256];

static void setup(void)
{
    fixture_temp_dir(root, sizeof root);
}

static void teardown(void)
{
    fixture_remove_tree(root);
}

/* root/train/{a,b,c} with 10, 7 and 3 tiny PNGs. */
static void uneven_folder(void)
{
    static const char *const classes[] = {"a", "b", "c"};
    static const int counts[] = {10, 7, 3};
    char path[512];
    snprintf(path, sizeof path, "%s/train", root);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    for (int c = 0; c < 3; c++) {
        snprintf(path, sizeof path, "%s/train/%s", root, classes[c]);
        ck_assert_int_eq(mkdir(path, 0755), 0);
        for (int i = 0; i < counts[c]; i++) {
            unsigned char px[16];
            memset(px, 20 * i + c, sizeof px);
            snprintf(path, sizeof path, "%s/train/%s/%02d.png", root, classes[c], i);
            ck_assert(stbi_write_png(path, 4, 4, 1, px, 4));
        }
    }
}

static void open_subset(Dataset *ds, float fraction, uint64_t seed)
{
    DatasetOptions o = {.channels = 1, .cache_side = 4, .cache = CACHE_MEMORY,
                        .fraction = fraction, .fraction_seed = seed};
    VtError err;
    ck_assert_msg(dataset_open(ds, root, "train", &o, NULL, &err) == VT_OK, "%s", err.message);
}

static int class_count(const Dataset *ds, int label)
{
    int n = 0;
    for (int i = 0; i < ds->count; i++)
        n += ds->labels[i] == label;
    return n;
}

static bool holds_path(const Dataset *ds, const char *path)
{
    for (int i = 0; i < ds->count; i++)
        if (strcmp(ds->paths[i], path) == 0)
            return true;
    return false;
}

/* Every path of `part` is in `whole`. */
static bool is_subset(const Dataset *part, const Dataset *whole)
{
    for (int i = 0; i < part->count; i++)
        if (!holds_path(whole, part->paths[i]))
            return false;
    return true;
}

START_TEST(test_fraction_is_stratified_by_class)
{
    uneven_folder();
    Dataset full, part, tiny;
    open_subset(&full, 1.0f, 0);
    open_subset(&part, 0.4f, 0);
    open_subset(&tiny, 0.01f, 0);
    ck_assert_int_eq(full.count, 20);
    /* round(0.4 * n): 4 of 10, 3 of 7 (2.8), 1 of 3 (1.2). */
    ck_assert_int_eq(class_count(&part, 0), 4);
    ck_assert_int_eq(class_count(&part, 1), 3);
    ck_assert_int_eq(class_count(&part, 2), 1);
    ck_assert_int_eq(part.count, 8);
    /* Never an empty class. */
    for (int c = 0; c < 3; c++)
        ck_assert_int_eq(class_count(&tiny, c), 1);
    ck_assert(is_subset(&part, &full));
    /* The decoded pixels follow their paths. */
    for (int i = 0; i < part.count; i++) {
        int j = 0;
        while (strcmp(full.paths[j], part.paths[i]) != 0)
            j++;
        ck_assert_int_eq(part.pixels[part.offset[i]], full.pixels[full.offset[j]]);
        ck_assert_int_eq(part.labels[i], full.labels[j]);
    }
    dataset_close(&full);
    dataset_close(&part);
    dataset_close(&tiny);
}
END_TEST

START_TEST(test_fraction_is_determined_by_the_seed)
{
    uneven_folder();
    Dataset a, b, other, larger;
    open_subset(&a, 0.5f, 7);
    open_subset(&b, 0.5f, 7);
    open_subset(&other, 0.5f, 8);
    open_subset(&larger, 0.8f, 7);
    ck_assert_int_eq(a.count, b.count);
    for (int i = 0; i < a.count; i++)
        ck_assert_str_eq(a.paths[i], b.paths[i]);
    ck_assert_int_eq(a.count, other.count);
    ck_assert_msg(!is_subset(&a, &other) || !is_subset(&other, &a),
                  "seeds 7 and 8 chose the same images");
    /* One seed, growing fractions: nested subsets. */
    ck_assert(is_subset(&a, &larger));
    dataset_close(&a);
    dataset_close(&b);
    dataset_close(&other);
    dataset_close(&larger);
}
END_TEST

START_TEST(test_fraction_out_of_range_is_refused)
{
    uneven_folder();
    Dataset ds;
    DatasetOptions o = {.channels = 1, .cache_side = 4, .cache = CACHE_MEMORY, .fraction = 1.5f};
    VtError err;
    ck_assert_int_eq(dataset_open(&ds, root, "train", &o, NULL, &err), VT_ERR_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "fraction"));
}
END_TEST

Suite *study_suite(void)
{
    Suite *s = suite_create("study");
    TCase *shuffle = tcase_with_timeout("patch shuffle", 30, NULL);
    tcase_add_test(shuffle, test_patch_order_is_a_seeded_permutation);
    tcase_add_test(shuffle, test_patch_shuffle_moves_whole_tiles);
    tcase_add_test(shuffle, test_shuffle_leaves_a_model_without_position_unchanged);
    suite_add_tcase(s, shuffle);
    TCase *subset = tcase_with_timeout("train fraction", 30, NULL);
    tcase_add_checked_fixture(subset, setup, teardown);
    tcase_add_test(subset, test_fraction_is_stratified_by_class);
    tcase_add_test(subset, test_fraction_is_determined_by_the_seed);
    tcase_add_test(subset, test_fraction_out_of_range_is_refused);
    suite_add_tcase(s, subset);
    return s;
}
