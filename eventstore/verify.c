/*
 * verify.c — walks a store and checks everything the hash chain and the
 * indexes promise, reporting the first break.
 *
 * Two sequential walks over one snapshot, so the index and the log they
 * compare are of the same moment while the writer goes on:
 *
 *   1. the streams index, in key order (stream, then version), beside the
 *      heads database in the same order: each stream's versions run 1, 2, 3
 *      at rising positions and end at the version its head names. Every
 *      entry leaves a keyed tag of (stream, version) in a table indexed by
 *      position, and every head the position and hash it names.
 *   2. the log, in position order: gapless positions, each record decodes,
 *      prev is the hash before it and the hash recomputes. The walk notes,
 *      by position, the tag the index must hold there (up to the index
 *      checkpoint every position must carry one; after it each stream's
 *      versions must follow on from its head) and the record's hash.
 *
 * Then the two tables are compared position by position, and each head
 * with the hash noted at its position. Nothing is looked up at random, so
 * the walks run at the speed of reading the store. The index walk runs on
 * a thread of its own (when a second read transaction sees the same
 * snapshot), and decoding and hashing the log are shared by two threads.
 */
#include "eventstore/internal.h"

#include "common/alloc.h"
#include "common/prefetch.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define CHUNK 65536 /* records between progress calls */
#define BATCH 2048  /* records decoded and hashed together by both threads */

/* ---- reports -------------------------------------------------------------- */

static void set_break(es_verify_report *rep, uint64_t pos, const char *stream, size_t n,
                      const char *fmt, va_list ap)
{
    rep->intact = false;
    rep->break_position = pos;
    rep->stream[0] = 0;
    if (stream && n)
        snprintf(rep->stream, sizeof rep->stream, "%.*s", (int)n, stream);
    vsnprintf(rep->what, sizeof rep->what, fmt, ap);
}

static void report_break(es_verify_report *rep, uint64_t pos, const es_str *stream, const char *fmt,
                         ...) __attribute__((format(printf, 4, 5)));

static void report_break(es_verify_report *rep, uint64_t pos, const es_str *stream, const char *fmt,
                         ...)
{
    va_list ap;
    va_start(ap, fmt);
    set_break(rep, pos, stream ? stream->p : NULL, stream ? stream->n : 0, fmt, ap);
    va_end(ap);
}

/* ---- pass 1: the streams index and the heads ------------------------------ */

typedef struct head_check {
    uint64_t position; /* of the stream's last indexed version */
    uint8_t hash[ES_HASH_LEN];
} head_check;

typedef struct index_walk {
    es_store *st;
    uint64_t total; /* last position of the log */
    uint64_t tag_key[crypto_shorthash_KEYBYTES / 8];
    uint64_t *tags;    /* [position] = tag, 0 = not indexed */
    head_check *heads; /* sorted by position after the walk */
    size_t n_heads, heads_cap;
    es_verify_report brk; /* the earliest break found */
    MDB_cursor *hcur;
    MDB_val hk, hv;
    int hrc; /* state of the heads cursor */
    /* the stream being walked */
    uint8_t stream[ES_STREAM_MAX];
    size_t len;
    uint64_t version, position, tag;
} index_walk;

/* A tag of (stream, version): a keyed hash of the stream mixed with the
 * version. Keyed, so nobody who can edit the files can make two pairs share
 * a tag; the multiplier is odd, so one stream's versions never do. Never 0. */
static uint64_t stream_tag(const uint64_t key[2], const void *stream, size_t n)
{
    uint64_t t;
    crypto_shorthash((uint8_t *)&t, stream, n, (const uint8_t *)key);
    return t;
}

static uint64_t version_tag(uint64_t stream_tag, uint64_t version)
{
    uint64_t t = stream_tag ^ (version * 0x9e3779b97f4a7c15ull);
    return t ? t : 1;
}

static uint64_t tag_of(const uint64_t key[2], const void *stream, size_t n, uint64_t version)
{
    return version_tag(stream_tag(key, stream, n), version);
}

