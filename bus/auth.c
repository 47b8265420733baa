/*
 * auth.c — token verification, signing keys and revocation.
 *
 * Sections: keys (file, keyring, JWKS, fetching from identity), verifying,
 * the revocation set and the identity watcher.
 */
#include "bus/auth.h"

#include "common/alloc.h"
#include "common/b64.h"
#include "common/clock.h"
#include "common/codec.h"
#include "common/jwt.h"
#include "common/log.h"
#include "eventstore/es.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define KEYS_SUBJECT "guild.qry.identity.public_keys"
#define WATCH_BACK_S (BUS_TOKEN_TTL_S + 60)
#define VERIFIED_MAX 20000 /* tokens remembered as verified */
#define KEY_REFRESH_S 30   /* how often other services ask identity for its keys */

struct bus_auth {
    natsConnection *nc;
    pthread_mutex_t lock;
    pthread_mutex_t fetch_lock; /* one fetch of the key set at a time */
    guild_jwt_keyring ring;
    uint64_t ring_gen; /* bumped each time the ring changes */
    bool can_sign;
    char kid[GUILD_KEY_ID_LEN + 1];
    unsigned char sk[crypto_sign_SECRETKEYBYTES];
    int64_t last_fetch_s;
    bool last_fetch_ok;
    uint64_t replay_target; /* identity's last stream sequence worth reading at subscribe */
    uint64_t replayed;      /* highest sequence read since */
    pthread_cond_t replay_cond;
    pthread_cond_t stop_cond; /* wakes the refresher to stop */
    pthread_t watcher;
    bool watcher_started;
    pthread_t refresher; /* asks identity for its keys every refresh_s */
    bool refresher_started;
    unsigned refresh_s;
    volatile bool stopping;
    json_t *ended_sessions; /* session id -> time (s) it ended */
    json_t *deactivated;    /* user id -> time (s) */
    json_t *verified;       /* BLAKE2b of a token -> its claims, until it expires */
    jsCtx *js;
    natsSubscription *watch;
};

void bus_caller_release(bus_caller *c)
{
    json_decref(c->claims);
    memset(c, 0, sizeof *c);
}

guild_status bus_auth_create(natsConnection *nc, bus_auth **out)
{
    if (sodium_init() < 0)
        return GUILD_INTERNAL;
    bus_auth *a = guild_xcalloc(1, sizeof *a);
    a->nc = nc;
    pthread_mutex_init(&a->lock, NULL);
    pthread_mutex_init(&a->fetch_lock, NULL);
    pthread_cond_init(&a->replay_cond, NULL);
    pthread_cond_init(&a->stop_cond, NULL);
    guild_jwt_keyring_init(&a->ring);
    a->ended_sessions = json_object();
    a->deactivated = json_object();
    a->verified = json_object();
    *out = a;
    return GUILD_OK;
}

void bus_auth_destroy(bus_auth *a)
{
    if (!a)
        return;
    pthread_mutex_lock(&a->lock);
    a->stopping = true;
    pthread_cond_broadcast(&a->stop_cond);
    pthread_mutex_unlock(&a->lock);
    if (a->watcher_started)
        pthread_join(a->watcher, NULL);
    if (a->refresher_started)
        pthread_join(a->refresher, NULL);
    if (a->watch) {
        /* Unsubscribing deletes the ordered consumer, a JetStream request
         * that would only time out with the server gone; the server drops
         * an ephemeral consumer without interest by itself. */
        if (natsConnection_Status(a->nc) == NATS_CONN_STATUS_CONNECTED)
            natsSubscription_Unsubscribe(a->watch);
        natsSubscription_Destroy(a->watch);
    }
    jsCtx_Destroy(a->js);
    json_decref(a->ended_sessions);
    json_decref(a->deactivated);
    json_decref(a->verified);
    sodium_memzero(a->sk, sizeof a->sk);
    pthread_cond_destroy(&a->replay_cond);
    pthread_cond_destroy(&a->stop_cond);
    pthread_mutex_destroy(&a->lock);
    pthread_mutex_destroy(&a->fetch_lock);
    free(a);
}

