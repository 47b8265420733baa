/*
 * secret.c — the identity domain's handling of secrets and the helpers its
 * commands share.
 *
 * Sections: e-mail keys; passwords; random secrets and their digests;
 * tokens and lists; look-ups through the environment.
 *
 * Randomness and argon2id are called from prepare functions only; the
 * BLAKE2b digests are deterministic and may run in decide.
 */
#include "domain/identity/internal.h"

#include "common/alloc.h"
#include "common/b64.h"
#include "common/uuid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* OWASP's argon2id minimum: 19 MiB, two passes, one lane (libsodium's).
 * The fuzz targets' build (cmake -DGUILD_FUZZ=ON, which builds no guild
 * binary) uses libsodium's least, so that identity commands run at
 * fuzzing speed. */
#ifdef GUILD_FUZZING_BUILD
#define PASSWORD_OPSLIMIT ((unsigned long long)crypto_pwhash_OPSLIMIT_MIN)
#define PASSWORD_MEMLIMIT ((size_t)crypto_pwhash_MEMLIMIT_MIN)
#else
#define PASSWORD_OPSLIMIT 2ULL
#define PASSWORD_MEMLIMIT ((size_t)19 * 1024 * 1024)
#endif

static void sodium_ready(void)
{
    if (sodium_init() < 0)
        GUILD_BUG("libsodium cannot start");
}

static char ascii_lower(char c)
{
    return c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
}

bool identity__role_builtin(const char *name)
{
    return strcmp(name, "user") == 0 || strcmp(name, "admin") == 0;
}

void identity__stream(const dom_aggregate *agg, const char *id, char out[256])
{
    dom_stream_name(IDENTITY_DOMAIN, agg, id, out, 256);
}

/* ---- e-mail keys ---------------------------------------------------------- */

bool identity__email_lower(const char *email, char out[IDENTITY_EMAIL_MAX + 1])
{
    size_t n = strlen(email);
    if (n > IDENTITY_EMAIL_MAX)
        return false;
    for (size_t i = 0; i <= n; i++)
        out[i] = ascii_lower(email[i]);
    return true;
}

void identity_email_key(const char *email, char out[33])
{
    unsigned char digest[16];
    crypto_generichash_state st;
    char chunk[64];
    size_t n = 0;

    crypto_generichash_init(&st, NULL, 0, sizeof digest);
    for (const char *p = email; *p; p++) {
        chunk[n++] = ascii_lower(*p);
        if (n == sizeof chunk) {
            crypto_generichash_update(&st, (const unsigned char *)chunk, n);
            n = 0;
        }
    }
    crypto_generichash_update(&st, (const unsigned char *)chunk, n);
    crypto_generichash_final(&st, digest, sizeof digest);
    sodium_bin2hex(out, 33, digest, sizeof digest);
}

/* ---- passwords ------------------------------------------------------------ */

guild_status identity__password_hash(const char *password, char out[crypto_pwhash_STRBYTES])
{
    sodium_ready();
    if (crypto_pwhash_str_alg(out, password, strlen(password), PASSWORD_OPSLIMIT, PASSWORD_MEMLIMIT,
                              crypto_pwhash_ALG_ARGON2ID13) != 0)
        return GUILD_INTERNAL;
    return GUILD_OK;
}

bool identity__password_verify(const char *hash, const char *password)
{
    sodium_ready();
    return hash && crypto_pwhash_str_verify(hash, password, strlen(password)) == 0;
}

/* ---- random secrets and their digests ------------------------------------- */

void identity__secret_new(char out[IDENTITY_SECRET_CHARS + 1])
{
    unsigned char bin[IDENTITY_SECRET_BYTES];
    sodium_ready();
    randombytes_buf(bin, sizeof bin);
    guild_b64_encode(out, IDENTITY_SECRET_CHARS + 1, bin, sizeof bin);
    sodium_memzero(bin, sizeof bin);
}

void identity__sid_new(char out[IDENTITY_SID_HEX])
{
    unsigned char bin[(IDENTITY_SID_HEX - 1) / 2];
    sodium_ready();
    randombytes_buf(bin, sizeof bin);
    sodium_bin2hex(out, IDENTITY_SID_HEX, bin, sizeof bin);
}

void identity__secret_hash(const char *secret, char out[IDENTITY_HASH_HEX])
{
    unsigned char digest[(IDENTITY_HASH_HEX - 1) / 2];
    crypto_generichash(digest, sizeof digest, (const unsigned char *)secret, strlen(secret), NULL,
                       0);
    sodium_bin2hex(out, IDENTITY_HASH_HEX, digest, sizeof digest);
}

bool identity__digest_equal(const char *a, const char *b)
{
    if (!a || !b)
        return false;
    size_t n = strlen(a);
    return n == strlen(b) && sodium_memcmp(a, b, n) == 0;
}

