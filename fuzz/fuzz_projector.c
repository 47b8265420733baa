/*
 * fuzz_projector.c — events, well formed or not, through the talent read
 * model: the projector's side of "a poison event is parked and the next
 * ones still apply".
 *
 * The input is a series of frames: a byte choosing the event type (from
 * the talent domain's table, or one it does not know), a byte choosing one
 * of four profiles, two bytes of length and that many bytes of event data.
 * Each frame becomes an event record at the next log position, and the
 * whole input is applied as one batch to a fresh talent model (so that an
 * input that fails fails again on its own), in a temporary directory under
 * /dev/shm where there is one.
 *
 * Checked on every input: the batch applies (an event the model refuses
 * is parked, nothing fails the batch); every event is counted as applied
 * or parked; and get_profile, search and match answer for the four
 * profiles, get_profile's JSON straight from the row being byte for byte
 * the JSON of its tree.
 */
#include "domain/registry.h"
#include "eventstore/record.h"
#include "projections/models.h"
#include "projections/prj.h"

#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW 1764000000000000000LL
#define MAX_EVENTS 64

static const char *const g_ids[] = {
    "0193a5b0-0000-7000-8000-0000000000a1",
    "0193a5b0-0000-7000-8000-0000000000a2",
    "0193a5b0-0000-7000-8000-0000000000a3",
    "0193a5b0-0000-7000-8000-0000000000a4",
};
static prj_store *g_store;
static uint64_t g_position, g_versions[4];
static size_t g_types;

static void must(int cond)
{
    if (!cond)
        abort();
}

static char g_dir[64];

/* The model's environment is a directory of files. */
static void teardown(void)
{
    prj_store_close(g_store);
    g_store = NULL;
    DIR *d = opendir(g_dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        char path[384];
        snprintf(path, sizeof path, "%s/%s", g_dir, e->d_name);
        if (e->d_name[0] != '.')
            unlink(path);
    }
    if (d)
        closedir(d);
    rmdir(g_dir);
}

static void setup(void)
{
    struct stat st;
    snprintf(g_dir, sizeof g_dir, "%s/guild-fuzz-projector-XXXXXX",
             stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp");
    must(mkdtemp(g_dir) != NULL);
    guild_error err;
    must(prj_store_open(g_dir, &prj_talent_model, &g_store, &err) == GUILD_OK);
    g_position = 0;
    memset(g_versions, 0, sizeof g_versions);
    static bool registered;
    if (!registered)
        atexit(teardown);
    registered = true;
    g_types = 0;
    while (dom_talent.events[g_types].type)
        g_types++;
}

static void query_all(void)
{
    for (size_t i = 0; i < 4; i++) {
        json_t *args = json_pack("{s:s}", "talent_id", g_ids[i]);
        json_t *tree = NULL;
        guild_error err;
        guild_status s = prj_store_query(g_store, "get_profile", args, NULL, &tree, NULL, &err);
        guild_buf direct = {0};
        bool done = false;
        guild_status d =
            prj_store_query_json(g_store, "get_profile", args, NULL, &direct, NULL, &done, &err);
        must(d == s);
        if (s == GUILD_OK && done) {
            char *text = NULL;
            size_t len = 0;
            must(guild_codec_encode(tree, GUILD_FMT_JSON, &text, &len) == GUILD_OK);
            must(direct.len == len && memcmp(direct.data, text, len) == 0);
            free(text);
        }
        free(direct.data);
        json_decref(tree);
        json_decref(args);
    }
    static const char *const queries[][2] = {
        {"search", "{\"skills\":[\"c\",\"go\"],\"match\":\"any\",\"min_level\":2}"},
        {"search",
         "{\"location\":\"Lyon\",\"min_hours\":1,\"max_rate\":10000,\"currency\":\"EUR\"}"},
        {"match", "{\"skills\":[{\"skill\":\"c\",\"min_level\":3}],\"max_rate\":20000,"
                  "\"currency\":\"EUR\",\"min_hours\":5}"},
    };
    for (size_t i = 0; i < sizeof queries / sizeof queries[0]; i++) {
        json_t *args = json_loads(queries[i][1], 0, NULL);
        json_t *out = NULL;
        guild_error err;
        guild_status s = prj_store_query(g_store, queries[i][0], args, NULL, &out, NULL, &err);
        must(s == GUILD_OK);
        json_decref(out);
        json_decref(args);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (g_store)
        teardown();
    setup();
    msgpack_sbuffer bufs[MAX_EVENTS];
    es_record recs[MAX_EVENTS];
    const es_record *v[MAX_EVENTS];
    size_t n = 0;
    static const uint8_t zeros[ES_HASH_LEN];
    while (n < MAX_EVENTS && size >= 4) {
        size_t t = data[0] % (g_types + 1), who = data[1] % 4;
        size_t len = (size_t)data[2] << 8 | data[3];
        data += 4, size -= 4;
        if (len > size)
            len = size;
        char stream[128], id[40];
        snprintf(stream, sizeof stream, "talent-%s", g_ids[who]);
        snprintf(id, sizeof id, "0193a5b0-0000-7000-9000-%012llx",
                 (unsigned long long)(g_position + 1));
        es_record_in in = {.id = id,
                           .type = t < g_types ? dom_talent.events[t].type : "no_such_event",
                           .domain = "talent",
                           .stream = stream,
                           .command_id = "",
                           .correlation_id = "",
                           .causation_id = "",
                           .actor = "",
                           .schema = 1,
                           .version = g_versions[who] + 1,
                           .position = g_position + 1,
                           .time = NOW + (int64_t)g_position,
                           .data = data,
                           .data_len = len,
                           .prev = zeros};
        data += len, size -= len;
        uint8_t hash[ES_HASH_LEN];
        msgpack_sbuffer_init(&bufs[n]);
        es_record_encode(&bufs[n], &in, hash);
        /* Data that is not one msgpack value makes bytes that are no
         * record: the log never holds those. */
        if (es_record_decode(bufs[n].data, bufs[n].size, &recs[n]) != GUILD_OK) {
            msgpack_sbuffer_destroy(&bufs[n]);
            continue;
        }
        v[n] = &recs[n];
        g_position++;
        g_versions[who]++;
        n++;
    }
    if (n) {
        prj_batch_stats st = {0};
        must(prj_store_apply(g_store, v, n, &st) == GUILD_OK);
        must(st.applied + st.parked == n && st.skipped == 0);
        must(prj_store_position(g_store) == g_position);
        query_all();
    }
    for (size_t i = 0; i < n; i++)
        msgpack_sbuffer_destroy(&bufs[i]);
    return 0;
}
