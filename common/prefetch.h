/*
 * prefetch.h — asking the CPU for memory a little before it is read, where
 * a loop knows its next addresses and would otherwise wait on each miss.
 * A hint: it reads nothing and cannot fault.
 */
#ifndef GUILD_COMMON_PREFETCH_H
#define GUILD_COMMON_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

#define GUILD_CACHE_LINE 64

/* Asks for every cache line of the n bytes at p. */
static inline void guild_prefetch(const void *p, size_t n)
{
    uintptr_t line = (uintptr_t)p & ~(uintptr_t)(GUILD_CACHE_LINE - 1);
    for (uintptr_t end = (uintptr_t)p + n; line < end; line += GUILD_CACHE_LINE)
        __builtin_prefetch((const void *)line);
}

#endif
