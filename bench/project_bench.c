/*
 * project_bench.c — `guild bench project`: how fast the talent read model is
 * rebuilt, how fast it answers search and match, and how far it trails the
 * commands under load; with the goals it is held to.
 *
 * Map
 *   - options
 *   - the phases, each printing its progress:
 *       1. a realistic talent history (prj_history.c) written straight into
 *          an event store, replayed into a fresh model as `guild project
 *          rebuild` does (prj_replay.c)
 *       2. search and match on that model through prj_store_query
 *       3. nats-server, guild serve identity and talent, guild project all,
 *          a fixed rate of commands, and the lag (prj_lag.c)
 *   - the report: summary and goals
 *
 * Everything lives in a fresh directory (under --dir, or $TMPDIR), removed
 * at the end unless --keep.
 */
#include "bench.h"
#include "prj_bench.h"

#include "common/clock.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GOAL_REBUILD 200000.0 /* events/s */
#define GOAL_LAG_P99_NS 50000000ull
#define GOAL_RATE_SHARE 0.95 /* of the wanted rate, for the lag goal to count */
#define WRITE_WINDOW 4096u   /* appends in flight while writing the history */

/* ---- options ------------------------------------------------------------------ */

typedef struct options {
    unsigned profiles;
    uint64_t events;
    unsigned queries;
    double rate, seconds, warmup;
    unsigned lag_profiles, sample_every;
    double poll_ms;
    const char *dir;
    bool keep, no_lag, lag_only, quick;
} options;

static void usage(FILE *f)
{
    fprintf(f, "usage: guild bench project [options]\n"
               "  --profiles N      talent profiles in the history (default 100000)\n"
               "  --events N        events in the history (default 1000000)\n"
               "  --queries N       queries of each kind timed on the model (default 500)\n"
               "  --rate R          commands per second under which the lag is measured "
               "(default 10000)\n"
               "  --seconds S       length of the measured load (default 5)\n"
               "  --lag-profiles N  profiles the commands of the load pick from (default 1000)\n"
               "  --sample N        one command in N gets a consistency query (default 20)\n"
               "  --no-lag          skip phase 3 (no NATS, no services)\n"
               "  --lag-only        run phase 3 only\n"
               "  --quick           short smoke run: 10,000 profiles, 100,000 events, 1 s of load\n"
               "  --dir DIR         work in a fresh directory under DIR (default $TMPDIR or /tmp)\n"
               "  --keep            keep that directory (stores and logs)\n");
}

/* The value of option argv[*i] ("--x v" or "--x=v"), or NULL. */
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

