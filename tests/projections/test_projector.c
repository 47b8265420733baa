/*
 * test_projector.c — the read side end to end, as a client sees it.
 *
 * Every test starts its own nats-server (JetStream, a free loopback port),
 * then `guild serve identity`, `guild serve talent` and `guild project all`
 * as children of the test, on a data directory of its own, and talks to
 * them only over NATS and through the `guild project` tools: commands on
 * guild.cmd.*, queries on guild.qry.talent.*, control requests on
 * guild.ctl.project.*, discovery on $SRV.*.
 *
 * Sections: time; child processes; the platform (broker + services);
 * requests; people and profiles; the guild tool; a writer that knows what
 * the model must hold (for crashes and rebuilds); the tests; the suite.
 */
#include "common/clock.h"
#include "common/codec.h"
#include "common/status.h"
#include "eventstore/es.h"
#include "tests/support/check_util.h"
#include "tests/support/children.h"
#include "tests/support/nats_server.h"
#include "tests/support/tmpdir.h"

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <nats/nats.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READY_MS 20000    /* a child answers within this (ASan builds start slowly) */
#define STOP_MS 15000     /* a child stops on SIGTERM within this */
#define REQUEST_MS 5000   /* default wait for one reply */
#define CATCH_UP_MS 30000 /* the projector reaches the log head within this */

/* ---- time --------------------------------------------------------------------------- */

