/*
 * store.c — the projector store: one LMDB environment per read model.
 *
 * Databases: the model's own (named in prj_model.dbs), "prj.meta"
 * (checkpoint, event time, digest) and "prj.dead" (position → [reason,
 * record]). A batch is applied in one transaction together with the
 * checkpoint and digest, so after a crash either the whole batch took
 * effect or none of it did, and the consumer's redelivery is skipped by
 * position.
 *
 * Sections: plumbing, the digest, open and close, applying (with fetching
 * ahead), queries, dead letters. A model's reads and writes (prj_put...)
 * are in access.c.
 */
#include "projections/prj.h"
#include "projections/store_internal.h"
#include "projections/wcache.h"

#include "common/alloc.h"
#include "common/codec.h"
#include "common/log.h"
#include "common/prefetch.h"

#include <errno.h>
#include <unistd.h>
#include <lmdb.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define META "prj.meta"
#define DEAD "prj.dead"
#define DEFAULT_MAP ((size_t)256 << 20)
#define WCACHE_KEEP 65536 /* entries kept from one batch to the next */

/* ---- plumbing ------------------------------------------------------------- */

static guild_status lmdb_status(guild_error *err, int rc, const char *what)
{
    if (rc == 0)
        return GUILD_OK;
    if (rc == MDB_NOTFOUND)
        return GUILD_NOT_FOUND;
    return guild_error_set(err, GUILD_IO, rc, "%s: %s", what, mdb_strerror(rc));
}

static void u64_put(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

static uint64_t u64_get(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | in[i];
    return v;
}

int prj__db_index(const prj_store *s, const char *db)
{
    for (int i = 0; i < s->n_dbs; i++)
        if (s->names[i] == db) /* the model passes its own names, mostly */
            return i;
    for (int i = 0; i < s->n_dbs; i++)
        if (strcmp(s->names[i], db) == 0)
            return i;
    return -1;
}

static int read_begin(prj_store *s, MDB_txn **txn)
{
    for (;;) {
        pthread_rwlock_rdlock(&s->resize);
        int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, txn);
        if (rc != MDB_MAP_RESIZED) {
            if (rc)
                pthread_rwlock_unlock(&s->resize);
            return rc;
        }
        pthread_rwlock_unlock(&s->resize);
        pthread_rwlock_wrlock(&s->resize);
        rc = mdb_env_set_mapsize(s->env, 0);
        pthread_rwlock_unlock(&s->resize);
        if (rc)
            return rc;
    }
}

static void read_end(prj_store *s, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&s->resize);
}

static int grow(prj_store *s)
{
    MDB_envinfo info;
    pthread_rwlock_wrlock(&s->resize);
    mdb_env_info(s->env, &info);
    int rc = mdb_env_set_mapsize(s->env, info.me_mapsize * 2);
    pthread_rwlock_unlock(&s->resize);
    return rc;
}

/* ---- the digest ----------------------------------------------------------- */

void prj__entry_hash(const char *db, const void *k, size_t kn, const void *v, size_t vn,
                     uint64_t out[4])
{
    uint8_t h[32], len[8];
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof h);
    crypto_generichash_update(&st, (const uint8_t *)db, strlen(db) + 1);
    u64_put(len, kn);
    crypto_generichash_update(&st, len, 8);
    crypto_generichash_update(&st, k, kn);
    crypto_generichash_update(&st, v, vn);
    crypto_generichash_final(&st, h, sizeof h);
    for (int i = 0; i < 4; i++)
        out[i] = u64_get(h + 8 * i);
}

void prj__lanes_add(uint64_t lanes[4], const uint64_t h[4], bool subtract)
{
    for (int i = 0; i < 4; i++)
        lanes[i] = subtract ? lanes[i] - h[i] : lanes[i] + h[i];
}

static void lanes_bytes(const uint64_t lanes[4], uint8_t out[PRJ_DIGEST_LEN])
{
    for (int i = 0; i < 4; i++)
        u64_put(out + 8 * i, lanes[i]);
}

/* ---- open and close ------------------------------------------------------- */

