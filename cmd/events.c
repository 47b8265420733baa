/*
 * events.c — `guild events`: auditor tooling over a domain's LMDB store,
 * opened read-only so it runs beside the live service without slowing it.
 *
 *   guild events verify <domain> [--json]   hash chain, positions, versions, index
 *   guild events ls <domain> [--limit N]    streams with their versions
 */
#include "cmd.h"

#include "common/clock.h"
#include "eventstore/es.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static es_store *open_ro(const cmd_common *c, const char *domain)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s/events", c->data, domain);
    es_options o = {.read_only = true};
    es_store *st = NULL;
    guild_error err = {0};
    if (es_store_open(dir, &o, &st, &err) != GUILD_OK) {
        fprintf(stderr, "guild events: cannot open %s: %s\n", dir, err.message);
        return NULL;
    }
    return st;
}

typedef struct progress {
    bool tty;
    uint64_t started;
} progress;

static void show_progress(void *ctx, uint64_t done, uint64_t total)
{
    progress *p = ctx;
    if (!p->tty)
        return;
    double secs = (double)(guild_mono_ns() - p->started) / 1e9;
    fprintf(stderr, "\rverifying: %llu of %llu events (%.0f%%), %.0f events/s   ",
            (unsigned long long)done, (unsigned long long)total,
            total ? 100.0 * (double)done / (double)total : 100.0,
            secs > 0 ? (double)done / secs : 0.0);
}

static int verify(const cmd_common *c, const char *domain, bool as_json)
{
    es_store *st = open_ro(c, domain);
    if (!st)
        return 2;
    progress p = {isatty(2) && !as_json, guild_mono_ns()};
    es_verify_report rep;
    guild_status s = es_verify(st, &rep, show_progress, &p);
    double secs = (double)(guild_mono_ns() - p.started) / 1e9;
    es_store_close(st);
    if (p.tty)
        fprintf(stderr, "\n");
    if (s != GUILD_OK) {
        fprintf(stderr, "guild events verify: the store could not be read (%s)\n",
                guild_status_code(s));
        return 2;
    }
    if (as_json) {
        json_t *out = json_pack("{s:s, s:b, s:I, s:I, s:f}", "domain", domain, "intact", rep.intact,
                                "checked", (json_int_t)rep.checked, "last_position",
                                (json_int_t)rep.last_position, "seconds", secs);
        if (!rep.intact)
            json_object_set_new(out, "break",
                                json_pack("{s:I, s:s, s:s}", "position",
                                          (json_int_t)rep.break_position, "stream", rep.stream,
                                          "what", rep.what));
        char *text = json_dumps(out, JSON_COMPACT);
        printf("%s\n", text);
        free(text);
        json_decref(out);
    } else if (rep.intact) {
        printf("%s: intact — %llu events checked up to position %llu in %.2f s\n", domain,
               (unsigned long long)rep.checked, (unsigned long long)rep.last_position, secs);
    } else {
        printf("%s: BROKEN at position %llu%s%s: %s (%llu events before it check out)\n", domain,
               (unsigned long long)rep.break_position, rep.stream[0] ? ", stream " : "", rep.stream,
               rep.what, (unsigned long long)rep.checked);
    }
    return rep.intact ? 0 : 1;
}

static int print_stream(void *ctx, const char *stream, uint64_t version)
{
    (void)ctx;
    printf("%-60s %llu\n", stream, (unsigned long long)version);
    return 0;
}

static int list(const cmd_common *c, const char *domain, size_t limit)
{
    es_store *st = open_ro(c, domain);
    if (!st)
        return 2;
    guild_status s = es_list_streams(st, NULL, limit, print_stream, NULL);
    es_store_close(st);
    return s == GUILD_OK ? 0 : 2;
}

int cmd_events(int argc, char **argv)
{
    cmd_common c;
    if ((argc = cmd_common_parse(&c, argc, argv)) < 0)
        return 2;
    if (argc < 3) {
        fprintf(stderr, "usage: guild events verify <domain> [--json] [--data DIR]\n"
                        "       guild events ls <domain> [--limit N] [--data DIR]\n");
        return 2;
    }
    if (strcmp(argv[1], "verify") == 0)
        return verify(&c, argv[2], cmd_flag(argc, argv, "--json"));
    if (strcmp(argv[1], "ls") == 0) {
        const char *limit = cmd_opt(argc, argv, "--limit");
        return list(&c, argv[2], limit ? (size_t)strtoull(limit, NULL, 10) : SIZE_MAX);
    }
    fprintf(stderr, "guild events: unknown subcommand %s\n", argv[1]);
    return 2;
}
