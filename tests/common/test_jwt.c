/*
 * test_jwt.c — Ed25519 JWTs, key ids and keyrings, and the base64url codec
 * beneath them.
 *
 * Sections: base64url; key ids and keyrings; sign and verify; refused
 * tokens.
 */
#include "common/jwt.h"

#include "common/b64.h"
#include "tests/support/check_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW 1700000000LL

static unsigned char g_pk[crypto_sign_PUBLICKEYBYTES];
static unsigned char g_sk[crypto_sign_SECRETKEYBYTES];
static char g_kid[GUILD_KEY_ID_LEN + 1];
static guild_jwt_keyring g_ring;

static void keys_setup(void)
{
    ck_assert_int_ge(sodium_init(), 0);
    crypto_sign_keypair(g_pk, g_sk);
    guild_key_id(g_pk, g_kid);
    guild_jwt_keyring_init(&g_ring);
    ck_assert_status(guild_jwt_keyring_add(&g_ring, g_kid, g_pk), GUILD_OK);
}

/* ---- helpers ------------------------------------------------------------------ */

static json_t *claims_at(long long iat, long long exp)
{
    json_t *c =
        json_pack("{s:s, s:I, s:I, s:[s, s], s:s}", "sub", "0193a1b2-user", "iat", (json_int_t)iat,
                  "exp", (json_int_t)exp, "roles", "admin", "talent", "sid", "session-1");
    ck_assert_ptr_nonnull(c);
    return c;
}

static char *sign_ok(const json_t *claims)
{
    char *token = NULL;
    ck_assert_status(guild_jwt_sign(claims, g_kid, g_sk, &token), GUILD_OK);
    ck_assert_ptr_nonnull(token);
    return token;
}

/* A token assembled from raw header and payload texts, signed with sk
 * (none when sk is NULL: the signature part is then empty). */
static char *craft(const char *header, const char *payload, const unsigned char *sk)
{
    char *h = guild_b64_encode_alloc(header, strlen(header));
    char *p = guild_b64_encode_alloc(payload, strlen(payload));
    size_t size = strlen(h) + strlen(p) + GUILD_B64_ENCODED_SIZE(crypto_sign_BYTES) + 2;
    char *token = malloc(size);
    int n = snprintf(token, size, "%s.%s.", h, p);
    if (sk) {
        unsigned char sig[crypto_sign_BYTES];
        crypto_sign_detached(sig, NULL, (const unsigned char *)token, (size_t)n - 1, sk);
        guild_b64_encode(token + n, size - (size_t)n, sig, sizeof sig);
    }
    free(h);
    free(p);
    return token;
}

/* Verifies and expects `status` with `message`; checks the claims are
 * untouched. */
static void assert_refused(const char *token, guild_status status, const char *message)
{
    guild_error err;
    guild_error_clear(&err);
    json_t *sentinel = json_object();
    json_t *claims = sentinel;
    ck_assert_status(guild_jwt_verify(token, &g_ring, NOW, &claims, &err), status);
    ck_assert_ptr_eq(claims, sentinel);
    ck_assert_str_eq(err.message, message);
    json_decref(sentinel);
}

static json_t *verify_ok(const char *token, int64_t now)
{
    guild_error err;
    guild_error_clear(&err);
    json_t *claims = NULL;
    guild_status s = guild_jwt_verify(token, &g_ring, now, &claims, &err);
    ck_assert_msg(s == GUILD_OK, "verify failed: %s", err.message);
    return claims;
}

/* Replaces character i of token by another of the base64url alphabet that
 * keeps the text strict base64url. */
static void flip_char(char *token, size_t i)
{
    token[i] = token[i] == 'A' ? 'B' : 'A';
}

/* ---- base64url ---------------------------------------------------------------- */

