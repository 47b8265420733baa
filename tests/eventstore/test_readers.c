/*
 * test_readers.c — other processes reading the store while it is written,
 * and the map growing by itself.
 *
 * A reader is a forked child that opens the store read-only (the parent has
 * no store open when it forks). Parent and child talk over two pipes: single
 * bytes to step each other along, then the child's report as text before it
 * exits, 0 when everything it saw checked out.
 *
 * Sections: reader processes; read-only stores; map growth.
 */
#include "eventstore/es.h"

#include "tests/support/check_util.h"
#include "tests/support/es_util.h"
#include "tests/support/mpmap.h"
#include "tests/support/tmpdir.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MIB ((size_t)1 << 20)
#define BLOB 1024 /* data bytes per event in the map growth cases */

/* Bytes parent and child step each other along with; no report starts so. */
#define READY '\x01'
#define HOLDING '\x02'
#define GO '\x03'
static char *g_dir;

static void dir_setup(void)
{
    g_dir = tst_dir_new("readers");
}

static void dir_teardown(void)
{
    tst_dir_remove(g_dir);
    free(g_dir);
}

/* ---- processes ------------------------------------------------------------ */

typedef struct proc {
    pid_t pid;
    int to_child, from_child; /* the parent's ends */
    int child_in, child_out;  /* the child's ends */
} proc;

static void send_byte(int fd, char c)
{
    ssize_t n;
    do
        n = write(fd, &c, 1);
    while (n < 0 && errno == EINTR);
}

/* The next byte from fd, or 0 at end of file. */
static char recv_byte(int fd)
{
    char c = 0;
    ssize_t n;
    do
        n = read(fd, &c, 1);
    while (n < 0 && errno == EINTR);
    return n == 1 ? c : 0;
}

/* In the child: reports and exits, 0 if fmt starts with "ok". */
static _Noreturn void child_exit(const proc *p, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static _Noreturn void child_exit(const proc *p, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t n = strlen(msg);
    if (write(p->child_out, msg, n) < 0)
        _exit(9);
    _exit(strncmp(msg, "ok", 2) == 0 ? 0 : 1);
}

/* Forks a child running fn; returns in the parent only. */
static proc spawn(void (*fn)(const proc *p))
{
    int down[2], up[2];
    /* A reader that failed early must not kill the parent writing to it. */
    signal(SIGPIPE, SIG_IGN);
    ck_assert_int_eq(pipe(down), 0);
    ck_assert_int_eq(pipe(up), 0);
    proc p = {.to_child = down[1], .from_child = up[0], .child_in = down[0], .child_out = up[1]};
    p.pid = fork();
    ck_assert_int_ge(p.pid, 0);
    if (p.pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        close(down[1]);
        close(up[0]);
        fn(&p);
        child_exit(&p, "child returned");
    }
    close(down[0]);
    close(up[1]);
    return p;
}

/* Reads the child's report until it exits; returns its wait status. */
static int collect(proc *p, char *report, size_t size)
{
    size_t got = 0;
    for (;;) {
        ssize_t n = read(p->from_child, report + got, size - 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got == size - 1)
            break;
    }
    report[got] = '\0';
    int status = 0;
    ck_assert_int_eq(waitpid(p->pid, &status, 0), p->pid);
    close(p->to_child);
    close(p->from_child);
    return status;
}

/* Waits for the child's report and exit; asserts it succeeded. */
static void finish(proc *p)
{
    char report[512];
    int status = collect(p, report, sizeof report);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "reader process failed: %s",
                  report[0] ? report : "(no report; it crashed)");
}

/* Asserts the child's next byte is `want`; otherwise fails with its report. */
static void expect_byte(proc *p, char want)
{
    char got = recv_byte(p->from_child);
    if (got == want)
        return;
    char report[512];
    report[0] = got;
    collect(p, report + 1, sizeof report - 1);
    ck_abort_msg("reader process failed: %s", got ? report : "(no report; it crashed)");
}

/* Creates the store with `n` events and closes it. */
static void seed_store(size_t map_size, size_t n)
{
    es_store *st = NULL;
    ck_assert_status(tst_store_open(g_dir, "talent", map_size, &st), GUILD_OK);
    for (size_t i = 0; i < n; i++)
        ck_assert_status(tst_append_quiet(st, "seed", ES_ANY_VERSION, 1), GUILD_OK);
    es_store_close(st);
}

