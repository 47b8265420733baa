/*
 * conn.c — connecting to NATS and replying the way CONTRACT.md says.
 *
 * Sections: status mapping; guild's I/O thread (the event loop behind
 * bus_connect_batched); connecting; replies.
 */
#include "bus/conn.h"

#include "common/alloc.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/text.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
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

/* ---- freeing messages ------------------------------------------------------
 *
 * libnats exports natsMsg_free, the function its collector thread frees a
 * message with, though its headers do not declare it; CMake defines
 * GUILD_HAVE_NATSMSG_FREE when the library has it. Messages cnats keeps
 * for itself (marked "no destroy") never reach these calls: those are its
 * control messages and the ones its auto-ack wrapper lends to a callback,
 * neither of which guild uses. */

#ifdef GUILD_HAVE_NATSMSG_FREE
void natsMsg_free(void *object);
#endif

void bus_msg_free(natsMsg *m)
{
#ifdef GUILD_HAVE_NATSMSG_FREE
    if (m)
        natsMsg_free(m);
#else
    natsMsg_Destroy(m);
#endif
}

void bus_msg_list_free(natsMsgList *list)
{
#ifdef GUILD_HAVE_NATSMSG_FREE
    if (!list)
        return;
    for (int i = 0; i < list->Count; i++)
        bus_msg_free(list->Msgs[i]);
    free(list->Msgs);
    list->Msgs = NULL;
    list->Count = 0;
#else
    natsMsgList_Destroy(list);
#endif
}

/* ---- guild's I/O thread ---------------------------------------------------
 *
 * A batched connection hands its socket to cnats's external event loop
 * interface, with this file as the loop: one thread per connection polls
 * the socket and calls natsConnection_ProcessReadEvent/ProcessWriteEvent.
 * cnats asks for write interest (write_cb, under the connection's lock)
 * when it has buffered bytes. From a thread that holds (bus_hold), that
 * request is only noted: the thread goes on buffering and writes
 * everything with one send in bus_flush. From any other thread the I/O
 * thread is woken to write at once. Held bytes never wait longer than
 * HOLD_MAX_NS: the I/O thread writes them itself then.
 *
 * Locks: write_mu, then cnats's connection lock, then mu. The callbacks
 * (called by cnats with its connection lock held) only take `mu`, and
 * nothing holds `mu` while calling into cnats.
 */

#define HOLD_MAX_NS (5 * 1000 * 1000)

typedef struct bus_loop bus_loop;
struct bus_loop {
    bus_loop *next; /* in `loops` */
    natsConnection *nc;
    pthread_t thread;
    int wake_fd; /* eventfd */
    /* Serializes the writes: cnats treats a write of nothing as a closed
     * socket, so the buffer is checked and written under one lock. */
    pthread_mutex_t write_mu;

    pthread_mutex_t mu;
    /* Under mu. */
    int fd;            /* the socket; -1 when detached */
    unsigned attaches; /* counts attach calls: a new socket may reuse a number */
    bool want_read, want_write;
    bool held; /* write interest noted by a holding thread, not yet flushed */
    uint64_t held_since;
    bool stop;
};

static pthread_mutex_t loops_mu = PTHREAD_MUTEX_INITIALIZER;
static bus_loop *loops;
static _Thread_local bool hold_writes;

static void loop_wake(bus_loop *l)
{
    uint64_t one = 1;
    ssize_t n = write(l->wake_fd, &one, sizeof one);
    (void)n; /* a full counter wakes the thread as well */
}

static natsStatus loop_attach(void **user, void *loop, natsConnection *nc, natsSock sock)
{
    bus_loop *l = loop;
    pthread_mutex_lock(&l->mu);
    l->nc = nc;
    l->fd = (int)sock;
    l->attaches++;
    l->want_read = true;
    l->want_write = false;
    l->held = false;
    pthread_mutex_unlock(&l->mu);
    *user = l;
    loop_wake(l);
    return NATS_OK;
}

static natsStatus loop_read_cb(void *user, bool add)
{
    bus_loop *l = user;
    pthread_mutex_lock(&l->mu);
    l->want_read = add;
    pthread_mutex_unlock(&l->mu);
    loop_wake(l);
    return NATS_OK;
}

static natsStatus loop_write_cb(void *user, bool add)
{
    bus_loop *l = user;
    bool wake = false;
    pthread_mutex_lock(&l->mu);
    l->want_write = add;
    if (add && hold_writes) {
        if (!l->held)
            l->held_since = guild_mono_ns();
        l->held = true;
    } else {
        l->held = false;
        wake = add;
    }
    pthread_mutex_unlock(&l->mu);
    if (wake)
        loop_wake(l);
    return NATS_OK;
}

