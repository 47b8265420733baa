/*
 * workload.c — what every peer's run shares: results, the streams and the
 * measured window (pw_table), the event, processes, machine CPU time.
 *
 * A phase's counting follows `guild bench commands` (cmd_load.c): an append
 * counts in `ops` when its acknowledgement arrives inside the window, and
 * gives a latency sample when it was sent inside it.
 */
#include "peers.h"

#include "common/alloc.h"
#include "common/clock.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ---- results ------------------------------------------------------------------ */

void pw_peer_init(pw_peer *p, const char *name, const char *title)
{
    memset(p, 0, sizeof *p);
    p->name = name;
    p->title = title;
    for (unsigned i = 0; i < PW_MAX_WRITERS; i++) {
        bench_result_init(&p->ph[i].res);
        p->ph[i].cpu = p->ph[i].task_cpu = 0;
        p->ph[i].srv_cpu = p->ph[i].cli_cpu = p->ph[i].svc_cpu = 0;
    }
}

void pw_peer_release(pw_peer *p)
{
    for (unsigned i = 0; i < PW_MAX_WRITERS; i++)
        bench_result_release(&p->ph[i].res);
}

void pw_peer_note(pw_peer *p, const char *fmt, ...)
{
    for (unsigned i = 0; i < sizeof p->notes / sizeof p->notes[0]; i++) {
        if (p->notes[i][0] != '\0')
            continue;
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(p->notes[i], sizeof p->notes[i], fmt, ap);
        va_end(ap);
        return;
    }
}

