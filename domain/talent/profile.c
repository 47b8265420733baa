/*
 * profile.c — the states of the talent domain's two aggregates, how events
 * evolve them, and the read accessors of talent.h.
 *
 * Evolve is total: an unknown event type leaves the state as it was, and an
 * event of a known type whose fields are missing or of the wrong type is
 * GUILD_CORRUPT with the state untouched (each handler reads every field
 * before it changes anything). Events that repeat what the state already
 * holds (a skill added twice, a reservation made twice) overwrite, so a
 * replay never fails on what decide would not have emitted.
 *
 * Sections: field readers; the profile's lifecycle; one handler per event
 * type; evolve; read accessors; the claim aggregate.
 */
#include "domain/talent/talent_int.h"

#include "common/alloc.h"

#include <stdlib.h>
#include <string.h>

const char *const talent__text_names[TALENT_TEXTS + 1] = {"headline", "bio", "location", "timezone",
                                                          NULL};

/* ---- field readers ---------------------------------------------------------
 * Each returns false when the event cannot be applied: a required field is
 * absent, or any field has the wrong type. A null value counts as absent. */

static bool req_str(const json_t *d, const char *key, const char **out)
{
    *out = json_string_value(json_object_get(d, key));
    return *out != NULL;
}

static bool opt_str(const json_t *d, const char *key, const char *dflt, const char **out)
{
    json_t *v = json_object_get(d, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return true;
    }
    return req_str(d, key, out);
}

static bool req_int(const json_t *d, const char *key, int64_t *out)
{
    json_t *v = json_object_get(d, key);
    if (!json_is_integer(v))
        return false;
    *out = (int64_t)json_integer_value(v);
    return true;
}

static bool opt_int(const json_t *d, const char *key, int64_t dflt, int64_t *out)
{
    json_t *v = json_object_get(d, key);
    if (!v || json_is_null(v)) {
        *out = dflt;
        return true;
    }
    return req_int(d, key, out);
}

/* Replaces *slot by a copy of v (NULL clears it). */
static void set_str(char **slot, const char *v)
{
    char *copy = v ? guild_xstrdup(v) : NULL;
    free(*slot);
    *slot = copy;
}

/* Grows an array by one zeroed element and returns it. */
static void *push(void **array, size_t *n, size_t size)
{
    *array = guild_xrealloc(*array, (*n + 1) * size);
    char *slot = (char *)*array + *n * size;
    memset(slot, 0, size);
    (*n)++;
    return slot;
}

/* Removes element i of an array of n. */
static void drop(void *array, size_t *n, size_t size, size_t i)
{
    char *base = array;
    memmove(base + i * size, base + (i + 1) * size, (*n - i - 1) * size);
    (*n)--;
}

int talent__name_cmp(const char *a, const char *b)
{
    for (;; a++, b++) {
        int x = (unsigned char)*a, y = (unsigned char)*b;
        if (x >= 'A' && x <= 'Z')
            x += 'a' - 'A';
        if (y >= 'A' && y <= 'Z')
            y += 'a' - 'A';
        if (x != y || x == 0)
            return x - y;
    }
}

/* ---- the profile's lifecycle ------------------------------------------------ */

static void *profile_create(void)
{
    return guild_xcalloc(1, sizeof(talent_profile));
}

static void profile_destroy(void *state)
{
    talent_profile *p = state;
    if (!p)
        return;
    free(p->talent_id);
    free(p->user_id);
    for (int i = 0; i < TALENT_TEXTS; i++)
        free(p->text[i]);
    for (size_t i = 0; i < p->n_skills; i++)
        free(p->skills[i].name);
    free(p->skills);
    for (size_t i = 0; i < p->n_certs; i++) {
        free(p->certs[i].name);
        free(p->certs[i].issuer);
        free(p->certs[i].issued_on);
        free(p->certs[i].expires_on);
    }
    free(p->certs);
    free(p->prices);
    for (size_t i = 0; i < p->n_res; i++)
        free(p->res[i].id);
    free(p->res);
    free(p);
}

static bool profile_exists(const void *state)
{
    return talent_profile_exists(state);
}

static talent_skill *skill_find(const talent_profile *p, const char *name)
{
    for (size_t i = 0; i < p->n_skills; i++)
        if (talent__name_cmp(p->skills[i].name, name) == 0)
            return &p->skills[i];
    return NULL;
}

