/*
 * es_util.h — helpers for event store tests: opening stores, appending
 * simple events, copying records out of read callbacks, and collecting the
 * results of submitted appends.
 */
#ifndef GUILD_TESTS_SUPPORT_ES_UTIL_H
#define GUILD_TESTS_SUPPORT_ES_UTIL_H

#include "eventstore/es.h"
#include "tests/support/mpmap.h"

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* Asserts two results tell the same: stream, version, positions, event ids
 * and reply (not the status or duplicate flag). */
void tst_assert_same_result(const es_result *a, const es_result *b);

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

#endif
