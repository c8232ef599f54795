/*
 * schedule.c - linear warmup then cosine decay, per iteration (DESIGN §3).
 */
#include "vitrain/optim.h"

#include <math.h>

float lr_at_step(const LrSchedule *s, int64_t step)
{
    if (step < s->warmup_steps)
        return s->warmup_lr + (s->lr - s->warmup_lr) * (float)step / (float)s->warmup_steps;
    if (step >= s->total_steps)
        return s->min_lr;
    int64_t decay_steps = s->total_steps - s->warmup_steps;
    double progress = (double)(step - s->warmup_steps) / (double)decay_steps;
    return (float)(s->min_lr + 0.5 * (s->lr - s->min_lr) * (1.0 + cos(M_PI * progress)));
}
