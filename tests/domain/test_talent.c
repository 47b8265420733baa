/*
 * test_talent.c — the rules of the talent domain, driven through decide and
 * evolve directly: no broker, no disk.
 *
 * A fake dom_env answers stream versions from a small table; the events a
 * command emits are applied the way the runtime would (the target's onto
 * the profile state, the others counted in the table), so each test reads
 * as: given these commands, when this one, then these events or this error.
 *
 * Sections: fixtures; validation and tables; who may act; one section per
 * command; evolve; a whole lifecycle.
 */
#include "domain/registry.h"
#include "domain/talent/talent.h"

#include "tests/support/check_util.h"

#include <stdlib.h>
#include <string.h>

#define OWNER "0193a5b0-0000-7000-8000-000000000001"
#define OTHER "0193a5b0-0000-7000-8000-000000000002"
#define ADMIN "0193a5b0-0000-7000-8000-000000000003"
#define TALENT "0193a5b0-0000-7000-8000-0000000000aa"
#define NOW 1764000000000000000LL
#define CLAIM_OF(user) "talent-user-" user

/* ---- fixtures ------------------------------------------------------------------ */

static json_t *g_admin_perms, *g_star_perms;
static dom_actor g_owner = {.user_id = OWNER, .session_id = ""};
static dom_actor g_other = {.user_id = OTHER, .session_id = ""};
static dom_actor g_admin = {.user_id = ADMIN, .session_id = ""};
static dom_actor g_star = {.user_id = ADMIN, .session_id = "", .service = true};
static dom_actor g_anonymous = {.user_id = "", .session_id = ""};

static struct {
    char stream[128];
    uint64_t version;
} g_streams[8];
static size_t g_nstreams;

static void *g_state; /* the profile TALENT */
static uint64_t g_version;

static uint64_t fake_stream_version(void *self, const char *stream)
{
    ck_assert_ptr_eq(self, &g_streams);
    for (size_t i = 0; i < g_nstreams; i++)
        if (strcmp(g_streams[i].stream, stream) == 0)
            return g_streams[i].version;
    return 0;
}

static guild_status fake_load(void *self, const dom_aggregate *agg, const char *stream,
                              void **state, uint64_t *version)
{
    (void)self, (void)agg, (void)state, (void)version;
    ck_abort_msg("talent does not load other streams (asked for %s)", stream);
    return GUILD_INTERNAL;
}

static const dom_env g_env = {
    .self = &g_streams, .stream_version = fake_stream_version, .load = fake_load};

static void stream_bump(const char *stream)
{
    for (size_t i = 0; i < g_nstreams; i++)
        if (strcmp(g_streams[i].stream, stream) == 0) {
            g_streams[i].version++;
            return;
        }
    ck_assert_uint_lt(g_nstreams, sizeof g_streams / sizeof g_streams[0]);
    snprintf(g_streams[g_nstreams].stream, sizeof g_streams[0].stream, "%s", stream);
    g_streams[g_nstreams++].version = 1;
}

static void reset_state(void)
{
    if (g_state)
        talent_profile_agg.destroy(g_state);
    g_state = talent_profile_agg.create();
    g_version = 0;
}

static void setup(void)
{
    g_admin_perms = json_pack("[s]", TALENT_PERM_ADMIN);
    g_star_perms = json_pack("[s]", "talent:*");
    g_admin.permissions = g_admin_perms;
    g_star.permissions = g_star_perms;
    g_nstreams = 0;
    reset_state();
}

static void teardown(void)
{
    talent_profile_agg.destroy(g_state);
    g_state = NULL;
    json_decref(g_admin_perms);
    json_decref(g_star_perms);
}

/* The time of the event at version v: apart enough to tell events apart. */
static int64_t time_at(uint64_t v)
{
    return NOW + (int64_t)v * 1000;
}

/* Runs `command` with `body` (stolen) as `actor` against the profile. The
 * body is validated first and names TALENT unless it names another
 * talent_id. The outcome is in *ctx; dom_ctx_release it. */
static guild_status run(dom_ctx *ctx, const dom_actor *actor, const char *command, json_t *body)
{
    const dom_command *c = dom_command_find(&dom_talent, command);
    ck_assert_msg(c != NULL, "no command %s", command);
    ck_assert_ptr_nonnull(body);
    if (c->id_field && !json_object_get(body, c->id_field))
        json_object_set_new(body, c->id_field, json_string(TALENT));
    guild_error err;
    guild_status s = dom_validate(c->fields, body, &err);
    ck_assert_msg(s == GUILD_OK, "%s: %s (%s)", command, err.message, err.field);
    dom_ctx_init(ctx);
    ctx->domain = "talent";
    ctx->actor = actor;
    ctx->now = time_at(g_version + 1);
    ctx->aggregate_id = TALENT;
    ctx->stream = "talent-" TALENT;
    ctx->version = g_version;
    ctx->env = &g_env;
    s = c->decide(g_state, body, ctx);
    json_decref(body);
    return s;
}

/* Commits what a decide emitted, as the runtime would. */
static void apply(const dom_ctx *ctx)
{
    size_t i;
    json_t *ev;
    json_array_foreach(ctx->events, i, ev)
    {
        const char *stream = json_string_value(json_object_get(ev, "stream"));
        if (stream) {
            stream_bump(stream);
            continue;
        }
        g_version++;
        dom_event_meta meta = {
            .id = "e", .actor = "a", .version = g_version, .time = time_at(g_version)};
        ck_assert_status(talent_profile_agg.evolve(g_state, dom_str(ev, "type", ""),
                                                   json_object_get(ev, "data"), &meta),
                         GUILD_OK);
    }
}

/* Given: runs a command that must succeed and commits its events. */
static void given(const dom_actor *actor, const char *command, json_t *body)
{
    dom_ctx ctx;
    ck_assert_status(run(&ctx, actor, command, body), GUILD_OK);
    apply(&ctx);
    dom_ctx_release(&ctx);
}

static void given_profile(void)
{
    given(&g_owner, "create_profile",
          json_pack("{s:s, s:s, s:s}", "user_id", OWNER, "headline", "C programmer", "location",
                    "Lyon"));
}

/* Asserts that decide emitted exactly `n` events. */
static void assert_count(const dom_ctx *ctx, size_t n)
{
    ck_assert_msg(json_array_size(ctx->events) == n, "want %zu events, got %s", n,
                  json_dumps(ctx->events, JSON_COMPACT));
}

/* Asserts event i: its stream (NULL: the target's), type and data (stolen). */
static void assert_event(const dom_ctx *ctx, size_t i, const char *stream, const char *type,
                         json_t *data)
{
    json_t *ev = json_array_get(ctx->events, i);
    ck_assert_ptr_nonnull(ev);
    ck_assert_ptr_nonnull(data);
    const char *got_stream = dom_str(ev, "stream", NULL);
    if (stream)
        ck_assert_pstr_eq(got_stream, stream);
    else
        ck_assert_ptr_null(got_stream);
    ck_assert_str_eq(dom_str(ev, "type", ""), type);
    char *got = json_dumps(json_object_get(ev, "data"), JSON_COMPACT | JSON_SORT_KEYS);
    char *want = json_dumps(data, JSON_COMPACT | JSON_SORT_KEYS);
    ck_assert_msg(json_equal(json_object_get(ev, "data"), data), "%s data: got %s, want %s", type,
                  got, want);
    free(got);
    free(want);
    json_decref(data);
}

