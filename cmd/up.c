/*
 * up.c — `guild up`: everything on one machine. Starts nats-server with
 * JetStream (unless --nats names one), then one process per service,
 * prints a line per component when it is ready, restarts a child that dies,
 * and on Ctrl-C stops the services first and the broker last.
 *
 * Children run in their own process groups so the terminal's Ctrl-C reaches
 * only this supervisor, which then stops them in order.
 */
#include "cmd.h"

#include "bus/conn.h"
#include "common/clock.h"
#include "common/text.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHILDREN 16
#define STOP_WAIT_MS 15000

typedef struct child {
    char name[32];
    char *argv[16];
    int argc;
    pid_t pid;
    unsigned restarts;
    uint64_t started_ns;
    uint64_t restart_ns; /* when to start it again; 0: not waiting to */
    char conf[1100];     /* nats-server: its configuration, written before each start */
} child;

/* What guild up starts after nats-server, in order: `guild <verb> <what>`. */
static const struct component {
    const char *name, *verb, *what, *ready; /* ready: said after "ready (pid N)" */
} components[] = {
    {"identity", "serve", "identity", ""},
    {"talent", "serve", "talent", ""},
    {"projector", "project", "all", ": read models and queries"},
};

static child children[MAX_CHILDREN];
static int n_children;
static child *nats_child;

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void say(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("guild: ");
    vprintf(fmt, ap);
    printf("\n");
    fflush(stdout);
    va_end(ap);
}

/* mkdir -p: the data directory may be several levels new. */
static void mkdir_p(const char *path)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        mkdir(buf, 0755);
        *p = '/';
    }
    mkdir(buf, 0755);
}

/* True if `port` on 127.0.0.1 can be bound; else errno says why. */
static bool port_free(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    bool ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    int why = errno;
    close(fd);
    errno = why;
    return ok;
}

static int any_free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
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

/* ---- our own nats-server ----
 * A port found free may be taken by another process before nats-server
 * binds it; nats-server then exits, and a connection to the port would
 * reach the other process. So guild up waits for its own server to say, in
 * its log, that it is ready, or to exit. */

#define NATS_START_TRIES 5 /* ports tried when guild up picks the port */
#define NATS_READY_MS 10000
#define UP_MAX_PAYLOAD (2 * 1024 * 1024) /* max_payload of the nats-server started here */

typedef enum { NATS_READY, NATS_EXITED, NATS_SLOW } nats_start;

/* The size of a file (0 when missing): where this run's log lines start. */
static long file_size(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : 0;
}

/* Reads the log after `from`: whether a line holds `text` (NULL: none is
 * looked for), and the last non-empty line into out (NULL: not kept). */
static bool log_read(const char *path, long from, const char *text, char *out, size_t size)
{
    if (out)
        out[0] = '\0';
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    char line[512];
    bool found = false;
    if (fseek(f, from, SEEK_SET) == 0)
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\r\n")] = '\0';
            found = found || (text && strstr(line, text));
            if (out && line[0])
                guild_copy(out, size, line);
        }
    fclose(f);
    return found;
}

/* Waits for the nats-server just started (pid) to log that it is ready, or
 * to exit (reaped here; *status says how). */
static nats_start nats_wait_ready(pid_t pid, const char *log, long from, int *status)
{
    for (int waited = 0; waited < NATS_READY_MS; waited += 20) {
        if (waitpid(pid, status, WNOHANG) == pid)
            return NATS_EXITED;
        if (log_read(log, from, "Server is ready", NULL, 0))
            return NATS_READY;
        usleep(20 * 1000);
    }
    return NATS_SLOW;
}

/* nats-server carries 1 MiB by default, exactly guild's body limit: a
 * bigger body would be refused by the broker or the client library instead
 * of getting guild's invalid_request. 2 MiB leaves room for headers.
 * Written before each start, so a restart finds it even if it was removed. */
static bool write_nats_conf(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f)
        return false;
    bool ok =
        fprintf(f, "# written by guild up at each start\nmax_payload: %d\n", UP_MAX_PAYLOAD) >= 0;
    if (fclose(f) != 0)
        ok = false;
    return ok;
}

