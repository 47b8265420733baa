/*
 * guild_proc.c — `guild serve` child processes and a contract-speaking
 * client for end-to-end tests (see guild_proc.h).
 *
 * Sections: fork/exec (each child tracked, children.h);
 * waiting for a process; the public process calls; requests; users.
 */
#include "tests/support/guild_proc.h"

#include "common/b64.h"
#include "common/codec.h"

#include "tests/support/children.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define READY_TIMEOUT_MS 30000
#define STOP_TIMEOUT_MS 40000 /* a stop drains its subscriptions: cnats allows 30 s */
#define PING_WAIT_MS 250

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ---- fork/exec --------------------------------------------------------------- */

/* Forks and execs `guild serve`. Everything the child needs is prepared
 * before the fork: after it only async-signal-safe calls are allowed (the
 * test process runs NATS threads). */
static pid_t spawn(const tst_guild *g)
{
    const char *program = getenv("GUILD_GUILD_BIN");
    if (!program || !*program) {
        fprintf(stderr, "guild_proc: GUILD_GUILD_BIN is not set (CTest sets it)\n");
        return -1;
    }
    if (access(program, X_OK) != 0) {
        fprintf(stderr, "guild_proc: %s is not executable\n", program);
        return -1;
    }
    char *const argv[] = {
        (char *)"guild",     (char *)"serve",  (char *)g->domain,   (char *)"--data",
        (char *)g->data_dir, (char *)"--nats", (char *)g->nats_url, NULL,
    };
    int log_fd = open(g->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) {
        fprintf(stderr, "guild_proc: cannot open %s: %s\n", g->log_path, strerror(errno));
        return -1;
    }
    pid_t pid = tst_spawn(program, argv, NULL, log_fd, log_fd);
    if (pid < 0)
        perror("guild_proc: fork");
    close(log_fd);
    return pid;
}

/* ---- waiting for a process --------------------------------------------------- */

/* Reaps the process if it has exited; true if it did (pid cleared). */
static bool reaped(tst_guild *g)
{
    if (g->pid <= 0)
        return true;
    int status = 0;
    pid_t w = waitpid(g->pid, &status, WNOHANG);
    if (w == g->pid || (w < 0 && errno == ECHILD)) {
        g->exit_status = w == g->pid ? status : -1;
        tst_child_untrack(g->pid);
        g->pid = 0;
        return true;
    }
    return false;
}

static void describe_exit(const tst_guild *g, char *buf, size_t size)
{
    int st = g->exit_status;
    if (st < 0)
        snprintf(buf, size, "unknown");
    else if (WIFEXITED(st))
        snprintf(buf, size, "exit status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, size, "signal %d", WTERMSIG(st));
    else
        snprintf(buf, size, "wait status %d", st);
}

int tst_guild_wait_ping(natsConnection *nc, const char *name, int timeout_ms)
{
    char subject[96];
    snprintf(subject, sizeof subject, "$SRV.PING.%s", name);
    uint64_t deadline = now_ms() + (uint64_t)timeout_ms;
    do {
        natsMsg *reply = NULL;
        uint64_t t0 = now_ms();
        if (natsConnection_RequestString(&reply, nc, subject, "", PING_WAIT_MS) == NATS_OK) {
            natsMsg_Destroy(reply);
            return 0;
        }
        uint64_t spent = now_ms() - t0;
        if (spent < 50)
            sleep_ms((unsigned)(50 - spent)); /* "no responders" answers at once */
    } while (now_ms() < deadline);
    return -1;
}

/* Waits until the process answers its ping; -1 if it exited or stayed
 * silent (it is then killed). */
static int wait_ready(tst_guild *g)
{
    natsConnection *nc = NULL;
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, g->nats_url);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, 2000);
    if (s == NATS_OK)
        s = natsConnection_Connect(&nc, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        fprintf(stderr, "guild_proc: cannot reach NATS at %s: %s\n", g->nats_url,
                natsStatus_GetText(s));
        return -1;
    }
    uint64_t deadline = now_ms() + READY_TIMEOUT_MS;
    int rc = -1;
    while (now_ms() < deadline) {
        if (reaped(g)) {
            char how[64];
            describe_exit(g, how, sizeof how);
            fprintf(stderr, "guild_proc: guild serve %s exited at start (%s)\n", g->domain, how);
            break;
        }
        if (tst_guild_wait_ping(nc, g->domain, PING_WAIT_MS) == 0) {
            rc = 0;
            break;
        }
    }
    natsConnection_Destroy(nc);
    if (rc != 0 && g->pid > 0)
        fprintf(stderr, "guild_proc: guild serve %s did not answer its ping\n", g->domain);
    return rc;
}

