/*
 * test_checkpoint.c - checkpoints and the safetensors export: bit-exact
 * round trips, the documented byte layouts, clean errors for every kind of
 * damage (shape mismatch, missing and extra tensors, a flipped byte,
 * truncation, lying length fields, malformed JSON, wrong dtype), and
 * atomic replacement (a failed save leaves the previous file intact and no
 * temporary file behind).
 *
 * Expected bytes and checksums are computed here from the format
 * descriptions (the layout comment of checkpoint.c, the safetensors spec),
 * with a bit-by-bit CRC-32 of our own, never taken from the code under test.
 * Every test works in its own mkdtemp folder under /tmp, removed afterwards.
 */
#include "fixtures.h"
#include "suites.h"

#include "../src/io/binfile.h"
#include "vitrain/checkpoint.h"
#include "vitrain/tensor.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------ */

static char tmpdir[256];

static void make_tmpdir(void)
{
    snprintf(tmpdir, sizeof tmpdir, "/tmp/vitrain-ckpt-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

/* Removes the folder with its files and the folders right inside it. */
static void remove_tree(const char *dir, int depth)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (unlink(p) != 0 && depth > 0)
            remove_tree(p, depth - 1);
    }
    closedir(d);
    chmod(dir, 0700);
    rmdir(dir);
}

static void remove_tmpdir(void)
{
    remove_tree(tmpdir, 2);
}

static void tmp_path(char *buf, size_t size, const char *name)
{
    snprintf(buf, size, "%s/%s", tmpdir, name);
}

/* Number of entries in tmpdir other than . and .. */
static int count_entries(void)
{
    DIR *d = opendir(tmpdir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

/* Bit-by-bit CRC-32 (IEEE, reflected), the textbook definition. */
static uint32_t ref_crc32(const unsigned char *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int b = 0; b < 8; b++)
            c = (c >> 1) ^ (0xEDB88320u & (0u - (c & 1)));
    }
    return ~c;
}

static uint64_t get_u64(const unsigned char *p)
{
    uint64_t x = 0;
    for (int i = 7; i >= 0; i--)
        x = x << 8 | p[i];
    return x;
}

static void put_u32(unsigned char *p, uint32_t x)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(x >> (8 * i));
}

static void put_u64(unsigned char *p, uint64_t x)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(x >> (8 * i));
}

/* Rewrites the trailing checksum after a deliberate edit, so that only the
 * edited field can be what the loader rejects. */
static void fix_crc(unsigned char *buf, size_t size)
{
    put_u32(buf + size - 4, ref_crc32(buf, size - 4));
}

/* ---- models ------------------------------------------------------------- */

enum { MODEL_BASE, MODEL_SHAPE, MODEL_MORE, MODEL_FEWER };

static void add(TensorList *l, const char *name, int ndim, int64_t a, int64_t b, int64_t c)
{
    const int64_t shape[3] = {a, b, c};
    tensor_list_add(l, shape, ndim, 0, INIT_ZEROS, 0.0f, "%s", name);
}

/* A tiny ViT-like parameter list; the variants differ from the base in
 * one shape, one more tensor or one tensor less. */
static TensorList model_list(int variant)
{
    TensorList l;
    tensor_list_init(&l);
    add(&l, "cls_token", 3, 1, 1, 8);
    add(&l, "pos_embed", 3, 1, 5, 8);
    if (variant == MODEL_SHAPE)
        add(&l, "blocks.0.attn.qkv.weight", 2, 48, 16, 0);
    else
        add(&l, "blocks.0.attn.qkv.weight", 2, 24, 8, 0);
    add(&l, "blocks.0.attn.qkv.bias", 1, 24, 0, 0);
    add(&l, "head.weight", 2, 3, 8, 0);
    if (variant != MODEL_FEWER)
        add(&l, "head.bias", 1, 3, 0, 0);
    if (variant == MODEL_MORE)
        add(&l, "norm.weight", 1, 8, 0, 0);
    return l;
}

/* Distinct values per arena, with the floats that a careless format would
 * change: -0, infinities, a subnormal and a NaN with a payload. */
static void fill(float *x, const TensorList *l, unsigned salt)
{
    const uint32_t specials[] = {0x80000000u, 0x7F800000u, 0xFF800000u, 0x00000001u,
                                 0x7FC12345u};
    for (int t = 0; t < l->count; t++) {
        float *p = x + l->specs[t].offset;
        for (size_t i = 0; i < l->specs[t].numel; i++) {
            uint32_t h = (uint32_t)((i + 1) * 2654435761u) ^ (salt * 40503u + (unsigned)t);
            p[i] = (float)(h % 20011) / 97.0f - 100.0f;
        }
    }
    memcpy(x + l->specs[0].offset, specials, sizeof specials);
}

static void assert_same(const float *a, const float *b, const TensorList *l)
{
    for (int t = 0; t < l->count; t++) {
        const TensorSpec *s = &l->specs[t];
        ck_assert_msg(memcmp(a + s->offset, b + s->offset, 4 * s->numel) == 0,
                      "%s differs after the round trip", s->name);
    }
}

typedef struct Saved {
    TensorList list;
    Arena params, m, v;
    CheckpointState state;
    char path[512];
} Saved;

static const char CONFIG[] = "[model]\npreset = \"tiny\"\n; comment \xc3\xa9\n[train]\nseed = 7\n";

static void saved_free(Saved *s)
{
    arena_free(&s->params);
    arena_free(&s->m);
    arena_free(&s->v);
    tensor_list_free(&s->list);
}

/* Saves a base-model checkpoint with known contents to tmpdir/name. */
static void save_base(Saved *s, const char *name, unsigned salt)
{
    s->list = model_list(MODEL_BASE);
    arena_create(&s->params, &s->list);
    arena_create(&s->m, &s->list);
    arena_create(&s->v, &s->list);
    fill(s->params.data, &s->list, salt);
    fill(s->m.data, &s->list, salt + 1);
    fill(s->v.data, &s->list, salt + 2);
    s->state = (CheckpointState){.step = 123456789012345LL + salt, .epoch = 77,
                                 .optim_t = 98765432101LL,
                                 .best_top1 = 0.1 + 0.2, .epoch_loss_sum = 1.0 / 3.0 + salt,
                                 .epoch_loss_steps = 41, .config = CONFIG};
    tmp_path(s->path, sizeof s->path, name);
    VtError err;
    VtCode code = checkpoint_save(s->path, &s->state, &s->list, s->params.data, s->m.data,
                                  s->v.data, &err);
    ck_assert_msg(code == VT_OK, "save: %s", err.message);
}

/* Loads path with a model of the given variant; returns the code and the
 * message, the buffers are dropped. */
static VtCode try_load(const char *path, int variant, VtError *err)
{
    TensorList l = model_list(variant);
    Arena p;
    arena_create(&p, &l);
    CheckpointState st;
    VtCode code = checkpoint_load(path, &st, &l, p.data, NULL, NULL, err);
    if (code == VT_OK)
        free((char *)st.config);
    arena_free(&p);
    tensor_list_free(&l);
    return code;
}

