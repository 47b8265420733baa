/*
 * prj_bench.h — the parts of `guild bench project` (project_bench.c) that
 * live in their own files; not used outside bench/.
 *
 * Map
 *   - the talent history (prj_history.c): a deterministic, realistic talent
 *     event log written straight into an event store, and the pools of
 *     skills, locations and currencies it draws from (the queries draw from
 *     them too)
 *   - the replay (prj_replay.c): rebuilding the talent read model from that
 *     log the way `guild project rebuild` does, checking what it holds, and
 *     timing search and match on it
 *   - the lag (prj_lag.c): nats-server, `guild serve identity|talent` and
 *     `guild project all` under a fixed rate of talent commands, and how
 *     long a command takes to show in the read model
 *
 * Every phase prints its own progress and fills a report struct that
 * project_bench.c turns into the summary and the goals.
 */
#ifndef GUILD_BENCH_PRJ_BENCH_H
#define GUILD_BENCH_PRJ_BENCH_H

#include "cmd_bench.h"
#include "projections/prj.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- a small deterministic random generator (xorshift64*) ------------------- */

static inline uint64_t prjb_rand(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *s = x;
    return x * 0x2545F4914F6CDD1Dull;
}

/* Uniform in 0..n-1 (n > 0). */
static inline size_t prjb_below(uint64_t *s, size_t n)
{
    return (size_t)(prjb_rand(s) % n);
}

/* Skewed towards the start of 0..n-1: the first tenth is drawn about a
 * third of the time, like the popular skills and cities of a real site. */
static inline size_t prjb_skewed(uint64_t *s, size_t n)
{
    double u = (double)(prjb_rand(s) >> 11) / (double)(1ull << 53);
    size_t i = (size_t)((double)n * u * u);
    return i < n ? i : n - 1;
}

/* ---- the talent history (prj_history.c) ------------------------------------- */

extern const char *const prjb_skills[];
extern const size_t prjb_n_skills;
extern const char *const prjb_locations[];
extern const size_t prjb_n_locations;
extern const char *const prjb_currencies[];
extern const size_t prjb_n_currencies;

typedef struct prjb_history {
    unsigned profiles;        /* profiles created (profile_created + profile_claimed) */
    uint64_t events;          /* events wanted in all (at least 2 x profiles) */
    char (*talent_ids)[37];   /* `profiles` ids, owned (prjb_history_release) */
    uint64_t by_type[16];     /* events written, per prjb_event_types */
    unsigned archived;        /* profiles archived */
    uint64_t appends, errors; /* appends committed, failed */
    char first_error[200];
    double seconds;     /* wall time of the writing */
    uint64_t log_bytes; /* size of data.mdb at the end */
} prjb_history;

extern const char *const prjb_event_types[]; /* NULL-terminated */

/* Writes the history into a new event store in `dir` (which must exist):
 * h->profiles profiles, then events on profiles drawn at random until
 * h->events are written, through es_append_submit with up to `window`
 * appends in flight. Prints progress when `tty`. Returns 0, or -1 with
 * h->first_error set. */
int prjb_history_write(const char *dir, prjb_history *h, unsigned window, bool tty);

void prjb_history_release(prjb_history *h);

/* ---- the replay (prj_replay.c) ---------------------------------------------- */

typedef struct prjb_rebuild {
    uint64_t events; /* records read from the log */
    uint64_t applied, skipped, parked;
    uint64_t batches;
    double seconds;       /* read + apply, as `guild project rebuild` counts it */
    double apply_seconds; /* of which inside prj_store_apply */
    double cpu_seconds;
    uint64_t position; /* the model's checkpoint at the end */
    char digest[2 * PRJ_DIGEST_LEN + 1];
    uint64_t found, live; /* ids get_profile answers; of them not archived */
    double check_seconds;
    uint64_t dead_letters; /* entries of the dead-letter table */
    uint64_t model_bytes;  /* size of the model's data.mdb */
    char first_error[200];
} prjb_rebuild;

/* Replays the event store in `events_dir` into a fresh talent model in
 * `model_dir` (which must exist and be empty) with prj_store_replay, in a
 * process of its own, exactly as `guild project rebuild` does; then checks
 * that get_profile answers for each of h's ids. On
 * success *store is the open model (close it with prj_store_close).
 * Returns 0 or -1 with r->first_error set. */
