/* pull.c — a projector's JetStream consumer, pulled over a subscription of
 * its own (see pull.h). */
#include "projections/pull.h"

#include "bus/conn.h"
#include "common/alloc.h"
#include "common/clock.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define STREAM_MAX 64
#define NAME_MAX_ 96
#define CURRENT_MAX (NAME_MAX_ + 24)
#define PENDING_MSGS 1000000 /* a net for messages left by requests: far above what they bring */
#define PENDING_BYTES (1 << 30)
#define EXPIRES_EARLY_MS 10 /* a waiting request ends this much before its fetch stops */

struct prj_pull {
    natsConnection *nc; /* borrowed */
    jsCtx *js;          /* borrowed */
    natsSubscription *sub;
    char stream[STREAM_MAX], name[NAME_MAX_];
    char current[CURRENT_MAX];      /* the consumer of this start: <name>_<starts> */
    char ack_part[CURRENT_MAX + 2]; /* ".<current>." as its events' ack subjects hold it */
    uint64_t starts;
    char next_subject[64 + STREAM_MAX + CURRENT_MAX];
    char inbox[128];   /* a request is answered on <inbox>.<its id> */
    uint64_t id;       /* of the latest request */
    uint64_t first_id; /* of the consumer's first request: answers to earlier ones are dropped */
    natsStatus failed; /* why the subscription could not be read, while a fetch runs */
};

guild_status prj_pull_new(natsConnection *nc, jsCtx *js, const char *stream, const char *name,
                          prj_pull **out, guild_error *err)
{
    *out = NULL;
    if (strlen(stream) >= STREAM_MAX || strlen(name) >= NAME_MAX_)
        return guild_error_set(err, GUILD_INTERNAL, 0, "stream or consumer name too long");
    prj_pull *p = guild_xcalloc(1, sizeof *p);
    p->nc = nc;
    p->js = js;
    snprintf(p->stream, sizeof p->stream, "%s", stream);
    snprintf(p->name, sizeof p->name, "%s", name);
    p->first_id = UINT64_MAX; /* nothing is taken before a start */
    natsInbox *inbox = NULL;
    char wildcard[sizeof p->inbox + 2];
    natsStatus s = natsInbox_Create(&inbox);
    if (s == NATS_OK) {
        snprintf(p->inbox, sizeof p->inbox, "%s", (const char *)inbox);
        snprintf(wildcard, sizeof wildcard, "%s.*", p->inbox);
        natsInbox_Destroy(inbox);
        s = natsConnection_SubscribeSync(&p->sub, nc, wildcard);
    }
    if (s == NATS_OK)
        s = natsSubscription_SetPendingLimits(p->sub, PENDING_MSGS, PENDING_BYTES);
    if (s != NATS_OK) {
        prj_pull_free(p);
        return bus_nats_status(err, s, "subscribing to the consumer's inbox");
    }
    *out = p;
    return GUILD_OK;
}

/* Deletes every consumer of the stream named <name> or <name>_<n>: the
 * one of the last start, and any an earlier process left behind. */
static void delete_earlier(prj_pull *p)
{
    jsConsumerNamesList *names = NULL;
    size_t len = strlen(p->name);
    if (js_ConsumerNames(&names, p->js, p->stream, NULL, NULL) == NATS_OK && names) {
        for (int i = 0; i < names->Count; i++) {
            const char *c = names->List[i];
            if (strncmp(c, p->name, len) == 0 && (c[len] == '\0' || c[len] == '_'))
                js_DeleteConsumer(p->js, p->stream, c, NULL, NULL);
        }
    }
    jsConsumerNamesList_Destroy(names);
}

