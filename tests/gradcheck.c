/*
 * gradcheck.c - central-difference gradient checker (see gradcheck.h).
 */
#include "gradcheck.h"

#include "vitrain/common.h"
#include "vitrain/rng.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

GcProblem *gc_add(GcProblem *p, const char *name, float *value, float *grad, size_t n)
{
    VT_ASSERT(p->n_tensors < GC_MAX_TENSORS);
    p->tensors[p->n_tensors++] = (GcTensor){name, value, grad, n};
    return p;
}

void gc_fill_normal(float *x, size_t n, double std, uint64_t seed)
{
    Rng rng = rng_stream(seed, RNG_TEST, 0, 0);
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(std * rng_normal(&rng));
}

enum { MAX_BUFFERS = 256 };
static void *buffers[MAX_BUFFERS];
static int buffer_count;

static float *track(float *x)
{
    VT_ASSERT(buffer_count < MAX_BUFFERS);
    buffers[buffer_count++] = x;
    return x;
}

float *gc_randn(size_t n, double std, uint64_t seed)
{
    float *x = track(vt_xmalloc(n * sizeof(float)));
    gc_fill_normal(x, n, std, seed);
    return x;
}

float *gc_zeros(size_t n)
{
    return track(vt_xcalloc(n, sizeof(float)));
}

void gc_free_all(void)
{
    while (buffer_count > 0)
        free(buffers[--buffer_count]);
}

static double projected_output(const GcProblem *p)
{
    p->forward(p->ctx);
    double sum = 0.0;
    for (size_t i = 0; i < p->out_n; i++)
        sum += (double)p->dout[i] * p->out[i];
    return sum;
}

static double numeric_derivative(const GcProblem *p, float *x, double eps)
{
    const float saved = *x;
    /* Step relative to the value, and measured as actually stored in fp32. */
    const float h = (float)(eps * fmax(1.0, fabs(saved)));
    *x = saved + h;
    const double step_up = (double)*x - saved;
    double up = projected_output(p);
    *x = saved - h;
    const double step_down = saved - (double)*x;
    double down = projected_output(p);
    *x = saved;
    return (up - down) / (step_up + step_down);
}

static double check_tensor(const GcProblem *p, const GcTensor *t, const float *analytic,
                           const GcOptions *o, Rng *rng, double *scale_out)
{
    const size_t samples = t->n <= (size_t)o->max_samples ? t->n : (size_t)o->max_samples;
    double *numeric = vt_xmalloc(samples * sizeof(double));
    size_t *index = vt_xmalloc(samples * sizeof(size_t));
    double scale = o->floor;
    for (size_t s = 0; s < samples; s++) {
        index[s] = samples == t->n ? s : (size_t)(rng_uniform_double(rng) * (double)t->n);
        numeric[s] = numeric_derivative(p, &t->value[index[s]], o->eps);
        scale = fmax(scale, fabs(numeric[s]));
    }
    double worst = 0.0;
    for (size_t s = 0; s < samples; s++)
        worst = fmax(worst, fabs(analytic[index[s]] - numeric[s]) / scale);
    free(numeric);
    free(index);
    *scale_out = scale;
    return worst;
}

double gradcheck_run(GcProblem *p, const GcOptions *opts, GcResult *result)
{
    GcOptions o = {.eps = 1e-2, .max_samples = 64, .floor = 1e-6, .seed = 1};
    if (opts) {
        o = *opts;
        if (o.eps <= 0) o.eps = 1e-2;
        if (o.max_samples <= 0) o.max_samples = 64;
        if (o.floor <= 0) o.floor = 1e-6;
    }
    memset(result, 0, sizeof *result);
    Rng rng = rng_stream(o.seed, RNG_TEST, 1, 0);
    for (size_t i = 0; i < p->out_n; i++)
        p->dout[i] = (float)rng_normal(&rng);

    /* Analytic gradients: one forward, one backward into zeroed grads. */
    float **analytic = vt_xcalloc((size_t)p->n_tensors, sizeof *analytic);
    for (int t = 0; t < p->n_tensors; t++)
        memset(p->tensors[t].grad, 0, p->tensors[t].n * sizeof(float));
    p->forward(p->ctx);
    p->backward(p->ctx);
    for (int t = 0; t < p->n_tensors; t++) {
        analytic[t] = vt_xmalloc(p->tensors[t].n * sizeof(float));
        memcpy(analytic[t], p->tensors[t].grad, p->tensors[t].n * sizeof(float));
    }

    for (int t = 0; t < p->n_tensors; t++) {
        result->errors[t] = check_tensor(p, &p->tensors[t], analytic[t], &o, &rng,
                                         &result->scales[t]);
        if (t == 0 || result->errors[t] > result->max_error) {
            result->max_error = result->errors[t];
            result->worst = t;
        }
        free(analytic[t]);
    }
    free(analytic);
    /* Leave the outputs consistent with the unperturbed inputs. */
    p->forward(p->ctx);
    return result->max_error;
}

double gradcheck_overwrite(GcProblem *p, int written)
{
    Rng rng = rng_stream(2, RNG_TEST, 2, 0);
    for (size_t i = 0; i < p->out_n; i++)
        p->dout[i] = (float)rng_normal(&rng);
    p->forward(p->ctx);
    float **clean = vt_xcalloc((size_t)p->n_tensors, sizeof *clean);
    for (int t = 0; t < p->n_tensors; t++)
        memset(p->tensors[t].grad, 0, p->tensors[t].n * sizeof(float));
    p->backward(p->ctx);
    for (int t = 0; t < p->n_tensors; t++) {
        clean[t] = vt_xmalloc(p->tensors[t].n * sizeof(float));
        memcpy(clean[t], p->tensors[t].grad, p->tensors[t].n * sizeof(float));
        for (size_t i = 0; i < p->tensors[t].n; i++)
            p->tensors[t].grad[i] = t < written ? NAN : 1.0f;
    }
    p->backward(p->ctx);
    double worst = 0.0;
    for (int t = 0; t < p->n_tensors; t++) {
        const float offset = t < written ? 0.0f : 1.0f;
        for (size_t i = 0; i < p->tensors[t].n; i++) {
            double diff = fabs((double)p->tensors[t].grad[i] - (double)(clean[t][i] + offset));
            worst = diff > worst || isnan(diff) ? diff : worst; /* a NaN sticks */
        }
        free(clean[t]);
    }
    free(clean);
    return worst;
}

void gradcheck_print(const char *title, const GcProblem *p, const GcResult *result)
{
    printf("gradcheck %s: max error %.2e (%s)\n", title, result->max_error,
           p->tensors[result->worst].name);
    for (int t = 0; t < p->n_tensors; t++)
        printf("  %-36s error %.2e  scale %.2e\n", p->tensors[t].name, result->errors[t],
               result->scales[t]);
}
