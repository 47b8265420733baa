/*
 * test_auth.c — authentication and authorization end to end: tokens that
 * identity hands out, talent checking them with identity's public keys,
 * sessions ended and refreshed, lockouts, and the first administrator
 * granting roles. Real nats-server, real `guild serve identity` and `guild
 * serve talent` processes, requests over NATS as CONTRACT.md has them.
 *
 * Tokens a test needs that no command hands out (expired ones, forged ones)
 * are signed here with identity's own key, read from
 * <data>/identity/keys/signing.key, so that the expiry or the forgery is the
 * only thing wrong with them.
 *
 * Sections: fixture and helpers; tokens; sessions; lockout; administration;
 * suite.
 */
#include "common/jwt.h"
#include "common/uuid.h"

#include "tests/support/check_util.h"
#include "tests/support/guild_proc.h"
#include "tests/support/nats_server.h"
#include "tests/support/tmpdir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define REVOCATION_WAIT_MS 5000

static tst_nats g_srv;
static natsConnection *g_nc;
static char *g_data;
static tst_guild g_identity, g_talent;
static tst_user g_alice, g_bob;
static char g_profile[64]; /* alice's talent profile */

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

static void start_service(tst_guild *g, const char *domain)
{
    ck_assert_msg(tst_guild_start(g, domain, g_data, g_srv.url) == 0,
                  "guild serve %s did not start", domain);
}

static void send_cmd(const char *domain, const char *name, json_t *body, const tst_call *call,
                     tst_reply *r)
{
    tst_guild_command(g_nc, domain, name, body, call, r);
    json_decref(body);
    ck_assert_msg(r->nats == NATS_OK, "%s.%s: no reply (%s)", domain, name,
                  natsStatus_GetText(r->nats));
}

static void assert_status(const tst_reply *r, int status, const char *code)
{
    ck_assert_msg(r->status == status, "Guild-Status %d, want %d: %s", r->status, status, r->raw);
    ck_assert_str_eq(tst_reply_code(r), code);
}

static json_t *add_skill_body(const char *skill, int level)
{
    return json_pack("{s:s, s:s, s:i}", "talent_id", g_profile, "skill", skill, "level", level);
}

/* What talent answers to an add_skill on alice's profile with `token`. */
static int talent_status(const char *token, const char *skill)
{
    tst_call call = {.token = token};
    tst_reply r;
    send_cmd("talent", "add_skill", add_skill_body(skill, 3), &call, &r);
    int status = r.status;
    tst_reply_release(&r);
    return status;
}

/* What identity answers to update_user of u (the token's own user) with
 * `token`: a command any authenticated user may send about herself. */
static int identity_status(const tst_user *u, const char *token)
{
    tst_call call = {.token = token};
    tst_reply r;
    send_cmd("identity", "update_user",
             json_pack("{s:s, s:s}", "user_id", u->user_id, "display_name", "Renamed"), &call, &r);
    int status = r.status;
    tst_reply_release(&r);
    return status;
}

static void create_profile(const tst_user *u, char out[64])
{
    tst_call call = {.token = u->access_token};
    tst_reply r;
    send_cmd("talent", "create_profile",
             json_pack("{s:s, s:s}", "user_id", u->user_id, "headline", "Engineer"), &call, &r);
    assert_status(&r, 200, "ok");
    snprintf(out, 64, "%s", tst_reply_data_str(&r, "talent_id"));
    tst_reply_release(&r);
}

static void broker_up(void)
{
    ck_assert_int_eq(tst_nats_start(&g_srv), 0);
    ck_assert_int_eq(tst_nats_connect(&g_srv, &g_nc), 0);
    g_data = tst_dir_new("data");
}

static void users_up(void)
{
    ck_assert_int_eq(tst_guild_signup(g_nc, "alice@example.com", false, &g_alice), 0);
    ck_assert_int_eq(tst_guild_signup(g_nc, "bob@example.com", false, &g_bob), 0);
    create_profile(&g_alice, g_profile);
}

/* identity first, as `guild up` starts them. */
static void world_setup(void)
{
    broker_up();
    start_service(&g_identity, "identity");
    start_service(&g_talent, "talent");
    users_up();
}

