/*
 * test_events.c — `guild events`, run as an auditor runs it: the real
 * binary (GUILD_GUILD_BIN) against a data directory this test writes.
 *
 * Each test gets a fresh data dir holding a talent store of EVENTS events
 * (three profiles, each with a skill, a rate and hours), signed by the
 * domain's checkpoint key after position SIGNED_MID and at the end, as the
 * service would. Tamper cases then damage the store with LMDB itself, the
 * way someone with the files could, and check what `verify` says.
 *
 * Sections: the world; running guild; editing the store; verify; export,
 * show, tail and key; replay; suite.
 */
#include "bus/checkpoint.h"
#include "bus/state.h"
#include "domain/registry.h"
#include "common/codec.h"
#include "eventstore/record.h"
#include "projections/models.h"
#include "projections/projector.h"

#include "tests/support/check_util.h"
#include "tests/support/es_util.h"
#include "tests/support/mpmap.h"
#include "tests/support/tmpdir.h"

#include <jansson.h>
#include <lmdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define EVENTS 12
#define TARGET 6     /* the event tamper cases damage */
#define SIGNED_MID 6 /* a checkpoint is signed here and at EVENTS */
#define MARKER "Tamper-marker-6c1f0e2a9b"
#define T0 1790000000000000000LL /* time of the first event (Unix ns) */

static char *g_data;
static char g_events_dir[600];
static char g_pubkey[2 * crypto_sign_PUBLICKEYBYTES + 1];

/* ---- the world ---------------------------------------------------------------- */

static void append_one(es_store *st, int i, const char *type, const tst_map *m)
{
    char stream[32], cmd[32], corr[32], cause[32], actor[32];
    snprintf(stream, sizeof stream, "talent-T%d", i % 3);
    snprintf(cmd, sizeof cmd, "cmd-%d", i);
    snprintf(corr, sizeof corr, "corr-%d", i % 2);
    snprintf(cause, sizeof cause, "cause-%d", i);
    snprintf(actor, sizeof actor, "actor-%d", i % 3);
    es_event_in ev = {
        .type = type, .schema = 1, .data = tst_map_data(m), .data_len = tst_map_len(m)};
    es_append a = {.stream = stream,
                   .expected_version = ES_ANY_VERSION,
                   .prov = {cmd, corr, cause, actor},
                   .time_ns = T0 + (int64_t)i * 1000000000LL,
                   .events = &ev,
                   .n_events = 1};
    es_result r;
    ck_assert_status(es_append_wait(st, &a, &r), GUILD_OK);
    ck_assert_uint_eq(r.first_position, (uint64_t)i + 1);
    es_result_release(&r);
}

/* One event of map m on stream, at any version, now, with no provenance. */
static void append_plain(es_store *st, const char *stream, const char *type, const tst_map *m)
{
    es_event_in ev = {
        .type = type, .schema = 1, .data = tst_map_data(m), .data_len = tst_map_len(m)};
    es_append a = {
        .stream = stream, .expected_version = ES_ANY_VERSION, .events = &ev, .n_events = 1};
    es_result r;
    ck_assert_status(es_append_wait(st, &a, &r), GUILD_OK);
    es_result_release(&r);
}

/* Event i (0-based) of the history: position i + 1, on talent-T<i % 3>. */
static void append_event(es_store *st, int i)
{
    char id[8];
    snprintf(id, sizeof id, "T%d", i % 3);
    tst_map m;
    switch (i / 3) {
    case 0:
        tst_map_init(&m, 6);
        tst_map_str(&m, "talent_id", id);
        tst_map_str(&m, "user_id", "u-1");
        tst_map_str(&m, "headline", "Engineer ünïcode ✓");
        tst_map_str(&m, "bio", "line\none \"quoted\"");
        tst_map_str(&m, "location", i % 2 ? "Lisbon" : "Porto");
        tst_map_str(&m, "timezone", "Europe/Lisbon");
        append_one(st, i, "profile_created", &m);
        break;
    case 1:
        tst_map_init(&m, 3);
        tst_map_str(&m, "skill", i + 1 == TARGET ? MARKER : "C");
        tst_map_int(&m, "level", 3 + i % 3);
        tst_map_int(&m, "years", -1 + i);
        append_one(st, i, "skill_added", &m);
        break;
    case 2:
        tst_map_init(&m, 2);
        tst_map_str(&m, "currency", "EUR");
        tst_map_int(&m, "hourly_rate", 5000 + i);
        append_one(st, i, "rate_set", &m);
        break;
    default:
        tst_map_init(&m, 1);
        tst_map_int(&m, "hours_per_week", 10 + i);
        append_one(st, i, "availability_set", &m);
        break;
    }
    tst_map_release(&m);
}

static void sign(es_store *st)
{
    char path[700];
    bus_checkpoint_key_path(g_data, "talent", path, sizeof path);
    bus_checkpoint_key k;
    ck_assert_status(bus_checkpoint_key_load(path, true, &k, NULL), GUILD_OK);
    ck_assert_status(bus_checkpoint_sign_head(st, &k, NULL, NULL), GUILD_OK);
    sodium_bin2hex(g_pubkey, sizeof g_pubkey, k.pk, sizeof k.pk);
    bus_checkpoint_key_clear(&k);
}

/* A new talent event store under data (its directory into events_dir). */
static es_store *talent_store(const char *data, char *events_dir, size_t size)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/talent", data);
    mkdir(dir, 0755);
    snprintf(events_dir, size, "%s/talent/events", data);
    mkdir(events_dir, 0755);
    es_store *st = NULL;
    ck_assert_status(tst_store_open(events_dir, "talent", 0, &st), GUILD_OK);
    return st;
}

static void world_setup(void)
{
    g_data = tst_dir_new("data");
    es_store *st = talent_store(g_data, g_events_dir, sizeof g_events_dir);
    for (int i = 0; i < EVENTS; i++) {
        append_event(st, i);
        if (i + 1 == SIGNED_MID || i + 1 == EVENTS)
            sign(st);
    }
    es_store_close(st);
}

