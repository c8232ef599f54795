/*
 * test_arrows.c - the arrow task generator (src/data/arrows.c).
 *
 * The label is read back from the rendered pixels alone, without the
 * generator's bookkeeping: every cell is recognised by matching it against
 * the glyphs, the Y is found, its stem direction is read from its ink (the
 * arms hold more ink than the stem, so the centroid lies away from the
 * stem), the arrow in the cell it points at is found, and that arrow's
 * direction is read the same way (the head holds more ink than the shaft).
 * The decoded label must equal the generator's, for many images and every
 * grid size of the study.
 */
#include "fixtures.h"
#include "suites.h"

#include "vitrain/arrows.h"
#include "vitrain/cli.h"

#include <stb_image.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { CELL_PIXELS = ARROWS_CELL * ARROWS_CELL, NOT_FOUND = -1 };

typedef struct Decoded {
    int glyph_count[GLYPH_COUNT];
    int empty, unknown;
    int y_row, y_col;      /* the last Y found */
    int label;             /* the direction of the arrow the Y points at, or NOT_FOUND */
} Decoded;

static void copy_cell(uint8_t *cell, const uint8_t *pixels, int S, int row, int col)
{
    for (int r = 0; r < ARROWS_CELL; r++)
        memcpy(cell + r * ARROWS_CELL, pixels + (size_t)(row * ARROWS_CELL + r) * S +
                                           col * ARROWS_CELL, ARROWS_CELL);
}

/* Which glyph a cell shows (any orientation), GLYPH_COUNT for an empty
 * cell, -1 when nothing matches. */
static int recognise(const uint8_t *cell)
{
    bool empty = true;
    for (int i = 0; i < CELL_PIXELS; i++)
        empty = empty && cell[i] == 0;
    if (empty)
        return GLYPH_COUNT;
    uint8_t ref[CELL_PIXELS];
    for (int g = 0; g < GLYPH_COUNT; g++)
        for (int d = 0; d < ARROWS_CLASSES; d++) {
            arrows_glyph(ref, (ArrowGlyph)g, (ArrowDir)d);
            if (memcmp(ref, cell, CELL_PIXELS) == 0)
                return g;
        }
    return -1;
}

/* The side of the cell centre where the ink's centroid lies. */
static ArrowDir heavy_side(const uint8_t *cell)
{
    double sum = 0, sr = 0, sc = 0;
    for (int r = 0; r < ARROWS_CELL; r++)
        for (int c = 0; c < ARROWS_CELL; c++) {
            sum += cell[r * ARROWS_CELL + c];
            sr += cell[r * ARROWS_CELL + c] * (r - (ARROWS_CELL - 1) / 2.0);
            sc += cell[r * ARROWS_CELL + c] * (c - (ARROWS_CELL - 1) / 2.0);
        }
    ck_assert(sum > 0);
    ck_assert_msg(fabs(sr) > 0.5 * sum || fabs(sc) > 0.5 * sum, "a glyph without a direction");
    if (fabs(sr) > fabs(sc))
        return sr < 0 ? ARROW_UP : ARROW_DOWN;
    return sc < 0 ? ARROW_LEFT : ARROW_RIGHT;
}

static ArrowDir opposite(ArrowDir d)
{
    switch (d) {
    case ARROW_UP: return ARROW_DOWN;
    case ARROW_DOWN: return ARROW_UP;
    case ARROW_LEFT: return ARROW_RIGHT;
    case ARROW_RIGHT: return ARROW_LEFT;
    }
    return d;
}

/* Reads the layout and the label from an S x S rendering of a grid x grid board. */
static Decoded decode(const uint8_t *pixels, int grid)
{
    const int S = grid * ARROWS_CELL;
    Decoded d = {.label = NOT_FOUND, .y_row = NOT_FOUND, .y_col = NOT_FOUND};
    uint8_t cell[CELL_PIXELS];
    ArrowDir stem = ARROW_UP;
    for (int row = 0; row < grid; row++)
        for (int col = 0; col < grid; col++) {
            copy_cell(cell, pixels, S, row, col);
            int g = recognise(cell);
            if (g == GLYPH_COUNT) {
                d.empty++;
            } else if (g < 0) {
                d.unknown++;
            } else {
                d.glyph_count[g]++;
                if (g == GLYPH_Y) {
                    d.y_row = row, d.y_col = col;
                    stem = opposite(heavy_side(cell));
                }
            }
        }
    if (d.y_row == NOT_FOUND)
        return d;
    int dr, dc;
    arrows_step(stem, &dr, &dc);
    const int row = d.y_row + dr, col = d.y_col + dc;
    if (row < 0 || row >= grid || col < 0 || col >= grid)
        return d;
    copy_cell(cell, pixels, S, row, col);
    if (recognise(cell) == GLYPH_ARROW)
        d.label = heavy_side(cell);
    return d;
}

