/*
 * commands.c — the results of committed commands, kept for idempotent
 * repeats.
 *
 * A command's result goes into the log right after its last event, under
 * the key position ‖ command id (a command that wrote no event takes the
 * log's last position then). Event records have 8-byte keys, so a longer
 * key is a result; it sorts after its event and before the next one, and
 * stays there. A commit therefore changes one B-tree, the log's, at its
 * right edge.
 *
 * The `commands` database maps a command id to its result's position. It
 * is written in bulk by slices, like the stream index: when the table of
 * newer results (cmdtab.h) holds `commands_every` of them, after a quiet
 * second, and on close. meta "es.commands" holds the position up to which
 * it is complete; results at that position written after the slice (by
 * commands that wrote no event) are not, so readers look from it on,
 * inclusive. A store of format 1 holds the result itself in `commands` (a
 * value longer than 8 bytes); those are read as they are.
 *
 * Sections: keys, finding a result, the writer's side, slices.
 */
#include "eventstore/internal.h"

#include "common/alloc.h"
#include "common/log.h"

#include <stdlib.h>
#include <string.h>

/* ---- keys ----------------------------------------------------------------- */

size_t es__command_key(uint8_t out[ES_COMMAND_KEY_MAX], uint64_t position, const char *id, size_t n)
{
    es__u64_put(out, position);
    memcpy(out + 8, id, n);
    return 8 + n;
}

/* A result found in the log. */
typedef struct result_at {
    uint64_t position;
    const char *id;
    size_t n;
    MDB_val value;
} result_at;

/* Moves cur to the first result at or after position `from` (first) or to
 * the next one; 0, MDB_NOTFOUND at the end, or an error. */
static int next_result(MDB_cursor *cur, uint64_t from, bool first, result_at *r)
{
    uint8_t key[8];
    es__u64_put(key, from);
    MDB_val k = {8, key};
    int rc = mdb_cursor_get(cur, &k, &r->value, first ? MDB_SET_RANGE : MDB_NEXT);
    while (rc == 0 && !es__is_command_key(&k))
        rc = mdb_cursor_get(cur, &k, &r->value, MDB_NEXT);
    if (rc)
        return rc;
    if (k.mv_size > ES_COMMAND_KEY_MAX)
        return MDB_CORRUPTED;
    r->position = es__u64_get(k.mv_data);
    r->id = (const char *)k.mv_data + 8;
    r->n = k.mv_size - 8;
    return 0;
}

/* ---- finding a result ----------------------------------------------------- */

size_t es__command_candidates(es_store *st, const char *id, size_t n, uint64_t *hash,
                              uint64_t out[ES_COMMAND_CANDIDATES])
{
    *hash = es_cmdtab_hash(&st->commands, id, n);
    if (st->read_only)
        return 0;
    pthread_mutex_lock(&st->tail_lock);
    size_t found = es_cmdtab_find(&st->commands, *hash, out, ES_COMMAND_CANDIDATES);
    pthread_mutex_unlock(&st->tail_lock);
    return found < ES_COMMAND_CANDIDATES ? found : ES_COMMAND_CANDIDATES;
}

/* A read-only opener keeps no table: it looks through the results after
 * txn's commands checkpoint. */
static int scan_log(es_store *st, MDB_txn *txn, const char *id, size_t n, MDB_val *val)
{
    uint64_t cp;
    int rc = es__meta_u64_get(st, txn, ES_META_COMMANDS, &cp, NULL);
    if (rc)
        return rc;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, st->db_log, &cur)))
        return rc;
    result_at r;
    for (rc = next_result(cur, cp, true, &r); rc == 0; rc = next_result(cur, 0, false, &r))
        if (r.n == n && memcmp(r.id, id, n) == 0) {
            *val = r.value;
            break;
        }
    mdb_cursor_close(cur);
    return rc;
}

int es__command_get(es_store *st, MDB_txn *txn, const char *id, size_t n, const uint64_t *cand,
                    size_t n_cand, MDB_val *val)
{
    int rc;
    if (st->read_only) {
        if ((rc = scan_log(st, txn, id, n, val)) != MDB_NOTFOUND)
            return rc;
    }
    uint8_t key[ES_COMMAND_KEY_MAX];
    for (size_t i = 0; i < n_cand; i++) {
        MDB_val k = {es__command_key(key, cand[i], id, n), key};
        if ((rc = mdb_get(txn, st->db_log, &k, val)) != MDB_NOTFOUND)
            return rc;
    }
    MDB_val k = {n, (void *)id}, at;
    if ((rc = mdb_get(txn, st->db_commands, &k, &at)))
        return rc;
    if (at.mv_size != 8) { /* format 1: the result itself */
        *val = at;
        return 0;
    }
    k.mv_size = es__command_key(key, es__u64_get(at.mv_data), id, n);
    k.mv_data = key;
    rc = mdb_get(txn, st->db_log, &k, val);
    return rc == MDB_NOTFOUND ? MDB_CORRUPTED : rc;
}

/* ---- the writer's side ---------------------------------------------------- */

