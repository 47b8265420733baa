/*
 * cmd_load.c — the load side of `guild bench commands`: a pipelined NATS
 * client that keeps N requests in flight, the echo responder it is compared
 * with, and a probe that reads how far the relay's stream is.
 *
 * Map
 *   - outcomes
 *   - the client: slots, building and publishing a request, the reply handler
 *   - the echo responder
 *   - creating the client, the run loop
 *   - the probe
 *
 * How the client keeps N in flight
 *   One wildcard subscription, <inbox>.*, takes every reply. Request i goes
 *   out with the reply subject <inbox>.<slot>_<generation>: the slot says
 *   which of the N it was, the generation tells a late reply (its request
 *   already counted as timed out, and the slot reused) from the current one.
 *   The reply handler frees the slot and at once sends the slot's next
 *   request, so the window stays full without a thread of its own; the run
 *   loop only fills slots whose publish failed, times out requests and
 *   calls the tick.
 */
#include "cmd_bench.h"

#include "bus/conn.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/uuid.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TICK_NS (250ull * 1000 * 1000)
#define LOOP_NS (10ull * 1000 * 1000)
#define SUBJECT_MAX 128
#define BODY_MAX 512

/* What add_skill cycles through: a profile ends with these eight. */
static const char *const skills[] = {"c",          "rust", "sql", "nats",
                                     "kubernetes", "lmdb", "go",  "distributed-systems"};
#define N_SKILLS (sizeof skills / sizeof skills[0])

/* ---- outcomes ------------------------------------------------------------- */

void cmdb_outcome_init(cmdb_outcome *o)
{
    memset(o, 0, sizeof *o);
    bench_result_init(&o->res);
}

void cmdb_outcome_release(cmdb_outcome *o)
{
    bench_result_release(&o->res);
}

static void count_code(cmdb_outcome *o, const char *code)
{
    for (int i = 0; i < CMDB_CODES; i++) {
        if (o->codes[i].n == 0) {
            snprintf(o->codes[i].code, sizeof o->codes[i].code, "%s", code);
            o->codes[i].n = 1;
            return;
        }
        if (strcmp(o->codes[i].code, code) == 0) {
            o->codes[i].n++;
            return;
        }
    }
    /* the table is full: its last row takes the rest */
    snprintf(o->codes[CMDB_CODES - 1].code, sizeof o->codes[0].code, "%s", "other");
    o->codes[CMDB_CODES - 1].n++;
}

/* ---- the client --------------------------------------------------------------- */

typedef struct slot {
    uint32_t gen;
    bool busy;
    uint64_t sent_ns;
    unsigned talent; /* the profile its request is about */
} slot;

/* A request to send, decided under the lock, built and published outside. */
typedef struct ticket {
    unsigned slot;
    uint32_t gen;
    uint64_t seq;
    unsigned talent;
    uint64_t expected; /* Guild-Expected-Version to send; 0: none */
} ticket;

struct cmdb_client {
    natsConnection *nc;
    natsSubscription *sub;
    char inbox[64];
    char run_id[16];
    natsConnection *echo_nc;
    natsSubscription *echo_sub;
    char echo_subject[64];

    const char *bearer;
    char *const *talents;
    unsigned n_talents;

    pthread_mutex_t mu; /* everything below */
    slot *slots;
    const cmdb_spec *spec; /* NULL between runs */
    cmdb_outcome *out;
    void (*created)(void *ctx, const char *talent_id);
    void *created_ctx;
    bool accepting;          /* new requests may go out */
    uint64_t m_start, m_end; /* the measured window, monotonic ns */
    uint64_t seq;            /* requests ever sent: command ids */
    uint64_t issued;         /* requests sent this run */
    uint64_t finished;       /* answered, failed or timed out this run */
    unsigned busy;
    uint64_t rng;
    /* With expected versions (cmdb_client_expect_versions): each profile's
     * version as the last reply gave it (0: not known), and whether a
     * request about it is out (one at a time, or they would conflict). */
    bool expect;
    uint64_t *versions;
    bool *held;
};

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