static void index_break(index_walk *w, uint64_t pos, const void *stream, size_t n, const char *fmt,
                        ...) __attribute__((format(printf, 5, 6)));

static void index_break(index_walk *w, uint64_t pos, const void *stream, size_t n, const char *fmt,
                        ...)
{
    if (!w->brk.intact && w->brk.break_position <= pos)
        return; /* an earlier one is already known */
    va_list ap;
    va_start(ap, fmt);
    set_break(&w->brk, pos, stream, n, fmt, ap);
    va_end(ap);
}

static int key_cmp(const void *a, size_t an, const void *b, size_t bn)
{
    int c = memcmp(a, b, an < bn ? an : bn);
    return c ? c : (an > bn) - (an < bn);
}

/* Closes the stream just walked against the heads cursor: heads before it
 * have no events; its own head must name its last version. */
static int finish_stream(index_walk *w)
{
    while (w->hrc == 0 && key_cmp(w->hk.mv_data, w->hk.mv_size, w->stream, w->len) < 0) {
        index_break(w, 0, w->hk.mv_data, w->hk.mv_size, "stream head has no events in the index");
        w->hrc = mdb_cursor_get(w->hcur, &w->hk, &w->hv, MDB_NEXT);
    }
    if (w->len == 0)
        return w->hrc == MDB_NOTFOUND ? 0 : w->hrc;
    if (w->hrc == 0 && key_cmp(w->hk.mv_data, w->hk.mv_size, w->stream, w->len) == 0) {
        if (w->hv.mv_size != 8 + ES_HASH_LEN || es__u64_get(w->hv.mv_data) != w->version) {
            index_break(w, w->position, w->stream, w->len,
                        "stream head does not name its last version %llu",
                        (unsigned long long)w->version);
        } else {
            if (w->n_heads == w->heads_cap) {
                w->heads_cap = w->heads_cap ? w->heads_cap * 2 : 1024;
                w->heads = guild_xrealloc(w->heads, w->heads_cap * sizeof *w->heads);
            }
            head_check *h = &w->heads[w->n_heads++];
            h->position = w->position;
            memcpy(h->hash, (uint8_t *)w->hv.mv_data + 8, ES_HASH_LEN);
        }
        w->hrc = mdb_cursor_get(w->hcur, &w->hk, &w->hv, MDB_NEXT);
    } else if (w->hrc == 0 || w->hrc == MDB_NOTFOUND) {
        index_break(w, w->position, w->stream, w->len, "stream has no head");
    }
    return w->hrc == MDB_NOTFOUND ? 0 : w->hrc;
}

static void index_entry(index_walk *w, const MDB_val *k, const MDB_val *v)
{
    size_t n = k->mv_size > 9 ? k->mv_size - 9 : 0;
    const uint8_t *key = k->mv_data;
    if (n == 0 || n > ES_STREAM_MAX || key[n] != 0 || v->mv_size != 8) {
        index_break(w, 0, NULL, 0, "malformed stream index entry");
        return;
    }
    uint64_t version = es__u64_get(key + n + 1), pos = es__u64_get(v->mv_data);
    if (n != w->len || memcmp(key, w->stream, n) != 0) {
        finish_stream(w);
        memcpy(w->stream, key, n);
        w->len = n;
        w->version = 0;
        w->position = 0;
        w->tag = stream_tag(w->tag_key, key, n);
    }
    if (version != w->version + 1)
        index_break(w, pos, key, n, "stream index goes from version %llu to %llu",
                    (unsigned long long)w->version, (unsigned long long)version);
    else if (pos <= w->position)
        index_break(w, pos, key, n, "stream index puts version %llu before version %llu",
                    (unsigned long long)version, (unsigned long long)w->version);
    if (pos == 0 || pos > w->total)
        index_break(w, w->total + 1, key, n, "stream index maps version %llu past the log's end",
                    (unsigned long long)version);
    else if (w->tags[pos])
        index_break(w, pos, key, n, "two stream index entries map position %llu",
                    (unsigned long long)pos);
    else
        w->tags[pos] = version_tag(w->tag, version);
    w->version = version;
    w->position = pos;
}

