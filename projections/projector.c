/*
 * projector.c — the projector process (see projector.h).
 *
 * Sections: one model's feed (consumer thread), queries, control requests,
 * stats, start and stop.
 */
#include "projections/projector.h"
#include "projections/pull.h"

#include "bus/auth.h"
#include "bus/conn.h"
#include "bus/service.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/codec.h"
#include "common/log.h"
#include "common/text.h"

#include <ctype.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FETCH_BATCH 1024
#define FETCH_AHEAD 2    /* fetched batches waiting for the apply thread */
#define APPLY_MAX 8192   /* messages a queued batch grows to while the apply thread is busy */
#define FETCH_WAIT_MS 50 /* also how often parked queries are looked at when idle */
/* Fetches that bring nothing for this long while the stream holds events
 * the model has not applied mean the consumer will not deliver them (it
 * was deleted, or another client took them): it is started again. */
#define STALLED_MS 2000
#define DEFAULT_QUERY_WAIT_MS 2000
#define MAX_MODELS 8

typedef struct feed {
    prj_projector *p;
    const prj_model *m;
    prj_store *store;
    pthread_rwlock_t store_lock; /* shared by apply and queries; exclusive for a swap */
    char dir[1024];
    char stream[64];
    pthread_t thread;  /* applies */
    pthread_t fetcher; /* fetches the next batch meanwhile */
    bool started, fetcher_started;
    /* Fetched batches on their way to the apply thread. */
    pthread_mutex_t q_lock;
    pthread_cond_t q_put, q_take;
    struct fetched {
        natsMsgList list;
        unsigned generation; /* f->generation when it was fetched */
    } q[FETCH_AHEAD];
    int q_head, q_n;
    int outstanding; /* fetched batches not yet applied and destroyed */
    bus_endpoint *ep;
    prj_store *retired[8]; /* replaced by swaps; closed at stop, as a query may still wait */
    int n_retired;
    uint64_t stream_last;    /* last sequence of the stream, refreshed now and then */
    char consumer[96];       /* this projector's consumer of the stream */
    unsigned generation;     /* bumped by a swap: batches fetched before it are dropped */
    atomic_bool resubscribe; /* start the consumer again from the store's position */
    pthread_mutex_t waiting_lock;
    struct query_req *waiting; /* queries waiting for a position */
    uint64_t applied, skipped, parked, batches;
    uint64_t restarts; /* of the consumer, other than at start and stop */
    pthread_mutex_t stats_lock;
} feed;

struct prj_projector {
    char *data_dir;
    natsConnection *nc;
    jsCtx *js;
    bus_service *svc;
    bus_auth *auth;
    feed feeds[MAX_MODELS];
    int n_feeds;
    volatile bool stopping;
};

void prj_model_dir(const char *data_dir, const char *model, char *out, size_t size)
{
    snprintf(out, size, "%s/projections/%s", data_dir, model);
}

static void upper(const char *in, char *out, size_t size)
{
    size_t i = 0;
    for (; in[i] && i + 1 < size; i++)
        out[i] = (char)toupper((unsigned char)in[i]);
    out[i] = '\0';
}

/* ---- one model's feed ------------------------------------------------------ */

/* (Re)creates this projector's consumer so that it delivers from the
 * store's checkpoint + 1. The consumer is only a delivery pipe: where to
 * start is always the model's own checkpoint, so a crash, a failed batch or
 * a swap never skips or repeats an event. */
static bool subscribe(feed *f, prj_pull *pull)
{
    char subject[128];
    snprintf(subject, sizeof subject, "guild.evt.%s.>", f->m->domain);
    uint64_t pos;
    pthread_rwlock_rdlock(&f->store_lock);
    pos = prj_store_position(f->store);
    atomic_store(&f->resubscribe, false);
    pthread_rwlock_unlock(&f->store_lock);
    guild_error err = {0};
    if (prj_pull_start(pull, subject, pos + 1, &err) != GUILD_OK) {
        guild_debug("%s: cannot subscribe to %s yet: %s", f->m->name, f->stream, err.message);
        return false;
    }
    return true;
}

static void refresh_stream_last(feed *f)
{
    jsStreamInfo *si = NULL;
    jsOptions o;
    jsOptions_Init(&o);
    o.Wait = 1000; /* a figure for the status: not worth holding the fetch thread longer */
    if (js_GetStreamInfo(&si, f->p->js, f->stream, &o, NULL) == NATS_OK) {
        pthread_mutex_lock(&f->stats_lock);
        f->stream_last = si->State.LastSeq;
        pthread_mutex_unlock(&f->stats_lock);
        jsStreamInfo_Destroy(si);
    }
}

