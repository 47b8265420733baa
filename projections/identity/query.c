/*
 * query.c — the identity read model's queries and its row in the model
 * table (prj_identity_model, declared in projections/models.h).
 *
 * Sections: helpers; get_user; list_users; check_permission; list_roles;
 * the model row.
 *
 * The projector store validates arguments against each query's fields and
 * checks a query's `permission` before `run` is called; what depends on the
 * arguments (a user may read their own record) is checked here. A NULL
 * actor is an in-process caller the store trusts, and so do these queries.
 */
#include "projections/identity/internal.h"

#include "common/codec.h"
#include "domain/identity/identity.h"
#include "projections/models.h"

#include <stdlib.h>
#include <string.h>

#define LIST_DEFAULT 20
#define LIST_MAX 100

/* ---- helpers -------------------------------------------------------------- */

static bool is_admin(const dom_actor *actor)
{
    return !actor || dom_actor_can(actor, IDENTITY_PERM_ADMIN);
}

static bool is_self(const dom_actor *actor, const char *user_id)
{
    return actor && !actor->service && actor->user_id && strcmp(actor->user_id, user_id) == 0;
}

static guild_status read_failed(guild_error *err, guild_status s, const char *what)
{
    return guild_error_set(err, s, 0, "reading %s from the identity read model", what);
}

/* A look-up of user id's row as it ended: GUILD_OK, GUILD_NOT_FOUND (with
 * err naming the field user_id) or a read failure. */
static guild_status user_found(guild_status s, guild_error *err)
{
    if (s == GUILD_NOT_FOUND)
        return guild_error_field(err, s, "user_id", "user not found");
    if (s != GUILD_OK)
        return read_failed(err, s, "a user");
    return GUILD_OK;
}

/* Loads user id's row (see user_found). */
static guild_status user_get(prj_read *r, const char *id, json_t **row, guild_error *err)
{
    return user_found(prj_rget_json(r, IDM_USERS, id, strlen(id), row), err);
}

/* ---- get_user ------------------------------------------------------------- */

/* Refused before the look-up, so that others cannot probe which ids exist. */
static guild_status may_read_user(const dom_actor *actor, const char *id, guild_error *err)
{
    if (!is_self(actor, id) && !is_admin(actor))
        return guild_error_set(err, GUILD_FORBIDDEN, 0,
                               "only the user or an identity administrator may read a user");
    return GUILD_OK;
}

static guild_status get_user(prj_read *r, const json_t *args, const dom_actor *actor, json_t **data,
                             guild_error *err)
{
    const char *id = dom_str(args, "user_id", "");
    guild_status s = may_read_user(actor, id, err);
    return s != GUILD_OK ? s : user_get(r, id, data, err);
}

/* The same, with the user's row as stored. */
static guild_status get_user_stored(prj_read *r, const json_t *args, const dom_actor *actor,
                                    const void **bytes, size_t *len, guild_error *err)
{
    const char *id = dom_str(args, "user_id", "");
    guild_status s = may_read_user(actor, id, err);
    return s != GUILD_OK ? s : user_found(prj_rget(r, IDM_USERS, id, strlen(id), bytes, len), err);
}

/* ---- list_users ----------------------------------------------------------- */

typedef struct page {
    json_t *results;    /* rows so far */
    size_t limit;       /* rows wanted */
    const char *cursor; /* the key to start after, or NULL */
    const char *role;   /* only rows holding it, or NULL */
    bool more;          /* a row beyond the page exists */
    guild_status status;
} page;

static bool row_wanted(const page *p, const json_t *row)
{
    return !p->role || prj_identity__list_has(json_object_get(row, "roles"), p->role);
}

static int page_visit(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    page *p = ctx;
    json_t *row;
    if (p->cursor && klen == strlen(p->cursor) && memcmp(key, p->cursor, klen) == 0)
        return 0;
    if (guild_codec_decode(val, vlen, GUILD_FMT_MSGPACK, &row, NULL) != GUILD_OK) {
        p->status = GUILD_CORRUPT;
        return 1;
    }
    if (!row_wanted(p, row)) {
        json_decref(row);
        return 0;
    }
    if (json_array_size(p->results) == p->limit) {
        json_decref(row);
        p->more = true;
        return 1;
    }
    json_array_append_new(p->results, row);
    return 0;
}