/* A number in [lo, hi] from v, or a message and false. */
static bool number(const char *name, const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno != 0 || *end != '\0' || !(x >= lo && x <= hi)) {
        fprintf(stderr, "guild bench project: %s wants %g to %g: %s\n", name, lo, hi, v);
        return false;
    }
    *out = x;
    return true;
}

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){.profiles = 100000,
                   .events = 1000000,
                   .queries = 500,
                   .rate = 10000,
                   .seconds = 5,
                   .warmup = 1,
                   .lag_profiles = 1000,
                   .sample_every = 20,
                   .poll_ms = 5};
    bool given[5] = {false};
    for (int i = 1; i < argc; i++) {
        const char *v;
        double x;
        if (strcmp(argv[i], "--quick") == 0) {
            o->quick = true;
        } else if (strcmp(argv[i], "--keep") == 0) {
            o->keep = true;
        } else if (strcmp(argv[i], "--no-lag") == 0) {
            o->no_lag = true;
        } else if (strcmp(argv[i], "--lag-only") == 0) {
            o->lag_only = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 1;
        } else if ((v = option_value(argc, argv, &i, "--profiles")) != NULL) {
            if (!number("--profiles", v, 1, 10000000, &x))
                return -1;
            o->profiles = (unsigned)x;
            given[0] = true;
        } else if ((v = option_value(argc, argv, &i, "--events")) != NULL) {
            if (!number("--events", v, 1, 1e9, &x))
                return -1;
            o->events = (uint64_t)x;
            given[1] = true;
        } else if ((v = option_value(argc, argv, &i, "--queries")) != NULL) {
            if (!number("--queries", v, 1, 1e6, &x))
                return -1;
            o->queries = (unsigned)x;
            given[2] = true;
        } else if ((v = option_value(argc, argv, &i, "--rate")) != NULL) {
            if (!number("--rate", v, 1, 1e6, &o->rate))
                return -1;
        } else if ((v = option_value(argc, argv, &i, "--seconds")) != NULL) {
            if (!number("--seconds", v, 0.1, 3600, &o->seconds))
                return -1;
            given[3] = true;
        } else if ((v = option_value(argc, argv, &i, "--lag-profiles")) != NULL) {
            if (!number("--lag-profiles", v, 1, 1000000, &x))
                return -1;
            o->lag_profiles = (unsigned)x;
            given[4] = true;
        } else if ((v = option_value(argc, argv, &i, "--sample")) != NULL) {
            if (!number("--sample", v, 1, 1e6, &x))
                return -1;
            o->sample_every = (unsigned)x;
        } else if ((v = option_value(argc, argv, &i, "--dir")) != NULL) {
            o->dir = v;
        } else {
            fprintf(stderr, "guild bench project: unknown option %s\n", argv[i]);
            usage(stderr);
            return -1;
        }
    }
    if (o->quick) {
        o->profiles = given[0] ? o->profiles : 10000;
        o->events = given[1] ? o->events : 100000;
        o->queries = given[2] ? o->queries : 100;
        o->seconds = given[3] ? o->seconds : 1;
        o->lag_profiles = given[4] ? o->lag_profiles : 200;
        o->warmup = 0.5;
    }
    return 0;
}

/* ---- what the run keeps ------------------------------------------------------------- */

typedef struct run {
    const options *o;
    char root[CMDB_ROOT_MAX];
    double load_before, load_after;
    bool tty;
    prjb_history h;
    bool wrote;
    prjb_rebuild rb;
    bool rebuilt;
    prjb_query_kind q[PRJB_QUERY_KINDS];
    bool queried;
    prjb_lag lag;
} run;

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

static double mib(uint64_t bytes)
{
    return (double)bytes / (1024.0 * 1024.0);
}

/* ---- phases 1 and 2 -------------------------------------------------------------------- */

/* The auditor's side of the same history: `guild events verify` (the chain,
 * positions, versions and index, in one snapshot) and `guild events export`
 * (every field of every record as JSON lines), timed. */
