/*
 * test_relay.c — the outbox relay against a real nats-server: the stream it
 * sets up, what each published event looks like, and that the stream ends
 * up equal to the log across relay crashes and broker restarts.
 *
 * Sections: fixture and helpers; the stream; published events; resuming;
 * broker outages; arguments.
 */
#include "bus/relay.h"

#include "common/clock.h"

#include "tests/support/check_util.h"
#include "tests/support/es_util.h"
#include "tests/support/mpmap.h"
#include "tests/support/nats_server.h"
#include "tests/support/tmpdir.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define STREAM_NAME "GUILD_TALENT"
#define CAUGHT_UP_MS 30000

static tst_nats g_srv;
static natsConnection *g_nc;
static jsCtx *g_js; /* the test's own view of the stream */
static char *g_dir;
static es_store *g_st;
static bus_relay *g_relay;

/* ---- fixture and helpers ---------------------------------------------------- */

static void relay_setup(void)
{
    ck_assert_int_eq(tst_nats_start(&g_srv), 0);
    ck_assert_int_eq(tst_nats_connect(&g_srv, &g_nc), 0);
    ck_assert_int_eq(tst_nats_js(g_nc, &g_js), 0);
    g_dir = tst_dir_new("relay");
    ck_assert_status(tst_store_open(g_dir, "talent", 0, &g_st), GUILD_OK);
}

static void relay_teardown(void)
{
    bus_relay_stop(g_relay);
    g_relay = NULL;
    es_store_close(g_st);
    g_st = NULL;
    jsCtx_Destroy(g_js);
    g_js = NULL;
    natsConnection_Destroy(g_nc);
    g_nc = NULL;
    tst_nats_stop(&g_srv);
    tst_dir_remove(g_dir);
    free(g_dir);
    g_dir = NULL;
}

static void relay_start_with(const bus_relay_options *opt)
{
    guild_error err;
    guild_error_clear(&err);
    guild_status s = bus_relay_start(g_nc, g_st, "talent", opt, &g_relay, &err);
    ck_assert_msg(s == GUILD_OK, "bus_relay_start: %s %s", guild_status_code(s), err.message);
}

static void relay_start(void)
{
    relay_start_with(NULL);
}

static void relay_stop(void)
{
    bus_relay_stop(g_relay);
    g_relay = NULL;
}

static void caught_up(void)
{
    guild_status s = bus_relay_wait_caught_up(g_relay, CAUGHT_UP_MS);
    bus_relay_stats st;
    bus_relay_stats_get(g_relay, &st);
    ck_assert_msg(s == GUILD_OK, "not caught up: %s; published %" PRIu64 " of %" PRIu64,
                  guild_status_code(s), st.published, st.head);
}

static void append(const char *stream, size_t n)
{
    ck_assert_status(tst_append_quiet(g_st, stream, ES_ANY_VERSION, n), GUILD_OK);
}

static void append_with_correlation(const char *stream, const char *correlation_id)
{
    tst_map m;
    tst_map_init(&m, 1);
    tst_map_str(&m, "skill", "c");
    es_event_in ev = {
        .type = "skill_added", .schema = 1, .data = tst_map_data(&m), .data_len = tst_map_len(&m)};
    es_append req = {.stream = stream,
                     .expected_version = ES_ANY_VERSION,
                     .prov = {.correlation_id = correlation_id},
                     .events = &ev,
                     .n_events = 1};
    es_result res;
    ck_assert_status(es_append_wait(g_st, &req, &res), GUILD_OK);
    es_result_release(&res);
    tst_map_release(&m);
}

static jsStreamInfo *stream_info(void)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, g_js, STREAM_NAME, NULL, &jerr);
    ck_assert_msg(s == NATS_OK, "stream info: %s (%d)", natsStatus_GetText(s), (int)jerr);
    return si;
}

static natsMsg *stream_msg(uint64_t seq)
{
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetMsg(&m, g_js, STREAM_NAME, seq, NULL, &jerr);
    ck_assert_msg(s == NATS_OK, "message %" PRIu64 ": %s (%d)", seq, natsStatus_GetText(s),
                  (int)jerr);
    return m;
}