/* The single row the e-mail index names, if it passes the filter. */
static guild_status list_by_email(prj_read *r, page *p, const char *email, guild_error *err)
{
    char *key = prj_identity__email_key(email);
    const void *id;
    size_t n;
    guild_status s = prj_rget(r, IDM_EMAILS, key, strlen(key), &id, &n);
    free(key);
    if (s == GUILD_NOT_FOUND)
        return GUILD_OK;
    if (s != GUILD_OK)
        return read_failed(err, s, "the e-mail index");
    json_t *row;
    s = prj_rget_json(r, IDM_USERS, id, n, &row);
    if (s == GUILD_NOT_FOUND)
        return GUILD_OK;
    if (s != GUILD_OK)
        return read_failed(err, s, "a user");
    if (row_wanted(p, row))
        json_array_append(p->results, row);
    json_decref(row);
    return GUILD_OK;
}

/*
 * Pages through users in user id order. The cursor is the id of the last
 * user of the previous page: the next page starts after it, so users
 * registered meanwhile with a smaller id are not seen and none is seen
 * twice.
 */
static guild_status list_users(prj_read *r, const json_t *args, const dom_actor *actor,
                               json_t **data, guild_error *err)
{
    const char *email = dom_str(args, "email", NULL);
    page p = {
        .results = json_array(),
        .limit = (size_t)dom_int(args, "limit", LIST_DEFAULT),
        .cursor = dom_str(args, "cursor", NULL),
        .role = dom_str(args, "role", NULL),
        .status = GUILD_OK,
    };
    guild_status s;
    (void)actor;

    if (email) {
        s = list_by_email(r, &p, email, err);
    } else {
        const char *start = p.cursor;
        s = prj_rscan(r, IDM_USERS, "", 0, start, start ? strlen(start) : 0, page_visit, &p);
        if (s == GUILD_OK && p.status != GUILD_OK)
            s = guild_error_set(err, p.status, 0, "a user row does not decode");
        else if (s != GUILD_OK)
            s = read_failed(err, s, "users");
    }
    if (s != GUILD_OK) {
        json_decref(p.results);
        return s;
    }
    json_t *next = json_null();
    if (p.more) {
        json_t *last = json_array_get(p.results, json_array_size(p.results) - 1);
        json_decref(next);
        next = json_string(dom_str(last, "user_id", ""));
    }
    *data = json_pack("{s:o, s:o}", "results", p.results, "next_cursor", next);
    return GUILD_OK;
}

/* ---- check_permission ----------------------------------------------------- */

/* The permissions role grants: ["*"] for admin, [] for user, a custom
 * role's own, [] for a role without a row. *out is a new reference. */
static guild_status role_permissions(prj_read *r, const char *role, json_t **out, guild_error *err)
{
    if (strcmp(role, "admin") == 0) {
        *out = json_pack("[s]", "*");
        return GUILD_OK;
    }
    if (strcmp(role, "user") == 0) {
        *out = json_array();
        return GUILD_OK;
    }
    json_t *row;
    guild_status s = prj_rget_json(r, IDM_ROLES, role, strlen(role), &row);
    if (s == GUILD_NOT_FOUND) {
        *out = json_array();
        return GUILD_OK;
    }
    if (s != GUILD_OK)
        return read_failed(err, s, "a role");
    json_t *perms = json_object_get(row, "permissions");
    *out = json_is_array(perms) ? json_incref(perms) : json_array();
    json_decref(row);
    return GUILD_OK;
}

/*
 * A role grants a permission as a token holding the role's permissions
 * would (dom_actor_can): exactly, through "*", or through "<prefix>:*". A
 * deactivated user holds nothing, so `via` is then empty as well.
 */
