/* text.c — see text.h. */
#include "common/text.h"

#include <stdio.h>
#include <string.h>
#include <sys/wait.h>

size_t guild_copy_n(char *dst, size_t size, const char *src, size_t n)
{
    if (n > size - 1)
        n = size - 1;
    if (n)
        memcpy(dst, src, n);
    dst[n] = '\0';
    return n;
}

size_t guild_copy(char *dst, size_t size, const char *src)
{
    return src ? guild_copy_n(dst, size, src, strnlen(src, size - 1))
               : guild_copy_n(dst, size, "", 0);
}

size_t guild_name_u64(char *out, size_t size, const char *name, uint64_t v)
{
    size_t at = guild_copy(out, size - GUILD_U64_DEC_MAX, name);
    out[at++] = ':';
    return at + guild_u64_dec(out + at, v);
}

size_t guild_u64_dec(char *out, uint64_t v)
{
    char tmp[GUILD_U64_DEC_MAX];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    out[n] = '\0';
    return n;
}

const char *guild_wait_text(int wait_status, char *out, size_t size)
{
    if (WIFSIGNALED(wait_status))
        snprintf(out, size, "signal %d", WTERMSIG(wait_status));
    else
        snprintf(out, size, "status %d", WEXITSTATUS(wait_status));
    return out;
}
