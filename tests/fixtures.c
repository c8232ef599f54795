/*
 * fixtures.c - shared test files (see fixtures.h).
 */
#include "fixtures.h"

#include <check.h>
#include <stb_image_write.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

void fixture_temp_dir(char *root, size_t size)
{
    ck_assert_uint_ge(size, 64);
    snprintf(root, size, "/tmp/vitrain-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
}

static void make_dir(const char *path)
{
    ck_assert_msg(mkdir(path, 0755) == 0, "cannot create %s", path);
}

void fixture_image_folder(const char *root, int per_class)
{
    const char *splits[] = {"train", "val"}, *classes[] = {"dark", "light"};
    char path[1024];
    for (int s = 0; s < 2; s++) {
        snprintf(path, sizeof path, "%s/%s", root, splits[s]);
        make_dir(path);
        for (int c = 0; c < 2; c++) {
            snprintf(path, sizeof path, "%s/%s/%s", root, splits[s], classes[c]);
            make_dir(path);
            for (int i = 0; i < per_class; i++) {
                unsigned char px[144];
                for (int p = 0; p < 144; p++)
                    px[p] = (unsigned char)((c ? 140 : 40) + (p * 7 + i * 13 + s * 5) % 80);
                snprintf(path, sizeof path, "%s/%s/%s/%02d.png", root, splits[s], classes[c], i);
                ck_assert(stbi_write_png(path, 12, 12, 1, px, 12));
            }
        }
    }
}

void fixture_remove_tree(const char *path)
{
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", path);
    ck_assert_int_eq(system(cmd), 0);
}

const char *fixture_read_text(const char *path)
{
    static char buf[1 << 20];
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

int fixture_count_lines(const char *text)
{
    int lines = 0;
    for (const char *c = text; *c; c++)
        lines += *c == '\n';
    return lines;
}

void fixture_write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_msg(f != NULL, "cannot write %s", path);
    ck_assert(fputs(text, f) >= 0);
    ck_assert(fclose(f) == 0);
}

int fixture_run_cli(int (*cmd)(int, char **), const char *const *args, const char *out_path,
                    const char *err_path)
{
    int argc = 0;
    while (args[argc])
        argc++;
    fflush(stdout);
    fflush(stderr);
    ck_assert_ptr_nonnull(freopen(out_path, "w", stdout));
    ck_assert_ptr_nonnull(freopen(err_path, "w", stderr));
    int status = cmd(argc, (char **)args);
    fflush(stdout);
    fflush(stderr);
    return status;
}

int fixture_file_lines(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    int lines = 0, c;
    while ((c = fgetc(f)) != EOF)
        lines += c == '\n';
    fclose(f);
    return lines;
}

unsigned char *fixture_read_bytes(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot open %s", path);
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    rewind(f);
    unsigned char *buf = malloc(*size + 1);
    ck_assert_uint_eq(fread(buf, 1, *size, f), *size);
    fclose(f);
    return buf;
}

void fixture_write_bytes(const char *path, const void *bytes, size_t size)
{
    FILE *f = fopen(path, "wb");
    ck_assert_msg(f != NULL, "cannot create %s", path);
    ck_assert_uint_eq(fwrite(bytes, 1, size, f), size);
    ck_assert_int_eq(fclose(f), 0);
}

static struct rlimit uncapped_address_space;

void fixture_cap_address_space(size_t headroom)
{
    long pages = 0;
    FILE *statm = fopen("/proc/self/statm", "r");
    ck_assert_ptr_nonnull(statm);
    ck_assert_int_eq(fscanf(statm, "%ld", &pages), 1);
    fclose(statm);
    ck_assert_int_eq(getrlimit(RLIMIT_AS, &uncapped_address_space), 0);
    const struct rlimit capped = {
        .rlim_cur = (rlim_t)pages * (rlim_t)sysconf(_SC_PAGESIZE) + (rlim_t)headroom,
        .rlim_max = uncapped_address_space.rlim_max};
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &capped), 0);
}

void fixture_lift_address_space_cap(void)
{
    ck_assert_int_eq(setrlimit(RLIMIT_AS, &uncapped_address_space), 0);
}
