/*
 * internal.h — what the files of the identity domain share: the aggregate
 * states, the secret helpers and the command functions the tables in
 * identity.c point at. Not for use outside domain/identity/.
 *
 * Files: identity.c (tables and docs), state.c (aggregates and evolve),
 * secret.c (hashes, random tokens, permissions), user.c (registration and
 * administration of users), session.c (login, refresh, logout, passwords),
 * access.c (roles and service clients).
 */
#ifndef GUILD_DOMAIN_IDENTITY_INTERNAL_H
#define GUILD_DOMAIN_IDENTITY_INTERNAL_H

#include "domain/identity/identity.h"

#include <sodium.h>

/* ---- states (state.c) ----------------------------------------------------- */

typedef struct identity_user_state {
    bool exists;
    bool deactivated;
    char *user_id, *email, *display_name, *password_hash; /* owned; NULL before registration */
    json_t *roles;                                        /* [role name] */
    json_t *sessions; /* session id -> {"hash": refresh hash hex, "expires_at": ns} */
    json_t *resets;   /* reset token hash hex -> expires_at ns; pending, unused */
    int64_t failures; /* consecutive wrong passwords */
    int64_t locked_until;
} identity_user_state;

typedef struct identity_claim_state {
    char *user_id; /* holder; NULL when free (never claimed, or released) */
} identity_claim_state;

typedef struct identity_role_state {
    bool exists;
    json_t *permissions; /* [permission] */
} identity_role_state;

typedef struct identity_client_state {
    bool exists;
    bool revoked;
    char *secret_hash;   /* hex */
    json_t *permissions; /* [permission] */
} identity_client_state;

typedef struct identity_system_state {
    char *admin_id; /* the bootstrapped administrator; NULL if none */
} identity_system_state;

/* ---- secrets and helpers (secret.c) --------------------------------------- */

#define IDENTITY_SECRET_BYTES 32
#define IDENTITY_SECRET_CHARS 43 /* base64url of 32 bytes, no padding */
#define IDENTITY_HASH_HEX 65     /* BLAKE2b-256 as hex, with the NUL */
#define IDENTITY_SID_HEX 33      /* a session id: 16 random bytes as hex, with the NUL */
#define IDENTITY_EMAIL_MAX 254

/* The built-in role names. */
bool identity__role_builtin(const char *name);

/* Writes the stream of aggregate agg with id into out (256 bytes). */
void identity__stream(const dom_aggregate *agg, const char *id, char out[256]);

/* Copies email with ASCII letters lower-cased into out; false if it does
 * not fit in IDENTITY_EMAIL_MAX characters. */
bool identity__email_lower(const char *email, char out[IDENTITY_EMAIL_MAX + 1]);

/* Hashes a password with argon2id (OWASP parameters); GUILD_INTERNAL if
 * libsodium fails (out of memory). */
guild_status identity__password_hash(const char *password, char out[crypto_pwhash_STRBYTES]);

/* True if password matches the argon2id string hash. */
bool identity__password_verify(const char *hash, const char *password);

/* A new secret: 32 random bytes as base64url (43 characters and a NUL). */
void identity__secret_new(char out[IDENTITY_SECRET_CHARS + 1]);

/* A new session id: 16 random bytes as hex. */
void identity__sid_new(char out[IDENTITY_SID_HEX]);

/* BLAKE2b-256 of secret as hex. */
void identity__secret_hash(const char *secret, char out[IDENTITY_HASH_HEX]);

/* Compares two hex digests in time that does not depend on where they
 * differ; false if either is NULL or their lengths differ. */
bool identity__digest_equal(const char *a, const char *b);

/* Splits a token "<user id>.<part>[.<part>]" into its user id and `parts`
 * further dot-free parts (1 or 2) written into the buffers of part_out,
 * each part_size bytes. False if the shape is wrong. */
bool identity__token_split(const char *token, char user_id[37], int parts, char *part_out[],
                           size_t part_size);

/* Prepare/decide helpers on a string array: true if it holds s. */
bool identity__list_has(const json_t *list, const char *s);

/* A copy of a string array without duplicates, in first-seen order. */
json_t *identity__list_unique(const json_t *list);

/* Looks up the holder of the e-mail with key `key` through ctx->env:
 * holder[0] = '\0' when the e-mail is free. Returns GUILD_OK or (through
 * dom_fail) the load failure. */
guild_status identity__claim_holder(dom_ctx *ctx, const char *key, char holder[64]);

/* Signs claims through ctx->env->sign_token and puts the token in the reply
 * as access_token, with expires_in. claims are borrowed. */
guild_status identity__reply_access_token(dom_ctx *ctx, const json_t *claims);

/* Emits session_ended {session_id, reason} for every session of u that has
 * not lapsed at ctx->now, except `keep` (may be NULL). */
void identity__end_sessions(dom_ctx *ctx, const identity_user_state *u, const char *keep,
                            const char *reason);

/* Target resolvers shared by several commands. */
guild_status identity__resolve_actor(const json_t *cmd, dom_ctx *ctx, char *id_out, size_t size);

/* ---- commands ------------------------------------------------------------- */

#define IDENTITY_COMMAND(name)                                                                     \
    guild_status identity__##name(const void *, const json_t *, dom_ctx *)

/* user.c */
IDENTITY_COMMAND(prepare_register);
IDENTITY_COMMAND(register_user);
IDENTITY_COMMAND(prepare_bootstrap);
IDENTITY_COMMAND(bootstrap_admin);
IDENTITY_COMMAND(update_user);
IDENTITY_COMMAND(assign_role);
IDENTITY_COMMAND(revoke_role);
IDENTITY_COMMAND(deactivate_user);
IDENTITY_COMMAND(reactivate_user);

/* session.c */
guild_status identity__resolve_login(const json_t *cmd, dom_ctx *ctx, char *id_out, size_t size);
guild_status identity__resolve_refresh(const json_t *cmd, dom_ctx *ctx, char *id_out, size_t size);
guild_status identity__resolve_reset_request(const json_t *cmd, dom_ctx *ctx, char *id_out,
                                             size_t size);
guild_status identity__resolve_reset(const json_t *cmd, dom_ctx *ctx, char *id_out, size_t size);
IDENTITY_COMMAND(prepare_login);
IDENTITY_COMMAND(login);
IDENTITY_COMMAND(prepare_refresh);
IDENTITY_COMMAND(refresh_session);
IDENTITY_COMMAND(logout);
IDENTITY_COMMAND(prepare_change_password);
IDENTITY_COMMAND(change_password);
IDENTITY_COMMAND(prepare_reset_request);
IDENTITY_COMMAND(request_password_reset);
IDENTITY_COMMAND(prepare_reset);
IDENTITY_COMMAND(reset_password);

/* access.c */
IDENTITY_COMMAND(define_role);
IDENTITY_COMMAND(grant_permission);
IDENTITY_COMMAND(revoke_permission);
IDENTITY_COMMAND(prepare_register_client);
IDENTITY_COMMAND(register_client);
IDENTITY_COMMAND(prepare_service_token);
IDENTITY_COMMAND(issue_service_token);
IDENTITY_COMMAND(revoke_client);

#undef IDENTITY_COMMAND

#endif