static int meta_load(prj_store *s, MDB_txn *txn)
{
    MDB_val k = {10, (void *)"checkpoint"}, v;
    int rc = mdb_get(txn, s->meta, &k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    if (v.mv_size != 8 + 8 + PRJ_DIGEST_LEN)
        return MDB_CORRUPTED;
    const uint8_t *p = v.mv_data;
    s->position = u64_get(p);
    s->event_time = (int64_t)u64_get(p + 8);
    for (int i = 0; i < 4; i++)
        s->lanes[i] = u64_get(p + 16 + 8 * i);
    return 0;
}

static int meta_store(prj_store *s, MDB_txn *txn, uint64_t position, int64_t time,
                      const uint64_t lanes[4])
{
    uint8_t buf[8 + 8 + PRJ_DIGEST_LEN];
    u64_put(buf, position);
    u64_put(buf + 8, (uint64_t)time);
    for (int i = 0; i < 4; i++)
        u64_put(buf + 16 + 8 * i, lanes[i]);
    MDB_val k = {10, (void *)"checkpoint"}, v = {sizeof buf, buf};
    return mdb_put(txn, s->meta, &k, &v, 0);
}

guild_status prj_store_open(const char *dir, const prj_model *m, prj_store **out, guild_error *err)
{
    if (sodium_init() < 0)
        return GUILD_INTERNAL;
    prj_store *s = guild_xcalloc(1, sizeof *s);
    s->m = m;
    prj_wcache_init(&s->wc);
    msgpack_sbuffer_init(&s->scratch);
    pthread_rwlock_init(&s->resize, NULL);
    pthread_mutex_init(&s->apply_lock, NULL);
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->moved, NULL);
    int rc = mdb_env_create(&s->env);
    if (rc == 0) {
        mdb_env_set_maxdbs(s->env, MAX_DBS + 2);
        mdb_env_set_maxreaders(s->env, 512);
        mdb_env_set_mapsize(s->env, DEFAULT_MAP);
        rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0644);
    }
    MDB_txn *txn = NULL;
    if (rc == 0)
        rc = mdb_txn_begin(s->env, NULL, 0, &txn);
    for (const char *const *d = m->dbs; rc == 0 && d && *d; d++) {
        if (s->n_dbs == MAX_DBS) {
            rc = MDB_DBS_FULL;
            break;
        }
        s->names[s->n_dbs] = *d;
        rc = mdb_dbi_open(txn, *d, MDB_CREATE, &s->dbs[s->n_dbs]);
        s->n_dbs++;
    }
    s->row_db = m->row_db ? prj__db_index(s, m->row_db) : -1;
    if (rc == 0)
        rc = mdb_dbi_open(txn, META, MDB_CREATE, &s->meta);
    if (rc == 0)
        rc = mdb_dbi_open(txn, DEAD, MDB_CREATE, &s->dead);
    if (rc == 0)
        rc = meta_load(s, txn);
    if (rc == 0)
        rc = mdb_txn_commit(txn);
    else if (txn)
        mdb_txn_abort(txn);
    if (rc) {
        guild_error_set(err, GUILD_IO, rc, "opening the %s read model in %s: %s", m->name, dir,
                        mdb_strerror(rc));
        prj_store_close(s);
        return GUILD_IO;
    }
    *out = s;
    return GUILD_OK;
}

void prj_store_close(prj_store *s)
{
    if (!s)
        return;
    if (s->env)
        mdb_env_close(s->env);
    prj_wcache_release(&s->wc);
    msgpack_sbuffer_destroy(&s->scratch);
    pthread_cond_destroy(&s->moved);
    pthread_mutex_destroy(&s->lock);
    pthread_mutex_destroy(&s->apply_lock);
    pthread_rwlock_destroy(&s->resize);
    free(s);
}

uint64_t prj_store_position(prj_store *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t p = s->position;
    pthread_mutex_unlock(&s->lock);
    return p;
}

int64_t prj_store_event_time(prj_store *s)
{
    pthread_mutex_lock(&s->lock);
    int64_t t = s->event_time;
    pthread_mutex_unlock(&s->lock);
    return t;
}

void prj_store_digest(prj_store *s, uint8_t out[PRJ_DIGEST_LEN])
{
    prj_store_snapshot(s, NULL, out);
}

void prj_store_snapshot(prj_store *s, uint64_t *position, uint8_t digest[PRJ_DIGEST_LEN])
{
    pthread_mutex_lock(&s->lock);
    if (position)
        *position = s->position;
    lanes_bytes(s->lanes, digest);
    pthread_mutex_unlock(&s->lock);
}

bool prj_store_wait(prj_store *s, uint64_t position, int64_t timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (timeout_ms % 1000) * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&s->lock);
    int rc = 0;
    while (s->position < position && rc == 0)
        rc = pthread_cond_timedwait(&s->moved, &s->lock, &until);
    bool ok = s->position >= position;
    pthread_mutex_unlock(&s->lock);
    return ok;
}

