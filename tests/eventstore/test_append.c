/*
 * test_append.c — appends of the event store, one thread at a time: expected
 * versions, atomicity, idempotency, invalid arguments, and the records they
 * write.
 *
 * Sections: expected versions; atomicity of multi-event appends; idempotency
 * by command id; invalid arguments; records as stored.
 */
#include "eventstore/es.h"

#include "common/clock.h"
#include "common/uuid.h"
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
    g_dir = tst_dir_new("append");
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

/* ---- expected versions ---------------------------------------------------- */

START_TEST(test_expected_zero_creates_a_new_stream)
{
    es_result r;
    ck_assert_status(tst_append(g_st, "talent-1", 0, NULL, 1, &r), GUILD_OK);
    ck_assert_str_eq(r.stream, "talent-1");
    ck_assert_uint_eq(r.version, 1);
    ck_assert_uint_eq(r.first_position, 1);
    ck_assert_uint_eq(r.last_position, 1);
    ck_assert_uint_eq(r.n_events, 1);
    ck_assert(!r.duplicate);
    es_result_release(&r);
    ck_assert_uint_eq(tst_stream_version(g_st, "talent-1"), 1);
}
END_TEST

START_TEST(test_expected_zero_on_existing_stream_conflicts_naming_actual_version)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 2), GUILD_OK);
    es_result r;
    ck_assert_status(tst_append(g_st, "talent-1", 0, NULL, 1, &r), GUILD_CONFLICT);
    ck_assert_status(r.status, GUILD_CONFLICT);
    ck_assert_uint_eq(r.version, 2);
    ck_assert_uint_eq(r.first_position, 0);
    ck_assert_uint_eq(r.n_events, 0);
    es_result_release(&r);
    ck_assert_uint_eq(tst_stream_version(g_st, "talent-1"), 2);
    ck_assert_uint_eq(tst_log_position(g_st), 2);
}
END_TEST

START_TEST(test_expected_version_equal_to_head_appends)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 2), GUILD_OK);
    es_result r;
    ck_assert_status(tst_append(g_st, "talent-1", 2, NULL, 1, &r), GUILD_OK);
    ck_assert_uint_eq(r.version, 3);
    ck_assert_uint_eq(r.first_position, 3);
    es_result_release(&r);
}
END_TEST

START_TEST(test_expected_version_behind_head_conflicts_naming_actual_version)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 3), GUILD_OK);
    es_result r;
    ck_assert_status(tst_append(g_st, "talent-1", 1, NULL, 1, &r), GUILD_CONFLICT);
    ck_assert_uint_eq(r.version, 3);
    es_result_release(&r);
    ck_assert_uint_eq(tst_stream_version(g_st, "talent-1"), 3);
    ck_assert_uint_eq(tst_log_position(g_st), 3);
}
END_TEST

START_TEST(test_expected_version_ahead_of_head_conflicts)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 1), GUILD_OK);
    es_result r;
    ck_assert_status(tst_append(g_st, "talent-1", 5, NULL, 1, &r), GUILD_CONFLICT);
    ck_assert_uint_eq(r.version, 1);
    es_result_release(&r);
}
END_TEST

START_TEST(test_expected_version_on_missing_stream_conflicts_with_zero)
{
    es_result r;
    ck_assert_status(tst_append(g_st, "talent-9", 4, NULL, 1, &r), GUILD_CONFLICT);
    ck_assert_uint_eq(r.version, 0);
    es_result_release(&r);
    ck_assert_status(es_stream_head(g_st, "talent-9", NULL, NULL), GUILD_NOT_FOUND);
    ck_assert_uint_eq(tst_log_position(g_st), 0);
}
END_TEST

START_TEST(test_any_version_appends_to_new_and_existing_streams)
{
    es_result r;
    ck_assert_status(tst_append(g_st, "talent-1", ES_ANY_VERSION, NULL, 1, &r), GUILD_OK);
    ck_assert_uint_eq(r.version, 1);
    es_result_release(&r);
    ck_assert_status(tst_append(g_st, "talent-1", ES_ANY_VERSION, NULL, 2, &r), GUILD_OK);
    ck_assert_uint_eq(r.version, 3);
    ck_assert_uint_eq(r.first_position, 2);
    ck_assert_uint_eq(r.last_position, 3);
    es_result_release(&r);
}
END_TEST

