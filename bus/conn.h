/*
 * conn.h — NATS connections and replies as CONTRACT.md shapes them.
 *
 * A guild connection reconnects forever (the service keeps answering after
 * nats-server restarts) and keeps what it publishes while disconnected in a
 * reconnect buffer. Replies carry `Guild-Status` (the HTTP status the
 * gateway would answer) and use the request's encoding.
 */
#ifndef GUILD_BUS_CONN_H
#define GUILD_BUS_CONN_H

#include "common/codec.h"
#include "common/status.h"

#include <jansson.h>
#include <nats/nats.h>
#include <stdbool.h>

#define BUS_MAX_BODY (1024 * 1024) /* requests over 1 MiB are refused */

/* Header names of CONTRACT.md. */
#define BUS_H_AUTH "Authorization"
#define BUS_H_COMMAND_ID "Guild-Command-Id"
#define BUS_H_EXPECTED "Guild-Expected-Version"
#define BUS_H_CONSISTENCY "Guild-Consistency"
#define BUS_H_CORRELATION "Guild-Correlation-Id"
#define BUS_H_TRACEPARENT "traceparent"
#define BUS_H_STATUS "Guild-Status"
#define BUS_H_CONTENT_TYPE "Content-Type"

/* Connects to `url` (retrying while the server is not up yet, for up to
 * `wait_ms`), with reconnect forever. *out is owned by the caller:
 * bus_close. `name` shows in the server's connection list. */
guild_status bus_connect(const char *url, const char *name, int wait_ms, natsConnection **out,
                         guild_error *err);

/* The same with guild's own I/O thread behind the socket instead of
 * cnats's reader: a thread may buffer many publishes (bus_hold) and write
 * them with one send (bus_flush); publishes from other threads are written
 * at once, as with bus_connect. Close it with bus_close. */
guild_status bus_connect_batched(const char *url, const char *name, int wait_ms,
                                 natsConnection **out, guild_error *err);

/* For the calling thread: while on, what it publishes on a batched
 * connection stays buffered until it calls bus_flush (or, at the latest,
 * a few milliseconds later). Off by default; no effect on other
 * connections. */
void bus_hold(bool on);

/* Writes what a batched connection has buffered, now, from the calling
 * thread. No effect on other connections. */
void bus_flush(natsConnection *nc);

/* Drains nothing, closes and destroys. NULL allowed. */
void bus_close(natsConnection *nc);

/* A header's value (borrowed from msg) or NULL when absent. */
const char *bus_header(natsMsg *msg, const char *key);

/* The content type of a format. */
const char *bus_content_type(guild_format fmt);

/* {"ok": false, "error": {"code", "field"?, "message"}} (new reference). */
json_t *bus_error_body(guild_status s, const char *field, const char *message);

/* Publishes `body` to `reply_subject` encoded as `fmt`, with Guild-Status
 * `http` and Content-Type, and writes it at once unless the calling thread
 * holds (bus_hold). Borrowed arguments. */
guild_status bus_reply(natsConnection *nc, const char *reply_subject, guild_format fmt,
                       const json_t *body, int http);

/* The same with `body` already encoded as `fmt` (len bytes, borrowed). */
guild_status bus_reply_bytes(natsConnection *nc, const char *reply_subject, guild_format fmt,
                             const char *bytes, size_t len, int http);

/* An error reply (see bus_error_body) with the status's HTTP code. */
guild_status bus_reply_error(natsConnection *nc, const char *reply_subject, guild_format fmt,
                             guild_status s, const char *field, const char *message);

/* Frees a message this process owns: one delivered to a callback of ours
 * or fetched by us, or one it made and published. natsMsg_Destroy hands
 * every message to cnats's collector thread and wakes that thread, a thread
 * switch per message; these free it on the calling thread instead. */
void bus_msg_free(natsMsg *m);
void bus_msg_list_free(natsMsgList *list);

/* Maps a NATS status to a guild status (keeping the text in err). */
guild_status bus_nats_status(guild_error *err, natsStatus s, const char *what);

#endif
