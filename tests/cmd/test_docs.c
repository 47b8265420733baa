/* test_docs.c — docs/api.md is exactly what `guild docs api` prints from the
 * schema tables, so the API reference cannot drift from the validator. */
#include "bus/relay.h"
#include "domain/dom.h"
#include "tests/support/check_util.h"

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

START_TEST(test_api_md_matches_the_schema_tables)
{
    const char *bin = getenv("GUILD_GUILD_BIN");
    const char *src = getenv("GUILD_SOURCE_DIR");
    ck_assert_msg(bin && src, "GUILD_GUILD_BIN and GUILD_SOURCE_DIR must be set (ctest sets them)");
    char cmd[2048], path[2048];
    snprintf(cmd, sizeof cmd, "%s docs api", bin);
    snprintf(path, sizeof path, "%s/docs/api.md", src);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    char *generated = tst_slurp(p);
    size_t glen = strlen(generated);
    ck_assert_int_eq(pclose(p), 0);
    FILE *f = fopen(path, "r");
    ck_assert_msg(f != NULL, "docs/api.md is missing: run `build/guild docs api > docs/api.md`");
    char *committed = tst_slurp(f);
    size_t flen = strlen(committed);
    fclose(f);
    ck_assert_msg(glen > 1000, "the generated API page is suspiciously short");
    /* each domain's events are said to be in the stream its relay fills */
    for (const dom_domain *const *d = dom_domains(); *d; d++) {
        char stream[64], want[128];
        bus_relay_stream_name((*d)->name, stream, sizeof stream);
        snprintf(want, sizeof want, "JetStream stream `%s`", stream);
        ck_assert_msg(strstr(generated, want), "the API page does not name \"%s\"", want);
    }
    char talent[64];
    bus_relay_stream_name("talent", talent, sizeof talent);
    ck_assert_str_eq(talent, "GUILD_TALENT");
    ck_assert_msg(glen == flen && memcmp(generated, committed, glen) == 0,
                  "docs/api.md differs from the schema tables: run "
                  "`build/guild docs api > docs/api.md`");
    free(generated);
    free(committed);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cmd/docs");
    TCase *tc = tcase_create("api");
    tcase_add_test(tc, test_api_md_matches_the_schema_tables);
    suite_add_tcase(s, tc);
    return tst_run_suite(s);
}
