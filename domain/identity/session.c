/*
 * session.c — sessions and passwords: login, refresh_session, logout,
 * change_password, request_password_reset, reset_password.
 *
 * Sections: sessions and tokens; login; refresh; logout; password change;
 * password reset.
 *
 * A session is a refresh secret the client holds and the user stream knows
 * by its BLAKE2b-256 digest. Each refresh rotates the secret; presenting a
 * secret the session no longer has means a copy leaked (the thief or the
 * owner refreshed first), so the session ends for both.
 *
 * Tokens handed out:
 *   refresh token  <user id>.<session id>.<secret>
 *   reset token    <user id>.<secret>
 * The user id leads so that resolve can find the stream without a look-up.
 */
#include "domain/identity/internal.h"

#include <stdio.h>
#include <string.h>

#define BAD_LOGIN "invalid email or password"
#define BAD_REFRESH "invalid refresh token"
#define BAD_RESET "invalid or expired reset token"

#define PART_SIZE 64 /* buffer for one token part */

/* ---- sessions and tokens -------------------------------------------------- */

void identity__end_sessions(dom_ctx *ctx, const identity_user_state *u, const char *keep,
                            const char *reason)
{
    const char *sid;
    json_t *s;
    json_object_foreach(u->sessions, sid, s)
    {
        if ((keep && strcmp(sid, keep) == 0) || dom_int(s, "expires_at", 0) <= ctx->now)
            continue;
        dom_emit(ctx, "session_ended",
                 json_pack("{s:s, s:s}", "session_id", sid, "reason", reason));
    }
}

/* Before a new session starts: ends the sessions that began first until
 * IDENTITY_MAX_SESSIONS - 1 are left, so one user's logins stay bounded. */
static void make_room(dom_ctx *ctx, const identity_user_state *u)
{
    json_t *ended = json_object();
    for (;;) {
        size_t live = 0;
        const char *sid, *oldest = NULL;
        int64_t first = INT64_MAX;
        json_t *s;
        json_object_foreach(u->sessions, sid, s)
        {
            int64_t exp = dom_int(s, "expires_at", 0);
            if (exp <= ctx->now || json_object_get(ended, sid))
                continue;
            live++;
            if (exp < first) {
                first = exp;
                oldest = sid;
            }
        }
        if (live < IDENTITY_MAX_SESSIONS)
            break;
        json_object_set_new(ended, oldest, json_true());
        dom_emit(ctx, "session_ended",
                 json_pack("{s:s, s:s}", "session_id", oldest, "reason", "session_limit"));
    }
    json_decref(ended);
}

/* Prepares what a new or rotated session needs: a refresh secret and its
 * digest, the user's permissions and, when new_session, a session id. */
static guild_status prepare_session(dom_ctx *ctx, const identity_user_state *u, bool new_session)
{
    char secret[IDENTITY_SECRET_CHARS + 1], hash[IDENTITY_HASH_HEX], sid[IDENTITY_SID_HEX];
    json_t *perms = NULL;
    guild_status s = identity_permissions(ctx->env, u->roles, &perms);
    if (s != GUILD_OK)
        return dom_fail(ctx, s, NULL, "cannot read the user's roles");
    if (new_session) {
        identity__sid_new(sid);
        dom_prepared_set(ctx, "session_id", json_string(sid));
    }
    identity__secret_new(secret);
    identity__secret_hash(secret, hash);
    dom_prepared_set(ctx, "refresh_secret", json_string(secret));
    dom_prepared_set(ctx, "refresh_hash", json_string(hash));
    dom_prepared_set(ctx, "permissions", perms);
    sodium_memzero(secret, sizeof secret);
    return GUILD_OK;
}

/* Replies access_token, refresh_token, expires_in and user_id for session
 * sid with the prepared refresh secret and permissions. */
static guild_status reply_tokens(dom_ctx *ctx, const identity_user_state *u, const char *sid)
{
    const char *secret = dom_str(ctx->prepared, "refresh_secret", NULL);
    json_t *perms = json_object_get(ctx->prepared, "permissions");
    if (!secret || !json_is_array(perms))
        return dom_fail(ctx, GUILD_INTERNAL, NULL, "the session was not prepared");

    json_int_t iat = (json_int_t)(ctx->now / 1000000000);
    json_t *claims = json_pack("{s:s, s:s, s:s, s:O, s:O, s:I, s:I, s:s}", "iss", "guild", "sub",
                               u->user_id, "sid", sid, "perms", perms, "roles", u->roles, "iat",
                               iat, "exp", iat + IDENTITY_ACCESS_TTL_S, "typ", "access");
    guild_status s = identity__reply_access_token(ctx, claims);
    json_decref(claims);
    if (s != GUILD_OK)
        return s;

    char refresh[3 * PART_SIZE];
    snprintf(refresh, sizeof refresh, "%s.%s.%s", u->user_id, sid, secret);
    dom_reply(ctx, "refresh_token", json_string(refresh));
    sodium_memzero(refresh, sizeof refresh);
    dom_reply(ctx, "user_id", json_string(u->user_id));
    return GUILD_OK;
}

