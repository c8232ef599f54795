/*
 * test_trainer.c - whole runs over a small generated image folder: the run
 * folder's files and CSV headers, checkpoints, exact resume, export, and
 * evaluation from a checkpoint.
 */
#include "fixtures.h"
#include "suites.h"

#include "../src/train/fault_injection.h"
#include "vitrain/checkpoint.h"
#include "vitrain/config.h"
#include "vitrain/trainer.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char root[256];

static void make_folder(void)
{
    fixture_temp_dir(root, sizeof root);
    fixture_image_folder(root, 24);
}

static void teardown(void)
{
    if (root[0])
        fixture_remove_tree(root);
}

static void small_config(RunConfig *cfg, const char *name)
{
    VtError err;
    config_defaults(cfg);
    char set[600];
    snprintf(set, sizeof set, "data.root=%s", root);
    const char *sets[] = {set, "data.img_size=12", "data.channels=1", "data.mean=0.5",
                          "data.std=0.25", "data.hflip=0.5", "model.dim=16", "model.depth=2",
                          "model.heads=2", "model.mlp_dim=32", "model.patch_size=4",
                          "train.batch_size=8", "train.epochs=3", "optim.warmup_epochs=1",
                          "train.threads=1", "data.prefetch=2"};
    for (size_t i = 0; i < sizeof sets / sizeof sets[0]; i++)
        ck_assert_msg(config_set(cfg, sets[i], &err) == VT_OK, "%s", err.message);
    snprintf(set, sizeof set, "log.dir=%s/runs", root);
    ck_assert(config_set(cfg, set, &err) == VT_OK);
    snprintf(set, sizeof set, "log.name=%s", name);
    ck_assert(config_set(cfg, set, &err) == VT_OK);
    ck_assert_msg(config_validate(cfg, &err) == VT_OK, "%s", err.message);
}

static void run_dir(char *out, size_t size, const char *name)
{
    snprintf(out, size, "%s/runs/%s", root, name);
}

static void train_ok(const RunConfig *cfg, const char *resume)
{
    char dir[512];
    run_dir(dir, sizeof dir, cfg->log.name);
    VtError err;
    VtCode code = train_run(cfg, dir, resume, &err);
    ck_assert_msg(code == VT_OK, "training failed: %s", err.message);
}

START_TEST(test_run_writes_its_folder)
{
    make_folder();
    RunConfig cfg;
    small_config(&cfg, "basic");
    train_ok(&cfg, NULL);
    char dir[512], path[600];
    run_dir(dir, sizeof dir, "basic");
    const char *files[] = {"config.ini", "steps.csv", "timing.csv", "summary.csv", "checkpoint-last",
                           "checkpoint-best", "model.safetensors", "report.md"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        ck_assert_msg(access(path, R_OK) == 0, "missing %s", path);
    }
    snprintf(path, sizeof path, "%s/summary.csv", dir);
    const char *summary = fixture_read_text(path);
    const char *header = "epoch,train_loss,eval_loss,eval_top1,eval_top5,lr,img_per_sec,"
                         "epoch_seconds\n";
    ck_assert_msg(strncmp(summary, header, strlen(header)) == 0, "summary header: %.100s",
                  summary);
    /* 3 epochs of 48/8 = 6 steps: one header and three rows. */
    ck_assert_int_eq(fixture_count_lines(summary), 4);
    snprintf(path, sizeof path, "%s/steps.csv", dir);
    const char *steps = fixture_read_text(path);
    header = "step,epoch,loss,lr,grad_norm\n";
    ck_assert(strncmp(steps, header, strlen(header)) == 0);
    ck_assert_int_eq(fixture_count_lines(steps), 1 + 18);
    snprintf(path, sizeof path, "%s/timing.csv", dir);
    const char *timing = fixture_read_text(path);
    header = "step,seconds,img_per_sec\n";
    ck_assert(strncmp(timing, header, strlen(header)) == 0);
    ck_assert_int_eq(fixture_count_lines(timing), 1 + 18);
    /* The saved config reloads to the same run. */
    RunConfig reloaded;
    VtError err;
    config_defaults(&reloaded);
    snprintf(path, sizeof path, "%s/config.ini", dir);
    ck_assert_msg(config_load(&reloaded, path, &err) == VT_OK, "%s", err.message);
    ck_assert_int_eq(reloaded.model.dim, 16);
    ck_assert_str_eq(reloaded.data.root, root);
    /* A second run into the same folder is refused, naming --resume. */
    ck_assert_int_eq(train_run(&cfg, dir, NULL, &err), VT_ERR_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "--resume"));
}
END_TEST

