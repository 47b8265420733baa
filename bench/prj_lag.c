/*
 * prj_lag.c — phase 3 of `guild bench project`: how far the talent read
 * model trails the commands, under a fixed rate of them.
 *
 * Map
 *   - processes: `guild project all` beside what cmd_cluster.c starts
 *     (nats-server, `guild serve identity`, `guild serve talent`)
 *   - pollers: the projector's status, and the stream's last position
 *   - the driver: an open-loop sender at a fixed rate (it wakes once a
 *     millisecond and writes the commands due with one send), the reply
 *     handler, and the queries that follow the sampled commands
 *   - after the load: draining, catching up, the lags the pollers saw
 *   - the run: start, profiles, baseline, load, stop
 *
 * Two measures of the lag, both from the command's reply (the moment a
 * client could first ask for what it wrote):
 *   - by token: one command in `sample_every` is followed at once by a
 *     get_profile of its profile carrying Guild-Consistency
 *     "talent:<position>" (CONTRACT.md); the projector holds the query
 *     until the model has applied that position; the lag is the reply to
 *     the query's answer. This is read-your-writes as a client sees it, one
 *     query round trip included.
 *   - by polling: the projector's status is asked for every `poll_ms`; a
 *     command's lag is until the answer of the first poll, sent after its
 *     reply, whose position covers it. Every command counts; the
 *     resolution is the poll period plus a round trip.
 * And what they are made of: the relay's share (until a look at the
 * JetStream stream finds the event), the same get_profile without a token
 * idle and under the load (it shares the query endpoint with the waiting
 * ones), and the round trip of a status request under the load (it waits
 * for any batch the projector is applying).
 */
#include "prj_bench.h"

#include "bus/conn.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/codec.h"
#include "common/text.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define READY_WAIT_NS (20ull * 1000000000)
#define CATCHUP_WAIT_NS (60ull * 1000000000)
#define DRAIN_WAIT_NS (12ull * 1000000000) /* a late reply, then its query's QUERY_TIMEOUT_MS */
#define STOP_WAIT_MS 15000
#define MAX_IN_FLIGHT 20000     /* unanswered commands before the sender holds back */
#define SEND_TICK_NS 1000000ull /* the sender wakes at most once a tick */
#define QUERY_TIMEOUT_MS 5000
#define BASELINE_QUERIES 200
#define SUBJECT_MAX 160
#define BODY_MAX 256

static const char *const skills[] = {"c",          "rust", "sql", "nats",
                                     "kubernetes", "lmdb", "go",  "distributed-systems"};
#define N_SKILLS (sizeof skills / sizeof skills[0])

/* ---- processes ---------------------------------------------------------------------
 * As cmd_cluster.c starts its children (whose helpers are its own): a
 * process group of their own, dying with the bench, output to a log. */

/* The projector's counters this bench reads (NULL: not wanted). */
typedef struct prj_counts {
    uint64_t applied, behind, restarts, batches;
} prj_counts;

/* The projector's status: 0 and its position (and its counters), or -1
 * when it does not answer. */
static int project_status(natsConnection *nc, int timeout_ms, uint64_t *position, prj_counts *cnt)
{
    natsMsg *reply = NULL;
    if (natsConnection_RequestString(&reply, nc, "guild.ctl.project.talent.status", "{}",
                                     timeout_ms) != NATS_OK)
        return -1;
    json_t *doc = NULL;
    int rc = -1;
    if (guild_codec_decode(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply),
                           GUILD_FMT_JSON, &doc, NULL) == GUILD_OK) {
        json_t *d = json_object_get(doc, "data");
        if (json_is_integer(json_object_get(d, "position"))) {
            *position = (uint64_t)json_integer_value(json_object_get(d, "position"));
            if (cnt)
                *cnt = (prj_counts){
                    (uint64_t)json_integer_value(json_object_get(d, "applied")),
                    (uint64_t)json_integer_value(json_object_get(d, "events_behind")),
                    (uint64_t)json_integer_value(json_object_get(d, "consumer_restarts")),
                    (uint64_t)json_integer_value(json_object_get(d, "batches"))};
            rc = 0;
        }
    }
    json_decref(doc);
    natsMsg_Destroy(reply);
    return rc;
}

