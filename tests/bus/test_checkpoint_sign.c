/*
 * test_checkpoint_sign.c — a domain service signs its chain head (bus/checkpoint.h):
 * the key file, the stored signature, the signer thread (at start, only when
 * the head moved, on stop), the store check that finds the first bad
 * signature, and a real `guild serve identity` that signs as it stops.
 *
 * Sections: helpers; keys; signatures; the signer; checking a store; the
 * service; suite.
 */
#include "bus/checkpoint.h"

#include "tests/support/check_util.h"
#include "tests/support/es_util.h"
#include "tests/support/guild_proc.h"
#include "tests/support/nats_server.h"
#include "tests/support/tmpdir.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static char *g_dir;

static void dir_setup(void)
{
    g_dir = tst_dir_new("sign");
}

static void dir_teardown(void)
{
    tst_dir_remove(g_dir);
    free(g_dir);
}

/* ---- helpers ------------------------------------------------------------------ */

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void key_path(char *out, size_t size)
{
    snprintf(out, size, "%s/keys/checkpoint.key", g_dir);
}

static es_store *store_open(void)
{
    char dir[600];
    snprintf(dir, sizeof dir, "%s/events", g_dir);
    mkdir(dir, 0755);
    es_store *st = NULL;
    ck_assert_status(tst_store_open(dir, "audit", 0, &st), GUILD_OK);
    return st;
}

static bus_checkpoint_key key_load(void)
{
    char path[600];
    key_path(path, sizeof path);
    bus_checkpoint_key k;
    guild_error err = {0};
    guild_status s = bus_checkpoint_key_load(path, true, &k, &err);
    ck_assert_msg(s == GUILD_OK, "key: %s", err.message);
    return k;
}

/* The signature stored for `position`; false when there is none. */
static bool sig_get(es_store *st, uint64_t position, bus_checkpoint_sig *out)
{
    char name[BUS_CHECKPOINT_META_NAME_LEN + 1];
    bus_checkpoint_meta_name(position, name);
    void *raw = NULL;
    size_t len = 0;
    if (es_meta_get(st, name, &raw, &len) != GUILD_OK)
        return false;
    guild_error err = {0};
    guild_status s = bus_checkpoint_decode(raw, len, out, &err);
    free(raw);
    ck_assert_msg(s == GUILD_OK, "stored signature does not decode: %s", err.message);
    return true;
}

static int count_one(void *ctx, const char *name, const void *value, size_t len)
{
    (void)name;
    (void)value;
    (void)len;
    (*(size_t *)ctx)++;
    return 0;
}

static size_t sig_count(es_store *st)
{
    size_t n = 0;
    ck_assert_status(es_meta_scan(st, BUS_CHECKPOINT_META_PREFIX, count_one, &n), GUILD_OK);
    return n;
}

/* Waits up to 10 s for a signature at `position`. */
static bool sig_wait(es_store *st, uint64_t position, bus_checkpoint_sig *out)
{
    for (int i = 0; i < 1000; i++) {
        if (sig_get(st, position, out))
            return true;
        sleep_ms(10);
    }
    return false;
}

static void head(es_store *st, uint64_t *position, uint8_t hash[ES_HASH_LEN])
{
    ck_assert_status(es_log_head(st, position, hash), GUILD_OK);
}

/* ---- keys ------------------------------------------------------------------------ */

START_TEST(test_key_file_is_created_private_and_reused)
{
    char path[600];
    key_path(path, sizeof path);
    bus_checkpoint_key k = key_load();
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0600);
    ck_assert_int_eq(sb.st_size, 64);
    ck_assert_int_eq(strlen(k.key_id), GUILD_KEY_ID_LEN);

    bus_checkpoint_key again = key_load();
    ck_assert_mem_eq(again.pk, k.pk, sizeof k.pk);
    ck_assert_str_eq(again.key_id, k.key_id);

    char missing[700];
    snprintf(missing, sizeof missing, "%s/nowhere/checkpoint.key", g_dir);
    bus_checkpoint_key none;
    ck_assert_status(bus_checkpoint_key_load(missing, false, &none, NULL), GUILD_NOT_FOUND);
    ck_assert_int_ne(stat(missing, &sb), 0);
}
END_TEST