static const char *header(natsMsg *m, const char *key)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, key, &v) == NATS_OK ? v : NULL;
}

static uint64_t header_u64(natsMsg *m, const char *key)
{
    const char *v = header(m, key);
    ck_assert_msg(v != NULL, "header %s missing", key);
    return strtoull(v, NULL, 10);
}

static uint64_t stored_cursor(void)
{
    uint64_t c = 0;
    ck_assert_status(es_meta_get_u64(g_st, BUS_RELAY_CURSOR_KEY, &c), GUILD_OK);
    return c;
}

/* The stream holds log positions `first`..head, each once, at the stream
 * sequence equal to its position, with the record's bytes as payload and
 * the Nats-Msg-Id of its position. Read with an ordered consumer, which
 * delivers every stored message in stream order. */
static void assert_stream_holds_log_from(uint64_t first)
{
    tst_recs log;
    tst_recs_init(&log);
    ck_assert_status(tst_read_whole_log(g_st, &log), GUILD_OK);
    uint64_t head = log.n;
    jsStreamInfo *si = stream_info();
    ck_assert_uint_eq(si->State.Msgs, head - first + 1);
    ck_assert_uint_eq(si->State.LastSeq, head);
    jsStreamInfo_Destroy(si);

    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = STREAM_NAME;
    so.Ordered = true;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_SubscribeSync(&sub, g_js, "guild.evt.talent.>", NULL, &so, &jerr);
    ck_assert_msg(s == NATS_OK, "subscribe: %s (%d)", natsStatus_GetText(s), (int)jerr);
    for (uint64_t seq = first; seq <= head; seq++) {
        natsMsg *m = NULL;
        s = natsSubscription_NextMsg(&m, sub, 10000);
        ck_assert_msg(s == NATS_OK, "message %" PRIu64 ": %s", seq, natsStatus_GetText(s));
        jsMsgMetaData *meta = NULL;
        ck_assert_int_eq(natsMsg_GetMetaData(&meta, m), NATS_OK);
        ck_assert_uint_eq(meta->Sequence.Stream, seq);
        jsMsgMetaData_Destroy(meta);
        const tst_rec *rec = &log.v[seq - 1];
        char id[64];
        snprintf(id, sizeof id, "talent:%" PRIu64, seq);
        ck_assert_uint_eq(header_u64(m, BUS_HDR_POSITION), seq);
        ck_assert_str_eq(header(m, BUS_HDR_MSG_ID), id);
        ck_assert_int_eq(natsMsg_GetDataLength(m), (int)rec->len);
        ck_assert_mem_eq(natsMsg_GetData(m), rec->raw, rec->len);
        natsMsg_Destroy(m);
    }
    natsSubscription_Destroy(sub);
    tst_recs_release(&log);
}

static void assert_stream_equals_log(void)
{
    assert_stream_holds_log_from(1);
}

