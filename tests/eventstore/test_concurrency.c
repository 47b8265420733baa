/*
 * test_concurrency.c — many threads appending to one store at once.
 *
 * Whatever the interleaving, every stream's versions must come out gapless
 * from 1, the log's positions gapless from 1, every acknowledged append must
 * be in the log exactly where its result says, and each append in a group
 * commit must succeed or fail on its own. (Appends run on the submitting
 * thread, run_here, are in test_run_here.c.)
 *
 * Sections: helpers; threads with es_append_wait; threads with
 * es_append_submit; racing expected versions; batches and close.
 */
#include "eventstore/es.h"

#include "tests/support/check_util.h"
#include "tests/support/es_util.h"
#include "tests/support/mpmap.h"
#include "tests/support/tmpdir.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* ---- helpers -------------------------------------------------------------- */

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
    tst_spin_ns(30000000L);
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
    tst_assert_log_gapless(g_st, &recs, total);
    uint64_t head = 0;
    ck_assert_status(es_stream_head(g_st, "shared", &head, NULL), GUILD_OK);
    ck_assert_uint_eq(head, total);
    size_t ok = 0;
    for (int t = 0; t < THREADS; t++)
        for (size_t i = 0; i < appends; i++) {
            tst_assert_result_in_log(&recs, &ws[t].results[i]);
            ok++;
        }
    ck_assert_uint_eq(ok, total);
    tst_assert_verifies(g_st, total);
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
    tst_assert_log_gapless(g_st, &recs, total);
    for (int t = 0; t < THREADS; t++) {
        char stream[32];
        snprintf(stream, sizeof stream, "own-%d", t);
        uint64_t head = 0;
        ck_assert_status(es_stream_head(g_st, stream, &head, NULL), GUILD_OK);
        ck_assert_uint_eq(head, appends * events);
        for (size_t i = 0; i < appends; i++) {
            ck_assert_uint_eq(ws[t].results[i].version, (i + 1) * events);
            tst_assert_result_in_log(&recs, &ws[t].results[i]);
        }
    }
    tst_assert_verifies(g_st, total);
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
    tst_assert_log_gapless(g_st, &recs, total);
    for (int t = 0; t < THREADS; t++)
        for (size_t i = 0; i < appends; i++)
            tst_assert_result_in_log(&recs, &ss[t].slots[i].res);
    tst_assert_verifies(g_st, total);

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
        .stream = "counter", .expected_version = ES_ANY_VERSION, .decide = tst_counter_decide};
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
    tst_violations seen;
    atomic_bool stop;
    atomic_uint reads;
} visibility;

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
                tst_violation(&v->seen,
                              "head said version %llu; reading from it gave %s after %zu events",
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
                tst_violation(&v->seen, "following the log: expected position %llu, read %llu",
                              (unsigned long long)follow, (unsigned long long)rec->position);
                break;
            }
            memcpy(follow_hash, rec->hash, ES_HASH_LEN);
            follow++;
        }
        if (s != GUILD_OK)
            tst_violation(&v->seen, "following the log from %llu: %s", (unsigned long long)follow,
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
            tst_violation(&v->seen, "append %zu failed: %s", i, guild_status_code(r.status));
            es_result_release(&r);
            continue;
        }
        uint64_t head = 0;
        if (es_stream_head(g_st, stream, &head, NULL) != GUILD_OK || head < r.version)
            tst_violation(&v->seen, "acknowledged version %llu, head then said %llu",
                          (unsigned long long)r.version, (unsigned long long)head);
        tst_recs_clear(&recs);
        es_read_stream(g_st, stream, r.version, 1, tst_recs_collect, &recs, NULL);
        if (recs.n != 1 || !tst_str_eq(recs.v[0].rec.id, r.event_ids[0]))
            tst_violation(&v->seen, "acknowledged version %llu not readable (%zu events)",
                          (unsigned long long)r.version, recs.n);
        es_result_release(&r);
    }
    tst_recs_release(&recs);
    return NULL;
}

START_TEST(test_readers_racing_the_writer_in_process_see_a_consistent_store)
{
    enum { WRITERS = 8, READERS = 4, APPENDS = 60 };
    visibility v;
    tst_violations_init(&v.seen);
    atomic_init(&v.stop, false);
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
    tst_assert_no_violations(&v.seen);
    ck_assert_uint_gt(atomic_load(&v.reads), 0);
    tst_recs recs;
    tst_recs_init(&recs);
    tst_assert_log_gapless(g_st, &recs, WRITERS * APPENDS);
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
    tst_assert_log_gapless(g_st, &recs, rounds);
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
    tst_assert_log_gapless(g_st, &recs, 2);
    char winner[32];
    snprintf(winner, sizeof winner, "user-%d", won);
    ck_assert(tst_str_eq(recs.v[0].rec.stream, winner));
    ck_assert(tst_str_eq(recs.v[1].rec.stream, "email-same"));
    tst_recs_release(&recs);
    for (int t = 0; t < THREADS; t++)
        es_result_release(&cs[t].res);
}
END_TEST

/* ---- batches and close ---------------------------------------------------- */

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
    tst_assert_log_gapless(g_st, &recs, 1 + 1 + (N - 1) * 2);
    for (int i = 0; i < N; i++) {
        if (i != BAD)
            tst_assert_result_in_log(&recs, &slots[i].res);
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
    tst_assert_log_gapless(g_st, &recs, 1 + (N - 1));
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
    tst_assert_log_gapless(g_st, &recs, N);
    tst_recs_release(&recs);
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

    return s;
}

int main(void)
{
    return tst_run_suite(concurrency_suite());
}
