/*
 * prep.c — the digest's hash of an entry, and a large flush prepared on two
 * threads (see prep.h).
 */
#include "projections/prep.h"

#include "common/alloc.h"

#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

void prj__entry_hash(const char *db, const void *k, size_t kn, const void *v, size_t vn,
                     uint64_t out[4])
{
    uint8_t h[32], len[8];
    for (int i = 0; i < 8; i++)
        len[i] = (uint8_t)((uint64_t)kn >> (56 - 8 * i));
    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, sizeof h);
    crypto_generichash_update(&st, (const uint8_t *)db, strlen(db) + 1);
    crypto_generichash_update(&st, len, 8);
    crypto_generichash_update(&st, k, kn);
    crypto_generichash_update(&st, v, vn);
    crypto_generichash_final(&st, h, sizeof h);
    for (int i = 0; i < 4; i++) {
        uint64_t x = 0;
        for (int j = 0; j < 8; j++)
            x = (x << 8) | h[8 * i + j];
        out[i] = x;
    }
}

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
    pthread_t th;
    bool apart = pthread_create(&th, NULL, prep_main, &parts[1]) == 0;
    prep_main(&parts[0]);
    if (apart)
        pthread_join(th, NULL);
    else
        prep_main(&parts[1]);
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
