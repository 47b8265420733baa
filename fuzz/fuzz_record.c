/*
 * fuzz_record.c — bytes read from a store's log as an event record: what
 * `guild events verify`, replay and the relay do with a damaged or
 * hand-made store.
 *
 * Checked on every input: decoding either refuses or gives fields that
 * all lie inside the bytes; the hash check and rebasing onto a copy run
 * on any record decoding gave; and a decoded record, encoded again from its
 * fields, decodes to the same fields.
 */
#include "fuzz/fuzz.h"
#include "eventstore/record.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void inside(const void *p, size_t n, const uint8_t *base, size_t size)
{
    const uint8_t *b = p;
    must(n == 0 || (b >= base && b + n <= base + size));
}

/* A NUL-terminated copy of s, or NULL if s holds a NUL (the encoder takes
 * C strings). */
static char *cstr(es_str s)
{
    if (s.n == 0)
        return strdup("");
    if (memchr(s.p, 0, s.n))
        return NULL;
    char *c = malloc(s.n + 1u);
    must(c != NULL);
    memcpy(c, s.p, s.n);
    c[s.n] = 0;
    return c;
}

static int same(es_str a, es_str b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

static void reencode(const es_record *r)
{
    es_str f[8] = {r->id,         r->type,           r->domain,       r->stream,
                   r->command_id, r->correlation_id, r->causation_id, r->actor};
    char *c[8];
    int ok = 1;
    for (int i = 0; i < 8; i++)
        ok &= (c[i] = cstr(f[i])) != NULL;
    if (ok) {
        es_record_in in = {.id = c[0],
                           .type = c[1],
                           .domain = c[2],
                           .stream = c[3],
                           .command_id = c[4],
                           .correlation_id = c[5],
                           .causation_id = c[6],
                           .actor = c[7],
                           .schema = r->schema,
                           .version = r->version,
                           .position = r->position,
                           .time = r->time,
                           .data = r->data,
                           .data_len = r->data_len,
                           .prev = r->prev};
        msgpack_sbuffer buf;
        msgpack_sbuffer_init(&buf);
        uint8_t hash[ES_HASH_LEN];
        es_record_encode(&buf, &in, hash);
        es_record back;
        must(es_record_decode(buf.data, buf.size, &back) == GUILD_OK);
        es_str g[8] = {back.id,         back.type,           back.domain,       back.stream,
                       back.command_id, back.correlation_id, back.causation_id, back.actor};
        for (int i = 0; i < 8; i++)
            must(same(f[i], g[i]));
        must(back.schema == r->schema && back.version == r->version &&
             back.position == r->position && back.time == r->time);
        must(back.data_len == r->data_len &&
             (r->data_len == 0 || memcmp(back.data, r->data, r->data_len) == 0));
        must(memcmp(back.prev, r->prev, ES_HASH_LEN) == 0);
        must(memcmp(back.hash, hash, ES_HASH_LEN) == 0 && es_record_hash_ok(&back));
        msgpack_sbuffer_destroy(&buf);
    }
    for (int i = 0; i < 8; i++)
        free(c[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    es_record r;
    if (es_record_decode(data, size, &r) != GUILD_OK)
        return 0;
    must(r.raw == data && r.raw_len <= size);
    es_str s[8] = {r.id,         r.type,           r.domain,       r.stream,
                   r.command_id, r.correlation_id, r.causation_id, r.actor};
    for (int i = 0; i < 8; i++)
        inside(s[i].p, s[i].n, data, size);
    inside(r.data, r.data_len, data, size);
    inside(r.prev, ES_HASH_LEN, data, size);
    inside(r.hash, ES_HASH_LEN, data, size);
    (void)es_record_hash_ok(&r);

    uint8_t *copy = malloc(r.raw_len ? r.raw_len : 1);
    must(copy != NULL);
    memcpy(copy, r.raw, r.raw_len);
    es_record moved = r;
    es_record_rebase(&moved, copy);
    must(moved.id.p == (const char *)copy + (r.id.p - (const char *)data));
    must(moved.data == copy + (r.data - data));
    free(copy);

    reencode(&r);
    return 0;
}
