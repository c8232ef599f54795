/*
 * test_bad_inputs.c - bad inputs met through the command line, as a user
 * meets them: every one must end with a clear message on stderr and the
 * documented non-zero exit status, never a crash or a silent result.
 *
 *   config   every file of tests/bad_inputs/config/ (its first line says
 *            "; expect: <message fragment>") given to --config;
 *   images   every file of tests/bad_inputs/images/MANIFEST placed in a
 *            small image folder, under data.on_bad_image = error and skip;
 *   folders  what cannot live in git: symlink loops, dangling links,
 *            non-UTF-8 names, a folder named like an image;
 *   models   damaged checkpoints and safetensors exports, and resuming
 *            into another model shape;
 *   storage  an output folder that cannot be written, a disk that fills
 *            up in the middle of a run, data files vanishing mid-run.
 *
 * Each case runs in its own process (Check forks); stdout and stderr go to
 * files that are read back.
 */
#include "fixtures.h"
#include "suites.h"

#include "vitrain/checkpoint.h"
#include "vitrain/cli.h"
#include "vitrain/interrupt.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CORPUS "tests/bad_inputs"

static char root[256], data[300], out_path[320], err_path[320];

static void setup(void)
{
    fixture_temp_dir(root, sizeof root);
    snprintf(data, sizeof data, "%s/data", root);
    snprintf(out_path, sizeof out_path, "%s/stdout.txt", root);
    snprintf(err_path, sizeof err_path, "%s/stderr.txt", root);
    ck_assert_int_eq(mkdir(data, 0755), 0);
    fixture_image_folder(data, 8);
}

static void teardown(void)
{
    fixture_remove_tree(root);
}

static int run(int (*cmd)(int, char **), const char *const *args)
{
    return fixture_run_cli(cmd, args, out_path, err_path);
}

/* A copy of the captured stderr (freed by the caller). */
static char *captured_stderr(void)
{
    return strdup(fixture_read_text(err_path));
}

static void expect_failure(int status, int want_status, const char *fragment)
{
    char *message = captured_stderr();
    ck_assert_msg(status == want_status, "status %d, want %d; stderr: %s", status, want_status,
                  message);
    ck_assert_msg(strstr(message, fragment) != NULL, "stderr lacks \"%s\": %s", fragment,
                  message);
    free(message);
}

/* A tiny run over the data folder; returns the config path. */
static const char *write_config(const char *extra)
{
    static char path[400];
    char text[2048];
    snprintf(path, sizeof path, "%s/run.ini", root);
    snprintf(text, sizeof text,
             "[data]\nroot = %s\nimg_size = 12\nmean = 0.5\nstd = 0.25\n"
             "[model]\ndim = 16\ndepth = 1\nheads = 2\nmlp_dim = 32\npatch_size = 4\n"
             "[train]\nepochs = 1\nbatch_size = 8\nthreads = 1\n"
             "[log]\ndir = %s/runs\nname = run\n"
             "[optim]\nwarmup_epochs = 0\n%s",
             data, root, extra);
    fixture_write_text(path, text);
    return path;
}

static int train(const char *extra)
{
    const char *args[] = {"--config", write_config(extra), NULL};
    return run(cli_train, args);
}

/* ---- config ---------------------------------------------------------------- */

/* The corpus file names ending in suffix, sorted, into names (if not
 * NULL); returns how many there are, -1 if dir cannot be read. */
static int corpus_entries(const char *dir, const char *suffix, char names[][128], int cap)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        size_t len = strlen(e->d_name), s = strlen(suffix);
        if (len <= s || strcmp(e->d_name + len - s, suffix) != 0)
            continue;
        if (names && n < cap)
            snprintf(names[n], 128, "%.127s", e->d_name);
        n++;
    }
    closedir(d);
    if (names)
        qsort(names, (size_t)(n < cap ? n : cap), 128,
              (int (*)(const void *, const void *))strcmp);
    return n;
}

enum { MAX_CASES = 64 };

