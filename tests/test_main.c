/*
 * test_main.c - the test runner: every suite, one process per test.
 */
#include "suites.h"

#include <stdlib.h>

TCase *tcase_with_timeout(const char *name, double seconds, const char *tags)
{
    TCase *tc = tcase_create(name);
    tcase_set_timeout(tc, seconds);
    if (tags)
        tcase_set_tags(tc, tags);
    return tc;
}

int main(void)
{
    SRunner *runner = srunner_create(core_suite());
    srunner_add_suite(runner, gradcheck_suite());
    srunner_add_suite(runner, ops_suite());
    srunner_add_suite(runner, attention_suite());
    srunner_add_suite(runner, model_suite());
    srunner_add_suite(runner, train_suite());
    srunner_add_suite(runner, config_suite());
    srunner_add_suite(runner, data_suite());
    srunner_add_suite(runner, checkpoint_suite());
    srunner_add_suite(runner, trainer_suite());
    srunner_add_suite(runner, cli_suite());
    srunner_add_suite(runner, skew_expm_suite());
    srunner_add_suite(runner, pe_rope_suite());
    srunner_add_suite(runner, pe_spherical_suite());
    srunner_add_suite(runner, pe_block_suite());
    srunner_add_suite(runner, pe_conventions_suite());
    srunner_add_suite(runner, bad_inputs_suite());
    srunner_add_suite(runner, arrows_suite());
    srunner_add_suite(runner, study_suite());
    srunner_add_suite(runner, bench_report_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
