/*
 * test_commands.c — guild's command side end to end, as a client sees it:
 * a real nats-server, real `guild serve identity` and `guild serve talent`
 * processes on a temporary data dir, and requests sent over NATS with the
 * headers of CONTRACT.md.
 *
 * Every error code of CONTRACT.md that a command can earn is provoked here
 * with the Guild-Status header it must carry, except two:
 *   - `internal` (500) answers a bug: nothing a client sends is meant to
 *     reach it, so no test can provoke it by design;
 *   - `rate_limited` (429) belongs to the gateway's per-client limits; the
 *     command runtime has no limiter, so the bus never answers it.
 *
 * Sections: fixture and helpers; invalid_request; validation_failed;
 * unauthenticated and forbidden; not_found, conflict and rule_violation;
 * unavailable; idempotency; racing clients; encodings; discovery; suite.
 */
#include "bus/runtime.h"
#include "common/codec.h"
#include "common/uuid.h"
#include "eventstore/es.h"

#include "tests/support/check_util.h"
#include "tests/support/guild_proc.h"
#include "tests/support/nats_server.h"
#include "tests/support/tmpdir.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MIB (1024 * 1024)
#define RACERS 20
#define GATHER_MS 500

static tst_nats g_srv;
static natsConnection *g_nc;
static char *g_data;
static tst_guild g_identity, g_talent;
static tst_user g_alice, g_bob;
static char g_profile[64];   /* alice's talent profile */
static char *g_wrapper_dir;  /* nats-server wrapper of the large-payload broker */
static char *g_saved_server; /* GUILD_NATS_SERVER before the wrapper replaced it */

/* ---- fixture and helpers ----------------------------------------------------- */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void broker_up(void)
{
    ck_assert_int_eq(tst_nats_start(&g_srv), 0);
    ck_assert_int_eq(tst_nats_connect(&g_srv, &g_nc), 0);
    g_data = tst_dir_new("data");
}

static void start_service(tst_guild *g, const char *domain)
{
    ck_assert_msg(tst_guild_start(g, domain, g_data, g_srv.url) == 0,
                  "guild serve %s did not start", domain);
}

/* Creates the profile of u through talent; its talent id goes to out. */
static void create_profile(const tst_user *u, char out[64])
{
    json_t *body = json_pack("{s:s, s:s, s:s}", "user_id", u->user_id, "headline", "Engineer",
                             "location", "Lyon");
    tst_call call = {.token = u->access_token};
    tst_reply r;
    ck_assert_int_eq(tst_guild_command(g_nc, "talent", "create_profile", body, &call, &r), 0);
    ck_assert_msg(r.status == 200, "create_profile: %s", r.raw);
    snprintf(out, 64, "%s", tst_reply_data_str(&r, "talent_id"));
    tst_reply_release(&r);
    json_decref(body);
}

/* The usual world: broker, identity, talent, alice with a profile, bob. */
static void world_setup(void)
{
    broker_up();
    start_service(&g_identity, "identity");
    start_service(&g_talent, "talent");
    ck_assert_int_eq(tst_guild_signup(g_nc, "alice@example.com", false, &g_alice), 0);
    ck_assert_int_eq(tst_guild_signup(g_nc, "bob@example.com", false, &g_bob), 0);
    create_profile(&g_alice, g_profile);
}

static void world_teardown(void)
{
    tst_guild *all[] = {&g_talent, &g_identity};
    int stopped = tst_guild_stop_all(all, 2);
    natsConnection_Destroy(g_nc);
    g_nc = NULL;
    tst_nats_stop(&g_srv);
    if (g_wrapper_dir) {
        if (g_saved_server)
            setenv("GUILD_NATS_SERVER", g_saved_server, 1);
        else
            unsetenv("GUILD_NATS_SERVER");
        free(g_saved_server);
        g_saved_server = NULL;
        tst_dir_remove(g_wrapper_dir);
        free(g_wrapper_dir);
        g_wrapper_dir = NULL;
    }
    if (g_data) {
        tst_dir_remove(g_data);
        free(g_data);
        g_data = NULL;
    }
    memset(&g_alice, 0, sizeof g_alice);
    memset(&g_bob, 0, sizeof g_bob);
    g_profile[0] = '\0';
    ck_assert_msg(stopped == 0, "a service did not stop cleanly on SIGTERM");
}

/* Sends command `name` of `domain` with body (stolen) and call. */
static void send_cmd(const char *domain, const char *name, json_t *body, const tst_call *call,
                     tst_reply *r)
{
    tst_guild_command(g_nc, domain, name, body, call, r);
    json_decref(body);
    ck_assert_msg(r->nats == NATS_OK, "%s.%s: no reply (%s)", domain, name,
                  natsStatus_GetText(r->nats));
}

/* Asserts the reply is the error `code` with Guild-Status `status` (and the
 * field, when `field` is not NULL). */
static void assert_error(const tst_reply *r, int status, const char *code, const char *field)
{
    ck_assert_msg(r->status == status, "Guild-Status %d, want %d: %s", r->status, status, r->raw);
    ck_assert_msg(json_is_false(json_object_get(r->body, "ok")), "not an error reply: %s", r->raw);
    ck_assert_str_eq(tst_reply_code(r), code);
    json_t *msg = json_object_get(json_object_get(r->body, "error"), "message");
    ck_assert_msg(json_is_string(msg) && json_string_length(msg) > 0, "no message: %s", r->raw);
    if (field) {
        ck_assert_msg(tst_reply_error_field(r) != NULL, "no field in %s", r->raw);
        ck_assert_str_eq(tst_reply_error_field(r), field);
    }
}

static void assert_ok(const tst_reply *r)
{
    ck_assert_msg(r->status == 200 && strcmp(tst_reply_code(r), "ok") == 0, "not ok: %d %s",
                  r->status, r->raw);
}

static json_t *add_skill_body(const char *talent_id, const char *skill, int level)
{
    return json_pack("{s:s, s:s, s:i}", "talent_id", talent_id, "skill", skill, "level", level);
}

/* Sends `len` bytes as they are to `subject`, with alice's token and the
 * given Content-Type (NULL: application/json; "": none). */
static void send_raw(const char *subject, const void *bytes, size_t len, const char *content_type,
                     tst_reply *r)
{
    tst_call call = {.token = g_alice.access_token, .content_type = content_type};
    tst_guild_request(g_nc, subject, bytes, len, &call, r);
    ck_assert_msg(r->nats == NATS_OK, "%s: no reply (%s)", subject, natsStatus_GetText(r->nats));
}

/* The version of `stream` and the log head of a domain's store, read from
 * the store itself (opened read-only beside the running service). */
static void store_heads(const char *domain, const char *stream, uint64_t *version,
                        uint64_t *log_head)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s/events", g_data, domain);
    es_options o = {.read_only = true};
    es_store *st = NULL;
    guild_error err;
    guild_error_clear(&err);
    guild_status s = es_store_open(dir, &o, &st, &err);
    ck_assert_msg(s == GUILD_OK, "open %s read-only: %s", dir, err.message);
    *version = 0;
    s = es_stream_head(st, stream, version, NULL);
    ck_assert_msg(s == GUILD_OK || s == GUILD_NOT_FOUND, "stream head: %s", guild_status_code(s));
    ck_assert_status(es_log_head(st, log_head, NULL), GUILD_OK);
    es_store_close(st);
}

static void profile_heads(uint64_t *version, uint64_t *log_head)
{
    char stream[128];
    snprintf(stream, sizeof stream, "talent-%s", g_profile);
    store_heads("talent", stream, version, log_head);
}

/* ---- invalid_request --------------------------------------------------------- */

