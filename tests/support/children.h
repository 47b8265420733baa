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

#endif
