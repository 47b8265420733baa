/*
 * relay.c — the outbox relay (see relay.h for what it promises).
 *
 * One thread per relay runs relay_main: it keeps the stream in sync with
 * the log by reading batches of committed events and publishing them
 * asynchronously; JetStream's acks arrive on a cnats thread in relay_on_ack.
 * The two share the fields under `mu`; everything else belongs to the relay
 * thread.
 *
 * The ordering guard: position P is published with
 * Nats-Expected-Last-Sequence = base_seq + (P - 1 - base_pos), where
 * (base_pos, base_seq) is the last position and the last stream sequence
 * read at the latest sync. The server refuses any message that would not
 * land right after its predecessor, so an ack for P proves that every
 * position before it is in the stream, and a failure anywhere makes the
 * relay re-sync instead of leaving a hole (as long as nothing else publishes
 * into the stream: see relay_gap). The only unguarded publish is
 * position 1 into a stream that never held a message (an expected last
 * sequence of 0 is not checked by the server); nothing can precede it.
 *
 * Sections: names and subjects; stream set-up and sync; acks; publishing;
 * the cursor; the thread; the public calls.
 */
#include "bus/relay.h"

#include "bus/conn.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/text.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DOMAIN_MAX 32
#define SUBJECT_MAX 512
#define RETRY_MIN_MS 10
#define DISCONNECTED_POLL_MS 20
#define HDR_EXPECTED_LAST_SEQ "Nats-Expected-Last-Sequence" /* JetStream's ordering guard */

struct bus_relay {
    natsConnection *nc; /* borrowed */
    es_store *st;       /* borrowed */
    jsCtx *js;          /* owned */
    natsStatistics *nstats;
    bus_relay_options opt;
    char domain[DOMAIN_MAX + 1];
    char stream_name[sizeof BUS_RELAY_STREAM_PREFIX + DOMAIN_MAX];
    char subjects[sizeof BUS_RELAY_SUBJECT_PREFIX + DOMAIN_MAX + 2]; /* guild.evt.<d>.> */
    pthread_t thread;

    pthread_mutex_t mu;
    pthread_cond_t cv; /* monotonic clock */
    /* Under mu. */
    bool stopping;
    bool kicked;         /* bus_relay_notify since the relay last looked */
    bool lingering;      /* in a linger (relay_wait): a notification need not wake it */
    bool ack_failed;     /* a publish failed: re-sync */
    bool in_sync;        /* connected and synced */
    bool want_room;      /* the relay waits for acks to free the window */
    unsigned waiters;    /* callers in bus_relay_wait_caught_up */
    uint64_t acked;      /* last acknowledged position */
    uint64_t cursor;     /* last stored cursor */
    uint64_t refused_at; /* first position refused for a wrong last sequence since the sync */
    uint64_t errors, resyncs, duplicates, gaps, acks;

    /* Relay thread only. */
    uint64_t sent;     /* last position handed to JetStream */
    uint64_t base_pos; /* the ordering guard, see above */
    uint64_t base_seq;
    uint64_t reconnects; /* the connection's reconnect count at the last sync */
    uint64_t cursor_ns;  /* when the cursor was last stored */
    bool need_sync;
    bool refused;    /* the last sync failed because JetStream refused it */
    bool async_used; /* cnats keeps no pending list before the first async publish */
    bool failing;    /* the last attempt failed: log recovery once */
    unsigned backoff_ms;
    uint64_t retry_ns;
    uint64_t round_ns; /* when the last round that reached the log's head ended; 0 if the
                          last look found nothing new */
};

static void relay_error(bus_relay *r)
{
    pthread_mutex_lock(&r->mu);
    r->errors++;
    pthread_mutex_unlock(&r->mu);
}

/* Sets when the next re-sync may run: at once if the last sync led to
 * acks, else after a back-off that doubles up to retry_max_ms, so a failure
 * that repeats does not spin. */
static void retry_later(bus_relay *r, bool progressed)
{
    if (progressed) {
        r->backoff_ms = 0;
    } else {
        r->backoff_ms = r->backoff_ms ? r->backoff_ms * 2 : RETRY_MIN_MS;
        if (r->backoff_ms > r->opt.retry_max_ms)
            r->backoff_ms = r->opt.retry_max_ms;
    }
    r->retry_ns = guild_mono_ns() + (uint64_t)r->backoff_ms * 1000000u;
}

/* ---- names and subjects --------------------------------------------------- */

