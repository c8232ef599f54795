/*
 * test_bench_report.c - bench/report.awk, which turns `make bench`'s raw
 * lines into docs/PERFORMANCE.md: its goal table and its thread-scaling
 * table, on lines made up so that every count, ratio and closest row
 * follows from them by hand.
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

/* The report of raw lines, as bench/report.awk writes it; `root`: a fresh
 * folder (fixture_temp_dir) that holds both files. */
static const char *report_of(const char *raw_lines, const char *root)
{
    char raw[300], out[300], cmd[1000];
    snprintf(raw, sizeof raw, "%s/raw.txt", root);
    snprintf(out, sizeof out, "%s/report.md", root);
    FILE *f = fopen(raw, "w");
    ck_assert_ptr_nonnull(f);
    fputs(raw_lines, f);
    ck_assert_int_eq(fclose(f), 0);
    snprintf(cmd, sizeof cmd, "awk -f bench/report.awk '%s' > '%s'", raw, out);
    ck_assert_int_eq(system(cmd), 0);
    return fixture_read_text(out);
}

/* Each expected line in the report; the whole report goes to stderr on a
 * miss (Check's own messages are too short to hold it). */
static void assert_lines(const char *report, const char *const *expected, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        if (strstr(report, expected[i]) == NULL)
            fprintf(stderr, "report:\n%s\n", report);
        ck_assert_msg(strstr(report, expected[i]) != NULL, "missing: %s", expected[i]);
    }
}

START_TEST(test_goal_table_counts_every_row_against_its_goal)
{
    char root[256];
    fixture_temp_dir(root, sizeof root);
    const char *report = report_of(RAW_LINES, root);
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
        /* one thread count: no scaling measured, and the report says so */
        "Thread scaling (ViT-S training at 16 threads >= 10x its img/s at 1 thread): not "
        "measured in this run, whose thread counts are 1;",
    };
    assert_lines(report, expected, sizeof expected / sizeof expected[0]);
    /* the version line makes no row of its own (one with empty fields) */
    ck_assert_msg(strstr(report, "|  |") == NULL, "a row without a configuration");
    ck_assert_msg(strstr(report, "## Thread scaling") == NULL, "a scaling table of one count");
    fixture_remove_tree(root);
}
END_TEST

/* ViT-S 32 px, vitrain alone (PEER=0), on a machine of 16 cores.
 * absolute: 10 img/s at 1 thread, step 10 s = elementwise 1.0 + GEMMs 8.0
 *   + attention 0.8 + optimizer 0.2 + encoding 0.01 (under half a
 *   percent of the step: no speedup shown for it);
 *   2 threads: 19 img/s = 1.90x, 95 % per thread; phases 0.6 4.0 0.4 0.1:
 *   elementwise 1.7x (1.0 / 0.6), GEMMs, attention, optimizer 2.0x;
 *   16 threads: 120 img/s = 12.00x, 75 %; phases 0.25 0.5 0.05 0.04:
 *   elementwise 4.0x, GEMMs and attention 16.0x, optimizer 5.0x (meets 10x);
 *   32 threads, beyond the cores: 100 img/s = 10.00x, 31 %, starred.
 * rope_mixed: 10 img/s at 1 thread, 90 at 16: 9.0x (misses 10x).
 * ViT-Tiny, 50 img/s at 1 thread, 200 at 16: not a row of the ViT-S goal. */
