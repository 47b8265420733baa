/*
 * store_bench.c — `guild bench store`: how fast the event store makes events
 * durable and reads them back, next to a bare LMDB loop on the same disk, in
 * one run, with the goals it is held to.
 *
 * Map
 *   - options
 *   - the workload: streams, the event payload
 *   - phases: a table, run in order, one progress line each; the bare loop
 *     the single appender is judged against runs interleaved with it
 *   - the report: summary table and goals
 *
 * Everything lives in a fresh directory (under --dir, or $TMPDIR), removed at
 * the end unless --keep.
 */
#include "bench.h"

#include "common/alloc.h"
#include "common/clock.h"
#include "common/uuid.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define GOAL_RATE_64 100000.0 /* durable events/s with 64 appenders */
#define GOAL_P50_RATIO 1.2    /* single-appender p50 over the bare loop's */
#define DATA_LEN 100
#define LONG_STREAM_EVENTS 20000
#define READ_BATCH 4096

/* ---- options --------------------------------------------------------------- */

typedef struct options {
    double seconds;
    const char *dir;
    bool keep;
    bool command_ids;
    bool random_ids;
    unsigned streams;
} options;

static void usage(FILE *f)
{
    fprintf(f, "usage: guild bench store [options]\n"
               "  --seconds S     length of each phase (default 3)\n"
               "  --quick         short smoke run: 0.3 s a phase\n"
               "  --dir DIR       run in a fresh directory under DIR (default $TMPDIR or /tmp)\n"
               "  --keep          keep the data directory\n"
               "  --streams N     streams the appends pick from at random (default 10000)\n"
               "  --command-ids   give every append a command id (idempotency index)\n"
               "  --random-ids    the same, with random ids (32 hex digits) instead of UUIDv7\n");
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

static int parse_options(int argc, char **argv, options *o)
{
    *o = (options){.seconds = 3.0, .streams = 10000};
    for (int i = 1; i < argc; i++) {
        const char *v;
        char *end;
        if (strcmp(argv[i], "--quick") == 0) {
            o->seconds = 0.3;
        } else if (strcmp(argv[i], "--keep") == 0) {
            o->keep = true;
        } else if (strcmp(argv[i], "--command-ids") == 0) {
            o->command_ids = true;
        } else if (strcmp(argv[i], "--random-ids") == 0) {
            o->command_ids = o->random_ids = true;
        } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            usage(stdout);
            return 1;
        } else if ((v = option_value(argc, argv, &i, "--seconds")) != NULL) {
            errno = 0;
            o->seconds = strtod(v, &end);
            if (errno != 0 || *end != '\0' || !(o->seconds > 0 && o->seconds <= 3600)) {
                fprintf(stderr, "guild bench store: --seconds wants 0 < S <= 3600: %s\n", v);
                return -1;
            }
        } else if ((v = option_value(argc, argv, &i, "--dir")) != NULL) {
            o->dir = v;
        } else if ((v = option_value(argc, argv, &i, "--streams")) != NULL) {
            errno = 0;
            unsigned long n = strtoul(v, &end, 10);
            if (errno != 0 || *end != '\0' || n < 1 || n > 10000000) {
                fprintf(stderr, "guild bench store: --streams wants 1..10000000: %s\n", v);
                return -1;
            }
            o->streams = (unsigned)n;
        } else {
            fprintf(stderr, "guild bench store: unknown option %s\n", argv[i]);
            usage(stderr);
            return -1;
        }
    }
    return 0;
}

/* ---- the workload ------------------------------------------------------------ */

static void mp_str(uint8_t *buf, size_t *o, const char *s)
{
    size_t n = strlen(s);
    if (n < 32) {
        buf[(*o)++] = (uint8_t)(0xa0 | n);
    } else {
        buf[(*o)++] = 0xd9;
        buf[(*o)++] = (uint8_t)n;
    }
    memcpy(buf + *o, s, n);
    *o += n;
}

/* A skill_added-like map of exactly DATA_LEN bytes:
 * {talent_id, skill, level, years, note}, note padding it out. */
