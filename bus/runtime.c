/*
 * runtime.c — the command runtime of one domain (see runtime.h).
 *
 * Sections: the request, replies, the environment offered to domain code,
 * decide on the writer thread, completion, the prepare pool, the NATS
 * handlers, start and stop.
 */
#include "bus/runtime.h"

#include "bus/auth.h"
#include "bus/checkpoint.h"
#include "bus/conn.h"
#include "bus/relay.h"
#include "bus/service.h"
#include "bus/state.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/codec.h"
#include "common/log.h"
#include "common/text.h"
#include "common/uuid.h"
#include "domain/registry.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CACHE_MAX 65536
#define ID_MAX 128

typedef struct cmd_req cmd_req;

struct bus_runtime {
    const dom_domain *domain;
    char *name;
    bool dev_mode;
    es_store *store;
    natsConnection *nc;
    bus_service *svc;
    bus_endpoint *ep_cmd, *ep_qry;
    bus_relay *relay;
    bus_auth *auth;
    bus_signer *signer;    /* signs the log head now and then (checkpoint.h) */
    agg_cache *cache;      /* the thread running the store's batch only */
    cmd_req *last_decided; /* likewise: of the batch being run */
    /* Completions run one at a time, in order (on the writer or the store's
     * completer): events committed since the relay was last woken. */
    bool relay_due;

    /* prepare pool */
    pthread_mutex_t q_lock;
    pthread_cond_t q_cond;
    cmd_req *q_head, *q_tail;
    bool q_stop;
    pthread_t *workers;
    unsigned n_workers;

    /* requests in flight, so stop can wait for them */
    pthread_mutex_t f_lock;
    pthread_cond_t f_cond;
    unsigned in_flight;
    /* Requests done with, kept for the next ones (under f_lock): a request
     * is over a kilobyte, and allocating one that large on every command
     * made malloc consolidate its free lists each time. */
    cmd_req *spare;
    unsigned n_spare;
};

/* ---- the request ---------------------------------------------------------- */

struct cmd_req {
    cmd_req *next;
    bus_runtime *rt;
    const dom_command *cmd;
    natsMsg *msg;
    guild_format fmt;
    uint64_t started;
    json_t *body;
    bus_caller caller;
    char id[ID_MAX + 1];
    char stream[ES_STREAM_MAX + 1];
    const char *command_id, *correlation_id;
    char actor[ID_MAX + 16];
    uint64_t expected;
    json_t *prepared;
    /* from decide */
    json_t *events;
    json_t *reply_data;
    guild_status reply_status;
    guild_error reply_error;
    /* Set on the writer thread, read on completion (after the store's
     * hand-over): decide ran for it, and it was the last of its batch to
     * be decided. The replies of a batch are written together after the
     * last one; a reply not decided (a refusal before decide) goes at once. */
    bool decided, last_of_batch;
};

#define SPARE_MAX 1024

/* A zeroed request, counted in flight. */
static cmd_req *req_new(bus_runtime *rt)
{
    pthread_mutex_lock(&rt->f_lock);
    rt->in_flight++;
    cmd_req *r = rt->spare;
    if (r) {
        rt->spare = r->next;
        rt->n_spare--;
    }
    pthread_mutex_unlock(&rt->f_lock);
    if (!r)
        return guild_xcalloc(1, sizeof *r);
    memset(r, 0, sizeof *r);
    return r;
}

static void req_free(cmd_req *r)
{
    bus_runtime *rt = r->rt;
    json_decref(r->body);
    json_decref(r->prepared);
    json_decref(r->events);
    json_decref(r->reply_data);
    bus_caller_release(&r->caller);
    bus_msg_free(r->msg);
    pthread_mutex_lock(&rt->f_lock);
    if (rt->n_spare < SPARE_MAX) {
        r->next = rt->spare;
        rt->spare = r;
        rt->n_spare++;
        r = NULL;
    }
    if (--rt->in_flight == 0)
        pthread_cond_broadcast(&rt->f_cond);
    pthread_mutex_unlock(&rt->f_lock);
    free(r);
}

/* ---- replies -------------------------------------------------------------- */

static void reply_error(cmd_req *r, guild_status s, const char *field, const char *message)
{
    if (s == GUILD_INTERNAL || s == GUILD_IO || s == GUILD_CORRUPT) {
        guild_log_set_context(r->correlation_id, bus_header(r->msg, BUS_H_TRACEPARENT));
        guild_error("%s.%s failed: %s", r->rt->name, r->cmd ? r->cmd->name : "?", message);
        guild_log_set_context(NULL, NULL);
    }
    /* Internal failures surface as `internal` or `unavailable` on the wire. */
    if (s == GUILD_IO || s == GUILD_CORRUPT)
        s = GUILD_INTERNAL;
    else if (s == GUILD_CLOSED || s == GUILD_TIMEOUT)
        s = GUILD_UNAVAILABLE;
    /* Counted before the reply leaves, so a client that asks $SRV.STATS
     * right after its reply sees its request. */
    bus_endpoint_record_status(r->rt->ep_cmd, r->started, s, message);
    bus_reply_error(r->rt->nc, natsMsg_GetReply(r->msg), r->fmt, s, field, message);
}