START_TEST(test_a_key_file_that_is_not_a_key_is_refused)
{
    char path[600];
    key_path(path, sizeof path);
    bus_checkpoint_key k = key_load();
    k.sk[40] ^= 1; /* the public half no longer belongs to the seed */
    ck_assert_int_eq(tst_file_write(path, k.sk, sizeof k.sk), 0);
    bus_checkpoint_key bad;
    ck_assert_status(bus_checkpoint_key_load(path, true, &bad, NULL), GUILD_CORRUPT);
    ck_assert_int_eq(tst_file_write(path, "short", 5), 0);
    ck_assert_status(bus_checkpoint_key_load(path, true, &bad, NULL), GUILD_CORRUPT);
}
END_TEST

START_TEST(test_public_key_hex_parses_strictly)
{
    unsigned char pk[crypto_sign_PUBLICKEYBYTES];
    char good[65];
    memset(good, 'a', 64);
    good[64] = '\0';
    ck_assert(bus_checkpoint_pubkey_parse(good, pk));
    ck_assert_int_eq(pk[0], 0xaa);
    good[63] = 'g';
    ck_assert(!bus_checkpoint_pubkey_parse(good, pk));
    ck_assert(!bus_checkpoint_pubkey_parse("abcd", pk));
    ck_assert(!bus_checkpoint_pubkey_parse(NULL, pk));
}
END_TEST

/* ---- signatures -------------------------------------------------------------------- */

START_TEST(test_signed_head_is_stored_under_its_position_and_verifies)
{
    es_store *st = store_open();
    bus_checkpoint_key k = key_load();
    ck_assert_status(tst_append_quiet(st, "audit-1", ES_ANY_VERSION, 7), GUILD_OK);
    uint64_t pos;
    uint8_t hash[ES_HASH_LEN];
    head(st, &pos, hash);

    bus_checkpoint_sig made;
    ck_assert_status(bus_checkpoint_sign_head(st, &k, &made, NULL), GUILD_OK);
    char name[BUS_CHECKPOINT_META_NAME_LEN + 1];
    bus_checkpoint_meta_name(pos, name);
    ck_assert_str_eq(name, "sig.00000000000000000007");

    bus_checkpoint_sig c;
    ck_assert(sig_get(st, pos, &c));
    ck_assert_str_eq(c.domain, "audit");
    ck_assert_uint_eq(c.position, 7);
    ck_assert_mem_eq(c.hash, hash, ES_HASH_LEN);
    ck_assert_str_eq(c.key_id, k.key_id);
    ck_assert_int_eq(c.time, made.time);
    ck_assert(bus_checkpoint_sig_ok(&c, k.pk));

    /* Any signed field changed, or another key: it no longer verifies. */
    bus_checkpoint_sig t = c;
    t.hash[0] ^= 1;
    ck_assert(!bus_checkpoint_sig_ok(&t, k.pk));
    t = c;
    t.position++;
    ck_assert(!bus_checkpoint_sig_ok(&t, k.pk));
    t = c;
    t.domain[0] = 'b';
    ck_assert(!bus_checkpoint_sig_ok(&t, k.pk));
    unsigned char other_pk[crypto_sign_PUBLICKEYBYTES], other_sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_keypair(other_pk, other_sk);
    ck_assert(!bus_checkpoint_sig_ok(&c, other_pk));
    es_store_close(st);
}
END_TEST

START_TEST(test_stored_form_roundtrips_and_rejects_garbage)
{
    bus_checkpoint_sig c = {.domain = "talent", .position = 42, .time = -5, .key_id = "kid"};
    memset(c.hash, 0xab, sizeof c.hash);
    memset(c.sig, 0xcd, sizeof c.sig);
    uint8_t *bytes;
    size_t len;
    bus_checkpoint_encode(&c, &bytes, &len);
    bus_checkpoint_sig d;
    ck_assert_status(bus_checkpoint_decode(bytes, len, &d, NULL), GUILD_OK);
    ck_assert_str_eq(d.domain, c.domain);
    ck_assert_uint_eq(d.position, c.position);
    ck_assert_int_eq(d.time, c.time);
    ck_assert_str_eq(d.key_id, c.key_id);
    ck_assert_mem_eq(d.hash, c.hash, sizeof c.hash);
    ck_assert_mem_eq(d.sig, c.sig, sizeof c.sig);
    guild_error err = {0};
    ck_assert_status(bus_checkpoint_decode(bytes, len - 1, &d, &err), GUILD_CORRUPT);
    ck_assert_status(bus_checkpoint_decode("\x80", 1, &d, &err), GUILD_CORRUPT); /* {} */
    ck_assert_msg(strstr(err.message, "missing"), "why: %s", err.message);
    free(bytes);
}
END_TEST

