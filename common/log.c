/* log.c — JSON-lines logger. Each line is written with one fwrite so lines
 * from many threads never interleave. */
#include "common/log.h"

#include "common/clock.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char log_service[64] = "guild";
static int log_level = -1;
static _Thread_local char log_correlation[129];
static _Thread_local char log_trace[129];

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void guild_log_set_service(const char *service)
{
    snprintf(log_service, sizeof log_service, "%s", service);
}

void guild_log_set_level(guild_log_level level)
{
    log_level = (int)level;
}

void guild_log_set_context(const char *correlation_id, const char *trace_id)
{
    snprintf(log_correlation, sizeof log_correlation, "%s", correlation_id ? correlation_id : "");
    snprintf(log_trace, sizeof log_trace, "%s", trace_id ? trace_id : "");
}

static int effective_level(void)
{
    if (log_level < 0) {
        const char *env = getenv("GUILD_LOG_LEVEL");
        int lvl = GUILD_LOG_INFO;
        for (int i = 0; env && i < 4; i++)
            if (strcmp(env, level_names[i]) == 0)
                lvl = i;
        log_level = lvl;
    }
    return log_level;
}

/* Appends s to buf as the inside of a JSON string. */
static size_t json_escape(char *buf, size_t at, size_t cap, const char *s)
{
    for (; *s && at + 7 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[at++] = '\\';
            buf[at++] = (char)c;
        } else if (c < 0x20) {
            at += (size_t)snprintf(buf + at, cap - at, "\\u%04x", c);
        } else {
            buf[at++] = (char)c;
        }
    }
    return at;
}

void guild_log(guild_log_level level, const char *fmt, ...)
{
    if ((int)level < effective_level())
        return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);

    char when[40];
    guild_time_format(guild_now_ns(), when, sizeof when);

    char line[2048];
    size_t cap = sizeof line - 4;
    size_t at = (size_t)snprintf(line, cap, "{\"time\":\"%s\",\"level\":\"%s\",\"service\":\"",
                                 when, level_names[level]);
    at = json_escape(line, at, cap, log_service);
    at += (size_t)snprintf(line + at, cap - at, "\",\"message\":\"");
    at = json_escape(line, at, cap, msg);
    if (log_correlation[0]) {
        at += (size_t)snprintf(line + at, cap - at, "\",\"correlation_id\":\"");
        at = json_escape(line, at, cap, log_correlation);
    }
    if (log_trace[0]) {
        at += (size_t)snprintf(line + at, cap - at, "\",\"trace_id\":\"");
        at = json_escape(line, at, cap, log_trace);
    }
    if (at > cap)
        at = cap;
    line[at++] = '"';
    line[at++] = '}';
    line[at++] = '\n';
    fwrite(line, 1, at, stderr);
}
