/*
 * test_talent_model.c — the talent read model, fed by a real event store:
 * events are appended with es_append, read back from the log, applied with
 * prj_store_apply, and read through prj_store_query; the indexes are read
 * straight from the model's LMDB environment (with the store closed).
 *
 * Next to the store, the test keeps its own copy of every profile (m_prof),
 * changed by the same steps that append the events. Search and match
 * answers are compared with a brute force over that copy, index contents
 * with keys built from it, and every row with the talent domain's own
 * evolve of the profile's stream.
 *
 * Sections: fixtures; appending; the test's copy and its events; the brute
 * force; reading the indexes; checks; focused cases; the random history.
 */
#include "common/clock.h"
#include "common/codec.h"
#include "domain/talent/talent.h"
#include "projections/models.h"

#include "tests/support/check_util.h"
#include "tests/support/es_util.h"
#include "tests/support/tmpdir.h"

#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- fixtures ------------------------------------------------------------------- */

typedef struct world {
    char *es_dir, *prj_dir;
    es_store *es;
    prj_store *prj;
    tst_recs recs;
} world;

static void prj_open(world *w)
{
    guild_error err = {0};
    guild_status s = prj_store_open(w->prj_dir, &prj_talent_model, &w->prj, &err);
    ck_assert_msg(s == GUILD_OK, "prj_store_open: %s", err.message);
}

static void world_open(world *w)
{
    memset(w, 0, sizeof *w);
    w->es_dir = tst_dir_new("es");
    w->prj_dir = tst_dir_new("prj");
    ck_assert_status(tst_store_open(w->es_dir, TALENT_DOMAIN, 0, &w->es), GUILD_OK);
    tst_recs_init(&w->recs);
    prj_open(w);
}

static void world_close(world *w)
{
    prj_store_close(w->prj);
    es_store_close(w->es);
    tst_recs_release(&w->recs);
    tst_dir_remove(w->es_dir);
    tst_dir_remove(w->prj_dir);
    free(w->es_dir);
    free(w->prj_dir);
}

/* Applies every event of the log from `from` on into s, `page` at a time. */
static prj_batch_stats apply_log(world *w, prj_store *s, uint64_t from, size_t page)
{
    prj_batch_stats total = {0};
    for (;;) {
        uint64_t next = 0;
        tst_recs_clear(&w->recs);
        ck_assert_status(es_read_log(w->es, from, page, tst_recs_collect, &w->recs, &next),
                         GUILD_OK);
        ck_assert(!w->recs.bad);
        if (w->recs.n == 0)
            return total;
        const es_record **v = malloc(w->recs.n * sizeof *v);
        for (size_t i = 0; i < w->recs.n; i++)
            v[i] = &w->recs.v[i].rec;
        prj_batch_stats st = {0};
        ck_assert_status(prj_store_apply(s, v, w->recs.n, &st), GUILD_OK);
        free(v);
        total.applied += st.applied;
        total.skipped += st.skipped;
        total.parked += st.parked;
        from = next;
    }
}

/* A fresh talent model in a directory of its own, for building again what
 * w's model holds; fresh_close removes both. */
typedef struct fresh {
    char *dir;
    prj_store *s;
} fresh;

static fresh fresh_open(const char *name)
{
    fresh f = {tst_dir_new(name), NULL};
    guild_error err;
    ck_assert_status(prj_store_open(f.dir, &prj_talent_model, &f.s, &err), GUILD_OK);
    return f;
}

/* The fresh model holds what w's does: the same digest at the same
 * position. */
static void assert_same_state(const fresh *f, prj_store *live)
{
    uint8_t digest[PRJ_DIGEST_LEN], again[PRJ_DIGEST_LEN];
    prj_store_digest(live, digest);
    prj_store_digest(f->s, again);
    ck_assert_mem_eq(digest, again, PRJ_DIGEST_LEN);
    ck_assert_uint_eq(prj_store_position(f->s), prj_store_position(live));
}

static void fresh_close(fresh *f)
{
    prj_store_close(f->s);
    tst_dir_remove(f->dir);
    free(f->dir);
}

/* Applies what was appended since the last sync. */
static prj_batch_stats world_sync(world *w)
{
    return apply_log(w, w->prj, prj_store_position(w->prj) + 1, 1000);
}

/* Runs a query (args stolen) as an in-process caller. */
static guild_status query(world *w, const char *name, json_t *args, json_t **data, guild_error *err)
{
    guild_error local;
    uint64_t position = 0;
    *data = NULL;
    guild_status s = prj_store_query(w->prj, name, args, NULL, data, &position, err ? err : &local);
    json_decref(args);
    if (s == GUILD_OK)
        ck_assert_uint_eq(position, prj_store_position(w->prj));
    return s;
}

static json_t *query_ok(world *w, const char *name, json_t *args)
{
    guild_error err = {0};
    json_t *data = NULL;
    guild_status s = query(w, name, args, &data, &err);
    ck_assert_msg(s == GUILD_OK, "%s: %s %s (%s)", name, guild_status_code(s), err.message,
                  err.field);
    ck_assert_ptr_nonnull(data);
    return data;
}

/* ---- appending -----------------------------------------------------------------------
 * A batch holds one append per stream, each with its events in order; its
 * appends are submitted together (one group commit) and awaited. */

typedef struct app {
    char stream[96];
    json_t *events; /* [{type, data}] */
} app;

typedef struct batch {
    app *v;
    size_t n, cap;
} batch;

static void batch_add(batch *b, const char *stream, const char *type, json_t *data)
{
    app *a = NULL;
    for (size_t i = b->n; i > 0 && !a; i--)
        if (strcmp(b->v[i - 1].stream, stream) == 0)
            a = &b->v[i - 1];
    if (!a) {
        if (b->n == b->cap) {
            b->cap = b->cap ? b->cap * 2 : 64;
            b->v = realloc(b->v, b->cap * sizeof *b->v);
        }
        a = &b->v[b->n++];
        snprintf(a->stream, sizeof a->stream, "%s", stream);
        a->events = json_array();
    }
    json_array_append_new(a->events, json_pack("{s:s, s:o}", "type", type, "data", data));
}

static void batch_submit(world *w, batch *b)
{
    tst_latch latch;
    tst_latch_init(&latch, b->n);
    tst_slot *slots = calloc(b->n ? b->n : 1, sizeof *slots);
    for (size_t i = 0; i < b->n; i++) {
        app *a = &b->v[i];
        size_t ne = json_array_size(a->events);
        es_event_in *in = calloc(ne, sizeof *in);
        char **bytes = calloc(ne, sizeof *bytes);
        for (size_t j = 0; j < ne; j++) {
            json_t *e = json_array_get(a->events, j);
            size_t len = 0;
            ck_assert_status(
                guild_codec_encode(json_object_get(e, "data"), GUILD_FMT_MSGPACK, &bytes[j], &len),
                GUILD_OK);
            in[j] = (es_event_in){json_string_value(json_object_get(e, "type")), 1, bytes[j], len};
        }
        es_append req = {
            .stream = a->stream, .expected_version = ES_ANY_VERSION, .events = in, .n_events = ne};
        slots[i].latch = &latch;
        ck_assert_status(es_append_submit(w->es, &req, tst_slot_done, &slots[i]), GUILD_OK);
        for (size_t j = 0; j < ne; j++)
            free(bytes[j]);
        free(bytes);
        free(in);
    }
    ck_assert(tst_latch_wait(&latch, 120000));
    for (size_t i = 0; i < b->n; i++) {
        ck_assert_status(slots[i].res.status, GUILD_OK);
        es_result_release(&slots[i].res);
        json_decref(b->v[i].events);
    }
    tst_latch_destroy(&latch);
    free(slots);
    b->n = 0;
}

static void batch_release(batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        json_decref(b->v[i].events);
    free(b->v);
    memset(b, 0, sizeof *b);
}

/* ---- the test's copy and its events ---------------------------------------------------
 * Each op_ appends the event the talent domain would emit and changes the
 * copy the way the domain's evolve changes a profile. */

#define M_SKILLS 12
#define M_RES 6
#define M_CERTS 4

typedef struct m_skill {
    char name[64];
    int level, years; /* years -1: not given */
} m_skill;

typedef struct m_prof {
    char id[40], user[40];
    char location[640];
    m_skill skills[M_SKILLS];
    int n_skills;
    bool has_rate;
    char currency[4];
    int64_t rate;
    int hours, reserved;
    struct {
        char id[24];
        int hours;
    } res[M_RES];
    int n_res, next_res;
    char certs[M_CERTS][32];
    int n_certs, next_cert;
    bool archived;
} m_prof;

static uint64_t g_rng = 0x9e3779b97f4a7c15ULL;

static uint64_t rnd(void)
{
    return tst_rng_next(&g_rng);
}

/* A uniform integer in lo..hi. */
static int rnd_in(int lo, int hi)
{
    return lo + (int)(rnd() % (uint64_t)(hi - lo + 1));
}

static bool chance(int percent)
{
    return rnd_in(1, 100) <= percent;
}

static void make_uuid(char out[40])
{
    snprintf(out, 40, "%08x-%04x-7%03x-8%03x-%012llx", (unsigned)(rnd() & 0xffffffffu),
             (unsigned)(rnd() & 0xffff), (unsigned)(rnd() & 0xfff), (unsigned)(rnd() & 0xfff),
             (unsigned long long)(rnd() & 0xffffffffffffULL));
}

static int ascii_casecmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        int x = (unsigned char)*a, y = (unsigned char)*b;
        x = x >= 'A' && x <= 'Z' ? x + 32 : x;
        y = y >= 'A' && y <= 'Z' ? y + 32 : y;
        if (x != y || x == 0)
            return x - y;
    }
}

static const char *profile_stream(const m_prof *p, char buf[64])
{
    snprintf(buf, 64, "talent-%s", p->id);
    return buf;
}

static void emit(batch *b, const m_prof *p, const char *type, json_t *data)
{
    char stream[64];
    batch_add(b, profile_stream(p, stream), type, data);
}

static void op_create(batch *b, m_prof *p, const char *id, const char *location)
{
    memset(p, 0, sizeof *p);
    if (id)
        snprintf(p->id, sizeof p->id, "%s", id);
    else
        make_uuid(p->id);
    make_uuid(p->user);
    snprintf(p->location, sizeof p->location, "%s", location);
    emit(b, p, TALENT_EV_PROFILE_CREATED,
         json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "talent_id", p->id, "user_id", p->user,
                   "headline", "Builds things", "bio", "line one\nline two", "location", location,
                   "timezone", "Europe/Paris"));
    char claim[96];
    snprintf(claim, sizeof claim, "talent-user-%s", p->user);
    batch_add(b, claim, TALENT_EV_PROFILE_CLAIMED, json_pack("{s:s}", "talent_id", p->id));
}

static m_skill *m_skill_find(m_prof *p, const char *name)
{
    for (int i = 0; i < p->n_skills; i++)
        if (ascii_casecmp(p->skills[i].name, name) == 0)
            return &p->skills[i];
    return NULL;
}

/* skill_added or skill_updated: either sets the skill, keeping the first
 * spelling of its name. */
static void op_skill(batch *b, m_prof *p, const char *type, const char *name, int level, int years)
{
    json_t *d = json_pack("{s:s, s:i}", "skill", name, "level", level);
    if (years >= 0)
        json_object_set_new(d, "years", json_integer(years));
    emit(b, p, type, d);
    m_skill *s = m_skill_find(p, name);
    if (!s) {
        ck_assert_int_lt(p->n_skills, M_SKILLS);
        s = &p->skills[p->n_skills++];
        snprintf(s->name, sizeof s->name, "%s", name);
    }
    s->level = level;
    s->years = years;
}

