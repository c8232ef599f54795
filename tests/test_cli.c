/*
 * test_cli.c - the command line end to end: train, eval at several
 * resolutions with logits, export, and the exit statuses and messages of
 * bad invocations. Each test runs in its own process (Check forks), so
 * stdout and stderr are redirected to files and read back.
 */
#include "fixtures.h"
#include "suites.h"

#include "vitrain/checkpoint.h"
#include "vitrain/cli.h"
#include "vitrain/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char root[256], out_path[512], err_path[512];

static void setup(void)
{
    fixture_temp_dir(root, sizeof root);
    snprintf(out_path, sizeof out_path, "%s/stdout.txt", root);
    snprintf(err_path, sizeof err_path, "%s/stderr.txt", root);
}

static void teardown(void)
{
    fixture_remove_tree(root);
}

static int run(int (*cmd)(int, char **), const char *const *args)
{
    return fixture_run_cli(cmd, args, out_path, err_path);
}

static const char *captured_stderr(void)
{
    return fixture_read_text(err_path);
}

static const char *captured_stdout(void)
{
    return fixture_read_text(out_path);
}

/* A config for a tiny run over the fixture folder, written to
 * <root>/<name>; returns its path (valid until the next call). */
static const char *write_config_as(const char *name, const char *extra)
{
    static char path[600];
    char text[2048];
    snprintf(path, sizeof path, "%s/%s", root, name);
    snprintf(text, sizeof text,
             "[data]\nroot = %s/data\nimg_size = 12\nmean = 0.5\nstd = 0.25\n"
             "[model]\ndim = 16\ndepth = 1\nheads = 2\nmlp_dim = 32\npatch_size = 4\n"
             "[train]\nepochs = 2\nbatch_size = 8\nthreads = 1\n"
             "[log]\ndir = %s/runs\nname = cli\n"
             "[optim]\nwarmup_epochs = 1\n%s",
             root, root, extra);
    fixture_write_text(path, text);
    return path;
}

static const char *write_config(const char *extra)
{
    return write_config_as("run.ini", extra);
}

static void make_fixture_data(void)
{
    char data[300];
    snprintf(data, sizeof data, "%s/data", root);
    ck_assert_int_eq(mkdir(data, 0755), 0);
    fixture_image_folder(data, 12);
}

static void train_fixture_run(void)
{
    make_fixture_data();
    const char *args[] = {"--config", write_config(""), NULL};
    ck_assert_msg(run(cli_train, args) == EXIT_OK, "%s", captured_stderr());
}

/* Trains run <root>/runs/<name> with two --set overrides (short: 2 steps). */
static void train_named(const char *name, const char *set1, const char *set2)
{
    char name_set[200];
    snprintf(name_set, sizeof name_set, "log.name=%s", name);
    const char *args[] = {"--config", write_config(""), "--set", name_set, "--set",
                          "train.max_steps=2", "--set", set1, "--set", set2, NULL};
    ck_assert_msg(run(cli_train, args) == EXIT_OK, "%s: %s", name, captured_stderr());
}

/* eval_loss and eval_top1 of the one row `vitrain eval` printed. */
static void eval_row(double *loss, double *top1)
{
    const char *row = strchr(captured_stdout(), '\n');
    ck_assert_ptr_nonnull(row);
    int size, images;
    ck_assert_int_eq(sscanf(row + 1, "%d,%d,%lf,%lf", &size, &images, loss, top1), 4);
}

START_TEST(test_eval_shuffle_patches)
{
    make_fixture_data();
    /* Without positions and with mean pooling the model sees a set of
     * patches: shuffling them changes nothing but summation order. */
    train_named("nopos", "pe.type=none", "model.pool=avg");
    char run_dir[400];
    snprintf(run_dir, sizeof run_dir, "%s/runs/nopos", root);
    double loss, top1, shuffled_loss, shuffled_top1;
    const char *plain[] = {"--checkpoint", run_dir, NULL};
    ck_assert_msg(run(cli_eval, plain) == EXIT_OK, "%s", captured_stderr());
    eval_row(&loss, &top1);
    const char *shuffled[] = {"--checkpoint", run_dir, "--shuffle-patches", "4", NULL};
    ck_assert_msg(run(cli_eval, shuffled) == EXIT_OK, "%s", captured_stderr());
    eval_row(&shuffled_loss, &shuffled_top1);
    ck_assert_double_eq_tol(shuffled_loss, loss, 1e-5);
    ck_assert_double_eq(shuffled_top1, top1);
    /* With absolute positions the shuffle reaches the model. */
    train_named("withpos", "pe.type=absolute", "model.pool=avg");
    snprintf(run_dir, sizeof run_dir, "%s/runs/withpos", root);
    ck_assert_msg(run(cli_eval, plain) == EXIT_OK, "%s", captured_stderr());
    eval_row(&loss, &top1);
    ck_assert_msg(run(cli_eval, shuffled) == EXIT_OK, "%s", captured_stderr());
    eval_row(&shuffled_loss, &shuffled_top1);
    ck_assert_double_gt(fabs(shuffled_loss - loss), 1e-6);
    const char *bad[] = {"--checkpoint", run_dir, "--shuffle-patches", "-1", NULL};
    ck_assert_int_eq(run(cli_eval, bad), EXIT_USAGE);
    ck_assert_ptr_nonnull(strstr(captured_stderr(), "--shuffle-patches"));
}
END_TEST

