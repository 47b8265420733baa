/*
 * identity.c — the identity domain's tables: its commands (fields, the
 * permission each needs, which aggregate it acts on), the events it writes
 * and the queries its read model answers. The rules live in user.c,
 * session.c and access.c; the aggregates in state.c.
 *
 * Sections: command fields; commands; event fields; events; queries; the
 * domain row.
 */
#include "domain/identity/internal.h"

/* ---- command fields ------------------------------------------------------- */

#define F_EMAIL(d)                                                                                 \
    {                                                                                              \
        .name = "email", .type = DOM_EMAIL, .required = true, .doc = d                             \
    }
#define F_USER_ID                                                                                  \
    {                                                                                              \
        .name = "user_id", .type = DOM_UUID, .required = true, .doc = "the user"                   \
    }
#define F_ROLE(d)                                                                                  \
    {                                                                                              \
        .name = "role", .type = DOM_NAME, .required = true, .min = 1, .max = 64, .doc = d          \
    }
#define F_PERMISSION                                                                               \
    {                                                                                              \
        .name = "permission", .type = DOM_NAME, .required = true, .min = 1, .max = 100,            \
        .doc = "a permission such as talent:admin, or talent:* for all of a domain's"              \
    }
#define F_PERMISSIONS(d)                                                                           \
    {                                                                                              \
        .name = "permissions", .type = DOM_NAME_LIST, .required = true, .item_max = 100, .doc = d  \
    }
#define F_CLIENT_ID                                                                                \
    {                                                                                              \
        .name = "client_id", .type = DOM_NAME, .required = true, .min = 3, .max = 64,              \
        .doc = "the service client's name"                                                         \
    }
#define F_END                                                                                      \
    {                                                                                              \
        0                                                                                          \
    }

static const dom_field register_fields[] = {
    F_EMAIL("e-mail address; one account per address, compared without regard to case"),
    {.name = "password",
     .type = DOM_PASSWORD,
     .required = true,
     .doc = "10 to 128 characters, letters mixed with digits or symbols"},
    {.name = "display_name",
     .type = DOM_STRING,
     .required = true,
     .min = 1,
     .max = 100,
     .doc = "the name other people see"},
    F_END,
};

static const dom_field login_fields[] = {
    F_EMAIL("the account's e-mail address"),
    {.name = "password", .type = DOM_STRING, .required = true, .min = 1, .max = 128},
    F_END,
};

static const dom_field refresh_fields[] = {
    {.name = "refresh_token",
     .type = DOM_STRING,
     .required = true,
     .min = 1,
     .max = 200,
     .doc = "the refresh token of the last login or refresh"},
    F_END,
};

static const dom_field no_fields[] = {F_END};

static const dom_field change_password_fields[] = {
    {.name = "current_password", .type = DOM_STRING, .required = true, .min = 1, .max = 128},
    {.name = "new_password",
     .type = DOM_PASSWORD,
     .required = true,
     .doc = "10 to 128 characters, letters mixed with digits or symbols"},
    F_END,
};

static const dom_field update_user_fields[] = {
    F_USER_ID,
    {.name = "display_name", .type = DOM_STRING, .min = 1, .max = 100, .doc = "a new name"},
    {.name = "email", .type = DOM_EMAIL, .doc = "a new e-mail address; must be free"},
    F_END,
};

static const dom_field reset_request_fields[] = {
    F_EMAIL("the account's e-mail address"),
    F_END,
};

static const dom_field reset_fields[] = {
    {.name = "token",
     .type = DOM_STRING,
     .required = true,
     .min = 1,
     .max = 200,
     .doc = "the token mailed by request_password_reset"},
    {.name = "new_password",
     .type = DOM_PASSWORD,
     .required = true,
     .doc = "10 to 128 characters, letters mixed with digits or symbols"},
    F_END,
};

static const dom_field register_client_fields[] = {
    F_CLIENT_ID,
    F_PERMISSIONS("the permissions of the client's tokens"),
    F_END,
};

static const dom_field service_token_fields[] = {
    F_CLIENT_ID,
    {.name = "client_secret",
     .type = DOM_STRING,
     .required = true,
     .min = 1,
     .max = 200,
     .doc = "the secret register_client answered"},
    F_END,
};

static const dom_field client_fields[] = {F_CLIENT_ID, F_END};

