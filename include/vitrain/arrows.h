/*
 * arrows.h - the synthetic spatial task of LieRE §5.2 (DESIGN §6): which
 * way does the arrow point that the Y's stem points at?
 *
 * An image is a grid x grid board of 12 px cells holding 8 arrows and the
 * 6 letters A, B, C, D, E, Y, each in its own random cell. The Y is drawn
 * turned so that its stem points to one of its 4 neighbours, always one
 * inside the board, and that neighbour holds an arrow; the label is the
 * direction of that arrow. Solving it needs the relative position of two
 * tokens, not their content alone. The paper trains at 9 x 9 cells
 * (108 px) and tests at 14 x 14 (168 px) and 23 x 23 (276 px).
 *
 * Image i of a split comes from its own RNG_ARROWS stream keyed by (seed,
 * grid, split, i): a set is the same for a given seed whatever its size,
 * and train, val and every grid size are independent draws.
 */
#ifndef VITRAIN_ARROWS_H
#define VITRAIN_ARROWS_H

#include "vitrain/common.h"

#include <stdint.h>

enum {
    ARROWS_CELL = 12,      /* cell side in pixels */
    ARROWS_GLYPH = 10,     /* glyph side; drawn 1 px inside its cell */
    ARROWS_ARROWS = 8,     /* arrows per image */
    ARROWS_LETTERS = 6,    /* A, B, C, D, E, Y */
    ARROWS_OBJECTS = ARROWS_ARROWS + ARROWS_LETTERS,
    ARROWS_CLASSES = 4,
    ARROWS_MIN_GRID = 4,   /* room for 14 objects */
    ARROWS_MAX_GRID = 256
};

/* Directions, numbered like the class folders sorted by name, so that a
 * direction is its label in an ImageFolder-style data set. */
typedef enum ArrowDir { ARROW_DOWN, ARROW_LEFT, ARROW_RIGHT, ARROW_UP } ArrowDir;

typedef enum ArrowGlyph {
    GLYPH_ARROW, GLYPH_A, GLYPH_B, GLYPH_C, GLYPH_D, GLYPH_E, GLYPH_Y, GLYPH_COUNT
} ArrowGlyph;

typedef enum ArrowSplit { ARROWS_TRAIN, ARROWS_VAL } ArrowSplit;

typedef struct ArrowObject {
    ArrowGlyph glyph;
    ArrowDir dir;          /* an arrow's direction, the Y's stem; ARROW_UP for A-E */
    int row, col;          /* cell */
} ArrowObject;

/* One image's layout. objects[0] is the Y and objects[1] the arrow its
 * stem points at; the renderer does not care about the order. */
typedef struct ArrowScene {
    int grid;
    ArrowObject objects[ARROWS_OBJECTS];
    int label;             /* objects[1].dir */
} ArrowScene;

/* The folder name of a label: "down", "left", "right" or "up". */
const char *arrows_class_name(int label);

/* The cell step of a direction: (drow, dcol). */
void arrows_step(ArrowDir dir, int *drow, int *dcol);

/* Draws image `index` of a split. grid in [ARROWS_MIN_GRID, ARROWS_MAX_GRID]. */
void arrows_scene(ArrowScene *scene, int grid, uint64_t seed, ArrowSplit split, int64_t index);

/* One glyph as 0/255 pixels in a cell: out (ARROWS_CELL, ARROWS_CELL). The
 * base drawings point up (arrow tip, Y stem) and are turned a quarter
 * clockwise per step to point right, down and left. */
void arrows_glyph(uint8_t *out, ArrowGlyph glyph, ArrowDir dir);

/* Renders a scene: pixels (S, S) gray, S = grid * ARROWS_CELL, background 0,
 * glyph strokes 255. */
void arrows_render(uint8_t *pixels, const ArrowScene *scene);

/* Writes `count` images of a split as root/<split>/<class>/NNNNNN.png
 * (split "train" or "val", NNNNNN the image index). The images go to
 * root/.<split>.partial first, renamed when complete, so a folder that
 * exists is whole. Errors: root/<split> exists already (VT_ERR_ARGUMENT),
 * a folder or file that cannot be written (VT_ERR_IO), naming the path. */
VtCode arrows_write_split(const char *root, ArrowSplit split, int grid, int count,
                          uint64_t seed, VtError *err);

#endif
