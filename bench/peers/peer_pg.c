/*
 * peer_pg.c — PostgreSQL as an event store, the way Message DB and Marten
 * use it: one table of messages with a global position, a unique stream
 * name and stream position, and a write function that checks the expected
 * version inside the transaction. Written here from that published design.
 *
 * Map
 *   - the schema and the write function (SQL)
 *   - the server: initdb and pg_ctl in the bench's directory, on loopback,
 *     as the `postgres` user when the bench runs as root (initdb refuses root)
 *   - writers: one connection each; past `pg_connections` writers, each
 *     connection keeps several appends in flight in pipeline mode, each its
 *     own transaction
 *   - prefill, reads, the count check; the peer (pw_postgres_ops)
 *
 * The server keeps its defaults (synchronous_commit on, fsync on): an append
 * returns once its transaction is flushed, as guild's does. The default
 * max_connections (100) is why many writers share connections.
 */
#include "peers.h"

#include "common/alloc.h"
#include "common/clock.h"
#include "common/uuid.h"

#include <errno.h>
#include <glob.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PG_USER "bench"
#define PG_CONFLICT_STATE "ES409" /* SQLSTATE the write function raises */

/* ---- the schema ------------------------------------------------------------------
 *
 *   column           type         what
 *   global_position  bigserial    the log's order, primary key
 *   stream_name      text         with position: unique, the stream's index
 *   position         bigint       the stream's version, from 1
 *   type, data       text, jsonb  the event
 *   metadata         jsonb        correlation and the like (NULL here)
 *   id               uuid         unique: an append given again is refused
 *   time             timestamptz  when it was written
 *
 * write_message takes a transaction-scoped advisory lock on the stream, so
 * that writers of one stream queue instead of failing on the unique index,
 * reads the stream's version from that index, and refuses the append when
 * the caller expected another one.
 */
static const char schema_sql[] =
    "CREATE TABLE messages (\n"
    "    global_position bigserial PRIMARY KEY,\n"
    "    stream_name text NOT NULL,\n"
    "    position bigint NOT NULL,\n"
    "    type text NOT NULL,\n"
    "    data jsonb NOT NULL,\n"
    "    metadata jsonb,\n"
    "    id uuid NOT NULL,\n"
    "    time timestamptz NOT NULL DEFAULT now());\n"
    "CREATE UNIQUE INDEX messages_stream ON messages (stream_name, position);\n"
    "CREATE UNIQUE INDEX messages_id ON messages (id);\n"
    "CREATE FUNCTION write_message(p_id uuid, p_stream text, p_type text, p_data jsonb,\n"
    "                              p_metadata jsonb, p_expected bigint)\n"
    "RETURNS bigint LANGUAGE plpgsql AS $$\n"
    "DECLARE\n"
    "    v bigint;\n"
    "BEGIN\n"
    "    PERFORM pg_advisory_xact_lock(hashtextextended(p_stream, 0));\n"
    "    SELECT coalesce(max(position), 0) INTO v FROM messages WHERE stream_name = p_stream;\n"
    "    IF p_expected IS NOT NULL AND p_expected <> v THEN\n"
    "        RAISE EXCEPTION 'wrong expected version % for stream % (it is at %)',\n"
    "            p_expected, p_stream, v USING ERRCODE = '" PG_CONFLICT_STATE "';\n"
    "    END IF;\n"
    "    INSERT INTO messages (id, stream_name, position, type, data, metadata)\n"
    "        VALUES (p_id, p_stream, v + 1, p_type, p_data, p_metadata);\n"
    "    RETURN v + 1;\n"
    "END $$;\n";

static const char append_sql[] =
    "SELECT write_message($1::uuid, $2::text, $3::text, $4::jsonb, NULL, $5::bigint)";
static const char read_stream_sql[] =
    "SELECT global_position, position, type, data, metadata, id, time FROM messages"
    " WHERE stream_name = $1 AND position >= $2 ORDER BY position LIMIT $3";
static const char read_log_sql[] =
    "SELECT global_position, stream_name, position, type, data, metadata, id, time"
    " FROM messages WHERE global_position >= $1 ORDER BY global_position LIMIT $2";