START_TEST(test_bad_config)
{
    static char names[MAX_CASES][128];
    int n = corpus_entries(CORPUS "/config", ".ini", names, MAX_CASES);
    ck_assert_msg(n > 0, "no " CORPUS "/config/*.ini (the tests run from the repository root)");
    ck_assert_int_le(n, MAX_CASES);
    ck_assert_int_lt(_i, n);
    char path[300];
    snprintf(path, sizeof path, CORPUS "/config/%s", names[_i]);
    char fragment[512];
    const char *text = fixture_read_text(path);
    ck_assert_msg(sscanf(text, "; expect: %511[^\n]", fragment) == 1,
                  "%s: the first line must be '; expect: <message fragment>'", path);
    char set[400];
    snprintf(set, sizeof set, "log.dir=%s/runs", root);
    const char *args[] = {"--config", path, "--set", set, NULL};
    expect_failure(run(cli_train, args), EXIT_USAGE, fragment);
    /* Nothing was created for a config that does not hold. */
    char runs[300];
    snprintf(runs, sizeof runs, "%s/runs", root);
    ck_assert_int_eq(access(runs, F_OK), -1);
}
END_TEST

/* ---- images ---------------------------------------------------------------- */

typedef struct ImageCase {
    char file[128], reason[256];
} ImageCase;

/* Line `index` of the MANIFEST (comments skipped); false past the end or
 * when the MANIFEST cannot be read. No ck_assert here: the suite calls it
 * before any test runs. */
static bool image_case(int index, ImageCase *c)
{
    FILE *f = fopen(CORPUS "/images/MANIFEST", "r");
    if (!f)
        return false;
    char line[512];
    int k = 0;
    bool found = false;
    while (!found && fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n')
            continue;
        if (k++ == index) /* a malformed line counts as absent, so its test fails */
            found = sscanf(line, "%127[^\t]\t%255[^\n]", c->file, c->reason) == 2;
    }
    fclose(f);
    return found;
}

static int image_case_count(void)
{
    FILE *f = fopen(CORPUS "/images/MANIFEST", "r");
    if (!f)
        return 0;
    char line[512];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += line[0] != '#' && line[0] != '\n';
    fclose(f);
    return n;
}

static void copy_file(const char *from, const char *to)
{
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    ck_assert_msg(in && out, "cannot copy %s to %s", from, to);
    char buf[8192];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        ck_assert_uint_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    ck_assert_int_eq(fclose(out), 0);
}

/* Places the corpus file in train/dark/; returns the path messages name. */
static const char *place_image(const ImageCase *c)
{
    static char placed[512];
    char from[300];
    snprintf(from, sizeof from, CORPUS "/images/%s", c->file);
    snprintf(placed, sizeof placed, "%s/train/dark/%s", data, c->file);
    copy_file(from, placed);
    return placed;
}

START_TEST(test_bad_image_stops_the_run)
{
    ImageCase c;
    ck_assert_msg(image_case(_i, &c), "no case %d in " CORPUS "/images/MANIFEST (or not 'file<TAB>reason')", _i);
    char fragment[800];
    snprintf(fragment, sizeof fragment, "%s: %s", place_image(&c), c.reason);
    expect_failure(train(""), EXIT_DATA, fragment);
}
END_TEST

START_TEST(test_bad_image_is_skipped_on_request)
{
    ImageCase c;
    ck_assert_msg(image_case(_i, &c), "no case %d in " CORPUS "/images/MANIFEST (or not 'file<TAB>reason')", _i);
    const char *placed = place_image(&c);
    int status = train("[data]\non_bad_image = skip\n");
    char *message = captured_stderr();
    ck_assert_msg(status == EXIT_OK, "status %d: %s", status, message);
    ck_assert_msg(strstr(message, "skipped 1 bad image") && strstr(message, placed), "%s",
                  message);
    free(message);
}
END_TEST

/* ---- folders ---------------------------------------------------------------- */

START_TEST(test_odd_folder_entries)
{
    const struct {
        const char *name, *reason;
        const char *link; /* symlink target, NULL for none */
        int status;
    } cases[] = {
        {"loop.png", "Too many levels of symbolic links", "loop.png", EXIT_IO},
        {"dangling.png", "No such file or directory", "/nonexistent/vitrain.png", EXIT_IO},
        {"folder.png", "is a folder, not an image file", NULL, EXIT_DATA},
        {"\xff\xfe-not-utf8.png", "not an image in a supported format", NULL, EXIT_DATA},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char path[600], fragment[800];
        snprintf(path, sizeof path, "%s/train/light/%s", data, cases[i].name);
        if (cases[i].link)
            ck_assert_int_eq(symlink(cases[i].link, path), 0);
        else if (strstr(cases[i].reason, "folder"))
            ck_assert_int_eq(mkdir(path, 0755), 0);
        else
            fixture_write_text(path, "not an image\n");
        snprintf(fragment, sizeof fragment, "%s: %s", path, cases[i].reason);
        expect_failure(train(""), cases[i].status, fragment);
        ck_assert_int_eq(cases[i].link || !strstr(cases[i].reason, "folder") ? unlink(path)
                                                                              : rmdir(path),
                         0);
    }
}
END_TEST

