/*
 * index.c — keeping the streams and heads databases current: the index
 * checkpoint, the replay of the log after it, and the views readers take of
 * the in-memory tail (see tail.h for why the index is written in bulk).
 *
 * Sections: the checkpoint record, replay, checkpointing (writer thread),
 * reader views.
 */
#include "eventstore/internal.h"

#include "common/alloc.h"
#include "common/log.h"

#include <stdlib.h>
#include <string.h>

/* ---- the checkpoint record ------------------------------------------------ */

int es__checkpoint_get(es_store *st, MDB_txn *txn, uint64_t *position, uint8_t *hash)
{
    MDB_val k = {strlen(ES_META_CHECKPOINT), (void *)ES_META_CHECKPOINT}, v;
    int rc = mdb_get(txn, st->db_meta, &k, &v);
    if (rc == MDB_NOTFOUND) {
        *position = 0;
        if (hash)
            memset(hash, 0, ES_HASH_LEN);
        return 0;
    }
    if (rc)
        return rc;
    if (v.mv_size != 8 + ES_HASH_LEN)
        return MDB_CORRUPTED;
    *position = es__u64_get(v.mv_data);
    if (hash)
        memcpy(hash, (uint8_t *)v.mv_data + 8, ES_HASH_LEN);
    return 0;
}

/* ---- replay --------------------------------------------------------------- */

/* Adds every record of the log from `from` to the end of txn's snapshot to
 * tail t, checking each stream's versions follow on. When `only` is given,
 * other streams are skipped. */
int es__tail_replay(es_store *st, MDB_txn *txn, es_tail *t, uint64_t from, const char *only,
                    size_t only_len)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->db_log, &cur);
    if (rc)
        return rc;
    uint8_t key[8];
    es__u64_put(key, from);
    MDB_val k = {8, key}, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (es__is_command_key(&k))
            continue;
        es_record rec;
        if (k.mv_size != 8 || es_record_decode(v.mv_data, v.mv_size, &rec) != GUILD_OK ||
            rec.stream.n == 0 || rec.stream.n > ES_STREAM_MAX) {
            rc = MDB_CORRUPTED;
            break;
        }
        uint64_t pos = es__u64_get(k.mv_data);
        if (only && (rec.stream.n != only_len || memcmp(rec.stream.p, only, only_len) != 0)) {
            t->last_position = pos;
            continue;
        }
        es_tail_stream *e = es_tail_find(t, rec.stream.p, rec.stream.n);
        if (!e) {
            uint64_t base;
            if ((rc = es__head_db_get(st, txn, rec.stream.p, rec.stream.n, &base, NULL)))
                break;
            if (rec.version <= base) {
                t->last_position = pos; /* indexed by a later slice already */
                continue;
            }
            e = es_tail_upsert(t, rec.stream.p, rec.stream.n, base);
        }
        if (rec.version <= e->version) {
            t->last_position = pos;
            continue;
        }
        if (rec.version != e->version + 1) {
            guild_error("event store: %.*s has version %llu at position %llu after %llu",
                        (int)rec.stream.n, rec.stream.p, (unsigned long long)rec.version,
                        (unsigned long long)pos, (unsigned long long)e->version);
            rc = MDB_CORRUPTED;
            break;
        }
        es_tail_push(t, e, pos, rec.hash);
        es_tail_commit(t, pos);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* ---- checkpointing (writer thread) ---------------------------------------- */

/* Index checkpoints go in slices so no single one holds the writer for
 * long. A slice walks the log from the checkpoint, takes the streams it
 * meets (oldest unindexed event first) until its budget of events is spent,
 * writes their index entries and heads, and moves the checkpoint to just
 * before the first event it did not take. The log order makes the new
 * checkpoint exact: every event at or before it is indexed. */

static int flush_stream(es_store *st, MDB_txn *txn, const es_tail_stream *e)
{
    int rc = 0;
    for (uint64_t ver = e->base + 1; ver <= e->committed && !rc; ver++) {
        uint8_t skey[ES_STREAM_KEY_MAX], pos[8];
        es__u64_put(pos, e->positions[ver - e->base - 1]);
        MDB_val k = {es__stream_key(skey, e->stream, e->len, ver), skey}, v = {8, pos};
        rc = mdb_put(txn, st->db_streams, &k, &v, 0);
    }
    if (rc)
        return rc;
    uint8_t head[8 + ES_HASH_LEN];
    es__u64_put(head, e->committed);
    memcpy(head + 8, e->committed_hash, ES_HASH_LEN);
    MDB_val k = {e->len, e->stream}, v = {sizeof head, head};
    return mdb_put(txn, st->db_heads, &k, &v, 0);
}

typedef struct slice {
    es_tail_stream **taken;
    size_t n, cap;
    uint64_t events;
    uint64_t checkpoint;
    uint8_t hash[ES_HASH_LEN];
    uint64_t commands_checkpoint; /* es.commands after the slice */
} slice;

