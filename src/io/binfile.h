/*
 * binfile.h - private helpers of the io module for binary files: atomic
 * replacement of a file, little-endian encoding of integers and floats (and
 * CRC-32 from core). Shared by checkpoint.c and safetensors.c; not a public interface.
 *
 * Atomic replacement: the content is written to `<path>.tmp.<pid>` in the
 * target's folder; every write, the flush, fsync and close are checked; the
 * temporary file is renamed over the target and the folder fsync'ed. On any
 * failure the temporary file is removed, the old target is left as it was,
 * and the error reads "cannot write <path>: <strerror>".
 */
#ifndef VITRAIN_IO_BINFILE_H
#define VITRAIN_IO_BINFILE_H

#include "vitrain/common.h"
#include "vitrain/crc32.h"

#include <stdbool.h>
#include <stdio.h>

/* Little-endian integers in memory. */
void le_put_u32(unsigned char *p, uint32_t x);
void le_put_u64(unsigned char *p, uint64_t x);
uint32_t le_get_u32(const unsigned char *p);
uint64_t le_get_u64(const unsigned char *p);

/* An output stream that remembers its first failure, so that a writer can
 * emit everything and check once; after a failure it writes nothing. */
typedef struct OutStream {
    FILE *file;
    bool checksum;     /* keep crc up to date (costs a pass over the bytes) */
    uint32_t crc;      /* CRC-32 of every byte written, when checksum */
    int error;         /* errno of the first failed write, 0 if none */
} OutStream;

void out_bytes(OutStream *out, const void *data, size_t bytes);
void out_u32(OutStream *out, uint32_t x);
void out_u64(OutStream *out, uint64_t x);
/* n floats, each as its IEEE-754 bits in little-endian order. */
void out_floats(OutStream *out, const float *x, size_t n);

/* Reads n little-endian floats from file into x; false on a short read. */
bool in_floats(FILE *file, float *x, size_t n);

/* Fills out with the content of a file. */
typedef void (*WriteFn)(OutStream *out, void *ctx);

/* Runs write on the open stream file, then flushes, fsyncs and closes it
 * (always closed). A failure returns VT_ERR_IO "cannot write <path>: ...".
 * Split from atomic_write_file so that a test can point it at /dev/full. */
VtCode atomic_write_stream(FILE *file, const char *path, WriteFn write, void *ctx, bool checksum,
                           VtError *err);

/* Replaces path atomically with the bytes write emits (see the top). */
VtCode atomic_write_file(const char *path, WriteFn write, void *ctx, bool checksum,
                         VtError *err);

/* Writes a shape as "(48, 16)" into buf, for error messages. */
void format_shape(char *buf, size_t size, const int64_t *shape, int ndim);

#endif
