/* conn.c — connecting to NATS and replying the way CONTRACT.md says. */
#include "bus/conn.h"

#include "common/log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

guild_status bus_nats_status(guild_error *err, natsStatus s, const char *what)
{
    if (s == NATS_OK)
        return GUILD_OK;
    guild_status g =
        (s == NATS_TIMEOUT || s == NATS_NO_SERVER || s == NATS_CONNECTION_CLOSED ||
         s == NATS_NO_RESPONDERS || s == NATS_CONNECTION_DISCONNECTED || s == NATS_IO_ERROR)
            ? GUILD_UNAVAILABLE
            : GUILD_INTERNAL;
    return guild_error_set(err, g, (int)s, "%s: %s", what, natsStatus_GetText(s));
}

static void on_disconnected(natsConnection *nc, void *closure)
{
    if (natsConnection_IsClosed(nc))
        return; /* closing on purpose */
    guild_warn("disconnected from NATS (%s); reconnecting", (const char *)closure);
}

static void on_reconnected(natsConnection *nc, void *closure)
{
    (void)nc;
    guild_info("reconnected to NATS (%s)", (const char *)closure);
}

guild_status bus_connect(const char *url, const char *name, int wait_ms, natsConnection **out,
                         guild_error *err)
{
    natsOptions *opts = NULL;
    natsStatus s = natsOptions_Create(&opts);
    if (s == NATS_OK)
        s = natsOptions_SetURL(opts, url);
    if (s == NATS_OK)
        s = natsOptions_SetName(opts, name);
    if (s == NATS_OK)
        s = natsOptions_SetMaxReconnect(opts, -1);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectWait(opts, 100);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectBufSize(opts, 64 * 1024 * 1024);
    if (s == NATS_OK)
        s = natsOptions_SetMaxPendingMsgs(opts, 1000000);
    /* Without it the client's flusher holds each write ~1 ms to batch. */
    if (s == NATS_OK)
        s = natsOptions_SetSendAsap(opts, true);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(opts, on_disconnected, (void *)name);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(opts, on_reconnected, (void *)name);
    if (s != NATS_OK) {
        natsOptions_Destroy(opts);
        return bus_nats_status(err, s, "setting NATS options");
    }
    natsConnection *nc = NULL;
    for (int waited = 0;; waited += 100) {
        s = natsConnection_Connect(&nc, opts);
        if (s == NATS_OK || waited >= wait_ms)
            break;
        usleep(100 * 1000);
    }
    natsOptions_Destroy(opts);
    if (s != NATS_OK)
        return bus_nats_status(err, s, "connecting to NATS");
    *out = nc;
    return GUILD_OK;
}

void bus_close(natsConnection *nc)
{
    if (!nc)
        return;
    natsConnection_Close(nc);
    natsConnection_Destroy(nc);
}

const char *bus_header(natsMsg *msg, const char *key)
{
    const char *v = NULL;
    if (natsMsgHeader_Get(msg, key, &v) != NATS_OK)
        return NULL;
    return v;
}

const char *bus_content_type(guild_format fmt)
{
    return fmt == GUILD_FMT_MSGPACK ? "application/msgpack" : "application/json";
}

json_t *bus_error_body(guild_status s, const char *field, const char *message)
{
    json_t *e = json_pack("{s:s, s:s}", "code", guild_status_code(s), "message",
                          message && *message ? message : guild_status_code(s));
    if (field && *field)
        json_object_set_new(e, "field", json_string(field));
    return json_pack("{s:b, s:o}", "ok", 0, "error", e);
}

guild_status bus_reply(natsConnection *nc, const char *reply_subject, guild_format fmt,
                       const json_t *body, int http)
{
    if (!reply_subject || !*reply_subject)
        return GUILD_OK; /* a publish without reply: nobody to answer */
    char *bytes = NULL;
    size_t len = 0;
    guild_status g = guild_codec_encode(body, fmt, &bytes, &len);
    if (g != GUILD_OK)
        return g;
    natsMsg *m = NULL;
    char status[8];
    snprintf(status, sizeof status, "%d", http);
    natsStatus s = natsMsg_Create(&m, reply_subject, NULL, bytes, (int)len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, BUS_H_STATUS, status);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, BUS_H_CONTENT_TYPE, bus_content_type(fmt));
    if (s == NATS_OK)
        s = natsConnection_PublishMsg(nc, m);
    natsMsg_Destroy(m);
    free(bytes);
    return bus_nats_status(NULL, s, "replying");
}

guild_status bus_reply_error(natsConnection *nc, const char *reply_subject, guild_format fmt,
                             guild_status s, const char *field, const char *message)
{
    json_t *body = bus_error_body(s, field, message);
    guild_status g = bus_reply(nc, reply_subject, fmt, body, guild_status_http(s));
    json_decref(body);
    return g;
}
