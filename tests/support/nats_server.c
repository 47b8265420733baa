/*
 * nats_server.c — starting, crashing and restarting a real nats-server for
 * tests (see nats_server.h).
 *
 * Sections (each server tracked as a child, children.h): finding the
 * program and a free port; fork/exec; waiting until the server is ready;
 * the public calls; client connections.
 */
#include "tests/support/nats_server.h"

#include "tests/support/tmpdir.h"

#include <arpa/inet.h>
#include "tests/support/children.h"

#include <errno.h>
#include <fcntl.h>
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
#include <time.h>
#include <unistd.h>

#define READY_TIMEOUT_MS 5000
#define STOP_TIMEOUT_MS 5000
#define START_ATTEMPTS 5

/* ---- finding the program and a free port --------------------------------- */

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

/* Resolves the server program to a path before forking: after fork only
 * async-signal-safe calls are allowed, and a PATH search is not one. */
static int find_program(char *out, size_t size)
{
    const char *env = getenv("GUILD_NATS_SERVER");
    if (env && *env) {
        snprintf(out, size, "%s", env);
        return access(out, X_OK) == 0 ? 0 : -1;
    }
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
    while (*path) {
        const char *end = strchr(path, ':');
        size_t n = end ? (size_t)(end - path) : strlen(path);
        if (n > 0) {
            snprintf(out, size, "%.*s/nats-server", (int)n, path);
            if (access(out, X_OK) == 0)
                return 0;
        }
        path += n + (end ? 1 : 0);
    }
    return -1;
}

/* A port that was free a moment ago: the kernel picks one for a socket bound
 * to port 0, which is closed again. Another process may take it before the
 * server binds it; callers retry with another port. */
static int pick_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    close(fd);
    return port;
}

/* ---- fork/exec ----------------------------------------------------------- */

static pid_t spawn(const char *program, int port, const char *store_dir)
{
    char port_s[16], log_path[600];
    snprintf(port_s, sizeof port_s, "%d", port);
    snprintf(log_path, sizeof log_path, "%s/nats-server.log", store_dir);
    char *const argv[] = {
        (char *)"nats-server", (char *)"-js", (char *)"-a",  (char *)"127.0.0.1",
        (char *)"-p",          port_s,        (char *)"-sd", (char *)store_dir,
        (char *)"-l",          log_path,      NULL,
    };
    pid_t pid = tst_spawn(program, argv, NULL, -1, -1);
    if (pid < 0)
        perror("nats_server: fork");
    return pid;
}

/* ---- waiting until the server is ready ------------------------------------ */

/* Connects to the port and reads the server's INFO line; true if it came
 * and announces JetStream. */
static bool probe(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = false;
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        char buf[4096];
        size_t n = 0;
        uint64_t deadline = now_ms() + 1000;
        while (n < sizeof buf - 1 && now_ms() < deadline) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (poll(&p, 1, 50) <= 0)
                continue;
            ssize_t r = read(fd, buf + n, sizeof buf - 1 - n);
            if (r <= 0)
                break;
            n += (size_t)r;
            buf[n] = '\0';
            if (strstr(buf, "\r\n"))
                break;
        }
        buf[n] = '\0';
        ok = strncmp(buf, "INFO ", 5) == 0 && strstr(buf, "\"jetstream\":true") != NULL;
    }
    close(fd);
    return ok;
}

/* Waits until the server answers; -1 if it exited (its pid is then reaped
 * and cleared) or did not answer in time (it keeps running). */
static int wait_ready(tst_nats *srv)
{
    uint64_t deadline = now_ms() + READY_TIMEOUT_MS;
    for (;;) {
        int status;
        pid_t w = waitpid(srv->pid, &status, WNOHANG);
        if (w == srv->pid) {
            tst_child_untrack(srv->pid);
            srv->pid = 0;
            return -1;
        }
        if (probe(srv->port))
            return 0;
        if (now_ms() >= deadline)
            return -1;
        sleep_ms(10);
    }
}

/* Starts the program on srv->port and srv->store_dir; 0 once it is ready.
 * On failure no server is left running. */
