/*
 * log.h — structured logs: one JSON object a line on stderr with time,
 * level, service, message and, when set for the calling thread, correlation
 * and trace ids. Never pass a password or token to these functions.
 */
#ifndef GUILD_COMMON_LOG_H
#define GUILD_COMMON_LOG_H

typedef enum { GUILD_LOG_DEBUG, GUILD_LOG_INFO, GUILD_LOG_WARN, GUILD_LOG_ERROR } guild_log_level;

/* Names the service in every line from this process (copied). */
void guild_log_set_service(const char *service);

/* Lines below `level` are dropped. Default: INFO, or GUILD_LOG_LEVEL
 * (debug|info|warn|error) from the environment. */
void guild_log_set_level(guild_log_level level);

/* Correlation and trace ids of the calling thread (copied; NULL clears). */
void guild_log_set_context(const char *correlation_id, const char *trace_id);

void guild_log(guild_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define guild_debug(...) guild_log(GUILD_LOG_DEBUG, __VA_ARGS__)
#define guild_info(...) guild_log(GUILD_LOG_INFO, __VA_ARGS__)
#define guild_warn(...) guild_log(GUILD_LOG_WARN, __VA_ARGS__)
#define guild_error(...) guild_log(GUILD_LOG_ERROR, __VA_ARGS__)

#endif
