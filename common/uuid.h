/*
 * uuid.h — UUIDv7 (RFC 9562): 48 bits of Unix milliseconds, then random bits,
 * so ids sort by creation time. Generated ids are strictly increasing within
 * a process (a counter fills the sub-millisecond bits).
 */
#ifndef GUILD_COMMON_UUID_H
#define GUILD_COMMON_UUID_H

#include <stdbool.h>
#include <stdint.h>

#define GUILD_UUID_STRLEN 36 /* without the terminating NUL */

/* Writes a new UUIDv7 in canonical text form (36 chars + NUL) into out. */
void guild_uuid7(char out[GUILD_UUID_STRLEN + 1]);

/* Same, from a given Unix time in milliseconds (tests, replays). */
void guild_uuid7_at(uint64_t unix_ms, char out[GUILD_UUID_STRLEN + 1]);

/* True if s (of length n) is a canonical lower-case UUID string. */
bool guild_uuid_valid(const char *s, unsigned n);

#endif
