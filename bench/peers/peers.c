/*
 * peers.c — `guild-peers`, run by `make bench-peers`: the same append and
 * read workload against PostgreSQL (as Message DB and Marten use it), NATS
 * JetStream used directly, guild's commands over NATS and guild's event
 * store in-process on this machine, beside a bare NATS echo (the ceiling of
 * anything behind NATS request/reply), each started in a fresh directory,
 * taking turns in slices of each writer count, stopped at the end; then one
 * table and the goals.
 *
 * Map
 *   - options
 *   - progress lines
 *   - the report: appends, reads, counts, notes, goals
 *   - running the peers: start, writer counts in slices, reads, stop
 *   - main, and `guild-peers serve ...`: cmd_cluster.c starts guild's
 *     services by running its own executable with `serve`; this one hands
 *     such a call to the guild executable.
 *
 * A report: it exits 0 when every peer ran, even when a goal is missed; 1
 * when a peer could not be measured (or on an interruption), 2 on a bad
 * option.
 */
#include "peers.h"

#include "common/clock.h"

#include <errno.h>
#include <inttypes.h>
#include <nats/nats.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GUILD_ENV "GUILD_PEERS_GUILD" /* the guild executable, for `serve` */
#define GOAL_PG 5.0                   /* guild's commands over PostgreSQL's appends */
#define GOAL_JS 0.6                   /* guild's commands over JetStream's appends */
#define OTHERS_MAX 0.10               /* others' share of the CPUs past which a phase is marked */

volatile sig_atomic_t cmdb_interrupted;
char pw_bearer[PW_BEARER_MAX];

enum { P_POSTGRES, P_JETSTREAM, P_COMMANDS, P_STORE, P_ECHO, N_PEERS };

static const struct {
    const char *key, *name, *title;
    const pw_peer_ops *ops;
} peer_defs[N_PEERS] = {
    {"postgres", "PostgreSQL",
     "PostgreSQL (Debian's server, defaults, synchronous_commit on): messages table and "
     "plpgsql write function, as Message DB and Marten",
     &pw_postgres_ops},
    {"jetstream", "JetStream",
     "NATS JetStream used directly: subject es.<stream>, Nats-Expected-Last-Subject-Sequence, "
     "file storage",
     &pw_jetstream_ops},
    {"commands", "guild commands",
     "guild's commands over NATS request/reply to `guild serve talent`: durable in LMDB, relayed "
     "to JetStream",
     &pw_commands_ops},
    {"store", "guild store",
     "guild's event store in-process: es_append_wait from K threads, durable in LMDB",
     &pw_store_ops},
    {"echo", "NATS echo",
     "bare NATS request/reply to a responder in this process that answers each request with "
     "its body",
     &pw_echo_ops},
};

/* Whether peer j reads back what it stored and counts it (its reads and
 * check are shown): whether it has a finish. */
static bool reads_back(int j)
{
    return peer_defs[j].ops->finish != NULL;
}

/* ---- options ----------------------------------------------------------------------- */

typedef struct options {
    pw_config cfg;
    bool run[N_PEERS];
    const char *dir;
    bool keep;
} options;

static void usage(FILE *f)
{
    fprintf(f,
            "usage: guild-peers [options]   (make bench-peers ARGS='...')\n"
            "  --seconds S         measured window of each writer count (default 3)\n"
            "  --quick             smoke run: 0.5 s, 1,000 streams, a long stream of 1,000\n"
            "  --streams N         streams the appends choose from (default 10,000)\n"
            "  --long N            events of the stream that is read whole (default 10,000)\n"
            "  --writers LIST      writer counts, e.g. 1,16,64,256 (the default)\n"
            "  --peers LIST        of postgres,jetstream,commands,store,echo (default all)\n"
            "  --pg-connections N  most PostgreSQL connections; more writers pipeline (64)\n"
            "  --buffered          NATS clients buffer writes (cnats's flusher) instead of\n"
            "                      sending each message at once\n"
            "  --dir DIR           work in a fresh directory under DIR (default $TMPDIR or /tmp)\n"
            "  --keep              keep that directory (data and logs)\n"
            "  --guild PATH        the guild executable (default: ../guild beside this one)\n");
}

static const char *option_value(int argc, char **argv, int *i, const char *name)
{
    size_t n = strlen(name);
    if (strncmp(argv[*i], name, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] == '\0' && *i + 1 < argc)
        return argv[++*i];
    return NULL;
}

