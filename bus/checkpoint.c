/*
 * checkpoint.c — signed checkpoints of a domain's log (see checkpoint.h).
 *
 * Sections: keys, the signed message and its stored form, signing, the
 * signer thread, checking a store.
 */
#include "bus/checkpoint.h"

#include "common/alloc.h"
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <msgpack.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MESSAGE_TAG "guild-checkpoint-v1" /* 19 characters; the NUL is signed too */
#define MESSAGE_TAG_LEN 20

/* ---- keys ------------------------------------------------------------------ */

void bus_checkpoint_key_path(const char *data_dir, const char *domain, char *out, size_t size)
{
    snprintf(out, size, "%s/%s/keys/checkpoint.key", data_dir, domain);
}

void bus_checkpoint_key_clear(bus_checkpoint_key *k)
{
    sodium_memzero(k, sizeof *k);
}

/* Fills the public half and the key id from a 64-byte secret key, checking
 * that its public half belongs to its seed. */
static bool key_complete(bus_checkpoint_key *k)
{
    unsigned char pk[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_seed_keypair(pk, sk, k->sk);
    bool ok = sodium_memcmp(sk, k->sk, sizeof sk) == 0;
    sodium_memzero(sk, sizeof sk);
    if (!ok)
        return false;
    memcpy(k->pk, pk, sizeof pk);
    guild_key_id(k->pk, k->key_id);
    return true;
}

static guild_status key_read(const char *path, bus_checkpoint_key *k, guild_error *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return guild_error_set(err, errno == ENOENT ? GUILD_NOT_FOUND : GUILD_IO, errno,
                               "cannot read %s: %s", path, strerror(errno));
    struct stat sb;
    ssize_t n = -1;
    if (fstat(fd, &sb) == 0 && sb.st_size == crypto_sign_SECRETKEYBYTES)
        n = read(fd, k->sk, crypto_sign_SECRETKEYBYTES);
    close(fd);
    if (n != crypto_sign_SECRETKEYBYTES || !key_complete(k)) {
        sodium_memzero(k, sizeof *k);
        return guild_error_set(err, GUILD_CORRUPT, 0, "%s is not an Ed25519 signing key", path);
    }
    return GUILD_OK;
}

static void fsync_dir(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
}

/* Writes a new key file; GUILD_CONFLICT if another process made one first. */
static guild_status key_create(const char *path, bus_checkpoint_key *k, guild_error *err)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return guild_error_set(err, GUILD_IO, errno, "cannot create %s: %s", dir,
                                   strerror(errno));
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0)
        return guild_error_set(err, errno == EEXIST ? GUILD_CONFLICT : GUILD_IO, errno,
                               "cannot create %s: %s", path, strerror(errno));
    crypto_sign_keypair(k->pk, k->sk);
    ssize_t n = write(fd, k->sk, crypto_sign_SECRETKEYBYTES);
    int synced = fsync(fd);
    int saved = errno;
    close(fd);
    if (n != crypto_sign_SECRETKEYBYTES || synced != 0) {
        unlink(path);
        sodium_memzero(k, sizeof *k);
        return guild_error_set(err, GUILD_IO, saved, "cannot write %s: %s", path, strerror(saved));
    }
    if (slash)
        fsync_dir(dir);
    guild_key_id(k->pk, k->key_id);
    guild_info("created a new checkpoint signing key %s in %s", k->key_id, path);
    return GUILD_OK;
}

guild_status bus_checkpoint_key_load(const char *path, bool create, bus_checkpoint_key *out,
                                     guild_error *err)
{
    if (sodium_init() < 0)
        return guild_error_set(err, GUILD_INTERNAL, 0, "libsodium does not start");
    bus_checkpoint_key k;
    guild_status s = key_read(path, &k, err);
    if (s == GUILD_NOT_FOUND && create) {
        s = key_create(path, &k, err);
        if (s == GUILD_CONFLICT) /* made by another process meanwhile */
            s = key_read(path, &k, err);
    }
    if (s == GUILD_OK)
        *out = k;
    sodium_memzero(&k, sizeof k);
    return s;
}