static uint64_t now_ms(void)
{
    return guild_mono_ns() / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* xorshift64*: reproducible randomness for each thread. */
static uint64_t rnd(uint64_t *s)
{
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * 0x2545F4914F6CDD1Dull;
}

/* ---- child processes -------------------------------------------------------------------
 * `guild` children die with the test: PR_SET_PDEATHSIG for a crash of the
 * test's process, an atexit handler for a failed assertion (Check exits the
 * forked test process). */

typedef struct gproc {
    const char *args[4]; /* after the program: "serve", "talent" */
    pid_t pid;           /* 0 when not running */
    char log[700];       /* its stdout and stderr, appended across restarts */
} gproc;

static const char *guild_bin(void)
{
    const char *bin = getenv("GUILD_GUILD_BIN");
    ck_assert_msg(bin && *bin, "GUILD_GUILD_BIN must name the guild binary (ctest sets it)");
    return bin;
}

/* Starts `guild <args> --data <data> --nats <url>`; does not wait. */
static void gproc_start(gproc *g, const char *data, const char *url)
{
    const char *bin = guild_bin();
    char *argv[12];
    int n = 0;
    argv[n++] = (char *)"guild";
    for (int i = 0; i < 4 && g->args[i]; i++)
        argv[n++] = (char *)g->args[i];
    argv[n++] = (char *)"--data";
    argv[n++] = (char *)data;
    argv[n++] = (char *)"--nats";
    argv[n++] = (char *)url;
    argv[n] = NULL;
    int log_fd = open(g->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    ck_assert_msg(log_fd >= 0, "cannot open %s", g->log);
    pid_t pid = tst_spawn(bin, argv, NULL, log_fd, log_fd);
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    close(log_fd);
    g->pid = pid;
    tst_child_track(pid);
}

/* Sends sig and reaps the child; its exit status (128 + signal when it
 * died of one), or -1 if it had to be killed after STOP_MS. */
static int gproc_signal(gproc *g, int sig)
{
    if (g->pid <= 0)
        return 0;
    kill(g->pid, sig);
    uint64_t deadline = now_ms() + STOP_MS;
    int status = 0, rc = -1;
    for (;;) {
        pid_t w = waitpid(g->pid, &status, WNOHANG);
        if (w == g->pid) {
            rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        if (w < 0 && errno != EINTR)
            break;
        if (now_ms() >= deadline) {
            kill(g->pid, SIGKILL);
            waitpid(g->pid, NULL, 0);
            break;
        }
        sleep_ms(5);
    }
    tst_child_untrack(g->pid);
    g->pid = 0;
    return rc;
}

/* ---- requests -------------------------------------------------------------------------- */

typedef struct req_opts {
    const char *token;       /* Authorization: Bearer <token> */
    const char *command_id;  /* Guild-Command-Id */
    const char *consistency; /* Guild-Consistency */
    const char *wait;        /* Guild-Timeout (ms) */
    int timeout_ms;          /* how long to wait for the reply; 0: REQUEST_MS */
} req_opts;

/* Sends body (borrowed; NULL: {}) encoded as fmt and returns the reply
 * message, or NULL when nothing answered in time. */
static natsMsg *request_msg(natsConnection *nc, const char *subject, const json_t *body,
                            guild_format fmt, const req_opts *o)
{
    static const req_opts none = {0};
    if (!o)
        o = &none;
    json_t *empty = body ? NULL : json_object();
    char *data = NULL;
    size_t n = 0;
    ck_assert_status(guild_codec_encode(body ? body : empty, fmt, &data, &n), GUILD_OK);
    json_decref(empty);
    natsMsg *m = NULL, *reply = NULL;
    if (natsMsg_Create(&m, subject, NULL, data, (int)n) != NATS_OK) {
        free(data);
        return NULL;
    }
    free(data);
    natsMsgHeader_Set(m, "Content-Type",
                      fmt == GUILD_FMT_JSON ? "application/json" : "application/msgpack");
    if (o->token) {
        char auth[4200];
        snprintf(auth, sizeof auth, "Bearer %s", o->token);
        natsMsgHeader_Set(m, "Authorization", auth);
    }
    if (o->command_id)
        natsMsgHeader_Set(m, "Guild-Command-Id", o->command_id);
    if (o->consistency)
        natsMsgHeader_Set(m, "Guild-Consistency", o->consistency);
    if (o->wait)
        natsMsgHeader_Set(m, "Guild-Timeout", o->wait);
    natsStatus s =
        natsConnection_RequestMsg(&reply, nc, m, o->timeout_ms ? o->timeout_ms : REQUEST_MS);
    natsMsg_Destroy(m);
    return s == NATS_OK ? reply : NULL;
}

/* Sends body (JSON, borrowed) and returns the decoded reply (a new
 * reference), with its Guild-Status in *http when http is not NULL; NULL
 * when nothing answered in time. */
static json_t *request(natsConnection *nc, const char *subject, const json_t *body,
                       const req_opts *o, int *http)
{
    if (http)
        *http = 0;
    natsMsg *reply = request_msg(nc, subject, body, GUILD_FMT_JSON, o);
    if (!reply)
        return NULL;
    const char *status = NULL;
    if (http && natsMsgHeader_Get(reply, "Guild-Status", &status) == NATS_OK && status)
        *http = atoi(status);
    json_t *out = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, NULL);
    natsMsg_Destroy(reply);
    return out;
}

static bool reply_ok(const json_t *r)
{
    return json_is_true(json_object_get(r, "ok"));
}

static const char *reply_code(const json_t *r)
{
    const char *c = json_string_value(json_object_get(json_object_get(r, "error"), "code"));
    return c ? c : "";
}

static json_int_t jint(const json_t *o, const char *key)
{
    return json_integer_value(json_object_get(o, key));
}

static const char *jstr(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* For failure messages; leaks on purpose (the test is about to end). */
static char *dump(const json_t *j)
{
    char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
    return s ? s : (char *)"(no reply)";
}

/* ---- the platform: broker, identity, talent and the projector ------------------------- */

typedef struct platform {
    tst_nats nats;
    char *dir; /* owned: data, logs */
    char data[600];
    natsConnection *nc;
    gproc identity, talent, projector;
} platform;

/* Asks until a reply comes (ok, or any reply when !need_ok), up to READY_MS. */
static bool await_reply(natsConnection *nc, const char *subject, bool need_ok)
{
    uint64_t deadline = now_ms() + READY_MS;
    while (now_ms() < deadline) {
        req_opts o = {.timeout_ms = 1000};
        json_t *r = request(nc, subject, NULL, &o, NULL);
        bool done = r && (!need_ok || reply_ok(r));
        json_decref(r);
        if (done)
            return true;
        sleep_ms(25);
    }
    return false;
}

static void await_projector(platform *p)
{
    ck_assert_msg(await_reply(p->nc, "guild.ctl.project.identity.status", true) &&
                      await_reply(p->nc, "guild.ctl.project.talent.status", true),
                  "the projector did not answer (log %s)", p->projector.log);
}

static void await_talent(platform *p)
{
    /* Any reply (here: a refusal) means the command endpoint is up. */
    ck_assert_msg(await_reply(p->nc, "guild.cmd.talent.create_profile", false),
                  "guild serve talent did not answer (log %s)", p->talent.log);
}

static void platform_up(platform *p)
{
    memset(p, 0, sizeof *p);
    ck_assert_int_eq(tst_nats_start(&p->nats), 0);
    ck_assert_int_eq(tst_nats_connect(&p->nats, &p->nc), 0);
    p->dir = tst_dir_new("platform");
    snprintf(p->data, sizeof p->data, "%s/data", p->dir);
    gproc *all[3] = {&p->identity, &p->talent, &p->projector};
    const char *args[3][2] = {{"serve", "identity"}, {"serve", "talent"}, {"project", "all"}};
    const char *logs[3] = {"identity", "talent", "projector"};
    for (int i = 0; i < 3; i++) {
        all[i]->args[0] = args[i][0];
        all[i]->args[1] = args[i][1];
        snprintf(all[i]->log, sizeof all[i]->log, "%s/%s.log", p->dir, logs[i]);
    }
    gproc_start(&p->identity, p->data, p->nats.url);
    ck_assert_msg(await_reply(p->nc, "guild.qry.identity.public_keys", true),
                  "guild serve identity did not answer (log %s)", p->identity.log);
    gproc_start(&p->talent, p->data, p->nats.url);
    await_talent(p);
    gproc_start(&p->projector, p->data, p->nats.url);
    await_projector(p);
}

/* Stops everything; asserts that each service stopped cleanly on SIGTERM. */
static void platform_down(platform *p)
{
    int projector = gproc_signal(&p->projector, SIGTERM);
    int talent = gproc_signal(&p->talent, SIGTERM);
    int identity = gproc_signal(&p->identity, SIGTERM);
    natsConnection_Destroy(p->nc);
    p->nc = NULL;
    tst_nats_stop(&p->nats);
    ck_assert_msg(projector == 0, "guild project exited with %d on SIGTERM (log %s)", projector,
                  p->projector.log);
    ck_assert_msg(talent == 0 && identity == 0, "guild serve exited with %d/%d on SIGTERM",
                  identity, talent);
    tst_dir_remove(p->dir);
    free(p->dir);
    p->dir = NULL;
}

/* The last position of the talent domain's log, read from its store while
 * `guild serve talent` runs (a read-only reader never blocks the writer). */
static uint64_t talent_log_head(const platform *p)
{
    char dir[700];
    snprintf(dir, sizeof dir, "%s/talent/events", p->data);
    es_options o = {.read_only = true};
    es_store *st = NULL;
    guild_error err = {0};
    ck_assert_msg(es_store_open(dir, &o, &st, &err) == GUILD_OK, "opening %s: %s", dir,
                  err.message);
    uint64_t head = 0;
    uint8_t hash[ES_HASH_LEN];
    ck_assert_status(es_log_head(st, &head, hash), GUILD_OK);
    es_store_close(st);
    return head;
}

/* The projector's status of a model (a new reference), or NULL. */
static json_t *model_status(platform *p, const char *model)
{
    char subject[128];
    snprintf(subject, sizeof subject, "guild.ctl.project.%s.status", model);
    req_opts o = {.timeout_ms = 1000};
    json_t *r = request(p->nc, subject, NULL, &o, NULL);
    json_t *d = reply_ok(r) ? json_incref(json_object_get(r, "data")) : NULL;
    json_decref(r);
    return d;
}

/* A whole file as a string (NULL if unreadable). */
static char *file_text(const char *path)
{
    return (char *)tst_file_read(path, NULL);
}

/* Waits until the talent model's position is `position`; its status then. */
static json_t *await_talent_position(platform *p, uint64_t position)
{
    uint64_t deadline = now_ms() + CATCH_UP_MS;
    json_int_t last = -1;
    while (now_ms() < deadline) {
        json_t *d = model_status(p, "talent");
        if (d && (uint64_t)jint(d, "position") == position)
            return d;
        if (d)
            last = jint(d, "position");
        json_decref(d);
        sleep_ms(50);
    }
    char *log = file_text(p->projector.log);
    size_t len = log ? strlen(log) : 0;
    ck_abort_msg("the talent model stayed at %lld, not the log head %llu; the projector's log "
                 "ends:\n%s",
                 (long long)last, (unsigned long long)position,
                 log ? log + (len > 2000 ? len - 2000 : 0) : "(unreadable)");
    return NULL;
}

/* ---- people and profiles -------------------------------------------------------------- */

typedef struct person {
    char user_id[64];
    char token[4096];
    char talent_id[64];
    char consistency[96]; /* of create_profile */
} person;

/* Registers and logs in user `i`, and creates the user's profile. */
static void person_new(platform *p, int i, person *out)
{
    char email[96];
    snprintf(email, sizeof email, "person%d@example.com", i);
    json_t *body = json_pack("{s:s, s:s, s:s}", "email", email, "password", "correct horse 1",
                             "display_name", "Person");
    json_t *r = request(p->nc, "guild.cmd.identity.register_user", body, NULL, NULL);
    ck_assert_msg(reply_ok(r), "register_user: %s", dump(r));
    json_decref(r);
    json_object_del(body, "display_name");
    r = request(p->nc, "guild.cmd.identity.login", body, NULL, NULL);
    json_decref(body);
    ck_assert_msg(reply_ok(r), "login: %s", dump(r));
    json_t *d = json_object_get(r, "data");
    snprintf(out->user_id, sizeof out->user_id, "%s", jstr(d, "user_id"));
    snprintf(out->token, sizeof out->token, "%s", jstr(d, "access_token"));
    json_decref(r);

    char headline[64];
    snprintf(headline, sizeof headline, "Person %d", i);
    body = json_pack("{s:s, s:s, s:s}", "user_id", out->user_id, "headline", headline, "location",
                     i % 2 ? "Lyon" : "Paris");
    req_opts o = {.token = out->token};
    r = request(p->nc, "guild.cmd.talent.create_profile", body, &o, NULL);
    json_decref(body);
    ck_assert_msg(reply_ok(r), "create_profile: %s", dump(r));
    snprintf(out->talent_id, sizeof out->talent_id, "%s",
             jstr(json_object_get(r, "data"), "talent_id"));
    snprintf(out->consistency, sizeof out->consistency, "%s", jstr(r, "consistency"));
    json_decref(r);
    ck_assert_int_eq(strlen(out->talent_id), 36);
}

/* A talent command as `who`; asserts it succeeded; the reply (new reference). */
static json_t *talent_cmd(platform *p, const person *who, const char *command, json_t *body)
{
    char subject[128];
    snprintf(subject, sizeof subject, "guild.cmd.talent.%s", command);
    json_object_set_new(body, "talent_id", json_string(who->talent_id));
    req_opts o = {.token = who->token};
    json_t *r = request(p->nc, subject, body, &o, NULL);
    ck_assert_msg(reply_ok(r), "%s %s: %s", command, dump(body), dump(r));
    json_decref(body);
    return r;
}

/* get_profile as `who` with an optional consistency token; the reply. */
static json_t *get_profile(natsConnection *nc, const person *who, const char *talent_id,
                           const char *consistency, const char *wait, int *http)
{
    json_t *body = json_pack("{s:s}", "talent_id", talent_id);
    req_opts o = {.token = who->token, .consistency = consistency, .wait = wait};
    json_t *r = request(nc, "guild.qry.talent.get_profile", body, &o, http);
    json_decref(body);
    return r;
}

/* The entry of row's skills named `name`, or NULL. */
static json_t *skill_of(const json_t *row, const char *name)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(row, "skills"), i, e)
    {
        if (strcmp(jstr(e, "skill"), name) == 0)
            return e;
    }
    return NULL;
}

/* ---- the guild tool ---------------------------------------------------------------------- */

/* Runs `guild <args> --data <data> --nats <url>`; its stdout in *out
 * (malloc'd) and its exit status. */
static int run_guild(const platform *p, const char *args, char **out)
{
    char cmd[2400];
    /* Bounded, so a command that should have refused and runs on instead
     * fails the test (exit 124) rather than hanging it. */
    snprintf(cmd, sizeof cmd, "timeout 60 '%s' %s --data '%s' --nats '%s' 2>>'%s/cli.log'",
             guild_bin(), args, p->data, p->nats.url, p->dir);
    FILE *f = popen(cmd, "r");
    ck_assert_msg(f != NULL, "popen %s", cmd);
    *out = tst_slurp(f);
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static size_t count_lines(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

/* ---- a writer that knows what the model must hold -------------------------------------------
 * Each writer owns one profile and sends a stream of talent commands to it
 * (availability, reservations, skills added, changed and removed), each with
 * its own Guild-Command-Id, repeated with the same id until a reply comes,
 * so that its expected state follows exactly the acknowledged commands. */

#define SKILLS_N 8
static const char *const skill_names[SKILLS_N] = {"Go",  "C",   "Rust",  "SQL",
                                                  "Lua", "Zig", "OCaml", "Erlang"};
#define RESERVATIONS_MAX 8

typedef struct writer {
    platform *p;
    person who;
    int index;
    atomic_bool *stop;
    uint64_t seed;
    /* what the model must show once it has applied every acknowledged command */
    int hours;
    struct {
        char id[48];
        int hours;
    } res[RESERVATIONS_MAX];
    int n_res;
    struct {
        bool has;
        int level, years;
    } skills[SKILLS_N];
    uint64_t version; /* of the profile's stream */
    uint64_t sent, acked;
    char failure[1024];
    pthread_t thread;
} writer;

/* Sends one command until it is answered; the reply, or NULL after 20 s. */
static json_t *writer_send(writer *w, const char *command, json_t *body)
{
    char subject[128], id[96];
    snprintf(subject, sizeof subject, "guild.cmd.talent.%s", command);
    snprintf(id, sizeof id, "w%d-%llu", w->index, (unsigned long long)w->sent++);
    json_object_set_new(body, "talent_id", json_string(w->who.talent_id));
    req_opts o = {.token = w->who.token, .command_id = id};
    json_t *r = NULL;
    uint64_t deadline = now_ms() + 20000;
    while (!r && now_ms() < deadline)
        r = request(w->p->nc, subject, body, &o, NULL);
    if (!reply_ok(r))
        snprintf(w->failure, sizeof w->failure, "writer %d: %s %s: %s", w->index, command,
                 dump(body), dump(r));
    json_decref(body);
    if (!reply_ok(r)) {
        json_decref(r);
        return NULL;
    }
    if ((uint64_t)jint(r, "version") > w->version)
        w->version = (uint64_t)jint(r, "version");
    w->acked++;
    return r;
}

static void writer_step(writer *w)
{
    uint64_t r = rnd(&w->seed);
    int op = (int)(w->acked % 4);
    int have = 0;
    for (int i = 0; i < SKILLS_N; i++)
        have += w->skills[i].has;
    json_t *reply = NULL;
    if (op == 0) { /* 30..80 hours: always above the 24 at most reserved */
        int hours = 30 + (int)(r % 51);
        reply = writer_send(w, "set_availability", json_pack("{s:i}", "hours_per_week", hours));
        if (reply)
            w->hours = hours;
    } else if (op == 1 && w->n_res == RESERVATIONS_MAX) {
        reply =
            writer_send(w, "release_capacity", json_pack("{s:s}", "reservation_id", w->res[0].id));
        if (reply) {
            memmove(&w->res[0], &w->res[1], sizeof w->res[0] * (RESERVATIONS_MAX - 1));
            w->n_res--;
        }
    } else if (op == 1) {
        char id[48];
        int hours = 1 + (int)(r % 3);
        snprintf(id, sizeof id, "res-%d-%llu", w->index, (unsigned long long)w->sent);
        reply = writer_send(w, "reserve_capacity",
                            json_pack("{s:s, s:i}", "reservation_id", id, "hours_per_week", hours));
        if (reply) {
            snprintf(w->res[w->n_res].id, sizeof w->res[0].id, "%s", id);
            w->res[w->n_res++].hours = hours;
        }
    } else if (op == 3 && have >= 4) {
        int k = (int)(r % (uint64_t)have), i = 0;
        for (; i < SKILLS_N; i++)
            if (w->skills[i].has && k-- == 0)
                break;
        reply = writer_send(w, "remove_skill", json_pack("{s:s}", "skill", skill_names[i]));
        if (reply)
            w->skills[i].has = false;
    } else {
        int i = (int)(r % SKILLS_N), level = 1 + (int)((r >> 8) % 5), years = (int)((r >> 16) % 30);
        reply = writer_send(
            w, "add_skill",
            json_pack("{s:s, s:i, s:i}", "skill", skill_names[i], "level", level, "years", years));
        if (reply) {
            w->skills[i].has = true;
            w->skills[i].level = level;
            w->skills[i].years = years;
        }
    }
    json_decref(reply);
}

static void *writer_main(void *arg)
{
    writer *w = arg;
    while (!atomic_load(w->stop) && !w->failure[0])
        writer_step(w);
    return NULL;
}

/* Starts n writers; writers_join stops them (through `stop`) and waits. */
static void writers_start(platform *p, writer *w, int n, int first_person, atomic_bool *stop)
{
    atomic_init(stop, false);
    for (int i = 0; i < n; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].p = p;
        w[i].index = first_person + i;
        w[i].stop = stop;
        w[i].seed = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1);
        person_new(p, first_person + i, &w[i].who);
        w[i].version = 1;
    }
    for (int i = 0; i < n; i++)
        ck_assert_int_eq(pthread_create(&w[i].thread, NULL, writer_main, &w[i]), 0);
}

static void writers_join(writer *w, int n)
{
    atomic_store(w[0].stop, true);
    for (int i = 0; i < n; i++)
        pthread_join(w[i].thread, NULL);
    for (int i = 0; i < n; i++)
        ck_assert_msg(!w[i].failure[0], "%s", w[i].failure);
}

/* Asserts that the model's profile of w is what w's acknowledged commands made. */
static void assert_profile_matches(platform *p, const writer *w, const char *consistency)
{
    json_t *r = get_profile(p->nc, &w->who, w->who.talent_id, consistency, NULL, NULL);
    ck_assert_msg(reply_ok(r), "get_profile of writer %d: %s", w->index, dump(r));
    json_t *row = json_object_get(r, "data");
    ck_assert_msg((uint64_t)jint(row, "version") == w->version,
                  "writer %d: the model shows version %lld, the last acknowledged is %llu: %s",
                  w->index, (long long)jint(row, "version"), (unsigned long long)w->version,
                  dump(row));
    ck_assert_msg(jint(row, "hours_per_week") == w->hours, "writer %d: hours %lld, want %d",
                  w->index, (long long)jint(row, "hours_per_week"), w->hours);
    int reserved = 0;
    json_t *list = json_object_get(row, "reservations");
    ck_assert_msg(json_array_size(list) == (size_t)w->n_res, "writer %d: %zu reservations, want %d",
                  w->index, json_array_size(list), w->n_res);
    for (int i = 0; i < w->n_res; i++) {
        bool found = false;
        size_t k;
        json_t *e;
        json_array_foreach(list, k, e)
        {
            if (strcmp(jstr(e, "reservation_id"), w->res[i].id) == 0)
                found = jint(e, "hours_per_week") == w->res[i].hours;
        }
        ck_assert_msg(found, "writer %d: reservation %s of %d hours is missing: %s", w->index,
                      w->res[i].id, w->res[i].hours, dump(list));
        reserved += w->res[i].hours;
    }
    ck_assert_int_eq(jint(row, "reserved_hours"), reserved);
    size_t have = 0;
    for (int i = 0; i < SKILLS_N; i++) {
        json_t *s = skill_of(row, skill_names[i]);
        ck_assert_msg(!s == !w->skills[i].has, "writer %d: skill %s %s: %s", w->index,
                      skill_names[i], s ? "should be gone" : "is missing",
                      dump(json_object_get(row, "skills")));
        if (!s)
            continue;
        have++;
        ck_assert_msg(jint(s, "level") == w->skills[i].level &&
                          jint(s, "years") == w->skills[i].years,
                      "writer %d: skill %s is %s, want level %d years %d", w->index, skill_names[i],
                      dump(s), w->skills[i].level, w->skills[i].years);
    }
    ck_assert_int_eq(json_array_size(json_object_get(row, "skills")), have);
    json_decref(r);
}

/* The talent ids a search answers (one page of up to 100), sorted, joined by ','. */
static void search_ids(platform *p, const person *who, json_t *args, char *out, size_t size)
{
    json_object_set_new(args, "limit", json_integer(100));
    req_opts o = {.token = who->token};
    json_t *r = request(p->nc, "guild.qry.talent.search", args, &o, NULL);
    ck_assert_msg(reply_ok(r), "search %s: %s", dump(args), dump(r));
    json_decref(args);
    json_t *results = json_object_get(json_object_get(r, "data"), "results");
    ck_assert(json_is_null(json_object_get(json_object_get(r, "data"), "next_cursor")));
    size_t n = json_array_size(results);
    const char **ids = calloc(n ? n : 1, sizeof *ids);
    for (size_t i = 0; i < n; i++)
        ids[i] = jstr(json_array_get(results, i), "talent_id");
    for (size_t i = 1; i < n; i++) /* insertion sort: a handful of ids */
        for (size_t j = i; j > 0 && strcmp(ids[j - 1], ids[j]) > 0; j--) {
            const char *t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        strncat(out, ids[i], size - strlen(out) - 1);
        strncat(out, ",", size - strlen(out) - 1);
    }
    free(ids);
    json_decref(r);
}

/* The ids of the writers for which keep() holds, formatted as search_ids does. */
static void expected_ids(const writer *w, int n, bool (*keep)(const writer *, int), int arg,
                         char *out, size_t size)
{
    const char *ids[16];
    int k = 0;
    for (int i = 0; i < n && k < 16; i++)
        if (keep(&w[i], arg))
            ids[k++] = w[i].who.talent_id;
    for (int i = 1; i < k; i++)
        for (int j = i; j > 0 && strcmp(ids[j - 1], ids[j]) > 0; j--) {
            const char *t = ids[j];
            ids[j] = ids[j - 1];
            ids[j - 1] = t;
        }
    out[0] = '\0';
    for (int i = 0; i < k; i++) {
        strncat(out, ids[i], size - strlen(out) - 1);
        strncat(out, ",", size - strlen(out) - 1);
    }
}

static bool has_skill(const writer *w, int i)
{
    return w->skills[i].has;
}

static bool has_skill_at_3(const writer *w, int i)
{
    return w->skills[i].has && w->skills[i].level >= 3;
}

static bool free_hours_at_least(const writer *w, int hours)
{
    int reserved = 0;
    for (int i = 0; i < w->n_res; i++)
        reserved += w->res[i].hours;
    return w->hours - reserved >= hours;
}

/* Every search answers exactly the profiles the acknowledged commands made. */
static void assert_searches_match(platform *p, const writer *w, int n)
{
    char got[2048], want[2048];
    for (int i = 0; i < SKILLS_N; i++) {
        search_ids(p, &w[0].who, json_pack("{s:[s]}", "skills", skill_names[i]), got, sizeof got);
        expected_ids(w, n, has_skill, i, want, sizeof want);
        ck_assert_msg(strcmp(got, want) == 0, "search by %s: got [%s], want [%s]", skill_names[i],
                      got, want);
        search_ids(p, &w[0].who,
                   json_pack("{s:[s], s:i}", "skills", skill_names[i], "min_level", 3), got,
                   sizeof got);
        expected_ids(w, n, has_skill_at_3, i, want, sizeof want);
        ck_assert_msg(strcmp(got, want) == 0, "search by %s at level 3+: got [%s], want [%s]",
                      skill_names[i], got, want);
    }
    for (int hours = 20; hours <= 80; hours += 15) {
        search_ids(p, &w[0].who, json_pack("{s:i}", "min_hours", hours), got, sizeof got);
        expected_ids(w, n, free_hours_at_least, hours, want, sizeof want);
        ck_assert_msg(strcmp(got, want) == 0, "search by %d free hours: got [%s], want [%s]", hours,
                      got, want);
    }
}

/* `guild project rebuild talent --no-swap` proves the live digest. */
static void assert_rebuild_digest_equal(platform *p)
{
    char *out = NULL;
    int rc = run_guild(p, "project rebuild talent --no-swap", &out);
    ck_assert_msg(rc == 0 && strstr(out, "EQUAL to"), "rebuild --no-swap (exit %d): %s", rc, out);
    free(out);
}

/* ---- query replies ------------------------------------------------------------------------ */

/* get_profile of talent_id in `fmt`, after `consistency`; the reply's bytes
 * (malloc'd, *len long). */
static char *get_profile_bytes(natsConnection *nc, const person *who, const char *talent_id,
                               const char *consistency, guild_format fmt, size_t *len)
{
    json_t *body = json_pack("{s:s}", "talent_id", talent_id);
    req_opts o = {.token = who->token, .consistency = consistency};
    natsMsg *reply = request_msg(nc, "guild.qry.talent.get_profile", body, fmt, &o);
    json_decref(body);
    ck_assert_ptr_nonnull(reply);
    *len = (size_t)natsMsg_GetDataLength(reply);
    char *out = malloc(*len + 1);
    memcpy(out, natsMsg_GetData(reply), *len);
    out[*len] = '\0';
    natsMsg_Destroy(reply);
    return out;
}

/* A JSON get_profile is written straight from the stored row; it must be
 * byte for byte what the row decoded and encoded gives, which is what a
 * msgpack get_profile is built from. */
START_TEST(test_get_profile_answers_in_json_as_the_decoded_row_would)
{
    platform p;
    platform_up(&p);
    person a;
    person_new(&p, 1, &a);
    json_t *c = talent_cmd(&p, &a, "update_profile",
                           json_pack("{s:s}", "bio",
                                     "Line one\nTab\there, \"quoted\", back\\slash, /, "
                                     "\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"));
    json_decref(c);
    c = talent_cmd(&p, &a, "add_skill", json_pack("{s:s, s:i}", "skill", "C++", "level", 5));
    const char *consistency = jstr(c, "consistency");

    size_t jlen = 0, mlen = 0;
    char *text = get_profile_bytes(p.nc, &a, a.talent_id, consistency, GUILD_FMT_JSON, &jlen);
    char *packed = get_profile_bytes(p.nc, &a, a.talent_id, consistency, GUILD_FMT_MSGPACK, &mlen);
    json_t *tree = NULL;
    ck_assert_status(guild_codec_decode(packed, mlen, GUILD_FMT_MSGPACK, &tree, NULL), GUILD_OK);
    ck_assert_msg(reply_ok(tree), "msgpack get_profile: %s", dump(tree));
    char *want = NULL;
    size_t wlen = 0;
    ck_assert_status(guild_codec_encode(tree, GUILD_FMT_JSON, &want, &wlen), GUILD_OK);
    ck_assert_str_eq(text, want);
    ck_assert_msg(strstr(text, "Tab\\there, \\\"quoted\\\", back\\\\slash") != NULL,
                  "the bio's escapes: %s", text);
    ck_assert_msg(strstr(text, "\"skill\":\"C++\"") != NULL, "the skill: %s", text);

    /* A profile that does not exist: the same error either way. */
    char *missing = get_profile_bytes(p.nc, &a, "00000000-0000-4000-8000-000000000000", consistency,
                                      GUILD_FMT_JSON, &jlen);
    ck_assert_msg(strstr(missing, "\"not_found\"") != NULL, "missing profile: %s", missing);
    free(missing);
    free(want);
    json_decref(tree);
    free(packed);
    free(text);
    json_decref(c);
    platform_down(&p);
}
END_TEST

/* ---- read-your-writes ------------------------------------------------------------------------ */

START_TEST(test_a_query_with_the_command_consistency_sees_the_write_at_once)
{
    platform p;
    platform_up(&p);
    person a;
    person_new(&p, 1, &a);

    /* The profile, asked for right after create_profile answered. */
    json_t *r = get_profile(p.nc, &a, a.talent_id, a.consistency, NULL, NULL);
    ck_assert_msg(reply_ok(r), "get_profile after create_profile: %s", dump(r));
    json_t *row = json_object_get(r, "data");
    ck_assert_str_eq(jstr(row, "talent_id"), a.talent_id);
    ck_assert_str_eq(jstr(row, "user_id"), a.user_id);
    ck_assert_str_eq(jstr(row, "headline"), "Person 1");
    ck_assert_int_ge(jint(r, "position"), atoll(strchr(a.consistency, ':') + 1));
    json_decref(r);

    /* A skill, then each new availability, seen by the very next query. */
    json_t *c = talent_cmd(&p, &a, "add_skill",
                           json_pack("{s:s, s:i, s:i}", "skill", "Rust", "level", 4, "years", 3));
    r = get_profile(p.nc, &a, a.talent_id, jstr(c, "consistency"), NULL, NULL);
    ck_assert_msg(reply_ok(r), "get_profile after add_skill: %s", dump(r));
    json_t *skill = skill_of(json_object_get(r, "data"), "Rust");
    ck_assert_msg(skill && jint(skill, "level") == 4 && jint(skill, "years") == 3,
                  "the skill is not there: %s", dump(r));
    json_decref(r);
    json_decref(c);
    for (int hours = 1; hours <= 30; hours++) {
        c = talent_cmd(&p, &a, "set_availability", json_pack("{s:i}", "hours_per_week", hours));
        r = get_profile(p.nc, &a, a.talent_id, jstr(c, "consistency"), NULL, NULL);
        ck_assert_msg(reply_ok(r) && jint(json_object_get(r, "data"), "hours_per_week") == hours,
                      "after set_availability %d (%s): %s", hours, jstr(c, "consistency"), dump(r));
        json_decref(r);
        json_decref(c);
    }

    /* A position the log has not reached: unavailable at the deadline asked for. */
    char future[64];
    snprintf(future, sizeof future, "talent:%d", 1000000);
    int http = 0;
    uint64_t t0 = now_ms();
    r = get_profile(p.nc, &a, a.talent_id, future, "200", &http);
    uint64_t took = now_ms() - t0;
    ck_assert_msg(r && !reply_ok(r), "a query ahead of the log answered: %s", dump(r));
    ck_assert_str_eq(reply_code(r), "unavailable");
    ck_assert_int_eq(http, 503);
    ck_assert_msg(took >= 190 && took < 1500, "unavailable after %llu ms, not about 200",
                  (unsigned long long)took);
    json_decref(r);

    /* A token of another domain is refused at once. */
    r = get_profile(p.nc, &a, a.talent_id, "identity:1", NULL, &http);
    ck_assert_msg(r && !reply_ok(r), "a token of another domain was accepted: %s", dump(r));
    ck_assert_str_eq(reply_code(r), "invalid_request");
    ck_assert_int_eq(http, 400);
    json_decref(r);

    platform_down(&p);
}
END_TEST

/* ---- exactly once across crashes ----------------------------------------------------------- */

/* Waits until the model has applied the whole talent log, then asserts
 * that nothing was parked and that every writer's profile and the searches
 * are what the acknowledged commands made; the model's status then. */
static json_t *assert_writers_applied_exactly(platform *p, const writer *w, int n)
{
    json_t *st = await_talent_position(p, talent_log_head(p));
    ck_assert_int_eq(jint(st, "parked"), 0);
    for (int i = 0; i < n; i++)
        assert_profile_matches(p, &w[i], NULL);
    assert_searches_match(p, w, n);
    return st;
}

/* The name of the projector's consumer of GUILD_TALENT, or "" when it has
 * none now; how many it has. */
static int talent_consumer(natsConnection *nc, char *out, size_t size)
{
    out[0] = '\0';
    int count = 0;
    natsMsg *reply = NULL;
    if (natsConnection_RequestString(&reply, nc, "$JS.API.CONSUMER.NAMES.GUILD_TALENT", "{}",
                                     REQUEST_MS) != NATS_OK)
        return -1;
    json_t *r = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, NULL);
    natsMsg_Destroy(reply);
    size_t i;
    json_t *name;
    json_array_foreach(json_object_get(r, "consumers"), i, name)
    {
        if (strncmp(json_string_value(name), "prj_talent_", 11) == 0) {
            snprintf(out, size, "%s", json_string_value(name));
            count++;
        }
    }
    json_decref(r);
    return count;
}