void pw_peer_fail(pw_peer *p, const char *fmt, ...)
{
    if (p->failed[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->failed, sizeof p->failed, fmt, ap);
    va_end(ap);
    for (char *c = p->failed; *c; c++) /* server messages come in several lines */
        if (*c == '\n')
            *c = ' ';
    fprintf(stderr, "guild-peers: %s: %s\n", p->name, p->failed);
}

int pw_no_begin(void *ctx, unsigned k, pw_phase *ph)
{
    (void)ctx;
    (void)k;
    (void)ph;
    return 0;
}

void pw_no_end(void *ctx, unsigned k)
{
    (void)ctx;
    (void)k;
}

/* ---- the streams -------------------------------------------------------------- */

static uint64_t rng_next(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

void pw_table_init(pw_table *t, unsigned n_streams)
{
    memset(t, 0, sizeof *t);
    pthread_mutex_init(&t->mu, NULL);
    pthread_cond_init(&t->idle, NULL);
    t->n = n_streams;
    t->s = guild_xcalloc((size_t)n_streams + 1, sizeof *t->s);
    for (unsigned i = 0; i < n_streams; i++)
        snprintf(t->s[i].name, sizeof t->s[i].name, "account-%06u", i);
    snprintf(t->s[n_streams].name, sizeof t->s[n_streams].name, "ledger-%06u", 0u);
    t->rng = 0x9e3779b97f4a7c15ull ^ guild_mono_ns();
}

void pw_table_release(pw_table *t)
{
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->idle);
    free(t->s);
    t->s = NULL;
}

void pw_table_begin(pw_table *t, pw_phase *ph, double warmup, double seconds)
{
    pthread_mutex_lock(&t->mu);
    uint64_t now = guild_mono_ns();
    t->ph = ph;
    t->m_start = now + (uint64_t)(warmup * 1e9);
    t->m_end = t->m_start + (uint64_t)(seconds * 1e9);
    t->accepting = true;
    t->in_flight = 0;
    t->acked0 = t->acked;
    pthread_mutex_unlock(&t->mu);
}

bool pw_table_take(pw_table *t, unsigned *idx, uint64_t *expected)
{
    pthread_mutex_lock(&t->mu);
    uint64_t now = guild_mono_ns();
    bool ok = t->accepting && !cmdb_interrupted && now < t->m_end;
    if (ok) {
        unsigned i;
        do /* at most 256 of the streams are held: this ends soon */
            i = (unsigned)(rng_next(&t->rng) % t->n);
        while (t->s[i].busy);
        t->s[i].busy = true;
        t->s[i].sent_ns = now;
        t->in_flight++;
        *idx = i;
        *expected = t->s[i].version;
    }
    pthread_mutex_unlock(&t->mu);
    return ok;
}

void pw_table_finish(pw_table *t, unsigned idx, pw_outcome o, uint64_t version, const char *why)
{
    pthread_mutex_lock(&t->mu);
    uint64_t now = guild_mono_ns();
    pw_stream *s = &t->s[idx];
    pw_phase *ph = t->ph;
    if (o == PW_OK) {
        s->version = version;
        s->count++;
        t->acked++;
    }
    if (ph && s->busy) {
        if (o == PW_OK) {
            if (now >= t->m_start && now < t->m_end)
                ph->res.ops++;
            if (s->sent_ns >= t->m_start && s->sent_ns < t->m_end)
                bench_hist_record(&ph->res.lat, now - s->sent_ns);
        } else if (o == PW_CONFLICT) {
            ph->conflicts++;
            bench_result_error(&ph->res, "conflict on %s: %s", s->name, why ? why : "");
        } else {
            ph->res.errors++;
            bench_result_error(&ph->res, "%s: %s", s->name, why ? why : "failed");
        }
    }
    if (s->busy) {
        s->busy = false;
        t->in_flight--;
        if (t->in_flight == 0)
            pthread_cond_broadcast(&t->idle);
    }
    pthread_mutex_unlock(&t->mu);
}

void pw_table_wait_window(pw_table *t)
{
    for (;;) {
        pthread_mutex_lock(&t->mu);
        uint64_t now = guild_mono_ns(), end = t->m_end;
        pthread_mutex_unlock(&t->mu);
        if (now >= end || cmdb_interrupted)
            break;
        uint64_t left = end - now;
        bench_sleep(left > 50000000 ? 0.05 : (double)left / 1e9);
    }
    pthread_mutex_lock(&t->mu);
    t->accepting = false;
    pthread_mutex_unlock(&t->mu);
}

unsigned pw_table_end(pw_table *t)
{
    pthread_mutex_lock(&t->mu);
    t->accepting = false;
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += (time_t)PW_DRAIN_S;
    while (t->in_flight > 0)
        if (pthread_cond_timedwait(&t->idle, &t->mu, &until) == ETIMEDOUT)
            break;
    unsigned left = t->in_flight;
    pw_phase *ph = t->ph;
    uint64_t now = guild_mono_ns();
    if (ph) {
        uint64_t end = now < t->m_end ? now : t->m_end;
        ph->res.seconds += end > t->m_start ? (double)(end - t->m_start) / 1e9 : 0;
        ph->ran = true;
        ph->total += t->acked - t->acked0;
        if (left > 0) {
            ph->res.errors += left;
            bench_result_error(&ph->res, "%u appends unanswered after %.0f s", left, PW_DRAIN_S);
        }
    }
    t->ph = NULL;
    pthread_mutex_unlock(&t->mu);
    return left;
}

void pw_table_set(pw_table *t, unsigned idx, uint64_t version)
{
    pthread_mutex_lock(&t->mu);
    t->s[idx].version = version;
    t->s[idx].count++;
    t->acked++;
    pthread_mutex_unlock(&t->mu);
}

/* ---- the event -------------------------------------------------------------------
 *
 * About a hundred bytes: which account, an amount, a currency, a reference.
 */

int pw_event_json(const char *name, uint64_t seq, char *buf, size_t size)
{
    return snprintf(buf, size,
                    "{\"account\":\"%s\",\"amount\":%" PRIu64
                    ",\"currency\":\"EUR\",\"reference\":\"bench-%012" PRIu64 "\"}",
                    name, 100 + seq % 100000, seq);
}

static size_t mp_str(uint8_t *p, const char *s)
{
    size_t n = strlen(s); /* every string here is under 32 bytes: a fixstr */
    p[0] = (uint8_t)(0xa0 | n);
    memcpy(p + 1, s, n);
    return 1 + n;
}

size_t pw_event_msgpack(const char *name, uint64_t seq, uint8_t *buf, size_t size)
{
    char ref[32];
    snprintf(ref, sizeof ref, "bench-%012" PRIu64, seq);
    if (size < 128)
        GUILD_BUG("pw_event_msgpack wants 128 bytes");
    size_t o = 0;
    buf[o++] = 0x84; /* a map of four */
    o += mp_str(buf + o, "account");
    o += mp_str(buf + o, name);
    o += mp_str(buf + o, "amount");
    uint32_t amount = (uint32_t)(100 + seq % 100000);
    buf[o++] = 0xce; /* uint 32, big-endian */
    buf[o++] = (uint8_t)(amount >> 24);
    buf[o++] = (uint8_t)(amount >> 16);
    buf[o++] = (uint8_t)(amount >> 8);
    buf[o++] = (uint8_t)amount;
    o += mp_str(buf + o, "currency");
    o += mp_str(buf + o, "EUR");
    o += mp_str(buf + o, "reference");
    o += mp_str(buf + o, ref);
    return o;
}

/* ---- processes -------------------------------------------------------------------- */

static pid_t start(const char *log, const char *const argv[], bool group)
{
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0) {
        fprintf(stderr, "guild-peers: %s: %s\n", log, strerror(errno));
        return -1;
    }
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "guild-peers: fork: %s\n", strerror(errno));
        close(fd);
        return -1;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGPIPE, SIG_DFL);
        if (group) { /* a Ctrl-C reaches the bench, which stops its children in order */
            setpgid(0, 0);
            prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (getppid() != parent)
                _exit(1);
        }
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
    return pid;
}

