/*
 * prep.c — a large flush prepared on two threads (see prep.h).
 */
#include "projections/prep.h"
#include "projections/store_internal.h"

#include "common/alloc.h"
#include "common/pair.h"

#include <stdlib.h>
#include <string.h>

#define PREP_BLOCK 1024 /* entries a thread takes at a time */

struct prj_prep_item {
    size_t off, len; /* the encoded object in its thread's buffer */
    bool encoded;    /* false: the value is the entry's own bytes */
    bool ready;      /* false: left to the writer (a JSON value) */
    uint64_t h[4];
};

typedef struct prep_part {
    prj_prep *p;
    int part;
} prep_part;

static void *prep_main(void *arg)
{
    prep_part *pp = arg;
    prj_prep *p = pp->p;
    msgpack_sbuffer *sb = &p->sb[pp->part];
    for (size_t b = (size_t)pp->part * PREP_BLOCK; b < p->n; b += 2 * PREP_BLOCK) {
        size_t end = b + PREP_BLOCK < p->n ? b + PREP_BLOCK : p->n;
        for (size_t i = b; i < end; i++) {
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
    }
    return NULL;
}

void prj__prep_run(prj_prep *p, const char *const *names, prj_wentry **v, size_t n)
{
    *p = (prj_prep){.names = names, .v = v, .n = n, .items = guild_xcalloc(n, sizeof *p->items)};
    msgpack_sbuffer_init(&p->sb[0]);
    msgpack_sbuffer_init(&p->sb[1]);
    prep_part parts[2] = {{p, 0}, {p, 1}};
    guild_run_pair(prep_main, &parts[0], &parts[1]);
}

bool prj__prep_take(const prj_prep *p, size_t i, const uint8_t **val, size_t *vlen, uint64_t h[4])
{
    const prj_prep_item *it = &p->items[i];
    if (!it->ready)
        return false;
    if (it->encoded) {
        *val = (const uint8_t *)p->sb[(i / PREP_BLOCK) % 2].data + it->off;
        *vlen = it->len;
    }
    memcpy(h, it->h, 4 * sizeof *h);
    return true;
}

void prj__prep_free(prj_prep *p)
{
    free(p->items);
    msgpack_sbuffer_destroy(&p->sb[0]);
    msgpack_sbuffer_destroy(&p->sb[1]);
}
