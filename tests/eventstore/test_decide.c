/*
 * test_decide.c — appends decided by a function inside the writer's
 * transaction: what it sees, what it emits (to its own stream and others),
 * failures, replies stored with the command, and the batch hook.
 */
#include "eventstore/es.h"

#include "common/clock.h"
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
    g_dir = tst_dir_new("decide");
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

/* ---- decide functions ----------------------------------------------------- */

typedef struct probe {
    /* what the decide function does */
    size_t emit;
    guild_status fail;
    const char *reply;
    const char *other; /* a stream whose head it asks for */
    /* what it saw */
    int calls;
    uint64_t version;
    char stream[ES_STREAM_MAX + 1];
    int64_t time;
    size_t read_count;
    uint64_t read_last_version;
    uint64_t other_head;
} probe;

static int probe_read(void *ctx, const es_record *rec)
{
    probe *p = ctx;
    p->read_count++;
    p->read_last_version = rec->version;
    return 0;
}

/* Emits `emit` events of type "counted" whose data {"n": v} is the version
 * each will get, so the records show what the function saw. */
static guild_status probe_decide(void *ctx, es_wctx *w)
{
    probe *p = ctx;
    p->calls++;
    p->version = es_wctx_version(w);
    snprintf(p->stream, sizeof p->stream, "%s", es_wctx_stream(w));
    p->time = es_wctx_time(w);
    p->read_count = 0;
    p->read_last_version = 0;
    guild_status s = es_wctx_read(w, 1, probe_read, p);
    if (s != GUILD_OK)
        return s;
    if (p->other)
        p->other_head = es_wctx_head(w, p->other);
    for (size_t k = 0; k < p->emit; k++) {
        tst_map m;
        tst_map_init(&m, 1);
        tst_map_int(&m, "n", (int64_t)(p->version + k + 1));
        es_wctx_emit(w, "counted", 2, tst_map_data(&m), tst_map_len(&m));
        tst_map_release(&m);
    }
    if (p->reply)
        es_wctx_set_reply(w, p->reply, strlen(p->reply));
    if (p->fail != GUILD_OK)
        return es_wctx_fail(w, p->fail, "level", "level must be at most %d", 5);
    return GUILD_OK;
}

static guild_status decide_append(const char *stream, uint64_t expected, const char *command_id,
                                  probe *p, es_result *out)
{
    es_append req = {.stream = stream,
                     .expected_version = expected,
                     .prov = {.command_id = command_id},
                     .decide = probe_decide,
                     .decide_ctx = p};
    return es_append_wait(g_st, &req, out);
}

START_TEST(test_decide_sees_head_version_and_stream)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 2), GUILD_OK);
    probe p = {.emit = 2};
    es_result r;
    ck_assert_status(decide_append("talent-1", ES_ANY_VERSION, NULL, &p, &r), GUILD_OK);
    ck_assert_uint_eq(p.version, 2);
    ck_assert_str_eq(p.stream, "talent-1");
    ck_assert_uint_eq(r.version, 4);
    ck_assert_uint_eq(r.n_events, 2);
    es_result_release(&r);

    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_stream(g_st, "talent-1", &recs), GUILD_OK);
    ck_assert_uint_eq(recs.n, 4);
    for (size_t i = 2; i < 4; i++) {
        const es_record *rec = &recs.v[i].rec;
        int64_t n = 0;
        ck_assert(tst_str_eq(rec->type, "counted"));
        ck_assert_uint_eq(rec->schema, 2);
        ck_assert(tst_map_get_int(rec->data, rec->data_len, "n", &n));
        ck_assert_int_eq(n, (int64_t)rec->version);
    }
    tst_recs_release(&recs);
}
END_TEST

START_TEST(test_decide_on_new_stream_sees_version_zero)
{
    probe p = {.emit = 1};
    es_result r;
    ck_assert_status(decide_append("talent-new", 0, NULL, &p, &r), GUILD_OK);
    ck_assert_int_eq(p.calls, 1);
    ck_assert_uint_eq(p.version, 0);
    ck_assert_uint_eq(p.read_count, 0);
    ck_assert_uint_eq(r.version, 1);
    es_result_release(&r);
}
END_TEST

