/*
 * test_service.c — the NATS service protocol (bus/service.h) against a real
 * nats-server: what `nats micro ls / info / stats` would see, and requests
 * reaching endpoints.
 *
 * Each test starts its own server (so no service of another test answers)
 * and looks at the JSON replies the way any NATS tool would: it sends a
 * request with its own inbox and gathers every reply for a short while.
 *
 * Sections: helpers; discovery; stats; endpoints; stopping.
 */
#include "bus/service.h"

#include "common/clock.h"

#include "tests/support/check_util.h"
#include "tests/support/nats_server.h"
#include "tests/support/tmpdir.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define GATHER_MS 300
#define MAX_REPLIES 16

static tst_nats g_srv;
static natsConnection *g_nc;

static void server_setup(void)
{
    ck_assert_int_eq(tst_nats_start(&g_srv), 0);
    ck_assert_int_eq(tst_nats_connect(&g_srv, &g_nc), 0);
}

static void server_teardown(void)
{
    natsConnection_Destroy(g_nc);
    g_nc = NULL;
    tst_nats_stop(&g_srv);
    nats_CloseAndWait(5000);
}

/* ---- helpers --------------------------------------------------------------- */

/* Replies gathered for one request; each a parsed JSON document. */
typedef struct replies {
    int n;
    json_t *doc[MAX_REPLIES];
} replies;

static void replies_clear(replies *r)
{
    for (int i = 0; i < r->n; i++)
        json_decref(r->doc[i]);
    r->n = 0;
}

/* Sends an empty request on `subject` and gathers the replies that arrive
 * within GATHER_MS, as `nats micro ping` does. Fails the test on a reply
 * that is not a JSON object. */
static void gather(natsConnection *nc, const char *subject, replies *out)
{
    char inbox[64];
    natsInbox *ib = NULL;
    natsSubscription *sub = NULL;
    ck_assert_int_eq(natsInbox_Create(&ib), NATS_OK);
    snprintf(inbox, sizeof inbox, "%s", (const char *)ib);
    natsInbox_Destroy(ib);
    ck_assert_int_eq(natsConnection_SubscribeSync(&sub, nc, inbox), NATS_OK);
    ck_assert_int_eq(natsConnection_PublishRequest(nc, subject, inbox, NULL, 0), NATS_OK);

    out->n = 0;
    uint64_t deadline = guild_mono_ns() + (uint64_t)GATHER_MS * 1000000u;
    for (;;) {
        uint64_t now = guild_mono_ns();
        if (now >= deadline)
            break;
        natsMsg *msg = NULL;
        if (natsSubscription_NextMsg(&msg, sub, (int64_t)((deadline - now) / 1000000u) + 1) !=
            NATS_OK)
            break;
        json_error_t jerr;
        json_t *doc =
            json_loadb(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), 0, &jerr);
        ck_assert_msg(json_is_object(doc), "reply on %s is not a JSON object: %.*s", subject,
                      natsMsg_GetDataLength(msg), natsMsg_GetData(msg));
        ck_assert_int_lt(out->n, MAX_REPLIES);
        out->doc[out->n++] = doc;
        natsMsg_Destroy(msg);
    }
    natsSubscription_Destroy(sub);
}

static const char *str_of(const json_t *obj, const char *key)
{
    const char *s = json_string_value(json_object_get(obj, key));
    ck_assert_msg(s != NULL, "\"%s\" is not a string", key);
    return s;
}

static json_int_t int_of(const json_t *obj, const char *key)
{
    json_t *v = json_object_get(obj, key);
    ck_assert_msg(json_is_integer(v), "\"%s\" is not an integer", key);
    return json_integer_value(v);
}