static bool domain_ok(const char *d)
{
    size_t n = strlen(d);
    if (n == 0 || n > DOMAIN_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((d[i] >= 'a' && d[i] <= 'z') || (d[i] >= '0' && d[i] <= '9') || d[i] == '_'))
            return false;
    return true;
}

/* Appends `s` to buf at *at as one subject token. */
static void put_token(char *buf, size_t *at, const char *s, size_t n)
{
    if (n == 0) {
        s = "_";
        n = 1;
    }
    for (size_t i = 0; i < n && *at < SUBJECT_MAX - 1; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[(*at)++] = (c <= ' ' || c == '.' || c == '*' || c == '>' || c == 0x7f) ? '_' : (char)c;
    }
    buf[*at] = '\0';
}

/* guild.evt.<domain>.<type>.<aggregate id> */
static void event_subject(const bus_relay *r, const es_record *rec, char buf[SUBJECT_MAX])
{
    /* the prefix and a checked domain name (domain_ok) need no escaping */
    size_t at = sizeof BUS_RELAY_SUBJECT_PREFIX - 1, dn = strlen(r->domain);
    memcpy(buf, BUS_RELAY_SUBJECT_PREFIX, at);
    memcpy(buf + at, r->domain, dn);
    at += dn;
    buf[at++] = '.';
    put_token(buf, &at, rec->type.p, rec->type.n); /* ES_TYPE_MAX keeps it far from the end */
    buf[at++] = '.';
    const char *dash = memchr(rec->stream.p, '-', rec->stream.n);
    const char *agg = dash ? dash + 1 : rec->stream.p;
    put_token(buf, &at, agg, rec->stream.n - (size_t)(agg - rec->stream.p));
}

/* ---- stream set-up and sync ------------------------------------------------ */

/* Fills *err for a failed JetStream call. `refused` records whether
 * JetStream answered with an error of its own (a refusal that retrying will
 * not cure, such as JetStream being disabled or the subjects overlapping
 * another stream) rather than failing to answer. */
static guild_status nats_fail(guild_error *err, natsStatus s, jsErrCode jerr, const char *what,
                              bus_relay *r)
{
    r->refused = jerr != 0 && jerr != JSClusterNotAvailErr && jerr != JSClusterNoPeersErr &&
                 jerr != JSClusterNotLeaderErr;
    const char *text = nats_GetLastError(NULL);
    return guild_error_set(err, GUILD_UNAVAILABLE, (int)s, "%s %s: %s (%s, JetStream error %d)",
                           what, r->stream_name, natsStatus_GetText(s), text ? text : "",
                           (int)jerr);
}

/* Finds the stream, creating it when missing; *si is owned by the caller. */
static guild_status stream_ensure(bus_relay *r, jsStreamInfo **si, guild_error *err)
{
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(si, r->js, r->stream_name, NULL, &jerr);
    if (s == NATS_OK)
        return GUILD_OK;
    if (s != NATS_NOT_FOUND && jerr != JSStreamNotFoundErr)
        return nats_fail(err, s, jerr, "stream info of", r);

    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    const char *subjects[] = {r->subjects};
    cfg.Name = r->stream_name;
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    cfg.Storage = js_FileStorage;
    cfg.Duplicates = BUS_RELAY_DUPLICATE_WINDOW_NS;
    jerr = 0;
    s = js_AddStream(si, r->js, &cfg, NULL, &jerr);
    if (s != NATS_OK && jerr == JSStreamNameExistErr) /* created meanwhile by someone else */
        s = js_GetStreamInfo(si, r->js, r->stream_name, NULL, &jerr);
    if (s != NATS_OK)
        return nats_fail(err, s, jerr, "creating stream", r);
    guild_info("relay: created stream %s for %s", r->stream_name, r->subjects);
    return GUILD_OK;
}

/* The Guild-Position of the stream's last message: *found false when the
 * message is gone or carries none. */
static guild_status stream_last_position(bus_relay *r, uint64_t last_seq, uint64_t *pos,
                                         bool *found, guild_error *err)
{
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetMsg(&m, r->js, r->stream_name, last_seq, NULL, &jerr);
    if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
        jerr = 0;
        s = js_GetLastMsg(&m, r->js, r->stream_name, r->subjects, NULL, &jerr);
        if (s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr) {
            *found = false;
            return GUILD_OK;
        }
    }
    if (s != NATS_OK)
        return nats_fail(err, s, jerr, "reading the last message of", r);
    const char *v = NULL;
    *found = false;
    if (natsMsgHeader_Get(m, BUS_HDR_POSITION, &v) == NATS_OK && v && *v) {
        char *end = NULL;
        errno = 0;
        unsigned long long p = strtoull(v, &end, 10);
        if (errno == 0 && end && *end == '\0' && p > 0) {
            *pos = p;
            *found = true;
        }
    }
    natsMsg_Destroy(m);
    return GUILD_OK;
}