static void world_teardown(void)
{
    tst_guild *all[] = {&g_talent, &g_identity};
    int stopped = tst_guild_stop_all(all, 2);
    natsConnection_Destroy(g_nc);
    g_nc = NULL;
    tst_nats_stop(&g_srv);
    if (g_data) {
        tst_dir_remove(g_data);
        free(g_data);
        g_data = NULL;
    }
    ck_assert_msg(stopped == 0, "a service did not stop cleanly on SIGTERM");
}

/* identity's signing key and its key id. */
static void identity_key(unsigned char sk[crypto_sign_SECRETKEYBYTES],
                         char kid[GUILD_KEY_ID_LEN + 1])
{
    char path[1024];
    snprintf(path, sizeof path, "%s/identity/keys/signing.key", g_data);
    size_t len = 0;
    unsigned char *bytes = tst_file_read(path, &len);
    ck_assert_msg(bytes != NULL, "cannot read %s", path);
    ck_assert_uint_eq(len, crypto_sign_SECRETKEYBYTES);
    memcpy(sk, bytes, len);
    free(bytes);
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    crypto_sign_ed25519_sk_to_pk(pk, sk);
    guild_key_id(pk, kid);
}

/* An access token for u, as login makes them, with the given times;
 * signed with sk under kid (identity's key when both are NULL). malloc'd. */
static char *craft_token(const tst_user *u, json_int_t iat, json_int_t exp, const unsigned char *sk,
                         const char *kid)
{
    unsigned char own_sk[crypto_sign_SECRETKEYBYTES];
    char own_kid[GUILD_KEY_ID_LEN + 1];
    if (!sk) {
        identity_key(own_sk, own_kid);
        sk = own_sk;
        kid = own_kid;
    }
    json_t *claims = tst_jwt_claims(u->access_token); /* keeps sub, sid, perms, roles */
    ck_assert_ptr_nonnull(claims);
    json_object_set_new(claims, "iat", json_integer(iat));
    json_object_set_new(claims, "exp", json_integer(exp));
    char *token = NULL;
    ck_assert_status(guild_jwt_sign(claims, kid, sk, &token), GUILD_OK);
    json_decref(claims);
    return token;
}

static bool array_has(const json_t *array, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(array, i, v)
    {
        if (json_is_string(v) && strcmp(json_string_value(v), s) == 0)
            return true;
    }
    return false;
}

/* ---- tokens ------------------------------------------------------------------ */

START_TEST(test_register_and_login_give_tokens)
{
    ck_assert(guild_uuid_valid(g_alice.user_id, (unsigned)strlen(g_alice.user_id)));
    json_t *claims = tst_jwt_claims(g_alice.access_token);
    ck_assert_ptr_nonnull(claims);
    ck_assert_str_eq(json_string_value(json_object_get(claims, "sub")), g_alice.user_id);
    ck_assert_str_eq(json_string_value(json_object_get(claims, "typ")), "access");
    ck_assert_uint_eq(json_string_length(json_object_get(claims, "sid")), 32);
    json_int_t iat = json_integer_value(json_object_get(claims, "iat"));
    json_int_t exp = json_integer_value(json_object_get(claims, "exp"));
    ck_assert_int_eq(exp - iat, 900);
    ck_assert_int_le(llabs((long long)iat - (long long)time(NULL)), 60);
    ck_assert(array_has(json_object_get(claims, "roles"), "user"));
    ck_assert_uint_eq(json_array_size(json_object_get(claims, "perms")), 0);
    json_decref(claims);
    /* <user id>.<session id>.<secret> */
    ck_assert_int_eq(strncmp(g_alice.refresh_token, g_alice.user_id, strlen(g_alice.user_id)), 0);

    /* a login answers its tokens in data, with their lifetime */
    json_t *body = json_pack("{s:s, s:s}", "email", g_bob.email, "password", g_bob.password);
    tst_reply r;
    send_cmd("identity", "login", body, NULL, &r);
    assert_status(&r, 200, "ok");
    json_t *data = json_object_get(r.body, "data");
    ck_assert_int_eq(json_integer_value(json_object_get(data, "expires_in")), 900);
    ck_assert_str_eq(tst_reply_data_str(&r, "user_id"), g_bob.user_id);
    ck_assert_str_ne(tst_reply_data_str(&r, "access_token"), g_bob.access_token);
    ck_assert_str_ne(tst_reply_data_str(&r, "refresh_token"), g_bob.refresh_token);
    tst_reply_release(&r);

    /* An unknown address and a wrong password read the same. */
    send_cmd("identity", "login",
             json_pack("{s:s, s:s}", "email", "nobody@example.com", "password", "whatever-1"), NULL,
             &r);
    assert_status(&r, 401, "unauthenticated");
    char unknown[256];
    snprintf(unknown, sizeof unknown, "%s",
             json_string_value(json_object_get(json_object_get(r.body, "error"), "message")));
    tst_reply_release(&r);
    send_cmd("identity", "login",
             json_pack("{s:s, s:s}", "email", g_bob.email, "password", "wrong-password-1"), NULL,
             &r);
    assert_status(&r, 401, "unauthenticated");
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(r.body, "error"), "message")), unknown);
    tst_reply_release(&r);
}
END_TEST

