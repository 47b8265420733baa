/*
 * test_identity.c — the identity domain's rules, with no broker and no disk.
 *
 * A small in-memory runtime plays the part of bus/runtime.c: it validates a
 * body against the command's table, authorizes the actor, finds the target
 * (id field, resolve, or a fresh id), loads the state by evolving the
 * stream's events, runs prepare then decide, and appends the emitted events
 * to an in-memory store when decide succeeds. The environment's
 * sign_token records the claims it is given and returns "signed:<sub>".
 *
 * Sections: the fake environment; the runtime; helpers; registration;
 * login and lockout; sessions; passwords; roles and permissions; clients;
 * user administration; the tables.
 */
#include "domain/identity/identity.h"
#include "domain/registry.h"

#include "common/alloc.h"
#include "common/uuid.h"
#include "tests/support/check_util.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define T0 1767225600000000000LL /* 2026-01-01T00:00:00Z */
#define SEC 1000000000LL
#define MINUTE (60 * SEC)
#define DAY (24 * 60 * MINUTE)

#define PW "correct horse 42"
#define PW2 "battery staple 7x"
#define BAD_PW "wrong password 1"

static json_t *g_streams; /* stream -> [{type, data, time}] */
static json_t *g_claims;  /* the claims last given to sign_token */
static int64_t g_now;
static bool g_dev;

/* ---- the fake environment ------------------------------------------------- */

static uint64_t env_version(void *self, const char *stream)
{
    (void)self;
    return json_array_size(json_object_get(g_streams, stream));
}

static guild_status env_load(void *self, const dom_aggregate *agg, const char *stream, void **state,
                             uint64_t *version)
{
    (void)self;
    void *st = agg->create();
    json_t *events = json_object_get(g_streams, stream);
    size_t i;
    json_t *ev;
    json_array_foreach(events, i, ev)
    {
        dom_event_meta meta = {
            .id = "", .actor = "", .version = i + 1, .time = dom_int(ev, "time", 0)};
        guild_status s =
            agg->evolve(st, dom_str(ev, "type", ""), json_object_get(ev, "data"), &meta);
        if (s != GUILD_OK) {
            agg->destroy(st);
            return s;
        }
    }
    *state = st;
    *version = json_array_size(events);
    return GUILD_OK;
}

static guild_status env_sign(void *self, const json_t *claims, char **token)
{
    (void)self;
    json_decref(g_claims);
    g_claims = json_deep_copy(claims);
    char buf[256];
    snprintf(buf, sizeof buf, "signed:%s", dom_str(claims, "sub", "?"));
    *token = guild_xstrdup(buf);
    return GUILD_OK;
}

static const dom_env g_env = {NULL, env_version, env_load, env_sign};

/* ---- the runtime ---------------------------------------------------------- */

/* The outcome of the last run(). */
static struct {
    guild_status status;
    guild_error error;
    json_t *reply;  /* reply data */
    json_t *events; /* the events written: [{stream, type, data}] */
    char id[64];    /* the target's id */
} R;

static void result_release(void)
{
    json_decref(R.reply);
    json_decref(R.events);
    memset(&R, 0, sizeof R);
}

static bool documented(const char *type)
{
    for (const dom_event_doc *e = dom_identity.events; e->type; e++)
        if (strcmp(e->type, type) == 0)
            return true;
    return false;
}

static void commit(const dom_ctx *c)
{
    size_t i;
    json_t *ev;
    json_array_foreach(c->events, i, ev)
    {
        const char *type = dom_str(ev, "type", "");
        const char *stream = dom_str(ev, "stream", c->stream);
        ck_assert_msg(documented(type), "event %s has no dom_event_doc", type);
        json_t *list = json_object_get(g_streams, stream);
        if (!list) {
            list = json_array();
            json_object_set_new(g_streams, stream, list);
        }
        json_array_append_new(list,
                              json_pack("{s:s, s:O, s:I}", "type", type, "data",
                                        json_object_get(ev, "data"), "time", (json_int_t)g_now));
        json_object_set_new(ev, "stream", json_string(stream));
    }
}

static guild_status authorize(const dom_command *cmd, const dom_actor *a, guild_error *err)
{
    if (cmd->is_public)
        return GUILD_OK;
    if (!a->service && !a->user_id[0])
        return guild_error_set(err, GUILD_UNAUTHENTICATED, 0, "a token is needed");
    if (cmd->permission && !dom_actor_can(a, cmd->permission))
        return guild_error_set(err, GUILD_FORBIDDEN, 0, "needs %s", cmd->permission);
    return GUILD_OK;
}

/* Runs one command whose body json_vpack builds from fmt; fills R. */
static guild_status vrun(const char *command, const dom_actor *actor, const char *fmt, va_list ap)
{
    static const dom_actor anonymous = {"", "", false, NULL};
    const dom_command *cmd = dom_command_find(&dom_identity, command);
    ck_assert_msg(cmd != NULL, "no command %s", command);
    json_error_t jerr;
    json_t *body = json_vpack_ex(&jerr, 0, fmt, ap);
    ck_assert_msg(body != NULL, "body: %s", jerr.text);

    result_release();
    dom_ctx c;
    dom_ctx_init(&c);
    c.domain = IDENTITY_DOMAIN;
    c.actor = actor ? actor : &anonymous;
    c.now = g_now;
    c.env = &g_env;
    c.dev_mode = g_dev;

    void *state = NULL;
    char stream[256];
    uint64_t version = 0;
    guild_status s = dom_validate(cmd->fields, body, &c.error);
    if (s == GUILD_OK)
        s = authorize(cmd, c.actor, &c.error);
    if (s != GUILD_OK)
        goto done;
    if (cmd->id_field)
        snprintf(R.id, sizeof R.id, "%s", dom_str(body, cmd->id_field, ""));
    else if (cmd->resolve && (s = cmd->resolve(body, &c, R.id, sizeof R.id)) != GUILD_OK)
        goto done;
    else if (cmd->creates)
        guild_uuid7_at((uint64_t)(g_now / 1000000), R.id);
    dom_stream_name(IDENTITY_DOMAIN, cmd->aggregate, R.id, stream, sizeof stream);
    ck_assert_status(env_load(NULL, cmd->aggregate, stream, &state, &version), GUILD_OK);
    c.aggregate_id = R.id;
    c.stream = stream;
    c.version = version;
    if (cmd->prepare && (s = cmd->prepare(state, body, &c)) != GUILD_OK)
        goto done;
    c.prepared = c.prep;
    s = cmd->decide(state, body, &c);
    if (s == GUILD_OK) {
        commit(&c);
        s = c.reply_status;
    } else {
        ck_assert_uint_eq(json_array_size(c.events), 0);
    }
done:
    R.status = s;
    R.error = c.error;
    R.reply = json_incref(c.reply);
    R.events = json_incref(c.events);
    if (state)
        cmd->aggregate->destroy(state);
    dom_ctx_release(&c);
    json_decref(body);
    return s;
}

