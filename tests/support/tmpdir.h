/*
 * tmpdir.h — temporary directories for tests.
 *
 * A test file makes one base directory under /tmp (tst_base_setup, fit for
 * an unchecked Check fixture: it runs in the runner process, so the base is
 * removed by tst_base_teardown even when a test fails in its forked child).
 * Each test then makes its own directory inside it with tst_dir_new.
 */
#ifndef GUILD_TESTS_SUPPORT_TMPDIR_H
#define GUILD_TESTS_SUPPORT_TMPDIR_H

#include <stddef.h>

/* Makes /tmp/guild-test-XXXXXX; aborts if it cannot. */
void tst_base_setup(void);

/* Removes the base directory and everything under it. */
void tst_base_teardown(void);

/* Makes a fresh directory <base>/<what>-XXXXXX (under /tmp when there is no
 * base). Returns a malloc'd path owned by the caller; aborts on failure. */
char *tst_dir_new(const char *what);

/* Removes `path` and everything under it; returns 0 or -1. */
int tst_dir_remove(const char *path);

/* Copies a regular file; returns 0 or -1 (errno set). */
int tst_file_copy(const char *src, const char *dst);

/* Reads a whole file into a malloc'd buffer, with a NUL after its bytes
 * (so a text file reads as a string); its length in *len when len is not
 * NULL. NULL on failure. */
unsigned char *tst_file_read(const char *path, size_t *len);

/* Writes a whole buffer to `path`, replacing it; returns 0 or -1. */
int tst_file_write(const char *path, const void *data, size_t len);

#endif