/* Where to resume, from the stream's state and the cursor (see relay.h). */
static uint64_t resume_after(bus_relay *r, uint64_t last_seq, bool have_g, uint64_t g,
                             uint64_t cursor)
{
    if (have_g) {
        if (cursor > g)
            guild_warn("relay: stream %s ends at position %" PRIu64 ", behind the cursor %" PRIu64
                       "; publishing again from %" PRIu64,
                       r->stream_name, g, cursor, g + 1);
        return g;
    }
    if (last_seq == 0) {
        if (cursor > 0)
            guild_warn("relay: stream %s is new; publishing the log again from 1", r->stream_name);
        return 0;
    }
    pthread_mutex_lock(&r->mu);
    uint64_t acked = r->acked;
    pthread_mutex_unlock(&r->mu);
    return cursor > acked ? cursor : acked;
}

static uint64_t msg_position(natsMsg *m)
{
    const char *v = NULL;
    if (natsMsgHeader_Get(m, BUS_HDR_POSITION, &v) != NATS_OK || !v)
        return 0;
    return strtoull(v, NULL, 10);
}

/* Position `refused_at` was refused for following the wrong sequence, yet
 * `pos` after it was stored: the only way is that something else published
 * into the stream in between, which took the refused position's place. The
 * stream now lacks that position; the relay goes on from its tail and says
 * so, since publishing the missing event later would put it out of order.
 * Under mu. */
static void relay_gap(bus_relay *r, uint64_t pos)
{
    guild_error("relay: stream %s lacks position %" PRIu64 " (holds %" PRIu64
                " after it): something else publishes into it; it no longer mirrors the log",
                r->stream_name, r->refused_at, pos);
    r->gaps++;
    r->errors++;
    r->refused_at = 0;
}

/* The other way to see a gap: the acks of the publishes after the refused
 * one were dropped by a re-sync, but the stream went on to position g. The
 * message at the sequence the refused position was meant to take tells. */
static void check_refused(bus_relay *r, uint64_t g)
{
    pthread_mutex_lock(&r->mu);
    uint64_t p = r->refused_at;
    pthread_mutex_unlock(&r->mu);
    if (!p || g < p)
        return;
    natsMsg *m = NULL;
    jsErrCode jerr = 0;
    natsStatus s =
        js_GetMsg(&m, r->js, r->stream_name, r->base_seq + (p - r->base_pos), NULL, &jerr);
    bool gap =
        s == NATS_OK ? msg_position(m) != p : s == NATS_NOT_FOUND || jerr == JSNoMessageFoundErr;
    natsMsg_Destroy(m);
    pthread_mutex_lock(&r->mu);
    if (gap)
        relay_gap(r, g);
    pthread_mutex_unlock(&r->mu);
}

/* Reads the stream's state and sets where publishing resumes. */
static guild_status relay_sync(bus_relay *r, guild_error *err)
{
    jsStreamInfo *si = NULL;
    guild_status gs = stream_ensure(r, &si, err);
    if (gs != GUILD_OK)
        return gs;
    uint64_t last_seq = si->State.LastSeq, msgs = si->State.Msgs;
    jsStreamInfo_Destroy(si);

    uint64_t g = 0;
    bool have_g = false;
    if (msgs > 0 && (gs = stream_last_position(r, last_seq, &g, &have_g, err)) != GUILD_OK)
        return gs;
    uint64_t cursor = 0, head = 0;
    gs = es_meta_get_u64(r->st, BUS_RELAY_CURSOR_KEY, &cursor);
    if (gs == GUILD_NOT_FOUND)
        cursor = 0;
    else if (gs != GUILD_OK)
        return guild_error_set(err, gs, 0, "relay: reading the cursor failed");
    if ((gs = es_log_head(r->st, &head, NULL)) != GUILD_OK)
        return guild_error_set(err, gs, 0, "relay: reading the log head failed");

    if (have_g)
        check_refused(r, g);
    uint64_t done = resume_after(r, last_seq, have_g, g, cursor);
    if (done > head) {
        guild_error("relay: stream %s holds position %" PRIu64 " but the log ends at %" PRIu64
                    ": is this the right store?",
                    r->stream_name, done, head);
        relay_error(r);
    }
    r->sent = r->base_pos = done;
    r->base_seq = last_seq;
    pthread_mutex_lock(&r->mu);
    r->acked = done;
    r->ack_failed = false;
    r->refused_at = 0;
    r->in_sync = true;
    r->resyncs++;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    return GUILD_OK;
}

