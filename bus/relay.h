/*
 * relay.h — the outbox relay: publishes a domain's committed events, in log
 * order, from its LMDB event store to its JetStream stream.
 *
 * What it promises
 *   - The stream GUILD_<DOMAIN> (subjects guild.evt.<domain>.>, file
 *     storage, duplicate window 2 minutes) is created when missing; an
 *     existing stream of that name is used as it is.
 *   - Event at log position P is published once, after P-1, as
 *
 *       subject  guild.evt.<domain>.<type>.<aggregate id>
 *                (aggregate id: the stream id after its first '-', the whole
 *                id if it has none; '.', '*', '>' and white space in a token
 *                become '_' so that it stays one token)
 *       payload  the record's msgpack bytes exactly as stored (es_record.raw)
 *       headers  Nats-Msg-Id: <domain>:<P>, Guild-Stream, Guild-Version,
 *                Guild-Position, Guild-Correlation-Id (when the record has one);
 *                no traceparent yet: records carry no trace context
 *
 *     so the stream holds the log: same count, same order, no gap, no
 *     duplicate, also across crashes of the relay and restarts of the broker.
 *   - An event is published only after it is durable in LMDB (the relay
 *     reads committed transactions only).
 *
 * How it stays exact
 *   Publishing is asynchronous with a bounded window (max_pending). Every
 *   publish carries, besides its Nats-Msg-Id, the stream sequence it
 *   expects to follow (Nats-Expected-Last-Sequence): the server refuses a
 *   message that would land after a gap or out of order, even one replayed
 *   late from the client's reconnect buffer. So an ack proves every
 *   publish before it landed, and only the first and the last publish of
 *   a batch (up to `batch` events read from the log at once) ask for one:
 *   a publish between them that is refused or lost makes every later one
 *   of the batch refused, the last one's ack included, and the server
 *   sends one ack where it would have sent a batch of them. On any failure
 *   (a negative ack, a missing ack after ack_wait_ms, a reconnect, a
 *   refused publish)
 *   the relay drops what is in flight and re-syncs: it reads the stream's
 *   last message and resumes right after the position in its Guild-Position
 *   header. Nothing is skipped; nothing already stored is sent again, also
 *   outside the duplicate window.
 *
 *   Where to resume on start and after each failure, from the stream's state:
 *     - its last message carries Guild-Position G:  G + 1
 *       (authoritative: the cursor may lag; a cursor ahead of G means the
 *       stream lost its tail, which is published again)
 *     - the stream never held a message (last sequence 0): 1
 *       (a stream deleted and created again is rebuilt from the log)
 *     - the stream is empty after a purge or age limit, or its last
 *       message has no Guild-Position: the cursor + 1
 *   The cursor (meta "relay.cursor", u64: last acknowledged position) is
 *   stored every cursor_every_ms or cursor_every_events, and on stop.
 *
 *   All this holds while the relay is the only publisher into its stream.
 *   A message published there by anything else shifts the sequence: the
 *   relay's next publish is refused while the ones after it may be stored.
 *   When that publish is the first of a batch (a foreign message that
 *   arrives while the relay waits), its ack says so: the relay goes on
 *   from the stream's tail (publishing the lost event later would put it
 *   out of order), logs an error naming the missing position and counts it
 *   in stats.gaps. One that lands between two publishes of a batch in
 *   flight can leave a gap the relay does not see. Either way: rebuild the
 *   stream (delete it; the relay republishes the log).
 *
 * Threads: the relay runs its own thread; every function may be called from
 * any thread, except that bus_relay_stop must be called once and last.
 *
 * Errors: GUILD_INVALID_REQUEST (bad argument, domain differs from the
 * store's), GUILD_UNAVAILABLE (JetStream refused the stream; the NATS
 * status is in guild_error.origin, the JetStream error in the message),
 * GUILD_TIMEOUT and GUILD_CLOSED (bus_relay_wait_caught_up).
 */
#ifndef GUILD_BUS_RELAY_H
#define GUILD_BUS_RELAY_H

#include "common/status.h"
#include "eventstore/es.h"

#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

/* Meta key of the relay's cursor in the event store (u64, big-endian). */
#define BUS_RELAY_CURSOR_KEY "relay.cursor"

/* Headers set on every published event. */
#define BUS_HDR_MSG_ID "Nats-Msg-Id"
#define BUS_HDR_STREAM "Guild-Stream"
#define BUS_HDR_VERSION "Guild-Version"
#define BUS_HDR_POSITION "Guild-Position"
#define BUS_HDR_CORRELATION_ID "Guild-Correlation-Id"