START_TEST(test_valid_token_is_accepted_by_talent)
{
    ck_assert_int_eq(talent_status(g_alice.access_token, "c"), 200);
    ck_assert_int_eq(identity_status(&g_alice, g_alice.access_token), 200);

    /* A token signed here with identity's key is as good as its own: the
     * crafted tokens of the next tests fail for what is wrong with them. */
    json_int_t now = (json_int_t)time(NULL);
    char *token = craft_token(&g_alice, now, now + 300, NULL, NULL);
    ck_assert_int_eq(talent_status(token, "go"), 200);
    ck_assert_int_eq(identity_status(&g_alice, token), 200);
    free(token);
}
END_TEST

START_TEST(test_expired_token_is_unauthenticated)
{
    json_int_t now = (json_int_t)time(NULL);
    char *token = craft_token(&g_alice, now - 1000, now - 100, NULL, NULL);
    tst_call call = {.token = token};
    tst_reply r;
    send_cmd("talent", "add_skill", add_skill_body("c", 3), &call, &r);
    assert_status(&r, 401, "unauthenticated");
    ck_assert_ptr_nonnull(strstr(r.raw, "expired"));
    tst_reply_release(&r);
    ck_assert_int_eq(identity_status(&g_alice, token), 401);

    /* one second past its expiry is past it */
    free(token);
    token = craft_token(&g_alice, now - 900, now - 1, NULL, NULL);
    ck_assert_int_eq(talent_status(token, "c"), 401);
    free(token);
}
END_TEST

/* Flips one character at index i of token: a letter changes case, anything
 * else becomes 'A'. malloc'd. */
static char *flip(const char *token, size_t i)
{
    char *t = strdup(token);
    ck_assert_ptr_nonnull(t);
    char c = t[i];
    if (c >= 'a' && c <= 'z')
        t[i] = (char)(c - 'a' + 'A');
    else if (c >= 'A' && c <= 'Z')
        t[i] = (char)(c - 'A' + 'a');
    else
        t[i] = c == 'A' ? 'B' : 'A';
    return t;
}

