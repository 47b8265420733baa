/*
 * b64.h — base64url without padding (RFC 4648 §5), the alphabet of JWTs and
 * key ids, over libsodium's constant-time codec.
 *
 * Decoding is strict: no padding, no whitespace, no characters outside
 * [A-Za-z0-9_-], no length that leaves a lone character, and the unused
 * low bits of the last character must be zero, so every byte string has
 * exactly one encoding.
 */
#ifndef GUILD_COMMON_B64_H
#define GUILD_COMMON_B64_H

#include "common/status.h"

#include <stddef.h>

/* Characters needed to encode n bytes, plus one for the terminating NUL. */
#define GUILD_B64_ENCODED_SIZE(n) ((n) / 3 * 4 + ((n) % 3 ? (n) % 3 + 1 : 0) + 1)

/* The most bytes that n characters can decode to. */
#define GUILD_B64_DECODED_MAX(n) ((n) / 4 * 3 + (n) % 4 * 3 / 4)

/* Encodes the n bytes at bin (borrowed) into out, which holds out_size
 * bytes, and NUL-terminates it; returns the length without the NUL.
 * out_size below GUILD_B64_ENCODED_SIZE(n) is a bug and aborts. */
size_t guild_b64_encode(char *out, size_t out_size, const void *bin, size_t n);

/* Same into a malloc'd, NUL-terminated string the caller frees. */
char *guild_b64_encode_alloc(const void *bin, size_t n);

/* Decodes exactly the `len` characters at b64 (borrowed; need not be
 * NUL-terminated) into out, which holds out_size bytes; *out_len receives
 * the number of bytes written. Returns GUILD_OK, or GUILD_INVALID_REQUEST if
 * the text is not strict base64url or decodes to more than out_size bytes
 * (out's contents are then unspecified and *out_len untouched). */
guild_status guild_b64_decode(const char *b64, size_t len, void *out, size_t out_size,
                              size_t *out_len);

/* Same into a malloc'd buffer that *out receives (the caller frees it),
 * followed by a NUL byte not counted in *out_len, so decoded text can be
 * used as a C string. On failure *out and *out_len are untouched. */
guild_status guild_b64_decode_alloc(const char *b64, size_t len, unsigned char **out,
                                    size_t *out_len);

#endif