static int start_projector(cmdb_cluster *c, cmdb_proc *p, natsConnection *nc)
{
    char self[CMDB_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fprintf(stderr, "guild bench project: /proc/self/exe: %s\n", strerror(errno));
        return -1;
    }
    self[n] = '\0';
    snprintf(p->name, sizeof p->name, "projector");
    snprintf(p->log, sizeof p->log, "%s/projector.log", c->root);
    const char *argv[] = {self, "project", "all", "--data", c->data, "--nats", c->url, NULL};
    uint64_t t0 = guild_mono_ns();
    if (cmdb_spawn(p, argv) != 0)
        return -1;
    uint64_t pos;
    while (project_status(nc, 250, &pos, NULL) != 0) {
        if (!cmdb_alive(p) || guild_mono_ns() - t0 > READY_WAIT_NS || cmdb_interrupted) {
            fprintf(stderr, "guild bench project: guild project all did not answer (see %s)\n",
                    p->log);
            return -1;
        }
        bench_sleep(0.05);
    }
    printf("[3/3] guild project all ready (pid %d) in %.2f s\n", (int)p->pid,
           (double)(guild_mono_ns() - t0) / 1e9);
    return 0;
}

/* ---- the status poller ----------------------------------------------------------------- */

typedef struct poll_sample {
    uint64_t sent, recv, position;
    prj_counts cnt; /* the projector's (zeros from the stream's probe) */
} poll_sample;

/* Polls the projector's status (nc) or, with probe, the stream's last position. */
typedef struct poller {
    natsConnection *nc;
    cmdb_probe *probe;
    double period_ms;
    pthread_t thread;
    pthread_mutex_t mu;
    bool stop;
    poll_sample *v;
    size_t n, cap;
    uint64_t behind_max;
} poller;

static void *poller_main(void *arg)
{
    poller *p = arg;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        bool stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        if (stop || cmdb_interrupted)
            break;
        poll_sample s = {.sent = guild_mono_ns()};
        int rc = p->probe ? cmdb_probe_stream_position(p->probe, &s.position)
                          : project_status(p->nc, 1000, &s.position, &s.cnt);
        if (rc == 0) {
            s.recv = guild_mono_ns();
            pthread_mutex_lock(&p->mu);
            if (p->n == p->cap) {
                p->cap = p->cap ? p->cap * 2 : 4096;
                p->v = guild_xrealloc(p->v, p->cap * sizeof *p->v);
            }
            p->v[p->n++] = s;
            if (s.cnt.behind > p->behind_max)
                p->behind_max = s.cnt.behind;
            pthread_mutex_unlock(&p->mu);
        }
        uint64_t next = s.sent + (uint64_t)(p->period_ms * 1e6), now = guild_mono_ns();
        if (next > now)
            bench_sleep((double)(next - now) / 1e9);
    }
    return NULL;
}

