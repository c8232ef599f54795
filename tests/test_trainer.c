/*
 * test_trainer.c - whole runs over a small generated image folder: the run
 * folder's files and CSV headers, checkpoints, exact resume, export, and
 * evaluation from a checkpoint.
 */
#include "fixtures.h"
#include "suites.h"

#include "vitrain/checkpoint.h"
#include "vitrain/config.h"
#include "vitrain/trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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
    const char *files[] = {"config.ini", "steps.csv", "summary.csv", "checkpoint-last",
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
    header = "step,epoch,loss,lr,grad_norm,img_per_sec\n";
    ck_assert(strncmp(steps, header, strlen(header)) == 0);
    ck_assert_int_eq(fixture_count_lines(steps), 1 + 18);
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
    char dir[512], checkpoint[600];
    run_dir(dir, sizeof dir, "part");
    snprintf(checkpoint, sizeof checkpoint, "%s/checkpoint-last", dir);
    train_ok(&part, checkpoint);

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
}
END_TEST

Suite *trainer_suite(void)
{
    Suite *s = suite_create("trainer");
    TCase *tc = tcase_with_timeout("runs", 120, NULL);
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, test_run_writes_its_folder);
    tcase_add_test(tc, test_resume_is_bit_identical);
    suite_add_tcase(s, tc);
    return s;
}
