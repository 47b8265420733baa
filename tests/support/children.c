/*
 * children.c — the processes a test started, killed at exit (children.h).
 */
#include "tests/support/children.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

#define CHILDREN_MAX 64

static pid_t children[CHILDREN_MAX];
static bool hooked;

static void kill_all(void)
{
    for (int i = 0; i < CHILDREN_MAX; i++) {
        if (children[i] > 0) {
            kill(children[i], SIGKILL);
            waitpid(children[i], NULL, 0);
            children[i] = 0;
        }
    }
}

void tst_child_track(pid_t pid)
{
    if (!hooked) {
        atexit(kill_all);
        hooked = true;
    }
    for (int i = 0; i < CHILDREN_MAX; i++) {
        if (children[i] == 0) {
            children[i] = pid;
            return;
        }
    }
    fprintf(stderr, "tests: more than %d child processes running; pid %d not tracked\n",
            CHILDREN_MAX, (int)pid);
}

void tst_child_untrack(pid_t pid)
{
    for (int i = 0; i < CHILDREN_MAX; i++)
        if (children[i] == pid)
            children[i] = 0;
}