START_TEST(test_tampered_token_is_unauthenticated)
{
    const char *tok = g_alice.access_token;
    const char *dot1 = strchr(tok, '.'), *dot2 = strrchr(tok, '.');
    size_t payload = (size_t)(dot1 - tok) + 1, payload_len = (size_t)(dot2 - dot1) - 1;

    /* a character in the middle of the claims, and one near their start */
    size_t spots[] = {payload + payload_len / 2, payload + 3, (size_t)(dot2 - tok) + 5};
    for (size_t i = 0; i < sizeof spots / sizeof *spots; i++) {
        char *bad = flip(tok, spots[i]);
        ck_assert_str_ne(bad, tok);
        ck_assert_int_eq(talent_status(bad, "c"), 401);
        ck_assert_int_eq(identity_status(&g_alice, bad), 401);
        free(bad);
    }

    /* Claims swapped for bob's under alice's signature. */
    const char *b1 = strchr(g_bob.access_token, '.'), *b2 = strrchr(g_bob.access_token, '.');
    char spliced[8192];
    snprintf(spliced, sizeof spliced, "%.*s%.*s%s", (int)(dot1 - tok), tok, (int)(b2 - b1), b1,
             dot2);
    ck_assert_int_eq(talent_status(spliced, "c"), 401);

    /* Signed by another key under identity's key id, or under its own. */
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_keypair(pk, sk);
    unsigned char real_sk[crypto_sign_SECRETKEYBYTES];
    char real_kid[GUILD_KEY_ID_LEN + 1], own_kid[GUILD_KEY_ID_LEN + 1];
    identity_key(real_sk, real_kid);
    guild_key_id(pk, own_kid);
    json_int_t now = (json_int_t)time(NULL);
    char *forged = craft_token(&g_alice, now, now + 300, sk, real_kid);
    ck_assert_int_eq(talent_status(forged, "c"), 401);
    ck_assert_int_eq(identity_status(&g_alice, forged), 401);
    free(forged);
    forged = craft_token(&g_alice, now, now + 300, sk, own_kid);
    ck_assert_int_eq(talent_status(forged, "c"), 401);
    ck_assert_int_eq(identity_status(&g_alice, forged), 401);
    free(forged);

    /* and the real token still works */
    ck_assert_int_eq(talent_status(tok, "c"), 200);
}
END_TEST

START_TEST(test_missing_permission_is_forbidden)
{
    tst_call alice = {.token = g_alice.access_token};
    tst_reply r;
    send_cmd("identity", "define_role",
             json_pack("{s:s, s:[s]}", "name", "recruiter", "permissions", "talent:admin"), &alice,
             &r);
    assert_status(&r, 403, "forbidden");
    tst_reply_release(&r);
    send_cmd("identity", "register_client",
             json_pack("{s:s, s:[s]}", "client_id", "saga-runner", "permissions", "talent:*"),
             &alice, &r);
    assert_status(&r, 403, "forbidden");
    tst_reply_release(&r);
    send_cmd("identity", "assign_role",
             json_pack("{s:s, s:s}", "user_id", g_alice.user_id, "role", "admin"), &alice, &r);
    assert_status(&r, 403, "forbidden");
    tst_reply_release(&r);

    /* talent:admin is what acting on another's profile takes */
    ck_assert_int_eq(talent_status(g_bob.access_token, "c"), 403);
}
END_TEST

/* ---- sessions ---------------------------------------------------------------- */

/* Polls talent with `token` until it answers `want` or the wait is over;
 * returns the last status. */
static int talent_status_within(const char *token, int want, unsigned wait_ms)
{
    uint64_t deadline = now_ms() + wait_ms;
    int status;
    for (;;) {
        status = talent_status(token, "c");
        if (status == want || now_ms() >= deadline)
            return status;
        sleep_ms(50);
    }
}

static void logout_is_seen_everywhere(void)
{
    tst_user second = g_alice;
    ck_assert_int_eq(tst_guild_login(g_nc, &second), 0); /* a second session of alice's */
    ck_assert_int_eq(talent_status(g_alice.access_token, "c"), 200);
    ck_assert_int_eq(talent_status(second.access_token, "c"), 200);

    tst_call call = {.token = g_alice.access_token};
    tst_reply r;
    send_cmd("identity", "logout", json_object(), &call, &r);
    assert_status(&r, 200, "ok");
    ck_assert_uint_eq(json_array_size(json_object_get(r.body, "events")), 1);
    tst_reply_release(&r);

    /* identity refuses the token at once ... */
    ck_assert_int_eq(identity_status(&g_alice, g_alice.access_token), 401);
    send_cmd("identity", "logout", json_object(), &call, &r);
    assert_status(&r, 401, "unauthenticated");
    ck_assert_ptr_nonnull(strstr(r.raw, "revoked"));
    tst_reply_release(&r);

    /* ... talent once the revocation reached it through JetStream */
    ck_assert_int_eq(talent_status_within(g_alice.access_token, 401, REVOCATION_WAIT_MS), 401);
    tst_call again = {.token = g_alice.access_token};
    send_cmd("talent", "add_skill", add_skill_body("c", 3), &again, &r);
    assert_status(&r, 401, "unauthenticated");
    ck_assert_ptr_nonnull(strstr(r.raw, "revoked"));
    tst_reply_release(&r);

    /* the other session lives on */
    ck_assert_int_eq(talent_status(second.access_token, "c"), 200);
    ck_assert_int_eq(identity_status(&g_alice, second.access_token), 200);

    /* and the ended session cannot be refreshed either */
    send_cmd("identity", "refresh_session",
             json_pack("{s:s}", "refresh_token", g_alice.refresh_token), NULL, &r);
    assert_status(&r, 401, "unauthenticated");
    tst_reply_release(&r);
}

