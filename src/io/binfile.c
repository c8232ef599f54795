/*
 * binfile.c - atomic file replacement and little-endian encoding for the io
 * module (see binfile.h).
 */
#include "binfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- little-endian encoding -------------------------------------------- */

void le_put_u32(unsigned char *p, uint32_t x)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(x >> (8 * i));
}

void le_put_u64(unsigned char *p, uint64_t x)
{
    for (int i = 0; i < 8; i++)
        p[i] = (unsigned char)(x >> (8 * i));
}

uint32_t le_get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

uint64_t le_get_u64(const unsigned char *p)
{
    return (uint64_t)le_get_u32(p) | (uint64_t)le_get_u32(p + 4) << 32;
}

/* ---- output stream ----------------------------------------------------- */

void out_bytes(OutStream *out, const void *data, size_t bytes)
{
    if (out->error || bytes == 0)
        return;
    if (fwrite(data, 1, bytes, out->file) != bytes) {
        out->error = errno ? errno : EIO;
        return;
    }
    if (out->checksum)
        out->crc = crc32_update(out->crc, data, bytes);
}

void out_u32(OutStream *out, uint32_t x)
{
    unsigned char b[4];
    le_put_u32(b, x);
    out_bytes(out, b, sizeof b);
}

void out_u64(OutStream *out, uint64_t x)
{
    unsigned char b[8];
    le_put_u64(b, x);
    out_bytes(out, b, sizeof b);
}

/* Floats go through a chunk buffer so that the bytes are little-endian on
 * any host; on a little-endian one the loop is a copy. */
enum { CHUNK_FLOATS = 16384 };

void out_floats(OutStream *out, const float *x, size_t n)
{
    unsigned char buf[4 * CHUNK_FLOATS];
    while (n > 0 && !out->error) {
        size_t k = VT_MIN(n, (size_t)CHUNK_FLOATS);
        for (size_t i = 0; i < k; i++) {
            uint32_t bits;
            memcpy(&bits, &x[i], 4);
            le_put_u32(buf + 4 * i, bits);
        }
        out_bytes(out, buf, 4 * k);
        x += k;
        n -= k;
    }
}

bool in_floats(FILE *file, float *x, size_t n)
{
    unsigned char buf[4 * CHUNK_FLOATS];
    while (n > 0) {
        size_t k = VT_MIN(n, (size_t)CHUNK_FLOATS);
        if (fread(buf, 4, k, file) != k)
            return false;
        for (size_t i = 0; i < k; i++) {
            uint32_t bits = le_get_u32(buf + 4 * i);
            memcpy(&x[i], &bits, 4);
        }
        x += k;
        n -= k;
    }
    return true;
}

/* ---- atomic replacement ------------------------------------------------ */

static VtCode write_failed(VtError *err, const char *path, int error)
{
    return vt_fail(err, VT_ERR_IO, "cannot write %s: %s", path, strerror(error));
}

VtCode atomic_write_stream(FILE *file, const char *path, WriteFn write, void *ctx, bool checksum,
                           VtError *err)
{
    OutStream out = {.file = file, .checksum = checksum};
    write(&out, ctx);
    int error = out.error;
    if (!error && fflush(file) != 0)
        error = errno;
    if (!error && fsync(fileno(file)) != 0)
        error = errno;
    if (fclose(file) != 0 && !error)
        error = errno;
    return error ? write_failed(err, path, error) : VT_OK;
}

/* Makes the rename durable. Some file systems cannot sync a folder
 * (EINVAL): nothing more can be done there, and it is not an error. */
static VtCode sync_folder(const char *path, VtError *err)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof dir, ".");
    else
        snprintf(dir, sizeof dir, "%.*s", slash == path ? 1 : (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return vt_fail(err, VT_ERR_IO, "cannot sync folder %s after writing %s: %s", dir, path,
                       strerror(errno));
    int error = fsync(fd) != 0 && errno != EINVAL ? errno : 0;
    close(fd);
    if (error)
        return vt_fail(err, VT_ERR_IO, "cannot sync folder %s after writing %s: %s", dir, path,
                       strerror(error));
    return VT_OK;
}

VtCode atomic_write_file(const char *path, WriteFn write, void *ctx, bool checksum,
                         VtError *err)
{
    /* The rename below would put a file in place of a device, a FIFO or a
     * socket (as root, of /dev/null too): those are refused. */
    struct stat st;
    if (stat(path, &st) == 0 && !S_ISREG(st.st_mode))
        return vt_fail(err, VT_ERR_IO,
                       "cannot write %s: it is %s, not a regular file, and is left as it is",
                       path, S_ISDIR(st.st_mode) ? "a folder" : "a device, FIFO or socket");
    char tmp[4096 + 32];
    int len = snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    if (len < 0 || (size_t)len >= sizeof tmp)
        return vt_fail(err, VT_ERR_ARGUMENT, "cannot write %s: path too long", path);
    FILE *file = fopen(tmp, "wb");
    if (!file)
        return write_failed(err, path, errno);
    VtCode code = atomic_write_stream(file, path, write, ctx, checksum, err);
    if (!code && rename(tmp, path) != 0)
        code = write_failed(err, path, errno);
    if (code) {
        remove(tmp);
        return code;
    }
    return sync_folder(path, err);
}

/* ---- messages ---------------------------------------------------------- */

void format_shape(char *buf, size_t size, const int64_t *shape, int ndim)
{
    int len = snprintf(buf, size, "(");
    for (int d = 0; d < ndim && len > 0 && (size_t)len < size; d++)
        len += snprintf(buf + len, size - (size_t)len, "%s%lld", d ? ", " : "",
                        (long long)shape[d]);
    if (len > 0 && (size_t)len < size)
        snprintf(buf + len, size - (size_t)len, ")");
}