static int head_check_cmp(const void *a, const void *b)
{
    uint64_t x = ((const head_check *)a)->position, y = ((const head_check *)b)->position;
    return (x > y) - (x < y);
}

/* Each head's hash must be that of the record at its stream's last indexed
 * position. The log walk recomputed every record's hash and kept its first
 * 8 bytes by position (a head is derived data: 64 bits tell a wrong one from
 * the right one as surely as 256 here). Only positions up to `end` were
 * walked. The record is read again only to name the stream of a bad head. */
static void check_heads(index_walk *w, MDB_txn *txn, const uint64_t *h8, uint64_t end)
{
    for (size_t i = 0; i < w->n_heads; i++) {
        const head_check *h = &w->heads[i];
        if (h->position > end || (!w->brk.intact && w->brk.break_position <= h->position))
            break;
        if (memcmp(h->hash, &h8[h->position], sizeof *h8) == 0)
            continue;
        uint8_t key[8];
        es__u64_put(key, h->position);
        MDB_val k = {8, key}, v;
        es_record rec = {0};
        if (mdb_get(txn, w->st->db_log, &k, &v) ||
            es_record_decode(v.mv_data, v.mv_size, &rec) != GUILD_OK)
            memset(&rec, 0, sizeof rec);
        index_break(w, h->position, rec.stream.p, rec.stream.n,
                    "stream head does not match its last event");
        break;
    }
}

static int walk_index(index_walk *w, MDB_txn *txn)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, w->st->db_streams, &cur);
    if (rc)
        return rc;
    if ((rc = mdb_cursor_open(txn, w->st->db_heads, &w->hcur))) {
        mdb_cursor_close(cur);
        return rc;
    }
    w->hrc = mdb_cursor_get(w->hcur, &w->hk, &w->hv, MDB_FIRST);
    /* Entries are taken LOOK at a time and their tag slots fetched into the
     * cache together: the slots are scattered over the table, and one miss
     * after another is most of the walk's time. */
    enum { LOOK = 32 };
    MDB_val ks[LOOK], vs[LOOK];
    int n = 0;
    for (rc = mdb_cursor_get(cur, &ks[0], &vs[0], MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &ks[n], &vs[n], MDB_NEXT)) {
        uint64_t pos = vs[n].mv_size == 8 ? es__u64_get(vs[n].mv_data) : 0;
        __builtin_prefetch(&w->tags[pos <= w->total ? pos : 0], 1);
        if (++n == LOOK) {
            for (int i = 0; i < n; i++)
                index_entry(w, &ks[i], &vs[i]);
            n = 0;
        }
    }
    for (int i = 0; i < n && rc == MDB_NOTFOUND; i++)
        index_entry(w, &ks[i], &vs[i]);
    if (rc == MDB_NOTFOUND) {
        rc = finish_stream(w);
        w->len = 0;
        if (!rc)
            rc = finish_stream(w); /* heads after the last stream */
    }
    mdb_cursor_close(w->hcur);
    mdb_cursor_close(cur);
    if (w->n_heads)
        qsort(w->heads, w->n_heads, sizeof *w->heads, head_check_cmp);
    return rc;
}

/* ---- hashing on two threads ----------------------------------------------- */

/* Decoding and hashing are most of the work and each record's are its own,
 * so they run on two threads: while the walking thread reads the next batch
 * from the log and checks the last one in order, the worker decodes and
 * hashes the batch between them, and the walking thread joins in when it has
 * nothing else to do. */

