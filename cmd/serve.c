/* serve.c — `guild serve <domain>`: the command handlers of one domain. */
#include "cmd.h"

#include "bus/runtime.h"
#include "common/log.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

int cmd_serve(int argc, char **argv)
{
    cmd_common c;
    if ((argc = cmd_common_parse(&c, argc, argv)) < 0)
        return 2;
    bool help = argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0);
    if (argc < 2 || help) {
        fprintf(help ? stdout : stderr,
                "usage: guild serve <domain> [--data DIR] [--nats URL] [--dev]\n");
        return help ? 0 : 2;
    }
    const char *domain = argv[1];
    char service[64];
    snprintf(service, sizeof service, "%s", domain);
    guild_log_set_service(service);

    /* Signals are taken with sigwait so no handler runs inside the libraries. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    bus_runtime_options opt = {
        .domain = domain, .data_dir = c.data, .nats_url = c.nats, .dev_mode = c.dev};
    bus_runtime *rt = NULL;
    guild_error err = {0};
    if (bus_runtime_start(&opt, &rt, &err) != GUILD_OK) {
        guild_error("cannot start %s: %s", domain, err.message);
        return 1;
    }
    guild_info("%s serving commands on guild.cmd.%s.* (NATS %s, data %s)", domain, domain, c.nats,
               c.data);
    int sig = 0;
    sigwait(&sigs, &sig);
    guild_info("%s stopping (signal %d)", domain, sig);
    bus_runtime_stop(rt);
    guild_info("%s stopped", domain);
    return 0;
}
