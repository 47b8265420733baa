/*
 * bench.h — `guild bench ...`: benchmarks that print a report.
 *
 * Map
 *   - bench_store_main: `guild bench store`, the event store benchmark
 *     (store_bench.c drives it and prints; store_load.c runs its phases,
 *     each into a bench_result).
 *   - bench_hist: a log-bucket latency histogram (about 1.6 % precision).
 *   - bench_lmdb_baseline: the bare LMDB loops the store is compared with.
 *   - helpers for temporary directories, CPU time and number formatting.
 *
 * Benchmarks are reports: they return 0 when they ran, even when a goal is
 * missed, and non-zero only when they could not run (bad option, no disk).
 */
#ifndef GUILD_BENCH_BENCH_H
#define GUILD_BENCH_BENCH_H

#include "eventstore/es.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* `guild bench store [options]`; argv[0] is "store". Returns the exit code. */
int bench_store_main(int argc, char **argv);

/* `guild bench commands [options]`; argv[0] is "commands". Returns the exit code. */
int bench_commands_main(int argc, char **argv);

/* `guild bench project [options]`; argv[0] is "project". Returns the exit code. */
int bench_project_main(int argc, char **argv);

/* ---- latency histogram ---------------------------------------------------- */

/* Counts of nanosecond values in buckets whose width is 1/64 of their power
 * of two, so a percentile is within ~1.6 % of the exact one; exact below
 * 128 ns. min, max and sum are exact. Not thread-safe: one per thread, then
 * merge. */
typedef struct bench_hist {
    uint64_t count, min, max, sum;
    uint64_t *buckets; /* owned */
} bench_hist;

void bench_hist_init(bench_hist *h);
void bench_hist_release(bench_hist *h);
void bench_hist_record(bench_hist *h, uint64_t ns);
void bench_hist_merge(bench_hist *into, const bench_hist *from);

/* The value at quantile q (0..1), e.g. 0.99; 0 when the histogram is empty. */
uint64_t bench_hist_quantile(const bench_hist *h, double q);

/* ---- the result of one phase ---------------------------------------------- */

typedef struct bench_result {
    uint64_t ops;          /* events written or read (the rate's numerator) */
    uint64_t units;        /* appends, commits or loads, when they differ from ops */
    uint64_t errors;       /* failed operations, not counted in ops */
    char first_error[200]; /* what the first failure said */
    double seconds;        /* wall time of the measured part */
    double cpu_seconds;    /* user + system time of the whole process meanwhile */
    uint64_t commits;      /* LMDB write transactions meanwhile; 0 = unknown */
    double busy;           /* share of the time the store's writer ran batches; <0 = n/a */
    uint64_t written;      /* bytes this process passed to write(2) meanwhile */
    bench_hist lat;        /* one sample per operation; empty for bulk reads */
} bench_result;

void bench_result_init(bench_result *r);
void bench_result_release(bench_result *r);

/* Keeps the first error message only. */
void bench_result_error(bench_result *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ---- event store phases (store_load.c) ------------------------------------ */

#define BENCH_TYPE "skill_added"
#define BENCH_DATA_MAX 128

/* What the store phases write and read: borrowed by every phase. Each phase
 * adds to its bench_result (counts, seconds, samples), so a phase can be run
 * in slices interleaved with another. */
typedef struct bench_workload {
    es_store *st;
    char **streams; /* n_streams stream ids, chosen from at random */
    unsigned n_streams;
    const char *long_stream;      /* one stream with many events, for stream reads */
    uint8_t data[BENCH_DATA_MAX]; /* the msgpack map every event carries */
    size_t data_len;
    bool command_ids; /* give every append a fresh command id (UUIDv7) */
    bool random_ids;  /* ... random instead (32 hex digits), in no order */
} bench_workload;

/* Appends one event to each stream of wl (in order) and `long_events` to
 * wl->long_stream, through es_append_submit. */
void bench_store_prefill(const bench_workload *wl, unsigned long_events, bench_result *out);

/* `threads` threads call es_append_wait in a loop for `seconds`: one event,
 * a random stream, ES_ANY_VERSION. One latency sample per append. */
void bench_store_appenders(const bench_workload *wl, unsigned threads, double seconds,
                           bench_result *out);

/* `threads` threads each keep up to `window` es_append_submit appends in
 * flight for `seconds`; latency is from submit to the done callback. */
void bench_store_submitters(const bench_workload *wl, unsigned threads, unsigned window,
                            double seconds, bench_result *out);

/* Reads the whole log with es_read_log in batches of `batch`, again and
 * again until `seconds` have passed (at least once). */
void bench_store_read_log(const bench_workload *wl, size_t batch, double seconds,
                          bench_result *out);

/* Same for wl->long_stream with es_read_stream. */
void bench_store_read_stream(const bench_workload *wl, size_t batch, double seconds,
                             bench_result *out);

/* Loads whole random streams (what a command handler does to rebuild an
 * aggregate) for `seconds`: ops = events, units = loads, one latency
 * sample per load. */
void bench_store_load_streams(const bench_workload *wl, double seconds, bench_result *out);

/* ---- the bare LMDB baseline ----------------------------------------------- */

/* A bare LMDB loop: an environment with the default (synchronous) flags
 * where one thread commits transactions of `per_commit` puts each of a
 * `value_len`-byte value under a growing u64 key. */
typedef struct bench_lmdb bench_lmdb;

/* Creates `dir` (it must not exist) and opens the environment in it. Returns
 * 0 and *out (close it with bench_lmdb_close), or -1 with res->first_error
 * set. */
int bench_lmdb_open(const char *dir, size_t value_len, unsigned per_commit, bench_lmdb **out,
                    bench_result *res);

/* Runs the loop for `seconds`, adding to *out: ops = puts, commits, seconds,
 * one latency sample per transaction (begin, puts, commit). Can be called
 * again to run more, in slices. Returns 0, or -1 after a failed commit. */
int bench_lmdb_run(bench_lmdb *b, double seconds, bench_result *out);

/* Closes the environment (its files stay). NULL is allowed. */
void bench_lmdb_close(bench_lmdb *b);

/* ---- helpers -------------------------------------------------------------- */

/* User + system CPU seconds of this process so far. */
double bench_cpu_seconds(void);

/* Bytes this process has passed to write(2) and friends so far ("wchar" of
 * /proc/self/io); 0 where that is not available. */
uint64_t bench_io_written(void);

/* Sleeps for `seconds` (restarting after signals). */
void bench_sleep(double seconds);

/* Creates a fresh directory "<parent>/guild-bench-XXXXXX" into out; parent
 * NULL means $TMPDIR or /tmp. Returns 0, or -1 with errno set. */
int bench_tmpdir_create(const char *parent, char *out, size_t size);

/* Removes `path` and everything under it; returns 0, or -1 (best effort). */
int bench_dir_remove(const char *path);

/* "1,234,567" (rounded to an integer) into buf; returns buf. */
char *bench_fmt_count(double v, char *buf, size_t size);

/* "850 us", "1.23 ms", "2.1 s" into buf; returns buf. */
char *bench_fmt_ns(uint64_t ns, char *buf, size_t size);

#endif
