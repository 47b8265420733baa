/*
 * prj_replay.c — phases 1 and 2 of `guild bench project`: the talent read
 * model rebuilt from the history, the way `guild project rebuild` rebuilds
 * it, then search and match timed on it.
 *
 * Map
 *   - the rebuild: the loop of cmd/project.c (es_read_log in batches of
 *     REBUILD_BATCH, each record copied out of the read transaction, then
 *     prj_store_apply), timed
 *   - what the model holds: get_profile for every id, the dead letters
 *   - queries: one builder per kind, random arguments from the history's
 *     pools, timed through prj_store_query
 */
#include "prj_bench.h"

#include "common/alloc.h"
#include "common/clock.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define REBUILD_BATCH 4096 /* as cmd/project.c */
#define PROGRESS_NS 500000000ull
#define QUERY_SEED 0xD1B54A32D192ED03ull

/* ---- the rebuild ---------------------------------------------------------------- */

typedef struct replay {
    prj_store *target;
    const es_record **ptrs;
    es_record *recs;
    uint8_t **raws;
    size_t n;
} replay;

static int collect(void *ctx, const es_record *rec)
{
    replay *r = ctx;
    /* The read transaction ends before apply: keep a copy (as the rebuild does). */
    r->raws[r->n] = malloc(rec->raw_len);
    memcpy(r->raws[r->n], rec->raw, rec->raw_len);
    es_record_decode(r->raws[r->n], rec->raw_len, &r->recs[r->n]);
    r->ptrs[r->n] = &r->recs[r->n];
    r->n++;
    return 0;
}

static void progress(const prjb_rebuild *out, uint64_t total, uint64_t t0, bool last)
{
    char a[32], b[32], c[32];
    double secs = (double)(guild_mono_ns() - t0) / 1e9;
    printf("\r[1/3] rebuilding the talent model: %s of %s events (%s/s)   ",
           bench_fmt_count((double)out->position, a, sizeof a),
           bench_fmt_count((double)total, b, sizeof b),
           bench_fmt_count(secs > 0 ? (double)out->position / secs : 0, c, sizeof c));
    if (last)
        printf("\n");
    fflush(stdout);
}

/* Replays the whole log into r->target. */
static guild_status replay_all(es_store *log, replay *rp, prjb_rebuild *out, bool tty)
{
    uint64_t total = 0;
    es_log_head(log, &total, NULL);
    double cpu0 = bench_cpu_seconds();
    uint64_t t0 = guild_mono_ns(), shown = t0;
    guild_status s = GUILD_OK;
    while (!cmdb_interrupted) {
        uint64_t from = prj_store_position(rp->target) + 1, next = from;
        rp->n = 0;
        s = es_read_log(log, from, REBUILD_BATCH, collect, rp, &next);
        if (s == GUILD_OK && rp->n) {
            prj_batch_stats st = {0};
            uint64_t a0 = guild_mono_ns();
            s = prj_store_apply(rp->target, rp->ptrs, rp->n, &st);
            out->apply_seconds += (double)(guild_mono_ns() - a0) / 1e9;
            out->applied += st.applied;
            out->skipped += st.skipped;
            out->parked += st.parked;
            out->batches++;
            out->events += rp->n;
        }
        for (size_t i = 0; i < rp->n; i++)
            free(rp->raws[i]);
        if (s != GUILD_OK)
            break;
        out->position = prj_store_position(rp->target);
        if (tty && guild_mono_ns() - shown > PROGRESS_NS) {
            progress(out, total, t0, false);
            shown = guild_mono_ns();
        }
        if (rp->n < REBUILD_BATCH)
            break;
    }
    out->seconds = (double)(guild_mono_ns() - t0) / 1e9;
    out->cpu_seconds = bench_cpu_seconds() - cpu0;
    progress(out, total, t0, true);
    return s;
}

/* ---- what the model holds ------------------------------------------------------- */

