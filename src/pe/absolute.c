/*
 * absolute.c - the learned absolute encoding at another resolution: bicubic
 * resampling of pos_embed on its 2D grid (see pe.h, DESIGN §4.1).
 */
#include "vitrain/pe.h"

#include "vitrain/common.h"

#include <math.h>
#include <stdlib.h>

/* PyTorch's antialiased bicubic filter (a = -0.5, as PIL). */
static double cubic_aa(double x)
{
    const double a = -0.5;
    x = fabs(x);
    if (x < 1.0)
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
    if (x < 2.0)
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a;
    return 0.0;
}

/* Weights of one output index: inputs [*first, *first + *count) with
 * weights w[0..count), as PyTorch's _compute_indices_weights_aa. */
static void aa_weights(int out_index, int in_size, int out_size, int *first, int *count,
                       double *w)
{
    const double scale = (double)in_size / out_size;
    const double support = scale >= 1.0 ? 2.0 * scale : 2.0;
    const double invscale = scale >= 1.0 ? 1.0 / scale : 1.0;
    const double center = scale * (out_index + 0.5);
    int lo = (int)(center - support + 0.5); /* truncation, as the C++ cast */
    lo = lo < 0 ? 0 : lo;
    int hi = (int)(center + support + 0.5);
    hi = hi > in_size ? in_size : hi;
    double total = 0.0;
    for (int j = 0; j < hi - lo; j++) {
        w[j] = cubic_aa((j + lo - center + 0.5) * invscale);
        total += w[j];
    }
    for (int j = 0; j < hi - lo; j++)
        w[j] = total != 0.0 ? w[j] / total : 0.0;
    *first = lo;
    *count = hi - lo;
}

/* dst (out_n, stride) = resample of src (in_n, stride) along one axis whose
 * consecutive entries are `step` floats apart, for `lines` lines starting
 * `line_step` apart. */
static void resample_axis(double *dst, const double *src, int in_n, int out_n, int lines,
                          int64_t step, int64_t line_step_in, int64_t line_step_out, int D)
{
    const int max_taps = 4 * (in_n / (out_n > 0 ? out_n : 1) + 2) + 4;
    double *w = vt_xmalloc((size_t)max_taps * sizeof(double));
    for (int o = 0; o < out_n; o++) {
        int first, count;
        aa_weights(o, in_n, out_n, &first, &count, w);
        VT_ASSERT(count <= max_taps);
        for (int l = 0; l < lines; l++)
            for (int d = 0; d < D; d++) {
                double acc = 0.0;
                for (int j = 0; j < count; j++)
                    acc += w[j] * src[l * line_step_in + (int64_t)(first + j) * step + d];
                dst[l * line_step_out + (int64_t)o * step + d] = acc;
            }
    }
    free(w);
}

void pos_embed_resample(float *dst, int gh, int gw, const float *src, int gh0, int gw0, int D)
{
    const int64_t n0 = (int64_t)gh0 * gw0 * D;
    double *in = vt_xmalloc((size_t)n0 * sizeof(double));
    double *mid = vt_xmalloc((size_t)gh0 * gw * D * sizeof(double));
    double *out = vt_xmalloc((size_t)gh * gw * D * sizeof(double));
    for (int64_t i = 0; i < n0; i++)
        in[i] = src[i];
    /* Columns first: each of the gh0 rows from gw0 to gw entries; then rows. */
    resample_axis(mid, in, gw0, gw, gh0, D, (int64_t)gw0 * D, (int64_t)gw * D, D);
    resample_axis(out, mid, gh0, gh, gw, (int64_t)gw * D, D, D, D);
    for (int64_t i = 0; i < (int64_t)gh * gw * D; i++)
        dst[i] = (float)out[i];
    free(in);
    free(mid);
    free(out);
}
