/* cmdtab.c — command id hash → candidate log positions. See cmdtab.h. */
#include "eventstore/cmdtab.h"

#include "common/alloc.h"

#include <stdlib.h>
#include <string.h>

void es_cmdtab_init(es_cmdtab *t)
{
    memset(t, 0, sizeof *t);
    crypto_shorthash_keygen(t->key);
}

void es_cmdtab_release(es_cmdtab *t)
{
    free(t->slots);
    free(t->pending);
    sodium_memzero(t, sizeof *t);
}

uint64_t es_cmdtab_hash(const es_cmdtab *t, const char *id, size_t n)
{
    uint8_t out[crypto_shorthash_BYTES];
    crypto_shorthash(out, (const unsigned char *)id, n, t->key);
    uint64_t h;
    memcpy(&h, out, sizeof h);
    return h ? h : 1;
}

static void place(es_cmd_slot *slots, size_t cap, es_cmd_slot e)
{
    size_t mask = cap - 1;
    size_t i = e.hash & mask;
    while (slots[i].hash)
        i = (i + 1) & mask;
    slots[i] = e;
}

static void grow(es_cmdtab *t)
{
    size_t cap = t->cap ? t->cap * 2 : 256;
    es_cmd_slot *slots = guild_xcalloc(cap, sizeof *slots);
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i].hash)
            place(slots, cap, t->slots[i]);
    free(t->slots);
    t->slots = slots;
    t->cap = cap;
}

void es_cmdtab_add(es_cmdtab *t, uint64_t hash, uint64_t position)
{
    if (2 * (t->count + 1) > t->cap)
        grow(t);
    es_cmd_slot e = {hash, position};
    place(t->slots, t->cap, e);
    t->count++;
    if (t->n_pending == t->pending_cap) {
        t->pending_cap = t->pending_cap ? t->pending_cap * 2 : 64;
        t->pending = guild_xrealloc(t->pending, t->pending_cap * sizeof *t->pending);
    }
    t->pending[t->n_pending++] = e;
}

size_t es_cmdtab_find(const es_cmdtab *t, uint64_t hash, uint64_t *out, size_t max)
{
    if (!t->cap)
        return 0;
    size_t mask = t->cap - 1, n = 0;
    for (size_t i = hash & mask; t->slots[i].hash; i = (i + 1) & mask)
        if (t->slots[i].hash == hash) {
            if (n < max)
                out[n] = t->slots[i].position;
            n++;
        }
    return n;
}

bool es_cmdtab_remove(es_cmdtab *t, uint64_t hash, uint64_t position)
{
    if (!t->cap)
        return false;
    size_t mask = t->cap - 1;
    size_t i = hash & mask;
    for (; t->slots[i].hash; i = (i + 1) & mask)
        if (t->slots[i].hash == hash && t->slots[i].position == position)
            break;
    if (!t->slots[i].hash)
        return false;
    /* Backward shift: pull later entries of the run into the hole unless
     * their home slot lies cyclically after it. */
    for (size_t j = (i + 1) & mask; t->slots[j].hash; j = (j + 1) & mask) {
        size_t home = t->slots[j].hash & mask;
        bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!stays) {
            t->slots[i] = t->slots[j];
            i = j;
        }
    }
    t->slots[i].hash = 0;
    t->slots[i].position = 0;
    t->count--;
    return true;
}

void es_cmdtab_clear(es_cmdtab *t)
{
    if (t->cap)
        memset(t->slots, 0, t->cap * sizeof *t->slots);
    t->count = 0;
    t->n_pending = 0;
}

void es_cmdtab_commit(es_cmdtab *t)
{
    t->n_pending = 0;
    if (t->pending_cap > 4096) { /* a replay's, far more than a batch's */
        free(t->pending);
        t->pending = NULL;
        t->pending_cap = 0;
    }
}

void es_cmdtab_undo(es_cmdtab *t)
{
    while (t->n_pending > 0) {
        es_cmd_slot e = t->pending[--t->n_pending];
        es_cmdtab_remove(t, e.hash, e.position);
    }
}
