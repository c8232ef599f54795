/*
 * suites.h - the Check suites of the test runner, one per module.
 *
 * Slow test cases carry the tag "slow"; `make test` excludes them
 * (CK_EXCLUDE_TAGS=slow), `make test-all` runs everything.
 *
 * Check forks one child per test. No OpenMP region may start in the parent
 * before a fork (GCC's runtime can hang the child), so the runner's main
 * only builds suites, and every test does its own work in its child.
 */
#ifndef VITRAIN_TESTS_SUITES_H
#define VITRAIN_TESTS_SUITES_H

#include <check.h>

Suite *core_suite(void);
Suite *gradcheck_suite(void);
Suite *ops_suite(void);
Suite *attention_suite(void);
Suite *model_suite(void);
Suite *train_suite(void);
Suite *config_suite(void);
Suite *data_suite(void);
Suite *checkpoint_suite(void);
Suite *trainer_suite(void);
Suite *cli_suite(void);
Suite *skew_expm_suite(void);
Suite *pe_rope_suite(void);
Suite *pe_spherical_suite(void);
Suite *pe_block_suite(void);
Suite *pe_conventions_suite(void);
Suite *bad_inputs_suite(void);
Suite *arrows_suite(void);
Suite *study_suite(void);
Suite *bench_report_suite(void);

/* Creates a test case with a timeout in seconds and optional tags. */
TCase *tcase_with_timeout(const char *name, double seconds, const char *tags);

#endif
