/* check_util.h — assertions shared by guild's Check suites. */
#ifndef GUILD_TESTS_SUPPORT_CHECK_UTIL_H
#define GUILD_TESTS_SUPPORT_CHECK_UTIL_H

#include "common/status.h"

#include <check.h>
#include <stdint.h>
#include <stdio.h>

/* Asserts a guild_status, naming both codes on failure. */
#define ck_assert_status(got, want)                                                                \
    do {                                                                                           \
        guild_status got_ = (got);                                                                 \
        guild_status want_ = (want);                                                               \
        ck_assert_msg(got_ == want_, "%s: got %s, want %s", #got, guild_status_code(got_),         \
                      guild_status_code(want_));                                                   \
    } while (0)

/* xorshift64: reproducible randomness from a fixed, non-zero seed. */
static inline uint64_t tst_rng_next(uint64_t *state)
{
    uint64_t x = *state;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *state = x;
}

/* Runs one suite with a fresh runner; returns the process exit status. */
int tst_run_suite(Suite *s);

/* Reads f to its end: a NUL-terminated string (malloc'd). */
char *tst_slurp(FILE *f);

#endif