/* The first sample sent at or after t whose position is at least pos; NULL if none. */
static const poll_sample *poll_find(const poller *p, uint64_t t, uint64_t pos)
{
    size_t lo = 0, hi = p->n; /* first with sent >= t */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (p->v[mid].sent < t)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t a = lo;
    lo = 0, hi = p->n; /* first with position >= pos (positions never go back) */
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (p->v[mid].position < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t i = a > lo ? a : lo;
    return i < p->n ? &p->v[i] : NULL;
}

/* The projector's counters nearest to time t (zeros when none came). */
static poll_sample poll_sample_at(const poller *p, uint64_t t)
{
    const poll_sample *s = poll_find(p, t, 0);
    if (!s)
        return p->n ? p->v[p->n - 1] : (poll_sample){0};
    return *s;
}

/* ---- the driver --------------------------------------------------------------------------- */

enum { C_FREE, C_SENT, C_DONE };

typedef struct cmd_rec {
    uint64_t sent_ns, reply_ns, position;
    uint64_t query_ns; /* when its get_profile went out */
    uint32_t talent;
    uint8_t state;
    bool ok;
} cmd_rec;

typedef struct driver {
    natsConnection *nc;
    natsSubscription *sub;
    char inbox[64];
    char run_id[16];
    const char *bearer;
    char *const *talents;
    unsigned n_talents;
    unsigned sample_every;

    pthread_mutex_t mu; /* everything below */
    cmd_rec *recs;
    uint64_t cap;
    uint64_t in_flight, queries_in_flight;
    uint64_t m_start, m_end;
    uint64_t rng;
    prjb_lag *out;
} driver;

static bool in_window(const driver *d, uint64_t t)
{
    return t >= d->m_start && t < d->m_end;
}

static int command_body(const driver *d, uint64_t seq, const char *talent, const char **subject,
                        char *buf, size_t size)
{
    (void)d;
    switch (seq % 3) {
    case 0: /* a new rate every time: each command writes an event */
        *subject = "guild.cmd.talent.set_rate";
        return snprintf(buf, size,
                        "{\"talent_id\":\"%s\",\"currency\":\"EUR\",\"hourly_rate\":%" PRIu64 "}",
                        talent, 1000 + seq % 99000000);
    case 1:
        *subject = "guild.cmd.talent.add_skill";
        return snprintf(
            buf, size, "{\"talent_id\":\"%s\",\"skill\":\"%s\",\"level\":%d,\"years\":%d}", talent,
            skills[(seq / 3) % N_SKILLS], (int)(1 + (seq / 24) % 5), (int)((seq / 120) % 40));
    default:
        *subject = "guild.cmd.talent.set_availability";
        return snprintf(buf, size, "{\"talent_id\":\"%s\",\"hours_per_week\":%d}", talent,
                        (int)(10 + (seq / 3) % 31));
    }
}

static natsStatus publish(driver *d, const char *subject, const char *reply, const char *body,
                          int len, const char *id, const char *consistency)
{
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subject, reply, body, len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, BUS_H_CONTENT_TYPE, "application/json");
    if (s == NATS_OK && d->bearer)
        s = natsMsgHeader_Set(m, BUS_H_AUTH, d->bearer);
    if (s == NATS_OK && id)
        s = natsMsgHeader_Set(m, BUS_H_COMMAND_ID, id);
    if (s == NATS_OK && consistency) {
        char wait[16];
        snprintf(wait, sizeof wait, "%d", QUERY_TIMEOUT_MS);
        s = natsMsgHeader_Set(m, BUS_H_CONSISTENCY, consistency);
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, "Guild-Timeout", wait);
    }
    if (s == NATS_OK)
        s = natsConnection_PublishMsg(d->nc, m);
    natsMsg_Destroy(m);
    return s;
}

static void record_error(char *first, size_t size, const char *fmt, const char *a, const char *b)
{
    if (!first[0])
        snprintf(first, size, fmt, a, b);
}

/* Sends command seq. */
static void send_command(driver *d, uint64_t seq)
{
    char subject_reply[SUBJECT_MAX], body[BODY_MAX], id[64];
    const char *subject;
    pthread_mutex_lock(&d->mu);
    cmd_rec *r = &d->recs[seq];
    r->talent = (uint32_t)(prjb_rand(&d->rng) % d->n_talents);
    r->state = C_SENT;
    r->sent_ns = guild_mono_ns();
    d->in_flight++;
    bool counted = in_window(d, r->sent_ns);
    if (counted)
        d->out->sent++;
    pthread_mutex_unlock(&d->mu);
    int len = command_body(d, seq, d->talents[r->talent], &subject, body, sizeof body);
    snprintf(subject_reply, sizeof subject_reply, "%s.c.%" PRIu64, d->inbox, seq);
    snprintf(id, sizeof id, "pbench-%s-%" PRIu64, d->run_id, seq);
    natsStatus s = publish(d, subject, subject_reply, body, len, id, NULL);
    if (s == NATS_OK)
        return;
    pthread_mutex_lock(&d->mu);
    if (r->state == C_SENT) {
        r->state = C_DONE;
        d->in_flight--;
        if (counted) {
            d->out->errors++;
            record_error(d->out->first_error, sizeof d->out->first_error, "publish: %s%s",
                         natsStatus_GetText(s), "");
        }
    }
    pthread_mutex_unlock(&d->mu);
}

/* The integer after "position": in a JSON reply, or 0. */
static uint64_t reply_position(const char *data, size_t len)
{
    static const char key[] = "\"position\":";
    for (size_t i = 0; i + sizeof key - 1 < len; i++)
        if (memcmp(data + i, key, sizeof key - 1) == 0)
            return strtoull(data + i + sizeof key - 1, NULL, 10);
    return 0;
}

static bool reply_ok(natsMsg *msg)
{
    const char *status = NULL;
    natsMsgHeader_Get(msg, BUS_H_STATUS, &status);
    return status && strcmp(status, "200") == 0;
}

