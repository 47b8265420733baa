/*
 * dom.h — the domain kernel: how a domain describes its commands, events and
 * aggregates, and the pure functions the command runtime calls.
 *
 * A domain is data plus pure functions. Its commands are rows of a table
 * (name, fields with types and limits, the permission needed, public or
 * not); one generic validator checks a request against its row. Its
 * aggregates evolve from events; `decide(state, command)` returns events or
 * a refusal. Nothing here does I/O, reads a clock or draws randomness: the
 * runtime passes time, randomness (through `prepare`) and look-ups (through
 * dom_env) in, so every rule can be tested with no broker and no disk.
 *
 * Values are jansson json_t, whatever the wire encoding was.
 *
 * The life of a command in the runtime (bus/runtime.c):
 *   1. dom_validate(cmd, body)                       caller's thread
 *   2. authorize: cmd->is_public, or the actor holds cmd->permission
 *   3. target: the aggregate id from cmd->id_field, or cmd->resolve(), or a
 *      fresh UUIDv7 when cmd->creates
 *   4. cmd->prepare(state, body, ctx)  — slow or random work (argon2id,
 *      token secrets), on a worker thread, against a recent state
 *   5. cmd->decide(state, body, ctx)   — on the store's writer thread against
 *      the current state; emits events, sets reply data
 *   6. after commit: the reply
 */
#ifndef GUILD_DOMAIN_DOM_H
#define GUILD_DOMAIN_DOM_H

#include "common/status.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

/* ---- schema tables -------------------------------------------------------- */

typedef enum {
    DOM_STRING,      /* UTF-8 string; min/max = length in characters */
    DOM_TEXT,        /* like DOM_STRING, may hold new lines */
    DOM_INT,         /* integer; min/max = value */
    DOM_BOOL,        /* true or false */
    DOM_UUID,        /* canonical lower-case UUID */
    DOM_EMAIL,       /* an e-mail address, at most 254 characters */
    DOM_PASSWORD,    /* string checked against the password policy; never echoed */
    DOM_DATE,        /* RFC 3339 date (2026-11-25) or date-time */
    DOM_CURRENCY,    /* ISO 4217 code (EUR, USD, ...) */
    DOM_ENUM,        /* one of `values` */
    DOM_NAME,        /* lower snake_case identifier [a-z][a-z0-9_:.*-]*, min/max = length */
    DOM_STRING_LIST, /* array of strings; min/max = count; item_max = item length */
    DOM_NAME_LIST,   /* array of DOM_NAME */
    DOM_OBJECT_LIST, /* array of objects described by `items`; min/max = count */
    DOM_ANY,         /* any JSON value (kept as given) */
} dom_type;

typedef struct dom_field {
    const char *name;
    dom_type type;
    bool required;
    int64_t min, max;              /* see dom_type; both 0 = no limit */
    int64_t item_max;              /* DOM_*_LIST: longest item; 0 = 200 */
    const char *const *values;     /* DOM_ENUM: NULL-terminated */
    const struct dom_field *items; /* DOM_OBJECT_LIST: item fields, {NULL}-terminated */
    const char *doc;               /* one line for docs/api.md */
} dom_field;

/* Who sends a command: from a verified token, or anonymous. */
typedef struct dom_actor {
    const char *user_id;       /* "" when anonymous */
    const char *session_id;    /* "" when none */
    bool service;              /* a client-credentials token */
    const json_t *permissions; /* array of strings (borrowed); may be NULL */
} dom_actor;

/* True if the actor holds `permission`: exactly, through "*", or through
 * "<prefix>:*" (talent:* grants talent:admin). */
bool dom_actor_can(const dom_actor *a, const char *permission);

/* ---- aggregates ----------------------------------------------------------- */

/* Provenance of an event handed to evolve. */
typedef struct dom_event_meta {
    const char *id;
    const char *actor;
    uint64_t version;
    int64_t time; /* Unix ns */
} dom_event_meta;

typedef struct dom_aggregate {
    const char *name;          /* "profile" */
    const char *stream_prefix; /* stream = "<domain>-<prefix><id>"; "" for the main aggregate */
    void *(*create)(void);     /* an empty state (owned by the runtime) */
    void (*destroy)(void *state);
    /* Applies one event; an unknown type is ignored (GUILD_OK), a malformed
     * one is GUILD_CORRUPT. */
    guild_status (*evolve)(void *state, const char *type, const json_t *data,
                           const dom_event_meta *meta);
    /* True once the aggregate exists (not archived/deleted is the domain's
     * business). Optional: NULL means "version > 0". */
    bool (*exists)(const void *state);
    /* Optional, both or neither: the state as bytes for a snapshot
     * (malloc'd into *bytes), and a state from such bytes (NULL when they
     * do not make one: the state is then loaded from the events). restore
     * must give back exactly the state that was snapshotted. */
    guild_status (*snapshot)(const void *state, char **bytes, size_t *len);
    void *(*restore)(const void *bytes, size_t len);
} dom_aggregate;

/* ---- the decide context --------------------------------------------------- */

/* Look-ups the runtime offers to resolve/prepare/decide. On the writer
 * thread they see the transaction being written. */
typedef struct dom_env {
    void *self;
    /* Version of any stream, 0 if absent. */
    uint64_t (*stream_version)(void *self, const char *stream);
    /* Loads the state of `agg` from `stream` into a new state (destroy it
     * with agg->destroy); *version = 0 when the stream does not exist. */
    guild_status (*load)(void *self, const dom_aggregate *agg, const char *stream, void **state,
                         uint64_t *version);
    /* Signs claims as an access token (identity only); *token malloc'd. */
    guild_status (*sign_token)(void *self, const json_t *claims, char **token);
} dom_env;

