/*
 * test_bench_report.c - bench/report.awk, which turns `make bench`'s raw
 * lines into docs/PERFORMANCE.md: its goal table, on lines made up so that
 * every goal's count and closest row follow from them by hand.
 */
#include "fixtures.h"
#include "suites.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One thread, ViT-Tiny 28 px; sgemm 100 GFLOP/s, absolute's step 2 s.
 * absolute: 60 / 40 img/s = 1.50x (meets 1.5x exactly), 80 % of sgemm,
 *   attention 60 %, RSS 500 / 1200 = 0.42.
 * rope_mixed: 70 / 40 = 1.75x (misses 2x), 65 %, 40 %, RSS 0.51,
 *   attention 0.05 s beyond absolute's 0.2: +2.5 % (meets 5 %).
 * liere:dense: 45 / 20 = 2.25x, 75 %, 55 %, RSS 0.42, encoding 0.5 s:
 *   +25 % (misses 20 %). */
static const char *const RAW_LINES =
    "impl=meta version=abc1234\n"
    "impl=fma threads=1 fma_gflops=120\n"
    "impl=sgemm threads=1 gflops=100\n"
    "impl=vitrain threads=1 model=tiny size=28 channels=1 encoding=absolute train_img_s=60 "
    "infer_img_s=100 gflops=80 attn_gflops=60 rss_mib=500 phase_0=0.2 phase_1=1.6 phase_2=0.2 "
    "phase_3=0 phase_4=0 phase_5=0\n"
    "impl=pytorch threads=1 model=tiny size=28 channels=1 encoding=absolute train_img_s=40 "
    "infer_img_s=80 rss_mib=1200\n"
    "impl=vitrain threads=1 model=tiny size=28 channels=1 encoding=rope_mixed train_img_s=70 "
    "infer_img_s=100 gflops=65 attn_gflops=40 rss_mib=510 phase_0=0.2 phase_1=1.6 phase_2=0.25 "
    "phase_3=0 phase_4=0 phase_5=0\n"
    "impl=pytorch threads=1 model=tiny size=28 channels=1 encoding=rope_mixed train_img_s=40 "
    "infer_img_s=80 rss_mib=1000\n"
    "impl=vitrain threads=1 model=tiny size=28 channels=1 encoding=liere:dense train_img_s=45 "
    "infer_img_s=90 gflops=75 attn_gflops=55 rss_mib=550 phase_0=0.2 phase_1=1.6 phase_2=0.2 "
    "phase_3=0.5 phase_4=0 phase_5=0\n"
    "impl=pytorch threads=1 model=tiny size=28 channels=1 encoding=liere:dense train_img_s=20 "
    "infer_img_s=50 rss_mib=1300\n";

START_TEST(test_goal_table_counts_every_row_against_its_goal)
{
    char root[256], raw[300], out[300], cmd[1000];
    fixture_temp_dir(root, sizeof root);
    snprintf(raw, sizeof raw, "%s/raw.txt", root);
    snprintf(out, sizeof out, "%s/report.md", root);
    FILE *f = fopen(raw, "w");
    ck_assert_ptr_nonnull(f);
    fputs(RAW_LINES, f);
    ck_assert_int_eq(fclose(f), 0);
    snprintf(cmd, sizeof cmd, "awk -f bench/report.awk '%s' > '%s'", raw, out);
    ck_assert_int_eq(system(cmd), 0);
    const char *report = fixture_read_text(out);
    const char *const expected[] = {
        "| training >= 1.5x PyTorch, absolute | 1 of 1 | 1.50x (1 thread, tiny 28x1, absolute) |",
        "| training >= 2x PyTorch, rotary encodings | 1 of 2 | 1.75x (1 thread, tiny 28x1, "
        "rope_mixed) |",
        "| whole training step >= 70 % of sgemm 1024^3 | 2 of 3 | 65 % (1 thread, tiny 28x1, "
        "rope_mixed) |",
        "| attention forward + backward >= 50 % of sgemm 1024^3 | 2 of 3 | 40 % (1 thread, tiny "
        "28x1, rope_mixed) |",
        "dense LieRE <= 20 % | 1 of 2 | +25.0 % against 20 % (1 thread, tiny 28x1, liere:dense) |",
        "| peak RSS <= half of PyTorch's | 2 of 3 | 0.51 of it (1 thread, tiny 28x1, rope_mixed) |",
        /* the overhead table's own column agrees */
        "| 1 | tiny | 28x1 | rope_mixed | -14.3 % | +2.5 % | +0.0 % |",
    };
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        ck_assert_msg(strstr(report, expected[i]) != NULL, "missing: %s\nin:\n%s", expected[i],
                      report);
    /* the version line makes no row of its own (one with empty fields) */
    ck_assert_msg(strstr(report, "|  |") == NULL, "a row without a configuration:\n%s", report);
    fixture_remove_tree(root);
}
END_TEST

Suite *bench_report_suite(void)
{
    Suite *s = suite_create("bench report");
    TCase *goals = tcase_with_timeout("goals", 30, NULL);
    tcase_add_test(goals, test_goal_table_counts_every_row_against_its_goal);
    suite_add_tcase(s, goals);
    return s;
}
