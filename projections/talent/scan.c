/*
 * scan.c — candidate talent ids from the indexes, in id order (see scan.h).
 *
 * Sections: runs; sorted lists; the merged stream; counts.
 */
#include "projections/talent/scan.h"

#include "common/alloc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Ids a run reads per look-up: enough that a page of 100 needs few, few
 * enough that a query which stops early has read little. */
#define RUN_CHUNK 64

/* ---- runs ------------------------------------------------------------------- */

struct tm_run {
    const char *db;
    uint8_t prefix[TM_KEY_MAX];
    size_t plen;
    char last[TM_ID_MAX + 1]; /* the highest id read so far: the next chunk starts above */
    char buf[RUN_CHUNK][TM_ID_MAX + 1];
    size_t n, at;
    bool full; /* the chunk being read is full */
    bool done; /* nothing beyond buf */
};

/* The tail of a key after plen bytes, if it can be a talent id. */
static bool id_tail(const void *key, size_t klen, size_t plen, const char **tail, size_t *tlen)
{
    if (klen <= plen || klen - plen > TM_ID_MAX)
        return false;
    *tail = (const char *)key + plen;
    *tlen = klen - plen;
    return memchr(*tail, 0, *tlen) == NULL;
}

/* <0, 0, >0 as the tlen bytes at tail sort before, as, after the C string id. */
static int tail_cmp(const char *tail, size_t tlen, const char *id)
{
    size_t n = strlen(id);
    int c = memcmp(tail, id, tlen < n ? tlen : n);
    if (c)
        return c;
    return tlen < n ? -1 : tlen > n;
}

static int run_take(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    tm_run *run = ctx;
    const char *tail;
    size_t tlen;
    (void)val, (void)vlen;
    if (!id_tail(key, klen, run->plen, &tail, &tlen) || tail_cmp(tail, tlen, run->last) <= 0)
        return 0;
    memcpy(run->buf[run->n], tail, tlen);
    run->buf[run->n][tlen] = 0;
    run->full = ++run->n == RUN_CHUNK;
    return run->full;
}

/* The run's next id, reading a chunk when the last is used up; NULL at its
 * end or on a failed read (then s->status is set). */
static const char *run_head(tm_ids *s, tm_run *run)
{
    if (run->at < run->n)
        return run->buf[run->at];
    if (run->done || s->status != GUILD_OK)
        return NULL;
    uint8_t start[TM_KEY_MAX + TM_ID_MAX + 1];
    size_t lastlen = strlen(run->last);
    memcpy(start, run->prefix, run->plen);
    memcpy(start + run->plen, run->last, lastlen);
    run->n = run->at = 0;
    run->full = false;
    guild_status st =
        prj_rscan(s->r, run->db, run->prefix, run->plen, start, run->plen + lastlen, run_take, run);
    if (st != GUILD_OK) {
        s->status = st;
        return NULL;
    }
    run->done = !run->full;
    if (run->n == 0)
        return NULL;
    memcpy(run->last, run->buf[run->n - 1], TM_ID_MAX + 1);
    return run->buf[0];
}

void prj_talent__ids_init(tm_ids *s, prj_read *r, const char *after)
{
    memset(s, 0, sizeof *s);
    s->r = r;
    s->status = GUILD_OK;
    /* ids hold at most TM_ID_MAX bytes, so "above a longer bound" is
     * "above its first TM_ID_MAX bytes" */
    if (after)
        snprintf(s->after, sizeof s->after, "%s", after);
}

void prj_talent__ids_add_run(tm_ids *s, const char *db, const uint8_t *prefix, size_t plen)
{
    if (plen > TM_KEY_MAX - TM_ID_MAX)
        plen = TM_KEY_MAX - TM_ID_MAX; /* callers never come near: a wider run */
    tm_run *run = guild_xcalloc(1, sizeof *run);
    run->db = db;
    memcpy(run->prefix, prefix, plen);
    run->plen = plen;
    memcpy(run->last, s->after, sizeof run->last);
    s->runs = guild_xrealloc(s->runs, (s->n_runs + 1) * sizeof *s->runs);
    s->runs[s->n_runs++] = run;
}

/* ---- sorted lists ------------------------------------------------------------- */

static void list_push(tm_ids *s, const char *tail, size_t tlen)
{
    if (s->n_list == s->cap_list) {
        s->cap_list = s->cap_list ? s->cap_list * 2 : 256;
        s->list = guild_xrealloc(s->list, s->cap_list * sizeof *s->list);
    }
    memcpy(s->list[s->n_list], tail, tlen);
    s->list[s->n_list][tlen] = 0;
    s->n_list++;
}

static int id_cmp(const void *a, const void *b)
{
    return strcmp(a, b);
}

static void list_sort(tm_ids *s)
{
    if (s->n_list) /* s->list may be NULL while empty */
        qsort(s->list, s->n_list, sizeof *s->list, id_cmp);
    s->collected = true;
}