static int parse_count(const char *opt, const char *v, unsigned long lo, unsigned long hi,
                       unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long n = strtoul(v, &end, 10);
    if (errno || end == v || *end != '\0' || n < lo || n > hi) {
        fprintf(stderr, "guild-peers: %s wants %lu..%lu: %s\n", opt, lo, hi, v);
        return -1;
    }
    *out = (unsigned)n;
    return 0;
}

static int parse_writers(const char *v, pw_config *cfg)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", v);
    cfg->n_writers = 0;
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        if (cfg->n_writers == PW_MAX_WRITERS) {
            fprintf(stderr, "guild-peers: --writers takes at most %d counts\n", PW_MAX_WRITERS);
            return -1;
        }
        if (parse_count("--writers", tok, 1, PW_MAX_IN_FLIGHT, &cfg->writers[cfg->n_writers]) != 0)
            return -1;
        cfg->n_writers++;
    }
    return cfg->n_writers > 0 ? 0 : -1;
}

static int parse_peers(const char *v, options *o)
{
    char buf[128];
    snprintf(buf, sizeof buf, "%s", v);
    memset(o->run, 0, sizeof o->run);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        int found = -1;
        for (int i = 0; i < N_PEERS; i++)
            if (strcmp(tok, peer_defs[i].key) == 0)
                found = i;
        if (found < 0) {
            fprintf(stderr,
                    "guild-peers: unknown peer %s (postgres, jetstream, commands, store, echo)\n",
                    tok);
            return -1;
        }
        o->run[found] = true;
    }
    return 0;
}

/* The guild executable beside this one's directory: <build>/guild when this
 * is <build>/peers/guild-peers. */
