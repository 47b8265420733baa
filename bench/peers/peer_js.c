/*
 * peer_js.c — NATS JetStream used directly as the event store: one stream
 * ES on the subjects es.>, file storage, one subject per event stream
 * (es.<stream>). An append is a publish carrying
 * Nats-Expected-Last-Subject-Sequence: the stream sequence of the last
 * message on that subject, which the server checks before it stores the
 * message (that sequence is what stands for the stream's version here). A
 * Nats-Msg-Id makes a publish given again a duplicate, as guild's command ids
 * and PostgreSQL's unique event id do.
 *
 * Map
 *   - nats-server: started on loopback with its store in the bench's directory
 *   - publishing: cnats's asynchronous publish, K in flight; each
 *     acknowledgement sends the next append from the acknowledgement handler
 *   - prefill, reads with ordered consumers, the count check; the peer
 *     (pw_jetstream_ops)
 *
 * Durability: nats-server 2.9 acknowledges a publish once the message is
 * written to its file, before any fsync (it syncs every two minutes by
 * default), so this peer promises less than the others.
 */
#include "peers.h"

#include "common/alloc.h"
#include "common/clock.h"
#include "common/uuid.h"

#include <errno.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JS_STREAM "ES"
#define JS_PREFIX "es."
#define JS_WINDOW_PREFILL 1024
#define JS_MAX_PENDING 8192
#define JS_READY_WAIT_MS 20000

typedef struct js_peer {
    const pw_config *cfg;
    pw_table table;
    pw_proc nats;
    char url[64];
    natsConnection *nc;
    jsCtx *js;
    pw_table *t;
    /* the prefill: how many are in flight, the first failure */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool prefilling;
    unsigned pending;
    uint64_t failed;
    char error[200];
} js_peer;

/* ---- nats-server ------------------------------------------------------------- */

static natsStatus js_connect(const char *url, bool asap, natsConnection **out)
{
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, url);
    if (s == NATS_OK)
        s = natsOptions_SetName(o, "guild-peers-jetstream");
    if (s == NATS_OK)
        s = natsOptions_SetSendAsap(o, asap);
    if (s == NATS_OK)
        s = natsOptions_SetMaxPendingMsgs(o, 1000000);
    if (s == NATS_OK)
        s = natsConnection_Connect(out, o);
    natsOptions_Destroy(o);
    return s;
}

static int server_start(const pw_config *cfg, js_peer *jp, pw_peer *p)
{
    char store[PW_PATH_MAX], port[16];
    int pn = pw_free_port();
    snprintf(port, sizeof port, "%d", pn);
    snprintf(store, sizeof store, "%s/jetstream", cfg->root);
    snprintf(jp->url, sizeof jp->url, "nats://127.0.0.1:%d", pn);
    snprintf(jp->nats.name, sizeof jp->nats.name, "nats-server");
    snprintf(jp->nats.log, sizeof jp->nats.log, "%s/jetstream.log", cfg->root);
    const char *argv[] = {"nats-server", "-js", "-sd", store,        "-a", "127.0.0.1",
                          "-p",          port,  "-l",  jp->nats.log, NULL};
    if (pw_nats_start(&jp->nats, argv, jp->url, "jetstream", p) != 0)
        return -1;
    natsStatus s = js_connect(jp->url, cfg->asap, &jp->nc);
    if (s != NATS_OK) {
        pw_peer_fail(p, "cannot connect to nats-server: %s", natsStatus_GetText(s));
        return -1;
    }
    return 0;
}

/* ---- publishing ---------------------------------------------------------------- */

/* The table's index of the stream a subject names; false if none. */
static bool stream_index(const pw_table *t, const char *subject, unsigned *idx)
{
    const char *acct = JS_PREFIX "account-", *ledger = JS_PREFIX "ledger-";
    if (strncmp(subject, acct, strlen(acct)) == 0) {
        unsigned long i = strtoul(subject + strlen(acct), NULL, 10);
        if (i >= t->n)
            return false;
        *idx = (unsigned)i;
        return true;
    }
    if (strncmp(subject, ledger, strlen(ledger)) == 0) {
        *idx = pw_long(t);
        return true;
    }
    return false;
}

