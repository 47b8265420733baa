/*
 * fuzz_jwt.c — a bearer token from the Authorization header through
 * guild_jwt_verify.
 *
 * The keyring holds one key, which signed one token. An input whose first
 * byte is odd is a token as it stands (after that byte); otherwise it is a
 * list of edits of the signed token, pairs of (where, what): a character
 * replaced, or removed when `what` is 0. Nothing but the signed token may
 * verify: a forgery is out of the fuzzer's reach, so any other token that
 * verifies is one the verifier should have refused (a non-canonical
 * encoding of the same bytes, say).
 */
#include "fuzz/fuzz.h"
#include "common/jwt.h"

#include <jansson.h>
#include <sodium.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define NOW_S 1764000000

static guild_jwt_keyring g_ring;
static char *g_token;

static void setup(void)
{
    must(sodium_init() >= 0);
    unsigned char seed[crypto_sign_SEEDBYTES] = {7};
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_seed_keypair(pk, sk, seed);
    guild_jwt_keyring_init(&g_ring);
    must(guild_jwt_keyring_add(&g_ring, NULL, pk) == GUILD_OK);
    char kid[GUILD_KEY_ID_LEN + 1];
    guild_key_id(pk, kid);
    json_t *claims = json_pack("{s:s, s:s, s:I, s:I}", "sub", "u1", "typ", "access", "iat",
                               (json_int_t)NOW_S, "exp", (json_int_t)NOW_S + 900);
    must(guild_jwt_sign(claims, kid, sk, &g_token) == GUILD_OK);
    json_decref(claims);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!g_token)
        setup();
    size_t signed_len = strlen(g_token);
    char *token = malloc((size > signed_len ? size : signed_len) + 1);
    must(token != NULL);
    if (size && (data[0] & 1)) {
        memcpy(token, data + 1, size - 1);
        token[size - 1] = 0;
    } else {
        memcpy(token, g_token, signed_len + 1);
        for (size_t i = 1; i + 1 < size; i += 2) {
            size_t n = strlen(token);
            if (!n)
                break;
            size_t at = data[i] % n;
            if (data[i + 1])
                token[at] = (char)data[i + 1];
            else
                memmove(token + at, token + at + 1, n - at);
        }
    }
    json_t *claims = NULL;
    guild_error err;
    guild_status s = guild_jwt_verify(token, &g_ring, NOW_S, &claims, &err);
    if (s == GUILD_OK) {
        must(strcmp(token, g_token) == 0);
        must(json_is_object(claims));
        json_decref(claims);
    } else {
        must(s == GUILD_UNAUTHENTICATED && claims == NULL);
    }
    free(token);
    return 0;
}