START_TEST(b64_encodes_rfc4648_vectors_without_padding)
{
    static const struct {
        const char *bin, *b64;
    } v[] = {{"", ""},           {"f", "Zg"},          {"fo", "Zm8"},          {"foo", "Zm9v"},
             {"foob", "Zm9vYg"}, {"fooba", "Zm9vYmE"}, {"foobar", "Zm9vYmFy"}, {"\xfb\xff", "-_8"}};
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) {
        size_t n = strlen(v[i].bin);
        char out[16];
        ck_assert_uint_eq(guild_b64_encode(out, sizeof out, v[i].bin, n), strlen(v[i].b64));
        ck_assert_str_eq(out, v[i].b64);
        ck_assert_uint_eq(GUILD_B64_ENCODED_SIZE(n),
                          sodium_base64_ENCODED_LEN(n, sodium_base64_VARIANT_URLSAFE_NO_PADDING));

        unsigned char back[16];
        size_t back_len = 99;
        ck_assert_status(guild_b64_decode(out, strlen(out), back, sizeof back, &back_len),
                         GUILD_OK);
        ck_assert_uint_eq(back_len, n);
        ck_assert_mem_eq(back, v[i].bin, n);
    }
}
END_TEST

START_TEST(b64_round_trips_every_length)
{
    unsigned char bin[64];
    for (size_t i = 0; i < sizeof bin; i++)
        bin[i] = (unsigned char)(i * 37 + 11);
    for (size_t n = 0; n <= sizeof bin; n++) {
        char *text = guild_b64_encode_alloc(bin, n);
        unsigned char *back = NULL;
        size_t back_len = 0;
        ck_assert_status(guild_b64_decode_alloc(text, strlen(text), &back, &back_len), GUILD_OK);
        ck_assert_uint_eq(back_len, n);
        ck_assert_mem_eq(back, bin, n);
        ck_assert_int_eq(back[n], '\0');
        ck_assert_uint_ge(GUILD_B64_DECODED_MAX(strlen(text)), n);
        free(back);
        free(text);
    }
}
END_TEST

START_TEST(b64_decode_is_strict)
{
    static const char *const bad[] = {
        "Zg==",  /* padding */
        "Zm9v+", /* standard alphabet */
        "Zm9/",  /* standard alphabet */
        "Zm 9v", /* whitespace */
        "Zm9vY", /* a lone last character */
        "Zh",    /* unused bits set: "Zg" is the one encoding of "f" */
        "Zm9vYmF*",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        unsigned char out[16];
        size_t n = 99;
        ck_assert_msg(guild_b64_decode(bad[i], strlen(bad[i]), out, sizeof out, &n) ==
                          GUILD_INVALID_REQUEST,
                      "accepted \"%s\"", bad[i]);
        ck_assert_uint_eq(n, 99);
    }
    /* Too long for the buffer. */
    unsigned char small[2];
    size_t n = 99;
    ck_assert_status(guild_b64_decode("Zm9v", 4, small, sizeof small, &n), GUILD_INVALID_REQUEST);
    /* Only the given length is read. */
    unsigned char three[3];
    ck_assert_status(guild_b64_decode("Zm9v.garbage", 4, three, sizeof three, &n), GUILD_OK);
    ck_assert_mem_eq(three, "foo", 3);
}
END_TEST

/* ---- key ids and keyrings ------------------------------------------------------- */

START_TEST(key_id_is_22_chars_of_blake2b)
{
    unsigned char h[32];
    crypto_generichash(h, sizeof h, g_pk, sizeof g_pk, NULL, 0);
    char want[GUILD_KEY_ID_LEN + 1];
    guild_b64_encode(want, sizeof want, h, 16);

    char id[GUILD_KEY_ID_LEN + 1];
    guild_key_id(g_pk, id);
    ck_assert_uint_eq(strlen(id), GUILD_KEY_ID_LEN);
    ck_assert_str_eq(id, want);

    /* Another key, another id; the same key, the same id. */
    unsigned char pk2[crypto_sign_PUBLICKEYBYTES], sk2[crypto_sign_SECRETKEYBYTES];
    crypto_sign_keypair(pk2, sk2);
    char id2[GUILD_KEY_ID_LEN + 1];
    guild_key_id(pk2, id2);
    ck_assert_str_ne(id, id2);
    guild_key_id(g_pk, id2);
    ck_assert_str_eq(id, id2);
}
END_TEST

