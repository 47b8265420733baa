/*
 * store.c — opening the LMDB environment, reads, snapshots, meta.
 *
 * Sections: LMDB plumbing (status mapping, read transactions, map growth),
 * opening and closing, reads (streams, log, heads), the command table,
 * snapshots and meta.
 */
#include "eventstore/internal.h"

#include "common/alloc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/file.h>
#include <unistd.h>
#include <stdlib.h>
#include <sodium.h>
#include <string.h>

#define DEFAULT_MAP_SIZE ((size_t)256 << 20)
#define DEFAULT_MAX_BATCH 4096
#define MAX_READERS 1024

/* ---- LMDB plumbing -------------------------------------------------------- */

guild_status es__lmdb_status(guild_error *err, int rc, const char *what)
{
    if (rc == 0)
        return GUILD_OK;
    if (rc == MDB_NOTFOUND)
        return guild_error_set(err, GUILD_NOT_FOUND, rc, "%s: not found", what);
    if (rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND || rc == MDB_INVALID ||
        rc == MDB_VERSION_MISMATCH)
        return guild_error_set(err, GUILD_CORRUPT, rc, "%s: %s", what, mdb_strerror(rc));
    return guild_error_set(err, GUILD_IO, rc, "%s: %s", what, mdb_strerror(rc));
}

void es__u64_put(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

uint64_t es__u64_get(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | in[i];
    return v;
}

size_t es__stream_key(uint8_t out[ES_STREAM_KEY_MAX], const char *stream, size_t n,
                      uint64_t version)
{
    memcpy(out, stream, n);
    out[n] = 0;
    es__u64_put(out + n + 1, version);
    return n + 9;
}

int es__read_begin(es_store *st, MDB_txn **txn)
{
    for (;;) {
        pthread_rwlock_rdlock(&st->resize_lock);
        int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, txn);
        if (rc != MDB_MAP_RESIZED) {
            if (rc)
                pthread_rwlock_unlock(&st->resize_lock);
            return rc;
        }
        /* Another process grew the map: adopt its size, then retry. */
        pthread_rwlock_unlock(&st->resize_lock);
        pthread_rwlock_wrlock(&st->resize_lock);
        rc = mdb_env_set_mapsize(st->env, 0);
        pthread_rwlock_unlock(&st->resize_lock);
        if (rc)
            return rc;
    }
}

void es__read_end(es_store *st, MDB_txn *txn)
{
    mdb_txn_abort(txn);
    pthread_rwlock_unlock(&st->resize_lock);
}

int es__grow_map(es_store *st)
{
    MDB_envinfo info;
    pthread_rwlock_wrlock(&st->resize_lock);
    mdb_env_info(st->env, &info);
    size_t next = info.me_mapsize * 2;
    int rc = mdb_env_set_mapsize(st->env, next);
    pthread_rwlock_unlock(&st->resize_lock);
    return rc;
}

/* ---- open and close ------------------------------------------------------- */

static int open_dbs(es_store *st, MDB_txn *txn, unsigned flags)
{
    int rc;
    if ((rc = mdb_dbi_open(txn, "log", flags, &st->db_log)) ||
        (rc = mdb_dbi_open(txn, "streams", flags, &st->db_streams)) ||
        (rc = mdb_dbi_open(txn, "heads", flags, &st->db_heads)) ||
        (rc = mdb_dbi_open(txn, "commands", flags, &st->db_commands)) ||
        (rc = mdb_dbi_open(txn, "snapshots", flags, &st->db_snapshots)) ||
        (rc = mdb_dbi_open(txn, "meta", flags, &st->db_meta)))
        return rc;
    return 0;
}

int es__meta_u64_get(es_store *st, MDB_txn *txn, const char *name, uint64_t *value, bool *found)
{
    MDB_val k = {strlen(name), (void *)name}, v;
    int rc = mdb_get(txn, st->db_meta, &k, &v);
    *value = 0;
    if (found)
        *found = rc != MDB_NOTFOUND;
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc)
        return rc;
    if (v.mv_size != 8)
        return MDB_CORRUPTED;
    *value = es__u64_get(v.mv_data);
    return 0;
}

int es__meta_u64_put(es_store *st, MDB_txn *txn, const char *name, uint64_t value)
{
    uint8_t buf[8];
    es__u64_put(buf, value);
    MDB_val k = {strlen(name), (void *)name}, v = {8, buf};
    return mdb_put(txn, st->db_meta, &k, &v, 0);
}

/* Checks or writes the store's format version; *upgraded when an older
 * format was found and this writer moved it to the current one. */
