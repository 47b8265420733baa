/*
 * user.c — the commands that make and administer users: register_user,
 * bootstrap_admin, update_user, assign_role, revoke_role, deactivate_user,
 * reactivate_user.
 *
 * An e-mail belongs to one user at a time. Its claim stream,
 * identity-email-<key>, is written in the same atomic append as the user's
 * own events, so two registrations of one e-mail cannot both commit: the
 * writer decides them one after the other and the second sees the claim.
 */
#include "domain/identity/internal.h"

#include <string.h>

/* True if the actor is the user `id` or an identity administrator. */
static bool may_manage(const dom_ctx *ctx, const char *id)
{
    const dom_actor *a = ctx->actor;
    if (a && !a->service && a->user_id && strcmp(a->user_id, id) == 0)
        return true;
    return dom_actor_can(a, IDENTITY_PERM_ADMIN);
}

/* Lower-cases the command's e-mail into out and its claim key into key. */
static guild_status email_of(const json_t *cmd, dom_ctx *ctx, char out[IDENTITY_EMAIL_MAX + 1],
                             char key[33])
{
    if (!identity__email_lower(dom_str(cmd, "email", ""), out))
        return dom_fail(ctx, GUILD_VALIDATION_FAILED, "email",
                        "email must have at most 254 characters");
    identity_email_key(out, key);
    return GUILD_OK;
}

/* Fails with a conflict unless the e-mail with key `key` is free. */
static guild_status email_free(dom_ctx *ctx, const char *key)
{
    char holder[64];
    guild_status s = identity__claim_holder(ctx, key, holder);
    if (s != GUILD_OK)
        return s;
    if (holder[0])
        return dom_fail(ctx, GUILD_CONFLICT, "email", "email already registered");
    return GUILD_OK;
}

guild_status identity__prepare_register(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    char hash[crypto_pwhash_STRBYTES];
    (void)state;
    if (identity__password_hash(dom_str(cmd, "password", ""), hash) != GUILD_OK)
        return dom_fail(ctx, GUILD_INTERNAL, NULL, "the password could not be hashed");
    dom_prepared_set(ctx, "password_hash", json_string(hash));
    return GUILD_OK;
}

guild_status identity__prepare_bootstrap(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    char system[256];
    identity__stream(&identity_system, "", system);
    /* Refused in decide anyway: spare argon2id the work. */
    if (ctx->env->stream_version(ctx->env->self, system) > 0)
        return GUILD_OK;
    return identity__prepare_register(state, cmd, ctx);
}

/* Registration shared by register_user and bootstrap_admin. */
static guild_status register_decide(const identity_user_state *u, const json_t *cmd, dom_ctx *ctx,
                                    bool admin)
{
    const char *hash = dom_str(ctx->prepared, "password_hash", NULL);
    char email[IDENTITY_EMAIL_MAX + 1], key[33], claim[256];
    guild_status s;

    if (!hash)
        return dom_fail(ctx, GUILD_INTERNAL, NULL, "the password was not hashed");
    if (u->exists)
        return dom_fail(ctx, GUILD_CONFLICT, NULL, "the user exists already");
    if ((s = email_of(cmd, ctx, email, key)) != GUILD_OK || (s = email_free(ctx, key)) != GUILD_OK)
        return s;

    json_t *roles = admin ? json_pack("[s, s]", "user", "admin") : json_pack("[s]", "user");
    dom_emit(ctx, "user_registered",
             json_pack("{s:s, s:s, s:s, s:s, s:o}", "user_id", ctx->aggregate_id, "email", email,
                       "display_name", dom_str(cmd, "display_name", ""), "password_hash", hash,
                       "roles", roles));
    identity__stream(&identity_email, key, claim);
    dom_emit_to(ctx, claim, "email_claimed", json_pack("{s:s}", "user_id", ctx->aggregate_id));
    dom_reply(ctx, "user_id", json_string(ctx->aggregate_id));
    return GUILD_OK;
}

guild_status identity__register_user(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    return register_decide(state, cmd, ctx, false);
}