/* The log position of a fetched message: the record's, or for a message
 * that does not decode, its stream sequence (the relay keeps them equal). */
static uint64_t message_position(natsMsg *m, es_record *rec)
{
    const char *data = natsMsg_GetData(m);
    size_t len = (size_t)natsMsg_GetDataLength(m);
    if (es_record_decode(data, len, rec) == GUILD_OK)
        return rec->position;
    memset(rec, 0, sizeof *rec);
    jsMsgMetaData *meta = NULL;
    if (natsMsg_GetMetaData(&meta, m) == NATS_OK) {
        rec->position = meta->Sequence.Stream;
        jsMsgMetaData_Destroy(meta);
    }
    rec->raw = (const uint8_t *)data;
    rec->raw_len = len;
    return rec->position;
}

/* Applies one fetched batch and acknowledges it. Only the part that
 * follows the checkpoint without a gap is applied; a gap (messages the
 * consumer delivered out of turn) or a batch fetched before a swap makes
 * the consumer start again from the checkpoint. */
static void apply_list(feed *f, natsMsgList *list, unsigned generation)
{
    es_record *recs = guild_xcalloc((size_t)list->Count, sizeof *recs);
    const es_record **ptrs = guild_xcalloc((size_t)list->Count, sizeof *ptrs);
    pthread_rwlock_rdlock(&f->store_lock);
    if (generation != f->generation) {
        pthread_rwlock_unlock(&f->store_lock);
        free(ptrs);
        free(recs);
        return; /* the dropped messages come again from the new checkpoint */
    }
    uint64_t expect = prj_store_position(f->store) + 1;
    size_t n = 0;
    for (int i = 0; i < list->Count; i++) {
        uint64_t pos = message_position(list->Msgs[i], &recs[n]);
        if (pos < expect)
            continue; /* applied before */
        if (pos != expect) {
            guild_warn("%s: expected position %llu, the consumer delivered %llu; restarting it",
                       f->m->name, (unsigned long long)expect, (unsigned long long)pos);
            atomic_store(&f->resubscribe, true);
            break;
        }
        ptrs[n] = &recs[n];
        n++;
        expect++;
    }
    prj_batch_stats st = {0};
    guild_status s = n ? prj_store_apply(f->store, ptrs, n, &st) : GUILD_OK;
    if (s != GUILD_OK)
        atomic_store(&f->resubscribe, true); /* deliver again from the checkpoint */
    pthread_rwlock_unlock(&f->store_lock);
    if (s == GUILD_OK && !atomic_load(&f->resubscribe)) {
        prj_pull_ack(f->p->nc, list->Msgs[list->Count - 1]); /* ack-all: the whole batch */
    } else if (s != GUILD_OK) {
        guild_error("%s: applying a batch failed (%s); it will be delivered again", f->m->name,
                    guild_status_code(s));
    }
    pthread_mutex_lock(&f->stats_lock);
    f->applied += st.applied;
    f->skipped += st.skipped;
    f->parked += st.parked;
    f->batches += n && s == GUILD_OK; /* a transaction committed */
    pthread_mutex_unlock(&f->stats_lock);
    free(ptrs);
    free(recs);
}

static void serve_waiting(feed *f, bool all_unavailable);

/* Hands a fetched batch to the apply thread. While the apply thread is
 * busy, the batch joins the last one still queued (of the same generation,
 * up to APPLY_MAX messages), so that one transaction applies what came
 * meanwhile; otherwise it takes a slot of its own, waiting while
 * FETCH_AHEAD are queued. (The queue is empty whenever the consumer starts
 * again, release_sub waits for it, so every queued batch comes from the
 * consumer's current start.) False (the batch destroyed) when the projector
 * stops. */
static bool enqueue(feed *f, natsMsgList *list, unsigned generation)
{
    pthread_mutex_lock(&f->q_lock);
    bool ok = false;
    while (!f->p->stopping) {
        struct fetched *tail = f->q_n ? &f->q[(f->q_head + f->q_n - 1) % FETCH_AHEAD] : NULL;
        if (tail && tail->generation == generation && tail->list.Count + list->Count <= APPLY_MAX) {
            size_t n = (size_t)tail->list.Count, more = (size_t)list->Count;
            tail->list.Msgs = guild_xrealloc(tail->list.Msgs, (n + more) * sizeof *list->Msgs);
            memcpy(tail->list.Msgs + n, list->Msgs, more * sizeof *list->Msgs);
            tail->list.Count += list->Count;
            free(list->Msgs);
            list->Msgs = NULL;
            list->Count = 0;
            ok = true;
            break;
        }
        if (f->q_n < FETCH_AHEAD) {
            struct fetched *slot = &f->q[(f->q_head + f->q_n) % FETCH_AHEAD];
            slot->list = *list;
            slot->generation = generation;
            f->q_n++;
            f->outstanding++;
            pthread_cond_signal(&f->q_put);
            ok = true;
            break;
        }
        pthread_cond_wait(&f->q_take, &f->q_lock);
    }
    pthread_mutex_unlock(&f->q_lock);
    if (!ok)
        bus_msg_list_free(list);
    return ok;
}