static int phase_audit(run *r, const char *events)
{
    char a[32], b[32];
    es_options o = {.read_only = true};
    es_store *st = NULL;
    guild_error err = {0};
    if (es_store_open(events, &o, &st, &err) != GUILD_OK) {
        fprintf(stderr, "guild bench project: %s\n", err.message);
        return -1;
    }
    es_verify_report rep;
    uint64_t t0 = guild_mono_ns();
    guild_status s = es_verify(st, &rep, NULL, NULL);
    double secs = (double)(guild_mono_ns() - t0) / 1e9;
    es_store_close(st);
    if (s != GUILD_OK || !rep.intact) {
        fprintf(stderr, "guild bench project: verify: %s\n", rep.what);
        return -1;
    }
    double rate = (double)rep.checked / secs;
    printf("[1/3] verify: %s events in %.2f s, %s events/s, intact (goal >= 1,000,000/s: %s)\n",
           bench_fmt_count((double)rep.checked, a, sizeof a), secs,
           bench_fmt_count(rate, b, sizeof b), rate >= 1e6 ? "met" : "MISSED");

    /* export runs the real command on the same store: <root>/audit/talent/events */
    char link_dir[CMDB_ROOT_MAX + 32], link[CMDB_ROOT_MAX + 64], cmd[2 * CMDB_ROOT_MAX + 1200];
    snprintf(link_dir, sizeof link_dir, "%s/audit", r->root);
    mkdir(link_dir, 0755);
    snprintf(link_dir, sizeof link_dir, "%s/audit/talent", r->root);
    mkdir(link_dir, 0755);
    snprintf(link, sizeof link, "%s/events", link_dir);
    if (symlink(events, link) != 0 && errno != EEXIST) {
        fprintf(stderr, "guild bench project: symlink %s: %s\n", link, strerror(errno));
        return -1;
    }
    char self[1024];
    ssize_t sn = readlink("/proc/self/exe", self, sizeof self - 1);
    self[sn > 0 ? sn : 0] = '\0';
    snprintf(cmd, sizeof cmd, "'%s' events export talent --data '%s/audit'", self, r->root);
    t0 = guild_mono_ns();
    FILE *p = popen(cmd, "r");
    if (!p) {
        fprintf(stderr, "guild bench project: cannot run export\n");
        return -1;
    }
    char buf[1 << 16];
    uint64_t lines = 0, bytes = 0;
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0) {
        bytes += n;
        for (size_t i = 0; i < n; i++)
            lines += buf[i] == '\n';
    }
    int rc = pclose(p);
    secs = (double)(guild_mono_ns() - t0) / 1e9;
    unlink(link);
    printf("[1/3] export: %s JSON lines (%.0f MiB) in %.2f s, %s events/s%s\n",
           bench_fmt_count((double)lines, a, sizeof a), mib(bytes), secs,
           bench_fmt_count((double)lines / secs, b, sizeof b), rc == 0 ? "" : " (export failed)");
    fflush(stdout);
    return 0;
}

static int phase_rebuild(run *r)
{
    char events[CMDB_ROOT_MAX + 16], model[CMDB_ROOT_MAX + 16], a[32], b[32];
    snprintf(events, sizeof events, "%s/events", r->root);
    snprintf(model, sizeof model, "%s/model", r->root);
    if (mkdir(events, 0755) != 0 || mkdir(model, 0755) != 0) {
        fprintf(stderr, "guild bench project: mkdir under %s: %s\n", r->root, strerror(errno));
        return -1;
    }
    r->h.profiles = r->o->profiles;
    r->h.events = r->o->events;
    printf("[1/3] writing a talent history: %s profiles, %s events, %u appends in flight\n",
           bench_fmt_count(r->h.profiles, a, sizeof a),
           bench_fmt_count((double)r->h.events, b, sizeof b), WRITE_WINDOW);
    fflush(stdout);
    if (prjb_history_write(events, &r->h, WRITE_WINDOW, r->tty) != 0) {
        fprintf(stderr, "guild bench project: writing the history: %s\n", r->h.first_error);
        return -1;
    }
    r->wrote = true;
    printf("[1/3] wrote %s events in %.1f s (%s/s), log %.0f MiB\n",
           bench_fmt_count((double)r->h.appends, a, sizeof a), r->h.seconds,
           bench_fmt_count((double)r->h.appends / r->h.seconds, b, sizeof b), mib(r->h.log_bytes));
    if (phase_audit(r, events) != 0)
        return -1;
    printf("[1/3] rebuilding the talent model from it as `guild project rebuild` does\n");
    fflush(stdout);
    prj_store *store = NULL;
    if (prjb_rebuild_run(events, model, &r->h, r->tty, &r->rb, &store) != 0) {
        fprintf(stderr, "guild bench project: rebuilding: %s\n", r->rb.first_error);
        return -1;
    }
    r->rebuilt = true;
    printf("[1/3] rebuilt %s events in %.2f s: %s events/s; digest %.16s…\n",
           bench_fmt_count((double)r->rb.events, a, sizeof a), r->rb.seconds,
           bench_fmt_count((double)r->rb.events / r->rb.seconds, b, sizeof b), r->rb.digest);

    printf("[2/3] %u queries of each of %d kinds at %s profiles ... ", r->o->queries,
           PRJB_QUERY_KINDS, bench_fmt_count(r->rb.live, a, sizeof a));
    fflush(stdout);
    uint64_t t0 = guild_mono_ns();
    prjb_queries_run(store, &r->h, r->o->queries, r->q);
    printf("%.2f s\n", (double)(guild_mono_ns() - t0) / 1e9);
    r->queried = !cmdb_interrupted;
    prj_store_close(store);
    if (!r->o->keep) { /* phase 3 starts with the disk's caches to itself */
        bench_dir_remove(events);
        bench_dir_remove(model);
    }
    return cmdb_interrupted ? -1 : 0;
}