static guild_status check_format(es_store *st, MDB_txn *txn, bool *upgraded, guild_error *err)
{
    *upgraded = false;
    uint64_t format;
    bool found;
    int rc = es__meta_u64_get(st, txn, ES_META_FORMAT, &format, &found);
    if (rc && rc != MDB_CORRUPTED)
        return es__lmdb_status(err, rc, "reading the format version");
    bool fresh = !found; /* a new store */
    if (fresh && st->read_only)
        return es__lmdb_status(err, MDB_NOTFOUND, "reading the format version");
    if (!fresh && (rc || format < ES_FORMAT_OLDEST || format > ES_FORMAT_VERSION))
        return guild_error_set(err, GUILD_CORRUPT, 0, "unknown store format");
    if (format == ES_FORMAT_VERSION || st->read_only)
        return GUILD_OK;
    /* Every older format is a subset of this one: only the number changes,
     * so an older binary refuses what it could misread. */
    rc = es__meta_u64_put(st, txn, ES_META_FORMAT, ES_FORMAT_VERSION);
    *upgraded = rc == 0 && !fresh;
    return es__lmdb_status(err, rc, "writing the format version");
}

/* One writing process per store: the writer keeps the newer part of the
 * index in memory, so a second writer would work from a stale view. An
 * flock on <dir>/writer.lock says who writes; the kernel drops it when the
 * process dies, however it dies. */
static guild_status take_writer_lock(es_store *st, const char *dir, guild_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/writer.lock", dir);
    st->writer_lock = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (st->writer_lock < 0)
        return guild_error_set(err, errno == ENOENT ? GUILD_NOT_FOUND : GUILD_IO, errno,
                               "cannot open %s", path);
    if (flock(st->writer_lock, LOCK_EX | LOCK_NB) != 0)
        return guild_error_set(err, GUILD_CONFLICT, errno,
                               "another process is writing the store in %s", dir);
    return GUILD_OK;
}

static guild_status open_env(es_store *st, const char *dir, const es_options *opt, guild_error *err)
{
    int rc;
    if (!st->read_only) {
        guild_status ls = take_writer_lock(st, dir, err);
        if (ls != GUILD_OK)
            return ls;
    }
    if ((rc = mdb_env_create(&st->env)))
        return es__lmdb_status(err, rc, "creating the environment");
    mdb_env_set_maxdbs(st->env, 8);
    mdb_env_set_maxreaders(st->env, MAX_READERS);
    mdb_env_set_mapsize(st->env, opt->map_size ? opt->map_size : DEFAULT_MAP_SIZE);
    unsigned flags = MDB_NOTLS | (st->read_only ? MDB_RDONLY : 0);
    if ((rc = mdb_env_open(st->env, dir, flags, 0644)))
        return guild_error_set(err, rc == ENOENT ? GUILD_NOT_FOUND : GUILD_IO, rc,
                               "opening the store in %s: %s", dir, mdb_strerror(rc));

    MDB_txn *txn;
    if (st->read_only) {
        if ((rc = es__read_begin(st, &txn)))
            return es__lmdb_status(err, rc, "beginning a read");
    } else if ((rc = mdb_txn_begin(st->env, NULL, 0, &txn))) {
        return es__lmdb_status(err, rc, "beginning a write");
    }
    guild_status s = GUILD_OK;
    if ((rc = open_dbs(st, txn, st->read_only ? 0 : MDB_CREATE)))
        s = es__lmdb_status(err, rc, "opening the databases");
    bool upgraded = false;
    if (s == GUILD_OK)
        s = check_format(st, txn, &upgraded, err);
    if (s == GUILD_OK && !st->read_only && (rc = es__chain_load(st, txn, &st->chain)))
        s = es__lmdb_status(err, rc, "reading the log's head");
    /* Format 1 kept every result in `commands`: it is complete. */
    if (s == GUILD_OK && upgraded &&
        (rc = es__meta_u64_put(st, txn, ES_META_COMMANDS, st->chain.next_position - 1)))
        s = es__lmdb_status(err, rc, "writing the commands checkpoint");
    if (s == GUILD_OK && !st->read_only &&
        ((rc = es__checkpoint_get(st, txn, &st->tail_checkpoint, NULL)) ||
         (rc = es__tail_replay(st, txn, &st->tail, st->tail_checkpoint + 1, NULL, 0)) ||
         (rc = es__meta_u64_get(st, txn, ES_META_COMMANDS, &st->commands_checkpoint, NULL)) ||
         (rc = es__commands_replay(st, txn, st->commands_checkpoint))))
        s = es__lmdb_status(err, rc, "replaying the log after the index checkpoint");
    if (st->read_only) {
        /* Handles opened in a transaction live on only if it commits. */
        if (s == GUILD_OK && (rc = mdb_txn_commit(txn)))
            s = es__lmdb_status(err, rc, "opening the databases");
        else if (s != GUILD_OK)
            mdb_txn_abort(txn);
        pthread_rwlock_unlock(&st->resize_lock);
    } else if (s == GUILD_OK) {
        if ((rc = mdb_txn_commit(txn)))
            s = es__lmdb_status(err, rc, "creating the databases");
    } else {
        mdb_txn_abort(txn);
    }
    return s;
}