START_TEST(keyring_finds_keys_by_kid)
{
    guild_jwt_keyring kr;
    guild_jwt_keyring_init(&kr);
    ck_assert_ptr_null(guild_jwt_keyring_find(&kr, g_kid));

    unsigned char pk2[crypto_sign_PUBLICKEYBYTES], sk2[crypto_sign_SECRETKEYBYTES];
    crypto_sign_keypair(pk2, sk2);
    ck_assert_status(guild_jwt_keyring_add(&kr, NULL, g_pk), GUILD_OK); /* kid derived */
    ck_assert_status(guild_jwt_keyring_add(&kr, "previous", pk2), GUILD_OK);

    const unsigned char *found = guild_jwt_keyring_find(&kr, g_kid);
    ck_assert_ptr_nonnull(found);
    ck_assert_mem_eq(found, g_pk, sizeof g_pk);
    found = guild_jwt_keyring_find(&kr, "previous");
    ck_assert_ptr_nonnull(found);
    ck_assert_mem_eq(found, pk2, sizeof pk2);
    ck_assert_ptr_null(guild_jwt_keyring_find(&kr, "nope"));
}
END_TEST

START_TEST(keyring_refuses_conflicts_and_overflow)
{
    guild_jwt_keyring kr;
    guild_jwt_keyring_init(&kr);
    unsigned char pk2[crypto_sign_PUBLICKEYBYTES], sk2[crypto_sign_SECRETKEYBYTES];
    crypto_sign_keypair(pk2, sk2);

    ck_assert_status(guild_jwt_keyring_add(&kr, "k", g_pk), GUILD_OK);
    ck_assert_status(guild_jwt_keyring_add(&kr, "k", g_pk), GUILD_OK); /* again: no-op */
    ck_assert_uint_eq(kr.count, 1);
    ck_assert_status(guild_jwt_keyring_add(&kr, "k", pk2), GUILD_CONFLICT);
    ck_assert_mem_eq(guild_jwt_keyring_find(&kr, "k"), g_pk, sizeof g_pk);

    ck_assert_status(guild_jwt_keyring_add(&kr, "", pk2), GUILD_INVALID_REQUEST);
    char long_kid[GUILD_JWT_KID_MAX + 2];
    memset(long_kid, 'x', sizeof long_kid - 1);
    long_kid[sizeof long_kid - 1] = '\0';
    ck_assert_status(guild_jwt_keyring_add(&kr, long_kid, pk2), GUILD_INVALID_REQUEST);

    for (int i = 1; i < GUILD_JWT_MAX_KEYS; i++) {
        char kid[16];
        snprintf(kid, sizeof kid, "k%d", i);
        ck_assert_status(guild_jwt_keyring_add(&kr, kid, pk2), GUILD_OK);
    }
    ck_assert_status(guild_jwt_keyring_add(&kr, "one-too-many", pk2), GUILD_INVALID_REQUEST);
    ck_assert_uint_eq(kr.count, GUILD_JWT_MAX_KEYS);
}
END_TEST

/* ---- sign and verify ------------------------------------------------------------- */

START_TEST(sign_then_verify_returns_the_claims)
{
    json_t *claims = claims_at(NOW, NOW + 900);
    char *token = sign_ok(claims);

    /* Three non-empty parts of the URL-safe alphabet. */
    ck_assert_uint_eq(strspn(token, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                    "0123456789-_."),
                      strlen(token));
    const char *dot1 = strchr(token, '.');
    ck_assert_ptr_nonnull(dot1);
    const char *dot2 = strchr(dot1 + 1, '.');
    ck_assert_ptr_nonnull(dot2);
    ck_assert_ptr_null(strchr(dot2 + 1, '.'));

    json_t *got = verify_ok(token, NOW);
    ck_assert(json_equal(got, claims));
    json_decref(got);

    /* Valid until the second before exp. */
    got = verify_ok(token, NOW + 899);
    json_decref(got);
    free(token);
    json_decref(claims);
}
END_TEST

