/* b64.c — base64url without padding over libsodium (see b64.h). */
#include "common/b64.h"

#include "common/alloc.h"

#include <sodium.h>
#include <stdlib.h>

#define B64_VARIANT sodium_base64_VARIANT_URLSAFE_NO_PADDING

size_t guild_b64_encode(char *out, size_t out_size, const void *bin, size_t n)
{
    size_t need = sodium_base64_ENCODED_LEN(n, B64_VARIANT);
    if (out_size < need)
        GUILD_BUG("base64 of %zu bytes needs %zu bytes, given %zu", n, need, out_size);
    sodium_bin2base64(out, out_size, bin, n, B64_VARIANT);
    return need - 1;
}

char *guild_b64_encode_alloc(const void *bin, size_t n)
{
    size_t size = sodium_base64_ENCODED_LEN(n, B64_VARIANT);
    char *out = guild_xmalloc(size);
    guild_b64_encode(out, size, bin, n);
    return out;
}

guild_status guild_b64_decode(const char *b64, size_t len, void *out, size_t out_size,
                              size_t *out_len)
{
    size_t n = 0;
    /* With b64_end NULL, libsodium fails unless it consumes all of b64. */
    if (sodium_base642bin(out, out_size, b64, len, NULL, &n, NULL, B64_VARIANT) != 0)
        return GUILD_INVALID_REQUEST;
    *out_len = n;
    return GUILD_OK;
}

guild_status guild_b64_decode_alloc(const char *b64, size_t len, unsigned char **out,
                                    size_t *out_len)
{
    size_t cap = GUILD_B64_DECODED_MAX(len);
    unsigned char *buf = guild_xmalloc(cap + 1);
    size_t n;
    if (guild_b64_decode(b64, len, buf, cap, &n) != GUILD_OK) {
        free(buf);
        return GUILD_INVALID_REQUEST;
    }
    buf[n] = '\0';
    *out = buf;
    *out_len = n;
    return GUILD_OK;
}