/* Runs a command that must emit exactly one event, checks it, commits it. */
static void expect_event(const dom_actor *actor, const char *command, json_t *body,
                         const char *type, json_t *data)
{
    dom_ctx ctx;
    ck_assert_status(run(&ctx, actor, command, body), GUILD_OK);
    assert_count(&ctx, 1);
    assert_event(&ctx, 0, NULL, type, data);
    apply(&ctx);
    dom_ctx_release(&ctx);
}

/* Runs a command that must succeed and emit nothing. */
static void expect_nothing(const dom_actor *actor, const char *command, json_t *body)
{
    dom_ctx ctx;
    ck_assert_status(run(&ctx, actor, command, body), GUILD_OK);
    assert_count(&ctx, 0);
    dom_ctx_release(&ctx);
}

/* Runs a command that must be refused with `status` naming `field`. */
static void expect_refused(const dom_actor *actor, const char *command, json_t *body,
                           guild_status status, const char *field)
{
    dom_ctx ctx;
    ck_assert_status(run(&ctx, actor, command, body), status);
    ck_assert_status(ctx.error.status, status);
    ck_assert_str_eq(ctx.error.field, field);
    ck_assert_str_ne(ctx.error.message, "");
    assert_count(&ctx, 0);
    dom_ctx_release(&ctx);
}

static const talent_profile *profile(void)
{
    return g_state;
}

/* ---- validation and tables ----------------------------------------------------- */

/* Validates body (stolen) against a command; returns the status, *field the field. */
static guild_status validate(const char *command, json_t *body, char field[64])
{
    const dom_command *c = dom_command_find(&dom_talent, command);
    ck_assert_ptr_nonnull(c);
    guild_error err;
    guild_error_clear(&err);
    guild_status s = dom_validate(c->fields, body, &err);
    snprintf(field, 64, "%s", err.field);
    json_decref(body);
    return s;
}

static void assert_invalid(const char *command, json_t *body, const char *field)
{
    char got[64];
    ck_assert_status(validate(command, body, got), GUILD_VALIDATION_FAILED);
    ck_assert_str_eq(got, field);
}

START_TEST(test_validate_good_bodies_pass)
{
    static const char *const bodies[][2] = {
        {"create_profile", "{\"user_id\": \"" OWNER "\", \"headline\": \"h\", \"bio\": \"a\\nb\","
                           " \"location\": \"\", \"timezone\": \"Europe/Paris\"}"},
        {"update_profile", "{\"talent_id\": \"" TALENT "\", \"bio\": \"\"}"},
        {"add_skill", "{\"talent_id\": \"" TALENT "\", \"skill\": \"C\", \"level\": 5, "
                      "\"years\": 70}"},
        {"remove_skill", "{\"talent_id\": \"" TALENT "\", \"skill\": \"C\"}"},
        {"add_certification", "{\"talent_id\": \"" TALENT "\", \"name\": \"n\", \"issuer\": "
                              "\"i\", \"issued_on\": \"2024-02-29\", \"expires_on\": "
                              "\"2027-01-01T00:00:00Z\"}"},
        {"remove_certification", "{\"talent_id\": \"" TALENT "\", \"name\": \"n\"}"},
        {"set_rate", "{\"talent_id\": \"" TALENT "\", \"currency\": \"EUR\", \"hourly_rate\": "
                     "100000000}"},
        {"set_availability", "{\"talent_id\": \"" TALENT "\", \"hours_per_week\": 0}"},
        {"reserve_capacity", "{\"talent_id\": \"" TALENT "\", \"reservation_id\": \"r\", "
                             "\"hours_per_week\": 80}"},
        {"release_capacity", "{\"talent_id\": \"" TALENT "\", \"reservation_id\": \"r\"}"},
        {"archive_profile", "{\"talent_id\": \"" TALENT "\"}"},
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char field[64];
        json_t *body = json_loads(bodies[i][1], 0, NULL);
        ck_assert_msg(body != NULL, "bad test body %zu", i);
        guild_status s = validate(bodies[i][0], body, field);
        ck_assert_msg(s == GUILD_OK, "%s refused (%s)", bodies[i][0], field);
    }
}
END_TEST

START_TEST(test_validate_level_out_of_range_refused)
{
    assert_invalid("add_skill",
                   json_pack("{s:s, s:s, s:i}", "talent_id", TALENT, "skill", "C", "level", 0),
                   "level");
    assert_invalid("add_skill",
                   json_pack("{s:s, s:s, s:i}", "talent_id", TALENT, "skill", "C", "level", 6),
                   "level");
    assert_invalid("add_skill",
                   json_pack("{s:s, s:s, s:s}", "talent_id", TALENT, "skill", "C", "level", "5"),
                   "level");
    assert_invalid("add_skill",
                   json_pack("{s:s, s:s, s:i, s:i}", "talent_id", TALENT, "skill", "C", "level", 3,
                             "years", 71),
                   "years");
}
END_TEST

START_TEST(test_validate_currency_not_iso4217_refused)
{
    assert_invalid(
        "set_rate",
        json_pack("{s:s, s:s, s:i}", "talent_id", TALENT, "currency", "EURO", "hourly_rate", 100),
        "currency");
    assert_invalid(
        "set_rate",
        json_pack("{s:s, s:s, s:i}", "talent_id", TALENT, "currency", "eur", "hourly_rate", 100),
        "currency");
    assert_invalid(
        "set_rate",
        json_pack("{s:s, s:s, s:i}", "talent_id", TALENT, "currency", "EUR", "hourly_rate", 0),
        "hourly_rate");
}
END_TEST

START_TEST(test_validate_unknown_field_refused)
{
    assert_invalid("add_skill",
                   json_pack("{s:s, s:s, s:i, s:b}", "talent_id", TALENT, "skill", "C", "level", 3,
                             "verified", 1),
                   "verified");
    assert_invalid(
        "create_profile",
        json_pack("{s:s, s:s, s:s}", "user_id", OWNER, "headline", "h", "talent_id", TALENT),
        "talent_id");
}
END_TEST

START_TEST(test_validate_limits_refused)
{
    assert_invalid("create_profile", json_pack("{s:s}", "headline", "h"), "user_id");
    assert_invalid("create_profile", json_pack("{s:s, s:s}", "user_id", OWNER, "headline", ""),
                   "headline");
    assert_invalid("create_profile",
                   json_pack("{s:s, s:s}", "user_id", "0193A5B0", "headline", "h"), "user_id");
    assert_invalid("remove_skill", json_pack("{s:s}", "skill", "C"), "talent_id");
    assert_invalid("add_certification",
                   json_pack("{s:s, s:s, s:s, s:s}", "talent_id", TALENT, "name", "n", "issuer",
                             "i", "issued_on", "2023-02-29"),
                   "issued_on");
    assert_invalid("set_availability",
                   json_pack("{s:s, s:i}", "talent_id", TALENT, "hours_per_week", 81),
                   "hours_per_week");
    assert_invalid("reserve_capacity",
                   json_pack("{s:s, s:s, s:i}", "talent_id", TALENT, "reservation_id", "r",
                             "hours_per_week", 0),
                   "hours_per_week");
    char long_id[130];
    memset(long_id, 'r', 129);
    long_id[129] = '\0';
    assert_invalid("release_capacity",
                   json_pack("{s:s, s:s}", "talent_id", TALENT, "reservation_id", long_id),
                   "reservation_id");
}
END_TEST

