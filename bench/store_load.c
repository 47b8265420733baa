/*
 * store_load.c — the phases of `guild bench store`: load on the event store
 * from threads, measured into a bench_result.
 *
 * Map
 *   - requests: the append every phase sends (one ~100-byte event)
 *   - appenders: threads blocking in es_append_wait
 *   - submitters: threads keeping a window of es_append_submit in flight,
 *     also used to prefill the store
 *   - reads: the log, one long stream, whole random streams
 *
 * A phase counts an operation only when it succeeded; failures are counted
 * apart and the first one is kept for the report.
 */
#include "bench.h"

#include "common/alloc.h"
#include "common/clock.h"
#include "common/uuid.h"

#include <pthread.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- requests ------------------------------------------------------------ */

/* xorshift64*: cheap, per thread, good enough to pick streams. */
static uint64_t rng_next(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1DULL;
}

static uint64_t rng_seed(unsigned thread)
{
    uint64_t s = guild_mono_ns() ^ ((uint64_t)(thread + 1) * 0x9E3779B97F4A7C15ULL);
    return s != 0 ? s : 1;
}

/* The per-thread parts of an append: its event and its command id. */
typedef struct request {
    es_event_in ev;
    es_append req;
    char command_id[GUILD_UUID_STRLEN + 1];
    unsigned thread;
} request;

static void request_init(request *r, const bench_workload *wl, unsigned thread)
{
    memset(r, 0, sizeof *r);
    r->ev.type = BENCH_TYPE;
    r->ev.schema = 1;
    r->ev.data = wl->data;
    r->ev.data_len = wl->data_len;
    r->req.expected_version = ES_ANY_VERSION;
    r->req.events = &r->ev;
    r->req.n_events = 1;
    r->thread = thread;
}

/* Points r->req at `stream` and, when the workload asks, a fresh command id. */
static const es_append *request_next(request *r, const bench_workload *wl, const char *stream)
{
    r->req.stream = stream;
    if (wl->random_ids) {
        uint8_t b[16];
        randombytes_buf(b, sizeof b); /* as a client with random ids: no two near */
        sodium_bin2hex(r->command_id, sizeof r->command_id, b, sizeof b);
        r->req.prov.command_id = r->command_id;
    } else if (wl->command_ids) {
        guild_uuid7(r->command_id); /* as clients do (CONTRACT.md): unique per process */
        r->req.prov.command_id = r->command_id;
    }
    return &r->req;
}

static const char *random_stream(const bench_workload *wl, uint64_t *rng)
{
    return wl->streams[rng_next(rng) % wl->n_streams];
}

/* Every append carries a fresh command id or none, so a duplicate reply
 * means nothing was written: it is counted as a failure, not as an event. */
static bool append_ok(const es_result *res)
{
    return res->status == GUILD_OK && !res->duplicate;
}

static void note_failure(bench_result *r, pthread_mutex_t *mu, const es_result *res)
{
    if (mu != NULL)
        pthread_mutex_lock(mu);
    r->errors++;
    if (res->status == GUILD_OK)
        bench_result_error(r, "duplicate reply for a new command id (stream %s)", res->stream);
    else
        bench_result_error(r, "%s: %s", guild_status_code(res->status), res->error.message);
    if (mu != NULL)
        pthread_mutex_unlock(mu);
}

/* ---- appenders: es_append_wait ------------------------------------------- */

typedef struct appender_run {
    const bench_workload *wl;
    atomic_bool stop;
    pthread_barrier_t start;
    pthread_mutex_t mu; /* guards out's error fields */
    bench_result *out;
} appender_run;

typedef struct appender {
    pthread_t thread;
    appender_run *run;
    unsigned index;
    uint64_t ops;
    bench_hist lat;
} appender;