static void world_teardown(void)
{
    tst_dir_remove(g_data);
    free(g_data);
}

/* ---- running guild ---------------------------------------------------------------- */

static void command_line(char *out, size_t size, const char *args)
{
    const char *bin = getenv("GUILD_GUILD_BIN");
    ck_assert_msg(bin, "GUILD_GUILD_BIN must be set (ctest sets it)");
    snprintf(out, size, "'%s' events %s --data '%s' 2>>'%s/stderr.log'", bin, args, g_data, g_data);
}

/* Runs `guild events <args>`; *out (may be NULL) receives its stdout
 * (free it). Returns the exit status. */
static int run(char **out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int run(char **out, const char *fmt, ...)
{
    char args[2048], cmd[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    command_line(cmd, sizeof cmd, args);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char *text = tst_slurp(p);
    int st = pclose(p);
    if (out)
        *out = text;
    else
        free(text);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Runs a command that prints one JSON object; asserts the exit status. */
static json_t *run_json(int want_status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static json_t *run_json(int want_status, const char *fmt, ...)
{
    char args[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(args, sizeof args, fmt, ap);
    va_end(ap);
    char *out = NULL;
    int status = run(&out, "%s", args);
    json_error_t je;
    json_t *j = json_loads(out, 0, &je);
    ck_assert_msg(status == want_status, "guild events %s: exit %d, want %d; output: %s", args,
                  status, want_status, out);
    ck_assert_msg(j, "guild events %s: not one JSON object: %s", args, out);
    free(out);
    return j;
}

/* A member by a dotted path ("signatures.break.position"). */
static json_t *at(json_t *j, const char *path)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *save = NULL, *k = strtok_r(buf, ".", &save); k && j; k = strtok_r(NULL, ".", &save))
        j = json_object_get(j, k);
    ck_assert_msg(j, "no %s in the output", path);
    return j;
}

static long long at_int(json_t *j, const char *path)
{
    return json_integer_value(at(j, path));
}

static bool at_bool(json_t *j, const char *path)
{
    return json_is_true(at(j, path));
}

/* ---- editing the store ---------------------------------------------------------------- */

static void lmdb_ok(int rc, const char *what)
{
    ck_assert_msg(rc == MDB_SUCCESS, "%s: %s", what, mdb_strerror(rc));
}

static MDB_txn *edit_begin(MDB_env **env)
{
    MDB_txn *txn = NULL;
    lmdb_ok(mdb_env_create(env), "mdb_env_create");
    lmdb_ok(mdb_env_set_maxdbs(*env, 32), "mdb_env_set_maxdbs");
    lmdb_ok(mdb_env_open(*env, g_events_dir, 0, 0644), "mdb_env_open");
    lmdb_ok(mdb_txn_begin(*env, NULL, 0, &txn), "mdb_txn_begin");
    return txn;
}

static void edit_commit(MDB_env *env, MDB_txn *txn)
{
    lmdb_ok(mdb_txn_commit(txn), "mdb_txn_commit");
    mdb_env_close(env);
}

static void u64_be(uint64_t v, uint8_t out[8])
{
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(v >> (56 - 8 * i));
}

static uint64_t be_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | p[i];
    return v;
}

/* Flips a bit inside every copy of MARKER in data.mdb. */
static void flip_marker(void)
{
    char path[700];
    snprintf(path, sizeof path, "%s/data.mdb", g_events_dir);
    size_t len = 0, found = 0;
    unsigned char *data = tst_file_read(path, &len);
    ck_assert_ptr_nonnull(data);
    for (size_t i = 0; i + strlen(MARKER) <= len; i++)
        if (memcmp(data + i, MARKER, strlen(MARKER)) == 0) {
            data[i + 7] ^= 0x01;
            found++;
        }
    ck_assert_uint_ge(found, 1);
    ck_assert_int_eq(tst_file_write(path, data, len), 0);
    free(data);
}

static void log_delete(uint64_t position)
{
    MDB_env *env;
    MDB_txn *txn = edit_begin(&env);
    MDB_dbi log;
    lmdb_ok(mdb_dbi_open(txn, "log", 0, &log), "open log");
    uint8_t key[8];
    u64_be(position, key);
    MDB_val k = {8, key};
    lmdb_ok(mdb_del(txn, log, &k, NULL), "mdb_del");
    edit_commit(env, txn);
}

static void log_swap(uint64_t a, uint64_t b)
{
    MDB_env *env;
    MDB_txn *txn = edit_begin(&env);
    MDB_dbi log;
    lmdb_ok(mdb_dbi_open(txn, "log", 0, &log), "open log");
    uint8_t ka[8], kb[8];
    u64_be(a, ka);
    u64_be(b, kb);
    MDB_val k1 = {8, ka}, k2 = {8, kb}, v1, v2;
    lmdb_ok(mdb_get(txn, log, &k1, &v1), "get a");
    lmdb_ok(mdb_get(txn, log, &k2, &v2), "get b");
    void *c1 = malloc(v1.mv_size), *c2 = malloc(v2.mv_size);
    memcpy(c1, v1.mv_data, v1.mv_size);
    memcpy(c2, v2.mv_data, v2.mv_size);
    MDB_val n1 = {v2.mv_size, c2}, n2 = {v1.mv_size, c1};
    lmdb_ok(mdb_put(txn, log, &k1, &n1, 0), "put a");
    lmdb_ok(mdb_put(txn, log, &k2, &n2, 0), "put b");
    edit_commit(env, txn);
    free(c1);
    free(c2);
}

/* Points the head of `stream` (and the index checkpoint, when it is at
 * `position`) at a recomputed hash, as a careful forger would. */
static void fix_index(MDB_txn *txn, const char *stream, uint64_t version, uint64_t position,
                      const uint8_t hash[ES_HASH_LEN])
{
    MDB_dbi heads, meta;
    lmdb_ok(mdb_dbi_open(txn, "heads", 0, &heads), "open heads");
    lmdb_ok(mdb_dbi_open(txn, "meta", 0, &meta), "open meta");
    MDB_val k = {strlen(stream), (void *)stream}, v;
    uint8_t val[8 + ES_HASH_LEN];
    if (mdb_get(txn, heads, &k, &v) == 0 && be_u64(v.mv_data) == version) {
        u64_be(version, val);
        memcpy(val + 8, hash, ES_HASH_LEN);
        MDB_val nv = {sizeof val, val};
        lmdb_ok(mdb_put(txn, heads, &k, &nv, 0), "put head");
    }
    MDB_val ck = {13, (void *)"es.checkpoint"};
    if (mdb_get(txn, meta, &ck, &v) == 0 && be_u64(v.mv_data) == position) {
        u64_be(position, val);
        memcpy(val + 8, hash, ES_HASH_LEN);
        MDB_val nv = {sizeof val, val};
        lmdb_ok(mdb_put(txn, meta, &ck, &nv, 0), "put checkpoint");
    }
}

/* Rewrites every record from `from` on with other data and recomputes the
 * chain, the heads and the index checkpoint: a history the chain alone
 * cannot tell from the real one. */
static void rewrite_tail(uint64_t from)
{
    MDB_env *env;
    MDB_txn *txn = edit_begin(&env);
    MDB_dbi log;
    lmdb_ok(mdb_dbi_open(txn, "log", 0, &log), "open log");
    uint8_t prev[ES_HASH_LEN], key[8];
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    for (uint64_t pos = from - 1; pos <= EVENTS; pos++) {
        u64_be(pos, key);
        MDB_val k = {8, key}, v;
        lmdb_ok(mdb_get(txn, log, &k, &v), "get record");
        es_record r;
        ck_assert_status(es_record_decode(v.mv_data, v.mv_size, &r), GUILD_OK);
        if (pos == from - 1) {
            memcpy(prev, r.hash, ES_HASH_LEN);
            continue;
        }
        char s[8][ES_STREAM_MAX + 1];
        es_str src[8] = {r.id,         r.type,           r.domain,       r.stream,
                         r.command_id, r.correlation_id, r.causation_id, r.actor};
        for (int i = 0; i < 8; i++)
            tst_str_copy(src[i], s[i], sizeof s[i]);
        tst_map m;
        tst_map_init(&m, 1);
        tst_map_str(&m, "forged", "yes");
        es_record_in in = {s[0],
                           s[1],
                           s[2],
                           s[3],
                           s[4],
                           s[5],
                           s[6],
                           s[7],
                           r.schema,
                           r.version,
                           r.position,
                           r.time,
                           tst_map_data(&m),
                           tst_map_len(&m),
                           prev};
        uint8_t hash[ES_HASH_LEN];
        es_record_encode(&buf, &in, hash);
        tst_map_release(&m);
        MDB_val nv = {buf.size, buf.data};
        lmdb_ok(mdb_put(txn, log, &k, &nv, 0), "put record");
        fix_index(txn, s[3], in.version, pos, hash);
        memcpy(prev, hash, ES_HASH_LEN);
    }
    msgpack_sbuffer_destroy(&buf);
    edit_commit(env, txn);
}

/* ---- verify ---------------------------------------------------------------------------- */

START_TEST(test_clean_store_verifies_with_the_pinned_key)
{
    json_t *j = run_json(0, "verify talent --json --pubkey %s", g_pubkey);
    ck_assert(at_bool(j, "intact"));
    ck_assert(at_bool(j, "chain_intact"));
    ck_assert_int_eq(at_int(j, "checked"), EVENTS);
    ck_assert_int_eq(at_int(j, "signatures.found"), 2);
    ck_assert_int_eq(at_int(j, "signatures.verified"), 2);
    ck_assert_str_eq(json_string_value(at(j, "signatures.key_source")), "pinned");
    ck_assert_int_eq(at_int(j, "signatures.last.position"), EVENTS);
    ck_assert_int_eq(at_int(j, "signatures.unsigned_after"), 0);
    json_decref(j);

    /* Without --pubkey the key file is used, and the output says so. */
    j = run_json(0, "verify talent --json");
    ck_assert_str_eq(json_string_value(at(j, "signatures.key_source")), "key_file");
    ck_assert_int_eq(at_int(j, "signatures.verified"), 2);
    json_decref(j);
    char *out = NULL;
    ck_assert_int_eq(run(&out, "verify talent"), 0);
    ck_assert_msg(strstr(out, "chain intact") && strstr(out, "signatures intact") &&
                      strstr(out, "key file"),
                  "text output: %s", out);
    free(out);
}
END_TEST

START_TEST(test_flipped_byte_is_reported_at_its_position)
{
    flip_marker();
    json_t *j = run_json(1, "verify talent --json --pubkey %s", g_pubkey);
    ck_assert(!at_bool(j, "intact"));
    ck_assert(!at_bool(j, "chain_intact"));
    ck_assert_int_eq(at_int(j, "break.position"), TARGET);
    ck_assert_str_eq(json_string_value(at(j, "break.stream")), "talent-T2");
    json_decref(j);
}
END_TEST

START_TEST(test_deleted_record_is_reported_at_its_position)
{
    log_delete(TARGET);
    json_t *j = run_json(1, "verify talent --json --pubkey %s", g_pubkey);
    ck_assert(!at_bool(j, "chain_intact"));
    ck_assert_int_eq(at_int(j, "break.position"), TARGET);
    /* The signature at TARGET vouches for a record that is gone. */
    ck_assert(!at_bool(j, "signatures.intact"));
    ck_assert_int_eq(at_int(j, "signatures.break.position"), SIGNED_MID);
    json_decref(j);
}
END_TEST

/* The last record gone: the log now ends before the index checkpoint. The
 * records it still has are walked first and check out; the break is just
 * after the new end. */
START_TEST(test_deleted_last_record_is_reported_after_the_new_end)
{
    log_delete(EVENTS);
    char *out = NULL;
    ck_assert_int_eq(run(&out, "verify talent --pubkey %s", g_pubkey), 1);
    char want[160];
    snprintf(want, sizeof want,
             "talent: chain BROKEN at position %d: the log ends at %d before the checkpoint at %d "
             "(%d events before it check out)",
             EVENTS, EVENTS - 1, EVENTS, EVENTS - 1);
    ck_assert_msg(strstr(out, want), "no \"%s\" in:\n%s", want, out);
    free(out);
}
END_TEST

/* The last record gone and an earlier one changed: the earlier break is
 * the one named, as verify promises the first. */
START_TEST(test_a_changed_record_before_a_cut_end_is_named_first)
{
    flip_marker();
    log_delete(EVENTS);
    json_t *j = run_json(1, "verify talent --json --pubkey %s", g_pubkey);
    ck_assert(!at_bool(j, "chain_intact"));
    ck_assert_int_eq(at_int(j, "break.position"), TARGET);
    json_decref(j);
}
END_TEST

START_TEST(test_reordered_records_are_reported_at_the_first)
{
    log_swap(TARGET - 1, TARGET);
    json_t *j = run_json(1, "verify talent --json --pubkey %s", g_pubkey);
    ck_assert(!at_bool(j, "chain_intact"));
    ck_assert_int_eq(at_int(j, "break.position"), TARGET - 1);
    json_decref(j);
}
END_TEST

START_TEST(test_rechained_rewrite_is_caught_by_the_signed_checkpoint)
{
    rewrite_tail(9);
    /* The chain alone is fooled. */
    es_store *st = NULL;
    ck_assert_status(tst_store_open_ro(g_events_dir, &st), GUILD_OK);
    es_verify_report rep;
    ck_assert_status(es_verify(st, &rep, NULL, NULL), GUILD_OK);
    es_store_close(st);
    ck_assert_msg(rep.intact, "the rewrite is not chain-consistent: %llu %s",
                  (unsigned long long)rep.break_position, rep.what);

    json_t *j = run_json(1, "verify talent --json --pubkey %s", g_pubkey);
    ck_assert(at_bool(j, "chain_intact"));
    ck_assert(!at_bool(j, "intact"));
    ck_assert(!at_bool(j, "signatures.intact"));
    ck_assert_int_eq(at_int(j, "signatures.break.position"), EVENTS);
    ck_assert_int_eq(at_int(j, "signatures.verified"), 1); /* SIGNED_MID is before the rewrite */
    ck_assert_int_eq(at_int(j, "signatures.last.position"), SIGNED_MID);
    json_decref(j);

    char *out = NULL;
    ck_assert_int_eq(run(&out, "verify talent --pubkey %s", g_pubkey), 1);
    ck_assert_msg(strstr(out, "signatures BROKEN at position 12"), "text output: %s", out);
    free(out);
}
END_TEST

START_TEST(test_a_forger_signing_with_another_key_is_refused)
{
    rewrite_tail(9);
    /* The forger makes a key of their own and signs the new head. */
    char path[700];
    snprintf(path, sizeof path, "%s/forger.key", g_data);
    bus_checkpoint_key k;
    ck_assert_status(bus_checkpoint_key_load(path, true, &k, NULL), GUILD_OK);
    es_store *st = NULL;
    ck_assert_status(tst_store_open(g_events_dir, "talent", 0, &st), GUILD_OK);
    ck_assert_status(bus_checkpoint_sign_head(st, &k, NULL, NULL), GUILD_OK);
    es_store_close(st);

    json_t *j = run_json(1, "verify talent --json --pubkey %s", g_pubkey);
    ck_assert_int_eq(at_int(j, "signatures.break.position"), EVENTS);
    ck_assert_str_eq(json_string_value(at(j, "signatures.break.key_id")), k.key_id);
    json_decref(j);
    bus_checkpoint_key_clear(&k);
}
END_TEST

/* Deletes every stored signature, as someone without the key could. */
static void signatures_delete(void)
{
    MDB_env *env;
    MDB_txn *txn = edit_begin(&env);
    MDB_dbi meta;
    lmdb_ok(mdb_dbi_open(txn, "meta", 0, &meta), "open meta");
    for (uint64_t pos = 1; pos <= EVENTS; pos++) {
        char name[BUS_CHECKPOINT_META_NAME_LEN + 1];
        bus_checkpoint_meta_name(pos, name);
        MDB_val k = {strlen(name), name};
        mdb_del(txn, meta, &k, NULL);
    }
    edit_commit(env, txn);
}

START_TEST(test_removed_signatures_fail_when_a_key_is_pinned)
{
    signatures_delete();
    json_t *j = run_json(1, "verify talent --json --pubkey %s", g_pubkey);
    ck_assert(at_bool(j, "chain_intact"));
    ck_assert_int_eq(at_int(j, "signatures.found"), 0);
    ck_assert(!at_bool(j, "signatures.intact"));
    json_decref(j);
    /* Unpinned, the missing signatures are only reported. */
    j = run_json(0, "verify talent --json");
    ck_assert_int_eq(at_int(j, "signatures.found"), 0);
    json_decref(j);
}
END_TEST

START_TEST(test_anchor_and_bad_arguments)
{
    char hash[2 * ES_HASH_LEN + 1];
    es_store *st = NULL;
    ck_assert_status(tst_store_open_ro(g_events_dir, &st), GUILD_OK);
    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(es_read_log(st, 10, 1, tst_recs_collect, &recs, NULL), GUILD_OK);
    sodium_bin2hex(hash, sizeof hash, recs.v[0].rec.hash, ES_HASH_LEN);
    tst_recs_release(&recs);
    es_store_close(st);
    json_t *j = run_json(0, "verify talent --json --anchor 10:%s", hash);
    ck_assert(at_bool(j, "anchor.ok"));
    json_decref(j);
    rewrite_tail(9);
    j = run_json(1, "verify talent --json --anchor 10:%s", hash);
    ck_assert(!at_bool(j, "anchor.ok"));
    json_decref(j);
    ck_assert_int_eq(run(NULL, "verify talent --pubkey 1234"), 2);
    ck_assert_int_eq(run(NULL, "verify talent --anchor 10"), 2);
    ck_assert_int_eq(run(NULL, "verify nowhere"), 2);
}
END_TEST

/* ---- export, show, tail, key ------------------------------------------------------------- */

static void hex_of(const uint8_t *p, char out[2 * ES_HASH_LEN + 1])
{
    sodium_bin2hex(out, 2 * ES_HASH_LEN + 1, p, ES_HASH_LEN);
}

static void assert_str_field(json_t *o, const char *key, es_str want)
{
    const char *got = json_string_value(json_object_get(o, key));
    ck_assert_msg(got && tst_str_eq(want, got), "%s: got %s, want %.*s", key, got ? got : "(none)",
                  (int)want.n, want.p);
}

/* One exported line against the record it came from: every field. */
static void assert_same_record(json_t *o, const es_record *r)
{
    assert_str_field(o, "id", r->id);
    assert_str_field(o, "type", r->type);
    assert_str_field(o, "domain", r->domain);
    assert_str_field(o, "stream", r->stream);
    assert_str_field(o, "command_id", r->command_id);
    assert_str_field(o, "correlation_id", r->correlation_id);
    assert_str_field(o, "causation_id", r->causation_id);
    assert_str_field(o, "actor", r->actor);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "schema")), r->schema);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "version")), (long long)r->version);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "position")), (long long)r->position);
    ck_assert_int_eq(json_integer_value(json_object_get(o, "time")), r->time);
    char h[2 * ES_HASH_LEN + 1];
    hex_of(r->prev, h);
    ck_assert_str_eq(json_string_value(json_object_get(o, "prev")), h);
    hex_of(r->hash, h);
    ck_assert_str_eq(json_string_value(json_object_get(o, "hash")), h);
    json_t *data = NULL;
    ck_assert_status(guild_codec_decode(r->data, r->data_len, GUILD_FMT_MSGPACK, &data, NULL),
                     GUILD_OK);
    ck_assert_msg(json_equal(data, json_object_get(o, "data")), "data of position %llu differs",
                  (unsigned long long)r->position);
    /* And back: the exported data encodes to the very bytes in the record. */
    char *bytes = NULL;
    size_t len = 0;
    ck_assert_status(
        guild_codec_encode(json_object_get(o, "data"), GUILD_FMT_MSGPACK, &bytes, &len), GUILD_OK);
    ck_assert_uint_eq(len, r->data_len);
    ck_assert_mem_eq(bytes, r->data, len);
    /* So the line alone recomputes the record, and its chain hash. */
    uint8_t prev[ES_HASH_LEN], hash[ES_HASH_LEN];
    size_t n = 0;
    ck_assert_int_eq(sodium_hex2bin(prev, sizeof prev,
                                    json_string_value(json_object_get(o, "prev")), 2 * ES_HASH_LEN,
                                    NULL, &n, NULL),
                     0);
    es_record_in in = {json_string_value(json_object_get(o, "id")),
                       json_string_value(json_object_get(o, "type")),
                       json_string_value(json_object_get(o, "domain")),
                       json_string_value(json_object_get(o, "stream")),
                       json_string_value(json_object_get(o, "command_id")),
                       json_string_value(json_object_get(o, "correlation_id")),
                       json_string_value(json_object_get(o, "causation_id")),
                       json_string_value(json_object_get(o, "actor")),
                       (uint32_t)json_integer_value(json_object_get(o, "schema")),
                       (uint64_t)json_integer_value(json_object_get(o, "version")),
                       (uint64_t)json_integer_value(json_object_get(o, "position")),
                       json_integer_value(json_object_get(o, "time")),
                       bytes,
                       len,
                       prev};
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    es_record_encode(&buf, &in, hash);
    ck_assert_uint_eq(buf.size, r->raw_len);
    ck_assert_mem_eq(buf.data, r->raw, r->raw_len);
    ck_assert_mem_eq(hash, r->hash, ES_HASH_LEN);
    msgpack_sbuffer_destroy(&buf);
    free(bytes);
    json_decref(data);
}

