/*
 * children.c — the processes a test started, killed at exit (children.h).
 */
#include "tests/support/children.h"

#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

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

pid_t tst_spawn(const char *program, char *const argv[], char *const envp[], int out_fd, int err_fd)
{
    struct rlimit rl;
    int max_fd = 4096;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < 65536)
        max_fd = (int)rl.rlim_cur;
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid != 0)
        return pid;

        /* Child: async-signal-safe calls only, until exec. */
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent)
        _exit(126);
#else
    (void)parent;
#endif
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int null_fd = open("/dev/null", O_RDWR);
    if (null_fd >= 0)
        dup2(null_fd, 0);
    dup2(out_fd >= 0 ? out_fd : null_fd, 1);
    dup2(err_fd >= 0 ? err_fd : null_fd, 2);
    for (int fd = 3; fd < max_fd; fd++)
        close(fd);
    if (envp)
        execve(program, argv, envp);
    else
        execv(program, argv);
    _exit(127);
}