/* Loads the parameters stored in a run's checkpoint-last. */
static float *checkpoint_params(const char *name, size_t *count)
{
    char dir[512], path[600];
    run_dir(dir, sizeof dir, name);
    snprintf(path, sizeof path, "%s/checkpoint-last", dir);
    RunConfig cfg;
    VtError err;
    char *text;
    ck_assert(checkpoint_read_config(path, &text, &err) == VT_OK);
    config_defaults(&cfg);
    ck_assert(config_parse(&cfg, text, path, &err) == VT_OK);
    free(text);
    VitConfig vc;
    ck_assert(vit_config_from_run(&vc, &cfg, cfg.data.img_size, &err) == VT_OK);
    static Vit m;
    ck_assert(vit_create(&m, &vc, 1, &err) == VT_OK);
    CheckpointState st;
    ck_assert_msg(checkpoint_load(path, &st, &m.param_list, m.params.data, NULL, NULL, &err) ==
                      VT_OK,
                  "%s", err.message);
    free((char *)st.config);
    float *params = malloc(m.param_list.total * sizeof(float));
    memcpy(params, m.params.data, m.param_list.total * sizeof(float));
    *count = m.param_list.total;
    vit_free(&m);
    return params;
}

/* A run's summary.csv without its timing columns (img_per_sec and
 * epoch_seconds, the last two): what the seed determines (malloc'ed). */
static char *summary_without_timing(const char *name)
{
    char path[600];
    snprintf(path, sizeof path, "%s/runs/%s/summary.csv", root, name);
    const char *text = fixture_read_text(path);
    char *out = malloc(strlen(text) + 1), *o = out;
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        end = end ? end : line + strlen(line);
        const char *cut = end;
        for (int commas = 0; cut > line && commas < 2; cut--)
            if (cut[-1] == ',')
                commas++;
        memcpy(o, line, (size_t)(cut - line));
        o += cut - line;
        *o++ = '\n';
        line = *end ? end + 1 : end;
    }
    *o = '\0';
    return out;
}