START_TEST(test_undecodable_body_is_invalid_request)
{
    tst_reply r;
    const char *truncated = "{\"talent_id\": \"0193";
    send_raw("guild.cmd.talent.add_skill", truncated, strlen(truncated), NULL, &r);
    assert_error(&r, 400, "invalid_request", NULL);
    ck_assert_str_eq(r.content_type, "application/json");
    tst_reply_release(&r);

    /* 0xc1 is never used in msgpack. Without a Content-Type the body is
     * taken for msgpack, and so is the reply. */
    const unsigned char never[] = {0x81, 0xc1, 0x01};
    send_raw("guild.cmd.talent.add_skill", never, sizeof never, "", &r);
    assert_error(&r, 400, "invalid_request", NULL);
    ck_assert_str_eq(r.content_type, "application/msgpack");
    tst_reply_release(&r);

    /* The first byte decides, not the first non-blank one: a blank before
     * the brace makes a msgpack body that is not a map. */
    const char *indented = " {\"talent_id\": \"x\"}";
    send_raw("guild.cmd.talent.add_skill", indented, strlen(indented), "", &r);
    assert_error(&r, 400, "invalid_request", NULL);
    ck_assert_str_eq(r.content_type, "application/msgpack");
    tst_reply_release(&r);

    /* A JSON body declared as JSON with bytes after the value. */
    const char *trailing = "{\"talent_id\": \"x\"} {}";
    send_raw("guild.cmd.talent.add_skill", trailing, strlen(trailing), "application/json", &r);
    assert_error(&r, 400, "invalid_request", NULL);
    tst_reply_release(&r);

    /* An empty body is not a map either. */
    send_raw("guild.cmd.talent.add_skill", "", 0, "application/json", &r);
    assert_error(&r, 400, "invalid_request", NULL);
    tst_reply_release(&r);
}
END_TEST

START_TEST(test_body_that_is_not_a_map_is_invalid_request)
{
    tst_reply r;
    const char *array = "[1, 2]";
    send_raw("guild.cmd.talent.add_skill", array, strlen(array), "application/json", &r);
    assert_error(&r, 400, "invalid_request", NULL);
    tst_reply_release(&r);

    const char *string = "\"add a skill\"";
    send_raw("guild.cmd.talent.add_skill", string, strlen(string), "application/json", &r);
    assert_error(&r, 400, "invalid_request", NULL);
    tst_reply_release(&r);

    /* msgpack [1, 2] and msgpack 7 */
    const unsigned char mp_array[] = {0x92, 0x01, 0x02}, mp_int[] = {0x07};
    send_raw("guild.cmd.talent.add_skill", mp_array, sizeof mp_array, "application/msgpack", &r);
    assert_error(&r, 400, "invalid_request", NULL);
    ck_assert_str_eq(r.content_type, "application/msgpack");
    tst_reply_release(&r);
    send_raw("guild.cmd.talent.add_skill", mp_int, sizeof mp_int, "application/msgpack", &r);
    assert_error(&r, 400, "invalid_request", NULL);
    tst_reply_release(&r);
}
END_TEST

START_TEST(test_unknown_command_is_invalid_request)
{
    tst_reply r;
    tst_call call = {.token = g_alice.access_token};
    send_cmd("talent", "teleport", add_skill_body(g_profile, "c", 3), &call, &r);
    assert_error(&r, 400, "invalid_request", NULL);
    ck_assert_ptr_nonnull(strstr(r.raw, "teleport"));
    tst_reply_release(&r);

    /* A query name is not a command either. */
    send_cmd("identity", "public_keys", json_object(), &call, &r);
    assert_error(&r, 400, "invalid_request", NULL);
    tst_reply_release(&r);
}
END_TEST

START_TEST(test_malformed_command_id_is_invalid_request)
{
    char too_long[130];
    memset(too_long, 'a', 129);
    too_long[129] = '\0';
    const char *bad[] = {"has space", "semi;colon", "slash/ed", "caf\xc3\xa9", too_long, ""};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tst_reply r;
        tst_call call = {.token = g_alice.access_token, .command_id = bad[i]};
        send_cmd("talent", "add_skill", add_skill_body(g_profile, "c", 3), &call, &r);
        assert_error(&r, 400, "invalid_request", "Guild-Command-Id");
        tst_reply_release(&r);
    }
    /* Guild-Correlation-Id has the same shape */
    tst_reply bad_corr;
    tst_call corr = {.token = g_alice.access_token, .correlation = "not ok"};
    send_cmd("talent", "add_skill", add_skill_body(g_profile, "c", 3), &corr, &bad_corr);
    assert_error(&bad_corr, 400, "invalid_request", "Guild-Correlation-Id");
    tst_reply_release(&bad_corr);

    uint64_t version, head;
    profile_heads(&version, &head);
    ck_assert_uint_eq(version, 1); /* none of them appended */

    /* 128 of the allowed characters are fine. */
    char longest[129];
    memset(longest, 'b', 128);
    memcpy(longest, "A9._:-", 6);
    longest[128] = '\0';
    tst_reply r;
    tst_call call = {.token = g_alice.access_token, .command_id = longest};
    send_cmd("talent", "add_skill", add_skill_body(g_profile, "c", 3), &call, &r);
    assert_ok(&r);
    tst_reply_release(&r);
}
END_TEST

START_TEST(test_malformed_expected_version_is_invalid_request)
{
    const char *bad[] = {
        "abc", "-1", "1.5", "", "1 2", "0x10", "18446744073709551615", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tst_reply r;
        tst_call call = {.token = g_alice.access_token, .expected = bad[i]};
        send_cmd("talent", "add_skill", add_skill_body(g_profile, "c", 3), &call, &r);
        ck_assert_msg(r.status == 400, "Guild-Expected-Version '%s': %d %s", bad[i], r.status,
                      r.raw);
        assert_error(&r, 400, "invalid_request", "Guild-Expected-Version");
        tst_reply_release(&r);
    }
    uint64_t version, head;
    profile_heads(&version, &head);
    ck_assert_uint_eq(version, 1);
}
END_TEST

/* Oversize needs a broker that carries more than 1 MiB: nats-server's own
 * default max_payload is exactly 1 MiB, so with it the client library
 * refuses the request before it leaves (NATS_MAX_PAYLOAD). This broker runs
 * with max_payload 4 MiB, through a wrapper named by GUILD_NATS_SERVER. */
static void big_broker_setup(void)
{
    char program[1024] = "";
    const char *env = getenv("GUILD_NATS_SERVER");
    if (env && *env) {
        g_saved_server = strdup(env);
        snprintf(program, sizeof program, "%s", env);
    } else {
        const char *path = getenv("PATH");
        char copy[4096];
        snprintf(copy, sizeof copy, "%s", path ? path : "/usr/bin:/usr/sbin");
        for (char *save = NULL, *d = strtok_r(copy, ":", &save); d;
             d = strtok_r(NULL, ":", &save)) {
            snprintf(program, sizeof program, "%s/nats-server", d);
            if (access(program, X_OK) == 0)
                break;
            program[0] = '\0';
        }
    }
    ck_assert_msg(program[0], "nats-server not found");
    g_wrapper_dir = tst_dir_new("natsconf");
    char conf[1100], script[1100], text[4096];
    snprintf(conf, sizeof conf, "%s/big.conf", g_wrapper_dir);
    snprintf(script, sizeof script, "%s/nats-server", g_wrapper_dir);
    snprintf(text, sizeof text, "max_payload: 4194304\n");
    ck_assert_int_eq(tst_file_write(conf, text, strlen(text)), 0);
    snprintf(text, sizeof text, "#!/bin/sh\nexec '%s' -c '%s' \"$@\"\n", program, conf);
    ck_assert_int_eq(tst_file_write(script, text, strlen(text)), 0);
    ck_assert_int_eq(chmod(script, 0755), 0);
    setenv("GUILD_NATS_SERVER", script, 1);

    broker_up();
    start_service(&g_identity, "identity");
    start_service(&g_talent, "talent");
    ck_assert_int_eq(tst_guild_signup(g_nc, "alice@example.com", false, &g_alice), 0);
    create_profile(&g_alice, g_profile);
}

