/*
 * project.c — `guild project`: run the projectors and look after them.
 *
 *   guild project <model...|all>          keep read models current, answer queries
 *   guild project status                  position, lag and digest of each model
 *   guild project dead-letters <model>    events parked because they could not apply
 *   guild project retry <model>           apply the parked events again
 *   guild project rebuild <model>         replay the domain's log into a fresh model,
 *                                         prove the digest, swap it in
 */
#include "cmd.h"

#include "bus/conn.h"
#include "common/clock.h"
#include "common/codec.h"
#include "common/log.h"
#include "eventstore/es.h"
#include "projections/projector.h"

#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define REBUILD_TXN 0 /* events per transaction: prj_store_replay's default */

/* One projector process per model and data directory: two would each
 * trust their own idea of the checkpoint and apply events twice. flock on
 * <data>/projections/<model>.lock (the kernel drops it when the process
 * dies); false, with a message, when another process holds one. */
static bool lock_models(const cmd_common *c, const char *const *names)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/projections", c->data);
    mkdir(c->data, 0755);
    mkdir(dir, 0755);
    for (const prj_model *const *m = prj_models(); *m; m++) {
        bool wanted = false; /* as the projector picks its models */
        for (size_t i = 0; names[i] && !wanted; i++)
            wanted = strcmp(names[i], (*m)->name) == 0 || strcmp(names[i], "all") == 0;
        if (!wanted)
            continue;
        char path[1100];
        snprintf(path, sizeof path, "%s/%s.lock", dir, (*m)->name);
        int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) != 0) {
            guild_error("another guild project process runs the %s model on %s (%s)", (*m)->name,
                        c->data, path);
            return false; /* the locks taken so far go with the process */
        }
    }
    return true;
}

static int run(const cmd_common *c, int argc, char **argv)
{
    guild_log_set_service("projector");
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    const char **names = calloc((size_t)argc, sizeof *names);
    for (int i = 1; i < argc; i++)
        names[i - 1] = argv[i];
    if (!lock_models(c, names)) {
        free(names);
        return 1;
    }
    prj_projector_options opt = {.data_dir = c->data, .nats_url = c->nats, .models = names};
    prj_projector *p = NULL;
    guild_error err = {0};
    if (prj_projector_start(&opt, &p, &err) != GUILD_OK) {
        guild_error("cannot start the projector: %s", err.message);
        free(names);
        return 1;
    }
    guild_info("projector running (NATS %s, data %s)", c->nats, c->data);
    int sig = 0;
    sigwait(&sigs, &sig);
    prj_projector_stop(p);
    guild_info("projector stopped");
    free(names);
    return 0;
}

/* A control request to a running projector; NULL when none answers. */
static json_t *control(natsConnection *nc, const char *model, const char *verb, int timeout_ms)
{
    char subject[160];
    snprintf(subject, sizeof subject, "guild.ctl.project.%s.%s", model, verb);
    natsMsg *reply = NULL;
    if (!nc || natsConnection_RequestString(&reply, nc, subject, "{}", timeout_ms) != NATS_OK)
        return NULL;
    json_t *out = NULL;
    guild_codec_decode(natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), GUILD_FMT_JSON,
                       &out, NULL);
    natsMsg_Destroy(reply);
    return out;
}

static natsConnection *connect_quietly(const cmd_common *c)
{
    natsConnection *nc = NULL;
    if (bus_connect(c->nats, "guild-project", 0, &nc, NULL) != GUILD_OK)
        return NULL;
    return nc;
}

static int status(const cmd_common *c)
{
    natsConnection *nc = connect_quietly(c);
    if (!nc) {
        fprintf(stderr, "guild project: NATS at %s is not reachable\n", c->nats);
        return 2;
    }
    printf("%-10s %12s %12s %10s %10s %8s %8s  %s\n", "model", "position", "stream", "behind",
           "ms behind", "parked", "restarts", "digest");
    int missing = 0;
    for (const prj_model *const *m = prj_models(); *m; m++) {
        json_t *r = control(nc, (*m)->name, "status", 1000);
        json_t *d = json_object_get(r, "data");
        if (!d) {
            printf("%-10s not running\n", (*m)->name);
            missing++;
        } else {
            printf("%-10s %12lld %12lld %10lld %10lld %8lld %8lld  %.16s…\n", (*m)->name,
                   (long long)json_integer_value(json_object_get(d, "position")),
                   (long long)json_integer_value(json_object_get(d, "stream_last")),
                   (long long)json_integer_value(json_object_get(d, "events_behind")),
                   (long long)json_integer_value(json_object_get(d, "ms_behind")),
                   (long long)json_integer_value(json_object_get(d, "parked")),
                   (long long)json_integer_value(json_object_get(d, "consumer_restarts")),
                   json_string_value(json_object_get(d, "digest")));
        }
        json_decref(r);
    }
    bus_close(nc);
    return missing ? 1 : 0;
}

