/*
 * query.c — the talent read model's queries and its row in the model table
 * (prj_talent_model, declared in projections/models.h).
 *
 * Sections: helpers; get_profile; search (its filter, its plan, its run);
 * match; the model row.
 *
 * Any valid token may ask (the store checks that); a NULL actor is an
 * in-process caller. Every profile a query returns passed the whole filter
 * on its row: the indexes only choose which rows are read.
 */
#include "projections/talent/scan.h"

#include "common/alloc.h"
#include "domain/talent/talent.h"
#include "projections/models.h"

#include <stdlib.h>
#include <string.h>

#define LIMIT_DEFAULT 20
#define LIMIT_MAX 100
#define SKILLS_MAX 10
#define HOURS_MAX 80
#define RATE_MAX 100000000

/* ---- helpers ---------------------------------------------------------------- */

static guild_status read_failed(guild_error *err, guild_status s, const char *what)
{
    return guild_error_set(err, s, 0, "reading %s from the talent read model", what);
}

/* The row of id, or NULL (absent: *s GUILD_OK; failed: *s set). */
static json_t *row_get(prj_read *r, const char *id, guild_status *s)
{
    json_t *row = NULL;
    *s = prj_rget_json(r, TM_PROFILES, id, strlen(id), &row);
    if (*s == GUILD_NOT_FOUND)
        *s = GUILD_OK;
    return *s == GUILD_OK ? row : NULL;
}

/* The rate ceiling and free hours filters that search and match share. */
typedef struct price_hours {
    const char *currency; /* only rows priced in it; NULL: any */
    bool has_max;
    int64_t max_rate;
    bool has_hours;
    int64_t min_hours;
} price_hours;

static guild_status price_hours_parse(const json_t *args, price_hours *f, guild_error *err)
{
    f->currency = dom_str(args, "currency", NULL);
    f->has_max = json_is_integer(json_object_get(args, "max_rate"));
    f->max_rate = dom_int(args, "max_rate", 0);
    f->has_hours = json_is_integer(json_object_get(args, "min_hours"));
    f->min_hours = dom_int(args, "min_hours", 0);
    if (f->has_max && !f->currency)
        return guild_error_field(err, GUILD_VALIDATION_FAILED, "currency",
                                 "currency is required with max_rate");
    return GUILD_OK;
}

static bool price_hours_ok(const json_t *row, const price_hours *f)
{
    if (f->currency) {
        const char *currency = json_string_value(json_object_get(row, "currency"));
        json_t *rate = json_object_get(row, "hourly_rate");
        if (!currency || strcmp(currency, f->currency) != 0 || !json_is_integer(rate))
            return false;
        if (f->has_max && json_integer_value(rate) > f->max_rate)
            return false;
    }
    if (f->has_hours &&
        prj_talent__int(row, "hours_per_week", 0) - prj_talent__int(row, "reserved_hours", 0) <
            f->min_hours)
        return false;
    return true;
}

static bool row_live(const json_t *row)
{
    return row && !json_is_true(json_object_get(row, "archived"));
}

/* ---- get_profile --------------------------------------------------------------- */

/* A look-up of profile id's row as it ended: GUILD_OK, GUILD_NOT_FOUND
 * (with err naming the field talent_id) or a read failure. */
static guild_status profile_found(guild_status s, const char *id, guild_error *err)
{
    if (s == GUILD_NOT_FOUND)
        return guild_error_field(err, GUILD_NOT_FOUND, "talent_id", "no talent profile %.64s", id);
    if (s != GUILD_OK)
        return read_failed(err, s, "a profile");
    return GUILD_OK;
}

static guild_status get_profile(prj_read *r, const json_t *args, const dom_actor *actor,
                                json_t **data, guild_error *err)
{
    const char *id = dom_str(args, "talent_id", "");
    (void)actor;
    return profile_found(prj_rget_json(r, TM_PROFILES, id, strlen(id), data), id, err);
}

/* The same, with the profile's row as stored. */
static guild_status get_profile_stored(prj_read *r, const json_t *args, const dom_actor *actor,
                                       const void **bytes, size_t *len, guild_error *err)
{
    const char *id = dom_str(args, "talent_id", "");
    (void)actor;
    return profile_found(prj_rget(r, TM_PROFILES, id, strlen(id), bytes, len), id, err);
}

/* ---- search: the filter ------------------------------------------------------- */

