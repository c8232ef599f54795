/*
 * gradcheck.h - the shared finite-difference gradient checker.
 *
 * A problem is a function out = f(tensors...) given as a forward callback
 * and its analytic backward. The checker reduces the output to a scalar
 * with a random projection, L = sum_i r_i out_i (r ~ N(0,1), summed in
 * double), so one backward pass with dout = r gives dL/d(every tensor).
 * Each tensor element (all of them, or a random sample of max_samples for
 * big tensors) is then compared with the central difference
 *   (L(x + h) - L(x - h)) / 2h,   h = eps * max(1, |x|).
 *
 * The error of a tensor is max_i |analytic_i - numeric_i| / scale, where
 * scale is the largest |numeric_i| of the tensor (at least floor): an error
 * relative to the size of that tensor's gradient, so that elements whose
 * true gradient is near zero neither hide nor fake a mismatch.
 */
#ifndef VITRAIN_TESTS_GRADCHECK_H
#define VITRAIN_TESTS_GRADCHECK_H

#include <stddef.h>
#include <stdint.h>

enum { GC_MAX_TENSORS = 256 };

typedef struct GcTensor {
    const char *name;
    float *value;  /* perturbed in place, restored afterwards */
    float *grad;   /* where backward adds dL/dvalue; zeroed by the checker */
    size_t n;
} GcTensor;

typedef struct GcProblem {
    void *ctx;
    void (*forward)(void *ctx);   /* recomputes out from the tensors */
    void (*backward)(void *ctx);  /* adds gradients given dout */
    float *out;
    float *dout;                  /* filled by the checker with r */
    size_t out_n;
    GcTensor tensors[GC_MAX_TENSORS];
    int n_tensors;
} GcProblem;

typedef struct GcOptions {
    double eps;       /* relative step, default 1e-2 */
    int max_samples;  /* elements checked per tensor, default 64 */
    double floor;     /* smallest gradient scale, default 1e-6 */
    uint64_t seed;
} GcOptions;

typedef struct GcResult {
    double max_error;           /* over all tensors */
    int worst;                  /* index of the tensor with max_error */
    double errors[GC_MAX_TENSORS];
    double scales[GC_MAX_TENSORS];
} GcResult;

/* Adds a tensor to a problem; returns p for chaining. */
GcProblem *gc_add(GcProblem *p, const char *name, float *value, float *grad, size_t n);

/* Runs the check; returns result->max_error. opts may be NULL for defaults. */
double gradcheck_run(GcProblem *p, const GcOptions *opts, GcResult *result);

/* Whether the backward writes the gradients of the first `written`
 * tensors (an op's inputs) without reading them, as ops.h promises, and
 * adds into the rest: runs it once into zeroed gradients and once with
 * those `written` gradients full of NaN and every other gradient 1.
 * Returns the largest difference from the expected second result (the
 * first, plus 1 where it adds): about 0 when the promise holds, NaN when
 * a written gradient was read, about 1 when an added one was overwritten. */
double gradcheck_overwrite(GcProblem *p, int written);

/* Prints one line per tensor: name, error, gradient scale. */
void gradcheck_print(const char *title, const GcProblem *p, const GcResult *result);

/* Fills x with N(0, std^2) from a test stream. */
void gc_fill_normal(float *x, size_t n, double std, uint64_t seed);

/* Test buffers: N(0, std^2) or zero-filled, all released by gc_free_all
 * (registered as a checked teardown, so leak checkers see a clean exit). */
float *gc_randn(size_t n, double std, uint64_t seed);
float *gc_zeros(size_t n);
void gc_free_all(void);

#endif