guild_status es_store_open(const char *dir, const es_options *opt, es_store **out, guild_error *err)
{
    static const es_options defaults = {0};
    if (!opt)
        opt = &defaults;
    if (!dir || (!opt->read_only && (!opt->domain || !*opt->domain)))
        return guild_error_set(err, GUILD_INVALID_REQUEST, 0,
                               "a directory and a domain are needed");
    /* Picks libsodium's fastest BLAKE2b for this CPU (SIMD when there is
     * some); without it the hash chain runs on the portable code. */
    if (sodium_init() < 0)
        return guild_error_set(err, GUILD_INTERNAL, 0, "libsodium does not initialise");

    es_store *st = guild_xcalloc(1, sizeof *st);
    st->domain = guild_xstrdup(opt->domain ? opt->domain : "");
    st->read_only = opt->read_only;
    st->writer_lock = -1;
    st->max_batch = opt->max_batch ? opt->max_batch : DEFAULT_MAX_BATCH;
    st->batch_hook = opt->batch_hook;
    st->batch_hook_ctx = opt->batch_hook_ctx;
    st->index_every = opt->index_every ? opt->index_every : ES_DEFAULT_INDEX_EVERY;
    st->checkpoint_slice = opt->checkpoint_slice ? opt->checkpoint_slice : ES_CHECKPOINT_SLICE;
    st->commands_every = st->index_every < ES_COMMANDS_EVERY ? st->index_every : ES_COMMANDS_EVERY;
    es_tail_init(&st->tail);
    es_cmdtab_init(&st->commands);
    pthread_mutex_init(&st->tail_lock, NULL);
    pthread_rwlock_init(&st->resize_lock, NULL);
    pthread_mutex_init(&st->q_lock, NULL);
    pthread_cond_init(&st->q_cond, NULL);
    msgpack_sbuffer_init(&st->enc);

    guild_status s = open_env(st, dir, opt, err);
    if (s == GUILD_OK && !st->read_only)
        s = es__writer_start(st, err);
    if (s != GUILD_OK) {
        es_store_close(st);
        return s;
    }
    *out = st;
    return GUILD_OK;
}

void es_store_close(es_store *st)
{
    if (!st)
        return;
    es__writer_stop(st);
    if (st->env)
        mdb_env_close(st->env);
    if (st->writer_lock >= 0)
        close(st->writer_lock); /* releases the flock */
    msgpack_sbuffer_destroy(&st->enc);
    es_tail_release(&st->tail);
    es_cmdtab_release(&st->commands);
    pthread_mutex_destroy(&st->tail_lock);
    pthread_cond_destroy(&st->q_cond);
    pthread_mutex_destroy(&st->q_lock);
    pthread_rwlock_destroy(&st->resize_lock);
    free(st->domain);
    free(st);
}

const char *es_store_domain(const es_store *st)
{
    return st->domain;
}

/* ---- reads ---------------------------------------------------------------- */

static bool stream_ok(const char *stream, size_t *n)
{
    if (!stream)
        return false;
    *n = strlen(stream);
    return *n > 0 && *n <= ES_STREAM_MAX;
}

int es__head_db_get(es_store *st, MDB_txn *txn, const char *stream, size_t n, uint64_t *version,
                    uint8_t *hash_out)
{
    MDB_val k = {n, (void *)stream}, v;
    int rc = mdb_get(txn, st->db_heads, &k, &v);
    if (rc == MDB_NOTFOUND) {
        *version = 0;
        if (hash_out)
            memset(hash_out, 0, ES_HASH_LEN);
        return 0;
    }
    if (rc)
        return rc;
    if (v.mv_size != 8 + ES_HASH_LEN)
        return MDB_CORRUPTED;
    *version = es__u64_get(v.mv_data);
    if (hash_out)
        memcpy(hash_out, (uint8_t *)v.mv_data + 8, ES_HASH_LEN);
    return 0;
}

/* The position of version `ver` of a stream: from the view when it holds
 * that version, else from the streams database. MDB_NOTFOUND if absent. */
static int position_of(es_store *st, MDB_txn *txn, const char *stream, size_t n, uint64_t ver,
                       const es_view *view, uint8_t out[8])
{
    if (view && view->found && ver > view->base && ver <= view->base + view->count) {
        es__u64_put(out, view->positions[ver - view->base - 1]);
        return 0;
    }
    uint8_t key[ES_STREAM_KEY_MAX];
    MDB_val k = {es__stream_key(key, stream, n, ver), key}, v;
    int rc = mdb_get(txn, st->db_streams, &k, &v);
    if (rc)
        return rc;
    if (v.mv_size != 8)
        return MDB_CORRUPTED;
    memcpy(out, v.mv_data, 8);
    return 0;
}