static int print_dead(void *ctx, uint64_t position, const char *reason, const char *type,
                      const char *stream)
{
    (void)ctx;
    printf("%llu  %s  %s  %s\n", (unsigned long long)position, type, stream, reason);
    return 0;
}

static prj_store *open_model(const cmd_common *c, const prj_model *m, const char *suffix)
{
    char dir[1100], parent[1100];
    prj_model_dir(c->data, m->name, dir, sizeof dir);
    strncat(dir, suffix, sizeof dir - strlen(dir) - 1);
    snprintf(parent, sizeof parent, "%s/projections", c->data);
    mkdir(c->data, 0755);
    mkdir(parent, 0755);
    mkdir(dir, 0755);
    prj_store *s = NULL;
    guild_error err = {0};
    if (prj_store_open(dir, m, &s, &err) != GUILD_OK) {
        fprintf(stderr, "guild project: %s\n", err.message);
        return NULL;
    }
    return s;
}

static int dead_letters(const cmd_common *c, const prj_model *m)
{
    prj_store *s = open_model(c, m, "");
    if (!s)
        return 2;
    guild_status st = prj_store_dead_letters(s, print_dead, NULL);
    prj_store_close(s);
    return st == GUILD_OK ? 0 : 2;
}

static int retry(const cmd_common *c, const prj_model *m)
{
    natsConnection *nc = connect_quietly(c);
    json_t *r = control(nc, m->name, "retry", 30000);
    uint64_t retried = 0, left = 0;
    if (r && json_is_true(json_object_get(r, "ok"))) {
        json_t *d = json_object_get(r, "data");
        retried = (uint64_t)json_integer_value(json_object_get(d, "retried"));
        left = (uint64_t)json_integer_value(json_object_get(d, "left"));
    } else if (r) {
        fprintf(stderr, "guild project retry: the projector answered: %s\n",
                json_string_value(json_object_get(json_object_get(r, "error"), "message")));
        json_decref(r);
        bus_close(nc);
        return 2;
    } else {
        /* No projector answered: retry in place, if none runs. */
        const char *only[] = {m->name, NULL};
        prj_store *s = lock_models(c, only) ? open_model(c, m, "") : NULL;
        es_store *log = s ? cmd_open_log(c, m->domain, "guild project retry") : NULL;
        if (!log || prj_store_retry(s, log, &retried, &left) != GUILD_OK) {
            es_store_close(log);
            prj_store_close(s);
            json_decref(r);
            bus_close(nc);
            return 2;
        }
        es_store_close(log);
        prj_store_close(s);
    }
    printf("%s: %llu applied, %llu still parked\n", m->name, (unsigned long long)retried,
           (unsigned long long)left);
    json_decref(r);
    bus_close(nc);
    return left ? 1 : 0;
}

/* ---- rebuild --------------------------------------------------------------- */

/* Progress on a terminal while the log is replayed. */
typedef struct rebuild_progress {
    bool tty;
    uint64_t total, started;
} rebuild_progress;

static int show_rebuild(void *ctx, uint64_t position, const prj_batch_stats *batch, size_t events,
                        double apply_seconds)
{
    rebuild_progress *p = ctx;
    (void)batch, (void)events, (void)apply_seconds;
    if (p->tty) {
        double secs = (double)(guild_mono_ns() - p->started) / 1e9;
        fprintf(stderr, "\rrebuilding: %llu of %llu events, %.0f events/s   ",
                (unsigned long long)position, (unsigned long long)p->total,
                secs > 0 ? (double)position / secs : 0.0);
    }
    return 0;
}

static void hex(const uint8_t d[PRJ_DIGEST_LEN], char out[2 * PRJ_DIGEST_LEN + 1])
{
    sodium_bin2hex(out, 2 * PRJ_DIGEST_LEN + 1, d, PRJ_DIGEST_LEN);
}

