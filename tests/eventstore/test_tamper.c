/*
 * test_tamper.c — es_verify finds the first record an attacker (or a bad
 * disk) changed.
 *
 * Each case builds a small store, closes it, copies its LMDB environment to a
 * second directory (a compacting mdb_env_copy2, so each live record's bytes
 * appear once in the copy's data.mdb), damages the copy, and opens the copy
 * read-only as an auditor would.
 *
 * Sections: building and copying; clean stores; damaged stores.
 */
#include "eventstore/es.h"

#include "tests/support/check_util.h"
#include "tests/support/es_util.h"
#include "tests/support/mpmap.h"
#include "tests/support/tmpdir.h"

#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MARKER "TAMPER-MARKER-6c1f0e2a9b"
#define EVENTS 12
#define TARGET 6 /* the position whose record is damaged */

static char *g_dir;  /* the original store */
static char *g_copy; /* the copy that gets damaged */
static char g_target_stream[ES_STREAM_MAX + 1];
static uint8_t g_target_hash[ES_HASH_LEN];

static void tamper_setup(void)
{
    g_dir = tst_dir_new("tamper-orig");
    g_copy = tst_dir_new("tamper-copy");
}

static void tamper_teardown(void)
{
    tst_dir_remove(g_dir);
    tst_dir_remove(g_copy);
    free(g_dir);
    free(g_copy);
}

/* ---- building and copying ------------------------------------------------- */

/* Appends EVENTS events over three streams; the one at TARGET carries MARKER
 * in its data. Remembers its stream and hash. */
static void build_store(void)
{
    es_store *st = NULL;
    ck_assert_status(tst_store_open(g_dir, "audit", 0, &st), GUILD_OK);
    for (uint64_t pos = 1; pos <= EVENTS; pos++) {
        char stream[32];
        snprintf(stream, sizeof stream, "audit-%llu", (unsigned long long)(pos % 3));
        tst_map m;
        tst_map_init(&m, 2);
        tst_map_int(&m, "pos", (int64_t)pos);
        tst_map_str(&m, "note", pos == TARGET ? MARKER : "ordinary");
        es_event_in ev = {
            .type = "audited", .schema = 1, .data = tst_map_data(&m), .data_len = tst_map_len(&m)};
        es_append req = {
            .stream = stream, .expected_version = ES_ANY_VERSION, .events = &ev, .n_events = 1};
        es_result r;
        ck_assert_status(es_append_wait(st, &req, &r), GUILD_OK);
        ck_assert_uint_eq(r.first_position, pos);
        if (pos == TARGET)
            snprintf(g_target_stream, sizeof g_target_stream, "%s", stream);
        es_result_release(&r);
        tst_map_release(&m);
    }
    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(es_read_log(st, TARGET, 1, tst_recs_collect, &recs, NULL), GUILD_OK);
    ck_assert_uint_eq(recs.n, 1);
    memcpy(g_target_hash, recs.v[0].rec.hash, ES_HASH_LEN);
    tst_recs_release(&recs);
    es_store_close(st);
}

static void lmdb_ok(int rc, const char *what)
{
    ck_assert_msg(rc == MDB_SUCCESS, "%s: %s", what, mdb_strerror(rc));
}

/* Copies the closed store in g_dir to g_copy, leaving out free pages. */
static void copy_store(void)
{
    MDB_env *env = NULL;
    lmdb_ok(mdb_env_create(&env), "mdb_env_create");
    lmdb_ok(mdb_env_set_maxdbs(env, 32), "mdb_env_set_maxdbs");
    lmdb_ok(mdb_env_open(env, g_dir, MDB_RDONLY, 0644), "mdb_env_open");
    lmdb_ok(mdb_env_copy2(env, g_copy, MDB_CP_COMPACT), "mdb_env_copy2");
    mdb_env_close(env);
}

/* Flips one bit at `offset` within every occurrence of `pat` in the copy's
 * data.mdb; returns how many occurrences there were. */
static size_t flip_in_copy(const void *pat, size_t pat_len, size_t offset)
{
    char path[600];
    snprintf(path, sizeof path, "%s/data.mdb", g_copy);
    size_t len = 0;
    unsigned char *data = tst_file_read(path, &len);
    ck_assert_ptr_nonnull(data);
    size_t found = 0;
    for (size_t i = 0; i + pat_len <= len; i++) {
        if (memcmp(data + i, pat, pat_len) == 0) {
            data[i + offset] ^= 0x01;
            found++;
            i += pat_len - 1;
        }
    }
    ck_assert_int_eq(tst_file_write(path, data, len), 0);
    free(data);
    return found;
}