static size_t make_payload(uint8_t buf[BENCH_DATA_MAX])
{
    char id[GUILD_UUID_STRLEN + 1], pad[32];
    size_t o = 0;
    guild_uuid7(id);
    buf[o++] = 0x85;
    mp_str(buf, &o, "talent_id");
    mp_str(buf, &o, id);
    mp_str(buf, &o, "skill");
    mp_str(buf, &o, "distributed-systems");
    mp_str(buf, &o, "level");
    buf[o++] = 4;
    mp_str(buf, &o, "years");
    buf[o++] = 7;
    mp_str(buf, &o, "note");
    size_t n = DATA_LEN - o - 1; /* fixstr header */
    memset(pad, 'x', n);
    pad[n] = '\0';
    mp_str(buf, &o, pad);
    return o;
}

static char *make_stream_id(void)
{
    char id[GUILD_UUID_STRLEN + 1], s[64];
    guild_uuid7(id);
    snprintf(s, sizeof s, "talent-%s", id);
    return guild_xstrdup(s);
}

/* "<dir>/<name>" into out; false if it does not fit. */
static bool path_join(char *out, size_t size, const char *dir, const char *name)
{
    int n = snprintf(out, size, "%s/%s", dir, name);
    return n >= 0 && (size_t)n < size;
}

/* ---- phases -------------------------------------------------------------------- */

typedef enum {
    PH_BASELINE,
    PH_APPEND_WAIT,
    PH_APPEND_SUBMIT,
    PH_READ_LOG,
    PH_READ_STREAM,
    PH_LOAD_STREAMS
} phase_kind;

typedef struct phase {
    phase_kind kind;
    unsigned threads, window; /* window: puts per commit for PH_BASELINE */
    bool paired;              /* runs interleaved with the next phase */
    const char *label;
    bench_result res;
    uint64_t writer_ns; /* the store's writer in batches meanwhile */
} phase;

/*
 * The bare 64-put loop runs before the store exists, so that nothing of the
 * store (its idle index checkpoint) shares the disk with it. The 1-put loop
 * and the single appender it is compared with run interleaved, in slices of
 * a quarter second, so that both see the disk in the same state: this disk's
 * sync latency drifts by a third from one second to the next.
 */
static phase phases[] = {
    {PH_BASELINE, 1, 64, false, "bare LMDB, 64 puts per commit", {0}, 0},
    {PH_BASELINE, 1, 1, true, "bare LMDB, 1 put per commit", {0}, 0},
    {PH_APPEND_WAIT, 1, 0, false, "es_append_wait, 1 appender", {0}, 0},
    {PH_APPEND_WAIT, 16, 0, false, "es_append_wait, 16 appenders", {0}, 0},
    {PH_APPEND_WAIT, 64, 0, false, "es_append_wait, 64 appenders", {0}, 0},
    {PH_APPEND_SUBMIT, 1, 1024, false, "es_append_submit, 1 x 1024 window", {0}, 0},
    {PH_APPEND_SUBMIT, 2, 256, false, "es_append_submit, 2 x 256 window", {0}, 0},
    {PH_READ_LOG, 1, 0, false, "es_read_log, whole log", {0}, 0},
    {PH_READ_STREAM, 1, 0, false, "es_read_stream, 20,000-event stream", {0}, 0},
    {PH_LOAD_STREAMS, 1, 0, false, "es_read_stream, whole random streams", {0}, 0},
};
#define N_PHASES (sizeof phases / sizeof phases[0])

static const phase *find_phase(phase_kind kind, unsigned threads, unsigned window)
{
    for (size_t i = 0; i < N_PHASES; i++)
        if (phases[i].kind == kind && phases[i].threads == threads && phases[i].window == window)
            return &phases[i];
    GUILD_BUG("no such phase");
}

static double rate(const bench_result *r)
{
    return r->seconds > 0 ? (double)r->ops / r->seconds : 0;
}

