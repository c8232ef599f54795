/*
 * block_rotary.c - the block-rotation engine of ComRoPE and LieRE (see
 * block_rotary.h; DESIGN §4.5-4.7).
 *
 * Memory: three float tables of (layers, heads, N, K, b, b) entries, i.e.
 * layers * heads * N * Dh * b floats each (R, R^T and the gradient);
 * generators are rebuilt by the callback in br_finish rather than stored,
 * which spares a fourth, double-precision table (dense LieRE, b = Dh, makes
 * these tables large: 12 layers, 6 heads, 197 tokens, Dh = b = 64 take
 * about 230 MB each).
 *
 * Blocks of at least GEMM_BLOCK channels (dense LieRE's 64) rotate as
 * products over the batch, B vectors of one (head, token, block) being the
 * rows of a strided matrix, in place in the qkv buffer; those products
 * read R either way round, so R^T is not stored for them, and their
 * backward gathers dL/dR R^T from the rotated rows (br_backward), which
 * br_finish turns into dL/dR on the way. Their powers along a ray, and
 * the backward of those and of the exponential, run in float, where the
 * 64 x 64 products run at twice the rate of double; the exponential
 * itself stays in double (DESIGN §4.7). Smaller blocks rotate vector by
 * vector and make their rotations in double.
 */
#include "block_rotary.h"
#include "raw_rows.h"

#include "../attention/head_kernels.h"

#include "vitrain/parallel.h"
#include "vitrain/simd.h"

#include <omp.h>
#include <stdlib.h>
#include <string.h>

enum { GEMM_BLOCK = 16 };

/*
 * Blocks of 8 that the forward turns per vector: two with AVX-512's 16
 * lanes, one otherwise. When a head's blocks divide into such groups, rot_t
 * stores each group's matrices with their rows interleaved (row k of the
 * group: row k of R_j^T for each of its blocks j in turn), so that one
 * vector holds row k of every block of the group; elsewhere, and for other
 * block sizes, each block's R^T is row-major on its own.
 */
#ifdef VT_SIMD
enum { GROUP8 = LANES / 8 };
#else
enum { GROUP8 = 1 };
#endif

static bool grouped8(const BlockRotary *br)
{
    return GROUP8 > 1 && br->b == 8 && br->blocks % GROUP8 == 0;
}

/* Where rot_t holds the block at offset `at` (its br_at): R^T[k][c] at
 * rot_t[*first + k * *row_stride + c]. */
static void rot_t_place(const BlockRotary *br, size_t at, size_t *first, int *row_stride)
{
    const int b = br->b;
    *first = at;
    *row_stride = b;
    if (grouped8(br)) {
        const int in_group = (int)(at / ((size_t)b * b) % GROUP8); /* at counts whole blocks */
        *first = at - (size_t)in_group * b * b + (size_t)in_group * b;
        *row_stride = GROUP8 * b;
    }
}

VtCode br_check(const PeOptions *o, const PeGeometry *g, int pair_multiple, VtError *err)
{
    const int b = o->block_size;
    if (b < 2 || b > BR_MAX_BLOCK)
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "pe.block_size must be between 2 and %d for pe.type %s, got %d",
                       BR_MAX_BLOCK, o->type, b);
    if (g->head_dim % (pair_multiple * b) != 0) {
        if (pair_multiple > 1)
            return vt_fail(err, VT_ERR_ARGUMENT,
                           "pe.type %s needs half the head dimension divisible by pe.block_size "
                           "(blocks alternate between rows and columns): model.dim / model.heads "
                           "is %d, pe.block_size is %d",
                           o->type, g->head_dim, b);
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "pe.type %s needs the head dimension divisible by pe.block_size: "
                       "model.dim / model.heads is %d, pe.block_size is %d",
                       o->type, g->head_dim, b);
    }
    return VT_OK;
}

