/*
 * docs.c — `guild docs api`: writes docs/api.md from the schema tables, so
 * the API reference never drifts from what the validator enforces. A test
 * compares the committed file with this output.
 */
#include "cmd.h"

#include "bus/relay.h"

#include "common/status.h"
#include "domain/dom.h"
#include "projections/prj.h"

#include <stdio.h>
#include <string.h>

static const char *type_name(const dom_field *f)
{
    switch (f->type) {
    case DOM_STRING:
        return "string";
    case DOM_TEXT:
        return "text";
    case DOM_INT:
        return "integer";
    case DOM_BOOL:
        return "boolean";
    case DOM_UUID:
        return "UUID";
    case DOM_EMAIL:
        return "e-mail";
    case DOM_PASSWORD:
        return "password";
    case DOM_DATE:
        return "RFC 3339 date";
    case DOM_CURRENCY:
        return "ISO 4217 code";
    case DOM_ENUM:
        return "one of";
    case DOM_NAME:
        return "name";
    case DOM_STRING_LIST:
        return "list of strings";
    case DOM_NAME_LIST:
        return "list of names";
    case DOM_OBJECT_LIST:
        return "list of objects";
    case DOM_ANY:
        return "any";
    }
    return "?";
}

static void limits(FILE *out, const dom_field *f)
{
    switch (f->type) {
    case DOM_INT:
        if (f->min || f->max)
            fprintf(out, "%lld to %lld", (long long)f->min, (long long)f->max);
        break;
    case DOM_STRING:
    case DOM_TEXT:
    case DOM_NAME:
        fprintf(out, "%lld to %lld characters", (long long)f->min,
                (long long)(f->max ? f->max : 1000));
        break;
    case DOM_PASSWORD:
        fprintf(out, "10 to 128 characters, letters with digits or symbols");
        break;
    case DOM_ENUM:
        for (const char *const *v = f->values; v && *v; v++)
            fprintf(out, "%s`%s`", v == f->values ? "" : ", ", *v);
        break;
    case DOM_STRING_LIST:
    case DOM_NAME_LIST:
    case DOM_OBJECT_LIST:
        fprintf(out, "%lld to %lld items", (long long)f->min, (long long)(f->max ? f->max : 100));
        break;
    default:
        break;
    }
}

static void field_rows(FILE *out, const dom_field *fields, const char *prefix)
{
    for (const dom_field *f = fields; f && f->name; f++) {
        fprintf(out, "| `%s%s` | %s | %s | ", prefix, f->name, type_name(f),
                f->required ? "yes" : "no");
        limits(out, f);
        fprintf(out, " | %s |\n", f->doc ? f->doc : "");
        if (f->type == DOM_OBJECT_LIST && f->items) {
            char sub[96];
            snprintf(sub, sizeof sub, "%s%s[].", prefix, f->name);
            field_rows(out, f->items, sub);
        }
    }
}

static void field_table(FILE *out, const dom_field *fields)
{
    if (!fields || !fields->name) {
        fprintf(out, "No fields.\n\n");
        return;
    }
    fprintf(out, "| field | type | required | limits | |\n|---|---|---|---|---|\n");
    field_rows(out, fields, "");
    fprintf(out, "\n");
}

static void write_domain(FILE *out, const dom_domain *d)
{
    fprintf(out, "## %s\n\n### Commands\n\n", d->name);
    for (const dom_command *c = d->commands; c && c->name; c++) {
        fprintf(out, "#### `%s`\n\n", c->name);
        fprintf(out, "Subject `guild.cmd.%s.%s`. %s\n\n", d->name, c->name,
                c->summary ? c->summary : "");
        if (c->is_public)
            fprintf(out, "Access: public (no token).\n\n");
        else if (c->permission)
            fprintf(out, "Access: a token with the permission `%s`.\n\n", c->permission);
        else
            fprintf(out, "Access: any valid token (rules in the summary).\n\n");
        field_table(out, c->fields);
    }
    /* Queries: the read models' own tables, then what a service answers itself. */
    bool heading = false;
    for (const prj_model *const *m = prj_models(); *m; m++) {
        if (strcmp((*m)->domain, d->name) != 0)
            continue;
        for (const prj_query *q = (*m)->queries; q && q->name; q++) {
            if (!heading)
                fprintf(out, "### Queries\n\n");
            heading = true;
            fprintf(out,
                    "#### `%s`\n\nSubject `guild.qry.%s.%s`, answered by the `%s` read model. "
                    "%s\n\n",
                    q->name, d->name, q->name, (*m)->name, q->summary ? q->summary : "");
            if (q->is_public)
                fprintf(out, "Access: public (no token).\n\n");
            else if (q->permission)
                fprintf(out, "Access: a token with the permission `%s`.\n\n", q->permission);
            else
                fprintf(out, "Access: any valid token.\n\n");
            field_table(out, q->fields);
        }
    }
    for (const dom_query_doc *q = d->queries; q && q->name; q++) {
        if (strcmp(q->name, "public_keys") != 0)
            continue; /* the rest are answered by read models, listed above */
        if (!heading)
            fprintf(out, "### Queries\n\n");
        heading = true;
        fprintf(out, "#### `%s`\n\nSubject `guild.qry.%s.%s`, answered by the %s service. %s\n\n",
                q->name, d->name, q->name, d->name, q->summary ? q->summary : "");
        field_table(out, q->fields);
    }
    char stream[64];
    bus_relay_stream_name(d->name, stream, sizeof stream);
    fprintf(out,
            "### Events\n\nPublished on `guild.evt.%s.<type>.<aggregate id>` in the "
            "JetStream stream `%s`.\n\n",
            d->name, stream);
    for (const dom_event_doc *e = d->events; e && e->type; e++) {
        fprintf(out, "#### `%s` (schema %u)\n\n%s\n\n", e->type, e->schema ? e->schema : 1,
                e->summary ? e->summary : "");
        field_table(out, e->fields);
    }
}

int cmd_docs(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "api") != 0) {
        fprintf(stderr, "usage: guild docs api > docs/api.md\n");
        return 2;
    }
    FILE *out = stdout;
    fprintf(out, "# guild API\n\n"
                 "Generated by `guild docs api` from the schema tables the validator uses; "
                 "a test keeps this file equal to that output. Subjects, headers, replies and "
                 "the event record are described in the wire contract; this page lists every "
                 "command, query and event with its fields.\n\n"
                 "Every command replies `{\"ok\": true, \"id\", \"stream\", \"version\", "
                 "\"position\", \"events\", \"consistency\", \"data\"}` or `{\"ok\": false, "
                 "\"error\": {\"code\", \"field\", \"message\"}}` with the header "
                 "`Guild-Status`.\n\n"
                 "## Error codes\n\n| code | Guild-Status |\n|---|---|\n");
    for (int s = GUILD_INVALID_REQUEST; s <= GUILD_INTERNAL; s++)
        fprintf(out, "| `%s` | %d |\n", guild_status_code((guild_status)s),
                guild_status_http((guild_status)s));
    fprintf(out, "\nUnknown fields are refused with `validation_failed`, an unknown command with "
                 "`invalid_request`. A query subject that no service subscribes to (an unknown "
                 "query, or one whose read model is not running) gets no guild reply: NATS answers "
                 "the request at once with its own no-responders status (503), which the clients "
                 "report as such: `guild qry` prints `No responders available for request (nothing "
                 "listens there: an unknown domain or query, or its service is not running)` and "
                 "exits with status 2.\n\n");
    for (const dom_domain *const *d = dom_domains(); *d; d++)
        write_domain(out, *d);
    return 0;
}