/* ---- atomicity ------------------------------------------------------------ */

START_TEST(test_multi_event_append_gets_consecutive_versions_and_positions)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-other", 0, 1), GUILD_OK);
    es_result r;
    ck_assert_status(tst_append(g_st, "talent-1", 0, NULL, 3, &r), GUILD_OK);
    ck_assert_uint_eq(r.version, 3);
    ck_assert_uint_eq(r.first_position, 2);
    ck_assert_uint_eq(r.last_position, 4);
    ck_assert_uint_eq(r.n_events, 3);
    ck_assert_str_ne(r.event_ids[0], r.event_ids[1]);
    ck_assert_str_ne(r.event_ids[1], r.event_ids[2]);
    ck_assert_str_ne(r.event_ids[0], r.event_ids[2]);

    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_stream(g_st, "talent-1", &recs), GUILD_OK);
    ck_assert_uint_eq(recs.n, 3);
    for (size_t i = 0; i < 3; i++) {
        ck_assert_uint_eq(recs.v[i].rec.version, i + 1);
        ck_assert_uint_eq(recs.v[i].rec.position, i + 2);
        ck_assert(tst_str_eq(recs.v[i].rec.id, r.event_ids[i]));
        int64_t k = -1;
        ck_assert(tst_map_get_int(recs.v[i].rec.data, recs.v[i].rec.data_len, "i", &k));
        ck_assert_int_eq(k, (int64_t)i);
    }
    tst_recs_release(&recs);
    es_result_release(&r);
}
END_TEST

START_TEST(test_conflicting_multi_event_append_writes_none_of_its_events)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 1), GUILD_OK);
    es_result r;
    ck_assert_status(tst_append(g_st, "talent-1", 0, NULL, 3, &r), GUILD_CONFLICT);
    ck_assert_uint_eq(r.n_events, 0);
    es_result_release(&r);

    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_log(g_st, &recs), GUILD_OK);
    ck_assert_uint_eq(recs.n, 1);
    tst_recs_release(&recs);
    ck_assert_uint_eq(tst_stream_version(g_st, "talent-1"), 1);
}
END_TEST

/* ---- idempotency ---------------------------------------------------------- */

START_TEST(test_repeated_command_id_returns_first_result_and_writes_nothing)
{
    es_result first, again;
    ck_assert_status(tst_append(g_st, "talent-1", 0, "cmd-1", 3, &first), GUILD_OK);
    ck_assert(!first.duplicate);
    uint64_t head = tst_log_position(g_st);

    ck_assert_status(tst_append(g_st, "talent-1", 0, "cmd-1", 3, &again), GUILD_OK);
    ck_assert(again.duplicate);
    tst_assert_same_result(&first, &again);
    ck_assert_uint_eq(tst_log_position(g_st), head);
    ck_assert_uint_eq(tst_stream_version(g_st, "talent-1"), 3);
    es_result_release(&first);
    es_result_release(&again);
}
END_TEST

START_TEST(test_repeated_command_id_on_another_stream_returns_first_result)
{
    es_result first, again;
    ck_assert_status(tst_append(g_st, "talent-1", ES_ANY_VERSION, "cmd-1", 1, &first), GUILD_OK);
    ck_assert_status(tst_append(g_st, "talent-2", ES_ANY_VERSION, "cmd-1", 2, &again), GUILD_OK);
    ck_assert(again.duplicate);
    tst_assert_same_result(&first, &again);
    ck_assert_str_eq(again.stream, "talent-1");
    ck_assert_status(es_stream_head(g_st, "talent-2", NULL, NULL), GUILD_NOT_FOUND);
    ck_assert_uint_eq(tst_log_position(g_st), 1);
    es_result_release(&first);
    es_result_release(&again);
}
END_TEST

