/*
 * checkpoint.c - training checkpoints (see checkpoint.h).
 *
 * File layout, version 2; every integer little-endian, floats as their
 * IEEE-754 bits, little-endian:
 *
 *   offset size  field
 *        0    8  magic "VTCKPT\r\n"
 *        8    4  u32 format version (2)
 *       12    4  u32 tensor count
 *       16    8  u64 file size in bytes, checksum included
 *       24    8  u64 config length L
 *       32    8  u64 tensor table length T in bytes
 *       40    8  i64 step
 *       48    8  i64 epoch
 *       56    8  i64 AdamW step count (optim_t)
 *       64    8  f64 best eval top-1
 *       72    8  f64 sum of the current epoch's finite losses
 *       80    8  i64 how many steps that sum holds
 *       88    L  config text (no terminating NUL)
 *   88 + L    T  tensor table; per tensor: u32 name length, name bytes
 *                (no NUL), u32 ndim, ndim x u64 dims
 *   then         parameters, every tensor's elements in table order,
 *                contiguous (no arena padding); then AdamW m, then v,
 *                in the same order
 *   size - 4  4  u32 CRC-32 of every byte before it
 *
 * A load checks, in this order: the magic, the version, the declared size
 * against the file's (truncation), the checksum, then every length field
 * against the file size before it allocates or reads anything by it, then
 * the table against the model's TensorList (names and shapes, both ways).
 * Only then are the caller's buffers written. The table may list tensors in
 * any order; the data follows it.
 *
 * Version 1, written before the epoch's loss totals were kept, lacks the
 * two fields at 72 and 80 (its config text starts at 72); it still loads,
 * with totals of zero.
 */
#include "vitrain/checkpoint.h"

#include "binfile.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const unsigned char MAGIC[8] = {'V', 'T', 'C', 'K', 'P', 'T', '\r', '\n'};
enum { CKPT_VERSION = 2, HEADER_BYTES = 88, HEADER_BYTES_V1 = 72, CRC_BYTES = 4 };
/* Smallest table entry: name length, one name byte, ndim, one dim. */
enum { MIN_ENTRY_BYTES = 4 + 1 + 4 + 8 };

/* ---- save -------------------------------------------------------------- */

typedef struct SaveJob {
    const CheckpointState *state;
    const TensorList *list;
    const float *arenas[3]; /* params, m, v */
    const char *config;
    uint64_t config_len, table_len, file_size;
} SaveJob;

static uint64_t table_length(const TensorList *list)
{
    uint64_t bytes = 0;
    for (int i = 0; i < list->count; i++)
        bytes += 4 + strlen(list->specs[i].name) + 4 + 8 * (uint64_t)list->specs[i].ndim;
    return bytes;
}

static uint64_t list_numel(const TensorList *list)
{
    uint64_t n = 0;
    for (int i = 0; i < list->count; i++)
        n += list->specs[i].numel;
    return n;
}

static void write_header(OutStream *out, const SaveJob *job)
{
    const CheckpointState *st = job->state;
    uint64_t best_bits, loss_bits;
    memcpy(&best_bits, &st->best_top1, sizeof best_bits);
    memcpy(&loss_bits, &st->epoch_loss_sum, sizeof loss_bits);
    out_bytes(out, MAGIC, sizeof MAGIC);
    out_u32(out, CKPT_VERSION);
    out_u32(out, (uint32_t)job->list->count);
    out_u64(out, job->file_size);
    out_u64(out, job->config_len);
    out_u64(out, job->table_len);
    out_u64(out, (uint64_t)st->step);
    out_u64(out, (uint64_t)st->epoch);
    out_u64(out, (uint64_t)st->optim_t);
    out_u64(out, best_bits);
    out_u64(out, loss_bits);
    out_u64(out, (uint64_t)st->epoch_loss_steps);
}

static void write_table(OutStream *out, const TensorList *list)
{
    for (int i = 0; i < list->count; i++) {
        const TensorSpec *s = &list->specs[i];
        size_t len = strlen(s->name);
        out_u32(out, (uint32_t)len);
        out_bytes(out, s->name, len);
        out_u32(out, (uint32_t)s->ndim);
        for (int d = 0; d < s->ndim; d++)
            out_u64(out, (uint64_t)s->shape[d]);
    }
}