START_TEST(test_decide_reads_its_stream_inside_the_transaction)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 5), GUILD_OK);
    ck_assert_status(tst_append_quiet(g_st, "talent-2", 0, 2), GUILD_OK);
    probe p = {.emit = 1, .other = "talent-2"};
    es_result r;
    ck_assert_status(decide_append("talent-1", 5, NULL, &p, &r), GUILD_OK);
    ck_assert_uint_eq(p.read_count, 5);
    ck_assert_uint_eq(p.read_last_version, 5);
    ck_assert_uint_eq(p.other_head, 2);
    es_result_release(&r);
}
END_TEST

START_TEST(test_decide_head_of_missing_stream_is_zero)
{
    probe p = {.emit = 1, .other = "talent-missing"};
    es_result r;
    p.other_head = 99;
    ck_assert_status(decide_append("talent-1", 0, NULL, &p, &r), GUILD_OK);
    ck_assert_uint_eq(p.other_head, 0);
    es_result_release(&r);
}
END_TEST

START_TEST(test_decide_time_is_the_events_time)
{
    probe p = {.emit = 2};
    es_result r;
    int64_t before = guild_now_ns();
    ck_assert_status(decide_append("talent-1", 0, NULL, &p, &r), GUILD_OK);
    int64_t after = guild_now_ns();
    es_result_release(&r);
    ck_assert_int_ge(p.time, before);
    ck_assert_int_le(p.time, after);
    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_stream(g_st, "talent-1", &recs), GUILD_OK);
    ck_assert_uint_eq(recs.n, 2);
    ck_assert_int_eq(recs.v[0].rec.time, p.time);
    ck_assert_int_eq(recs.v[1].rec.time, p.time);
    tst_recs_release(&recs);
}
END_TEST

START_TEST(test_decide_failure_writes_nothing_and_carries_its_detail)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 1), GUILD_OK);
    probe p = {.emit = 2, .fail = GUILD_RULE_VIOLATION};
    es_result r;
    ck_assert_status(decide_append("talent-1", 1, NULL, &p, &r), GUILD_RULE_VIOLATION);
    ck_assert_status(r.status, GUILD_RULE_VIOLATION);
    ck_assert_status(r.error.status, GUILD_RULE_VIOLATION);
    ck_assert_str_eq(r.error.field, "level");
    ck_assert_str_eq(r.error.message, "level must be at most 5");
    ck_assert_uint_eq(r.n_events, 0);
    ck_assert_uint_eq(r.first_position, 0);
    es_result_release(&r);
    ck_assert_uint_eq(tst_log_position(g_st), 1);
    ck_assert_uint_eq(tst_stream_version(g_st, "talent-1"), 1);
}
END_TEST

START_TEST(test_decide_failure_on_new_stream_does_not_create_it)
{
    probe p = {.emit = 1, .fail = GUILD_VALIDATION_FAILED};
    es_result r;
    ck_assert_status(decide_append("talent-1", 0, NULL, &p, &r), GUILD_VALIDATION_FAILED);
    es_result_release(&r);
    ck_assert_status(es_stream_head(g_st, "talent-1", NULL, NULL), GUILD_NOT_FOUND);
    tst_streams l = {0};
    ck_assert_status(es_list_streams(g_st, NULL, 100, tst_streams_collect, &l), GUILD_OK);
    ck_assert_uint_eq(l.n, 0);
}
END_TEST

START_TEST(test_decide_is_not_called_when_expected_version_conflicts)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 2), GUILD_OK);
    probe p = {.emit = 1};
    es_result r;
    ck_assert_status(decide_append("talent-1", 1, NULL, &p, &r), GUILD_CONFLICT);
    ck_assert_uint_eq(r.version, 2);
    ck_assert_int_eq(p.calls, 0);
    es_result_release(&r);
    ck_assert_uint_eq(tst_log_position(g_st), 2);
}
END_TEST