void br_init(BlockRotary *br, const PeGeometry *g, int b, int layers, int heads, int first_token)
{
    memset(br, 0, sizeof *br);
    br->b = b;
    br->blocks = g->head_dim / b;
    br->layers = layers;
    br->heads = heads;
    br->tokens = 1 + g->grid_h * g->grid_w;
    br->first_token = first_token;
    const size_t n = br_at(br, layers, 0, 0, 0);
    /* Entries of tokens below first_token are never read (zeroed all the same). */
    br->rot = vt_xcalloc(n, sizeof(float));
    br->rot_t = b < GEMM_BLOCK ? vt_xcalloc(n, sizeof(float)) : NULL;
    br->grad = vt_xcalloc(n, sizeof(float));
    const int rotated = br->tokens - first_token;
    br->rays = rotated;
    br->ray_start = vt_xmalloc((size_t)(rotated + 1) * sizeof(int));
    br->ray_token = vt_xmalloc((size_t)VT_MAX(rotated, 1) * sizeof(int));
    for (int r = 0; r <= rotated; r++)
        br->ray_start[r] = r;
    for (int r = 0; r < rotated; r++)
        br->ray_token[r] = first_token + r;
    /* Regions never use more threads than this (region_threads). */
    br->threads = threads_planned();
    br->scratch = vt_xcalloc((size_t)br->threads, sizeof *br->scratch);
    for (int i = 0; i < br->threads; i++) {
        BrScratch *s = &br->scratch[i];
        s->work = skew_expm_work_create(b);
        double **slots[] = {&s->g, &s->root, &s->cur, &s->next, &s->acc, &s->prev};
        const int count = (int)(sizeof slots / sizeof slots[0]);
        double *block = vt_xmalloc((size_t)count * b * b * sizeof(double));
        for (int k = 0; k < count; k++)
            *slots[k] = block + (size_t)k * b * b;
        s->g32 = vt_xmalloc(3 * (size_t)b * b * sizeof(float));
        s->adj32 = s->g32 + (size_t)b * b;
        s->sum32 = s->adj32 + (size_t)b * b;
    }
}

void br_free(BlockRotary *br)
{
    for (int i = 0; i < br->threads; i++) {
        skew_expm_work_free(br->scratch[i].work);
        free(br->scratch[i].g);
        free(br->scratch[i].g32);
    }
    free(br->scratch);
    free(br->ray_start);
    free(br->ray_token);
    free(br->rot);
    free(br->rot_t);
    free(br->grad);
    memset(br, 0, sizeof *br);
}

void br_set_rays(BlockRotary *br, const int *root, const int *power)
{
    const int rotated = br->tokens - br->first_token;
    int next = 0;
    br->rays = 0;
    for (int t = br->first_token; t < br->tokens; t++) {
        if (root[t] != t)
            continue;
        VT_ASSERT(power[t] == 1);
        br->ray_start[br->rays++] = next;
        /* The ray's tokens by power; a power missing in between would leave
         * the chain of products without its next factor. */
        for (int k = 1, found = 1; found; k++) {
            found = 0;
            for (int u = br->first_token; u < br->tokens; u++)
                if (root[u] == t && power[u] == k) {
                    VT_ASSERT(!found);
                    br->ray_token[next++] = u;
                    found = 1;
                }
        }
    }
    VT_ASSERT(next == rotated); /* every token on exactly one ray */
    br->ray_start[br->rays] = next;
}

/* Items are the (layer table, head table, ray, block) tuples. */
static int item_count(const BlockRotary *br)
{
    return br->layers * br->heads * br->rays * br->blocks;
}

typedef struct Item {
    int layer, head, block;
    const int *token; /* the ray's tokens, root first */
    int length;
} Item;

static Item item_at(const BlockRotary *br, int item)
{
    const int ray = (item / br->blocks) % br->rays;
    const int lh = item / (br->blocks * br->rays);
    return (Item){.layer = lh / br->heads, .head = lh % br->heads, .block = item % br->blocks,
                  .token = br->ray_token + br->ray_start[ray],
                  .length = br->ray_start[ray + 1] - br->ray_start[ray]};
}

static size_t item_offset(const BlockRotary *br, const Item *it, int k)
{
    return br_at(br, it->layer, it->head, it->token[k], it->block);
}

static int region_threads(const BlockRotary *br)
{
    return VT_MIN(omp_get_max_threads(), br->threads);
}

