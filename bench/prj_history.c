/*
 * prj_history.c — the talent history `guild bench project` rebuilds: a
 * deterministic event log with what a talent site's log holds, written
 * straight into an event store with es_append_submit.
 *
 * Map
 *   - pools: skills, locations, currencies, certifications
 *   - ids: UUIDv7-shaped talent and user ids from the generator
 *   - what a profile is known to hold, so that every event is one the talent
 *     domain would have emitted (no skill_updated for a missing skill, no
 *     reservation above the hours offered, nothing after the archive)
 *   - the events: one builder per type
 *   - writing: a window of appends in flight, progress
 *
 * The log: first every profile is created (profile_created on
 * talent-<id>, then profile_claimed on talent-user-<user id>), then events
 * land on profiles drawn uniformly at random. A profile fills in what it
 * lacks first (three skills, a rate, its hours), then changes as profiles
 * do: more skills, new levels, new rates and hours, certifications,
 * reservations and their release, new texts, rarely an archive. Skills and
 * cities are drawn skewed towards the popular ones. The same options give
 * the same log, event times included, so the same read model digest.
 */
#include "prj_bench.h"

#include "common/alloc.h"
#include "common/clock.h"
#include "common/codec.h"
#include "domain/talent/talent.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SEED 0x9E3779B97F4A7C15ull
#define BASE_MS 1704067200000ull /* 2024-01-01T00:00:00Z */
#define STEP_NS 20000000000ll    /* 20 s between appends: a million span about 8 months */
#define MAX_SKILLS 12            /* the site's profiles stop adding skills here */
#define MAX_RESERVATIONS 4
#define PROGRESS_NS 500000000ull

/* ---- pools ------------------------------------------------------------------ */

const char *const prjb_skills[] = {
    "go",
    "rust",
    "c",
    "python",
    "typescript",
    "java",
    "sql",
    "kubernetes",
    "react",
    "postgresql",
    "aws",
    "docker",
    "javascript",
    "c++",
    "kotlin",
    "swift",
    "terraform",
    "linux",
    "kafka",
    "redis",
    "nats",
    "lmdb",
    "gcp",
    "azure",
    "networking",
    "security",
    "graphql",
    "grpc",
    "spark",
    "machine-learning",
    "data-engineering",
    "distributed-systems",
    "cryptography",
    "vue",
    "angular",
    "css",
    "figma",
    "ux-research",
    "product-management",
    "scrum",
    "technical-writing",
    "devops",
    "ci-cd",
    "elixir",
    "haskell",
    "scala",
    "ruby",
    "mysql",
};
const size_t prjb_n_skills = sizeof prjb_skills / sizeof prjb_skills[0];

const char *const prjb_locations[] = {
    "Paris",     "Berlin",    "London",        "Lyon",    "Madrid",     "Amsterdam", "Remote",
    "Lisbon",    "Barcelona", "Munich",        "Milan",   "Brussels",   "Zurich",    "Vienna",
    "Prague",    "Warsaw",    "Stockholm",     "Oslo",    "Copenhagen", "Helsinki",  "Dublin",
    "Rome",      "Hamburg",   "New York",      "Toronto", "Montreal",   "Austin",    "Seattle",
    "Singapore", "Tokyo",     "San Francisco", "Sydney",
};
const size_t prjb_n_locations = sizeof prjb_locations / sizeof prjb_locations[0];

static const char *const timezones[] = {"Europe/Paris",    "Europe/London",  "America/New_York",
                                        "America/Toronto", "Asia/Singapore", "Asia/Tokyo",
                                        "Australia/Sydney"};
#define N_TIMEZONES (sizeof timezones / sizeof timezones[0])

const char *const prjb_currencies[] = {"EUR", "USD", "GBP"};
const size_t prjb_n_currencies = sizeof prjb_currencies / sizeof prjb_currencies[0];

static const char *const certifications[][2] = {
    {"Certified Kubernetes Administrator", "CNCF"},
    {"AWS Solutions Architect", "Amazon Web Services"},
    {"Professional Scrum Master", "Scrum.org"},
    {"CISSP", "ISC2"},
    {"Google Professional Cloud Architect", "Google"},
    {"PMP", "PMI"},
    {"Azure Developer Associate", "Microsoft"},
    {"Terraform Associate", "HashiCorp"},
};
#define N_CERTS (sizeof certifications / sizeof certifications[0])

static const char *const headlines[] = {"Senior %s engineer",      "%s developer",
                                        "Freelance %s consultant", "%s specialist",
                                        "Lead %s engineer",        "%s contractor"};
