/*
 * patch_embed.c - the stride-P patch convolution of DESIGN §2 as
 * im2col + one GEMM. Row r = b * Np + gy * gw + gx of the column matrix is
 * patch (gy, gx) of image b flattened in (channel, row, col) order, which is
 * the memory order of the conv weight (D, C, P, P).
 */
#include "vitrain/common.h"
#include "vitrain/profile.h"
#include "vitrain/ops.h"

static void im2col(float *cols, const float *img, int B, int C, int Hi, int Wi, int P)
{
    const int gh = Hi / P, gw = Wi / P, Np = gh * gw, row_len = C * P * P;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < B * Np; r++) {
        int b = r / Np, gy = (r % Np) / gw, gx = r % gw;
        float *dst = cols + (int64_t)r * row_len;
        for (int c = 0; c < C; c++)
            for (int py = 0; py < P; py++) {
                const float *src =
                    img + (((int64_t)b * C + c) * Hi + (gy * P + py)) * Wi + gx * P;
                for (int px = 0; px < P; px++)
                    *dst++ = src[px];
            }
    }
}

/* The adjoint of im2col: the patches tile the image, so each pixel
 * receives exactly one column entry and the images split cleanly between
 * threads. */
static void col2im(float *img, const float *cols, int B, int C, int Hi, int Wi, int P)
{
    const int gh = Hi / P, gw = Wi / P, Np = gh * gw, row_len = C * P * P;
#pragma omp parallel for schedule(static)
    for (int r = 0; r < B * Np; r++) {
        int b = r / Np, gy = (r % Np) / gw, gx = r % gw;
        const float *src = cols + (int64_t)r * row_len;
        for (int c = 0; c < C; c++)
            for (int py = 0; py < P; py++) {
                float *dst = img + (((int64_t)b * C + c) * Hi + (gy * P + py)) * Wi + gx * P;
                for (int px = 0; px < P; px++)
                    dst[px] = *src++;
            }
    }
}

void patch_embed_forward(float *y, float *cols, const float *img, const float *w, const float *b,
                         int B, int C, int Hi, int Wi, int P, int D)
{
    VT_ASSERT(Hi % P == 0 && Wi % P == 0);
    const int Np = (Hi / P) * (Wi / P);
    prof_push(PROF_GEMM); /* the im2col copy is part of the patch projection */
    im2col(cols, img, B, C, Hi, Wi, P);
    linear_forward(y, cols, w, b, B * Np, C * P * P, D);
    prof_pop();
}

void patch_embed_backward(float *dimg, float *dcols, float *dw, float *db, const float *dy,
                          const float *cols, const float *w, int B, int C, int Hi, int Wi, int P,
                          int D)
{
    const int Np = (Hi / P) * (Wi / P), row_len = C * P * P;
    VT_ASSERT(!dimg || dcols);
    VT_ASSERT(Hi % P == 0 && Wi % P == 0); /* dimg is written whole only then */
    linear_backward(dimg ? dcols : NULL, dw, db, dy, cols, w, B * Np, row_len, D);
    if (dimg)
        col2im(dimg, dcols, B, C, Hi, Wi, P);
}