/* ---- the success reply, encoded directly ------------------------------------
 *
 * Almost every reply is {ok, id, stream, version, position, events,
 * consistency, data}: it is written straight into bytes, JSON as jansson
 * would dump it (compact, keys in this order, the same escapes) or msgpack
 * as guild_codec_pack would pack it, with no json_t in between. */

static int out_dump(const char *p, size_t n, void *data)
{
    guild_buf_put(data, p, n);
    return 0;
}

static int out_pack(void *data, const char *p, size_t n)
{
    guild_buf_put(data, p, n);
    return 0;
}

static void out_json_u64(guild_buf *b, const char *key, uint64_t v)
{
    char num[GUILD_U64_DEC_MAX];
    guild_buf_put(b, ",\"", 2);
    guild_buf_str(b, key);
    guild_buf_put(b, "\":", 2);
    guild_buf_put(b, num, guild_u64_dec(num, v));
}

static void pack_cstr(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

/* Returns false (b untouched beyond its buffer) if `data` cannot be encoded. */
static bool success_bytes(bus_runtime *rt, const es_result *res, const char *id, const json_t *data,
                          guild_format fmt, guild_buf *b)
{
    /* A command that changed nothing still hands out a usable token: the
     * log's head now, which a query can wait for. */
    uint64_t position = res->last_position;
    if (!position)
        es_log_head(rt->store, &position, NULL);
    char consistency[96];
    guild_name_u64(consistency, sizeof consistency, rt->name, position);
    if (fmt == GUILD_FMT_MSGPACK) {
        msgpack_packer pk;
        msgpack_packer_init(&pk, b, out_pack);
        msgpack_pack_map(&pk, 8);
        pack_cstr(&pk, "ok");
        msgpack_pack_true(&pk);
        pack_cstr(&pk, "id");
        pack_cstr(&pk, id);
        pack_cstr(&pk, "stream");
        pack_cstr(&pk, res->stream);
        pack_cstr(&pk, "version");
        msgpack_pack_int64(&pk, (int64_t)res->version);
        pack_cstr(&pk, "position");
        msgpack_pack_int64(&pk, (int64_t)position);
        pack_cstr(&pk, "events");
        msgpack_pack_array(&pk, res->n_events);
        for (uint32_t i = 0; i < res->n_events; i++)
            pack_cstr(&pk, res->event_ids[i]);
        pack_cstr(&pk, "consistency");
        pack_cstr(&pk, consistency);
        pack_cstr(&pk, "data");
        if (data)
            guild_codec_pack(&pk, data);
        else
            msgpack_pack_map(&pk, 0);
        return true;
    }
    guild_buf_str(b, "{\"ok\":true,\"id\":");
    guild_buf_json_str(b, id, strlen(id));
    guild_buf_str(b, ",\"stream\":");
    guild_buf_json_str(b, res->stream, strlen(res->stream));
    out_json_u64(b, "version", res->version);
    out_json_u64(b, "position", position);
    guild_buf_str(b, ",\"events\":[");
    for (uint32_t i = 0; i < res->n_events; i++) {
        if (i)
            guild_buf_put(b, ",", 1);
        guild_buf_json_str(b, res->event_ids[i], strlen(res->event_ids[i]));
    }
    guild_buf_str(b, "],\"consistency\":");
    guild_buf_json_str(b, consistency, strlen(consistency));
    guild_buf_str(b, ",\"data\":");
    if (!data)
        guild_buf_str(b, "{}");
    else if (json_dump_callback(data, out_dump, b,
                                JSON_COMPACT | JSON_ENCODE_ANY | guild_json_reals(data)) != 0)
        return false;
    guild_buf_put(b, "}", 1);
    return true;
}

static void reply_success(cmd_req *r, const es_result *res, const char *id, json_t *data)
{
    if (r->cmd->opaque_reply) {
        json_t *body =
            json_pack("{s:b, s:o}", "ok", 1, "data", data ? json_incref(data) : json_object());
        bus_endpoint_record_status(r->rt->ep_cmd, r->started, GUILD_OK, NULL);
        bus_reply(r->rt->nc, natsMsg_GetReply(r->msg), r->fmt, body, 200);
        json_decref(body);
        return;
    }
    guild_buf b = {0};
    if (!success_bytes(r->rt, res, id, data, r->fmt, &b)) {
        free(b.data);
        reply_error(r, GUILD_INTERNAL, NULL, "the reply does not encode");
        return;
    }
    bus_endpoint_record_status(r->rt->ep_cmd, r->started, GUILD_OK, NULL);
    bus_reply_bytes(r->rt->nc, natsMsg_GetReply(r->msg), r->fmt, b.data, b.len, 200);
    free(b.data);
}

/* Replies from a store result. The first answer uses what decide produced;
 * a repeat rebuilds the same answer from the reply stored with the command
 * id (all but secret data). */
static void reply_result(cmd_req *r, const es_result *res)
{
    if (!res->duplicate) {
        if (r->reply_status != GUILD_OK)
            reply_error(r, r->reply_status, NULL, r->reply_error.message);
        else
            reply_success(r, res, r->id, r->reply_data);
        return;
    }
    json_t *stored = NULL;
    if (res->reply_len)
        guild_codec_decode(res->reply, res->reply_len, GUILD_FMT_MSGPACK, &stored, NULL);
    json_t *err = json_object_get(stored, "error");
    if (err) {
        guild_status s = guild_status_from_code(json_string_value(json_object_get(err, "code")));
        reply_error(r, s, NULL, json_string_value(json_object_get(err, "message")));
    } else {
        const char *id = json_string_value(json_object_get(stored, "id"));
        reply_success(r, res, id ? id : r->id, json_object_get(stored, "data"));
    }
    json_decref(stored);
}

/* ---- the environment offered to domain code ------------------------------ */

typedef struct env_self {
    bus_runtime *rt;
    es_wctx *w; /* NULL outside the writer */
} env_self;

static uint64_t env_stream_version(void *self, const char *stream)
{
    env_self *e = self;
    if (e->w)
        return es_wctx_head(e->w, stream);
    uint64_t v = 0;
    if (es_stream_head(e->rt->store, stream, &v, NULL) != GUILD_OK)
        return 0;
    return v;
}

static guild_status env_load(void *self, const dom_aggregate *agg, const char *stream, void **state,
                             uint64_t *version)
{
    env_self *e = self;
    return e->w ? agg_load_wctx(e->w, agg, stream, state, version)
                : agg_load(e->rt->store, agg, stream, state, version);
}

static guild_status env_sign(void *self, const json_t *claims, char **token)
{
    env_self *e = self;
    return bus_auth_sign(e->rt->auth, claims, token);
}

static void ctx_setup(dom_ctx *c, cmd_req *r, dom_env *env, env_self *self, es_wctx *w)
{
    self->rt = r->rt;
    self->w = w;
    env->self = self;
    env->stream_version = env_stream_version;
    env->load = env_load;
    env->sign_token = env_sign;
    dom_ctx_init(c);
    c->domain = r->rt->name;
    c->actor = &r->caller.actor;
    c->now = w ? es_wctx_time(w) : guild_now_ns();
    c->aggregate_id = r->id;
    c->stream = r->stream;
    c->prepared = r->prepared;
    c->env = env;
    c->dev_mode = r->rt->dev_mode;
}

/* ---- decide on the writer thread ------------------------------------------ */

/* Encodes the decided events into the append and evolves the cached state
 * with those on the target's own stream. */
static guild_status emit_events(cmd_req *r, es_wctx *w, dom_ctx *c, agg_entry *entry)
{
    agg_entry *e = entry;
    uint64_t own_events = 0;
    size_t i;
    json_t *ev;
    /* Every event is handed to the store (which refuses one that is not an
     * event) before any is evolved into the cache: an append refused half
     * way would leave the cache ahead of the log. */
    json_array_foreach(c->events, i, ev)
    {
        const char *type = json_string_value(json_object_get(ev, "type"));
        const char *stream = json_string_value(json_object_get(ev, "stream"));
        char *bytes = NULL;
        size_t len = 0;
        if (!type || guild_codec_encode(json_object_get(ev, "data"), GUILD_FMT_MSGPACK, &bytes,
                                        &len) != GUILD_OK)
            return es_wctx_fail(w, GUILD_INTERNAL, NULL, "an event does not encode");
        uint32_t schema = dom_event_schema(r->rt->domain, type);
        bool own = !stream || strcmp(stream, r->stream) == 0;
        guild_status s = own ? es_wctx_emit(w, type, schema, bytes, len)
                             : es_wctx_emit_to(w, stream, type, schema, bytes, len);
        free(bytes);
        if (s != GUILD_OK)
            return es_wctx_fail(w, s, NULL, "decide made an event that is not one (%s)", type);
    }
    json_array_foreach(c->events, i, ev)
    {
        const char *stream = json_string_value(json_object_get(ev, "stream"));
        if (stream && strcmp(stream, r->stream) != 0)
            continue;
        own_events++;
        if (!e)
            continue;
        const char *type = json_string_value(json_object_get(ev, "type"));
        if (agg_evolve(e->agg, e->state, type, json_object_get(ev, "data"), e->version + 1,
                       c->now) != GUILD_OK) {
            agg_cache_forget(r->rt->cache, r->stream); /* frees e */
            e = NULL; /* later events need no evolve, and no snapshot is made */
        } else if (++e->version != es_wctx_version(w) + own_events) {
            e = NULL;
        }
    }
    /* Each time the stream passes a multiple of BUS_SNAPSHOT_EVERY versions,
     * a snapshot of the evolved state goes into the same commit: a load
     * after a restart or an eviction from the cache reads fewer events. */
    if (e && e->agg->snapshot && own_events && agg_snapshots_on() &&
        e->version == es_wctx_version(w) + own_events &&
        e->version / BUS_SNAPSHOT_EVERY != (e->version - own_events) / BUS_SNAPSHOT_EVERY) {
        char *snap = NULL;
        size_t len = 0;
        if (e->agg->snapshot(e->state, &snap, &len) == GUILD_OK)
            es_wctx_snapshot(w, e->version, snap, len);
        free(snap);
    }
    return GUILD_OK;
}

/* The reply kept with the command id: {id, data?, error?}. */
static void store_reply(cmd_req *r, es_wctx *w, dom_ctx *c)
{
    json_t *stored = json_object();
    json_object_set_new(stored, "id", json_string(r->id));
    if (!r->cmd->secret_reply)
        json_object_set(stored, "data", c->reply);
    if (c->reply_status != GUILD_OK)
        json_object_set_new(stored, "error",
                            json_pack("{s:s, s:s}", "code", guild_status_code(c->reply_status),
                                      "message", c->error.message));
    char *bytes = NULL;
    size_t len = 0;
    if (guild_codec_encode(stored, GUILD_FMT_MSGPACK, &bytes, &len) == GUILD_OK)
        es_wctx_set_reply(w, bytes, len);
    free(bytes);
    json_decref(stored);
}

static guild_status run_decide(void *arg, es_wctx *w)
{
    cmd_req *r = arg;
    bus_runtime *rt = r->rt;
    r->decided = true;
    rt->last_decided = r;
    agg_entry *e = NULL;
    guild_status s = agg_cache_at(rt->cache, w, r->stream, r->cmd->aggregate, &e);
    if (s != GUILD_OK)
        return es_wctx_fail(w, s, NULL, "the aggregate cannot be loaded");

    dom_ctx c;
    dom_env env;
    env_self self;
    ctx_setup(&c, r, &env, &self, w);
    c.version = e->version;
    s = r->cmd->decide(e->state, r->body, &c);
    if (s != GUILD_OK) {
        s = es_wctx_fail(w, s, c.error.field, "%s",
                         c.error.message[0] ? c.error.message : guild_status_code(s));
        dom_ctx_release(&c);
        return s;
    }
    /* The cache entry may move when emit_to loads others; look it up by stream. */
    s = emit_events(r, w, &c, e);
    if (s == GUILD_OK) {
        store_reply(r, w, &c);
        json_decref(r->events);
        json_decref(r->reply_data);
        r->events = json_incref(c.events);
        r->reply_data = json_incref(c.reply);
        r->reply_status = c.reply_status;
        r->reply_error = c.error;
    }
    dom_ctx_release(&c);
    return s;
}

static void on_batch(void *arg, bool committed)
{
    bus_runtime *rt = arg;
    /* Also after a failed attempt: its replies must not wait for a mark
     * that a rerun would put elsewhere (an extra mark only writes early). */
    if (rt->last_decided)
        rt->last_decided->last_of_batch = true;
    rt->last_decided = NULL;
    if (!committed)
        agg_cache_clear(rt->cache);
}

/* ---- completion ------------------------------------------------------------ */

static void observe_identity(cmd_req *r)
{
    size_t i;
    json_t *ev;
    int64_t now_s = guild_now_ns() / 1000000000;
    json_array_foreach(r->events, i, ev)
    {
        const char *type = json_string_value(json_object_get(ev, "type"));
        json_t *data = json_deep_copy(json_object_get(ev, "data"));
        if (!json_object_get(data, "user_id") && !json_object_get(ev, "stream"))
            json_object_set_new(data, "user_id", json_string(r->id));
        bus_auth_observe(r->rt->auth, type, data, now_s);
        json_decref(data);
    }
}

static void on_done(void *arg, es_result *res)
{
    cmd_req *r = arg;
    bus_runtime *rt = r->rt;
    bool flush = !r->decided || r->last_of_batch;
    bus_hold(true);
    if (res->status == GUILD_OK) {
        if (!res->duplicate && strcmp(rt->name, "identity") == 0)
            observe_identity(r);
        reply_result(r, res);
        if (res->n_events)
            rt->relay_due = true;
    } else {
        reply_error(r, res->status, res->error.field, res->error.message);
    }
    bus_hold(false);
    if (flush) {
        bus_flush(rt->nc);
        /* One wake-up of the relay per batch, after its replies are out. */
        if (rt->relay_due && rt->relay)
            bus_relay_notify(rt->relay);
        rt->relay_due = false;
    }
    es_result_release(res);
    req_free(r);
}

/* `here`: this thread holds no read transaction and nothing else waits for
 * it, so it may run the append itself when the store's writer is idle. */
static void submit(cmd_req *r, bool here)
{
    es_append a = {
        .stream = r->stream,
        .expected_version = r->expected,
        .prov = {.command_id = r->command_id,
                 .correlation_id = r->correlation_id,
                 .actor = r->actor[0] ? r->actor : NULL},
        .decide = run_decide,
        .decide_ctx = r,
        .run_here = here,
    };
    guild_status s = es_append_submit(r->rt->store, &a, on_done, r);
    if (s != GUILD_OK) {
        reply_error(r, s == GUILD_CLOSED ? GUILD_UNAVAILABLE : s, NULL,
                    "the event store does not take the command");
        req_free(r);
    }
}

/* ---- the prepare pool ------------------------------------------------------ */

static void prepare_and_submit(cmd_req *r)
{
    const dom_aggregate *agg = r->cmd->aggregate;
    void *state = NULL;
    uint64_t version = 0;
    guild_status s = agg_load(r->rt->store, agg, r->stream, &state, &version);
    if (s != GUILD_OK) {
        reply_error(r, s, NULL, "the aggregate cannot be loaded");
        req_free(r);
        return;
    }
    dom_ctx c;
    dom_env env;
    env_self self;
    ctx_setup(&c, r, &env, &self, NULL);
    c.version = version;
    s = r->cmd->prepare(state, r->body, &c);
    agg->destroy(state);
    if (s != GUILD_OK) {
        reply_error(r, s, c.error.field, c.error.message);
        dom_ctx_release(&c);
        req_free(r);
        return;
    }
    r->prepared = json_incref(c.prep);
    dom_ctx_release(&c);
    submit(r, true);
}

static void *worker_main(void *arg)
{
    bus_runtime *rt = arg;
    for (;;) {
        pthread_mutex_lock(&rt->q_lock);
        while (!rt->q_head && !rt->q_stop)
            pthread_cond_wait(&rt->q_cond, &rt->q_lock);
        cmd_req *r = rt->q_head;
        if (!r) {
            pthread_mutex_unlock(&rt->q_lock);
            return NULL;
        }
        rt->q_head = r->next;
        if (!rt->q_head)
            rt->q_tail = NULL;
        pthread_mutex_unlock(&rt->q_lock);
        r->next = NULL;
        prepare_and_submit(r);
    }
}

static void enqueue_prepare(bus_runtime *rt, cmd_req *r)
{
    pthread_mutex_lock(&rt->q_lock);
    if (rt->q_tail)
        rt->q_tail->next = r;
    else
        rt->q_head = r;
    rt->q_tail = r;
    pthread_cond_signal(&rt->q_cond);
    pthread_mutex_unlock(&rt->q_lock);
}

/* ---- the NATS handlers ----------------------------------------------------- */

static bool header_id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 128)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("._:-", *s)))
            return false;
    return true;
}