static void op_skill_remove(batch *b, m_prof *p, const char *name)
{
    emit(b, p, TALENT_EV_SKILL_REMOVED, json_pack("{s:s}", "skill", name));
    m_skill *s = m_skill_find(p, name);
    if (s) {
        int i = (int)(s - p->skills);
        memmove(&p->skills[i], &p->skills[i + 1], (size_t)(p->n_skills - i - 1) * sizeof *s);
        p->n_skills--;
    }
}

static void op_rate(batch *b, m_prof *p, const char *currency, int64_t rate)
{
    emit(b, p, TALENT_EV_RATE_SET,
         json_pack("{s:s, s:I, s:o, s:o}", "currency", currency, "hourly_rate", (json_int_t)rate,
                   "previous_currency", p->has_rate ? json_string(p->currency) : json_null(),
                   "previous_rate", p->has_rate ? json_integer(p->rate) : json_null()));
    p->has_rate = true;
    snprintf(p->currency, sizeof p->currency, "%s", currency);
    p->rate = rate;
}

static void op_hours(batch *b, m_prof *p, int hours)
{
    emit(b, p, TALENT_EV_AVAILABILITY_SET, json_pack("{s:i}", "hours_per_week", hours));
    p->hours = hours;
}

static void op_reserve(batch *b, m_prof *p, int hours)
{
    ck_assert_int_lt(p->n_res, M_RES);
    snprintf(p->res[p->n_res].id, sizeof p->res[0].id, "res-%d", p->next_res++);
    p->res[p->n_res].hours = hours;
    emit(b, p, TALENT_EV_CAPACITY_RESERVED,
         json_pack("{s:s, s:i}", "reservation_id", p->res[p->n_res].id, "hours_per_week", hours));
    p->n_res++;
    p->reserved += hours;
}

static void op_release(batch *b, m_prof *p, int i)
{
    emit(
        b, p, TALENT_EV_CAPACITY_RELEASED,
        json_pack("{s:s, s:i}", "reservation_id", p->res[i].id, "hours_per_week", p->res[i].hours));
    p->reserved -= p->res[i].hours;
    memmove(&p->res[i], &p->res[i + 1], (size_t)(p->n_res - i - 1) * sizeof p->res[0]);
    p->n_res--;
}

static void op_location(batch *b, m_prof *p, const char *location)
{
    emit(b, p, TALENT_EV_PROFILE_UPDATED,
         json_pack("{s:s, s:s}", "location", location, "headline", "Moved"));
    snprintf(p->location, sizeof p->location, "%s", location);
}

static void op_cert_add(batch *b, m_prof *p)
{
    ck_assert_int_lt(p->n_certs, M_CERTS);
    snprintf(p->certs[p->n_certs], sizeof p->certs[0], "Cert %d", p->next_cert++);
    json_t *d = json_pack("{s:s, s:s, s:s}", "name", p->certs[p->n_certs], "issuer", "Guild",
                          "issued_on", "2024-01-15");
    if (chance(50))
        json_object_set_new(d, "expires_on", json_string("2027-01-15"));
    emit(b, p, TALENT_EV_CERTIFICATION_ADDED, d);
    p->n_certs++;
}

static void op_cert_remove(batch *b, m_prof *p, int i)
{
    emit(b, p, TALENT_EV_CERTIFICATION_REMOVED, json_pack("{s:s}", "name", p->certs[i]));
    memmove(p->certs[i], p->certs[i + 1], (size_t)(p->n_certs - i - 1) * sizeof p->certs[0]);
    p->n_certs--;
}

static void op_archive(batch *b, m_prof *p)
{
    emit(b, p, TALENT_EV_PROFILE_ARCHIVED, json_object());
    p->archived = true;
}

/* ---- the brute force ------------------------------------------------------------------ */

typedef struct sq {
    const char *skills[4];
    int n_skills;
    const char *match; /* NULL: the default, all */
    int min_level;     /* 0: not given */
    const char *currency;
    int64_t max_rate; /* 0: not given */
    const char *location;
    int min_hours; /* -1: not given */
} sq;

static json_t *sq_args(const sq *q, size_t limit, const char *cursor)
{
    json_t *a = json_object();
    if (q->n_skills || chance(10)) {
        json_t *list = json_array();
        for (int i = 0; i < q->n_skills; i++)
            json_array_append_new(list, json_string(q->skills[i]));
        json_object_set_new(a, "skills", list);
    }
    if (q->match)
        json_object_set_new(a, "match", json_string(q->match));
    if (q->min_level)
        json_object_set_new(a, "min_level", json_integer(q->min_level));
    if (q->currency)
        json_object_set_new(a, "currency", json_string(q->currency));
    if (q->max_rate)
        json_object_set_new(a, "max_rate", json_integer(q->max_rate));
    if (q->location)
        json_object_set_new(a, "location", json_string(q->location));
    if (q->min_hours >= 0)
        json_object_set_new(a, "min_hours", json_integer(q->min_hours));
    if (limit)
        json_object_set_new(a, "limit", json_integer((json_int_t)limit));
    if (cursor)
        json_object_set_new(a, "cursor", json_string(cursor));
    return a;
}

static bool m_rate_hours_ok(const m_prof *p, const char *currency, int64_t max_rate, int min_hours)
{
    if (currency &&
        (!p->has_rate || strcmp(p->currency, currency) != 0 || (max_rate && p->rate > max_rate)))
        return false;
    return min_hours < 0 || p->hours - p->reserved >= min_hours;
}

static bool m_search_ok(m_prof *p, const sq *q)
{
    if (p->archived)
        return false;
    int min_level = q->min_level ? q->min_level : 1, met = 0;
    for (int i = 0; i < q->n_skills; i++) {
        m_skill *s = m_skill_find(p, q->skills[i]);
        met += s && s->level >= min_level;
    }
    bool any = q->match && strcmp(q->match, "any") == 0;
    if (q->n_skills && (any ? met == 0 : met < q->n_skills))
        return false;
    if (q->location && ascii_casecmp(p->location, q->location) != 0)
        return false;
    return m_rate_hours_ok(p, q->currency, q->max_rate, q->min_hours);
}

static int prof_ptr_cmp(const void *a, const void *b)
{
    return strcmp((*(m_prof *const *)a)->id, (*(m_prof *const *)b)->id);
}

/* The profiles in id order (a new array of pointers). */
static m_prof **by_id(m_prof *m, size_t n)
{
    m_prof **v = malloc((n ? n : 1) * sizeof *v);
    for (size_t i = 0; i < n; i++)
        v[i] = &m[i];
    qsort(v, n, sizeof *v, prof_ptr_cmp);
    return v;
}

typedef struct mreq {
    const char *skill;
    int min_level; /* 0: not given (1) */
} mreq;

typedef struct mq {
    mreq reqs[4];
    int n;
    const char *currency;
    int64_t max_rate;
    int min_hours;
    int limit; /* 0: not given (20) */
} mq;

typedef struct m_match {
    const m_prof *p;
    int points;
    unsigned met;
} m_match;

static int m_match_cmp(const void *a, const void *b)
{
    const m_match *x = a, *y = b;
    if (x->points != y->points)
        return x->points > y->points ? -1 : 1;
    return strcmp(x->p->id, y->p->id);
}

static json_t *mq_args(const mq *q, const char *name_of_skills)
{
    json_t *reqs = json_array();
    for (int i = 0; i < q->n; i++) {
        json_t *r = json_pack("{s:s}", "skill", q->reqs[i].skill);
        if (q->reqs[i].min_level)
            json_object_set_new(r, "min_level", json_integer(q->reqs[i].min_level));
        json_array_append_new(reqs, r);
    }
    json_t *a = json_pack("{s:o}", name_of_skills, reqs);
    if (q->currency)
        json_object_set_new(a, "currency", json_string(q->currency));
    if (q->max_rate)
        json_object_set_new(a, "max_rate", json_integer(q->max_rate));
    if (q->min_hours >= 0)
        json_object_set_new(a, "min_hours", json_integer(q->min_hours));
    if (q->limit)
        json_object_set_new(a, "limit", json_integer(q->limit));
    return a;
}

/* What match must answer, by brute force: {results [{talent_id, score,
 * missing}]}. */
static json_t *m_match_expect(m_prof *m, size_t n, const mq *q)
{
    m_match *c = malloc((n ? n : 1) * sizeof *c);
    size_t nc = 0;
    for (size_t i = 0; i < n; i++) {
        m_prof *p = &m[i];
        if (p->archived || !m_rate_hours_ok(p, q->currency, q->max_rate, q->min_hours))
            continue;
        m_match x = {p, 0, 0};
        for (int j = 0; j < q->n; j++) {
            int min = q->reqs[j].min_level ? q->reqs[j].min_level : 1;
            m_skill *s = m_skill_find(p, q->reqs[j].skill);
            if (s && s->level >= min) {
                x.points += 50 + (s->level - min);
                x.met |= 1u << j;
            }
        }
        if (x.met)
            c[nc++] = x;
    }
    qsort(c, nc, sizeof *c, m_match_cmp);
    size_t limit = q->limit ? (size_t)q->limit : 20;
    json_t *results = json_array();
    for (size_t i = 0; i < nc && i < limit; i++) {
        json_t *missing = json_array();
        for (int j = 0; j < q->n; j++)
            if (!(c[i].met & (1u << j)))
                json_array_append_new(missing, json_string(q->reqs[j].skill));
        double score = (double)c[i].points / (50 * (double)q->n);
        json_array_append_new(results, json_pack("{s:s, s:f, s:o}", "talent_id", c[i].p->id,
                                                 "score", score, "missing", missing));
    }
    free(c);
    return json_pack("{s:o}", "results", results);
}

/* ---- reading the indexes ----------------------------------------------------------------
 * Index entries as lines "db hex(key) = hex(value)", sorted: what the model
 * holds (read with the store closed) and what it must hold (from the copy). */

typedef struct lines {
    char **v;
    size_t n, cap;
} lines;

static void lines_push(lines *l, const char *db, const uint8_t *k, size_t kn, const uint8_t *v,
                       size_t vn)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 256;
        l->v = realloc(l->v, l->cap * sizeof *l->v);
    }
    char *s = malloc(strlen(db) + 2 * (kn + vn) + 8), *o = s;
    o += sprintf(o, "%s ", db);
    for (size_t i = 0; i < kn; i++)
        o += sprintf(o, "%02x", k[i]);
    o += sprintf(o, " = ");
    for (size_t i = 0; i < vn; i++)
        o += sprintf(o, "%02x", v[i]);
    l->v[l->n++] = s;
}

