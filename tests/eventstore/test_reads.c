/*
 * test_reads.c — reading the event store: streams forward and backward, the
 * log, heads, the stream list, snapshots and meta, and the same reads across
 * index checkpoints.
 *
 * Sections: reads; snapshots and meta; index checkpoints.
 */
#include "eventstore/es.h"

#include "tests/support/check_util.h"
#include "tests/support/es_util.h"
#include "tests/support/mpmap.h"
#include "tests/support/tmpdir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *g_dir;
static es_store *g_st;

static void store_setup(void)
{
    g_dir = tst_dir_new("reads");
    ck_assert_status(tst_store_open(g_dir, "talent", 0, &g_st), GUILD_OK);
}

static void store_teardown(void)
{
    es_store_close(g_st);
    g_st = NULL;
    tst_dir_remove(g_dir);
    free(g_dir);
    g_dir = NULL;
}

static void store_reopen(void)
{
    es_store_close(g_st);
    g_st = NULL;
    ck_assert_status(tst_store_open(g_dir, "talent", 0, &g_st), GUILD_OK);
}

/* ---- reads ---------------------------------------------------------------- */

static uint64_t read_page(const char *stream, uint64_t from, size_t limit, tst_recs *recs)
{
    tst_recs_clear(recs);
    uint64_t next = 0;
    ck_assert_status(es_read_stream(g_st, stream, from, limit, tst_recs_collect, recs, &next),
                     GUILD_OK);
    ck_assert(!recs->bad);
    return next;
}

START_TEST(test_read_stream_pages_forward)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 10), GUILD_OK);
    ck_assert_status(tst_append_quiet(g_st, "talent-2", 0, 2), GUILD_OK);
    tst_recs recs;
    tst_recs_init(&recs);

    uint64_t from = 1, want = 1;
    size_t pages = 0;
    for (;;) {
        uint64_t next = read_page("talent-1", from, 4, &recs);
        if (recs.n == 0)
            break;
        ck_assert_uint_le(recs.n, 4);
        for (size_t i = 0; i < recs.n; i++) {
            ck_assert(tst_str_eq(recs.v[i].rec.stream, "talent-1"));
            ck_assert_uint_eq(recs.v[i].rec.version, want++);
        }
        ck_assert_uint_eq(next, want);
        from = next;
        pages++;
        ck_assert_uint_le(pages, 3);
    }
    ck_assert_uint_eq(want, 11);
    ck_assert_uint_eq(pages, 3);
    tst_recs_release(&recs);
}
END_TEST

START_TEST(test_read_stream_from_the_middle_starts_at_that_version)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 10), GUILD_OK);
    tst_recs recs;
    tst_recs_init(&recs);
    uint64_t next = read_page("talent-1", 7, 100, &recs);
    ck_assert_uint_eq(recs.n, 4);
    ck_assert_uint_eq(recs.v[0].rec.version, 7);
    ck_assert_uint_eq(recs.v[3].rec.version, 10);
    ck_assert_uint_eq(next, 11);
    read_page("talent-1", 11, 100, &recs);
    ck_assert_uint_eq(recs.n, 0);
    tst_recs_release(&recs);
}
END_TEST

START_TEST(test_read_of_unknown_stream_is_empty)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 2), GUILD_OK);
    tst_recs recs;
    tst_recs_init(&recs);
    read_page("talent-nope", 1, 100, &recs);
    ck_assert_uint_eq(recs.n, 0);
    /* A stream whose id is a prefix of another's holds none of its events. */
    read_page("talent-", 1, 100, &recs);
    ck_assert_uint_eq(recs.n, 0);
    tst_recs_release(&recs);
}
END_TEST

START_TEST(test_read_stream_back_returns_last_events_newest_first)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 10), GUILD_OK);
    ck_assert_status(tst_append_quiet(g_st, "talent-2", 0, 3), GUILD_OK);
    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(es_read_stream_back(g_st, "talent-1", 0, 3, tst_recs_collect, &recs),
                     GUILD_OK);
    ck_assert_uint_eq(recs.n, 3);
    ck_assert_uint_eq(recs.v[0].rec.version, 10);
    ck_assert_uint_eq(recs.v[1].rec.version, 9);
    ck_assert_uint_eq(recs.v[2].rec.version, 8);
    ck_assert(tst_str_eq(recs.v[2].rec.stream, "talent-1"));
    tst_recs_release(&recs);
}
END_TEST