START_TEST(test_an_empty_log_is_not_signed)
{
    es_store *st = store_open();
    bus_checkpoint_key k = key_load();
    ck_assert_status(bus_checkpoint_sign_head(st, &k, NULL, NULL), GUILD_NOT_FOUND);
    ck_assert_uint_eq(sig_count(st), 0);
    es_store_close(st);
}
END_TEST

/* ---- the signer --------------------------------------------------------------------- */

static bus_signer *signer_start(es_store *st, unsigned interval_ms)
{
    char path[600];
    key_path(path, sizeof path);
    bus_signer_options o = {.store = st, .key_path = path, .interval_ms = interval_ms};
    bus_signer *s = NULL;
    guild_error err = {0};
    guild_status rc = bus_signer_start(&o, &s, &err);
    ck_assert_msg(rc == GUILD_OK, "signer: %s", err.message);
    return s;
}

START_TEST(test_signer_signs_at_start_then_only_when_the_head_moved)
{
    es_store *st = store_open();
    ck_assert_status(tst_append_quiet(st, "audit-1", ES_ANY_VERSION, 3), GUILD_OK);
    bus_signer *s = signer_start(st, 40);
    bus_checkpoint_sig c;
    ck_assert_msg(sig_wait(st, 3, &c), "the head at start was not signed");
    sleep_ms(400); /* ten intervals with nothing new */
    ck_assert_uint_eq(sig_count(st), 1);
    ck_assert_uint_eq(bus_signer_count(s), 1);

    ck_assert_status(tst_append_quiet(st, "audit-2", ES_ANY_VERSION, 2), GUILD_OK);
    ck_assert_msg(sig_wait(st, 5, &c), "the moved head was not signed");
    bus_checkpoint_key k = key_load();
    ck_assert(bus_checkpoint_sig_ok(&c, k.pk));
    bus_signer_stop(s);
    ck_assert_uint_eq(sig_count(st), 2);
    es_store_close(st);
}
END_TEST

START_TEST(test_signer_signs_the_head_it_leaves_on_stop)
{
    es_store *st = store_open();
    ck_assert_status(tst_append_quiet(st, "audit-1", ES_ANY_VERSION, 2), GUILD_OK);
    bus_signer *s = signer_start(st, 3600 * 1000);
    bus_checkpoint_sig c;
    ck_assert(sig_wait(st, 2, &c));
    ck_assert_status(tst_append_quiet(st, "audit-1", ES_ANY_VERSION, 3), GUILD_OK);
    ck_assert(!sig_get(st, 5, &c)); /* an hour to go */
    bus_signer_stop(s);
    ck_assert_msg(sig_get(st, 5, &c), "the head was not signed on stop");
    uint8_t hash[ES_HASH_LEN];
    uint64_t pos;
    head(st, &pos, hash);
    ck_assert_mem_eq(c.hash, hash, ES_HASH_LEN);
    es_store_close(st);
}
END_TEST

START_TEST(test_a_restarted_signer_does_not_sign_a_signed_head_again)
{
    es_store *st = store_open();
    ck_assert_status(tst_append_quiet(st, "audit-1", ES_ANY_VERSION, 4), GUILD_OK);
    bus_signer *s = signer_start(st, 3600 * 1000);
    bus_checkpoint_sig first, later;
    ck_assert(sig_wait(st, 4, &first));
    bus_signer_stop(s);
    s = signer_start(st, 20);
    sleep_ms(200);
    ck_assert_uint_eq(bus_signer_count(s), 0);
    bus_signer_stop(s);
    ck_assert(sig_get(st, 4, &later));
    ck_assert_int_eq(later.time, first.time);
    ck_assert_uint_eq(sig_count(st), 1);
    es_store_close(st);
}
END_TEST

