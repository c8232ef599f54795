/*
 * head_kernels.c - the small matrix products of one attention head (see
 * head_kernels.h).
 *
 * head_gemm keeps a block of 5 rows x 64 columns of C in 20 vector
 * registers on AVX-512 (5 x 16 in 10 on AVX2); every step along k loads
 * one row of B (4 vectors, or 2) and broadcasts one element of A per row,
 * 20 fused multiply-adds for 9 loads (10 for 7). Five rows divide the
 * token counts of 28 and 32 px images at patch 4 (N = 50, 65); a last
 * block with fewer rows repeats the last row of A rather than branching in
 * the loop, and stores only the rows that exist. The score kernels run
 * every column panel of a block of rows, then its softmax (or softmax
 * backward), the five rows through each pass together. Both widths share
 * the code through the vector operations of vitrain/simd.h. Without
 * either the same functions are plain loops (correct, not fast, for the
 * tests) and head_sgemm sends every product to OpenBLAS.
 */
#include "head_kernels.h"

#include "vitrain/common.h"
#include "vitrain/parallel.h"
#include "vitrain/simd.h"
#include "vitrain/vecmath.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>

/* Row stride of the transposed tile of a B with Nc rows: whole vectors. */
static int tile_stride(int Nc)
{
    return (Nc + 15) / 16 * 16;
}

static bool tile_fits(int Nc, int K)
{
    return (int64_t)tile_stride(Nc) * K <= HEAD_TILE_FLOATS;
}

void fetch_queue_clear(FetchQueue *q)
{
    q->next = q->count = 0;
}

void fetch_queue_rows(FetchQueue *q, const float *at, int64_t ld, int rows, int cols)
{
    const int64_t bytes = (int64_t)cols * (int64_t)sizeof(float);
    int count = q->count;
    for (int i = 0; i < rows && count < q->capacity; i++) {
        const char *row = (const char *)(at + i * ld);
        /* From the line that holds the row's first float. */
        const char *first = row - ((uintptr_t)row % HEAD_LINE_BYTES);
        for (const char *c = first; c < row + bytes && count < q->capacity; c += HEAD_CHUNK_BYTES)
            q->chunk[count++] = c;
    }
    q->count = count;
}

#ifdef VT_SIMD
#define HEAD_KERNELS 1

/*
 * On AVX-512 a block is 5 rows of 4 vectors (20 of the 32 registers hold
 * accumulators); on AVX2 5 rows of 2 (10 of 16, leaving room for the row
 * of B and the broadcast).
 */
#ifdef __AVX512F__
#define VECTORS_PER_ROW 4

/* In registers: r[i] lane j <- r[j] lane i. Three rounds, each swapping
 * ever larger groups: single floats, pairs, then 128-bit quarters (twice). */
static inline __attribute__((always_inline)) void transpose_registers(Vec r[LANES])
{
    Vec t[16];
    for (int i = 0; i < 16; i += 2) {
        t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 16; i += 4) {
        r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
    }
    for (int i = 0; i < 8; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
    }
}

#else /* AVX2 with FMA */
#define VECTORS_PER_ROW 2

