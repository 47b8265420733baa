/*
 * test_file_ahead.c — zeros written past LMDB's last page (file_ahead.h):
 * they are there after a commit, they are written once, and no page that
 * LMDB holds is ever overwritten by them, also when commits run through the
 * zeroed part again and again, and none go past the map; the event store
 * keeps its file ahead and reads back every event it took.
 *
 * Sections: an environment on its own; the event store.
 */
#include "eventstore/es.h"
#include "eventstore/file_ahead.h"

#include "tests/support/check_util.h"
#include "tests/support/es_util.h"
#include "tests/support/tmpdir.h"

#include <fcntl.h>
#include <lmdb.h>
#include <msgpack.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BIG (150u * 1024) /* a value over a tenth of a chunk: commits cross it */

static char *g_dir;

static void dir_setup(void)
{
    g_dir = tst_dir_new("file-ahead");
}

static void dir_teardown(void)
{
    tst_dir_remove(g_dir);
    free(g_dir);
    g_dir = NULL;
}

/* ---- an environment on its own -------------------------------------------- */

static MDB_env *env_open(const char *dir, unsigned flags)
{
    MDB_env *env;
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_mapsize(env, 64u << 20), 0);
    ck_assert_int_eq(mdb_env_open(env, dir, MDB_NOTLS | flags, 0644), 0);
    return env;
}

/* Bytes up to the end of LMDB's last page. */
static uint64_t used_bytes(MDB_env *env)
{
    MDB_envinfo info;
    MDB_stat st;
    ck_assert_int_eq(mdb_env_info(env, &info), 0);
    ck_assert_int_eq(mdb_env_stat(env, &st), 0);
    return ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
}

static uint64_t file_size(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    return (uint64_t)sb.st_size;
}

/* True if every byte of data.mdb from `from` to its end is zero. */
static bool zeros_from(const char *dir, uint64_t from)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    int fd = open(path, O_RDONLY);
    ck_assert_int_ge(fd, 0);
    static unsigned char buf[65536];
    bool zero = true;
    ssize_t n;
    while (zero && (n = pread(fd, buf, sizeof buf, (off_t)from)) > 0) {
        for (ssize_t i = 0; i < n && zero; i++)
            zero = buf[i] == 0;
        from += (uint64_t)n;
    }
    close(fd);
    return zero;
}

static void put_value(MDB_env *env, unsigned key, size_t len)
{
    static unsigned char value[BIG];
    memset(value, (int)(key % 251 + 1), len);
    MDB_txn *txn;
    MDB_dbi dbi;
    ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    MDB_val k = {sizeof key, &key}, v = {len, value};
    ck_assert_int_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
    ck_assert_int_eq(mdb_txn_commit(txn), 0);
}

START_TEST(test_keeping_ahead_writes_zeros_a_chunk_past_the_last_page)
{
    MDB_env *env = env_open(g_dir, 0);
    put_value(env, 1, 100);
    uint64_t before = file_size(g_dir);
    uint64_t used = used_bytes(env);
    ck_assert_uint_le(before, used); /* LMDB by itself writes no further */

    es_file_ahead a = {0};
    ck_assert_int_eq(es_file_ahead_keep(env, &a, "test"), 0);
    ck_assert_uint_eq(file_size(g_dir), used + ES_FILE_AHEAD_CHUNK);
    ck_assert_uint_eq(a.end, used + ES_FILE_AHEAD_CHUNK);
    ck_assert_msg(zeros_from(g_dir, used), "the bytes past the last page are not all zero");

    /* With more than half a chunk still ahead, it writes nothing. */
    put_value(env, 2, 100);
    ck_assert_int_eq(es_file_ahead_keep(env, &a, "test"), 0);
    ck_assert_uint_eq(file_size(g_dir), used + ES_FILE_AHEAD_CHUNK);
    mdb_env_close(env);
}
END_TEST

START_TEST(test_the_zeros_stop_at_the_map)
{
    MDB_env *env;
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_mapsize(env, ES_FILE_AHEAD_CHUNK / 2), 0);
    ck_assert_int_eq(mdb_env_open(env, g_dir, MDB_NOTLS, 0644), 0);
    MDB_envinfo info;
    ck_assert_int_eq(mdb_env_info(env, &info), 0);
    put_value(env, 1, 100);
    es_file_ahead a = {0};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(es_file_ahead_keep(env, &a, "test"), 0);
        ck_assert_uint_eq(file_size(g_dir), info.me_mapsize);
    }
    mdb_env_close(env);
}
END_TEST

