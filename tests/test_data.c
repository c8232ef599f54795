/*
 * test_data.c - the data module: folder scanning and class mapping, decoding
 * of every supported format, channel conversion, the cache (memory and
 * file), every bad-image case under both policies, the augmentation
 * geometry, normalization, and the loader's determinism contract.
 *
 * Each test builds its own image folder under /tmp (mkdtemp) with images
 * written by stb_image_write, hand-written PGM/PPM bytes and a hand-encoded
 * GIF, and removes it at the end. Expected pixels are computed here from
 * the formulas data.h and folder.c promise (BT.601 luma in integers, alpha
 * over black, torchvision's crop arithmetic), never printed by the code
 * under test. Error messages are checked for the path and the reason.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "fixtures.h"
#include "suites.h"

#include "vitrain/data.h"
#include "vitrain/rng.h"

#include "../src/data/augment.h"

#include <errno.h>
#include <ftw.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb_image_write.h>

Suite *data_suite(void); /* also declared in suites.h by the runner */

/* ---- folders and files ------------------------------------------------- */

enum { NPATHS = 8 };

/* root/rel in one of NPATHS rotating buffers. */
static const char *P(const char *root, const char *rel)
{
    static char buf[NPATHS][VT_PATH_MAX];
    static int next;
    char *p = buf[next++ % NPATHS];
    snprintf(p, VT_PATH_MAX, "%s/%s", root, rel);
    return p;
}

static char *make_root(void)
{
    char *t = strdup("/tmp/vt_data_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(t));
    return t;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)ftw;
    if (flag == FTW_DP)
        return rmdir(path);
    chmod(path, 0600);
    return unlink(path);
}

static void remove_root(char *root)
{
    nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(root);
}

/* mkdir -p root/rel */
static void make_dirs(const char *root, const char *rel)
{
    char path[VT_PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", root, rel);
    for (char *c = path + strlen(root) + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = '\0';
        ck_assert(mkdir(path, 0755) == 0 || errno == EEXIST);
        *c = '/';
    }
    ck_assert(mkdir(path, 0755) == 0 || errno == EEXIST);
}

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, n, f), n);
    ck_assert_int_eq(fclose(f), 0);
}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_le32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* Writes an (h, w, n) image; fmt: 'p' PNG, 'b' BMP, 't' TGA, 'j' JPEG. */
static void write_image(const char *path, char fmt, int w, int h, int n, const uint8_t *px)
{
    int ok = 0;
    switch (fmt) {
    case 'p': ok = stbi_write_png(path, w, h, n, px, w * n); break;
    case 'b': ok = stbi_write_bmp(path, w, h, n, px); break;
    case 't': ok = stbi_write_tga(path, w, h, n, px); break;
    case 'j': ok = stbi_write_jpg(path, w, h, n, px, 100); break;
    }
    ck_assert_msg(ok, "cannot write %s", path);
}

/* A PNG of constant value v, (h, w) gray. */
static void write_flat(const char *path, int w, int h, uint8_t v)
{
    uint8_t *px = malloc((size_t)w * h);
    memset(px, v, (size_t)w * h);
    write_image(path, 'p', w, h, 1, px);
    free(px);
}

/* An image of random bytes (incompressible, so that truncation bites) in
 * format fmt (see write_image). */
static void write_noise_as(const char *path, char fmt, int w, int h, int n, uint64_t seed)
{
    uint8_t *px = malloc((size_t)w * h * n);
    Rng rng = rng_stream(seed, RNG_TEST, 0, 0);
    for (int i = 0; i < w * h * n; i++)
        px[i] = (uint8_t)rng_below(&rng, 256);
    write_image(path, fmt, w, h, n, px);
    free(px);
}

static void write_noise(const char *path, int w, int h, int n, uint64_t seed)
{
    write_noise_as(path, 'p', w, h, n, seed);
}

static DatasetOptions dopts(int C, int side)
{
    return (DatasetOptions){.channels = C, .cache_side = side, .on_bad_image = BAD_IMAGE_ERROR,
                            .cache = CACHE_MEMORY};
}

static const uint8_t *image_at(const Dataset *ds, int i)
{
    return ds->pixels + ds->offset[i];
}

static void open_ok(Dataset *ds, const char *root, const char *split, const DatasetOptions *o)
{
    VtError err = {0};
    VtCode code = dataset_open(ds, root, split, o, NULL, &err);
    ck_assert_msg(code == VT_OK, "dataset_open: %s", err.message);
}

/* Checks that the error message is "PREFIX...REASON...". */
static void check_message(const VtError *err, const char *prefix, const char *reason)
{
    ck_assert_msg(strncmp(err->message, prefix, strlen(prefix)) == 0,
                  "message '%s' does not start with '%s'", err->message, prefix);
    ck_assert_msg(strstr(err->message, reason) != NULL, "message '%s' lacks '%s'", err->message,
                  reason);
}

/* ---- scanning ------------------------------------------------------------ */

START_TEST(test_scan_sorted_classes)
{
    char *root = make_root();
    /* Files created out of order; strcmp order is the promise. 0xff sorts
     * last (strcmp compares bytes as unsigned char) and is not UTF-8. */
    const char *files[] = {"train/b_dog/z.png", "train/b_dog/a.png", "train/c_eel/\xff\xfe.png",
                           "train/c_eel/m.png", "train/c_eel/B.png", "train/a_cat/x.png"};
    const int expect_order[] = {5, 1, 0, 4, 3, 2}; /* index into files[] */
    make_dirs(root, "train/b_dog");
    make_dirs(root, "train/c_eel");
    make_dirs(root, "train/a_cat");
    make_dirs(root, "train/.hidden_class");
    for (int i = 0; i < 6; i++)
        write_flat(P(root, files[i]), 3, 2, (uint8_t)(10 * i + 5));
    write_bytes(P(root, "train/a_cat/.DS_Store"), "junk", 4);
    write_bytes(P(root, "train/README"), "not a class", 11);
    Dataset ds;
    DatasetOptions o = dopts(1, 2);
    open_ok(&ds, root, "train", &o);
    ck_assert_int_eq(ds.num_classes, 3);
    ck_assert_str_eq(ds.class_names[0], "a_cat");
    ck_assert_str_eq(ds.class_names[1], "b_dog");
    ck_assert_str_eq(ds.class_names[2], "c_eel");
    ck_assert_int_eq(ds.count, 6);
    ck_assert_int_eq(ds.skipped, 0);
    const int labels[] = {0, 1, 1, 2, 2, 2};
    for (int i = 0; i < 6; i++) {
        int f = expect_order[i];
        ck_assert_str_eq(ds.paths[i], P(root, files[f]));
        ck_assert_int_eq(ds.labels[i], labels[i]);
        ck_assert_int_eq(ds.height[i], 2);
        ck_assert_int_eq(ds.width[i], 3);
        ck_assert_int_eq(image_at(&ds, i)[0], 10 * f + 5);
    }
    dataset_close(&ds);
    remove_root(root);
}
END_TEST

static VtCode open_fail(const char *root, const char *split, const Dataset *expected,
                        VtError *err)
{
    Dataset ds;
    DatasetOptions o = dopts(1, 2);
    VtCode code = dataset_open(&ds, root, split, &o, expected, err);
    ck_assert_msg(code != VT_OK, "dataset_open of %s/%s succeeded", root, split);
    return code;
}

START_TEST(test_scan_errors)
{
    char *root = make_root();
    VtError err = {0};
    char expect[2 * VT_PATH_MAX];
    /* Missing split folder. */
    make_dirs(root, "train/a");
    write_flat(P(root, "train/a/x.png"), 2, 2, 1);
    ck_assert_int_eq(open_fail(root, "val", NULL, &err), VT_ERR_DATA);
    snprintf(expect, sizeof expect, "data root '%s' has no 'val' folder", root);
    ck_assert_str_eq(err.message, expect);
    /* Missing root. */
    open_fail(P(root, "nowhere"), "train", NULL, &err);
    check_message(&err, "data root '", strerror(ENOENT));
    /* No class folders: only a file and a hidden folder. */
    make_dirs(root, "empty/.git");
    write_bytes(P(root, "empty/notes.txt"), "x", 1);
    ck_assert_int_eq(open_fail(root, "empty", NULL, &err), VT_ERR_DATA);
    snprintf(expect, sizeof expect, "'%s/empty' has no class folders", root);
    ck_assert_str_eq(err.message, expect);
    /* An empty class folder (hidden files do not count). */
    make_dirs(root, "train/b");
    write_bytes(P(root, "train/b/.keep"), "", 0);
    ck_assert_int_eq(open_fail(root, "train", NULL, &err), VT_ERR_DATA);
    snprintf(expect, sizeof expect, "class folder '%s/train/b' is empty", root);
    ck_assert_str_eq(err.message, expect);
    remove_root(root);
}
END_TEST

