/*
 * peer_guild.c — guild itself, two ways:
 *
 *   - commands over NATS: a nats-server, `guild serve identity` and `guild
 *     serve talent` started as `guild bench commands` starts them (through
 *     cmd_bench.h), `n_streams` talent profiles, then set_rate and add_skill
 *     on random profiles with K requests in flight, each with the
 *     profile's expected version (Guild-Expected-Version, from the last
 *     reply about it; one request per profile at a time, as the other peers
 *     hold a stream). Each is decoded, authorized (JWT), checked against the
 *     expected version and decided on the aggregate inside the store's
 *     writer, appended durably with its command id, answered, and relayed to
 *     JetStream; the relay must keep up.
 *   - the event store in-process: K threads, each calling es_append_wait
 *     with one event, the expected version and a command id; then the long
 *     stream and the log read with es_read_stream and es_read_log.
 *
 * Map
 *   - the store: prefill, writers, reads; the peer (pw_store_ops)
 *   - the commands: the relay; the peer (pw_commands_ops)
 */
#include "cmd_bench.h"
#include "peers.h"

#include "common/alloc.h"
#include "common/clock.h"
#include "common/uuid.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define STORE_DOMAIN "bench"
#define PREFILL_WINDOW 4096
#define GOAL_CATCHUP_S 0.25
#define TOKEN_RENEW_NS (10ull * 60 * 1000000000)

/* ---- the store ------------------------------------------------------------------- */

typedef struct store_run {
    const pw_config *cfg;
    pw_table table;
    es_store *st;
    pw_table *t;
    /* the prefill */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    unsigned pending;
    uint64_t failed;
    char error[200];
} store_run;

typedef struct prefill_ctx {
    store_run *r;
    unsigned idx;
} prefill_ctx;

/* The append of event `seq` to s, with a fresh command id. */
static void fill_append(es_append *a, es_event_in *ev, const pw_stream *s, uint64_t seq,
                        uint64_t expected, char id[GUILD_UUID_STRLEN + 1], uint8_t data[128])
{
    guild_uuid7(id);
    *ev = (es_event_in){.type = PW_EVENT_TYPE,
                        .schema = 1,
                        .data = data,
                        .data_len = pw_event_msgpack(s->name, seq, data, 128)};
    *a = (es_append){.stream = s->name,
                     .expected_version = expected,
                     .prov = {.command_id = id},
                     .events = ev,
                     .n_events = 1};
}

static void prefill_done(void *arg, es_result *res)
{
    prefill_ctx *c = arg;
    store_run *r = c->r;
    if (res->status == GUILD_OK)
        pw_table_set(r->t, c->idx, res->version);
    pthread_mutex_lock(&r->mu);
    if (res->status != GUILD_OK) {
        r->failed++;
        if (r->error[0] == '\0')
            snprintf(r->error, sizeof r->error, "%.150s", res->error.message);
    }
    r->pending--;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    es_result_release(res);
    free(c);
}

/* One event to each random stream, then the long stream's, submitted with
 * a window; the long stream's go in order, so their versions do too. */
static int store_prefill(store_run *r, unsigned long_events, pw_peer *p)
{
    pw_table *t = r->t;
    unsigned total = t->n + long_events;
    for (unsigned i = 0; i < total && !cmdb_interrupted; i++) {
        pthread_mutex_lock(&r->mu);
        while (r->pending >= PREFILL_WINDOW)
            pthread_cond_wait(&r->cv, &r->mu);
        r->pending++;
        pthread_mutex_unlock(&r->mu);
        unsigned idx = i < t->n ? i : pw_long(t);
        es_append a;
        es_event_in ev;
        char id[GUILD_UUID_STRLEN + 1];
        uint8_t data[128];
        fill_append(&a, &ev, &t->s[idx], i < t->n ? 1 : i - t->n + 1, ES_ANY_VERSION, id, data);
        prefill_ctx *c = guild_xmalloc(sizeof *c);
        *c = (prefill_ctx){r, idx};
        if (es_append_submit(r->st, &a, prefill_done, c) != GUILD_OK) {
            free(c);
            pthread_mutex_lock(&r->mu);
            r->pending--;
            r->failed++;
            pthread_mutex_unlock(&r->mu);
        }
    }
    pthread_mutex_lock(&r->mu);
    while (r->pending > 0)
        pthread_cond_wait(&r->cv, &r->mu);
    pthread_mutex_unlock(&r->mu);
    if (r->failed) {
        pw_peer_fail(p, "prefill: %" PRIu64 " appends failed: %s", r->failed, r->error);
        return -1;
    }
    return 0;
}

