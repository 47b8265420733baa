/*
 * test_durability.c — what a client was told is never lost: commands flow
 * from several clients while the talent service is killed with SIGKILL, or
 * while nats-server stops and starts again, and afterwards every command
 * that was acknowledged has its events in the LMDB log and in the
 * JetStream stream GUILD_TALENT, each exactly once.
 *
 * The clients act like careful ones: every command carries a unique
 * Guild-Command-Id, and a command that got no answer (the service died, the
 * broker was away) is sent again with the same id until it is answered, so
 * a command that committed before the crash is answered from the store and
 * not applied twice.
 *
 * The checks read the store itself (opened read-only beside the service)
 * and the stream (with an ordered consumer), not the service's word.
 *
 * Sections: fixture; the clients; checks against the log; checks against
 * the stream; the tests; suite.
 */
#include "eventstore/es.h"

#include "tests/support/check_util.h"
#include "tests/support/es_util.h"
#include "tests/support/guild_proc.h"
#include "tests/support/nats_server.h"
#include "tests/support/tmpdir.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CLIENTS 6
#define KILLS 3
#define REQUEST_TIMEOUT_MS 2000
#define CLIENT_DEADLINE_MS 30000 /* a client gives up on a command after this */
#define CATCH_UP_MS 30000
#define MAX_EVENTS 4

static tst_nats g_srv;
static natsConnection *g_nc;
static jsCtx *g_js;
static char *g_data;
static tst_guild g_identity, g_talent;

/* ---- fixture ----------------------------------------------------------------- */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void world_setup(void)
{
    ck_assert_int_eq(tst_nats_start(&g_srv), 0);
    ck_assert_int_eq(tst_nats_connect(&g_srv, &g_nc), 0);
    ck_assert_int_eq(tst_nats_js(g_nc, &g_js), 0);
    g_data = tst_dir_new("data");
    ck_assert_int_eq(tst_guild_start(&g_identity, "identity", g_data, g_srv.url), 0);
    ck_assert_int_eq(tst_guild_start(&g_talent, "talent", g_data, g_srv.url), 0);
}

static void world_teardown(void)
{
    tst_guild *all[] = {&g_talent, &g_identity};
    int stopped = tst_guild_stop_all(all, 2);
    jsCtx_Destroy(g_js);
    g_js = NULL;
    natsConnection_Destroy(g_nc);
    g_nc = NULL;
    tst_nats_stop(&g_srv);
    if (g_data) {
        tst_dir_remove(g_data);
        free(g_data);
        g_data = NULL;
    }
    ck_assert_msg(stopped == 0, "a service did not stop cleanly on SIGTERM");
}

/* ---- the clients ------------------------------------------------------------- */

/* One acknowledged command, as its reply told it. */
typedef struct acked {
    char command_id[48];
    char stream[96];
    uint64_t version;       /* of the stream after the command */
    uint64_t last_position; /* of its last event; 0 if it appended none */
    size_t n_events;
    char ids[MAX_EVENTS][40];
} acked;

typedef struct client {
    int index;
    pthread_t thread;
    natsConnection *nc;
    tst_user user;
    char profile[64];
    atomic_bool *stop;
    /* written by the thread, read after join (and `oks` while it runs) */
    acked *acks;
    size_t n_acks, cap;
    atomic_size_t oks;
    size_t retries;
    char failure[512]; /* the first unexpected reply or a command given up */
} client;

static void record_ack(client *c, const char *command_id, const tst_reply *r)
{
    if (c->n_acks == c->cap) {
        c->cap = c->cap ? 2 * c->cap : 256;
        c->acks = realloc(c->acks, c->cap * sizeof *c->acks);
        if (!c->acks)
            abort();
    }
    acked *a = &c->acks[c->n_acks];
    memset(a, 0, sizeof *a);
    snprintf(a->command_id, sizeof a->command_id, "%s", command_id);
    const char *stream = json_string_value(json_object_get(r->body, "stream"));
    snprintf(a->stream, sizeof a->stream, "%s", stream ? stream : "");
    a->version = (uint64_t)tst_reply_int(r, "version");
    a->last_position = (uint64_t)tst_reply_int(r, "position");
    json_t *events = json_object_get(r->body, "events");
    a->n_events = json_array_size(events);
    if (a->n_events > MAX_EVENTS) {
        snprintf(c->failure, sizeof c->failure, "%s: %zu events", command_id, a->n_events);
        return;
    }
    for (size_t i = 0; i < a->n_events; i++)
        snprintf(a->ids[i], sizeof a->ids[i], "%s", json_string_value(json_array_get(events, i)));
    c->n_acks++;
    atomic_fetch_add(&c->oks, 1);
}