START_TEST(test_command_id_is_remembered_across_reopen)
{
    es_result first, again;
    ck_assert_status(tst_append(g_st, "talent-1", 0, "cmd-1", 2, &first), GUILD_OK);
    store_reopen();
    ck_assert_status(tst_append(g_st, "talent-1", 0, "cmd-1", 2, &again), GUILD_OK);
    ck_assert(again.duplicate);
    tst_assert_same_result(&first, &again);
    ck_assert_uint_eq(tst_log_position(g_st), 2);
    es_result_release(&first);
    es_result_release(&again);
}
END_TEST

START_TEST(test_command_lookup_returns_stored_result)
{
    es_result first, found;
    ck_assert_status(tst_append(g_st, "talent-1", 0, "cmd-7", 2, &first), GUILD_OK);
    ck_assert_status(es_command_lookup(g_st, "cmd-7", &found), GUILD_OK);
    ck_assert(found.duplicate);
    tst_assert_same_result(&first, &found);
    es_result_release(&first);
    es_result_release(&found);
}
END_TEST

START_TEST(test_command_lookup_of_unknown_id_is_not_found)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 1), GUILD_OK);
    es_result found;
    memset(&found, 0, sizeof found);
    ck_assert_status(es_command_lookup(g_st, "cmd-unknown", &found), GUILD_NOT_FOUND);
    es_result_release(&found);
}
END_TEST

START_TEST(test_appends_without_command_id_are_never_duplicates)
{
    es_result a, b;
    ck_assert_status(tst_append(g_st, "talent-1", ES_ANY_VERSION, NULL, 1, &a), GUILD_OK);
    ck_assert_status(tst_append(g_st, "talent-1", ES_ANY_VERSION, NULL, 1, &b), GUILD_OK);
    ck_assert(!a.duplicate);
    ck_assert(!b.duplicate);
    ck_assert_uint_eq(b.version, 2);
    es_result_release(&a);
    es_result_release(&b);
}
END_TEST

/* ---- invalid arguments ---------------------------------------------------- */

static void fill(char *buf, size_t n, char c)
{
    memset(buf, c, n);
    buf[n] = '\0';
}

START_TEST(test_empty_stream_is_an_invalid_request)
{
    es_result r;
    ck_assert_status(tst_append(g_st, "", ES_ANY_VERSION, NULL, 1, &r), GUILD_INVALID_REQUEST);
    ck_assert_status(r.status, GUILD_INVALID_REQUEST);
    es_result_release(&r);
    ck_assert_uint_eq(tst_log_position(g_st), 0);
}
END_TEST

START_TEST(test_stream_longer_than_255_bytes_is_an_invalid_request)
{
    char stream[ES_STREAM_MAX + 2];
    fill(stream, ES_STREAM_MAX + 1, 's');
    es_result r;
    ck_assert_status(tst_append(g_st, stream, ES_ANY_VERSION, NULL, 1, &r), GUILD_INVALID_REQUEST);
    es_result_release(&r);
    ck_assert_uint_eq(tst_log_position(g_st), 0);
}
END_TEST

START_TEST(test_stream_of_exactly_255_bytes_is_accepted)
{
    char stream[ES_STREAM_MAX + 1];
    fill(stream, ES_STREAM_MAX, 's');
    es_result r;
    ck_assert_status(tst_append(g_st, stream, 0, NULL, 1, &r), GUILD_OK);
    ck_assert_str_eq(r.stream, stream);
    es_result_release(&r);
    ck_assert_uint_eq(tst_stream_version(g_st, stream), 1);
}
END_TEST

START_TEST(test_command_id_longer_than_128_bytes_is_an_invalid_request)
{
    char cmd[ES_COMMAND_ID_MAX + 2];
    fill(cmd, ES_COMMAND_ID_MAX + 1, 'c');
    es_result r;
    ck_assert_status(tst_append(g_st, "talent-1", ES_ANY_VERSION, cmd, 1, &r),
                     GUILD_INVALID_REQUEST);
    es_result_release(&r);
    ck_assert_uint_eq(tst_log_position(g_st), 0);
}
END_TEST