typedef struct rate_scan {
    tm_ids *s;
    bool has_max;
    uint64_t max;
} rate_scan;

/* by_rate: currency(3) 0x00 rate u64 0x00 talent id */
static int rate_take(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    rate_scan *rs = ctx;
    const char *tail;
    size_t tlen;
    (void)val, (void)vlen;
    if (!id_tail(key, klen, 13, &tail, &tlen))
        return 0;
    if (rs->has_max && prj_talent__u64_get((const uint8_t *)key + 4) > rs->max)
        return 1;
    if (tail_cmp(tail, tlen, rs->s->after) > 0)
        list_push(rs->s, tail, tlen);
    return 0;
}

guild_status prj_talent__ids_collect_rate(tm_ids *s, const char *currency, bool has_max,
                                          uint64_t max)
{
    uint8_t prefix[4] = {0};
    memcpy(prefix, currency, strlen(currency) < 3 ? strlen(currency) : 3);
    rate_scan rs = {s, has_max, max};
    guild_status st = prj_rscan(s->r, TM_BY_RATE, prefix, sizeof prefix, NULL, 0, rate_take, &rs);
    list_sort(s);
    return st;
}

/* by_hours: free hours u8, talent id */
static int hours_take(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    tm_ids *s = ctx;
    const char *tail;
    size_t tlen;
    (void)val, (void)vlen;
    if (id_tail(key, klen, 1, &tail, &tlen) && tail_cmp(tail, tlen, s->after) > 0)
        list_push(s, tail, tlen);
    return 0;
}

guild_status prj_talent__ids_collect_hours(tm_ids *s, uint8_t min_hours)
{
    guild_status st = prj_rscan(s->r, TM_BY_HOURS, NULL, 0, &min_hours, 1, hours_take, s);
    list_sort(s);
    return st;
}

/* ---- the merged stream ---------------------------------------------------------- */

bool prj_talent__ids_next(tm_ids *s, char out[TM_ID_MAX + 1])
{
    if (s->collected) {
        if (s->at == s->n_list)
            return false;
        memcpy(out, s->list[s->at++], TM_ID_MAX + 1);
        return true;
    }
    const char *min = NULL;
    for (size_t i = 0; i < s->n_runs; i++) {
        const char *head = run_head(s, s->runs[i]);
        if (head && (!min || strcmp(head, min) < 0))
            min = head;
    }
    if (!min || s->status != GUILD_OK)
        return false;
    memcpy(out, min, TM_ID_MAX + 1);
    for (size_t i = 0; i < s->n_runs; i++) {
        tm_run *run = s->runs[i];
        if (run->at < run->n && strcmp(run->buf[run->at], out) == 0)
            run->at++;
    }
    return true;
}

void prj_talent__ids_release(tm_ids *s)
{
    for (size_t i = 0; i < s->n_runs; i++)
        free(s->runs[i]);
    free(s->runs);
    free(s->list);
    memset(s, 0, sizeof *s);
}

/* ---- counts ---------------------------------------------------------------------- */

typedef struct rate_count {
    uint64_t max, cap, n;
} rate_count;

static int rate_count_take(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    rate_count *rc = ctx;
    (void)val, (void)vlen;
    if (klen < 13)
        return 0;
    if (prj_talent__u64_get((const uint8_t *)key + 4) > rc->max)
        return 1;
    return ++rc->n == rc->cap;
}

guild_status prj_talent__rate_count(prj_read *r, const char *currency, uint64_t max, uint64_t cap,
                                    uint64_t *out)
{
    uint8_t prefix[4] = {0};
    memcpy(prefix, currency, strlen(currency) < 3 ? strlen(currency) : 3);
    rate_count rc = {max, cap, 0};
    guild_status st =
        prj_rscan(r, TM_BY_RATE, prefix, sizeof prefix, NULL, 0, rate_count_take, &rc);
    *out = rc.n;
    return st;
}

guild_status prj_talent__count_get(prj_read *r, const uint8_t *key, size_t len, uint64_t *out)
{
    const void *v;
    size_t n;
    guild_status st = prj_rget(r, TM_COUNTS, key, len, &v, &n);
    *out = st == GUILD_OK && n == 8 ? prj_talent__u64_get(v) : 0;
    return st == GUILD_NOT_FOUND ? GUILD_OK : st;
}

static int count_take(void *ctx, const void *key, size_t klen, const void *val, size_t vlen)
{
    uint64_t *sum = ctx;
    (void)key, (void)klen;
    if (vlen == 8)
        *sum += prj_talent__u64_get(val);
    return 0;
}

guild_status prj_talent__count_sum(prj_read *r, const uint8_t *prefix, size_t plen,
                                   const uint8_t *start, size_t slen, uint64_t *out)
{
    *out = 0;
    return prj_rscan(r, TM_COUNTS, prefix, plen, start, slen, count_take, out);
}