/* Command k of a client: add_skill and set_rate by turns, each changing
 * the profile so that it appends one event. */
static json_t *command_body(const client *c, size_t k, const char **name)
{
    if (k % 2 == 0) {
        *name = "add_skill";
        return json_pack("{s:s, s:s, s:i}", "talent_id", c->profile, "skill", "C", "level",
                         (int)(k / 2 % 5) + 1);
    }
    *name = "set_rate";
    return json_pack("{s:s, s:s, s:i}", "talent_id", c->profile, "currency", "EUR", "hourly_rate",
                     (int)(1000 + k));
}

/* Sends one command until it is answered; false if it was refused or the
 * client gave up (c->failure says why). */
static bool send_until_answered(client *c, size_t k)
{
    char command_id[48];
    snprintf(command_id, sizeof command_id, "client-%d-command-%zu", c->index, k);
    const char *name = NULL;
    json_t *body = command_body(c, k, &name);
    tst_call call = {
        .token = c->user.access_token, .command_id = command_id, .timeout_ms = REQUEST_TIMEOUT_MS};
    uint64_t deadline = now_ms() + CLIENT_DEADLINE_MS;
    bool done = false;
    for (;;) {
        tst_reply r;
        tst_guild_command(c->nc, "talent", name, body, &call, &r);
        if (r.nats == NATS_OK && r.status == 200) {
            record_ack(c, command_id, &r);
            done = true;
        } else if (r.nats == NATS_OK && r.status != 503) {
            snprintf(c->failure, sizeof c->failure, "%s: %d %s", command_id, r.status, r.raw);
        }
        tst_reply_release(&r);
        if (done || c->failure[0])
            break;
        if (now_ms() > deadline) {
            snprintf(c->failure, sizeof c->failure, "%s: no answer in %d ms", command_id,
                     CLIENT_DEADLINE_MS);
            break;
        }
        c->retries++; /* no answer, or unavailable: the same command again */
        sleep_ms(20);
    }
    json_decref(body);
    return done;
}

static void *client_main(void *arg)
{
    client *c = arg;
    for (size_t k = 0; !atomic_load(c->stop); k++)
        if (!send_until_answered(c, k))
            break;
    return NULL;
}

static void clients_start(client *cs, atomic_bool *stop)
{
    for (int i = 0; i < CLIENTS; i++) {
        client *c = &cs[i];
        memset(c, 0, sizeof *c);
        c->index = i;
        c->stop = stop;
        char email[64];
        snprintf(email, sizeof email, "client%d@example.com", i);
        ck_assert_int_eq(tst_nats_connect(&g_srv, &c->nc), 0);
        ck_assert_int_eq(tst_guild_signup(c->nc, email, false, &c->user), 0);
        json_t *body = json_pack("{s:s, s:s}", "user_id", c->user.user_id, "headline", "Worker");
        tst_call call = {.token = c->user.access_token};
        tst_reply r;
        ck_assert_int_eq(tst_guild_command(c->nc, "talent", "create_profile", body, &call, &r), 0);
        ck_assert_msg(r.status == 200, "create_profile: %s", r.raw);
        snprintf(c->profile, sizeof c->profile, "%s", tst_reply_data_str(&r, "talent_id"));
        tst_reply_release(&r);
        json_decref(body);
    }
    for (int i = 0; i < CLIENTS; i++)
        ck_assert_int_eq(pthread_create(&cs[i].thread, NULL, client_main, &cs[i]), 0);
}

static size_t oks(client *cs)
{
    size_t n = 0;
    for (int i = 0; i < CLIENTS; i++)
        n += atomic_load(&cs[i].oks);
    return n;
}

/* Waits until the clients got `more` acknowledgements beyond now. */
static void wait_for_progress(client *cs, size_t more, unsigned timeout_ms)
{
    size_t from = oks(cs);
    uint64_t deadline = now_ms() + timeout_ms;
    while (oks(cs) < from + more && now_ms() < deadline)
        sleep_ms(10);
    ck_assert_msg(oks(cs) >= from + more, "only %zu of %zu acknowledgements in %u ms",
                  oks(cs) - from, more, timeout_ms);
}

static void clients_stop(client *cs, atomic_bool *stop)
{
    atomic_store(stop, true);
    for (int i = 0; i < CLIENTS; i++)
        pthread_join(cs[i].thread, NULL);
    for (int i = 0; i < CLIENTS; i++) {
        ck_assert_msg(!cs[i].failure[0], "client %d: %s", i, cs[i].failure);
        ck_assert_uint_gt(cs[i].n_acks, 0);
    }
}

