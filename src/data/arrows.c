/*
 * arrows.c - the arrow task of LieRE §5.2 (see arrows.h): scene layout,
 * glyphs, rendering, and the image folder writer.
 */
#define _XOPEN_SOURCE 700 /* nftw */
#include "vitrain/arrows.h"

#include "vitrain/config.h"
#include "vitrain/rng.h"

#include <stdbool.h>

#include <errno.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <stb_image_write.h>

/* Base drawings, ARROWS_GLYPH x ARROWS_GLYPH, all pointing up: the arrow's
 * tip and the Y's stem at the top. A letter stays upright. The arrowhead
 * holds more ink than the shaft and the Y's arms more than its stem, so a
 * glyph's ink centroid lies towards an arrow's tip and away from a Y's stem
 * (the tests read directions back that way). */
static const char *const GLYPHS[GLYPH_COUNT][ARROWS_GLYPH] = {
    [GLYPH_ARROW] = {"....##....", "...####...", "..######..", ".########.", "....##....",
                     "....##....", "....##....", "....##....", "....##....", "....##...."},
    [GLYPH_A] = {"...####...", "..##..##..", ".##....##.", ".##....##.", ".########.",
                 ".########.", ".##....##.", ".##....##.", ".##....##.", ".##....##."},
    [GLYPH_B] = {".######...", ".##...##..", ".##...##..", ".##...##..", ".######...",
                 ".##....##.", ".##....##.", ".##....##.", ".##....##.", ".#######.."},
    [GLYPH_C] = {"...#####..", "..##...##.", ".##.......", ".##.......", ".##.......",
                 ".##.......", ".##.......", ".##.......", "..##...##.", "...#####.."},
    [GLYPH_D] = {".######...", ".##...##..", ".##....##.", ".##....##.", ".##....##.",
                 ".##....##.", ".##....##.", ".##....##.", ".##...##..", ".######..."},
    [GLYPH_E] = {".########.", ".##.......", ".##.......", ".##.......", ".#######..",
                 ".##.......", ".##.......", ".##.......", ".##.......", ".########."},
    [GLYPH_Y] = {"....##....", "....##....", "....##....", "....##....", "...####...",
                 "..##..##..", ".##....##.", ".##....##.", "##......##", "##......##"},
};

static const char *const CLASS_NAMES[ARROWS_CLASSES] = {
    [ARROW_DOWN] = "down", [ARROW_LEFT] = "left", [ARROW_RIGHT] = "right", [ARROW_UP] = "up"};

const char *arrows_class_name(int label)
{
    VT_ASSERT(label >= 0 && label < ARROWS_CLASSES);
    return CLASS_NAMES[label];
}

void arrows_step(ArrowDir dir, int *drow, int *dcol)
{
    *drow = dir == ARROW_DOWN ? 1 : dir == ARROW_UP ? -1 : 0;
    *dcol = dir == ARROW_RIGHT ? 1 : dir == ARROW_LEFT ? -1 : 0;
}

/* Clockwise quarter turns from up. */
static int quarter_turns(ArrowDir dir)
{
    switch (dir) {
    case ARROW_UP: return 0;
    case ARROW_RIGHT: return 1;
    case ARROW_DOWN: return 2;
    case ARROW_LEFT: return 3;
    }
    VT_ASSERT(!"unknown direction");
    return 0;
}

void arrows_glyph(uint8_t *out, ArrowGlyph glyph, ArrowDir dir)
{
    VT_ASSERT(glyph >= 0 && glyph < GLYPH_COUNT);
    enum { G = ARROWS_GLYPH, M = (ARROWS_CELL - ARROWS_GLYPH) / 2 };
    memset(out, 0, ARROWS_CELL * ARROWS_CELL);
    const int turns = quarter_turns(dir);
    for (int r = 0; r < G; r++) {
        for (int c = 0; c < G; c++) {
            /* A clockwise turn moves base pixel (r, c) to (c, G-1-r); read it back. */
            int br = r, bc = c;
            for (int t = 0; t < turns; t++) {
                int prev_r = G - 1 - bc, prev_c = br;
                br = prev_r;
                bc = prev_c;
            }
            if (GLYPHS[glyph][br][bc] == '#')
                out[(r + M) * ARROWS_CELL + c + M] = 255;
        }
    }
}