static void write_checkpoint(OutStream *out, void *ctx)
{
    const SaveJob *job = ctx;
    write_header(out, job);
    out_bytes(out, job->config, job->config_len);
    write_table(out, job->list);
    for (int a = 0; a < 3; a++)
        for (int i = 0; i < job->list->count; i++) {
            const TensorSpec *s = &job->list->specs[i];
            out_floats(out, job->arenas[a] + s->offset, s->numel);
        }
    uint32_t crc = out->crc;
    out_u32(out, crc);
}

VtCode checkpoint_save(const char *path, const CheckpointState *state, const TensorList *list,
                       const float *params, const float *m, const float *v, VtError *err)
{
    VT_ASSERT(path && state && list && params && m && v);
    SaveJob job = {.state = state, .list = list, .arenas = {params, m, v},
                   .config = state->config ? state->config : ""};
    job.config_len = strlen(job.config);
    job.table_len = table_length(list);
    job.file_size = HEADER_BYTES + job.config_len + job.table_len +
                    3 * 4 * list_numel(list) + CRC_BYTES;
    return atomic_write_file(path, write_checkpoint, &job, true, err);
}

/* ---- load: the header, the size and the checksum ----------------------- */

/* An open checkpoint whose header, size and checksum have been verified. */
typedef struct Ckpt {
    const char *path;
    FILE *file;
    uint64_t size;
    uint64_t header_bytes; /* by the file's version */
    uint32_t count;
    uint64_t config_len, table_len;
    CheckpointState state; /* config not set */
} Ckpt;

static VtCode truncated(VtError *err, const char *path, uint64_t size, uint64_t expected)
{
    return vt_fail(err, VT_ERR_DATA, "checkpoint %s is truncated: %llu of %llu bytes", path,
                   (unsigned long long)size, (unsigned long long)expected);
}

static VtCode corrupt(VtError *err, const char *path, const char *what)
{
    return vt_fail(err, VT_ERR_DATA, "checkpoint %s is corrupt: %s", path, what);
}

static VtCode read_failed(VtError *err, const Ckpt *c)
{
    if (ferror(c->file))
        return vt_fail(err, VT_ERR_IO, "cannot read %s: %s", c->path, strerror(errno));
    return vt_fail(err, VT_ERR_DATA, "checkpoint %s is truncated: it shrank while being read",
                   c->path);
}

static void decode_header(Ckpt *c, const unsigned char *h)
{
    uint64_t best_bits = le_get_u64(h + 64);
    if (c->header_bytes >= HEADER_BYTES) {
        uint64_t loss_bits = le_get_u64(h + 72);
        memcpy(&c->state.epoch_loss_sum, &loss_bits, sizeof loss_bits);
        c->state.epoch_loss_steps = (int64_t)le_get_u64(h + 80);
    } else {
        c->state.epoch_loss_sum = 0.0;
        c->state.epoch_loss_steps = 0;
    }
    c->count = le_get_u32(h + 12);
    c->config_len = le_get_u64(h + 24);
    c->table_len = le_get_u64(h + 32);
    c->state.step = (int64_t)le_get_u64(h + 40);
    c->state.epoch = (int64_t)le_get_u64(h + 48);
    c->state.optim_t = (int64_t)le_get_u64(h + 56);
    memcpy(&c->state.best_top1, &best_bits, sizeof best_bits);
    c->state.config = NULL;
}

static VtCode check_header(Ckpt *c, const unsigned char *h, size_t got, VtError *err)
{
    if (memcmp(h, MAGIC, VT_MIN(got, sizeof MAGIC)) != 0)
        return vt_fail(err, VT_ERR_DATA, "%s is not a vitrain checkpoint (bad magic)", c->path);
    if (got < HEADER_BYTES_V1)
        return truncated(err, c->path, c->size, HEADER_BYTES_V1);
    uint32_t version = le_get_u32(h + 8);
    if (version != 1 && version != CKPT_VERSION)
        return vt_fail(err, VT_ERR_DATA,
                       "checkpoint %s has format version %u; this build reads versions 1 and %d",
                       c->path, version, CKPT_VERSION);
    c->header_bytes = version == 1 ? HEADER_BYTES_V1 : HEADER_BYTES;
    if (got < c->header_bytes)
        return truncated(err, c->path, c->size, c->header_bytes);
    uint64_t declared = le_get_u64(h + 16);
    if (c->size < declared)
        return truncated(err, c->path, c->size, declared);
    if (c->size > declared)
        return vt_fail(err, VT_ERR_DATA,
                       "checkpoint %s is corrupt: the header declares %llu bytes, the file has "
                       "%llu",
                       c->path, (unsigned long long)declared, (unsigned long long)c->size);
    if (declared < c->header_bytes + CRC_BYTES)
        return corrupt(err, c->path, "the declared size is smaller than the header");
    decode_header(c, h);
    return VT_OK;
}