static guild_status run(const char *command, const dom_actor *actor, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    guild_status s = vrun(command, actor, fmt, ap);
    va_end(ap);
    return s;
}

/* Runs a command and asserts its status. */
static void expect(guild_status want, const char *command, const dom_actor *actor, const char *fmt,
                   ...)
{
    va_list ap;
    va_start(ap, fmt);
    guild_status got = vrun(command, actor, fmt, ap);
    va_end(ap);
    ck_assert_msg(got == want, "%s: got %s (%s), want %s", command, guild_status_code(got),
                  R.error.message, guild_status_code(want));
}

/* ---- helpers -------------------------------------------------------------- */

/* Actors made by a test, released by the teardown. */
static struct actor_slot {
    dom_actor actor;
    char user_id[64], session_id[64];
    json_t *perms;
} g_actors[8];
static size_t g_nactors;

static const dom_actor *actor_new(const char *user_id, const char *session_id, json_t *perms)
{
    ck_assert_uint_lt(g_nactors, sizeof g_actors / sizeof g_actors[0]);
    struct actor_slot *a = &g_actors[g_nactors++];
    snprintf(a->user_id, sizeof a->user_id, "%s", user_id);
    snprintf(a->session_id, sizeof a->session_id, "%s", session_id ? session_id : "");
    a->perms = perms ? perms : json_array();
    a->actor = (dom_actor){a->user_id, a->session_id, false, a->perms};
    return &a->actor;
}

static const dom_actor *admin_actor(void)
{
    char id[GUILD_UUID_STRLEN + 1];
    guild_uuid7_at(1, id);
    return actor_new(id, NULL, json_pack("[s]", IDENTITY_PERM_ADMIN));
}

static void setup(void)
{
    g_streams = json_object();
    g_claims = NULL;
    g_now = T0;
    g_dev = false;
    g_nactors = 0;
    memset(&R, 0, sizeof R);
}

static void teardown(void)
{
    result_release();
    json_decref(g_streams);
    json_decref(g_claims);
    for (size_t i = 0; i < g_nactors; i++)
        json_decref(g_actors[i].perms);
}

static void user_stream(const char *user_id, char out[256])
{
    dom_stream_name(IDENTITY_DOMAIN, &identity_user, user_id, out, 256);
}

static void claim_stream(const char *email, char out[256])
{
    char key[33];
    identity_email_key(email, key);
    dom_stream_name(IDENTITY_DOMAIN, &identity_email, key, out, 256);
}

static size_t version_of(const char *stream)
{
    return json_array_size(json_object_get(g_streams, stream));
}

/* The data of the i-th event R wrote. */
static const json_t *r_data(size_t i)
{
    return json_object_get(json_array_get(R.events, i), "data");
}

/* Asserts that list is the array of the comma-separated strings in csv. */
static void assert_strings(const json_t *list, const char *csv)
{
    char *text = json_dumps(list, JSON_COMPACT);
    json_t *want = json_array();
    char buf[256];
    snprintf(buf, sizeof buf, "%s", csv);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save))
        json_array_append_new(want, json_string(t));
    ck_assert_msg(json_equal(list, want), "got %s, want [%s]", text ? text : "null", csv);
    json_decref(want);
    free(text);
}

/* Asserts the types of the events R wrote, comma-separated ("" for none). */
static void assert_events(const char *csv)
{
    char got[512] = "";
    size_t i;
    json_t *ev;
    json_array_foreach(R.events, i, ev)
    {
        size_t n = strlen(got);
        snprintf(got + n, sizeof got - n, "%s%s", i ? "," : "", dom_str(ev, "type", "?"));
    }
    ck_assert_str_eq(got, csv);
}

static const char *r_reply(const char *key)
{
    return dom_str(R.reply, key, NULL);
}

/* Registers a user; writes its id into id. */
static void register_ok(const char *email, const char *password, char id[64])
{
    expect(GUILD_OK, "register_user", NULL, "{s:s, s:s, s:s}", "email", email, "password", password,
           "display_name", "Ann");
    snprintf(id, 64, "%s", r_reply("user_id"));
}

/* Logs in; writes the session id and refresh token (either may be NULL). */
static void login_ok(const char *email, const char *password, char sid[64], char refresh[256])
{
    expect(GUILD_OK, "login", NULL, "{s:s, s:s}", "email", email, "password", password);
    if (sid)
        snprintf(sid, 64, "%s", dom_str(g_claims, "sid", ""));
    if (refresh)
        snprintf(refresh, 256, "%s", r_reply("refresh_token"));
}

static guild_status login(const char *email, const char *password)
{
    return run("login", NULL, "{s:s, s:s}", "email", email, "password", password);
}

static void *load_user(const char *id)
{
    char stream[256];
    void *state = NULL;
    uint64_t version;
    user_stream(id, stream);
    ck_assert_status(env_load(NULL, &identity_user, stream, &state, &version), GUILD_OK);
    return state;
}

static bool session_active(const char *user_id, const char *sid)
{
    void *u = load_user(user_id);
    bool active = identity_session_active(u, sid);
    identity_user.destroy(u);
    return active;
}

/* ---- registration --------------------------------------------------------- */

START_TEST(test_email_key_is_32_hex_chars_and_ignores_case)
{
    char a[33], b[33], c[33];
    identity_email_key("Ann@Example.COM", a);
    identity_email_key("ann@example.com", b);
    identity_email_key("bob@example.com", c);
    ck_assert_uint_eq(strlen(a), 32);
    ck_assert_uint_eq(strspn(a, "0123456789abcdef"), 32);
    ck_assert_str_eq(a, b);
    ck_assert_str_ne(a, c);
}
END_TEST