/* Parses JSON lines; returns how many, each into lines[] (decref them). */
static size_t parse_lines(char *out, json_t **lines, size_t max)
{
    size_t n = 0;
    for (char *save = NULL, *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        json_error_t je;
        json_t *j = json_loads(l, 0, &je);
        ck_assert_msg(j, "not JSON: %s (%s)", l, je.text);
        ck_assert_uint_lt(n, max);
        lines[n++] = j;
    }
    return n;
}

START_TEST(test_export_round_trips_every_field)
{
    char *out = NULL;
    ck_assert_int_eq(run(&out, "export talent"), 0);
    json_t *lines[EVENTS + 4];
    size_t n = parse_lines(out, lines, EVENTS + 4);
    free(out);
    ck_assert_uint_eq(n, EVENTS);
    es_store *st = NULL;
    ck_assert_status(tst_store_open_ro(g_events_dir, &st), GUILD_OK);
    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_log(st, &recs), GUILD_OK);
    ck_assert_uint_eq(recs.n, EVENTS);
    for (size_t i = 0; i < n; i++) {
        assert_same_record(lines[i], &recs.v[i].rec);
        json_decref(lines[i]);
    }
    tst_recs_release(&recs);
    es_store_close(st);
}
END_TEST

/* The positions an export with `filters` prints, as "1,4,7". */
static void export_positions(const char *filters, char *got, size_t size)
{
    char *out = NULL;
    ck_assert_int_eq(run(&out, "export talent %s", filters), 0);
    json_t *lines[EVENTS + 4];
    size_t n = parse_lines(out, lines, EVENTS + 4);
    free(out);
    got[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        size_t used = strlen(got);
        snprintf(got + used, size - used, "%s%lld", i ? "," : "",
                 (long long)json_integer_value(json_object_get(lines[i], "position")));
        json_decref(lines[i]);
    }
}

