/* clock.c — time sources. */
#include "common/clock.h"

#include <stdio.h>
#include <time.h>

int64_t guild_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

uint64_t guild_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

char *guild_time_format(int64_t unix_ns, char *buf, unsigned size)
{
    time_t secs = (time_t)(unix_ns / 1000000000);
    int ms = (int)((unix_ns % 1000000000) / 1000000);
    struct tm tm;
    gmtime_r(&secs, &tm);
    int year = tm.tm_year + 1900;
    if (size < 25 || year < 0 || year > 9999 || ms < 0) {
        snprintf(buf, size, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", year, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec, ms);
        return buf;
    }
    /* The common case by hand: replays format a time for every event. */
    const int parts[] = {year / 100, year % 100, tm.tm_mon + 1, tm.tm_mday,
                         tm.tm_hour, tm.tm_min,  tm.tm_sec};
    static const char seps[] = {0, 0, '-', '-', 'T', ':', ':'}; /* before each part */
    char *p = buf;
    for (int i = 0; i < 7; i++) {
        if (seps[i])
            *p++ = seps[i];
        *p++ = (char)('0' + parts[i] / 10);
        *p++ = (char)('0' + parts[i] % 10);
    }
    *p++ = '.';
    *p++ = (char)('0' + ms / 100);
    *p++ = (char)('0' + ms / 10 % 10);
    *p++ = (char)('0' + ms % 10);
    *p++ = 'Z';
    *p = 0;
    return buf;
}