START_TEST(test_register_creates_user_and_claims_lower_cased_email)
{
    char id[64], claim[256], stream[256];
    register_ok("Ann@Example.com", PW, id);
    ck_assert(guild_uuid_valid(id, (unsigned)strlen(id)));
    assert_events("user_registered,email_claimed");
    ck_assert_str_eq(dom_str(r_data(0), "user_id", ""), id);
    ck_assert_str_eq(dom_str(r_data(0), "email", ""), "ann@example.com");
    ck_assert_str_eq(dom_str(r_data(0), "display_name", ""), "Ann");
    ck_assert_int_eq(strncmp(dom_str(r_data(0), "password_hash", ""), "$argon2id$", 10), 0);
    assert_strings(json_object_get(r_data(0), "roles"), "user");

    claim_stream("ann@example.com", claim);
    ck_assert_str_eq(dom_str(json_array_get(R.events, 1), "stream", ""), claim);
    ck_assert_str_eq(dom_str(r_data(1), "user_id", ""), id);
    user_stream(id, stream);
    ck_assert_uint_eq(version_of(stream), 1);
    ck_assert_uint_eq(version_of(claim), 1);

    char *all = json_dumps(g_streams, 0);
    ck_assert_ptr_null(strstr(all, PW));
    free(all);
}
END_TEST

START_TEST(test_register_conflicts_on_taken_email_whatever_its_case)
{
    char id[64];
    register_ok("ann@example.com", PW, id);
    expect(GUILD_CONFLICT, "register_user", NULL, "{s:s, s:s, s:s}", "email", "ANN@example.COM",
           "password", PW2, "display_name", "Other");
    ck_assert_str_eq(R.error.field, "email");
    ck_assert_str_eq(R.error.message, "email already registered");
    assert_events("");
}
END_TEST

START_TEST(test_weak_passwords_fail_validation_without_echo)
{
    const char *weak[] = {"short1", "onlyletterslong", "1234567890123"};
    for (size_t i = 0; i < sizeof weak / sizeof weak[0]; i++) {
        expect(GUILD_VALIDATION_FAILED, "register_user", NULL, "{s:s, s:s, s:s}", "email", "a@b.io",
               "password", weak[i], "display_name", "A");
        ck_assert_str_eq(R.error.field, "password");
        ck_assert_ptr_null(strstr(R.error.message, weak[i]));
    }
    expect(GUILD_VALIDATION_FAILED, "register_user", NULL, "{s:s, s:s, s:s, s:b}", "email",
           "a@b.io", "password", PW, "display_name", "A", "admin", 1);
    ck_assert_str_eq(R.error.field, "admin");
    ck_assert_uint_eq(json_object_size(g_streams), 0);
}
END_TEST

START_TEST(test_bootstrap_admin_works_once_and_grants_everything)
{
    char id[64], system[256];
    expect(GUILD_OK, "bootstrap_admin", NULL, "{s:s, s:s, s:s}", "email", "root@guild.io",
           "password", PW, "display_name", "Root");
    snprintf(id, sizeof id, "%s", r_reply("user_id"));
    assert_strings(json_object_get(r_data(0), "roles"), "user,admin");
    dom_stream_name(IDENTITY_DOMAIN, &identity_system, "", system, sizeof system);
    ck_assert_str_eq(system, "identity-system");
    ck_assert_uint_eq(version_of(system), 1);
    assert_events("user_registered,email_claimed,admin_bootstrapped");

    login_ok("root@guild.io", PW, NULL, NULL);
    assert_strings(json_object_get(g_claims, "perms"), "*");

    expect(GUILD_FORBIDDEN, "bootstrap_admin", NULL, "{s:s, s:s, s:s}", "email", "evil@guild.io",
           "password", PW, "display_name", "Evil");
    ck_assert_str_eq(R.error.message, "an administrator exists already");
    ck_assert_uint_eq(version_of(system), 1);
}
END_TEST

/* ---- login and lockout ---------------------------------------------------- */

START_TEST(test_login_starts_session_and_signs_claims)
{
    char id[64], stream[256], expect[512];
    register_ok("ann@example.com", PW, id);
    ck_assert_status(login("Ann@Example.com", PW), GUILD_OK);

    assert_events("session_started");
    const char *sid = dom_str(r_data(0), "session_id", "");
    ck_assert_uint_eq(strlen(sid), 32);
    ck_assert_int_eq(dom_int(r_data(0), "expires_at", 0), T0 + 30 * DAY);

    snprintf(expect, sizeof expect, "signed:%s", id);
    ck_assert_str_eq(r_reply("access_token"), expect);
    ck_assert_int_eq(dom_int(R.reply, "expires_in", 0), 900);
    ck_assert_str_eq(r_reply("user_id"), id);
    const char *refresh = r_reply("refresh_token");
    snprintf(expect, sizeof expect, "%s.%s.", id, sid);
    ck_assert_int_eq(strncmp(refresh, expect, strlen(expect)), 0);
    ck_assert_uint_eq(strlen(refresh + strlen(expect)), 43);

    ck_assert_str_eq(dom_str(g_claims, "iss", ""), "guild");
    ck_assert_str_eq(dom_str(g_claims, "sub", ""), id);
    ck_assert_str_eq(dom_str(g_claims, "sid", ""), sid);
    ck_assert_str_eq(dom_str(g_claims, "typ", ""), "access");
    ck_assert_int_eq(dom_int(g_claims, "iat", 0), T0 / SEC);
    ck_assert_int_eq(dom_int(g_claims, "exp", 0), T0 / SEC + 900);
    ck_assert_uint_eq(json_array_size(json_object_get(g_claims, "perms")), 0);
    assert_strings(json_object_get(g_claims, "roles"), "user");

    /* the refresh secret is kept only as a digest */
    char *all = json_dumps(g_streams, 0);
    ck_assert_ptr_null(strstr(all, refresh + strlen(expect)));
    free(all);
    ck_assert(session_active(id, sid));
    user_stream(id, stream);
    ck_assert_uint_eq(version_of(stream), 2);
}
END_TEST

START_TEST(test_login_with_unknown_email_is_unauthenticated)
{
    ck_assert_status(login("nobody@example.com", PW), GUILD_UNAUTHENTICATED);
    ck_assert_str_eq(R.error.message, "invalid email or password");
    ck_assert_uint_eq(json_object_size(g_streams), 0);
}
END_TEST

