/*
 * test_concurrency.c — many threads appending to one store at once.
 *
 * Whatever the interleaving, every stream's versions must come out gapless
 * from 1, the log's positions gapless from 1, every acknowledged append must
 * be in the log exactly where its result says, and each append in a group
 * commit must succeed or fail on its own.
 *
 * Sections: helpers that check the whole log; threads with es_append_wait;
 * threads with es_append_submit; racing expected versions; batches.
 */
#include "eventstore/es.h"

#include "tests/support/check_util.h"
#include "tests/support/es_util.h"
#include "tests/support/mpmap.h"
#include "tests/support/tmpdir.h"

#include <pthread.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define THREADS 16
#define WAIT_MS 120000u

static char *g_dir;
static es_store *g_st;

static void store_setup(void)
{
    g_dir = tst_dir_new("concurrency");
    ck_assert_status(tst_store_open(g_dir, "task", 0, &g_st), GUILD_OK);
}

static void store_teardown(void)
{
    es_store_close(g_st);
    g_st = NULL;
    tst_dir_remove(g_dir);
    free(g_dir);
    g_dir = NULL;
}

/* ---- checking the whole log ----------------------------------------------- */

#define MAX_STREAMS 128

typedef struct stream_count {
    char name[MAX_STREAMS][ES_STREAM_MAX + 1];
    uint64_t version[MAX_STREAMS];
    size_t n;
} stream_count;

static uint64_t *stream_slot(stream_count *sc, es_str stream)
{
    for (size_t i = 0; i < sc->n; i++)
        if (tst_str_eq(stream, sc->name[i]))
            return &sc->version[i];
    ck_assert_uint_lt(sc->n, MAX_STREAMS);
    tst_str_copy(stream, sc->name[sc->n], sizeof sc->name[sc->n]);
    sc->version[sc->n] = 0;
    return &sc->version[sc->n++];
}

/* Reads the whole log into recs and asserts `total` events at positions
 * 1..total, each stream's versions gapless from 1 and matching its head. */
static void assert_log_gapless(tst_recs *recs, uint64_t total)
{
    ck_assert_status(tst_read_whole_log(g_st, recs), GUILD_OK);
    ck_assert(!recs->bad);
    ck_assert_uint_eq(recs->n, total);
    stream_count *sc = calloc(1, sizeof *sc);
    ck_assert_ptr_nonnull(sc);
    for (size_t i = 0; i < recs->n; i++) {
        const es_record *rec = &recs->v[i].rec;
        ck_assert_uint_eq(rec->position, i + 1);
        uint64_t *v = stream_slot(sc, rec->stream);
        ck_assert_uint_eq(rec->version, ++*v);
    }
    for (size_t i = 0; i < sc->n; i++) {
        uint64_t head = 0;
        ck_assert_status(es_stream_head(g_st, sc->name[i], &head, NULL), GUILD_OK);
        ck_assert_uint_eq(head, sc->version[i]);
    }
    free(sc);
}

/* Asserts that a successful result's events are in the log where it says. */
static void assert_result_in_log(const tst_recs *recs, const es_result *r)
{
    ck_assert_status(r->status, GUILD_OK);
    ck_assert_uint_gt(r->n_events, 0);
    ck_assert_uint_eq(r->last_position - r->first_position + 1, r->n_events);
    for (uint32_t k = 0; k < r->n_events; k++) {
        uint64_t pos = r->first_position + k;
        ck_assert_uint_le(pos, recs->n);
        const es_record *rec = &recs->v[pos - 1].rec;
        ck_assert(tst_str_eq(rec->id, r->event_ids[k]));
        ck_assert(tst_str_eq(rec->stream, r->stream));
        ck_assert_uint_eq(rec->version, r->version - r->n_events + 1 + k);
    }
}

static void assert_verifies(uint64_t total)
{
    es_verify_report rep;
    ck_assert_status(es_verify(g_st, &rep, NULL, NULL), GUILD_OK);
    ck_assert_msg(rep.intact, "broken at %llu: %s", (unsigned long long)rep.break_position,
                  rep.what);
    ck_assert_uint_eq(rep.checked, total);
    ck_assert_uint_eq(rep.last_position, total);
}

/* Appends n events (data {"i": k}) through submit. */
static guild_status submit_n(const char *stream, uint64_t expected, const char *command_id,
                             size_t n, tst_slot *slot)
{
    es_event_in ev[4];
    tst_map maps[4];
    ck_assert_uint_le(n, 4);
    tst_events_fill(ev, maps, n);
    es_append req = {.stream = stream,
                     .expected_version = expected,
                     .prov = {.command_id = command_id},
                     .events = ev,
                     .n_events = n};
    guild_status s = es_append_submit(g_st, &req, tst_slot_done, slot);
    tst_events_release(maps, n);
    return s;
}

/* A decide function that keeps the writer busy for a few milliseconds, so
 * the appends submitted meanwhile queue up and share the next batch. */
static guild_status plug_decide(void *ctx, es_wctx *w)
{
    (void)ctx;
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < 30000000L);
    es_wctx_emit(w, "plugged", 1, NULL, 0);
    return GUILD_OK;
}

static void submit_plug(tst_slot *slot)
{
    es_append req = {.stream = "plug", .expected_version = ES_ANY_VERSION, .decide = plug_decide};
    ck_assert_status(es_append_submit(g_st, &req, tst_slot_done, slot), GUILD_OK);
}

/* ---- threads with es_append_wait ------------------------------------------ */

typedef struct waiter {
    pthread_t th;
    int index;
    size_t appends;
    size_t events; /* per append */
    bool own_stream;
    es_result *results;
    pthread_barrier_t *start;
} waiter;

static void *waiter_run(void *arg)
{
    waiter *w = arg;
    char stream[64];
    if (w->own_stream)
        snprintf(stream, sizeof stream, "own-%d", w->index);
    else
        snprintf(stream, sizeof stream, "shared");
    pthread_barrier_wait(w->start);
    for (size_t i = 0; i < w->appends; i++) {
        uint64_t expected = w->own_stream ? i * w->events : ES_ANY_VERSION;
        tst_append(g_st, stream, expected, NULL, w->events, &w->results[i]);
    }
    return NULL;
}

