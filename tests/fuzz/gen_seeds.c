/*
 * gen_seeds.c - writes the non-text seed inputs of tests/fuzz/corpus/: a
 * tiny PNG and PGM, a checkpoint and a safetensors file for the harnesses'
 * TensorList (fuzz_tensors.h). Run once from the repository root:
 *   build/fuzz/gen_seeds tests/fuzz/corpus
 */
#include "fuzz_tensors.h"

#include "vitrain/checkpoint.h"

#include <stb_image_write.h>
#include <stdio.h>
#include <stdlib.h>

static void check(VtCode code, const VtError *err)
{
    if (code != VT_OK) {
        fprintf(stderr, "gen_seeds: %s\n", err->message);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gen_seeds CORPUS_DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    char path[512];

    unsigned char rgb[12 * 10 * 3], gray[5 * 9];
    for (int i = 0; i < (int)sizeof rgb; i++)
        rgb[i] = (unsigned char)(i * 37);
    for (int i = 0; i < (int)sizeof gray; i++)
        gray[i] = (unsigned char)(i * 11);
    snprintf(path, sizeof path, "%s/image/rgb12x10.png", dir);
    if (!stbi_write_png(path, 12, 10, 3, rgb, 12 * 3))
        return 1;
    snprintf(path, sizeof path, "%s/image/gray9x5.png", dir);
    if (!stbi_write_png(path, 9, 5, 1, gray, 9))
        return 1;
    snprintf(path, sizeof path, "%s/image/rgba10x10.bmp", dir);
    unsigned char rgba[10 * 10 * 4];
    for (int i = 0; i < (int)sizeof rgba; i++)
        rgba[i] = (unsigned char)(i * 13);
    if (!stbi_write_bmp(path, 10, 10, 4, rgba))
        return 1;

    TensorList list;
    fuzz_tensor_list(&list);
    float *p = calloc(list.total, sizeof *p), *m = calloc(list.total, sizeof *m),
          *v = calloc(list.total, sizeof *v);
    if (!p || !m || !v)
        return 1;
    for (size_t i = 0; i < list.total; i++) {
        p[i] = 0.25f * (float)i - 1.0f;
        m[i] = 0.01f * (float)i;
        v[i] = 0.001f * (float)i;
    }
    VtError err = {0};
    CheckpointState st = {.step = 7, .epoch = 1, .optim_t = 7, .best_top1 = 0.5,
                          .config = "[train]\nepochs = 2\n"};
    snprintf(path, sizeof path, "%s/checkpoint/small.ckpt", dir);
    check(checkpoint_save(path, &st, &list, p, m, v, &err), &err);
    st.config = NULL;
    snprintf(path, sizeof path, "%s/checkpoint/noconfig.ckpt", dir);
    check(checkpoint_save(path, &st, &list, p, m, v, &err), &err);

    snprintf(path, sizeof path, "%s/safetensors/small.safetensors", dir);
    check(safetensors_save(path, &list, p, "[train]\nepochs = 2\n", &err), &err);
    snprintf(path, sizeof path, "%s/safetensors/noconfig.safetensors", dir);
    check(safetensors_save(path, &list, p, NULL, &err), &err);

    free(p);
    free(m);
    free(v);
    tensor_list_free(&list);
    return 0;
}