/* Reads the headers; false after replying when one is malformed. */
static bool read_headers(cmd_req *r)
{
    r->expected = ES_ANY_VERSION;
    r->command_id = bus_header(r->msg, BUS_H_COMMAND_ID);
    if (r->command_id && !header_id_ok(r->command_id)) {
        reply_error(r, GUILD_INVALID_REQUEST, BUS_H_COMMAND_ID,
                    "Guild-Command-Id must be 1 to 128 of A-Z a-z 0-9 . _ : -");
        return false;
    }
    r->correlation_id = bus_header(r->msg, BUS_H_CORRELATION);
    if (r->correlation_id && !header_id_ok(r->correlation_id)) {
        reply_error(r, GUILD_INVALID_REQUEST, BUS_H_CORRELATION,
                    "Guild-Correlation-Id must be 1 to 128 of A-Z a-z 0-9 . _ : -");
        return false;
    }
    const char *ev = bus_header(r->msg, BUS_H_EXPECTED);
    if (ev) {
        char *end = NULL;
        errno = 0;
        unsigned long long v = strtoull(ev, &end, 10);
        if (!*ev || *end || errno || ev[0] < '0' || ev[0] > '9' || v >= ES_ANY_VERSION) {
            reply_error(r, GUILD_INVALID_REQUEST, BUS_H_EXPECTED,
                        "Guild-Expected-Version must be a non-negative integer");
            return false;
        }
        r->expected = v;
    }
    return true;
}

