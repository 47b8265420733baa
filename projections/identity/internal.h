/*
 * internal.h — what the files of the identity read model share: its
 * databases, the shape of its rows and a few helpers. Not for use outside
 * projections/identity/.
 *
 * Files: apply.c (folds identity events into the databases), query.c (the
 * queries and the model row).
 *
 * Databases (keys are bytes without a NUL; values are msgpack unless said):
 *
 *   db       key                       value
 *   users    user id (36 characters)   {user_id, email, display_name, roles [name],
 *                                       active, created, updated, version}
 *   emails   e-mail, ASCII lower-cased user id (raw bytes)
 *   roles    custom role name          {name, permissions [permission]}
 *
 * `users` is in user id order, which is the order list_users pages in (user
 * ids are UUIDv7, so it is also roughly the order of registration).
 * `created` and `updated` are RFC 3339 times of the events that made and
 * last changed the row, `version` the user stream's version after the
 * last event that changed it. The built-in roles "user" and "admin" have no
 * row. No secret of the identity domain (password, refresh, reset or client
 * secret hashes) is ever written here.
 */
#ifndef GUILD_PROJECTIONS_IDENTITY_INTERNAL_H
#define GUILD_PROJECTIONS_IDENTITY_INTERNAL_H

#include "projections/prj.h"

#include <jansson.h>
#include <stdbool.h>

#define IDM_USERS "users"
#define IDM_EMAILS "emails"
#define IDM_ROLES "roles"

/* Folds one identity event into the model (the model's apply). */
guild_status prj_identity__apply(prj_txn *t, const prj_event *ev, guild_error *err);

/* A copy of email with ASCII letters lower-cased (malloc'd, caller frees):
 * the key of the emails database. */
char *prj_identity__email_key(const char *email);

/* True if the string array list holds s. */
bool prj_identity__list_has(const json_t *list, const char *s);

#endif