static void default_guild(char *out, size_t size)
{
    char self[PW_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    out[0] = '\0';
    if (n <= 0)
        return;
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = '\0';
    snprintf(out, size, "%.*s/../guild", (int)(size - 10), self);
}

static int parse_options(int argc, char **argv, options *o, char *guild, size_t gsize)
{
    pw_config *c = &o->cfg;
    memset(o, 0, sizeof *o);
    c->seconds = 3.0;
    c->n_streams = 10000;
    c->long_events = 10000;
    c->pg_connections = 64;
    c->asap = true;
    parse_writers("1,16,64,256", c);
    for (int i = 0; i < N_PEERS; i++)
        o->run[i] = true;
    bool quick = false, streams = false, longs = false;
    default_guild(guild, gsize);
    for (int i = 1; i < argc; i++) {
        const char *v;
        if (strcmp(argv[i], "--quick") == 0) {
            quick = true;
        } else if (strcmp(argv[i], "--keep") == 0) {
            o->keep = true;
        } else if (strcmp(argv[i], "--buffered") == 0) {
            c->asap = false;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 1;
        } else if ((v = option_value(argc, argv, &i, "--seconds")) != NULL) {
            char *end;
            errno = 0;
            c->seconds = strtod(v, &end);
            if (errno || *end || !(c->seconds >= 0.1 && c->seconds <= 600)) {
                fprintf(stderr, "guild-peers: --seconds wants 0.1..600: %s\n", v);
                return -1;
            }
        } else if ((v = option_value(argc, argv, &i, "--streams")) != NULL) {
            if (parse_count("--streams", v, 1, 1000000, &c->n_streams) != 0)
                return -1;
            streams = true;
        } else if ((v = option_value(argc, argv, &i, "--long")) != NULL) {
            if (parse_count("--long", v, 1, 10000000, &c->long_events) != 0)
                return -1;
            longs = true;
        } else if ((v = option_value(argc, argv, &i, "--writers")) != NULL) {
            if (parse_writers(v, c) != 0)
                return -1;
        } else if ((v = option_value(argc, argv, &i, "--peers")) != NULL) {
            if (parse_peers(v, o) != 0)
                return -1;
        } else if ((v = option_value(argc, argv, &i, "--pg-connections")) != NULL) {
            if (parse_count("--pg-connections", v, 1, 90, &c->pg_connections) != 0)
                return -1;
        } else if ((v = option_value(argc, argv, &i, "--dir")) != NULL) {
            o->dir = v;
        } else if ((v = option_value(argc, argv, &i, "--guild")) != NULL) {
            snprintf(guild, gsize, "%s", v);
        } else {
            fprintf(stderr, "guild-peers: unknown option %s\n", argv[i]);
            usage(stderr);
            return -1;
        }
    }
    if (quick) {
        c->seconds = 0.5;
        if (!streams)
            c->n_streams = 1000;
        if (!longs)
            c->long_events = 1000;
    }
    c->warmup = c->seconds * 0.1 > 0.5 ? 0.5 : c->seconds * 0.1;
    for (unsigned i = 0; i < c->n_writers; i++)
        if (c->writers[i] * 2 > c->n_streams) {
            fprintf(stderr, "guild-peers: %u writers want at least %u streams\n", c->writers[i],
                    c->writers[i] * 2);
            return -1;
        }
    if (o->run[P_COMMANDS] && access(guild, X_OK) != 0) {
        fprintf(stderr, "guild-peers: no guild executable at %s (--guild PATH)\n", guild);
        return -1;
    }
    c->guild_bin = guild;
    return 0;
}

/* ---- progress lines ---------------------------------------------------------------- */

static double rate(const pw_phase *ph)
{
    return ph->ran && ph->res.seconds > 0 ? (double)ph->res.ops / ph->res.seconds : 0;
}

void pw_print_phase(const char *peer, unsigned writers, const pw_phase *ph, const char *extra)
{
    char a[32], b[32], c[32];
    const bench_result *r = &ph->res;
    printf("[%s] %u writers: %s appends/s", peer, writers, bench_fmt_count(rate(ph), a, sizeof a));
    if (r->lat.count)
        printf("  p50 %s  p99 %s", bench_fmt_ns(bench_hist_quantile(&r->lat, 0.5), b, sizeof b),
               bench_fmt_ns(bench_hist_quantile(&r->lat, 0.99), c, sizeof c));
    if (extra && extra[0])
        printf("  (%s)", extra);
    if (r->errors || ph->conflicts)
        printf("  %" PRIu64 " ERRORS, %" PRIu64 " conflicts; first: %s", r->errors, ph->conflicts,
               r->first_error);
    double others = pw_phase_others(ph);
    if (others > OTHERS_MAX)
        printf("  (other work took %.0f%% of the CPUs meanwhile)", others * 100);
    printf("\n");
    fflush(stdout);
}

static char *fmt_read(const pw_read *r, char *buf, size_t size)
{
    char a[32], b[32];
    if (r->error[0])
        snprintf(buf, size, "FAILED: %.60s", r->error);
    else if (!r->ran || r->seconds <= 0)
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, "%s events/s (%s in %.2f s)",
                 bench_fmt_count((double)r->events / r->seconds, a, sizeof a),
                 bench_fmt_count((double)r->events, b, sizeof b), r->seconds);
    return buf;
}

void pw_print_reads(const pw_peer *p)
{
    char a[128], b[128];
    printf("[%s] read the long stream: %s; the whole log: %s\n", p->name,
           fmt_read(&p->read_stream, a, sizeof a), fmt_read(&p->read_log, b, sizeof b));
    fflush(stdout);
}

/* ---- the report ---------------------------------------------------------------------- */

static double load_average(void)
{
    double v = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) {
        if (fscanf(f, "%lf", &v) != 1)
            v = -1;
        fclose(f);
    }
    return v;
}

/* CPU seconds per append in us, or "-". */
static char *fmt_per(double cpu, uint64_t n, char *buf, size_t size)
{
    if (cpu < 0 || n == 0)
        snprintf(buf, size, "-");
    else
        snprintf(buf, size, "%.0f", cpu * 1e6 / (double)n);
    return buf;
}

