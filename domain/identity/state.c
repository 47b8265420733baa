/*
 * state.c — the identity domain's aggregates: how each state is made from
 * its events, and the accessors the runtime reads.
 *
 * Sections: the user; the e-mail claim; the role; the client; the system
 * record; the aggregate rows.
 *
 * The user state drops sessions and reset tokens that expired before the
 * time of the event being applied, so a stream's state stays small however
 * long it lives, and the same events always give the same state.
 */
#include "domain/identity/internal.h"

#include "common/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_PENDING_RESETS 5 /* a newer request drops the oldest beyond this */

static void set_str(char **dst, const char *s)
{
    free(*dst);
    *dst = s ? guild_xstrdup(s) : NULL;
}

static void list_remove(json_t *list, const char *s)
{
    for (size_t i = json_array_size(list); i-- > 0;) {
        const char *x = json_string_value(json_array_get(list, i));
        if (x && strcmp(x, s) == 0)
            json_array_remove(list, i);
    }
}

/* Replaces *dst with a de-duplicated copy of the string array src. */
static guild_status set_list(json_t **dst, const json_t *src)
{
    if (!json_is_array(src))
        return GUILD_CORRUPT;
    json_decref(*dst);
    *dst = identity__list_unique(src);
    return GUILD_OK;
}

/* ---- the user ------------------------------------------------------------- */

typedef guild_status (*user_apply_fn)(identity_user_state *u, const json_t *data);

static void *user_create(void)
{
    identity_user_state *u = guild_xcalloc(1, sizeof *u);
    u->roles = json_array();
    u->sessions = json_object();
    u->resets = json_object();
    return u;
}

static void user_destroy(void *state)
{
    identity_user_state *u = state;
    if (!u)
        return;
    free(u->user_id);
    free(u->email);
    free(u->display_name);
    free(u->password_hash);
    json_decref(u->roles);
    json_decref(u->sessions);
    json_decref(u->resets);
    free(u);
}

/* Drops sessions and reset tokens that lapsed at or before `now`. */
static void user_prune(identity_user_state *u, int64_t now)
{
    const char *key;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(u->sessions, tmp, key, v)
    {
        if (dom_int(v, "expires_at", 0) <= now)
            json_object_del(u->sessions, key);
    }
    json_object_foreach_safe(u->resets, tmp, key, v)
    {
        if (json_integer_value(v) <= now)
            json_object_del(u->resets, key);
    }
}

static guild_status apply_registered(identity_user_state *u, const json_t *data)
{
    const char *id = dom_str(data, "user_id", NULL), *email = dom_str(data, "email", NULL),
               *name = dom_str(data, "display_name", NULL),
               *hash = dom_str(data, "password_hash", NULL);
    if (!id || !email || !name || !hash || set_list(&u->roles, json_object_get(data, "roles")))
        return GUILD_CORRUPT;
    u->exists = true;
    set_str(&u->user_id, id);
    set_str(&u->email, email);
    set_str(&u->display_name, name);
    set_str(&u->password_hash, hash);
    return GUILD_OK;
}

static guild_status apply_updated(identity_user_state *u, const json_t *data)
{
    const char *email = dom_str(data, "email", NULL), *name = dom_str(data, "display_name", NULL);
    if (email)
        set_str(&u->email, email);
    if (name)
        set_str(&u->display_name, name);
    return GUILD_OK;
}

static guild_status apply_password_changed(identity_user_state *u, const json_t *data)
{
    const char *hash = dom_str(data, "password_hash", NULL);
    if (!hash)
        return GUILD_CORRUPT;
    set_str(&u->password_hash, hash);
    json_object_clear(u->resets); /* a reset mailed for the old password is void */
    return GUILD_OK;
}

static guild_status apply_password_reset(identity_user_state *u, const json_t *data)
{
    guild_status s = apply_password_changed(u, data);
    u->failures = 0;
    u->locked_until = 0; /* proving the mailbox lifts a lockout */
    return s;
}

static guild_status apply_reset_requested(identity_user_state *u, const json_t *data)
{
    const char *hash = dom_str(data, "token_hash", NULL);
    int64_t expires = dom_int(data, "expires_at", 0);
    if (!hash || !expires)
        return GUILD_CORRUPT;
    while (json_object_size(u->resets) >= MAX_PENDING_RESETS) {
        char oldest[IDENTITY_HASH_HEX] = "";
        int64_t first = INT64_MAX;
        const char *key;
        json_t *v;
        json_object_foreach(u->resets, key, v)
        {
            if (json_integer_value(v) < first) {
                first = json_integer_value(v);
                snprintf(oldest, sizeof oldest, "%s", key);
            }
        }
        if (json_object_del(u->resets, oldest) != 0)
            return GUILD_CORRUPT; /* a key no request of ours could have written */
    }
    json_object_set_new(u->resets, hash, json_integer(expires));
    return GUILD_OK;
}

