/*
 * text.h — two string helpers for hot paths, where snprintf's format
 * parsing shows in profiles: copying a string into a fixed buffer, and an
 * unsigned integer in decimal.
 */
#ifndef GUILD_COMMON_TEXT_H
#define GUILD_COMMON_TEXT_H

#include <stddef.h>
#include <stdint.h>

/* The longest decimal form of a uint64_t, with its NUL. */
#define GUILD_U64_DEC_MAX 21

/* Copies src into dst (size > 0 bytes), cut to fit, always NUL-terminated;
 * NULL copies as "". Returns the length of the copy. */
size_t guild_copy(char *dst, size_t size, const char *src);

/* The same with the n bytes at src (not NUL-terminated). */
size_t guild_copy_n(char *dst, size_t size, const char *src, size_t n);

/* Writes "<name>:<v>" (a consistency token, a message id) into out, of
 * size > GUILD_U64_DEC_MAX bytes: the name is cut so that the number always
 * fits. Returns the length written. */
size_t guild_name_u64(char *out, size_t size, const char *name, uint64_t v);

/* How a child process ended, from its wait status: "status N" (it
 * exited) or "signal N". Returns out. */
const char *guild_wait_text(int wait_status, char *out, size_t size);

/* Writes v in decimal to out (at least GUILD_U64_DEC_MAX bytes),
 * NUL-terminated. Returns the number of digits. */
size_t guild_u64_dec(char *out, uint64_t v);

#endif
