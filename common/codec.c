/*
 * codec.c — JSON and msgpack bodies to and from json_t (see codec.h for the
 * rules both formats share).
 *
 * Sections: format detection; string checks; the msgpack structure scan;
 * msgpack objects to json_t; decoding; encoding.
 *
 * msgpack-c's unpacker allocates room for as many elements as a container
 * header declares, before reading them: five bytes declaring four billion
 * elements make it ask for tens of gigabytes. So a body is first scanned
 * without allocating, checking that every declared count fits in the bytes
 * that remain and that nesting stays within the limit, and only then handed
 * to msgpack_unpack_next.
 */
#include "common/codec.h"

#include "common/alloc.h"
#include "common/text.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- format detection ---------------------------------------------------- */

/* True if the media type of header value ct is `want` (case-insensitive,
 * parameters after ';' ignored). */
static bool media_type_is(const char *ct, const char *want)
{
    size_t n = strlen(want);
    while (*ct == ' ' || *ct == '\t')
        ct++;
    if (strncasecmp(ct, want, n) != 0)
        return false;
    ct += n;
    while (*ct == ' ' || *ct == '\t')
        ct++;
    return *ct == '\0' || *ct == ';';
}

guild_format guild_format_detect(const char *content_type, const void *body, size_t len)
{
    if (content_type) {
        if (media_type_is(content_type, "application/json"))
            return GUILD_FMT_JSON;
        if (media_type_is(content_type, "application/msgpack"))
            return GUILD_FMT_MSGPACK;
    }
    /* CONTRACT.md: the first byte decides, so a blank before the brace
     * makes a msgpack body (and an invalid one). */
    return len && *(const unsigned char *)body == '{' ? GUILD_FMT_JSON : GUILD_FMT_MSGPACK;
}

/* ---- string checks --------------------------------------------------------- */

/* Well-formed UTF-8 (RFC 3629): no overlong forms, no surrogates, nothing
 * above U+10FFFF. */
static bool utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned char c = s[i];
        unsigned char lo = 0x80, hi = 0xBF; /* range of the second byte */
        size_t more;
        if (c < 0x80) {
            i++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            more = 1;
        } else if (c >= 0xE0 && c <= 0xEF) {
            more = 2;
            if (c == 0xE0)
                lo = 0xA0;
            else if (c == 0xED)
                hi = 0x9F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            more = 3;
            if (c == 0xF0)
                lo = 0x90;
            else if (c == 0xF4)
                hi = 0x8F;
        } else {
            return false;
        }
        if (n - i - 1 < more || s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t k = 2; k <= more; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return false;
        i += more + 1;
    }
    return true;
}

/* NULL if a msgpack str is acceptable as a string or key, else why not.
 * NUL bytes are refused because strict JSON refuses "\u0000" too, and
 * because the C code behind the codec reads strings with strcmp. */
static const char *str_problem(const msgpack_object_str *s)
{
    if (s->size > 0 && memchr(s->ptr, '\0', s->size))
        return "string contains a NUL byte";
    if (!utf8_valid((const unsigned char *)s->ptr, s->size))
        return "string is not valid UTF-8";
    return NULL;
}

/* ---- the msgpack structure scan -------------------------------------------- */

typedef struct mp_scan {
    const unsigned char *p;
    const unsigned char *end;
    const char *why; /* set when the scan fails */
} mp_scan;

static bool scan_fail(mp_scan *s, const char *why)
{
    s->why = why;
    return false;
}

static bool scan_skip(mp_scan *s, uint64_t n)
{
    if ((uint64_t)(s->end - s->p) < n)
        return scan_fail(s, "truncated");
    s->p += n;
    return true;
}

/* Reads an n-byte big-endian length. */
static bool scan_length(mp_scan *s, unsigned n, uint64_t *out)
{
    if ((size_t)(s->end - s->p) < n)
        return scan_fail(s, "truncated");
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | s->p[i];
    s->p += n;
    *out = v;
    return true;
}

static bool scan_value(mp_scan *s, int depth);

/* A container of `count` entries of `per` values each, enclosed by `depth`
 * others. Every value takes at least one byte, which bounds what the
 * unpacker will allocate by the length of the body. */
static bool scan_items(mp_scan *s, uint64_t count, unsigned per, int depth)
{
    if (depth + 1 > GUILD_CODEC_MAX_DEPTH)
        return scan_fail(s, "nested deeper than 32 levels");
    if (count > (uint64_t)(s->end - s->p) / per)
        return scan_fail(s, "truncated");
    for (uint64_t i = 0; i < count * per; i++)
        if (!scan_value(s, depth + 1))
            return false;
    return true;
}