/* ---- acks ------------------------------------------------------------------ */

/* Runs on a cnats thread for every publish, acked or failed. */
static void relay_on_ack(jsCtx *js, natsMsg *msg, jsPubAck *pa, jsPubAckErr *pae, void *closure)
{
    (void)js;
    bus_relay *r = closure;
    uint64_t pos = msg_position(msg);
    pthread_mutex_lock(&r->mu);
    r->acks++;
    if (pa) {
        if (pa->Duplicate)
            r->duplicates++;
        if (r->refused_at && pos > r->refused_at && !pa->Duplicate)
            relay_gap(r, pos);
        if (pos > r->acked)
            r->acked = pos;
        if (r->want_room || r->waiters)
            pthread_cond_broadcast(&r->cv);
    } else {
        if (!r->ack_failed && !r->stopping)
            guild_warn("relay: publish of %s:%" PRIu64 " failed: %s (JetStream error %d)",
                       r->domain, pos, pae && pae->ErrText ? pae->ErrText : "?",
                       pae ? (int)pae->ErrCode : 0);
        if (pae && pae->ErrCode == JSStreamWrongLastSequenceErr && !r->refused_at)
            r->refused_at = pos;
        r->ack_failed = true;
        r->errors++;
        pthread_cond_broadcast(&r->cv);
    }
    pthread_mutex_unlock(&r->mu);
    bus_msg_free(msg); /* the handler owns the message it is told about */
}

/* Takes back every publish still awaiting its ack and waits for ack
 * handlers already running: afterwards no old ack reaches relay_on_ack. */
static void abandon_in_flight(bus_relay *r)
{
    natsMsgList pending;
    if (r->async_used && js_PublishAsyncGetPendingList(&pending, r->js) == NATS_OK)
        natsMsgList_Destroy(&pending);
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 5000;
    if (js_PublishAsyncComplete(r->js, &po) != NATS_OK)
        guild_warn("relay: an ack handler of %s did not return in 5 s", r->stream_name);
    r->sent = r->base_pos;
    pthread_mutex_lock(&r->mu);
    if (r->sent < r->acked)
        r->sent = r->acked;
    pthread_mutex_unlock(&r->mu);
}

/* ---- publishing ------------------------------------------------------------ */

typedef struct batch {
    bus_relay *r;
    natsMsg **msgs;
    size_t n;
    uint64_t expect; /* position of the next record */
    guild_status status;
} batch;

static natsStatus set_header_u64(natsMsg *m, const char *key, uint64_t v)
{
    char buf[GUILD_U64_DEC_MAX];
    guild_u64_dec(buf, v);
    return natsMsgHeader_Set(m, key, buf);
}

static natsMsg *event_msg(const bus_relay *r, const es_record *rec)
{
    char subject[SUBJECT_MAX], buf[ES_STREAM_MAX + 1], id[DOMAIN_MAX + 24];
    event_subject(r, rec, subject);
    natsMsg *m = NULL;
    natsStatus s = natsMsg_Create(&m, subject, NULL, (const char *)rec->raw, (int)rec->raw_len);
    guild_name_u64(id, sizeof id, r->domain, rec->position);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, BUS_HDR_MSG_ID, id);
    guild_copy_n(buf, sizeof buf, rec->stream.p, rec->stream.n);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, BUS_HDR_STREAM, buf);
    if (s == NATS_OK)
        s = set_header_u64(m, BUS_HDR_VERSION, rec->version);
    if (s == NATS_OK)
        s = set_header_u64(m, BUS_HDR_POSITION, rec->position);
    if (s == NATS_OK && rec->correlation_id.n > 0) {
        guild_copy_n(buf, sizeof buf, rec->correlation_id.p, rec->correlation_id.n);
        s = natsMsgHeader_Set(m, BUS_HDR_CORRELATION_ID, buf);
    }
    if (s != NATS_OK) /* only out of memory gets here */
        GUILD_BUG("relay: building a message failed: %s", natsStatus_GetText(s));
    return m;
}