/* The reply whose "name" is `name`; fails unless exactly one has it. */
static json_t *reply_named(const replies *r, const char *name)
{
    json_t *found = NULL;
    for (int i = 0; i < r->n; i++) {
        if (strcmp(str_of(r->doc[i], "name"), name) == 0) {
            ck_assert_msg(found == NULL, "two replies from %s", name);
            found = r->doc[i];
        }
    }
    ck_assert_msg(found != NULL, "no reply from %s", name);
    return found;
}

/* The fields every discovery reply has. */
static void assert_identity(const json_t *doc, const char *type, const bus_service *svc,
                            const char *version)
{
    ck_assert_str_eq(str_of(doc, "type"), type);
    ck_assert_str_eq(str_of(doc, "name"), bus_service_name(svc));
    ck_assert_str_eq(str_of(doc, "id"), bus_service_id(svc));
    ck_assert_str_eq(str_of(doc, "version"), version);
    ck_assert(json_is_object(json_object_get(doc, "metadata")));
}

static bus_service *service_new(natsConnection *nc, const char *name, const char *description)
{
    bus_service *svc = NULL;
    guild_error err;
    ck_assert_status(bus_service_create(nc, name, "1.2.3", description, &svc, &err), GUILD_OK);
    ck_assert_ptr_nonnull(svc);
    ck_assert_uint_eq(strlen(bus_service_id(svc)), BUS_SERVICE_ID_LEN);
    return svc;
}

/* What an endpoint handler in these tests sees: how many requests it
 * answered, and its endpoint (published by add_endpoint before the first
 * request can arrive). */
typedef struct handled {
    bus_endpoint *ep;
    atomic_int count;
    atomic_int busy_ms; /* sleep this long in the handler before answering */
    atomic_bool finished;
    char last_subject[128];
} handled;

static void answer(natsConnection *nc, natsSubscription *sub, natsMsg *msg, void *closure)
{
    (void)sub;
    handled *h = closure;
    uint64_t started = guild_mono_ns();
    int busy = atomic_load(&h->busy_ms);
    if (busy > 0)
        usleep((useconds_t)busy * 1000);
    snprintf(h->last_subject, sizeof h->last_subject, "%s", natsMsg_GetSubject(msg));
    if (natsMsg_GetReply(msg) != NULL)
        natsConnection_PublishString(nc, natsMsg_GetReply(msg), "{\"ok\":true}");
    bus_endpoint_record(h->ep, started, false, NULL);
    atomic_fetch_add(&h->count, 1);
    atomic_store(&h->finished, true);
    natsMsg_Destroy(msg);
}

/* True if s is an RFC 3339 UTC time ("2025-01-02T03:04:05[.fff]Z") within a
 * minute of now. */
static bool rfc3339_recent(const char *s)
{
    struct tm tm = {0};
    int used = 0;
    if (sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday, &tm.tm_hour,
               &tm.tm_min, &tm.tm_sec, &used) != 6 ||
        used != 19)
        return false;
    const char *p = s + used;
    if (*p == '.') {
        p++;
        if (*p < '0' || *p > '9')
            return false;
        while (*p >= '0' && *p <= '9')
            p++;
    }
    if (strcmp(p, "Z") != 0)
        return false;
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    time_t t = timegm(&tm);
    time_t now = time(NULL);
    return t <= now + 1 && t >= now - 60;
}

/* ---- discovery ----------------------------------------------------------- */