/* ---- keys ----------------------------------------------------------------- */

static guild_status read_key(const char *path, unsigned char sk[crypto_sign_SECRETKEYBYTES],
                             guild_error *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return guild_error_set(err, errno == ENOENT ? GUILD_NOT_FOUND : GUILD_IO, errno,
                               "cannot read %s", path);
    ssize_t n = read(fd, sk, crypto_sign_SECRETKEYBYTES);
    close(fd);
    if (n != crypto_sign_SECRETKEYBYTES)
        return guild_error_set(err, GUILD_CORRUPT, 0, "%s is not a signing key", path);
    return GUILD_OK;
}

static guild_status write_key(const char *path, const unsigned char sk[crypto_sign_SECRETKEYBYTES],
                              guild_error *err)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return guild_error_set(err, GUILD_IO, errno, "cannot create %s", path);
    ssize_t n = write(fd, sk, crypto_sign_SECRETKEYBYTES);
    int synced = fsync(fd);
    close(fd);
    if (n != crypto_sign_SECRETKEYBYTES || synced != 0)
        return guild_error_set(err, GUILD_IO, errno, "cannot write %s", path);
    return GUILD_OK;
}

guild_status bus_auth_load_signing_key(bus_auth *a, const char *dir, guild_error *err)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/signing.key", dir);
    mkdir(dir, 0700);
    guild_status s = read_key(path, a->sk, err);
    if (s == GUILD_NOT_FOUND) {
        unsigned char pk[crypto_sign_PUBLICKEYBYTES];
        crypto_sign_keypair(pk, a->sk);
        s = write_key(path, a->sk, err);
        if (s == GUILD_OK)
            guild_info("created a new token signing key in %s", path);
    }
    if (s != GUILD_OK)
        return s;
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    crypto_sign_ed25519_sk_to_pk(pk, a->sk);
    guild_key_id(pk, a->kid);
    pthread_mutex_lock(&a->lock);
    guild_jwt_keyring_add(&a->ring, a->kid, pk);
    a->can_sign = true;
    pthread_mutex_unlock(&a->lock);
    return GUILD_OK;
}

guild_status bus_auth_sign(bus_auth *a, const json_t *claims, char **token)
{
    if (!a->can_sign)
        return GUILD_INTERNAL;
    return guild_jwt_sign(claims, a->kid, a->sk, token);
}

json_t *bus_auth_jwks(bus_auth *a)
{
    json_t *keys = json_array();
    pthread_mutex_lock(&a->lock);
    for (size_t i = 0; i < a->ring.count; i++) {
        char x[64];
        sodium_bin2base64(x, sizeof x, a->ring.keys[i].pk, crypto_sign_PUBLICKEYBYTES,
                          sodium_base64_VARIANT_URLSAFE_NO_PADDING);
        json_array_append_new(keys,
                              json_pack("{s:s, s:s, s:s, s:s, s:s}", "kty", "OKP", "crv", "Ed25519",
                                        "alg", "EdDSA", "kid", a->ring.keys[i].kid, "x", x));
    }
    pthread_mutex_unlock(&a->lock);
    return json_pack("{s:o}", "keys", keys);
}

/* True if the two rings hold the same key ids with the same keys. */
static bool same_keys(const guild_jwt_keyring *x, const guild_jwt_keyring *y)
{
    if (x->count != y->count)
        return false;
    for (size_t i = 0; i < x->count; i++) {
        const unsigned char *pk = guild_jwt_keyring_find(y, x->keys[i].kid);
        if (!pk || memcmp(pk, x->keys[i].pk, sizeof x->keys[i].pk) != 0)
            return false;
    }
    return true;
}

/* Asks identity for its public keys and trusts exactly those (fetch_lock
 * held). */