/* Why a reply is not ok, into buf. */
static void reply_why(natsMsg *msg, char *buf, size_t size)
{
    json_t *doc = NULL;
    const char *data = natsMsg_GetData(msg);
    size_t len = (size_t)natsMsg_GetDataLength(msg);
    if (len && guild_codec_decode(data, len, GUILD_FMT_JSON, &doc, NULL) == GUILD_OK) {
        json_t *e = json_object_get(doc, "error");
        const char *code = json_string_value(json_object_get(e, "code"));
        const char *message = json_string_value(json_object_get(e, "message"));
        snprintf(buf, size, "%s: %s", code ? code : "?", message ? message : "");
    } else {
        snprintf(buf, size, "a reply without a body (no responders?)");
    }
    json_decref(doc);
}

/* Sends the get_profile of command seq's profile: with its consistency
 * token (kind 'q'), or without (kind 'p', to see what a query costs under
 * the load). */
static void send_query(driver *d, uint64_t seq, char kind, const char *talent, uint64_t position)
{
    char subject_reply[SUBJECT_MAX], body[BODY_MAX], token[64];
    snprintf(subject_reply, sizeof subject_reply, "%s.%c.%" PRIu64, d->inbox, kind, seq);
    snprintf(token, sizeof token, "talent:%" PRIu64, position);
    int len = snprintf(body, sizeof body, "{\"talent_id\":\"%s\"}", talent);
    pthread_mutex_lock(&d->mu);
    d->recs[seq].query_ns = guild_mono_ns();
    d->queries_in_flight++;
    pthread_mutex_unlock(&d->mu);
    natsStatus s = publish(d, "guild.qry.talent.get_profile", subject_reply, body, len, NULL,
                           kind == 'q' ? token : NULL);
    pthread_mutex_lock(&d->mu);
    prjb_lag *o = d->out;
    if (kind == 'q')
        o->lag_queries++;
    if (s != NATS_OK) {
        d->queries_in_flight--;
        o->lag_errors++;
        record_error(o->lag_first_error, sizeof o->lag_first_error, "publish: %s%s",
                     natsStatus_GetText(s), "");
    }
    pthread_mutex_unlock(&d->mu);
}

static void on_command_reply(driver *d, uint64_t seq, natsMsg *msg, uint64_t now)
{
    bool ok = reply_ok(msg);
    uint64_t position =
        ok ? reply_position(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg)) : 0;
    char why[200] = "";
    if (!ok)
        reply_why(msg, why, sizeof why);
    pthread_mutex_lock(&d->mu);
    cmd_rec *r = &d->recs[seq];
    if (r->state != C_SENT) {
        pthread_mutex_unlock(&d->mu);
        return;
    }
    r->state = C_DONE;
    r->reply_ns = now;
    r->ok = ok;
    r->position = position;
    d->in_flight--;
    bool counted = in_window(d, r->sent_ns), token = false, plain = false;
    prjb_lag *o = d->out;
    if (counted) {
        o->replied++;
        if (ok) {
            o->ok++;
            bench_hist_record(&o->cmd_lat, now - r->sent_ns);
            unsigned k = d->sample_every;
            token = position > 0 && seq % k == 0;
            plain = k > 1 && seq % k == k / 2;
        } else {
            o->errors++;
            record_error(o->first_error, sizeof o->first_error, "%s%s", why, "");
        }
    }
    if (ok && in_window(d, now))
        o->answered++;
    if (ok && position > o->max_position)
        o->max_position = position;
    const char *talent = d->talents[r->talent];
    pthread_mutex_unlock(&d->mu);
    if (token || plain)
        send_query(d, seq, token ? 'q' : 'p', talent, position);
}

