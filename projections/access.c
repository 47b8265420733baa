/*
 * access.c — a read model's reads and writes (prj_get, prj_put, prj_scan,
 * their query forms): during a batch they go to the batch's
 * write-back cache (wcache.h), which prj__wc_flush writes to LMDB in key
 * order, keeping the digest from the value LMDB held and the one written.
 */
#include "projections/prep.h"
#include "projections/store_internal.h"

#include "common/alloc.h"
#include "common/codec.h"
#include "common/log.h"

#include <stdlib.h>
#include <string.h>

static guild_status unknown_db(const char *db)
{
    guild_error("read model uses an undeclared database %s", db);
    return GUILD_INTERNAL;
}

/* ---- the batch's write-back cache (wcache.h) ------------------------------- */

/* Writes an entry to LMDB, keeping the digest: out goes what LMDB held for
 * the key (read first unless the entry knows it), in comes `h`, the new
 * value's part (when the entry is present). */
static guild_status write_entry(prj_txn *t, prj_wentry *e, const uint8_t *val, size_t vlen,
                                const uint64_t h[4], bool append)
{
    MDB_val k = {e->klen, e->key}, old;
    MDB_dbi dbi = t->s->dbs[e->db];
    if (!e->stored_known) {
        int rc = mdb_get(t->txn, dbi, &k, &old);
        if (rc && rc != MDB_NOTFOUND)
            return prj__lmdb_status(rc, "reading the read model");
        e->stored_present = rc == 0;
        if (rc == 0)
            prj__entry_hash(t->s->names[e->db], e->key, e->klen, old.mv_data, old.mv_size,
                            e->stored_hash);
    }
    int rc = 0;
    if (e->present) {
        MDB_val v = {vlen, (void *)val};
        rc = mdb_put(t->txn, dbi, &k, &v, append ? MDB_APPEND : 0);
        if (rc == MDB_KEYEXIST && append)
            rc = mdb_put(t->txn, dbi, &k, &v, 0);
    } else if (e->stored_present) {
        rc = mdb_del(t->txn, dbi, &k, NULL);
    }
    if (rc == MDB_MAP_FULL)
        return GUILD_UNAVAILABLE; /* the batch grows the map and runs again */
    if (rc)
        return prj__lmdb_status(rc, "writing the read model");
    if (e->stored_present)
        prj__lanes_add(t->lanes, e->stored_hash, true);
    if (e->present)
        prj__lanes_add(t->lanes, h, false);
    return GUILD_OK;
}

/* Gives an entry whose value is JSON or an object its bytes. */
static guild_status wc_encode(prj_wentry *e)
{
    if (e->val || !e->present)
        return GUILD_OK;
    if (e->obj) {
        msgpack_sbuffer sb;
        msgpack_sbuffer_init(&sb);
        msgpack_packer pk;
        msgpack_packer_init(&pk, &sb, msgpack_sbuffer_write);
        e->otype->encode(e->obj, &pk);
        e->vlen = sb.size;
        e->val = (uint8_t *)msgpack_sbuffer_release(&sb);
        if (!e->val)
            e->val = guild_xmalloc(1);
        return GUILD_OK;
    }
    char *bytes = NULL;
    size_t len = 0;
    guild_status st = guild_codec_encode(e->json, GUILD_FMT_MSGPACK, &bytes, &len);
    if (st == GUILD_OK) {
        e->val = (uint8_t *)bytes;
        e->vlen = len;
    }
    return st;
}

/* Lets each dirty object whose type settles write what it derives (what
 * settling makes dirty is not settled in turn); a failure's reason goes to
 * t->settle_err. */
static guild_status settle_objects(prj_txn *t)
{
    prj_wcache *c = t->wc;
    size_t n = c->n_dirty;
    memset(&t->settle_err, 0, sizeof t->settle_err);
    for (size_t i = 0; i < n; i++) {
        prj_wentry *e = c->dirty[i]; /* settling may move the array, never an entry */
        if (!e->present || !e->obj || !e->otype->settle)
            continue;
        guild_status st = e->otype->settle(t, e->key, e->klen, e->obj, &t->settle_err);
        if (st != GUILD_OK)
            return st;
    }
    return GUILD_OK;
}

