/*
 * fuzz_identity.c — sequences of identity commands (registration, login,
 * sessions, password resets, roles, clients), each as a client could send
 * it, through the steps the command runtime takes: the caller's permission,
 * the target (id field, a fresh id, or resolve), prepare, decide; then the
 * events into a small in-memory log that later loads replay.
 *
 * The input is a series of frames: a byte choosing the command, a byte
 * choosing the caller (nobody, the first registered user, an identity
 * administrator, a service), two bytes of length and that many bytes of
 * body (JSON or msgpack, told apart as the runtime does). Secrets handed
 * out in replies (refresh tokens, reset tokens, client secrets) are kept:
 * a body's refresh_token, token or client_secret of "$0" to "$3" stands
 * for the last, the one before, and so on, so that sequences can use them.
 *
 * The fuzz build hashes passwords with libsodium's least argon2id cost
 * (secret.c, GUILD_FUZZING_BUILD), so that a sequence runs in microseconds.
 *
 * Checked on every command that reaches decide:
 *   - refusals emit nothing;
 *   - every event decide emits is one evolve accepts, as made and after a
 *     trip through msgpack (how it is stored and replayed): the two states
 *     of the target snapshot to the same bytes, where the aggregate has
 *     snapshots;
 *   - every later load replays every stream's events without a refusal;
 *   - a login starts a session only with the password the user has now
 *     (as registered, changed or reset), and neither a login nor a refresh
 *     starts or renews one for a deactivated user;
 *   - a refresh token renews its session once (it is replaced), and never
 *     a session that has ended; a reset token resets a password once.
 */
#include "fuzz/fuzz.h"
#include "common/codec.h"
#include "domain/dom.h"
#include "domain/identity/identity.h"
#include "domain/registry.h"

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOW 1764000000000000000LL
#define MAX_COMMANDS 24
#define MAX_STREAMS 64
#define ID_MAX 128

/* The in-memory log: each stream's events, as stored (msgpack data). */
typedef struct stream {
    char name[300];
    json_t *events; /* [[type, data], ...], data decoded from msgpack */
    /* What the harness knows of a user's stream, from the commands whose
     * events it took: the password now, and whether it is deactivated. */
    char *password;
    bool deactivated;
} stream;

#define KEPT 4

/* The last secrets of one kind handed out, newest at (next - 1) % KEPT. */
typedef struct kept {
    char v[KEPT][256];
    unsigned next;
} kept;

typedef struct world {
    stream s[MAX_STREAMS];
    size_t n;
    kept refresh, reset, client_secret;
    /* Spent refresh and reset tokens, and ended sessions (keys). */
    json_t *spent_refresh, *spent_reset, *ended;
    unsigned ids;        /* fresh aggregate ids handed out */
    char first_user[64]; /* the first registered user, "" before */
} world;

static stream *find(world *w, const char *name, int create)
{
    for (size_t i = 0; i < w->n; i++)
        if (strcmp(w->s[i].name, name) == 0)
            return &w->s[i];
    if (!create || w->n == MAX_STREAMS)
        return NULL;
    stream *s = &w->s[w->n++];
    snprintf(s->name, sizeof s->name, "%s", name);
    s->events = json_array();
    return s;
}

static uint64_t env_version(void *self, const char *name)
{
    stream *s = find(self, name, 0);
    return s ? json_array_size(s->events) : 0;
}

static guild_status env_load(void *self, const dom_aggregate *agg, const char *name, void **state,
                             uint64_t *version)
{
    stream *s = find(self, name, 0);
    *state = agg->create();
    *version = 0;
    if (!s)
        return GUILD_OK;
    size_t i;
    json_t *ev;
    json_array_foreach(s->events, i, ev)
    {
        dom_event_meta meta = {.id = "e", .actor = "a", .version = i + 1, .time = NOW + (int64_t)i};
        must(agg->evolve(*state, json_string_value(json_array_get(ev, 0)), json_array_get(ev, 1),
                         &meta) == GUILD_OK);
    }
    *version = json_array_size(s->events);
    return GUILD_OK;
}

static guild_status env_sign(void *self, const json_t *claims, char **token)
{
    (void)self;
    *token = json_dumps(claims, JSON_COMPACT);
    return *token ? GUILD_OK : GUILD_INTERNAL;
}

static void keep(kept *k, const char *v)
{
    if (v && strlen(v) < sizeof k->v[0])
        snprintf(k->v[k->next++ % KEPT], sizeof k->v[0], "%s", v);
}