START_TEST(test_wrong_password_counts_failures_and_locks_at_five)
{
    char id[64], stream[256];
    register_ok("ann@example.com", PW, id);
    user_stream(id, stream);
    for (int i = 1; i <= 4; i++) {
        ck_assert_status(login("ann@example.com", BAD_PW), GUILD_UNAUTHENTICATED);
        ck_assert_str_eq(R.error.message, "invalid email or password");
        assert_events("login_failed");
        ck_assert_int_eq(dom_int(r_data(0), "failures", 0), i);
        ck_assert_uint_eq(version_of(stream), 1 + (size_t)i); /* committed nonetheless */
    }
    ck_assert_status(login("ann@example.com", BAD_PW), GUILD_UNAUTHENTICATED);
    assert_events("login_failed,account_locked");
    ck_assert_int_eq(dom_int(r_data(0), "failures", 0), 5);
    ck_assert_int_eq(dom_int(r_data(1), "until", 0), T0 + 15 * MINUTE);
    ck_assert_uint_eq(version_of(stream), 7);
    ck_assert_ptr_null(strstr(R.error.message, BAD_PW));
}
END_TEST

START_TEST(test_locked_account_refuses_right_password_until_lock_lapses)
{
    char id[64], stream[256];
    register_ok("ann@example.com", PW, id);
    user_stream(id, stream);
    for (int i = 0; i < 5; i++)
        login("ann@example.com", BAD_PW);
    size_t v = version_of(stream);

    g_now += 14 * MINUTE;
    ck_assert_status(login("ann@example.com", PW), GUILD_UNAUTHENTICATED);
    ck_assert_str_eq(R.error.message, "account locked");
    assert_events("");
    ck_assert_uint_eq(version_of(stream), v);

    g_now += 2 * MINUTE;
    ck_assert_status(login("ann@example.com", PW), GUILD_OK);
    assert_events("session_started");
}
END_TEST

START_TEST(test_successful_login_resets_the_failure_count)
{
    char id[64];
    register_ok("ann@example.com", PW, id);
    login("ann@example.com", BAD_PW);
    login("ann@example.com", BAD_PW);
    login_ok("ann@example.com", PW, NULL, NULL);
    for (int i = 1; i <= 4; i++) {
        ck_assert_status(login("ann@example.com", BAD_PW), GUILD_UNAUTHENTICATED);
        assert_events("login_failed");
        ck_assert_int_eq(dom_int(r_data(0), "failures", 0), i);
    }
}
END_TEST

START_TEST(test_deactivated_user_is_refused_and_loses_sessions)
{
    char id[64], sid[64], refresh[256];
    register_ok("ann@example.com", PW, id);
    login_ok("ann@example.com", PW, sid, refresh);

    expect(GUILD_OK, "deactivate_user", admin_actor(), "{s:s, s:s}", "user_id", id, "reason",
           "left the company");
    assert_events("user_deactivated,session_ended");
    ck_assert_str_eq(dom_str(r_data(1), "session_id", ""), sid);
    ck_assert_str_eq(dom_str(r_data(1), "reason", ""), "deactivated");
    ck_assert(!session_active(id, sid));
    void *u = load_user(id);
    ck_assert(identity_user_deactivated(u));
    identity_user.destroy(u);

    ck_assert_status(login("ann@example.com", PW), GUILD_UNAUTHENTICATED);
    ck_assert_str_eq(R.error.message, "account disabled");
    expect(GUILD_UNAUTHENTICATED, "refresh_session", NULL, "{s:s}", "refresh_token", refresh);

    expect(GUILD_OK, "reactivate_user", admin_actor(), "{s:s}", "user_id", id);
    assert_events("user_reactivated");
    login_ok("ann@example.com", PW, NULL, NULL);
}
END_TEST

START_TEST(test_logins_beyond_the_session_limit_end_the_oldest)
{
    char id[64], first[64];
    register_ok("ann@example.com", PW, id);
    login_ok("ann@example.com", PW, first, NULL);
    for (int i = 1; i < IDENTITY_MAX_SESSIONS; i++) {
        g_now += SEC;
        login_ok("ann@example.com", PW, NULL, NULL);
        assert_events("session_started");
    }
    g_now += SEC;
    login_ok("ann@example.com", PW, NULL, NULL);
    assert_events("session_ended,session_started");
    ck_assert_str_eq(dom_str(r_data(0), "session_id", ""), first);
    ck_assert_str_eq(dom_str(r_data(0), "reason", ""), "session_limit");
    ck_assert(!session_active(id, first));
}
END_TEST

/* ---- sessions ------------------------------------------------------------- */

START_TEST(test_refresh_rotates_the_token)
{
    char id[64], sid[64], first[256], second[256];
    register_ok("ann@example.com", PW, id);
    login_ok("ann@example.com", PW, sid, first);

    g_now += 10 * MINUTE;
    expect(GUILD_OK, "refresh_session", NULL, "{s:s}", "refresh_token", first);
    assert_events("session_refreshed");
    ck_assert_str_eq(dom_str(r_data(0), "session_id", ""), sid);
    snprintf(second, sizeof second, "%s", r_reply("refresh_token"));
    ck_assert_str_ne(second, first);
    ck_assert_int_eq(strncmp(second, first, strlen(id) + 1 + 32 + 1), 0); /* same session */
    ck_assert_str_eq(dom_str(g_claims, "sid", ""), sid);
    ck_assert_int_eq(dom_int(g_claims, "iat", 0), (T0 + 10 * MINUTE) / SEC);
    ck_assert_int_eq(dom_int(R.reply, "expires_in", 0), 900);

    g_now += 10 * MINUTE;
    expect(GUILD_OK, "refresh_session", NULL, "{s:s}", "refresh_token", second);
    ck_assert(session_active(id, sid));
}
END_TEST

