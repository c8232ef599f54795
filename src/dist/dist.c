/*
 * dist.c - ranks, gradient averaging and failure agreement (see dist.h).
 *
 * Two implementations behind one interface: with VT_MPI (make MPI=1) over
 * MPI_COMM_WORLD, otherwise a single rank that never communicates. Only
 * this file knows which one was built.
 */
#include "vitrain/dist.h"

#include "vitrain/metrics.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef VT_MPI
#include <mpi.h>
#endif

static double comm_seconds;

double dist_comm_seconds(void)
{
    return comm_seconds;
}

/* 64-bit hash of a byte range: 8-byte words through the SplitMix64
 * finaliser, the length mixed in, so any changed bit changes the result. */
static uint64_t hash_bytes(const void *data, size_t bytes)
{
    const unsigned char *p = data;
    uint64_t h = 0x9e3779b97f4a7c15ULL ^ bytes;
    for (size_t i = 0; i < bytes; i += 8) {
        uint64_t w = 0;
        memcpy(&w, p + i, bytes - i < 8 ? bytes - i : 8);
        h ^= w;
        h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
        h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
        h ^= h >> 31;
    }
    return h;
}

#ifdef VT_MPI

/* Gradients travel in buckets of at most this many floats: large enough
 * for full bandwidth, small enough to stay far below MPI's int counts. */
enum { BUCKET_FLOATS = 1 << 22 };

static int world_rank, world_size = 1, node_size = 1;

VtCode dist_init(int *argc, char ***argv, VtError *err)
{
    (void)err;
    int provided;
    /* Only the main thread calls MPI; OpenMP and the loader thread never do. */
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size);
    MPI_Comm node;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, world_rank, MPI_INFO_NULL, &node);
    MPI_Comm_size(node, &node_size);
    MPI_Comm_free(&node);
    return VT_OK;
}

void dist_finalize(void)
{
    MPI_Finalize();
}

int dist_rank(void)
{
    return world_rank;
}

int dist_size(void)
{
    return world_size;
}

int dist_ranks_on_node(void)
{
    return node_size;
}

void dist_average(float *data, size_t count)
{
    if (world_size == 1)
        return;
    const double t0 = now_seconds();
    for (size_t first = 0; first < count; first += BUCKET_FLOATS) {
        const int n = (int)VT_MIN((size_t)BUCKET_FLOATS, count - first);
        MPI_Allreduce(MPI_IN_PLACE, data + first, n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
    const float scale = 1.0f / (float)world_size;
    for (size_t i = 0; i < count; i++)
        data[i] *= scale;
    comm_seconds += now_seconds() - t0;
}

void dist_sum(double *values, int count)
{
    if (world_size > 1)
        MPI_Allreduce(MPI_IN_PLACE, values, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
}

bool dist_any(bool flag)
{
    int any = flag;
    if (world_size > 1)
        MPI_Allreduce(MPI_IN_PLACE, &any, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD);
    return any != 0;
}

VtCode dist_agree(VtCode code, VtError *err)
{
    if (world_size == 1)
        return code;
    /* Who speaks: the lowest failing rank with a message, else the lowest
     * failing one (MINLOC over a rank-ordered key); its code follows in a
     * tiny broadcast. A failing rank that stays silent has already been
     * through an agreement whose speaker printed the reason, so agreeing
     * twice on the same outcome keeps the same speaker. */
    const bool failed = code != VT_OK, says = failed && err && err->message[0];
    struct { int key, rank; } mine = {says ? world_rank : failed ? world_size + world_rank
                                                                 : 2 * world_size,
                                      world_rank},
                              first;
    MPI_Allreduce(&mine, &first, 1, MPI_2INT, MPI_MINLOC, MPI_COMM_WORLD);
    if (first.key == 2 * world_size)
        return VT_OK;
    const int speaker = first.key % world_size;
    int agreed = speaker == world_rank ? (int)code : 0;
    MPI_Bcast(&agreed, 1, MPI_INT, speaker, MPI_COMM_WORLD);
    if (speaker != world_rank)
        vt_fail(err, (VtCode)agreed, "%s", "");
    return (VtCode)agreed;
}

VtCode dist_check_identical(const float *data, size_t count, const char *what, uint64_t *hash,
                            VtError *err)
{
    const uint64_t h = hash_bytes(data, count * sizeof *data);
    *hash = h;
    uint64_t lo = h, hi = h;
    if (world_size > 1) {
        MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
        MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    }
    if (lo != hi)
        return vt_fail(err, VT_ERR_NUMERIC,
                       "the %s differ between ranks (hashes %016llx to %016llx): the ranks "
                       "no longer train the same model",
                       what, (unsigned long long)lo, (unsigned long long)hi);
    return VT_OK;
}

#else /* a single process */

VtCode dist_init(int *argc, char ***argv, VtError *err)
{
    (void)argc;
    (void)argv;
    /* Set by Open MPI's and MPICH's (Hydra) launchers for every rank. */
    const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++) {
        const char *ranks = getenv(vars[i]);
        if (ranks && atoi(ranks) > 1)
            return vt_fail(err, VT_ERR_ARGUMENT,
                           "this vitrain was built without MPI, but mpirun started it as one of "
                           "%s ranks (%s): build it with 'make MPI=1'",
                           ranks, vars[i]);
    }
    return VT_OK;
}

void dist_finalize(void)
{
}

int dist_rank(void)
{
    return 0;
}

int dist_size(void)
{
    return 1;
}

int dist_ranks_on_node(void)
{
    return 1;
}

void dist_average(float *data, size_t count)
{
    (void)data;
    (void)count;
}

void dist_sum(double *values, int count)
{
    (void)values;
    (void)count;
}

bool dist_any(bool flag)
{
    return flag;
}

VtCode dist_agree(VtCode code, VtError *err)
{
    (void)err;
    return code;
}

VtCode dist_check_identical(const float *data, size_t count, const char *what, uint64_t *hash,
                            VtError *err)
{
    (void)what;
    (void)err;
    *hash = hash_bytes(data, count * sizeof *data);
    return VT_OK;
}

#endif

bool dist_is_root(void)
{
    return dist_rank() == 0;
}