/* A JSON add_skill body of exactly `size` bytes (its skill pads it). */
static char *body_of_size(size_t size)
{
    char head[160];
    int n =
        snprintf(head, sizeof head, "{\"talent_id\":\"%s\",\"level\":3,\"skill\":\"", g_profile);
    char *b = malloc(size + 1);
    ck_assert_ptr_nonnull(b);
    memcpy(b, head, (size_t)n);
    memset(b + n, 'x', size - (size_t)n - 2);
    b[size - 2] = '"';
    b[size - 1] = '}';
    b[size] = '\0';
    return b;
}

START_TEST(test_body_over_one_mib_is_invalid_request)
{
    tst_reply r;
    char *at_limit = body_of_size(MIB);
    send_raw("guild.cmd.talent.add_skill", at_limit, MIB, NULL, &r);
    /* 1 MiB is still read: it fails on the skill's length, not its size */
    assert_error(&r, 422, "validation_failed", "skill");
    tst_reply_release(&r);
    free(at_limit);

    char *over = body_of_size(MIB + 1);
    send_raw("guild.cmd.talent.add_skill", over, MIB + 1, NULL, &r);
    assert_error(&r, 400, "invalid_request", NULL);
    tst_reply_release(&r);
    free(over);

    /* Over the limit, even a body that does not decode is refused for its size. */
    char *junk = malloc(2 * MIB);
    ck_assert_ptr_nonnull(junk);
    memset(junk, 0xc1, 2 * MIB);
    send_raw("guild.cmd.talent.add_skill", junk, 2 * MIB, "", &r);
    assert_error(&r, 400, "invalid_request", NULL);
    ck_assert_str_eq(r.content_type, "application/msgpack");
    tst_reply_release(&r);
    free(junk);
}
END_TEST

/* ---- validation_failed ------------------------------------------------------- */