/* Bytes to skip after the header byte of a fixed-size type; -1 if b is not
 * one. */
static int fixed_size(unsigned char b)
{
    switch (b) {
    case 0xc0: /* nil */
    case 0xc2: /* false */
    case 0xc3: /* true */
        return 0;
    case 0xcc: /* uint 8 */
    case 0xd0: /* int 8 */
        return 1;
    case 0xcd:
    case 0xd1:
        return 2;
    case 0xca: /* float 32 */
    case 0xce:
    case 0xd2:
        return 4;
    case 0xcb: /* float 64 */
    case 0xcf:
    case 0xd3:
        return 8;
    case 0xd4: /* fixext 1..16: a type byte, then the data */
        return 2;
    case 0xd5:
        return 3;
    case 0xd6:
        return 5;
    case 0xd7:
        return 9;
    case 0xd8:
        return 17;
    default:
        return -1;
    }
}

/* Walks one value that `depth` containers enclose. */
static bool scan_value(mp_scan *s, int depth)
{
    if (s->p == s->end)
        return scan_fail(s, "truncated");
    unsigned char b = *s->p++;
    uint64_t n;
    if (b <= 0x7f || b >= 0xe0) /* fixint */
        return true;
    if (b <= 0x8f)
        return scan_items(s, b & 0x0f, 2, depth);
    if (b <= 0x9f)
        return scan_items(s, b & 0x0f, 1, depth);
    if (b <= 0xbf)
        return scan_skip(s, b & 0x1f);
    int fixed = fixed_size(b);
    if (fixed >= 0)
        return scan_skip(s, (uint64_t)fixed);
    switch (b) {
    case 0xc4: /* bin 8, 16, 32 */
    case 0xd9: /* str 8, 16, 32 */
        return scan_length(s, 1, &n) && scan_skip(s, n);
    case 0xc5:
    case 0xda:
        return scan_length(s, 2, &n) && scan_skip(s, n);
    case 0xc6:
    case 0xdb:
        return scan_length(s, 4, &n) && scan_skip(s, n);
    case 0xc7: /* ext 8, 16, 32: length, type byte, data */
        return scan_length(s, 1, &n) && scan_skip(s, n + 1);
    case 0xc8:
        return scan_length(s, 2, &n) && scan_skip(s, n + 1);
    case 0xc9:
        return scan_length(s, 4, &n) && scan_skip(s, n + 1);
    case 0xdc:
        return scan_length(s, 2, &n) && scan_items(s, n, 1, depth);
    case 0xdd:
        return scan_length(s, 4, &n) && scan_items(s, n, 1, depth);
    case 0xde:
        return scan_length(s, 2, &n) && scan_items(s, n, 2, depth);
    case 0xdf:
        return scan_length(s, 4, &n) && scan_items(s, n, 2, depth);
    default: /* 0xc1, never used */
        return scan_fail(s, "invalid type byte");
    }
}

/* ---- msgpack objects to json_t ----------------------------------------------- */

static json_t *mp_to_json(const msgpack_object *o, int depth, const char **why);

static json_t *mp_array(const msgpack_object_array *a, int depth, const char **why)
{
    json_t *arr = json_array();
    for (uint32_t i = 0; i < a->size; i++) {
        json_t *item = mp_to_json(&a->ptr[i], depth + 1, why);
        if (!item) {
            json_decref(arr);
            return NULL;
        }
        json_array_append_new(arr, item);
    }
    return arr;
}

static json_t *mp_map(const msgpack_object_map *m, int depth, const char **why)
{
    json_t *obj = json_object();
    for (uint32_t i = 0; i < m->size; i++) {
        const msgpack_object *k = &m->ptr[i].key;
        if (k->type != MSGPACK_OBJECT_STR) {
            *why = "map keys must be strings";
            goto fail;
        }
        const msgpack_object_str *key = &k->via.str;
        if ((*why = str_problem(key)) != NULL)
            goto fail;
        /* jansson refuses a NULL key even when its length is 0. */
        const char *kp = key->ptr ? key->ptr : "";
        if (json_object_getn(obj, kp, key->size)) {
            *why = "duplicate map key";
            goto fail;
        }
        json_t *val = mp_to_json(&m->ptr[i].val, depth + 1, why);
        if (!val)
            goto fail;
        json_object_setn_new_nocheck(obj, kp, key->size, val);
    }
    return obj;
fail:
    json_decref(obj);
    return NULL;
}

/* Converts o, which `depth` containers enclose; NULL with *why set if a rule
 * of codec.h refuses it. */