START_TEST(test_logout_revokes_the_token_in_identity_and_then_in_talent)
{
    logout_is_seen_everywhere();
}
END_TEST

/* A talent service that started before identity had ever run: the stream
 * of identity's events did not exist yet when it began. */
static void talent_first_setup(void)
{
    broker_up();
    start_service(&g_talent, "talent");
    start_service(&g_identity, "identity");
    users_up();
}

/* A service that starts before GUILD_IDENTITY exists keeps trying to follow
 * it, so it learns of logouts that happen later. */
START_TEST(test_talent_started_before_identity_still_learns_of_logouts)
{
    logout_is_seen_everywhere();
}
END_TEST

static void logout_alice(void)
{
    tst_call call = {.token = g_alice.access_token};
    tst_reply r;
    send_cmd("identity", "logout", json_object(), &call, &r);
    assert_status(&r, 200, "ok");
    tst_reply_release(&r);
    ck_assert_int_eq(identity_status(&g_alice, g_alice.access_token), 401);
    ck_assert_int_eq(talent_status_within(g_alice.access_token, 401, REVOCATION_WAIT_MS), 401);
}

/* Also across a restart of talent: it reads the revocations of the last
 * minutes back from the stream. */
START_TEST(test_restarted_talent_still_refuses_a_logged_out_token)
{
    logout_alice();
    ck_assert_int_eq(tst_guild_restart(&g_talent), 0);
    ck_assert_int_eq(talent_status_within(g_alice.access_token, 401, REVOCATION_WAIT_MS), 401);
    ck_assert_int_eq(talent_status(g_alice.access_token, "c"), 401);
}
END_TEST

/* Identity too reads the ended sessions of the last minutes back from
 * GUILD_IDENTITY when it restarts, so a logged-out token stays refused. */
START_TEST(test_restarted_identity_still_refuses_a_logged_out_token)
{
    logout_alice();
    ck_assert_int_eq(tst_guild_restart(&g_identity), 0);
    ck_assert_int_eq(identity_status(&g_alice, g_alice.access_token), 401);
}
END_TEST

START_TEST(test_refresh_rotates_the_refresh_token_and_refuses_the_old_one)
{
    tst_reply r;
    send_cmd("identity", "refresh_session",
             json_pack("{s:s}", "refresh_token", g_alice.refresh_token), NULL, &r);
    assert_status(&r, 200, "ok");
    const char *access = tst_reply_data_str(&r, "access_token");
    const char *refresh = tst_reply_data_str(&r, "refresh_token");
    ck_assert_ptr_nonnull(access);
    ck_assert_ptr_nonnull(refresh);
    ck_assert_str_ne(refresh, g_alice.refresh_token);
    tst_user rotated = g_alice;
    snprintf(rotated.access_token, sizeof rotated.access_token, "%s", access);
    snprintf(rotated.refresh_token, sizeof rotated.refresh_token, "%s", refresh);
    tst_reply_release(&r);

    /* same session, new access token that works */
    json_t *old_claims = tst_jwt_claims(g_alice.access_token);
    json_t *new_claims = tst_jwt_claims(rotated.access_token);
    ck_assert_str_eq(json_string_value(json_object_get(new_claims, "sid")),
                     json_string_value(json_object_get(old_claims, "sid")));
    json_decref(old_claims);
    json_decref(new_claims);
    ck_assert_int_eq(talent_status(rotated.access_token, "c"), 200);

    /* the old refresh token is refused */
    send_cmd("identity", "refresh_session",
             json_pack("{s:s}", "refresh_token", g_alice.refresh_token), NULL, &r);
    assert_status(&r, 401, "unauthenticated");
    tst_reply_release(&r);

    /* Presenting it shows a copy leaked: the session ends for the new one
     * too, and its access token is refused in identity and in talent. */
    send_cmd("identity", "refresh_session",
             json_pack("{s:s}", "refresh_token", rotated.refresh_token), NULL, &r);
    assert_status(&r, 401, "unauthenticated");
    tst_reply_release(&r);
    ck_assert_int_eq(identity_status(&g_alice, rotated.access_token), 401);
    ck_assert_int_eq(talent_status_within(rotated.access_token, 401, REVOCATION_WAIT_MS), 401);

    /* a malformed refresh token is refused the same way */
    send_cmd("identity", "refresh_session", json_pack("{s:s}", "refresh_token", "nonsense"), NULL,
             &r);
    assert_status(&r, 401, "unauthenticated");
    tst_reply_release(&r);
}
END_TEST