static guild_status apply_login_failed(identity_user_state *u, const json_t *data)
{
    u->failures = dom_int(data, "failures", u->failures + 1);
    return GUILD_OK;
}

static guild_status apply_locked(identity_user_state *u, const json_t *data)
{
    u->locked_until = dom_int(data, "until", 0);
    u->failures = 0; /* after the lock lapses, five more tries */
    return GUILD_OK;
}

static guild_status apply_session_started(identity_user_state *u, const json_t *data)
{
    const char *sid = dom_str(data, "session_id", NULL),
               *hash = dom_str(data, "refresh_hash", NULL);
    int64_t expires = dom_int(data, "expires_at", 0);
    if (!sid || !hash || !expires)
        return GUILD_CORRUPT;
    json_object_set_new(u->sessions, sid,
                        json_pack("{s:s, s:I}", "hash", hash, "expires_at", (json_int_t)expires));
    u->failures = 0;
    return GUILD_OK;
}

static guild_status apply_session_refreshed(identity_user_state *u, const json_t *data)
{
    const char *sid = dom_str(data, "session_id", NULL),
               *hash = dom_str(data, "refresh_hash", NULL);
    if (!sid || !hash)
        return GUILD_CORRUPT;
    json_t *s = json_object_get(u->sessions, sid);
    if (s)
        json_object_set_new(s, "hash", json_string(hash));
    return GUILD_OK;
}

static guild_status apply_session_ended(identity_user_state *u, const json_t *data)
{
    const char *sid = dom_str(data, "session_id", NULL);
    if (!sid)
        return GUILD_CORRUPT;
    json_object_del(u->sessions, sid);
    return GUILD_OK;
}

static guild_status apply_role_assigned(identity_user_state *u, const json_t *data)
{
    const char *role = dom_str(data, "role", NULL);
    if (!role)
        return GUILD_CORRUPT;
    if (!identity__list_has(u->roles, role))
        json_array_append_new(u->roles, json_string(role));
    return GUILD_OK;
}

static guild_status apply_role_revoked(identity_user_state *u, const json_t *data)
{
    const char *role = dom_str(data, "role", NULL);
    if (!role)
        return GUILD_CORRUPT;
    list_remove(u->roles, role);
    return GUILD_OK;
}

static guild_status apply_deactivated(identity_user_state *u, const json_t *data)
{
    (void)data;
    u->deactivated = true;
    return GUILD_OK;
}

static guild_status apply_reactivated(identity_user_state *u, const json_t *data)
{
    (void)data;
    u->deactivated = false;
    return GUILD_OK;
}

static const struct {
    const char *type;
    user_apply_fn apply;
} user_events[] = {
    {"user_registered", apply_registered},
    {"user_updated", apply_updated},
    {"password_changed", apply_password_changed},
    {"password_reset_requested", apply_reset_requested},
    {"password_reset", apply_password_reset},
    {"login_failed", apply_login_failed},
    {"account_locked", apply_locked},
    {"session_started", apply_session_started},
    {"session_refreshed", apply_session_refreshed},
    {"session_ended", apply_session_ended},
    {"role_assigned", apply_role_assigned},
    {"role_revoked", apply_role_revoked},
    {"user_deactivated", apply_deactivated},
    {"user_reactivated", apply_reactivated},
};

static guild_status user_evolve(void *state, const char *type, const json_t *data,
                                const dom_event_meta *meta)
{
    identity_user_state *u = state;
    if (!json_is_object(data))
        return GUILD_CORRUPT;
    if (meta && meta->time > 0)
        user_prune(u, meta->time);
    for (size_t i = 0; i < sizeof user_events / sizeof user_events[0]; i++)
        if (strcmp(type, user_events[i].type) == 0)
            return user_events[i].apply(u, data);
    return GUILD_OK;
}

static bool user_exists(const void *state)
{
    return ((const identity_user_state *)state)->exists;
}

/* ---- a user's snapshot ------------------------------------------------------
 * A user's stream grows with every login and refresh; its state does not
 * (lapsed sessions and reset tokens are dropped). The snapshot is the
 * state as a msgpack map; it lives in the identity store beside the events
 * that carry the same hashes. */