START_TEST(header_names_eddsa_jwt_and_the_kid)
{
    json_t *claims = claims_at(NOW, NOW + 60);
    char *token = sign_ok(claims);
    size_t hlen = (size_t)(strchr(token, '.') - token);
    unsigned char *text;
    size_t n;
    ck_assert_status(guild_b64_decode_alloc(token, hlen, &text, &n), GUILD_OK);
    char want[128];
    snprintf(want, sizeof want, "{\"alg\":\"EdDSA\",\"typ\":\"JWT\",\"kid\":\"%s\"}", g_kid);
    ck_assert_str_eq((const char *)text, want);
    free(text);
    free(token);
    json_decref(claims);
}
END_TEST

START_TEST(verify_accepts_a_rotated_key)
{
    unsigned char pk2[crypto_sign_PUBLICKEYBYTES], sk2[crypto_sign_SECRETKEYBYTES];
    crypto_sign_keypair(pk2, sk2);
    char kid2[GUILD_KEY_ID_LEN + 1];
    guild_key_id(pk2, kid2);
    ck_assert_status(guild_jwt_keyring_add(&g_ring, kid2, pk2), GUILD_OK);

    json_t *claims = claims_at(NOW, NOW + 60);
    char *token = NULL;
    ck_assert_status(guild_jwt_sign(claims, kid2, sk2, &token), GUILD_OK);
    json_t *got = verify_ok(token, NOW);
    ck_assert(json_equal(got, claims));
    json_decref(got);
    free(token);
    json_decref(claims);
}
END_TEST

START_TEST(sign_refuses_bad_arguments)
{
    char *token = (char *)"untouched";
    json_t *arr = json_array();
    ck_assert_status(guild_jwt_sign(arr, g_kid, g_sk, &token), GUILD_INVALID_REQUEST);
    ck_assert_status(guild_jwt_sign(NULL, g_kid, g_sk, &token), GUILD_INVALID_REQUEST);
    json_t *claims = claims_at(NOW, NOW + 60);
    ck_assert_status(guild_jwt_sign(claims, "", g_sk, &token), GUILD_INVALID_REQUEST);
    ck_assert_status(guild_jwt_sign(claims, NULL, g_sk, &token), GUILD_INVALID_REQUEST);
    ck_assert_status(guild_jwt_sign(claims, "\xff", g_sk, &token), GUILD_INVALID_REQUEST);
    ck_assert_str_eq(token, "untouched");
    json_decref(claims);
    json_decref(arr);
}
END_TEST

START_TEST(leeway_allows_slightly_early_nbf_and_iat)
{
    json_t *claims = claims_at(NOW + GUILD_JWT_LEEWAY_S, NOW + 600);
    json_object_set_new(claims, "nbf", json_integer(NOW + GUILD_JWT_LEEWAY_S));
    char *token = sign_ok(claims);
    json_t *got = verify_ok(token, NOW);
    json_decref(got);
    free(token);
    json_decref(claims);
}
END_TEST

START_TEST(real_numeric_dates_are_honoured)
{
    json_t *claims = json_pack("{s:f}", "exp", (double)NOW + 0.5);
    char *token = sign_ok(claims);
    json_t *got = verify_ok(token, NOW);
    json_decref(got);
    guild_error err;
    ck_assert_status(guild_jwt_verify(token, &g_ring, NOW + 1, &got, &err), GUILD_UNAUTHENTICATED);
    ck_assert_str_eq(err.message, "token expired");
    free(token);
    json_decref(claims);
}
END_TEST

/* ---- refused tokens ------------------------------------------------------------------ */

START_TEST(expired_token_is_refused)
{
    json_t *claims = claims_at(NOW - 1000, NOW - 1);
    char *token = sign_ok(claims);
    assert_refused(token, GUILD_UNAUTHENTICATED, "token expired");
    json_decref(claims);
    free(token);

    /* exp is exclusive: at exp the token is already expired. */
    claims = claims_at(NOW - 1000, NOW);
    token = sign_ok(claims);
    assert_refused(token, GUILD_UNAUTHENTICATED, "token expired");
    json_decref(claims);
    free(token);
}
END_TEST