static void assert_error(VtCode code, const VtError *err, VtCode want, const char *text)
{
    ck_assert_msg(code == want, "code %d, want %d (%s)", code, want, err->message);
    ck_assert_msg(strstr(err->message, text) != NULL, "message \"%s\" lacks \"%s\"",
                  err->message, text);
}

/* ---- checkpoints: round trip and layout ----------------------------------- */

START_TEST(test_crc32_reference)
{
    const char *s = "123456789";
    ck_assert_uint_eq(ref_crc32((const unsigned char *)s, 9), 0xCBF43926u);
    ck_assert_uint_eq(crc32_update(0, s, 9), 0xCBF43926u);
    unsigned char buf[1000];
    for (int i = 0; i < 1000; i++)
        buf[i] = (unsigned char)(i * 7 + 3);
    uint32_t split = crc32_update(crc32_update(0, buf, 333), buf + 333, 667);
    ck_assert_uint_eq(split, ref_crc32(buf, 1000));
}
END_TEST

START_TEST(test_ckpt_roundtrip)
{
    Saved s;
    save_base(&s, "checkpoint-last", 1);
    Arena p, m, v;
    arena_create(&p, &s.list);
    arena_create(&m, &s.list);
    arena_create(&v, &s.list);
    CheckpointState st;
    VtError err;
    VtCode code = checkpoint_load(s.path, &st, &s.list, p.data, m.data, v.data, &err);
    ck_assert_msg(code == VT_OK, "load: %s", err.message);
    ck_assert_int_eq(st.step, s.state.step);
    ck_assert_int_eq(st.epoch, s.state.epoch);
    ck_assert_int_eq(st.optim_t, s.state.optim_t);
    ck_assert(memcmp(&st.best_top1, &s.state.best_top1, sizeof(double)) == 0);
    ck_assert(memcmp(&st.epoch_loss_sum, &s.state.epoch_loss_sum, sizeof(double)) == 0);
    ck_assert_int_eq(st.epoch_loss_steps, s.state.epoch_loss_steps);
    ck_assert_str_eq(st.config, CONFIG);
    assert_same(p.data, s.params.data, &s.list);
    assert_same(m.data, s.m.data, &s.list);
    assert_same(v.data, s.v.data, &s.list);
    free((char *)st.config);

    char *config = NULL;
    ck_assert_int_eq(checkpoint_read_config(s.path, &config, &err), VT_OK);
    ck_assert_str_eq(config, CONFIG);
    free(config);
    arena_free(&p);
    arena_free(&m);
    arena_free(&v);
    saved_free(&s);
}
END_TEST

/* Counters no run writes are refused even under a good checksum (a file
 * made some other way): a negative step, more epochs than steps, a
 * negative AdamW step, a best top-1 (in percent) outside [0, 100] and not
 * -1. */