static void take(slice *sl, es_tail_stream *e)
{
    if (sl->n == sl->cap) {
        sl->cap = sl->cap ? sl->cap * 2 : 64;
        sl->taken = guild_xrealloc(sl->taken, sl->cap * sizeof *sl->taken);
    }
    sl->taken[sl->n++] = e;
    e->touched = true; /* "taken" while the slice runs; no batch is open */
    sl->events += e->committed - e->base;
}

/* Chooses the slice's streams and its new checkpoint by walking the log. */
static int slice_plan(es_store *st, MDB_txn *txn, uint64_t budget, slice *sl)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->db_log, &cur);
    if (rc)
        return rc;
    uint8_t key[8];
    es__u64_put(key, st->tail_checkpoint + 1);
    MDB_val k = {8, key}, v;
    sl->checkpoint = st->chain.next_position - 1;
    memcpy(sl->hash, st->chain.last_hash, ES_HASH_LEN);
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (es__is_command_key(&k))
            continue;
        es_record rec;
        if (es_record_decode(v.mv_data, v.mv_size, &rec) != GUILD_OK) {
            rc = MDB_CORRUPTED;
            break;
        }
        es_tail_stream *e = es_tail_find(&st->tail, rec.stream.p, rec.stream.n);
        if (!e || rec.version <= e->base || e->touched)
            continue; /* indexed already, or taken */
        if (sl->events >= budget) {
            /* The first event left out: the checkpoint stops just before it. */
            sl->checkpoint = rec.position - 1;
            if (sl->checkpoint == 0) {
                memset(sl->hash, 0, ES_HASH_LEN);
                break;
            }
            MDB_val pk = {8, key}, pv;
            es__u64_put(key, sl->checkpoint);
            es_record prev;
            rc = mdb_get(txn, st->db_log, &pk, &pv);
            if (rc == 0 && es_record_decode(pv.mv_data, pv.mv_size, &prev) != GUILD_OK)
                rc = MDB_CORRUPTED;
            if (rc == 0)
                memcpy(sl->hash, prev.hash, ES_HASH_LEN);
            break;
        }
        take(sl, e);
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int slice_txn(es_store *st, uint64_t budget, slice *sl)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc)
        return rc;
    rc = slice_plan(st, txn, budget, sl);
    for (size_t i = 0; i < sl->n && !rc; i++)
        rc = flush_stream(st, txn, sl->taken[i]);
    if (rc == 0) {
        uint8_t cp[8 + ES_HASH_LEN];
        es__u64_put(cp, sl->checkpoint);
        memcpy(cp + 8, sl->hash, ES_HASH_LEN);
        MDB_val k = {strlen(ES_META_CHECKPOINT), (void *)ES_META_CHECKPOINT}, v = {sizeof cp, cp};
        rc = mdb_put(txn, st->db_meta, &k, &v, 0);
    }
    /* With no result waiting, `commands` is complete to the log's end:
     * say so, or opens and read-only lookups would walk the log from where
     * the last results slice left off. */
    sl->commands_checkpoint = st->commands_checkpoint;
    if (rc == 0 && st->commands.count == 0 &&
        st->commands_checkpoint < st->chain.next_position - 1) {
        sl->commands_checkpoint = st->chain.next_position - 1;
        rc = es__meta_u64_put(st, txn, ES_META_COMMANDS, sl->commands_checkpoint);
    }
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

static void slice_reset(slice *sl)
{
    for (size_t i = 0; i < sl->n; i++)
        sl->taken[i]->touched = false;
    sl->n = 0;
    sl->events = 0;
}

int es__checkpoint_slice(es_store *st, uint64_t budget)
{
    if (st->tail.events == 0)
        return 0;
    slice sl = {0};
    int rc;
    for (;;) {
        rc = slice_txn(st, budget, &sl);
        if (rc != MDB_MAP_FULL)
            break;
        slice_reset(&sl);
        if ((rc = es__grow_map(st)))
            break;
    }
    if (rc) {
        slice_reset(&sl);
        free(sl.taken);
        guild_error("event store: index checkpoint failed: %s", mdb_strerror(rc));
        return rc;
    }
    pthread_mutex_lock(&st->tail_lock);
    for (size_t i = 0; i < sl.n; i++) {
        es_tail_stream *e = sl.taken[i];
        st->tail.events -= e->committed - e->base;
        e->base = e->version = e->committed;
        e->touched = false;
    }
    st->tail_checkpoint = sl.checkpoint;
    st->commands_checkpoint = sl.commands_checkpoint;
    if (st->tail.events == 0)
        es_tail_clear(&st->tail);
    pthread_mutex_unlock(&st->tail_lock);
    free(sl.taken);
    return 0;
}

bool es__unindexed(const es_store *st)
{
    return st->tail.events > 0 || st->commands.count > 0;
}

int es__checkpoint_step(es_store *st)
{
    int rc = 0;
    if (st->tail.events > 0)
        rc = es__checkpoint_slice(st, st->checkpoint_slice);
    if (rc == 0 && st->commands.count > 0)
        rc = es__commands_slice(st, st->checkpoint_slice);
    return rc;
}

