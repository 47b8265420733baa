/*
 * service.c — the NATS service protocol (ADR-32): discovery subscriptions,
 * endpoints and their counters, and the PING, INFO and STATS documents.
 *
 * Sections: checks on names, versions and subjects; subscriptions and their
 * completion; the documents; discovery handlers; the public calls.
 *
 * Locks: `life_mu` orders adding subscriptions against stopping, so no
 * subscription appears after stop drained the others; `mu` guards the
 * endpoint list, the metadata and the count of live subscriptions; `stats_mu`
 * is held while the stats callback runs, so a replaced callback's context is
 * never used after bus_service_set_stats_handler returns; each endpoint's
 * own `mu` guards its counters. When more than one is held they are taken
 * in that order: life_mu, stats_mu, mu, an endpoint's mu.
 */
#include "bus/service.h"

#include "common/alloc.h"
#include "common/clock.h"
#include "common/codec.h"
#include "common/log.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LAST_ERROR_MAX 256
#define DISCOVERY_SUBS 9 /* three verbs, each for all, for the name, for the instance */

struct bus_endpoint {
    bus_service *svc;
    char *name;
    char *subject;
    char *queue_group; /* NULL: a plain subscription */
    natsSubscription *sub;

    pthread_mutex_t mu;
    uint64_t num_requests;
    uint64_t num_errors;
    uint64_t processing_ns;
    char last_error[LAST_ERROR_MAX];
};

struct bus_service {
    natsConnection *nc; /* borrowed */
    char *name;
    char *version;
    char *description;
    char id[BUS_SERVICE_ID_LEN + 1];
    int64_t started_ns;

    pthread_mutex_t life_mu;
    bool stopped;
    natsSubscription *discovery[DISCOVERY_SUBS];
    int n_discovery;

    pthread_mutex_t mu;
    pthread_cond_t all_done; /* live reached 0 */
    int live;                /* subscriptions whose completion has not been seen */
    json_t *metadata;        /* object of strings */
    bus_endpoint **eps;
    size_t n_eps, cap_eps;

    pthread_mutex_t stats_mu;
    bus_stats_fn stats_fn;
    void *stats_ctx;

    atomic_bool quiet; /* discovery unanswered until bus_service_announce */
};

/* ---- checks ---------------------------------------------------------------- */

static bool name_valid(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (; *s; s++) {
        char c = *s;
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '-'))
            return false;
    }
    return true;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_ident_char(char c)
{
    return is_digit(c) || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '-';
}

/* A number without leading zeros; advances *p past it. */
static bool semver_number(const char **p)
{
    const char *s = *p;
    if (!is_digit(*s))
        return false;
    if (*s == '0' && is_digit(s[1]))
        return false;
    while (is_digit(*s))
        s++;
    *p = s;
    return true;
}

/* Dot-separated identifiers of [0-9A-Za-z-]; in a pre-release, a numeric
 * identifier has no leading zeros. Advances *p past them. */
static bool semver_idents(const char **p, bool prerelease)
{
    const char *s = *p;
    for (;;) {
        const char *start = s;
        bool numeric = true;
        while (is_ident_char(*s)) {
            numeric = numeric && is_digit(*s);
            s++;
        }
        if (s == start)
            return false;
        if (prerelease && numeric && *start == '0' && s - start > 1)
            return false;
        if (*s != '.')
            break;
        s++;
    }
    *p = s;
    return true;
}

/* SemVer 2.0: MAJOR.MINOR.PATCH[-pre][+build], as the protocol requires. */
static bool semver_valid(const char *v)
{
    if (v == NULL)
        return false;
    const char *p = v;
    if (!semver_number(&p) || *p++ != '.' || !semver_number(&p) || *p++ != '.' ||
        !semver_number(&p))
        return false;
    if (*p == '-') {
        p++;
        if (!semver_idents(&p, true))
            return false;
    }
    if (*p == '+') {
        p++;
        if (!semver_idents(&p, false))
            return false;
    }
    return *p == '\0';
}

/* A NATS subject to subscribe to: non-empty tokens separated by dots, no
 * white space or control characters, `*` only as a whole token and `>` only
 * as the whole last token. */
