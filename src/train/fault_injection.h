/*
 * fault_injection.h - a seam for tests of the trainer's fault handling.
 *
 * A numerical fault that comes and goes (one bad batch, a flipped bit)
 * cannot be produced from image files; tests set this hook to turn the
 * loss of chosen steps into a NaN. It is NULL in every real run.
 */
#ifndef VITRAIN_TRAIN_FAULT_INJECTION_H
#define VITRAIN_TRAIN_FAULT_INJECTION_H

#include <stdint.h>

/* Called with each step's loss before the update; its result is used in
 * place of the loss. */
extern double (*trainer_loss_hook)(int64_t step, double loss);

#endif
