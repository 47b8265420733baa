/*
 * writer.c — the single writer thread and group commit.
 *
 * Any thread submits a request to the queue. The writer takes everything
 * that waits (up to max_batch), runs each request inside one LMDB write
 * transaction — each succeeds or fails on its own, checks come before any
 * write so a refused request leaves nothing behind — commits once (one
 * sync), and only then calls every request's completion.
 *
 * If the map fills, the transaction is aborted, the map doubled and the
 * whole batch run again; decide functions are pure, so running them twice
 * is harmless. Any other LMDB failure fails every request of the batch.
 */
#include "eventstore/internal.h"

#include "common/alloc.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/text.h"
#include "common/uuid.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define IDLE_CHECKPOINT_SECONDS 1

typedef enum { REQ_APPEND, REQ_PUT } req_kind;

/* An event owned by a request (copied at submit, or emitted by decide). */
typedef struct owned_event {
    char *stream; /* NULL: the append's own stream */
    char *type;
    uint32_t schema;
    void *data;
    size_t data_len;
} owned_event;

typedef struct event_list {
    owned_event *items;
    size_t n, cap;
} event_list;

struct es_req {
    es_req *next;
    req_kind kind;

    /* REQ_APPEND */
    char *stream;
    size_t stream_len;
    uint64_t expected;
    char *command_id, *correlation_id, *causation_id, *actor;
    int64_t time_ns;
    event_list events;  /* given at submit */
    event_list emitted; /* produced by decide in this attempt */
    bool emit_invalid;  /* decide tried to emit an event that is not one */
    uint8_t *snap;      /* the stored value of a snapshot decide asked for, or NULL */
    size_t snap_len;    /* of that value */
    es_decide_fn decide;
    void *decide_ctx;

    /* REQ_PUT */
    MDB_dbi dbi;
    void *key, *val;
    size_t klen, vlen;

    es_done_fn done;
    void *done_ctx;
    es_result result;
};

struct es_wctx {
    es_store *st;
    MDB_txn *txn;
    es_req *req;
    uint64_t version;
    int64_t time;
};

/* ---- owned events --------------------------------------------------------- */

static void events_push(event_list *l, const char *stream, const char *type, uint32_t schema,
                        const void *data, size_t len)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4;
        l->items = guild_xrealloc(l->items, l->cap * sizeof *l->items);
    }
    owned_event *e = &l->items[l->n++];
    e->stream = stream ? guild_xstrdup(stream) : NULL;
    e->type = guild_xstrdup(type ? type : "");
    e->schema = schema;
    e->data = len ? guild_xmemdup(data, len) : NULL;
    e->data_len = len;
}

static void events_clear(event_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->items[i].stream);
        free(l->items[i].type);
        free(l->items[i].data);
    }
    l->n = 0;
}

static void events_free(event_list *l)
{
    events_clear(l);
    free(l->items);
    l->items = NULL;
    l->cap = 0;
}

static void req_free(es_req *r)
{
    free(r->stream);
    free(r->command_id);
    free(r->correlation_id);
    free(r->causation_id);
    free(r->actor);
    events_free(&r->events);
    events_free(&r->emitted);
    free(r->snap);
    free(r->key);
    free(r->val);
    es_result_release(&r->result);
    free(r);
}

static char *dup_or_null(const char *s)
{
    return s ? guild_xstrdup(s) : NULL;
}

/* ---- validation at submit (on the caller's thread) ------------------------ */

static bool type_ok(const char *type)
{
    size_t n = type ? strlen(type) : 0;
    return n > 0 && n <= ES_TYPE_MAX;
}

static guild_status append_check(const es_append *a)
{
    size_t n = a->stream ? strlen(a->stream) : 0;
    if (n == 0 || n > ES_STREAM_MAX)
        return GUILD_INVALID_REQUEST;
    if (a->prov.command_id) {
        size_t c = strlen(a->prov.command_id);
        if (c == 0 || c > ES_COMMAND_ID_MAX)
            return GUILD_INVALID_REQUEST;
    }
    if (!a->decide) {
        if (a->n_events && !a->events)
            return GUILD_INVALID_REQUEST;
        for (size_t i = 0; i < a->n_events; i++) {
            const es_event_in *e = &a->events[i];
            if (!type_ok(e->type) ||
                (e->data && e->data_len && !es__data_is_map(e->data, e->data_len)))
                return GUILD_INVALID_REQUEST;
        }
    }
    return GUILD_OK;
}