/* ---- the report ------------------------------------------------------------------------ */

static char *fmt_q(const bench_hist *h, double q, char *buf, size_t size)
{
    if (h->count == 0) {
        snprintf(buf, size, "-");
        return buf;
    }
    return bench_fmt_ns(q >= 1 ? h->max : bench_hist_quantile(h, q), buf, size);
}

static void print_history(const run *r)
{
    char a[32], b[32];
    printf("  history: %s profiles (%u archived), %s events, log %.0f MiB, written in %.1f s\n",
           bench_fmt_count(r->h.profiles, a, sizeof a), r->h.archived,
           bench_fmt_count((double)r->h.appends, b, sizeof b), mib(r->h.log_bytes), r->h.seconds);
    printf("    ");
    for (int i = 0, col = 4; prjb_event_types[i]; i++) {
        if (!r->h.by_type[i])
            continue;
        char item[64];
        int n = snprintf(item, sizeof item, "%s %s  ", prjb_event_types[i],
                         bench_fmt_count((double)r->h.by_type[i], a, sizeof a));
        if (col + n > 96) {
            printf("\n    ");
            col = 4;
        }
        printf("%s", item);
        col += n;
    }
    printf("\n");
}

static void print_rebuild(const run *r)
{
    const prjb_rebuild *rb = &r->rb;
    char a[32], b[32], c[32], d[32], e[32];
    printf("\n  rebuild (prj_store_replay in a process of its own: the log read in pages of "
           "4096, 1,048,576 events to a transaction)\n");
    printf("    %s events in %.2f s = %s events/s; %.0f%% of the time applying and committing, "
           "CPU %.2f s\n",
           bench_fmt_count((double)rb->events, a, sizeof a), rb->seconds,
           bench_fmt_count(rb->seconds > 0 ? (double)rb->events / rb->seconds : 0, b, sizeof b),
           rb->seconds > 0 ? 100 * rb->apply_seconds / rb->seconds : 0, rb->cpu_seconds);
    printf("    applied %s, skipped %s, parked %s; checkpoint at %s; model %.0f MiB\n",
           bench_fmt_count((double)rb->applied, a, sizeof a),
           bench_fmt_count((double)rb->skipped, b, sizeof b),
           bench_fmt_count((double)rb->parked, c, sizeof c),
           bench_fmt_count((double)rb->position, d, sizeof d), mib(rb->model_bytes));
    printf("    digest %s\n", rb->digest);
    printf("    get_profile answers for %s of the %s ids (%s live, %s archived); "
           "%s dead letters%s%s\n",
           bench_fmt_count((double)rb->found, a, sizeof a),
           bench_fmt_count(r->h.profiles, b, sizeof b),
           bench_fmt_count((double)rb->live, c, sizeof c),
           bench_fmt_count((double)(rb->found - rb->live), d, sizeof d),
           bench_fmt_count((double)rb->dead_letters, e, sizeof e), rb->dead_letters ? "; " : "",
           rb->dead_letters ? rb->first_error : "");
}

