/*
 * verify.c — walks a store and checks everything the hash chain and the
 * indexes promise, reporting the first break.
 *
 * The walk reads the log in chunks, each in its own read transaction, so a
 * long verify never pins old pages that the writer would like to reuse.
 */
#include "eventstore/internal.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define CHUNK 65536

typedef struct verify_state {
    es_verify_report *rep;
    uint64_t expect;                /* next position expected */
    uint8_t last_hash[ES_HASH_LEN]; /* hash of position expect-1 */
} verify_state;

static void report_break(es_verify_report *rep, uint64_t pos, const es_str *stream, const char *fmt,
                         ...) __attribute__((format(printf, 4, 5)));

static void report_break(es_verify_report *rep, uint64_t pos, const es_str *stream, const char *fmt,
                         ...)
{
    rep->intact = false;
    rep->break_position = pos;
    if (stream && stream->p)
        snprintf(rep->stream, sizeof rep->stream, "%.*s", (int)stream->n, stream->p);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rep->what, sizeof rep->what, fmt, ap);
    va_end(ap);
}

/* Checks that the streams index holds this record at its version and that
 * the version before it exists at an earlier position. */
static bool check_stream_index(es_store *st, MDB_txn *txn, const es_record *rec, uint64_t pos,
                               es_verify_report *rep)
{
    if (rec->stream.n == 0 || rec->stream.n > ES_STREAM_MAX) {
        report_break(rep, pos, NULL, "record has an invalid stream id");
        return false;
    }
    uint8_t key[ES_STREAM_KEY_MAX];
    MDB_val k = {es__stream_key(key, rec->stream.p, rec->stream.n, rec->version), key}, v;
    if (mdb_get(txn, st->db_streams, &k, &v) || v.mv_size != 8 || es__u64_get(v.mv_data) != pos) {
        report_break(rep, pos, &rec->stream, "stream index does not map version %llu here",
                     (unsigned long long)rec->version);
        return false;
    }
    if (rec->version > 1) {
        k.mv_size = es__stream_key(key, rec->stream.p, rec->stream.n, rec->version - 1);
        if (mdb_get(txn, st->db_streams, &k, &v) || v.mv_size != 8 ||
            es__u64_get(v.mv_data) >= pos) {
            report_break(rep, pos, &rec->stream,
                         "version %llu has no earlier version %llu before it",
                         (unsigned long long)rec->version, (unsigned long long)rec->version - 1);
            return false;
        }
    }
    return true;
}

static bool check_record(es_store *st, MDB_txn *txn, verify_state *vs, const MDB_val *k,
                         const MDB_val *v)
{
    es_verify_report *rep = vs->rep;
    uint64_t pos = k->mv_size == 8 ? es__u64_get(k->mv_data) : 0;
    if (pos != vs->expect) {
        report_break(rep, vs->expect, NULL, "position %llu is missing (next found: %llu)",
                     (unsigned long long)vs->expect, (unsigned long long)pos);
        return false;
    }
    es_record rec;
    if (es_record_decode(v->mv_data, v->mv_size, &rec) != GUILD_OK) {
        report_break(rep, pos, NULL, "record does not decode");
        return false;
    }
    if (rec.position != pos) {
        report_break(rep, pos, &rec.stream, "record says position %llu",
                     (unsigned long long)rec.position);
        return false;
    }
    if (sodium_memcmp(rec.prev, vs->last_hash, ES_HASH_LEN) != 0) {
        report_break(rep, pos, &rec.stream, "prev does not match the hash of position %llu",
                     (unsigned long long)pos - 1);
        return false;
    }
    if (!es_record_hash_ok(&rec)) {
        report_break(rep, pos, &rec.stream, "hash does not match the record's bytes");
        return false;
    }
    if (!check_stream_index(st, txn, &rec, pos, rep))
        return false;
    memcpy(vs->last_hash, rec.hash, ES_HASH_LEN);
    vs->expect = pos + 1;
    rep->checked++;
    return true;
}

