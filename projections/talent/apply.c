/*
 * apply.c — how the talent read model folds each talent event into a
 * profile row, and keeps the indexes exact (see internal.h for the layout).
 *
 * Sections: helpers; event fields; one fold per event type; index entries;
 * writing the difference; the dispatcher.
 *
 * The fold follows the talent domain's evolve (domain/talent/profile.c):
 * skills and certifications are found ignoring case and keep their first
 * spelling, an event that repeats what the row holds overwrites it, and a
 * known event whose fields are missing or of the wrong type fails with
 * GUILD_CORRUPT before anything is written. It is stricter where the keys
 * need it: a skill level outside 1..5, a negative rate, a skill name over
 * TM_SKILL_MAX bytes, a talent id over TM_ID_MAX bytes and a
 * profile_created whose talent_id is not its stream's also fail. An event
 * for a profile the model does not have (anything before profile_created)
 * fails the same way. A failure parks the event; the store undoes what it
 * wrote.
 *
 * profile_claimed (on talent-user-<user_id>) and unknown types are ignored.
 */
#include "projections/talent/internal.h"
#include "projections/talent/row.h"

#include "common/alloc.h"
#include "common/clock.h"
#include "domain/talent/talent.h"

#include <stdlib.h>
#include <string.h>

/* ---- helpers -------------------------------------------------------------- */

int prj_talent__name_cmp(const char *a, const char *b)
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

/* Copies n bytes of s into out, ASCII lower-cased. */
static void lower_copy(uint8_t *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        out[i] = c >= 'A' && c <= 'Z' ? (uint8_t)(c - 'A' + 'a') : c;
    }
}

size_t prj_talent__skill_prefix(const char *skill, uint8_t *out)
{
    size_t n = strnlen(skill, TM_SKILL_MAX + 1);
    if (n > TM_SKILL_MAX)
        return 0;
    lower_copy(out, skill, n);
    out[n] = 0;
    return n + 1;
}

size_t prj_talent__location_prefix(const char *location, uint8_t *out)
{
    size_t n = strlen(location);
    if (n > TM_LOCATION_KEY_MAX)
        n = TM_LOCATION_KEY_MAX;
    lower_copy(out, location, n);
    out[n] = 0;
    return n + 1;
}

uint8_t prj_talent__hours_byte(int64_t available)
{
    return available < 0 ? 0 : available > 255 ? 255 : (uint8_t)available;
}

void prj_talent__u64_put(uint8_t out[8], uint64_t v)
{
    for (int i = 7; i >= 0; i--, v >>= 8)
        out[i] = (uint8_t)v;
}

uint64_t prj_talent__u64_get(const uint8_t in[8])
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = (v << 8) | in[i];
    return v;
}

int64_t prj_talent__int(const json_t *row, const char *key, int64_t dflt)
{
    json_t *v = json_object_get(row, key);
    return json_is_integer(v) ? (int64_t)json_integer_value(v) : dflt;
}

/* Index in array `list` of the object whose `key` equals name, ignoring
 * case (exactly when !fold); -1 when none. */
static long entry_index(const json_t *list, const char *key, const char *name, bool fold)
{
    size_t i;
    const json_t *e;
    json_array_foreach(list, i, e)
    {
        const char *s = json_string_value(json_object_get(e, key));
        if (s && (fold ? prj_talent__name_cmp(s, name) : strcmp(s, name)) == 0)
            return (long)i;
    }
    return -1;
}

json_t *prj_talent__skill_find(const json_t *row, const char *name)
{
    const json_t *skills = json_object_get(row, "skills");
    long i = entry_index(skills, "skill", name, true);
    return i < 0 ? NULL : json_array_get(skills, (size_t)i);
}

/* ---- event fields ----------------------------------------------------------
 * As the domain's evolve reads them: a null value counts as absent. Each
 * reader returns false, with err naming the field, when the event cannot be
 * applied. The model reads them straight from the event's msgpack (it sets
 * reads_msgpack: the store checked the bytes by the codec's rules);
 * strings are copied into a pool that lives until the event is applied. */

#define POOL_MAX 16