int es__command_put(es_store *st, MDB_txn *txn, const char *id, size_t n, uint64_t hash,
                    const void *result, size_t len, bool after_event)
{
    uint64_t position = st->chain.next_position - 1;
    uint8_t key[ES_COMMAND_KEY_MAX];
    MDB_val k = {es__command_key(key, position, id, n), key}, v = {len, (void *)result};
    /* Right after its own event the key is the log's greatest; after
     * another command's record under the same position it may not be. */
    int rc = mdb_put(txn, st->db_log, &k, &v, after_event ? MDB_APPEND : 0);
    if (rc)
        return rc;
    pthread_mutex_lock(&st->tail_lock);
    es_cmdtab_add(&st->commands, hash, position);
    pthread_mutex_unlock(&st->tail_lock);
    return 0;
}

/* Whether `commands` holds id already (a result at the checkpoint's own
 * position may have been indexed with it). */
static bool indexed(es_store *st, MDB_txn *txn, const char *id, size_t n)
{
    MDB_val k = {n, (void *)id}, v;
    return mdb_get(txn, st->db_commands, &k, &v) == 0;
}

int es__commands_replay(es_store *st, MDB_txn *txn, uint64_t checkpoint)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->db_log, &cur);
    if (rc)
        return rc;
    result_at r;
    pthread_mutex_lock(&st->tail_lock);
    for (rc = next_result(cur, checkpoint, true, &r); rc == 0; rc = next_result(cur, 0, false, &r))
        if (r.position != checkpoint || !indexed(st, txn, r.id, r.n))
            es_cmdtab_add(&st->commands, es_cmdtab_hash(&st->commands, r.id, r.n), r.position);
    es_cmdtab_commit(&st->commands);
    pthread_mutex_unlock(&st->tail_lock);
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

/* ---- slices --------------------------------------------------------------- */

typedef struct indexed_command {
    uint64_t hash, position;
} indexed_command;

typedef struct cslice {
    indexed_command *items;
    size_t n, cap;
    uint64_t checkpoint;
} cslice;

/* Puts the positions of up to about `budget` results from the commands
 * checkpoint on into `commands`, all those of a position together, and
 * moves the checkpoint past them. */
static int cslice_txn(es_store *st, uint64_t budget, cslice *sl)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(st->env, NULL, 0, &txn);
    if (rc)
        return rc;
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, st->db_log, &cur))) {
        mdb_txn_abort(txn);
        return rc;
    }
    uint64_t from = st->commands_checkpoint;
    sl->n = 0;
    sl->checkpoint = st->chain.next_position - 1; /* if the walk ends the log */
    result_at r;
    for (rc = next_result(cur, from, true, &r); rc == 0; rc = next_result(cur, 0, false, &r)) {
        if (sl->n >= budget && r.position != sl->items[sl->n - 1].position) {
            sl->checkpoint = sl->items[sl->n - 1].position;
            break;
        }
        if (r.position == from && indexed(st, txn, r.id, r.n))
            continue;
        uint8_t at[8];
        es__u64_put(at, r.position);
        MDB_val idv = {r.n, (void *)r.id}, atv = {8, at};
        if ((rc = mdb_put(txn, st->db_commands, &idv, &atv, 0)))
            break;
        if (sl->n == sl->cap) {
            sl->cap = sl->cap ? sl->cap * 2 : 256;
            sl->items = guild_xrealloc(sl->items, sl->cap * sizeof *sl->items);
        }
        sl->items[sl->n++] =
            (indexed_command){es_cmdtab_hash(&st->commands, r.id, r.n), r.position};
    }
    mdb_cursor_close(cur);
    if (rc == MDB_NOTFOUND)
        rc = 0;
    if (rc == 0)
        rc = es__meta_u64_put(st, txn, ES_META_COMMANDS, sl->checkpoint);
    if (rc) {
        mdb_txn_abort(txn);
        return rc;
    }
    return mdb_txn_commit(txn);
}

int es__commands_slice(es_store *st, uint64_t budget)
{
    cslice sl = {0};
    int rc;
    while ((rc = cslice_txn(st, budget, &sl)) == MDB_MAP_FULL)
        if ((rc = es__grow_map(st)))
            break;
    if (rc) {
        free(sl.items);
        guild_error("event store: indexing command results failed: %s", mdb_strerror(rc));
        return rc;
    }
    pthread_mutex_lock(&st->tail_lock);
    for (size_t i = 0; i < sl.n; i++)
        es_cmdtab_remove(&st->commands, sl.items[i].hash, sl.items[i].position);
    st->commands_checkpoint = sl.checkpoint;
    if (sl.n == 0 && st->commands.count > 0) {
        /* Every table entry is at or after the checkpoint, so a walk that
         * found nothing to index leaves none that could be needed; keep
         * the slices from waiting on them for ever. */
        guild_warn("event store: %zu command results listed but not in the log",
                   st->commands.count);
        es_cmdtab_clear(&st->commands);
    }
    pthread_mutex_unlock(&st->tail_lock);
    free(sl.items);
    return 0;
}