const talent_certification *talent__certification_find(const talent_profile *p, const char *name)
{
    for (size_t i = 0; i < p->n_certs; i++)
        if (talent__name_cmp(p->certs[i].name, name) == 0)
            return &p->certs[i];
    return NULL;
}

const talent_reservation *talent__reservation_find(const talent_profile *p, const char *id)
{
    for (size_t i = 0; i < p->n_res; i++)
        if (strcmp(p->res[i].id, id) == 0)
            return &p->res[i];
    return NULL;
}

static void recount_reserved(talent_profile *p)
{
    p->reserved = 0;
    for (size_t i = 0; i < p->n_res; i++)
        p->reserved += p->res[i].hours;
}

/* ---- one handler per event type --------------------------------------------- */

typedef guild_status (*evolve_fn)(talent_profile *p, const json_t *d, int64_t time);

static guild_status on_profile_created(talent_profile *p, const json_t *d, int64_t time)
{
    const char *talent_id, *user_id, *text[TALENT_TEXTS];
    if (!req_str(d, "talent_id", &talent_id) || !req_str(d, "user_id", &user_id))
        return GUILD_CORRUPT;
    for (int i = 0; i < TALENT_TEXTS; i++)
        if (!opt_str(d, talent__text_names[i], "", &text[i]))
            return GUILD_CORRUPT;
    set_str(&p->talent_id, talent_id);
    set_str(&p->user_id, user_id);
    for (int i = 0; i < TALENT_TEXTS; i++)
        set_str(&p->text[i], text[i]);
    p->exists = true;
    p->created_at = time;
    return GUILD_OK;
}

static guild_status on_profile_updated(talent_profile *p, const json_t *d, int64_t time)
{
    const char *text[TALENT_TEXTS];
    (void)time;
    for (int i = 0; i < TALENT_TEXTS; i++)
        if (!opt_str(d, talent__text_names[i], NULL, &text[i]))
            return GUILD_CORRUPT;
    for (int i = 0; i < TALENT_TEXTS; i++)
        if (text[i])
            set_str(&p->text[i], text[i]);
    return GUILD_OK;
}

/* skill_added and skill_updated: both leave the skill as the event says. */
static guild_status on_skill_set(talent_profile *p, const json_t *d, int64_t time)
{
    const char *name;
    int64_t level, years;
    (void)time;
    if (!req_str(d, "skill", &name) || !req_int(d, "level", &level) ||
        !opt_int(d, "years", -1, &years))
        return GUILD_CORRUPT;
    talent_skill *s = skill_find(p, name);
    if (!s) {
        s = push((void **)&p->skills, &p->n_skills, sizeof *s);
        s->name = guild_xstrdup(name);
    }
    s->level = (int)level;
    s->years = (int)years;
    return GUILD_OK;
}

static guild_status on_skill_removed(talent_profile *p, const json_t *d, int64_t time)
{
    const char *name;
    (void)time;
    if (!req_str(d, "skill", &name))
        return GUILD_CORRUPT;
    talent_skill *s = skill_find(p, name);
    if (s) {
        free(s->name);
        drop(p->skills, &p->n_skills, sizeof *s, (size_t)(s - p->skills));
    }
    return GUILD_OK;
}

static guild_status on_certification_added(talent_profile *p, const json_t *d, int64_t time)
{
    const char *name, *issuer, *issued_on, *expires_on;
    (void)time;
    if (!req_str(d, "name", &name) || !req_str(d, "issuer", &issuer) ||
        !req_str(d, "issued_on", &issued_on) || !opt_str(d, "expires_on", NULL, &expires_on))
        return GUILD_CORRUPT;
    talent_certification *c = (talent_certification *)talent__certification_find(p, name);
    if (!c) {
        c = push((void **)&p->certs, &p->n_certs, sizeof *c);
        c->name = guild_xstrdup(name);
    }
    set_str(&c->issuer, issuer);
    set_str(&c->issued_on, issued_on);
    set_str(&c->expires_on, expires_on);
    return GUILD_OK;
}