static waiter *run_waiters(size_t appends, size_t events, bool own_stream)
{
    static pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, THREADS);
    waiter *ws = calloc(THREADS, sizeof *ws);
    ck_assert_ptr_nonnull(ws);
    for (int t = 0; t < THREADS; t++) {
        ws[t] = (waiter){.index = t,
                         .appends = appends,
                         .events = events,
                         .own_stream = own_stream,
                         .results = calloc(appends, sizeof(es_result)),
                         .start = &start};
        ck_assert_int_eq(pthread_create(&ws[t].th, NULL, waiter_run, &ws[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(ws[t].th, NULL);
    pthread_barrier_destroy(&start);
    return ws;
}

static void free_waiters(waiter *ws)
{
    for (int t = 0; t < THREADS; t++) {
        for (size_t i = 0; i < ws[t].appends; i++)
            es_result_release(&ws[t].results[i]);
        free(ws[t].results);
    }
    free(ws);
}

START_TEST(test_threads_appending_to_one_stream_get_gapless_versions)
{
    const size_t appends = 40;
    waiter *ws = run_waiters(appends, 1, false);
    tst_recs recs;
    tst_recs_init(&recs);
    const uint64_t total = THREADS * appends;
    assert_log_gapless(&recs, total);
    uint64_t head = 0;
    ck_assert_status(es_stream_head(g_st, "shared", &head, NULL), GUILD_OK);
    ck_assert_uint_eq(head, total);
    size_t ok = 0;
    for (int t = 0; t < THREADS; t++)
        for (size_t i = 0; i < appends; i++) {
            assert_result_in_log(&recs, &ws[t].results[i]);
            ok++;
        }
    ck_assert_uint_eq(ok, total);
    assert_verifies(total);
    tst_recs_release(&recs);
    free_waiters(ws);
}
END_TEST

START_TEST(test_threads_appending_to_their_own_streams_get_gapless_versions)
{
    const size_t appends = 25, events = 2;
    waiter *ws = run_waiters(appends, events, true);
    tst_recs recs;
    tst_recs_init(&recs);
    const uint64_t total = THREADS * appends * events;
    assert_log_gapless(&recs, total);
    for (int t = 0; t < THREADS; t++) {
        char stream[32];
        snprintf(stream, sizeof stream, "own-%d", t);
        uint64_t head = 0;
        ck_assert_status(es_stream_head(g_st, stream, &head, NULL), GUILD_OK);
        ck_assert_uint_eq(head, appends * events);
        for (size_t i = 0; i < appends; i++) {
            ck_assert_uint_eq(ws[t].results[i].version, (i + 1) * events);
            assert_result_in_log(&recs, &ws[t].results[i]);
        }
    }
    assert_verifies(total);
    tst_recs_release(&recs);
    free_waiters(ws);
}
END_TEST

/* ---- threads with es_append_submit ---------------------------------------- */

typedef struct submitter {
    pthread_t th;
    int index;
    size_t appends;
    tst_slot *slots;
    pthread_barrier_t *start;
    size_t rejected;
} submitter;

static void *submitter_run(void *arg)
{
    submitter *s = arg;
    pthread_barrier_wait(s->start);
    for (size_t i = 0; i < s->appends; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "mix-%zu", (s->index + i) % 5);
        if (submit_n(stream, ES_ANY_VERSION, NULL, 1 + i % 3, &s->slots[i]) != GUILD_OK) {
            s->rejected++;
            tst_latch_count_down(s->slots[i].latch);
        }
    }
    return NULL;
}

START_TEST(test_threads_submitting_appends_get_every_one_acknowledged)
{
    const size_t appends = 100;
    tst_latch latch;
    tst_latch_init(&latch, THREADS * appends);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, THREADS);
    submitter *ss = calloc(THREADS, sizeof *ss);
    for (int t = 0; t < THREADS; t++) {
        ss[t] = (submitter){.index = t,
                            .appends = appends,
                            .slots = calloc(appends, sizeof(tst_slot)),
                            .start = &start};
        for (size_t i = 0; i < appends; i++)
            ss[t].slots[i].latch = &latch;
        ck_assert_int_eq(pthread_create(&ss[t].th, NULL, submitter_run, &ss[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(ss[t].th, NULL);
    ck_assert_msg(tst_latch_wait(&latch, WAIT_MS), "not every submitted append called back");

    uint64_t total = 0;
    for (int t = 0; t < THREADS; t++) {
        ck_assert_uint_eq(ss[t].rejected, 0);
        for (size_t i = 0; i < appends; i++) {
            ck_assert_int_eq(ss[t].slots[i].calls, 1);
            ck_assert_status(ss[t].slots[i].res.status, GUILD_OK);
            total += ss[t].slots[i].res.n_events;
        }
    }
    uint64_t want = 0;
    for (size_t i = 0; i < appends; i++)
        want += 1 + i % 3;
    ck_assert_uint_eq(total, THREADS * want);
    tst_recs recs;
    tst_recs_init(&recs);
    assert_log_gapless(&recs, total);
    for (int t = 0; t < THREADS; t++)
        for (size_t i = 0; i < appends; i++)
            assert_result_in_log(&recs, &ss[t].slots[i].res);
    assert_verifies(total);

    tst_recs_release(&recs);
    for (int t = 0; t < THREADS; t++) {
        for (size_t i = 0; i < appends; i++)
            es_result_release(&ss[t].slots[i].res);
        free(ss[t].slots);
    }
    free(ss);
    pthread_barrier_destroy(&start);
    tst_latch_destroy(&latch);
}
END_TEST

/* Decide functions appending to one counter stream: each emits {"n": v+1}
 * where v is the version it sees, so a record whose n differs from its
 * version shows a decide that did not see an earlier append of its batch. */
static guild_status counter_decide(void *ctx, es_wctx *w)
{
    (void)ctx;
    tst_map m;
    tst_map_init(&m, 1);
    tst_map_int(&m, "n", (int64_t)es_wctx_version(w) + 1);
    es_wctx_emit(w, "counted", 1, tst_map_data(&m), tst_map_len(&m));
    tst_map_release(&m);
    return GUILD_OK;
}

typedef struct counter_thread {
    pthread_t th;
    size_t appends;
    tst_slot *slots;
    pthread_barrier_t *start;
} counter_thread;

static void *counter_run(void *arg)
{
    counter_thread *c = arg;
    es_append req = {
        .stream = "counter", .expected_version = ES_ANY_VERSION, .decide = counter_decide};
    pthread_barrier_wait(c->start);
    for (size_t i = 0; i < c->appends; i++)
        if (es_append_submit(g_st, &req, tst_slot_done, &c->slots[i]) != GUILD_OK)
            tst_latch_count_down(c->slots[i].latch);
    return NULL;
}

START_TEST(test_decides_in_one_batch_see_the_appends_before_them)
{
    const size_t appends = 30;
    tst_latch latch;
    tst_latch_init(&latch, THREADS * appends);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, THREADS);
    counter_thread *cs = calloc(THREADS, sizeof *cs);
    for (int t = 0; t < THREADS; t++) {
        cs[t] = (counter_thread){
            .appends = appends, .slots = calloc(appends, sizeof(tst_slot)), .start = &start};
        for (size_t i = 0; i < appends; i++)
            cs[t].slots[i].latch = &latch;
        ck_assert_int_eq(pthread_create(&cs[t].th, NULL, counter_run, &cs[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(cs[t].th, NULL);
    ck_assert(tst_latch_wait(&latch, WAIT_MS));
    for (int t = 0; t < THREADS; t++)
        for (size_t i = 0; i < appends; i++)
            ck_assert_status(cs[t].slots[i].res.status, GUILD_OK);

    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_stream(g_st, "counter", &recs), GUILD_OK);
    ck_assert_uint_eq(recs.n, THREADS * appends);
    for (size_t i = 0; i < recs.n; i++) {
        int64_t n = 0;
        ck_assert(tst_map_get_int(recs.v[i].rec.data, recs.v[i].rec.data_len, "n", &n));
        ck_assert_msg((uint64_t)n == recs.v[i].rec.version,
                      "version %llu was decided on version %lld",
                      (unsigned long long)recs.v[i].rec.version, (long long)n - 1);
    }
    tst_recs_release(&recs);
    for (int t = 0; t < THREADS; t++) {
        for (size_t i = 0; i < appends; i++)
            es_result_release(&cs[t].slots[i].res);
        free(cs[t].slots);
    }
    free(cs);
    pthread_barrier_destroy(&start);
    tst_latch_destroy(&latch);
}
END_TEST

/* In-process readers racing the writer: whatever head a reader is shown
 * must be readable, and a writer reads its own acknowledged append. */
typedef struct visibility {
    atomic_bool stop;
    atomic_uint violations;
    atomic_uint reads;
    char first[256]; /* the first violation, for the failure message */
    pthread_mutex_t mu;
} visibility;

static void violation(visibility *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void violation(visibility *v, const char *fmt, ...)
{
    if (atomic_fetch_add(&v->violations, 1) == 0) {
        va_list ap;
        va_start(ap, fmt);
        pthread_mutex_lock(&v->mu);
        vsnprintf(v->first, sizeof v->first, fmt, ap);
        pthread_mutex_unlock(&v->mu);
        va_end(ap);
    }
}

typedef struct vis_thread {
    pthread_t th;
    int index;
    visibility *v;
    size_t appends;
} vis_thread;

static void *vis_reader(void *arg)
{
    vis_thread *t = arg;
    visibility *v = t->v;
    tst_recs recs;
    tst_recs_init(&recs);
    uint64_t follow = 1;
    uint8_t follow_hash[ES_HASH_LEN] = {0};
    for (unsigned i = 0; !atomic_load(&v->stop); i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "hot-%u", i % 2);
        uint64_t head = 0;
        if (es_stream_head(g_st, stream, &head, NULL) == GUILD_OK) {
            tst_recs_clear(&recs);
            guild_status s = es_read_stream(g_st, stream, head, 10, tst_recs_collect, &recs, NULL);
            if (s != GUILD_OK || recs.n == 0 || recs.v[0].rec.version != head)
                violation(v, "head said version %llu; reading from it gave %s after %zu events",
                          (unsigned long long)head, guild_status_code(s), recs.n);
        }
        /* Follow the log like a projection: each page goes on where the
         * last one ended, gapless and chained. (Two separate reads may see
         * snapshots one commit apart in either order, so a page may come
         * back empty; it may not skip.) */
        tst_recs_clear(&recs);
        uint64_t next = 0;
        guild_status s = es_read_log(g_st, follow, 50, tst_recs_collect, &recs, &next);
        for (size_t k = 0; s == GUILD_OK && k < recs.n; k++) {
            const es_record *rec = &recs.v[k].rec;
            if (rec->position != follow || memcmp(rec->prev, follow_hash, ES_HASH_LEN) != 0) {
                violation(v, "following the log: expected position %llu, read %llu",
                          (unsigned long long)follow, (unsigned long long)rec->position);
                break;
            }
            memcpy(follow_hash, rec->hash, ES_HASH_LEN);
            follow++;
        }
        if (s != GUILD_OK)
            violation(v, "following the log from %llu: %s", (unsigned long long)follow,
                      guild_status_code(s));
        atomic_fetch_add(&v->reads, 1);
    }
    tst_recs_release(&recs);
    return NULL;
}

static void *vis_writer(void *arg)
{
    vis_thread *t = arg;
    visibility *v = t->v;
    char stream[32];
    snprintf(stream, sizeof stream, "hot-%d", t->index % 2);
    tst_recs recs;
    tst_recs_init(&recs);
    for (size_t i = 0; i < t->appends; i++) {
        es_result r;
        if (tst_append(g_st, stream, ES_ANY_VERSION, NULL, 1, &r) != GUILD_OK) {
            violation(v, "append %zu failed: %s", i, guild_status_code(r.status));
            es_result_release(&r);
            continue;
        }
        uint64_t head = 0;
        if (es_stream_head(g_st, stream, &head, NULL) != GUILD_OK || head < r.version)
            violation(v, "acknowledged version %llu, head then said %llu",
                      (unsigned long long)r.version, (unsigned long long)head);
        tst_recs_clear(&recs);
        es_read_stream(g_st, stream, r.version, 1, tst_recs_collect, &recs, NULL);
        if (recs.n != 1 || !tst_str_eq(recs.v[0].rec.id, r.event_ids[0]))
            violation(v, "acknowledged version %llu not readable (%zu events)",
                      (unsigned long long)r.version, recs.n);
        es_result_release(&r);
    }
    tst_recs_release(&recs);
    return NULL;
}

START_TEST(test_readers_racing_the_writer_in_process_see_a_consistent_store)
{
    enum { WRITERS = 8, READERS = 4, APPENDS = 60 };
    visibility v = {.mu = PTHREAD_MUTEX_INITIALIZER};
    atomic_init(&v.stop, false);
    atomic_init(&v.violations, 0);
    atomic_init(&v.reads, 0);
    vis_thread w[WRITERS], r[READERS];
    for (int i = 0; i < READERS; i++) {
        r[i] = (vis_thread){.index = i, .v = &v};
        ck_assert_int_eq(pthread_create(&r[i].th, NULL, vis_reader, &r[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++) {
        w[i] = (vis_thread){.index = i, .v = &v, .appends = APPENDS};
        ck_assert_int_eq(pthread_create(&w[i].th, NULL, vis_writer, &w[i]), 0);
    }
    for (int i = 0; i < WRITERS; i++)
        pthread_join(w[i].th, NULL);
    atomic_store(&v.stop, true);
    for (int i = 0; i < READERS; i++)
        pthread_join(r[i].th, NULL);
    ck_assert_msg(atomic_load(&v.violations) == 0, "%u violations, first: %s",
                  atomic_load(&v.violations), v.first);
    ck_assert_uint_gt(atomic_load(&v.reads), 0);
    tst_recs recs;
    tst_recs_init(&recs);
    assert_log_gapless(&recs, WRITERS * APPENDS);
    tst_recs_release(&recs);
}
END_TEST

/* ---- racing expected versions --------------------------------------------- */

typedef struct racer {
    pthread_t th;
    uint64_t expected;
    const char *command_id;
    size_t events;
    es_result res;
    pthread_barrier_t *start;
} racer;

static void *racer_run(void *arg)
{
    racer *r = arg;
    pthread_barrier_wait(r->start);
    tst_append(g_st, "race", r->expected, r->command_id, r->events, &r->res);
    return NULL;
}

static void race(racer *rs, int n)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)n);
    for (int t = 0; t < n; t++) {
        rs[t].start = &start;
        ck_assert_int_eq(pthread_create(&rs[t].th, NULL, racer_run, &rs[t]), 0);
    }
    for (int t = 0; t < n; t++)
        pthread_join(rs[t].th, NULL);
    pthread_barrier_destroy(&start);
}

START_TEST(test_racing_appends_with_one_expected_version_let_exactly_one_win)
{
    const int rounds = 5;
    for (int round = 0; round < rounds; round++) {
        racer rs[THREADS];
        memset(rs, 0, sizeof rs);
        for (int t = 0; t < THREADS; t++)
            rs[t] = (racer){.expected = (uint64_t)round, .events = 1};
        race(rs, THREADS);
        int won = 0, lost = 0;
        for (int t = 0; t < THREADS; t++) {
            if (rs[t].res.status == GUILD_OK) {
                won++;
                ck_assert_uint_eq(rs[t].res.version, (uint64_t)round + 1);
            } else {
                ck_assert_status(rs[t].res.status, GUILD_CONFLICT);
                ck_assert_uint_eq(rs[t].res.version, (uint64_t)round + 1);
                ck_assert_uint_eq(rs[t].res.n_events, 0);
                lost++;
            }
            es_result_release(&rs[t].res);
        }
        ck_assert_int_eq(won, 1);
        ck_assert_int_eq(lost, THREADS - 1);
    }
    tst_recs recs;
    tst_recs_init(&recs);
    assert_log_gapless(&recs, rounds);
    tst_recs_release(&recs);
}
END_TEST

START_TEST(test_racing_appends_with_one_command_id_write_once)
{
    racer rs[THREADS];
    memset(rs, 0, sizeof rs);
    for (int t = 0; t < THREADS; t++)
        rs[t] = (racer){.expected = ES_ANY_VERSION, .command_id = "cmd-race", .events = 2};
    race(rs, THREADS);
    int first = -1, duplicates = 0;
    for (int t = 0; t < THREADS; t++) {
        ck_assert_status(rs[t].res.status, GUILD_OK);
        if (rs[t].res.duplicate) {
            duplicates++;
        } else {
            ck_assert_int_eq(first, -1);
            first = t;
        }
    }
    ck_assert_int_ge(first, 0);
    ck_assert_int_eq(duplicates, THREADS - 1);
    for (int t = 0; t < THREADS; t++) {
        ck_assert_uint_eq(rs[t].res.first_position, rs[first].res.first_position);
        ck_assert_uint_eq(rs[t].res.n_events, 2);
        ck_assert_str_eq(rs[t].res.event_ids[0], rs[first].res.event_ids[0]);
        ck_assert_str_eq(rs[t].res.event_ids[1], rs[first].res.event_ids[1]);
    }
    for (int t = 0; t < THREADS; t++)
        es_result_release(&rs[t].res);
    ck_assert_uint_eq(tst_log_position(g_st), 2);
}
END_TEST

/* A registration claiming one email: refuses when the email's stream
 * already exists, else writes the user and the claim in one append. */
static guild_status claim_decide(void *ctx, es_wctx *w)
{
    (void)ctx;
    if (es_wctx_head(w, "email-same") != 0)
        return es_wctx_fail(w, GUILD_CONFLICT, "email", "email is taken");
    es_wctx_emit(w, "user_registered", 1, NULL, 0);
    es_wctx_emit_to(w, "email-same", "email_claimed", 1, NULL, 0);
    return GUILD_OK;
}

typedef struct claimer {
    pthread_t th;
    int index;
    es_result res;
    pthread_barrier_t *start;
} claimer;

static void *claimer_run(void *arg)
{
    claimer *c = arg;
    char stream[32];
    snprintf(stream, sizeof stream, "user-%d", c->index);
    es_append req = {.stream = stream, .expected_version = 0, .decide = claim_decide};
    pthread_barrier_wait(c->start);
    es_append_wait(g_st, &req, &c->res);
    return NULL;
}

START_TEST(test_racing_claims_on_one_stream_let_exactly_one_win)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, THREADS);
    claimer cs[THREADS];
    for (int t = 0; t < THREADS; t++) {
        cs[t] = (claimer){.index = t, .start = &start};
        ck_assert_int_eq(pthread_create(&cs[t].th, NULL, claimer_run, &cs[t]), 0);
    }
    for (int t = 0; t < THREADS; t++)
        pthread_join(cs[t].th, NULL);
    pthread_barrier_destroy(&start);
    int won = -1;
    for (int t = 0; t < THREADS; t++) {
        if (cs[t].res.status == GUILD_OK) {
            ck_assert_int_eq(won, -1);
            won = t;
        } else {
            ck_assert_status(cs[t].res.status, GUILD_CONFLICT);
            ck_assert_str_eq(cs[t].res.error.field, "email");
        }
    }
    ck_assert_int_ge(won, 0);
    tst_recs recs;
    tst_recs_init(&recs);
    assert_log_gapless(&recs, 2);
    char winner[32];
    snprintf(winner, sizeof winner, "user-%d", won);
    ck_assert(tst_str_eq(recs.v[0].rec.stream, winner));
    ck_assert(tst_str_eq(recs.v[1].rec.stream, "email-same"));
    tst_recs_release(&recs);
    for (int t = 0; t < THREADS; t++)
        es_result_release(&cs[t].res);
}
END_TEST

/* ---- batches -------------------------------------------------------------- */

START_TEST(test_conflict_in_a_batch_does_not_fail_its_neighbours)
{
    ck_assert_status(tst_append_quiet(g_st, "held", 0, 1), GUILD_OK);
    enum { N = 64, BAD = 32 };
    tst_latch latch;
    tst_latch_init(&latch, N + 1);
    tst_slot plug = {.latch = &latch};
    tst_slot slots[N];
    memset(slots, 0, sizeof slots);
    submit_plug(&plug);
    for (int i = 0; i < N; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "n-%d", i);
        slots[i].latch = &latch;
        ck_assert_status(submit_n(i == BAD ? "held" : stream, 0, NULL, 2, &slots[i]), GUILD_OK);
    }
    ck_assert(tst_latch_wait(&latch, WAIT_MS));
    ck_assert_status(plug.res.status, GUILD_OK);
    for (int i = 0; i < N; i++) {
        if (i == BAD) {
            ck_assert_status(slots[i].res.status, GUILD_CONFLICT);
            ck_assert_uint_eq(slots[i].res.version, 1);
        } else {
            ck_assert_status(slots[i].res.status, GUILD_OK);
            ck_assert_uint_eq(slots[i].res.version, 2);
        }
    }
    tst_recs recs;
    tst_recs_init(&recs);
    assert_log_gapless(&recs, 1 + 1 + (N - 1) * 2);
    for (int i = 0; i < N; i++) {
        if (i != BAD)
            assert_result_in_log(&recs, &slots[i].res);
        es_result_release(&slots[i].res);
    }
    uint64_t held = 0;
    ck_assert_status(es_stream_head(g_st, "held", &held, NULL), GUILD_OK);
    ck_assert_uint_eq(held, 1);
    tst_recs_release(&recs);
    es_result_release(&plug.res);
    tst_latch_destroy(&latch);
}
END_TEST

static guild_status failing_decide(void *ctx, es_wctx *w)
{
    (void)ctx;
    es_wctx_emit(w, "never_written", 1, NULL, 0);
    return es_wctx_fail(w, GUILD_RULE_VIOLATION, "status", "task is cancelled");
}

START_TEST(test_decide_failure_in_a_batch_does_not_fail_its_neighbours)
{
    enum { N = 20, BAD = 10 };
    tst_latch latch;
    tst_latch_init(&latch, N + 1);
    tst_slot plug = {.latch = &latch};
    tst_slot slots[N];
    memset(slots, 0, sizeof slots);
    submit_plug(&plug);
    for (int i = 0; i < N; i++) {
        slots[i].latch = &latch;
        if (i == BAD) {
            es_append req = {
                .stream = "task-1", .expected_version = ES_ANY_VERSION, .decide = failing_decide};
            ck_assert_status(es_append_submit(g_st, &req, tst_slot_done, &slots[i]), GUILD_OK);
        } else {
            ck_assert_status(submit_n("task-1", ES_ANY_VERSION, NULL, 1, &slots[i]), GUILD_OK);
        }
    }
    ck_assert(tst_latch_wait(&latch, WAIT_MS));
    for (int i = 0; i < N; i++) {
        if (i == BAD) {
            ck_assert_status(slots[i].res.status, GUILD_RULE_VIOLATION);
            ck_assert_str_eq(slots[i].res.error.field, "status");
            ck_assert_uint_eq(slots[i].res.n_events, 0);
        } else {
            ck_assert_status(slots[i].res.status, GUILD_OK);
        }
    }
    tst_recs recs;
    tst_recs_init(&recs);
    assert_log_gapless(&recs, 1 + (N - 1));
    for (size_t i = 0; i < recs.n; i++)
        ck_assert(!tst_str_eq(recs.v[i].rec.type, "never_written"));
    for (int i = 0; i < N; i++)
        es_result_release(&slots[i].res);
    tst_recs_release(&recs);
    es_result_release(&plug.res);
    tst_latch_destroy(&latch);
}
END_TEST

START_TEST(test_appends_in_one_batch_apply_in_submission_order)
{
    tst_latch latch;
    tst_latch_init(&latch, 4);
    tst_slot plug = {.latch = &latch}, a = {.latch = &latch}, b = {.latch = &latch},
             c = {.latch = &latch};
    submit_plug(&plug);
    ck_assert_status(submit_n("task-1", 0, NULL, 1, &a), GUILD_OK);
    ck_assert_status(submit_n("task-1", 0, NULL, 1, &b), GUILD_OK);
    ck_assert_status(submit_n("task-1", 1, NULL, 2, &c), GUILD_OK);
    ck_assert(tst_latch_wait(&latch, WAIT_MS));
    ck_assert_status(a.res.status, GUILD_OK);
    ck_assert_uint_eq(a.res.version, 1);
    ck_assert_status(b.res.status, GUILD_CONFLICT);
    ck_assert_uint_eq(b.res.version, 1);
    ck_assert_status(c.res.status, GUILD_OK);
    ck_assert_uint_eq(c.res.version, 3);
    ck_assert_uint_eq(c.res.first_position, a.res.last_position + 1);
    es_result_release(&plug.res);
    es_result_release(&a.res);
    es_result_release(&b.res);
    es_result_release(&c.res);
    tst_latch_destroy(&latch);
}
END_TEST

START_TEST(test_same_command_id_twice_in_one_batch_writes_once)
{
    tst_latch latch;
    tst_latch_init(&latch, 3);
    tst_slot plug = {.latch = &latch}, a = {.latch = &latch}, b = {.latch = &latch};
    submit_plug(&plug);
    ck_assert_status(submit_n("task-1", ES_ANY_VERSION, "cmd-twice", 2, &a), GUILD_OK);
    ck_assert_status(submit_n("task-1", ES_ANY_VERSION, "cmd-twice", 2, &b), GUILD_OK);
    ck_assert(tst_latch_wait(&latch, WAIT_MS));
    ck_assert_status(a.res.status, GUILD_OK);
    ck_assert_status(b.res.status, GUILD_OK);
    ck_assert(!a.res.duplicate);
    ck_assert(b.res.duplicate);
    ck_assert_uint_eq(b.res.first_position, a.res.first_position);
    ck_assert_uint_eq(b.res.version, a.res.version);
    ck_assert_str_eq(b.res.event_ids[1], a.res.event_ids[1]);
    uint64_t head = 0;
    ck_assert_status(es_stream_head(g_st, "task-1", &head, NULL), GUILD_OK);
    ck_assert_uint_eq(head, 2);
    es_result_release(&plug.res);
    es_result_release(&a.res);
    es_result_release(&b.res);
    tst_latch_destroy(&latch);
}
END_TEST

START_TEST(test_close_finishes_every_submitted_append)
{
    enum { N = 300 };
    tst_slot *slots = calloc(N, sizeof *slots);
    for (int i = 0; i < N; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "task-%d", i % 7);
        ck_assert_status(submit_n(stream, ES_ANY_VERSION, NULL, 1, &slots[i]), GUILD_OK);
    }
    es_store_close(g_st);
    g_st = NULL;
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(slots[i].calls, 1);
        ck_assert_status(slots[i].res.status, GUILD_OK);
        es_result_release(&slots[i].res);
    }
    free(slots);
    ck_assert_status(tst_store_open(g_dir, "task", 0, &g_st), GUILD_OK);
    tst_recs recs;
    tst_recs_init(&recs);
    assert_log_gapless(&recs, N);
    tst_recs_release(&recs);
}
END_TEST

/* ---- appends run where they are submitted (run_here) ---------------------- */

/* Whole-test checks made inside done callbacks and decide functions. */
typedef struct watch {
    visibility v;               /* violations, the first one described */
    atomic_int inside;          /* done callbacks running right now */
    atomic_int max_inside;      /* most ever running at once */
    atomic_uint calls;          /* done callbacks so far */
    atomic_uint seq;            /* numbers the callbacks in the order they came */
    atomic_uint_fast64_t last;  /* last position told so far (check_order) */
    bool check_order;           /* every append of the store is told through here_done */
    long spin_ns;               /* time each callback takes, to widen overlaps */
    pthread_t threads[THREADS]; /* the test's submitting threads */
    atomic_int n_threads;
} watch;

static void watch_init(watch *w, bool check_order, uint64_t last_position)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->v.mu, NULL);
    atomic_init(&w->v.violations, 0);
    atomic_init(&w->inside, 0);
    atomic_init(&w->max_inside, 0);
    atomic_init(&w->calls, 0);
    atomic_init(&w->seq, 0);
    atomic_init(&w->last, last_position);
    atomic_init(&w->n_threads, 0);
    w->check_order = check_order;
}