static const int STUDY_GRIDS[] = {ARROWS_MIN_GRID, 9, 14, 23};

START_TEST(test_label_read_back_from_pixels)
{
    for (size_t g = 0; g < sizeof STUDY_GRIDS / sizeof STUDY_GRIDS[0]; g++) {
        const int grid = STUDY_GRIDS[g], S = grid * ARROWS_CELL;
        uint8_t *pixels = malloc((size_t)S * S);
        for (int i = 0; i < 300; i++) {
            ArrowScene scene;
            const ArrowSplit split = i % 2 ? ARROWS_VAL : ARROWS_TRAIN;
            arrows_scene(&scene, grid, (uint64_t)(i % 7), split, i);
            arrows_render(pixels, &scene);
            Decoded d = decode(pixels, grid);
            ck_assert_msg(d.label == scene.label, "grid %d image %d: read %d, labelled %d", grid,
                          i, d.label, scene.label);
        }
        free(pixels);
    }
}
END_TEST

START_TEST(test_exact_object_counts)
{
    for (size_t g = 0; g < sizeof STUDY_GRIDS / sizeof STUDY_GRIDS[0]; g++) {
        const int grid = STUDY_GRIDS[g], S = grid * ARROWS_CELL;
        uint8_t *pixels = malloc((size_t)S * S);
        for (int i = 0; i < 100; i++) {
            ArrowScene scene;
            arrows_scene(&scene, grid, 3, ARROWS_TRAIN, i);
            arrows_render(pixels, &scene);
            Decoded d = decode(pixels, grid);
            ck_assert_int_eq(d.unknown, 0);
            ck_assert_int_eq(d.glyph_count[GLYPH_ARROW], ARROWS_ARROWS);
            for (int l = GLYPH_A; l <= GLYPH_Y; l++)
                ck_assert_msg(d.glyph_count[l] == 1, "grid %d image %d: %d of glyph %d", grid,
                              i, d.glyph_count[l], l);
            ck_assert_int_eq(d.empty, grid * grid - ARROWS_OBJECTS);
        }
        free(pixels);
    }
}
END_TEST

/* Renders image (seed, split, index) of a grid into a malloc'ed buffer. */
static uint8_t *render(int grid, uint64_t seed, ArrowSplit split, int64_t index)
{
    const int S = grid * ARROWS_CELL;
    uint8_t *pixels = malloc((size_t)S * S);
    ArrowScene scene;
    arrows_scene(&scene, grid, seed, split, index);
    arrows_render(pixels, &scene);
    return pixels;
}

START_TEST(test_determined_by_the_seed)
{
    const int grid = 9;
    const size_t bytes = (size_t)(grid * ARROWS_CELL) * (grid * ARROWS_CELL);
    for (int i = 0; i < 20; i++) {
        uint8_t *a = render(grid, 5, ARROWS_TRAIN, i), *b = render(grid, 5, ARROWS_TRAIN, i);
        uint8_t *other_seed = render(grid, 6, ARROWS_TRAIN, i);
        uint8_t *other_split = render(grid, 5, ARROWS_VAL, i);
        uint8_t *other_index = render(grid, 5, ARROWS_TRAIN, i + 1);
        ck_assert(memcmp(a, b, bytes) == 0);
        ck_assert(memcmp(a, other_seed, bytes) != 0);
        ck_assert(memcmp(a, other_split, bytes) != 0);
        ck_assert(memcmp(a, other_index, bytes) != 0);
        free(a), free(b), free(other_seed), free(other_split), free(other_index);
    }
}
END_TEST