START_TEST(token_without_expiry_is_refused)
{
    json_t *claims = json_pack("{s:s}", "sub", "u");
    char *token = sign_ok(claims);
    assert_refused(token, GUILD_UNAUTHENTICATED, "token has no expiry");
    json_decref(claims);
    free(token);

    claims = json_pack("{s:s}", "exp", "tomorrow");
    token = sign_ok(claims);
    assert_refused(token, GUILD_UNAUTHENTICATED, "token has no expiry");
    json_decref(claims);
    free(token);
}
END_TEST

START_TEST(not_yet_valid_token_is_refused)
{
    json_t *claims = claims_at(NOW, NOW + 900);
    json_object_set_new(claims, "nbf", json_integer(NOW + GUILD_JWT_LEEWAY_S + 1));
    char *token = sign_ok(claims);
    assert_refused(token, GUILD_UNAUTHENTICATED, "token not yet valid");
    json_decref(claims);
    free(token);

    /* Issued in the future beyond the leeway. */
    claims = claims_at(NOW + GUILD_JWT_LEEWAY_S + 1, NOW + 900);
    token = sign_ok(claims);
    assert_refused(token, GUILD_UNAUTHENTICATED, "token not yet valid");
    json_decref(claims);
    free(token);
}
END_TEST

START_TEST(tampered_payload_is_refused)
{
    json_t *claims = claims_at(NOW, NOW + 900);
    char *token = sign_ok(claims);
    const char *payload = strchr(token, '.') + 1;
    size_t payload_len = (size_t)(strchr(payload, '.') - payload);
    /* Every single-character change of the payload fails, wherever it is. */
    for (size_t i = 0; i < payload_len; i++) {
        char *copy = strdup(token);
        flip_char(copy, (size_t)(payload - token) + i);
        /* The signature is checked over the raw text before the payload
         * is decoded, so even changes that break its base64 or JSON read
         * as a bad signature. */
        assert_refused(copy, GUILD_UNAUTHENTICATED, "bad token signature");
        free(copy);
    }
    /* A change that keeps the payload valid JSON is caught by the signature:
     * make the user an admin by re-encoding different claims. */
    json_object_set_new(claims, "sub", json_string("0193a1b2-root"));
    char *other = sign_ok(claims);
    const char *other_payload = strchr(other, '.') + 1;
    size_t other_len = (size_t)(strchr(other_payload, '.') - other_payload);
    char *forged = malloc(strlen(token) + other_len + 1);
    size_t hlen = (size_t)(payload - token);
    memcpy(forged, token, hlen);
    memcpy(forged + hlen, other_payload, other_len);
    strcpy(forged + hlen + other_len, strchr(payload, '.'));
    assert_refused(forged, GUILD_UNAUTHENTICATED, "bad token signature");
    free(forged);
    free(other);
    free(token);
    json_decref(claims);
}
END_TEST

START_TEST(tampered_signature_is_refused)
{
    json_t *claims = claims_at(NOW, NOW + 900);
    char *token = sign_ok(claims);
    char *sig = strrchr(token, '.') + 1;
    flip_char(sig, 10);
    assert_refused(token, GUILD_UNAUTHENTICATED, "bad token signature");

    /* A signature cut short, or lengthened, is malformed. */
    size_t len = strlen(token);
    token[len - 4] = '\0';
    assert_refused(token, GUILD_UNAUTHENTICATED, "malformed token");
    free(token);
    json_decref(claims);
}
END_TEST

START_TEST(token_signed_by_another_key_is_refused)
{
    unsigned char pk2[crypto_sign_PUBLICKEYBYTES], sk2[crypto_sign_SECRETKEYBYTES];
    crypto_sign_keypair(pk2, sk2);
    json_t *claims = claims_at(NOW, NOW + 900);
    char *token = NULL;
    /* Claims our kid, signed with a key we do not trust. */
    ck_assert_status(guild_jwt_sign(claims, g_kid, sk2, &token), GUILD_OK);
    assert_refused(token, GUILD_UNAUTHENTICATED, "bad token signature");
    free(token);
    json_decref(claims);
}
END_TEST