START_TEST(test_tables_describe_every_command_and_event)
{
    ck_assert_str_eq(dom_talent.name, "talent");
    size_t n = 0;
    for (const dom_command *c = dom_talent.commands; c->name; c++, n++) {
        ck_assert_ptr_eq(c->aggregate, &talent_profile_agg);
        ck_assert_ptr_null(c->permission);
        ck_assert(!c->is_public);
        ck_assert(c->decide != NULL);
        ck_assert_ptr_nonnull(c->summary);
        if (strcmp(c->name, "create_profile") == 0) {
            ck_assert(c->creates);
            ck_assert_ptr_null(c->id_field);
        } else {
            ck_assert(!c->creates);
            ck_assert_pstr_eq(c->id_field, "talent_id");
        }
    }
    ck_assert_uint_eq(n, 11);
    static const char *const types[] = {
        TALENT_EV_PROFILE_CREATED,     TALENT_EV_PROFILE_CLAIMED,       TALENT_EV_PROFILE_UPDATED,
        TALENT_EV_SKILL_ADDED,         TALENT_EV_SKILL_UPDATED,         TALENT_EV_SKILL_REMOVED,
        TALENT_EV_CERTIFICATION_ADDED, TALENT_EV_CERTIFICATION_REMOVED, TALENT_EV_RATE_SET,
        TALENT_EV_AVAILABILITY_SET,    TALENT_EV_CAPACITY_RESERVED,     TALENT_EV_CAPACITY_RELEASED,
        TALENT_EV_PROFILE_ARCHIVED};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        const dom_event_doc *e = dom_talent.events;
        while (e->type && strcmp(e->type, types[i]) != 0)
            e++;
        ck_assert_msg(e->type != NULL, "event %s not documented", types[i]);
        ck_assert_uint_eq(e->schema, 1);
        ck_assert_ptr_nonnull(e->fields);
    }
    /* Its queries are the talent read model's (projections/talent). */
    ck_assert_ptr_null(dom_talent.queries);
    ck_assert_str_eq(talent_user_agg.stream_prefix, "user-");
    ck_assert_str_eq(talent_profile_agg.stream_prefix, "");
}
END_TEST

/* ---- who may act ----------------------------------------------------------------- */

START_TEST(test_create_profile_for_another_user_forbidden)
{
    expect_refused(&g_other, "create_profile",
                   json_pack("{s:s, s:s}", "user_id", OWNER, "headline", "h"), GUILD_FORBIDDEN,
                   "user_id");
    expect_refused(&g_anonymous, "create_profile",
                   json_pack("{s:s, s:s}", "user_id", OWNER, "headline", "h"), GUILD_FORBIDDEN,
                   "user_id");
}
END_TEST

START_TEST(test_create_profile_by_admin_for_another_user)
{
    dom_ctx ctx;
    ck_assert_status(run(&ctx, &g_admin, "create_profile",
                         json_pack("{s:s, s:s}", "user_id", OWNER, "headline", "h")),
                     GUILD_OK);
    assert_count(&ctx, 2);
    dom_ctx_release(&ctx);
}
END_TEST

START_TEST(test_command_by_non_owner_forbidden)
{
    given_profile();
    expect_refused(&g_other, "add_skill", json_pack("{s:s, s:i}", "skill", "C", "level", 3),
                   GUILD_FORBIDDEN, "");
    expect_refused(&g_anonymous, "archive_profile", json_object(), GUILD_FORBIDDEN, "");
    /* a permission of another domain grants nothing here */
    json_t *perms = json_pack("[s]", "project:admin");
    dom_actor project_admin = {.user_id = OTHER, .session_id = "", .permissions = perms};
    expect_refused(&project_admin, "set_availability", json_pack("{s:i}", "hours_per_week", 10),
                   GUILD_FORBIDDEN, "");
    json_decref(perms);
}
END_TEST

START_TEST(test_command_by_admin_allowed)
{
    given_profile();
    expect_event(&g_admin, "add_skill", json_pack("{s:s, s:i}", "skill", "C", "level", 3),
                 TALENT_EV_SKILL_ADDED, json_pack("{s:s, s:i}", "skill", "C", "level", 3));
    expect_event(&g_star, "set_availability", json_pack("{s:i}", "hours_per_week", 20),
                 TALENT_EV_AVAILABILITY_SET, json_pack("{s:i}", "hours_per_week", 20));
}
END_TEST

START_TEST(test_command_on_missing_profile_not_found)
{
    expect_refused(&g_owner, "update_profile", json_pack("{s:s}", "headline", "h"), GUILD_NOT_FOUND,
                   "talent_id");
    expect_refused(&g_admin, "release_capacity", json_pack("{s:s}", "reservation_id", "r"),
                   GUILD_NOT_FOUND, "talent_id");
}
END_TEST

START_TEST(test_command_on_archived_profile_refused)
{
    given_profile();
    given(&g_owner, "archive_profile", json_object());
    expect_refused(&g_owner, "add_skill", json_pack("{s:s, s:i}", "skill", "C", "level", 3),
                   GUILD_RULE_VIOLATION, "talent_id");
    expect_refused(&g_admin, "update_profile", json_pack("{s:s}", "bio", "b"), GUILD_RULE_VIOLATION,
                   "talent_id");
    expect_refused(&g_owner, "archive_profile", json_object(), GUILD_RULE_VIOLATION, "talent_id");
    /* ownership is checked first: a stranger learns nothing */
    expect_refused(&g_other, "archive_profile", json_object(), GUILD_FORBIDDEN, "");
}
END_TEST

START_TEST(test_release_capacity_on_archived_profile_still_releases)
{
    given_profile();
    given(&g_owner, "set_availability", json_pack("{s:i}", "hours_per_week", 40));
    given(&g_owner, "reserve_capacity",
          json_pack("{s:s, s:i}", "reservation_id", "r", "hours_per_week", 10));
    given(&g_owner, "archive_profile", json_object());
    dom_ctx ctx;
    ck_assert_status(
        run(&ctx, &g_owner, "release_capacity", json_pack("{s:s}", "reservation_id", "r")),
        GUILD_OK);
    assert_count(&ctx, 1);
    assert_event(&ctx, 0, NULL, TALENT_EV_CAPACITY_RELEASED,
                 json_pack("{s:s, s:i}", "reservation_id", "r", "hours_per_week", 10));
    dom_ctx_release(&ctx);
}
END_TEST

/* ---- create_profile ---------------------------------------------------------------- */

