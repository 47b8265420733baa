/*
 * test_identity_model.c — the identity read model, fed by a real event store.
 *
 * Each test appends identity events — the types and data fields the
 * identity domain emits, on the streams it emits them to — to an event
 * store in a temporary directory, reads the log back and applies it through
 * prj_store_apply into a projector store in another directory, then asks
 * the model's queries through prj_store_query as different callers.
 *
 * Sections: fixture; appending events; applying and querying; secrets;
 * users and e-mails; access to users; paging; permissions; history.
 */
#include "projections/models.h"

#include "common/clock.h"
#include "common/codec.h"
#include "common/uuid.h"
#include "domain/identity/identity.h"
#include "tests/support/check_util.h"
#include "tests/support/es_util.h"
#include "tests/support/tmpdir.h"

#include <dirent.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define T0 1767225600000000000LL /* 2026-01-01T00:00:00Z */
#define SEC 1000000000LL

#define HASH_PREFIX "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$"

/* ---- fixture -------------------------------------------------------------- */

static char *g_es_dir, *g_prj_dir;
static es_store *g_es;
static prj_store *g_prj;
static int64_t g_time; /* the time of the next event */

static void fixture_setup(void)
{
    guild_error err;
    g_es_dir = tst_dir_new("events");
    g_prj_dir = tst_dir_new("model");
    ck_assert_status(tst_store_open(g_es_dir, IDENTITY_DOMAIN, 0, &g_es), GUILD_OK);
    ck_assert_status(prj_store_open(g_prj_dir, &prj_identity_model, &g_prj, &err), GUILD_OK);
    g_time = T0;
}

static void fixture_teardown(void)
{
    prj_store_close(g_prj);
    es_store_close(g_es);
    g_prj = NULL;
    g_es = NULL;
    free(g_es_dir);
    free(g_prj_dir);
}

/* ---- appending events ----------------------------------------------------- */

/* Appends one event (data stolen, msgpack-encoded as the domain's runtime
 * does) to stream, one second after the previous one. */
static void emit(const char *stream, const char *type, json_t *data)
{
    char *buf;
    size_t len;
    ck_assert_ptr_nonnull(data);
    ck_assert_status(guild_codec_encode(data, GUILD_FMT_MSGPACK, &buf, &len), GUILD_OK);
    json_decref(data);
    es_event_in ev = {.type = type, .schema = 1, .data = buf, .data_len = len};
    es_append req = {.stream = stream,
                     .expected_version = ES_ANY_VERSION,
                     .time_ns = g_time,
                     .events = &ev,
                     .n_events = 1};
    es_result res;
    g_time += SEC;
    ck_assert_status(es_append_wait(g_es, &req, &res), GUILD_OK);
    es_result_release(&res);
    free(buf);
}

/* Writes "identity-<prefix><id>" into out. */
static void stream_of(const char *prefix, const char *id, char out[ES_STREAM_MAX + 1])
{
    int n = snprintf(out, ES_STREAM_MAX + 1, "identity-%s%s", prefix, id);
    ck_assert(n > 0 && n <= ES_STREAM_MAX);
}

static void user_event(const char *user_id, const char *type, json_t *data)
{
    char stream[ES_STREAM_MAX + 1];
    stream_of("", user_id, stream);
    emit(stream, type, data);
}

static void email_event(const char *email, const char *type, const char *user_id)
{
    char key[33], stream[ES_STREAM_MAX + 1];
    identity_email_key(email, key);
    stream_of("email-", key, stream);
    emit(stream, type, json_pack("{s:s}", "user_id", user_id));
}

static void role_event(const char *role, const char *type, json_t *data)
{
    char stream[ES_STREAM_MAX + 1];
    stream_of("role-", role, stream);
    emit(stream, type, data);
}

/* A password hash that names its user, so a leak says whose it was. */
static void password_hash_of(const char *user_id, char out[160])
{
    snprintf(out, 160, "%s%s", HASH_PREFIX, user_id);
}

/* What register_user writes: user_registered and the e-mail claim. */
static void register_user(const char *id, const char *email, const char *name, bool admin)
{
    char hash[160];
    password_hash_of(id, hash);
    json_t *roles = admin ? json_pack("[s, s]", "user", "admin") : json_pack("[s]", "user");
    user_event(id, "user_registered",
               json_pack("{s:s, s:s, s:s, s:s, s:o}", "user_id", id, "email", email, "display_name",
                         name, "password_hash", hash, "roles", roles));
    email_event(email, "email_claimed", id);
}