/* C = op(A) op(B) + beta C, all b x b. */
static void product(double *C, const double *A, bool trans_a, const double *B, bool trans_b,
                    double beta, int b)
{
    blas_dgemm(trans_a, trans_b, b, b, b, 1.0, A, b, B, b, beta, C, b);
}

static void store_rotation(BlockRotary *br, size_t at, const double *R)
{
    const int b = br->b;
    size_t first;
    int row_stride;
    rot_t_place(br, at, &first, &row_stride);
    for (int r = 0; r < b; r++)
        for (int c = 0; c < b; c++) {
            br->rot[at + r * b + c] = (float)R[r * b + c];
            if (br->rot_t)
                br->rot_t[first + (size_t)c * row_stride + r] = (float)R[r * b + c];
        }
}

/* R = exp(G) of the ray's root, in double (s->root), and stored. */
static void root_rotation(BlockRotary *br, const Item *it, BrScratch *s, const Pe *pe,
                          const float *params, BrGenerator generator)
{
    generator(pe, params, it->layer, it->head, it->token[0], it->block, s->g);
    skew_expm(s->root, s->g, br->b, s->work);
    store_rotation(br, item_offset(br, it, 0), s->root);
}

/* R = exp(G) of the root, then R^k = R^(k-1) R along the ray, in double. */
static void prepare_ray(BlockRotary *br, const Item *it, BrScratch *s, const Pe *pe,
                        const float *params, BrGenerator generator)
{
    const int b = br->b;
    root_rotation(br, it, s, pe, params, generator);
    const double *power = s->root;
    for (int k = 1; k < it->length; k++) {
        double *out = power == s->cur ? s->next : s->cur;
        product(out, power, false, s->root, false, 0.0, b);
        store_rotation(br, item_offset(br, it, k), out);
        power = out;
    }
}

/* The same for dense blocks, the powers in float and in place in the
 * table (which holds no R^T for them), where their 64 x 64 products run
 * on sgemm at twice dgemm's rate. The exponential stays in double: in
 * float its rounding, doubled by each squaring, reaches 2e-6 to 8e-6 at
 * the norms of a 7 x 7 grid's rays, above DESIGN §4.7's 1e-6. */
static void prepare_ray_dense(BlockRotary *br, const Item *it, BrScratch *s, const Pe *pe,
                              const float *params, BrGenerator generator)
{
    const int b = br->b;
    root_rotation(br, it, s, pe, params, generator);
    const float *root = br->rot + item_offset(br, it, 0);
    for (int k = 1; k < it->length; k++)
        blas_sgemm(false, false, b, b, b, 1.0f, br->rot + item_offset(br, it, k - 1), b, root, b,
                   0.0f, br->rot + item_offset(br, it, k), b);
}

void br_prepare(BlockRotary *br, const Pe *pe, const float *params, BrGenerator generator)
{
    const int items = item_count(br);
#pragma omp parallel num_threads(region_threads(br))
    {
        BrScratch *s = &br->scratch[omp_get_thread_num()];
#pragma omp for schedule(static)
        for (int i = 0; i < items; i++) {
            const Item it = item_at(br, i);
            if (br_by_heads(br))
                prepare_ray(br, &it, s, pe, params, generator);
            else
                prepare_ray_dense(br, &it, s, pe, params, generator);
        }
    }
    br_clear_grads(br);
}

/* Only after a backward has written dR: a pass without one (evaluation)
 * neither pays for the memset nor touches the table's pages. */
void br_clear_grads(BlockRotary *br)
{
    if (!br->grad_written)
        return;
    memset(br->grad, 0, br_at(br, br->layers, 0, 0, 0) * sizeof(float));
    br->grad_written = false;
}

/* x (b) <- R x, given Rt = R^T row-major: y = sum_c x_c R[:, c], a sweep
 * over contiguous columns that vectorises (a row dot product would be a
 * float reduction, which the compiler may not reorder). */
