/*
 * dist.h - data-parallel training over MPI ranks (DESIGN §1).
 *
 * Several processes (ranks) train one model: each computes the gradient of
 * its shard of every global batch, the gradients are averaged over the
 * ranks, and every rank applies the same optimizer step, so the parameters
 * stay identical everywhere. Rank 0 alone writes files.
 *
 * Built with `make MPI=1` (-DVT_MPI) this module speaks MPI; the default
 * build has a single rank, and every function below then does the trivial
 * thing (no communication), so callers need no #ifdef.
 *
 * Failures: a rank that hits an error returns it as usual; the ranks then
 * meet in dist_agree, which hands every rank the code of the first failing
 * rank, so all stop together instead of waiting forever for a rank that has
 * left the step loop. A rank that dies outright is noticed by mpirun, which
 * ends the others.
 */
#ifndef VITRAIN_DIST_H
#define VITRAIN_DIST_H

#include "vitrain/common.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Starts MPI (with threads funneled through the main thread) when built
 * with it; call once, before anything else, from main. A build without MPI
 * started by mpirun as one of several ranks fails (VT_ERR_ARGUMENT, naming
 * make MPI=1) rather than train the same run several times over. */
VtCode dist_init(int *argc, char ***argv, VtError *err);
/* Ends MPI; call once before exiting normally. */
void dist_finalize(void);

int dist_rank(void);
int dist_size(void);
/* Rank 0: the one that writes run folder files and prints progress. */
bool dist_is_root(void);
/* Ranks sharing this machine (1 without MPI): splits its cores among them. */
int dist_ranks_on_node(void);

/* Replaces data (the same count on every rank) by its mean over the ranks,
 * in a few large buckets. Every rank receives the same bytes. */
void dist_average(float *data, size_t count);
/* Replaces values by their sums over the ranks. */
void dist_sum(double *values, int count);
/* True on every rank when flag is true on any rank. */
bool dist_any(bool flag);

/* The collective check after a phase that may fail on some ranks only:
 * every rank passes its own code and gets back that of the lowest failing
 * rank (VT_OK when none failed). That rank keeps its message; on every
 * other rank the message is left empty (print nothing), so the reason is
 * printed once. Agreeing again on the same outcome changes nothing. */
VtCode dist_agree(VtCode code, VtError *err);

/* Checks that data (count floats, e.g. the parameters) is bit-identical on
 * every rank, comparing a 64-bit hash of its bytes (stored in *hash); a
 * mismatch is an internal error (VT_ERR_NUMERIC) naming `what`. Collective. */
VtCode dist_check_identical(const float *data, size_t count, const char *what, uint64_t *hash,
                            VtError *err);

/* Seconds spent in dist_average since start (communication time). */
double dist_comm_seconds(void);

#endif
