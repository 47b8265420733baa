/*
 * record.c — encoding, decoding and hashing of event records.
 *
 * Encoding uses msgpack-c's packer. Decoding walks the bytes with a small
 * reader of its own, because the store needs what msgpack-c's object tree
 * does not give: the exact byte extent of `data` and of the hash entry, with
 * no allocation per record.
 */
#include "eventstore/internal.h"

#include <sodium.h>
#include <string.h>

static const uint8_t zero_hash[ES_HASH_LEN];

/* ---- encoding ------------------------------------------------------------- */

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s ? s : "", n);
}

static void pack_key(msgpack_packer *pk, const char *k)
{
    pack_str(pk, k);
}

#define RECORD_ENTRIES 15

void es_record_encode(msgpack_sbuffer *buf, const es_record_in *in, uint8_t hash_out[ES_HASH_LEN])
{
    msgpack_sbuffer_clear(buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);

    msgpack_pack_map(&pk, RECORD_ENTRIES);
    pack_key(&pk, "id");
    pack_str(&pk, in->id);
    pack_key(&pk, "type");
    pack_str(&pk, in->type);
    pack_key(&pk, "schema");
    msgpack_pack_uint32(&pk, in->schema);
    pack_key(&pk, "domain");
    pack_str(&pk, in->domain);
    pack_key(&pk, "stream");
    pack_str(&pk, in->stream);
    pack_key(&pk, "version");
    msgpack_pack_uint64(&pk, in->version);
    pack_key(&pk, "position");
    msgpack_pack_uint64(&pk, in->position);
    pack_key(&pk, "time");
    msgpack_pack_int64(&pk, in->time);
    pack_key(&pk, "command_id");
    pack_str(&pk, in->command_id);
    pack_key(&pk, "correlation_id");
    pack_str(&pk, in->correlation_id);
    pack_key(&pk, "causation_id");
    pack_str(&pk, in->causation_id);
    pack_key(&pk, "actor");
    pack_str(&pk, in->actor);
    pack_key(&pk, "data");
    if (in->data && in->data_len)
        msgpack_sbuffer_write(buf, in->data, in->data_len);
    else
        msgpack_pack_map(&pk, 0);
    pack_key(&pk, "prev");
    msgpack_pack_bin(&pk, ES_HASH_LEN);
    msgpack_pack_bin_body(&pk, in->prev ? in->prev : zero_hash, ES_HASH_LEN);

    size_t hash_off = buf->size;
    es_record_hash((const uint8_t *)buf->data, hash_off, RECORD_ENTRIES,
                   in->prev ? in->prev : zero_hash, hash_out);
    pack_key(&pk, "hash");
    msgpack_pack_bin(&pk, ES_HASH_LEN);
    msgpack_pack_bin_body(&pk, hash_out, ES_HASH_LEN);
}

/* Length of the msgpack map header for n entries. */
static size_t map_header_len(uint32_t n)
{
    return n < 16 ? 1 : n < 65536 ? 3 : 5;
}

static size_t map_header_put(uint8_t *p, uint32_t n)
{
    if (n < 16) {
        p[0] = (uint8_t)(0x80 | n);
        return 1;
    }
    if (n < 65536) {
        p[0] = 0xde;
        p[1] = (uint8_t)(n >> 8);
        p[2] = (uint8_t)n;
        return 3;
    }
    p[0] = 0xdf;
    for (int i = 0; i < 4; i++)
        p[1 + i] = (uint8_t)(n >> (24 - 8 * i));
    return 5;
}

void es_record_hash(const uint8_t *raw, size_t hash_entry_off, uint32_t entries,
                    const uint8_t prev[ES_HASH_LEN], uint8_t out[ES_HASH_LEN])
{
    uint8_t header[5];
    size_t hlen = map_header_put(header, entries - 1);
    size_t skip = map_header_len(entries);

    crypto_generichash_state st;
    crypto_generichash_init(&st, NULL, 0, ES_HASH_LEN);
    crypto_generichash_update(&st, prev, ES_HASH_LEN);
    crypto_generichash_update(&st, header, hlen);
    crypto_generichash_update(&st, raw + skip, hash_entry_off - skip);
    crypto_generichash_final(&st, out, ES_HASH_LEN);
}

