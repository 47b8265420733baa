/*
 * wcache.c — the write-back cache of a batch (see wcache.h).
 */
#include "projections/wcache.h"

#include "common/alloc.h"
#include "common/pair.h"
#include "common/prefetch.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* A multiply-xorshift hash over the key 8 bytes at a time, seeded by the
 * database index and the length. */
static uint64_t key_hash(int db, const void *key, size_t klen)
{
    const uint8_t *p = key;
    uint64_t h = 0x9e3779b97f4a7c15ull ^ ((uint64_t)(unsigned)db << 32) ^ klen;
    for (; klen >= 8; p += 8, klen -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    uint64_t w = 0;
    if (klen)
        memcpy(&w, p, klen);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 29);
}

#define CHUNK_BYTES ((size_t)1 << 20)

/* ---- slots ----
 * A slot holds an entry's address and, where the address leaves room, a
 * tag of its hash: bit 63 set, 15 bits of the hash in bits 48–62, the
 * address below. A user-space address has bit 63 clear (and, on the
 * 64-bit machines guild runs on, bits 48–62 too); one that would not fit is
 * stored bare. A probe that meets another key's tagged slot then moves on
 * without reading that entry, which is most of what a probe used to cost:
 * the entry is a miss in a table far larger than the CPU's caches. */

#define TAG_SHIFT 48
#define ADDR_MASK (((uint64_t)1 << TAG_SHIFT) - 1)

static uint64_t tag_of(uint64_t hash)
{
    return ((uint64_t)1 << 15) | (hash >> 49); /* the top bits: not the slot index's */
}

static uintptr_t slot_make(const prj_wentry *e)
{
    uint64_t a = (uintptr_t)e;
    if (UINTPTR_MAX < UINT64_MAX || (a & ~ADDR_MASK))
        return (uintptr_t)e;
    return (uintptr_t)(a | tag_of(e->hash) << TAG_SHIFT);
}

static prj_wentry *slot_entry(uintptr_t s)
{
    uint64_t v = s;
    return (prj_wentry *)(uintptr_t)(v >> 63 ? v & ADDR_MASK : v);
}

/* Whether the slot may hold the key of `hash` (an untagged one may). */
static bool slot_may_be(uintptr_t s, uint64_t hash)
{
    uint64_t v = s;
    return !(v >> 63) || v >> TAG_SHIFT == tag_of(hash);
}

struct wc_chunk {
    struct wc_chunk *next;
    size_t size;
    _Alignas(max_align_t) uint8_t bytes[];
};

void prj_wcache_init(prj_wcache *c)
{
    memset(c, 0, sizeof *c);
}

/* Zeroed room for one entry, from the chunks. */
static void *chunk_alloc(prj_wcache *c, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!c->chunk || c->chunk_used + n > c->chunk->size) {
        struct wc_chunk *next = c->chunk ? c->chunk->next : c->chunks;
        if (!next || next->size < n) {
            size_t size = n > CHUNK_BYTES ? n : CHUNK_BYTES;
            struct wc_chunk *fresh = guild_xmalloc(sizeof *fresh + size);
            fresh->size = size;
            /* Goes after the current chunk, ahead of those not reached yet. */
            fresh->next = next;
            if (c->chunk)
                c->chunk->next = fresh;
            else
                c->chunks = fresh;
            next = fresh;
        }
        c->chunk = next;
        c->chunk_used = 0;
    }
    void *p = c->chunk->bytes + c->chunk_used;
    c->chunk_used += n;
    memset(p, 0, n);
    return p;
}

static void drop_obj(prj_wentry *e)
{
    if (e->obj)
        e->otype->free(e->obj);
    e->obj = NULL;
    e->otype = NULL;
}

/* Frees what the entry holds (the entry goes with its chunk). */
static void entry_free(prj_wentry *e)
{
    free(e->val);
    json_decref(e->json);
    drop_obj(e);
}

void prj_wcache_forget_bytes(prj_wentry *e)
{
    free(e->val);
    e->val = NULL;
    e->vlen = 0;
    json_decref(e->json);
    e->json = NULL;
}

void prj_wcache_clear(prj_wcache *c)
{
    if (c->count)
        for (size_t i = 0; i < c->cap; i++)
            if (c->slots[i]) {
                entry_free(slot_entry(c->slots[i]));
                c->slots[i] = 0;
            }
    c->count = 0;
    c->n_dirty = 0;
    c->clears++;
    c->chunk = NULL; /* the chunks are used again from the first */
    c->chunk_used = 0;
}