/* Checks records read in successive read transactions: positions follow on
 * from the last one seen, each hash recomputes, each prev is the hash seen
 * before it (so what was read earlier is still the log's prefix). */
typedef struct chain_check {
    uint64_t next;
    uint8_t last_hash[ES_HASH_LEN];
    char error[256];
} chain_check;

static int chain_check_fn(void *ctx, const es_record *rec)
{
    chain_check *c = ctx;
    if (rec->position != c->next)
        snprintf(c->error, sizeof c->error, "expected position %llu, read %llu",
                 (unsigned long long)c->next, (unsigned long long)rec->position);
    else if (!es_record_hash_ok(rec))
        snprintf(c->error, sizeof c->error, "bad hash at %llu", (unsigned long long)c->next);
    else if (memcmp(rec->prev, c->last_hash, ES_HASH_LEN) != 0)
        snprintf(c->error, sizeof c->error, "prev at %llu is not the hash read before it",
                 (unsigned long long)c->next);
    if (c->error[0])
        return 1;
    memcpy(c->last_hash, rec->hash, ES_HASH_LEN);
    c->next++;
    return 0;
}

static int64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- reader processes ----------------------------------------------------- */

#define SEEDED 10
#define CONTINUOUS 1500

static void follow_log_child(const proc *p)
{
    es_store *st = NULL;
    if (tst_store_open_ro(g_dir, &st) != GUILD_OK)
        child_exit(p, "read-only open failed");
    send_byte(p->child_out, READY);
    chain_check c = {.next = 1};
    uint64_t last_head = 0;
    unsigned polls = 0, growths = 0;
    int64_t deadline = mono_ms() + 90000;
    while (c.next <= SEEDED + CONTINUOUS) {
        uint64_t head = 0;
        uint8_t hash[ES_HASH_LEN];
        guild_status s = es_log_head(st, &head, hash);
        if (s != GUILD_OK)
            child_exit(p, "es_log_head: %s", guild_status_code(s));
        /* Not checked: that the head never steps back. Two read
         * transactions racing a commit may see snapshots one commit apart
         * in either order (LMDB 0.9.24); what was read stays the prefix. */
        if (head > last_head)
            growths++;
        last_head = head;
        uint64_t before = c.next, next = 0;
        s = es_read_log(st, c.next, 100, chain_check_fn, &c, &next);
        if (s != GUILD_OK)
            child_exit(p, "es_read_log: %s", guild_status_code(s));
        if (c.error[0])
            child_exit(p, "%s", c.error);
        if (c.next != before && next != c.next)
            child_exit(p, "es_read_log said to go on from %llu after delivering up to %llu",
                       (unsigned long long)next, (unsigned long long)(c.next - 1));
        polls++;
        if (mono_ms() > deadline)
            child_exit(p, "saw only %llu of %d events", (unsigned long long)(c.next - 1),
                       SEEDED + CONTINUOUS);
        if (c.next == before) {
            struct timespec ts = {0, 1000000L};
            nanosleep(&ts, NULL);
        }
    }
    uint64_t head = 0;
    uint8_t hash[ES_HASH_LEN];
    guild_status s = es_log_head(st, &head, hash);
    es_store_close(st);
    if (s != GUILD_OK || head != SEEDED + CONTINUOUS || memcmp(hash, c.last_hash, ES_HASH_LEN))
        child_exit(p, "final log head %s %llu does not match the last record read",
                   guild_status_code(s), (unsigned long long)head);
    child_exit(p, "ok polls=%u growths=%u", polls, growths);
}

START_TEST(test_reader_process_sees_a_growing_gapless_prefix)
{
    seed_store(0, SEEDED);
    proc p = spawn(follow_log_child);
    expect_byte(&p, READY);

    es_store *st = NULL;
    ck_assert_status(tst_store_open(g_dir, "talent", 0, &st), GUILD_OK);
    for (int i = 0; i < CONTINUOUS; i++) {
        char stream[32];
        snprintf(stream, sizeof stream, "talent-%d", i % 4);
        ck_assert_status(tst_append_quiet(st, stream, ES_ANY_VERSION, 1), GUILD_OK);
    }
    finish(&p);
    es_store_close(st);
}
END_TEST

#define HELD_APPENDS 300

/* Holds one read transaction (inside the read callback) while the parent
 * appends, then reads again. Reports both counts. */
typedef struct held_read {
    const proc *p;
    size_t seen;
} held_read;