START_TEST(test_decide_emitting_nothing_writes_nothing)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 2), GUILD_OK);
    probe p = {.emit = 0};
    es_result r;
    ck_assert_status(decide_append("talent-1", ES_ANY_VERSION, NULL, &p, &r), GUILD_OK);
    ck_assert_uint_eq(r.n_events, 0);
    ck_assert_uint_eq(r.first_position, 0);
    ck_assert_uint_eq(r.version, 2);
    es_result_release(&r);
    ck_assert_uint_eq(tst_log_position(g_st), 2);
}
END_TEST

START_TEST(test_decide_reply_comes_back_with_the_result_and_every_duplicate)
{
    probe p = {.emit = 1, .reply = "{\"token\":\"t-1\"}"};
    es_result first, again;
    ck_assert_status(decide_append("talent-1", 0, "cmd-login-1", &p, &first), GUILD_OK);
    ck_assert_uint_eq(first.reply_len, strlen(p.reply));
    ck_assert_mem_eq(first.reply, p.reply, first.reply_len);

    probe p2 = {.emit = 1, .reply = "{\"token\":\"other\"}"};
    ck_assert_status(decide_append("talent-1", 0, "cmd-login-1", &p2, &again), GUILD_OK);
    ck_assert(again.duplicate);
    ck_assert_int_eq(p2.calls, 0);
    tst_assert_same_result(&first, &again);
    ck_assert_uint_eq(tst_log_position(g_st), 1);
    es_result_release(&first);
    es_result_release(&again);

    store_reopen();
    es_result found;
    ck_assert_status(es_command_lookup(g_st, "cmd-login-1", &found), GUILD_OK);
    ck_assert_uint_eq(found.reply_len, strlen(p.reply));
    ck_assert_mem_eq(found.reply, p.reply, found.reply_len);
    es_result_release(&found);
}
END_TEST

START_TEST(test_decide_emitting_nothing_still_records_its_command)
{
    probe p = {.emit = 0, .reply = "noop"};
    es_result first, again;
    ck_assert_status(decide_append("talent-1", ES_ANY_VERSION, "cmd-noop", &p, &first), GUILD_OK);
    probe p2 = {.emit = 1};
    ck_assert_status(decide_append("talent-1", ES_ANY_VERSION, "cmd-noop", &p2, &again), GUILD_OK);
    ck_assert(again.duplicate);
    ck_assert_int_eq(p2.calls, 0);
    ck_assert_uint_eq(again.n_events, 0);
    ck_assert_uint_eq(again.reply_len, 4);
    ck_assert_mem_eq(again.reply, "noop", 4);
    ck_assert_uint_eq(tst_log_position(g_st), 0);
    es_result_release(&first);
    es_result_release(&again);
}
END_TEST

/* A registration: emits "user_registered" to its own stream and claims an
 * email by emitting "email_claimed" to the email's stream, failing when the
 * claim is taken (or when told to fail after emitting). */
typedef struct registration {
    const char *email_stream;
    bool fail_after_emit;
    uint64_t claim_head; /* what es_wctx_head said about the email stream */
} registration;

static guild_status register_decide(void *ctx, es_wctx *w)
{
    registration *reg = ctx;
    reg->claim_head = es_wctx_head(w, reg->email_stream);
    es_wctx_emit(w, "user_registered", 1, NULL, 0);
    es_wctx_emit_to(w, reg->email_stream, "email_claimed", 1, NULL, 0);
    if (reg->fail_after_emit)
        return es_wctx_fail(w, GUILD_RULE_VIOLATION, "email", "refused");
    return GUILD_OK;
}

static guild_status register_append(const char *stream, registration *reg, es_result *out)
{
    es_append req = {.stream = stream,
                     .expected_version = 0,
                     .prov = {.command_id = stream},
                     .decide = register_decide,
                     .decide_ctx = reg};
    return es_append_wait(g_st, &req, out);
}

