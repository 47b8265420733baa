/* tmpdir.c — temporary directories and whole-file helpers for tests. */
#include "tests/support/tmpdir.h"

#include <errno.h>
#include <fcntl.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char base_dir[256];

void tst_base_setup(void)
{
    snprintf(base_dir, sizeof base_dir, "/tmp/guild-test-XXXXXX");
    if (!mkdtemp(base_dir)) {
        perror("mkdtemp");
        abort();
    }
}

void tst_base_teardown(void)
{
    if (base_dir[0])
        tst_dir_remove(base_dir);
    base_dir[0] = '\0';
}

char *tst_dir_new(const char *what)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s-XXXXXX", base_dir[0] ? base_dir : "/tmp", what);
    if (!mkdtemp(path)) {
        perror("mkdtemp");
        abort();
    }
    char *out = strdup(path);
    if (!out)
        abort();
    return out;
}

int tst_dir_remove(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return -1;
    if (!S_ISDIR(sb.st_mode))
        return unlink(path);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int rc = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char child[1024];
        snprintf(child, sizeof child, "%s/%s", path, e->d_name);
        if (tst_dir_remove(child) != 0)
            rc = -1;
    }
    closedir(d);
    if (rmdir(path) != 0)
        rc = -1;
    return rc;
}

int tst_file_copy(const char *src, const char *dst)
{
    size_t len;
    unsigned char *data = tst_file_read(src, &len);
    if (!data)
        return -1;
    int rc = tst_file_write(dst, data, len);
    free(data);
    return rc;
}

unsigned char *tst_file_read(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return NULL;
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        close(fd);
        return NULL;
    }
    size_t size = (size_t)sb.st_size;
    unsigned char *buf = malloc(size + 1);
    size_t got = 0;
    while (buf && got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            free(buf);
            buf = NULL;
            break;
        }
        got += (size_t)n;
    }
    close(fd);
    if (buf) {
        buf[size] = '\0';
        if (len)
            *len = size;
    }
    return buf;
}

int tst_file_write(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    const unsigned char *p = data;
    size_t done = 0;
    while (done < len) {
        ssize_t n = write(fd, p + done, len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            close(fd);
            return -1;
        }
        done += (size_t)n;
    }
    return close(fd);
}