START_TEST(test_read_stream_back_from_a_version_stops_at_the_start)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 10), GUILD_OK);
    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(es_read_stream_back(g_st, "talent-1", 4, 100, tst_recs_collect, &recs),
                     GUILD_OK);
    ck_assert_uint_eq(recs.n, 4);
    for (size_t i = 0; i < 4; i++)
        ck_assert_uint_eq(recs.v[i].rec.version, 4 - i);
    tst_recs_release(&recs);
}
END_TEST

START_TEST(test_read_stops_when_callback_asks)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 10), GUILD_OK);
    tst_recs recs;
    tst_recs_init(&recs);
    recs.stop_after = 2;
    ck_assert_status(es_read_stream(g_st, "talent-1", 1, 100, tst_recs_collect, &recs, NULL),
                     GUILD_OK);
    ck_assert_uint_eq(recs.n, 2);
    tst_recs_clear(&recs);
    ck_assert_status(es_read_log(g_st, 1, 100, tst_recs_collect, &recs, NULL), GUILD_OK);
    ck_assert_uint_eq(recs.n, 2);
    tst_recs_release(&recs);
}
END_TEST

START_TEST(test_read_log_pages_from_a_position)
{
    /* Interleave three streams: position p belongs to stream p % 3. */
    for (int i = 0; i < 12; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "talent-%d", i % 3);
        ck_assert_status(tst_append_quiet(g_st, stream, ES_ANY_VERSION, 1), GUILD_OK);
    }
    tst_recs recs;
    tst_recs_init(&recs);
    uint64_t from = 1, want = 1;
    for (;;) {
        tst_recs_clear(&recs);
        uint64_t next = 0;
        ck_assert_status(es_read_log(g_st, from, 5, tst_recs_collect, &recs, &next), GUILD_OK);
        if (recs.n == 0)
            break;
        for (size_t i = 0; i < recs.n; i++) {
            const es_record *rec = &recs.v[i].rec;
            char stream[32];
            snprintf(stream, sizeof stream, "talent-%d", (int)((want - 1) % 3));
            ck_assert_uint_eq(rec->position, want);
            ck_assert(tst_str_eq(rec->stream, stream));
            ck_assert_uint_eq(rec->version, (want - 1) / 3 + 1);
            want++;
        }
        ck_assert_uint_eq(next, want);
        from = next;
    }
    ck_assert_uint_eq(want, 13);

    tst_recs_clear(&recs);
    uint64_t next = 0;
    ck_assert_status(es_read_log(g_st, 8, 100, tst_recs_collect, &recs, &next), GUILD_OK);
    ck_assert_uint_eq(recs.n, 5);
    ck_assert_uint_eq(recs.v[0].rec.position, 8);
    ck_assert_uint_eq(next, 13);
    tst_recs_release(&recs);
}
END_TEST

START_TEST(test_stream_head_reports_version_and_hash_of_last_event)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 2), GUILD_OK);
    ck_assert_status(tst_append_quiet(g_st, "talent-2", 0, 1), GUILD_OK);
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 2, 1), GUILD_OK);
    uint64_t v = 0;
    uint8_t hash[ES_HASH_LEN];
    ck_assert_status(es_stream_head(g_st, "talent-1", &v, hash), GUILD_OK);
    ck_assert_uint_eq(v, 3);

    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(es_read_stream_back(g_st, "talent-1", 0, 1, tst_recs_collect, &recs),
                     GUILD_OK);
    ck_assert_uint_eq(recs.n, 1);
    ck_assert_uint_eq(recs.v[0].rec.position, 4);
    ck_assert_mem_eq(hash, recs.v[0].rec.hash, ES_HASH_LEN);
    tst_recs_release(&recs);
}
END_TEST

START_TEST(test_stream_head_of_unknown_stream_is_not_found)
{
    uint64_t v = 77;
    ck_assert_status(es_stream_head(g_st, "talent-none", &v, NULL), GUILD_NOT_FOUND);
}
END_TEST