static natsStatus loop_detach(void *user)
{
    bus_loop *l = user;
    pthread_mutex_lock(&l->mu);
    l->fd = -1;
    l->want_read = l->want_write = l->held = false;
    pthread_mutex_unlock(&l->mu);
    loop_wake(l);
    return NATS_OK;
}

/* Writes what cnats buffered, if anything. */
static void loop_write(bus_loop *l, natsConnection *nc)
{
    pthread_mutex_lock(&l->write_mu);
    if (natsConnection_Buffered(nc) > 0)
        natsConnection_ProcessWriteEvent(nc);
    pthread_mutex_unlock(&l->write_mu);
}

static void *loop_main(void *arg)
{
    bus_loop *l = arg;
    /* A socket that poll called invalid (closed under it) is skipped until
     * the next attach. */
    unsigned bad = 0;
    bool bad_set = false;
    for (;;) {
        struct pollfd p[2] = {{.fd = l->wake_fd, .events = POLLIN}, {.fd = -1}};
        int timeout = -1;
        pthread_mutex_lock(&l->mu);
        if (l->stop) {
            pthread_mutex_unlock(&l->mu);
            break;
        }
        unsigned attaches = l->attaches;
        if (l->fd >= 0 && !(bad_set && bad == attaches)) {
            p[1].fd = l->fd;
            p[1].events =
                (short)((l->want_read ? POLLIN : 0) | (l->want_write && !l->held ? POLLOUT : 0));
        }
        if (l->held) {
            uint64_t now = guild_mono_ns(), due = l->held_since + HOLD_MAX_NS;
            if (now >= due) {
                l->held = false; /* the holder is late: write for it */
                p[1].events |= POLLOUT;
                timeout = 0;
            } else {
                timeout = (int)((due - now) / 1000000u) + 1;
            }
        }
        natsConnection *nc = l->nc;
        pthread_mutex_unlock(&l->mu);

        int n = poll(p, p[1].fd >= 0 ? 2 : 1, timeout);
        if (n < 0 && errno != EINTR) {
            guild_warn("NATS I/O thread: poll failed: %s", strerror(errno));
            usleep(1000);
            continue;
        }
        if (p[0].revents) {
            uint64_t v;
            ssize_t r = read(l->wake_fd, &v, sizeof v);
            (void)r;
        }
        short ev = p[1].fd >= 0 ? p[1].revents : 0;
        if (ev & POLLNVAL) {
            bad = attaches;
            bad_set = true;
            continue;
        }
        if (ev & (POLLIN | POLLERR | POLLHUP))
            natsConnection_ProcessReadEvent(nc);
        if (ev & POLLOUT)
            loop_write(l, nc);
    }
    return NULL;
}

static bus_loop *loop_find(natsConnection *nc)
{
    pthread_mutex_lock(&loops_mu);
    bus_loop *l = loops;
    while (l && l->nc != nc)
        l = l->next;
    pthread_mutex_unlock(&loops_mu);
    return l;
}

void bus_hold(bool on)
{
    hold_writes = on;
}

void bus_flush(natsConnection *nc)
{
    bus_loop *l = loop_find(nc);
    if (!l)
        return; /* not batched: cnats writes by itself */
    pthread_mutex_lock(&l->mu);
    bool pending = l->want_write;
    l->held = false;
    pthread_mutex_unlock(&l->mu);
    if (!pending)
        return;
    loop_write(l, nc);
    /* A partial write leaves write interest on: the I/O thread polls for it. */
    pthread_mutex_lock(&l->mu);
    pending = l->want_write;
    pthread_mutex_unlock(&l->mu);
    if (pending)
        loop_wake(l);
}

static bus_loop *loop_create(void)
{
    bus_loop *l = guild_xcalloc(1, sizeof *l);
    l->fd = -1;
    l->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->wake_fd < 0) {
        free(l);
        return NULL;
    }
    pthread_mutex_init(&l->mu, NULL);
    pthread_mutex_init(&l->write_mu, NULL);
    if (pthread_create(&l->thread, NULL, loop_main, l) != 0) {
        close(l->wake_fd);
        pthread_mutex_destroy(&l->write_mu);
        pthread_mutex_destroy(&l->mu);
        free(l);
        return NULL;
    }
    return l;
}