typedef struct hash_batch {
    MDB_val keys[BATCH], recs[BATCH];
    es_record dec[BATCH];
    guild_status decoded[BATCH];
    bool ok[BATCH];
    uint64_t tag[BATCH]; /* of the record's (stream, version) */
    const uint64_t *tag_key;
    size_t n;
    atomic_size_t next; /* first record not yet taken by a thread */
    atomic_size_t done; /* records finished */
} hash_batch;

typedef struct hasher {
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    hash_batch *posted; /* a batch for the worker to join */
    bool stop, running;
} hasher;

/* Decodes and hashes the records of b not taken yet, a slice at a time. */
static void hash_share(hash_batch *b)
{
    enum { SLICE = 32 };
    for (;;) {
        size_t from = atomic_fetch_add(&b->next, SLICE);
        if (from >= b->n)
            return;
        size_t to = from + SLICE < b->n ? from + SLICE : b->n;
        /* The records come from the map, mostly in no cache yet: ask for
         * the whole slice at once rather than miss line by line. */
        for (size_t i = from; i < to; i++)
            guild_prefetch(b->recs[i].mv_data, b->recs[i].mv_size);
        for (size_t i = from; i < to; i++) {
            es_record *r = &b->dec[i];
            b->decoded[i] = es_record_decode(b->recs[i].mv_data, b->recs[i].mv_size, r);
            b->ok[i] = b->decoded[i] == GUILD_OK && es_record_hash_ok(r);
            if (b->ok[i] && r->stream.n && r->stream.n <= ES_STREAM_MAX)
                b->tag[i] = tag_of(b->tag_key, r->stream.p, r->stream.n, r->version);
        }
        atomic_fetch_add(&b->done, to - from);
    }
}

static void *hasher_main(void *arg)
{
    hasher *h = arg;
    pthread_mutex_lock(&h->mu);
    for (;;) {
        while (!h->posted && !h->stop)
            pthread_cond_wait(&h->cv, &h->mu);
        if (h->stop)
            break;
        hash_batch *b = h->posted;
        h->posted = NULL;
        pthread_mutex_unlock(&h->mu);
        hash_share(b);
        pthread_mutex_lock(&h->mu);
    }
    pthread_mutex_unlock(&h->mu);
    return NULL;
}

static void hasher_start(hasher *h)
{
    memset(h, 0, sizeof *h);
    pthread_mutex_init(&h->mu, NULL);
    pthread_cond_init(&h->cv, NULL);
    h->running = pthread_create(&h->thread, NULL, hasher_main, h) == 0;
}

static void hasher_stop(hasher *h)
{
    if (h->running) {
        pthread_mutex_lock(&h->mu);
        h->stop = true;
        pthread_cond_broadcast(&h->cv);
        pthread_mutex_unlock(&h->mu);
        pthread_join(h->thread, NULL);
    }
    pthread_cond_destroy(&h->cv);
    pthread_mutex_destroy(&h->mu);
}

/* Hands a full batch to the worker. */
static void hasher_post(hasher *h, hash_batch *b)
{
    atomic_store(&b->next, 0);
    atomic_store(&b->done, 0);
    if (!h->running)
        return;
    pthread_mutex_lock(&h->mu);
    h->posted = b;
    pthread_cond_signal(&h->cv);
    pthread_mutex_unlock(&h->mu);
}

/* Joins in on b until every record of it is decoded and hashed. */
static void hasher_finish(hash_batch *b)
{
    hash_share(b);
    while (atomic_load(&b->done) < b->n)
        sched_yield(); /* the worker's last slice */
}

/* ---- pass 2: the log ------------------------------------------------------ */

typedef struct log_walk {
    es_store *st;
    MDB_txn *txn;
    es_verify_report *rep;
    index_walk *idx;
    uint64_t expect;                /* next position expected */
    uint8_t last_hash[ES_HASH_LEN]; /* hash of position expect-1 */
    uint64_t checkpoint;            /* index complete up to here */
    uint8_t checkpoint_hash[ES_HASH_LEN];
    uint64_t *want; /* [position] = the tag the index must hold there */
    uint64_t *h8;   /* [position] = the first 8 bytes of the record's hash */
    es_tail tail;   /* versions seen after the checkpoint */
} log_walk;

