/*
 * cmd_bench.h — the parts of `guild bench commands` (commands_bench.c) that
 * live in their own files; not used outside bench/.
 *
 * Map
 *   - cmdb_cluster (cmd_cluster.c): the nats-server and `guild serve`
 *     processes the bench starts, or the running guild it was pointed at;
 *     the account the requests act as; the talent profiles they hit.
 *   - cmdb_client (cmd_load.c): a pipelined NATS client keeping N requests
 *     in flight, on commands or on the echo responder, which lives in the
 *     same file on its own connection.
 *   - cmdb_probe (cmd_load.c): how far the relay's JetStream stream is and
 *     what the service says about itself in $SRV.STATS.
 *   - process CPU time from /proc.
 */
#ifndef GUILD_BENCH_CMD_BENCH_H
#define GUILD_BENCH_CMD_BENCH_H

#include "bench.h"

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define CMDB_DOMAIN "talent"
#define CMDB_STREAM "GUILD_TALENT"
#define CMDB_PATH_MAX 4096
#define CMDB_ROOT_MAX 3072 /* leaves room below it for the names of its files */

/* Set by the SIGINT/SIGTERM handler: every loop ends early and the bench
 * cleans up what it started. */
extern volatile sig_atomic_t cmdb_interrupted;

typedef struct cmdb_client cmdb_client;

/* ---- processes and setup (cmd_cluster.c) ----------------------------------- */

typedef struct cmdb_proc {
    pid_t pid; /* 0 when not running (or not ours) */
    char name[32];
    char log[CMDB_PATH_MAX]; /* where its stdout and stderr go */
    bool ended;              /* cmdb_alive found it gone: `status` is its wait status */
    int status;
} cmdb_proc;

typedef struct cmdb_cluster {
    bool own;                 /* the bench started the broker and the services */
    char root[CMDB_ROOT_MAX]; /* the bench's fresh directory (removed at the end) */
    char data[CMDB_PATH_MAX]; /* guild's --data */
    char url[256];            /* NATS */
    cmdb_proc nats, identity, talent;
    char email[128], password[128];
    char *token;       /* "Bearer <access token>", owned */
    uint64_t token_ns; /* when it was issued (monotonic) */
    char user_id[64];
    char **talent_ids; /* owned */
    unsigned n_talents;
} cmdb_cluster;

/* Starts nats-server (JetStream, store under c->root), then `guild serve
 * identity`, makes the first administrator with c->email and c->password,
 * then `guild serve talent`; each waits until it answers. c->root, email and
 * password are set by the caller. Prints progress. Returns 0, or -1 after
 * printing why (what did start is left for cmdb_cluster_stop). */
int cmdb_cluster_start(cmdb_cluster *c);

/* Logs in as c->email, keeping the token in c->token. Returns 0 or -1
 * after printing why. */
int cmdb_cluster_login(cmdb_cluster *c);

/* Makes `n` talent profiles with the client (in flight `window` at a
 * time), keeping their ids in c->talent_ids. If the account may create
 * profiles only for itself, makes its own (one). Returns 0 or -1 after
 * printing why. */
int cmdb_cluster_profiles(cmdb_cluster *c, cmdb_client *cl, unsigned n, unsigned window);

/* Stops what cmdb_cluster_start started, services first, broker last, and
 * frees the token and ids. */
void cmdb_cluster_stop(cmdb_cluster *c);

/* User + system CPU seconds of process `pid` so far; -1 if unknown. */
double cmdb_proc_cpu(pid_t pid);

/* ---- the pipelined client (cmd_load.c) --------------------------------------- */

typedef enum {
    CMDB_ECHO,    /* request-reply to the echo responder */
    CMDB_COMMAND, /* set_rate or add_skill on a random profile */
    CMDB_CREATE,  /* create_profile for a fresh user id (setup) */
} cmdb_kind;