static guild_status fetch_keys_locked(bus_auth *a, guild_error *err)
{
    natsMsg *reply = NULL;
    natsStatus ns = natsConnection_RequestString(&reply, a->nc, KEYS_SUBJECT, "{}", 2000);
    if (ns != NATS_OK)
        return guild_error_set(err, GUILD_UNAVAILABLE, (int)ns,
                               "identity's public keys are not available: %s",
                               natsStatus_GetText(ns));
    json_t *doc = NULL;
    guild_status s = guild_codec_decode(
        natsMsg_GetData(reply), (size_t)natsMsg_GetDataLength(reply), GUILD_FMT_JSON, &doc, err);
    natsMsg_Destroy(reply);
    if (s != GUILD_OK)
        return guild_error_set(err, GUILD_UNAVAILABLE, 0, "identity's key set does not decode");
    json_t *keys = json_object_get(json_object_get(doc, "data"), "keys");
    guild_jwt_keyring fresh;
    guild_jwt_keyring_init(&fresh);
    size_t i;
    json_t *k;
    json_array_foreach(keys, i, k)
    {
        const char *kid = json_string_value(json_object_get(k, "kid"));
        const char *x = json_string_value(json_object_get(k, "x"));
        unsigned char pk[crypto_sign_PUBLICKEYBYTES];
        size_t len = 0;
        if (kid && x &&
            sodium_base642bin(pk, sizeof pk, x, strlen(x), NULL, &len, NULL,
                              sodium_base64_VARIANT_URLSAFE_NO_PADDING) == 0 &&
            len == sizeof pk)
            guild_jwt_keyring_add(&fresh, kid, pk);
    }
    bool listed = json_is_array(keys);
    json_decref(doc);
    if (!listed)
        return guild_error_set(err, GUILD_UNAVAILABLE, 0, "identity's key set has no keys");
    /* Identity's set is the whole truth: a key it no longer lists (rotated
     * away) is no longer trusted, and tokens verified with it are
     * forgotten so that they are checked again. */
    pthread_mutex_lock(&a->lock);
    bool changed = !same_keys(&a->ring, &fresh);
    if (changed) {
        a->ring = fresh;
        a->ring_gen++;
        json_object_clear(a->verified);
    }
    pthread_mutex_unlock(&a->lock);
    if (changed) {
        char kids[GUILD_JWT_MAX_KEYS * (GUILD_JWT_KID_MAX + 2) + 1] = "";
        size_t at = 0;
        for (size_t j = 0; j < fresh.count; j++)
            at += (size_t)snprintf(kids + at, sizeof kids - at, "%s%s", j ? ", " : "",
                                   fresh.keys[j].kid);
        guild_info("tokens are verified with identity's key(s) %s", fresh.count ? kids : "(none)");
    }
    return GUILD_OK;
}

/* One fetch at a time, so an older reply never replaces a newer one. */
static guild_status fetch_keys_now(bus_auth *a, guild_error *err)
{
    pthread_mutex_lock(&a->fetch_lock);
    guild_status s = fetch_keys_locked(a, err);
    pthread_mutex_unlock(&a->fetch_lock);
    return s;
}

/* For a token naming a key not known: asks identity for its public keys,
 * at most once a second. */
static guild_status fetch_keys(bus_auth *a, int64_t now_s, guild_error *err)
{
    pthread_mutex_lock(&a->lock);
    bool recent = now_s - a->last_fetch_s < 1;
    bool ok = a->last_fetch_ok;
    if (!recent)
        a->last_fetch_s = now_s;
    pthread_mutex_unlock(&a->lock);
    if (recent) /* a failed fetch a moment ago still means: cannot tell */
        return ok ? GUILD_OK
                  : guild_error_set(err, GUILD_UNAVAILABLE, 0,
                                    "identity's public keys are not available");

    guild_status s = fetch_keys_now(a, err);
    pthread_mutex_lock(&a->lock);
    a->last_fetch_ok = s == GUILD_OK;
    pthread_mutex_unlock(&a->lock);
    return s;
}

