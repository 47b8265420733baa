/* status.c — names and HTTP mapping of guild_status, error detail helpers. */
#include "common/status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static const struct {
    const char *code;
    int http;
} status_table[GUILD_STATUS_COUNT] = {
#define GUILD_STATUS_ROW(name, code, http) {code, http},
    GUILD_STATUS_LIST(GUILD_STATUS_ROW)
#undef GUILD_STATUS_ROW
};

const char *guild_status_code(guild_status s)
{
    if ((unsigned)s >= GUILD_STATUS_COUNT)
        return "internal";
    return status_table[s].code;
}

int guild_status_http(guild_status s)
{
    if ((unsigned)s >= GUILD_STATUS_COUNT)
        return 500;
    return status_table[s].http;
}

guild_status guild_status_from_code(const char *code)
{
    for (int i = 0; i < GUILD_STATUS_COUNT; i++)
        if (strcmp(status_table[i].code, code) == 0)
            return (guild_status)i;
    return GUILD_INTERNAL;
}

void guild_error_clear(guild_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
}

static void error_vfill(guild_error *err, guild_status s, int origin, const char *field,
                        const char *fmt, va_list ap)
{
    err->status = s;
    err->origin = origin;
    snprintf(err->field, sizeof err->field, "%s", field ? field : "");
    vsnprintf(err->message, sizeof err->message, fmt, ap);
}

guild_status guild_error_set(guild_error *err, guild_status s, int origin, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        error_vfill(err, s, origin, NULL, fmt, ap);
        va_end(ap);
    }
    return s;
}

guild_status guild_error_field(guild_error *err, guild_status s, const char *field, const char *fmt,
                               ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        error_vfill(err, s, 0, field, fmt, ap);
        va_end(ap);
    }
    return s;
}