#define N_HEADLINES (sizeof headlines / sizeof headlines[0])

const char *const prjb_event_types[] = {
    TALENT_EV_PROFILE_CREATED,
    TALENT_EV_PROFILE_CLAIMED,
    TALENT_EV_PROFILE_UPDATED,
    TALENT_EV_SKILL_ADDED,
    TALENT_EV_SKILL_UPDATED,
    TALENT_EV_SKILL_REMOVED,
    TALENT_EV_CERTIFICATION_ADDED,
    TALENT_EV_CERTIFICATION_REMOVED,
    TALENT_EV_RATE_SET,
    TALENT_EV_AVAILABILITY_SET,
    TALENT_EV_CAPACITY_RESERVED,
    TALENT_EV_CAPACITY_RELEASED,
    TALENT_EV_PROFILE_ARCHIVED,
    NULL,
};

enum {
    T_CREATED,
    T_CLAIMED,
    T_UPDATED,
    T_SKILL_ADDED,
    T_SKILL_UPDATED,
    T_SKILL_REMOVED,
    T_CERT_ADDED,
    T_CERT_REMOVED,
    T_RATE,
    T_HOURS,
    T_RESERVED,
    T_RELEASED,
    T_ARCHIVED,
};

/* ---- ids ------------------------------------------------------------------------ */

/* A canonical UUIDv7 made of `ms` and generator bits. */
static void uuid_from(uint64_t ms, uint64_t *rng, char out[37])
{
    uint64_t a = prjb_rand(rng), b = prjb_rand(rng);
    snprintf(out, 37, "%08" PRIx64 "-%04" PRIx64 "-7%03" PRIx64 "-%04" PRIx64 "-%012" PRIx64,
             (ms >> 16) & 0xffffffffu, ms & 0xffffu, a & 0xfffu, 0x8000u | ((a >> 12) & 0x3fffu),
             (uint64_t)(b & 0xffffffffffffull));
}

/* ---- what a profile holds ---------------------------------------------------------- */

typedef struct profile {
    uint64_t skills; /* bit i: prjb_skills[i] */
    uint16_t certs;  /* bit i: certifications[i] */
    uint8_t n_skills, hours, reserved, n_res;
    uint8_t res_hours[MAX_RESERVATIONS];
    uint16_t res_id[MAX_RESERVATIONS];
    uint16_t next_res;
    bool has_rate, archived;
    uint8_t location, currency;
    uint32_t rate;
} profile;

/* ---- writing ------------------------------------------------------------------------ */

typedef struct writer {
    es_store *st;
    prjb_history *h;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned in_flight, window;
    uint64_t rng;
    uint64_t appends_sent;
    char (*user_ids)[37];
    profile *p;
} writer;

static void on_done(void *ctx, es_result *res)
{
    writer *w = ctx;
    pthread_mutex_lock(&w->mu);
    if (res->status == GUILD_OK) {
        w->h->appends++;
    } else {
        w->h->errors++;
        if (!w->h->first_error[0])
            snprintf(w->h->first_error, sizeof w->h->first_error, "%s: %.150s",
                     guild_status_code(res->status), res->error.message);
    }
    w->in_flight--;
    pthread_cond_signal(&w->cv);
    pthread_mutex_unlock(&w->mu);
    es_result_release(res);
}

/* Appends one event of type t with data (taken) to stream, as the talent
 * service would: one command, one append, with a command id and an actor. */
static int submit(writer *w, const char *stream, int t, json_t *data, const char *actor)
{
    char *bytes = NULL, command_id[48];
    size_t len = 0;
    guild_status s = guild_codec_encode(data, GUILD_FMT_MSGPACK, &bytes, &len);
    json_decref(data);
    if (s != GUILD_OK) {
        snprintf(w->h->first_error, sizeof w->h->first_error, "cannot encode an event");
        return -1;
    }
    snprintf(command_id, sizeof command_id, "history-%" PRIu64, w->appends_sent);
    es_event_in ev = {.type = prjb_event_types[t], .schema = 1, .data = bytes, .data_len = len};
    es_append req = {
        .stream = stream,
        .expected_version = ES_ANY_VERSION,
        .prov = {.command_id = command_id, .correlation_id = command_id, .actor = actor},
        .time_ns = (int64_t)(BASE_MS * 1000000) + (int64_t)w->appends_sent * STEP_NS,
        .events = &ev,
        .n_events = 1,
    };
    pthread_mutex_lock(&w->mu);
    while (w->in_flight >= w->window)
        pthread_cond_wait(&w->cv, &w->mu);
    w->in_flight++;
    pthread_mutex_unlock(&w->mu);
    s = es_append_submit(w->st, &req, on_done, w);
    free(bytes);
    if (s != GUILD_OK) {
        pthread_mutex_lock(&w->mu);
        w->in_flight--;
        pthread_mutex_unlock(&w->mu);
        snprintf(w->h->first_error, sizeof w->h->first_error, "es_append_submit: %s",
                 guild_status_code(s));
        return -1;
    }
    w->appends_sent++;
    w->h->by_type[t]++;
    return 0;
}