/* Called by each submitting thread before it starts. */
static void watch_register(watch *w)
{
    int i = atomic_fetch_add(&w->n_threads, 1);
    ck_assert_int_lt(i, THREADS);
    w->threads[i] = pthread_self();
}

static int watch_thread_index(watch *w, pthread_t th)
{
    int n = atomic_load(&w->n_threads);
    for (int i = 0; i < n; i++)
        if (pthread_equal(w->threads[i], th))
            return i;
    return -1;
}

/* Plain values of the watch's counters, for readable failures. */
static int max_inside_of(watch *w)
{
    return atomic_load(&w->max_inside);
}

static unsigned calls_seen(watch *w)
{
    return atomic_load(&w->calls);
}

static void assert_no_violations(watch *w)
{
    ck_assert_msg(atomic_load(&w->v.violations) == 0, "%u violations, first: %s",
                  atomic_load(&w->v.violations), w->v.first);
}

static void spin_ns(long ns)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < ns);
}

/* Sleeps up to max_us microseconds (not at all a third of the time). At
 * the start of a round it staggers the threads: the first to come finds
 * the writer idle and runs its append itself, the others queue behind it
 * or, coming later, find the writer idle again. (A commit takes about a
 * millisecond: without rounds, threads that do not wait flood the queue
 * and run_here never gets to run anything.) */
