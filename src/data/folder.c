/*
 * folder.c - scan an ImageNet-style split, decode every image once and keep
 * it in the cache (see data.h, DESIGN §1, §6).
 *
 * Three steps:
 *   1. scan: root/<split>/<class>/<file>, classes and files sorted by
 *      strcmp, hidden entries ignored;
 *   2. probe (parallel): stat (following symlinks) and read the header with
 *      stbi_info, so that bad files are found cheaply and the size of every
 *      cached image, hence every offset, is known before any pixel is
 *      decoded;
 *   3. decode (parallel): each file is decoded, converted to C channels,
 *      resized and written into its own slot of one blob, so the result
 *      does not depend on the thread count. A file that fails only here
 *      (e.g. a truncated PNG) leaves a hole that is closed by moving the
 *      later images down, in order.
 *
 * Bad images ("PATH: REASON") stop dataset_open under BAD_IMAGE_ERROR or are
 * skipped, counted and summarized on one stderr line under BAD_IMAGE_SKIP.
 * The file an error names does not depend on the threads: the first bad
 * one in scan order among those whose header is bad (found before any
 * decoding), else the first that fails to decode. Running out of memory is
 * never skipped.
 *
 * Channel conversion: gray -> RGB replicates; RGB -> gray is BT.601 luma
 * round(0.299 R + 0.587 G + 0.114 B), in integers; for 1 or 3 channels an
 * alpha channel is composited over black, v * a / 255 rounded (after the
 * luma for gray output); 4 channels keep straight (non-premultiplied) color
 * and the alpha, or add an opaque alpha.
 *
 * Cache file: CACHE_FILE creates cache_dir/cache-<split>-<side>-<C>-XXXXXX.bin
 * (mkstemps), reserves its size with posix_fallocate (a full disk is an error
 * here, not a SIGBUS later), unlinks it at once and maps it shared. The
 * mapping keeps the data; the disk space returns when the data set is
 * closed or the process ends, a crash leaves no stale file, and concurrent
 * runs never collide. Nothing is reused across runs: a reused cache would
 * have to be validated against the source files.
 */
#include "vitrain/data.h"
#include "vitrain/crc32.h"

#include "vitrain/rng.h"

#include "augment.h"
#include "image_integrity.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <stb_image.h>

enum {
    MAX_SIDE = DATA_MAX_SIDE,     /* larger declared sides are rejected unread */
    SKIP_SUMMARY_PATHS = 3,       /* bad files named in the skip summary */
    REASON_MAX = 256
};
static const int64_t MAX_PIXELS = (int64_t)1 << 28;

/* One file of the split while it is being decoded. */
typedef struct Item {
    char *path;
    int label;
    int src_h, src_w;     /* declared by the header */
    int h, w;             /* cached size */
    uint64_t offset;      /* into the blob */
    VtCode code;          /* VT_OK, or why the file is bad */
    char *error;          /* "PATH: REASON" when bad */
} Item;

typedef struct Scan {
    char **classes;
    int num_classes;
    Item *items;
    int count, cap;
} Scan;

typedef struct Names {
    char **names;
    int count, cap;
} Names;

/* ---- small helpers ---------------------------------------------------- */

static char *path_join(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    char *p = vt_xmalloc(la + lb + 2);
    memcpy(p, a, la);
    p[la] = '/';
    memcpy(p + la + 1, b, lb + 1);
    return p;
}

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    return memcpy(vt_xmalloc(n), s, n);
}

/* strerror is not required to be thread-safe; probes run in parallel. */
static void errno_text(int errnum, char *buf, size_t size)
{
    if (strerror_r(errnum, buf, size) != 0)
        snprintf(buf, size, "error %d", errnum);
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void names_push(Names *n, const char *name)
{
    if (n->count == n->cap) {
        n->cap = n->cap ? 2 * n->cap : 16;
        n->names = realloc(n->names, (size_t)n->cap * sizeof *n->names);
        VT_ASSERT(n->names);
    }
    n->names[n->count++] = xstrdup(name);
}

static void names_free(Names *n)
{
    for (int i = 0; i < n->count; i++)
        free(n->names[i]);
    free(n->names);
    *n = (Names){0};
}

/* The non-hidden entries of dir, sorted by strcmp; returns 0 or errno. */
static int list_dir(Names *out, const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return errno;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e)
            break;
        if (e->d_name[0] != '.')
            names_push(out, e->d_name);
    }
    int rc = errno;
    closedir(d);
    if (!rc && out->count > 1)
        qsort(out->names, (size_t)out->count, sizeof *out->names, compare_names);
    return rc;
}

