/*
 * cmdtab.h — where the log holds the results of the commands that `commands`
 * does not index yet (internal to the store).
 *
 * A batch writes a committed command's result into the log itself, right
 * after the command's last event, under the key position ‖ command id
 * (commands.c). One commit then changes one B-tree instead of two. Slices
 * put the results' positions into the `commands` database in bulk, as the
 * index checkpoint puts the stream index into `streams` and `heads`.
 *
 * Until then this table says at which positions to look for a command id:
 * a map from a keyed hash of the id (SipHash, random key per table, so ids
 * chosen to collide cost nothing) to the position in the key. A hit is only
 * a candidate; the log read with the exact key decides.
 *
 * Entries added by the batch being written are pending until the batch
 * commits or is undone, like the tail's.
 */
#ifndef GUILD_EVENTSTORE_CMDTAB_H
#define GUILD_EVENTSTORE_CMDTAB_H

#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct es_cmd_slot {
    uint64_t hash; /* 0: empty */
    uint64_t position;
} es_cmd_slot;

typedef struct es_cmdtab {
    es_cmd_slot *slots; /* linear probing, power-of-two capacity */
    size_t cap, count;
    es_cmd_slot *pending; /* added by the batch being written */
    size_t n_pending, pending_cap;
    uint8_t key[crypto_shorthash_KEYBYTES];
} es_cmdtab;

void es_cmdtab_init(es_cmdtab *t);
void es_cmdtab_release(es_cmdtab *t);

/* The table's hash of a command id (never 0). */
uint64_t es_cmdtab_hash(const es_cmdtab *t, const char *id, size_t n);

/* Adds (hash, position), pending until es_cmdtab_commit. */
void es_cmdtab_add(es_cmdtab *t, uint64_t hash, uint64_t position);

/* Positions held under `hash`: writes up to `max` of them to out and
 * returns how many there are. */
size_t es_cmdtab_find(const es_cmdtab *t, uint64_t hash, uint64_t *out, size_t max);

/* Removes one (hash, position); false if absent. */
bool es_cmdtab_remove(es_cmdtab *t, uint64_t hash, uint64_t position);

/* Removes every entry. */
void es_cmdtab_clear(es_cmdtab *t);

/* Keeps the pending entries, or removes them. */
void es_cmdtab_commit(es_cmdtab *t);
void es_cmdtab_undo(es_cmdtab *t);

#endif
