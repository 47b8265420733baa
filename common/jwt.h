/*
 * jwt.h — JSON Web Tokens signed with Ed25519 (JWS alg "EdDSA", RFC 8037),
 * the bearer tokens of CONTRACT.md, and the key ids that name their keys.
 *
 * A token is base64url(header) "." base64url(claims) "." base64url(sig),
 * with header {"alg":"EdDSA","typ":"JWT","kid":<key id>} and sig the
 * Ed25519 signature of the first two parts as they appear in the token.
 *
 * Tokens are credentials: nothing here logs one or copies one into an error
 * message, and callers must not either.
 */
#ifndef GUILD_COMMON_JWT_H
#define GUILD_COMMON_JWT_H

#include "common/status.h"

#include <jansson.h>
#include <sodium.h>

#include <stddef.h>
#include <stdint.h>

#define GUILD_JWT_MAX_KEYS 8     /* keys one keyring holds */
#define GUILD_JWT_KID_MAX 64     /* longest key id, without the NUL */
#define GUILD_JWT_MAX_TOKEN 8192 /* longer tokens are refused unread */
#define GUILD_JWT_LEEWAY_S 60    /* clock skew allowed for nbf and iat */
#define GUILD_KEY_ID_LEN 22      /* length of a guild_key_id, without the NUL */

/* The public keys a verifier trusts, by key id. A plain value: no
 * allocation, nothing to release; copy it freely. */
typedef struct guild_jwt_keyring {
    size_t count;
    struct {
        char kid[GUILD_JWT_KID_MAX + 1];
        unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    } keys[GUILD_JWT_MAX_KEYS];
} guild_jwt_keyring;

/* Empties kr. */
void guild_jwt_keyring_init(guild_jwt_keyring *kr);

/* Adds public key pk (copied) under kid (copied; NULL means
 * guild_key_id(pk)). Adding a key already present under the same kid does
 * nothing. Returns GUILD_OK; GUILD_CONFLICT if kid names another key;
 * GUILD_INVALID_REQUEST if kid is empty or longer than GUILD_JWT_KID_MAX,
 * or kr already holds GUILD_JWT_MAX_KEYS keys. */
guild_status guild_jwt_keyring_add(guild_jwt_keyring *kr, const char *kid,
                                   const unsigned char pk[crypto_sign_PUBLICKEYBYTES]);

/* The public key under kid, pointing into kr and valid while kr is neither
 * changed nor freed; NULL if kr has no such key. */
const unsigned char *guild_jwt_keyring_find(const guild_jwt_keyring *kr, const char *kid);

/* Signs claims (borrowed; must be an object) with Ed25519 secret key sk
 * (borrowed; libsodium's 64-byte form, seed then public key, as
 * crypto_sign_keypair or crypto_sign_seed_keypair make it) under key id kid (borrowed; 1 to
 * GUILD_JWT_KID_MAX characters). The claims are taken as given: the caller sets exp, and iat, nbf,
 * sub as it needs. On success *token_out receives a malloc'd NUL-terminated token the caller frees.
 * Returns GUILD_OK; GUILD_INVALID_REQUEST for claims that are not an object or an unusable kid;
 * GUILD_INTERNAL if libsodium cannot start or the claims cannot be encoded. *token_out is written
 * only on success. */
guild_status guild_jwt_sign(const json_t *claims, const char *kid,
                            const unsigned char sk[crypto_sign_SECRETKEYBYTES], char **token_out);

/* Verifies token (borrowed, NUL-terminated; NULL is refused) against the
 * keys of keys (borrowed, not NULL) at Unix time now_s (seconds). Accepts it only if it has three
 * parts of strict base64url, its header names alg "EdDSA" (typ, if present,
 * "JWT"; no "crit") and a kid found in keys, the signature verifies, the
 * claims are an object with a numeric exp greater than now_s, and nbf and
 * iat, where present, are numbers no more than GUILD_JWT_LEEWAY_S seconds
 * ahead of now_s.
 *
 * On success *claims_out receives a new reference to the claims (the caller
 * json_decrefs it). On failure *claims_out is untouched and the result is
 * GUILD_UNAUTHENTICATED (GUILD_INTERNAL if libsodium cannot start), with err
 * (may be NULL) saying "malformed token", "unsupported token algorithm",
 * "unknown key id", "bad token signature", "token has no expiry", "token
 * expired" or "token not yet valid"; the message never quotes the token. */
guild_status guild_jwt_verify(const char *token, const guild_jwt_keyring *keys, int64_t now_s,
                              json_t **claims_out, guild_error *err);

/* Writes the key id of public key pk: base64url of the first 16 bytes of
 * BLAKE2b-256(pk), 22 characters and a NUL. */
void guild_key_id(const unsigned char pk[crypto_sign_PUBLICKEYBYTES],
                  char out[GUILD_KEY_ID_LEN + 1]);

#endif