static int hold_on_first(void *ctx, const es_record *rec)
{
    held_read *h = ctx;
    (void)rec;
    if (h->seen++ == 0) {
        send_byte(h->p->child_out, HOLDING);
        if (recv_byte(h->p->child_in) != GO)
            child_exit(h->p, "parent went away");
    }
    return 0;
}

static void hold_read_child(const proc *p)
{
    es_store *st = NULL;
    if (tst_store_open_ro(g_dir, &st) != GUILD_OK)
        child_exit(p, "read-only open failed");
    held_read h = {.p = p};
    guild_status s = es_read_log(st, 1, 1000000, hold_on_first, &h, NULL);
    if (s != GUILD_OK)
        child_exit(p, "held es_read_log: %s", guild_status_code(s));
    if (h.seen != SEEDED)
        child_exit(p, "the held read saw %zu events, not its snapshot of %d", h.seen, SEEDED);
    tst_recs recs;
    tst_recs_init(&recs);
    s = tst_read_whole_log(st, &recs);
    size_t after = recs.n;
    tst_recs_release(&recs);
    es_store_close(st);
    if (s != GUILD_OK)
        child_exit(p, "es_read_log after: %s", guild_status_code(s));
    if (after != SEEDED + HELD_APPENDS)
        child_exit(p, "a new read saw %zu events, not %d", after, SEEDED + HELD_APPENDS);
    child_exit(p, "ok");
}

START_TEST(test_held_read_transaction_does_not_block_the_writer)
{
    seed_store(0, SEEDED);
    proc p = spawn(hold_read_child);
    expect_byte(&p, HOLDING);

    /* The reader is now inside a read transaction and stays there. */
    es_store *st = NULL;
    ck_assert_status(tst_store_open(g_dir, "talent", 0, &st), GUILD_OK);
    for (int i = 0; i < HELD_APPENDS; i++)
        ck_assert_status(tst_append_quiet(st, "held-1", ES_ANY_VERSION, 1), GUILD_OK);
    ck_assert_uint_eq(tst_log_position(st), SEEDED + HELD_APPENDS);
    send_byte(p.to_child, GO);
    finish(&p);
    es_store_close(st);
}
END_TEST

#define LATE 30

typedef struct seen_streams {
    char names[4][ES_STREAM_MAX + 1];
    uint64_t versions[4];
    size_t n;
} seen_streams;

static int seen_stream(void *ctx, const char *stream, uint64_t version)
{
    seen_streams *ss = ctx;
    if (ss->n < 4) {
        snprintf(ss->names[ss->n], sizeof ss->names[ss->n], "%s", stream);
        ss->versions[ss->n] = version;
    }
    ss->n++;
    return 0;
}

/* Checks the streams "late" (LATE events) and "seed" (SEEDED + 5) through
 * every stream read; returns NULL or what is wrong. */
static const char *late_streams_wrong(es_store *st)
{
    static char why[160];
    uint64_t v = 0;
    guild_status s = es_stream_head(st, "late", &v, NULL);
    if (s != GUILD_OK || v != LATE) {
        snprintf(why, sizeof why, "head of late: %s %llu", guild_status_code(s),
                 (unsigned long long)v);
        return why;
    }
    tst_recs recs;
    tst_recs_init(&recs);
    s = tst_read_whole_stream(st, "late", &recs);
    size_t n = recs.n;
    bool gapless = true;
    for (size_t i = 0; i < recs.n; i++)
        gapless = gapless && recs.v[i].rec.version == i + 1 && es_record_hash_ok(&recs.v[i].rec);
    tst_recs_clear(&recs);
    if (s != GUILD_OK || n != LATE || !gapless) {
        tst_recs_release(&recs);
        snprintf(why, sizeof why, "late read: %s, %zu events, gapless %d", guild_status_code(s), n,
                 gapless);
        return why;
    }
    s = es_read_stream_back(st, "seed", 0, 1, tst_recs_collect, &recs);
    v = recs.n == 1 ? recs.v[0].rec.version : 0;
    tst_recs_release(&recs);
    if (s != GUILD_OK || v != SEEDED + 5) {
        snprintf(why, sizeof why, "last of seed: %s, version %llu", guild_status_code(s),
                 (unsigned long long)v);
        return why;
    }
    seen_streams ss = {0};
    s = es_list_streams(st, NULL, 10, seen_stream, &ss);
    if (s != GUILD_OK || ss.n != 2 || strcmp(ss.names[0], "late") != 0 || ss.versions[0] != LATE ||
        strcmp(ss.names[1], "seed") != 0 || ss.versions[1] != SEEDED + 5) {
        snprintf(why, sizeof why, "stream list: %s, %zu streams", guild_status_code(s), ss.n);
        return why;
    }
    return NULL;
}