START_TEST(test_missing_and_empty_splits)
{
    char path[400];
    snprintf(path, sizeof path, "%s/val", data);
    fixture_remove_tree(path);
    char fragment[500];
    snprintf(fragment, sizeof fragment, "data root '%s' has no 'val' folder", data);
    expect_failure(train(""), EXIT_DATA, fragment);
    snprintf(path, sizeof path, "%s/train/light", data);
    fixture_remove_tree(path);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    expect_failure(train(""), EXIT_DATA, "light");
}
END_TEST

/* ---- models ----------------------------------------------------------------- */

/* Trains the fixture run; returns its folder. */
static const char *trained_run(void)
{
    static char dir[400];
    ck_assert_msg(train("") == EXIT_OK, "%s", fixture_read_text(err_path));
    snprintf(dir, sizeof dir, "%s/runs/run", root);
    return dir;
}

/* A damaged copy of `from` at `to`: the byte at `at` flipped, then cut to
 * `keep` bytes (0 keeps all). */
static void damaged_copy(const char *from, const char *to, size_t at, size_t keep)
{
    size_t size;
    unsigned char *b = fixture_read_bytes(from, &size);
    if (at < size)
        b[at] ^= 0x40;
    fixture_write_bytes(to, b, keep ? keep : size);
    free(b);
}

static int eval_file(const char *model)
{
    const char *args[] = {"--checkpoint", model, NULL};
    return run(cli_eval, args);
}

START_TEST(test_damaged_checkpoints)
{
    const char *dir = trained_run();
    char good[500], bad[500];
    snprintf(good, sizeof good, "%s/checkpoint-last", dir);
    snprintf(bad, sizeof bad, "%s/damaged", root);
    size_t size;
    free(fixture_read_bytes(good, &size));

    damaged_copy(good, bad, size / 2, 0);
    expect_failure(eval_file(bad), EXIT_DATA, "is corrupt: checksum mismatch");
    const char *resume[] = {"--resume", bad, NULL};
    expect_failure(run(cli_train, resume), EXIT_DATA, "is corrupt: checksum mismatch");

    damaged_copy(good, bad, size, size * 2 / 3);
    expect_failure(eval_file(bad), EXIT_DATA, "is truncated");

    char image[400];
    snprintf(image, sizeof image, "%s/train/dark/00.png", data);
    expect_failure(eval_file(image), EXIT_DATA, image);
}
END_TEST

/* --resume with --set model.dim: the checkpoint no longer fits. The run
 * folder is left exactly as it was. */
START_TEST(test_resume_into_another_shape)
{
    const char *dir = trained_run();
    char config[500];
    snprintf(config, sizeof config, "%s/config.ini", dir);
    char *before = strdup(fixture_read_text(config));
    const char *args[] = {"--resume", dir, "--set", "model.dim=24", "--set", "train.epochs=2",
                          NULL};
    expect_failure(run(cli_train, args), EXIT_DATA, "in the file, the model expects");
    ck_assert_str_eq(fixture_read_text(config), before);
    free(before);
}
END_TEST

START_TEST(test_safetensors_exports)
{
    const char *dir = trained_run();
    char model[500], bad[500];
    snprintf(model, sizeof model, "%s/model.safetensors", dir);
    snprintf(bad, sizeof bad, "%s/bad.safetensors", root);
    /* The export evaluates like the checkpoint it came from. */
    ck_assert_int_eq(eval_file(model), EXIT_OK);
    char *from_export = strdup(fixture_read_text(out_path));
    ck_assert_int_eq(eval_file(dir), EXIT_OK);
    ck_assert_str_eq(fixture_read_text(out_path), from_export);
    free(from_export);

    size_t size;
    unsigned char *b = fixture_read_bytes(model, &size);
    unsigned char lying[8] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
    memcpy(b, lying, 8);
    fixture_write_bytes(bad, b, size);
    free(b);
    expect_failure(eval_file(bad), EXIT_DATA, "header length 4294967295 exceeds the file size");
    damaged_copy(model, bad, size, size - 10);
    expect_failure(eval_file(bad), EXIT_DATA, "needs 128 bytes inside a data section of");
}
END_TEST

/* ---- storage ------------------------------------------------------------------ */