static int batch_add(void *ctx, const es_record *rec)
{
    batch *b = ctx;
    if (rec->position != b->expect) {
        b->status = GUILD_CORRUPT;
        return 1;
    }
    b->msgs[b->n++] = event_msg(b->r, rec);
    b->expect++;
    return 0;
}

/* A publish between the first and the last of a batch: the same ordering
 * guard, no ack asked for (relay.h, "How it stays exact"). Frees m once
 * it is handed over. */
static natsStatus publish_unacked(bus_relay *r, natsMsg *m, uint64_t expect_last_seq)
{
    char buf[GUILD_U64_DEC_MAX];
    guild_u64_dec(buf, expect_last_seq);
    natsStatus s = natsMsgHeader_Set(m, HDR_EXPECTED_LAST_SEQ, buf);
    if (s == NATS_OK)
        s = natsConnection_PublishMsg(r->nc, m);
    if (s == NATS_OK)
        bus_msg_free(m);
    return s;
}

/* Hands the batch to JetStream in order; stops at the first refusal. */
static void batch_publish(bus_relay *r, batch *b)
{
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = r->opt.ack_wait_ms;
    size_t i = 0;
    bus_hold(true); /* one write for the batch (on a batched connection) */
    for (; i < b->n; i++) {
        uint64_t pos = r->sent + 1;
        po.ExpectLastSeq = r->base_seq + (pos - 1 - r->base_pos);
        bool ack = i == 0 || i + 1 == b->n;
        natsStatus s = ack ? js_PublishMsgAsync(r->js, &b->msgs[i], &po)
                           : publish_unacked(r, b->msgs[i], po.ExpectLastSeq);
        if (s == NATS_OK && !ack)
            b->msgs[i] = NULL;
        if (s != NATS_OK) {
            guild_warn("relay: publish of %s:%" PRIu64 " refused: %s", r->domain, pos,
                       natsStatus_GetText(s));
            relay_error(r);
            r->need_sync = true;
            retry_later(r, r->sent > r->base_pos);
            break;
        }
        r->async_used = true;
        r->sent = pos;
    }
    bus_hold(false);
    bus_flush(r->nc);
    for (; i < b->n; i++)
        natsMsg_Destroy(b->msgs[i]);
}

/* Publishes what the log holds beyond `sent`, as far as the window allows.
 * Returns true if it published anything. */
static bool relay_pump(bus_relay *r, natsMsg **msgs, bool *at_head)
{
    uint64_t head = 0;
    *at_head = false;
    if (es_log_head(r->st, &head, NULL) != GUILD_OK || head <= r->sent)
        return false;
    pthread_mutex_lock(&r->mu);
    uint64_t in_flight = r->sent > r->acked ? r->sent - r->acked : 0;
    r->want_room = in_flight >= r->opt.max_pending;
    pthread_mutex_unlock(&r->mu);
    if (in_flight >= r->opt.max_pending)
        return false;
    uint64_t n = head - r->sent;
    if (n > r->opt.max_pending - in_flight)
        n = r->opt.max_pending - in_flight;
    if (n > r->opt.batch)
        n = r->opt.batch;

    batch b = {.r = r, .msgs = msgs, .expect = r->sent + 1, .status = GUILD_OK};
    guild_status s = es_read_log(r->st, r->sent + 1, (size_t)n, batch_add, &b, NULL);
    if (s == GUILD_OK && b.status != GUILD_OK)
        s = b.status;
    if (s != GUILD_OK) {
        guild_error("relay: reading the log of %s from %" PRIu64 " failed: %s", r->domain,
                    r->sent + 1, guild_status_code(s));
        relay_error(r);
        for (size_t i = 0; i < b.n; i++)
            natsMsg_Destroy(msgs[i]);
        return false;
    }
    batch_publish(r, &b);
    *at_head = r->sent >= head;
    return b.n > 0;
}

/* ---- the cursor ------------------------------------------------------------ */

static void cursor_store(bus_relay *r, bool force)
{
    pthread_mutex_lock(&r->mu);
    uint64_t acked = r->acked, cursor = r->cursor;
    pthread_mutex_unlock(&r->mu);
    if (acked == cursor)
        return;
    uint64_t now = guild_mono_ns();
    uint64_t apart = acked > cursor ? acked - cursor : cursor - acked;
    if (!force && apart < r->opt.cursor_every_events &&
        now - r->cursor_ns < (uint64_t)r->opt.cursor_every_ms * 1000000u)
        return;
    r->cursor_ns = now;
    if (es_meta_put_u64(r->st, BUS_RELAY_CURSOR_KEY, acked) != GUILD_OK) {
        guild_error("relay: storing the cursor of %s failed", r->domain);
        relay_error(r);
        return;
    }
    pthread_mutex_lock(&r->mu);
    r->cursor = acked;
    pthread_mutex_unlock(&r->mu);
}