static void print_appends(const options *o, const pw_peer *peers)
{
    const pw_config *c = &o->cfg;
    char a[32], b[32], d[32], e[32], f[32], g[32], h[32], k[32];
    unsigned disturbed = 0;
    printf("\nappends: one event with an expected version to a random stream of %s\n",
           bench_fmt_count(c->n_streams, a, sizeof a));
    printf("  %7s  %-15s %10s %9s %9s %6s %7s %7s %7s %10s\n", "", "", "", "", "", "", "CPU us",
           "per", "append", "guild cmd");
    printf("  %7s  %-15s %10s %9s %9s %6s %7s %7s %7s %10s\n", "writers", "peer", "appends/s",
           "p50", "p99", "errors", "server", "bench", "machine", "/ peer");
    for (unsigned i = 0; i < c->n_writers; i++) {
        const pw_phase *cmd = &peers[P_COMMANDS].ph[i];
        for (int j = 0; j < N_PEERS; j++) {
            if (!o->run[j])
                continue;
            const pw_phase *ph = &peers[j].ph[i];
            const bench_result *r = &ph->res;
            bool lat = r->lat.count > 0;
            snprintf(d, sizeof d, "%" PRIu64, r->errors + ph->conflicts);
            if (j != P_COMMANDS && rate(cmd) > 0 && rate(ph) > 0)
                snprintf(g, sizeof g, "%.2fx", rate(cmd) / rate(ph));
            else
                snprintf(g, sizeof g, "-");
            printf("  %7u  %-15s %10s %9s %9s %6s %7s %7s %7s %10s%s\n", c->writers[i],
                   peers[j].name, ph->ran ? bench_fmt_count(rate(ph), a, sizeof a) : "-",
                   lat ? bench_fmt_ns(bench_hist_quantile(&r->lat, 0.5), b, sizeof b) : "-",
                   lat ? bench_fmt_ns(bench_hist_quantile(&r->lat, 0.99), f, sizeof f) : "-", d,
                   fmt_per(ph->srv_cpu, ph->total, e, sizeof e),
                   fmt_per(ph->cli_cpu, ph->total, h, sizeof h),
                   fmt_per(ph->cpu, ph->total, k, sizeof k), g,
                   r->errors || ph->conflicts         ? "  ERRORS"
                   : pw_phase_others(ph) > OTHERS_MAX ? "  *"
                                                      : "");
            if (pw_phase_others(ph) > OTHERS_MAX)
                disturbed++;
        }
        if (i + 1 < c->n_writers)
            printf("\n");
    }
    printf("\n  appends/s: acknowledged in the measured window (%.1f s after %.1f s of warm-up);\n"
           "  latency from sending an append to its acknowledgement. CPU per append, in us,\n"
           "  over every append of the phase: server: the peer's processes (postgres and its\n"
           "  backends; nats-server; guild serve talent and nats-server); bench: this process\n"
           "  (the writers; guild's store when in-process; the echo's responder); machine: every\n"
           "  process, others' work included. guild cmd / peer: guild's commands/s over that\n"
           "  peer's appends/s (the echo's: its requests answered).\n",
           c->seconds, c->warmup);
    if (disturbed)
        printf("  *: other work on this machine took more than %.0f%% of its CPUs during that\n"
               "  phase; its figures are worth less than those of a quiet run.\n",
               OTHERS_MAX * 100);
    if (!o->run[P_COMMANDS])
        return;
    printf("\n  guild commands: server CPU per command, split\n");
    for (unsigned i = 0; i < c->n_writers; i++) {
        const pw_phase *ph = &peers[P_COMMANDS].ph[i];
        if (!ph->ran || ph->srv_cpu < 0 || ph->svc_cpu < 0 || ph->total == 0)
            continue;
        printf("  %7u  guild serve talent %.0f us, nats-server %.0f us\n", c->writers[i],
               ph->svc_cpu * 1e6 / (double)ph->total,
               (ph->srv_cpu - ph->svc_cpu) * 1e6 / (double)ph->total);
    }
}

static void print_reads(const options *o, const pw_peer *peers)
{
    char a[128], b[128], n[32];
    printf("\nreads: the long stream (%s events) whole, again and again for up to 1 s, in pages\n"
           "of %d; then the whole log once\n",
           bench_fmt_count(o->cfg.long_events, n, sizeof n), PW_BATCH);
    for (int j = 0; j < N_PEERS; j++) {
        if (!o->run[j])
            continue;
        if (j == P_COMMANDS) {
            printf("  %-15s (commands are read through read models; see guild store)\n",
                   peers[j].name);
            continue;
        }
        if (!reads_back(j))
            continue;
        printf("  %-15s stream %-38s log %s\n", peers[j].name,
               fmt_read(&peers[j].read_stream, a, sizeof a),
               fmt_read(&peers[j].read_log, b, sizeof b));
    }
    printf("  (PostgreSQL: SELECT ... ORDER BY position / global_position LIMIT %d; JetStream:\n"
           "  an ordered consumer; guild: es_read_stream and es_read_log)\n",
           PW_BATCH);
}