START_TEST(test_reused_refresh_token_ends_the_session)
{
    char id[64], sid[64], first[256], second[256], stream[256];
    register_ok("ann@example.com", PW, id);
    login_ok("ann@example.com", PW, sid, first);
    run("refresh_session", NULL, "{s:s}", "refresh_token", first);
    snprintf(second, sizeof second, "%s", r_reply("refresh_token"));
    user_stream(id, stream);
    size_t v = version_of(stream);

    expect(GUILD_UNAUTHENTICATED, "refresh_session", NULL, "{s:s}", "refresh_token", first);
    assert_events("session_ended");
    ck_assert_str_eq(dom_str(r_data(0), "reason", ""), "refresh_reuse");
    ck_assert_uint_eq(version_of(stream), v + 1);
    ck_assert_ptr_null(r_reply("access_token"));
    ck_assert(!session_active(id, sid));

    expect(GUILD_UNAUTHENTICATED, "refresh_session", NULL, "{s:s}", "refresh_token", second);
    assert_events("");
}
END_TEST

START_TEST(test_expired_or_malformed_refresh_token_is_refused)
{
    char id[64], refresh[256];
    register_ok("ann@example.com", PW, id);
    login_ok("ann@example.com", PW, NULL, refresh);
    const char *bad[] = {"", "x.y.z", "not-a-token", id};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        guild_status s = run("refresh_session", NULL, "{s:s}", "refresh_token", bad[i]);
        ck_assert(s == GUILD_UNAUTHENTICATED || s == GUILD_VALIDATION_FAILED);
    }
    g_now += 30 * DAY;
    expect(GUILD_UNAUTHENTICATED, "refresh_session", NULL, "{s:s}", "refresh_token", refresh);
    ck_assert_str_eq(R.error.message, "invalid refresh token");
    assert_events("");
}
END_TEST

START_TEST(test_logout_ends_only_the_callers_session)
{
    char id[64], a[64], b[64], refresh_a[256];
    register_ok("ann@example.com", PW, id);
    login_ok("ann@example.com", PW, a, refresh_a);
    login_ok("ann@example.com", PW, b, NULL);
    const dom_actor *me = actor_new(id, a, NULL);

    expect(GUILD_UNAUTHENTICATED, "logout", NULL, "{}");
    expect(GUILD_OK, "logout", me, "{}");
    assert_events("session_ended");
    ck_assert_str_eq(dom_str(r_data(0), "session_id", ""), a);
    ck_assert_str_eq(dom_str(r_data(0), "reason", ""), "logout");
    ck_assert_str_eq(R.id, id);
    ck_assert(!session_active(id, a));
    ck_assert(session_active(id, b));

    expect(GUILD_UNAUTHENTICATED, "refresh_session", NULL, "{s:s}", "refresh_token", refresh_a);
    expect(GUILD_OK, "logout", me, "{}");
    assert_events("");
}
END_TEST

/* ---- passwords ------------------------------------------------------------ */

START_TEST(test_change_password_checks_current_and_ends_other_sessions)
{
    char id[64], a[64], b[64];
    register_ok("ann@example.com", PW, id);
    login_ok("ann@example.com", PW, a, NULL);
    login_ok("ann@example.com", PW, b, NULL);
    const dom_actor *me = actor_new(id, a, NULL);

    expect(GUILD_UNAUTHENTICATED, "change_password", me, "{s:s, s:s}", "current_password", BAD_PW,
           "new_password", PW2);
    ck_assert_str_eq(R.error.field, "current_password");
    assert_events("");
    expect(GUILD_VALIDATION_FAILED, "change_password", me, "{s:s, s:s}", "current_password", PW,
           "new_password", "weak");
    ck_assert_str_eq(R.error.field, "new_password");

    expect(GUILD_OK, "change_password", me, "{s:s, s:s}", "current_password", PW, "new_password",
           PW2);
    assert_events("password_changed,session_ended");
    ck_assert_str_eq(dom_str(r_data(1), "session_id", ""), b);
    ck_assert_str_eq(dom_str(r_data(1), "reason", ""), "password_changed");
    ck_assert(session_active(id, a));
    ck_assert(!session_active(id, b));

    ck_assert_status(login("ann@example.com", PW), GUILD_UNAUTHENTICATED);
    login_ok("ann@example.com", PW2, NULL, NULL);
    char *all = json_dumps(g_streams, 0);
    ck_assert_ptr_null(strstr(all, PW2));
    free(all);
}
END_TEST

START_TEST(test_reset_request_for_unknown_email_answers_ok_with_nothing)
{
    g_dev = true;
    expect(GUILD_OK, "request_password_reset", NULL, "{s:s}", "email", "ghost@example.com");
    assert_events("");
    ck_assert_uint_eq(json_object_size(R.reply), 0);
    ck_assert_uint_eq(json_object_size(g_streams), 0);
}
END_TEST

START_TEST(test_reset_token_shown_only_in_dev_mode)
{
    char id[64], stream[256];
    register_ok("ann@example.com", PW, id);
    user_stream(id, stream);
    expect(GUILD_OK, "request_password_reset", NULL, "{s:s}", "email", "ANN@example.com");
    assert_events("password_reset_requested");
    ck_assert_str_eq(dom_str(json_array_get(R.events, 0), "stream", ""), stream);
    ck_assert_uint_eq(strlen(dom_str(r_data(0), "token_hash", "")), 64);
    ck_assert_int_eq(dom_int(r_data(0), "expires_at", 0), T0 + 30 * MINUTE);
    ck_assert_uint_eq(json_object_size(R.reply), 0);

    g_dev = true;
    run("request_password_reset", NULL, "{s:s}", "email", "ann@example.com");
    const char *token = r_reply("dev_reset_token");
    ck_assert_ptr_nonnull(token);
    ck_assert_int_eq(strncmp(token, id, strlen(id)), 0);
    ck_assert_int_eq(token[strlen(id)], '.');
    ck_assert_ptr_null(strstr(dom_str(r_data(0), "token_hash", ""), token + strlen(id) + 1));
}
END_TEST