static json_t *mp_to_json(const msgpack_object *o, int depth, const char **why)
{
    double d;
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        return json_null();
    case MSGPACK_OBJECT_BOOLEAN:
        return json_boolean(o->via.boolean);
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > INT64_MAX) {
            *why = "integer larger than 9223372036854775807";
            return NULL;
        }
        return json_integer((json_int_t)o->via.u64);
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return json_integer((json_int_t)o->via.i64);
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        d = o->via.f64;
        if (!isfinite(d)) {
            *why = "number is not finite";
            return NULL;
        }
        return json_real(d);
    case MSGPACK_OBJECT_STR:
        if ((*why = str_problem(&o->via.str)) != NULL)
            return NULL;
        return json_stringn_nocheck(o->via.str.ptr ? o->via.str.ptr : "", o->via.str.size);
    case MSGPACK_OBJECT_ARRAY:
    case MSGPACK_OBJECT_MAP:
        if (depth + 1 > GUILD_CODEC_MAX_DEPTH) {
            *why = "nested deeper than 32 levels";
            return NULL;
        }
        if (o->type == MSGPACK_OBJECT_ARRAY)
            return mp_array(&o->via.array, depth, why);
        return mp_map(&o->via.map, depth, why);
    case MSGPACK_OBJECT_BIN:
        *why = "bin values are not supported";
        return NULL;
    case MSGPACK_OBJECT_EXT:
        *why = "ext values are not supported";
        return NULL;
    }
    *why = "unknown msgpack type";
    return NULL;
}

guild_status guild_codec_from_msgpack_object(const msgpack_object *o, json_t **out,
                                             guild_error *err)
{
    const char *why = NULL;
    json_t *v = mp_to_json(o, 0, &why);
    if (!v)
        return guild_error_set(err, GUILD_INVALID_REQUEST, 0, "msgpack value refused: %s", why);
    *out = v;
    return GUILD_OK;
}

/* ---- decoding ------------------------------------------------------------------ */

static pthread_key_t zone_key;
static pthread_once_t zone_once = PTHREAD_ONCE_INIT;

static void zone_free(void *z)
{
    msgpack_zone_free(z);
}

static void zone_key_make(void)
{
    pthread_key_create(&zone_key, zone_free);
}

/* The calling thread's unpacking zone (freed when the thread ends). */
static msgpack_zone *thread_zone(void)
{
    pthread_once(&zone_once, zone_key_make);
    msgpack_zone *z = pthread_getspecific(zone_key);
    if (!z && (z = msgpack_zone_new(MSGPACK_ZONE_CHUNK_SIZE)) != NULL)
        pthread_setspecific(zone_key, z);
    return z;
}

#define MP_INVALID "body is not valid msgpack"

/* Scans body as one msgpack value and unpacks it into z (this thread's
 * zone: the caller clears it). The unpacked tree lives in a zone kept from
 * call to call: a new zone each time is a malloc that, after the many
 * small frees of building JSON, makes glibc consolidate its free lists. */
static guild_status unpack_body(const void *body, size_t len, msgpack_zone *z, msgpack_object *obj,
                                guild_error *err)
{
    if (len == 0)
        return guild_error_set(err, GUILD_INVALID_REQUEST, 0, "%s: empty body", MP_INVALID);
    mp_scan sc = {body, (const unsigned char *)body + len, NULL};
    if (!scan_value(&sc, 0))
        return guild_error_set(err, GUILD_INVALID_REQUEST, 0, "%s: %s", MP_INVALID, sc.why);
    if (sc.p != sc.end)
        return guild_error_set(err, GUILD_INVALID_REQUEST, 0, "%s: trailing bytes after the value",
                               MP_INVALID);
    size_t off = 0;
    msgpack_unpack_return r =
        z ? msgpack_unpack(body, len, &off, z, obj) : MSGPACK_UNPACK_NOMEM_ERROR;
    if (r != MSGPACK_UNPACK_SUCCESS || off != len)
        /* The scan accepted what the unpacker refuses: only when out of
         * memory, as far as msgpack-c's grammar goes. */
        return guild_error_set(err, GUILD_INVALID_REQUEST, (int)r, "%s: unpacking failed",
                               MP_INVALID);
    return GUILD_OK;
}

static guild_status decode_msgpack(const void *body, size_t len, json_t **out, guild_error *err)
{
    msgpack_zone *z = thread_zone();
    msgpack_object obj;
    guild_status st = unpack_body(body, len, z, &obj, err);
    if (st == GUILD_OK) {
        const char *why = NULL;
        json_t *v = mp_to_json(&obj, 0, &why);
        if (v)
            *out = v;
        else
            st = guild_error_set(err, GUILD_INVALID_REQUEST, 0, "%s: %s", MP_INVALID, why);
    }
    if (z)
        msgpack_zone_clear(z);
    return st;
}