static void print_checks(const options *o, const pw_peer *peers)
{
    char a[32], b[32];
    printf("\nevery acknowledged append is in the store\n");
    for (int j = 0; j < N_PEERS; j++) {
        const pw_peer *p = &peers[j];
        if (!o->run[j] || !reads_back(j))
            continue;
        if (!p->checked) {
            printf("  %-15s NOT CHECKED%s%s\n", p->name, p->failed[0] ? ": " : "", p->failed);
            continue;
        }
        printf("  %-15s %s stored, %s acknowledged: %s\n", p->name,
               bench_fmt_count((double)p->stored, a, sizeof a),
               bench_fmt_count((double)p->acked, b, sizeof b),
               p->stored == p->acked ? "ok" : "MISMATCH");
    }
    if (o->run[P_COMMANDS])
        printf("  %-15s the relay check in the goals below\n", peers[P_COMMANDS].name);
}

static void print_notes(const options *o, const pw_peer *peers)
{
    printf("\nthe peers\n");
    for (int j = 0; j < N_PEERS; j++) {
        if (!o->run[j])
            continue;
        const pw_peer *p = &peers[j];
        printf("  %-15s %s\n", p->name, p->title);
        for (unsigned k = 0; k < sizeof p->notes / sizeof p->notes[0]; k++)
            if (p->notes[k][0])
                printf("  %-15s - %s\n", "", p->notes[k]);
        if (p->failed[0])
            printf("  %-15s FAILED: %s\n", "", p->failed);
    }
}

/* One goal line: guild's commands at least `factor` times `peer` at
 * writer row i. Returns 1 if missed. */
static int goal(const options *o, const pw_peer *peers, int peer, unsigned i, double factor)
{
    const pw_phase *cmd = &peers[P_COMMANDS].ph[i], *ph = &peers[peer].ph[i];
    char what[96], line[96], a[32], b[32];
    snprintf(line, sizeof line, "%u writers: guild commands >= %.1fx %s", o->cfg.writers[i], factor,
             peers[peer].name);
    if (!cmd->ran || !ph->ran) {
        printf("  %-48s %-36s %s\n", line, "", "NOT MEASURED");
        return 0;
    }
    double rc = rate(cmd), rp = rate(ph);
    bool clean = cmd->ran && cmd->res.errors == 0 && cmd->conflicts == 0;
    bool relay = pw_relay_kept_up(cmd);
    bool ok = clean && relay && rp > 0 && rc >= factor * rp;
    snprintf(what, sizeof what, "%s vs %s/s = %.2fx%s%s", bench_fmt_count(rc, a, sizeof a),
             bench_fmt_count(rp, b, sizeof b), rp > 0 ? rc / rp : 0, clean ? "" : ", errors",
             relay ? "" : ", relay behind");
    printf("  %-48s %-36s %s\n", line, what, ok ? "met" : "MISSED");
    return ok ? 0 : 1;
}

/* Machine CPU seconds per append of a phase, or -1 unknown. */
static double machine_per(const pw_phase *ph)
{
    return ph->ran && ph->cpu >= 0 && ph->total ? ph->cpu / (double)ph->total : -1;
}

/* What the echo says of the goals at writer row i: the rate 5x PostgreSQL
 * needs against the echo's, and machine CPU per request beside what 0.6x
 * JetStream would allow a command at JetStream's own CPU use. */
static void print_ceiling(const options *o, const pw_peer *peers, unsigned i)
{
    const pw_phase *echo = &peers[P_ECHO].ph[i], *cmd = &peers[P_COMMANDS].ph[i];
    const pw_phase *pg = &peers[P_POSTGRES].ph[i], *js = &peers[P_JETSTREAM].ph[i];
    char a[32], b[32];
    if (!echo->ran || rate(echo) <= 0 || echo->res.errors)
        return;
    unsigned k = o->cfg.writers[i];
    if (pg->ran && rate(pg) > 0)
        printf("  %7u  %.0fx PostgreSQL is %s/s: %.2fx what the echo made (%s/s)\n", k, GOAL_PG,
               bench_fmt_count(GOAL_PG * rate(pg), a, sizeof a), GOAL_PG * rate(pg) / rate(echo),
               bench_fmt_count(rate(echo), b, sizeof b));
    double e = machine_per(echo), j = machine_per(js), g = machine_per(cmd);
    if (e < 0 || j < 0 || g < 0)
        return;
    printf("  %7u  machine CPU per request: echo %.0f us, JetStream append %.0f us, guild command "
           "%.0f us;\n"
           "  %7s  %.1fx JetStream at JetStream's CPU use would allow a command %.0f us\n",
           k, e * 1e6, j * 1e6, g * 1e6, "", GOAL_JS, j / GOAL_JS * 1e6);
}

