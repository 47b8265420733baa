/*
 * fuzz_codec.c — a request body, as it comes off the wire, through the
 * codec and every command's validator.
 *
 * Checked on every input:
 *   - msgpack: guild_codec_check_msgpack accepts exactly what
 *     guild_codec_decode accepts, and guild_codec_json_from_msgpack writes
 *     byte for byte the JSON that decoding then encoding gives (or refuses,
 *     leaving its buffer as it was);
 *   - JSON and msgpack: a decoded value encodes, in either format, to bytes
 *     that decode to an equal value;
 *   - each command's validator answers OK, validation_failed or
 *     invalid_request, and never crashes.
 */
#include "fuzz/fuzz.h"
#include "common/codec.h"
#include "domain/dom.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void round_trip(const json_t *v, guild_format fmt)
{
    char *bytes = NULL;
    size_t len = 0;
    /* JSON refuses strings that are not UTF-8, which decoding never makes. */
    must(guild_codec_encode(v, fmt, &bytes, &len) == GUILD_OK);
    json_t *back = NULL;
    must(guild_codec_decode(bytes, len, fmt, &back, NULL) == GUILD_OK);
    must(json_equal(v, back));
    json_decref(back);
    free(bytes);
}

static void msgpack_paths_agree(const uint8_t *data, size_t size, const json_t *decoded)
{
    must((guild_codec_check_msgpack(data, size, NULL) == GUILD_OK) == (decoded != NULL));
    guild_buf direct = {0};
    guild_buf_put(&direct, "x", 1); /* a refusal leaves this as it was */
    guild_status s = guild_codec_json_from_msgpack(data, size, &direct, NULL);
    must((s == GUILD_OK) == (decoded != NULL));
    if (!decoded) {
        must(direct.len == 1 && direct.data[0] == 'x');
    } else {
        char *text = NULL;
        size_t len = 0;
        must(guild_codec_encode(decoded, GUILD_FMT_JSON, &text, &len) == GUILD_OK);
        must(direct.len == len + 1 && memcmp(direct.data + 1, text, len) == 0);
        free(text);
    }
    free(direct.data);
}

static void validate_everywhere(const json_t *body)
{
    for (const dom_domain *const *d = dom_domains(); *d; d++)
        for (const dom_command *c = (*d)->commands; c->name; c++) {
            guild_error err;
            guild_status s = dom_validate(c->fields, body, &err);
            must(s == GUILD_OK || s == GUILD_VALIDATION_FAILED || s == GUILD_INVALID_REQUEST);
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int f = 0; f < 2; f++) {
        guild_format fmt = f ? GUILD_FMT_MSGPACK : GUILD_FMT_JSON;
        json_t *v = NULL;
        if (guild_codec_decode(data, size, fmt, &v, NULL) != GUILD_OK)
            v = NULL;
        if (fmt == GUILD_FMT_MSGPACK)
            msgpack_paths_agree(data, size, v);
        if (!v)
            continue;
        round_trip(v, GUILD_FMT_JSON);
        round_trip(v, GUILD_FMT_MSGPACK);
        validate_everywhere(v);
        json_decref(v);
    }
    return 0;
}