/* Asks identity for its keys every refresh_s seconds (and once at once),
 * so a rotation reaches this service without waiting for a token signed
 * with the new key. */
static void *refresher_main(void *arg)
{
    bus_auth *a = arg;
    pthread_mutex_lock(&a->lock);
    while (!a->stopping) {
        pthread_mutex_unlock(&a->lock);
        guild_error err = {0};
        bool ok = natsConnection_Status(a->nc) == NATS_CONN_STATUS_CONNECTED &&
                  fetch_keys_now(a, &err) == GUILD_OK;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += ok ? (time_t)a->refresh_s : 1; /* NATS or identity down: soon */
        pthread_mutex_lock(&a->lock);
        while (!a->stopping && pthread_cond_timedwait(&a->stop_cond, &a->lock, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&a->lock);
    return NULL;
}

/* ---- verifying ------------------------------------------------------------ */

static bool revoked(bus_auth *a, const char *sub, const char *sid)
{
    pthread_mutex_lock(&a->lock);
    bool r = (sid && json_object_get(a->ended_sessions, sid)) ||
             (sub && json_object_get(a->deactivated, sub));
    pthread_mutex_unlock(&a->lock);
    return r;
}

static guild_status verify_signature(bus_auth *a, const char *token, int64_t now_s, json_t **out,
                                     uint64_t *gen, guild_error *err);
static guild_status caller_from_claims(bus_auth *a, json_t *claims, bus_caller *caller,
                                       guild_error *err);

guild_status bus_auth_verify(bus_auth *a, const char *authorization, int64_t now_s,
                             bus_caller *caller, guild_error *err)
{
    memset(caller, 0, sizeof *caller);
    if (!authorization || !*authorization)
        return guild_error_set(err, GUILD_UNAUTHENTICATED, 0, "a bearer token is required");
    if (strncmp(authorization, "Bearer ", 7) != 0)
        return guild_error_set(err, GUILD_UNAUTHENTICATED, 0,
                               "Authorization must be 'Bearer <token>'");
    const char *token = authorization + 7;

    /* An Ed25519 check costs ~70 us: a token verified once is remembered
     * (keyed by a hash of all of it) until it expires. Revocation is still
     * checked on every request below. */
    uint8_t h[16];
    char key[33];
    crypto_generichash(h, sizeof h, (const uint8_t *)token, strlen(token), NULL, 0);
    sodium_bin2hex(key, sizeof key, h, sizeof h);
    json_t *claims = NULL;
    pthread_mutex_lock(&a->lock);
    json_t *hit = json_object_get(a->verified, key);
    if (hit && json_integer_value(json_object_get(hit, "exp")) > now_s)
        claims = json_incref(hit);
    pthread_mutex_unlock(&a->lock);
    if (!claims) {
        uint64_t gen = 0;
        guild_status v = verify_signature(a, token, now_s, &claims, &gen, err);
        if (v != GUILD_OK)
            return v;
        /* Remembered only if the keys did not change meanwhile: a token of
         * a key dropped during the check must not outlive the drop. */
        pthread_mutex_lock(&a->lock);
        if (json_object_size(a->verified) >= VERIFIED_MAX)
            json_object_clear(a->verified);
        if (gen == a->ring_gen)
            json_object_set(a->verified, key, claims);
        pthread_mutex_unlock(&a->lock);
    }
    return caller_from_claims(a, claims, caller, err);
}

/* Checks a token's signature and times, fetching identity's keys when it
 * names one not known yet. */
static guild_status verify_signature(bus_auth *a, const char *token, int64_t now_s, json_t **out,
                                     uint64_t *gen, guild_error *err)
{
    guild_jwt_keyring ring;
    pthread_mutex_lock(&a->lock);
    ring = a->ring;
    *gen = a->ring_gen;
    pthread_mutex_unlock(&a->lock);
    json_t *claims = NULL;
    guild_status s = guild_jwt_verify(token, &ring, now_s, &claims, err);
    if (s == GUILD_UNAUTHENTICATED && strstr(err ? err->message : "", "unknown key") &&
        !a->can_sign) {
        guild_status f = fetch_keys(a, now_s, err);
        if (f != GUILD_OK)
            return f;
        pthread_mutex_lock(&a->lock);
        ring = a->ring;
        *gen = a->ring_gen;
        pthread_mutex_unlock(&a->lock);
        s = guild_jwt_verify(token, &ring, now_s, &claims, err);
    }
    if (s != GUILD_OK)
        return s;
    *out = claims;
    return GUILD_OK;
}

/* Fills the caller from verified claims (taken over), refusing tokens of
 * the wrong kind and revoked sessions. */
static guild_status caller_from_claims(bus_auth *a, json_t *claims, bus_caller *caller,
                                       guild_error *err)
{
    const char *sub = json_string_value(json_object_get(claims, "sub"));
    const char *sid = json_string_value(json_object_get(claims, "sid"));
    const char *typ = json_string_value(json_object_get(claims, "typ"));
    if (!sub || !typ || (strcmp(typ, "access") != 0 && strcmp(typ, "service") != 0)) {
        json_decref(claims);
        return guild_error_set(err, GUILD_UNAUTHENTICATED, 0, "not an access token");
    }
    if (revoked(a, sub, sid)) {
        json_decref(claims);
        return guild_error_set(err, GUILD_UNAUTHENTICATED, 0, "the session has been revoked");
    }
    caller->claims = claims;
    bool service = strcmp(typ, "service") == 0;
    caller->actor.user_id = service ? "" : sub;
    caller->actor.session_id = sid ? sid : "";
    caller->actor.service = service;
    caller->actor.permissions = json_object_get(claims, "perms");
    return GUILD_OK;
}

/* ---- revocation ----------------------------------------------------------- */

/* Forgets entries older than any token still alive. */
static void prune(json_t *set, int64_t now_s)
{
    const char *k;
    json_t *v, *tmp;
    json_object_foreach_safe(set, tmp, k, v)
    {
        if (now_s - json_integer_value(v) > WATCH_BACK_S)
            json_object_del(set, k);
    }
}

void bus_auth_observe(bus_auth *a, const char *type, const json_t *data, int64_t now_s)
{
    const char *sid = json_string_value(json_object_get(data, "session_id"));
    const char *uid = json_string_value(json_object_get(data, "user_id"));
    pthread_mutex_lock(&a->lock);
    if (strcmp(type, "session_ended") == 0 && sid) {
        json_object_set_new(a->ended_sessions, sid, json_integer(now_s));
        if (json_object_size(a->ended_sessions) % 1024 == 0)
            prune(a->ended_sessions, now_s);
    } else if (strcmp(type, "user_deactivated") == 0 && uid) {
        json_object_set_new(a->deactivated, uid, json_integer(now_s));
    } else if (strcmp(type, "user_reactivated") == 0 && uid) {
        json_object_del(a->deactivated, uid);
    }
    pthread_mutex_unlock(&a->lock);
}

static void on_identity_event(natsConnection *nc, natsSubscription *sub, natsMsg *msg,
                              void *closure)
{
    (void)nc;
    (void)sub;
    bus_auth *a = closure;
    jsMsgMetaData *meta = NULL;
    uint64_t seq = 0;
    if (natsMsg_GetMetaData(&meta, msg) == NATS_OK) {
        seq = meta->Sequence.Stream;
        jsMsgMetaData_Destroy(meta);
    }
    es_record rec;
    if (es_record_decode(natsMsg_GetData(msg), (size_t)natsMsg_GetDataLength(msg), &rec) ==
        GUILD_OK) {
        char type[ES_TYPE_MAX + 1];
        snprintf(type, sizeof type, "%.*s", (int)rec.type.n, rec.type.p);
        json_t *data = NULL;
        if (guild_codec_decode(rec.data, rec.data_len, GUILD_FMT_MSGPACK, &data, NULL) ==
            GUILD_OK) {
            /* user_deactivated names its user in the stream, not always in data */
            if (!json_object_get(data, "user_id") && rec.stream.n > 9)
                json_object_set_new(data, "user_id",
                                    json_stringn(rec.stream.p + 9, rec.stream.n - 9));
            bus_auth_observe(a, type, data, rec.time / 1000000000);
            json_decref(data);
        }
    }
    pthread_mutex_lock(&a->lock);
    if (seq > a->replayed) {
        a->replayed = seq;
        pthread_cond_broadcast(&a->replay_cond);
    }
    pthread_mutex_unlock(&a->lock);
    natsMsg_Destroy(msg);
}

guild_status bus_auth_watch(bus_auth *a, guild_error *err)
{
    if (a->watch)
        return GUILD_OK;
    natsStatus ns = a->js ? NATS_OK : natsConnection_JetStream(&a->js, a->nc, NULL);
    if (ns != NATS_OK)
        return guild_error_set(err, GUILD_UNAVAILABLE, (int)ns, "JetStream: %s",
                               natsStatus_GetText(ns));
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = "GUILD_IDENTITY";
    so.Ordered = true;
    so.Config.DeliverPolicy = js_DeliverByStartTime;
    so.Config.OptStartTime = (guild_now_ns() / 1000000000 - WATCH_BACK_S) * 1000000000;
    /* What there is to read back, so a caller can wait until it has been. */
    jsStreamInfo *si = NULL;
    if (js_GetStreamInfo(&si, a->js, "GUILD_IDENTITY", NULL, NULL) == NATS_OK) {
        pthread_mutex_lock(&a->lock);
        a->replay_target = si->State.LastTime >= so.Config.OptStartTime ? si->State.LastSeq : 0;
        pthread_mutex_unlock(&a->lock);
        jsStreamInfo_Destroy(si);
    }
    jsErrCode jerr = 0;
    ns = js_Subscribe(&a->watch, a->js, "guild.evt.identity.>", on_identity_event, a, NULL, &so,
                      &jerr);
    if (ns != NATS_OK) {
        a->watch = NULL;
        return guild_error_set(err, GUILD_UNAVAILABLE, (int)ns,
                               "cannot follow identity's events: %s", natsStatus_GetText(ns));
    }
    return GUILD_OK;
}

/* Tries to follow identity's stream until it can (the stream appears when
 * identity's relay first runs, which may be after this service started). */
static void *watcher_main(void *arg)
{
    bus_auth *a = arg;
    while (!a->stopping && bus_auth_watch(a, NULL) != GUILD_OK)
        for (int i = 0; i < 10 && !a->stopping; i++)
            usleep(50 * 1000);
    return NULL;
}

void bus_auth_watch_start(bus_auth *a)
{
    if (!a->can_sign && !a->refresher_started) {
        const char *v = getenv("GUILD_KEY_REFRESH_S");
        long n = v ? strtol(v, NULL, 10) : 0;
        a->refresh_s = n > 0 && n <= 86400 ? (unsigned)n : KEY_REFRESH_S;
        if (pthread_create(&a->refresher, NULL, refresher_main, a) == 0)
            a->refresher_started = true;
    }
    /* When identity's stream is there, read the recent revocations back
     * before the service answers anything (a restarted service must not
     * accept a token whose session ended while it was down). */
    if (bus_auth_watch(a, NULL) == GUILD_OK) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 5;
        pthread_mutex_lock(&a->lock);
        int rc = 0;
        while (a->replayed < a->replay_target && rc == 0)
            rc = pthread_cond_timedwait(&a->replay_cond, &a->lock, &until);
        pthread_mutex_unlock(&a->lock);
        if (rc)
            guild_warn("identity's recent revocations were not all read back within 5 s");
        return;
    }
    if (!a->watcher_started && pthread_create(&a->watcher, NULL, watcher_main, a) == 0)
        a->watcher_started = true;
}
