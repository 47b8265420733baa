/*
 * test_writer_lock.c — one writing process per store: a second writer is
 * refused with GUILD_CONFLICT while the first holds it, readers are not,
 * and the store is writable again once the writer closed or died.
 */
#include "eventstore/es.h"
#include "tests/support/es_util.h"
#include "tests/support/tmpdir.h"

#include <check.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static guild_status open_writer(const char *dir, es_store **out)
{
    es_options o = {.domain = "talent"};
    guild_error err;
    return es_store_open(dir, &o, out, &err);
}

START_TEST(test_second_writer_is_refused_while_the_first_writes)
{
    char *dir = tst_dir_new("writer-lock");
    es_store *a = NULL, *b = NULL, *ro = NULL;
    ck_assert_int_eq(open_writer(dir, &a), GUILD_OK);
    ck_assert_int_eq(tst_append_quiet(a, "talent-1", 0, 1), GUILD_OK);
    ck_assert_int_eq(open_writer(dir, &b), GUILD_CONFLICT);
    ck_assert_ptr_null(b);
    ck_assert_int_eq(tst_store_open_ro(dir, &ro), GUILD_OK);
    ck_assert_uint_eq(tst_stream_version(ro, "talent-1"), 1);
    es_store_close(ro);
    es_store_close(a);
    ck_assert_int_eq(open_writer(dir, &b), GUILD_OK);
    ck_assert_uint_eq(tst_stream_version(b, "talent-1"), 1);
    es_store_close(b);
    tst_dir_remove(dir);
    free(dir);
}
END_TEST

START_TEST(test_a_killed_writer_leaves_the_store_writable)
{
    char *dir = tst_dir_new("writer-lock-kill");
    int ready[2];
    ck_assert_int_eq(pipe(ready), 0);
    pid_t pid = fork();
    if (pid == 0) {
        es_store *st = NULL;
        if (open_writer(dir, &st) != GUILD_OK)
            _exit(3);
        if (write(ready[1], "x", 1) != 1)
            _exit(4);
        pause();
        _exit(0);
    }
    char c;
    ck_assert_int_eq(read(ready[0], &c, 1), 1);
    es_store *st = NULL;
    ck_assert_int_eq(open_writer(dir, &st), GUILD_CONFLICT);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    ck_assert_int_eq(open_writer(dir, &st), GUILD_OK);
    es_store_close(st);
    close(ready[0]);
    close(ready[1]);
    tst_dir_remove(dir);
    free(dir);
}
END_TEST

int main(void)
{
    tst_base_setup();
    Suite *s = suite_create("eventstore/writer_lock");
    TCase *tc = tcase_create("writer_lock");
    tcase_add_test(tc, test_second_writer_is_refused_while_the_first_writes);
    tcase_add_test(tc, test_a_killed_writer_leaves_the_store_writable);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    tst_base_teardown();
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