/* The next fetched batch, waiting up to FETCH_WAIT_MS; false when none. */
static bool dequeue(feed *f, struct fetched *out)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += (long)FETCH_WAIT_MS * 1000000;
    if (until.tv_nsec >= 1000000000) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&f->q_lock);
    while (f->q_n == 0 && !f->p->stopping)
        if (pthread_cond_timedwait(&f->q_put, &f->q_lock, &until) != 0)
            break;
    bool got = f->q_n > 0;
    if (got) {
        *out = f->q[f->q_head];
        f->q_head = (f->q_head + 1) % FETCH_AHEAD;
        f->q_n--;
        pthread_cond_signal(&f->q_take);
    }
    pthread_mutex_unlock(&f->q_lock);
    return got;
}

/* Stops taking the consumer's messages once no batch fetched from it is
 * left, so none is applied after the consumer starts again. When the
 * projector stops, the batches still queued are dropped unapplied (the
 * next start fetches them again from the checkpoint), and the consumer is
 * deleted. */
static void release_sub(feed *f, prj_pull *pull, bool *started, bool unsubscribe)
{
    pthread_mutex_lock(&f->q_lock);
    for (;;) {
        /* A stop can come while this waits: the apply thread then takes
         * no more batches, so the queued ones are dropped here. */
        if (f->p->stopping) {
            for (; f->q_n > 0; f->q_n--, f->q_head = (f->q_head + 1) % FETCH_AHEAD) {
                bus_msg_list_free(&f->q[f->q_head].list);
                f->outstanding--;
            }
        }
        if (f->outstanding == 0)
            break;
        pthread_cond_wait(&f->q_take, &f->q_lock);
    }
    pthread_mutex_unlock(&f->q_lock);
    /* Deleting the consumer is a JetStream request: with the server gone
     * it would only wait out its timeout, and the next start deletes a
     * consumer left behind anyway. */
    prj_pull_stop(pull,
                  unsubscribe && natsConnection_Status(f->p->nc) == NATS_CONN_STATUS_CONNECTED);
    *started = false;
    if (!f->p->stopping) {
        pthread_mutex_lock(&f->stats_lock);
        f->restarts++;
        pthread_mutex_unlock(&f->stats_lock);
    }
}

/* True when the stream's last sequence, as last refreshed, is beyond the
 * model's position while no fetched batch waits to be applied. */
static bool behind_stream(feed *f)
{
    pthread_mutex_lock(&f->q_lock);
    int outstanding = f->outstanding;
    pthread_mutex_unlock(&f->q_lock);
    if (outstanding > 0)
        return false; /* the apply thread has work: not a stall */
    pthread_mutex_lock(&f->stats_lock);
    uint64_t last = f->stream_last;
    pthread_mutex_unlock(&f->stats_lock);
    pthread_rwlock_rdlock(&f->store_lock);
    uint64_t pos = prj_store_position(f->store);
    pthread_rwlock_unlock(&f->store_lock);
    return last > pos;
}

/* The fetch thread: keeps up to FETCH_AHEAD batches ready, so the apply
 * thread never waits for the server while events are there. A batch
 * fetched before a swap is dropped unapplied (its generation); apply_list
 * takes only what follows the checkpoint without a gap. Any failed fetch, and
 * fetches that bring nothing for STALLED_MS while the model is behind the
 * stream, start the consumer again from the checkpoint. */