/* ---- the decide context ------------------------------------------------- */

uint64_t es_wctx_version(const es_wctx *w)
{
    return w->version;
}

const char *es_wctx_stream(const es_wctx *w)
{
    return w->req->stream;
}

int64_t es_wctx_time(const es_wctx *w)
{
    return w->time;
}

guild_status es_wctx_read(es_wctx *w, uint64_t from_version, es_record_fn fn, void *ctx)
{
    es_view view;
    es__view_writer(w->st, w->req->stream, w->req->stream_len, &view);
    return es__read_stream_txn(w->st, w->txn, w->req->stream, from_version, SIZE_MAX, &view, fn,
                               ctx, NULL);
}

guild_status es_wctx_read_stream(es_wctx *w, const char *stream, uint64_t from_version,
                                 es_record_fn fn, void *ctx)
{
    size_t n = stream ? strlen(stream) : 0;
    if (n == 0 || n > ES_STREAM_MAX)
        return GUILD_INVALID_REQUEST;
    es_view view;
    es__view_writer(w->st, stream, n, &view);
    return es__read_stream_txn(w->st, w->txn, stream, from_version, SIZE_MAX, &view, fn, ctx, NULL);
}

uint64_t es_wctx_head(es_wctx *w, const char *stream)
{
    uint64_t v = 0;
    size_t n = stream ? strlen(stream) : 0;
    if (n == 0 || n > ES_STREAM_MAX)
        return 0;
    es_tail_stream *e = es_tail_find(&w->st->tail, stream, n);
    if (e)
        return e->version;
    if (es__head_db_get(w->st, w->txn, stream, n, &v, NULL))
        return 0;
    return v;
}

guild_status es_wctx_emit_to(es_wctx *w, const char *stream, const char *type, uint32_t schema,
                             const void *data, size_t len)
{
    size_t sn = stream ? strlen(stream) : 0;
    if (!type_ok(type) || (len && !es__data_is_map(data, len)) ||
        (stream && (sn == 0 || sn > ES_STREAM_MAX))) {
        w->req->emit_invalid = true;
        return GUILD_INTERNAL;
    }
    events_push(&w->req->emitted, stream, type, schema, data, len);
    return GUILD_OK;
}

guild_status es_wctx_emit(es_wctx *w, const char *type, uint32_t schema, const void *data,
                          size_t len)
{
    return es_wctx_emit_to(w, NULL, type, schema, data, len);
}

void es_wctx_set_reply(es_wctx *w, const void *bytes, size_t len)
{
    es_result *r = &w->req->result;
    free(r->reply);
    r->reply = len ? guild_xmemdup(bytes, len) : NULL;
    r->reply_len = len;
}

static void snap_clear(es_req *r)
{
    free(r->snap);
    r->snap = NULL;
    r->snap_len = 0;
}

void es_wctx_snapshot(es_wctx *w, uint64_t version, const void *state, size_t len)
{
    snap_clear(w->req);
    w->req->snap = es__snapshot_value(version, state, len);
    w->req->snap_len = 8 + len;
}

guild_status es_wctx_snapshot_get(es_wctx *w, const char *stream, uint64_t *version, void **state,
                                  size_t *len)
{
    size_t n = stream ? strlen(stream) : 0;
    if (n == 0 || n > ES_STREAM_MAX)
        return GUILD_INVALID_REQUEST;
    MDB_val k = {n, (void *)stream}, v;
    int rc = mdb_get(w->txn, w->st->db_snapshots, &k, &v);
    if (rc)
        return es__lmdb_status(NULL, rc, "reading a snapshot");
    return es__snapshot_split(v.mv_data, v.mv_size, version, state, len);
}

guild_status es_wctx_fail(es_wctx *w, guild_status s, const char *field, const char *fmt, ...)
{
    guild_error *e = &w->req->result.error;
    va_list ap;
    va_start(ap, fmt);
    e->status = s;
    snprintf(e->field, sizeof e->field, "%s", field ? field : "");
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return s;
}