START_TEST(unknown_kid_is_refused)
{
    unsigned char pk2[crypto_sign_PUBLICKEYBYTES], sk2[crypto_sign_SECRETKEYBYTES];
    crypto_sign_keypair(pk2, sk2);
    char kid2[GUILD_KEY_ID_LEN + 1];
    guild_key_id(pk2, kid2);
    json_t *claims = claims_at(NOW, NOW + 900);
    char *token = NULL;
    ck_assert_status(guild_jwt_sign(claims, kid2, sk2, &token), GUILD_OK);
    assert_refused(token, GUILD_UNAUTHENTICATED, "unknown key id");
    free(token);

    char *no_kid = craft("{\"alg\":\"EdDSA\",\"typ\":\"JWT\"}", "{\"exp\":1800000000}", g_sk);
    assert_refused(no_kid, GUILD_UNAUTHENTICATED, "unknown key id");
    free(no_kid);
    json_decref(claims);
}
END_TEST

START_TEST(alg_none_and_other_algs_are_refused)
{
    char payload[64];
    snprintf(payload, sizeof payload, "{\"sub\":\"root\",\"exp\":%lld}", NOW + 900);
    char header[128];

    snprintf(header, sizeof header, "{\"alg\":\"none\",\"typ\":\"JWT\",\"kid\":\"%s\"}", g_kid);
    char *token = craft(header, payload, NULL);
    assert_refused(token, GUILD_UNAUTHENTICATED, "unsupported token algorithm");
    free(token);

    /* Even carrying a valid Ed25519 signature, "none" is not accepted. */
    token = craft(header, payload, g_sk);
    assert_refused(token, GUILD_UNAUTHENTICATED, "unsupported token algorithm");
    free(token);

    static const char *const algs[] = {"\"HS256\"", "\"eddsa\"", "\"ES256\"", "null", "1"};
    for (size_t i = 0; i < sizeof algs / sizeof *algs; i++) {
        snprintf(header, sizeof header, "{\"alg\":%s,\"typ\":\"JWT\",\"kid\":\"%s\"}", algs[i],
                 g_kid);
        token = craft(header, payload, g_sk);
        assert_refused(token, GUILD_UNAUTHENTICATED, "unsupported token algorithm");
        free(token);
    }
    token = craft("{\"typ\":\"JWT\"}", payload, g_sk);
    assert_refused(token, GUILD_UNAUTHENTICATED, "unsupported token algorithm");
    free(token);

    /* Critical extensions guild does not know. */
    snprintf(header, sizeof header, "{\"alg\":\"EdDSA\",\"crit\":[\"x\"],\"x\":1,\"kid\":\"%s\"}",
             g_kid);
    token = craft(header, payload, g_sk);
    assert_refused(token, GUILD_UNAUTHENTICATED, "unsupported token header");
    free(token);

    /* The same crafting with a proper header is accepted: the refusals above
     * are for the header, not for how the tokens were built. */
    snprintf(header, sizeof header, "{\"alg\":\"EdDSA\",\"kid\":\"%s\"}", g_kid);
    token = craft(header, payload, g_sk);
    json_t *got = verify_ok(token, NOW);
    json_decref(got);
    free(token);
}
END_TEST