static int str_ptr_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void lines_release(lines *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static const char *const index_dbs[] = {"by_skill", "by_location", "by_rate",
                                        "by_hours", "counts",      NULL};

/* A model's environment opened read-only (its store closed), with a read
 * transaction; env_close ends both. */
static MDB_txn *env_open_ro(const char *dir, MDB_env **env)
{
    MDB_txn *txn;
    ck_assert_int_eq(mdb_env_create(env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(*env, 16), 0);
    ck_assert_int_eq(mdb_env_open(*env, dir, MDB_RDONLY, 0644), 0);
    ck_assert_int_eq(mdb_txn_begin(*env, NULL, MDB_RDONLY, &txn), 0);
    return txn;
}

static void env_close(MDB_env *env, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    mdb_env_close(env);
}

static void indexes_read(world *w, lines *out)
{
    prj_store_close(w->prj);
    w->prj = NULL;
    MDB_env *env;
    MDB_txn *txn = env_open_ro(w->prj_dir, &env);
    for (const char *const *db = index_dbs; *db; db++) {
        MDB_dbi dbi;
        MDB_cursor *cur;
        MDB_val k, v;
        ck_assert_int_eq(mdb_dbi_open(txn, *db, 0, &dbi), 0);
        ck_assert_int_eq(mdb_cursor_open(txn, dbi, &cur), 0);
        for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT))
            lines_push(out, *db, k.mv_data, k.mv_size, v.mv_data, v.mv_size);
        mdb_cursor_close(cur);
    }
    env_close(env, txn);
    qsort(out->v, out->n, sizeof *out->v, str_ptr_cmp);
    prj_open(w);
}

/* Appends lower(s) (ASCII) to key; at most max bytes of s. */
static size_t put_lower(uint8_t *key, const char *s, size_t max)
{
    size_t n = strlen(s) < max ? strlen(s) : max;
    for (size_t i = 0; i < n; i++)
        key[i] = (uint8_t)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] + 32 : s[i]);
    return n;
}

static void put_be64(uint8_t *out, uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

/* The entry db: key ‖ id, and one more for its count under ckey. */
static void expect_entry(lines *out, lines *counts, const char *db, const uint8_t *key, size_t kn,
                         const char *id, const uint8_t *ckey, size_t cn)
{
    uint8_t full[600];
    memcpy(full, key, kn);
    memcpy(full + kn, id, strlen(id));
    lines_push(out, db, full, kn + strlen(id), NULL, 0);
    lines_push(counts, "", ckey, cn, NULL, 0);
}

static void indexes_expected(m_prof *m, size_t n, lines *out)
{
    lines counts = {0};
    for (size_t i = 0; i < n; i++) {
        m_prof *p = &m[i];
        uint8_t key[600], ck[600];
        if (p->archived)
            continue;
        for (int j = 0; j < p->n_skills; j++) {
            size_t k = put_lower(key, p->skills[j].name, 64);
            key[k] = 0;
            key[k + 1] = (uint8_t)p->skills[j].level;
            key[k + 2] = 0;
            ck[0] = 's';
            memcpy(ck + 1, key, k + 2);
            expect_entry(out, &counts, "by_skill", key, k + 3, p->id, ck, k + 3);
        }
        size_t k = put_lower(key, p->location, 400);
        key[k] = 0;
        ck[0] = 'l';
        memcpy(ck + 1, key, k);
        expect_entry(out, &counts, "by_location", key, k + 1, p->id, ck, k + 1);
        if (p->has_rate) {
            memcpy(key, p->currency, 3);
            key[3] = 0;
            put_be64(key + 4, (uint64_t)p->rate);
            key[12] = 0;
            ck[0] = 'c';
            memcpy(ck + 1, p->currency, 3);
            expect_entry(out, &counts, "by_rate", key, 13, p->id, ck, 4);
        }
        int free_hours = p->hours - p->reserved;
        key[0] = (uint8_t)(free_hours < 0 ? 0 : free_hours);
        ck[0] = 'h';
        ck[1] = key[0];
        expect_entry(out, &counts, "by_hours", key, 1, p->id, ck, 2);
    }
    /* counts: each distinct count key with how often it came */
    qsort(counts.v, counts.n, sizeof *counts.v, str_ptr_cmp);
    for (size_t i = 0; i < counts.n;) {
        size_t j = i;
        while (j < counts.n && strcmp(counts.v[j], counts.v[i]) == 0)
            j++;
        /* counts.v[i] is " <hex> = "; turn the hex back into bytes */
        uint8_t key[600], val[8];
        size_t kn = 0;
        for (const char *h = counts.v[i] + 1; h[0] && h[0] != ' '; h += 2) {
            unsigned x;
            sscanf(h, "%2x", &x);
            key[kn++] = (uint8_t)x;
        }
        put_be64(val, j - i);
        lines_push(out, "counts", key, kn, val, 8);
        i = j;
    }
    lines_release(&counts);
    qsort(out->v, out->n, sizeof *out->v, str_ptr_cmp);
}

/* ---- checks -------------------------------------------------------------------------------- */

/* The indexes hold exactly the entries the copy calls for, no more. */
static void check_indexes(world *w, m_prof *m, size_t n)
{
    lines got = {0}, want = {0};
    indexes_read(w, &got);
    indexes_expected(m, n, &want);
    for (size_t i = 0; i < got.n || i < want.n; i++) {
        const char *g = i < got.n ? got.v[i] : "(none)", *x = i < want.n ? want.v[i] : "(none)";
        ck_assert_msg(strcmp(g, x) == 0, "index entry %zu of %zu/%zu: got %s, want %s", i, got.n,
                      want.n, g, x);
    }
    lines_release(&got);
    lines_release(&want);
}

static json_t *time_string(int64_t ns)
{
    char buf[48];
    return json_string(guild_time_format(ns, buf, sizeof buf));
}

static void assert_same(const json_t *a, const json_t *b, const char *what, const char *id)
{
    if (json_equal(a, b))
        return;
    char *x = json_dumps(a, JSON_COMPACT | JSON_ENCODE_ANY),
         *y = json_dumps(b, JSON_COMPACT | JSON_ENCODE_ANY);
    ck_abort_msg("%s of %s: model %s, domain %s", what, id, x ? x : "NULL", y ? y : "NULL");
}

/* The row of a profile says what the talent domain's evolve makes of its
 * stream. */
static void check_row_against_domain(world *w, const char *id)
{
    char stream[96];
    tst_recs recs;
    snprintf(stream, sizeof stream, "talent-%s", id);
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_stream(w->es, stream, &recs), GUILD_OK);
    void *state = talent_profile_agg.create();
    uint64_t version = 0;
    for (size_t i = 0; i < recs.n; i++) {
        const es_record *rec = &recs.v[i].rec;
        char type[ES_TYPE_MAX + 1];
        json_t *data = NULL;
        snprintf(type, sizeof type, "%.*s", (int)rec->type.n, rec->type.p);
        ck_assert_status(
            guild_codec_decode(rec->data, rec->data_len, GUILD_FMT_MSGPACK, &data, NULL), GUILD_OK);
        dom_event_meta meta = {.version = rec->version, .time = rec->time};
        ck_assert_status(talent_profile_agg.evolve(state, type, data, &meta), GUILD_OK);
        json_decref(data);
        if (strcmp(type, "profile_featured") != 0)
            version = rec->version;
    }
    json_t *dom = talent_profile_to_json(state);
    json_t *row = query_ok(w, "get_profile", json_pack("{s:s}", "talent_id", id));

    static const char *const same[] = {"talent_id",
                                       "user_id",
                                       "headline",
                                       "bio",
                                       "location",
                                       "timezone",
                                       "archived",
                                       "skills",
                                       "certifications",
                                       "hours_per_week",
                                       "reserved_hours",
                                       "reservations",
                                       NULL};
    for (const char *const *k = same; *k; k++)
        assert_same(json_object_get(row, *k), json_object_get(dom, *k), *k, id);

    json_t *rate = json_object_get(dom, "rate");
    assert_same(json_object_get(row, "currency"),
                json_is_null(rate) ? json_null() : json_object_get(rate, "currency"), "currency",
                id);
    assert_same(json_object_get(row, "hourly_rate"),
                json_is_null(rate) ? json_null() : json_object_get(rate, "hourly_rate"),
                "hourly_rate", id);
    json_t *history = json_copy(json_object_get(dom, "pricing_history"));
    size_t i;
    json_t *h;
    json_array_foreach(history, i, h)
    {
        json_object_set_new(h, "since",
                            time_string(json_integer_value(json_object_get(h, "since"))));
    }
    assert_same(json_object_get(row, "pricing_history"), history, "pricing_history", id);
    json_decref(history);

    json_t *t = time_string(json_integer_value(json_object_get(dom, "created_at")));
    assert_same(json_object_get(row, "created"), t, "created", id);
    json_decref(t);
    t = time_string(json_integer_value(json_object_get(dom, "updated_at")));
    assert_same(json_object_get(row, "updated"), t, "updated", id);
    json_decref(t);
    ck_assert_int_eq(json_integer_value(json_object_get(row, "version")), (json_int_t)version);

    json_decref(row);
    json_decref(dom);
    talent_profile_agg.destroy(state);
    tst_recs_release(&recs);
}

static bool m_prof_matches_row(const m_prof *p, const json_t *row)
{
    return strcmp(json_string_value(json_object_get(row, "talent_id")), p->id) == 0 &&
           strcmp(json_string_value(json_object_get(row, "location")), p->location) == 0 &&
           json_integer_value(json_object_get(row, "hours_per_week")) == p->hours &&
           json_integer_value(json_object_get(row, "reserved_hours")) == p->reserved &&
           json_array_size(json_object_get(row, "skills")) == (size_t)p->n_skills &&
           !json_is_true(json_object_get(row, "archived"));
}

/* Pages through a search until next_cursor is null and compares every
 * page with the brute force over the copy (sorted by id in `sorted`). */
static void check_search(world *w, m_prof **sorted, size_t n, const sq *q, size_t limit)
{
    m_prof **want = malloc((n ? n : 1) * sizeof *want);
    size_t nw = 0, got = 0, pages = 0;
    for (size_t i = 0; i < n; i++)
        if (m_search_ok(sorted[i], q))
            want[nw++] = sorted[i];
    size_t page = limit ? limit : 20;
    char cursor[80] = "";
    for (;;) {
        json_t *data = query_ok(w, "search", sq_args(q, limit, cursor[0] ? cursor : NULL));
        json_t *results = json_object_get(data, "results"),
               *next = json_object_get(data, "next_cursor");
        size_t nr = json_array_size(results);
        size_t expect = nw - got < page ? nw - got : page;
        ck_assert_msg(nr == expect, "page %zu: %zu results, want %zu (of %zu)", pages, nr, expect,
                      nw);
        for (size_t i = 0; i < nr; i++) {
            json_t *row = json_array_get(results, i);
            ck_assert_msg(m_prof_matches_row(want[got + i], row), "result %zu: got %s, want %s",
                          got + i, json_string_value(json_object_get(row, "talent_id")),
                          want[got + i]->id);
        }
        got += nr;
        pages++;
        if (got < nw) {
            ck_assert_msg(json_is_string(next), "next_cursor is null with %zu left", nw - got);
            ck_assert_str_eq(json_string_value(next), want[got - 1]->id);
            snprintf(cursor, sizeof cursor, "%s", json_string_value(next));
        } else {
            ck_assert_msg(json_is_null(next), "next_cursor after the last result");
        }
        json_decref(data);
        if (got == nw)
            break;
    }
    ck_assert_uint_eq(pages, nw ? (nw + page - 1) / page : 1);
    free(want);
}

static void check_match(world *w, m_prof *m, size_t n, const mq *q, const char *name)
{
    json_t *want = m_match_expect(m, n, q);
    json_t *got = query_ok(w, name, mq_args(q, "skills"));
    if (!json_equal(got, want)) {
        char *g = json_dumps(got, JSON_COMPACT), *x = json_dumps(want, JSON_COMPACT);
        ck_abort_msg("%s: got %.2000s\nwant %.2000s", name, g, x);
    }
    json_decref(got);
    json_decref(want);
}