static void *fetch_main(void *arg)
{
    feed *f = arg;
    prj_pull *pull = NULL;
    bool started = false;
    uint64_t last_info = 0, empty_since = 0;
    while (!f->p->stopping) {
        /* JetStream requests made while the connection is down would only
         * wait out their timeouts (and hold up a stop). */
        if (natsConnection_Status(f->p->nc) != NATS_CONN_STATUS_CONNECTED) {
            usleep(50 * 1000);
            continue;
        }
        guild_error err = {0};
        if (!pull &&
            prj_pull_new(f->p->nc, f->p->js, f->stream, f->consumer, &pull, &err) != GUILD_OK) {
            guild_debug("%s: %s", f->m->name, err.message);
            usleep(250 * 1000);
            continue;
        }
        if (!started && !(started = subscribe(f, pull))) {
            usleep(250 * 1000);
            continue;
        }
        pthread_rwlock_rdlock(&f->store_lock);
        unsigned generation = f->generation;
        bool again = atomic_load(&f->resubscribe);
        pthread_rwlock_unlock(&f->store_lock);
        if (again) {
            release_sub(f, pull, &started, false);
            continue;
        }
        natsMsgList list = {0};
        natsStatus s = prj_pull_fetch(pull, &list, FETCH_BATCH, FETCH_WAIT_MS);
        uint64_t now = guild_mono_ns();
        if (s == NATS_OK && list.Count > 0) {
            enqueue(f, &list, generation);
            empty_since = 0;
        } else {
            bus_msg_list_free(&list);
        }
        if (s != NATS_OK && s != NATS_TIMEOUT) {
            guild_debug("%s: fetching from %s failed: %s; starting the consumer again", f->m->name,
                        f->stream, natsStatus_GetText(s));
            release_sub(f, pull, &started, false);
            if (s == NATS_INVALID_SUBSCRIPTION || s == NATS_CONNECTION_CLOSED) {
                prj_pull_free(pull); /* and its subscription: made again */
                pull = NULL;
            }
            empty_since = 0;
            usleep(100 * 1000);
        } else if (s == NATS_TIMEOUT) {
            if (!behind_stream(f)) {
                empty_since = 0;
            } else if (!empty_since) {
                empty_since = now;
            } else if (now - empty_since >= (uint64_t)STALLED_MS * 1000000u) {
                guild_warn("%s: the consumer delivered nothing for %d ms while %s holds events "
                           "the model has not applied; restarting it",
                           f->m->name, STALLED_MS, f->stream);
                release_sub(f, pull, &started, false);
                empty_since = 0;
            }
        }
        if (now - last_info > 1000000000ull &&
            natsConnection_Status(f->p->nc) == NATS_CONN_STATUS_CONNECTED) {
            refresh_stream_last(f);
            last_info = now;
        }
    }
    if (started)
        release_sub(f, pull, &started, true);
    prj_pull_free(pull);
    return NULL;
}

/* The apply thread: applies what the fetch thread hands over, and answers
 * the queries waiting for a position after each batch (or every
 * FETCH_WAIT_MS when idle). */
static void *feed_main(void *arg)
{
    feed *f = arg;
    while (!f->p->stopping) {
        struct fetched b;
        if (dequeue(f, &b)) {
            apply_list(f, &b.list, b.generation);
            bus_msg_list_free(&b.list);
            pthread_mutex_lock(&f->q_lock);
            f->outstanding--;
            pthread_cond_broadcast(&f->q_take);
            pthread_mutex_unlock(&f->q_lock);
        }
        serve_waiting(f, false);
    }
    return NULL;
}

static prj_store *current(feed *f)
{
    pthread_rwlock_rdlock(&f->store_lock);
    prj_store *st = f->store;
    pthread_rwlock_unlock(&f->store_lock);
    return st;
}

/* ---- queries ---------------------------------------------------------------- */

static bool parse_consistency(const char *token, const char *domain, uint64_t *position)
{
    size_t dl = strlen(domain);
    if (strncmp(token, domain, dl) != 0 || token[dl] != ':')
        return false;
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(token + dl + 1, &end, 10);
    if (errno || !end || *end || token[dl + 1] == '\0')
        return false;
    *position = v;
    return true;
}

/* A query on its way: parsed and authorized, perhaps waiting for its
 * consistency position. */
typedef struct query_req {
    struct query_req *next;
    feed *f;
    natsMsg *msg;
    guild_format fmt;
    const char *name;
    json_t *args;
    bus_caller caller;
    uint64_t started;
    uint64_t want;     /* position to wait for; 0 = none */
    uint64_t deadline; /* monotonic ns */
} query_req;

static void query_free(query_req *q)
{
    bus_caller_release(&q->caller);
    json_decref(q->args);
    bus_msg_free(q->msg);
    free(q);
}

static void query_fail(query_req *q, guild_status s, const guild_error *err)
{
    bus_endpoint_record_status(q->f->ep, q->started, s, err->message);
    bus_reply_error(q->f->p->nc, natsMsg_GetReply(q->msg), q->fmt, s, err->field, err->message);
    query_free(q);
}