static const char *const SCALING_LINES =
    "impl=meta version=abc1234 cores=16 threads=1,2,16,32\n"
    "impl=sgemm threads=1 gflops=100\n"
    "impl=sgemm threads=2 gflops=200\n"
    "impl=sgemm threads=16 gflops=1500\n"
    "impl=sgemm threads=32 gflops=1500\n"
    "impl=vitrain threads=1 model=small size=32 channels=3 encoding=absolute train_img_s=10 "
    "infer_img_s=30 gflops=80 attn_gflops=60 rss_mib=1800 phase_0=1.0 phase_1=8.0 phase_2=0.8 "
    "phase_3=0.01 phase_4=0.2 phase_5=0\n"
    "impl=vitrain threads=2 model=small size=32 channels=3 encoding=absolute train_img_s=19 "
    "infer_img_s=60 gflops=150 attn_gflops=120 rss_mib=1800 phase_0=0.6 phase_1=4.0 "
    "phase_2=0.4 phase_3=0.005 phase_4=0.1 phase_5=0\n"
    "impl=vitrain threads=16 model=small size=32 channels=3 encoding=absolute train_img_s=120 "
    "infer_img_s=400 gflops=1000 attn_gflops=900 rss_mib=1900 phase_0=0.25 phase_1=0.5 "
    "phase_2=0.05 phase_3=0.001 phase_4=0.04 phase_5=0\n"
    "impl=vitrain threads=32 model=small size=32 channels=3 encoding=absolute train_img_s=100 "
    "infer_img_s=350 gflops=900 attn_gflops=800 rss_mib=1900 phase_0=0.3 phase_1=0.6 "
    "phase_2=0.06 phase_3=0.001 phase_4=0.05 phase_5=0\n"
    "impl=vitrain threads=1 model=small size=32 channels=3 encoding=rope_mixed train_img_s=10 "
    "infer_img_s=30 gflops=80 attn_gflops=50 rss_mib=1800\n"
    "impl=vitrain threads=16 model=small size=32 channels=3 encoding=rope_mixed train_img_s=90 "
    "infer_img_s=300 gflops=700 attn_gflops=600 rss_mib=1900\n"
    "impl=vitrain threads=1 model=tiny size=28 channels=1 encoding=absolute train_img_s=50 "
    "infer_img_s=150 gflops=80 attn_gflops=60 rss_mib=600\n"
    "impl=vitrain threads=16 model=tiny size=28 channels=1 encoding=absolute train_img_s=200 "
    "infer_img_s=600 gflops=300 attn_gflops=200 rss_mib=700\n";

START_TEST(test_scaling_table_against_the_smallest_thread_count)
{
    char root[256];
    fixture_temp_dir(root, sizeof root);
    const char *report = report_of(SCALING_LINES, root);
    const char *const expected[] = {
        "| ViT-S training at 16 threads >= 10x its img/s at 1 thread | 1 of 2 | 9.0x (16 threads, "
        "small 32x3, rope_mixed) |",
        "| small | 32x3 | absolute | 1 | 10.0 | 1.00x | 100 % |",
        "| small | 32x3 | absolute | 2 | 19.0 | 1.90x | 95 % | 2.0x | 2.0x | - | 1.7x | 2.0x | - | - |",
        "| small | 32x3 | absolute | 16 | 120.0 | 12.00x | 75 % | 16.0x | 16.0x | - | 4.0x | 5.0x | "
        "- | - |",
        "| small | 32x3 | absolute | 32 * | 100.0 | 10.00x | 31 % |",
        "| small | 32x3 | rope_mixed | 16 | 90.0 | 9.00x | 56 % | - | - | - | - | - | - | - |",
        "More threads than the machine's 16 cores",
        /* no PyTorch in the run: its cells are "-", not zeros */
        "| 16 | small | 32x3 | absolute | 120.0 | - | - | 400.0 | - | - |",
    };
    assert_lines(report, expected, sizeof expected / sizeof expected[0]);
    ck_assert_msg(strstr(report, "not measured in this run") == NULL, "scaling called unmeasured");
    ck_assert_msg(strstr(report, "| 0.00x") == NULL, "a ratio without PyTorch");
    fixture_remove_tree(root);
}
END_TEST

Suite *bench_report_suite(void)
{
    Suite *s = suite_create("bench report");
    TCase *goals = tcase_with_timeout("goals", 30, NULL);
    tcase_add_test(goals, test_goal_table_counts_every_row_against_its_goal);
    tcase_add_test(goals, test_scaling_table_against_the_smallest_thread_count);
    suite_add_tcase(s, goals);
    return s;
}