/* True if containers in v nest deeper than the limit, v being enclosed by
 * `depth` others. */
static bool json_too_deep(const json_t *v, int depth)
{
    if (!json_is_array(v) && !json_is_object(v))
        return false;
    if (depth + 1 > GUILD_CODEC_MAX_DEPTH)
        return true;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (json_too_deep(json_array_get(v, i), depth + 1))
                return true;
        return false;
    }
    /* jansson's iteration takes a non-const object; it does not modify it. */
    json_t *obj = (json_t *)v;
    const char *key;
    json_t *val;
    json_object_foreach(obj, key, val)
    {
        if (json_too_deep(val, depth + 1))
            return true;
    }
    return false;
}

/* ---- JSON: a fast path for plain bodies -------------------------------------- */

/* Request bodies are mostly one object of ASCII strings without escapes,
 * small integers, booleans and null, with arrays and objects of those.
 * json_fast reads such a body straight into jansson values, at a fraction
 * of json_loadb's cost (its lexer spends about a thousand instructions a
 * token), and declines (NULL) at the first thing outside that: an escape,
 * a byte outside printable ASCII in a string, a real, an integer of more
 * than 18 digits, a repeated key, nesting past GUILD_CODEC_MAX_DEPTH, any
 * syntax error. json_loadb then reads the body, so what is accepted, the
 * values made and every error message stay jansson's (fuzz_codec checks
 * that both agree on every input). */

typedef struct fast_in {
    const char *p, *end;
} fast_in;

static void fast_blank(fast_in *in)
{
    while (in->p < in->end && (*in->p == ' ' || *in->p == '\t' || *in->p == '\n' || *in->p == '\r'))
        in->p++;
}

static bool fast_at(const fast_in *in, char c)
{
    return in->p < in->end && *in->p == c;
}

static bool fast_word(fast_in *in, const char *word, size_t n)
{
    if ((size_t)(in->end - in->p) < n || memcmp(in->p, word, n) != 0)
        return false;
    in->p += n;
    return true;
}

/* A string at its opening quote, with printable ASCII and no escape. */
static bool fast_str(fast_in *in, const char **s, size_t *n)
{
    for (const char *q = in->p + 1; q < in->end; q++) {
        unsigned char c = (unsigned char)*q;
        if (c == '"') {
            *s = in->p + 1;
            *n = (size_t)(q - *s);
            in->p = q + 1;
            return true;
        }
        if (c == '\\' || c < 0x20 || c > 0x7e)
            return false;
    }
    return false;
}

static json_t *fast_number(fast_in *in)
{
    const char *q = in->p + (*in->p == '-');
    const char *digits = q;
    long long v = 0;
    for (; q < in->end && *q >= '0' && *q <= '9'; q++)
        if (q - digits < 18) /* more digits decline below */
            v = v * 10 + (*q - '0');
    size_t n = (size_t)(q - digits);
    if (n == 0 || n > 18 || (n > 1 && *digits == '0') ||
        (q < in->end && (*q == '.' || *q == 'e' || *q == 'E')))
        return NULL;
    bool negative = *in->p == '-';
    in->p = q;
    return json_integer(negative ? -v : v);
}

/* After a member or an element: 1 past the closing bracket, 0 past a
 * comma, -1 at anything else. */
static int fast_after(fast_in *in, char close)
{
    fast_blank(in);
    if (!fast_at(in, close) && !fast_at(in, ','))
        return -1;
    return *in->p++ == close;
}

static json_t *fast_value(fast_in *in, int depth);

/* An object's members into obj, from its first key to past its '}'. */
static bool fast_members(fast_in *in, json_t *obj, int depth)
{
    for (;;) {
        const char *key;
        size_t n;
        fast_blank(in);
        if (!fast_at(in, '"') || !fast_str(in, &key, &n))
            return false;
        fast_blank(in);
        if (!fast_at(in, ':'))
            return false;
        in->p++;
        json_t *v = fast_value(in, depth);
        if (!v)
            return false;
        if (json_object_getn(obj, key, n)) { /* jansson names the repeated key */
            json_decref(v);
            return false;
        }
        if (json_object_setn_new_nocheck(obj, key, n, v))
            return false;
        int end = fast_after(in, '}');
        if (end != 0)
            return end > 0;
    }
}

/* An array's elements into arr, from its first to past its ']'. */
static bool fast_elements(fast_in *in, json_t *arr, int depth)
{
    for (;;) {
        json_t *v = fast_value(in, depth);
        if (!v || json_array_append_new(arr, v))
            return false;
        int end = fast_after(in, ']');
        if (end != 0)
            return end > 0;
    }
}