/* One pass over the whole file before anything in it is trusted. */
static VtCode check_crc(Ckpt *c, VtError *err)
{
    unsigned char buf[1 << 16];
    uint32_t crc = 0;
    uint64_t left = c->size - CRC_BYTES;
    rewind(c->file);
    while (left > 0) {
        size_t k = (size_t)VT_MIN(left, (uint64_t)sizeof buf);
        if (fread(buf, 1, k, c->file) != k)
            return read_failed(err, c);
        crc = crc32_update(crc, buf, k);
        left -= k;
    }
    if (fread(buf, 1, CRC_BYTES, c->file) != CRC_BYTES)
        return read_failed(err, c);
    return le_get_u32(buf) == crc ? VT_OK : corrupt(err, c->path, "checksum mismatch");
}

/* The run's counters hold what a run can write (a file made some other
 * way can carry any bits under a good checksum). */
static VtCode check_state(const Ckpt *c, VtError *err)
{
    const CheckpointState *st = &c->state;
    char what[160];
    if (st->step < 0 || st->epoch < 0 || st->epoch > st->step || st->optim_t < 0 ||
        st->epoch_loss_steps < 0)
        snprintf(what, sizeof what,
                 "step %lld, epoch %lld, AdamW step %lld, %lld losses this epoch: a count is "
                 "negative, or more epochs than steps",
                 (long long)st->step, (long long)st->epoch, (long long)st->optim_t,
                 (long long)st->epoch_loss_steps);
    else if (!isfinite(st->epoch_loss_sum) ||
             !(st->best_top1 == -1.0 || (st->best_top1 >= 0.0 && st->best_top1 <= 100.0)))
        snprintf(what, sizeof what, "loss sum %g, best top-1 %g: out of range",
                 st->epoch_loss_sum, st->best_top1);
    else
        return VT_OK;
    return corrupt(err, c->path, what);
}

static VtCode ckpt_open(Ckpt *c, const char *path, VtError *err)
{
    memset(c, 0, sizeof *c);
    c->path = path;
    c->file = fopen(path, "rb");
    struct stat st;
    if (!c->file || fstat(fileno(c->file), &st) != 0) {
        VtCode code = vt_fail(err, VT_ERR_IO, "cannot read %s: %s", path, strerror(errno));
        if (c->file)
            fclose(c->file);
        return code;
    }
    c->size = (uint64_t)st.st_size;
    unsigned char h[HEADER_BYTES];
    size_t got = fread(h, 1, sizeof h, c->file);
    VtCode code = check_header(c, h, got, err);
    if (!code)
        code = check_crc(c, err);
    if (!code)
        code = check_state(c, err);
    if (code)
        fclose(c->file);
    return code;
}

static VtCode read_into(const Ckpt *c, char *text, unsigned char *tab, size_t tab_len,
                        VtError *err)
{
    if (fseek(c->file, (long)c->header_bytes, SEEK_SET) != 0 ||
        fread(text, 1, (size_t)c->config_len, c->file) != c->config_len ||
        fread(tab, 1, tab_len, c->file) != tab_len)
        return read_failed(err, c);
    if (memchr(text, '\0', (size_t)c->config_len) != NULL)
        return corrupt(err, c->path, "the config text holds a NUL byte");
    text[c->config_len] = '\0';
    return VT_OK;
}

/* Reads the config and (unless table is NULL) the table section, their
 * lengths capped by the file size first. On success *config is
 * NUL-terminated and *table holds the table bytes, both malloc'ed; nothing
 * is set on failure. */