#define CRASH_WRITERS 6
#define CRASHES 8

START_TEST(test_projector_killed_repeatedly_under_load_applies_each_event_exactly_once)
{
    platform p;
    platform_up(&p);
    writer w[CRASH_WRITERS];
    atomic_bool stop;
    writers_start(&p, w, CRASH_WRITERS, 10, &stop);

    uint64_t seed = (uint64_t)guild_now_ns() | 1;
    for (int k = 0; k < CRASHES; k++) {
        sleep_ms(150 + (unsigned)(rnd(&seed) % 700));
        int st = gproc_signal(&p.projector, SIGKILL);
        ck_assert_int_eq(st, 128 + SIGKILL);
        gproc_start(&p.projector, p.data, p.nats.url);
    }
    sleep_ms(500);
    writers_join(w, CRASH_WRITERS);
    uint64_t acked = 0;
    for (int i = 0; i < CRASH_WRITERS; i++)
        acked += w[i].acked;
    ck_assert_msg(acked >= 100, "only %llu commands were acknowledged", (unsigned long long)acked);

    json_decref(assert_writers_applied_exactly(&p, w, CRASH_WRITERS));
    /* each start deleted the consumer the killed process left behind */
    char consumer[128];
    ck_assert_msg(talent_consumer(p.nc, consumer, sizeof consumer) == 1,
                  "after %d kills the projector should have one consumer of GUILD_TALENT (%s)",
                  CRASHES, consumer);
    assert_rebuild_digest_equal(&p);
    platform_down(&p);
}
END_TEST