/* ---- one append inside the batch's transaction ---------------------------- */

static int put(MDB_txn *txn, MDB_dbi db, const void *k, size_t kn, const void *v, size_t vn,
               unsigned flags)
{
    MDB_val key = {kn, (void *)k}, val = {vn, (void *)v};
    return mdb_put(txn, db, &key, &val, flags);
}

/* The tail entry of `stream` in the writer's view, created from the heads
 * database when the stream has no newer events yet. */
static int tail_entry(es_store *st, MDB_txn *txn, const char *stream, size_t len,
                      es_tail_stream **out)
{
    es_tail_stream *e = es_tail_find(&st->tail, stream, len);
    if (!e) {
        uint64_t base;
        int rc = es__head_db_get(st, txn, stream, len, &base, NULL);
        if (rc)
            return rc;
        pthread_mutex_lock(&st->tail_lock);
        e = es_tail_upsert(&st->tail, stream, len, base);
        pthread_mutex_unlock(&st->tail_lock);
    }
    *out = e;
    return 0;
}

/* Writes one event as the next version of entry's stream. */
static int write_event(es_store *st, MDB_txn *txn, es_req *req, es_tail_stream *entry,
                       const owned_event *e, int64_t time, char id[ES_ID_LEN + 1])
{
    uint64_t pos = st->chain.next_position;
    guild_uuid7(id);
    es_record_in in = {
        .id = id,
        .type = e->type,
        .domain = st->domain,
        .stream = entry->stream,
        .command_id = req->command_id,
        .correlation_id = req->correlation_id,
        .causation_id = req->causation_id,
        .actor = req->actor,
        .schema = e->schema,
        .version = entry->version + 1,
        .position = pos,
        .time = time,
        .data = e->data,
        .data_len = e->data_len,
        .prev = st->chain.last_hash,
    };
    uint8_t hash[ES_HASH_LEN];
    es_record_encode(&st->enc, &in, hash);

    uint8_t pkey[8];
    es__u64_put(pkey, pos);
    int rc = put(txn, st->db_log, pkey, 8, st->enc.data, st->enc.size, MDB_APPEND);
    if (rc)
        return rc;
    st->chain.next_position = pos + 1;
    memcpy(st->chain.last_hash, hash, ES_HASH_LEN);
    pthread_mutex_lock(&st->tail_lock);
    es_tail_push(&st->tail, entry, pos, hash);
    pthread_mutex_unlock(&st->tail_lock);
    return 0;
}

/* Returns an LMDB code that fails the whole batch (0 otherwise); the
 * request's own outcome is in req->result. */