/* Answers a JSON query whose model gives its data as stored bytes, with
 * the reply written straight from them: what query_answer's tree would
 * give. False, having done nothing, when the query cannot be answered so. */
static bool query_answer_json(query_req *q, const dom_actor *actor)
{
    feed *f = q->f;
    guild_buf b = {0};
    guild_buf_str(&b, "{\"ok\":true,\"data\":");
    uint64_t position = 0;
    bool done = false;
    guild_error err = {0};
    pthread_rwlock_rdlock(&f->store_lock);
    guild_status s =
        prj_store_query_json(f->store, q->name, q->args, actor, &b, &position, &done, &err);
    pthread_rwlock_unlock(&f->store_lock);
    if (s == GUILD_OK && !done) {
        free(b.data);
        return false;
    }
    if (s != GUILD_OK) {
        free(b.data);
        query_fail(q, s, &err);
        return true;
    }
    char num[GUILD_U64_DEC_MAX];
    guild_buf_str(&b, ",\"position\":");
    guild_buf_put(&b, num, guild_u64_dec(num, position));
    guild_buf_put(&b, "}", 1);
    bus_endpoint_record_status(f->ep, q->started, GUILD_OK, NULL);
    bus_reply_bytes(f->p->nc, natsMsg_GetReply(q->msg), q->fmt, b.data, b.len, 200);
    free(b.data);
    query_free(q);
    return true;
}

/* Runs the query on the model and replies. */
static void query_answer(query_req *q)
{
    feed *f = q->f;
    dom_actor anon = {.user_id = ""};
    const dom_actor *actor = q->caller.claims ? &q->caller.actor : &anon;
    json_t *out = NULL;
    uint64_t position = 0;
    guild_error err = {0};
    if (q->fmt == GUILD_FMT_JSON && query_answer_json(q, actor))
        return;
    pthread_rwlock_rdlock(&f->store_lock);
    guild_status s = prj_store_query(f->store, q->name, q->args, actor, &out, &position, &err);
    pthread_rwlock_unlock(&f->store_lock);
    if (s != GUILD_OK) {
        query_fail(q, s, &err);
        return;
    }
    json_t *body = json_pack("{s:b, s:o, s:I}", "ok", 1, "data", out ? out : json_null(),
                             "position", (json_int_t)position);
    bus_endpoint_record_status(f->ep, q->started, GUILD_OK, NULL);
    bus_reply(f->p->nc, natsMsg_GetReply(q->msg), q->fmt, body, 200);
    json_decref(body);
    query_free(q);
}

/* Answers the parked queries whose position the model has reached, and
 * those whose deadline passed. The feed thread calls it after each batch
 * and at least every FETCH_WAIT_MS: a query waiting for its position never
 * holds up the queries behind it. */
static void serve_waiting(feed *f, bool all_unavailable)
{
    pthread_mutex_lock(&f->waiting_lock);
    query_req *list = f->waiting;
    f->waiting = NULL;
    pthread_mutex_unlock(&f->waiting_lock);
    if (!list)
        return;
    uint64_t at = prj_store_position(current(f)), now = guild_mono_ns();
    query_req *keep = NULL;
    while (list) {
        query_req *q = list;
        list = q->next;
        if (!all_unavailable && at >= q->want) {
            query_answer(q);
        } else if (all_unavailable || now >= q->deadline) {
            guild_error err = {0};
            guild_error_set(&err, GUILD_UNAVAILABLE, 0,
                            "the %s read model has not reached position %llu yet", f->m->name,
                            (unsigned long long)q->want);
            query_fail(q, GUILD_UNAVAILABLE, &err);
        } else {
            q->next = keep;
            keep = q;
        }
    }
    pthread_mutex_lock(&f->waiting_lock);
    while (keep) {
        query_req *q = keep;
        keep = q->next;
        q->next = f->waiting;
        f->waiting = q;
    }
    pthread_mutex_unlock(&f->waiting_lock);
}