/* Runs `train` with one --set in a child that is the user nobody when we
 * are root, so that permissions apply; returns its exit status. */
static int train_as_nobody(const char *set)
{
    const char *config = write_config("");
    ck_assert_int_eq(chmod(root, 0755), 0);
    fflush(stdout);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(99);
        const char *args[] = {"--config", config, "--set", set, NULL};
        _exit(run(cli_train, args));
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    return WEXITSTATUS(status);
}

START_TEST(test_output_folder_not_writable)
{
    char dir[400], set[600];
    snprintf(dir, sizeof dir, "%s/locked", root);
    ck_assert_int_eq(mkdir(dir, 0555), 0);
    /* The child may not create files in root: it gets them ready-made. */
    fixture_write_text(err_path, "");
    fixture_write_text(out_path, "");
    ck_assert_int_eq(chmod(err_path, 0666), 0);
    ck_assert_int_eq(chmod(out_path, 0666), 0);
    snprintf(set, sizeof set, "log.dir=%s", dir);
    char fragment[600];
    snprintf(fragment, sizeof fragment, "cannot create the run folder %s/run: %s", dir,
             strerror(EACCES));
    expect_failure(train_as_nobody(set), EXIT_IO, fragment);

    /* log.dir names a file. */
    snprintf(dir, sizeof dir, "%s/a-file", root);
    fixture_write_text(dir, "x");
    snprintf(set, sizeof set, "log.dir=%s", dir);
    snprintf(fragment, sizeof fragment, "cannot create the run folder %s/run: %s", dir,
             strerror(ENOTDIR));
    const char *args[] = {"--config", write_config(""), "--set", set, NULL};
    expect_failure(run(cli_train, args), EXIT_IO, fragment);
}
END_TEST

/* The disk fills up in the middle of a run (a file-size limit, which
 * binds root too, makes the checkpoint write fail while the small CSV
 * appends still fit): the run stops naming the file, checkpoint-last is
 * the last good one byte for byte, and once there is room again --resume
 * finishes the run. */
START_TEST(test_disk_full_mid_run_keeps_the_checkpoint)
{
    const char *dir = trained_run();
    char last[500];
    snprintf(last, sizeof last, "%s/checkpoint-last", dir);
    size_t size;
    unsigned char *before = fixture_read_bytes(last, &size);

    file_limit_fails_writes(); /* as main does */
    struct rlimit unlimited, capped;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &unlimited), 0);
    capped = (struct rlimit){.rlim_cur = size / 2, .rlim_max = unlimited.rlim_max};
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &capped), 0);
    const char *args[] = {"--resume", dir, "--set", "train.epochs=3", NULL};
    int status = run(cli_train, args);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &unlimited), 0);
    char fragment[600];
    snprintf(fragment, sizeof fragment, "cannot write %s: %s", last, strerror(EFBIG));
    expect_failure(status, EXIT_IO, fragment);
    size_t now_size;
    unsigned char *now = fixture_read_bytes(last, &now_size);
    ck_assert(now_size == size && memcmp(now, before, size) == 0);
    free(now);
    free(before);

    ck_assert_int_eq(run(cli_train, args), EXIT_OK);
    char summary[500];
    snprintf(summary, sizeof summary, "%s/summary.csv", dir);
    ck_assert_int_eq(fixture_count_lines(fixture_read_text(summary)), 1 + 3);
}
END_TEST

/* `vitrain arrows` on a disk that fills up (a file-size limit below one
 * PNG of 64 x 64 cells, about 6 KB, and above the messages captured): it
 * stops with the file it could not write, not with a set of empty images
 * and status 0. */
START_TEST(test_arrows_on_a_full_disk)
{
    char out[400];
    snprintf(out, sizeof out, "%s/arrows", root);
    file_limit_fails_writes(); /* as main does */
    struct rlimit unlimited, capped;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &unlimited), 0);
    capped = (struct rlimit){.rlim_cur = 3000, .rlim_max = unlimited.rlim_max};
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &capped), 0);
    const char *args[] = {"--out", out, "--grid", "64", "--train", "4", "--val", "2", NULL};
    int status = run(cli_arrows, args);
    ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &unlimited), 0);
    char fragment[600];
    snprintf(fragment, sizeof fragment, ".png: %s", strerror(EFBIG));
    expect_failure(status, EXIT_IO, fragment);
    char train[500], partial[500];
    snprintf(train, sizeof train, "%s/train", out);
    ck_assert_msg(access(train, F_OK) != 0, "an unfinished split was published as %s", train);
    snprintf(partial, sizeof partial, "%s/.train.partial", out);
    ck_assert_msg(access(partial, F_OK) != 0, "the images written so far fill the disk still");
}
END_TEST