/* "2,345 ev/s  p50 410 us  p99 1.10 ms" and the extras, for the progress line. */
static void print_outcome(const phase *ph)
{
    const bench_result *r = &ph->res;
    char a[32], b[32], c[32], d[32];
    bool one_put = ph->kind == PH_BASELINE && ph->window == 1;
    printf("%s %s/s", bench_fmt_count(rate(r), a, sizeof a),
           one_put                   ? "commits"
           : ph->kind == PH_BASELINE ? "puts"
                                     : "ev");
    if (r->lat.count > 0)
        printf("  p50 %s  p99 %s  max %s",
               bench_fmt_ns(bench_hist_quantile(&r->lat, 0.50), b, sizeof b),
               bench_fmt_ns(bench_hist_quantile(&r->lat, 0.99), c, sizeof c),
               bench_fmt_ns(r->lat.max, d, sizeof d));
    if (r->commits > 0 && !one_put)
        printf("  %.1f ev/commit", (double)r->ops / (double)r->commits);
    if (r->busy >= 0)
        printf("  writer %.0f%% busy", r->busy * 100);
    if (ph->kind == PH_READ_LOG || ph->kind == PH_READ_STREAM)
        printf("  (%s events x %llu passes)",
               bench_fmt_count(r->units ? (double)r->ops / (double)r->units : 0, a, sizeof a),
               (unsigned long long)r->units);
    if (ph->kind == PH_LOAD_STREAMS)
        printf("  (%s loads/s)",
               bench_fmt_count(r->seconds > 0 ? (double)r->units / r->seconds : 0, a, sizeof a));
    if (r->errors > 0)
        printf("  %llu ERRORS, first: %s", (unsigned long long)r->errors, r->first_error);
    printf("\n");
}

/* Runs a store phase for `seconds`, adding to ph->res. */
static void run_store_phase(phase *ph, const bench_workload *wl, double seconds)
{
    es_stats s0, s1;
    es_store_stats(wl->st, &s0);
    uint64_t w0 = bench_io_written();
    switch (ph->kind) {
    case PH_BASELINE:
        GUILD_BUG("not a store phase");
    case PH_APPEND_WAIT:
        bench_store_appenders(wl, ph->threads, seconds, &ph->res);
        break;
    case PH_APPEND_SUBMIT:
        bench_store_submitters(wl, ph->threads, ph->window, seconds, &ph->res);
        break;
    case PH_READ_LOG:
        bench_store_read_log(wl, READ_BATCH, seconds, &ph->res);
        break;
    case PH_READ_STREAM:
        bench_store_read_stream(wl, READ_BATCH, seconds, &ph->res);
        break;
    case PH_LOAD_STREAMS:
        bench_store_load_streams(wl, seconds, &ph->res);
        break;
    }
    ph->res.written += bench_io_written() - w0;
    es_store_stats(wl->st, &s1);
    if (ph->kind == PH_APPEND_WAIT || ph->kind == PH_APPEND_SUBMIT) {
        ph->res.commits += s1.batches - s0.batches;
        ph->writer_ns += s1.commit_ns - s0.commit_ns;
        if (ph->res.seconds > 0)
            ph->res.busy = (double)ph->writer_ns / 1e9 / ph->res.seconds;
    }
}

/* Runs a bare loop (ph) for `seconds`, alone or, when `partner` is set,
 * interleaved with that store phase in slices, each also for `seconds`. */
static void run_baseline(phase *ph, phase *partner, const bench_workload *wl, const char *root,
                         size_t value_len, double seconds)
{
    char path[4096];
    bench_lmdb *b;
    if (!path_join(path, sizeof path, root, "baseline")) {
        bench_result_error(&ph->res, "path too long");
        return;
    }
    if (bench_lmdb_open(path, value_len, ph->window, &b, &ph->res) == 0) {
        unsigned slices = partner == NULL ? 1 : seconds >= 1.0 ? (unsigned)(seconds * 4) : 4;
        for (unsigned k = 0; k < slices; k++) {
            /* ABAB... then BABA...: neither always runs first */
            bool base_first = partner == NULL || (k % 2 == 0) == (k < slices / 2);
            if (!base_first)
                run_store_phase(partner, wl, seconds / slices);
            if (bench_lmdb_run(b, seconds / slices, &ph->res) != 0)
                break;
            if (base_first && partner != NULL)
                run_store_phase(partner, wl, seconds / slices);
        }
        bench_lmdb_close(b);
    }
    bench_dir_remove(path);
}