typedef struct str_pool {
    char *v[POOL_MAX];
    int n;
} str_pool;

static _Thread_local str_pool pool;

static void pool_clear(void)
{
    for (int i = 0; i < pool.n; i++)
        free(pool.v[i]);
    pool.n = 0;
}

static bool bad_field(const prj_event *ev, const char *key, guild_error *err)
{
    guild_error_field(err, GUILD_CORRUPT, key, "%s: %s is missing or of the wrong type", ev->type,
                      key);
    return false;
}

static void field(const prj_event *ev, const char *key, tm_field *f)
{
    tm_data_field(ev->rec->data, ev->rec->data_len, key, f);
}

static bool req_str(const prj_event *ev, const char *key, const char **out, guild_error *err)
{
    tm_field f;
    field(ev, key, &f);
    if (f.kind != TM_STR || pool.n == POOL_MAX)
        return bad_field(ev, key, err);
    char *s = guild_xmalloc(f.n + 1);
    memcpy(s, f.s, f.n);
    s[f.n] = 0;
    pool.v[pool.n++] = s;
    *out = s;
    return true;
}

static bool opt_str(const prj_event *ev, const char *key, const char *dflt, const char **out,
                    guild_error *err)
{
    tm_field f;
    field(ev, key, &f);
    if (f.kind == TM_ABSENT || f.kind == TM_NIL) {
        *out = dflt;
        return true;
    }
    return req_str(ev, key, out, err);
}

static bool req_int(const prj_event *ev, const char *key, int64_t *out, guild_error *err)
{
    tm_field f;
    field(ev, key, &f);
    if (f.kind != TM_INT)
        return bad_field(ev, key, err);
    *out = f.i;
    return true;
}

static bool opt_int(const prj_event *ev, const char *key, int64_t dflt, int64_t *out,
                    guild_error *err)
{
    tm_field f;
    field(ev, key, &f);
    if (f.kind == TM_ABSENT || f.kind == TM_NIL) {
        *out = dflt;
        return true;
    }
    return req_int(ev, key, out, err);
}

/* ---- one fold per event type ------------------------------------------------
 * Each reads every field before it changes the row. */

typedef guild_status (*fold_fn)(tm_row *row, const prj_event *ev, guild_error *err);

static const char *const text_names[] = {"headline", "bio", "location", "timezone", NULL};

static char **text_field(tm_row *row, int i)
{
    char **slots[] = {&row->headline, &row->bio, &row->location, &row->timezone};
    return slots[i];
}

static char *event_time_str(const prj_event *ev)
{
    char buf[48];
    return guild_xstrdup(guild_time_format(ev->rec->time, buf, sizeof buf));
}

static guild_status fold_created(tm_row *row, const prj_event *ev, guild_error *err)
{
    const char *talent_id, *user_id, *text[4];
    if (!req_str(ev, "talent_id", &talent_id, err) || !req_str(ev, "user_id", &user_id, err))
        return GUILD_CORRUPT;
    for (int i = 0; text_names[i]; i++)
        if (!opt_str(ev, text_names[i], "", &text[i], err))
            return GUILD_CORRUPT;
    if (strcmp(talent_id, ev->aggregate_id) != 0)
        return guild_error_field(err, GUILD_CORRUPT, "talent_id",
                                 "profile_created names %.64s on the stream of %.64s", talent_id,
                                 ev->aggregate_id);
    tm_set_str(&row->user_id, user_id);
    for (int i = 0; text_names[i]; i++)
        tm_set_str(text_field(row, i), text[i]);
    free(row->created);
    row->created = event_time_str(ev);
    return GUILD_OK;
}

static guild_status fold_updated(tm_row *row, const prj_event *ev, guild_error *err)
{
    const char *text[4];
    for (int i = 0; text_names[i]; i++)
        if (!opt_str(ev, text_names[i], NULL, &text[i], err))
            return GUILD_CORRUPT;
    for (int i = 0; text_names[i]; i++)
        if (text[i])
            tm_set_str(text_field(row, i), text[i]);
    return GUILD_OK;
}