START_TEST(test_log_head_of_empty_store_is_zero)
{
    uint64_t pos = 77;
    uint8_t hash[ES_HASH_LEN], zeros[ES_HASH_LEN] = {0};
    memset(hash, 0xaa, sizeof hash);
    ck_assert_status(es_log_head(g_st, &pos, hash), GUILD_OK);
    ck_assert_uint_eq(pos, 0);
    ck_assert_mem_eq(hash, zeros, ES_HASH_LEN);
}
END_TEST

START_TEST(test_log_head_reports_last_position_and_its_hash)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 2), GUILD_OK);
    ck_assert_status(tst_append_quiet(g_st, "talent-2", 0, 3), GUILD_OK);
    uint64_t pos = 0;
    uint8_t hash[ES_HASH_LEN];
    ck_assert_status(es_log_head(g_st, &pos, hash), GUILD_OK);
    ck_assert_uint_eq(pos, 5);
    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(es_read_log(g_st, 5, 1, tst_recs_collect, &recs, NULL), GUILD_OK);
    ck_assert_uint_eq(recs.n, 1);
    ck_assert_mem_eq(hash, recs.v[0].rec.hash, ES_HASH_LEN);
    tst_recs_release(&recs);
}
END_TEST

START_TEST(test_list_streams_in_id_order_with_versions)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-b", 0, 2), GUILD_OK);
    ck_assert_status(tst_append_quiet(g_st, "talent-a", 0, 1), GUILD_OK);
    ck_assert_status(tst_append_quiet(g_st, "talent-c", 0, 3), GUILD_OK);
    tst_streams l = {0};
    ck_assert_status(es_list_streams(g_st, NULL, 100, tst_streams_collect, &l), GUILD_OK);
    ck_assert_uint_eq(l.n, 3);
    ck_assert_str_eq(l.names[0], "talent-a");
    ck_assert_str_eq(l.names[1], "talent-b");
    ck_assert_str_eq(l.names[2], "talent-c");
    ck_assert_uint_eq(l.versions[0], 1);
    ck_assert_uint_eq(l.versions[1], 2);
    ck_assert_uint_eq(l.versions[2], 3);
}
END_TEST

START_TEST(test_list_streams_continues_after_a_cursor_within_a_limit)
{
    const char *names[] = {"talent-a", "talent-b", "talent-c", "talent-d", "talent-e"};
    for (size_t i = 0; i < 5; i++)
        ck_assert_status(tst_append_quiet(g_st, names[i], 0, 1), GUILD_OK);
    tst_streams l = {0};
    ck_assert_status(es_list_streams(g_st, "talent-b", 2, tst_streams_collect, &l), GUILD_OK);
    ck_assert_uint_eq(l.n, 2);
    ck_assert_str_eq(l.names[0], "talent-c");
    ck_assert_str_eq(l.names[1], "talent-d");

    memset(&l, 0, sizeof l);
    ck_assert_status(es_list_streams(g_st, "talent-e", 10, tst_streams_collect, &l), GUILD_OK);
    ck_assert_uint_eq(l.n, 0);
}
END_TEST

/* ---- snapshots and meta --------------------------------------------------- */

START_TEST(test_snapshot_get_returns_the_latest_put)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 7), GUILD_OK);
    ck_assert_status(es_snapshot_put(g_st, "talent-1", 3, "state-3", 7), GUILD_OK);
    ck_assert_status(es_snapshot_put(g_st, "talent-1", 7, "state-seven", 11), GUILD_OK);
    uint64_t v = 0;
    void *state = NULL;
    size_t len = 0;
    ck_assert_status(es_snapshot_get(g_st, "talent-1", &v, &state, &len), GUILD_OK);
    ck_assert_uint_eq(v, 7);
    ck_assert_uint_eq(len, 11);
    ck_assert_mem_eq(state, "state-seven", 11);
    free(state);
}
END_TEST

START_TEST(test_snapshot_of_stream_without_one_is_not_found)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 1), GUILD_OK);
    uint64_t v = 0;
    void *state = NULL;
    size_t len = 0;
    ck_assert_status(es_snapshot_get(g_st, "talent-1", &v, &state, &len), GUILD_NOT_FOUND);
    ck_assert_ptr_null(state);
}
END_TEST

