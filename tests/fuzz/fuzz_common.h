/*
 * fuzz_common.h - helpers shared by the libFuzzer harnesses: a private
 * temporary folder created once per process and removed at exit, and
 * writing the input bytes to a file in it.
 */
#ifndef VITRAIN_FUZZ_COMMON_H
#define VITRAIN_FUZZ_COMMON_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char fuzz_dir[256];

static void fuzz_remove_tree(void)
{
    if (fuzz_dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", fuzz_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", fuzz_dir);
    }
}

/* Creates the folder on first use; returns its path. */
static const char *fuzz_tmpdir(void)
{
    if (!fuzz_dir[0]) {
        const char *base = getenv("TMPDIR");
        snprintf(fuzz_dir, sizeof fuzz_dir, "%s/vitrain-fuzz-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(fuzz_dir)) {
            perror("mkdtemp");
            abort();
        }
        atexit(fuzz_remove_tree);
    }
    return fuzz_dir;
}

static void fuzz_write_file(const char *path, const uint8_t *data, size_t size)
{
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        abort();
    }
    if (size && fwrite(data, 1, size, f) != size) {
        perror(path);
        abort();
    }
    if (fclose(f) != 0) {
        perror(path);
        abort();
    }
}

#endif