START_TEST(test_ckpt_counters_out_of_range)
{
    const struct {
        CheckpointState state;
        const char *what;
    } cases[] = {
        {{.step = -5, .best_top1 = -1.0}, "step -5, epoch 0, AdamW step 0"},
        {{.step = 3, .epoch = 4, .best_top1 = -1.0}, "more epochs than steps"},
        {{.step = 3, .optim_t = -1, .best_top1 = -1.0}, "AdamW step -1"},
        {{.step = 3, .best_top1 = 100.5}, "best top-1 100.5: out of range"},
        {{.step = 3, .best_top1 = -1.0, .epoch_loss_sum = NAN}, "loss sum nan"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        Saved s;
        save_base(&s, "odd", 3);
        CheckpointState st = cases[i].state;
        st.config = CONFIG;
        VtError err;
        ck_assert_int_eq(checkpoint_save(s.path, &st, &s.list, s.params.data, s.m.data, s.v.data,
                                         &err),
                         VT_OK);
        ck_assert_int_eq(try_load(s.path, MODEL_BASE, &err), VT_ERR_DATA);
        ck_assert_msg(strstr(err.message, "is corrupt") && strstr(err.message, cases[i].what),
                      "case %zu: %s", i, err.message);
        saved_free(&s);
    }
}
END_TEST

/* Overwriting replaces the file; m and v may be skipped on load; a NULL
 * config is saved as empty text. */
START_TEST(test_ckpt_overwrite_and_skip_moments)
{
    Saved a, b;
    save_base(&a, "ck", 1);
    save_base(&b, "ck", 9);
    Arena p;
    arena_create(&p, &b.list);
    CheckpointState st;
    VtError err;
    ck_assert_int_eq(checkpoint_load(b.path, &st, &b.list, p.data, NULL, NULL, &err), VT_OK);
    assert_same(p.data, b.params.data, &b.list);
    ck_assert_int_eq(st.step, b.state.step);
    free((char *)st.config);
    ck_assert_int_eq(count_entries(), 1);

    b.state.config = NULL;
    ck_assert_int_eq(checkpoint_save(b.path, &b.state, &b.list, b.params.data, b.m.data,
                                     b.v.data, &err), VT_OK);
    ck_assert_int_eq(checkpoint_load(b.path, &st, &b.list, p.data, NULL, NULL, &err), VT_OK);
    ck_assert_str_eq(st.config, "");
    free((char *)st.config);
    arena_free(&p);
    saved_free(&a);
    saved_free(&b);
}
END_TEST

/* Version 2's header: the version 1 fields, then the epoch's loss totals. */
enum { HEADER = 88, HEADER_V1 = 72 };

/* The header fields sit where checkpoint.c's layout comment says. */
START_TEST(test_ckpt_layout)
{
    Saved s;
    save_base(&s, "ck", 3);
    size_t size;
    unsigned char *buf = fixture_read_bytes(s.path, &size);
    ck_assert(memcmp(buf, "VTCKPT\r\n", 8) == 0);
    ck_assert_uint_eq(buf[8] | buf[9] << 8, 2);                    /* version */
    ck_assert_uint_eq(buf[12], (unsigned)s.list.count);             /* tensor count */
    ck_assert_uint_eq(get_u64(buf + 16), size);                     /* file size */
    ck_assert_uint_eq(get_u64(buf + 24), strlen(CONFIG));           /* config length */
    ck_assert_uint_eq(get_u64(buf + 40), (uint64_t)s.state.step);   /* step */
    uint64_t sum_bits;
    memcpy(&sum_bits, &s.state.epoch_loss_sum, sizeof sum_bits);
    ck_assert_uint_eq(get_u64(buf + 72), sum_bits);                 /* epoch loss sum */
    ck_assert_uint_eq(get_u64(buf + 80), 41);                       /* its steps */
    ck_assert(memcmp(buf + HEADER, CONFIG, strlen(CONFIG)) == 0);
    /* First table entry: u32 name length 9, "cls_token", u32 ndim 3, dims. */
    const unsigned char *t = buf + HEADER + strlen(CONFIG);
    ck_assert_uint_eq(t[0], 9);
    ck_assert(memcmp(t + 4, "cls_token", 9) == 0);
    ck_assert_uint_eq(t[13], 3);
    ck_assert_uint_eq(get_u64(t + 17 + 16), 8);
    size_t numel = 0;
    for (int i = 0; i < s.list.count; i++)
        numel += s.list.specs[i].numel;
    ck_assert_uint_eq(size, HEADER + strlen(CONFIG) + get_u64(buf + 32) + 12 * numel + 4);
    uint32_t stored = (uint32_t)buf[size - 4] | (uint32_t)buf[size - 3] << 8 |
                      (uint32_t)buf[size - 2] << 16 | (uint32_t)buf[size - 1] << 24;
    ck_assert_uint_eq(stored, ref_crc32(buf, size - 4));
    free(buf);
    saved_free(&s);
}
END_TEST

/* ---- checkpoints: the model does not fit ---------------------------------- */

START_TEST(test_ckpt_shape_mismatch)
{
    Saved s;
    save_base(&s, "checkpoint-last", 1);
    VtError err;
    VtCode code = try_load(s.path, MODEL_SHAPE, &err);
    char want[1024];
    snprintf(want, sizeof want,
             "checkpoint %s: blocks.0.attn.qkv.weight has shape (24, 8) in the file, the model "
             "expects (48, 16)",
             s.path);
    ck_assert_int_eq(code, VT_ERR_DATA);
    ck_assert_str_eq(err.message, want);
    saved_free(&s);
}
END_TEST

START_TEST(test_ckpt_missing_tensor)
{
    Saved s;
    save_base(&s, "ck", 1);
    VtError err;
    VtCode code = try_load(s.path, MODEL_MORE, &err);
    char want[1024];
    snprintf(want, sizeof want, "checkpoint %s: norm.weight of the model is missing", s.path);
    ck_assert_int_eq(code, VT_ERR_DATA);
    ck_assert_str_eq(err.message, want);
    saved_free(&s);
}
END_TEST

START_TEST(test_ckpt_extra_tensor)
{
    Saved s;
    save_base(&s, "ck", 1);
    VtError err;
    VtCode code = try_load(s.path, MODEL_FEWER, &err);
    char want[1024];
    snprintf(want, sizeof want, "checkpoint %s: head.bias is in the file but not in the model",
             s.path);
    ck_assert_int_eq(code, VT_ERR_DATA);
    ck_assert_str_eq(err.message, want);
    saved_free(&s);
}
END_TEST

/* ---- checkpoints: damaged files ------------------------------------------ */

/* A flipped bit anywhere past the header fields that are checked on their
 * own (magic, version, size) is a checksum error, and the caller's buffers
 * are left alone. */
START_TEST(test_ckpt_corrupt_byte)
{
    Saved s;
    save_base(&s, "ck", 1);
    size_t size;
    unsigned char *orig = fixture_read_bytes(s.path, &size);
    const size_t where[] = {12, 30, 45, 64, 75, 80, HEADER + strlen(CONFIG) + 5, size / 2,
                            size - 20, size - 1};
    char damaged[512], want[1024];
    tmp_path(damaged, sizeof damaged, "damaged");
    snprintf(want, sizeof want, "checkpoint %s is corrupt: checksum mismatch", damaged);
    for (size_t k = 0; k < sizeof where / sizeof where[0]; k++) {
        orig[where[k]] ^= 0x10;
        fixture_write_bytes(damaged, orig, size);
        orig[where[k]] ^= 0x10;
        Arena p;
        arena_create(&p, &s.list);
        CheckpointState st;
        VtError err;
        VtCode code = checkpoint_load(damaged, &st, &s.list, p.data, NULL, NULL, &err);
        ck_assert_msg(code == VT_ERR_DATA, "byte %zu: code %d", where[k], code);
        ck_assert_str_eq(err.message, want);
        for (size_t i = 0; i < s.list.total; i++)
            ck_assert_msg(p.data[i] == 0.0f, "byte %zu: buffer written", where[k]);
        ck_assert_int_eq(checkpoint_read_config(damaged, &(char *){NULL}, &err), VT_ERR_DATA);
        arena_free(&p);
    }
    free(orig);
    saved_free(&s);
}
END_TEST

START_TEST(test_ckpt_truncated)
{
    Saved s;
    save_base(&s, "ck", 1);
    size_t size;
    unsigned char *orig = fixture_read_bytes(s.path, &size);
    const size_t lengths[] = {0,  1,  7,   8,        9,        40,      71,
                              72, 87, 100, size / 2, size - 5, size - 1};
    char cut[512];
    tmp_path(cut, sizeof cut, "cut");
    for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
        fixture_write_bytes(cut, orig, lengths[k]);
        VtError err;
        char prefix[600];
        snprintf(prefix, sizeof prefix, "checkpoint %s is truncated", cut);
        assert_error(try_load(cut, MODEL_BASE, &err), &err, VT_ERR_DATA, prefix);
        char *config = NULL;
        assert_error(checkpoint_read_config(cut, &config, &err), &err, VT_ERR_DATA, prefix);
        ck_assert_ptr_null(config);
    }
    free(orig);
    saved_free(&s);
}
END_TEST

/* Length fields that lie, with a recomputed checksum so that only the lie
 * is left to catch: errors, no huge allocation, no crash. */
START_TEST(test_ckpt_lying_lengths)
{
    Saved s;
    save_base(&s, "ck", 1);
    size_t size;
    unsigned char *orig = fixture_read_bytes(s.path, &size);
    unsigned char *buf = malloc(size);
    const size_t table = HEADER + strlen(CONFIG);
    const struct {
        size_t offset;
        int width;
        uint64_t value;
        const char *text;
    } lies[] = {
        {24, 8, UINT64_C(1) << 62, "config length"},
        {24, 8, size, "config length"},
        {24, 8, strlen(CONFIG) + 1, "table entry 0 has a bad name length"},
        {32, 8, UINT64_MAX, "table length"},
        {32, 8, get_u64(orig + 32) - 1, "table entry"},
        {12, 4, 0xFFFFFFFFu, "tensor count"},
        {12, 4, 2, "do not add up"},
        {table, 4, 0xFFFFFFFFu, "table entry 0 has a bad name length"},
        {table + 13, 4, 1000000, "table entry 0 has a bad number of dimensions"},
        {table + 17, 8, UINT64_C(1) << 40, "table entry 0 has a dimension"},
        {table + 17, 8, 0, "table entry 0 has a dimension"},
    };
    char lie[512];
    tmp_path(lie, sizeof lie, "lie");
    for (size_t k = 0; k < sizeof lies / sizeof lies[0]; k++) {
        memcpy(buf, orig, size);
        if (lies[k].width == 8)
            put_u64(buf + lies[k].offset, lies[k].value);
        else
            put_u32(buf + lies[k].offset, (uint32_t)lies[k].value);
        fix_crc(buf, size);
        fixture_write_bytes(lie, buf, size);
        VtError err;
        assert_error(try_load(lie, MODEL_BASE, &err), &err, VT_ERR_DATA, lies[k].text);
        ck_assert(strstr(err.message, "is corrupt") != NULL);
    }
    free(buf);
    free(orig);
    saved_free(&s);
}
END_TEST

/* A version-1 file (no loss totals in its header) still loads, with
 * totals of zero: the same file as version 2 less the two fields. */
