/*
 * mpmap.h — building and reading msgpack maps for event data in tests.
 *
 *   tst_map m;
 *   tst_map_init(&m, 2);            // a map of two entries
 *   tst_map_str(&m, "skill", "c");
 *   tst_map_int(&m, "level", 4);
 *   ... use tst_map_data(&m), tst_map_len(&m) ...
 *   tst_map_release(&m);
 *
 * The entry count given to tst_map_init must match the entries added.
 */
#ifndef GUILD_TESTS_SUPPORT_MPMAP_H
#define GUILD_TESTS_SUPPORT_MPMAP_H

#include <msgpack.h>

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct tst_map {
    msgpack_sbuffer buf;
    msgpack_packer pk;
} tst_map;

void tst_map_init(tst_map *m, uint32_t entries);
void tst_map_str(tst_map *m, const char *key, const char *value);
void tst_map_int(tst_map *m, const char *key, int64_t value);
void tst_map_bin(tst_map *m, const char *key, const void *p, size_t n);
void tst_map_real(tst_map *m, const char *key, double value);
const void *tst_map_data(const tst_map *m);
size_t tst_map_len(const tst_map *m);
void tst_map_release(tst_map *m);

/* Finds `key` in the encoded map and copies its string value, NUL-terminated,
 * into out (truncated to size). False if absent, not a string, or not a map. */
bool tst_map_get_str(const void *data, size_t len, const char *key, char *out, size_t size);

/* Same for an integer value. */
bool tst_map_get_int(const void *data, size_t len, const char *key, int64_t *out);

/* Same for a binary value: *n receives its length, *p points into `data`. */
bool tst_map_get_bin(const void *data, size_t len, const char *key, const void **p, size_t *n);

/* Number of entries of the encoded map; -1 if it is not one map. */
long tst_map_entries(const void *data, size_t len);

#endif