/* Publishes event `seq` of stream idx; `expected` is the sequence the
 * server must find last on its subject, or UINT64_MAX for none. */
static natsStatus publish(js_peer *jp, unsigned idx, uint64_t seq, uint64_t expected)
{
    const pw_stream *s = &jp->t->s[idx];
    char subject[64], data[160], id[GUILD_UUID_STRLEN + 1], exp[24];
    snprintf(subject, sizeof subject, JS_PREFIX "%s", s->name);
    int len = pw_event_json(s->name, seq, data, sizeof data);
    guild_uuid7(id);
    natsMsg *m = NULL;
    natsStatus st = natsMsg_Create(&m, subject, NULL, data, len);
    if (st == NATS_OK)
        st = natsMsgHeader_Set(m, "Nats-Msg-Id", id);
    if (st == NATS_OK)
        st = natsMsgHeader_Set(m, "Event-Type", PW_EVENT_TYPE);
    if (st == NATS_OK && expected != UINT64_MAX) {
        snprintf(exp, sizeof exp, "%" PRIu64, expected);
        st = natsMsgHeader_Set(m, "Nats-Expected-Last-Subject-Sequence", exp);
    }
    if (st == NATS_OK)
        st = js_PublishMsgAsync(jp->js, &m, NULL);
    natsMsg_Destroy(m); /* no effect once the library took it */
    return st;
}

/* Takes a stream and sends its append, while the window is open. */
static void publish_next(js_peer *jp)
{
    unsigned idx;
    uint64_t expected;
    if (!pw_table_take(jp->t, &idx, &expected))
        return;
    /* the stream's count changes only under its holder: this append */
    natsStatus st = publish(jp, idx, jp->t->s[idx].count + 1, expected);
    if (st != NATS_OK)
        pw_table_finish(jp->t, idx, PW_ERROR, 0, natsStatus_GetText(st));
}

static void prefill_ack(js_peer *jp, unsigned idx, const jsPubAck *pa, const jsPubAckErr *pae)
{
    if (pa)
        pw_table_set(jp->t, idx, pa->Sequence);
    pthread_mutex_lock(&jp->mu);
    if (!pa) {
        jp->failed++;
        if (jp->error[0] == '\0')
            snprintf(jp->error, sizeof jp->error, "%s",
                     pae && pae->ErrText ? pae->ErrText : "no acknowledgement");
    }
    jp->pending--;
    pthread_cond_broadcast(&jp->cv);
    pthread_mutex_unlock(&jp->mu);
}

/* cnats calls this for every acknowledgement (or failure), one at a time. */
static void on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    js_peer *jp = closure;
    unsigned idx;
    bool known = stream_index(jp->t, natsMsg_GetSubject(msg), &idx);
    natsMsg_Destroy(msg);
    if (!known)
        return;
    if (jp->prefilling) {
        prefill_ack(jp, idx, pa, pae);
        return;
    }
    if (pa && !pa->Duplicate) {
        pw_table_finish(jp->t, idx, PW_OK, pa->Sequence, NULL);
    } else if (pa) {
        pw_table_finish(jp->t, idx, PW_ERROR, 0, "taken for a duplicate");
    } else {
        char why[200];
        snprintf(why, sizeof why, "%s (%d)", pae && pae->ErrText ? pae->ErrText : "failed",
                 pae ? (int)pae->ErrCode : 0);
        pw_table_finish(
            jp->t, idx,
            pae && pae->ErrCode == JSStreamWrongLastSequenceErr ? PW_CONFLICT : PW_ERROR, 0, why);
    }
    publish_next(jp);
}

