/*
 * internal.h — what the event store's files share; not part of the API.
 */
#ifndef GUILD_EVENTSTORE_INTERNAL_H
#define GUILD_EVENTSTORE_INTERNAL_H

#include "eventstore/cmdtab.h"
#include "eventstore/es.h"
#include "eventstore/file_ahead.h"
#include "eventstore/record.h"
#include "eventstore/tail.h"

#include <lmdb.h>
#include <pthread.h>

/* 2: the log holds each command's result after its events, and `commands`
 * its position (commands.c). A store of format 1 opens and becomes 2. */
#define ES_FORMAT_VERSION 2
#define ES_FORMAT_OLDEST 1
#define ES_META_FORMAT "es.format"
#define ES_META_CHECKPOINT "es.checkpoint" /* position u64 BE, hash[32]: index complete to here */
#define ES_META_COMMANDS "es.commands"     /* position u64 BE: `commands` complete to here */
#define ES_DEFAULT_INDEX_EVERY 1000000
#define ES_CHECKPOINT_SLICE 8192 /* events one checkpoint slice indexes at most */
#define ES_STREAM_KEY_MAX (ES_STREAM_MAX + 1 + 8)
#define ES_COMMAND_KEY_MAX (8 + ES_COMMAND_ID_MAX)
#define ES_COMMAND_CANDIDATES 4 /* positions looked at for one command id */
#define ES_COMMANDS_EVERY 65536 /* results held in the table before a slice */

typedef struct es_req es_req;

/* A reader's copy of one stream's versions after the index checkpoint:
 * versions base+1 .. base+count are at positions[0 .. count-1]. */
typedef struct es_view {
    bool found;
    bool borrowed; /* positions belong to the writer's tail */
    uint64_t base, count;
    uint64_t *positions;
    uint8_t hash[ES_HASH_LEN]; /* of version base+count */
} es_view;

typedef struct es_stream_ref {
    char *stream;
    uint64_t version;
} es_stream_ref;

/* Chain state of the writer: the next position and the hash before it. */
typedef struct es_chain {
    uint64_t next_position;
    uint8_t last_hash[ES_HASH_LEN];
} es_chain;

struct es_store {
    MDB_env *env;
    MDB_dbi db_log, db_streams, db_heads, db_commands, db_snapshots, db_meta;
    char *domain;
    bool read_only;
    int writer_lock; /* fd holding flock on <dir>/writer.lock; -1 if none */
    unsigned max_batch;
    void (*batch_hook)(void *ctx, bool committed);
    void *batch_hook_ctx;

    /* Readers of this process hold it shared around each read transaction;
     * growing the map takes it exclusively (LMDB's rule for set_mapsize). */
    pthread_rwlock_t resize_lock;

    /* The append queue, fed by any thread, drained by the writer. */
    pthread_mutex_t q_lock;
    pthread_cond_t q_cond;
    es_req *q_head, *q_tail;
    /* A thread (the writer, or a submitter with run_here) is running a
     * batch or a checkpoint slice: one at a time. */
    bool running;
    /* What the writer waits for, so the thread that clears `running` wakes
     * it only when that matters to it: when it waits for `running` to
     * clear, or idles with nothing to index and now there is. */
    enum { ES_WAIT_NONE, ES_WAIT_RUN, ES_WAIT_EMPTY } writer_wait;
    uint64_t last_run_ns; /* monotonic; when `running` last cleared */
    bool stopping;
    bool writer_started;
    pthread_t writer;

    /* Committed batches whose callers are still to be told. The writer hands
     * a batch here when more work waits, so waking callers overlaps with the
     * next commit's sync; when nothing waits it completes inline. */
    pthread_mutex_t c_lock;
    pthread_cond_t c_cond;
    es_req *c_head, *c_tail;
    bool c_busy;
    bool c_stopping;
    pthread_t completer;

    es_stats stats; /* under q_lock */

    /* Stream index after the checkpoint (tail.h). The writer changes it
     * under tail_lock; readers copy what they need under it. */
    es_tail tail;
    pthread_mutex_t tail_lock;
    uint64_t tail_checkpoint; /* checkpoint the tail continues */
    /* Where the log holds the results after the checkpoint (cmdtab.h);
     * the writer changes it under tail_lock. */
    es_cmdtab commands;
    uint64_t commands_checkpoint; /* es.commands */
    uint64_t commands_every;
    uint64_t index_every;
    uint64_t checkpoint_slice;

    /* Writer thread only (the thread running a batch). */
    es_chain chain;
    es_file_ahead ahead; /* zeros past the last page (file_ahead.h) */
    msgpack_sbuffer enc;
};

/* ---- store.c -------------------------------------------------------------- */

/* Maps an LMDB code to a status and fills err with the original. */
guild_status es__lmdb_status(guild_error *err, int rc, const char *what);

/* Read transactions that respect resize_lock and follow a map grown by
 * another process. */
int es__read_begin(es_store *st, MDB_txn **txn);
void es__read_end(es_store *st, MDB_txn *txn);

/* Grows the map (doubling); called by the writer with no transaction open. */
int es__grow_map(es_store *st);

void es__u64_put(uint8_t out[8], uint64_t v);
uint64_t es__u64_get(const uint8_t in[8]);

/* A snapshot's stored value: the version (u64, big-endian) and the state's
 * bytes (malloc'd, 8 + len); and back (*state malloc'd), GUILD_CORRUPT when
 * too short. */
