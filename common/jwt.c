/*
 * jwt.c — Ed25519 JWTs (see jwt.h).
 *
 * Sections: key ids and keyrings; signing; verifying.
 *
 * Verification checks the signature before it reads the claims: until then
 * the payload is attacker-controlled bytes and nothing in it is trusted, not
 * even its expiry. The header has to be read first (it names the key), so
 * only its alg, typ, crit and kid are looked at, and alg is fixed to
 * "EdDSA": the algorithm a token claims never picks how it is verified.
 */
#include "common/jwt.h"

#include "common/alloc.h"
#include "common/b64.h"
#include "common/codec.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- key ids and keyrings -------------------------------------------------- */

void guild_key_id(const unsigned char pk[crypto_sign_PUBLICKEYBYTES],
                  char out[GUILD_KEY_ID_LEN + 1])
{
    unsigned char h[32];
    crypto_generichash(h, sizeof h, pk, crypto_sign_PUBLICKEYBYTES, NULL, 0);
    guild_b64_encode(out, GUILD_KEY_ID_LEN + 1, h, 16);
}

static bool kid_usable(const char *kid)
{
    return kid && kid[0] != '\0' && strnlen(kid, GUILD_JWT_KID_MAX + 1) <= GUILD_JWT_KID_MAX;
}

void guild_jwt_keyring_init(guild_jwt_keyring *kr)
{
    memset(kr, 0, sizeof *kr);
}

guild_status guild_jwt_keyring_add(guild_jwt_keyring *kr, const char *kid,
                                   const unsigned char pk[crypto_sign_PUBLICKEYBYTES])
{
    char derived[GUILD_KEY_ID_LEN + 1];
    if (!kid) {
        guild_key_id(pk, derived);
        kid = derived;
    }
    if (!kid_usable(kid))
        return GUILD_INVALID_REQUEST;
    const unsigned char *have = guild_jwt_keyring_find(kr, kid);
    if (have)
        return memcmp(have, pk, crypto_sign_PUBLICKEYBYTES) == 0 ? GUILD_OK : GUILD_CONFLICT;
    if (kr->count == GUILD_JWT_MAX_KEYS)
        return GUILD_INVALID_REQUEST;
    strcpy(kr->keys[kr->count].kid, kid);
    memcpy(kr->keys[kr->count].pk, pk, crypto_sign_PUBLICKEYBYTES);
    kr->count++;
    return GUILD_OK;
}

const unsigned char *guild_jwt_keyring_find(const guild_jwt_keyring *kr, const char *kid)
{
    for (size_t i = 0; i < kr->count; i++)
        if (strcmp(kr->keys[i].kid, kid) == 0)
            return kr->keys[i].pk;
    return NULL;
}

/* ---- signing ----------------------------------------------------------------- */

/* Appends base64url of the n bytes at p at *pos of token. */
static void token_put(char *token, size_t *pos, size_t size, const void *p, size_t n)
{
    *pos += guild_b64_encode(token + *pos, size - *pos, p, n);
}

guild_status guild_jwt_sign(const json_t *claims, const char *kid,
                            const unsigned char sk[crypto_sign_SECRETKEYBYTES], char **token_out)
{
    if (sodium_init() < 0)
        return GUILD_INTERNAL;
    if (!json_is_object(claims) || !kid_usable(kid))
        return GUILD_INVALID_REQUEST;
    /* json_pack refuses a kid that is not UTF-8. */
    json_t *header = json_pack("{s:s, s:s, s:s}", "alg", "EdDSA", "typ", "JWT", "kid", kid);
    if (!header)
        return GUILD_INVALID_REQUEST;

    char *hjson = NULL, *pjson = NULL;
    size_t hlen, plen;
    guild_status st = guild_codec_encode(header, GUILD_FMT_JSON, &hjson, &hlen);
    json_decref(header);
    if (st != GUILD_OK)
        return GUILD_INTERNAL;
    if (guild_codec_encode(claims, GUILD_FMT_JSON, &pjson, &plen) != GUILD_OK) {
        free(hjson);
        return GUILD_INTERNAL;
    }

    /* Each GUILD_B64_ENCODED_SIZE counts a NUL: two become the dots, the
     * last the terminator. */
    size_t size = GUILD_B64_ENCODED_SIZE(hlen) + GUILD_B64_ENCODED_SIZE(plen) +
                  GUILD_B64_ENCODED_SIZE(crypto_sign_BYTES);
    char *token = guild_xmalloc(size);
    size_t pos = 0;
    token_put(token, &pos, size, hjson, hlen);
    token[pos++] = '.';
    token_put(token, &pos, size, pjson, plen);

    unsigned char sig[crypto_sign_BYTES];
    crypto_sign_detached(sig, NULL, (const unsigned char *)token, pos, sk);
    token[pos++] = '.';
    token_put(token, &pos, size, sig, sizeof sig);

    free(hjson);
    free(pjson);
    *token_out = token;
    return GUILD_OK;
}

/* ---- verifying --------------------------------------------------------------- */

/* A token cut at its dots; the parts point into the token. */
typedef struct jwt_parts {
    const char *header, *payload, *sig;
    size_t header_len, payload_len, sig_len;
} jwt_parts;

