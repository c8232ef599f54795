/*
 * gelu_linear.c - an MLP's second layer with the GELU before it,
 * y = [residual +] gelu(x) W^T + b, by chunks of GELU_LINEAR_ROWS rows.
 *
 * GELU's output is the second matrix's input and, in the backward, its
 * weight gradient's; made whole it needs a (T, F) buffer as large as the
 * saved pre-activation x (51 MB on ViT-S at batch 128). Here it exists for
 * one chunk of rows at a time, in the caller's scratch: the forward makes
 * it and multiplies it, the backward makes it again with GELU's slope,
 * adds the chunk's share of dW, and turns dL/d(GELU output) into dL/dx
 * over x, which nothing reads afterwards.
 */
#include "vitrain/ops.h"

#include "vitrain/common.h"

#include "reduce.h"

#include <stdint.h>

static int chunk_rows(int T, int first)
{
    return VT_MIN(GELU_LINEAR_ROWS, T - first);
}

void gelu_linear_forward(float *y, const float *residual, const float *x, const float *w,
                         const float *b, int T, int I, int O, float *scratch)
{
    for (int first = 0; first < T; first += GELU_LINEAR_ROWS) {
        const int rows = chunk_rows(T, first);
        gelu_forward(scratch, x + (int64_t)first * I, (int64_t)rows * I);
        const float *rc = residual ? residual + (int64_t)first * O : NULL;
        linear_residual_forward(y + (int64_t)first * O, rc, scratch, w, b, rows, I, O);
    }
}

void gelu_linear_backward(float *x, float *dw, float *db, const float *dy, const float *w, int T,
                          int I, int O, float *scratch)
{
    for (int first = 0; first < T; first += GELU_LINEAR_ROWS) {
        const int rows = chunk_rows(T, first);
        const int64_t n = (int64_t)rows * I;
        float *xc = x + (int64_t)first * I;
        /* scratch = gelu(x), and the slope replaces x; then dW += dy^T
         * gelu(x) and scratch = dL/d(GELU output), dL/dx = that * slope. */
        gelu_forward_slope(scratch, xc, xc, n);
        linear_backward(scratch, dw, NULL, dy + (int64_t)first * O, scratch, w, rows, I, O);
        gelu_slope_backward(xc, scratch, xc, n);
    }
    if (db)
        rows_sum_add(db, dy, T, O);
}