static es_verify_report verify_dir(const char *dir)
{
    es_store *st = NULL;
    ck_assert_status(tst_store_open_ro(dir, &st), GUILD_OK);
    es_verify_report rep;
    memset(&rep, 0, sizeof rep);
    ck_assert_status(es_verify(st, &rep, NULL, NULL), GUILD_OK);
    es_store_close(st);
    return rep;
}

/* ---- clean stores --------------------------------------------------------- */

START_TEST(test_clean_store_verifies_intact)
{
    build_store();
    es_store *st = NULL;
    ck_assert_status(tst_store_open(g_dir, "audit", 0, &st), GUILD_OK);
    es_verify_report rep;
    ck_assert_status(es_verify(st, &rep, NULL, NULL), GUILD_OK);
    es_store_close(st);
    ck_assert_msg(rep.intact, "clean store broken at %llu: %s",
                  (unsigned long long)rep.break_position, rep.what);
    ck_assert_uint_eq(rep.checked, EVENTS);
    ck_assert_uint_eq(rep.last_position, EVENTS);
    ck_assert_uint_eq(rep.break_position, 0);
}
END_TEST

START_TEST(test_empty_store_verifies_intact)
{
    es_store *st = NULL;
    ck_assert_status(tst_store_open(g_dir, "audit", 0, &st), GUILD_OK);
    es_verify_report rep;
    ck_assert_status(es_verify(st, &rep, NULL, NULL), GUILD_OK);
    es_store_close(st);
    ck_assert(rep.intact);
    ck_assert_uint_eq(rep.checked, 0);
    ck_assert_uint_eq(rep.last_position, 0);
}
END_TEST

START_TEST(test_untouched_copy_verifies_intact)
{
    build_store();
    copy_store();
    es_verify_report rep = verify_dir(g_copy);
    ck_assert_msg(rep.intact, "copy broken at %llu: %s", (unsigned long long)rep.break_position,
                  rep.what);
    ck_assert_uint_eq(rep.checked, EVENTS);
}
END_TEST

/* ---- damaged stores ------------------------------------------------------- */

START_TEST(test_flipped_data_byte_breaks_the_chain_at_its_position)
{
    build_store();
    copy_store();
    ck_assert_uint_ge(flip_in_copy(MARKER, strlen(MARKER), 10), 1);
    es_verify_report rep = verify_dir(g_copy);
    ck_assert(!rep.intact);
    ck_assert_uint_eq(rep.break_position, TARGET);
    ck_assert_str_eq(rep.stream, g_target_stream);
    ck_assert_msg(rep.what[0] != '\0', "no explanation of the break");
    /* The original is untouched. */
    ck_assert(verify_dir(g_dir).intact);
}
END_TEST

START_TEST(test_reader_sees_a_bad_hash_on_the_damaged_record_only)
{
    build_store();
    copy_store();
    ck_assert_uint_ge(flip_in_copy(MARKER, strlen(MARKER), 3), 1);
    es_store *st = NULL;
    ck_assert_status(tst_store_open_ro(g_copy, &st), GUILD_OK);
    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_log(st, &recs), GUILD_OK);
    ck_assert_uint_eq(recs.n, EVENTS);
    for (size_t i = 0; i < recs.n; i++) {
        bool ok = es_record_hash_ok(&recs.v[i].rec);
        ck_assert_msg(ok == (i + 1 != TARGET), "position %zu: hash_ok = %d", i + 1, ok);
    }
    tst_recs_release(&recs);
    es_store_close(st);
}
END_TEST

START_TEST(test_flipped_stored_hash_breaks_the_chain_at_its_position)
{
    build_store();
    copy_store();
    /* The record's own hash entry: key "hash" (fixstr 4), bin 8 of 32 bytes,
     * then the hash, as record.h lays it out. The same 32 bytes also appear
     * as the next record's prev, which this pattern does not match. */
    uint8_t pat[7 + ES_HASH_LEN] = {0xa4, 'h', 'a', 's', 'h', 0xc4, ES_HASH_LEN};
    memcpy(pat + 7, g_target_hash, ES_HASH_LEN);
    ck_assert_uint_ge(flip_in_copy(pat, sizeof pat, sizeof pat - 1), 1);
    es_verify_report rep = verify_dir(g_copy);
    ck_assert(!rep.intact);
    ck_assert_uint_eq(rep.break_position, TARGET);
}
END_TEST