static int append_in_txn(es_store *st, MDB_txn *txn, es_req *req, int64_t batch_time)
{
    es_result *res = &req->result;
    guild_copy(res->stream, sizeof res->stream, req->stream);
    int rc;

    size_t id_len = req->command_id ? strlen(req->command_id) : 0;
    uint64_t id_hash = 0;
    if (req->command_id) {
        uint64_t cand[ES_COMMAND_CANDIDATES];
        size_t n_cand = es__command_candidates(st, req->command_id, id_len, &id_hash, cand);
        MDB_val v;
        rc = es__command_get(st, txn, req->command_id, id_len, cand, n_cand, &v);
        if (rc == 0) {
            es_result_release(res);
            if (es__command_decode(v.mv_data, v.mv_size, res) != GUILD_OK)
                return MDB_CORRUPTED;
            return 0;
        }
        if (rc != MDB_NOTFOUND)
            return rc;
    }

    es_tail_stream *entry;
    if ((rc = tail_entry(st, txn, req->stream, req->stream_len, &entry)))
        return rc;
    uint64_t cur = entry->version;
    if (req->expected != ES_ANY_VERSION && req->expected != cur) {
        res->status = GUILD_CONFLICT;
        res->version = cur;
        guild_error_set(&res->error, GUILD_CONFLICT, 0,
                        "stream %s is at version %llu, expected %llu", req->stream,
                        (unsigned long long)cur, (unsigned long long)req->expected);
        return 0;
    }

    int64_t time = req->time_ns ? req->time_ns : batch_time;
    event_list *events = &req->events;
    if (req->decide) {
        es_wctx w = {st, txn, req, cur, time};
        req->emit_invalid = false;
        guild_status s = req->decide(req->decide_ctx, &w);
        if (s == GUILD_OK && req->emit_invalid)
            s = guild_error_set(&res->error, GUILD_INTERNAL, 0, "decide emitted an invalid event");
        if (s != GUILD_OK) {
            res->status = s;
            if (res->error.status == GUILD_OK)
                guild_error_set(&res->error, s, 0, "refused");
            events_clear(&req->emitted);
            snap_clear(req);
            return 0;
        }
        events = &req->emitted;
    }

    res->n_events = (uint32_t)events->n;
    res->event_ids = guild_xcalloc(events->n ? events->n : 1, sizeof *res->event_ids);
    res->first_position = events->n ? st->chain.next_position : 0;
    for (size_t i = 0; i < events->n; i++) {
        owned_event *e = &events->items[i];
        es_tail_stream *target = entry;
        if (e->stream &&
            (strlen(e->stream) != entry->len ||
             memcmp(e->stream, entry->stream, entry->len) != 0) &&
            (rc = tail_entry(st, txn, e->stream, strlen(e->stream), &target)))
            return rc;
        if ((rc = write_event(st, txn, req, target, e, time, res->event_ids[i])))
            return rc;
    }
    res->version = entry->version;
    res->last_position = events->n ? st->chain.next_position - 1 : 0;
    /* A snapshot goes with the events it sums up, in the same commit; one
     * of another version than the stream now has is not stored. */
    if (req->snap && es__u64_get(req->snap) == entry->version && events->n &&
        (rc =
             put(txn, st->db_snapshots, req->stream, req->stream_len, req->snap, req->snap_len, 0)))
        return rc;
    if (req->command_id) {
        es__command_encode(&st->enc, res);
        if ((rc = es__command_put(st, txn, req->command_id, id_len, id_hash, st->enc.data,
                                  st->enc.size, events->n > 0)))
            return rc;
    }
    res->status = GUILD_OK;
    return 0;
}

/* ---- the batch ------------------------------------------------------------ */

static void result_reset(es_req *r)
{
    es_result_release(&r->result);
    events_clear(&r->emitted);
    snap_clear(r);
}

/* Runs the batch in one transaction and commits. Returns an LMDB code. */
static int batch_txn(es_store *st, es_req *batch)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc)
        return rc;
    int64_t now = guild_now_ns();
    for (es_req *r = batch; r && rc == 0; r = r->next) {
        if (r->kind == REQ_APPEND) {
            rc = append_in_txn(st, txn, r, now);
        } else {
            rc = put(txn, r->dbi, r->key, r->klen, r->val, r->vlen, 0);
            r->result.status = GUILD_OK;
        }
    }
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

static void run_batch(es_store *st, es_req *batch)
{
    for (;;) {
        es_chain saved = st->chain;
        for (es_req *r = batch; r; r = r->next)
            result_reset(r);
        int rc = batch_txn(st, batch);
        if (st->batch_hook)
            st->batch_hook(st->batch_hook_ctx, rc == 0);
        pthread_mutex_lock(&st->tail_lock);
        if (rc == 0) {
            es_tail_commit(&st->tail, st->chain.next_position - 1);
            es_cmdtab_commit(&st->commands);
        } else {
            es_tail_undo(&st->tail);
            es_cmdtab_undo(&st->commands);
        }
        pthread_mutex_unlock(&st->tail_lock);
        if (rc == 0)
            return;
        st->chain = saved;
        if (rc == MDB_MAP_FULL && (rc = es__grow_map(st)) == 0)
            continue;
        guild_error("event store commit failed: %s", mdb_strerror(rc));
        for (es_req *r = batch; r; r = r->next) {
            result_reset(r);
            snprintf(r->result.stream, sizeof r->result.stream, "%s", r->stream ? r->stream : "");
            r->result.status = es__lmdb_status(&r->result.error, rc, "committing");
        }
        return;
    }
}