static void jitter(unsigned *seed, int max_us)
{
    int us = (int)(rand_r(seed) % (unsigned)(max_us * 3 / 2 + 1)) - max_us / 2;
    if (us > 0) {
        struct timespec ts = {0, us * 1000L};
        nanosleep(&ts, NULL);
    }
}

/* Sleeps until the next multiple of period_us on the monotonic clock, then
 * up to jitter_us more: threads calling it wake together in bursts (like
 * rounds, without a barrier that threads stopping early would block). */
static void tick_wait(unsigned *seed, long period_us, int jitter_us)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long p = period_us * 1000LL;
    long long ns = ((long long)now.tv_sec * 1000000000LL + now.tv_nsec) / p * p + p +
                   (long long)(rand_r(seed) % (unsigned)(jitter_us + 1)) * 1000LL;
    struct timespec until = {(time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL)};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL);
}

/* A door a decide function or a done callback waits at until the test
 * opens it (for at most 20 s, so a bug fails the test instead of hanging). */
typedef struct gate {
    atomic_bool entered, open;
    pthread_t decided_on; /* the thread gate_decide ran on */
} gate;

static bool gate_pass(gate *g)
{
    atomic_store(&g->entered, true);
    for (int i = 0; i < 200000 && !atomic_load(&g->open); i++) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    return atomic_load(&g->open);
}