/* ---- applying ------------------------------------------------------------- */

/* Where the aggregate id starts in a stream name of n bytes: after
 * "<domain>-" when it begins so, else at its start. */
static size_t aggregate_at(const prj_store *s, const char *stream, size_t n)
{
    size_t dl = strlen(s->m->domain);
    return n > dl && memcmp(stream, s->m->domain, dl) == 0 && stream[dl] == '-' ? dl + 1 : 0;
}

/* Builds the event a model sees; false (with why) if it does not decode. */
static bool event_of(const prj_store *s, const es_record *rec, bool checked, prj_event *ev,
                     json_t **data, char *type, char *stream, const char **why)
{
    *data = NULL;
    if (s->m->reads_msgpack
            ? !checked && guild_codec_check_msgpack(rec->data, rec->data_len, NULL) != GUILD_OK
            : guild_codec_decode(rec->data, rec->data_len, GUILD_FMT_MSGPACK, data, NULL) !=
                  GUILD_OK) {
        *why = "the event's data does not decode";
        return false;
    }
    size_t tn = rec->type.n < ES_TYPE_MAX ? rec->type.n : ES_TYPE_MAX;
    size_t sn = rec->stream.n < ES_STREAM_MAX ? rec->stream.n : ES_STREAM_MAX;
    memcpy(type, rec->type.p, tn);
    type[tn] = 0;
    memcpy(stream, rec->stream.p, sn);
    stream[sn] = 0;
    ev->rec = rec;
    ev->type = type;
    ev->stream = stream;
    ev->aggregate_id = stream + aggregate_at(s, stream, sn);
    ev->data = *data;
    return true;
}

/* A name or reason for a dead letter: a record that decodes may still
 * carry bytes that are not UTF-8, and its letter must not be lost for
 * that (the position is what a retry needs). */
static json_t *letter_text(const char *p, size_t n)
{
    json_t *j = p ? json_stringn(p, n) : json_string("");
    if (j && (!p || !memchr(p, '\0', n)))
        return j;
    json_decref(j);
    return json_string("(not UTF-8 text)");
}

/* A dead letter names the event (position, type, stream) and the reason;
 * it does not keep the event's data, which may hold what a read model must
 * not (a password hash): a retry reads the event again from the log. */
static int park(prj_store *s, MDB_txn *txn, const es_record *rec, const char *reason)
{
    json_t *v = json_object();
    json_object_set_new(v, "reason", letter_text(reason, reason ? strlen(reason) : 0));
    json_object_set_new(v, "type", letter_text(rec->type.p, rec->type.n));
    json_object_set_new(v, "stream", letter_text(rec->stream.p, rec->stream.n));
    char *bytes = NULL;
    size_t len = 0;
    guild_codec_encode(v, GUILD_FMT_MSGPACK, &bytes, &len);
    json_decref(v);
    /* value: u32 length of the entry, the entry (and, in dead letters
     * parked by earlier versions, the raw record after it) */
    size_t total = 4 + len;
    uint8_t *buf = guild_xmalloc(total);
    buf[0] = (uint8_t)(len >> 24);
    buf[1] = (uint8_t)(len >> 16);
    buf[2] = (uint8_t)(len >> 8);
    buf[3] = (uint8_t)len;
    memcpy(buf + 4, bytes, len);
    uint8_t key[8];
    u64_put(key, rec->position);
    MDB_val k = {8, key}, v2 = {total, buf};
    int rc = mdb_put(txn, s->dead, &k, &v2, 0);
    free(buf);
    free(bytes);
    guild_warn("%s: event at position %llu parked: %s", s->m->name,
               (unsigned long long)rec->position, reason);
    return rc;
}

/* What writing the cache out means for the batch: MDB_MAP_FULL (grow and
 * run again), or -1 (run again carefully, where the failure shows). */
static int wc_status(guild_status st)
{
    return st == GUILD_OK ? 0 : st == GUILD_UNAVAILABLE ? MDB_MAP_FULL : -1;
}

/* Applies one record; `careful` runs it in a nested transaction so a
 * failure undoes its writes and parks it. Returns an LMDB code for the
 * batch (MDB_MAP_FULL, or -1: a failure seen while not careful). */