/* Takes slot i for a new request if the run still wants one; mu held. */
static bool ticket_take(cmdb_client *cl, unsigned i, uint64_t now, ticket *t)
{
    const cmdb_spec *sp = cl->spec;
    if (!cl->accepting || cmdb_interrupted || now >= cl->m_end)
        return false;
    if (sp->count > 0 && cl->issued >= sp->count)
        return false;
    slot *s = &cl->slots[i];
    s->busy = true;
    s->gen++;
    s->sent_ns = now;
    cl->busy++;
    cl->issued++;
    t->slot = i;
    t->gen = s->gen;
    t->seq = ++cl->seq;
    t->talent = cl->n_talents ? (unsigned)(rng_next(&cl->rng) % cl->n_talents) : 0;
    t->expected = 0;
    if (cl->expect && cl->n_talents && sp->kind == CMDB_COMMAND) {
        /* another profile while this one has a request out (fewer are out
         * than there are profiles: CMDB_MAX_IN_FLIGHT is checked at set-up) */
        while (cl->held[t->talent])
            t->talent = (unsigned)(rng_next(&cl->rng) % cl->n_talents);
        cl->held[t->talent] = true;
        t->expected = cl->versions[t->talent];
    }
    s->talent = t->talent;
    return true;
}

/* Frees slot i after its request ended; mu held. */
static void slot_release(cmdb_client *cl, unsigned i)
{
    if (cl->expect && cl->held && cl->slots[i].talent < cl->n_talents)
        cl->held[cl->slots[i].talent] = false;
    cl->slots[i].busy = false;
    cl->busy--;
    cl->finished++;
}

static void record_error(cmdb_client *cl, const char *code, const char *fmt, const char *detail)
{
    cl->out->res.errors++;
    count_code(cl->out, code);
    bench_result_error(&cl->out->res, fmt, code, detail);
}

/* The body of request `t`: a set_rate or add_skill (echo carries the same
 * bytes as a command), or a create_profile. Returns its length. */
static int build_body(const cmdb_client *cl, cmdb_kind kind, const ticket *t, char *buf,
                      size_t size)
{
    const char *talent =
        cl->n_talents ? cl->talents[t->talent] : "00000000-0000-7000-8000-000000000000";
    if (kind == CMDB_CREATE) {
        char user[GUILD_UUID_STRLEN + 1];
        guild_uuid7(user);
        return snprintf(buf, size,
                        "{\"user_id\":\"%s\",\"headline\":\"bench profile %" PRIu64
                        "\",\"location\":\"Lyon\",\"timezone\":\"Europe/Paris\"}",
                        user, t->seq);
    }
    if (t->seq % 2 == 0) /* a new rate every time: each command writes an event */
        return snprintf(buf, size,
                        "{\"talent_id\":\"%s\",\"currency\":\"EUR\",\"hourly_rate\":%" PRIu64 "}",
                        talent, 1000 + t->seq % 99000000);
    uint64_t k = t->seq / 2;
    return snprintf(buf, size, "{\"talent_id\":\"%s\",\"skill\":\"%s\",\"level\":%d,\"years\":%d}",
                    talent, skills[k % N_SKILLS], (int)(1 + (k / N_SKILLS) % 5),
                    (int)((k / N_SKILLS / 5) % 40));
}

static const char *command_subject(cmdb_kind kind, const ticket *t)
{
    if (kind == CMDB_CREATE)
        return "guild.cmd." CMDB_DOMAIN ".create_profile";
    return t->seq % 2 == 0 ? "guild.cmd." CMDB_DOMAIN ".set_rate"
                           : "guild.cmd." CMDB_DOMAIN ".add_skill";
}

/* Builds and publishes request t; on failure frees its slot and counts an
 * error. Called without mu. */