/* ---- lockout ----------------------------------------------------------------- */

START_TEST(test_five_wrong_passwords_lock_the_account)
{
    tst_user carol;
    ck_assert_int_eq(tst_guild_signup(g_nc, "carol@example.com", false, &carol), 0);
    for (int i = 0; i < 5; i++) {
        tst_reply r;
        send_cmd("identity", "login",
                 json_pack("{s:s, s:s}", "email", carol.email, "password", "Not-her-password-1"),
                 NULL, &r);
        assert_status(&r, 401, "unauthenticated");
        tst_reply_release(&r);
    }
    tst_reply r;
    send_cmd("identity", "login",
             json_pack("{s:s, s:s}", "email", carol.email, "password", carol.password), NULL, &r);
    assert_status(&r, 401, "unauthenticated");
    ck_assert_ptr_nonnull(strstr(r.raw, "locked"));
    ck_assert_ptr_null(tst_reply_data_str(&r, "access_token"));
    tst_reply_release(&r);

    /* The lock is in the store: a restarted identity still refuses. */
    ck_assert_int_eq(tst_guild_restart(&g_identity), 0);
    send_cmd("identity", "login",
             json_pack("{s:s, s:s}", "email", carol.email, "password", carol.password), NULL, &r);
    assert_status(&r, 401, "unauthenticated");
    tst_reply_release(&r);

    /* Others are not locked out, and four failures do not lock. */
    for (int i = 0; i < 4; i++) {
        send_cmd("identity", "login",
                 json_pack("{s:s, s:s}", "email", g_bob.email, "password", "Not-his-password-1"),
                 NULL, &r);
        assert_status(&r, 401, "unauthenticated");
        tst_reply_release(&r);
    }
    ck_assert_int_eq(tst_guild_login(g_nc, &g_bob), 0);
}
END_TEST

/* ---- administration ---------------------------------------------------------- */

START_TEST(test_bootstrap_admin_works_once)
{
    tst_user root;
    ck_assert_int_eq(tst_guild_signup(g_nc, "root@example.com", true, &root), 0);
    json_t *claims = tst_jwt_claims(root.access_token);
    ck_assert(array_has(json_object_get(claims, "roles"), "admin"));
    ck_assert(array_has(json_object_get(claims, "perms"), "*"));
    json_decref(claims);

    tst_reply r;
    send_cmd("identity", "bootstrap_admin",
             json_pack("{s:s, s:s, s:s}", "email", "root2@example.com", "password",
                       TST_GUILD_PASSWORD, "display_name", "Second"),
             NULL, &r);
    assert_status(&r, 403, "forbidden");
    tst_reply_release(&r);

    /* not with the first one's address either, nor after a restart */
    ck_assert_int_eq(tst_guild_restart(&g_identity), 0);
    send_cmd("identity", "bootstrap_admin",
             json_pack("{s:s, s:s, s:s}", "email", "root3@example.com", "password",
                       TST_GUILD_PASSWORD, "display_name", "Third"),
             NULL, &r);
    assert_status(&r, 403, "forbidden");
    tst_reply_release(&r);

    /* the refused ones cannot log in: they were never made */
    tst_user ghost = root;
    snprintf(ghost.email, sizeof ghost.email, "root2@example.com");
    send_cmd("identity", "login",
             json_pack("{s:s, s:s}", "email", ghost.email, "password", TST_GUILD_PASSWORD), NULL,
             &r);
    assert_status(&r, 401, "unauthenticated");
    tst_reply_release(&r);
}
END_TEST

