/*
 * es.h — guild's event store: one LMDB environment per domain.
 *
 * What it promises
 *   - An append writes one or more events to one stream atomically, after
 *     checking the expected version, and returns only once the events are
 *     durable: LMDB's default sync, every commit flushed to the disk.
 *   - Every event gets the next global position of the domain's log (from 1,
 *     gapless) and the next version of its stream (from 1, gapless).
 *   - Appends carrying a command id that was already committed return the
 *     first result (duplicate = true) and write nothing.
 *   - Appends from many threads are committed together by one writer thread
 *     (group commit): each append succeeds or fails on its own, the batch
 *     shares one transaction and one sync. A lone append may run on the
 *     thread that submits it instead (es_append.run_here).
 *   - Every record carries the BLAKE2b-256 hash chain of DESIGN.md; es_verify
 *     names the first position where it breaks.
 *   - Another process may open the store read-only while the writer runs;
 *     readers never block the writer. The map grows by itself when full.
 *
 * The log is the store's write-ahead log. A commit writes the batch's log
 * records and its commands' results (commands.c), a few sequential pages at
 * the log's end; the `commands` index and the `streams` and `heads`
 * databases are written in bulk at index checkpoints (every `index_every`
 * events, after a quiet second, and on close) and the newer part of the
 * index is kept in memory, rebuilt from the log on open. Reads see both, so
 * none of this shows through the API.
 *
 * After each batch the writer keeps the data file written with zeros up to a
 * megabyte past LMDB's last page (file_ahead.h), so that commits overwrite
 * blocks the file already has rather than grow it.
 *
 * Storage (named LMDB databases; integers big-endian):
 *
 *   db         key                          value
 *   log        position u64                 event record (msgpack, see record.h)
 *   streams    stream id, 0x00, version u64 position u64
 *   heads      stream id                    version u64, hash of last event [32]
 *   commands   command id                   stored result (msgpack array)
 *   snapshots  stream id                    version u64, state bytes
 *   meta       name                         bytes: "es.format" (u64), "es.checkpoint"
 *                                           (position u64, hash[32]: the index is
 *                                           complete up to that position), callers' keys
 *
 * Threads: every function may be called from any thread. Callbacks
 * (es_record_fn, es_decide_fn, es_done_fn) run on the calling thread for reads
 * and, for appends, on the thread running the batch: the writer thread, or
 * the submitting one with run_here (es_done_fn also on the store's
 * completion thread). One batch runs at a time.
 *
 * Errors: GUILD_INVALID_REQUEST (bad argument), GUILD_CONFLICT (expected
 * version), GUILD_NOT_FOUND, GUILD_IO (LMDB or the OS failed; the LMDB code is
 * in guild_error.origin), GUILD_CORRUPT (a record does not decode),
 * GUILD_CLOSED (store is closing), or whatever a decide function returns.
 */
#ifndef GUILD_EVENTSTORE_ES_H
#define GUILD_EVENTSTORE_ES_H

#include "common/status.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ES_ANY_VERSION UINT64_MAX /* expected version: no check */
#define ES_STREAM_MAX 255         /* bytes in a stream id */
#define ES_COMMAND_ID_MAX 128     /* bytes in a command id */
#define ES_TYPE_MAX 64            /* bytes in an event type */
#define ES_HASH_LEN 32
#define ES_ID_LEN 36 /* UUIDv7 text, without NUL */

typedef struct es_store es_store;

typedef struct es_options {
    const char *domain;        /* written into every record; required unless read_only */
    size_t map_size;           /* initial map size in bytes; 0 = 256 MiB. It grows by itself. */
    bool read_only;            /* open for reading only (another process may write) */
    unsigned max_batch;        /* most appends in one commit; 0 = 4096 */
    uint64_t index_every;      /* unindexed events that start a checkpoint slice; 0 = 1,000,000 */
    uint64_t checkpoint_slice; /* events one checkpoint slice indexes at most; 0 = 8192 */
    /* Called on the thread running the batch after its commit (committed =
     * true) or its failure, before the next batch's decide functions run:
     * a caller caching state built inside decide drops it on failure. */
    void (*batch_hook)(void *ctx, bool committed);
    void *batch_hook_ctx;
} es_options;

/* Opens (creating if needed, unless read_only) the store in directory `dir`,
 * which must exist. On success *out owns the store; close it with
 * es_store_close. A writable store starts its writer thread. */
guild_status es_store_open(const char *dir, const es_options *opt, es_store **out,
                           guild_error *err);