static bool token_split(const char *token, jwt_parts *p)
{
    if (!token)
        return false;
    size_t len = strnlen(token, GUILD_JWT_MAX_TOKEN + 1);
    if (len == 0 || len > GUILD_JWT_MAX_TOKEN)
        return false;
    const char *end = token + len;
    const char *dot1 = memchr(token, '.', len);
    if (!dot1)
        return false;
    const char *dot2 = memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1));
    if (!dot2 || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)))
        return false;
    p->header = token;
    p->header_len = (size_t)(dot1 - token);
    p->payload = dot1 + 1;
    p->payload_len = (size_t)(dot2 - dot1 - 1);
    p->sig = dot2 + 1;
    p->sig_len = (size_t)(end - dot2 - 1);
    return p->header_len > 0 && p->payload_len > 0;
}

/* Decodes one part into a JSON object (a new reference), or NULL. */
static json_t *part_object(const char *b64, size_t len)
{
    unsigned char *text;
    size_t n;
    if (guild_b64_decode_alloc(b64, len, &text, &n) != GUILD_OK)
        return NULL;
    json_t *v = NULL;
    if (guild_codec_decode(text, n, GUILD_FMT_JSON, &v, NULL) == GUILD_OK && !json_is_object(v)) {
        json_decref(v);
        v = NULL;
    }
    free(text);
    return v;
}

/* The header's verdict: NULL if it is acceptable (*kid then points into
 * header), else the failure message. */
static const char *header_check(const json_t *header, const char **kid)
{
    const char *alg = json_string_value(json_object_get(header, "alg"));
    if (!alg || strcmp(alg, "EdDSA") != 0)
        return "unsupported token algorithm";
    const json_t *typ = json_object_get(header, "typ");
    if (typ && (!json_is_string(typ) || strcasecmp(json_string_value(typ), "JWT") != 0))
        return "malformed token";
    /* RFC 7515 §4.1.11: extensions marked critical that a verifier does not
     * understand make the token invalid; guild understands none. */
    if (json_object_get(header, "crit"))
        return "unsupported token header";
    *kid = json_string_value(json_object_get(header, "kid"));
    if (!*kid)
        return "unknown key id";
    return NULL;
}

/* -1, 0 or 1 as NumericDate v (an integer or a real) is before, at or after
 * t. */
static int time_cmp(const json_t *v, int64_t t)
{
    if (json_is_integer(v)) {
        json_int_t x = json_integer_value(v);
        return x < t ? -1 : x > t;
    }
    double x = json_real_value(v), y = (double)t;
    return x < y ? -1 : x > y;
}

/* The claims' verdict at now_s: NULL if they are current, else the failure
 * message. */
static const char *claims_check(const json_t *claims, int64_t now_s)
{
    const json_t *exp = json_object_get(claims, "exp");
    if (!json_is_number(exp))
        return "token has no expiry";
    if (time_cmp(exp, now_s) <= 0)
        return "token expired";
    int64_t ahead = now_s > INT64_MAX - GUILD_JWT_LEEWAY_S ? INT64_MAX : now_s + GUILD_JWT_LEEWAY_S;
    static const char *const not_after_now[] = {"nbf", "iat"};
    for (size_t i = 0; i < sizeof not_after_now / sizeof *not_after_now; i++) {
        const json_t *v = json_object_get(claims, not_after_now[i]);
        if (!v)
            continue;
        if (!json_is_number(v))
            return "malformed token";
        if (time_cmp(v, ahead) > 0)
            return "token not yet valid";
    }
    return NULL;
}

guild_status guild_jwt_verify(const char *token, const guild_jwt_keyring *keys, int64_t now_s,
                              json_t **claims_out, guild_error *err)
{
    if (sodium_init() < 0)
        return guild_error_set(err, GUILD_INTERNAL, 0, "libsodium failed to start");

    const char *why = "malformed token";
    json_t *header = NULL, *claims = NULL;
    jwt_parts p;
    if (!token_split(token, &p) || !(header = part_object(p.header, p.header_len)))
        goto fail;

    const char *kid = NULL;
    if ((why = header_check(header, &kid)) != NULL)
        goto fail;
    const unsigned char *pk = guild_jwt_keyring_find(keys, kid);
    if (!pk) {
        why = "unknown key id";
        goto fail;
    }

    unsigned char sig[crypto_sign_BYTES];
    size_t sig_len = 0;
    if (guild_b64_decode(p.sig, p.sig_len, sig, sizeof sig, &sig_len) != GUILD_OK ||
        sig_len != sizeof sig) {
        why = "malformed token";
        goto fail;
    }
    /* The signed bytes are the first two parts and the dot between them. */
    size_t signed_len = p.header_len + 1 + p.payload_len;
    if (crypto_sign_verify_detached(sig, (const unsigned char *)token, signed_len, pk) != 0) {
        why = "bad token signature";
        goto fail;
    }

    if (!(claims = part_object(p.payload, p.payload_len))) {
        why = "malformed token";
        goto fail;
    }
    if ((why = claims_check(claims, now_s)) != NULL)
        goto fail;

    json_decref(header);
    *claims_out = claims;
    return GUILD_OK;
fail:
    json_decref(header);
    json_decref(claims);
    return guild_error_set(err, GUILD_UNAUTHENTICATED, 0, "%s", why);
}
