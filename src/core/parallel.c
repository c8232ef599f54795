/*
 * parallel.c - OpenMP/OpenBLAS thread setup and the BLAS wrappers.
 */
#include "vitrain/parallel.h"

#include <cblas.h>
#include <omp.h>

int threads_setup(int n)
{
    if (n > 0) {
        omp_set_num_threads(n);
        openblas_set_num_threads(n);
    }
    /* Nested regions would multiply threads; one level is all we use. */
    omp_set_max_active_levels(1);
    return omp_get_max_threads();
}

int threads_count(void)
{
    return omp_get_max_threads();
}

int threads_cores(void)
{
    return omp_get_num_procs();
}

int threads_planned(void)
{
    const int now = omp_get_max_threads(), cores = omp_get_num_procs();
    return now > cores ? now : cores;
}

int fixed_chunks(int64_t n)
{
    return (int)(n < FIXED_CHUNKS ? n : FIXED_CHUNKS);
}

void fixed_chunk(int64_t n, int chunks, int c, int64_t *first, int64_t *end)
{
    *first = n * c / chunks;
    *end = n * (c + 1) / chunks;
}

/* The cblas enumerations of the wrappers' flags, shared by the float and
 * double versions (cblas has one function per type). */
static CBLAS_TRANSPOSE op(bool transpose)
{
    return transpose ? CblasTrans : CblasNoTrans;
}

static CBLAS_UPLO triangle(bool upper)
{
    return upper ? CblasUpper : CblasLower;
}

static CBLAS_DIAG diagonal(bool unit)
{
    return unit ? CblasUnit : CblasNonUnit;
}

void blas_sgemm(bool trans_a, bool trans_b, int M, int N, int K,
                float alpha, const float *A, int lda, const float *B, int ldb,
                float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, op(trans_a), op(trans_b), M, N, K, alpha, A, lda, B, ldb, beta,
                C, ldc);
}

void blas_dgemm(bool trans_a, bool trans_b, int M, int N, int K,
                double alpha, const double *A, int lda, const double *B, int ldb,
                double beta, double *C, int ldc)
{
    cblas_dgemm(CblasRowMajor, op(trans_a), op(trans_b), M, N, K, alpha, A, lda, B, ldb, beta,
                C, ldc);
}

void blas_dtrsm(bool upper, bool unit_diagonal, int n, int nrhs, const double *A, int lda,
                double *B, int ldb)
{
    cblas_dtrsm(CblasRowMajor, CblasLeft, triangle(upper), CblasNoTrans, diagonal(unit_diagonal),
                n, nrhs, 1.0, A, lda, B, ldb);
}

void blas_strsm(bool upper, bool unit_diagonal, int n, int nrhs, const float *A, int lda,
                float *B, int ldb)
{
    cblas_strsm(CblasRowMajor, CblasLeft, triangle(upper), CblasNoTrans, diagonal(unit_diagonal),
                n, nrhs, 1.0f, A, lda, B, ldb);
}