static void *appender_main(void *arg)
{
    appender *a = arg;
    appender_run *run = a->run;
    request r;
    request_init(&r, run->wl, a->index);
    uint64_t rng = rng_seed(a->index);
    pthread_barrier_wait(&run->start);
    while (!atomic_load_explicit(&run->stop, memory_order_relaxed)) {
        const es_append *req = request_next(&r, run->wl, random_stream(run->wl, &rng));
        es_result res;
        uint64_t t0 = guild_mono_ns();
        guild_status s = es_append_wait(run->wl->st, req, &res);
        uint64_t t1 = guild_mono_ns();
        if (append_ok(&res)) {
            a->ops++;
            bench_hist_record(&a->lat, t1 - t0);
        } else {
            note_failure(run->out, &run->mu, &res);
            if (s == GUILD_CLOSED || s == GUILD_IO)
                atomic_store(&run->stop, true);
        }
        es_result_release(&res);
    }
    return NULL;
}

void bench_store_appenders(const bench_workload *wl, unsigned threads, double seconds,
                           bench_result *out)
{
    appender_run run = {.wl = wl, .out = out};
    atomic_init(&run.stop, false);
    pthread_barrier_init(&run.start, NULL, threads + 1);
    pthread_mutex_init(&run.mu, NULL);
    appender *as = guild_xcalloc(threads, sizeof *as);
    for (unsigned i = 0; i < threads; i++) {
        as[i].run = &run;
        as[i].index = i;
        bench_hist_init(&as[i].lat);
        if (pthread_create(&as[i].thread, NULL, appender_main, &as[i]) != 0)
            GUILD_BUG("pthread_create failed");
    }
    pthread_barrier_wait(&run.start);
    double cpu0 = bench_cpu_seconds();
    uint64_t start = guild_mono_ns();
    bench_sleep(seconds);
    atomic_store(&run.stop, true);
    for (unsigned i = 0; i < threads; i++) {
        pthread_join(as[i].thread, NULL);
        out->ops += as[i].ops;
        bench_hist_merge(&out->lat, &as[i].lat);
        bench_hist_release(&as[i].lat);
    }
    out->seconds += (double)(guild_mono_ns() - start) / 1e9;
    out->cpu_seconds += bench_cpu_seconds() - cpu0;
    out->units = out->ops;
    free(as);
    pthread_mutex_destroy(&run.mu);
    pthread_barrier_destroy(&run.start);
}

/* ---- submitters: es_append_submit ---------------------------------------- */

typedef struct submit_plan {
    unsigned window;    /* appends in flight per thread */
    uint64_t limit;     /* appends per thread; 0 = until stopped */
    const char *stream; /* every append to this stream, or NULL */
    bool sequential;    /* wl->streams in order instead of at random */
    unsigned events;    /* per append */
} submit_plan;

typedef struct submitter submitter;

/* One append in flight: the done callback's context. */
typedef struct slot {
    submitter *owner;
    uint64_t t0;
} slot;

struct submitter {
    pthread_t thread;
    const bench_workload *wl;
    const submit_plan *plan;
    atomic_bool *stop;
    pthread_barrier_t *start;
    unsigned index;
    pthread_mutex_t mu; /* guards everything below: done runs on the writer thread */
    pthread_cond_t cv;
    slot *slots;
    slot **free_slots;
    unsigned n_free;
    uint64_t ops, events;
    bench_hist lat;
    bench_result errs; /* errors and first_error only */
};

static void submit_done(void *ctx, es_result *res)
{
    slot *sl = ctx;
    submitter *sub = sl->owner;
    uint64_t t1 = guild_mono_ns();
    pthread_mutex_lock(&sub->mu);
    if (append_ok(res)) {
        sub->ops++;
        sub->events += res->n_events;
        bench_hist_record(&sub->lat, t1 - sl->t0);
    } else {
        note_failure(&sub->errs, NULL, res);
    }
    sub->free_slots[sub->n_free++] = sl;
    if (sub->n_free == 1 || sub->n_free == sub->plan->window)
        pthread_cond_signal(&sub->cv);
    pthread_mutex_unlock(&sub->mu);
    es_result_release(res);
}

static slot *submitter_take_slot(submitter *sub)
{
    pthread_mutex_lock(&sub->mu);
    while (sub->n_free == 0)
        pthread_cond_wait(&sub->cv, &sub->mu);
    slot *sl = sub->free_slots[--sub->n_free];
    pthread_mutex_unlock(&sub->mu);
    return sl;
}