/* ---- the events ---------------------------------------------------------------------- */

static json_t *skill_data(writer *w, size_t skill)
{
    json_t *d = json_pack("{s:s, s:i}", "skill", prjb_skills[skill], "level",
                          1 + (int)prjb_below(&w->rng, 5));
    if (prjb_below(&w->rng, 4) != 0)
        json_object_set_new(d, "years", json_integer((json_int_t)prjb_below(&w->rng, 25)));
    return d;
}

static json_t *created_data(writer *w, unsigned i)
{
    profile *p = &w->p[i];
    char headline[96], bio[400];
    const char *main_skill = prjb_skills[prjb_skewed(&w->rng, prjb_n_skills)];
    snprintf(headline, sizeof headline, headlines[prjb_below(&w->rng, N_HEADLINES)], main_skill);
    snprintf(bio, sizeof bio,
             "I have built and run %s systems for %zu years, mostly for clients in %s. I like "
             "small teams, clear specifications and code that is easy to delete. Available for "
             "missions of three months or more; remote or on site.",
             main_skill, 2 + prjb_below(&w->rng, 20), prjb_locations[p->location]);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "talent_id", w->h->talent_ids[i], "user_id",
                     w->user_ids[i], "headline", headline, "bio", bio, "location",
                     prjb_locations[p->location], "timezone", timezones[p->location % N_TIMEZONES]);
}

/* A skill the profile has (has = true) or lacks; false when there is none. */
static bool pick_skill(writer *w, const profile *p, bool has, size_t *out)
{
    for (int tries = 0; tries < 64; tries++) {
        size_t s = has ? prjb_below(&w->rng, prjb_n_skills) : prjb_skewed(&w->rng, prjb_n_skills);
        if (((p->skills >> s) & 1) == has) {
            *out = s;
            return true;
        }
    }
    return false;
}

/* One kind of change to a profile: its event's data, with p updated, or
 * NULL when it does not apply to p now (the caller draws again). */
typedef json_t *(*change_fn)(writer *w, profile *p);

static json_t *add_skill(writer *w, profile *p)
{
    size_t s;
    if (p->n_skills >= MAX_SKILLS || !pick_skill(w, p, false, &s))
        return NULL;
    p->skills |= 1ull << s;
    p->n_skills++;
    return skill_data(w, s);
}

static json_t *update_skill(writer *w, profile *p)
{
    size_t s;
    return pick_skill(w, p, true, &s) ? skill_data(w, s) : NULL;
}

static json_t *remove_skill(writer *w, profile *p)
{
    size_t s;
    if (p->n_skills <= 3 || !pick_skill(w, p, true, &s))
        return NULL;
    p->skills &= ~(1ull << s);
    p->n_skills--;
    return json_pack("{s:s}", "skill", prjb_skills[s]);
}

static json_t *set_rate(writer *w, profile *p)
{
    size_t cur = prjb_below(&w->rng, 4) % prjb_n_currencies; /* half of them in EUR */
    uint32_t rate = 2000 + 500 * (uint32_t)prjb_below(&w->rng, 37);
    if (p->has_rate && cur == p->currency && rate == p->rate)
        return NULL;
    json_t *d = json_pack("{s:s, s:I, s:o, s:o}", "currency", prjb_currencies[cur], "hourly_rate",
                          (json_int_t)rate, "previous_currency",
                          p->has_rate ? json_string(prjb_currencies[p->currency]) : json_null(),
                          "previous_rate", p->has_rate ? json_integer(p->rate) : json_null());
    p->has_rate = true;
    p->currency = (uint8_t)cur;
    p->rate = rate;
    return d;
}

static json_t *set_hours(writer *w, profile *p)
{
    unsigned hours = 8 + 4 * (unsigned)prjb_below(&w->rng, 9); /* 8..40 */
    if (hours < p->reserved || hours == p->hours)
        return NULL;
    p->hours = (uint8_t)hours;
    return json_pack("{s:i}", "hours_per_week", (int)hours);
}