static void on_query_reply(driver *d, uint64_t seq, char kind, natsMsg *msg, uint64_t now)
{
    bool ok = reply_ok(msg);
    char why[200] = "";
    if (!ok)
        reply_why(msg, why, sizeof why);
    pthread_mutex_lock(&d->mu);
    prjb_lag *o = d->out;
    const cmd_rec *r = &d->recs[seq];
    d->queries_in_flight--;
    if (ok && kind == 'q') {
        bench_hist_record(&o->lag, now - r->reply_ns);
    } else if (ok) {
        bench_hist_record(&o->query_load_rtt, now - r->query_ns);
    } else {
        o->lag_errors++;
        record_error(o->lag_first_error, sizeof o->lag_first_error, "%s%s", why, "");
    }
    pthread_mutex_unlock(&d->mu);
}

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc, (void)sub;
    driver *d = closure;
    uint64_t now = guild_mono_ns();
    const char *subject = natsMsg_GetSubject(msg);
    size_t n = strlen(d->inbox);
    if (strncmp(subject, d->inbox, n) == 0 && subject[n] == '.' && subject[n + 2] == '.') {
        char kind = subject[n + 1];
        char *end = NULL;
        uint64_t seq = strtoull(subject + n + 3, &end, 10);
        if (end && *end == '\0' && seq < d->cap) {
            if (kind == 'c')
                on_command_reply(d, seq, msg, now);
            else if (kind == 'q' || kind == 'p')
                on_query_reply(d, seq, kind, msg, now);
        }
    }
    natsMsg_Destroy(msg);
}

static int driver_create(driver *d, const char *url, uint64_t cap)
{
    natsInbox *inbox = NULL;
    char subject[96];
    pthread_mutex_init(&d->mu, NULL);
    d->cap = cap;
    d->recs = guild_xcalloc(cap, sizeof *d->recs);
    d->rng = guild_mono_ns() | 1;
    snprintf(d->run_id, sizeof d->run_id, "%08" PRIx64, prjb_rand(&d->rng) & 0xffffffffu);
    /* The sender writes each tick's commands with one send (bus_hold,
     * bus_flush), as guild's own services write their replies. */
    guild_error err;
    if (bus_connect_batched(url, "guild-bench-project", 5000, &d->nc, &err) != GUILD_OK) {
        fprintf(stderr, "guild bench project: the load's connection: %s\n", err.message);
        return -1;
    }
    natsStatus s = natsInbox_Create(&inbox);
    if (s == NATS_OK) {
        snprintf(d->inbox, sizeof d->inbox, "%s", (const char *)inbox);
        snprintf(subject, sizeof subject, "%s.>", d->inbox);
        s = natsConnection_Subscribe(&d->sub, d->nc, subject, on_reply, d);
    }
    natsInbox_Destroy(inbox);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(d->sub, -1, -1);
    if (s == NATS_OK)
        s = natsConnection_FlushTimeout(d->nc, 5000);
    if (s != NATS_OK) {
        fprintf(stderr, "guild bench project: the load's connection: %s\n", natsStatus_GetText(s));
        return -1;
    }
    return 0;
}

static void driver_destroy(driver *d)
{
    if (d->sub) {
        natsSubscription_Unsubscribe(d->sub);
        natsSubscription_Destroy(d->sub);
    }
    bus_close(d->nc);
    pthread_mutex_destroy(&d->mu);
    free(d->recs);
}

static uint64_t in_flight(driver *d)
{
    pthread_mutex_lock(&d->mu);
    uint64_t n = d->in_flight;
    pthread_mutex_unlock(&d->mu);
    return n;
}

/* Commands and queries still unanswered. */
static uint64_t unanswered(driver *d)
{
    pthread_mutex_lock(&d->mu);
    uint64_t n = d->in_flight + d->queries_in_flight;
    pthread_mutex_unlock(&d->mu);
    return n;
}

/* Sends at `rate` from now for warmup + seconds, then waits for what is in
 * flight. Returns the number of commands sent. */
