/*
 * nats_server.h — a real `nats-server -js` for tests that need NATS.
 *
 *   tst_nats srv;
 *   ck_assert_int_eq(tst_nats_start(&srv), 0);   // free loopback port, fresh store dir
 *   natsConnection *nc;
 *   ck_assert_int_eq(tst_nats_connect(&srv, &nc), 0);
 *   ...
 *   tst_nats_kill(&srv);      // SIGKILL: the broker crashes, its store stays
 *   tst_nats_restart(&srv);   // same port, same store: JetStream recovers it
 *   ...
 *   natsConnection_Destroy(nc);
 *   tst_nats_stop(&srv);      // SIGTERM, reap, remove the store dir
 *
 * The server is started with fork/exec (`nats-server`, found on PATH, or the
 * program named by GUILD_NATS_SERVER) as
 *
 *   nats-server -js -a 127.0.0.1 -p <port> -sd <dir> -l <dir>/nats-server.log
 *
 * A start returns only once the server accepts connections and announces
 * JetStream in its INFO (up to ~5 s), or fails.
 *
 * The store dir is made with tst_dir_new (tmpdir.h), so it lives under the
 * test file's base directory when there is one. The server's log is written
 * into the store dir: read it when a test fails.
 *
 * Servers never outlive the process that started them: each is asked to die
 * with the thread that forked it (Linux PR_SET_PDEATHSIG), and an atexit
 * handler kills any still running when the process exits (a failed Check
 * assertion exits the test's child process). So start servers from the
 * thread that runs the test, not from a helper thread that exits early.
 *
 * Every function writes the reason of a failure to stderr and returns -1;
 * 0 on success. A tst_nats is not thread-safe: start, stop, kill and restart
 * one server from one thread.
 */
#ifndef GUILD_TESTS_SUPPORT_NATS_SERVER_H
#define GUILD_TESTS_SUPPORT_NATS_SERVER_H

#include <nats/nats.h>
#include <sys/types.h>

typedef struct tst_nats {
    pid_t pid;           /* the running server; 0 when none runs */
    int port;            /* its client port on 127.0.0.1, kept across restarts */
    char url[64];        /* "nats://127.0.0.1:<port>" */
    char store_dir[512]; /* JetStream store (-sd) and the server's log; kept across restarts */
} tst_nats;

/* Makes a fresh store dir, picks a free loopback port (retrying with another
 * one if the server cannot bind it) and starts the server. On failure
 * nothing is left running and the dir is removed. */
int tst_nats_start(tst_nats *srv);

/* Stops the server gracefully (SIGTERM, then SIGKILL after 5 s), reaps it
 * and removes the store dir. Safe on a server that is not running (the dir
 * is still removed) and on a zeroed tst_nats. */
int tst_nats_stop(tst_nats *srv);

/* Kills the server with SIGKILL and reaps it, as a crash would; the store
 * dir and the port stay so that tst_nats_restart can bring it back. */
int tst_nats_kill(tst_nats *srv);

/* Starts the server again on the same port and store dir (after
 * tst_nats_kill, or to replace a running one, which is stopped with SIGTERM
 * first, keeping its dir). Retries for up to ~5 s while the port is still
 * held. */
int tst_nats_restart(tst_nats *srv);

/* Connects to the server with options fit for tests of outages: reconnect
 * forever every 25 ms, 2 s connect timeout. *out is owned by the caller
 * (natsConnection_Destroy). */
int tst_nats_connect(const tst_nats *srv, natsConnection **out);

/* Opens a JetStream context on `nc` (jsCtx_Destroy it). */
int tst_nats_js(natsConnection *nc, jsCtx **out);

#endif