START_TEST(test_admin_grants_a_role_and_the_next_login_carries_its_permission)
{
    tst_user root;
    ck_assert_int_eq(tst_guild_signup(g_nc, "root@example.com", true, &root), 0);
    tst_call admin = {.token = root.access_token};
    tst_reply r;
    send_cmd("identity", "define_role",
             json_pack("{s:s, s:[s]}", "name", "recruiter", "permissions", "talent:admin"), &admin,
             &r);
    assert_status(&r, 200, "ok");
    tst_reply_release(&r);
    send_cmd("identity", "assign_role",
             json_pack("{s:s, s:s}", "user_id", g_bob.user_id, "role", "recruiter"), &admin, &r);
    assert_status(&r, 200, "ok");
    tst_reply_release(&r);

    /* an unknown role is not found */
    send_cmd("identity", "assign_role",
             json_pack("{s:s, s:s}", "user_id", g_bob.user_id, "role", "wizard"), &admin, &r);
    assert_status(&r, 404, "not_found");
    tst_reply_release(&r);

    /* bob's token from before still lacks it */
    ck_assert_int_eq(talent_status(g_bob.access_token, "c"), 403);
    ck_assert_int_eq(tst_guild_login(g_nc, &g_bob), 0);
    json_t *claims = tst_jwt_claims(g_bob.access_token);
    ck_assert(array_has(json_object_get(claims, "roles"), "recruiter"));
    ck_assert(array_has(json_object_get(claims, "perms"), "talent:admin"));
    json_decref(claims);
    /* and with it he may act on alice's profile */
    ck_assert_int_eq(talent_status(g_bob.access_token, "c"), 200);

    /* revoking the role takes the permission out of his next token */
    send_cmd("identity", "revoke_role",
             json_pack("{s:s, s:s}", "user_id", g_bob.user_id, "role", "recruiter"), &admin, &r);
    assert_status(&r, 200, "ok");
    tst_reply_release(&r);
    ck_assert_int_eq(tst_guild_login(g_nc, &g_bob), 0);
    claims = tst_jwt_claims(g_bob.access_token);
    ck_assert(!array_has(json_object_get(claims, "perms"), "talent:admin"));
    json_decref(claims);
    ck_assert_int_eq(talent_status(g_bob.access_token, "go"), 403);
}
END_TEST

/* ---- key rotation ------------------------------------------------------------ */

/* Services ask identity for its keys every GUILD_KEY_REFRESH_S seconds;
 * one second here, so that a rotation is seen within the test's patience. */
static void rotation_setup(void)
{
    setenv("GUILD_KEY_REFRESH_S", "1", 1);
    world_setup();
}

/* Replaces identity's signing key as an operator does: a new file (here:
 * none, so identity makes one) and a restart. Returns the new key id. */
static void rotate_identity_key(char kid[GUILD_KEY_ID_LEN + 1])
{
    unsigned char sk[crypto_sign_SECRETKEYBYTES];
    char old[GUILD_KEY_ID_LEN + 1];
    identity_key(sk, old);
    char path[1024];
    snprintf(path, sizeof path, "%s/identity/keys/signing.key", g_data);
    ck_assert_int_eq(unlink(path), 0);
    ck_assert_int_eq(tst_guild_restart(&g_identity), 0);
    identity_key(sk, kid);
    ck_assert_str_ne(kid, old);
}