static inline void rotate_block(float *x, const float *Rt, int b)
{
    float y[BR_MAX_BLOCK] = {0};
    for (int c = 0; c < b; c++) {
        const float xc = x[c];
        for (int r = 0; r < b; r++)
            y[r] += Rt[c * b + r] * xc;
    }
    memcpy(x, y, (size_t)b * sizeof(float));
}

/* y = sum_k v[k] M[k, :] for a row-major 8 x 8 M: the b = 8 kernel of both
 * directions (fixed trip counts keep everything in vector registers, one
 * multiply-add per row). y may be v: it is written after the last read. */
static inline void sum_rows8(float *y, const float *restrict M, const float *v)
{
    float even[8], odd[8]; /* two partial sums halve the chain of multiply-adds */
#pragma omp simd
    for (int c = 0; c < 8; c++) {
        even[c] = M[c] * v[0];
        odd[c] = M[8 + c] * v[1];
    }
    for (int k = 2; k < 8; k += 2)
#pragma omp simd
        for (int c = 0; c < 8; c++) {
            even[c] += M[k * 8 + c] * v[k];
            odd[c] += M[(k + 1) * 8 + c] * v[k + 1];
        }
#pragma omp simd
    for (int c = 0; c < 8; c++)
        y[c] = even[c] + odd[c];
}

#ifdef VT_SIMD
/* v (blocks of 8, grouped8) <- R v, a group of GROUP8 blocks per vector:
 * y = sum_k x_k (row k of each block's R^T), x_k spread over its block's
 * lanes; two partial sums halve the chain of multiply-adds. */
static inline void rotate_vector_grouped8(float *v, const float *Rt, int blocks)
{
    for (int q = 0; q < blocks / GROUP8; q++) {
        const float *rows = Rt + (size_t)q * GROUP8 * 64;
        const Vec x = v_load(v + q * LANES);
        Vec even = v_mul(v_load(rows), v_spread8(x, 0));
        Vec odd = v_mul(v_load(rows + LANES), v_spread8(x, 1));
        for (int k = 2; k < 8; k += 2) {
            even = v_fmadd(v_load(rows + k * LANES), v_spread8(x, k), even);
            odd = v_fmadd(v_load(rows + (k + 1) * LANES), v_spread8(x, k + 1), odd);
        }
        v_store(v + q * LANES, v_add(even, odd));
    }
}
#endif

/* The blocks of one head vector; Rt: its K consecutive R^T (rot_t). */
static inline void rotate_vector(const BlockRotary *br, float *v, const float *Rt)
{
    const int blocks = br->blocks, b = br->b;
#ifdef VT_SIMD
    if (grouped8(br)) {
        rotate_vector_grouped8(v, Rt, blocks);
        return;
    }
#endif
    if (b == 8) {
        for (int j = 0; j < blocks; j++)
            sum_rows8(v + j * 8, Rt + (size_t)j * 64, v + j * 8); /* R x = sum_c x_c Rt[c, :] */
        return;
    }
    for (int j = 0; j < blocks; j++)
        rotate_block(v + j * b, Rt + (size_t)j * b * b, b);
}

/* Chunks of 256 bytes the product kernels fetch while they run: the
 * operand rows of the next (head, token), one per image and a whole
 * image's rows apart, a stride the hardware prefetchers do not follow
 * (head_kernels.h); enough for one 64-channel row of each of 512 images. */
enum { FETCH_CHUNKS = 512 };

/* Queues the B rows of Dh floats of one (head, token) from `at`, ld apart. */
static void queue_rows(FetchQueue *ahead, const float *at, int ld, const AttnDims *d)
{
    fetch_queue_rows(ahead, at, ld, d->B, d->Dh);
}

/* rows (B x b, ld apart) <- rows R^T (trans) or rows R, in place where
 * the head kernels can (head_sgemm_in_place: dense LieRE's b = 64 on
 * AVX-512), else through `product` (B x b), which is then copied back:
 * BLAS may not write over an operand. */