START_TEST(test_create_profile_emits_profile_and_claim)
{
    dom_ctx ctx;
    ck_assert_status(run(&ctx, &g_owner, "create_profile",
                         json_pack("{s:s, s:s, s:s}", "user_id", OWNER, "headline", "C programmer",
                                   "timezone", "Europe/Paris")),
                     GUILD_OK);
    assert_count(&ctx, 2);
    assert_event(&ctx, 0, NULL, TALENT_EV_PROFILE_CREATED,
                 json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "talent_id", TALENT, "user_id", OWNER,
                           "headline", "C programmer", "bio", "", "location", "", "timezone",
                           "Europe/Paris"));
    assert_event(&ctx, 1, CLAIM_OF(OWNER), TALENT_EV_PROFILE_CLAIMED,
                 json_pack("{s:s}", "talent_id", TALENT));
    json_t *reply = json_pack("{s:s}", "talent_id", TALENT);
    ck_assert(json_equal(ctx.reply, reply));
    json_decref(reply);
    apply(&ctx);
    dom_ctx_release(&ctx);

    ck_assert(talent_profile_exists(profile()));
    ck_assert(!talent_profile_archived(profile()));
    ck_assert_str_eq(talent_profile_user_id(profile()), OWNER);
    ck_assert_uint_eq(fake_stream_version(&g_streams, CLAIM_OF(OWNER)), 1);
}
END_TEST

START_TEST(test_create_profile_when_user_has_one_conflict)
{
    given_profile(); /* claims OWNER's stream */
    reset_state();   /* a fresh id for the second attempt */
    expect_refused(&g_owner, "create_profile",
                   json_pack("{s:s, s:s}", "user_id", OWNER, "headline", "again"), GUILD_CONFLICT,
                   "user_id");
    /* another user is free to create theirs */
    dom_ctx ctx;
    ck_assert_status(run(&ctx, &g_other, "create_profile",
                         json_pack("{s:s, s:s}", "user_id", OTHER, "headline", "h")),
                     GUILD_OK);
    assert_event(&ctx, 1, CLAIM_OF(OTHER), TALENT_EV_PROFILE_CLAIMED,
                 json_pack("{s:s}", "talent_id", TALENT));
    dom_ctx_release(&ctx);
}
END_TEST

/* ---- update_profile ------------------------------------------------------------------ */

START_TEST(test_update_profile_emits_only_fields_that_change)
{
    given_profile(); /* headline "C programmer", location "Lyon" */
    expect_event(&g_owner, "update_profile",
                 json_pack("{s:s, s:s, s:s}", "headline", "C programmer", "bio", "Twenty years",
                           "location", ""),
                 TALENT_EV_PROFILE_UPDATED,
                 json_pack("{s:s, s:s}", "bio", "Twenty years", "location", ""));
    json_t *p = talent_profile_to_json(profile());
    ck_assert_str_eq(dom_str(p, "bio", NULL), "Twenty years");
    ck_assert_str_eq(dom_str(p, "location", NULL), "");
    ck_assert_str_eq(dom_str(p, "headline", NULL), "C programmer");
    json_decref(p);
}
END_TEST

START_TEST(test_update_profile_with_no_field_refused)
{
    given_profile();
    expect_refused(&g_owner, "update_profile", json_object(), GUILD_VALIDATION_FAILED, "");
    expect_refused(&g_owner, "update_profile", json_pack("{s:n}", "bio"), GUILD_VALIDATION_FAILED,
                   "");
}
END_TEST

START_TEST(test_update_profile_without_change_emits_nothing)
{
    given_profile();
    expect_nothing(&g_owner, "update_profile",
                   json_pack("{s:s, s:s}", "headline", "C programmer", "location", "Lyon"));
}
END_TEST

/* ---- skills ------------------------------------------------------------------------------ */

START_TEST(test_add_skill_new_emits_skill_added)
{
    given_profile();
    expect_event(&g_owner, "add_skill",
                 json_pack("{s:s, s:i, s:i}", "skill", "Rust", "level", 4, "years", 3),
                 TALENT_EV_SKILL_ADDED,
                 json_pack("{s:s, s:i, s:i}", "skill", "Rust", "level", 4, "years", 3));
    expect_event(&g_owner, "add_skill", json_pack("{s:s, s:i}", "skill", "C", "level", 5),
                 TALENT_EV_SKILL_ADDED, json_pack("{s:s, s:i}", "skill", "C", "level", 5));
    ck_assert_uint_eq(talent_profile_skill_count(profile()), 2);
    const talent_skill *s = talent_profile_skill_at(profile(), 0);
    ck_assert_str_eq(s->name, "Rust");
    ck_assert_int_eq(s->level, 4);
    ck_assert_int_eq(s->years, 3);
    s = talent_profile_skill_find(profile(), "c");
    ck_assert_ptr_nonnull(s);
    ck_assert_int_eq(s->years, -1);
}
END_TEST

START_TEST(test_add_skill_existing_with_other_values_emits_skill_updated)
{
    given_profile();
    given(&g_owner, "add_skill",
          json_pack("{s:s, s:i, s:i}", "skill", "Rust", "level", 4, "years", 3));
    /* matched case-insensitively; the event keeps the first spelling */
    expect_event(&g_owner, "add_skill", json_pack("{s:s, s:i}", "skill", "rust", "level", 5),
                 TALENT_EV_SKILL_UPDATED,
                 json_pack("{s:s, s:i, s:i}", "skill", "Rust", "level", 5, "years", 3));
    expect_event(&g_owner, "add_skill",
                 json_pack("{s:s, s:i, s:i}", "skill", "Rust", "level", 5, "years", 4),
                 TALENT_EV_SKILL_UPDATED,
                 json_pack("{s:s, s:i, s:i}", "skill", "Rust", "level", 5, "years", 4));
    ck_assert_uint_eq(talent_profile_skill_count(profile()), 1);
    ck_assert_int_eq(talent_profile_skill_find(profile(), "RUST")->years, 4);
}
END_TEST

START_TEST(test_add_skill_same_values_emits_nothing)
{
    given_profile();
    given(&g_owner, "add_skill",
          json_pack("{s:s, s:i, s:i}", "skill", "Rust", "level", 4, "years", 3));
    expect_nothing(&g_owner, "add_skill",
                   json_pack("{s:s, s:i, s:i}", "skill", "Rust", "level", 4, "years", 3));
    expect_nothing(&g_owner, "add_skill", json_pack("{s:s, s:i}", "skill", "Rust", "level", 4));
}
END_TEST

START_TEST(test_add_skill_beyond_limit_refused)
{
    given_profile();
    for (int i = 0; i < 100; i++) {
        char name[16];
        snprintf(name, sizeof name, "skill%d", i);
        given(&g_owner, "add_skill", json_pack("{s:s, s:i}", "skill", name, "level", 1));
    }
    expect_refused(&g_owner, "add_skill", json_pack("{s:s, s:i}", "skill", "one more", "level", 1),
                   GUILD_RULE_VIOLATION, "skill");
    /* changing one it has is still fine */
    expect_event(&g_owner, "add_skill", json_pack("{s:s, s:i}", "skill", "skill7", "level", 2),
                 TALENT_EV_SKILL_UPDATED, json_pack("{s:s, s:i}", "skill", "skill7", "level", 2));
}
END_TEST