static json_t *update_texts(writer *w, profile *p)
{
    char headline[96];
    (void)p;
    snprintf(headline, sizeof headline, headlines[prjb_below(&w->rng, N_HEADLINES)],
             prjb_skills[prjb_skewed(&w->rng, prjb_n_skills)]);
    return json_pack("{s:s}", "headline", headline);
}

static json_t *add_certification(writer *w, profile *p)
{
    size_t c = prjb_below(&w->rng, N_CERTS);
    if ((p->certs >> c) & 1)
        return NULL;
    p->certs |= (uint16_t)(1u << c);
    int year = 2018 + (int)prjb_below(&w->rng, 6);
    char issued[32], expires[48];
    snprintf(issued, sizeof issued, "%d-%02d-15", year, 1 + (int)prjb_below(&w->rng, 12));
    snprintf(expires, sizeof expires, "%d-%s", year + 3, issued + 5);
    return json_pack("{s:s, s:s, s:s, s:s}", "name", certifications[c][0], "issuer",
                     certifications[c][1], "issued_on", issued, "expires_on", expires);
}

static json_t *remove_certification(writer *w, profile *p)
{
    size_t c = prjb_below(&w->rng, N_CERTS);
    if (!((p->certs >> c) & 1))
        return NULL;
    p->certs &= (uint16_t) ~(1u << c);
    return json_pack("{s:s}", "name", certifications[c][0]);
}

static json_t *reserve(writer *w, profile *p)
{
    unsigned hours = 4 + 4 * (unsigned)prjb_below(&w->rng, 4);
    if (p->n_res == MAX_RESERVATIONS || p->reserved + hours > p->hours)
        return NULL;
    char id[32];
    snprintf(id, sizeof id, "alloc-%u", (unsigned)p->next_res);
    p->res_id[p->n_res] = p->next_res++;
    p->res_hours[p->n_res++] = (uint8_t)hours;
    p->reserved = (uint8_t)(p->reserved + hours);
    return json_pack("{s:s, s:i}", "reservation_id", id, "hours_per_week", (int)hours);
}

static json_t *release(writer *w, profile *p)
{
    if (p->n_res == 0)
        return NULL;
    size_t r = prjb_below(&w->rng, p->n_res);
    char id[32];
    snprintf(id, sizeof id, "alloc-%u", (unsigned)p->res_id[r]);
    int hours = p->res_hours[r];
    p->reserved = (uint8_t)(p->reserved - hours);
    p->n_res--;
    p->res_id[r] = p->res_id[p->n_res];
    p->res_hours[r] = p->res_hours[p->n_res];
    return json_pack("{s:s, s:i}", "reservation_id", id, "hours_per_week", hours);
}

static json_t *archive(writer *w, profile *p)
{
    (void)w;
    p->archived = true;
    return json_object();
}

/* How often each change happens to a profile that has filled itself in, in
 * thousandths (the last row takes what is left). */
static const struct {
    unsigned upto;
    int type;
    change_fn fn;
} changes[] = {
    {150, T_RATE, set_rate},
    {250, T_HOURS, set_hours},
    {500, T_SKILL_ADDED, add_skill},
    {700, T_SKILL_UPDATED, update_skill},
    {730, T_SKILL_REMOVED, remove_skill},
    {790, T_UPDATED, update_texts},
    {850, T_CERT_ADDED, add_certification},
    {870, T_CERT_REMOVED, remove_certification},
    {940, T_RESERVED, reserve},
    {997, T_RELEASED, release},
    {1000, T_ARCHIVED, archive},
};

/* What happens next to profile p: *type and its data, or NULL (draw again).
 * A profile first gets three skills, a rate and its hours. */
static json_t *next_event(writer *w, profile *p, int *type)
{
    if (p->n_skills < 3) {
        *type = T_SKILL_ADDED;
        return add_skill(w, p);
    }
    if (!p->has_rate) {
        *type = T_RATE;
        return set_rate(w, p);
    }
    if (p->hours == 0) {
        *type = T_HOURS;
        return set_hours(w, p);
    }
    unsigned roll = (unsigned)prjb_below(&w->rng, 1000);
    size_t i = 0;
    while (roll >= changes[i].upto)
        i++;
    *type = changes[i].type;
    return changes[i].fn(w, p);
}

/* ---- the run ------------------------------------------------------------------------- */