START_TEST(test_resume_is_bit_identical)
{
    /* k = 7 steps, save, resume for 7 more == 14 steps straight. The cut
     * falls inside epoch 1 (6 steps per epoch), with drop path on. */
    make_folder();
    RunConfig straight, part;
    VtError err;
    small_config(&straight, "straight");
    ck_assert(config_set(&straight, "train.max_steps=14", &err) == VT_OK);
    ck_assert(config_set(&straight, "model.drop_path=0.2", &err) == VT_OK);
    train_ok(&straight, NULL);

    small_config(&part, "part");
    ck_assert(config_set(&part, "train.max_steps=7", &err) == VT_OK);
    ck_assert(config_set(&part, "model.drop_path=0.2", &err) == VT_OK);
    train_ok(&part, NULL);
    ck_assert(config_set(&part, "train.max_steps=14", &err) == VT_OK);
    char dir[512], checkpoint[600], stale[700], kept[700];
    run_dir(dir, sizeof dir, "part");
    snprintf(checkpoint, sizeof checkpoint, "%s/checkpoint-last", dir);
    /* What a write killed midway leaves is removed; other files stay. */
    snprintf(stale, sizeof stale, "%s/checkpoint-last.tmp.4242", dir);
    snprintf(kept, sizeof kept, "%s/notes.tmp.txt", dir);
    fixture_write_text(stale, "half a checkpoint");
    fixture_write_text(kept, "mine");
    train_ok(&part, checkpoint);
    ck_assert_int_eq(access(stale, F_OK), -1);
    ck_assert_int_eq(access(kept, F_OK), 0);

    size_t na, nb;
    float *a = checkpoint_params("straight", &na), *b = checkpoint_params("part", &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_msg(memcmp(a, b, na * sizeof(float)) == 0, "resumed parameters differ");
    free(a);
    free(b);
    /* The resumed steps.csv holds each step once. */
    char path[600];
    snprintf(path, sizeof path, "%s/steps.csv", dir);
    const char *steps = fixture_read_text(path);
    ck_assert_int_eq(fixture_count_lines(steps), 1 + 14);
    snprintf(path, sizeof path, "%s/timing.csv", dir);
    ck_assert_int_eq(fixture_count_lines(fixture_read_text(path)), 1 + 14);
    /* summary.csv too, train_loss of the epoch cut in two included (it
     * averages all six of its steps, those before the resume as well). */
    char *whole = summary_without_timing("straight"), *resumed = summary_without_timing("part");
    ck_assert_int_eq(fixture_count_lines(whole), 1 + 3);
    ck_assert_str_eq(resumed, whole);
    free(whole);
    free(resumed);
}
END_TEST

/* A fresh fixture folder and a run `name` in it, stopped by max_steps
 * ("train.max_steps=N"); cfg keeps its config. */
static void train_short(RunConfig *cfg, const char *name, const char *max_steps)
{
    VtError err;
    make_folder();
    small_config(cfg, name);
    ck_assert(config_set(cfg, max_steps, &err) == VT_OK);
    train_ok(cfg, NULL);
}

/* --resume with a checkpoint file writes the run next to it: into a
 * folder of other files (no steps.csv) it refuses, leaving them alone; into
 * a folder holding the checkpoint alone it goes ahead. */
START_TEST(test_resume_refuses_a_foreign_folder)
{
    RunConfig cfg;
    VtError err;
    train_short(&cfg, "origin", "train.max_steps=3");
    char from[600], dir[600], ckpt[700], notes[700], steps[700];
    run_dir(from, sizeof from, "origin");
    snprintf(from + strlen(from), sizeof from - strlen(from), "/checkpoint-last");
    snprintf(dir, sizeof dir, "%s/mine", root);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    snprintf(ckpt, sizeof ckpt, "%s/copy.ckpt", dir);
    size_t size;
    unsigned char *bytes = fixture_read_bytes(from, &size);
    fixture_write_bytes(ckpt, bytes, size);
    free(bytes);
    snprintf(notes, sizeof notes, "%s/config.ini", dir);
    fixture_write_text(notes, "# my notes\n");
    ck_assert(config_set(&cfg, "train.max_steps=6", &err) == VT_OK);
    ck_assert_int_eq(train_run(&cfg, dir, ckpt, &err), VT_ERR_ARGUMENT);
    ck_assert_msg(strstr(err.message, "no steps.csv") && strstr(err.message, notes), "%s",
                  err.message);
    ck_assert_str_eq(fixture_read_text(notes), "# my notes\n");
    ck_assert_int_eq(unlink(notes), 0);
    ck_assert_msg(train_run(&cfg, dir, ckpt, &err) == VT_OK, "%s", err.message);
    snprintf(steps, sizeof steps, "%s/steps.csv", dir);
    ck_assert_int_eq(access(steps, R_OK), 0);
}
END_TEST

/* Resuming in a folder where no file can be created fails before any
 * training (it failed at the first checkpoint, after the steps). As root
 * the resume runs in a child that has become the user nobody. */
START_TEST(test_resume_in_a_read_only_folder_fails_first)
{
    RunConfig cfg;
    VtError err;
    train_short(&cfg, "ro", "train.max_steps=2");
    char dir[600], checkpoint[700], steps[700];
    run_dir(dir, sizeof dir, "ro");
    snprintf(checkpoint, sizeof checkpoint, "%s/checkpoint-last", dir);
    snprintf(steps, sizeof steps, "%s/steps.csv", dir);
    ck_assert_int_eq(chmod(root, 0755), 0);
    ck_assert_int_eq(chmod(dir, 0555), 0);
    ck_assert_int_eq(chmod(steps, 0666), 0);
    char config[700];
    snprintf(config, sizeof config, "%s/config.ini", dir);
    ck_assert_int_eq(chmod(config, 0666), 0);
    ck_assert(config_set(&cfg, "train.max_steps=12", &err) == VT_OK);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(2);
        VtError child_err;
        VtCode code = train_run(&cfg, dir, checkpoint, &child_err);
        _exit(code == VT_ERR_IO && strstr(child_err.message, "cannot create files in") ? 0 : 1);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_int_eq(chmod(dir, 0755), 0);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %d", status);
    /* Nothing was trained: steps.csv still ends at step 2. */
    ck_assert_int_eq(fixture_count_lines(fixture_read_text(steps)), 1 + 2);
}
END_TEST

/* Same config, seed and threads: the same steps.csv, byte for byte (drop
 * path and flips on, so every random stream is in play). */
START_TEST(test_rerun_writes_the_same_steps_csv)
{
    make_folder();
    RunConfig a, b;
    VtError err;
    small_config(&a, "first");
    small_config(&b, "second");
    ck_assert(config_set(&a, "model.drop_path=0.2", &err) == VT_OK);
    ck_assert(config_set(&b, "model.drop_path=0.2", &err) == VT_OK);
    train_ok(&a, NULL);
    train_ok(&b, NULL);
    char path[600];
    snprintf(path, sizeof path, "%s/runs/first/steps.csv", root);
    char *first = strdup(fixture_read_text(path));
    snprintf(path, sizeof path, "%s/runs/second/steps.csv", root);
    ck_assert_int_eq(fixture_count_lines(first), 1 + 18);
    ck_assert_str_eq(fixture_read_text(path), first);
    free(first);
}
END_TEST

/* The bytes of a file (static buffer). */
static size_t read_bytes(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    size_t n = fread(buf, 1, cap, f);
    fclose(f);
    return n;
}

START_TEST(test_signal_then_resume_is_bit_identical)
{
    /* A child trains; after a random number of steps (different on every
     * run of the test) it gets SIGINT, finishes its step, writes
     * checkpoint-last and stops with VT_ERR_INTERRUPTED. Resuming must end
     * exactly where an uninterrupted run ends. */
    make_folder();
    RunConfig cfg;
    VtError err;
    small_config(&cfg, "interrupted");
    ck_assert(config_set(&cfg, "train.epochs=40", &err) == VT_OK);
    ck_assert(config_set(&cfg, "optim.warmup_epochs=2", &err) == VT_OK);
    char dir[512], steps[600], checkpoint[600];
    run_dir(dir, sizeof dir, "interrupted");
    snprintf(steps, sizeof steps, "%s/steps.csv", dir);
    snprintf(checkpoint, sizeof checkpoint, "%s/checkpoint-last", dir);

    const int stop_after = 3 + (int)(getpid() % 40);
    pid_t child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        VtCode code = train_run(&cfg, dir, NULL, &err);
        _exit(code == VT_ERR_INTERRUPTED ? 42 : 1);
    }
    while (fixture_file_lines(steps) < 1 + stop_after)
        usleep(1000);
    ck_assert_int_eq(kill(child, SIGINT), 0);
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 42,
                  "the run did not stop on SIGINT (status %d)", status);
    int done = fixture_file_lines(steps) - 1;
    printf("interrupted after step %d of 240 (asked after %d)\n", done, stop_after);
    ck_assert_int_lt(done, 240);

    train_ok(&cfg, checkpoint);
    RunConfig straight;
    small_config(&straight, "uninterrupted");
    ck_assert(config_set(&straight, "train.epochs=40", &err) == VT_OK);
    ck_assert(config_set(&straight, "optim.warmup_epochs=2", &err) == VT_OK);
    train_ok(&straight, NULL);
    size_t na, nb;
    float *a = checkpoint_params("uninterrupted", &na), *b = checkpoint_params("interrupted", &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_msg(memcmp(a, b, na * sizeof(float)) == 0, "resumed parameters differ");
    ck_assert_int_eq(fixture_file_lines(steps), 1 + 240);
    free(a);
    free(b);
}
END_TEST

