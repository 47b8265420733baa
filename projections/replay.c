/* replay.c — folding a domain's LMDB log into a read model: the loop behind
 * `guild project rebuild`, `guild events replay` and the rebuild bench. */
#include "projections/prj.h"
#include "projections/store_internal.h"

#include "common/alloc.h"
#include "common/clock.h"

#include <lmdb.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 4096          /* records read from the log at a time */
#define DEFAULT_TXN 262144 /* events to a transaction */

typedef struct batch {
    const es_record **ptrs;
    es_record *recs;
    uint8_t **raws;
    size_t n;
    uint64_t stop_at;
} batch;

/* The read transaction ends before apply: each record is copied out. */
static int collect(void *ctx, const es_record *rec)
{
    batch *b = ctx;
    if (b->stop_at && rec->position > b->stop_at)
        return 1;
    b->raws[b->n] = guild_xmemdup(rec->raw, rec->raw_len);
    b->recs[b->n] = *rec;
    es_record_rebase(&b->recs[b->n], b->raws[b->n]);
    b->ptrs[b->n] = &b->recs[b->n];
    b->n++;
    return 0;
}

/* Reads the next page of the log after `from` into b (its raws freed by
 * batch_drop). */
static guild_status batch_read(es_store *log, batch *b, uint64_t from, size_t page)
{
    b->n = 0;
    uint64_t next = from;
    return es_read_log(log, from, page, collect, b, &next);
}

static void batch_drop(batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->raws[i]);
    b->n = 0;
}

/* Applies [from, to] page by page with prj_store_apply, which parks the
 * events that fail: the way through a stretch a session could not take. */
static guild_status replay_carefully(prj_store *s, es_store *log, batch *b, uint64_t to)
{
    guild_status st = GUILD_OK;
    uint64_t stop = b->stop_at;
    b->stop_at = to;
    while (st == GUILD_OK && prj_store_position(s) < to) {
        st = batch_read(log, b, prj_store_position(s) + 1, PAGE);
        if (st == GUILD_OK && b->n == 0)
            break;
        if (st == GUILD_OK)
            st = prj_store_apply(s, b->ptrs, b->n, NULL);
        batch_drop(b);
    }
    b->stop_at = stop;
    return st;
}

guild_status prj_store_replay(prj_store *s, es_store *log, uint64_t stop_at, size_t per_txn,
                              prj_replay_fn fn, void *ctx)
{
    if (!per_txn)
        per_txn = DEFAULT_TXN;
    batch b = {.ptrs = guild_xcalloc(PAGE, sizeof *b.ptrs),
               .recs = guild_xcalloc(PAGE, sizeof *b.recs),
               .raws = guild_xcalloc(PAGE, sizeof *b.raws),
               .stop_at = stop_at};
    guild_status st = GUILD_OK;
    bool done = false;
    while (st == GUILD_OK && !done) {
        if (stop_at && prj_store_position(s) >= stop_at)
            break;
        prj_session *x;
        int rc = prj__reserve(s);
        if (rc == 0)
            rc = prj__session_begin(s, &x);
        if (rc) {
            st = prj__lmdb_status(rc, "beginning a replay transaction");
            break;
        }
        size_t in_txn = 0;
        uint64_t read_to = prj__session_position(x);
        while (rc == 0 && in_txn < per_txn && !done) {
            st = batch_read(log, &b, prj__session_position(x) + 1, PAGE);
            if (st != GUILD_OK || b.n == 0) {
                done = true;
                break;
            }
            prj_batch_stats stats = {0};
            uint64_t t0 = guild_mono_ns();
            rc = prj__session_apply(x, b.ptrs, b.n, &stats);
            double secs = (double)(guild_mono_ns() - t0) / 1e9;
            size_t got = b.n;
            read_to = b.recs[b.n - 1].position;
            batch_drop(&b);
            if (rc)
                break;
            in_txn += got;
            if (fn && fn(ctx, prj__session_position(x), &stats, got, secs))
                done = true;
            if (got < PAGE)
                done = true; /* the end of the log (or of stop_at) */
        }
        bool commit = rc == 0 && st == GUILD_OK;
        uint64_t t0 = guild_mono_ns();
        int end = prj__session_end(x, commit);
        if (commit && end == 0 && fn && in_txn)
            fn(ctx, prj_store_position(s), &(prj_batch_stats){0}, 0,
               (double)(guild_mono_ns() - t0) / 1e9); /* the commit's time */
        if (!commit && rc == -1) {
            /* An event failed: that stretch again, parking what fails. */
            st = replay_carefully(s, log, &b, read_to);
            done = false;
        } else if (rc == MDB_MAP_FULL || end == MDB_MAP_FULL) {
            if ((rc = prj__grow(s)))
                st = prj__lmdb_status(rc, "growing the read model");
            done = false;
        } else if (rc) {
            st = prj__lmdb_status(rc, "replaying");
        } else if (end) {
            st = prj__lmdb_status(end, "committing a replay transaction");
        }
    }
    free(b.ptrs);
    free(b.recs);
    free(b.raws);
    return st;
}