START_TEST(test_snapshot_survives_reopen)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 2), GUILD_OK);
    ck_assert_status(es_snapshot_put(g_st, "talent-1", 2, "\x00\x01\x02", 3), GUILD_OK);
    store_reopen();
    uint64_t v = 0;
    void *state = NULL;
    size_t len = 0;
    ck_assert_status(es_snapshot_get(g_st, "talent-1", &v, &state, &len), GUILD_OK);
    ck_assert_uint_eq(v, 2);
    ck_assert_uint_eq(len, 3);
    ck_assert_mem_eq(state, "\x00\x01\x02", 3);
    free(state);
}
END_TEST

typedef struct snap_walk {
    int seen, stop_after;
    char last[64];
} snap_walk;

/* Checks each snapshot against what the test put, in stream order, and
 * reads the store from inside the call. */
static int snap_walk_one(void *ctx, const char *stream, uint64_t version, const void *state,
                         size_t len)
{
    snap_walk *w = ctx;
    ck_assert_msg(strcmp(stream, w->last) > 0, "%s came after %s", stream, w->last);
    snprintf(w->last, sizeof w->last, "%s", stream);
    int i = atoi(stream + 2);
    char want[32];
    snprintf(want, sizeof want, "state-%d", i);
    ck_assert_uint_eq(version, (uint64_t)i + 1);
    ck_assert_uint_eq(len, strlen(want));
    ck_assert_mem_eq(state, want, len);
    uint64_t v = 0;
    void *again = NULL;
    size_t n = 0;
    ck_assert_status(es_snapshot_get(g_st, stream, &v, &again, &n), GUILD_OK);
    ck_assert_uint_eq(v, version);
    free(again);
    w->seen++;
    return w->stop_after && w->seen == w->stop_after;
}

/* More snapshots than one page of es_snapshot_each: each comes once, in
 * order, and a non-zero return stops the walk. */
START_TEST(test_snapshot_each_walks_every_snapshot_in_stream_order)
{
    enum { N = 600 };
    for (int i = N - 1; i >= 0; i--) {
        char stream[32], state[32];
        snprintf(stream, sizeof stream, "s-%04d", i);
        snprintf(state, sizeof state, "state-%d", i);
        ck_assert_status(es_snapshot_put(g_st, stream, (uint64_t)i + 1, state, strlen(state)),
                         GUILD_OK);
    }
    snap_walk w = {0};
    uint64_t count = 0;
    ck_assert_status(es_snapshot_each(g_st, snap_walk_one, &w, &count), GUILD_OK);
    ck_assert_int_eq(w.seen, N);
    ck_assert_uint_eq(count, N);
    ck_assert_str_eq(w.last, "s-0599");

    snap_walk part = {.stop_after = 300};
    ck_assert_status(es_snapshot_each(g_st, snap_walk_one, &part, NULL), GUILD_OK);
    ck_assert_int_eq(part.seen, 300);
    ck_assert_str_eq(part.last, "s-0299");
}
END_TEST

START_TEST(test_meta_bytes_round_trip)
{
    ck_assert_status(es_meta_put(g_st, "relay.cursor", "abc\0def", 7), GUILD_OK);
    void *value = NULL;
    size_t len = 0;
    ck_assert_status(es_meta_get(g_st, "relay.cursor", &value, &len), GUILD_OK);
    ck_assert_uint_eq(len, 7);
    ck_assert_mem_eq(value, "abc\0def", 7);
    free(value);

    ck_assert_status(es_meta_put(g_st, "relay.cursor", "xy", 2), GUILD_OK);
    ck_assert_status(es_meta_get(g_st, "relay.cursor", &value, &len), GUILD_OK);
    ck_assert_uint_eq(len, 2);
    ck_assert_mem_eq(value, "xy", 2);
    free(value);
}
END_TEST

START_TEST(test_meta_u64_round_trip)
{
    ck_assert_status(es_meta_put_u64(g_st, "checkpoint", 0x0102030405060708ULL), GUILD_OK);
    uint64_t v = 0;
    ck_assert_status(es_meta_get_u64(g_st, "checkpoint", &v), GUILD_OK);
    ck_assert_uint_eq(v, 0x0102030405060708ULL);
    ck_assert_status(es_meta_put_u64(g_st, "checkpoint", UINT64_MAX), GUILD_OK);
    ck_assert_status(es_meta_get_u64(g_st, "checkpoint", &v), GUILD_OK);
    ck_assert_uint_eq(v, UINT64_MAX);
}
END_TEST

