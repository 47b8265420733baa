/*
 * record.h — the event record on disk and on the wire (internal to the store).
 *
 * A record is a msgpack map with these keys, in this order:
 *
 *   key             type     notes
 *   id              str      UUIDv7
 *   type            str      event type, e.g. skill_added
 *   schema          uint     schema version of the type
 *   domain          str
 *   stream          str      <domain>-<aggregate id>
 *   version         uint     position in the stream, from 1
 *   position        uint     position in the domain's log, from 1
 *   time            int      Unix nanoseconds
 *   command_id      str      "" when absent, as the three below
 *   correlation_id  str
 *   causation_id    str
 *   actor           str
 *   data            map      the event's fields
 *   prev            bin 32   hash of the previous record in the log (zeros for position 1)
 *   hash            bin 32   see below; always the last entry
 *
 * hash = BLAKE2b-256(prev ‖ P), where P is the record's own encoding with
 * the last entry (hash) removed and the map header re-encoded for one entry
 * fewer. A verifier needs nothing but the bytes to recompute it. Readers
 * must accept keys they do not know (fields may grow) anywhere before hash.
 */
#ifndef GUILD_EVENTSTORE_RECORD_H
#define GUILD_EVENTSTORE_RECORD_H

#include "eventstore/es.h"

#include <msgpack.h>

/* Fields of a record to encode; strings NUL-terminated, borrowed. */
typedef struct es_record_in {
    const char *id, *type, *domain, *stream;
    const char *command_id, *correlation_id, *causation_id, *actor;
    uint32_t schema;
    uint64_t version, position;
    int64_t time;
    const void *data;
    size_t data_len;
    const uint8_t *prev;
} es_record_in;

/* Encodes `in` into `buf` (cleared first) and writes its hash to hash_out. */
void es_record_encode(msgpack_sbuffer *buf, const es_record_in *in, uint8_t hash_out[ES_HASH_LEN]);

/* Computes the chain hash of an encoded record: `hash_entry_off` is where the
 * last (hash) entry starts, `entries` the map's entry count. */
void es_record_hash(const uint8_t *raw, size_t hash_entry_off, uint32_t entries,
                    const uint8_t prev[ES_HASH_LEN], uint8_t out[ES_HASH_LEN]);

#endif
