/*
 * safetensors.c - the F32 safetensors export and its reader (see
 * checkpoint.h and https://github.com/huggingface/safetensors).
 *
 * A file is an 8-byte little-endian u64 N, N bytes of JSON header, then the
 * data. We write the header as
 *   {"__metadata__":{"format":"vitrain","config":"<INI text>"},
 *    "<name>":{"dtype":"F32","shape":[...],"data_offsets":[begin,end]},...}
 * without any whitespace, tensors in TensorList order and contiguous in the
 * data section (offsets relative to its start), and pad the header with
 * spaces so that the data starts at a multiple of 8 bytes. Strings are
 * UTF-8: the config text must be valid UTF-8; '"', '\' and control
 * characters are escaped, everything else is written as is.
 *
 * The reader has its own strict JSON parser for the subset a safetensors
 * header uses (objects, strings with every JSON escape, arrays of
 * non-negative integers); anything else, invalid UTF-8 included, is an
 * error naming the byte offset. Every length and offset is checked against
 * the file size before it is used.
 */
#include "vitrain/checkpoint.h"
#include "vitrain/utf8.h"

#include "binfile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ---- save -------------------------------------------------------------- */

/* A growing text buffer for the header. */
typedef struct Buf {
    char *data;
    size_t len, cap;
} Buf;

static void buf_put(Buf *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        b->cap = VT_MAX(2 * b->cap, b->len + n + 1);
        b->data = realloc(b->data, b->cap);
        VT_ASSERT(b->data != NULL);
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void buf_puts(Buf *b, const char *s)
{
    buf_put(b, s, strlen(s));
}

/* s as a JSON string literal; s is valid UTF-8. */
static void buf_json_string(Buf *b, const char *s)
{
    /* Pairs (character, letter of its two-character escape). */
    static const char short_escapes[] = "\"\"\\\\\bb\ff\nn\rr\tt";
    buf_puts(b, "\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        const char *e = c ? strchr(short_escapes, c) : NULL;
        char esc[8];
        if (e && (e - short_escapes) % 2 == 0) {
            esc[0] = '\\';
            esc[1] = e[1];
            buf_put(b, esc, 2);
        } else if (c < 0x20) {
            snprintf(esc, sizeof esc, "\\u%04x", c);
            buf_puts(b, esc);
        } else {
            buf_put(b, (const char *)&c, 1);
        }
    }
    buf_puts(b, "\"");
}

static void buf_tensor(Buf *b, const TensorSpec *s, uint64_t begin)
{
    char num[32];
    buf_puts(b, ",");
    buf_json_string(b, s->name);
    buf_puts(b, ":{\"dtype\":\"F32\",\"shape\":[");
    for (int d = 0; d < s->ndim; d++) {
        snprintf(num, sizeof num, "%s%lld", d ? "," : "", (long long)s->shape[d]);
        buf_puts(b, num);
    }
    snprintf(num, sizeof num, "],\"data_offsets\":[%llu,", (unsigned long long)begin);
    buf_puts(b, num);
    snprintf(num, sizeof num, "%llu]}", (unsigned long long)(begin + 4 * (uint64_t)s->numel));
    buf_puts(b, num);
}

/* The header, padded with spaces to a multiple of 8 bytes (8 + N too). */
static void build_header(Buf *b, const TensorList *list, const char *config)
{
    buf_puts(b, "{\"__metadata__\":{\"format\":\"vitrain\"");
    if (config) {
        buf_puts(b, ",\"config\":");
        buf_json_string(b, config);
    }
    buf_puts(b, "}");
    uint64_t begin = 0;
    for (int i = 0; i < list->count; i++) {
        buf_tensor(b, &list->specs[i], begin);
        begin += 4 * (uint64_t)list->specs[i].numel;
    }
    buf_puts(b, "}");
    while (b->len % 8 != 0)
        buf_puts(b, " ");
}

typedef struct StSaveJob {
    const Buf *header;
    const TensorList *list;
    const float *params;
} StSaveJob;

static void write_safetensors(OutStream *out, void *ctx)
{
    const StSaveJob *job = ctx;
    out_u64(out, job->header->len);
    out_bytes(out, job->header->data, job->header->len);
    for (int i = 0; i < job->list->count; i++) {
        const TensorSpec *s = &job->list->specs[i];
        out_floats(out, job->params + s->offset, s->numel);
    }
}

VtCode safetensors_save(const char *path, const TensorList *list, const float *params,
                        const char *config_text, VtError *err)
{
    VT_ASSERT(path && list && params);
    long bad = config_text ? utf8_invalid_at(config_text, strlen(config_text)) : -1;
    if (bad >= 0)
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "cannot write %s: the config text is not valid UTF-8 at byte %ld "
                       "(safetensors metadata is UTF-8)",
                       path, bad);
    Buf header = {0};
    build_header(&header, list, config_text);
    StSaveJob job = {.header = &header, .list = list, .params = params};
    VtCode code = atomic_write_file(path, write_safetensors, &job, false, err);
    free(header.data);
    return code;
}