static void clients_release(client *cs)
{
    for (int i = 0; i < CLIENTS; i++) {
        natsConnection_Destroy(cs[i].nc);
        free(cs[i].acks);
    }
}

/* ---- checks against the log -------------------------------------------------- */

static es_store *open_store(void)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/talent/events", g_data);
    es_store *st = NULL;
    ck_assert_status(tst_store_open_ro(dir, &st), GUILD_OK);
    return st;
}

static uint64_t log_head(void)
{
    es_store *st = open_store();
    uint64_t head = 0;
    ck_assert_status(es_log_head(st, &head, NULL), GUILD_OK);
    es_store_close(st);
    return head;
}

/* Indexes the log: event id -> position (each id once), and command id ->
 * [first position, last position, events]. Positions run gapless from 1. */
static void index_log(const tst_recs *log, json_t *by_id, json_t *by_command)
{
    char id[64], command[ES_COMMAND_ID_MAX + 1];
    for (size_t i = 0; i < log->n; i++) {
        const es_record *rec = &log->v[i].rec;
        ck_assert_uint_eq(rec->position, i + 1);
        tst_str_copy(rec->id, id, sizeof id);
        ck_assert_msg(!json_object_get(by_id, id), "event %s twice in the log", id);
        json_object_set_new(by_id, id, json_integer((json_int_t)rec->position));
        if (!rec->command_id.n)
            continue;
        tst_str_copy(rec->command_id, command, sizeof command);
        json_t *span = json_object_get(by_command, command);
        json_int_t pos = (json_int_t)rec->position;
        if (!span) {
            json_object_set_new(by_command, command, json_pack("[I, I, I]", pos, pos, 1));
            continue;
        }
        json_int_t count = json_integer_value(json_array_get(span, 2));
        json_array_set_new(span, 1, json_integer(pos));
        json_array_set_new(span, 2, json_integer(count + 1));
    }
    /* one append per command id: its events sit side by side */
    const char *key;
    json_t *span;
    json_object_foreach(by_command, key, span)
    {
        json_int_t first = json_integer_value(json_array_get(span, 0));
        json_int_t last = json_integer_value(json_array_get(span, 1));
        json_int_t count = json_integer_value(json_array_get(span, 2));
        ck_assert_msg(last - first + 1 == count, "command %s applied more than once", key);
    }
}

/* Checks one client's acknowledged commands against the log index and
 * against its profile's stream, read on its own; returns the events seen. */
static size_t assert_client_acks(es_store *st, const tst_recs *log, const client *c, json_t *by_id,
                                 json_t *by_command)
{
    char name[96], id[64];
    snprintf(name, sizeof name, "talent-%s", c->profile);
    tst_recs stream;
    tst_recs_init(&stream);
    ck_assert_status(tst_read_whole_stream(st, name, &stream), GUILD_OK);
    json_t *versions = json_object();
    for (size_t v = 0; v < stream.n; v++) {
        ck_assert_uint_eq(stream.v[v].rec.version, v + 1);
        tst_str_copy(stream.v[v].rec.id, id, sizeof id);
        json_object_set_new(versions, id, json_integer((json_int_t)(v + 1)));
    }
    size_t checked = 0;
    for (size_t k = 0; k < c->n_acks; k++) {
        const acked *a = &c->acks[k];
        ck_assert_str_eq(a->stream, name);
        ck_assert_uint_eq(a->n_events, 1); /* every command changes the profile */
        json_t *span = json_object_get(by_command, a->command_id);
        ck_assert_msg(span != NULL, "%s was acknowledged but is not in the log", a->command_id);
        ck_assert_int_eq(json_integer_value(json_array_get(span, 2)), (json_int_t)a->n_events);
        for (size_t e = 0; e < a->n_events; e++) {
            uint64_t want = a->last_position - a->n_events + 1 + e;
            json_t *pos = json_object_get(by_id, a->ids[e]);
            ck_assert_msg(pos != NULL, "event %s of %s is not in the log", a->ids[e],
                          a->command_id);
            ck_assert_uint_eq((uint64_t)json_integer_value(pos), want);
            const es_record *rec = &log->v[want - 1].rec;
            ck_assert(tst_str_eq(rec->command_id, a->command_id));
            ck_assert(tst_str_eq(rec->stream, a->stream));
            json_t *ver = json_object_get(versions, a->ids[e]);
            ck_assert_msg(ver != NULL, "event %s is not in stream %s", a->ids[e], name);
            ck_assert_uint_eq((uint64_t)json_integer_value(ver), a->version - a->n_events + 1 + e);
            checked++;
        }
    }
    json_decref(versions);
    tst_recs_release(&stream);
    return checked;
}