START_TEST(test_ckpt_version_1_loads)
{
    Saved s;
    save_base(&s, "ck", 2);
    size_t size;
    unsigned char *v2 = fixture_read_bytes(s.path, &size);
    const size_t size1 = size - (HEADER - HEADER_V1);
    unsigned char *v1 = malloc(size1);
    memcpy(v1, v2, HEADER_V1);
    memcpy(v1 + HEADER_V1, v2 + HEADER, size - HEADER);
    put_u32(v1 + 8, 1);
    put_u64(v1 + 16, size1);
    fix_crc(v1, size1);
    char old[512];
    tmp_path(old, sizeof old, "old");
    fixture_write_bytes(old, v1, size1);
    Arena p;
    arena_create(&p, &s.list);
    CheckpointState st;
    VtError err;
    VtCode code = checkpoint_load(old, &st, &s.list, p.data, NULL, NULL, &err);
    ck_assert_msg(code == VT_OK, "load: %s", err.message);
    ck_assert_int_eq(st.step, s.state.step);
    ck_assert(st.epoch_loss_sum == 0.0 && st.epoch_loss_steps == 0);
    ck_assert_str_eq(st.config, CONFIG);
    assert_same(p.data, s.params.data, &s.list);
    free((char *)st.config);
    /* Its header cut short is a truncation at version 1's length. */
    fixture_write_bytes(old, v1, HEADER_V1 - 1);
    assert_error(try_load(old, MODEL_BASE, &err), &err, VT_ERR_DATA, "is truncated");
    arena_free(&p);
    free(v1);
    free(v2);
    saved_free(&s);
}
END_TEST

START_TEST(test_ckpt_bad_magic_and_version)
{
    Saved s;
    save_base(&s, "ck", 1);
    size_t size;
    unsigned char *buf = fixture_read_bytes(s.path, &size);
    char other[512];
    tmp_path(other, sizeof other, "other");
    VtError err;
    fixture_write_bytes(other, "[model]\npreset = tiny\n", 22);
    assert_error(try_load(other, MODEL_BASE, &err), &err, VT_ERR_DATA,
                 "is not a vitrain checkpoint");
    put_u32(buf + 8, 3);
    fix_crc(buf, size);
    fixture_write_bytes(other, buf, size);
    assert_error(try_load(other, MODEL_BASE, &err), &err, VT_ERR_DATA,
                 "has format version 3; this build reads versions 1 and 2");
    put_u32(buf + 8, 2);
    unsigned char *longer = calloc(size + 3, 1);
    memcpy(longer, buf, size);
    fixture_write_bytes(other, longer, size + 3);
    assert_error(try_load(other, MODEL_BASE, &err), &err, VT_ERR_DATA, "is corrupt");
    tmp_path(other, sizeof other, "absent");
    assert_error(try_load(other, MODEL_BASE, &err), &err, VT_ERR_IO,
                 "No such file or directory");
    free(longer);
    free(buf);
    saved_free(&s);
}
END_TEST

/* ---- atomic replacement ------------------------------------------------- */

/* The temporary file is <path>.tmp.<pid>: pointing it at /dev/full makes
 * the real save path hit "disk full" after the old file exists. */
START_TEST(test_atomic_disk_full_keeps_old_file)
{
    if (access("/dev/full", W_OK) != 0)
        return; /* no /dev/full here: the stream test below covers less */
    Saved a, b;
    save_base(&a, "checkpoint-last", 1);
    save_base(&b, "scratch", 5);
    char tmp[600];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", a.path, (long)getpid());
    ck_assert_int_eq(symlink("/dev/full", tmp), 0);
    VtError err;
    VtCode code = checkpoint_save(a.path, &b.state, &b.list, b.params.data, b.m.data, b.v.data,
                                  &err);
    char want[1024];
    snprintf(want, sizeof want, "cannot write %s: %s", a.path, strerror(ENOSPC));
    ck_assert_int_eq(code, VT_ERR_IO);
    ck_assert_str_eq(err.message, want);
    ck_assert_int_eq(access(tmp, F_OK), -1); /* the temporary file is gone */
    ck_assert_int_eq(count_entries(), 2);

    Arena p;
    arena_create(&p, &a.list);
    CheckpointState st;
    ck_assert_int_eq(checkpoint_load(a.path, &st, &a.list, p.data, NULL, NULL, &err), VT_OK);
    assert_same(p.data, a.params.data, &a.list);
    ck_assert_int_eq(st.step, a.state.step);
    free((char *)st.config);
    arena_free(&p);
    saved_free(&a);
    saved_free(&b);
}
END_TEST

static void write_bytes(OutStream *out, void *ctx)
{
    const size_t *n = ctx;
    unsigned char block[4096] = {0};
    for (size_t left = *n; left > 0; left -= VT_MIN(left, sizeof block))
        out_bytes(out, block, VT_MIN(left, sizeof block));
}

/* Both a write failing at once (more than the stdio buffer) and one that
 * only fails at the flush are reported. */
START_TEST(test_atomic_stream_dev_full)
{
    FILE *f = fopen("/dev/full", "wb");
    if (!f)
        return;
    const size_t sizes[] = {10, 1 << 20};
    for (int k = 0; k < 2; k++) {
        if (k > 0)
            f = fopen("/dev/full", "wb");
        ck_assert_ptr_nonnull(f);
        VtError err;
        size_t n = sizes[k];
        VtCode code = atomic_write_stream(f, "runs/x/checkpoint-last", write_bytes, &n, true,
                                          &err);
        ck_assert_int_eq(code, VT_ERR_IO);
        char want[256];
        snprintf(want, sizeof want, "cannot write runs/x/checkpoint-last: %s", strerror(ENOSPC));
        ck_assert_str_eq(err.message, want);
    }
}
END_TEST

START_TEST(test_atomic_missing_folder)
{
    Saved s;
    save_base(&s, "ck", 1);
    char path[600], want[1024];
    tmp_path(path, sizeof path, "nope/checkpoint-last");
    VtError err;
    VtCode code = checkpoint_save(path, &s.state, &s.list, s.params.data, s.m.data, s.v.data,
                                  &err);
    snprintf(want, sizeof want, "cannot write %s: %s", path, strerror(ENOENT));
    ck_assert_int_eq(code, VT_ERR_IO);
    ck_assert_str_eq(err.message, want);
    tmp_path(path, sizeof path, "nope/model.safetensors");
    code = safetensors_save(path, &s.list, s.params.data, CONFIG, &err);
    snprintf(want, sizeof want, "cannot write %s: %s", path, strerror(ENOENT));
    ck_assert_int_eq(code, VT_ERR_IO);
    ck_assert_str_eq(err.message, want);
    saved_free(&s);
}
END_TEST

/* Permissions do not stop root: as root the save runs in a child that
 * has become the user nobody first; its code and message come back through
 * a pipe. */
START_TEST(test_atomic_read_only_folder)
{
    Saved s;
    save_base(&s, "ck", 1);
    char dir[600], path[700];
    tmp_path(dir, sizeof dir, "ro");
    ck_assert_int_eq(mkdir(dir, 0555), 0);
    ck_assert_int_eq(chmod(tmpdir, 0755), 0);
    snprintf(path, sizeof path, "%s/ck", dir);
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
            _exit(2);
        VtError err = {0};
        err.code = checkpoint_save(path, &s.state, &s.list, s.params.data, s.m.data, s.v.data,
                                   &err);
        _exit(write(fds[1], &err, sizeof err) == (ssize_t)sizeof err ? 0 : 3);
    }
    close(fds[1]);
    VtError err;
    ck_assert_int_eq(read(fds[0], &err, sizeof err), (ssize_t)sizeof err);
    close(fds[0]);
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_int_eq(err.code, VT_ERR_IO);
    char want[1024];
    snprintf(want, sizeof want, "cannot write %s: %s", path, strerror(EACCES));
    ck_assert_str_eq(err.message, want);
    saved_free(&s);
}
END_TEST

