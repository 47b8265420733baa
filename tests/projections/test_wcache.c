/*
 * test_wcache.c — the write-back cache of a batch (projections/wcache.h),
 * on its own: entries made and found by (db, key), values set as bytes or
 * absent, the dirty entries sorted into write order (checked against an
 * order the test computes itself, on both the one-thread and the two-thread
 * path), and the cache emptied in place (clear) or behind (clear_behind).
 * Keys come from a fixed-seed xorshift64. Long loops check with REQUIRE:
 * ck_assert marks a point on every pass, slow over 200,000 entries.
 */
#include "projections/wcache.h"

#include "tests/support/check_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(cond, ...)                                                                         \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ck_abort_msg(__VA_ARGS__);                                                             \
    } while (0)

static size_t rng_below(uint64_t *s, size_t n)
{
    return (size_t)(tst_rng_next(s) % n);
}

/* A (db, key) pair as the test keeps it. */
#define KEY_MAX 40
typedef struct kref {
    int db;
    size_t klen;
    uint8_t key[KEY_MAX];
} kref;

/* Write order as the test understands it: db, then the bytes, then the
 * shorter of two keys one of which begins the other. */
static int kref_cmp(const void *a, const void *b)
{
    const kref *x = a, *y = b;
    if (x->db != y->db)
        return x->db < y->db ? -1 : 1;
    int c = memcmp(x->key, y->key, x->klen < y->klen ? x->klen : y->klen);
    if (c)
        return c;
    return x->klen < y->klen ? -1 : x->klen > y->klen;
}

static bool entry_is(const prj_wentry *e, int db, const void *key, size_t klen)
{
    return e && e->db == db && e->klen == klen && memcmp(e->key, key, klen) == 0;
}

/* A row key "row/<i>" (5 to 10 bytes: either side of 8). */
static size_t row_key(char *buf, size_t i)
{
    return (size_t)snprintf(buf, 32, "row/%zu", i);
}

/* Makes rows [from, to) of db with their key as value; all new. */
static void fill_rows(prj_wcache *c, int db, size_t from, size_t to)
{
    char k[32];
    for (size_t i = from; i < to; i++) {
        size_t kl = row_key(k, i);
        bool created;
        prj_wentry *e = prj_wcache_get(c, db, k, kl, &created);
        REQUIRE(created && !e->present && !e->dirty && !e->val && !e->json && !e->obj,
                "row %zu not made afresh", i);
        prj_wcache_set_bytes(c, e, k, kl);
    }
}

/* Rows [from, to) of db are there, holding their key, or all gone. */
static void check_rows(prj_wcache *c, int db, size_t from, size_t to, bool there)
{
    char k[32];
    for (size_t i = from; i < to; i++) {
        size_t kl = row_key(k, i);
        prj_wentry *e = prj_wcache_lookup(c, db, k, kl);
        if (!there) {
            REQUIRE(!e, "row %zu still there", i);
            continue;
        }
        REQUIRE(entry_is(e, db, k, kl) && e->present && e->dirty && e->vlen == kl &&
                    memcmp(e->val, k, kl) == 0,
                "row %zu wrong", i);
    }
}

/* ---- get, find, lookup ---------------------------------------------------------- */

