/*
 * utf8.h - UTF-8 validation. Config text travels inside checkpoints and
 * safetensors metadata (JSON), which must be UTF-8, so it is checked where
 * it enters: the INI parser, --set, and the safetensors writer and reader.
 */
#ifndef VITRAIN_UTF8_H
#define VITRAIN_UTF8_H

#include <stddef.h>

/* Length of the valid UTF-8 sequence at s (n bytes available), 0 if the
 * bytes there are not one (overlong forms and surrogates included). */
size_t utf8_sequence(const unsigned char *s, size_t n);

/* Offset of the first byte of the n bytes at s that is not valid UTF-8,
 * or -1 if all are. */
long utf8_invalid_at(const char *s, size_t n);

#endif