/* What update_user writes when the e-mail changes. */
static void change_email(const char *id, const char *old_email, const char *new_email)
{
    user_event(id, "user_updated", json_pack("{s:s}", "email", new_email));
    email_event(new_email, "email_claimed", id);
    email_event(old_email, "email_released", id);
}

static void define_role(const char *role, json_t *perms)
{
    role_event(role, "role_defined", json_pack("{s:s, s:o}", "name", role, "permissions", perms));
}

static void role_permission(const char *role, const char *type, const char *perm)
{
    role_event(role, type, json_pack("{s:s, s:s}", "role", role, "permission", perm));
}

static void user_role(const char *id, const char *type, const char *role)
{
    user_event(id, type, json_pack("{s:s}", "role", role));
}

static void new_id(char out[GUILD_UUID_STRLEN + 1])
{
    guild_uuid7(out);
}

/* ---- applying and querying ------------------------------------------------ */

/* Applies every event of the log the model has not seen, in one batch. */
static prj_batch_stats sync_model(prj_store *s)
{
    tst_recs recs;
    prj_batch_stats stats = {0};
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_log(g_es, &recs), GUILD_OK);
    ck_assert(!recs.bad);
    const es_record **v = calloc(recs.n + 1, sizeof *v);
    ck_assert_ptr_nonnull(v);
    for (size_t i = 0; i < recs.n; i++)
        v[i] = &recs.v[i].rec;
    ck_assert_status(prj_store_apply(s, v, recs.n, &stats), GUILD_OK);
    free(v);
    tst_recs_release(&recs);
    return stats;
}

static void sync_all(void)
{
    prj_batch_stats stats = sync_model(g_prj);
    ck_assert_uint_eq(stats.parked, 0);
}

/* Runs a query with arguments packed from fmt; *data is set on success
 * (decref it), NULL otherwise. */
static guild_status query(const char *name, const dom_actor *actor, json_t **data, const char *fmt,
                          ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *args = json_vpack_ex(NULL, 0, fmt, ap);
    va_end(ap);
    ck_assert_ptr_nonnull(args);
    guild_error err = {0};
    uint64_t position = 0;
    *data = NULL;
    guild_status s = prj_store_query(g_prj, name, args, actor, data, &position, &err);
    if (s == GUILD_OK)
        ck_assert_uint_eq(position, prj_store_position(g_prj));
    else
        ck_assert_ptr_null(*data);

    /* A JSON reply written from the stored row (get_user) says the same. */
    guild_buf text = {0};
    bool done = false;
    guild_error err2 = {0};
    guild_status s2 =
        prj_store_query_json(g_prj, name, args, actor, &text, &position, &done, &err2);
    json_decref(args);
    if (strcmp(name, "get_user") != 0) { /* no stored row: the tree answers */
        ck_assert_int_eq(s2, GUILD_OK);
        ck_assert(!done);
        free(text.data);
        return s;
    }
    ck_assert_int_eq(s2, s);
    ck_assert(done == (s == GUILD_OK));
    if (s != GUILD_OK) {
        ck_assert_str_eq(err2.message, err.message);
        ck_assert_str_eq(err2.field, err.field);
    } else if (done) {
        char *want = NULL;
        size_t n = 0;
        ck_assert_status(guild_codec_encode(*data, GUILD_FMT_JSON, &want, &n), GUILD_OK);
        ck_assert_msg(text.len == n && memcmp(text.data, want, n) == 0, "%s as JSON: %.*s\n%s",
                      name, (int)text.len, text.data, want);
        free(want);
    }
    free(text.data);
    return s;
}

/* The callers: a token's actor, with permissions held by the test. */
typedef struct caller {
    dom_actor actor;
    json_t *perms;
} caller;

static caller user_caller(const char *user_id, const char *perm)
{
    caller c = {.perms = perm ? json_pack("[s]", perm) : json_array()};
    c.actor = (dom_actor){.user_id = user_id, .session_id = "s", .permissions = c.perms};
    return c;
}

static caller service_caller(const char *perm)
{
    caller c = {.perms = json_pack("[s]", perm)};
    c.actor = (dom_actor){.user_id = "", .session_id = "", .service = true, .permissions = c.perms};
    return c;
}

static void caller_release(caller *c)
{
    json_decref(c->perms);
}