static bool subject_valid(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    const char *tok = s;
    for (const char *p = s;; p++) {
        unsigned char c = (unsigned char)*p;
        if (c == '.' || c == '\0') {
            size_t len = (size_t)(p - tok);
            if (len == 0)
                return false;
            for (const char *q = tok; q < p; q++)
                if ((*q == '*' || *q == '>') && len != 1)
                    return false;
            if (*tok == '>' && c != '\0')
                return false;
            if (c == '\0')
                return true;
            tok = p + 1;
        } else if (c <= ' ' || c == 0x7f) {
            return false;
        }
    }
}

static bool queue_group_valid(const char *s)
{
    if (s == NULL || *s == '\0')
        return false;
    for (; *s; s++)
        if ((unsigned char)*s <= ' ' || *s == 0x7f)
            return false;
    return true;
}

/* True if jansson accepts s as a string (valid UTF-8). */
static bool text_valid(const char *s)
{
    json_t *j = json_string(s);
    json_decref(j);
    return j != NULL;
}

/* ---- subscriptions --------------------------------------------------------- */

/* cnats calls this once a subscription is closed and its handler has
 * returned for the last time. Nothing of svc may be touched after the
 * unlock: bus_service_stop may then return and the service be freed. */
static void sub_completed(void *closure)
{
    bus_service *svc = closure;
    pthread_mutex_lock(&svc->mu);
    if (--svc->live == 0)
        pthread_cond_broadcast(&svc->all_done);
    pthread_mutex_unlock(&svc->mu);
}

/* Subscribes (in a queue group when `queue` is not NULL) and arranges for
 * sub_completed. Called with life_mu held and the service not stopped.
 * On failure nothing is left subscribed. */
static natsStatus sub_start(bus_service *svc, const char *subject, const char *queue,
                            natsMsgHandler handler, void *closure, bool large_backlog,
                            natsSubscription **out)
{
    natsSubscription *sub = NULL;
    natsStatus s;

    /* Counted before the completion callback is set, which may fire at once
     * if the connection closes now. */
    pthread_mutex_lock(&svc->mu);
    svc->live++;
    pthread_mutex_unlock(&svc->mu);

    if (queue != NULL)
        s = natsConnection_QueueSubscribe(&sub, svc->nc, subject, queue, handler, closure);
    else
        s = natsConnection_Subscribe(&sub, svc->nc, subject, handler, closure);
    if (s == NATS_OK && large_backlog)
        s = natsSubscription_SetPendingLimits(sub, BUS_ENDPOINT_PENDING_MSGS,
                                              BUS_ENDPOINT_PENDING_BYTES);
    if (s == NATS_OK)
        s = natsSubscription_SetOnCompleteCB(sub, sub_completed, svc);
    if (s == NATS_OK) {
        *out = sub;
        return NATS_OK;
    }
    /* cnats offers no way to wait for a subscription without a completion
     * callback; one that failed this early can at most be running a handler
     * for a message that arrived in the last microseconds. */
    if (sub != NULL) {
        natsSubscription_Unsubscribe(sub);
        natsSubscription_Destroy(sub);
    }
    pthread_mutex_lock(&svc->mu);
    svc->live--;
    pthread_mutex_unlock(&svc->mu);
    return s;
}

/* A drain waits for the server to confirm the unsubscribe: this long at
 * most (cnats's default is 30 s), so a service stopping while nats-server
 * goes away (both told to stop at once) is not held up by it. */
#define SUB_DRAIN_TIMEOUT_MS 3000

/* Stops delivery on one subscription; its completion follows once the
 * messages already received were handled (drain) or at once (unsubscribe,
 * when the connection is down or draining is refused). */
static void sub_stop(natsConnection *nc, natsSubscription *sub)
{
    if (sub == NULL)
        return;
    if (natsConnection_Status(nc) != NATS_CONN_STATUS_CONNECTED ||
        natsSubscription_DrainTimeout(sub, SUB_DRAIN_TIMEOUT_MS) != NATS_OK)
        natsSubscription_Unsubscribe(sub);
}

/* ---- documents --------------------------------------------------------------- */