static long skill_index(const tm_row *row, const char *name)
{
    for (size_t i = 0; i < row->skills.n; i++)
        if (prj_talent__name_cmp(tm_skill_name(TM_AT(row->skills, tm_skill, i)), name) == 0)
            return (long)i;
    return -1;
}

static long cert_index(const tm_row *row, const char *name)
{
    for (size_t i = 0; i < row->certs.n; i++)
        if (prj_talent__name_cmp(TM_AT(row->certs, tm_cert, i)->name, name) == 0)
            return (long)i;
    return -1;
}

static long resv_index(const tm_row *row, const char *id)
{
    for (size_t i = 0; i < row->resv.n; i++)
        if (strcmp(TM_AT(row->resv, tm_resv, i)->id, id) == 0)
            return (long)i;
    return -1;
}

/* skill_added and skill_updated: both leave the skill as the event says
 * (years left out clears them, as in the domain). */
static guild_status fold_skill_set(tm_row *row, const prj_event *ev, guild_error *err)
{
    const char *name;
    int64_t level, years;
    if (!req_str(ev, "skill", &name, err) || !req_int(ev, "level", &level, err) ||
        !opt_int(ev, "years", -1, &years, err))
        return GUILD_CORRUPT;
    if (level < 1 || level > TM_LEVEL_MAX)
        return guild_error_field(err, GUILD_CORRUPT, "level", "%s: level %lld is not 1 to 5",
                                 ev->type, (long long)level);
    if (strlen(name) > TM_SKILL_MAX)
        return guild_error_field(err, GUILD_CORRUPT, "skill", "%s: the skill name is too long",
                                 ev->type);
    long i = skill_index(row, name);
    tm_skill *skill = i >= 0 ? TM_AT(row->skills, tm_skill, i) : NULL;
    if (!skill) {
        skill = tm_list_push(&row->skills, sizeof *skill);
        tm_skill_set_name(skill, name, strlen(name));
    }
    skill->level = level;
    skill->years = years >= 0 ? years : -1;
    return GUILD_OK;
}

static guild_status fold_skill_removed(tm_row *row, const prj_event *ev, guild_error *err)
{
    const char *name;
    if (!req_str(ev, "skill", &name, err))
        return GUILD_CORRUPT;
    long i = skill_index(row, name);
    if (i >= 0) {
        tm_skill_clear(TM_AT(row->skills, tm_skill, i));
        tm_list_remove(&row->skills, sizeof(tm_skill), (size_t)i);
    }
    return GUILD_OK;
}

static guild_status fold_certification_added(tm_row *row, const prj_event *ev, guild_error *err)
{
    const char *name, *issuer, *issued_on, *expires_on;
    if (!req_str(ev, "name", &name, err) || !req_str(ev, "issuer", &issuer, err) ||
        !req_str(ev, "issued_on", &issued_on, err) ||
        !opt_str(ev, "expires_on", NULL, &expires_on, err))
        return GUILD_CORRUPT;
    long i = cert_index(row, name);
    tm_cert *cert = i >= 0 ? TM_AT(row->certs, tm_cert, i) : NULL;
    if (!cert) {
        cert = tm_list_push(&row->certs, sizeof *cert);
        cert->name = guild_xstrdup(name);
    }
    tm_set_str(&cert->issuer, issuer);
    tm_set_str(&cert->issued_on, issued_on);
    tm_set_str(&cert->expires_on, expires_on);
    return GUILD_OK;
}

static guild_status fold_certification_removed(tm_row *row, const prj_event *ev, guild_error *err)
{
    const char *name;
    if (!req_str(ev, "name", &name, err))
        return GUILD_CORRUPT;
    long i = cert_index(row, name);
    if (i >= 0) {
        tm_cert *c = TM_AT(row->certs, tm_cert, i);
        free(c->name);
        free(c->issuer);
        free(c->issued_on);
        free(c->expires_on);
        tm_list_remove(&row->certs, sizeof(tm_cert), (size_t)i);
    }
    return GUILD_OK;
}

