/*
 * state.h — aggregate state for the command runtime (internal to bus/):
 * loading an aggregate from its events, and the writer's cache of hot
 * aggregates.
 *
 * The cache belongs to the store's writer thread. An entry holds a state
 * and the stream version it reflects; decide evolves it in place with the
 * events it emits, so several commands on one hot aggregate in one batch
 * need no reload. The version check against the stream's head (inside the
 * writer's transaction) catches every other change, and a batch that fails
 * to commit clears the cache (the store's batch hook).
 */
#ifndef GUILD_BUS_STATE_H
#define GUILD_BUS_STATE_H

#include "domain/dom.h"
#include "eventstore/es.h"

typedef struct agg_entry {
    char *stream;
    const dom_aggregate *agg;
    void *state;
    uint64_t version;
} agg_entry;

typedef struct agg_cache agg_cache;

agg_cache *agg_cache_create(size_t max_entries);
void agg_cache_destroy(agg_cache *c);
void agg_cache_clear(agg_cache *c);

/* The entry of `stream` brought to the head version seen by w (loading or
 * catching up through the writer's transaction). Borrowed until the next
 * call. */
guild_status agg_cache_at(agg_cache *c, es_wctx *w, const char *stream, const dom_aggregate *agg,
                          agg_entry **out);

/* Drops the entry of a stream (after an evolve failed). */
void agg_cache_forget(agg_cache *c, const char *stream);

/* Applies one event given as JSON to a state. */
guild_status agg_evolve(const dom_aggregate *agg, void *state, const char *type, const json_t *data,
                        uint64_t version, int64_t time);

/* Whether snapshots are used (read when loading, written by the runtime):
 * yes unless the environment sets GUILD_SNAPSHOTS=0 (read once). */
bool agg_snapshots_on(void);

/* Loads a fresh state from the store (outside the writer): *state owned by
 * the caller (agg->destroy), *version 0 if the stream does not exist. */
guild_status agg_load(es_store *st, const dom_aggregate *agg, const char *stream, void **state,
                      uint64_t *version);

/* The state of `stream` after its first `upto` events, folded from the
 * events alone (no snapshot): *state owned by the caller (agg->destroy),
 * *version the version reached (less than upto when the stream is
 * shorter). */
guild_status agg_fold(es_store *st, const dom_aggregate *agg, const char *stream, uint64_t upto,
                      void **state, uint64_t *version);

/* The same inside the writer's transaction. */
guild_status agg_load_wctx(es_wctx *w, const dom_aggregate *agg, const char *stream, void **state,
                           uint64_t *version);

#endif