START_TEST(test_scan_unreadable_folder)
{
    if (geteuid() == 0)
        return; /* root reads folders whatever their mode */
    char *root = make_root();
    make_dirs(root, "train/a");
    write_flat(P(root, "train/a/x.png"), 2, 2, 1);
    ck_assert_int_eq(chmod(P(root, "train/a"), 0), 0);
    VtError err = {0};
    ck_assert_int_eq(open_fail(root, "train", NULL, &err), VT_ERR_IO);
    check_message(&err, "cannot read folder '", strerror(EACCES));
    ck_assert_ptr_nonnull(strstr(err.message, "/train/a'"));
    chmod(P(root, "train/a"), 0755);
    remove_root(root);
}
END_TEST

static void make_split(const char *root, const char *split, const char *const *classes, int n)
{
    for (int i = 0; i < n; i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "%s/%s", split, classes[i]);
        make_dirs(root, rel);
        snprintf(rel, sizeof rel, "%s/%s/img.png", split, classes[i]);
        write_flat(P(root, rel), 2, 2, (uint8_t)i);
    }
}

START_TEST(test_class_mismatch)
{
    char *root = make_root();
    const char *train[] = {"ant", "bee", "cat"};
    const char *renamed[] = {"ant", "bug", "cat"}, *fewer[] = {"ant", "bee"};
    const char *more[] = {"ant", "bee", "cat", "dog"};
    make_split(root, "train", train, 3);
    make_split(root, "val", train, 3);
    make_split(root, "v_renamed", renamed, 3);
    make_split(root, "v_fewer", fewer, 2);
    make_split(root, "v_more", more, 4);
    Dataset tr, va;
    DatasetOptions o = dopts(1, 2);
    VtError err = {0};
    open_ok(&tr, root, "train", &o);
    ck_assert_int_eq(dataset_open(&va, root, "val", &o, &tr, &err), VT_OK);
    ck_assert_int_eq(va.count, 3);
    dataset_close(&va);
    ck_assert_int_eq(open_fail(root, "v_renamed", &tr, &err), VT_ERR_DATA);
    check_message(&err, "'", "'bug' where 'bee' was expected");
    open_fail(root, "v_fewer", &tr, &err);
    check_message(&err, "'", "class 'cat' is missing");
    open_fail(root, "v_more", &tr, &err);
    check_message(&err, "'", "extra class 'dog'");
    dataset_close(&tr);
    remove_root(root);
}
END_TEST

/* ---- decoding: formats and conversions --------------------------------- */

/* A smooth (4, 6, 3) RGB pattern: lossless formats must give it back
 * exactly, JPEG (quality 100, no chroma subsampling) nearly. */
static void rgb_pattern(uint8_t *px, int h, int w)
{
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++) {
            uint8_t *p = px + (y * w + x) * 3;
            p[0] = (uint8_t)(40 + 20 * x);
            p[1] = (uint8_t)(60 + 25 * y);
            p[2] = (uint8_t)(100 + 5 * x + 7 * y);
        }
}

/* A 3 x 2 GIF89a, palette red, green, blue, white, pixels
 * (0 1 2 / 3 2 1); LZW with min code size 2, a clear code every two
 * pixels keeps every code 3 bits wide. */
static const uint8_t TINY_GIF[] = {
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x03, 0x00, 0x02, 0x00, 0x81, 0x00, 0x00, 0xff, 0x00,
    0x00, 0x00, 0xff, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0x2c, 0x00, 0x00, 0x00, 0x00,
    0x03, 0x00, 0x02, 0x00, 0x00, 0x02, 0x04, 0x44, 0xa8, 0x51, 0x29, 0x00, 0x3b};

/* A 24-bit BMP of (h, w) RGB pixels stored top-down, which BMP marks with
 * a negative height (stbi_write_bmp writes bottom-up ones only). */
static void write_top_down_bmp(const char *path, const uint8_t *px, int w, int h)
{
    const int row = (w * 3 + 3) & ~3, header = 14 + 40;
    const size_t size = (size_t)header + (size_t)row * h;
    uint8_t *bmp = calloc(size, 1);
    bmp[0] = 'B', bmp[1] = 'M';
    put_le32(bmp + 2, (uint32_t)size);
    put_le32(bmp + 10, (uint32_t)header);
    put_le32(bmp + 14, 40);
    put_le32(bmp + 18, (uint32_t)w);
    put_le32(bmp + 22, (uint32_t)-h);
    bmp[26] = 1;  /* planes */
    bmp[28] = 24; /* bits per pixel, uncompressed */
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++) /* BGR */
                bmp[header + y * row + x * 3 + c] = px[(y * w + x) * 3 + 2 - c];
    write_bytes(path, bmp, size);
    free(bmp);
}

static void check_rgb(const Dataset *ds, int i, const uint8_t *expect, int n, int tol)
{
    const uint8_t *got = image_at(ds, i);
    for (int k = 0; k < n; k++)
        ck_assert_msg(abs(got[k] - expect[k]) <= tol, "%s: byte %d is %d, expected %d +- %d",
                      ds->paths[i], k, got[k], expect[k], tol);
}

START_TEST(test_formats_rgb)
{
    char *root = make_root();
    enum { H = 4, W = 6 };
    uint8_t px[H * W * 3];
    rgb_pattern(px, H, W);
    make_dirs(root, "train/x");
    write_image(P(root, "train/x/a.png"), 'p', W, H, 3, px);
    write_image(P(root, "train/x/b.bmp"), 'b', W, H, 3, px);
    write_image(P(root, "train/x/c.tga"), 't', W, H, 3, px);
    write_image(P(root, "train/x/d.jpg"), 'j', W, H, 3, px);
    uint8_t ppm[15 + sizeof px];
    memcpy(ppm, "P6\n6 4\n255\n", 11);
    memcpy(ppm + 11, px, sizeof px);
    write_bytes(P(root, "train/x/e.ppm"), ppm, 11 + sizeof px);
    /* Extensions lie: content decides. */
    write_image(P(root, "train/x/f.jpg"), 'p', W, H, 3, px);
    write_top_down_bmp(P(root, "train/x/g.bmp"), px, W, H);
    Dataset ds;
    DatasetOptions o = dopts(3, H);
    open_ok(&ds, root, "train", &o);
    ck_assert_int_eq(ds.count, 7);
    for (int i = 0; i < 7; i++) {
        ck_assert_int_eq(ds.height[i], H);
        ck_assert_int_eq(ds.width[i], W);
        check_rgb(&ds, i, px, H * W * 3, i == 3 ? 6 : 0);
    }
    dataset_close(&ds);
    remove_root(root);
}
END_TEST

START_TEST(test_formats_gray_and_gif)
{
    char *root = make_root();
    make_dirs(root, "train/x");
    const uint8_t pgm[] = "P5\n3 2\n255\n\x01\x7f\xff\x00\x10\x20";
    write_bytes(P(root, "train/x/a.pgm"), pgm, sizeof pgm - 1);
    write_bytes(P(root, "train/x/b.gif"), TINY_GIF, sizeof TINY_GIF);
    /* Bytes after the trailer (some tools pad files) do not make it cut. */
    uint8_t padded[sizeof TINY_GIF + 3] = {0};
    memcpy(padded, TINY_GIF, sizeof TINY_GIF);
    write_bytes(P(root, "train/x/c.gif"), padded, sizeof padded);
    Dataset ds;
    DatasetOptions o = dopts(3, 2);
    open_ok(&ds, root, "train", &o);
    ck_assert_int_eq(ds.count, 3);
    const uint8_t gray[] = {1, 1, 1, 127, 127, 127, 255, 255, 255, 0, 0, 0, 16, 16, 16, 32, 32, 32};
    check_rgb(&ds, 0, gray, 18, 0);
    const uint8_t gif[] = {255, 0, 0, 0, 255, 0, 0, 0, 255, 255, 255, 255, 0, 0, 255, 0, 255, 0};
    check_rgb(&ds, 1, gif, 18, 0);
    check_rgb(&ds, 2, gif, 18, 0);
    dataset_close(&ds);
    remove_root(root);
}
END_TEST

static uint8_t over_black(int v, int a)
{
    return (uint8_t)lround(v * a / 255.0);
}

static uint8_t luma(int r, int g, int b)
{
    return (uint8_t)floor(0.299 * r + 0.587 * g + 0.114 * b + 0.5 + 1e-9);
}

/* Two pixels in each source layout (gray, gray+alpha, RGB, RGBA). */
static const uint8_t SRC[4][8] = {
    {200, 37},
    {200, 128, 37, 255},
    {200, 100, 50, 10, 20, 30},
    {200, 100, 50, 128, 10, 20, 30, 0},
};

/* What folder.c promises for pixel k of source layout n in C channels. */
static void expected_pixel(uint8_t *o, int n, int k, int C)
{
    const uint8_t *p = SRC[n - 1] + k * n;
    int r = p[0], g = n >= 3 ? p[1] : p[0], b = n >= 3 ? p[2] : p[0];
    int a = n == 2 || n == 4 ? p[n - 1] : 255;
    if (C == 4) {
        o[0] = (uint8_t)r, o[1] = (uint8_t)g, o[2] = (uint8_t)b, o[3] = (uint8_t)a;
    } else if (C == 3) {
        o[0] = over_black(r, a), o[1] = over_black(g, a), o[2] = over_black(b, a);
    } else {
        o[0] = over_black(n >= 3 ? luma(r, g, b) : r, a);
    }
}