static bool spawn(child *c)
{
    if (c->conf[0] && !write_nats_conf(c->conf))
        return false; /* errno says why */
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM); /* guild up killed: its children stop too */
        if (getppid() != parent)          /* it died before the line above */
            _exit(1);
        execvp(c->argv[0], c->argv);
        fprintf(stderr, "guild: cannot run %s: %s\n", c->argv[0], strerror(errno));
        _exit(127);
    }
    c->pid = pid;
    c->started_ns = guild_mono_ns();
    return true;
}

static child *add_child(const char *name)
{
    child *c = &children[n_children++];
    snprintf(c->name, sizeof c->name, "%s", name);
    return c;
}

static void arg(child *c, const char *a)
{
    c->argv[c->argc++] = strdup(a);
    c->argv[c->argc] = NULL;
}

static void args_clear(child *c)
{
    for (int i = 0; i < c->argc; i++)
        free(c->argv[i]);
    c->argc = 0;
    c->argv[0] = NULL;
}

/* True once Ctrl-C or SIGTERM has come (they stay blocked until the
 * supervisor's loop takes them). */
static bool stop_pending(void)
{
    sigset_t pending;
    return sigpending(&pending) == 0 &&
           (sigismember(&pending, SIGINT) == 1 || sigismember(&pending, SIGTERM) == 1);
}

/* Waits until a service answers $SRV.PING.<name>, or a stop is asked for. */
static bool wait_ready(natsConnection *nc, const char *name, int timeout_ms)
{
    char subject[96];
    snprintf(subject, sizeof subject, "$SRV.PING.%s", name);
    for (int waited = 0; waited < timeout_ms && !stop_pending(); waited += 250) {
        natsMsg *reply = NULL;
        uint64_t t0 = guild_mono_ns();
        if (natsConnection_RequestString(&reply, nc, subject, "", 250) == NATS_OK) {
            natsMsg_Destroy(reply);
            return true;
        }
        uint64_t spent_ms = (guild_mono_ns() - t0) / 1000000;
        if (spent_ms < 250)
            usleep((useconds_t)(250 - spent_ms) * 1000); /* no responders yet answers at once */
    }
    return false;
}

static void stop_child(child *c, int sig)
{
    if (c->pid <= 0)
        return;
    kill(c->pid, sig);
    for (int waited = 0; waited < STOP_WAIT_MS; waited += 50) {
        if (waitpid(c->pid, NULL, WNOHANG) == c->pid) {
            c->pid = 0;
            return;
        }
        usleep(50 * 1000);
    }
    kill(c->pid, SIGKILL);
    waitpid(c->pid, NULL, 0);
    c->pid = 0;
}

static void bootstrap_admin(natsConnection *nc)
{
    const char *email = getenv("GUILD_ADMIN_EMAIL");
    const char *password = getenv("GUILD_ADMIN_PASSWORD");
    if (!email || !password)
        return;
    json_t *body = json_pack("{s:s, s:s, s:s}", "email", email, "password", password,
                             "display_name", "Administrator");
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    natsMsg *reply = NULL;
    natsStatus s =
        natsConnection_RequestString(&reply, nc, "guild.cmd.identity.bootstrap_admin", text, 10000);
    free(text);
    if (s != NATS_OK) {
        say("administrator bootstrap got no answer: %s", natsStatus_GetText(s));
        return;
    }
    const char *status = bus_header(reply, BUS_H_STATUS);
    if (status && strcmp(status, "200") == 0)
        say("administrator %s created", email);
    else
        say("administrator bootstrap skipped (status %s)", status ? status : "?");
    natsMsg_Destroy(reply);
}

/* Reaps dead children and, unless stopping, schedules their restart, with
 * a growing pause when a child keeps dying young. The supervisor waits for
 * signals meanwhile: a Ctrl-C during a pause is acted on at once. */
static void reap(bool stopping)
{
    int st;
    pid_t pid;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        for (int i = 0; i < n_children; i++) {
            child *c = &children[i];
            if (c->pid != pid)
                continue;
            c->pid = 0;
            if (stopping)
                break;
            bool young = guild_mono_ns() - c->started_ns < 30ull * 1000000000;
            c->restarts = young ? c->restarts + 1 : 0;
            unsigned pause_ms = c->restarts > 5 ? 5000 : 100u << c->restarts;
            char ended[32];
            say("%s exited (%s); restarting in %u ms", c->name,
                guild_wait_text(st, ended, sizeof ended), pause_ms);
            c->restart_ns = guild_mono_ns() + (uint64_t)pause_ms * 1000000u;
        }
    }
}

