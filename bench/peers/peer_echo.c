/*
 * peer_echo.c — the NATS echo: not an event store, but NATS request/reply
 * alone. A nats-server of its own (no JetStream) and a responder in this
 * process, on a connection of its own, that answers each request with its
 * body and stores nothing; K requests in flight with the bodies of guild's
 * commands, their Guild-Command-Id and, when the commands peer has logged
 * in, their Authorization header (cmd_bench.h's CMDB_ECHO, the baseline of
 * `guild bench commands`).
 *
 * A guild command makes this round trip and, besides, a durable commit and
 * the relay's JetStream publish: the echo prices the round trip.
 *
 * Map
 *   - nats-server
 *   - the peer (pw_echo_ops)
 */
#include "cmd_bench.h"
#include "peers.h"

#include "common/alloc.h"

#include <nats/nats.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct echo_peer {
    pw_proc nats;
    char url[64];
    cmdb_client *cl;
} echo_peer;

/* Starts nats-server and waits until a client connects. */
static int server_start(const pw_config *cfg, echo_peer *ep, pw_peer *p)
{
    char port[16];
    int pn = pw_free_port();
    snprintf(port, sizeof port, "%d", pn);
    snprintf(ep->url, sizeof ep->url, "nats://127.0.0.1:%d", pn);
    snprintf(ep->nats.name, sizeof ep->nats.name, "nats-server");
    snprintf(ep->nats.log, sizeof ep->nats.log, "%s/echo-nats.log", cfg->root);
    const char *argv[] = {"nats-server", "-a", "127.0.0.1", "-p", port, "-l", ep->nats.log, NULL};
    if (pw_nats_start(&ep->nats, argv, ep->url, "echo", p) != 0)
        return -1;
    if (cmdb_client_create(ep->url, true, cfg->asap, &ep->cl) != 0) {
        pw_peer_fail(p, "cannot start the echo's client and responder");
        return -1;
    }
    return 0;
}

/* ---- the peer ------------------------------------------------------------------- */

static int echo_start(const pw_config *cfg, pw_peer *p, void **ctx)
{
    echo_peer *ep = guild_xcalloc(1, sizeof *ep);
    *ctx = ep;
    if (server_start(cfg, ep, p) != 0)
        return -1;
    if (pw_bearer[0]) /* the client borrows it: it lives as long as the program */
        cmdb_client_target(ep->cl, pw_bearer, NULL, 0);
    return 0;
}

/* One slice: k requests in flight to the responder. */
static void echo_slice(void *ctx, unsigned k, pw_phase *ph, double warmup, double seconds)
{
    echo_peer *ep = ctx;
    cmdb_spec spec = {.kind = CMDB_ECHO, .in_flight = k, .warmup = warmup, .seconds = seconds};
    cmdb_outcome o;
    cmdb_outcome_init(&o);
    pw_cpu_mark m;
    pw_cpu_mark_take(&m, ep->nats.pid, false);
    cmdb_client_run(ep->cl, &spec, &o, NULL, NULL);
    pw_cpu_mark_end(&m, ep->nats.pid, false, ph);
    pw_phase_add_outcome(ph, &o, 0);
    cmdb_outcome_release(&o);
}

static void echo_stop(void *ctx, pw_peer *p)
{
    echo_peer *ep = ctx;
    if (!ep)
        return;
    cmdb_client_destroy(ep->cl);
    if (ep->nats.pid > 0)
        pw_stop(&ep->nats);
    pw_peer_note(p, "not an event store: NATS request/reply alone, with guild's command bodies%s",
                 pw_bearer[0] ? " and bearer tokens"
                              : " (no bearer token: the commands peer did not run)");
    free(ep);
}

const pw_peer_ops pw_echo_ops = {
    .start = echo_start,
    .begin = pw_no_begin,
    .end = pw_no_end,
    .slice = echo_slice, /* nothing is stored: no finish, no reads, no count */
    .stop = echo_stop,
};