guild_status prj_pull_start(prj_pull *p, const char *filter, uint64_t start, guild_error *err)
{
    /* Each start has a consumer of its own name, so an event or an ack of
     * an earlier one cannot be taken for this one's: events are told apart
     * by the consumer their ack subject names. What earlier ones sent and
     * is here after a round trip to the server is dropped at once. */
    delete_earlier(p);
    natsConnection_FlushTimeout(p->nc, 2000);
    for (;;) {
        natsMsg *m = NULL;
        natsStatus r = natsSubscription_NextMsg(&m, p->sub, 0);
        if (r != NATS_OK && r != NATS_SLOW_CONSUMER)
            break;
        bus_msg_free(m);
    }
    p->starts++;
    snprintf(p->current, sizeof p->current, "%s_%" PRIu64, p->name, p->starts);
    snprintf(p->ack_part, sizeof p->ack_part, ".%s.", p->current);
    snprintf(p->next_subject, sizeof p->next_subject, "$JS.API.CONSUMER.MSG.NEXT.%s.%s", p->stream,
             p->current);
    p->first_id = p->id + 1;
    jsConsumerConfig cc;
    jsConsumerConfig_Init(&cc);
    cc.Durable = p->current;
    cc.AckPolicy = js_AckAll;
    cc.MaxAckPending = 1000000;
    cc.AckWait = (int64_t)30 * 1000000000;
    cc.FilterSubject = filter;
    if (start > 1) {
        cc.DeliverPolicy = js_DeliverByStartSequence;
        cc.OptStartSeq = start;
    }
    jsConsumerInfo *ci = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_AddConsumer(&ci, p->js, p->stream, &cc, NULL, &jerr);
    jsConsumerInfo_Destroy(ci);
    return bus_nats_status(err, s, "creating the consumer");
}

/* Sends request p->id + 1: for `batch` messages, answered at once when
 * expires_ms is 0, else waiting up to expires_ms. */
static natsStatus request(prj_pull *p, int batch, int64_t expires_ms)
{
    char reply[sizeof p->inbox + 24], body[96];
    p->id++;
    snprintf(reply, sizeof reply, "%s.%" PRIu64, p->inbox, p->id);
    if (expires_ms > 0)
        snprintf(body, sizeof body, "{\"batch\":%d,\"expires\":%" PRId64 "}", batch,
                 expires_ms * 1000000);
    else
        snprintf(body, sizeof body, "{\"batch\":%d,\"no_wait\":true}", batch);
    return natsConnection_PublishRequestString(p->nc, p->next_subject, reply, body);
}

/* The request id a reply subject names, or 0. */
static uint64_t reply_id(const prj_pull *p, const char *subject)
{
    size_t len = strlen(p->inbox);
    if (!subject || strncmp(subject, p->inbox, len) != 0 || subject[len] != '.')
        return 0;
    return strtoull(subject + len + 1, NULL, 10);
}

/* What one received message was. */
enum got { GOT_NOTHING, GOT_EVENT, GOT_OTHER, GOT_END, GOT_REFUSED, GOT_FAILED };

/* Takes the next message, waiting up to timeout_ms (0: only one already
 * here). An event goes into msgs; a status that ends the latest request
 * (404, 408) is GOT_END, one that refuses it (409 and the like)
 * GOT_REFUSED; a heartbeat or a status about an earlier request is
 * GOT_OTHER and is dropped. A subscription that cannot be read is
 * GOT_FAILED (p->failed says why); one that dropped messages because too
 * many waited (libnats reports it once) is GOT_OTHER: the model's gap check
 * sees the loss. */
static enum got receive(prj_pull *p, natsMsg **msgs, int *n, int64_t timeout_ms, int *code)
{
    natsMsg *m = NULL;
    natsStatus s = natsSubscription_NextMsg(&m, p->sub, timeout_ms > 0 ? timeout_ms : 0);
    if (s == NATS_TIMEOUT)
        return GOT_NOTHING;
    if (s == NATS_SLOW_CONSUMER) {
        bus_msg_free(m);
        return GOT_OTHER;
    }
    if (s != NATS_OK) {
        p->failed = s;
        return GOT_FAILED;
    }
    const char *status = NULL;
    if (natsMsg_GetDataLength(m) > 0 || natsMsgHeader_Get(m, "Status", &status) != NATS_OK ||
        !status) {
        const char *ack = natsMsg_GetReply(m);
        if (p->first_id == UINT64_MAX || !ack || !strstr(ack, p->ack_part)) {
            bus_msg_free(m); /* an earlier start's consumer sent it */
            return GOT_OTHER;
        }
        msgs[(*n)++] = m;
        return GOT_EVENT;
    }
    int c = atoi(status);
    uint64_t id = reply_id(p, natsMsg_GetSubject(m)); /* a status comes on the reply subject */
    bool ours = id == p->id && id >= p->first_id;
    bus_msg_free(m);
    if (!ours || c == 100)
        return GOT_OTHER;
    *code = c;
    return c == 404 || c == 408 ? GOT_END : GOT_REFUSED;
}