/* Opens read-only before "late" exists, then checks it twice: while the
 * writer is still open, and after the writer closed. */
static void late_streams_child(const proc *p)
{
    es_store *st = NULL;
    if (tst_store_open_ro(g_dir, &st) != GUILD_OK)
        child_exit(p, "read-only open failed");
    guild_status s = es_stream_head(st, "late", NULL, NULL);
    if (s != GUILD_NOT_FOUND)
        child_exit(p, "late exists before it was written: %s", guild_status_code(s));
    send_byte(p->child_out, READY);
    for (int phase = 0; phase < 2; phase++) {
        if (recv_byte(p->child_in) != GO)
            child_exit(p, "parent went away");
        const char *why = late_streams_wrong(st);
        if (why)
            child_exit(p, "%s: %s", phase == 0 ? "writer open" : "writer closed", why);
        send_byte(p->child_out, READY);
    }
    es_store_close(st);
    child_exit(p, "ok");
}

START_TEST(test_reader_process_sees_streams_written_after_it_opened)
{
    seed_store(0, SEEDED);
    proc p = spawn(late_streams_child);
    expect_byte(&p, READY);

    es_store *st = NULL;
    ck_assert_status(tst_store_open(g_dir, "talent", 0, &st), GUILD_OK);
    for (int i = 0; i < LATE / 3; i++)
        ck_assert_status(tst_append_quiet(st, "late", (uint64_t)i * 3, 3), GUILD_OK);
    ck_assert_status(tst_append_quiet(st, "seed", SEEDED, 5), GUILD_OK);
    send_byte(p.to_child, GO);
    expect_byte(&p, READY);

    es_store_close(st);
    send_byte(p.to_child, GO);
    expect_byte(&p, READY);
    finish(&p);
}
END_TEST

/* ---- read-only stores ----------------------------------------------------- */

START_TEST(test_read_only_store_refuses_writes)
{
    seed_store(0, 1);
    es_store *st = NULL;
    ck_assert_status(tst_store_open_ro(g_dir, &st), GUILD_OK);
    es_result r;
    guild_status s = tst_append(st, "seed", ES_ANY_VERSION, NULL, 1, &r);
    ck_assert_msg(s != GUILD_OK, "a read-only store accepted an append");
    ck_assert_status(r.status, s);
    es_result_release(&r);

    tst_slot slot = {0};
    es_event_in ev = {.type = "thing_happened", .schema = 1};
    es_append req = {
        .stream = "seed", .expected_version = ES_ANY_VERSION, .events = &ev, .n_events = 1};
    ck_assert_msg(es_append_submit(st, &req, tst_slot_done, &slot) != GUILD_OK,
                  "a read-only store accepted a submitted append");
    ck_assert_msg(es_snapshot_put(st, "seed", 1, "x", 1) != GUILD_OK,
                  "a read-only store accepted a snapshot");
    ck_assert_msg(es_meta_put_u64(st, "relay.cursor", 1) != GUILD_OK,
                  "a read-only store accepted a meta value");
    ck_assert_uint_eq(tst_log_position(st), 1);
    es_store_close(st);
    ck_assert_int_eq(slot.calls, 0);
}
END_TEST

/* ---- map growth ----------------------------------------------------------- */

static void blob_bytes(uint64_t idx, uint8_t out[BLOB])
{
    for (size_t j = 0; j < BLOB; j++)
        out[j] = (uint8_t)(idx * 31u + j * 7u + (j >> 8));
}

/* An event whose data {"idx": idx, "blob": 1 KiB} can be checked later. */
static void blob_event(uint64_t idx, tst_map *m, es_event_in *ev)
{
    uint8_t b[BLOB];
    blob_bytes(idx, b);
    tst_map_init(m, 2);
    tst_map_int(m, "idx", (int64_t)idx);
    tst_map_bin(m, "blob", b, sizeof b);
    *ev = (es_event_in){
        .type = "blob_stored", .schema = 1, .data = tst_map_data(m), .data_len = tst_map_len(m)};
}