START_TEST(test_decide_emit_to_appends_to_another_stream_atomically)
{
    registration reg = {.email_stream = "email-ada"};
    es_result r;
    ck_assert_status(register_append("user-1", &reg, &r), GUILD_OK);
    es_result_release(&r);
    ck_assert_uint_eq(reg.claim_head, 0);
    ck_assert_uint_eq(tst_stream_version(g_st, "user-1"), 1);
    ck_assert_uint_eq(tst_stream_version(g_st, "email-ada"), 1);

    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_log(g_st, &recs), GUILD_OK);
    ck_assert_uint_eq(recs.n, 2);
    ck_assert(tst_str_eq(recs.v[0].rec.stream, "user-1"));
    ck_assert(tst_str_eq(recs.v[0].rec.type, "user_registered"));
    ck_assert(tst_str_eq(recs.v[1].rec.stream, "email-ada"));
    ck_assert(tst_str_eq(recs.v[1].rec.type, "email_claimed"));
    ck_assert_uint_eq(recs.v[1].rec.version, 1);
    ck_assert(tst_str_eq(recs.v[1].rec.command_id, "user-1"));
    tst_recs_clear(&recs);
    ck_assert_status(tst_read_whole_stream(g_st, "email-ada", &recs), GUILD_OK);
    ck_assert_uint_eq(recs.n, 1);
    ck_assert_uint_eq(recs.v[0].rec.position, 2);
    tst_recs_release(&recs);
}
END_TEST

START_TEST(test_decide_emit_to_existing_stream_takes_its_next_version)
{
    ck_assert_status(tst_append_quiet(g_st, "email-ada", 0, 2), GUILD_OK);
    registration reg = {.email_stream = "email-ada"};
    es_result r;
    ck_assert_status(register_append("user-1", &reg, &r), GUILD_OK);
    es_result_release(&r);
    ck_assert_uint_eq(reg.claim_head, 2);
    ck_assert_uint_eq(tst_stream_version(g_st, "email-ada"), 3);
    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(es_read_stream_back(g_st, "email-ada", 0, 1, tst_recs_collect, &recs),
                     GUILD_OK);
    ck_assert_uint_eq(recs.n, 1);
    ck_assert(tst_str_eq(recs.v[0].rec.type, "email_claimed"));
    ck_assert_uint_eq(recs.v[0].rec.version, 3);
    tst_recs_release(&recs);
}
END_TEST

START_TEST(test_decide_failure_after_emit_to_writes_to_neither_stream)
{
    registration reg = {.email_stream = "email-ada", .fail_after_emit = true};
    es_result r;
    ck_assert_status(register_append("user-1", &reg, &r), GUILD_RULE_VIOLATION);
    es_result_release(&r);
    ck_assert_uint_eq(tst_log_position(g_st), 0);
    ck_assert_status(es_stream_head(g_st, "user-1", NULL, NULL), GUILD_NOT_FOUND);
    ck_assert_status(es_stream_head(g_st, "email-ada", NULL, NULL), GUILD_NOT_FOUND);
}
END_TEST

typedef struct other_read {
    const char *stream;
    size_t count;
    uint64_t last_version;
} other_read;

static int other_read_fn(void *ctx, const es_record *rec)
{
    other_read *o = ctx;
    o->count++;
    o->last_version = rec->version;
    return 0;
}

static guild_status read_other_decide(void *ctx, es_wctx *w)
{
    other_read *o = ctx;
    o->count = 0;
    guild_status s = es_wctx_read_stream(w, o->stream, 2, other_read_fn, o);
    if (s != GUILD_OK)
        return s;
    es_wctx_emit(w, "looked", 1, NULL, 0);
    return GUILD_OK;
}

START_TEST(test_decide_reads_another_stream_inside_the_transaction)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-2", 0, 4), GUILD_OK);
    other_read o = {.stream = "talent-2"};
    es_append req = {.stream = "talent-1",
                     .expected_version = ES_ANY_VERSION,
                     .decide = read_other_decide,
                     .decide_ctx = &o};
    es_result r;
    ck_assert_status(es_append_wait(g_st, &req, &r), GUILD_OK);
    es_result_release(&r);
    ck_assert_uint_eq(o.count, 3);
    ck_assert_uint_eq(o.last_version, 4);
}
END_TEST

/* Batch hook: counts calls; a decide function notes how many it saw. */
typedef struct hook_count {
    int committed, failed;
} hook_count;

static hook_count g_hooks;

static void count_hook(void *ctx, bool committed)
{
    hook_count *h = ctx;
    if (committed)
        h->committed++;
    else
        h->failed++;
}