static guild_status on_certification_removed(talent_profile *p, const json_t *d, int64_t time)
{
    const char *name;
    (void)time;
    if (!req_str(d, "name", &name))
        return GUILD_CORRUPT;
    const talent_certification *c = talent__certification_find(p, name);
    if (c) {
        free(c->name);
        free(c->issuer);
        free(c->issued_on);
        free(c->expires_on);
        drop(p->certs, &p->n_certs, sizeof *c, (size_t)(c - p->certs));
    }
    return GUILD_OK;
}

static guild_status on_rate_set(talent_profile *p, const json_t *d, int64_t time)
{
    const char *currency;
    int64_t rate;
    if (!req_str(d, "currency", &currency) || strlen(currency) != 3 ||
        !req_int(d, "hourly_rate", &rate))
        return GUILD_CORRUPT;
    talent_price *price = push((void **)&p->prices, &p->n_prices, sizeof *price);
    memcpy(price->currency, currency, 4);
    price->hourly_rate = rate;
    price->since = time;
    return GUILD_OK;
}

static guild_status on_availability_set(talent_profile *p, const json_t *d, int64_t time)
{
    int64_t hours;
    (void)time;
    if (!req_int(d, "hours_per_week", &hours))
        return GUILD_CORRUPT;
    p->hours = (int)hours;
    return GUILD_OK;
}

static guild_status on_capacity_reserved(talent_profile *p, const json_t *d, int64_t time)
{
    const char *id;
    int64_t hours;
    (void)time;
    if (!req_str(d, "reservation_id", &id) || !req_int(d, "hours_per_week", &hours))
        return GUILD_CORRUPT;
    talent_reservation *r = (talent_reservation *)talent__reservation_find(p, id);
    if (!r) {
        r = push((void **)&p->res, &p->n_res, sizeof *r);
        r->id = guild_xstrdup(id);
    }
    r->hours = (int)hours;
    recount_reserved(p);
    return GUILD_OK;
}

static guild_status on_capacity_released(talent_profile *p, const json_t *d, int64_t time)
{
    const char *id;
    (void)time;
    if (!req_str(d, "reservation_id", &id))
        return GUILD_CORRUPT;
    const talent_reservation *r = talent__reservation_find(p, id);
    if (r) {
        free(r->id);
        drop(p->res, &p->n_res, sizeof *r, (size_t)(r - p->res));
        recount_reserved(p);
    }
    return GUILD_OK;
}

static guild_status on_profile_archived(talent_profile *p, const json_t *d, int64_t time)
{
    (void)d;
    (void)time;
    p->archived = true;
    return GUILD_OK;
}

/* ---- evolve ------------------------------------------------------------------ */

static const struct {
    const char *type;
    evolve_fn apply;
} profile_handlers[] = {
    {TALENT_EV_PROFILE_CREATED, on_profile_created},
    {TALENT_EV_PROFILE_UPDATED, on_profile_updated},
    {TALENT_EV_SKILL_ADDED, on_skill_set},
    {TALENT_EV_SKILL_UPDATED, on_skill_set},
    {TALENT_EV_SKILL_REMOVED, on_skill_removed},
    {TALENT_EV_CERTIFICATION_ADDED, on_certification_added},
    {TALENT_EV_CERTIFICATION_REMOVED, on_certification_removed},
    {TALENT_EV_RATE_SET, on_rate_set},
    {TALENT_EV_AVAILABILITY_SET, on_availability_set},
    {TALENT_EV_CAPACITY_RESERVED, on_capacity_reserved},
    {TALENT_EV_CAPACITY_RELEASED, on_capacity_released},
    {TALENT_EV_PROFILE_ARCHIVED, on_profile_archived},
};

static guild_status profile_evolve(void *state, const char *type, const json_t *data,
                                   const dom_event_meta *meta)
{
    talent_profile *p = state;
    int64_t time = meta ? meta->time : 0;
    if (!type)
        return GUILD_OK;
    for (size_t i = 0; i < sizeof profile_handlers / sizeof profile_handlers[0]; i++) {
        if (strcmp(type, profile_handlers[i].type) != 0)
            continue;
        if (data && !json_is_object(data))
            return GUILD_CORRUPT;
        guild_status s = profile_handlers[i].apply(p, data, time);
        if (s == GUILD_OK)
            p->updated_at = time;
        return s;
    }
    return GUILD_OK;
}