START_TEST(test_reset_password_works_once_and_ends_sessions)
{
    char id[64], sid[64], token[256];
    register_ok("ann@example.com", PW, id);
    login_ok("ann@example.com", PW, sid, NULL);
    for (int i = 0; i < 5; i++)
        login("ann@example.com", BAD_PW); /* locked */
    g_dev = true;
    run("request_password_reset", NULL, "{s:s}", "email", "ann@example.com");
    snprintf(token, sizeof token, "%s", r_reply("dev_reset_token"));

    g_now += 20 * MINUTE;
    expect(GUILD_OK, "reset_password", NULL, "{s:s, s:s}", "token", token, "new_password", PW2);
    assert_events("password_reset,session_ended");
    ck_assert_str_eq(dom_str(r_data(1), "reason", ""), "password_reset");
    ck_assert(!session_active(id, sid));
    login_ok("ann@example.com", PW2, NULL, NULL); /* the reset lifted the lock too */

    expect(GUILD_UNAUTHENTICATED, "reset_password", NULL, "{s:s, s:s}", "token", token,
           "new_password", PW);
    ck_assert_str_eq(R.error.message, "invalid or expired reset token");
    assert_events("");
}
END_TEST

START_TEST(test_reset_token_expires_after_30_minutes)
{
    char id[64], token[256];
    register_ok("ann@example.com", PW, id);
    g_dev = true;
    run("request_password_reset", NULL, "{s:s}", "email", "ann@example.com");
    snprintf(token, sizeof token, "%s", r_reply("dev_reset_token"));
    g_now += 31 * MINUTE;
    expect(GUILD_UNAUTHENTICATED, "reset_password", NULL, "{s:s, s:s}", "token", token,
           "new_password", PW2);
    assert_events("");
    token[strlen(token) - 1] ^= 1; /* a forged one fares no better */
    expect(GUILD_UNAUTHENTICATED, "reset_password", NULL, "{s:s, s:s}", "token", token,
           "new_password", PW2);
    login_ok("ann@example.com", PW, NULL, NULL);
}
END_TEST

/* ---- roles and permissions ------------------------------------------------ */

START_TEST(test_role_permissions_flow_into_login_claims)
{
    char id[64];
    const dom_actor *admin = admin_actor();
    register_ok("ann@example.com", PW, id);

    expect(GUILD_OK, "define_role", admin, "{s:s, s:[s, s]}", "name", "recruiter", "permissions",
           "job:post", "job:post");
    assert_events("role_defined");
    ck_assert_uint_eq(json_array_size(json_object_get(r_data(0), "permissions")), 1);
    expect(GUILD_OK, "grant_permission", admin, "{s:s, s:s}", "role", "recruiter", "permission",
           "talent:*");
    assert_events("permission_granted");
    run("grant_permission", admin, "{s:s, s:s}", "role", "recruiter", "permission", "talent:*");
    assert_events("");
    expect(GUILD_OK, "revoke_permission", admin, "{s:s, s:s}", "role", "recruiter", "permission",
           "job:post");
    assert_events("permission_revoked");

    expect(GUILD_OK, "assign_role", admin, "{s:s, s:s}", "user_id", id, "role", "recruiter");
    assert_events("role_assigned");
    login_ok("ann@example.com", PW, NULL, NULL);
    assert_strings(json_object_get(g_claims, "perms"), "talent:*");
    assert_strings(json_object_get(g_claims, "roles"), "user,recruiter");

    expect(GUILD_OK, "revoke_role", admin, "{s:s, s:s}", "user_id", id, "role", "recruiter");
    assert_events("role_revoked");
    login_ok("ann@example.com", PW, NULL, NULL);
    ck_assert_uint_eq(json_array_size(json_object_get(g_claims, "perms")), 0);
}
END_TEST

START_TEST(test_role_rules_reserved_missing_and_forbidden)
{
    char id[64], sid[64];
    const dom_actor *admin = admin_actor();
    register_ok("ann@example.com", PW, id);
    login_ok("ann@example.com", PW, sid, NULL);
    const dom_actor *ann = actor_new(id, sid, json_deep_copy(json_object_get(g_claims, "perms")));

    expect(GUILD_RULE_VIOLATION, "define_role", admin, "{s:s, s:[s]}", "name", "admin",
           "permissions", "job:post");
    expect(GUILD_RULE_VIOLATION, "grant_permission", admin, "{s:s, s:s}", "role", "user",
           "permission", "job:post");
    expect(GUILD_NOT_FOUND, "grant_permission", admin, "{s:s, s:s}", "role", "ghost", "permission",
           "job:post");
    expect(GUILD_NOT_FOUND, "assign_role", admin, "{s:s, s:s}", "user_id", id, "role", "ghost");
    ck_assert_str_eq(R.error.field, "role");
    expect(GUILD_NOT_FOUND, "assign_role", admin, "{s:s, s:s}", "user_id",
           "0190a000-0000-7000-8000-000000000000", "role", "admin");
    expect(GUILD_FORBIDDEN, "define_role", ann, "{s:s, s:[]}", "name", "x", "permissions");
    expect(GUILD_FORBIDDEN, "assign_role", ann, "{s:s, s:s}", "user_id", id, "role", "admin");

    expect(GUILD_OK, "define_role", admin, "{s:s, s:[s]}", "name", "ops", "permissions",
           "tools:admin");
    run("define_role", admin, "{s:s, s:[s]}", "name", "ops", "permissions", "tools:admin");
    assert_events("");
    run("define_role", admin, "{s:s, s:[s]}", "name", "ops", "permissions", "tools:*");
    assert_events("role_updated");
}
END_TEST

/* ---- clients -------------------------------------------------------------- */