START_TEST(test_command_id_of_exactly_128_bytes_is_accepted)
{
    char cmd[ES_COMMAND_ID_MAX + 1];
    fill(cmd, ES_COMMAND_ID_MAX, 'c');
    es_result r, again;
    ck_assert_status(tst_append(g_st, "talent-1", ES_ANY_VERSION, cmd, 1, &r), GUILD_OK);
    ck_assert_status(tst_append(g_st, "talent-1", ES_ANY_VERSION, cmd, 1, &again), GUILD_OK);
    ck_assert(again.duplicate);
    es_result_release(&r);
    es_result_release(&again);
}
END_TEST

START_TEST(test_event_type_longer_than_64_bytes_is_an_invalid_request)
{
    char type[ES_TYPE_MAX + 2];
    fill(type, ES_TYPE_MAX + 1, 't');
    es_event_in ev = {.type = type, .schema = 1};
    es_append req = {
        .stream = "talent-1", .expected_version = ES_ANY_VERSION, .events = &ev, .n_events = 1};
    es_result r;
    ck_assert_status(es_append_wait(g_st, &req, &r), GUILD_INVALID_REQUEST);
    es_result_release(&r);
    ck_assert_uint_eq(tst_log_position(g_st), 0);
}
END_TEST

START_TEST(test_empty_event_type_is_an_invalid_request)
{
    es_event_in ev = {.type = "", .schema = 1};
    es_append req = {
        .stream = "talent-1", .expected_version = ES_ANY_VERSION, .events = &ev, .n_events = 1};
    es_result r;
    ck_assert_status(es_append_wait(g_st, &req, &r), GUILD_INVALID_REQUEST);
    es_result_release(&r);
    ck_assert_uint_eq(tst_log_position(g_st), 0);
}
END_TEST

START_TEST(test_data_that_is_not_one_msgpack_map_is_an_invalid_request)
{
    static const struct {
        const char *bytes;
        size_t len;
    } bad[] = {
        {"\xc1", 1}, /* not msgpack */
        {"\x05", 1}, /* an integer */
        {"\x81\xa1"
         "a",
         2},                 /* a map cut short */
        {"\x80\x80", 2},     /* two maps */
        {"\x92\x01\x02", 3}, /* an array */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        es_event_in ev = {
            .type = "thing_happened", .schema = 1, .data = bad[i].bytes, .data_len = bad[i].len};
        es_append req = {
            .stream = "talent-1", .expected_version = ES_ANY_VERSION, .events = &ev, .n_events = 1};
        es_result r;
        guild_status s = es_append_wait(g_st, &req, &r);
        ck_assert_msg(s == GUILD_INVALID_REQUEST, "case %zu: got %s", i, guild_status_code(s));
        es_result_release(&r);
    }
    ck_assert_uint_eq(tst_log_position(g_st), 0);
}
END_TEST

START_TEST(test_rejected_submit_never_calls_back)
{
    tst_slot slot = {0};
    es_event_in ev = {.type = "thing_happened", .schema = 1};
    es_append req = {
        .stream = "", .expected_version = ES_ANY_VERSION, .events = &ev, .n_events = 1};
    ck_assert_status(es_append_submit(g_st, &req, tst_slot_done, &slot), GUILD_INVALID_REQUEST);
    es_store_close(g_st); /* finishes anything submitted */
    g_st = NULL;
    ck_assert_int_eq(slot.calls, 0);
}
END_TEST

START_TEST(test_open_writable_without_domain_is_an_invalid_request)
{
    char *dir = tst_dir_new("nodomain");
    es_options opt = {.domain = NULL};
    es_store *st = NULL;
    guild_error err;
    ck_assert_status(es_store_open(dir, &opt, &st, &err), GUILD_INVALID_REQUEST);
    ck_assert_ptr_null(st);
    tst_dir_remove(dir);
    free(dir);
}
END_TEST

START_TEST(test_open_of_missing_directory_fails)
{
    es_options opt = {.domain = "talent"};
    es_store *st = NULL;
    guild_error err;
    char path[600];
    snprintf(path, sizeof path, "%s/does/not/exist", g_dir);
    guild_status s = es_store_open(path, &opt, &st, &err);
    ck_assert_msg(s != GUILD_OK, "opened a store in a missing directory");
    ck_assert_ptr_null(st);
}
END_TEST