/* Writes the cache's changes to LMDB in key order, keeping the digest, and
 * leaves every entry clean. GUILD_UNAVAILABLE when the map is full. */
guild_status prj__wc_flush(prj_txn *t)
{
    prj_wcache *c = t->wc;
    guild_status settled = settle_objects(t);
    if (settled != GUILD_OK)
        return settled;
    prj_wcache_sort_dirty(c);
    guild_status st = GUILD_OK;
    /* Sorted writes into a database still empty append (LMDB fills each
     * page instead of splitting it); afterwards it is empty no more. */
    bool append[MAX_DBS];
    memcpy(append, t->empty, sizeof append);
    for (size_t i = 0; i < c->n_dirty; i++)
        t->empty[c->dirty[i]->db] = false;
    prj_prep p = {0};
    if (c->n_dirty >= PRJ_WCACHE_LARGE)
        prj__prep_run(&p, t->s->names, c->dirty, c->n_dirty);
    msgpack_sbuffer *sb = &t->s->scratch;
    for (size_t i = 0; i < c->n_dirty && st == GUILD_OK; i++) {
        prj_wentry *e = c->dirty[i];
        const uint8_t *val = e->val;
        size_t vlen = e->vlen;
        uint64_t h[4] = {0};
        if (!p.items || !prj__prep_take(&p, i, &val, &vlen, h)) {
            if (e->present && !val && e->obj) {
                /* Encoded into the scratch buffer only: the object stays
                 * the value, so the entry keeps no bytes of its own. */
                sb->size = 0;
                msgpack_packer pk;
                msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
                e->otype->encode(e->obj, &pk);
                val = (const uint8_t *)sb->data;
                vlen = sb->size;
            } else if ((st = wc_encode(e)) != GUILD_OK) {
                break;
            } else {
                val = e->val;
                vlen = e->vlen;
            }
            if (e->present)
                prj__entry_hash(t->s->names[e->db], e->key, e->klen, val, vlen, h);
        }
        if ((st = write_entry(t, e, val, vlen, h, append[e->db])) != GUILD_OK)
            break;
        e->stored_known = true;
        e->stored_present = e->present;
        memcpy(e->stored_hash, h, sizeof h);
        e->dirty = false;
    }
    if (p.items)
        prj__prep_free(&p);
    c->n_dirty = 0;
    return st;
}

/* After an event: writes the cache out and empties it when it has grown
 * past its budget. */
guild_status prj__wc_trim(prj_txn *t)
{
    if (t->wc->count < WCACHE_MAX)
        return GUILD_OK;
    guild_status st = prj__wc_flush(t);
    prj_wcache_clear_behind(t->wc);
    return st;
}

/* The cache's entry for a key, for a write (nothing read from LMDB). */
static prj_wentry *wc_entry(prj_txn *t, int i, const void *key, size_t klen)
{
    bool created;
    prj_wentry *e = prj_wcache_get(t->wc, i, key, klen, &created);
    if (created && t->empty[i]) {
        e->stored_known = true;
        e->stored_present = false;
    }
    return e;
}

/* The cache's entry for a key, loaded from LMDB when it has none. */
static guild_status wc_load(prj_txn *t, int i, const void *key, size_t klen, prj_wentry **out)
{
    prj_wentry *e = prj_wcache_find(t->wc, i, key, klen, false);
    if (!e) {
        MDB_val k = {klen, (void *)key}, v;
        int rc = t->empty[i] ? MDB_NOTFOUND : mdb_get(t->txn, t->s->dbs[i], &k, &v);
        if (rc && rc != MDB_NOTFOUND)
            return prj__lmdb_status(rc, "reading the read model");
        e = prj_wcache_find(t->wc, i, key, klen, true);
        if (rc == MDB_NOTFOUND) {
            e->stored_known = true; /* read: it is not there */
            e->stored_present = false;
        }
        if (rc == 0) {
            e->val = guild_xmemdup(v.mv_data, v.mv_size ? v.mv_size : 1);
            e->vlen = v.mv_size;
            e->present = true;
        }
    }
    *out = e;
    return GUILD_OK;
}