START_TEST(test_validation_failure_names_the_field)
{
    tst_call call = {.token = g_alice.access_token};
    struct {
        json_t *body;
        const char *field;
    } cases[] = {
        {add_skill_body(g_profile, "c", 9), "level"},
        {add_skill_body(g_profile, "c", 0), "level"},
        {json_pack("{s:s, s:i}", "talent_id", g_profile, "level", 3), "skill"},
        {json_pack("{s:s, s:s, s:s}", "talent_id", g_profile, "skill", "c", "level", "three"),
         "level"},
        {add_skill_body("not-a-uuid", "c", 3), "talent_id"},
        {json_pack("{s:s, s:s, s:i, s:s}", "talent_id", g_profile, "skill", "c", "level", 3,
                   "colour", "blue"),
         "colour"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        tst_reply r;
        send_cmd("talent", "add_skill", cases[i].body, &call, &r);
        assert_error(&r, 422, "validation_failed", cases[i].field);
        tst_reply_release(&r);
    }

    /* identity's schema too: a weak password on a public command. */
    tst_reply r;
    send_cmd("identity", "register_user",
             json_pack("{s:s, s:s, s:s}", "email", "carol@example.com", "password", "short",
                       "display_name", "Carol"),
             NULL, &r);
    assert_error(&r, 422, "validation_failed", "password");
    tst_reply_release(&r);
    send_cmd("talent", "set_rate",
             json_pack("{s:s, s:s, s:i}", "talent_id", g_profile, "currency", "EURO", "hourly_rate",
                       5000),
             &call, &r);
    assert_error(&r, 422, "validation_failed", "currency");
    tst_reply_release(&r);

    uint64_t version, head;
    profile_heads(&version, &head);
    ck_assert_uint_eq(version, 1);
}
END_TEST

/* ---- unauthenticated and forbidden ------------------------------------------- */

START_TEST(test_missing_or_bad_token_is_unauthenticated)
{
    tst_reply r;
    send_cmd("talent", "add_skill", add_skill_body(g_profile, "c", 3), NULL, &r);
    assert_error(&r, 401, "unauthenticated", NULL);
    tst_reply_release(&r);

    const char *bad[] = {"Basic YWxpY2U6c2VjcmV0", "Bearer", "Bearer not.a.jwt", "bearer x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        tst_call call = {.auth = bad[i]};
        send_cmd("talent", "add_skill", add_skill_body(g_profile, "c", 3), &call, &r);
        assert_error(&r, 401, "unauthenticated", NULL);
        tst_reply_release(&r);
    }

    /* identity's authenticated commands too */
    send_cmd("identity", "logout", json_object(), NULL, &r);
    assert_error(&r, 401, "unauthenticated", NULL);
    tst_reply_release(&r);

    /* the refresh token is not an access token */
    tst_call call = {.token = g_alice.refresh_token};
    send_cmd("talent", "add_skill", add_skill_body(g_profile, "c", 3), &call, &r);
    assert_error(&r, 401, "unauthenticated", NULL);
    tst_reply_release(&r);
}
END_TEST

START_TEST(test_acting_on_another_users_profile_is_forbidden)
{
    tst_reply r;
    tst_call bob = {.token = g_bob.access_token};
    send_cmd("talent", "add_skill", add_skill_body(g_profile, "c", 3), &bob, &r);
    assert_error(&r, 403, "forbidden", NULL);
    tst_reply_release(&r);

    /* nor may bob create a profile in alice's name */
    send_cmd("talent", "create_profile",
             json_pack("{s:s, s:s}", "user_id", g_alice.user_id, "headline", "Fake"), &bob, &r);
    assert_error(&r, 403, "forbidden", NULL);
    tst_reply_release(&r);

    /* nor update alice's account */
    send_cmd("identity", "update_user",
             json_pack("{s:s, s:s}", "user_id", g_alice.user_id, "display_name", "Mallory"), &bob,
             &r);
    assert_error(&r, 403, "forbidden", NULL);
    tst_reply_release(&r);

    uint64_t version, head;
    profile_heads(&version, &head);
    ck_assert_uint_eq(version, 1);
}
END_TEST

START_TEST(test_admin_only_identity_command_with_a_user_token_is_forbidden)
{
    tst_call call = {.token = g_alice.access_token};
    tst_reply r;
    send_cmd("identity", "define_role",
             json_pack("{s:s, s:[s]}", "name", "recruiter", "permissions", "talent:admin"), &call,
             &r);
    assert_error(&r, 403, "forbidden", NULL);
    ck_assert_ptr_nonnull(strstr(r.raw, "identity:admin"));
    tst_reply_release(&r);

    send_cmd("identity", "assign_role",
             json_pack("{s:s, s:s}", "user_id", g_alice.user_id, "role", "admin"), &call, &r);
    assert_error(&r, 403, "forbidden", NULL);
    tst_reply_release(&r);

    send_cmd("identity", "deactivate_user", json_pack("{s:s}", "user_id", g_bob.user_id), &call,
             &r);
    assert_error(&r, 403, "forbidden", NULL);
    tst_reply_release(&r);
}
END_TEST

/* ---- not_found, conflict and rule_violation ---------------------------------- */

START_TEST(test_talent_command_on_a_random_talent_id_is_not_found)
{
    char id[GUILD_UUID_STRLEN + 1];
    guild_uuid7(id);
    tst_call call = {.token = g_alice.access_token};
    const char *commands[] = {"add_skill", "remove_skill"};
    for (size_t i = 0; i < 2; i++) {
        tst_reply r;
        json_t *body = add_skill_body(id, "c", 3);
        if (i == 1)
            json_object_del(body, "level");
        send_cmd("talent", commands[i], body, &call, &r);
        assert_error(&r, 404, "not_found", "talent_id");
        tst_reply_release(&r);
    }
    tst_reply r;
    send_cmd("talent", "archive_profile", json_pack("{s:s}", "talent_id", id), &call, &r);
    assert_error(&r, 404, "not_found", "talent_id");
    tst_reply_release(&r);

    char stream[128];
    snprintf(stream, sizeof stream, "talent-%s", id);
    uint64_t version, head;
    store_heads("talent", stream, &version, &head);
    ck_assert_uint_eq(version, 0); /* refusing created nothing */
}
END_TEST

START_TEST(test_expected_version_mismatch_is_conflict)
{
    tst_reply r;
    tst_call call = {.token = g_alice.access_token, .expected = "1"};
    send_cmd("talent", "add_skill", add_skill_body(g_profile, "c", 3), &call, &r);
    assert_ok(&r);
    ck_assert_int_eq(tst_reply_int(&r, "version"), 2);
    tst_reply_release(&r);

    /* the same expectation again: the stream moved on */
    send_cmd("talent", "add_skill", add_skill_body(g_profile, "go", 2), &call, &r);
    assert_error(&r, 409, "conflict", NULL);
    tst_reply_release(&r);

    /* 0: the stream must not exist yet */
    call.expected = "0";
    send_cmd("talent", "add_skill", add_skill_body(g_profile, "go", 2), &call, &r);
    assert_error(&r, 409, "conflict", NULL);
    tst_reply_release(&r);

    /* ahead of the stream */
    call.expected = "7";
    send_cmd("talent", "add_skill", add_skill_body(g_profile, "go", 2), &call, &r);
    assert_error(&r, 409, "conflict", NULL);
    tst_reply_release(&r);

    uint64_t version, head;
    profile_heads(&version, &head);
    ck_assert_uint_eq(version, 2);

    call.expected = "2";
    send_cmd("talent", "add_skill", add_skill_body(g_profile, "go", 2), &call, &r);
    assert_ok(&r);
    ck_assert_int_eq(tst_reply_int(&r, "version"), 3);
    tst_reply_release(&r);
}
END_TEST

START_TEST(test_taken_email_is_conflict)
{
    tst_reply r;
    send_cmd("identity", "register_user",
             json_pack("{s:s, s:s, s:s}", "email", "Alice@Example.COM", "password",
                       "Another-pass-42", "display_name", "Alice 2"),
             NULL, &r);
    assert_error(&r, 409, "conflict", "email");
    tst_reply_release(&r);

    /* bob may not take alice's address either */
    tst_call bob = {.token = g_bob.access_token};
    send_cmd("identity", "update_user",
             json_pack("{s:s, s:s}", "user_id", g_bob.user_id, "email", "alice@example.com"), &bob,
             &r);
    assert_error(&r, 409, "conflict", "email");
    tst_reply_release(&r);

    /* a second profile for alice is a conflict too */
    tst_call alice = {.token = g_alice.access_token};
    send_cmd("talent", "create_profile",
             json_pack("{s:s, s:s}", "user_id", g_alice.user_id, "headline", "Again"), &alice, &r);
    assert_error(&r, 409, "conflict", "user_id");
    tst_reply_release(&r);
}
END_TEST

START_TEST(test_removing_a_skill_that_is_not_there_is_rule_violation)
{
    tst_call call = {.token = g_alice.access_token};
    tst_reply r;
    send_cmd("talent", "remove_skill",
             json_pack("{s:s, s:s}", "talent_id", g_profile, "skill", "cobol"), &call, &r);
    assert_error(&r, 422, "rule_violation", "skill");
    tst_reply_release(&r);

    /* reserving more hours than offered breaks a rule as well */
    send_cmd("talent", "reserve_capacity",
             json_pack("{s:s, s:s, s:i}", "talent_id", g_profile, "reservation_id", "r1",
                       "hours_per_week", 10),
             &call, &r);
    assert_error(&r, 422, "rule_violation", "hours_per_week");
    tst_reply_release(&r);

    uint64_t version, head;
    profile_heads(&version, &head);
    ck_assert_uint_eq(version, 1);
}
END_TEST

/* ---- unavailable ------------------------------------------------------------- */

/* identity signs alice's token and stops; talent starts afterwards, so it
 * has never fetched identity's public keys and cannot check the token. */
static void lonely_talent_setup(void)
{
    broker_up();
    start_service(&g_identity, "identity");
    ck_assert_int_eq(tst_guild_signup(g_nc, "alice@example.com", false, &g_alice), 0);
    ck_assert_int_eq(tst_guild_stop(&g_identity), 0);
    start_service(&g_talent, "talent");
}

static json_t *profile_body(const tst_user *u)
{
    return json_pack("{s:s, s:s}", "user_id", u->user_id, "headline", "Engineer");
}

START_TEST(test_token_check_while_identity_is_down_is_unavailable)
{
    tst_call call = {.token = g_alice.access_token};
    tst_reply r;
    send_cmd("talent", "create_profile", profile_body(&g_alice), &call, &r);
    assert_error(&r, 503, "unavailable", NULL);
    tst_reply_release(&r);

    /* Once identity is back, the same token is accepted. */
    ck_assert_int_eq(tst_guild_restart(&g_identity), 0);
    uint64_t deadline = now_ms() + 10000;
    for (;;) {
        send_cmd("talent", "create_profile", profile_body(&g_alice), &call, &r);
        if (r.status == 200 || now_ms() > deadline)
            break;
        tst_reply_release(&r);
        sleep_ms(200);
    }
    assert_ok(&r);
    tst_reply_release(&r);
}
END_TEST

/* While identity's keys cannot be fetched, every request with a token the
 * service cannot check answers `unavailable`, never `unauthenticated`: a
 * client keeps its good token and retries. */
START_TEST(test_valid_token_is_never_unauthenticated_while_identity_is_down)
{
    tst_call call = {.token = g_alice.access_token};
    for (int i = 0; i < 3; i++) {
        tst_reply r;
        send_cmd("talent", "create_profile", profile_body(&g_alice), &call, &r);
        ck_assert_msg(r.status == 503, "request %d while identity is down: %d %s", i + 1, r.status,
                      r.raw);
        assert_error(&r, 503, "unavailable", NULL);
        tst_reply_release(&r);
    }
}
END_TEST

/* ---- idempotency ------------------------------------------------------------- */

START_TEST(test_same_command_id_twice_answers_the_same_bytes_and_appends_once)
{
    tst_call call = {.token = g_alice.access_token, .command_id = "add-rust-1"};
    tst_reply first, again;
    send_cmd("talent", "add_skill", add_skill_body(g_profile, "rust", 4), &call, &first);
    assert_ok(&first);
    ck_assert_uint_eq(json_array_size(json_object_get(first.body, "events")), 1);
    uint64_t version, head;
    profile_heads(&version, &head);
    ck_assert_uint_eq(version, 2);

    send_cmd("talent", "add_skill", add_skill_body(g_profile, "rust", 4), &call, &again);
    assert_ok(&again);
    ck_assert_msg(first.raw_len == again.raw_len &&
                      memcmp(first.raw, again.raw, first.raw_len) == 0,
                  "replies differ:\n%s\n%s", first.raw, again.raw);
    ck_assert(json_equal(first.body, again.body));
    uint64_t version2, head2;
    profile_heads(&version2, &head2);
    ck_assert_uint_eq(version2, version);
    ck_assert_uint_eq(head2, head);
    tst_reply_release(&again);

    /* Even with another body: the first reply, nothing appended. */
    send_cmd("talent", "add_skill", add_skill_body(g_profile, "haskell", 1), &call, &again);
    assert_ok(&again);
    ck_assert(json_equal(first.body, again.body));
    tst_reply_release(&again);

    /* And in msgpack: the same reply, in msgpack. */
    call.msgpack = true;
    send_cmd("talent", "add_skill", add_skill_body(g_profile, "rust", 4), &call, &again);
    assert_ok(&again);
    ck_assert_str_eq(again.content_type, "application/msgpack");
    ck_assert(json_equal(first.body, again.body));
    tst_reply_release(&again);

    profile_heads(&version2, &head2);
    ck_assert_uint_eq(version2, version);
    ck_assert_uint_eq(head2, head);

    /* A restarted service still knows the command. */
    ck_assert_int_eq(tst_guild_restart(&g_talent), 0);
    call.msgpack = false;
    send_cmd("talent", "add_skill", add_skill_body(g_profile, "rust", 4), &call, &again);
    ck_assert_msg(first.raw_len == again.raw_len &&
                      memcmp(first.raw, again.raw, first.raw_len) == 0,
                  "reply after restart differs:\n%s\n%s", first.raw, again.raw);
    tst_reply_release(&again);
    profile_heads(&version2, &head2);
    ck_assert_uint_eq(head2, head);
    tst_reply_release(&first);
}
END_TEST

START_TEST(test_repeated_command_id_of_a_created_profile_answers_the_first_profile)
{
    tst_call call = {.token = g_bob.access_token, .command_id = "bob-profile"};
    tst_reply first, again;
    send_cmd("talent", "create_profile", profile_body(&g_bob), &call, &first);
    assert_ok(&first);
    send_cmd("talent", "create_profile", profile_body(&g_bob), &call, &again);
    ck_assert_msg(first.raw_len == again.raw_len &&
                      memcmp(first.raw, again.raw, first.raw_len) == 0,
                  "replies differ:\n%s\n%s", first.raw, again.raw);
    tst_reply_release(&again);
    tst_reply_release(&first);
}
END_TEST

/* Many clients sending one command id at once, before any of them was
 * answered: one of them is applied, all get its reply. */
typedef struct twin {
    pthread_barrier_t *start;
    natsConnection *nc;
    const char *command, *token, *command_id;
    const json_t *body;
    tst_reply reply;
} twin;

static void *send_twin(void *arg)
{
    twin *t = arg;
    tst_call call = {.token = t->token, .command_id = t->command_id};
    pthread_barrier_wait(t->start);
    tst_guild_command(t->nc, "talent", t->command, t->body, &call, &t->reply);
    return NULL;
}

static void send_at_once(const char *command, const tst_user *u, const char *command_id,
                         const json_t *body, tst_reply *first)
{
    enum { N = 10 };
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N);
    twin twins[N];
    pthread_t threads[N];
    for (int i = 0; i < N; i++) {
        twins[i] = (twin){.start = &start,
                          .command = command,
                          .token = u->access_token,
                          .command_id = command_id,
                          .body = body};
        ck_assert_int_eq(tst_nats_connect(&g_srv, &twins[i].nc), 0);
    }
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, send_twin, &twins[i]), 0);
    for (int i = 0; i < N; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < N; i++) {
        tst_reply *r = &twins[i].reply;
        ck_assert_msg(r->nats == NATS_OK, "twin %d: no reply", i);
        assert_ok(r);
        ck_assert_msg(r->raw_len == twins[0].reply.raw_len &&
                          memcmp(r->raw, twins[0].reply.raw, r->raw_len) == 0,
                      "replies differ:\n%s\n%s", twins[0].reply.raw, r->raw);
        if (i > 0)
            tst_reply_release(r);
        natsConnection_Destroy(twins[i].nc);
    }
    *first = twins[0].reply;
}