static bool cell_taken(const ArrowScene *s, int placed, int row, int col)
{
    for (int i = 0; i < placed; i++)
        if (s->objects[i].row == row && s->objects[i].col == col)
            return true;
    return false;
}

/* The Y at a random cell whose neighbour in the stem direction is inside
 * the board, then the labelled arrow in that neighbour. */
static void place_y_and_target(ArrowScene *s, Rng *rng)
{
    const int g = s->grid;
    const ArrowDir stem = (ArrowDir)rng_below(rng, ARROWS_CLASSES);
    int dr, dc;
    arrows_step(stem, &dr, &dc);
    /* Rows (columns) from which one step stays inside: drop the edge the stem faces. */
    const int row0 = dr < 0, rows = g - (dr != 0);
    const int col0 = dc < 0, cols = g - (dc != 0);
    const int row = row0 + (int)rng_below(rng, (uint32_t)rows);
    const int col = col0 + (int)rng_below(rng, (uint32_t)cols);
    s->objects[0] = (ArrowObject){GLYPH_Y, stem, row, col};
    s->objects[1] = (ArrowObject){GLYPH_ARROW, (ArrowDir)s->label, row + dr, col + dc};
}

void arrows_scene(ArrowScene *s, int grid, uint64_t seed, ArrowSplit split, int64_t index)
{
    VT_ASSERT(grid >= ARROWS_MIN_GRID && grid <= ARROWS_MAX_GRID);
    Rng rng = rng_stream(seed, RNG_ARROWS, (uint64_t)grid * 2 + (uint64_t)split,
                         (uint64_t)index);
    memset(s, 0, sizeof *s);
    s->grid = grid;
    s->label = (int)rng_below(&rng, ARROWS_CLASSES);
    place_y_and_target(s, &rng);
    /* The other 7 arrows and the letters A-E in free cells (rejection: at
     * least 16 cells for 14 objects, so it ends quickly). */
    for (int i = 2; i < ARROWS_OBJECTS; i++) {
        int row, col;
        do {
            row = (int)rng_below(&rng, (uint32_t)grid);
            col = (int)rng_below(&rng, (uint32_t)grid);
        } while (cell_taken(s, i, row, col));
        const bool arrow = i < ARROWS_ARROWS + 1;
        s->objects[i] = (ArrowObject){
            .glyph = arrow ? GLYPH_ARROW : (ArrowGlyph)(GLYPH_A + (i - ARROWS_ARROWS - 1)),
            .dir = arrow ? (ArrowDir)rng_below(&rng, ARROWS_CLASSES) : ARROW_UP,
            .row = row, .col = col};
    }
}

void arrows_render(uint8_t *pixels, const ArrowScene *s)
{
    const int S = s->grid * ARROWS_CELL;
    memset(pixels, 0, (size_t)S * S);
    uint8_t cell[ARROWS_CELL * ARROWS_CELL];
    for (int i = 0; i < ARROWS_OBJECTS; i++) {
        const ArrowObject *o = &s->objects[i];
        arrows_glyph(cell, o->glyph, o->dir);
        for (int r = 0; r < ARROWS_CELL; r++)
            memcpy(pixels + (size_t)(o->row * ARROWS_CELL + r) * S + o->col * ARROWS_CELL,
                   cell + r * ARROWS_CELL, ARROWS_CELL);
    }
}

/* ---- the folder writer ------------------------------------------------- */

static const char *split_name(ArrowSplit split)
{
    return split == ARROWS_TRAIN ? "train" : "val";
}

/* mkdir that accepts an existing folder. */
static VtCode make_dir(const char *path, VtError *err)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST)
        return vt_fail(err, VT_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    return VT_OK;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* Removes the folder at path and everything in it; 0, or -1 with errno. */
static int remove_tree(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS) : 0;
}

