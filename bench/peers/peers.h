/*
 * peers.h — `guild-peers` (make bench-peers): guild next to the event stores
 * people use today, on the same workload, on this machine.
 *
 * Map
 *   - peers.c: options, running the peers in turn, the report and its goals
 *   - workload.c: the streams and what is known of them (pw_table), the
 *     measured window, the event every append carries, processes the bench
 *     starts and machine CPU time
 *   - peer_pg.c: PostgreSQL as Message DB and Marten use it
 *   - peer_js.c: NATS JetStream used directly as the event store
 *   - peer_guild.c: guild's commands over NATS (a nats-server and guild
 *     services started through cmd_bench.h) and guild's store in-process
 *   - peer_echo.c: a bare NATS request/reply echo, the ceiling of any
 *     service behind NATS on this machine
 *
 * The workload, the same for every peer
 *   `n_streams` streams get one event each and one long stream gets
 *   `long_events` before anything is measured. Then, for each number K of
 *   writers, K appends stay in flight for a warm-up and a measured window
 *   (cut in slices that the peers take in turn, see pw_peer_ops): each
 *   appends one event with an expected version to a stream chosen at random
 *   among those no other writer holds (so a conflict is a bug, not luck),
 *   learns the new version from the reply, and goes on. Last, the long
 *   stream is read whole and the whole log once.
 *
 * This program is built apart from guild (bench/peers/Makefile) so that the
 * main build and CI never need libpq; it links guild's static libraries.
 */
#ifndef GUILD_BENCH_PEERS_H
#define GUILD_BENCH_PEERS_H

#include "bench.h"

#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define PW_MAX_WRITERS 8      /* rows of writer counts */
#define PW_MAX_IN_FLIGHT 4096 /* writers in one row */
#define PW_STREAM_NAME_MAX 32 /* bytes of a stream name, with its NUL */
#define PW_EVENT_TYPE "funds_deposited"
#define PW_BATCH 1000 /* events a read asks for at once (Message DB's default) */
#define PW_DRAIN_S 10.0
#define PW_PATH_MAX 4096

/* ---- configuration --------------------------------------------------------- */

typedef struct pw_config {
    double seconds;       /* measured window of each writer count */
    double warmup;        /* before it */
    unsigned n_streams;   /* streams chosen from at random */
    unsigned long_events; /* events of the long stream */
    unsigned writers[PW_MAX_WRITERS];
    unsigned n_writers;
    unsigned pg_connections; /* most PostgreSQL connections; more writers pipeline */
    bool asap;               /* NATS clients write each message at once */
    char root[1024];         /* the bench's fresh directory */
    const char *guild_bin;   /* the guild executable */
} pw_config;

/* ---- results ----------------------------------------------------------------- */

/* One writer count of one peer. */
typedef struct pw_phase {
    bool ran;
    bench_result res;   /* ops: appends acknowledged in the window; lat: sent in it */
    uint64_t conflicts; /* expected-version failures (not in ops or errors) */
    uint64_t total;     /* appends acknowledged in the whole phase (warm-ups and drains too) */
    double cpu;         /* machine CPU seconds (every process, interrupts) meanwhile; <0 unknown */
    double task_cpu;    /* the part processes are charged with (user and system time) */
    double srv_cpu;     /* the peer's server processes' CPU seconds meanwhile; <0 unknown */
    double cli_cpu;     /* this process's (the writers', and guild's store in-process) */
    double svc_cpu;     /* guild's commands: `guild serve talent` alone; <0 unknown */
    double wall;        /* seconds the CPU times cover */
    /* guild's commands: the relay */
    double catchup;      /* s after a slice's last reply until JetStream had every event
                            (the longest of the slices) */
    bool catchup_failed; /* not within PW_DRAIN_S */
    uint64_t lag_end;    /* acknowledged but not yet in JetStream when a window closed (most) */
} pw_phase;

/* One read: the long stream or the whole log. */
typedef struct pw_read {
    bool ran;
    uint64_t events;
    uint64_t bytes; /* of what was read, as the client got it */
    double seconds;
    char error[200];
} pw_read;

typedef struct pw_peer {
    const char *name;  /* short, for the table */
    const char *title; /* what it is, one line */
    bool ran;          /* it started and was measured */
    char failed[300];  /* why it did not run, or stopped */
    pw_phase ph[PW_MAX_WRITERS];
    pw_read read_stream, read_log;
    bool checked;    /* the count check ran */
    uint64_t stored; /* events in the store at the end */
    uint64_t acked;  /* appends acknowledged in all (prefill, warm-ups and drains too) */
    char notes[4][200];
} pw_peer;

