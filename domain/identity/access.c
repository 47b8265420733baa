/*
 * access.c — what grants access besides a user's password: custom roles
 * (define_role, grant_permission, revoke_permission) and service clients
 * (register_client, issue_service_token, revoke_client).
 *
 * A role's permissions reach a user's token at the next login or refresh;
 * tokens already issued keep theirs until they expire (15 minutes).
 *
 * A client secret is shown once, in register_client's reply; the client
 * stream keeps only its BLAKE2b-256 digest.
 */
#include "domain/identity/internal.h"

#include <stdio.h>
#include <string.h>

#define BAD_CLIENT "invalid client credentials"

/* ---- roles ---------------------------------------------------------------- */

static guild_status refuse_builtin(dom_ctx *ctx, const char *field, const char *role)
{
    return dom_fail(ctx, GUILD_RULE_VIOLATION, field, "role %s is built in and cannot be changed",
                    role);
}

guild_status identity__define_role(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_role_state *r = state;
    const char *name = dom_str(cmd, "name", "");
    if (identity__role_builtin(name))
        return refuse_builtin(ctx, "name", name);

    json_t *perms = identity__list_unique(json_object_get(cmd, "permissions"));
    if (r->exists && json_equal(perms, r->permissions)) {
        json_decref(perms);
        return GUILD_OK;
    }
    dom_emit(ctx, r->exists ? "role_updated" : "role_defined",
             json_pack("{s:s, s:o}", "name", name, "permissions", perms));
    return GUILD_OK;
}

/* Grants (grant) or revokes one permission of a custom role. */
static guild_status change_permission(const void *state, const json_t *cmd, dom_ctx *ctx,
                                      bool grant)
{
    const identity_role_state *r = state;
    const char *role = dom_str(cmd, "role", "");
    const char *perm = dom_str(cmd, "permission", "");
    if (identity__role_builtin(role))
        return refuse_builtin(ctx, "role", role);
    if (!r->exists)
        return dom_fail(ctx, GUILD_NOT_FOUND, "role", "role %s not found", role);
    if (identity__list_has(r->permissions, perm) != grant)
        dom_emit(ctx, grant ? "permission_granted" : "permission_revoked",
                 json_pack("{s:s, s:s}", "role", role, "permission", perm));
    return GUILD_OK;
}

guild_status identity__grant_permission(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    return change_permission(state, cmd, ctx, true);
}

guild_status identity__revoke_permission(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    return change_permission(state, cmd, ctx, false);
}

/* ---- service clients ------------------------------------------------------ */

guild_status identity__prepare_register_client(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    char secret[IDENTITY_SECRET_CHARS + 1], hash[IDENTITY_HASH_HEX];
    (void)state;
    (void)cmd;
    identity__secret_new(secret);
    identity__secret_hash(secret, hash);
    dom_prepared_set(ctx, "client_secret", json_string(secret));
    dom_prepared_set(ctx, "secret_hash", json_string(hash));
    sodium_memzero(secret, sizeof secret);
    return GUILD_OK;
}

guild_status identity__register_client(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_client_state *c = state;
    const char *id = dom_str(cmd, "client_id", "");
    const char *secret = dom_str(ctx->prepared, "client_secret", NULL);
    const char *hash = dom_str(ctx->prepared, "secret_hash", NULL);
    if (c->exists)
        return dom_fail(ctx, GUILD_CONFLICT, "client_id", "client %s exists already", id);
    if (!secret || !hash)
        return dom_fail(ctx, GUILD_INTERNAL, NULL, "the client secret was not prepared");
    dom_emit(ctx, "client_registered",
             json_pack("{s:s, s:s, s:o}", "client_id", id, "secret_hash", hash, "permissions",
                       identity__list_unique(json_object_get(cmd, "permissions"))));
    dom_reply(ctx, "client_id", json_string(id));
    dom_reply(ctx, "client_secret", json_string(secret));
    return GUILD_OK;
}

guild_status identity__prepare_service_token(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_client_state *c = state;
    char hash[IDENTITY_HASH_HEX];
    if (!c->exists)
        return GUILD_OK;
    identity__secret_hash(dom_str(cmd, "client_secret", ""), hash);
    dom_prepared_set(ctx, "secret_ok", json_boolean(identity__digest_equal(hash, c->secret_hash)));
    dom_prepared_set(ctx, "checked_hash", json_string(c->secret_hash));
    return GUILD_OK;
}

guild_status identity__issue_service_token(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_client_state *c = state;
    const char *id = dom_str(cmd, "client_id", "");
    if (!c->exists || c->revoked || !dom_bool(ctx->prepared, "secret_ok", false) ||
        strcmp(dom_str(ctx->prepared, "checked_hash", ""), c->secret_hash) != 0)
        return dom_fail(ctx, GUILD_UNAUTHENTICATED, NULL, BAD_CLIENT);

    char sub[128];
    snprintf(sub, sizeof sub, "client:%s", id);
    json_int_t iat = (json_int_t)(ctx->now / 1000000000);
    json_t *claims = json_pack("{s:s, s:s, s:O, s:s, s:b, s:I, s:I}", "iss", "guild", "sub", sub,
                               "perms", c->permissions, "typ", "service", "svc", 1, "iat", iat,
                               "exp", iat + IDENTITY_ACCESS_TTL_S);
    guild_status s = identity__reply_access_token(ctx, claims);
    json_decref(claims);
    if (s != GUILD_OK)
        return s;
    dom_emit(ctx, "service_token_issued", json_object());
    return GUILD_OK;
}

guild_status identity__revoke_client(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_client_state *c = state;
    if (!c->exists)
        return dom_fail(ctx, GUILD_NOT_FOUND, "client_id", "client %s not found",
                        dom_str(cmd, "client_id", ""));
    if (!c->revoked)
        dom_emit(ctx, "client_revoked", json_object());
    return GUILD_OK;
}
