/* mpmap.c — msgpack map builder and reader for tests. */
#include "tests/support/mpmap.h"

#include <string.h>

void tst_map_init(tst_map *m, uint32_t entries)
{
    msgpack_sbuffer_init(&m->buf);
    msgpack_packer_init(&m->pk, &m->buf, msgpack_sbuffer_write);
    msgpack_pack_map(&m->pk, entries);
}

static void pack_key(tst_map *m, const char *key)
{
    size_t n = strlen(key);
    msgpack_pack_str(&m->pk, n);
    msgpack_pack_str_body(&m->pk, key, n);
}

void tst_map_str(tst_map *m, const char *key, const char *value)
{
    pack_key(m, key);
    size_t n = strlen(value);
    msgpack_pack_str(&m->pk, n);
    msgpack_pack_str_body(&m->pk, value, n);
}

void tst_map_int(tst_map *m, const char *key, int64_t value)
{
    pack_key(m, key);
    msgpack_pack_int64(&m->pk, value);
}

void tst_map_real(tst_map *m, const char *key, double value)
{
    pack_key(m, key);
    msgpack_pack_double(&m->pk, value);
}

void tst_map_bin(tst_map *m, const char *key, const void *p, size_t n)
{
    pack_key(m, key);
    msgpack_pack_bin(&m->pk, n);
    msgpack_pack_bin_body(&m->pk, p, n);
}

const void *tst_map_data(const tst_map *m)
{
    return m->buf.data;
}

size_t tst_map_len(const tst_map *m)
{
    return m->buf.size;
}

void tst_map_release(tst_map *m)
{
    msgpack_sbuffer_destroy(&m->buf);
    memset(m, 0, sizeof *m);
}

/* Unpacks `data` as exactly one map and returns the value under `key`,
 * valid while `zone` lives; NULL if absent. */
static const msgpack_object *map_find(const void *data, size_t len, const char *key,
                                      msgpack_zone *zone, msgpack_object *root)
{
    size_t off = 0;
    if (msgpack_unpack(data, len, &off, zone, root) != MSGPACK_UNPACK_SUCCESS || off != len)
        return NULL;
    if (root->type != MSGPACK_OBJECT_MAP)
        return NULL;
    size_t klen = strlen(key);
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object_kv *kv = &root->via.map.ptr[i];
        if (kv->key.type == MSGPACK_OBJECT_STR && kv->key.via.str.size == klen &&
            memcmp(kv->key.via.str.ptr, key, klen) == 0)
            return &kv->val;
    }
    return NULL;
}

bool tst_map_get_str(const void *data, size_t len, const char *key, char *out, size_t size)
{
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    msgpack_object root;
    const msgpack_object *v = map_find(data, len, key, &zone, &root);
    bool ok = v && v->type == MSGPACK_OBJECT_STR && size > 0;
    if (ok) {
        size_t n = v->via.str.size < size - 1 ? v->via.str.size : size - 1;
        memcpy(out, v->via.str.ptr, n);
        out[n] = '\0';
    }
    msgpack_zone_destroy(&zone);
    return ok;
}

bool tst_map_get_int(const void *data, size_t len, const char *key, int64_t *out)
{
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    msgpack_object root;
    const msgpack_object *v = map_find(data, len, key, &zone, &root);
    bool ok = true;
    if (v && v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= INT64_MAX)
        *out = (int64_t)v->via.u64;
    else if (v && v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
        *out = v->via.i64;
    else
        ok = false;
    msgpack_zone_destroy(&zone);
    return ok;
}

bool tst_map_get_bin(const void *data, size_t len, const char *key, const void **p, size_t *n)
{
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    msgpack_object root;
    const msgpack_object *v = map_find(data, len, key, &zone, &root);
    bool ok = v && v->type == MSGPACK_OBJECT_BIN;
    if (ok) {
        /* Without MSGPACK_ZONE copies the body points into `data`. */
        *p = v->via.bin.ptr;
        *n = v->via.bin.size;
    }
    msgpack_zone_destroy(&zone);
    return ok;
}

long tst_map_entries(const void *data, size_t len)
{
    msgpack_zone zone;
    msgpack_zone_init(&zone, 1024);
    msgpack_object root;
    size_t off = 0;
    long n = -1;
    if (msgpack_unpack(data, len, &off, &zone, &root) == MSGPACK_UNPACK_SUCCESS && off == len &&
        root.type == MSGPACK_OBJECT_MAP)
        n = (long)root.via.map.size;
    msgpack_zone_destroy(&zone);
    return n;
}