/* Decodes the record at a position and hands it to fn. Returns 1 if fn
 * asked to stop, 0 to go on, -1 on failure (*s says which). */
static int deliver(es_store *st, MDB_txn *txn, const uint8_t pos_key[8], es_record_fn fn, void *ctx,
                   guild_status *s)
{
    MDB_val k = {8, (void *)pos_key}, v;
    int rc = mdb_get(txn, st->db_log, &k, &v);
    if (rc) {
        *s = es__lmdb_status(NULL, rc, "reading the log");
        return -1;
    }
    es_record rec;
    if ((*s = es_record_decode(v.mv_data, v.mv_size, &rec)) != GUILD_OK)
        return -1;
    return fn(ctx, &rec) ? 1 : 0;
}

/* The last version of a stream seen through txn and view. */
static int head_of(es_store *st, MDB_txn *txn, const char *stream, size_t n, const es_view *view,
                   uint64_t *version, uint8_t *hash)
{
    if (view && view->found) {
        *version = view->base + view->count;
        if (hash)
            memcpy(hash, view->hash, ES_HASH_LEN);
        return 0;
    }
    return es__head_db_get(st, txn, stream, n, version, hash);
}

guild_status es__read_stream_txn(es_store *st, MDB_txn *txn, const char *stream, uint64_t from,
                                 size_t limit, const es_view *view, es_record_fn fn, void *ctx,
                                 uint64_t *next)
{
    size_t n;
    if (!stream_ok(stream, &n))
        return GUILD_INVALID_REQUEST;
    if (from == 0)
        from = 1;
    uint64_t head;
    int rc = head_of(st, txn, stream, n, view, &head, NULL);
    guild_status s = rc ? es__lmdb_status(NULL, rc, "reading a head") : GUILD_OK;
    uint64_t ver = from;
    for (size_t done = 0; s == GUILD_OK && ver <= head && done < limit; done++) {
        uint8_t pos[8];
        if ((rc = position_of(st, txn, stream, n, ver, view, pos))) {
            s = es__lmdb_status(NULL, rc, "reading a stream");
            break;
        }
        ver++;
        if (deliver(st, txn, pos, fn, ctx, &s) != 0)
            break;
    }
    if (next)
        *next = ver;
    return s;
}

/* Begins a read and takes the view of `stream` consistent with it. In the
 * writing process the view is copied first: a checkpoint between the two
 * then only makes the transaction know more, never less. A read-only
 * opener builds its view from the transaction itself. */
static guild_status read_with_view(es_store *st, const char *stream, size_t n, MDB_txn **txn,
                                   es_view *view)
{
    int rc = 0;
    if (!st->read_only)
        rc = es__view_get(st, NULL, stream, n, view);
    if (rc == 0 && (rc = es__read_begin(st, txn)) != 0)
        es__view_release(view);
    if (rc)
        return es__lmdb_status(NULL, rc, "beginning a read");
    if (st->read_only && (rc = es__view_get(st, *txn, stream, n, view))) {
        es__read_end(st, *txn);
        return es__lmdb_status(NULL, rc, "reading the index tail");
    }
    return GUILD_OK;
}

guild_status es_read_stream(es_store *st, const char *stream, uint64_t from, size_t limit,
                            es_record_fn fn, void *ctx, uint64_t *next)
{
    size_t n;
    if (!stream_ok(stream, &n))
        return GUILD_INVALID_REQUEST;
    MDB_txn *txn;
    es_view view;
    guild_status s = read_with_view(st, stream, n, &txn, &view);
    if (s != GUILD_OK)
        return s;
    s = es__read_stream_txn(st, txn, stream, from, limit, &view, fn, ctx, next);
    es__view_release(&view);
    es__read_end(st, txn);
    return s;
}

guild_status es_read_stream_back(es_store *st, const char *stream, uint64_t from, size_t limit,
                                 es_record_fn fn, void *ctx)
{
    size_t n;
    if (!stream_ok(stream, &n))
        return GUILD_INVALID_REQUEST;
    MDB_txn *txn;
    es_view view;
    guild_status s = read_with_view(st, stream, n, &txn, &view);
    if (s != GUILD_OK)
        return s;
    uint64_t head;
    int rc = head_of(st, txn, stream, n, &view, &head, NULL);
    if (rc)
        s = es__lmdb_status(NULL, rc, "reading a head");
    if (from == 0 || from > head)
        from = head;
    for (uint64_t ver = from; s == GUILD_OK && ver >= 1 && limit > 0; ver--, limit--) {
        uint8_t pos[8];
        if ((rc = position_of(st, txn, stream, n, ver, &view, pos))) {
            s = es__lmdb_status(NULL, rc, "reading a stream");
            break;
        }
        if (deliver(st, txn, pos, fn, ctx, &s) != 0)
            break;
    }
    es__view_release(&view);
    es__read_end(st, txn);
    return s;
}