static const dom_field define_role_fields[] = {
    {.name = "name",
     .type = DOM_NAME,
     .required = true,
     .min = 1,
     .max = 64,
     .doc = "the role's name; user and admin are built in"},
    F_PERMISSIONS("the role's permissions; replaces those it had"),
    F_END,
};

static const dom_field role_permission_fields[] = {
    F_ROLE("a custom role"),
    F_PERMISSION,
    F_END,
};

static const dom_field user_role_fields[] = {
    F_USER_ID,
    F_ROLE("a built-in or defined role"),
    F_END,
};

static const dom_field deactivate_fields[] = {
    F_USER_ID,
    {.name = "reason", .type = DOM_STRING, .max = 200, .doc = "why, for the audit trail"},
    F_END,
};

static const dom_field user_fields[] = {F_USER_ID, F_END};

/* ---- commands ------------------------------------------------------------- */

static const dom_command commands[] = {
    {.name = "register_user",
     .summary = "creates an account with the role user",
     .fields = register_fields,
     .aggregate = &identity_user,
     .is_public = true,
     .creates = true,
     .prepare = identity__prepare_register,
     .decide = identity__register_user},
    {.name = "bootstrap_admin",
     .summary = "creates the first administrator; refused once one exists",
     .fields = register_fields,
     .aggregate = &identity_user,
     .is_public = true,
     .creates = true,
     .prepare = identity__prepare_bootstrap,
     .decide = identity__bootstrap_admin},
    {.name = "login",
     .summary = "starts a session: an access token (15 min) and a refresh token (30 days)",
     .fields = login_fields,
     .aggregate = &identity_user,
     .is_public = true,
     .secret_reply = true,
     .resolve = identity__resolve_login,
     .prepare = identity__prepare_login,
     .decide = identity__login},
    {.name = "refresh_session",
     .summary = "trades a refresh token for new tokens; a reused one ends the session",
     .fields = refresh_fields,
     .aggregate = &identity_user,
     .is_public = true,
     .secret_reply = true,
     .resolve = identity__resolve_refresh,
     .prepare = identity__prepare_refresh,
     .decide = identity__refresh_session},
    {.name = "logout",
     .summary = "ends the session of the caller's token",
     .fields = no_fields,
     .aggregate = &identity_user,
     .resolve = identity__resolve_actor,
     .decide = identity__logout},
    {.name = "change_password",
     .summary = "changes the caller's password and ends the caller's other sessions",
     .fields = change_password_fields,
     .aggregate = &identity_user,
     .resolve = identity__resolve_actor,
     .prepare = identity__prepare_change_password,
     .decide = identity__change_password},
    {.name = "update_user",
     .summary = "changes a user's name or e-mail; the user or identity:admin",
     .fields = update_user_fields,
     .aggregate = &identity_user,
     .id_field = "user_id",
     .decide = identity__update_user},
    {.name = "request_password_reset",
     .summary = "sends a reset token (valid 30 min) to the address; answers ok either way",
     .fields = reset_request_fields,
     .aggregate = &identity_email,
     .is_public = true,
     .secret_reply = true,
     .opaque_reply = true,
     .resolve = identity__resolve_reset_request,
     .prepare = identity__prepare_reset_request,
     .decide = identity__request_password_reset},
    {.name = "reset_password",
     .summary = "sets a new password with a reset token and ends every session",
     .fields = reset_fields,
     .aggregate = &identity_user,
     .is_public = true,
     .resolve = identity__resolve_reset,
     .prepare = identity__prepare_reset,
     .decide = identity__reset_password},
    {.name = "register_client",
     .summary = "registers a service client; the reply holds its secret, shown once",
     .fields = register_client_fields,
     .aggregate = &identity_client,
     .permission = IDENTITY_PERM_ADMIN,
     .id_field = "client_id",
     .secret_reply = true,
     .prepare = identity__prepare_register_client,
     .decide = identity__register_client},
    {.name = "issue_service_token",
     .summary = "trades client credentials for a service access token (15 min)",
     .fields = service_token_fields,
     .aggregate = &identity_client,
     .is_public = true,
     .id_field = "client_id",
     .secret_reply = true,
     .prepare = identity__prepare_service_token,
     .decide = identity__issue_service_token},
    {.name = "revoke_client",
     .summary = "stops a service client from getting tokens",
     .fields = client_fields,
     .aggregate = &identity_client,
     .permission = IDENTITY_PERM_ADMIN,
     .id_field = "client_id",
     .decide = identity__revoke_client},
    {.name = "define_role",
     .summary = "defines a custom role, or replaces its permissions",
     .fields = define_role_fields,
     .aggregate = &identity_role,
     .permission = IDENTITY_PERM_ADMIN,
     .id_field = "name",
     .decide = identity__define_role},
    {.name = "grant_permission",
     .summary = "adds a permission to a custom role",
     .fields = role_permission_fields,
     .aggregate = &identity_role,
     .permission = IDENTITY_PERM_ADMIN,
     .id_field = "role",
     .decide = identity__grant_permission},
    {.name = "revoke_permission",
     .summary = "removes a permission from a custom role",
     .fields = role_permission_fields,
     .aggregate = &identity_role,
     .permission = IDENTITY_PERM_ADMIN,
     .id_field = "role",
     .decide = identity__revoke_permission},
    {.name = "assign_role",
     .summary = "gives a user a role",
     .fields = user_role_fields,
     .aggregate = &identity_user,
     .permission = IDENTITY_PERM_ADMIN,
     .id_field = "user_id",
     .decide = identity__assign_role},
    {.name = "revoke_role",
     .summary = "takes a role from a user",
     .fields = user_role_fields,
     .aggregate = &identity_user,
     .permission = IDENTITY_PERM_ADMIN,
     .id_field = "user_id",
     .decide = identity__revoke_role},
    {.name = "deactivate_user",
     .summary = "disables an account and ends its sessions",
     .fields = deactivate_fields,
     .aggregate = &identity_user,
     .permission = IDENTITY_PERM_ADMIN,
     .id_field = "user_id",
     .decide = identity__deactivate_user},
    {.name = "reactivate_user",
     .summary = "enables a disabled account again",
     .fields = user_fields,
     .aggregate = &identity_user,
     .permission = IDENTITY_PERM_ADMIN,
     .id_field = "user_id",
     .decide = identity__reactivate_user},
    {.name = NULL},
};