uint8_t *es__snapshot_value(uint64_t version, const void *state, size_t len);
guild_status es__snapshot_split(const void *val, size_t vlen, uint64_t *version, void **state,
                                size_t *len);

/* Key of (stream, version) in the streams db; returns its length. */
size_t es__stream_key(uint8_t out[ES_STREAM_KEY_MAX], const char *stream, size_t n,
                      uint64_t version);

/* The version of `stream` in the heads database (as of the checkpoint), 0
 * if absent; hash_out optional. */
int es__head_db_get(es_store *st, MDB_txn *txn, const char *stream, size_t n, uint64_t *version,
                    uint8_t *hash_out);

/* Forward read of a stream inside an open transaction, with the view of
 * its versions after the checkpoint (NULL: none). */
guild_status es__read_stream_txn(es_store *st, MDB_txn *txn, const char *stream, uint64_t from,
                                 size_t limit, const es_view *view, es_record_fn fn, void *ctx,
                                 uint64_t *next);

/* A u64 (big-endian) under `name` in meta: get gives 0 when absent (and
 * *found false, found optional) and MDB_CORRUPTED when the value is not 8
 * bytes. ES_META_COMMANDS holds the
 * position before which `commands` indexes every result (results at it
 * written after the slice that stored it are not). */
int es__meta_u64_get(es_store *st, MDB_txn *txn, const char *name, uint64_t *value, bool *found);
int es__meta_u64_put(es_store *st, MDB_txn *txn, const char *name, uint64_t value);

/* Loads the chain head (next position, last hash) from the log. */
int es__chain_load(es_store *st, MDB_txn *txn, es_chain *chain);

/* Encodes/decodes the result stored under a command id. */
void es__command_encode(msgpack_sbuffer *buf, const es_result *res);
guild_status es__command_decode(const void *raw, size_t len, es_result *out);

/* ---- commands.c ---------------------------------------------------------- */

/* The log key of a command's result; returns its length. */
size_t es__command_key(uint8_t out[ES_COMMAND_KEY_MAX], uint64_t position, const char *id,
                       size_t n);

/* True for a command's key in the log (an event's key is 8 bytes); every
 * reader of the log asks it of each key. */
static inline bool es__is_command_key(const MDB_val *key)
{
    return key->mv_size > 8;
}

/* The positions where the log may hold command `id` (none in a read-only
 * opener), and the id's hash in the table (*hash, for es__command_put).
 * Take them before beginning the transaction that reads: a slice between
 * the two then only indexes a result that transaction finds in the log. */
size_t es__command_candidates(es_store *st, const char *id, size_t n, uint64_t *hash,
                              uint64_t out[ES_COMMAND_CANDIDATES]);

/* The stored result of command `id` through txn: in the log at one of the
 * candidates (a read-only opener scans the log after the checkpoint), else
 * where `commands` says. 0, MDB_NOTFOUND or an LMDB error. */
int es__command_get(es_store *st, MDB_txn *txn, const char *id, size_t n, const uint64_t *cand,
                    size_t n_cand, MDB_val *val);

/* Writer: stores a command's result after the log's last record; `hash`
 * from es__command_candidates. */
int es__command_put(es_store *st, MDB_txn *txn, const char *id, size_t n, uint64_t hash,
                    const void *result, size_t len, bool after_event);

/* Writer, on open: fills the table from the log after the commands
 * checkpoint. */
int es__commands_replay(es_store *st, MDB_txn *txn, uint64_t checkpoint);

/* Indexes about `budget` results into `commands` in one transaction
 * (writer thread, between batches). */
int es__commands_slice(es_store *st, uint64_t budget);

/* ---- index.c -------------------------------------------------------------- */

int es__checkpoint_get(es_store *st, MDB_txn *txn, uint64_t *position, uint8_t *hash);

/* Replays the log from `from` into t (only stream `only` when given). */
int es__tail_replay(es_store *st, MDB_txn *txn, es_tail *t, uint64_t from, const char *only,
                    size_t only_len);

/* Indexes the oldest part of the tail, about `budget` events, in one
 * transaction (writer thread, between batches). */
int es__checkpoint_slice(es_store *st, uint64_t budget);

/* Indexes the whole tail and every result, slice by slice. */
int es__checkpoint(es_store *st);

/* Whether the tail or the results table holds anything to index. */
bool es__unindexed(const es_store *st);

/* One slice of each that has something to index. */
int es__checkpoint_step(es_store *st);

/* A reader's view of `stream` consistent with txn (release it). */
int es__view_get(es_store *st, MDB_txn *txn, const char *stream, size_t n, es_view *view);

/* The writer's own view, including the batch being written (borrowed). */
void es__view_writer(es_store *st, const char *stream, size_t n, es_view *view);

void es__view_release(es_view *view);

/* Streams of the tail with their versions, for listing (caller frees). */
int es__tail_streams(es_store *st, MDB_txn *txn, es_stream_ref **out, size_t *n);

/* ---- record.c ------------------------------------------------------------- */

/* True if bytes hold exactly one msgpack map. */
bool es__data_is_map(const void *data, size_t len);

/* ---- writer.c ------------------------------------------------------------- */

guild_status es__writer_start(es_store *st, guild_error *err);
void es__writer_stop(es_store *st);

/* Queues a raw put (snapshots, meta) and waits until durable. */
guild_status es__put_wait(es_store *st, MDB_dbi dbi, const void *key, size_t klen, const void *val,
                          size_t vlen);

#endif