static const char *str_of(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    ck_assert_msg(s != NULL, "no string %s", key);
    return s;
}

/* The user_id that list_users {email} answers, or "" for none. */
static const char *holder_of(const char *email, const dom_actor *admin, char out[64])
{
    json_t *data;
    ck_assert_status(query("list_users", admin, &data, "{s:s}", "email", email), GUILD_OK);
    json_t *results = json_object_get(data, "results");
    ck_assert_uint_le(json_array_size(results), 1);
    snprintf(out, 64, "%s",
             json_array_size(results) ? str_of(json_array_get(results, 0), "user_id") : "");
    ck_assert(json_is_null(json_object_get(data, "next_cursor")));
    json_decref(data);
    return out;
}

/* check_permission's answer: allowed, with via written into *via (decref). */
static bool allowed(const char *user_id, const char *perm, json_t **via)
{
    caller svc = service_caller("talent:read");
    json_t *data;
    ck_assert_status(query("check_permission", &svc.actor, &data, "{s:s, s:s}", "user_id", user_id,
                           "permission", perm),
                     GUILD_OK);
    ck_assert_str_eq(str_of(data, "user_id"), user_id);
    ck_assert_str_eq(str_of(data, "permission"), perm);
    json_t *a = json_object_get(data, "allowed");
    ck_assert(json_is_boolean(a));
    bool yes = json_is_true(a);
    json_t *v = json_object_get(data, "via");
    ck_assert(json_is_array(v));
    ck_assert_msg(yes == (json_array_size(v) > 0), "allowed and via disagree");
    if (via)
        *via = json_incref(v);
    json_decref(data);
    caller_release(&svc);
    return yes;
}

static bool allowed_via(const char *user_id, const char *perm, const char *want_via)
{
    json_t *via;
    bool yes = allowed(user_id, perm, &via);
    char got[256] = "";
    size_t i;
    json_t *v;
    json_array_foreach(via, i, v)
    {
        size_t n = strlen(got);
        snprintf(got + n, sizeof got - n, "%s%s", i ? "," : "", json_string_value(v));
    }
    json_decref(via);
    ck_assert_msg(strcmp(got, want_via) == 0, "%s via [%s], want [%s]", perm, got, want_via);
    return yes;
}

/* ---- secrets -------------------------------------------------------------- */

static bool bytes_have(const void *hay, size_t n, const char *needle)
{
    size_t m = strlen(needle);
    const unsigned char *h = hay;
    for (size_t i = 0; m && i + m <= n; i++)
        if (h[i] == (unsigned char)needle[0] && memcmp(h + i, needle, m) == 0)
            return true;
    return false;
}

/* Fails if any file under dir holds needle, whether LMDB counts the page
 * as live or free. */
static void assert_no_file_holds(const char *dir, const char *needle)
{
    DIR *d = opendir(dir);
    ck_assert_ptr_nonnull(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char path[1024];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        ck_assert_int_eq(lstat(path, &sb), 0);
        if (S_ISDIR(sb.st_mode)) {
            assert_no_file_holds(path, needle);
            continue;
        }
        size_t len;
        unsigned char *data = tst_file_read(path, &len);
        ck_assert_ptr_nonnull(data);
        ck_assert_msg(!bytes_have(data, len, needle), "%s holds %s", path, needle);
        free(data);
    }
    closedir(d);
}

typedef struct db_census {
    size_t dbs;      /* named databases walked */
    size_t users;    /* entries of "users" */
    size_t entries;  /* entries of all */
    char leak[1024]; /* "<db>: <needle>" of the first leak; "" if none */
} db_census;

/* Walks every entry of every named database of the (closed) model
 * environment in dir, checking keys and values for each needle. */