/* ---- event fields --------------------------------------------------------- */

#define E(n, t, d)                                                                                 \
    {                                                                                              \
        .name = n, .type = t, .required = true, .doc = d                                           \
    }
#define E_SESSION E("session_id", DOM_STRING, "32 hex characters")
#define E_REFRESH_HASH E("refresh_hash", DOM_STRING, "BLAKE2b-256 hex of the refresh secret")
#define E_PASSWORD_HASH E("password_hash", DOM_STRING, "argon2id string")
#define E_USER E("user_id", DOM_UUID, "the user")
#define E_ROLE E("role", DOM_NAME, "the role")
#define E_PERMS E("permissions", DOM_NAME_LIST, "its permissions")

static const dom_field ev_user_registered[] = {
    E_USER,
    E("email", DOM_EMAIL, "lower-cased"),
    E("display_name", DOM_STRING, "the name other people see"),
    E_PASSWORD_HASH,
    E("roles", DOM_NAME_LIST, "user, and admin when bootstrapped"),
    F_END,
};
static const dom_field ev_user_updated[] = {
    {.name = "display_name", .type = DOM_STRING, .doc = "present if changed"},
    {.name = "email", .type = DOM_EMAIL, .doc = "present if changed; lower-cased"},
    F_END,
};
static const dom_field ev_password[] = {E_PASSWORD_HASH, F_END};
static const dom_field ev_reset_requested[] = {
    E("token_hash", DOM_STRING, "BLAKE2b-256 hex of the reset secret"),
    E("expires_at", DOM_INT, "Unix ns"),
    F_END,
};
static const dom_field ev_password_reset[] = {
    E_PASSWORD_HASH,
    E("token_hash", DOM_STRING, "the reset token used up"),
    F_END,
};
static const dom_field ev_login_failed[] = {
    E("failures", DOM_INT, "consecutive wrong passwords, this one included"),
    F_END,
};
static const dom_field ev_account_locked[] = {E("until", DOM_INT, "Unix ns"), F_END};
static const dom_field ev_session_started[] = {
    E_SESSION,
    E_REFRESH_HASH,
    E("expires_at", DOM_INT, "Unix ns; refreshes do not extend it"),
    F_END,
};
static const dom_field ev_session_refreshed[] = {E_SESSION, E_REFRESH_HASH, F_END};
static const dom_field ev_session_ended[] = {
    E_SESSION,
    E("reason", DOM_STRING,
      "logout, refresh_reuse, password_changed, password_reset, deactivated or session_limit"),
    F_END,
};
static const dom_field ev_role[] = {E_ROLE, F_END};
static const dom_field ev_deactivated[] = {E("reason", DOM_STRING, "may be empty"), F_END};
static const dom_field ev_user[] = {E_USER, F_END};
static const dom_field ev_role_defined[] = {E("name", DOM_NAME, "the role"), E_PERMS, F_END};
static const dom_field ev_permission[] = {
    E_ROLE,
    E("permission", DOM_NAME, "the permission"),
    F_END,
};
static const dom_field ev_client_registered[] = {
    E("client_id", DOM_NAME, "the client"),
    E("secret_hash", DOM_STRING, "BLAKE2b-256 hex of the client secret"),
    E_PERMS,
    F_END,
};