static void turn_rows(float *rows, int ld, const float *R, bool trans, int B, int b,
                      float *product, FetchQueue *ahead)
{
    if (head_sgemm_in_place(B, b, b, trans)) {
        head_sgemm(false, trans, B, b, b, 1.0f, rows, ld, R, b, rows, ld, ahead);
        return;
    }
    head_sgemm(false, trans, B, b, b, 1.0f, rows, ld, R, b, product, b, ahead);
    for (int i = 0; i < B; i++)
        memcpy(rows + (size_t)i * ld, product + (size_t)i * b, (size_t)b * sizeof(float));
}

/* The `product` scratch of turn_rows for B rows of b, or NULL where it
 * turns them in place and needs none. */
static float *turn_scratch(int B, int b, bool trans)
{
    return head_sgemm_in_place(B, b, b, trans) ? NULL : vt_xmalloc((size_t)B * b * sizeof(float));
}

/* br_forward by products: one (head, token) per iteration, each block of
 * the whole batch as one product, X R^T, the B rows of an image N stride
 * apart; on the head kernels where they take it, while the next
 * iteration's rows arrive. */
static void forward_products(const BlockRotary *br, int table, float *x, int stride,
                             const AttnDims *d)
{
    const int rotated = d->N - br->first_token, items = d->H * rotated;
    const int ld = d->N * stride, b = br->b;
#pragma omp parallel
    {
        const char *lines[FETCH_CHUNKS];
        FetchQueue ahead = {lines, 0, 0, FETCH_CHUNKS};
        float *product = turn_scratch(d->B, b, true);
#pragma omp for schedule(static)
        for (int hn = 0; hn < items; hn++) {
            const int h = hn / rotated, n = br->first_token + hn % rotated;
            const int th = br->heads == 1 ? 0 : h;
            fetch_queue_clear(&ahead);
            if (hn + 1 < items)
                queue_rows(&ahead,
                           x + raw_at(stride, 0, br->first_token + (hn + 1) % rotated,
                                      (hn + 1) / rotated, d),
                           ld, d);
            for (int j = 0; j < br->blocks; j++)
                turn_rows(x + raw_at(stride, 0, n, h, d) + (size_t)j * b, ld,
                          br->rot + br_at(br, table, th, n, j), true, d->B, b, product, &ahead);
        }
        free(product);
    }
}

bool br_by_heads(const BlockRotary *br)
{
    return br->b < GEMM_BLOCK;
}

/* Each row copied, then rotated in place while it is in L1. */
void br_forward_head(const BlockRotary *br, int layer, int image, int h, const PeHeadRows *rows,
                     const AttnDims *d)
{
    VT_ASSERT(br_by_heads(br));
    const int table = br->layers == 1 ? 0 : layer, th = br->heads == 1 ? 0 : h;
    for (int n = 0; n < d->N; n++) {
        const size_t raw = raw_at(rows->raw_stride, image, n, h, d);
        for (int i = 0; i < rows->count; i++) {
            float *v = rows->tile[i] + (size_t)n * d->Dh;
            memcpy(v, rows->raw[i] + raw, (size_t)d->Dh * sizeof(float));
            if (n >= br->first_token)
                rotate_vector(br, v, br->rot_t + br_at(br, table, th, n, 0));
        }
    }
}

void br_forward(const BlockRotary *br, int layer, float *x, int stride, const AttnDims *d)
{
    VT_ASSERT(!br_by_heads(br));
    forward_products(br, br->layers == 1 ? 0 : layer, x, stride, d);
}

/* y = R x with upstream dy (b): dR += dy x^T, then dy <- R^T dy, both as
 * sweeps over the contiguous rows of dR and R. */
static inline void rotate_block_backward(float *dy, float *dR, const float *x, const float *R,
                                         int b)
{
    float dx[BR_MAX_BLOCK] = {0};
    for (int r = 0; r < b; r++) {
        const float g = dy[r];
        for (int c = 0; c < b; c++) {
            dR[r * b + c] += g * x[c];
            dx[c] += R[r * b + c] * g;
        }
    }
    memcpy(dy, dx, (size_t)b * sizeof(float));
}

/* The same for b = 8, fixed trip counts: every update a multiply-add on a
 * vector of 8. */