START_TEST(ping_is_answered_by_every_service)
{
    bus_service *identity = service_new(g_nc, "identity", "who you are");
    bus_service *talent = service_new(g_nc, "talent", "what you can do");
    ck_assert_str_ne(bus_service_id(identity), bus_service_id(talent));

    replies r;
    gather(g_nc, "$SRV.PING", &r);
    ck_assert_int_eq(r.n, 2);
    assert_identity(reply_named(&r, "identity"), BUS_SRV_PING_TYPE, identity, "1.2.3");
    assert_identity(reply_named(&r, "talent"), BUS_SRV_PING_TYPE, talent, "1.2.3");
    replies_clear(&r);

    gather(g_nc, "$SRV.PING.identity", &r);
    ck_assert_int_eq(r.n, 1);
    assert_identity(reply_named(&r, "identity"), BUS_SRV_PING_TYPE, identity, "1.2.3");
    replies_clear(&r);

    char subject[128];
    snprintf(subject, sizeof subject, "$SRV.PING.talent.%s", bus_service_id(talent));
    gather(g_nc, subject, &r);
    ck_assert_int_eq(r.n, 1);
    assert_identity(reply_named(&r, "talent"), BUS_SRV_PING_TYPE, talent, "1.2.3");
    replies_clear(&r);

    /* Another instance's id under the right name: nobody answers. */
    snprintf(subject, sizeof subject, "$SRV.PING.talent.%s", bus_service_id(identity));
    gather(g_nc, subject, &r);
    ck_assert_int_eq(r.n, 0);

    bus_service_destroy(talent);
    bus_service_destroy(identity);
}
END_TEST

START_TEST(info_by_name_lists_only_that_service_and_its_endpoints)
{
    handled h = {0};
    bus_endpoint *cmd = NULL, *qry = NULL;
    bus_service *identity = service_new(g_nc, "identity", "who you are");
    bus_service *talent = service_new(g_nc, "talent", "what you can do");
    ck_assert_status(bus_service_set_metadata(talent, "domain", "talent"), GUILD_OK);
    ck_assert_status(bus_service_add_endpoint(talent, "commands", "guild.cmd.talent.*",
                                              "guild.talent", answer, &h, &cmd),
                     GUILD_OK);
    ck_assert_status(bus_service_add_endpoint(talent, "queries", "guild.qry.talent.>",
                                              "guild.talent.query", answer, &h, &qry),
                     GUILD_OK);
    /* Metadata set after the start shows as well. */
    ck_assert_status(bus_service_set_metadata(talent, "store", "lmdb"), GUILD_OK);

    replies r;
    gather(g_nc, "$SRV.INFO.talent", &r);
    ck_assert_int_eq(r.n, 1);
    json_t *doc = r.doc[0];
    assert_identity(doc, BUS_SRV_INFO_TYPE, talent, "1.2.3");
    ck_assert_str_eq(str_of(doc, "description"), "what you can do");
    json_t *meta = json_object_get(doc, "metadata");
    ck_assert_str_eq(str_of(meta, "domain"), "talent");
    ck_assert_str_eq(str_of(meta, "store"), "lmdb");

    json_t *eps = json_object_get(doc, "endpoints");
    ck_assert(json_is_array(eps));
    ck_assert_uint_eq(json_array_size(eps), 2);
    json_t *e0 = json_array_get(eps, 0), *e1 = json_array_get(eps, 1);
    ck_assert_str_eq(str_of(e0, "name"), "commands");
    ck_assert_str_eq(str_of(e0, "subject"), "guild.cmd.talent.*");
    ck_assert_str_eq(str_of(e0, "queue_group"), "guild.talent");
    ck_assert(json_is_object(json_object_get(e0, "metadata")));
    ck_assert_str_eq(str_of(e1, "name"), "queries");
    ck_assert_str_eq(str_of(e1, "subject"), "guild.qry.talent.>");
    ck_assert_str_eq(str_of(e1, "queue_group"), "guild.talent.query");
    replies_clear(&r);

    /* identity has no endpoints and no metadata, but both fields are there. */
    gather(g_nc, "$SRV.INFO.identity", &r);
    ck_assert_int_eq(r.n, 1);
    ck_assert_uint_eq(json_array_size(json_object_get(r.doc[0], "endpoints")), 0);
    ck_assert_uint_eq(json_object_size(json_object_get(r.doc[0], "metadata")), 0);
    replies_clear(&r);

    bus_service_destroy(talent);
    bus_service_destroy(identity);
}
END_TEST