void pw_peer_init(pw_peer *p, const char *name, const char *title);
void pw_peer_release(pw_peer *p);
void pw_peer_note(pw_peer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void pw_peer_fail(pw_peer *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- the streams (workload.c) ------------------------------------------------- */

typedef struct pw_stream {
    char name[PW_STREAM_NAME_MAX];
    uint64_t version; /* what the peer calls it: guild and PostgreSQL the stream's
                         version, JetStream the sequence of its last message */
    uint64_t count;   /* events in it */
    uint64_t sent_ns; /* when the append in flight was sent */
    bool busy;        /* an append is in flight */
} pw_stream;

typedef enum { PW_OK, PW_CONFLICT, PW_ERROR } pw_outcome;

/* What the writers share: the streams, the window and the phase's result.
 * Every pw_table_ function may be called from any thread. */
typedef struct pw_table {
    pthread_mutex_t mu; /* everything below */
    pthread_cond_t idle;
    pw_stream *s; /* n_streams random ones, then the long stream */
    unsigned n;   /* random streams */
    uint64_t rng;
    uint64_t acked;          /* successful appends ever */
    uint64_t acked0;         /* ... when the phase began */
    uint64_t m_start, m_end; /* the measured window, monotonic ns */
    bool accepting;          /* new appends may start */
    unsigned in_flight;
    pw_phase *ph; /* NULL outside a phase */
} pw_table;

void pw_table_init(pw_table *t, unsigned n_streams);
void pw_table_release(pw_table *t);

/* Index of the long stream. */
static inline unsigned pw_long(const pw_table *t)
{
    return t->n;
}

/* Opens a slice of phase ph: a warm-up of `warmup` s from now, then
 * `seconds` measured. */
void pw_table_begin(pw_table *t, pw_phase *ph, double warmup, double seconds);

/* Takes a random stream no one holds for a new append: its index and
 * expected version. False once the window has closed or the bench is
 * interrupted. */
bool pw_table_take(pw_table *t, unsigned *idx, uint64_t *expected);

/* Ends the append in flight on stream idx: on PW_OK the stream's version
 * becomes `version` and its count grows. Counts it in the phase. */
void pw_table_finish(pw_table *t, unsigned idx, pw_outcome o, uint64_t version, const char *why);

/* Waits (up to PW_DRAIN_S) until nothing is in flight, then closes the
 * slice: adds its seconds and appends to the phase. Returns appends still
 * in flight (0). */
unsigned pw_table_end(pw_table *t);

/* Sleeps until the window has closed (or the bench is interrupted), then
 * stops new appends. */
void pw_table_wait_window(pw_table *t);

/* Outside phases (prefill): marks stream idx appended at `version`. */
void pw_table_set(pw_table *t, unsigned idx, uint64_t version);

/* ---- the event ------------------------------------------------------------------- */

/* The event's data as JSON (PostgreSQL, JetStream) for stream `name`;
 * returns its length. */
int pw_event_json(const char *name, uint64_t seq, char *buf, size_t size);

/* The same fields as a msgpack map (guild). Returns its length. */
size_t pw_event_msgpack(const char *name, uint64_t seq, uint8_t *buf, size_t size);

/* The Authorization header guild's commands carry ("Bearer <access
 * token>"), set when the commands peer has logged in; empty before, or when
 * that peer does not run. The echo sends the same. Main thread only. */
#define PW_BEARER_MAX 4096
extern char pw_bearer[PW_BEARER_MAX];

/* ---- processes -------------------------------------------------------------------- */

/* Set by SIGINT and SIGTERM (declared in cmd_bench.h too). */
extern volatile sig_atomic_t cmdb_interrupted;

typedef struct pw_proc {
    pid_t pid;
    char name[32];
    char log[PW_PATH_MAX];
} pw_proc;

/* Starts argv in its own process group, output appended to p->log; it gets
 * SIGTERM if the bench dies. Returns 0, or -1 after printing why. */
int pw_spawn(pw_proc *p, const char *const argv[]);

/* Runs argv to its end, output appended to `log`. Returns its exit status,
 * or -1 if it could not run or was killed. */
int pw_run(const char *log, const char *const argv[]);

/* SIGTERM, then SIGKILL after 15 s. */
void pw_stop(pw_proc *p);

/* A free TCP port on 127.0.0.1, or -1. */
int pw_free_port(void);

/* Prints the last lines of a log file, to say why something failed. */
void pw_show_log(const char *path);

/* Starts a nats-server (argv, its log in proc->log) and waits, up to 20 s,
 * until a client connects to it at url; then says it is ready, naming the
 * peer `tag`. Returns 0, or -1 after pw_peer_fail and the log's last
 * lines. */
int pw_nats_start(pw_proc *proc, const char *const argv[], const char *url, const char *tag,
                  pw_peer *p);

/* CPU seconds process `pid` spent so far; with `children`, those of its
 * children too, alive or ended (PostgreSQL's backends and workers); -1
 * unknown. */
double pw_proc_cpu(pid_t pid, bool children);

/* CPU time of a phase: the machine's, this process's and a server's. */
typedef struct pw_cpu_mark {
    double machine, tasks, self, server;
    uint64_t mono;
} pw_cpu_mark;

/* Reads the clocks; `server` (0: none) is a process whose CPU time counts
 * as the peer's, with its children when `children`. */
void pw_cpu_mark_take(pw_cpu_mark *m, pid_t server, bool children);

/* Adds what was spent since `m0` to ph (cpu, srv_cpu, cli_cpu, wall); a
 * figure once unknown stays unknown (-1). Returns the server's part, or -1. */
double pw_cpu_mark_end(const pw_cpu_mark *m0, pid_t server, bool children, pw_phase *ph);

/* *into += v, or -1 from the first unknown (negative) on. */
void pw_cpu_add(double *into, double v);

/* The share of the machine's CPUs (0..1) that processes other than the
 * peer's and the bench's took during the phase; <0 unknown. */
double pw_phase_others(const pw_phase *ph);

/* ---- progress (peers.c) ------------------------------------------------------------ */

/* "[postgres] 64 writers: 1,234 appends/s  p50 ...  p99 ..." and `extra`. */
void pw_print_phase(const char *peer, unsigned writers, const pw_phase *ph, const char *extra);

/* The reads of a peer, once done. */
void pw_print_reads(const pw_peer *p);

/* ---- the peers ----------------------------------------------------------------------
 *
 * Every peer is started and prefilled first; then, for each writer count,
 * the measured time is cut in slices and the peers take turns, in an order
 * that rotates, so that each sees the machine as the others do (other work
 * on a shared machine comes and goes); last, each peer's reads, and all are
 * stopped. Each function may be called from the main thread only.
 */
typedef struct pw_peer_ops {
    /* Starts the peer's server in cfg->root and writes the prefill. Returns
     * 0 and *ctx, or -1 after pw_peer_fail (stop is called either way). */
    int (*start)(const pw_config *cfg, pw_peer *p, void **ctx);
    /* Before and after the slices of k writers (PostgreSQL connects its
     * connections there). begin returns 0, or -1 after counting an error. */
    int (*begin)(void *ctx, unsigned k, pw_phase *ph);
    void (*end)(void *ctx, unsigned k);
    /* One slice: a warm-up, then `seconds` measured, added to *ph. */
    void (*slice)(void *ctx, unsigned k, pw_phase *ph, double warmup, double seconds);
    /* The reads and the count check, into *p; NULL for a peer that keeps
     * nothing to read back (its reads and check are not shown). */
    void (*finish)(void *ctx, pw_peer *p);
    /* Stops the server and frees ctx (NULL allowed); adds notes to *p. */
    void (*stop)(void *ctx, pw_peer *p);
} pw_peer_ops;

/* begin and end for a peer with nothing to do around a writer count. */
int pw_no_begin(void *ctx, unsigned k, pw_phase *ph);
void pw_no_end(void *ctx, unsigned k);

/* Adds a run of cmd_bench.h's pipelined client to ph: replies, the window's
 * appends, latencies, errors and timeouts (`conflicts` of the errors are
 * counted as conflicts instead); marks ph as run. */
struct cmdb_outcome;
void pw_phase_add_outcome(pw_phase *ph, const struct cmdb_outcome *o, uint64_t conflicts);

extern const pw_peer_ops pw_postgres_ops, pw_jetstream_ops, pw_commands_ops, pw_store_ops,
    pw_echo_ops;

/* A phase of guild's commands after which the relay caught up soon enough:
 * JetStream had every acknowledged event within 250 ms of the last reply. */
bool pw_relay_kept_up(const pw_phase *ph);

#endif