static void progress(const writer *w, uint64_t t0, bool tty, bool last)
{
    if (!tty && !last)
        return;
    char a[32], b[32], c[32];
    double secs = (double)(guild_mono_ns() - t0) / 1e9;
    printf("\r[1/3] writing the talent history: %s of %s events (%s/s)   ",
           bench_fmt_count((double)w->appends_sent, a, sizeof a),
           bench_fmt_count((double)w->h->events, b, sizeof b),
           bench_fmt_count(secs > 0 ? (double)w->appends_sent / secs : 0, c, sizeof c));
    if (last)
        printf("\n");
    fflush(stdout);
}

static int write_all(writer *w, bool tty)
{
    prjb_history *h = w->h;
    uint64_t t0 = guild_mono_ns(), shown = t0;
    char stream[ES_STREAM_MAX + 1];
    for (unsigned i = 0; i < h->profiles && !cmdb_interrupted; i++) {
        snprintf(stream, sizeof stream, "%s-%s", TALENT_DOMAIN, h->talent_ids[i]);
        if (submit(w, stream, T_CREATED, created_data(w, i), w->user_ids[i]) != 0)
            return -1;
        snprintf(stream, sizeof stream, "%s-user-%s", TALENT_DOMAIN, w->user_ids[i]);
        if (submit(w, stream, T_CLAIMED, json_pack("{s:s}", "talent_id", h->talent_ids[i]),
                   w->user_ids[i]) != 0)
            return -1;
        if (guild_mono_ns() - shown > PROGRESS_NS) {
            progress(w, t0, tty, false);
            shown = guild_mono_ns();
        }
    }
    while (w->appends_sent < h->events && !cmdb_interrupted) {
        unsigned i = (unsigned)prjb_below(&w->rng, h->profiles);
        profile *p = &w->p[i];
        int type = 0;
        json_t *data = p->archived ? NULL : next_event(w, p, &type);
        if (!data)
            continue;
        if (type == T_ARCHIVED)
            h->archived++;
        snprintf(stream, sizeof stream, "%s-%s", TALENT_DOMAIN, h->talent_ids[i]);
        if (submit(w, stream, type, data, w->user_ids[i]) != 0)
            return -1;
        if (guild_mono_ns() - shown > PROGRESS_NS) {
            progress(w, t0, tty, false);
            shown = guild_mono_ns();
        }
    }
    pthread_mutex_lock(&w->mu);
    while (w->in_flight > 0)
        pthread_cond_wait(&w->cv, &w->mu);
    pthread_mutex_unlock(&w->mu);
    progress(w, t0, tty, true);
    return cmdb_interrupted ? -1 : 0;
}

int prjb_history_write(const char *dir, prjb_history *h, unsigned window, bool tty)
{
    writer w = {.h = h, .window = window ? window : 1, .rng = SEED};
    es_options o = {.domain = TALENT_DOMAIN, .map_size = (size_t)1 << 30};
    guild_error err = {0};
    if (h->events < 2ull * h->profiles)
        h->events = 2ull * h->profiles;
    h->talent_ids = guild_xcalloc(h->profiles, sizeof *h->talent_ids);
    w.user_ids = guild_xcalloc(h->profiles, sizeof *w.user_ids);
    w.p = guild_xcalloc(h->profiles, sizeof *w.p);
    for (unsigned i = 0; i < h->profiles; i++) {
        uint64_t ms = BASE_MS + (uint64_t)i * 1000;
        uuid_from(ms, &w.rng, h->talent_ids[i]);
        uuid_from(ms - 500, &w.rng, w.user_ids[i]);
        w.p[i].location = (uint8_t)prjb_skewed(&w.rng, prjb_n_locations);
    }
    pthread_mutex_init(&w.mu, NULL);
    pthread_cond_init(&w.cv, NULL);
    int rc = -1;
    uint64_t t0 = guild_mono_ns();
    if (es_store_open(dir, &o, &w.st, &err) != GUILD_OK) {
        snprintf(h->first_error, sizeof h->first_error, "opening the event store in %.80s: %.80s",
                 dir, err.message);
    } else {
        rc = write_all(&w, tty);
        es_store_close(w.st); /* writes the stream index: part of making the store */
    }
    h->seconds = (double)(guild_mono_ns() - t0) / 1e9;
    if (rc == 0 && h->errors) {
        rc = -1;
    }
    char path[4200];
    struct stat sb;
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    if (stat(path, &sb) == 0)
        h->log_bytes = (uint64_t)sb.st_size;
    pthread_cond_destroy(&w.cv);
    pthread_mutex_destroy(&w.mu);
    free(w.user_ids);
    free(w.p);
    return rc;
}

void prjb_history_release(prjb_history *h)
{
    free(h->talent_ids);
    h->talent_ids = NULL;
}