START_TEST(bad_names_and_versions_are_refused)
{
    bus_service *svc = NULL;
    guild_error err;
    ck_assert_status(bus_service_create(g_nc, "tal.ent", "1.0.0", NULL, &svc, &err),
                     GUILD_INVALID_REQUEST);
    ck_assert_str_eq(err.field, "name");
    ck_assert_status(bus_service_create(g_nc, "", "1.0.0", NULL, &svc, &err),
                     GUILD_INVALID_REQUEST);
    ck_assert_status(bus_service_create(g_nc, "talent", "1.0", NULL, &svc, &err),
                     GUILD_INVALID_REQUEST);
    ck_assert_str_eq(err.field, "version");
    ck_assert_status(bus_service_create(g_nc, "talent", "01.0.0", NULL, &svc, &err),
                     GUILD_INVALID_REQUEST);
    ck_assert_ptr_null(svc);

    ck_assert_status(bus_service_create(g_nc, "talent", "1.0.0-rc.1+build.5", NULL, &svc, &err),
                     GUILD_OK);
    handled h = {0};
    bus_endpoint *ep = NULL;
    ck_assert_status(bus_service_add_endpoint(svc, "a b", "x.y", NULL, answer, &h, &ep),
                     GUILD_INVALID_REQUEST);
    ck_assert_status(bus_service_add_endpoint(svc, "ab", "x..y", NULL, answer, &h, &ep),
                     GUILD_INVALID_REQUEST);
    ck_assert_status(bus_service_add_endpoint(svc, "ab", "x.>.y", NULL, answer, &h, &ep),
                     GUILD_INVALID_REQUEST);
    ck_assert_status(bus_service_add_endpoint(svc, "ab", "x.y", "q g", answer, &h, &ep),
                     GUILD_INVALID_REQUEST);
    ck_assert_ptr_null(ep);
    bus_service_destroy(svc);
}
END_TEST

/* ---- stats ------------------------------------------------------------------ */

static json_t *lag_data(const bus_service *svc, const bus_endpoint *ep, void *ctx)
{
    (void)svc;
    int *calls = ctx;
    (*calls)++;
    if (ep == NULL)
        return json_pack("{s:i}", "lag", 7);
    return json_pack("{s:s}", "endpoint", bus_endpoint_name(ep));
}

