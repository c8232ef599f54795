/*
 * parallel.h - thread setup and the thin wrappers over cblas_sgemm/dgemm.
 *
 * vitrain links Debian's OpenMP build of OpenBLAS, so our OpenMP regions and
 * OpenBLAS share one thread pool (DESIGN §1). Big GEMMs are called outside
 * parallel regions and use every thread; small per-head GEMMs are called
 * inside our regions, where OpenBLAS runs them on the calling thread.
 */
#ifndef VITRAIN_PARALLEL_H
#define VITRAIN_PARALLEL_H

#include <stdbool.h>
#include <stdint.h>

/* Sets the thread count for OpenMP and OpenBLAS; n <= 0 keeps the default
 * (OMP_NUM_THREADS, else the number of cores). Returns the count in use. */
int threads_setup(int n);
int threads_count(void);
/* Processors this process may run on (its CPU affinity). */
int threads_cores(void);
/* The most threads a parallel region may be given during the run, for
 * per-thread scratch planned at start-up: the thread count may be set
 * after a model is built (the CLI does), so the larger of the current
 * count and the cores. */
int threads_planned(void);

/* A split of n items (rows, images) into `chunks` contiguous runs fixed by n
 * and chunks alone, for sums whose parts must not depend on the thread
 * count: each run is summed by one thread into a part of its own, and the
 * parts are added in run order. fixed_chunks(n) = min(n, 16) runs keep 2 to
 * 16 threads busy and leave few parts to add; run c is [first, end). */
enum { FIXED_CHUNKS = 16 };
int fixed_chunks(int64_t n);
void fixed_chunk(int64_t n, int chunks, int c, int64_t *first, int64_t *end);

/* Row-major C = alpha * op(A) op(B) + beta * C with op(A) (M,K), op(B) (K,N),
 * C (M,N); trans_a / trans_b select op(X) = X^T. Leading dimensions are the
 * row strides of the matrices as stored. */
void blas_sgemm(bool trans_a, bool trans_b, int M, int N, int K,
                float alpha, const float *A, int lda, const float *B, int ldb,
                float beta, float *C, int ldc);
/* The same in double, for the matrix exponentials of the encodings. */
void blas_dgemm(bool trans_a, bool trans_b, int M, int N, int K,
                double alpha, const double *A, int lda, const double *B, int ldb,
                double beta, double *C, int ldc);
/* Row-major B <- T^-1 B for the n x n triangle T of A (upper or lower; its
 * diagonal taken as ones when unit_diagonal) and B (n, nrhs). */
void blas_dtrsm(bool upper, bool unit_diagonal, int n, int nrhs, const double *A, int lda,
                double *B, int ldb);
void blas_strsm(bool upper, bool unit_diagonal, int n, int nrhs, const float *A, int lda,
                float *B, int ldb);

#endif