/* Trains 7 steps of run `name`, then plants a NaN in one weight of its
 * checkpoint-last (checksum recomputed); returns the checkpoint's path. */
static const char *run_with_planted_nan(RunConfig *cfg, const char *name)
{
    static char path[600];
    VtError err;
    small_config(cfg, name);
    ck_assert(config_set(cfg, "train.max_steps=7", &err) == VT_OK);
    train_ok(cfg, NULL);
    char dir[512];
    run_dir(dir, sizeof dir, name);
    snprintf(path, sizeof path, "%s/checkpoint-last", dir);

    VitConfig vc;
    Vit m;
    cfg->model.num_classes = 2;
    ck_assert(vit_config_from_run(&vc, cfg, cfg->data.img_size, &err) == VT_OK);
    ck_assert(vit_create(&m, &vc, 1, &err) == VT_OK);
    float *mom = calloc(m.param_list.total, sizeof(float));
    float *vel = calloc(m.param_list.total, sizeof(float));
    CheckpointState st;
    ck_assert(checkpoint_load(path, &st, &m.param_list, m.params.data, mom, vel, &err) == VT_OK);
    int t = tensor_list_find(&m.param_list, "blocks.1.attn.proj.weight");
    arena_tensor(&m.params, t)[3] = NAN;
    ck_assert(checkpoint_save(path, &st, &m.param_list, m.params.data, mom, vel, &err) == VT_OK);
    free((char *)st.config);
    free(mom);
    free(vel);
    vit_free(&m);
    ck_assert(config_set(cfg, "train.max_steps=30", &err) == VT_OK);
    return path;
}

