/*
 * image_length.h - is an image file as long as its header says?
 *
 * stb_image detects a truncated PNG or JPEG, but decodes a truncated BMP,
 * TGA, PGM/PPM or GIF without a word, filling the missing pixels with zeros:
 * a silent wrong image. For those formats the header tells how many bytes
 * the pixels take (or, for GIF and RLE, how the stream must end), so a
 * short file is found before it is decoded.
 */
#ifndef VITRAIN_DATA_IMAGE_LENGTH_H
#define VITRAIN_DATA_IMAGE_LENGTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when the bytes of a whole file (of any format) are shorter than
 * its header declares; then why holds a reason such as "truncated BMP:
 * the header declares 12342 bytes, the file has 3085". Formats it does not
 * know, and headers it cannot read, pass: the decoder judges those. */
bool image_truncated(const uint8_t *bytes, size_t size, char *why, size_t why_size);

#endif