/* "5.2 KB" */
static char *fmt_bytes(double v, char *buf, size_t size)
{
    if (v < 1024)
        snprintf(buf, size, "%.0f B", v);
    else if (v < 1024 * 1024)
        snprintf(buf, size, "%.1f KB", v / 1024);
    else
        snprintf(buf, size, "%.1f MB", v / 1024 / 1024);
    return buf;
}

/* ---- the report ------------------------------------------------------------------ */

static void print_summary(const options *o, const bench_workload *wl, const char *root,
                          size_t record_len)
{
    char a[32], b[32], c[32], d[32], e[32], f[32], g[32], h[32];
    printf("\nguild bench store: summary\n");
    printf("  %.1f s a phase, %ld CPUs, %s streams, %zu-byte msgpack data (%zu-byte records),\n"
           "  %s, dir %s%s\n\n",
           o->seconds, sysconf(_SC_NPROCESSORS_ONLN), bench_fmt_count(wl->n_streams, a, sizeof a),
           wl->data_len, record_len,
           o->random_ids    ? "random command ids"
           : o->command_ids ? "command ids"
                            : "no command ids",
           root, o->keep ? " (kept)" : " (removed)");
    printf("  %-36s %11s %9s %9s %9s %9s %6s %9s %9s\n", "phase", "events/s", "p50", "p99", "max",
           "ev/commit", "busy", "cpu/ev", "write/ev");
    for (size_t i = 0; i < N_PHASES; i++) {
        const bench_result *r = &phases[i].res;
        bool lat = r->lat.count > 0, any = r->ops > 0;
        snprintf(d, sizeof d, "-");
        if (r->commits > 0)
            snprintf(d, sizeof d, "%.1f", (double)r->ops / (double)r->commits);
        snprintf(e, sizeof e, "-");
        if (r->busy >= 0)
            snprintf(e, sizeof e, "%.0f%%", r->busy * 100);
        printf("  %-36s %11s %9s %9s %9s %9s %6s %9s %9s%s\n", phases[i].label,
               bench_fmt_count(rate(r), a, sizeof a),
               lat ? bench_fmt_ns(bench_hist_quantile(&r->lat, 0.50), b, sizeof b) : "-",
               lat ? bench_fmt_ns(bench_hist_quantile(&r->lat, 0.99), c, sizeof c) : "-",
               lat ? bench_fmt_ns(r->lat.max, h, sizeof h) : "-", d, e,
               any ? bench_fmt_ns((uint64_t)(r->cpu_seconds * 1e9 / (double)r->ops), f, sizeof f)
                   : "-",
               any ? fmt_bytes((double)r->written / (double)r->ops, g, sizeof g) : "-",
               r->errors ? "  ERRORS" : "");
    }
    printf("\n  latency: bare loops per commit; appends from the call until durable (async:\n"
           "  from submit to the done callback, so it includes waiting behind the window);\n"
           "  per load for whole random streams. busy: share of the time the store's writer\n"
           "  spent in batches. cpu/ev: the whole process. write/ev: bytes passed to write(2).\n");
}

