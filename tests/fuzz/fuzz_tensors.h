/*
 * fuzz_tensors.h - the small fixed TensorList the checkpoint and
 * safetensors harnesses (and the seed generator) load against.
 */
#ifndef VITRAIN_FUZZ_TENSORS_H
#define VITRAIN_FUZZ_TENSORS_H

#include "vitrain/tensor.h"

static void fuzz_tensor_list(TensorList *list)
{
    tensor_list_init(list);
    const int64_t w[2] = {4, 3}, b[1] = {4}, s[3] = {1, 2, 2};
    tensor_list_add(list, w, 2, 0, INIT_NORMAL, 0.02f, "head.weight");
    tensor_list_add(list, b, 1, 0, INIT_ZEROS, 0.0f, "head.bias");
    tensor_list_add(list, s, 3, 0, INIT_ZEROS, 0.0f, "pos_embed");
}

#endif