/* ---- snapshots ----------------------------------------------------------------
 * The profile as a msgpack map of its fields (strings null until set),
 * and back, checking every field: bytes that do not make a profile give
 * NULL and the profile is loaded from its events instead. */

#define SNAPSHOT_FORMAT 1

static guild_status profile_snapshot(const void *state, char **bytes, size_t *len)
{
    const talent_profile *p = state;
    json_t *texts = json_array(), *skills = json_array(), *certs = json_array(),
           *prices = json_array(), *res = json_array();
    for (int i = 0; i < TALENT_TEXTS; i++)
        json_array_append_new(texts, dom_str_or_null(p->text[i]));
    for (size_t i = 0; i < p->n_skills; i++)
        json_array_append_new(skills, json_pack("[s, i, i]", p->skills[i].name, p->skills[i].level,
                                                p->skills[i].years));
    for (size_t i = 0; i < p->n_certs; i++) {
        const talent_certification *c = &p->certs[i];
        json_array_append_new(certs, json_pack("[s, s, s, o]", c->name, c->issuer, c->issued_on,
                                               dom_str_or_null(c->expires_on)));
    }
    for (size_t i = 0; i < p->n_prices; i++)
        json_array_append_new(prices, json_pack("[s, I, I]", p->prices[i].currency,
                                                (json_int_t)p->prices[i].hourly_rate,
                                                (json_int_t)p->prices[i].since));
    for (size_t i = 0; i < p->n_res; i++)
        json_array_append_new(res, json_pack("[s, i]", p->res[i].id, p->res[i].hours));
    json_t *doc =
        json_pack("{s:b, s:b, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:i, s:i, s:I, s:I}", "exists",
                  p->exists, "archived", p->archived, "talent_id", dom_str_or_null(p->talent_id),
                  "user_id", dom_str_or_null(p->user_id), "texts", texts, "skills", skills, "certs",
                  certs, "prices", prices, "res", res, "hours", p->hours, "reserved", p->reserved,
                  "created_at", (json_int_t)p->created_at, "updated_at", (json_int_t)p->updated_at);
    return dom_snapshot_encode(doc, SNAPSHOT_FORMAT, bytes, len);
}

static bool take_int(const json_t *v, int64_t *out)
{
    if (!json_is_integer(v))
        return false;
    *out = json_integer_value(v);
    return true;
}

