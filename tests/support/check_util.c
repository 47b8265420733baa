/* check_util.c — running a Check suite the same way in every test file. */
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