static void *store_writer(void *arg)
{
    store_run *r = arg;
    unsigned idx;
    uint64_t expected;
    while (pw_table_take(r->t, &idx, &expected)) {
        es_append a;
        es_event_in ev;
        char id[GUILD_UUID_STRLEN + 1];
        uint8_t data[128];
        /* the stream's count changes only under its holder: this writer */
        fill_append(&a, &ev, &r->t->s[idx], r->t->s[idx].count + 1, expected, id, data);
        es_result res;
        guild_status s = es_append_wait(r->st, &a, &res);
        pw_table_finish(r->t, idx,
                        s == GUILD_OK         ? PW_OK
                        : s == GUILD_CONFLICT ? PW_CONFLICT
                                              : PW_ERROR,
                        res.version, res.error.message);
        es_result_release(&res);
    }
    return NULL;
}

static int count_record(void *ctx, const es_record *rec)
{
    pw_read *out = ctx;
    out->events++;
    out->bytes += rec->data_len;
    return 0;
}

/* Reads the long stream (log = false) or the log, again and again until
 * `seconds` have passed (at least once), PW_BATCH events at a time. */
static void store_read(es_store *st, bool log, const char *stream, double seconds, pw_read *out)
{
    uint64_t t0 = guild_mono_ns();
    do {
        uint64_t from = 1, next = 0;
        for (;;) {
            uint64_t before = out->events;
            guild_status s =
                log ? es_read_log(st, from, PW_BATCH, count_record, out, &next)
                    : es_read_stream(st, stream, from, PW_BATCH, count_record, out, &next);
            if (s != GUILD_OK) {
                snprintf(out->error, sizeof out->error, "%s", guild_status_code(s));
                return;
            }
            if (out->events - before < PW_BATCH)
                break;
            from = next;
        }
    } while ((double)(guild_mono_ns() - t0) / 1e9 < seconds && !cmdb_interrupted);
    out->seconds = (double)(guild_mono_ns() - t0) / 1e9;
    out->ran = true;
}

static int store_start(const pw_config *cfg, pw_peer *p, void **ctx)
{
    store_run *r = guild_xcalloc(1, sizeof *r);
    *ctx = r;
    r->cfg = cfg;
    pw_table_init(&r->table, cfg->n_streams);
    r->t = &r->table;
    pthread_mutex_init(&r->mu, NULL);
    pthread_cond_init(&r->cv, NULL);
    char dir[PW_PATH_MAX];
    snprintf(dir, sizeof dir, "%s/guild-store", cfg->root);
    if (mkdir(dir, 0755) != 0) {
        pw_peer_fail(p, "mkdir %s: %s", dir, strerror(errno));
        return -1;
    }
    es_options o = {.domain = STORE_DOMAIN};
    guild_error err = {0};
    uint64_t t0 = guild_mono_ns();
    if (es_store_open(dir, &o, &r->st, &err) != GUILD_OK) {
        pw_peer_fail(p, "opening the store in %s: %s", dir, err.message);
        return -1;
    }
    if (store_prefill(r, cfg->long_events, p) != 0)
        return -1;
    printf("[guild store] %u events written in %.2f s (%s)\n", r->t->n + cfg->long_events,
           (double)(guild_mono_ns() - t0) / 1e9, dir);
    return 0;
}

/* k threads, each appending one event at a time. */
static void store_slice(void *ctx, unsigned k, pw_phase *ph, double warmup, double seconds)
{
    store_run *r = ctx;
    pthread_t *th = guild_xcalloc(k, sizeof *th);
    pw_cpu_mark m;
    pw_cpu_mark_take(&m, 0, false);
    pw_table_begin(r->t, ph, warmup, seconds);
    for (unsigned i = 0; i < k; i++)
        pthread_create(&th[i], NULL, store_writer, r);
    pw_table_wait_window(r->t);
    pw_table_end(r->t);
    pw_cpu_mark_end(&m, 0, false, ph);
    for (unsigned i = 0; i < k; i++)
        pthread_join(th[i], NULL);
    free(th);
}