static inline void rotate_block8_backward(float *dy, float *restrict dR, const float *x,
                                          const float *restrict R)
{
    for (int r = 0; r < 8; r++)
#pragma omp simd
        for (int c = 0; c < 8; c++)
            dR[r * 8 + c] += dy[r] * x[c];
    sum_rows8(dy, R, dy); /* dx = R^T dy = sum_r dy_r R[r, :] */
}

/* The blocks of one head vector; dR and R: its (K, b, b) matrices. */
static inline void rotate_vector_backward(float *dy, float *dR, const float *x, const float *R,
                                          int blocks, int b)
{
    for (int j = 0; j < blocks; j++) {
        const size_t at = (size_t)j * b * b;
        if (b == 8)
            rotate_block8_backward(dy + j * 8, dR + at, x + j * 8, R + at);
        else
            rotate_block_backward(dy + j * b, dR + at, x + j * b, R + at, b);
    }
}

/* q's and k's rows of one token together, b = 8: dR += dy_q x_q^T +
 * dy_k x_k^T reads and writes each row of dR once for both (it is the
 * loop's memory traffic), in the order the single-row kernel adds them. */
static inline void rotate_vector8_backward_pair(float *dyq, float *dyk, float *restrict dR,
                                               const float *xq, const float *xk,
                                               const float *restrict R, int blocks)
{
    for (int j = 0; j < blocks; j++) {
        float *restrict dRj = dR + (size_t)j * 64;
        const float *q = xq + j * 8, *k = xk + j * 8, *gq = dyq + j * 8, *gk = dyk + j * 8;
        for (int r = 0; r < 8; r++)
#pragma omp simd
            for (int c = 0; c < 8; c++)
                dRj[r * 8 + c] = (dRj[r * 8 + c] + gq[r] * q[c]) + gk[r] * k[c];
        sum_rows8(dyq + j * 8, R + (size_t)j * 64, dyq + j * 8);
        sum_rows8(dyk + j * 8, R + (size_t)j * 64, dyk + j * 8);
    }
}

int br_head_grad_floats(const BlockRotary *br)
{
    return br->tokens * br->blocks * br->b * br->b;
}

/* Token by token, q's and k's rows in turn (for b = 8 in one pass): the
 * token's R and its part of dR are read once for both. */
void br_backward_head(const BlockRotary *br, int layer, int image, int h, const PeHeadRows *rows,
                      float *part, const AttnDims *d)
{
    VT_ASSERT(br_by_heads(br));
    const int table = br->layers == 1 ? 0 : layer, th = br->heads == 1 ? 0 : h;
    const size_t per_token = (size_t)br->blocks * br->b * br->b;
    for (int n = 0; n < d->N; n++) {
        const size_t raw = raw_at(rows->raw_stride, image, n, h, d), row = (size_t)n * d->Dh;
        const float *R = br->rot + br_at(br, table, th, n, 0);
        const bool rotated = n >= br->first_token;
        if (rotated && rows->count == 2 && br->b == 8)
            rotate_vector8_backward_pair(rows->tile[0] + row, rows->tile[1] + row,
                                         part + n * per_token, rows->raw[0] + raw,
                                         rows->raw[1] + raw, R, br->blocks);
        else if (rotated)
            for (int i = 0; i < rows->count; i++)
                rotate_vector_backward(rows->tile[i] + row, part + n * per_token,
                                       rows->raw[i] + raw, R, br->blocks, br->b);
        for (int i = 0; i < rows->count; i++)
            memcpy(rows->raw_grad[i] + raw, rows->tile[i] + row, (size_t)d->Dh * sizeof(float));
    }
}

void br_backward_reduce(BlockRotary *br, int layer, const float *parts, int chunks,
                        const AttnDims *d)
{
    const int table = br->layers == 1 ? 0 : layer;
    const int rotated = d->N - br->first_token;
    const int group = br->heads == 1 ? d->H : 1; /* heads reading one table */
    VT_ASSERT(d->N == br->tokens);
    br->grad_written = true;
    /* One (head table, token) per iteration, the heads and the chunks
     * summed inside in order: each dR entry has one writer. */
#pragma omp parallel for schedule(static)
    for (int hn = 0; hn < br->heads * rotated; hn++) {
        const int th = hn / rotated, n = br->first_token + hn % rotated;
        for (int h = th * group; h < (th + 1) * group; h++)
            add_chunk_parts(br->grad + br_at(br, table, th, n, 0), parts, chunks, h, n,
                            br->blocks * br->b * br->b, d);
    }
}

