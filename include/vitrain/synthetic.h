/*
 * synthetic.h - procedurally generated in-memory data sets, so that the
 * engine can be trained and tested without any image files.
 *
 * Sample i is drawn from the RNG_SYNTHETIC stream (seed, i): a data set is
 * the same for a given seed whatever the count or the thread count.
 */
#ifndef VITRAIN_SYNTHETIC_H
#define VITRAIN_SYNTHETIC_H

#include <stdint.h>

/* Uniform noise in [-1, 1) with uniformly random labels in [0, K): nothing
 * to learn, everything to memorize. images (count, C, S, S). */
void synthetic_noise(float *images, int *labels, int count, int C, int S, int K, uint64_t seed);

/* A bright square of side max(2, S/4) at a random place inside one quadrant,
 * on a dim noise background; the label is the quadrant (0 top-left,
 * 1 top-right, 2 bottom-left, 3 bottom-right). Learnable only from where the
 * square is, so it exercises the position information. S >= 4. */
void synthetic_quadrant(float *images, int *labels, int count, int C, int S, uint64_t seed);

enum { SYNTHETIC_QUADRANT_CLASSES = 4 };

#endif