static int js_setup(js_peer *jp, pw_peer *p)
{
    jsOptions o;
    jsOptions_Init(&o);
    o.PublishAsync.MaxPending = JS_MAX_PENDING;
    o.PublishAsync.AckHandler = on_ack;
    o.PublishAsync.AckHandlerClosure = jp;
    natsStatus s = natsConnection_JetStream(&jp->js, jp->nc, &o);
    if (s != NATS_OK) {
        pw_peer_fail(p, "no JetStream context: %s", natsStatus_GetText(s));
        return -1;
    }
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const char *subjects[] = {JS_PREFIX ">"};
    sc.Name = JS_STREAM;
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    jsErrCode jerr = 0;
    jsStreamInfo *si = NULL;
    uint64_t t0 = guild_mono_ns();
    do { /* JetStream may take a moment after the server accepts connections */
        s = js_AddStream(&si, jp->js, &sc, NULL, &jerr);
        if (s == NATS_OK)
            break;
        bench_sleep(0.1);
    } while (guild_mono_ns() - t0 < (uint64_t)JS_READY_WAIT_MS * 1000000 && !cmdb_interrupted);
    jsStreamInfo_Destroy(si);
    if (s != NATS_OK) {
        pw_peer_fail(p, "cannot create the stream %s: %s (%d)", JS_STREAM, natsStatus_GetText(s),
                     (int)jerr);
        return -1;
    }
    return 0;
}

/* ---- prefill, reads, the count check ------------------------------------------------ */

static int prefill(js_peer *jp, unsigned long_events, pw_peer *p)
{
    pw_table *t = jp->t;
    unsigned total = t->n + long_events;
    jp->prefilling = true;
    for (unsigned i = 0; i < total && !cmdb_interrupted; i++) {
        pthread_mutex_lock(&jp->mu);
        while (jp->pending >= JS_WINDOW_PREFILL)
            pthread_cond_wait(&jp->cv, &jp->mu);
        jp->pending++;
        pthread_mutex_unlock(&jp->mu);
        /* the long stream's events go out in order on one connection, so
         * they are stored in order: no expected sequence needed here */
        natsStatus s =
            publish(jp, i < t->n ? i : pw_long(t), i < t->n ? 1 : i - t->n + 1, UINT64_MAX);
        if (s != NATS_OK) {
            pthread_mutex_lock(&jp->mu);
            jp->pending--;
            jp->failed++;
            pthread_mutex_unlock(&jp->mu);
        }
    }
    pthread_mutex_lock(&jp->mu);
    while (jp->pending > 0)
        pthread_cond_wait(&jp->cv, &jp->mu);
    pthread_mutex_unlock(&jp->mu);
    jp->prefilling = false;
    if (jp->failed) {
        pw_peer_fail(p, "prefill: %" PRIu64 " publishes failed: %s", jp->failed, jp->error);
        return -1;
    }
    return 0;
}

/* Reads `expected` messages of `subject` with an ordered consumer (an
 * ephemeral consumer that delivers in order, with flow control). */
static int64_t read_subject(js_peer *jp, const char *subject, uint64_t expected, pw_read *out)
{
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = JS_STREAM;
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverAll;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_SubscribeSync(&sub, jp->js, subject, NULL, &so, &jerr);
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(sub, -1, -1);
    uint64_t n = 0;
    while (s == NATS_OK && n < expected) {
        natsMsg *m = NULL;
        s = natsSubscription_NextMsg(&m, sub, 5000);
        if (s == NATS_OK) {
            out->bytes += (uint64_t)natsMsg_GetDataLength(m);
            n++;
        }
        natsMsg_Destroy(m);
    }
    if (sub) {
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
    }
    if (s != NATS_OK) {
        snprintf(out->error, sizeof out->error, "%s after %" PRIu64 " of %" PRIu64 " messages",
                 natsStatus_GetText(s), n, expected);
        return -1;
    }
    return (int64_t)n;
}