/* Checks the token and the permission; false after replying. */
static bool authorize(cmd_req *r)
{
    const char *auth = bus_header(r->msg, BUS_H_AUTH);
    if (r->cmd->is_public && !auth)
        return true;
    guild_error err = {0};
    guild_status s =
        bus_auth_verify(r->rt->auth, auth, guild_now_ns() / 1000000000, &r->caller, &err);
    if (s != GUILD_OK) {
        if (r->cmd->is_public)
            return true; /* a bad token on a public command is ignored */
        reply_error(r, s, NULL, err.message);
        return false;
    }
    if (r->caller.actor.service)
        guild_copy(r->actor, sizeof r->actor,
                   json_string_value(json_object_get(r->caller.claims, "sub")));
    else
        guild_copy(r->actor, sizeof r->actor, r->caller.actor.user_id);
    if (r->cmd->permission && !dom_actor_can(&r->caller.actor, r->cmd->permission)) {
        char msg[160];
        snprintf(msg, sizeof msg, "the permission %s is needed", r->cmd->permission);
        reply_error(r, GUILD_FORBIDDEN, NULL, msg);
        return false;
    }
    return true;
}

/* Finds the aggregate the command acts on; false after replying. */
static bool find_target(cmd_req *r)
{
    const dom_command *cmd = r->cmd;
    if (cmd->id_field) {
        const char *id = json_string_value(json_object_get(r->body, cmd->id_field));
        if (!id || !*id || strlen(id) > ID_MAX) {
            reply_error(r, GUILD_VALIDATION_FAILED, cmd->id_field, "the aggregate id is missing");
            return false;
        }
        guild_copy(r->id, sizeof r->id, id);
    } else if (cmd->creates) {
        guild_uuid7(r->id);
    } else if (cmd->resolve) {
        dom_ctx c;
        dom_env env;
        env_self self;
        ctx_setup(&c, r, &env, &self, NULL);
        guild_status s = cmd->resolve(r->body, &c, r->id, sizeof r->id);
        if (s != GUILD_OK) {
            reply_error(r, s, c.error.field,
                        c.error.message[0] ? c.error.message : guild_status_code(s));
            dom_ctx_release(&c);
            return false;
        }
        dom_ctx_release(&c);
    } else {
        reply_error(r, GUILD_INTERNAL, NULL, "the command names no aggregate");
        return false;
    }
    dom_stream_name(r->rt->name, cmd->aggregate, r->id, r->stream, sizeof r->stream);
    return true;
}