/* Tells every caller of a committed batch its result, in order. */
static void complete_batch(es_req *batch)
{
    while (batch) {
        es_req *next = batch->next;
        es_result res = batch->result;
        memset(&batch->result, 0, sizeof batch->result);
        batch->done(batch->done_ctx, &res);
        req_free(batch);
        batch = next;
    }
}

static void *completer_main(void *arg)
{
    es_store *st = arg;
    pthread_mutex_lock(&st->c_lock);
    for (;;) {
        while (!st->c_head && !st->c_stopping)
            pthread_cond_wait(&st->c_cond, &st->c_lock);
        if (!st->c_head)
            break;
        es_req *batch = st->c_head;
        st->c_head = st->c_tail = NULL;
        st->c_busy = true;
        pthread_mutex_unlock(&st->c_lock);
        complete_batch(batch);
        pthread_mutex_lock(&st->c_lock);
        st->c_busy = false;
        pthread_cond_broadcast(&st->c_cond);
    }
    pthread_mutex_unlock(&st->c_lock);
    return NULL;
}

/* Completes inline when nobody else waits (lowest latency for a lone
 * caller); otherwise hands the batch to the completer and returns to the
 * queue. Order is kept: inline only when the completer is idle. */
static void hand_off(es_store *st, es_req *batch, es_req *last)
{
    pthread_mutex_lock(&st->q_lock);
    bool waiting = st->q_head != NULL;
    pthread_mutex_unlock(&st->q_lock);

    pthread_mutex_lock(&st->c_lock);
    if (!waiting && !st->c_head && !st->c_busy) {
        pthread_mutex_unlock(&st->c_lock);
        complete_batch(batch);
        return;
    }
    if (st->c_tail)
        st->c_tail->next = batch;
    else
        st->c_head = batch;
    st->c_tail = last;
    pthread_cond_signal(&st->c_cond);
    pthread_mutex_unlock(&st->c_lock);
}

/* Runs a batch taken from the queue (or a lone append run where it was
 * submitted) by the thread that set `running`: commits, counts, completes,
 * indexes the tail when it has grown, then clears `running` and tells the
 * writer, in case work waits for it. */
static void run_taken(es_store *st, es_req *batch, es_req *last)
{
    uint64_t t0 = guild_mono_ns();
    run_batch(st, batch);
    uint64_t took = guild_mono_ns() - t0;
    unsigned n = 0;
    for (es_req *q = batch; q; q = q->next)
        n++;
    pthread_mutex_lock(&st->q_lock);
    st->stats.batches++;
    st->stats.requests += n;
    st->stats.commit_ns += took;
    if (n > st->stats.max_batch)
        st->stats.max_batch = n;
    pthread_mutex_unlock(&st->q_lock);
    hand_off(st, batch, last);
    /* After the callers are told: the next commits need not grow the file. */
    es_file_ahead_keep(st->env, &st->ahead, "event store");
    if (st->tail.events >= st->index_every)
        es__checkpoint_slice(st, st->checkpoint_slice);
    if (st->commands.count >= st->commands_every)
        es__commands_slice(st, st->checkpoint_slice);
    pthread_mutex_lock(&st->q_lock);
    st->running = false;
    st->last_run_ns = guild_mono_ns();
    if (st->writer_wait == ES_WAIT_RUN || (st->writer_wait == ES_WAIT_EMPTY && es__unindexed(st)))
        pthread_cond_signal(&st->q_cond);
    pthread_mutex_unlock(&st->q_lock);
}

