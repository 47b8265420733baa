/*
 * main.c — the guild binary: dispatches to one subcommand.
 */
#include "bench.h"
#include "cmd.h"

#include "common/alloc.h"

#include <jansson.h>
#include <stdlib.h>

#include <stdio.h>
#include <string.h>

static int usage(FILE *out)
{
    fprintf(out,
            "usage: guild <command> [options]\n"
            "\n"
            "commands:\n"
            "  up [--data DIR] [--nats URL] [--port N] [--dev]   run everything on this machine\n"
            "  serve <domain>                                   command handlers of a domain\n"
            "  cmd <domain> <command> [JSON] [--token T] [--id ID] [--expect N]\n"
            "  qry <domain> <query> [JSON] [--token T] [--consistency C]\n"
            "  admin bootstrap --email E --password P           create the first administrator\n"
            "  project <model...|all>                           read models and their queries\n"
            "  project status | dead-letters | retry | rebuild <model>\n"
            "  events ls|show|export|tail|key|verify|replay <domain>   audit a domain's history\n"
            "  docs api                                         print docs/api.md from the schema "
            "tables\n"
            "  bench store [--seconds S] [--quick] [--dir DIR]   event store benchmark\n"
            "  bench commands [--seconds S] [--quick]           commands over NATS, vs an echo\n"
            "  bench project [--quick] [--no-lag]               read model rebuild, queries, lag\n"
            "  version                                          print the version\n");
    return out == stdout ? 0 : 2;
}

int main(int argc, char **argv)
{
    /* jansson allocates through the checked allocator: out of memory aborts
     * in one place instead of surfacing as NULL deep in a handler. */
    json_set_alloc_funcs(guild_xmalloc, free);
    if (argc < 2)
        return usage(stderr);
    const char *cmd = argv[1];
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0)
        return usage(stdout);
    if (strcmp(cmd, "version") == 0) {
        printf("guild %s\n", GUILD_VERSION);
        return 0;
    }
    if (strcmp(cmd, "up") == 0)
        return cmd_up(argc - 1, argv + 1);
    if (strcmp(cmd, "serve") == 0)
        return cmd_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "cmd") == 0)
        return cmd_request(argc - 1, argv + 1, false);
    if (strcmp(cmd, "qry") == 0)
        return cmd_request(argc - 1, argv + 1, true);
    if (strcmp(cmd, "project") == 0)
        return cmd_project(argc - 1, argv + 1);
    if (strcmp(cmd, "events") == 0)
        return cmd_events(argc - 1, argv + 1);
    if (strcmp(cmd, "docs") == 0)
        return cmd_docs(argc - 1, argv + 1);
    if (strcmp(cmd, "admin") == 0)
        return cmd_admin(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0) {
        if (argc >= 3 && strcmp(argv[2], "store") == 0)
            return bench_store_main(argc - 2, argv + 2);
        if (argc >= 3 && strcmp(argv[2], "commands") == 0)
            return bench_commands_main(argc - 2, argv + 2);
        if (argc >= 3 && strcmp(argv[2], "project") == 0)
            return bench_project_main(argc - 2, argv + 2);
        bool help = argc >= 3 && (strcmp(argv[2], "-h") == 0 || strcmp(argv[2], "--help") == 0);
        fprintf(help ? stdout : stderr,
                "usage: guild bench store|commands|project [options] (each takes --help)\n");
        if (help)
            return 0;
        return 2;
    }
    fprintf(stderr, "guild: unknown command '%s'\n", cmd);
    return usage(stderr);
}
