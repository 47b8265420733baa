/*
 * talent.c — the talent domain: what each command decides, and the tables
 * that describe its commands, events and queries.
 *
 * Every command acts on one profile (stream talent-<talent_id>) and needs an
 * authenticated actor who owns the profile or holds talent:admin. The order
 * of refusals is the same everywhere: what the body alone shows is wrong
 * (validation_failed), then a profile that does not exist (not_found), then
 * an actor who may not act on it (forbidden), then an archived profile or a
 * broken rule (rule_violation, conflict).
 *
 * A command that would change nothing emits nothing and succeeds, so clients
 * and sagas may repeat it.
 *
 * Sections: shared checks; dates; one decide per command; field tables;
 * the command, event and query tables.
 */
#include "domain/talent/talent_int.h"

#include "domain/registry.h"

#include <string.h>

/* A profile holds at most this many skills and certifications: a bound on
 * the state every command loads. */
#define TALENT_MAX_SKILLS 100
#define TALENT_MAX_CERTIFICATIONS 100

/* ---- shared checks ---------------------------------------------------------- */

/* True if the actor may act on the profile of user_id. */
static bool acts_for(const dom_actor *a, const char *user_id)
{
    if (dom_actor_can(a, TALENT_PERM_ADMIN))
        return true;
    return a && a->user_id && a->user_id[0] && user_id && strcmp(a->user_id, user_id) == 0;
}

/* The profile a command acts on: it exists and the actor may act on it
 * (archived or not); else the refusal, already set in ctx. */
static guild_status own_profile(const void *state, dom_ctx *ctx, const talent_profile **out)
{
    const talent_profile *p = state;
    if (!talent_profile_exists(p))
        return dom_fail(ctx, GUILD_NOT_FOUND, "talent_id", "no talent profile %.64s",
                        ctx->aggregate_id ? ctx->aggregate_id : "");
    if (!acts_for(ctx->actor, p->user_id))
        return dom_fail(ctx, GUILD_FORBIDDEN, NULL, "only its owner may change a profile");
    *out = p;
    return GUILD_OK;
}

/* The live profile a command acts on: as own_profile, and not archived. */
static guild_status open_profile(const void *state, dom_ctx *ctx, const talent_profile **out)
{
    const talent_profile *p = state;
    if (!talent_profile_exists(p))
        return dom_fail(ctx, GUILD_NOT_FOUND, "talent_id", "no talent profile %.64s",
                        ctx->aggregate_id ? ctx->aggregate_id : "");
    if (!acts_for(ctx->actor, p->user_id))
        return dom_fail(ctx, GUILD_FORBIDDEN, NULL, "only its owner may change a profile");
    if (p->archived)
        return dom_fail(ctx, GUILD_RULE_VIOLATION, "talent_id", "the profile is archived");
    *out = p;
    return GUILD_OK;
}

/* ---- dates -------------------------------------------------------------------
 * The validator has checked the format (RFC 3339 date or date-time); these
 * only compare two such values as instants. A bare date is midnight UTC. */