static uint64_t drive(driver *d, const prjb_lag_options *o, prjb_lag *out)
{
    uint64_t t0 = guild_mono_ns(), seq = 0;
    pthread_mutex_lock(&d->mu);
    d->m_start = t0 + (uint64_t)(o->warmup * 1e9);
    d->m_end = d->m_start + (uint64_t)(o->seconds * 1e9);
    pthread_mutex_unlock(&d->mu);
    double ns_per_cmd = 1e9 / o->rate;
    uint64_t shown = t0;
    for (;;) {
        uint64_t now = guild_mono_ns();
        if (now >= d->m_end || cmdb_interrupted)
            break;
        uint64_t due = (uint64_t)((double)(now - t0) / ns_per_cmd) + 1;
        if (due > d->cap)
            due = d->cap;
        bus_hold(true);
        while (seq < due && in_flight(d) < MAX_IN_FLIGHT)
            send_command(d, seq++);
        bus_hold(false);
        bus_flush(d->nc);
        if (due - seq > out->behind_max && now >= d->m_start)
            out->behind_max = due - seq;
        if (now - shown > 1000000000ull) {
            char a[32];
            if (o->tty) {
                printf("\r[3/3] load: %.0f s, %s commands sent   ", (double)(now - t0) / 1e9,
                       bench_fmt_count((double)seq, a, sizeof a));
                fflush(stdout);
            }
            shown = now;
        }
        /* the next command's time, but no sooner than the next tick of
         * SEND_TICK_NS and at most 1 ms away */
        uint64_t next = t0 + (uint64_t)((double)seq * ns_per_cmd);
        now = guild_mono_ns();
        uint64_t tick = now + SEND_TICK_NS - (now - t0) % SEND_TICK_NS;
        if (next < tick)
            next = tick;
        if (next > now)
            bench_sleep((double)(next - now > 1000000 ? 1000000 : next - now) / 1e9);
    }
    /* Drain: the commands, then the queries they started (which wait up to
     * QUERY_TIMEOUT_MS for the model): the slowest are the ones that count. */
    uint64_t end = guild_mono_ns();
    while (unanswered(d) > 0 && guild_mono_ns() - end < DRAIN_WAIT_NS && !cmdb_interrupted)
        bench_sleep(0.001);
    pthread_mutex_lock(&d->mu);
    for (uint64_t i = 0; i < seq; i++)
        if (d->recs[i].state == C_SENT && in_window(d, d->recs[i].sent_ns))
            out->timeouts++;
    out->lag_errors += d->queries_in_flight; /* never answered */
    out->seconds = (double)((end < d->m_end ? end : d->m_end) - d->m_start) / 1e9;
    pthread_mutex_unlock(&d->mu);
    if (o->tty)
        printf("\n");
    return seq;
}

/* ---- after the load ---------------------------------------------------------------------- */

/* Waits until the model has applied pos; the seconds it took from `since`
 * (monotonic ns), or -1. */
static double wait_applied(natsConnection *nc, cmdb_proc *prj, uint64_t pos, uint64_t since)
{
    for (;;) {
        uint64_t at = 0;
        if (project_status(nc, 1000, &at, NULL) == 0 && at >= pos)
            return (double)(guild_mono_ns() - since) / 1e9;
        if (guild_mono_ns() - since > CATCHUP_WAIT_NS || cmdb_interrupted || !cmdb_alive(prj))
            return -1;
        bench_sleep(0.001);
    }
}

/* The lag of every ok command of the window, as poller p saw it, into h. */
static void lag_by_polling(const driver *d, uint64_t sent, const poller *p, bench_hist *h)
{
    for (uint64_t i = 0; i < sent; i++) {
        const cmd_rec *r = &d->recs[i];
        if (r->state != C_DONE || !r->ok || !r->position || !in_window(d, r->sent_ns))
            continue;
        const poll_sample *s = poll_find(p, r->reply_ns, r->position);
        if (s)
            bench_hist_record(h, s->recv - r->reply_ns);
    }
}

static void poller_start(poller *p)
{
    pthread_mutex_init(&p->mu, NULL);
    if (pthread_create(&p->thread, NULL, poller_main, p) != 0)
        GUILD_BUG("pthread_create failed");
}

static void poller_stop(poller *p)
{
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_mutex_unlock(&p->mu);
    pthread_join(p->thread, NULL);
    pthread_mutex_destroy(&p->mu);
}

/* ---- the run ----------------------------------------------------------------------------- */

void prjb_lag_init(prjb_lag *l)
{
    memset(l, 0, sizeof *l);
    bench_hist_init(&l->cmd_lat);
    bench_hist_init(&l->lag);
    bench_hist_init(&l->poll_lag);
    bench_hist_init(&l->relay_lag);
    bench_hist_init(&l->query_rtt);
    bench_hist_init(&l->query_load_rtt);
    bench_hist_init(&l->status_rtt);
    l->catchup = -1;
}

void prjb_lag_release(prjb_lag *l)
{
    bench_hist_release(&l->cmd_lat);
    bench_hist_release(&l->lag);
    bench_hist_release(&l->poll_lag);
    bench_hist_release(&l->relay_lag);
    bench_hist_release(&l->query_rtt);
    bench_hist_release(&l->query_load_rtt);
    bench_hist_release(&l->status_rtt);
}