START_TEST(test_channel_conversion)
{
    char *root = make_root();
    make_dirs(root, "train/x");
    for (int n = 1; n <= 4; n++) {
        char rel[64];
        snprintf(rel, sizeof rel, "train/x/n%d.png", n);
        write_image(P(root, rel), 'p', 2, 1, n, SRC[n - 1]);
    }
    const int Cs[] = {1, 3, 4};
    for (int ci = 0; ci < 3; ci++) {
        const int C = Cs[ci];
        Dataset ds;
        DatasetOptions o = dopts(C, 1);
        open_ok(&ds, root, "train", &o);
        ck_assert_int_eq(ds.channels, C);
        for (int n = 1; n <= 4; n++)
            for (int k = 0; k < 2; k++) {
                uint8_t want[4];
                expected_pixel(want, n, k, C);
                const uint8_t *got = image_at(&ds, n - 1) + k * C;
                for (int c = 0; c < C; c++)
                    ck_assert_msg(got[c] == want[c], "n %d -> C %d, pixel %d ch %d: %d != %d",
                                  n, C, k, c, got[c], want[c]);
            }
        dataset_close(&ds);
    }
    remove_root(root);
}
END_TEST

START_TEST(test_cache_resize)
{
    char *root = make_root();
    make_dirs(root, "train/x");
    write_flat(P(root, "train/x/a_wide.png"), 8, 4, 77);  /* side 2: 2 x 4 */
    write_flat(P(root, "train/x/b_tall.png"), 3, 7, 99);  /* side 2: 4 x 2 (14/3) */
    write_flat(P(root, "train/x/c_small.png"), 1, 1, 50); /* side 2: 2 x 2 */
    write_flat(P(root, "train/x/d_same.png"), 5, 2, 12);  /* already 2: kept */
    Dataset ds;
    DatasetOptions o = dopts(1, 2);
    open_ok(&ds, root, "train", &o);
    const int h[] = {2, 4, 2, 2}, w[] = {4, 2, 2, 5}, v[] = {77, 99, 50, 12};
    uint64_t total = 0;
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(ds.height[i], h[i]);
        ck_assert_int_eq(ds.width[i], w[i]);
        ck_assert_uint_eq(ds.offset[i], total);
        for (int k = 0; k < h[i] * w[i]; k++)
            ck_assert_int_eq(image_at(&ds, i)[k], v[i]); /* a flat image stays flat */
        total += (uint64_t)h[i] * w[i];
    }
    ck_assert_uint_eq(ds.pixel_bytes, total);
    ck_assert_int_eq(ds.cache_side, 2);
    dataset_close(&ds);
    remove_root(root);
}
END_TEST

/* ---- the cache ------------------------------------------------------------ */

static void make_mixed_set(const char *root, int n)
{
    make_dirs(root, "train/a");
    make_dirs(root, "train/b");
    for (int i = 0; i < n; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "train/%c/%03d.png", i % 2 ? 'b' : 'a', i);
        write_noise(P(root, rel), 5 + i % 7, 4 + i % 5, 1 + i % 4, (uint64_t)i);
    }
}

static void check_same_pixels(const Dataset *a, const Dataset *b)
{
    ck_assert_int_eq(a->count, b->count);
    ck_assert_uint_eq(a->pixel_bytes, b->pixel_bytes);
    for (int i = 0; i < a->count; i++) {
        ck_assert_uint_eq(a->offset[i], b->offset[i]);
        ck_assert_int_eq(a->labels[i], b->labels[i]);
    }
    ck_assert_int_eq(memcmp(a->pixels, b->pixels, (size_t)a->pixel_bytes), 0);
}

START_TEST(test_cache_file_matches_memory)
{
    char *root = make_root();
    make_mixed_set(root, 24);
    make_dirs(root, "cache");
    Dataset mem, file, autom;
    DatasetOptions o = dopts(3, 6);
    open_ok(&mem, root, "train", &o);
    o.cache = CACHE_FILE;
    o.cache_dir = P(root, "cache");
    open_ok(&file, root, "train", &o);
    ck_assert(file.mapped && !mem.mapped);
    check_same_pixels(&mem, &file);
    /* The file is unlinked once mapped: nothing is left in cache_dir. */
    ck_assert_int_eq(rmdir(P(root, "cache")), 0);
    o.cache = CACHE_AUTO; /* a few kilobytes fit in memory */
    open_ok(&autom, root, "train", &o);
    ck_assert(!autom.mapped);
    check_same_pixels(&mem, &autom);
    dataset_close(&autom);
    dataset_close(&file);
    dataset_close(&mem);
    VtError err = {0};
    o.cache = CACHE_FILE;
    o.cache_dir = P(root, "no_such_dir");
    Dataset ds;
    ck_assert_int_eq(dataset_open(&ds, root, "train", &o, NULL, &err), VT_ERR_IO);
    check_message(&err, "cannot create the cache file ", strerror(ENOENT));
    remove_root(root);
}
END_TEST

START_TEST(test_decode_thread_independent)
{
    char *root = make_root();
    make_mixed_set(root, 40);
    Dataset one, four;
    DatasetOptions o = dopts(3, 7);
    omp_set_num_threads(1);
    open_ok(&one, root, "train", &o);
    omp_set_num_threads(4);
    open_ok(&four, root, "train", &o);
    check_same_pixels(&one, &four);
    dataset_close(&one);
    dataset_close(&four);
    remove_root(root);
}
END_TEST

START_TEST(test_progress_line)
{
    char *root = make_root();
    make_mixed_set(root, 3);
    const char *log = P(root, "stderr.txt");
    ck_assert_ptr_nonnull(freopen(log, "w", stderr)); /* this test's child only */
    Dataset ds;
    DatasetOptions o = dopts(1, 4);
    o.progress = true;
    open_ok(&ds, root, "train", &o);
    dataset_close(&ds);
    fflush(stderr);
    char text[4096] = {0};
    FILE *f = fopen(log, "r");
    ck_assert_uint_gt(fread(text, 1, sizeof text - 1, f), 0);
    fclose(f);
    ck_assert_msg(strstr(text, "decoding train: 3/3 images") != NULL, "stderr: %s", text);
    remove_root(root);
}
END_TEST

/* ---- bad images --------------------------------------------------------------- */

static void make_corrupt(const char *path)
{
    write_bytes(path, "this is not an image\n", 21);
}

static void make_truncated(const char *path)
{
    write_noise(path, 32, 32, 3, 7);
    FILE *f = fopen(path, "rb");
    uint8_t buf[8192];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_assert_uint_gt(n, 1000);
    write_bytes(path, buf, n / 2);
}

/* Cuts the file to 60 % of its length. */
static void cut_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    uint8_t buf[16384];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    ck_assert_uint_gt(n, 100);
    ck_assert_uint_lt(n, sizeof buf);
    write_bytes(path, buf, n * 6 / 10);
}

static void make_cut_bmp(const char *path)
{
    write_noise_as(path, 'b', 24, 24, 3, 7);
    cut_file(path);
}

static void make_cut_jpeg(const char *path)
{
    write_noise_as(path, 'j', 24, 24, 3, 7);
    cut_file(path);
}

static void make_cut_rle_tga(const char *path)
{
    write_noise_as(path, 't', 24, 24, 3, 7); /* stb writes run-length packets */
    cut_file(path);
}

static void make_cut_raw_tga(const char *path)
{
    stbi_write_tga_with_rle = 0;
    write_noise_as(path, 't', 24, 24, 1, 7);
    stbi_write_tga_with_rle = 1;
    cut_file(path);
}

/* A 4 x 4 P5 (with a comment in its header) holding 8 of its 16 pixels. */
static void make_cut_pgm(const char *path)
{
    const char b[] = "P5\n# comment\n4 4\n255\n01234567";
    write_bytes(path, b, sizeof b - 1);
}

static void make_cut_ppm(const char *path)
{
    const char b[] = "P6 2 2 255 0123456789";
    write_bytes(path, b, sizeof b - 1);
}

static void make_cut_gif(const char *path)
{
    write_bytes(path, TINY_GIF, sizeof TINY_GIF - 2);
}

static void make_empty(const char *path)
{
    write_bytes(path, "", 0);
}

static void make_folder(const char *path)
{
    ck_assert_int_eq(mkdir(path, 0755), 0);
}

static void make_unreadable(const char *path)
{
    write_flat(path, 2, 2, 1);
    ck_assert_int_eq(chmod(path, 0), 0);
}

/* A PNG signature and IHDR claiming 100000 x 100000 RGB; no pixel data. */
static void make_huge_png(const char *path)
{
    uint8_t b[33] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    put_be32(b + 16, 100000);
    put_be32(b + 20, 100000);
    b[24] = 8; /* depth */
    b[25] = 2; /* RGB */
    write_bytes(path, b, sizeof b);
}