/* Every write of the file may fail: a file-size limit (RLIMIT_FSIZE, which
 * binds root too) makes the kernel refuse the write that crosses it, at
 * every point of the file in turn. Each save must fail with the reason and
 * leave the previous checkpoint byte for byte and no temporary file; at the
 * full size the same save succeeds, so the sweep covered the whole file. */
START_TEST(test_atomic_write_fails_at_every_point)
{
    Saved a, b;
    save_base(&a, "checkpoint-last", 1);
    save_base(&b, "scratch", 5);
    size_t old_size, new_size;
    unsigned char *old_bytes = fixture_read_bytes(a.path, &old_size);
    free(fixture_read_bytes(b.path, &new_size));
    ck_assert_int_eq(unlink(b.path), 0);

    signal(SIGXFSZ, SIG_IGN); /* the write returns EFBIG instead of killing us */
    struct rlimit unlimited;
    ck_assert_int_eq(getrlimit(RLIMIT_FSIZE, &unlimited), 0);
    char want[1024];
    snprintf(want, sizeof want, "cannot write %s: %s", a.path, strerror(EFBIG));
    int failures = 0;
    for (size_t limit = 0; limit <= new_size; limit += limit + 97 < new_size ? 97 : 1) {
        struct rlimit capped = {.rlim_cur = limit, .rlim_max = unlimited.rlim_max};
        ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &capped), 0);
        VtError err;
        VtCode code = checkpoint_save(a.path, &b.state, &b.list, b.params.data, b.m.data,
                                      b.v.data, &err);
        ck_assert_int_eq(setrlimit(RLIMIT_FSIZE, &unlimited), 0);
        if (limit == new_size) {
            ck_assert_msg(code == VT_OK, "save at the full size: %s", err.message);
            break;
        }
        ck_assert_msg(code == VT_ERR_IO, "limit %zu: code %d", limit, code);
        ck_assert_str_eq(err.message, want);
        size_t size;
        unsigned char *now = fixture_read_bytes(a.path, &size);
        ck_assert_msg(size == old_size && memcmp(now, old_bytes, size) == 0,
                      "limit %zu changed the old checkpoint", limit);
        free(now);
        ck_assert_int_eq(count_entries(), 1);
        failures++;
    }
    ck_assert_int_gt(failures, 20);
    ck_assert_int_eq(try_load(a.path, MODEL_BASE, &(VtError){0}), VT_OK);
    free(old_bytes);
    saved_free(&a);
    saved_free(&b);
}
END_TEST

/* A checkpoint of 3 x 8 MiB, so that a kill lands inside its write. */
typedef struct Big {
    TensorList list;
    Arena params, m, v;
} Big;

static void big_create(Big *g, unsigned salt)
{
    tensor_list_init(&g->list);
    add(&g->list, "cls_token", 3, 1, 1, 8);
    add(&g->list, "blocks.0.mlp.fc1.weight", 2, 2048, 1024, 0);
    arena_create(&g->params, &g->list);
    arena_create(&g->m, &g->list);
    arena_create(&g->v, &g->list);
    fill(g->params.data, &g->list, salt);
    fill(g->m.data, &g->list, salt + 1);
    fill(g->v.data, &g->list, salt + 2);
}

static void big_free(Big *g)
{
    arena_free(&g->params);
    arena_free(&g->m);
    arena_free(&g->v);
    tensor_list_free(&g->list);
}

static void big_save(const Big *g, const char *path, int64_t step)
{
    CheckpointState st = {.step = step, .best_top1 = -1, .config = CONFIG};
    VtError err;
    VtCode code = checkpoint_save(path, &st, &g->list, g->params.data, g->m.data, g->v.data,
                                  &err);
    ck_assert_msg(code == VT_OK, "save: %s", err.message);
}

/* The step of the checkpoint at path, which must load and hold exactly
 * the tensors of `a` (step 1) or `b` (step 2). */
static int64_t big_load_step(const char *path, const Big *a, const Big *b)
{
    Big got;
    big_create(&got, 0);
    CheckpointState st;
    VtError err;
    VtCode code = checkpoint_load(path, &st, &got.list, got.params.data, got.m.data, got.v.data,
                                  &err);
    ck_assert_msg(code == VT_OK, "after the kill: %s", err.message);
    const Big *want = st.step == 1 ? a : b;
    ck_assert(st.step == 1 || st.step == 2);
    assert_same(got.params.data, want->params.data, &got.list);
    assert_same(got.m.data, want->m.data, &got.list);
    assert_same(got.v.data, want->v.data, &got.list);
    free((char *)st.config);
    big_free(&got);
    return st.step;
}

/* Removes the temporary files a killed writer left; returns how many. */
static int remove_temporaries(void)
{
    DIR *d = opendir(tmpdir);
    ck_assert_ptr_nonnull(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strstr(e->d_name, ".tmp.")) {
            char p[600];
            tmp_path(p, sizeof p, e->d_name);
            ck_assert_int_eq(unlink(p), 0);
            n++;
        }
    closedir(d);
    return n;
}

static double seconds_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* kill -9 of a process overwriting checkpoint-last (step 1) with step 2, at
 * KILLS points spread over the time a save takes: afterwards the file
 * always loads and holds all of step 1 or all of step 2. The test insists
 * that some kills landed inside the write (a temporary file was left), or
 * it would prove nothing. */
START_TEST(test_kill_during_write_never_corrupts)
{
    enum { KILLS = 12 };
    Big a, b;
    big_create(&a, 1);
    big_create(&b, 2);
    char path[600], probe[600];
    tmp_path(path, sizeof path, "checkpoint-last");
    tmp_path(probe, sizeof probe, "probe");
    double t0 = seconds_now();
    big_save(&b, probe, 2);
    const double save_seconds = seconds_now() - t0;
    ck_assert_int_eq(unlink(probe), 0);

    int old = 0, new = 0, inside = 0;
    for (int k = 0; k < KILLS; k++) {
        big_save(&a, path, 1);
        pid_t pid = fork();
        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            big_save(&b, path, 2);
            _exit(0);
        }
        const double delay = save_seconds * 1.2 * (k + 0.5) / KILLS;
        nanosleep(&(struct timespec){.tv_sec = (time_t)delay,
                                     .tv_nsec = (long)((delay - (double)(time_t)delay) * 1e9)},
                  NULL);
        kill(pid, SIGKILL);
        int status;
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        if (big_load_step(path, &a, &b) == 1)
            old++;
        else
            new++;
        inside += remove_temporaries() > 0;
    }
    ck_assert_int_eq(old + new, KILLS);
    ck_assert_msg(inside >= 1, "no kill landed inside a write (save takes %.3f s)", save_seconds);
    big_free(&a);
    big_free(&b);
}
END_TEST

