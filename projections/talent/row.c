/*
 * row.c — the talent profile row as a C struct: new, free, and the msgpack
 * both ways (see row.h).
 *
 * Sections: lists and strings, encoding, a small msgpack reader, decoding.
 */
#include "projections/talent/row.h"
#include "projections/talent/internal.h"

#include "common/alloc.h"
#include "common/clock.h"
#include "common/prefetch.h"
#include "common/text.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- lists and strings ------------------------------------------------------ */

void tm_skill_set_name(tm_skill *s, const char *name, size_t n)
{
    tm_skill_clear(s);
    if (n > TM_SKILL_INLINE)
        s->long_name = guild_xstrndup(name, n);
    else
        guild_copy_n(s->name, sizeof s->name, name, n);
    s->len = (uint16_t)n;
}

void tm_skill_clear(tm_skill *s)
{
    free(s->long_name);
    s->long_name = NULL;
    s->len = 0;
    s->name[0] = '\0';
}

void tm_set_str(char **slot, const char *s)
{
    free(*slot);
    *slot = s ? guild_xstrdup(s) : NULL;
}

void *tm_list_push(tm_list *l, size_t size)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? l->cap * 2 : 4;
        l->v = guild_xrealloc(l->v, l->cap * size);
    }
    void *item = (char *)l->v + l->n * size;
    memset(item, 0, size);
    l->n++;
    return item;
}

void tm_list_remove(tm_list *l, size_t size, size_t i)
{
    char *base = l->v;
    memmove(base + i * size, base + (i + 1) * size, (l->n - i - 1) * size);
    l->n--;
}

tm_row *tm_row_new(const char *talent_id)
{
    tm_row *r = guild_xcalloc(1, sizeof *r);
    r->talent_id = guild_xstrdup(talent_id);
    r->user_id = guild_xstrdup("");
    r->headline = guild_xstrdup("");
    r->bio = guild_xstrdup("");
    r->location = guild_xstrdup("");
    r->timezone = guild_xstrdup("");
    r->hourly_rate = -1;
    r->version = -1;
    return r;
}

void tm_row_free(tm_row *r)
{
    if (!r)
        return;
    free(r->talent_id);
    free(r->user_id);
    free(r->headline);
    free(r->bio);
    free(r->location);
    free(r->timezone);
    for (size_t i = 0; i < r->skills.n; i++)
        tm_skill_clear(TM_AT(r->skills, tm_skill, i));
    for (size_t i = 0; i < r->certs.n; i++) {
        tm_cert *c = TM_AT(r->certs, tm_cert, i);
        free(c->name);
        free(c->issuer);
        free(c->issued_on);
        free(c->expires_on);
    }
    for (size_t i = 0; i < r->resv.n; i++)
        free(TM_AT(r->resv, tm_resv, i)->id);
    free(r->skills.v);
    free(r->certs.v);
    free(r->prices.v);
    free(r->resv.v);
    free(r->currency);
    free(r->created);
    free(r->updated);
    free(r->ix_memo);
    free(r);
}

/* ---- encoding ----------------------------------------------------------------
 * Key for key what guild_codec_encode made of the JSON row: the same order,
 * msgpack_pack_int64 for integers. */

