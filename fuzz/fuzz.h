/*
 * fuzz.h — what the fuzz targets share: must(), the check of a property
 * that stops the fuzzer, naming the property and its line, when it does
 * not hold (libFuzzer then saves the input).
 */
#ifndef GUILD_FUZZ_FUZZ_H
#define GUILD_FUZZ_FUZZ_H

#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t size);

static inline void fuzz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: does not hold: %s\n", file, line, what);
    abort();
}

#define must(cond) ((cond) ? (void)0 : fuzz_fail(__FILE__, __LINE__, #cond))

#endif
