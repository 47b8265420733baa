/*
 * lmdb_baseline.c — the floor the event store is measured against: bare LMDB,
 * one put and one synchronous commit per event, on one thread. Whatever the
 * store adds (hash chain, indexes, the hand-over to its writer thread) shows
 * as the distance from this loop. With several puts per commit it shows what
 * group commit can reach on this disk at best.
 */
#include "bench.h"

#include "common/alloc.h"
#include "common/clock.h"

#include <errno.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static void put_be64(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)v;
        v >>= 8;
    }
}

/* One transaction: begin, `n` puts under keys from *key on, commit.
 * Returns the LMDB code. */
static int baseline_commit(MDB_env *env, MDB_dbi dbi, uint64_t *key, unsigned n, const void *value,
                           size_t value_len)
{
    MDB_txn *txn;
    int rc = mdb_txn_begin(env, NULL, 0, &txn);
    if (rc != 0)
        return rc;
    for (unsigned i = 0; i < n; i++) {
        uint8_t k[8];
        put_be64(k, ++*key);
        MDB_val mk = {sizeof k, k}, mv = {value_len, (void *)(uintptr_t)value};
        if ((rc = mdb_put(txn, dbi, &mk, &mv, 0)) != 0) {
            mdb_txn_abort(txn);
            return rc;
        }
    }
    return mdb_txn_commit(txn);
}

struct bench_lmdb {
    MDB_env *env;
    MDB_dbi dbi;
    uint8_t *value;
    size_t value_len;
    unsigned per_commit;
    uint64_t key;
};

int bench_lmdb_open(const char *dir, size_t value_len, unsigned per_commit, bench_lmdb **out,
                    bench_result *res)
{
    bench_lmdb *b = guild_xcalloc(1, sizeof *b);
    MDB_txn *txn;
    int rc;

    b->value = guild_xmalloc(value_len);
    b->value_len = value_len;
    b->per_commit = per_commit;
    for (size_t i = 0; i < value_len; i++)
        b->value[i] = (uint8_t)(i * 37 + 11);
    if (mkdir(dir, 0700) != 0) {
        bench_result_error(res, "mkdir %s: %s", dir, strerror(errno));
        goto fail;
    }
    if ((rc = mdb_env_create(&b->env)) != 0 ||
        (rc = mdb_env_set_mapsize(b->env, (size_t)1 << 30)) != 0 ||
        (rc = mdb_env_open(b->env, dir, 0, 0600)) != 0) {
        bench_result_error(res, "mdb_env_open %s: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    if ((rc = mdb_txn_begin(b->env, NULL, 0, &txn)) != 0 ||
        (rc = mdb_dbi_open(txn, NULL, 0, &b->dbi)) != 0 || (rc = mdb_txn_commit(txn)) != 0) {
        bench_result_error(res, "mdb_dbi_open: %s", mdb_strerror(rc));
        goto fail;
    }
    *out = b;
    return 0;

fail:
    bench_lmdb_close(b);
    return -1;
}

int bench_lmdb_run(bench_lmdb *b, double seconds, bench_result *out)
{
    double cpu0 = bench_cpu_seconds();
    uint64_t w0 = bench_io_written();
    uint64_t start = guild_mono_ns();
    uint64_t deadline = start + (uint64_t)(seconds * 1e9);
    uint64_t now = start;
    int ret = 0;
    while (now < deadline) {
        uint64_t t0 = now;
        int rc = baseline_commit(b->env, b->dbi, &b->key, b->per_commit, b->value, b->value_len);
        now = guild_mono_ns();
        if (rc != 0) {
            out->errors++;
            bench_result_error(out, "commit: %s", mdb_strerror(rc));
            ret = -1;
            break;
        }
        out->ops += b->per_commit;
        out->commits++;
        bench_hist_record(&out->lat, now - t0);
    }
    out->seconds += (double)(now - start) / 1e9;
    out->cpu_seconds += bench_cpu_seconds() - cpu0;
    out->units = out->commits;
    out->written += bench_io_written() - w0;
    return ret;
}

void bench_lmdb_close(bench_lmdb *b)
{
    if (b == NULL)
        return;
    if (b->env != NULL)
        mdb_env_close(b->env);
    free(b->value);
    free(b);
}