static guild_status fold_rate_set(tm_row *row, const prj_event *ev, guild_error *err)
{
    const char *currency;
    int64_t rate;
    if (!req_str(ev, "currency", &currency, err) || !req_int(ev, "hourly_rate", &rate, err))
        return GUILD_CORRUPT;
    if (strlen(currency) != 3)
        return guild_error_field(err, GUILD_CORRUPT, "currency", "rate_set: bad currency");
    if (rate < 0)
        return guild_error_field(err, GUILD_CORRUPT, "hourly_rate", "rate_set: negative rate");
    tm_set_str(&row->currency, currency);
    row->hourly_rate = rate;
    tm_price *p = tm_list_push(&row->prices, sizeof *p);
    memcpy(p->currency, currency, TM_CURRENCY_LEN);
    p->hourly_rate = rate;
    guild_time_format(ev->rec->time, p->since, sizeof p->since);
    p->since_len = (uint8_t)strlen(p->since);
    return GUILD_OK;
}

static guild_status fold_availability_set(tm_row *row, const prj_event *ev, guild_error *err)
{
    int64_t hours;
    if (!req_int(ev, "hours_per_week", &hours, err))
        return GUILD_CORRUPT;
    row->hours_per_week = hours;
    return GUILD_OK;
}

static void recount_reserved(tm_row *row)
{
    int64_t sum = 0;
    for (size_t i = 0; i < row->resv.n; i++)
        sum += TM_AT(row->resv, tm_resv, i)->hours;
    row->reserved_hours = sum;
}

static guild_status fold_capacity_reserved(tm_row *row, const prj_event *ev, guild_error *err)
{
    const char *id;
    int64_t hours;
    if (!req_str(ev, "reservation_id", &id, err) || !req_int(ev, "hours_per_week", &hours, err))
        return GUILD_CORRUPT;
    long i = resv_index(row, id);
    tm_resv *v = i >= 0 ? TM_AT(row->resv, tm_resv, i) : NULL;
    if (!v) {
        v = tm_list_push(&row->resv, sizeof *v);
        v->id = guild_xstrdup(id);
    }
    v->hours = hours;
    recount_reserved(row);
    return GUILD_OK;
}

static guild_status fold_capacity_released(tm_row *row, const prj_event *ev, guild_error *err)
{
    const char *id;
    if (!req_str(ev, "reservation_id", &id, err))
        return GUILD_CORRUPT;
    long i = resv_index(row, id);
    if (i >= 0) {
        free(TM_AT(row->resv, tm_resv, i)->id);
        tm_list_remove(&row->resv, sizeof(tm_resv), (size_t)i);
    }
    recount_reserved(row);
    return GUILD_OK;
}

static guild_status fold_archived(tm_row *row, const prj_event *ev, guild_error *err)
{
    (void)ev, (void)err;
    row->archived = true;
    return GUILD_OK;
}

/* The index families a row's entries fall into (one per index database);
 * each fold names those whose entries it can change, and the others are
 * carried over from the row's entries before the event. */
enum {
    IX_SKILLS = 1,
    IX_LOCATION = 2,
    IX_RATE = 4,
    IX_HOURS = 8,
    IX_ALL = IX_SKILLS | IX_LOCATION | IX_RATE | IX_HOURS
};

typedef struct fold_entry {
    const char *type;
    fold_fn fold;
    unsigned changes; /* IX_* */
} fold_entry;

static const fold_entry folds[] = {
    {TALENT_EV_PROFILE_CREATED, fold_created, IX_ALL},
    {TALENT_EV_PROFILE_UPDATED, fold_updated, IX_LOCATION},
    {TALENT_EV_SKILL_ADDED, fold_skill_set, IX_SKILLS},
    {TALENT_EV_SKILL_UPDATED, fold_skill_set, IX_SKILLS},
    {TALENT_EV_SKILL_REMOVED, fold_skill_removed, IX_SKILLS},
    {TALENT_EV_CERTIFICATION_ADDED, fold_certification_added, 0},
    {TALENT_EV_CERTIFICATION_REMOVED, fold_certification_removed, 0},
    {TALENT_EV_RATE_SET, fold_rate_set, IX_RATE},
    {TALENT_EV_AVAILABILITY_SET, fold_availability_set, IX_HOURS},
    {TALENT_EV_CAPACITY_RESERVED, fold_capacity_reserved, IX_HOURS},
    {TALENT_EV_CAPACITY_RELEASED, fold_capacity_released, IX_HOURS},
    {TALENT_EV_PROFILE_ARCHIVED, fold_archived, IX_ALL},
};