START_TEST(test_export_filters)
{
    char got[256];
    export_positions("--stream talent-T1", got, sizeof got);
    ck_assert_str_eq(got, "2,5,8,11");
    export_positions("--type rate_set", got, sizeof got);
    ck_assert_str_eq(got, "7,8,9");
    export_positions("--correlation corr-1", got, sizeof got);
    ck_assert_str_eq(got, "2,4,6,8,10,12");
    export_positions("--actor actor-0 --type skill_added", got, sizeof got);
    ck_assert_str_eq(got, "4");
    /* T0 is 2026-09-21T14:13:20Z; each event one second later. */
    export_positions("--from 2026-09-21T14:13:22Z --to 2026-09-21T16:13:25+02:00", got, sizeof got);
    ck_assert_str_eq(got, "3,4,5");
    export_positions("--from 1790000000000000000 --to 1790000001000000000", got, sizeof got);
    ck_assert_str_eq(got, "1");
    export_positions("--stream talent-T9", got, sizeof got);
    ck_assert_str_eq(got, "");
    ck_assert_int_eq(run(NULL, "export talent --from yesterday"), 2);
    ck_assert_int_eq(run(NULL, "export talent --steam talent-T1"), 2);
}
END_TEST

/* An export is read back: a real keeps every digit, and prints no more
 * digits than it needs. */
