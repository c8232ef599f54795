/*
 * crc32.h - CRC-32 (IEEE 802.3, reflected, as zlib's crc32), used by the
 * checkpoint format and to verify the chunks of PNG files.
 */
#ifndef VITRAIN_CRC32_H
#define VITRAIN_CRC32_H

#include <stddef.h>
#include <stdint.h>

/* Start from 0 and feed the bytes in any number of pieces.
 * crc32_update(0, "123456789", 9) is 0xCBF43926. */
uint32_t crc32_update(uint32_t crc, const void *data, size_t bytes);

#endif