static void store_finish(void *ctx, pw_peer *p)
{
    store_run *r = ctx;
    double s = r->cfg->seconds < 1 ? r->cfg->seconds : 1;
    store_read(r->st, false, r->t->s[pw_long(r->t)].name, s, &p->read_stream);
    store_read(r->st, true, NULL, 0, &p->read_log);
    uint64_t head = 0;
    if (es_log_head(r->st, &head, NULL) == GUILD_OK) {
        p->stored = head;
        p->acked = r->t->acked;
        p->checked = true;
    }
}

static void store_stop(void *ctx, pw_peer *p)
{
    (void)p;
    store_run *r = ctx;
    if (!r)
        return;
    es_store_close(r->st);
    pthread_mutex_destroy(&r->mu);
    pthread_cond_destroy(&r->cv);
    pw_table_release(&r->table);
    free(r);
}

const pw_peer_ops pw_store_ops = {
    .start = store_start,
    .begin = pw_no_begin,
    .end = pw_no_end,
    .slice = store_slice,
    .finish = store_finish,
    .stop = store_stop,
};

/* ---- the commands ------------------------------------------------------------------
 *
 * The relay is watched as `guild bench commands` watches it: the JetStream
 * stream's last Guild-Position against the highest acknowledged position,
 * sampled during the window and waited for after it.
 */

typedef struct relay_watch {
    cmdb_probe *probe;
    uint64_t acked_at_end, stream_at_end;
} relay_watch;

static void on_tick(void *arg, uint64_t acked, bool at_end)
{
    relay_watch *w = arg;
    uint64_t pos = 0;
    if (at_end && cmdb_probe_stream_position(w->probe, &pos) == 0) {
        w->acked_at_end = acked;
        w->stream_at_end = pos;
    }
}

/* Seconds until the stream holds position `acked`, or -1 after PW_DRAIN_S. */
static double wait_caught_up(cmdb_probe *probe, uint64_t acked)
{
    uint64_t t0 = guild_mono_ns();
    for (;;) {
        uint64_t pos = 0;
        int rc = cmdb_probe_stream_position(probe, &pos);
        double waited = (double)(guild_mono_ns() - t0) / 1e9;
        if (rc == 0 && pos >= acked)
            return waited;
        if (waited > PW_DRAIN_S || cmdb_interrupted)
            return -1;
        bench_sleep(0.001);
    }
}

static uint64_t code_count(const cmdb_outcome *o, const char *code)
{
    for (int i = 0; i < CMDB_CODES; i++)
        if (o->codes[i].n && strcmp(o->codes[i].code, code) == 0)
            return o->codes[i].n;
    return 0;
}

typedef struct cmd_peer {
    const pw_config *cfg;
    cmdb_cluster c;
    cmdb_client *cl;
    cmdb_probe *probe;
} cmd_peer;

static int cmd_start(const pw_config *cfg, pw_peer *p, void **ctx)
{
    cmd_peer *cp = guild_xcalloc(1, sizeof *cp);
    *ctx = cp;
    cp->cfg = cfg;
    cmdb_cluster *c = &cp->c;
    snprintf(c->root, sizeof c->root, "%s/guild", cfg->root);
    if (mkdir(c->root, 0755) != 0) {
        pw_peer_fail(p, "mkdir %s: %s", c->root, strerror(errno));
        return -1;
    }
    unsigned char r[8];
    FILE *f = fopen("/dev/urandom", "r");
    if (!f || fread(r, 1, sizeof r, f) != sizeof r)
        memset(r, 7, sizeof r);
    if (f)
        fclose(f);
    snprintf(c->email, sizeof c->email, "bench-admin@guild.invalid");
    snprintf(c->password, sizeof c->password, "peers-%02x%02x%02x%02x%02x%02x%02x%02x", r[0], r[1],
             r[2], r[3], r[4], r[5], r[6], r[7]);
    if (cmdb_cluster_start(c) != 0 || cmdb_cluster_login(c) != 0) {
        pw_peer_fail(p, "guild did not start (logs in %s)", c->root);
        return -1;
    }
    if (cmdb_client_create(c->url, false, cfg->asap, &cp->cl) != 0 ||
        cmdb_probe_create(c->url, &cp->probe) != 0 ||
        cmdb_cluster_profiles(c, cp->cl, cfg->n_streams, 64) != 0) {
        pw_peer_fail(p, "setting up the client and the profiles failed");
        return -1;
    }
    cmdb_client_target(cp->cl, c->token, c->talent_ids, c->n_talents);
    cmdb_client_expect_versions(cp->cl, 1); /* a new profile is at version 1 */
    snprintf(pw_bearer, sizeof pw_bearer, "%s", c->token);
    return 0;
}