static void *writer_main(void *arg)
{
    es_store *st = arg;
    for (;;) {
        pthread_mutex_lock(&st->q_lock);
        for (;;) {
            if (st->running) { /* a submitter runs its append: wait for it */
                st->writer_wait = ES_WAIT_RUN;
                pthread_cond_wait(&st->q_cond, &st->q_lock);
                st->writer_wait = ES_WAIT_NONE;
                continue;
            }
            if (st->q_head || st->stopping)
                break;
            if (!es__unindexed(st)) {
                st->writer_wait = ES_WAIT_EMPTY;
                pthread_cond_wait(&st->q_cond, &st->q_lock);
                st->writer_wait = ES_WAIT_NONE;
                continue;
            }
            /* Idle with an unindexed tail: checkpoint after a quiet second.
             * Appends run by their submitters do not wake the writer; the
             * second counts from the last of them. */
            uint64_t quiet = IDLE_CHECKPOINT_SECONDS * 1000000000ull, now = guild_mono_ns();
            uint64_t wait_ns =
                now - st->last_run_ns >= quiet ? quiet : quiet - (now - st->last_run_ns);
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            uint64_t ns = (uint64_t)until.tv_nsec + wait_ns;
            until.tv_sec += (time_t)(ns / 1000000000u);
            until.tv_nsec = (long)(ns % 1000000000u);
            if (pthread_cond_timedwait(&st->q_cond, &st->q_lock, &until) == ETIMEDOUT &&
                guild_mono_ns() - st->last_run_ns >= quiet) {
                /* Slice by slice, so an append arriving meanwhile waits little. */
                while (!st->q_head && !st->running && es__unindexed(st)) {
                    st->running = true;
                    pthread_mutex_unlock(&st->q_lock);
                    int rc = es__checkpoint_step(st);
                    pthread_mutex_lock(&st->q_lock);
                    st->running = false;
                    if (rc) { /* logged; try again after another quiet second */
                        st->last_run_ns = guild_mono_ns();
                        break;
                    }
                }
            }
        }
        if (!st->q_head) {
            pthread_mutex_unlock(&st->q_lock);
            es__checkpoint(st);
            break;
        }
        es_req *batch = st->q_head, *last = batch;
        for (unsigned n = 1; n < st->max_batch && last->next; n++)
            last = last->next;
        st->q_head = last->next;
        if (!st->q_head)
            st->q_tail = NULL;
        last->next = NULL;
        st->running = true;
        pthread_mutex_unlock(&st->q_lock);
        run_taken(st, batch, last);
    }
    return NULL;
}

guild_status es__writer_start(es_store *st, guild_error *err)
{
    pthread_mutex_init(&st->c_lock, NULL);
    pthread_cond_init(&st->c_cond, NULL);
    if (pthread_create(&st->completer, NULL, completer_main, st) != 0)
        return guild_error_set(err, GUILD_INTERNAL, 0, "cannot start the completion thread");
    if (pthread_create(&st->writer, NULL, writer_main, st) != 0) {
        pthread_mutex_lock(&st->c_lock);
        st->c_stopping = true;
        pthread_cond_signal(&st->c_cond);
        pthread_mutex_unlock(&st->c_lock);
        pthread_join(st->completer, NULL);
        return guild_error_set(err, GUILD_INTERNAL, 0, "cannot start the writer thread");
    }
    st->writer_started = true;
    return GUILD_OK;
}

void es__writer_stop(es_store *st)
{
    if (!st->writer_started)
        return;
    pthread_mutex_lock(&st->q_lock);
    st->stopping = true;
    pthread_cond_signal(&st->q_cond);
    pthread_mutex_unlock(&st->q_lock);
    pthread_join(st->writer, NULL);

    pthread_mutex_lock(&st->c_lock);
    st->c_stopping = true;
    pthread_cond_signal(&st->c_cond);
    pthread_mutex_unlock(&st->c_lock);
    pthread_join(st->completer, NULL);
    pthread_cond_destroy(&st->c_cond);
    pthread_mutex_destroy(&st->c_lock);
    st->writer_started = false;
}

static guild_status enqueue(es_store *st, es_req *r)
{
    pthread_mutex_lock(&st->q_lock);
    if (st->stopping || !st->writer_started) {
        pthread_mutex_unlock(&st->q_lock);
        return GUILD_CLOSED;
    }
    if (st->q_tail)
        st->q_tail->next = r;
    else
        st->q_head = r;
    st->q_tail = r;
    pthread_cond_signal(&st->q_cond);
    pthread_mutex_unlock(&st->q_lock);
    return GUILD_OK;
}

/* Runs r on the calling thread if nothing else runs or waits; false when
 * it must be queued instead. */
static bool run_here(es_store *st, es_req *r)
{
    pthread_mutex_lock(&st->q_lock);
    bool mine = !st->stopping && st->writer_started && !st->running && !st->q_head;
    if (mine)
        st->running = true;
    pthread_mutex_unlock(&st->q_lock);
    if (!mine)
        return false;
    run_taken(st, r, r);
    return true;
}