int prjb_rebuild_run(const char *events_dir, const char *model_dir, const prjb_history *h, bool tty,
                     prjb_rebuild *r, prj_store **store);

/* The replay process's side (`guild bench project --rebuild-child EVENTS
 * MODEL`, run by prjb_rebuild_run): replays, then writes its prjb_rebuild
 * to out_fd. The exit status. */
int prjb_rebuild_child(const char *events_dir, const char *model_dir, int out_fd);

/* The kinds of query phase 2 times: searches and match, then get_profile
 * with its data as JSON written through a tree and straight from the row. */
#define PRJB_QUERY_KINDS 9

typedef struct prjb_query_kind {
    const char *label; /* what it asks, for the report */
    bench_hist lat;    /* per query, ns */
    uint64_t runs, errors;
    uint64_t results; /* rows answered, summed */
    uint64_t empty;   /* queries that answered nothing */
    char first_error[200];
    char example[200]; /* the arguments of one of them */
} prjb_query_kind;

void prjb_queries_init(prjb_query_kind k[PRJB_QUERY_KINDS]);
void prjb_queries_release(prjb_query_kind k[PRJB_QUERY_KINDS]);

/* Runs `per_kind` random queries of each kind through prj_store_query (or
 * prj_store_query_json), the kinds interleaved, timing each; get_profile
 * asks for h's ids. */
void prjb_queries_run(prj_store *s, const prjb_history *h, unsigned per_kind,
                      prjb_query_kind k[PRJB_QUERY_KINDS]);

/* ---- the lag (prj_lag.c) ----------------------------------------------------- */

#define PRJB_STREAM_POLL_MS 10 /* how often the stream is looked at (two requests a look) */

typedef struct prjb_lag_options {
    const char *root;      /* the bench's directory (the cluster lives under it) */
    unsigned profiles;     /* made through create_profile before the load */
    double rate;           /* commands per second wanted */
    double seconds;        /* measured window */
    double warmup;         /* before it, at the same rate */
    unsigned sample_every; /* one command in this many gets a consistency query */
    double poll_ms;        /* how often the projector's status is polled */
    bool tty;              /* progress lines may be rewritten in place */
} prjb_lag_options;

typedef struct prjb_lag {
    bool ran;
    uint64_t sent, replied, ok, errors, timeouts; /* commands in the measured window */
    uint64_t behind_max; /* most commands the sender fell behind its schedule */
    double seconds;      /* of the window */
    uint64_t answered;   /* ok replies that arrived in the window (to any command) */
    double achieved;     /* answered per second of the window: what the service kept up with */
    bench_hist cmd_lat;  /* command: publish to reply */
    bench_hist lag;      /* reply to the answer of a query with its consistency token */
    uint64_t lag_queries, lag_errors;
    char lag_first_error[200];
    bench_hist poll_lag; /* reply to the first status poll showing its position */
    uint64_t polls;
    bench_hist relay_lag; /* reply to the first look at the stream that holds its event */
    uint64_t stream_polls;
    uint64_t events_behind_max; /* events_behind in the projector's status, largest polled */
    bench_hist query_rtt;       /* the same query without a token, before the load */
    bench_hist query_load_rtt;  /* and during it (one command in sample_every, too) */
    bench_hist status_rtt;      /* a status request during the load (waits for a batch's apply) */
    double catchup; /* from the last command sent until the model had them all; <0 never */
    uint64_t max_position;
    /* CPU cores kept busy while the load ran (CPU s / wall s); < 0 unknown */
    double talent_cpu, projector_cpu, nats_cpu, bench_cpu;
    uint64_t events_applied; /* by the projector in the window (its status) */
    uint64_t batches;        /* the transactions they took */
    char first_error[200];
    char died[CMDB_PATH_MAX + 160]; /* a process of the run that ended during it, and how; "" */
    uint64_t consumer_restarts;     /* the projector's, at the end (its status) */
} prjb_lag;

void prjb_lag_init(prjb_lag *l);
void prjb_lag_release(prjb_lag *l);

/* Starts the cluster, drives the load, stops everything it started.
 * Returns 0, or -1 after printing why it could not run. */
int prjb_lag_run(const prjb_lag_options *o, prjb_lag *out);

#endif
