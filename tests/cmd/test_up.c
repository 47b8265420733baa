/*
 * test_up.c — `guild up`, run as a user runs it: the real binary
 * (GUILD_GUILD_BIN) with its stdout and stderr in files, and a NATS client
 * talking to what it started.
 *
 * guild up puts each child (nats-server, the services, the projector) in a
 * process group of its own; when the supervisor is killed they get SIGTERM,
 * but a failing test must not wait on that. So every process whose command
 * line names this file's directory (all of them do, through --data or -sd)
 * is killed when a test's process exits, however it exits, and again by the
 * runner after the last test.
 *
 * Sections: processes; running guild up; NATS; fixtures; refusing a port;
 * serving; restarting; suite.
 */
#include "common/clock.h"

#include "tests/support/check_util.h"
#include "tests/support/children.h"
#include "tests/support/guild_proc.h"
#include "tests/support/tmpdir.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define REFUSE_TIMEOUT_MS 5000   /* a refused port: no server is waited for */
#define START_TIMEOUT_MS 30000   /* up to the "up:" line */
#define RESTART_TIMEOUT_MS 15000 /* a killed service answers again */
#define STOP_TIMEOUT_MS 20000    /* SIGINT to exit */
#define MAX_KIDS 16

extern char **environ;

static char g_root[512]; /* made by the runner; every process started here names it */
static char g_dir[600];  /* this test's: the output files and data/ */
static char g_data[640]; /* --data; guild up makes it */
static natsConnection *g_nc;
static bool g_nats_used; /* the NATS library was opened: close it at teardown */

typedef struct up_run {
    pid_t pid;  /* guild up while it runs; 0 once reaped */
    int status; /* its wait status once reaped */
    char out_path[700];
    char err_path[700];
} up_run;

static up_run g_up;

/* ---- processes ------------------------------------------------------------------ */

static void sleep_ms(unsigned ms)
{
    usleep((useconds_t)ms * 1000);
}

/* Reads a small file (/proc files report a size of 0, so tst_file_read does
 * not fit); false if it cannot be read or is empty. */
static bool read_small(const char *path, char *buf, size_t size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    size_t n = 0;
    ssize_t got;
    while (n < size - 1 && (got = read(fd, buf + n, size - 1 - n)) > 0)
        n += (size_t)got;
    close(fd);
    buf[n] = '\0';
    return n > 0;
}

/* The parent of a live process; false when it is gone or a zombie. */
static bool proc_parent(pid_t pid, pid_t *ppid)
{
    char path[64], stat[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    if (!read_small(path, stat, sizeof stat))
        return false;
    const char *p = strrchr(stat, ')'); /* the name before it may hold anything */
    char state;
    int parent;
    if (!p || sscanf(p + 1, " %c %d", &state, &parent) != 2 || state == 'Z' || state == 'X')
        return false;
    *ppid = parent;
    return true;
}

/* A process's arguments joined by spaces; false when it has none (a zombie). */
static bool proc_cmdline(pid_t pid, char *buf, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    size_t n = 0;
    ssize_t got;
    while (n < size - 1 && (got = read(fd, buf + n, size - 1 - n)) > 0)
        n += (size_t)got;
    close(fd);
    for (size_t i = 0; i < n; i++)
        if (buf[i] == '\0')
            buf[i] = ' ';
    buf[n] = '\0';
    return n > 0;
}

/* True while pid is a process that has not exited (a zombie has). */
static bool alive(pid_t pid)
{
    pid_t ppid;
    return proc_parent(pid, &ppid);
}

/* Lists the live processes; calls fn for each until it returns false. */
static void each_process(bool (*fn)(pid_t pid, void *ctx), void *ctx)
{
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0)
            continue;
        if (!fn((pid_t)pid, ctx))
            break;
    }
    closedir(d);
}

typedef struct sweep_ctx {
    const char *needle;
    bool kill; /* false: only count */
    int found;
} sweep_ctx;

static bool sweep_one(pid_t pid, void *ctx)
{
    sweep_ctx *s = ctx;
    char cmd[4096];
    if (pid != getpid() && proc_cmdline(pid, cmd, sizeof cmd) && strstr(cmd, s->needle)) {
        if (s->kill)
            kill(pid, SIGKILL);
        s->found++;
    }
    return true;
}

