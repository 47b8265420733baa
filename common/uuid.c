/* uuid.c — UUIDv7 generation with a monotonic counter (RFC 9562, method 1). */
#include "common/uuid.h"

#include "common/clock.h"

#include <pthread.h>
#include <sodium.h>
#include <string.h>

static pthread_mutex_t uuid_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t uuid_last_ms;
static uint16_t uuid_counter; /* 12 bits in rand_a */

/* randombytes_buf asks the kernel on every call; ids are made on the
 * writer's hot path, so each thread draws from a buffer it refills. */
static _Thread_local uint8_t rand_pool[4096];
static _Thread_local unsigned rand_left;

/* A forked child must not reuse its parent's pool. */
static void pool_forget(void)
{
    rand_left = 0;
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static void atfork_register(void)
{
    pthread_atfork(NULL, NULL, pool_forget);
}

static void uuid_random(uint8_t *out, unsigned n)
{
    pthread_once(&atfork_once, atfork_register);
    if (rand_left < n) {
        randombytes_buf(rand_pool, sizeof rand_pool);
        rand_left = sizeof rand_pool;
    }
    memcpy(out, rand_pool + sizeof rand_pool - rand_left, n);
    sodium_memzero(rand_pool + sizeof rand_pool - rand_left, n);
    rand_left -= n;
}

static void uuid_format(const uint8_t b[16], char out[GUILD_UUID_STRLEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

void guild_uuid7_at(uint64_t unix_ms, char out[GUILD_UUID_STRLEN + 1])
{
    uint8_t b[16];
    uuid_random(b, sizeof b);

    pthread_mutex_lock(&uuid_lock);
    if (unix_ms > uuid_last_ms) {
        uuid_last_ms = unix_ms;
        uuid_counter = (uint16_t)(b[6] & 0x03); /* random start, room to count */
    } else {
        /* Same millisecond (or clock went back): keep ids increasing. */
        unix_ms = uuid_last_ms;
        if (++uuid_counter > 0x0fff) {
            uuid_last_ms = ++unix_ms;
            uuid_counter = 0;
        }
    }
    uint16_t counter = uuid_counter;
    pthread_mutex_unlock(&uuid_lock);

    for (int i = 0; i < 6; i++)
        b[i] = (uint8_t)(unix_ms >> (40 - 8 * i));
    b[6] = (uint8_t)(0x70 | ((counter >> 8) & 0x0f));
    b[7] = (uint8_t)(counter & 0xff);
    b[8] = (uint8_t)(0x80 | (b[8] & 0x3f));
    uuid_format(b, out);
}

void guild_uuid7(char out[GUILD_UUID_STRLEN + 1])
{
    guild_uuid7_at((uint64_t)(guild_now_ns() / 1000000), out);
}

bool guild_uuid_valid(const char *s, unsigned n)
{
    if (n != GUILD_UUID_STRLEN)
        return false;
    for (unsigned i = 0; i < n; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return false;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return false;
        }
    }
    return true;
}