START_TEST(test_every_class_and_stem_direction_occurs)
{
    int labels[ARROWS_CLASSES] = {0}, stems[ARROWS_CLASSES] = {0};
    for (int i = 0; i < 400; i++) {
        ArrowScene scene;
        arrows_scene(&scene, 9, 0, ARROWS_TRAIN, i);
        labels[scene.label]++;
        stems[scene.objects[0].dir]++;
    }
    /* 400 draws of 4 equally likely values: each near 100. */
    for (int c = 0; c < ARROWS_CLASSES; c++) {
        ck_assert_msg(labels[c] > 60, "label %s: %d of 400", arrows_class_name(c), labels[c]);
        ck_assert_msg(stems[c] > 60, "stem %d: %d of 400", c, stems[c]);
    }
}
END_TEST

START_TEST(test_folder_holds_the_rendered_images)
{
    char root[256], data[300], path[400];
    fixture_temp_dir(root, sizeof root);
    snprintf(data, sizeof data, "%s/arrows", root);
    VtError err;
    const int grid = ARROWS_MIN_GRID, S = grid * ARROWS_CELL, count = 24;
    ck_assert_msg(arrows_write_split(data, ARROWS_VAL, grid, count, 7, &err) == VT_OK, "%s",
                  err.message);
    for (int i = 0; i < count; i++) {
        ArrowScene scene;
        arrows_scene(&scene, grid, 7, ARROWS_VAL, i);
        snprintf(path, sizeof path, "%s/val/%s/%06d.png", data, arrows_class_name(scene.label),
                 i);
        int w, h, n;
        uint8_t *png = stbi_load(path, &w, &h, &n, 1);
        ck_assert_msg(png != NULL, "%s: %s", path, stbi_failure_reason());
        ck_assert_int_eq(w, S);
        ck_assert_int_eq(h, S);
        uint8_t *expected = render(grid, 7, ARROWS_VAL, i);
        ck_assert(memcmp(png, expected, (size_t)S * S) == 0);
        free(expected);
        stbi_image_free(png);
    }
    /* A finished split is never overwritten, and no partial folder is left. */
    ck_assert_int_eq(arrows_write_split(data, ARROWS_VAL, grid, count, 7, &err),
                     VT_ERR_ARGUMENT);
    ck_assert_ptr_nonnull(strstr(err.message, "exists already"));
    snprintf(path, sizeof path, "%s/.val.partial", data);
    ck_assert_ptr_null(fopen(path, "r"));
    fixture_remove_tree(root);
}
END_TEST

START_TEST(test_command_line)
{
    char root[256], out[300], log[320];
    fixture_temp_dir(root, sizeof root);
    snprintf(out, sizeof out, "%s/set", root);
    snprintf(log, sizeof log, "%s/log.txt", root);
    ck_assert_ptr_nonnull(freopen(log, "w", stdout));
    ck_assert_ptr_nonnull(freopen(log, "a", stderr));
    const char *ok[] = {"--out", out, "--grid", "5", "--train", "12", "--val", "4", NULL};
    ck_assert_int_eq(cli_arrows(8, (char **)ok), EXIT_OK);
    const char *bad_grid[] = {"--out", out, "--grid", "3", NULL};
    ck_assert_int_eq(cli_arrows(4, (char **)bad_grid), EXIT_USAGE);
    const char *no_out[] = {"--grid", "9", NULL};
    ck_assert_int_eq(cli_arrows(2, (char **)no_out), EXIT_USAGE);
    const char *again[] = {"--out", out, "--grid", "5", "--val", "0", NULL};
    ck_assert_int_eq(cli_arrows(6, (char **)again), EXIT_USAGE);
    fflush(stdout);
    fflush(stderr);
    const char *text = fixture_read_text(log);
    ck_assert_ptr_nonnull(strstr(text, "set/train: 12 images of 60 px"));
    ck_assert_ptr_nonnull(strstr(text, "bad --grid '3'"));
    ck_assert_ptr_nonnull(strstr(text, "train exists already"));
    fixture_remove_tree(root);
}
END_TEST

Suite *arrows_suite(void)
{
    Suite *s = suite_create("arrows");
    TCase *tc = tcase_with_timeout("arrows", 30, NULL);
    tcase_add_test(tc, test_label_read_back_from_pixels);
    tcase_add_test(tc, test_exact_object_counts);
    tcase_add_test(tc, test_determined_by_the_seed);
    tcase_add_test(tc, test_every_class_and_stem_direction_occurs);
    tcase_add_test(tc, test_folder_holds_the_rendered_images);
    tcase_add_test(tc, test_command_line);
    suite_add_tcase(s, tc);
    return s;
}