/* A value after optional blanks, enclosed by `depth` containers. */
static json_t *fast_value(fast_in *in, int depth)
{
    fast_blank(in);
    if (in->p >= in->end)
        return NULL;
    const char *s;
    size_t n;
    switch (*in->p) {
    case '{':
    case '[': {
        if (depth + 1 > GUILD_CODEC_MAX_DEPTH)
            return NULL;
        bool object = *in->p++ == '{';
        json_t *c = object ? json_object() : json_array();
        fast_blank(in);
        if (fast_at(in, object ? '}' : ']')) {
            in->p++;
            return c;
        }
        if (object ? fast_members(in, c, depth + 1) : fast_elements(in, c, depth + 1))
            return c;
        json_decref(c);
        return NULL;
    }
    case '"':
        return fast_str(in, &s, &n) ? json_stringn_nocheck(s, n) : NULL;
    case 't':
        return fast_word(in, "true", 4) ? json_true() : NULL;
    case 'f':
        return fast_word(in, "false", 5) ? json_false() : NULL;
    case 'n':
        return fast_word(in, "null", 4) ? json_null() : NULL;
    default:
        return *in->p == '-' || (*in->p >= '0' && *in->p <= '9') ? fast_number(in) : NULL;
    }
}

/* An object body read by the fast path, or NULL for json_loadb to read. */
static json_t *json_fast(const char *body, size_t len)
{
    fast_in in = {body, body + len};
    fast_blank(&in);
    if (!fast_at(&in, '{'))
        return NULL;
    json_t *v = fast_value(&in, 0);
    fast_blank(&in);
    if (v && in.p != in.end) {
        json_decref(v);
        v = NULL;
    }
    return v;
}

static guild_status decode_json(const void *body, size_t len, json_t **out, guild_error *err)
{
    if (len == 0)
        return guild_error_set(err, GUILD_INVALID_REQUEST, 0, "body is not valid JSON: empty body");
    json_t *fast = json_fast(body, len);
    if (fast) {
        *out = fast;
        return GUILD_OK;
    }
    json_error_t je;
    json_t *v = json_loadb(body, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!v) {
        /* jansson appends "near '<token>'", which quotes the body: a
         * malformed login body would put part of a password into a reply
         * and a log line. Keep the reason and the position only. */
        char *near = strstr(je.text, " near ");
        if (near)
            *near = '\0';
        if (strstr(je.text, "JSON_ALLOW_NUL")) /* not a name for clients */
            snprintf(je.text, sizeof je.text, "string contains \\u0000");
        return guild_error_set(err, GUILD_INVALID_REQUEST, 0,
                               "body is not valid JSON: %s (line %d, column %d)", je.text, je.line,
                               je.column);
    }
    if (json_too_deep(v, 0)) {
        json_decref(v);
        return guild_error_set(err, GUILD_INVALID_REQUEST, 0,
                               "body is not valid JSON: nested deeper than 32 levels");
    }
    *out = v;
    return GUILD_OK;
}

/* ---- checking without decoding -------------------------------------------------- */

static int key_cmp(const void *a, const void *b)
{
    const msgpack_object_str *x = *(const msgpack_object_str *const *)a,
                             *y = *(const msgpack_object_str *const *)b;
    size_t n = x->size < y->size ? x->size : y->size;
    int c = n ? memcmp(x->ptr, y->ptr, n) : 0;
    return c ? c : (x->size > y->size) - (x->size < y->size);
}

/* True if two keys of m are equal (m's keys are strings). */
static bool has_duplicate_key(const msgpack_object_map *m)
{
    if (m->size < 2)
        return false;
    if (m->size <= 16) {
        for (uint32_t i = 1; i < m->size; i++)
            for (uint32_t j = 0; j < i; j++)
                if (key_cmp(&(const msgpack_object_str *){&m->ptr[i].key.via.str},
                            &(const msgpack_object_str *){&m->ptr[j].key.via.str}) == 0)
                    return true;
        return false;
    }
    const msgpack_object_str **keys = guild_xmalloc(m->size * sizeof *keys);
    for (uint32_t i = 0; i < m->size; i++)
        keys[i] = &m->ptr[i].key.via.str;
    qsort(keys, m->size, sizeof *keys, key_cmp);
    bool dup = false;
    for (uint32_t i = 1; i < m->size && !dup; i++)
        dup = key_cmp(&keys[i - 1], &keys[i]) == 0;
    free(keys);
    return dup;
}