/* ---- decoding ------------------------------------------------------------- */

typedef struct mp_reader {
    const uint8_t *p, *end;
    bool bad;
} mp_reader;

static uint64_t be_read(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static bool mp_need(mp_reader *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return false;
    }
    return true;
}

static const uint8_t *mp_take(mp_reader *r, size_t n)
{
    if (!mp_need(r, n))
        return NULL;
    const uint8_t *at = r->p;
    r->p += n;
    return at;
}

/* Reads a str; false (and r->bad) if the next value is not one. */
static bool mp_str(mp_reader *r, es_str *out)
{
    if (!mp_need(r, 1))
        return false;
    uint8_t b = *r->p++;
    size_t n;
    if ((b & 0xe0) == 0xa0) {
        n = b & 0x1f;
    } else if (b == 0xd9 && mp_need(r, 1)) {
        n = *r->p++;
    } else if (b == 0xda && mp_need(r, 2)) {
        n = (size_t)be_read(mp_take(r, 2), 2);
    } else if (b == 0xdb && mp_need(r, 4)) {
        n = (size_t)be_read(mp_take(r, 4), 4);
    } else {
        r->bad = true;
        return false;
    }
    const uint8_t *s = mp_take(r, n);
    if (!s)
        return false;
    out->p = (const char *)s;
    out->n = (uint32_t)n;
    return true;
}

/* Reads an integer (positive or negative) as int64. */
static bool mp_int(mp_reader *r, int64_t *out)
{
    if (!mp_need(r, 1))
        return false;
    uint8_t b = *r->p++;
    if (b <= 0x7f) {
        *out = b;
        return true;
    }
    if (b >= 0xe0) {
        *out = (int8_t)b;
        return true;
    }
    static const int widths[] = {1, 2, 4, 8};
    if (b >= 0xcc && b <= 0xcf) {
        int w = widths[b - 0xcc];
        const uint8_t *p = mp_take(r, (size_t)w);
        if (!p)
            return false;
        *out = (int64_t)be_read(p, w);
        return true;
    }
    if (b >= 0xd0 && b <= 0xd3) {
        int w = widths[b - 0xd0];
        const uint8_t *p = mp_take(r, (size_t)w);
        if (!p)
            return false;
        uint64_t v = be_read(p, w);
        int shift = 64 - 8 * w;
        *out = shift ? (int64_t)(v << shift) >> shift : (int64_t)v;
        return true;
    }
    r->bad = true;
    return false;
}

static bool mp_bin32(mp_reader *r, const uint8_t **out)
{
    const uint8_t *h = mp_take(r, 2);
    if (!h || h[0] != 0xc4 || h[1] != ES_HASH_LEN) {
        r->bad = true;
        return false;
    }
    *out = mp_take(r, ES_HASH_LEN);
    return *out != NULL;
}

static bool mp_map_header(mp_reader *r, uint32_t *n)
{
    if (!mp_need(r, 1))
        return false;
    uint8_t b = *r->p++;
    if ((b & 0xf0) == 0x80) {
        *n = b & 0x0f;
    } else if (b == 0xde && mp_need(r, 2)) {
        *n = (uint32_t)be_read(mp_take(r, 2), 2);
    } else if (b == 0xdf && mp_need(r, 4)) {
        *n = (uint32_t)be_read(mp_take(r, 4), 4);
    } else {
        r->bad = true;
        return false;
    }
    return true;
}

/* Bytes of payload after the type byte b whose length is fixed, or -1 when
 * b's length is read from the bytes, or b opens a container. */
