/* es_util.c — helpers for event store tests. */
#include "tests/support/es_util.h"

#include "tests/support/check_util.h"
#include "tests/support/mpmap.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void tst_recs_init(tst_recs *r)
{
    memset(r, 0, sizeof *r);
}

int tst_recs_collect(void *ctx, const es_record *rec)
{
    tst_recs *r = ctx;
    if (r->n == r->cap) {
        r->cap = r->cap ? 2 * r->cap : 64;
        r->v = realloc(r->v, r->cap * sizeof *r->v);
        if (!r->v)
            abort();
    }
    tst_rec *e = &r->v[r->n++];
    e->len = rec->raw_len;
    e->raw = malloc(rec->raw_len ? rec->raw_len : 1);
    if (!e->raw)
        abort();
    memcpy(e->raw, rec->raw, rec->raw_len);
    if (es_record_decode(e->raw, e->len, &e->rec) != GUILD_OK) {
        r->bad = true;
        memset(&e->rec, 0, sizeof e->rec);
    }
    return r->stop_after && r->n >= r->stop_after ? 1 : 0;
}

void tst_recs_clear(tst_recs *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].raw);
    r->n = 0;
    r->bad = false;
}

void tst_recs_release(tst_recs *r)
{
    tst_recs_clear(r);
    free(r->v);
    memset(r, 0, sizeof *r);
}

guild_status tst_read_whole_log(es_store *st, tst_recs *r)
{
    tst_recs_clear(r);
    uint64_t from = 1;
    for (;;) {
        size_t before = r->n;
        uint64_t next = 0;
        guild_status s = es_read_log(st, from, 1000, tst_recs_collect, r, &next);
        if (s != GUILD_OK)
            return s;
        if (r->n == before || next <= from)
            return GUILD_OK;
        from = next;
    }
}

guild_status tst_read_whole_stream(es_store *st, const char *stream, tst_recs *r)
{
    tst_recs_clear(r);
    uint64_t from = 1;
    for (;;) {
        size_t before = r->n;
        uint64_t next = 0;
        guild_status s = es_read_stream(st, stream, from, 1000, tst_recs_collect, r, &next);
        if (s != GUILD_OK)
            return s;
        if (r->n == before || next <= from)
            return GUILD_OK;
        from = next;
    }
}

bool tst_str_eq(es_str s, const char *z)
{
    size_t n = strlen(z);
    return s.n == n && (n == 0 || memcmp(s.p, z, n) == 0);
}

char *tst_str_copy(es_str s, char *buf, size_t size)
{
    size_t n = s.n < size - 1 ? s.n : size - 1;
    if (n)
        memcpy(buf, s.p, n);
    buf[n] = '\0';
    return buf;
}

int tst_streams_collect(void *ctx, const char *stream, uint64_t version)
{
    tst_streams *l = ctx;
    if (l->n < 32) {
        snprintf(l->names[l->n], sizeof l->names[l->n], "%s", stream);
        l->versions[l->n] = version;
    }
    l->n++;
    return 0;
}

guild_status tst_store_open(const char *dir, const char *domain, size_t map_size, es_store **out)
{
    es_options opt = {.domain = domain, .map_size = map_size};
    guild_error err;
    guild_status s = es_store_open(dir, &opt, out, &err);
    if (s != GUILD_OK)
        fprintf(stderr, "es_store_open %s: %s %s\n", dir, guild_status_code(s), err.message);
    return s;
}

guild_status tst_store_open_ro(const char *dir, es_store **out)
{
    es_options opt = {.read_only = true};
    guild_error err;
    guild_status s = es_store_open(dir, &opt, out, &err);
    if (s != GUILD_OK)
        fprintf(stderr, "es_store_open ro %s: %s %s\n", dir, guild_status_code(s), err.message);
    return s;
}

void tst_events_fill(es_event_in *ev, tst_map *maps, size_t n)
{
    for (size_t k = 0; k < n; k++) {
        tst_map_init(&maps[k], 1);
        tst_map_int(&maps[k], "i", (int64_t)k);
        ev[k] = (es_event_in){.type = "thing_happened",
                              .schema = 1,
                              .data = tst_map_data(&maps[k]),
                              .data_len = tst_map_len(&maps[k])};
    }
}

void tst_events_release(tst_map *maps, size_t n)
{
    for (size_t k = 0; k < n; k++)
        tst_map_release(&maps[k]);
}

guild_status tst_append(es_store *st, const char *stream, uint64_t expected, const char *command_id,
                        size_t n, es_result *out)
{
    es_event_in *ev = calloc(n ? n : 1, sizeof *ev);
    tst_map *maps = calloc(n ? n : 1, sizeof *maps);
    if (!ev || !maps)
        abort();
    tst_events_fill(ev, maps, n);
    es_append req = {.stream = stream,
                     .expected_version = expected,
                     .prov = {.command_id = command_id},
                     .events = ev,
                     .n_events = n};
    guild_status s = es_append_wait(st, &req, out);
    tst_events_release(maps, n);
    free(maps);
    free(ev);
    return s;
}

guild_status tst_append_quiet(es_store *st, const char *stream, uint64_t expected, size_t n)
{
    es_result r;
    guild_status s = tst_append(st, stream, expected, NULL, n, &r);
    es_result_release(&r);
    return s;
}

uint64_t tst_log_position(es_store *st)
{
    uint64_t pos = 0;
    uint8_t hash[ES_HASH_LEN];
    if (es_log_head(st, &pos, hash) != GUILD_OK)
        return UINT64_MAX;
    return pos;
}

uint64_t tst_stream_version(es_store *st, const char *stream)
{
    uint64_t v = 0;
    guild_status s = es_stream_head(st, stream, &v, NULL);
    if (s == GUILD_NOT_FOUND)
        return 0;
    ck_assert_status(s, GUILD_OK);
    return v;
}

void tst_assert_same_result(const es_result *a, const es_result *b)
{
    ck_assert_str_eq(a->stream, b->stream);
    ck_assert_uint_eq(a->version, b->version);
    ck_assert_uint_eq(a->first_position, b->first_position);
    ck_assert_uint_eq(a->last_position, b->last_position);
    ck_assert_uint_eq(a->n_events, b->n_events);
    for (uint32_t i = 0; i < a->n_events; i++)
        ck_assert_str_eq(a->event_ids[i], b->event_ids[i]);
    ck_assert_uint_eq(a->reply_len, b->reply_len);
    if (a->reply_len)
        ck_assert_mem_eq(a->reply, b->reply, a->reply_len);
}

void tst_latch_init(tst_latch *l, size_t count)
{
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    l->left = count;
}

void tst_latch_count_down(tst_latch *l)
{
    pthread_mutex_lock(&l->mu);
    if (l->left > 0 && --l->left == 0)
        pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

bool tst_latch_wait(tst_latch *l, unsigned timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&l->mu);
    int rc = 0;
    while (l->left > 0 && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&l->cv, &l->mu, &until);
    bool done = l->left == 0;
    pthread_mutex_unlock(&l->mu);
    return done;
}

void tst_latch_destroy(tst_latch *l)
{
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
}

void tst_slot_done(void *ctx, es_result *res)
{
    tst_slot *slot = ctx;
    /* The result's contents are ours; the struct itself stays the writer's. */
    slot->res = *res;
    memset(res, 0, sizeof *res);
    slot->calls++;
    if (slot->latch)
        tst_latch_count_down(slot->latch);
}
