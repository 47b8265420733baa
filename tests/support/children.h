/*
 * children.h — the processes a test started and has not reaped yet: killed
 * (SIGKILL) and reaped when the test process exits, so that a test failing
 * half-way (Check ends its child process) leaves no server or service
 * behind.
 */
#ifndef GUILD_TESTS_SUPPORT_CHILDREN_H
#define GUILD_TESTS_SUPPORT_CHILDREN_H

#include <sys/types.h>

/* Remembers pid (a child just started). */
void tst_child_track(pid_t pid);

/* Forgets pid (reaped, or about to be). */
void tst_child_untrack(pid_t pid);

/* Starts `program` with argv, and envp (NULL: the test's environment), as a
 * child that is killed when the test process dies: every signal
 * unblocked, stdin from /dev/null, stdout to out_fd and stderr to err_fd
 * (-1: /dev/null), no other descriptor. The caller keeps (and closes) its
 * descriptors. The pid, or -1 (errno set) when fork failed. Not tracked. */
pid_t tst_spawn(const char *program, char *const argv[], char *const envp[], int out_fd,
                int err_fd);

#endif