guild_status es_read_log(es_store *st, uint64_t from, size_t limit, es_record_fn fn, void *ctx,
                         uint64_t *next)
{
    MDB_txn *txn;
    int rc = es__read_begin(st, &txn);
    if (rc)
        return es__lmdb_status(NULL, rc, "beginning a read");
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, st->db_log, &cur))) {
        es__read_end(st, txn);
        return es__lmdb_status(NULL, rc, "opening a cursor");
    }
    if (from == 0)
        from = 1;
    uint8_t key[8];
    es__u64_put(key, from);
    MDB_val k = {8, key}, v;
    guild_status s = GUILD_OK;
    uint64_t at = from;
    size_t done = 0;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE); rc == 0 && done < limit;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (es__is_command_key(&k))
            continue;
        es_record rec;
        if ((s = es_record_decode(v.mv_data, v.mv_size, &rec)) != GUILD_OK)
            break;
        at = es__u64_get(k.mv_data) + 1;
        done++;
        if (fn(ctx, &rec))
            break;
    }
    if (rc && rc != MDB_NOTFOUND && s == GUILD_OK)
        s = es__lmdb_status(NULL, rc, "reading the log");
    mdb_cursor_close(cur);
    es__read_end(st, txn);
    if (next)
        *next = at;
    return s;
}

guild_status es_stream_head(es_store *st, const char *stream, uint64_t *version,
                            uint8_t hash[ES_HASH_LEN])
{
    size_t n;
    if (!stream_ok(stream, &n))
        return GUILD_INVALID_REQUEST;
    MDB_txn *txn;
    es_view view;
    guild_status s = read_with_view(st, stream, n, &txn, &view);
    if (s != GUILD_OK)
        return s;
    uint64_t v;
    uint8_t h[ES_HASH_LEN];
    int rc = head_of(st, txn, stream, n, &view, &v, h);
    es__view_release(&view);
    es__read_end(st, txn);
    if (rc)
        return es__lmdb_status(NULL, rc, "reading a head");
    if (v == 0)
        return GUILD_NOT_FOUND;
    if (version)
        *version = v;
    if (hash)
        memcpy(hash, h, ES_HASH_LEN);
    return GUILD_OK;
}

int es__chain_load(es_store *st, MDB_txn *txn, es_chain *chain)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->db_log, &cur);
    if (rc)
        return rc;
    MDB_val k, v;
    rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
    while (rc == 0 && es__is_command_key(&k)) /* results after the last event */
        rc = mdb_cursor_get(cur, &k, &v, MDB_PREV);
    if (rc == MDB_NOTFOUND) {
        chain->next_position = 1;
        memset(chain->last_hash, 0, ES_HASH_LEN);
        rc = 0;
    } else if (rc == 0) {
        es_record rec;
        if (k.mv_size != 8 || es_record_decode(v.mv_data, v.mv_size, &rec) != GUILD_OK)
            rc = MDB_CORRUPTED;
        else {
            chain->next_position = es__u64_get(k.mv_data) + 1;
            memcpy(chain->last_hash, rec.hash, ES_HASH_LEN);
        }
    }
    mdb_cursor_close(cur);
    return rc;
}

guild_status es_log_head(es_store *st, uint64_t *position, uint8_t hash[ES_HASH_LEN])
{
    MDB_txn *txn;
    int rc = es__read_begin(st, &txn);
    if (rc)
        return es__lmdb_status(NULL, rc, "beginning a read");
    es_chain chain;
    rc = es__chain_load(st, txn, &chain);
    es__read_end(st, txn);
    if (rc)
        return es__lmdb_status(NULL, rc, "reading the log's head");
    if (position)
        *position = chain.next_position - 1;
    if (hash)
        memcpy(hash, chain.last_hash, ES_HASH_LEN);
    return GUILD_OK;
}

static int ref_cmp(const void *a, const void *b)
{
    return strcmp(((const es_stream_ref *)a)->stream, ((const es_stream_ref *)b)->stream);
}

/* Merges the heads database (as of the checkpoint) with the tail's newer
 * streams and versions, in id order. */