/* The index must map this record's (stream, version) to pos; compared
 * with what the index walk found once both walks are done. */
static bool expect_tag(log_walk *lw, uint64_t tag, uint64_t pos)
{
    lw->want[pos] = tag;
    return true;
}

/* After the checkpoint the index is not on disk yet: each stream's versions
 * must follow on from its head at the checkpoint. */
static bool check_tail_version(log_walk *lw, const es_record *rec, uint64_t tag, uint64_t pos)
{
    es_tail_stream *e = es_tail_find(&lw->tail, rec->stream.p, rec->stream.n);
    if (!e) {
        uint64_t base;
        if (es__head_db_get(lw->st, lw->txn, rec->stream.p, rec->stream.n, &base, NULL))
            base = 0;
        /* A later checkpoint slice may have indexed it already. */
        if (rec->version <= base)
            return expect_tag(lw, tag, pos);
        e = es_tail_upsert(&lw->tail, rec->stream.p, rec->stream.n, base);
    }
    if (rec->version != e->version + 1) {
        report_break(lw->rep, pos, &rec->stream, "version %llu follows version %llu",
                     (unsigned long long)rec->version, (unsigned long long)e->version);
        return false;
    }
    es_tail_push(&lw->tail, e, pos, rec->hash);
    es_tail_commit(&lw->tail, pos);
    return true;
}

static bool check_record(log_walk *lw, const MDB_val *k, const hash_batch *b, size_t i)
{
    es_verify_report *rep = lw->rep;
    uint64_t pos = k->mv_size == 8 ? es__u64_get(k->mv_data) : 0;
    if (pos != lw->expect) {
        report_break(rep, lw->expect, NULL, "position %llu is missing (next found: %llu)",
                     (unsigned long long)lw->expect, (unsigned long long)pos);
        return false;
    }
    if (b->decoded[i] != GUILD_OK) {
        report_break(rep, pos, NULL, "record does not decode");
        return false;
    }
    const es_record *rec = &b->dec[i];
    if (rec->position != pos) {
        report_break(rep, pos, &rec->stream, "record says position %llu",
                     (unsigned long long)rec->position);
        return false;
    }
    if (memcmp(rec->prev, lw->last_hash, ES_HASH_LEN) != 0) {
        report_break(rep, pos, &rec->stream, "prev does not match the hash of position %llu",
                     (unsigned long long)pos - 1);
        return false;
    }
    if (!b->ok[i]) {
        report_break(rep, pos, &rec->stream, "hash does not match the record's bytes");
        return false;
    }
    if (rec->stream.n == 0 || rec->stream.n > ES_STREAM_MAX) {
        report_break(rep, pos, NULL, "record has an invalid stream id");
        return false;
    }
    if (pos <= lw->checkpoint) {
        if (!expect_tag(lw, b->tag[i], pos))
            return false;
        if (pos == lw->checkpoint && memcmp(rec->hash, lw->checkpoint_hash, ES_HASH_LEN) != 0) {
            report_break(rep, pos, &rec->stream, "the index checkpoint's hash does not match");
            return false;
        }
    } else if (!check_tail_version(lw, rec, b->tag[i], pos)) {
        return false;
    }
    memcpy(lw->last_hash, rec->hash, ES_HASH_LEN);
    memcpy(&lw->h8[pos], rec->hash, sizeof lw->h8[pos]);
    lw->expect = pos + 1;
    rep->checked++;
    return true;
}

/* Checks b's records in order once they are decoded and hashed. */
static bool check_batch(log_walk *lw, const hash_batch *b)
{
    for (size_t i = 0; i < b->n; i++)
        if (!check_record(lw, &b->keys[i], b, i))
            return false;
    return true;
}