START_TEST(test_same_command_id_sent_at_once_by_many_clients_is_applied_once)
{
    uint64_t version, head;
    profile_heads(&version, &head);
    json_t *body = add_skill_body(g_profile, "erlang", 5);
    tst_reply r;
    send_at_once("add_skill", &g_alice, "erlang-at-once", body, &r);
    json_decref(body);
    ck_assert_uint_eq(json_array_size(json_object_get(r.body, "events")), 1);
    tst_reply_release(&r);
    uint64_t version2, head2;
    profile_heads(&version2, &head2);
    ck_assert_uint_eq(version2, version + 1);
    ck_assert_uint_eq(head2, head + 1);

    /* create_profile names a new aggregate per request: still one profile */
    body = profile_body(&g_bob);
    send_at_once("create_profile", &g_bob, "bob-profile-at-once", body, &r);
    json_decref(body);
    tst_reply_release(&r);
    char claim[128];
    snprintf(claim, sizeof claim, "talent-user-%s", g_bob.user_id);
    store_heads("talent", claim, &version2, &head2);
    ck_assert_uint_eq(version2, 1);
    ck_assert_uint_eq(head2, head + 3);
}
END_TEST

/* ---- racing clients ---------------------------------------------------------- */

typedef struct racer {
    pthread_barrier_t *start;
    natsConnection *nc;
    int index;
    const char *expected;
    tst_reply reply;
} racer;

static void *race(void *arg)
{
    racer *rc = arg;
    char skill[32];
    snprintf(skill, sizeof skill, "skill-%d", rc->index);
    json_t *body = add_skill_body(g_profile, skill, 1 + rc->index % 5);
    tst_call call = {.token = g_alice.access_token, .expected = rc->expected};
    pthread_barrier_wait(rc->start);
    tst_guild_command(rc->nc, "talent", "add_skill", body, &call, &rc->reply);
    json_decref(body);
    return NULL;
}

START_TEST(test_clients_racing_with_one_expected_version_only_one_wins)
{
    for (int round = 0; round < 3; round++) {
        uint64_t version, head;
        profile_heads(&version, &head);
        char expected[32];
        snprintf(expected, sizeof expected, "%" PRIu64, version);

        pthread_barrier_t start;
        pthread_barrier_init(&start, NULL, RACERS);
        racer racers[RACERS];
        pthread_t threads[RACERS];
        for (int i = 0; i < RACERS; i++) {
            racers[i] = (racer){.start = &start, .index = round * RACERS + i, .expected = expected};
            ck_assert_int_eq(tst_nats_connect(&g_srv, &racers[i].nc), 0);
        }
        for (int i = 0; i < RACERS; i++)
            ck_assert_int_eq(pthread_create(&threads[i], NULL, race, &racers[i]), 0);
        int ok = 0, conflict = 0;
        for (int i = 0; i < RACERS; i++) {
            pthread_join(threads[i], NULL);
            tst_reply *r = &racers[i].reply;
            ck_assert_msg(r->nats == NATS_OK, "racer %d: no reply", i);
            if (r->status == 200) {
                ok++;
                ck_assert_int_eq(tst_reply_int(r, "version"), (long long)version + 1);
            } else {
                assert_error(r, 409, "conflict", NULL);
                conflict++;
            }
            tst_reply_release(r);
            natsConnection_Destroy(racers[i].nc);
        }
        pthread_barrier_destroy(&start);
        ck_assert_int_eq(ok, 1);
        ck_assert_int_eq(conflict, RACERS - 1);
        uint64_t after, head_after;
        profile_heads(&after, &head_after);
        ck_assert_uint_eq(after, version + 1);
        ck_assert_uint_eq(head_after, head + 1);
    }
}
END_TEST

/* ---- encodings --------------------------------------------------------------- */

/* A reply with what differs between two aggregates blanked out: ids,
 * streams, positions and consistency tokens; the event list by its length. */