static void print_queries(const run *r)
{
    char a[32], b[32], c[32];
    printf("\n  queries on the rebuilt model (prj_store_query in process, %s live profiles, "
           "limit 20)\n",
           bench_fmt_count((double)r->rb.live, a, sizeof a));
    printf("    %-30s %6s %9s %9s %9s %9s %6s %6s\n", "kind", "runs", "p50", "p99", "max", "rows/q",
           "empty", "errors");
    for (int i = 0; i < PRJB_QUERY_KINDS; i++) {
        const prjb_query_kind *k = &r->q[i];
        uint64_t ok = k->runs - k->errors;
        printf("    %-30s %6llu %9s %9s %9s %9.1f %6llu %6llu\n", k->label,
               (unsigned long long)k->runs, fmt_q(&k->lat, 0.5, a, sizeof a),
               fmt_q(&k->lat, 0.99, b, sizeof b), fmt_q(&k->lat, 1, c, sizeof c),
               ok ? (double)k->results / (double)ok : 0.0, (unsigned long long)k->empty,
               (unsigned long long)k->errors);
        if (k->errors)
            printf("      first error: %s\n", k->first_error);
    }
    printf("    e.g. ");
    for (int i = 0; i < PRJB_QUERY_KINDS; i += 4)
        printf("%s%s", i ? "; " : "", r->q[i].example);
    printf("\n");
}

static void print_cores(const char *name, double v)
{
    if (v < 0)
        printf(" %s -", name);
    else
        printf(" %s %.2f", name, v);
}

static void print_lag(const run *r)
{
    const prjb_lag *l = &r->lag;
    char a[32], b[32], c[32], d[32];
    printf("\n  lag under load (guild serve talent + guild project all, %s profiles)\n",
           bench_fmt_count(r->o->lag_profiles, a, sizeof a));
    printf("    commands: wanted %s/s, sent %s/s, answered %s/s over %.1f s (set_rate, "
           "add_skill,\n      set_availability in turn)\n",
           bench_fmt_count(r->o->rate, a, sizeof a),
           bench_fmt_count(l->seconds > 0 ? (double)l->sent / l->seconds : 0, b, sizeof b),
           bench_fmt_count(l->achieved, c, sizeof c), l->seconds);
    printf("      sent %llu, ok %llu, errors %llu, timeouts %llu; sender behind schedule at most "
           "%llu; reply p50 %s p99 %s\n",
           (unsigned long long)l->sent, (unsigned long long)l->ok, (unsigned long long)l->errors,
           (unsigned long long)l->timeouts, (unsigned long long)l->behind_max,
           fmt_q(&l->cmd_lat, 0.5, a, sizeof a), fmt_q(&l->cmd_lat, 0.99, b, sizeof b));
    if (l->errors)
        printf("      first error: %s\n", l->first_error);
    printf("    lag by consistency token: p50 %s  p99 %s  max %s  (%llu queries, %llu failed)\n",
           fmt_q(&l->lag, 0.5, a, sizeof a), fmt_q(&l->lag, 0.99, b, sizeof b),
           fmt_q(&l->lag, 1, c, sizeof c), (unsigned long long)l->lag.count,
           (unsigned long long)l->lag_errors);
    if (l->lag_errors)
        printf("      first failure: %s\n", l->lag_first_error);
    printf("      (includes one query round trip: get_profile without a token p50 %s p99 %s "
           "idle,\n       p50 %s p99 %s during the load)\n",
           fmt_q(&l->query_rtt, 0.5, a, sizeof a), fmt_q(&l->query_rtt, 0.99, b, sizeof b),
           fmt_q(&l->query_load_rtt, 0.5, c, sizeof c),
           fmt_q(&l->query_load_rtt, 0.99, d, sizeof d));
    printf("    lag by status polling:    p50 %s  p99 %s  max %s  (%llu commands, %llu polls "
           "every %.0f ms)\n",
           fmt_q(&l->poll_lag, 0.5, a, sizeof a), fmt_q(&l->poll_lag, 0.99, b, sizeof b),
           fmt_q(&l->poll_lag, 1, c, sizeof c), (unsigned long long)l->poll_lag.count,
           (unsigned long long)l->polls, r->o->poll_ms);
    printf("      (a status request, which waits while a batch is applied: p50 %s p99 %s during "
           "the load)\n",
           fmt_q(&l->status_rtt, 0.5, a, sizeof a), fmt_q(&l->status_rtt, 0.99, b, sizeof b));
    printf("    of which the relay (reply to the event in %s): p50 %s  p99 %s  max %s  "
           "(%llu looks every %d ms)\n",
           CMDB_STREAM, fmt_q(&l->relay_lag, 0.5, a, sizeof a),
           fmt_q(&l->relay_lag, 0.99, b, sizeof b), fmt_q(&l->relay_lag, 1, c, sizeof c),
           (unsigned long long)l->stream_polls, PRJB_STREAM_POLL_MS);
    printf(
        "    projector: %s events applied in the window (%s/s) in %llu transactions (%.1f "
        "events each), events_behind at most %llu; ",
        bench_fmt_count((double)l->events_applied, a, sizeof a),
        bench_fmt_count(l->seconds > 0 ? (double)l->events_applied / l->seconds : 0, b, sizeof b),
        (unsigned long long)l->batches,
        l->batches ? (double)l->events_applied / (double)l->batches : 0.0,
        (unsigned long long)l->events_behind_max);
    if (l->died[0])
        printf("it did NOT catch up\n    %s\n", l->died);
    else if (l->catchup < 0)
        printf("it did NOT catch up\n");
    else
        printf("it had them all %s after the last command was sent\n",
               bench_fmt_ns((uint64_t)(l->catchup * 1e9), d, sizeof d));
    if (l->consumer_restarts > 0)
        printf("    the projector made its consumer again %llu times (after a gap, a failed fetch "
               "or a stall: see its log)\n",
               (unsigned long long)l->consumer_restarts);
    printf("    CPU cores busy during the load:");
    print_cores("talent", l->talent_cpu);
    print_cores("projector", l->projector_cpu);
    print_cores("nats-server", l->nats_cpu);
    print_cores("bench", l->bench_cpu);
    printf(" (of %ld)\n", sysconf(_SC_NPROCESSORS_ONLN));
}