/* ---- checking a store ------------------------------------------------------------------ */

/* Stores a signature for (position, hash) made with key k, as a forger
 * holding the key would. */
static void forge(es_store *st, const bus_checkpoint_key *k, uint64_t position,
                  const uint8_t hash[ES_HASH_LEN], bool break_sig)
{
    bus_checkpoint_sig c = {.domain = "audit", .position = position, .time = 1};
    memcpy(c.hash, hash, ES_HASH_LEN);
    snprintf(c.key_id, sizeof c.key_id, "%s", k->key_id);
    uint8_t msg[BUS_CHECKPOINT_MESSAGE_MAX];
    size_t n = bus_checkpoint_message(&c, msg);
    crypto_sign_detached(c.sig, NULL, msg, n, k->sk);
    if (break_sig)
        c.sig[5] ^= 1;
    uint8_t *bytes;
    size_t len;
    bus_checkpoint_encode(&c, &bytes, &len);
    char name[BUS_CHECKPOINT_META_NAME_LEN + 1];
    bus_checkpoint_meta_name(position, name);
    ck_assert_status(es_meta_put(st, name, bytes, len), GUILD_OK);
    free(bytes);
}

static guild_jwt_keyring ring_of(const unsigned char *pk)
{
    guild_jwt_keyring r;
    guild_jwt_keyring_init(&r);
    ck_assert_status(guild_jwt_keyring_add(&r, NULL, pk), GUILD_OK);
    return r;
}

START_TEST(test_check_passes_good_signatures_and_names_the_first_bad_one)
{
    es_store *st = store_open();
    bus_checkpoint_key k = key_load();
    for (int i = 0; i < 3; i++) {
        ck_assert_status(tst_append_quiet(st, "audit-1", ES_ANY_VERSION, 3), GUILD_OK);
        ck_assert_status(bus_checkpoint_sign_head(st, &k, NULL, NULL), GUILD_OK);
    }
    guild_jwt_keyring ring = ring_of(k.pk);
    bus_checkpoint_report rep;
    ck_assert_status(bus_checkpoint_check(st, "audit", &ring, &rep, NULL, NULL), GUILD_OK);
    ck_assert_msg(rep.intact, "good signatures: %s", rep.what);
    ck_assert(rep.keys_checked);
    ck_assert_uint_eq(rep.found, 3);
    ck_assert_uint_eq(rep.verified, 3);
    ck_assert_uint_eq(rep.last_position, 9);

    /* Validly signed, but not what the log holds at 6; at 9 a broken
     * signature: the first bad one is 6. */
    uint8_t wrong[ES_HASH_LEN] = {1, 2, 3};
    forge(st, &k, 6, wrong, false);
    uint64_t pos;
    uint8_t hash[ES_HASH_LEN];
    head(st, &pos, hash);
    forge(st, &k, 9, hash, true);
    ck_assert_status(bus_checkpoint_check(st, "audit", &ring, &rep, NULL, NULL), GUILD_OK);
    ck_assert(!rep.intact);
    ck_assert_uint_eq(rep.break_position, 6);
    ck_assert_uint_eq(rep.verified, 1);
    ck_assert_uint_eq(rep.found, 3);
    ck_assert_msg(strstr(rep.what, "hash"), "why: %s", rep.what);

    /* Without a trusted key the log check still runs. */
    ck_assert_status(bus_checkpoint_check(st, "audit", NULL, &rep, NULL, NULL), GUILD_OK);
    ck_assert(!rep.keys_checked);
    ck_assert_uint_eq(rep.break_position, 6);
    es_store_close(st);
}
END_TEST