/* The heads of table head th at token n, by products over the batch, each
 * block in place: M += dY^T Y (formed apart, then added: the kernels do
 * not accumulate), then dX = dY R. M stands for dR: y = R x with R
 * orthogonal gives X = Y R, so dR = dY^T X = M R, which br_finish forms
 * (finish_ray_dense); the raw rows, which the forward turned in place, are
 * not needed. */
static void backward_products(BlockRotary *br, size_t at, int th, int group, int n, float *dx,
                              const float *y, int stride, const AttnDims *d, float *product,
                              FetchQueue *ahead)
{
    const int b = br->b, ld = d->N * stride;
    float part[BR_MAX_BLOCK * BR_MAX_BLOCK];
    for (int h = th * group; h < (th + 1) * group; h++)
        for (int j = 0; j < br->blocks; j++) {
            const size_t row = raw_at(stride, 0, n, h, d) + (size_t)j * b;
            float *M = br->grad + at + (size_t)j * b * b;
            head_sgemm(true, false, b, b, d->B, 1.0f, dx + row, ld, y + row, ld, part, b, ahead);
            for (int e = 0; e < b * b; e++)
                M[e] += part[e];
            turn_rows(dx + row, ld, br->rot + at + (size_t)j * b * b, false, d->B, b, product,
                      ahead);
        }
}

void br_backward(BlockRotary *br, int layer, float *dx, const float *y, int stride,
                 const AttnDims *d)
{
    VT_ASSERT(!br_by_heads(br));
    const int table = br->layers == 1 ? 0 : layer;
    const int rotated = d->N - br->first_token, items = br->heads * rotated;
    const int group = br->heads == 1 ? d->H : 1; /* heads reading one table */
    br->grad_written = true;
    /* One (head table, token) per iteration, its heads and the batch summed
     * inside in order: each M entry has one writer, whatever the threads.
     * The next iteration's first head is fetched meanwhile. */
#pragma omp parallel
    {
        const char *lines[2 * FETCH_CHUNKS];
        FetchQueue ahead = {lines, 0, 0, 2 * FETCH_CHUNKS};
        float *product = turn_scratch(d->B, br->b, false);
#pragma omp for schedule(static)
        for (int hn = 0; hn < items; hn++) {
            const int th = hn / rotated, n = br->first_token + hn % rotated;
            fetch_queue_clear(&ahead);
            if (hn + 1 < items) {
                const size_t next = raw_at(stride, 0, br->first_token + (hn + 1) % rotated,
                                           (hn + 1) / rotated * group, d);
                queue_rows(&ahead, dx + next, d->N * stride, d);
                queue_rows(&ahead, y + next, d->N * stride, d);
            }
            backward_products(br, br_at(br, table, th, n, 0), th, group, n, dx, y, stride, d,
                              product, &ahead);
        }
        free(product);
    }
}

static void load(double *y, const float *x, int b)
{
    for (int e = 0; e < b * b; e++)
        y[e] = x[e];
}

/* dG of the ray's root from its total adjoint in s->adj32: one Frechet
 * derivative, in float, written over the root's dR. */
static void root_backward(BlockRotary *br, const Item *it, BrScratch *s, const Pe *pe,
                          const float *params, BrGenerator generator)
{
    const int b = br->b;
    generator(pe, params, it->layer, it->head, it->token[0], it->block, s->g);
    for (int e = 0; e < b * b; e++)
        s->g32[e] = (float)s->g[e];
    skew_expm_backward_f(br->grad + item_offset(br, it, 0), s->g32, s->adj32, b, s->work);
}

/* The ray's dR folded back to its root along R^k = R^(k-1) R, from the
 * last power down: the adjoint D_k of R^k gives D_(k-1) += D_k R^T and
 * the root's own adjoint gets (R^(k-1))^T D_k. The powers are read back
 * from the float table, which is what the forward used. Then one Frechet
 * derivative, in float, turns the root's total adjoint into dG. */