/* Reads up to BATCH records into b; MDB_NOTFOUND at the end of the log. */
static int fill_batch(MDB_cursor *cur, hash_batch *b, MDB_cursor_op *op)
{
    int rc = 0;
    b->n = 0;
    while (b->n < BATCH) {
        if ((rc = mdb_cursor_get(cur, &b->keys[b->n], &b->recs[b->n], *op)))
            break;
        *op = MDB_NEXT;
        if (!es__is_command_key(&b->keys[b->n])) /* results are outside the chain */
            b->n++;
    }
    return rc;
}

static int walk_log(log_walk *lw, MDB_cursor *cur, uint64_t total, es_progress_fn progress,
                    void *ctx)
{
    hasher h;
    hasher_start(&h);
    hash_batch *b[2] = {guild_xcalloc(1, sizeof **b), guild_xcalloc(1, sizeof **b)};
    b[0]->tag_key = b[1]->tag_key = lw->idx->tag_key;
    MDB_cursor_op op = MDB_FIRST;
    int rc = fill_batch(cur, b[0], &op);
    hasher_post(&h, b[0]);
    uint64_t last_progress = 0;
    for (;;) {
        hash_batch *now = b[0], *next = b[1];
        if (rc == 0)
            rc = fill_batch(cur, next, &op);
        else
            next->n = 0;
        hasher_finish(now);
        if (next->n)
            hasher_post(&h, next);
        if (!check_batch(lw, now) || next->n == 0)
            break;
        if (progress && lw->rep->checked - last_progress >= CHUNK) {
            last_progress = lw->rep->checked;
            progress(ctx, lw->rep->checked, total);
        }
        b[0] = next;
        b[1] = now;
    }
    hasher_stop(&h); /* after the worker let go of the batch posted last */
    free(b[0]);
    free(b[1]);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* ---- the walk ------------------------------------------------------------- */

/* The index walk runs on its own thread in a second read transaction when
 * that sees the same snapshot as the log walk's (it does unless the writer
 * committed in between); otherwise it runs after the log walk, in the same
 * transaction. */
typedef struct index_job {
    index_walk *w;
    MDB_env *env;
    size_t snapshot; /* the log walk's transaction id */
    bool walked;
    int rc;
} index_job;

static void *index_main(void *arg)
{
    index_job *j = arg;
    MDB_txn *txn;
    /* The log walk's transaction holds the map's size for this one too. */
    if (mdb_txn_begin(j->env, NULL, MDB_RDONLY, &txn))
        return NULL;
    if (mdb_txn_id(txn) == j->snapshot) {
        j->rc = walk_index(j->w, txn);
        j->walked = true;
    }
    mdb_txn_abort(txn);
    return NULL;
}

/* The first position up to `end` where the index and the log disagree. */
static void compare_tags(es_store *st, MDB_txn *txn, const index_walk *w, const uint64_t *want,
                         uint64_t end, es_verify_report *rep)
{
    for (uint64_t pos = 1; pos <= end; pos++) {
        if (w->tags[pos] == want[pos])
            continue;
        uint8_t key[8];
        es__u64_put(key, pos);
        MDB_val k = {8, key}, v;
        es_record rec = {0};
        if (mdb_get(txn, st->db_log, &k, &v) ||
            es_record_decode(v.mv_data, v.mv_size, &rec) != GUILD_OK)
            memset(&rec, 0, sizeof rec); /* the log walk read it; cannot happen */
        if (want[pos] == 0)
            report_break(rep, pos, &rec.stream,
                         "stream index maps version %llu here, past the stream's head",
                         (unsigned long long)rec.version);
        else
            report_break(rep, pos, &rec.stream, "stream index does not map version %llu here",
                         (unsigned long long)rec.version);
        return;
    }
}

guild_status es_verify(es_store *st, es_verify_report *rep, es_progress_fn progress, void *ctx)
{
    memset(rep, 0, sizeof *rep);
    rep->intact = true;
    index_walk w = {.st = st, .brk = {.intact = true}};
    log_walk lw = {.st = st, .rep = rep, .idx = &w, .expect = 1};
    es_tail_init(&lw.tail);
    crypto_shorthash_keygen((uint8_t *)w.tag_key);
    es_chain chain;
    MDB_cursor *cur = NULL;
    guild_status s = GUILD_OK;
    int rc = es__read_begin(st, &lw.txn);
    if (rc)
        return es__lmdb_status(NULL, rc, "beginning a read");
    if ((rc = es__chain_load(st, lw.txn, &chain)) ||
        (rc = es__checkpoint_get(st, lw.txn, &lw.checkpoint, lw.checkpoint_hash)) ||
        (rc = mdb_cursor_open(lw.txn, st->db_log, &cur))) {
        s = es__lmdb_status(NULL, rc, "reading the log's head");
        goto leave;
    }
    uint64_t total = chain.next_position - 1;
    rep->last_position = total;
    w.total = total;
    w.tags = guild_xcalloc(total + 2, sizeof *w.tags);
    lw.want = guild_xcalloc(total + 2, sizeof *lw.want);
    lw.h8 = guild_xcalloc(total + 2, sizeof *lw.h8);

    /* Both walks read the whole file: have the kernel read it in ahead of
     * them instead of a fault at a time. */
    MDB_envinfo info;
    MDB_stat ms;
    if (mdb_env_info(st->env, &info) == 0 && mdb_env_stat(st->env, &ms) == 0 && info.me_mapaddr)
        madvise(info.me_mapaddr, (size_t)(info.me_last_pgno + 1) * ms.ms_psize, MADV_WILLNEED);
    index_job job = {.w = &w, .env = st->env, .snapshot = mdb_txn_id(lw.txn)};
    pthread_t index_thread;
    bool threaded = pthread_create(&index_thread, NULL, index_main, &job) == 0;
    rc = walk_log(&lw, cur, total, progress, ctx);
    if (threaded)
        pthread_join(index_thread, NULL);
    if (rc) {
        s = es__lmdb_status(NULL, rc, "reading the log");
        goto leave;
    }
    if (!job.walked)
        job.rc = walk_index(&w, lw.txn);
    if (job.rc) {
        s = es__lmdb_status(NULL, job.rc, "reading the stream index");
        goto leave;
    }
    if (rep->intact && lw.expect - 1 < total)
        report_break(rep, lw.expect, NULL, "the log ends early at %llu of %llu",
                     (unsigned long long)lw.expect - 1, (unsigned long long)total);
    /* A log that ends before its index checkpoint (its last records gone)
     * breaks just after its end, once the records it still has are walked,
     * so that an earlier break is the one named. */
    if (rep->intact && lw.checkpoint > total)
        report_break(rep, total + 1, NULL, "the log ends at %llu before the checkpoint at %llu",
                     (unsigned long long)total, (unsigned long long)lw.checkpoint);
    /* Where the log walk stopped, nothing after it is compared. */
    uint64_t walked = rep->intact ? total : rep->break_position - 1;
    compare_tags(st, lw.txn, &w, lw.want, walked, rep);
    check_heads(&w, lw.txn, lw.h8, walked);

    /* A break in the index counts if the log walk found none before it. */
    if (!w.brk.intact && (rep->intact || w.brk.break_position < rep->break_position)) {
        uint64_t checked = rep->checked;
        *rep = w.brk;
        rep->checked = checked;
        rep->last_position = total;
    }
    /* What checks out is what comes before the break. */
    if (!rep->intact && rep->break_position > 0 && rep->checked > rep->break_position - 1)
        rep->checked = rep->break_position - 1;
    if (progress)
        progress(ctx, rep->checked, total);
leave:
    if (cur)
        mdb_cursor_close(cur);
    es__read_end(st, lw.txn);
    es_tail_release(&lw.tail);
    free(w.tags);
    free(w.heads);
    free(lw.want);
    free(lw.h8);
    return s;
}