/* What one run of the client does. */
typedef struct cmdb_spec {
    cmdb_kind kind;
    unsigned in_flight; /* 1..CMDB_MAX_IN_FLIGHT */
    double warmup;      /* seconds before the measured window */
    double seconds;     /* the measured window; 0: until `count` requests are answered */
    uint64_t count;     /* with seconds 0: how many requests in all */
    /* called about every 250 ms during the measured window and once at its
     * end (at_end true, before what is in flight is drained), from the
     * thread that called cmdb_client_run */
    void (*tick)(void *ctx, uint64_t acked_position, bool at_end);
    void *tick_ctx;
} cmdb_spec;

#define CMDB_MAX_IN_FLIGHT 4096
#define CMDB_TIMEOUT_MS 5000

/* Error replies by code, for the report. */
#define CMDB_CODES 8
typedef struct cmdb_outcome {
    bench_result res;      /* ops: replies in the window; lat: requests sent in it */
    uint64_t timeouts;     /* requests unanswered for CMDB_TIMEOUT_MS (not in errors) */
    uint64_t replies;      /* every reply of the runs, warm-up and drain too */
    uint64_t max_position; /* highest `position` in an ok reply */
    double client_cpu;     /* this process's CPU seconds during the runs */
    struct {
        char code[32];
        uint64_t n;
    } codes[CMDB_CODES];
} cmdb_outcome;

void cmdb_outcome_init(cmdb_outcome *o);
void cmdb_outcome_release(cmdb_outcome *o);

/* Connects to `url` with its own inbox subscription; with `echo`, also
 * starts the echo responder on a second connection. With `asap` both write
 * each message at once (natsOptions_SetSendAsap); without, they buffer as
 * guild's connections do. Returns 0 and *out, or -1 after printing why. */
int cmdb_client_create(const char *url, bool echo, bool asap, cmdb_client **out);

/* What the requests carry: the bearer value and the profiles (borrowed,
 * they must outlive the runs). */
void cmdb_client_target(cmdb_client *cl, const char *bearer, char *const *talent_ids,
                        unsigned n_talents);

/* From now on each command carries Guild-Expected-Version: the version
 * the last reply about its profile gave (`initial` until then, for each
 * profile of the last cmdb_client_target), and no two requests about one
 * profile are out at once. A conflict is counted under its code, and the
 * profile goes once without the header to learn its version again. The
 * client must have more profiles than requests in flight. */
void cmdb_client_expect_versions(cmdb_client *cl, uint64_t initial);

/* Runs `spec`, adding to *out. For CMDB_CREATE, each created profile's id
 * is handed to `created` (from a NATS thread, one at a time). */
void cmdb_client_run(cmdb_client *cl, const cmdb_spec *spec, cmdb_outcome *out,
                     void (*created)(void *ctx, const char *talent_id), void *created_ctx);

void cmdb_client_destroy(cmdb_client *cl);

/* ---- the relay and the service, from outside (cmd_load.c) --------------------- */

typedef struct cmdb_probe cmdb_probe;

typedef struct cmdb_service_stats {
    bool ok;
    uint64_t requests, errors; /* the commands endpoint */
    uint64_t processing_ns;    /* its requests' time inside the service, summed */
    uint64_t batches, appends; /* the event store's group commits */
    uint64_t writer_busy_ns;   /* time its writer spent running and committing them */
    uint64_t at_ns;            /* monotonic time of the answer */
    uint64_t relay_lag;        /* events committed but not yet acknowledged by JetStream */
} cmdb_service_stats;

/* A connection of its own for looking. Returns 0 and *out, or -1. */
int cmdb_probe_create(const char *url, cmdb_probe **out);

/* The log position of the last event in the stream (its Guild-Position
 * header; its stream sequence when it has none). Returns 0, or -1. */
int cmdb_probe_stream_position(cmdb_probe *p, uint64_t *out);

/* $SRV.STATS.talent, the commands endpoint. */
void cmdb_probe_service_stats(cmdb_probe *p, cmdb_service_stats *out);

void cmdb_probe_destroy(cmdb_probe *p);

/* Child processes of the benches: start argv as p (output appended to
 * p->log; it dies with the bench), whether it still runs, and a stop
 * (SIGTERM, then SIGKILL after a while). */
int cmdb_spawn(cmdb_proc *p, const char *const argv[]);
bool cmdb_alive(cmdb_proc *p);
void cmdb_stop_proc(cmdb_proc *p);

#endif
