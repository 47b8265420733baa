/*
 * status.h — the one status type of guild.
 *
 * Every fallible function returns a guild_status: GUILD_OK (0) or a named
 * failure. The first group maps one-to-one onto the error codes of
 * CONTRACT.md (with the HTTP status the gateway answers); the second group is
 * internal and surfaces on the wire as `internal` or `unavailable`.
 *
 * Codes from LMDB, NATS or the OS are translated at the module boundary; the
 * original goes into a guild_error's `origin` and message.
 */
#ifndef GUILD_COMMON_STATUS_H
#define GUILD_COMMON_STATUS_H

#include <stddef.h>

/* X(name, wire code, HTTP status) */
#define GUILD_STATUS_LIST(X)                                                                       \
    X(OK, "ok", 200)                                                                               \
    X(INVALID_REQUEST, "invalid_request", 400)                                                     \
    X(VALIDATION_FAILED, "validation_failed", 422)                                                 \
    X(UNAUTHENTICATED, "unauthenticated", 401)                                                     \
    X(FORBIDDEN, "forbidden", 403)                                                                 \
    X(NOT_FOUND, "not_found", 404)                                                                 \
    X(CONFLICT, "conflict", 409)                                                                   \
    X(RULE_VIOLATION, "rule_violation", 422)                                                       \
    X(RATE_LIMITED, "rate_limited", 429)                                                           \
    X(UNAVAILABLE, "unavailable", 503)                                                             \
    X(INTERNAL, "internal", 500)                                                                   \
    X(IO, "io_error", 500)                                                                         \
    X(CORRUPT, "corrupt", 500)                                                                     \
    X(CLOSED, "closed", 503)                                                                       \
    X(TIMEOUT, "timeout", 503)

typedef enum {
#define GUILD_STATUS_ENUM(name, code, http) GUILD_##name,
    GUILD_STATUS_LIST(GUILD_STATUS_ENUM)
#undef GUILD_STATUS_ENUM
        GUILD_STATUS_COUNT
} guild_status;

/* Error detail: which status, the original code of the layer below (LMDB,
 * NATS, errno; 0 if none), the field concerned (validation), and a message
 * meant for a person. Never holds a secret. */
typedef struct guild_error {
    guild_status status;
    int origin;
    char field[64];
    char message[256];
} guild_error;

/* The wire code ("conflict", ...) of a status; a static string. */
const char *guild_status_code(guild_status s);

/* The HTTP status the gateway answers for a status. */
int guild_status_http(guild_status s);

/* Parses a wire code back into a status; GUILD_INTERNAL if unknown. */
guild_status guild_status_from_code(const char *code);

/* Fills *err (when not NULL) and returns `s`, so a failure path can read
 * `return guild_error_set(err, GUILD_CONFLICT, 0, "stream %s is at %llu", ...)`. */
guild_status guild_error_set(guild_error *err, guild_status s, int origin, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Same, naming the field a validation failure concerns. */
guild_status guild_error_field(guild_error *err, guild_status s, const char *field, const char *fmt,
                               ...) __attribute__((format(printf, 4, 5)));

/* Clears *err to GUILD_OK with empty texts. */
void guild_error_clear(guild_error *err);

#endif