static void scan_every_db(const char *dir, const char *const *needles, db_census *c)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi main_db;
    MDB_cursor *names;
    MDB_val k, v;
    memset(c, 0, sizeof *c);
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(env, 64), 0);
    ck_assert_int_eq(mdb_env_open(env, dir, MDB_RDONLY, 0644), 0);
    ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, NULL, 0, &main_db), 0);
    ck_assert_int_eq(mdb_cursor_open(txn, main_db, &names), 0);
    for (int rc = mdb_cursor_get(names, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(names, &k, &v, MDB_NEXT)) {
        char name[128];
        MDB_dbi dbi;
        MDB_cursor *cur;
        MDB_val dk, dv;
        snprintf(name, sizeof name, "%.*s", (int)k.mv_size, (const char *)k.mv_data);
        ck_assert_msg(mdb_dbi_open(txn, name, 0, &dbi) == 0, "cannot open db %s", name);
        c->dbs++;
        ck_assert_int_eq(mdb_cursor_open(txn, dbi, &cur), 0);
        for (int r = mdb_cursor_get(cur, &dk, &dv, MDB_FIRST); r == 0;
             r = mdb_cursor_get(cur, &dk, &dv, MDB_NEXT)) {
            c->entries++;
            if (strcmp(name, "users") == 0)
                c->users++;
            for (const char *const *n = needles; *n; n++)
                if (!c->leak[0] && (bytes_have(dk.mv_data, dk.mv_size, *n) ||
                                    bytes_have(dv.mv_data, dv.mv_size, *n)))
                    snprintf(c->leak, sizeof c->leak, "%s: %s", name, *n);
        }
        mdb_cursor_close(cur);
    }
    mdb_cursor_close(names);
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

START_TEST(test_users_appear_without_secrets)
{
    char alice[37], bob[37], hash_a[160], hash_b[160];
    new_id(alice);
    new_id(bob);
    password_hash_of(alice, hash_a);
    password_hash_of(bob, hash_b);
    const char *new_hash = HASH_PREFIX "changed-password";
    const char *refresh = "5f1ab0c0ffee5f1ab0c0ffee5f1ab0c0ffee5f1ab0c0ffee5f1ab0c0ffee0001";
    const char *refresh2 = "5f1ab0c0ffee5f1ab0c0ffee5f1ab0c0ffee5f1ab0c0ffee5f1ab0c0ffee0002";
    const char *reset = "7e5e7e5e7e5e7e5e7e5e7e5e7e5e7e5e7e5e7e5e7e5e7e5e7e5e7e5e7e5e0003";
    const char *client = "c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c1c10004";

    int64_t registered = g_time;
    register_user(alice, "alice@example.com", "Alice", false);
    register_user(bob, "bob@example.com", "Bob", true);
    emit("identity-system", "admin_bootstrapped", json_pack("{s:s}", "user_id", bob));
    user_event(alice, "session_started",
               json_pack("{s:s, s:s, s:I}", "session_id", "0123456789abcdef0123456789abcdef",
                         "refresh_hash", refresh, "expires_at", (json_int_t)(T0 + 86400 * SEC)));
    user_event(alice, "session_refreshed",
               json_pack("{s:s, s:s}", "session_id", "0123456789abcdef0123456789abcdef",
                         "refresh_hash", refresh2));
    user_event(alice, "login_failed", json_pack("{s:i}", "failures", 1));
    user_event(
        alice, "password_reset_requested",
        json_pack("{s:s, s:I}", "token_hash", reset, "expires_at", (json_int_t)(T0 + 3600 * SEC)));
    user_event(alice, "password_changed", json_pack("{s:s}", "password_hash", new_hash));
    user_event(alice, "password_reset",
               json_pack("{s:s, s:s}", "password_hash", new_hash, "token_hash", reset));
    emit("identity-client-billing", "client_registered",
         json_pack("{s:s, s:s, s:[s]}", "client_id", "billing", "secret_hash", client,
                   "permissions", "identity:read"));
    emit("identity-client-billing", "service_token_issued", json_object());
    sync_all();

    caller admin = user_caller(bob, IDENTITY_PERM_ADMIN);
    json_t *user;
    ck_assert_status(query("get_user", &admin.actor, &user, "{s:s}", "user_id", alice), GUILD_OK);
    char when[40];
    ck_assert_str_eq(str_of(user, "user_id"), alice);
    ck_assert_str_eq(str_of(user, "email"), "alice@example.com");
    ck_assert_str_eq(str_of(user, "display_name"), "Alice");
    ck_assert_str_eq(str_of(user, "created"), guild_time_format(registered, when, sizeof when));
    ck_assert_str_eq(str_of(user, "updated"), when);
    ck_assert(json_is_true(json_object_get(user, "active")));
    ck_assert_int_eq(json_integer_value(json_object_get(user, "version")), 1);
    json_t *roles = json_object_get(user, "roles");
    ck_assert_uint_eq(json_array_size(roles), 1);
    ck_assert_str_eq(json_string_value(json_array_get(roles, 0)), "user");
    /* Exactly the public fields: nothing else rode along. */
    ck_assert_uint_eq(json_object_size(user), 8);
    json_decref(user);
    caller_release(&admin);

    prj_store_close(g_prj);
    g_prj = NULL;
    const char *const needles[] = {hash_a, hash_b, new_hash,    refresh, refresh2,
                                   reset,  client, HASH_PREFIX, NULL};
    db_census c;
    scan_every_db(g_prj_dir, needles, &c);
    ck_assert_msg(c.leak[0] == '\0', "a secret in the read model: %s", c.leak);
    ck_assert_uint_ge(c.dbs, 3);
    ck_assert_uint_eq(c.users, 2);
    for (const char *const *n = needles; *n; n++)
        assert_no_file_holds(g_prj_dir, *n);
}
END_TEST

/* ---- users and e-mails ---------------------------------------------------- */

START_TEST(test_email_index_follows_changes)
{
    char alice[37], bob[37], admin_id[37], got[64];
    new_id(admin_id);
    new_id(alice);
    new_id(bob);
    caller admin = user_caller(admin_id, IDENTITY_PERM_ADMIN);
    register_user(alice, "alice@example.com", "Alice", false);
    sync_all();
    ck_assert_str_eq(holder_of("alice@example.com", &admin.actor, got), alice);
    ck_assert_str_eq(holder_of("ALICE@Example.COM", &admin.actor, got), alice);
    ck_assert_str_eq(holder_of("nobody@example.com", &admin.actor, got), "");

    /* Alice moves; Bob takes her old address; Alice moves again. */
    change_email(alice, "alice@example.com", "alice@work.example");
    sync_all();
    ck_assert_str_eq(holder_of("alice@example.com", &admin.actor, got), "");
    ck_assert_str_eq(holder_of("alice@work.example", &admin.actor, got), alice);

    register_user(bob, "alice@example.com", "Bob", false);
    change_email(alice, "alice@work.example", "a@home.example");
    user_event(alice, "user_updated", json_pack("{s:s}", "display_name", "Alice B."));
    sync_all();
    ck_assert_str_eq(holder_of("alice@example.com", &admin.actor, got), bob);
    ck_assert_str_eq(holder_of("alice@work.example", &admin.actor, got), "");
    ck_assert_str_eq(holder_of("a@home.example", &admin.actor, got), alice);

    json_t *user;
    ck_assert_status(query("get_user", &admin.actor, &user, "{s:s}", "user_id", alice), GUILD_OK);
    ck_assert_str_eq(str_of(user, "email"), "a@home.example");
    ck_assert_str_eq(str_of(user, "display_name"), "Alice B.");
    ck_assert_int_eq(json_integer_value(json_object_get(user, "version")), 4);
    ck_assert_str_ne(str_of(user, "updated"), str_of(user, "created"));
    json_decref(user);
    caller_release(&admin);
}
END_TEST

/* ---- access to users ------------------------------------------------------ */

START_TEST(test_get_user_is_for_the_user_and_administrators)
{
    char alice[37], bob[37], admin_id[37], ghost[37];
    new_id(admin_id);
    new_id(alice);
    new_id(bob);
    new_id(ghost);
    register_user(admin_id, "root@example.com", "Root", true);
    register_user(alice, "alice@example.com", "Alice", false);
    register_user(bob, "bob@example.com", "Bob", false);
    sync_all();

    caller as_alice = user_caller(alice, NULL);
    caller as_admin = user_caller(admin_id, IDENTITY_PERM_ADMIN);
    caller as_star = user_caller(admin_id, "*");
    caller as_service = service_caller("talent:admin");
    json_t *data;

    ck_assert_status(query("get_user", &as_alice.actor, &data, "{s:s}", "user_id", alice),
                     GUILD_OK);
    ck_assert_str_eq(str_of(data, "display_name"), "Alice");
    json_decref(data);
    ck_assert_status(query("get_user", &as_alice.actor, &data, "{s:s}", "user_id", bob),
                     GUILD_FORBIDDEN);
    /* Others cannot tell a missing user from a hidden one. */
    ck_assert_status(query("get_user", &as_alice.actor, &data, "{s:s}", "user_id", ghost),
                     GUILD_FORBIDDEN);
    ck_assert_status(query("get_user", &as_service.actor, &data, "{s:s}", "user_id", bob),
                     GUILD_FORBIDDEN);

    ck_assert_status(query("get_user", &as_admin.actor, &data, "{s:s}", "user_id", bob), GUILD_OK);
    ck_assert_str_eq(str_of(data, "email"), "bob@example.com");
    json_decref(data);
    ck_assert_status(query("get_user", &as_star.actor, &data, "{s:s}", "user_id", alice), GUILD_OK);
    json_decref(data);
    ck_assert_status(query("get_user", &as_admin.actor, &data, "{s:s}", "user_id", ghost),
                     GUILD_NOT_FOUND);
    ck_assert_status(query("get_user", &as_admin.actor, &data, "{s:s}", "user_id", "not-an-id"),
                     GUILD_VALIDATION_FAILED);

    caller_release(&as_alice);
    caller_release(&as_admin);
    caller_release(&as_star);
    caller_release(&as_service);
}
END_TEST

/* ---- paging --------------------------------------------------------------- */

#define N_USERS 45

START_TEST(test_list_users_pages_through_every_user_once)
{
    char ids[N_USERS][37], admin_id[37];
    new_id(admin_id);
    for (int i = 0; i < N_USERS; i++)
        new_id(ids[i]);
    /* Registered out of id order: pages follow ids, not registration. */
    for (int i = 0; i < N_USERS; i++) {
        int k = (i * 17) % N_USERS;
        char email[64];
        snprintf(email, sizeof email, "user%d@example.com", k);
        register_user(ids[k], email, "Someone", false);
    }
    sync_all();

    caller admin = user_caller(admin_id, IDENTITY_PERM_ADMIN);
    json_t *data;
    ck_assert_status(query("list_users", &admin.actor, &data, "{}"), GUILD_OK);
    ck_assert_uint_eq(json_array_size(json_object_get(data, "results")), 20);
    json_decref(data);

    int seen = 0, pages = 0;
    char cursor[64] = "";
    for (;;) {
        guild_status s = cursor[0] ? query("list_users", &admin.actor, &data, "{s:i, s:s}", "limit",
                                           7, "cursor", cursor)
                                   : query("list_users", &admin.actor, &data, "{s:i}", "limit", 7);
        ck_assert_status(s, GUILD_OK);
        json_t *results = json_object_get(data, "results"), *row;
        size_t i;
        pages++;
        ck_assert_uint_le(json_array_size(results), 7);
        json_array_foreach(results, i, row)
        {
            ck_assert_int_lt(seen, N_USERS);
            ck_assert_str_eq(str_of(row, "user_id"), ids[seen]); /* each once, in id order */
            ck_assert_ptr_null(json_object_get(row, "password_hash"));
            seen++;
        }
        json_t *next = json_object_get(data, "next_cursor");
        if (json_is_null(next)) {
            json_decref(data);
            break;
        }
        ck_assert_uint_eq(json_array_size(results), 7);
        snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
        json_decref(data);
    }
    ck_assert_int_eq(seen, N_USERS);
    ck_assert_int_eq(pages, (N_USERS + 6) / 7);

    ck_assert_status(query("list_users", &admin.actor, &data, "{s:i}", "limit", 0),
                     GUILD_VALIDATION_FAILED);
    ck_assert_status(query("list_users", &admin.actor, &data, "{s:i}", "limit", 101),
                     GUILD_VALIDATION_FAILED);
    caller plain = user_caller(ids[0], NULL);
    ck_assert_status(query("list_users", &plain.actor, &data, "{}"), GUILD_FORBIDDEN);
    caller_release(&plain);
    caller_release(&admin);
}
END_TEST

START_TEST(test_list_users_filters_by_role)
{
    char ids[10][37], admin_id[37];
    new_id(admin_id);
    define_role("recruiter", json_pack("[s]", "job:post"));
    for (int i = 0; i < 10; i++) {
        char email[64];
        new_id(ids[i]);
        snprintf(email, sizeof email, "u%d@example.com", i);
        register_user(ids[i], email, "Someone", false);
        if (i % 3 == 0)
            user_role(ids[i], "role_assigned", "recruiter");
    }
    sync_all();
    caller admin = user_caller(admin_id, IDENTITY_PERM_ADMIN);
    json_t *data;
    ck_assert_status(
        query("list_users", &admin.actor, &data, "{s:s, s:i}", "role", "recruiter", "limit", 2),
        GUILD_OK);
    json_t *results = json_object_get(data, "results");
    ck_assert_uint_eq(json_array_size(results), 2);
    ck_assert_str_eq(str_of(json_array_get(results, 0), "user_id"), ids[0]);
    ck_assert_str_eq(str_of(json_array_get(results, 1), "user_id"), ids[3]);
    char cursor[64];
    snprintf(cursor, sizeof cursor, "%s", str_of(data, "next_cursor"));
    json_decref(data);
    ck_assert_status(query("list_users", &admin.actor, &data, "{s:s, s:i, s:s}", "role",
                           "recruiter", "limit", 2, "cursor", cursor),
                     GUILD_OK);
    results = json_object_get(data, "results");
    ck_assert_uint_eq(json_array_size(results), 2);
    ck_assert_str_eq(str_of(json_array_get(results, 0), "user_id"), ids[6]);
    ck_assert_str_eq(str_of(json_array_get(results, 1), "user_id"), ids[9]);
    ck_assert(json_is_null(json_object_get(data, "next_cursor")));
    json_decref(data);
    caller_release(&admin);
}
END_TEST

/* ---- permissions ---------------------------------------------------------- */

START_TEST(test_check_permission_follows_roles_and_grants)
{
    char alice[37], root[37];
    new_id(alice);
    new_id(root);
    register_user(alice, "alice@example.com", "Alice", false);
    register_user(root, "root@example.com", "Root", true);
    define_role("recruiter", json_pack("[s, s]", "job:post", "job:post"));
    sync_all();

    ck_assert(!allowed_via(alice, "job:post", ""));
    ck_assert(allowed_via(root, "job:post", "admin"));
    ck_assert(allowed_via(root, "identity:admin", "admin"));

    user_role(alice, "role_assigned", "recruiter");
    sync_all();
    ck_assert(allowed_via(alice, "job:post", "recruiter"));
    ck_assert(!allowed_via(alice, "job:close", ""));

    role_permission("recruiter", "permission_granted", "talent:*");
    define_role("reviewer", json_pack("[s]", "talent:admin"));
    user_role(alice, "role_assigned", "reviewer");
    sync_all();
    ck_assert(allowed_via(alice, "talent:admin", "recruiter,reviewer"));
    ck_assert(allowed_via(alice, "talent:read", "recruiter"));
    ck_assert(!allowed_via(alice, "talented:read", ""));

    role_permission("recruiter", "permission_revoked", "job:post");
    sync_all();
    ck_assert(!allowed_via(alice, "job:post", ""));

    role_event("recruiter", "role_updated",
               json_pack("{s:s, s:[s]}", "name", "recruiter", "permissions", "job:*"));
    sync_all();
    ck_assert(allowed_via(alice, "job:close", "recruiter"));
    ck_assert(!allowed_via(alice, "talent:read", ""));

    user_role(alice, "role_revoked", "recruiter");
    user_role(root, "role_revoked", "admin");
    sync_all();
    ck_assert(!allowed_via(alice, "job:close", ""));
    ck_assert(allowed_via(alice, "talent:admin", "reviewer"));
    ck_assert(!allowed_via(root, "identity:admin", ""));

    char ghost[37];
    new_id(ghost);
    caller svc = service_caller("x:y");
    json_t *data;
    ck_assert_status(query("check_permission", &svc.actor, &data, "{s:s, s:s}", "user_id", ghost,
                           "permission", "job:post"),
                     GUILD_NOT_FOUND);
    caller_release(&svc);
}
END_TEST

START_TEST(test_deactivation_denies_every_permission)
{
    char root[37];
    new_id(root);
    register_user(root, "root@example.com", "Root", true);
    sync_all();
    ck_assert(allowed_via(root, "talent:admin", "admin"));

    user_event(root, "user_deactivated", json_pack("{s:s}", "reason", "left"));
    sync_all();
    ck_assert(!allowed_via(root, "talent:admin", ""));
    ck_assert(!allowed_via(root, "user", ""));
    caller self = user_caller(root, NULL);
    json_t *data;
    ck_assert_status(query("get_user", &self.actor, &data, "{s:s}", "user_id", root), GUILD_OK);
    ck_assert(json_is_false(json_object_get(data, "active")));
    json_decref(data);

    user_event(root, "user_reactivated", json_object());
    sync_all();
    ck_assert(allowed_via(root, "talent:admin", "admin"));
    ck_assert_status(query("get_user", &self.actor, &data, "{s:s}", "user_id", root), GUILD_OK);
    ck_assert(json_is_true(json_object_get(data, "active")));
    json_decref(data);
    caller_release(&self);
}
END_TEST

START_TEST(test_list_roles_shows_builtin_and_custom_roles)
{
    define_role("recruiter", json_pack("[s]", "job:post"));
    define_role("auditor", json_array());
    role_permission("auditor", "permission_granted", "reporting:read");
    sync_all();

    caller anyone = user_caller("0193a000-0000-7000-8000-000000000000", NULL);
    json_t *data;
    ck_assert_status(query("list_roles", &anyone.actor, &data, "{}"), GUILD_OK);
    json_t *expected =
        json_pack("{s:[{s:s, s:[s], s:b}, {s:s, s:[], s:b}, {s:s, s:[s], s:b}, {s:s, s:[s], s:b}]}",
                  "results", "name", "admin", "permissions", "*", "builtin", 1, "name", "user",
                  "permissions", "builtin", 1, "name", "auditor", "permissions", "reporting:read",
                  "builtin", 0, "name", "recruiter", "permissions", "job:post", "builtin", 0);
    char *got = json_dumps(data, JSON_SORT_KEYS);
    ck_assert_msg(json_equal(data, expected), "list_roles: %s", got);
    free(got);
    json_decref(expected);
    json_decref(data);
    caller_release(&anyone);
}
END_TEST

/* ---- history -------------------------------------------------------------- */

START_TEST(test_event_for_unknown_user_is_parked_and_the_rest_applies)
{
    char alice[37], ghost[37];
    new_id(alice);
    new_id(ghost);
    user_role(ghost, "role_assigned", "admin");
    register_user(alice, "alice@example.com", "Alice", false);
    prj_batch_stats stats = sync_model(g_prj);
    ck_assert_uint_eq(stats.parked, 1);
    ck_assert_uint_eq(stats.applied, 2);
    ck_assert(!allowed_via(alice, "user", "")); /* answered: alice exists */
}
END_TEST

START_TEST(test_rebuild_reaches_the_same_digest)
{
    char a[37], b[37];
    new_id(a);
    new_id(b);
    register_user(a, "a@example.com", "A", false);
    register_user(b, "b@example.com", "B", true);
    define_role("recruiter", json_pack("[s]", "job:post"));
    user_role(a, "role_assigned", "recruiter");
    change_email(a, "a@example.com", "a2@example.com");
    role_permission("recruiter", "permission_granted", "job:close");
    user_event(b, "user_deactivated", json_pack("{s:s}", "reason", ""));
    sync_all();

    /* The same history, one event per batch, into a fresh environment. */
    char *dir = tst_dir_new("rebuild");
    prj_store *again;
    guild_error err;
    ck_assert_status(prj_store_open(dir, &prj_identity_model, &again, &err), GUILD_OK);
    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_log(g_es, &recs), GUILD_OK);
    for (size_t i = 0; i < recs.n; i++) {
        const es_record *one = &recs.v[i].rec;
        prj_batch_stats st;
        ck_assert_status(prj_store_apply(again, &one, 1, &st), GUILD_OK);
        ck_assert_uint_eq(st.parked, 0);
    }
    tst_recs_release(&recs);

    uint8_t d1[PRJ_DIGEST_LEN], d2[PRJ_DIGEST_LEN], zero[PRJ_DIGEST_LEN] = {0};
    prj_store_digest(g_prj, d1);
    prj_store_digest(again, d2);
    ck_assert_mem_ne(d1, zero, PRJ_DIGEST_LEN);
    ck_assert_mem_eq(d1, d2, PRJ_DIGEST_LEN);
    prj_store_close(again);
    free(dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("projections/identity_model");
    TCase *tc = tcase_create("identity_model");
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_add_checked_fixture(tc, fixture_setup, fixture_teardown);
    tcase_add_test(tc, test_users_appear_without_secrets);
    tcase_add_test(tc, test_email_index_follows_changes);
    tcase_add_test(tc, test_get_user_is_for_the_user_and_administrators);
    tcase_add_test(tc, test_list_users_pages_through_every_user_once);
    tcase_add_test(tc, test_list_users_filters_by_role);
    tcase_add_test(tc, test_check_permission_follows_roles_and_grants);
    tcase_add_test(tc, test_deactivation_denies_every_permission);
    tcase_add_test(tc, test_list_roles_shows_builtin_and_custom_roles);
    tcase_add_test(tc, test_event_for_unknown_user_is_parked_and_the_rest_applies);
    tcase_add_test(tc, test_rebuild_reaches_the_same_digest);
    suite_add_tcase(s, tc);
    return tst_run_suite(s);
}