static json_t *without_ids(const json_t *reply)
{
    json_t *c = json_deep_copy(reply);
    json_object_del(c, "id");
    json_object_del(c, "stream");
    json_object_del(c, "position");
    json_object_del(c, "consistency");
    json_t *events = json_object_get(c, "events");
    if (events)
        json_object_set_new(c, "events", json_integer((json_int_t)json_array_size(events)));
    json_t *data = json_object_get(c, "data");
    if (json_object_get(data, "talent_id"))
        json_object_set_new(data, "talent_id", json_string("<id>"));
    return c;
}

static void assert_same_but_ids(const tst_reply *json, const tst_reply *mp)
{
    ck_assert_str_eq(json->content_type, "application/json");
    ck_assert_str_eq(mp->content_type, "application/msgpack");
    ck_assert_msg(mp->raw_len > 0 && (((unsigned char)mp->raw[0] & 0xf0) == 0x80 ||
                                      (unsigned char)mp->raw[0] == 0xde),
                  "the msgpack reply is not a msgpack map");
    ck_assert_int_eq(json->status, mp->status);
    json_t *a = without_ids(json->body), *b = without_ids(mp->body);
    char *ta = json_dumps(a, JSON_SORT_KEYS), *tb = json_dumps(b, JSON_SORT_KEYS);
    ck_assert_msg(json_equal(a, b), "JSON and msgpack replies differ:\n%s\n%s", ta, tb);
    free(ta);
    free(tb);
    json_decref(a);
    json_decref(b);
}

/* Two users with a profile each: one speaks JSON, the other msgpack. */
typedef struct speaker {
    tst_user user;
    tst_call call;
    char profile[64];
} speaker;

/* Sends `command` with `fields` (borrowed) and each speaker's talent_id;
 * checks both replies agree but for ids; returns the JSON one's status. */
static int send_both(speaker *json, speaker *mp, const char *command, const json_t *fields,
                     bool anonymous)
{
    speaker *who[2] = {json, mp};
    tst_reply r[2];
    for (int i = 0; i < 2; i++) {
        json_t *body = json_deep_copy(fields);
        json_object_set_new(body, "talent_id", json_string(who[i]->profile));
        tst_call call = who[i]->call;
        if (anonymous)
            call.token = NULL;
        send_cmd("talent", command, body, &call, &r[i]);
    }
    assert_same_but_ids(&r[0], &r[1]);
    int status = r[0].status;
    tst_reply_release(&r[0]);
    tst_reply_release(&r[1]);
    return status;
}

START_TEST(test_json_and_msgpack_requests_give_the_same_result)
{
    speaker carol = {.call = {0}}, bob = {.user = g_bob, .call = {.msgpack = true}};
    ck_assert_int_eq(tst_guild_signup(g_nc, "carol@example.com", false, &carol.user), 0);
    carol.call.token = carol.user.access_token;
    bob.call.token = bob.user.access_token;

    /* carol's profile, made in JSON, and bob's, in msgpack, answer the same */
    tst_reply rj, rm;
    send_cmd("talent", "create_profile", profile_body(&carol.user), &carol.call, &rj);
    send_cmd("talent", "create_profile", profile_body(&bob.user), &bob.call, &rm);
    assert_ok(&rj);
    assert_same_but_ids(&rj, &rm);
    snprintf(carol.profile, sizeof carol.profile, "%s", tst_reply_data_str(&rj, "talent_id"));
    snprintf(bob.profile, sizeof bob.profile, "%s", tst_reply_data_str(&rm, "talent_id"));
    tst_reply_release(&rj);
    tst_reply_release(&rm);

    /* the same commands on each, and the same refusals word for word */
    json_t *skill = json_pack("{s:s, s:i}", "skill", "Go", "level", 4);
    json_t *rate = json_pack("{s:s, s:i}", "currency", "EUR", "hourly_rate", 9000);
    json_t *bad_level = json_pack("{s:s, s:i}", "skill", "Go", "level", 9);
    json_t *absent = json_pack("{s:s}", "skill", "cobol");
    ck_assert_int_eq(send_both(&carol, &bob, "add_skill", skill, false), 200);
    ck_assert_int_eq(send_both(&carol, &bob, "set_rate", rate, false), 200);
    ck_assert_int_eq(send_both(&carol, &bob, "add_skill", bad_level, false), 422);
    ck_assert_int_eq(send_both(&carol, &bob, "remove_skill", absent, false), 422);
    ck_assert_int_eq(send_both(&carol, &bob, "add_skill", skill, true), 401);
    json_decref(skill);
    json_decref(rate);
    json_decref(bad_level);
    json_decref(absent);

    /* Without a Content-Type the first byte decides, and the reply follows. */
    bob.call.content_type = "";
    send_cmd("talent", "add_skill", add_skill_body(bob.profile, "C", 2), &bob.call, &rm);
    assert_ok(&rm);
    ck_assert_str_eq(rm.content_type, "application/msgpack");
    tst_reply_release(&rm);
    carol.call.content_type = "";
    send_cmd("talent", "add_skill", add_skill_body(carol.profile, "C", 2), &carol.call, &rj);
    assert_ok(&rj);
    ck_assert_str_eq(rj.content_type, "application/json");
    ck_assert_int_eq(tst_reply_int(&rj, "version"), 4);
    tst_reply_release(&rj);
}
END_TEST

/* ---- discovery --------------------------------------------------------------- */

/* Replies gathered for one discovery request, as `nats micro` does. */
typedef struct replies {
    int n;
    json_t *doc[16];
} replies;

static void gather(const char *subject, replies *out)
{
    natsInbox *ib = NULL;
    natsSubscription *sub = NULL;
    char inbox[64];
    ck_assert_int_eq(natsInbox_Create(&ib), NATS_OK);
    snprintf(inbox, sizeof inbox, "%s", (const char *)ib);
    natsInbox_Destroy(ib);
    ck_assert_int_eq(natsConnection_SubscribeSync(&sub, g_nc, inbox), NATS_OK);
    ck_assert_int_eq(natsConnection_PublishRequest(g_nc, subject, inbox, NULL, 0), NATS_OK);
    out->n = 0;
    uint64_t deadline = now_ms() + GATHER_MS;
    while (now_ms() < deadline && out->n < 16) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, sub, (int64_t)(deadline - now_ms()) + 1) != NATS_OK)
            break;
        json_t *doc = json_loadb(natsMsg_GetData(m), (size_t)natsMsg_GetDataLength(m), 0, NULL);
        ck_assert_msg(json_is_object(doc), "%s: a reply is not a JSON object", subject);
        out->doc[out->n++] = doc;
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
}

static void replies_clear(replies *r)
{
    for (int i = 0; i < r->n; i++)
        json_decref(r->doc[i]);
    r->n = 0;
}

static const char *str_at(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    ck_assert_msg(s != NULL, "\"%s\" is not a string", key);
    return s;
}

/* The commands endpoint of a talent INFO or STATS reply. */
static json_t *commands_endpoint(const json_t *doc)
{
    size_t i;
    json_t *ep;
    json_array_foreach(json_object_get(doc, "endpoints"), i, ep)
    {
        if (strcmp(str_at(ep, "subject"), "guild.cmd.talent.*") == 0)
            return ep;
    }
    ck_abort_msg("no endpoint on guild.cmd.talent.*");
    return NULL;
}

