/*
 * tail.h — the stream index of the events after the last index checkpoint
 * (internal to the store).
 *
 * The log is the store's write-ahead log: a batch commits its log records,
 * its commands' results and nothing else, so a commit writes a few pages
 * instead of two random index pages per event. The `streams` and `heads`
 * databases are brought up to date in bulk by an index checkpoint (every
 * `index_every` events, when the writer is idle, and on close), which also
 * stores the checkpoint's position and hash under meta "es.checkpoint".
 * Between checkpoints the index of the newer events lives here, in memory;
 * on open it is rebuilt by reading the log after the checkpoint, and a
 * read-only opener builds the same from the log.
 *
 * Each stream entry holds two views: `version`/`hash` include what the
 * batch being written has added (the writer's view), `committed`/
 * `committed_hash` only what is durable (what readers may see).
 */
#ifndef GUILD_EVENTSTORE_TAIL_H
#define GUILD_EVENTSTORE_TAIL_H

#include "eventstore/es.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct es_tail_stream {
    char *stream;
    size_t len;
    uint64_t hkey;
    uint64_t base;      /* version in the heads database (at the checkpoint) */
    uint64_t version;   /* writer's view */
    uint64_t committed; /* durable */
    uint8_t hash[ES_HASH_LEN];
    uint8_t committed_hash[ES_HASH_LEN];
    uint64_t *positions; /* positions of versions base+1 .. version */
    size_t cap;
    bool touched; /* changed by the batch being written */
} es_tail_stream;

typedef struct es_tail {
    es_tail_stream **slots; /* open addressing, power-of-two capacity */
    size_t cap, count;
    uint64_t events;        /* committed events held */
    uint64_t last_position; /* last committed position held, 0 if none */
    es_tail_stream **touched;
    size_t n_touched, touched_cap;
} es_tail;

void es_tail_init(es_tail *t);
void es_tail_release(es_tail *t);

/* Drops every entry (after a checkpoint made them redundant). */
void es_tail_clear(es_tail *t);

es_tail_stream *es_tail_find(const es_tail *t, const char *stream, size_t len);

/* Finds or adds the entry of `stream`; a new one starts at `base`. */
es_tail_stream *es_tail_upsert(es_tail *t, const char *stream, size_t len, uint64_t base);

/* Adds the next version of e's stream at `position` (writer's view). */
void es_tail_push(es_tail *t, es_tail_stream *e, uint64_t position,
                  const uint8_t hash[ES_HASH_LEN]);

/* Makes the batch's additions durable in the readers' view, or drops them. */
void es_tail_commit(es_tail *t, uint64_t last_position);
void es_tail_undo(es_tail *t);

/* Calls fn for every entry (any order). */
void es_tail_each(const es_tail *t, void (*fn)(void *ctx, const es_tail_stream *e), void *ctx);

#endif