static void on_query(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    feed *f = closure;
    query_req *q = guild_xcalloc(1, sizeof *q);
    q->f = f;
    q->msg = msg;
    q->started = guild_mono_ns();
    const char *data = natsMsg_GetData(msg);
    size_t len = (size_t)natsMsg_GetDataLength(msg);
    q->fmt = guild_format_detect(bus_header(msg, BUS_H_CONTENT_TYPE), data, len);
    q->name = strrchr(natsMsg_GetSubject(msg), '.') + 1;
    guild_error err = {0};
    guild_status s = GUILD_OK;

    if (len > BUS_MAX_BODY)
        s = guild_error_set(&err, GUILD_INVALID_REQUEST, 0, "the body is over 1 MiB");
    else if (len == 0)
        q->args = json_object();
    else
        s = guild_codec_decode(data, len, q->fmt, &q->args, &err);
    const prj_query *def = s == GUILD_OK ? prj_query_find(f->m, q->name) : NULL;
    if (s == GUILD_OK && !def)
        s = guild_error_set(&err, GUILD_INVALID_REQUEST, 0, "unknown query %.100s", q->name);
    if (s == GUILD_OK && !def->is_public)
        s = bus_auth_verify(f->p->auth, bus_header(msg, BUS_H_AUTH), guild_now_ns() / 1000000000,
                            &q->caller, &err);
    const char *consistency = bus_header(msg, BUS_H_CONSISTENCY);
    if (s == GUILD_OK && consistency && !parse_consistency(consistency, f->m->domain, &q->want))
        s = guild_error_set(&err, GUILD_INVALID_REQUEST, 0,
                            "Guild-Consistency must be %s:<position>", f->m->domain);
    if (s != GUILD_OK) {
        query_fail(q, s, &err);
        return;
    }
    if (!q->want || prj_store_position(current(f)) >= q->want) {
        query_answer(q);
        return;
    }
    const char *wait_h = bus_header(msg, "Guild-Timeout");
    int64_t wait_ms = wait_h ? atoll(wait_h) : DEFAULT_QUERY_WAIT_MS;
    q->deadline = q->started + (uint64_t)(wait_ms > 0 ? wait_ms : 0) * 1000000;
    pthread_mutex_lock(&f->waiting_lock);
    q->next = f->waiting;
    f->waiting = q;
    pthread_mutex_unlock(&f->waiting_lock);
}

/* ---- control requests --------------------------------------------------------- */

static json_t *feed_status(feed *f)
{
    prj_store *store = current(f);
    pthread_mutex_lock(&f->stats_lock);
    uint64_t last = f->stream_last, applied = f->applied, skipped = f->skipped, parked = f->parked,
             restarts = f->restarts, batches = f->batches;
    pthread_mutex_unlock(&f->stats_lock);
    uint64_t pos;
    uint8_t digest[PRJ_DIGEST_LEN];
    prj_store_snapshot(store, &pos, digest);
    int64_t t = prj_store_event_time(store);
    uint64_t behind = last > pos ? last - pos : 0;
    int64_t ms_behind = behind && t ? (guild_now_ns() - t) / 1000000 : 0;
    char hex[2 * PRJ_DIGEST_LEN + 1];
    sodium_bin2hex(hex, sizeof hex, digest, sizeof digest);
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:s}", "model", f->m->name,
                     "position", (json_int_t)pos, "stream_last", (json_int_t)last, "events_behind",
                     (json_int_t)behind, "ms_behind", (json_int_t)ms_behind, "applied",
                     (json_int_t)applied, "skipped", (json_int_t)skipped, "parked",
                     (json_int_t)parked, "batches", (json_int_t)batches, "consumer_restarts",
                     (json_int_t)restarts, "digest", hex);
}

/* Swaps in a rebuilt environment: <dir>.rebuild becomes <dir>; queries
 * wait on store_lock for the moment it takes. */
static guild_status swap_in(feed *f, guild_error *err)
{
    char next[1100], old[1100];
    snprintf(next, sizeof next, "%s.rebuild", f->dir);
    snprintf(old, sizeof old, "%s.old", f->dir);
    struct stat sb;
    if (stat(next, &sb) != 0)
        return guild_error_set(err, GUILD_NOT_FOUND, 0, "no rebuilt model at %s", next);
    pthread_rwlock_wrlock(&f->store_lock);
    if (f->n_retired == 8) {
        pthread_rwlock_unlock(&f->store_lock);
        return guild_error_set(err, GUILD_UNAVAILABLE, 0, "too many swaps; restart the projector");
    }
    prj_store *was = f->store;
    guild_status s = GUILD_OK;
    prj_store_remove(old);
    if (rename(f->dir, old) != 0 || rename(next, f->dir) != 0)
        s = guild_error_set(err, GUILD_IO, errno, "cannot swap %s in", next);
    prj_store *now = NULL;
    guild_status o = prj_store_open(f->dir, f->m, &now, err);
    if (o == GUILD_OK) {
        f->retired[f->n_retired++] = was;
        f->store = now;
        f->generation++;
        atomic_store(&f->resubscribe, true); /* deliver from the rebuilt model's position */
    }
    pthread_rwlock_unlock(&f->store_lock);
    if (o != GUILD_OK)
        return o;
    if (s == GUILD_OK)
        prj_store_remove(old);
    return s;
}