/* Polls `cond` every 100 us for at most 20 s. */
#define WAIT_UNTIL(cond)                                                                           \
    do {                                                                                           \
        for (int wait_i_ = 0; wait_i_ < 200000 && !(cond); wait_i_++) {                            \
            struct timespec wait_ts_ = {0, 100000};                                                \
            nanosleep(&wait_ts_, NULL);                                                            \
        }                                                                                          \
        ck_assert_msg((cond), "timed out waiting for %s", #cond);                                  \
    } while (0)

static guild_status gate_decide(void *ctx, es_wctx *w)
{
    ((gate *)ctx)->decided_on = pthread_self();
    if (!gate_pass(ctx))
        return es_wctx_fail(w, GUILD_INTERNAL, "gate", "the gate never opened");
    es_wctx_emit(w, "gated", 1, NULL, 0);
    return GUILD_OK;
}

/* Where a submitted append's outcome lands, with the threads its decide
 * function and its done callback ran on. */
typedef struct here_slot {
    es_result res; /* moved here by here_done; release it */
    tst_latch *latch;
    tst_latch *own; /* counted down too, when set: one submitting thread waits on it */
    watch *w;
    gate *hold; /* when set, the done callback waits for it to open */
    pthread_t submitter;
    bool run_here;
    guild_status submitted; /* what es_append_submit returned */
    atomic_bool returned;   /* es_append_submit has returned */
    atomic_int calls;
    unsigned seq;          /* place among the watch's callbacks, from 1 */
    bool called_in_submit; /* the callback ran before es_append_submit returned */
    pthread_t called_on;
    atomic_bool decided;
    pthread_t decided_on;
} here_slot;

/* How often the slot's callback ran, and whether its decide function ran
 * (plain values for readable failures). */
static int calls_of(here_slot *s)
{
    return atomic_load(&s->calls);
}

static bool decided_of(here_slot *s)
{
    return atomic_load(&s->decided);
}

static void here_slot_prepare(here_slot *s, bool run_here)
{
    s->submitter = pthread_self();
    s->run_here = run_here;
    atomic_store(&s->returned, false);
}

/* Checks that a callback or decide of the append in `s`, running on the
 * current thread, runs on a thread allowed to: its own submitter during
 * the submit (run_here only), or none of the test's submitting threads. */
static void check_thread(here_slot *s, const char *what)
{
    pthread_t self = pthread_self();
    if (pthread_equal(self, s->submitter)) {
        if (!s->run_here)
            violation(&s->w->v, "%s of a queued append ran on its submitting thread", what);
        else if (atomic_load(&s->returned))
            violation(&s->w->v, "%s ran on its submitting thread after the submit returned", what);
    } else if (watch_thread_index(s->w, self) >= 0) {
        violation(&s->w->v, "%s of one thread's append ran on another submitting thread", what);
    }
}

static void here_done(void *ctx, es_result *res)
{
    here_slot *s = ctx;
    pthread_t self = pthread_self();
    s->called_on = self;
    s->called_in_submit = pthread_equal(self, s->submitter) && !atomic_load(&s->returned);
    watch *w = s->w;
    if (w) {
        int in = atomic_fetch_add(&w->inside, 1) + 1;
        int max = atomic_load(&w->max_inside);
        while (in > max && !atomic_compare_exchange_weak(&w->max_inside, &max, in))
            ;
        if (in > 1)
            violation(&w->v, "%d done callbacks ran at once", in);
        s->seq = atomic_fetch_add(&w->seq, 1) + 1;
        check_thread(s, "the done callback");
        if (w->check_order && res->status == GUILD_OK && res->n_events > 0) {
            uint64_t last = atomic_load(&w->last);
            if (res->first_position != last + 1)
                violation(&w->v, "told positions %llu..%llu right after position %llu",
                          (unsigned long long)res->first_position,
                          (unsigned long long)res->last_position, (unsigned long long)last);
            atomic_store(&w->last, res->last_position);
        }
        if (w->spin_ns)
            spin_ns(w->spin_ns);
    }
    if (s->hold && !gate_pass(s->hold) && w)
        violation(&w->v, "a held callback was never released");
    s->res = *res;
    memset(res, 0, sizeof *res);
    if (w) {
        atomic_fetch_add(&w->calls, 1);
        atomic_fetch_sub(&w->inside, 1);
    }
    atomic_fetch_add(&s->calls, 1);
    tst_latch *own = s->own;
    if (s->latch)
        tst_latch_count_down(s->latch);
    if (own)
        tst_latch_count_down(own);
}

/* A thread's latch for one append at a time: armed before each submit. */
static void own_arm(tst_latch *own)
{
    pthread_mutex_lock(&own->mu);
    own->left = 1;
    pthread_mutex_unlock(&own->mu);
}

/* Waits for the armed latch; false if the callback did not come in time. */
static bool own_wait(tst_latch *own)
{
    return tst_latch_wait(own, WAIT_MS);
}

/* A decide that records its thread and counts: it emits {"n": v+1} where v
 * is the version it sees (ctx is the append's here_slot). */
static guild_status here_decide(void *ctx, es_wctx *w)
{
    here_slot *s = ctx;
    s->decided_on = pthread_self();
    atomic_store(&s->decided, true);
    if (s->w)
        check_thread(s, "the decide function");
    return counter_decide(NULL, w);
}

/* Submits req with done = here_done and ctx = s, noting where and when the
 * submit ran; returns (and keeps in s) what es_append_submit returned. */
static guild_status submit_req_here(const es_append *req, here_slot *s)
{
    here_slot_prepare(s, req->run_here);
    s->submitted = es_append_submit(g_st, req, here_done, s);
    atomic_store(&s->returned, true);
    return s->submitted;
}

/* Submits n plain events (data {"i": k}), or a here_decide when decide,
 * with done = here_done and ctx = s. */
static guild_status submit_here(const char *stream, uint64_t expected, const char *command_id,
                                size_t n, bool decide, bool run_here, here_slot *s)
{
    es_event_in ev[4];
    tst_map maps[4];
    ck_assert_uint_le(n, 4);
    tst_events_fill(ev, maps, n);
    es_append req = {.stream = stream,
                     .expected_version = expected,
                     .prov = {.command_id = command_id},
                     .events = ev,
                     .n_events = decide ? 0 : n,
                     .decide = decide ? here_decide : NULL,
                     .decide_ctx = s,
                     .run_here = run_here};
    guild_status st = submit_req_here(&req, s);
    tst_events_release(maps, n);
    return st;
}

/* Every record of type "counted" carries n equal to its version. */
static void assert_counted_records_saw_their_stream(const tst_recs *recs)
{
    for (size_t i = 0; i < recs->n; i++) {
        const es_record *rec = &recs->v[i].rec;
        if (!tst_str_eq(rec->type, "counted"))
            continue;
        int64_t n = 0;
        ck_assert(tst_map_get_int(rec->data, rec->data_len, "n", &n));
        ck_assert_msg((uint64_t)n == rec->version, "version %llu was decided on version %lld",
                      (unsigned long long)rec->version, (long long)n - 1);
    }
}

/* Reads the whole log and asserts it gapless with `total` events, each of
 * the n results in it where it says, and every "counted" record right. */
static void assert_results_in_whole_log(uint64_t total, const es_result *const *results, size_t n)
{
    tst_recs recs;
    tst_recs_init(&recs);
    assert_log_gapless(&recs, total);
    for (size_t i = 0; i < n; i++)
        assert_result_in_log(&recs, results[i]);
    assert_counted_records_saw_their_stream(&recs);
    tst_recs_release(&recs);
}

/* Submits, queued, an append to "plug" whose decide function waits at g. */
static void submit_plug_here(gate *g, here_slot *s)
{
    es_append req = {.stream = "plug",
                     .expected_version = ES_ANY_VERSION,
                     .decide = gate_decide,
                     .decide_ctx = g};
    ck_assert_status(submit_req_here(&req, s), GUILD_OK);
}

/* Appends one plain event to stream with es_append_wait (with a here_decide
 * as well when decide), its decide checked against the watch w. */
static void wait_here(const char *stream, uint64_t expected, bool decide, bool run_here, watch *w,
                      es_result *r)
{
    here_slot decide_slot = {.w = w};
    here_slot_prepare(&decide_slot, run_here);
    es_event_in ev = {.type = "thing_happened", .schema = 1};
    es_append req = {.stream = stream,
                     .expected_version = expected,
                     .events = &ev,
                     .n_events = 1,
                     .decide = decide ? here_decide : NULL,
                     .decide_ctx = &decide_slot,
                     .run_here = run_here};
    es_append_wait(g_st, &req, r);
}

START_TEST(test_run_here_lone_append_is_done_before_submit_returns)
{
    /* Plain events. */
    here_slot a = {0};
    ck_assert_status(submit_here("task-1", 0, NULL, 2, false, true, &a), GUILD_OK);
    ck_assert_int_eq(calls_of(&a), 1);
    ck_assert(a.called_in_submit);
    ck_assert(pthread_equal(a.called_on, pthread_self()));
    ck_assert_status(a.res.status, GUILD_OK);
    ck_assert_uint_eq(a.res.n_events, 2);
    ck_assert_uint_eq(a.res.first_position, 1);
    ck_assert_uint_eq(a.res.last_position, 2);
    ck_assert_uint_eq(a.res.version, 2);
    assert_results_in_whole_log(2, (const es_result *[]){&a.res}, 1);

    /* A decide function: it runs on this thread too, and sees the stream. */
    here_slot b = {0};
    ck_assert_status(submit_here("task-1", 2, NULL, 0, true, true, &b), GUILD_OK);
    ck_assert_int_eq(calls_of(&b), 1);
    ck_assert(b.called_in_submit);
    ck_assert(decided_of(&b));
    ck_assert(pthread_equal(b.decided_on, pthread_self()));
    ck_assert_status(b.res.status, GUILD_OK);
    ck_assert_uint_eq(b.res.first_position, 3);
    ck_assert_uint_eq(b.res.version, 3);

    /* A conflict is told inline as well. */
    here_slot c = {0};
    ck_assert_status(submit_here("task-1", 0, NULL, 1, false, true, &c), GUILD_OK);
    ck_assert_int_eq(calls_of(&c), 1);
    ck_assert(c.called_in_submit);
    ck_assert_status(c.res.status, GUILD_CONFLICT);
    ck_assert_uint_eq(c.res.version, 3);
    ck_assert_uint_eq(c.res.n_events, 0);

    /* es_append_wait with run_here. */
    es_event_in ev = {.type = "thing_happened", .schema = 1};
    es_append req = {.stream = "task-2",
                     .expected_version = ES_ANY_VERSION,
                     .events = &ev,
                     .n_events = 1,
                     .run_here = true};
    es_result d;
    ck_assert_status(es_append_wait(g_st, &req, &d), GUILD_OK);
    ck_assert_uint_eq(d.first_position, 4);

    es_stats stats;
    es_store_stats(g_st, &stats);
    ck_assert_uint_eq(stats.batches, 4);
    ck_assert_uint_eq(stats.requests, 4);

    assert_results_in_whole_log(4, (const es_result *[]){&a.res, &b.res, &d}, 3);
    assert_verifies(4);
    es_result_release(&a.res);
    es_result_release(&b.res);
    es_result_release(&c.res);
    es_result_release(&d);
}
END_TEST

START_TEST(test_run_here_append_waits_its_turn_behind_a_busy_writer)
{
    watch w;
    watch_init(&w, true, 0);
    watch_register(&w);
    tst_latch latch;
    tst_latch_init(&latch, 3);
    gate g = {0};
    here_slot plug = {.latch = &latch, .w = &w}, a = {.latch = &latch, .w = &w},
              b = {.latch = &latch, .w = &w};
    submit_plug_here(&g, &plug);

    /* The writer holds the plug (or it still waits in the queue): both
     * appends go to the queue, even with run_here. */
    ck_assert_status(submit_here("task-1", 0, NULL, 1, false, true, &a), GUILD_OK);
    ck_assert_status(submit_here("task-1", 1, NULL, 0, true, true, &b), GUILD_OK);
    ck_assert_int_eq(calls_of(&a), 0);
    ck_assert_int_eq(calls_of(&b), 0);
    ck_assert(!decided_of(&b));
    atomic_store(&g.open, true);
    ck_assert(tst_latch_wait(&latch, WAIT_MS));
    assert_no_violations(&w);

    ck_assert_status(plug.res.status, GUILD_OK);
    ck_assert_status(a.res.status, GUILD_OK);
    ck_assert_status(b.res.status, GUILD_OK);
    ck_assert(!a.called_in_submit);
    ck_assert(!pthread_equal(a.called_on, pthread_self()));
    ck_assert(!pthread_equal(b.called_on, pthread_self()));
    ck_assert(!pthread_equal(b.decided_on, pthread_self()));
    ck_assert_uint_eq(plug.seq, 1);
    ck_assert_uint_eq(a.seq, 2);
    ck_assert_uint_eq(b.seq, 3);
    ck_assert_uint_eq(a.res.first_position, plug.res.last_position + 1);
    ck_assert_uint_eq(b.res.first_position, a.res.last_position + 1);
    ck_assert_uint_eq(b.res.version, 2);

    assert_results_in_whole_log(3, (const es_result *[]){&plug.res, &a.res, &b.res}, 3);
    es_result_release(&plug.res);
    es_result_release(&a.res);
    es_result_release(&b.res);
    tst_latch_destroy(&latch);
}
END_TEST

/* An append run where it was submitted while earlier batches are still
 * being told (the completer is busy) is told after them, by the completer. */
START_TEST(test_run_here_append_is_told_after_batches_before_it)
{
    watch w;
    watch_init(&w, true, 0);
    watch_register(&w);
    tst_latch latch;
    tst_latch_init(&latch, 3);
    gate decide_gate = {0}, done_gate = {0};
    here_slot p = {.latch = &latch, .w = &w, .hold = &done_gate}, b = {.latch = &latch, .w = &w},
              c = {.latch = &latch, .w = &w};
    submit_plug_here(&decide_gate, &p);
    /* The writer runs the plug's batch alone; b waits behind it, so the
     * plug is handed to the completer, whose callback then holds. */
    WAIT_UNTIL(atomic_load(&decide_gate.entered));
    ck_assert_status(submit_here("task-1", ES_ANY_VERSION, NULL, 1, false, false, &b), GUILD_OK);
    atomic_store(&decide_gate.open, true);
    WAIT_UNTIL(atomic_load(&done_gate.entered));
    WAIT_UNTIL(tst_log_position(g_st) == 2);
    ck_assert_int_eq(calls_of(&b), 0);

    ck_assert_status(submit_here("task-1", 1, NULL, 0, true, true, &c), GUILD_OK);
    ck_assert_int_eq(calls_of(&c), 0);
    ck_assert_int_eq(calls_of(&b), 0);
    /* c may have been queued (the writer's turn for b not over yet): let
     * its batch commit and be handed on while the completer still holds,
     * or a writer coming to it late would find the completer idle. */
    WAIT_UNTIL(tst_log_position(g_st) == 3);
    struct timespec handed = {.tv_nsec = 100 * 1000 * 1000};
    nanosleep(&handed, NULL);
    ck_assert_int_eq(calls_of(&c), 0);
    atomic_store(&done_gate.open, true);
    ck_assert(tst_latch_wait(&latch, WAIT_MS));
    assert_no_violations(&w);
    ck_assert_int_eq(max_inside_of(&w), 1);

    ck_assert_status(p.res.status, GUILD_OK);
    ck_assert_status(b.res.status, GUILD_OK);
    ck_assert_status(c.res.status, GUILD_OK);
    ck_assert_uint_eq(p.seq, 1);
    ck_assert_uint_eq(b.seq, 2);
    ck_assert_uint_eq(c.seq, 3);
    ck_assert(!c.called_in_submit);
    ck_assert(!pthread_equal(c.called_on, pthread_self()));
    ck_assert(pthread_equal(b.called_on, p.called_on));
    ck_assert(pthread_equal(c.called_on, p.called_on));
    ck_assert_uint_eq(c.res.first_position, 3);
    ck_assert_uint_eq(c.res.version, 2);

    assert_results_in_whole_log(3, (const es_result *[]){&p.res, &b.res, &c.res}, 3);
    es_result_release(&p.res);
    es_result_release(&b.res);
    es_result_release(&c.res);
    tst_latch_destroy(&latch);
}
END_TEST

/* Threads of four kinds, appending in rounds: run_here with plain events
 * (some with command ids), run_here with decide functions on one counter
 * stream (these two like command handlers: one append at a time, waiting
 * for its callback), es_append_wait racing on one stream with the expected
 * version each believes (half of them run_here, a third with decide), and
 * plain queued submits that do not wait. */
enum { HERE_PLAIN, HERE_DECIDE, HERE_RACE, QUEUED };

typedef struct here_thread {
    pthread_t th;
    int index, kind;
    size_t appends;
    here_slot *slots;   /* async kinds */
    es_result *results; /* HERE_RACE */
    tst_latch own;      /* HERE_PLAIN, HERE_DECIDE: the append in flight */
    watch *w;
    pthread_barrier_t *start;
} here_thread;

static void *here_thread_run(void *arg)
{
    here_thread *t = arg;
    watch_register(t->w);
    uint64_t belief = 0;
    unsigned seed = (unsigned)t->index;
    for (size_t i = 0; i < t->appends; i++) {
        /* Rounds: each starts with threads racing for a writer that is
         * likely idle; the first run their appends, the rest queue. */
        pthread_barrier_wait(t->start);
        jitter(&seed, 1000);
        char stream[32], cmd[48];
        snprintf(stream, sizeof stream, "mix-%zu", (t->index + i) % 5);
        snprintf(cmd, sizeof cmd, "cmd-%d-%zu", t->index, i);
        here_slot *s = t->slots ? &t->slots[i] : NULL;
        if (t->kind == HERE_PLAIN || t->kind == HERE_DECIDE) {
            s->own = &t->own;
            own_arm(&t->own);
        }
        guild_status st = GUILD_OK;
        switch (t->kind) {
        case HERE_PLAIN:
            st = submit_here(stream, ES_ANY_VERSION, i % 5 == 0 ? cmd : NULL, 1 + i % 3, false,
                             true, s);
            break;
        case HERE_DECIDE:
            st = submit_here("counter-here", ES_ANY_VERSION, NULL, 0, true, true, s);
            break;
        case QUEUED:
            st = submit_here(stream, ES_ANY_VERSION, NULL, 1 + i % 2, false, false, s);
            break;
        case HERE_RACE: {
            es_result *r = &t->results[i];
            wait_here("race", belief, i % 3 == 0, i % 2 == 0, t->w, r);
            if (r->status == GUILD_OK) {
                if (r->version != belief + 1)
                    violation(&t->w->v, "won expecting %llu, got version %llu",
                              (unsigned long long)belief, (unsigned long long)r->version);
            } else if (r->status == GUILD_CONFLICT) {
                if (r->version <= belief)
                    violation(&t->w->v, "conflict expecting %llu, told version %llu",
                              (unsigned long long)belief, (unsigned long long)r->version);
            } else {
                violation(&t->w->v, "race append failed: %s", guild_status_code(r->status));
            }
            belief = r->version;
            break;
        }
        }
        if (st != GUILD_OK) {
            violation(&t->w->v, "submit failed: %s", guild_status_code(st));
            tst_latch_count_down(s->latch);
        } else if (s && s->own && !own_wait(s->own)) {
            violation(&t->w->v, "an append's callback never came");
        }
    }
    return NULL;
}

START_TEST(test_run_here_threads_mixed_with_queued_and_waiting_keep_the_log_whole)
{
    const size_t appends = 300;
    /* A small map, so that batches run on submitting threads grow it too. */
    es_store_close(g_st);
    g_st = NULL;
    ck_assert_status(tst_store_open(g_dir, "task", 256 * 1024, &g_st), GUILD_OK);

    watch w;
    watch_init(&w, false, 0);
    int n_async = 0;
    for (int t = 0; t < THREADS; t++)
        n_async += t % 4 != HERE_RACE;
    tst_latch latch;
    tst_latch_init(&latch, (size_t)n_async * appends);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, THREADS);
    here_thread *ts = calloc(THREADS, sizeof *ts);
    ck_assert_ptr_nonnull(ts);
    for (int t = 0; t < THREADS; t++) {
        ts[t] =
            (here_thread){.index = t, .kind = t % 4, .appends = appends, .w = &w, .start = &start};
        if (ts[t].kind == HERE_RACE) {
            ts[t].results = calloc(appends, sizeof(es_result));
        } else {
            ts[t].slots = calloc(appends, sizeof(here_slot));
            for (size_t i = 0; i < appends; i++)
                ts[t].slots[i] = (here_slot){.latch = &latch, .w = &w};
        }
        tst_latch_init(&ts[t].own, 0);
    }
    for (int t = 0; t < THREADS; t++)
        ck_assert_int_eq(pthread_create(&ts[t].th, NULL, here_thread_run, &ts[t]), 0);
    for (int t = 0; t < THREADS; t++)
        pthread_join(ts[t].th, NULL);
    ck_assert_msg(tst_latch_wait(&latch, WAIT_MS), "not every submitted append called back");
    /* Closing tells whatever is left: a second call would show now. */
    es_store_close(g_st);
    g_st = NULL;
    assert_no_violations(&w);
    ck_assert_int_eq(max_inside_of(&w), 1);

    uint64_t total = 0, race_head = 0;
    size_t inline_done = 0, n_ok = 0;
    const es_result **ok = calloc((size_t)THREADS * appends, sizeof *ok);
    ck_assert_ptr_nonnull(ok);
    for (int t = 0; t < THREADS; t++)
        for (size_t i = 0; i < appends; i++) {
            if (ts[t].kind == HERE_RACE) {
                const es_result *r = &ts[t].results[i];
                if (r->status == GUILD_OK) {
                    total += r->n_events;
                    race_head = r->version > race_head ? r->version : race_head;
                    ok[n_ok++] = r;
                }
                continue;
            }
            here_slot *s = &ts[t].slots[i];
            ck_assert_int_eq(calls_of(s), 1);
            ck_assert_status(s->res.status, GUILD_OK);
            ck_assert(!s->res.duplicate);
            total += s->res.n_events;
            inline_done += s->called_in_submit;
            ok[n_ok++] = &s->res;
        }
    ck_assert_uint_eq(calls_seen(&w), (unsigned)n_async * appends);
    (void)inline_done;

    ck_assert_status(tst_store_open(g_dir, "task", 0, &g_st), GUILD_OK);
    assert_results_in_whole_log(total, ok, n_ok);
    free(ok);
    /* Exactly one winner per version of the raced stream. */
    ck_assert_uint_gt(race_head, 0);
    unsigned *winners = calloc(race_head + 1, sizeof *winners);
    for (int t = 0; t < THREADS; t++)
        for (size_t i = 0; i < appends; i++)
            if (ts[t].kind == HERE_RACE && ts[t].results[i].status == GUILD_OK)
                winners[ts[t].results[i].version]++;
    for (uint64_t v = 1; v <= race_head; v++)
        ck_assert_msg(winners[v] == 1, "version %llu of race won %u times", (unsigned long long)v,
                      winners[v]);
    ck_assert_uint_eq(tst_stream_version(g_st, "race"), race_head);
    ck_assert_uint_eq(tst_stream_version(g_st, "counter-here"), (THREADS / 4) * appends);
    assert_verifies(total);
    free(winners);

    for (int t = 0; t < THREADS; t++) {
        for (size_t i = 0; i < appends; i++) {
            if (ts[t].kind == HERE_RACE)
                es_result_release(&ts[t].results[i]);
            else
                es_result_release(&ts[t].slots[i].res);
        }
        free(ts[t].results);
        free(ts[t].slots);
        tst_latch_destroy(&ts[t].own);
    }
    free(ts);
    pthread_barrier_destroy(&start);
    tst_latch_destroy(&latch);
}
END_TEST

