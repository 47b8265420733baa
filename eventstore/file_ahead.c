/*
 * file_ahead.c — zeros written ahead of LMDB's last page (file_ahead.h).
 */
#include "eventstore/file_ahead.h"

#include "common/log.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

/* The end of the pages LMDB uses, in bytes, as of its last commit. */
static int used_end(MDB_env *env, uint64_t *out, uint64_t *map)
{
    MDB_envinfo info;
    MDB_stat st;
    int rc = mdb_env_info(env, &info);
    if (rc == 0)
        rc = mdb_env_stat(env, &st);
    if (rc)
        return rc;
    *out = ((uint64_t)info.me_last_pgno + 1) * st.ms_psize;
    *map = info.me_mapsize;
    return 0;
}

static int write_zeros(int fd, uint64_t from, uint64_t to)
{
    static const char zeros[65536];
    while (from < to) {
        size_t n = to - from < sizeof zeros ? (size_t)(to - from) : sizeof zeros;
        ssize_t w = pwrite(fd, zeros, n, (off_t)from);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? errno : EIO;
        from += (uint64_t)w;
    }
    return 0;
}

static int keep(MDB_env *env, es_file_ahead *a)
{
    uint64_t used, map;
    int rc = used_end(env, &used, &map);
    /* Enough ahead, or as far as the map goes until it grows. */
    if (rc || (a->end >= used && (a->end - used >= ES_FILE_AHEAD_CHUNK / 2 || a->end >= map)))
        return rc;

    /* Holding the write lock, LMDB's last page cannot move under us. */
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(env, NULL, 0, &txn)))
        return rc;
    int fd;
    struct stat sb;
    if ((rc = used_end(env, &used, &map)) == 0 && (rc = mdb_env_get_fd(env, &fd)) == 0)
        rc = fstat(fd, &sb) ? errno : 0;
    if (rc == 0) {
        uint64_t end = (uint64_t)sb.st_size > used ? (uint64_t)sb.st_size : used;
        uint64_t to = used + ES_FILE_AHEAD_CHUNK < map ? used + ES_FILE_AHEAD_CHUNK : map;
        if (end < to)
            rc = write_zeros(fd, end, to);
        a->end = rc == 0 && to > end ? to : end;
    }
    mdb_txn_abort(txn);
    return rc;
}

int es_file_ahead_keep(MDB_env *env, es_file_ahead *a, const char *what)
{
    int rc = keep(env, a);
    if (rc && !a->failed)
        guild_warn("%s: cannot write ahead of the data file's end (commits go on, growing the "
                   "file as they need): %s",
                   what, mdb_strerror(rc));
    a->failed = rc != 0;
    return rc;
}