/* In registers: r[i] lane j <- r[j] lane i: floats, pairs, then halves. */
static inline __attribute__((always_inline)) void transpose_registers(Vec r[LANES])
{
    Vec t[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
        t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
    }
    for (int i = 0; i < 8; i += 4) {
        r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
        r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
        r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
        r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        t[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
        t[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
    }
    for (int i = 0; i < 8; i++)
        r[i] = t[i];
}
#endif

/* A block is ROWS rows of up to VECS vectors of accumulators. */
enum { ROWS = HEAD_BLOCK_ROWS, VECS = VECTORS_PER_ROW, COLS = VECS * LANES };
static_assert(COLS == HEAD_BLOCK_COLS, "head_kernels.h names the block's columns");
typedef Vec Block[ROWS][VECS];

bool head_kernels_take(int M, int N, int K, bool trans_b)
{
    const int longest = VT_MAX(M, VT_MAX(N, K)), shortest = VT_MIN(M, VT_MIN(N, K));
    return shortest >= HEAD_KERNEL_MIN_SIDE && longest <= HEAD_KERNEL_MAX_SIDE &&
           (!trans_b || tile_fits(N, K));
}

/* One step along k of a block: row k of B times column k of A. */
static inline __attribute__((always_inline)) void gemm_step(Block acc,
                                                            const float *const a_rows[ROWS],
                                                            int64_t at, const float *b_row,
                                                            const int nv, const bool part,
                                                            Lanes last)
{
    Vec bv[VECS];
    for (int v = 0; v < nv - 1; v++)
        bv[v] = v_load(b_row + v * LANES);
    bv[nv - 1] = part ? v_load_lanes(last, b_row + (nv - 1) * LANES)
                      : v_load(b_row + (nv - 1) * LANES);
    for (int r = 0; r < ROWS; r++) {
        const Vec av = v_set1(a_rows[r][at]);
        for (int v = 0; v < nv; v++)
            acc[r][v] = v_fmadd(av, bv[v], acc[r][v]);
    }
}

/* acc = rows (<= ROWS) of A times nv vectors of B, the last part-filled
 * (`part`, its lanes `last`) or whole: each inlined per nv and part so
 * that the accumulators stay in registers and whole vectors need no masked
 * loads (on AVX2 a masked load costs two operations). The first steps
 * each fetch a line of `ahead`, the rest run without the test. */
static_assert(HEAD_CHUNK_BYTES == 4 * HEAD_LINE_BYTES, "a block fetches a chunk in four steps");

static inline __attribute__((always_inline)) void block_accumulate(Block acc, const float *a,
                                                                   int a_row, int a_col,
                                                                   int rows, const float *b,
                                                                   int ldb, int K, const int nv,
                                                                   const bool part, Lanes last,
                                                                   FetchQueue *ahead)
{
    const float *a_rows[ROWS];
    for (int r = 0; r < ROWS; r++)
        a_rows[r] = a + (int64_t)(r < rows ? r : rows - 1) * a_row;
    for (int r = 0; r < ROWS; r++)
        for (int v = 0; v < nv; v++)
            acc[r][v] = v_zero();
    /* Four steps per chunk, a line each. */
    const int fetching = VT_MIN(K / 4, ahead->count - ahead->next);
    const char *const *chunk = ahead->chunk + ahead->next;
    int k = 0;
    for (int f = 0; f < fetching; f++)
        for (int line = 0; line < 4; line++, k++) {
            __builtin_prefetch(chunk[f] + line * HEAD_LINE_BYTES, 0, 2);
            gemm_step(acc, a_rows, (int64_t)k * a_col, b + (int64_t)k * ldb, nv, part, last);
        }
    for (; k < K; k++)
        gemm_step(acc, a_rows, (int64_t)k * a_col, b + (int64_t)k * ldb, nv, part, last);
    ahead->next += fetching;
}

static inline __attribute__((always_inline)) void gemm_block(float *c, int ldc, const float *a,
                                                             int a_row, int a_col, int rows,
                                                             const float *b, int ldb, int K,
                                                             float alpha, const int nv,
                                                             const bool part, Lanes last,
                                                             FetchQueue *ahead)
{
    Block acc;
    block_accumulate(acc, a, a_row, a_col, rows, b, ldb, K, nv, part, last, ahead);
    const Vec scale = v_set1(alpha);
    for (int r = 0; r < ROWS; r++) {
        if (r >= rows)
            break;
        float *c_row = c + (int64_t)r * ldc;
        for (int v = 0; v < nv - 1; v++)
            v_store(c_row + v * LANES, v_mul(acc[r][v], scale));
        if (part)
            v_store_lanes(c_row + (nv - 1) * LANES, last, v_mul(acc[r][nv - 1], scale));
        else
            v_store(c_row + (nv - 1) * LANES, v_mul(acc[r][nv - 1], scale));
    }
}

/* A block of rows (<= ROWS) x nv vectors of C, the last holding the
 * columns of `last` (all of them, or a part). */
static inline __attribute__((always_inline)) void vectors_block(float *c, int ldc, const float *a,
                                                                int a_row, int a_col, int rows,
                                                                const float *b, int ldb, int K,
                                                                float alpha, const int nv,
                                                                int last_cols, FetchQueue *ahead)
{
    const Lanes last = first_lanes(last_cols);
    if (last_cols == LANES)
        gemm_block(c, ldc, a, a_row, a_col, rows, b, ldb, K, alpha, nv, false, last, ahead);
    else
        gemm_block(c, ldc, a, a_row, a_col, rows, b, ldb, K, alpha, nv, true, last, ahead);
}

/* A block of rows (<= ROWS) x cols (<= COLS) of C: gemm_block compiled
 * for its number of vectors. Inlined into its callers: as a function of
 * its own GCC spilled the accumulators to the stack (attention +25 %). */
static inline __attribute__((always_inline)) void panel_block(float *c, int ldc, const float *a,
                                                              int a_row, int a_col, int rows,
                                                              const float *b, int ldb, int K,
                                                              float alpha, int cols,
                                                              FetchQueue *ahead)
{
    const int nv = (cols + LANES - 1) / LANES, last_cols = cols - (nv - 1) * LANES;
    switch (nv) {
    case 1: vectors_block(c, ldc, a, a_row, a_col, rows, b, ldb, K, alpha, 1, last_cols, ahead); break;
#if VECTORS_PER_ROW > 2
    case 2: vectors_block(c, ldc, a, a_row, a_col, rows, b, ldb, K, alpha, 2, last_cols, ahead); break;
    case 3: vectors_block(c, ldc, a, a_row, a_col, rows, b, ldb, K, alpha, 3, last_cols, ahead); break;
#endif
    default:
        vectors_block(c, ldc, a, a_row, a_col, rows, b, ldb, K, alpha, VECS, last_cols, ahead);
        break;
    }
}

/* vec_expf on every lane, the same operations in the same order (so the
 * same bits): clamped to [-87, 88], NaN given back. */
static inline __attribute__((always_inline)) Vec v_exp(Vec x_in)
{
    const Vec x = v_min(v_max(x_in, v_set1(-87.0f)), v_set1(88.0f));
    const Vec shifter = v_set1(12582912.0f);
    const Vec k = v_sub(v_add(v_mul(x, v_set1(1.44269504088896341f)), shifter), shifter);
    const Vec r = v_add(v_sub(x, v_mul(k, v_set1(0.693359375f))),
                        v_mul(k, v_set1(2.12194440e-4f)));
    Vec p = v_set1(VEC_EXP_POLY[0]);
    for (int i = 1; i < VEC_EXP_TERMS; i++)
        p = v_fmadd(p, r, v_set1(VEC_EXP_POLY[i]));
    p = v_fmadd(p, v_mul(r, r), v_add(r, v_set1(1.0f)));
    return v_select(v_numbers(x_in), v_mul(p, v_pow2(k)), x_in);
}

/* The lanes of the part-filled vector after the N / LANES whole ones of
 * a row of N floats: none when N is a multiple of LANES. */
static Lanes rest_mask(int N)
{
    return first_lanes(N % LANES);
}

/* Rows of scores in place: p = softmax(p) per row, as softmax_rows. The
 * rows of a block go through each pass together, so that the latencies of
 * their reductions overlap (one row at a time waited on them). */
static void block_softmax(float *p, int N, int rows)
{
    const int whole = N / LANES;
    const Lanes rest = rest_mask(N);
    const Vec below = v_set1(-INFINITY);
    Vec m[ROWS], sum[ROWS];
    for (int r = 0; r < ROWS; r++) {
        if (r >= rows)
            break;
        const float *row = p + (int64_t)r * N;
        Vec top = v_select(rest, v_load_lanes(rest, row + whole * LANES), below);
        for (int v = 0; v < whole; v++)
            top = v_max(top, v_load(row + v * LANES));
        m[r] = v_set1(v_top(top));
    }
    for (int r = 0; r < ROWS; r++) {
        if (r >= rows)
            break;
        float *row = p + (int64_t)r * N;
        const Vec part = v_select(rest, v_load_lanes(rest, row + whole * LANES), below);
        const Vec e = v_exp(v_sub(part, m[r]));
        sum[r] = v_keep(rest, e);
        v_store_lanes(row + whole * LANES, rest, e);
        for (int v = 0; v < whole; v++) {
            const Vec ev = v_exp(v_sub(v_load(row + v * LANES), m[r]));
            v_store(row + v * LANES, ev);
            sum[r] = v_add(sum[r], ev);
        }
    }
    for (int r = 0; r < ROWS; r++) {
        if (r >= rows)
            break;
        float *row = p + (int64_t)r * N;
        const Vec inv = v_set1(1.0f / v_sum(sum[r]));
        for (int v = 0; v < whole; v++)
            v_store(row + v * LANES, v_mul(v_load(row + v * LANES), inv));
        v_store_lanes(row + whole * LANES, rest,
                      v_mul(v_load_lanes(rest, row + whole * LANES), inv));
    }
}

/* Rows of dP in place: ds = scale p (dP - sum_j dP_j p_j) per row, as
 * softmax_rows_backward, the rows of a block together. */
static void block_softmax_backward(float *ds, const float *p, int N, int rows, float scale)
{
    const int whole = N / LANES;
    const Lanes rest = rest_mask(N);
    Vec d[ROWS];
    for (int r = 0; r < ROWS; r++) {
        if (r >= rows)
            break;
        const float *drow = ds + (int64_t)r * N, *prow = p + (int64_t)r * N;
        Vec dot = v_mul(v_load_lanes(rest, drow + whole * LANES),
                        v_load_lanes(rest, prow + whole * LANES));
        for (int v = 0; v < whole; v++)
            dot = v_fmadd(v_load(drow + v * LANES), v_load(prow + v * LANES), dot);
        d[r] = v_set1(v_sum(dot));
    }
    const Vec s = v_set1(scale);
    for (int r = 0; r < ROWS; r++) {
        if (r >= rows)
            break;
        float *drow = ds + (int64_t)r * N;
        const float *prow = p + (int64_t)r * N;
        for (int v = 0; v < whole; v++) {
            const Vec pv = v_load(prow + v * LANES), dp = v_load(drow + v * LANES);
            v_store(drow + v * LANES, v_mul(v_mul(pv, v_sub(dp, d[r])), s));
        }
        const Vec pv = v_load_lanes(rest, prow + whole * LANES);
        const Vec dp = v_load_lanes(rest, drow + whole * LANES);
        v_store_lanes(drow + whole * LANES, rest, v_mul(v_mul(pv, v_sub(dp, d[r])), s));
    }
}

/* ROWS rows (or `rows`, the last block) of alpha a b^T, b transposed in
 * `tile`, every column panel, so that the rows can be finished while they
 * are in L1. */
static void score_block(float *out, int N, const float *a, int lda, int rows, const float *tile,
                        int ld_tile, int K, float alpha, FetchQueue *ahead)
{
    for (int j = 0; j < N; j += COLS)
        panel_block(out + j, N, a, lda, 1, rows, tile + j, ld_tile, K, alpha,
                    VT_MIN(COLS, N - j), ahead);
}

static bool rows_fit(int N, int K)
{
    return head_kernels_take(N, N, K, true);
}

/* Scores a b^T (N, N) by blocks of rows, each block finished (softmax,
 * or its backward against p) right after its products. */
static void score_rows(float *out, const float *a, int lda, const float *b, int ldb,
                       const float *p, int N, int K, float scale, bool backward,
                       FetchQueue *ahead)
{
    FetchQueue none = {0};
    if (!ahead)
        ahead = &none;
    float tile[HEAD_TILE_FLOATS] __attribute__((aligned(64)));
    const int ld = tile_stride(N);
    head_transpose(tile, ld, b, ldb, N, K); /* (K, N): b^T */
    for (int i = 0; i < N; i += ROWS) {
        const int rows = VT_MIN(ROWS, N - i);
        float *oi = out + (int64_t)i * N;
        score_block(oi, N, a + (int64_t)i * lda, lda, rows, tile, ld, K,
                    backward ? 1.0f : scale, ahead);
        if (backward)
            block_softmax_backward(oi, p + (int64_t)i * N, N, rows, scale);
        else
            block_softmax(oi, N, rows);
    }
}

bool head_sgemm_in_place(int M, int N, int K, bool trans_b)
{
    return head_kernels_take(M, N, K, trans_b) && N <= COLS;
}

void head_gemm(float *c, int ldc, const float *a, int a_row, int a_col, const float *b, int ldb,
               int M, int Nc, int K, float alpha, FetchQueue *ahead)
{
    FetchQueue none = {0};
    if (!ahead)
        ahead = &none;
    /* Column panels outside, so that one panel of B (K x 64) stays in L1
     * while the row blocks of A pass by. */
    for (int j = 0; j < Nc; j += COLS)
        for (int i = 0; i < M; i += ROWS)
            panel_block(c + (int64_t)i * ldc + j, ldc, a + (int64_t)i * a_row, a_row, a_col,
                        VT_MIN(ROWS, M - i), b + j, ldb, K, alpha, VT_MIN(COLS, Nc - j), ahead);
}

/* One block of at most LANES x LANES; missing rows read as zeros, and
 * only what exists is stored. */
static void transpose_block(float *to, int ld_to, const float *from, int ld_from, int rows,
                            int cols)
{
    Vec r[LANES];
    if (rows == LANES && cols == LANES) { /* whole: no masked loads and stores */
        for (int i = 0; i < LANES; i++)
            r[i] = v_load(from + (int64_t)i * ld_from);
        transpose_registers(r);
        for (int i = 0; i < LANES; i++)
            v_store(to + (int64_t)i * ld_to, r[i]);
        return;
    }
    const Lanes col_mask = first_lanes(cols), row_mask = first_lanes(rows);
    for (int i = 0; i < LANES; i++)
        r[i] = i < rows ? v_load_lanes(col_mask, from + (int64_t)i * ld_from) : v_zero();
    transpose_registers(r);
    for (int i = 0; i < LANES; i++)
        if (i < cols)
            v_store_lanes(to + (int64_t)i * ld_to, row_mask, r[i]);
}

void head_transpose(float *to, int ld_to, const float *from, int ld_from, int rows, int cols)
{
    for (int i = 0; i < rows; i += LANES)
        for (int j = 0; j < cols; j += LANES)
            transpose_block(to + (int64_t)j * ld_to + i, ld_to, from + (int64_t)i * ld_from + j,
                            ld_from, VT_MIN(LANES, rows - i), VT_MIN(LANES, cols - j));
}

#else /* plain loops: correct everywhere, used by the tests only */

bool head_kernels_take(int M, int N, int K, bool trans_b)
{
    (void)M, (void)N, (void)K, (void)trans_b;
    return false;
}

bool head_sgemm_in_place(int M, int N, int K, bool trans_b)
{
    (void)M, (void)N, (void)K, (void)trans_b;
    return false;
}

void head_gemm(float *c, int ldc, const float *a, int a_row, int a_col, const float *b, int ldb,
               int M, int Nc, int K, float alpha, FetchQueue *ahead)
{
    (void)ahead;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < Nc; j++) {
            float sum = 0.0f;
            for (int k = 0; k < K; k++)
                sum += a[(int64_t)i * a_row + (int64_t)k * a_col] * b[(int64_t)k * ldb + j];
            c[(int64_t)i * ldc + j] = alpha * sum;
        }
}

void head_transpose(float *to, int ld_to, const float *from, int ld_from, int rows, int cols)
{
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            to[(int64_t)j * ld_to + i] = from[(int64_t)i * ld_from + j];
}

#endif

void head_gemm_nt(float *c, int ldc, const float *a, int lda, const float *b, int ldb, int M,
                  int Nc, int K, float alpha, FetchQueue *ahead)
{
    float tile[HEAD_TILE_FLOATS] __attribute__((aligned(64)));
    const int ld = tile_stride(Nc);
    VT_ASSERT(tile_fits(Nc, K));
    head_transpose(tile, ld, b, ldb, Nc, K); /* (K, Nc): B^T */
    head_gemm(c, ldc, a, lda, 1, tile, ld, M, Nc, K, alpha, ahead);
}

void head_sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A,
                int lda, const float *B, int ldb, float *C, int ldc, FetchQueue *ahead)
{
    VT_ASSERT(!(trans_a && trans_b));
    if (!head_kernels_take(M, N, K, trans_b))
        blas_sgemm(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, 0.0f, C, ldc);
    else if (trans_b)
        head_gemm_nt(C, ldc, A, lda, B, ldb, M, N, K, alpha, ahead);
    else
        head_gemm(C, ldc, A, trans_a ? 1 : lda, trans_a ? lda : 1, B, ldb, M, N, K, alpha, ahead);
}

