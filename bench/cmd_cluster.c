/*
 * cmd_cluster.c — what `guild bench commands` drives: by default a
 * nats-server and `guild serve identity` and `guild serve talent` of its
 * own, started here, stopped at the end; or a running guild it was pointed
 * at. Also the account the requests act as and the profiles they hit.
 *
 * Map
 *   - processes: a free port, spawning, waiting for a service, stopping
 *   - one request and its reply, for setup
 *   - start, login, profiles, stop
 *   - CPU time of a process
 *
 * Children get their own process group (a Ctrl-C in the terminal reaches the
 * bench only, which then stops them in order) and die with the bench if it
 * is killed (PR_SET_PDEATHSIG). Their output goes to a log file each in the
 * bench's directory.
 */
#include "cmd_bench.h"

#include "bus/conn.h"
#include "common/alloc.h"
#include "common/clock.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define READY_WAIT_MS 20000
#define STOP_WAIT_MS 15000
#define REQUEST_WAIT_MS 15000

/* ---- processes ------------------------------------------------------------- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = 0};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0)
        close(fd);
    return port;
}

/* Starts argv as p, its output appended to p->log. Returns 0 or -1. */
int cmdb_spawn(cmdb_proc *p, const char *const argv[])
{
    int fd = open(p->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) {
        fprintf(stderr, "guild bench: %s: %s\n", p->log, strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        close(fd);
        fprintf(stderr, "guild bench: fork: %s\n", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        setpgid(0, 0);
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(1); /* the bench died before prctl */
        int in = open("/dev/null", O_RDONLY);
        if (in >= 0)
            dup2(in, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    close(fd);
    p->pid = pid;
    return 0;
}

/* False (and p->pid 0) once p has exited. */
bool cmdb_alive(cmdb_proc *p)
{
    if (p->pid <= 0)
        return false;
    int status = 0;
    if (waitpid(p->pid, &status, WNOHANG) == p->pid) {
        p->pid = 0;
        p->ended = true;
        p->status = status;
        return false;
    }
    return true;
}

/* Prints the last lines of p's log, to say why it did not come up. */
static void show_log(const cmdb_proc *p)
{
    FILE *f = fopen(p->log, "r");
    if (!f)
        return;
    char ring[8][512];
    unsigned n = 0;
    while (fgets(ring[n % 8], sizeof ring[0], f))
        n++;
    fclose(f);
    fprintf(stderr, "  last lines of %s:\n", p->log);
    for (unsigned i = n > 8 ? n - 8 : 0; i < n; i++)
        fprintf(stderr, "    %s", ring[i % 8]);
}

/* Waits until `name` answers $SRV.PING.<name>; false if p died or the
 * time ran out. */
static bool wait_ping(natsConnection *nc, const char *name, cmdb_proc *p)
{
    char subject[96];
    snprintf(subject, sizeof subject, "$SRV.PING.%s", name);
    uint64_t deadline = guild_mono_ns() + (uint64_t)READY_WAIT_MS * 1000000;
    while (guild_mono_ns() < deadline && !cmdb_interrupted) {
        natsMsg *reply = NULL;
        if (natsConnection_RequestString(&reply, nc, subject, "", 250) == NATS_OK) {
            natsMsg_Destroy(reply);
            return true;
        }
        if (p && !cmdb_alive(p))
            return false;
        bench_sleep(0.05);
    }
    return false;
}

void cmdb_stop_proc(cmdb_proc *p)
{
    if (p->pid <= 0)
        return;
    kill(p->pid, SIGTERM);
    for (int waited = 0; waited < STOP_WAIT_MS; waited += 20) {
        if (waitpid(p->pid, NULL, WNOHANG) == p->pid) {
            p->pid = 0;
            return;
        }
        bench_sleep(0.02);
    }
    fprintf(stderr, "guild bench: %s (pid %d) did not stop; killing it\n", p->name, (int)p->pid);
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
}

double cmdb_proc_cpu(pid_t pid)
{
    if (pid <= 0)
        return -1;
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* after "pid (comm) ": state is field 3, utime 14, stime 15 */
    char *p = strrchr(buf, ')');
    unsigned long long ut = 0, st = 0;
    if (!p || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
        return -1;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* ---- one request, for setup ----------------------------------------------------- */

/* Sends `body` to `subject` and waits. Returns 0 with *reply (the decoded
 * body, owned) for an ok reply; 1 for an error reply, with the code in
 * `code` and "code: message" in `why`; -1 when nothing answered. */
static int request(natsConnection *nc, const char *subject, json_t *body, const char *bearer,
                   json_t **reply, char code[32], char *why, size_t why_size)
{
    char *text = json_dumps(body, JSON_COMPACT);
    natsMsg *m = NULL, *r = NULL;
    natsStatus s = natsMsg_Create(&m, subject, NULL, text, (int)strlen(text));
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, BUS_H_CONTENT_TYPE, "application/json");
    if (s == NATS_OK && bearer)
        s = natsMsgHeader_Set(m, BUS_H_AUTH, bearer);
    if (s == NATS_OK)
        s = natsConnection_RequestMsg(&r, nc, m, REQUEST_WAIT_MS);
    natsMsg_Destroy(m);
    free(text);
    code[0] = '\0';
    if (s != NATS_OK) {
        snprintf(why, why_size, "no reply on %s: %s", subject, natsStatus_GetText(s));
        return -1;
    }
    json_t *doc = NULL;
    guild_error err = {0};
    const char *data = natsMsg_GetData(r);
    size_t len = (size_t)natsMsg_GetDataLength(r);
    int rc = -1;
    if (guild_codec_decode(data, len, guild_format_detect(NULL, data, len), &doc, &err) !=
        GUILD_OK) {
        snprintf(why, why_size, "the reply on %s does not decode: %s", subject, err.message);
    } else if (json_is_true(json_object_get(doc, "ok"))) {
        *reply = doc;
        doc = NULL;
        rc = 0;
    } else {
        json_t *e = json_object_get(doc, "error");
        const char *c = json_string_value(json_object_get(e, "code"));
        const char *msg = json_string_value(json_object_get(e, "message"));
        snprintf(code, 32, "%s", c ? c : "?");
        snprintf(why, why_size, "%s: %s", code, msg ? msg : "");
        rc = 1;
    }
    json_decref(doc);
    natsMsg_Destroy(r);
    return rc;
}

/* ---- start, login, profiles, stop ---------------------------------------------- */

static void proc_init(cmdb_cluster *c, cmdb_proc *p, const char *name)
{
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->log, sizeof p->log, "%s/%s.log", c->root, name);
}

static int start_nats(cmdb_cluster *c)
{
    char store[CMDB_PATH_MAX + 16], port[16];
    int pn = free_port();
    if (pn < 0) {
        fprintf(stderr, "guild bench commands: no free port: %s\n", strerror(errno));
        return -1;
    }
    snprintf(port, sizeof port, "%d", pn);
    snprintf(store, sizeof store, "%s/nats", c->root);
    snprintf(c->url, sizeof c->url, "nats://127.0.0.1:%d", pn);
    proc_init(c, &c->nats, "nats-server");
    const char *argv[] = {"nats-server", "-js", "-sd", store,       "-a", "127.0.0.1",
                          "-p",          port,  "-l",  c->nats.log, NULL};
    return cmdb_spawn(&c->nats, argv);
}

static int start_service(cmdb_cluster *c, cmdb_proc *p, const char *domain, natsConnection *nc)
{
    char self[CMDB_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0) {
        fprintf(stderr, "guild bench commands: /proc/self/exe: %s\n", strerror(errno));
        return -1;
    }
    self[n] = '\0';
    proc_init(c, p, domain);
    const char *argv[] = {self, "serve", domain, "--data", c->data, "--nats", c->url, NULL};
    uint64_t t0 = guild_mono_ns();
    if (cmdb_spawn(p, argv) != 0)
        return -1;
    if (!wait_ping(nc, domain, p)) {
        fprintf(stderr, "guild bench commands: guild serve %s did not answer\n", domain);
        show_log(p);
        return -1;
    }
    printf("[setup] guild serve %s ready (pid %d) in %.2f s\n", domain, (int)p->pid,
           (double)(guild_mono_ns() - t0) / 1e9);
    return 0;
}

static int bootstrap_admin(cmdb_cluster *c, natsConnection *nc)
{
    json_t *body = json_pack("{s:s, s:s, s:s}", "email", c->email, "password", c->password,
                             "display_name", "Bench Administrator");
    json_t *reply = NULL;
    char code[32], why[300];
    int rc = request(nc, "guild.cmd.identity.bootstrap_admin", body, NULL, &reply, code, why,
                     sizeof why);
    json_decref(body);
    json_decref(reply);
    if (rc != 0) {
        fprintf(stderr, "guild bench commands: cannot make the administrator: %s\n", why);
        return -1;
    }
    return 0;
}

int cmdb_cluster_start(cmdb_cluster *c)
{
    c->own = true;
    snprintf(c->data, sizeof c->data, "%s/data", c->root);
    if (mkdir(c->data, 0755) != 0) {
        fprintf(stderr, "guild bench commands: mkdir %s: %s\n", c->data, strerror(errno));
        return -1;
    }
    uint64_t t0 = guild_mono_ns();
    if (start_nats(c) != 0)
        return -1;
    natsConnection *nc = NULL;
    guild_error err = {0};
    if (bus_connect(c->url, "guild-bench-setup", 10000, &nc, &err) != GUILD_OK) {
        fprintf(stderr, "guild bench commands: nats-server did not come up: %s\n", err.message);
        show_log(&c->nats);
        return -1;
    }
    printf("[setup] nats-server ready on %s (pid %d) in %.2f s\n", c->url, (int)c->nats.pid,
           (double)(guild_mono_ns() - t0) / 1e9);
    int rc = -1;
    if (start_service(c, &c->identity, "identity", nc) == 0 && bootstrap_admin(c, nc) == 0 &&
        start_service(c, &c->talent, CMDB_DOMAIN, nc) == 0)
        rc = 0;
    bus_close(nc);
    return rc;
}

int cmdb_cluster_login(cmdb_cluster *c)
{
    natsConnection *nc = NULL;
    guild_error err = {0};
    if (bus_connect(c->url, "guild-bench-setup", 5000, &nc, &err) != GUILD_OK) {
        fprintf(stderr, "guild bench commands: NATS at %s: %s\n", c->url, err.message);
        return -1;
    }
    json_t *body = json_pack("{s:s, s:s}", "email", c->email, "password", c->password);
    json_t *reply = NULL;
    char code[32], why[300];
    int rc = request(nc, "guild.cmd.identity.login", body, NULL, &reply, code, why, sizeof why);
    json_decref(body);
    bus_close(nc);
    if (rc != 0) {
        fprintf(stderr, "guild bench commands: cannot log in as %s: %s\n", c->email, why);
        return -1;
    }
    json_t *data = json_object_get(reply, "data");
    const char *token = json_string_value(json_object_get(data, "access_token"));
    const char *user = json_string_value(json_object_get(data, "user_id"));
    if (!token || !user) {
        fprintf(stderr, "guild bench commands: the login reply has no access_token\n");
        json_decref(reply);
        return -1;
    }
    size_t n = strlen(token) + 8;
    char *bearer = guild_xmalloc(n);
    snprintf(bearer, n, "Bearer %s", token);
    free(c->token);
    c->token = bearer;
    c->token_ns = guild_mono_ns();
    snprintf(c->user_id, sizeof c->user_id, "%s", user);
    json_decref(reply);
    return 0;
}

static void keep_talent(void *ctx, const char *talent_id)
{
    cmdb_cluster *c = ctx;
    c->talent_ids = guild_xrealloc(c->talent_ids, (c->n_talents + 1) * sizeof *c->talent_ids);
    c->talent_ids[c->n_talents++] = guild_xstrdup(talent_id);
}

static uint64_t code_count(const cmdb_outcome *o, const char *code)
{
    for (int i = 0; i < CMDB_CODES; i++)
        if (o->codes[i].n && strcmp(o->codes[i].code, code) == 0)
            return o->codes[i].n;
    return 0;
}

/* The account may only make its own profile: make that one. */
static int own_profile(cmdb_cluster *c)
{
    natsConnection *nc = NULL;
    guild_error err = {0};
    if (bus_connect(c->url, "guild-bench-setup", 5000, &nc, &err) != GUILD_OK)
        return -1;
    json_t *body =
        json_pack("{s:s, s:s}", "user_id", c->user_id, "headline", "guild bench commands");
    json_t *reply = NULL;
    char code[32], why[300];
    int rc = request(nc, "guild.cmd." CMDB_DOMAIN ".create_profile", body, c->token, &reply, code,
                     why, sizeof why);
    json_decref(body);
    bus_close(nc);
    if (rc == 0) {
        const char *id =
            json_string_value(json_object_get(json_object_get(reply, "data"), "talent_id"));
        if (id)
            keep_talent(c, id);
        json_decref(reply);
        return id ? 0 : -1;
    }
    if (strcmp(code, "conflict") == 0)
        fprintf(stderr,
                "guild bench commands: %s may only act on its own profile, which exists already;\n"
                "  give its id with --talent ID, or log in as an administrator\n",
                c->email);
    else
        fprintf(stderr, "guild bench commands: cannot create a profile: %s\n", why);
    return -1;
}

int cmdb_cluster_profiles(cmdb_cluster *c, cmdb_client *cl, unsigned n, unsigned window)
{
    char a[32], b[32];
    printf("[setup] creating %s talent profiles, %u in flight ... ",
           bench_fmt_count(n, a, sizeof a), window);
    fflush(stdout);
    cmdb_outcome o;
    cmdb_outcome_init(&o);
    cmdb_client_target(cl, c->token, NULL, 0);
    cmdb_spec spec = {.kind = CMDB_CREATE, .in_flight = window, .count = n};
    cmdb_client_run(cl, &spec, &o, keep_talent, c);
    printf("%s in %.2f s (%s/s)\n", bench_fmt_count(c->n_talents, a, sizeof a), o.res.seconds,
           bench_fmt_count(o.res.seconds > 0 ? c->n_talents / o.res.seconds : 0, b, sizeof b));
    fflush(stdout);
    int rc = 0;
    if (c->n_talents == 0 && code_count(&o, "forbidden") > 0) {
        printf("[setup] %s may not create others' profiles: using its own\n", c->email);
        fflush(stdout);
        rc = own_profile(c);
    } else if (c->n_talents == 0 || o.res.errors || o.timeouts) {
        fprintf(stderr,
                "guild bench commands: creating profiles: %llu errors, %llu timeouts; first: %s\n",
                (unsigned long long)o.res.errors, (unsigned long long)o.timeouts,
                o.res.first_error);
        rc = c->n_talents > 0 ? 0 : -1;
    }
    cmdb_outcome_release(&o);
    return cmdb_interrupted ? -1 : rc;
}

void cmdb_cluster_stop(cmdb_cluster *c)
{
    if (c->own) {
        cmdb_stop_proc(&c->talent);
        cmdb_stop_proc(&c->identity);
        cmdb_stop_proc(&c->nats);
    }
    for (unsigned i = 0; i < c->n_talents; i++)
        free(c->talent_ids[i]);
    free(c->talent_ids);
    c->talent_ids = NULL;
    c->n_talents = 0;
    free(c->token);
    c->token = NULL;
}
