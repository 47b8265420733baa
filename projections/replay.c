/* replay.c — folding a domain's LMDB log into a read model: the loop behind
 * `guild project rebuild`, `guild events replay` and the rebuild bench. */
#include "projections/prj.h"

#include "common/alloc.h"
#include "common/clock.h"

#include <stdlib.h>
#include <string.h>

#define DEFAULT_BATCH 16384

typedef struct batch {
    const es_record **ptrs;
    es_record *recs;
    uint8_t **raws;
    size_t n;
    uint64_t stop_at;
} batch;

/* The read transaction ends before apply: each record is copied out. */
static int collect(void *ctx, const es_record *rec)
{
    batch *b = ctx;
    if (b->stop_at && rec->position > b->stop_at)
        return 1;
    b->raws[b->n] = guild_xmemdup(rec->raw, rec->raw_len);
    es_record_decode(b->raws[b->n], rec->raw_len, &b->recs[b->n]);
    b->ptrs[b->n] = &b->recs[b->n];
    b->n++;
    return 0;
}

guild_status prj_store_replay(prj_store *s, es_store *log, uint64_t stop_at, size_t per_batch,
                              prj_replay_fn fn, void *ctx)
{
    if (!per_batch)
        per_batch = DEFAULT_BATCH;
    batch b = {.ptrs = guild_xcalloc(per_batch, sizeof *b.ptrs),
               .recs = guild_xcalloc(per_batch, sizeof *b.recs),
               .raws = guild_xcalloc(per_batch, sizeof *b.raws),
               .stop_at = stop_at};
    guild_status st = GUILD_OK;
    for (;;) {
        uint64_t from = prj_store_position(s) + 1, next = from;
        if (stop_at && from > stop_at)
            break;
        b.n = 0;
        st = es_read_log(log, from, per_batch, collect, &b, &next);
        prj_batch_stats stats = {0};
        uint64_t t0 = guild_mono_ns();
        if (st == GUILD_OK && b.n)
            st = prj_store_apply(s, b.ptrs, b.n, &stats);
        double secs = (double)(guild_mono_ns() - t0) / 1e9;
        for (size_t i = 0; i < b.n; i++)
            free(b.raws[i]);
        if (st != GUILD_OK || b.n == 0)
            break;
        if (fn && fn(ctx, prj_store_position(s), &stats, b.n, secs))
            break;
        if (b.n < per_batch)
            break; /* the end of the log (or of stop_at) */
    }
    free(b.ptrs);
    free(b.recs);
    free(b.raws);
    return st;
}
