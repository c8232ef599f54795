/*
 * error.c - the VtError helpers, the always-on assertion, and the
 * allocation helpers with the memory check they rely on.
 */
#include "vitrain/common.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

VtCode vt_fail(VtError *err, VtCode code, const char *fmt, ...)
{
    if (err) {
        err->code = code;
        va_list args;
        va_start(args, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, args);
        va_end(args);
    }
    return code;
}

void vt_error_clear(VtError *err)
{
    err->code = VT_OK;
    err->message[0] = '\0';
}

const char *vt_code_name(VtCode code)
{
    switch (code) {
    case VT_OK: return "ok";
    case VT_ERR_ARGUMENT: return "invalid argument";
    case VT_ERR_IO: return "I/O error";
    case VT_ERR_DATA: return "bad data";
    case VT_ERR_NOMEM: return "out of memory";
    case VT_ERR_NUMERIC: return "numerical fault";
    case VT_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown error";
}

_Noreturn void vt_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "vitrain: internal error at %s:%d: assertion '%s' failed\n", file, line, expr);
    abort();
}

/* MemAvailable of /proc/meminfo, else free physical pages; 0 if unknown. */
static uint64_t system_available(void)
{
    FILE *f = fopen("/proc/meminfo", "r");
    if (f) {
        char line[256];
        unsigned long long kib;
        while (fgets(line, sizeof line, f))
            if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) {
                fclose(f);
                return (uint64_t)kib * 1024;
            }
        fclose(f);
    }
    long pages = sysconf(_SC_AVPHYS_PAGES), size = sysconf(_SC_PAGESIZE);
    return pages > 0 && size > 0 ? (uint64_t)pages * (uint64_t)size : 0;
}

/* The first unsigned number in a file (a cgroup's memory.max reads "max"
 * when unlimited); false if there is none. */
static bool read_number(const char *path, uint64_t *value)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    unsigned long long v;
    const bool ok = fscanf(f, "%llu", &v) == 1;
    fclose(f);
    if (ok)
        *value = v;
    return ok;
}

/* The value of `key` in a cgroup stat file ("key value" lines), 0 if absent. */
static uint64_t cgroup_stat(const char *path, const char *key)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    char name[64];
    unsigned long long v, found = 0;
    while (fscanf(f, "%63s %llu", name, &v) == 2)
        if (strcmp(name, key) == 0) {
            found = v;
            break;
        }
    fclose(f);
    return found;
}

/* a, or b where it is known (nonzero) and smaller. */
static uint64_t smaller_known(uint64_t a, uint64_t b)
{
    return b && (!a || b < a) ? b : a;
}

uint64_t vt_memory_available(void)
{
    uint64_t available = system_available();
    /* An address-space limit (ulimit -v) binds before the machine does. */
    struct rlimit as;
    uint64_t mapped_pages;
    if (getrlimit(RLIMIT_AS, &as) == 0 && as.rlim_cur != RLIM_INFINITY &&
        read_number("/proc/self/statm", &mapped_pages)) {
        const uint64_t mapped = mapped_pages * (uint64_t)sysconf(_SC_PAGESIZE);
        available = smaller_known(available, as.rlim_cur > mapped ? as.rlim_cur - mapped : 1);
    }
    /* So does the memory limit of the cgroup (v2) the process runs in. Its
     * usage counts the page cache too, whose inactive part the kernel
     * gives back under pressure (as docker stats leaves it out). */
    uint64_t limit, used;
    if (read_number("/sys/fs/cgroup/memory.max", &limit) &&
        read_number("/sys/fs/cgroup/memory.current", &used)) {
        const uint64_t cache = cgroup_stat("/sys/fs/cgroup/memory.stat", "inactive_file");
        used = used > cache ? used - cache : 0;
        available = smaller_known(available, limit > used ? limit - used : 1);
    }
    return available;
}

void *vt_xmalloc(size_t bytes)
{
    void *p = malloc(bytes ? bytes : 1);
    if (!p) {
        fprintf(stderr, "vitrain: out of memory allocating %zu bytes\n", bytes);
        abort();
    }
    return p;
}

void *vt_xcalloc(size_t count, size_t size)
{
    void *p = calloc(count ? count : 1, size ? size : 1);
    if (!p) {
        fprintf(stderr, "vitrain: out of memory allocating %zu x %zu bytes\n", count, size);
        abort();
    }
    return p;
}
