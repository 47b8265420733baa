/*
 * scan.h — candidate talent ids read from the talent model's indexes, in
 * ascending id order, for the queries of query.c. Not for use outside
 * projections/talent/.
 *
 * A tm_ids yields the ids above a bound (the search cursor) from one of two
 * kinds of source:
 *   - runs: key ranges whose keys end in the talent id after a fixed prefix
 *     ("go" 0x00 4 0x00 of by_skill, a location of by_location, or all of
 *     profiles), each already in id order. Runs are read in chunks and
 *     merged; an id found in several runs comes once. Reading stops as soon
 *     as the caller stops asking, so a page costs what it shows.
 *   - a sorted list: the ids of a range ordered by something else first (a
 *     rate, the free hours), collected whole and sorted.
 *
 * Everything read borrows the query's read transaction: use a tm_ids only
 * inside the query's run.
 */
#ifndef GUILD_PROJECTIONS_TALENT_SCAN_H
#define GUILD_PROJECTIONS_TALENT_SCAN_H

#include "projections/talent/internal.h"

typedef struct tm_run tm_run;

typedef struct tm_ids {
    prj_read *r;
    char after[TM_ID_MAX + 1]; /* ids above this only */
    tm_run **runs;
    size_t n_runs;
    char (*list)[TM_ID_MAX + 1]; /* the sorted list, when collected */
    size_t n_list, cap_list, at;
    bool collected;
    guild_status status; /* of the first failed read */
} tm_ids;

/* Starts an empty source of the ids above `after` (NULL or "": all). */
void prj_talent__ids_init(tm_ids *s, prj_read *r, const char *after);

/* Adds the run of keys in `db` that start with prefix (plen bytes, at most
 * TM_KEY_MAX - TM_ID_MAX) and end in a talent id. */
void prj_talent__ids_add_run(tm_ids *s, const char *db, const uint8_t *prefix, size_t plen);

/* Collects the ids of by_rate priced in `currency` at most max (has_max),
 * or the ids of by_hours with at least min_hours free. */
guild_status prj_talent__ids_collect_rate(tm_ids *s, const char *currency, bool has_max,
                                          uint64_t max);
guild_status prj_talent__ids_collect_hours(tm_ids *s, uint8_t min_hours);

/* The next id into out; false at the end, or after a failed read (see
 * s->status). */
bool prj_talent__ids_next(tm_ids *s, char out[TM_ID_MAX + 1]);

void prj_talent__ids_release(tm_ids *s);

/* The number of by_rate keys priced in currency at most max, counting no
 * further than cap. */
guild_status prj_talent__rate_count(prj_read *r, const char *currency, uint64_t max, uint64_t cap,
                                    uint64_t *out);

/* The count under key (0 when absent), and the sum of the counts whose
 * keys start with prefix, from start on. */
guild_status prj_talent__count_get(prj_read *r, const uint8_t *key, size_t len, uint64_t *out);
guild_status prj_talent__count_sum(prj_read *r, const uint8_t *prefix, size_t plen,
                                   const uint8_t *start, size_t slen, uint64_t *out);

#endif