typedef struct search_q {
    const char *skills[SKILLS_MAX];
    size_t n_skills;
    bool any;          /* one of the skills is enough */
    int64_t min_level; /* of each skill that counts */
    const char *location;
    price_hours ph;
    size_t limit;
    const char *cursor;
} search_q;

static guild_status search_parse(const json_t *args, search_q *q, guild_error *err)
{
    memset(q, 0, sizeof *q);
    size_t i;
    json_t *v;
    json_array_foreach(json_object_get(args, "skills"), i, v)
    {
        if (q->n_skills < SKILLS_MAX)
            q->skills[q->n_skills++] = json_string_value(v);
    }
    q->any = strcmp(dom_str(args, "match", "all"), "any") == 0;
    q->min_level = dom_int(args, "min_level", 1);
    q->location = dom_str(args, "location", NULL);
    q->limit = (size_t)dom_int(args, "limit", LIMIT_DEFAULT);
    q->cursor = dom_str(args, "cursor", NULL);
    return price_hours_parse(args, &q->ph, err);
}

static bool skill_ok(const json_t *row, const char *name, int64_t min_level)
{
    const json_t *skill = prj_talent__skill_find(row, name);
    return skill && prj_talent__int(skill, "level", 0) >= min_level;
}

/* Whether a row answers the search: the whole truth, whatever index led
 * to it. */
static bool search_ok(const json_t *row, const search_q *q)
{
    if (!row_live(row))
        return false;
    if (q->n_skills) {
        size_t met = 0;
        for (size_t i = 0; i < q->n_skills; i++)
            met += skill_ok(row, q->skills[i], q->min_level);
        if (q->any ? met == 0 : met < q->n_skills)
            return false;
    }
    if (q->location) {
        const char *location = json_string_value(json_object_get(row, "location"));
        if (!location || prj_talent__name_cmp(location, q->location) != 0)
            return false;
    }
    return price_hours_ok(row, &q->ph);
}

/* ---- search: the plan ------------------------------------------------------------
 * Which index supplies the candidates. Each filter given is a factor with
 * the number of live profiles it lets through: from `counts` for a skill,
 * a location, a currency and the free hours; for a rate ceiling, by
 * counting the by_rate range itself up to RATE_COUNT_CAP keys (beyond, the
 * currency's count stands in). Assuming the factors independent, a source
 * that yields c candidates in id order reads about min(c, (limit + 1) /
 * (share the other factors let through)) rows before the page is full; a
 * source ordered otherwise (rate, hours) first reads and sorts all of its
 * c keys. The cheapest source wins. The scan of all profiles is a
 * candidate only when no skill, location or currency is asked for, so such
 * a search never reads the whole model. A factor that lets nothing through
 * answers at once. */

enum source { SRC_ALL, SRC_SKILL, SRC_ANY_SKILL, SRC_LOCATION, SRC_RATE, SRC_HOURS };

typedef struct factor {
    enum source source;
    size_t skill; /* SRC_SKILL: which */
    uint64_t count;
} factor;

typedef struct plan {
    factor chosen;
    bool empty; /* some filter lets nothing through */
} plan;

/* Row reads cost this many key reads. */
#define ROW_COST 10.0
/* Keys of by_rate counted to size a rate ceiling. */
#define RATE_COUNT_CAP 4096

static size_t count_key(uint8_t tag, const uint8_t *bytes, size_t n, uint8_t *out)
{
    out[0] = tag;
    memcpy(out + 1, bytes, n);
    return n + 1;
}

/* Live profiles with skill at min_level or above. */
static guild_status skill_count(prj_read *r, const char *skill, int64_t min_level, uint64_t *out)
{
    uint8_t prefix[TM_SKILL_MAX + 3], key[TM_SKILL_MAX + 4];
    size_t n = prj_talent__skill_prefix(skill, prefix);
    if (!n) {
        *out = 0;
        return GUILD_OK;
    }
    size_t plen = count_key(TM_COUNT_SKILL, prefix, n, key);
    key[plen] = (uint8_t)min_level;
    return prj_talent__count_sum(r, key, plen, key, plen + 1, out);
}

