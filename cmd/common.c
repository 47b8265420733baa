/* common.c — options shared by the subcommands. */
#include "cmd.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_NATS "nats://127.0.0.1:4222"

bool cmd_parse_u64(const char *s, uint64_t *out)
{
    uint64_t n = 0;
    if (!s || !*s)
        return false;
    for (; *s; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (d > 9 || n > (UINT64_MAX - d) / 10)
            return false;
        n = n * 10 + d;
    }
    *out = n;
    return true;
}

const char *cmd_opt(int argc, char **argv, const char *name)
{
    for (int i = 0; i + 1 < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return argv[i + 1];
    return NULL;
}

bool cmd_flag(int argc, char **argv, const char *name)
{
    for (int i = 0; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return true;
    return false;
}

static void read_url_file(cmd_common *c)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/nats.url", c->data);
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    if (fgets(c->nats_buf, sizeof c->nats_buf, f)) {
        c->nats_buf[strcspn(c->nats_buf, "\r\n")] = '\0';
        if (c->nats_buf[0])
            c->nats = c->nats_buf;
    }
    fclose(f);
}

int cmd_common_parse(cmd_common *c, int argc, char **argv)
{
    memset(c, 0, sizeof *c);
    c->data = getenv("GUILD_DATA") ? getenv("GUILD_DATA") : "data";
    c->nats = getenv("GUILD_NATS_URL");
    const char *dev = getenv("GUILD_DEV");
    c->dev = dev && strcmp(dev, "1") == 0;
    int out = 0;
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--data") == 0 || strcmp(argv[i], "--nats") == 0) {
            if (i + 1 >= argc) {
                fprintf(stderr, "guild: %s needs a value\n", argv[i]);
                return -1;
            }
            if (argv[i][2] == 'd')
                c->data = argv[++i];
            else
                c->nats = argv[++i];
        } else if (strcmp(argv[i], "--dev") == 0) {
            c->dev = true;
        } else {
            argv[out++] = argv[i];
        }
    }
    if (!c->nats)
        read_url_file(c);
    if (!c->nats)
        c->nats = DEFAULT_NATS;
    return out;
}

es_store *cmd_open_log(const cmd_common *c, const char *domain, const char *who)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s/events", c->data, domain);
    es_options o = {.read_only = true};
    es_store *st = NULL;
    guild_error err = {0};
    if (es_store_open(dir, &o, &st, &err) != GUILD_OK) {
        fprintf(stderr, "%s: cannot open %s: %s\n", who, dir, err.message);
        return NULL;
    }
    return st;
}