/* Finishes every append already submitted, stops the writer and frees the
 * store. NULL is allowed. */
void es_store_close(es_store *st);

/* The domain the store was opened for (borrowed, lives as long as st). */
const char *es_store_domain(const es_store *st);

/* Counters of the writer since open. */
typedef struct es_stats {
    uint64_t batches;   /* commits */
    uint64_t requests;  /* appends and puts committed (or failed) in them */
    uint64_t commit_ns; /* time spent running and committing batches */
    uint64_t max_batch; /* largest batch */
} es_stats;

/* Copies the writer's counters (zeros for a read-only store). */
void es_store_stats(es_store *st, es_stats *out);

/* ---- records -------------------------------------------------------------- */

/* A string inside a record: not NUL-terminated. */
typedef struct es_str {
    const char *p;
    uint32_t n;
} es_str;

/* A decoded event record. Every pointer borrows the bytes it was decoded
 * from: inside a read callback they are valid until the callback returns. */
typedef struct es_record {
    es_str id, type, domain, stream;
    es_str command_id, correlation_id, causation_id, actor;
    uint32_t schema;
    uint64_t version, position;
    int64_t time;        /* Unix ns */
    const uint8_t *data; /* msgpack map */
    size_t data_len;
    const uint8_t *prev, *hash; /* ES_HASH_LEN bytes each */
    const uint8_t *raw;         /* the whole encoded record */
    size_t raw_len;
} es_record;

/* Decodes an encoded record; GUILD_CORRUPT if it is not one. */
guild_status es_record_decode(const void *raw, size_t len, es_record *out);

/* Points a decoded record at a copy of its bytes (new_raw holds the same
 * raw_len bytes as rec->raw): a reader that keeps records past its callback
 * copies the bytes and rebases instead of decoding again. */
void es_record_rebase(es_record *rec, const void *new_raw);

/* Recomputes the hash of an encoded record from its own bytes and `prev`
 * (the hash field is excluded, see record.h); true if it equals the stored
 * hash. */
bool es_record_hash_ok(const es_record *rec);

/* Read callbacks return 0 to go on, anything else to stop early. */
typedef int (*es_record_fn)(void *ctx, const es_record *rec);

/* ---- appends -------------------------------------------------------------- */

/* One event to append. Borrowed for the duration of the submitting call. */
typedef struct es_event_in {
    const char *type;
    uint32_t schema;
    const void *data; /* msgpack-encoded map; NULL means an empty map */
    size_t data_len;
} es_event_in;

/* Who and what caused an append; each NULL or a string (borrowed). */
typedef struct es_provenance {
    const char *command_id; /* idempotency key, at most ES_COMMAND_ID_MAX bytes */
    const char *correlation_id;
    const char *causation_id;
    const char *actor;
} es_provenance;

/* The inside of the writer's transaction, handed to a decide function. */
typedef struct es_wctx es_wctx;

/* Runs on the thread running the batch (the writer thread, or the
 * submitting one with run_here) inside its transaction, after the expected
 * version was checked. Reads the stream through `w` and emits events with
 * es_wctx_emit. Returns GUILD_OK to commit what it emitted (possibly
 * nothing), or a failure (see es_wctx_fail) to write nothing for this
 * append. Must not block and must not call other es_ functions on the same
 * store except the es_wctx_ ones. May be called more than once for the same
 * append (the batch is redone if the map had to grow): it must be pure. */
typedef guild_status (*es_decide_fn)(void *ctx, es_wctx *w);

typedef struct es_append {
    const char *stream;        /* "talent-<id>", 1..ES_STREAM_MAX bytes */
    uint64_t expected_version; /* ES_ANY_VERSION, 0 (must be new) or N */
    es_provenance prov;
    int64_t time_ns; /* event time; 0 = the batch's commit time */
    const es_event_in *events;
    size_t n_events;
    es_decide_fn decide; /* when set, `events` is ignored */
    void *decide_ctx;    /* borrowed until the append completes */
    /* The calling thread may run the append itself (decide, commit, done)
     * when the writer is idle and nothing waits: a lone caller saves the
     * hand-over to the writer thread. Only from a thread that holds no read
     * transaction of this store. */
    bool run_here;
} es_append;