START_TEST(test_export_keeps_reals_exact)
{
    char *world = g_data, dir[600];
    g_data = tst_dir_new("reals");
    es_store *st = talent_store(g_data, dir, sizeof dir);
    tst_map m;
    tst_map_init(&m, 2);
    tst_map_real(&m, "third", 1.0 / 3.0);
    tst_map_real(&m, "score", 0.51);
    append_plain(st, "talent-R", "scored", &m);
    tst_map_release(&m);
    es_store_close(st);

    char *out = NULL;
    ck_assert_int_eq(run(&out, "export talent"), 0);
    ck_assert_msg(strstr(out, "\"data\":{\"third\":0.3333333333333333,\"score\":0.51}"),
                  "export: %s", out);
    free(out);
    tst_dir_remove(g_data);
    free(g_data);
    g_data = world;
}
END_TEST

START_TEST(test_show_prints_a_stream_decoded)
{
    char *out = NULL;
    ck_assert_int_eq(run(&out, "show talent talent-T2"), 0);
    ck_assert_msg(strstr(out, "#1  profile_created (schema 1)  position 3") &&
                      strstr(out, "#2  skill_added") && strstr(out, MARKER) &&
                      strstr(out, "actor actor-2  command cmd-2  correlation corr-0") &&
                      strstr(out, "talent-T2: 4 events"),
                  "show: %s", out);
    ck_assert_ptr_null(strstr(out, "talent-T1"));
    free(out);
    ck_assert_int_eq(run(&out, "show talent talent-T2 --json"), 0);
    json_t *lines[8];
    size_t n = parse_lines(out, lines, 8);
    free(out);
    ck_assert_uint_eq(n, 4);
    for (size_t i = 0; i < n; i++) {
        ck_assert_int_eq(json_integer_value(json_object_get(lines[i], "version")),
                         (long long)i + 1);
        json_decref(lines[i]);
    }
    ck_assert_int_eq(run(NULL, "show talent talent-none"), 1);
}
END_TEST