/* BMP headers (BITMAPINFOHEADER, 24 bit) claiming w x h; no pixel data. */
static void make_bmp_header(const char *path, uint32_t w, uint32_t h)
{
    uint8_t b[54] = {'B', 'M'};
    put_le32(b + 2, 54);
    put_le32(b + 10, 54);
    put_le32(b + 14, 40);
    put_le32(b + 18, w);
    put_le32(b + 22, h);
    b[26] = 1;  /* planes */
    b[28] = 24; /* bits per pixel */
    write_bytes(path, b, sizeof b);
}

static void make_huge_bmp(const char *path)
{
    make_bmp_header(path, 100000, 100000);
}

static void make_wide_bmp(const char *path)
{
    make_bmp_header(path, 20000, 1); /* few pixels, but a side over 16384 */
}

/* A baseline JPEG SOF0 header claiming 60000 x 60000 RGB, then nothing. */
static void make_huge_jpeg(const char *path)
{
    const uint8_t b[] = {0xff, 0xd8, 0xff, 0xc0, 0x00, 0x11, 8,    0xea, 0x60, 0xea, 0x60, 3,
                         1,    0x11, 0,    2,    0x11, 0,    3,    0x11, 0,    0xff, 0xd9};
    write_bytes(path, b, sizeof b);
}

static void make_loop(const char *path)
{
    ck_assert_int_eq(symlink(path, path), 0);
}

static void make_dangling(const char *path)
{
    ck_assert_int_eq(symlink("/nonexistent/vitrain/image.png", path), 0);
}

typedef struct BadCase {
    const char *name;
    void (*make)(const char *path);
    const char *reason; /* NULL: strerror(err) */
    int err;
} BadCase;

static const BadCase BAD[] = {
    {"corrupt.png", make_corrupt, "unknown image type", 0},
    {"truncated.png", make_truncated, "truncated PNG: the file (1586 bytes) ends before the IEND chunk", 0},
    {"cut.bmp", make_cut_bmp, "truncated BMP: the header declares 1782 bytes, the file has 1069",
     0},
    {"cut.jpg", make_cut_jpeg, "cannot decode, truncated or corrupt (stb_image: ", 0},
    {"cut-rle.tga", make_cut_rle_tga, "truncated TGA: the header declares ", 0},
    {"cut-raw.tga", make_cut_raw_tga, "truncated TGA: the header declares 594 bytes", 0},
    {"cut.pgm", make_cut_pgm, "truncated PGM: the header declares 37 bytes, the file has 29", 0},
    {"cut.ppm", make_cut_ppm, "truncated PPM: the header declares 23 bytes, the file has 21", 0},
    {"cut.gif", make_cut_gif, "truncated GIF: the file (41 bytes) ends before the trailer", 0},
    {"empty.jpg", make_empty, "empty file", 0},
    {"folder.png", make_folder, "is a folder", 0},
    {"locked.png", make_unreadable, NULL, EACCES},
    {"huge.png", make_huge_png, "image too large: 100000 x 100000", 0},
    {"huge.jpg", make_huge_jpeg, "image too large: 60000 x 60000", 0},
    {"huge.bmp", make_huge_bmp, "image too large: 100000 x 100000", 0},
    {"wide.bmp", make_wide_bmp, "image too large: 20000 x 1", 0},
    {"loop.png", make_loop, NULL, ELOOP},
    {"dangling.png", make_dangling, NULL, ENOENT},
    {"\xff\xfe-not-utf8.png", make_corrupt, "unknown image type", 0},
};
enum { NBAD = sizeof BAD / sizeof BAD[0] };

/* root/train/a/{good.png, BAD[i]}; returns the bad path; false if the case
 * cannot be run here (unreadable files as root). */
static bool make_bad_set(const char *root, int i, char *bad_path)
{
    if (BAD[i].err == EACCES && geteuid() == 0)
        return false; /* root reads any file */
    make_dirs(root, "train/a");
    write_flat(P(root, "train/a/good.png"), 3, 3, 9);
    snprintf(bad_path, VT_PATH_MAX, "%s/train/a/%s", root, BAD[i].name);
    BAD[i].make(bad_path);
    return true;
}

START_TEST(test_bad_image_error)
{
    char *root = make_root();
    char bad[VT_PATH_MAX], prefix[VT_PATH_MAX + 2];
    if (make_bad_set(root, _i, bad)) {
        Dataset ds;
        DatasetOptions o = dopts(3, 2);
        VtError err = {0};
        ck_assert_int_ne(dataset_open(&ds, root, "train", &o, NULL, &err), VT_OK);
        snprintf(prefix, sizeof prefix, "%s: ", bad);
        check_message(&err, prefix, BAD[_i].reason ? BAD[_i].reason : strerror(BAD[_i].err));
        ck_assert_uint_gt(strlen(err.message), strlen(prefix));
    }
    remove_root(root);
}
END_TEST

START_TEST(test_bad_image_skip)
{
    char *root = make_root();
    char bad[VT_PATH_MAX];
    if (make_bad_set(root, _i, bad)) {
        ck_assert_ptr_nonnull(freopen(P(root, "stderr.txt"), "w", stderr));
        Dataset ds;
        DatasetOptions o = dopts(3, 2);
        o.on_bad_image = BAD_IMAGE_SKIP;
        open_ok(&ds, root, "train", &o);
        ck_assert_int_eq(ds.count, 1);
        ck_assert_int_eq(ds.skipped, 1);
        ck_assert_str_eq(ds.paths[0], P(root, "train/a/good.png"));
        ck_assert_int_eq(image_at(&ds, 0)[0], 9);
        dataset_close(&ds);
        fflush(stderr);
        char text[8192] = {0};
        FILE *f = fopen(P(root, "stderr.txt"), "r");
        ck_assert_uint_gt(fread(text, 1, sizeof text - 1, f), 0);
        fclose(f);
        ck_assert_msg(strstr(text, "skipped 1 bad image in '") && strstr(text, bad), "%s", text);
    }
    remove_root(root);
}
END_TEST

/* Many files, several bad ones found while decoding (truncated) and while
 * probing: the error names the first in scan order whatever the threads. */
START_TEST(test_bad_image_first_and_compaction)
{
    char *root = make_root();
    make_dirs(root, "train/a");
    for (int i = 0; i < 40; i++) {
        char rel[64];
        snprintf(rel, sizeof rel, "train/a/f%02d.png", i);
        if (i == 11 || i == 12 || i == 30)
            make_truncated(P(root, rel));
        else
            write_flat(P(root, rel), 4 + i % 3, 3, (uint8_t)(i + 1));
    }
    omp_set_num_threads(4);
    Dataset ds;
    DatasetOptions o = dopts(1, 3);
    VtError err = {0};
    ck_assert_int_eq(dataset_open(&ds, root, "train", &o, NULL, &err), VT_ERR_DATA);
    check_message(&err, P(root, "train/a/f11.png: "), "truncated PNG");
    /* Under skip, the later images move down over the holes, in order. */
    o.on_bad_image = BAD_IMAGE_SKIP;
    ck_assert_ptr_nonnull(freopen(P(root, "stderr.txt"), "w", stderr));
    open_ok(&ds, root, "train", &o);
    ck_assert_int_eq(ds.count, 37);
    ck_assert_int_eq(ds.skipped, 3);
    uint64_t offset = 0;
    for (int i = 0, k = 0; i < 40; i++) {
        if (i == 11 || i == 12 || i == 30)
            continue;
        ck_assert_uint_eq(ds.offset[k], offset);
        for (int p = 0; p < ds.height[k] * ds.width[k]; p++)
            ck_assert_int_eq(image_at(&ds, k)[p], i + 1);
        offset += (uint64_t)ds.height[k] * ds.width[k];
        k++;
    }
    ck_assert_uint_eq(ds.pixel_bytes, offset);
    dataset_close(&ds);
    /* A header-level bad file also stops the run, with its own message. */
    make_corrupt(P(root, "train/a/f35.png"));
    o.on_bad_image = BAD_IMAGE_ERROR;
    ck_assert_int_eq(dataset_open(&ds, root, "train", &o, NULL, &err), VT_ERR_DATA);
    check_message(&err, P(root, "train/a/f35.png: "), "unknown image type");
    remove_root(root);
}
END_TEST

START_TEST(test_all_skipped)
{
    char *root = make_root();
    make_dirs(root, "train/a");
    make_corrupt(P(root, "train/a/x.png"));
    ck_assert_ptr_nonnull(freopen(P(root, "stderr.txt"), "w", stderr));
    Dataset ds;
    DatasetOptions o = dopts(1, 3);
    o.on_bad_image = BAD_IMAGE_SKIP;
    VtError err = {0};
    ck_assert_int_eq(dataset_open(&ds, root, "train", &o, NULL, &err), VT_ERR_DATA);
    check_message(&err, "'", "has no usable images (1 bad image skipped)");
    /* One class of two with every image bad: an error naming the class,
     * not a class trained without examples. */
    make_dirs(root, "train/b");
    write_flat(P(root, "train/b/y.png"), 4, 4, 7);
    make_corrupt(P(root, "train/a/z.png"));
    ck_assert_int_eq(dataset_open(&ds, root, "train", &o, NULL, &err), VT_ERR_DATA);
    check_message(&err, "class 'a' of '", "has no usable images (all 2 skipped as bad)");
    remove_root(root);
}
END_TEST