/* Puts kept secrets in place of "$0".."$3" in body's `field`. */
static void use_kept(json_t *body, const char *field, const kept *k)
{
    const char *v = json_string_value(json_object_get(body, field));
    if (!v || v[0] != '$' || v[1] < '0' || v[1] >= '0' + KEPT || v[2] ||
        k->next <= (unsigned)(v[1] - '0'))
        return;
    json_object_set_new(body, field,
                        json_string(k->v[(k->next - 1 - (unsigned)(v[1] - '0')) % KEPT]));
}

/* Marks key spent in set; false if it was already. */
static bool spend(json_t *set, const char *key)
{
    if (json_object_get(set, key))
        return false;
    json_object_set_new(set, key, json_true());
    return true;
}

/* Follows the user's password and standing through the events the
 * command put on the user's own stream, and checks sessions against them. */
static void follow_user(world *w, stream *s, const dom_command *c, const json_t *body,
                        const char *type, const json_t *data)
{
    const char *cmd = c->name;
    const char *sid = json_string_value(json_object_get(data, "session_id"));
    if (strcmp(type, "session_started") == 0) {
        must(!s->deactivated);
        if (strcmp(cmd, "login") == 0)
            must(s->password && strcmp(dom_str(body, "password", ""), s->password) == 0);
    } else if (strcmp(type, "session_refreshed") == 0) {
        must(!s->deactivated && sid && !json_object_get(w->ended, sid));
        must(spend(w->spent_refresh, dom_str(body, "refresh_token", "")));
    } else if (strcmp(type, "session_ended") == 0) {
        must(sid != NULL);
        json_object_set_new(w->ended, sid, json_true());
    } else if (strcmp(type, "user_registered") == 0 || strcmp(type, "password_changed") == 0 ||
               strcmp(type, "password_reset") == 0) {
        if (strcmp(type, "password_reset") == 0)
            must(spend(w->spent_reset, dom_str(body, "token", "")));
        const char *pw = dom_str(body, "new_password", dom_str(body, "password", NULL));
        must(pw != NULL);
        free(s->password);
        s->password = strdup(pw);
    } else if (strcmp(type, "user_deactivated") == 0) {
        s->deactivated = true;
    } else if (strcmp(type, "user_reactivated") == 0) {
        s->deactivated = false;
    }
}

/* Commits what decide emitted: the target's events are folded into its
 * state as made and, in a second state, as stored; others are stored. */
static void commit(world *w, const dom_command *c, const json_t *body, const char *target,
                   void *state, uint64_t version, const dom_ctx *ctx)
{
    void *mirror = NULL;
    uint64_t v0;
    must(env_load(w, c->aggregate, target, &mirror, &v0) == GUILD_OK && v0 == version);
    size_t i;
    json_t *ev;
    json_array_foreach(ctx->events, i, ev)
    {
        const char *type = json_string_value(json_object_get(ev, "type"));
        const json_t *d = json_object_get(ev, "data");
        const char *other = json_string_value(json_object_get(ev, "stream"));
        must(type != NULL && d != NULL);
        stream *s = find(w, other ? other : target, 1);
        if (!s)
            continue; /* the world is full: the event is dropped, as is the check */
        json_t *rec = json_pack("[s, o]", type, fuzz_stored(d));
        if (!other || strcmp(other, target) == 0) {
            version++;
            dom_event_meta meta = {
                .id = "e", .actor = "a", .version = version, .time = NOW + (int64_t)version - 1};
            must(c->aggregate->evolve(state, type, d, &meta) == GUILD_OK);
            must(c->aggregate->evolve(mirror, type, json_array_get(rec, 1), &meta) == GUILD_OK);
            if (c->aggregate == &identity_user)
                follow_user(w, s, c, body, type, d);
        }
        json_array_append_new(s->events, rec);
    }
    fuzz_same_state(c->aggregate, state, mirror);
    c->aggregate->destroy(mirror);
}

/* A context as the runtime sets one up for each step (resolve, prepare,
 * decide) of a command. */
static void ctx_start(dom_ctx *ctx, world *w, const dom_actor *actor, const dom_env *env)
{
    dom_ctx_init(ctx);
    ctx->domain = "identity";
    ctx->actor = actor;
    ctx->now = NOW + (int64_t)w->ids * 1000000000;
    ctx->env = env;
    ctx->dev_mode = true;
}