static guild_status factors_of(prj_read *r, const search_q *q, factor *f, size_t *nf)
{
    guild_status s = GUILD_OK;
    uint8_t buf[TM_LOCATION_KEY_MAX + 2], key[TM_LOCATION_KEY_MAX + 2];
    *nf = 0;
    if (q->n_skills && !q->any) {
        for (size_t i = 0; i < q->n_skills && s == GUILD_OK; i++) {
            f[*nf] = (factor){SRC_SKILL, i, 0};
            s = skill_count(r, q->skills[i], q->min_level, &f[(*nf)++].count);
        }
    } else if (q->n_skills) {
        f[*nf] = (factor){SRC_ANY_SKILL, 0, 0};
        for (size_t i = 0; i < q->n_skills && s == GUILD_OK; i++) {
            uint64_t c = 0;
            s = skill_count(r, q->skills[i], q->min_level, &c);
            f[*nf].count += c;
        }
        (*nf)++;
    }
    if (s == GUILD_OK && q->location) {
        size_t n = prj_talent__location_prefix(q->location, buf);
        f[*nf] = (factor){SRC_LOCATION, 0, 0};
        s = prj_talent__count_get(r, key, count_key(TM_COUNT_LOCATION, buf, n - 1, key),
                                  &f[(*nf)++].count);
    }
    if (s == GUILD_OK && q->ph.currency) {
        uint64_t *c = &f[*nf].count;
        f[(*nf)++] = (factor){SRC_RATE, 0, 0};
        if (q->ph.has_max)
            s = prj_talent__rate_count(r, q->ph.currency, (uint64_t)q->ph.max_rate, RATE_COUNT_CAP,
                                       c);
        if (s == GUILD_OK && (!q->ph.has_max || *c == RATE_COUNT_CAP))
            s = prj_talent__count_get(
                r, key, count_key(TM_COUNT_CURRENCY, (const uint8_t *)q->ph.currency, 3, key), c);
    }
    if (s == GUILD_OK && q->ph.has_hours) {
        uint8_t from[2] = {TM_COUNT_HOURS, prj_talent__hours_byte(q->ph.min_hours)};
        f[*nf] = (factor){SRC_HOURS, 0, 0};
        s = prj_talent__count_sum(r, from, 1, from, 2, &f[(*nf)++].count);
    }
    return s;
}

static guild_status search_plan(prj_read *r, const search_q *q, plan *p)
{
    factor f[SKILLS_MAX + 4];
    size_t nf;
    uint64_t live = 0;
    uint8_t h = TM_COUNT_HOURS;
    guild_status s = prj_talent__count_sum(r, &h, 1, NULL, 0, &live);
    if (s == GUILD_OK)
        s = factors_of(r, q, f, &nf);
    if (s != GUILD_OK)
        return s;
    memset(p, 0, sizeof *p);
    p->empty = live == 0;
    for (size_t i = 0; i < nf; i++)
        p->empty |= f[i].count == 0;
    if (p->empty)
        return GUILD_OK;

    double want = (double)q->limit + 1, best = 0;
    const factor all = {SRC_ALL, 0, live};
    bool indexed = false;
    for (size_t i = 0; i < nf; i++)
        indexed |= f[i].source != SRC_HOURS;
    /* i == nf stands for the scan of all profiles, which no factor covers */
    for (size_t i = 0; i <= nf - indexed; i++) {
        factor d = i < nf ? f[i] : all;
        double others = 1;
        for (size_t j = 0; j < nf; j++)
            if (j != i)
                others *= f[j].count >= live ? 1.0 : (double)f[j].count / (double)live;
        double reads = (double)d.count;
        if (want / others < reads)
            reads = want / others;
        bool sorted_by_id = d.source != SRC_RATE && d.source != SRC_HOURS;
        double cost = ROW_COST * reads + (sorted_by_id ? 0 : 2.0 * (double)d.count);
        if (i == 0 || cost < best) {
            best = cost;
            p->chosen = d;
        }
    }
    return GUILD_OK;
}

/* The runs of by_skill that hold skill at min_level or above. */
static void add_skill_runs(tm_ids *ids, const char *skill, int64_t min_level)
{
    uint8_t prefix[TM_SKILL_MAX + 3];
    size_t n = prj_talent__skill_prefix(skill, prefix);
    if (!n)
        return;
    for (int64_t level = min_level; level <= TM_LEVEL_MAX; level++) {
        prefix[n] = (uint8_t)level;
        prefix[n + 1] = 0;
        prj_talent__ids_add_run(ids, TM_BY_SKILL, prefix, n + 2);
    }
}

