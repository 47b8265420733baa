/*
 * verify.c — walks a store and checks everything the hash chain and the
 * indexes promise, reporting the first break.
 *
 * The walk reads one snapshot, so the index and the log it compares are of
 * the same moment while the writer goes on.
 */
#include "eventstore/internal.h"

#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define CHUNK 65536 /* records between progress calls */

typedef struct verify_state {
    es_verify_report *rep;
    uint64_t expect;                /* next position expected */
    uint8_t last_hash[ES_HASH_LEN]; /* hash of position expect-1 */
    uint64_t checkpoint;            /* index complete up to here */
    uint8_t checkpoint_hash[ES_HASH_LEN];
    es_tail tail; /* versions seen after the checkpoint */
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

/* After the checkpoint the index is not on disk yet: check that each
 * stream's versions follow on from its head at the checkpoint. */
static bool check_tail_version(es_store *st, MDB_txn *txn, verify_state *vs, const es_record *rec,
                               uint64_t pos)
{
    if (rec->stream.n == 0 || rec->stream.n > ES_STREAM_MAX) {
        report_break(vs->rep, pos, NULL, "record has an invalid stream id");
        return false;
    }
    es_tail_stream *e = es_tail_find(&vs->tail, rec->stream.p, rec->stream.n);
    if (!e) {
        uint64_t base;
        if (es__head_db_get(st, txn, rec->stream.p, rec->stream.n, &base, NULL))
            base = 0;
        /* A later checkpoint slice may have indexed it already. */
        if (rec->version <= base)
            return check_stream_index(st, txn, rec, pos, vs->rep);
        e = es_tail_upsert(&vs->tail, rec->stream.p, rec->stream.n, base);
    }
    if (rec->version != e->version + 1) {
        report_break(vs->rep, pos, &rec->stream, "version %llu follows version %llu",
                     (unsigned long long)rec->version, (unsigned long long)e->version);
        return false;
    }
    es_tail_push(&vs->tail, e, pos, rec->hash);
    es_tail_commit(&vs->tail, pos);
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
    if (pos <= vs->checkpoint) {
        if (!check_stream_index(st, txn, &rec, pos, rep))
            return false;
        if (pos == vs->checkpoint &&
            sodium_memcmp(rec.hash, vs->checkpoint_hash, ES_HASH_LEN) != 0) {
            report_break(rep, pos, &rec.stream, "the index checkpoint's hash does not match");
            return false;
        }
    } else if (!check_tail_version(st, txn, vs, &rec, pos)) {
        return false;
    }
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
        MDB_val sv, lk, lv;
        es_record rec;
        int got = mdb_get(txn, st->db_streams, &sk, &sv);
        lk.mv_size = 8;
        lk.mv_data = got == 0 ? sv.mv_data : NULL;
        if (got || sv.mv_size != 8 || mdb_get(txn, st->db_log, &lk, &lv) ||
            es_record_decode(lv.mv_data, lv.mv_size, &rec) != GUILD_OK ||
            memcmp(rec.hash, (uint8_t *)v.mv_data + 8, ES_HASH_LEN) != 0) {
            report_break(rep, 0, &stream, "stream head does not match its last event");
            ok = false;
        }
    }
    mdb_cursor_close(cur);
    return ok;
}

guild_status es_verify(es_store *st, es_verify_report *rep, es_progress_fn progress, void *ctx)
{
    memset(rep, 0, sizeof *rep);
    rep->intact = true;
    verify_state vs = {.rep = rep, .expect = 1};
    es_tail_init(&vs.tail);
    es_chain chain;
    MDB_txn *txn;
    MDB_cursor *cur = NULL;
    guild_status s = GUILD_OK;
    int rc = es__read_begin(st, &txn);
    if (rc)
        return es__lmdb_status(NULL, rc, "beginning a read");
    if ((rc = es__chain_load(st, txn, &chain)) ||
        (rc = es__checkpoint_get(st, txn, &vs.checkpoint, vs.checkpoint_hash)) ||
        (rc = mdb_cursor_open(txn, st->db_log, &cur))) {
        s = es__lmdb_status(NULL, rc, "reading the log's head");
        goto leave;
    }
    uint64_t total = chain.next_position - 1;
    rep->last_position = total;
    if (vs.checkpoint > total) {
        report_break(rep, total + 1, NULL, "the log ends at %llu before the checkpoint at %llu",
                     (unsigned long long)total, (unsigned long long)vs.checkpoint);
        goto leave;
    }

    /* One snapshot for the whole walk: the index and the log must agree. */
    MDB_val k, v;
    uint64_t n = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (!check_record(st, txn, &vs, &k, &v))
            break;
        if (progress && ++n % CHUNK == 0)
            progress(ctx, rep->checked, total);
    }
    if (rc && rc != MDB_NOTFOUND) {
        s = es__lmdb_status(NULL, rc, "reading the log");
        goto leave;
    }
    if (rep->intact) {
        if (vs.expect - 1 < total)
            report_break(rep, vs.expect, NULL, "the log ends early at %llu of %llu",
                         (unsigned long long)vs.expect - 1, (unsigned long long)total);
        else
            check_heads(st, txn, rep);
    }
    if (progress)
        progress(ctx, rep->checked, total);
leave:
    if (cur)
        mdb_cursor_close(cur);
    es__read_end(st, txn);
    es_tail_release(&vs.tail);
    return s;
}