/* A full disk when the run folder is prepared: /dev/full stands in for
 * config.ini, the first file written. */
START_TEST(test_full_disk_at_the_start)
{
    if (access("/dev/full", W_OK) != 0)
        return; /* not on this system: the file-size limit test covers the rest */
    char dir[400], config[500];
    snprintf(dir, sizeof dir, "%s/runs/run", root);
    snprintf(config, sizeof config, "%s/config.ini", dir);
    char runs[400];
    snprintf(runs, sizeof runs, "%s/runs", root);
    ck_assert_int_eq(mkdir(runs, 0755), 0);
    ck_assert_int_eq(mkdir(dir, 0755), 0);
    ck_assert_int_eq(symlink("/dev/full", config), 0);
    char fragment[600];
    snprintf(fragment, sizeof fragment, "cannot write %s: %s", config, strerror(ENOSPC));
    expect_failure(train(""), EXIT_IO, fragment);
}
END_TEST

/* Every image is decoded into the cache before step 1, so the data folder
 * vanishing mid-run costs nothing: the run finishes as if it had stayed.
 * The test insists that the run was still going when the folder went. */
START_TEST(test_data_vanishing_mid_run)
{
    enum { EPOCHS = 60 };
    const char *config = write_config("");
    char steps[400], report[400];
    snprintf(steps, sizeof steps, "%s/runs/run/steps.csv", root);
    snprintf(report, sizeof report, "%s/runs/run/report.md", root);
    fflush(stdout);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        const char *args[] = {"--config", config, "--set", "train.epochs=60", "--set",
                              "model.dim=64", "--set", "model.depth=4", "--set",
                              "model.mlp_dim=256", NULL};
        _exit(run(cli_train, args));
    }
    for (int i = 0; i < 20000 && fixture_file_lines(steps) < 3; i++)
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    ck_assert_int_ge(fixture_file_lines(steps), 3);
    fixture_remove_tree(data);
    ck_assert_msg(access(report, F_OK) != 0, "the run ended before the data folder was removed");
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert(WIFEXITED(status));
    ck_assert_msg(WEXITSTATUS(status) == EXIT_OK, "status %d: %s", WEXITSTATUS(status),
                  fixture_read_text(err_path));
    ck_assert_int_eq(fixture_file_lines(steps), 1 + EPOCHS * 2);
}
END_TEST

Suite *bad_inputs_suite(void)
{
    Suite *s = suite_create("badinput");
    TCase *config = tcase_with_timeout("config", 30, NULL);
    tcase_add_checked_fixture(config, setup, teardown);
    /* A missing corpus still runs one case, which fails and says why. */
    const int configs = corpus_entries(CORPUS "/config", ".ini", NULL, 0);
    tcase_add_loop_test(config, test_bad_config, 0, configs > 0 ? configs : 1);
    suite_add_tcase(s, config);

    TCase *images = tcase_with_timeout("images", 60, NULL);
    tcase_add_checked_fixture(images, setup, teardown);
    const int image_cases = image_case_count() > 0 ? image_case_count() : 1;
    tcase_add_loop_test(images, test_bad_image_stops_the_run, 0, image_cases);
    tcase_add_loop_test(images, test_bad_image_is_skipped_on_request, 0, image_cases);
    tcase_add_test(images, test_odd_folder_entries);
    tcase_add_test(images, test_missing_and_empty_splits);
    suite_add_tcase(s, images);

    TCase *models = tcase_with_timeout("models", 60, NULL);
    tcase_add_checked_fixture(models, setup, teardown);
    tcase_add_test(models, test_damaged_checkpoints);
    tcase_add_test(models, test_resume_into_another_shape);
    tcase_add_test(models, test_safetensors_exports);
    suite_add_tcase(s, models);

    TCase *storage = tcase_with_timeout("storage", 120, NULL);
    tcase_add_checked_fixture(storage, setup, teardown);
    tcase_add_test(storage, test_output_folder_not_writable);
    tcase_add_test(storage, test_disk_full_mid_run_keeps_the_checkpoint);
    tcase_add_test(storage, test_full_disk_at_the_start);
    tcase_add_test(storage, test_arrows_on_a_full_disk);
    tcase_add_test(storage, test_data_vanishing_mid_run);
    suite_add_tcase(s, storage);
    return s;
}