/* ---- the thread ------------------------------------------------------------ */

/* ts = monotonic time `ns` (guild_mono_ns reads CLOCK_MONOTONIC, the cv's). */
static void mono_timespec(struct timespec *ts, uint64_t ns)
{
    ts->tv_sec = (time_t)(ns / 1000000000u);
    ts->tv_nsec = (long)(ns % 1000000000u);
}

static void deadline_after(struct timespec *ts, uint64_t ms)
{
    mono_timespec(ts, guild_mono_ns() + ms * 1000000u);
}

/* Sleeps until `until` (monotonic ns), or until stopped or (unless a
 * re-sync is already due) a publish fails. With `notified`, also until
 * bus_relay_notify (the notification is then used up); without, it
 * lingers: a notification neither wakes it nor is lost, it stays for the
 * look that follows. */
static void relay_wait(bus_relay *r, uint64_t until, bool notified)
{
    struct timespec ts;
    mono_timespec(&ts, until);
    pthread_mutex_lock(&r->mu);
    r->lingering = !notified;
    while (!(notified && r->kicked) && !r->stopping && !(r->ack_failed && !r->need_sync)) {
        if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT)
            break;
    }
    r->lingering = false;
    if (notified) {
        r->kicked = false;
        r->want_room = false;
    }
    pthread_mutex_unlock(&r->mu);
}

/* Sleeps up to `ms`, or until notified, stopped, or (unless a re-sync is
 * already due) a publish fails. */
static void relay_idle(bus_relay *r, uint64_t ms)
{
    relay_wait(r, guild_mono_ns() + ms * 1000000u, true);
}

/* True if the connection is up and has not reconnected since the last
 * sync; flags a re-sync when it has. */
static bool relay_connected(bus_relay *r)
{
    if (natsConnection_Status(r->nc) != NATS_CONN_STATUS_CONNECTED) {
        r->need_sync = true;
        return false;
    }
    uint64_t reconnects = 0;
    if (natsConnection_GetStats(r->nc, r->nstats) == NATS_OK &&
        natsStatistics_GetCounts(r->nstats, NULL, NULL, NULL, NULL, &reconnects) == NATS_OK &&
        reconnects != r->reconnects) {
        r->reconnects = reconnects;
        r->need_sync = true;
        r->retry_ns = 0; /* the server is back: try at once */
    }
    return true;
}

/* One attempt at a re-sync, once its time has come. */
static void relay_resync(bus_relay *r)
{
    uint64_t now = guild_mono_ns();
    if (now < r->retry_ns) {
        relay_idle(r, (r->retry_ns - now) / 1000000u + 1);
        return;
    }
    pthread_mutex_lock(&r->mu);
    r->in_sync = false;
    pthread_mutex_unlock(&r->mu);
    abandon_in_flight(r);
    guild_error err;
    guild_error_clear(&err);
    if (relay_sync(r, &err) != GUILD_OK) {
        if (!r->failing)
            guild_warn("relay: %s; retrying", err.message);
        r->failing = true;
        relay_error(r);
        retry_later(r, false);
        return;
    }
    guild_info("relay: %s in sync, resuming after position %" PRIu64, r->stream_name, r->sent);
    r->failing = false;
    r->need_sync = false;
}

static void relay_step(bus_relay *r, natsMsg **msgs)
{
    if (!relay_connected(r)) {
        pthread_mutex_lock(&r->mu);
        r->in_sync = false;
        pthread_mutex_unlock(&r->mu);
        relay_idle(r, DISCONNECTED_POLL_MS);
        return;
    }
    pthread_mutex_lock(&r->mu);
    bool failed = r->ack_failed;
    uint64_t acked = r->acked;
    pthread_mutex_unlock(&r->mu);
    if (failed && !r->need_sync) {
        r->need_sync = true;
        retry_later(r, acked > r->base_pos);
    }
    if (r->need_sync) {
        relay_resync(r);
        return;
    }
    /* What commits within the linger of a round that reached the head
     * goes out in one round after it; a commit after a quieter spell, at
     * once. A backlog is published without pauses. The next step looks at
     * the connection and the acks again before it publishes. */
    uint64_t until = r->round_ns + (uint64_t)r->opt.linger_us * 1000u;
    if (r->round_ns && r->opt.linger_us > 0 && guild_mono_ns() < until) {
        relay_wait(r, until, false);
        return;
    }
    bool at_head;
    bool published = relay_pump(r, msgs, &at_head);
    cursor_store(r, false);
    r->round_ns = published && at_head ? guild_mono_ns() : 0;
    if (!published && !r->need_sync)
        relay_idle(r, r->opt.poll_ms);
}

