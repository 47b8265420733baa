/*
 * test_checkpoint.c — the index checkpoint in slices: with a small
 * index_every the streams and heads databases are written a slice at a
 * time while appends go on; reads, listings, verify and a reopen (which
 * replays the log after the checkpoint) must see every stream whole.
 */
#include "eventstore/es.h"
#include "tests/support/es_util.h"
#include "tests/support/tmpdir.h"

#include <check.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define STREAMS 37

static es_store *open_small(const char *dir, uint64_t index_every)
{
    es_options o = {.domain = "talent", .index_every = index_every, .checkpoint_slice = 5};
    es_store *st = NULL;
    guild_error err;
    ck_assert_int_eq(es_store_open(dir, &o, &st, &err), GUILD_OK);
    return st;
}

static void stream_name(unsigned i, char *out, size_t size)
{
    snprintf(out, size, "talent-%04u", i);
}

/* Every stream reads back gapless 1..expected[i], each record naming its
 * stream and version, and the listing agrees. */
static void assert_whole(es_store *st, const uint64_t *expected)
{
    tst_recs r;
    tst_recs_init(&r);
    for (unsigned i = 0; i < STREAMS; i++) {
        char name[32];
        stream_name(i, name, sizeof name);
        tst_recs_clear(&r);
        ck_assert_int_eq(tst_read_whole_stream(st, name, &r), GUILD_OK);
        ck_assert_uint_eq(r.n, expected[i]);
        for (size_t k = 0; k < r.n; k++) {
            ck_assert(tst_str_eq(r.v[k].rec.stream, name));
            ck_assert_uint_eq(r.v[k].rec.version, k + 1);
        }
        uint64_t head = 0;
        if (expected[i]) {
            ck_assert_int_eq(es_stream_head(st, name, &head, NULL), GUILD_OK);
            ck_assert_uint_eq(head, expected[i]);
        }
    }
    tst_recs_release(&r);
    es_verify_report rep;
    ck_assert_int_eq(es_verify(st, &rep, NULL, NULL), GUILD_OK);
    ck_assert_msg(rep.intact, "verify: %s at %llu", rep.what,
                  (unsigned long long)rep.break_position);
}

START_TEST(test_sliced_checkpoints_keep_every_stream_whole)
{
    char *dir = tst_dir_new("checkpoint");
    es_store *st = open_small(dir, 50);
    uint64_t expected[STREAMS] = {0};
    srand(7);
    for (int i = 0; i < 3000; i++) {
        unsigned s = (unsigned)rand() % STREAMS;
        size_t n = 1 + (size_t)rand() % 3;
        char name[32];
        stream_name(s, name, sizeof name);
        ck_assert_int_eq(tst_append_quiet(st, name, expected[s], n), GUILD_OK);
        expected[s] += n;
        if (i % 500 == 0)
            assert_whole(st, expected);
    }
    assert_whole(st, expected);
    es_store_close(st);

    st = open_small(dir, 50); /* replays what the last slice had not indexed */
    assert_whole(st, expected);
    es_store_close(st);

    es_store *ro = NULL;
    ck_assert_int_eq(tst_store_open_ro(dir, &ro), GUILD_OK);
    assert_whole(ro, expected);
    es_store_close(ro);
    tst_dir_remove(dir);
    free(dir);
}
END_TEST

/* A child appends with tiny slices and is killed at a random moment; the
 * reopened store is whole and verifies, and holds every acknowledged append. */
START_TEST(test_kill_during_sliced_checkpoints_loses_nothing)
{
    char *dir = tst_dir_new("checkpoint-kill");
    uint64_t acked[STREAMS] = {0};
    for (int round = 0; round < 6; round++) {
        int fds[2];
        ck_assert_int_eq(pipe(fds), 0);
        pid_t pid = fork();
        if (pid == 0) {
            close(fds[0]);
            es_store *st = open_small(dir, 16);
            srand((unsigned)getpid());
            for (;;) {
                unsigned s = (unsigned)rand() % STREAMS;
                char name[32];
                stream_name(s, name, sizeof name);
                if (tst_append_quiet(st, name, ES_ANY_VERSION, 1) != GUILD_OK)
                    _exit(3);
                uint64_t v = tst_stream_version(st, name);
                unsigned char msg[12];
                memcpy(msg, &s, 4);
                memcpy(msg + 4, &v, 8);
                if (write(fds[1], msg, sizeof msg) != (ssize_t)sizeof msg)
                    _exit(4);
            }
        }
        close(fds[1]);
        usleep((useconds_t)(30000 + rand() % 150000));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        unsigned char msg[12];
        while (read(fds[0], msg, sizeof msg) == (ssize_t)sizeof msg) {
            unsigned s;
            uint64_t v;
            memcpy(&s, msg, 4);
            memcpy(&v, msg + 4, 8);
            if (v > acked[s])
                acked[s] = v;
        }
        close(fds[0]);

        es_store *st = open_small(dir, 16);
        es_verify_report rep;
        ck_assert_int_eq(es_verify(st, &rep, NULL, NULL), GUILD_OK);
        ck_assert_msg(rep.intact, "round %d: %s at %llu", round, rep.what,
                      (unsigned long long)rep.break_position);
        for (unsigned i = 0; i < STREAMS; i++) {
            char name[32];
            stream_name(i, name, sizeof name);
            uint64_t have = tst_stream_version(st, name);
            ck_assert_msg(have >= acked[i], "%s: acknowledged %llu, found %llu", name,
                          (unsigned long long)acked[i], (unsigned long long)have);
            acked[i] = have;
        }
        assert_whole(st, acked);
        es_store_close(st);
    }
    tst_dir_remove(dir);
    free(dir);
}
END_TEST

int main(void)
{
    tst_base_setup();
    Suite *s = suite_create("eventstore/checkpoint");
    TCase *tc = tcase_create("slices");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_sliced_checkpoints_keep_every_stream_whole);
    tcase_add_test(tc, test_kill_during_sliced_checkpoints_loses_nothing);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    tst_base_teardown();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
