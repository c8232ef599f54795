/*
 * profile.h - where the time of a training step goes, by phase.
 *
 * Phases nest: prof_push starts a phase and pauses the enclosing one,
 * prof_pop ends it and resumes the enclosing one, so every second is
 * counted once, in the innermost phase (attention's GEMMs count as
 * attention, a whole-tensor rotation inside it as encoding, a rotation
 * done head by head inside its loop as attention). Only the main thread
 * pushes and pops, outside parallel regions. Off by default; when off,
 * push and pop cost one branch.
 */
#ifndef VITRAIN_PROFILE_H
#define VITRAIN_PROFILE_H

#include <stdbool.h>

typedef enum ProfPhase {
    PROF_ELEMENTWISE, /* norms, GELU, residuals, copies: the model time no other phase claims */
    PROF_GEMM,        /* the linear layers: patch embedding, qkv, proj, fc1, fc2, head */
    PROF_ATTENTION,   /* per-head scores, softmax and weighted sums, forward and backward */
    PROF_ENCODING,    /* the positional encoding's rotations and their preparation */
    PROF_OPTIMIZER,   /* gradient norm and AdamW */
    PROF_DATA,        /* waiting for the loader */
    PROF_PHASES
} ProfPhase;

void prof_enable(bool on);
/* Forgets the times measured so far. */
void prof_reset(void);
void prof_push(ProfPhase phase);
void prof_pop(void);
/* Seconds spent in each phase since the last reset (completed pushes). */
void prof_seconds(double seconds[PROF_PHASES]);
const char *prof_name(ProfPhase phase);

#endif