/* ---- tokens and lists ----------------------------------------------------- */

bool identity__token_split(const char *token, char user_id[37], int parts, char *part_out[],
                           size_t part_size)
{
    if (strlen(token) < GUILD_UUID_STRLEN + 2 || token[GUILD_UUID_STRLEN] != '.' ||
        !guild_uuid_valid(token, GUILD_UUID_STRLEN))
        return false;
    const char *p = token + GUILD_UUID_STRLEN + 1;
    for (int i = 0; i < parts; i++) {
        const char *dot = strchr(p, '.');
        bool last = i == parts - 1;
        if ((dot != NULL) == last)
            return false;
        size_t n = dot ? (size_t)(dot - p) : strlen(p);
        if (n == 0 || n >= part_size)
            return false;
        memcpy(part_out[i], p, n);
        part_out[i][n] = '\0';
        p += n + 1;
    }
    memcpy(user_id, token, GUILD_UUID_STRLEN);
    user_id[GUILD_UUID_STRLEN] = '\0';
    return true;
}

bool identity__list_has(const json_t *list, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        const char *x = json_string_value(v);
        if (x && strcmp(x, s) == 0)
            return true;
    }
    return false;
}

json_t *identity__list_unique(const json_t *list)
{
    json_t *out = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(list, i, v)
    {
        const char *s = json_string_value(v);
        if (s && !identity__list_has(out, s))
            json_array_append_new(out, json_string(s));
    }
    return out;
}

/* ---- look-ups through the environment ------------------------------------- */

guild_status identity__claim_holder(dom_ctx *ctx, const char *key, char holder[64])
{
    char stream[256];
    holder[0] = '\0';
    identity__stream(&identity_email, key, stream);
    if (ctx->env->stream_version(ctx->env->self, stream) == 0)
        return GUILD_OK;

    void *state = NULL;
    uint64_t version = 0;
    guild_status s = ctx->env->load(ctx->env->self, &identity_email, stream, &state, &version);
    if (s != GUILD_OK)
        return dom_fail(ctx, s, NULL, "cannot read the e-mail claim");
    const identity_claim_state *c = state;
    if (c && c->user_id)
        snprintf(holder, 64, "%s", c->user_id);
    identity_email.destroy(state);
    return GUILD_OK;
}

guild_status identity_permissions(const dom_env *env, const json_t *roles, json_t **out)
{
    json_t *perms = json_array();
    size_t i;
    json_t *v;
    json_array_foreach(roles, i, v)
    {
        const char *role = json_string_value(v);
        if (!role || strcmp(role, "user") == 0)
            continue;
        if (strcmp(role, "admin") == 0) {
            if (!identity__list_has(perms, "*"))
                json_array_append_new(perms, json_string("*"));
            continue;
        }
        char stream[256];
        void *state = NULL;
        uint64_t version = 0;
        identity__stream(&identity_role, role, stream);
        guild_status s = env->load(env->self, &identity_role, stream, &state, &version);
        if (s != GUILD_OK) {
            json_decref(perms);
            return s;
        }
        const identity_role_state *r = state;
        size_t j;
        json_t *p;
        json_array_foreach(r ? r->permissions : NULL, j, p)
        {
            const char *perm = json_string_value(p);
            if (perm && !identity__list_has(perms, perm))
                json_array_append_new(perms, json_string(perm));
        }
        identity_role.destroy(state);
    }
    *out = perms;
    return GUILD_OK;
}

guild_status identity__reply_access_token(dom_ctx *ctx, const json_t *claims)
{
    char *token = NULL;
    guild_status s = ctx->env->sign_token(ctx->env->self, claims, &token);
    if (s != GUILD_OK || !token) {
        free(token);
        return dom_fail(ctx, GUILD_INTERNAL, NULL, "cannot sign the access token");
    }
    dom_reply(ctx, "access_token", json_string(token));
    sodium_memzero(token, strlen(token));
    free(token);
    dom_reply(ctx, "expires_in", json_integer(IDENTITY_ACCESS_TTL_S));
    return GUILD_OK;
}

guild_status identity__resolve_actor(const json_t *cmd, dom_ctx *ctx, char *id_out, size_t size)
{
    (void)cmd;
    const dom_actor *a = ctx->actor;
    if (!a || a->service || !a->user_id || !a->user_id[0])
        return dom_fail(ctx, GUILD_FORBIDDEN, NULL, "this command needs a user's token");
    if (strlen(a->user_id) >= size)
        return dom_fail(ctx, GUILD_INVALID_REQUEST, NULL, "the user id is too long");
    memcpy(id_out, a->user_id, strlen(a->user_id) + 1);
    return GUILD_OK;
}
