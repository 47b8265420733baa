/*
 * codec.h — the value codec: guild's in-memory value is jansson's json_t;
 * on the wire it is JSON or msgpack (CONTRACT.md, "Request").
 *
 * Both decoders accept the same set of values and produce the same json_t
 * for equivalent bodies:
 *
 *   value          JSON                    msgpack
 *   -------------  ----------------------  -------------------------------
 *   null, bool     null, true, false       nil, true, false
 *   integer        int64 range             int / uint up to INT64_MAX
 *   real           finite number           float32 or float64, finite
 *   string         UTF-8, no U+0000        str: valid UTF-8, no NUL byte
 *   array          [...]                   array
 *   object         {...}, unique keys      map with unique str keys
 *   (rejected)     —                       bin, ext, uint > INT64_MAX
 *
 * Arrays and objects nest at most GUILD_CODEC_MAX_DEPTH levels (the outer
 * body is level 1; an empty container counts). Bytes after the one value are
 * rejected. Any value may stand at the top; callers that need a map (a
 * request body) check for one.
 */
#ifndef GUILD_COMMON_CODEC_H
#define GUILD_COMMON_CODEC_H

#include "common/status.h"

#include <jansson.h>
#include <msgpack.h>

#include <stddef.h>

#define GUILD_CODEC_MAX_DEPTH 32

typedef enum { GUILD_FMT_JSON, GUILD_FMT_MSGPACK } guild_format;

/* The encoding of a body. content_type (borrowed, may be NULL) is matched
 * case-insensitively on its media type, parameters ignored:
 * "application/json" and "application/msgpack" decide. Without a header, or
 * with any other, a body whose first byte is '{' is JSON and anything else
 * msgpack (CONTRACT.md: a blank before the brace makes it msgpack). */
guild_format guild_format_detect(const char *content_type, const void *body, size_t len);

/* Decodes one value from body (borrowed; len bytes, need not be
 * NUL-terminated; may be NULL when len is 0). On success *out receives a new
 * reference that the caller releases with json_decref. On failure *out is
 * untouched and the result is GUILD_INVALID_REQUEST, with err (may be NULL)
 * saying "body is not valid JSON: ..." or "body is not valid msgpack: ...".
 * The message never quotes the body. */
guild_status guild_codec_decode(const void *body, size_t len, guild_format fmt, json_t **out,
                                guild_error *err);

/* Checks msgpack bytes by the rules of guild_codec_decode without building
 * anything: GUILD_OK exactly when decoding them would succeed (the same
 * status otherwise, with an error naming one of the problems, which for
 * bytes with several may be another than the decoder names). For readers
 * that take the fields they need straight from the bytes. */
guild_status guild_codec_check_msgpack(const void *body, size_t len, guild_error *err);

/* Encodes v (borrowed) as compact JSON or as msgpack (integers in their
 * smallest msgpack form, reals as float64). On success *out receives a
 * malloc'd buffer the caller frees, *len its length; the buffer also ends in
 * a NUL byte not counted in *len, so JSON can be used as a C string. Returns
 * GUILD_INTERNAL, leaving *out and *len untouched, if v cannot be encoded:
 * v is NULL, or, for JSON only, holds a string that is not valid UTF-8
 * (made with jansson's *_nocheck calls). */
guild_status guild_codec_encode(const json_t *v, guild_format fmt, char **out, size_t *len);

/* The JSON_REAL_PRECISION flag every JSON dump of v (borrowed; may be
 * NULL) takes, 0 when v holds no real. A document's reals print with 15,
 * 16 or 17 significant digits: the fewest at which every one of them reads
 * back exactly (jansson's dump takes one precision per document). So 0.51
 * prints as 0.51, not as 0.51000000000000001, unless a real beside it needs
 * 17 digits. guild_codec_encode and guild_codec_json_from_msgpack follow
 * the same rule. */
size_t guild_json_reals(const json_t *v);

/* Packs v (borrowed; NULL packs nil) into pk, as guild_codec_encode does.
 * Errors of pk's write callback are not reported: give it a writer that
 * cannot fail short of aborting (msgpack_sbuffer returns -1 when out of
 * memory and leaves a truncated buffer). */
void guild_codec_pack(msgpack_packer *pk, const json_t *v);

/* A growing buffer of bytes; out of memory aborts, so appending never
 * fails. `data` keeps a spare byte past `len`, for a NUL. The owner frees
 * `data`; a zeroed guild_buf is empty. */
typedef struct guild_buf {
    char *data;
    size_t len, cap;
} guild_buf;

void guild_buf_put(guild_buf *b, const void *p, size_t n);
void guild_buf_str(guild_buf *b, const char *s);

/* `n` bytes of valid UTF-8 (borrowed; may be NULL when n is 0) as a JSON
 * string, quoted, with the escapes jansson's compact dump writes. */
void guild_buf_json_str(guild_buf *b, const char *s, size_t n);

/* Appends the JSON text of one msgpack value to out: byte for byte what
 * guild_codec_decode (msgpack) then guild_codec_encode (JSON) give, without
 * building a json_t. On a refusal, out is as it was, and the status and
 * error are guild_codec_check_msgpack's. */
guild_status guild_codec_json_from_msgpack(const void *body, size_t len, guild_buf *out,
                                           guild_error *err);

/* Converts an unpacked msgpack object (borrowed) by the rules above,
 * counting o itself as level 1. On success *out receives a new reference
 * (json_decref); nothing in it points into o or its zone. On failure *out is
 * untouched and GUILD_INVALID_REQUEST is returned with err (may be NULL)
 * saying why. */
guild_status guild_codec_from_msgpack_object(const msgpack_object *o, json_t **out,
                                             guild_error *err);

#endif