static int apply_one(prj_store *s, prj_txn *t, const es_record *rec, bool checked, bool careful,
                     prj_batch_stats *stats)
{
    json_t *data = NULL;
    char type[ES_TYPE_MAX + 1], stream[ES_STREAM_MAX + 1];
    prj_event ev;
    const char *why = NULL;
    if (!event_of(s, rec, checked, &ev, &data, type, stream, &why)) {
        if (!careful)
            return -1;
        stats->parked++;
        return park(s, t->txn, rec, why);
    }
    MDB_txn *outer = t->txn, *child = NULL;
    if (careful) {
        /* What earlier events left in the cache goes to the outer
         * transaction; this event's writes reach LMDB in its own. */
        int rc = wc_status(prj__wc_flush(t));
        prj_wcache_clear(t->wc);
        if (rc == 0)
            rc = mdb_txn_begin(s->env, outer, 0, &child);
        if (rc) {
            json_decref(data);
            return rc;
        }
        t->txn = child;
    }
    uint64_t saved[4];
    memcpy(saved, t->lanes, sizeof saved);
    guild_error err = {0};
    guild_status st = s->m->apply(t, &ev, &err);
    json_decref(data);
    if (careful) {
        if (st == GUILD_OK && (st = prj__wc_flush(t)) != GUILD_OK)
            err = t->settle_err; /* what the event made its row derive failed */
        prj_wcache_clear(t->wc);
    }
    t->txn = outer;
    if (st == GUILD_UNAVAILABLE) { /* map full */
        if (child)
            mdb_txn_abort(child);
        return MDB_MAP_FULL;
    }
    if (st != GUILD_OK) {
        if (!careful)
            return -1;
        mdb_txn_abort(child);
        memcpy(t->lanes, saved, sizeof saved);
        stats->parked++;
        char reason[300];
        snprintf(reason, sizeof reason, "%s: %s", guild_status_code(st),
                 err.message[0] ? err.message : "the read model refused the event");
        return park(s, t->txn, rec, reason);
    }
    stats->applied++;
    return child ? mdb_txn_commit(child) : 0;
}

/* A transaction of applied events (store_internal.h). */
struct prj_session {
    prj_store *s;
    MDB_txn *txn;
    prj_txn t;
    uint64_t position; /* last applied in this transaction */
    int64_t time;
    bool careful; /* each event in a nested transaction of its own */
};

static int session_begin(prj_store *s, bool careful, prj_session *x)
{
    memset(x, 0, sizeof *x);
    x->s = s;
    int rc = mdb_txn_begin(s->env, NULL, 0, &x->txn);
    if (rc)
        return rc;
    x->t = (prj_txn){.s = s, .txn = x->txn, .wc = &s->wc};
    x->careful = careful;
    for (int i = 0; i < s->n_dbs; i++) {
        MDB_stat ms;
        x->t.empty[i] = mdb_stat(x->txn, s->dbs[i], &ms) == 0 && ms.ms_entries == 0;
    }
    memcpy(x->t.lanes, s->lanes, sizeof x->t.lanes);
    x->position = s->position;
    x->time = s->event_time;
    return 0;
}

/* ---- fetching ahead (prj_model.row_db) ---- */

/* Events between one step of fetching a row ahead and the next: an event
 * takes microseconds to apply, a trip to memory a tenth of one. */
#define AHEAD_SLOT 6   /* the cache's slot for the event's row */
#define AHEAD_ENTRY 5  /* the entry the slot points to */
#define AHEAD_OBJ 4    /* the row's object */
#define AHEAD_PARTS 3  /* what the object points to */
#define AHEAD_RING 8   /* hashes kept, a power of two above AHEAD_SLOT */
#define AHEAD_RECORD 8 /* the record's own bytes, copied out by another thread */

typedef struct ahead {
    const char *key[AHEAD_RING];
    size_t klen[AHEAD_RING];
    uint64_t hash[AHEAD_RING];
    /* The row's entry, once looked up, and the cache's clears then
     * (UINT64_MAX: not looked up yet). */
    const prj_wentry *entry[AHEAD_RING];
    uint64_t clears[AHEAD_RING];
} ahead;

/* Works out the row key of record j (its aggregate id, as event_of makes
 * it) and its hash, into j's place in the ring. */
static void ahead_key(const prj_store *s, ahead *a, const es_record *rec, size_t j)
{
    size_t r = j % AHEAD_RING;
    const char *p = rec->stream.p ? rec->stream.p : "";
    size_t n = rec->stream.p ? rec->stream.n : 0, at = aggregate_at(s, p, n);
    const char *nul = memchr(p + at, '\0', n - at);
    a->key[r] = p + at;
    a->klen[r] = nul ? (size_t)(nul - (p + at)) : n - at;
    a->hash[r] = prj_wcache_hash(s->row_db, a->key[r], a->klen[r]);
    a->clears[r] = UINT64_MAX;
}