/* The fold of an event type (n bytes), or NULL for a type the model
 * ignores. */
static const fold_entry *fold_of(const char *type, size_t n)
{
    for (size_t i = 0; i < sizeof folds / sizeof folds[0]; i++)
        if (strlen(folds[i].type) == n && memcmp(folds[i].type, type, n) == 0)
            return &folds[i];
    return NULL;
}

/* ---- index entries -----------------------------------------------------------
 * The entries of one row: each an index key and the counts key it adds one
 * to. Bytes live in an arena; pointers are set once the arena is full. */

typedef struct ix_entry {
    const char *db;
    unsigned family; /* IX_*, the db's */
    uint64_t pre;    /* the key's first 8 bytes, big-endian, zero-padded: compares fast */
    size_t key_at, key_len, count_at, count_len;
    const uint8_t *key, *count;
} ix_entry;

/* Most rows fit the inline room; bigger ones move to the heap. */
#define IX_INLINE_ENTRIES 16
#define IX_INLINE_BYTES 2048

typedef struct ix_set {
    ix_entry *v;
    size_t n, cap;
    uint8_t *arena;
    size_t used, size;
    bool borrowed; /* v and arena belong to a row's memo */
    ix_entry inline_v[IX_INLINE_ENTRIES];
    uint8_t inline_arena[IX_INLINE_BYTES];
} ix_set;

/* A row's entries kept with it (tm_row.ix_memo): the entries of the row as
 * the last event left it are those of the row before the next event, so
 * each event works them out once instead of twice. One block: the header,
 * the entries, then the bytes they point into. */
typedef struct ix_memo {
    size_t n, used;
    size_t size; /* of the block */
    ix_entry v[];
} ix_memo;

/* The row's memo made to hold s: written over the old one when it has the
 * room (nothing borrows from it any more), else in a new block. */
static void ix_memo_store(void **slot, const ix_set *s)
{
    size_t need = sizeof(ix_memo) + s->n * sizeof *s->v + s->used;
    ix_memo *m = *slot;
    if (!m || m->size < need) {
        free(m);
        size_t size = need + need / 4;
        m = guild_xmalloc(size);
        m->size = size;
        *slot = m;
    }
    uint8_t *arena = (uint8_t *)&m->v[s->n];
    m->n = s->n;
    m->used = s->used;
    memcpy(arena, s->arena, s->used);
    for (size_t i = 0; i < s->n; i++) {
        m->v[i] = s->v[i];
        m->v[i].key = arena + s->v[i].key_at;
        m->v[i].count = arena + s->v[i].count_at;
    }
}

/* s borrows the memo's entries (read only; ix_release leaves them). */
static void ix_from_memo(ix_set *s, const void *memo)
{
    const ix_memo *m = memo;
    s->v = (ix_entry *)m->v;
    s->n = s->cap = m->n;
    s->arena = (uint8_t *)&m->v[m->n];
    s->used = s->size = m->used;
    s->borrowed = true;
}

static void ix_init(ix_set *s)
{
    s->borrowed = false;
    s->v = s->inline_v;
    s->cap = IX_INLINE_ENTRIES;
    s->n = 0;
    s->arena = s->inline_arena;
    s->size = IX_INLINE_BYTES;
    s->used = 0;
}

static size_t arena_put(ix_set *s, const void *bytes, size_t n)
{
    if (s->used + n > s->size) {
        size_t size = (s->used + n) * 2;
        uint8_t *a = guild_xmalloc(size);
        memcpy(a, s->arena, s->used);
        if (s->arena != s->inline_arena)
            free(s->arena);
        s->arena = a;
        s->size = size;
    }
    memcpy(s->arena + s->used, bytes, n);
    s->used += n;
    return s->used - n;
}

