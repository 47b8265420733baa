/*
 * internal.h — what the files of the talent read model share: its
 * databases, their key formats and a few helpers. Not for use outside
 * projections/talent/.
 *
 * Files: apply.c (folds talent events into a profile row and keeps the
 * indexes exact), scan.c (streams of candidate talent ids read from the
 * indexes, in id order), query.c (get_profile, search, match and the model
 * row).
 *
 * Databases (integers big-endian; "0x00" is one zero byte; `lower` is ASCII
 * lower-casing, the way the talent domain compares names; ids are at most
 * TM_ID_MAX bytes):
 *
 *   db           key                                          value
 *   profiles     talent id                                    the profile (msgpack, below)
 *   by_skill     lower(skill) 0x00 level u8 0x00 talent id    empty
 *   by_location  lower(location)[..400 bytes] 0x00 talent id  empty
 *   by_rate      currency(3) 0x00 hourly_rate u64 0x00 id     empty
 *   by_hours     available hours u8 (0..255) talent id        empty
 *   counts       's' lower(skill) 0x00 level u8               u64: entries of by_skill
 *                'l' lower(location)[..400 bytes]                  ... of by_location
 *                'c' currency                                      ... of by_rate
 *                'h' available hours u8                            ... of by_hours
 *
 * The profile row: {talent_id, user_id, headline, bio, location, timezone,
 * skills [{skill, level, years?}], certifications [{name, issuer,
 * issued_on, expires_on?}], currency, hourly_rate (both null before the
 * first rate), pricing_history [{currency, hourly_rate, since}],
 * hours_per_week, reserved_hours, reservations [{reservation_id,
 * hours_per_week}], archived, created, updated, version}; `created`,
 * `updated` and `since` are RFC 3339 times of events, `version` the
 * profile stream's version after the last event applied.
 *
 * Invariant: the index entries of a profile are a function of its row
 * alone (when a batch is written out, prj_talent__settle works out the
 * entries of each row its events changed and writes the difference from
 * those the row had), archived profiles have none, and every count is the
 * number of index entries it names, absent when zero. So every index is
 * exact, whatever the history was, and a rebuild reproduces it byte for byte.
 * Queries still check every candidate against the row: the index narrows,
 * the row decides. Available hours = hours_per_week - reserved_hours,
 * clamped into 0..255 in the key only.
 */
#ifndef GUILD_PROJECTIONS_TALENT_INTERNAL_H
#define GUILD_PROJECTIONS_TALENT_INTERNAL_H

#include "projections/prj.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TM_PROFILES "profiles"
#define TM_BY_SKILL "by_skill"
#define TM_BY_LOCATION "by_location"
#define TM_BY_RATE "by_rate"
#define TM_BY_HOURS "by_hours"
#define TM_COUNTS "counts"

#define TM_ID_MAX 64            /* bytes of a talent id (a UUID has 36) */
#define TM_SKILL_MAX 256        /* bytes of a skill name (64 characters of UTF-8) */
#define TM_LOCATION_KEY_MAX 400 /* bytes of a location kept in keys */
#define TM_KEY_MAX 511          /* LMDB's longest key */
#define TM_LEVEL_MAX 5

#define TM_COUNT_SKILL 's'
#define TM_COUNT_LOCATION 'l'
#define TM_COUNT_CURRENCY 'c'
#define TM_COUNT_HOURS 'h'

/* Folds one talent event into the model (the model's apply). */
guild_status prj_talent__apply(prj_txn *t, const prj_event *ev, guild_error *err);

/* Writes the index entries and counts of a profile row that events have
 * changed since it last settled (tm_row_type's settle). */
guild_status prj_talent__settle(prj_txn *t, const void *key, size_t klen, void *obj,
                                guild_error *err);

/* ASCII case-insensitive comparison, as the talent domain names skills. */
int prj_talent__name_cmp(const char *a, const char *b);

/* Writes lower(skill) 0x00 into out (at least TM_SKILL_MAX + 1 bytes);
 * returns its length, or 0 when the name is longer than TM_SKILL_MAX. */
size_t prj_talent__skill_prefix(const char *skill, uint8_t *out);

/* Writes lower(location)[..TM_LOCATION_KEY_MAX bytes] 0x00 into out (at
 * least TM_LOCATION_KEY_MAX + 1 bytes); returns its length. */
size_t prj_talent__location_prefix(const char *location, uint8_t *out);

/* Available hours as the by_hours key holds them. */
uint8_t prj_talent__hours_byte(int64_t available);

void prj_talent__u64_put(uint8_t out[8], uint64_t v);
uint64_t prj_talent__u64_get(const uint8_t in[8]);

/* Integer member of a row, or dflt when absent or not an integer. */
int64_t prj_talent__int(const json_t *row, const char *key, int64_t dflt);

/* The skill entry of a row's skills named `name` (ignoring case), or NULL. */
json_t *prj_talent__skill_find(const json_t *row, const char *name);

#endif
