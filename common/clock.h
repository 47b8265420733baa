/* clock.h — wall-clock and monotonic time in nanoseconds. */
#ifndef GUILD_COMMON_CLOCK_H
#define GUILD_COMMON_CLOCK_H

#include <stdint.h>

/* Unix time in nanoseconds (CLOCK_REALTIME). */
int64_t guild_now_ns(void);

/* Monotonic nanoseconds for measuring intervals (CLOCK_MONOTONIC). */
uint64_t guild_mono_ns(void);

/* Formats Unix nanoseconds as RFC 3339 UTC with milliseconds into buf
 * (at least 32 bytes); returns buf. */
char *guild_time_format(int64_t unix_ns, char *buf, unsigned size);

#endif