START_TEST(stats_by_id_counts_recorded_requests)
{
    handled h = {0};
    bus_endpoint *ep = NULL;
    bus_service *identity = service_new(g_nc, "identity", "who you are");
    bus_service *talent = service_new(g_nc, "talent", "what you can do");
    ck_assert_status(bus_service_add_endpoint(talent, "commands", "guild.cmd.talent.*",
                                              "guild.talent", answer, &h, &ep),
                     GUILD_OK);

    uint64_t t0 = guild_mono_ns();
    usleep(2000);
    bus_endpoint_record(ep, t0, false, NULL);
    bus_endpoint_record_status(ep, t0, GUILD_OK, NULL);
    bus_endpoint_record_status(ep, guild_mono_ns() - 1000000u, GUILD_CONFLICT,
                               "stream talent-1 is at 3");

    replies r;
    char subject[128];
    snprintf(subject, sizeof subject, "$SRV.STATS.talent.%s", bus_service_id(talent));
    gather(g_nc, subject, &r);
    ck_assert_int_eq(r.n, 1);
    json_t *doc = r.doc[0];
    assert_identity(doc, BUS_SRV_STATS_TYPE, talent, "1.2.3");
    ck_assert_msg(rfc3339_recent(str_of(doc, "started")), "started = %s", str_of(doc, "started"));
    ck_assert_ptr_null(json_object_get(doc, "data"));

    json_t *eps = json_object_get(doc, "endpoints");
    ck_assert_uint_eq(json_array_size(eps), 1);
    json_t *e = json_array_get(eps, 0);
    ck_assert_str_eq(str_of(e, "name"), "commands");
    ck_assert_str_eq(str_of(e, "subject"), "guild.cmd.talent.*");
    ck_assert_str_eq(str_of(e, "queue_group"), "guild.talent");
    ck_assert_int_eq(int_of(e, "num_requests"), 3);
    ck_assert_int_eq(int_of(e, "num_errors"), 1);
    ck_assert_str_eq(str_of(e, "last_error"), "conflict: stream talent-1 is at 3");
    json_int_t total = int_of(e, "processing_time");
    ck_assert_int_ge(total, 2 * 2000000 + 1000000);
    ck_assert_int_eq(int_of(e, "average_processing_time"), total / 3);
    ck_assert_ptr_null(json_object_get(e, "data"));
    replies_clear(&r);

    /* A stats callback fills `data`, per endpoint and for the service. */
    int calls = 0;
    bus_service_set_stats_handler(talent, lag_data, &calls);
    gather(g_nc, "$SRV.STATS", &r);
    ck_assert_int_eq(r.n, 2);
    doc = reply_named(&r, "talent");
    ck_assert_int_eq(int_of(json_object_get(doc, "data"), "lag"), 7);
    e = json_array_get(json_object_get(doc, "endpoints"), 0);
    ck_assert_str_eq(str_of(json_object_get(e, "data"), "endpoint"), "commands");
    ck_assert_int_eq(calls, 2);
    /* identity has not been asked to count anything. */
    doc = reply_named(&r, "identity");
    ck_assert_uint_eq(json_array_size(json_object_get(doc, "endpoints")), 0);
    ck_assert(rfc3339_recent(str_of(doc, "started")));
    replies_clear(&r);

    bus_service_set_stats_handler(talent, NULL, NULL);
    bus_service_destroy(talent);
    bus_service_destroy(identity);
}
END_TEST

START_TEST(a_long_error_text_is_cut_without_breaking_utf8)
{
    handled h = {0};
    bus_endpoint *ep = NULL;
    bus_service *talent = service_new(g_nc, "talent", NULL);
    ck_assert_status(bus_service_add_endpoint(talent, "commands", "guild.cmd.talent.*",
                                              "guild.talent", answer, &h, &ep),
                     GUILD_OK);
    char text[600] = "validation_failed: ";
    while (strlen(text) + 2 < sizeof text)
        strcat(text, "\xc3\xa9"); /* é, two bytes, so some cut lands inside one */
    bus_endpoint_record(ep, 0, true, text);
    bus_endpoint_record(ep, 0, true, text + 1);

    replies r;
    gather(g_nc, "$SRV.STATS.talent", &r);
    ck_assert_int_eq(r.n, 1);
    json_t *e = json_array_get(json_object_get(r.doc[0], "endpoints"), 0);
    const char *last = str_of(e, "last_error");
    ck_assert_uint_le(strlen(last), 255);
    ck_assert_uint_ge(strlen(last), 250);
    ck_assert(strncmp(last, "alidation_failed: \xc3\xa9", 20) == 0);
    ck_assert_int_eq(int_of(e, "num_errors"), 2);
    ck_assert_int_eq(int_of(e, "processing_time"), 0);
    ck_assert_ptr_null(json_object_get(r.doc[0], "description")); /* INFO only */
    replies_clear(&r);

    /* A NULL description reads "" in INFO. */
    gather(g_nc, "$SRV.INFO.talent", &r);
    ck_assert_int_eq(r.n, 1);
    ck_assert_str_eq(str_of(r.doc[0], "description"), "");
    replies_clear(&r);
    bus_service_destroy(talent);
}
END_TEST

/* ---- endpoints ---------------------------------------------------------------- */