guild_status es_list_streams(es_store *st, const char *after, size_t limit, es_stream_fn fn,
                             void *ctx)
{
    MDB_txn *txn;
    es_stream_ref *tail = NULL;
    size_t nt = 0, ti = 0;
    MDB_cursor *cur = NULL;
    /* As in read_with_view: the writer's tail first, then the snapshot. */
    int rc = st->read_only ? 0 : es__tail_streams(st, NULL, &tail, &nt);
    if (rc == 0 && (rc = es__read_begin(st, &txn)) == 0) {
        if ((st->read_only && (rc = es__tail_streams(st, txn, &tail, &nt))) ||
            (rc = mdb_cursor_open(txn, st->db_heads, &cur)))
            goto leave;
    } else {
        for (size_t i = 0; i < nt; i++)
            free(tail[i].stream);
        free(tail);
        return es__lmdb_status(NULL, rc, "beginning a read");
    }
    if (nt)
        qsort(tail, nt, sizeof *tail, ref_cmp);
    while (after && ti < nt && strcmp(tail[ti].stream, after) <= 0)
        ti++;

    MDB_val k = {after ? strlen(after) : 0, (void *)after}, v;
    rc =
        after ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE) : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
    if (rc == 0 && after && k.mv_size == strlen(after) && memcmp(k.mv_data, after, k.mv_size) == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    char name[ES_STREAM_MAX + 1];
    for (size_t done = 0; done < limit; done++) {
        bool have_db = rc == 0 && k.mv_size <= ES_STREAM_MAX && v.mv_size >= 8;
        if (have_db) {
            memcpy(name, k.mv_data, k.mv_size);
            name[k.mv_size] = 0;
        }
        if (!have_db && ti == nt)
            break;
        int order = !have_db ? 1 : ti == nt ? -1 : strcmp(name, tail[ti].stream);
        const char *which;
        uint64_t version;
        if (order < 0) {
            which = name;
            version = es__u64_get(v.mv_data);
        } else {
            which = tail[ti].stream;
            version = tail[ti].version;
        }
        if (fn(ctx, which, version))
            break;
        if (order >= 0)
            ti++;
        if (order <= 0)
            rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    }
    if (rc == MDB_NOTFOUND)
        rc = 0;
leave:
    if (cur)
        mdb_cursor_close(cur);
    es__read_end(st, txn);
    for (size_t i = 0; i < nt; i++)
        free(tail[i].stream);
    free(tail);
    return rc ? es__lmdb_status(NULL, rc, "listing streams") : GUILD_OK;
}

/* ---- the command table ---------------------------------------------------- */

/* Stored result: [stream, version, first, last, [ids...], reply-bin]. */
void es__command_encode(msgpack_sbuffer *buf, const es_result *res)
{
    msgpack_sbuffer_clear(buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, buf, msgpack_sbuffer_write);
    size_t sn = strlen(res->stream);
    msgpack_pack_array(&pk, 6);
    msgpack_pack_str(&pk, sn);
    msgpack_pack_str_body(&pk, res->stream, sn);
    msgpack_pack_uint64(&pk, res->version);
    msgpack_pack_uint64(&pk, res->first_position);
    msgpack_pack_uint64(&pk, res->last_position);
    msgpack_pack_array(&pk, res->n_events);
    for (uint32_t i = 0; i < res->n_events; i++) {
        msgpack_pack_str(&pk, ES_ID_LEN);
        msgpack_pack_str_body(&pk, res->event_ids[i], ES_ID_LEN);
    }
    msgpack_pack_bin(&pk, res->reply_len);
    msgpack_pack_bin_body(&pk, res->reply ? res->reply : "", res->reply_len);
}

guild_status es__command_decode(const void *raw, size_t len, es_result *out)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    guild_status s = GUILD_CORRUPT;
    if (msgpack_unpack_next(&up, raw, len, NULL) != MSGPACK_UNPACK_SUCCESS)
        goto leave;
    msgpack_object *o = &up.data;
    if (o->type != MSGPACK_OBJECT_ARRAY || o->via.array.size != 6)
        goto leave;
    msgpack_object *a = o->via.array.ptr;
    if (a[0].type != MSGPACK_OBJECT_STR || a[0].via.str.size > ES_STREAM_MAX ||
        a[4].type != MSGPACK_OBJECT_ARRAY || a[5].type != MSGPACK_OBJECT_BIN)
        goto leave;
    for (int i = 1; i <= 3; i++)
        if (a[i].type != MSGPACK_OBJECT_POSITIVE_INTEGER)
            goto leave;
    if (a[0].via.str.size) /* msgpack-c's empty strings have a NULL pointer */
        memcpy(out->stream, a[0].via.str.ptr, a[0].via.str.size);
    out->stream[a[0].via.str.size] = 0;
    out->version = a[1].via.u64;
    out->first_position = a[2].via.u64;
    out->last_position = a[3].via.u64;
    out->n_events = a[4].via.array.size;
    out->event_ids = guild_xcalloc(out->n_events ? out->n_events : 1, sizeof *out->event_ids);
    for (uint32_t i = 0; i < out->n_events; i++) {
        msgpack_object *id = &a[4].via.array.ptr[i];
        if (id->type != MSGPACK_OBJECT_STR || id->via.str.size != ES_ID_LEN)
            goto leave;
        memcpy(out->event_ids[i], id->via.str.ptr, ES_ID_LEN);
    }
    out->reply_len = a[5].via.bin.size;
    out->reply = guild_xmemdup(a[5].via.bin.ptr, out->reply_len);
    out->duplicate = true;
    out->status = GUILD_OK;
    s = GUILD_OK;