START_TEST(test_remove_skill_present_emits_skill_removed)
{
    given_profile();
    given(&g_owner, "add_skill", json_pack("{s:s, s:i}", "skill", "Go", "level", 2));
    given(&g_owner, "add_skill", json_pack("{s:s, s:i}", "skill", "C", "level", 5));
    expect_event(&g_owner, "remove_skill", json_pack("{s:s}", "skill", "GO"),
                 TALENT_EV_SKILL_REMOVED, json_pack("{s:s}", "skill", "Go"));
    ck_assert_uint_eq(talent_profile_skill_count(profile()), 1);
    ck_assert_str_eq(talent_profile_skill_at(profile(), 0)->name, "C");
}
END_TEST

START_TEST(test_remove_skill_absent_refused)
{
    given_profile();
    expect_refused(&g_owner, "remove_skill", json_pack("{s:s}", "skill", "Go"),
                   GUILD_RULE_VIOLATION, "skill");
}
END_TEST

/* ---- certifications ----------------------------------------------------------------------- */

START_TEST(test_add_certification_emits_certification_added)
{
    given_profile();
    expect_event(&g_owner, "add_certification",
                 json_pack("{s:s, s:s, s:s, s:s}", "name", "CKA", "issuer", "CNCF", "issued_on",
                           "2024-03-01", "expires_on", "2027-03-01"),
                 TALENT_EV_CERTIFICATION_ADDED,
                 json_pack("{s:s, s:s, s:s, s:s}", "name", "CKA", "issuer", "CNCF", "issued_on",
                           "2024-03-01", "expires_on", "2027-03-01"));
    expect_event(
        &g_owner, "add_certification",
        json_pack("{s:s, s:s, s:s}", "name", "OSCP", "issuer", "OffSec", "issued_on", "2020-01-01"),
        TALENT_EV_CERTIFICATION_ADDED,
        json_pack("{s:s, s:s, s:s}", "name", "OSCP", "issuer", "OffSec", "issued_on",
                  "2020-01-01"));
    json_t *p = talent_profile_to_json(profile());
    json_t *want = json_pack("[{s:s, s:s, s:s, s:s}, {s:s, s:s, s:s}]", "name", "CKA", "issuer",
                             "CNCF", "issued_on", "2024-03-01", "expires_on", "2027-03-01", "name",
                             "OSCP", "issuer", "OffSec", "issued_on", "2020-01-01");
    ck_assert(json_equal(json_object_get(p, "certifications"), want));
    json_decref(want);
    json_decref(p);
}
END_TEST

START_TEST(test_add_certification_expiring_before_issue_refused)
{
    given_profile();
    expect_refused(&g_owner, "add_certification",
                   json_pack("{s:s, s:s, s:s, s:s}", "name", "CKA", "issuer", "CNCF", "issued_on",
                             "2024-03-01", "expires_on", "2024-02-29"),
                   GUILD_VALIDATION_FAILED, "expires_on");
    expect_refused(&g_owner, "add_certification",
                   json_pack("{s:s, s:s, s:s, s:s}", "name", "CKA", "issuer", "CNCF", "issued_on",
                             "2024-03-01", "expires_on", "2024-03-01"),
                   GUILD_VALIDATION_FAILED, "expires_on");
    /* instants, not strings: 01:00+02:00 is 23:00 the day before in UTC */
    expect_refused(&g_owner, "add_certification",
                   json_pack("{s:s, s:s, s:s, s:s}", "name", "CKA", "issuer", "CNCF", "issued_on",
                             "2024-03-01", "expires_on", "2024-03-01T01:00:00+02:00"),
                   GUILD_VALIDATION_FAILED, "expires_on");
    expect_event(&g_owner, "add_certification",
                 json_pack("{s:s, s:s, s:s, s:s}", "name", "CKA", "issuer", "CNCF", "issued_on",
                           "2024-03-01T10:00:00Z", "expires_on", "2024-03-01T10:00:00.5Z"),
                 TALENT_EV_CERTIFICATION_ADDED,
                 json_pack("{s:s, s:s, s:s, s:s}", "name", "CKA", "issuer", "CNCF", "issued_on",
                           "2024-03-01T10:00:00Z", "expires_on", "2024-03-01T10:00:00.5Z"));
}
END_TEST

START_TEST(test_add_certification_same_name_conflict)
{
    given_profile();
    given(&g_owner, "add_certification",
          json_pack("{s:s, s:s, s:s}", "name", "CKA", "issuer", "CNCF", "issued_on", "2024-03-01"));
    expect_refused(
        &g_owner, "add_certification",
        json_pack("{s:s, s:s, s:s}", "name", "cka", "issuer", "Other", "issued_on", "2025-01-01"),
        GUILD_CONFLICT, "name");
}
END_TEST

START_TEST(test_remove_certification)
{
    given_profile();
    given(&g_owner, "add_certification",
          json_pack("{s:s, s:s, s:s}", "name", "CKA", "issuer", "CNCF", "issued_on", "2024-03-01"));
    expect_refused(&g_owner, "remove_certification", json_pack("{s:s}", "name", "CKAD"),
                   GUILD_RULE_VIOLATION, "name");
    expect_event(&g_owner, "remove_certification", json_pack("{s:s}", "name", "CKA"),
                 TALENT_EV_CERTIFICATION_REMOVED, json_pack("{s:s}", "name", "CKA"));
    expect_refused(&g_owner, "remove_certification", json_pack("{s:s}", "name", "CKA"),
                   GUILD_RULE_VIOLATION, "name");
    /* the name is free again */
    given(&g_owner, "add_certification",
          json_pack("{s:s, s:s, s:s}", "name", "CKA", "issuer", "CNCF", "issued_on", "2025-03-01"));
}
END_TEST

/* ---- rates -------------------------------------------------------------------------------- */

START_TEST(test_set_rate_emits_previous_and_keeps_history)
{
    given_profile(); /* version 1 */
    ck_assert(!talent_profile_rate(profile(), NULL, NULL));
    expect_event(&g_owner, "set_rate",
                 json_pack("{s:s, s:i}", "currency", "EUR", "hourly_rate", 9000),
                 TALENT_EV_RATE_SET,
                 json_pack("{s:s, s:i, s:n, s:n}", "currency", "EUR", "hourly_rate", 9000,
                           "previous_currency", "previous_rate"));
    expect_event(&g_owner, "set_rate",
                 json_pack("{s:s, s:i}", "currency", "USD", "hourly_rate", 10000),
                 TALENT_EV_RATE_SET,
                 json_pack("{s:s, s:i, s:s, s:i}", "currency", "USD", "hourly_rate", 10000,
                           "previous_currency", "EUR", "previous_rate", 9000));
    const char *currency;
    int64_t rate;
    ck_assert(talent_profile_rate(profile(), &currency, &rate));
    ck_assert_str_eq(currency, "USD");
    ck_assert_int_eq(rate, 10000);
    json_t *p = talent_profile_to_json(profile());
    json_t *want = json_pack("[{s:s, s:i, s:I}, {s:s, s:i, s:I}]", "currency", "EUR", "hourly_rate",
                             9000, "since", (json_int_t)time_at(2), "currency", "USD",
                             "hourly_rate", 10000, "since", (json_int_t)time_at(3));
    ck_assert(json_equal(json_object_get(p, "pricing_history"), want));
    json_decref(want);
    json_decref(p);
}
END_TEST

