/*
 * prj_replay.c — phases 1 and 2 of `guild bench project`: the talent read
 * model rebuilt from the history, the way `guild project rebuild` rebuilds
 * it, then search and match timed on it.
 *
 * Map
 *   - the rebuild: prj_store_replay, the loop `guild project rebuild` runs,
 *     timed
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
#include <errno.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROGRESS_NS 500000000ull
#define QUERY_SEED 0xD1B54A32D192ED03ull

/* ---- the rebuild ---------------------------------------------------------------- */

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

typedef struct replay_ctx {
    prjb_rebuild *out;
    uint64_t total, t0, shown;
    bool tty;
} replay_ctx;

static int on_batch(void *ctx, uint64_t position, const prj_batch_stats *st, size_t events,
                    double apply_seconds)
{
    replay_ctx *rc = ctx;
    prjb_rebuild *out = rc->out;
    out->apply_seconds += apply_seconds;
    out->applied += st->applied;
    out->skipped += st->skipped;
    out->parked += st->parked;
    out->batches++;
    out->events += events;
    out->position = position;
    if (rc->tty && guild_mono_ns() - rc->shown > PROGRESS_NS) {
        progress(out, rc->total, rc->t0, false);
        rc->shown = guild_mono_ns();
    }
    return cmdb_interrupted;
}

/* Replays the whole log into target, as `guild project rebuild` does. */
static guild_status replay_all(es_store *log, prj_store *target, prjb_rebuild *out, bool tty)
{
    replay_ctx rc = {.out = out, .tty = tty};
    es_log_head(log, &rc.total, NULL);
    double cpu0 = bench_cpu_seconds();
    rc.t0 = rc.shown = guild_mono_ns();
    guild_status s = prj_store_replay(target, log, 0, 0, on_batch, &rc);
    out->seconds = (double)(guild_mono_ns() - rc.t0) / 1e9;
    out->cpu_seconds = bench_cpu_seconds() - cpu0;
    progress(out, rc.total, rc.t0, true);
    return s;
}

/* ---- what the model holds ------------------------------------------------------- */

static int count_dead(void *ctx, uint64_t position, const char *reason, const char *type,
                      const char *stream)
{
    prjb_rebuild *r = ctx;
    (void)position, (void)type, (void)stream;
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

/* The replay itself, in this process: opens both stores, replays, closes. */
static int replay_here(const char *events_dir, const char *model_dir, bool tty, prjb_rebuild *r)
{
    es_options o = {.read_only = true};
    es_store *log = NULL;
    guild_error err = {0};
    if (es_store_open(events_dir, &o, &log, &err) != GUILD_OK) {
        snprintf(r->first_error, sizeof r->first_error, "opening %.80s: %.100s", events_dir,
                 err.message);
        return -1;
    }
    prj_store *target = NULL;
    if (prj_store_open(model_dir, prj_model_find("talent"), &target, &err) != GUILD_OK) {
        snprintf(r->first_error, sizeof r->first_error, "%.150s", err.message);
        es_store_close(log);
        return -1;
    }
    guild_status s = replay_all(log, target, r, tty);
    es_store_close(log);
    if (s != GUILD_OK || cmdb_interrupted) {
        snprintf(r->first_error, sizeof r->first_error, "replaying: %s",
                 cmdb_interrupted ? "interrupted" : guild_status_code(s));
        prj_store_close(target);
        return -1;
    }
    uint8_t digest[PRJ_DIGEST_LEN];
    prj_store_snapshot(target, &r->position, digest);
    sodium_bin2hex(r->digest, sizeof r->digest, digest, sizeof digest);
    prj_store_close(target);
    return 0;
}

int prjb_rebuild_child(const char *events_dir, const char *model_dir, int out_fd)
{
    prjb_rebuild r = {0};
    int rc = replay_here(events_dir, model_dir, isatty(1), &r);
    const char *p = (const char *)&r;
    for (size_t done = 0; done < sizeof r;) {
        ssize_t n = write(out_fd, p + done, sizeof r - done);
        if (n <= 0)
            return 1;
        done += (size_t)n;
    }
    return rc == 0 ? 0 : 1;
}

/* Runs the replay in a process of its own, as `guild project rebuild` is
 * one: the bench's own process has just written, verified and exported
 * the history, and its heap would slow the replay by a third. */
static int replay_apart(const char *events_dir, const char *model_dir, prjb_rebuild *r)
{
    int fds[2];
    if (pipe(fds) != 0)
        return replay_here(events_dir, model_dir, isatty(1), r);
    char self[1024];
    ssize_t sn = readlink("/proc/self/exe", self, sizeof self - 1);
    self[sn > 0 ? sn : 0] = '\0';
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[0]);
        if (fds[1] != 3) {
            dup2(fds[1], 3);
            close(fds[1]);
        }
        execl(self, "guild", "bench", "project", "--rebuild-child", events_dir, model_dir,
              (char *)NULL);
        _exit(127);
    }
    close(fds[1]);
    if (pid < 0) {
        close(fds[0]);
        return replay_here(events_dir, model_dir, isatty(1), r);
    }
    char *p = (char *)r;
    size_t got = 0;
    for (ssize_t n; got < sizeof *r && (n = read(fds[0], p + got, sizeof *r - got)) > 0;)
        got += (size_t)n;
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (got != sizeof *r) {
        snprintf(r->first_error, sizeof r->first_error, "the replay process said nothing");
        return -1;
    }
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

