/*
 * prep.h — a large flush prepared on two threads (internal to projections/).
 *
 * Encoding a transaction's objects and hashing every entry for the digest
 * is most of a large flush's work outside LMDB, and needs no transaction:
 * two threads do it, in blocks taken in turn, before the writer's puts.
 */
#ifndef GUILD_PROJECTIONS_PREP_H
#define GUILD_PROJECTIONS_PREP_H

#include "projections/wcache.h"

#include <msgpack.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct prj_prep_item prj_prep_item;

typedef struct prj_prep {
    const char *const *names; /* the model's database names, by index */
    prj_wentry **v;
    size_t n;
    prj_prep_item *items;
    msgpack_sbuffer sb[2]; /* each thread's encoded objects */
} prj_prep;

/* Encodes the objects of v[0..n) (entries without bytes of their own) and
 * hashes every present entry (prj__entry_hash), on two threads. Only reads
 * the entries. Worth it from PRJ_WCACHE_LARGE entries. */
void prj__prep_run(prj_prep *p, const char *const *names, prj_wentry **v, size_t n);

/* Entry i as prepared: its bytes (left as they are when the entry has its
 * own) and hash. false when it was left to the caller (a JSON value). */
bool prj__prep_take(const prj_prep *p, size_t i, const uint8_t **val, size_t *vlen, uint64_t h[4]);

void prj__prep_free(prj_prep *p);

#endif
