/*
 * fixtures.h - files the end-to-end tests share: a small generated image
 * folder, temporary folders, reading files back.
 */
#ifndef VITRAIN_TESTS_FIXTURES_H
#define VITRAIN_TESTS_FIXTURES_H

#include <stddef.h>

/* Creates a fresh folder under /tmp into root (size >= 64). */
void fixture_temp_dir(char *root, size_t size);

/* A 2-class ImageNet-style folder of 12x12 gray PNGs under root:
 * {train,val}/{dark,light}/NN.png, `per_class` images each. */
void fixture_image_folder(const char *root, int per_class);

/* rm -rf */
void fixture_remove_tree(const char *path);

/* The whole file as a NUL-terminated string (static buffer, 1 MiB max). */
const char *fixture_read_text(const char *path);

/* Lines of a file, 0 if it does not exist (yet). */
int fixture_file_lines(const char *path);

/* The whole file (malloc'ed, caller frees) and its size. */
unsigned char *fixture_read_bytes(const char *path, size_t *size);

/* Writes size bytes to path. */
void fixture_write_bytes(const char *path, const void *bytes, size_t size);

/* Caps this process's address space (RLIMIT_AS) at what it maps now plus
 * headroom bytes, so that a larger allocation fails; lift the cap with
 * fixture_lift_address_space_cap. ASan builds cannot take such a cap (it
 * reserves terabytes of address space): tests skip there. */
void fixture_cap_address_space(size_t headroom);
void fixture_lift_address_space_cap(void);

/* Lines in a string. */
int fixture_count_lines(const char *text);

/* Writes text to path. */
void fixture_write_text(const char *path, const char *text);

/* Runs a cli_* command on a NULL-terminated argument list in this
 * process, with stdout and stderr redirected to the two files; returns its
 * exit status. */
int fixture_run_cli(int (*cmd)(int, char **), const char *const *args, const char *out_path,
                    const char *err_path);

#endif
