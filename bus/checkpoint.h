/*
 * checkpoint.h — signed checkpoints: a domain service vouches for its log.
 *
 * The hash chain (eventstore/record.h) shows that a log is consistent with
 * itself, not that it is the log the service wrote: whoever can write the
 * files can rewrite a suffix and recompute every later hash. So the service
 * signs its chain head — {domain, position, hash, time} — with an Ed25519
 * key of its own every few seconds (only when the head moved) and when it
 * stops cleanly. A rewritten history then no longer has the signed hash at
 * the signed position, and no new signature can be made without the key.
 *
 * The key: <data>/<domain>/keys/checkpoint.key, 64 raw bytes (libsodium's
 * secret key: seed, then public key), mode 0600, created on first start.
 * Its public key (hex) is what auditors pin.
 *
 * A signature is stored in the event store's meta database under
 * "sig.<position as 20 decimal digits>" (so name order is position order),
 * as a msgpack map:
 *
 *   key       type     notes
 *   domain    str
 *   position  uint     log position of the signed head
 *   hash      bin 32   hash of the record at that position
 *   time      int      Unix ns when it was signed
 *   key_id    str      guild_key_id of the public key (common/jwt.h)
 *   sig       bin 64   Ed25519 signature of the message below
 *
 * The signed message is fixed bytes, so any Ed25519 library can check it:
 *
 *   bytes  what
 *   20     "guild-checkpoint-v1" and a NUL
 *   1      n, the domain's length (1..BUS_CHECKPOINT_DOMAIN_MAX)
 *   n      the domain
 *   8      position, u64 big-endian
 *   32     hash
 *   8      time, i64 big-endian (two's complement)
 *
 * Sections: keys, signatures, the signer thread, checking a store.
 */
#ifndef GUILD_BUS_CHECKPOINT_H
#define GUILD_BUS_CHECKPOINT_H

#include "common/jwt.h"
#include "common/status.h"
#include "eventstore/es.h"

#include <sodium.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BUS_CHECKPOINT_META_PREFIX "sig."
#define BUS_CHECKPOINT_META_NAME_LEN 24 /* "sig." and 20 digits, without the NUL */
#define BUS_CHECKPOINT_DOMAIN_MAX 64
#define BUS_CHECKPOINT_MESSAGE_MAX (20 + 1 + BUS_CHECKPOINT_DOMAIN_MAX + 8 + ES_HASH_LEN + 8)
#define BUS_CHECKPOINT_INTERVAL_MS 10000

/* ---- keys ------------------------------------------------------------------ */

typedef struct bus_checkpoint_key {
    unsigned char sk[crypto_sign_SECRETKEYBYTES];
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    char key_id[GUILD_KEY_ID_LEN + 1];
} bus_checkpoint_key;

/* Writes <data_dir>/<domain>/keys/checkpoint.key into out. */
void bus_checkpoint_key_path(const char *data_dir, const char *domain, char *out, size_t size);

/* Reads the key file at `path`; when it does not exist and `create` is set,
 * makes a new key pair and writes it there (mode 0600, its directory 0700
 * if missing). GUILD_NOT_FOUND (absent, not creating), GUILD_IO (cannot
 * read or write; errno in err->origin), GUILD_CORRUPT (not 64 bytes, or the
 * public half does not belong to the seed). *out is written only on
 * success; clear it with bus_checkpoint_key_clear. */
guild_status bus_checkpoint_key_load(const char *path, bool create, bus_checkpoint_key *out,
                                     guild_error *err);

/* Wipes the secret key. */
void bus_checkpoint_key_clear(bus_checkpoint_key *k);

/* Parses 64 hex digits into a public key; false if s is not that. */
bool bus_checkpoint_pubkey_parse(const char *s, unsigned char pk[crypto_sign_PUBLICKEYBYTES]);

/* ---- signatures -------------------------------------------------------------- */

typedef struct bus_checkpoint_sig {
    char domain[BUS_CHECKPOINT_DOMAIN_MAX + 1];
    uint64_t position;
    uint8_t hash[ES_HASH_LEN];
    int64_t time;
    char key_id[GUILD_JWT_KID_MAX + 1];
    uint8_t sig[crypto_sign_BYTES];
} bus_checkpoint_sig;