static int count_dead(void *ctx, uint64_t position, const char *reason, const es_record *rec)
{
    prjb_rebuild *r = ctx;
    (void)position, (void)rec;
    if (r->dead_letters++ == 0)
        snprintf(r->first_error, sizeof r->first_error, "parked: %s", reason);
    return 0;
}

/* get_profile for every id of the history. */
static void check_profiles(prj_store *s, const prjb_history *h, prjb_rebuild *r)
{
    uint64_t t0 = guild_mono_ns();
    for (unsigned i = 0; i < h->profiles && !cmdb_interrupted; i++) {
        json_t *args = json_pack("{s:s}", "talent_id", h->talent_ids[i]), *data = NULL;
        guild_error err = {0};
        if (prj_store_query(s, "get_profile", args, NULL, &data, NULL, &err) == GUILD_OK) {
            r->found++;
            r->live += !json_is_true(json_object_get(data, "archived"));
        }
        json_decref(data);
        json_decref(args);
    }
    r->check_seconds = (double)(guild_mono_ns() - t0) / 1e9;
    prj_store_dead_letters(s, count_dead, r);
}

int prjb_rebuild_run(const char *events_dir, const char *model_dir, const prjb_history *h, bool tty,
                     prjb_rebuild *r, prj_store **store)
{
    es_options o = {.read_only = true};
    es_store *log = NULL;
    guild_error err = {0};
    *store = NULL;
    if (es_store_open(events_dir, &o, &log, &err) != GUILD_OK) {
        snprintf(r->first_error, sizeof r->first_error, "opening %.80s: %.100s", events_dir,
                 err.message);
        return -1;
    }
    replay rp = {0};
    if (prj_store_open(model_dir, prj_model_find("talent"), &rp.target, &err) != GUILD_OK) {
        snprintf(r->first_error, sizeof r->first_error, "%.150s", err.message);
        es_store_close(log);
        return -1;
    }
    rp.ptrs = guild_xcalloc(REBUILD_BATCH, sizeof *rp.ptrs);
    rp.recs = guild_xcalloc(REBUILD_BATCH, sizeof *rp.recs);
    rp.raws = guild_xcalloc(REBUILD_BATCH, sizeof *rp.raws);
    guild_status s = replay_all(log, &rp, r, tty);
    es_store_close(log);
    free(rp.ptrs);
    free(rp.recs);
    free(rp.raws);
    if (s != GUILD_OK || cmdb_interrupted) {
        snprintf(r->first_error, sizeof r->first_error, "replaying: %s",
                 cmdb_interrupted ? "interrupted" : guild_status_code(s));
        prj_store_close(rp.target);
        return -1;
    }
    uint8_t digest[PRJ_DIGEST_LEN];
    prj_store_snapshot(rp.target, &r->position, digest);
    sodium_bin2hex(r->digest, sizeof r->digest, digest, sizeof digest);
    printf("[1/3] checking the model: get_profile for each of the %u ids ... ", h->profiles);
    fflush(stdout);
    check_profiles(rp.target, h, r);
    printf("%.2f s\n", r->check_seconds);
    char path[4200];
    struct stat sb;
    snprintf(path, sizeof path, "%s/data.mdb", model_dir);
    if (stat(path, &sb) == 0)
        r->model_bytes = (uint64_t)sb.st_size;
    *store = rp.target;
    return 0;
}

/* ---- queries ------------------------------------------------------------------------- */

static const char *const kind_labels[PRJB_QUERY_KINDS] = {
    "search: 1 skill, min_level",   "search: 2 skills, all", "search: 2 skills, any",
    "search: skill + rate ceiling", "search: location",      "search: skill + min_hours",
    "match: 3 required skills",
};

void prjb_queries_init(prjb_query_kind k[PRJB_QUERY_KINDS])
{
    for (int i = 0; i < PRJB_QUERY_KINDS; i++) {
        memset(&k[i], 0, sizeof k[i]);
        k[i].label = kind_labels[i];
        bench_hist_init(&k[i].lat);
    }
}

