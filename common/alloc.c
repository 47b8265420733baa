/* alloc.c — allocation that aborts on exhaustion; BUG(). */
#include "common/alloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static _Noreturn void out_of_memory(size_t n)
{
    fprintf(stderr, "guild: out of memory allocating %zu bytes\n", n);
    abort();
}

void *guild_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (!p)
        out_of_memory(n);
    return p;
}

void *guild_xcalloc(size_t count, size_t n)
{
    void *p = calloc(count ? count : 1, n ? n : 1);
    if (!p)
        out_of_memory(count * n);
    return p;
}

void *guild_xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n ? n : 1);
    if (!q)
        out_of_memory(n);
    return q;
}

char *guild_xstrdup(const char *s)
{
    return guild_xmemdup(s, strlen(s) + 1);
}

char *guild_xstrndup(const char *s, size_t n)
{
    char *p = guild_xmalloc(n + 1);
    if (n) /* s may be NULL then */
        memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

void *guild_xmemdup(const void *p, size_t n)
{
    void *q = guild_xmalloc(n);
    if (n)
        memcpy(q, p, n);
    return q;
}

void guild_bug(const char *file, int line, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "guild: BUG at %s:%d: ", file, line);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    abort();
}