/* ---- login ---------------------------------------------------------------- */

guild_status identity__resolve_login(const json_t *cmd, dom_ctx *ctx, char *id_out, size_t size)
{
    char email[IDENTITY_EMAIL_MAX + 1], key[33], holder[64];
    if (!identity__email_lower(dom_str(cmd, "email", ""), email))
        return dom_fail(ctx, GUILD_UNAUTHENTICATED, NULL, BAD_LOGIN);
    identity_email_key(email, key);
    guild_status s = identity__claim_holder(ctx, key, holder);
    if (s != GUILD_OK)
        return s;
    if (!holder[0] || strlen(holder) >= size)
        return dom_fail(ctx, GUILD_UNAUTHENTICATED, NULL, BAD_LOGIN);
    memcpy(id_out, holder, strlen(holder) + 1);
    return GUILD_OK;
}

guild_status identity__prepare_login(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_user_state *u = state;
    if (!u->exists)
        return GUILD_OK;
    bool ok = identity__password_verify(u->password_hash, dom_str(cmd, "password", ""));
    dom_prepared_set(ctx, "password_ok", json_boolean(ok));
    /* decide trusts the verdict only if the hash is still this one */
    dom_prepared_set(ctx, "checked_hash", json_string(u->password_hash));
    return ok ? prepare_session(ctx, u, true) : GUILD_OK;
}

/* True if prepare verified the password against the hash the user has now. */
static bool password_checked(const dom_ctx *ctx, const identity_user_state *u, bool *ok)
{
    json_t *v = json_object_get(ctx->prepared, "password_ok");
    if (!json_is_boolean(v) || strcmp(dom_str(ctx->prepared, "checked_hash", ""), u->password_hash))
        return false;
    *ok = json_is_true(v);
    return true;
}

guild_status identity__login(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_user_state *u = state;
    bool ok = false;
    (void)cmd;
    if (!u->exists)
        return dom_fail(ctx, GUILD_UNAUTHENTICATED, NULL, BAD_LOGIN);
    if (u->deactivated)
        return dom_fail(ctx, GUILD_UNAUTHENTICATED, NULL, "account disabled");
    if (u->locked_until > ctx->now)
        return dom_fail(ctx, GUILD_UNAUTHENTICATED, NULL, "account locked");
    if (!password_checked(ctx, u, &ok))
        return dom_fail(ctx, GUILD_UNAUTHENTICATED, NULL, BAD_LOGIN);

    if (!ok) {
        json_int_t failures = (json_int_t)u->failures + 1;
        dom_emit(ctx, "login_failed", json_pack("{s:I}", "failures", failures));
        if (failures >= IDENTITY_MAX_FAILURES)
            dom_emit(ctx, "account_locked",
                     json_pack("{s:I}", "until", (json_int_t)(ctx->now + IDENTITY_LOCK_NS)));
        return dom_commit_with_error(ctx, GUILD_UNAUTHENTICATED, "%s", BAD_LOGIN);
    }

    const char *sid = dom_str(ctx->prepared, "session_id", NULL);
    const char *hash = dom_str(ctx->prepared, "refresh_hash", NULL);
    if (!sid || !hash)
        return dom_fail(ctx, GUILD_INTERNAL, NULL, "the session was not prepared");
    make_room(ctx, u);
    dom_emit(ctx, "session_started",
             json_pack("{s:s, s:s, s:I}", "session_id", sid, "refresh_hash", hash, "expires_at",
                       (json_int_t)(ctx->now + IDENTITY_SESSION_TTL_NS)));
    return reply_tokens(ctx, u, sid);
}

/* ---- refresh -------------------------------------------------------------- */

/* Splits a refresh token; false if it is not one. */
static bool refresh_split(const json_t *cmd, char uid[37], char sid[PART_SIZE],
                          char secret[PART_SIZE])
{
    char *parts[] = {sid, secret};
    return identity__token_split(dom_str(cmd, "refresh_token", ""), uid, 2, parts, PART_SIZE) &&
           strlen(sid) == IDENTITY_SID_HEX - 1;
}