/* How many live processes name `needle` on their command line. */
static int naming(const char *needle)
{
    sweep_ctx s = {needle, false, 0};
    each_process(sweep_one, &s);
    return s.found;
}

/* Kills every process whose command line contains `needle`, until none is
 * left (a supervisor killed in one round cannot restart anything after). */
static void sweep(const char *needle)
{
    for (int round = 0; round < 50; round++) {
        sweep_ctx s = {needle, true, 0};
        each_process(sweep_one, &s);
        if (s.found == 0)
            return;
        sleep_ms(20);
    }
    fprintf(stderr, "test_up: processes naming %s would not die\n", needle);
}

/* Runs at exit of a test's process, however the test ended. */
static void leftovers_kill(void)
{
    if (g_up.pid > 0) {
        kill(g_up.pid, SIGKILL);
        waitpid(g_up.pid, NULL, 0);
        tst_child_untrack(g_up.pid);
        g_up.pid = 0;
    }
    if (g_root[0])
        sweep(g_root);
}

typedef struct kids_ctx {
    pid_t parent;
    const char *needle; /* NULL: any */
    pid_t pids[MAX_KIDS];
    int n;
} kids_ctx;

static bool kid_one(pid_t pid, void *ctx)
{
    kids_ctx *k = ctx;
    pid_t ppid;
    char cmd[4096];
    if (!proc_parent(pid, &ppid) || ppid != k->parent)
        return true;
    if (k->needle && (!proc_cmdline(pid, cmd, sizeof cmd) || !strstr(cmd, k->needle)))
        return true;
    k->pids[k->n++] = pid;
    return k->n < MAX_KIDS;
}

/* The live children of `parent` whose command line contains `needle` (NULL:
 * all of them), at most MAX_KIDS. */
static int kids(pid_t parent, const char *needle, pid_t out[MAX_KIDS])
{
    kids_ctx k = {.parent = parent, .needle = needle};
    each_process(kid_one, &k);
    memcpy(out, k.pids, sizeof k.pids);
    return k.n;
}

/* The one child of `parent` whose command line contains `needle`; 0 if none,
 * -1 if several. */
static pid_t kid(pid_t parent, const char *needle)
{
    pid_t pids[MAX_KIDS];
    int n = kids(parent, needle, pids);
    return n == 0 ? 0 : n == 1 ? pids[0] : -1;
}

/* ---- running guild up ----------------------------------------------------------- */

/* The environment minus what would point guild up elsewhere. Owned by
 * environ; the array itself is static. */
static char *const *clean_env(void)
{
    static char *env[1024];
    static const char *const drop[] = {"GUILD_NATS_URL=",    "GUILD_DATA=",           "GUILD_DEV=",
                                       "GUILD_ADMIN_EMAIL=", "GUILD_ADMIN_PASSWORD=", NULL};
    int n = 0;
    for (char **e = environ; *e && n < 1023; e++) {
        bool keep = true;
        for (int i = 0; drop[i]; i++)
            if (strncmp(*e, drop[i], strlen(drop[i])) == 0)
                keep = false;
        if (keep)
            env[n++] = *e;
    }
    env[n] = NULL;
    return env;
}

/* Starts `guild <lead...> <args...>` (each list NULL-terminated) with its
 * stdout and stderr in <g_dir>/<name>.out and .err. */
