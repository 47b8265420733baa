/* check_util.c — running a Check suite the same way in every test file,
 * and reading a child's output. */
#include "tests/support/check_util.h"

#include <stdlib.h>

int tst_run_suite(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

char *tst_slurp(FILE *f)
{
    size_t cap = 1 << 14, n = 0, got;
    char *buf = malloc(cap);
    if (!buf)
        abort();
    while ((got = fread(buf + n, 1, cap - n - 1, f)) > 0) {
        n += got;
        if (n + 1 == cap) {
            buf = realloc(buf, cap *= 2);
            if (!buf)
                abort();
        }
    }
    buf[n] = '\0';
    return buf;
}