/* A rename that fails (the target is a folder) removes the written
 * temporary file and leaves the target alone. */
START_TEST(test_atomic_rename_fails)
{
    Saved s;
    save_base(&s, "ck", 1);
    char dir[600];
    tmp_path(dir, sizeof dir, "folder");
    ck_assert_int_eq(mkdir(dir, 0700), 0);
    VtError err;
    VtCode code = checkpoint_save(dir, &s.state, &s.list, s.params.data, s.m.data, s.v.data,
                                  &err);
    ck_assert_int_eq(code, VT_ERR_IO);
    ck_assert(strstr(err.message, dir) != NULL);
    ck_assert_int_eq(count_entries(), 2);
    struct stat st;
    ck_assert_int_eq(stat(dir, &st), 0);
    ck_assert(S_ISDIR(st.st_mode));
    saved_free(&s);
}
END_TEST

/* ---- safetensors ---------------------------------------------------------- */

/* Config text with every kind of character the escaper must handle. */
static const char ODD_CONFIG[] = "[log]\nname = \"run \\\"1\\\"\"\r\n\ttab\x01\x1f\x7f"
                                 " caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80 / end";

START_TEST(test_st_roundtrip)
{
    Saved s;
    save_base(&s, "ck", 4);
    char path[600];
    tmp_path(path, sizeof path, "model.safetensors");
    VtError err;
    ck_assert_int_eq(safetensors_save(path, &s.list, s.params.data, ODD_CONFIG, &err), VT_OK);
    Arena p;
    arena_create(&p, &s.list);
    char *config = NULL;
    VtCode code = safetensors_load(path, &s.list, p.data, &config, &err);
    ck_assert_msg(code == VT_OK, "%s", err.message);
    assert_same(p.data, s.params.data, &s.list);
    ck_assert_str_eq(config, ODD_CONFIG);
    free(config);

    size_t size;
    unsigned char *buf = fixture_read_bytes(path, &size);
    uint64_t n = get_u64(buf);
    ck_assert_uint_eq((8 + n) % 8, 0);
    ck_assert_uint_eq(buf[8], '{');
    size_t numel = 0;
    for (int i = 0; i < s.list.count; i++)
        numel += s.list.specs[i].numel;
    ck_assert_uint_eq(size, 8 + n + 4 * numel);
    free(buf);

    ck_assert_int_eq(safetensors_load(path, &s.list, p.data, NULL, &err), VT_OK);
    arena_free(&p);
    saved_free(&s);
}
END_TEST

/* Whatever the header's length, it is padded with fewer than 8 spaces to
 * a multiple of 8. */
START_TEST(test_st_padding)
{
    TensorList l;
    tensor_list_init(&l);
    add(&l, "w", 1, 2, 0, 0);
    Arena p;
    arena_create(&p, &l);
    char path[600], config[16] = "";
    tmp_path(path, sizeof path, "pad.safetensors");
    for (int k = 0; k < 8; k++) {
        VtError err;
        ck_assert_int_eq(safetensors_save(path, &l, p.data, config, &err), VT_OK);
        size_t size;
        unsigned char *buf = fixture_read_bytes(path, &size);
        uint64_t n = get_u64(buf);
        ck_assert_uint_eq(n % 8, 0);
        size_t end = n;
        while (end > 0 && buf[8 + end - 1] == ' ')
            end--;
        ck_assert_uint_eq(buf[8 + end - 1], '}');
        ck_assert_uint_lt(n - end, 8);
        free(buf);
        strcat(config, "x");
    }
    arena_free(&p);
    tensor_list_free(&l);
}
END_TEST

/* Tensors bigger than the 64 KiB chunks used for conversion and the
 * checksum pass. */
START_TEST(test_large_tensors)
{
    TensorList l;
    tensor_list_init(&l);
    add(&l, "small", 1, 3, 0, 0);
    add(&l, "big", 2, 200, 201, 0);
    add(&l, "tail", 1, 16385, 0, 0);
    Arena a[3], b[3];
    for (int i = 0; i < 3; i++) {
        arena_create(&a[i], &l);
        arena_create(&b[i], &l);
        fill(a[i].data, &l, (unsigned)i);
    }
    char path[600];
    tmp_path(path, sizeof path, "big");
    CheckpointState st = {.step = 1, .config = CONFIG}, back;
    VtError err;
    ck_assert_int_eq(checkpoint_save(path, &st, &l, a[0].data, a[1].data, a[2].data, &err), VT_OK);
    ck_assert_int_eq(checkpoint_load(path, &back, &l, b[0].data, b[1].data, b[2].data, &err),
                     VT_OK);
    free((char *)back.config);
    for (int i = 0; i < 3; i++)
        assert_same(a[i].data, b[i].data, &l);
    tmp_path(path, sizeof path, "big.safetensors");
    ck_assert_int_eq(safetensors_save(path, &l, a[1].data, CONFIG, &err), VT_OK);
    ck_assert_int_eq(safetensors_load(path, &l, b[0].data, NULL, &err), VT_OK);
    assert_same(a[1].data, b[0].data, &l);
    for (int i = 0; i < 3; i++) {
        arena_free(&a[i]);
        arena_free(&b[i]);
    }
    tensor_list_free(&l);
}
END_TEST

/* Two tensors, w = [1, -2] and b = [[0.5]], config k="v"<newline>. The
 * header, counted by hand:
 *   {"__metadata__":                                  16
 *   {"format":"vitrain",                              20  (36)
 *   "config":                                          9  (45)
 *   "k=\"v\"\n"                                       11  (56)
 *   },                                                 2  (58)
 *   "w":                                               4  (62)
 *   {"dtype":"F32",                                   15  (77)
 *   "shape":[2],                                      12  (89)
 *   "data_offsets":[0,8]}                             21  (110)
 *   ,"b":                                              5  (115)
 *   {"dtype":"F32",                                   15  (130)
 *   "shape":[1,1],                                    14  (144)
 *   "data_offsets":[8,12]}                            22  (166)
 *   }                                                  1  (167)
 * plus one space to 168 (a multiple of 8), so N = 168 = 0xA8. Data:
 * 1.0f = 0x3F800000, -2.0f = 0xC0000000, 0.5f = 0x3F000000, little-endian. */
static const char TINY_EXPECTED[] =
    "\xA8\x00\x00\x00\x00\x00\x00\x00"
    "{\"__metadata__\":{\"format\":\"vitrain\",\"config\":\"k=\\\"v\\\"\\n\"},"
    "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
    "\"b\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[8,12]}}"
    " "
    "\x00\x00\x80\x3F"
    "\x00\x00\x00\xC0"
    "\x00\x00\x00\x3F";

