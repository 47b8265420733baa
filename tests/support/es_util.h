/*
 * es_util.h — helpers for event store tests: opening stores, appending
 * simple events, copying records out of read callbacks, checking the whole
 * log, collecting the results of submitted appends, holding the writer and
 * staggering threads, and counting the failures seen on other threads.
 */
#ifndef GUILD_TESTS_SUPPORT_ES_UTIL_H
#define GUILD_TESTS_SUPPORT_ES_UTIL_H

#include "eventstore/es.h"
#include "tests/support/mpmap.h"

#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* ---- records -------------------------------------------------------------- */

/* A record copied out of a read callback: `raw` is owned and `rec` decodes
 * it, so every pointer in `rec` lives as long as the tst_recs holding it. */
typedef struct tst_rec {
    unsigned char *raw;
    size_t len;
    es_record rec;
} tst_rec;

typedef struct tst_recs {
    tst_rec *v;
    size_t n, cap;
    size_t stop_after; /* when non-zero, the callback asks to stop once n reaches it */
    bool bad;          /* a copied record failed to decode again */
} tst_recs;

void tst_recs_init(tst_recs *r);

/* An es_record_fn: copies each record into the tst_recs passed as ctx. */
int tst_recs_collect(void *ctx, const es_record *rec);

/* Empties the collection (keeps it usable). */
void tst_recs_clear(tst_recs *r);
void tst_recs_release(tst_recs *r);

/* Reads the whole log into r (cleared first) in pages; returns the status of
 * the first failing read, GUILD_OK otherwise. */
guild_status tst_read_whole_log(es_store *st, tst_recs *r);

/* Reads a whole stream into r (cleared first). */
guild_status tst_read_whole_stream(es_store *st, const char *stream, tst_recs *r);

/* True if s holds exactly the NUL-terminated z. */
bool tst_str_eq(es_str s, const char *z);

/* Copies s into buf as a C string (truncated to size); returns buf. */
char *tst_str_copy(es_str s, char *buf, size_t size);

/* Stream ids and versions handed to an es_stream_fn: pass a zeroed
 * tst_streams as ctx with tst_streams_collect. Keeps the first 32. */
typedef struct tst_streams {
    char names[32][ES_STREAM_MAX + 1];
    uint64_t versions[32];
    size_t n; /* how many were listed, also beyond 32 */
} tst_streams;

int tst_streams_collect(void *ctx, const char *stream, uint64_t version);

/* ---- stores and appends -------------------------------------------------- */

/* Opens a writable store for `domain` with the given initial map size (0 =
 * default). */
guild_status tst_store_open(const char *dir, const char *domain, size_t map_size, es_store **out);

/* Opens a store read-only. */
guild_status tst_store_open_ro(const char *dir, es_store **out);

/* Fills ev[0..n-1] with events of type "thing_happened" (schema 1, data
 * {"i": k} for event k), their data held in maps[0..n-1]. */
void tst_events_fill(es_event_in *ev, tst_map *maps, size_t n);

/* Releases the maps tst_events_fill filled. */
void tst_events_release(tst_map *maps, size_t n);

/* Appends `n` events of type "thing_happened" (schema 1, data {"i": k} for
 * k = 0..n-1) to `stream` and waits. *out is filled (release it). */
guild_status tst_append(es_store *st, const char *stream, uint64_t expected, const char *command_id,
                        size_t n, es_result *out);

/* Same, discarding the result. */
guild_status tst_append_quiet(es_store *st, const char *stream, uint64_t expected, size_t n);

/* The last position of the log; UINT64_MAX if es_log_head fails. */
uint64_t tst_log_position(es_store *st);

/* The version of a stream, 0 when it does not exist; asserts on any other
 * failure. */
uint64_t tst_stream_version(es_store *st, const char *stream);

/* The position the store's index checkpoint has reached; 0 before the
 * first. */
uint64_t tst_checkpoint_position(es_store *st);

/* Asserts two results tell the same: stream, version, positions, event ids
 * and reply (not the status or duplicate flag). */
void tst_assert_same_result(const es_result *a, const es_result *b);

/* ---- checking the whole log ----------------------------------------------- */

/* Reads the whole log into recs and asserts `total` events at positions
 * 1..total, each stream's versions gapless from 1 and matching its head. */
void tst_assert_log_gapless(es_store *st, tst_recs *recs, uint64_t total);

/* Asserts that a successful result's events are in recs (the whole log, as
 * tst_assert_log_gapless leaves it) where the result says. */