static void *submitter_main(void *arg)
{
    submitter *sub = arg;
    const submit_plan *plan = sub->plan;
    es_event_in *evs = guild_xcalloc(plan->events, sizeof *evs);
    request r;
    request_init(&r, sub->wl, 1000 + sub->index);
    for (unsigned i = 0; i < plan->events; i++)
        evs[i] = r.ev;
    r.req.events = evs;
    r.req.n_events = plan->events;
    uint64_t rng = rng_seed(1000 + sub->index);

    if (sub->start != NULL)
        pthread_barrier_wait(sub->start);
    for (uint64_t n = 0; plan->limit == 0 || n < plan->limit; n++) {
        if (sub->stop != NULL && atomic_load_explicit(sub->stop, memory_order_relaxed))
            break;
        const char *stream = plan->stream != NULL ? plan->stream
                             : plan->sequential   ? sub->wl->streams[n % sub->wl->n_streams]
                                                  : random_stream(sub->wl, &rng);
        const es_append *req = request_next(&r, sub->wl, stream);
        slot *sl = submitter_take_slot(sub);
        sl->t0 = guild_mono_ns();
        guild_status s = es_append_submit(sub->wl->st, req, submit_done, sl);
        if (s != GUILD_OK) {
            pthread_mutex_lock(&sub->mu);
            sub->free_slots[sub->n_free++] = sl;
            sub->errs.errors++;
            bench_result_error(&sub->errs, "es_append_submit: %s", guild_status_code(s));
            pthread_mutex_unlock(&sub->mu);
            break;
        }
    }
    /* drain: the phase ends when every submitted append is durable */
    pthread_mutex_lock(&sub->mu);
    while (sub->n_free < plan->window)
        pthread_cond_wait(&sub->cv, &sub->mu);
    pthread_mutex_unlock(&sub->mu);
    free(evs);
    return NULL;
}

static void submitters_run(const bench_workload *wl, const submit_plan *plan, unsigned threads,
                           double seconds, bench_result *out)
{
    atomic_bool stop;
    atomic_init(&stop, false);
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, threads + 1);
    submitter *subs = guild_xcalloc(threads, sizeof *subs);
    for (unsigned i = 0; i < threads; i++) {
        submitter *sub = &subs[i];
        sub->wl = wl;
        sub->plan = plan;
        sub->stop = plan->limit == 0 ? &stop : NULL;
        sub->start = &start;
        sub->index = i;
        pthread_mutex_init(&sub->mu, NULL);
        pthread_cond_init(&sub->cv, NULL);
        sub->slots = guild_xcalloc(plan->window, sizeof *sub->slots);
        sub->free_slots = guild_xcalloc(plan->window, sizeof *sub->free_slots);
        for (unsigned k = 0; k < plan->window; k++) {
            sub->slots[k].owner = sub;
            sub->free_slots[k] = &sub->slots[k];
        }
        sub->n_free = plan->window;
        bench_hist_init(&sub->lat);
        bench_result_init(&sub->errs);
        if (pthread_create(&sub->thread, NULL, submitter_main, sub) != 0)
            GUILD_BUG("pthread_create failed");
    }
    pthread_barrier_wait(&start);
    double cpu0 = bench_cpu_seconds();
    uint64_t t0 = guild_mono_ns();
    if (plan->limit == 0) {
        bench_sleep(seconds);
        atomic_store(&stop, true);
    }
    for (unsigned i = 0; i < threads; i++) {
        submitter *sub = &subs[i];
        pthread_join(sub->thread, NULL);
        out->ops += sub->events;
        out->units += sub->ops;
        out->errors += sub->errs.errors;
        if (sub->errs.first_error[0] != '\0')
            bench_result_error(out, "%s", sub->errs.first_error);
        bench_hist_merge(&out->lat, &sub->lat);
        bench_hist_release(&sub->lat);
        bench_result_release(&sub->errs);
        free(sub->slots);
        free(sub->free_slots);
        pthread_cond_destroy(&sub->cv);
        pthread_mutex_destroy(&sub->mu);
    }
    out->seconds += (double)(guild_mono_ns() - t0) / 1e9;
    out->cpu_seconds += bench_cpu_seconds() - cpu0;
    free(subs);
    pthread_barrier_destroy(&start);
}