int pw_spawn(pw_proc *p, const char *const argv[])
{
    pid_t pid = start(p->log, argv, true);
    if (pid < 0)
        return -1;
    p->pid = pid;
    return 0;
}

int pw_run(const char *log, const char *const argv[])
{
    pid_t pid = start(log, argv, false);
    if (pid < 0)
        return -1;
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

void pw_stop(pw_proc *p)
{
    if (p->pid <= 0)
        return;
    kill(p->pid, SIGTERM);
    for (int waited = 0; waited < 15000; waited += 20) {
        if (waitpid(p->pid, NULL, WNOHANG) == p->pid) {
            p->pid = 0;
            return;
        }
        bench_sleep(0.02);
    }
    fprintf(stderr, "guild-peers: %s (pid %d) did not stop; killing it\n", p->name, (int)p->pid);
    kill(p->pid, SIGKILL);
    waitpid(p->pid, NULL, 0);
    p->pid = 0;
}

int pw_free_port(void)
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

void pw_show_log(const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char ring[8][512];
    unsigned n = 0;
    while (fgets(ring[n % 8], sizeof ring[0], f))
        n++;
    fclose(f);
    fprintf(stderr, "  last lines of %s:\n", path);
    for (unsigned i = n > 8 ? n - 8 : 0; i < n; i++)
        fprintf(stderr, "    %s", ring[i % 8]);
}

#define NATS_READY_WAIT_MS 20000

int pw_nats_start(pw_proc *proc, const char *const argv[], const char *url, const char *tag,
                  pw_peer *p)
{
    uint64_t t0 = guild_mono_ns();
    if (pw_spawn(proc, argv) != 0) {
        pw_peer_fail(p, "cannot start nats-server");
        return -1;
    }
    natsStatus s = NATS_ERR;
    while (guild_mono_ns() - t0 < (uint64_t)NATS_READY_WAIT_MS * 1000000 && !cmdb_interrupted) {
        natsConnection *nc = NULL;
        if ((s = natsConnection_ConnectTo(&nc, url)) == NATS_OK) {
            natsConnection_Destroy(nc);
            break;
        }
        bench_sleep(0.05);
    }
    if (s != NATS_OK) {
        pw_peer_fail(p, "nats-server did not come up: %s", natsStatus_GetText(s));
        pw_show_log(proc->log);
        return -1;
    }
    printf("[%s] nats-server ready on %s (pid %d) in %.2f s\n", tag, url, (int)proc->pid,
           (double)(guild_mono_ns() - t0) / 1e9);
    return 0;
}

/* The machine's busy CPU seconds so far: in all, and in tasks alone (user
 * and system time, which processes are charged with; interrupts and
 * softirqs, where loopback networking and disk completions partly run, are
 * no one's). -1 unknown. */
static double machine_cpu(double *tasks)
{
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return -1;
    unsigned long long v[8] = {0};
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
                   &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 7)
        return -1;
    /* user nice system idle iowait irq softirq steal */
    double hz = (double)sysconf(_SC_CLK_TCK);
    if (tasks)
        *tasks = (double)(v[0] + v[1] + v[2]) / hz;
    return (double)(v[0] + v[1] + v[2] + v[5] + v[6]) / hz;
}

