/*
 * wcache.h — the write-back cache of a batch (internal to projections/).
 *
 * While a batch is applied, a model's reads and writes go to this table
 * instead of LMDB: a key read twice is read once, a key written many times
 * (a count, a row several events of the batch change) is written once, and
 * the writes reach LMDB together, in key order, when the batch ends (or the
 * table grows past its budget). The digest is kept at that moment from the
 * value LMDB held and the one written, so it is the same as if every write
 * had gone through.
 *
 * An entry holds the value as bytes, as JSON or as an object of the
 * model's own type (prj_objtype), or says the key is absent. A JSON value or
 * an object is encoded when it is written out or read as bytes; once one is
 * handed to the model it is the value (the model may change it in place
 * and put it back).
 */
#ifndef GUILD_PROJECTIONS_WCACHE_H
#define GUILD_PROJECTIONS_WCACHE_H

#include "projections/prj.h"

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct prj_wentry {
    uint64_t hash;
    uint64_t prefix; /* the key's first 8 bytes, big-endian, zero-padded: sorts fast */
    size_t klen;     /* beside the prefix: a sort reads both */
    int db;          /* index of the model's database */
    bool present;    /* false: the key is absent (deleted, or never there) */
    bool dirty;      /* changed since LMDB was last written */
    uint8_t *val;    /* the value's bytes (owned), or NULL while only json is */
    size_t vlen;
    json_t *json; /* the value decoded (a reference held), or NULL */
    /* What LMDB holds for the key, when known (from the last write): its
     * part of the digest, so writing the entry needs no read first. */
    bool stored_known, stored_present;
    uint64_t stored_hash[4];
    void *obj; /* the value as the model's own type, or NULL */
    const prj_objtype *otype;
    uint8_t key[];
} prj_wentry;

typedef struct prj_wcache {
    /* Open addressing, power-of-two capacity: each slot an entry's address
     * with bits of its hash (wcache.c), 0 when empty. */
    uintptr_t *slots;
    size_t cap, count;
    prj_wentry **dirty; /* in the order they became dirty */
    size_t n_dirty, dirty_cap;
    /* The entries themselves live in chunks reused from clear to clear:
     * a batch makes and drops hundreds of thousands of them. */
    struct wc_chunk *chunks, *chunk;
    size_t chunk_used;
    /* The cache prj_wcache_clear_behind emptied last, being emptied on
     * the reclaimer thread while `reclaiming`: its table and chunks are the
     * next one's, which then needs neither to grow its table step by step
     * nor to fault in fresh pages. */
    struct prj_wcache *spare;
    /* Times the cache was emptied: an entry found earlier is still one of
     * its own while this count has not moved. */
    uint64_t clears;
    pthread_t reclaimer;
    bool reclaiming;
} prj_wcache;

/* Entries from which a cache's bulk work (encoding and hashing its dirty
 * entries, freeing it) is shared with a second thread. */
#define PRJ_WCACHE_LARGE 65536

void prj_wcache_init(prj_wcache *c);

/* Drops every entry. */
void prj_wcache_clear(prj_wcache *c);
/* Drops every entry at once: when the cache was large, it starts afresh
 * (with the memory of the one this call emptied before, if any) while a
 * thread of its own frees what the old entries held, and keeps the old
 * table and chunks for the next call. Waits for the thread of the call
 * before, so one old cache is emptied at a time. */
void prj_wcache_clear_behind(prj_wcache *c);
/* Frees everything, waiting for an old cache being freed. */
void prj_wcache_release(prj_wcache *c);

/* Makes the table large enough for `entries` at once, so that filling it
 * moves no entry (each move reads the entry: a cache miss). */
void prj_wcache_reserve(prj_wcache *c, size_t entries);

/* The entry of (db, key), or NULL; with `create`, a new absent one. */
prj_wentry *prj_wcache_find(prj_wcache *c, int db, const void *key, size_t klen, bool create);

/* The entry of (db, key), or NULL. */
prj_wentry *prj_wcache_lookup(prj_wcache *c, int db, const void *key, size_t klen);

/* Fetching ahead. A batch touches its entries at random across a table
 * far larger than the CPU's cache, so each find waits on memory twice (the
 * slot, then the entry). Knowing the key some events ahead, the caller can
 * ask for both early, in two steps a few events apart: the slot first, then
 * (once the slot has arrived) the entry it points to. Hints only: the
 * cache may change in between, and nothing is read that is not there. */
uint64_t prj_wcache_hash(int db, const void *key, size_t klen);
void prj_wcache_prefetch_slot(const prj_wcache *c, uint64_t hash);
void prj_wcache_prefetch_entry(const prj_wcache *c, uint64_t hash);
/* The entry of (db, key) with its hash known, or NULL. */
prj_wentry *prj_wcache_lookup_hashed(const prj_wcache *c, uint64_t hash, int db, const void *key,
                                     size_t klen);

/* The entry of (db, key), made (absent) if there was none: *created says. */
prj_wentry *prj_wcache_get(prj_wcache *c, int db, const void *key, size_t klen, bool *created);

/* Sets the entry's value (bytes copied, or a reference to json taken) and
 * marks it dirty. */
void prj_wcache_set_bytes(prj_wcache *c, prj_wentry *e, const void *val, size_t vlen);
void prj_wcache_set_json(prj_wcache *c, prj_wentry *e, json_t *json);
/* With !dirty the object is the value the entry already holds, in another
 * form. */
void prj_wcache_set_obj(prj_wcache *c, prj_wentry *e, const prj_objtype *type, void *obj,
                        bool dirty);
void prj_wcache_set_absent(prj_wcache *c, prj_wentry *e);

/* Drops the entry's bytes and JSON (the object is the value now). */
void prj_wcache_forget_bytes(prj_wentry *e);

/* Sorts the dirty entries by (db, key), the order to write them in (a
 * radix sort: wcache.c). */
void prj_wcache_sort_dirty(prj_wcache *c);

#endif