START_TEST(test_ping_lists_identity_and_talent)
{
    replies r;
    gather("$SRV.PING", &r);
    bool identity = false, talent = false;
    for (int i = 0; i < r.n; i++) {
        ck_assert_str_eq(str_at(r.doc[i], "type"), "io.nats.micro.v1.ping_response");
        const char *name = str_at(r.doc[i], "name");
        identity |= strcmp(name, "identity") == 0;
        talent |= strcmp(name, "talent") == 0;
        ck_assert_uint_gt(strlen(str_at(r.doc[i], "id")), 0);
        ck_assert_uint_gt(strlen(str_at(r.doc[i], "version")), 0);
    }
    ck_assert_int_eq(r.n, 2);
    ck_assert(identity && talent);
    replies_clear(&r);

    gather("$SRV.PING.talent", &r);
    ck_assert_int_eq(r.n, 1);
    ck_assert_str_eq(str_at(r.doc[0], "name"), "talent");
    replies_clear(&r);
}
END_TEST

START_TEST(test_info_shows_the_talent_command_endpoint_and_queue_group)
{
    replies r;
    gather("$SRV.INFO.talent", &r);
    ck_assert_int_eq(r.n, 1);
    ck_assert_str_eq(str_at(r.doc[0], "type"), "io.nats.micro.v1.info_response");
    ck_assert_str_eq(str_at(r.doc[0], "name"), "talent");
    ck_assert_str_eq(str_at(json_object_get(r.doc[0], "metadata"), "domain"), "talent");
    json_t *ep = commands_endpoint(r.doc[0]);
    ck_assert_str_eq(str_at(ep, "queue_group"), "guild.talent");
    replies_clear(&r);

    gather("$SRV.INFO.identity", &r);
    ck_assert_int_eq(r.n, 1);
    bool commands = false;
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(r.doc[0], "endpoints"), i, e)
    {
        if (strcmp(str_at(e, "subject"), "guild.cmd.identity.*") == 0) {
            commands = true;
            ck_assert_str_eq(str_at(e, "queue_group"), "guild.identity");
        }
    }
    ck_assert(commands);
    replies_clear(&r);
}
END_TEST

static void talent_counts(json_int_t *requests, json_int_t *errors, json_int_t *busy_ns)
{
    replies r;
    gather("$SRV.STATS.talent", &r);
    ck_assert_int_eq(r.n, 1);
    ck_assert_str_eq(str_at(r.doc[0], "type"), "io.nats.micro.v1.stats_response");
    json_t *ep = commands_endpoint(r.doc[0]);
    *requests = json_integer_value(json_object_get(ep, "num_requests"));
    *errors = json_integer_value(json_object_get(ep, "num_errors"));
    json_t *busy = json_object_get(json_object_get(ep, "data"), "writer_busy_ns");
    ck_assert_msg(json_is_integer(busy), "data.writer_busy_ns is missing");
    *busy_ns = json_integer_value(busy);
    replies_clear(&r);
}

START_TEST(test_stats_count_requests_and_errors)
{
    json_int_t requests0, errors0, busy0;
    uint64_t started_ms = now_ms();
    talent_counts(&requests0, &errors0, &busy0);
    ck_assert_int_ge(requests0, 1); /* the fixture made alice's profile */

    tst_call call = {.token = g_alice.access_token};
    const int oks = 4, fails = 3;
    for (int i = 0; i < oks; i++) {
        char skill[16];
        snprintf(skill, sizeof skill, "s%d", i);
        tst_reply r;
        send_cmd("talent", "add_skill", add_skill_body(g_profile, skill, 2), &call, &r);
        assert_ok(&r);
        tst_reply_release(&r);
    }
    for (int i = 0; i < fails; i++) {
        tst_reply r;
        send_cmd("talent", "add_skill", add_skill_body(g_profile, "c", 9), &call, &r);
        ck_assert_int_eq(r.status, 422);
        tst_reply_release(&r);
    }

    /* The count is taken after the reply is sent: allow it a moment. */
    json_int_t requests, errors, busy;
    uint64_t deadline = now_ms() + 5000;
    do {
        talent_counts(&requests, &errors, &busy);
    } while ((requests != requests0 + oks + fails || errors != errors0 + fails) &&
             now_ms() < deadline);
    ck_assert_int_eq(requests, requests0 + oks + fails);
    ck_assert_int_eq(errors, errors0 + fails);
    /* Four commits ran (the refused commands never reached the store),
     * each inside the time the test has taken. */
    ck_assert_int_gt(busy, busy0);
    ck_assert_int_lt(busy - busy0, (json_int_t)(now_ms() - started_ms) * 1000000);

    replies r;
    gather("$SRV.STATS.talent", &r);
    json_t *ep = commands_endpoint(r.doc[0]);
    ck_assert_ptr_nonnull(strstr(str_at(ep, "last_error"), "validation_failed"));
    replies_clear(&r);
}
END_TEST

/* ---- snapshots ------------------------------------------------------------- */

static int talent_cmd(const char *name, json_t *body, const char *expected, tst_reply *r)
{
    tst_call call = {.token = g_alice.access_token, .expected = expected};
    int rc = tst_guild_command(g_nc, "talent", name, body, &call, r);
    json_decref(body);
    return rc;
}

typedef struct last_event {
    uint64_t version;
    json_t *data;
} last_event;

static int keep_last(void *ctx, const es_record *rec)
{
    last_event *l = ctx;
    json_decref(l->data);
    l->data = NULL;
    l->version = rec->version;
    ck_assert_status(
        guild_codec_decode(rec->data, rec->data_len, GUILD_FMT_MSGPACK, &l->data, NULL), GUILD_OK);
    return 0;
}

/* Adds the skill Go to alice's profile, then sets rates until its stream
 * is at version `until` or past it; the version reached. */
static long long grow_past(long long until)
{
    tst_reply r;
    ck_assert_int_eq(
        talent_cmd("add_skill",
                   json_pack("{s:s, s:s, s:i}", "talent_id", g_profile, "skill", "Go", "level", 2),
                   NULL, &r),
        0);
    ck_assert_int_eq(r.status, 200);
    long long version = tst_reply_int(&r, "version");
    tst_reply_release(&r);
    for (int k = 0; version < until; k++) {
        ck_assert_int_eq(talent_cmd("set_rate",
                                    json_pack("{s:s, s:s, s:i}", "talent_id", g_profile, "currency",
                                              "EUR", "hourly_rate", 5000 + k),
                                    NULL, &r),
                         0);
        ck_assert_msg(r.status == 200, "set_rate: %s", r.raw);
        version = tst_reply_int(&r, "version");
        tst_reply_release(&r);
    }
    return version;
}

/* A profile past BUS_SNAPSHOT_EVERY versions gets a snapshot with the
 * events that reach it; a restarted service (its cache gone) loads the
 * snapshot and the events after it, and decides as before. */