/* Running out of memory while decoding is the machine's fault, not the
 * image's: the open fails with VT_ERR_NOMEM (exit 5) even where bad images
 * are skipped, not with "corrupt" nor with the image left out. The test
 * caps its own address space a little above what it maps (Check runs each
 * test in a child process, and the cap is lifted again at the end); ASan
 * reserves far more address space than any such cap. */
START_TEST(test_decode_out_of_memory_is_not_a_bad_image)
{
#if defined(__SANITIZE_ADDRESS__)
    return;
#endif
    char *root = make_root();
    make_dirs(root, "train/a");
    write_flat(P(root, "train/a/big.png"), 4096, 4096, 7); /* 16 MiB decoded */
    ck_assert_ptr_nonnull(freopen(P(root, "stderr.txt"), "w", stderr));
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1); /* no thread stacks to map under the cap */
    fixture_cap_address_space(8 << 20);
    Dataset ds;
    DatasetOptions o = dopts(1, 8);
    o.on_bad_image = BAD_IMAGE_SKIP;
    VtError err = {0};
    const VtCode code = dataset_open(&ds, root, "train", &o, NULL, &err);
    fixture_lift_address_space_cap();
    omp_set_num_threads(threads);
    ck_assert_msg(code == VT_ERR_NOMEM, "code %d: %s", (int)code, err.message);
    ck_assert_msg(strstr(err.message, "out of memory decoding a 4096 x 4096 image") != NULL, "%s",
                  err.message);
    remove_root(root);
}
END_TEST

/* ---- augmentation geometry ------------------------------------------------- */

/* A data set of one (h, w) gray image with pixel (y, x) = 1 + 16 y + x. */
static void open_pattern(Dataset *ds, char **root, int h, int w)
{
    *root = make_root();
    make_dirs(*root, "train/a");
    uint8_t *px = malloc((size_t)h * w);
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            px[y * w + x] = (uint8_t)(1 + 16 * y + x);
    write_image(P(*root, "train/a/p.png"), 'p', w, h, 1, px);
    free(px);
    DatasetOptions o = dopts(1, VT_MIN(h, w));
    open_ok(ds, *root, "train", &o);
}

static LoaderOptions lopts(int B, int S, bool train)
{
    LoaderOptions o = {.batch_size = B, .img_size = S, .train = train, .seed = 1234,
                       .scale = {0.08f, 1.0f}, .ratio = {0.75f, 4.0f / 3.0f},
                       .crop_pct = 1.0f, .prefetch = 2};
    for (int c = 0; c < VT_MAX_CHANNELS; c++)
        o.std[c] = 1.0f;
    return o;
}

static Loader *make_loader(const Dataset *ds, const LoaderOptions *o)
{
    Loader *ld = NULL;
    VtError err = {0};
    ck_assert_msg(loader_create(&ld, ds, o, &err) == VT_OK, "loader_create: %s", err.message);
    return ld;
}

/* The uint8 value behind a normalized output with mean 0, std 1. */
static int byte_of(float v)
{
    return (int)lroundf(v * 255.0f);
}

START_TEST(test_eval_center_crop)
{
    char *root;
    Dataset ds;
    open_pattern(&ds, &root, 6, 9);
    /* S = 4, crop_pct = 4/6: eval side 6 = the cached side, no resampling.
     * Center crop: top round(2/2) = 1, left round(5/2) = 2 (ties to even). */
    ck_assert_int_eq(loader_eval_side(4, (float)(4.0 / 6.0)), 6);
    LoaderOptions o = lopts(1, 4, false);
    o.crop_pct = (float)(4.0 / 6.0);
    Loader *ld = make_loader(&ds, &o);
    Batch b;
    ck_assert(loader_next(ld, &b));
    ck_assert_int_eq(b.size, 1);
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++)
            ck_assert_int_eq(byte_of(b.images[y * 4 + x]), 1 + 16 * (y + 1) + (x + 2));
    ck_assert(!loader_next(ld, &b));
    loader_destroy(ld);
    dataset_close(&ds);
    remove_root(root);
}
END_TEST

START_TEST(test_eval_side)
{
    ck_assert_int_eq(loader_eval_side(224, 0.875f), 256);
    ck_assert_int_eq(loader_eval_side(224, 0.9f), 248);
    ck_assert_int_eq(loader_eval_side(8, 0.8f), 10); /* 0.8f > 0.8, yet 10 */
    ck_assert_int_eq(loader_eval_side(32, 1.0f), 32);
    CropBox b = augment_center_box(7, 10, 4); /* (3/2, 6/2) -> (2, 3) */
    ck_assert_int_eq(b.top, 2);
    ck_assert_int_eq(b.left, 3);
    b = augment_center_box(9, 9, 4); /* 2.5 -> 2 */
    ck_assert_int_eq(b.top, 2);
}
END_TEST

START_TEST(test_eval_resize_then_crop)
{
    char *root;
    Dataset ds;
    open_pattern(&ds, &root, 8, 8);
    /* A smooth ramp halved then cropped: every output lies between the
     * cached pixels it came from, rows and columns increasing. */
    LoaderOptions o = lopts(1, 4, false);
    o.crop_pct = 1.0f; /* eval side 4: the 8 x 8 image is downscaled */
    Loader *ld = make_loader(&ds, &o);
    Batch b;
    ck_assert(loader_next(ld, &b));
    for (int y = 0; y < 4; y++)
        for (int x = 0; x < 4; x++) {
            int v = byte_of(b.images[y * 4 + x]);
            ck_assert(v >= 1 && v <= 1 + 16 * 7 + 7);
            if (x > 0)
                ck_assert_int_gt(v, byte_of(b.images[y * 4 + x - 1]));
            if (y > 0)
                ck_assert_int_gt(v, byte_of(b.images[(y - 1) * 4 + x]));
        }
    loader_destroy(ld);
    dataset_close(&ds);
    remove_root(root);
}
END_TEST

START_TEST(test_train_flip)
{
    char *root;
    Dataset ds;
    open_pattern(&ds, &root, 4, 4);
    const float probs[] = {0.0f, 1.0f};
    for (int f = 0; f < 2; f++) {
        LoaderOptions o = lopts(1, 4, true);
        o.hflip = probs[f];
        Loader *ld = make_loader(&ds, &o);
        for (int step = 0; step < 3; step++) {
            Batch b;
            ck_assert(loader_next(ld, &b));
            for (int y = 0; y < 4; y++)
                for (int x = 0; x < 4; x++) {
                    int sx = f ? 3 - x : x;
                    ck_assert_int_eq(byte_of(b.images[y * 4 + x]), 1 + 16 * y + sx);
                }
        }
        loader_destroy(ld);
    }
    dataset_close(&ds);
    remove_root(root);
}
END_TEST

/* The shift (dy, dx) with out(y, x) = in(y + dy, x + dx), 0 outside. */
static bool find_shift(const float *img, int S, int pad, int *dy, int *dx)
{
    for (*dy = -pad; *dy <= pad; (*dy)++)
        for (*dx = -pad; *dx <= pad; (*dx)++) {
            bool match = true;
            for (int y = 0; y < S && match; y++)
                for (int x = 0; x < S && match; x++) {
                    int sy = y + *dy, sx = x + *dx;
                    int want = sy >= 0 && sy < S && sx >= 0 && sx < S ? 1 + 16 * sy + sx : 0;
                    match = byte_of(img[y * S + x]) == want;
                }
            if (match)
                return true;
        }
    return false;
}

START_TEST(test_train_pad_crop)
{
    char *root;
    Dataset ds;
    open_pattern(&ds, &root, 6, 6);
    LoaderOptions o = lopts(1, 6, true);
    o.pad = 2;
    Loader *ld = make_loader(&ds, &o);
    int seen[5][5] = {{0}};
    for (int step = 0; step < 400; step++) {
        Batch b;
        ck_assert(loader_next(ld, &b));
        ck_assert_int_eq(b.epoch, step); /* one image: one batch per epoch */
        int dy, dx;
        ck_assert_msg(find_shift(b.images, 6, 2, &dy, &dx), "step %d is no shift", step);
        seen[dy + 2][dx + 2]++;
    }
    for (int i = 0; i < 25; i++) /* 400 draws over 25 shifts: each shows */
        ck_assert_int_gt(seen[i / 5][i % 5], 0);
    loader_destroy(ld);
    dataset_close(&ds);
    remove_root(root);
}
END_TEST

