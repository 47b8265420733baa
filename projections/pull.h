/*
 * pull.h — a projector's JetStream consumer, pulled over a subscription of
 * its own (internal to projections/).
 *
 * The projector asks its durable pull consumer for batches with
 * JetStream's pull requests ($JS.API.CONSUMER.MSG.NEXT.<stream>.<name>) and
 * reads what comes back on a plain subscription to an inbox of its own,
 * rather than with libnats's natsSubscription_Fetch: in libnats 3.4, a Fetch
 * that starts with more than half a batch already waiting (messages an
 * earlier request brought after its caller had stopped waiting, which a
 * busy machine makes common) never sees its batch as full, and writes past
 * the end of the list it returns.
 *
 * A request ends when its batch is delivered, or with a status message on
 * its reply subject (404: nothing now; 408: it expired). Messages a request
 * brings after its fetch returned wait on the subscription and are the
 * next fetch's first; they come in the consumer's order, as every request
 * shares the subscription. A consumer that was deleted answers nothing: the
 * caller sees fetches that time out (see projector.c's STALLED_MS).
 */
#ifndef GUILD_PROJECTIONS_PULL_H
#define GUILD_PROJECTIONS_PULL_H

#include "common/status.h"

#include <nats/nats.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct prj_pull prj_pull;

/* Subscribes to the inbox the answers to `name`'s pull requests come to.
 * The one subscription serves every consumer prj_pull_start makes, so
 * making the consumer again starts and ends no subscription. */
guild_status prj_pull_new(natsConnection *nc, jsCtx *js, const char *stream, const char *name,
                          prj_pull **out, guild_error *err);

/* Makes the durable pull consumer `name` of `stream` afresh (deleting one
 * of that name first), delivering `filter` from stream sequence `start`
 * (0 or 1: from the beginning), acknowledged all at once. What the
 * consumer before it sent and was not fetched yet is dropped. */
guild_status prj_pull_start(prj_pull *p, const char *filter, uint64_t start, guild_error *err);

/* Up to `batch` messages into list, in the consumer's order (free them with
 * bus_msg_list_free): those already here and those the consumer has now;
 * if there are none, the first that comes within wait_ms, with any that
 * came along.
 * NATS_OK with at least one, NATS_TIMEOUT with none, or the failure (a
 * request that could not be sent, or one the server refused). */
natsStatus prj_pull_fetch(prj_pull *p, natsMsgList *list, int batch, int wait_ms);

/* Acknowledges m, a fetched event, and, as the consumer acknowledges all,
 * every message before it: a "+ACK" published on nc to its reply subject
 * (any thread may call it; it needs no prj_pull). */
natsStatus prj_pull_ack(natsConnection *nc, natsMsg *m);

/* Stops taking the consumer's messages; with `drop`, deletes it. */
void prj_pull_stop(prj_pull *p, bool drop);

/* Ends the subscription and frees p (NULL is ignored). */
void prj_pull_free(prj_pull *p);

#endif