int es__checkpoint(es_store *st)
{
    /* Each step indexes something: a stream slice takes at least one
     * stream, a results slice at least one result or empties the table. */
    int rc = 0;
    while (rc == 0 && es__unindexed(st))
        rc = es__checkpoint_step(st);
    return rc;
}

/* ---- reader views --------------------------------------------------------- */

/* Brings a read-only store's tail to txn's snapshot. Called with tail_lock
 * held. Returns false when txn is older than the tail's checkpoint, in
 * which case the caller builds a private tail. */
static int ro_sync(es_store *st, MDB_txn *txn, bool *usable)
{
    uint64_t cp;
    int rc = es__checkpoint_get(st, txn, &cp, NULL);
    if (rc)
        return rc;
    *usable = true;
    if (cp < st->tail_checkpoint) {
        *usable = false;
        return 0;
    }
    if (cp > st->tail_checkpoint) {
        es_tail_clear(&st->tail);
        st->tail_checkpoint = cp;
    }
    uint64_t from = st->tail.last_position > cp ? st->tail.last_position + 1 : cp + 1;
    return es__tail_replay(st, txn, &st->tail, from, NULL, 0);
}

static void view_fill(es_view *view, const es_tail_stream *e, bool writer_view)
{
    uint64_t top = writer_view ? e->version : e->committed;
    view->base = e->base;
    view->count = top - e->base;
    view->positions = view->count ? guild_xmemdup(e->positions, view->count * 8) : NULL;
    memcpy(view->hash, writer_view ? e->hash : e->committed_hash, ES_HASH_LEN);
}

int es__view_get(es_store *st, MDB_txn *txn, const char *stream, size_t n, es_view *view)
{
    memset(view, 0, sizeof *view);
    int rc = 0;
    bool usable = true;
    pthread_mutex_lock(&st->tail_lock);
    if (st->read_only)
        rc = ro_sync(st, txn, &usable);
    if (rc == 0 && usable) {
        es_tail_stream *e = es_tail_find(&st->tail, stream, n);
        if (e && e->committed > e->base) {
            view_fill(view, e, false);
            view->found = true;
        }
    }
    pthread_mutex_unlock(&st->tail_lock);
    if (rc || usable)
        return rc;

    /* An older snapshot than the shared tail: read its own tail. */
    es_tail priv;
    es_tail_init(&priv);
    uint64_t cp;
    if ((rc = es__checkpoint_get(st, txn, &cp, NULL)) == 0 &&
        (rc = es__tail_replay(st, txn, &priv, cp + 1, stream, n)) == 0) {
        es_tail_stream *e = es_tail_find(&priv, stream, n);
        if (e && e->committed > e->base) {
            view_fill(view, e, false);
            view->found = true;
        }
    }
    es_tail_release(&priv);
    return rc;
}

void es__view_writer(es_store *st, const char *stream, size_t n, es_view *view)
{
    memset(view, 0, sizeof *view);
    es_tail_stream *e = es_tail_find(&st->tail, stream, n);
    if (e && e->version > e->base) {
        view->base = e->base;
        view->count = e->version - e->base;
        view->positions = e->positions; /* borrowed: the writer owns the tail */
        memcpy(view->hash, e->hash, ES_HASH_LEN);
        view->found = true;
        view->borrowed = true;
    }
}

void es__view_release(es_view *view)
{
    if (!view->borrowed)
        free(view->positions);
    memset(view, 0, sizeof *view);
}

typedef struct collect_ctx {
    es_stream_ref *items;
    size_t n, cap;
} collect_ctx;

static void collect_one(void *arg, const es_tail_stream *e)
{
    collect_ctx *c = arg;
    if (e->committed == e->base)
        return;
    if (c->n == c->cap) {
        c->cap = c->cap ? c->cap * 2 : 64;
        c->items = guild_xrealloc(c->items, c->cap * sizeof *c->items);
    }
    c->items[c->n].stream = guild_xstrndup(e->stream, e->len);
    c->items[c->n].version = e->committed;
    c->n++;
}

int es__tail_streams(es_store *st, MDB_txn *txn, es_stream_ref **out, size_t *n)
{
    collect_ctx c = {0};
    int rc = 0;
    bool usable = true;
    pthread_mutex_lock(&st->tail_lock);
    if (st->read_only)
        rc = ro_sync(st, txn, &usable);
    if (rc == 0 && usable)
        es_tail_each(&st->tail, collect_one, &c);
    pthread_mutex_unlock(&st->tail_lock);
    if (rc == 0 && !usable) {
        es_tail priv;
        es_tail_init(&priv);
        uint64_t cp;
        if ((rc = es__checkpoint_get(st, txn, &cp, NULL)) == 0 &&
            (rc = es__tail_replay(st, txn, &priv, cp + 1, NULL, 0)) == 0)
            es_tail_each(&priv, collect_one, &c);
        es_tail_release(&priv);
    }
    *out = c.items;
    *n = c.n;
    return rc;
}
