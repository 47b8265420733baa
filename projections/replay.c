/* replay.c — folding a domain's LMDB log into a read model: the loop behind
 * `guild project rebuild`, `guild events replay` and the rebuild bench. */
#include "projections/prj.h"
#include "projections/store_internal.h"

#include "common/alloc.h"
#include "common/clock.h"
#include "common/codec.h"

#include <lmdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define PAGE 4096           /* records read from the log at a time */
#define DEFAULT_TXN 1048576 /* events to a transaction: each row is written once a transaction */
#define TXN_BYTES_PER_EVENT 2048 /* map room a transaction is given per event, at most */

typedef struct batch {
    const es_record **ptrs;
    es_record *recs;
    size_t *offs; /* where each record's copy starts in buf */
    uint8_t *buf; /* the page's records, copied out one after another */
    size_t used, cap;
    bool *checked; /* the record's data passed the codec's check */
    size_t n;
    uint64_t stop_at;
} batch;

/* The read transaction ends before apply: each record is copied out, into
 * one buffer the batch keeps from page to page. */
static int collect(void *ctx, const es_record *rec)
{
    batch *b = ctx;
    if (b->stop_at && rec->position > b->stop_at)
        return 1;
    if (b->used + rec->raw_len > b->cap) {
        size_t cap = b->cap ? b->cap : 1 << 20;
        while (cap < b->used + rec->raw_len)
            cap *= 2;
        b->buf = guild_xrealloc(b->buf, cap);
        b->cap = cap;
    }
    memcpy(b->buf + b->used, rec->raw, rec->raw_len);
    b->offs[b->n] = b->used;
    b->used += rec->raw_len;
    b->recs[b->n] = *rec; /* still pointing into the log: rebased below */
    b->n++;
    return 0;
}

/* Reads the next page of the log after `from` into b. */
static guild_status batch_read(es_store *log, batch *b, uint64_t from, size_t page)
{
    b->n = 0;
    b->used = 0;
    uint64_t next = from;
    guild_status st = es_read_log(log, from, page, collect, b, &next);
    for (size_t i = 0; i < b->n; i++) {
        es_record_rebase(&b->recs[i], b->buf + b->offs[i]);
        b->ptrs[i] = &b->recs[i];
    }
    return st;
}