START_TEST(test_meta_missing_name_is_not_found)
{
    void *value = NULL;
    size_t len = 0;
    uint64_t v = 0;
    ck_assert_status(es_meta_get(g_st, "nothing.here", &value, &len), GUILD_NOT_FOUND);
    ck_assert_ptr_null(value);
    ck_assert_status(es_meta_get_u64(g_st, "nothing.here", &v), GUILD_NOT_FOUND);
}
END_TEST

START_TEST(test_meta_survives_reopen)
{
    ck_assert_status(es_meta_put_u64(g_st, "relay.cursor", 42), GUILD_OK);
    store_reopen();
    uint64_t v = 0;
    ck_assert_status(es_meta_get_u64(g_st, "relay.cursor", &v), GUILD_OK);
    ck_assert_uint_eq(v, 42);
}
END_TEST

/* ---- index checkpoints ---------------------------------------------------- */

/* A store whose stream index is checkpointed every 5 events, so reads mix
 * the checkpointed index with the newer one kept in memory. */
static void checkpoint_setup(void)
{
    g_dir = tst_dir_new("checkpoint");
    es_options opt = {.domain = "talent", .index_every = 5};
    guild_error err;
    ck_assert_status(es_store_open(g_dir, &opt, &g_st, &err), GUILD_OK);
}

static void checkpoint_reopen(void)
{
    es_store_close(g_st);
    g_st = NULL;
    es_options opt = {.domain = "talent", .index_every = 5};
    guild_error err;
    ck_assert_status(es_store_open(g_dir, &opt, &g_st, &err), GUILD_OK);
}

#define CP_STREAMS 3

/* Appends to three streams in turn, 1-3 events at a time, 37 in all. */
static void checkpoint_fill(uint64_t versions[CP_STREAMS])
{
    uint64_t total = 0;
    for (int i = 0; total < 37; i++) {
        char stream[32];
        int k = i % CP_STREAMS;
        size_t n = 1 + (size_t)(i % 3);
        if (total + n > 37)
            n = (size_t)(37 - total);
        snprintf(stream, sizeof stream, "talent-%d", k);
        ck_assert_status(tst_append_quiet(g_st, stream, versions[k], n), GUILD_OK);
        versions[k] += n;
        total += n;
    }
}

/* Reads every stream forward, backward and through its head and the stream
 * list, and checks each against the log. */
static void checkpoint_check(const uint64_t versions[CP_STREAMS])
{
    tst_recs log, recs;
    tst_recs_init(&log);
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_log(g_st, &log), GUILD_OK);
    ck_assert_uint_eq(log.n, 37);
    tst_streams l = {0};
    ck_assert_status(es_list_streams(g_st, NULL, 100, tst_streams_collect, &l), GUILD_OK);
    ck_assert_uint_eq(l.n, CP_STREAMS);
    for (int k = 0; k < CP_STREAMS; k++) {
        char stream[32];
        snprintf(stream, sizeof stream, "talent-%d", k);
        ck_assert_str_eq(l.names[k], stream);
        ck_assert_uint_eq(l.versions[k], versions[k]);
        ck_assert_uint_eq(tst_stream_version(g_st, stream), versions[k]);

        ck_assert_status(tst_read_whole_stream(g_st, stream, &recs), GUILD_OK);
        ck_assert_uint_eq(recs.n, versions[k]);
        for (size_t i = 0; i < recs.n; i++) {
            const es_record *rec = &recs.v[i].rec;
            ck_assert_uint_eq(rec->version, i + 1);
            ck_assert_mem_eq(rec->hash, log.v[rec->position - 1].rec.hash, ES_HASH_LEN);
            ck_assert(tst_str_eq(log.v[rec->position - 1].rec.stream, stream));
        }
        uint8_t hash[ES_HASH_LEN];
        ck_assert_status(es_stream_head(g_st, stream, NULL, hash), GUILD_OK);
        ck_assert_mem_eq(hash, recs.v[recs.n - 1].rec.hash, ES_HASH_LEN);

        tst_recs_clear(&recs);
        ck_assert_status(es_read_stream_back(g_st, stream, 0, 100, tst_recs_collect, &recs),
                         GUILD_OK);
        ck_assert_uint_eq(recs.n, versions[k]);
        for (size_t i = 0; i < recs.n; i++)
            ck_assert_uint_eq(recs.v[i].rec.version, versions[k] - i);
    }
    es_verify_report rep;
    ck_assert_status(es_verify(g_st, &rep, NULL, NULL), GUILD_OK);
    ck_assert_msg(rep.intact, "broken at %llu: %s", (unsigned long long)rep.break_position,
                  rep.what);
    ck_assert_uint_eq(rep.checked, 37);
    tst_recs_release(&log);
    tst_recs_release(&recs);
}

