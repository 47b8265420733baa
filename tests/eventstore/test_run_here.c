/*
 * test_run_here.c — appends run on the thread that submits them (run_here).
 *
 * An append submitted with run_here while the store's writer is idle is
 * decided, committed and told on the submitting thread before
 * es_append_submit returns; otherwise it queues like any other. Either way
 * done callbacks come one at a time, in position order, never on another
 * submitting thread, and the log stays gapless and verifiable. Closing the
 * store and the checkpoint slices wait for an append running where it was
 * submitted.
 *
 * Sections: watching and submitting appends; one thread; many threads;
 * closing; checkpoints.
 */
#include "eventstore/es.h"

#include "tests/support/check_util.h"
#include "tests/support/es_util.h"
#include "tests/support/mpmap.h"
#include "tests/support/tmpdir.h"

#include <pthread.h>
#include <errno.h>
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
    g_dir = tst_dir_new("run_here");
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

/* ---- watching and submitting appends -------------------------------------- */

/* Whole-test checks made inside done callbacks and decide functions. */
typedef struct watch {
    tst_violations v;           /* violations, the first one described */
    atomic_bool stop;           /* tells a reader thread to stop */
    atomic_uint reads;          /* reads that reader made */
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
    tst_violations_init(&w->v);
    atomic_init(&w->stop, false);
    atomic_init(&w->reads, 0);
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

/* Where a submitted append's outcome lands, with the threads its decide
 * function and its done callback ran on. */
typedef struct here_slot {
    es_result res; /* moved here by here_done; release it */
    tst_latch *latch;
    tst_latch *own; /* counted down too, when set: one submitting thread waits on it */
    watch *w;
    tst_gate *hold; /* when set, the done callback waits for it to open */
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
            tst_violation(&s->w->v, "%s of a queued append ran on its submitting thread", what);
        else if (atomic_load(&s->returned))
            tst_violation(&s->w->v, "%s ran on its submitting thread after the submit returned",
                          what);
    } else if (watch_thread_index(s->w, self) >= 0) {
        tst_violation(&s->w->v, "%s of one thread's append ran on another submitting thread", what);
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
            tst_violation(&w->v, "%d done callbacks ran at once", in);
        s->seq = atomic_fetch_add(&w->seq, 1) + 1;
        check_thread(s, "the done callback");
        if (w->check_order && res->status == GUILD_OK && res->n_events > 0) {
            uint64_t last = atomic_load(&w->last);
            if (res->first_position != last + 1)
                tst_violation(&w->v, "told positions %llu..%llu right after position %llu",
                              (unsigned long long)res->first_position,
                              (unsigned long long)res->last_position, (unsigned long long)last);
            atomic_store(&w->last, res->last_position);
        }
        if (w->spin_ns)
            tst_spin_ns(w->spin_ns);
    }
    if (s->hold && !tst_gate_pass(s->hold) && w)
        tst_violation(&w->v, "a held callback was never released");
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
    return tst_counter_decide(NULL, w);
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

/* Submits, queued, an append to "plug" whose decide function waits at g. */
static void submit_plug_here(tst_gate *g, here_slot *s)
{
    es_append req = {.stream = "plug",
                     .expected_version = ES_ANY_VERSION,
                     .decide = tst_gate_decide,
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

/* ---- one thread ----------------------------------------------------------- */

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
    tst_assert_log_holds(g_st, 2, (const es_result *[]){&a.res}, 1);

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

    tst_assert_log_holds(g_st, 4, (const es_result *[]){&a.res, &b.res, &d}, 3);
    tst_assert_verifies(g_st, 4);
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
    tst_gate g = {0};
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
    tst_assert_no_violations(&w.v);

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

    tst_assert_log_holds(g_st, 3, (const es_result *[]){&plug.res, &a.res, &b.res}, 3);
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
    tst_gate decide_gate = {0}, done_gate = {0};
    here_slot p = {.latch = &latch, .w = &w, .hold = &done_gate}, b = {.latch = &latch, .w = &w},
              c = {.latch = &latch, .w = &w};
    submit_plug_here(&decide_gate, &p);
    /* The writer runs the plug's batch alone; b waits behind it, so the
     * plug is handed to the completer, whose callback then holds. */
    TST_WAIT_UNTIL(atomic_load(&decide_gate.entered));
    ck_assert_status(submit_here("task-1", ES_ANY_VERSION, NULL, 1, false, false, &b), GUILD_OK);
    atomic_store(&decide_gate.open, true);
    TST_WAIT_UNTIL(atomic_load(&done_gate.entered));
    TST_WAIT_UNTIL(tst_log_position(g_st) == 2);
    ck_assert_int_eq(calls_of(&b), 0);

    ck_assert_status(submit_here("task-1", 1, NULL, 0, true, true, &c), GUILD_OK);
    ck_assert_int_eq(calls_of(&c), 0);
    ck_assert_int_eq(calls_of(&b), 0);
    /* c may have been queued (the writer's turn for b not over yet): let
     * its batch commit and be handed on while the completer still holds,
     * or a writer coming to it late would find the completer idle. */
    TST_WAIT_UNTIL(tst_log_position(g_st) == 3);
    struct timespec handed = {.tv_nsec = 100 * 1000 * 1000};
    nanosleep(&handed, NULL);
    ck_assert_int_eq(calls_of(&c), 0);
    atomic_store(&done_gate.open, true);
    ck_assert(tst_latch_wait(&latch, WAIT_MS));
    tst_assert_no_violations(&w.v);
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

    tst_assert_log_holds(g_st, 3, (const es_result *[]){&p.res, &b.res, &c.res}, 3);
    es_result_release(&p.res);
    es_result_release(&b.res);
    es_result_release(&c.res);
    tst_latch_destroy(&latch);
}
END_TEST

/* ---- many threads --------------------------------------------------------- */

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
         * likely idle; the first run their appends, the rest queue or,
         * coming later, find the writer idle again. (A commit takes about
         * a millisecond: without rounds, threads that do not wait flood
         * the queue and run_here never gets to run anything.) */
        pthread_barrier_wait(t->start);
        tst_jitter(&seed, 1000);
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
                    tst_violation(&t->w->v, "won expecting %llu, got version %llu",
                                  (unsigned long long)belief, (unsigned long long)r->version);
            } else if (r->status == GUILD_CONFLICT) {
                if (r->version <= belief)
                    tst_violation(&t->w->v, "conflict expecting %llu, told version %llu",
                                  (unsigned long long)belief, (unsigned long long)r->version);
            } else {
                tst_violation(&t->w->v, "race append failed: %s", guild_status_code(r->status));
            }
            belief = r->version;
            break;
        }
        }
        if (st != GUILD_OK) {
            tst_violation(&t->w->v, "submit failed: %s", guild_status_code(st));
            tst_latch_count_down(s->latch);
        } else if (s && s->own && !own_wait(s->own)) {
            tst_violation(&t->w->v, "an append's callback never came");
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
    tst_assert_no_violations(&w.v);
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
    tst_assert_log_holds(g_st, total, ok, n_ok);
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
    tst_assert_verifies(g_st, total);
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
        tst_jitter(&seed, 1000);
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
            tst_violation(&t->w->v, "submit failed: %s", guild_status_code(st));
            tst_latch_count_down(s->latch);
        } else if (!own_wait(&t->own)) {
            tst_violation(&t->w->v, "an append's callback never came");
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
    tst_assert_no_violations(&w.v);
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
    tst_assert_log_holds(g_st, total, ok, n_ok);
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

/* ---- closing -------------------------------------------------------------- */

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
        tst_tick_wait(&seed, 1500, 600);
        char stream[32];
        snprintf(stream, sizeof stream, "closing-%zu", (t->index + i) % 4);
        t->slots[i].w = t->c->w;
        guild_status s = submit_here(stream, ES_ANY_VERSION, NULL, 1 + i % 2, i % 5 == 4,
                                     i % 4 != 3, &t->slots[i]);
        if (s != GUILD_OK) {
            if (s != GUILD_CLOSED)
                tst_violation(&t->c->w->v, "submit failed: %s", guild_status_code(s));
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
    TST_WAIT_UNTIL(calls_seen(&w) >= 400);

    es_event_in ev = {.type = "gate", .schema = 1};
    es_append gate_req = {
        .stream = "gate", .expected_version = ES_ANY_VERSION, .events = &ev, .n_events = 1};
    ck_assert_status(es_append_submit(g_st, &gate_req, closing_gate_done, &c), GUILD_OK);
    tst_closer cl;
    tst_closer_start(&cl, g_st);
    ck_assert_msg(tst_latch_wait(&cl.done, WAIT_MS), "closing the store hangs");
    tst_closer_join(&cl);
    g_st = NULL;
    for (int t = 0; t < T; t++)
        pthread_join(ts[t].th, NULL);
    pthread_barrier_destroy(&start);
    ck_assert_msg(c.gate_ok, "submitting threads still ran when the store closed");
    tst_assert_no_violations(&w.v);
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
    tst_assert_log_holds(g_st, total, told, 1 + ok);
    free(told);
    tst_assert_verifies(g_st, total);
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
    tst_gate g;
    bool in_decide;
} held_submitter;

static void *held_submitter_run(void *arg)
{
    held_submitter *h = arg;
    if (!h->in_decide)
        h->slot.hold = &h->g;
    es_append req = {.stream = "held",
                     .expected_version = 0,
                     .decide = h->in_decide ? tst_gate_decide : here_decide,
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
    TST_WAIT_UNTIL(atomic_load(&h->g.entered));
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
    tst_closer cl;
    tst_closer_start(&cl, g_st);
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
    tst_closer_join(&cl);
    pthread_join(h.th, NULL);
    g_st = NULL;

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
    tst_assert_log_holds(g_st, 1 + n, told, 1 + n);
    free(told);
    tst_assert_verifies(g_st, 1 + n);
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

/* ---- checkpoints ---------------------------------------------------------- */

/* Checkpoint slices (after every `index_every` events, run by whichever
 * thread ran the batch, and by the idle writer after a quiet second) racing
 * batches run on submitting threads, with a reader checking heads. */
#define CP_STREAMS 40

/* Closes the test's store and opens it again checkpointing in slices of
 * one stream, every 150 events. */
static guild_status open_checkpointing(void)
{
    es_store_close(g_st);
    g_st = NULL;
    es_options opt = {.domain = "task", .index_every = 150, .checkpoint_slice = 1};
    guild_error err;
    return es_store_open(g_dir, &opt, &g_st, &err);
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
        tst_tick_wait(&seed, 1500, 600);
        char stream[32];
        snprintf(stream, sizeof stream, "cp-%02zu", (t->index * 7 + i) % CP_STREAMS);
        /* Every fourth append expects the version it just read: some lose. */
        uint64_t expected = i % 4 == 0 ? tst_stream_version(g_st, stream) : ES_ANY_VERSION;
        es_result *r = &t->results[t->n++];
        wait_here(stream, expected, i % 3 == 0, true, t->w, r);
        if (r->status != GUILD_OK && r->status != GUILD_CONFLICT)
            tst_violation(&t->w->v, "append failed: %s", guild_status_code(r->status));
        if (r->status == GUILD_CONFLICT && r->version == expected)
            tst_violation(&t->w->v, "conflict at the expected version %llu",
                          (unsigned long long)expected);
    }
    return NULL;
}

static void *cp_reader_run(void *arg)
{
    watch *w = arg;
    tst_recs recs;
    tst_recs_init(&recs);
    for (unsigned i = 0; !atomic_load(&w->stop); i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "cp-%02u", i % CP_STREAMS);
        uint64_t head = 0;
        if (es_stream_head(g_st, stream, &head, NULL) != GUILD_OK)
            continue;
        guild_status s = tst_read_whole_stream(g_st, stream, &recs);
        if (s != GUILD_OK || recs.n < head) {
            tst_violation(&w->v, "%s: head %llu, read %zu events (%s)", stream,
                          (unsigned long long)head, recs.n, guild_status_code(s));
            continue;
        }
        for (size_t k = 0; k < recs.n; k++)
            if (recs.v[k].rec.version != k + 1) {
                tst_violation(&w->v, "%s: event %zu has version %llu", stream, k,
                              (unsigned long long)recs.v[k].rec.version);
                break;
            }
        atomic_fetch_add(&w->reads, 1);
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
    tst_assert_log_holds(g_st, total, ok, n_ok);
    free(ok);
    tst_assert_verifies(g_st, total);
}

/* The idle writer indexes the tail after a quiet second, but not while an
 * append runs on its submitting thread: held in its done callback past
 * that second, the index checkpoint stays where it was until it is let go,
 * and is complete after the next quiet second. */
START_TEST(test_idle_checkpoint_waits_for_a_run_here_append)
{
    enum { PRE = 40 };
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
    const uint64_t cp = tst_checkpoint_position(g_st);
    ck_assert_uint_lt(cp, PRE);

    held_submitter h;
    held_start(&h, false);
    struct timespec past_idle = {1, 500000000};
    nanosleep(&past_idle, NULL);
    ck_assert_msg(tst_checkpoint_position(g_st) == cp,
                  "the idle writer indexed the tail (checkpoint %llu -> %llu) while an append "
                  "ran on its submitting thread",
                  (unsigned long long)cp, (unsigned long long)tst_checkpoint_position(g_st));
    ck_assert_uint_eq(tst_log_position(g_st), PRE + 1);
    atomic_store(&h.g.open, true);
    pthread_join(h.th, NULL);
    held_assert_ran_here(&h);
    ck_assert_uint_eq(h.slot.res.first_position, PRE + 1);
    TST_WAIT_UNTIL(tst_checkpoint_position(g_st) == PRE + 1);

    const es_result *told[PRE + 1];
    for (int i = 0; i < PRE; i++)
        told[i] = &pre[i].res;
    told[PRE] = &h.slot.res;
    tst_assert_log_holds(g_st, PRE + 1, told, PRE + 1);
    tst_assert_verifies(g_st, PRE + 1);
    es_store_close(g_st);
    g_st = NULL;
    ck_assert_status(tst_store_open(g_dir, "task", 0, &g_st), GUILD_OK);
    tst_assert_log_holds(g_st, PRE + 1, &told[PRE], 1);
    tst_assert_verifies(g_st, PRE + 1);
    for (int i = 0; i < PRE; i++)
        es_result_release(&pre[i].res);
    es_result_release(&h.slot.res);
}
END_TEST

/* Appends run on their submitting threads do not wake the writer, but its
 * quiet second still counts from the last of them: appends 0.4 s apart for
 * 2 s leave the checkpoint where it was, and a second after they stop the
 * tail is indexed. */
START_TEST(test_idle_checkpoint_counts_its_second_from_the_last_run_here_append)
{
    enum { N = 6 };
    ck_assert_status(open_checkpointing(), GUILD_OK);
    here_slot slots[N];
    memset(slots, 0, sizeof slots);
    ck_assert_status(submit_here("quiet-0", ES_ANY_VERSION, NULL, 1, false, true, &slots[0]),
                     GUILD_OK);
    const uint64_t cp = tst_checkpoint_position(g_st);
    ck_assert_uint_eq(cp, 0);
    struct timespec apart = {0, 400000000};
    for (int i = 1; i < N; i++) {
        nanosleep(&apart, NULL);
        ck_assert_msg(tst_checkpoint_position(g_st) == cp,
                      "the writer indexed the tail %.1f s after the first append although "
                      "appends came every 0.4 s",
                      0.4 * i);
        char stream[32];
        snprintf(stream, sizeof stream, "quiet-%d", i);
        ck_assert_status(submit_here(stream, ES_ANY_VERSION, NULL, 1, false, true, &slots[i]),
                         GUILD_OK);
        ck_assert(slots[i].called_in_submit);
    }
    TST_WAIT_UNTIL(tst_checkpoint_position(g_st) == N);
    tst_assert_verifies(g_st, N);
    for (int i = 0; i < N; i++)
        es_result_release(&slots[i].res);
}
END_TEST

START_TEST(test_run_here_appends_racing_checkpoint_slices_keep_the_index_whole)
{
    enum { T = 8, ROUNDS = 2, BURST = 60, CHASE = 25 };
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
        uint64_t cp = tst_checkpoint_position(g_st);
        TST_WAIT_UNTIL(tst_checkpoint_position(g_st) != cp);
        cp_round(ts, T, CHASE, &w);
    }
    atomic_store(&w.stop, true);
    pthread_join(reader, NULL);
    tst_assert_no_violations(&w.v);
    ck_assert_uint_gt(atomic_load(&w.reads), 0);
    cp_assert_whole(ts, T);

    /* Reopened: with the default index_every (replays the log after the
     * checkpoint close wrote), then with the small one again. */
    es_store_close(g_st);
    g_st = NULL;
    ck_assert_status(tst_store_open(g_dir, "task", 0, &g_st), GUILD_OK);
    ck_assert_uint_eq(tst_checkpoint_position(g_st), tst_log_position(g_st));
    cp_assert_whole(ts, T);
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

static Suite *run_here_suite(void)
{
    Suite *s = suite_create("eventstore/run_here");

    TCase *tc = tcase("one_thread");
    tcase_add_test(tc, test_run_here_lone_append_is_done_before_submit_returns);
    tcase_add_test(tc, test_run_here_append_waits_its_turn_behind_a_busy_writer);
    tcase_add_test(tc, test_run_here_append_is_told_after_batches_before_it);
    suite_add_tcase(s, tc);

    tc = tcase("threads");
    tcase_add_test(tc, test_run_here_threads_mixed_with_queued_and_waiting_keep_the_log_whole);
    tcase_add_test(tc, test_run_here_callbacks_come_one_at_a_time_in_position_order);
    suite_add_tcase(s, tc);

    tc = tcase("close");
    tcase_add_test(tc, test_closing_while_threads_submit_with_run_here_loses_nothing);
    tcase_add_test(tc, test_close_waits_for_a_run_here_append_deciding_on_its_thread);
    tcase_add_test(tc, test_close_waits_for_a_run_here_append_telling_on_its_thread);
    suite_add_tcase(s, tc);

    tc = tcase("checkpoints");
    tcase_add_test(tc, test_idle_checkpoint_waits_for_a_run_here_append);
    tcase_add_test(tc, test_idle_checkpoint_counts_its_second_from_the_last_run_here_append);
    tcase_add_test(tc, test_run_here_appends_racing_checkpoint_slices_keep_the_index_whole);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tst_run_suite(run_here_suite());
}