static void ticket_send(cmdb_client *cl, cmdb_kind kind, const ticket *t)
{
    char subject[SUBJECT_MAX], reply[SUBJECT_MAX], body[BODY_MAX], id[64];
    int len = build_body(cl, kind, t, body, sizeof body);
    snprintf(subject, sizeof subject, "%s",
             kind == CMDB_ECHO ? cl->echo_subject : command_subject(kind, t));
    snprintf(reply, sizeof reply, "%s.%u_%" PRIu32, cl->inbox, t->slot, t->gen);
    snprintf(id, sizeof id, "bench-%s-%" PRIu64, cl->run_id, t->seq);

    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subject, reply, body, len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, BUS_H_CONTENT_TYPE, "application/json");
    if (s == NATS_OK && cl->bearer)
        s = natsMsgHeader_Set(m, BUS_H_AUTH, cl->bearer);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, BUS_H_COMMAND_ID, id);
    if (s == NATS_OK && t->expected) {
        char v[24];
        snprintf(v, sizeof v, "%" PRIu64, t->expected);
        s = natsMsgHeader_Set(m, BUS_H_EXPECTED, v);
    }
    if (s == NATS_OK)
        s = natsConnection_PublishMsg(cl->nc, m);
    natsMsg_Destroy(m);
    if (s == NATS_OK)
        return;
    pthread_mutex_lock(&cl->mu);
    if (cl->slots[t->slot].busy && cl->slots[t->slot].gen == t->gen) {
        slot_release(cl, t->slot);
        record_error(cl, "publish", "%s: %s", natsStatus_GetText(s));
    }
    pthread_mutex_unlock(&cl->mu);
}

/* A bounded search for `"key":` in a JSON body; the value's text or NULL. */
static const char *json_value_at(const char *data, size_t len, const char *key)
{
    size_t k = strlen(key);
    for (size_t i = 0; i + k + 3 <= len; i++) {
        if (data[i] != '"' || memcmp(data + i + 1, key, k) != 0 || data[i + 1 + k] != '"')
            continue;
        size_t j = i + k + 2;
        while (j < len && (data[j] == ' ' || data[j] == ':'))
            j++;
        return j < len ? data + j : NULL;
    }
    return NULL;
}

/* What a reply says, read without decoding the whole body when it is ok. */
typedef struct verdict {
    bool ok;
    uint64_t position, version;
    char code[32];
    char message[160];
    char talent_id[64];
} verdict;

static void read_reply(cmdb_kind kind, natsMsg *msg, verdict *v)
{
    const char *data = natsMsg_GetData(msg);
    size_t len = (size_t)natsMsg_GetDataLength(msg);
    memset(v, 0, sizeof *v);
    if (kind == CMDB_ECHO) {
        v->ok = true;
        return;
    }
    const char *status = NULL;
    natsMsgHeader_Get(msg, BUS_H_STATUS, &status);
    if (status && strcmp(status, "200") == 0) {
        v->ok = true;
        const char *p = json_value_at(data, len, "position");
        if (p)
            v->position = strtoull(p, NULL, 10);
        p = json_value_at(data, len, "version");
        if (p)
            v->version = strtoull(p, NULL, 10);
        if (kind == CMDB_CREATE) {
            const char *t = json_value_at(data, len, "talent_id");
            if (t && *t == '"')
                sscanf(t + 1, "%63[^\"]", v->talent_id);
        }
        return;
    }
    /* an error reply, or something else: decode it to say what */
    json_t *body = NULL;
    if (len == 0) {
        snprintf(v->code, sizeof v->code, "%s", "no_responders");
        snprintf(v->message, sizeof v->message, "empty reply (status %s)", status ? status : "-");
        return;
    }
    if (guild_codec_decode(data, len, guild_format_detect(NULL, data, len), &body, NULL) !=
        GUILD_OK) {
        snprintf(v->code, sizeof v->code, "%s", "bad_reply");
        snprintf(v->message, sizeof v->message, "a reply that does not decode (status %s)",
                 status ? status : "-");
        return;
    }
    json_t *err = json_object_get(body, "error");
    const char *code = json_string_value(json_object_get(err, "code"));
    const char *message = json_string_value(json_object_get(err, "message"));
    snprintf(v->code, sizeof v->code, "%s", code ? code : "bad_reply");
    snprintf(v->message, sizeof v->message, "%s", message ? message : "no error in the reply");
    json_decref(body);
}