static int fixed_payload(uint8_t b)
{
    switch (b) {
    case 0xcc:
    case 0xd0:
        return 1;
    case 0xcd:
    case 0xd1:
    case 0xd4:
        return 2;
    case 0xd5:
        return 3;
    case 0xca:
    case 0xce:
    case 0xd2:
        return 4;
    case 0xd6:
        return 5;
    case 0xcb:
    case 0xcf:
    case 0xd3:
        return 8;
    case 0xd7:
        return 9;
    case 0xd8:
        return 17;
    default:
        return -1;
    }
}

/* Skips one value of any type. Iterative, with a count of the values still
 * to skip, so no nesting can exhaust the stack. */
static bool mp_skip(mp_reader *r, int unused)
{
    (void)unused;
    uint64_t left = 1;
    while (left > 0) {
        if (!mp_need(r, 1))
            return false;
        uint8_t b = *r->p++;
        left--;
        if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
            continue;
        if ((b & 0xe0) == 0xa0) {
            if (!mp_take(r, b & 0x1f))
                return false;
            continue;
        }
        if ((b & 0xf0) == 0x90) {
            left += b & 0x0f;
            continue;
        }
        if ((b & 0xf0) == 0x80) {
            left += 2u * (b & 0x0f);
            continue;
        }
        int fixed = fixed_payload(b);
        if (fixed >= 0) {
            if (!mp_take(r, (size_t)fixed))
                return false;
            continue;
        }
        int width; /* of the length or count that follows */
        switch (b) {
        case 0xc4:
        case 0xc7:
        case 0xd9:
            width = 1;
            break;
        case 0xc5:
        case 0xc8:
        case 0xda:
        case 0xdc:
        case 0xde:
            width = 2;
            break;
        case 0xc6:
        case 0xc9:
        case 0xdb:
        case 0xdd:
        case 0xdf:
            width = 4;
            break;
        default:
            r->bad = true;
            return false;
        }
        if (!mp_need(r, (size_t)width))
            return false;
        uint64_t n = be_read(mp_take(r, (size_t)width), width);
        if (b == 0xdc || b == 0xdd)
            left += n;
        else if (b == 0xde || b == 0xdf)
            left += 2 * n;
        else if (!mp_take(r, (size_t)n + (b >= 0xc7 && b <= 0xc9))) /* ext: its type byte */
            return false;
    }
    return !r->bad;
}

static bool key_is(es_str k, const char *name)
{
    size_t n = strlen(name);
    return k.n == n && memcmp(k.p, name, n) == 0;
}

/* Reads an unsigned integer field. */
static bool mp_uint(mp_reader *r, uint64_t *out)
{
    int64_t v;
    if (!mp_int(r, &v))
        return false;
    if (v < 0)
        return r->bad = true, false;
    *out = (uint64_t)v;
    return true;
}

/* Decodes the value of one known key into out, or skips it. Dispatches on
 * the key's length first: every record has fifteen keys, and the reads
 * that walk millions of records spend much of their time here. */