/* Signals the process and waits for it; SIGKILL after timeout. */
static void terminate(tst_guild *g, int sig)
{
    if (g->pid <= 0)
        return;
    kill(g->pid, sig);
    uint64_t deadline = now_ms() + STOP_TIMEOUT_MS;
    while (!reaped(g)) {
        if (now_ms() >= deadline) {
            fprintf(stderr, "guild_proc: guild serve %s (pid %d) ignored signal %d; killing it\n",
                    g->domain, (int)g->pid, sig);
            kill(g->pid, SIGKILL);
            int status = 0;
            waitpid(g->pid, &status, 0);
            tst_child_untrack(g->pid);
            g->pid = 0;
            g->exit_status = status;
            return;
        }
        sleep_ms(5);
    }
}

static int clean_exit(const tst_guild *g)
{
    if (WIFEXITED(g->exit_status) && WEXITSTATUS(g->exit_status) == 0)
        return 0;
    char how[64];
    describe_exit(g, how, sizeof how);
    fprintf(stderr, "guild_proc: guild serve %s stopped with %s (log %s)\n", g->domain, how,
            g->log_path);
    tst_guild_dump_log(g, 3000);
    return -1;
}

/* ---- the public process calls ------------------------------------------------ */

static int launch(tst_guild *g)
{
    g->pid = spawn(g);
    if (g->pid < 0) {
        g->pid = 0;
        return -1;
    }
    tst_child_track(g->pid);
    if (wait_ready(g) == 0)
        return 0;
    if (g->pid > 0)
        tst_guild_kill(g);
    tst_guild_dump_log(g, 3000);
    return -1;
}

int tst_guild_start(tst_guild *g, const char *domain, const char *data_dir, const char *nats_url)
{
    memset(g, 0, sizeof *g);
    g->exit_status = -1;
    snprintf(g->domain, sizeof g->domain, "%s", domain);
    snprintf(g->data_dir, sizeof g->data_dir, "%s", data_dir);
    snprintf(g->nats_url, sizeof g->nats_url, "%s", nats_url);
    snprintf(g->log_path, sizeof g->log_path, "%s/%s.log", data_dir, domain);
    return launch(g);
}

int tst_guild_stop(tst_guild *g)
{
    if (g->pid <= 0)
        return 0;
    terminate(g, SIGTERM);
    return clean_exit(g);
}

int tst_guild_stop_all(tst_guild *const *gs, int n)
{
    for (int i = 0; i < n; i++)
        if (gs[i] && gs[i]->pid > 0)
            kill(gs[i]->pid, SIGTERM);
    int rc = 0;
    for (int i = 0; i < n; i++)
        if (gs[i] && tst_guild_stop(gs[i]) != 0)
            rc = -1;
    return rc;
}

int tst_guild_kill(tst_guild *g)
{
    terminate(g, SIGKILL);
    return 0;
}

int tst_guild_restart(tst_guild *g)
{
    if (!g->domain[0]) {
        fprintf(stderr, "guild_proc: restart of a process that was never started\n");
        return -1;
    }
    if (g->pid > 0)
        terminate(g, SIGTERM);
    return launch(g);
}

bool tst_guild_running(tst_guild *g)
{
    return !reaped(g);
}

void tst_guild_dump_log(const tst_guild *g, size_t bytes)
{
    FILE *f = fopen(g->log_path, "r");
    if (!f)
        return;
    if (fseek(f, 0, SEEK_END) == 0) {
        long size = ftell(f);
        if (size > (long)bytes)
            fseek(f, size - (long)bytes, SEEK_SET);
        else
            fseek(f, 0, SEEK_SET);
    }
    fprintf(stderr, "---- tail of %s ----\n", g->log_path);
    char buf[1024];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        fwrite(buf, 1, n, stderr);
    fprintf(stderr, "---- end of %s ----\n", g->log_path);
    fclose(f);
}