START_TEST(test_set_rate_unchanged_emits_nothing)
{
    given_profile();
    given(&g_owner, "set_rate", json_pack("{s:s, s:i}", "currency", "EUR", "hourly_rate", 9000));
    expect_nothing(&g_owner, "set_rate",
                   json_pack("{s:s, s:i}", "currency", "EUR", "hourly_rate", 9000));
}
END_TEST

/* ---- capacity ------------------------------------------------------------------------------- */

START_TEST(test_set_availability_emits_availability_set)
{
    given_profile();
    ck_assert_int_eq(talent_profile_hours(profile()), 0);
    expect_event(&g_owner, "set_availability", json_pack("{s:i}", "hours_per_week", 32),
                 TALENT_EV_AVAILABILITY_SET, json_pack("{s:i}", "hours_per_week", 32));
    ck_assert_int_eq(talent_profile_hours(profile()), 32);
    expect_nothing(&g_owner, "set_availability", json_pack("{s:i}", "hours_per_week", 32));
}
END_TEST

START_TEST(test_set_availability_below_reserved_refused)
{
    given_profile();
    given(&g_owner, "set_availability", json_pack("{s:i}", "hours_per_week", 40));
    given(&g_admin, "reserve_capacity",
          json_pack("{s:s, s:i}", "reservation_id", "hire-1", "hours_per_week", 24));
    expect_refused(&g_owner, "set_availability", json_pack("{s:i}", "hours_per_week", 23),
                   GUILD_RULE_VIOLATION, "hours_per_week");
    expect_event(&g_owner, "set_availability", json_pack("{s:i}", "hours_per_week", 24),
                 TALENT_EV_AVAILABILITY_SET, json_pack("{s:i}", "hours_per_week", 24));
}
END_TEST

START_TEST(test_reserve_capacity_emits_capacity_reserved)
{
    given_profile();
    given(&g_owner, "set_availability", json_pack("{s:i}", "hours_per_week", 40));
    expect_event(&g_admin, "reserve_capacity",
                 json_pack("{s:s, s:i}", "reservation_id", "hire-1", "hours_per_week", 24),
                 TALENT_EV_CAPACITY_RESERVED,
                 json_pack("{s:s, s:i}", "reservation_id", "hire-1", "hours_per_week", 24));
    expect_event(&g_admin, "reserve_capacity",
                 json_pack("{s:s, s:i}", "reservation_id", "hire-2", "hours_per_week", 16),
                 TALENT_EV_CAPACITY_RESERVED,
                 json_pack("{s:s, s:i}", "reservation_id", "hire-2", "hours_per_week", 16));
    ck_assert_int_eq(talent_profile_reserved(profile()), 40);
}
END_TEST

START_TEST(test_reserve_capacity_beyond_availability_refused)
{
    given_profile();
    expect_refused(&g_admin, "reserve_capacity",
                   json_pack("{s:s, s:i}", "reservation_id", "hire-1", "hours_per_week", 1),
                   GUILD_RULE_VIOLATION, "hours_per_week");
    given(&g_owner, "set_availability", json_pack("{s:i}", "hours_per_week", 40));
    given(&g_admin, "reserve_capacity",
          json_pack("{s:s, s:i}", "reservation_id", "hire-1", "hours_per_week", 30));
    expect_refused(&g_admin, "reserve_capacity",
                   json_pack("{s:s, s:i}", "reservation_id", "hire-2", "hours_per_week", 11),
                   GUILD_RULE_VIOLATION, "hours_per_week");
    ck_assert_int_eq(talent_profile_reserved(profile()), 30);
}
END_TEST

START_TEST(test_reserve_capacity_repeated_same_hours_emits_nothing)
{
    given_profile();
    given(&g_owner, "set_availability", json_pack("{s:i}", "hours_per_week", 40));
    given(&g_admin, "reserve_capacity",
          json_pack("{s:s, s:i}", "reservation_id", "hire-1", "hours_per_week", 40));
    /* the retry of a saga: accepted although no hour is free any more */
    expect_nothing(&g_admin, "reserve_capacity",
                   json_pack("{s:s, s:i}", "reservation_id", "hire-1", "hours_per_week", 40));
}
END_TEST

START_TEST(test_reserve_capacity_repeated_other_hours_conflict)
{
    given_profile();
    given(&g_owner, "set_availability", json_pack("{s:i}", "hours_per_week", 40));
    given(&g_admin, "reserve_capacity",
          json_pack("{s:s, s:i}", "reservation_id", "hire-1", "hours_per_week", 20));
    expect_refused(&g_admin, "reserve_capacity",
                   json_pack("{s:s, s:i}", "reservation_id", "hire-1", "hours_per_week", 10),
                   GUILD_CONFLICT, "reservation_id");
}
END_TEST

START_TEST(test_release_capacity_emits_capacity_released)
{
    given_profile();
    given(&g_owner, "set_availability", json_pack("{s:i}", "hours_per_week", 40));
    given(&g_admin, "reserve_capacity",
          json_pack("{s:s, s:i}", "reservation_id", "hire-1", "hours_per_week", 20));
    expect_event(&g_admin, "release_capacity", json_pack("{s:s}", "reservation_id", "hire-1"),
                 TALENT_EV_CAPACITY_RELEASED,
                 json_pack("{s:s, s:i}", "reservation_id", "hire-1", "hours_per_week", 20));
    ck_assert_int_eq(talent_profile_reserved(profile()), 0);
}
END_TEST

START_TEST(test_release_capacity_unknown_emits_nothing)
{
    given_profile();
    expect_nothing(&g_admin, "release_capacity", json_pack("{s:s}", "reservation_id", "never"));
    given(&g_owner, "set_availability", json_pack("{s:i}", "hours_per_week", 40));
    given(&g_admin, "reserve_capacity",
          json_pack("{s:s, s:i}", "reservation_id", "hire-1", "hours_per_week", 20));
    given(&g_admin, "release_capacity", json_pack("{s:s}", "reservation_id", "hire-1"));
    /* a compensation that runs twice */
    expect_nothing(&g_admin, "release_capacity", json_pack("{s:s}", "reservation_id", "hire-1"));
}
END_TEST

/* ---- archive_profile --------------------------------------------------------------------------
 */

START_TEST(test_archive_profile_emits_profile_archived)
{
    given_profile();
    given(&g_owner, "set_availability", json_pack("{s:i}", "hours_per_week", 40));
    given(&g_admin, "reserve_capacity",
          json_pack("{s:s, s:i}", "reservation_id", "hire-1", "hours_per_week", 20));
    expect_event(&g_owner, "archive_profile", json_object(), TALENT_EV_PROFILE_ARCHIVED,
                 json_object());
    ck_assert(talent_profile_archived(profile()));
    ck_assert(talent_profile_exists(profile()));
    /* archiving releases nothing */
    ck_assert_int_eq(talent_profile_reserved(profile()), 20);
}
END_TEST