static guild_status note_hooks_decide(void *ctx, es_wctx *w)
{
    *(int *)ctx = g_hooks.committed;
    es_wctx_emit(w, "noted", 1, NULL, 0);
    return GUILD_OK;
}

START_TEST(test_batch_hook_runs_after_each_commit_before_the_next_decide)
{
    es_store_close(g_st);
    memset(&g_hooks, 0, sizeof g_hooks);
    es_options opt = {.domain = "talent", .batch_hook = count_hook, .batch_hook_ctx = &g_hooks};
    guild_error err;
    ck_assert_status(es_store_open(g_dir, &opt, &g_st, &err), GUILD_OK);
    for (int k = 0; k < 5; k++) {
        int seen = -1;
        es_append req = {.stream = "talent-1",
                         .expected_version = ES_ANY_VERSION,
                         .decide = note_hooks_decide,
                         .decide_ctx = &seen};
        es_result r;
        ck_assert_status(es_append_wait(g_st, &req, &r), GUILD_OK);
        es_result_release(&r);
        ck_assert_int_eq(seen, k);
    }
    es_store_close(g_st);
    g_st = NULL;
    ck_assert_int_ge(g_hooks.committed, 5);
    ck_assert_int_eq(g_hooks.failed, 0);
}
END_TEST

/* Emits one good event, then one that is not an event (named by ctx: no
 * type, or data that is not a map), and returns GUILD_OK regardless. */
static guild_status bad_emit_decide(void *ctx, es_wctx *w)
{
    guild_status *seen = ctx;
    es_wctx_emit(w, "counted", 1, NULL, 0);
    static const uint8_t array[] = {0x91, 0x01}; /* [1]: msgpack, not a map */
    seen[0] = es_wctx_emit(w, "", 1, NULL, 0);
    seen[1] = es_wctx_emit_to(w, "talent-other", "counted", 1, array, sizeof array);
    return GUILD_OK;
}

START_TEST(test_an_invalid_emit_fails_the_append_whatever_decide_returns)
{
    guild_status seen[2] = {GUILD_OK, GUILD_OK};
    es_append req = {.stream = "talent-1",
                     .expected_version = ES_ANY_VERSION,
                     .decide = bad_emit_decide,
                     .decide_ctx = seen};
    es_result r;
    ck_assert_status(es_append_wait(g_st, &req, &r), GUILD_INTERNAL);
    ck_assert_ptr_nonnull(strstr(r.error.message, "invalid event"));
    es_result_release(&r);
    ck_assert_status(seen[0], GUILD_INTERNAL);
    ck_assert_status(seen[1], GUILD_INTERNAL);
    uint64_t head = 0;
    ck_assert_status(es_log_head(g_st, &head, NULL), GUILD_OK);
    ck_assert_uint_eq(head, 0); /* nothing written, not even the good event */
}
END_TEST

/* ---- snapshots ------------------------------------------------------------ */

typedef struct snap_probe {
    size_t emit;
    uint64_t version_delta; /* the snapshot's version: the head + this */
    guild_status fail;
    /* what it saw */
    guild_status got;
    uint64_t seen_version;
    char seen[32];
} snap_probe;

/* Emits `emit` events, asks for a snapshot "v<version>" at the head +
 * version_delta, and notes the snapshot it finds first. */
static guild_status snap_decide(void *ctx, es_wctx *w)
{
    snap_probe *p = ctx;
    void *bytes = NULL;
    size_t len = 0;
    p->seen[0] = '\0';
    p->got = es_wctx_snapshot_get(w, es_wctx_stream(w), &p->seen_version, &bytes, &len);
    if (p->got == GUILD_OK)
        snprintf(p->seen, sizeof p->seen, "%.*s", (int)len, (const char *)bytes);
    free(bytes);
    for (size_t k = 0; k < p->emit; k++)
        es_wctx_emit(w, "counted", 1, NULL, 0);
    char state[32];
    uint64_t v = es_wctx_version(w) + p->version_delta;
    snprintf(state, sizeof state, "v%llu", (unsigned long long)v);
    es_wctx_snapshot(w, v, state, strlen(state));
    return p->fail != GUILD_OK ? es_wctx_fail(w, p->fail, NULL, "refused") : GUILD_OK;
}

