/*
 * service.h — the NATS service protocol ("micro", ADR-32) for guild.
 *
 * A bus_service is one instance of a named service (identity, talent, ...)
 * on a NATS connection. It answers discovery on nine subjects, without a
 * queue group so that every instance answers:
 *
 *   $SRV.PING   $SRV.PING.<name>   $SRV.PING.<name>.<id>
 *   $SRV.INFO   $SRV.INFO.<name>   $SRV.INFO.<name>.<id>
 *   $SRV.STATS  $SRV.STATS.<name>  $SRV.STATS.<name>.<id>
 *
 * and owns the endpoints (queue subscriptions) that carry its requests.
 * Replies are compact JSON documents:
 *
 *   ping:  {"type":"io.nats.micro.v1.ping_response","name","id","version","metadata":{}}
 *   info:  {"type":"io.nats.micro.v1.info_response","name","id","version","metadata":{},
 *           "description","endpoints":[{"name","subject","queue_group","metadata":{}}]}
 *   stats: {"type":"io.nats.micro.v1.stats_response","name","id","version","metadata":{},
 *           "started":"<RFC 3339 UTC>","endpoints":[{"name","subject","queue_group",
 *           "num_requests","num_errors","last_error","processing_time",
 *           "average_processing_time","data"?}],"data"?}
 *
 * `queue_group` is left out for an endpoint without one; times are integer
 * nanoseconds; `data` appears only when the stats callback supplies it.
 *
 * guild replies to a request after a durable commit, on another thread than
 * the one that received it, so an endpoint does not time its handler: the
 * code that sends the reply calls bus_endpoint_record.
 *
 * All functions are thread-safe. None may be called from inside a message
 * handler of the same service except bus_endpoint_record and
 * bus_service_set_metadata (bus_service_stop and _destroy wait for handlers
 * to return, and would wait for themselves).
 */
#ifndef GUILD_BUS_SERVICE_H
#define GUILD_BUS_SERVICE_H

#include "common/status.h"

#include <jansson.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

/* The protocol's subject prefix, verbs and response types. */
#define BUS_SRV_PREFIX "$SRV"
#define BUS_SRV_PING "PING"
#define BUS_SRV_INFO "INFO"
#define BUS_SRV_STATS "STATS"
#define BUS_SRV_PING_TYPE "io.nats.micro.v1.ping_response"
#define BUS_SRV_INFO_TYPE "io.nats.micro.v1.info_response"
#define BUS_SRV_STATS_TYPE "io.nats.micro.v1.stats_response"

/* Length of a service instance id (base62), without the terminating NUL. */
#define BUS_SERVICE_ID_LEN 22

/* Endpoint subscriptions hold this much before NATS drops messages as a slow
 * consumer: bursts wait in memory instead of being lost. */
#define BUS_ENDPOINT_PENDING_MSGS 1000000
#define BUS_ENDPOINT_PENDING_BYTES (1024 * 1024 * 1024)

typedef struct bus_service bus_service;
typedef struct bus_endpoint bus_endpoint;

/* Supplies the `data` of a STATS reply: called once per endpoint with `ep`
 * set, then once with `ep` NULL for the service-level `data`. Runs on a NATS
 * delivery thread while a STATS request is answered; it may read the
 * service and its endpoints but must not call bus_service_set_stats_handler
 * (which waits for it). Returns a new reference that the service takes over
 * and releases (an object, by the protocol's schema), or NULL to leave
 * `data` out. */
typedef json_t *(*bus_stats_fn)(const bus_service *svc, const bus_endpoint *ep, void *ctx);

/*
 * Creates a service and starts answering discovery on `nc`.
 *
 * nc: borrowed; must stay open (or at least not be destroyed) until
 *     bus_service_destroy returns.
 * name: [A-Za-z0-9_-]+, copied. version: SemVer 2.0 (1.2.3, 1.2.3-rc.1+b5),
 * copied. description: copied; NULL means "".
 *
 * The instance id is 22 random base62 characters. `started` is now.
 * On success *out (owned by the caller, freed by bus_service_destroy) is set;
 * on failure *out is untouched and *err (when not NULL) says why:
 *   GUILD_INVALID_REQUEST  a malformed name or version, NULL nc or out
 *   GUILD_UNAVAILABLE      NATS refused a subscription (origin: natsStatus)
 */
guild_status bus_service_create(natsConnection *nc, const char *name, const char *version,
                                const char *description, bus_service **out, guild_error *err);