START_TEST(test_a_long_stream_is_snapshotted_and_loads_after_a_restart)
{
    long long version = grow_past(110);
    tst_reply r;

    char dir[1024], stream[128];
    snprintf(dir, sizeof dir, "%s/talent/events", g_data);
    snprintf(stream, sizeof stream, "talent-%s", g_profile);
    es_options o = {.read_only = true};
    es_store *st = NULL;
    guild_error err = {0};
    ck_assert_status(es_store_open(dir, &o, &st, &err), GUILD_OK);
    uint64_t snap_version = 0;
    void *bytes = NULL;
    size_t len = 0;
    ck_assert_status(es_snapshot_get(st, stream, &snap_version, &bytes, &len), GUILD_OK);
    free(bytes);
    ck_assert_uint_eq(snap_version, BUS_SNAPSHOT_EVERY);

    ck_assert_int_eq(tst_guild_restart(&g_talent), 0);
    /* with the right expected version, a rate whose previous rate is the
     * last one set (kept in the state across the snapshot) */
    char expect[24];
    snprintf(expect, sizeof expect, "%lld", version);
    ck_assert_int_eq(talent_cmd("set_rate",
                                json_pack("{s:s, s:s, s:i}", "talent_id", g_profile, "currency",
                                          "USD", "hourly_rate", 7777),
                                expect, &r),
                     0);
    ck_assert_msg(r.status == 200, "set_rate after the restart: %s", r.raw);
    ck_assert_int_eq(tst_reply_int(&r, "version"), version + 1);
    tst_reply_release(&r);
    last_event last = {0};
    ck_assert_status(es_read_stream(st, stream, (uint64_t)version + 1, 1, keep_last, &last, NULL),
                     GUILD_OK);
    ck_assert_uint_eq(last.version, (uint64_t)version + 1);
    ck_assert_str_eq(json_string_value(json_object_get(last.data, "previous_currency")), "EUR");
    json_decref(last.data);
    es_store_close(st);
    /* and the skill added before the snapshot is known to it */
    ck_assert_int_eq(talent_cmd("remove_skill",
                                json_pack("{s:s, s:s}", "talent_id", g_profile, "skill", "Go"),
                                NULL, &r),
                     0);
    ck_assert_msg(r.status == 200, "remove_skill after the restart: %s", r.raw);
    tst_reply_release(&r);
    ck_assert_int_eq(talent_cmd("remove_skill",
                                json_pack("{s:s, s:s}", "talent_id", g_profile, "skill", "Go"),
                                NULL, &r),
                     0);
    ck_assert_int_eq(r.status, 422);
    tst_reply_release(&r);
}
END_TEST

/* Replaces the snapshot of `stream` by the same state without its skills,
 * with talent stopped (the store has one writer). */
static void snapshot_without_skills(const char *stream)
{
    ck_assert_int_eq(tst_guild_stop(&g_talent), 0);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/talent/events", g_data);
    es_options o = {.domain = "talent"};
    es_store *st = NULL;
    guild_error err = {0};
    ck_assert_status(es_store_open(dir, &o, &st, &err), GUILD_OK);
    uint64_t v = 0;
    void *bytes = NULL;
    size_t len = 0;
    ck_assert_status(es_snapshot_get(st, stream, &v, &bytes, &len), GUILD_OK);
    json_t *doc = NULL;
    ck_assert_status(guild_codec_decode(bytes, len, GUILD_FMT_MSGPACK, &doc, NULL), GUILD_OK);
    free(bytes);
    ck_assert_uint_gt(json_array_size(json_object_get(doc, "skills")), 0);
    json_object_set_new(doc, "skills", json_array());
    char *out = NULL;
    size_t out_len = 0;
    ck_assert_status(guild_codec_encode(doc, GUILD_FMT_MSGPACK, &out, &out_len), GUILD_OK);
    json_decref(doc);
    ck_assert_status(es_snapshot_put(st, stream, v, out, out_len), GUILD_OK);
    free(out);
    es_store_close(st);
}

/* The service decides on what the snapshot says (here a snapshot altered on
 * disk, which has lost a skill), and with GUILD_SNAPSHOTS=0 on the events
 * alone. */
START_TEST(test_the_writer_loads_from_the_snapshot_unless_snapshots_are_off)
{
    grow_past(BUS_SNAPSHOT_EVERY + 1);
    tst_reply r;
    char stream[128];
    snprintf(stream, sizeof stream, "talent-%s", g_profile);
    snapshot_without_skills(stream);

    setenv("GUILD_SNAPSHOTS", "0", 1);
    ck_assert_int_eq(tst_guild_restart(&g_talent), 0);
    unsetenv("GUILD_SNAPSHOTS");
    json_t *again = json_pack("{s:s, s:s, s:i}", "talent_id", g_profile, "skill", "Go", "level", 2);
    /* adding a skill it holds at that level changes nothing: no event */
    ck_assert_int_eq(talent_cmd("add_skill", json_deep_copy(again), NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(json_array_size(json_object_get(r.body, "events")) == 0,
                  "with snapshots off, Go should still be there: %s", r.raw);
    tst_reply_release(&r);

    ck_assert_int_eq(tst_guild_restart(&g_talent), 0);
    ck_assert_int_eq(talent_cmd("add_skill", again, NULL, &r), 0);
    ck_assert_int_eq(r.status, 200);
    ck_assert_msg(json_array_size(json_object_get(r.body, "events")) == 1,
                  "from the altered snapshot, Go should be missing: %s", r.raw);
    tst_reply_release(&r);
}
END_TEST

/* ---- suite ------------------------------------------------------------------- */

static TCase *tcase(const char *name, void (*setup)(void))
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_add_checked_fixture(tc, setup, world_teardown);
    tcase_set_timeout(tc, 120);
    return tc;
}

static Suite *commands_suite(void)
{
    Suite *s = suite_create("bus/commands");

    TCase *tc = tcase("invalid_request", world_setup);
    tcase_add_test(tc, test_undecodable_body_is_invalid_request);
    tcase_add_test(tc, test_body_that_is_not_a_map_is_invalid_request);
    tcase_add_test(tc, test_unknown_command_is_invalid_request);
    tcase_add_test(tc, test_malformed_command_id_is_invalid_request);
    tcase_add_test(tc, test_malformed_expected_version_is_invalid_request);
    suite_add_tcase(s, tc);

    tc = tcase("oversize", big_broker_setup);
    tcase_add_test(tc, test_body_over_one_mib_is_invalid_request);
    suite_add_tcase(s, tc);

    tc = tcase("refusals", world_setup);
    tcase_add_test(tc, test_validation_failure_names_the_field);
    tcase_add_test(tc, test_missing_or_bad_token_is_unauthenticated);
    tcase_add_test(tc, test_acting_on_another_users_profile_is_forbidden);
    tcase_add_test(tc, test_admin_only_identity_command_with_a_user_token_is_forbidden);
    tcase_add_test(tc, test_talent_command_on_a_random_talent_id_is_not_found);
    tcase_add_test(tc, test_expected_version_mismatch_is_conflict);
    tcase_add_test(tc, test_taken_email_is_conflict);
    tcase_add_test(tc, test_removing_a_skill_that_is_not_there_is_rule_violation);
    suite_add_tcase(s, tc);

    tc = tcase("unavailable", lonely_talent_setup);
    tcase_add_test(tc, test_token_check_while_identity_is_down_is_unavailable);
    suite_add_tcase(s, tc);

    /* A valid token with identity down: unavailable, never unauthenticated. */
    tc = tcase("identity_down", lonely_talent_setup);
    tcase_add_test(tc, test_valid_token_is_never_unauthenticated_while_identity_is_down);
    suite_add_tcase(s, tc);

    tc = tcase("idempotency", world_setup);
    tcase_add_test(tc, test_same_command_id_twice_answers_the_same_bytes_and_appends_once);
    tcase_add_test(tc, test_repeated_command_id_of_a_created_profile_answers_the_first_profile);
    tcase_add_test(tc, test_same_command_id_sent_at_once_by_many_clients_is_applied_once);
    tcase_add_test(tc, test_clients_racing_with_one_expected_version_only_one_wins);
    suite_add_tcase(s, tc);

    tc = tcase("encodings", world_setup);
    tcase_add_test(tc, test_json_and_msgpack_requests_give_the_same_result);
    suite_add_tcase(s, tc);

    tc = tcase("snapshots", world_setup);
    tcase_add_test(tc, test_a_long_stream_is_snapshotted_and_loads_after_a_restart);
    tcase_add_test(tc, test_the_writer_loads_from_the_snapshot_unless_snapshots_are_off);
    suite_add_tcase(s, tc);

    tc = tcase("discovery", world_setup);
    tcase_add_test(tc, test_ping_lists_identity_and_talent);
    tcase_add_test(tc, test_info_shows_the_talent_command_endpoint_and_queue_group);
    tcase_add_test(tc, test_stats_count_requests_and_errors);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tst_run_suite(commands_suite());
}
