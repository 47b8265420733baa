/*
 * prj.h — read models built from a domain's events (the projector kernel).
 *
 * A read model is a table row (prj_model): the named LMDB databases it
 * keeps, an `apply` function that folds one event into them, and the
 * queries it answers. The projector store (prj_store) owns one LMDB
 * environment per model, applies events in batches — one transaction per
 * batch, which also stores the checkpoint, so each event takes effect
 * exactly once — parks events that cannot be applied in a dead-letter table,
 * and keeps a digest of the model's whole state next to the checkpoint.
 *
 * Models touch LMDB only through prj_put/prj_get/prj_del/prj_scan, which
 * keep the digest: the sum (per 64-bit lane, mod 2^64) of BLAKE2b-256(db ‖
 * key ‖ value) over every entry, independent of the order things were
 * written in, so a rebuild proves it reproduced the same state.
 *
 * The checkpoint is the domain log position of the last applied event;
 * the relay keeps JetStream's stream sequence equal to it.
 */
#ifndef GUILD_PROJECTIONS_PRJ_H
#define GUILD_PROJECTIONS_PRJ_H

#include "common/codec.h"
#include "common/status.h"
#include "domain/dom.h"
#include "eventstore/es.h"

#include <jansson.h>
#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PRJ_DIGEST_LEN 32

/* ---- what a model sees ---------------------------------------------------- */

/* A model's write access during apply (inside the batch's transaction). */
typedef struct prj_txn prj_txn;

/* A model's read access during a query (one read transaction). */
typedef struct prj_read prj_read;

/* One event to apply. Everything is borrowed for the call. */
typedef struct prj_event {
    const es_record *rec;     /* the record as stored in the log */
    const char *type;         /* rec->type as a C string */
    const char *stream;       /* rec->stream as a C string */
    const char *aggregate_id; /* the stream id after "<domain>-" */
    const json_t *data;       /* rec->data decoded; NULL for a model that reads_msgpack */
} prj_event;

/* Writes (key and value copied). `db` is one of the model's names. */
guild_status prj_put(prj_txn *t, const char *db, const void *key, size_t klen, const void *val,
                     size_t vlen);

/* Deletes; GUILD_OK also when absent. */
guild_status prj_del(prj_txn *t, const char *db, const void *key, size_t klen);

/* Reads inside the write transaction: *val borrowed until apply returns.
 * GUILD_NOT_FOUND when absent. */
guild_status prj_get(prj_txn *t, const char *db, const void *key, size_t klen, const void **val,
                     size_t *vlen);

/* JSON values, stored as msgpack. prj_get_json returns a new reference to
 * the batch's value: change it only to prj_put_json it back. */
guild_status prj_put_json(prj_txn *t, const char *db, const void *key, size_t klen,
                          const json_t *val);
guild_status prj_get_json(prj_txn *t, const char *db, const void *key, size_t klen, json_t **val);

/* Values of a model's own type: how it decodes its stored bytes into an
 * object, encodes one (into pk, as msgpack) and frees one. A row kept as a
 * C struct costs far less to fold an event into than one kept as JSON.
 * encode may run on another thread than the one that applies (while the
 * object is not being changed): it only reads the object. */
typedef struct prj_objtype {
    void *(*decode)(const void *bytes, size_t len); /* NULL: not this type */
    void (*encode)(const void *obj, msgpack_packer *pk);
    void (*free)(void *obj);
    /* Optional, for fetching ahead (prj_model.row_db): the bytes of the
     * struct itself, which the store asks the CPU to bring into its cache
     * a few events before apply reads it; then, an event later, prefetch
     * (NULL: none) reads the struct and asks for what it points to that
     * apply reads first. Hints only: they change nothing. */
    size_t size;
    void (*prefetch)(const void *obj);
    /* Optional: writes what the model derives from the object (entries of
     * other databases, such as an index) through t, as apply would. The
     * store calls it for each present object of the type that is dirty
     * when the batch's cache is written out, before anything reaches LMDB:
     * so an object that many events of a transaction change has what it
     * derives worked out once. On failure (with err) the batch is redone
     * event by event, each written out on its own, and the event that
     * fails is parked. */
    guild_status (*settle)(prj_txn *t, const void *key, size_t klen, void *obj, guild_error *err);
} prj_objtype;