/* mp_to_json's rules, building nothing. */
static bool mp_check(const msgpack_object *o, int depth, const char **why)
{
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
    case MSGPACK_OBJECT_BOOLEAN:
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        return true;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        if (o->via.u64 > INT64_MAX)
            return (*why = "integer larger than 9223372036854775807"), false;
        return true;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        if (!isfinite(o->via.f64))
            return (*why = "number is not finite"), false;
        return true;
    case MSGPACK_OBJECT_STR:
        return (*why = str_problem(&o->via.str)) == NULL;
    case MSGPACK_OBJECT_ARRAY:
    case MSGPACK_OBJECT_MAP:
        if (depth + 1 > GUILD_CODEC_MAX_DEPTH)
            return (*why = "nested deeper than 32 levels"), false;
        if (o->type == MSGPACK_OBJECT_ARRAY) {
            for (uint32_t i = 0; i < o->via.array.size; i++)
                if (!mp_check(&o->via.array.ptr[i], depth + 1, why))
                    return false;
            return true;
        }
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object *k = &o->via.map.ptr[i].key;
            if (k->type != MSGPACK_OBJECT_STR)
                return (*why = "map keys must be strings"), false;
            if ((*why = str_problem(&k->via.str)) != NULL ||
                !mp_check(&o->via.map.ptr[i].val, depth + 1, why))
                return false;
        }
        if (has_duplicate_key(&o->via.map))
            return (*why = "duplicate map key"), false;
        return true;
    case MSGPACK_OBJECT_BIN:
        return (*why = "bin values are not supported"), false;
    case MSGPACK_OBJECT_EXT:
        return (*why = "ext values are not supported"), false;
    }
    return (*why = "unknown msgpack type"), false;
}

/* Unpacks body into z (this thread's zone, which the caller clears) and
 * checks it by guild_codec_decode's rules. */
static guild_status unpack_checked(const void *body, size_t len, msgpack_zone *z,
                                   msgpack_object *obj, guild_error *err)
{
    guild_status st = unpack_body(body, len, z, obj, err);
    const char *why = NULL;
    if (st == GUILD_OK && !mp_check(obj, 0, &why))
        st = guild_error_set(err, GUILD_INVALID_REQUEST, 0, "%s: %s", MP_INVALID, why);
    return st;
}

guild_status guild_codec_check_msgpack(const void *body, size_t len, guild_error *err)
{
    msgpack_zone *z = thread_zone();
    msgpack_object obj;
    guild_status st = unpack_checked(body, len, z, &obj, err);
    if (z)
        msgpack_zone_clear(z);
    return st;
}

guild_status guild_codec_decode(const void *body, size_t len, guild_format fmt, json_t **out,
                                guild_error *err)
{
    if (fmt == GUILD_FMT_JSON)
        return decode_json(body, len, out, err);
    return decode_msgpack(body, len, out, err);
}

/* ---- encoding ------------------------------------------------------------------ */

void guild_buf_put(guild_buf *b, const void *p, size_t n)
{
    if (b->cap - b->len < n + 1) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n + 1)
            cap *= 2;
        b->data = guild_xrealloc(b->data, cap);
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
}

void guild_buf_str(guild_buf *b, const char *s)
{
    guild_buf_put(b, s, strlen(s));
}

void guild_buf_json_str(guild_buf *b, const char *s, size_t n)
{
    /* The bytes with a two-character escape, and the letter of each. */
    static const char shorts[] = "\"\\\b\f\n\r\t", letters[] = "\"\\bfnrt";
    if (n == 0) { /* s may be NULL then (msgpack-c's empty strings) */
        guild_buf_put(b, "\"\"", 2);
        return;
    }
    guild_buf_put(b, "\"", 1);
    const char *run = s, *end = s + n;
    for (; s < end; s++) {
        unsigned char c = (unsigned char)*s;
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        guild_buf_put(b, run, (size_t)(s - run));
        char esc[8] = "\\";
        const char *hit = memchr(shorts, c, sizeof shorts - 1);
        if (hit) {
            esc[1] = letters[hit - shorts];
            guild_buf_put(b, esc, 2);
        } else {
            snprintf(esc, sizeof esc, "\\u%04X", c);
            guild_buf_put(b, esc, 6);
        }
        run = s + 1;
    }
    guild_buf_put(b, run, (size_t)(s - run));
    guild_buf_put(b, "\"", 1);
}

/* A msgpack_packer's writer into a guild_buf. */
static int codec_buf_write(void *data, const char *p, size_t n)
{
    guild_buf_put(data, p, n);
    return 0;
}

