/*
 * row.h — the talent profile row as a C struct (internal to
 * projections/talent/).
 *
 * apply.c folds events into this struct rather than into JSON: a replay
 * folds millions of events, and the struct is decoded once and encoded once
 * for all the events of a transaction that change it (prj_get_obj). The
 * bytes are the msgpack map internal.h describes, key for key in the order
 * the JSON form of the row has always had, so queries read it as JSON and
 * a model built before the struct existed has the same digest.
 */
#ifndef GUILD_PROJECTIONS_TALENT_ROW_H
#define GUILD_PROJECTIONS_TALENT_ROW_H

#include "projections/prj.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A skill; its name inline when short (most are), so walking a row's
 * skills reads one array. */
#define TM_SKILL_INLINE 23
typedef struct tm_skill {
    int64_t level;
    int64_t years;   /* -1: none */
    char *long_name; /* a name over TM_SKILL_INLINE bytes, else NULL */
    uint16_t len;    /* of the name */
    char name[TM_SKILL_INLINE + 1];
} tm_skill;

static inline const char *tm_skill_name(const tm_skill *s)
{
    return s->long_name ? s->long_name : s->name;
}

/* Sets the name of s (n bytes of name, copied; s has none yet or its old
 * one is freed). */
void tm_skill_set_name(tm_skill *s, const char *name, size_t n);
void tm_skill_clear(tm_skill *s);

typedef struct tm_cert {
    char *name, *issuer, *issued_on;
    char *expires_on; /* NULL: none */
} tm_cert;

/* A pricing_history entry, its texts inline: a history only grows, and the
 * row is encoded again at every commit that changes it, so its entries are
 * one array to walk rather than two allocations each. */
#define TM_CURRENCY_LEN 3 /* ISO 4217 */
#define TM_TIME_MAX 47    /* an RFC 3339 time as guild_time_format writes it */
typedef struct tm_price {
    int64_t hourly_rate;
    uint8_t since_len;
    char currency[TM_CURRENCY_LEN + 1];
    char since[TM_TIME_MAX + 1];
} tm_price;

typedef struct tm_resv {
    char *id;
    int64_t hours;
} tm_resv;

/* A growable array of n items of `size` bytes. */
typedef struct tm_list {
    void *v;
    size_t n, cap;
} tm_list;

typedef struct tm_row {
    char *talent_id, *user_id, *headline, *bio, *location, *timezone;
    tm_list skills;      /* tm_skill */
    tm_list certs;       /* tm_cert */
    char *currency;      /* NULL: null (no rate yet) */
    int64_t hourly_rate; /* -1: null */
    tm_list prices;      /* tm_price: pricing_history */
    int64_t hours_per_week, reserved_hours;
    tm_list resv; /* tm_resv */
    bool archived;
    char *created; /* NULL: null */
    char *updated; /* as read with the row; NULL: absent, or stamped */
    /* When stamped: the time of the last event folded in (unix ns), which
     * is the row's `updated` once encoded (formatted then, not per event). */
    bool stamped;
    int64_t stamped_at;
    int64_t version; /* -1: absent */
    /* apply.c's index entries of the row as last written (one malloc'd
     * block), or NULL until it works them out, and the families of entries
     * events have changed since (IX_*: the row settles them when the batch
     * is written out): not part of the value. */
    void *ix_memo;
    unsigned ix_stale;
} tm_row;

extern const prj_objtype tm_row_type;

/* A new row for a profile: empty texts and lists, no rate, nothing
 * created yet. */
tm_row *tm_row_new(const char *talent_id);
void tm_row_free(tm_row *r);

/* Replaces *slot with a copy of s (NULL for none). */
void tm_set_str(char **slot, const char *s);

/* Appends a zeroed item of `size` bytes to l and returns it. */
void *tm_list_push(tm_list *l, size_t size);

/* Removes item i of l (items of `size` bytes), keeping the order. */
void tm_list_remove(tm_list *l, size_t size, size_t i);

#define TM_AT(list, type, i) (&((type *)(list).v)[i])

/* A field of an event's data, read from its msgpack in place (the data
 * was checked by guild_codec_check_msgpack: a map, keys unique, strings
 * UTF-8 without NUL). */
typedef enum { TM_ABSENT, TM_NIL, TM_STR, TM_INT, TM_OTHER } tm_kind;
typedef struct tm_field {
    tm_kind kind;
    const char *s; /* TM_STR: n bytes, not NUL-terminated */
    size_t n;
    int64_t i; /* TM_INT */
} tm_field;

void tm_data_field(const void *data, size_t len, const char *key, tm_field *out);

#endif