START_TEST(a_request_on_an_endpoint_subject_reaches_its_handler)
{
    handled h = {0};
    bus_service *talent = service_new(g_nc, "talent", NULL);
    ck_assert_status(bus_service_add_endpoint(talent, "commands", "guild.cmd.talent.*",
                                              "guild.talent", answer, &h, &h.ep),
                     GUILD_OK);
    ck_assert_ptr_nonnull(h.ep);
    ck_assert_str_eq(bus_endpoint_subject(h.ep), "guild.cmd.talent.*");
    ck_assert_str_eq(bus_endpoint_queue_group(h.ep), "guild.talent");

    natsMsg *reply = NULL;
    ck_assert_int_eq(natsConnection_RequestString(&reply, g_nc, "guild.cmd.talent.add_skill",
                                                  "{\"skill\":\"c\"}", 2000),
                     NATS_OK);
    ck_assert_str_eq(natsMsg_GetData(reply), "{\"ok\":true}");
    natsMsg_Destroy(reply);
    ck_assert_int_eq(atomic_load(&h.count), 1);
    ck_assert_str_eq(h.last_subject, "guild.cmd.talent.add_skill");

    replies r;
    gather(g_nc, "$SRV.STATS.talent", &r);
    ck_assert_int_eq(r.n, 1);
    json_t *e = json_array_get(json_object_get(r.doc[0], "endpoints"), 0);
    ck_assert_int_eq(int_of(e, "num_requests"), 1);
    ck_assert_int_eq(int_of(e, "num_errors"), 0);
    ck_assert_str_eq(str_of(e, "last_error"), "");
    replies_clear(&r);
    bus_service_destroy(talent);
}
END_TEST

START_TEST(instances_share_requests_but_each_answers_ping)
{
    enum { REQUESTS = 40 };
    natsConnection *nc2 = NULL;
    ck_assert_int_eq(tst_nats_connect(&g_srv, &nc2), 0);
    handled h1 = {0}, h2 = {0};
    bus_service *a = service_new(g_nc, "talent", NULL);
    bus_service *b = service_new(nc2, "talent", NULL);
    ck_assert_status(bus_service_add_endpoint(a, "commands", "guild.cmd.talent.*", "guild.talent",
                                              answer, &h1, &h1.ep),
                     GUILD_OK);
    ck_assert_status(bus_service_add_endpoint(b, "commands", "guild.cmd.talent.*", "guild.talent",
                                              answer, &h2, &h2.ep),
                     GUILD_OK);
    ck_assert_int_eq(natsConnection_Flush(nc2), NATS_OK);

    /* Every request is answered exactly once: request i asks for its reply
     * on <inbox>.<i>, and replies are counted per request after a quiet
     * spell. */
    natsInbox *ib = NULL;
    natsSubscription *sub = NULL;
    char reply_to[128], wildcard[128];
    ck_assert_int_eq(natsInbox_Create(&ib), NATS_OK);
    snprintf(wildcard, sizeof wildcard, "%s.*", (const char *)ib);
    ck_assert_int_eq(natsConnection_SubscribeSync(&sub, g_nc, wildcard), NATS_OK);
    for (int i = 0; i < REQUESTS; i++) {
        snprintf(reply_to, sizeof reply_to, "%s.%d", (const char *)ib, i);
        ck_assert_int_eq(
            natsConnection_PublishRequest(g_nc, "guild.cmd.talent.add_skill", reply_to, "{}", 2),
            NATS_OK);
    }
    int answers[REQUESTS] = {0};
    natsMsg *msg = NULL;
    while (natsSubscription_NextMsg(&msg, sub, GATHER_MS) == NATS_OK) {
        const char *dot = strrchr(natsMsg_GetSubject(msg), '.');
        int i = atoi(dot + 1);
        ck_assert(i >= 0 && i < REQUESTS);
        answers[i]++;
        natsMsg_Destroy(msg);
    }
    natsSubscription_Destroy(sub);
    natsInbox_Destroy(ib);
    for (int i = 0; i < REQUESTS; i++)
        ck_assert_msg(answers[i] == 1, "request %d answered %d times", i, answers[i]);
    ck_assert_int_eq(atomic_load(&h1.count) + atomic_load(&h2.count), REQUESTS);
    /* The queue group spreads them (all on one side: odds 2^-39). */
    ck_assert_int_gt(atomic_load(&h1.count), 0);
    ck_assert_int_gt(atomic_load(&h2.count), 0);

    replies r;
    gather(g_nc, "$SRV.PING.talent", &r);
    ck_assert_int_eq(r.n, 2);
    ck_assert_str_ne(str_of(r.doc[0], "id"), str_of(r.doc[1], "id"));
    replies_clear(&r);

    bus_service_destroy(b);
    bus_service_destroy(a);
    natsConnection_Destroy(nc2);
}
END_TEST