guild_status identity__bootstrap_admin(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    char system[256];
    identity__stream(&identity_system, "", system);
    if (ctx->env->stream_version(ctx->env->self, system) > 0)
        return dom_fail(ctx, GUILD_FORBIDDEN, NULL, "an administrator exists already");
    guild_status s = register_decide(state, cmd, ctx, true);
    if (s != GUILD_OK)
        return s;
    dom_emit_to(ctx, system, "admin_bootstrapped",
                json_pack("{s:s}", "user_id", ctx->aggregate_id));
    return GUILD_OK;
}

guild_status identity__update_user(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_user_state *u = state;
    const char *name = dom_str(cmd, "display_name", NULL);
    char email[IDENTITY_EMAIL_MAX + 1], key[33], old_key[33];
    bool new_email = false;
    guild_status s;

    if (!may_manage(ctx, dom_str(cmd, "user_id", "")))
        return dom_fail(ctx, GUILD_FORBIDDEN, NULL,
                        "only the user or an administrator may update a user");
    if (!u->exists)
        return dom_fail(ctx, GUILD_NOT_FOUND, "user_id", "user not found");
    if (json_object_get(cmd, "email")) {
        if ((s = email_of(cmd, ctx, email, key)) != GUILD_OK)
            return s;
        new_email = strcmp(email, u->email) != 0;
        if (new_email && (s = email_free(ctx, key)) != GUILD_OK)
            return s;
    }

    json_t *changes = json_object();
    if (name && strcmp(name, u->display_name) != 0)
        json_object_set_new(changes, "display_name", json_string(name));
    if (new_email)
        json_object_set_new(changes, "email", json_string(email));
    if (json_object_size(changes) == 0) {
        json_decref(changes);
        return GUILD_OK;
    }
    dom_emit(ctx, "user_updated", changes);
    if (new_email) {
        char stream[256];
        identity_email_key(u->email, old_key);
        identity__stream(&identity_email, key, stream);
        dom_emit_to(ctx, stream, "email_claimed", json_pack("{s:s}", "user_id", u->user_id));
        identity__stream(&identity_email, old_key, stream);
        dom_emit_to(ctx, stream, "email_released", json_pack("{s:s}", "user_id", u->user_id));
    }
    return GUILD_OK;
}

/* A built-in role, or a custom one that was defined. */
static bool role_known(const dom_ctx *ctx, const char *role)
{
    char stream[256];
    if (identity__role_builtin(role))
        return true;
    identity__stream(&identity_role, role, stream);
    return ctx->env->stream_version(ctx->env->self, stream) > 0;
}

guild_status identity__assign_role(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_user_state *u = state;
    const char *role = dom_str(cmd, "role", "");
    if (!u->exists)
        return dom_fail(ctx, GUILD_NOT_FOUND, "user_id", "user not found");
    if (!role_known(ctx, role))
        return dom_fail(ctx, GUILD_NOT_FOUND, "role", "role %s not found", role);
    if (!identity__list_has(u->roles, role))
        dom_emit(ctx, "role_assigned", json_pack("{s:s}", "role", role));
    return GUILD_OK;
}

guild_status identity__revoke_role(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_user_state *u = state;
    const char *role = dom_str(cmd, "role", "");
    if (!u->exists)
        return dom_fail(ctx, GUILD_NOT_FOUND, "user_id", "user not found");
    if (identity__list_has(u->roles, role))
        dom_emit(ctx, "role_revoked", json_pack("{s:s}", "role", role));
    return GUILD_OK;
}

guild_status identity__deactivate_user(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_user_state *u = state;
    if (!u->exists)
        return dom_fail(ctx, GUILD_NOT_FOUND, "user_id", "user not found");
    if (u->deactivated)
        return GUILD_OK;
    dom_emit(ctx, "user_deactivated", json_pack("{s:s}", "reason", dom_str(cmd, "reason", "")));
    identity__end_sessions(ctx, u, NULL, "deactivated");
    return GUILD_OK;
}

guild_status identity__reactivate_user(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const identity_user_state *u = state;
    (void)cmd;
    if (!u->exists)
        return dom_fail(ctx, GUILD_NOT_FOUND, "user_id", "user not found");
    if (u->deactivated)
        dom_emit(ctx, "user_reactivated", json_object());
    return GUILD_OK;
}