START_TEST(test_st_byte_exact)
{
    TensorList l;
    tensor_list_init(&l);
    add(&l, "w", 1, 2, 0, 0);
    add(&l, "b", 2, 1, 1, 0);
    Arena p;
    arena_create(&p, &l);
    p.data[l.specs[0].offset] = 1.0f;
    p.data[l.specs[0].offset + 1] = -2.0f;
    p.data[l.specs[1].offset] = 0.5f;
    char path[600];
    tmp_path(path, sizeof path, "tiny.safetensors");
    VtError err;
    ck_assert_int_eq(safetensors_save(path, &l, p.data, "k=\"v\"\n", &err), VT_OK);
    size_t size;
    unsigned char *buf = fixture_read_bytes(path, &size);
    ck_assert_uint_eq(sizeof TINY_EXPECTED - 1, 8 + 168 + 12);
    ck_assert_uint_eq(size, sizeof TINY_EXPECTED - 1);
    for (size_t i = 0; i < size; i++)
        ck_assert_msg(buf[i] == (unsigned char)TINY_EXPECTED[i], "byte %zu: 0x%02x, want 0x%02x",
                      i, buf[i], (unsigned char)TINY_EXPECTED[i]);
    free(buf);
    arena_free(&p);
    tensor_list_free(&l);
}
END_TEST

/* Writes a safetensors file by hand: u64 N, the header text, data. */
static void write_st(const char *path, uint64_t n, const char *header, const void *data,
                     size_t data_len)
{
    size_t h = strlen(header);
    unsigned char *buf = malloc(8 + h + data_len + 1);
    put_u64(buf, n);
    memcpy(buf + 8, header, h);
    if (data_len)
        memcpy(buf + 8 + h, data, data_len);
    fixture_write_bytes(path, buf, 8 + h + data_len);
    free(buf);
}

/* Loads path into the two-tensor list w (2), b (1, 1). */
static VtCode load_tiny(const char *path, char **config, VtError *err)
{
    TensorList l;
    tensor_list_init(&l);
    add(&l, "w", 1, 2, 0, 0);
    add(&l, "b", 2, 1, 1, 0);
    Arena p;
    arena_create(&p, &l);
    VtCode code = safetensors_load(path, &l, p.data, config, err);
    arena_free(&p);
    tensor_list_free(&l);
    return code;
}

static const char TINY_W[] = "\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}";
static const char TINY_B[] = "\"b\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[8,12]}";

/* A hand-written file in another order, with whitespace, escapes in keys
 * and metadata, \u escapes and no padding, reads fine. */
START_TEST(test_st_reads_other_writers)
{
    char path[600], header[1024];
    tmp_path(path, sizeof path, "h.safetensors");
    snprintf(header, sizeof header,
             "{\n  %s,\n  \"\\u0062\" : {\"shape\" : [ 1 , 1 ], \"data_offsets\":[8, 12],"
             " \"dtype\":\"F32\"},\n  \"__metadata__\": {\"x\":\"y\",\"config\":"
             "\"a\\u00e9\\ud83d\\ude00\\/\\b\\f\\t\\r\\n\\\"\\\\\"}\r\n}\t ",
             TINY_W);
    const float data[3] = {1, 2, 3};
    write_st(path, strlen(header), header, data, sizeof data);
    VtError err;
    char *config = NULL;
    VtCode code = load_tiny(path, &config, &err);
    ck_assert_msg(code == VT_OK, "%s", err.message);
    ck_assert_str_eq(config, "a\xc3\xa9\xf0\x9f\x98\x80/\b\f\t\r\n\"\\");
    free(config);

    /* The spec: the header starts with '{'. */
    char spaced[1100];
    snprintf(spaced, sizeof spaced, " %s", header);
    write_st(path, strlen(spaced), spaced, data, sizeof data);
    assert_error(load_tiny(path, NULL, &err), &err, VT_ERR_DATA, "must start with '{'");
    write_st(path, 23, "{\"__metadata__\":{},   }", NULL, 0);
    assert_error(load_tiny(path, NULL, &err), &err, VT_ERR_DATA, "expected a string");
}
END_TEST

/* A file without __metadata__ reads with config NULL. */
START_TEST(test_st_no_metadata)
{
    char path[600], header[512];
    tmp_path(path, sizeof path, "m.safetensors");
    snprintf(header, sizeof header, "{%s,%s}", TINY_W, TINY_B);
    const float data[3] = {1, 2, 3};
    write_st(path, strlen(header), header, data, sizeof data);
    char *config = (char *)"unchanged";
    VtError err;
    ck_assert_int_eq(load_tiny(path, &config, &err), VT_OK);
    ck_assert_ptr_null(config);
}
END_TEST

START_TEST(test_st_lying_header_length)
{
    char path[600], header[512];
    tmp_path(path, sizeof path, "lie.safetensors");
    snprintf(header, sizeof header, "{%s,%s}", TINY_W, TINY_B);
    const float data[3] = {1, 2, 3};
    const uint64_t lies[] = {UINT64_MAX, UINT64_C(1) << 62, strlen(header) + 13};
    VtError err;
    for (int k = 0; k < 3; k++) {
        write_st(path, lies[k], header, data, sizeof data);
        assert_error(load_tiny(path, NULL, &err), &err, VT_ERR_DATA, "exceeds the file size");
        ck_assert(strstr(err.message, path) != NULL);
    }
    /* A length that fits but cuts the JSON short. */
    write_st(path, strlen(header) - 5, header, data, sizeof data);
    assert_error(load_tiny(path, NULL, &err), &err, VT_ERR_DATA, "bad JSON header");
    fixture_write_bytes(path, "\x10\x00\x00", 3);
    assert_error(load_tiny(path, NULL, &err), &err, VT_ERR_DATA, "is truncated");
}
END_TEST

START_TEST(test_st_malformed_json)
{
    char path[600];
    tmp_path(path, sizeof path, "bad.safetensors");
    static const char *const bad[] = {
        "",
        "[]",
        "{",
        "{\"w\" {}}",
        "{\"w\":{\"dtype\":\"F32\",}}",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}",
        "{\"__metadata__\":{\"config\":\"abc}}",
        "{\"__metadata__\":{\"config\":\"a\\x\"}}",
        "{\"__metadata__\":{\"config\":\"\\ud800\"}}",
        "{\"__metadata__\":{\"config\":\"\\udc00\\ud800\"}}",
        "{\"__metadata__\":{\"config\":\"\\u00G0\"}}",
        "{\"__metadata__\":{\"config\":\"\\u0000\"}}",
        "{\"__metadata__\":{\"config\":\"a\nb\"}}",
        "{\"__metadata__\":{\"config\":\"\xc3\x28\"}}",
        "{\"__metadata__\":{\"config\":\"\xe0\x80\xaf\"}}",
        "{\"__metadata__\":{\"config\":\"\xed\xa0\x80\"}}",
        "{\"__metadata__\":{\"config\":1}}",
        "{\"__metadata__\":{\"config\":true}}",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[01],\"data_offsets\":[0,8]}}",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,],\"data_offsets\":[0,8]}}",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]}}",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,2],\"data_offsets\":[0,8]}}",
        "{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}",
        "{} x",
        "{}}",
        "{\"__metadata__\":{},\"__metadata__\":{}}",
    };
    const float data[3] = {1, 2, 3};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        write_st(path, strlen(bad[k]), bad[k], data, sizeof data);
        VtError err;
        VtCode code = load_tiny(path, NULL, &err);
        ck_assert_msg(code == VT_ERR_DATA, "case %zu: code %d", k, code);
        ck_assert_msg(strstr(err.message, "bad JSON header at byte") != NULL,
                      "case %zu: %s", k, err.message);
        ck_assert(strstr(err.message, path) != NULL);
    }
}
END_TEST