static void pack_str(msgpack_packer *pk, const char *s, size_t n)
{
    if (n > UINT32_MAX)
        GUILD_BUG("string of %zu bytes cannot be packed", n);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

void guild_codec_pack(msgpack_packer *pk, const json_t *v)
{
    switch (v ? json_typeof(v) : JSON_NULL) {
    case JSON_OBJECT: {
        if (json_object_size(v) > UINT32_MAX)
            GUILD_BUG("object of %zu keys cannot be packed", json_object_size(v));
        msgpack_pack_map(pk, json_object_size(v));
        /* jansson's iteration takes a non-const object; it does not modify it. */
        json_t *obj = (json_t *)v;
        const char *key;
        size_t key_len;
        json_t *val;
        json_object_keylen_foreach(obj, key, key_len, val)
        {
            pack_str(pk, key, key_len);
            guild_codec_pack(pk, val);
        }
        break;
    }
    case JSON_ARRAY:
        if (json_array_size(v) > UINT32_MAX)
            GUILD_BUG("array of %zu items cannot be packed", json_array_size(v));
        msgpack_pack_array(pk, json_array_size(v));
        for (size_t i = 0; i < json_array_size(v); i++)
            guild_codec_pack(pk, json_array_get(v, i));
        break;
    case JSON_STRING:
        pack_str(pk, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        /* msgpack-c picks the smallest encoding that holds the value. */
        msgpack_pack_int64(pk, json_integer_value(v));
        break;
    case JSON_REAL:
        msgpack_pack_double(pk, json_real_value(v));
        break;
    case JSON_TRUE:
        msgpack_pack_true(pk);
        break;
    case JSON_FALSE:
        msgpack_pack_false(pk);
        break;
    case JSON_NULL:
        msgpack_pack_nil(pk);
        break;
    }
}

static int codec_buf_dump(const char *p, size_t n, void *data)
{
    return codec_buf_write(data, p, n);
}

/* ---- reals in JSON text ------------------------------------------------------ */

/* A document's reals print with 15, 16 or 17 significant digits: the
 * fewest at which every one of them reads back exactly. 17 always does; 15
 * prints any double with a decimal form of 15 digits or fewer as that form
 * ("%.15g" drops trailing zeros). A real that reads back at 15 need not at
 * 16 (some powers of two, 2^149 among them), so each precision is tried on
 * the whole document, 15 first: mostly one snprintf and strtod a real. */
typedef struct reals_walk {
    int digits; /* the precision tried */
    bool seen;  /* the document holds a real */
} reals_walk;

static bool real_reads_back(double d, reals_walk *w)
{
    char buf[40];
    w->seen = true;
    snprintf(buf, sizeof buf, "%.*g", w->digits, d);
    return strtod(buf, NULL) == d;
}

/* Whether every real in the document doc reads back at w->digits. */
typedef bool reads_back_fn(const void *doc, reals_walk *w);

static int reals_digits(reads_back_fn *reads_back, const void *doc)
{
    reals_walk w = {15, false};
    if (reads_back(doc, &w))
        return w.seen ? 15 : 0;
    w.digits = 16;
    return reads_back(doc, &w) ? 16 : 17;
}

static bool tree_reads_back(const void *doc, reals_walk *w)
{
    const json_t *v = doc;
    size_t i;
    const char *key;
    json_t *x;
    switch (json_typeof(v)) {
    case JSON_REAL:
        return real_reads_back(json_real_value(v), w);
    case JSON_ARRAY:
        json_array_foreach(v, i, x)
        {
            if (!tree_reads_back(x, w))
                return false;
        }
        return true;
    case JSON_OBJECT:
        /* jansson's iteration takes a non-const object; it does not modify it. */
        json_object_foreach((json_t *)v, key, x)
        {
            if (!tree_reads_back(x, w))
                return false;
        }
        return true;
    default:
        return true;
    }
}

size_t guild_json_reals(const json_t *v)
{
    int p = v ? reals_digits(tree_reads_back, v) : 0;
    return p ? JSON_REAL_PRECISION(p) : 0;
}

/* One pass into a growing buffer (json_dumpb would need two: one to size). */
static guild_status encode_json(const json_t *v, char **out, size_t *len)
{
    guild_buf b = {NULL, 0, 0};
    if (json_dump_callback(v, codec_buf_dump, &b,
                           JSON_COMPACT | JSON_ENCODE_ANY | guild_json_reals(v)) != 0 ||
        !b.len) {
        free(b.data);
        return GUILD_INTERNAL;
    }
    b.data[b.len] = '\0';
    *out = b.data;
    *len = b.len;
    return GUILD_OK;
}

guild_status guild_codec_encode(const json_t *v, guild_format fmt, char **out, size_t *len)
{
    if (!v)
        return GUILD_INTERNAL;
    if (fmt == GUILD_FMT_JSON)
        return encode_json(v, out, len);

    guild_buf b = {NULL, 0, 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &b, codec_buf_write);
    guild_codec_pack(&pk, v);
    b.data[b.len] = '\0';
    *out = b.data;
    *len = b.len;
    return GUILD_OK;
}

/* ---- msgpack straight to JSON -------------------------------------------------- */

/* A real as jansson dumps it at a precision of `digits`: "%.*g", ".0"
 * added when that reads as an integer, the exponent without '+' or leading
 * zeros. */
static void json_real_text(guild_buf *b, double d, int digits)
{
    char buf[64];
    int n = snprintf(buf, sizeof buf - 2, "%.*g", digits, d);
    if (n < 0 || (size_t)n >= sizeof buf - 2)
        n = 0;
    size_t len = (size_t)n;
    if (!memchr(buf, '.', len) && !memchr(buf, 'e', len)) {
        memcpy(buf + len, ".0", 2);
        len += 2;
    }
    char *e = memchr(buf, 'e', len);
    if (e) {
        char *start = e + 1, *end = e + 2;
        if (*start == '-')
            start++;
        while (end < buf + len && *end == '0')
            end++;
        if (end != start) {
            memmove(start, end, (size_t)(buf + len - end));
            len -= (size_t)(end - start);
        }
    }
    guild_buf_put(b, buf, len);
}

/* tree_reads_back for an unpacked msgpack value. */
static bool mp_reads_back(const void *doc, reals_walk *w)
{
    const msgpack_object *o = doc;
    switch (o->type) {
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        return real_reads_back(o->via.f64, w);
    case MSGPACK_OBJECT_ARRAY:
        for (uint32_t i = 0; i < o->via.array.size; i++)
            if (!mp_reads_back(&o->via.array.ptr[i], w))
                return false;
        return true;
    case MSGPACK_OBJECT_MAP:
        for (uint32_t i = 0; i < o->via.map.size; i++)
            if (!mp_reads_back(&o->via.map.ptr[i].val, w))
                return false;
        return true;
    default:
        return true;
    }
}

/* Writes o, which mp_check accepted, as jansson would dump mp_to_json(o)
 * with the precision `digits` (the whole document's, reals_digits). */
static void mp_emit_json(const msgpack_object *o, guild_buf *b, int digits)
{
    char num[GUILD_U64_DEC_MAX + 1];
    switch (o->type) {
    case MSGPACK_OBJECT_NIL:
        guild_buf_put(b, "null", 4);
        return;
    case MSGPACK_OBJECT_BOOLEAN:
        guild_buf_str(b, o->via.boolean ? "true" : "false");
        return;
    case MSGPACK_OBJECT_POSITIVE_INTEGER:
        guild_buf_put(b, num, guild_u64_dec(num, o->via.u64));
        return;
    case MSGPACK_OBJECT_NEGATIVE_INTEGER:
        num[0] = '-';
        guild_buf_put(b, num, 1 + guild_u64_dec(num + 1, 0 - (uint64_t)o->via.i64));
        return;
    case MSGPACK_OBJECT_FLOAT32:
    case MSGPACK_OBJECT_FLOAT64:
        json_real_text(b, o->via.f64, digits);
        return;
    case MSGPACK_OBJECT_STR:
        guild_buf_json_str(b, o->via.str.ptr, o->via.str.size);
        return;
    case MSGPACK_OBJECT_ARRAY:
        guild_buf_put(b, "[", 1);
        for (uint32_t i = 0; i < o->via.array.size; i++) {
            if (i)
                guild_buf_put(b, ",", 1);
            mp_emit_json(&o->via.array.ptr[i], b, digits);
        }
        guild_buf_put(b, "]", 1);
        return;
    case MSGPACK_OBJECT_MAP:
        guild_buf_put(b, "{", 1);
        for (uint32_t i = 0; i < o->via.map.size; i++) {
            const msgpack_object_str *k = &o->via.map.ptr[i].key.via.str;
            if (i)
                guild_buf_put(b, ",", 1);
            guild_buf_json_str(b, k->ptr, k->size);
            guild_buf_put(b, ":", 1);
            mp_emit_json(&o->via.map.ptr[i].val, b, digits);
        }
        guild_buf_put(b, "}", 1);
        return;
    case MSGPACK_OBJECT_BIN:
    case MSGPACK_OBJECT_EXT:
        break; /* mp_check refuses them */
    }
}

guild_status guild_codec_json_from_msgpack(const void *body, size_t len, guild_buf *out,
                                           guild_error *err)
{
    msgpack_zone *z = thread_zone();
    msgpack_object obj;
    guild_status st = unpack_checked(body, len, z, &obj, err);
    if (st == GUILD_OK)
        mp_emit_json(&obj, out, reals_digits(mp_reads_back, &obj));
    if (z)
        msgpack_zone_clear(z);
    return st;
}