/* Every append of the store is submitted with here_done: run_here or
 * queued, some refused on their expected version. */
typedef struct order_thread {
    pthread_t th;
    int index;
    size_t appends;
    here_slot *slots;
    tst_latch own; /* each thread waits for its append before the next round */
    watch *w;
    pthread_barrier_t *start;
} order_thread;

static void *order_thread_run(void *arg)
{
    order_thread *t = arg;
    watch_register(t->w);
    unsigned seed = (unsigned)t->index;
    for (size_t i = 0; i < t->appends; i++) {
        pthread_barrier_wait(t->start); /* in rounds, as in the test above */
        jitter(&seed, 1000);
        char stream[32];
        snprintf(stream, sizeof stream, "ord-%zu", (t->index + i) % 3);
        here_slot *s = &t->slots[i];
        s->own = &t->own;
        own_arm(&t->own);
        guild_status st;
        switch ((t->index + i) % 4) {
        case 0:
            st = submit_here(stream, ES_ANY_VERSION, NULL, 1, false, true, s);
            break;
        case 1:
            st = submit_here(stream, ES_ANY_VERSION, NULL, 2, false, false, s);
            break;
        case 2:
            st = submit_here("taken", 0, NULL, 1, false, true, s); /* refused */
            break;
        default:
            st = submit_here(stream, ES_ANY_VERSION, NULL, 0, true, true, s);
            break;
        }
        if (st != GUILD_OK) {
            violation(&t->w->v, "submit failed: %s", guild_status_code(st));
            tst_latch_count_down(s->latch);
        } else if (!own_wait(&t->own)) {
            violation(&t->w->v, "an append's callback never came");
        }
    }
    return NULL;
}

START_TEST(test_run_here_callbacks_come_one_at_a_time_in_position_order)
{
    enum { T = 8 };
    const size_t appends = 250;
    here_slot first = {0};
    ck_assert_status(submit_here("taken", 0, NULL, 1, false, true, &first), GUILD_OK);
    ck_assert_int_eq(calls_of(&first), 1);
    es_result_release(&first.res);

    watch w;
    watch_init(&w, true, 1);
    w.spin_ns = 3000;
    tst_latch latch;
    tst_latch_init(&latch, T * appends);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, T);
    order_thread ts[T];
    for (int t = 0; t < T; t++) {
        ts[t] = (order_thread){.index = t,
                               .appends = appends,
                               .slots = calloc(appends, sizeof(here_slot)),
                               .w = &w,
                               .start = &start};
        for (size_t i = 0; i < appends; i++)
            ts[t].slots[i] = (here_slot){.latch = &latch, .w = &w};
        tst_latch_init(&ts[t].own, 0);
        ck_assert_int_eq(pthread_create(&ts[t].th, NULL, order_thread_run, &ts[t]), 0);
    }
    for (int t = 0; t < T; t++)
        pthread_join(ts[t].th, NULL);
    ck_assert_msg(tst_latch_wait(&latch, WAIT_MS), "not every submitted append called back");
    assert_no_violations(&w);
    ck_assert_int_eq(max_inside_of(&w), 1);
    ck_assert_uint_eq(calls_seen(&w), T * appends);

    uint64_t total = 1;
    size_t refused = 0, n_ok = 0;
    const es_result **ok = calloc(T * appends, sizeof *ok);
    ck_assert_ptr_nonnull(ok);
    for (int t = 0; t < T; t++)
        for (size_t i = 0; i < appends; i++) {
            here_slot *s = &ts[t].slots[i];
            ck_assert_int_eq(calls_of(s), 1);
            if ((t + i) % 4 == 2) {
                ck_assert_status(s->res.status, GUILD_CONFLICT);
                refused++;
            } else {
                ck_assert_status(s->res.status, GUILD_OK);
                total += s->res.n_events;
                ok[n_ok++] = &s->res;
            }
        }
    ck_assert_uint_eq(refused, T * appends / 4);
    /* The last position told is the log's last. */
    ck_assert_uint_eq(atomic_load(&w.last), total);
    ck_assert_uint_eq(tst_log_position(g_st), total);
    assert_results_in_whole_log(total, ok, n_ok);
    free(ok);
    for (int t = 0; t < T; t++) {
        for (size_t i = 0; i < appends; i++)
            es_result_release(&ts[t].slots[i].res);
        free(ts[t].slots);
        tst_latch_destroy(&ts[t].own);
    }
    pthread_barrier_destroy(&start);
    tst_latch_destroy(&latch);
}
END_TEST

/* Closing while threads submit: the submitting threads stop at their
 * first GUILD_CLOSED. A gate append, submitted just before the close, holds
 * the close (in its done callback, which runs before the store is freed)
 * until every submitting thread has stopped calling into the store. */