bool bus_checkpoint_pubkey_parse(const char *s, unsigned char pk[crypto_sign_PUBLICKEYBYTES])
{
    size_t n = 0;
    const char *end = NULL;
    unsigned char tmp[crypto_sign_PUBLICKEYBYTES];
    if (!s || strlen(s) != 2 * sizeof tmp ||
        sodium_hex2bin(tmp, sizeof tmp, s, strlen(s), NULL, &n, &end) != 0 || n != sizeof tmp ||
        *end)
        return false;
    memcpy(pk, tmp, sizeof tmp);
    return true;
}

/* ---- the signed message and its stored form ------------------------------------ */

static void u64_put(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

void bus_checkpoint_meta_name(uint64_t position, char out[BUS_CHECKPOINT_META_NAME_LEN + 1])
{
    snprintf(out, BUS_CHECKPOINT_META_NAME_LEN + 1, BUS_CHECKPOINT_META_PREFIX "%020llu",
             (unsigned long long)position);
}

size_t bus_checkpoint_message(const bus_checkpoint_sig *c, uint8_t out[BUS_CHECKPOINT_MESSAGE_MAX])
{
    size_t n = strnlen(c->domain, BUS_CHECKPOINT_DOMAIN_MAX);
    memcpy(out, MESSAGE_TAG, MESSAGE_TAG_LEN);
    size_t p = MESSAGE_TAG_LEN;
    out[p++] = (uint8_t)n;
    memcpy(out + p, c->domain, n);
    p += n;
    u64_put(out + p, c->position);
    p += 8;
    memcpy(out + p, c->hash, ES_HASH_LEN);
    p += ES_HASH_LEN;
    u64_put(out + p, (uint64_t)c->time);
    return p + 8;
}

static void pack_str(msgpack_packer *pk, const char *s)
{
    size_t n = strlen(s);
    msgpack_pack_str(pk, n);
    msgpack_pack_str_body(pk, s, n);
}

static void pack_bin(msgpack_packer *pk, const void *p, size_t n)
{
    msgpack_pack_bin(pk, n);
    msgpack_pack_bin_body(pk, p, n);
}

void bus_checkpoint_encode(const bus_checkpoint_sig *c, uint8_t **out, size_t *len)
{
    msgpack_sbuffer buf;
    msgpack_sbuffer_init(&buf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &buf, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, 6);
    pack_str(&pk, "domain");
    pack_str(&pk, c->domain);
    pack_str(&pk, "position");
    msgpack_pack_uint64(&pk, c->position);
    pack_str(&pk, "hash");
    pack_bin(&pk, c->hash, ES_HASH_LEN);
    pack_str(&pk, "time");
    msgpack_pack_int64(&pk, c->time);
    pack_str(&pk, "key_id");
    pack_str(&pk, c->key_id);
    pack_str(&pk, "sig");
    pack_bin(&pk, c->sig, crypto_sign_BYTES);
    *out = guild_xmemdup(buf.data, buf.size);
    *len = buf.size;
    msgpack_sbuffer_destroy(&buf);
}

static bool key_is(const msgpack_object *k, const char *name)
{
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == strlen(name) &&
           memcmp(k->via.str.ptr, name, k->via.str.size) == 0;
}

static bool str_into(const msgpack_object *v, char *out, size_t size)
{
    if (v->type != MSGPACK_OBJECT_STR || v->via.str.size == 0 || v->via.str.size >= size ||
        memchr(v->via.str.ptr, 0, v->via.str.size))
        return false;
    memcpy(out, v->via.str.ptr, v->via.str.size);
    out[v->via.str.size] = '\0';
    return true;
}

static bool bin_into(const msgpack_object *v, uint8_t *out, size_t size)
{
    if (v->type != MSGPACK_OBJECT_BIN || v->via.bin.size != size)
        return false;
    memcpy(out, v->via.bin.ptr, size);
    return true;
}

/* Decodes one entry of the map into c; a bit of `seen` per known key. */
static bool decode_entry(const msgpack_object_kv *kv, bus_checkpoint_sig *c, unsigned *seen)
{
    const msgpack_object *k = &kv->key, *v = &kv->val;
    if (key_is(k, "domain")) {
        *seen |= 1;
        return str_into(v, c->domain, sizeof c->domain);
    }
    if (key_is(k, "position")) {
        *seen |= 2;
        c->position = v->via.u64;
        return v->type == MSGPACK_OBJECT_POSITIVE_INTEGER;
    }
    if (key_is(k, "hash")) {
        *seen |= 4;
        return bin_into(v, c->hash, ES_HASH_LEN);
    }
    if (key_is(k, "time")) {
        *seen |= 8;
        c->time = v->via.i64;
        return v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER ||
               (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= INT64_MAX);
    }
    if (key_is(k, "key_id")) {
        *seen |= 16;
        return str_into(v, c->key_id, sizeof c->key_id);
    }
    if (key_is(k, "sig")) {
        *seen |= 32;
        return bin_into(v, c->sig, crypto_sign_BYTES);
    }
    return true; /* fields may grow */
}

guild_status bus_checkpoint_decode(const void *raw, size_t len, bus_checkpoint_sig *out,
                                   guild_error *err)
{
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    bus_checkpoint_sig c;
    memset(&c, 0, sizeof c);
    guild_status s = GUILD_OK;
    size_t off = 0;
    if (msgpack_unpack_next(&up, raw, len, &off) != MSGPACK_UNPACK_SUCCESS || off != len ||
        up.data.type != MSGPACK_OBJECT_MAP) {
        s = guild_error_set(err, GUILD_CORRUPT, 0, "not a msgpack map");
        goto leave;
    }
    unsigned seen = 0;
    for (uint32_t i = 0; i < up.data.via.map.size; i++) {
        const msgpack_object_kv *kv = &up.data.via.map.ptr[i];
        if (!decode_entry(kv, &c, &seen)) {
            s = guild_error_set(err, GUILD_CORRUPT, 0, "the field %.*s is malformed",
                                kv->key.type == MSGPACK_OBJECT_STR ? (int)kv->key.via.str.size : 1,
                                kv->key.type == MSGPACK_OBJECT_STR ? kv->key.via.str.ptr : "?");
            goto leave;
        }
    }
    if (seen != 63) {
        s = guild_error_set(err, GUILD_CORRUPT, 0, "a field is missing");
        goto leave;
    }
    *out = c;
leave:
    msgpack_unpacked_destroy(&up);
    return s;
}

bool bus_checkpoint_sig_ok(const bus_checkpoint_sig *c,
                           const unsigned char pk[crypto_sign_PUBLICKEYBYTES])
{
    uint8_t msg[BUS_CHECKPOINT_MESSAGE_MAX];
    size_t n = bus_checkpoint_message(c, msg);
    return crypto_sign_verify_detached(c->sig, msg, n, pk) == 0;
}

/* ---- signing ---------------------------------------------------------------- */

guild_status bus_checkpoint_sign_head(es_store *st, const bus_checkpoint_key *key,
                                      bus_checkpoint_sig *out, guild_error *err)
{
    const char *domain = es_store_domain(st);
    if (!*domain || strlen(domain) > BUS_CHECKPOINT_DOMAIN_MAX)
        return guild_error_set(err, GUILD_INVALID_REQUEST, 0, "the store names no domain");
    bus_checkpoint_sig c;
    memset(&c, 0, sizeof c);
    guild_status s = es_log_head(st, &c.position, c.hash);
    if (s != GUILD_OK)
        return guild_error_set(err, s, 0, "cannot read the log's head");
    if (c.position == 0)
        return guild_error_set(err, GUILD_NOT_FOUND, 0, "the log is empty");
    snprintf(c.domain, sizeof c.domain, "%s", domain);
    snprintf(c.key_id, sizeof c.key_id, "%s", key->key_id);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    c.time = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
    uint8_t msg[BUS_CHECKPOINT_MESSAGE_MAX];
    size_t n = bus_checkpoint_message(&c, msg);
    crypto_sign_detached(c.sig, NULL, msg, n, key->sk);

    char name[BUS_CHECKPOINT_META_NAME_LEN + 1];
    bus_checkpoint_meta_name(c.position, name);
    uint8_t *bytes;
    size_t len;
    bus_checkpoint_encode(&c, &bytes, &len);
    s = es_meta_put(st, name, bytes, len);
    free(bytes);
    if (s != GUILD_OK)
        return guild_error_set(err, s, 0, "cannot store the checkpoint signature");
    if (out)
        *out = c;
    return GUILD_OK;
}

/* ---- the signer thread ------------------------------------------------------------ */

struct bus_signer {
    es_store *store;
    bus_checkpoint_key key;
    unsigned interval_ms;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond; /* on CLOCK_MONOTONIC */
    bool stopping;
    uint64_t last_signed; /* position; signer thread, then bus_signer_stop */
    uint64_t count;       /* under lock */
};

static unsigned interval_from_env(void)
{
    const char *v = getenv("GUILD_CHECKPOINT_SECONDS");
    char *end = NULL;
    double secs = v ? strtod(v, &end) : 0;
    if (!v || end == v || *end || !(secs >= 0.01 && secs <= 86400))
        return BUS_CHECKPOINT_INTERVAL_MS;
    return (unsigned)(secs * 1000);
}

/* Signs the head if it moved since the last signature. */
static void sign_if_moved(bus_signer *s)
{
    uint64_t head = 0;
    if (es_log_head(s->store, &head, NULL) != GUILD_OK || head == 0 || head == s->last_signed)
        return;
    bus_checkpoint_sig c;
    guild_error err = {0};
    if (bus_checkpoint_sign_head(s->store, &s->key, &c, &err) != GUILD_OK) {
        guild_warn("cannot sign the checkpoint at position %llu: %s", (unsigned long long)head,
                   err.message);
        return;
    }
    s->last_signed = c.position;
    pthread_mutex_lock(&s->lock);
    s->count++;
    pthread_mutex_unlock(&s->lock);
}

/* A head signed before (by an earlier run) needs no new signature. */
static void load_last_signed(bus_signer *s)
{
    uint64_t head = 0;
    if (es_log_head(s->store, &head, NULL) != GUILD_OK || head == 0)
        return;
    char name[BUS_CHECKPOINT_META_NAME_LEN + 1];
    bus_checkpoint_meta_name(head, name);
    void *raw = NULL;
    size_t len = 0;
    if (es_meta_get(s->store, name, &raw, &len) == GUILD_OK)
        s->last_signed = head;
    free(raw);
}

static void *signer_main(void *arg)
{
    bus_signer *s = arg;
    load_last_signed(s);
    pthread_mutex_lock(&s->lock);
    while (!s->stopping) {
        pthread_mutex_unlock(&s->lock);
        sign_if_moved(s);
        pthread_mutex_lock(&s->lock);
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        until.tv_sec += s->interval_ms / 1000;
        until.tv_nsec += (long)(s->interval_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        int rc = 0;
        while (!s->stopping && rc == 0)
            rc = pthread_cond_timedwait(&s->cond, &s->lock, &until);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

guild_status bus_signer_start(const bus_signer_options *opt, bus_signer **out, guild_error *err)
{
    if (!opt || !opt->store || !opt->key_path)
        return guild_error_set(err, GUILD_INVALID_REQUEST, 0, "a store and a key path are needed");
    bus_signer *s = guild_xcalloc(1, sizeof *s);
    guild_status st = bus_checkpoint_key_load(opt->key_path, true, &s->key, err);
    if (st != GUILD_OK) {
        free(s);
        return st;
    }
    s->store = opt->store;
    s->interval_ms = opt->interval_ms ? opt->interval_ms : interval_from_env();
    pthread_mutex_init(&s->lock, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &ca);
    pthread_condattr_destroy(&ca);
    if (pthread_create(&s->thread, NULL, signer_main, s) != 0) {
        pthread_cond_destroy(&s->cond);
        pthread_mutex_destroy(&s->lock);
        bus_checkpoint_key_clear(&s->key);
        free(s);
        return guild_error_set(err, GUILD_INTERNAL, 0, "cannot start the checkpoint signer");
    }
    *out = s;
    return GUILD_OK;
}

void bus_signer_stop(bus_signer *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->stopping = true;
    pthread_cond_broadcast(&s->cond);
    pthread_mutex_unlock(&s->lock);
    pthread_join(s->thread, NULL);
    sign_if_moved(s); /* the head as the service leaves it */
    pthread_cond_destroy(&s->cond);
    pthread_mutex_destroy(&s->lock);
    bus_checkpoint_key_clear(&s->key);
    free(s);
}

uint64_t bus_signer_count(bus_signer *s)
{
    pthread_mutex_lock(&s->lock);
    uint64_t n = s->count;
    pthread_mutex_unlock(&s->lock);
    return n;
}

/* ---- checking a store ------------------------------------------------------------- */

/* A signature that checked out on its own, waiting for the log check. */
typedef struct sig_ok {
    uint64_t position;
    int64_t time;
    uint8_t hash[ES_HASH_LEN];
    char key_id[GUILD_JWT_KID_MAX + 1];
} sig_ok;

typedef struct check_ctx {
    const char *domain;
    const guild_jwt_keyring *keys;
    bus_checkpoint_report *rep;
    sig_ok *v;
    size_t n, cap;
    es_progress_fn progress;
    void *progress_ctx;
} check_ctx;

static void report_bad(bus_checkpoint_report *rep, uint64_t position, const char *key_id,
                       const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static void report_bad(bus_checkpoint_report *rep, uint64_t position, const char *key_id,
                       const char *fmt, ...)
{
    rep->intact = false;
    rep->break_position = position;
    snprintf(rep->break_key_id, sizeof rep->break_key_id, "%s", key_id ? key_id : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(rep->what, sizeof rep->what, fmt, ap);
    va_end(ap);
}

/* The position in a meta name "sig.<20 digits>"; 0 if it is not one. */
static uint64_t name_position(const char *name)
{
    const char *d = name + strlen(BUS_CHECKPOINT_META_PREFIX);
    if (strlen(d) != 20)
        return 0;
    uint64_t v = 0;
    for (int i = 0; i < 20; i++) {
        if (d[i] < '0' || d[i] > '9' || v > (UINT64_MAX - 9) / 10)
            return 0;
        v = v * 10 + (uint64_t)(d[i] - '0');
    }
    return v;
}

/* Everything about one signature but the log: runs inside the meta scan. */
static int check_one(void *arg, const char *name, const void *value, size_t len)
{
    check_ctx *x = arg;
    bus_checkpoint_report *rep = x->rep;
    rep->found++;
    if (x->progress && rep->found % 4096 == 0)
        x->progress(x->progress_ctx, rep->found, 0);
    if (!rep->intact)
        return 0; /* past the first bad one: only counted */
    uint64_t at = name_position(name);
    bus_checkpoint_sig c;
    guild_error err = {0};
    if (at == 0) {
        report_bad(rep, 0, NULL, "a signature is stored under the malformed name %.40s", name);
        return 0;
    }
    if (bus_checkpoint_decode(value, len, &c, &err) != GUILD_OK) {
        report_bad(rep, at, NULL, "the signature does not decode: %s", err.message);
        return 0;
    }
    if (c.position != at) {
        report_bad(rep, at, c.key_id, "the signature stored for position %llu signs position %llu",
                   (unsigned long long)at, (unsigned long long)c.position);
        return 0;
    }
    if (strcmp(c.domain, x->domain) != 0) {
        report_bad(rep, at, c.key_id, "the signature is for the domain %s, not %s", c.domain,
                   x->domain);
        return 0;
    }
    if (x->keys) {
        const unsigned char *pk = guild_jwt_keyring_find(x->keys, c.key_id);
        if (!pk) {
            report_bad(rep, at, c.key_id, "signed by key %s, which is not a trusted key", c.key_id);
            return 0;
        }
        if (!bus_checkpoint_sig_ok(&c, pk)) {
            report_bad(rep, at, c.key_id, "the signature does not verify with key %s", c.key_id);
            return 0;
        }
    }
    if (x->n == x->cap) {
        x->cap = x->cap ? x->cap * 2 : 256;
        x->v = guild_xrealloc(x->v, x->cap * sizeof *x->v);
    }
    sig_ok *o = &x->v[x->n++];
    o->position = c.position;
    o->time = c.time;
    memcpy(o->hash, c.hash, ES_HASH_LEN);
    snprintf(o->key_id, sizeof o->key_id, "%s", c.key_id);
    return 0;
}

typedef struct log_probe {
    bool found;
    uint64_t position;
    uint8_t hash[ES_HASH_LEN];
} log_probe;

static int probe_record(void *ctx, const es_record *rec)
{
    log_probe *p = ctx;
    p->found = true;
    p->position = rec->position;
    memcpy(p->hash, rec->hash, ES_HASH_LEN);
    return 1;
}

/* Does the log hold, at o's position, a record with o's hash? */
static guild_status check_log(es_store *st, const sig_ok *o, bus_checkpoint_report *rep, bool *ok)
{
    log_probe p = {0};
    uint64_t next = 0;
    guild_status s = es_read_log(st, o->position, 1, probe_record, &p, &next);
    if (s != GUILD_OK)
        return s;
    *ok = false;
    char want[2 * ES_HASH_LEN + 1], got[2 * ES_HASH_LEN + 1];
    sodium_bin2hex(want, sizeof want, o->hash, ES_HASH_LEN);
    if (!p.found || next != o->position + 1) {
        uint64_t head = 0;
        es_log_head(st, &head, NULL);
        report_bad(rep, o->position, o->key_id,
                   "the log has no record at the signed position %llu (its last is %llu)",
                   (unsigned long long)o->position, (unsigned long long)head);
    } else if (p.position != o->position) {
        report_bad(rep, o->position, o->key_id,
                   "the record at the signed position %llu says position %llu",
                   (unsigned long long)o->position, (unsigned long long)p.position);
    } else if (sodium_memcmp(p.hash, o->hash, ES_HASH_LEN) != 0) {
        sodium_bin2hex(got, sizeof got, p.hash, ES_HASH_LEN);
        report_bad(rep, o->position, o->key_id,
                   "the log's hash at position %llu is %.16s…, the signature vouches for %.16s…",
                   (unsigned long long)o->position, got, want);
    } else {
        *ok = true;
    }
    return GUILD_OK;
}

guild_status bus_checkpoint_check(es_store *st, const char *domain, const guild_jwt_keyring *keys,
                                  bus_checkpoint_report *rep, es_progress_fn progress, void *ctx)
{
    memset(rep, 0, sizeof *rep);
    rep->intact = true;
    rep->keys_checked = keys != NULL;
    if (sodium_init() < 0)
        return GUILD_INTERNAL;
    check_ctx x = {
        .domain = domain, .keys = keys, .rep = rep, .progress = progress, .progress_ctx = ctx};
    /* Signatures are checked inside the scan, so only what the log check
     * needs is kept; every one kept comes before a bad one found there. */
    guild_status s = es_meta_scan(st, BUS_CHECKPOINT_META_PREFIX, check_one, &x);
    for (size_t i = 0; s == GUILD_OK && i < x.n; i++) {
        bool ok = false;
        s = check_log(st, &x.v[i], rep, &ok);
        if (s != GUILD_OK || !ok)
            break;
        rep->verified++;
        rep->last_position = x.v[i].position;
        rep->last_time = x.v[i].time;
        memcpy(rep->last_hash, x.v[i].hash, ES_HASH_LEN);
        snprintf(rep->last_key_id, sizeof rep->last_key_id, "%s", x.v[i].key_id);
    }
    if (progress && s == GUILD_OK)
        progress(ctx, rep->found, rep->found);
    free(x.v);
    return s;
}