START_TEST(test_every_encoding_evaluates_at_a_larger_resolution)
{
    /* dim 32, 2 heads: Dh = 16 fits every encoding's blocks. */
    static const char *const types[] = {"absolute", "rope_axial", "rope_mixed", "spherical",
                                        "comrope_ap", "comrope_ld", "liere"};
    make_fixture_data();
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char type_set[64], run_dir[400];
        snprintf(type_set, sizeof type_set, "pe.type=%s", types[i]);
        train_named(types[i], type_set, "model.dim=32");
        snprintf(run_dir, sizeof run_dir, "%s/runs/%s", root, types[i]);
        const char *args[] = {"--checkpoint", run_dir, "--img-size", "12", "--img-size", "20",
                              "--shuffle-patches", "1", NULL};
        ck_assert_msg(run(cli_eval, args) == EXIT_OK, "%s: %s", types[i], captured_stderr());
        ck_assert_msg(strstr(captured_stdout(), "\n20,24,") != NULL, "%s: %s", types[i],
                      captured_stdout());
        ck_assert_msg(strstr(captured_stdout(), "nan") == NULL, "%s: %s", types[i],
                      captured_stdout());
    }
}
END_TEST

START_TEST(test_train_fraction_trains_on_a_subset)
{
    make_fixture_data();
    train_named("half", "data.train_fraction=0.5", "train.seed=3");
    char report[400];
    snprintf(report, sizeof report, "%s/runs/half/report.md", root);
    /* 12 of 24 training images (6 per class); validation stays whole. */
    ck_assert_msg(strstr(fixture_read_text(report), "12 train, 24 val images") != NULL, "%s",
                  fixture_read_text(report));
}
END_TEST

