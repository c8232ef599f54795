/*
 * median.h - the median of a benchmark's repeated measurements, which the
 * benchmarks report instead of the mean (one slow round, the machine busy
 * elsewhere, moves a mean but not a median).
 */
#ifndef VITRAIN_BENCH_MEDIAN_H
#define VITRAIN_BENCH_MEDIAN_H

#include <stdlib.h>

static int median_compare(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts x (n values) and returns its middle one. */
static inline double median(double *x, int n)
{
    qsort(x, (size_t)n, sizeof *x, median_compare);
    return x[n / 2];
}

#endif