/* ---- records -------------------------------------------------------------- */

START_TEST(test_record_fields_decode_back)
{
    static const uint8_t blob[] = {0x00, 0x01, 0xfe, 0xff};
    tst_map m;
    tst_map_init(&m, 3);
    tst_map_str(&m, "skill", "c11");
    tst_map_int(&m, "level", 4);
    tst_map_bin(&m, "blob", blob, sizeof blob);
    es_event_in ev = {
        .type = "skill_added", .schema = 3, .data = tst_map_data(&m), .data_len = tst_map_len(&m)};
    es_append req = {.stream = "talent-0001",
                     .expected_version = 0,
                     .prov = {.command_id = "cmd-1",
                              .correlation_id = "corr-1",
                              .causation_id = "cause-1",
                              .actor = "user-7"},
                     .time_ns = INT64_C(1700000000123456789),
                     .events = &ev,
                     .n_events = 1};
    es_result res;
    ck_assert_status(es_append_wait(g_st, &req, &res), GUILD_OK);

    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_stream(g_st, "talent-0001", &recs), GUILD_OK);
    ck_assert(!recs.bad);
    ck_assert_uint_eq(recs.n, 1);
    const es_record *rec = &recs.v[0].rec;
    ck_assert(tst_str_eq(rec->type, "skill_added"));
    ck_assert_uint_eq(rec->schema, 3);
    ck_assert(tst_str_eq(rec->domain, "talent"));
    ck_assert(tst_str_eq(rec->stream, "talent-0001"));
    ck_assert_uint_eq(rec->version, 1);
    ck_assert_uint_eq(rec->position, 1);
    ck_assert_int_eq(rec->time, INT64_C(1700000000123456789));
    ck_assert(tst_str_eq(rec->command_id, "cmd-1"));
    ck_assert(tst_str_eq(rec->correlation_id, "corr-1"));
    ck_assert(tst_str_eq(rec->causation_id, "cause-1"));
    ck_assert(tst_str_eq(rec->actor, "user-7"));
    ck_assert_uint_eq(rec->data_len, tst_map_len(&m));
    ck_assert_mem_eq(rec->data, tst_map_data(&m), rec->data_len);

    char id[ES_ID_LEN + 1];
    tst_str_copy(rec->id, id, sizeof id);
    ck_assert_msg(guild_uuid_valid(rec->id.p, rec->id.n), "id %s is not a uuid", id);
    ck_assert_msg(id[14] == '7', "id %s is not a UUIDv7", id);
    ck_assert_str_eq(id, res.event_ids[0]);
    ck_assert(es_record_hash_ok(rec));

    /* The record decodes the same from its raw bytes. */
    es_record again;
    ck_assert_status(es_record_decode(rec->raw, rec->raw_len, &again), GUILD_OK);
    ck_assert_uint_eq(again.position, 1);
    ck_assert_mem_eq(again.hash, rec->hash, ES_HASH_LEN);

    tst_recs_release(&recs);
    es_result_release(&res);
    tst_map_release(&m);
}
END_TEST

START_TEST(test_missing_provenance_decodes_as_empty)
{
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 1), GUILD_OK);
    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_log(g_st, &recs), GUILD_OK);
    ck_assert_uint_eq(recs.n, 1);
    const es_record *rec = &recs.v[0].rec;
    ck_assert_uint_eq(rec->command_id.n, 0);
    ck_assert_uint_eq(rec->correlation_id.n, 0);
    ck_assert_uint_eq(rec->causation_id.n, 0);
    ck_assert_uint_eq(rec->actor.n, 0);
    tst_recs_release(&recs);
}
END_TEST

