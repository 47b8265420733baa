/*
 * test_text.c — the hot-path string helpers: a copy cut to its buffer, and
 * unsigned integers in decimal, checked against snprintf.
 */
#include "common/text.h"

#include "tests/support/check_util.h"

#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

START_TEST(test_copy_fits_cuts_and_takes_null)
{
    char buf[8];
    ck_assert_uint_eq(guild_copy(buf, sizeof buf, "talent"), 6);
    ck_assert_str_eq(buf, "talent");
    ck_assert_uint_eq(guild_copy(buf, sizeof buf, "identity-x"), 7);
    ck_assert_str_eq(buf, "identit");
    ck_assert_uint_eq(guild_copy(buf, sizeof buf, ""), 0);
    ck_assert_str_eq(buf, "");
    memset(buf, 'x', sizeof buf);
    ck_assert_uint_eq(guild_copy(buf, sizeof buf, NULL), 0);
    ck_assert_str_eq(buf, "");
    char one[1] = {'x'};
    ck_assert_uint_eq(guild_copy(one, sizeof one, "abc"), 0);
    ck_assert_int_eq(one[0], '\0');

    /* guild_copy_n: bytes without a NUL of their own */
    ck_assert_uint_eq(guild_copy_n(buf, sizeof buf, "talent-1xyz", 8), 7);
    ck_assert_str_eq(buf, "talent-");
    ck_assert_uint_eq(guild_copy_n(buf, sizeof buf, "ab\0cd", 2), 2);
    ck_assert_str_eq(buf, "ab");
    ck_assert_uint_eq(guild_copy_n(buf, sizeof buf, NULL, 0), 0);
    ck_assert_str_eq(buf, "");
}
END_TEST

START_TEST(test_u64_dec_matches_printf)
{
    const uint64_t cases[] = {0,
                              1,
                              9,
                              10,
                              99,
                              100,
                              200,
                              4096,
                              1000000007ull,
                              UINT32_MAX,
                              (uint64_t)UINT32_MAX + 1,
                              1795674395932609753ull,
                              UINT64_MAX};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char got[GUILD_U64_DEC_MAX], want[32];
        snprintf(want, sizeof want, "%" PRIu64, cases[i]);
        ck_assert_uint_eq(guild_u64_dec(got, cases[i]), strlen(want));
        ck_assert_str_eq(got, want);
    }
    for (uint64_t v = 0; v < 100000; v += 7) {
        char got[GUILD_U64_DEC_MAX], want[32];
        snprintf(want, sizeof want, "%" PRIu64, v);
        guild_u64_dec(got, v);
        ck_assert_str_eq(got, want);
    }
}
END_TEST

START_TEST(test_name_u64_keeps_the_number_whole)
{
    char out[40];
    ck_assert_uint_eq(guild_name_u64(out, sizeof out, "talent", 42), 9);
    ck_assert_str_eq(out, "talent:42");
    /* A long name is cut; the number never is, and the whole fits. */
    char small[GUILD_U64_DEC_MAX + 4];
    size_t n = guild_name_u64(small, sizeof small, "identity", UINT64_MAX);
    ck_assert_str_eq(small, "ide:18446744073709551615");
    ck_assert_uint_eq(n, strlen(small));
    ck_assert_uint_lt(n, sizeof small);
    ck_assert_uint_eq(guild_name_u64(out, sizeof out, NULL, 0), 2);
    ck_assert_str_eq(out, ":0");
}
END_TEST

/* The wait status of a child that exits with `code`, or is killed by `sig`. */
static int child_ended(int code, int sig)
{
    pid_t pid = fork();
    ck_assert_int_ge(pid, 0);
    if (pid == 0) {
        if (sig)
            pause();
        _exit(code);
    }
    if (sig)
        kill(pid, sig);
    int st = 0;
    ck_assert_int_eq(waitpid(pid, &st, 0), pid);
    return st;
}

START_TEST(test_wait_text_says_the_exit_status_or_the_signal)
{
    char buf[32];
    ck_assert_str_eq(guild_wait_text(child_ended(3, 0), buf, sizeof buf), "status 3");
    ck_assert_str_eq(guild_wait_text(child_ended(0, 0), buf, sizeof buf), "status 0");
    ck_assert_str_eq(guild_wait_text(child_ended(0, SIGKILL), buf, sizeof buf), "signal 9");
}
END_TEST

static Suite *text_suite(void)
{
    Suite *s = suite_create("common/text");
    TCase *tc = tcase_create("text");
    tcase_add_test(tc, test_copy_fits_cuts_and_takes_null);
    tcase_add_test(tc, test_u64_dec_matches_printf);
    tcase_add_test(tc, test_name_u64_keeps_the_number_whole);
    tcase_add_test(tc, test_wait_text_says_the_exit_status_or_the_signal);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tst_run_suite(text_suite());
}
