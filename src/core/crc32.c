/*
 * crc32.c - CRC-32 (see crc32.h).
 */
#include "vitrain/crc32.h"

#include "vitrain/common.h"

#include <pthread.h>

static uint32_t load_le32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Slicing-by-8: table[k][b] is the CRC of byte b followed by k zero bytes,
 * so eight bytes are folded per step (a few GB/s instead of a few hundred
 * MB/s byte by byte; a checkpoint can be a gigabyte). */
static uint32_t crc_table[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void)
{
    for (uint32_t b = 0; b < 256; b++) {
        uint32_t c = b;
        for (int bit = 0; bit < 8; bit++)
            c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][b] = c;
    }
    for (int k = 1; k < 8; k++)
        for (int b = 0; b < 256; b++) {
            uint32_t prev = crc_table[k - 1][b];
            crc_table[k][b] = (prev >> 8) ^ crc_table[0][prev & 0xFF];
        }
}

uint32_t crc32_update(uint32_t crc, const void *data, size_t bytes)
{
    VT_ASSERT(pthread_once(&crc_once, crc_init) == 0);
    const unsigned char *p = data;
    uint32_t c = ~crc;
    for (; bytes >= 8; bytes -= 8, p += 8) {
        uint32_t lo = c ^ load_le32(p), hi = load_le32(p + 4);
        c = crc_table[7][lo & 0xFF] ^ crc_table[6][(lo >> 8) & 0xFF] ^
            crc_table[5][(lo >> 16) & 0xFF] ^ crc_table[4][lo >> 24] ^
            crc_table[3][hi & 0xFF] ^ crc_table[2][(hi >> 8) & 0xFF] ^
            crc_table[1][(hi >> 16) & 0xFF] ^ crc_table[0][hi >> 24];
    }
    for (; bytes > 0; bytes--, p++)
        c = (c >> 8) ^ crc_table[0][(c ^ *p) & 0xFF];
    return ~c;
}