leave:
    msgpack_unpacked_destroy(&up);
    return s;
}

guild_status es_command_lookup(es_store *st, const char *command_id, es_result *out)
{
    memset(out, 0, sizeof *out);
    size_t n = command_id ? strlen(command_id) : 0;
    if (n == 0 || n > ES_COMMAND_ID_MAX)
        return GUILD_INVALID_REQUEST;
    uint64_t cand[ES_COMMAND_CANDIDATES], hash;
    size_t n_cand = es__command_candidates(st, command_id, n, &hash, cand);
    MDB_txn *txn;
    int rc = es__read_begin(st, &txn);
    if (rc)
        return es__lmdb_status(NULL, rc, "beginning a read");
    MDB_val v;
    guild_status s;
    rc = es__command_get(st, txn, command_id, n, cand, n_cand, &v);
    if (rc)
        s = es__lmdb_status(NULL, rc, "reading a command");
    else
        s = es__command_decode(v.mv_data, v.mv_size, out);
    es__read_end(st, txn);
    if (s != GUILD_OK)
        es_result_release(out);
    return s;
}

void es_result_release(es_result *r)
{
    if (!r)
        return;
    free(r->event_ids);
    free(r->reply);
    memset(r, 0, sizeof *r);
}

/* ---- snapshots and meta --------------------------------------------------- */

uint8_t *es__snapshot_value(uint64_t version, const void *state, size_t len)
{
    uint8_t *val = guild_xmalloc(8 + len);
    es__u64_put(val, version);
    if (len)
        memcpy(val + 8, state, len);
    return val;
}

guild_status es__snapshot_split(const void *val, size_t vlen, uint64_t *version, void **state,
                                size_t *len)
{
    if (vlen < 8)
        return GUILD_CORRUPT;
    *version = es__u64_get(val);
    *len = vlen - 8;
    *state = guild_xmemdup((const uint8_t *)val + 8, *len ? *len : 1);
    return GUILD_OK;
}

guild_status es_snapshot_put(es_store *st, const char *stream, uint64_t version, const void *state,
                             size_t len)
{
    size_t n;
    if (!stream_ok(stream, &n) || st->read_only)
        return GUILD_INVALID_REQUEST;
    uint8_t *val = es__snapshot_value(version, state, len);
    guild_status s = es__put_wait(st, st->db_snapshots, stream, n, val, 8 + len);
    free(val);
    return s;
}

/* Copies the value under key in db into a malloc'd buffer. */
static guild_status get_copy(es_store *st, MDB_dbi db, const void *key, size_t klen, void **out,
                             size_t *len)
{
    MDB_txn *txn;
    int rc = es__read_begin(st, &txn);
    if (rc)
        return es__lmdb_status(NULL, rc, "beginning a read");
    MDB_val k = {klen, (void *)key}, v;
    rc = mdb_get(txn, db, &k, &v);
    if (rc == 0) {
        *out = guild_xmemdup(v.mv_data, v.mv_size);
        *len = v.mv_size;
    }
    es__read_end(st, txn);
    return es__lmdb_status(NULL, rc, "reading");
}

guild_status es_snapshot_get(es_store *st, const char *stream, uint64_t *version, void **state,
                             size_t *len)
{
    size_t n;
    if (!stream_ok(stream, &n))
        return GUILD_INVALID_REQUEST;
    MDB_txn *txn;
    int rc = es__read_begin(st, &txn);
    if (rc)
        return es__lmdb_status(NULL, rc, "beginning a read");
    MDB_val k = {n, (void *)stream}, v;
    rc = mdb_get(txn, st->db_snapshots, &k, &v);
    guild_status s = rc ? es__lmdb_status(NULL, rc, "reading a snapshot")
                        : es__snapshot_split(v.mv_data, v.mv_size, version, state, len);
    es__read_end(st, txn);
    return s;
}

/* es_snapshot_each copies this many snapshots out per read transaction. */
#define SNAPSHOT_PAGE 256

typedef struct snap_copy {
    char stream[ES_STREAM_MAX + 1];
    uint64_t version;
    void *state;
    size_t len;
} snap_copy;

/* Copies up to SNAPSHOT_PAGE snapshots whose stream sorts after `after`
 * (all when after is empty) into page; *n of them. */
