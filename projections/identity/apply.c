/*
 * apply.c — how the identity read model folds each identity event into its
 * databases (see internal.h for their layout).
 *
 * Sections: helpers; users; roles; the dispatcher.
 *
 * Which events matter: a user's registration, profile changes, role
 * assignments and (de)activation; a custom role's definition and its
 * permission changes. The rest — sessions, passwords, lockouts, e-mail claim
 * streams, service clients, the system record — either holds secrets or
 * says nothing a query answers, and is ignored. The e-mail index follows the
 * user's own events (user_registered, user_updated), which carry the
 * address; the claim streams carry only its hash.
 *
 * An event that presupposes state the model does not have (a role assigned
 * to a user who never registered) fails with GUILD_CORRUPT, which parks it:
 * the history and the model disagree, and someone should look.
 */
#include "projections/identity/internal.h"

#include "common/alloc.h"
#include "common/clock.h"

#include <stdlib.h>
#include <string.h>

/* ---- helpers -------------------------------------------------------------- */

char *prj_identity__email_key(const char *email)
{
    char *key = guild_xstrdup(email);
    for (char *p = key; *p; p++)
        if (*p >= 'A' && *p <= 'Z')
            *p = (char)(*p - 'A' + 'a');
    return key;
}

bool prj_identity__list_has(const json_t *list, const char *s)
{
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v)
    {
        const char *x = json_string_value(v);
        if (x && strcmp(x, s) == 0)
            return true;
    }
    return false;
}

/* A new array of the strings of list, without duplicates, in first-seen
 * order; NULL if list is not an array of strings. */
static json_t *names_unique(const json_t *list)
{
    if (!json_is_array(list))
        return NULL;
    json_t *out = json_array();
    size_t i;
    const json_t *v;
    json_array_foreach(list, i, v)
    {
        const char *s = json_string_value(v);
        if (!s) {
            json_decref(out);
            return NULL;
        }
        if (!prj_identity__list_has(out, s))
            json_array_append_new(out, json_string(s));
    }
    return out;
}

static void names_remove(json_t *list, const char *s)
{
    for (size_t i = json_array_size(list); i-- > 0;) {
        const char *x = json_string_value(json_array_get(list, i));
        if (x && strcmp(x, s) == 0)
            json_array_remove(list, i);
    }
}

static json_t *event_time(const prj_event *ev)
{
    char buf[40];
    return json_string(guild_time_format(ev->rec->time, buf, sizeof buf));
}

static guild_status corrupt(guild_error *err, const prj_event *ev, const char *why)
{
    return guild_error_set(err, GUILD_CORRUPT, 0, "%s at position %llu: %s", ev->type,
                           (unsigned long long)ev->rec->position, why);
}

static guild_status put_row(prj_txn *t, const char *db, const char *key, const json_t *row,
                            guild_error *err)
{
    guild_status s = prj_put_json(t, db, key, strlen(key), row);
    if (s != GUILD_OK)
        return guild_error_set(err, s, 0, "writing %s %s", db, key);
    return GUILD_OK;
}

/* Loads the row under key into *row: GUILD_OK, or GUILD_CORRUPT (with err)
 * when there is none, as the event presupposes one. */
static guild_status get_row(prj_txn *t, const prj_event *ev, const char *db, const char *key,
                            json_t **row, guild_error *err)
{
    guild_status s = prj_get_json(t, db, key, strlen(key), row);
    if (s == GUILD_NOT_FOUND)
        return guild_error_set(err, GUILD_CORRUPT, 0, "%s at position %llu: %s has no row %s",
                               ev->type, (unsigned long long)ev->rec->position, db, key);
    if (s != GUILD_OK)
        return guild_error_set(err, s, 0, "reading %s %s", db, key);
    return GUILD_OK;
}

/* ---- users ---------------------------------------------------------------- */

/* Points the e-mail index at user id for email. */
static guild_status email_put(prj_txn *t, const char *email, const char *id, guild_error *err)
{
    char *key = prj_identity__email_key(email);
    guild_status s = prj_put(t, IDM_EMAILS, key, strlen(key), id, strlen(id));
    if (s != GUILD_OK)
        guild_error_set(err, s, 0, "writing the e-mail index");
    free(key);
    return s;
}

/* Drops email from the index if it still names user id (it may already
 * have passed to someone else). */