static void reclaim_wait(prj_wcache *c)
{
    if (c->reclaiming)
        pthread_join(c->reclaimer, NULL);
    c->reclaiming = false;
}

void prj_wcache_release(prj_wcache *c)
{
    reclaim_wait(c);
    if (c->spare) {
        prj_wcache_release(c->spare);
        free(c->spare);
    }
    prj_wcache_clear(c);
    free(c->slots);
    free(c->dirty);
    while (c->chunks) {
        struct wc_chunk *next = c->chunks->next;
        free(c->chunks);
        c->chunks = next;
    }
    memset(c, 0, sizeof *c);
}

static void *reclaim_main(void *arg)
{
    prj_wcache_clear(arg); /* the entries' values; the memory stays */
    return NULL;
}

void prj_wcache_clear_behind(prj_wcache *c)
{
    reclaim_wait(c);
    if (c->count < PRJ_WCACHE_LARGE) {
        prj_wcache_clear(c);
        return;
    }
    /* The old cache (c's entries) goes to the spare's place; the spare,
     * empty, becomes c. */
    prj_wcache *old = c->spare ? c->spare : guild_xcalloc(1, sizeof *old);
    prj_wcache fresh = *old;
    *old = *c;
    old->spare = NULL;
    old->reclaiming = false;
    *c = fresh;
    c->spare = old;
    c->clears = old->clears + 1;
    if (pthread_create(&c->reclaimer, NULL, reclaim_main, old) != 0) {
        reclaim_main(old);
        return;
    }
    c->reclaiming = true;
}

static void grow(prj_wcache *c)
{
    size_t cap = c->cap ? c->cap * 2 : 1024;
    uintptr_t *slots = guild_xcalloc(cap, sizeof *slots);
    for (size_t i = 0; i < c->cap; i++) {
        if (!c->slots[i])
            continue;
        size_t j = slot_entry(c->slots[i])->hash & (cap - 1);
        while (slots[j])
            j = (j + 1) & (cap - 1);
        slots[j] = c->slots[i];
    }
    free(c->slots);
    c->slots = slots;
    c->cap = cap;
}

prj_wentry *prj_wcache_find(prj_wcache *c, int db, const void *key, size_t klen, bool create)
{
    bool created;
    return create ? prj_wcache_get(c, db, key, klen, &created)
                  : prj_wcache_lookup(c, db, key, klen);
}

uint64_t prj_wcache_hash(int db, const void *key, size_t klen)
{
    return key_hash(db, key, klen);
}

void prj_wcache_prefetch_slot(const prj_wcache *c, uint64_t hash)
{
    if (c->cap)
        __builtin_prefetch(&c->slots[hash & (c->cap - 1)]);
}

void prj_wcache_prefetch_entry(const prj_wcache *c, uint64_t hash)
{
    if (!c->cap)
        return;
    /* The entry of the first slot of the probe that may be the key's (most
     * often the first one looked at), with a key of typical length. */
    for (size_t j = hash & (c->cap - 1); c->slots[j]; j = (j + 1) & (c->cap - 1))
        if (slot_may_be(c->slots[j], hash)) {
            guild_prefetch(slot_entry(c->slots[j]), sizeof(prj_wentry) + 40);
            return;
        }
}

prj_wentry *prj_wcache_lookup(prj_wcache *c, int db, const void *key, size_t klen)
{
    return prj_wcache_lookup_hashed(c, key_hash(db, key, klen), db, key, klen);
}

prj_wentry *prj_wcache_lookup_hashed(const prj_wcache *c, uint64_t h, int db, const void *key,
                                     size_t klen)
{
    if (c->cap)
        for (size_t j = h & (c->cap - 1); c->slots[j]; j = (j + 1) & (c->cap - 1)) {
            if (!slot_may_be(c->slots[j], h))
                continue;
            prj_wentry *e = slot_entry(c->slots[j]);
            if (e->hash == h && e->db == db && e->klen == klen && memcmp(e->key, key, klen) == 0)
                return e;
        }
    return NULL;
}

