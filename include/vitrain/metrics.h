/*
 * metrics.h - CSV metric logs and the progress display.
 *
 * A CsvLog appends rows to a CSV file with a fixed header, flushing and
 * checking every row, so a crash loses at most the row being written and a
 * full disk is reported at once. On resume the rows from after the
 * checkpoint are cut first, so a log never holds a step twice.
 */
#ifndef VITRAIN_METRICS_H
#define VITRAIN_METRICS_H

#include "vitrain/common.h"

#include <stdbool.h>
#include <stdio.h>

typedef struct CsvLog {
    FILE *file;
    char path[4096];
    int columns;
} CsvLog;

/* Opens path for appending; writes the header when the file is new or
 * empty, and checks it when the file exists. */
VtCode csv_open(CsvLog *log, const char *path, const char *const *columns, int count,
                VtError *err);
/* Appends one row of `count` numbers, printed with %.9g (integers exactly). */
VtCode csv_row(CsvLog *log, const double *values, int count, VtError *err);
VtCode csv_close(CsvLog *log, VtError *err);

/* Keeps the header and the rows whose first column is <= last_kept;
 * a missing file is fine. */
VtCode csv_truncate_after(const char *path, double last_kept, VtError *err);

/* The training progress: an in-place line on a terminal, a plain line every
 * `every` steps otherwise. */
typedef struct Progress {
    bool tty;
    int every;
    double start_time;
    int64_t start_step;
    int last_len;
} Progress;

void progress_init(Progress *p, FILE *out, int every, int64_t start_step);
void progress_step(Progress *p, FILE *out, int64_t epoch, int64_t step, int64_t total_steps,
                   double loss, double lr, double img_per_sec);
/* Ends an in-place line so that the next output starts on a new line. */
void progress_break(Progress *p, FILE *out);

/* Seconds on a monotonic clock. */
double now_seconds(void);

#endif