/* A repeat of a committed command answers at once from the store. */
static bool answered_from_history(cmd_req *r)
{
    if (!r->command_id)
        return false;
    es_result res;
    if (es_command_lookup(r->rt->store, r->command_id, &res) != GUILD_OK)
        return false;
    reply_result(r, &res);
    es_result_release(&res);
    return true;
}

static void on_command(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    bus_runtime *rt = closure;
    cmd_req *r = req_new(rt);
    r->rt = rt;
    r->msg = msg;
    r->started = guild_mono_ns();
    const char *data = natsMsg_GetData(msg);
    size_t len = (size_t)natsMsg_GetDataLength(msg);
    r->fmt = guild_format_detect(bus_header(msg, BUS_H_CONTENT_TYPE), data, len);

    const char *subject = natsMsg_GetSubject(msg);
    const char *name = strrchr(subject, '.');
    r->cmd = name ? dom_command_find(rt->domain, name + 1) : NULL;
    guild_error err = {0};
    if (len > BUS_MAX_BODY) {
        reply_error(r, GUILD_INVALID_REQUEST, NULL, "the body is over 1 MiB");
    } else if (!r->cmd) {
        char m[200];
        snprintf(m, sizeof m, "unknown command %.120s", name ? name + 1 : subject);
        reply_error(r, GUILD_INVALID_REQUEST, NULL, m);
    } else if (guild_codec_decode(data, len, r->fmt, &r->body, &err) != GUILD_OK) {
        reply_error(r, GUILD_INVALID_REQUEST, NULL, err.message);
    } else if (dom_validate(r->cmd->fields, r->body, &err) != GUILD_OK) {
        reply_error(r, err.status, err.field, err.message);
    } else if (read_headers(r) && authorize(r) && !answered_from_history(r) && find_target(r)) {
        if (r->cmd->prepare) {
            enqueue_prepare(rt, r);
        } else {
            /* With more commands behind this one, hand it to the writer
             * (they will be committed together); alone, run it here. */
            int pending = 0;
            bool alone =
                natsSubscription_GetPending(sub, &pending, NULL) == NATS_OK && pending == 0;
            submit(r, alone);
        }
        return;
    }
    req_free(r);
}

