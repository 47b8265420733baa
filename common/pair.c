/*
 * pair.c — a piece of work cut in two halves, run on two threads.
 */
#include "common/pair.h"

#include <pthread.h>
#include <stdbool.h>

void guild_run_pair(void *(*fn)(void *), void *a, void *b)
{
    pthread_t th;
    bool apart = pthread_create(&th, NULL, fn, b) == 0;
    fn(a);
    if (apart)
        pthread_join(th, NULL);
    else
        fn(b);
}