START_TEST(test_null_data_is_stored_as_an_empty_map)
{
    es_event_in ev = {.type = "profile_archived", .schema = 1, .data = NULL, .data_len = 0};
    es_append req = {.stream = "talent-1", .expected_version = 0, .events = &ev, .n_events = 1};
    es_result r;
    ck_assert_status(es_append_wait(g_st, &req, &r), GUILD_OK);
    es_result_release(&r);
    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_log(g_st, &recs), GUILD_OK);
    ck_assert_uint_eq(recs.n, 1);
    ck_assert_int_eq(tst_map_entries(recs.v[0].rec.data, recs.v[0].rec.data_len), 0);
    tst_recs_release(&recs);
}
END_TEST

START_TEST(test_event_time_defaults_to_commit_time)
{
    int64_t before = guild_now_ns();
    ck_assert_status(tst_append_quiet(g_st, "talent-1", 0, 2), GUILD_OK);
    int64_t after = guild_now_ns();
    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_log(g_st, &recs), GUILD_OK);
    ck_assert_uint_eq(recs.n, 2);
    for (size_t i = 0; i < 2; i++) {
        ck_assert_int_ge(recs.v[i].rec.time, before);
        ck_assert_int_le(recs.v[i].rec.time, after);
    }
    tst_recs_release(&recs);
}
END_TEST

START_TEST(test_records_chain_each_prev_to_the_previous_hash)
{
    for (int i = 0; i < 6; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "talent-%d", i % 2);
        ck_assert_status(tst_append_quiet(g_st, stream, ES_ANY_VERSION, 1 + (size_t)(i % 3)),
                         GUILD_OK);
    }
    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_log(g_st, &recs), GUILD_OK);
    ck_assert_uint_eq(recs.n, 12);
    uint8_t zeros[ES_HASH_LEN] = {0};
    ck_assert_mem_eq(recs.v[0].rec.prev, zeros, ES_HASH_LEN);
    for (size_t i = 0; i < recs.n; i++) {
        ck_assert_msg(es_record_hash_ok(&recs.v[i].rec), "hash of position %zu", i + 1);
        if (i > 0)
            ck_assert_mem_eq(recs.v[i].rec.prev, recs.v[i - 1].rec.hash, ES_HASH_LEN);
    }
    tst_recs_release(&recs);
}
END_TEST

START_TEST(test_event_ids_sort_in_log_order)
{
    for (int i = 0; i < 5; i++)
        ck_assert_status(tst_append_quiet(g_st, "talent-1", ES_ANY_VERSION, 2), GUILD_OK);
    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_log(g_st, &recs), GUILD_OK);
    ck_assert_uint_eq(recs.n, 10);
    for (size_t i = 1; i < recs.n; i++) {
        char a[ES_ID_LEN + 1], b[ES_ID_LEN + 1];
        tst_str_copy(recs.v[i - 1].rec.id, a, sizeof a);
        tst_str_copy(recs.v[i].rec.id, b, sizeof b);
        ck_assert_msg(strcmp(a, b) < 0, "id %s at %zu does not sort before %s", a, i, b);
    }
    tst_recs_release(&recs);
}
END_TEST

START_TEST(test_events_survive_reopen_and_numbering_continues)
{
    es_result before;
    ck_assert_status(tst_append(g_st, "talent-1", 0, NULL, 3, &before), GUILD_OK);
    ck_assert_status(tst_append_quiet(g_st, "talent-2", 0, 1), GUILD_OK);
    store_reopen();
    ck_assert_str_eq(es_store_domain(g_st), "talent");

    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_stream(g_st, "talent-1", &recs), GUILD_OK);
    ck_assert_uint_eq(recs.n, 3);
    for (size_t i = 0; i < 3; i++)
        ck_assert(tst_str_eq(recs.v[i].rec.id, before.event_ids[i]));
    tst_recs_release(&recs);
    es_result_release(&before);

    es_result r;
    ck_assert_status(tst_append(g_st, "talent-1", 3, NULL, 1, &r), GUILD_OK);
    ck_assert_uint_eq(r.version, 4);
    ck_assert_uint_eq(r.first_position, 5);
    es_result_release(&r);
}
END_TEST

START_TEST(test_store_reports_its_domain)
{
    ck_assert_str_eq(es_store_domain(g_st), "talent");
}
END_TEST

