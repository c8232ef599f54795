/*
 * tensor.h - named tensor lists and the arenas carved from them.
 *
 * A TensorList is the data-driven description of a set of float tensors: a
 * name (timm's, for parameters; DESIGN §2), a shape, flags and an offset into
 * one flat buffer. An Arena is one such buffer for one role. Parameters,
 * gradients and the optimizer moments all use the same list, so element i of
 * every arena belongs to the same scalar of the same tensor, and the
 * optimizer runs over flat arrays.
 */
#ifndef VITRAIN_TENSOR_H
#define VITRAIN_TENSOR_H

#include "vitrain/common.h"

#include <stdbool.h>

enum { VT_TENSOR_NAME_MAX = 96, VT_TENSOR_MAX_DIMS = 5 };

/* Parameter flags. */
enum {
    VT_TENSOR_NO_DECAY = 1u << 0  /* excluded from weight decay (DESIGN §3) */
};

/* How a parameter is initialised (vit_init_params). */
typedef enum TensorInit {
    INIT_ZEROS,
    INIT_ONES,
    INIT_CONST,        /* every element = init_value */
    INIT_TRUNC_NORMAL, /* N(0, init_value^2) truncated to +-2 std, like timm */
    INIT_NORMAL,       /* N(0, init_value^2) */
    INIT_UNIFORM_FAN   /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)), PyTorch's default for conv */
} TensorInit;

typedef struct TensorSpec {
    char name[VT_TENSOR_NAME_MAX];
    int ndim;
    int64_t shape[VT_TENSOR_MAX_DIMS];
    size_t numel;
    size_t offset;  /* in floats, 16-float aligned */
    unsigned flags;
    TensorInit init;
    float init_value;
} TensorSpec;

typedef struct TensorList {
    TensorSpec *specs;
    int count;
    int capacity;
    size_t total;  /* floats needed by an arena of this list */
} TensorList;

void tensor_list_init(TensorList *list);
void tensor_list_free(TensorList *list);

/* Appends a tensor; shape has ndim entries. Returns its index. The name is
 * printf-formatted so that callers can write "blocks.%d.attn.qkv.weight". */
int tensor_list_add(TensorList *list, const int64_t *shape, int ndim, unsigned flags,
                    TensorInit init, float init_value, const char *name_fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 7, 8)))
#endif
    ;

/* Index of the tensor called name, or -1. */
int tensor_list_find(const TensorList *list, const char *name);

/* One flat float buffer laid out by a TensorList. */
typedef struct Arena {
    const TensorList *list;
    float *data;  /* list->total floats, 64-byte aligned, zeroed */
} Arena;

void arena_create(Arena *arena, const TensorList *list);
void arena_free(Arena *arena);
void arena_zero(Arena *arena);
/* Pointer to the first element of tensor index in this arena. */
float *arena_tensor(const Arena *arena, int index);

#endif