/* ---- evolve -------------------------------------------------------------------------------------
 */

START_TEST(test_evolve_unknown_event_ignored)
{
    given_profile();
    json_t *before = talent_profile_to_json(profile());
    json_t *data = json_pack("{s:s}", "skill", "C");
    dom_event_meta meta = {.version = 2, .time = time_at(2)};
    ck_assert_status(talent_profile_agg.evolve(g_state, "skill_endorsed", data, &meta), GUILD_OK);
    ck_assert_status(talent_profile_agg.evolve(g_state, TALENT_EV_PROFILE_CLAIMED, data, &meta),
                     GUILD_OK);
    json_t *after = talent_profile_to_json(profile());
    ck_assert(json_equal(before, after));
    json_decref(before);
    json_decref(after);
    json_decref(data);
}
END_TEST

START_TEST(test_evolve_malformed_event_corrupt)
{
    given_profile();
    dom_event_meta meta = {.version = 2, .time = time_at(2)};
    json_t *no_level = json_pack("{s:s}", "skill", "C");
    json_t *bad_rate = json_pack("{s:s, s:s}", "currency", "EUR", "hourly_rate", "90");
    json_t *bad_bio = json_pack("{s:i}", "bio", 5);
    json_t *not_map = json_pack("[s]", "x");
    ck_assert_status(talent_profile_agg.evolve(g_state, TALENT_EV_SKILL_ADDED, no_level, &meta),
                     GUILD_CORRUPT);
    ck_assert_status(talent_profile_agg.evolve(g_state, TALENT_EV_RATE_SET, bad_rate, &meta),
                     GUILD_CORRUPT);
    ck_assert_status(talent_profile_agg.evolve(g_state, TALENT_EV_PROFILE_UPDATED, bad_bio, &meta),
                     GUILD_CORRUPT);
    ck_assert_status(talent_profile_agg.evolve(g_state, TALENT_EV_PROFILE_ARCHIVED, not_map, &meta),
                     GUILD_CORRUPT);
    ck_assert_uint_eq(talent_profile_skill_count(profile()), 0);
    ck_assert(!talent_profile_rate(profile(), NULL, NULL));
    ck_assert(!talent_profile_archived(profile()));
    json_decref(no_level);
    json_decref(bad_rate);
    json_decref(bad_bio);
    json_decref(not_map);
}
END_TEST

START_TEST(test_claim_aggregate_evolves_from_profile_claimed)
{
    void *claim = talent_user_agg.create();
    ck_assert(!talent_user_agg.exists(claim));
    ck_assert_ptr_null(talent_claim_talent_id(claim));
    json_t *data = json_pack("{s:s}", "talent_id", TALENT);
    json_t *bad = json_object();
    dom_event_meta meta = {.version = 1, .time = NOW};
    ck_assert_status(talent_user_agg.evolve(claim, TALENT_EV_PROFILE_CREATED, bad, &meta),
                     GUILD_OK);
    ck_assert_status(talent_user_agg.evolve(claim, TALENT_EV_PROFILE_CLAIMED, bad, &meta),
                     GUILD_CORRUPT);
    ck_assert_status(talent_user_agg.evolve(claim, TALENT_EV_PROFILE_CLAIMED, data, &meta),
                     GUILD_OK);
    ck_assert(talent_user_agg.exists(claim));
    ck_assert_str_eq(talent_claim_talent_id(claim), TALENT);
    json_decref(data);
    json_decref(bad);
    talent_user_agg.destroy(claim);
}
END_TEST

/* ---- a whole lifecycle ----------------------------------------------------------------------- */

START_TEST(test_lifecycle)
{
    given_profile();
    given(&g_owner, "update_profile", json_pack("{s:s}", "timezone", "Europe/Paris"));
    given(&g_owner, "add_skill",
          json_pack("{s:s, s:i, s:i}", "skill", "C", "level", 4, "years", 12));
    given(&g_owner, "add_skill", json_pack("{s:s, s:i}", "skill", "Go", "level", 2));
    given(&g_owner, "add_skill", json_pack("{s:s, s:i}", "skill", "c", "level", 5));
    given(&g_owner, "remove_skill", json_pack("{s:s}", "skill", "Go"));
    given(&g_owner, "add_certification",
          json_pack("{s:s, s:s, s:s, s:s}", "name", "CKA", "issuer", "CNCF", "issued_on",
                    "2024-03-01", "expires_on", "2027-03-01"));
    given(&g_owner, "set_rate", json_pack("{s:s, s:i}", "currency", "EUR", "hourly_rate", 9000));
    given(&g_owner, "set_availability", json_pack("{s:i}", "hours_per_week", 40));
    given(&g_admin, "reserve_capacity",
          json_pack("{s:s, s:i}", "reservation_id", "hire-1", "hours_per_week", 24));
    given(&g_admin, "reserve_capacity",
          json_pack("{s:s, s:i}", "reservation_id", "hire-2", "hours_per_week", 8));
    given(&g_admin, "release_capacity", json_pack("{s:s}", "reservation_id", "hire-1"));
    given(&g_owner, "archive_profile", json_object());
    ck_assert_uint_eq(g_version, 13);

    json_t *got = talent_profile_to_json(profile());
    json_t *want =
        json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b,"
                  " s:[{s:s, s:i, s:i}], s:[{s:s, s:s, s:s, s:s}],"
                  " s:{s:s, s:i}, s:[{s:s, s:i, s:I}],"
                  " s:i, s:i, s:[{s:s, s:i}], s:I, s:I}",
                  "talent_id", TALENT, "user_id", OWNER, "headline", "C programmer", "bio", "",
                  "location", "Lyon", "timezone", "Europe/Paris", "archived", 1, "skills", "skill",
                  "C", "level", 5, "years", 12, "certifications", "name", "CKA", "issuer", "CNCF",
                  "issued_on", "2024-03-01", "expires_on", "2027-03-01", "rate", "currency", "EUR",
                  "hourly_rate", 9000, "pricing_history", "currency", "EUR", "hourly_rate", 9000,
                  "since", (json_int_t)time_at(8), "hours_per_week", 40, "reserved_hours", 8,
                  "reservations", "reservation_id", "hire-2", "hours_per_week", 8, "created_at",
                  (json_int_t)time_at(1), "updated_at", (json_int_t)time_at(13));
    char *got_text = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
    ck_assert_msg(json_equal(got, want), "profile: %s", got_text);
    free(got_text);
    json_decref(got);
    json_decref(want);

    expect_refused(&g_owner, "set_rate",
                   json_pack("{s:s, s:i}", "currency", "EUR", "hourly_rate", 9500),
                   GUILD_RULE_VIOLATION, "talent_id");
}
END_TEST

/* ---- snapshots ------------------------------------------------------------------------------ */