START_TEST(test_nan_stops_and_keeps_the_checkpoint)
{
    /* Resuming from a checkpoint with a NaN weight stops at once, naming
     * the step and the tensor, and checkpoint-last is left as it was. */
    make_folder();
    RunConfig cfg;
    VtError err;
    const char *path = run_with_planted_nan(&cfg, "nan");
    static unsigned char before[1 << 20], after[1 << 20];
    size_t n_before = read_bytes(path, before, sizeof before);
    char dir[512];
    run_dir(dir, sizeof dir, "nan");
    ck_assert_int_eq(train_run(&cfg, dir, path, &err), VT_ERR_NUMERIC);
    ck_assert_msg(strstr(err.message, "step 7") && strstr(err.message, "blocks.1.attn.proj.weight"),
                  "message: %s", err.message);
    ck_assert_uint_eq(read_bytes(path, after, sizeof after), n_before);
    ck_assert(memcmp(before, after, n_before) == 0);
}
END_TEST

START_TEST(test_nan_skip_step_goes_on_then_gives_up)
{
    /* Under on_nan = skip_step each bad step is left out and logged; with
     * a broken weight every step is bad, so after 10 in a row the run
     * stops, still naming the tensor. */
    make_folder();
    RunConfig cfg;
    VtError err;
    const char *path = run_with_planted_nan(&cfg, "skip");
    ck_assert(config_set(&cfg, "train.on_nan=skip_step", &err) == VT_OK);
    /* No evaluation in between: with the broken weight it would fail first. */
    ck_assert(config_set(&cfg, "train.eval_every=100", &err) == VT_OK);
    char dir[512], steps[600];
    run_dir(dir, sizeof dir, "skip");
    ck_assert_int_eq(train_run(&cfg, dir, path, &err), VT_ERR_NUMERIC);
    ck_assert_msg(strstr(err.message, "10 steps in a row") &&
                      strstr(err.message, "blocks.1.attn.proj.weight"),
                  "message: %s", err.message);
    /* Steps 7..15 were skipped and logged; the 10th stopped the run. */
    snprintf(steps, sizeof steps, "%s/steps.csv", dir);
    ck_assert_int_eq(fixture_file_lines(steps), 1 + 7 + 9);
}
END_TEST

static int64_t poisoned_step;

static double poison_one_step(int64_t step, double loss)
{
    return step == poisoned_step ? NAN : loss;
}

/* A transient fault under on_nan = skip_step: the bad step changes
 * nothing (4 steps with the last one poisoned == 3 clean steps, bit for
 * bit), and a run with a bad step in its middle goes on to the end. */
START_TEST(test_skip_step_survives_a_transient_fault)
{
    make_folder();
    RunConfig clean, last, middle;
    VtError err;
    small_config(&clean, "clean");
    ck_assert(config_set(&clean, "train.max_steps=3", &err) == VT_OK);
    train_ok(&clean, NULL);

    small_config(&last, "last");
    ck_assert(config_set(&last, "train.max_steps=4", &err) == VT_OK);
    ck_assert(config_set(&last, "train.on_nan=skip_step", &err) == VT_OK);
    trainer_loss_hook = poison_one_step;
    poisoned_step = 3;
    train_ok(&last, NULL);
    size_t na, nb;
    float *a = checkpoint_params("clean", &na), *b = checkpoint_params("last", &nb);
    ck_assert_uint_eq(na, nb);
    ck_assert_msg(memcmp(a, b, na * sizeof(float)) == 0, "a skipped step changed parameters");
    free(a);
    free(b);

    small_config(&middle, "middle");
    ck_assert(config_set(&middle, "train.on_nan=skip_step", &err) == VT_OK);
    poisoned_step = 7;
    train_ok(&middle, NULL);
    char path[600];
    snprintf(path, sizeof path, "%s/runs/middle/steps.csv", root);
    const char *steps = fixture_read_text(path);
    ck_assert_int_eq(fixture_count_lines(steps), 1 + 18);
    ck_assert_ptr_nonnull(strstr(steps, "\n7,1,nan,"));
    trainer_loss_hook = NULL;
}
END_TEST

Suite *trainer_suite(void)
{
    Suite *s = suite_create("trainer");
    TCase *tc = tcase_with_timeout("runs", 120, NULL);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_run_writes_its_folder);
    tcase_add_test(tc, test_resume_is_bit_identical);
    tcase_add_test(tc, test_resume_refuses_a_foreign_folder);
    tcase_add_test(tc, test_resume_in_a_read_only_folder_fails_first);
    tcase_add_test(tc, test_signal_then_resume_is_bit_identical);
    tcase_add_test(tc, test_nan_stops_and_keeps_the_checkpoint);
    tcase_add_test(tc, test_nan_skip_step_goes_on_then_gives_up);
    tcase_add_test(tc, test_rerun_writes_the_same_steps_csv);
    tcase_add_test(tc, test_skip_step_survives_a_transient_fault);
    suite_add_tcase(s, tc);
    return s;
}
