/*
 * client.c — `guild cmd`, `guild qry` and `guild admin`: drive guild from a
 * shell. Each sends one request over NATS and prints the reply as JSON.
 * Exit status: 0 for an ok reply, 1 for an error reply, 2 when no reply.
 */
#include "cmd.h"

#include "bus/conn.h"
#include "common/codec.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIMEOUT_MAX_MS 3600000 /* --timeout: at most an hour */

typedef struct request {
    const char *subject;
    const char *body; /* JSON text */
    const char *token, *command_id, *expect, *consistency, *correlation;
    bool msgpack;
    bool verbose;
    int timeout_ms;
} request;

static int send_request(const cmd_common *c, const request *rq)
{
    json_t *body = NULL;
    guild_error err = {0};
    if (guild_codec_decode(rq->body, strlen(rq->body), GUILD_FMT_JSON, &body, &err) != GUILD_OK) {
        fprintf(stderr, "guild: the body is not JSON: %s\n", err.message);
        return 2;
    }
    guild_format fmt = rq->msgpack ? GUILD_FMT_MSGPACK : GUILD_FMT_JSON;
    char *bytes = NULL;
    size_t len = 0;
    guild_codec_encode(body, fmt, &bytes, &len);
    json_decref(body);

    natsConnection *nc = NULL;
    if (bus_connect(c->nats, "guild-cli", 0, &nc, &err) != GUILD_OK) {
        fprintf(stderr, "guild: cannot reach NATS at %s: %s\n", c->nats, err.message);
        free(bytes);
        return 2;
    }
    natsMsg *m = NULL, *reply = NULL;
    natsMsg_Create(&m, rq->subject, NULL, bytes, (int)len);
    natsMsgHeader_Set(m, BUS_H_CONTENT_TYPE, bus_content_type(fmt));
    if (rq->token) {
        char auth[8300];
        snprintf(auth, sizeof auth, "Bearer %s", rq->token);
        natsMsgHeader_Set(m, BUS_H_AUTH, auth);
    }
    if (rq->command_id)
        natsMsgHeader_Set(m, BUS_H_COMMAND_ID, rq->command_id);
    if (rq->expect)
        natsMsgHeader_Set(m, BUS_H_EXPECTED, rq->expect);
    if (rq->consistency)
        natsMsgHeader_Set(m, BUS_H_CONSISTENCY, rq->consistency);
    if (rq->correlation)
        natsMsgHeader_Set(m, BUS_H_CORRELATION, rq->correlation);
    natsStatus s = natsConnection_RequestMsg(&reply, nc, m, rq->timeout_ms);
    natsMsg_Destroy(m);
    free(bytes);
    int rc = 2;
    if (s == NATS_NO_RESPONDERS) {
        fprintf(stderr,
                "guild: no reply on %s: %s (nothing listens there: an unknown domain or query, "
                "or its service is not running)\n",
                rq->subject, natsStatus_GetText(s));
    } else if (s != NATS_OK) {
        fprintf(stderr, "guild: no reply on %s: %s\n", rq->subject, natsStatus_GetText(s));
    } else {
        const char *data = natsMsg_GetData(reply);
        size_t n = (size_t)natsMsg_GetDataLength(reply);
        json_t *out = NULL;
        guild_format rf = guild_format_detect(bus_header(reply, BUS_H_CONTENT_TYPE), data, n);
        if (guild_codec_decode(data, n, rf, &out, &err) == GUILD_OK) {
            if (rq->verbose)
                fprintf(stderr, "Guild-Status: %s\n",
                        bus_header(reply, BUS_H_STATUS) ? bus_header(reply, BUS_H_STATUS) : "?");
            char *text =
                json_dumps(out, JSON_INDENT(2) | JSON_PRESERVE_ORDER | guild_json_reals(out));
            printf("%s\n", text);
            free(text);
            rc = json_is_true(json_object_get(out, "ok")) ? 0 : 1;
            json_decref(out);
        } else {
            fprintf(stderr, "guild: the reply does not decode: %s\n", err.message);
        }
        natsMsg_Destroy(reply);
    }
    bus_close(nc);
    return rc;
}