/* The outcome of one append. */
typedef struct es_result {
    guild_status status; /* GUILD_OK, GUILD_CONFLICT, a decide failure, ... */
    bool duplicate;      /* the command id was committed before: first result */
    char stream[ES_STREAM_MAX + 1];
    uint64_t version;        /* stream version after the append; on conflict, the actual one */
    uint64_t first_position; /* 0 when no event was written */
    uint64_t last_position;
    uint32_t n_events;
    char (*event_ids)[ES_ID_LEN + 1]; /* n_events ids; owned, freed by es_result_release */
    void *reply;                      /* bytes a decide function stored with the command; owned */
    size_t reply_len;
    guild_error error;
} es_result;

/* Frees what a result owns and zeroes it. */
void es_result_release(es_result *r);

/* Called once the append is durable (or failed), on the thread that ran
 * its batch (the writer, or the submitter with run_here) or the store's
 * completer; one at a time, in commit order.
 * `res` is owned by the callee: release it with es_result_release. Keep it
 * short: the next batch waits. */
typedef void (*es_done_fn)(void *ctx, es_result *res);

/* Submits an append and returns at once; `done` is called exactly once,
 * after commit. Everything in *req is copied except decide_ctx. If this
 * returns a failure (GUILD_CLOSED, GUILD_INVALID_REQUEST), done is never
 * called. */
guild_status es_append_submit(es_store *st, const es_append *req, es_done_fn done, void *ctx);

/* Appends and waits until durable. *out is filled in every case (release
 * it); the return value is out->status. */
guild_status es_append_wait(es_store *st, const es_append *req, es_result *out);

/* Inside a decide function: the version of the append's stream (0 if new). */
uint64_t es_wctx_version(const es_wctx *w);

/* The stream being appended to (borrowed). */
const char *es_wctx_stream(const es_wctx *w);

/* The time the events will carry (Unix ns). */
int64_t es_wctx_time(const es_wctx *w);

/* Reads the append's stream from `from_version` inside the writer's
 * transaction (sees what earlier appends of the batch wrote). */
guild_status es_wctx_read(es_wctx *w, uint64_t from_version, es_record_fn fn, void *ctx);

/* Reads any stream inside the writer's transaction. */
guild_status es_wctx_read_stream(es_wctx *w, const char *stream, uint64_t from_version,
                                 es_record_fn fn, void *ctx);

/* Version of any stream inside the transaction; 0 if it does not exist. */
uint64_t es_wctx_head(es_wctx *w, const char *stream);

/* Adds an event to the append (all arguments copied). GUILD_INTERNAL for
 * an event that is not one (no type or one over ES_TYPE_MAX, data that is
 * not a msgpack map, a stream name out of bounds): it is not added, and the
 * append fails even if decide then returns GUILD_OK. */
guild_status es_wctx_emit(es_wctx *w, const char *type, uint32_t schema, const void *data,
                          size_t len);

/* Adds an event to another stream, as its next version, in the same atomic
 * append (a uniqueness claim, say). Check the other stream's version with
 * es_wctx_head first if it matters. */
guild_status es_wctx_emit_to(es_wctx *w, const char *stream, const char *type, uint32_t schema,
                             const void *data, size_t len);

/* Bytes stored with the command id and returned to every duplicate (copied). */
void es_wctx_set_reply(es_wctx *w, const void *bytes, size_t len);

/* A snapshot of the target stream's state after this append (bytes
 * copied), stored in the same commit as its events when `version` is the
 * version the stream has after them; otherwise dropped. The last call of
 * an attempt counts. */
void es_wctx_snapshot(es_wctx *w, uint64_t version, const void *state, size_t len);

/* The latest snapshot of `stream` as the batch's transaction sees it, as
 * es_snapshot_get gives it (*state malloc'd). GUILD_NOT_FOUND if none. */
guild_status es_wctx_snapshot_get(es_wctx *w, const char *stream, uint64_t *version, void **state,
                                  size_t *len);

/* Records a failure detail for the result and returns `s`:
 * `return es_wctx_fail(w, GUILD_RULE_VIOLATION, "level", "level must be ...");` */