/* Every acknowledged command's events are in the log at the positions and
 * versions it was told, under its command id, each exactly once, and no
 * command id was applied twice. Leaves the whole log in *log. */
static void assert_log_holds_every_ack(client *cs, tst_recs *log)
{
    es_store *st = open_store();
    ck_assert_status(tst_read_whole_log(st, log), GUILD_OK);
    ck_assert(!log->bad);
    uint64_t head = 0;
    ck_assert_status(es_log_head(st, &head, NULL), GUILD_OK);
    ck_assert_uint_eq(log->n, head);

    json_t *by_id = json_object(), *by_command = json_object();
    index_log(log, by_id, by_command);
    size_t checked = 0, acks = 0;
    for (int i = 0; i < CLIENTS; i++) {
        checked += assert_client_acks(st, log, &cs[i], by_id, by_command);
        acks += cs[i].n_acks;
    }
    ck_assert_uint_eq(checked, acks);
    json_decref(by_id);
    json_decref(by_command);
    es_store_close(st);
}

/* ---- checks against the stream ----------------------------------------------- */

static jsStreamInfo *stream_info(void)
{
    jsStreamInfo *si = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_GetStreamInfo(&si, g_js, "GUILD_TALENT", NULL, &jerr);
    ck_assert_msg(s == NATS_OK, "stream info: %s (%d)", natsStatus_GetText(s), (int)jerr);
    return si;
}

/* Waits until the log stops growing and the stream holds as many messages
 * as the log has events; returns the log head. */
static uint64_t wait_relay_caught_up(void)
{
    uint64_t deadline = now_ms() + CATCH_UP_MS, head = 0, msgs = 0, last_seq = 0;
    int stable = 0;
    while (now_ms() < deadline) {
        uint64_t h = log_head();
        jsStreamInfo *si = stream_info();
        msgs = si->State.Msgs;
        last_seq = si->State.LastSeq;
        jsStreamInfo_Destroy(si);
        stable = h == head && msgs == h && last_seq == h ? stable + 1 : 0;
        head = h;
        if (stable >= 3)
            return head;
        sleep_ms(100);
    }
    ck_abort_msg("the relay did not catch up: log head %" PRIu64 ", stream %" PRIu64
                 " messages, last sequence %" PRIu64,
                 head, msgs, last_seq);
    return 0;
}

static const char *header(natsMsg *m, const char *key)
{
    const char *v = NULL;
    return natsMsgHeader_Get(m, key, &v) == NATS_OK ? v : NULL;
}

/* The stream is the log: one message per position, in order, with
 * Nats-Msg-Id talent:<position> (so unique), Guild-Position equal to its
 * stream sequence, and the record's bytes. */
static void assert_stream_equals_log(const tst_recs *log)
{
    jsStreamInfo *si = stream_info();
    ck_assert_uint_eq(si->State.Msgs, log->n);
    ck_assert_uint_eq(si->State.FirstSeq, 1);
    ck_assert_uint_eq(si->State.LastSeq, log->n);
    jsStreamInfo_Destroy(si);

    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = "GUILD_TALENT";
    so.Ordered = true;
    natsSubscription *sub = NULL;
    jsErrCode jerr = 0;
    natsStatus s = js_SubscribeSync(&sub, g_js, "guild.evt.talent.>", NULL, &so, &jerr);
    ck_assert_msg(s == NATS_OK, "subscribe: %s (%d)", natsStatus_GetText(s), (int)jerr);
    json_t *msg_ids = json_object();
    for (uint64_t seq = 1; seq <= log->n; seq++) {
        natsMsg *m = NULL;
        s = natsSubscription_NextMsg(&m, sub, 10000);
        ck_assert_msg(s == NATS_OK, "message %" PRIu64 ": %s", seq, natsStatus_GetText(s));
        jsMsgMetaData *meta = NULL;
        ck_assert_int_eq(natsMsg_GetMetaData(&meta, m), NATS_OK);
        ck_assert_uint_eq(meta->Sequence.Stream, seq);
        jsMsgMetaData_Destroy(meta);

        const char *msg_id = header(m, "Nats-Msg-Id");
        const char *position = header(m, "Guild-Position");
        ck_assert_ptr_nonnull(msg_id);
        ck_assert_ptr_nonnull(position);
        ck_assert_msg(!json_object_get(msg_ids, msg_id), "Nats-Msg-Id %s twice", msg_id);
        json_object_set_new(msg_ids, msg_id, json_true());
        char want[64];
        snprintf(want, sizeof want, "talent:%" PRIu64, seq);
        ck_assert_str_eq(msg_id, want);
        ck_assert_uint_eq(strtoull(position, NULL, 10), seq);

        const tst_rec *rec = &log->v[seq - 1];
        ck_assert_int_eq(natsMsg_GetDataLength(m), (int)rec->len);
        ck_assert_mem_eq(natsMsg_GetData(m), rec->raw, rec->len);
        natsMsg_Destroy(m);
    }
    /* and nothing after */
    natsMsg *extra = NULL;
    ck_assert_int_eq(natsSubscription_NextMsg(&extra, sub, 200), NATS_TIMEOUT);
    natsSubscription_Destroy(sub);
    json_decref(msg_ids);
}

