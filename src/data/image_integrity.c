/*
 * image_integrity.c - whole-file checks before decoding (see
 * image_integrity.h). Layouts: the PNG chunk list (length, type, data,
 * CRC-32 of type and data), the BMP file and info headers
 * (BITMAPCOREHEADER and BITMAPINFOHEADER and later), the TGA 18-byte header
 * with its run-length packets, the Netpbm P5/P6 header, the GIF trailer
 * byte 0x3B.
 */
#include "image_integrity.h"

#include "vitrain/crc32.h"

#include <stdio.h>
#include <string.h>

static uint32_t u32be(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static uint32_t u16le(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8;
}

static uint32_t u32le(const uint8_t *p)
{
    return u16le(p) | u16le(p + 2) << 16;
}

static bool too_short(const char *format, uint64_t declared, size_t size, char *why,
                      size_t why_size)
{
    if (declared <= size)
        return false;
    snprintf(why, why_size, "truncated %s: the header declares %llu bytes, the file has %zu",
             format, (unsigned long long)declared, size);
    return true;
}

/* ---- PNG ---------------------------------------------------------------- */

/* Walks the chunks up to IEND, checking that each fits in the file and
 * that the CRC of each critical chunk (IHDR, PLTE, IDAT, ...: an upper-case
 * first letter) matches. Like libpng, a damaged ancillary chunk (text,
 * gamma, ...) is let through: the pixels do not depend on it. */
static bool png_damaged(const uint8_t *b, size_t size, char *why, size_t why_size)
{
    size_t at = 8;
    while (at + 12 <= size) {
        const uint32_t length = u32be(b + at);
        const uint8_t *type = b + at + 4;
        if (length > size - at - 12)
            break;
        const uint32_t stored = u32be(b + at + 8 + length);
        const bool critical = type[0] >= 'A' && type[0] <= 'Z';
        if (critical && crc32_update(0, type, 4 + (size_t)length) != stored) {
            char name[5];
            for (int i = 0; i < 4; i++)
                name[i] = type[i] >= 0x20 && type[i] < 0x7F ? (char)type[i] : '?';
            name[4] = '\0';
            snprintf(why, why_size, "corrupt PNG: the checksum of the %s chunk at byte %zu "
                     "does not match", name, at);
            return true;
        }
        if (memcmp(type, "IEND", 4) == 0)
            return false;
        at += 12 + (size_t)length;
    }
    snprintf(why, why_size, "truncated PNG: the file (%zu bytes) ends before the IEND chunk",
             size);
    return true;
}

/* ---- BMP ---------------------------------------------------------------- */

/* Uncompressed rows are padded to 4 bytes; run-length encoded BMPs (rare)
 * are left to the decoder. */
static bool bmp_truncated(const uint8_t *b, size_t size, char *why, size_t why_size)
{
    if (size < 30)
        return false;
    uint32_t offset = u32le(b + 10), info = u32le(b + 14);
    int64_t w, h;
    uint32_t bpp, compression = 0;
    if (info == 12) {
        w = u16le(b + 18), h = u16le(b + 20), bpp = u16le(b + 24);
    } else if (info >= 40 && size >= 34) {
        w = (int32_t)u32le(b + 18), h = (int32_t)u32le(b + 22);
        bpp = u16le(b + 28), compression = u32le(b + 30);
    } else {
        return false;
    }
    const bool uncompressed = compression == 0 || compression == 3 || compression == 6;
    if (!uncompressed || w <= 0 || bpp == 0 || bpp > 32)
        return false;
    const uint64_t stride = ((uint64_t)w * bpp + 31) / 32 * 4;
    const uint64_t rows = (uint64_t)(h < 0 ? -h : h);
    return too_short("BMP", offset + stride * rows, size, why, why_size);
}

/* ---- TGA ---------------------------------------------------------------- */

/* TGA has no magic number: a header is taken as TGA only when every field
 * is one stb_image accepts. */
static bool tga_header(const uint8_t *b, size_t size)
{
    const uint32_t colormap = b[1], type = b[2], bpp = b[16];
    const bool known_type = type == 1 || type == 2 || type == 3 || type == 9 || type == 10 ||
                            type == 11;
    const bool known_bpp = bpp == 8 || bpp == 15 || bpp == 16 || bpp == 24 || bpp == 32;
    return size >= 18 && colormap <= 1 && known_type && known_bpp && u16le(b + 12) > 0 &&
           u16le(b + 14) > 0;
}

/* Walks the run-length packets: a header byte, then one pixel (a run) or
 * n pixels (raw). Returns the bytes the pixels need. */
static uint64_t tga_rle_length(const uint8_t *b, size_t size, size_t start, uint64_t pixels,
                               uint32_t pixel_bytes)
{
    uint64_t at = start;
    while (pixels > 0 && at < size) {
        const uint32_t count = (b[at] & 0x7F) + 1u;
        const bool run = b[at] & 0x80;
        at += 1 + (uint64_t)(run ? 1 : count) * pixel_bytes;
        pixels -= count < pixels ? count : pixels;
    }
    return pixels > 0 ? at + 1 : at; /* ran out of bytes: one more was needed */
}

static bool tga_truncated(const uint8_t *b, size_t size, char *why, size_t why_size)
{
    if (!tga_header(b, size))
        return false;
    const uint32_t type = b[2];
    const uint32_t pixel_bytes = (b[16] + 7u) / 8u;
    const uint32_t map_bytes = b[1] ? u16le(b + 5) * ((b[7] + 7u) / 8u) : 0;
    const size_t start = 18 + (size_t)b[0] + map_bytes;
    const uint64_t pixels = (uint64_t)u16le(b + 12) * u16le(b + 14);
    const uint64_t declared = type >= 9 ? tga_rle_length(b, size, start, pixels, pixel_bytes)
                                        : start + pixels * pixel_bytes;
    return too_short("TGA", declared, size, why, why_size);
}

/* ---- PGM/PPM ------------------------------------------------------------- */

/* Skips whitespace and '#' comments; returns the next position. */
static size_t pnm_skip(const uint8_t *b, size_t size, size_t at)
{
    while (at < size) {
        if (b[at] == '#') {
            while (at < size && b[at] != '\n')
                at++;
        } else if (b[at] == ' ' || (b[at] >= '\t' && b[at] <= '\r')) {
            at++;
        } else {
            break;
        }
    }
    return at;
}

static bool pnm_number(const uint8_t *b, size_t size, size_t *at, uint64_t *value)
{
    *at = pnm_skip(b, size, *at);
    if (*at >= size || b[*at] < '0' || b[*at] > '9')
        return false;
    *value = 0;
    while (*at < size && b[*at] >= '0' && b[*at] <= '9' && *value < (1u << 30))
        *value = *value * 10 + (uint64_t)(b[(*at)++] - '0');
    return true;
}

/* Binary P5 (gray) and P6 (RGB); samples of two bytes when maxval > 255.
 * Exactly one whitespace byte separates the header from the pixels. */
static bool pnm_truncated(const uint8_t *b, size_t size, char *why, size_t why_size)
{
    size_t at = 2;
    uint64_t w, h, maxval;
    if (!pnm_number(b, size, &at, &w) || !pnm_number(b, size, &at, &h) ||
        !pnm_number(b, size, &at, &maxval))
        return false;
    const uint64_t channels = b[1] == '5' ? 1 : 3, sample = maxval > 255 ? 2 : 1;
    return too_short(b[1] == '5' ? "PGM" : "PPM", at + 1 + w * h * channels * sample, size, why,
                     why_size);
}

/* ---- GIF ---------------------------------------------------------------- */

/* Offset past the data sub-blocks at `at` (each a length byte and that
 * many bytes, ended by a zero length), or 0 if they run past size. */
static size_t gif_skip_sub_blocks(const uint8_t *b, size_t size, size_t at)
{
    while (at < size) {
        if (b[at] == 0)
            return at + 1;
        at += 1 + (size_t)b[at];
    }
    return 0;
}

/* The LZW data carries no total length: the blocks are walked (colour
 * tables, extensions, images as sub-blocks) up to the trailer byte 0x3B.
 * A file that ends first is cut; bytes after the trailer do no harm. */
static bool gif_truncated(const uint8_t *b, size_t size, char *why, size_t why_size)
{
    const size_t screen = 6 + 7;
    size_t at = screen;
    if (size >= screen && (b[10] & 0x80))
        at += 3u << ((b[10] & 7) + 1); /* the global colour table */
    while (at < size) {
        if (b[at] == 0x3B)
            return false;
        if (b[at] == 0x21 && at + 2 <= size) { /* extension: label, sub-blocks */
            at = gif_skip_sub_blocks(b, size, at + 2);
        } else if (b[at] == 0x2C && at + 10 <= size) { /* image descriptor */
            const uint8_t flags = b[at + 9];
            at += 10;
            if (flags & 0x80)
                at += 3u << ((flags & 7) + 1); /* its local colour table */
            at = at < size ? gif_skip_sub_blocks(b, size, at + 1) : 0; /* LZW code size, data */
        } else {
            break; /* an unknown block or one cut short */
        }
        if (at == 0)
            break;
    }
    snprintf(why, why_size, "truncated GIF: the file (%zu bytes) ends before the trailer byte "
             "0x3B", size);
    return true;
}

bool image_damaged(const uint8_t *bytes, size_t size, char *why, size_t why_size)
{
    if (size >= 2 && bytes[0] == 'B' && bytes[1] == 'M')
        return bmp_truncated(bytes, size, why, why_size);
    if (size >= 2 && bytes[0] == 'P' && (bytes[1] == '5' || bytes[1] == '6'))
        return pnm_truncated(bytes, size, why, why_size);
    if (size >= 6 && memcmp(bytes, "GIF8", 4) == 0)
        return gif_truncated(bytes, size, why, why_size);
    static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (size >= 8 && memcmp(bytes, png, 8) == 0)
        return png_damaged(bytes, size, why, why_size);
    static const uint8_t jpeg[2] = {0xFF, 0xD8};
    if (size >= 2 && memcmp(bytes, jpeg, 2) == 0)
        return false; /* stb_image finds a short JPEG itself */
    return tga_truncated(bytes, size, why, why_size);
}
