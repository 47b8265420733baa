/* es_util.c — helpers for event store tests. */
#include "tests/support/es_util.h"

#include "tests/support/check_util.h"
#include "tests/support/mpmap.h"

#include <errno.h>
#include <stdarg.h>
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

uint64_t tst_checkpoint_position(es_store *st)
{
    void *v = NULL;
    size_t len = 0;
    if (es_meta_get(st, "es.checkpoint", &v, &len) != GUILD_OK)
        return 0;
    uint64_t pos = 0;
    for (size_t i = 0; i < 8 && i < len; i++)
        pos = pos << 8 | ((const uint8_t *)v)[i];
    free(v);
    return pos;
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

#define TST_MAX_STREAMS 128

/* Each stream's last version seen while walking the log. */
typedef struct stream_count {
    char name[TST_MAX_STREAMS][ES_STREAM_MAX + 1];
    uint64_t version[TST_MAX_STREAMS];
    size_t n;
} stream_count;

static uint64_t *stream_slot(stream_count *sc, es_str stream)
{
    for (size_t i = 0; i < sc->n; i++)
        if (tst_str_eq(stream, sc->name[i]))
            return &sc->version[i];
    ck_assert_uint_lt(sc->n, TST_MAX_STREAMS);
    tst_str_copy(stream, sc->name[sc->n], sizeof sc->name[sc->n]);
    sc->version[sc->n] = 0;
    return &sc->version[sc->n++];
}

void tst_assert_log_gapless(es_store *st, tst_recs *recs, uint64_t total)
{
    ck_assert_status(tst_read_whole_log(st, recs), GUILD_OK);
    ck_assert(!recs->bad);
    ck_assert_uint_eq(recs->n, total);
    stream_count *sc = calloc(1, sizeof *sc);
    ck_assert_ptr_nonnull(sc);
    for (size_t i = 0; i < recs->n; i++) {
        const es_record *rec = &recs->v[i].rec;
        ck_assert_uint_eq(rec->position, i + 1);
        uint64_t *v = stream_slot(sc, rec->stream);
        ck_assert_uint_eq(rec->version, ++*v);
    }
    for (size_t i = 0; i < sc->n; i++) {
        uint64_t head = 0;
        ck_assert_status(es_stream_head(st, sc->name[i], &head, NULL), GUILD_OK);
        ck_assert_uint_eq(head, sc->version[i]);
    }
    free(sc);
}

void tst_assert_result_in_log(const tst_recs *recs, const es_result *r)
{
    ck_assert_status(r->status, GUILD_OK);
    ck_assert_uint_gt(r->n_events, 0);
    ck_assert_uint_eq(r->last_position - r->first_position + 1, r->n_events);
    for (uint32_t k = 0; k < r->n_events; k++) {
        uint64_t pos = r->first_position + k;
        ck_assert_uint_le(pos, recs->n);
        const es_record *rec = &recs->v[pos - 1].rec;
        ck_assert(tst_str_eq(rec->id, r->event_ids[k]));
        ck_assert(tst_str_eq(rec->stream, r->stream));
        ck_assert_uint_eq(rec->version, r->version - r->n_events + 1 + k);
    }
}

void tst_assert_verifies(es_store *st, uint64_t total)
{
    es_verify_report rep;
    ck_assert_status(es_verify(st, &rep, NULL, NULL), GUILD_OK);
    ck_assert_msg(rep.intact, "broken at %llu: %s", (unsigned long long)rep.break_position,
                  rep.what);
    ck_assert_uint_eq(rep.checked, total);
    ck_assert_uint_eq(rep.last_position, total);
}

/* Every record of type "counted" carries n equal to its version. */
static void assert_counted_records_saw_their_stream(const tst_recs *recs)
{
    for (size_t i = 0; i < recs->n; i++) {
        const es_record *rec = &recs->v[i].rec;
        if (!tst_str_eq(rec->type, "counted"))
            continue;
        int64_t n = 0;
        ck_assert(tst_map_get_int(rec->data, rec->data_len, "n", &n));
        ck_assert_msg((uint64_t)n == rec->version, "version %llu was decided on version %lld",
                      (unsigned long long)rec->version, (long long)n - 1);
    }
}

void tst_assert_log_holds(es_store *st, uint64_t total, const es_result *const *results, size_t n)
{
    tst_recs recs;
    tst_recs_init(&recs);
    tst_assert_log_gapless(st, &recs, total);
    for (size_t i = 0; i < n; i++)
        tst_assert_result_in_log(&recs, results[i]);
    assert_counted_records_saw_their_stream(&recs);
    tst_recs_release(&recs);
}

guild_status tst_counter_decide(void *ctx, es_wctx *w)
{
    (void)ctx;
    tst_map m;
    tst_map_init(&m, 1);
    tst_map_int(&m, "n", (int64_t)es_wctx_version(w) + 1);
    es_wctx_emit(w, "counted", 1, tst_map_data(&m), tst_map_len(&m));
    tst_map_release(&m);
    return GUILD_OK;
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

static void *closer_run(void *arg)
{
    tst_closer *c = arg;
    es_store_close(c->st);
    tst_latch_count_down(&c->done);
    return NULL;
}

void tst_closer_start(tst_closer *c, es_store *st)
{
    c->st = st;
    tst_latch_init(&c->done, 1);
    ck_assert_int_eq(pthread_create(&c->th, NULL, closer_run, c), 0);
}

void tst_closer_join(tst_closer *c)
{
    pthread_join(c->th, NULL);
    tst_latch_destroy(&c->done);
}

void tst_spin_ns(long ns)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000000L + (t.tv_nsec - t0.tv_nsec) < ns);
}