prj_wentry *prj_wcache_get(prj_wcache *c, int db, const void *key, size_t klen, bool *created)
{
    *created = false;
    uint64_t h = key_hash(db, key, klen);
    prj_wentry *found = prj_wcache_lookup_hashed(c, h, db, key, klen);
    if (found)
        return found;
    *created = true;
    if (2 * (c->count + 1) > c->cap)
        grow(c);
    prj_wentry *e = chunk_alloc(c, sizeof *e + klen);
    e->hash = h;
    e->db = db;
    e->klen = klen;
    memcpy(e->key, key, klen);
    for (size_t i = 0; i < 8; i++)
        e->prefix = (e->prefix << 8) | (i < klen ? e->key[i] : 0);
    size_t j = h & (c->cap - 1);
    while (c->slots[j])
        j = (j + 1) & (c->cap - 1);
    c->slots[j] = slot_make(e);
    c->count++;
    return e;
}

static void mark_dirty(prj_wcache *c, prj_wentry *e)
{
    if (e->dirty)
        return;
    if (c->n_dirty == c->dirty_cap) {
        c->dirty_cap = c->dirty_cap ? c->dirty_cap * 2 : 1024;
        c->dirty = guild_xrealloc(c->dirty, c->dirty_cap * sizeof *c->dirty);
    }
    c->dirty[c->n_dirty++] = e;
    e->dirty = true;
}

/* Lets go of the entry's value in every form. */
static void drop_value(prj_wentry *e)
{
    prj_wcache_forget_bytes(e);
    drop_obj(e);
}

void prj_wcache_set_bytes(prj_wcache *c, prj_wentry *e, const void *val, size_t vlen)
{
    json_decref(e->json);
    e->json = NULL;
    drop_obj(e);
    if (!e->val || e->vlen != vlen) {
        free(e->val);
        e->val = guild_xmalloc(vlen ? vlen : 1);
    }
    if (vlen)
        memcpy(e->val, val, vlen);
    e->vlen = vlen;
    e->present = true;
    mark_dirty(c, e);
}

void prj_wcache_set_json(prj_wcache *c, prj_wentry *e, json_t *json)
{
    json_incref(json); /* first: json may be the entry's own */
    drop_value(e);
    e->json = json;
    e->present = true;
    mark_dirty(c, e);
}

void prj_wcache_set_obj(prj_wcache *c, prj_wentry *e, const prj_objtype *type, void *obj,
                        bool dirty)
{
    if (e->obj != obj)
        drop_obj(e);
    e->obj = obj;
    e->otype = type;
    prj_wcache_forget_bytes(e);
    e->present = true;
    if (dirty)
        mark_dirty(c, e);
}

void prj_wcache_set_absent(prj_wcache *c, prj_wentry *e)
{
    drop_value(e);
    e->present = false;
    mark_dirty(c, e);
}

static int dirty_cmp(const void *a, const void *b)
{
    const prj_wentry *x = *(prj_wentry *const *)a, *y = *(prj_wentry *const *)b;
    if (x->db != y->db)
        return x->db < y->db ? -1 : 1;
    if (x->prefix != y->prefix)
        return x->prefix < y->prefix ? -1 : 1;
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = memcmp(x->key, y->key, n);
    if (c)
        return c;
    return (x->klen > y->klen) - (x->klen < y->klen);
}

typedef struct sort_half {
    prj_wentry **v;
    size_t n;
} sort_half;

static void *sort_main(void *arg)
{
    sort_half *h = arg;
    qsort(h->v, h->n, sizeof *h->v, dirty_cmp);
    return NULL;
}

void prj_wcache_sort_dirty(prj_wcache *c)
{
    size_t n = c->n_dirty;
    if (n < PRJ_WCACHE_LARGE) {
        if (n > 1)
            qsort(c->dirty, n, sizeof *c->dirty, dirty_cmp);
        return;
    }
    sort_half lo = {c->dirty, n / 2}, hi = {c->dirty + n / 2, n - n / 2};
    guild_run_pair(sort_main, &lo, &hi);
    prj_wentry **out = guild_xmalloc(c->dirty_cap * sizeof *out);
    prj_wentry **a = lo.v, **a_end = lo.v + lo.n, **b = hi.v, **b_end = hi.v + hi.n;
    size_t k = 0;
    while (a < a_end && b < b_end)
        out[k++] = dirty_cmp(b, a) < 0 ? *b++ : *a++;
    while (a < a_end)
        out[k++] = *a++;
    while (b < b_end)
        out[k++] = *b++;
    free(c->dirty);
    c->dirty = out;
}