static void guild_start(up_run *u, const char *name, const char *const *lead,
                        const char *const *args)
{
    const char *bin = getenv("GUILD_GUILD_BIN");
    ck_assert_msg(bin && *bin, "GUILD_GUILD_BIN must be set (ctest sets it)");
    memset(u, 0, sizeof *u);
    snprintf(u->out_path, sizeof u->out_path, "%s/%s.out", g_dir, name);
    snprintf(u->err_path, sizeof u->err_path, "%s/%s.err", g_dir, name);
    const char *argv[24] = {bin};
    int argc = 1;
    for (int i = 0; lead[i]; i++)
        argv[argc++] = lead[i];
    for (int i = 0; args[i]; i++)
        argv[argc++] = args[i];
    argv[argc] = NULL;
    char *const *env = clean_env();
    int out = open(u->out_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    int err = open(u->err_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ck_assert_msg(out >= 0 && err >= 0, "cannot create %s: %s", u->out_path, strerror(errno));
    pid_t pid = tst_spawn(bin, (char *const *)argv, env, out, err);
    ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
    close(out);
    close(err);
    u->pid = pid;
    tst_child_track(pid);
}

/* Starts `guild up --data <g_data> <args...>`, as guild_start. */
static void up_start(up_run *u, const char *name, const char *const *args)
{
    guild_start(u, name, (const char *const[]){"up", "--data", g_data, NULL}, args);
}

/* Reaps guild up if it has exited; true if it has. */
static bool up_reaped(up_run *u)
{
    if (u->pid <= 0)
        return true;
    int st;
    pid_t w = waitpid(u->pid, &st, WNOHANG);
    if (w == u->pid) {
        u->status = st;
        tst_child_untrack(u->pid);
        u->pid = 0;
        return true;
    }
    return false;
}

/* Waits up to timeout_ms for guild up to exit; true if it did. */
static bool up_wait(up_run *u, int timeout_ms)
{
    uint64_t deadline = guild_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    while (!up_reaped(u)) {
        if (guild_mono_ns() >= deadline)
            return false;
        sleep_ms(20);
    }
    return true;
}

/* Its exit status, or -1 when it was killed by a signal. */
static int up_exit_code(const up_run *u)
{
    return WIFEXITED(u->status) ? WEXITSTATUS(u->status) : -1;
}

/* What guild up (and its children) wrote so far; owned by the caller. */
static char *text_of(const char *path)
{
    char *text = (char *)tst_file_read(path, NULL);
    if (!text)
        text = strdup(""); /* nothing written yet */
    ck_assert_ptr_nonnull(text);
    return text;
}

/* Waits until guild up's stdout contains `needle`; false on timeout or if
 * it exited first. */
static bool up_wait_output(up_run *u, const char *needle, int timeout_ms)
{
    uint64_t deadline = guild_mono_ns() + (uint64_t)timeout_ms * 1000000u;
    for (;;) {
        char *out = text_of(u->out_path);
        bool found = strstr(out, needle) != NULL;
        free(out);
        if (found)
            return true;
        if (up_reaped(u) || guild_mono_ns() >= deadline)
            return false;
        sleep_ms(50);
    }
}

/* Fails the test, showing what guild up printed. */
#define ck_assert_output(u, cond, what)                                                            \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            char *out_ = text_of((u)->out_path);                                                   \
            char *err_ = text_of((u)->err_path);                                                   \
            ck_abort_msg("%s\n--- stdout:\n%s--- stderr:\n%s", (what), out_, err_);                \
        }                                                                                          \
    } while (0)

/* ---- NATS ------------------------------------------------------------------------ */

/* A loopback port nothing listened on a moment ago. */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* True if something accepts a TCP connection on 127.0.0.1:port. */
static bool port_accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static natsConnection *nats_connect(const char *url)
{
    natsOptions *o = NULL;
    natsConnection *nc = NULL;
    g_nats_used = true;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, url);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, 2000);
    if (s == NATS_OK)
        s = natsConnection_Connect(&nc, o);
    natsOptions_Destroy(o);
    ck_assert_msg(s == NATS_OK, "connect to %s: %s", url, natsStatus_GetText(s));
    return nc;
}

/* Sends $SRV.PING.<name> and copies the id of the instance that answered;
 * false when none answered within a second. */
static bool ping_id(natsConnection *nc, const char *name, char *id, size_t size)
{
    char subject[96];
    snprintf(subject, sizeof subject, "$SRV.PING.%s", name);
    natsMsg *reply = NULL;
    if (natsConnection_RequestString(&reply, nc, subject, "", 1000) != NATS_OK)
        return false;
    json_t *doc = json_loadb(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), 0, NULL);
    const char *got = json_string_value(json_object_get(doc, "id"));
    const char *who = json_string_value(json_object_get(doc, "name"));
    bool ok = got && who && strcmp(who, name) == 0;
    if (ok)
        snprintf(id, size, "%s", got);
    json_decref(doc);
    natsMsg_Destroy(reply);
    return ok;
}