START_TEST(test_check_refuses_signatures_by_an_untrusted_key)
{
    es_store *st = store_open();
    bus_checkpoint_key k = key_load();
    ck_assert_status(tst_append_quiet(st, "audit-1", ES_ANY_VERSION, 2), GUILD_OK);
    ck_assert_status(bus_checkpoint_sign_head(st, &k, NULL, NULL), GUILD_OK);
    unsigned char pinned[crypto_sign_PUBLICKEYBYTES], sk[crypto_sign_SECRETKEYBYTES];
    crypto_sign_keypair(pinned, sk);
    guild_jwt_keyring ring = ring_of(pinned);
    bus_checkpoint_report rep;
    ck_assert_status(bus_checkpoint_check(st, "audit", &ring, &rep, NULL, NULL), GUILD_OK);
    ck_assert(!rep.intact);
    ck_assert_uint_eq(rep.break_position, 2);
    ck_assert_str_eq(rep.break_key_id, k.key_id);
    ck_assert_msg(strstr(rep.what, "not a trusted key"), "why: %s", rep.what);

    /* Another domain's store does not lend its signatures. */
    ring = ring_of(k.pk);
    ck_assert_status(bus_checkpoint_check(st, "talent", &ring, &rep, NULL, NULL), GUILD_OK);
    ck_assert(!rep.intact);
    es_store_close(st);
}
END_TEST

/* ---- the service ---------------------------------------------------------------------- */

START_TEST(test_service_signs_its_head_when_it_stops)
{
    tst_nats srv;
    ck_assert_int_eq(tst_nats_start(&srv), 0);
    natsConnection *nc = NULL;
    ck_assert_int_eq(tst_nats_connect(&srv, &nc), 0);
    tst_guild identity;
    ck_assert_int_eq(tst_guild_start(&identity, "identity", g_dir, srv.url), 0);
    tst_user u;
    ck_assert_int_eq(tst_guild_signup(nc, "signer@example.com", false, &u), 0);
    ck_assert_int_eq(tst_guild_stop(&identity), 0);
    natsConnection_Destroy(nc);
    tst_nats_stop(&srv);

    char dir[600], path[700];
    snprintf(dir, sizeof dir, "%s/identity/events", g_dir);
    snprintf(path, sizeof path, "%s/identity/keys/checkpoint.key", g_dir);
    struct stat sb;
    ck_assert_int_eq(stat(path, &sb), 0);
    ck_assert_int_eq(sb.st_mode & 0777, 0600);
    bus_checkpoint_key k;
    ck_assert_status(bus_checkpoint_key_load(path, false, &k, NULL), GUILD_OK);

    es_store *st = NULL;
    ck_assert_status(tst_store_open_ro(dir, &st), GUILD_OK);
    uint64_t pos;
    uint8_t hash[ES_HASH_LEN];
    head(st, &pos, hash);
    ck_assert_uint_gt(pos, 0);
    bus_checkpoint_sig c;
    ck_assert_msg(sig_get(st, pos, &c), "no signature at the head %llu", (unsigned long long)pos);
    ck_assert_str_eq(c.domain, "identity");
    ck_assert_mem_eq(c.hash, hash, ES_HASH_LEN);
    ck_assert(bus_checkpoint_sig_ok(&c, k.pk));
    es_store_close(st);
}
END_TEST

static Suite *sign_suite(void)
{
    Suite *s = suite_create("bus/checkpoint_sign");
    TCase *tc = tcase_create("keys");
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
    tcase_add_test(tc, test_key_file_is_created_private_and_reused);
    tcase_add_test(tc, test_a_key_file_that_is_not_a_key_is_refused);
    tcase_add_test(tc, test_public_key_hex_parses_strictly);
    suite_add_tcase(s, tc);

    tc = tcase_create("signatures");
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
    tcase_add_test(tc, test_signed_head_is_stored_under_its_position_and_verifies);
    tcase_add_test(tc, test_stored_form_roundtrips_and_rejects_garbage);
    tcase_add_test(tc, test_an_empty_log_is_not_signed);
    tcase_add_test(tc, test_signer_signs_at_start_then_only_when_the_head_moved);
    tcase_add_test(tc, test_signer_signs_the_head_it_leaves_on_stop);
    tcase_add_test(tc, test_a_restarted_signer_does_not_sign_a_signed_head_again);
    tcase_add_test(tc, test_check_passes_good_signatures_and_names_the_first_bad_one);
    tcase_add_test(tc, test_check_refuses_signatures_by_an_untrusted_key);
    suite_add_tcase(s, tc);

    tc = tcase_create("service");
    tcase_add_unchecked_fixture(tc, tst_base_setup, tst_base_teardown);
    tcase_add_checked_fixture(tc, dir_setup, dir_teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_service_signs_its_head_when_it_stops);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tst_run_suite(sign_suite());
}