static int usage(bool query)
{
    if (query)
        fprintf(stderr, "usage: guild qry <domain> <query> [JSON] [--token T] "
                        "[--consistency TOKEN] [--timeout MS] [--msgpack] [-v]\n");
    else
        fprintf(stderr, "usage: guild cmd <domain> <command> [JSON] [--token T] [--id CMD_ID] "
                        "[--expect N] [--correlation ID] [--timeout MS] [--msgpack] [-v]\n");
    return 2;
}

int cmd_request(int argc, char **argv, bool query)
{
    cmd_common c;
    if ((argc = cmd_common_parse(&c, argc, argv)) < 0)
        return 2;
    if (argc < 3)
        return usage(query);
    request rq = {.body = "{}", .timeout_ms = 10000};
    uint64_t n;
    char subject[256];
    snprintf(subject, sizeof subject, "guild.%s.%s.%s", query ? "qry" : "cmd", argv[1], argv[2]);
    rq.subject = subject;
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--token") == 0 && v)
            rq.token = v, i++;
        else if (strcmp(a, "--id") == 0 && v)
            rq.command_id = v, i++;
        else if (strcmp(a, "--expect") == 0 && v) {
            /* refused here, before anything is sent (exit status 2, as for
             * any malformed option); UINT64_MAX is the store's "any" */
            if (!cmd_parse_u64(v, &n) || n == UINT64_MAX) {
                fprintf(stderr, "guild: --expect %s is not a version (0, 1, 2, ...)\n", v);
                return usage(query);
            }
            rq.expect = v, i++;
        } else if (strcmp(a, "--consistency") == 0 && v)
            rq.consistency = v, i++;
        else if (strcmp(a, "--correlation") == 0 && v)
            rq.correlation = v, i++;
        else if (strcmp(a, "--timeout") == 0 && v) {
            if (!cmd_parse_u64(v, &n) || n == 0 || n > TIMEOUT_MAX_MS) {
                fprintf(stderr, "guild: --timeout %s is not milliseconds (1 to %d)\n", v,
                        TIMEOUT_MAX_MS);
                return usage(query);
            }
            rq.timeout_ms = (int)n, i++;
        } else if (strcmp(a, "--msgpack") == 0)
            rq.msgpack = true;
        else if (strcmp(a, "-v") == 0)
            rq.verbose = true;
        else if (a[0] != '-')
            rq.body = a;
        else
            return usage(query);
    }
    if (!rq.token)
        rq.token = getenv("GUILD_TOKEN");
    if (rq.token && !*rq.token)
        rq.token = NULL; /* an empty GUILD_TOKEN means none */
    return send_request(&c, &rq);
}

int cmd_admin(int argc, char **argv)
{
    cmd_common c;
    if ((argc = cmd_common_parse(&c, argc, argv)) < 0)
        return 2;
    const char *email = cmd_opt(argc, argv, "--email");
    const char *password = cmd_opt(argc, argv, "--password");
    const char *name = cmd_opt(argc, argv, "--name");
    if (argc < 2 || strcmp(argv[1], "bootstrap") != 0 || !email || !password) {
        fprintf(stderr, "usage: guild admin bootstrap --email E --password P [--name N]\n");
        return 2;
    }
    json_t *body = json_pack("{s:s, s:s, s:s}", "email", email, "password", password,
                             "display_name", name ? name : "Administrator");
    char *text = json_dumps(body, JSON_COMPACT);
    json_decref(body);
    request rq = {
        .subject = "guild.cmd.identity.bootstrap_admin", .body = text, .timeout_ms = 10000};
    int rc = send_request(&c, &rq);
    free(text);
    return rc;
}