static guild_status plan_source(const plan *p, const search_q *q, tm_ids *ids)
{
    uint8_t prefix[TM_LOCATION_KEY_MAX + 1] = {0};
    size_t plen;
    switch (p->chosen.source) {
    case SRC_SKILL:
        add_skill_runs(ids, q->skills[p->chosen.skill], q->min_level);
        return GUILD_OK;
    case SRC_ANY_SKILL:
        for (size_t i = 0; i < q->n_skills; i++)
            add_skill_runs(ids, q->skills[i], q->min_level);
        return GUILD_OK;
    case SRC_LOCATION:
        plen = prj_talent__location_prefix(q->location, prefix);
        prj_talent__ids_add_run(ids, TM_BY_LOCATION, prefix, plen);
        return GUILD_OK;
    case SRC_RATE:
        return prj_talent__ids_collect_rate(ids, q->ph.currency, q->ph.has_max,
                                            (uint64_t)q->ph.max_rate);
    case SRC_HOURS:
        return prj_talent__ids_collect_hours(ids, prj_talent__hours_byte(q->ph.min_hours));
    default:
        prj_talent__ids_add_run(ids, TM_PROFILES, prefix, 0);
        return GUILD_OK;
    }
}

/* ---- search: the run ---------------------------------------------------------------- */

/*
 * Live profiles that pass every filter given, in talent id order, a page at
 * a time. The cursor is the id of the last profile of the previous page:
 * the next page starts above it.
 */
static guild_status search(prj_read *r, const json_t *args, const dom_actor *actor, json_t **data,
                           guild_error *err)
{
    search_q q;
    plan p;
    (void)actor;
    guild_status s = search_parse(args, &q, err);
    if (s != GUILD_OK)
        return s;
    if ((s = search_plan(r, &q, &p)) != GUILD_OK)
        return read_failed(err, s, "the index counts");

    json_t *results = json_array();
    bool more = false;
    tm_ids ids;
    prj_talent__ids_init(&ids, r, q.cursor);
    if (!p.empty)
        s = plan_source(&p, &q, &ids);
    char id[TM_ID_MAX + 1];
    while (s == GUILD_OK && !p.empty && prj_talent__ids_next(&ids, id)) {
        json_t *row = row_get(r, id, &s);
        if (row && search_ok(row, &q)) {
            more = json_array_size(results) == q.limit;
            if (more) {
                json_decref(row);
                break;
            }
            json_array_append(results, row);
        }
        json_decref(row);
    }
    if (s == GUILD_OK)
        s = ids.status;
    prj_talent__ids_release(&ids);
    if (s != GUILD_OK) {
        json_decref(results);
        return read_failed(err, s, "profiles");
    }
    json_t *last = json_array_get(results, json_array_size(results) - 1);
    *data = json_pack("{s:o, s:o}", "results", results, "next_cursor",
                      more ? json_string(dom_str(last, "talent_id", "")) : json_null());
    return GUILD_OK;
}

/* ---- match ------------------------------------------------------------------------
 * Live profiles ranked by how well they meet skill requirements [{skill,
 * min_level}]. A profile meets a requirement when it has the skill at
 * min_level or above. Its score is (met + BONUS x levels above the minimum,
 * summed over the requirements met) / requirements: 1 when every skill is
 * met exactly, a little more for higher levels; BONUS is small enough that
 * meeting one more requirement always ranks higher. Candidates are the
 * profiles that meet at least one requirement, read straight from the
 * by_skill ranges level >= min_level (which also give each level, so the
 * ranking needs no row); the rate ceiling and free hours are then checked
 * on the rows, best first, until the page is full. */

#define MATCH_REQS_MAX 10
#define MATCH_POINTS 50 /* per requirement met; 1 per level above: BONUS = 1/50 */

typedef struct hit {
    char id[TM_ID_MAX + 1];
    uint8_t req, level;
} hit;

typedef struct hits {
    hit *v;
    size_t n, cap;
    size_t req;
    int64_t min_level;
    size_t plen;
} hits;

typedef struct candidate {
    const char *id; /* in the hits */
    int64_t points;
    uint32_t met; /* bit per requirement */
} candidate;