guild_status identity__resolve_refresh(const json_t *cmd, dom_ctx *ctx, char *id_out, size_t size)
{
    char uid[37], sid[PART_SIZE], secret[PART_SIZE];
    bool ok = refresh_split(cmd, uid, sid, secret) && size > strlen(uid);
    sodium_memzero(secret, sizeof secret);
    if (!ok)
        return dom_fail(ctx, GUILD_UNAUTHENTICATED, NULL, BAD_REFRESH);
    memcpy(id_out, uid, strlen(uid) + 1);
    return GUILD_OK;
}

guild_status identity__prepare_refresh(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_user_state *u = state;
    (void)cmd;
    return u->exists ? prepare_session(ctx, u, false) : GUILD_OK;
}

guild_status identity__refresh_session(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_user_state *u = state;
    char uid[37], sid[PART_SIZE], secret[PART_SIZE], hash[IDENTITY_HASH_HEX];
    if (!refresh_split(cmd, uid, sid, secret))
        return dom_fail(ctx, GUILD_UNAUTHENTICATED, NULL, BAD_REFRESH);
    identity__secret_hash(secret, hash);
    sodium_memzero(secret, sizeof secret);

    json_t *session = json_object_get(u->sessions, sid);
    if (!u->exists || u->deactivated || !session || dom_int(session, "expires_at", 0) <= ctx->now)
        return dom_fail(ctx, GUILD_UNAUTHENTICATED, NULL, BAD_REFRESH);
    if (!identity__digest_equal(hash, dom_str(session, "hash", NULL))) {
        dom_emit(ctx, "session_ended",
                 json_pack("{s:s, s:s}", "session_id", sid, "reason", "refresh_reuse"));
        return dom_commit_with_error(ctx, GUILD_UNAUTHENTICATED, "%s",
                                     "refresh token reused: the session is ended");
    }

    const char *next = dom_str(ctx->prepared, "refresh_hash", NULL);
    if (!next)
        return dom_fail(ctx, GUILD_INTERNAL, NULL, "the session was not prepared");
    dom_emit(ctx, "session_refreshed",
             json_pack("{s:s, s:s}", "session_id", sid, "refresh_hash", next));
    return reply_tokens(ctx, u, sid);
}

/* ---- logout --------------------------------------------------------------- */

guild_status identity__logout(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_user_state *u = state;
    const char *sid = ctx->actor ? ctx->actor->session_id : NULL;
    (void)cmd;
    if (!u->exists)
        return dom_fail(ctx, GUILD_NOT_FOUND, NULL, "user not found");
    if (sid && json_object_get(u->sessions, sid))
        dom_emit(ctx, "session_ended",
                 json_pack("{s:s, s:s}", "session_id", sid, "reason", "logout"));
    return GUILD_OK;
}

/* ---- password change ------------------------------------------------------ */

guild_status identity__prepare_change_password(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_user_state *u = state;
    char hash[crypto_pwhash_STRBYTES];
    if (!u->exists)
        return GUILD_OK;
    bool ok = identity__password_verify(u->password_hash, dom_str(cmd, "current_password", ""));
    dom_prepared_set(ctx, "password_ok", json_boolean(ok));
    dom_prepared_set(ctx, "checked_hash", json_string(u->password_hash));
    if (!ok)
        return GUILD_OK;
    if (identity__password_hash(dom_str(cmd, "new_password", ""), hash) != GUILD_OK)
        return dom_fail(ctx, GUILD_INTERNAL, NULL, "the password could not be hashed");
    dom_prepared_set(ctx, "password_hash", json_string(hash));
    return GUILD_OK;
}

guild_status identity__change_password(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_user_state *u = state;
    const char *hash = dom_str(ctx->prepared, "password_hash", NULL);
    bool ok = false;
    (void)cmd;
    if (!u->exists)
        return dom_fail(ctx, GUILD_NOT_FOUND, NULL, "user not found");
    if (!password_checked(ctx, u, &ok) || !ok || !hash)
        return dom_fail(ctx, GUILD_UNAUTHENTICATED, "current_password",
                        "current password is wrong");
    dom_emit(ctx, "password_changed", json_pack("{s:s}", "password_hash", hash));
    identity__end_sessions(ctx, u, ctx->actor ? ctx->actor->session_id : NULL, "password_changed");
    return GUILD_OK;
}

/* ---- password reset ------------------------------------------------------- */

guild_status identity__resolve_reset_request(const json_t *cmd, dom_ctx *ctx, char *id_out,
                                             size_t size)
{
    char email[IDENTITY_EMAIL_MAX + 1], key[33];
    if (!identity__email_lower(dom_str(cmd, "email", ""), email) || size < sizeof key)
        return dom_fail(ctx, GUILD_VALIDATION_FAILED, "email", "email is too long");
    identity_email_key(email, key);
    memcpy(id_out, key, sizeof key);
    return GUILD_OK;
}