START_TEST(test_garbage_does_not_decode_as_a_record)
{
    static const uint8_t garbage[] = {0xc1, 0x00, 0x13, 0x37};
    es_record rec;
    ck_assert_status(es_record_decode(garbage, sizeof garbage, &rec), GUILD_CORRUPT);
    tst_map m;
    tst_map_init(&m, 1);
    tst_map_str(&m, "id", "not a record");
    ck_assert_status(es_record_decode(tst_map_data(&m), tst_map_len(&m), &rec), GUILD_CORRUPT);
    tst_map_release(&m);
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

static Suite *append_suite(void)
{
    Suite *s = suite_create("eventstore/append");

    TCase *tc = tcase("expected_version");
    tcase_add_test(tc, test_expected_zero_creates_a_new_stream);
    tcase_add_test(tc, test_expected_zero_on_existing_stream_conflicts_naming_actual_version);
    tcase_add_test(tc, test_expected_version_equal_to_head_appends);
    tcase_add_test(tc, test_expected_version_behind_head_conflicts_naming_actual_version);
    tcase_add_test(tc, test_expected_version_ahead_of_head_conflicts);
    tcase_add_test(tc, test_expected_version_on_missing_stream_conflicts_with_zero);
    tcase_add_test(tc, test_any_version_appends_to_new_and_existing_streams);
    suite_add_tcase(s, tc);
    tc = tcase("atomicity");
    tcase_add_test(tc, test_multi_event_append_gets_consecutive_versions_and_positions);
    tcase_add_test(tc, test_conflicting_multi_event_append_writes_none_of_its_events);
    suite_add_tcase(s, tc);
    tc = tcase("idempotency");
    tcase_add_test(tc, test_repeated_command_id_returns_first_result_and_writes_nothing);
    tcase_add_test(tc, test_repeated_command_id_on_another_stream_returns_first_result);
    tcase_add_test(tc, test_command_id_is_remembered_across_reopen);
    tcase_add_test(tc, test_command_lookup_returns_stored_result);
    tcase_add_test(tc, test_command_lookup_of_unknown_id_is_not_found);
    tcase_add_test(tc, test_appends_without_command_id_are_never_duplicates);
    suite_add_tcase(s, tc);
    tc = tcase("invalid_arguments");
    tcase_add_test(tc, test_empty_stream_is_an_invalid_request);
    tcase_add_test(tc, test_stream_longer_than_255_bytes_is_an_invalid_request);
    tcase_add_test(tc, test_stream_of_exactly_255_bytes_is_accepted);
    tcase_add_test(tc, test_command_id_longer_than_128_bytes_is_an_invalid_request);
    tcase_add_test(tc, test_command_id_of_exactly_128_bytes_is_accepted);
    tcase_add_test(tc, test_event_type_longer_than_64_bytes_is_an_invalid_request);
    tcase_add_test(tc, test_empty_event_type_is_an_invalid_request);
    tcase_add_test(tc, test_data_that_is_not_one_msgpack_map_is_an_invalid_request);
    tcase_add_test(tc, test_rejected_submit_never_calls_back);
    tcase_add_test(tc, test_open_writable_without_domain_is_an_invalid_request);
    tcase_add_test(tc, test_open_of_missing_directory_fails);
    suite_add_tcase(s, tc);
    tc = tcase("records");
    tcase_add_test(tc, test_record_fields_decode_back);
    tcase_add_test(tc, test_missing_provenance_decodes_as_empty);
    tcase_add_test(tc, test_null_data_is_stored_as_an_empty_map);
    tcase_add_test(tc, test_event_time_defaults_to_commit_time);
    tcase_add_test(tc, test_records_chain_each_prev_to_the_previous_hash);
    tcase_add_test(tc, test_event_ids_sort_in_log_order);
    tcase_add_test(tc, test_events_survive_reopen_and_numbering_continues);
    tcase_add_test(tc, test_store_reports_its_domain);
    tcase_add_test(tc, test_garbage_does_not_decode_as_a_record);
    suite_add_tcase(s, tc);

    return s;
}

int main(void)
{
    return tst_run_suite(append_suite());
}