static void on_control(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    feed *f = closure;
    const char *verb = strrchr(natsMsg_GetSubject(msg), '.') + 1;
    json_t *data = NULL;
    guild_error err = {0};
    guild_status s = GUILD_OK;
    if (strcmp(verb, "status") == 0) {
        data = feed_status(f);
    } else if (strcmp(verb, "retry") == 0) {
        uint64_t retried = 0, left = 0;
        /* The parked events are read again from the domain's log. */
        char dir[1200];
        snprintf(dir, sizeof dir, "%s/%s/events", f->p->data_dir, f->m->domain);
        es_options o = {.read_only = true};
        es_store *log = NULL;
        s = es_store_open(dir, &o, &log, &err);
        if (s == GUILD_OK) {
            pthread_rwlock_rdlock(&f->store_lock);
            s = prj_store_retry(f->store, log, &retried, &left);
            pthread_rwlock_unlock(&f->store_lock);
            es_store_close(log);
            data =
                json_pack("{s:I, s:I}", "retried", (json_int_t)retried, "left", (json_int_t)left);
        }
    } else if (strcmp(verb, "swap") == 0) {
        s = swap_in(f, &err);
        if (s == GUILD_OK)
            data = feed_status(f);
    } else {
        s = guild_error_set(&err, GUILD_INVALID_REQUEST, 0, "unknown control %s", verb);
    }
    if (s == GUILD_OK) {
        json_t *body = json_pack("{s:b, s:o}", "ok", 1, "data", data);
        bus_reply(f->p->nc, natsMsg_GetReply(msg), GUILD_FMT_JSON, body, 200);
        json_decref(body);
    } else {
        json_decref(data);
        bus_reply_error(f->p->nc, natsMsg_GetReply(msg), GUILD_FMT_JSON, s, NULL, err.message);
    }
    bus_msg_free(msg);
}

static json_t *stats_data(const bus_service *svc, const bus_endpoint *ep, void *ctx)
{
    (void)svc;
    prj_projector *p = ctx;
    for (int i = 0; i < p->n_feeds; i++)
        if (p->feeds[i].ep == ep)
            return feed_status(&p->feeds[i]);
    return NULL;
}

/* ---- start and stop ------------------------------------------------------------ */

static guild_status start_feed(prj_projector *p, const prj_model *m, guild_error *err)
{
    feed *f = &p->feeds[p->n_feeds++];
    f->p = p;
    f->m = m;
    pthread_rwlock_init(&f->store_lock, NULL);
    pthread_mutex_init(&f->waiting_lock, NULL);
    pthread_mutex_init(&f->stats_lock, NULL);
    char up[32];
    upper(m->domain, up, sizeof up);
    snprintf(f->stream, sizeof f->stream, "GUILD_%s", up);
    prj_model_dir(p->data_dir, m->name, f->dir, sizeof f->dir);
    /* One consumer per model and data directory: two projectors with their
     * own stores each get every event. */
    char host[128] = "";
    gethostname(host, sizeof host - 1);
    uint8_t h[4];
    crypto_generichash_state hs;
    crypto_generichash_init(&hs, NULL, 0, sizeof h);
    crypto_generichash_update(&hs, (const uint8_t *)host, strlen(host));
    crypto_generichash_update(&hs, (const uint8_t *)f->dir, strlen(f->dir));
    crypto_generichash_final(&hs, h, sizeof h);
    snprintf(f->consumer, sizeof f->consumer, "prj_%s_%02x%02x%02x%02x", m->name, h[0], h[1], h[2],
             h[3]);
    char parent[1100];
    snprintf(parent, sizeof parent, "%s/projections", p->data_dir);
    mkdir(p->data_dir, 0755);
    mkdir(parent, 0755);
    mkdir(f->dir, 0755);
    guild_status s = prj_store_open(f->dir, m, &f->store, err);
    if (s != GUILD_OK)
        return s;
    char queue[96], subject[160], ep_name[96];
    snprintf(queue, sizeof queue, "guild.%s.query", m->domain);
    for (const prj_query *q = m->queries; q && q->name && s == GUILD_OK; q++) {
        snprintf(subject, sizeof subject, "guild.qry.%s.%s", m->domain, q->name);
        bus_endpoint *ep = NULL;
        s = bus_service_add_endpoint(p->svc, q->name, subject, queue, on_query, f, &ep);
        if (!f->ep)
            f->ep = ep; /* the first query endpoint carries the model's stats */
    }
    snprintf(subject, sizeof subject, "guild.ctl.project.%s.*", m->name);
    snprintf(ep_name, sizeof ep_name, "%s_control", m->name);
    bus_endpoint *control_ep = NULL;
    if (s == GUILD_OK)
        s = bus_service_add_endpoint(p->svc, ep_name, subject, NULL, on_control, f, &control_ep);
    if (s != GUILD_OK)
        return guild_error_set(err, s, 0, "cannot subscribe the %s queries", m->name);
    pthread_mutex_init(&f->q_lock, NULL);
    pthread_cond_init(&f->q_put, NULL);
    pthread_cond_init(&f->q_take, NULL);
    if (pthread_create(&f->fetcher, NULL, fetch_main, f) != 0)
        return guild_error_set(err, GUILD_INTERNAL, errno, "cannot start the %s fetch thread",
                               m->name);
    f->fetcher_started = true;
    if (pthread_create(&f->thread, NULL, feed_main, f) != 0)
        return guild_error_set(err, GUILD_INTERNAL, 0, "cannot start the %s feed", m->name);
    f->started = true;
    return GUILD_OK;
}