static void put_bytes(msgpack_packer *pk, const char *s, size_t n)
{
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* A key: a string literal, its length known when compiled. */
#define put_key(pk, lit) put_bytes(pk, "" lit, sizeof(lit) - 1)

static void put_str_or_nil(msgpack_packer *pk, const char *s)
{
    if (s)
        put_bytes(pk, s, strlen(s));
    else
        msgpack_pack_nil(pk);
}

#define put_key_str(pk, lit, s) (put_key(pk, lit), put_str_or_nil(pk, s))
#define put_key_int(pk, lit, v) (put_key(pk, lit), msgpack_pack_int64(pk, v))

static void row_encode(const void *obj, msgpack_packer *pk)
{
    const tm_row *r = obj;
    char stamp[48];
    const char *updated =
        r->stamped ? guild_time_format(r->stamped_at, stamp, sizeof stamp) : r->updated;
    msgpack_pack_map(pk, 16 + (updated != NULL) + (r->version >= 0));
    put_key_str(pk, "talent_id", r->talent_id);
    put_key_str(pk, "user_id", r->user_id);
    put_key_str(pk, "headline", r->headline);
    put_key_str(pk, "bio", r->bio);
    put_key_str(pk, "location", r->location);
    put_key_str(pk, "timezone", r->timezone);

    put_key(pk, "skills");
    msgpack_pack_array(pk, r->skills.n);
    for (size_t i = 0; i < r->skills.n; i++) {
        const tm_skill *s = TM_AT(r->skills, tm_skill, i);
        msgpack_pack_map(pk, 2 + (s->years >= 0));
        put_key(pk, "skill");
        put_bytes(pk, tm_skill_name(s), s->len);
        put_key_int(pk, "level", s->level);
        if (s->years >= 0)
            put_key_int(pk, "years", s->years);
    }
    put_key(pk, "certifications");
    msgpack_pack_array(pk, r->certs.n);
    for (size_t i = 0; i < r->certs.n; i++) {
        const tm_cert *c = TM_AT(r->certs, tm_cert, i);
        msgpack_pack_map(pk, 3 + (c->expires_on != NULL));
        put_key_str(pk, "name", c->name);
        put_key_str(pk, "issuer", c->issuer);
        put_key_str(pk, "issued_on", c->issued_on);
        if (c->expires_on)
            put_key_str(pk, "expires_on", c->expires_on);
    }
    put_key_str(pk, "currency", r->currency);
    put_key(pk, "hourly_rate");
    if (r->hourly_rate >= 0)
        msgpack_pack_int64(pk, r->hourly_rate);
    else
        msgpack_pack_nil(pk);
    put_key(pk, "pricing_history");
    msgpack_pack_array(pk, r->prices.n);
    for (size_t i = 0; i < r->prices.n; i++) {
        const tm_price *p = TM_AT(r->prices, tm_price, i);
        msgpack_pack_map(pk, 3);
        put_key(pk, "currency");
        put_bytes(pk, p->currency, TM_CURRENCY_LEN);
        put_key_int(pk, "hourly_rate", p->hourly_rate);
        put_key(pk, "since");
        put_bytes(pk, p->since, p->since_len);
    }
    put_key_int(pk, "hours_per_week", r->hours_per_week);
    put_key_int(pk, "reserved_hours", r->reserved_hours);
    put_key(pk, "reservations");
    msgpack_pack_array(pk, r->resv.n);
    for (size_t i = 0; i < r->resv.n; i++) {
        const tm_resv *v = TM_AT(r->resv, tm_resv, i);
        msgpack_pack_map(pk, 2);
        put_key_str(pk, "reservation_id", v->id);
        put_key_int(pk, "hours_per_week", v->hours);
    }
    put_key(pk, "archived");
    if (r->archived)
        msgpack_pack_true(pk);
    else
        msgpack_pack_false(pk);
    put_key_str(pk, "created", r->created);
    if (updated)
        put_key_str(pk, "updated", updated);
    if (r->version >= 0)
        put_key_int(pk, "version", r->version);
}

/* ---- a small msgpack reader ------------------------------------------------- */

typedef struct rd {
    const uint8_t *p, *end;
    bool bad;
} rd;

static uint64_t be(const uint8_t *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

static const uint8_t *take(rd *r, size_t n)
{
    if (r->bad || (size_t)(r->end - r->p) < n) {
        r->bad = true;
        return NULL;
    }
    const uint8_t *at = r->p;
    r->p += n;
    return at;
}

static uint8_t peek(rd *r)
{
    if (r->bad || r->p >= r->end) {
        r->bad = true;
        return 0xc1; /* never used by msgpack */
    }
    return *r->p;
}

/* A length stored in n bytes after the type byte. */
static size_t len_of(rd *r, int n)
{
    const uint8_t *p = take(r, (size_t)n);
    return p ? (size_t)be(p, n) : 0;
}

static bool rd_nil(rd *r)
{
    if (peek(r) != 0xc0)
        return false;
    r->p++;
    return true;
}

/* A str where it lies; NULL (and bad) when the next value is not one. */
static const uint8_t *rd_str_view(rd *r, size_t *len)
{
    uint8_t b = peek(r);
    size_t n;
    if ((b & 0xe0) == 0xa0) {
        r->p++;
        n = b & 0x1f;
    } else if (b == 0xd9 || b == 0xda || b == 0xdb) {
        r->p++;
        n = len_of(r, b == 0xd9 ? 1 : b == 0xda ? 2 : 4);
    } else {
        r->bad = true;
        return NULL;
    }
    const uint8_t *s = take(r, n);
    *len = n;
    return s;
}

/* A str of at most `max` bytes without NUL (as rows hold), in place; NULL
 * (and bad) when it is not one. */
static const char *rd_text(rd *r, size_t max, size_t *n)
{
    const uint8_t *s = rd_str_view(r, n);
    if (!s || *n > max || memchr(s, 0, *n)) {
        r->bad = true;
        return NULL;
    }
    return (const char *)s;
}

/* A str as a new C string. */
static char *rd_str(rd *r)
{
    size_t n;
    const char *s = rd_text(r, SIZE_MAX, &n);
    return s ? guild_xstrndup(s, n) : NULL;
}

/* A str or nil (NULL, not bad). */
static char *rd_str_or_nil(rd *r)
{
    return rd_nil(r) ? NULL : rd_str(r);
}

static int64_t rd_int(rd *r)
{
    uint8_t b = peek(r);
    if (b <= 0x7f || b >= 0xe0) {
        r->p++;
        return (int8_t)b;
    }
    static const int widths[] = {1, 2, 4, 8};
    if (b >= 0xcc && b <= 0xcf) {
        r->p++;
        const uint8_t *p = take(r, (size_t)widths[b - 0xcc]);
        return p ? (int64_t)be(p, widths[b - 0xcc]) : 0;
    }
    if (b >= 0xd0 && b <= 0xd3) {
        r->p++;
        int w = widths[b - 0xd0];
        const uint8_t *p = take(r, (size_t)w);
        if (!p)
            return 0;
        uint64_t v = be(p, w);
        int shift = 64 - 8 * w;
        return shift ? (int64_t)(v << shift) >> shift : (int64_t)v;
    }
    r->bad = true;
    return 0;
}

/* An int or nil (dflt). */
static int64_t rd_int_or_nil(rd *r, int64_t dflt)
{
    return rd_nil(r) ? dflt : rd_int(r);
}

static bool rd_bool(rd *r)
{
    uint8_t b = peek(r);
    if (b != 0xc2 && b != 0xc3) {
        r->bad = true;
        return false;
    }
    r->p++;
    return b == 0xc3;
}

/* A container header: its count, or bad. */
static size_t rd_header(rd *r, bool map)
{
    uint8_t b = peek(r);
    if ((b & 0xf0) == (map ? 0x80 : 0x90)) {
        r->p++;
        return b & 0x0f;
    }
    if (b == (map ? 0xde : 0xdc) || b == (map ? 0xdf : 0xdd)) {
        r->p++;
        return len_of(r, b == (map ? 0xde : 0xdc) ? 2 : 4);
    }
    r->bad = true;
    return 0;
}

/* Skips one value of the kinds a row may hold (and floats, bins). */
static void rd_skip(rd *r, int depth)
{
    uint8_t b = peek(r);
    if (r->bad || depth > 8) {
        r->bad = true;
        return;
    }
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3) {
        r->p++;
    } else if ((b & 0xe0) == 0xa0 || b == 0xd9 || b == 0xda || b == 0xdb) {
        size_t n;
        rd_str_view(r, &n);
    } else if ((b >= 0xcc && b <= 0xcf) || (b >= 0xd0 && b <= 0xd3)) {
        rd_int(r);
    } else if (b == 0xca || b == 0xcb) {
        r->p++;
        take(r, b == 0xca ? 4 : 8);
    } else if (b == 0xc4 || b == 0xc5 || b == 0xc6) {
        r->p++;
        take(r, len_of(r, b == 0xc4 ? 1 : b == 0xc5 ? 2 : 4));
    } else if ((b & 0xf0) == 0x80 || b == 0xde || b == 0xdf) {
        size_t n = rd_header(r, true);
        for (size_t i = 0; i < 2 * n && !r->bad; i++)
            rd_skip(r, depth + 1);
    } else if ((b & 0xf0) == 0x90 || b == 0xdc || b == 0xdd) {
        size_t n = rd_header(r, false);
        for (size_t i = 0; i < n && !r->bad; i++)
            rd_skip(r, depth + 1);
    } else {
        r->bad = true;
    }
}

/* ---- decoding ----------------------------------------------------------------- */

/* Reads a map key into buf (keys of rows are short); false when it is not
 * a short str. */
static bool rd_key(rd *r, char *buf, size_t size)
{
    size_t n;
    const uint8_t *k = rd_str_view(r, &n);
    if (!k || n >= size || memchr(k, 0, n))
        return false;
    memcpy(buf, k, n);
    buf[n] = 0;
    return true;
}

static void rd_skill(rd *r, tm_skill *s)
{
    s->years = -1;
    size_t n = rd_header(r, true);
    char key[32];
    bool named = false;
    for (size_t i = 0; i < n && !r->bad; i++) {
        if (!rd_key(r, key, sizeof key)) {
            rd_skip(r, 0);
        } else if (strcmp(key, "skill") == 0) {
            size_t len;
            const char *name = rd_text(r, UINT16_MAX, &len);
            if (name) {
                tm_skill_set_name(s, name, len);
                named = true;
            }
        } else if (strcmp(key, "level") == 0)
            s->level = rd_int(r);
        else if (strcmp(key, "years") == 0)
            s->years = rd_int_or_nil(r, -1);
        else
            rd_skip(r, 0);
    }
    if (!named)
        r->bad = true;
}

static void rd_cert(rd *r, tm_cert *c)
{
    size_t n = rd_header(r, true);
    char key[32];
    for (size_t i = 0; i < n && !r->bad; i++) {
        char **slot = NULL;
        if (!rd_key(r, key, sizeof key))
            r->bad = true;
        else if (strcmp(key, "name") == 0)
            slot = &c->name;
        else if (strcmp(key, "issuer") == 0)
            slot = &c->issuer;
        else if (strcmp(key, "issued_on") == 0)
            slot = &c->issued_on;
        else if (strcmp(key, "expires_on") == 0)
            slot = &c->expires_on;
        if (slot) {
            free(*slot);
            *slot = rd_str_or_nil(r);
        } else {
            rd_skip(r, 0);
        }
    }
    if (!c->name || !c->issuer || !c->issued_on)
        r->bad = true;
}

/* A str of at most `max` bytes into out (max + 1 bytes); its length, or
 * -1 (and bad) when it is not one. */
static int rd_str_into(rd *r, char *out, size_t max)
{
    size_t n;
    const char *s = rd_text(r, max, &n);
    if (!s)
        return -1;
    return (int)guild_copy_n(out, max + 1, s, n);
}

static void rd_price(rd *r, tm_price *p)
{
    size_t n = rd_header(r, true);
    char key[32];
    bool currency = false, since = false;
    for (size_t i = 0; i < n && !r->bad; i++) {
        if (!rd_key(r, key, sizeof key)) {
            r->bad = true;
        } else if (strcmp(key, "currency") == 0) {
            currency = rd_str_into(r, p->currency, TM_CURRENCY_LEN) == TM_CURRENCY_LEN;
        } else if (strcmp(key, "hourly_rate") == 0) {
            p->hourly_rate = rd_int(r);
        } else if (strcmp(key, "since") == 0) {
            int len = rd_str_into(r, p->since, TM_TIME_MAX);
            since = len >= 0;
            p->since_len = (uint8_t)(since ? len : 0);
        } else {
            rd_skip(r, 0);
        }
    }
    if (!currency || !since)
        r->bad = true;
}

static void rd_resv(rd *r, tm_resv *v)
{
    size_t n = rd_header(r, true);
    char key[32];
    for (size_t i = 0; i < n && !r->bad; i++) {
        if (!rd_key(r, key, sizeof key))
            r->bad = true;
        else if (strcmp(key, "reservation_id") == 0)
            free(v->id), v->id = rd_str(r);
        else if (strcmp(key, "hours_per_week") == 0)
            v->hours = rd_int(r);
        else
            rd_skip(r, 0);
    }
    if (!v->id)
        r->bad = true;
}

/* Reads an array of items of `size` bytes with fn into l. */
static void rd_list(rd *r, tm_list *l, size_t size, void (*fn)(rd *, void *))
{
    size_t n = rd_header(r, false);
    for (size_t i = 0; i < n && !r->bad; i++)
        fn(r, tm_list_push(l, size));
}

static void rd_skill_v(rd *r, void *item)
{
    rd_skill(r, item);
}
static void rd_cert_v(rd *r, void *item)
{
    rd_cert(r, item);
}
static void rd_price_v(rd *r, void *item)
{
    rd_price(r, item);
}
static void rd_resv_v(rd *r, void *item)
{
    rd_resv(r, item);
}

static char **text_slot(tm_row *row, const char *key)
{
    if (strcmp(key, "talent_id") == 0)
        return &row->talent_id;
    if (strcmp(key, "user_id") == 0)
        return &row->user_id;
    if (strcmp(key, "headline") == 0)
        return &row->headline;
    if (strcmp(key, "bio") == 0)
        return &row->bio;
    if (strcmp(key, "location") == 0)
        return &row->location;
    if (strcmp(key, "timezone") == 0)
        return &row->timezone;
    return NULL;
}

static void *row_decode(const void *bytes, size_t len)
{
    rd r = {bytes, (const uint8_t *)bytes + len, false};
    tm_row *row = tm_row_new("");
    size_t n = rd_header(&r, true);
    char key[32];
    for (size_t i = 0; i < n && !r.bad; i++) {
        if (!rd_key(&r, key, sizeof key)) {
            r.bad = true;
            break;
        }
        char **text = text_slot(row, key);
        if (text) {
            free(*text);
            *text = rd_str(&r);
        } else if (strcmp(key, "skills") == 0) {
            rd_list(&r, &row->skills, sizeof(tm_skill), rd_skill_v);
        } else if (strcmp(key, "certifications") == 0) {
            rd_list(&r, &row->certs, sizeof(tm_cert), rd_cert_v);
        } else if (strcmp(key, "currency") == 0) {
            free(row->currency);
            row->currency = rd_str_or_nil(&r);
        } else if (strcmp(key, "hourly_rate") == 0) {
            row->hourly_rate = rd_int_or_nil(&r, -1);
        } else if (strcmp(key, "pricing_history") == 0) {
            rd_list(&r, &row->prices, sizeof(tm_price), rd_price_v);
        } else if (strcmp(key, "hours_per_week") == 0) {
            row->hours_per_week = rd_int(&r);
        } else if (strcmp(key, "reserved_hours") == 0) {
            row->reserved_hours = rd_int(&r);
        } else if (strcmp(key, "reservations") == 0) {
            rd_list(&r, &row->resv, sizeof(tm_resv), rd_resv_v);
        } else if (strcmp(key, "archived") == 0) {
            row->archived = rd_bool(&r);
        } else if (strcmp(key, "created") == 0) {
            free(row->created);
            row->created = rd_str_or_nil(&r);
        } else if (strcmp(key, "updated") == 0) {
            free(row->updated);
            row->updated = rd_str_or_nil(&r);
        } else if (strcmp(key, "version") == 0) {
            row->version = rd_int_or_nil(&r, -1);
        } else {
            rd_skip(&r, 0);
        }
    }
    bool texts = row->talent_id && row->user_id && row->headline && row->bio && row->location &&
                 row->timezone;
    if (r.bad || r.p != r.end || !texts) {
        tm_row_free(row);
        return NULL;
    }
    return row;
}

static void row_free(void *obj)
{
    tm_row_free(obj);
}

/* What apply reads of a row first: the skills. */
static void row_prefetch(const void *obj)
{
    const tm_row *row = obj;
    guild_prefetch(row->skills.v, row->skills.n * sizeof(tm_skill));
}

const prj_objtype tm_row_type = {.decode = row_decode,
                                 .encode = row_encode,
                                 .free = row_free,
                                 .size = sizeof(tm_row),
                                 .prefetch = row_prefetch,
                                 .settle = prj_talent__settle};

/* ---- event data ---------------------------------------------------------------- */

void tm_data_field(const void *data, size_t len, const char *key, tm_field *out)
{
    memset(out, 0, sizeof *out);
    rd r = {data, (const uint8_t *)data + len, false};
    size_t n = rd_header(&r, true), klen = strlen(key);
    for (size_t i = 0; i < n && !r.bad; i++) {
        size_t kn;
        const uint8_t *k = rd_str_view(&r, &kn);
        if (!k || kn != klen || memcmp(k, key, kn) != 0) {
            rd_skip(&r, 0);
            continue;
        }
        uint8_t b = peek(&r);
        if (b == 0xc0) {
            out->kind = TM_NIL;
        } else if ((b & 0xe0) == 0xa0 || b == 0xd9 || b == 0xda || b == 0xdb) {
            const uint8_t *s = rd_str_view(&r, &out->n);
            out->kind = s ? TM_STR : TM_OTHER;
            out->s = (const char *)s;
        } else if (b <= 0x7f || b >= 0xe0 || (b >= 0xcc && b <= 0xd3)) {
            out->i = rd_int(&r);
            /* a uint64 above INT64_MAX does not pass the codec's check */
            out->kind = r.bad ? TM_OTHER : TM_INT;
        } else {
            out->kind = TM_OTHER;
        }
        return;
    }
}
