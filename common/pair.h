/*
 * pair.h — a piece of work cut in two halves, run on two threads.
 */
#ifndef GUILD_COMMON_PAIR_H
#define GUILD_COMMON_PAIR_H

/* Runs fn(b) on a second thread and fn(a) on this one, and returns when
 * both are done; both here, one after the other, when no thread can be
 * made. */
void guild_run_pair(void *(*fn)(void *), void *a, void *b);

#endif