void prjb_queries_release(prjb_query_kind k[PRJB_QUERY_KINDS])
{
    for (int i = 0; i < PRJB_QUERY_KINDS; i++)
        bench_hist_release(&k[i].lat);
}

static const char *skill(uint64_t *rng)
{
    return prjb_skills[prjb_skewed(rng, prjb_n_skills)];
}

/* Two different skills. */
static void two_skills(uint64_t *rng, const char **a, const char **b)
{
    *a = skill(rng);
    do
        *b = skill(rng);
    while (*b == *a);
}

/* The arguments of a query of kind k. */
static json_t *query_args(int k, uint64_t *rng)
{
    const char *a, *b, *c;
    switch (k) {
    case 0:
        return json_pack("{s:[s], s:i}", "skills", skill(rng), "min_level",
                         2 + (int)prjb_below(rng, 3));
    case 1:
    case 2:
        two_skills(rng, &a, &b);
        return json_pack("{s:[s,s], s:s}", "skills", a, b, "match", k == 1 ? "all" : "any");
    case 3:
        return json_pack("{s:[s], s:s, s:i}", "skills", skill(rng), "currency",
                         prjb_currencies[prjb_below(rng, prjb_n_currencies)], "max_rate",
                         4000 + 1000 * (int)prjb_below(rng, 12));
    case 4:
        return json_pack("{s:s}", "location", prjb_locations[prjb_skewed(rng, prjb_n_locations)]);
    case 5:
        return json_pack("{s:[s], s:i}", "skills", skill(rng), "min_hours",
                         8 + 4 * (int)prjb_below(rng, 7));
    default:
        two_skills(rng, &a, &b);
        do
            c = skill(rng);
        while (c == a || c == b);
        return json_pack("{s:[{s:s, s:i}, {s:s, s:i}, {s:s, s:i}]}", "skills", "skill", a,
                         "min_level", 1 + (int)prjb_below(rng, 3), "skill", b, "min_level",
                         1 + (int)prjb_below(rng, 3), "skill", c, "min_level",
                         1 + (int)prjb_below(rng, 3));
    }
}

static void run_one(prj_store *s, int k, uint64_t *rng, prjb_query_kind *out)
{
    json_t *args = query_args(k, rng), *data = NULL;
    const char *name = k == PRJB_QUERY_KINDS - 1 ? "match" : "search";
    guild_error err = {0};
    uint64_t t0 = guild_mono_ns();
    guild_status st = prj_store_query(s, name, args, NULL, &data, NULL, &err);
    uint64_t ns = guild_mono_ns() - t0;
    if (!out->example[0]) {
        char *text = json_dumps(args, JSON_COMPACT);
        snprintf(out->example, sizeof out->example, "%s %s", name, text);
        free(text);
    }
    out->runs++;
    if (st == GUILD_OK) {
        bench_hist_record(&out->lat, ns);
        size_t n = json_array_size(json_object_get(data, "results"));
        out->results += n;
        out->empty += n == 0;
    } else {
        out->errors++;
        if (!out->first_error[0])
            snprintf(out->first_error, sizeof out->first_error, "%s: %.150s", guild_status_code(st),
                     err.message);
    }
    json_decref(data);
    json_decref(args);
}

void prjb_queries_run(prj_store *s, unsigned per_kind, prjb_query_kind k[PRJB_QUERY_KINDS])
{
    uint64_t rng = QUERY_SEED;
    /* a few of each first, unmeasured, so every kind starts with warm pages */
    prjb_query_kind warm[PRJB_QUERY_KINDS];
    prjb_queries_init(warm);
    for (int i = 0; i < 20; i++)
        for (int j = 0; j < PRJB_QUERY_KINDS; j++)
            run_one(s, j, &rng, &warm[j]);
    prjb_queries_release(warm);
    for (unsigned i = 0; i < per_kind && !cmdb_interrupted; i++)
        for (int j = 0; j < PRJB_QUERY_KINDS; j++)
            run_one(s, j, &rng, &k[j]);
}