guild_status prj_put(prj_txn *t, const char *db, const void *key, size_t klen, const void *val,
                     size_t vlen)
{
    int i = prj__db_index(t->s, db);
    if (i < 0)
        return unknown_db(db);
    prj_wcache_set_bytes(t->wc, wc_entry(t, i, key, klen), val, vlen);
    return GUILD_OK;
}

guild_status prj_del(prj_txn *t, const char *db, const void *key, size_t klen)
{
    int i = prj__db_index(t->s, db);
    if (i < 0)
        return unknown_db(db);
    prj_wcache_set_absent(t->wc, wc_entry(t, i, key, klen));
    return GUILD_OK;
}

/* The cache's entry for a key that holds a value; GUILD_NOT_FOUND when the
 * key is absent. */
static guild_status wc_load_present(prj_txn *t, int i, const void *key, size_t klen,
                                    prj_wentry **out)
{
    guild_status st = wc_load(t, i, key, klen, out);
    return st == GUILD_OK && !(*out)->present ? GUILD_NOT_FOUND : st;
}

static guild_status wc_get(prj_txn *t, int i, const void *key, size_t klen, const void **val,
                           size_t *vlen)
{
    prj_wentry *e;
    guild_status st = wc_load_present(t, i, key, klen, &e);
    if (st != GUILD_OK)
        return st;
    if ((st = wc_encode(e)) != GUILD_OK)
        return st;
    *val = e->val;
    *vlen = e->vlen;
    return GUILD_OK;
}

static guild_status wc_get_json(prj_txn *t, int i, const void *key, size_t klen, json_t **out)
{
    prj_wentry *e;
    guild_status st = wc_load_present(t, i, key, klen, &e);
    if (st != GUILD_OK)
        return st;
    if (!e->json) {
        if ((st = wc_encode(e)) != GUILD_OK)
            return st;
        if (guild_codec_decode(e->val, e->vlen, GUILD_FMT_MSGPACK, &e->json, NULL) != GUILD_OK)
            return GUILD_CORRUPT;
    }
    *out = json_incref(e->json);
    return GUILD_OK;
}

guild_status prj_get_obj(prj_txn *t, const char *db, const void *key, size_t klen,
                         const prj_objtype *type, void **obj)
{
    int i = prj__db_index(t->s, db);
    if (i < 0)
        return unknown_db(db);
    prj_wentry *e;
    guild_status st = wc_load_present(t, i, key, klen, &e);
    if (st != GUILD_OK)
        return st;
    if (!e->obj || e->otype != type) {
        if ((st = wc_encode(e)) != GUILD_OK)
            return st;
        void *o = type->decode(e->val, e->vlen);
        if (!o)
            return GUILD_CORRUPT;
        prj_wcache_set_obj(t->wc, e, type, o, false);
    }
    prj_wcache_forget_bytes(e); /* the model may change the object */
    *obj = e->obj;
    return GUILD_OK;
}

guild_status prj_put_obj(prj_txn *t, const char *db, const void *key, size_t klen,
                         const prj_objtype *type, void *obj)
{
    int i = prj__db_index(t->s, db);
    if (i < 0) {
        type->free(obj);
        return unknown_db(db);
    }
    prj_wcache_set_obj(t->wc, wc_entry(t, i, key, klen), type, obj, true);
    return GUILD_OK;
}

static guild_status get_in(prj_store *s, MDB_txn *txn, const char *db, const void *key, size_t klen,
                           const void **val, size_t *vlen)
{
    int i = prj__db_index(s, db);
    if (i < 0)
        return unknown_db(db);
    MDB_val k = {klen, (void *)key}, v;
    int rc = mdb_get(txn, s->dbs[i], &k, &v);
    if (rc)
        return prj__lmdb_status(rc, "reading the read model");
    *val = v.mv_data;
    *vlen = v.mv_size;
    return GUILD_OK;
}