START_TEST(an_entry_is_found_by_its_own_db_and_key_only)
{
    /* Beginnings of one text: shorter than 8 bytes, 8, longer; and some with
     * one byte changed (pos): sharing their first 8 bytes, or with zeros. */
    static const char text[] = "abcdefghijklmnopqrstuvwxyz0123456789ABCD";
    static const struct {
        size_t len;
        int pos;
        char byte;
    } shapes[] = {{1, -1, 0},    {2, -1, 0},  {7, -1, 0},  {8, -1, 0},  {9, -1, 0},
                  {10, -1, 0},   {16, -1, 0}, {40, -1, 0}, {8, 7, 'i'}, {9, 8, 0},
                  {16, 15, 'q'}, {1, 0, 0},   {2, 0, 0},   {3, 1, 0}};
    enum { n = sizeof shapes / sizeof shapes[0] };
    uint8_t keys[n][KEY_MAX];
    size_t lens[n];
    for (size_t i = 0; i < n; i++) {
        memcpy(keys[i], text, KEY_MAX);
        if (shapes[i].pos >= 0)
            keys[i][shapes[i].pos] = (uint8_t)shapes[i].byte;
        lens[i] = shapes[i].len;
    }
    prj_wcache c;
    prj_wcache_init(&c);
    ck_assert_ptr_null(prj_wcache_lookup(&c, 0, "a", 1));
    ck_assert_ptr_null(prj_wcache_find(&c, 0, "a", 1, false));
    prj_wentry *made[n];
    for (size_t i = 0; i < n; i++) {
        bool created = false;
        made[i] = prj_wcache_get(&c, 0, keys[i], lens[i], &created);
        ck_assert_msg(created, "key %zu", i);
        ck_assert(entry_is(made[i], 0, keys[i], lens[i]));
        ck_assert(!made[i]->present && !made[i]->dirty && !made[i]->val);
    }
    ck_assert_uint_eq(c.count, n);
    for (size_t i = 0; i < n; i++) {
        bool created = true;
        ck_assert_ptr_eq(prj_wcache_get(&c, 0, keys[i], lens[i], &created), made[i]);
        ck_assert(!created);
        ck_assert_ptr_eq(prj_wcache_lookup(&c, 0, keys[i], lens[i]), made[i]);
        ck_assert_ptr_eq(prj_wcache_find(&c, 0, keys[i], lens[i], false), made[i]);
        ck_assert_ptr_eq(prj_wcache_find(&c, 0, keys[i], lens[i], true), made[i]);
        ck_assert_ptr_null(prj_wcache_lookup(&c, 1, keys[i], lens[i]));
        ck_assert_ptr_null(prj_wcache_lookup(&c, -1, keys[i], lens[i]));
        /* One byte changed, or the length one shorter or longer: another
         * key, found only if it is one of the table's. */
        uint8_t buf[KEY_MAX + 1];
        for (size_t len = lens[i] - 1; len <= lens[i] + 1; len++) {
            memset(buf, 0, sizeof buf);
            memcpy(buf, keys[i], lens[i]);
            for (size_t pos = 0; pos <= len; pos++) {
                if (pos < len)
                    buf[pos] ^= 0x01;
                if (len == lens[i] && pos == len)
                    continue; /* the key itself */
                prj_wentry *want = NULL;
                for (size_t j = 0; j < n; j++)
                    if (lens[j] == len && memcmp(keys[j], buf, len) == 0)
                        want = made[j];
                ck_assert_ptr_eq(prj_wcache_lookup(&c, 0, buf, len), want);
                if (pos < len)
                    buf[pos] ^= 0x01;
            }
        }
    }
    ck_assert_uint_eq(c.count, n);
    /* The same keys in db 1 are other entries. */
    for (size_t i = 0; i < n; i++) {
        prj_wentry *e = prj_wcache_find(&c, 1, keys[i], lens[i], true);
        ck_assert(e != made[i] && entry_is(e, 1, keys[i], lens[i]));
        ck_assert_ptr_eq(prj_wcache_lookup(&c, 0, keys[i], lens[i]), made[i]);
    }
    ck_assert_uint_eq(c.count, 2 * n);
    /* Entries keep their place while the table grows under them. */
    fill_rows(&c, 2, 0, 50000);
    ck_assert_uint_eq(c.count, 2 * n + 50000);
    for (size_t i = 0; i < n; i++)
        ck_assert_ptr_eq(prj_wcache_lookup(&c, 0, keys[i], lens[i]), made[i]);
    check_rows(&c, 2, 0, 50000, true);
    prj_wcache_release(&c);
}
END_TEST

/* ---- values ------------------------------------------------------------------------ */

START_TEST(set_bytes_keeps_a_copy_and_set_absent_clears_present)
{
    prj_wcache c;
    prj_wcache_init(&c);
    bool created;
    prj_wentry *e = prj_wcache_get(&c, 0, "k1", 2, &created);
    char buf[] = "hello";
    prj_wcache_set_bytes(&c, e, buf, 5);
    memcpy(buf, "XXXXX", 5);
    ck_assert(e->present && e->dirty && e->vlen == 5 && e->val != (uint8_t *)buf);
    ck_assert_mem_eq(e->val, "hello", 5);
    ck_assert(c.n_dirty == 1 && c.dirty[0] == e);
    /* Written again, same length and another: still one dirty entry. */
    prj_wcache_set_bytes(&c, e, "world", 5);
    ck_assert_mem_eq(e->val, "world", 5);
    prj_wcache_set_bytes(&c, e, "a longer value", 14);
    ck_assert(e->vlen == 14 && memcmp(e->val, "a longer value", 14) == 0);
    prj_wcache_set_bytes(&c, e, "", 0);
    ck_assert(e->present && e->vlen == 0 && c.n_dirty == 1);
    ck_assert_ptr_eq(prj_wcache_lookup(&c, 0, "k1", 2), e);
    prj_wcache_set_absent(&c, e);
    ck_assert(!e->present && e->dirty && !e->val && !e->json && !e->obj && c.n_dirty == 1);
    prj_wcache_set_bytes(&c, e, "back", 4);
    ck_assert(e->present && e->vlen == 4 && memcmp(e->val, "back", 4) == 0);
    /* An entry never written is absent and clean until set_absent. */
    prj_wentry *f = prj_wcache_get(&c, 0, "k2", 2, &created);
    ck_assert(created && !f->present && !f->dirty);
    ck_assert_uint_eq(c.n_dirty, 1);
    prj_wcache_set_absent(&c, f);
    ck_assert(!f->present && f->dirty && c.n_dirty == 2 && c.dirty[1] == f && c.count == 2);
    prj_wcache_release(&c);
}
END_TEST