START_TEST(test_eval_at_two_resolutions_with_logits)
{
    train_fixture_run();
    char run_dir[400], dump[400], dump12[420], dump16[420];
    snprintf(run_dir, sizeof run_dir, "%s/runs/cli", root);
    snprintf(dump, sizeof dump, "%s/logits.csv", root);
    const char *args[] = {"--checkpoint", run_dir, "--img-size", "12", "--img-size", "16",
                          "--dump-logits", dump, NULL};
    ck_assert_msg(run(cli_eval, args) == EXIT_OK, "%s", captured_stderr());
    const char *out = captured_stdout();
    ck_assert_msg(strncmp(out, "img_size,images,eval_loss,eval_top1,eval_top5\n12,24,", 51) == 0,
                  "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "\n16,24,"));
    /* One file per size: a header and one row per image, K = 2 logits. */
    snprintf(dump12, sizeof dump12, "%s/logits-12.csv", root);
    snprintf(dump16, sizeof dump16, "%s/logits-16.csv", root);
    const char *rows = fixture_read_text(dump12);
    ck_assert(strncmp(rows, "path,label,logit_0,logit_1\n\"", 28) == 0);
    ck_assert_int_eq(fixture_count_lines(rows), 1 + 24);
    ck_assert_int_eq(fixture_count_lines(fixture_read_text(dump16)), 1 + 24);
}
END_TEST

/* --threads 0 means OMP_NUM_THREADS, as train.threads = 0 does; below 0 is
 * a usage error that names the range. */
START_TEST(test_eval_threads_zero_is_automatic)
{
    train_fixture_run();
    char run_dir[400];
    snprintf(run_dir, sizeof run_dir, "%s/runs/cli", root);
    const char *automatic[] = {"--checkpoint", run_dir, "--threads", "0", NULL};
    ck_assert_msg(run(cli_eval, automatic) == EXIT_OK, "%s", captured_stderr());
    ck_assert_ptr_nonnull(strstr(captured_stdout(), "\n12,24,"));
    const char *negative[] = {"--checkpoint", run_dir, "--threads", "-1", NULL};
    ck_assert_int_eq(run(cli_eval, negative), EXIT_USAGE);
    ck_assert_msg(strstr(captured_stderr(), "bad --threads '-1' (0 to 4096)"), "%s",
                  captured_stderr());
}
END_TEST

/* A val folder with the classes renamed (same count, other order) is
 * refused rather than scored against the wrong labels; the run's own
 * folder evaluates. */
START_TEST(test_eval_refuses_other_classes)
{
    train_fixture_run();
    char run_dir[400], dark[400], renamed[400];
    snprintf(run_dir, sizeof run_dir, "%s/runs/cli", root);
    snprintf(dark, sizeof dark, "%s/data/val/dark", root);
    snprintf(renamed, sizeof renamed, "%s/data/val/xdark", root);
    const char *args[] = {"--checkpoint", run_dir, NULL};
    ck_assert_msg(run(cli_eval, args) == EXIT_OK, "%s", captured_stderr());
    ck_assert_int_eq(rename(dark, renamed), 0);
    ck_assert_int_eq(run(cli_eval, args), EXIT_DATA);
    ck_assert_msg(strstr(captured_stderr(), "are not those the model was trained on"), "%s",
                  captured_stderr());
    ck_assert_int_eq(rename(renamed, dark), 0);
}
END_TEST

START_TEST(test_export_matches_the_checkpoint)
{
    train_fixture_run();
    char checkpoint[400], out[400];
    snprintf(checkpoint, sizeof checkpoint, "%s/runs/cli/checkpoint-last", root);
    snprintf(out, sizeof out, "%s/exported.safetensors", root);
    const char *args[] = {"--checkpoint", checkpoint, "--out", out, NULL};
    ck_assert_msg(run(cli_export, args) == EXIT_OK, "%s", captured_stderr());

    RunConfig cfg;
    VtError err;
    ck_assert(cli_config_from_checkpoint(&cfg, checkpoint, &err) == VT_OK);
    ck_assert_int_eq(cfg.model.num_classes, 2);
    VitConfig vc;
    ck_assert(vit_config_from_run(&vc, &cfg, cfg.data.img_size, &err) == VT_OK);
    Vit a, b;
    ck_assert(vit_create(&a, &vc, 1, &err) == VT_OK);
    ck_assert(vit_create(&b, &vc, 1, &err) == VT_OK);
    CheckpointState st;
    ck_assert(checkpoint_load(checkpoint, &st, &a.param_list, a.params.data, NULL, NULL, &err) ==
              VT_OK);
    char *config_text = NULL;
    ck_assert_msg(safetensors_load(out, &b.param_list, b.params.data, &config_text, &err) == VT_OK,
                  "%s", err.message);
    ck_assert(memcmp(a.params.data, b.params.data, a.param_list.total * sizeof(float)) == 0);
    ck_assert_str_eq(config_text, st.config);
    free(config_text);
    free((char *)st.config);
    vit_free(&a);
    vit_free(&b);
    /* An export exports again to the same bytes. */
    char again[400];
    snprintf(again, sizeof again, "%s/again.safetensors", root);
    const char *re[] = {"--checkpoint", out, "--out", again, NULL};
    ck_assert_msg(run(cli_export, re) == EXIT_OK, "%s", captured_stderr());
    size_t n1, n2;
    unsigned char *first = fixture_read_bytes(out, &n1), *second = fixture_read_bytes(again, &n2);
    ck_assert(n1 == n2 && memcmp(first, second, n1) == 0);
    free(first);
    free(second);
    /* A FIFO (like a device) is not replaced by a file. */
    char fifo[400];
    snprintf(fifo, sizeof fifo, "%s/pipe", root);
    ck_assert_int_eq(mkfifo(fifo, 0600), 0);
    const char *to_fifo[] = {"--checkpoint", out, "--out", fifo, NULL};
    ck_assert_int_eq(run(cli_export, to_fifo), EXIT_IO);
    ck_assert_msg(strstr(captured_stderr(), "it is a device, FIFO or socket, not a regular file"),
                  "%s", captured_stderr());
    struct stat fifo_st;
    ck_assert(stat(fifo, &fifo_st) == 0 && S_ISFIFO(fifo_st.st_mode));
}
END_TEST

/* A resumed run keeps what makes its epochs: the steps so far were
 * counted in batches of a size over a split of a size, and the loader
 * finds its place from them. (24 images, batches of 8: 3 steps an epoch.) */
START_TEST(test_resume_keeps_the_epochs)
{
    train_fixture_run(); /* 2 epochs: step 6 */
    char run_dir[400];
    snprintf(run_dir, sizeof run_dir, "%s/runs/cli", root);
    const char *batch[] = {"--resume", run_dir, "--set", "train.batch_size=4", NULL};
    ck_assert_int_eq(run(cli_train, batch), EXIT_USAGE);
    ck_assert_msg(strstr(captured_stderr(), "train.batch_size cannot change on --resume (8, "
                                            "the run's, against 4)") != NULL,
                  "%s", captured_stderr());
    const char *fraction[] = {"--resume", run_dir, "--set", "data.train_fraction=0.5", NULL};
    ck_assert_int_eq(run(cli_train, fraction), EXIT_USAGE);
    ck_assert_msg(strstr(captured_stderr(), "data.train_fraction cannot change on --resume") !=
                      NULL,
                  "%s", captured_stderr());
    /* The same value is no change: a third epoch, to step 9. */
    const char *same[] = {"--resume", run_dir, "--set", "train.batch_size=8", "--set",
                          "train.epochs=3", NULL};
    ck_assert_msg(run(cli_train, same) == EXIT_OK, "%s", captured_stderr());
    /* 32 images now: 4 steps an epoch would put step 9 in epoch 2, not 3. */
    for (int i = 0; i < 4; i++) {
        char cmd[1200];
        snprintf(cmd, sizeof cmd,
                 "cp '%s/data/train/dark/%02d.png' '%s/data/train/dark/more%d.png' && "
                 "cp '%s/data/train/light/%02d.png' '%s/data/train/light/more%d.png'",
                 root, i, root, i, root, i, root, i);
        ck_assert_int_eq(system(cmd), 0);
    }
    const char *more[] = {"--resume", run_dir, "--set", "train.epochs=4", NULL};
    ck_assert_int_eq(run(cli_train, more), EXIT_DATA);
    ck_assert_msg(strstr(captured_stderr(), "it stopped in epoch 3 at step 9, but the train split") !=
                      NULL,
                  "%s", captured_stderr());
    ck_assert_msg(strstr(captured_stderr(), "4 steps per epoch (32 images, batch 8)") != NULL,
                  "%s", captured_stderr());
}
END_TEST

START_TEST(test_bad_invocations)
{
    /* Each: arguments, expected status, a fragment of the message. */
    char bad_key[700], good[700], missing[400];
    snprintf(missing, sizeof missing, "%s/nope.ini", root);
    snprintf(bad_key, sizeof bad_key, "%s", write_config("[optim]\nlrr = 1\n"));
    snprintf(good, sizeof good, "%s", write_config_as("good.ini", ""));
    const struct {
        const char *args[6];
        int status;
        const char *message;
    } cases[] = {
        {{"--config", bad_key, NULL}, EXIT_USAGE, "run.ini:22: unknown key 'lrr' in section [optim]"},
        {{"--config", missing, NULL}, EXIT_IO, "nope.ini"},
        {{"--config", bad_key, "--resume", root, NULL}, EXIT_USAGE, "exclude each other"},
        {{NULL}, EXIT_USAGE, "give --config FILE or --resume PATH"},
        {{"--config", good, "--set", "train.batch_size=0", NULL}, EXIT_USAGE,
         "--set train.batch_size=0: 0 is out of range"},
        {{"--config", good, "--set", "train.batch", NULL}, EXIT_USAGE, "train.batch"},
        {{"--bogus", "1", NULL}, EXIT_USAGE, "unknown option '--bogus'"},
        {{"--bogus", NULL}, EXIT_USAGE, "unknown option '--bogus'"},
        {{"--config", NULL}, EXIT_USAGE, "needs a value"},
        {{"--config=run.ini", NULL}, EXIT_USAGE, "give the value after a space: --config run.ini"},
        {{"--config", good, "--config", good, NULL}, EXIT_USAGE, "--config is given twice"},
        {{"--resume", root, "--set", "log.name=other", NULL}, EXIT_USAGE,
         "--set log.name does not apply with --resume"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int status = run(cli_train, cases[i].args);
        const char *message = captured_stderr();
        ck_assert_msg(status == cases[i].status, "case %zu: status %d, stderr: %s", i, status,
                      message);
        ck_assert_msg(strstr(message, cases[i].message) != NULL, "case %zu: stderr: %s", i,
                      message);
    }
}
END_TEST

/* Every command tells an unknown option from a known one without its
 * value, and eval checks its sizes before it prints anything. */
START_TEST(test_unknown_options_are_named)
{
    int (*cmds[])(int, char **) = {cli_eval, cli_export, cli_synthetic, cli_arrows};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        const char *args[] = {"--bogus", NULL};
        ck_assert_int_eq(run(cmds[i], args), EXIT_USAGE);
        ck_assert_msg(strstr(captured_stderr(), "unknown option '--bogus'"), "command %zu: %s", i,
                      captured_stderr());
    }
    const char *eval_eq[] = {"--checkpoint=run", NULL};
    ck_assert_int_eq(run(cli_eval, eval_eq), EXIT_USAGE);
    ck_assert_ptr_nonnull(strstr(captured_stderr(), "--checkpoint run"));
    const char *export_end[] = {"--out", NULL};
    ck_assert_int_eq(run(cli_export, export_end), EXIT_USAGE);
    ck_assert_ptr_nonnull(strstr(captured_stderr(), "option --out needs a value"));
    train_fixture_run();
    char run_dir[400];
    snprintf(run_dir, sizeof run_dir, "%s/runs/cli", root);
    const char *odd_size[] = {"--checkpoint", run_dir, "--img-size", "13", NULL};
    ck_assert_int_eq(run(cli_eval, odd_size), EXIT_USAGE);
    ck_assert_msg(strstr(captured_stderr(), "--img-size 13 is not a multiple"), "%s",
                  captured_stderr());
    ck_assert_str_eq(captured_stdout(), "");
    /* At crop_pct 0.4, a size of 8192 is resized to 20480 pixels a side. */
    train_named("crop", "data.crop_pct=0.4", "train.seed=1");
    snprintf(run_dir, sizeof run_dir, "%s/runs/crop", root);
    const char *huge_size[] = {"--checkpoint", run_dir, "--img-size", "12", "--img-size",
                               "8192", NULL};
    ck_assert_int_eq(run(cli_eval, huge_size), EXIT_USAGE);
    ck_assert_msg(strstr(captured_stderr(), "--img-size 8192 with the run's data.crop_pct 0.4 "
                                            "resizes images to 20480 pixels a side, over the "
                                            "16384"),
                  "%s", captured_stderr());
    ck_assert_str_eq(captured_stdout(), "");
}
END_TEST

/* vitrain synthetic refuses what the INI config refuses too: a preset
 * with explicit sizes (in either order), a learning rate that is not
 * finite; --threads 0 means automatic, as its help says. */
START_TEST(test_synthetic_options)
{
    const struct {
        const char *args[8];
        const char *message;
    } cases[] = {
        {{"--dim", "32", "--preset", "tiny", NULL}, "--preset tiny cannot be combined with --dim"},
        {{"--preset", "tiny", "--heads", "4", NULL},
         "--preset tiny cannot be combined with --heads"},
        {{"--lr", "inf", NULL}, "bad value for option: --lr"},
        {{"--weight-decay", "nan", NULL}, "bad value for option: --weight-decay"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_int_eq(run(cli_synthetic, cases[i].args), EXIT_USAGE);
        ck_assert_msg(strstr(captured_stderr(), cases[i].message), "case %zu: %s", i,
                      captured_stderr());
    }
    const char *automatic[] = {"--threads", "0",       "--steps", "1", "--samples",
                               "8",         "--batch", "8",       NULL};
    ck_assert_msg(run(cli_synthetic, automatic) == EXIT_OK, "%s", captured_stderr());
}
END_TEST

/* An option the chosen encoding does not read is named in a warning; one
 * it reads, or a default, is not. */
START_TEST(test_ignored_encoding_options_are_named)
{
    make_fixture_data();
    const char *args[] = {"--config", write_config(""), "--set", "train.max_steps=1", "--set",
                          "pe.sigma=0.1", "--set", "pe.share_heads=true", NULL};
    ck_assert_msg(run(cli_train, args) == EXIT_OK, "%s", captured_stderr());
    ck_assert_msg(strstr(captured_stderr(), "warning: pe.type absolute does not read pe.sigma, "
                                            "pe.share_heads; they are ignored"),
                  "%s", captured_stderr());
    const char *liere[] = {"--config", write_config("[pe]\ntype = liere\n"), "--set",
                           "train.max_steps=1", "--set", "log.name=liere", "--set",
                           "pe.share_heads=true", NULL};
    ck_assert_msg(run(cli_train, liere) == EXIT_OK, "%s", captured_stderr());
    ck_assert_msg(!strstr(captured_stderr(), "warning"), "%s", captured_stderr());
}
END_TEST

START_TEST(test_bad_data_root_fails_before_training)
{
    char set[400];
    snprintf(set, sizeof set, "data.root=%s/absent", root);
    const char *args[] = {"--config", write_config(""), "--set", set, NULL};
    ck_assert_int_eq(run(cli_train, args), EXIT_IO);
    ck_assert_msg(strstr(captured_stderr(), "absent") != NULL, "%s", captured_stderr());
}
END_TEST

START_TEST(test_help_tells_and_exits_zero)
{
    int (*cmds[])(int, char **) = {cli_train, cli_eval, cli_export, cli_synthetic, cli_arrows};
    for (size_t i = 0; i < sizeof cmds / sizeof cmds[0]; i++) {
        const char *args[] = {"--help", NULL};
        ck_assert_int_eq(run(cmds[i], args), EXIT_OK);
        ck_assert_ptr_nonnull(strstr(captured_stdout(), "usage: vitrain"));
    }
    const char *eval_args[] = {"--img-size", "12", NULL};
    ck_assert_int_eq(run(cli_eval, eval_args), EXIT_USAGE);
    ck_assert_ptr_nonnull(strstr(captured_stderr(), "--checkpoint"));
}
END_TEST

START_TEST(test_shipped_configs_build)
{
    /* Every config in configs/ loads, validates and builds its model (the
     * encoding must fit the head size), for 10 classes. Runs from the
     * repository root, as make test does. */
    const char *files[] = {"quickstart", "absolute_vit_s", "rope_axial_vit_s",
                           "rope_mixed_vit_s", "spherical_vit_s", "comrope_ap_vit_s",
                           "comrope_ld_vit_s", "liere_vit_s", "study/fmnist_absolute",
                           "study/fmnist_rope_axial", "study/fmnist_rope_mixed",
                           "study/fmnist_spherical", "study/fmnist_comrope_ap",
                           "study/fmnist_comrope_ld", "study/fmnist_liere",
                           "study/arrows_absolute", "study/arrows_rope_axial",
                           "study/arrows_rope_mixed", "study/arrows_spherical",
                           "study/arrows_comrope_ap", "study/arrows_comrope_ld",
                           "study/arrows_liere"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char path[256];
        snprintf(path, sizeof path, "configs/%s.ini", files[i]);
        static RunConfig cfg;
        VtError err;
        config_defaults(&cfg);
        ck_assert_msg(config_load(&cfg, path, &err) == VT_OK, "%s", err.message);
        ck_assert_msg(config_validate(&cfg, &err) == VT_OK, "%s", err.message);
        cfg.model.num_classes = 10;
        VitConfig vc;
        Vit m;
        ck_assert_msg(vit_config_from_run(&vc, &cfg, cfg.data.img_size, &err) == VT_OK, "%s: %s",
                      path, err.message);
        ck_assert_msg(vit_create(&m, &vc, 1, &err) == VT_OK, "%s: %s", path, err.message);
        vit_free(&m);
    }
}
END_TEST

Suite *cli_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_with_timeout("commands", 120, NULL);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_eval_at_two_resolutions_with_logits);
    tcase_add_test(tc, test_export_matches_the_checkpoint);
    tcase_add_test(tc, test_bad_invocations);
    tcase_add_test(tc, test_resume_keeps_the_epochs);
    tcase_add_test(tc, test_synthetic_options);
    tcase_add_test(tc, test_unknown_options_are_named);
    tcase_add_test(tc, test_eval_refuses_other_classes);
    tcase_add_test(tc, test_eval_threads_zero_is_automatic);
    tcase_add_test(tc, test_ignored_encoding_options_are_named);
    tcase_add_test(tc, test_bad_data_root_fails_before_training);
    tcase_add_test(tc, test_help_tells_and_exits_zero);
    tcase_add_test(tc, test_shipped_configs_build);
    tcase_add_test(tc, test_eval_shuffle_patches);
    tcase_add_test(tc, test_every_encoding_evaluates_at_a_larger_resolution);
    tcase_add_test(tc, test_train_fraction_trains_on_a_subset);
    suite_add_tcase(s, tc);
    return s;
}