/* The softmax of every row of s, in place: O(N) per row. */
static void softmax_rows(float *s /* (N, N) */, int N)
{
    for (int i = 0; i < N; i++) {
        float *row = s + (int64_t)i * N;
        float m = row[0];
#pragma omp simd reduction(max : m)
        for (int j = 1; j < N; j++)
            m = row[j] > m ? row[j] : m;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (int j = 0; j < N; j++) {
            row[j] = vec_expf(row[j] - m);
            sum += row[j];
        }
        const float inv = 1.0f / sum;
#pragma omp simd
        for (int j = 0; j < N; j++)
            row[j] *= inv;
    }
}

/* Softmax backward, O(N) per row: with P = softmax(S),
 * dS_ij = P_ij (dP_ij - sum_k dP_ik P_ik). Overwrites dp with dS * scale. */
static void softmax_rows_backward(float *dp /* (N, N) */, const float *p /* (N, N) */, int N,
                                  float scale)
{
    for (int i = 0; i < N; i++) {
        float *drow = dp + (int64_t)i * N;
        const float *prow = p + (int64_t)i * N;
        float dot = 0.0f;
#pragma omp simd reduction(+ : dot)
        for (int j = 0; j < N; j++)
            dot += drow[j] * prow[j];
#pragma omp simd
        for (int j = 0; j < N; j++)
            drow[j] = prow[j] * (drow[j] - dot) * scale;
    }
}

void head_scores_softmax(float *p, const float *q, int ldq, const float *k, int ldk, int N, int K,
                         float scale, FetchQueue *ahead)
{
#ifdef HEAD_KERNELS
    if (rows_fit(N, K)) {
        score_rows(p, q, ldq, k, ldk, NULL, N, K, scale, false, ahead);
        return;
    }
#endif
    head_sgemm(false, true, N, N, K, scale, q, ldq, k, ldk, p, N, ahead);
    softmax_rows(p, N);
}

void head_scores_softmax_backward(float *ds, const float *dout, int ld_dout, const float *v,
                                  int ldv, const float *p, int N, int K, float scale,
                                  FetchQueue *ahead)
{
#ifdef HEAD_KERNELS
    if (rows_fit(N, K)) {
        score_rows(ds, dout, ld_dout, v, ldv, p, N, K, scale, true, ahead);
        return;
    }
#endif
    head_sgemm(false, true, N, N, K, 1.0f, dout, ld_dout, v, ldv, ds, N, ahead);
    softmax_rows_backward(ds, p, N, scale);
}