/* utime + stime of /proc/<pid>/stat in seconds, with cutime + cstime (its
 * children that ended and were waited for) when `reaped`, and its parent;
 * -1 unknown. */
static double stat_cpu(const char *path, bool reaped, pid_t *ppid)
{
    char buf[1024];
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* after "pid (comm) ": state, ppid, ..., utime is field 14, stime 15,
     * cutime 16, cstime 17 */
    char *p = strrchr(buf, ')');
    int pp = 0;
    unsigned long long ut = 0, st = 0;
    long long cut = 0, cst = 0;
    if (!p || sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld", &pp,
                     &ut, &st, &cut, &cst) != 5)
        return -1;
    if (ppid)
        *ppid = (pid_t)pp;
    double ticks = (double)(ut + st) + (reaped ? (double)(cut + cst) : 0);
    return ticks / (double)sysconf(_SC_CLK_TCK);
}

double pw_proc_cpu(pid_t pid, bool children)
{
    if (pid <= 0)
        return -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    double total = stat_cpu(path, children, NULL);
    if (total < 0 || !children)
        return total;
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        char p[300];
        pid_t parent = 0;
        snprintf(p, sizeof p, "/proc/%s/stat", e->d_name);
        double c = stat_cpu(p, false, &parent);
        if (c > 0 && parent == pid)
            total += c;
    }
    closedir(d);
    return total;
}

void pw_cpu_mark_take(pw_cpu_mark *m, pid_t server, bool children)
{
    m->mono = guild_mono_ns();
    m->machine = machine_cpu(&m->tasks);
    m->self = bench_cpu_seconds();
    m->server = server > 0 ? pw_proc_cpu(server, children) : 0;
}

void pw_cpu_add(double *into, double v)
{
    if (*into < 0 || v < 0)
        *into = -1;
    else
        *into += v;
}

double pw_cpu_mark_end(const pw_cpu_mark *m0, pid_t server, bool children, pw_phase *ph)
{
    pw_cpu_mark m1;
    pw_cpu_mark_take(&m1, server, children);
    double srv = server > 0 && m0->server >= 0 && m1.server >= 0 ? m1.server - m0->server : -1;
    pw_cpu_add(&ph->cpu, m0->machine >= 0 && m1.machine >= 0 ? m1.machine - m0->machine : -1);
    pw_cpu_add(&ph->task_cpu, m0->machine >= 0 && m1.machine >= 0 ? m1.tasks - m0->tasks : -1);
    pw_cpu_add(&ph->cli_cpu, m1.self - m0->self);
    pw_cpu_add(&ph->srv_cpu, srv);
    ph->wall += (double)(m1.mono - m0->mono) / 1e9;
    return srv;
}

double pw_phase_others(const pw_phase *ph)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    if (ph->task_cpu < 0 || ph->wall <= 0 || cpus < 1)
        return -1;
    double other = ph->task_cpu - ph->cli_cpu - (ph->srv_cpu > 0 ? ph->srv_cpu : 0);
    return other > 0 ? other / (ph->wall * (double)cpus) : 0;
}