START_TEST(test_client_credentials_issue_service_tokens)
{
    char secret[128], stream[256];
    const dom_actor *admin = admin_actor();
    expect(GUILD_UNAUTHENTICATED, "register_client", NULL, "{s:s, s:[]}", "client_id",
           "saga_hiring", "permissions");
    expect(GUILD_OK, "register_client", admin, "{s:s, s:[s, s]}", "client_id", "saga_hiring",
           "permissions", "talent:*", "job:admin");
    ck_assert_str_eq(r_reply("client_id"), "saga_hiring");
    snprintf(secret, sizeof secret, "%s", r_reply("client_secret"));
    ck_assert_uint_eq(strlen(secret), 43);
    assert_events("client_registered");
    unsigned char digest[32];
    char hex[65];
    crypto_generichash(digest, sizeof digest, (const unsigned char *)secret, strlen(secret), NULL,
                       0);
    sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
    ck_assert_str_eq(dom_str(r_data(0), "secret_hash", ""), hex);
    char *all = json_dumps(g_streams, 0);
    ck_assert_ptr_null(strstr(all, secret));
    free(all);

    expect(GUILD_CONFLICT, "register_client", admin, "{s:s, s:[]}", "client_id", "saga_hiring",
           "permissions");

    expect(GUILD_OK, "issue_service_token", NULL, "{s:s, s:s}", "client_id", "saga_hiring",
           "client_secret", secret);
    ck_assert_str_eq(r_reply("access_token"), "signed:client:saga_hiring");
    ck_assert_int_eq(dom_int(R.reply, "expires_in", 0), 900);
    assert_events("service_token_issued");
    ck_assert_str_eq(dom_str(g_claims, "typ", ""), "service");
    ck_assert(dom_bool(g_claims, "svc", false));
    ck_assert_str_eq(dom_str(g_claims, "iss", ""), "guild");
    ck_assert_int_eq(dom_int(g_claims, "exp", 0), T0 / SEC + 900);
    assert_strings(json_object_get(g_claims, "perms"), "talent:*,job:admin");

    dom_stream_name(IDENTITY_DOMAIN, &identity_client, "saga_hiring", stream, sizeof stream);
    size_t v = version_of(stream);
    secret[0] = secret[0] == 'A' ? 'B' : 'A';
    expect(GUILD_UNAUTHENTICATED, "issue_service_token", NULL, "{s:s, s:s}", "client_id",
           "saga_hiring", "client_secret", secret);
    ck_assert_uint_eq(version_of(stream), v);
    expect(GUILD_UNAUTHENTICATED, "issue_service_token", NULL, "{s:s, s:s}", "client_id", "nobody",
           "client_secret", secret);
}
END_TEST

START_TEST(test_revoked_client_gets_no_token)
{
    char secret[128];
    const dom_actor *admin = admin_actor();
    run("register_client", admin, "{s:s, s:[]}", "client_id", "projector", "permissions");
    snprintf(secret, sizeof secret, "%s", r_reply("client_secret"));
    expect(GUILD_OK, "revoke_client", admin, "{s:s}", "client_id", "projector");
    assert_events("client_revoked");
    expect(GUILD_UNAUTHENTICATED, "issue_service_token", NULL, "{s:s, s:s}", "client_id",
           "projector", "client_secret", secret);
}
END_TEST

/* ---- user administration -------------------------------------------------- */

START_TEST(test_update_of_another_user_is_forbidden)
{
    char ann[64], bob[64], sid[64];
    register_ok("ann@example.com", PW, ann);
    register_ok("bob@example.com", PW, bob);
    login_ok("bob@example.com", PW, sid, NULL);
    const dom_actor *as_bob = actor_new(bob, sid, NULL);
    expect(GUILD_FORBIDDEN, "update_user", as_bob, "{s:s, s:s}", "user_id", ann, "display_name",
           "Mallory");
    assert_events("");

    expect(GUILD_OK, "update_user", as_bob, "{s:s, s:s}", "user_id", bob, "display_name", "Robert");
    assert_events("user_updated");
    ck_assert_str_eq(dom_str(r_data(0), "display_name", ""), "Robert");
    ck_assert_ptr_null(json_object_get(r_data(0), "email"));

    expect(GUILD_OK, "update_user", admin_actor(), "{s:s, s:s}", "user_id", ann, "display_name",
           "Anna");
    expect(GUILD_NOT_FOUND, "update_user", admin_actor(), "{s:s, s:s}", "user_id",
           "0190a000-0000-7000-8000-000000000000", "display_name", "X");
}
END_TEST

START_TEST(test_email_change_moves_the_claim)
{
    char ann[64], bob[64], sid[64], old_claim[256], new_claim[256];
    register_ok("ann@example.com", PW, ann);
    register_ok("bob@example.com", PW, bob);
    login_ok("ann@example.com", PW, sid, NULL);
    const dom_actor *me = actor_new(ann, sid, NULL);

    expect(GUILD_CONFLICT, "update_user", me, "{s:s, s:s}", "user_id", ann, "email",
           "Bob@Example.com");
    ck_assert_str_eq(R.error.field, "email");
    expect(GUILD_OK, "update_user", me, "{s:s, s:s}", "user_id", ann, "email", "ANN@example.com");
    assert_events("");

    expect(GUILD_OK, "update_user", me, "{s:s, s:s}", "user_id", ann, "email", "Ann@New.org");
    assert_events("user_updated,email_claimed,email_released");
    ck_assert_str_eq(dom_str(r_data(0), "email", ""), "ann@new.org");
    claim_stream("ann@new.org", new_claim);
    claim_stream("ann@example.com", old_claim);
    ck_assert_str_eq(dom_str(json_array_get(R.events, 1), "stream", ""), new_claim);
    ck_assert_str_eq(dom_str(json_array_get(R.events, 2), "stream", ""), old_claim);

    ck_assert_status(login("ann@example.com", PW), GUILD_UNAUTHENTICATED);
    login_ok("ann@new.org", PW, NULL, NULL);
    ck_assert_str_eq(r_reply("user_id"), ann);
    char other[64];
    register_ok("ann@example.com", PW2, other); /* the released address is free again */
    ck_assert_str_ne(other, ann);
}
END_TEST

/* ---- the tables ----------------------------------------------------------- */

START_TEST(test_every_command_row_is_complete)
{
    ck_assert_str_eq(dom_identity.name, "identity");
    size_t n = 0;
    for (const dom_command *c = dom_identity.commands; c->name; c++, n++) {
        ck_assert_msg(c->decide && c->aggregate && c->fields && c->summary, "%s", c->name);
        int targets = (c->id_field != NULL) + (c->resolve != NULL) + c->creates;
        ck_assert_msg(targets == 1, "%s has %d ways to find its target", c->name, targets);
        ck_assert_msg(!(c->is_public && c->permission), "%s", c->name);
        if (c->permission)
            ck_assert_str_eq(c->permission, IDENTITY_PERM_ADMIN);
    }
    ck_assert_uint_ge(n, 18);
    const char *queries[] = {"get_user", "list_users", "check_permission", "public_keys"};
    for (size_t i = 0; i < 4; i++) {
        bool found = false;
        for (const dom_query_doc *q = dom_identity.queries; q->name; q++)
            found = found || strcmp(q->name, queries[i]) == 0;
        ck_assert_msg(found, "query %s", queries[i]);
    }
    for (const dom_event_doc *e = dom_identity.events; e->type; e++)
        ck_assert_msg(e->summary && e->fields, "%s", e->type);
}
END_TEST