/* ---- focused cases -----------------------------------------------------------------------------
 */

#define ID_A "0193a5b0-0000-7000-8000-00000000000a"
#define ID_B "0193a5b0-0000-7000-8000-00000000000b"
#define ID_C "0193a5b0-0000-7000-8000-00000000000c"
#define ID_D "0193a5b0-0000-7000-8000-00000000000d"
#define ID_NONE "0193a5b0-0000-7000-8000-0000000000ff"

START_TEST(get_profile_of_an_unknown_id_is_not_found)
{
    world w;
    world_open(&w);
    guild_error err = {0};
    json_t *data = NULL;
    ck_assert_status(
        query(&w, "get_profile", json_pack("{s:s}", "talent_id", ID_NONE), &data, &err),
        GUILD_NOT_FOUND);
    ck_assert_str_eq(err.field, "talent_id");
    ck_assert_ptr_null(data);

    batch b = {0};
    m_prof a;
    op_create(&b, &a, ID_A, "Paris");
    batch_submit(&w, &b);
    world_sync(&w);
    ck_assert_status(
        query(&w, "get_profile", json_pack("{s:s}", "talent_id", ID_NONE), &data, NULL),
        GUILD_NOT_FOUND);
    data = query_ok(&w, "get_profile", json_pack("{s:s}", "talent_id", ID_A));
    ck_assert_str_eq(json_string_value(json_object_get(data, "talent_id")), ID_A);
    json_decref(data);
    batch_release(&b);
    world_close(&w);
}
END_TEST

START_TEST(a_profile_row_holds_what_its_events_say)
{
    world w;
    world_open(&w);
    batch b = {0};
    m_prof a;
    op_create(&b, &a, ID_A, "Lisbon");
    op_skill(&b, &a, TALENT_EV_SKILL_ADDED, "Go", 3, 4);
    op_skill(&b, &a, TALENT_EV_SKILL_ADDED, "Rust", 2, -1);
    op_skill(&b, &a, TALENT_EV_SKILL_ADDED, "GO", 4, 5); /* the same skill: keeps "Go" */
    op_cert_add(&b, &a);
    op_rate(&b, &a, "EUR", 6500);
    op_rate(&b, &a, "USD", 7000);
    op_hours(&b, &a, 40);
    op_reserve(&b, &a, 15);
    batch_submit(&w, &b);
    prj_batch_stats st = world_sync(&w);
    ck_assert_uint_eq(st.applied, 10); /* with profile_claimed, ignored */
    ck_assert_uint_eq(st.parked, 0);

    json_t *row = query_ok(&w, "get_profile", json_pack("{s:s}", "talent_id", ID_A));
    json_t *skills = json_pack("[{s:s, s:i, s:i}, {s:s, s:i}]", "skill", "Go", "level", 4, "years",
                               5, "skill", "Rust", "level", 2);
    ck_assert(json_equal(json_object_get(row, "skills"), skills));
    json_decref(skills);
    ck_assert_str_eq(json_string_value(json_object_get(row, "user_id")), a.user);
    ck_assert_str_eq(json_string_value(json_object_get(row, "location")), "Lisbon");
    ck_assert_str_eq(json_string_value(json_object_get(row, "currency")), "USD");
    ck_assert_int_eq(json_integer_value(json_object_get(row, "hourly_rate")), 7000);
    ck_assert_uint_eq(json_array_size(json_object_get(row, "pricing_history")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(row, "hours_per_week")), 40);
    ck_assert_int_eq(json_integer_value(json_object_get(row, "reserved_hours")), 15);
    ck_assert_int_eq(json_integer_value(json_object_get(row, "version")), 9);
    ck_assert(json_is_false(json_object_get(row, "archived")));
    ck_assert(json_is_string(json_object_get(row, "created")));
    json_decref(row);
    check_row_against_domain(&w, ID_A);
    batch_release(&b);
    world_close(&w);
}
END_TEST

START_TEST(indexes_follow_every_change_exactly)
{
    world w;
    world_open(&w);
    batch b = {0};
    m_prof m[3];
    /* 150 three-byte characters: longer than the 400 bytes a key keeps */
    char far[460] = "";
    for (int i = 0; i < 150; i++)
        strcat(far, "\xe2\x82\xac");

    op_create(&b, &m[0], ID_A, "Paris");
    op_skill(&b, &m[0], TALENT_EV_SKILL_ADDED, "Go", 3, 2);
    op_rate(&b, &m[0], "EUR", 5000);
    op_hours(&b, &m[0], 40);
    op_create(&b, &m[1], ID_B, "paris");
    op_skill(&b, &m[1], TALENT_EV_SKILL_ADDED, "go", 4, -1);
    op_create(&b, &m[2], ID_C, far);
    op_rate(&b, &m[2], "EUR", 5000);
    batch_submit(&w, &b);
    world_sync(&w);
    check_indexes(&w, m, 3);

    op_skill(&b, &m[0], TALENT_EV_SKILL_UPDATED, "Go", 5, 2);
    op_location(&b, &m[0], "Berlin");
    op_rate(&b, &m[0], "USD", 7000);
    op_reserve(&b, &m[0], 10);
    op_skill(&b, &m[1], TALENT_EV_SKILL_ADDED, "Rust", 1, 1);
    op_skill(&b, &m[1], TALENT_EV_SKILL_ADDED, "Distributed-Systems-Engineering", 2, 3);
    batch_submit(&w, &b);
    world_sync(&w);
    check_indexes(&w, m, 3);

    op_skill_remove(&b, &m[0], "GO");
    op_release(&b, &m[0], 0);
    op_hours(&b, &m[1], 80);
    op_skill(&b, &m[1], TALENT_EV_SKILL_UPDATED, "DISTRIBUTED-systems-engineering", 4, -1);
    batch_submit(&w, &b);
    world_sync(&w);
    check_indexes(&w, m, 3);

    op_archive(&b, &m[1]);
    op_archive(&b, &m[2]);
    batch_submit(&w, &b);
    world_sync(&w);
    check_indexes(&w, m, 3);

    /* archived rows stay readable and leave every search */
    json_t *row = query_ok(&w, "get_profile", json_pack("{s:s}", "talent_id", ID_B));
    ck_assert(json_is_true(json_object_get(row, "archived")));
    json_decref(row);
    json_t *data = query_ok(&w, "search", json_pack("{s:[s]}", "skills", "rust"));
    ck_assert_uint_eq(json_array_size(json_object_get(data, "results")), 0);
    json_decref(data);
    data = query_ok(&w, "search", json_object());
    ck_assert_uint_eq(json_array_size(json_object_get(data, "results")), 1);
    json_decref(data);
    for (int i = 0; i < 3; i++)
        check_row_against_domain(&w, m[i].id);
    batch_release(&b);
    world_close(&w);
}
END_TEST

static int count_dead(void *ctx, uint64_t position, const char *reason, const char *type,
                      const char *stream)
{
    (void)position, (void)type, (void)stream;
    ck_assert(strstr(reason, "corrupt") != NULL);
    (*(int *)ctx)++;
    return 0;
}

START_TEST(claims_and_unknown_events_are_ignored_and_impossible_ones_parked)
{
    world w;
    world_open(&w);
    batch b = {0};
    m_prof a;
    op_create(&b, &a, ID_A, "Paris");
    op_skill(&b, &a, TALENT_EV_SKILL_ADDED, "Go", 3, -1);
    emit(&b, &a, "profile_featured", json_pack("{s:b}", "on", 1));
    emit(&b, &a, TALENT_EV_SKILL_ADDED, json_pack("{s:s}", "skill", "Rust")); /* no level */
    emit(&b, &a, TALENT_EV_SKILL_ADDED, json_pack("{s:s, s:i}", "skill", "Zig", "level", 9));
    batch_add(&b, "talent-" ID_NONE, TALENT_EV_SKILL_ADDED,
              json_pack("{s:s, s:i}", "skill", "Go", "level", 2)); /* no such profile */
    batch_submit(&w, &b);
    prj_batch_stats st = world_sync(&w);
    ck_assert_uint_eq(st.parked, 3);
    ck_assert_uint_eq(st.applied, 4);
    int dead = 0;
    ck_assert_status(prj_store_dead_letters(w.prj, count_dead, &dead), GUILD_OK);
    ck_assert_int_eq(dead, 3);

    guild_error err;
    json_t *data;
    ck_assert_status(
        query(&w, "get_profile", json_pack("{s:s}", "talent_id", ID_NONE), &data, &err),
        GUILD_NOT_FOUND);
    json_t *row = query_ok(&w, "get_profile", json_pack("{s:s}", "talent_id", ID_A));
    ck_assert_uint_eq(json_array_size(json_object_get(row, "skills")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(row, "version")), 2);
    json_decref(row);
    check_indexes(&w, &a, 1);

    /* A replay (the rebuild's loop, long transactions read ahead) parks the
     * same events and reaches the same state. */
    fresh f = fresh_open("replay");
    ck_assert_status(prj_store_replay(f.s, w.es, 0, 0, NULL, NULL), GUILD_OK);
    assert_same_state(&f, w.prj);
    dead = 0;
    ck_assert_status(prj_store_dead_letters(f.s, count_dead, &dead), GUILD_OK);
    ck_assert_int_eq(dead, 3);
    fresh_close(&f);
    batch_release(&b);
    world_close(&w);
}
END_TEST

typedef struct dead_seen {
    int n;
    uint64_t position;
    char type[64], stream[96];
} dead_seen;

static int note_dead(void *ctx, uint64_t position, const char *reason, const char *type,
                     const char *stream)
{
    dead_seen *d = ctx;
    (void)reason;
    d->n++;
    d->position = position;
    snprintf(d->type, sizeof d->type, "%s", type);
    snprintf(d->stream, sizeof d->stream, "%s", stream);
    return 0;
}

static bool file_holds(const char *path, const char *needle)
{
    size_t len = 0;
    unsigned char *bytes = tst_file_read(path, &len);
    ck_assert_msg(bytes != NULL, "cannot read %s", path);
    size_t n = strlen(needle);
    bool found = false;
    for (size_t i = 0; !found && i + n <= len; i++)
        found = memcmp(bytes + i, needle, n) == 0;
    free(bytes);
    return found;
}

/* Appends skill_added (with a "note" in its data) to the stream of
 * ID_NONE, which has no profile, and applies it: it is parked. Its
 * position. */
static uint64_t park_a_skill_of_no_profile(world *w, const char *note)
{
    batch b = {0};
    m_prof ghost;
    memset(&ghost, 0, sizeof ghost);
    snprintf(ghost.id, sizeof ghost.id, "%s", ID_NONE);
    emit(&b, &ghost, TALENT_EV_SKILL_ADDED,
         json_pack("{s:s, s:i, s:s}", "skill", "Go", "level", 2, "note", note));
    batch_submit(w, &b);
    batch_release(&b);
    ck_assert_uint_eq(world_sync(w).parked, 1);
    return prj_store_position(w->prj);
}

/* The profile of ID_NONE, created and applied. */
static void create_the_missing_profile(world *w)
{
    batch b = {0};
    m_prof p;
    op_create(&b, &p, ID_NONE, "Oslo");
    batch_submit(w, &b);
    batch_release(&b);
    world_sync(w);
}