/* Checks that recs holds events idx 0..n-1 in log order with intact blobs;
 * returns NULL or what is wrong (static text). */
static const char *blobs_wrong(const tst_recs *recs, size_t skip, size_t n)
{
    static char why[128];
    if (recs->n != skip + n) {
        snprintf(why, sizeof why, "%zu events, not %zu", recs->n, skip + n);
        return why;
    }
    uint8_t want[BLOB];
    for (size_t i = 0; i < n; i++) {
        const es_record *rec = &recs->v[skip + i].rec;
        int64_t idx = -1;
        const void *blob = NULL;
        size_t len = 0;
        blob_bytes(i, want);
        if (!tst_map_get_int(rec->data, rec->data_len, "idx", &idx) || idx != (int64_t)i ||
            !tst_map_get_bin(rec->data, rec->data_len, "blob", &blob, &len) || len != BLOB ||
            memcmp(blob, want, BLOB) != 0 || !es_record_hash_ok(rec)) {
            snprintf(why, sizeof why, "event %zu (position %llu) is not what was appended", i,
                     (unsigned long long)rec->position);
            return why;
        }
    }
    return NULL;
}

/* Submits events idx [from, to) in one go and waits for all of them. */
static void submit_blobs(es_store *st, uint64_t from, uint64_t to)
{
    size_t n = (size_t)(to - from);
    tst_latch latch;
    tst_latch_init(&latch, n);
    tst_slot *slots = calloc(n, sizeof *slots);
    ck_assert_ptr_nonnull(slots);
    for (size_t i = 0; i < n; i++) {
        tst_map m;
        es_event_in ev;
        blob_event(from + i, &m, &ev);
        char stream[32];
        snprintf(stream, sizeof stream, "blob-%llu", (unsigned long long)((from + i) % 8));
        es_append req = {
            .stream = stream, .expected_version = ES_ANY_VERSION, .events = &ev, .n_events = 1};
        slots[i].latch = &latch;
        ck_assert_status(es_append_submit(st, &req, tst_slot_done, &slots[i]), GUILD_OK);
        tst_map_release(&m);
    }
    ck_assert_msg(tst_latch_wait(&latch, 120000), "submitted appends did not all complete");
    for (size_t i = 0; i < n; i++) {
        ck_assert_msg(slots[i].res.status == GUILD_OK, "append %llu: %s %s",
                      (unsigned long long)(from + i), guild_status_code(slots[i].res.status),
                      slots[i].res.error.message);
        ck_assert_uint_eq(slots[i].res.n_events, 1);
        es_result_release(&slots[i].res);
    }
    free(slots);
    tst_latch_destroy(&latch);
}

static void check_blobs_after_reopen(size_t n)
{
    es_store *st = NULL;
    ck_assert_status(tst_store_open(g_dir, "talent", MIB, &st), GUILD_OK);
    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_log(st, &recs), GUILD_OK);
    const char *why = blobs_wrong(&recs, 0, n);
    ck_assert_msg(why == NULL, "after reopen: %s", why);
    tst_recs_release(&recs);
    es_verify_report rep;
    ck_assert_status(es_verify(st, &rep, NULL, NULL), GUILD_OK);
    ck_assert_msg(rep.intact, "broken at %llu: %s", (unsigned long long)rep.break_position,
                  rep.what);
    ck_assert_uint_eq(rep.checked, n);
    es_store_close(st);
}

START_TEST(test_map_grows_under_single_appends)
{
    const size_t n = 1500; /* about 1.7 MiB of records in a 1 MiB map */
    es_store *st = NULL;
    ck_assert_status(tst_store_open(g_dir, "talent", MIB, &st), GUILD_OK);
    for (size_t i = 0; i < n; i++) {
        tst_map m;
        es_event_in ev;
        blob_event(i, &m, &ev);
        es_append req = {
            .stream = "blob-0", .expected_version = ES_ANY_VERSION, .events = &ev, .n_events = 1};
        es_result r;
        guild_status s = es_append_wait(st, &req, &r);
        ck_assert_msg(s == GUILD_OK, "append %zu: %s %s", i, guild_status_code(s), r.error.message);
        ck_assert_uint_eq(r.first_position, i + 1);
        es_result_release(&r);
        tst_map_release(&m);
    }
    es_store_close(st);
    check_blobs_after_reopen(n);
}
END_TEST