/* Reads a value as an object of `type`. *obj stays the batch's: the model
 * may change it in place, and must then prj_put_obj it before apply returns
 * (a change not put back is undefined). GUILD_NOT_FOUND when absent;
 * GUILD_CORRUPT when the bytes do not decode. */
guild_status prj_get_obj(prj_txn *t, const char *db, const void *key, size_t klen,
                         const prj_objtype *type, void **obj);

/* Writes an object of `type`: one from prj_get_obj, or a new one whose
 * ownership passes to the batch. */
guild_status prj_put_obj(prj_txn *t, const char *db, const void *key, size_t klen,
                         const prj_objtype *type, void *obj);

/* Visits keys starting with `prefix`, from `start` (NULL: from the prefix)
 * in key order; fn returns 0 to go on. Key and value are borrowed for the
 * call. Must not write while scanning. */
typedef int (*prj_kv_fn)(void *ctx, const void *key, size_t klen, const void *val, size_t vlen);
guild_status prj_scan(prj_txn *t, const char *db, const void *prefix, size_t plen,
                      const void *start, size_t slen, prj_kv_fn fn, void *ctx);

/* The same for queries. */
guild_status prj_rget(prj_read *r, const char *db, const void *key, size_t klen, const void **val,
                      size_t *vlen);
guild_status prj_rget_json(prj_read *r, const char *db, const void *key, size_t klen, json_t **val);
guild_status prj_rscan(prj_read *r, const char *db, const void *prefix, size_t plen,
                       const void *start, size_t slen, prj_kv_fn fn, void *ctx);

/* Folds one event into the model. GUILD_OK; or a failure (with err) that
 * parks the event as a dead letter — its writes are undone, later events
 * still apply. Unknown event types are simply ignored (GUILD_OK). */
typedef guild_status (*prj_apply_fn)(prj_txn *t, const prj_event *ev, guild_error *err);

/* A query: validated against `fields`, then run on a read transaction.
 * *data (new reference) is the reply's data.
 *
 * `run_stored` (optional) answers the same query with the stored msgpack
 * bytes that `run` would decode into *data unchanged (borrowed from the
 * read transaction), so that a JSON reply is written from them without a
 * tree (prj_store_query_json). */
typedef struct prj_query {
    const char *name;
    const char *summary;
    const dom_field *fields; /* {NULL}-terminated */
    const char *permission;  /* NULL: any valid token */
    bool is_public;
    guild_status (*run)(prj_read *r, const json_t *args, const dom_actor *actor, json_t **data,
                        guild_error *err);
    guild_status (*run_stored)(prj_read *r, const json_t *args, const dom_actor *actor,
                               const void **bytes, size_t *len, guild_error *err);
} prj_query;

typedef struct prj_model {
    const char *name;       /* "talent" */
    const char *domain;     /* the domain whose events it reads */
    const char *const *dbs; /* NULL-terminated database names, at most 12 */
    prj_apply_fn apply;
    const prj_query *queries; /* {NULL}-terminated */
    /* apply reads rec->data (msgpack) itself: the store only checks the
     * bytes by the codec's rules, and parks the event if they fail, instead
     * of decoding them into JSON. */
    bool reads_msgpack;
    /* The database, keyed by an event's aggregate id, whose entry apply
     * reads first (NULL: none). A replay touches rows at random across far
     * more than the CPU's cache holds, so the store fetches each event's
     * entry, and its object, into the cache a few events ahead. */
    const char *row_db;
} prj_model;

/* The models this build knows (projections/models.c). */
const prj_model *const *prj_models(void); /* NULL-terminated */
const prj_model *prj_model_find(const char *name);
const prj_query *prj_query_find(const prj_model *m, const char *name);