/* A dead letter names the event and why, not what it said (an event's
 * data may hold what a read model must not); a retry reads the event from
 * the log, and applies it once it can. */
START_TEST(a_dead_letter_keeps_no_data_and_a_retry_reads_the_event_from_the_log)
{
    static const char marker[] = "not-for-the-read-model-5f1c";
    world w;
    world_open(&w);
    park_a_skill_of_no_profile(&w, marker);

    dead_seen d = {0};
    ck_assert_status(prj_store_dead_letters(w.prj, note_dead, &d), GUILD_OK);
    ck_assert_int_eq(d.n, 1);
    ck_assert_uint_eq(d.position, prj_store_position(w.prj));
    ck_assert_str_eq(d.type, TALENT_EV_SKILL_ADDED);
    ck_assert_str_eq(d.stream, "talent-" ID_NONE);
    char path[1024];
    snprintf(path, sizeof path, "%s/data.mdb", w.prj_dir);
    ck_assert_msg(!file_holds(path, marker), "the model's environment holds the event's data");

    /* Without the log nothing can be retried; with it, the event still
     * fails while its profile does not exist ... */
    uint64_t retried = 9, left = 9;
    ck_assert_status(prj_store_retry(w.prj, NULL, &retried, &left), GUILD_OK);
    ck_assert_uint_eq(retried, 0);
    ck_assert_uint_eq(left, 1);
    ck_assert_status(prj_store_retry(w.prj, w.es, &retried, &left), GUILD_OK);
    ck_assert_uint_eq(retried, 0);
    ck_assert_uint_eq(left, 1);

    /* ... and applies once it does. */
    create_the_missing_profile(&w);
    ck_assert_status(prj_store_retry(w.prj, w.es, &retried, &left), GUILD_OK);
    ck_assert_uint_eq(retried, 1);
    ck_assert_uint_eq(left, 0);
    d.n = 0;
    ck_assert_status(prj_store_dead_letters(w.prj, note_dead, &d), GUILD_OK);
    ck_assert_int_eq(d.n, 0);
    json_t *row = query_ok(&w, "get_profile", json_pack("{s:s}", "talent_id", ID_NONE));
    json_t *skills = json_object_get(row, "skills");
    ck_assert_uint_eq(json_array_size(skills), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(skills, 0), "skill")), "Go");
    json_decref(row);
    world_close(&w);
}
END_TEST

typedef struct raw_copy {
    uint8_t *bytes;
    size_t len;
} raw_copy;

static int copy_raw(void *ctx, const es_record *rec)
{
    raw_copy *c = ctx;
    c->bytes = malloc(rec->raw_len);
    memcpy(c->bytes, rec->raw, rec->raw_len);
    c->len = rec->raw_len;
    return 1;
}

/* Closes the model's store and begins a write transaction on its
 * environment, with database `db` open: changes behind the store's back.
 * model_write_end commits and closes. */
static MDB_txn *model_write_begin(world *w, const char *db, MDB_env **env, MDB_dbi *dbi)
{
    prj_store_close(w->prj);
    w->prj = NULL;
    MDB_txn *txn;
    ck_assert_int_eq(mdb_env_create(env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(*env, 16), 0);
    ck_assert_int_eq(mdb_env_open(*env, w->prj_dir, 0, 0644), 0);
    ck_assert_int_eq(mdb_txn_begin(*env, NULL, 0, &txn), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, db, 0, dbi), 0);
    return txn;
}

static void model_write_end(MDB_env *env, MDB_txn *txn)
{
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

/* Rewrites the dead letter at `position` as earlier versions wrote them:
 * u32 length, a msgpack map with the reason alone, then the raw record. */
static void letter_in_old_format(world *w, uint64_t position, const uint8_t *raw, size_t raw_len)
{
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn = model_write_begin(w, "prj.dead", &env, &dbi);
    static const uint8_t entry[] = {0x81, 0xa6, 'r', 'e', 'a', 's', 'o', 'n',
                                    0xa6, 'p',  'a', 'r', 'k', 'e', 'd'};
    size_t total = 4 + sizeof entry + raw_len;
    uint8_t *v = malloc(total);
    v[0] = v[1] = v[2] = 0;
    v[3] = (uint8_t)sizeof entry;
    memcpy(v + 4, entry, sizeof entry);
    memcpy(v + 4 + sizeof entry, raw, raw_len);
    uint8_t key[8];
    for (int i = 0; i < 8; i++)
        key[i] = (uint8_t)(position >> (56 - 8 * i));
    MDB_val k = {8, key}, val = {total, v};
    ck_assert_int_eq(mdb_put(txn, dbi, &k, &val, 0), 0);
    model_write_end(env, txn);
    free(v);
    prj_open(w);
}

/* Dead letters parked by earlier versions carry the raw record: they list
 * with their type and stream, and retry from their own bytes, or from the
 * log when those do not decode. */
START_TEST(dead_letters_of_earlier_versions_still_list_and_retry)
{
    world w;
    world_open(&w);
    uint64_t position = park_a_skill_of_no_profile(&w, "");
    raw_copy raw = {0};
    ck_assert_status(es_read_log(w.es, position, 1, copy_raw, &raw, NULL), GUILD_OK);
    ck_assert_ptr_nonnull(raw.bytes);

    /* with its record: listed by name, retried without the log */
    letter_in_old_format(&w, position, raw.bytes, raw.len);
    dead_seen d = {0};
    ck_assert_status(prj_store_dead_letters(w.prj, note_dead, &d), GUILD_OK);
    ck_assert_int_eq(d.n, 1);
    ck_assert_str_eq(d.type, TALENT_EV_SKILL_ADDED);
    ck_assert_str_eq(d.stream, "talent-" ID_NONE);
    create_the_missing_profile(&w);
    uint64_t retried = 0, left = 0;
    ck_assert_status(prj_store_retry(w.prj, NULL, &retried, &left), GUILD_OK);
    ck_assert_uint_eq(retried, 1);
    ck_assert_uint_eq(left, 0);

    /* with bytes that do not decode: read from the log instead */
    static const uint8_t junk[] = {0xc1, 0xc1, 0xc1};
    letter_in_old_format(&w, position, junk, sizeof junk);
    ck_assert_status(prj_store_retry(w.prj, NULL, &retried, &left), GUILD_OK);
    ck_assert_uint_eq(left, 1);
    ck_assert_status(prj_store_retry(w.prj, w.es, &retried, &left), GUILD_OK);
    ck_assert_uint_eq(left, 0);
    free(raw.bytes);
    world_close(&w);
}
END_TEST

/* The store keeps a batch's rows for the next one, and the fold changes
 * them in place: a batch that fails half-way must leave no trace of its
 * first half, and its careful rerun must apply each event once. */
START_TEST(a_failed_batch_leaves_no_half_folded_row_behind)
{
    world w;
    world_open(&w);
    batch b = {0};
    m_prof a;
    op_create(&b, &a, ID_A, "Paris");
    op_rate(&b, &a, "EUR", 100);
    batch_submit(&w, &b);
    prj_batch_stats st = world_sync(&w);
    ck_assert_uint_eq(st.parked, 0);

    op_rate(&b, &a, "EUR", 200);
    op_skill(&b, &a, TALENT_EV_SKILL_ADDED, "Go", 3, -1);
    emit(&b, &a, TALENT_EV_SKILL_ADDED, json_pack("{s:s, s:i}", "skill", "Zig", "level", 9));
    op_rate(&b, &a, "EUR", 300);
    batch_submit(&w, &b);
    st = world_sync(&w);
    ck_assert_uint_eq(st.applied, 3);
    ck_assert_uint_eq(st.parked, 1);

    json_t *row = query_ok(&w, "get_profile", json_pack("{s:s}", "talent_id", ID_A));
    json_t *history = json_object_get(row, "pricing_history");
    ck_assert_msg(json_array_size(history) == 3, "pricing history: %s",
                  json_dumps(history, JSON_COMPACT));
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(history, 1), "hourly_rate")),
                     200);
    ck_assert_int_eq(json_integer_value(json_object_get(row, "hourly_rate")), 300);
    ck_assert_uint_eq(json_array_size(json_object_get(row, "skills")), 1);
    json_decref(row);
    check_indexes(&w, &a, 1);

    /* The same state as a model that never kept anything: one event a batch. */
    fresh f = fresh_open("one-by-one");
    apply_log(&w, f.s, 1, 1);
    assert_same_state(&f, w.prj);
    fresh_close(&f);
    batch_release(&b);
    world_close(&w);
}
END_TEST

/* Deletes one key of the model's database `db` behind its store's back
 * (the store closed and opened again around it). */
static void model_key_delete(world *w, const char *db, const void *key, size_t klen)
{
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn = model_write_begin(w, db, &env, &dbi);
    MDB_val k = {klen, (void *)key};
    ck_assert_int_eq(mdb_del(txn, dbi, &k, NULL), 0);
    model_write_end(env, txn);
    prj_open(w);
}

static int note_reason(void *ctx, uint64_t position, const char *reason, const char *type,
                       const char *stream)
{
    (void)position, (void)stream;
    snprintf(ctx, 200, "%s %s", type, reason);
    return 0;
}

/* A row's index entries are written when the batch is (once for all the
 * events that changed the row): one that cannot be (here a count the model
 * lost, which a removal would take below zero) parks the event that asked
 * for it, with the reason, and the batch's other events still apply; the
 * same in a replay's long transaction (by_replay). */
static void index_write_failure_case(bool by_replay)
{
    world w;
    world_open(&w);
    batch b = {0};
    m_prof a;
    op_create(&b, &a, ID_A, "Paris");
    op_skill(&b, &a, TALENT_EV_SKILL_ADDED, "Go", 3, -1);
    batch_submit(&w, &b);
    ck_assert_uint_eq(world_sync(&w).parked, 0);
    model_key_delete(&w, "counts", "sgo\0\3", 5); /* go at level 3: one profile */

    op_rate(&b, &a, "EUR", 100);
    op_skill_remove(&b, &a, "Go");
    op_rate(&b, &a, "EUR", 200);
    batch_submit(&w, &b);
    if (by_replay) {
        ck_assert_status(prj_store_replay(w.prj, w.es, 0, 0, NULL, NULL), GUILD_OK);
        uint64_t head = 0;
        ck_assert_status(es_log_head(w.es, &head, NULL), GUILD_OK);
        ck_assert_uint_eq(prj_store_position(w.prj), head);
    } else {
        prj_batch_stats st = world_sync(&w);
        ck_assert_uint_eq(st.parked, 1);
        ck_assert_uint_eq(st.applied, 2);
    }
    char seen[200] = "";
    ck_assert_status(prj_store_dead_letters(w.prj, note_reason, seen), GUILD_OK);
    ck_assert_msg(strstr(seen, TALENT_EV_SKILL_REMOVED " ") == seen &&
                      strstr(seen, "an index count would go below zero"),
                  "dead letter (%s): %s", by_replay ? "replay" : "apply", seen);
    json_t *row = query_ok(&w, "get_profile", json_pack("{s:s}", "talent_id", ID_A));
    ck_assert_uint_eq(json_array_size(json_object_get(row, "skills")), 1); /* not removed */
    ck_assert_int_eq(json_integer_value(json_object_get(row, "hourly_rate")), 200);
    json_decref(row);
    batch_release(&b);
    world_close(&w);
}

START_TEST(an_index_write_that_fails_parks_the_event_that_made_it)
{
    index_write_failure_case(false);
    index_write_failure_case(true);
}
END_TEST