static void print_summary(const run *r)
{
    printf("\nguild bench project: summary\n");
    printf("  %ld CPUs", sysconf(_SC_NPROCESSORS_ONLN));
    if (r->load_before >= 0)
        printf(", load average (1 min) %.2f before, %.2f after", r->load_before, r->load_after);
    printf("%s\n", r->o->quick ? "; --quick: a smoke run, not a measurement" : "");
    if (r->wrote)
        print_history(r);
    if (r->rebuilt)
        print_rebuild(r);
    if (r->queried)
        print_queries(r);
    if (r->lag.ran)
        print_lag(r);
}

static const char *verdict(bool ok)
{
    return ok ? "met" : "MISSED";
}

/* Prints the goals; returns how many were missed. */
static int print_goals(const run *r)
{
    char a[32], b[32], what[96];
    int missed = 0;
    printf("\ngoals\n");
    double rate = r->rebuilt && r->rb.seconds > 0 ? (double)r->rb.events / r->rb.seconds : 0;
    if (r->o->lag_only) {
        printf("  %-46s %-34s %s\n", "rebuild >= 200,000 events/s", "not run (--lag-only)", "-");
    } else {
        bool ok = r->rebuilt && r->rb.parked == 0 && rate >= GOAL_REBUILD;
        missed += !ok;
        snprintf(what, sizeof what, "%s events/s", bench_fmt_count(rate, a, sizeof a));
        printf("  %-46s %-34s %s\n", "rebuild >= 200,000 events/s", r->rebuilt ? what : "not run",
               verdict(ok));
    }
    if (r->o->no_lag) {
        printf("  %-46s %-34s %s\n", "lag p99 < 50 ms at 10,000 commands/s", "not run (--no-lag)",
               "-");
        return missed;
    }
    const prjb_lag *l = &r->lag;
    uint64_t p99 = bench_hist_quantile(&l->lag, 0.99);
    bool rate_ok = l->achieved >= GOAL_RATE_SHARE * r->o->rate;
    bool ok = l->ran && l->lag.count > 0 && l->lag_errors == 0 && p99 < GOAL_LAG_P99_NS &&
              rate_ok && r->o->rate >= 10000 && !l->died[0];
    missed += !ok;
    if (l->lag.count == 0)
        snprintf(what, sizeof what, "no query answered at %s cmd/s",
                 bench_fmt_count(l->achieved, b, sizeof b));
    else
        snprintf(what, sizeof what, "p99 %s at %s cmd/s", bench_fmt_ns(p99, a, sizeof a),
                 bench_fmt_count(l->achieved, b, sizeof b));
    printf("  %-46s %-34s %s\n", "lag p99 < 50 ms at 10,000 commands/s", l->ran ? what : "not run",
           verdict(ok));
    if (l->ran && !rate_ok)
        printf("    (the services answered %.0f%% of the %s commands/s wanted: on this machine "
               "the\n    write side does not take the rate the goal is set at)\n",
               100 * l->achieved / r->o->rate, bench_fmt_count(r->o->rate, a, sizeof a));
    return missed;
}