#define USER_SNAPSHOT_FORMAT 1

static guild_status user_snapshot(const void *state, char **bytes, size_t *len)
{
    const identity_user_state *u = state;
    json_t *doc =
        json_pack("{s:b, s:b, s:o, s:o, s:o, s:o, s:O, s:O, s:O, s:I, s:I}", "exists", u->exists,
                  "deactivated", u->deactivated, "user_id", dom_str_or_null(u->user_id), "email",
                  dom_str_or_null(u->email), "display_name", dom_str_or_null(u->display_name),
                  "password_hash", dom_str_or_null(u->password_hash), "roles", u->roles, "sessions",
                  u->sessions, "resets", u->resets, "failures", (json_int_t)u->failures,
                  "locked_until", (json_int_t)u->locked_until);
    return dom_snapshot_encode(doc, USER_SNAPSHOT_FORMAT, bytes, len);
}

static bool all_strings(const json_t *a)
{
    size_t i;
    const json_t *v;
    json_array_foreach(a, i, v)
    {
        if (!json_is_string(v))
            return false;
    }
    return json_is_array(a);
}

static void *user_restore(const void *bytes, size_t len)
{
    json_t *doc = dom_snapshot_decode(bytes, len, USER_SNAPSHOT_FORMAT);
    if (!doc)
        return NULL;
    identity_user_state *u = user_create();
    json_t *roles = json_object_get(doc, "roles"), *sessions = json_object_get(doc, "sessions"),
           *resets = json_object_get(doc, "resets");
    bool ok = json_is_boolean(json_object_get(doc, "exists")) &&
              json_is_boolean(json_object_get(doc, "deactivated")) &&
              dom_take_str(json_object_get(doc, "user_id"), &u->user_id) &&
              dom_take_str(json_object_get(doc, "email"), &u->email) &&
              dom_take_str(json_object_get(doc, "display_name"), &u->display_name) &&
              dom_take_str(json_object_get(doc, "password_hash"), &u->password_hash) &&
              all_strings(roles) && json_is_object(sessions) && json_is_object(resets) &&
              json_is_integer(json_object_get(doc, "failures")) &&
              json_is_integer(json_object_get(doc, "locked_until"));
    if (ok) {
        u->exists = json_is_true(json_object_get(doc, "exists"));
        u->deactivated = json_is_true(json_object_get(doc, "deactivated"));
        u->failures = json_integer_value(json_object_get(doc, "failures"));
        u->locked_until = json_integer_value(json_object_get(doc, "locked_until"));
        json_decref(u->roles);
        json_decref(u->sessions);
        json_decref(u->resets);
        u->roles = json_incref(roles);
        u->sessions = json_incref(sessions);
        u->resets = json_incref(resets);
    }
    json_decref(doc);
    if (!ok) {
        user_destroy(u);
        return NULL;
    }
    return u;
}

bool identity_user_exists(const void *user)
{
    return user && ((const identity_user_state *)user)->exists;
}

bool identity_user_deactivated(const void *user)
{
    return user && ((const identity_user_state *)user)->deactivated;
}

bool identity_session_active(const void *user, const char *session_id)
{
    return identity_session_expires_at(user, session_id) != 0;
}

int64_t identity_session_expires_at(const void *user, const char *session_id)
{
    const identity_user_state *u = user;
    if (!u || !u->exists || !session_id)
        return 0;
    return dom_int(json_object_get(u->sessions, session_id), "expires_at", 0);
}

const json_t *identity_user_roles(const void *user)
{
    const identity_user_state *u = user;
    return u && u->exists ? u->roles : NULL;
}

/* ---- the e-mail claim ----------------------------------------------------- */

static void *claim_create(void)
{
    return guild_xcalloc(1, sizeof(identity_claim_state));
}

static void claim_destroy(void *state)
{
    identity_claim_state *c = state;
    if (c)
        free(c->user_id);
    free(c);
}

static guild_status claim_evolve(void *state, const char *type, const json_t *data,
                                 const dom_event_meta *meta)
{
    identity_claim_state *c = state;
    (void)meta;
    if (strcmp(type, "email_claimed") == 0) {
        const char *id = dom_str(data, "user_id", NULL);
        if (!id)
            return GUILD_CORRUPT;
        set_str(&c->user_id, id);
    } else if (strcmp(type, "email_released") == 0) {
        set_str(&c->user_id, NULL);
    }
    return GUILD_OK;
}

