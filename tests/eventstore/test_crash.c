/*
 * test_crash.c — the store survives its writer being killed at any moment.
 *
 * Each round forks a child that opens the store and appends from a few
 * threads; after es_append_wait acknowledges an append the child writes what
 * it was told (stream, version, positions, event ids, command id) to an ack
 * file with write(2). The parent kills the child with SIGKILL after a random
 * delay, reopens the store and checks it against every ack so far. Rounds
 * share one store, which grows from round to round.
 *
 * Set GUILD_CRASH_SEED to replay the delays of a failing run.
 *
 * Sections: the child; one round; the checks; the cases.
 */
#include "eventstore/es.h"

#include "tests/support/check_util.h"
#include "tests/support/es_util.h"
#include "tests/support/mpmap.h"
#include "tests/support/tmpdir.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CHILD_THREADS 3
#define PER_APPEND 3 /* events in each append */

/* What the child was told about one acknowledged append. */
typedef struct ack {
    char stream[32];
    char command_id[48];
    uint64_t version, first, last;
    char ids[PER_APPEND][ES_ID_LEN + 1];
} ack;

static char *g_dir;      /* the store */
static char *g_acks_dir; /* ack-<round> files */
static unsigned g_seed;
static int g_rounds; /* rounds run so far in this test */

static void crash_setup(void)
{
    g_dir = tst_dir_new("crash-store");
    g_acks_dir = tst_dir_new("crash-acks");
    const char *env = getenv("GUILD_CRASH_SEED");
    g_seed = env ? (unsigned)strtoul(env, NULL, 10) : (unsigned)time(NULL) ^ (unsigned)getpid();
    fprintf(stderr, "crash: GUILD_CRASH_SEED=%u\n", g_seed);
    g_rounds = 0;
}

static void crash_teardown(void)
{
    tst_dir_remove(g_dir);
    tst_dir_remove(g_acks_dir);
    free(g_dir);
    free(g_acks_dir);
}

/* ---- the child ------------------------------------------------------------ */

typedef struct child_thread {
    es_store *st;
    int index;
    int ack_fd;
} child_thread;

static void write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            _exit(4);
        c += w;
        n -= (size_t)w;
    }
}

static void *child_append_loop(void *arg)
{
    child_thread *ct = arg;
    for (unsigned long k = 0;; k++) {
        ack a;
        memset(&a, 0, sizeof a);
        snprintf(a.stream, sizeof a.stream, "crash-%d-%lu", ct->index, k % 4);
        snprintf(a.command_id, sizeof a.command_id, "c-%ld-%d-%lu", (long)getpid(), ct->index, k);
        tst_map maps[PER_APPEND];
        es_event_in ev[PER_APPEND];
        for (int i = 0; i < PER_APPEND; i++) {
            tst_map_init(&maps[i], 2);
            tst_map_str(&maps[i], "cmd", a.command_id);
            tst_map_int(&maps[i], "i", i);
            ev[i] = (es_event_in){.type = "crash_tested",
                                  .schema = 1,
                                  .data = tst_map_data(&maps[i]),
                                  .data_len = tst_map_len(&maps[i])};
        }
        es_append req = {.stream = a.stream,
                         .expected_version = ES_ANY_VERSION,
                         .prov = {.command_id = a.command_id},
                         .events = ev,
                         .n_events = PER_APPEND};
        es_result r;
        guild_status s = es_append_wait(ct->st, &req, &r);
        for (int i = 0; i < PER_APPEND; i++)
            tst_map_release(&maps[i]);
        if (s != GUILD_OK || r.n_events != PER_APPEND) {
            fprintf(stderr, "crash child: append failed: %s %s\n", guild_status_code(s),
                    r.error.message);
            _exit(3);
        }
        a.version = r.version;
        a.first = r.first_position;
        a.last = r.last_position;
        for (int i = 0; i < PER_APPEND; i++)
            memcpy(a.ids[i], r.event_ids[i], ES_ID_LEN + 1);
        es_result_release(&r);
        write_all(ct->ack_fd, &a, sizeof a);
    }
    return NULL;
}

/* Opens the store, starts the appending threads, says it is ready and waits
 * to be killed. Never returns. */
static _Noreturn void child_main(int ack_fd, int ready_fd)
{
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* Every other round checkpoints the stream index often, so some kills
     * land in the middle of a checkpoint. */
    es_options opt = {.domain = "crash", .index_every = g_rounds % 2 ? 64 : 0};
    es_store *st = NULL;
    guild_error err;
    if (es_store_open(g_dir, &opt, &st, &err) != GUILD_OK)
        _exit(2);
    static child_thread cts[CHILD_THREADS];
    for (int t = 0; t < CHILD_THREADS; t++) {
        cts[t] = (child_thread){.st = st, .index = t, .ack_fd = ack_fd};
        pthread_t th;
        if (pthread_create(&th, NULL, child_append_loop, &cts[t]) != 0)
            _exit(5);
    }
    write_all(ready_fd, "r", 1);
    for (;;)
        pause();
}