/* ---- requests ---------------------------------------------------------------- */

static natsStatus set_headers(natsMsg *m, const tst_call *call, guild_format fmt)
{
    natsStatus s = NATS_OK;
    const char *ct = call && call->content_type ? call->content_type
                     : fmt == GUILD_FMT_MSGPACK ? "application/msgpack"
                                                : "application/json";
    if (*ct)
        s = natsMsgHeader_Set(m, "Content-Type", ct);
    if (!call)
        return s;
    if (s == NATS_OK && call->auth) {
        s = natsMsgHeader_Set(m, "Authorization", call->auth);
    } else if (s == NATS_OK && call->token) {
        size_t n = strlen(call->token) + 8;
        char *v = malloc(n);
        if (!v)
            abort();
        snprintf(v, n, "Bearer %s", call->token);
        s = natsMsgHeader_Set(m, "Authorization", v);
        free(v);
    }
    if (s == NATS_OK && call->command_id)
        s = natsMsgHeader_Set(m, "Guild-Command-Id", call->command_id);
    if (s == NATS_OK && call->expected)
        s = natsMsgHeader_Set(m, "Guild-Expected-Version", call->expected);
    if (s == NATS_OK && call->correlation)
        s = natsMsgHeader_Set(m, "Guild-Correlation-Id", call->correlation);
    return s;
}

static void read_reply(natsMsg *reply, tst_reply *out)
{
    const char *v = NULL;
    if (natsMsgHeader_Get(reply, "Guild-Status", &v) == NATS_OK && v)
        out->status = atoi(v);
    v = NULL;
    if (natsMsgHeader_Get(reply, "Content-Type", &v) == NATS_OK && v)
        snprintf(out->content_type, sizeof out->content_type, "%s", v);
    out->raw_len = (size_t)natsMsg_GetDataLength(reply);
    out->raw = malloc(out->raw_len + 1);
    if (!out->raw)
        abort();
    if (out->raw_len)
        memcpy(out->raw, natsMsg_GetData(reply), out->raw_len);
    out->raw[out->raw_len] = '\0';
    guild_format fmt = guild_format_detect(out->content_type[0] ? out->content_type : NULL,
                                           out->raw, out->raw_len);
    json_t *doc = NULL;
    if (guild_codec_decode(out->raw, out->raw_len, fmt, &doc, NULL) == GUILD_OK)
        out->body = doc;
}

int tst_guild_request(natsConnection *nc, const char *subject, const void *body, size_t len,
                      const tst_call *call, tst_reply *out)
{
    memset(out, 0, sizeof *out);
    guild_format fmt = call && call->msgpack ? GUILD_FMT_MSGPACK : GUILD_FMT_JSON;
    natsMsg *m = NULL, *reply = NULL;
    natsStatus s = natsMsg_Create(&m, subject, NULL, body, (int)len);
    if (s == NATS_OK)
        s = set_headers(m, call, fmt);
    int timeout = call && call->timeout_ms ? call->timeout_ms : 10000;
    if (s == NATS_OK)
        s = natsConnection_RequestMsg(&reply, nc, m, timeout);
    natsMsg_Destroy(m);
    out->nats = s;
    if (s != NATS_OK)
        return -1;
    read_reply(reply, out);
    natsMsg_Destroy(reply);
    return json_is_object(out->body) ? 0 : -1;
}

int tst_guild_command(natsConnection *nc, const char *domain, const char *command,
                      const json_t *body, const tst_call *call, tst_reply *out)
{
    char subject[256];
    snprintf(subject, sizeof subject, "guild.cmd.%s.%s", domain, command);
    char *bytes = NULL;
    size_t len = 0;
    guild_format fmt = call && call->msgpack ? GUILD_FMT_MSGPACK : GUILD_FMT_JSON;
    if (guild_codec_encode(body, fmt, &bytes, &len) != GUILD_OK) {
        memset(out, 0, sizeof *out);
        out->nats = NATS_INVALID_ARG;
        fprintf(stderr, "guild_proc: the body of %s does not encode\n", subject);
        return -1;
    }
    int rc = tst_guild_request(nc, subject, bytes, len, call, out);
    free(bytes);
    return rc;
}