static void snapshot_bytes(const void *state, char **bytes, size_t *len)
{
    ck_assert_status(talent_profile_agg.snapshot(state, bytes, len), GUILD_OK);
    ck_assert_uint_gt(*len, 0);
}

/* A profile with every kind of field restores to one that snapshots to the
 * same bytes and decides as the original does. */
START_TEST(test_snapshot_restores_the_same_profile)
{
    /* an empty profile, then a full one */
    char *bytes = NULL, *again = NULL;
    size_t len = 0, len2 = 0;
    snapshot_bytes(g_state, &bytes, &len);
    void *empty = talent_profile_agg.restore(bytes, len);
    ck_assert_ptr_nonnull(empty);
    ck_assert(!talent_profile_exists(empty));
    talent_profile_agg.destroy(empty);
    free(bytes);

    given_profile();
    given(&g_owner, "add_skill",
          json_pack("{s:s, s:i, s:i}", "skill", "C", "level", 5, "years", 12));
    given(&g_owner, "add_skill", json_pack("{s:s, s:i}", "skill", "Rust", "level", 3));
    given(&g_owner, "add_certification",
          json_pack("{s:s, s:s, s:s}", "name", "CKA", "issuer", "CNCF", "issued_on", "2024-03-01"));
    given(&g_owner, "add_certification",
          json_pack("{s:s, s:s, s:s, s:s}", "name", "OSCP", "issuer", "OffSec", "issued_on",
                    "2023-01-01", "expires_on", "2026-01-01"));
    given(&g_owner, "set_rate", json_pack("{s:s, s:i}", "currency", "EUR", "hourly_rate", 9000));
    given(&g_owner, "set_rate", json_pack("{s:s, s:i}", "currency", "USD", "hourly_rate", 10000));
    given(&g_owner, "set_availability", json_pack("{s:i}", "hours_per_week", 40));
    given(&g_owner, "reserve_capacity",
          json_pack("{s:s, s:i}", "reservation_id", "r1", "hours_per_week", 30));
    snapshot_bytes(g_state, &bytes, &len);
    void *restored = talent_profile_agg.restore(bytes, len);
    ck_assert_ptr_nonnull(restored);
    snapshot_bytes(restored, &again, &len2);
    ck_assert_uint_eq(len2, len);
    ck_assert_int_eq(memcmp(again, bytes, len), 0);
    ck_assert_str_eq(talent_profile_user_id(restored), OWNER);
    ck_assert_int_eq(talent_profile_reserved(restored), 30);

    /* it decides as the original: the same refusal and the same events */
    void *original = g_state;
    for (int k = 0; k < 2; k++) {
        g_state = k == 0 ? original : restored;
        expect_refused(&g_owner, "reserve_capacity",
                       json_pack("{s:s, s:i}", "reservation_id", "r2", "hours_per_week", 11),
                       GUILD_RULE_VIOLATION, "hours_per_week");
        expect_refused(
            &g_owner, "add_certification",
            json_pack("{s:s, s:s, s:s}", "name", "cka", "issuer", "X", "issued_on", "2025-01-01"),
            GUILD_CONFLICT, "name");
        expect_event(&g_owner, "remove_certification", json_pack("{s:s}", "name", "OSCP"),
                     TALENT_EV_CERTIFICATION_REMOVED, json_pack("{s:s}", "name", "OSCP"));
    }
    g_state = original;
    talent_profile_agg.destroy(restored);
    free(bytes);
    free(again);

    /* bytes that are not a profile's snapshot restore nothing */
    static const char junk[] = "\x81\xa6"
                               "format"
                               "\x02";
    ck_assert_ptr_null(talent_profile_agg.restore(junk, sizeof junk - 1));
    ck_assert_ptr_null(talent_profile_agg.restore("x", 1));
}
END_TEST

static Suite *talent_suite(void)
{
    Suite *s = suite_create("domain/talent");
    TCase *tc = tcase_create("rules");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_validate_good_bodies_pass);
    tcase_add_test(tc, test_validate_level_out_of_range_refused);
    tcase_add_test(tc, test_validate_currency_not_iso4217_refused);
    tcase_add_test(tc, test_validate_unknown_field_refused);
    tcase_add_test(tc, test_validate_limits_refused);
    tcase_add_test(tc, test_tables_describe_every_command_and_event);
    tcase_add_test(tc, test_create_profile_for_another_user_forbidden);
    tcase_add_test(tc, test_create_profile_by_admin_for_another_user);
    tcase_add_test(tc, test_command_by_non_owner_forbidden);
    tcase_add_test(tc, test_command_by_admin_allowed);
    tcase_add_test(tc, test_command_on_missing_profile_not_found);
    tcase_add_test(tc, test_command_on_archived_profile_refused);
    tcase_add_test(tc, test_release_capacity_on_archived_profile_still_releases);
    tcase_add_test(tc, test_create_profile_emits_profile_and_claim);
    tcase_add_test(tc, test_create_profile_when_user_has_one_conflict);
    tcase_add_test(tc, test_update_profile_emits_only_fields_that_change);
    tcase_add_test(tc, test_update_profile_with_no_field_refused);
    tcase_add_test(tc, test_update_profile_without_change_emits_nothing);
    tcase_add_test(tc, test_add_skill_new_emits_skill_added);
    tcase_add_test(tc, test_add_skill_existing_with_other_values_emits_skill_updated);
    tcase_add_test(tc, test_add_skill_same_values_emits_nothing);
    tcase_add_test(tc, test_add_skill_beyond_limit_refused);
    tcase_add_test(tc, test_remove_skill_present_emits_skill_removed);
    tcase_add_test(tc, test_remove_skill_absent_refused);
    tcase_add_test(tc, test_add_certification_emits_certification_added);
    tcase_add_test(tc, test_add_certification_expiring_before_issue_refused);
    tcase_add_test(tc, test_add_certification_same_name_conflict);
    tcase_add_test(tc, test_remove_certification);
    tcase_add_test(tc, test_set_rate_emits_previous_and_keeps_history);
    tcase_add_test(tc, test_set_rate_unchanged_emits_nothing);
    tcase_add_test(tc, test_set_availability_emits_availability_set);
    tcase_add_test(tc, test_set_availability_below_reserved_refused);
    tcase_add_test(tc, test_reserve_capacity_emits_capacity_reserved);
    tcase_add_test(tc, test_reserve_capacity_beyond_availability_refused);
    tcase_add_test(tc, test_reserve_capacity_repeated_same_hours_emits_nothing);
    tcase_add_test(tc, test_reserve_capacity_repeated_other_hours_conflict);
    tcase_add_test(tc, test_release_capacity_emits_capacity_released);
    tcase_add_test(tc, test_release_capacity_unknown_emits_nothing);
    tcase_add_test(tc, test_archive_profile_emits_profile_archived);
    tcase_add_test(tc, test_evolve_unknown_event_ignored);
    tcase_add_test(tc, test_evolve_malformed_event_corrupt);
    tcase_add_test(tc, test_claim_aggregate_evolves_from_profile_claimed);
    tcase_add_test(tc, test_lifecycle);
    tcase_add_test(tc, test_snapshot_restores_the_same_profile);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tst_run_suite(talent_suite());
}
