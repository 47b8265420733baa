/*
 * wcache.c — the write-back cache of a batch (see wcache.h).
 */
#include "projections/wcache.h"

#include "common/alloc.h"
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

/* The key's bytes at..at+7, big-endian, zero past its end. */
static uint64_t key_word(const prj_wentry *e, size_t at)
{
    uint64_t w = 0;
    if (at + 8 <= e->klen) {
        const uint8_t *p = e->key + at;
        for (int i = 0; i < 8; i++) /* one load and a byte swap, compiled */
            w = (w << 8) | p[i];
        return w;
    }
    for (size_t i = 0; i < 8; i++)
        w = (w << 8) | (at + i < e->klen ? e->key[at + i] : 0);
    return w;
}

/* Orders two keys whose first `at` bytes are equal (zero-padded). */
static int key_cmp_from(const prj_wentry *x, const prj_wentry *y, size_t at)
{
    size_t n = x->klen < y->klen ? x->klen : y->klen;
    int c = n > at ? memcmp(x->key + at, y->key + at, n - at) : 0;
    if (c)
        return c;
    return (x->klen > y->klen) - (x->klen < y->klen);
}

/* Doubles the table (to at least `want` slots), moving every entry. */
static void grow_to(prj_wcache *c, size_t want)
{
    size_t cap = c->cap ? c->cap * 2 : 1024;
    while (cap < want)
        cap *= 2;
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

static void grow(prj_wcache *c)
{
    grow_to(c, 0);
}

void prj_wcache_reserve(prj_wcache *c, size_t entries)
{
    if (2 * entries > c->cap)
        grow_to(c, 2 * entries);
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
    e->prefix = key_word(e, 0);
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
    return key_cmp_from(x, y, 8);
}

/* ---- sorting the dirty entries ----
 * A radix sort: by database (a counting sort), then by the key 8 bytes at a
 * time, zero-padded and read big-endian: each word a least-significant-
 * digit pass per byte that varies, then the runs that share the word
 * again from the next 8 bytes. A key the run's words have covered ends
 * where it is: among equal words the shorter key is first, as memcmp
 * orders a key before its extensions. dirty_cmp orders small runs. */

typedef struct sort_rec {
    uint64_t k; /* the key's 8 bytes from the run's depth */
    prj_wentry *e;
} sort_rec;

#define SORT_SMALL 32 /* a run this short is sorted by insertion */

static void insertion_sort(sort_rec *a, size_t n, size_t at)
{
    for (size_t i = 1; i < n; i++) {
        sort_rec r = a[i];
        size_t j = i;
        while (j > 0 && key_cmp_from(r.e, a[j - 1].e, at) < 0) {
            a[j] = a[j - 1];
            j--;
        }
        a[j] = r;
    }
}

/* Sorts a by k, stably, using tmp (n records) as the other buffer. */
static void radix_sort_words(sort_rec *a, sort_rec *tmp, size_t n)
{
    size_t count[8][256] = {{0}};
    for (size_t i = 0; i < n; i++)
        for (int d = 0; d < 8; d++)
            count[d][(a[i].k >> (8 * d)) & 0xff]++;
    sort_rec *from = a, *to = tmp;
    for (int d = 0; d < 8; d++) {
        if (count[d][(a[0].k >> (8 * d)) & 0xff] == n)
            continue; /* the byte is the same in every key */
        size_t at = 0;
        for (int b = 0; b < 256; b++) {
            size_t c = count[d][b];
            count[d][b] = at;
            at += c;
        }
        for (size_t i = 0; i < n; i++)
            to[count[d][(from[i].k >> (8 * d)) & 0xff]++] = from[i];
        sort_rec *t = from;
        from = to;
        to = t;
    }
    if (from != a)
        memcpy(a, from, n * sizeof *a);
}

/* Sorts a run of keys whose first `at` bytes are equal (at 0, each k is
 * the key's prefix already). */
static void sort_run(sort_rec *a, sort_rec *tmp, size_t n, size_t at)
{
    if (n < SORT_SMALL) {
        insertion_sort(a, n, at);
        return;
    }
    size_t longest = 0;
    for (size_t i = 0; i < n; i++) {
        if (at)
            a[i].k = key_word(a[i].e, at);
        if (a[i].e->klen > longest)
            longest = a[i].e->klen;
    }
    radix_sort_words(a, tmp, n);
    for (size_t i = 0, j; i < n; i = j) {
        for (j = i + 1; j < n && a[j].k == a[i].k;)
            j++;
        if (j - i < 2)
            continue;
        if (longest > at + 8)
            sort_run(a + i, tmp, j - i, at + 8);
        else
            insertion_sort(a + i, j - i, at + 8); /* equal but for their lengths */
    }
}

void prj_wcache_sort_dirty(prj_wcache *c)
{
    size_t n = c->n_dirty;
    if (n < SORT_SMALL) {
        if (n > 1)
            qsort(c->dirty, n, sizeof *c->dirty, dirty_cmp);
        return;
    }
    int dbs = 0; /* a database's index is small: its place in the model's list */
    for (size_t i = 0; i < n; i++)
        if (c->dirty[i]->db >= dbs)
            dbs = c->dirty[i]->db + 1;
    size_t *start = guild_xcalloc((size_t)dbs + 1, sizeof *start);
    size_t *fill = guild_xcalloc((size_t)dbs, sizeof *fill);
    for (size_t i = 0; i < n; i++)
        start[c->dirty[i]->db + 1]++;
    for (int d = 0; d < dbs; d++)
        start[d + 1] += start[d];
    memcpy(fill, start, (size_t)dbs * sizeof *fill);
    sort_rec *a = guild_xmalloc(2 * n * sizeof *a), *tmp = a + n;
    for (size_t i = 0; i < n; i++)
        a[fill[c->dirty[i]->db]++] = (sort_rec){c->dirty[i]->prefix, c->dirty[i]};
    for (int d = 0; d < dbs; d++)
        if (start[d + 1] - start[d] > 1)
            sort_run(a + start[d], tmp, start[d + 1] - start[d], 0);
    for (size_t i = 0; i < n; i++)
        c->dirty[i] = a[i].e;
    free(a);
    free(fill);
    free(start);
}