START_TEST(test_reads_agree_across_index_checkpoints)
{
    uint64_t versions[CP_STREAMS] = {0};
    checkpoint_fill(versions);
    checkpoint_check(versions);
}
END_TEST

START_TEST(test_reads_agree_after_reopen_across_index_checkpoints)
{
    uint64_t versions[CP_STREAMS] = {0};
    checkpoint_fill(versions);
    checkpoint_reopen();
    checkpoint_check(versions);
}
END_TEST

START_TEST(test_expected_versions_hold_across_index_checkpoints)
{
    uint64_t versions[CP_STREAMS] = {0};
    checkpoint_fill(versions);
    es_result r;
    ck_assert_status(tst_append(g_st, "talent-0", versions[0] - 1, NULL, 1, &r), GUILD_CONFLICT);
    ck_assert_uint_eq(r.version, versions[0]);
    es_result_release(&r);
    ck_assert_status(tst_append(g_st, "talent-0", 0, NULL, 1, &r), GUILD_CONFLICT);
    ck_assert_uint_eq(r.version, versions[0]);
    es_result_release(&r);
    ck_assert_status(tst_append(g_st, "talent-0", versions[0], NULL, 1, &r), GUILD_OK);
    ck_assert_uint_eq(r.version, versions[0] + 1);
    ck_assert_uint_eq(r.first_position, 38);
    es_result_release(&r);
}
END_TEST

/* ---- suite ---------------------------------------------------------------- */

static TCase *tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_add_checked_fixture(tc, store_setup, store_teardown);
    return tc;
}

static Suite *reads_suite(void)
{
    Suite *s = suite_create("eventstore/reads");

    TCase *tc = tcase("reads");
    tcase_add_test(tc, test_read_stream_pages_forward);
    tcase_add_test(tc, test_read_stream_from_the_middle_starts_at_that_version);
    tcase_add_test(tc, test_read_of_unknown_stream_is_empty);
    tcase_add_test(tc, test_read_stream_back_returns_last_events_newest_first);
    tcase_add_test(tc, test_read_stream_back_from_a_version_stops_at_the_start);
    tcase_add_test(tc, test_read_stops_when_callback_asks);
    tcase_add_test(tc, test_read_log_pages_from_a_position);
    tcase_add_test(tc, test_stream_head_reports_version_and_hash_of_last_event);
    tcase_add_test(tc, test_stream_head_of_unknown_stream_is_not_found);
    tcase_add_test(tc, test_log_head_of_empty_store_is_zero);
    tcase_add_test(tc, test_log_head_reports_last_position_and_its_hash);
    tcase_add_test(tc, test_list_streams_in_id_order_with_versions);
    tcase_add_test(tc, test_list_streams_continues_after_a_cursor_within_a_limit);
    suite_add_tcase(s, tc);
    tc = tcase("snapshots_and_meta");
    tcase_add_test(tc, test_snapshot_get_returns_the_latest_put);
    tcase_add_test(tc, test_snapshot_of_stream_without_one_is_not_found);
    tcase_add_test(tc, test_snapshot_survives_reopen);
    tcase_add_test(tc, test_snapshot_each_walks_every_snapshot_in_stream_order);
    tcase_add_test(tc, test_meta_bytes_round_trip);
    tcase_add_test(tc, test_meta_u64_round_trip);
    tcase_add_test(tc, test_meta_missing_name_is_not_found);
    tcase_add_test(tc, test_meta_survives_reopen);
    suite_add_tcase(s, tc);

    tc = tcase_create("index_checkpoints");
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_add_checked_fixture(tc, checkpoint_setup, store_teardown);
    tcase_add_test(tc, test_reads_agree_across_index_checkpoints);
    tcase_add_test(tc, test_reads_agree_after_reopen_across_index_checkpoints);
    tcase_add_test(tc, test_expected_versions_hold_across_index_checkpoints);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tst_run_suite(reads_suite());
}
