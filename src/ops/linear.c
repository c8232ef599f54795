/*
 * linear.c - fully connected layer, y = x W^T + b, as one GEMM each way.
 * W is (out, in) row-major, like torch.nn.Linear and timm's checkpoints.
 */
#include "vitrain/ops.h"
#include "vitrain/profile.h"
#include "vitrain/parallel.h"

#include "reduce.h"

#include <omp.h>
#include <stddef.h>
#include <stdint.h>

/* The calling thread's share of T rows: a contiguous block, the same
 * for a given thread count. */
static void thread_rows(int T, int *first, int *count)
{
    const int threads = omp_get_num_threads(), t = omp_get_thread_num();
    *first = (int)((int64_t)T * t / threads);
    *count = (int)((int64_t)T * (t + 1) / threads) - *first;
}

/* y = [residual +] b, then the GEMM adds x W^T onto it. Each thread fills
 * and multiplies a block of rows with its own single-threaded GEMM
 * (OpenBLAS does not thread inside our region): on ViT-Tiny at 2 threads
 * the GEMM phase ran 1-1.5 % faster than on OpenBLAS's own split (ViT-S:
 * the same within noise). */
static void linear(float *y, const float *residual, const float *x, const float *w,
                   const float *b, int T, int I, int O)
{
    prof_push(PROF_GEMM);
#pragma omp parallel
    {
        int t0, rows;
        thread_rows(T, &t0, &rows);
        float *yt = y + (int64_t)t0 * O;
        const float *rt = residual ? residual + (int64_t)t0 * O : NULL;
        if (b || residual)
            for (int t = 0; t < rows; t++)
                for (int o = 0; o < O; o++) {
                    const int64_t at = (int64_t)t * O + o;
                    yt[at] = (rt ? rt[at] : 0.0f) + (b ? b[o] : 0.0f);
                }
        /* y (rows, O) = x (rows, I) * W^T (I, O) [+ y] */
        if (rows > 0)
            blas_sgemm(false, true, rows, O, I, 1.0f, x + (int64_t)t0 * I, I, w, I,
                       b || residual ? 1.0f : 0.0f, yt, O);
    }
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
    if (dx) {
#pragma omp parallel
        {
            int t0, rows;
            thread_rows(T, &t0, &rows);
            if (rows > 0)
                blas_sgemm(false, false, rows, I, O, 1.0f, dy + (int64_t)t0 * O, O, w, I, 0.0f,
                           dx + (int64_t)t0 * I, I);
        }
    }
    prof_pop();
}
