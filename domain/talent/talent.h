/*
 * talent.h — the talent domain's read API: its aggregates, its event type
 * names and read-only accessors to a profile's state, for the command
 * runtime and for read models that rebuild profiles with the same evolve.
 *
 * A profile lives on stream talent-<talent_id>. Each user has at most one:
 * create_profile also appends profile_claimed to talent-user-<user_id>, the
 * claim aggregate, and refuses when that stream exists.
 *
 * Skills and certifications are named case-insensitively (ASCII): "Go" and
 * "go" are the same skill, and the first spelling is kept.
 *
 * Ownership: a state is created and destroyed through the aggregate's
 * create/destroy. Every pointer an accessor returns is borrowed from the
 * state and lives until the next evolve or destroy of that state.
 */
#ifndef GUILD_DOMAIN_TALENT_TALENT_H
#define GUILD_DOMAIN_TALENT_TALENT_H

#include "domain/dom.h"

#include <stddef.h>
#include <stdint.h>

#define TALENT_DOMAIN "talent"
/* Lets an actor act on any profile, not only on its own. */
#define TALENT_PERM_ADMIN "talent:admin"

/* Event types (their fields are in dom_talent.events). */
#define TALENT_EV_PROFILE_CREATED "profile_created"
#define TALENT_EV_PROFILE_CLAIMED "profile_claimed" /* on talent-user-<user_id> */
#define TALENT_EV_PROFILE_UPDATED "profile_updated"
#define TALENT_EV_SKILL_ADDED "skill_added"
#define TALENT_EV_SKILL_UPDATED "skill_updated"
#define TALENT_EV_SKILL_REMOVED "skill_removed"
#define TALENT_EV_CERTIFICATION_ADDED "certification_added"
#define TALENT_EV_CERTIFICATION_REMOVED "certification_removed"
#define TALENT_EV_RATE_SET "rate_set"
#define TALENT_EV_AVAILABILITY_SET "availability_set"
#define TALENT_EV_CAPACITY_RESERVED "capacity_reserved"
#define TALENT_EV_CAPACITY_RELEASED "capacity_released"
#define TALENT_EV_PROFILE_ARCHIVED "profile_archived"

/* The profile (stream prefix "") and the per-user claim (prefix "user-"). */
extern const dom_aggregate talent_profile_agg;
extern const dom_aggregate talent_user_agg;

/* The state of talent_profile_agg; opaque. */
typedef struct talent_profile talent_profile;

typedef struct talent_skill {
    char *name;
    int level; /* 1 to 5 */
    int years; /* of experience; -1 when not given */
} talent_skill;

/* True once profile_created has been applied (archived profiles too). */
bool talent_profile_exists(const talent_profile *p);
bool talent_profile_archived(const talent_profile *p);

/* The owner's user id; "" before the profile exists. */
const char *talent_profile_user_id(const talent_profile *p);

/* The skills in the order they were added; i < talent_profile_skill_count. */
size_t talent_profile_skill_count(const talent_profile *p);
const talent_skill *talent_profile_skill_at(const talent_profile *p, size_t i);

/* The skill of that name, or NULL. */
const talent_skill *talent_profile_skill_find(const talent_profile *p, const char *name);

/* The current hourly rate in minor units of *currency; false (outputs
 * untouched) when no rate was ever set. */
bool talent_profile_rate(const talent_profile *p, const char **currency, int64_t *hourly_rate);

/* Hours per week offered, and the sum of the hours reserved out of them. */
int talent_profile_hours(const talent_profile *p);
int talent_profile_reserved(const talent_profile *p);

/* The whole profile as get_profile answers it (a new reference):
 * {talent_id, user_id, headline, bio, location, timezone, archived,
 *  skills [{skill, level, years?}], certifications [{name, issuer,
 *  issued_on, expires_on?}], rate {currency, hourly_rate} | null,
 *  pricing_history [{currency, hourly_rate, since}], hours_per_week,
 *  reserved_hours, reservations [{reservation_id, hours_per_week}],
 *  created_at, updated_at}; times are Unix nanoseconds. */
json_t *talent_profile_to_json(const talent_profile *p);

/* The profile a claim state (of talent_user_agg) points to, or NULL. */
const char *talent_claim_talent_id(const void *claim_state);

#endif