static void *profile_restore(const void *bytes, size_t len)
{
    json_t *doc = dom_snapshot_decode(bytes, len, SNAPSHOT_FORMAT);
    if (!doc)
        return NULL;
    talent_profile *p = profile_create();
    json_t *texts = json_object_get(doc, "texts"), *skills = json_object_get(doc, "skills"),
           *certs = json_object_get(doc, "certs"), *prices = json_object_get(doc, "prices"),
           *res = json_object_get(doc, "res");
    int64_t hours = 0, reserved = 0;
    bool ok = json_is_boolean(json_object_get(doc, "exists")) &&
              json_is_boolean(json_object_get(doc, "archived")) &&
              dom_take_str(json_object_get(doc, "talent_id"), &p->talent_id) &&
              dom_take_str(json_object_get(doc, "user_id"), &p->user_id) &&
              json_array_size(texts) == TALENT_TEXTS && json_is_array(skills) &&
              json_is_array(certs) && json_is_array(prices) && json_is_array(res) &&
              take_int(json_object_get(doc, "hours"), &hours) &&
              take_int(json_object_get(doc, "reserved"), &reserved) &&
              take_int(json_object_get(doc, "created_at"), &p->created_at) &&
              take_int(json_object_get(doc, "updated_at"), &p->updated_at);
    if (ok) {
        p->exists = json_is_true(json_object_get(doc, "exists"));
        p->archived = json_is_true(json_object_get(doc, "archived"));
        p->hours = (int)hours;
        p->reserved = (int)reserved;
    }
    for (int i = 0; ok && i < TALENT_TEXTS; i++)
        ok = dom_take_str(json_array_get(texts, (size_t)i), &p->text[i]);
    if (ok) {
        p->skills = guild_xcalloc(json_array_size(skills) + 1, sizeof *p->skills);
        p->certs = guild_xcalloc(json_array_size(certs) + 1, sizeof *p->certs);
        p->prices = guild_xcalloc(json_array_size(prices) + 1, sizeof *p->prices);
        p->res = guild_xcalloc(json_array_size(res) + 1, sizeof *p->res);
    }
    for (size_t i = 0; ok && i < json_array_size(skills); i++) {
        const json_t *e = json_array_get(skills, i);
        int64_t level = 0, years = 0;
        talent_skill *k = &p->skills[p->n_skills];
        ok = json_array_size(e) == 3 && json_is_string(json_array_get(e, 0)) &&
             take_int(json_array_get(e, 1), &level) && take_int(json_array_get(e, 2), &years);
        if (ok) {
            k->name = guild_xstrdup(json_string_value(json_array_get(e, 0)));
            k->level = (int)level;
            k->years = (int)years;
            p->n_skills++;
        }
    }
    for (size_t i = 0; ok && i < json_array_size(certs); i++) {
        const json_t *e = json_array_get(certs, i);
        talent_certification *c = &p->certs[p->n_certs];
        ok = json_array_size(e) == 4 && json_is_string(json_array_get(e, 0)) &&
             json_is_string(json_array_get(e, 1)) && json_is_string(json_array_get(e, 2));
        if (ok) {
            c->name = guild_xstrdup(json_string_value(json_array_get(e, 0)));
            c->issuer = guild_xstrdup(json_string_value(json_array_get(e, 1)));
            c->issued_on = guild_xstrdup(json_string_value(json_array_get(e, 2)));
            p->n_certs++;
            ok = dom_take_str(json_array_get(e, 3), &c->expires_on);
        }
    }
    for (size_t i = 0; ok && i < json_array_size(prices); i++) {
        const json_t *e = json_array_get(prices, i);
        talent_price *r = &p->prices[p->n_prices];
        const char *cur = json_string_value(json_array_get(e, 0));
        ok = json_array_size(e) == 3 && cur && strlen(cur) == 3 &&
             take_int(json_array_get(e, 1), &r->hourly_rate) &&
             take_int(json_array_get(e, 2), &r->since);
        if (ok) {
            memcpy(r->currency, cur, 4);
            p->n_prices++;
        }
    }
    for (size_t i = 0; ok && i < json_array_size(res); i++) {
        const json_t *e = json_array_get(res, i);
        int64_t h = 0;
        ok = json_array_size(e) == 2 && json_is_string(json_array_get(e, 0)) &&
             take_int(json_array_get(e, 1), &h);
        if (ok) {
            p->res[p->n_res].id = guild_xstrdup(json_string_value(json_array_get(e, 0)));
            p->res[p->n_res++].hours = (int)h;
        }
    }
    json_decref(doc);
    if (!ok) {
        profile_destroy(p);
        return NULL;
    }
    return p;
}

const dom_aggregate talent_profile_agg = {
    .name = "profile",
    .stream_prefix = "",
    .create = profile_create,
    .destroy = profile_destroy,
    .evolve = profile_evolve,
    .exists = profile_exists,
    .snapshot = profile_snapshot,
    .restore = profile_restore,
};

/* ---- read accessors ---------------------------------------------------------- */

bool talent_profile_exists(const talent_profile *p)
{
    return p && p->exists;
}

bool talent_profile_archived(const talent_profile *p)
{
    return p && p->archived;
}

const char *talent_profile_user_id(const talent_profile *p)
{
    return p && p->user_id ? p->user_id : "";
}

size_t talent_profile_skill_count(const talent_profile *p)
{
    return p ? p->n_skills : 0;
}

const talent_skill *talent_profile_skill_at(const talent_profile *p, size_t i)
{
    return p && i < p->n_skills ? &p->skills[i] : NULL;
}

const talent_skill *talent_profile_skill_find(const talent_profile *p, const char *name)
{
    return p && name ? skill_find(p, name) : NULL;
}

bool talent_profile_rate(const talent_profile *p, const char **currency, int64_t *hourly_rate)
{
    if (!p || p->n_prices == 0)
        return false;
    const talent_price *now = &p->prices[p->n_prices - 1];
    if (currency)
        *currency = now->currency;
    if (hourly_rate)
        *hourly_rate = now->hourly_rate;
    return true;
}

int talent_profile_hours(const talent_profile *p)
{
    return p ? p->hours : 0;
}

int talent_profile_reserved(const talent_profile *p)
{
    return p ? p->reserved : 0;
}