static bool decode_field(mp_reader *r, es_str key, es_record *out)
{
    uint64_t u;
    int64_t v;
    switch (key.n) {
    case 2:
        if (key_is(key, "id"))
            return mp_str(r, &out->id);
        break;
    case 4:
        if (key_is(key, "type"))
            return mp_str(r, &out->type);
        if (key_is(key, "prev"))
            return mp_bin32(r, &out->prev);
        if (key_is(key, "time")) {
            if (!mp_int(r, &v))
                return false;
            out->time = v;
            return true;
        }
        if (key_is(key, "data")) {
            const uint8_t *start = r->p;
            uint32_t n;
            mp_reader peek = *r;
            if (!mp_map_header(&peek, &n)) { /* data must be a map */
                r->bad = true;
                return false;
            }
            if (!mp_skip(r, 0))
                return false;
            out->data = start;
            out->data_len = (size_t)(r->p - start);
            return true;
        }
        break;
    case 5:
        if (key_is(key, "actor"))
            return mp_str(r, &out->actor);
        break;
    case 6:
        if (key_is(key, "domain"))
            return mp_str(r, &out->domain);
        if (key_is(key, "stream"))
            return mp_str(r, &out->stream);
        if (key_is(key, "schema")) {
            if (!mp_uint(r, &u))
                return false;
            out->schema = (uint32_t)u;
            return true;
        }
        break;
    case 7:
        if (key_is(key, "version"))
            return mp_uint(r, &out->version);
        break;
    case 8:
        if (key_is(key, "position"))
            return mp_uint(r, &out->position);
        break;
    case 10:
        if (key_is(key, "command_id"))
            return mp_str(r, &out->command_id);
        break;
    case 12:
        if (key_is(key, "causation_id"))
            return mp_str(r, &out->causation_id);
        break;
    case 14:
        if (key_is(key, "correlation_id"))
            return mp_str(r, &out->correlation_id);
        break;
    default:
        break;
    }
    return mp_skip(r, 0); /* a key this reader does not know */
}

guild_status es_record_decode(const void *raw, size_t len, es_record *out)
{
    memset(out, 0, sizeof *out);
    mp_reader r = {raw, (const uint8_t *)raw + len, false};
    uint32_t entries;
    if (!mp_map_header(&r, &entries) || entries < 2)
        return GUILD_CORRUPT;
    for (uint32_t i = 0; i + 1 < entries; i++) {
        es_str key;
        if (!mp_str(&r, &key) || !decode_field(&r, key, out))
            return GUILD_CORRUPT;
    }
    es_str key;
    if (!mp_str(&r, &key) || !key_is(key, "hash") || !mp_bin32(&r, &out->hash))
        return GUILD_CORRUPT;
    if (r.p != r.end || !out->id.p || !out->type.p || !out->stream.p || !out->prev || !out->data ||
        out->version == 0 || out->position == 0)
        return GUILD_CORRUPT;
    out->raw = raw;
    out->raw_len = len;
    return GUILD_OK;
}

static const void *moved(const void *p, const uint8_t *from, const uint8_t *to)
{
    return p ? to + ((const uint8_t *)p - from) : NULL;
}

void es_record_rebase(es_record *rec, const void *new_raw)
{
    const uint8_t *from = rec->raw, *to = new_raw;
    es_str *strs[] = {&rec->id,         &rec->type,           &rec->domain,       &rec->stream,
                      &rec->command_id, &rec->correlation_id, &rec->causation_id, &rec->actor};
    for (size_t i = 0; i < sizeof strs / sizeof strs[0]; i++)
        strs[i]->p = moved(strs[i]->p, from, to);
    rec->data = moved(rec->data, from, to);
    rec->prev = moved(rec->prev, from, to);
    rec->hash = moved(rec->hash, from, to);
    rec->raw = to;
}

bool es_record_hash_ok(const es_record *rec)
{
    /* The hash entry is the fixed tail: fixstr "hash" (5) + bin8 header (2) + 32. */
    const size_t tail = 5 + 2 + ES_HASH_LEN;
    if (!rec->raw || rec->raw_len < tail + 1)
        return false;
    mp_reader r = {rec->raw, rec->raw + rec->raw_len, false};
    uint32_t entries;
    if (!mp_map_header(&r, &entries) || entries < 2)
        return false;
    uint8_t h[ES_HASH_LEN];
    es_record_hash(rec->raw, rec->raw_len - tail, entries, rec->prev, h);
    return memcmp(h, rec->hash, ES_HASH_LEN) == 0; /* public data: no need for constant time */
}

bool es__data_is_map(const void *data, size_t len)
{
    mp_reader r = {data, (const uint8_t *)data + len, false};
    uint32_t n;
    mp_reader peek = r;
    if (!mp_map_header(&peek, &n))
        return false;
    return mp_skip(&r, 0) && r.p == r.end;
}
