/*
 * pe_harness.h - checks every positional encoding shares (DESIGN §4):
 * the gradient of its rotation w.r.t. q/k and every parameter, and the
 * relative-position property of its attention logits.
 */
#ifndef VITRAIN_TESTS_PE_HARNESS_H
#define VITRAIN_TESTS_PE_HARNESS_H

#include "vitrain/pe.h"

/* The encoding's forward on head-major x (B, H, N, Dh) in place: its raw
 * rows are laid out from x (B, N, H*Dh) and rotated back into x. */
void pe_forward_in_place(const Pe *pe, int layer, float *x, const AttnDims *d);

/* Its backward on head-major dx in place: dx_raw from the encoding, split
 * back into dx. x_raw: rows of raw_stride = H*Dh. */
void pe_backward_in_place(Pe *pe, int layer, float *dx, const float *x_raw, const AttnDims *d);

/* A small geometry: depth 2, 2 heads, head_dim, grid x grid patches at
 * a training grid of grid0 x grid0. */
PeGeometry pe_test_geometry(int head_dim, int grid, int grid0);

/* Gradient check of an encoding (tests/gradcheck.h): the output is every
 * layer's rotated x for random raw x (B = 2), the inputs are the raw x and
 * every parameter tensor the encoding registers (moved off their init by
 * noise of std param_noise). Prints the errors; returns the max error. */
double pe_gradcheck(const PeOptions *o, const PeGeometry *g, double param_noise, uint64_t seed);

/* The attention logit of query vector q at token t1 and key vector k at
 * token t2 after rotation, for every pair of patch tokens and every shift
 * (dr, dc) that keeps both inside the grid: returns
 *   max |logit(t1, t2) - logit(t1 + shift, t2 + shift)| / max |logit|,
 * in layer `layer`, head 0. 0 up to rounding for a relative encoding. */
double pe_shift_violation(const PeOptions *o, const PeGeometry *g, int layer, double param_noise,
                          uint64_t seed);

/* Max |x^T x - (Rx)^T (Rx)| / |x|^2 over tokens and heads: R orthogonal. */
double pe_norm_violation(const PeOptions *o, const PeGeometry *g, uint64_t seed);

#endif
