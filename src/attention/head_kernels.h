/*
 * head_kernels.h - the small matrix products of one attention head, for
 * CPUs with AVX-512 or AVX2 (with FMA); the dense block rotations
 * (src/pe/block_rotary.c) run theirs on them too.
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
#include <stdint.h>

/* The sides of a product the kernels take, and the floats in the stack
 * tile of a transposed right-hand factor. Outside these bounds OpenBLAS was
 * as fast or faster (attention at N = 17 tokens: 10-14 % slower on the
 * kernels, their vectors of 16 half empty; N = 50 to 256: 4-15 % faster). */
#define HEAD_KERNEL_MIN_SIDE 32
#define HEAD_KERNEL_MAX_SIDE 256
#define HEAD_TILE_FLOATS 16384

/* The block of C the kernels keep in registers: 5 rows (they divide the
 * token counts of 28 and 32 px images at patch 4, N = 50 and 65) by 4
 * vectors of 16 floats on AVX-512, by 2 of 8 on AVX2 (16 registers, not
 * 32). */
#define HEAD_BLOCK_ROWS 5
#ifdef __AVX512F__
#define HEAD_BLOCK_COLS 64
#else
#define HEAD_BLOCK_COLS 16
#endif

/*
 * Memory for the kernels to fetch while they compute, a line every step
 * along k: the operands of the next head, so that they arrive while this
 * head's products run. q, k and v lie in rows 3D apart, 256 bytes each, a
 * pattern the hardware prefetchers do not follow: without this the
 * attention of a batch from memory ran at about half its rate with the
 * same operands in the L2 cache (make bench-attention). The queue holds
 * chunks of four lines, which a kernel takes one per four steps.
 */
#define HEAD_LINE_BYTES 64
#define HEAD_CHUNK_BYTES 256
typedef struct FetchQueue {
    const char **chunk; /* capacity entries, the caller's */
    int next, count, capacity;
} FetchQueue;

/* Empties q (its storage kept). */
void fetch_queue_clear(FetchQueue *q);
/* Appends the chunks that cover `rows` rows of `cols` floats, `ld` floats
 * apart (as many as fit; the rest are not fetched ahead). */
void fetch_queue_rows(FetchQueue *q, const float *at, int64_t ld, int rows, int cols);

/*
 * C (M, N) = alpha op(A) op(B), row-major, as blas_sgemm with beta = 0
 * (A and B not both transposed): on the kernels below where
 * head_kernels_take says so, else on OpenBLAS.
 */
void head_sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                int lda, const float *B, int ldb, float *C, int ldc, FetchQueue *ahead);

/* Whether head_sgemm runs this product on the kernels: built with
 * AVX-512F or AVX2 and FMA, every side within [HEAD_KERNEL_MIN_SIDE, HEAD_KERNEL_MAX_SIDE],
 * a transposed B within the tile. */
bool head_kernels_take(int M, int N, int K, bool trans_b);

/* Whether head_sgemm may write C over A (C == A, ldc == lda, A not
 * transposed): where the kernels take the product and C's N columns fit
 * one block (HEAD_BLOCK_COLS), every block of rows is stored after its
 * last read of those rows, and no other block reads them. */
bool head_sgemm_in_place(int M, int N, int K, bool trans_b);

/*
 * C (M, Nc) = alpha A B, with C and B row-major (row strides ldc, ldb) and
 * element (i, k) of A at a[i * a_row + k * a_col]: a row-major matrix with
 * row stride lda is a_row = lda, a_col = 1; its transpose a_row = 1,
 * a_col = lda. Fetches lines of `ahead` (NULL: none) as it goes.
 */
void head_gemm(float *c, int ldc, const float *a, int a_row, int a_col, const float *b, int ldb,
               int M, int Nc, int K, float alpha, FetchQueue *ahead);

/* C (M, Nc) = alpha A B^T with B (Nc, K) row-major, through a transpose of
 * B into a tile of K x (Nc rounded up to 16) <= HEAD_TILE_FLOATS floats. */
void head_gemm_nt(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int M,
                  int Nc, int K, float alpha, FetchQueue *ahead);

/* p (N, N) = softmax(scale q k^T) row by row, q and k (N, K) row-major.
 * Where the kernels take the product, each block of five rows is finished
 * right after its products, while it is in L1; otherwise head_sgemm, then
 * a softmax pass. */
void head_scores_softmax(float *p, const float *q, int ldq, const float *k, int ldk, int N, int K,
                         float scale, FetchQueue *ahead);

/* The softmax backward of the same scores, from dO and v (N, K) and the
 * probabilities p: ds (N, N) = scale P * (dP - rowsum(dP * P)) with
 * dP = dO v^T, formed the same way. */
void head_scores_softmax_backward(float *ds, const float *dout, int ld_dout, const float *v,
                                  int ldv, const float *p, int N, int K, float scale,
                                  FetchQueue *ahead);

/* to (cols, rows) = from (rows, cols)^T, row strides ld_to and ld_from. */
void head_transpose(float *to, int ld_to, const float *from, int ld_from, int rows, int cols);

#endif