/* get_profile round trips without a token, one at a time, on an idle model. */
static void baseline(cmdb_cluster *c, natsConnection *nc, prjb_lag *out)
{
    for (unsigned i = 0; i < BASELINE_QUERIES && !cmdb_interrupted; i++) {
        char body[BODY_MAX];
        int len =
            snprintf(body, sizeof body, "{\"talent_id\":\"%s\"}", c->talent_ids[i % c->n_talents]);
        natsMsg *m = NULL, *r = NULL;
        natsStatus s = natsMsg_Create(&m, "guild.qry.talent.get_profile", NULL, body, len);
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, BUS_H_CONTENT_TYPE, "application/json");
        if (s == NATS_OK)
            s = natsMsgHeader_Set(m, BUS_H_AUTH, c->token);
        uint64_t t0 = guild_mono_ns();
        if (s == NATS_OK)
            s = natsConnection_RequestMsg(&r, nc, m, 2000);
        if (s == NATS_OK && reply_ok(r))
            bench_hist_record(&out->query_rtt, guild_mono_ns() - t0);
        natsMsg_Destroy(m);
        natsMsg_Destroy(r);
    }
}

typedef struct cpu_marks {
    double talent, projector, nats, bench;
} cpu_marks;

static void cpu_mark(const cmdb_cluster *c, const cmdb_proc *prj, cpu_marks *m)
{
    m->talent = cmdb_proc_cpu(c->talent.pid);
    m->projector = cmdb_proc_cpu(prj->pid);
    m->nats = cmdb_proc_cpu(c->nats.pid);
    m->bench = bench_cpu_seconds();
}

/* CPU seconds from a to b over `wall` seconds: the cores kept busy; -1 unknown. */
static double cores(double a, double b, double wall)
{
    return a < 0 || b < 0 || wall <= 0 ? -1 : (b - a) / wall;
}

/* Starts the cluster and the projector, logs in, makes the profiles and
 * waits until the model has them. */
static int setup(const prjb_lag_options *o, cmdb_cluster *c, cmdb_proc *prj, natsConnection **nc)
{
    snprintf(c->root, sizeof c->root, "%s", o->root);
    snprintf(c->email, sizeof c->email, "bench-admin@guild.invalid");
    uint64_t r = guild_mono_ns() ^ (uint64_t)getpid() << 32;
    snprintf(c->password, sizeof c->password, "bench-%016" PRIx64, prjb_rand(&r));
    if (cmdb_cluster_start(c) != 0 || cmdb_cluster_login(c) != 0)
        return -1;
    guild_error err = {0};
    if (bus_connect(c->url, "guild-bench-project", 5000, nc, &err) != GUILD_OK) {
        fprintf(stderr, "guild bench project: %s\n", err.message);
        return -1;
    }
    if (start_projector(c, prj, *nc) != 0)
        return -1;
    cmdb_client *cl = NULL;
    if (cmdb_client_create(c->url, false, true, &cl) != 0)
        return -1;
    int rc = cmdb_cluster_profiles(c, cl, o->profiles, 64);
    cmdb_client_destroy(cl);
    if (rc != 0 || c->n_talents == 0)
        return -1;
    cmdb_probe *probe = NULL;
    uint64_t last = 0;
    if (cmdb_probe_create(c->url, &probe) != 0)
        return -1;
    /* the relay publishes after the replies: wait for the stream, then the model */
    uint64_t t0 = guild_mono_ns();
    while (cmdb_probe_stream_position(probe, &last) == 0 && last < 2ull * c->n_talents &&
           guild_mono_ns() - t0 < CATCHUP_WAIT_NS && !cmdb_interrupted)
        bench_sleep(0.01);
    cmdb_probe_destroy(probe);
    if (wait_applied(*nc, prj, last, guild_mono_ns()) < 0) {
        fprintf(stderr,
                "guild bench project: the talent model did not reach position %" PRIu64 "\n", last);
        return -1;
    }
    printf("[3/3] the talent model holds the profiles (position %" PRIu64 ")\n", last);
    return 0;
}

