/*
 * idx2png - converts an IDX image file and its IDX label file (the MNIST
 * family's format) into an ImageNet-style folder: OUT/<class>/<index>.png.
 *
 *   idx2png IMAGES LABELS OUT CLASS0 CLASS1 ...
 *
 * IMAGES is an uncompressed idx3-ubyte file (magic 0x00000803, count, rows,
 * cols, then count*rows*cols bytes), LABELS an idx1-ubyte file (magic
 * 0x00000801, count, then count bytes). Label k goes to the folder named by
 * the k-th CLASS argument. Exit status 0 on success, 1 on any error, with
 * the file and the reason on stderr.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <stb_image_write.h>

static int fail(const char *what, const char *path)
{
    fprintf(stderr, "idx2png: %s: %s\n", path, what);
    return 1;
}

static uint32_t be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* Reads a whole file; returns NULL (errno set) on failure. */
static unsigned char *read_file(const char *path, long *size)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    unsigned char *data = NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (*size = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
        data = malloc((size_t)*size + 1);
        if (data && fread(data, 1, (size_t)*size, f) != (size_t)*size) {
            free(data);
            data = NULL;
            errno = EIO;
        }
    }
    fclose(f);
    return data;
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0755) == 0 || errno == EEXIST)
        return 0;
    return fail(strerror(errno), path);
}

int main(int argc, char **argv)
{
    if (argc < 5) {
        fprintf(stderr, "usage: idx2png IMAGES LABELS OUT CLASS0 [CLASS1 ...]\n");
        return 2;
    }
    const char *images_path = argv[1], *labels_path = argv[2], *out = argv[3];
    const int classes = argc - 4;
    long isize, lsize;
    unsigned char *images = read_file(images_path, &isize);
    if (!images)
        return fail(strerror(errno), images_path);
    unsigned char *labels = read_file(labels_path, &lsize);
    if (!labels)
        return fail(strerror(errno), labels_path);
    if (isize < 16 || be32(images) != 0x803)
        return fail("not an idx3-ubyte image file", images_path);
    if (lsize < 8 || be32(labels) != 0x801)
        return fail("not an idx1-ubyte label file", labels_path);
    const uint32_t count = be32(images + 4), rows = be32(images + 8), cols = be32(images + 12);
    if ((uint64_t)count * rows * cols + 16 != (uint64_t)isize)
        return fail("size does not match its header", images_path);
    if (be32(labels + 4) != count || (long)count + 8 != lsize)
        return fail("label count does not match the images", labels_path);

    if (make_dir(out))
        return 1;
    char path[4096];
    for (int k = 0; k < classes; k++) {
        snprintf(path, sizeof path, "%s/%s", out, argv[4 + k]);
        if (make_dir(path))
            return 1;
    }
    for (uint32_t i = 0; i < count; i++) {
        unsigned label = labels[8 + i];
        if (label >= (unsigned)classes)
            return fail("a label is outside the class list", labels_path);
        snprintf(path, sizeof path, "%s/%s/%05u.png", out, argv[4 + label], i);
        if (!stbi_write_png(path, (int)cols, (int)rows, 1, images + 16 + (size_t)i * rows * cols,
                            (int)cols))
            return fail("cannot write the PNG", path);
        if (i % 5000 == 4999 || i + 1 == count)
            fprintf(stderr, "\r%s: %u/%u images", out, i + 1, count);
    }
    fprintf(stderr, "\n");
    free(images);
    free(labels);
    return 0;
}