static void create_stream_by_hand(int64_t duplicates_ns, const char *description)
{
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[] = {"guild.evt.talent.>"};
    cfg.Name = STREAM_NAME;
    cfg.Description = description;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Duplicates = duplicates_ns;
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddStream(&si, g_js, &cfg, NULL, &jerr);
    ck_assert_msg(s == NATS_OK, "add stream: %s (%d)", natsStatus_GetText(s), (int)jerr);
    jsStreamInfo_Destroy(si);
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Waits until the client has noticed that the broker is gone. */
static void wait_disconnected(void)
{
    for (int i = 0; i < 500 && natsConnection_Status(g_nc) == NATS_CONN_STATUS_CONNECTED; i++)
        sleep_ms(10);
    ck_assert_int_ne(natsConnection_Status(g_nc), NATS_CONN_STATUS_CONNECTED);
}

/* ---- the stream ------------------------------------------------------------- */

START_TEST(test_stream_is_created_with_subjects_file_storage_and_two_minute_dedup_window)
{
    relay_start();
    jsStreamInfo *si = stream_info();
    ck_assert_str_eq(si->Config->Name, STREAM_NAME);
    ck_assert_int_eq(si->Config->SubjectsLen, 1);
    ck_assert_str_eq(si->Config->Subjects[0], "guild.evt.talent.>");
    ck_assert_int_eq(si->Config->Storage, js_FileStorage);
    ck_assert_int_eq(si->Config->Duplicates, 120LL * 1000 * 1000 * 1000);
    ck_assert_uint_eq(si->State.Msgs, 0);
    jsStreamInfo_Destroy(si);
}
END_TEST

START_TEST(test_existing_stream_is_kept_as_it_is)
{
    create_stream_by_hand(30LL * 1000 * 1000 * 1000, "made by hand");
    append("talent-1", 3);
    relay_start();
    caught_up();
    jsStreamInfo *si = stream_info();
    ck_assert_str_eq(si->Config->Description, "made by hand");
    ck_assert_int_eq(si->Config->Duplicates, 30LL * 1000 * 1000 * 1000);
    jsStreamInfo_Destroy(si);
    assert_stream_equals_log();
}
END_TEST

/* ---- published events --------------------------------------------------------- */

START_TEST(test_every_event_lands_once_in_order_with_subject_headers_and_payload)
{
    append("talent-0193aaaa", 2);
    append_with_correlation("talent-0193bbbb", "corr-42");
    append("talent-0193aaaa", 1);
    relay_start();
    caught_up();
    assert_stream_equals_log();

    static const struct {
        const char *subject, *stream, *correlation;
        uint64_t version;
    } want[] = {
        {"guild.evt.talent.thing_happened.0193aaaa", "talent-0193aaaa", NULL, 1},
        {"guild.evt.talent.thing_happened.0193aaaa", "talent-0193aaaa", NULL, 2},
        {"guild.evt.talent.skill_added.0193bbbb", "talent-0193bbbb", "corr-42", 1},
        {"guild.evt.talent.thing_happened.0193aaaa", "talent-0193aaaa", NULL, 3},
    };
    for (uint64_t seq = 1; seq <= 4; seq++) {
        natsMsg *m = stream_msg(seq);
        ck_assert_str_eq(natsMsg_GetSubject(m), want[seq - 1].subject);
        ck_assert_str_eq(header(m, BUS_HDR_STREAM), want[seq - 1].stream);
        ck_assert_uint_eq(header_u64(m, BUS_HDR_VERSION), want[seq - 1].version);
        ck_assert_uint_eq(header_u64(m, BUS_HDR_POSITION), seq);
        if (want[seq - 1].correlation)
            ck_assert_str_eq(header(m, BUS_HDR_CORRELATION_ID), want[seq - 1].correlation);
        else
            ck_assert_ptr_null(header(m, BUS_HDR_CORRELATION_ID));
        natsMsg_Destroy(m);
    }
}
END_TEST

/* The relay's counters once it published all `n` events of the log
 * without a hitch. */
static bus_relay_stats assert_published_cleanly(uint64_t n)
{
    bus_relay_stats st;
    bus_relay_stats_get(g_relay, &st);
    ck_assert_uint_eq(st.published, n);
    ck_assert_uint_eq(st.head, n);
    ck_assert_uint_eq(st.lag, 0);
    ck_assert_uint_eq(st.duplicates, 0);
    ck_assert_uint_eq(st.errors, 0);
    ck_assert(st.connected);
    return st;
}

START_TEST(test_events_committed_while_running_are_published_in_log_order)
{
    relay_start();
    for (int i = 0; i < 40; i++) {
        append(i % 2 ? "talent-odd" : "talent-even", 250);
        bus_relay_notify(g_relay);
    }
    caught_up();
    assert_stream_equals_log();
    assert_published_cleanly(10000);
}
END_TEST

START_TEST(test_backlog_larger_than_the_window_is_published_whole)
{
    append("talent-1", 700);
    bus_relay_options opt = {.max_pending = 16, .batch = 7};
    relay_start_with(&opt);
    caught_up();
    assert_stream_equals_log();
}
END_TEST

/* Only the first and the last publish of a batch ask for an ack: a backlog
 * of 1,000 read 100 at a time gets 20, and lands whole. */
START_TEST(test_a_batch_asks_for_two_acks)
{
    append("talent-1", 1000);
    bus_relay_options opt = {.batch = 100};
    relay_start_with(&opt);
    caught_up();
    assert_stream_equals_log();
    bus_relay_stats st = assert_published_cleanly(1000);
    ck_assert_msg(st.acks >= 20 && st.acks <= 22, "%llu acks", (unsigned long long)st.acks);
}
END_TEST

static uint64_t stream_count(void)
{
    jsStreamInfo *si = stream_info();
    uint64_t n = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    return n;
}

/* Milliseconds until the stream holds `want` messages (fails after 10 s). */
static uint64_t ms_until_stream_holds(uint64_t want)
{
    uint64_t t0 = guild_mono_ns();
    while (stream_count() < want) {
        ck_assert_msg(guild_mono_ns() - t0 < 10000000000ull, "the stream never held %" PRIu64,
                      want);
        sleep_ms(2);
    }
    return (guild_mono_ns() - t0) / 1000000u;
}

/* A commit right after a round waits for the linger and goes out with what
 * commits meanwhile; a commit after a quiet spell goes out at once. */
START_TEST(test_commits_within_the_linger_go_out_together_after_it)
{
    bus_relay_options opt = {.linger_us = 1500000};
    relay_start_with(&opt);
    append("talent-1", 1);
    bus_relay_notify(g_relay);
    uint64_t first = ms_until_stream_holds(1);
    ck_assert_msg(first < 500, "the first event took %" PRIu64 " ms", first);

    uint64_t t1 = guild_mono_ns();
    append("talent-1", 1);
    bus_relay_notify(g_relay);
    sleep_ms(100);
    append("talent-2", 1);
    bus_relay_notify(g_relay);
    sleep_ms(100);
    ck_assert_uint_eq(stream_count(), 1);
    ms_until_stream_holds(3);
    uint64_t waited = (guild_mono_ns() - t1) / 1000000u;
    ck_assert_msg(waited >= 900, "the lingering events came after %" PRIu64 " ms", waited);

    sleep_ms(1700);
    append("talent-3", 1);
    bus_relay_notify(g_relay);
    uint64_t last = ms_until_stream_holds(4);
    ck_assert_msg(last < 500, "after a quiet spell the event took %" PRIu64 " ms", last);
    caught_up();
    assert_stream_equals_log();
}
END_TEST

START_TEST(test_subject_tokens_stay_single_tokens)
{
    append("talent-a.b*c>d e", 1);
    append("talent", 1);
    relay_start();
    caught_up();
    natsMsg *m = stream_msg(1);
    ck_assert_str_eq(natsMsg_GetSubject(m), "guild.evt.talent.thing_happened.a_b_c_d_e");
    ck_assert_str_eq(header(m, BUS_HDR_STREAM), "talent-a.b*c>d e");
    natsMsg_Destroy(m);
    m = stream_msg(2);
    ck_assert_str_eq(natsMsg_GetSubject(m), "guild.evt.talent.thing_happened.talent");
    natsMsg_Destroy(m);
}
END_TEST

START_TEST(test_cursor_is_stored_while_running_and_on_stop)
{
    append("talent-1", 500);
    bus_relay_options opt = {.cursor_every_ms = 10};
    relay_start_with(&opt);
    caught_up();
    uint64_t deadline_ms = 5000;
    uint64_t c = 0;
    while (deadline_ms > 0 &&
           (es_meta_get_u64(g_st, BUS_RELAY_CURSOR_KEY, &c) != GUILD_OK || c != 500)) {
        sleep_ms(10);
        deadline_ms -= 10;
    }
    ck_assert_uint_eq(c, 500);
    append("talent-1", 20);
    bus_relay_notify(g_relay);
    caught_up();
    relay_stop();
    ck_assert_uint_eq(stored_cursor(), 520);
}
END_TEST

/* ---- resuming ----------------------------------------------------------------- */

START_TEST(test_resume_with_cursor_rewound_to_zero_duplicates_nothing_outside_dedup_window)
{
    /* A 100 ms duplicate window: JetStream's dedup cannot hide a resend. */
    create_stream_by_hand(100LL * 1000 * 1000, NULL);
    append("talent-1", 300);
    relay_start();
    caught_up();
    relay_stop();
    ck_assert_status(es_meta_put_u64(g_st, BUS_RELAY_CURSOR_KEY, 0), GUILD_OK);
    sleep_ms(300);
    append("talent-2", 200);
    relay_start();
    caught_up();
    assert_stream_equals_log();
    bus_relay_stats st;
    bus_relay_stats_get(g_relay, &st);
    ck_assert_uint_eq(st.duplicates, 0);
    ck_assert_uint_eq(st.published, 500);
}
END_TEST

START_TEST(test_resume_with_cursor_in_the_middle_duplicates_nothing)
{
    create_stream_by_hand(100LL * 1000 * 1000, NULL);
    append("talent-1", 300);
    relay_start();
    caught_up();
    relay_stop();
    ck_assert_status(es_meta_put_u64(g_st, BUS_RELAY_CURSOR_KEY, 120), GUILD_OK);
    sleep_ms(300);
    append("talent-1", 50);
    relay_start();
    caught_up();
    assert_stream_equals_log();
    bus_relay_stats st;
    bus_relay_stats_get(g_relay, &st);
    ck_assert_uint_eq(st.duplicates, 0);
}
END_TEST

START_TEST(test_resume_on_a_fresh_store_with_no_cursor_publishes_everything)
{
    append("talent-1", 40);
    uint64_t c = 0;
    ck_assert_status(es_meta_get_u64(g_st, BUS_RELAY_CURSOR_KEY, &c), GUILD_NOT_FOUND);
    relay_start();
    caught_up();
    assert_stream_equals_log();
}
END_TEST

START_TEST(test_cursor_ahead_of_an_empty_recreated_stream_republishes_the_log)
{
    append("talent-1", 200);
    relay_start();
    caught_up();
    relay_stop();
    ck_assert_uint_eq(stored_cursor(), 200);
    ck_assert_int_eq(js_DeleteStream(g_js, STREAM_NAME, NULL, NULL), NATS_OK);
    relay_start();
    caught_up();
    assert_stream_equals_log();
}
END_TEST

START_TEST(test_cursor_ahead_of_the_stream_tail_publishes_the_missing_events)
{
    /* As if the broker lost acknowledged messages 201..250 (no fsync). */
    append("talent-1", 200);
    relay_start();
    caught_up();
    relay_stop();
    ck_assert_status(es_meta_put_u64(g_st, BUS_RELAY_CURSOR_KEY, 250), GUILD_OK);
    append("talent-1", 100);
    relay_start();
    caught_up();
    assert_stream_equals_log();
}
END_TEST

START_TEST(test_purged_stream_resumes_after_the_cursor)
{
    append("talent-1", 100);
    relay_start();
    caught_up();
    relay_stop();
    ck_assert_int_eq(js_PurgeStream(g_js, STREAM_NAME, NULL, NULL), NATS_OK);
    append("talent-1", 50);
    relay_start();
    caught_up();
    assert_stream_holds_log_from(101);
}
END_TEST

START_TEST(test_restarts_with_a_stale_cursor_never_resend)
{
    /* The cursor is written rarely: a crash leaves it far behind the stream. */
    bus_relay_options opt = {.cursor_every_ms = 60000, .cursor_every_events = 1000000};
    append("talent-1", 1000);
    relay_start_with(&opt);
    caught_up();
    relay_stop(); /* stores 1000 */
    ck_assert_status(es_meta_put_u64(g_st, BUS_RELAY_CURSOR_KEY, 3), GUILD_OK);
    for (int i = 0; i < 5; i++) {
        append("talent-2", 100);
        relay_start_with(&opt);
        caught_up();
        relay_stop();
        ck_assert_status(es_meta_put_u64(g_st, BUS_RELAY_CURSOR_KEY, 3), GUILD_OK);
    }
    relay_start_with(&opt);
    caught_up();
    assert_stream_equals_log();
}
END_TEST

START_TEST(test_foreign_message_in_the_stream_is_reported_and_the_relay_goes_on)
{
    append("talent-1", 100);
    relay_start();
    caught_up();
    /* Someone else publishes into the stream: the relay's next publish is
     * refused (wrong last sequence), the ones in flight behind it land. */
    jsErrCode jerr = 0;
    ck_assert_int_eq(js_Publish(NULL, g_js, "guild.evt.talent.intruder.x", "hi", 2, NULL, &jerr),
                     NATS_OK);
    append("talent-1", 100);
    bus_relay_notify(g_relay);
    caught_up();
    append("talent-1", 10);
    bus_relay_notify(g_relay);
    caught_up();

    /* Each position at most once, in order; the refused one is reported. */
    bus_relay_stats st;
    bus_relay_stats_get(g_relay, &st);
    jsStreamInfo *si = stream_info();
    uint64_t n = si->State.Msgs;
    jsStreamInfo_Destroy(si);
    ck_assert_uint_eq(n, 210 + 1 - st.gaps);
    uint64_t last = 0, missing = 0;
    for (uint64_t seq = 1; seq <= n; seq++) {
        natsMsg *m = stream_msg(seq);
        if (seq == 101) {
            ck_assert_str_eq(natsMsg_GetSubject(m), "guild.evt.talent.intruder.x");
        } else {
            uint64_t pos = header_u64(m, BUS_HDR_POSITION);
            ck_assert_uint_gt(pos, last);
            missing += pos - last - 1;
            last = pos;
        }
        natsMsg_Destroy(m);
    }
    ck_assert_uint_eq(last, 210);
    ck_assert_uint_eq(missing, st.gaps);
    ck_assert_uint_le(st.gaps, 1);
    ck_assert_uint_ge(st.errors, 1);
}
END_TEST

/* ---- broker outages ------------------------------------------------------------ */

typedef struct appender {
    pthread_t thread;
    atomic_bool stop;
    atomic_int failures;
    atomic_ulong appended;
} appender;

static void *appender_main(void *arg)
{
    appender *a = arg;
    unsigned i = 0;
    while (!atomic_load(&a->stop)) {
        char stream[32];
        snprintf(stream, sizeof stream, "talent-%u", i++ % 7);
        if (tst_append_quiet(g_st, stream, ES_ANY_VERSION, 50) != GUILD_OK)
            atomic_fetch_add(&a->failures, 1);
        else
            atomic_fetch_add(&a->appended, 50);
        bus_relay_notify(g_relay);
        sleep_ms(1);
    }
    return NULL;
}

static void appender_start(appender *a)
{
    atomic_init(&a->stop, false);
    atomic_init(&a->failures, 0);
    atomic_init(&a->appended, 0);
    ck_assert_int_eq(pthread_create(&a->thread, NULL, appender_main, a), 0);
}

static void appender_stop(appender *a)
{
    atomic_store(&a->stop, true);
    pthread_join(a->thread, NULL);
    ck_assert_int_eq(atomic_load(&a->failures), 0);
}

START_TEST(test_broker_killed_and_restarted_while_appending_ends_equal_to_the_log)
{
    relay_start();
    appender a;
    appender_start(&a);
    for (int round = 0; round < 3; round++) {
        sleep_ms(300);
        ck_assert_int_eq(tst_nats_kill(&g_srv), 0);
        sleep_ms(200);
        ck_assert_int_eq(tst_nats_restart(&g_srv), 0);
    }
    sleep_ms(300);
    appender_stop(&a);
    ck_assert_uint_gt(atomic_load(&a.appended), 0);
    caught_up();
    assert_stream_equals_log();
    bus_relay_stats st;
    bus_relay_stats_get(g_relay, &st);
    ck_assert_uint_ge(st.resyncs, 2);
    ck_assert_uint_eq(st.lag, 0);
}
END_TEST

START_TEST(test_broker_killed_with_thousands_of_publishes_in_flight_ends_equal_to_the_log)
{
    for (int i = 0; i < 50; i++)
        append(i % 2 ? "talent-odd" : "talent-even", 2000);
    relay_start();
    bus_relay_stats st;
    do {
        sleep_ms(1);
        bus_relay_stats_get(g_relay, &st);
    } while (st.published < 20000);
    ck_assert_int_eq(tst_nats_kill(&g_srv), 0);
    bus_relay_stats_get(g_relay, &st);
    ck_assert_uint_lt(st.published, 100000);
    sleep_ms(100);
    ck_assert_int_eq(tst_nats_restart(&g_srv), 0);
    caught_up();
    assert_stream_equals_log();
    bus_relay_stats_get(g_relay, &st);
}
END_TEST

START_TEST(test_broker_stopped_gracefully_and_restarted_ends_equal_to_the_log)
{
    relay_start();
    appender a;
    appender_start(&a);
    sleep_ms(300);
    int port = g_srv.port;
    /* tst_nats_restart stops a running server with SIGTERM first. */
    ck_assert_int_eq(tst_nats_restart(&g_srv), 0);
    ck_assert_int_eq(g_srv.port, port);
    sleep_ms(300);
    appender_stop(&a);
    caught_up();
    assert_stream_equals_log();
}
END_TEST

START_TEST(test_wait_caught_up_times_out_while_the_broker_is_down_then_succeeds)
{
    append("talent-1", 10);
    relay_start();
    caught_up();
    ck_assert_int_eq(tst_nats_kill(&g_srv), 0);
    append("talent-1", 10);
    bus_relay_notify(g_relay);
    ck_assert_status(bus_relay_wait_caught_up(g_relay, 300), GUILD_TIMEOUT);
    bus_relay_stats st;
    bus_relay_stats_get(g_relay, &st);
    ck_assert_uint_eq(st.published, 10);
    ck_assert_uint_eq(st.lag, 10);
    ck_assert(!st.connected);
    ck_assert_int_eq(tst_nats_restart(&g_srv), 0);
    caught_up();
    assert_stream_equals_log();
}
END_TEST

START_TEST(test_relay_started_while_the_broker_is_down_publishes_once_it_is_up)
{
    append("talent-1", 25);
    ck_assert_int_eq(tst_nats_kill(&g_srv), 0);
    wait_disconnected();
    relay_start();
    sleep_ms(100);
    ck_assert_int_eq(tst_nats_restart(&g_srv), 0);
    caught_up();
    assert_stream_equals_log();
}
END_TEST

/* ---- arguments ------------------------------------------------------------------ */

START_TEST(test_start_refuses_a_domain_other_than_the_stores)
{
    guild_error err;
    bus_relay *r = NULL;
    ck_assert_status(bus_relay_start(g_nc, g_st, "job", NULL, &r, &err), GUILD_INVALID_REQUEST);
    ck_assert_str_eq(err.field, "domain");
    ck_assert_status(bus_relay_start(g_nc, g_st, "Talent", NULL, &r, &err), GUILD_INVALID_REQUEST);
    ck_assert_status(bus_relay_start(NULL, g_st, "talent", NULL, &r, &err), GUILD_INVALID_REQUEST);
    ck_assert_ptr_null(r);
}
END_TEST

START_TEST(test_start_fails_when_jetstream_refuses_the_stream)
{
    /* Another stream already holds the relay's subjects. */
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[] = {"guild.evt.>"};
    cfg.Name = "SOMEONE_ELSE";
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    ck_assert_int_eq(js_AddStream(NULL, g_js, &cfg, NULL, NULL), NATS_OK);
    guild_error err;
    bus_relay *r = NULL;
    ck_assert_status(bus_relay_start(g_nc, g_st, "talent", NULL, &r, &err), GUILD_UNAVAILABLE);
    ck_assert_ptr_null(r);
    ck_assert_ptr_nonnull(strstr(err.message, STREAM_NAME));
}
END_TEST

START_TEST(test_start_with_null_domain_takes_the_stores)
{
    append("talent-1", 2);
    guild_error err;
    ck_assert_status(bus_relay_start(g_nc, g_st, NULL, NULL, &g_relay, &err), GUILD_OK);
    caught_up();
    assert_stream_equals_log();
}
END_TEST

/* ---- suite ------------------------------------------------------------------------ */

static TCase *tcase(const char *name)
{
    TCase *tc = tcase_create(name);
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_add_checked_fixture(tc, relay_setup, relay_teardown);
    tcase_set_timeout(tc, 120);
    return tc;
}

static Suite *relay_suite(void)
{
    Suite *s = suite_create("bus/relay");

    TCase *tc = tcase("stream");
    tcase_add_test(tc,
                   test_stream_is_created_with_subjects_file_storage_and_two_minute_dedup_window);
    tcase_add_test(tc, test_existing_stream_is_kept_as_it_is);
    suite_add_tcase(s, tc);

    tc = tcase("published_events");
    tcase_add_test(tc, test_every_event_lands_once_in_order_with_subject_headers_and_payload);
    tcase_add_test(tc, test_events_committed_while_running_are_published_in_log_order);
    tcase_add_test(tc, test_backlog_larger_than_the_window_is_published_whole);
    tcase_add_test(tc, test_a_batch_asks_for_two_acks);
    tcase_add_test(tc, test_commits_within_the_linger_go_out_together_after_it);
    tcase_add_test(tc, test_subject_tokens_stay_single_tokens);
    tcase_add_test(tc, test_cursor_is_stored_while_running_and_on_stop);
    suite_add_tcase(s, tc);

    tc = tcase("resume");
    tcase_add_test(tc,
                   test_resume_with_cursor_rewound_to_zero_duplicates_nothing_outside_dedup_window);
    tcase_add_test(tc, test_resume_with_cursor_in_the_middle_duplicates_nothing);
    tcase_add_test(tc, test_resume_on_a_fresh_store_with_no_cursor_publishes_everything);
    tcase_add_test(tc, test_cursor_ahead_of_an_empty_recreated_stream_republishes_the_log);
    tcase_add_test(tc, test_cursor_ahead_of_the_stream_tail_publishes_the_missing_events);
    tcase_add_test(tc, test_purged_stream_resumes_after_the_cursor);
    tcase_add_test(tc, test_restarts_with_a_stale_cursor_never_resend);
    tcase_add_test(tc, test_foreign_message_in_the_stream_is_reported_and_the_relay_goes_on);
    suite_add_tcase(s, tc);

    tc = tcase("broker_outages");
    tcase_add_test(tc, test_broker_killed_and_restarted_while_appending_ends_equal_to_the_log);
    tcase_add_test(tc,
                   test_broker_killed_with_thousands_of_publishes_in_flight_ends_equal_to_the_log);
    tcase_add_test(tc, test_broker_stopped_gracefully_and_restarted_ends_equal_to_the_log);
    tcase_add_test(tc, test_wait_caught_up_times_out_while_the_broker_is_down_then_succeeds);
    tcase_add_test(tc, test_relay_started_while_the_broker_is_down_publishes_once_it_is_up);
    suite_add_tcase(s, tc);

    tc = tcase("arguments");
    tcase_add_test(tc, test_start_refuses_a_domain_other_than_the_stores);
    tcase_add_test(tc, test_start_fails_when_jetstream_refuses_the_stream);
    tcase_add_test(tc, test_start_with_null_domain_takes_the_stores);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tst_run_suite(relay_suite());
}