static int launch(tst_nats *srv)
{
    char program[1024];
    if (find_program(program, sizeof program) != 0) {
        fprintf(stderr, "nats_server: nats-server not found (PATH or GUILD_NATS_SERVER)\n");
        return -1;
    }
    srv->pid = spawn(program, srv->port, srv->store_dir);
    if (srv->pid < 0) {
        srv->pid = 0;
        return -1;
    }
    tst_child_track(srv->pid);
    if (wait_ready(srv) == 0)
        return 0;
    if (srv->pid > 0)
        tst_nats_kill(srv);
    return -1;
}

/* Signals the server and reaps it; SIGKILL after STOP_TIMEOUT_MS. */
static int terminate(tst_nats *srv, int sig)
{
    if (srv->pid <= 0)
        return 0;
    kill(srv->pid, sig);
    uint64_t deadline = now_ms() + STOP_TIMEOUT_MS;
    int rc = 0;
    for (;;) {
        pid_t w = waitpid(srv->pid, NULL, WNOHANG);
        if (w == srv->pid || (w < 0 && errno != EINTR))
            break;
        if (now_ms() >= deadline) {
            fprintf(stderr, "nats_server: pid %d ignored signal %d; killing it\n", (int)srv->pid,
                    sig);
            kill(srv->pid, SIGKILL);
            waitpid(srv->pid, NULL, 0);
            rc = -1;
            break;
        }
        sleep_ms(5);
    }
    tst_child_untrack(srv->pid);
    srv->pid = 0;
    return rc;
}

/* ---- the public calls ---------------------------------------------------- */

int tst_nats_start(tst_nats *srv)
{
    memset(srv, 0, sizeof *srv);
    char *dir = tst_dir_new("nats");
    snprintf(srv->store_dir, sizeof srv->store_dir, "%s", dir);
    free(dir);
    for (int attempt = 0; attempt < START_ATTEMPTS; attempt++) {
        srv->port = pick_free_port();
        if (srv->port <= 0) {
            perror("nats_server: no free port");
            break;
        }
        snprintf(srv->url, sizeof srv->url, "nats://127.0.0.1:%d", srv->port);
        if (launch(srv) == 0)
            return 0;
    }
    fprintf(stderr, "nats_server: could not start nats-server (log in %s/nats-server.log)\n",
            srv->store_dir);
    tst_dir_remove(srv->store_dir);
    srv->store_dir[0] = '\0';
    return -1;
}

int tst_nats_stop(tst_nats *srv)
{
    int rc = terminate(srv, SIGTERM);
    if (srv->store_dir[0] && tst_dir_remove(srv->store_dir) != 0)
        rc = -1;
    srv->store_dir[0] = '\0';
    return rc;
}

int tst_nats_kill(tst_nats *srv)
{
    return terminate(srv, SIGKILL);
}

int tst_nats_restart(tst_nats *srv)
{
    if (srv->port <= 0 || !srv->store_dir[0]) {
        fprintf(stderr, "nats_server: restart of a server that was never started\n");
        return -1;
    }
    if (srv->pid > 0)
        terminate(srv, SIGTERM);
    uint64_t deadline = now_ms() + READY_TIMEOUT_MS;
    do {
        if (launch(srv) == 0)
            return 0;
        sleep_ms(50);
    } while (now_ms() < deadline);
    fprintf(stderr, "nats_server: could not restart on port %d (log in %s/nats-server.log)\n",
            srv->port, srv->store_dir);
    return -1;
}

/* ---- client connections -------------------------------------------------- */

int tst_nats_connect(const tst_nats *srv, natsConnection **out)
{
    natsOptions *o = NULL;
    natsStatus s = natsOptions_Create(&o);
    if (s == NATS_OK)
        s = natsOptions_SetURL(o, srv->url);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(o, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(o, 25);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectJitter(o, 0, 0);
    if (s == NATS_OK)
        s = natsOptions_SetTimeout(o, 2000);
    if (s == NATS_OK)
        s = natsConnection_Connect(out, o);
    natsOptions_Destroy(o);
    if (s != NATS_OK) {
        fprintf(stderr, "nats_server: connect to %s: %s\n", srv->url, natsStatus_GetText(s));
        return -1;
    }
    return 0;
}

int tst_nats_js(natsConnection *nc, jsCtx **out)
{
    natsStatus s = natsConnection_JetStream(out, nc, NULL);
    if (s != NATS_OK) {
        fprintf(stderr, "nats_server: JetStream context: %s\n", natsStatus_GetText(s));
        return -1;
    }
    return 0;
}