static int print_goals(const options *o, const pw_peer *peers)
{
    int missed = 0, shown = 0;
    if (!o->run[P_COMMANDS])
        return 0;
    printf("\ngoals (guild's commands: durable, over NATS, the relay keeping up)\n");
    for (unsigned i = 0; i < o->cfg.n_writers; i++) {
        if (o->cfg.writers[i] != 64 && o->cfg.writers[i] != 256)
            continue;
        if (o->run[P_POSTGRES])
            missed += goal(o, peers, P_POSTGRES, i, GOAL_PG), shown++;
        if (o->run[P_JETSTREAM])
            missed += goal(o, peers, P_JETSTREAM, i, GOAL_JS), shown++;
    }
    if (shown == 0 && !o->run[P_POSTGRES] && !o->run[P_JETSTREAM])
        printf("  (the goals compare with postgres and jetstream: neither ran)\n");
    else if (shown == 0)
        printf("  (the goals are at 64 and 256 writers: none ran)\n");
    if (shown == 0 || !peers[P_ECHO].ran)
        return missed;
    printf("\n  against the NATS echo (request/reply alone): a guild command is the echo's round\n"
           "  trip plus a durable commit and the relay's JetStream publish\n");
    for (unsigned i = 0; i < o->cfg.n_writers; i++)
        if (o->cfg.writers[i] == 64 || o->cfg.writers[i] == 256)
            print_ceiling(o, peers, i);
    return missed;
}

/* ---- running the peers ------------------------------------------------------------------ */

static void print_row(const options *o, const pw_peer *peers, int j, unsigned i)
{
    const pw_phase *ph = &peers[j].ph[i];
    unsigned k = o->cfg.writers[i];
    char extra[128] = "";
    if (j == P_POSTGRES && k > o->cfg.pg_connections)
        snprintf(extra, sizeof extra, "%u connections, pipelined", o->cfg.pg_connections);
    if (j == P_COMMANDS && ph->catchup_failed)
        snprintf(extra, sizeof extra, "relay NOT caught up after %.0f s", PW_DRAIN_S);
    else if (j == P_COMMANDS)
        snprintf(extra, sizeof extra, "relay lag %" PRIu64 " at most, caught up within %.0f ms",
                 ph->lag_end, ph->catchup * 1e3);
    pw_print_phase(peers[j].name, k, ph, extra);
}

/* Writer count i: each peer that is up takes its turn in every slice, in
 * an order that rotates. */
static void run_count(const options *o, pw_peer *peers, void **ctx, const bool *up, unsigned i)
{
    const pw_config *c = &o->cfg;
    unsigned k = c->writers[i];
    int order[N_PEERS], n = 0;
    for (int j = 0; j < N_PEERS; j++)
        if (up[j] && peer_defs[j].ops->begin(ctx[j], k, &peers[j].ph[i]) == 0)
            order[n++] = j;
    unsigned slices = c->seconds >= 1 ? (unsigned)(c->seconds * 2) : 2;
    printf("[%u writers] %u slices of %.2f s per peer, in turn ", k, slices, c->seconds / slices);
    fflush(stdout);
    for (unsigned sl = 0; sl < slices && !cmdb_interrupted; sl++) {
        for (int m = 0; m < n && !cmdb_interrupted; m++) {
            int j = order[((unsigned)m + sl) % (unsigned)n];
            /* the first slice warms up; later ones only fill the pipe again */
            double warm = sl == 0 ? c->warmup : 0.05;
            peer_defs[j].ops->slice(ctx[j], k, &peers[j].ph[i], warm, c->seconds / slices);
        }
        printf(".");
        fflush(stdout);
    }
    printf("\n");
    for (int j = 0; j < N_PEERS; j++)
        if (up[j])
            peer_defs[j].ops->end(ctx[j], k);
    for (int m = 0; m < n; m++)
        print_row(o, peers, order[m], i);
}