START_TEST(test_pages_committed_over_the_zeros_are_never_overwritten)
{
    enum { N = 60 };
    MDB_env *env = env_open(g_dir, 0);
    es_file_ahead a = {0};
    for (unsigned i = 1; i <= N; i++) {
        put_value(env, i, BIG);
        ck_assert_int_eq(es_file_ahead_keep(env, &a, "test"), 0);
        uint64_t used = used_bytes(env);
        ck_assert_uint_ge(file_size(g_dir), used + ES_FILE_AHEAD_CHUNK / 2);
    }
    ck_assert_uint_gt(used_bytes(env), 8u * ES_FILE_AHEAD_CHUNK); /* it went well past */
    mdb_env_close(env);

    env = env_open(g_dir, MDB_RDONLY);
    MDB_txn *txn;
    MDB_dbi dbi;
    ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
    ck_assert_int_eq(mdb_dbi_open(txn, NULL, 0, &dbi), 0);
    for (unsigned i = 1; i <= N; i++) {
        MDB_val k = {sizeof i, &i}, v;
        ck_assert_int_eq(mdb_get(txn, dbi, &k, &v), 0);
        ck_assert_uint_eq(v.mv_size, BIG);
        const unsigned char *p = v.mv_data;
        for (size_t j = 0; j < v.mv_size; j++)
            if (p[j] != (unsigned char)(i % 251 + 1))
                ck_abort_msg("value %u differs at byte %zu: %u", i, j, p[j]);
    }
    mdb_txn_abort(txn);
    mdb_env_close(env);
}
END_TEST

/* ---- the event store ------------------------------------------------------ */

/* {"b": <len bytes of `fill`>} */
static void big_data(msgpack_sbuffer *buf, unsigned char fill, size_t len)
{
    static unsigned char body[BIG];
    memset(body, fill, len);
    msgpack_sbuffer_clear(buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 1);
    msgpack_pack_str(&pk, 1);
    msgpack_pack_str_body(&pk, "b", 1);
    msgpack_pack_bin(&pk, len);
    msgpack_pack_bin_body(&pk, body, len);
}

START_TEST(test_the_store_keeps_its_file_ahead_and_reads_back_every_event)
{
    enum { N = 40 };
    es_store *st;
    ck_assert_status(tst_store_open(g_dir, "talent", 0, &st), GUILD_OK);
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    for (unsigned i = 0; i < N; i++) {
        big_data(&buf, (unsigned char)(i + 1), BIG);
        es_event_in ev = {
            .type = "thing_happened", .schema = 1, .data = buf.data, .data_len = buf.size};
        es_append a = {.stream = "talent-1", .expected_version = i, .events = &ev, .n_events = 1};
        es_result res;
        ck_assert_status(es_append_wait(st, &a, &res), GUILD_OK);
        ck_assert_status(res.status, GUILD_OK);
        es_result_release(&res);
    }
    es_store_close(st);

    /* Past the last page: zeros, and more than the close's index checkpoint took. */
    MDB_env *env;
    ck_assert_int_eq(mdb_env_create(&env), 0);
    ck_assert_int_eq(mdb_env_set_maxdbs(env, 16), 0);
    ck_assert_int_eq(mdb_env_open(env, g_dir, MDB_RDONLY | MDB_NOTLS, 0644), 0);
    uint64_t used = used_bytes(env);
    mdb_env_close(env);
    ck_assert_uint_ge(file_size(g_dir), used + ES_FILE_AHEAD_CHUNK / 4);
    ck_assert(zeros_from(g_dir, used));

    ck_assert_status(tst_store_open(g_dir, "talent", 0, &st), GUILD_OK);
    tst_assert_verifies(st, N);
    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_log(st, &recs), GUILD_OK);
    ck_assert_uint_eq(recs.n, N);
    for (unsigned i = 0; i < N; i++) {
        big_data(&buf, (unsigned char)(i + 1), BIG);
        ck_assert_uint_eq(recs.v[i].rec.data_len, buf.size);
        ck_assert_msg(memcmp(recs.v[i].rec.data, buf.data, buf.size) == 0,
                      "event %u does not read back as written", i + 1);
    }
    tst_recs_release(&recs);
    msgpack_sbuffer_destroy(&buf);
    es_store_close(st);
}
END_TEST

static Suite *file_ahead_suite(void)
{
    Suite *s = suite_create("file_ahead");
    TCase *tc = tcase_create("environment");
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
    tcase_add_test(tc, test_keeping_ahead_writes_zeros_a_chunk_past_the_last_page);
    tcase_add_test(tc, test_the_zeros_stop_at_the_map);
    tcase_add_test(tc, test_pages_committed_over_the_zeros_are_never_overwritten);
    suite_add_tcase(s, tc);

    tc = tcase_create("event_store");
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
    tcase_add_test(tc, test_the_store_keeps_its_file_ahead_and_reads_back_every_event);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tst_run_suite(file_ahead_suite());
}