/* ---- scanning ---------------------------------------------------------- */

static void scan_free(Scan *sc)
{
    for (int i = 0; i < sc->num_classes; i++)
        free(sc->classes[i]);
    free(sc->classes);
    for (int i = 0; i < sc->count; i++) {
        free(sc->items[i].path);
        free(sc->items[i].error);
    }
    free(sc->items);
    *sc = (Scan){0};
}

static void scan_push(Scan *sc, char *path, int label)
{
    if (sc->count == sc->cap) {
        sc->cap = sc->cap ? 2 * sc->cap : 256;
        sc->items = realloc(sc->items, (size_t)sc->cap * sizeof *sc->items);
        VT_ASSERT(sc->items);
    }
    sc->items[sc->count++] = (Item){.path = path, .label = label};
}

static VtCode split_error(const char *root, const char *split, const char *dir, int rc,
                          VtError *err)
{
    char why[REASON_MAX];
    struct stat st;
    if (rc == ENOENT && stat(root, &st) == 0 && S_ISDIR(st.st_mode))
        return vt_fail(err, VT_ERR_DATA, "data root '%s' has no '%s' folder", root, split);
    errno_text(rc, why, sizeof why);
    if (rc == ENOENT)
        return vt_fail(err, VT_ERR_IO, "data root '%s': %s", root, why);
    if (rc == ENOTDIR)
        return vt_fail(err, VT_ERR_DATA, "'%s' is not a folder", dir);
    return vt_fail(err, VT_ERR_IO, "cannot read folder '%s': %s", dir, why);
}

/* The class folders of dir: its entries that are folders (after links). */
static VtCode find_classes(Scan *sc, const char *dir, Names *entries, VtError *err)
{
    sc->classes = vt_xcalloc((size_t)entries->count, sizeof *sc->classes);
    for (int i = 0; i < entries->count; i++) {
        char *path = path_join(dir, entries->names[i]);
        struct stat st;
        int rc = stat(path, &st) == 0 ? 0 : errno;
        free(path);
        if (rc) {
            char why[REASON_MAX];
            errno_text(rc, why, sizeof why);
            return vt_fail(err, VT_ERR_IO, "cannot read '%s/%s': %s", dir, entries->names[i],
                           why);
        }
        if (S_ISDIR(st.st_mode))
            sc->classes[sc->num_classes++] = xstrdup(entries->names[i]);
    }
    if (sc->num_classes == 0)
        return vt_fail(err, VT_ERR_DATA, "'%s' has no class folders", dir);
    return VT_OK;
}

static VtCode scan_class(Scan *sc, const char *dir, int label, VtError *err)
{
    char *cdir = path_join(dir, sc->classes[label]);
    Names files = {0};
    int rc = list_dir(&files, cdir);
    VtCode code = VT_OK;
    if (rc) {
        char why[REASON_MAX];
        errno_text(rc, why, sizeof why);
        code = vt_fail(err, VT_ERR_IO, "cannot read folder '%s': %s", cdir, why);
    } else if (files.count == 0) {
        code = vt_fail(err, VT_ERR_DATA, "class folder '%s' is empty", cdir);
    } else if ((int64_t)sc->count + files.count > INT32_MAX) {
        code = vt_fail(err, VT_ERR_DATA, "'%s' has more than %d images", dir, INT32_MAX);
    }
    for (int i = 0; !code && i < files.count; i++)
        scan_push(sc, path_join(cdir, files.names[i]), label);
    names_free(&files);
    free(cdir);
    return code;
}

static VtCode scan_split(Scan *sc, const char *root, const char *split, VtError *err)
{
    char *dir = path_join(root, split);
    Names entries = {0};
    int rc = list_dir(&entries, dir);
    VtCode code = rc ? split_error(root, split, dir, rc, err)
                     : find_classes(sc, dir, &entries, err);
    for (int c = 0; !code && c < sc->num_classes; c++)
        code = scan_class(sc, dir, c, err);
    names_free(&entries);
    free(dir);
    return code;
}