static bool claim_exists(const void *state)
{
    return ((const identity_claim_state *)state)->user_id != NULL;
}

/* ---- the role ------------------------------------------------------------- */

static void *role_create(void)
{
    identity_role_state *r = guild_xcalloc(1, sizeof *r);
    r->permissions = json_array();
    return r;
}

static void role_destroy(void *state)
{
    identity_role_state *r = state;
    if (r)
        json_decref(r->permissions);
    free(r);
}

static guild_status role_evolve(void *state, const char *type, const json_t *data,
                                const dom_event_meta *meta)
{
    identity_role_state *r = state;
    (void)meta;
    if (strcmp(type, "role_defined") == 0 || strcmp(type, "role_updated") == 0) {
        r->exists = true;
        return set_list(&r->permissions, json_object_get(data, "permissions"));
    }
    bool grant = strcmp(type, "permission_granted") == 0;
    if (grant || strcmp(type, "permission_revoked") == 0) {
        const char *perm = dom_str(data, "permission", NULL);
        if (!perm)
            return GUILD_CORRUPT;
        if (!grant)
            list_remove(r->permissions, perm);
        else if (!identity__list_has(r->permissions, perm))
            json_array_append_new(r->permissions, json_string(perm));
    }
    return GUILD_OK;
}

static bool role_exists(const void *state)
{
    return ((const identity_role_state *)state)->exists;
}

/* ---- the client ----------------------------------------------------------- */

static void *client_create(void)
{
    identity_client_state *c = guild_xcalloc(1, sizeof *c);
    c->permissions = json_array();
    return c;
}

static void client_destroy(void *state)
{
    identity_client_state *c = state;
    if (!c)
        return;
    free(c->secret_hash);
    json_decref(c->permissions);
    free(c);
}

static guild_status client_evolve(void *state, const char *type, const json_t *data,
                                  const dom_event_meta *meta)
{
    identity_client_state *c = state;
    (void)meta;
    if (strcmp(type, "client_registered") == 0) {
        const char *hash = dom_str(data, "secret_hash", NULL);
        if (!hash || set_list(&c->permissions, json_object_get(data, "permissions")))
            return GUILD_CORRUPT;
        c->exists = true;
        set_str(&c->secret_hash, hash);
    } else if (strcmp(type, "client_revoked") == 0) {
        c->revoked = true;
    }
    return GUILD_OK;
}

static bool client_exists(const void *state)
{
    return ((const identity_client_state *)state)->exists;
}

/* ---- the system record ---------------------------------------------------- */

static void *system_create(void)
{
    return guild_xcalloc(1, sizeof(identity_system_state));
}

static void system_destroy(void *state)
{
    identity_system_state *s = state;
    if (s)
        free(s->admin_id);
    free(s);
}

static guild_status system_evolve(void *state, const char *type, const json_t *data,
                                  const dom_event_meta *meta)
{
    identity_system_state *s = state;
    (void)meta;
    if (strcmp(type, "admin_bootstrapped") == 0) {
        const char *id = dom_str(data, "user_id", NULL);
        if (!id)
            return GUILD_CORRUPT;
        set_str(&s->admin_id, id);
    }
    return GUILD_OK;
}

static bool system_exists(const void *state)
{
    return ((const identity_system_state *)state)->admin_id != NULL;
}

/* ---- the aggregate rows --------------------------------------------------- */

/* A user's stream is the one that grows (a login, a refresh): it has a
 * snapshot codec; the others load from their few events. */
#define IDENTITY_AGG(var, n, prefix, f)                                                            \
    const dom_aggregate var = {.name = n,                                                          \
                               .stream_prefix = prefix,                                            \
                               .create = f##_create,                                               \
                               .destroy = f##_destroy,                                             \
                               .evolve = f##_evolve,                                               \
                               .exists = f##_exists}

const dom_aggregate identity_user = {.name = "user",
                                     .stream_prefix = "",
                                     .create = user_create,
                                     .destroy = user_destroy,
                                     .evolve = user_evolve,
                                     .exists = user_exists,
                                     .snapshot = user_snapshot,
                                     .restore = user_restore};
IDENTITY_AGG(identity_email, "email", "email-", claim);
IDENTITY_AGG(identity_role, "role", "role-", role);
IDENTITY_AGG(identity_client, "client", "client-", client);
IDENTITY_AGG(identity_system, "system", "system", system);