/* ---- main ---------------------------------------------------------------------------------- */

static void on_signal(int sig)
{
    (void)sig;
    cmdb_interrupted = 1;
}

int bench_project_main(int argc, char **argv)
{
    if (argc == 4 && strcmp(argv[1], "--rebuild-child") == 0)
        return prjb_rebuild_child(argv[2], argv[3], 3);
    options o;
    int prc = parse_options(argc, argv, &o);
    if (prc != 0)
        return prc > 0 ? 0 : 2;
    run r = {.o = &o, .tty = isatty(1)};
    if (bench_tmpdir_create(o.dir, r.root, sizeof r.root) != 0) {
        fprintf(stderr, "guild bench project: cannot create a directory under %s: %s\n",
                o.dir ? o.dir : "$TMPDIR", strerror(errno));
        return 1;
    }
    struct sigaction sa = {0}, old_int, old_term, old_pipe;
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, &old_int);
    sigaction(SIGTERM, &sa, &old_term);
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, &old_pipe);
    prjb_queries_init(r.q);
    prjb_lag_init(&r.lag);

    printf("guild bench project: work directory %s\n", r.root);
    r.load_before = load_average();
    int rc = o.lag_only ? 0 : phase_rebuild(&r);
    if (rc == 0 && !o.no_lag) {
        prjb_lag_options lo = {.root = r.root,
                               .profiles = o.lag_profiles,
                               .rate = o.rate,
                               .seconds = o.seconds,
                               .warmup = o.warmup,
                               .sample_every = o.sample_every,
                               .poll_ms = o.poll_ms,
                               .tty = r.tty};
        printf("[3/3] starting nats-server, guild serve identity and talent, guild project all\n");
        fflush(stdout);
        rc = prjb_lag_run(&lo, &r.lag);
    }
    r.load_after = load_average();
    if (cmdb_interrupted) {
        printf("\ninterrupted: stopping\n");
    } else {
        print_summary(&r);
        if (print_goals(&r) > 0)
            printf("\nsome goals were MISSED (this is a report: exit status 0)\n");
    }
    fflush(stdout);
    prjb_history_release(&r.h);
    prjb_queries_release(r.q);
    prjb_lag_release(&r.lag);
    if (o.keep)
        printf("kept %s (stores and logs)\n", r.root);
    else if (bench_dir_remove(r.root) != 0)
        fprintf(stderr, "guild bench project: could not remove %s\n", r.root);
    sigaction(SIGINT, &old_int, NULL);
    sigaction(SIGTERM, &old_term, NULL);
    sigaction(SIGPIPE, &old_pipe, NULL);
    return rc == 0 && !cmdb_interrupted ? 0 : 1;
}