typedef struct dom_ctx {
    /* inputs */
    const char *domain;
    const dom_actor *actor;
    int64_t now;              /* Unix ns */
    const char *aggregate_id; /* the target */
    const char *stream;       /* its stream */
    uint64_t version;         /* its version now (0 = does not exist) */
    const json_t *prepared;   /* what prepare produced, or NULL */
    const dom_env *env;
    bool dev_mode; /* development: secrets meant for e-mail may be shown in replies */

    /* outputs, through the functions below */
    json_t *events;            /* [{stream?, type, data}] */
    json_t *reply;             /* object: the reply's data */
    json_t *prep;              /* prepare's output */
    guild_status reply_status; /* an error reply with committed events (failed login) */
    guild_error error;
} dom_ctx;

/* Sets up a context (events/reply empty); dom_ctx_release frees outputs. */
void dom_ctx_init(dom_ctx *c);
void dom_ctx_release(dom_ctx *c);

/* Emits an event on the target's stream; `data` is stolen. */
void dom_emit(dom_ctx *c, const char *type, json_t *data);

/* Emits an event on another stream of the domain, in the same atomic append. */
void dom_emit_to(dom_ctx *c, const char *stream, const char *type, json_t *data);

/* Sets reply data key (value stolen). */
void dom_reply(dom_ctx *c, const char *key, json_t *value);

/* Sets a prepare output key (value stolen). */
void dom_prepared_set(dom_ctx *c, const char *key, json_t *value);

/* Refuses the command: nothing is written. Returns s. */
guild_status dom_fail(dom_ctx *c, guild_status s, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Commits the emitted events but answers with an error (a failed login is
 * recorded for lockout and still refused). Returns GUILD_OK for decide to
 * return. */
guild_status dom_commit_with_error(dom_ctx *c, guild_status s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- commands and domains ------------------------------------------------- */

typedef guild_status (*dom_decide_fn)(const void *state, const json_t *cmd, dom_ctx *ctx);

typedef struct dom_command {
    const char *name;
    const char *summary;
    const dom_field *fields;        /* {NULL}-terminated */
    const dom_aggregate *aggregate; /* the aggregate it acts on */
    const char *permission;         /* needed permission; NULL = any authenticated actor */
    bool is_public;                 /* no token needed */
    const char *id_field;           /* body field naming the aggregate id */
    bool creates;                   /* no id field: a new aggregate with a fresh id */
    bool secret_reply;              /* reply data holds secrets: not kept for idempotent repeats */
    bool opaque_reply;              /* reply only {ok, data}: stream, version and events would tell
                                       what the caller must not learn (whether an e-mail exists) */
    /* Optional: finds the aggregate id (login finds the user by e-mail). */
    guild_status (*resolve)(const json_t *cmd, dom_ctx *ctx, char *id_out, size_t id_size);
    /* Optional: slow or random work before decide (see above). */
    dom_decide_fn prepare;
    dom_decide_fn decide;
} dom_command;

typedef struct dom_event_doc {
    const char *type;
    uint32_t schema;
    const char *summary;
    const dom_field *fields; /* {NULL}-terminated; documentation only */
} dom_event_doc;

typedef struct dom_query_doc {
    const char *name;
    const char *summary;
    const dom_field *fields;
    const char *permission;
} dom_query_doc;

typedef struct dom_domain {
    const char *name;
    const dom_command *commands; /* {NULL}-terminated */
    const dom_event_doc *events; /* {NULL}-terminated */
    const dom_query_doc *queries;
} dom_domain;

/* The domains guild knows (domain/registry.c); NULL if unknown. */
const dom_domain *dom_domain_find(const char *name);
const dom_domain *const *dom_domains(void); /* NULL-terminated */

const dom_command *dom_command_find(const dom_domain *d, const char *name);

/* Schema version of an event type (1 if not listed). */
uint32_t dom_event_schema(const dom_domain *d, const char *type);

/* Checks `body` against the command's fields: a map, every required field
 * present, no unknown field, each of the right type and within limits.
 * GUILD_VALIDATION_FAILED (err->field names the field) or GUILD_INVALID_REQUEST
 * (not a map). */
guild_status dom_validate(const dom_field *fields, const json_t *body, guild_error *err);

/* Stream of an aggregate: "<domain>-<prefix><id>" into out (size >= 256). */
void dom_stream_name(const char *domain, const dom_aggregate *agg, const char *id, char *out,
                     size_t size);

/* The password policy: 10 to 128 characters, not all of one class
 * (needs letters and a digit or symbol). NULL if fine, else why not. */
const char *dom_password_problem(const char *password);

/* Field helpers for decide/evolve: value or default. */
const char *dom_str(const json_t *obj, const char *key, const char *dflt);
int64_t dom_int(const json_t *obj, const char *key, int64_t dflt);
bool dom_bool(const json_t *obj, const char *key, bool dflt);

/* ---- snapshot codecs ------------------------------------------------------
 * What an aggregate's snapshot/restore share: the state as a JSON object of
 * its fields, with "format", kept as msgpack. */

/* A string, or JSON null for NULL (new reference). */
json_t *dom_str_or_null(const char *s);

/* A copy of a string value into *out (NULL for JSON null); false, with
 * *out NULL, for anything else. */
bool dom_take_str(const json_t *v, char **out);

/* doc (stolen; NULL is an error) with "format": format, as msgpack bytes
 * (*bytes malloc'd). */
guild_status dom_snapshot_encode(json_t *doc, int format, char **bytes, size_t *len);

/* The object of a snapshot of `format` (new reference), or NULL when the
 * bytes are not one. */
json_t *dom_snapshot_decode(const void *bytes, size_t len, int format);

#endif