typedef struct closing {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int active; /* submitting threads still running */
    bool gate_ok;
    es_result gate_res;
    watch *w;
} closing;

typedef struct close_thread {
    pthread_t th;
    int index;
    size_t cap, submitted;
    here_slot *slots;
    closing *c;
    pthread_barrier_t *start;
} close_thread;

static void *close_thread_run(void *arg)
{
    close_thread *t = arg;
    watch_register(t->c->w);
    pthread_barrier_wait(t->start);
    unsigned seed = (unsigned)t->index;
    size_t i = 0;
    for (; i < t->cap; i++) {
        tick_wait(&seed, 1500, 600);
        char stream[32];
        snprintf(stream, sizeof stream, "closing-%zu", (t->index + i) % 4);
        t->slots[i].w = t->c->w;
        guild_status s = submit_here(stream, ES_ANY_VERSION, NULL, 1 + i % 2, i % 5 == 4,
                                     i % 4 != 3, &t->slots[i]);
        if (s != GUILD_OK) {
            if (s != GUILD_CLOSED)
                violation(&t->c->w->v, "submit failed: %s", guild_status_code(s));
            i++;
            break;
        }
    }
    t->submitted = i;
    pthread_mutex_lock(&t->c->mu);
    t->c->active--;
    pthread_cond_broadcast(&t->c->cv);
    pthread_mutex_unlock(&t->c->mu);
    return NULL;
}

static void closing_gate_done(void *ctx, es_result *res)
{
    closing *c = ctx;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 30;
    pthread_mutex_lock(&c->mu);
    int rc = 0;
    while (c->active > 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&c->cv, &c->mu, &until);
    c->gate_ok = c->active == 0;
    c->gate_res = *res;
    memset(res, 0, sizeof *res);
    pthread_mutex_unlock(&c->mu);
}

typedef struct closer {
    es_store *st;
    tst_latch done;
} closer;

static void *closer_run(void *arg)
{
    closer *c = arg;
    es_store_close(c->st);
    tst_latch_count_down(&c->done);
    return NULL;
}

START_TEST(test_closing_while_threads_submit_with_run_here_loses_nothing)
{
    enum { T = 8 };
    const size_t cap = 10000;
    watch w;
    watch_init(&w, false, 0);
    closing c = {
        .mu = PTHREAD_MUTEX_INITIALIZER, .cv = PTHREAD_COND_INITIALIZER, .active = T, .w = &w};
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, T + 1);
    close_thread ts[T];
    for (int t = 0; t < T; t++) {
        ts[t] = (close_thread){.index = t,
                               .cap = cap,
                               .slots = calloc(cap, sizeof(here_slot)),
                               .c = &c,
                               .start = &start};
        ck_assert_ptr_nonnull(ts[t].slots);
        ck_assert_int_eq(pthread_create(&ts[t].th, NULL, close_thread_run, &ts[t]), 0);
    }
    pthread_barrier_wait(&start);
    WAIT_UNTIL(calls_seen(&w) >= 400);

    es_event_in ev = {.type = "gate", .schema = 1};
    es_append gate_req = {
        .stream = "gate", .expected_version = ES_ANY_VERSION, .events = &ev, .n_events = 1};
    ck_assert_status(es_append_submit(g_st, &gate_req, closing_gate_done, &c), GUILD_OK);
    closer cl = {.st = g_st};
    tst_latch_init(&cl.done, 1);
    pthread_t closer_th;
    ck_assert_int_eq(pthread_create(&closer_th, NULL, closer_run, &cl), 0);
    ck_assert_msg(tst_latch_wait(&cl.done, WAIT_MS), "closing the store hangs");
    pthread_join(closer_th, NULL);
    g_st = NULL;
    for (int t = 0; t < T; t++)
        pthread_join(ts[t].th, NULL);
    pthread_barrier_destroy(&start);
    tst_latch_destroy(&cl.done);
    ck_assert_msg(c.gate_ok, "submitting threads still ran when the store closed");
    assert_no_violations(&w);
    ck_assert_int_eq(max_inside_of(&w), 1);
    ck_assert_status(c.gate_res.status, GUILD_OK);

    uint64_t total = c.gate_res.n_events;
    size_t ok = 0;
    const es_result **told = calloc(1 + T * cap, sizeof *told);
    ck_assert_ptr_nonnull(told);
    told[0] = &c.gate_res;
    for (int t = 0; t < T; t++) {
        ck_assert_uint_lt(ts[t].submitted, cap); /* stopped by GUILD_CLOSED */
        ck_assert_uint_gt(ts[t].submitted, 0);
        for (size_t i = 0; i < ts[t].submitted; i++) {
            here_slot *s = &ts[t].slots[i];
            if (i + 1 == ts[t].submitted) {
                ck_assert_status(s->submitted, GUILD_CLOSED);
                ck_assert_int_eq(calls_of(s), 0);
                continue;
            }
            ck_assert_status(s->submitted, GUILD_OK);
            ck_assert_int_eq(calls_of(s), 1);
            ck_assert_status(s->res.status, GUILD_OK);
            total += s->res.n_events;
            told[++ok] = &s->res;
        }
    }
    ck_assert_uint_eq(calls_seen(&w), ok);

    ck_assert_status(tst_store_open(g_dir, "task", 0, &g_st), GUILD_OK);
    assert_results_in_whole_log(total, told, 1 + ok);
    free(told);
    assert_verifies(total);
    es_result_release(&c.gate_res);
    for (int t = 0; t < T; t++) {
        for (size_t i = 0; i < ts[t].submitted; i++)
            es_result_release(&ts[t].slots[i].res);
        free(ts[t].slots);
    }
}
END_TEST

/* A run_here append held on its submitting thread, in its decide function
 * (its transaction open) or in its done callback (committed, told inline:
 * nothing else waits), while the test goes on. */
typedef struct held_submitter {
    pthread_t th;
    here_slot slot;
    gate g;
    bool in_decide;
} held_submitter;

static void *held_submitter_run(void *arg)
{
    held_submitter *h = arg;
    if (!h->in_decide)
        h->slot.hold = &h->g;
    es_append req = {.stream = "held",
                     .expected_version = 0,
                     .decide = h->in_decide ? gate_decide : here_decide,
                     .decide_ctx = h->in_decide ? (void *)&h->g : (void *)&h->slot,
                     .run_here = true};
    submit_req_here(&req, &h->slot);
    return NULL;
}

static void held_start(held_submitter *h, bool in_decide)
{
    memset(h, 0, sizeof *h);
    h->in_decide = in_decide;
    ck_assert_int_eq(pthread_create(&h->th, NULL, held_submitter_run, h), 0);
    WAIT_UNTIL(atomic_load(&h->g.entered));
}

/* After the held append was let go: it ran on its own thread. */
static void held_assert_ran_here(held_submitter *h)
{
    ck_assert_status(h->slot.submitted, GUILD_OK);
    ck_assert_int_eq(calls_of(&h->slot), 1);
    ck_assert_status(h->slot.res.status, GUILD_OK);
    if (h->in_decide) {
        ck_assert(pthread_equal(h->g.decided_on, h->th));
    } else {
        ck_assert(pthread_equal(h->slot.decided_on, h->th));
        ck_assert(h->slot.called_in_submit);
    }
}

/* Another thread closes the store while the append is held: the close
 * waits for it, appends queued meanwhile are committed, later ones are
 * refused and never called back. */
static void close_while_held(bool in_decide)
{
    enum { MAX_QUEUED = 2000 };
    held_submitter h;
    held_start(&h, in_decide);

    /* Appends queue behind the held one, run_here or not. */
    here_slot *queued = calloc(MAX_QUEUED, sizeof *queued);
    ck_assert_ptr_nonnull(queued);
    size_t n = 0;
    for (; n < 4; n++)
        ck_assert_status(
            submit_here("after", ES_ANY_VERSION, NULL, 1, false, n % 2 == 0, &queued[n]), GUILD_OK);
    closer cl = {.st = g_st};
    tst_latch_init(&cl.done, 1);
    pthread_t closer_th;
    ck_assert_int_eq(pthread_create(&closer_th, NULL, closer_run, &cl), 0);
    /* Until the close refuses them, they go on queueing (the store cannot
     * be freed meanwhile: its writer waits for the held append). */
    for (; n < MAX_QUEUED; n++) {
        if (submit_here("after", ES_ANY_VERSION, NULL, 1, false, n % 2 == 0, &queued[n]) !=
            GUILD_OK)
            break;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    ck_assert_uint_lt(n, MAX_QUEUED);
    ck_assert_status(queued[n].submitted, GUILD_CLOSED);
    /* The close waits for the held append; nothing after it was told. */
    ck_assert_msg(!tst_latch_wait(&cl.done, 200),
                  "the store closed while an append ran on its submitting thread");
    for (size_t i = 0; i <= n; i++)
        ck_assert_int_eq(calls_of(&queued[i]), 0);

    atomic_store(&h.g.open, true);
    ck_assert_msg(tst_latch_wait(&cl.done, WAIT_MS), "closing the store hangs");
    pthread_join(closer_th, NULL);
    pthread_join(h.th, NULL);
    g_st = NULL;
    tst_latch_destroy(&cl.done);

    held_assert_ran_here(&h);
    ck_assert_uint_eq(h.slot.res.first_position, 1);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(calls_of(&queued[i]), 1);
        ck_assert_status(queued[i].res.status, GUILD_OK);
        ck_assert_uint_eq(queued[i].res.first_position, i + 2);
    }
    ck_assert_int_eq(calls_of(&queued[n]), 0);

    ck_assert_status(tst_store_open(g_dir, "task", 0, &g_st), GUILD_OK);
    const es_result **told = calloc(1 + n, sizeof *told);
    ck_assert_ptr_nonnull(told);
    told[0] = &h.slot.res;
    for (size_t i = 0; i < n; i++)
        told[1 + i] = &queued[i].res;
    assert_results_in_whole_log(1 + n, told, 1 + n);
    free(told);
    assert_verifies(1 + n);
    es_result_release(&h.slot.res);
    for (size_t i = 0; i < n; i++)
        es_result_release(&queued[i].res);
    free(queued);
}

START_TEST(test_close_waits_for_a_run_here_append_deciding_on_its_thread)
{
    close_while_held(true);
}
END_TEST

START_TEST(test_close_waits_for_a_run_here_append_telling_on_its_thread)
{
    close_while_held(false);
}
END_TEST

/* Checkpoint slices (after every `index_every` events, run by whichever
 * thread ran the batch, and by the idle writer after a quiet second) racing
 * batches run on submitting threads, with a reader checking heads. */
#define CP_STREAMS 40

static guild_status open_checkpointing(void)
{
    es_options opt = {.domain = "task", .index_every = 150, .checkpoint_slice = 1};
    guild_error err;
    return es_store_open(g_dir, &opt, &g_st, &err);
}

static uint64_t checkpoint_position(void)
{
    void *v = NULL;
    size_t len = 0;
    if (es_meta_get(g_st, "es.checkpoint", &v, &len) != GUILD_OK)
        return 0;
    uint64_t pos = 0;
    for (size_t i = 0; i < 8 && i < len; i++)
        pos = pos << 8 | ((const uint8_t *)v)[i];
    free(v);
    return pos;
}