/* ---- stopping ------------------------------------------------------------------ */

START_TEST(destroy_waits_for_a_handler_in_progress)
{
    handled h = {0};
    atomic_store(&h.busy_ms, 300);
    bus_service *talent = service_new(g_nc, "talent", NULL);
    ck_assert_status(bus_service_add_endpoint(talent, "commands", "guild.cmd.talent.*",
                                              "guild.talent", answer, &h, &h.ep),
                     GUILD_OK);
    ck_assert_int_eq(natsConnection_PublishString(g_nc, "guild.cmd.talent.slow", "{}"), NATS_OK);
    ck_assert_int_eq(natsConnection_Flush(g_nc), NATS_OK);
    usleep(100 * 1000); /* the handler is now asleep */

    bus_service_stop(talent);
    ck_assert(atomic_load(&h.finished));
    /* After stop nothing answers, but counting still works. */
    replies r;
    gather(g_nc, "$SRV.PING", &r);
    ck_assert_int_eq(r.n, 0);
    ck_assert_status(bus_service_add_endpoint(talent, "more", "guild.more", NULL, answer, &h, NULL),
                     GUILD_INVALID_REQUEST);
    bus_endpoint *late = NULL;
    ck_assert_status(
        bus_service_add_endpoint(talent, "more", "guild.more", NULL, answer, &h, &late),
        GUILD_CLOSED);
    bus_endpoint_record(h.ep, guild_mono_ns(), false, NULL);
    bus_service_destroy(talent);
    ck_assert_int_eq(atomic_load(&h.count), 1);
}
END_TEST

START_TEST(destroy_after_the_connection_closed_returns)
{
    handled h = {0};
    bus_service *talent = service_new(g_nc, "talent", NULL);
    ck_assert_status(bus_service_add_endpoint(talent, "commands", "guild.cmd.talent.*",
                                              "guild.talent", answer, &h, &h.ep),
                     GUILD_OK);
    natsConnection_Close(g_nc);
    bus_service_destroy(talent);

    bus_service *svc = NULL;
    guild_error err;
    ck_assert_status(bus_service_create(g_nc, "talent", "1.0.0", NULL, &svc, &err),
                     GUILD_UNAVAILABLE);
    ck_assert_ptr_null(svc);
    ck_assert_int_ne(err.origin, 0);
}
END_TEST

static Suite *service_suite(void)
{
    Suite *s = suite_create("bus_service");
    TCase *tc = tcase_create("service");
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_add_checked_fixture(tc, server_setup, server_teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, ping_is_answered_by_every_service);
    tcase_add_test(tc, info_by_name_lists_only_that_service_and_its_endpoints);
    tcase_add_test(tc, bad_names_and_versions_are_refused);
    tcase_add_test(tc, stats_by_id_counts_recorded_requests);
    tcase_add_test(tc, a_long_error_text_is_cut_without_breaking_utf8);
    tcase_add_test(tc, a_request_on_an_endpoint_subject_reaches_its_handler);
    tcase_add_test(tc, instances_share_requests_but_each_answers_ping);
    tcase_add_test(tc, destroy_waits_for_a_handler_in_progress);
    tcase_add_test(tc, destroy_after_the_connection_closed_returns);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tst_run_suite(service_suite());
}