static VtCode read_sections(const Ckpt *c, char **config, unsigned char **table, VtError *err)
{
    uint64_t room = c->size - c->header_bytes - CRC_BYTES;
    if (c->config_len > room)
        return corrupt(err, c->path, "the config length runs past the end of the file");
    if (c->table_len > room - c->config_len)
        return corrupt(err, c->path, "the tensor table length runs past the end of the file");
    size_t tab_len = table ? (size_t)c->table_len : 0;
    char *text = malloc((size_t)c->config_len + 1);
    unsigned char *tab = malloc(tab_len + 1);
    VtCode code = !text || !tab ? vt_fail(err, VT_ERR_NOMEM, "checkpoint %s: out of memory",
                                          c->path)
                                : read_into(c, text, tab, tab_len, err);
    if (code || !table)
        free(tab);
    if (code) {
        free(text);
        return code;
    }
    *config = text;
    if (table)
        *table = tab;
    return VT_OK;
}

VtCode checkpoint_read_config(const char *path, char **config, VtError *err)
{
    Ckpt c;
    VtCode code = ckpt_open(&c, path, err);
    if (code)
        return code;
    code = read_sections(&c, config, NULL, err);
    fclose(c.file);
    return code;
}

/* ---- load: the tensor table against the model --------------------------- */

/* One table entry as read from the file. */
typedef struct Entry {
    char name[VT_TENSOR_NAME_MAX];
    int ndim;
    int64_t shape[VT_TENSOR_MAX_DIMS];
    uint64_t numel;
} Entry;

/* Cursor over the table bytes; every read is bounds-checked. */
typedef struct Table {
    const unsigned char *p;
    uint64_t len, pos;
} Table;

static bool take(Table *t, uint64_t n, const unsigned char **out)
{
    if (n > t->len - t->pos)
        return false;
    *out = t->p + t->pos;
    t->pos += n;
    return true;
}

static VtCode entry_error(VtError *err, const Ckpt *c, uint32_t index, const char *what)
{
    return vt_fail(err, VT_ERR_DATA, "checkpoint %s is corrupt: tensor table entry %u %s",
                   c->path, index, what);
}

/* Parses entry `index`; the element count is capped by the file size. */
static VtCode parse_entry(const Ckpt *c, Table *t, uint32_t index, Entry *e, VtError *err)
{
    const unsigned char *b;
    if (!take(t, 4, &b))
        return entry_error(err, c, index, "runs past the table");
    uint32_t name_len = le_get_u32(b);
    if (name_len == 0 || name_len >= VT_TENSOR_NAME_MAX)
        return entry_error(err, c, index, "has a bad name length");
    if (!take(t, name_len, &b))
        return entry_error(err, c, index, "runs past the table");
    memcpy(e->name, b, name_len);
    e->name[name_len] = '\0';
    if (strlen(e->name) != name_len)
        return entry_error(err, c, index, "has a NUL byte in its name");
    if (!take(t, 4, &b))
        return entry_error(err, c, index, "runs past the table");
    uint32_t ndim = le_get_u32(b);
    if (ndim == 0 || ndim > VT_TENSOR_MAX_DIMS)
        return entry_error(err, c, index, "has a bad number of dimensions");
    if (!take(t, 8 * (uint64_t)ndim, &b))
        return entry_error(err, c, index, "runs past the table");
    e->ndim = (int)ndim;
    e->numel = 1;
    uint64_t cap = c->size / 4;
    for (uint32_t d = 0; d < ndim; d++) {
        uint64_t dim = le_get_u64(b + 8 * d);
        if (dim == 0 || dim > cap / e->numel)
            return entry_error(err, c, index, "has a dimension the file cannot hold");
        e->shape[d] = (int64_t)dim;
        e->numel *= dim;
    }
    return VT_OK;
}

static bool same_shape(const Entry *e, const TensorSpec *s)
{
    if (e->ndim != s->ndim)
        return false;
    for (int d = 0; d < s->ndim; d++)
        if (e->shape[d] != s->shape[d])
            return false;
    return true;
}

