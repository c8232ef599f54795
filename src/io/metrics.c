/*
 * metrics.c - CSV logs and the progress display (see metrics.h).
 */
#include "vitrain/metrics.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static VtCode io_error(VtError *err, const char *what, const char *path)
{
    return vt_fail(err, VT_ERR_IO, "cannot %s %s: %s", what, path, strerror(errno));
}

static void format_header(char *buf, size_t size, const char *const *columns, int count)
{
    buf[0] = '\0';
    for (int i = 0; i < count; i++) {
        strncat(buf, columns[i], size - strlen(buf) - 1);
        strncat(buf, i + 1 < count ? "," : "\n", size - strlen(buf) - 1);
    }
}

VtCode csv_open(CsvLog *log, const char *path, const char *const *columns, int count,
                VtError *err)
{
    char header[2048], existing[2048] = "";
    format_header(header, sizeof header, columns, count);
    snprintf(log->path, sizeof log->path, "%s", path);
    log->columns = count;
    FILE *f = fopen(path, "r");
    if (f) {
        bool got = fgets(existing, sizeof existing, f) != NULL;
        fclose(f);
        if (got && strcmp(existing, header) != 0)
            return vt_fail(err, VT_ERR_DATA, "%s has another header than this version writes",
                           path);
    }
    log->file = fopen(path, "a");
    if (!log->file)
        return io_error(err, "open", path);
    if (existing[0] == '\0' && (fputs(header, log->file) < 0 || fflush(log->file) != 0))
        return io_error(err, "write", path);
    return VT_OK;
}

VtCode csv_row(CsvLog *log, const double *values, int count, VtError *err)
{
    VT_ASSERT(count == log->columns);
    for (int i = 0; i < count; i++) {
        double v = values[i];
        int rc = (v == floor(v) && fabs(v) < 1e15) ? fprintf(log->file, "%.0f", v)
                                                   : fprintf(log->file, "%.9g", v);
        if (rc < 0 || fputc(i + 1 < count ? ',' : '\n', log->file) == EOF)
            return io_error(err, "write", log->path);
    }
    if (fflush(log->file) != 0)
        return io_error(err, "write", log->path);
    return VT_OK;
}

VtCode csv_close(CsvLog *log, VtError *err)
{
    if (!log->file)
        return VT_OK;
    int rc = fclose(log->file);
    log->file = NULL;
    return rc == 0 ? VT_OK : io_error(err, "close", log->path);
}

VtCode csv_truncate_after(const char *path, double last_kept, VtError *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? VT_OK : io_error(err, "read", path);
    /* Bytes to keep: the header and every leading row up to last_kept. */
    char line[8192];
    long keep = 0;
    bool header = true;
    while (fgets(line, sizeof line, f)) {
        if (!header && strtod(line, NULL) > last_kept)
            break;
        header = false;
        keep = ftell(f);
    }
    fclose(f);
    if (truncate(path, keep) != 0)
        return io_error(err, "truncate", path);
    return VT_OK;
}

double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void progress_init(Progress *p, FILE *out, int every, int64_t start_step)
{
    p->tty = isatty(fileno(out));
    p->every = every > 0 ? every : 50;
    p->start_time = now_seconds();
    p->start_step = start_step;
    p->last_len = 0;
}

static void format_duration(char *buf, size_t size, double seconds)
{
    long s = (long)(seconds + 0.5);
    if (s >= 3600)
        snprintf(buf, size, "%ldh%02ldm", s / 3600, s / 60 % 60);
    else
        snprintf(buf, size, "%ldm%02lds", s / 60, s % 60);
}

void progress_step(Progress *p, FILE *out, int64_t epoch, int64_t step, int64_t total_steps,
                   double loss, double lr, double img_per_sec)
{
    const int64_t done = step + 1;
    if (!p->tty && done % p->every != 0 && done != total_steps)
        return;
    double elapsed = now_seconds() - p->start_time;
    double rate = (double)(done - p->start_step) / (elapsed > 0 ? elapsed : 1e-9);
    char eta[32];
    format_duration(eta, sizeof eta, (double)(total_steps - done) / rate);
    char line[256];
    int len = snprintf(line, sizeof line,
                       "epoch %lld  step %lld/%lld  loss %.4f  lr %.2e  %.0f img/s  ETA %s",
                       (long long)epoch, (long long)done, (long long)total_steps, loss, lr,
                       img_per_sec, eta);
    if (p->tty) {
        /* Pad with spaces over a longer previous line. */
        fprintf(out, "\r%s%*s", line, p->last_len > len ? p->last_len - len : 0, "");
        p->last_len = len;
    } else {
        fprintf(out, "%s\n", line);
    }
    fflush(out);
}

void progress_break(Progress *p, FILE *out)
{
    if (p->tty && p->last_len > 0) {
        fputc('\n', out);
        p->last_len = 0;
    }
}