int prjb_lag_run(const prjb_lag_options *o, prjb_lag *out)
{
    cmdb_cluster c = {0};
    cmdb_proc prj = {0};
    natsConnection *nc = NULL;
    driver d = {0};
    poller status = {.period_ms = o->poll_ms}, stream = {.period_ms = PRJB_STREAM_POLL_MS};
    bool polling = false;
    int rc = -1;
    guild_error err = {0};
    if (setup(o, &c, &prj, &nc) != 0)
        goto leave;
    baseline(&c, nc, out);

    uint64_t cap = (uint64_t)(o->rate * (o->warmup + o->seconds)) + 1024;
    if (driver_create(&d, c.url, cap) != 0)
        goto leave;
    d.bearer = c.token;
    d.talents = c.talent_ids;
    d.n_talents = c.n_talents;
    d.sample_every = o->sample_every ? o->sample_every : 1;
    d.out = out;
    if (bus_connect(c.url, "guild-bench-project-poll", 5000, &status.nc, &err) != GUILD_OK) {
        fprintf(stderr, "guild bench project: %s\n", err.message);
        goto leave;
    }
    if (cmdb_probe_create(c.url, &stream.probe) != 0)
        goto leave;
    poller_start(&status);
    poller_start(&stream);
    polling = true;

    char a[32];
    printf("[3/3] driving %s talent commands/s for %.1f s (+ %.1f s warm-up), one in %u "
           "followed by a query with its consistency token\n",
           bench_fmt_count(o->rate, a, sizeof a), o->seconds, o->warmup, d.sample_every);
    fflush(stdout);
    cpu_marks m0, m1;
    cpu_mark(&c, &prj, &m0);
    uint64_t start = guild_mono_ns();
    uint64_t sent = drive(&d, o, out);
    uint64_t end = guild_mono_ns();
    cpu_mark(&c, &prj, &m1);
    bool caught_up = wait_applied(nc, &prj, out->max_position, end) >= 0;
    uint64_t at = 0;
    prj_counts cnt = {0};
    project_status(nc, 1000, &at, &cnt);
    out->consumer_restarts = cnt.restarts;
    cmdb_proc *procs[] = {&prj, &c.talent, &c.identity, &c.nats};
    for (size_t i = 0; i < sizeof procs / sizeof procs[0] && !out->died[0]; i++) {
        if (procs[i]->ended || (procs[i]->pid > 0 && !cmdb_alive(procs[i]))) {
            char how[32];
            snprintf(out->died, sizeof out->died, "%s ended during the run (%s); its log: %s",
                     procs[i]->name, guild_wait_text(procs[i]->status, how, sizeof how),
                     procs[i]->log);
        }
    }
    bench_sleep(0.05);
    poller_stop(&status);
    poller_stop(&stream);
    polling = false;
    lag_by_polling(&d, sent, &status, &out->poll_lag);
    lag_by_polling(&d, sent, &stream, &out->relay_lag);
    for (size_t i = 0; i < status.n; i++)
        if (in_window(&d, status.v[i].sent))
            bench_hist_record(&out->status_rtt, status.v[i].recv - status.v[i].sent);
    /* from the last command sent, until a poll saw the model hold every acked event */
    const poll_sample *last = caught_up ? poll_find(&status, d.m_end, out->max_position) : NULL;
    out->catchup = last ? (double)(last->recv - d.m_end) / 1e9 : -1;
    out->polls = status.n;
    out->stream_polls = stream.n;
    out->events_behind_max = status.behind_max;
    poll_sample at_start = poll_sample_at(&status, d.m_start),
                at_end = poll_sample_at(&status, d.m_end);
    out->events_applied = at_end.cnt.applied - at_start.cnt.applied;
    out->batches = at_end.cnt.batches - at_start.cnt.batches;
    double wall = (double)(end - start) / 1e9;
    out->talent_cpu = cores(m0.talent, m1.talent, wall);
    out->projector_cpu = cores(m0.projector, m1.projector, wall);
    out->nats_cpu = cores(m0.nats, m1.nats, wall);
    out->bench_cpu = cores(m0.bench, m1.bench, wall);
    out->achieved = out->seconds > 0 ? (double)out->answered / out->seconds : 0;
    out->ran = !cmdb_interrupted;
    rc = cmdb_interrupted ? -1 : 0;

leave:
    if (polling) {
        poller_stop(&status);
        poller_stop(&stream);
    }
    bus_close(status.nc);
    cmdb_probe_destroy(stream.probe);
    free(status.v);
    free(stream.v);
    if (d.recs)
        driver_destroy(&d);
    bus_close(nc);
    cmdb_stop_proc(&prj);
    cmdb_cluster_stop(&c);
    return rc;
}