/* A partial folder left by an interrupted run is removed and written anew. */
static VtCode fresh_dir(const char *path, VtError *err)
{
    if (remove_tree(path) != 0)
        return vt_fail(err, VT_ERR_IO, "cannot remove the partial folder %s: %s", path,
                       strerror(errno));
    return make_dir(path, err);
}

/* stbi_write_png does not tell a failed write (a full disk) from a good
 * one: the PNG goes through this sink instead, which keeps the first
 * write's error, and fclose's verdict counts too. */
typedef struct PngSink {
    FILE *file;
    int error; /* errno of the first failed write, 0 if none */
} PngSink;

static void png_sink_write(void *context, void *data, int size)
{
    PngSink *sink = context;
    if (!sink->error && fwrite(data, 1, (size_t)size, sink->file) != (size_t)size)
        sink->error = errno ? errno : EIO;
}

static VtCode write_png(const char *path, const uint8_t *pixels, int side, VtError *err)
{
    PngSink sink = {fopen(path, "wb"), 0};
    if (!sink.file)
        return vt_fail(err, VT_ERR_IO, "cannot create %s: %s", path, strerror(errno));
    const bool encoded = stbi_write_png_to_func(png_sink_write, &sink, side, side, 1, pixels, side);
    if (fclose(sink.file) != 0 && !sink.error)
        sink.error = errno;
    if (!encoded)
        return vt_fail(err, VT_ERR_NOMEM, "cannot encode %s: out of memory", path);
    if (sink.error)
        return vt_fail(err, VT_ERR_IO, "cannot write %s: %s", path, strerror(sink.error));
    return VT_OK;
}

static VtCode write_images(const char *dir, ArrowSplit split, int grid, int count,
                           uint64_t seed, VtError *err)
{
    const int S = grid * ARROWS_CELL;
    uint8_t *pixels = vt_xmalloc((size_t)S * S);
    char path[VT_PATH_MAX + 64];
    VtCode code = VT_OK;
    for (int c = 0; c < ARROWS_CLASSES && !code; c++) {
        snprintf(path, sizeof path, "%s/%s", dir, arrows_class_name(c));
        code = make_dir(path, err);
    }
    for (int i = 0; i < count && !code; i++) {
        ArrowScene scene;
        arrows_scene(&scene, grid, seed, split, i);
        arrows_render(pixels, &scene);
        snprintf(path, sizeof path, "%s/%s/%06d.png", dir, arrows_class_name(scene.label), i);
        code = write_png(path, pixels, S, err);
    }
    free(pixels);
    return code;
}

VtCode arrows_write_split(const char *root, ArrowSplit split, int grid, int count,
                          uint64_t seed, VtError *err)
{
    if (grid < ARROWS_MIN_GRID || grid > ARROWS_MAX_GRID || count < 0)
        return vt_fail(err, VT_ERR_ARGUMENT, "bad arrow set: grid %d (%d..%d), %d images", grid,
                       ARROWS_MIN_GRID, ARROWS_MAX_GRID, count);
    char final[VT_PATH_MAX], partial[VT_PATH_MAX];
    if (snprintf(final, sizeof final, "%s/%s", root, split_name(split)) >= VT_PATH_MAX ||
        snprintf(partial, sizeof partial, "%s/.%s.partial", root, split_name(split)) >=
            VT_PATH_MAX)
        return vt_fail(err, VT_ERR_ARGUMENT, "the folder %s is too long a path", root);
    struct stat st;
    if (stat(final, &st) == 0)
        return vt_fail(err, VT_ERR_ARGUMENT,
                       "%s exists already; remove it to generate the set again", final);
    VtCode code = make_dir(root, err);
    if (!code)
        code = fresh_dir(partial, err);
    if (!code) {
        code = write_images(partial, split, grid, count, seed, err);
        if (code)
            remove_tree(partial); /* gives the space back; the error says why */
    }
    if (!code && rename(partial, final) != 0)
        code = vt_fail(err, VT_ERR_IO, "cannot rename %s to %s: %s", partial, final,
                       strerror(errno));
    return code;
}