void bench_store_submitters(const bench_workload *wl, unsigned threads, unsigned window,
                            double seconds, bench_result *out)
{
    submit_plan plan = {.window = window, .events = 1};
    submitters_run(wl, &plan, threads, seconds, out);
}

void bench_store_prefill(const bench_workload *wl, unsigned long_events, bench_result *out)
{
    submit_plan each = {.window = 1024, .limit = wl->n_streams, .sequential = true, .events = 1};
    submitters_run(wl, &each, 1, 0, out);
    if (long_events == 0)
        return;
    bench_result more;
    bench_result_init(&more);
    submit_plan lng = {
        .window = 64, .limit = (long_events + 99) / 100, .stream = wl->long_stream, .events = 100};
    submitters_run(wl, &lng, 1, 0, &more);
    out->ops += more.ops;
    out->units += more.units;
    out->errors += more.errors;
    if (more.first_error[0] != '\0')
        bench_result_error(out, "%s", more.first_error);
    out->seconds += more.seconds;
    out->cpu_seconds += more.cpu_seconds;
    bench_result_release(&more);
}

/* ---- reads --------------------------------------------------------------- */

typedef struct read_count {
    uint64_t n;
    uint64_t bytes;
} read_count;

/* Touches what a projector would: the type and the data. */
static int count_record(void *ctx, const es_record *rec)
{
    read_count *c = ctx;
    c->n++;
    c->bytes += rec->data_len + rec->type.n;
    return 0;
}

/* One pass over the log or over one stream; returns events read, or -1. */
static int64_t read_pass(const bench_workload *wl, const char *stream, size_t batch,
                         bench_result *out)
{
    read_count c = {0, 0};
    uint64_t from = 1;
    for (;;) {
        uint64_t before = c.n, next = from;
        guild_status s = stream != NULL
                             ? es_read_stream(wl->st, stream, from, batch, count_record, &c, &next)
                             : es_read_log(wl->st, from, batch, count_record, &c, &next);
        if (s != GUILD_OK) {
            out->errors++;
            bench_result_error(out, "%s from %llu: %s", stream ? "es_read_stream" : "es_read_log",
                               (unsigned long long)from, guild_status_code(s));
            return -1;
        }
        if (c.n == before || next <= from)
            break;
        from = next;
    }
    return (int64_t)c.n;
}

static void read_passes(const bench_workload *wl, const char *stream, size_t batch, double seconds,
                        bench_result *out)
{
    double cpu0 = bench_cpu_seconds();
    uint64_t start = guild_mono_ns(), now = start;
    uint64_t deadline = start + (uint64_t)(seconds * 1e9);
    do {
        int64_t n = read_pass(wl, stream, batch, out);
        now = guild_mono_ns();
        if (n == 0) {
            out->errors++;
            bench_result_error(out, "nothing to read in %s", stream ? stream : "the log");
        }
        if (n <= 0)
            break;
        out->ops += (uint64_t)n;
        out->units++; /* passes */
    } while (now < deadline);
    out->seconds += (double)(now - start) / 1e9;
    out->cpu_seconds += bench_cpu_seconds() - cpu0;
}

void bench_store_read_log(const bench_workload *wl, size_t batch, double seconds, bench_result *out)
{
    read_passes(wl, NULL, batch, seconds, out);
}

void bench_store_read_stream(const bench_workload *wl, size_t batch, double seconds,
                             bench_result *out)
{
    read_passes(wl, wl->long_stream, batch, seconds, out);
}

void bench_store_load_streams(const bench_workload *wl, double seconds, bench_result *out)
{
    uint64_t rng = rng_seed(2000);
    double cpu0 = bench_cpu_seconds();
    uint64_t start = guild_mono_ns(), now = start;
    uint64_t deadline = start + (uint64_t)(seconds * 1e9);
    while (now < deadline) {
        uint64_t t0 = now;
        int64_t n = read_pass(wl, random_stream(wl, &rng), 4096, out);
        now = guild_mono_ns();
        if (n < 0)
            break;
        out->ops += (uint64_t)n;
        out->units++;
        bench_hist_record(&out->lat, now - t0);
    }
    out->seconds += (double)(now - start) / 1e9;
    out->cpu_seconds += bench_cpu_seconds() - cpu0;
}