/* Starts every peer, runs every writer count, reads, stops them all. */
static void run_peers(const options *o, pw_peer *peers)
{
    void *ctx[N_PEERS] = {0};
    bool up[N_PEERS] = {0};
    for (int j = 0; j < N_PEERS && !cmdb_interrupted; j++)
        if (o->run[j])
            up[j] = peer_defs[j].ops->start(&o->cfg, &peers[j], &ctx[j]) == 0;
    for (unsigned i = 0; i < o->cfg.n_writers && !cmdb_interrupted; i++)
        run_count(o, peers, ctx, up, i);
    for (int j = 0; j < N_PEERS && !cmdb_interrupted; j++) {
        if (!up[j])
            continue;
        if (reads_back(j)) {
            peer_defs[j].ops->finish(ctx[j], &peers[j]);
            pw_print_reads(&peers[j]);
        }
        peers[j].ran = true;
    }
    for (int j = 0; j < N_PEERS; j++)
        if (o->run[j])
            peer_defs[j].ops->stop(ctx[j], &peers[j]);
}

/* ---- main ------------------------------------------------------------------------------- */

static void on_signal(int sig)
{
    (void)sig;
    cmdb_interrupted = 1;
}

/* `guild-peers serve <domain> ...` is cmd_cluster.c starting a service:
 * the guild executable does that. */
static int hand_to_guild(char **argv)
{
    const char *guild = getenv(GUILD_ENV);
    if (!guild || !guild[0]) {
        fprintf(stderr, "guild-peers: serve: %s is not set\n", GUILD_ENV);
        return 127;
    }
    argv[0] = (char *)guild;
    execv(guild, argv);
    fprintf(stderr, "guild-peers: cannot run %s: %s\n", guild, strerror(errno));
    return 127;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "serve") == 0)
        return hand_to_guild(argv);
    options o;
    char guild[PW_PATH_MAX];
    int prc = parse_options(argc, argv, &o, guild, sizeof guild);
    if (prc != 0)
        return prc > 0 ? 0 : 2;
    if (o.run[P_COMMANDS])
        setenv(GUILD_ENV, guild, 1);
    if (bench_tmpdir_create(o.dir, o.cfg.root, sizeof o.cfg.root) != 0) {
        fprintf(stderr, "guild-peers: cannot create a directory under %s: %s\n",
                o.dir ? o.dir : "$TMPDIR", strerror(errno));
        return 1;
    }
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);

    pw_peer peers[N_PEERS];
    for (int j = 0; j < N_PEERS; j++)
        pw_peer_init(&peers[j], peer_defs[j].name, peer_defs[j].title);
    char a[32];
    printf("guild-peers: %.1f s a phase, %s streams, writers", o.cfg.seconds,
           bench_fmt_count(o.cfg.n_streams, a, sizeof a));
    for (unsigned i = 0; i < o.cfg.n_writers; i++)
        printf("%s%u", i ? "," : " ", o.cfg.writers[i]);
    printf(", work directory %s\n", o.cfg.root);
    double load0 = load_average();
    uint64_t t0 = guild_mono_ns();
    run_peers(&o, peers);
    double load1 = load_average();
    int rc = 0;
    if (cmdb_interrupted) {
        printf("\ninterrupted: stopped\n");
        rc = 1;
    } else {
        printf("\nguild-peers: summary (%ld CPUs, load average %.2f before, %.2f after, %.0f s "
               "in all)\n",
               sysconf(_SC_NPROCESSORS_ONLN), load0, load1, (double)(guild_mono_ns() - t0) / 1e9);
        print_appends(&o, peers);
        bool stored = o.run[P_COMMANDS]; /* its lines in both sections */
        for (int j = 0; j < N_PEERS; j++)
            stored |= o.run[j] && reads_back(j);
        if (stored) {
            print_reads(&o, peers);
            print_checks(&o, peers);
        }
        print_notes(&o, peers);
        if (print_goals(&o, peers) > 0)
            printf("\nsome goals were MISSED (this is a report: exit status 0)\n");
    }
    for (int j = 0; j < N_PEERS; j++)
        if (o.run[j] && peers[j].failed[0])
            rc = 1; /* a peer could not be measured */
    fflush(stdout);
    for (int j = 0; j < N_PEERS; j++)
        pw_peer_release(&peers[j]);
    if (o.keep)
        printf("kept %s (data and logs)\n", o.cfg.root);
    else if (bench_dir_remove(o.cfg.root) != 0)
        fprintf(stderr, "guild-peers: could not remove %s\n", o.cfg.root);
    nats_Close();
    return rc;
}
