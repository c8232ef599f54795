/*
 * head_kernels.h - the small matrix products of one attention head, for
 * CPUs with AVX-512.
 *
 * Per (image, head) attention multiplies matrices of N x Dh and N x N with
 * N of some 50 to a few hundred tokens and Dh = 64: too small for
 * OpenBLAS's packing to pay for itself (its q k^T products ran at half the
 * rate of its other products of the same size). These kernels work on the operands
 * where they lie, with every row of the right-hand factor a run of
 * consecutive floats; a product with a transposed right-hand factor first
 * transposes it into a tile on the stack.
 */
#ifndef VITRAIN_HEAD_KERNELS_H
#define VITRAIN_HEAD_KERNELS_H

#include <stdbool.h>

/* The sides of a product the kernels take, and the floats in the stack
 * tile of a transposed right-hand factor. Outside these bounds OpenBLAS was
 * as fast or faster (attention at N = 17 tokens: 10-14 % slower on the
 * kernels, their vectors of 16 half empty; N = 50 to 256: 4-15 % faster). */
#define HEAD_KERNEL_MIN_SIDE 32
#define HEAD_KERNEL_MAX_SIDE 256
#define HEAD_TILE_FLOATS 16384

/*
 * C (M, N) = alpha op(A) op(B), row-major, as blas_sgemm with beta = 0
 * (A and B not both transposed): on the kernels below where
 * head_kernels_take says so, else on OpenBLAS.
 */
void head_sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                int lda, const float *B, int ldb, float *C, int ldc);

/* Whether head_sgemm runs this product on the kernels: built with
 * AVX-512F, every side within [HEAD_KERNEL_MIN_SIDE, HEAD_KERNEL_MAX_SIDE],
 * a transposed B within the tile. */
bool head_kernels_take(int M, int N, int K, bool trans_b);

/*
 * C (M, Nc) = alpha A B, with C and B row-major (row strides ldc, ldb) and
 * element (i, k) of A at a[i * a_row + k * a_col]: a row-major matrix with
 * row stride lda is a_row = lda, a_col = 1; its transpose a_row = 1,
 * a_col = lda.
 */
void head_gemm(float *c, int ldc, const float *a, int a_row, int a_col, const float *b, int ldb,
               int M, int Nc, int K, float alpha);

/* C (M, Nc) = alpha A B^T with B (Nc, K) row-major, through a transpose of
 * B into a tile of K x (Nc rounded up to 16) <= HEAD_TILE_FLOATS floats. */
void head_gemm_nt(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int M,
                  int Nc, int K, float alpha);

/* to (cols, rows) = from (rows, cols)^T, row strides ld_to and ld_from. */
void head_transpose(float *to, int ld_to, const float *from, int ld_from, int rows, int cols);

#endif