/* ---- sorting the dirty entries ------------------------------------------------------ */

/* A random key: random bytes, a skill-index-like key ("javascript\0",
 * level, id over a small alphabet: long common prefixes), the beginning
 * of the last key made, or a short key of zeros and a few bytes. */
static size_t random_key(uint64_t *s, uint8_t *k, const kref *last)
{
    static const uint8_t few[] = {0, 1, 'a', 0xff};
    size_t n;
    switch (rng_below(s, 4)) {
    case 0:
        n = 1 + rng_below(s, KEY_MAX);
        for (size_t i = 0; i < n; i++)
            k[i] = (uint8_t)tst_rng_next(s);
        return n;
    case 1:
        memcpy(k, "javascript\0", 11);
        k[11] = (uint8_t)rng_below(s, 6);
        n = 12 + 1 + rng_below(s, KEY_MAX - 12);
        for (size_t i = 12; i < n; i++)
            k[i] = (uint8_t)('a' + rng_below(s, 3));
        return n;
    case 2:
        if (last) {
            n = 1 + rng_below(s, last->klen);
            memcpy(k, last->key, n);
            return n;
        }
        /* fall through */
    default:
        n = 1 + rng_below(s, 10);
        for (size_t i = 0; i < n; i++)
            k[i] = few[rng_below(s, 4)];
        return n;
    }
}

/* Fills c with `want` dirty entries of distinct random (db, key), written
 * as bytes or absent, and some clean ones beside them; returns their refs. */
static kref *fill_dirty(prj_wcache *c, size_t want, uint64_t seed)
{
    uint64_t s = seed;
    kref *refs = malloc(want * sizeof *refs);
    size_t n = 0;
    while (n < want) {
        kref r = {.db = (int)rng_below(&s, 5)};
        r.klen = random_key(&s, r.key, n ? &refs[n - 1] : NULL);
        bool created;
        prj_wentry *e = prj_wcache_get(c, r.db, r.key, r.klen, &created);
        if (!created || rng_below(&s, 10) == 0)
            continue; /* seen already, or left clean */
        if (n % 3 == 2)
            prj_wcache_set_absent(c, e);
        else
            prj_wcache_set_bytes(c, e, &n, sizeof n);
        refs[n++] = r;
    }
    ck_assert_uint_eq(c->n_dirty, want);
    ck_assert_uint_ge(c->count, want);
    return refs;
}

/* The dirty entries are refs in the test's own order, each once. */
static void check_sorted(prj_wcache *c, kref *refs, size_t n)
{
    ck_assert_uint_eq(c->n_dirty, n);
    qsort(refs, n, sizeof *refs, kref_cmp);
    for (size_t i = 0; i < n; i++) {
        const kref *r = &refs[i];
        const prj_wentry *e = c->dirty[i];
        REQUIRE(i == 0 || kref_cmp(&refs[i - 1], r) < 0, "refs %zu and %zu not distinct", i - 1, i);
        REQUIRE(entry_is(e, r->db, r->key, r->klen),
                "dirty[%zu] is (db %d, %zu bytes), want (db %d, %zu bytes)", i, e->db, e->klen,
                r->db, r->klen);
        REQUIRE(e->dirty && prj_wcache_lookup(c, e->db, e->key, e->klen) == e,
                "dirty[%zu] is not the cache's entry", i);
    }
}

static void sort_case(size_t n, uint64_t seed)
{
    prj_wcache c;
    prj_wcache_init(&c);
    kref *refs = fill_dirty(&c, n, seed);
    prj_wcache_sort_dirty(&c);
    check_sorted(&c, refs, n);
    prj_wcache_sort_dirty(&c); /* sorted already: stays so */
    check_sorted(&c, refs, n);
    free(refs);
    prj_wcache_release(&c);
}

