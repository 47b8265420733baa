/* dom.c — the decide context, permissions, stream names and the password
 * policy of the domain kernel. */
#include "domain/dom.h"

#include "common/alloc.h"
#include "common/codec.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

void dom_ctx_init(dom_ctx *c)
{
    memset(c, 0, sizeof *c);
    c->events = json_array();
    c->reply = json_object();
    c->prep = json_object();
}

void dom_ctx_release(dom_ctx *c)
{
    json_decref(c->events);
    json_decref(c->reply);
    json_decref(c->prep);
    c->events = c->reply = c->prep = NULL;
}

static void emit(dom_ctx *c, const char *stream, const char *type, json_t *data)
{
    json_t *ev = json_object();
    json_object_set_new(ev, "type", json_string(type));
    json_object_set_new(ev, "data", data ? data : json_object());
    if (stream)
        json_object_set_new(ev, "stream", json_string(stream));
    json_array_append_new(c->events, ev);
}

void dom_emit(dom_ctx *c, const char *type, json_t *data)
{
    emit(c, NULL, type, data);
}

void dom_emit_to(dom_ctx *c, const char *stream, const char *type, json_t *data)
{
    emit(c, stream, type, data);
}

void dom_reply(dom_ctx *c, const char *key, json_t *value)
{
    json_object_set_new(c->reply, key, value ? value : json_null());
}

void dom_prepared_set(dom_ctx *c, const char *key, json_t *value)
{
    json_object_set_new(c->prep, key, value ? value : json_null());
}

guild_status dom_fail(dom_ctx *c, guild_status s, const char *field, const char *fmt, ...)
{
    c->error.status = s;
    snprintf(c->error.field, sizeof c->error.field, "%s", field ? field : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error.message, sizeof c->error.message, fmt, ap);
    va_end(ap);
    json_array_clear(c->events);
    return s;
}

guild_status dom_commit_with_error(dom_ctx *c, guild_status s, const char *fmt, ...)
{
    c->reply_status = s;
    c->error.status = s;
    c->error.field[0] = '\0';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->error.message, sizeof c->error.message, fmt, ap);
    va_end(ap);
    return GUILD_OK;
}

bool dom_actor_can(const dom_actor *a, const char *permission)
{
    if (!a || !a->permissions || !permission)
        return false;
    size_t i;
    json_t *p;
    json_array_foreach(a->permissions, i, p)
    {
        const char *have = json_string_value(p);
        if (!have)
            continue;
        if (strcmp(have, "*") == 0 || strcmp(have, permission) == 0)
            return true;
        size_t n = strlen(have);
        /* "talent:*" grants every "talent:..." */
        if (n >= 2 && have[n - 1] == '*' && have[n - 2] == ':' &&
            strncmp(have, permission, n - 1) == 0)
            return true;
    }
    return false;
}

void dom_stream_name(const char *domain, const dom_aggregate *agg, const char *id, char *out,
                     size_t size)
{
    snprintf(out, size, "%s-%s%s", domain, agg && agg->stream_prefix ? agg->stream_prefix : "", id);
}

const char *dom_password_problem(const char *pw)
{
    size_t chars = 0;
    bool letter = false, other = false;
    for (const unsigned char *p = (const unsigned char *)pw; *p; p++) {
        if ((*p & 0xc0) != 0x80)
            chars++;
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z'))
            letter = true;
        else
            other = true;
    }
    if (chars < 10)
        return "password must have at least 10 characters";
    if (chars > 128)
        return "password must have at most 128 characters";
    if (!letter || !other)
        return "password must mix letters with digits or symbols";
    return NULL;
}

const char *dom_str(const json_t *obj, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(obj, key));
    return s ? s : dflt;
}

int64_t dom_int(const json_t *obj, const char *key, int64_t dflt)
{
    json_t *v = json_object_get(obj, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

bool dom_bool(const json_t *obj, const char *key, bool dflt)
{
    json_t *v = json_object_get(obj, key);
    return json_is_boolean(v) ? json_is_true(v) : dflt;
}

const dom_command *dom_command_find(const dom_domain *d, const char *name)
{
    for (const dom_command *c = d->commands; c && c->name; c++)
        if (strcmp(c->name, name) == 0)
            return c;
    return NULL;
}

uint32_t dom_event_schema(const dom_domain *d, const char *type)
{
    for (const dom_event_doc *e = d->events; e && e->type; e++)
        if (strcmp(e->type, type) == 0)
            return e->schema ? e->schema : 1;
    return 1;
}

/* ---- snapshot codecs ---------------------------------------------------- */

json_t *dom_str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

bool dom_take_str(const json_t *v, char **out)
{
    *out = json_is_string(v) ? guild_xstrdup(json_string_value(v)) : NULL;
    return json_is_string(v) || json_is_null(v);
}

guild_status dom_snapshot_encode(json_t *doc, int format, char **bytes, size_t *len)
{
    if (!doc)
        return GUILD_INTERNAL;
    json_object_set_new(doc, "format", json_integer(format));
    guild_status s = guild_codec_encode(doc, GUILD_FMT_MSGPACK, bytes, len);
    json_decref(doc);
    return s;
}

json_t *dom_snapshot_decode(const void *bytes, size_t len, int format)
{
    json_t *doc = NULL;
    if (guild_codec_decode(bytes, len, GUILD_FMT_MSGPACK, &doc, NULL) != GUILD_OK)
        return NULL;
    const json_t *f = json_object_get(doc, "format");
    if (!json_is_integer(f) || json_integer_value(f) != format) {
        json_decref(doc);
        return NULL;
    }
    return doc;
}