static void *relay_main(void *arg)
{
    bus_relay *r = arg;
    natsMsg **msgs = guild_xcalloc(r->opt.batch, sizeof *msgs);
    for (;;) {
        pthread_mutex_lock(&r->mu);
        bool stopping = r->stopping;
        pthread_mutex_unlock(&r->mu);
        if (stopping)
            break;
        relay_step(r, msgs);
    }
    free(msgs);

    /* Flush what is in flight, then make sure no ack handler runs later. */
    if (natsConnection_Status(r->nc) == NATS_CONN_STATUS_CONNECTED) {
        jsPubOptions po;
        jsPubOptions_Init(&po);
        po.MaxWait = r->opt.stop_wait_ms;
        js_PublishAsyncComplete(r->js, &po);
    }
    abandon_in_flight(r);
    cursor_store(r, true);
    return NULL;
}

/* ---- the public calls ------------------------------------------------------ */

static void options_fill(bus_relay_options *o, const bus_relay_options *in)
{
    if (in)
        *o = *in;
    else
        memset(o, 0, sizeof *o);
    if (!o->max_pending)
        o->max_pending = 4096;
    if (!o->batch)
        o->batch = 1024;
    if (!o->poll_ms)
        o->poll_ms = 5;
    if (!o->linger_us)
        o->linger_us = BUS_RELAY_LINGER_US;
    if (o->linger_us > BUS_RELAY_LINGER_MAX_US)
        o->linger_us = BUS_RELAY_LINGER_MAX_US;
    if (!o->ack_wait_ms)
        o->ack_wait_ms = 5000;
    if (!o->retry_max_ms)
        o->retry_max_ms = 1000;
    if (!o->cursor_every_ms)
        o->cursor_every_ms = 100;
    if (!o->cursor_every_events)
        o->cursor_every_events = 10000;
    if (!o->stop_wait_ms)
        o->stop_wait_ms = 2000;
}