guild_status prj_projector_start(const prj_projector_options *opt, prj_projector **out,
                                 guild_error *err)
{
    prj_projector *p = guild_xcalloc(1, sizeof *p);
    p->data_dir = guild_xstrdup(opt->data_dir);
    *out = p;
    guild_status s = bus_connect(opt->nats_url, "guild-projector",
                                 opt->connect_wait_ms ? opt->connect_wait_ms : 10000, &p->nc, err);
    if (s == GUILD_OK && natsConnection_JetStream(&p->js, p->nc, NULL) != NATS_OK)
        s = guild_error_set(err, GUILD_UNAVAILABLE, 0, "JetStream is not available");
    if (s == GUILD_OK)
        s = bus_auth_create(p->nc, &p->auth);
    if (s == GUILD_OK)
        bus_auth_watch_start(p->auth);
    if (s == GUILD_OK)
        s = bus_service_create_quiet(p->nc, "projector", GUILD_VERSION, "guild read models",
                                     &p->svc, err);
    if (s == GUILD_OK)
        bus_service_set_stats_handler(p->svc, stats_data, p);
    const prj_model *const *all = prj_models();
    for (int i = 0; s == GUILD_OK && all[i]; i++) {
        bool wanted = !opt->models;
        for (const char *const *n = opt->models; n && *n && !wanted; n++)
            wanted = strcmp(*n, all[i]->name) == 0 || strcmp(*n, "all") == 0;
        if (wanted && p->n_feeds < MAX_MODELS)
            s = start_feed(p, all[i], err);
    }
    if (s == GUILD_OK && p->n_feeds == 0)
        s = guild_error_set(err, GUILD_INVALID_REQUEST, 0, "no such read model");
    if (s == GUILD_OK)
        bus_service_announce(p->svc);
    if (s != GUILD_OK) {
        prj_projector_stop(p);
        *out = NULL;
    }
    return s;
}

void prj_projector_stop(prj_projector *p)
{
    if (!p)
        return;
    p->stopping = true;
    bus_service_destroy(p->svc);
    for (int i = 0; i < p->n_feeds; i++) {
        feed *f = &p->feeds[i];
        if (f->fetcher_started) {
            pthread_mutex_lock(&f->q_lock);
            pthread_cond_broadcast(&f->q_take); /* a fetcher waiting for room */
            pthread_cond_broadcast(&f->q_put);
            pthread_mutex_unlock(&f->q_lock);
            pthread_join(f->fetcher, NULL);
        }
        if (f->started)
            pthread_join(f->thread, NULL);
        if (f->fetcher_started) {
            pthread_cond_destroy(&f->q_take);
            pthread_cond_destroy(&f->q_put);
            pthread_mutex_destroy(&f->q_lock);
        }
        serve_waiting(f, true);
        pthread_mutex_destroy(&f->waiting_lock);
        prj_store_close(f->store);
        for (int r = 0; r < f->n_retired; r++)
            prj_store_close(f->retired[r]);
        pthread_rwlock_destroy(&f->store_lock);
        pthread_mutex_destroy(&f->stats_lock);
    }
    bus_auth_destroy(p->auth);
    jsCtx_Destroy(p->js);
    bus_close(p->nc);
    free(p->data_dir);
    free(p);
}
