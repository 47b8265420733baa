/*
 * fuzz.h — what the fuzz targets share: must(), the check of a property
 * that stops the fuzzer, naming the property and its line, when it does
 * not hold (libFuzzer then saves the input); and the reader of inputs made
 * of frames.
 */
#ifndef GUILD_FUZZ_FUZZ_H
#define GUILD_FUZZ_FUZZ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

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

#endif