/* Keeps round(fraction * n) (at least one) of the n files of every class,
 * drawn by a shuffle of the RNG_SUBSET stream (seed, class), in their
 * sorted order. A class keeps the same files whatever the other classes
 * hold, and for one seed the subsets of growing fractions are nested (the
 * same shuffle, a longer prefix of it). */
static void keep_fraction(Scan *sc, float fraction, uint64_t seed)
{
    int out = 0;
    for (int start = 0, c = 0; c < sc->num_classes; c++) {
        int end = start;
        while (end < sc->count && sc->items[end].label == c)
            end++;
        const int n = end - start;
        const int keep = VT_MIN(n, VT_MAX(1, (int)lround((double)fraction * n)));
        int *order = vt_xmalloc((size_t)n * sizeof *order);
        bool *kept = vt_xcalloc((size_t)n, sizeof *kept);
        for (int i = 0; i < n; i++)
            order[i] = i;
        Rng rng = rng_stream(seed, RNG_SUBSET, (uint64_t)c, 0);
        rng_shuffle(&rng, order, n);
        for (int i = 0; i < keep; i++)
            kept[order[i]] = true;
        for (int i = 0; i < n; i++) {
            if (kept[i])
                sc->items[out++] = sc->items[start + i];
            else
                free(sc->items[start + i].path);
        }
        free(order);
        free(kept);
        start = end;
    }
    sc->count = out;
}

/* The first difference between this split's classes and the expected ones. */
static VtCode check_classes(const Scan *sc, const char *root, const char *split,
                            const Dataset *expected, VtError *err)
{
    const int n = VT_MIN(sc->num_classes, expected->num_classes);
    for (int i = 0; i < n; i++)
        if (strcmp(sc->classes[i], expected->class_names[i]) != 0)
            return vt_fail(err, VT_ERR_DATA,
                           "'%s/%s' classes differ from the expected classes at class %d: "
                           "'%s' where '%s' was expected",
                           root, split, i, sc->classes[i], expected->class_names[i]);
    if (sc->num_classes > n)
        return vt_fail(err, VT_ERR_DATA,
                       "'%s/%s' has %d classes, %d expected: extra class '%s'", root, split,
                       sc->num_classes, expected->num_classes, sc->classes[n]);
    if (expected->num_classes > n)
        return vt_fail(err, VT_ERR_DATA,
                       "'%s/%s' has %d classes, %d expected: class '%s' is missing", root,
                       split, sc->num_classes, expected->num_classes, expected->class_names[n]);
    return VT_OK;
}

/* ---- probing (pass 1) ---------------------------------------------------- */