guild_status identity__prepare_reset_request(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    char secret[IDENTITY_SECRET_CHARS + 1], hash[IDENTITY_HASH_HEX];
    (void)state;
    (void)cmd;
    identity__secret_new(secret);
    identity__secret_hash(secret, hash);
    dom_prepared_set(ctx, "reset_secret", json_string(secret));
    dom_prepared_set(ctx, "token_hash", json_string(hash));
    sodium_memzero(secret, sizeof secret);
    return GUILD_OK;
}

/* The target is the e-mail's claim, so that an unknown e-mail is an
 * ordinary, event-less success: the reply is the same either way. */
guild_status identity__request_password_reset(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_claim_state *c = state;
    const char *secret = dom_str(ctx->prepared, "reset_secret", NULL);
    const char *hash = dom_str(ctx->prepared, "token_hash", NULL);
    char stream[256];
    void *user = NULL;
    uint64_t version = 0;
    (void)cmd;
    if (!c->user_id)
        return GUILD_OK;
    if (!secret || !hash)
        return dom_fail(ctx, GUILD_INTERNAL, NULL, "the reset token was not prepared");

    identity__stream(&identity_user, c->user_id, stream);
    guild_status s = ctx->env->load(ctx->env->self, &identity_user, stream, &user, &version);
    if (s != GUILD_OK)
        return dom_fail(ctx, s, NULL, "cannot read the user");
    if (identity_user_exists(user) && !identity_user_deactivated(user)) {
        dom_emit_to(ctx, stream, "password_reset_requested",
                    json_pack("{s:s, s:I}", "token_hash", hash, "expires_at",
                              (json_int_t)(ctx->now + IDENTITY_RESET_TTL_NS)));
        if (ctx->dev_mode) {
            char token[2 * PART_SIZE];
            snprintf(token, sizeof token, "%s.%s", c->user_id, secret);
            dom_reply(ctx, "dev_reset_token", json_string(token));
            sodium_memzero(token, sizeof token);
        }
    }
    identity_user.destroy(user);
    return GUILD_OK;
}

/* Splits a reset token and digests its secret; false if it is not one. */
static bool reset_split(const json_t *cmd, char uid[37], char hash[IDENTITY_HASH_HEX])
{
    char secret[PART_SIZE];
    char *parts[] = {secret};
    if (!identity__token_split(dom_str(cmd, "token", ""), uid, 1, parts, PART_SIZE))
        return false;
    identity__secret_hash(secret, hash);
    sodium_memzero(secret, sizeof secret);
    return true;
}

guild_status identity__resolve_reset(const json_t *cmd, dom_ctx *ctx, char *id_out, size_t size)
{
    char uid[37], hash[IDENTITY_HASH_HEX];
    if (!reset_split(cmd, uid, hash) || size <= strlen(uid))
        return dom_fail(ctx, GUILD_UNAUTHENTICATED, NULL, BAD_RESET);
    memcpy(id_out, uid, strlen(uid) + 1);
    return GUILD_OK;
}

guild_status identity__prepare_reset(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_user_state *u = state;
    char uid[37], token_hash[IDENTITY_HASH_HEX], hash[crypto_pwhash_STRBYTES];
    /* Only a token the user has pending is worth an argon2id run. */
    if (!u->exists || !reset_split(cmd, uid, token_hash) || !json_object_get(u->resets, token_hash))
        return GUILD_OK;
    if (identity__password_hash(dom_str(cmd, "new_password", ""), hash) != GUILD_OK)
        return dom_fail(ctx, GUILD_INTERNAL, NULL, "the password could not be hashed");
    dom_prepared_set(ctx, "password_hash", json_string(hash));
    return GUILD_OK;
}

guild_status identity__reset_password(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_user_state *u = state;
    const char *hash = dom_str(ctx->prepared, "password_hash", NULL);
    char uid[37], token_hash[IDENTITY_HASH_HEX];
    if (!reset_split(cmd, uid, token_hash))
        return dom_fail(ctx, GUILD_UNAUTHENTICATED, NULL, BAD_RESET);
    json_t *expires = json_object_get(u->resets, token_hash);
    if (!u->exists || u->deactivated || !json_is_integer(expires) ||
        json_integer_value(expires) <= ctx->now || !hash)
        return dom_fail(ctx, GUILD_UNAUTHENTICATED, NULL, BAD_RESET);
    dom_emit(ctx, "password_reset",
             json_pack("{s:s, s:s}", "password_hash", hash, "token_hash", token_hash));
    identity__end_sessions(ctx, u, NULL, "password_reset");
    return GUILD_OK;
}