/* A JSON string of s; bytes jansson refuses (invalid UTF-8) become '?'. */
static json_t *jstr(const char *s)
{
    json_t *j = json_string(s != NULL ? s : "");
    if (j != NULL)
        return j;
    char *copy = guild_xstrdup(s);
    for (char *p = copy; *p; p++)
        if ((unsigned char)*p >= 0x80)
            *p = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

static json_t *jnum(uint64_t v)
{
    return json_integer(v > (uint64_t)INT64_MAX ? (json_int_t)INT64_MAX : (json_int_t)v);
}

/* The fields every reply has: type, name, id, version, metadata. */
static json_t *doc_new(bus_service *svc, const char *type)
{
    json_t *doc = json_object();
    json_object_set_new(doc, "type", json_string(type));
    json_object_set_new(doc, "name", json_string(svc->name));
    json_object_set_new(doc, "id", json_string(svc->id));
    json_object_set_new(doc, "version", json_string(svc->version));
    pthread_mutex_lock(&svc->mu);
    json_object_set_new(doc, "metadata", json_deep_copy(svc->metadata));
    pthread_mutex_unlock(&svc->mu);
    return doc;
}

/* The endpoints as they are now; endpoints are only freed with the service,
 * so the pointers stay valid after the lock is released. Caller frees. */
static bus_endpoint **eps_snapshot(bus_service *svc, size_t *n)
{
    pthread_mutex_lock(&svc->mu);
    *n = svc->n_eps;
    bus_endpoint **copy = guild_xmalloc((svc->n_eps + 1) * sizeof *copy);
    if (svc->n_eps > 0)
        memcpy(copy, svc->eps, svc->n_eps * sizeof *copy);
    pthread_mutex_unlock(&svc->mu);
    return copy;
}

/* name, subject and queue_group of an endpoint, into `obj`. */
static void ep_identity(json_t *obj, const bus_endpoint *ep)
{
    json_object_set_new(obj, "name", json_string(ep->name));
    json_object_set_new(obj, "subject", jstr(ep->subject));
    if (ep->queue_group != NULL)
        json_object_set_new(obj, "queue_group", jstr(ep->queue_group));
}

static json_t *doc_ping(bus_service *svc)
{
    return doc_new(svc, BUS_SRV_PING_TYPE);
}

static json_t *doc_info(bus_service *svc)
{
    json_t *doc = doc_new(svc, BUS_SRV_INFO_TYPE);
    json_object_set_new(doc, "description", jstr(svc->description));
    json_t *arr = json_array();
    size_t n;
    bus_endpoint **eps = eps_snapshot(svc, &n);
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_object();
        ep_identity(e, eps[i]);
        json_object_set_new(e, "metadata", json_object());
        json_array_append_new(arr, e);
    }
    free(eps);
    json_object_set_new(doc, "endpoints", arr);
    return doc;
}

static json_t *ep_stats(bus_service *svc, bus_endpoint *ep)
{
    pthread_mutex_lock(&ep->mu);
    uint64_t requests = ep->num_requests, errors = ep->num_errors, total = ep->processing_ns;
    char last_error[LAST_ERROR_MAX];
    memcpy(last_error, ep->last_error, sizeof last_error);
    pthread_mutex_unlock(&ep->mu);

    json_t *e = json_object();
    ep_identity(e, ep);
    json_object_set_new(e, "num_requests", jnum(requests));
    json_object_set_new(e, "num_errors", jnum(errors));
    json_object_set_new(e, "last_error", jstr(last_error));
    json_object_set_new(e, "processing_time", jnum(total));
    json_object_set_new(e, "average_processing_time", jnum(requests ? total / requests : 0));
    if (svc->stats_fn != NULL) {
        json_t *data = svc->stats_fn(svc, ep, svc->stats_ctx);
        if (data != NULL)
            json_object_set_new(e, "data", data);
    }
    return e;
}

static json_t *doc_stats(bus_service *svc)
{
    char started[40];
    json_t *doc = doc_new(svc, BUS_SRV_STATS_TYPE);
    json_object_set_new(doc, "started",
                        json_string(guild_time_format(svc->started_ns, started, sizeof started)));
    json_t *arr = json_array();
    size_t n;
    bus_endpoint **eps = eps_snapshot(svc, &n);
    pthread_mutex_lock(&svc->stats_mu);
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, ep_stats(svc, eps[i]));
    json_object_set_new(doc, "endpoints", arr);
    if (svc->stats_fn != NULL) {
        json_t *data = svc->stats_fn(svc, NULL, svc->stats_ctx);
        if (data != NULL)
            json_object_set_new(doc, "data", data);
    }
    pthread_mutex_unlock(&svc->stats_mu);
    free(eps);
    return doc;
}

