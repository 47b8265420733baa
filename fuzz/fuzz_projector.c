/*
 * fuzz_projector.c — events, well formed or not, through the talent and
 * identity read models: the projector's side of "a poison event is parked
 * and the next ones still apply", and of "users without secrets".
 *
 * The input's first byte chooses the model (even: talent, odd: identity).
 * Then comes a series of frames: a byte choosing the event type (from the
 * domain's table, or one it does not know), a byte choosing one of four
 * streams (identity's: two users, a role and a client), two bytes of
 * length and that many bytes of event data. Each frame becomes an event
 * record at the next log position, and the whole input is applied as one
 * batch to a model of its own (so that an input that fails fails again
 * alone), in a temporary directory under /dev/shm where there is one,
 * removed when the input is done.
 *
 * For identity, every string field of an event's data whose name ends in
 * "hash" (password, refresh, reset and client secret digests) is set to a
 * marker first.
 *
 * Checked on every input:
 *   - the batch applies (an event the model refuses is parked, nothing
 *     fails the batch), and every event is counted as applied or parked;
 *   - each model's queries answer (or find nothing) for the four; the first
 *     one's JSON straight from the row (get_profile, get_user) is byte for
 *     byte the JSON of its tree;
 *   - no identity answer holds the marker: secrets never reach the model.
 *     An input that holds the marker's text itself is not checked for it:
 *     libFuzzer learns the strings a target compares with, and once wrote
 *     it into an e-mail address, which an answer rightly shows.
 */
#include "fuzz/fuzz.h"
#include "common/codec.h"
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

#define NOW 1764000000000000000LL
#define MAX_EVENTS 64
#define MARKER "SECRET-MARKER"

#define ID_A "0193a5b0-0000-7000-8000-0000000000a1"
#define ID_B "0193a5b0-0000-7000-8000-0000000000a2"

/* A model under test: its domain, the streams events go to (after
 * "<domain>-"), the query that reads one aggregate and its argument, and
 * queries over many. */
typedef struct model_case {
    const prj_model *model;
    const dom_domain *domain;
    const char *ids[4];
    const char *one, *id_arg;
    const char *many[3][2];
    bool secrets;
} model_case;

static const model_case g_cases[] = {
    {&prj_talent_model,
     &dom_talent,
     {ID_A, ID_B, "0193a5b0-0000-7000-8000-0000000000a3", "0193a5b0-0000-7000-8000-0000000000a4"},
     "get_profile",
     "talent_id",
     {{"search", "{\"skills\":[\"c\",\"go\"],\"match\":\"any\",\"min_level\":2}"},
      {"search", "{\"location\":\"Lyon\",\"min_hours\":1,\"max_rate\":10000,\"currency\":\"EUR\"}"},
      {"match", "{\"skills\":[{\"skill\":\"c\",\"min_level\":3}],\"max_rate\":20000,"
                "\"currency\":\"EUR\",\"min_hours\":5}"}},
     false},
    {&prj_identity_model,
     &dom_identity,
     {ID_A, ID_B, "role-recruiter", "client-billing"},
     "get_user",
     "user_id",
     {{"list_users", "{}"},
      {"list_users", "{\"role\":\"admin\",\"limit\":2}"},
      {"check_permission", "{\"user_id\":\"" ID_A "\",\"permission\":\"talent:read\"}"}},
     true},
};

static prj_store *g_store;
static char g_dir[64];

/* The model's environment is a directory of files. */
static void teardown(void)
{
    prj_store_close(g_store);
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

static void setup(const model_case *mc)
{
    struct stat st;
    snprintf(g_dir, sizeof g_dir, "%s/guild-fuzz-projector-XXXXXX",
             stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) ? "/dev/shm" : "/tmp");
    must(mkdtemp(g_dir) != NULL);
    guild_error err;
    must(prj_store_open(g_dir, mc->model, &g_store, &err) == GUILD_OK);
}

static bool g_planted; /* the input itself holds the marker's text */

static bool holds(const uint8_t *data, size_t size, const char *text)
{
    size_t n = strlen(text);
    for (size_t i = 0; i + n <= size; i++)
        if (memcmp(data + i, text, n) == 0)
            return true;
    return false;
}

static void no_secret(const model_case *mc, const json_t *answer)
{
    if (!mc->secrets || !answer || g_planted)
        return;
    char *text = json_dumps(answer, JSON_COMPACT | JSON_ENCODE_ANY);
    must(text != NULL && !strstr(text, MARKER));
    free(text);
}