START_TEST(queries_refuse_what_they_cannot_answer)
{
    world w;
    world_open(&w);
    guild_error err;
    json_t *data;
    ck_assert_status(query(&w, "search", json_pack("{s:i}", "max_rate", 5000), &data, &err),
                     GUILD_VALIDATION_FAILED);
    ck_assert_str_eq(err.field, "currency");
    ck_assert_status(query(&w, "search",
                           json_pack("{s:[s,s,s,s,s,s,s,s,s,s,s]}", "skills", "a", "b", "c", "d",
                                     "e", "f", "g", "h", "i", "j", "k"),
                           &data, &err),
                     GUILD_VALIDATION_FAILED);
    ck_assert_str_eq(err.field, "skills");
    ck_assert_status(query(&w, "search", json_pack("{s:i}", "min_level", 6), &data, &err),
                     GUILD_VALIDATION_FAILED);
    ck_assert_status(query(&w, "search", json_pack("{s:i}", "min_hours", 81), &data, &err),
                     GUILD_VALIDATION_FAILED);
    ck_assert_status(query(&w, "search", json_pack("{s:s}", "match", "most"), &data, &err),
                     GUILD_VALIDATION_FAILED);
    ck_assert_status(query(&w, "match", json_pack("{s:[]}", "skills"), &data, &err),
                     GUILD_VALIDATION_FAILED);
    ck_assert_status(query(&w, "match_job", json_object(), &data, &err), GUILD_VALIDATION_FAILED);
    ck_assert_status(query(&w, "match",
                           json_pack("{s:[{s:s}], s:i}", "skills", "skill", "go", "max_rate", 10),
                           &data, &err),
                     GUILD_VALIDATION_FAILED);
    ck_assert_str_eq(err.field, "currency");
    ck_assert_status(query(&w, "match",
                           json_pack("{s:[{s:s, s:i}]}", "skills", "skill", "go", "level", 2),
                           &data, &err),
                     GUILD_VALIDATION_FAILED);

    /* a token-less caller is refused; any valid token may ask */
    dom_actor anonymous = {.user_id = "", .session_id = ""};
    dom_actor someone = {.user_id = ID_B, .session_id = ""};
    json_t *args = json_object();
    ck_assert_status(prj_store_query(w.prj, "search", args, &anonymous, &data, NULL, &err),
                     GUILD_UNAUTHENTICATED);
    ck_assert_status(prj_store_query(w.prj, "search", args, &someone, &data, NULL, &err), GUILD_OK);
    json_decref(args);
    ck_assert(json_is_null(json_object_get(data, "next_cursor")));
    json_decref(data);
    world_close(&w);
}
END_TEST

/* A: Go 5, Rust 2, Paris, EUR 60, 40 h; B: go 3, paris, EUR 40, 20 h with
 * 15 reserved; C: Python 4, Go 1, Berlin, USD 50, 30 h; D (archived): Go 4,
 * Rust 4, Paris, EUR 90, 10 h. */
static void small_world(world *w, m_prof m[4])
{
    batch b = {0};
    op_create(&b, &m[0], ID_A, "Paris");
    op_skill(&b, &m[0], TALENT_EV_SKILL_ADDED, "Go", 5, 8);
    op_skill(&b, &m[0], TALENT_EV_SKILL_ADDED, "Rust", 2, 1);
    op_rate(&b, &m[0], "EUR", 6000);
    op_hours(&b, &m[0], 40);
    op_create(&b, &m[1], ID_B, "paris");
    op_skill(&b, &m[1], TALENT_EV_SKILL_ADDED, "go", 3, -1);
    op_rate(&b, &m[1], "EUR", 4000);
    op_hours(&b, &m[1], 20);
    op_reserve(&b, &m[1], 15);
    op_create(&b, &m[2], ID_C, "Berlin");
    op_skill(&b, &m[2], TALENT_EV_SKILL_ADDED, "Python", 4, 3);
    op_skill(&b, &m[2], TALENT_EV_SKILL_ADDED, "Go", 1, 0);
    op_rate(&b, &m[2], "USD", 5000);
    op_hours(&b, &m[2], 30);
    op_create(&b, &m[3], ID_D, "Paris");
    op_skill(&b, &m[3], TALENT_EV_SKILL_ADDED, "Go", 4, 2);
    op_skill(&b, &m[3], TALENT_EV_SKILL_ADDED, "Rust", 4, 2);
    op_rate(&b, &m[3], "EUR", 9000);
    op_hours(&b, &m[3], 10);
    op_archive(&b, &m[3]);
    batch_submit(w, &b);
    batch_release(&b);
    world_sync(w);
}

/* The talent ids of a search's results, joined by spaces. */
static char *ids_of(world *w, json_t *args)
{
    json_t *data = query_ok(w, "search", args);
    static char buf[512];
    buf[0] = 0;
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(data, "results"), i, row)
    {
        const char *id = json_string_value(json_object_get(row, "talent_id"));
        strcat(buf, buf[0] ? " " : "");
        strcat(buf, id + strlen(id) - 1); /* the last character names it */
    }
    json_decref(data);
    return buf;
}

START_TEST(search_filters_by_skills_location_rate_and_hours)
{
    world w;
    m_prof m[4];
    world_open(&w);
    small_world(&w, m);
    ck_assert_str_eq(ids_of(&w, json_pack("{s:[s]}", "skills", "GO")), "a b c");
    ck_assert_str_eq(ids_of(&w, json_pack("{s:[s], s:i}", "skills", "go", "min_level", 3)), "a b");
    ck_assert_str_eq(ids_of(&w, json_pack("{s:[s,s]}", "skills", "go", "rust")), "a");
    ck_assert_str_eq(ids_of(&w, json_pack("{s:[s,s], s:s, s:i}", "skills", "go", "rust", "match",
                                          "any", "min_level", 2)),
                     "a b");
    ck_assert_str_eq(
        ids_of(&w, json_pack("{s:[s,s], s:s}", "skills", "python", "rust", "match", "any")), "a c");
    ck_assert_str_eq(ids_of(&w, json_pack("{s:[s]}", "skills", "cobol")), "");
    ck_assert_str_eq(ids_of(&w, json_pack("{s:s}", "location", "PARIS")), "a b");
    ck_assert_str_eq(ids_of(&w, json_pack("{s:s}", "location", "Pari")), "");
    ck_assert_str_eq(ids_of(&w, json_pack("{s:s, s:i}", "currency", "EUR", "max_rate", 5000)), "b");
    ck_assert_str_eq(ids_of(&w, json_pack("{s:s}", "currency", "EUR")), "a b");
    /* Ordered by rate or hours, with a cursor past the last id: an empty id
     * list, sorted as such. */
    ck_assert_str_eq(ids_of(&w, json_pack("{s:s, s:s}", "currency", "EUR", "cursor", "~")), "");
    ck_assert_str_eq(ids_of(&w, json_pack("{s:i, s:s}", "min_hours", 1, "cursor", "~")), "");
    ck_assert_str_eq(ids_of(&w, json_pack("{s:i}", "min_hours", 6)), "a c");
    ck_assert_str_eq(ids_of(&w, json_pack("{s:i}", "min_hours", 0)), "a b c");
    ck_assert_str_eq(ids_of(&w, json_pack("{s:[s], s:s, s:i}", "skills", "go", "location", "paris",
                                          "min_hours", 10)),
                     "a");
    ck_assert_str_eq(ids_of(&w, json_object()), "a b c");
    world_close(&w);
}
END_TEST

START_TEST(search_pages_with_the_last_id_as_cursor)
{
    world w;
    m_prof m[4];
    world_open(&w);
    small_world(&w, m);
    const char *want[] = {ID_A, ID_B, ID_C};
    const char *cursor = NULL;
    json_t *data = NULL;
    for (int page = 0; page < 3; page++) {
        json_t *args = json_pack("{s:i}", "limit", 1);
        if (cursor)
            json_object_set_new(args, "cursor", json_string(cursor));
        json_t *next = query_ok(&w, "search", args);
        json_decref(data);
        data = next;
        json_t *results = json_object_get(data, "results");
        ck_assert_uint_eq(json_array_size(results), 1);
        ck_assert_str_eq(
            json_string_value(json_object_get(json_array_get(results, 0), "talent_id")),
            want[page]);
        cursor = json_string_value(json_object_get(data, "next_cursor"));
        if (page < 2)
            ck_assert_str_eq(cursor, want[page]);
        else
            ck_assert_ptr_null(cursor);
    }
    json_decref(data);
    /* a page that ends exactly at the last result has no next cursor */
    data = query_ok(&w, "search", json_pack("{s:i, s:s}", "limit", 2, "cursor", ID_A));
    ck_assert_uint_eq(json_array_size(json_object_get(data, "results")), 2);
    ck_assert(json_is_null(json_object_get(data, "next_cursor")));
    json_decref(data);
    world_close(&w);
}
END_TEST

START_TEST(match_ranks_by_requirements_met_then_levels_above)
{
    world w;
    m_prof m[4];
    world_open(&w);
    small_world(&w, m);
    json_t *want =
        json_pack("{s:[{s:s, s:f, s:[]}, {s:s, s:f, s:[s]}]}", "results", "talent_id", ID_A,
                  "score", 1.03, "missing", "talent_id", ID_B, "score", 0.5, "missing", "Rust");
    for (int i = 0; i < 2; i++) {
        json_t *got = query_ok(&w, i ? "match_job" : "match",
                               json_pack("{s:[{s:s, s:i}, {s:s}]}", "skills", "skill", "go",
                                         "min_level", 3, "skill", "Rust"));
        ck_assert_msg(json_equal(got, want), "%s", json_dumps(got, JSON_COMPACT));
        json_decref(got);
    }
    json_decref(want);

    /* No profile has the skill: no hits at all, and no result. */
    json_t *none = query_ok(&w, "match", json_pack("{s:[{s:s}]}", "skills", "skill", "cobol"));
    ck_assert_uint_eq(json_array_size(json_object_get(none, "results")), 0);
    json_decref(none);

    json_t *got =
        query_ok(&w, "match",
                 json_pack("{s:[{s:s, s:i}, {s:s}], s:s, s:i}", "skills", "skill", "go",
                           "min_level", 3, "skill", "Rust", "currency", "EUR", "max_rate", 5000));
    json_t *results = json_object_get(got, "results");
    ck_assert_uint_eq(json_array_size(results), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(results, 0), "talent_id")),
                     ID_B);
    json_decref(got);

    /* B has 5 free hours; A (Go 5: 1 + 4 x 0.02) outranks C (Go 1: 1) */
    got = query_ok(
        &w, "match",
        json_pack("{s:[{s:s}], s:i, s:i}", "skills", "skill", "GO", "min_hours", 6, "limit", 1));
    results = json_object_get(got, "results");
    ck_assert_uint_eq(json_array_size(results), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(results, 0), "talent_id")),
                     ID_A);
    ck_assert(json_real_value(json_object_get(json_array_get(results, 0), "score")) == 1.08);
    json_decref(got);
    world_close(&w);
}
END_TEST

/* ---- the random history --------------------------------------------------------------------- */

static const char *const skill_pool[] = {
    "go", "rust", "c", "python", "java", "kotlin", "swift", "sql", "react", "vue", "docker", "k8s",
    "terra", "aws", "gcp", "azure", "figma", "ux", "seo", "excel", "r", "scala", "elixir",
    "haskell",
    /* longer than a row keeps inline */
    "distributed-systems-engineering", "machine-learning-operations-at-scale"};