/* The pid in guild up's "<name> ready (pid N)" line; 0 if there is none. */
static pid_t ready_pid(const up_run *u, const char *name)
{
    char needle[64];
    snprintf(needle, sizeof needle, "guild: %s ready (pid ", name);
    char *out = text_of(u->out_path);
    const char *p = strstr(out, needle);
    int pid = 0;
    if (!p || sscanf(p + strlen(needle), "%d)", &pid) != 1)
        pid = 0;
    free(out);
    return (pid_t)pid;
}

/* ---- fixtures -------------------------------------------------------------------- */

static void root_setup(void)
{
    tst_base_setup();
    char *dir = tst_dir_new("up");
    snprintf(g_root, sizeof g_root, "%s", dir);
    free(dir);
}

/* In the runner: whatever a test that timed out left behind. */
static void root_teardown(void)
{
    sweep(g_root);
    tst_base_teardown();
}

static void test_setup(void)
{
    atexit(leftovers_kill);
    snprintf(g_dir, sizeof g_dir, "%s/t-XXXXXX", g_root);
    ck_assert_ptr_nonnull(mkdtemp(g_dir));
    snprintf(g_data, sizeof g_data, "%s/data", g_dir);
}

static void test_teardown(void)
{
    natsConnection_Destroy(g_nc);
    g_nc = NULL;
    if (g_nats_used)
        nats_CloseAndWait(5000);
    leftovers_kill();
}

/* ---- refusing a port -------------------------------------------------------------- */