const char *tst_reply_code(const tst_reply *r)
{
    json_t *ok = json_object_get(r->body, "ok");
    if (json_is_true(ok))
        return "ok";
    const char *code =
        json_string_value(json_object_get(json_object_get(r->body, "error"), "code"));
    return code ? code : "";
}

const char *tst_reply_error_field(const tst_reply *r)
{
    return json_string_value(json_object_get(json_object_get(r->body, "error"), "field"));
}

const char *tst_reply_data_str(const tst_reply *r, const char *key)
{
    return json_string_value(json_object_get(json_object_get(r->body, "data"), key));
}

long long tst_reply_int(const tst_reply *r, const char *key)
{
    json_t *v = json_object_get(r->body, key);
    return json_is_integer(v) ? (long long)json_integer_value(v) : -1;
}

void tst_reply_release(tst_reply *r)
{
    json_decref(r->body);
    free(r->raw);
    memset(r, 0, sizeof *r);
}

/* ---- users ------------------------------------------------------------------- */

int tst_guild_login(natsConnection *nc, tst_user *u)
{
    json_t *body = json_pack("{s:s, s:s}", "email", u->email, "password", u->password);
    tst_reply r;
    int rc = tst_guild_command(nc, "identity", "login", body, NULL, &r);
    json_decref(body);
    const char *access = tst_reply_data_str(&r, "access_token");
    const char *refresh = tst_reply_data_str(&r, "refresh_token");
    if (rc != 0 || r.status != 200 || !access || !refresh ||
        strlen(access) >= sizeof u->access_token || strlen(refresh) >= sizeof u->refresh_token) {
        fprintf(stderr, "guild_proc: login of %s failed: %s (%s)\n", u->email,
                r.raw ? r.raw : "no reply", natsStatus_GetText(r.nats));
        tst_reply_release(&r);
        return -1;
    }
    snprintf(u->access_token, sizeof u->access_token, "%s", access);
    snprintf(u->refresh_token, sizeof u->refresh_token, "%s", refresh);
    tst_reply_release(&r);
    return 0;
}

int tst_guild_signup(natsConnection *nc, const char *email, bool admin, tst_user *u)
{
    memset(u, 0, sizeof *u);
    snprintf(u->email, sizeof u->email, "%s", email);
    snprintf(u->password, sizeof u->password, "%s", TST_GUILD_PASSWORD);
    json_t *body = json_pack("{s:s, s:s, s:s}", "email", email, "password", u->password,
                             "display_name", admin ? "Admin" : "Tester");
    tst_reply r;
    int rc = tst_guild_command(nc, "identity", admin ? "bootstrap_admin" : "register_user", body,
                               NULL, &r);
    json_decref(body);
    const char *id = tst_reply_data_str(&r, "user_id");
    if (rc != 0 || r.status != 200 || !id) {
        fprintf(stderr, "guild_proc: registration of %s failed: %s (%s)\n", email,
                r.raw ? r.raw : "no reply", natsStatus_GetText(r.nats));
        tst_reply_release(&r);
        return -1;
    }
    snprintf(u->user_id, sizeof u->user_id, "%s", id);
    tst_reply_release(&r);
    return tst_guild_login(nc, u);
}

/* Part `part` (0: header, 1: claims) of a token, decoded. */
static json_t *jwt_part(const char *token, int part)
{
    const char *a = strchr(token, '.');
    const char *b = a ? strchr(a + 1, '.') : NULL;
    if (!b)
        return NULL;
    const char *from = part == 0 ? token : a + 1;
    const char *to = part == 0 ? a : b;
    unsigned char *text = NULL;
    size_t len = 0;
    if (guild_b64_decode_alloc(from, (size_t)(to - from), &text, &len) != GUILD_OK)
        return NULL;
    json_t *doc = json_loadb((const char *)text, len, 0, NULL);
    free(text);
    return doc;
}

json_t *tst_jwt_claims(const char *token)
{
    return jwt_part(token, 1);
}

json_t *tst_jwt_header(const char *token)
{
    return jwt_part(token, 0);
}