static int snapshot_page(es_store *st, MDB_txn *txn, const char *after, snap_copy *page, size_t *n)
{
    MDB_cursor *cur;
    int rc = mdb_cursor_open(txn, st->db_snapshots, &cur);
    if (rc)
        return rc;
    size_t alen = strlen(after);
    MDB_val k = {alen, (void *)after}, v;
    rc = mdb_cursor_get(cur, &k, &v, alen ? MDB_SET_RANGE : MDB_FIRST);
    if (rc == 0 && alen && k.mv_size == alen && memcmp(k.mv_data, after, alen) == 0)
        rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT);
    for (*n = 0; rc == 0 && *n < SNAPSHOT_PAGE; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        snap_copy *c = &page[*n];
        if (k.mv_size == 0 || k.mv_size > ES_STREAM_MAX) {
            rc = MDB_CORRUPTED;
            break;
        }
        memcpy(c->stream, k.mv_data, k.mv_size);
        c->stream[k.mv_size] = '\0';
        if (es__snapshot_split(v.mv_data, v.mv_size, &c->version, &c->state, &c->len) != GUILD_OK) {
            rc = MDB_CORRUPTED;
            break;
        }
        (*n)++;
    }
    mdb_cursor_close(cur);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

guild_status es_snapshot_each(es_store *st, es_snapshot_fn fn, void *ctx, uint64_t *count)
{
    snap_copy *page = guild_xcalloc(SNAPSHOT_PAGE, sizeof *page);
    char after[ES_STREAM_MAX + 1] = "";
    guild_status s = GUILD_OK;
    bool first = true, stop = false;
    while (s == GUILD_OK && !stop) {
        MDB_txn *txn;
        int rc = es__read_begin(st, &txn);
        if (rc) {
            s = es__lmdb_status(NULL, rc, "beginning a read");
            break;
        }
        size_t n = 0;
        if (first && count) {
            MDB_stat ms;
            rc = mdb_stat(txn, st->db_snapshots, &ms);
            *count = rc ? 0 : ms.ms_entries;
        }
        first = false;
        if (rc == 0)
            rc = snapshot_page(st, txn, after, page, &n);
        es__read_end(st, txn);
        if (rc)
            s = es__lmdb_status(NULL, rc, "reading the snapshots");
        for (size_t i = 0; i < n; i++) {
            if (s == GUILD_OK && !stop)
                stop = fn(ctx, page[i].stream, page[i].version, page[i].state, page[i].len) != 0;
            free(page[i].state);
        }
        if (n < SNAPSHOT_PAGE)
            break;
        memcpy(after, page[n - 1].stream, sizeof after);
    }
    free(page);
    return s;
}

guild_status es_meta_put(es_store *st, const char *name, const void *value, size_t len)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 255 || st->read_only)
        return GUILD_INVALID_REQUEST;
    return es__put_wait(st, st->db_meta, name, n, value, len);
}

guild_status es_meta_get(es_store *st, const char *name, void **value, size_t *len)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 255)
        return GUILD_INVALID_REQUEST;
    return get_copy(st, st->db_meta, name, n, value, len);
}

guild_status es_meta_put_u64(es_store *st, const char *name, uint64_t v)
{
    uint8_t buf[8];
    es__u64_put(buf, v);
    return es_meta_put(st, name, buf, 8);
}

guild_status es_meta_get_u64(es_store *st, const char *name, uint64_t *v)
{
    void *raw;
    size_t len;
    guild_status s = es_meta_get(st, name, &raw, &len);
    if (s != GUILD_OK)
        return s;
    if (len == 8)
        *v = es__u64_get(raw);
    else
        s = GUILD_CORRUPT;
    free(raw);
    return s;
}

guild_status es_meta_scan(es_store *st, const char *prefix, es_meta_fn fn, void *ctx)
{
    size_t plen = prefix ? strlen(prefix) : 0;
    MDB_txn *txn;
    int rc = es__read_begin(st, &txn);
    if (rc)
        return es__lmdb_status(NULL, rc, "beginning a read");
    MDB_cursor *cur;
    if ((rc = mdb_cursor_open(txn, st->db_meta, &cur))) {
        es__read_end(st, txn);
        return es__lmdb_status(NULL, rc, "opening a cursor");
    }
    MDB_val k = {plen, (void *)prefix}, v;
    char name[256];
    for (rc = plen ? mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE)
                   : mdb_cursor_get(cur, &k, &v, MDB_FIRST);
         rc == 0; rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        if (k.mv_size < plen || memcmp(k.mv_data, prefix, plen) != 0)
            break;
        if (k.mv_size >= sizeof name)
            continue; /* es_meta_put never writes such a name */
        memcpy(name, k.mv_data, k.mv_size);
        name[k.mv_size] = '\0';
        if (fn(ctx, name, v.mv_data, v.mv_size))
            break;
    }
    mdb_cursor_close(cur);
    es__read_end(st, txn);
    return rc == 0 || rc == MDB_NOTFOUND ? GUILD_OK : es__lmdb_status(NULL, rc, "scanning meta");
}