/* ---- the server --------------------------------------------------------------------- */

typedef struct pg_server {
    char bin[PW_PATH_MAX];  /* Debian's server binaries, /usr/lib/postgresql/<v>/bin */
    char home[PW_PATH_MAX]; /* the server's: its data, socket and log */
    char dir[PW_PATH_MAX];  /* data directory, in home */
    char slog[PW_PATH_MAX]; /* the server's log, in home */
    char log[PW_PATH_MAX];  /* initdb's and pg_ctl's output */
    char conninfo[256];
    bool as_postgres; /* the bench runs as root: the server runs as `postgres` */
    bool started;
} pg_server;

/* The newest installed server version's bin directory. */
static int find_bin(pg_server *pg)
{
    glob_t g;
    int best = -1;
    if (glob("/usr/lib/postgresql/*/bin/pg_ctl", 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            int v = atoi(g.gl_pathv[i] + strlen("/usr/lib/postgresql/"));
            if (v > best) {
                best = v;
                snprintf(pg->bin, sizeof pg->bin, "%.*s", (int)(strlen(g.gl_pathv[i]) - 7),
                         g.gl_pathv[i]);
            }
        }
        globfree(&g);
    }
    return best >= 0 ? 0 : -1;
}

/* Runs one of the server's programs (as `postgres` when needed). */
static int pg_tool(const pg_server *pg, const char *tool, const char *const args[])
{
    const char *argv[24];
    char path[PW_PATH_MAX + 32];
    size_t n = 0;
    if (pg->as_postgres) {
        argv[n++] = "runuser";
        argv[n++] = "-u";
        argv[n++] = "postgres";
        argv[n++] = "--";
    }
    snprintf(path, sizeof path, "%s/%s", pg->bin, tool);
    argv[n++] = path;
    for (size_t i = 0; args[i] && n < 23; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    return pw_run(pg->log, argv);
}

static int server_start(const pw_config *cfg, pg_server *pg, pw_peer *p)
{
    if (find_bin(pg) != 0) {
        pw_peer_fail(p, "no PostgreSQL server under /usr/lib/postgresql (bench/peers/deps.sh "
                        "installs it)");
        return -1;
    }
    snprintf(pg->home, sizeof pg->home, "%s/postgres", cfg->root);
    snprintf(pg->dir, sizeof pg->dir, "%.4000s/data", pg->home);
    snprintf(pg->slog, sizeof pg->slog, "%.4000s/server.log", pg->home);
    snprintf(pg->log, sizeof pg->log, "%s/postgres-tools.log", cfg->root);
    if (mkdir(pg->home, 0700) != 0) {
        pw_peer_fail(p, "mkdir %s: %s", pg->home, strerror(errno));
        return -1;
    }
    if (geteuid() == 0) {
        struct passwd *pw = getpwnam("postgres");
        if (!pw) {
            pw_peer_fail(p, "running as root and there is no `postgres` user to run the server");
            return -1;
        }
        /* the server's user must reach its directory through the bench's */
        if (chmod(cfg->root, 0711) != 0 || chown(pg->home, pw->pw_uid, pw->pw_gid) != 0) {
            pw_peer_fail(p, "giving %s to postgres: %s", pg->home, strerror(errno));
            return -1;
        }
        pg->as_postgres = true;
    }
    int port = pw_free_port();
    char opts[PW_PATH_MAX + 128];
    snprintf(opts, sizeof opts,
             "-c listen_addresses=127.0.0.1 -c port=%d -c unix_socket_directories='%s'", port,
             pg->home);
    uint64_t t0 = guild_mono_ns();
    /* --no-sync: initdb's own files need not survive a crash of this machine */
    const char *init[] = {"-D",    pg->dir, "-U",   PG_USER,     "-A",
                          "trust", "-E",    "UTF8", "--no-sync", NULL};
    if (pg_tool(pg, "initdb", init) != 0) {
        pw_peer_fail(p, "initdb failed (see %s)", pg->log);
        pw_show_log(pg->log);
        return -1;
    }
    const char *start[] = {"-D", pg->dir, "-l", pg->slog, "-w", "-t",
                           "60", "-o",    opts, "start",  NULL};
    if (pg_tool(pg, "pg_ctl", start) != 0) {
        pw_peer_fail(p, "pg_ctl start failed (see %s)", pg->slog);
        pw_show_log(pg->log);
        pw_show_log(pg->slog);
        return -1;
    }
    pg->started = true;
    snprintf(pg->conninfo, sizeof pg->conninfo,
             "host=127.0.0.1 port=%d dbname=postgres user=" PG_USER, port);
    printf("[postgres] %s/postgres ready on 127.0.0.1:%d in %.2f s\n", pg->bin, port,
           (double)(guild_mono_ns() - t0) / 1e9);
    return 0;
}

/* The postmaster's pid (its backends are its children), or 0. */
static pid_t server_pid(const pg_server *pg)
{
    char path[PW_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/postmaster.pid", pg->dir);
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (f) {
        if (fscanf(f, "%ld", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return (pid_t)pid;
}

static void server_stop(pg_server *pg)
{
    if (!pg->started)
        return;
    const char *stop[] = {"-D", pg->dir, "-m", "fast", "-w", "stop", NULL};
    if (pg_tool(pg, "pg_ctl", stop) != 0)
        fprintf(stderr, "guild-peers: pg_ctl stop failed (see %s)\n", pg->log);
    pg->started = false;
}

/* A connection; with `prepare`, the append statement is prepared on it. */
static PGconn *pg_connect(const pg_server *pg, bool prepare, char *why, size_t size)
{
    PGconn *c = PQconnectdb(pg->conninfo);
    if (PQstatus(c) != CONNECTION_OK) {
        snprintf(why, size, "connecting: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    if (!prepare)
        return c;
    PGresult *r = PQprepare(c, "append", append_sql, 5, NULL);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        snprintf(why, size, "preparing the append: %s", PQresultErrorMessage(r));
    PQclear(r);
    if (!ok) {
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* ---- writers ---------------------------------------------------------------------- */

/* The text parameters of one append; the pointers point into it. */
typedef struct pg_params {
    char id[GUILD_UUID_STRLEN + 1];
    char data[160];
    char expected[24];
    const char *v[5];
} pg_params;

static void params_fill(pg_params *pp, const pw_stream *s, uint64_t expected, bool check)
{
    guild_uuid7(pp->id);
    pw_event_json(s->name, s->count + 1, pp->data, sizeof pp->data);
    snprintf(pp->expected, sizeof pp->expected, "%" PRIu64, expected);
    pp->v[0] = pp->id;
    pp->v[1] = s->name;
    pp->v[2] = PW_EVENT_TYPE;
    pp->v[3] = pp->data;
    pp->v[4] = check ? pp->expected : NULL;
}

/* What a result says: its outcome, and the new version on PW_OK. */
static pw_outcome read_result(PGresult *r, uint64_t *version, char *why, size_t size)
{
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_TUPLES_OK && PQntuples(r) == 1) {
        *version = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
        return PW_OK;
    }
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    snprintf(why, size, "%s", PQresultErrorMessage(r));
    why[strcspn(why, "\n")] = '\0';
    return state && strcmp(state, PG_CONFLICT_STATE) == 0 ? PW_CONFLICT : PW_ERROR;
}

typedef struct pg_writer {
    const pg_server *pg;
    pw_table *t;
    unsigned depth; /* appends in flight on this connection */
    PGconn *conn;
    pthread_t th;
} pg_writer;

/* One append at a time: send, wait, go on (until the slice ends). */
static void write_plain(pg_writer *w)
{
    unsigned idx;
    uint64_t expected;
    pg_params pp;
    char why[256];
    while (pw_table_take(w->t, &idx, &expected)) {
        params_fill(&pp, &w->t->s[idx], expected, true);
        PGresult *r = PQexecPrepared(w->conn, "append", 5, pp.v, NULL, NULL, 0);
        uint64_t version = 0;
        pw_outcome o = read_result(r, &version, why, sizeof why);
        PQclear(r);
        pw_table_finish(w->t, idx, o, version, why);
    }
}

/* `depth` appends in flight in pipeline mode, a sync after each so that each
 * is its own transaction; results come back in order. */
static void write_pipelined(pg_writer *w)
{
    unsigned *ring = guild_xcalloc(w->depth, sizeof *ring), head = 0, n = 0;
    pg_params pp;
    char why[256];
    if (PQenterPipelineMode(w->conn) != 1) {
        fprintf(stderr, "guild-peers: postgres: no pipeline mode: %s", PQerrorMessage(w->conn));
        free(ring);
        return;
    }
    bool more = true;
    for (;;) {
        while (more && n < w->depth) {
            unsigned idx;
            uint64_t expected;
            if (!pw_table_take(w->t, &idx, &expected)) {
                more = false;
                break;
            }
            params_fill(&pp, &w->t->s[idx], expected, true);
            if (PQsendQueryPrepared(w->conn, "append", 5, pp.v, NULL, NULL, 0) != 1 ||
                PQpipelineSync(w->conn) != 1) {
                snprintf(why, sizeof why, "%s", PQerrorMessage(w->conn));
                pw_table_finish(w->t, idx, PW_ERROR, 0, why);
                more = false;
                break;
            }
            ring[(head + n++) % w->depth] = idx;
        }
        if (n == 0)
            break;
        unsigned idx = ring[head];
        head = (head + 1) % w->depth;
        n--;
        uint64_t version = 0;
        pw_outcome o = PW_ERROR;
        PGresult *r = PQgetResult(w->conn);
        if (r) {
            o = read_result(r, &version, why, sizeof why);
            PQclear(r);
            while ((r = PQgetResult(w->conn)) != NULL) /* the end of this query */
                PQclear(r);
            r = PQgetResult(w->conn); /* its sync */
            if (!r || PQresultStatus(r) != PGRES_PIPELINE_SYNC) {
                o = PW_ERROR;
                snprintf(why, sizeof why, "pipeline out of step: %s", PQerrorMessage(w->conn));
                more = false;
            }
            PQclear(r);
        } else {
            snprintf(why, sizeof why, "no result: %s", PQerrorMessage(w->conn));
            more = false;
        }
        pw_table_finish(w->t, idx, o, version, why);
        if (!more && o == PW_ERROR) { /* the connection is lost: the rest with it */
            while (n > 0) {
                pw_table_finish(w->t, ring[head], PW_ERROR, 0, "connection lost");
                head = (head + 1) % w->depth;
                n--;
            }
        }
    }
    PQexitPipelineMode(w->conn);
    free(ring);
}

static void *writer_main(void *arg)
{
    pg_writer *w = arg;
    if (w->depth <= 1)
        write_plain(w);
    else
        write_pipelined(w);
    return NULL;
}

/* ---- prefill, reads, the count check ---------------------------------------------------- */

static int exec_ok(PGconn *c, const char *sql, char *why, size_t size)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? 0 : -1;
    if (rc != 0)
        snprintf(why, size, "%s", PQresultErrorMessage(r));
    PQclear(r);
    return rc;
}

/* One append with the expected version the table knows, in the caller's
 * transaction. */
static int append_one(PGconn *c, pw_table *t, unsigned idx, char *why, size_t size)
{
    pg_params pp;
    params_fill(&pp, &t->s[idx], t->s[idx].version, true);
    PGresult *r = PQexecPrepared(c, "append", 5, pp.v, NULL, NULL, 0);
    uint64_t version = 0;
    pw_outcome o = read_result(r, &version, why, size);
    PQclear(r);
    if (o != PW_OK)
        return -1;
    pw_table_set(t, idx, version);
    return 0;
}

/* One event in each random stream, then the long stream's, in transactions
 * of PW_BATCH appends. */
static int prefill(PGconn *c, pw_table *t, unsigned long_events, char *why, size_t size)
{
    unsigned total = t->n + long_events;
    for (unsigned i = 0; i < total; i++) {
        if (i % PW_BATCH == 0 && exec_ok(c, "BEGIN", why, size) != 0)
            return -1;
        if (append_one(c, t, i < t->n ? i : pw_long(t), why, size) != 0)
            return -1;
        if ((i % PW_BATCH == PW_BATCH - 1 || i == total - 1) &&
            exec_ok(c, "COMMIT", why, size) != 0)
            return -1;
    }
    return 0;
}

/* Rows of a read, each value looked at as a client would; the bytes seen. */
static uint64_t touch_rows(PGresult *r, uint64_t *last)
{
    int rows = PQntuples(r), cols = PQnfields(r);
    uint64_t bytes = 0;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            bytes += (uint64_t)PQgetlength(r, i, j);
    if (rows > 0)
        *last = strtoull(PQgetvalue(r, rows - 1, 0), NULL, 10);
    return bytes;
}

/* Reads the long stream (log = false) or the log from the start in pages of
 * PW_BATCH; events read, or -1. */
static int64_t read_all(PGconn *c, bool log, const char *stream, pw_read *out)
{
    char from[24], limit[24];
    snprintf(limit, sizeof limit, "%d", PW_BATCH);
    uint64_t next = 1, events = 0;
    for (;;) {
        snprintf(from, sizeof from, "%" PRIu64, next);
        const char *v3[] = {stream, from, limit};
        const char *v2[] = {from, limit};
        PGresult *r = log ? PQexecParams(c, read_log_sql, 2, NULL, v2, NULL, NULL, 0)
                          : PQexecParams(c, read_stream_sql, 3, NULL, v3, NULL, NULL, 0);
        if (PQresultStatus(r) != PGRES_TUPLES_OK) {
            snprintf(out->error, sizeof out->error, "%s", PQresultErrorMessage(r));
            PQclear(r);
            return -1;
        }
        int rows = PQntuples(r);
        uint64_t last = 0;
        out->bytes += touch_rows(r, &last);
        PQclear(r);
        events += (uint64_t)rows;
        if (rows < PW_BATCH)
            break;
        /* a stream is paged by its position (column 1), the log by its own */
        next = log ? last + 1 : next + (uint64_t)rows;
    }
    return (int64_t)events;
}

/* Reads again and again until `seconds` have passed (at least once). */
static void timed_read(PGconn *c, bool log, const char *stream, double seconds, pw_read *out)
{
    uint64_t t0 = guild_mono_ns();
    do {
        int64_t n = read_all(c, log, stream, out);
        if (n < 0)
            return;
        out->events += (uint64_t)n;
    } while ((double)(guild_mono_ns() - t0) / 1e9 < seconds && !cmdb_interrupted);
    out->seconds = (double)(guild_mono_ns() - t0) / 1e9;
    out->ran = true;
}

static int64_t scalar(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    int64_t v = -1;
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return v;
}

/* Every acknowledged append is there, and every stream's positions run
 * from 1 without a gap. */
static void check_counts(PGconn *c, const pw_table *t, pw_peer *p)
{
    int64_t n = scalar(c, "SELECT count(*) FROM messages");
    int64_t gaps = scalar(c, "SELECT count(*) FROM (SELECT stream_name FROM messages"
                             " GROUP BY stream_name HAVING max(position) <> count(*)) g");
    p->checked = n >= 0 && gaps == 0;
    p->stored = n > 0 ? (uint64_t)n : 0;
    p->acked = t->acked;
    if (gaps > 0)
        pw_peer_note(p, "%" PRId64 " streams have gaps in their positions", gaps);
}

/* ---- the peer ------------------------------------------------------------------------------ */

typedef struct pg_peer {
    const pw_config *cfg;
    pg_server pg;
    pw_table t;
    PGconn *admin;  /* setup, reads and checks */
    pg_writer *w;   /* the writers of the current count */
    unsigned conns; /* how many */
} pg_peer;

static int pg_start(const pw_config *cfg, pw_peer *p, void **ctx)
{
    pg_peer *pp = guild_xcalloc(1, sizeof *pp);
    *ctx = pp;
    pp->cfg = cfg;
    pw_table_init(&pp->t, cfg->n_streams);
    if (server_start(cfg, &pp->pg, p) != 0)
        return -1;
    char why[300];
    if ((pp->admin = pg_connect(&pp->pg, false, why, sizeof why)) == NULL) {
        pw_peer_fail(p, "%s", why);
        return -1;
    }
    uint64_t t0 = guild_mono_ns();
    PGresult *r = NULL;
    if (exec_ok(pp->admin, schema_sql, why, sizeof why) == 0) {
        r = PQprepare(pp->admin, "append", append_sql, 5, NULL);
        if (PQresultStatus(r) != PGRES_COMMAND_OK)
            snprintf(why, sizeof why, "%s", PQresultErrorMessage(r));
    }
    bool ready = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    PQclear(r);
    if (!ready || prefill(pp->admin, &pp->t, cfg->long_events, why, sizeof why) != 0) {
        pw_peer_fail(p, "setting up: %s", why);
        return -1;
    }
    printf("[postgres] schema and %u events written in %.2f s\n", pp->t.n + cfg->long_events,
           (double)(guild_mono_ns() - t0) / 1e9);
    return 0;
}

/* The connections of k writers: one each, or pipelining past pg_connections. */
static int pg_begin(void *ctx, unsigned k, pw_phase *ph)
{
    pg_peer *pp = ctx;
    pp->conns = k < pp->cfg->pg_connections ? k : pp->cfg->pg_connections;
    pp->w = guild_xcalloc(pp->conns, sizeof *pp->w);
    char why[300];
    for (unsigned i = 0; i < pp->conns; i++) {
        pp->w[i].pg = &pp->pg;
        pp->w[i].t = &pp->t;
        /* k / conns each, the remainder spread over the first ones */
        pp->w[i].depth = k / pp->conns + (i < k % pp->conns ? 1 : 0);
        if ((pp->w[i].conn = pg_connect(&pp->pg, true, why, sizeof why)) == NULL) {
            ph->res.errors++;
            bench_result_error(&ph->res, "%s", why);
            return -1;
        }
    }
    return 0;
}

static void pg_end(void *ctx, unsigned k)
{
    (void)k;
    pg_peer *pp = ctx;
    for (unsigned i = 0; i < pp->conns; i++)
        PQfinish(pp->w[i].conn);
    free(pp->w);
    pp->w = NULL;
    pp->conns = 0;
}

static void pg_slice(void *ctx, unsigned k, pw_phase *ph, double warmup, double seconds)
{
    (void)k;
    pg_peer *pp = ctx;
    pid_t postmaster = server_pid(&pp->pg);
    pw_cpu_mark m;
    pw_cpu_mark_take(&m, postmaster, true);
    pw_table_begin(&pp->t, ph, warmup, seconds);
    for (unsigned i = 0; i < pp->conns; i++)
        pthread_create(&pp->w[i].th, NULL, writer_main, &pp->w[i]);
    pw_table_wait_window(&pp->t);
    pw_table_end(&pp->t);
    pw_cpu_mark_end(&m, postmaster, true, ph);
    for (unsigned i = 0; i < pp->conns; i++)
        pthread_join(pp->w[i].th, NULL);
}

static void pg_finish(void *ctx, pw_peer *p)
{
    pg_peer *pp = ctx;
    double s = pp->cfg->seconds < 1 ? pp->cfg->seconds : 1;
    timed_read(pp->admin, false, pp->t.s[pw_long(&pp->t)].name, s, &p->read_stream);
    timed_read(pp->admin, true, NULL, 0, &p->read_log);
    check_counts(pp->admin, &pp->t, p);
}

static void pg_stop(void *ctx, pw_peer *p)
{
    pg_peer *pp = ctx;
    if (!pp)
        return;
    PQfinish(pp->admin);
    server_stop(&pp->pg);
    const pw_config *cfg = pp->cfg;
    if (cfg->writers[cfg->n_writers - 1] > cfg->pg_connections)
        pw_peer_note(p,
                     "PostgreSQL keeps max_connections at its default (100): past %u writers, "
                     "each of %u connections pipelines several appends, each its own "
                     "transaction",
                     cfg->pg_connections, cfg->pg_connections);
    pw_table_release(&pp->t);
    free(pp);
}

const pw_peer_ops pw_postgres_ops = {
    .start = pg_start,
    .begin = pg_begin,
    .end = pg_end,
    .slice = pg_slice,
    .finish = pg_finish,
    .stop = pg_stop,
};