/* Record j's row entry in the batch's cache, or NULL: looked up once, and
 * again only when the cache has been emptied since. */
static const prj_wentry *ahead_entry(const prj_store *s, const prj_wcache *c, ahead *a, size_t j)
{
    size_t r = j % AHEAD_RING;
    if (a->clears[r] != c->clears) {
        a->entry[r] = prj_wcache_lookup_hashed(c, a->hash[r], s->row_db, a->key[r], a->klen[r]);
        a->clears[r] = c->clears;
    }
    return a->entry[r];
}

/* The steps of fetching ahead due before record i is applied. */
static void fetch_ahead(prj_session *x, ahead *a, const es_record *const *recs, size_t i, size_t n)
{
    const prj_store *s = x->s;
    const prj_wcache *c = x->t.wc;
    size_t j = i + AHEAD_RECORD;
    if (j < n)
        guild_prefetch(recs[j]->raw, recs[j]->raw_len);
    if ((j = i + AHEAD_SLOT) < n) {
        ahead_key(s, a, recs[j], j);
        prj_wcache_prefetch_slot(c, a->hash[j % AHEAD_RING]);
    }
    if ((j = i + AHEAD_ENTRY) < n)
        prj_wcache_prefetch_entry(c, a->hash[j % AHEAD_RING]);
    const prj_wentry *e;
    if ((j = i + AHEAD_OBJ) < n && (e = ahead_entry(s, c, a, j)) && e->obj)
        guild_prefetch(e->obj, e->otype->size);
    if ((j = i + AHEAD_PARTS) < n && (e = ahead_entry(s, c, a, j)) && e->obj && e->otype->prefetch)
        e->otype->prefetch(e->obj);
}

/* Applies records in log order, adding to stats. 0; -1 when an event
 * failed while not careful; or an LMDB code (MDB_MAP_FULL: grow, redo). */
static int session_apply(prj_session *x, const es_record *const *recs, const bool *checked,
                         size_t n, prj_batch_stats *stats)
{
    int rc = 0;
    ahead a;
    if (x->s->row_db >= 0) /* the keys of the records before the first step's */
        for (size_t i = 0; i < AHEAD_SLOT && i < n; i++)
            ahead_key(x->s, &a, recs[i], i);
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (x->s->row_db >= 0)
            fetch_ahead(x, &a, recs, i, n);
        if (recs[i]->position <= x->position) {
            stats->skipped++;
            continue;
        }
        /* An undecodable message is parked under its stream sequence, which
         * the relay keeps equal to the log position, and counts as applied. */
        bool undecodable = !recs[i]->type.p;
        rc = apply_one(x->s, &x->t, recs[i], checked && checked[i], x->careful || undecodable,
                       stats);
        if (rc == 0)
            rc = wc_status(prj__wc_trim(&x->t));
        x->position = recs[i]->position;
        if (!undecodable)
            x->time = recs[i]->time;
    }
    return rc;
}

static void session_abort(prj_session *x)
{
    prj_wcache_clear(x->t.wc);
    mdb_txn_abort(x->txn);
}

/* Writes the cache out, stores the checkpoint and digest, commits. */
static int session_commit(prj_session *x)
{
    prj_store *s = x->s;
    int rc = wc_status(prj__wc_flush(&x->t));
    if (rc == 0)
        rc = meta_store(s, x->txn, x->position, x->time, x->t.lanes);
    if (rc) {
        session_abort(x);
        return rc;
    }
    rc = mdb_txn_commit(x->txn);
    /* What LMDB holds now is what the cache holds: keep it for the next
     * batch (this process is the model's only writer), unless it grew
     * large or the commit failed. */
    if (rc || x->t.wc->count > WCACHE_KEEP)
        prj_wcache_clear_behind(x->t.wc);
    if (rc == 0) {
        pthread_mutex_lock(&s->lock);
        s->position = x->position;
        s->event_time = x->time;
        memcpy(s->lanes, x->t.lanes, sizeof x->t.lanes);
        pthread_cond_broadcast(&s->moved);
        pthread_mutex_unlock(&s->lock);
        es_file_ahead_keep(s->env, &s->ahead, s->m->name); /* file_ahead.h */
    }
    return rc;
}

