/*
 * fuzz_codec.c — a request body, as it comes off the wire, through the
 * codec and every command's validator.
 *
 * Checked on every input:
 *   - msgpack: guild_codec_check_msgpack accepts exactly what
 *     guild_codec_decode accepts, and guild_codec_json_from_msgpack writes
 *     byte for byte the JSON that decoding then encoding gives (or refuses,
 *     leaving its buffer as it was);
 *   - JSON: guild_codec_decode accepts exactly what json_loadb accepts
 *     within the depth limit, and makes the same values with keys in the
 *     same order, whether its fast path for plain bodies read the input or
 *     jansson did;
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

static int depth_of(const json_t *v)
{
    int deepest = 0;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++) {
            int d = depth_of(json_array_get(v, i));
            deepest = d > deepest ? d : deepest;
        }
        return deepest + 1;
    }
    if (!json_is_object(v))
        return 0;
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)v, key, val)
    {
        int d = depth_of(val);
        deepest = d > deepest ? d : deepest;
    }
    return deepest + 1;
}

static void json_paths_agree(const uint8_t *data, size_t size, const json_t *decoded)
{
    json_error_t je;
    json_t *want =
        size ? json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je)
             : NULL;
    if (want && depth_of(want) > GUILD_CODEC_MAX_DEPTH) {
        json_decref(want);
        want = NULL;
    }
    must((decoded != NULL) == (want != NULL));
    if (want) {
        must(json_equal(decoded, want));
        char *d = json_dumps(decoded, JSON_COMPACT | JSON_ENCODE_ANY);
        char *w = json_dumps(want, JSON_COMPACT | JSON_ENCODE_ANY);
        must(d && w && strcmp(d, w) == 0);
        free(d);
        free(w);
        json_decref(want);
    }
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
        else
            json_paths_agree(data, size, v);
        if (!v)
            continue;
        round_trip(v, GUILD_FMT_JSON);
        round_trip(v, GUILD_FMT_MSGPACK);
        validate_everywhere(v);
        json_decref(v);
    }
    return 0;
}