/* The same, but the service does not answer $SRV requests until
 * bus_service_announce: a process that adds its endpoints after creating
 * the service announces itself only once they are subscribed, so a client
 * that sees it in a PING finds its endpoints. */
guild_status bus_service_create_quiet(natsConnection *nc, const char *name, const char *version,
                                      const char *description, bus_service **out, guild_error *err);

/* Flushes the connection (every subscription made so far is at the
 * server) and starts answering $SRV requests. GUILD_UNAVAILABLE if the
 * flush failed; the service answers anyway. */
guild_status bus_service_announce(bus_service *svc);

/*
 * Adds an endpoint: subscribes `subject` (wildcards allowed, e.g.
 * guild.cmd.talent.*) in `queue_group`, or as a plain subscription when
 * queue_group is NULL, and delivers each request to `handler` with
 * `closure`, as any cnats asynchronous subscription does (the handler owns
 * the natsMsg). Pending limits are BUS_ENDPOINT_PENDING_*.
 *
 * name: [A-Za-z0-9_-]+; several endpoints may share one. name, subject and
 * queue_group are copied. closure: borrowed until bus_service_stop returns.
 *
 * *out is written before the subscription starts, so a handler may find the
 * endpoint through its closure even for the first request; it is reset to
 * NULL on failure. The endpoint belongs to the service and lives until
 * bus_service_destroy.
 *
 * Returns GUILD_OK; GUILD_INVALID_REQUEST for a malformed name, subject or
 * queue group, a NULL handler or out; GUILD_CLOSED once the service is
 * stopped; GUILD_UNAVAILABLE when NATS refuses the subscription.
 */
guild_status bus_service_add_endpoint(bus_service *svc, const char *name, const char *subject,
                                      const char *queue_group, natsMsgHandler handler,
                                      void *closure, bus_endpoint **out);

/*
 * Counts one answered request of `ep`: num_requests + 1, processing_time +
 * (now - started_mono_ns) where started_mono_ns is guild_mono_ns() taken when
 * the request arrived (0, or a time in the future, counts as no time). When
 * is_error, num_errors + 1 and last_error becomes error_text (copied, cut to
 * 255 bytes; NULL reads "error"). By convention error_text is
 * "<code>: <message>", which bus_endpoint_record_status writes.
 * Safe from any thread until bus_service_destroy.
 */
void bus_endpoint_record(bus_endpoint *ep, uint64_t started_mono_ns, bool is_error,
                         const char *error_text);

/* Same, from a guild status: GUILD_OK is a success, anything else an error
 * with last_error "<wire code>: <message>" (message may be NULL). */
void bus_endpoint_record_status(bus_endpoint *ep, uint64_t started_mono_ns, guild_status s,
                                const char *message);

/* Sets (value copied) or, with value NULL, removes one metadata entry shown
 * in every discovery reply; e.g. ("domain", "talent"). The protocol asks
 * that metadata not change once published: set it before the first request
 * could be answered, or accept that tools may show old values.
 * Returns GUILD_OK, or GUILD_INVALID_REQUEST for a NULL or empty key. */
guild_status bus_service_set_metadata(bus_service *svc, const char *key, const char *value);

/* Installs (fn NULL: removes) the stats callback; ctx is borrowed until this
 * is called again or the service is stopped: once it returns, the old pair is
 * no longer in use. */
void bus_service_set_stats_handler(bus_service *svc, bus_stats_fn fn, void *ctx);

/* The instance id (BUS_SERVICE_ID_LEN characters) and the name; valid until
 * bus_service_destroy. */
const char *bus_service_id(const bus_service *svc);
const char *bus_service_name(const bus_service *svc);

/* The endpoint's name, subject and queue group (NULL if none); valid until
 * bus_service_destroy. */
const char *bus_endpoint_name(const bus_endpoint *ep);
const char *bus_endpoint_subject(const bus_endpoint *ep);
const char *bus_endpoint_queue_group(const bus_endpoint *ep);

/*
 * Stops taking requests: drains every subscription (endpoints and discovery;
 * messages already received are still handed to their handlers) and returns
 * once every handler has returned. Endpoints stay valid, so replies still in
 * flight may call bus_endpoint_record until bus_service_destroy. Waits as
 * long as cnats' drain (30 s at most, then pending messages are dropped).
 * Idempotent; also fine after the connection was closed.
 */
void bus_service_stop(bus_service *svc);

/* Stops the service if still running, then frees it and its endpoints.
 * The caller must ensure no bus_endpoint_record is running or will run.
 * NULL is a no-op. */
void bus_service_destroy(bus_service *svc);

#endif