/* ---- one round ------------------------------------------------------------ */

static void ack_path(int round, char *buf, size_t size)
{
    snprintf(buf, size, "%s/ack-%d", g_acks_dir, round);
}

/* Forks a writer, lets it append for 20-200 ms, kills it with SIGKILL. */
static void crash_round(void)
{
    char path[600];
    ack_path(g_rounds, path, sizeof path);
    int ack_fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    ck_assert_int_ge(ack_fd, 0);
    int ready[2];
    ck_assert_int_eq(pipe(ready), 0);

    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        close(ready[0]);
        child_main(ack_fd, ready[1]);
    }
    close(ready[1]);
    close(ack_fd);

    char c;
    ssize_t n;
    do
        n = read(ready[0], &c, 1);
    while (n < 0 && errno == EINTR);
    close(ready[0]);
    if (n != 1) {
        int status = 0;
        waitpid(pid, &status, 0);
        ck_abort_msg("round %d: writer died before it was ready (status %d)", g_rounds, status);
    }

    unsigned delay_ms = 20 + (unsigned)rand_r(&g_seed) % 181;
    struct timespec ts = {.tv_sec = 0, .tv_nsec = (long)delay_ms * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    kill(pid, SIGKILL);
    int status = 0;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
                  "round %d: writer ended on its own (exit %d): an append failed", g_rounds,
                  WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    g_rounds++;
}

/* Loads every ack of rounds [from, g_rounds); a torn last ack is ignored. */
static ack *load_acks(int from, size_t *n)
{
    ack *all = NULL;
    size_t count = 0;
    for (int round = from; round < g_rounds; round++) {
        char path[600];
        ack_path(round, path, sizeof path);
        size_t len = 0;
        unsigned char *data = tst_file_read(path, &len);
        ck_assert_ptr_nonnull(data);
        size_t k = len / sizeof(ack);
        all = realloc(all, (count + k + 1) * sizeof *all);
        ck_assert_ptr_nonnull(all);
        memcpy(all + count, data, k * sizeof(ack));
        count += k;
        free(data);
    }
    *n = count;
    return all;
}

static es_store *reopen(void)
{
    es_store *st = NULL;
    ck_assert_status(tst_store_open(g_dir, "crash", 0, &st), GUILD_OK);
    return st;
}

/* ---- the checks ----------------------------------------------------------- */

/* Every acknowledged append is in the store with the version, positions and
 * event ids the writer was told. */
static size_t check_acks_present(es_store *st)
{
    size_t n = 0;
    ack *acks = load_acks(0, &n);
    tst_recs recs;
    tst_recs_init(&recs);
    for (size_t i = 0; i < n; i++) {
        const ack *a = &acks[i];
        ck_assert_uint_ge(a->version, PER_APPEND);
        ck_assert_uint_eq(a->last - a->first + 1, PER_APPEND);
        tst_recs_clear(&recs);
        ck_assert_status(es_read_stream(st, a->stream, a->version - PER_APPEND + 1, PER_APPEND,
                                        tst_recs_collect, &recs, NULL),
                         GUILD_OK);
        ck_assert_msg(recs.n == PER_APPEND,
                      "acknowledged append %s (%s v%llu) lost after SIGKILL (seed %u)",
                      a->command_id, a->stream, (unsigned long long)a->version, g_seed);
        for (int k = 0; k < PER_APPEND; k++) {
            const es_record *rec = &recs.v[k].rec;
            ck_assert_uint_eq(rec->position, a->first + (uint64_t)k);
            ck_assert_msg(tst_str_eq(rec->id, a->ids[k]),
                          "position %llu holds another event than acknowledged (seed %u)",
                          (unsigned long long)rec->position, g_seed);
            ck_assert(tst_str_eq(rec->command_id, a->command_id));
        }
    }
    tst_recs_release(&recs);
    free(acks);
    return n;
}

/* The log holds whole appends only: groups of PER_APPEND consecutive events
 * of one command, with i = 0, 1, 2 and consecutive versions of one stream. */