static json_t *lists_to_json(const talent_profile *p, json_t *out)
{
    json_t *skills = json_array(), *certs = json_array(), *history = json_array(),
           *res = json_array();
    for (size_t i = 0; i < p->n_skills; i++) {
        json_t *s =
            json_pack("{s:s, s:i}", "skill", p->skills[i].name, "level", p->skills[i].level);
        if (p->skills[i].years >= 0)
            json_object_set_new(s, "years", json_integer(p->skills[i].years));
        json_array_append_new(skills, s);
    }
    for (size_t i = 0; i < p->n_certs; i++) {
        const talent_certification *c = &p->certs[i];
        json_t *o = json_pack("{s:s, s:s, s:s}", "name", c->name, "issuer", c->issuer, "issued_on",
                              c->issued_on);
        if (c->expires_on)
            json_object_set_new(o, "expires_on", json_string(c->expires_on));
        json_array_append_new(certs, o);
    }
    for (size_t i = 0; i < p->n_prices; i++)
        json_array_append_new(history,
                              json_pack("{s:s, s:I, s:I}", "currency", p->prices[i].currency,
                                        "hourly_rate", (json_int_t)p->prices[i].hourly_rate,
                                        "since", (json_int_t)p->prices[i].since));
    for (size_t i = 0; i < p->n_res; i++)
        json_array_append_new(res, json_pack("{s:s, s:i}", "reservation_id", p->res[i].id,
                                             "hours_per_week", p->res[i].hours));
    json_object_set_new(out, "skills", skills);
    json_object_set_new(out, "certifications", certs);
    json_object_set_new(out, "pricing_history", history);
    json_object_set_new(out, "reservations", res);
    return out;
}

json_t *talent_profile_to_json(const talent_profile *p)
{
    if (!p)
        return json_null();
    json_t *out = json_object();
    json_object_set_new(out, "talent_id", dom_str_or_null(p->talent_id));
    json_object_set_new(out, "user_id", dom_str_or_null(p->user_id));
    for (int i = 0; i < TALENT_TEXTS; i++)
        json_object_set_new(out, talent__text_names[i], json_string(p->text[i] ? p->text[i] : ""));
    json_object_set_new(out, "archived", json_boolean(p->archived));
    const char *currency;
    int64_t rate;
    json_object_set_new(
        out, "rate",
        talent_profile_rate(p, &currency, &rate)
            ? json_pack("{s:s, s:I}", "currency", currency, "hourly_rate", (json_int_t)rate)
            : json_null());
    json_object_set_new(out, "hours_per_week", json_integer(p->hours));
    json_object_set_new(out, "reserved_hours", json_integer(p->reserved));
    json_object_set_new(out, "created_at", json_integer(p->created_at));
    json_object_set_new(out, "updated_at", json_integer(p->updated_at));
    return lists_to_json(p, out);
}

/* ---- the claim aggregate ----------------------------------------------------
 * talent-user-<user_id> holds one profile_claimed: which profile the user
 * has. Its existence is what create_profile checks. */

typedef struct talent_claim {
    char *talent_id;
} talent_claim;

static void *claim_create(void)
{
    return guild_xcalloc(1, sizeof(talent_claim));
}

static void claim_destroy(void *state)
{
    talent_claim *c = state;
    if (!c)
        return;
    free(c->talent_id);
    free(c);
}

static guild_status claim_evolve(void *state, const char *type, const json_t *data,
                                 const dom_event_meta *meta)
{
    talent_claim *c = state;
    const char *talent_id;
    (void)meta;
    if (!type || strcmp(type, TALENT_EV_PROFILE_CLAIMED) != 0)
        return GUILD_OK;
    if (!req_str(data, "talent_id", &talent_id))
        return GUILD_CORRUPT;
    set_str(&c->talent_id, talent_id);
    return GUILD_OK;
}

static bool claim_exists(const void *state)
{
    return talent_claim_talent_id(state) != NULL;
}

const char *talent_claim_talent_id(const void *claim_state)
{
    const talent_claim *c = claim_state;
    return c ? c->talent_id : NULL;
}

const dom_aggregate talent_user_agg = {
    .name = "user",
    .stream_prefix = "user-",
    .create = claim_create,
    .destroy = claim_destroy,
    .evolve = claim_evolve,
    .exists = claim_exists,
};
