/*
 * prep.c — a large flush prepared on a second thread as it is written
 * (see prep.h).
 */
#include "projections/prep.h"
#include "projections/store_internal.h"

#include "common/alloc.h"

#include <sched.h>
#include <stdlib.h>
#include <string.h>

#define PREP_BLOCK 1024 /* entries a thread takes at a time */

struct prj_prep_item {
    size_t off, len; /* the encoded object in its block's buffer */
    bool encoded;    /* false: the value is the entry's own bytes */
    bool ready;      /* false: left to the writer (a JSON value) */
    uint64_t h[4];
};

struct prj_prep_block {
    msgpack_sbuffer sb; /* the block's encoded objects */
    atomic_bool done;
};

/* Prepares block b (by whichever thread took it). */
static void prep_block(prj_prep *p, size_t b)
{
    prj_prep_block *blk = &p->blocks[b];
    msgpack_sbuffer *sb = &blk->sb;
    size_t end = (b + 1) * PREP_BLOCK < p->n ? (b + 1) * PREP_BLOCK : p->n;
    for (size_t i = b * PREP_BLOCK; i < end; i++) {
        prj_wentry *e = p->v[i];
        prj_prep_item *it = &p->items[i];
        if (!e->present) {
            it->ready = true; /* nothing to hash */
            continue;
        }
        const uint8_t *val = e->val;
        size_t vlen = e->vlen;
        if (!val && e->obj) {
            it->off = sb->size;
            msgpack_packer pk;
            msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
            e->otype->encode(e->obj, &pk);
            it->len = sb->size - it->off;
            it->encoded = true;
            val = (const uint8_t *)sb->data + it->off;
            vlen = it->len;
        } else if (!val) {
            continue;
        }
        prj__entry_hash(p->names[e->db], e->key, e->klen, val, vlen, it->h);
        it->ready = true;
    }
    atomic_store_explicit(&blk->done, true, memory_order_release);
}

static void *helper_main(void *arg)
{
    prj_prep *p = arg;
    while (!atomic_load_explicit(&p->stop, memory_order_relaxed)) {
        size_t b = atomic_fetch_add(&p->next, 1);
        if (b >= p->n_blocks)
            break;
        prep_block(p, b);
    }
    return NULL;
}

void prj__prep_run(prj_prep *p, const char *const *names, prj_wentry **v, size_t n)
{
    *p = (prj_prep){.names = names, .v = v, .n = n};
    p->items = guild_xcalloc(n ? n : 1, sizeof *p->items);
    p->n_blocks = (n + PREP_BLOCK - 1) / PREP_BLOCK;
    p->blocks = guild_xcalloc(p->n_blocks ? p->n_blocks : 1, sizeof *p->blocks);
    for (size_t b = 0; b < p->n_blocks; b++) {
        msgpack_sbuffer_init(&p->blocks[b].sb);
        atomic_init(&p->blocks[b].done, false);
    }
    atomic_init(&p->next, 0);
    atomic_init(&p->stop, false);
    p->helping = pthread_create(&p->helper, NULL, helper_main, p) == 0;
}

bool prj__prep_take(prj_prep *p, size_t i, const uint8_t **val, size_t *vlen, uint64_t h[4])
{
    size_t b = i / PREP_BLOCK;
    prj_prep_block *blk = &p->blocks[b];
    /* Until the block is prepared, prepare the first one no thread has
     * taken: this one (no block before it is left), or one the other
     * thread would have come to. */
    while (!atomic_load_explicit(&blk->done, memory_order_acquire)) {
        size_t c = atomic_fetch_add(&p->next, 1);
        if (c < p->n_blocks)
            prep_block(p, c);
        else
            sched_yield(); /* the other thread is finishing it */
    }
    const prj_prep_item *it = &p->items[i];
    if (!it->ready)
        return false;
    if (it->encoded) {
        *val = (const uint8_t *)blk->sb.data + it->off;
        *vlen = it->len;
    }
    memcpy(h, it->h, 4 * sizeof *h);
    return true;
}

void prj__prep_free(prj_prep *p)
{
    atomic_store(&p->stop, true);
    if (p->helping)
        pthread_join(p->helper, NULL);
    for (size_t b = 0; b < p->n_blocks; b++)
        msgpack_sbuffer_destroy(&p->blocks[b].sb);
    free(p->blocks);
    free(p->items);
}