START_TEST(test_ls_lists_streams_and_checks_its_limit)
{
    char *out = NULL;
    ck_assert_int_eq(run(&out, "ls talent"), 0);
    ck_assert_msg(strstr(out, "talent-T0") && strstr(out, "talent-T1") && strstr(out, "talent-T2"),
                  "ls: %s", out);
    ck_assert_msg(strstr(out, " 4\n"), "ls: every stream has 4 events: %s", out);
    free(out);
    ck_assert_int_eq(run(&out, "ls talent --limit 2"), 0);
    ck_assert_msg(strstr(out, "talent-T0") && strstr(out, "talent-T1") && !strstr(out, "talent-T2"),
                  "ls --limit 2: %s", out);
    free(out);
    /* A malformed limit is refused, not read as 0 (which listed nothing). */
    static const char *const bad[] = {"abc", "0", "-1", "+2", " 2", "2x"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        ck_assert_int_eq(run(&out, "ls talent --limit '%s'", bad[i]), 2);
        ck_assert_msg(out[0] == 0, "ls --limit '%s' printed: %s", bad[i], out);
        free(out);
    }
}
END_TEST

START_TEST(test_tail_follows_new_events)
{
    char cmd[4096];
    command_line(cmd, sizeof cmd,
                 "tail talent --from-position 1 --limit 14 --interval 20 --type note_added");
    /* Only note_added events count: the first ones appear once appended. */
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    es_store *st = NULL;
    ck_assert_status(tst_store_open(g_events_dir, "talent", 0, &st), GUILD_OK);
    char line[8192];
    for (int i = 0; i < 14; i++) {
        tst_map m;
        tst_map_init(&m, 1);
        tst_map_int(&m, "n", i);
        append_plain(st, "talent-T0", "note_added", &m);
        tst_map_release(&m);
        /* Each line arrives after its event committed, while tail runs. */
        ck_assert_ptr_nonnull(fgets(line, sizeof line, p));
        json_t *j = json_loads(line, 0, NULL);
        ck_assert_ptr_nonnull(j);
        ck_assert_int_eq(json_integer_value(json_object_get(j, "position")), EVENTS + i + 1);
        ck_assert_int_eq(json_integer_value(json_object_get(json_object_get(j, "data"), "n")), i);
        json_decref(j);
    }
    int status = pclose(p);
    ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    es_store_close(st);
}
END_TEST

START_TEST(test_key_prints_the_public_key_to_pin)
{
    char *out = NULL;
    ck_assert_int_eq(run(&out, "key talent"), 0);
    ck_assert_int_eq(strlen(out), 65);
    ck_assert_int_eq(strncmp(out, g_pubkey, 64), 0);
    free(out);
    ck_assert_int_eq(run(NULL, "key identity"), 1); /* no key made yet */
}
END_TEST

/* ---- replay ------------------------------------------------------------------------------- */