START_TEST(test_rrc_box)
{
    const float scale[2] = {0.08f, 1.0f}, ratio[2] = {0.75f, 4.0f / 3.0f};
    for (int i = 0; i < 2000; i++) {
        Rng rng = rng_stream(5, RNG_TEST, (uint64_t)i, 0);
        int h = 10 + i % 50, w = 10 + (i * 7) % 60;
        CropBox b = augment_rrc_box(h, w, scale, ratio, &rng);
        ck_assert(b.height >= 1 && b.width >= 1);
        ck_assert(b.top >= 0 && b.left >= 0 && b.top + b.height <= h && b.left + b.width <= w);
        Rng again = rng_stream(5, RNG_TEST, (uint64_t)i, 0);
        CropBox c = augment_rrc_box(h, w, scale, ratio, &again);
        ck_assert(memcmp(&b, &c, sizeof b) == 0);
    }
    /* Impossible areas: the fallback, whole image with the ratio clamped. */
    const float big[2] = {2.0f, 3.0f};
    Rng rng = rng_stream(5, RNG_TEST, 0, 1);
    CropBox b = augment_rrc_box(10, 40, big, ratio, &rng); /* 4 > 4/3: w = 13 */
    ck_assert_int_eq(b.height, 10);
    ck_assert_int_eq(b.width, 13);
    ck_assert_int_eq(b.left, 13);
    ck_assert_int_eq(b.top, 0);
    b = augment_rrc_box(40, 10, big, ratio, &rng); /* 1/4 < 3/4: h = 13 */
    ck_assert_int_eq(b.height, 13);
    ck_assert_int_eq(b.width, 10);
    ck_assert_int_eq(b.top, 13);
    b = augment_rrc_box(20, 20, big, ratio, &rng); /* within range: all */
    ck_assert(b.height == 20 && b.width == 20 && b.top == 0 && b.left == 0);
}
END_TEST

/* PIL's antialiased bilinear, worked by hand. Enlarging [0 100] to 4:
 * output centres 0.25 .. 1.75 sample input coordinates -0.25, 0.25, 0.75,
 * 1.25, clamped: 0, 25, 75, 100. Shrinking [0 40 80 120] to 2: a tent of
 * half-width 2 around 1.0 weighs inputs 0, 1, 2 by 0.75, 0.75, 0.25:
 * 50 / 1.75 = 28.57 -> 29; around 3.0 inputs 1, 2, 3 by 0.25, 0.75, 0.75:
 * 160 / 1.75 = 91.43 -> 91. */
START_TEST(test_resize_values)
{
    const uint8_t up_in[2] = {0, 100}, down_in[4] = {0, 40, 80, 120};
    uint8_t out[4];
    ck_assert(augment_resize(out, 1, 4, up_in, 1, 2, 2, 1));
    ck_assert_int_eq(out[0], 0);
    ck_assert_int_eq(out[1], 25);
    ck_assert_int_eq(out[2], 75);
    ck_assert_int_eq(out[3], 100);
    ck_assert(augment_resize(out, 2, 1, down_in, 4, 1, 1, 1)); /* a column */
    ck_assert_int_eq(out[0], 29);
    ck_assert_int_eq(out[1], 91);
    /* RGBA: a transparent white pixel next to an opaque black one must not
     * lighten the black (premultiplied resampling); alpha averages. */
    const uint8_t rgba[8] = {255, 255, 255, 0, 0, 0, 0, 255};
    uint8_t one[4];
    ck_assert(augment_resize(one, 1, 1, rgba, 1, 2, 8, 4));
    ck_assert_int_eq(one[0], 0);
    ck_assert_int_eq(one[3], 128);
}
END_TEST

/* A set of n gray (h, w) noise images with values in [50, 200]. */
static void open_noise_set(Dataset *ds, char **root, int n, int h, int w)
{
    *root = make_root();
    make_dirs(*root, "train/a");
    make_dirs(*root, "train/b");
    uint8_t *px = malloc((size_t)h * w);
    for (int i = 0; i < n; i++) {
        Rng rng = rng_stream(99, RNG_TEST, (uint64_t)i, 0);
        for (int k = 0; k < h * w; k++)
            px[k] = (uint8_t)(50 + rng_below(&rng, 151));
        char rel[64];
        snprintf(rel, sizeof rel, "train/%c/%02d.png", i % 3 ? 'a' : 'b', i);
        write_image(P(*root, rel), 'p', w, h, 1, px);
    }
    free(px);
    DatasetOptions o = dopts(1, VT_MIN(h, w));
    open_ok(ds, *root, "train", &o);
}

/* The first epoch of a training loader, by dataset index: (count, S*S). */
static float *epoch0_by_index(const Dataset *ds, const LoaderOptions *o)
{
    const int S = o->img_size, len = S * S;
    float *out = calloc((size_t)ds->count * len, sizeof *out);
    Loader *ld = make_loader(ds, o);
    for (int64_t s = 0; s < loader_batches_per_epoch(ld); s++) {
        Batch b;
        ck_assert(loader_next(ld, &b));
        ck_assert_int_eq(b.epoch, 0);
        for (int i = 0; i < b.size; i++)
            memcpy(out + (size_t)b.indices[i] * len, b.images + (size_t)i * len,
                   (size_t)len * sizeof *out);
    }
    loader_destroy(ld);
    return out;
}

START_TEST(test_rrc_per_sample_stream)
{
    char *root;
    Dataset ds;
    open_noise_set(&ds, &root, 12, 9, 11);
    LoaderOptions o = lopts(2, 8, true);
    o.random_resized_crop = true;
    o.hflip = 0.5f;
    float *by2 = epoch0_by_index(&ds, &o);
    o.batch_size = 4; /* same epoch order, other batch positions */
    float *by4 = epoch0_by_index(&ds, &o);
    ck_assert_int_eq(memcmp(by2, by4, (size_t)12 * 64 * sizeof(float)), 0);
    for (int k = 0; k < 12 * 64; k++) {
        int v = byte_of(by2[k]);
        ck_assert_msg(v >= 50 && v <= 200, "value %d outside the source range", v);
    }
    o.seed = 4321;
    float *other = epoch0_by_index(&ds, &o);
    ck_assert_int_ne(memcmp(by2, other, (size_t)12 * 64 * sizeof(float)), 0);
    free(by2);
    free(by4);
    free(other);
    dataset_close(&ds);
    remove_root(root);
}
END_TEST

START_TEST(test_normalize)
{
    char *root = make_root();
    make_dirs(root, "train/a");
    uint8_t px[2 * 2 * 3];
    for (int k = 0; k < 12; k++)
        px[k] = (uint8_t)(k * 21);
    write_image(P(root, "train/a/x.png"), 'p', 2, 2, 3, px);
    Dataset ds;
    DatasetOptions dopt = dopts(3, 2);
    open_ok(&ds, root, "train", &dopt);
    LoaderOptions o = lopts(1, 2, false);
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    memcpy(o.mean, mean, sizeof mean);
    memcpy(o.std, std, sizeof std);
    Loader *ld = make_loader(&ds, &o);
    Batch b;
    ck_assert(loader_next(ld, &b));
    for (int c = 0; c < 3; c++) /* CHW out of HWC */
        for (int p = 0; p < 4; p++) {
            double want = (px[p * 3 + c] / 255.0 - mean[c]) / std[c];
            ck_assert_double_eq_tol(b.images[c * 4 + p], want, 1e-5);
        }
    ck_assert_int_eq(b.labels[0], 0);
    ck_assert_int_eq(b.indices[0], 0);
    loader_destroy(ld);
    dataset_close(&ds);
    remove_root(root);
}
END_TEST

/* ---- the loader ------------------------------------------------------------- */

typedef struct Saved {
    float *images;
    int labels[8], indices[8], size;
    int64_t step, epoch;
} Saved;

static void save(Saved *s, const Batch *b, size_t len)
{
    s->images = malloc((size_t)b->size * len * sizeof(float));
    memcpy(s->images, b->images, (size_t)b->size * len * sizeof(float));
    memcpy(s->labels, b->labels, (size_t)b->size * sizeof(int));
    memcpy(s->indices, b->indices, (size_t)b->size * sizeof(int));
    s->size = b->size, s->step = b->step, s->epoch = b->epoch;
}

static void check_saved(const Saved *s, const Batch *b, size_t len)
{
    ck_assert_int_eq(s->size, b->size);
    ck_assert_int_eq(s->step, b->step);
    ck_assert_int_eq(s->epoch, b->epoch);
    ck_assert_int_eq(memcmp(s->labels, b->labels, (size_t)b->size * sizeof(int)), 0);
    ck_assert_int_eq(memcmp(s->indices, b->indices, (size_t)b->size * sizeof(int)), 0);
    ck_assert_int_eq(memcmp(s->images, b->images, (size_t)b->size * len * sizeof(float)), 0);
}

