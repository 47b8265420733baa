/*
 * audit.h — checks of a domain's store that need the domain's code, for
 * `guild events verify`.
 *
 * A snapshot is what a service decides on instead of the events before it,
 * and the hash chain does not cover it. bus_snapshots_check folds each
 * snapshotted stream from its events alone, up to the snapshot's version,
 * and compares the state with the snapshot's, both encoded by the
 * aggregate's own snapshot codec (so two encodings of one state compare
 * equal).
 */
#ifndef GUILD_BUS_AUDIT_H
#define GUILD_BUS_AUDIT_H

#include "common/status.h"
#include "eventstore/es.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct bus_snapshot_report {
    uint64_t found;   /* snapshots in the store */
    uint64_t checked; /* compared with the fold of their events */
    uint64_t unknown; /* of streams whose aggregate has no snapshot codec here: unused, unchecked */
    bool intact;      /* every checked snapshot equals its fold */
    /* The first that does not, when !intact. */
    char stream[ES_STREAM_MAX + 1];
    uint64_t version;
    char what[200];
} bus_snapshot_report;

/* Checks every snapshot of `domain`'s store st. GUILD_OK with the verdict
 * in *rep, or the store's error when it cannot be read. progress (may be
 * NULL) is called as snapshots are checked. */
guild_status bus_snapshots_check(es_store *st, const char *domain, bus_snapshot_report *rep,
                                 es_progress_fn progress, void *ctx);

#endif