START_TEST(malformed_tokens_are_refused)
{
    json_t *claims = claims_at(NOW, NOW + 900);
    char *good = sign_ok(claims);
    const char *dot1 = strchr(good, '.');
    char two_parts[2048];
    snprintf(two_parts, sizeof two_parts, "%.*s", (int)(strrchr(good, '.') - good), good);
    char four_parts[2048];
    snprintf(four_parts, sizeof four_parts, "%s.AAAA", good);
    char bad_b64_header[2048];
    snprintf(bad_b64_header, sizeof bad_b64_header, "e*%s", dot1);
    char padded_header[2048];
    snprintf(padded_header, sizeof padded_header, "%.*s==%s", (int)(dot1 - good), good, dot1);
    char no_header[2048];
    snprintf(no_header, sizeof no_header, "%s", dot1);

    const char *const bad[] = {
        "",        ".",        "..",           "a.b",         "abc",     "a.b.c.d",
        two_parts, four_parts, bad_b64_header, padded_header, no_header,
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_refused(bad[i], GUILD_UNAUTHENTICATED, "malformed token");
    assert_refused(NULL, GUILD_UNAUTHENTICATED, "malformed token");

    /* A header that is valid base64url but not a JSON object. */
    char *token = craft("[\"EdDSA\"]", "{}", g_sk);
    assert_refused(token, GUILD_UNAUTHENTICATED, "malformed token");
    free(token);
    token = craft("{\"alg\":\"EdDSA\",\"alg\":\"none\"}", "{}", g_sk);
    assert_refused(token, GUILD_UNAUTHENTICATED, "malformed token");
    free(token);

    /* A correctly signed payload that is not a JSON object. */
    char header[128];
    snprintf(header, sizeof header, "{\"alg\":\"EdDSA\",\"kid\":\"%s\"}", g_kid);
    token = craft(header, "not json", g_sk);
    assert_refused(token, GUILD_UNAUTHENTICATED, "malformed token");
    free(token);

    /* Oversized tokens are refused before anything is decoded. */
    char *huge = malloc(GUILD_JWT_MAX_TOKEN + 2);
    memset(huge, 'A', GUILD_JWT_MAX_TOKEN + 1);
    huge[GUILD_JWT_MAX_TOKEN + 1] = '\0';
    huge[10] = '.';
    huge[20] = '.';
    assert_refused(huge, GUILD_UNAUTHENTICATED, "malformed token");
    free(huge);

    free(good);
    json_decref(claims);
}
END_TEST

START_TEST(error_messages_never_quote_the_token)
{
    json_t *claims = claims_at(NOW - 100, NOW - 1);
    char *token = sign_ok(claims);
    guild_error err;
    json_t *got = NULL;
    ck_assert_status(guild_jwt_verify(token, &g_ring, NOW, &got, &err), GUILD_UNAUTHENTICATED);
    const char *sig = strrchr(token, '.') + 1;
    char piece[9];
    snprintf(piece, sizeof piece, "%s", sig);
    ck_assert_ptr_null(strstr(err.message, piece));
    ck_assert_ptr_null(strstr(err.message, g_kid));
    free(token);
    json_decref(claims);
}
END_TEST

static Suite *jwt_suite(void)
{
    Suite *s = suite_create("jwt");
    TCase *tc = tcase_create("b64");
    tcase_add_test(tc, b64_encodes_rfc4648_vectors_without_padding);
    tcase_add_test(tc, b64_round_trips_every_length);
    tcase_add_test(tc, b64_decode_is_strict);
    suite_add_tcase(s, tc);

    tc = tcase_create("keys");
    tcase_add_checked_fixture(tc, keys_setup, NULL);
    tcase_add_test(tc, key_id_is_22_chars_of_blake2b);
    tcase_add_test(tc, keyring_finds_keys_by_kid);
    tcase_add_test(tc, keyring_refuses_conflicts_and_overflow);
    suite_add_tcase(s, tc);

    tc = tcase_create("sign_verify");
    tcase_add_checked_fixture(tc, keys_setup, NULL);
    tcase_add_test(tc, sign_then_verify_returns_the_claims);
    tcase_add_test(tc, header_names_eddsa_jwt_and_the_kid);
    tcase_add_test(tc, verify_accepts_a_rotated_key);
    tcase_add_test(tc, sign_refuses_bad_arguments);
    tcase_add_test(tc, leeway_allows_slightly_early_nbf_and_iat);
    tcase_add_test(tc, real_numeric_dates_are_honoured);
    suite_add_tcase(s, tc);

    tc = tcase_create("refused");
    tcase_add_checked_fixture(tc, keys_setup, NULL);
    tcase_add_test(tc, expired_token_is_refused);
    tcase_add_test(tc, token_without_expiry_is_refused);
    tcase_add_test(tc, not_yet_valid_token_is_refused);
    tcase_add_test(tc, tampered_payload_is_refused);
    tcase_add_test(tc, tampered_signature_is_refused);
    tcase_add_test(tc, token_signed_by_another_key_is_refused);
    tcase_add_test(tc, unknown_kid_is_refused);
    tcase_add_test(tc, alg_none_and_other_algs_are_refused);
    tcase_add_test(tc, malformed_tokens_are_refused);
    tcase_add_test(tc, error_messages_never_quote_the_token);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tst_run_suite(jwt_suite());
}