static void item_bad(Item *it, VtCode code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void item_bad(Item *it, VtCode code, const char *fmt, ...)
{
    char reason[REASON_MAX];
    va_list args;
    va_start(args, fmt);
    vsnprintf(reason, sizeof reason, fmt, args);
    va_end(args);
    size_t n = strlen(it->path) + strlen(reason) + 3;
    it->error = vt_xmalloc(n);
    snprintf(it->error, n, "%s: %s", it->path, reason);
    it->code = code;
}

static void item_bad_errno(Item *it, int errnum)
{
    char why[REASON_MAX];
    errno_text(errnum, why, sizeof why);
    item_bad(it, VT_ERR_IO, "%s", why);
}

static const char *stbi_reason(void)
{
    const char *r = stbi_failure_reason();
    return r ? r : "cannot decode";
}

/* Opens a regular file; stat first, so that a FIFO is never opened. */
static FILE *item_open(Item *it)
{
    struct stat st;
    if (stat(it->path, &st) != 0) {
        item_bad_errno(it, errno); /* dangling link, link loop, ... */
        return NULL;
    }
    if (S_ISDIR(st.st_mode))
        item_bad(it, VT_ERR_DATA, "is a folder, not an image file");
    else if (!S_ISREG(st.st_mode))
        item_bad(it, VT_ERR_DATA, "not a regular file");
    else if (st.st_size == 0)
        item_bad(it, VT_ERR_DATA, "empty file (0 bytes)");
    if (it->error)
        return NULL;
    FILE *f = fopen(it->path, "rb");
    if (!f)
        item_bad_errno(it, errno);
    return f;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* stbi_info turns down a PNG that declares more than 2^30 bytes, then tries
 * the other formats and reports "unknown image type"; reading the IHDR here
 * names the real reason. False if f is not a PNG. */
static bool png_declared_size(FILE *f, int64_t *w, int64_t *h)
{
    static const uint8_t signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    uint8_t b[24];
    size_t n = fread(b, 1, sizeof b, f);
    rewind(f);
    if (n < sizeof b || memcmp(b, signature, 8) != 0 || memcmp(b + 12, "IHDR", 4) != 0)
        return false;
    *w = be32(b + 16);
    *h = be32(b + 20);
    return true;
}

/* Marks it bad if w x h is over the limits; checked before any pixel is
 * allocated. */
static bool size_ok(Item *it, int64_t w, int64_t h)
{
    if (w > MAX_SIDE || h > MAX_SIDE || w * h > MAX_PIXELS) {
        item_bad(it, VT_ERR_DATA,
                 "image too large: %lld x %lld pixels (limit %d per side, 2^28 in all)",
                 (long long)w, (long long)h, MAX_SIDE);
        return false;
    }
    return true;
}

static void probe(Item *it, int side)
{
    FILE *f = item_open(it);
    if (!f)
        return;
    int64_t pw, ph;
    if (png_declared_size(f, &pw, &ph) && !size_ok(it, pw, ph)) {
        fclose(f);
        return;
    }
    int w = 0, h = 0, n = 0;
    int ok = stbi_info_from_file(f, &w, &h, &n);
    fclose(f);
    if (ok && h < 0 && h > INT_MIN)
        h = -h; /* a BMP stored top-down, which stb_image decodes upright */
    if (!ok || w <= 0 || h <= 0)
        item_bad(it, VT_ERR_DATA, "not an image in a supported format (stb_image: %s)",
                 ok ? "no pixels" : stbi_reason());
    else if (!size_ok(it, w, h))
        return;
    else if (!augment_resized_dims(&it->h, &it->w, h, w, side))
        item_bad(it, VT_ERR_DATA, "aspect ratio %d x %d too extreme for cache side %d", w, h,
                 side);
    it->src_h = h;
    it->src_w = w;
}

/* ---- decoding (pass 2) --------------------------------------------------- */

static uint8_t over_black(int v, int a)
{
    return (uint8_t)((v * a + 127) / 255);
}

static uint8_t luma(int r, int g, int b)
{
    return (uint8_t)((299 * r + 587 * g + 114 * b + 500) / 1000);
}

/* One pixel of n channels (stb_image: gray, gray+alpha, RGB, RGBA) to C. */
static void convert_pixel(uint8_t *o, const uint8_t *p, int n, int C)
{
    int r = p[0], g = p[0], b = p[0], a = 255;
    if (n >= 3) {
        g = p[1];
        b = p[2];
    }
    if (n == 2 || n == 4)
        a = p[n - 1];
    if (C == 4) {
        o[0] = (uint8_t)r, o[1] = (uint8_t)g, o[2] = (uint8_t)b, o[3] = (uint8_t)a;
    } else if (C == 3) {
        o[0] = over_black(r, a), o[1] = over_black(g, a), o[2] = over_black(b, a);
    } else {
        o[0] = over_black(n >= 3 ? luma(r, g, b) : r, a);
    }
}

static void convert(uint8_t *out, const uint8_t *in, size_t pixels, int n, int C)
{
    if (n == C) {
        memcpy(out, in, pixels * (size_t)C);
        return;
    }
    for (size_t i = 0; i < pixels; i++)
        convert_pixel(out + i * C, in + i * n, n, C);
}

/* The whole file in memory (malloc'd), or NULL with it marked bad. */
static uint8_t *item_read_all(Item *it, size_t *size)
{
    FILE *f = item_open(it);
    if (!f)
        return NULL;
    uint8_t *bytes = NULL;
    long length = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    if (length <= 0 || length > INT_MAX || fseek(f, 0, SEEK_SET) != 0)
        item_bad(it, VT_ERR_DATA, "cannot read: unexpected length %ld", length);
    else if (!(bytes = malloc((size_t)length)))
        item_bad(it, VT_ERR_NOMEM, "out of memory reading %ld bytes", length);
    else if (fread(bytes, 1, (size_t)length, f) != (size_t)length) {
        item_bad(it, VT_ERR_IO, "changed while being read");
        free(bytes);
        bytes = NULL;
    }
    fclose(f);
    *size = (size_t)length;
    return bytes;
}

/* Whether a failed decode of it ran out of memory: the machine's fault,
 * not the image's, so never a reason to skip it. stb_image says
 * "outofmem" for some of its allocations but nothing for others (its
 * zlib buffers), so a trial allocation of what a decode of this size holds
 * at once decides too: the inflated rows and the pixels, up to 8 bytes a
 * pixel each (16-bit RGBA). */
static bool decode_lacked_memory(const Item *it)
{
    const char *reason = stbi_reason();
    if (reason && strcmp(reason, "outofmem") == 0)
        return true;
    void *trial = malloc((size_t)it->src_w * (size_t)it->src_h * 16);
    free(trial);
    return trial == NULL;
}

/* Decoded pixels (stbi_image_free them), or NULL with it marked bad. */
static uint8_t *item_decode(Item *it, int *w, int *h, int *n)
{
    size_t size;
    uint8_t *bytes = item_read_all(it, &size);
    if (!bytes)
        return NULL;
    char why[REASON_MAX];
    uint8_t *px = NULL;
    if (image_damaged(bytes, size, why, sizeof why))
        item_bad(it, VT_ERR_DATA, "%s", why);
    else if (!(px = stbi_load_from_memory(bytes, (int)size, w, h, n, 0)) &&
             decode_lacked_memory(it))
        item_bad(it, VT_ERR_NOMEM, "out of memory decoding a %d x %d image", it->src_w,
                 it->src_h);
    else if (!px)
        item_bad(it, VT_ERR_DATA, "cannot decode, truncated or corrupt (stb_image: %s)",
                 stbi_reason());
    free(bytes);
    return px;
}

/* Decodes it->path into dst (it->h, it->w, C). */
static void decode(Item *it, uint8_t *dst, int C)
{
    int w = 0, h = 0, n = 0;
    uint8_t *px = item_decode(it, &w, &h, &n);
    if (!px)
        return;
    if (w != it->src_w || h != it->src_h || n < 1 || n > 4) {
        item_bad(it, VT_ERR_DATA, "changed while being read");
    } else if (it->h == h && it->w == w) {
        convert(dst, px, (size_t)w * h, n, C);
    } else {
        uint8_t *tmp = n == C ? px : malloc((size_t)w * h * C);
        if (tmp && tmp != px)
            convert(tmp, px, (size_t)w * h, n, C);
        if (!tmp || !augment_resize(dst, it->h, it->w, tmp, h, w, (size_t)w * C, C))
            item_bad(it, VT_ERR_NOMEM, "out of memory while resizing");
        if (tmp != px)
            free(tmp);
    }
    stbi_image_free(px);
}

/* ---- progress ------------------------------------------------------------ */

typedef struct Progress {
    bool on, tty;
    const char *split;
    int total, done, every;
} Progress;

static Progress progress_start(bool on, const char *split, int total)
{
    Progress p = {.on = on, .tty = isatty(STDERR_FILENO) == 1, .split = split, .total = total};
    p.every = VT_MAX(1, total / (p.tty ? 200 : 10));
    return p;
}

static void progress_tick(Progress *p)
{
    if (!p->on)
        return;
#pragma omp critical(vt_data_progress)
    {
        p->done++;
        if (p->done % p->every == 0 || p->done == p->total)
            fprintf(stderr, "%sdecoding %s: %d/%d images%s", p->tty ? "\r" : "", p->split,
                    p->done, p->total, p->tty && p->done < p->total ? "" : "\n");
    }
}

/* ---- the blob -------------------------------------------------------------- */

typedef struct Blob {
    uint8_t *pixels;
    uint64_t bytes;
    bool mapped;
} Blob;

static bool fits_in_memory(uint64_t bytes)
{
    long pages = sysconf(_SC_AVPHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    if (pages <= 0 || page <= 0)
        return true;
    return bytes <= (uint64_t)pages * (uint64_t)page / 2;
}

static char *cache_file_template(const char *dir, const char *split, int side, int C)
{
    if (!dir || !dir[0])
        dir = getenv("TMPDIR") && getenv("TMPDIR")[0] ? getenv("TMPDIR") : "/tmp";
    char name[VT_NAME_MAX];
    snprintf(name, sizeof name, "cache-%.40s-%d-%d-XXXXXX.bin", split, side, C);
    for (char *c = name; *c; c++)
        if (*c == '/')
            *c = '_';
    return path_join(dir, name);
}

static VtCode map_file(Blob *b, int fd, const char *path, VtError *err)
{
    char why[REASON_MAX];
    int rc = posix_fallocate(fd, 0, (off_t)b->bytes);
    if (rc) {
        errno_text(rc, why, sizeof why);
        return vt_fail(err, VT_ERR_IO, "cannot reserve %llu bytes for the cache file %s: %s",
                       (unsigned long long)b->bytes, path, why);
    }
    void *p = mmap(NULL, (size_t)b->bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
        errno_text(errno, why, sizeof why);
        return vt_fail(err, VT_ERR_IO, "cannot map the cache file %s: %s", path, why);
    }
    b->pixels = p;
    b->mapped = true;
    return VT_OK;
}

static VtCode blob_file(Blob *b, const DatasetOptions *o, const char *split, VtError *err)
{
    char *path = cache_file_template(o->cache_dir, split, o->cache_side, o->channels);
    int fd = mkstemps(path, 4);
    VtCode code = VT_OK;
    if (fd < 0) {
        char why[REASON_MAX];
        errno_text(errno, why, sizeof why);
        code = vt_fail(err, VT_ERR_IO, "cannot create the cache file %s: %s", path, why);
    } else {
        unlink(path); /* the mapping keeps the data; see the top comment */
        code = map_file(b, fd, path, err);
        close(fd);
    }
    free(path);
    return code;
}

static VtCode blob_alloc(Blob *b, const DatasetOptions *o, const char *split, VtError *err)
{
    bool file = o->cache == CACHE_FILE || (o->cache == CACHE_AUTO && !fits_in_memory(b->bytes));
    if (file)
        return blob_file(b, o, split, err);
    b->pixels = malloc((size_t)b->bytes);
    if (!b->pixels)
        return vt_fail(err, VT_ERR_NOMEM, "cannot allocate %llu bytes for the decoded images",
                       (unsigned long long)b->bytes);
    return VT_OK;
}

static void blob_free(Blob *b)
{
    if (b->mapped && b->pixels)
        munmap(b->pixels, (size_t)b->bytes);
    else
        free(b->pixels);
    *b = (Blob){0};
}

/* ---- the two passes -------------------------------------------------------- */

/* Index of the first bad item (with `code`, or any code if VT_OK), or
 * count if none. */
static int first_bad(const Scan *sc, VtCode code)
{
    for (int i = 0; i < sc->count; i++)
        if (sc->items[i].error && (code == VT_OK || sc->items[i].code == code))
            return i;
    return sc->count;
}

static VtCode probe_all(Scan *sc, const DatasetOptions *o, uint64_t *bytes, VtError *err)
{
    Item *items = sc->items;
    const int side = o->cache_side;
#pragma omp parallel for schedule(dynamic, 16)
    for (int i = 0; i < sc->count; i++)
        probe(&items[i], side);
    int bad = first_bad(sc, VT_OK);
    if (bad < sc->count && o->on_bad_image == BAD_IMAGE_ERROR)
        return vt_fail(err, items[bad].code, "%s", items[bad].error);
    uint64_t offset = 0;
    for (int i = 0; i < sc->count; i++) {
        items[i].offset = offset;
        if (!items[i].error)
            offset += (uint64_t)items[i].h * (uint64_t)items[i].w * (uint64_t)o->channels;
    }
    *bytes = offset;
    return VT_OK;
}

static int count_good(const Scan *sc)
{
    int n = 0;
    for (int i = 0; i < sc->count; i++)
        n += sc->items[i].error == NULL;
    return n;
}

/* Decodes every good item into its slot. Under BAD_IMAGE_ERROR the items
 * after a known bad one are left out: the first bad item stays the first. */
static void decode_all(Scan *sc, uint8_t *pixels, const DatasetOptions *o, const char *split)
{
    Item *items = sc->items;
    const int C = o->channels;
    const bool stop_early = o->on_bad_image == BAD_IMAGE_ERROR;
    int stop = sc->count;
    Progress prog = progress_start(o->progress, split, count_good(sc));
#pragma omp parallel for schedule(dynamic, 1)
    for (int i = 0; i < sc->count; i++) {
        int limit;
#pragma omp atomic read
        limit = stop;
        if (items[i].error || i > limit)
            continue;
        decode(&items[i], pixels + items[i].offset, C);
        if (items[i].error && stop_early) {
#pragma omp critical(vt_data_stop)
            if (i < stop) {
#pragma omp atomic write
                stop = i;
            }
        }
        progress_tick(&prog);
    }
}

/* Closes the holes left by items that failed to decode, in order. */
static uint64_t compact(Scan *sc, uint8_t *pixels, int C)
{
    uint64_t offset = 0;
    for (int i = 0; i < sc->count; i++) {
        Item *it = &sc->items[i];
        if (it->error)
            continue;
        uint64_t size = (uint64_t)it->h * (uint64_t)it->w * (uint64_t)C;
        if (it->offset != offset)
            memmove(pixels + offset, pixels + it->offset, (size_t)size);
        it->offset = offset;
        offset += size;
    }
    return offset;
}

static void report_skipped(const Scan *sc, const char *root, const char *split, int skipped)
{
    fprintf(stderr, "vitrain: skipped %d bad image%s in '%s/%s':", skipped,
            skipped == 1 ? "" : "s", root, split);
    int shown = 0;
    for (int i = 0; i < sc->count && shown < SKIP_SUMMARY_PATHS; i++)
        if (sc->items[i].error)
            fprintf(stderr, "%s %s", shown++ ? ";" : "", sc->items[i].error);
    fprintf(stderr, "%s\n", skipped > shown ? "; ..." : "");
}

/* ---- assembling the data set ---------------------------------------------- */

static void take_items(Dataset *ds, Scan *sc, Blob *b, uint64_t used)
{
    int n = count_good(sc);
    ds->count = n;
    ds->skipped = sc->count - n;
    ds->paths = vt_xcalloc((size_t)n, sizeof *ds->paths);
    ds->labels = vt_xcalloc((size_t)n, sizeof *ds->labels);
    ds->height = vt_xcalloc((size_t)n, sizeof *ds->height);
    ds->width = vt_xcalloc((size_t)n, sizeof *ds->width);
    ds->offset = vt_xcalloc((size_t)n, sizeof *ds->offset);
    for (int i = 0, k = 0; i < sc->count; i++) {
        Item *it = &sc->items[i];
        if (it->error)
            continue;
        ds->paths[k] = it->path;
        it->path = NULL;
        ds->labels[k] = it->label;
        ds->height[k] = it->h;
        ds->width[k] = it->w;
        ds->offset[k++] = it->offset;
    }
    ds->num_classes = sc->num_classes;
    ds->class_names = sc->classes;
    sc->classes = NULL;
    sc->num_classes = 0;
    if (b->mapped)
        VT_ASSERT(mprotect(b->pixels, (size_t)b->bytes, PROT_READ) == 0);
    ds->pixels = b->pixels;
    ds->map_bytes = b->bytes;
    ds->mapped = b->mapped;
    ds->pixel_bytes = used;
    *b = (Blob){0};
}

static VtCode check_options(const DatasetOptions *o, VtError *err)
{
    if (o->channels != 1 && o->channels != 3 && o->channels != 4)
        return vt_fail(err, VT_ERR_ARGUMENT, "data: channels must be 1, 3 or 4, not %d",
                       o->channels);
    if (!(o->fraction >= 0.0f && o->fraction <= 1.0f))
        return vt_fail(err, VT_ERR_ARGUMENT, "data: fraction %g out of range (0, 1]",
                       (double)o->fraction);
    if (o->cache_side < 1 || o->cache_side > MAX_SIDE)
        return vt_fail(err, VT_ERR_ARGUMENT, "data: cache side %d out of range [1, %d]",
                       o->cache_side, MAX_SIDE);
    return VT_OK;
}

static VtCode no_images(const char *root, const char *split, int skipped, VtError *err)
{
    return vt_fail(err, VT_ERR_DATA, "'%s/%s' has no usable images (%d bad image%s skipped)",
                   root, split, skipped, skipped == 1 ? "" : "s");
}

/* A class whose every image was skipped as bad would train as a class
 * with no examples; like an empty class folder, that is an error. */
static VtCode check_classes_kept(const Scan *sc, const char *root, const char *split,
                                 VtError *err)
{
    int *kept = vt_xcalloc((size_t)sc->num_classes, sizeof *kept);
    int *seen = vt_xcalloc((size_t)sc->num_classes, sizeof *seen);
    for (int i = 0; i < sc->count; i++) {
        seen[sc->items[i].label]++;
        kept[sc->items[i].label] += sc->items[i].error == NULL;
    }
    VtCode code = VT_OK;
    for (int c = 0; c < sc->num_classes && !code; c++)
        if (seen[c] > 0 && kept[c] == 0)
            code = vt_fail(err, VT_ERR_DATA,
                           "class '%s' of '%s/%s' has no usable images (all %d skipped as bad)",
                           sc->classes[c], root, split, seen[c]);
    free(kept);
    free(seen);
    return code;
}

/* Pass 1, the blob, pass 2, the skip bookkeeping; fills ds on success. */
static VtCode load(Dataset *ds, Scan *sc, const char *root, const char *split,
                   const DatasetOptions *o, VtError *err)
{
    Blob blob = {0};
    VtCode code = probe_all(sc, o, &blob.bytes, err);
    if (!code && count_good(sc) == 0)
        code = no_images(root, split, sc->count, err);
    if (!code)
        code = blob_alloc(&blob, o, split, err);
    if (code)
        return code;
    decode_all(sc, blob.pixels, o, split);
    /* Running out of memory is no property of the image: never skipped. */
    int nomem = first_bad(sc, VT_ERR_NOMEM), bad = first_bad(sc, VT_OK), good = count_good(sc);
    if (nomem < sc->count)
        code = vt_fail(err, VT_ERR_NOMEM, "%s", sc->items[nomem].error);
    else if (bad < sc->count && o->on_bad_image == BAD_IMAGE_ERROR)
        code = vt_fail(err, sc->items[bad].code, "%s", sc->items[bad].error);
    else if (good == 0)
        code = no_images(root, split, sc->count, err);
    else if (good < sc->count)
        code = check_classes_kept(sc, root, split, err);
    if (code) {
        blob_free(&blob);
        return code;
    }
    uint64_t used = compact(sc, blob.pixels, o->channels);
    if (good < sc->count)
        report_skipped(sc, root, split, sc->count - good);
    take_items(ds, sc, &blob, used);
    return VT_OK;
}

VtCode dataset_open(Dataset *ds, const char *root, const char *split,
                    const DatasetOptions *opts, const Dataset *expected_classes, VtError *err)
{
    *ds = (Dataset){.channels = opts->channels, .cache_side = opts->cache_side};
    VtCode code = check_options(opts, err);
    Scan sc = {0};
    if (!code)
        code = scan_split(&sc, root, split, err);
    if (!code && expected_classes)
        code = check_classes(&sc, root, split, expected_classes, err);
    if (!code && opts->fraction > 0.0f && opts->fraction < 1.0f)
        keep_fraction(&sc, opts->fraction, opts->fraction_seed);
    if (!code)
        code = load(ds, &sc, root, split, opts, err);
    scan_free(&sc);
    if (code)
        dataset_close(ds);
    return code;
}

long long dataset_class_digest(const Dataset *ds)
{
    uint32_t crc = 0;
    for (int c = 0; c < ds->num_classes; c++)
        crc = crc32_update(crc, ds->class_names[c], strlen(ds->class_names[c]) + 1);
    return (long long)crc;
}

void dataset_close(Dataset *ds)
{
    for (int i = 0; i < ds->num_classes; i++)
        free(ds->class_names[i]);
    free(ds->class_names);
    for (int i = 0; i < ds->count; i++)
        free(ds->paths[i]);
    free(ds->paths);
    free(ds->labels);
    free(ds->height);
    free(ds->width);
    free(ds->offset);
    if (ds->mapped && ds->pixels)
        munmap(ds->pixels, (size_t)ds->map_bytes);
    else
        free(ds->pixels);
    *ds = (Dataset){0};
}