static const char *const location_pool[] = {
    "Paris",  "Berlin", "Lisbon",  "New York", "S\xc3\xa3o Paulo", "Tokyo",
    "Remote", "Lagos",  "Toronto", "Sydney",   "Mumbai",           ""};
static const char *const currency_pool[] = {"EUR", "USD", "GBP"};

#define POOL(p) (sizeof(p) / sizeof((p)[0]))
#define PICK(p) ((p)[rnd() % POOL(p)])

/* s with each ASCII letter's case drawn at random, in a static buffer
 * (one of four, so a few may be held at once). */
static const char *random_case(const char *s)
{
    static char bufs[4][64];
    static int at;
    char *out = bufs[at++ % 4];
    snprintf(out, 64, "%s", s);
    for (char *c = out; *c; c++)
        if (((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z')) && chance(30))
            *c = (char)(*c ^ 0x20);
    return out;
}

static void random_skill_change(batch *b, m_prof *p)
{
    int pick = rnd_in(0, 2);
    if (pick == 0 && p->n_skills < M_SKILLS) {
        const char *name = random_case(PICK(skill_pool));
        m_skill *have = m_skill_find(p, name);
        /* a known skill in another spelling goes through skill_added too */
        op_skill(b, p, have && chance(50) ? TALENT_EV_SKILL_UPDATED : TALENT_EV_SKILL_ADDED,
                 have && chance(50) ? have->name : name, rnd_in(1, 5),
                 chance(70) ? rnd_in(0, 20) : -1);
    } else if (pick == 1 && p->n_skills) {
        m_skill *s = &p->skills[rnd() % (unsigned)p->n_skills];
        op_skill(b, p, TALENT_EV_SKILL_UPDATED, s->name, rnd_in(1, 5), s->years);
    } else if (p->n_skills) {
        op_skill_remove(b, p, random_case(p->skills[rnd() % (unsigned)p->n_skills].name));
    }
}

static void random_change(batch *b, m_prof *p)
{
    if (p->archived) {
        if (p->n_res)
            op_release(b, p, rnd_in(0, p->n_res - 1));
        return;
    }
    switch (rnd_in(0, 10)) {
    case 0:
    case 1:
    case 2:
        random_skill_change(b, p);
        break;
    case 3:
        op_rate(b, p, PICK(currency_pool), rnd_in(10, 200) * 100);
        break;
    case 4:
        op_hours(b, p, rnd_in(p->reserved, 80));
        break;
    case 5:
        if (p->n_res < M_RES && p->hours > p->reserved)
            op_reserve(b, p, rnd_in(1, p->hours - p->reserved));
        break;
    case 6:
        if (p->n_res)
            op_release(b, p, rnd_in(0, p->n_res - 1));
        break;
    case 7:
        op_location(b, p, random_case(PICK(location_pool)));
        break;
    case 8:
        if (p->n_certs && chance(50))
            op_cert_remove(b, p, rnd_in(0, p->n_certs - 1));
        else if (p->n_certs < M_CERTS)
            op_cert_add(b, p);
        break;
    default:
        if (chance(25))
            op_archive(b, p);
        break;
    }
}

static void random_profile(batch *b, m_prof *p)
{
    op_create(b, p, NULL, random_case(PICK(location_pool)));
    for (int k = rnd_in(0, 6); k > 0; k--)
        op_skill(b, p, TALENT_EV_SKILL_ADDED, random_case(PICK(skill_pool)), rnd_in(1, 5),
                 chance(70) ? rnd_in(0, 20) : -1);
    if (chance(85))
        op_rate(b, p, PICK(currency_pool), rnd_in(10, 200) * 100);
    if (chance(90))
        op_hours(b, p, rnd_in(0, 80));
    if (p->hours && chance(30))
        op_reserve(b, p, rnd_in(1, p->hours));
    if (chance(20))
        op_cert_add(b, p);
}

static void random_search(sq *q)
{
    memset(q, 0, sizeof *q);
    q->min_hours = -1;
    if (chance(70)) {
        q->n_skills = rnd_in(1, 3);
        for (int i = 0; i < q->n_skills; i++)
            q->skills[i] = chance(5) ? "cobol" : random_case(PICK(skill_pool));
    }
    q->match = chance(30) ? "any" : chance(30) ? "all" : NULL;
    q->min_level = chance(60) ? rnd_in(1, 5) : 0;
    if (chance(35)) {
        q->currency = PICK(currency_pool);
        q->max_rate = chance(70) ? rnd_in(10, 200) * 100 + rnd_in(-1, 1) : 0;
    }
    if (chance(25))
        q->location = chance(10) ? "Atlantis" : random_case(PICK(location_pool));
    if (chance(30))
        q->min_hours = rnd_in(0, 80);
}

static void random_match(mq *q)
{
    memset(q, 0, sizeof *q);
    q->min_hours = -1;
    /* skill names are copied: random_case reuses its buffers */
    static char names[4][64];
    q->n = rnd_in(1, 4);
    for (int i = 0; i < q->n; i++) {
        snprintf(names[i], sizeof names[i], "%s",
                 chance(5) ? "cobol" : random_case(PICK(skill_pool)));
        q->reqs[i] = (mreq){names[i], chance(60) ? rnd_in(1, 5) : 0};
    }
    if (chance(30)) {
        q->currency = PICK(currency_pool);
        q->max_rate = chance(70) ? rnd_in(10, 200) * 100 : 0;
    }
    if (chance(30))
        q->min_hours = rnd_in(0, 80);
    q->limit = chance(70) ? rnd_in(1, 100) : 0;
}

#define N_PROFILES 2000
#define N_ROUNDS 8
#define CHANGES_PER_ROUND 800
#define N_SEARCHES 200
#define N_MATCHES 100

START_TEST(random_history_answers_as_a_brute_force_would)
{
    world w;
    world_open(&w);
    m_prof *m = calloc(N_PROFILES, sizeof *m);
    batch b = {0};
    for (size_t i = 0; i < N_PROFILES; i++)
        random_profile(&b, &m[i]);
    batch_submit(&w, &b);
    prj_batch_stats st = world_sync(&w);
    ck_assert_uint_eq(st.parked, 0);

    for (int round = 0; round < N_ROUNDS; round++) {
        for (int k = 0; k < CHANGES_PER_ROUND; k++)
            random_change(&b, &m[rnd() % N_PROFILES]);
        batch_submit(&w, &b);
        st = world_sync(&w);
        ck_assert_uint_eq(st.parked, 0);
    }
    check_indexes(&w, m, N_PROFILES);

    m_prof **sorted = by_id(m, N_PROFILES);
    for (int i = 0; i < N_SEARCHES; i++) {
        sq q;
        random_search(&q);
        size_t expected = 0;
        for (size_t k = 0; k < N_PROFILES; k++)
            expected += m_search_ok(sorted[k], &q);
        /* at most about 25 pages per query */
        size_t limit = chance(20) && expected <= 500 ? 0 : (size_t)rnd_in(1, 100);
        if (limit && expected / limit > 25)
            limit = expected / 25 + 1 > 100 ? 100 : expected / 25 + 1;
        check_search(&w, sorted, N_PROFILES, &q, limit);
    }
    for (int i = 0; i < N_MATCHES; i++) {
        mq q;
        random_match(&q);
        check_match(&w, m, N_PROFILES, &q, i % 2 ? "match_job" : "match");
    }
    for (size_t i = 0; i < N_PROFILES; i += 7)
        check_row_against_domain(&w, m[i].id);

    /* a rebuild in other batch sizes reaches the same state */
    fresh f = fresh_open("rebuild");
    apply_log(&w, f.s, 1, 4321);
    assert_same_state(&f, w.prj);
    fresh_close(&f);

    free(sorted);
    free(m);
    batch_release(&b);
    world_close(&w);
}
END_TEST

/* ---- large transactions ------------------------------------------------------------------
 * A flush of at least 65,536 dirty entries (PREP_MIN in projections/store.c)
 * sorts them (prj_wcache_sort_dirty, a radix sort), encodes the rows and
 * hashes every entry on two threads (prep_run), and a cache that grew past
 * WCACHE_KEEP is freed on a thread of its own after the commit
 * (prj_wcache_clear_behind). A replay puts up to 1,048,576 events in one
 * transaction, so a history of many profiles reaches that path; a replay
 * of 1000 events a transaction, and the live path (prj_store_apply in pages
 * of 1000), never do. The three must reach the same state. */

/* A profile with one or two skills (distinct ones), a rate and hours, now
 * and then a reservation or a certification: 4 + skills keys of the model
 * (the row, a by_skill entry a skill, by_location, by_rate, by_hours). */
static void big_profile(batch *b, m_prof *p)
{
    op_create(b, p, NULL, random_case(PICK(location_pool)));
    size_t first = rnd() % POOL(skill_pool);
    op_skill(b, p, TALENT_EV_SKILL_ADDED, random_case(skill_pool[first]), rnd_in(1, 5),
             chance(70) ? rnd_in(0, 20) : -1);
    if (chance(50))
        op_skill(b, p, TALENT_EV_SKILL_ADDED,
                 random_case(
                     skill_pool[(first + 1 + rnd() % (POOL(skill_pool) - 1)) % POOL(skill_pool)]),
                 rnd_in(1, 5), -1);
    op_rate(b, p, PICK(currency_pool), rnd_in(10, 200) * 100);
    op_hours(b, p, rnd_in(1, 80));
    if (chance(10))
        op_reserve(b, p, rnd_in(1, p->hours));
    if (chance(10))
        op_cert_add(b, p);
}

/* Appends profiles m[from..to) (a batch holds a few thousand streams at
 * most: batch_add looks its stream up from the end). */
static void append_profiles(world *w, m_prof *m, size_t from, size_t to)
{
    batch b = {0};
    for (size_t i = from; i < to; i++) {
        big_profile(&b, &m[i]);
        if ((i + 1 - from) % 1000 == 0 || i + 1 == to)
            batch_submit(w, &b);
    }
    batch_release(&b);
}

/* Appends `n` random changes to profiles among m[0..among). */
static void append_changes(world *w, m_prof *m, size_t among, size_t n)
{
    batch b = {0};
    for (size_t k = 0; k < n; k++) {
        random_change(&b, &m[rnd() % among]);
        if ((k + 1) % 1000 == 0 || k + 1 == n)
            batch_submit(w, &b);
    }
    batch_release(&b);
}

/* The keys of the model's own databases, counts aside, that the copy calls
 * for: a row a profile, and the index entries of each live one. */
static size_t m_keys(const m_prof *m, size_t from, size_t to)
{
    size_t n = 0;
    for (size_t i = from; i < to; i++)
        n += m[i].archived ? 1 : 3 + (size_t)m[i].n_skills + m[i].has_rate;
    return n;
}

/* What a replay went through: its commits, events and parked ones. */
typedef struct replay_seen {
    size_t commits, events;
    size_t in_txn, most_in_txn; /* events of the open transaction, of the largest */
    uint64_t parked;
} replay_seen;

static int replay_count(void *ctx, uint64_t position, const prj_batch_stats *page, size_t events,
                        double apply_seconds)
{
    (void)position, (void)apply_seconds;
    replay_seen *r = ctx;
    if (events == 0) {
        r->commits++;
        r->most_in_txn = r->in_txn > r->most_in_txn ? r->in_txn : r->most_in_txn;
        r->in_txn = 0;
    }
    r->events += events;
    r->in_txn += events;
    r->parked += page->parked;
    return 0;
}

static replay_seen replay(fresh *f, es_store *log, uint64_t stop_at, size_t per_txn)
{
    replay_seen seen = {0};
    ck_assert_status(prj_store_replay(f->s, log, stop_at, per_txn, replay_count, &seen), GUILD_OK);
    ck_assert_uint_eq(seen.parked, 0);
    return seen;
}

/* The entries of the model's databases (counts aside, and counts apart),
 * read from its environment with the store closed; it opens again after. */
static size_t fresh_entries(fresh *f, size_t *counts)
{
    prj_store_close(f->s);
    f->s = NULL;
    MDB_env *env;
    MDB_txn *txn = env_open_ro(f->dir, &env);
    size_t n = 0;
    *counts = 0;
    for (const char *const *db = prj_talent_model.dbs; *db; db++) {
        MDB_dbi dbi;
        MDB_stat st;
        ck_assert_int_eq(mdb_dbi_open(txn, *db, 0, &dbi), 0);
        ck_assert_int_eq(mdb_stat(txn, dbi, &st), 0);
        if (strcmp(*db, "counts") == 0)
            *counts = st.ms_entries;
        else
            n += st.ms_entries;
    }
    env_close(env, txn);
    guild_error err;
    ck_assert_status(prj_store_open(f->dir, &prj_talent_model, &f->s, &err), GUILD_OK);
    return n;
}

/* The profile's row, by get_profile; its JSON written from the stored
 * bytes (prj_store_query_json) is checked against the row's, on the way. */
static json_t *row_of(prj_store *s, const char *id)
{
    guild_error err = {0};
    json_t *args = json_pack("{s:s}", "talent_id", id), *data = NULL;
    guild_status st = prj_store_query(s, "get_profile", args, NULL, &data, NULL, &err);
    ck_assert_msg(st == GUILD_OK, "get_profile %s: %s %s", id, guild_status_code(st), err.message);
    guild_buf text = {0};
    bool done = false;
    st = prj_store_query_json(s, "get_profile", args, NULL, &text, NULL, &done, &err);
    json_decref(args);
    ck_assert_msg(st == GUILD_OK && done, "get_profile %s as JSON: %s %s", id,
                  guild_status_code(st), err.message);
    char *want = NULL;
    size_t n = 0;
    ck_assert_status(guild_codec_encode(data, GUILD_FMT_JSON, &want, &n), GUILD_OK);
    ck_assert_msg(text.len == n && memcmp(text.data, want, n) == 0,
                  "get_profile %s as JSON:\n%.*s\nthe row's:\n%s", id, (int)text.len, text.data,
                  want);
    free(want);
    free(text.data);
    return data;
}

/* The stores hold the same state: one position, one digest, and the same
 * row for every `step`-th profile. */
static void assert_same_stores(prj_store *const *s, int n, const m_prof *m, size_t n_prof,
                               size_t step)
{
    uint64_t pos0, pos;
    uint8_t d0[PRJ_DIGEST_LEN], d[PRJ_DIGEST_LEN];
    prj_store_snapshot(s[0], &pos0, d0);
    for (int i = 1; i < n; i++) {
        prj_store_snapshot(s[i], &pos, d);
        ck_assert_uint_eq(pos, pos0);
        ck_assert_msg(memcmp(d, d0, PRJ_DIGEST_LEN) == 0, "store %d: a digest other than store 0's",
                      i);
    }
    for (size_t k = 0; k < n_prof; k += step) {
        json_t *r0 = row_of(s[0], m[k].id);
        for (int i = 1; i < n; i++) {
            json_t *r = row_of(s[i], m[k].id);
            if (!json_equal(r, r0)) {
                char *x = json_dumps(r0, JSON_COMPACT), *y = json_dumps(r, JSON_COMPACT);
                ck_abort_msg("profile %s: store 0 %s, store %d %s", m[k].id, x, i, y);
            }
            json_decref(r);
        }
        json_decref(r0);
    }
}

#define BIG_PROFILES 16000
#define BIG_CHANGES 3000

START_TEST(a_replay_in_one_large_transaction_matches_small_ones_and_the_live_path)
{
    world w;
    world_open(&w);
    m_prof *m = calloc(BIG_PROFILES, sizeof *m);
    append_profiles(&w, m, 0, BIG_PROFILES);
    prj_batch_stats st = world_sync(&w); /* live: prj_store_apply, 1000 a batch */
    ck_assert_uint_eq(st.parked, 0);
    uint64_t end = prj_store_position(w.prj);

    /* A: the whole log in one transaction; B: 1000 events a transaction. */
    fresh a = fresh_open("one-txn"), b = fresh_open("small-txns");
    replay_seen ra = replay(&a, w.es, 0, 0);
    ck_assert_uint_eq(ra.commits, 1);
    ck_assert_uint_eq(ra.events, end);
    replay_seen rb = replay(&b, w.es, 0, 1000);
    /* A transaction ends at the first page (4096 events) that reaches
     * per_txn; an event dirties a dozen keys at most, so B's flushes stay
     * well below 65,536 entries. */
    ck_assert_uint_gt(rb.commits, 20);
    ck_assert_uint_le(rb.most_in_txn, 4096);
    ck_assert_uint_eq(rb.events, end);

    /* A's one transaction began on empty databases, so it wrote every key
     * the model holds now: its last flush (the only one, below WCACHE_MAX
     * entries) had at least that many dirty entries. The copy says how
     * many, and B's environment (the same state, by digest) confirms it. */
    size_t keys = m_keys(m, 0, BIG_PROFILES), counts = 0;
    ck_assert_uint_gt(keys, 65536 + 10000);
    ck_assert_uint_eq(fresh_entries(&b, &counts), keys);
    ck_assert_uint_gt(counts, 0);

    /* every row compared: the digest is summed from hashes the two
     * threads computed, the rows are the bytes written */
    prj_store *stores[] = {a.s, b.s, w.prj};
    assert_same_stores(stores, 3, m, BIG_PROFILES, 1);

    /* More on top, through the live path, while A's large cache may still
     * be being freed behind: the same state again, round after round. */
    for (int round = 0; round < 3; round++) {
        append_changes(&w, m, BIG_PROFILES, BIG_CHANGES);
        st = world_sync(&w);
        ck_assert_uint_eq(st.parked, 0);
        apply_log(&w, a.s, prj_store_position(a.s) + 1, 700);
        apply_log(&w, b.s, prj_store_position(b.s) + 1, 1000);
        prj_store *again[] = {a.s, b.s, w.prj};
        assert_same_stores(again, 3, m, BIG_PROFILES, 13);
    }
    check_indexes(&w, m, BIG_PROFILES);
    for (size_t i = 0; i < BIG_PROFILES; i += 401)
        check_row_against_domain(&w, m[i].id);

    fresh_close(&a);
    fresh_close(&b);
    free(m);
    world_close(&w);
}
END_TEST

#define FILLED_PROFILES 4000
#define NEW_PROFILES 13000
#define FILLED_CHANGES 4000

/* A large transaction onto databases that are not empty, after a reopen
 * (an empty cache): no key it writes is known to be absent without a look
 * in LMDB, the rows it changes are decoded from LMDB's bytes, and old index
 * entries are deleted. */
START_TEST(a_large_replay_transaction_onto_a_filled_model_matches_the_live_path)
{
    world w;
    world_open(&w);
    m_prof *m = calloc(FILLED_PROFILES + NEW_PROFILES, sizeof *m);
    append_profiles(&w, m, 0, FILLED_PROFILES);
    prj_batch_stats st = world_sync(&w);
    ck_assert_uint_eq(st.parked, 0);
    uint64_t filled = prj_store_position(w.prj);
    size_t filled_keys = m_keys(m, 0, FILLED_PROFILES), counts = 0;

    /* Then new profiles and changes to the first ones, in turns. */
    for (size_t i = FILLED_PROFILES; i < FILLED_PROFILES + NEW_PROFILES; i += NEW_PROFILES / 4) {
        size_t to = i + NEW_PROFILES / 4;
        append_profiles(&w, m, i,
                        to < FILLED_PROFILES + NEW_PROFILES ? to : FILLED_PROFILES + NEW_PROFILES);
        append_changes(&w, m, FILLED_PROFILES, FILLED_CHANGES / 4);
    }
    st = world_sync(&w);
    ck_assert_uint_eq(st.parked, 0);
    uint64_t end = prj_store_position(w.prj);

    fresh c = fresh_open("filled");
    replay_seen r = replay(&c, w.es, filled, 1000);
    ck_assert_uint_eq(prj_store_position(c.s), filled);
    ck_assert_uint_gt(r.commits, 1);
    ck_assert_uint_eq(fresh_entries(&c, &counts), filled_keys); /* and reopens */
    r = replay(&c, w.es, 0, 0);
    ck_assert_uint_eq(r.commits, 1);
    ck_assert_uint_eq(r.events, end - filled);
    /* The new profiles' keys alone were all written (dirty) in that one
     * transaction. */
    ck_assert_uint_gt(m_keys(m, FILLED_PROFILES, FILLED_PROFILES + NEW_PROFILES), 65536);

    prj_store *stores[] = {c.s, w.prj};
    assert_same_stores(stores, 2, m, FILLED_PROFILES + NEW_PROFILES, 1);
    check_indexes(&w, m, FILLED_PROFILES + NEW_PROFILES);

    /* and on, through the live path */
    append_changes(&w, m, FILLED_PROFILES + NEW_PROFILES, 3000);
    st = world_sync(&w);
    ck_assert_uint_eq(st.parked, 0);
    apply_log(&w, c.s, prj_store_position(c.s) + 1, 1000);
    prj_store *again[] = {c.s, w.prj};
    assert_same_stores(again, 2, m, FILLED_PROFILES + NEW_PROFILES, 11);

    fresh_close(&c);
    free(m);
    world_close(&w);
}
END_TEST

static Suite *talent_model_suite(void)
{
    Suite *s = suite_create("talent read model");
    TCase *tc = tcase_create("talent");
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, get_profile_of_an_unknown_id_is_not_found);
    tcase_add_test(tc, a_profile_row_holds_what_its_events_say);
    tcase_add_test(tc, indexes_follow_every_change_exactly);
    tcase_add_test(tc, claims_and_unknown_events_are_ignored_and_impossible_ones_parked);
    tcase_add_test(tc, a_dead_letter_keeps_no_data_and_a_retry_reads_the_event_from_the_log);
    tcase_add_test(tc, dead_letters_of_earlier_versions_still_list_and_retry);
    tcase_add_test(tc, a_failed_batch_leaves_no_half_folded_row_behind);
    tcase_add_test(tc, an_index_write_that_fails_parks_the_event_that_made_it);
    tcase_add_test(tc, queries_refuse_what_they_cannot_answer);
    tcase_add_test(tc, search_filters_by_skills_location_rate_and_hours);
    tcase_add_test(tc, search_pages_with_the_last_id_as_cursor);
    tcase_add_test(tc, match_ranks_by_requirements_met_then_levels_above);
    tcase_add_test(tc, random_history_answers_as_a_brute_force_would);
    tcase_add_test(tc, a_replay_in_one_large_transaction_matches_small_ones_and_the_live_path);
    tcase_add_test(tc, a_large_replay_transaction_onto_a_filled_model_matches_the_live_path);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tst_run_suite(talent_model_suite());
}