/* ---- discovery handlers ------------------------------------------------------ */

static void reply_with(bus_service *svc, natsConnection *nc, natsMsg *msg,
                       json_t *(*build)(bus_service *))
{
    const char *reply = natsMsg_GetReply(msg);
    if (reply != NULL && *reply != '\0' && !atomic_load(&svc->quiet)) {
        json_t *doc = build(svc);
        char *text = doc != NULL ? json_dumps(doc, JSON_COMPACT | guild_json_reals(doc)) : NULL;
        natsStatus s = text != NULL ? natsConnection_Publish(nc, reply, text, (int)strlen(text))
                                    : NATS_NO_MEMORY;
        if (s != NATS_OK)
            guild_warn("service %s: discovery reply on %s failed: %s", svc->name,
                       natsMsg_GetSubject(msg), natsStatus_GetText(s));
        free(text);
        json_decref(doc);
    }
    natsMsg_Destroy(msg);
}

static void on_ping(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    reply_with(closure, nc, msg, doc_ping);
}

static void on_info(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    reply_with(closure, nc, msg, doc_info);
}

static void on_stats(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    reply_with(closure, nc, msg, doc_stats);
}

/* Subscribes one verb for all services, for the name and for this instance. */
static natsStatus discovery_start(bus_service *svc, const char *verb, natsMsgHandler handler)
{
    char subjects[3][128];
    snprintf(subjects[0], sizeof subjects[0], "%s.%s", BUS_SRV_PREFIX, verb);
    snprintf(subjects[1], sizeof subjects[1], "%s.%s.%s", BUS_SRV_PREFIX, verb, svc->name);
    snprintf(subjects[2], sizeof subjects[2], "%s.%s.%s.%s", BUS_SRV_PREFIX, verb, svc->name,
             svc->id);
    for (int i = 0; i < 3; i++) {
        natsSubscription *sub = NULL;
        natsStatus s = sub_start(svc, subjects[i], NULL, handler, svc, false, &sub);
        if (s != NATS_OK)
            return s;
        svc->discovery[svc->n_discovery++] = sub;
    }
    return NATS_OK;
}