static ix_entry *ix_push(ix_set *s)
{
    if (s->n == s->cap) {
        ix_entry *v = guild_xmalloc(2 * s->cap * sizeof *v);
        memcpy(v, s->v, s->n * sizeof *v);
        if (s->v != s->inline_v)
            free(s->v);
        s->v = v;
        s->cap *= 2;
    }
    return &s->v[s->n++];
}

/* Adds the entry db: key ‖ talent id, counted under tag ‖ count. */
static void ix_add(ix_set *s, unsigned family, const char *db, const uint8_t *key, size_t klen,
                   const char *tid, size_t tlen, char tag, const uint8_t *count, size_t clen)
{
    ix_entry *e = ix_push(s);
    e->db = db;
    e->family = family;
    e->key_at = arena_put(s, key, klen);
    arena_put(s, tid, tlen);
    e->key_len = klen + tlen;
    e->count_at = arena_put(s, &tag, 1);
    arena_put(s, count, clen);
    e->count_len = clen + 1;
}

static int ix_cmp(const void *a, const void *b)
{
    const ix_entry *x = a, *y = b;
    /* The model's database names are its own constants: their addresses
     * order them as well as their text would, and faster. */
    uintptr_t xd = (uintptr_t)x->db, yd = (uintptr_t)y->db;
    int c = (xd > yd) - (xd < yd);
    if (c)
        return c;
    if (x->pre != y->pre)
        return x->pre < y->pre ? -1 : 1;
    size_t n = x->key_len < y->key_len ? x->key_len : y->key_len;
    c = memcmp(x->key, y->key, n);
    if (c)
        return c;
    return x->key_len < y->key_len ? -1 : x->key_len > y->key_len;
}

static void ix_skills(ix_set *s, const tm_row *row, const char *tid, size_t tlen)
{
    for (size_t i = 0; i < row->skills.n; i++) {
        const tm_skill *e = TM_AT(row->skills, tm_skill, i);
        uint8_t key[TM_SKILL_MAX + 3];
        const char *name = tm_skill_name(e);
        int64_t level = e->level;
        size_t n = prj_talent__skill_prefix(name, key);
        if (!n || level < 1 || level > TM_LEVEL_MAX)
            continue; /* the fold lets neither in */
        key[n] = (uint8_t)level;
        key[n + 1] = 0;
        ix_add(s, IX_SKILLS, TM_BY_SKILL, key, n + 2, tid, tlen, TM_COUNT_SKILL, key, n + 1);
    }
}

/* Adds the row's entries of the families in `which` (none when there is
 * no row or it is archived). */
static void ix_collect_some(ix_set *s, const tm_row *row, const char *tid, size_t tlen,
                            unsigned which)
{
    if (!row || row->archived)
        return;
    if (which & IX_SKILLS)
        ix_skills(s, row, tid, tlen);

    uint8_t key[TM_LOCATION_KEY_MAX + 1];
    if (which & IX_LOCATION) {
        const char *location = row->location;
        size_t n = prj_talent__location_prefix(location ? location : "", key);
        ix_add(s, IX_LOCATION, TM_BY_LOCATION, key, n, tid, tlen, TM_COUNT_LOCATION, key, n - 1);
    }

    const char *currency = row->currency;
    int64_t rate = row->hourly_rate;
    if ((which & IX_RATE) && currency && strlen(currency) == 3 && rate >= 0) {
        memcpy(key, currency, 3);
        key[3] = 0;
        prj_talent__u64_put(key + 4, (uint64_t)rate);
        key[12] = 0;
        ix_add(s, IX_RATE, TM_BY_RATE, key, 13, tid, tlen, TM_COUNT_CURRENCY, key, 3);
    }

    if (which & IX_HOURS) {
        key[0] = prj_talent__hours_byte(row->hours_per_week - row->reserved_hours);
        ix_add(s, IX_HOURS, TM_BY_HOURS, key, 1, tid, tlen, TM_COUNT_HOURS, key, 1);
    }
}