static guild_status get_json_in(prj_store *s, MDB_txn *txn, const char *db, const void *key,
                                size_t klen, json_t **out)
{
    const void *v;
    size_t n;
    guild_status st = get_in(s, txn, db, key, klen, &v, &n);
    if (st != GUILD_OK)
        return st;
    return guild_codec_decode(v, n, GUILD_FMT_MSGPACK, out, NULL) == GUILD_OK ? GUILD_OK
                                                                              : GUILD_CORRUPT;
}

static guild_status scan_in(prj_store *s, MDB_txn *txn, const char *db, const void *prefix,
                            size_t plen, const void *start, size_t slen, prj_kv_fn fn, void *ctx)
{
    int i = prj__db_index(s, db);
    if (i < 0)
        return unknown_db(db);
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, s->dbs[i], &cur);
    if (rc)
        return prj__lmdb_status(rc, "scanning the read model");
    MDB_val k, v;
    if (start) {
        k.mv_size = slen;
        k.mv_data = (void *)start;
    } else {
        k.mv_size = plen;
        k.mv_data = (void *)prefix;
    }
    rc = (k.mv_size ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
                    : mdb_cursor_get(cur, &k, &v, MDB_FIRST));
    for (; rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < plen || (plen && memcmp(k.mv_data, prefix, plen) != 0))
            break;
        if (fn(ctx, k.mv_data, k.mv_size, v.mv_data, v.mv_size))
            break;
    }
    mdb_cursor_close(cur);
    return rc == 0 || rc == MDB_NOTFOUND ? GUILD_OK : prj__lmdb_status(rc, "scanning");
}

guild_status prj_get(prj_txn *t, const char *db, const void *key, size_t klen, const void **val,
                     size_t *vlen)
{
    int i = prj__db_index(t->s, db);
    if (t->wc && i >= 0)
        return wc_get(t, i, key, klen, val, vlen);
    return get_in(t->s, t->txn, db, key, klen, val, vlen);
}

guild_status prj_put_json(prj_txn *t, const char *db, const void *key, size_t klen,
                          const json_t *val)
{
    int i = prj__db_index(t->s, db);
    if (t->wc && i >= 0) {
        /* The model hands the row over: it does not change it afterwards. */
        prj_wcache_set_json(t->wc, wc_entry(t, i, key, klen), (json_t *)val);
        return GUILD_OK;
    }
    char *bytes = NULL;
    size_t len = 0;
    guild_status s = guild_codec_encode(val, GUILD_FMT_MSGPACK, &bytes, &len);
    if (s == GUILD_OK)
        s = prj_put(t, db, key, klen, bytes, len);
    free(bytes);
    return s;
}

guild_status prj_get_json(prj_txn *t, const char *db, const void *key, size_t klen, json_t **val)
{
    int i = prj__db_index(t->s, db);
    if (t->wc && i >= 0)
        return wc_get_json(t, i, key, klen, val);
    return get_json_in(t->s, t->txn, db, key, klen, val);
}

guild_status prj_scan(prj_txn *t, const char *db, const void *prefix, size_t plen,
                      const void *start, size_t slen, prj_kv_fn fn, void *ctx)
{
    if (t->wc && t->wc->n_dirty) {
        guild_status st = prj__wc_flush(t); /* the scan reads LMDB */
        if (st != GUILD_OK)
            return st;
    }
    return scan_in(t->s, t->txn, db, prefix, plen, start, slen, fn, ctx);
}

guild_status prj_rget(prj_read *r, const char *db, const void *key, size_t klen, const void **val,
                      size_t *vlen)
{
    return get_in(r->s, r->txn, db, key, klen, val, vlen);
}

guild_status prj_rget_json(prj_read *r, const char *db, const void *key, size_t klen, json_t **val)
{
    return get_json_in(r->s, r->txn, db, key, klen, val);
}

guild_status prj_rscan(prj_read *r, const char *db, const void *prefix, size_t plen,
                       const void *start, size_t slen, prj_kv_fn fn, void *ctx)
{
    return scan_in(r->s, r->txn, db, prefix, plen, start, slen, fn, ctx);
}
