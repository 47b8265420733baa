/*
 * store_internal.h — the projector store's parts, and its long
 * transactions for the replay loop (internal to projections/).
 *
 * prj_store_apply commits every batch it is given. A replay applies
 * hundreds of thousands of events that no query waits for, so it keeps one
 * transaction open across many pages of the log: fewer commits, and the
 * write-back cache (wcache.h) writes each row once for all the events of
 * the transaction that change it. Nothing is skipped or repeated: the
 * checkpoint moves with the commit.
 *
 * A session holds the store's apply lock from begin to end. Events that
 * fail are not parked here: prj__session_apply returns -1, the caller ends
 * the session without committing and applies that stretch again with
 * prj_store_apply, which parks them.
 */
#ifndef GUILD_PROJECTIONS_STORE_INTERNAL_H
#define GUILD_PROJECTIONS_STORE_INTERNAL_H

#include "eventstore/file_ahead.h"
#include "projections/prj.h"
#include "projections/wcache.h"

#include <lmdb.h>
#include <msgpack.h>
#include <pthread.h>

/* ---- the store's parts: store.c (open, apply, query, dead letters) and
 * access.c (a model's reads and writes through the write-back cache) ---- */

#define MAX_DBS 12
#define WCACHE_MAX 1048576 /* entries in a batch's write-back cache before it is written out */

struct prj_store {
    const prj_model *m;
    MDB_env *env;
    MDB_dbi dbs[MAX_DBS];
    const char *names[MAX_DBS];
    int n_dbs;
    MDB_dbi meta, dead;
    pthread_rwlock_t resize; /* readers shared, map growth exclusive */
    pthread_mutex_t apply_lock;
    pthread_mutex_t lock; /* guards the cached checkpoint below */
    pthread_cond_t moved;
    uint64_t position;
    int64_t event_time;
    uint64_t lanes[4];
    int row_db;              /* index of the model's row_db, or -1 */
    prj_wcache wc;           /* the batch's, while apply_lock is held */
    es_file_ahead ahead;     /* zeros past the last page, under apply_lock */
    msgpack_sbuffer scratch; /* an object's bytes while they are written out */
};

struct prj_txn {
    prj_store *s;
    MDB_txn *txn;
    uint64_t lanes[4];
    prj_wcache *wc;
    /* Databases empty when the transaction began, and not written since: a
     * key in one is known absent without a look, and sorted writes can
     * append. */
    bool empty[MAX_DBS];
    guild_error settle_err; /* why settling an object failed (prj_objtype.settle) */
};

struct prj_read {
    prj_store *s;
    MDB_txn *txn;
};

/* The index of a model's database by name, or -1. */
int prj__db_index(const prj_store *s, const char *db);

/* Adds (or subtracts) an entry's part to the digest's lanes. */
void prj__lanes_add(uint64_t lanes[4], const uint64_t h[4], bool subtract);

/* Writes the batch's cache out to LMDB in key order, keeping the digest,
 * and leaves every entry clean. GUILD_UNAVAILABLE when the map is full. */
guild_status prj__wc_flush(prj_txn *t);

/* After an event: writes the cache out and empties it when it has grown
 * past its budget (WCACHE_MAX). */
guild_status prj__wc_trim(prj_txn *t);

/* ---- long transactions ---- */

typedef struct prj_session prj_session;

/* Begins a write transaction at the store's checkpoint. An LMDB code. */
int prj__session_begin(prj_store *s, prj_session **out);

/* Applies records in log order (those at or below the position reached are
 * skipped), adding to stats. checked (NULL, or one per record): the
 * record's data already passed guild_codec_check_msgpack, for a model that
 * reads_msgpack. 0; -1 when an event failed; or an LMDB code (MDB_MAP_FULL:
 * end without committing, prj__grow, begin again). */
int prj__session_apply(prj_session *x, const es_record *const *recs, const bool *checked, size_t n,
                       prj_batch_stats *stats);

/* Whether the store's model reads event data as msgpack (prj_model). */
bool prj__reads_msgpack(const prj_store *s);

/* Sizes the session's cache for `entries` keys at once (a hint). */
void prj__session_reserve(prj_session *x, size_t entries);

/* The last position applied in the session (not committed yet). */
uint64_t prj__session_position(const prj_session *x);

/* Commits (or drops) the session's work and frees it. 0; -1 when writing
 * the work out failed before LMDB (an object's settle: nothing is
 * committed, apply that stretch again with prj_store_apply, which parks
 * the event at fault); or an LMDB code. */
int prj__session_end(prj_session *x, bool commit);

/* Doubles the map. An LMDB code. */
int prj__grow(prj_store *s);

/* Grows the map until a transaction that rewrote every page and added
 * `more` bytes would fit, so a long one is not lost to MDB_MAP_FULL. An
 * LMDB code. */
int prj__reserve(prj_store *s, size_t more);

guild_status prj__lmdb_status(int rc, const char *what);

/* The part of the digest one entry contributes: BLAKE2b-256 over the
 * database's name (with its NUL), the key's length (8 bytes big-endian),
 * the key and the value, read as four 64-bit lanes. */
void prj__entry_hash(const char *db, const void *k, size_t kn, const void *v, size_t vn,
                     uint64_t out[4]);

#endif