static void run_one(world *w, const dom_command *c, const dom_actor *actor, json_t *body)
{
    use_kept(body, "refresh_token", &w->refresh);
    use_kept(body, "token", &w->reset);
    use_kept(body, "client_secret", &w->client_secret);
    guild_error err;
    if (dom_validate(c->fields, body, &err) != GUILD_OK)
        return;
    if (!c->is_public && !actor->user_id[0] && !actor->service)
        return; /* a token is needed */
    if (c->permission && !dom_actor_can(actor, c->permission))
        return;

    static const dom_env env_proto = {
        .stream_version = env_version, .load = env_load, .sign_token = env_sign};
    dom_env env = env_proto;
    env.self = w;
    dom_ctx ctx;
    ctx_start(&ctx, w, actor, &env);

    char id[ID_MAX + 1] = "", target[300];
    if (c->id_field) {
        const char *v = json_string_value(json_object_get(body, c->id_field));
        if (!v || !*v || strlen(v) > ID_MAX)
            goto done;
        snprintf(id, sizeof id, "%s", v);
    } else if (c->creates) {
        snprintf(id, sizeof id, "0193a5b0-0000-7000-8000-%012x", ++w->ids);
    } else if (c->resolve) {
        if (c->resolve(body, &ctx, id, sizeof id) != GUILD_OK)
            goto done;
        dom_ctx_release(&ctx);
        ctx_start(&ctx, w, actor, &env);
    } else {
        goto done;
    }
    dom_stream_name("identity", c->aggregate, id, target, sizeof target);
    ctx.aggregate_id = id;
    ctx.stream = target;

    void *state;
    uint64_t version;
    must(env_load(w, c->aggregate, target, &state, &version) == GUILD_OK);
    ctx.version = version;
    json_t *prep = NULL;
    if (c->prepare) {
        if (c->prepare(state, body, &ctx) != GUILD_OK) {
            must(json_array_size(ctx.events) == 0);
            c->aggregate->destroy(state);
            goto done;
        }
        prep = json_incref(ctx.prep);
        dom_ctx_release(&ctx);
        ctx_start(&ctx, w, actor, &env);
        ctx.aggregate_id = id;
        ctx.stream = target;
        ctx.version = version;
        ctx.prepared = prep;
    }
    if (c->decide(state, body, &ctx) == GUILD_OK)
        commit(w, c, body, target, state, version, &ctx);
    else
        must(json_array_size(ctx.events) == 0);
    json_decref(prep);
    keep(&w->refresh, json_string_value(json_object_get(ctx.reply, "refresh_token")));
    keep(&w->reset, json_string_value(json_object_get(ctx.reply, "dev_reset_token")));
    keep(&w->client_secret, json_string_value(json_object_get(ctx.reply, "client_secret")));
    if (c->creates && c->aggregate == &identity_user && !w->first_user[0] &&
        json_array_size(ctx.events) > 0)
        snprintf(w->first_user, sizeof w->first_user, "%s", id);
    c->aggregate->destroy(state);
done:
    dom_ctx_release(&ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t *admin_perms, *star_perms;
    if (!admin_perms) {
        admin_perms = json_pack("[s]", IDENTITY_PERM_ADMIN);
        star_perms = json_pack("[s]", "*");
    }
    size_t n_commands = 0;
    while (dom_identity.commands[n_commands].name)
        n_commands++;

    world *w = calloc(1, sizeof *w);
    must(w != NULL);
    w->spent_refresh = json_object();
    w->spent_reset = json_object();
    w->ended = json_object();
    fuzz_frame f;
    for (int k = 0; k < MAX_COMMANDS && fuzz_next_frame(&data, &size, &f); k++) {
        dom_actor actors[] = {
            {.user_id = "", .session_id = ""},
            {.user_id = w->first_user, .session_id = ""},
            {.user_id = "0193a5b0-0000-7000-8000-0000000000ad",
             .session_id = "",
             .permissions = admin_perms},
            {.user_id = "", .session_id = "", .service = true, .permissions = star_perms},
        };
        json_t *body = fuzz_frame_object(&f);
        if (body)
            run_one(w, &dom_identity.commands[f.a % n_commands], &actors[f.b % 4], body);
        json_decref(body);
    }
    /* Every stream replays under its aggregate: the one whose prefix it
     * has, the user's when none of the others' (a user's prefix is ""). */
    const dom_aggregate *aggs[] = {&identity_email, &identity_role, &identity_client,
                                   &identity_system};
    for (size_t i = 0; i < w->n; i++) {
        const dom_aggregate *agg = &identity_user;
        for (size_t a = 0; a < sizeof aggs / sizeof aggs[0]; a++) {
            char prefix[64];
            dom_stream_name("identity", aggs[a], "", prefix, sizeof prefix);
            if (strncmp(w->s[i].name, prefix, strlen(prefix)) == 0)
                agg = aggs[a];
        }
        void *state;
        uint64_t version;
        must(env_load(w, agg, w->s[i].name, &state, &version) == GUILD_OK);
        agg->destroy(state);
        json_decref(w->s[i].events);
        free(w->s[i].password);
    }
    json_decref(w->spent_refresh);
    json_decref(w->spent_reset);
    json_decref(w->ended);
    free(w);
    return 0;
}
