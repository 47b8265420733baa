/* state.c — loading aggregates from their events and the writer's cache. */
#include "bus/state.h"

#include "bus/runtime.h"

#include "common/alloc.h"
#include "common/codec.h"
#include "common/log.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LOAD_BATCH 1024

guild_status agg_evolve(const dom_aggregate *agg, void *state, const char *type, const json_t *data,
                        uint64_t version, int64_t time)
{
    dom_event_meta meta = {.id = "", .actor = "", .version = version, .time = time};
    return agg->evolve(state, type, data, &meta);
}

typedef struct load_ctx {
    const dom_aggregate *agg;
    void *state;
    uint64_t version;
    guild_status status;
    uint64_t upto; /* the last version to apply; 0: all */
} load_ctx;

static int load_one(void *arg, const es_record *rec)
{
    load_ctx *l = arg;
    if (l->upto && rec->version > l->upto)
        return 1;
    json_t *data = NULL;
    l->status = guild_codec_decode(rec->data, rec->data_len, GUILD_FMT_MSGPACK, &data, NULL);
    if (l->status != GUILD_OK)
        return 1;
    char type[ES_TYPE_MAX + 1];
    snprintf(type, sizeof type, "%.*s", (int)rec->type.n, rec->type.p);
    char id[ES_ID_LEN + 1], actor[160];
    snprintf(id, sizeof id, "%.*s", (int)rec->id.n, rec->id.p);
    snprintf(actor, sizeof actor, "%.*s", (int)rec->actor.n, rec->actor.p);
    dom_event_meta meta = {.id = id, .actor = actor, .version = rec->version, .time = rec->time};
    l->status = l->agg->evolve(l->state, type, data, &meta);
    json_decref(data);
    l->version = rec->version;
    return l->status != GUILD_OK;
}

static bool snapshots_on;
static pthread_once_t snapshots_once = PTHREAD_ONCE_INIT;

static void snapshots_read(void)
{
    const char *v = getenv("GUILD_SNAPSHOTS");
    snapshots_on = !(v && strcmp(v, "0") == 0);
}

bool agg_snapshots_on(void)
{
    pthread_once(&snapshots_once, snapshots_read);
    return snapshots_on;
}

/* Starts l (a fresh state) from the stream's snapshot when there is one
 * that restores and is not ahead of the stream's head `head`: through the
 * writer's transaction `w` when given, else from `st`. */
static void from_snapshot(load_ctx *l, es_store *st, es_wctx *w, const char *stream, uint64_t head)
{
    /* none is written below the first multiple of BUS_SNAPSHOT_EVERY: no
     * need to look for one in a shorter stream */
    if (!l->agg->restore || !agg_snapshots_on() || head < BUS_SNAPSHOT_EVERY)
        return;
    uint64_t version = 0;
    void *bytes = NULL;
    size_t len = 0;
    guild_status got = w ? es_wctx_snapshot_get(w, stream, &version, &bytes, &len)
                         : es_snapshot_get(st, stream, &version, &bytes, &len);
    if (got != GUILD_OK)
        return;
    void *restored = version <= head ? l->agg->restore(bytes, len) : NULL;
    free(bytes);
    if (!restored)
        return; /* not a state this build can read, or ahead of its stream: the events will do */
    l->agg->destroy(l->state);
    l->state = restored;
    l->version = version;
}

/* Applies the stream's events after l->version (up to l->upto) to l. */
static guild_status load_rest(load_ctx *l, es_store *st, const char *stream)
{
    uint64_t from = l->version + 1, next = from;
    for (;;) {
        uint64_t before = l->version;
        guild_status s = es_read_stream(st, stream, from, LOAD_BATCH, load_one, l, &next);
        if (s == GUILD_OK)
            s = l->status;
        if (s != GUILD_OK)
            return s;
        if (l->version == before || next == from || (l->upto && l->version >= l->upto))
            return GUILD_OK;
        from = next;
    }
}

guild_status agg_load(es_store *st, const dom_aggregate *agg, const char *stream, void **state,
                      uint64_t *version)
{
    load_ctx l = {agg, agg->create(), 0, GUILD_OK, 0};
    uint64_t head = 0;
    if (agg->restore && agg_snapshots_on() && es_stream_head(st, stream, &head, NULL) == GUILD_OK)
        from_snapshot(&l, st, NULL, stream, head);
    guild_status s = load_rest(&l, st, stream);
    if (s != GUILD_OK) {
        agg->destroy(l.state);
        return s;
    }
    *state = l.state;
    *version = l.version;
    return GUILD_OK;
}

guild_status agg_fold(es_store *st, const dom_aggregate *agg, const char *stream, uint64_t upto,
                      void **state, uint64_t *version)
{
    load_ctx l = {agg, agg->create(), 0, GUILD_OK, upto ? upto : UINT64_MAX};
    guild_status s = load_rest(&l, st, stream);
    if (s != GUILD_OK) {
        agg->destroy(l.state);
        return s;
    }
    *state = l.state;
    *version = l.version;
    return GUILD_OK;
}