static guild_status email_drop(prj_txn *t, const char *email, const char *id, guild_error *err)
{
    char *key = prj_identity__email_key(email);
    const void *holder;
    size_t n;
    guild_status s = prj_get(t, IDM_EMAILS, key, strlen(key), &holder, &n);
    if (s == GUILD_OK && n == strlen(id) && memcmp(holder, id, n) == 0)
        s = prj_del(t, IDM_EMAILS, key, strlen(key));
    else if (s == GUILD_NOT_FOUND)
        s = GUILD_OK;
    if (s != GUILD_OK)
        guild_error_set(err, s, 0, "updating the e-mail index");
    free(key);
    return s;
}

static guild_status user_registered(prj_txn *t, const prj_event *ev, guild_error *err)
{
    const char *id = dom_str(ev->data, "user_id", NULL), *email = dom_str(ev->data, "email", NULL),
               *name = dom_str(ev->data, "display_name", NULL);
    json_t *roles = names_unique(json_object_get(ev->data, "roles"));
    const void *old;
    size_t n;
    guild_status s;

    if (!id || !email || !name || !roles) {
        json_decref(roles);
        return corrupt(err, ev, "user_id, email, display_name or roles missing");
    }
    if (strcmp(id, ev->aggregate_id) != 0) {
        json_decref(roles);
        return corrupt(err, ev, "user_id is not the stream's");
    }
    s = prj_get(t, IDM_USERS, id, strlen(id), &old, &n);
    if (s != GUILD_NOT_FOUND) {
        json_decref(roles);
        return s == GUILD_OK ? corrupt(err, ev, "the user registered before")
                             : guild_error_set(err, s, 0, "reading user %s", id);
    }

    json_t *when = event_time(ev);
    json_t *row = json_pack("{s:s, s:s, s:s, s:o, s:b, s:O, s:O, s:I}", "user_id", id, "email",
                            email, "display_name", name, "roles", roles, "active", 1, "created",
                            when, "updated", when, "version", (json_int_t)ev->rec->version);
    json_decref(when);
    if (!row)
        return corrupt(err, ev, "a field is not valid UTF-8");
    s = put_row(t, IDM_USERS, id, row, err);
    json_decref(row);
    if (s != GUILD_OK)
        return s;
    return email_put(t, email, id, err);
}

/* Changes a user's row in place; the caller stamps and stores it. */
typedef guild_status (*user_fold_fn)(prj_txn *t, json_t *row, const prj_event *ev,
                                     guild_error *err);

static guild_status fold_updated(prj_txn *t, json_t *row, const prj_event *ev, guild_error *err)
{
    const char *name = dom_str(ev->data, "display_name", NULL);
    const char *email = dom_str(ev->data, "email", NULL);
    const char *id = ev->aggregate_id;
    guild_status s;

    if (name)
        json_object_set_new(row, "display_name", json_string(name));
    if (email) {
        if ((s = email_drop(t, dom_str(row, "email", ""), id, err)) != GUILD_OK ||
            (s = email_put(t, email, id, err)) != GUILD_OK)
            return s;
        json_object_set_new(row, "email", json_string(email));
    }
    return GUILD_OK;
}

static guild_status fold_role(json_t *row, const prj_event *ev, bool assign, guild_error *err)
{
    const char *role = dom_str(ev->data, "role", NULL);
    json_t *roles = json_object_get(row, "roles");
    if (!role)
        return corrupt(err, ev, "role missing");
    if (!json_is_array(roles))
        return corrupt(err, ev, "the user's row has no roles");
    if (!assign)
        names_remove(roles, role);
    else if (!prj_identity__list_has(roles, role))
        json_array_append_new(roles, json_string(role));
    return GUILD_OK;
}

static guild_status fold_role_assigned(prj_txn *t, json_t *row, const prj_event *ev,
                                       guild_error *err)
{
    (void)t;
    return fold_role(row, ev, true, err);
}

static guild_status fold_role_revoked(prj_txn *t, json_t *row, const prj_event *ev,
                                      guild_error *err)
{
    (void)t;
    return fold_role(row, ev, false, err);
}

static guild_status fold_deactivated(prj_txn *t, json_t *row, const prj_event *ev, guild_error *err)
{
    (void)t, (void)ev, (void)err;
    json_object_set_new(row, "active", json_false());
    return GUILD_OK;
}