START_TEST(test_a_port_in_use_is_refused_before_anything_starts)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ck_assert_int_ge(lfd, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ck_assert_int_eq(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    ck_assert_int_eq(listen(lfd, 8), 0);
    ck_assert_int_eq(getsockname(lfd, (struct sockaddr *)&a, &len), 0);
    char port[16];
    snprintf(port, sizeof port, "%d", ntohs(a.sin_port));

    up_start(&g_up, "up", (const char *const[]){"--port", port, NULL});
    ck_assert_output(&g_up, up_wait(&g_up, REFUSE_TIMEOUT_MS),
                     "guild up on a port in use did not exit within 5 s");
    ck_assert_output(&g_up, up_exit_code(&g_up) == 1, "guild up did not exit with status 1");
    char want[128];
    snprintf(want, sizeof want, "guild: port %s on 127.0.0.1 is in use", port);
    char *err = text_of(g_up.err_path);
    ck_assert_msg(strstr(err, want), "stderr lacks \"%s\":\n%s", want, err);
    free(err);

    /* Nothing was started: no server store, no process naming the data
     * dir, and nobody knocked on the listening socket. */
    char nats_dir[700];
    snprintf(nats_dir, sizeof nats_dir, "%s/nats", g_data);
    struct stat sb;
    ck_assert_msg(stat(nats_dir, &sb) != 0 && errno == ENOENT, "%s was made", nats_dir);
    int left = naming(g_data);
    ck_assert_msg(left == 0, "%d processes naming %s were still running", left, g_data);
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    ck_assert_msg(poll(&p, 1, 0) == 0, "something connected to the port in use");
    close(lfd);
}
END_TEST

/* guild up waits for its own nats-server to say it is ready: one that
 * exits on start is reported with the last line of its log, at once,
 * rather than guild up connecting to whatever holds the port. */
START_TEST(test_a_nats_server_that_exits_on_start_is_reported)
{
    char path[800];
    mkdir(g_data, 0755);
    snprintf(path, sizeof path, "%s/nats", g_data);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    /* JetStream's store directory is a file: nats-server refuses to start. */
    snprintf(path, sizeof path, "%s/nats/jetstream", g_data);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fclose(f);

    uint64_t t0 = guild_mono_ns();
    up_start(&g_up, "up", (const char *const[]){NULL});
    ck_assert_output(&g_up, up_wait(&g_up, REFUSE_TIMEOUT_MS),
                     "guild up with a nats-server that cannot start did not exit within 5 s");
    ck_assert_output(&g_up, up_exit_code(&g_up) == 1, "guild up did not exit with status 1");
    char *out = text_of(g_up.out_path);
    const char *said = strstr(out, "guild: nats-server exited (status 1) on start: ");
    ck_assert_msg(said, "stdout does not report nats-server's exit:\n%s", out);
    ck_assert_msg(!strstr(said, "(nothing in its log)") && strstr(said, "JetStream"),
                  "the report lacks the log's last line:\n%s", out);
    ck_assert_msg(!strstr(out, "ready"), "something was called ready:\n%s", out);
    free(out);
    uint64_t took_ms = (guild_mono_ns() - t0) / 1000000u;
    ck_assert_msg(took_ms < REFUSE_TIMEOUT_MS, "took %llu ms", (unsigned long long)took_ms);
    int left = naming(g_data);
    ck_assert_msg(left == 0, "%d processes naming %s were still running", left, g_data);
}
END_TEST

START_TEST(test_a_port_that_is_not_a_number_is_refused)
{
    static const char *const bad[] = {"abc", "0", "65536", "4222x", NULL};
    for (int i = 0; bad[i]; i++) {
        char name[32];
        snprintf(name, sizeof name, "up-%d", i);
        up_start(&g_up, name, (const char *const[]){"--port", bad[i], NULL});
        ck_assert_output(&g_up, up_wait(&g_up, REFUSE_TIMEOUT_MS),
                         "guild up with a bad --port did not exit within 5 s");
        ck_assert_output(&g_up, up_exit_code(&g_up) == 2, "guild up did not exit with status 2");
        char want[128];
        snprintf(want, sizeof want, "--port %s is not a port number", bad[i]);
        char *err = text_of(g_up.err_path);
        char *out = text_of(g_up.out_path);
        ck_assert_msg(strstr(err, want), "stderr lacks \"%s\":\n%s", want, err);
        ck_assert_msg(out[0] == '\0', "--port %s: stdout is not empty:\n%s", bad[i], out);
        free(err);
        free(out);
    }
    char nats_dir[700];
    snprintf(nats_dir, sizeof nats_dir, "%s/nats", g_data);
    struct stat sb;
    ck_assert_msg(stat(nats_dir, &sb) != 0 && errno == ENOENT, "%s was made", nats_dir);
}
END_TEST

/* A command through what guild up started: registers and logs in `email`
 * (identity), then creates its profile (talent); the profile's id to out. */
static void signed_up_with_profile(const char *email, tst_user *u, char out[64])
{
    ck_assert_int_eq(tst_guild_signup(g_nc, email, false, u), 0);
    json_t *body = json_pack("{s:s, s:s}", "user_id", u->user_id, "headline", "Engineer");
    tst_call call = {.token = u->access_token};
    tst_reply r;
    ck_assert_int_eq(tst_guild_command(g_nc, "talent", "create_profile", body, &call, &r), 0);
    ck_assert_msg(r.status == 200, "create_profile: %d %s", r.status, r.raw);
    snprintf(out, 64, "%s", tst_reply_data_str(&r, "talent_id"));
    tst_reply_release(&r);
    json_decref(body);
}

/* ---- serving ---------------------------------------------------------------------- */

/* Starts guild up on a free port and waits for its "up:" line; *port and url
 * receive where NATS listens, and g_nc is connected there. */
static void up_serving(int *port, char url[64])
{
    *port = free_port();
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", *port);
    snprintf(url, 64, "nats://127.0.0.1:%d", *port);
    up_start(&g_up, "up", (const char *const[]){"--port", port_s, NULL});
    char want[1024];
    snprintf(want, sizeof want, "guild: up: NATS %s, data in %s. Ctrl-C stops.\n", url, g_data);
    ck_assert_output(&g_up, up_wait_output(&g_up, want, START_TIMEOUT_MS),
                     "no \"up:\" line naming the URL and data dir within 30 s");
    g_nc = nats_connect(url);
}

/* Sends SIGINT and checks what a user sees: exit 0 within within_ms,
 * "stopped" printed, the port closed and each of the n pids gone. */
static void up_interrupt(const pid_t *pids, int n, int port, int within_ms)
{
    natsConnection_Destroy(g_nc);
    g_nc = NULL;
    ck_assert_int_eq(kill(g_up.pid, SIGINT), 0);
    ck_assert_output(&g_up, up_wait(&g_up, within_ms), "SIGINT did not stop guild up in time");
    ck_assert_output(&g_up, up_exit_code(&g_up) == 0, "guild up did not exit with status 0");
    ck_assert_output(&g_up, up_wait_output(&g_up, "guild: stopped\n", 0), "no \"stopped\" line");
    ck_assert_msg(!port_accepts(port), "port %d still accepts connections", port);
    for (int i = 0; i < n; i++)
        ck_assert_msg(!alive(pids[i]), "child %d outlived guild up", (int)pids[i]);
    char path[700];
    snprintf(path, sizeof path, "%s/nats.url", g_data);
    ck_assert_msg(access(path, F_OK) != 0, "%s still names the stopped server", path);
}

/* ---- guild cmd's options ------------------------------------------------------------ */

/* A malformed --expect or --timeout is refused before anything is sent:
 * exit status 2, the option named, and no attempt to reach NATS (the URL
 * given has no server). */
START_TEST(test_guild_cmd_refuses_a_malformed_option)
{
    static const char *const bad[][3] = {
        {"--expect", "abc", "--expect abc is not a version"},
        {"--expect", "-1", "--expect -1 is not a version"},
        {"--expect", "18446744073709551615", "--expect 18446744073709551615 is not a version"},
        {"--timeout", "abc", "--timeout abc is not milliseconds"},
        {"--timeout", "0", "--timeout 0 is not milliseconds"},
        {"--timeout", "3600001", "--timeout 3600001 is not milliseconds"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "cmd-%zu", i);
        guild_start(&g_up, name,
                    (const char *const[]){"cmd", "--nats", "nats://127.0.0.1:9", "talent",
                                          "set_rate", "{}", NULL},
                    (const char *const[]){bad[i][0], bad[i][1], NULL});
        ck_assert_output(&g_up, up_wait(&g_up, REFUSE_TIMEOUT_MS),
                         "guild cmd with a bad option did not exit within 5 s");
        ck_assert_output(&g_up, up_exit_code(&g_up) == 2, "guild cmd did not exit with status 2");
        char *err = text_of(g_up.err_path);
        ck_assert_msg(strstr(err, bad[i][2]), "stderr lacks \"%s\":\n%s", bad[i][2], err);
        ck_assert_msg(!strstr(err, "NATS"), "guild cmd tried NATS:\n%s", err);
        free(err);
    }
    /* The largest values are taken: the client goes on to NATS, which is
     * not there. */
    guild_start(
        &g_up, "cmd-max",
        (const char *const[]){"cmd", "--nats", "nats://127.0.0.1:9", "talent", "set_rate", "{}",
                              NULL},
        (const char *const[]){"--expect", "18446744073709551614", "--timeout", "3600000", NULL});
    ck_assert_output(&g_up, up_wait(&g_up, REFUSE_TIMEOUT_MS),
                     "guild cmd with the largest option values did not exit within 5 s");
    char *err = text_of(g_up.err_path);
    ck_assert_msg(strstr(err, "cannot reach NATS at nats://127.0.0.1:9"),
                  "the largest values were not taken:\n%s", err);
    free(err);
}
END_TEST

START_TEST(test_up_serves_commands_until_interrupted)
{
    int port;
    char url[64];
    up_serving(&port, url);

    char *out = text_of(g_up.out_path);
    char want[256];
    snprintf(want, sizeof want, "guild: nats-server ready on %s (pid ", url);
    ck_assert_msg(strstr(out, want), "stdout lacks \"%s\":\n%s", want, out);
    free(out);

    /* The URL is where other commands will look for it. */
    char path[700];
    snprintf(path, sizeof path, "%s/nats.url", g_data);
    char *saved = text_of(path);
    snprintf(want, sizeof want, "%s\n", url);
    ck_assert_str_eq(saved, want);
    free(saved);

    /* Each component answers its ping and is the child the output names. */
    static const char *const names[] = {"identity", "talent", "projector", NULL};
    static const char *const cmdlines[] = {" serve identity ", " serve talent ", " project all "};
    pid_t pids[MAX_KIDS];
    int n = 0;
    for (int i = 0; names[i]; i++) {
        char id[128];
        ck_assert_msg(ping_id(g_nc, names[i], id, sizeof id), "%s does not answer its ping",
                      names[i]);
        pid_t pid = kid(g_up.pid, cmdlines[i]);
        ck_assert_msg(pid > 0, "guild up has no single child running%s", cmdlines[i]);
        ck_assert_int_eq(ready_pid(&g_up, names[i]), pid);
        pids[n++] = pid;
    }
    pid_t server = kid(g_up.pid, "nats-server ");
    ck_assert_msg(server > 0, "guild up has no nats-server child");
    pids[n++] = server;

    /* A command through the services it started. */
    tst_user alice;
    char profile[64];
    signed_up_with_profile("alice@example.com", &alice, profile);

    /* The broker carries a body over guild's 1 MiB limit to the service,
     * which refuses it with invalid_request (nats-server's own default
     * would have the client library refuse it instead). */
    size_t big = 1024 * 1024 + 1;
    char *body = malloc(big);
    ck_assert_ptr_nonnull(body);
    memset(body, ' ', big);
    body[0] = '{';
    body[big - 1] = '}';
    tst_call call = {.token = alice.access_token};
    tst_reply r;
    tst_guild_request(g_nc, "guild.cmd.talent.add_skill", body, big, &call, &r);
    ck_assert_msg(r.nats == NATS_OK, "no reply to a body of 1 MiB + 1: %s",
                  natsStatus_GetText(r.nats));
    ck_assert_int_eq(r.status, 400);
    ck_assert_str_eq(tst_reply_code(&r), "invalid_request");
    tst_reply_release(&r);
    free(body);

    /* A query nothing serves: NATS says so at once, and guild qry says
     * what that means, with exit status 2. */
    up_run q;
    guild_start(&q, "qry-unknown",
                (const char *const[]){"qry", "--nats", url, "talent", "frobnicate", NULL},
                (const char *const[]){NULL});
    ck_assert_output(&q, up_wait(&q, REFUSE_TIMEOUT_MS), "guild qry did not exit within 5 s");
    ck_assert_output(&q, up_exit_code(&q) == 2, "guild qry did not exit with status 2");
    char *err = text_of(q.err_path);
    ck_assert_msg(strstr(err, "no reply on guild.qry.talent.frobnicate: No responders available "
                              "for request (nothing listens there: an unknown domain or query, "
                              "or its service is not running)"),
                  "%s", err);
    free(err);

    up_interrupt(pids, n, port, STOP_TIMEOUT_MS);
}
END_TEST

/* ---- restarting ------------------------------------------------------------------- */

START_TEST(test_a_killed_service_is_restarted)
{
    int port;
    char url[64];
    up_serving(&port, url);

    tst_user bob;
    char profile[64];
    signed_up_with_profile("bob@example.com", &bob, profile);
    tst_call call = {.token = bob.access_token};
    tst_reply r;

    char old_id[128], identity_id[128];
    ck_assert(ping_id(g_nc, "talent", old_id, sizeof old_id));
    ck_assert(ping_id(g_nc, "identity", identity_id, sizeof identity_id));
    pid_t old = kid(g_up.pid, " serve talent ");
    ck_assert_msg(old > 0, "guild up has no single talent child");
    pid_t identity = kid(g_up.pid, " serve identity ");
    ck_assert_int_eq(kill(old, SIGKILL), 0);

    /* Within RESTART_TIMEOUT_MS: guild up says so, and another talent
     * process, with another service id, answers. */
    uint64_t deadline = guild_mono_ns() + (uint64_t)RESTART_TIMEOUT_MS * 1000000u;
    char new_id[128] = "";
    pid_t now = 0;
    for (;;) {
        now = kid(g_up.pid, " serve talent ");
        if (now > 0 && now != old && ping_id(g_nc, "talent", new_id, sizeof new_id) &&
            strcmp(new_id, old_id) != 0)
            break;
        ck_assert_output(&g_up, !up_reaped(&g_up), "guild up exited");
        ck_assert_output(&g_up, guild_mono_ns() < deadline,
                         "no new talent process answered within 15 s of the kill");
        sleep_ms(100);
    }
    ck_assert_output(&g_up,
                     up_wait_output(&g_up, "guild: talent exited (signal 9); restarting in ", 0),
                     "guild up did not say talent exited");
    ck_assert_msg(!alive(old), "the killed talent process %d is still there", (int)old);

    /* Only talent was restarted, and the new one has the old one's data. */
    char id[128];
    ck_assert(ping_id(g_nc, "identity", id, sizeof id));
    ck_assert_str_eq(id, identity_id);
    ck_assert_int_eq(kid(g_up.pid, " serve identity "), identity);
    json_t *body = json_pack("{s:s, s:s, s:i}", "talent_id", profile, "skill", "TIG", "level", 4);
    ck_assert_int_eq(tst_guild_command(g_nc, "talent", "add_skill", body, &call, &r), 0);
    ck_assert_msg(r.status == 200, "add_skill after the restart: %d %s", r.status, r.raw);
    tst_reply_release(&r);
    json_decref(body);

    pid_t pids[MAX_KIDS];
    int n = kids(g_up.pid, NULL, pids);
    ck_assert_int_eq(n, 4); /* nats-server, identity, talent, projector */
    up_interrupt(pids, n, port, STOP_TIMEOUT_MS);
}
END_TEST

/* A child that keeps dying young waits longer each time before it is
 * started again; the supervisor still acts on Ctrl-C at once meanwhile. */
START_TEST(test_ctrl_c_during_a_restart_pause_stops_at_once)
{
    int port;
    char url[64];
    up_serving(&port, url);
    for (int i = 0; i < 4; i++) { /* pauses of 200, 400, 800, then 1600 ms */
        uint64_t deadline = guild_mono_ns() + (uint64_t)RESTART_TIMEOUT_MS * 1000000u;
        pid_t t;
        while ((t = kid(g_up.pid, " serve talent ")) <= 0) {
            ck_assert_output(&g_up, guild_mono_ns() < deadline, "talent was not started again");
            sleep_ms(20);
        }
        ck_assert_int_eq(kill(t, SIGKILL), 0);
        while (alive(t))
            sleep_ms(10);
    }
    ck_assert_output(&g_up, up_wait_output(&g_up, "restarting in 1600 ms", 5000),
                     "no fourth, longer pause");
    pid_t pids[MAX_KIDS];
    int n = kids(g_up.pid, NULL, pids); /* talent is not among them: it waits */
    ck_assert_int_eq(n, 3);
    up_interrupt(pids, n, port, 1000); /* under the 1.6 s pause */
}
END_TEST

/* A supervisor that dies without stopping its children (kill -9) takes
 * them with it: each child asked the kernel for SIGTERM at its parent's
 * death, and stops as it does on Ctrl-C. */
START_TEST(test_children_stop_when_up_is_killed)
{
    int port;
    char url[64];
    up_serving(&port, url);
    pid_t pids[MAX_KIDS];
    int n = kids(g_up.pid, NULL, pids);
    ck_assert_int_eq(n, 4); /* nats-server, identity, talent, projector */
    natsConnection_Destroy(g_nc);
    g_nc = NULL;

    ck_assert_int_eq(kill(g_up.pid, SIGKILL), 0);
    ck_assert(up_wait(&g_up, STOP_TIMEOUT_MS));
    uint64_t deadline = guild_mono_ns() + (uint64_t)STOP_TIMEOUT_MS * 1000000u;
    for (int i = 0; i < n; i++) {
        char cmd[512] = "";
        proc_cmdline(pids[i], cmd, sizeof cmd);
        while (alive(pids[i]) && guild_mono_ns() < deadline)
            sleep_ms(50);
        ck_assert_msg(!alive(pids[i]), "child %d (%.200s) outlived a killed guild up by 20 s",
                      (int)pids[i], cmd);
    }
    ck_assert_msg(!port_accepts(port), "port %d still accepts connections", port);
}
END_TEST

/* ---- suite ------------------------------------------------------------------------ */

static Suite *up_suite(void)
{
    Suite *s = suite_create("cmd/up");
    TCase *tc = tcase_create("up");
    tcase_add_unchecked_fixture(tc, root_setup, root_teardown);
    tcase_add_checked_fixture(tc, test_setup, test_teardown);
    tcase_set_timeout(tc, 90);
    tcase_add_test(tc, test_a_port_in_use_is_refused_before_anything_starts);
    tcase_add_test(tc, test_a_port_that_is_not_a_number_is_refused);
    tcase_add_test(tc, test_guild_cmd_refuses_a_malformed_option);
    tcase_add_test(tc, test_a_nats_server_that_exits_on_start_is_reported);
    tcase_add_test(tc, test_up_serves_commands_until_interrupted);
    tcase_add_test(tc, test_a_killed_service_is_restarted);
    tcase_add_test(tc, test_children_stop_when_up_is_killed);
    tcase_add_test(tc, test_ctrl_c_during_a_restart_pause_stops_at_once);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tst_run_suite(up_suite());
}