guild_status agg_load_wctx(es_wctx *w, const dom_aggregate *agg, const char *stream, void **state,
                           uint64_t *version)
{
    load_ctx l = {agg, agg->create(), 0, GUILD_OK, 0};
    from_snapshot(&l, NULL, w, stream, es_wctx_head(w, stream));
    guild_status s = es_wctx_read_stream(w, stream, l.version + 1, load_one, &l);
    if (s == GUILD_OK)
        s = l.status;
    if (s != GUILD_OK) {
        agg->destroy(l.state);
        return s;
    }
    *state = l.state;
    *version = l.version;
    return GUILD_OK;
}

/* ---- the cache: open addressing on the stream id -------------------------- */

struct agg_cache {
    agg_entry **slots;
    size_t cap, count, max;
};

static uint64_t hash_str(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) {
        h ^= (unsigned char)*s;
        h *= 1099511628211ull;
    }
    return h;
}

agg_cache *agg_cache_create(size_t max_entries)
{
    agg_cache *c = guild_xcalloc(1, sizeof *c);
    c->max = max_entries;
    return c;
}

static void entry_free(agg_entry *e)
{
    e->agg->destroy(e->state);
    free(e->stream);
    free(e);
}

void agg_cache_clear(agg_cache *c)
{
    for (size_t i = 0; i < c->cap; i++)
        if (c->slots[i])
            entry_free(c->slots[i]);
    free(c->slots);
    c->slots = NULL;
    c->cap = c->count = 0;
}

void agg_cache_destroy(agg_cache *c)
{
    if (!c)
        return;
    agg_cache_clear(c);
    free(c);
}

static size_t slot_of(const agg_cache *c, const char *stream)
{
    size_t mask = c->cap - 1;
    for (size_t i = hash_str(stream) & mask;; i = (i + 1) & mask)
        if (!c->slots[i] || strcmp(c->slots[i]->stream, stream) == 0)
            return i;
}

static void grow(agg_cache *c)
{
    size_t old_cap = c->cap;
    agg_entry **old = c->slots;
    c->cap = old_cap ? old_cap * 2 : 256;
    c->slots = guild_xcalloc(c->cap, sizeof *c->slots);
    for (size_t i = 0; i < old_cap; i++)
        if (old[i])
            c->slots[slot_of(c, old[i]->stream)] = old[i];
    free(old);
}

void agg_cache_forget(agg_cache *c, const char *stream)
{
    if (!c->cap)
        return;
    size_t i = slot_of(c, stream);
    if (!c->slots[i])
        return;
    /* Removing from open addressing: rebuild the run after the hole. */
    entry_free(c->slots[i]);
    c->slots[i] = NULL;
    c->count--;
    size_t mask = c->cap - 1;
    for (size_t j = (i + 1) & mask; c->slots[j]; j = (j + 1) & mask) {
        agg_entry *e = c->slots[j];
        c->slots[j] = NULL;
        c->slots[slot_of(c, e->stream)] = e;
    }
}

typedef struct catch_up {
    agg_entry *e;
    guild_status status;
} catch_up;

static int catch_up_one(void *arg, const es_record *rec)
{
    catch_up *cu = arg;
    load_ctx l = {cu->e->agg, cu->e->state, cu->e->version, GUILD_OK, 0};
    load_one(&l, rec);
    cu->e->version = l.version;
    cu->status = l.status;
    return l.status != GUILD_OK;
}

guild_status agg_cache_at(agg_cache *c, es_wctx *w, const char *stream, const dom_aggregate *agg,
                          agg_entry **out)
{
    uint64_t head = es_wctx_head(w, stream);
    if (c->count >= c->max)
        agg_cache_clear(c); /* simple bound: hot aggregates come back at once */
    if ((c->count + 1) * 4 > c->cap * 3)
        grow(c);
    size_t i = slot_of(c, stream);
    agg_entry *e = c->slots[i];
    if (e && (e->agg != agg || e->version > head)) {
        agg_cache_forget(c, stream);
        i = slot_of(c, stream);
        e = NULL;
    }
    if (!e) {
        e = guild_xcalloc(1, sizeof *e);
        e->stream = guild_xstrdup(stream);
        e->agg = agg;
        /* a new entry starts from the stream's snapshot when it has one */
        load_ctx l = {agg, agg->create(), 0, GUILD_OK, 0};
        from_snapshot(&l, NULL, w, stream, head);
        e->state = l.state;
        e->version = l.version;
        c->slots[i] = e;
        c->count++;
    }
    if (e->version < head) {
        catch_up cu = {e, GUILD_OK};
        guild_status s = es_wctx_read_stream(w, stream, e->version + 1, catch_up_one, &cu);
        if (s == GUILD_OK)
            s = cu.status;
        if (s != GUILD_OK || e->version != head) {
            agg_cache_forget(c, stream);
            return s != GUILD_OK ? s : GUILD_CORRUPT;
        }
    }
    *out = e;
    return GUILD_OK;
}