static int apply_batch(prj_store *s, const es_record *const *recs, size_t n, bool careful,
                       prj_batch_stats *stats)
{
    memset(stats, 0, sizeof *stats);
    prj_session x;
    int rc = session_begin(s, careful, &x);
    if (rc)
        return rc;
    rc = session_apply(&x, recs, NULL, n, stats);
    if (rc) {
        session_abort(&x);
        return rc;
    }
    return session_commit(&x);
}

/* ---- long transactions (store_internal.h) ------------------------------------ */

int prj__session_begin(prj_store *s, prj_session **out)
{
    prj_session *x = guild_xmalloc(sizeof *x);
    pthread_mutex_lock(&s->apply_lock);
    pthread_rwlock_rdlock(&s->resize);
    int rc = session_begin(s, false, x);
    if (rc) {
        pthread_rwlock_unlock(&s->resize);
        pthread_mutex_unlock(&s->apply_lock);
        free(x);
        return rc;
    }
    *out = x;
    return 0;
}

int prj__session_apply(prj_session *x, const es_record *const *recs, const bool *checked, size_t n,
                       prj_batch_stats *stats)
{
    return session_apply(x, recs, checked, n, stats);
}

bool prj__reads_msgpack(const prj_store *s)
{
    return s->m->reads_msgpack;
}

void prj__session_reserve(prj_session *x, size_t entries)
{
    prj_wcache_reserve(x->t.wc, entries);
}

uint64_t prj__session_position(const prj_session *x)
{
    return x->position;
}

int prj__session_end(prj_session *x, bool commit)
{
    prj_store *s = x->s;
    int rc = 0;
    if (commit)
        rc = session_commit(x);
    else
        session_abort(x);
    pthread_rwlock_unlock(&s->resize);
    pthread_mutex_unlock(&s->apply_lock);
    free(x);
    return rc;
}

int prj__grow(prj_store *s)
{
    return grow(s);
}

int prj__reserve(prj_store *s, size_t more)
{
    for (;;) {
        MDB_envinfo info;
        MDB_stat st;
        int rc = mdb_env_info(s->env, &info);
        if (rc == 0)
            rc = mdb_env_stat(s->env, &st);
        if (rc)
            return rc;
        /* A transaction that rewrites every page needs as many again, and
         * room for what it adds. (The map is address space: the file grows
         * only as pages are written.) */
        size_t used = (size_t)(info.me_last_pgno + 1) * st.ms_psize;
        if (2 * used + (more > DEFAULT_MAP ? more : DEFAULT_MAP) <= info.me_mapsize)
            return 0;
        if ((rc = grow(s)))
            return rc;
    }
}

guild_status prj__lmdb_status(int rc, const char *what)
{
    return lmdb_status(NULL, rc, what);
}

guild_status prj_store_apply(prj_store *s, const es_record *const *recs, size_t n,
                             prj_batch_stats *stats)
{
    prj_batch_stats local;
    if (!stats)
        stats = &local;
    pthread_mutex_lock(&s->apply_lock);
    /* Optimistic first: the whole batch in one transaction. If an event
     * fails, the batch runs again with each event in its own nested
     * transaction, so only the failing ones are parked. */
    bool careful = false;
    int rc;
    for (;;) {
        pthread_rwlock_rdlock(&s->resize);
        rc = apply_batch(s, recs, n, careful, stats);
        pthread_rwlock_unlock(&s->resize);
        if (rc == -1 && !careful) {
            careful = true;
            continue;
        }
        if (rc == MDB_MAP_FULL && grow(s) == 0)
            continue;
        break;
    }
    pthread_mutex_unlock(&s->apply_lock);
    return rc ? lmdb_status(NULL, rc, "applying a batch") : GUILD_OK;
}

/* ---- queries -------------------------------------------------------------- */

/* What every query does first: validates its arguments (q is the query
 * named `query`, NULL when there is none), checks the caller's permission,
 * begins the read and reads the position it reflects. */
static guild_status query_begin(prj_store *s, const prj_query *q, const char *query,
                                const json_t *args, const dom_actor *actor, prj_read *r,
                                uint64_t *at, guild_error *err)
{
    if (!q)
        return guild_error_set(err, GUILD_INVALID_REQUEST, 0, "unknown query %.100s", query);
    guild_status st = dom_validate(q->fields, args, err);
    if (st != GUILD_OK)
        return st;
    if (actor && !q->is_public) {
        if (!actor->permissions && !actor->user_id[0] && !actor->service)
            return guild_error_set(err, GUILD_UNAUTHENTICATED, 0, "a bearer token is required");
        if (q->permission && !dom_actor_can(actor, q->permission))
            return guild_error_set(err, GUILD_FORBIDDEN, 0, "the permission %s is needed",
                                   q->permission);
    }
    *r = (prj_read){s, NULL};
    int rc = read_begin(s, &r->txn);
    if (rc)
        return lmdb_status(err, rc, "beginning a read");
    *at = 0;
    MDB_val k = {10, (void *)"checkpoint"}, v;
    if (mdb_get(r->txn, s->meta, &k, &v) == 0 && v.mv_size >= 8)
        *at = u64_get(v.mv_data);
    return GUILD_OK;
}

