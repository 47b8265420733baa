/*
 * fuzz_talent.c — sequences of talent commands, each as a client could
 * send it, through validation, decide and evolve against one profile, the
 * way the command runtime runs them (no broker, no disk).
 *
 * The input is a series of frames: a byte choosing the command, a byte
 * choosing the actor (the owner, another user, an administrator, a
 * service), two bytes of length and that many bytes of body (JSON or
 * msgpack, told apart as the runtime does). The body's talent_id is set to
 * the one profile.
 *
 * Checked on every command that validates:
 *   - decide answers, and refusals emit nothing;
 *   - every event decide emits is one evolve accepts, both as decide made
 *     it and after a trip through msgpack (how it is stored and replayed):
 *     the two states snapshot to the same bytes;
 *   - a snapshot restores to a state that snapshots to the same bytes;
 *   - only the profile's owner, an administrator or a service with
 *     talent:* changes it (creating one included: for the user it names),
 *     and nothing changes it once it is archived but the release of a
 *     reservation, which a saga's compensation must still be able to make.
 */
#include "fuzz/fuzz.h"
#include "common/codec.h"
#include "domain/dom.h"
#include "domain/registry.h"
#include "domain/talent/talent.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define OWNER "0193a5b0-0000-7000-8000-000000000001"
#define OTHER "0193a5b0-0000-7000-8000-000000000002"
#define ADMIN "0193a5b0-0000-7000-8000-000000000003"
#define TALENT "0193a5b0-0000-7000-8000-0000000000aa"
#define NOW 1764000000000000000LL
#define MAX_COMMANDS 24

static uint64_t no_stream(void *self, const char *stream)
{
    (void)self, (void)stream;
    return 0;
}

static guild_status no_load(void *self, const dom_aggregate *agg, const char *stream, void **state,
                            uint64_t *version)
{
    (void)self, (void)stream;
    *state = agg->create();
    *version = 0;
    return GUILD_OK;
}

static const dom_env g_env = {.stream_version = no_stream, .load = no_load};

typedef struct profile {
    void *state, *mirror; /* from the events as made, and as stored */
    uint64_t version;
    char owner[64]; /* the user_id of profile_created, "" before */
    bool archived;
} profile;

/* Who may change the profile, and when. */
static void check_rights(profile *p, const dom_ctx *ctx, const char *type, const json_t *d)
{
    const dom_actor *a = ctx->actor;
    bool admin = dom_actor_can(a, TALENT_PERM_ADMIN);
    must(!p->archived || strcmp(type, TALENT_EV_CAPACITY_RELEASED) == 0);
    if (strcmp(type, TALENT_EV_PROFILE_CREATED) == 0) {
        const char *user = json_string_value(json_object_get(d, "user_id"));
        must(user != NULL && !p->owner[0]);
        must(admin || strcmp(a->user_id, user) == 0);
        snprintf(p->owner, sizeof p->owner, "%s", user);
        return;
    }
    must(p->owner[0] && (admin || strcmp(a->user_id, p->owner) == 0));
    if (strcmp(type, TALENT_EV_PROFILE_ARCHIVED) == 0)
        p->archived = true;
}

static void apply(profile *p, const dom_ctx *ctx)
{
    size_t i;
    json_t *ev;
    json_array_foreach(ctx->events, i, ev)
    {
        if (json_object_get(ev, "stream"))
            continue; /* the per-user claim: another aggregate */
        const char *type = json_string_value(json_object_get(ev, "type"));
        const json_t *d = json_object_get(ev, "data");
        must(type != NULL && d != NULL);
        check_rights(p, ctx, type, d);
        p->version++;
        dom_event_meta meta = {
            .id = "e", .actor = "a", .version = p->version, .time = NOW + (int64_t)p->version};
        must(talent_profile_agg.evolve(p->state, type, d, &meta) == GUILD_OK);
        json_t *stored = fuzz_stored(d);
        must(talent_profile_agg.evolve(p->mirror, type, stored, &meta) == GUILD_OK);
        json_decref(stored);
    }
    fuzz_same_state(&talent_profile_agg, p->state, p->mirror);
}

static void run_one(profile *p, const dom_command *c, const dom_actor *actor, json_t *body)
{
    if (c->id_field)
        json_object_set_new(body, c->id_field, json_string(TALENT));
    guild_error err;
    if (dom_validate(c->fields, body, &err) != GUILD_OK)
        return;
    dom_ctx ctx;
    dom_ctx_init(&ctx);
    ctx.domain = "talent";
    ctx.actor = actor;
    ctx.now = NOW + (int64_t)p->version + 1;
    ctx.aggregate_id = TALENT;
    ctx.stream = "talent-" TALENT;
    ctx.version = p->version;
    ctx.env = &g_env;
    guild_status s = c->decide(p->state, body, &ctx);
    if (s == GUILD_OK)
        apply(p, &ctx);
    else
        must(json_array_size(ctx.events) == 0);
    dom_ctx_release(&ctx);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static json_t *admin_perms, *star_perms;
    if (!admin_perms) {
        admin_perms = json_pack("[s]", TALENT_PERM_ADMIN);
        star_perms = json_pack("[s]", "talent:*");
    }
    const dom_actor actors[] = {
        {.user_id = OWNER, .session_id = ""},
        {.user_id = OTHER, .session_id = ""},
        {.user_id = ADMIN, .session_id = "", .permissions = admin_perms},
        {.user_id = "", .session_id = "", .service = true, .permissions = star_perms},
    };
    size_t n_commands = 0;
    while (dom_talent.commands[n_commands].name)
        n_commands++;

    profile p = {.state = talent_profile_agg.create(), .mirror = talent_profile_agg.create()};
    fuzz_frame f;
    for (int k = 0; k < MAX_COMMANDS && fuzz_next_frame(&data, &size, &f); k++) {
        json_t *body = fuzz_frame_object(&f);
        if (body)
            run_one(&p, &dom_talent.commands[f.a % n_commands], &actors[f.b % 4], body);
        json_decref(body);
    }
    char *bytes;
    size_t len;
    must(talent_profile_agg.snapshot(p.state, &bytes, &len) == GUILD_OK);
    void *restored = talent_profile_agg.restore(bytes, len);
    must(restored != NULL);
    fuzz_same_state(&talent_profile_agg, p.state, restored);
    talent_profile_agg.destroy(restored);
    free(bytes);
    talent_profile_agg.destroy(p.state);
    talent_profile_agg.destroy(p.mirror);
    return 0;
}