static void on_query(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)nc;
    (void)sub;
    bus_runtime *rt = closure;
    uint64_t started = guild_mono_ns();
    guild_format fmt =
        guild_format_detect(bus_header(msg, BUS_H_CONTENT_TYPE), natsMsg_GetData(msg),
                            (size_t)natsMsg_GetDataLength(msg));
    uint64_t position = 0;
    es_log_head(rt->store, &position, NULL);
    json_t *body = json_pack("{s:b, s:o, s:I}", "ok", 1, "data", bus_auth_jwks(rt->auth),
                             "position", (json_int_t)position);
    bus_endpoint_record_status(rt->ep_qry, started, GUILD_OK, NULL);
    bus_reply(rt->nc, natsMsg_GetReply(msg), fmt, body, 200);
    json_decref(body);
    bus_msg_free(msg);
}

/* ---- start and stop -------------------------------------------------------- */

static guild_status open_store(bus_runtime *rt, const bus_runtime_options *opt, guild_error *err)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", opt->data_dir);
    mkdir(dir, 0755);
    snprintf(dir, sizeof dir, "%s/%s", opt->data_dir, rt->name);
    mkdir(dir, 0755);
    snprintf(dir, sizeof dir, "%s/%s/events", opt->data_dir, rt->name);
    mkdir(dir, 0755);
    es_options so = {.domain = rt->name,
                     .map_size = opt->map_size,
                     .batch_hook = on_batch,
                     .batch_hook_ctx = rt};
    return es_store_open(dir, &so, &rt->store, err);
}

