/*
 * bench_util.c — what every benchmark shares: the latency histogram, phase
 * results, temporary directories, CPU time and number formatting.
 */
#include "bench.h"

#include "common/alloc.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ---- histogram -------------------------------------------------------------
 *
 * Values below 2^7 have a bucket each. Above, the power of two e (7..47) is
 * split into 64 buckets of width 2^(e-6): index 128 + (e-7)*64 + sub. 47 bits
 * of nanoseconds is 39 hours; larger values land in the last bucket.
 */
#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_LINEAR (2u * HIST_SUB)
#define HIST_MAX_EXP 47
#define HIST_BUCKETS (HIST_LINEAR + (HIST_MAX_EXP - HIST_SUB_BITS) * HIST_SUB)

static unsigned hist_index(uint64_t v)
{
    if (v < HIST_LINEAR)
        return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v);
    if (e > HIST_MAX_EXP)
        return HIST_BUCKETS - 1;
    unsigned sub = (unsigned)(v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1);
    return HIST_LINEAR + (e - HIST_SUB_BITS - 1) * HIST_SUB + sub;
}

/* The middle of bucket i. */
static uint64_t hist_value(unsigned i)
{
    if (i < HIST_LINEAR)
        return i;
    unsigned e = (i - HIST_LINEAR) / HIST_SUB + HIST_SUB_BITS + 1;
    uint64_t sub = (i - HIST_LINEAR) % HIST_SUB;
    uint64_t width = (uint64_t)1 << (e - HIST_SUB_BITS);
    return (HIST_SUB + sub) * width + width / 2;
}

void bench_hist_init(bench_hist *h)
{
    memset(h, 0, sizeof *h);
    h->buckets = guild_xcalloc(HIST_BUCKETS, sizeof *h->buckets);
}

void bench_hist_release(bench_hist *h)
{
    free(h->buckets);
    memset(h, 0, sizeof *h);
}

void bench_hist_record(bench_hist *h, uint64_t ns)
{
    if (h->count == 0 || ns < h->min)
        h->min = ns;
    if (ns > h->max)
        h->max = ns;
    h->count++;
    h->sum += ns;
    h->buckets[hist_index(ns)]++;
}

void bench_hist_merge(bench_hist *into, const bench_hist *from)
{
    if (from->count == 0)
        return;
    if (into->count == 0 || from->min < into->min)
        into->min = from->min;
    if (from->max > into->max)
        into->max = from->max;
    into->count += from->count;
    into->sum += from->sum;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->buckets[i] += from->buckets[i];
}

uint64_t bench_hist_quantile(const bench_hist *h, double q)
{
    if (h->count == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->count + 0.5);
    if (rank < 1)
        rank = 1;
    if (rank > h->count)
        rank = h->count;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->buckets[i];
        if (seen >= rank) {
            uint64_t v = hist_value(i);
            /* the bucket's middle may lie outside what was seen */
            return v < h->min ? h->min : v > h->max ? h->max : v;
        }
    }
    return h->max;
}

/* ---- results ---------------------------------------------------------------- */

void bench_result_init(bench_result *r)
{
    memset(r, 0, sizeof *r);
    r->busy = -1;
    bench_hist_init(&r->lat);
}

void bench_result_release(bench_result *r)
{
    bench_hist_release(&r->lat);
}

void bench_result_error(bench_result *r, const char *fmt, ...)
{
    if (r->first_error[0] != '\0')
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->first_error, sizeof r->first_error, fmt, ap);
    va_end(ap);
}

/* ---- time ------------------------------------------------------------------- */

double bench_cpu_seconds(void)
{
    struct rusage ru;
    if (getrusage(RUSAGE_SELF, &ru) != 0)
        return 0;
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

uint64_t bench_io_written(void)
{
    FILE *f = fopen("/proc/self/io", "r");
    if (f == NULL)
        return 0;
    char line[128];
    unsigned long long v = 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "wchar: %llu", &v) == 1)
            break;
    fclose(f);
    return v;
}

void bench_sleep(double seconds)
{
    if (seconds <= 0)
        return;
    struct timespec ts;
    ts.tv_sec = (time_t)seconds;
    ts.tv_nsec = (long)((seconds - (double)ts.tv_sec) * 1e9);
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

/* ---- directories -------------------------------------------------------------- */

int bench_tmpdir_create(const char *parent, char *out, size_t size)
{
    if (parent == NULL) {
        parent = getenv("TMPDIR");
        if (parent == NULL || parent[0] == '\0')
            parent = "/tmp";
    }
    int n = snprintf(out, size, "%s/guild-bench-XXXXXX", parent);
    if (n < 0 || (size_t)n >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return mkdtemp(out) == NULL ? -1 : 0;
}

int bench_dir_remove(const char *path)
{
    DIR *d = opendir(path);
    if (d == NULL)
        return unlink(path);
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char child[4096];
        int n = snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        if (n < 0 || (size_t)n >= sizeof child) {
            rc = -1;
            continue;
        }
        struct stat sb;
        if (lstat(child, &sb) != 0)
            rc = -1;
        else if (S_ISDIR(sb.st_mode) ? bench_dir_remove(child) != 0 : unlink(child) != 0)
            rc = -1;
    }
    closedir(d);
    return rmdir(path) != 0 ? -1 : rc;
}

/* ---- formatting ---------------------------------------------------------------- */

char *bench_fmt_count(double v, char *buf, size_t size)
{
    char digits[32];
    if (v < 0)
        v = 0;
    snprintf(digits, sizeof digits, "%.0f", v);
    size_t len = strlen(digits), o = 0;
    for (size_t i = 0; i < len && o + 2 < size; i++) {
        if (i > 0 && (len - i) % 3 == 0)
            buf[o++] = ',';
        buf[o++] = digits[i];
    }
    buf[o] = '\0';
    return buf;
}

char *bench_fmt_ns(uint64_t ns, char *buf, size_t size)
{
    if (ns < 10000)
        snprintf(buf, size, "%.2f us", (double)ns / 1e3);
    else if (ns < 1000000)
        snprintf(buf, size, "%.0f us", (double)ns / 1e3);
    else if (ns < 1000000000)
        snprintf(buf, size, "%.2f ms", (double)ns / 1e6);
    else
        snprintf(buf, size, "%.2f s", (double)ns / 1e9);
    return buf;
}
