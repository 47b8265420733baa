/*
 * guild_proc.h — real `guild serve <domain>` processes for end-to-end tests,
 * and a client that speaks to them the way CONTRACT.md says.
 *
 *   tst_guild talent;
 *   ck_assert_int_eq(tst_guild_start(&talent, "talent", data_dir, srv.url), 0);
 *   tst_reply r;
 *   tst_call call = {.token = user.access_token, .command_id = "cmd-1"};
 *   tst_guild_command(nc, "talent", "add_skill", body, &call, &r);
 *   ck_assert_int_eq(r.status, 200);
 *   tst_reply_release(&r);
 *   tst_guild_kill(&talent);      // SIGKILL: a crash; the data dir stays
 *   tst_guild_restart(&talent);   // same domain, data dir and NATS URL
 *   tst_guild_stop(&talent);      // SIGTERM, wait, reap
 *
 * The program is the one CTest names in GUILD_GUILD_BIN. A process is started
 * as
 *
 *   guild serve <domain> --data <dir> --nats <url>
 *
 * with its stdout and stderr appended to <dir>/<domain>.log (read it when a
 * test fails; tst_guild_dump_log prints its tail). A start returns only once
 * the process answers `$SRV.PING.<domain>` (up to ~30 s), or fails.
 *
 * Processes never outlive the test that started them: each is asked to die
 * with the thread that forked it (Linux PR_SET_PDEATHSIG) and an atexit
 * handler kills any still running. Start them from the thread that runs the
 * test.
 *
 * Every function returns 0 on success and -1 on failure after writing the
 * reason to stderr. A tst_guild is not thread-safe; the request helpers are
 * (they only use the connection they are given).
 */
#ifndef GUILD_TESTS_SUPPORT_GUILD_PROC_H
#define GUILD_TESTS_SUPPORT_GUILD_PROC_H

#include <jansson.h>
#include <nats/nats.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

/* ---- processes --------------------------------------------------------------- */

typedef struct tst_guild {
    pid_t pid;          /* the running process; 0 when none runs */
    char domain[32];    /* "talent" */
    char data_dir[512]; /* --data, kept across restarts */
    char nats_url[128]; /* --nats, kept across restarts */
    char log_path[600]; /* <data_dir>/<domain>.log */
    int exit_status;    /* wait status of the last process reaped; -1 before */
} tst_guild;

/* Starts `guild serve <domain>` on data_dir and nats_url (both copied) and
 * waits until it answers $SRV.PING.<domain>. On failure nothing is left
 * running and the log's tail is printed. */
int tst_guild_start(tst_guild *g, const char *domain, const char *data_dir, const char *nats_url);

/* Sends SIGTERM and waits for the process to exit (SIGKILL after 40 s);
 * 0 only if it exited with status 0 (a clean shutdown; under ASan, also
 * without leaks). Safe on a process that is not running (returns 0) and on a
 * zeroed tst_guild. */
int tst_guild_stop(tst_guild *g);

/* Stops n processes at once: SIGTERM to all, then waits for each. 0 only if
 * every one exited with status 0. NULL entries are skipped. */
int tst_guild_stop_all(tst_guild *const *gs, int n);

/* Kills the process with SIGKILL and reaps it, as a crash would. */
int tst_guild_kill(tst_guild *g);

/* Starts the process again with the same domain, data dir and URL (a
 * running one is stopped with SIGTERM first). */
int tst_guild_restart(tst_guild *g);

/* True while the process runs (reaps it if it exited). */
bool tst_guild_running(tst_guild *g);

/* Prints the last `bytes` of the process's log to stderr. */
void tst_guild_dump_log(const tst_guild *g, size_t bytes);

/* Waits until some service answers `$SRV.PING.<name>` on nc; 0 or -1 after
 * timeout_ms. */
int tst_guild_wait_ping(natsConnection *nc, const char *name, int timeout_ms);

/* ---- requests ---------------------------------------------------------------- */

/* How to send one request. Every field may be left zero. */
typedef struct tst_call {
    const char *token;        /* sent as "Authorization: Bearer <token>" */
    const char *auth;         /* sent as "Authorization: <auth>" as it is (overrides token) */
    const char *command_id;   /* Guild-Command-Id */
    const char *expected;     /* Guild-Expected-Version, as text (tests send bad ones too) */
    const char *correlation;  /* Guild-Correlation-Id */
    const char *content_type; /* NULL: that of the encoding; "": no Content-Type header */
    bool msgpack;             /* encode a json_t body as msgpack instead of JSON */
    int timeout_ms;           /* 0 = 10000 */
} tst_call;

/* What came back. */
typedef struct tst_reply {
    natsStatus nats;       /* NATS_OK when a reply came; else why none did */
    int status;            /* the Guild-Status header as a number; 0 when absent */
    char content_type[64]; /* the reply's Content-Type; "" when absent */
    char *raw;             /* the reply's bytes (owned, NUL-terminated) */
    size_t raw_len;
    json_t *body; /* decoded by the reply's encoding (owned); NULL if it does not decode */
} tst_reply;

/* Sends `len` bytes of `body` as they are to `subject` with the headers of
 * `call` (NULL: none) and waits for the reply. *out is always filled
 * (release it). 0 when a reply came and decoded to a map, -1 otherwise. */
int tst_guild_request(natsConnection *nc, const char *subject, const void *body, size_t len,
                      const tst_call *call, tst_reply *out);

/* Encodes `body` (borrowed) as JSON, or msgpack when call->msgpack, and sends
 * it to guild.cmd.<domain>.<command>. As tst_guild_request. */
int tst_guild_command(natsConnection *nc, const char *domain, const char *command,
                      const json_t *body, const tst_call *call, tst_reply *out);

/* The error code of a reply ("validation_failed", ...); "ok" for a success;
 * "" when the body is not a guild reply. Borrowed from r. */
const char *tst_reply_code(const tst_reply *r);

/* The error's "field", or NULL. Borrowed from r. */
const char *tst_reply_error_field(const tst_reply *r);

/* A string at `key` of the reply's "data"; NULL when absent. Borrowed. */
const char *tst_reply_data_str(const tst_reply *r, const char *key);

/* The reply's top-level integer `key` ("version", "position"); -1 when absent. */
long long tst_reply_int(const tst_reply *r, const char *key);

void tst_reply_release(tst_reply *r);

/* ---- users ------------------------------------------------------------------- */

#define TST_GUILD_PASSWORD "Correct-horse-9"

typedef struct tst_user {
    char user_id[64];
    char email[128];
    char password[64];
    char access_token[4096];
    char refresh_token[256];
} tst_user;

/* Registers `email` (register_user, or bootstrap_admin when admin) with
 * TST_GUILD_PASSWORD and logs in: *u receives the ids and tokens. */
int tst_guild_signup(natsConnection *nc, const char *email, bool admin, tst_user *u);

/* Logs u in again with u->email and u->password; replaces its tokens. */
int tst_guild_login(natsConnection *nc, tst_user *u);

/* The claims of a JWT, decoded without any check (new reference), or NULL. */
json_t *tst_jwt_claims(const char *token);

/* The decoded header of a JWT (new reference), or NULL. */
json_t *tst_jwt_header(const char *token);

#endif
