/*
 * identity.h — the identity domain: users, e-mail claims, roles, service
 * clients and sessions, and what the command runtime needs to know of them.
 *
 * Streams (dom_aggregate.stream_prefix after "identity-"):
 *
 *   aggregate  stream                        holds
 *   user       identity-<user id>            profile, password hash, roles,
 *                                            sessions, lockout, reset tokens
 *   email      identity-email-<email key>    which user holds an e-mail
 *   role       identity-role-<name>          a custom role's permissions
 *   client     identity-client-<client id>   a service client's secret hash
 *   system     identity-system               whether an administrator was
 *                                            bootstrapped
 *
 * The roles "user" (no permission beyond being authenticated) and "admin"
 * (permission "*") are built in and have no stream.
 *
 * Secrets never reach an event, a reply's error or a log: passwords are
 * stored as argon2id strings, refresh tokens, reset tokens and client
 * secrets (32 random bytes, base64url) as BLAKE2b-256 hex digests.
 */
#ifndef GUILD_DOMAIN_IDENTITY_IDENTITY_H
#define GUILD_DOMAIN_IDENTITY_IDENTITY_H

#include "domain/dom.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#define IDENTITY_DOMAIN "identity"

/* Lifetimes. */
#define IDENTITY_ACCESS_TTL_S 900                                 /* access tokens */
#define IDENTITY_SESSION_TTL_NS (30LL * 24 * 3600 * 1000000000LL) /* refresh sessions */
#define IDENTITY_RESET_TTL_NS (30LL * 60 * 1000000000LL)          /* reset tokens */
#define IDENTITY_LOCK_NS (15LL * 60 * 1000000000LL)               /* lockout */
#define IDENTITY_MAX_FAILURES 5  /* consecutive wrong passwords before a lockout */
#define IDENTITY_MAX_SESSIONS 32 /* a new login beyond this ends the oldest session */

/* The permission every administrative command needs. */
#define IDENTITY_PERM_ADMIN "identity:admin"

extern const dom_aggregate identity_user;
extern const dom_aggregate identity_email;
extern const dom_aggregate identity_role;
extern const dom_aggregate identity_client;
extern const dom_aggregate identity_system;

/* The key of an e-mail's claim stream: BLAKE2b-128 of the e-mail with ASCII
 * letters lower-cased, as 32 lower-case hex characters and a NUL. */
void identity_email_key(const char *email, char out[33]);

/*
 * Accessors on a user state (made by identity_user.create and evolved by
 * the runtime). All take `user` borrowed and accept NULL (false / 0).
 */

/* True once the user registered. */
bool identity_user_exists(const void *user);

/* True while the user is deactivated: no login, no refresh. */
bool identity_user_deactivated(const void *user);

/* True if session_id was started for this user and has not ended (logout,
 * rotation reuse, password change or reset, deactivation). A session that
 * ran past its expiry stays "active" until a later event of the stream
 * drops it; identity_session_expires_at tells when it lapses. */
bool identity_session_active(const void *user, const char *session_id);

/* The expiry (Unix ns) of an active session, 0 if it is not active. */
int64_t identity_session_expires_at(const void *user, const char *session_id);

/* The user's role names (borrowed array of strings, valid until the state
 * is next evolved or destroyed); NULL if the user does not exist. */
const json_t *identity_user_roles(const void *user);

/*
 * The effective permissions of a set of roles: the union, without
 * duplicates, of "*" for "admin", nothing for "user", and each custom
 * role's permissions loaded through env (a role without a stream adds
 * nothing). *out receives a new array. Returns GUILD_OK, or what env->load
 * returned (*out untouched).
 */
guild_status identity_permissions(const dom_env *env, const json_t *roles, json_t **out);

#endif