static void relay_free(bus_relay *r)
{
    jsCtx_Destroy(r->js);
    natsStatistics_Destroy(r->nstats);
    pthread_cond_destroy(&r->cv);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

void bus_relay_stream_name(const char *domain, char *out, size_t size)
{
    size_t at = strlen(BUS_RELAY_STREAM_PREFIX);
    if (at >= size)
        at = size - 1;
    memcpy(out, BUS_RELAY_STREAM_PREFIX, at);
    for (const char *p = domain; *p && at + 1 < size; p++)
        out[at++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
    out[at] = '\0';
}

static guild_status relay_new(natsConnection *nc, es_store *st, const char *domain,
                              const bus_relay_options *opt, bus_relay **out, guild_error *err)
{
    bus_relay *r = guild_xcalloc(1, sizeof *r);
    r->nc = nc;
    r->st = st;
    options_fill(&r->opt, opt);
    snprintf(r->domain, sizeof r->domain, "%s", domain);
    bus_relay_stream_name(domain, r->stream_name, sizeof r->stream_name);
    snprintf(r->subjects, sizeof r->subjects, "%s%s.>", BUS_RELAY_SUBJECT_PREFIX, domain);

    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&r->cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_init(&r->mu, NULL);

    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = r->opt.ack_wait_ms;
    jo.PublishAsync.MaxPending = (int64_t)r->opt.max_pending + 64; /* a net: the relay bounds it */
    jo.PublishAsync.StallWait = r->opt.ack_wait_ms;
    jo.PublishAsync.AckHandler = relay_on_ack;
    jo.PublishAsync.AckHandlerClosure = r;
    natsStatus s = natsConnection_JetStream(&r->js, nc, &jo);
    if (s == NATS_OK)
        s = natsStatistics_Create(&r->nstats);
    if (s != NATS_OK) {
        relay_free(r);
        return guild_error_set(err, GUILD_UNAVAILABLE, (int)s, "relay: JetStream context: %s",
                               natsStatus_GetText(s));
    }
    *out = r;
    return GUILD_OK;
}

guild_status bus_relay_start(natsConnection *nc, es_store *st, const char *domain,
                             const bus_relay_options *opt, bus_relay **out, guild_error *err)
{
    if (!nc || !st || !out)
        return guild_error_set(err, GUILD_INVALID_REQUEST, 0,
                               "relay: connection, store and out "
                               "are required");
    const char *store_domain = es_store_domain(st);
    if (!domain)
        domain = store_domain;
    if (!domain || !domain_ok(domain))
        return guild_error_field(err, GUILD_INVALID_REQUEST, "domain",
                                 "relay: domain must be 1 to %d of [a-z0-9_]", DOMAIN_MAX);
    if (store_domain && *store_domain && strcmp(store_domain, domain) != 0)
        return guild_error_field(err, GUILD_INVALID_REQUEST, "domain",
                                 "relay: domain %s differs from the store's (%s)", domain,
                                 store_domain);

    bus_relay *r = NULL;
    guild_status gs = relay_new(nc, st, domain, opt, &r, err);
    if (gs != GUILD_OK)
        return gs;
    r->need_sync = true;
    if (relay_connected(r)) {
        guild_error e;
        guild_error_clear(&e);
        if (relay_sync(r, &e) == GUILD_OK) {
            r->need_sync = false;
        } else if (r->refused) {
            relay_free(r);
            if (err)
                *err = e;
            return e.status;
        } else {
            guild_warn("relay: %s; retrying", e.message);
            r->failing = true;
        }
    }
    uint64_t cursor = 0;
    if (es_meta_get_u64(st, BUS_RELAY_CURSOR_KEY, &cursor) == GUILD_OK)
        r->cursor = cursor;
    r->cursor_ns = guild_mono_ns();
    int rc = pthread_create(&r->thread, NULL, relay_main, r);
    if (rc != 0) {
        relay_free(r);
        return guild_error_set(err, GUILD_INTERNAL, rc, "relay: cannot start its thread");
    }
    *out = r;
    return GUILD_OK;
}

void bus_relay_notify(bus_relay *r)
{
    pthread_mutex_lock(&r->mu);
    r->kicked = true;
    if (!r->lingering) /* a lingering relay looks when its linger ends */
        pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
}

void bus_relay_stats_get(bus_relay *r, bus_relay_stats *out)
{
    memset(out, 0, sizeof *out);
    uint64_t head = 0;
    if (es_log_head(r->st, &head, NULL) != GUILD_OK)
        head = 0;
    pthread_mutex_lock(&r->mu);
    out->published = r->acked;
    out->cursor = r->cursor;
    out->errors = r->errors;
    out->resyncs = r->resyncs;
    out->duplicates = r->duplicates;
    out->gaps = r->gaps;
    out->acks = r->acks;
    out->connected = r->in_sync;
    pthread_mutex_unlock(&r->mu);
    out->head = head;
    out->lag = head > out->published ? head - out->published : 0;
}

guild_status bus_relay_wait_caught_up(bus_relay *r, int64_t timeout_ms)
{
    uint64_t target = 0;
    guild_status gs = es_log_head(r->st, &target, NULL);
    if (gs != GUILD_OK)
        return gs;
    struct timespec ts;
    if (timeout_ms >= 0)
        deadline_after(&ts, (uint64_t)timeout_ms);
    pthread_mutex_lock(&r->mu);
    r->kicked = true;
    pthread_cond_broadcast(&r->cv);
    r->waiters++;
    gs = GUILD_OK;
    while (r->acked < target) {
        if (r->stopping) {
            gs = GUILD_CLOSED;
            break;
        }
        if (timeout_ms < 0) {
            pthread_cond_wait(&r->cv, &r->mu);
        } else if (pthread_cond_timedwait(&r->cv, &r->mu, &ts) == ETIMEDOUT) {
            gs = r->acked >= target ? GUILD_OK : GUILD_TIMEOUT;
            break;
        }
    }
    r->waiters--;
    pthread_mutex_unlock(&r->mu);
    return gs;
}

void bus_relay_stop(bus_relay *r)
{
    if (!r)
        return;
    pthread_mutex_lock(&r->mu);
    r->stopping = true;
    pthread_cond_broadcast(&r->cv);
    pthread_mutex_unlock(&r->mu);
    pthread_join(r->thread, NULL);
    relay_free(r);
}