static void timed_read(js_peer *jp, const char *subject, uint64_t expected, double seconds,
                       pw_read *out)
{
    uint64_t t0 = guild_mono_ns();
    do {
        int64_t n = read_subject(jp, subject, expected, out);
        if (n < 0)
            return;
        out->events += (uint64_t)n;
    } while ((double)(guild_mono_ns() - t0) / 1e9 < seconds && !cmdb_interrupted);
    out->seconds = (double)(guild_mono_ns() - t0) / 1e9;
    out->ran = true;
}

static void check_counts(js_peer *jp, pw_peer *p)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    if (js_GetStreamInfo(&si, jp->js, JS_STREAM, NULL, &jerr) != NATS_OK)
        return;
    p->stored = si->State.Msgs;
    p->acked = jp->t->acked;
    p->checked = true;
    jsStreamInfo_Destroy(si);
}

/* ---- the peer ------------------------------------------------------------------------- */

static int js_start(const pw_config *cfg, pw_peer *p, void **ctx)
{
    js_peer *jp = guild_xcalloc(1, sizeof *jp);
    *ctx = jp;
    jp->cfg = cfg;
    pw_table_init(&jp->table, cfg->n_streams);
    jp->t = &jp->table;
    pthread_mutex_init(&jp->mu, NULL);
    pthread_cond_init(&jp->cv, NULL);
    if (server_start(cfg, jp, p) != 0)
        return -1;
    uint64_t t0 = guild_mono_ns();
    if (js_setup(jp, p) != 0 || prefill(jp, cfg->long_events, p) != 0)
        return -1;
    printf("[jetstream] stream %s and %u events written in %.2f s\n", JS_STREAM,
           jp->t->n + cfg->long_events, (double)(guild_mono_ns() - t0) / 1e9);
    return 0;
}

/* k appends go out; each acknowledgement sends the next (on_ack). */
static void js_slice(void *ctx, unsigned k, pw_phase *ph, double warmup, double seconds)
{
    js_peer *jp = ctx;
    pw_cpu_mark m;
    pw_cpu_mark_take(&m, jp->nats.pid, false);
    pw_table_begin(jp->t, ph, warmup, seconds);
    for (unsigned j = 0; j < k; j++)
        publish_next(jp);
    pw_table_wait_window(jp->t);
    pw_table_end(jp->t);
    pw_cpu_mark_end(&m, jp->nats.pid, false, ph);
}

static void js_finish(void *ctx, pw_peer *p)
{
    js_peer *jp = ctx;
    pw_table *t = jp->t;
    char subject[64];
    snprintf(subject, sizeof subject, JS_PREFIX "%s", t->s[pw_long(t)].name);
    double s = jp->cfg->seconds < 1 ? jp->cfg->seconds : 1;
    timed_read(jp, subject, t->s[pw_long(t)].count, s, &p->read_stream);
    timed_read(jp, JS_PREFIX ">", t->acked, 0, &p->read_log);
    check_counts(jp, p);
}

static void js_stop(void *ctx, pw_peer *p)
{
    js_peer *jp = ctx;
    if (!jp)
        return;
    jsCtx_Destroy(jp->js);
    if (jp->nc) {
        natsConnection_Close(jp->nc);
        natsConnection_Destroy(jp->nc);
    }
    pw_stop(&jp->nats);
    pw_peer_note(p, "nats-server 2.9 acknowledges a publish before it syncs it to disk (it "
                    "syncs every 2 minutes): less durable than the others");
    pthread_mutex_destroy(&jp->mu);
    pthread_cond_destroy(&jp->cv);
    pw_table_release(&jp->table);
    free(jp);
}

const pw_peer_ops pw_jetstream_ops = {
    .start = js_start,
    .begin = pw_no_begin,
    .end = pw_no_end,
    .slice = js_slice,
    .finish = js_finish,
    .stop = js_stop,
};
