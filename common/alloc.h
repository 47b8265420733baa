/*
 * alloc.h — the checked allocator. Out of memory is not a status guild
 * recovers from: these abort with a message instead of returning NULL, so
 * callers never test for it.
 */
#ifndef GUILD_COMMON_ALLOC_H
#define GUILD_COMMON_ALLOC_H

#include <stddef.h>

void *guild_xmalloc(size_t n);
void *guild_xcalloc(size_t count, size_t n);
void *guild_xrealloc(void *p, size_t n);
char *guild_xstrdup(const char *s);
char *guild_xstrndup(const char *s, size_t n);
void *guild_xmemdup(const void *p, size_t n);

/* Broken invariant: prints where and why, then aborts. For bugs only. */
#define GUILD_BUG(...) guild_bug(__FILE__, __LINE__, __VA_ARGS__)
_Noreturn void guild_bug(const char *file, int line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