void tst_assert_result_in_log(const tst_recs *recs, const es_result *r);

/* Asserts that es_verify finds the log intact and `total` events long. */
void tst_assert_verifies(es_store *st, uint64_t total);

/* Reads the whole log and asserts it gapless with `total` events, each of
 * the n results in it where it says, and every "counted" record (see
 * tst_counter_decide) decided on the version before its own. */
void tst_assert_log_holds(es_store *st, uint64_t total, const es_result *const *results, size_t n);

/* An es_decide_fn (ctx unused) that emits one "counted" event {"n": v+1},
 * v the version of the stream it sees: a record whose n differs from its
 * version was decided without seeing an append that came before it. */
guild_status tst_counter_decide(void *ctx, es_wctx *w);

/* ---- waiting for submitted appends ---------------------------------------- */

/* Counts down to zero; waiters wake at zero. */
typedef struct tst_latch {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    size_t left;
} tst_latch;

void tst_latch_init(tst_latch *l, size_t count);
void tst_latch_count_down(tst_latch *l);

/* Waits until the count is zero; false if `timeout_ms` passed first. */
bool tst_latch_wait(tst_latch *l, unsigned timeout_ms);
void tst_latch_destroy(tst_latch *l);

/* Where a submitted append's result lands: pass a tst_slot as the ctx of
 * es_append_submit with done = tst_slot_done. */
typedef struct tst_slot {
    es_result res; /* moved here by tst_slot_done; release it */
    tst_latch *latch;
    int calls; /* how often done was called for this slot */
} tst_slot;

void tst_slot_done(void *ctx, es_result *res);

/* Polls `cond` every 100 us for at most 20 s, then asserts it. */
#define TST_WAIT_UNTIL(cond)                                                                       \
    do {                                                                                           \
        for (int wait_i_ = 0; wait_i_ < 200000 && !(cond); wait_i_++) {                            \
            struct timespec wait_ts_ = {0, 100000};                                                \
            nanosleep(&wait_ts_, NULL);                                                            \
        }                                                                                          \
        ck_assert_msg((cond), "timed out waiting for %s", #cond);                                  \
    } while (0)

/* A store closed on a thread of its own, for tests that go on while the
 * close waits: `done` counts down once es_store_close has returned. */
typedef struct tst_closer {
    es_store *st;
    tst_latch done;
    pthread_t th;
} tst_closer;

/* Starts closing st on a new thread. */
void tst_closer_start(tst_closer *c, es_store *st);

/* Waits for the closing thread to end and releases c. */
void tst_closer_join(tst_closer *c);

/* ---- holding the writer, staggering threads ------------------------------- */

/* Busy-waits ns nanoseconds on the monotonic clock. */
void tst_spin_ns(long ns);

/* A door a decide function or a done callback waits at until the test
 * opens it (for at most 20 s, so a bug fails the test instead of hanging). */
typedef struct tst_gate {
    atomic_bool entered, open;
    pthread_t decided_on; /* the thread tst_gate_decide ran on */
} tst_gate;

/* Marks g entered and waits for it to open; false if it never did. */
bool tst_gate_pass(tst_gate *g);

/* An es_decide_fn (ctx a tst_gate) that waits at the gate, then emits one
 * "gated" event; it fails with GUILD_INTERNAL if the gate never opened. */
guild_status tst_gate_decide(void *ctx, es_wctx *w);

/* Sleeps a random time of up to max_us microseconds, and not at all a third
 * of the time (seed is the rand_r state): staggers threads that start a
 * round together. */
void tst_jitter(unsigned *seed, int max_us);

/* Sleeps until the next multiple of period_us on the monotonic clock, then
 * up to jitter_us more: threads calling it wake together in bursts (like
 * rounds, without a barrier that threads stopping early would block). */
void tst_tick_wait(unsigned *seed, long period_us, int jitter_us);

/* ---- failures on other threads -------------------------------------------- */

/* What went wrong on threads a test started, where a ck_assert would not
 * stop the test cleanly: counted, the first one described. The test asserts
 * there were none once it has joined the threads. */
typedef struct tst_violations {
    atomic_uint n;
    char first[256];
    pthread_mutex_t mu;
} tst_violations;

void tst_violations_init(tst_violations *v);

/* Counts a violation; the first one's text (printf-style) is kept. Safe to
 * call from any thread. */
void tst_violation(tst_violations *v, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Asserts that no violation was counted, naming the first otherwise. */
void tst_assert_no_violations(tst_violations *v);

#endif