static void loop_destroy(bus_loop *l)
{
    pthread_mutex_lock(&l->mu);
    l->stop = true;
    pthread_mutex_unlock(&l->mu);
    loop_wake(l);
    pthread_join(l->thread, NULL);
    close(l->wake_fd);
    pthread_mutex_destroy(&l->write_mu);
    pthread_mutex_destroy(&l->mu);
    free(l);
}

/* ---- connecting ------------------------------------------------------------ */

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

typedef enum { CONN_ASAP, CONN_BATCHED } conn_mode;

static guild_status connect_with(const char *url, const char *name, int wait_ms, conn_mode mode,
                                 natsConnection **out, guild_error *err)
{
    bus_loop *loop = NULL;
    if (mode == CONN_BATCHED && !(loop = loop_create()))
        return guild_error_set(err, GUILD_INTERNAL, errno, "cannot start a NATS I/O thread");
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
    if (s == NATS_OK && loop)
        s = natsOptions_SetEventLoop(opts, loop, loop_attach, loop_read_cb, loop_write_cb,
                                     loop_detach);
    if (s == NATS_OK)
        s = natsOptions_SetDisconnectedCB(opts, on_disconnected, (void *)name);
    if (s == NATS_OK)
        s = natsOptions_SetReconnectedCB(opts, on_reconnected, (void *)name);
    if (s != NATS_OK) {
        natsOptions_Destroy(opts);
        if (loop)
            loop_destroy(loop);
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
    if (s != NATS_OK) {
        if (loop)
            loop_destroy(loop);
        return bus_nats_status(err, s, "connecting to NATS");
    }
    if (loop) {
        pthread_mutex_lock(&loops_mu);
        loop->next = loops;
        loops = loop;
        pthread_mutex_unlock(&loops_mu);
    }
    *out = nc;
    return GUILD_OK;
}

guild_status bus_connect(const char *url, const char *name, int wait_ms, natsConnection **out,
                         guild_error *err)
{
    return connect_with(url, name, wait_ms, CONN_ASAP, out, err);
}

guild_status bus_connect_batched(const char *url, const char *name, int wait_ms,
                                 natsConnection **out, guild_error *err)
{
    return connect_with(url, name, wait_ms, CONN_BATCHED, out, err);
}

void bus_close(natsConnection *nc)
{
    if (!nc)
        return;
    pthread_mutex_lock(&loops_mu);
    bus_loop **at = &loops;
    while (*at && (*at)->nc != nc)
        at = &(*at)->next;
    bus_loop *loop = *at;
    if (loop)
        *at = loop->next;
    pthread_mutex_unlock(&loops_mu);
    natsConnection_Close(nc); /* detaches from the loop */
    if (loop)
        loop_destroy(loop);
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

guild_status bus_reply_bytes(natsConnection *nc, const char *reply_subject, guild_format fmt,
                             const char *bytes, size_t len, int http)
{
    if (!reply_subject || !*reply_subject)
        return GUILD_OK; /* a publish without reply: nobody to answer */
    natsMsg *m = NULL;
    char status[GUILD_U64_DEC_MAX];
    guild_u64_dec(status, http > 0 ? (uint64_t)http : 0);
    natsStatus s = natsMsg_Create(&m, reply_subject, NULL, bytes, (int)len);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, BUS_H_STATUS, status);
    if (s == NATS_OK)
        s = natsMsgHeader_Set(m, BUS_H_CONTENT_TYPE, bus_content_type(fmt));
    if (s == NATS_OK)
        s = natsConnection_PublishMsg(nc, m);
    if (s == NATS_OK && !hold_writes)
        bus_flush(nc);
    bus_msg_free(m);
    return bus_nats_status(NULL, s, "replying");
}

guild_status bus_reply(natsConnection *nc, const char *reply_subject, guild_format fmt,
                       const json_t *body, int http)
{
    if (!reply_subject || !*reply_subject)
        return GUILD_OK;
    char *bytes = NULL;
    size_t len = 0;
    guild_status g = guild_codec_encode(body, fmt, &bytes, &len);
    if (g != GUILD_OK)
        return g;
    g = bus_reply_bytes(nc, reply_subject, fmt, bytes, len, http);
    free(bytes);
    return g;
}

guild_status bus_reply_error(natsConnection *nc, const char *reply_subject, guild_format fmt,
                             guild_status s, const char *field, const char *message)
{
    json_t *body = bus_error_body(s, field, message);
    guild_status g = bus_reply(nc, reply_subject, fmt, body, guild_status_http(s));
    json_decref(body);
    return g;
}