/* ---- the projector store -------------------------------------------------- */

typedef struct prj_store prj_store;

/* Opens (creating) the model's environment in `dir` (which must exist). */
guild_status prj_store_open(const char *dir, const prj_model *m, prj_store **out, guild_error *err);
void prj_store_close(prj_store *s);

typedef struct prj_batch_stats {
    uint64_t applied; /* events that took effect */
    uint64_t skipped; /* at or below the checkpoint: applied before */
    uint64_t parked;  /* went to the dead letters */
} prj_batch_stats;

/* Applies records (in log order) in one transaction with the checkpoint,
 * durably. Records at or below the checkpoint are skipped. */
guild_status prj_store_apply(prj_store *s, const es_record *const *recs, size_t n,
                             prj_batch_stats *stats);

/* Last applied log position (0 before any), the time (Unix ns) of that
 * event, and the digest of the state. */
uint64_t prj_store_position(prj_store *s);
int64_t prj_store_event_time(prj_store *s);
void prj_store_digest(prj_store *s, uint8_t out[PRJ_DIGEST_LEN]);

/* Position and digest of the same moment. */
void prj_store_snapshot(prj_store *s, uint64_t *position, uint8_t digest[PRJ_DIGEST_LEN]);

/* Waits until the model has applied `position`, at most timeout_ms; true
 * if it has. */
bool prj_store_wait(prj_store *s, uint64_t position, int64_t timeout_ms);

/* Runs a query (args validated here). The position the answer reflects is
 * written to *position. */
guild_status prj_store_query(prj_store *s, const char *query, const json_t *args,
                             const dom_actor *actor, json_t **data, uint64_t *position,
                             guild_error *err);

/* The same, appending the data's JSON text (as guild_codec_encode writes
 * the tree prj_store_query gives) to *out instead, for a query with
 * run_stored. A failure is the one prj_store_query gives. On GUILD_OK,
 * *done is false, and nothing is appended, when the query has no
 * run_stored or its bytes are not what guild_codec_decode takes: ask
 * prj_store_query then. */
guild_status prj_store_query_json(prj_store *s, const char *query, const json_t *args,
                                  const dom_actor *actor, guild_buf *out, uint64_t *position,
                                  bool *done, guild_error *err);

/* Called after each page of replayed events: the position reached (not
 * committed yet), the page's stats, its size and how long its apply took;
 * and after each commit with no events and the commit's time. Non-zero
 * stops the replay (what was applied is committed). */
typedef int (*prj_replay_fn)(void *ctx, uint64_t position, const prj_batch_stats *batch,
                             size_t events, double apply_seconds);

/* Applies the domain's log to s from s's position + 1 up to `stop_at`
 * (0 = the log's end), read in pages of 4096 events, up to `per_txn` events
 * to a transaction (0 = 1048576): the loop of a rebuild. Events that fail
 * are parked as prj_store_apply parks them. fn may be NULL. */
guild_status prj_store_replay(prj_store *s, es_store *log, uint64_t stop_at, size_t per_txn,
                              prj_replay_fn fn, void *ctx);

/* Removes a read model's environment directory (data.mdb, lock.mdb, the
 * directory); GUILD_OK also when it is not there. */
guild_status prj_store_remove(const char *dir);

/* Dead letters, in position order: each event's position, the reason it
 * was parked, its type and stream ("" when it did not decode). The event's
 * data is not kept. fn returns non-zero to stop. */
typedef int (*prj_dead_fn)(void *ctx, uint64_t position, const char *reason, const char *type,
                           const char *stream);
guild_status prj_store_dead_letters(prj_store *s, prj_dead_fn fn, void *ctx);

/* Applies parked events again (in position order), reading each from `log`
 * (the domain's event store, read-only is enough); those that apply leave
 * the table. retried and left say how it went: one `log` does not hold
 * counts as left. */
guild_status prj_store_retry(prj_store *s, es_store *log, uint64_t *retried, uint64_t *left);

#endif