/* Prints the goals; returns how many were missed. */
static int print_goals(void)
{
    const phase *base = find_phase(PH_BASELINE, 1, 1);
    const phase *ceiling = find_phase(PH_BASELINE, 1, 64);
    const phase *one = find_phase(PH_APPEND_WAIT, 1, 0);
    const phase *many = find_phase(PH_APPEND_WAIT, 64, 0);
    char a[32], b[32], c[32];
    int missed = 0;

    printf("\ngoals\n");
    double r64 = rate(&many->res);
    bool ok = r64 >= GOAL_RATE_64 && many->res.errors == 0;
    missed += !ok;
    char what[64];
    snprintf(what, sizeof what, "%s ev/s", bench_fmt_count(r64, a, sizeof a));
    printf("  %-46s %-30s %s\n", ">= 100,000 durable events/s with 64 appenders", what,
           ok ? "met" : "MISSED");

    uint64_t p_one = bench_hist_quantile(&one->res.lat, 0.50);
    uint64_t p_base = bench_hist_quantile(&base->res.lat, 0.50);
    double ratio = p_base > 0 ? (double)p_one / (double)p_base : 0;
    ok = p_base > 0 && p_one > 0 && ratio <= GOAL_P50_RATIO && one->res.errors == 0;
    missed += !ok;
    snprintf(what, sizeof what, "%s vs %s = %.2fx", bench_fmt_ns(p_one, b, sizeof b),
             bench_fmt_ns(p_base, c, sizeof c), ratio);
    printf("  %-46s %-30s %s\n", "1-appender p50 <= 1.2 x bare LMDB loop p50", what,
           ok ? "met" : "MISSED");

    /* a sync that sometimes takes 5x its median means the disk is shared or
     * busy: the figures of one run are then worth less than usual */
    if (bench_hist_quantile(&base->res.lat, 0.99) > 5 * p_base)
        printf("\n  note: the bare loop's p99 is over 5x its p50, so the disk was busy with\n"
               "  other work during this run; compare a few runs before trusting one.\n");

    /* what the disk allows: 64 appenders make batches of at most 64 */
    printf("\n  for reference, bare LMDB with 64 puts per commit on this disk: %s ev/s\n"
           "  (about the most 64 synchronous appenders can get with one sync per batch)\n",
           bench_fmt_count(rate(&ceiling->res), a, sizeof a));
    return missed;
}

/* The size of the first record of the log: what each event costs the log. */
static int first_record_size(void *ctx, const es_record *rec)
{
    *(size_t *)ctx = rec->raw_len;
    return 1;
}

/* ---- main ----------------------------------------------------------------------- */

static void workload_release(bench_workload *wl)
{
    for (unsigned i = 0; i < wl->n_streams; i++)
        free(wl->streams[i]);
    free(wl->streams);
    free((char *)(uintptr_t)wl->long_stream);
}

/* Opens a store in "<root>/<name>"; prints why not and returns false. */
static bool store_open(const char *root, const char *name, es_store **st)
{
    char dir[4096];
    guild_error err;
    es_options eo = {.domain = "talent"};
    if (!path_join(dir, sizeof dir, root, name)) {
        fprintf(stderr, "guild bench store: path too long: %s\n", root);
        return false;
    }
    if (mkdir(dir, 0700) != 0) {
        fprintf(stderr, "guild bench store: mkdir %s: %s\n", dir, strerror(errno));
        return false;
    }
    if (es_store_open(dir, &eo, st, &err) != GUILD_OK) {
        fprintf(stderr, "guild bench store: cannot open the store in %s: %s: %s\n", dir,
                guild_status_code(err.status), err.message);
        return false;
    }
    return true;
}

/* The size of one encoded record of the workload, from a throwaway store:
 * what the 64-put loop writes per event. */
static size_t probe_record_len(const bench_workload *wl, const char *root)
{
    size_t len = wl->data_len;
    es_store *st;
    if (!store_open(root, "probe", &st))
        return len;
    es_event_in ev = {BENCH_TYPE, 1, wl->data, wl->data_len};
    es_append req = {
        .stream = wl->streams[0], .expected_version = ES_ANY_VERSION, .events = &ev, .n_events = 1};
    es_result res;
    if (es_append_wait(st, &req, &res) == GUILD_OK)
        es_read_log(st, 1, 1, first_record_size, &len, NULL);
    es_result_release(&res);
    es_store_close(st);
    char dir[4096];
    if (path_join(dir, sizeof dir, root, "probe"))
        bench_dir_remove(dir);
    return len;
}