/* ---- submitting ----------------------------------------------------------- */

guild_status es_append_submit(es_store *st, const es_append *a, es_done_fn done, void *ctx)
{
    if (!st || !a || !done)
        return GUILD_INVALID_REQUEST;
    if (st->read_only)
        return GUILD_INVALID_REQUEST;
    guild_status s = append_check(a);
    if (s != GUILD_OK)
        return s;
    es_req *r = guild_xcalloc(1, sizeof *r);
    r->kind = REQ_APPEND;
    r->stream = guild_xstrdup(a->stream);
    r->stream_len = strlen(a->stream);
    r->expected = a->expected_version;
    r->command_id = dup_or_null(a->prov.command_id);
    r->correlation_id = dup_or_null(a->prov.correlation_id);
    r->causation_id = dup_or_null(a->prov.causation_id);
    r->actor = dup_or_null(a->prov.actor);
    r->time_ns = a->time_ns;
    r->decide = a->decide;
    r->decide_ctx = a->decide_ctx;
    if (!a->decide)
        for (size_t i = 0; i < a->n_events; i++)
            events_push(&r->events, NULL, a->events[i].type, a->events[i].schema, a->events[i].data,
                        a->events[i].data ? a->events[i].data_len : 0);
    r->done = done;
    r->done_ctx = ctx;
    if (a->run_here && run_here(st, r))
        return GUILD_OK;
    if ((s = enqueue(st, r)) != GUILD_OK)
        req_free(r);
    return s;
}

/* A waiter for the synchronous calls. */
typedef struct waiter {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    es_result res;
} waiter;

static void waiter_done(void *ctx, es_result *res)
{
    waiter *w = ctx;
    pthread_mutex_lock(&w->lock);
    w->res = *res;
    w->done = true;
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->lock);
}

static void waiter_init(waiter *w)
{
    memset(w, 0, sizeof *w);
    pthread_mutex_init(&w->lock, NULL);
    pthread_cond_init(&w->cond, NULL);
}

static void waiter_wait(waiter *w)
{
    pthread_mutex_lock(&w->lock);
    while (!w->done)
        pthread_cond_wait(&w->cond, &w->lock);
    pthread_mutex_unlock(&w->lock);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->lock);
}

guild_status es_append_wait(es_store *st, const es_append *a, es_result *out)
{
    waiter w;
    waiter_init(&w);
    guild_status s = es_append_submit(st, a, waiter_done, &w);
    if (s != GUILD_OK) {
        pthread_cond_destroy(&w.cond);
        pthread_mutex_destroy(&w.lock);
        memset(out, 0, sizeof *out);
        if (a && a->stream)
            snprintf(out->stream, sizeof out->stream, "%s", a->stream);
        out->status =
            guild_error_set(&out->error, s, 0, "%s",
                            s == GUILD_CLOSED ? "the store is closing" : "invalid append request");
        return s;
    }
    waiter_wait(&w);
    *out = w.res;
    return out->status;
}

guild_status es__put_wait(es_store *st, MDB_dbi dbi, const void *key, size_t klen, const void *val,
                          size_t vlen)
{
    es_req *r = guild_xcalloc(1, sizeof *r);
    r->kind = REQ_PUT;
    r->dbi = dbi;
    r->key = guild_xmemdup(key, klen);
    r->klen = klen;
    r->val = guild_xmemdup(val, vlen);
    r->vlen = vlen;
    waiter w;
    waiter_init(&w);
    r->done = waiter_done;
    r->done_ctx = &w;
    guild_status s = enqueue(st, r);
    if (s != GUILD_OK) {
        req_free(r);
        pthread_cond_destroy(&w.cond);
        pthread_mutex_destroy(&w.lock);
        return s;
    }
    waiter_wait(&w);
    s = w.res.status;
    es_result_release(&w.res);
    return s;
}

void es_store_stats(es_store *st, es_stats *out)
{
    pthread_mutex_lock(&st->q_lock);
    *out = st->stats;
    pthread_mutex_unlock(&st->q_lock);
}