static VtCode match_entry(const Ckpt *c, const Entry *e, const TensorList *list, int *index,
                          VtError *err)
{
    *index = tensor_list_find(list, e->name);
    if (*index < 0)
        return vt_fail(err, VT_ERR_DATA, "checkpoint %s: %s is in the file but not in the model",
                       c->path, e->name);
    const TensorSpec *s = &list->specs[*index];
    if (same_shape(e, s))
        return VT_OK;
    char have[128], want[128];
    format_shape(have, sizeof have, e->shape, e->ndim);
    format_shape(want, sizeof want, s->shape, s->ndim);
    return vt_fail(err, VT_ERR_DATA,
                   "checkpoint %s: %s has shape %s in the file, the model expects %s", c->path,
                   e->name, have, want);
}

/* Fills pos[i] with the position (in floats) of list tensor i inside each
 * data section; checks names, shapes and that the sizes add up. */
static VtCode match_table(const Ckpt *c, const unsigned char *bytes, const TensorList *list,
                          uint64_t *pos, VtError *err)
{
    for (int i = 0; i < list->count; i++)
        pos[i] = UINT64_MAX;
    if (c->count > c->table_len / MIN_ENTRY_BYTES)
        return corrupt(err, c->path, "the tensor count does not fit in the table");
    Table t = {.p = bytes, .len = c->table_len};
    uint64_t floats = 0;
    for (uint32_t k = 0; k < c->count; k++) {
        Entry e;
        int index;
        VtCode code = parse_entry(c, &t, k, &e, err);
        if (!code)
            code = match_entry(c, &e, list, &index, err);
        if (code)
            return code;
        if (pos[index] != UINT64_MAX)
            return vt_fail(err, VT_ERR_DATA, "checkpoint %s is corrupt: %s appears twice",
                           c->path, e.name);
        pos[index] = floats;
        floats += e.numel;
        if (floats > c->size / 4)
            return corrupt(err, c->path, "its tensors do not fit in the file");
    }
    if (t.pos != t.len ||
        c->header_bytes + c->config_len + c->table_len + 12 * floats + CRC_BYTES != c->size)
        return corrupt(err, c->path, "its section sizes do not add up to the file size");
    for (int i = 0; i < list->count; i++)
        if (pos[i] == UINT64_MAX)
            return vt_fail(err, VT_ERR_DATA, "checkpoint %s: %s of the model is missing",
                           c->path, list->specs[i].name);
    return VT_OK;
}

/* ---- load: the data ---------------------------------------------------- */

static VtCode read_data(const Ckpt *c, const TensorList *list, const uint64_t *pos,
                        float *const arenas[3], VtError *err)
{
    uint64_t start = c->header_bytes + c->config_len + c->table_len;
    uint64_t section = (c->size - start - CRC_BYTES) / 3;
    for (int a = 0; a < 3; a++) {
        if (!arenas[a])
            continue;
        for (int i = 0; i < list->count; i++) {
            const TensorSpec *s = &list->specs[i];
            uint64_t at = start + (uint64_t)a * section + 4 * pos[i];
            if (fseeko(c->file, (off_t)at, SEEK_SET) != 0 ||
                !in_floats(c->file, arenas[a] + s->offset, s->numel))
                return read_failed(err, c);
        }
    }
    return VT_OK;
}

static VtCode load_open(Ckpt *c, const TensorList *list, float *const arenas[3], char **config,
                        VtError *err)
{
    unsigned char *table = NULL;
    VtCode code = read_sections(c, config, &table, err);
    if (code)
        return code;
    uint64_t *pos = vt_xmalloc((size_t)VT_MAX(list->count, 1) * sizeof *pos);
    code = match_table(c, table, list, pos, err);
    if (!code)
        code = read_data(c, list, pos, arenas, err);
    free(pos);
    free(table);
    if (code) {
        free(*config);
        *config = NULL;
    }
    return code;
}

VtCode checkpoint_load(const char *path, CheckpointState *state, const TensorList *list,
                       float *params, float *m, float *v, VtError *err)
{
    VT_ASSERT(path && state && list && params);
    Ckpt c;
    VtCode code = ckpt_open(&c, path, err);
    if (code)
        return code;
    char *config = NULL;
    float *const arenas[3] = {params, m, v};
    code = load_open(&c, list, arenas, &config, err);
    fclose(c.file);
    if (code)
        return code;
    *state = c.state;
    state->config = config;
    return VT_OK;
}