static bool parse_token(const cmdb_client *cl, const char *subject, unsigned *i, uint32_t *gen)
{
    size_t n = strlen(cl->inbox);
    if (strncmp(subject, cl->inbox, n) != 0 || subject[n] != '.')
        return false;
    char *end = NULL;
    unsigned long a = strtoul(subject + n + 1, &end, 10);
    if (*end != '_')
        return false;
    unsigned long b = strtoul(end + 1, &end, 10);
    if (*end != '\0' || a >= CMDB_MAX_IN_FLIGHT)
        return false;
    *i = (unsigned)a;
    *gen = (uint32_t)b;
    return true;
}

static void on_reply(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    cmdb_client *cl = closure;
    uint64_t now = guild_mono_ns();
    unsigned i;
    uint32_t gen;
    if (!parse_token(cl, natsMsg_GetSubject(msg), &i, &gen)) {
        natsMsg_Destroy(msg);
        return;
    }
    pthread_mutex_lock(&cl->mu);
    const cmdb_spec *sp = cl->spec;
    bool current = sp && cl->slots[i].busy && cl->slots[i].gen == gen;
    cmdb_kind kind = sp ? sp->kind : CMDB_ECHO;
    pthread_mutex_unlock(&cl->mu);
    if (!current) { /* a reply after its timeout */
        natsMsg_Destroy(msg);
        return;
    }
    verdict v;
    read_reply(kind, msg, &v);
    natsMsg_Destroy(msg);

    ticket t;
    bool next = false;
    pthread_mutex_lock(&cl->mu);
    slot *s = &cl->slots[i];
    if (cl->spec == sp && s->busy && s->gen == gen) {
        cmdb_outcome *o = cl->out;
        if (cl->expect && kind == CMDB_COMMAND && s->talent < cl->n_talents)
            cl->versions[s->talent] = v.ok ? v.version : 0; /* a conflict: learn it again */
        slot_release(cl, i);
        o->replies++;
        if (v.ok) {
            if (now >= cl->m_start && now < cl->m_end)
                o->res.ops++;
            if (s->sent_ns >= cl->m_start && s->sent_ns < cl->m_end)
                bench_hist_record(&o->res.lat, now - s->sent_ns);
            if (v.position > o->max_position)
                o->max_position = v.position;
            if (v.talent_id[0] && cl->created)
                cl->created(cl->created_ctx, v.talent_id);
        } else {
            record_error(cl, v.code, "%s: %s", v.message);
        }
        next = ticket_take(cl, i, guild_mono_ns(), &t);
    }
    pthread_mutex_unlock(&cl->mu);
    if (next)
        ticket_send(cl, kind, &t);
}

/* ---- the echo responder ------------------------------------------------------
 *
 * The floor a command is compared with: NATS request-reply and nothing else,
 * on a connection of its own, answering each request with its own body.
 */

static void on_echo(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    (void)closure;
    const char *reply = natsMsg_GetReply(msg);
    if (reply)
        natsConnection_Publish(nc, reply, natsMsg_GetData(msg), natsMsg_GetDataLength(msg));
    natsMsg_Destroy(msg);
}

/* ---- creating and running the client ------------------------------------------ */

/* A connection for the bench's own traffic. With `asap`, each publish is
 * written to the socket at once; without, it waits in cnats's buffer for
 * its flusher thread, which lets a millisecond pass before each write to
 * gather more (what guild's connections do, bus_connect). */
static natsStatus bench_connect(const char *url, const char *name, bool asap, natsConnection **out)
{
    natsOptions *opts = NULL;
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(opts, url);
    if (s == NATS_OK)
        s = natsOptions_SetName(opts, name);
    if (s == NATS_OK)
        s = natsOptions_SetSendAsap(opts, asap);
    if (s == NATS_OK)
        s = natsOptions_SetMaxPendingMsgs(opts, 1000000);
    if (s == NATS_OK)
        s = natsConnection_Connect(out, opts);
    natsOptions_Destroy(opts);
    return s;
}