/* 22 base62 characters: about 131 random bits, like a NATS NUID. */
static void id_generate(char out[BUS_SERVICE_ID_LEN + 1])
{
    static const char digits[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    for (int i = 0; i < BUS_SERVICE_ID_LEN; i++)
        out[i] = digits[randombytes_uniform(62)];
    out[BUS_SERVICE_ID_LEN] = '\0';
}

/* ---- public calls ------------------------------------------------------------ */

static guild_status service_create(natsConnection *nc, const char *name, const char *version,
                                   const char *description, bool quiet, bus_service **out,
                                   guild_error *err)
{
    if (nc == NULL || out == NULL)
        return guild_error_set(err, GUILD_INVALID_REQUEST, 0, "service: no connection or out");
    if (!name_valid(name) || strlen(name) > 64)
        return guild_error_field(err, GUILD_INVALID_REQUEST, "name",
                                 "service name must be 1-64 of [A-Za-z0-9_-]");
    if (!semver_valid(version))
        return guild_error_field(err, GUILD_INVALID_REQUEST, "version",
                                 "service version must be SemVer (1.2.3)");
    if (description != NULL && !text_valid(description))
        return guild_error_field(err, GUILD_INVALID_REQUEST, "description",
                                 "service description must be UTF-8");

    bus_service *svc = guild_xcalloc(1, sizeof *svc);
    svc->nc = nc;
    svc->name = guild_xstrdup(name);
    svc->version = guild_xstrdup(version);
    svc->description = guild_xstrdup(description != NULL ? description : "");
    id_generate(svc->id);
    svc->started_ns = guild_now_ns();
    svc->metadata = json_object();
    atomic_init(&svc->quiet, quiet);
    pthread_mutex_init(&svc->life_mu, NULL);
    pthread_mutex_init(&svc->mu, NULL);
    pthread_mutex_init(&svc->stats_mu, NULL);
    pthread_cond_init(&svc->all_done, NULL);

    pthread_mutex_lock(&svc->life_mu);
    natsStatus s = discovery_start(svc, BUS_SRV_PING, on_ping);
    if (s == NATS_OK)
        s = discovery_start(svc, BUS_SRV_INFO, on_info);
    if (s == NATS_OK)
        s = discovery_start(svc, BUS_SRV_STATS, on_stats);
    pthread_mutex_unlock(&svc->life_mu);

    if (s != NATS_OK) {
        bus_service_destroy(svc);
        return guild_error_set(err, GUILD_UNAVAILABLE, (int)s, "service %s: subscribing %s: %s",
                               name, BUS_SRV_PREFIX, natsStatus_GetText(s));
    }
    *out = svc;
    return GUILD_OK;
}

guild_status bus_service_create(natsConnection *nc, const char *name, const char *version,
                                const char *description, bus_service **out, guild_error *err)
{
    return service_create(nc, name, version, description, false, out, err);
}

guild_status bus_service_create_quiet(natsConnection *nc, const char *name, const char *version,
                                      const char *description, bus_service **out, guild_error *err)
{
    return service_create(nc, name, version, description, true, out, err);
}

guild_status bus_service_announce(bus_service *svc)
{
    /* The flush returns once the server has every subscription made so far:
     * whoever gets a PING reply finds the endpoints there. */
    natsStatus s = natsConnection_FlushTimeout(svc->nc, 5000);
    atomic_store(&svc->quiet, false);
    return s == NATS_OK ? GUILD_OK : GUILD_UNAVAILABLE;
}

static void ep_free(bus_endpoint *ep)
{
    natsSubscription_Destroy(ep->sub);
    pthread_mutex_destroy(&ep->mu);
    free(ep->name);
    free(ep->subject);
    free(ep->queue_group);
    free(ep);
}

guild_status bus_service_add_endpoint(bus_service *svc, const char *name, const char *subject,
                                      const char *queue_group, natsMsgHandler handler,
                                      void *closure, bus_endpoint **out)
{
    if (svc == NULL || handler == NULL || out == NULL || !name_valid(name) ||
        !subject_valid(subject) || !text_valid(subject) ||
        (queue_group != NULL && (!queue_group_valid(queue_group) || !text_valid(queue_group))))
        return GUILD_INVALID_REQUEST;

    bus_endpoint *ep = guild_xcalloc(1, sizeof *ep);
    ep->svc = svc;
    ep->name = guild_xstrdup(name);
    ep->subject = guild_xstrdup(subject);
    ep->queue_group = queue_group != NULL ? guild_xstrdup(queue_group) : NULL;
    pthread_mutex_init(&ep->mu, NULL);

    pthread_mutex_lock(&svc->life_mu);
    if (svc->stopped) {
        pthread_mutex_unlock(&svc->life_mu);
        ep_free(ep);
        return GUILD_CLOSED;
    }
    *out = ep;
    natsSubscription *sub = NULL;
    natsStatus s = sub_start(svc, subject, queue_group, handler, closure, true, &sub);
    if (s != NATS_OK) {
        pthread_mutex_unlock(&svc->life_mu);
        *out = NULL;
        guild_warn("service %s: subscribing endpoint %s on %s: %s", svc->name, name, subject,
                   natsStatus_GetText(s));
        ep_free(ep);
        return GUILD_UNAVAILABLE;
    }
    pthread_mutex_lock(&svc->mu);
    ep->sub = sub;
    if (svc->n_eps == svc->cap_eps) {
        svc->cap_eps = svc->cap_eps ? svc->cap_eps * 2 : 4;
        svc->eps = guild_xrealloc(svc->eps, svc->cap_eps * sizeof *svc->eps);
    }
    svc->eps[svc->n_eps++] = ep;
    pthread_mutex_unlock(&svc->mu);
    pthread_mutex_unlock(&svc->life_mu);
    return GUILD_OK;
}

/* Cuts s to fit `size` bytes without splitting a UTF-8 sequence. */
static void copy_text(char *dst, size_t size, const char *s)
{
    size_t n = strlen(s);
    if (n >= size) {
        n = size - 1;
        while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
            n--;
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
}

void bus_endpoint_record(bus_endpoint *ep, uint64_t started_mono_ns, bool is_error,
                         const char *error_text)
{
    uint64_t now = guild_mono_ns();
    uint64_t spent = started_mono_ns != 0 && now > started_mono_ns ? now - started_mono_ns : 0;
    pthread_mutex_lock(&ep->mu);
    ep->num_requests++;
    ep->processing_ns += spent;
    if (is_error) {
        ep->num_errors++;
        copy_text(ep->last_error, sizeof ep->last_error, error_text != NULL ? error_text : "error");
    }
    pthread_mutex_unlock(&ep->mu);
}

void bus_endpoint_record_status(bus_endpoint *ep, uint64_t started_mono_ns, guild_status s,
                                const char *message)
{
    if (s == GUILD_OK) {
        bus_endpoint_record(ep, started_mono_ns, false, NULL);
        return;
    }
    char text[LAST_ERROR_MAX];
    if (message != NULL && *message != '\0')
        snprintf(text, sizeof text, "%s: %s", guild_status_code(s), message);
    else
        snprintf(text, sizeof text, "%s", guild_status_code(s));
    bus_endpoint_record(ep, started_mono_ns, true, text);
}

guild_status bus_service_set_metadata(bus_service *svc, const char *key, const char *value)
{
    if (svc == NULL || key == NULL || *key == '\0' || !text_valid(key) ||
        (value != NULL && !text_valid(value)))
        return GUILD_INVALID_REQUEST;
    pthread_mutex_lock(&svc->mu);
    if (value != NULL)
        json_object_set_new(svc->metadata, key, json_string(value));
    else
        json_object_del(svc->metadata, key);
    pthread_mutex_unlock(&svc->mu);
    return GUILD_OK;
}

void bus_service_set_stats_handler(bus_service *svc, bus_stats_fn fn, void *ctx)
{
    pthread_mutex_lock(&svc->stats_mu);
    svc->stats_fn = fn;
    svc->stats_ctx = fn != NULL ? ctx : NULL;
    pthread_mutex_unlock(&svc->stats_mu);
}

const char *bus_service_id(const bus_service *svc)
{
    return svc->id;
}

const char *bus_service_name(const bus_service *svc)
{
    return svc->name;
}

const char *bus_endpoint_name(const bus_endpoint *ep)
{
    return ep->name;
}

const char *bus_endpoint_subject(const bus_endpoint *ep)
{
    return ep->subject;
}

const char *bus_endpoint_queue_group(const bus_endpoint *ep)
{
    return ep->queue_group;
}

void bus_service_stop(bus_service *svc)
{
    pthread_mutex_lock(&svc->life_mu);
    if (!svc->stopped) {
        svc->stopped = true;
        for (int i = 0; i < svc->n_discovery; i++)
            sub_stop(svc->nc, svc->discovery[i]);
        size_t n;
        bus_endpoint **eps = eps_snapshot(svc, &n);
        for (size_t i = 0; i < n; i++)
            sub_stop(svc->nc, eps[i]->sub);
        free(eps);
    }
    pthread_mutex_unlock(&svc->life_mu);

    pthread_mutex_lock(&svc->mu);
    while (svc->live > 0)
        pthread_cond_wait(&svc->all_done, &svc->mu);
    pthread_mutex_unlock(&svc->mu);
}

void bus_service_destroy(bus_service *svc)
{
    if (svc == NULL)
        return;
    bus_service_stop(svc);
    for (int i = 0; i < svc->n_discovery; i++)
        natsSubscription_Destroy(svc->discovery[i]);
    for (size_t i = 0; i < svc->n_eps; i++)
        ep_free(svc->eps[i]);
    free(svc->eps);
    json_decref(svc->metadata);
    pthread_cond_destroy(&svc->all_done);
    pthread_mutex_destroy(&svc->stats_mu);
    pthread_mutex_destroy(&svc->mu);
    pthread_mutex_destroy(&svc->life_mu);
    free(svc->name);
    free(svc->version);
    free(svc->description);
    free(svc);
}