/* Takes what is already here, up to batch; false on a refusal or failure. */
static bool take_waiting(prj_pull *p, natsMsg **msgs, int *n, int batch, int *code)
{
    enum got g;
    while (*n < batch && (g = receive(p, msgs, n, 0, code)) != GOT_NOTHING)
        if (g == GOT_REFUSED || g == GOT_FAILED)
            return false;
    return true;
}

/* Waits for events of the latest request until the batch is full, the
 * request ends, or `until` (monotonic ns); with first_only, until the first
 * event. False on a refusal or failure. */
static bool take_answer(prj_pull *p, natsMsg **msgs, int *n, int batch, uint64_t until,
                        bool first_only, int *code)
{
    int had = *n;
    for (;;) {
        uint64_t now = guild_mono_ns();
        if (*n >= batch || (first_only && *n > had) || now >= until)
            return true;
        int64_t left_ms = (int64_t)((until - now + 999999) / 1000000);
        enum got g = receive(p, msgs, n, left_ms, code);
        if (g == GOT_REFUSED || g == GOT_FAILED)
            return false;
        if (g == GOT_END || g == GOT_NOTHING)
            return true;
    }
}

natsStatus prj_pull_fetch(prj_pull *p, natsMsgList *list, int batch, int wait_ms)
{
    memset(list, 0, sizeof *list);
    if (batch <= 0)
        return NATS_INVALID_ARG;
    natsMsg **msgs = guild_xcalloc((size_t)batch, sizeof *msgs);
    int n = 0, code = 0;
    uint64_t until = guild_mono_ns() + (uint64_t)wait_ms * 1000000;
    natsStatus s = NATS_OK;
    p->failed = NATS_OK;
    bool ok = take_waiting(p, msgs, &n, batch, &code);
    if (ok && n < batch) { /* and what the consumer has now */
        s = request(p, batch - n, 0);
        ok = s != NATS_OK || take_answer(p, msgs, &n, batch, until, false, &code);
    }
    if (ok && s == NATS_OK && n == 0 && code == 404) { /* nothing: wait for the first */
        uint64_t now = guild_mono_ns();
        int64_t left_ms = now < until ? (int64_t)((until - now) / 1000000) : 0;
        if (left_ms > EXPIRES_EARLY_MS) {
            code = 0;
            s = request(p, batch, left_ms - EXPIRES_EARLY_MS);
            ok = s != NATS_OK || (take_answer(p, msgs, &n, batch, until, true, &code) &&
                                  take_waiting(p, msgs, &n, batch, &code));
        }
    }
    if (s == NATS_OK && !ok)
        s = p->failed != NATS_OK ? p->failed : code == 503 ? NATS_NO_RESPONDERS : NATS_ERR;
    if (n > 0) {
        list->Msgs = msgs;
        list->Count = n;
        return NATS_OK;
    }
    free(msgs);
    return s == NATS_OK ? NATS_TIMEOUT : s;
}

natsStatus prj_pull_ack(natsConnection *nc, natsMsg *m)
{
    const char *reply = natsMsg_GetReply(m);
    if (!reply || !*reply)
        return NATS_INVALID_ARG;
    return natsConnection_PublishString(nc, reply, "+ACK");
}

void prj_pull_stop(prj_pull *p, bool drop)
{
    if (drop && p->current[0])
        js_DeleteConsumer(p->js, p->stream, p->current, NULL, NULL);
    p->first_id = UINT64_MAX; /* until the next start: nothing is taken */
}

void prj_pull_free(prj_pull *p)
{
    if (!p)
        return;
    if (p->sub) {
        natsSubscription_Unsubscribe(p->sub);
        natsSubscription_Destroy(p->sub);
    }
    free(p);
}