/* Well-formed JSON whose meaning is wrong: each error names the tensor
 * and the field. */
START_TEST(test_st_bad_entries)
{
    char path[600], header[1024];
    tmp_path(path, sizeof path, "e.safetensors");
    static const struct {
        const char *w; /* the entry of w */
        const char *text;
    } cases[] = {
        {"\"w\":{\"dtype\":\"F16\",\"shape\":[2],\"data_offsets\":[0,8]}",
         "w has dtype F16, vitrain reads F32"},
        {"\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}",
         "w has shape (3) in the file, the model expects (2)"},
        {"\"w\":{\"dtype\":\"F32\",\"shape\":[2,1],\"data_offsets\":[0,8]}",
         "w has shape (2, 1) in the file, the model expects (2)"},
        {"\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,4]}",
         "w has data_offsets [0, 4]; shape (2) of F32 needs 8 bytes"},
        {"\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}",
         "w has data_offsets [8, 0]"},
        {"\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}",
         "inside a data section of 12"},
        {"\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[9223372036854775807,0]}",
         "w has data_offsets"},
        {"\"w\":{\"dtype\":\"F32\",\"shape\":[2]}", "tensor w: missing field \"data_offsets\""},
        {"\"w\":{\"shape\":[2],\"data_offsets\":[0,8]}", "tensor w: missing field \"dtype\""},
        {"\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"x\":1}",
         "tensor w: unknown field \"x\""},
        {"\"w\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}",
         "tensor w: repeated field \"dtype\""},
        {"\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}",
         "tensor w: need two values in field \"data_offsets\""},
        {"\"x\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}",
         "x is in the file but not in the model"},
        {"\"b\":{\"dtype\":\"F32\",\"shape\":[1,1],\"data_offsets\":[8,12]}", "b appears twice"},
    };
    const float data[3] = {1, 2, 3};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        snprintf(header, sizeof header, "{%s,%s}", cases[k].w, TINY_B);
        write_st(path, strlen(header), header, data, sizeof data);
        VtError err;
        assert_error(load_tiny(path, NULL, &err), &err, VT_ERR_DATA, cases[k].text);
        ck_assert(strstr(err.message, path) != NULL);
    }
    snprintf(header, sizeof header, "{%s}", TINY_B);
    write_st(path, strlen(header), header, data, sizeof data);
    VtError err;
    assert_error(load_tiny(path, NULL, &err), &err, VT_ERR_DATA, "w of the model is missing");
}
END_TEST

/* Truncating the data section is caught by the offsets check. */
START_TEST(test_st_truncated)
{
    Saved s;
    save_base(&s, "ck", 2);
    char path[600], cut[600];
    tmp_path(path, sizeof path, "model.safetensors");
    tmp_path(cut, sizeof cut, "cut.safetensors");
    VtError err;
    ck_assert_int_eq(safetensors_save(path, &s.list, s.params.data, CONFIG, &err), VT_OK);
    size_t size;
    unsigned char *buf = fixture_read_bytes(path, &size);
    const size_t lengths[] = {0, 4, 8, 9, 100, get_u64(buf) + 8, size - 4, size - 1};
    Arena p;
    arena_create(&p, &s.list);
    for (size_t k = 0; k < sizeof lengths / sizeof lengths[0]; k++) {
        fixture_write_bytes(cut, buf, lengths[k]);
        VtCode code = safetensors_load(cut, &s.list, p.data, NULL, &err);
        ck_assert_msg(code == VT_ERR_DATA, "length %zu: code %d", lengths[k], code);
        ck_assert(strstr(err.message, cut) != NULL);
    }
    arena_free(&p);
    free(buf);
    saved_free(&s);
}
END_TEST

START_TEST(test_st_config_not_utf8)
{
    TensorList l;
    tensor_list_init(&l);
    add(&l, "w", 1, 2, 0, 0);
    Arena p;
    arena_create(&p, &l);
    char path[600];
    tmp_path(path, sizeof path, "x.safetensors");
    VtError err;
    assert_error(safetensors_save(path, &l, p.data, "name = caf\xe9\n", &err), &err,
                 VT_ERR_ARGUMENT, "not valid UTF-8 at byte 10");
    ck_assert_int_eq(count_entries(), 0);
    arena_free(&p);
    tensor_list_free(&l);
}
END_TEST

Suite *checkpoint_suite(void)
{
    Suite *s = suite_create("checkpoint");
    TCase *ck = tcase_with_timeout("checkpoint", 30, NULL);
    tcase_add_checked_fixture(ck, make_tmpdir, remove_tmpdir);
    tcase_add_test(ck, test_crc32_reference);
    tcase_add_test(ck, test_ckpt_roundtrip);
    tcase_add_test(ck, test_ckpt_counters_out_of_range);
    tcase_add_test(ck, test_ckpt_overwrite_and_skip_moments);
    tcase_add_test(ck, test_ckpt_layout);
    tcase_add_test(ck, test_ckpt_version_1_loads);
    tcase_add_test(ck, test_ckpt_shape_mismatch);
    tcase_add_test(ck, test_ckpt_missing_tensor);
    tcase_add_test(ck, test_ckpt_extra_tensor);
    tcase_add_test(ck, test_ckpt_corrupt_byte);
    tcase_add_test(ck, test_ckpt_truncated);
    tcase_add_test(ck, test_ckpt_lying_lengths);
    tcase_add_test(ck, test_ckpt_bad_magic_and_version);
    suite_add_tcase(s, ck);

    TCase *atomic = tcase_with_timeout("atomic", 30, NULL);
    tcase_add_checked_fixture(atomic, make_tmpdir, remove_tmpdir);
    tcase_add_test(atomic, test_atomic_disk_full_keeps_old_file);
    tcase_add_test(atomic, test_atomic_stream_dev_full);
    tcase_add_test(atomic, test_atomic_missing_folder);
    tcase_add_test(atomic, test_atomic_read_only_folder);
    tcase_add_test(atomic, test_atomic_rename_fails);
    tcase_add_test(atomic, test_atomic_write_fails_at_every_point);
    tcase_add_test(atomic, test_kill_during_write_never_corrupts);
    suite_add_tcase(s, atomic);

    TCase *st = tcase_with_timeout("safetensors", 30, NULL);
    tcase_add_checked_fixture(st, make_tmpdir, remove_tmpdir);
    tcase_add_test(st, test_st_roundtrip);
    tcase_add_test(st, test_st_byte_exact);
    tcase_add_test(st, test_st_padding);
    tcase_add_test(st, test_large_tensors);
    tcase_add_test(st, test_st_reads_other_writers);
    tcase_add_test(st, test_st_no_metadata);
    tcase_add_test(st, test_st_lying_header_length);
    tcase_add_test(st, test_st_malformed_json);
    tcase_add_test(st, test_st_bad_entries);
    tcase_add_test(st, test_st_truncated);
    tcase_add_test(st, test_st_config_not_utf8);
    suite_add_tcase(s, st);
    return s;
}