/* Starts the children whose pause is over (a failed start is tried again
 * a second later); returns how long until the next one is due, in ns, or
 * 0 when none waits. */
static uint64_t restart_due(void)
{
    uint64_t now = guild_mono_ns(), next = 0;
    for (int i = 0; i < n_children; i++) {
        child *c = &children[i];
        if (!c->restart_ns)
            continue;
        if (c->restart_ns <= now) {
            c->restart_ns = 0;
            if (!spawn(c)) {
                say("cannot start %s again: %s; trying again in 1 s", c->name, strerror(errno));
                c->restart_ns = now + 1000000000u;
            }
        }
        if (c->restart_ns && (!next || c->restart_ns - now < next))
            next = c->restart_ns - now;
    }
    return next;
}

int cmd_up(int argc, char **argv)
{
    cmd_common c;
    bool external = getenv("GUILD_NATS_URL") || cmd_opt(argc, argv, "--nats");
    if ((argc = cmd_common_parse(&c, argc, argv)) < 0)
        return 2;
    for (int i = 1; i < argc; i++) {
        bool help = strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0;
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            i++;
            continue;
        }
        if (!help)
            fprintf(stderr, "guild up: unknown option %s\n", argv[i]);
        fprintf(help ? stdout : stderr,
                "usage: guild up [--data DIR] [--nats URL | --port N] [--dev]\n"
                "  starts nats-server (unless --nats names one), the identity and talent\n"
                "  services and the projector, with their data under DIR (default ./data),\n"
                "  and supervises them until Ctrl-C\n");
        return help ? 0 : 2;
    }
    const char *port_opt = cmd_opt(argc, argv, "--port");
    if (port_opt && external) {
        fprintf(stderr, "guild up: --port is the port of the nats-server guild up starts; with "
                        "--nats (or GUILD_NATS_URL) it starts none\n");
        return 2;
    }

    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGCHLD);
    sigprocmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int port = 0; /* of the nats-server started here; decided before anything is made */
    if (port_opt) {
        char *end = NULL;
        errno = 0;
        long p = strtol(port_opt, &end, 10);
        if (errno || end == port_opt || *end || p <= 0 || p > 65535) {
            fprintf(stderr, "guild up: --port %s is not a port number\n", port_opt);
            return 2;
        }
        port = (int)p;
        /* A server already on that port would take our connection and the
         * services would run against it: refuse instead. */
        if (!port_free(port)) {
            if (errno == EADDRINUSE)
                fprintf(stderr,
                        "guild: port %d on 127.0.0.1 is in use; choose another with --port, or "
                        "use the server there with --nats nats://127.0.0.1:%d\n",
                        port, port);
            else
                fprintf(stderr, "guild: port %d on 127.0.0.1 cannot be used: %s\n", port,
                        strerror(errno));
            return 1;
        }
    } else if (!external) {
        port = port_free(4222) ? 4222 : any_free_port();
        if (port < 0) {
            fprintf(stderr, "guild: no free port on 127.0.0.1 for nats-server\n");
            return 1;
        }
    }
    mkdir_p(c.data);
    char url[128];
    if (!external) {
        char dir[1024], log[1100], portbuf[16];
        snprintf(dir, sizeof dir, "%s/nats", c.data);
        mkdir(dir, 0755);
        snprintf(log, sizeof log, "%s/nats-server.log", dir);
        nats_child = add_child("nats-server");
        snprintf(nats_child->conf, sizeof nats_child->conf, "%s/nats-server.conf", dir);
        for (int tries = 1;; tries++) {
            snprintf(portbuf, sizeof portbuf, "%d", port);
            const char *args[] = {"nats-server", "-c", nats_child->conf, "-js", "-sd", dir, "-a",
                                  "127.0.0.1",   "-p", portbuf,          "-l",  log,   NULL};
            args_clear(nats_child);
            for (int i = 0; args[i]; i++)
                arg(nats_child, args[i]);
            long from = file_size(log);
            if (!spawn(nats_child)) {
                say("cannot start nats-server (configuration %s): %s", nats_child->conf,
                    strerror(errno));
                return 1;
            }
            int st = 0;
            nats_start how = nats_wait_ready(nats_child->pid, log, from, &st);
            if (how == NATS_READY)
                break;
            if (how == NATS_SLOW) {
                say("nats-server (pid %d) did not say it was ready within %d s; see %s",
                    nats_child->pid, NATS_READY_MS / 1000, log);
                stop_child(nats_child, SIGTERM);
                return 1;
            }
            nats_child->pid = 0;
            char last[512];
            log_read(log, from, NULL, last, sizeof last);
            bool taken = strstr(last, "address already in use") != NULL;
            if (taken && !port_opt && tries < NATS_START_TRIES && (port = any_free_port()) > 0) {
                say("port %s was taken before nats-server could bind it; trying %d", portbuf, port);
                continue;
            }
            char ended[32];
            say("nats-server exited (%s) on start: %s", guild_wait_text(st, ended, sizeof ended),
                last[0] ? last : "(nothing in its log)");
            return 1;
        }
        snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
        c.nats = url;
    }
    natsConnection *nc = NULL;
    guild_error err = {0};
    if (bus_connect(c.nats, "guild-up", 10000, &nc, &err) != GUILD_OK) {
        say("NATS at %s is not reachable: %s", c.nats, err.message);
        if (nats_child)
            stop_child(nats_child, SIGTERM);
        return 1;
    }
    if (nats_child)
        say("nats-server ready on %s (pid %d, JetStream store %s/nats)", c.nats, nats_child->pid,
            c.data);
    char urlfile[1024];
    snprintf(urlfile, sizeof urlfile, "%s/nats.url", c.data);
    FILE *f = fopen(urlfile, "w");
    if (f) {
        fprintf(f, "%s\n", c.nats);
        fclose(f);
    }

    char self[1024];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        say("cannot find the guild binary (/proc/self/exe): %s", strerror(errno));
        bus_close(nc);
        if (nats_child)
            stop_child(nats_child, SIGTERM);
        return 1;
    }
    self[n] = '\0';
    /* Each component waited for in turn; a Ctrl-C during start-up stays
     * pending and the loop below takes it at once. */
    for (size_t i = 0; i < sizeof components / sizeof components[0] && !stop_pending(); i++) {
        const struct component *k = &components[i];
        child *ch = add_child(k->name);
        const char *args[] = {self, k->verb, k->what, "--data", c.data, "--nats", c.nats, NULL};
        for (int j = 0; args[j]; j++)
            arg(ch, args[j]);
        if (c.dev && strcmp(k->verb, "serve") == 0)
            arg(ch, "--dev");
        spawn(ch);
        if (wait_ready(nc, k->name, 20000))
            say("%s ready (pid %d)%s", k->name, ch->pid, k->ready);
        else if (!stop_pending())
            say("%s did not answer within 20 s (pid %d); still trying", k->name, ch->pid);
    }
    if (!stop_pending()) {
        bootstrap_admin(nc);
        say("up: NATS %s, data in %s. Ctrl-C stops.", c.nats, c.data);
    }

    for (;;) {
        siginfo_t info;
        uint64_t wait_ns = restart_due();
        struct timespec ts = {.tv_sec = (time_t)(wait_ns / 1000000000u),
                              .tv_nsec = (long)(wait_ns % 1000000000u)};
        int sig = wait_ns ? sigtimedwait(&sigs, &info, &ts) : sigwaitinfo(&sigs, &info);
        if (sig == SIGCHLD)
            reap(false);
        else if (sig == SIGINT || sig == SIGTERM)
            break;
    }
    say("stopping");
    bus_close(nc);
    for (int i = n_children - 1; i >= 0; i--)
        if (&children[i] != nats_child)
            stop_child(&children[i], SIGTERM);
    if (nats_child)
        stop_child(nats_child, SIGTERM);
    reap(true);
    unlink(urlfile); /* no server is there any more */
    say("stopped");
    for (int i = 0; i < n_children; i++)
        args_clear(&children[i]);
    return 0;
}