static int do_rebuild(const cmd_common *c, const prj_model *m, bool swap)
{
    char dir[1100], next[1200];
    prj_model_dir(c->data, m->name, dir, sizeof dir);
    snprintf(next, sizeof next, "%s.rebuild", dir);
    es_store *log = cmd_open_log(c, m->domain, "guild project rebuild");
    if (!log)
        return 2;
    prj_store_remove(next); /* a rebuild left over from before starts again */
    prj_store *target = open_model(c, m, ".rebuild");
    if (!target) {
        es_store_close(log);
        return 2;
    }

    /* The live model's position and digest of one moment, to compare with. */
    natsConnection *nc = connect_quietly(c);
    json_t *live = control(nc, m->name, "status", 1000);
    json_t *ld = json_object_get(live, "data");
    uint64_t live_pos = (uint64_t)json_integer_value(json_object_get(ld, "position"));
    const char *live_digest = json_string_value(json_object_get(ld, "digest"));
    uint64_t total = 0;
    es_log_head(log, &total, NULL);
    bool tty = isatty(2);
    uint64_t started = guild_mono_ns();
    rebuild_progress prog = {tty, total, started};
    int rc = 0;

    guild_status s = GUILD_OK;
    if (ld && live_pos > 0)
        s = prj_store_replay(target, log, live_pos, REBUILD_TXN, show_rebuild, &prog);
    if (s == GUILD_OK && ld && live_pos > 0) {
        uint8_t d[PRJ_DIGEST_LEN];
        char mine[2 * PRJ_DIGEST_LEN + 1];
        uint64_t at;
        prj_store_snapshot(target, &at, d);
        hex(d, mine);
        bool same = at == live_pos && live_digest && strcmp(mine, live_digest) == 0;
        fprintf(stderr, "%s", tty ? "\n" : "");
        printf("%s: at position %llu the rebuilt digest is %s the live one (%.16s… %s %.16s…)\n",
               m->name, (unsigned long long)at, same ? "EQUAL to" : "DIFFERENT from", mine,
               same ? "=" : "≠", live_digest ? live_digest : "?");
        if (!same)
            rc = 1;
    }
    if (s == GUILD_OK)
        s = prj_store_replay(target, log, 0, REBUILD_TXN, show_rebuild, &prog);
    double secs = (double)(guild_mono_ns() - started) / 1e9;
    uint64_t at = prj_store_position(target);
    if (tty)
        fprintf(stderr, "\n");
    if (s != GUILD_OK) {
        fprintf(stderr, "guild project rebuild: %s\n", guild_status_code(s));
        rc = 2;
    } else {
        printf("%s: rebuilt %llu events in %.2f s (%.0f events/s)\n", m->name,
               (unsigned long long)at, secs, secs > 0 ? (double)at / secs : 0.0);
    }
    prj_store_close(target);
    es_store_close(log);

    if (rc == 0 && swap) {
        json_t *sw = ld ? control(nc, m->name, "swap", 30000) : NULL;
        if (sw && json_is_true(json_object_get(sw, "ok"))) {
            printf("%s: swapped in; the projector goes on from position %llu\n", m->name,
                   (unsigned long long)at);
        } else if (ld) {
            fprintf(stderr, "guild project rebuild: the projector refused the swap\n");
            rc = 2;
        } else {
            /* No projector running: swap the directories here. */
            char old[1300];
            snprintf(old, sizeof old, "%s.old", dir);
            if (rename(dir, old) == 0 || access(dir, F_OK) != 0) {
                rename(next, dir);
                prj_store_remove(old);
                printf("%s: swapped in\n", m->name);
            }
        }
        json_decref(sw);
    }
    json_decref(live);
    bus_close(nc);
    return rc;
}

int cmd_project(int argc, char **argv)
{
    cmd_common c;
    if ((argc = cmd_common_parse(&c, argc, argv)) < 0)
        return 2;
    bool help = argc >= 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0);
    if (argc < 2 || help || argv[1][0] == '-') {
        if (argc >= 2 && !help)
            fprintf(stderr, "guild project: unknown option %s\n", argv[1]);
        fprintf(help ? stdout : stderr,
                "usage: guild project <model...|all> | status | dead-letters <model> | "
                "retry <model> | rebuild <model> [--no-swap]\n");
        return help ? 0 : 2;
    }
    const char *verb = argv[1];
    if (strcmp(verb, "status") == 0)
        return status(&c);
    if (strcmp(verb, "dead-letters") == 0 || strcmp(verb, "retry") == 0 ||
        strcmp(verb, "rebuild") == 0) {
        const prj_model *m = argc > 2 ? prj_model_find(argv[2]) : NULL;
        if (!m) {
            fprintf(stderr, "guild project %s: name a read model\n", verb);
            return 2;
        }
        if (verb[0] == 'd')
            return dead_letters(&c, m);
        if (verb[1] == 'e' && verb[2] == 't')
            return retry(&c, m);
        return do_rebuild(&c, m, !cmd_flag(argc, argv, "--no-swap"));
    }
    return run(&c, argc, argv);
}
