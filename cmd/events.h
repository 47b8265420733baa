/*
 * events.h — what `guild events` shares between its files (internal to
 * cmd/): events.c (ls, show, export, tail, key, verify, dispatch) and
 * events_replay.c (replay).
 */
#ifndef GUILD_CMD_EVENTS_H
#define GUILD_CMD_EVENTS_H

#include "cmd.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Options a subcommand takes from argv[first] on: those in with_value take
 * the next argument; anything else starting with "--" is refused with a
 * message, so a typo never silently widens an export. */
bool ev_opts_ok(int argc, char **argv, int first, const char *const *with_value,
                const char *const *flags);

/* Progress of long work on stderr, when it is a terminal: ev_show_progress
 * (ctx: an ev_progress) rewrites one line; ev_progress_end clears it. */
typedef struct ev_progress {
    bool tty;
    uint64_t started; /* guild_mono_ns() */
    const char *what;
} ev_progress;
void ev_show_progress(void *ctx, uint64_t done, uint64_t total);
void ev_progress_end(const ev_progress *p);

double ev_seconds_since(uint64_t started);

/* n bytes as lowercase hex into out (2n + 1 bytes, with the NUL). */
void ev_hex(const uint8_t *p, size_t n, char *out);

/* j on one line of stdout. */
void ev_print_json_line(json_t *j);

/* guild events replay <domain> --into DIR [--max-diffs N] [--json]. */
int ev_replay(const cmd_common *c, const char *domain, int argc, char **argv);

#endif