static void finish_ray(BlockRotary *br, const Item *it, BrScratch *s, const Pe *pe,
                       const float *params, BrGenerator generator)
{
    const int b = br->b;
    double *adj = s->cur;
    load(adj, br->grad + item_offset(br, it, it->length - 1), b);
    if (it->length > 1) {
        load(s->root, br->rot + item_offset(br, it, 0), b);
        memset(s->acc, 0, (size_t)b * b * sizeof(double));
    }
    for (int k = it->length - 1; k >= 1; k--) {
        const float *below = br->grad + item_offset(br, it, k - 1);
        load(s->prev, br->rot + item_offset(br, it, k - 1), b);
        product(s->acc, s->prev, true, adj, false, 1.0, b);
        double *lower = adj == s->cur ? s->next : s->cur;
        load(lower, below, b);
        product(lower, adj, false, s->root, true, 1.0, b);
        memset(br->grad + item_offset(br, it, k), 0, (size_t)b * b * sizeof(float));
        adj = lower;
    }
    if (it->length > 1)
        for (int e = 0; e < b * b; e++)
            adj[e] += s->acc[e];
    for (int e = 0; e < b * b; e++)
        s->adj32[e] = (float)adj[e];
    root_backward(br, it, s, pe, params, generator);
}

/* The same for dense blocks, in float, from the M_k = dY^T Y that
 * br_backward leaves for the token of power k (dR_k = M_k R^k). With R
 * orthogonal the adjoints along the ray fold into
 *   dL/dR = sum_(j>=0) (R^j)^T S_j R^j R,  S_j = sum_(k>j) M_k,
 * which runs from the last power down as T <- S_j + R^T T R and ends in
 * dL/dR = T R: 2K - 1 products for a ray of K tokens, where forming each
 * dR_k and folding those would take 3K - 2. T and R^T's partner T R use
 * the scratch that the Frechet derivative's inputs take afterwards. */
static void finish_ray_dense(BlockRotary *br, const Item *it, BrScratch *s, const Pe *pe,
                             const float *params, BrGenerator generator)
{
    const int b = br->b;
    const size_t bytes = (size_t)b * b * sizeof(float);
    const float *root = br->rot + item_offset(br, it, 0);
    float *sum = s->sum32, *t = s->g32, *rt = s->adj32;
    memcpy(sum, br->grad + item_offset(br, it, it->length - 1), bytes);
    memcpy(t, sum, bytes);
    for (int k = it->length - 2; k >= 0; k--) {
        float *above = br->grad + item_offset(br, it, k + 1);
        const float *m = br->grad + item_offset(br, it, k);
        memset(above, 0, bytes); /* the ray's gradient lands on its root */
        for (int e = 0; e < b * b; e++)
            sum[e] += m[e];
        blas_sgemm(false, false, b, b, b, 1.0f, t, b, root, b, 0.0f, rt, b);
        memcpy(t, sum, bytes);
        blas_sgemm(true, false, b, b, b, 1.0f, root, b, rt, b, 1.0f, t, b);
    }
    blas_sgemm(false, false, b, b, b, 1.0f, t, b, root, b, 0.0f, s->adj32, b);
    root_backward(br, it, s, pe, params, generator);
}

void br_finish(BlockRotary *br, const Pe *pe, const float *params, BrGenerator generator)
{
    const int items = item_count(br);
    br->grad_written = true;
#pragma omp parallel num_threads(region_threads(br))
    {
        BrScratch *s = &br->scratch[omp_get_thread_num()];
#pragma omp for schedule(static)
        for (int i = 0; i < items; i++) {
            const Item it = item_at(br, i);
            if (br_by_heads(br))
                finish_ray(br, &it, s, pe, params, generator);
            else
                finish_ray_dense(br, &it, s, pe, params, generator);
        }
    }
}

double br_linspace(double start, double end, int count, int i)
{
    if (count == 1)
        return start;
    const double step = (end - start) / (count - 1);
    return i < count / 2 ? start + step * i : end - step * (count - 1 - i);
}
