/*
 * file_ahead.h — an LMDB data file kept written a little past LMDB's last
 * page.
 *
 * A commit whose new pages lie past the end of the data file makes the file
 * system allocate blocks and grow the file, and the commit's sync then also
 * waits for that metadata to reach the journal. es_file_ahead_keep writes zeros
 * past LMDB's last page, ES_FILE_AHEAD_CHUNK at a time, so that commits
 * overwrite blocks the file already has. On ext4, appends committed in
 * batches then go about a fifth faster (docs/performance.md).
 *
 * LMDB reads no page past its last one, so the zeros are never seen: a
 * reopen, a copy and a reader in another process ignore them.
 */
#ifndef GUILD_EVENTSTORE_FILE_AHEAD_H
#define GUILD_EVENTSTORE_FILE_AHEAD_H

#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>

#define ES_FILE_AHEAD_CHUNK (1u << 20)

typedef struct es_file_ahead {
    uint64_t end; /* the file is written up to here (0 before the first call) */
    bool failed;  /* the last call failed (and said so) */
} es_file_ahead;

/* When less than half of ES_FILE_AHEAD_CHUNK is written past LMDB's last
 * page, writes zeros from the end of the file to a chunk past that page
 * (never past the map). Call it between write transactions from a thread
 * that holds none: it begins one itself, so that no other writer, in this
 * process or another, adds pages while the zeros go down, and aborts it.
 * Returns 0, or an LMDB or errno code; nothing LMDB holds has changed then
 * either, and the first failure after a success is logged as a warning
 * naming `what` (commits go on, growing the file as they need). */
int es_file_ahead_keep(MDB_env *env, es_file_ahead *a, const char *what);

#endif