static void snap_append(snap_probe *p, guild_status want)
{
    es_append req = {.stream = "talent-s",
                     .expected_version = ES_ANY_VERSION,
                     .decide = snap_decide,
                     .decide_ctx = p};
    es_result r;
    ck_assert_status(es_append_wait(g_st, &req, &r), want);
    es_result_release(&r);
}

static void assert_snapshot(uint64_t version, const char *state)
{
    uint64_t v = 0;
    void *bytes = NULL;
    size_t len = 0;
    ck_assert_status(es_snapshot_get(g_st, "talent-s", &v, &bytes, &len), GUILD_OK);
    ck_assert_uint_eq(v, version);
    ck_assert_uint_eq(len, strlen(state));
    ck_assert_int_eq(memcmp(bytes, state, len), 0);
    free(bytes);
}

/* A snapshot asked for by decide is stored in the append's commit when its
 * version is the stream's new head, and not when the append writes nothing
 * or names another version; the next decide sees it. */
START_TEST(test_decide_snapshot_goes_with_its_events)
{
    snap_probe p = {.emit = 3, .version_delta = 3};
    snap_append(&p, GUILD_OK);
    ck_assert_status(p.got, GUILD_NOT_FOUND);
    assert_snapshot(3, "v3");

    snap_probe wrong = {.emit = 2, .version_delta = 1}; /* not the new head (5) */
    snap_append(&wrong, GUILD_OK);
    ck_assert_status(wrong.got, GUILD_OK);
    ck_assert_uint_eq(wrong.seen_version, 3);
    ck_assert_str_eq(wrong.seen, "v3");
    assert_snapshot(3, "v3");

    snap_probe refused = {.emit = 1, .version_delta = 1, .fail = GUILD_RULE_VIOLATION};
    snap_append(&refused, GUILD_RULE_VIOLATION);
    snap_probe nothing = {.emit = 0, .version_delta = 0};
    snap_append(&nothing, GUILD_OK);
    assert_snapshot(3, "v3");

    snap_probe next = {.emit = 1, .version_delta = 1};
    snap_append(&next, GUILD_OK);
    assert_snapshot(6, "v6");
    store_reopen(); /* durable with the events */
    assert_snapshot(6, "v6");
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

static Suite *decide_suite(void)
{
    Suite *s = suite_create("eventstore/decide");

    TCase *tc = tcase("decide");
    tcase_add_test(tc, test_decide_sees_head_version_and_stream);
    tcase_add_test(tc, test_decide_snapshot_goes_with_its_events);
    tcase_add_test(tc, test_an_invalid_emit_fails_the_append_whatever_decide_returns);
    tcase_add_test(tc, test_decide_on_new_stream_sees_version_zero);
    tcase_add_test(tc, test_decide_reads_its_stream_inside_the_transaction);
    tcase_add_test(tc, test_decide_head_of_missing_stream_is_zero);
    tcase_add_test(tc, test_decide_time_is_the_events_time);
    tcase_add_test(tc, test_decide_failure_writes_nothing_and_carries_its_detail);
    tcase_add_test(tc, test_decide_failure_on_new_stream_does_not_create_it);
    tcase_add_test(tc, test_decide_is_not_called_when_expected_version_conflicts);
    tcase_add_test(tc, test_decide_emitting_nothing_writes_nothing);
    tcase_add_test(tc, test_decide_reply_comes_back_with_the_result_and_every_duplicate);
    tcase_add_test(tc, test_decide_emitting_nothing_still_records_its_command);
    tcase_add_test(tc, test_decide_emit_to_appends_to_another_stream_atomically);
    tcase_add_test(tc, test_decide_emit_to_existing_stream_takes_its_next_version);
    tcase_add_test(tc, test_decide_failure_after_emit_to_writes_to_neither_stream);
    tcase_add_test(tc, test_decide_reads_another_stream_inside_the_transaction);
    tcase_add_test(tc, test_batch_hook_runs_after_each_commit_before_the_next_decide);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tst_run_suite(decide_suite());
}
