/*
 * auth.h — verifying access tokens at the service boundary, and, for the
 * identity service, signing them.
 *
 * Every service verifies tokens locally with identity's public keys, which
 * it asks for on `guild.qry.identity.public_keys` (and again when a token
 * names a key it does not know). Revocation is local too: identity's events
 * `session_ended`, `user_deactivated` and `user_reactivated` feed a small
 * in-memory set (bus_auth_observe), from identity's own commits or, in other
 * services, from the GUILD_IDENTITY stream (bus_auth_watch). Access tokens
 * live at most 15 minutes, so the set only needs that much history.
 */
#ifndef GUILD_BUS_AUTH_H
#define GUILD_BUS_AUTH_H

#include "common/status.h"
#include "domain/dom.h"

#include <jansson.h>
#include <nats/nats.h>
#include <stdint.h>

#define BUS_TOKEN_TTL_S 900

typedef struct bus_auth bus_auth;

/* A verified caller: what dom_actor borrows from. */
typedef struct bus_caller {
    json_t *claims; /* owned; NULL when anonymous */
    dom_actor actor;
} bus_caller;

void bus_caller_release(bus_caller *c);

/* nc is borrowed and must outlive the auth. */
guild_status bus_auth_create(natsConnection *nc, bus_auth **out);
void bus_auth_destroy(bus_auth *a);

/* Identity: loads the Ed25519 signing key from <dir>/signing.key (64 raw
 * bytes, mode 0600), creating it if missing. */
guild_status bus_auth_load_signing_key(bus_auth *a, const char *dir, guild_error *err);

/* Identity: signs claims; *token malloc'd. */
guild_status bus_auth_sign(bus_auth *a, const json_t *claims, char **token);

/* The public keys as a JSON Web Key Set {"keys": [...]} (new reference). */
json_t *bus_auth_jwks(bus_auth *a);

/* Verifies an `Authorization: Bearer <JWT>` value and fills *caller.
 * GUILD_UNAUTHENTICATED (missing, malformed, bad signature, expired,
 * revoked) or GUILD_UNAVAILABLE (identity's keys cannot be fetched). */
guild_status bus_auth_verify(bus_auth *a, const char *authorization, int64_t now_s,
                             bus_caller *caller, guild_error *err);

/* Feeds one identity event (type and data) into the revocation set. */
void bus_auth_observe(bus_auth *a, const char *type, const json_t *data, int64_t now_s);

/* Other services: follows identity's events on JetStream from 16 minutes
 * back. Returns GUILD_UNAVAILABLE if the stream is not there yet; the
 * caller may retry later. */
guild_status bus_auth_watch(bus_auth *a, guild_error *err);

/* Calls bus_auth_watch on a thread of its own until it succeeds (or the
 * auth is destroyed). */
void bus_auth_watch_start(bus_auth *a);

#endif