/* ---- a consumer that loses messages ----------------------------------------------------------
 * Another client of the projector's JetStream consumer (an operator's
 * `nats consumer next`, say) takes messages the projector then never sees;
 * someone deletes the consumer. Either way the projector must notice, start
 * its consumer again from its own checkpoint, and apply every event once. */

#define THEFTS 24

/* Pulls up to `batch` messages from the consumer for 300 ms and keeps them
 * (no ack); how many events it took. */
static int steal(natsConnection *nc, const char *consumer, int batch)
{
    char inbox[128], subject[256], body[96];
    snprintf(inbox, sizeof inbox, "_INBOX.thief.%llu", (unsigned long long)guild_now_ns());
    snprintf(subject, sizeof subject, "$JS.API.CONSUMER.MSG.NEXT.GUILD_TALENT.%s", consumer);
    snprintf(body, sizeof body, "{\"batch\":%d,\"expires\":250000000}", batch);
    natsSubscription *sub = NULL;
    if (natsConnection_SubscribeSync(&sub, nc, inbox) != NATS_OK)
        return 0;
    int taken = 0;
    if (natsConnection_PublishRequestString(nc, subject, inbox, body) == NATS_OK) {
        uint64_t deadline = now_ms() + 300;
        natsMsg *m = NULL;
        while (taken < batch && now_ms() < deadline &&
               natsSubscription_NextMsg(&m, sub, (int64_t)(deadline - now_ms()) + 1) == NATS_OK) {
            taken += natsMsg_GetDataLength(m) > 0; /* not a status (no messages, expired) */
            natsMsg_Destroy(m);
        }
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    return taken;
}

START_TEST(test_a_consumer_that_loses_messages_or_is_deleted_is_restarted_from_the_checkpoint)
{
    platform p;
    platform_up(&p);
    writer w[CRASH_WRITERS];
    atomic_bool stop;
    writers_start(&p, w, CRASH_WRITERS, 30, &stop);

    uint64_t seed = (uint64_t)guild_now_ns() | 1;
    int stolen = 0, deleted = 0;
    for (int k = 0; k < THEFTS; k++) {
        sleep_ms(50 + (unsigned)(rnd(&seed) % 150));
        char consumer[128];
        talent_consumer(p.nc, consumer, sizeof consumer);
        if (!consumer[0])
            continue; /* being made again */
        if (k % 4 == 3) {
            char subject[256];
            natsMsg *reply = NULL;
            snprintf(subject, sizeof subject, "$JS.API.CONSUMER.DELETE.GUILD_TALENT.%s", consumer);
            if (natsConnection_RequestString(&reply, p.nc, subject, "", REQUEST_MS) == NATS_OK)
                deleted++;
            natsMsg_Destroy(reply);
            /* The projector makes it again once its fetches bring nothing
             * for 2 s; until then there is nothing to take from. */
            uint64_t deadline = now_ms() + 15000;
            do {
                sleep_ms(100);
                talent_consumer(p.nc, consumer, sizeof consumer);
            } while (!consumer[0] && now_ms() < deadline);
            ck_assert_msg(consumer[0],
                          "the projector did not make its deleted consumer again "
                          "within 15 s (log %s)",
                          p.projector.log);
        } else {
            stolen += steal(p.nc, consumer, 1 + (int)(rnd(&seed) % 5));
        }
    }
    sleep_ms(300);
    writers_join(w, CRASH_WRITERS);
    ck_assert_msg(stolen > 0 && deleted > 0,
                  "the test took no message (%d) or deleted no consumer (%d): it proves nothing",
                  stolen, deleted);
    ck_assert_msg(waitpid(p.projector.pid, NULL, WNOHANG) == 0,
                  "guild project exited while its consumer was disturbed (log %s)",
                  p.projector.log);

    json_t *st = assert_writers_applied_exactly(&p, w, CRASH_WRITERS);
    ck_assert_msg(jint(st, "consumer_restarts") >= 1,
                  "the status shows %lld restarts of the consumer",
                  (long long)jint(st, "consumer_restarts"));
    json_decref(st);
    char consumer[128];
    ck_assert_msg(talent_consumer(p.nc, consumer, sizeof consumer) == 1,
                  "the projector should have one consumer of GUILD_TALENT, the latest (%s)",
                  consumer);
    char *log = file_text(p.projector.log);
    ck_assert_msg(log && strstr(log, "expected position"),
                  "the projector never saw a gap, though %d events were taken from it", stolen);
    free(log);
    platform_down(&p);
}
END_TEST

/* ---- a poison event ------------------------------------------------------------------------- */

START_TEST(test_an_event_the_model_refuses_is_parked_and_later_events_still_apply)
{
    platform p;
    platform_up(&p);
    person a;
    person_new(&p, 1, &a);

    /* An event the talent model must refuse: an update of a profile that was
     * never created, written straight into the talent log while its writer
     * is stopped, then published by the relay when talent starts again. */
    ck_assert_int_eq(gproc_signal(&p.talent, SIGTERM), 0);
    char dir[700];
    snprintf(dir, sizeof dir, "%s/talent/events", p.data);
    es_options o = {.domain = "talent"};
    es_store *st = NULL;
    guild_error err = {0};
    ck_assert_msg(es_store_open(dir, &o, &st, &err) == GUILD_OK, "%s", err.message);
    const char *ghost = "talent-01900000-0000-7000-8000-00000000dead";
    /* msgpack {"headline": "ghost"} */
    static const char data[] = "\x81\xa8headline\xa5ghost";
    es_event_in ev = {
        .type = "profile_updated", .schema = 1, .data = data, .data_len = sizeof data - 1};
    es_append req = {.stream = ghost,
                     .expected_version = ES_ANY_VERSION,
                     .time_ns = guild_now_ns(),
                     .events = &ev,
                     .n_events = 1};
    es_result res;
    ck_assert_status(es_append_wait(st, &req, &res), GUILD_OK);
    uint64_t poison = res.last_position;
    es_result_release(&res);
    es_store_close(st);
    gproc_start(&p.talent, p.data, p.nats.url);
    await_talent(&p);

    /* Later events apply and are seen. */
    json_t *c = talent_cmd(&p, &a, "add_skill", json_pack("{s:s, s:i}", "skill", "Go", "level", 5));
    ck_assert_int_gt(jint(c, "position"), poison);
    json_t *r = get_profile(p.nc, &a, a.talent_id, jstr(c, "consistency"), NULL, NULL);
    ck_assert_msg(reply_ok(r) && skill_of(json_object_get(r, "data"), "Go"),
                  "the event after the poison did not apply: %s", dump(r));
    json_decref(r);
    json_decref(c);
    json_t *status = model_status(&p, "talent");
    ck_assert_msg(status && jint(status, "parked") == 1, "status: %s", dump(status));
    json_decref(status);

    /* The dead letter: one line with its position, type, stream and reason. */
    char *out = NULL, prefix[160];
    int rc = run_guild(&p, "project dead-letters talent", &out);
    ck_assert_msg(rc == 0, "dead-letters exited with %d: %s", rc, out);
    ck_assert_msg(count_lines(out) == 1, "dead-letters printed: %s", out);
    snprintf(prefix, sizeof prefix, "%llu  profile_updated  %s  ", (unsigned long long)poison,
             ghost);
    ck_assert_msg(strncmp(out, prefix, strlen(prefix)) == 0, "dead-letters printed: %s", out);
    ck_assert_msg(strstr(out, "does not exist"), "no reason given: %s", out);
    free(out);

    /* A retry cannot make it apply: it stays parked, and says so. */
    rc = run_guild(&p, "project retry talent", &out);
    ck_assert_msg(rc == 1 && strstr(out, "1 still parked"), "retry (exit %d): %s", rc, out);
    free(out);
    rc = run_guild(&p, "project dead-letters talent", &out);
    ck_assert_msg(rc == 0 && count_lines(out) == 1 && strncmp(out, prefix, strlen(prefix)) == 0,
                  "after the retry, dead-letters printed (exit %d): %s", rc, out);
    free(out);

    /* And the model goes on. */
    c = talent_cmd(&p, &a, "set_availability", json_pack("{s:i}", "hours_per_week", 12));
    r = get_profile(p.nc, &a, a.talent_id, jstr(c, "consistency"), NULL, NULL);
    ck_assert_msg(reply_ok(r) && jint(json_object_get(r, "data"), "hours_per_week") == 12,
                  "after the retry: %s", dump(r));
    json_decref(r);
    json_decref(c);
    platform_down(&p);
}
END_TEST

/* ---- rebuild ----------------------------------------------------------------------------------
 */

typedef struct reader {
    platform *p;
    const person *who;
    int n;
    json_t **want; /* the rows each get_profile must answer */
    atomic_bool stop;
    uint64_t queries, failures;
    char first_failure[1024];
    pthread_t thread;
} reader;

static void *reader_main(void *arg)
{
    reader *rd = arg;
    for (uint64_t k = 0; !atomic_load(&rd->stop); k++) {
        int i = (int)(k % (uint64_t)rd->n);
        json_t *r = get_profile(rd->p->nc, &rd->who[0], rd->who[i].talent_id, NULL, NULL, NULL);
        rd->queries++;
        if (!reply_ok(r) || !json_equal(json_object_get(r, "data"), rd->want[i])) {
            if (!rd->failures++)
                snprintf(rd->first_failure, sizeof rd->first_failure, "query %llu: %s",
                         (unsigned long long)rd->queries, dump(r));
        }
        json_decref(r);
    }
    return NULL;
}

#define REBUILD_PEOPLE 4

START_TEST(test_rebuild_proves_the_digest_and_swaps_in_while_queries_keep_answering)
{
    platform p;
    platform_up(&p);
    person who[REBUILD_PEOPLE];
    json_t *want[REBUILD_PEOPLE];
    char last[96] = "";
    for (int i = 0; i < REBUILD_PEOPLE; i++) {
        person_new(&p, i + 1, &who[i]);
        for (int k = 0; k < 5; k++) {
            json_t *c = talent_cmd(&p, &who[i], "add_skill",
                                   json_pack("{s:s, s:i}", "skill", skill_names[(i + k) % SKILLS_N],
                                             "level", 1 + (i + k) % 5));
            json_decref(c);
        }
        json_t *c = talent_cmd(&p, &who[i], "set_rate",
                               json_pack("{s:s, s:i}", "currency", "EUR", "hourly_rate", 5000 + i));
        snprintf(last, sizeof last, "%s", jstr(c, "consistency"));
        json_decref(c);
    }
    for (int i = 0; i < REBUILD_PEOPLE; i++) {
        json_t *r = get_profile(p.nc, &who[i], who[i].talent_id, last, NULL, NULL);
        ck_assert_msg(reply_ok(r), "%s", dump(r));
        want[i] = json_incref(json_object_get(r, "data"));
        json_decref(r);
    }

    reader rd = {.p = &p, .who = who, .n = REBUILD_PEOPLE, .want = want};
    atomic_init(&rd.stop, false);
    ck_assert_int_eq(pthread_create(&rd.thread, NULL, reader_main, &rd), 0);
    sleep_ms(100);
    char *out = NULL;
    int rc = run_guild(&p, "project rebuild talent", &out);
    sleep_ms(300);
    atomic_store(&rd.stop, true);
    pthread_join(rd.thread, NULL);
    ck_assert_msg(rc == 0, "rebuild exited with %d: %s", rc, out);
    ck_assert_msg(strstr(out, "EQUAL to"), "no proof of the digest: %s", out);
    ck_assert_msg(strstr(out, "swapped in"), "not swapped in: %s", out);
    free(out);
    ck_assert_msg(rd.failures == 0, "%llu of %llu queries failed during the rebuild; first: %s",
                  (unsigned long long)rd.failures, (unsigned long long)rd.queries,
                  rd.first_failure);
    ck_assert_msg(rd.queries >= 20, "only %llu queries ran", (unsigned long long)rd.queries);

    /* The swapped-in model goes on applying, and proves itself again. */
    json_t *c = talent_cmd(&p, &who[0], "add_skill",
                           json_pack("{s:s, s:i}", "skill", "Fortran", "level", 2));
    json_t *r = get_profile(p.nc, &who[0], who[0].talent_id, jstr(c, "consistency"), NULL, NULL);
    ck_assert_msg(reply_ok(r) && skill_of(json_object_get(r, "data"), "Fortran"),
                  "after the swap: %s", dump(r));
    json_decref(r);
    json_decref(c);
    for (int i = 0; i < REBUILD_PEOPLE; i++)
        json_decref(want[i]);
    json_t *st = await_talent_position(&p, talent_log_head(&p));
    json_decref(st);
    assert_rebuild_digest_equal(&p);
    platform_down(&p);
}
END_TEST

#define REBUILD_WRITERS 3
#define REBUILDS 4

START_TEST(test_rebuild_while_commands_are_written_loses_no_event)
{
    platform p;
    platform_up(&p);
    writer w[REBUILD_WRITERS];
    atomic_bool stop;
    writers_start(&p, w, REBUILD_WRITERS, 20, &stop);
    sleep_ms(300);
    for (int k = 0; k < REBUILDS; k++) {
        char *out = NULL;
        int rc = run_guild(&p, "project rebuild talent", &out);
        ck_assert_msg(rc == 0 && strstr(out, "swapped in"),
                      "rebuild %d of %d while commands are written (exit %d): %s", k + 1, REBUILDS,
                      rc, out);
        free(out);
    }
    sleep_ms(300);
    writers_join(w, REBUILD_WRITERS);

    json_decref(assert_writers_applied_exactly(&p, w, REBUILD_WRITERS));
    assert_rebuild_digest_equal(&p);
    platform_down(&p);
}
END_TEST

/* ---- what operators see ---------------------------------------------------------------------- */

/* The endpoint of $SRV.STATS whose subject starts with prefix. */
static json_t *stats_endpoint(json_t *stats, const char *prefix)
{
    size_t i;
    json_t *e;
    json_array_foreach(json_object_get(stats, "endpoints"), i, e)
    {
        if (strncmp(jstr(e, "subject"), prefix, strlen(prefix)) == 0 && json_object_get(e, "data"))
            return e;
    }
    return NULL;
}

START_TEST(test_stats_and_status_show_each_model_position_and_lag)
{
    platform p;
    platform_up(&p);
    person a;
    person_new(&p, 1, &a);
    json_t *c =
        talent_cmd(&p, &a, "add_skill", json_pack("{s:s, s:i}", "skill", "SQL", "level", 3));
    json_int_t position = jint(c, "position");
    json_decref(c);
    json_t *st = await_talent_position(&p, (uint64_t)position);
    json_decref(st);

    /* The projector looks at the stream's end about once a second: ask until
     * the stats have seen it too. */
    json_t *stats = NULL, *e = NULL, *d = NULL;
    for (uint64_t deadline = now_ms() + 5000; now_ms() < deadline; sleep_ms(100)) {
        json_decref(stats);
        stats = request(p.nc, "$SRV.STATS.projector", NULL, NULL, NULL);
        e = stats_endpoint(stats, "guild.qry.talent.");
        d = json_object_get(e, "data");
        if (jint(d, "position") == position && jint(d, "stream_last") == position)
            break;
    }
    ck_assert_msg(stats && json_is_array(json_object_get(stats, "endpoints")), "%s", dump(stats));
    ck_assert_str_eq(jstr(stats, "name"), "projector");
    ck_assert_msg(e, "no talent endpoint with data: %s", dump(stats));
    ck_assert_str_eq(jstr(d, "model"), "talent");
    ck_assert_msg(json_is_integer(json_object_get(d, "position")) &&
                      json_is_integer(json_object_get(d, "events_behind")) &&
                      json_is_integer(json_object_get(d, "ms_behind")),
                  "talent stats: %s", dump(d));
    ck_assert_int_eq(jint(d, "position"), position);
    ck_assert_int_eq(jint(d, "events_behind"), 0);
    ck_assert_int_eq(jint(d, "ms_behind"), 0);
    /* nothing disturbed the consumer: it was never made again */
    ck_assert_msg(json_is_integer(json_object_get(d, "consumer_restarts")) &&
                      jint(d, "consumer_restarts") == 0,
                  "talent stats: %s", dump(d));
    /* the transactions that applied them: at least one, at most one an event */
    ck_assert_msg(json_is_integer(json_object_get(d, "batches")) && jint(d, "batches") >= 1 &&
                      jint(d, "batches") <= jint(d, "applied"),
                  "talent stats: %s", dump(d));
    e = stats_endpoint(stats, "guild.qry.identity.");
    ck_assert_msg(e && strcmp(jstr(json_object_get(e, "data"), "model"), "identity") == 0,
                  "no identity endpoint with data: %s", dump(stats));
    ck_assert_int_gt(jint(json_object_get(e, "data"), "position"), 0);
    json_decref(stats);

    /* guild project status: one line per model, with its position. */
    char *out = NULL, want[64];
    int rc = run_guild(&p, "project status", &out);
    ck_assert_msg(rc == 0, "status exited with %d: %s", rc, out);
    ck_assert_msg(strstr(out, "\nidentity "), "identity is not listed: %s", out);
    const char *line = strstr(out, "\ntalent ");
    ck_assert_msg(line, "talent is not listed: %s", out);
    snprintf(want, sizeof want, " %lld ", (long long)position);
    ck_assert_msg(strstr(line, want) && !strstr(line, "not running"), "talent line: %s", line);
    free(out);

    /* A second projector on the same data directory refuses to start: it
     * would apply events the first one applies as well. */
    rc = run_guild(&p, "project all", &out);
    free(out);
    char cli[600];
    snprintf(cli, sizeof cli, "%s/cli.log", p.dir);
    char *said = file_text(cli);
    ck_assert_msg(rc == 1 && said && strstr(said, "another guild project process runs the"),
                  "a second projector (exit %d) said: %s", rc, said ? said : "(nothing)");
    free(said);
    ck_assert_msg(p.projector.pid > 0 && waitpid(p.projector.pid, NULL, WNOHANG) == 0,
                  "the first projector stopped");

    /* With the projector stopped, status says so. */
    ck_assert_int_eq(gproc_signal(&p.projector, SIGTERM), 0);
    rc = run_guild(&p, "project status", &out);
    ck_assert_msg(rc == 1 && strstr(out, "talent     not running"), "status (exit %d): %s", rc,
                  out);
    free(out);
    platform_down(&p);
}
END_TEST

/* ---- suite ---------------------------------------------------------------------------------- */

static Suite *projector_suite(void)
{
    Suite *s = suite_create("projections/projector");
    TCase *tc = tcase_create("end_to_end");
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_a_query_with_the_command_consistency_sees_the_write_at_once);
    tcase_add_test(tc, test_get_profile_answers_in_json_as_the_decoded_row_would);
    tcase_add_test(tc, test_projector_killed_repeatedly_under_load_applies_each_event_exactly_once);
    tcase_add_test(
        tc, test_a_consumer_that_loses_messages_or_is_deleted_is_restarted_from_the_checkpoint);
    tcase_add_test(tc, test_an_event_the_model_refuses_is_parked_and_later_events_still_apply);
    tcase_add_test(tc, test_rebuild_proves_the_digest_and_swaps_in_while_queries_keep_answering);
    tcase_add_test(tc, test_rebuild_while_commands_are_written_loses_no_event);
    tcase_add_test(tc, test_stats_and_status_show_each_model_position_and_lag);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    return tst_run_suite(projector_suite());
}