/* Adds the entries of `from` outside the families in `except`, copied. */
static void ix_keep(ix_set *s, const ix_set *from, unsigned except)
{
    for (size_t i = 0; i < from->n; i++) {
        const ix_entry *f = &from->v[i];
        if (f->family & except)
            continue;
        ix_entry *e = ix_push(s);
        e->db = f->db;
        e->family = f->family;
        e->key_at = arena_put(s, f->key, f->key_len);
        e->key_len = f->key_len;
        e->count_at = arena_put(s, f->count, f->count_len);
        e->count_len = f->count_len;
    }
}

/* Points the entries into the arena, sorts them and drops duplicates. */
static void ix_finish(ix_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        ix_entry *e = &s->v[i];
        e->key = s->arena + e->key_at;
        e->count = s->arena + e->count_at;
        uint8_t pre[8] = {0};
        memcpy(pre, e->key, e->key_len < 8 ? e->key_len : 8);
        e->pre = prj_talent__u64_get(pre);
    }
    /* A row has a handful of entries: insertion sort, no allocation. */
    for (size_t i = 1; i < s->n; i++) {
        ix_entry e = s->v[i];
        size_t j = i;
        for (; j > 0 && ix_cmp(&s->v[j - 1], &e) > 0; j--)
            s->v[j] = s->v[j - 1];
        s->v[j] = e;
    }
    size_t w = 0;
    for (size_t i = 0; i < s->n; i++)
        if (w == 0 || ix_cmp(&s->v[w - 1], &s->v[i]) != 0)
            s->v[w++] = s->v[i];
    s->n = w;
}

/* The index entries of a row: none when there is no row or it is archived.
 * Sorted, without duplicates. */
static void ix_collect(ix_set *s, const tm_row *row, const char *tid, size_t tlen)
{
    ix_collect_some(s, row, tid, tlen, IX_ALL);
    ix_finish(s);
}

static void ix_release(ix_set *s)
{
    if (s->borrowed)
        return;
    if (s->v != s->inline_v)
        free(s->v);
    if (s->arena != s->inline_arena)
        free(s->arena);
}

/* ---- writing the difference ------------------------------------------------- */

static guild_status count_add(prj_txn *t, const ix_entry *e, int delta, guild_error *err)
{
    const void *v;
    size_t n;
    uint64_t count = 0;
    guild_status s = prj_get(t, TM_COUNTS, e->count, e->count_len, &v, &n);
    if (s == GUILD_OK && n == 8)
        count = prj_talent__u64_get(v);
    else if (s != GUILD_NOT_FOUND)
        return s == GUILD_OK ? guild_error_set(err, GUILD_CORRUPT, 0, "a count is not 8 bytes")
                             : guild_error_set(err, s, 0, "reading an index count");
    if (delta < 0 && count == 0)
        return guild_error_set(err, GUILD_CORRUPT, 0, "an index count would go below zero");
    count = delta < 0 ? count - 1 : count + 1;
    if (count == 0)
        return prj_del(t, TM_COUNTS, e->count, e->count_len);
    uint8_t buf[8];
    prj_talent__u64_put(buf, count);
    return prj_put(t, TM_COUNTS, e->count, e->count_len, buf, sizeof buf);
}

/* Deletes the entries of `old` missing from `now`, then puts those of `now`
 * missing from `old`, each with its count. */
static guild_status ix_write(prj_txn *t, const ix_set *old, const ix_set *now, guild_error *err)
{
    guild_status s = GUILD_OK;
    for (int pass = 0; pass < 2 && s == GUILD_OK; pass++) {
        const ix_set *from = pass == 0 ? old : now, *other = pass == 0 ? now : old;
        size_t j = 0;
        for (size_t i = 0; i < from->n && s == GUILD_OK; i++) {
            while (j < other->n && ix_cmp(&other->v[j], &from->v[i]) < 0)
                j++;
            if (j < other->n && ix_cmp(&other->v[j], &from->v[i]) == 0)
                continue;
            const ix_entry *e = &from->v[i];
            s = pass == 0 ? prj_del(t, e->db, e->key, e->key_len)
                          : prj_put(t, e->db, e->key, e->key_len, "", 0);
            if (s == GUILD_OK)
                s = count_add(t, e, pass == 0 ? -1 : 1, err);
        }
    }
    return s;
}