int cmdb_client_create(const char *url, bool echo, bool asap, cmdb_client **out)
{
    cmdb_client *cl = guild_xcalloc(1, sizeof *cl);
    guild_error err = {0};
    natsInbox *inbox = NULL;
    char subject[96];
    pthread_mutex_init(&cl->mu, NULL);
    cl->slots = guild_xcalloc(CMDB_MAX_IN_FLIGHT, sizeof *cl->slots);
    cl->rng = guild_mono_ns() | 1;
    snprintf(cl->run_id, sizeof cl->run_id, "%08" PRIx64, rng_next(&cl->rng) & 0xffffffffu);

    natsStatus s = bench_connect(url, "guild-bench", asap, &cl->nc);
    if (s != NATS_OK) {
        bus_nats_status(&err, s, "connecting to NATS");
        goto fail;
    }
    s = natsInbox_Create(&inbox);
    if (s == NATS_OK) {
        snprintf(cl->inbox, sizeof cl->inbox, "%s", (const char *)inbox);
        snprintf(subject, sizeof subject, "%s.*", cl->inbox);
        s = natsConnection_Subscribe(&cl->sub, cl->nc, subject, on_reply, cl);
    }
    natsInbox_Destroy(inbox);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(cl->sub, -1, -1);
    if (s != NATS_OK) {
        bus_nats_status(&err, s, "subscribing the inbox");
        goto fail;
    }
    if (echo) {
        s = bench_connect(url, "guild-bench-echo", asap, &cl->echo_nc);
        if (s != NATS_OK) {
            bus_nats_status(&err, s, "connecting the echo responder");
            goto fail;
        }
        snprintf(cl->echo_subject, sizeof cl->echo_subject, "bench.echo.%s", cl->run_id);
        s = natsConnection_Subscribe(&cl->echo_sub, cl->echo_nc, cl->echo_subject, on_echo, NULL);
        if (s == NATS_OK)
            s = natsSubscription_SetPendingLimits(cl->echo_sub, -1, -1);
        if (s == NATS_OK) /* the subscription is known to the server before any request */
            s = natsConnection_FlushTimeout(cl->echo_nc, 5000);
        if (s != NATS_OK) {
            bus_nats_status(&err, s, "starting the echo responder");
            goto fail;
        }
    }
    if ((s = natsConnection_FlushTimeout(cl->nc, 5000)) != NATS_OK) {
        bus_nats_status(&err, s, "subscribing the inbox");
        goto fail;
    }
    *out = cl;
    return 0;

fail:
    fprintf(stderr, "guild bench commands: %s\n", err.message);
    cmdb_client_destroy(cl);
    return -1;
}

void cmdb_client_target(cmdb_client *cl, const char *bearer, char *const *talent_ids,
                        unsigned n_talents)
{
    pthread_mutex_lock(&cl->mu);
    cl->bearer = bearer;
    if (cl->talents != talent_ids || cl->n_talents != n_talents) {
        free(cl->versions);
        free(cl->held);
        cl->versions = guild_xcalloc(n_talents ? n_talents : 1, sizeof *cl->versions);
        cl->held = guild_xcalloc(n_talents ? n_talents : 1, sizeof *cl->held);
    }
    cl->talents = talent_ids;
    cl->n_talents = n_talents;
    pthread_mutex_unlock(&cl->mu);
}

void cmdb_client_expect_versions(cmdb_client *cl, uint64_t initial)
{
    pthread_mutex_lock(&cl->mu);
    cl->expect = true;
    for (unsigned i = 0; i < cl->n_talents; i++)
        cl->versions[i] = initial;
    pthread_mutex_unlock(&cl->mu);
}

/* Times out what has waited too long; with `refill`, fills every idle slot
 * the run still wants. Called without mu. */
static void look_after_slots(cmdb_client *cl, unsigned n, bool refill)
{
    ticket t[64];
    unsigned k = 0;
    const uint64_t limit = (uint64_t)CMDB_TIMEOUT_MS * 1000000;
    cmdb_kind kind;
    do {
        k = 0;
        pthread_mutex_lock(&cl->mu);
        /* read under mu: a slot's sent_ns is never later than this */
        uint64_t now = guild_mono_ns();
        kind = cl->spec->kind;
        for (unsigned i = 0; i < n && k < 64; i++) {
            slot *s = &cl->slots[i];
            if (s->busy && now - s->sent_ns > limit) {
                slot_release(cl, i);
                s->gen++; /* its reply, if it comes, is late */
                cl->out->timeouts++;
            }
            if (!s->busy && refill && ticket_take(cl, i, now, &t[k]))
                k++;
        }
        pthread_mutex_unlock(&cl->mu);
        for (unsigned j = 0; j < k; j++)
            ticket_send(cl, kind, &t[j]);
    } while (k == 64);
}

