/* audit.c — checking a store's snapshots against its events (see audit.h). */
#include "bus/audit.h"

#include "bus/state.h"
#include "domain/dom.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_AGGREGATES 16

typedef struct check {
    const char *domain;
    const dom_aggregate *aggs[MAX_AGGREGATES]; /* of the domain's commands */
    size_t n_aggs;
    es_store *st;
    bus_snapshot_report *rep;
    es_progress_fn progress;
    void *ctx;
    uint64_t seen;
    guild_status status; /* a read of the store that failed */
} check;

/* The aggregates the domain's commands act on. */
static void collect_aggregates(check *c, const dom_domain *d)
{
    for (const dom_command *cmd = d->commands; cmd && cmd->name; cmd++) {
        const dom_aggregate *a = cmd->aggregate;
        if (!a)
            continue;
        bool known = false;
        for (size_t i = 0; i < c->n_aggs && !known; i++)
            known = c->aggs[i] == a;
        if (!known && c->n_aggs < MAX_AGGREGATES)
            c->aggs[c->n_aggs++] = a;
    }
}

/* The aggregate whose streams look like `stream`: "<domain>-<prefix>..."
 * with the longest prefix that matches and leaves an id. */
static const dom_aggregate *aggregate_of(const check *c, const char *stream)
{
    size_t dn = strlen(c->domain);
    if (strncmp(stream, c->domain, dn) != 0 || stream[dn] != '-')
        return NULL;
    const char *rest = stream + dn + 1;
    const dom_aggregate *best = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < c->n_aggs; i++) {
        const char *p = c->aggs[i]->stream_prefix ? c->aggs[i]->stream_prefix : "";
        size_t n = strlen(p);
        if (strncmp(rest, p, n) == 0 && rest[n] && (!best || n > best_len)) {
            best = c->aggs[i];
            best_len = n;
        }
    }
    return best;
}

static int broken(check *c, const char *stream, uint64_t version, const char *fmt, ...)
{
    bus_snapshot_report *r = c->rep;
    r->intact = false;
    snprintf(r->stream, sizeof r->stream, "%s", stream);
    r->version = version;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->what, sizeof r->what, fmt, ap);
    va_end(ap);
    return 1;
}

/* The state's bytes under the aggregate's codec, or NULL. */
static char *encode(const dom_aggregate *agg, const void *state, size_t *len)
{
    char *bytes = NULL;
    if (agg->snapshot(state, &bytes, len) != GUILD_OK) {
        free(bytes);
        return NULL;
    }
    return bytes;
}

static int check_one(void *arg, const char *stream, uint64_t version, const void *bytes, size_t len)
{
    check *c = arg;
    if (c->progress)
        c->progress(c->ctx, ++c->seen, c->rep->found);
    /* A stream of no aggregate, or of one without a snapshot codec: no
     * service reads this snapshot. */
    const dom_aggregate *agg = aggregate_of(c, stream);
    if (!agg || !agg->snapshot || !agg->restore) {
        c->rep->unknown++;
        return 0;
    }
    uint64_t head = 0;
    guild_status s = es_stream_head(c->st, stream, &head, NULL);
    if (s == GUILD_NOT_FOUND) {
        head = 0;
    } else if (s != GUILD_OK) {
        c->status = s;
        return 1;
    }
    if (version == 0 || version > head)
        return broken(c, stream, version,
                      "the snapshot is of version %llu, but the stream has %llu event%s",
                      (unsigned long long)version, (unsigned long long)head, head == 1 ? "" : "s");

    void *restored = agg->restore(bytes, len);
    if (!restored)
        return broken(c, stream, version, "the snapshot does not decode as a %s state", agg->name);
    size_t stored_len = 0;
    char *stored = encode(agg, restored, &stored_len);
    agg->destroy(restored);

    void *folded = NULL;
    uint64_t reached = 0;
    s = agg_fold(c->st, agg, stream, version, &folded, &reached);
    if (s != GUILD_OK) {
        free(stored);
        if (s == GUILD_CORRUPT)
            return broken(c, stream, version, "the stream's events do not fold into a %s state",
                          agg->name);
        c->status = s;
        return 1;
    }
    size_t fold_len = 0;
    char *fold = encode(agg, folded, &fold_len);
    agg->destroy(folded);

    int stop = 0;
    if (!stored || !fold)
        stop = broken(c, stream, version, "the %s state does not encode", agg->name);
    else if (reached != version || fold_len != stored_len || memcmp(fold, stored, fold_len) != 0)
        stop = broken(c, stream, version,
                      "the snapshot is not the state its first %llu events make (%s)",
                      (unsigned long long)version, agg->name);
    else
        c->rep->checked++;
    free(stored);
    free(fold);
    return stop;
}

guild_status bus_snapshots_check(es_store *st, const char *domain, bus_snapshot_report *rep,
                                 es_progress_fn progress, void *ctx)
{
    memset(rep, 0, sizeof *rep);
    rep->intact = true;
    const dom_domain *d = dom_domain_find(domain);
    if (!d)
        return GUILD_INVALID_REQUEST;
    check c = {.domain = domain, .st = st, .rep = rep, .progress = progress, .ctx = ctx};
    collect_aggregates(&c, d);
    guild_status s = es_snapshot_each(st, check_one, &c, &rep->found);
    return s != GUILD_OK ? s : c.status;
}