static void assert_nothing_acknowledged_is_lost(client *cs, const char *what)
{
    uint64_t head = wait_relay_caught_up();
    tst_recs log;
    tst_recs_init(&log);
    assert_log_holds_every_ack(cs, &log);
    assert_stream_equals_log(&log);
    tst_recs_release(&log);
    size_t retries = 0;
    for (int i = 0; i < CLIENTS; i++)
        retries += cs[i].retries;
    fprintf(stderr,
            "%s: %zu commands acknowledged, %zu sent again, log and stream at %" PRIu64 "\n", what,
            oks(cs), retries, head);
}

/* ---- the tests --------------------------------------------------------------- */

START_TEST(test_kill_9_of_talent_while_commands_flow_loses_nothing_acknowledged)
{
    client cs[CLIENTS];
    atomic_bool stop = false;
    clients_start(cs, &stop);
    for (int kill = 0; kill < KILLS; kill++) {
        wait_for_progress(cs, 100, 20000);
        ck_assert_int_eq(tst_guild_kill(&g_talent), 0);
        sleep_ms(150); /* commands keep coming at a dead service */
        ck_assert_msg(tst_guild_restart(&g_talent) == 0, "talent did not come back after kill %d",
                      kill + 1);
    }
    wait_for_progress(cs, 100, 20000);
    clients_stop(cs, &stop);
    size_t retries = 0;
    for (int i = 0; i < CLIENTS; i++)
        retries += cs[i].retries;
    ck_assert_uint_gt(retries, 0); /* the kills were felt */
    assert_nothing_acknowledged_is_lost(cs, "kill -9 of talent");
    clients_release(cs);
}
END_TEST

START_TEST(test_broker_restart_while_commands_flow_loses_nothing_acknowledged)
{
    client cs[CLIENTS];
    atomic_bool stop = false;
    clients_start(cs, &stop);
    for (int round = 0; round < 2; round++) {
        wait_for_progress(cs, 100, 20000);
        ck_assert_int_eq(tst_nats_restart(&g_srv), 0);
        /* the service reconnects by itself and keeps answering */
        wait_for_progress(cs, 100, 20000);
    }
    clients_stop(cs, &stop);
    ck_assert(tst_guild_running(&g_talent));
    assert_nothing_acknowledged_is_lost(cs, "nats-server restarts");
    clients_release(cs);
}
END_TEST

/* A service told to stop while nats-server does not answer (frozen with
 * SIGSTOP: its sockets stay open) stops within a bound and cleanly; the
 * drain of its subscriptions waits for the server at most a few seconds
 * (cnats's default would hold it 30 s). This is what `guild up` asks of its
 * children when it is killed: all of them, nats-server included, stop at
 * once. */
START_TEST(test_a_service_stops_promptly_while_the_broker_is_frozen)
{
    ck_assert_int_eq(kill(g_srv.pid, SIGSTOP), 0);
    uint64_t t0 = now_ms();
    int stopped = tst_guild_stop(&g_talent);
    uint64_t took = now_ms() - t0;
    ck_assert_int_eq(kill(g_srv.pid, SIGCONT), 0);
    ck_assert_msg(stopped == 0, "talent did not stop cleanly");
    ck_assert_msg(took < 20000, "talent took %llu ms to stop", (unsigned long long)took);
}
END_TEST

/* ---- suite ------------------------------------------------------------------- */

static Suite *durability_suite(void)
{
    Suite *s = suite_create("bus/durability");
    TCase *tc = tcase_create("crashes");
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_add_checked_fixture(tc, world_setup, world_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_kill_9_of_talent_while_commands_flow_loses_nothing_acknowledged);
    tcase_add_test(tc, test_broker_restart_while_commands_flow_loses_nothing_acknowledged);
    tcase_add_test(tc, test_a_service_stops_promptly_while_the_broker_is_frozen);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tst_run_suite(durability_suite());
}