/* Opens the store the phases use and prefills it; false if that failed. */
static bool store_setup(bench_workload *wl, const char *root)
{
    char a[32], b[32];
    if (!store_open(root, "talent", &wl->st))
        return false;
    printf("[setup] prefill: 1 event in each of %s streams, %s events in one stream ... ",
           bench_fmt_count(wl->n_streams, a, sizeof a),
           bench_fmt_count(LONG_STREAM_EVENTS, b, sizeof b));
    fflush(stdout);
    bench_result pre;
    bench_result_init(&pre);
    bench_store_prefill(wl, LONG_STREAM_EVENTS, &pre);
    printf("%s events in %.2f s\n", bench_fmt_count((double)pre.ops, a, sizeof a), pre.seconds);
    bool ok = pre.errors == 0;
    if (!ok)
        fprintf(stderr, "guild bench store: prefill failed (%llu errors), first: %s\n",
                (unsigned long long)pre.errors, pre.first_error);
    bench_result_release(&pre);
    return ok;
}

static int run(const options *o, const char *root)
{
    bench_workload wl = {0};
    int rc = 1;

    wl.n_streams = o->streams;
    wl.streams = guild_xcalloc(wl.n_streams, sizeof *wl.streams);
    for (unsigned i = 0; i < wl.n_streams; i++)
        wl.streams[i] = make_stream_id();
    wl.long_stream = make_stream_id();
    wl.data_len = make_payload(wl.data);
    wl.command_ids = o->command_ids;
    wl.random_ids = o->random_ids;

    printf("guild bench store: %.1f s a phase, data in %s\n", o->seconds, root);
    size_t record_len = probe_record_len(&wl, root);

    for (size_t i = 0; i < N_PHASES; i++) {
        phase *ph = &phases[i], *partner = ph->paired ? &phases[i + 1] : NULL;
        if (wl.st == NULL && (ph->kind != PH_BASELINE || partner) && !store_setup(&wl, root))
            goto leave;
        if (partner != NULL) {
            printf("[%zu+%zu/%zu] %s, interleaved with %s:\n", i + 1, i + 2, N_PHASES, ph->label,
                   partner->label);
            printf("    [%zu] ", i + 1);
        } else {
            printf("[%zu/%zu] %s ... ", i + 1, N_PHASES, ph->label);
        }
        fflush(stdout);
        if (ph->kind != PH_BASELINE)
            run_store_phase(ph, &wl, o->seconds);
        else /* the 1-put loop carries events' data, the 64-put one whole records */
            run_baseline(ph, partner, &wl, root, ph->window == 1 ? wl.data_len : record_len,
                         o->seconds);
        print_outcome(ph);
        if (partner != NULL) {
            printf("    [%zu] ", ++i + 1);
            print_outcome(partner);
        }
        fflush(stdout);
    }
    print_summary(o, &wl, root, record_len);
    if (print_goals() > 0)
        printf("\nsome goals were MISSED (this is a report: exit status 0)\n");
    rc = 0;

leave:
    es_store_close(wl.st);
    workload_release(&wl);
    return rc;
}

int bench_store_main(int argc, char **argv)
{
    options o;
    int prc = parse_options(argc, argv, &o);
    if (prc != 0)
        return prc > 0 ? 0 : 2;

    char root[4096];
    if (bench_tmpdir_create(o.dir, root, sizeof root) != 0) {
        fprintf(stderr, "guild bench store: cannot create a directory under %s: %s\n",
                o.dir ? o.dir : "$TMPDIR", strerror(errno));
        return 1;
    }
    for (size_t i = 0; i < N_PHASES; i++)
        bench_result_init(&phases[i].res);
    int rc = run(&o, root);
    for (size_t i = 0; i < N_PHASES; i++)
        bench_result_release(&phases[i].res);
    if (!o.keep && bench_dir_remove(root) != 0)
        fprintf(stderr, "guild bench store: could not remove %s\n", root);
    return rc;
}