START_TEST(test_loader_determinism)
{
    char *root;
    Dataset ds;
    open_noise_set(&ds, &root, 10, 7, 7);
    LoaderOptions o = lopts(3, 6, true);
    o.random_resized_crop = true;
    o.hflip = 0.5f;
    const size_t len = 36;
    enum { STEPS = 10 };
    Saved saved[STEPS];
    Loader *a = make_loader(&ds, &o);
    ck_assert_int_eq(loader_batches_per_epoch(a), 3); /* 10 / 3, last partial dropped */
    int order[10];
    for (int64_t s = 0; s < STEPS; s++) {
        Batch b;
        ck_assert(loader_next(a, &b));
        ck_assert_int_eq(b.step, s);
        ck_assert_int_eq(b.epoch, s / 3);
        if (s % 3 == 0) { /* the epoch's permutation, from its own stream */
            for (int i = 0; i < 10; i++)
                order[i] = i;
            Rng rng = rng_stream(o.seed, RNG_DATA_ORDER, (uint64_t)(s / 3), 0);
            rng_shuffle(&rng, order, 10);
        }
        for (int i = 0; i < 3; i++) {
            ck_assert_int_eq(b.indices[i], order[(s % 3) * 3 + i]);
            ck_assert_int_eq(b.labels[i], ds.labels[b.indices[i]]);
        }
        save(&saved[s], &b, len);
    }
    loader_destroy(a);
    Loader *again = make_loader(&ds, &o);
    for (int s = 0; s < STEPS; s++) {
        Batch b;
        ck_assert(loader_next(again, &b));
        check_saved(&saved[s], &b, len);
    }
    loader_destroy(again);
    for (int k = 1; k < STEPS; k += 4) { /* resume at step k */
        o.start_step = k;
        Loader *resumed = make_loader(&ds, &o);
        for (int s = k; s < STEPS; s++) {
            Batch b;
            ck_assert(loader_next(resumed, &b));
            check_saved(&saved[s], &b, len);
        }
        loader_destroy(resumed);
    }
    for (int s = 0; s < STEPS; s++)
        free(saved[s].images);
    dataset_close(&ds);
    remove_root(root);
}
END_TEST

/* Beta(a, a) has mean 1/2 and variance 1 / (4 (2a + 1)): 0.179 at a =
 * 0.2 (timm's usual mixup alpha), 1/12 at a = 1 (uniform), 0.25 at a =
 * 1e-4, where the Gamma draws themselves underflow. 20000 draws: the
 * mean's standard error is under 4e-3, the variance's under 2e-3; the
 * tolerances are about 4 and 5 of them. */
START_TEST(test_beta_draws)
{
    const double alphas[3] = {0.2, 1.0, 1e-4};
    for (int k = 0; k < 3; k++) {
        Rng rng = rng_stream(41, RNG_TEST, (uint64_t)k, 0);
        double sum = 0.0, sum2 = 0.0;
        enum { N = 20000 };
        for (int i = 0; i < N; i++) {
            const double x = rng_beta_symmetric(&rng, alphas[k]);
            ck_assert(x >= 0.0 && x <= 1.0);
            sum += x;
            sum2 += x * x;
        }
        const double mean = sum / N, var = sum2 / N - mean * mean;
        const double want = 1.0 / (4.0 * (2.0 * alphas[k] + 1.0));
        ck_assert_msg(fabs(mean - 0.5) < 0.015, "alpha %g: mean %.4f", alphas[k], mean);
        ck_assert_msg(fabs(var - want) < 0.01, "alpha %g: variance %.4f, want %.4f", alphas[k],
                      var, want);
    }
}
END_TEST

/* The draws: off without an alpha or at probability 0; mixup only or
 * CutMix only where one alpha is set; with both, CutMix in about
 * switch_prob of the batches; a CutMix box inside the image, lambda the
 * share it leaves; the same step draws the same. */
START_TEST(test_mixup_draws)
{
    enum { S = 12, STEPS = 2000 };
    const MixupOptions off = {.prob = 1.0f, .switch_prob = 0.5f};
    ck_assert(mixup_draw(&off, 1, 0, S).lambda == 1.0f);
    const MixupOptions never = {.mixup_alpha = 1.0f, .prob = 0.0f};
    ck_assert(mixup_draw(&never, 1, 0, S).lambda == 1.0f);
    const MixupOptions both = {.mixup_alpha = 0.8f, .cutmix_alpha = 1.0f, .prob = 1.0f,
                               .switch_prob = 0.3f};
    int cutmixes = 0;
    for (int64_t step = 0; step < STEPS; step++) {
        const MixDraw d = mixup_draw(&both, 7, step, S);
        const MixDraw again = mixup_draw(&both, 7, step, S);
        ck_assert(d.lambda == again.lambda && d.cutmix == again.cutmix && d.y0 == again.y0 &&
                  d.y1 == again.y1 && d.x0 == again.x0 && d.x1 == again.x1);
        ck_assert(d.lambda >= 0.0f && d.lambda <= 1.0f);
        if (!d.cutmix)
            continue;
        cutmixes++;
        ck_assert(0 <= d.y0 && d.y0 <= d.y1 && d.y1 <= S && 0 <= d.x0 && d.x0 <= d.x1 &&
                  d.x1 <= S);
        const float left = 1.0f - (float)((d.y1 - d.y0) * (d.x1 - d.x0)) / (S * S);
        ck_assert_float_eq(d.lambda, left);
    }
    /* 30 % of 2000: standard error 20 draws; 100 is 5 of them. */
    ck_assert_msg(abs(cutmixes - 600) < 100, "%d CutMix batches of %d", cutmixes, STEPS);
    const MixupOptions cut_only = {.cutmix_alpha = 1.0f, .prob = 1.0f, .switch_prob = 0.0f};
    const MixupOptions mix_only = {.mixup_alpha = 1.0f, .prob = 1.0f, .switch_prob = 1.0f};
    for (int64_t step = 0; step < 50; step++) {
        ck_assert(mixup_draw(&cut_only, 3, step, S).cutmix);
        ck_assert(!mixup_draw(&mix_only, 3, step, S).cutmix);
    }
}
END_TEST

/* A batch of 3 images of 2 x 2 x 2 (C, S, S): 0 and 1 pair, 2 stays
 * itself. Mixup at lambda 0.25 blends each pair both ways; CutMix swaps
 * the box (row 1, column 0) of every channel and nothing else. */
START_TEST(test_mixup_apply)
{
    enum { C = 2, S = 2, LEN = C * S * S };
    float images[3 * LEN];
    for (int i = 0; i < 3 * LEN; i++)
        images[i] = (float)i;
    int labels[3] = {4, 7, 9}, mix_labels[3];
    Batch b = {.images = images, .labels = labels, .mix_labels = mix_labels, .size = 3};
    mixup_apply(&(MixDraw){.lambda = 0.25f}, &b, C, S);
    for (int k = 0; k < LEN; k++) {
        const float x = (float)k, y = (float)(LEN + k);
        ck_assert_float_eq_tol(images[k], 0.25f * x + 0.75f * y, 1e-6f);
        ck_assert_float_eq_tol(images[LEN + k], 0.25f * y + 0.75f * x, 1e-6f);
        ck_assert(images[2 * LEN + k] == (float)(2 * LEN + k));
    }
    ck_assert(mix_labels[0] == 7 && mix_labels[1] == 4 && mix_labels[2] == 9);
    ck_assert(b.mix_lambda == 0.25f);

    for (int i = 0; i < 3 * LEN; i++)
        images[i] = (float)i;
    const MixDraw box = {.lambda = 0.75f, .cutmix = true, .y0 = 1, .y1 = 2, .x0 = 0, .x1 = 1};
    mixup_apply(&box, &b, C, S);
    for (int c = 0; c < C; c++)
        for (int p = 0; p < S * S; p++) {
            const int k = c * S * S + p;
            const bool in_box = p == 2; /* (row 1, column 0) */
            ck_assert(images[k] == (float)(in_box ? LEN + k : k));
            ck_assert(images[LEN + k] == (float)(in_box ? k : LEN + k));
        }
    ck_assert(b.mix_lambda == 0.75f && mix_labels[0] == 7);
}
END_TEST

/* The loader mixes what it would deliver unmixed: each pair of a mixup
 * batch is the lambda blend of the same pair without mixup (same seed,
 * same step), its partner's label beside it. */
START_TEST(test_loader_mixes_its_own_batches)
{
    char *root;
    Dataset ds;
    open_noise_set(&ds, &root, 10, 7, 7);
    LoaderOptions plain = lopts(4, 6, true), mixed = plain;
    mixed.mixup = (MixupOptions){.mixup_alpha = 1.0f, .prob = 1.0f};
    Loader *a = make_loader(&ds, &plain), *m = make_loader(&ds, &mixed);
    const size_t len = 36;
    for (int step = 0; step < 4; step++) {
        Batch x, y;
        ck_assert(loader_next(a, &x) && loader_next(m, &y));
        ck_assert(x.mix_lambda == 1.0f && y.mix_lambda < 1.0f);
        const float l = y.mix_lambda;
        for (int i = 0; i < 4; i++) {
            const int partner = i ^ 1;
            ck_assert_int_eq(y.labels[i], x.labels[i]);
            ck_assert_int_eq(y.mix_labels[i], x.labels[partner]);
            for (size_t k = 0; k < len; k++)
                ck_assert_float_eq_tol(y.images[i * len + k],
                                       l * x.images[i * len + k] +
                                           (1.0f - l) * x.images[partner * len + k],
                                       1e-5f);
        }
    }
    loader_destroy(a);
    loader_destroy(m);
    dataset_close(&ds);
    remove_root(root);
}
END_TEST

