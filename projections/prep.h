/*
 * prep.h — a large flush prepared on a second thread as it is written
 * (internal to projections/).
 *
 * Encoding a transaction's objects and hashing every entry for the digest
 * is most of a large flush's work outside LMDB, and needs no transaction.
 * A second thread prepares the entries block by block, in the order they
 * are written, while the writer puts those prepared; when the writer
 * reaches a block not prepared yet, it prepares the first block neither
 * thread has taken (that one, or a later one) and looks again. So both
 * cores work until the last put.
 */
#ifndef GUILD_PROJECTIONS_PREP_H
#define GUILD_PROJECTIONS_PREP_H

#include "projections/wcache.h"

#include <msgpack.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct prj_prep_item prj_prep_item;
typedef struct prj_prep_block prj_prep_block;

typedef struct prj_prep {
    const char *const *names; /* the model's database names, by index */
    prj_wentry **v;
    size_t n;
    prj_prep_item *items;
    prj_prep_block *blocks;
    size_t n_blocks;
    atomic_size_t next; /* the first block no thread has taken */
    atomic_bool stop;   /* the writer needs no more */
    pthread_t helper;
    bool helping;
} prj_prep;

/* Starts preparing v[0..n): encoding the objects (entries without bytes of
 * their own) and hashing every present entry (prj__entry_hash). Only reads
 * the entries, which must not change until prj__prep_free, except those
 * already taken. Worth it from PRJ_WCACHE_LARGE entries. */
void prj__prep_run(prj_prep *p, const char *const *names, prj_wentry **v, size_t n);

/* Entry i as prepared (preparing blocks here until it is): its
 * bytes (left as they are when the entry has its own) and hash. false when
 * it was left to the caller (a JSON value). Entries are taken in order. */
bool prj__prep_take(prj_prep *p, size_t i, const uint8_t **val, size_t *vlen, uint64_t h[4]);

/* Stops the second thread and frees what was prepared. */
void prj__prep_free(prj_prep *p);

#endif