static guild_status check_permission(prj_read *r, const json_t *args, const dom_actor *actor,
                                     json_t **data, guild_error *err)
{
    const char *id = dom_str(args, "user_id", ""), *perm = dom_str(args, "permission", "");
    json_t *row = NULL, *via = json_array();
    guild_status s = user_get(r, id, &row, err);
    bool active = s == GUILD_OK && json_is_true(json_object_get(row, "active"));
    size_t i;
    json_t *v;
    (void)actor;

    json_array_foreach(active ? json_object_get(row, "roles") : NULL, i, v)
    {
        const char *role = json_string_value(v);
        json_t *perms = NULL;
        if (!role)
            continue;
        if ((s = role_permissions(r, role, &perms, err)) != GUILD_OK)
            break;
        dom_actor holder = {.user_id = "", .session_id = "", .permissions = perms};
        if (dom_actor_can(&holder, perm))
            json_array_append_new(via, json_string(role));
        json_decref(perms);
    }
    if (s == GUILD_OK)
        *data = json_pack("{s:s, s:s, s:b, s:O, s:b}", "user_id", id, "permission", perm, "allowed",
                          json_array_size(via) > 0, "via", via, "active", active);
    json_decref(via);
    json_decref(row);
    return s;
}

/* ---- list_roles ----------------------------------------------------------- */

static int role_visit(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    json_t *results = ctx, *row;
    (void)key, (void)klen;
    if (guild_codec_decode(val, vlen, GUILD_FMT_MSGPACK, &row, NULL) != GUILD_OK)
        return 1;
    json_object_set_new(row, "builtin", json_false());
    json_array_append_new(results, row);
    return 0;
}

/* The built-in roles first, then the custom ones by name. */
static guild_status list_roles(prj_read *r, const json_t *args, const dom_actor *actor,
                               json_t **data, guild_error *err)
{
    (void)args, (void)actor;
    json_t *results =
        json_pack("[{s:s, s:[s], s:b}, {s:s, s:[], s:b}]", "name", "admin", "permissions", "*",
                  "builtin", 1, "name", "user", "permissions", "builtin", 1);
    guild_status s = prj_rscan(r, IDM_ROLES, "", 0, NULL, 0, role_visit, results);
    if (s != GUILD_OK) {
        json_decref(results);
        return read_failed(err, s, "roles");
    }
    *data = json_pack("{s:o}", "results", results);
    return GUILD_OK;
}

/* ---- the model row -------------------------------------------------------- */

#define F_END                                                                                      \
    {                                                                                              \
        0                                                                                          \
    }

static const dom_field q_get_user[] = {
    {.name = "user_id", .type = DOM_UUID, .required = true, .doc = "the user"},
    F_END,
};

static const dom_field q_list_users[] = {
    {.name = "limit",
     .type = DOM_INT,
     .min = 1,
     .max = LIST_MAX,
     .doc = "page size, 1 to 100 (default 20)"},
    {.name = "cursor",
     .type = DOM_UUID,
     .doc = "next_cursor of the previous page; absent for the first"},
    {.name = "email",
     .type = DOM_EMAIL,
     .doc = "only the user with this e-mail, in any case; cursor is then ignored"},
    {.name = "role", .type = DOM_NAME, .min = 1, .max = 64, .doc = "only users with this role"},
    F_END,
};

static const dom_field q_check_permission[] = {
    {.name = "user_id", .type = DOM_UUID, .required = true, .doc = "the user"},
    {.name = "permission",
     .type = DOM_NAME,
     .required = true,
     .min = 1,
     .max = 100,
     .doc = "a permission such as talent:admin"},
    F_END,
};

static const dom_field q_none[] = {F_END};

static const prj_query queries[] = {
    {.name = "get_user",
     .summary = "a user's profile, roles and status; the user or identity:admin",
     .fields = q_get_user,
     .run = get_user,
     .run_stored = get_user_stored},
    {.name = "list_users",
     .summary = "users in id order, a page at a time: {results, next_cursor}",
     .fields = q_list_users,
     .permission = IDENTITY_PERM_ADMIN,
     .run = list_users},
    {.name = "check_permission",
     .summary = "whether a user's roles grant a permission: {allowed, via}",
     .fields = q_check_permission,
     .run = check_permission},
    {.name = "list_roles",
     .summary = "the roles, built-in and custom, with their permissions",
     .fields = q_none,
     .run = list_roles},
    {.name = NULL},
};

static const char *const dbs[] = {IDM_USERS, IDM_EMAILS, IDM_ROLES, NULL};

const prj_model prj_identity_model = {
    .name = "identity",
    .domain = IDENTITY_DOMAIN,
    .dbs = dbs,
    .apply = prj_identity__apply,
    .queries = queries,
};