START_TEST(test_malformed_event_is_corrupt)
{
    void *u = identity_user.create();
    json_t *data = json_pack("{s:s}", "user_id", "x");
    ck_assert_status(identity_user.evolve(u, "user_registered", data, NULL), GUILD_CORRUPT);
    ck_assert_status(identity_user.evolve(u, "something_else", data, NULL), GUILD_OK);
    ck_assert(!identity_user_exists(u));
    json_decref(data);
    identity_user.destroy(u);
}
END_TEST

/* ---- snapshots ------------------------------------------------------------ */

static void user_snapshot_bytes(const void *u, char **bytes, size_t *len)
{
    ck_assert(identity_user.snapshot != NULL);
    ck_assert_status(identity_user.snapshot(u, bytes, len), GUILD_OK);
}

/* A user with sessions, a role, failed logins and a pending reset restores
 * to one that snapshots to the same bytes and answers as the original. */
START_TEST(test_user_snapshot_restores_the_same_user)
{
    char id[64], sid[64], refresh[256];
    register_ok("kim@example.com", PW, id);
    login_ok("kim@example.com", PW, sid, refresh);
    ck_assert_status(login("kim@example.com", "wrong password 1"), GUILD_UNAUTHENTICATED);
    expect(GUILD_OK, "request_password_reset", NULL, "{s:s}", "email", "kim@example.com");
    expect(GUILD_OK, "define_role", admin_actor(), "{s:s, s:[s]}", "name", "recruiter",
           "permissions", "talent:admin");
    expect(GUILD_OK, "assign_role", admin_actor(), "{s:s, s:s}", "user_id", id, "role",
           "recruiter");

    void *u = load_user(id);
    char *bytes = NULL, *again = NULL;
    size_t len = 0, len2 = 0;
    user_snapshot_bytes(u, &bytes, &len);
    void *restored = identity_user.restore(bytes, len);
    ck_assert_ptr_nonnull(restored);
    user_snapshot_bytes(restored, &again, &len2);
    ck_assert_uint_eq(len2, len);
    ck_assert_int_eq(memcmp(again, bytes, len), 0);
    ck_assert(identity_user_exists(restored));
    ck_assert(!identity_user_deactivated(restored));
    ck_assert(identity_session_active(restored, sid));
    ck_assert(!identity_session_active(restored, "0123456789abcdef0123456789abcdef"));
    bool has_role = false;
    for (size_t i = 0; !has_role && i + 9 <= len; i++)
        has_role = memcmp(bytes + i, "recruiter", 9) == 0;
    ck_assert_msg(has_role, "the snapshot lacks the role");
    identity_user.destroy(restored);
    identity_user.destroy(u);
    free(bytes);
    free(again);

    ck_assert_ptr_null(identity_user.restore("x", 1));
    static const char other_format[] = "\x81\xa6"
                                       "format"
                                       "\x07";
    ck_assert_ptr_null(identity_user.restore(other_format, sizeof other_format - 1));
}
END_TEST

/* ---- suite ---------------------------------------------------------------- */

static TCase *tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, setup, teardown);
    return tc;
}

static Suite *identity_suite(void)
{
    Suite *s = suite_create("domain/identity");

    TCase *tc = tcase("registration");
    tcase_add_test(tc, test_email_key_is_32_hex_chars_and_ignores_case);
    tcase_add_test(tc, test_register_creates_user_and_claims_lower_cased_email);
    tcase_add_test(tc, test_register_conflicts_on_taken_email_whatever_its_case);
    tcase_add_test(tc, test_weak_passwords_fail_validation_without_echo);
    tcase_add_test(tc, test_bootstrap_admin_works_once_and_grants_everything);
    suite_add_tcase(s, tc);

    tc = tcase("login");
    tcase_add_test(tc, test_login_starts_session_and_signs_claims);
    tcase_add_test(tc, test_login_with_unknown_email_is_unauthenticated);
    tcase_add_test(tc, test_wrong_password_counts_failures_and_locks_at_five);
    tcase_add_test(tc, test_locked_account_refuses_right_password_until_lock_lapses);
    tcase_add_test(tc, test_successful_login_resets_the_failure_count);
    tcase_add_test(tc, test_deactivated_user_is_refused_and_loses_sessions);
    tcase_add_test(tc, test_logins_beyond_the_session_limit_end_the_oldest);
    suite_add_tcase(s, tc);

    tc = tcase("sessions");
    tcase_add_test(tc, test_refresh_rotates_the_token);
    tcase_add_test(tc, test_reused_refresh_token_ends_the_session);
    tcase_add_test(tc, test_expired_or_malformed_refresh_token_is_refused);
    tcase_add_test(tc, test_logout_ends_only_the_callers_session);
    suite_add_tcase(s, tc);

    tc = tcase("passwords");
    tcase_add_test(tc, test_change_password_checks_current_and_ends_other_sessions);
    tcase_add_test(tc, test_reset_request_for_unknown_email_answers_ok_with_nothing);
    tcase_add_test(tc, test_reset_token_shown_only_in_dev_mode);
    tcase_add_test(tc, test_reset_password_works_once_and_ends_sessions);
    tcase_add_test(tc, test_reset_token_expires_after_30_minutes);
    suite_add_tcase(s, tc);

    tc = tcase("roles");
    tcase_add_test(tc, test_role_permissions_flow_into_login_claims);
    tcase_add_test(tc, test_role_rules_reserved_missing_and_forbidden);
    suite_add_tcase(s, tc);

    tc = tcase("clients");
    tcase_add_test(tc, test_client_credentials_issue_service_tokens);
    tcase_add_test(tc, test_revoked_client_gets_no_token);
    suite_add_tcase(s, tc);

    tc = tcase("users");
    tcase_add_test(tc, test_update_of_another_user_is_forbidden);
    tcase_add_test(tc, test_email_change_moves_the_claim);
    tcase_add_test(tc, test_user_snapshot_restores_the_same_user);
    suite_add_tcase(s, tc);

    tc = tcase("tables");
    tcase_add_test(tc, test_every_command_row_is_complete);
    tcase_add_test(tc, test_malformed_event_is_corrupt);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (sodium_init() < 0)
        return EXIT_FAILURE;
    return tst_run_suite(identity_suite());
}