/* Logs in again when the access token nears its end (it lives 15 minutes). */
static int renew_token(cmd_peer *cp)
{
    if (guild_mono_ns() - cp->c.token_ns < TOKEN_RENEW_NS)
        return 0;
    if (cmdb_cluster_login(&cp->c) != 0)
        return -1;
    cmdb_client_target(cp->cl, cp->c.token, cp->c.talent_ids, cp->c.n_talents);
    return 0;
}

/* One slice: the client keeps k commands in flight, then the relay is
 * waited for. */
static void cmd_slice(void *ctx, unsigned k, pw_phase *ph, double warmup, double seconds)
{
    cmd_peer *cp = ctx;
    const cmdb_cluster *c = &cp->c;
    if (k >= c->n_talents) { /* one request per profile at a time */
        ph->res.errors++;
        bench_result_error(&ph->res, "%u in flight needs more than %u streams", k, c->n_talents);
        return;
    }
    if (renew_token(cp) != 0) {
        ph->res.errors++;
        bench_result_error(&ph->res, "cannot log in again");
        return;
    }
    relay_watch w = {.probe = cp->probe};
    cmdb_spec spec = {.kind = CMDB_COMMAND,
                      .in_flight = k,
                      .warmup = warmup,
                      .seconds = seconds,
                      .tick = on_tick,
                      .tick_ctx = &w};
    cmdb_outcome o;
    cmdb_outcome_init(&o);
    pw_cpu_mark m;
    pw_cpu_mark_take(&m, c->talent.pid, false);
    double nats0 = pw_proc_cpu(c->nats.pid, false);
    cmdb_client_run(cp->cl, &spec, &o, NULL, NULL);
    double svc = pw_cpu_mark_end(&m, c->talent.pid, false, ph);
    double nats1 = pw_proc_cpu(c->nats.pid, false);
    /* the service alone, and with the broker it needs */
    pw_cpu_add(&ph->svc_cpu, svc);
    pw_cpu_add(&ph->srv_cpu, nats0 >= 0 && nats1 >= 0 ? nats1 - nats0 : -1);
    double up = wait_caught_up(cp->probe, o.max_position);
    if (up < 0)
        ph->catchup_failed = true;
    else if (up > ph->catchup)
        ph->catchup = up;
    uint64_t lag = w.acked_at_end > w.stream_at_end ? w.acked_at_end - w.stream_at_end : 0;
    if (lag > ph->lag_end)
        ph->lag_end = lag;
    pw_phase_add_outcome(ph, &o, code_count(&o, "conflict"));
    cmdb_outcome_release(&o);
}

static void cmd_stop(void *ctx, pw_peer *p)
{
    cmd_peer *cp = ctx;
    if (!cp)
        return;
    cmdb_client_destroy(cp->cl);
    cmdb_probe_destroy(cp->probe);
    cmdb_cluster_stop(&cp->c);
    free(cp);
    pw_peer_note(p, "each command carries Guild-Expected-Version, checked inside the writer");
    pw_peer_note(p,
                 "relay kept up: JetStream had every acknowledged event within %.0f ms of the "
                 "last reply of each slice",
                 GOAL_CATCHUP_S * 1e3);
}

const pw_peer_ops pw_commands_ops = {
    .start = cmd_start,
    .begin = pw_no_begin,
    .end = pw_no_end,
    .slice = cmd_slice,
    /* no finish: guild's reads are the store's (pw_store_ops); the relay
     * check is in the goals */
    .stop = cmd_stop,
};

void pw_phase_add_outcome(pw_phase *ph, const cmdb_outcome *o, uint64_t conflicts)
{
    ph->total += o->replies;
    ph->conflicts += conflicts;
    ph->res.ops += o->res.ops;
    ph->res.seconds += o->res.seconds;
    ph->res.errors += o->res.errors - conflicts + o->timeouts;
    if (o->res.first_error[0])
        bench_result_error(&ph->res, "%s", o->res.first_error);
    if (o->timeouts)
        bench_result_error(&ph->res, "%" PRIu64 " timeouts", o->timeouts);
    bench_hist_merge(&ph->res.lat, &o->res.lat);
    ph->ran = true;
}

bool pw_relay_kept_up(const pw_phase *ph)
{
    return ph->ran && !ph->catchup_failed && ph->catchup <= GOAL_CATCHUP_S;
}