/* Opens the copy with LMDB itself, for edits an attacker could make. */
static MDB_txn *copy_edit_begin(MDB_env **env)
{
    MDB_txn *txn = NULL;
    lmdb_ok(mdb_env_create(env), "mdb_env_create");
    lmdb_ok(mdb_env_set_maxdbs(*env, 32), "mdb_env_set_maxdbs");
    lmdb_ok(mdb_env_open(*env, g_copy, 0, 0644), "mdb_env_open");
    lmdb_ok(mdb_txn_begin(*env, NULL, 0, &txn), "mdb_txn_begin");
    return txn;
}

static void copy_edit_commit(MDB_env *env, MDB_txn *txn)
{
    lmdb_ok(mdb_txn_commit(txn), "mdb_txn_commit");
    mdb_env_close(env);
}

static void u64_be(uint64_t v, uint8_t out[8])
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(v >> (56 - 8 * i));
}

/* Deletes the log record at `position` in the copy. */
static void delete_from_copy_log(uint64_t position)
{
    MDB_env *env = NULL;
    MDB_txn *txn = copy_edit_begin(&env);
    MDB_dbi dbi;
    lmdb_ok(mdb_dbi_open(txn, "log", 0, &dbi), "mdb_dbi_open log");
    uint8_t key[8];
    u64_be(position, key);
    MDB_val k = {.mv_size = sizeof key, .mv_data = key};
    lmdb_ok(mdb_del(txn, dbi, &k, NULL), "mdb_del");
    copy_edit_commit(env, txn);
}

START_TEST(test_deleted_record_breaks_the_chain_at_its_position)
{
    build_store();
    copy_store();
    delete_from_copy_log(TARGET);
    es_verify_report rep = verify_dir(g_copy);
    ck_assert(!rep.intact);
    ck_assert_uint_eq(rep.break_position, TARGET);
}
END_TEST

START_TEST(test_deleted_last_record_is_reported)
{
    build_store();
    copy_store();
    delete_from_copy_log(EVENTS);
    es_verify_report rep = verify_dir(g_copy);
    ck_assert_msg(!rep.intact, "a log cut short by one record verified intact");
    ck_assert_uint_eq(rep.break_position, EVENTS);
}
END_TEST

START_TEST(test_altered_stream_head_is_reported)
{
    build_store();
    copy_store();
    MDB_env *env = NULL;
    MDB_txn *txn = copy_edit_begin(&env);
    MDB_dbi dbi;
    lmdb_ok(mdb_dbi_open(txn, "heads", 0, &dbi), "mdb_dbi_open heads");
    MDB_val k = {.mv_size = strlen(g_target_stream), .mv_data = g_target_stream}, v;
    lmdb_ok(mdb_get(txn, dbi, &k, &v), "mdb_get head");
    ck_assert_uint_ge(v.mv_size, 8);
    uint8_t *value = malloc(v.mv_size);
    ck_assert_ptr_nonnull(value);
    memcpy(value, v.mv_data, v.mv_size);
    value[7] ^= 0x04; /* the version, big-endian */
    MDB_val nv = {.mv_size = v.mv_size, .mv_data = value};
    lmdb_ok(mdb_put(txn, dbi, &k, &nv, 0), "mdb_put head");
    copy_edit_commit(env, txn);
    free(value);

    es_verify_report rep = verify_dir(g_copy);
    ck_assert_msg(!rep.intact, "a head that disagrees with the log verified intact");
}
END_TEST

START_TEST(test_missing_stream_index_entry_is_reported)
{
    build_store();
    copy_store();
    MDB_env *env = NULL;
    MDB_txn *txn = copy_edit_begin(&env);
    MDB_dbi dbi;
    lmdb_ok(mdb_dbi_open(txn, "streams", 0, &dbi), "mdb_dbi_open streams");
    uint8_t key[ES_STREAM_MAX + 9];
    size_t n = strlen(g_target_stream);
    memcpy(key, g_target_stream, n);
    key[n] = 0;
    u64_be(1, key + n + 1);
    MDB_val k = {.mv_size = n + 9, .mv_data = key};
    lmdb_ok(mdb_del(txn, dbi, &k, NULL), "mdb_del streams entry");
    copy_edit_commit(env, txn);

    es_verify_report rep = verify_dir(g_copy);
    ck_assert_msg(!rep.intact, "a stream missing from the index verified intact");
}
END_TEST

/* Rewrites the value of the streams index entry (stream, version). */
static void put_stream_index_entry(const char *stream, uint64_t version, uint64_t position)
{
    MDB_env *env = NULL;
    MDB_txn *txn = copy_edit_begin(&env);
    MDB_dbi dbi;
    lmdb_ok(mdb_dbi_open(txn, "streams", 0, &dbi), "mdb_dbi_open streams");
    uint8_t key[ES_STREAM_MAX + 9], value[8];
    size_t n = strlen(stream);
    memcpy(key, stream, n);
    key[n] = 0;
    u64_be(version, key + n + 1);
    u64_be(position, value);
    MDB_val k = {.mv_size = n + 9, .mv_data = key}, v = {.mv_size = sizeof value, .mv_data = value};
    lmdb_ok(mdb_put(txn, dbi, &k, &v, 0), "mdb_put streams entry");
    copy_edit_commit(env, txn);
}

