/*
 * fuzz.h — what the fuzz targets share: must(), the check of a property
 * that stops the fuzzer, naming the property and its line, when it does
 * not hold (libFuzzer then saves the input); the reader of inputs made of
 * frames; and what the command-sequence targets do alike with bodies,
 * events and states.
 */
#ifndef GUILD_FUZZ_FUZZ_H
#define GUILD_FUZZ_FUZZ_H

#include "common/codec.h"
#include "domain/dom.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static inline void fuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: does not hold: %s\n", file, line, what);
    abort();
}

#define must(cond) ((cond) ? (void)0 : fuzz_fail(__FILE__, __LINE__, #cond))

/* One frame of an input made of frames: two choice bytes, two bytes of
 * length (big-endian), then that many bytes of body (fewer if the input
 * ends first). */
typedef struct fuzz_frame {
    uint8_t a, b;
    const uint8_t *body;
    size_t len;
} fuzz_frame;

/* Takes the next frame off *data; false when fewer than 4 bytes are left. */
static inline bool fuzz_next_frame(const uint8_t **data, size_t *size, fuzz_frame *f)
{
    if (*size < 4)
        return false;
    const uint8_t *d = *data;
    f->a = d[0];
    f->b = d[1];
    f->len = (size_t)d[2] << 8 | d[3];
    if (f->len > *size - 4)
        f->len = *size - 4;
    f->body = d + 4;
    *data += 4 + f->len;
    *size -= 4 + f->len;
    return true;
}

/* A frame's body as a request's: JSON or msgpack, told apart as the
 * runtime does; a new reference to an object, or NULL if it is none. */
static inline json_t *fuzz_frame_object(const fuzz_frame *f)
{
    json_t *v = NULL;
    guild_format fmt = guild_format_detect(NULL, f->body, f->len);
    if (guild_codec_decode(f->body, f->len, fmt, &v, NULL) == GUILD_OK && json_is_object(v))
        return v;
    json_decref(v);
    return NULL;
}

/* An event's data as the log keeps and replays it: through msgpack and
 * back (a new reference). */
static inline json_t *fuzz_stored(const json_t *data)
{
    char *bytes;
    size_t len;
    must(guild_codec_encode(data, GUILD_FMT_MSGPACK, &bytes, &len) == GUILD_OK);
    json_t *back;
    must(guild_codec_decode(bytes, len, GUILD_FMT_MSGPACK, &back, NULL) == GUILD_OK);
    free(bytes);
    return back;
}

/* Two states of agg snapshot to the same bytes (nothing to compare for an
 * aggregate without snapshots). */
static inline void fuzz_same_state(const dom_aggregate *agg, const void *a, const void *b)
{
    if (!agg->snapshot)
        return;
    char *x, *y;
    size_t nx, ny;
    must(agg->snapshot(a, &x, &nx) == GUILD_OK);
    must(agg->snapshot(b, &y, &ny) == GUILD_OK);
    must(nx == ny && memcmp(x, y, nx) == 0);
    free(x);
    free(y);
}

#endif