static unsigned busy_count(cmdb_client *cl)
{
    pthread_mutex_lock(&cl->mu);
    unsigned b = cl->busy;
    pthread_mutex_unlock(&cl->mu);
    return b;
}

static uint64_t acked_position(cmdb_client *cl)
{
    pthread_mutex_lock(&cl->mu);
    uint64_t p = cl->out->max_position;
    pthread_mutex_unlock(&cl->mu);
    return p;
}

static void sleep_until(uint64_t t)
{
    uint64_t now = guild_mono_ns();
    if (t > now)
        bench_sleep((double)(t - now) / 1e9);
}

void cmdb_client_run(cmdb_client *cl, const cmdb_spec *spec, cmdb_outcome *out,
                     void (*created)(void *ctx, const char *talent_id), void *created_ctx)
{
    unsigned n = spec->in_flight < 1                    ? 1
                 : spec->in_flight > CMDB_MAX_IN_FLIGHT ? CMDB_MAX_IN_FLIGHT
                                                        : spec->in_flight;
    double cpu0 = bench_cpu_seconds();
    uint64_t t0 = guild_mono_ns();
    pthread_mutex_lock(&cl->mu);
    cl->spec = spec;
    cl->out = out;
    cl->created = created;
    cl->created_ctx = created_ctx;
    cl->accepting = true;
    cl->issued = cl->finished = 0;
    cl->m_start = t0 + (uint64_t)(spec->warmup * 1e9);
    cl->m_end = spec->seconds > 0 ? cl->m_start + (uint64_t)(spec->seconds * 1e9) : UINT64_MAX;
    uint64_t m_start = cl->m_start, m_end = cl->m_end;
    pthread_mutex_unlock(&cl->mu);

    look_after_slots(cl, n, true); /* the first N */
    uint64_t next_tick = m_start + TICK_NS;
    for (;;) {
        uint64_t now = guild_mono_ns();
        if (cmdb_interrupted)
            break;
        if (spec->seconds > 0 && now >= m_end) {
            if (spec->tick)
                spec->tick(spec->tick_ctx, acked_position(cl), true);
            break;
        }
        if (spec->seconds <= 0) {
            pthread_mutex_lock(&cl->mu);
            bool done = cl->finished >= spec->count;
            pthread_mutex_unlock(&cl->mu);
            if (done)
                break;
        }
        look_after_slots(cl, n, true);
        if (spec->tick && now >= next_tick) {
            spec->tick(spec->tick_ctx, acked_position(cl), false);
            next_tick += TICK_NS;
        }
        uint64_t wake = now + LOOP_NS;
        if (spec->seconds > 0 && m_end < wake)
            wake = m_end;
        sleep_until(wake);
    }
    /* Drain: no new requests; wait for those in flight (or their timeout). */
    pthread_mutex_lock(&cl->mu);
    cl->accepting = false;
    pthread_mutex_unlock(&cl->mu);
    while (busy_count(cl) > 0) {
        look_after_slots(cl, n, false);
        bench_sleep(0.001);
    }
    uint64_t end = guild_mono_ns();
    pthread_mutex_lock(&cl->mu);
    cl->spec = NULL;
    cl->out = NULL;
    cl->created = NULL;
    pthread_mutex_unlock(&cl->mu);
    if (spec->seconds > 0)
        out->res.seconds += (double)((end < m_end ? end : m_end) - m_start) / 1e9;
    else
        out->res.seconds += (double)(end - t0) / 1e9;
    out->client_cpu += bench_cpu_seconds() - cpu0;
    out->res.cpu_seconds = out->client_cpu;
}