bool tst_gate_pass(tst_gate *g)
{
    atomic_store(&g->entered, true);
    for (int i = 0; i < 200000 && !atomic_load(&g->open); i++) {
        struct timespec ts = {0, 100000};
        nanosleep(&ts, NULL);
    }
    return atomic_load(&g->open);
}

guild_status tst_gate_decide(void *ctx, es_wctx *w)
{
    ((tst_gate *)ctx)->decided_on = pthread_self();
    if (!tst_gate_pass(ctx))
        return es_wctx_fail(w, GUILD_INTERNAL, "gate", "the gate never opened");
    es_wctx_emit(w, "gated", 1, NULL, 0);
    return GUILD_OK;
}

void tst_jitter(unsigned *seed, int max_us)
{
    int us = (int)(rand_r(seed) % (unsigned)(max_us * 3 / 2 + 1)) - max_us / 2;
    if (us > 0) {
        struct timespec ts = {0, us * 1000L};
        nanosleep(&ts, NULL);
    }
}

void tst_tick_wait(unsigned *seed, long period_us, int jitter_us)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    long long p = period_us * 1000LL;
    long long ns = ((long long)now.tv_sec * 1000000000LL + now.tv_nsec) / p * p + p +
                   (long long)(rand_r(seed) % (unsigned)(jitter_us + 1)) * 1000LL;
    struct timespec until = {(time_t)(ns / 1000000000LL), (long)(ns % 1000000000LL)};
    clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &until, NULL);
}

void tst_violations_init(tst_violations *v)
{
    memset(v, 0, sizeof *v);
    atomic_init(&v->n, 0);
    pthread_mutex_init(&v->mu, NULL);
}

void tst_violation(tst_violations *v, const char *fmt, ...)
{
    if (atomic_fetch_add(&v->n, 1) == 0) {
        va_list ap;
        va_start(ap, fmt);
        pthread_mutex_lock(&v->mu);
        vsnprintf(v->first, sizeof v->first, fmt, ap);
        pthread_mutex_unlock(&v->mu);
        va_end(ap);
    }
}

void tst_assert_no_violations(tst_violations *v)
{
    ck_assert_msg(atomic_load(&v->n) == 0, "%u violations, first: %s", atomic_load(&v->n),
                  v->first);
}