START_TEST(test_a_rotated_key_is_dropped_everywhere)
{
    const char *old_token = g_alice.access_token;
    ck_assert_int_eq(talent_status(old_token, "c"), 200); /* talent holds the old key */
    char kid[GUILD_KEY_ID_LEN + 1];
    rotate_identity_key(kid);

    /* identity refuses the old key's tokens at once, and talent within
     * about a refresh, without having seen a token of the new key */
    ck_assert_int_eq(identity_status(&g_alice, old_token), 401);
    ck_assert_int_eq(talent_status_within(old_token, 401, 5000), 401);
    tst_call call = {.token = old_token};
    tst_reply r;
    send_cmd("talent", "add_skill", add_skill_body("go", 2), &call, &r);
    assert_status(&r, 401, "unauthenticated");
    ck_assert_msg(strstr(r.raw, "unknown key id"), "%s", r.raw);
    tst_reply_release(&r);

    /* a refresh gives a token of the new key, which both accept */
    send_cmd("identity", "refresh_session",
             json_pack("{s:s}", "refresh_token", g_alice.refresh_token), NULL, &r);
    assert_status(&r, 200, "ok");
    char fresh[4096];
    snprintf(fresh, sizeof fresh, "%s", tst_reply_data_str(&r, "access_token"));
    tst_reply_release(&r);
    json_t *header = tst_jwt_header(fresh);
    ck_assert_str_eq(json_string_value(json_object_get(header, "kid")), kid);
    json_decref(header);
    ck_assert_int_eq(talent_status(fresh, "go"), 200);
    ck_assert_int_eq(identity_status(&g_alice, fresh), 200);
}
END_TEST

/* More rotations than a keyring holds keys: talent keeps identity's
 * current set, not every key it ever saw. */
START_TEST(test_talent_follows_more_rotations_than_a_keyring_holds)
{
    for (int i = 0; i < GUILD_JWT_MAX_KEYS + 2; i++) {
        char kid[GUILD_KEY_ID_LEN + 1];
        rotate_identity_key(kid);
        ck_assert_int_eq(tst_guild_login(g_nc, &g_alice), 0);
        ck_assert_msg(talent_status_within(g_alice.access_token, 200, 3000) == 200,
                      "talent refused a token of identity's key after rotation %d", i + 1);
    }
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

static Suite *auth_suite(void)
{
    Suite *s = suite_create("bus/auth");

    TCase *tc = tcase("tokens", world_setup);
    tcase_add_test(tc, test_register_and_login_give_tokens);
    tcase_add_test(tc, test_valid_token_is_accepted_by_talent);
    tcase_add_test(tc, test_expired_token_is_unauthenticated);
    tcase_add_test(tc, test_tampered_token_is_unauthenticated);
    tcase_add_test(tc, test_missing_permission_is_forbidden);
    suite_add_tcase(s, tc);

    tc = tcase("sessions", world_setup);
    tcase_add_test(tc, test_logout_revokes_the_token_in_identity_and_then_in_talent);
    tcase_add_test(tc, test_restarted_talent_still_refuses_a_logged_out_token);
    tcase_add_test(tc, test_refresh_rotates_the_refresh_token_and_refuses_the_old_one);
    tcase_add_test(tc, test_five_wrong_passwords_lock_the_account);
    suite_add_tcase(s, tc);

    /* Revocation survives restarts and any start order. */
    tc = tcase("revocation_after_restart", world_setup);
    tcase_add_test(tc, test_restarted_identity_still_refuses_a_logged_out_token);
    suite_add_tcase(s, tc);
    tc = tcase("revocation_start_order", talent_first_setup);
    tcase_add_test(tc, test_talent_started_before_identity_still_learns_of_logouts);
    suite_add_tcase(s, tc);

    tc = tcase("rotation", rotation_setup);
    tcase_add_test(tc, test_a_rotated_key_is_dropped_everywhere);
    tcase_add_test(tc, test_talent_follows_more_rotations_than_a_keyring_holds);
    suite_add_tcase(s, tc);

    tc = tcase("administration", world_setup);
    tcase_add_test(tc, test_bootstrap_admin_works_once);
    tcase_add_test(tc, test_admin_grants_a_role_and_the_next_login_carries_its_permission);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tst_run_suite(auth_suite());
}
