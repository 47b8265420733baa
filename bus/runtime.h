/*
 * runtime.h — the command runtime: serves one domain's commands over NATS.
 *
 * For each request on guild.cmd.<domain>.<command> (queue group
 * guild.<domain>): decode (JSON or msgpack), validate against the command's
 * table, authorize (bearer token, permission), idempotency (a known
 * Guild-Command-Id answers its first reply), find the target aggregate,
 * prepare (slow or random work on a worker pool), then decide on the event
 * store's writer thread against the current state (an aggregate cache keeps
 * hot aggregates in memory), group commit, and reply only once the events
 * are durable. The outbox relay then publishes them to JetStream.
 *
 * It also answers the NATS service protocol ($SRV.PING/INFO/STATS) and, for
 * identity, the public_keys query other services verify tokens with.
 */
#ifndef GUILD_BUS_RUNTIME_H
#define GUILD_BUS_RUNTIME_H

#include "common/status.h"
#include "eventstore/es.h"

#include <stdbool.h>

/* An aggregate with a snapshot codec gets a snapshot, in the same commit
 * as its events, each time its stream passes a multiple of this many
 * versions; loading it then reads the snapshot and the events after it. */
#define BUS_SNAPSHOT_EVERY 100

typedef struct bus_runtime bus_runtime;

typedef struct bus_runtime_options {
    const char *domain;   /* "talent" */
    const char *data_dir; /* the store lives in <data_dir>/<domain>/events */
    const char *nats_url;
    bool dev_mode;       /* development: reset tokens shown in replies */
    unsigned workers;    /* prepare threads; 0 = 2 */
    size_t map_size;     /* initial LMDB map size; 0 = the store's default */
    int connect_wait_ms; /* how long to wait for NATS at start; 0 = 10 s */
} bus_runtime_options;

/* Opens the store, connects, starts the relay and the endpoints. *out owns
 * all of it: bus_runtime_stop. */
guild_status bus_runtime_start(const bus_runtime_options *opt, bus_runtime **out, guild_error *err);

/* Stops taking requests, finishes those in flight, stops the relay (after
 * it caught up, for a moment), closes the store. NULL allowed. */
void bus_runtime_stop(bus_runtime *rt);

/* The store (borrowed). */
es_store *bus_runtime_store(bus_runtime *rt);

#endif