START_TEST(sort_dirty_orders_a_small_set_by_db_then_key)
{
    sort_case(100, 0x9e3779b97f4a7c15ull);
    sort_case(1, 7);
    sort_case(PRJ_WCACHE_LARGE - 1, 0xfeedfacecafebeefull);
}
END_TEST

START_TEST(sort_dirty_orders_a_large_set)
{
    sort_case(200001, 0x0123456789abcdefull);
    sort_case(PRJ_WCACHE_LARGE, 42);
}
END_TEST

/* ---- sizing the table ahead ----------------------------------------------------------- */

START_TEST(a_reserved_table_takes_its_entries_without_growing)
{
    const size_t n = 100000;
    prj_wcache c;
    prj_wcache_init(&c);
    prj_wcache_reserve(&c, n);
    size_t cap = c.cap;
    ck_assert_uint_ge(cap, 2 * n);
    fill_rows(&c, 0, 0, n);
    ck_assert_uint_eq(c.cap, cap); /* no entry was moved */
    check_rows(&c, 0, 0, n, true);
    prj_wcache_reserve(&c, 10); /* never shrinks */
    ck_assert_uint_eq(c.cap, cap);
    fill_rows(&c, 1, 0, n); /* past the reservation: grows as ever */
    ck_assert_uint_gt(c.cap, cap);
    check_rows(&c, 0, 0, n, true);
    check_rows(&c, 1, 0, n, true);
    prj_wcache_release(&c);
}
END_TEST

/* ---- emptying the cache -------------------------------------------------------------- */

START_TEST(clear_behind_a_large_cache_starts_afresh)
{
    const size_t big = PRJ_WCACHE_LARGE + 34464; /* 100000 */
    prj_wcache c;
    prj_wcache_init(&c);
    fill_rows(&c, 0, 0, big);
    ck_assert_uint_eq(c.count, big);
    prj_wcache_clear_behind(&c); /* on a thread of its own */
    ck_assert(c.count == 0 && c.n_dirty == 0 && c.reclaiming);
    check_rows(&c, 0, 0, big, false);
    /* Filled again, past the threshold, old keys and new. */
    fill_rows(&c, 0, big / 2, big + 20000);
    ck_assert(c.count == big / 2 + 20000 && c.n_dirty == c.count);
    check_rows(&c, 0, big / 2, big + 20000, true);
    check_rows(&c, 0, 0, big / 2, false);
    /* Again at once: waits for the first thread, starts a second. */
    prj_wcache_clear_behind(&c);
    ck_assert(c.count == 0 && c.n_dirty == 0 && c.reclaiming);
    check_rows(&c, 0, big / 2, big + 20000, false);
    prj_wcache_clear_behind(&c); /* empty now: in place */
    ck_assert_uint_eq(c.count, 0);
    fill_rows(&c, 1, 0, 5000);
    prj_wcache_sort_dirty(&c);
    ck_assert_uint_eq(c.n_dirty, 5000);
    check_rows(&c, 1, 0, 5000, true);
    prj_wcache_release(&c);
    ck_assert(c.count == 0 && !c.reclaiming);
}
END_TEST

START_TEST(clear_behind_gives_the_next_cache_the_memory_it_emptied_before)
{
    const size_t big = 100000;
    prj_wcache c;
    prj_wcache_init(&c);
    fill_rows(&c, 0, 0, big);
    size_t cap = c.cap;
    prj_wcache_clear_behind(&c); /* nothing emptied before: a new table */
    ck_assert_uint_eq(c.cap, 0);
    fill_rows(&c, 1, 0, big);
    prj_wcache_clear_behind(&c); /* the first one's table and chunks */
    ck_assert_uint_eq(c.cap, cap);
    ck_assert(c.chunks && c.count == 0 && c.n_dirty == 0);
    check_rows(&c, 0, 0, big, false);
    check_rows(&c, 1, 0, big, false);
    /* Every entry made afresh (fill_rows checks) in memory used before,
     * and the table needs no growing. */
    fill_rows(&c, 2, 0, big);
    ck_assert_uint_eq(c.cap, cap);
    check_rows(&c, 2, 0, big, true);
    check_rows(&c, 0, 0, big, false);
    prj_wcache_release(&c);
}
END_TEST

/* An entry found before is the cache's own while `clears` holds: every way
 * of emptying it moves the count. */