START_TEST(test_redirected_stream_index_entry_is_reported_where_the_log_loses_it)
{
    build_store();
    copy_store();
    /* Streams take turns, position p in audit-<p % 3>: audit-1 holds 1, 4,
     * 7, ... as versions 1, 2, 3. Version 2 now claims position 7. */
    put_stream_index_entry("audit-1", 2, 7);
    es_verify_report rep = verify_dir(g_copy);
    ck_assert_msg(!rep.intact, "a redirected index entry verified intact");
    ck_assert_uint_eq(rep.break_position, 4);
    ck_assert_str_eq(rep.stream, "audit-1");
    ck_assert_msg(strstr(rep.what, "version 2") != NULL, "what: %s", rep.what);
    ck_assert_uint_eq(rep.checked, 3); /* what checks out: the events before the break */
}
END_TEST

START_TEST(test_index_entry_past_the_log_is_reported)
{
    build_store();
    copy_store();
    put_stream_index_entry("audit-1", 2, EVENTS + 5);
    es_verify_report rep = verify_dir(g_copy);
    ck_assert_msg(!rep.intact, "an index entry past the log verified intact");
    ck_assert_uint_eq(rep.break_position, 4); /* where version 2 really is */
}
END_TEST

START_TEST(test_stream_head_with_a_wrong_hash_is_reported_at_its_position)
{
    build_store();
    copy_store();
    MDB_env *env = NULL;
    MDB_txn *txn = copy_edit_begin(&env);
    MDB_dbi dbi;
    lmdb_ok(mdb_dbi_open(txn, "heads", 0, &dbi), "mdb_dbi_open heads");
    char head_key[] = "audit-0";
    MDB_val k = {.mv_size = strlen(head_key), .mv_data = head_key}, v;
    lmdb_ok(mdb_get(txn, dbi, &k, &v), "mdb_get head");
    ck_assert_uint_eq(v.mv_size, 8 + ES_HASH_LEN);
    uint8_t value[8 + ES_HASH_LEN];
    memcpy(value, v.mv_data, sizeof value);
    value[8 + 5] ^= 0x20; /* a byte of the hash, the version untouched */
    MDB_val nv = {.mv_size = sizeof value, .mv_data = value};
    lmdb_ok(mdb_put(txn, dbi, &k, &nv, 0), "mdb_put head");
    copy_edit_commit(env, txn);

    es_verify_report rep = verify_dir(g_copy);
    ck_assert_msg(!rep.intact, "a head with a wrong hash verified intact");
    /* audit-0 holds the multiples of 3; its last event is the last of them. */
    ck_assert_uint_eq(rep.break_position, EVENTS - EVENTS % 3);
    ck_assert_str_eq(rep.stream, "audit-0");
}
END_TEST

static Suite *tamper_suite(void)
{
    Suite *s = suite_create("eventstore/tamper");
    TCase *tc = tcase_create("clean");
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_add_checked_fixture(tc, tamper_setup, tamper_teardown);
    tcase_add_test(tc, test_clean_store_verifies_intact);
    tcase_add_test(tc, test_empty_store_verifies_intact);
    tcase_add_test(tc, test_untouched_copy_verifies_intact);
    suite_add_tcase(s, tc);

    tc = tcase_create("damaged");
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_add_checked_fixture(tc, tamper_setup, tamper_teardown);
    tcase_add_test(tc, test_flipped_data_byte_breaks_the_chain_at_its_position);
    tcase_add_test(tc, test_reader_sees_a_bad_hash_on_the_damaged_record_only);
    tcase_add_test(tc, test_flipped_stored_hash_breaks_the_chain_at_its_position);
    tcase_add_test(tc, test_deleted_record_breaks_the_chain_at_its_position);
    tcase_add_test(tc, test_deleted_last_record_is_reported);
    tcase_add_test(tc, test_altered_stream_head_is_reported);
    tcase_add_test(tc, test_missing_stream_index_entry_is_reported);
    tcase_add_test(tc, test_redirected_stream_index_entry_is_reported_where_the_log_loses_it);
    tcase_add_test(tc, test_index_entry_past_the_log_is_reported);
    tcase_add_test(tc, test_stream_head_with_a_wrong_hash_is_reported_at_its_position);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tst_run_suite(tamper_suite());
}