/* Every head must point at an existing version whose record hash it holds. */
static bool check_heads(es_store *st, MDB_txn *txn, es_verify_report *rep)
{
    MDB_cursor *cur;
    if (mdb_cursor_open(txn, st->db_heads, &cur))
        return false;
    MDB_val k, v;
    bool ok = true;
    for (int rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && ok;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        es_str stream = {k.mv_data, (uint32_t)k.mv_size};
        if (k.mv_size == 0 || k.mv_size > ES_STREAM_MAX || v.mv_size != 8 + ES_HASH_LEN) {
            report_break(rep, 0, &stream, "malformed stream head");
            ok = false;
            break;
        }
        uint8_t key[ES_STREAM_KEY_MAX];
        MDB_val sk = {es__stream_key(key, k.mv_data, k.mv_size, es__u64_get(v.mv_data)), key};
        MDB_val sv, lv;
        es_record rec;
        if (mdb_get(txn, st->db_streams, &sk, &sv) || sv.mv_size != 8 ||
            mdb_get(txn, st->db_log, &(MDB_val){8, sv.mv_data}, &lv) ||
            es_record_decode(lv.mv_data, lv.mv_size, &rec) != GUILD_OK ||
            memcmp(rec.hash, (uint8_t *)v.mv_data + 8, ES_HASH_LEN) != 0) {
            report_break(rep, 0, &stream, "stream head does not match its last event");
            ok = false;
        }
    }
    mdb_cursor_close(cur);
    return ok;
}

static bool check_chain_head(es_store *st, MDB_txn *txn, const verify_state *vs)
{
    MDB_val k = {strlen(ES_META_CHAIN_HEAD), (void *)ES_META_CHAIN_HEAD}, v;
    int rc = mdb_get(txn, st->db_meta, &k, &v);
    uint64_t last = vs->expect - 1;
    if (rc == MDB_NOTFOUND && last == 0)
        return true;
    if (rc || v.mv_size != 8 + ES_HASH_LEN || es__u64_get(v.mv_data) != last ||
        memcmp((uint8_t *)v.mv_data + 8, vs->last_hash, ES_HASH_LEN) != 0) {
        report_break(vs->rep, last, NULL, "the stored chain head does not match the log's end");
        return false;
    }
    return true;
}

guild_status es_verify(es_store *st, es_verify_report *rep, es_progress_fn progress, void *ctx)
{
    memset(rep, 0, sizeof *rep);
    rep->intact = true;
    verify_state vs = {rep, 1, {0}};
    uint64_t total;
    guild_status s = es_log_head(st, &total, NULL);
    if (s != GUILD_OK)
        return s;
    rep->last_position = total;

    bool more = true;
    while (more && rep->intact) {
        MDB_txn *txn;
        MDB_cursor *cur;
        int rc = es__read_begin(st, &txn);
        if (rc)
            return es__lmdb_status(NULL, rc, "beginning a read");
        if ((rc = mdb_cursor_open(txn, st->db_log, &cur))) {
            es__read_end(st, txn);
            return es__lmdb_status(NULL, rc, "opening a cursor");
        }
        uint8_t key[8];
        es__u64_put(key, vs.expect);
        MDB_val k = {8, key}, v;
        /* Resume just after the last checked record, so a missing position
         * is seen as the gap it is. */
        rc = vs.expect == 1 ? mdb_cursor_get(cur, &k, &v, MDB_FIRST)
                            : mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
        unsigned n = 0;
        for (; rc == 0 && n < CHUNK; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), n++)
            if (!check_record(st, txn, &vs, &k, &v))
                break;
        more = rc == 0 && rep->intact;
        if (rc && rc != MDB_NOTFOUND) {
            mdb_cursor_close(cur);
            es__read_end(st, txn);
            return es__lmdb_status(NULL, rc, "reading the log");
        }
        if (!more && rep->intact) {
            if (vs.expect - 1 < total)
                report_break(rep, vs.expect, NULL, "the log ends early at %llu of %llu",
                             (unsigned long long)vs.expect - 1, (unsigned long long)total);
            else if (check_chain_head(st, txn, &vs))
                check_heads(st, txn, rep);
        }
        mdb_cursor_close(cur);
        es__read_end(st, txn);
        if (progress)
            progress(ctx, rep->checked, total);
    }
    return GUILD_OK;
}