static void query_all(const model_case *mc)
{
    for (size_t i = 0; i < 4; i++) {
        json_t *args = json_pack("{s:s}", mc->id_arg, mc->ids[i]);
        json_t *tree = NULL;
        guild_error err;
        guild_status s = prj_store_query(g_store, mc->one, args, NULL, &tree, NULL, &err);
        guild_buf direct = {0};
        bool done = false;
        guild_status d =
            prj_store_query_json(g_store, mc->one, args, NULL, &direct, NULL, &done, &err);
        must(d == s);
        if (s == GUILD_OK && done) {
            char *text = NULL;
            size_t len = 0;
            must(guild_codec_encode(tree, GUILD_FMT_JSON, &text, &len) == GUILD_OK);
            must(direct.len == len && memcmp(direct.data, text, len) == 0);
            free(text);
        }
        no_secret(mc, tree);
        free(direct.data);
        json_decref(tree);
        json_decref(args);
    }
    for (size_t i = 0; i < sizeof mc->many / sizeof mc->many[0]; i++) {
        json_t *args = json_loads(mc->many[i][1], 0, NULL);
        json_t *out = NULL;
        guild_error err;
        guild_status s = prj_store_query(g_store, mc->many[i][0], args, NULL, &out, NULL, &err);
        must(s == GUILD_OK || s == GUILD_NOT_FOUND); /* check_permission of nobody */
        no_secret(mc, out);
        json_decref(out);
        json_decref(args);
    }
}

/* For identity: the data with every "...hash" string set to the marker,
 * packed again; NULL to use the bytes as they are. */
static char *mark_secrets(const model_case *mc, const uint8_t *data, size_t len, size_t *out_len)
{
    json_t *d = NULL;
    if (!mc->secrets || guild_codec_decode(data, len, GUILD_FMT_MSGPACK, &d, NULL) != GUILD_OK)
        return NULL;
    char *bytes = NULL;
    if (json_is_object(d)) {
        const char *k;
        json_t *v;
        json_object_foreach(d, k, v)
        {
            size_t n = strlen(k);
            if (json_is_string(v) && n >= 4 && strcmp(k + n - 4, "hash") == 0)
                json_string_set(v, MARKER);
        }
        must(guild_codec_encode(d, GUILD_FMT_MSGPACK, &bytes, out_len) == GUILD_OK);
    }
    json_decref(d);
    return bytes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const model_case *mc = &g_cases[data[0] & 1];
    data++, size--;
    g_planted = holds(data, size, MARKER);
    setup(mc);
    size_t types = 0;
    while (mc->domain->events[types].type)
        types++;

    msgpack_sbuffer bufs[MAX_EVENTS];
    es_record recs[MAX_EVENTS];
    const es_record *v[MAX_EVENTS];
    uint64_t position = 0, versions[4] = {0};
    size_t n = 0;
    static const uint8_t zeros[ES_HASH_LEN];
    fuzz_frame f;
    while (n < MAX_EVENTS && fuzz_next_frame(&data, &size, &f)) {
        size_t t = f.a % (types + 1), who = f.b % 4;
        char stream[128], id[40];
        snprintf(stream, sizeof stream, "%s-%s", mc->domain->name, mc->ids[who]);
        snprintf(id, sizeof id, "0193a5b0-0000-7000-9000-%012llx",
                 (unsigned long long)(position + 1));
        size_t marked_len = 0;
        char *marked = mark_secrets(mc, f.body, f.len, &marked_len);
        es_record_in in = {.id = id,
                           .type = t < types ? mc->domain->events[t].type : "no_such_event",
                           .domain = mc->domain->name,
                           .stream = stream,
                           .command_id = "",
                           .correlation_id = "",
                           .causation_id = "",
                           .actor = "",
                           .schema = 1,
                           .version = versions[who] + 1,
                           .position = position + 1,
                           .time = NOW + (int64_t)position,
                           .data = marked ? (const void *)marked : f.body,
                           .data_len = marked ? marked_len : f.len,
                           .prev = zeros};
        uint8_t hash[ES_HASH_LEN];
        msgpack_sbuffer_init(&bufs[n]);
        es_record_encode(&bufs[n], &in, hash);
        free(marked);
        /* Data that is not one msgpack value makes bytes that are no
         * record: the log never holds those. */
        if (es_record_decode(bufs[n].data, bufs[n].size, &recs[n]) != GUILD_OK) {
            msgpack_sbuffer_destroy(&bufs[n]);
            continue;
        }
        v[n] = &recs[n];
        position++;
        versions[who]++;
        n++;
    }
    if (n) {
        prj_batch_stats st = {0};
        must(prj_store_apply(g_store, v, n, &st) == GUILD_OK);
        must(st.applied + st.parked == n && st.skipped == 0);
        must(prj_store_position(g_store) == position);
        query_all(mc);
    }
    for (size_t i = 0; i < n; i++)
        msgpack_sbuffer_destroy(&bufs[i]);
    teardown();
    return 0;
}