int prjb_rebuild_run(const char *events_dir, const char *model_dir, const prjb_history *h, bool tty,
                     prjb_rebuild *r, prj_store **store)
{
    (void)tty; /* the replay process looks at its own terminal */
    guild_error err = {0};
    *store = NULL;
    if (replay_apart(events_dir, model_dir, r) != 0)
        return -1;
    prj_store *target = NULL;
    if (prj_store_open(model_dir, prj_model_find("talent"), &target, &err) != GUILD_OK) {
        snprintf(r->first_error, sizeof r->first_error, "%.150s", err.message);
        return -1;
    }
    printf("[1/3] checking the model: get_profile for each of the %u ids ... ", h->profiles);
    fflush(stdout);
    check_profiles(target, h, r);
    printf("%.2f s\n", r->check_seconds);
    char path[4200];
    struct stat sb;
    snprintf(path, sizeof path, "%s/data.mdb", model_dir);
    if (stat(path, &sb) == 0)
        r->model_bytes = (uint64_t)sb.st_size;
    *store = target;
    return 0;
}

/* ---- queries ------------------------------------------------------------------------- */

static const char *const kind_labels[PRJB_QUERY_KINDS] = {
    "search: 1 skill, min_level",
    "search: 2 skills, all",
    "search: 2 skills, any",
    "search: skill + rate ceiling",
    "search: location",
    "search: skill + min_hours",
    "match: 3 required skills",
    "get_profile, JSON via a tree",
    "get_profile, JSON from the row",
};

#define KIND_MATCH 6
#define KIND_PROFILE_TREE 7 /* then the row's */

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

/* get_profile, its data written as JSON through the tree (what a msgpack
 * reply and every query without run_stored build) or straight from the
 * stored row (what a JSON reply does); *results 1. */
static guild_status run_profile(prj_store *s, bool tree, const json_t *args, uint64_t *results,
                                guild_error *err)
{
    guild_status st;
    if (tree) {
        json_t *data = NULL;
        char *text = NULL;
        size_t len = 0;
        st = prj_store_query(s, "get_profile", args, NULL, &data, NULL, err);
        if (st == GUILD_OK)
            st = guild_codec_encode(data, GUILD_FMT_JSON, &text, &len);
        free(text);
        json_decref(data);
    } else {
        guild_buf text = {0};
        bool done = false;
        st = prj_store_query_json(s, "get_profile", args, NULL, &text, NULL, &done, err);
        if (st == GUILD_OK && !done)
            st = guild_error_set(err, GUILD_INTERNAL, 0, "no JSON from the stored row");
        free(text.data);
    }
    *results = st == GUILD_OK;
    return st;
}

static void run_one(prj_store *s, const prjb_history *h, int k, uint64_t *rng, prjb_query_kind *out)
{
    json_t *args = NULL, *data = NULL;
    const char *name = k == KIND_MATCH ? "match" : k < KIND_MATCH ? "search" : "get_profile";
    guild_error err = {0};
    uint64_t profiles = 0;
    args = k >= KIND_PROFILE_TREE
               ? json_pack("{s:s}", "talent_id", h->talent_ids[prjb_below(rng, h->profiles)])
               : query_args(k, rng);
    uint64_t t0 = guild_mono_ns();
    guild_status st = k >= KIND_PROFILE_TREE
                          ? run_profile(s, k == KIND_PROFILE_TREE, args, &profiles, &err)
                          : prj_store_query(s, name, args, NULL, &data, NULL, &err);
    uint64_t ns = guild_mono_ns() - t0;
    if (!out->example[0]) {
        char *text = json_dumps(args, JSON_COMPACT);
        snprintf(out->example, sizeof out->example, "%s %s", name, text);
        free(text);
    }
    out->runs++;
    if (st == GUILD_OK) {
        bench_hist_record(&out->lat, ns);
        size_t n =
            k >= KIND_PROFILE_TREE ? profiles : json_array_size(json_object_get(data, "results"));
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

void prjb_queries_run(prj_store *s, const prjb_history *h, unsigned per_kind,
                      prjb_query_kind k[PRJB_QUERY_KINDS])
{
    uint64_t rng = QUERY_SEED;
    /* a few of each first, unmeasured, so every kind starts with warm pages */
    prjb_query_kind warm[PRJB_QUERY_KINDS];
    prjb_queries_init(warm);
    for (int i = 0; i < 20; i++)
        for (int j = 0; j < PRJB_QUERY_KINDS; j++)
            run_one(s, h, j, &rng, &warm[j]);
    prjb_queries_release(warm);
    for (unsigned i = 0; i < per_kind && !cmdb_interrupted; i++)
        for (int j = 0; j < PRJB_QUERY_KINDS; j++)
            run_one(s, h, j, &rng, &k[j]);
}