static json_t *stats_data(const bus_service *svc, const bus_endpoint *ep, void *ctx)
{
    (void)svc;
    bus_runtime *rt = ctx;
    if (!ep || ep != rt->ep_cmd)
        return NULL;
    es_stats es;
    es_store_stats(rt->store, &es);
    json_t *d = json_pack("{s:I, s:I, s:I, s:I}", "batches", (json_int_t)es.batches, "appends",
                          (json_int_t)es.requests, "max_batch", (json_int_t)es.max_batch,
                          "writer_busy_ns", (json_int_t)es.commit_ns);
    if (rt->relay) {
        bus_relay_stats rs;
        bus_relay_stats_get(rt->relay, &rs);
        json_object_set_new(d, "relay_published", json_integer((json_int_t)rs.published));
        json_object_set_new(d, "relay_lag", json_integer((json_int_t)rs.lag));
    }
    return d;
}

static guild_status start_endpoints(bus_runtime *rt, guild_error *err)
{
    char subject[128], queue[96];
    guild_status s = bus_service_create_quiet(rt->nc, rt->name, GUILD_VERSION,
                                              "guild command handlers", &rt->svc, err);
    if (s != GUILD_OK)
        return s;
    bus_service_set_metadata(rt->svc, "domain", rt->name);
    bus_service_set_stats_handler(rt->svc, stats_data, rt);
    snprintf(subject, sizeof subject, "guild.cmd.%s.*", rt->name);
    snprintf(queue, sizeof queue, "guild.%s", rt->name);
    s = bus_service_add_endpoint(rt->svc, "commands", subject, queue, on_command, rt, &rt->ep_cmd);
    if (s == GUILD_OK && strcmp(rt->name, "identity") == 0)
        s = bus_service_add_endpoint(rt->svc, "public_keys", "guild.qry.identity.public_keys",
                                     "guild.identity.query", on_query, rt, &rt->ep_qry);
    if (s != GUILD_OK)
        return guild_error_set(err, s, 0, "cannot subscribe the %s endpoints", rt->name);
    bus_service_announce(rt->svc);
    return GUILD_OK;
}

/* GUILD_RELAY_LINGER_MS (0 to 1000, 0 = none) as the relay's linger_us;
 * 0 (the relay's default) when unset or out of range. */
static int relay_linger_from_env(void)
{
    const char *v = getenv("GUILD_RELAY_LINGER_MS");
    char *end = NULL;
    double ms = v ? strtod(v, &end) : -1;
    if (!v || end == v || *end || !(ms >= 0 && ms <= 1000))
        return 0;
    return ms == 0 ? -1 : (int)(ms * 1000) > 0 ? (int)(ms * 1000) : 1;
}