/* Stream settings used when the relay creates the stream. */
#define BUS_RELAY_STREAM_PREFIX "GUILD_"
#define BUS_RELAY_SUBJECT_PREFIX "guild.evt."
#define BUS_RELAY_DUPLICATE_WINDOW_NS (120LL * 1000 * 1000 * 1000)
#define BUS_RELAY_LINGER_US 5000
#define BUS_RELAY_LINGER_MAX_US 1000000

/* The JetStream stream of `domain`'s events: BUS_RELAY_STREAM_PREFIX and
 * the domain upper-cased ("GUILD_TALENT"), cut to fit `size` (at least 1). */
void bus_relay_stream_name(const char *domain, char *out, size_t size);

typedef struct bus_relay bus_relay;

/* Tuning; a zero field takes its default. */
typedef struct bus_relay_options {
    unsigned max_pending;         /* publishes awaiting their ack; 0 = 4096 */
    unsigned batch;               /* events read from the log at a time; 0 = 1024 */
    unsigned poll_ms;             /* idle wait between looks at the log head,
                                     cut short by bus_relay_notify; 0 = 5 */
    unsigned ack_wait_ms;         /* an ack missing this long is a failure; 0 = 5000 */
    unsigned retry_max_ms;        /* longest wait between re-sync attempts; 0 = 1000 */
    unsigned cursor_every_ms;     /* 0 = 100 */
    unsigned cursor_every_events; /* 0 = 10000 */
    unsigned stop_wait_ms;        /* how long stop waits for acks in flight; 0 = 2000 */
    int linger_us;                /* the least time from a round of publishes that
                                     reached the log's head to the next round, so
                                     that what commits meanwhile goes out in one;
                                     0 = BUS_RELAY_LINGER_US, negative = none, at
                                     most BUS_RELAY_LINGER_MAX_US (a wait for the
                                     relay to catch up also waits it out) */
} bus_relay_options;

/* Starts relaying the log of `st` to the stream of `domain` (lower-case
 * [a-z0-9_], equal to es_store_domain(st); NULL takes the store's).
 *
 * `nc` and `st` are borrowed: both must outlive bus_relay_stop. The
 * connection should reconnect forever (natsOptions_SetMaxReconnect -1):
 * the relay waits while it is down and re-syncs once it is back, but
 * cannot revive a closed connection. `opt` may be NULL; it is copied.
 *
 * If the connection is up, the stream is found or created before this
 * returns; if JetStream refuses that (disabled, subjects taken by another
 * stream, ...) the refusal is returned (GUILD_UNAVAILABLE, the JetStream
 * error in the message). If the connection is down or JetStream does not
 * answer, the relay starts anyway and retries from its thread. On success
 * *out owns the relay; end it with bus_relay_stop. */
guild_status bus_relay_start(natsConnection *nc, es_store *st, const char *domain,
                             const bus_relay_options *opt, bus_relay **out, guild_error *err);

/* Tells the relay the log has grown (call after a commit): it looks now,
 * or, while it lingers after a round (linger_us), when the linger ends.
 * Cheap, never blocks on I/O. */
void bus_relay_notify(bus_relay *r);

typedef struct bus_relay_stats {
    uint64_t published;  /* last position acknowledged by JetStream */
    uint64_t head;       /* last position of the log now */
    uint64_t lag;        /* head - published: events not yet in the stream */
    uint64_t cursor;     /* last position stored as the cursor */
    uint64_t errors;     /* failed publishes, re-syncs, cursor writes */
    uint64_t resyncs;    /* times it read the stream's state to resume */
    uint64_t duplicates; /* acks JetStream flagged as duplicates (0 when all is well) */
    uint64_t gaps;       /* positions lost to another publisher (see above; 0 when all is well) */
    uint64_t acks;       /* acks and refusals JetStream sent (two a batch at most) */
    bool connected;      /* the NATS connection is up and the stream in sync */
} bus_relay_stats;

/* Copies the relay's counters. */
void bus_relay_stats_get(bus_relay *r, bus_relay_stats *out);

/* Waits until every event committed before the call is acknowledged by
 * JetStream: GUILD_OK, GUILD_TIMEOUT after `timeout_ms` (< 0 waits
 * forever), GUILD_CLOSED if the relay is stopping. */
guild_status bus_relay_wait_caught_up(bus_relay *r, int64_t timeout_ms);

/* Stops the relay: waits up to stop_wait_ms for the acks of what is in
 * flight, stores the cursor, joins the thread and frees the relay (with its
 * JetStream context; nc and st are left open). Events not yet published
 * are published by the next relay. NULL is allowed. */
void bus_relay_stop(bus_relay *r);

#endif