/* ---- events --------------------------------------------------------------- */

static const dom_event_doc events[] = {
    {"user_registered", 1, "a user registered (stream identity-<user id>)", ev_user_registered},
    {"user_updated", 1, "a user's name or e-mail changed", ev_user_updated},
    {"password_changed", 1, "the user changed the password", ev_password},
    {"password_reset_requested", 1, "a reset token was mailed", ev_reset_requested},
    {"password_reset", 1, "the password was set with a reset token", ev_password_reset},
    {"login_failed", 1, "a login gave a wrong password", ev_login_failed},
    {"account_locked", 1, "too many wrong passwords: logins refused until `until`",
     ev_account_locked},
    {"session_started", 1, "a login succeeded", ev_session_started},
    {"session_refreshed", 1, "a session's refresh secret was rotated", ev_session_refreshed},
    {"session_ended", 1, "a session can no longer be used", ev_session_ended},
    {"role_assigned", 1, "the user got a role", ev_role},
    {"role_revoked", 1, "the user lost a role", ev_role},
    {"user_deactivated", 1, "the account was disabled", ev_deactivated},
    {"user_reactivated", 1, "the account was enabled again", no_fields},
    {"email_claimed", 1, "the e-mail is now the user's (stream identity-email-<key>)", ev_user},
    {"email_released", 1, "the user gave the e-mail up", ev_user},
    {"admin_bootstrapped", 1, "the first administrator was made (stream identity-system)", ev_user},
    {"role_defined", 1, "a custom role was defined (stream identity-role-<name>)", ev_role_defined},
    {"role_updated", 1, "a custom role's permissions were replaced", ev_role_defined},
    {"permission_granted", 1, "a role gained a permission", ev_permission},
    {"permission_revoked", 1, "a role lost a permission", ev_permission},
    {"client_registered", 1, "a service client was registered (stream identity-client-<id>)",
     ev_client_registered},
    {"service_token_issued", 1, "a service token was issued to the client (audit)", no_fields},
    {"client_revoked", 1, "the client can no longer get tokens", no_fields},
    {NULL, 0, NULL, NULL},
};

/* ---- queries -------------------------------------------------------------- */

static const dom_field q_list_users[] = {
    {.name = "role", .type = DOM_NAME, .max = 64, .doc = "only users with this role"},
    {.name = "limit", .type = DOM_INT, .min = 1, .max = 500, .doc = "page size (default 50)"},
    {.name = "cursor", .type = DOM_STRING, .max = 200, .doc = "from the previous page"},
    F_END,
};
static const dom_field q_check_permission[] = {F_USER_ID, F_PERMISSION, F_END};

static const dom_query_doc queries[] = {
    {"get_user", "a user's profile, roles and status; the user or identity:admin", user_fields,
     NULL},
    {"list_users", "users by registration, a page at a time", q_list_users, IDENTITY_PERM_ADMIN},
    {"check_permission", "whether a user's roles grant a permission: {allowed}", q_check_permission,
     NULL},
    {"public_keys", "the Ed25519 keys that verify access tokens, by key id; public", no_fields,
     NULL},
    {NULL, NULL, NULL, NULL},
};

/* ---- the domain row ------------------------------------------------------- */

const dom_domain dom_identity = {
    .name = IDENTITY_DOMAIN,
    .commands = commands,
    .events = events,
    .queries = queries,
};