void cmdb_client_destroy(cmdb_client *cl)
{
    if (!cl)
        return;
    if (cl->sub) {
        natsSubscription_Unsubscribe(cl->sub);
        natsSubscription_Destroy(cl->sub);
    }
    if (cl->echo_sub) {
        natsSubscription_Unsubscribe(cl->echo_sub);
        natsSubscription_Destroy(cl->echo_sub);
    }
    bus_close(cl->nc);
    bus_close(cl->echo_nc);
    pthread_mutex_destroy(&cl->mu);
    free(cl->slots);
    free(cl->versions);
    free(cl->held);
    free(cl);
}

/* ---- the probe -------------------------------------------------------------------- */

struct cmdb_probe {
    natsConnection *nc;
    jsCtx *js;
};

int cmdb_probe_create(const char *url, cmdb_probe **out)
{
    cmdb_probe *p = guild_xcalloc(1, sizeof *p);
    guild_error err = {0};
    if (bus_connect(url, "guild-bench-probe", 5000, &p->nc, &err) != GUILD_OK) {
        fprintf(stderr, "guild bench commands: %s\n", err.message);
        free(p);
        return -1;
    }
    natsStatus s = natsConnection_JetStream(&p->js, p->nc, NULL);
    if (s != NATS_OK) {
        fprintf(stderr, "guild bench commands: no JetStream context: %s\n", natsStatus_GetText(s));
        cmdb_probe_destroy(p);
        return -1;
    }
    *out = p;
    return 0;
}

int cmdb_probe_stream_position(cmdb_probe *p, uint64_t *out)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (js_GetStreamInfo(&si, p->js, CMDB_STREAM, NULL, &jerr) != NATS_OK)
        return -1;
    uint64_t last = si->State.LastSeq;
    jsStreamInfo_Destroy(si);
    *out = last;
    if (last == 0)
        return 0;
    natsMsg *m = NULL;
    if (js_GetMsg(&m, p->js, CMDB_STREAM, last, NULL, &jerr) != NATS_OK)
        return 0; /* the sequence will do */
    const char *pos = NULL;
    if (natsMsgHeader_Get(m, "Guild-Position", &pos) == NATS_OK && pos)
        *out = strtoull(pos, NULL, 10);
    natsMsg_Destroy(m);
    return 0;
}

static uint64_t json_u64(const json_t *o, const char *key)
{
    json_int_t v = json_integer_value(json_object_get(o, key));
    return v > 0 ? (uint64_t)v : 0;
}

void cmdb_probe_service_stats(cmdb_probe *p, cmdb_service_stats *out)
{
    memset(out, 0, sizeof *out);
    natsMsg *reply = NULL;
    if (natsConnection_RequestString(&reply, p->nc, "$SRV.STATS." CMDB_DOMAIN, "", 2000) != NATS_OK)
        return;
    out->at_ns = guild_mono_ns();
    json_t *doc = NULL;
    const char *data = natsMsg_GetData(reply);
    size_t len = (size_t)natsMsg_GetDataLength(reply);
    if (guild_codec_decode(data, len, GUILD_FMT_JSON, &doc, NULL) == GUILD_OK) {
        size_t i;
        json_t *ep;
        json_array_foreach(json_object_get(doc, "endpoints"), i, ep)
        {
            const char *name = json_string_value(json_object_get(ep, "name"));
            if (!name || strcmp(name, "commands") != 0)
                continue;
            json_t *d = json_object_get(ep, "data");
            out->ok = true;
            out->requests = json_u64(ep, "num_requests");
            out->errors = json_u64(ep, "num_errors");
            out->processing_ns = json_u64(ep, "processing_time");
            out->batches = json_u64(d, "batches");
            out->appends = json_u64(d, "appends");
            out->writer_busy_ns = json_u64(d, "writer_busy_ns");
            out->relay_lag = json_u64(d, "relay_lag");
        }
        json_decref(doc);
    }
    natsMsg_Destroy(reply);
}

void cmdb_probe_destroy(cmdb_probe *p)
{
    if (!p)
        return;
    jsCtx_Destroy(p->js);
    bus_close(p->nc);
    free(p);
}
