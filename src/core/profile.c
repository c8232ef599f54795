/*
 * profile.c - exclusive time per phase (see profile.h).
 */
#include "vitrain/profile.h"

#include "vitrain/common.h"

#include <string.h>
#include <time.h>

enum { MAX_DEPTH = 16 };

static struct {
    bool on;
    int depth;
    ProfPhase stack[MAX_DEPTH];
    double since;             /* when the innermost phase last resumed */
    double seconds[PROF_PHASES];
} prof;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Charges the time since the last switch to the innermost phase. */
static double charge(void)
{
    const double t = now();
    if (prof.depth > 0)
        prof.seconds[prof.stack[prof.depth - 1]] += t - prof.since;
    return t;
}

void prof_enable(bool on)
{
    prof.on = on;
    prof.depth = 0;
}

void prof_reset(void)
{
    memset(prof.seconds, 0, sizeof prof.seconds);
}

void prof_push(ProfPhase phase)
{
    if (!prof.on)
        return;
    VT_ASSERT(prof.depth < MAX_DEPTH);
    prof.since = charge();
    prof.stack[prof.depth++] = phase;
}

void prof_pop(void)
{
    if (!prof.on)
        return;
    VT_ASSERT(prof.depth > 0);
    prof.since = charge();
    prof.depth--;
}

void prof_seconds(double seconds[PROF_PHASES])
{
    memcpy(seconds, prof.seconds, sizeof prof.seconds);
}

const char *prof_name(ProfPhase phase)
{
    static const char *const names[PROF_PHASES] = {"norms/elementwise", "GEMMs", "attention",
                                                   "encoding", "optimizer", "data"};
    return names[phase];
}
