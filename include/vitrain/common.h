/*
 * common.h - definitions every vitrain module shares: the shape glossary,
 * the error type, and the always-on assertion for internal invariants.
 *
 * Shape letters used in every "/ * (..) * /" comment of the code base:
 *   B   batch size                 N   tokens per image (patches, + 1 with CLS)
 *   Np  patches per image          D   embedding width
 *   H   attention heads            Dh  head width, D / H
 *   F   MLP hidden width           C   image channels
 *   P   patch side in pixels       K   number of classes
 *   T   rows of a token matrix, B * N
 *
 * Errors: functions that can fail on input return a VtCode and fill a VtError
 * with a message naming the file, line, key or path at fault (DESIGN, STYLE).
 * Broken internal invariants are bugs, not input errors: VT_ASSERT aborts with
 * file:line whatever the build mode.
 */
#ifndef VITRAIN_COMMON_H
#define VITRAIN_COMMON_H

#include <stddef.h>
#include <stdint.h>

#define VT_VERSION "0.1.0"

typedef enum VtCode {
    VT_OK = 0,
    VT_ERR_ARGUMENT,  /* a bad value passed by the caller or a config */
    VT_ERR_IO,        /* a file could not be read or written */
    VT_ERR_DATA,      /* an input file has bad content */
    VT_ERR_NOMEM,     /* an allocation failed */
    VT_ERR_NUMERIC,   /* a non-finite loss or gradient */
    VT_ERR_INTERRUPTED /* stopped by SIGINT/SIGTERM after saving a checkpoint */
} VtCode;

enum { VT_ERROR_MESSAGE_MAX = 1024 };

typedef struct VtError {
    VtCode code;
    char message[VT_ERROR_MESSAGE_MAX];
} VtError;

/* Records code and a printf-style message in err (if non-NULL); returns code
 * so that callers can write `return vt_fail(err, VT_ERR_IO, "...", ...)`. */
VtCode vt_fail(VtError *err, VtCode code, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

/* Clears err to VT_OK with an empty message. */
void vt_error_clear(VtError *err);

/* Short name of a code, e.g. "I/O error". */
const char *vt_code_name(VtCode code);

/* Aborts with file:line and the failed expression. Never compiled out. */
_Noreturn void vt_assert_fail(const char *expr, const char *file, int line);

#define VT_ASSERT(expr) ((expr) ? (void)0 : vt_assert_fail(#expr, __FILE__, __LINE__))

/* malloc/calloc that abort on failure: for sizes planned at start-up, where
 * running out of memory leaves nothing sensible to do. */
void *vt_xmalloc(size_t bytes);
void *vt_xcalloc(size_t count, size_t size);

/* Bytes of memory available to this process now: MemAvailable of
 * /proc/meminfo (else free physical pages), or less where an address-space
 * limit (ulimit -v) or the cgroup's memory.max leaves less; 0 when
 * unknown. */
uint64_t vt_memory_available(void);

#define VT_MIN(a, b) ((a) < (b) ? (a) : (b))
#define VT_MAX(a, b) ((a) > (b) ? (a) : (b))

#endif