/* Builds the live talent model as the projector would, up to `upto`. */
static void build_live_model(uint64_t upto)
{
    char dir[700], parent[700];
    snprintf(parent, sizeof parent, "%s/projections", g_data);
    mkdir(parent, 0755);
    prj_model_dir(g_data, "talent", dir, sizeof dir);
    mkdir(dir, 0755);
    prj_store *m = NULL;
    ck_assert_status(prj_store_open(dir, &prj_talent_model, &m, NULL), GUILD_OK);
    es_store *st = NULL;
    ck_assert_status(tst_store_open_ro(g_events_dir, &st), GUILD_OK);
    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_log(st, &recs), GUILD_OK);
    const es_record *v[EVENTS];
    for (size_t i = 0; i < upto; i++)
        v[i] = &recs.v[i].rec;
    prj_batch_stats stats;
    ck_assert_status(prj_store_apply(m, v, upto, &stats), GUILD_OK);
    ck_assert_uint_eq(stats.parked, 0);
    tst_recs_release(&recs);
    es_store_close(st);
    prj_store_close(m);
}

START_TEST(test_replay_of_an_unchanged_store_matches_the_live_model)
{
    build_live_model(EVENTS);
    char into[700];
    snprintf(into, sizeof into, "%s/replay", g_data);
    json_t *j = run_json(0, "replay talent --into '%s' --json", into);
    ck_assert(at_bool(j, "equal"));
    json_t *m = json_array_get(at(j, "models"), 0);
    ck_assert_str_eq(json_string_value(at(m, "model")), "talent");
    ck_assert(at_bool(m, "equal"));
    ck_assert_int_eq(at_int(m, "rebuilt_position"), EVENTS);
    ck_assert_int_eq(at_int(m, "live_position"), EVENTS);
    ck_assert_str_eq(json_string_value(at(m, "rebuilt_digest")),
                     json_string_value(at(m, "live_digest")));
    ck_assert_int_eq(at_int(m, "differences.count"), 0);
    ck_assert_int_gt(at_int(m, "compared_entries"), 3);
    json_decref(j);

    char *out = NULL;
    ck_assert_int_eq(run(&out, "replay talent --into '%s'", into), 0);
    ck_assert_msg(strstr(out, "EQUAL"), "replay: %s", out);
    free(out);
    char live[700];
    snprintf(live, sizeof live, "%s/projections", g_data);
    ck_assert_int_eq(run(NULL, "replay talent --into '%s'", live), 2); /* not over the live one */
    ck_assert_int_eq(run(NULL, "replay nowhere --into '%s'", into), 2);
}
END_TEST

START_TEST(test_replay_compares_at_the_live_models_position)
{
    build_live_model(8);
    char into[700];
    snprintf(into, sizeof into, "%s/replay", g_data);
    json_t *j = run_json(0, "replay talent --into '%s' --json", into);
    json_t *m = json_array_get(at(j, "models"), 0);
    ck_assert(at_bool(m, "equal"));
    ck_assert_int_eq(at_int(m, "rebuilt_position"), 8);
    ck_assert_int_eq(at_int(m, "log_head"), EVENTS);
    json_decref(j);
}
END_TEST

START_TEST(test_replay_lists_the_keys_of_a_changed_live_model)
{
    build_live_model(EVENTS);
    /* Someone edits a row of the live model behind the projector's back. */
    char dir[700];
    prj_model_dir(g_data, "talent", dir, sizeof dir);
    MDB_env *env;
    MDB_txn *txn;
    lmdb_ok(mdb_env_create(&env), "create");
    mdb_env_set_maxdbs(env, 32);
    lmdb_ok(mdb_env_open(env, dir, 0, 0644), "open");
    lmdb_ok(mdb_txn_begin(env, NULL, 0, &txn), "begin");
    MDB_dbi db;
    lmdb_ok(mdb_dbi_open(txn, prj_talent_model.dbs[0], 0, &db), "open profiles");
    MDB_val k = {2, (void *)"T1"}, v = {5, (void *)"\x81\xa1x\x01\x00"};
    lmdb_ok(mdb_put(txn, db, &k, &v, 0), "put");
    edit_commit(env, txn);

    char into[700];
    snprintf(into, sizeof into, "%s/replay", g_data);
    json_t *j = run_json(1, "replay talent --into '%s' --json", into);
    ck_assert(!at_bool(j, "equal"));
    json_t *m = json_array_get(at(j, "models"), 0);
    ck_assert(!at_bool(m, "equal"));
    ck_assert_int_eq(at_int(m, "differences.count"), 1);
    json_t *d = json_array_get(at(m, "differences.keys"), 0);
    ck_assert_str_eq(json_string_value(at(d, "db")), prj_talent_model.dbs[0]);
    ck_assert_str_eq(json_string_value(at(d, "key")), "T1");
    ck_assert_str_eq(json_string_value(at(d, "what")), "value differs");
    json_decref(j);
    char *out = NULL;
    ck_assert_int_eq(run(&out, "replay talent --into '%s'", into), 1);
    ck_assert_msg(strstr(out, "DIFFERS") && strstr(out, "T1"), "replay: %s", out);
    free(out);
}
END_TEST

/* ---- snapshots ------------------------------------------------------------------------ */

/* The talent profile's state of `stream` after its first `upto` events,
 * as its snapshot codec writes it (malloc'd). */
static char *fold_snapshot(const char *stream, uint64_t upto, size_t *len)
{
    const dom_aggregate *agg = dom_command_find(&dom_talent, "set_rate")->aggregate;
    es_store *st = NULL;
    ck_assert_status(tst_store_open_ro(g_events_dir, &st), GUILD_OK);
    void *state = NULL;
    uint64_t reached = 0;
    ck_assert_status(agg_fold(st, agg, stream, upto, &state, &reached), GUILD_OK);
    ck_assert_uint_eq(reached, upto);
    es_store_close(st);
    char *bytes = NULL;
    ck_assert_status(agg->snapshot(state, &bytes, len), GUILD_OK);
    agg->destroy(state);
    return bytes;
}

static void put_snapshot(const char *stream, uint64_t version, const void *bytes, size_t len)
{
    es_store *st = NULL;
    ck_assert_status(tst_store_open(g_events_dir, "talent", 0, &st), GUILD_OK);
    ck_assert_status(es_snapshot_put(st, stream, version, bytes, len), GUILD_OK);
    es_store_close(st);
}