guild_status es_wctx_fail(es_wctx *w, guild_status s, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- reads ---------------------------------------------------------------- */

/* Reads up to `limit` events of `stream` from version `from` (1 = start)
 * forward in one read transaction. *next (when not NULL) receives the version
 * to continue from. GUILD_OK also for an empty result. */
guild_status es_read_stream(es_store *st, const char *stream, uint64_t from, size_t limit,
                            es_record_fn fn, void *ctx, uint64_t *next);

/* Reads up to `limit` events of `stream` backward from version `from`
 * (0 = from the head). */
guild_status es_read_stream_back(es_store *st, const char *stream, uint64_t from, size_t limit,
                                 es_record_fn fn, void *ctx);

/* Reads up to `limit` events of the domain's log from position `from`
 * (1 = start). *next receives the position to continue from. */
guild_status es_read_log(es_store *st, uint64_t from, size_t limit, es_record_fn fn, void *ctx,
                         uint64_t *next);

/* Head of a stream: version and hash of its last event (either out may be
 * NULL). GUILD_NOT_FOUND if the stream does not exist. */
guild_status es_stream_head(es_store *st, const char *stream, uint64_t *version,
                            uint8_t hash[ES_HASH_LEN]);

/* Last position of the log (0 if empty) and its hash (zeros if empty). */
guild_status es_log_head(es_store *st, uint64_t *position, uint8_t hash[ES_HASH_LEN]);

/* Streams in id order after `after` (NULL = from the first): fn receives
 * each stream id (NUL-terminated, borrowed) and its version. Returns 0 to go
 * on. */
typedef int (*es_stream_fn)(void *ctx, const char *stream, uint64_t version);
guild_status es_list_streams(es_store *st, const char *after, size_t limit, es_stream_fn fn,
                             void *ctx);

/* The stored result of a committed command id: GUILD_OK and *out filled
 * (duplicate = true; release it), or GUILD_NOT_FOUND. */
guild_status es_command_lookup(es_store *st, const char *command_id, es_result *out);

/* ---- snapshots and meta --------------------------------------------------- */

/* Stores a snapshot of `stream` at `version` (bytes copied), durably. */
guild_status es_snapshot_put(es_store *st, const char *stream, uint64_t version, const void *state,
                             size_t len);

/* Latest snapshot of `stream`: *state is malloc'd and owned by the caller.
 * GUILD_NOT_FOUND if none. */
guild_status es_snapshot_get(es_store *st, const char *stream, uint64_t *version, void **state,
                             size_t *len);

/* Calls fn with every snapshot, in stream order: its stream, version and
 * state bytes (borrowed for the call). They are copied out of the store a
 * page at a time, so fn may read the store. fn returns non-zero to stop.
 * *count (may be NULL) is the number of snapshots in the store. */
typedef int (*es_snapshot_fn)(void *ctx, const char *stream, uint64_t version, const void *state,
                              size_t len);
guild_status es_snapshot_each(es_store *st, es_snapshot_fn fn, void *ctx, uint64_t *count);

/* Stores a meta value under `name` (copied), durably. Names starting with
 * "es." are the store's own. */
guild_status es_meta_put(es_store *st, const char *name, const void *value, size_t len);

/* *value is malloc'd and owned by the caller; GUILD_NOT_FOUND if absent. */
guild_status es_meta_get(es_store *st, const char *name, void **value, size_t *len);

guild_status es_meta_put_u64(es_store *st, const char *name, uint64_t v);
guild_status es_meta_get_u64(es_store *st, const char *name, uint64_t *v);

/* Visits the meta entries whose name starts with `prefix` ("" or NULL: all)
 * in name order, in one read transaction: fn receives the name
 * (NUL-terminated) and the value, both borrowed until fn returns, and
 * returns 0 to go on, anything else to stop. fn must not call other es_
 * functions on the same store. GUILD_OK also when nothing matches. */
typedef int (*es_meta_fn)(void *ctx, const char *name, const void *value, size_t len);
guild_status es_meta_scan(es_store *st, const char *prefix, es_meta_fn fn, void *ctx);

/* ---- verification --------------------------------------------------------- */

typedef struct es_verify_report {
    bool intact;                    /* the whole history checks out */
    uint64_t checked;               /* records checked */
    uint64_t last_position;         /* last position of the log */
    uint64_t break_position;        /* first bad position (0 if intact) */
    char stream[ES_STREAM_MAX + 1]; /* stream of the bad record, if known */
    char what[256];                 /* what is wrong, for a person */
} es_verify_report;

/* Called now and then during es_verify with records checked so far. */
typedef void (*es_progress_fn)(void *ctx, uint64_t done, uint64_t total);

/* Walks the whole log: positions gapless from 1, each record decodes, its
 * position matches its key, prev equals the previous hash, the hash
 * recomputes, each stream's versions are gapless and indexed, and the heads
 * and chain head agree with the log. Returns GUILD_OK when the walk ran
 * (see rep->intact), or an I/O failure. */
guild_status es_verify(es_store *st, es_verify_report *rep, es_progress_fn progress, void *ctx);

#endif