START_TEST(test_map_grows_under_one_large_batch)
{
    const size_t n = 5000; /* about 6 MiB submitted at once into a 1 MiB map */
    es_store *st = NULL;
    ck_assert_status(tst_store_open(g_dir, "talent", MIB, &st), GUILD_OK);
    submit_blobs(st, 0, n);
    ck_assert_uint_eq(tst_log_position(st), n);
    es_store_close(st);
    check_blobs_after_reopen(n);
}
END_TEST

typedef struct hook_count {
    atomic_int committed, failed;
} hook_count;

static void count_hook(void *ctx, bool committed)
{
    hook_count *h = ctx;
    atomic_fetch_add(committed ? &h->committed : &h->failed, 1);
}

START_TEST(test_batch_redone_after_map_growth_is_reported_to_the_batch_hook)
{
    hook_count hooks;
    atomic_init(&hooks.committed, 0);
    atomic_init(&hooks.failed, 0);
    es_options opt = {
        .domain = "talent", .map_size = MIB, .batch_hook = count_hook, .batch_hook_ctx = &hooks};
    es_store *st = NULL;
    guild_error err;
    ck_assert_status(es_store_open(g_dir, &opt, &st, &err), GUILD_OK);
    submit_blobs(st, 0, 2000); /* more than the map holds, in few batches */
    es_store_close(st);
    ck_assert_int_ge(atomic_load(&hooks.failed), 1);
    ck_assert_int_ge(atomic_load(&hooks.committed), 1);
    check_blobs_after_reopen(2000);
}
END_TEST

#define GROWN 3000

/* Opens read-only while the map is small, then reads everything after the
 * writer grew it. */
static void grown_map_child(const proc *p)
{
    es_store *st = NULL;
    if (tst_store_open_ro(g_dir, &st) != GUILD_OK)
        child_exit(p, "read-only open failed");
    tst_recs recs;
    tst_recs_init(&recs);
    guild_status s = tst_read_whole_log(st, &recs);
    if (s != GUILD_OK || recs.n != SEEDED)
        child_exit(p, "before growth: %s, %zu events", guild_status_code(s), recs.n);
    send_byte(p->child_out, READY);
    if (recv_byte(p->child_in) != GO)
        child_exit(p, "parent went away");
    s = tst_read_whole_log(st, &recs);
    if (s != GUILD_OK)
        child_exit(p, "after growth: es_read_log: %s", guild_status_code(s));
    const char *why = blobs_wrong(&recs, SEEDED, GROWN);
    if (why)
        child_exit(p, "after growth: %s", why);
    uint64_t head = 0;
    uint8_t hash[ES_HASH_LEN];
    s = es_log_head(st, &head, hash);
    if (s != GUILD_OK || head != SEEDED + GROWN)
        child_exit(p, "after growth: log head %s %llu", guild_status_code(s),
                   (unsigned long long)head);
    tst_recs_release(&recs);
    es_store_close(st);
    child_exit(p, "ok");
}

START_TEST(test_reader_process_reads_after_the_map_grew)
{
    seed_store(MIB, SEEDED);
    proc p = spawn(grown_map_child);
    expect_byte(&p, READY);

    es_store *st = NULL;
    ck_assert_status(tst_store_open(g_dir, "talent", MIB, &st), GUILD_OK);
    for (uint64_t from = 0; from < GROWN; from += 500)
        submit_blobs(st, from, from + 500);
    ck_assert_uint_eq(tst_log_position(st), SEEDED + GROWN);
    send_byte(p.to_child, GO);
    finish(&p);
    es_store_close(st);
}
END_TEST

static Suite *readers_suite(void)
{
    Suite *s = suite_create("eventstore/readers");
    TCase *tc = tcase_create("reader_processes");
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_reader_process_sees_a_growing_gapless_prefix);
    tcase_add_test(tc, test_held_read_transaction_does_not_block_the_writer);
    tcase_add_test(tc, test_reader_process_sees_streams_written_after_it_opened);
    tcase_add_test(tc, test_read_only_store_refuses_writes);
    suite_add_tcase(s, tc);

    tc = tcase_create("map_growth");
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_map_grows_under_single_appends);
    tcase_add_test(tc, test_map_grows_under_one_large_batch);
    tcase_add_test(tc, test_batch_redone_after_map_growth_is_reported_to_the_batch_hook);
    tcase_add_test(tc, test_reader_process_reads_after_the_map_grew);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tst_run_suite(readers_suite());
}