/* ---- a strict JSON parser for the header --------------------------------- */

typedef struct Json {
    const char *path;
    const unsigned char *s;
    size_t n, pos;
    VtError *err;
} Json;

static VtCode json_fail(Json *j, const char *what)
{
    return vt_fail(j->err, VT_ERR_DATA, "safetensors %s: bad JSON header at byte %zu: %s",
                   j->path, 8 + j->pos, what);
}

static void skip_ws(Json *j)
{
    while (j->pos < j->n && (j->s[j->pos] == ' ' || j->s[j->pos] == '\t' ||
                             j->s[j->pos] == '\n' || j->s[j->pos] == '\r'))
        j->pos++;
}

/* Skips whitespace; true (and consumes it) if the next byte is c. */
static bool accept(Json *j, char c)
{
    skip_ws(j);
    if (j->pos < j->n && j->s[j->pos] == (unsigned char)c) {
        j->pos++;
        return true;
    }
    return false;
}

static VtCode expect(Json *j, char c)
{
    char what[32];
    snprintf(what, sizeof what, "expected '%c'", c);
    return accept(j, c) ? VT_OK : json_fail(j, what);
}

static int hex_value(unsigned char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                          : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* Reads the 4 hex digits of a \u escape at j->pos (just past the 'u'). */
static bool read_hex4(Json *j, unsigned *out)
{
    if (j->n - j->pos < 4)
        return false;
    *out = 0;
    for (int i = 0; i < 4; i++) {
        int h = hex_value(j->s[j->pos + (size_t)i]);
        if (h < 0)
            return false;
        *out = *out << 4 | (unsigned)h;
    }
    j->pos += 4;
    return true;
}

static size_t put_utf8(char *o, unsigned cp)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | cp >> 6);
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | cp >> 12);
        o[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | cp >> 18);
    o[1] = (char)(0x80 | (cp >> 12 & 0x3F));
    o[2] = (char)(0x80 | (cp >> 6 & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* A \uXXXX escape (j->pos just past the 'u'), surrogate pairs combined;
 * writes its UTF-8 bytes to o (at most 4, never more than the 6 or 12
 * escape bytes read) and returns their count, 0 on error. */
static size_t unicode_escape(Json *j, char *o)
{
    unsigned cp, low;
    if (!read_hex4(j, &cp) || cp == 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
        return 0;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        if (j->n - j->pos < 2 || j->s[j->pos] != '\\' || j->s[j->pos + 1] != 'u')
            return 0;
        j->pos += 2;
        if (!read_hex4(j, &low) || low < 0xDC00 || low > 0xDFFF)
            return 0;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    return put_utf8(o, cp);
}

/* One escape (j->pos at the byte after '\'); 0 on error. */
static size_t escape(Json *j, char *o)
{
    /* Pairs (escape letter, character it stands for). */
    static const char map[] = "\"\"\\\\//b\bf\fn\nr\rt\t";
    if (j->pos >= j->n)
        return 0;
    unsigned char c = j->s[j->pos++];
    if (c == 'u')
        return unicode_escape(j, o);
    const char *m = c ? strchr(map, c) : NULL;
    if (!m || (m - map) % 2 != 0)
        return 0;
    *o = m[1];
    return 1;
}

/* Decodes the string at j->pos (the opening quote) into a malloc'ed,
 * NUL-terminated *out; decoded text is never longer than its source. */
static VtCode parse_string(Json *j, char **out)
{
    if (!accept(j, '"'))
        return json_fail(j, "expected a string");
    char *o = vt_xmalloc(j->n - j->pos + 1);
    size_t len = 0;
    const char *bad = NULL;
    while (!bad) {
        if (j->pos >= j->n) {
            bad = "unterminated string";
        } else if (j->s[j->pos] == '"') {
            j->pos++;
            break;
        } else if (j->s[j->pos] == '\\') {
            j->pos++;
            size_t k = escape(j, o + len);
            len += k;
            bad = k ? NULL : "bad escape (\\u0000 and lone surrogates are refused)";
        } else if (j->s[j->pos] < 0x20) {
            bad = "control character in a string";
        } else {
            size_t k = utf8_sequence(j->s + j->pos, j->n - j->pos);
            memcpy(o + len, j->s + j->pos, k);
            len += k;
            j->pos += k;
            bad = k ? NULL : "invalid UTF-8 in a string";
        }
    }
    if (bad) {
        free(o);
        return json_fail(j, bad);
    }
    o[len] = '\0';
    *out = o;
    return VT_OK;
}

/* A non-negative integer up to INT64_MAX, without sign, fraction or
 * exponent, and without leading zeros. */
static VtCode parse_int(Json *j, int64_t *out)
{
    skip_ws(j);
    size_t start = j->pos;
    uint64_t v = 0;
    while (j->pos < j->n && j->s[j->pos] >= '0' && j->s[j->pos] <= '9') {
        unsigned d = j->s[j->pos] - '0';
        if (v > ((uint64_t)INT64_MAX - d) / 10)
            return json_fail(j, "integer too large");
        v = 10 * v + d;
        j->pos++;
    }
    if (j->pos == start)
        return json_fail(j, "expected a non-negative integer");
    if (j->s[start] == '0' && j->pos - start > 1)
        return json_fail(j, "integer with a leading zero");
    *out = (int64_t)v;
    return VT_OK;
}

/* [int, ...] with at most max values. */
static VtCode parse_int_array(Json *j, int64_t *vals, int max, int *count)
{
    VtCode code = expect(j, '[');
    *count = 0;
    if (code || accept(j, ']'))
        return code;
    do {
        if (*count == max)
            return json_fail(j, "too many values in an array");
        code = parse_int(j, &vals[(*count)++]);
    } while (!code && accept(j, ','));
    return code ? code : expect(j, ']');
}

typedef VtCode (*MemberFn)(Json *j, const char *key, void *ctx);

/* {"key": value, ...}; member parses each value. */
static VtCode parse_object(Json *j, MemberFn member, void *ctx)
{
    VtCode code = expect(j, '{');
    if (code || accept(j, '}'))
        return code;
    do {
        char *key;
        code = parse_string(j, &key);
        if (code)
            return code;
        code = expect(j, ':');
        if (!code)
            code = member(j, key, ctx);
        free(key);
    } while (!code && accept(j, ','));
    return code ? code : expect(j, '}');
}

/* ---- the header's meaning ---------------------------------------------- */

enum { FIELD_DTYPE = 1, FIELD_SHAPE = 2, FIELD_OFFSETS = 4 };

typedef struct StEntry {
    char *name;
    char *dtype;
    int ndim;
    int64_t shape[VT_TENSOR_MAX_DIMS];
    int64_t offsets[2];
    unsigned fields; /* FIELD_* seen */
} StEntry;

typedef struct Header {
    StEntry *entries;
    int count, cap;
    char *config;       /* __metadata__.config, NULL if none */
    bool has_metadata;
} Header;

static void header_free(Header *h)
{
    for (int i = 0; i < h->count; i++) {
        free(h->entries[i].name);
        free(h->entries[i].dtype);
    }
    free(h->entries);
    free(h->config);
}

static VtCode field_fail(Json *j, const char *name, const char *what, const char *field)
{
    return vt_fail(j->err, VT_ERR_DATA,
                   "safetensors %s: tensor %s: %s field \"%s\" (header byte %zu)", j->path, name,
                   what, field, 8 + j->pos);
}

static VtCode entry_member(Json *j, const char *key, void *ctx)
{
    StEntry *e = ctx;
    int n;
    unsigned bit = strcmp(key, "dtype") == 0 ? FIELD_DTYPE
                   : strcmp(key, "shape") == 0 ? FIELD_SHAPE
                   : strcmp(key, "data_offsets") == 0 ? FIELD_OFFSETS : 0;
    if (bit == 0)
        return field_fail(j, e->name, "unknown", key);
    if (e->fields & bit)
        return field_fail(j, e->name, "repeated", key);
    e->fields |= bit;
    if (bit == FIELD_DTYPE)
        return parse_string(j, &e->dtype);
    if (bit == FIELD_SHAPE)
        return parse_int_array(j, e->shape, VT_TENSOR_MAX_DIMS, &e->ndim);
    VtCode code = parse_int_array(j, e->offsets, 2, &n);
    return code ? code : n == 2 ? VT_OK : field_fail(j, e->name, "need two values in", key);
}

static VtCode metadata_member(Json *j, const char *key, void *ctx)
{
    Header *h = ctx;
    char *value;
    VtCode code = parse_string(j, &value);
    if (code)
        return code;
    if (strcmp(key, "config") != 0) {
        free(value);
        return VT_OK;
    }
    if (h->config) {
        free(value);
        return json_fail(j, "repeated __metadata__ field \"config\"");
    }
    h->config = value;
    return VT_OK;
}

static VtCode top_member(Json *j, const char *key, void *ctx)
{
    Header *h = ctx;
    if (strcmp(key, "__metadata__") == 0) {
        if (h->has_metadata)
            return json_fail(j, "repeated \"__metadata__\"");
        h->has_metadata = true;
        return parse_object(j, metadata_member, h);
    }
    if (h->count == h->cap) {
        h->cap = h->cap ? 2 * h->cap : 64;
        h->entries = realloc(h->entries, (size_t)h->cap * sizeof *h->entries);
        VT_ASSERT(h->entries != NULL);
    }
    StEntry *e = &h->entries[h->count++];
    memset(e, 0, sizeof *e);
    e->name = strdup(key);
    VT_ASSERT(e->name != NULL);
    VtCode code = parse_object(j, entry_member, e);
    if (!code && e->fields != (FIELD_DTYPE | FIELD_SHAPE | FIELD_OFFSETS))
        return field_fail(j, e->name, "missing", !(e->fields & FIELD_DTYPE) ? "dtype"
                                                 : !(e->fields & FIELD_SHAPE) ? "shape"
                                                 : "data_offsets");
    return code;
}

static VtCode parse_header(Json *j, Header *h)
{
    if (j->n == 0 || j->s[0] != '{')
        return json_fail(j, "the header must start with '{'");
    VtCode code = parse_object(j, top_member, h);
    skip_ws(j);
    if (!code && j->pos != j->n)
        return json_fail(j, "trailing bytes after the header object");
    return code;
}

/* ---- load -------------------------------------------------------------- */

static VtCode check_entry(const char *path, const StEntry *e, const TensorList *list,
                          uint64_t data_len, int *index_out, VtError *err)
{
    int index = tensor_list_find(list, e->name);
    *index_out = index;
    if (index < 0)
        return vt_fail(err, VT_ERR_DATA, "safetensors %s: %s is in the file but not in the model",
                       path, e->name);
    const TensorSpec *s = &list->specs[index];
    if (strcmp(e->dtype, "F32") != 0)
        return vt_fail(err, VT_ERR_DATA, "safetensors %s: %s has dtype %s, vitrain reads F32",
                       path, e->name, e->dtype);
    bool same = e->ndim == s->ndim;
    for (int d = 0; same && d < s->ndim; d++)
        same = e->shape[d] == s->shape[d];
    char have[128], want[128];
    format_shape(have, sizeof have, e->shape, e->ndim);
    format_shape(want, sizeof want, s->shape, s->ndim);
    if (!same)
        return vt_fail(err, VT_ERR_DATA,
                       "safetensors %s: %s has shape %s in the file, the model expects %s", path,
                       e->name, have, want);
    uint64_t begin = (uint64_t)e->offsets[0], end = (uint64_t)e->offsets[1];
    if (begin > end || end > data_len || end - begin != 4 * (uint64_t)s->numel)
        return vt_fail(err, VT_ERR_DATA,
                       "safetensors %s: %s has data_offsets [%llu, %llu]; shape %s of F32 needs "
                       "%llu bytes inside a data section of %llu",
                       path, e->name, (unsigned long long)begin, (unsigned long long)end, have,
                       (unsigned long long)(4 * (uint64_t)s->numel),
                       (unsigned long long)data_len);
    return VT_OK;
}

/* Checks every entry against the list, both ways; at[i] is the entry of
 * list tensor i. */
static VtCode match_header(const char *path, const Header *h, const TensorList *list,
                           uint64_t data_len, const StEntry **at, VtError *err)
{
    for (int i = 0; i < list->count; i++)
        at[i] = NULL;
    for (int k = 0; k < h->count; k++) {
        const StEntry *e = &h->entries[k];
        int index;
        VtCode code = check_entry(path, e, list, data_len, &index, err);
        if (code)
            return code;
        if (at[index])
            return vt_fail(err, VT_ERR_DATA, "safetensors %s: %s appears twice", path, e->name);
        at[index] = e;
    }
    for (int i = 0; i < list->count; i++)
        if (!at[i])
            return vt_fail(err, VT_ERR_DATA, "safetensors %s: %s of the model is missing", path,
                           list->specs[i].name);
    return VT_OK;
}

static VtCode read_failed(VtError *err, const char *path, FILE *file)
{
    if (ferror(file))
        return vt_fail(err, VT_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    return vt_fail(err, VT_ERR_DATA, "safetensors %s is truncated", path);
}

/* Reads and parses the header of an open file of size bytes. */
static VtCode read_header(const char *path, FILE *file, uint64_t size, Header *h,
                          uint64_t *data_start, VtError *err)
{
    unsigned char len_bytes[8];
    if (size < 8)
        return vt_fail(err, VT_ERR_DATA, "safetensors %s is truncated: %llu bytes", path,
                       (unsigned long long)size);
    if (fread(len_bytes, 1, 8, file) != 8)
        return read_failed(err, path, file);
    uint64_t n = le_get_u64(len_bytes);
    if (n > size - 8)
        return vt_fail(err, VT_ERR_DATA,
                       "safetensors %s: header length %llu exceeds the file size (%llu bytes)",
                       path, (unsigned long long)n, (unsigned long long)size);
    unsigned char *text = vt_xmalloc((size_t)n + 1);
    if (fread(text, 1, (size_t)n, file) != n) {
        free(text);
        return read_failed(err, path, file);
    }
    Json j = {.path = path, .s = text, .n = (size_t)n, .err = err};
    VtCode code = parse_header(&j, h);
    free(text);
    *data_start = 8 + n;
    return code;
}

static VtCode read_tensors(const char *path, FILE *file, uint64_t data_start,
                           const TensorList *list, const StEntry *const *at, float *params,
                           VtError *err)
{
    for (int i = 0; i < list->count; i++) {
        const TensorSpec *s = &list->specs[i];
        uint64_t pos = data_start + (uint64_t)at[i]->offsets[0];
        if (fseeko(file, (off_t)pos, SEEK_SET) != 0 ||
            !in_floats(file, params + s->offset, s->numel))
            return read_failed(err, path, file);
    }
    return VT_OK;
}

static VtCode load_file(const char *path, FILE *file, const TensorList *list, float *params,
                        char **config_text, VtError *err)
{
    struct stat st;
    if (fstat(fileno(file), &st) != 0)
        return vt_fail(err, VT_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    uint64_t size = (uint64_t)st.st_size, data_start = 0;
    Header h = {0};
    const StEntry **at = vt_xmalloc((size_t)VT_MAX(list->count, 1) * sizeof *at);
    VtCode code = read_header(path, file, size, &h, &data_start, err);
    if (!code)
        code = match_header(path, &h, list, size - data_start, at, err);
    if (!code)
        code = read_tensors(path, file, data_start, list, at, params, err);
    if (!code && config_text) {
        *config_text = h.config;
        h.config = NULL;
    }
    free(at);
    header_free(&h);
    return code;
}

VtCode safetensors_load(const char *path, const TensorList *list, float *params,
                        char **config_text, VtError *err)
{
    VT_ASSERT(path && list && params);
    FILE *file = fopen(path, "rb");
    if (!file)
        return vt_fail(err, VT_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    VtCode code = load_file(path, file, list, params, config_text, err);
    fclose(file);
    return code;
}

VtCode safetensors_read_config(const char *path, char **config_text, VtError *err)
{
    FILE *file = fopen(path, "rb");
    if (!file)
        return vt_fail(err, VT_ERR_IO, "cannot read %s: %s", path, strerror(errno));
    struct stat st;
    Header h = {0};
    uint64_t data_start;
    VtCode code = fstat(fileno(file), &st) != 0
                      ? vt_fail(err, VT_ERR_IO, "cannot read %s: %s", path, strerror(errno))
                      : read_header(path, file, (uint64_t)st.st_size, &h, &data_start, err);
    fclose(file);
    if (!code && !h.config)
        code = vt_fail(err, VT_ERR_DATA,
                       "safetensors %s has no vitrain config in __metadata__, so the model "
                       "cannot be rebuilt from it",
                       path);
    if (!code) {
        *config_text = h.config;
        h.config = NULL;
    }
    header_free(&h);
    return code;
}