static void batch_drop(batch *b)
{
    b->n = 0;
    b->used = 0;
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

/* ---- reading ahead ------------------------------------------------------------
 * A second thread reads the next page of the log (and copies it out) while
 * this one applies the page before: reading is about a tenth of a replay. */

typedef struct reader {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    es_store *log;
    bool check;    /* also check each event's data (the model reads msgpack) */
    batch *b;      /* the page being read, or read and not taken */
    uint64_t from; /* its first position */
    bool busy, stop, running;
    guild_status st;
} reader;

/* Reads the page at `from` into b, checking each event's data when the
 * model reads it as msgpack: off the applying thread. */
static guild_status read_page(reader *r, batch *b, uint64_t from)
{
    guild_status st = batch_read(r->log, b, from, PAGE);
    for (size_t i = 0; i < b->n; i++)
        b->checked[i] = r->check && guild_codec_check_msgpack(b->recs[i].data, b->recs[i].data_len,
                                                              NULL) == GUILD_OK;
    return st;
}

static void *reader_main(void *arg)
{
    reader *r = arg;
    pthread_mutex_lock(&r->mu);
    for (;;) {
        while (!r->busy && !r->stop)
            pthread_cond_wait(&r->cv, &r->mu);
        if (r->stop)
            break;
        batch *b = r->b;
        uint64_t from = r->from;
        pthread_mutex_unlock(&r->mu);
        guild_status st = read_page(r, b, from);
        pthread_mutex_lock(&r->mu);
        r->st = st;
        r->busy = false;
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    return NULL;
}

static void reader_start(reader *r, es_store *log, bool check)
{
    memset(r, 0, sizeof *r);
    r->log = log;
    r->check = check;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    r->running = pthread_create(&r->thread, NULL, reader_main, r) == 0;
}

/* Starts reading the page at `from` into b (at once when there is no
 * thread). */
static void reader_ask(reader *r, batch *b, uint64_t from)
{
    if (!r->running) {
        r->b = b;
        r->from = from;
        r->st = read_page(r, b, from);
        return;
    }
    pthread_mutex_lock(&r->mu);
    r->b = b;
    r->from = from;
    r->busy = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

/* The page asked for, once read; NULL when none was asked for. */
static batch *reader_take(reader *r, guild_status *st)
{
    pthread_mutex_lock(&r->mu);
    while (r->busy)
        pthread_cond_wait(&r->cv, &r->mu);
    batch *b = r->b;
    *st = r->st;
    r->b = NULL;
    pthread_mutex_unlock(&r->mu);
    return b;
}

/* Drops a page read ahead that will not be used. */
static void reader_drop(reader *r)
{
    guild_status st;
    batch *b = reader_take(r, &st);
    if (b)
        batch_drop(b);
}

static void reader_stop(reader *r)
{
    reader_drop(r);
    if (r->running) {
        pthread_mutex_lock(&r->mu);
        r->stop = true;
        pthread_cond_broadcast(&r->cv);
        pthread_mutex_unlock(&r->mu);
        pthread_join(r->thread, NULL);
    }
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
}

static void batch_init(batch *b, uint64_t stop_at)
{
    *b = (batch){.ptrs = guild_xcalloc(PAGE, sizeof *b->ptrs),
                 .recs = guild_xcalloc(PAGE, sizeof *b->recs),
                 .offs = guild_xcalloc(PAGE, sizeof *b->offs),
                 .checked = guild_xcalloc(PAGE, sizeof *b->checked),
                 .stop_at = stop_at};
}

static void batch_free(batch *b)
{
    batch_drop(b);
    free(b->ptrs);
    free(b->recs);
    free(b->offs);
    free(b->buf);
    free(b->checked);
}

/* ---- the loop ---------------------------------------------------------------- */

guild_status prj_store_replay(prj_store *s, es_store *log, uint64_t stop_at, size_t per_txn,
                              prj_replay_fn fn, void *ctx)
{
    if (!per_txn)
        per_txn = DEFAULT_TXN;
    batch pages[3]; /* two to read into in turn, one for replay_carefully */
    for (int i = 0; i < 3; i++)
        batch_init(&pages[i], stop_at);
    reader rd;
    reader_start(&rd, log, prj__reads_msgpack(s));
    int turn = 0;
    guild_status st = GUILD_OK;
    bool done = false;
    while (st == GUILD_OK && !done) {
        if (stop_at && prj_store_position(s) >= stop_at)
            break;
        prj_session *x;
        int rc = prj__reserve(s, per_txn * TXN_BYTES_PER_EVENT);
        if (rc == 0)
            rc = prj__session_begin(s, &x);
        if (rc) {
            st = prj__lmdb_status(rc, "beginning a replay transaction");
            break;
        }
        /* A page read ahead is good if it starts where this transaction
         * does (the last one committed); otherwise read afresh. */
        uint64_t start = prj__session_position(x) + 1, head = 0;
        /* About a key an event: a cache sized for the transaction at once
         * never moves its entries to grow. */
        if (es_log_head(log, &head, NULL) == GUILD_OK && head >= start)
            prj__session_reserve(x,
                                 (size_t)(head - start + 1 < per_txn ? head - start + 1 : per_txn));
        if (!rd.b || rd.from != start) {
            reader_drop(&rd);
            reader_ask(&rd, &pages[turn], start);
        }
        size_t in_txn = 0;
        uint64_t read_to = prj__session_position(x);
        while (rc == 0 && in_txn < per_txn && !done) {
            batch *b = reader_take(&rd, &st);
            if (st != GUILD_OK || !b || b->n == 0) {
                if (b)
                    batch_drop(b);
                done = true;
                break;
            }
            size_t got = b->n;
            read_to = b->recs[got - 1].position;
            bool last = got < PAGE; /* the end of the log (or of stop_at) */
            turn = b == &pages[0];  /* the other page reads ahead */
            if (!last)
                reader_ask(&rd, &pages[turn], read_to + 1);
            prj_batch_stats stats = {0};
            uint64_t t0 = guild_mono_ns();
            rc = prj__session_apply(x, b->ptrs, b->checked, b->n, &stats);
            double secs = (double)(guild_mono_ns() - t0) / 1e9;
            batch_drop(b);
            if (rc)
                break;
            in_txn += got;
            if (fn && fn(ctx, prj__session_position(x), &stats, got, secs))
                done = true;
            if (last)
                done = true;
        }
        bool commit = rc == 0 && st == GUILD_OK;
        uint64_t t0 = guild_mono_ns();
        int end = prj__session_end(x, commit);
        if (commit && end == 0 && fn && in_txn)
            fn(ctx, prj_store_position(s), &(prj_batch_stats){0}, 0,
               (double)(guild_mono_ns() - t0) / 1e9); /* the commit's time */
        if ((!commit && rc == -1) || (commit && end == -1)) {
            /* An event failed, or what its row derives did when the
             * transaction was written out (prj_objtype.settle): that
             * stretch again, parking what fails. */
            reader_drop(&rd);
            st = replay_carefully(s, log, &pages[2], read_to);
            done = false;
        } else if (rc == MDB_MAP_FULL || end == MDB_MAP_FULL) {
            reader_drop(&rd);
            if ((rc = prj__grow(s)))
                st = prj__lmdb_status(rc, "growing the read model");
            done = false;
        } else if (rc) {
            st = prj__lmdb_status(rc, "replaying");
        } else if (end) {
            st = prj__lmdb_status(end, "committing a replay transaction");
        }
    }
    reader_stop(&rd);
    for (int i = 0; i < 3; i++)
        batch_free(&pages[i]);
    return st;
}