static int64_t digits(const char *s, int n)
{
    int64_t v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* Days from 1970-01-01 to y-m-d, proleptic Gregorian (H. Hinnant). */
static int64_t days_from_civil(int64_t y, int64_t m, int64_t d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

/* An RFC 3339 value as Unix seconds and nanoseconds. */
static void instant(const char *s, int64_t *sec, int64_t *nsec)
{
    *sec = days_from_civil(digits(s, 4), digits(s + 5, 2), digits(s + 8, 2)) * 86400;
    *nsec = 0;
    const char *t = s + 10;
    if (*t == '\0')
        return;
    *sec += digits(t + 1, 2) * 3600 + digits(t + 4, 2) * 60 + digits(t + 7, 2);
    t += 9;
    if (*t == '.') {
        int64_t scale = 100000000;
        for (t++; *t >= '0' && *t <= '9'; t++, scale /= 10)
            *nsec += (*t - '0') * scale;
    }
    if (*t == '+' || *t == '-') {
        int64_t offset = digits(t + 1, 2) * 3600 + digits(t + 4, 2) * 60;
        *sec -= *t == '+' ? offset : -offset;
    }
}

/* <0, 0, >0 as a is before, at, after b. */
static int instant_cmp(const char *a, const char *b)
{
    int64_t as, an, bs, bn;
    instant(a, &as, &an);
    instant(b, &bs, &bn);
    if (as != bs)
        return as < bs ? -1 : 1;
    return an < bn ? -1 : an > bn;
}

/* ---- one decide per command --------------------------------------------------- */

static guild_status decide_create_profile(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const char *user_id = dom_str(cmd, "user_id", "");
    if (!acts_for(ctx->actor, user_id))
        return dom_fail(ctx, GUILD_FORBIDDEN, "user_id",
                        "a profile may only be created for oneself");
    if (talent_profile_exists(state))
        return dom_fail(ctx, GUILD_CONFLICT, "talent_id", "the profile exists already");
    if (!ctx->aggregate_id || !ctx->env || !ctx->env->stream_version)
        return dom_fail(ctx, GUILD_INTERNAL, NULL,
                        "create_profile needs an id and stream look-ups");

    char claim[256];
    dom_stream_name(TALENT_DOMAIN, &talent_user_agg, user_id, claim, sizeof claim);
    if (ctx->env->stream_version(ctx->env->self, claim) > 0)
        return dom_fail(ctx, GUILD_CONFLICT, "user_id", "user already has a profile");

    json_t *data = json_pack("{s:s, s:s}", "talent_id", ctx->aggregate_id, "user_id", user_id);
    for (int i = 0; i < TALENT_TEXTS; i++) {
        json_t *v = json_object_get(cmd, talent__text_names[i]);
        json_object_set_new(data, talent__text_names[i],
                            json_is_string(v) ? json_incref(v) : json_string(""));
    }
    dom_emit(ctx, TALENT_EV_PROFILE_CREATED, data);
    dom_emit_to(ctx, claim, TALENT_EV_PROFILE_CLAIMED,
                json_pack("{s:s}", "talent_id", ctx->aggregate_id));
    dom_reply(ctx, "talent_id", json_string(ctx->aggregate_id));
    return GUILD_OK;
}

static guild_status decide_update_profile(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    int given = 0;
    for (int i = 0; i < TALENT_TEXTS; i++)
        given += json_is_string(json_object_get(cmd, talent__text_names[i]));
    if (!given)
        return dom_fail(ctx, GUILD_VALIDATION_FAILED, NULL,
                        "give at least one of headline, bio, location, timezone");
    const talent_profile *p = NULL;
    guild_status s = open_profile(state, ctx, &p);
    if (s != GUILD_OK)
        return s;

    json_t *changed = json_object();
    for (int i = 0; i < TALENT_TEXTS; i++) {
        json_t *v = json_object_get(cmd, talent__text_names[i]);
        if (json_is_string(v) && strcmp(json_string_value(v), p->text[i]) != 0)
            json_object_set(changed, talent__text_names[i], v);
    }
    if (json_object_size(changed) == 0)
        json_decref(changed);
    else
        dom_emit(ctx, TALENT_EV_PROFILE_UPDATED, changed);
    return GUILD_OK;
}

static json_t *skill_data(const char *name, int64_t level, int64_t years)
{
    json_t *d = json_pack("{s:s, s:I}", "skill", name, "level", (json_int_t)level);
    if (years >= 0)
        json_object_set_new(d, "years", json_integer(years));
    return d;
}

static guild_status decide_add_skill(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const talent_profile *p = NULL;
    guild_status s = open_profile(state, ctx, &p);
    if (s != GUILD_OK)
        return s;
    const char *name = dom_str(cmd, "skill", "");
    int64_t level = dom_int(cmd, "level", 1), years = dom_int(cmd, "years", -1);
    const talent_skill *have = talent_profile_skill_find(p, name);
    if (!have) {
        if (p->n_skills >= TALENT_MAX_SKILLS)
            return dom_fail(ctx, GUILD_RULE_VIOLATION, "skill", "a profile holds at most %d skills",
                            TALENT_MAX_SKILLS);
        dom_emit(ctx, TALENT_EV_SKILL_ADDED, skill_data(name, level, years));
        return GUILD_OK;
    }
    /* years left out keeps the years known */
    if (years < 0)
        years = have->years;
    if (level != have->level || years != have->years)
        dom_emit(ctx, TALENT_EV_SKILL_UPDATED, skill_data(have->name, level, years));
    return GUILD_OK;
}

static guild_status decide_remove_skill(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const talent_profile *p = NULL;
    guild_status s = open_profile(state, ctx, &p);
    if (s != GUILD_OK)
        return s;
    const talent_skill *have = talent_profile_skill_find(p, dom_str(cmd, "skill", ""));
    if (!have)
        return dom_fail(ctx, GUILD_RULE_VIOLATION, "skill", "the profile has no such skill");
    dom_emit(ctx, TALENT_EV_SKILL_REMOVED, json_pack("{s:s}", "skill", have->name));
    return GUILD_OK;
}

static guild_status decide_add_certification(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const char *name = dom_str(cmd, "name", ""), *issued_on = dom_str(cmd, "issued_on", "");
    const char *expires_on = dom_str(cmd, "expires_on", NULL);
    if (expires_on && instant_cmp(expires_on, issued_on) <= 0)
        return dom_fail(ctx, GUILD_VALIDATION_FAILED, "expires_on",
                        "expires_on must be after issued_on");
    const talent_profile *p = NULL;
    guild_status s = open_profile(state, ctx, &p);
    if (s != GUILD_OK)
        return s;
    if (talent__certification_find(p, name))
        return dom_fail(ctx, GUILD_CONFLICT, "name",
                        "the profile has a certification of that name");
    if (p->n_certs >= TALENT_MAX_CERTIFICATIONS)
        return dom_fail(ctx, GUILD_RULE_VIOLATION, "name",
                        "a profile holds at most %d certifications", TALENT_MAX_CERTIFICATIONS);
    json_t *data = json_pack("{s:s, s:s, s:s}", "name", name, "issuer", dom_str(cmd, "issuer", ""),
                             "issued_on", issued_on);
    if (expires_on)
        json_object_set_new(data, "expires_on", json_string(expires_on));
    dom_emit(ctx, TALENT_EV_CERTIFICATION_ADDED, data);
    return GUILD_OK;
}

static guild_status decide_remove_certification(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const talent_profile *p = NULL;
    guild_status s = open_profile(state, ctx, &p);
    if (s != GUILD_OK)
        return s;
    const talent_certification *c = talent__certification_find(p, dom_str(cmd, "name", ""));
    if (!c)
        return dom_fail(ctx, GUILD_RULE_VIOLATION, "name", "the profile has no such certification");
    dom_emit(ctx, TALENT_EV_CERTIFICATION_REMOVED, json_pack("{s:s}", "name", c->name));
    return GUILD_OK;
}

static guild_status decide_set_rate(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const talent_profile *p = NULL;
    guild_status s = open_profile(state, ctx, &p);
    if (s != GUILD_OK)
        return s;
    const char *currency = dom_str(cmd, "currency", ""), *was_currency = NULL;
    int64_t rate = dom_int(cmd, "hourly_rate", 0), was_rate = 0;
    bool had = talent_profile_rate(p, &was_currency, &was_rate);
    if (had && strcmp(currency, was_currency) == 0 && rate == was_rate)
        return GUILD_OK;
    dom_emit(ctx, TALENT_EV_RATE_SET,
             json_pack("{s:s, s:I, s:o, s:o}", "currency", currency, "hourly_rate",
                       (json_int_t)rate, "previous_currency",
                       had ? json_string(was_currency) : json_null(), "previous_rate",
                       had ? json_integer(was_rate) : json_null()));
    return GUILD_OK;
}

static guild_status decide_set_availability(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const talent_profile *p = NULL;
    guild_status s = open_profile(state, ctx, &p);
    if (s != GUILD_OK)
        return s;
    int64_t hours = dom_int(cmd, "hours_per_week", 0);
    if (hours < p->reserved)
        return dom_fail(ctx, GUILD_RULE_VIOLATION, "hours_per_week",
                        "%d hours per week are reserved already", p->reserved);
    if (hours != p->hours)
        dom_emit(ctx, TALENT_EV_AVAILABILITY_SET,
                 json_pack("{s:I}", "hours_per_week", (json_int_t)hours));
    return GUILD_OK;
}

static guild_status decide_reserve_capacity(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const talent_profile *p = NULL;
    guild_status s = open_profile(state, ctx, &p);
    if (s != GUILD_OK)
        return s;
    const char *id = dom_str(cmd, "reservation_id", "");
    int64_t hours = dom_int(cmd, "hours_per_week", 0);
    const talent_reservation *have = talent__reservation_find(p, id);
    if (have) {
        if (have->hours == hours)
            return GUILD_OK; /* a saga's retry */
        return dom_fail(ctx, GUILD_CONFLICT, "reservation_id",
                        "reservation %.128s holds %d hours per week", id, have->hours);
    }
    if (p->reserved + hours > p->hours)
        return dom_fail(ctx, GUILD_RULE_VIOLATION, "hours_per_week",
                        "only %d of %d hours per week are free", p->hours - p->reserved, p->hours);
    dom_emit(ctx, TALENT_EV_CAPACITY_RESERVED,
             json_pack("{s:s, s:I}", "reservation_id", id, "hours_per_week", (json_int_t)hours));
    return GUILD_OK;
}

static guild_status decide_release_capacity(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    /* Allowed on an archived profile: a saga's compensation must still be
     * able to give back what it reserved. */
    const talent_profile *p = NULL;
    guild_status s = own_profile(state, ctx, &p);
    if (s != GUILD_OK)
        return s;
    const talent_reservation *have =
        talent__reservation_find(p, dom_str(cmd, "reservation_id", ""));
    if (have) /* else: released already, or never made; a compensation may repeat */
        dom_emit(
            ctx, TALENT_EV_CAPACITY_RELEASED,
            json_pack("{s:s, s:i}", "reservation_id", have->id, "hours_per_week", have->hours));
    return GUILD_OK;
}

static guild_status decide_archive_profile(const void *state, const json_t *cmd, dom_ctx *ctx)
{
    const talent_profile *p = NULL;
    (void)cmd;
    guild_status s = open_profile(state, ctx, &p);
    if (s != GUILD_OK)
        return s;
    dom_emit(ctx, TALENT_EV_PROFILE_ARCHIVED, json_object());
    return GUILD_OK;
}

/* ---- field tables ------------------------------------------------------------- */

/* Designators of the fields that several tables share: {F_SKILL}. */
#define F_TALENT_ID .name = "talent_id", .type = DOM_UUID, .required = true, .doc = "the profile"
#define F_HEADLINE(req)                                                                            \
    .name = "headline", .type = DOM_STRING, .required = (req), .min = 1, .max = 200,               \
    .doc = "one line saying what the talent does"
#define F_BIO .name = "bio", .type = DOM_TEXT, .max = 5000, .doc = "free text, may hold new lines"
#define F_LOCATION .name = "location", .type = DOM_STRING, .max = 200
#define F_TIMEZONE                                                                                 \
    .name = "timezone", .type = DOM_STRING, .max = 64, .doc = "IANA time zone (Europe/Paris)"
#define F_SKILL .name = "skill", .type = DOM_STRING, .required = true, .min = 1, .max = 64
#define F_LEVEL .name = "level", .type = DOM_INT, .required = true, .min = 1, .max = 5
#define F_YEARS .name = "years", .type = DOM_INT, .min = 0, .max = 70, .doc = "of experience"
#define F_CERT_NAME .name = "name", .type = DOM_STRING, .required = true, .min = 1, .max = 200
#define F_ISSUER .name = "issuer", .type = DOM_STRING, .required = true, .min = 1, .max = 200
#define F_ISSUED_ON .name = "issued_on", .type = DOM_DATE, .required = true
#define F_EXPIRES_ON                                                                               \
    .name = "expires_on", .type = DOM_DATE, .doc = "after issued_on; absent: does not expire"
#define F_CURRENCY(req) .name = "currency", .type = DOM_CURRENCY, .required = (req)
#define F_RATE(name_, req)                                                                         \
    .name = (name_), .type = DOM_INT, .required = (req), .min = 1, .max = 100000000,               \
    .doc = "per hour, in minor units of the currency"
#define F_HOURS(min_)                                                                              \
    .name = "hours_per_week", .type = DOM_INT, .required = true, .min = (min_), .max = 80
#define F_RESERVATION_ID                                                                           \
    .name = "reservation_id", .type = DOM_STRING, .required = true, .min = 1, .max = 128

static const dom_field create_profile_fields[] = {
    {.name = "user_id", .type = DOM_UUID, .required = true, .doc = "who the profile is of"},
    {F_HEADLINE(true)},
    {F_BIO},
    {F_LOCATION},
    {F_TIMEZONE},
    {0},
};
static const dom_field update_profile_fields[] = {
    {F_TALENT_ID}, {F_HEADLINE(false)}, {F_BIO}, {F_LOCATION}, {F_TIMEZONE}, {0},
};
static const dom_field add_skill_fields[] = {
    {F_TALENT_ID}, {F_SKILL}, {F_LEVEL}, {F_YEARS}, {0},
};
static const dom_field remove_skill_fields[] = {{F_TALENT_ID}, {F_SKILL}, {0}};
static const dom_field add_certification_fields[] = {
    {F_TALENT_ID},  {F_CERT_NAME, .doc = "unique within the profile"},
    {F_ISSUER},     {F_ISSUED_ON},
    {F_EXPIRES_ON}, {0},
};
static const dom_field remove_certification_fields[] = {{F_TALENT_ID}, {F_CERT_NAME}, {0}};
static const dom_field set_rate_fields[] = {
    {F_TALENT_ID},
    {F_CURRENCY(true)},
    {F_RATE("hourly_rate", true)},
    {0},
};
static const dom_field set_availability_fields[] = {
    {F_TALENT_ID},
    {F_HOURS(0), .doc = "offered; not below the hours reserved"},
    {0},
};
static const dom_field reserve_capacity_fields[] = {
    {F_TALENT_ID},
    {F_RESERVATION_ID, .doc = "chosen by the caller (a saga); repeating it is safe"},
    {F_HOURS(1), .doc = "out of the hours offered"},
    {0},
};
static const dom_field release_capacity_fields[] = {{F_TALENT_ID}, {F_RESERVATION_ID}, {0}};
static const dom_field archive_profile_fields[] = {{F_TALENT_ID}, {0}};

/* ---- the command, event and query tables ------------------------------------------ */

#define ON_PROFILE .aggregate = &talent_profile_agg, .id_field = "talent_id"

static const dom_command talent_commands[] = {
    {.name = "create_profile",
     .summary = "Creates the profile of a user; a user has at most one",
     .fields = create_profile_fields,
     .aggregate = &talent_profile_agg,
     .creates = true,
     .decide = decide_create_profile},
    {.name = "update_profile",
     .summary = "Changes the given texts of a profile",
     .fields = update_profile_fields,
     ON_PROFILE,
     .decide = decide_update_profile},
    {.name = "add_skill",
     .summary = "Adds a skill, or changes its level and years",
     .fields = add_skill_fields,
     ON_PROFILE,
     .decide = decide_add_skill},
    {.name = "remove_skill",
     .summary = "Removes a skill the profile has",
     .fields = remove_skill_fields,
     ON_PROFILE,
     .decide = decide_remove_skill},
    {.name = "add_certification",
     .summary = "Adds a certification, with its expiry date if it has one",
     .fields = add_certification_fields,
     ON_PROFILE,
     .decide = decide_add_certification},
    {.name = "remove_certification",
     .summary = "Removes a certification by name",
     .fields = remove_certification_fields,
     ON_PROFILE,
     .decide = decide_remove_certification},
    {.name = "set_rate",
     .summary = "Sets the hourly rate; earlier rates stay in the pricing history",
     .fields = set_rate_fields,
     ON_PROFILE,
     .decide = decide_set_rate},
    {.name = "set_availability",
     .summary = "Sets the hours per week the talent offers",
     .fields = set_availability_fields,
     ON_PROFILE,
     .decide = decide_set_availability},
    {.name = "reserve_capacity",
     .summary = "Reserves hours per week out of the availability (hiring saga)",
     .fields = reserve_capacity_fields,
     ON_PROFILE,
     .decide = decide_reserve_capacity},
    {.name = "release_capacity",
     .summary = "Releases a reservation, also on an archived profile (a saga's compensation); "
                "releasing an unknown one succeeds",
     .fields = release_capacity_fields,
     ON_PROFILE,
     .decide = decide_release_capacity},
    {.name = "archive_profile",
     .summary = "Archives a profile: no command changes it afterwards but release_capacity",
     .fields = archive_profile_fields,
     ON_PROFILE,
     .decide = decide_archive_profile},
    {0},
};

static const dom_field ev_profile_created[] = {
    {.name = "talent_id", .type = DOM_UUID, .required = true},
    {.name = "user_id", .type = DOM_UUID, .required = true},
    {F_HEADLINE(true)},
    {F_BIO},
    {F_LOCATION},
    {F_TIMEZONE},
    {0},
};
static const dom_field ev_profile_claimed[] = {
    {.name = "talent_id", .type = DOM_UUID, .required = true, .doc = "the user's profile"},
    {0},
};
static const dom_field ev_profile_updated[] = {
    {F_HEADLINE(false)}, {F_BIO}, {F_LOCATION}, {F_TIMEZONE}, {0},
};
static const dom_field ev_skill_set[] = {{F_SKILL}, {F_LEVEL}, {F_YEARS}, {0}};
static const dom_field ev_skill_removed[] = {{F_SKILL}, {0}};
static const dom_field ev_certification_added[] = {
    {F_CERT_NAME}, {F_ISSUER}, {F_ISSUED_ON}, {F_EXPIRES_ON}, {0},
};
static const dom_field ev_certification_removed[] = {{F_CERT_NAME}, {0}};
static const dom_field ev_rate_set[] = {
    {F_CURRENCY(true)},
    {F_RATE("hourly_rate", true)},
    {.name = "previous_currency", .type = DOM_CURRENCY, .doc = "null for the first rate"},
    {.name = "previous_rate", .type = DOM_INT, .doc = "null for the first rate"},
    {0},
};
static const dom_field ev_availability_set[] = {{F_HOURS(0)}, {0}};
static const dom_field ev_capacity[] = {{F_RESERVATION_ID}, {F_HOURS(1)}, {0}};
static const dom_field ev_profile_archived[] = {{0}};

static const dom_event_doc talent_events[] = {
    {TALENT_EV_PROFILE_CREATED, 1, "A profile was created", ev_profile_created},
    {TALENT_EV_PROFILE_CLAIMED, 1, "A user's one profile, on talent-user-<user_id>",
     ev_profile_claimed},
    {TALENT_EV_PROFILE_UPDATED, 1, "Texts of a profile changed; holds only those",
     ev_profile_updated},
    {TALENT_EV_SKILL_ADDED, 1, "A skill was added", ev_skill_set},
    {TALENT_EV_SKILL_UPDATED, 1, "A skill's level or years changed; holds the new values",
     ev_skill_set},
    {TALENT_EV_SKILL_REMOVED, 1, "A skill was removed", ev_skill_removed},
    {TALENT_EV_CERTIFICATION_ADDED, 1, "A certification was added", ev_certification_added},
    {TALENT_EV_CERTIFICATION_REMOVED, 1, "A certification was removed", ev_certification_removed},
    {TALENT_EV_RATE_SET, 1, "The hourly rate changed", ev_rate_set},
    {TALENT_EV_AVAILABILITY_SET, 1, "The hours per week offered changed", ev_availability_set},
    {TALENT_EV_CAPACITY_RESERVED, 1, "Hours per week were reserved", ev_capacity},
    {TALENT_EV_CAPACITY_RELEASED, 1, "A reservation was released", ev_capacity},
    {TALENT_EV_PROFILE_ARCHIVED, 1, "The profile was archived", ev_profile_archived},
    {0},
};

const dom_domain dom_talent = {
    .name = TALENT_DOMAIN, .commands = talent_commands, .events = talent_events,
    /* queries: answered by the talent read model (projections/talent) */
};