static int hit_take(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    hits *h = ctx;
    const uint8_t *k = key;
    (void)val, (void)vlen;
    /* lower(skill) 0x00 level 0x00 talent id */
    if (klen <= h->plen + 2 || klen - h->plen - 2 > TM_ID_MAX || k[h->plen + 1] != 0 ||
        k[h->plen] < h->min_level)
        return 0;
    if (h->n == h->cap) {
        h->cap = h->cap ? h->cap * 2 : 256;
        h->v = guild_xrealloc(h->v, h->cap * sizeof *h->v);
    }
    hit *x = &h->v[h->n++];
    memcpy(x->id, k + h->plen + 2, klen - h->plen - 2);
    x->id[klen - h->plen - 2] = 0;
    x->req = (uint8_t)h->req;
    x->level = k[h->plen];
    return 0;
}

static int hit_cmp(const void *a, const void *b)
{
    return strcmp(((const hit *)a)->id, ((const hit *)b)->id);
}

static int candidate_cmp(const void *a, const void *b)
{
    const candidate *x = a, *y = b;
    if (x->points != y->points)
        return x->points > y->points ? -1 : 1;
    return strcmp(x->id, y->id);
}

/* Reads the hits of every requirement and folds them per profile into
 * *out (sorted best first; free it). */
static guild_status match_candidates(prj_read *r, const json_t *reqs, hits *h, candidate **out,
                                     size_t *n_out)
{
    size_t i;
    json_t *req;
    guild_status s = GUILD_OK;
    json_array_foreach(reqs, i, req)
    {
        uint8_t prefix[TM_SKILL_MAX + 2];
        size_t plen = prj_talent__skill_prefix(dom_str(req, "skill", ""), prefix);
        if (!plen)
            continue;
        h->req = i;
        h->min_level = dom_int(req, "min_level", 1);
        h->plen = plen;
        prefix[plen] = (uint8_t)h->min_level;
        if ((s = prj_rscan(r, TM_BY_SKILL, prefix, plen, prefix, plen + 1, hit_take, h)) !=
            GUILD_OK)
            return s;
    }
    if (h->n) /* h->v is NULL without hits */
        qsort(h->v, h->n, sizeof *h->v, hit_cmp);
    candidate *c = guild_xmalloc((h->n ? h->n : 1) * sizeof *c);
    size_t n = 0;
    for (size_t k = 0; k < h->n; k++) {
        if (n == 0 || strcmp(c[n - 1].id, h->v[k].id) != 0)
            c[n++] = (candidate){h->v[k].id, 0, 0};
        const json_t *rq = json_array_get(reqs, h->v[k].req);
        c[n - 1].points += MATCH_POINTS + (h->v[k].level - dom_int(rq, "min_level", 1));
        c[n - 1].met |= 1u << h->v[k].req;
    }
    qsort(c, n, sizeof *c, candidate_cmp);
    *out = c;
    *n_out = n;
    return GUILD_OK;
}

static json_t *match_result(const candidate *c, const json_t *reqs)
{
    json_t *missing = json_array();
    size_t i;
    json_t *req;
    json_array_foreach(reqs, i, req)
    {
        if (!(c->met & (1u << i)))
            json_array_append_new(missing, json_string(dom_str(req, "skill", "")));
    }
    double score = (double)c->points / (MATCH_POINTS * (double)json_array_size(reqs));
    return json_pack("{s:s, s:f, s:o}", "talent_id", c->id, "score", score, "missing", missing);
}

static guild_status match(prj_read *r, const json_t *args, const dom_actor *actor, json_t **data,
                          guild_error *err)
{
    price_hours ph;
    const json_t *reqs = json_object_get(args, "skills");
    size_t limit = (size_t)dom_int(args, "limit", LIMIT_DEFAULT);
    (void)actor;
    guild_status s = price_hours_parse(args, &ph, err);
    if (s != GUILD_OK)
        return s;
    hits h = {0};
    candidate *c = NULL;
    size_t n = 0;
    json_t *results = json_array();
    s = match_candidates(r, reqs, &h, &c, &n);
    for (size_t i = 0; s == GUILD_OK && i < n && json_array_size(results) < limit; i++) {
        json_t *row = row_get(r, c[i].id, &s);
        if (row_live(row) && price_hours_ok(row, &ph))
            json_array_append_new(results, match_result(&c[i], reqs));
        json_decref(row);
    }
    free(c);
    free(h.v);
    if (s != GUILD_OK) {
        json_decref(results);
        return read_failed(err, s, "the skill index");
    }
    *data = json_pack("{s:o}", "results", results);
    return GUILD_OK;
}

