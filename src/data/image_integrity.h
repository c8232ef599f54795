/*
 * image_integrity.h - is an image file whole?
 *
 * stb_image decodes a truncated BMP, TGA, PGM/PPM or GIF without a word,
 * filling the missing pixels with zeros, and never checks the checksums of
 * PNG chunks, so a flipped bit in a PNG can decode to other pixels: silent
 * wrong images. The files carry what is needed to tell: the header of the
 * raw formats says how many bytes the pixels take, run-length and GIF
 * streams have a defined end, every PNG chunk has a CRC-32. This module
 * checks those before the decoder runs.
 */
#ifndef VITRAIN_DATA_IMAGE_INTEGRITY_H
#define VITRAIN_DATA_IMAGE_INTEGRITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* True when the bytes of a whole file are damaged: shorter than the
 * header declares, or a PNG chunk whose CRC does not match; then why holds
 * the reason, e.g. "truncated BMP: the header declares 12342 bytes, the
 * file has 3085". Formats it does not know, and headers it cannot read,
 * pass: the decoder judges those. */
bool image_damaged(const uint8_t *bytes, size_t size, char *why, size_t why_size);

#endif