static guild_status fold_reactivated(prj_txn *t, json_t *row, const prj_event *ev, guild_error *err)
{
    (void)t, (void)ev, (void)err;
    json_object_set_new(row, "active", json_true());
    return GUILD_OK;
}

static const struct {
    const char *type;
    user_fold_fn fold;
} user_events[] = {
    {"user_updated", fold_updated},         {"role_assigned", fold_role_assigned},
    {"role_revoked", fold_role_revoked},    {"user_deactivated", fold_deactivated},
    {"user_reactivated", fold_reactivated},
};

static guild_status user_changed(prj_txn *t, const prj_event *ev, user_fold_fn fold,
                                 guild_error *err)
{
    const char *id = ev->aggregate_id;
    json_t *row = NULL;
    guild_status s = get_row(t, ev, IDM_USERS, id, &row, err);
    if (s != GUILD_OK)
        return s;
    if ((s = fold(t, row, ev, err)) == GUILD_OK) {
        json_object_set_new(row, "updated", event_time(ev));
        json_object_set_new(row, "version", json_integer((json_int_t)ev->rec->version));
        s = put_row(t, IDM_USERS, id, row, err);
    }
    json_decref(row);
    return s;
}

/* ---- roles ---------------------------------------------------------------- */

/* True if the event is on the stream of role `name` (identity-role-<name>). */
static bool on_role_stream(const prj_event *ev, const char *name)
{
    return strncmp(ev->aggregate_id, "role-", 5) == 0 && strcmp(ev->aggregate_id + 5, name) == 0;
}

/* role_defined and role_updated: the role's permissions are replaced. */
static guild_status role_defined(prj_txn *t, const prj_event *ev, guild_error *err)
{
    const char *name = dom_str(ev->data, "name", NULL);
    json_t *perms = names_unique(json_object_get(ev->data, "permissions"));
    guild_status s;
    if (!name || !perms)
        s = corrupt(err, ev, "name or permissions missing");
    else if (!on_role_stream(ev, name))
        s = corrupt(err, ev, "name is not the stream's");
    else {
        json_t *row = json_pack("{s:s, s:O}", "name", name, "permissions", perms);
        s = put_row(t, IDM_ROLES, name, row, err);
        json_decref(row);
    }
    json_decref(perms);
    return s;
}

/* permission_granted (grant) and permission_revoked. */
static guild_status role_permission(prj_txn *t, const prj_event *ev, bool grant, guild_error *err)
{
    const char *name = dom_str(ev->data, "role", NULL);
    const char *perm = dom_str(ev->data, "permission", NULL);
    json_t *row = NULL;
    guild_status s;
    if (!name || !perm)
        return corrupt(err, ev, "role or permission missing");
    if (!on_role_stream(ev, name))
        return corrupt(err, ev, "role is not the stream's");
    if ((s = get_row(t, ev, IDM_ROLES, name, &row, err)) != GUILD_OK)
        return s;
    json_t *perms = json_object_get(row, "permissions");
    if (!json_is_array(perms))
        s = corrupt(err, ev, "the role's row has no permissions");
    else {
        if (!grant)
            names_remove(perms, perm);
        else if (!prj_identity__list_has(perms, perm))
            json_array_append_new(perms, json_string(perm));
        s = put_row(t, IDM_ROLES, name, row, err);
    }
    json_decref(row);
    return s;
}

/* ---- the dispatcher ------------------------------------------------------- */

guild_status prj_identity__apply(prj_txn *t, const prj_event *ev, guild_error *err)
{
    const char *type = ev->type;
    if (strcmp(type, "user_registered") == 0)
        return user_registered(t, ev, err);
    for (size_t i = 0; i < sizeof user_events / sizeof user_events[0]; i++)
        if (strcmp(type, user_events[i].type) == 0)
            return user_changed(t, ev, user_events[i].fold, err);
    if (strcmp(type, "role_defined") == 0 || strcmp(type, "role_updated") == 0)
        return role_defined(t, ev, err);
    if (strcmp(type, "permission_granted") == 0)
        return role_permission(t, ev, true, err);
    if (strcmp(type, "permission_revoked") == 0)
        return role_permission(t, ev, false, err);
    return GUILD_OK;
}