/* ---- the model row ------------------------------------------------------------------ */

#define F_END                                                                                      \
    {                                                                                              \
        0                                                                                          \
    }
#define F_LIMIT                                                                                    \
    .name = "limit", .type = DOM_INT, .min = 1, .max = LIMIT_MAX, .doc = "1 to 100 (default 20)"
#define F_MAX_RATE                                                                                 \
    .name = "max_rate", .type = DOM_INT, .min = 1, .max = RATE_MAX,                                \
    .doc = "hourly rate ceiling in minor units of currency (needs currency)"
#define F_CURRENCY                                                                                 \
    .name = "currency", .type = DOM_CURRENCY,                                                      \
    .doc = "ISO 4217; only profiles priced in it (required with max_rate)"
#define F_MIN_HOURS                                                                                \
    .name = "min_hours", .type = DOM_INT, .min = 0, .max = HOURS_MAX,                              \
    .doc = "free hours per week at least (hours_per_week - reserved_hours)"

static const char *const match_values[] = {"all", "any", NULL};

static const dom_field q_get_profile[] = {
    {.name = "talent_id", .type = DOM_UUID, .required = true, .doc = "the profile"},
    F_END,
};

static const dom_field q_search[] = {
    {.name = "skills",
     .type = DOM_STRING_LIST,
     .max = SKILLS_MAX,
     .item_max = 64,
     .doc = "0 to 10 skill names, matched ignoring case"},
    {.name = "match",
     .type = DOM_ENUM,
     .values = match_values,
     .doc = "all (default): every skill; any: at least one"},
    {.name = "min_level",
     .type = DOM_INT,
     .min = 1,
     .max = TM_LEVEL_MAX,
     .doc = "level a skill needs to count, 1 to 5 (default 1)"},
    {F_MAX_RATE},
    {F_CURRENCY},
    {.name = "location", .type = DOM_STRING, .max = 200, .doc = "the whole location, any case"},
    {F_MIN_HOURS},
    {F_LIMIT},
    {.name = "cursor",
     .type = DOM_STRING,
     .max = 128,
     .doc = "next_cursor of the previous page; absent for the first"},
    F_END,
};

static const dom_field q_requirement[] = {
    {.name = "skill", .type = DOM_STRING, .required = true, .min = 1, .max = 64},
    {.name = "min_level", .type = DOM_INT, .min = 1, .max = TM_LEVEL_MAX, .doc = "default 1"},
    F_END,
};

static const dom_field q_match[] = {
    {.name = "skills",
     .type = DOM_OBJECT_LIST,
     .required = true,
     .min = 1,
     .max = MATCH_REQS_MAX,
     .items = q_requirement,
     .doc = "1 to 10 requirements {skill, min_level}"},
    {F_MAX_RATE},
    {F_CURRENCY},
    {F_MIN_HOURS},
    {F_LIMIT},
    F_END,
};

#define MATCH_SUMMARY                                                                              \
    "live profiles ranked by fit to skill requirements given directly: {results [{talent_id, "     \
    "score, missing}]}; score = (requirements met + 0.02 per level above a minimum) / "            \
    "requirements; a job_id (CONTRACT's match_job) is not supported until the job domain exists"

static const prj_query queries[] = {
    {.name = "get_profile",
     .summary = "one profile with its skills, certifications, rate history and capacity",
     .fields = q_get_profile,
     .run = get_profile,
     .run_stored = get_profile_stored},
    {.name = "search",
     .summary = "live profiles by skills, level, rate ceiling, location and free hours, in "
                "talent id order, a page at a time: {results, next_cursor}",
     .fields = q_search,
     .run = search},
    {.name = "match", .summary = MATCH_SUMMARY, .fields = q_match, .run = match},
    {.name = "match_job", .summary = MATCH_SUMMARY, .fields = q_match, .run = match},
    {.name = NULL},
};

static const char *const dbs[] = {TM_PROFILES, TM_BY_SKILL, TM_BY_LOCATION, TM_BY_RATE, TM_BY_HOURS,
                                  TM_COUNTS,   NULL};

const prj_model prj_talent_model = {
    .name = "talent",
    .domain = TALENT_DOMAIN,
    .dbs = dbs,
    .apply = prj_talent__apply,
    .reads_msgpack = true,
    .queries = queries,
    .row_db = TM_PROFILES,
};
