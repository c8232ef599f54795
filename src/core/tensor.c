/*
 * tensor.c - named tensor lists and arenas (see tensor.h).
 */
#include "vitrain/tensor.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Offsets are rounded up to 16 floats so every tensor starts on a 64-byte
 * line: vector loads never straddle two tensors' cache lines. */
enum { ALIGN_FLOATS = 16 };

void tensor_list_init(TensorList *list)
{
    memset(list, 0, sizeof *list);
}

void tensor_list_free(TensorList *list)
{
    free(list->specs);
    memset(list, 0, sizeof *list);
}

int tensor_list_add(TensorList *list, const int64_t *shape, int ndim, unsigned flags,
                    TensorInit init, float init_value, const char *name_fmt, ...)
{
    VT_ASSERT(ndim >= 1 && ndim <= VT_TENSOR_MAX_DIMS);
    if (list->count == list->capacity) {
        list->capacity = list->capacity ? 2 * list->capacity : 32;
        list->specs = realloc(list->specs, (size_t)list->capacity * sizeof *list->specs);
        VT_ASSERT(list->specs != NULL);
    }
    TensorSpec *spec = &list->specs[list->count];
    memset(spec, 0, sizeof *spec);
    va_list args;
    va_start(args, name_fmt);
    int len = vsnprintf(spec->name, sizeof spec->name, name_fmt, args);
    va_end(args);
    VT_ASSERT(len > 0 && len < (int)sizeof spec->name);

    spec->ndim = ndim;
    spec->numel = 1;
    for (int i = 0; i < ndim; i++) {
        VT_ASSERT(shape[i] > 0);
        spec->shape[i] = shape[i];
        spec->numel *= (size_t)shape[i];
    }
    spec->flags = flags;
    spec->init = init;
    spec->init_value = init_value;
    spec->offset = list->total;
    list->total += (spec->numel + ALIGN_FLOATS - 1) / ALIGN_FLOATS * ALIGN_FLOATS;
    return list->count++;
}

int tensor_list_find(const TensorList *list, const char *name)
{
    for (int i = 0; i < list->count; i++)
        if (strcmp(list->specs[i].name, name) == 0)
            return i;
    return -1;
}

/* Arenas of 2 MiB and more start on a 2 MiB boundary and ask for
 * transparent huge pages (Linux maps them only where asked, by default):
 * the training step strides through tens of MiB of activations, and with
 * 4 KiB pages its TLB misses cost up to 4 % of the step (9-10 % of the
 * element-wise phase on ViT-Tiny, 3-7 % on ViT-S). The advice may be
 * refused; nothing depends on it. */
static void *arena_alloc(size_t bytes)
{
    const size_t huge = (size_t)2 << 20;
    if (bytes < huge)
        return aligned_alloc(64, (bytes + 63) / 64 * 64);
    const size_t rounded = (bytes + huge - 1) / huge * huge;
    void *p = aligned_alloc(huge, rounded);
#ifdef MADV_HUGEPAGE
    if (p)
        (void)madvise(p, rounded, MADV_HUGEPAGE);
#endif
    return p;
}

void arena_create(Arena *arena, const TensorList *list)
{
    arena->list = list;
    size_t bytes = (list->total ? list->total : ALIGN_FLOATS) * sizeof(float);
    arena->data = arena_alloc(bytes);
    if (!arena->data) {
        fprintf(stderr, "vitrain: out of memory allocating an arena of %zu bytes\n", bytes);
        abort();
    }
    memset(arena->data, 0, bytes);
}

void arena_free(Arena *arena)
{
    free(arena->data);
    arena->data = NULL;
    arena->list = NULL;
}

void arena_zero(Arena *arena)
{
    memset(arena->data, 0, arena->list->total * sizeof(float));
}

float *arena_tensor(const Arena *arena, int index)
{
    VT_ASSERT(index >= 0 && index < arena->list->count);
    return arena->data + arena->list->specs[index].offset;
}