/* Each profile stream has EVENTS / 3 events. */
#define STREAM_EVENTS (EVENTS / 3)

START_TEST(test_snapshots_that_match_their_events_verify)
{
    json_t *j = run_json(0, "verify talent --json");
    ck_assert_int_eq(at_int(j, "snapshots.found"), 0);
    ck_assert(at_bool(j, "snapshots.intact"));
    json_decref(j);

    size_t len;
    char *head = fold_snapshot("talent-T0", STREAM_EVENTS, &len);
    put_snapshot("talent-T0", STREAM_EVENTS, head, len);
    free(head);
    char *mid = fold_snapshot("talent-T1", 2, &len);
    put_snapshot("talent-T1", 2, mid, len);
    free(mid);

    j = run_json(0, "verify talent --json");
    ck_assert(at_bool(j, "intact"));
    ck_assert_int_eq(at_int(j, "snapshots.found"), 2);
    ck_assert_int_eq(at_int(j, "snapshots.checked"), 2);
    ck_assert_int_eq(at_int(j, "snapshots.unknown"), 0);
    ck_assert(at_bool(j, "snapshots.intact"));
    json_decref(j);
    char *out = NULL;
    ck_assert_int_eq(run(&out, "verify talent"), 0);
    ck_assert_msg(strstr(out, "snapshots intact — 2 checked"), "text output: %s", out);
    free(out);
}
END_TEST

/* A snapshot that is not the state of its events (here: the state after
 * one event fewer than it says) is what a service would decide on; verify
 * names its stream and version and fails, though the chain is intact. */
START_TEST(test_a_snapshot_unlike_its_events_is_reported)
{
    size_t len;
    char *early = fold_snapshot("talent-T1", STREAM_EVENTS - 1, &len);
    put_snapshot("talent-T1", STREAM_EVENTS, early, len);
    free(early);
    json_t *j = run_json(1, "verify talent --json --pubkey %s", g_pubkey);
    ck_assert(!at_bool(j, "intact"));
    ck_assert(at_bool(j, "chain_intact"));
    ck_assert(at_bool(j, "signatures.intact"));
    ck_assert(!at_bool(j, "snapshots.intact"));
    ck_assert_str_eq(json_string_value(at(j, "snapshots.break.stream")), "talent-T1");
    ck_assert_int_eq(at_int(j, "snapshots.break.version"), STREAM_EVENTS);
    json_decref(j);
    char *out = NULL;
    ck_assert_int_eq(run(&out, "verify talent"), 1);
    ck_assert_msg(strstr(out, "snapshot BROKEN for stream talent-T1 at version 4"),
                  "text output: %s", out);
    free(out);
}
END_TEST

START_TEST(test_a_snapshot_ahead_of_its_stream_or_unreadable_is_reported)
{
    size_t len;
    char *head = fold_snapshot("talent-T2", STREAM_EVENTS, &len);
    put_snapshot("talent-T2", STREAM_EVENTS + 5, head, len);
    free(head);
    json_t *j = run_json(1, "verify talent --json");
    ck_assert(!at_bool(j, "snapshots.intact"));
    ck_assert_str_eq(json_string_value(at(j, "snapshots.break.stream")), "talent-T2");
    ck_assert_int_eq(at_int(j, "snapshots.break.version"), STREAM_EVENTS + 5);
    ck_assert_msg(strstr(json_string_value(at(j, "snapshots.break.what")), "4 events"), "%s",
                  json_string_value(at(j, "snapshots.break.what")));
    json_decref(j);

    put_snapshot("talent-T2", STREAM_EVENTS, "not a snapshot", 14);
    j = run_json(1, "verify talent --json");
    ck_assert_str_eq(json_string_value(at(j, "snapshots.break.stream")), "talent-T2");
    ck_assert_msg(strstr(json_string_value(at(j, "snapshots.break.what")), "does not decode"), "%s",
                  json_string_value(at(j, "snapshots.break.what")));
    json_decref(j);
}
END_TEST

static Suite *events_suite(void)
{
    Suite *s = suite_create("cmd/events");
    struct {
        const char *name;
        const TTest *tests[12];
    } cases[] = {
        {"verify",
         {test_clean_store_verifies_with_the_pinned_key,
          test_flipped_byte_is_reported_at_its_position,
          test_deleted_record_is_reported_at_its_position,
          test_deleted_last_record_is_reported_after_the_new_end,
          test_a_changed_record_before_a_cut_end_is_named_first,
          test_reordered_records_are_reported_at_the_first,
          test_rechained_rewrite_is_caught_by_the_signed_checkpoint,
          test_a_forger_signing_with_another_key_is_refused,
          test_removed_signatures_fail_when_a_key_is_pinned, test_anchor_and_bad_arguments, NULL}},
        {"snapshots",
         {test_snapshots_that_match_their_events_verify,
          test_a_snapshot_unlike_its_events_is_reported,
          test_a_snapshot_ahead_of_its_stream_or_unreadable_is_reported, NULL}},
        {"read",
         {test_export_round_trips_every_field, test_export_filters, test_export_keeps_reals_exact,
          test_show_prints_a_stream_decoded, test_ls_lists_streams_and_checks_its_limit,
          test_tail_follows_new_events, test_key_prints_the_public_key_to_pin, NULL}},
        {"replay",
         {test_replay_of_an_unchanged_store_matches_the_live_model,
          test_replay_compares_at_the_live_models_position,
          test_replay_lists_the_keys_of_a_changed_live_model, NULL}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        TCase *tc = tcase_create(cases[i].name);
        tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
        tcase_add_checked_fixture(tc, world_setup, world_teardown);
        tcase_set_timeout(tc, 120);
        for (const TTest *const *t = cases[i].tests; *t; t++)
            tcase_add_test(tc, *t);
        suite_add_tcase(s, tc);
    }
    return s;
}

int main(void)
{
    return tst_run_suite(events_suite());
}