guild_status bus_runtime_start(const bus_runtime_options *opt, bus_runtime **out, guild_error *err)
{
    const dom_domain *d = dom_domain_find(opt->domain);
    if (!d)
        return guild_error_set(err, GUILD_INVALID_REQUEST, 0, "unknown domain %s", opt->domain);
    bus_runtime *rt = guild_xcalloc(1, sizeof *rt);
    rt->domain = d;
    rt->name = guild_xstrdup(d->name);
    rt->dev_mode = opt->dev_mode;
    rt->cache = agg_cache_create(CACHE_MAX);
    pthread_mutex_init(&rt->q_lock, NULL);
    pthread_cond_init(&rt->q_cond, NULL);
    pthread_mutex_init(&rt->f_lock, NULL);
    pthread_cond_init(&rt->f_cond, NULL);
    *out = rt;

    guild_status s = open_store(rt, opt, err);
    if (s == GUILD_OK) {
        char key[1024];
        bus_checkpoint_key_path(opt->data_dir, rt->name, key, sizeof key);
        bus_signer_options so = {.store = rt->store, .key_path = key};
        s = bus_signer_start(&so, &rt->signer, err);
    }
    if (s == GUILD_OK)
        s = bus_connect_batched(opt->nats_url, rt->name,
                                opt->connect_wait_ms ? opt->connect_wait_ms : 10000, &rt->nc, err);
    if (s == GUILD_OK)
        s = bus_auth_create(rt->nc, &rt->auth);
    if (s == GUILD_OK && strcmp(rt->name, "identity") == 0) {
        char keys[1024];
        snprintf(keys, sizeof keys, "%s/identity/keys", opt->data_dir);
        s = bus_auth_load_signing_key(rt->auth, keys, err);
    }
    if (s == GUILD_OK) {
        bus_relay_options ro = {.linger_us = relay_linger_from_env()};
        s = bus_relay_start(rt->nc, rt->store, rt->name, &ro, &rt->relay, err);
    }
    /* Every service follows identity's revocations, identity too: after a
     * restart its memory of ended sessions comes back from the stream. */
    if (s == GUILD_OK)
        bus_auth_watch_start(rt->auth);
    unsigned want = opt->workers ? opt->workers : 2;
    rt->workers = guild_xcalloc(want, sizeof *rt->workers);
    while (s == GUILD_OK && rt->n_workers < want) {
        if (pthread_create(&rt->workers[rt->n_workers], NULL, worker_main, rt) != 0)
            s = guild_error_set(err, GUILD_INTERNAL, 0, "cannot start a worker");
        else
            rt->n_workers++;
    }
    if (s == GUILD_OK)
        s = start_endpoints(rt, err);
    if (s != GUILD_OK) {
        bus_runtime_stop(rt);
        *out = NULL;
    }
    return s;
}

void bus_runtime_stop(bus_runtime *rt)
{
    if (!rt)
        return;
    /* No new requests; then let those in flight finish. */
    bus_service_destroy(rt->svc);
    rt->svc = NULL;
    pthread_mutex_lock(&rt->f_lock);
    while (rt->in_flight)
        pthread_cond_wait(&rt->f_cond, &rt->f_lock);
    pthread_mutex_unlock(&rt->f_lock);

    pthread_mutex_lock(&rt->q_lock);
    rt->q_stop = true;
    pthread_cond_broadcast(&rt->q_cond);
    pthread_mutex_unlock(&rt->q_lock);
    for (unsigned i = 0; i < rt->n_workers; i++)
        pthread_join(rt->workers[i], NULL);
    free(rt->workers);
    /* Nothing appends any more: vouch for the head as it is left. */
    bus_signer_stop(rt->signer);

    if (rt->relay) {
        bus_relay_wait_caught_up(rt->relay, 2000);
        bus_relay_stop(rt->relay);
    }
    if (rt->nc)
        natsConnection_FlushTimeout(rt->nc, 1000);
    bus_auth_destroy(rt->auth);
    bus_close(rt->nc);
    es_store_close(rt->store);
    agg_cache_destroy(rt->cache);
    pthread_cond_destroy(&rt->q_cond);
    pthread_mutex_destroy(&rt->q_lock);
    pthread_cond_destroy(&rt->f_cond);
    pthread_mutex_destroy(&rt->f_lock);
    while (rt->spare) {
        cmd_req *next = rt->spare->next;
        free(rt->spare);
        rt->spare = next;
    }
    free(rt->name);
    free(rt);
}

es_store *bus_runtime_store(bus_runtime *rt)
{
    return rt->store;
}