START_TEST(every_emptying_moves_the_clears_count)
{
    prj_wcache c;
    prj_wcache_init(&c);
    uint64_t before = c.clears;
    fill_rows(&c, 0, 0, 10);
    prj_wcache_clear(&c);
    ck_assert_uint_eq(c.clears, before + 1);
    fill_rows(&c, 0, 0, 10);
    prj_wcache_clear_behind(&c); /* small: in place */
    ck_assert_uint_eq(c.clears, before + 2);
    for (int round = 0; round < 3; round++) { /* large: swapped for the spare */
        fill_rows(&c, 0, 0, PRJ_WCACHE_LARGE + 10);
        prj_wcache_clear_behind(&c);
        ck_assert_uint_eq(c.clears, before + 3 + (uint64_t)round);
    }
    prj_wcache_release(&c);
}
END_TEST

START_TEST(clear_behind_a_small_cache_clears_in_place)
{
    prj_wcache c;
    prj_wcache_init(&c);
    fill_rows(&c, 3, 0, 1000);
    prj_wcache_clear_behind(&c);
    ck_assert(c.count == 0 && c.n_dirty == 0 && !c.reclaiming);
    check_rows(&c, 3, 0, 1000, false);
    fill_rows(&c, 3, 500, 1500);
    ck_assert_uint_eq(c.count, 1000);
    check_rows(&c, 3, 500, 1500, true);
    prj_wcache_clear_behind(&c);
    ck_assert_uint_eq(c.count, 0);
    prj_wcache_release(&c);
}
END_TEST

START_TEST(clear_keeps_the_chunks_and_new_entries_start_afresh)
{
    prj_wcache c;
    prj_wcache_init(&c);
    /* Rounds smaller and larger than the chunks kept, one with a key larger
     * than a chunk, and a JSON value to let go of. */
    static const size_t rounds[] = {5000, 2000, 30000, 100, 40000};
    const size_t hlen = (size_t)3 << 20;
    uint8_t *huge = calloc(1, hlen);
    for (size_t r = 0; r < sizeof rounds / sizeof rounds[0]; r++) {
        size_t n = rounds[r];
        bool created;
        prj_wentry *h = NULL;
        if (r == 2) { /* first: a chunk of its own, ahead of those kept */
            h = prj_wcache_get(&c, 9, huge, hlen, &created);
            ck_assert(created && entry_is(h, 9, huge, hlen) && !h->dirty);
            prj_wcache_set_absent(&c, h);
        }
        fill_rows(&c, (int)r, 0, n);
        prj_wentry *e = prj_wcache_get(&c, 9, "json", 4, &created);
        ck_assert(created && !e->present && !e->dirty);
        json_t *j = json_pack("{s:i}", "round", (int)r);
        prj_wcache_set_json(&c, e, j);
        json_decref(j);
        ck_assert(c.count == n + 1 + (h != NULL) && c.n_dirty == c.count);
        check_rows(&c, (int)r, 0, n, true);
        if (h)
            ck_assert_ptr_eq(prj_wcache_lookup(&c, 9, huge, hlen), h);
        prj_wcache_clear(&c);
        ck_assert(c.count == 0 && c.n_dirty == 0);
        check_rows(&c, (int)r, 0, n, false);
        ck_assert_ptr_null(prj_wcache_lookup(&c, 9, "json", 4));
    }
    free(huge);
    prj_wcache_release(&c);
}
END_TEST

static Suite *wcache_suite(void)
{
    Suite *s = suite_create("write-back cache");
    TCase *tc = tcase_create("wcache");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, an_entry_is_found_by_its_own_db_and_key_only);
    tcase_add_test(tc, set_bytes_keeps_a_copy_and_set_absent_clears_present);
    tcase_add_test(tc, sort_dirty_orders_a_small_set_by_db_then_key);
    tcase_add_test(tc, a_reserved_table_takes_its_entries_without_growing);
    tcase_add_test(tc, sort_dirty_orders_a_large_set);
    tcase_add_test(tc, clear_behind_a_large_cache_starts_afresh);
    tcase_add_test(tc, clear_behind_gives_the_next_cache_the_memory_it_emptied_before);
    tcase_add_test(tc, every_emptying_moves_the_clears_count);
    tcase_add_test(tc, clear_behind_a_small_cache_clears_in_place);
    tcase_add_test(tc, clear_keeps_the_chunks_and_new_entries_start_afresh);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return tst_run_suite(wcache_suite());
}