/* Ends the read query_begin began; the position to *position. */
static void query_end(prj_store *s, prj_read *r, uint64_t at, uint64_t *position)
{
    read_end(s, r->txn);
    if (position)
        *position = at;
}

guild_status prj_store_query(prj_store *s, const char *query, const json_t *args,
                             const dom_actor *actor, json_t **data, uint64_t *position,
                             guild_error *err)
{
    const prj_query *q = prj_query_find(s->m, query);
    prj_read r;
    uint64_t at;
    guild_status st = query_begin(s, q, query, args, actor, &r, &at, err);
    if (st != GUILD_OK)
        return st;
    *data = NULL;
    st = q->run(&r, args, actor, data, err);
    query_end(s, &r, at, position);
    return st;
}

guild_status prj_store_query_json(prj_store *s, const char *query, const json_t *args,
                                  const dom_actor *actor, guild_buf *out, uint64_t *position,
                                  bool *done, guild_error *err)
{
    *done = false;
    const prj_query *q = prj_query_find(s->m, query);
    if (!q || !q->run_stored) /* prj_store_query answers, or refuses */
        return GUILD_OK;
    prj_read r;
    uint64_t at;
    guild_status st = query_begin(s, q, query, args, actor, &r, &at, err);
    if (st != GUILD_OK)
        return st;
    const void *bytes = NULL;
    size_t len = 0;
    st = q->run_stored(&r, args, actor, &bytes, &len, err);
    if (st == GUILD_OK)
        *done = guild_codec_json_from_msgpack(bytes, len, out, NULL) == GUILD_OK;
    query_end(s, &r, at, position);
    return st;
}

/* ---- dead letters --------------------------------------------------------- */

typedef struct dead_entry {
    uint64_t position;
    char *reason, *type, *stream;
    uint8_t *raw; /* only in dead letters parked by earlier versions */
    size_t raw_len;
} dead_entry;

static char *entry_str(const json_t *j, const char *key)
{
    const char *v = json_string_value(json_object_get(j, key));
    return guild_xstrdup(v ? v : "");
}

static bool dead_split(const MDB_val *v, dead_entry *e)
{
    const uint8_t *p = v->mv_data;
    if (v->mv_size < 4)
        return false;
    size_t len = ((size_t)p[0] << 24) | ((size_t)p[1] << 16) | ((size_t)p[2] << 8) | p[3];
    if (4 + len > v->mv_size)
        return false;
    json_t *j = NULL;
    if (guild_codec_decode(p + 4, len, GUILD_FMT_MSGPACK, &j, NULL) != GUILD_OK)
        return false;
    e->reason = entry_str(j, "reason");
    e->type = entry_str(j, "type");
    e->stream = entry_str(j, "stream");
    json_decref(j);
    e->raw_len = v->mv_size - 4 - len;
    e->raw = e->raw_len ? guild_xmemdup(p + 4 + len, e->raw_len) : NULL;
    es_record rec;
    if (e->raw && !e->type[0] && es_record_decode(e->raw, e->raw_len, &rec) == GUILD_OK) {
        /* a letter of an earlier version: the names are in its record */
        free(e->type);
        free(e->stream);
        e->type = guild_xstrndup(rec.type.p ? rec.type.p : "", rec.type.p ? rec.type.n : 0);
        e->stream =
            guild_xstrndup(rec.stream.p ? rec.stream.p : "", rec.stream.p ? rec.stream.n : 0);
    }
    return true;
}

