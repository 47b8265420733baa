/*
 * cmd.h — what the guild binary's subcommands share: options common to all
 * of them and the entry point of each.
 */
#ifndef GUILD_CMD_CMD_H
#define GUILD_CMD_CMD_H

#include "eventstore/es.h"

#include <stdbool.h>
#include <stdint.h>

/* Options every subcommand understands. */
typedef struct cmd_common {
    const char *data;   /* --data DIR, $GUILD_DATA, or ./data */
    const char *nats;   /* --nats URL, $GUILD_NATS_URL, <data>/nats.url, or the default */
    bool dev;           /* --dev or GUILD_DEV=1 */
    char nats_buf[256]; /* storage for a URL read from <data>/nats.url */
} cmd_common;

/* Takes the common options out of argv (compacting it); returns the new
 * argc, or -1 after printing why an option is wrong. */
int cmd_common_parse(cmd_common *c, int argc, char **argv);

/* A whole string of decimal digits that fits in 64 bits (no sign, no
 * spaces). */
bool cmd_parse_u64(const char *s, uint64_t *out);

/* Value of "--name VALUE" in argv, or NULL. */
const char *cmd_opt(int argc, char **argv, const char *name);
bool cmd_flag(int argc, char **argv, const char *name);

/* The event store of `domain` under the data directory, read-only (beside
 * a running service); NULL after printing why, prefixed with `who`. */
es_store *cmd_open_log(const cmd_common *c, const char *domain, const char *who);

int cmd_serve(int argc, char **argv);
int cmd_up(int argc, char **argv);
int cmd_request(int argc, char **argv, bool query);
int cmd_admin(int argc, char **argv);
int cmd_docs(int argc, char **argv);
int cmd_events(int argc, char **argv);
int cmd_project(int argc, char **argv);

#endif
