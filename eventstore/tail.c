/* tail.c — the in-memory stream index after the checkpoint: a hash map from
 * stream id to its newer positions. See tail.h. */
#include "eventstore/tail.h"

#include "common/alloc.h"

#include <stdlib.h>
#include <string.h>

static uint64_t hash_bytes(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ? h : 1;
}

void es_tail_init(es_tail *t)
{
    memset(t, 0, sizeof *t);
}

static void entry_free(es_tail_stream *e)
{
    free(e->stream);
    free(e->positions);
    free(e);
}

void es_tail_clear(es_tail *t)
{
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i])
            entry_free(t->slots[i]);
    free(t->slots);
    t->slots = NULL;
    t->cap = t->count = 0;
    t->events = 0;
    t->last_position = 0;
    t->n_touched = 0;
}

void es_tail_release(es_tail *t)
{
    es_tail_clear(t);
    free(t->touched);
    memset(t, 0, sizeof *t);
}

static size_t slot_of(const es_tail *t, uint64_t h, const char *stream, size_t len)
{
    size_t mask = t->cap - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask) {
        es_tail_stream *e = t->slots[i];
        if (!e || (e->hkey == h && e->len == len && memcmp(e->stream, stream, len) == 0))
            return i;
    }
}

es_tail_stream *es_tail_find(const es_tail *t, const char *stream, size_t len)
{
    if (!t->cap)
        return NULL;
    return t->slots[slot_of(t, hash_bytes(stream, len), stream, len)];
}

static void grow(es_tail *t)
{
    size_t old_cap = t->cap;
    es_tail_stream **old = t->slots;
    t->cap = old_cap ? old_cap * 2 : 64;
    t->slots = guild_xcalloc(t->cap, sizeof *t->slots);
    for (size_t i = 0; i < old_cap; i++)
        if (old[i])
            t->slots[slot_of(t, old[i]->hkey, old[i]->stream, old[i]->len)] = old[i];
    free(old);
}

es_tail_stream *es_tail_upsert(es_tail *t, const char *stream, size_t len, uint64_t base)
{
    if ((t->count + 1) * 4 > t->cap * 3)
        grow(t);
    uint64_t h = hash_bytes(stream, len);
    size_t i = slot_of(t, h, stream, len);
    if (t->slots[i])
        return t->slots[i];
    es_tail_stream *e = guild_xcalloc(1, sizeof *e);
    e->stream = guild_xstrndup(stream, len);
    e->len = len;
    e->hkey = h;
    e->base = e->version = e->committed = base;
    t->slots[i] = e;
    t->count++;
    return e;
}

void es_tail_push(es_tail *t, es_tail_stream *e, uint64_t position, const uint8_t hash[ES_HASH_LEN])
{
    size_t at = (size_t)(e->version - e->base);
    if (at == e->cap) {
        e->cap = e->cap ? e->cap * 2 : 4;
        e->positions = guild_xrealloc(e->positions, e->cap * sizeof *e->positions);
    }
    e->positions[at] = position;
    e->version++;
    memcpy(e->hash, hash, ES_HASH_LEN);
    if (!e->touched) {
        e->touched = true;
        if (t->n_touched == t->touched_cap) {
            t->touched_cap = t->touched_cap ? t->touched_cap * 2 : 64;
            t->touched = guild_xrealloc(t->touched, t->touched_cap * sizeof *t->touched);
        }
        t->touched[t->n_touched++] = e;
    }
}

void es_tail_commit(es_tail *t, uint64_t last_position)
{
    for (size_t i = 0; i < t->n_touched; i++) {
        es_tail_stream *e = t->touched[i];
        t->events += e->version - e->committed;
        e->committed = e->version;
        memcpy(e->committed_hash, e->hash, ES_HASH_LEN);
        e->touched = false;
    }
    t->n_touched = 0;
    if (last_position > t->last_position)
        t->last_position = last_position;
}

void es_tail_undo(es_tail *t)
{
    for (size_t i = 0; i < t->n_touched; i++) {
        es_tail_stream *e = t->touched[i];
        e->version = e->committed;
        memcpy(e->hash, e->committed_hash, ES_HASH_LEN);
        e->touched = false;
    }
    t->n_touched = 0;
}

void es_tail_each(const es_tail *t, void (*fn)(void *ctx, const es_tail_stream *e), void *ctx)
{
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i])
            fn(ctx, t->slots[i]);
}