static void check_no_partial_append(es_store *st)
{
    tst_recs recs;
    tst_recs_init(&recs);
    ck_assert_status(tst_read_whole_log(st, &recs), GUILD_OK);
    ck_assert(!recs.bad);
    ck_assert_msg(recs.n % PER_APPEND == 0, "log holds %zu events, not whole appends (seed %u)",
                  recs.n, g_seed);
    for (size_t g = 0; g < recs.n; g += PER_APPEND) {
        char cmd0[64] = "";
        const es_record *first = &recs.v[g].rec;
        ck_assert(tst_map_get_str(first->data, first->data_len, "cmd", cmd0, sizeof cmd0));
        for (size_t k = 0; k < PER_APPEND; k++) {
            const es_record *rec = &recs.v[g + k].rec;
            char cmd[64] = "";
            int64_t i = -1;
            ck_assert_uint_eq(rec->position, g + k + 1);
            ck_assert(tst_map_get_str(rec->data, rec->data_len, "cmd", cmd, sizeof cmd));
            ck_assert(tst_map_get_int(rec->data, rec->data_len, "i", &i));
            ck_assert_msg(strcmp(cmd, cmd0) == 0 && i == (int64_t)k,
                          "position %llu: part of append %s next to %s (seed %u)",
                          (unsigned long long)rec->position, cmd, cmd0, g_seed);
            ck_assert_uint_eq(rec->stream.n, first->stream.n);
            ck_assert_mem_eq(rec->stream.p, first->stream.p, first->stream.n);
            ck_assert_uint_eq(rec->version, first->version + k);
        }
    }
    tst_recs_release(&recs);
}

static void check_verifies(es_store *st)
{
    uint64_t head = tst_log_position(st);
    es_verify_report rep;
    ck_assert_status(es_verify(st, &rep, NULL, NULL), GUILD_OK);
    ck_assert_msg(rep.intact, "after SIGKILL round %d: broken at %llu: %s (seed %u)", g_rounds,
                  (unsigned long long)rep.break_position, rep.what, g_seed);
    ck_assert_uint_eq(rep.checked, head);
    ck_assert_uint_eq(rep.last_position, head);
}

/* ---- the cases ------------------------------------------------------------ */

START_TEST(test_acknowledged_appends_survive_sigkill)
{
    size_t acked = 0;
    for (int round = 0; round < 20; round++) {
        crash_round();
        es_store *st = reopen();
        acked = check_acks_present(st);
        es_store_close(st);
    }
    ck_assert_msg(acked > 0, "no append was acknowledged in 20 rounds");
}
END_TEST

START_TEST(test_sigkill_never_leaves_part_of_an_append)
{
    for (int round = 0; round < 10; round++) {
        crash_round();
        es_store *st = reopen();
        check_no_partial_append(st);
        es_store_close(st);
    }
}
END_TEST

START_TEST(test_chain_verifies_intact_after_each_sigkill)
{
    for (int round = 0; round < 10; round++) {
        crash_round();
        es_store *st = reopen();
        check_verifies(st);
        es_store_close(st);
    }
}
END_TEST

START_TEST(test_retried_command_after_sigkill_is_a_duplicate)
{
    size_t retried = 0;
    for (int round = 0; round < 6; round++) {
        crash_round();
        size_t n = 0;
        ack *acks = load_acks(g_rounds - 1, &n);
        es_store *st = reopen();
        uint64_t head = tst_log_position(st);
        /* The last acks of the round are the likeliest to be lost. */
        for (size_t i = n > 5 ? n - 5 : 0; i < n; i++) {
            const ack *a = &acks[i];
            es_result r;
            ck_assert_status(
                tst_append(st, a->stream, ES_ANY_VERSION, a->command_id, PER_APPEND, &r), GUILD_OK);
            ck_assert_msg(r.duplicate, "retry of acknowledged %s appended again (seed %u)",
                          a->command_id, g_seed);
            ck_assert_uint_eq(r.first_position, a->first);
            ck_assert_uint_eq(r.version, a->version);
            for (int k = 0; k < PER_APPEND; k++)
                ck_assert_str_eq(r.event_ids[k], a->ids[k]);
            es_result_release(&r);
            retried++;
        }
        ck_assert_uint_eq(tst_log_position(st), head);
        es_store_close(st);
        free(acks);
    }
    ck_assert_msg(retried > 0, "no append was acknowledged in 6 rounds");
}
END_TEST

static Suite *crash_suite(void)
{
    Suite *s = suite_create("eventstore/crash");
    TCase *tc = tcase_create("sigkill");
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_add_checked_fixture(tc, crash_setup, crash_teardown);
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_acknowledged_appends_survive_sigkill);
    tcase_add_test(tc, test_sigkill_never_leaves_part_of_an_append);
    tcase_add_test(tc, test_chain_verifies_intact_after_each_sigkill);
    tcase_add_test(tc, test_retried_command_after_sigkill_is_a_duplicate);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tst_run_suite(crash_suite());
}