static guild_status dead_collect(prj_store *s, dead_entry **out, size_t *n)
{
    MDB_txn *txn;
    int rc = read_begin(s, &txn);
    if (rc)
        return lmdb_status(NULL, rc, "beginning a read");
    MDB_cursor *cur;
    size_t cap = 0;
    *out = NULL;
    *n = 0;
    rc = mdb_cursor_open(txn, s->dead, &cur);
    MDB_val k, v;
    for (int g = rc ? rc : mdb_cursor_get(cur, &k, &v, MDB_FIRST); g == 0;
         g = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        dead_entry e = {0};
        if (k.mv_size != 8 || !dead_split(&v, &e))
            continue;
        e.position = u64_get(k.mv_data);
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *out = guild_xrealloc(*out, cap * sizeof **out);
        }
        (*out)[(*n)++] = e;
    }
    if (rc == 0)
        mdb_cursor_close(cur);
    read_end(s, txn);
    return GUILD_OK;
}

static void dead_free(dead_entry *d, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free(d[i].reason);
        free(d[i].type);
        free(d[i].stream);
        free(d[i].raw);
    }
    free(d);
}

guild_status prj_store_dead_letters(prj_store *s, prj_dead_fn fn, void *ctx)
{
    dead_entry *d;
    size_t n;
    guild_status st = dead_collect(s, &d, &n);
    for (size_t i = 0; st == GUILD_OK && i < n; i++) {
        if (fn(ctx, d[i].position, d[i].reason, d[i].type, d[i].stream))
            break;
    }
    dead_free(d, n);
    return st;
}

typedef struct owned_record {
    uint64_t position;
    uint8_t *raw;
    size_t raw_len;
} owned_record;

static int copy_record(void *ctx, const es_record *rec)
{
    owned_record *o = ctx;
    if (rec->position == o->position) {
        o->raw = guild_xmemdup(rec->raw, rec->raw_len);
        o->raw_len = rec->raw_len;
    }
    return 1; /* one is enough */
}

/* The parked event, decoded into *rec (pointing into e->raw): from the
 * log, or, for a dead letter parked by an earlier version, from the letter
 * itself when its bytes decode; false when neither has it. */
static bool dead_record(es_store *log, dead_entry *e, es_record *rec)
{
    if (e->raw && es_record_decode(e->raw, e->raw_len, rec) == GUILD_OK)
        return true;
    free(e->raw);
    e->raw = NULL;
    e->raw_len = 0;
    owned_record o = {.position = e->position};
    if (!log || es_read_log(log, e->position, 1, copy_record, &o, NULL) != GUILD_OK || !o.raw)
        return false;
    e->raw = o.raw;
    e->raw_len = o.raw_len;
    return es_record_decode(e->raw, e->raw_len, rec) == GUILD_OK;
}

guild_status prj_store_retry(prj_store *s, es_store *log, uint64_t *retried, uint64_t *left)
{
    dead_entry *d;
    size_t n;
    guild_status st = dead_collect(s, &d, &n);
    *retried = *left = 0;
    if (st != GUILD_OK)
        return st;
    pthread_mutex_lock(&s->apply_lock);
    for (size_t i = 0; i < n; i++) {
        es_record rec;
        MDB_txn *txn;
        if (!dead_record(log, &d[i], &rec) || mdb_txn_begin(s->env, NULL, 0, &txn) != 0) {
            (*left)++;
            continue;
        }
        prj_txn t = {.s = s, .txn = txn, .wc = &s->wc};
        memcpy(t.lanes, s->lanes, sizeof t.lanes);
        prj_batch_stats stats = {0};
        uint8_t key[8];
        u64_put(key, d[i].position);
        MDB_val k = {8, key};
        /* Careful mode parks it again (same key) if it still fails. */
        int rc = mdb_del(txn, s->dead, &k, NULL);
        if (rc == 0)
            rc = apply_one(s, &t, &rec, false, true, &stats);
        if (rc == 0)
            rc = meta_store(s, txn, s->position, s->event_time, t.lanes);
        if (rc == 0 && (rc = mdb_txn_commit(txn)) == 0) {
            pthread_mutex_lock(&s->lock);
            memcpy(s->lanes, t.lanes, sizeof t.lanes);
            pthread_mutex_unlock(&s->lock);
        } else if (rc) {
            mdb_txn_abort(txn);
        }
        if (rc == 0 && stats.applied)
            (*retried)++;
        else
            (*left)++;
    }
    pthread_mutex_unlock(&s->apply_lock);
    dead_free(d, n);
    return GUILD_OK;
}

guild_status prj_store_remove(const char *dir)
{
    static const char *const files[] = {"data.mdb", "lock.mdb"};
    char path[4096];
    for (int i = 0; i < 2; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        if (unlink(path) != 0 && errno != ENOENT)
            return GUILD_IO;
    }
    return rmdir(dir) == 0 || errno == ENOENT ? GUILD_OK : GUILD_IO;
}
