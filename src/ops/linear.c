/*
 * linear.c - fully connected layer, y = x W^T + b, as one GEMM each way.
 * W is (out, in) row-major, like torch.nn.Linear and timm's checkpoints.
 */
#include "vitrain/ops.h"
#include "vitrain/profile.h"
#include "vitrain/parallel.h"

#include "reduce.h"

#include <stddef.h>

/* y = [residual +] b, then the GEMM adds x W^T onto it. */
static void linear(float *y, const float *residual, const float *x, const float *w,
                   const float *b, int T, int I, int O)
{
    prof_push(PROF_GEMM);
    if (b || residual) {
#pragma omp parallel for schedule(static)
        for (int t = 0; t < T; t++)
            for (int o = 0; o < O; o++) {
                const int64_t at = (int64_t)t * O + o;
                y[at] = (residual ? residual[at] : 0.0f) + (b ? b[o] : 0.0f);
            }
    }
    /* y (T,O) = x (T,I) * W^T (I,O) [+ y] */
    blas_sgemm(false, true, T, O, I, 1.0f, x, I, w, I, b || residual ? 1.0f : 0.0f, y, O);
    prof_pop();
}

void linear_forward(float *y, const float *x, const float *w, const float *b, int T, int I, int O)
{
    linear(y, NULL, x, w, b, T, I, O);
}

void linear_residual_forward(float *y, const float *residual, const float *x, const float *w,
                             const float *b, int T, int I, int O)
{
    linear(y, residual, x, w, b, T, I, O);
}

void linear_backward(float *dx, float *dw, float *db, const float *dy, const float *x,
                     const float *w, int T, int I, int O)
{
    /* y = x W^T + b, so dx = dy W, dW += dy^T x, db += sum_t dy. dW comes
     * first: x is not read after it, so dx may overwrite x. */
    prof_push(PROF_GEMM);
    blas_sgemm(true, false, O, I, T, 1.0f, dy, O, x, I, 1.0f, dw, I);
    if (db)
        rows_sum_add(db, dy, T, O);
    if (dx)
        blas_sgemm(false, false, T, I, O, 1.0f, dy, O, w, I, 0.0f, dx, I);
    prof_pop();
}
