/*
 * vit_internal.h - what the model's two source files share.
 */
#ifndef VITRAIN_MODEL_VIT_INTERNAL_H
#define VITRAIN_MODEL_VIT_INTERNAL_H

#include "vitrain/vit.h"

/* Registers every parameter of m->cfg in m->param_list, timm's names and
 * order (DESIGN §2), creates the positional encoding and records the
 * indices in m. Fails when the encoding does not fit the model. */
VtCode vit_build_params(Vit *m, VtError *err);

#endif