/* "sig." and the position as 20 decimal digits, into out. */
void bus_checkpoint_meta_name(uint64_t position, char out[BUS_CHECKPOINT_META_NAME_LEN + 1]);

/* The bytes that are signed (see the table above); returns their length. */
size_t bus_checkpoint_message(const bus_checkpoint_sig *c, uint8_t out[BUS_CHECKPOINT_MESSAGE_MAX]);

/* Encodes c as the msgpack map above: *out is malloc'd, owned by the
 * caller. */
void bus_checkpoint_encode(const bus_checkpoint_sig *c, uint8_t **out, size_t *len);

/* Decodes a stored signature (unknown keys are skipped). GUILD_CORRUPT,
 * with why in err, when a field is missing or of the wrong type. */
guild_status bus_checkpoint_decode(const void *raw, size_t len, bus_checkpoint_sig *out,
                                   guild_error *err);

/* True if c->sig is the signature of c's message by pk. */
bool bus_checkpoint_sig_ok(const bus_checkpoint_sig *c,
                           const unsigned char pk[crypto_sign_PUBLICKEYBYTES]);

/* Signs the store's current log head with `key` and stores it under
 * sig.<position>, durably. The store must be writable; its domain is the
 * one signed. *out (may be NULL) receives what was stored. GUILD_NOT_FOUND
 * when the log is empty: there is nothing to vouch for. */
guild_status bus_checkpoint_sign_head(es_store *st, const bus_checkpoint_key *key,
                                      bus_checkpoint_sig *out, guild_error *err);

/* ---- the signer thread --------------------------------------------------------- */

typedef struct bus_signer bus_signer;

typedef struct bus_signer_options {
    es_store *store;      /* writable; borrowed, must outlive the signer */
    const char *key_path; /* created if missing */
    /* Between signatures; 0 = $GUILD_CHECKPOINT_SECONDS when set, else
     * BUS_CHECKPOINT_INTERVAL_MS. */
    unsigned interval_ms;
} bus_signer_options;

/* Loads (or creates) the key and starts a thread that signs the log head
 * at once if it is not signed yet, then every interval when it moved. *out
 * is written only on success. */
guild_status bus_signer_start(const bus_signer_options *opt, bus_signer **out, guild_error *err);

/* Stops the thread, signs the head one last time if it moved (call it once
 * no more appends come, before the store closes), and frees the signer.
 * NULL is allowed. */
void bus_signer_stop(bus_signer *s);

/* Signatures stored by this signer since it started. */
uint64_t bus_signer_count(bus_signer *s);

/* ---- checking a store ------------------------------------------------------------ */

typedef struct bus_checkpoint_report {
    uint64_t found;          /* signatures stored */
    uint64_t verified;       /* checked out, in position order, before the first bad one */
    bool keys_checked;       /* signatures were checked against trusted keys */
    bool intact;             /* no bad signature */
    uint64_t break_position; /* position of the first bad one (0 if none) */
    char break_key_id[GUILD_JWT_KID_MAX + 1];
    char what[256]; /* what is wrong with it, for a person */
    /* The last signature that checked out. */
    uint64_t last_position;
    int64_t last_time;
    uint8_t last_hash[ES_HASH_LEN];
    char last_key_id[GUILD_JWT_KID_MAX + 1];
} bus_checkpoint_report;

/* Checks every stored signature of `domain`'s store `st` (read-only is
 * fine), in position order, up to the first bad one: it decodes, is stored
 * under its own position, names `domain`, is signed by one of `keys` (NULL:
 * no key is trusted, this check is skipped and keys_checked stays false)
 * with a signature that verifies, and the log holds a record at that
 * position carrying exactly that hash. progress (may be NULL) is called now
 * and then with signatures looked at. Returns GUILD_OK when the check ran
 * (see rep->intact), or a failure to read the store. */
guild_status bus_checkpoint_check(es_store *st, const char *domain, const guild_jwt_keyring *keys,
                                  bus_checkpoint_report *rep, es_progress_fn progress, void *ctx);

#endif