/* The index entries the row had when last written (`old`) against those
 * of the row now, which the row then keeps (replacing the memo `old` may
 * borrow from). Of the row now, only the families in `changed` are worked
 * out again; the others are old's. */
static guild_status reindex(prj_txn *t, const char *tid, size_t tlen, ix_set *old, tm_row *now,
                            unsigned changed, guild_error *err)
{
    if (!changed)
        return GUILD_OK; /* the entries, and the memo, stay as they are */
    ix_set b;
    ix_init(&b);
    ix_keep(&b, old, changed);
    ix_collect_some(&b, now, tid, tlen, changed);
    ix_finish(&b);
    guild_status s = ix_write(t, old, &b, err);
    if (s == GUILD_OK)
        ix_memo_store(&now->ix_memo, &b);
    ix_release(&b);
    return s;
}

/* ---- the dispatcher --------------------------------------------------------- */

guild_status prj_talent__apply(prj_txn *t, const prj_event *ev, guild_error *err)
{
    const fold_entry *f = fold_of(ev->type, strlen(ev->type));
    if (!f)
        return GUILD_OK;
    fold_fn fold = f->fold;
    unsigned changes = f->changes;
    const char *tid = ev->aggregate_id;
    size_t tlen = strlen(tid);
    if (tlen == 0 || tlen > TM_ID_MAX)
        return guild_error_set(err, GUILD_CORRUPT, 0, "%s on %.100s: not a talent profile's stream",
                               ev->type, ev->stream);

    /* The row is the batch's (prj_get_obj): the fold changes it in place. A
     * failure leaves it half changed, which is harmless: a failed event
     * makes the store drop everything the batch did and apply it again,
     * event by event. */
    void *obj = NULL;
    guild_status s = prj_get_obj(t, TM_PROFILES, tid, tlen, &tm_row_type, &obj);
    if (s == GUILD_NOT_FOUND && fold != fold_created)
        return guild_error_set(err, GUILD_CORRUPT, 0,
                               "%s for talent profile %s, which does not exist", ev->type, tid);
    if (s != GUILD_OK && s != GUILD_NOT_FOUND)
        return guild_error_set(err, s, 0, "reading talent profile %s", tid);
    tm_row *row = obj;
    bool fresh = !row;
    if (!row || !row->ix_memo) {
        /* The entries the row has as written (none before it exists), kept
         * until the row settles: the first event since it was read. */
        ix_set old;
        ix_init(&old);
        ix_collect(&old, row, tid, tlen);
        if (fresh)
            row = tm_row_new(tid);
        ix_memo_store(&row->ix_memo, &old);
        ix_release(&old);
    }

    s = fold(row, ev, err);
    pool_clear();
    if (s == GUILD_OK) {
        free(row->updated); /* the time read with the row: the stamp stands for it now */
        row->updated = NULL;
        row->stamped = true; /* `updated`, formatted when the row is encoded */
        row->stamped_at = ev->rec->time;
        row->version = (int64_t)ev->rec->version;
        row->ix_stale |= changes; /* written when the row settles */
        s = prj_put_obj(t, TM_PROFILES, tid, tlen, &tm_row_type, row);
    } else if (fresh) {
        tm_row_free(row);
    }
    return s;
}

/* The row's index entries and counts brought up to date with the row, for
 * the families the events since it last settled changed (tm_row_type's
 * settle). */
guild_status prj_talent__settle(prj_txn *t, const void *key, size_t klen, void *obj,
                                guild_error *err)
{
    tm_row *row = obj;
    if (!row->ix_stale)
        return GUILD_OK;
    if (!row->ix_memo)
        return guild_error_set(err, GUILD_INTERNAL, 0,
                               "talent profile %.*s changed without its index entries as written",
                               (int)(klen < 100 ? klen : 100), (const char *)key);
    ix_set old;
    ix_init(&old);
    ix_from_memo(&old, row->ix_memo);
    guild_status s = reindex(t, (const char *)key, klen, &old, row, row->ix_stale, err);
    ix_release(&old);
    if (s == GUILD_OK)
        row->ix_stale = 0;
    return s;
}