typedef struct cp_thread {
    pthread_t th;
    int index;
    size_t appends, n;
    es_result *results; /* appends per round, rounds after one another */
    watch *w;
    pthread_barrier_t *start;
} cp_thread;

static void *cp_thread_run(void *arg)
{
    cp_thread *t = arg;
    pthread_barrier_wait(t->start);
    unsigned seed = (unsigned)(t->index + 100 * t->n);
    for (size_t i = 0; i < t->appends; i++) {
        tick_wait(&seed, 1500, 600);
        char stream[32];
        snprintf(stream, sizeof stream, "cp-%02zu", (t->index * 7 + i) % CP_STREAMS);
        /* Every fourth append expects the version it just read: some lose. */
        uint64_t expected = i % 4 == 0 ? tst_stream_version(g_st, stream) : ES_ANY_VERSION;
        es_result *r = &t->results[t->n++];
        wait_here(stream, expected, i % 3 == 0, true, t->w, r);
        if (r->status != GUILD_OK && r->status != GUILD_CONFLICT)
            violation(&t->w->v, "append failed: %s", guild_status_code(r->status));
        if (r->status == GUILD_CONFLICT && r->version == expected)
            violation(&t->w->v, "conflict at the expected version %llu",
                      (unsigned long long)expected);
    }
    return NULL;
}

static void *cp_reader_run(void *arg)
{
    watch *w = arg;
    tst_recs recs;
    tst_recs_init(&recs);
    for (unsigned i = 0; !atomic_load(&w->v.stop); i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "cp-%02u", i % CP_STREAMS);
        uint64_t head = 0;
        if (es_stream_head(g_st, stream, &head, NULL) != GUILD_OK)
            continue;
        guild_status s = tst_read_whole_stream(g_st, stream, &recs);
        if (s != GUILD_OK || recs.n < head) {
            violation(&w->v, "%s: head %llu, read %zu events (%s)", stream,
                      (unsigned long long)head, recs.n, guild_status_code(s));
            continue;
        }
        for (size_t k = 0; k < recs.n; k++)
            if (recs.v[k].rec.version != k + 1) {
                violation(&w->v, "%s: event %zu has version %llu", stream, k,
                          (unsigned long long)recs.v[k].rec.version);
                break;
            }
        atomic_fetch_add(&w->v.reads, 1);
    }
    tst_recs_release(&recs);
    return NULL;
}

static void cp_round(cp_thread *ts, int n, size_t appends, watch *w)
{
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)n);
    for (int t = 0; t < n; t++) {
        ts[t].appends = appends;
        ts[t].w = w;
        ts[t].start = &start;
        ck_assert_int_eq(pthread_create(&ts[t].th, NULL, cp_thread_run, &ts[t]), 0);
    }
    for (int t = 0; t < n; t++)
        pthread_join(ts[t].th, NULL);
    pthread_barrier_destroy(&start);
}

static void cp_assert_whole(cp_thread *ts, int n)
{
    uint64_t total = 0;
    size_t n_ok = 0, cap = 0;
    for (int t = 0; t < n; t++)
        cap += ts[t].n;
    const es_result **ok = calloc(cap ? cap : 1, sizeof *ok);
    ck_assert_ptr_nonnull(ok);
    for (int t = 0; t < n; t++)
        for (size_t i = 0; i < ts[t].n; i++)
            if (ts[t].results[i].status == GUILD_OK) {
                total += ts[t].results[i].n_events;
                ok[n_ok++] = &ts[t].results[i];
            }
    assert_results_in_whole_log(total, ok, n_ok);
    free(ok);
    assert_verifies(total);
}

/* The idle writer indexes the tail after a quiet second, but not while an
 * append runs on its submitting thread: held in its done callback past
 * that second, the index checkpoint stays where it was until it is let go,
 * and is complete after the next quiet second. */
START_TEST(test_idle_checkpoint_waits_for_a_run_here_append)
{
    enum { PRE = 40 };
    es_store_close(g_st);
    g_st = NULL;
    ck_assert_status(open_checkpointing(), GUILD_OK);
    here_slot pre[PRE];
    memset(pre, 0, sizeof pre);
    for (int i = 0; i < PRE; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "idle-%02d", i % 20);
        ck_assert_status(submit_here(stream, ES_ANY_VERSION, NULL, 1, false, true, &pre[i]),
                         GUILD_OK);
        ck_assert(pre[i].called_in_submit);
        ck_assert_status(pre[i].res.status, GUILD_OK);
    }
    const uint64_t cp = checkpoint_position();
    ck_assert_uint_lt(cp, PRE);

    held_submitter h;
    held_start(&h, false);
    struct timespec past_idle = {1, 500000000};
    nanosleep(&past_idle, NULL);
    ck_assert_msg(checkpoint_position() == cp,
                  "the idle writer indexed the tail (checkpoint %llu -> %llu) while an append "
                  "ran on its submitting thread",
                  (unsigned long long)cp, (unsigned long long)checkpoint_position());
    ck_assert_uint_eq(tst_log_position(g_st), PRE + 1);
    atomic_store(&h.g.open, true);
    pthread_join(h.th, NULL);
    held_assert_ran_here(&h);
    ck_assert_uint_eq(h.slot.res.first_position, PRE + 1);
    WAIT_UNTIL(checkpoint_position() == PRE + 1);

    const es_result *told[PRE + 1];
    for (int i = 0; i < PRE; i++)
        told[i] = &pre[i].res;
    told[PRE] = &h.slot.res;
    assert_results_in_whole_log(PRE + 1, told, PRE + 1);
    assert_verifies(PRE + 1);
    es_store_close(g_st);
    g_st = NULL;
    ck_assert_status(tst_store_open(g_dir, "task", 0, &g_st), GUILD_OK);
    assert_results_in_whole_log(PRE + 1, &told[PRE], 1);
    assert_verifies(PRE + 1);
    for (int i = 0; i < PRE; i++)
        es_result_release(&pre[i].res);
    es_result_release(&h.slot.res);
}
END_TEST

START_TEST(test_run_here_appends_racing_checkpoint_slices_keep_the_index_whole)
{
    enum { T = 8, ROUNDS = 2, BURST = 60, CHASE = 25 };
    es_store_close(g_st);
    g_st = NULL;
    ck_assert_status(open_checkpointing(), GUILD_OK);
    watch w;
    watch_init(&w, false, 0);
    cp_thread ts[T];
    for (int t = 0; t < T; t++)
        ts[t] =
            (cp_thread){.index = t, .results = calloc(ROUNDS * (BURST + CHASE), sizeof(es_result))};
    pthread_t reader;
    ck_assert_int_eq(pthread_create(&reader, NULL, cp_reader_run, &w), 0);
    for (int round = 0; round < ROUNDS; round++) {
        /* Enough events for slices run after batches. */
        cp_round(ts, T, BURST, &w);
        /* Once the idle writer starts its slices (after a quiet second),
         * chase them with appends. */
        struct timespec settle = {0, 200000000};
        nanosleep(&settle, NULL);
        uint64_t cp = checkpoint_position();
        WAIT_UNTIL(checkpoint_position() != cp);
        cp_round(ts, T, CHASE, &w);
    }
    atomic_store(&w.v.stop, true);
    pthread_join(reader, NULL);
    assert_no_violations(&w);
    ck_assert_uint_gt(atomic_load(&w.v.reads), 0);
    cp_assert_whole(ts, T);

    /* Reopened: with the default index_every (replays the log after the
     * checkpoint close wrote), then with the small one again. */
    es_store_close(g_st);
    g_st = NULL;
    ck_assert_status(tst_store_open(g_dir, "task", 0, &g_st), GUILD_OK);
    ck_assert_uint_eq(checkpoint_position(), tst_log_position(g_st));
    cp_assert_whole(ts, T);
    es_store_close(g_st);
    g_st = NULL;
    ck_assert_status(open_checkpointing(), GUILD_OK);
    cp_assert_whole(ts, T);
    for (int t = 0; t < T; t++) {
        for (size_t i = 0; i < ts[t].n; i++)
            es_result_release(&ts[t].results[i]);
        free(ts[t].results);
    }
}
END_TEST

/* ---- suite ---------------------------------------------------------------- */

static TCase *tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_add_checked_fixture(tc, store_setup, store_teardown);
    tcase_set_timeout(tc, 240);
    return tc;
}

static Suite *concurrency_suite(void)
{
    Suite *s = suite_create("eventstore/concurrency");

    TCase *tc = tcase("threads");
    tcase_add_test(tc, test_threads_appending_to_one_stream_get_gapless_versions);
    tcase_add_test(tc, test_threads_appending_to_their_own_streams_get_gapless_versions);
    tcase_add_test(tc, test_threads_submitting_appends_get_every_one_acknowledged);
    tcase_add_test(tc, test_decides_in_one_batch_see_the_appends_before_them);
    tcase_add_test(tc, test_readers_racing_the_writer_in_process_see_a_consistent_store);
    suite_add_tcase(s, tc);

    tc = tcase("races");
    tcase_add_test(tc, test_racing_appends_with_one_expected_version_let_exactly_one_win);
    tcase_add_test(tc, test_racing_appends_with_one_command_id_write_once);
    tcase_add_test(tc, test_racing_claims_on_one_stream_let_exactly_one_win);
    suite_add_tcase(s, tc);

    tc = tcase("batches");
    tcase_add_test(tc, test_conflict_in_a_batch_does_not_fail_its_neighbours);
    tcase_add_test(tc, test_decide_failure_in_a_batch_does_not_fail_its_neighbours);
    tcase_add_test(tc, test_appends_in_one_batch_apply_in_submission_order);
    tcase_add_test(tc, test_same_command_id_twice_in_one_batch_writes_once);
    tcase_add_test(tc, test_close_finishes_every_submitted_append);
    suite_add_tcase(s, tc);

    tc = tcase("run_here");
    tcase_add_test(tc, test_run_here_lone_append_is_done_before_submit_returns);
    tcase_add_test(tc, test_run_here_append_waits_its_turn_behind_a_busy_writer);
    tcase_add_test(tc, test_run_here_append_is_told_after_batches_before_it);
    tcase_add_test(tc, test_run_here_threads_mixed_with_queued_and_waiting_keep_the_log_whole);
    tcase_add_test(tc, test_run_here_callbacks_come_one_at_a_time_in_position_order);
    tcase_add_test(tc, test_closing_while_threads_submit_with_run_here_loses_nothing);
    tcase_add_test(tc, test_close_waits_for_a_run_here_append_deciding_on_its_thread);
    tcase_add_test(tc, test_close_waits_for_a_run_here_append_telling_on_its_thread);
    tcase_add_test(tc, test_idle_checkpoint_waits_for_a_run_here_append);
    tcase_add_test(tc, test_run_here_appends_racing_checkpoint_slices_keep_the_index_whole);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tst_run_suite(concurrency_suite());
}
