/*
 * test_pe_rope.c - rope_axial and rope_mixed (DESIGN §4.2, §4.3), and the
 * encoding interface itself: gradients at the training grid and an
 * extended one, the relative-position property, orthogonality, and errors
 * for head sizes that do not fit.
 */
#include "gradcheck.h"
#include "pe_harness.h"
#include "suites.h"

#include <string.h>

/* The harness's rotations are fp32 like the ops: same tolerance as
 * test_ops.c (1e-3 of each tensor's gradient scale). */
static const double PE_TOLERANCE = 1e-3;

static void check_gradients(const char *type)
{
    PeOptions o = pe_options(type);
    const PeGeometry at_training = pe_test_geometry(8, 3, 3), extended = pe_test_geometry(8, 5, 3);
    ck_assert_double_lt(pe_gradcheck(&o, &at_training, 0.05, 11), PE_TOLERANCE);
    ck_assert_double_lt(pe_gradcheck(&o, &extended, 0.05, 12), PE_TOLERANCE);
}

START_TEST(test_rope_axial_gradients)
{
    check_gradients("rope_axial");
}
END_TEST

START_TEST(test_rope_mixed_gradients)
{
    check_gradients("rope_mixed");
}
END_TEST

START_TEST(test_rope_is_relative)
{
    /* Commuting generators: logits depend only on the position difference
     * (ComRoPE Thm. 1), to fp32 rounding. */
    const char *types[] = {"rope_axial", "rope_mixed"};
    for (int i = 0; i < 2; i++) {
        PeOptions o = pe_options(types[i]);
        PeGeometry g = pe_test_geometry(16, 5, 5);
        double v = pe_shift_violation(&o, &g, 1, 0.3, 21);
        ck_assert_msg(v < 1e-5, "%s: shift violation %.3g", types[i], v);
    }
}
END_TEST

START_TEST(test_rope_is_orthogonal)
{
    const char *types[] = {"rope_axial", "rope_mixed"};
    for (int i = 0; i < 2; i++) {
        PeOptions o = pe_options(types[i]);
        PeGeometry g = pe_test_geometry(8, 4, 4);
        ck_assert_double_lt(pe_norm_violation(&o, &g, 22), 1e-5);
    }
}
END_TEST

START_TEST(test_head_dim_must_fit)
{
    PeOptions o = pe_options("rope_axial");
    PeGeometry g = pe_test_geometry(6, 3, 3); /* 6 % 4 != 0 */
    TensorList list;
    tensor_list_init(&list);
    Pe pe;
    VtError err;
    ck_assert_int_eq(pe_create(&pe, &o, &g, &list, &err), VT_ERR_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "divisible by 4"));
    o = pe_options("rope_spiral");
    ck_assert_int_eq(pe_create(&pe, &o, &g, &list, &err), VT_ERR_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "unknown encoding 'rope_spiral'"));
    tensor_list_free(&list);
}
END_TEST

Suite *pe_rope_suite(void)
{
    Suite *s = suite_create("pe_rope");
    TCase *tc = tcase_with_timeout("rope", 60, NULL);
    tcase_add_checked_fixture(tc, NULL, gc_free_all);
    tcase_add_test(tc, test_rope_axial_gradients);
    tcase_add_test(tc, test_rope_mixed_gradients);
    tcase_add_test(tc, test_rope_is_relative);
    tcase_add_test(tc, test_rope_is_orthogonal);
    tcase_add_test(tc, test_head_dim_must_fit);
    suite_add_tcase(s, tc);
    return s;
}