START_TEST(test_loader_shards)
{
    /* Two shards (data-parallel ranks) of a global batch of 4: shard r
     * delivers samples [2r, 2r + 2) of every batch the unsharded loader
     * delivers, augmented alike; an eval split of 10 is cut 5 + 5. A
     * batch that does not split is refused. */
    char *root;
    Dataset ds;
    open_noise_set(&ds, &root, 10, 7, 7);
    LoaderOptions o = lopts(4, 6, true);
    o.random_resized_crop = true;
    o.hflip = 0.5f;
    /* Mixup and CutMix pair neighbours, inside a shard of 2: mixed alike. */
    o.mixup = (MixupOptions){.mixup_alpha = 1.0f, .cutmix_alpha = 1.0f, .prob = 1.0f,
                             .switch_prob = 0.5f};
    const size_t len = 36;
    enum { STEPS = 5 };
    Loader *whole = make_loader(&ds, &o), *part[2];
    for (int r = 0; r < 2; r++) {
        LoaderOptions so = o;
        so.shard = r;
        so.shards = 2;
        part[r] = make_loader(&ds, &so);
    }
    for (int s = 0; s < STEPS; s++) {
        Batch w, b;
        ck_assert(loader_next(whole, &w));
        for (int r = 0; r < 2; r++) {
            ck_assert(loader_next(part[r], &b));
            ck_assert_int_eq(b.size, 2);
            ck_assert_int_eq(b.first, 2 * r);
            ck_assert_int_eq(b.step, w.step);
            ck_assert_int_eq(memcmp(b.indices, w.indices + 2 * r, 2 * sizeof(int)), 0);
            ck_assert_int_eq(memcmp(b.images, w.images + 2 * r * len, 2 * len * sizeof(float)),
                             0);
            ck_assert_int_eq(memcmp(b.mix_labels, w.mix_labels + 2 * r, 2 * sizeof(int)), 0);
            ck_assert(b.mix_lambda == w.mix_lambda && w.mix_lambda < 1.0f);
        }
    }
    loader_destroy(whole);
    for (int r = 0; r < 2; r++)
        loader_destroy(part[r]);

    LoaderOptions eo = lopts(4, 6, false);
    eo.shards = 2;
    int next = 0;
    for (int r = 0; r < 2; r++) {
        eo.shard = r;
        Loader *ld = make_loader(&ds, &eo);
        ck_assert_int_eq(loader_batches_per_epoch(ld), 3); /* 5 images in 2s */
        Batch b;
        while (loader_next(ld, &b))
            for (int i = 0; i < b.size; i++)
                ck_assert_int_eq(b.indices[i], next++);
        ck_assert_int_eq(next, 5 * (r + 1));
        loader_destroy(ld);
    }

    o.shards = 3;
    Loader *ld = NULL;
    VtError err;
    ck_assert_int_eq(loader_create(&ld, &ds, &o, &err), VT_ERR_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "not a multiple of the 3 ranks"));
    dataset_close(&ds);
    remove_root(root);
}
END_TEST

START_TEST(test_loader_eval_covers_all)
{
    char *root;
    Dataset ds;
    open_noise_set(&ds, &root, 10, 5, 5);
    LoaderOptions o = lopts(4, 5, false);
    o.prefetch = 1;
    Loader *ld = make_loader(&ds, &o);
    ck_assert_int_eq(loader_batches_per_epoch(ld), 3);
    const int sizes[] = {4, 4, 2};
    int next = 0;
    for (int k = 0; k < 3; k++) {
        Batch b;
        ck_assert(loader_next(ld, &b));
        ck_assert_int_eq(b.size, sizes[k]);
        ck_assert_int_eq(b.step, k);
        for (int i = 0; i < b.size; i++, next++) {
            ck_assert_int_eq(b.indices[i], next);
            ck_assert_int_eq(b.labels[i], ds.labels[next]);
            /* eval at the cached size is the image itself */
            const uint8_t *px = image_at(&ds, next);
            for (int p = 0; p < 25; p++)
                ck_assert_int_eq(byte_of(b.images[i * 25 + p]), px[p]);
        }
    }
    Batch b;
    ck_assert(!loader_next(ld, &b));
    ck_assert(!loader_next(ld, &b));
    loader_destroy(ld);
    dataset_close(&ds);
    remove_root(root);
}
END_TEST

START_TEST(test_loader_destroy_midstream)
{
    char *root;
    Dataset ds;
    open_noise_set(&ds, &root, 10, 8, 8);
    LoaderOptions o = lopts(2, 8, true);
    o.prefetch = 3;
    for (int taken = 0; taken < 4; taken++) {
        Loader *ld = make_loader(&ds, &o);
        for (int s = 0; s < taken; s++) {
            Batch b;
            ck_assert(loader_next(ld, &b));
        }
        loader_destroy(ld); /* must join a worker blocked on a full ring */
    }
    o.train = false;
    Loader *ev = make_loader(&ds, &o);
    Batch b;
    ck_assert(loader_next(ev, &b));
    loader_destroy(ev);
    loader_destroy(NULL);
    dataset_close(&ds);
    remove_root(root);
}
END_TEST

START_TEST(test_loader_errors)
{
    char *root;
    Dataset ds;
    open_noise_set(&ds, &root, 3, 4, 4);
    Loader *ld = NULL;
    VtError err = {0};
    LoaderOptions o = lopts(4, 4, true);
    ck_assert_int_eq(loader_create(&ld, &ds, &o, &err), VT_ERR_DATA);
    check_message(&err, "loader: ", "fewer than one batch");
    o = lopts(1, 4, true);
    o.std[0] = 0.0f;
    ck_assert_int_eq(loader_create(&ld, &ds, &o, &err), VT_ERR_ARGUMENT);
    o = lopts(1, 4, false);
    o.crop_pct = 1.5f;
    ck_assert_int_eq(loader_create(&ld, &ds, &o, &err), VT_ERR_ARGUMENT);
    o = lopts(1, 4, true);
    o.random_resized_crop = true;
    o.scale[0] = 0.0f;
    ck_assert_int_eq(loader_create(&ld, &ds, &o, &err), VT_ERR_ARGUMENT);
    ck_assert_ptr_null(ld);
    dataset_close(&ds);
    remove_root(root);
}
END_TEST

Suite *data_suite(void)
{
    Suite *s = suite_create("data");
    TCase *scan = tcase_with_timeout("scan", 30, NULL);
    tcase_add_test(scan, test_scan_sorted_classes);
    tcase_add_test(scan, test_scan_errors);
    tcase_add_test(scan, test_scan_unreadable_folder);
    tcase_add_test(scan, test_class_mismatch);
    suite_add_tcase(s, scan);
    TCase *decode = tcase_with_timeout("decode", 30, NULL);
    tcase_add_test(decode, test_formats_rgb);
    tcase_add_test(decode, test_formats_gray_and_gif);
    tcase_add_test(decode, test_channel_conversion);
    tcase_add_test(decode, test_cache_resize);
    tcase_add_test(decode, test_cache_file_matches_memory);
    tcase_add_test(decode, test_decode_thread_independent);
    tcase_add_test(decode, test_progress_line);
    suite_add_tcase(s, decode);
    TCase *bad = tcase_with_timeout("bad images", 30, NULL);
    tcase_add_loop_test(bad, test_bad_image_error, 0, NBAD);
    tcase_add_loop_test(bad, test_bad_image_skip, 0, NBAD);
    tcase_add_test(bad, test_bad_image_first_and_compaction);
    tcase_add_test(bad, test_all_skipped);
    tcase_add_test(bad, test_decode_out_of_memory_is_not_a_bad_image);
    suite_add_tcase(s, bad);
    TCase *aug = tcase_with_timeout("augment", 30, NULL);
    tcase_add_test(aug, test_eval_center_crop);
    tcase_add_test(aug, test_eval_side);
    tcase_add_test(aug, test_eval_resize_then_crop);
    tcase_add_test(aug, test_train_flip);
    tcase_add_test(aug, test_train_pad_crop);
    tcase_add_test(aug, test_rrc_box);
    tcase_add_test(aug, test_resize_values);
    tcase_add_test(aug, test_rrc_per_sample_stream);
    tcase_add_test(aug, test_normalize);
    suite_add_tcase(s, aug);
    TCase *loader = tcase_with_timeout("loader", 30, NULL);
    tcase_add_test(loader, test_loader_determinism);
    tcase_add_test(loader, test_loader_eval_covers_all);
    tcase_add_test(loader, test_loader_shards);
    tcase_add_test(loader, test_beta_draws);
    tcase_add_test(loader, test_mixup_draws);
    tcase_add_test(loader, test_mixup_apply);
    tcase_add_test(loader, test_loader_mixes_its_own_batches);
    tcase_add_test(loader, test_loader_destroy_midstream);
    tcase_add_test(loader, test_loader_errors);
    suite_add_tcase(s, loader);
    return s;
}
