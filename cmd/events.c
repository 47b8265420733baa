/*
 * events.c — `guild events`: auditor tooling over a domain's LMDB store,
 * opened read-only so it runs beside the live service without slowing it.
 *
 *   guild events ls <domain> [--limit N]            streams with their versions
 *   guild events show <domain> <stream> [--json]    a stream's events, decoded
 *   guild events export <domain> [filters]          JSON lines, every field of every record
 *   guild events tail <domain> [filters]            follow new events as they commit
 *   guild events key <domain> [--json]              the checkpoint key's public half (hex)
 *   guild events verify <domain> [--pubkey HEX]...  hash chain, index, signed checkpoints,
 *                                                   snapshots
 *   guild events replay <domain> --into DIR         rebuild the domain's read models from the
 *                                                   log and compare them with the live ones
 *
 * Filters: --stream S, --type T, --from/--to TIME (RFC 3339 or Unix ns; from
 * inclusive, to exclusive), --correlation ID, --actor ID.
 *
 * Exit status: 0 done (and intact, equal), 1 a check failed, 2 cannot run.
 * Everything but replay only reads; replay writes only under --into (it
 * opens each live read model as the projector store does, to read its
 * position and digest, then reads its LMDB files directly).
 *
 * Sections: plumbing (opening, options, progress, record as JSON, filters),
 * ls / show / export / tail, key and verify. Replay is in events_replay.c.
 */
#include "cmd.h"
#include "events.h"

#include "bus/audit.h"
#include "bus/checkpoint.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/codec.h"
#include "eventstore/es.h"
#include "projections/projector.h"

#include <jansson.h>
#include <limits.h>
#include <lmdb.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define PAGE 4096            /* records per read transaction */
#define PROGRESS_EVERY 65536 /* records between progress lines */
#define TAIL_INTERVAL_MS 200 /* default poll interval of tail */
/* Reals keep every digit (guild_json_reals): an export is read back. */
#define JSON_LINE (JSON_COMPACT | JSON_PRESERVE_ORDER)

/* ---- plumbing ------------------------------------------------------------------ */

bool ev_opts_ok(int argc, char **argv, int first, const char *const *with_value,
                const char *const *flags)
{
    for (int i = first; i < argc; i++) {
        bool known = false;
        for (const char *const *o = with_value; *o && !known; o++)
            if (strcmp(argv[i], *o) == 0) {
                if (i + 1 >= argc) {
                    fprintf(stderr, "guild events: %s needs a value\n", argv[i]);
                    return false;
                }
                known = true;
                i++;
            }
        for (const char *const *o = flags; *o && !known; o++)
            known = strcmp(argv[i], *o) == 0;
        if (!known) {
            fprintf(stderr, "guild events: unexpected argument %s\n", argv[i]);
            return false;
        }
    }
    return true;
}

void ev_show_progress(void *ctx, uint64_t done, uint64_t total)
{
    ev_progress *p = ctx;
    if (!p->tty)
        return;
    double secs = (double)(guild_mono_ns() - p->started) / 1e9;
    if (total)
        fprintf(stderr, "\r\033[K%s: %llu of %llu (%.0f%%), %.0f/s", p->what,
                (unsigned long long)done, (unsigned long long)total,
                100.0 * (double)done / (double)total, secs > 0 ? (double)done / secs : 0.0);
    else
        fprintf(stderr, "\r\033[K%s: %llu", p->what, (unsigned long long)done);
}

void ev_progress_end(const ev_progress *p)
{
    if (p->tty)
        fprintf(stderr, "\r\033[K");
}

double ev_seconds_since(uint64_t started)
{
    return (double)(guild_mono_ns() - started) / 1e9;
}

void ev_hex(const uint8_t *p, size_t n, char *out)
{
    sodium_bin2hex(out, 2 * n + 1, p, n);
}

static json_t *jstr(es_str s)
{
    json_t *j = json_stringn(s.p ? s.p : "", s.n);
    if (j)
        return j;
    /* Not UTF-8: shown as hex rather than hidden. */
    char *h = guild_xmalloc(2 * (size_t)s.n + 5);
    memcpy(h, "hex:", 4);
    ev_hex((const uint8_t *)s.p, s.n, h + 4);
    j = json_string(h);
    free(h);
    return j;
}

/* Every field of the record, in record.h's order, plus time_utc. */
static json_t *record_json(const es_record *r)
{
    char prev[2 * ES_HASH_LEN + 1], hash[2 * ES_HASH_LEN + 1], when[40];
    ev_hex(r->prev, ES_HASH_LEN, prev);
    ev_hex(r->hash, ES_HASH_LEN, hash);
    json_t *o = json_object();
    json_object_set_new(o, "id", jstr(r->id));
    json_object_set_new(o, "type", jstr(r->type));
    json_object_set_new(o, "schema", json_integer(r->schema));
    json_object_set_new(o, "domain", jstr(r->domain));
    json_object_set_new(o, "stream", jstr(r->stream));
    json_object_set_new(o, "version", json_integer((json_int_t)r->version));
    json_object_set_new(o, "position", json_integer((json_int_t)r->position));
    json_object_set_new(o, "time", json_integer(r->time));
    json_object_set_new(o, "time_utc", json_string(guild_time_format(r->time, when, sizeof when)));
    json_object_set_new(o, "command_id", jstr(r->command_id));
    json_object_set_new(o, "correlation_id", jstr(r->correlation_id));
    json_object_set_new(o, "causation_id", jstr(r->causation_id));
    json_object_set_new(o, "actor", jstr(r->actor));
    json_t *data = NULL;
    if (guild_codec_decode(r->data, r->data_len, GUILD_FMT_MSGPACK, &data, NULL) == GUILD_OK) {
        json_object_set_new(o, "data", data);
    } else {
        char *h = guild_xmalloc(2 * r->data_len + 1);
        ev_hex(r->data, r->data_len, h);
        json_object_set_new(o, "data", json_null());
        json_object_set_new(o, "data_msgpack", json_string(h));
        free(h);
    }
    json_object_set_new(o, "prev", json_string(prev));
    json_object_set_new(o, "hash", json_string(hash));
    return o;
}

void ev_print_json_line(json_t *j)
{
    char *text = json_dumps(j, JSON_LINE | guild_json_reals(j));
    if (text)
        puts(text);
    free(text);
}

/* Unix ns, or RFC 3339: 2024-06-01, 2024-06-01T12:00:00Z, ...:00.5+02:00. */
static bool parse_time(const char *s, int64_t *out)
{
    uint64_t ns;
    if (cmd_parse_u64(s, &ns) && ns <= INT64_MAX) {
        *out = (int64_t)ns;
        return true;
    }
    int y, mo, d, h = 0, mi = 0, sec = 0, n = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &n) != 3 || n != 10)
        return false;
    const char *p = s + 10;
    int64_t frac = 0, offset = 0;
    if (*p) {
        if (*p != 'T' && *p != 't' && *p != ' ')
            return false;
        if (sscanf(++p, "%2d:%2d:%2d%n", &h, &mi, &sec, &n) != 3 || n != 8)
            return false;
        p += 8;
        if (*p == '.') {
            int64_t scale = 100000000;
            for (p++; *p >= '0' && *p <= '9'; p++, scale /= 10)
                frac += (*p - '0') * scale;
        }
        int oh, om;
        if (*p == 'Z' || *p == 'z')
            p++;
        else if ((*p == '+' || *p == '-') && sscanf(p + 1, "%2d:%2d%n", &oh, &om, &n) == 2 &&
                 n == 5) {
            offset = (*p == '-' ? -1 : 1) * (oh * 3600 + om * 60);
            p += 6;
        } else
            return false;
        if (*p)
            return false;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return false;
    struct tm tm = {.tm_year = y - 1900,
                    .tm_mon = mo - 1,
                    .tm_mday = d,
                    .tm_hour = h,
                    .tm_min = mi,
                    .tm_sec = sec};
    *out = ((int64_t)timegm(&tm) - offset) * 1000000000 + frac;
    return true;
}

typedef struct filter {
    const char *stream, *type, *correlation, *actor;
    bool has_from, has_to;
    int64_t from, to;
} filter;

static const char *const filter_opts[] = {"--stream",      "--type",  "--from", "--to",
                                          "--correlation", "--actor", NULL};

static bool filter_parse(filter *f, int argc, char **argv)
{
    memset(f, 0, sizeof *f);
    f->stream = cmd_opt(argc, argv, "--stream");
    f->type = cmd_opt(argc, argv, "--type");
    f->correlation = cmd_opt(argc, argv, "--correlation");
    f->actor = cmd_opt(argc, argv, "--actor");
    const char *from = cmd_opt(argc, argv, "--from"), *to = cmd_opt(argc, argv, "--to");
    if ((from && !(f->has_from = parse_time(from, &f->from))) ||
        (to && !(f->has_to = parse_time(to, &f->to)))) {
        fprintf(stderr, "guild events: %s is neither RFC 3339 nor Unix nanoseconds\n",
                from && !f->has_from ? from : to);
        return false;
    }
    return true;
}

static bool str_is(es_str s, const char *z)
{
    return !z || (strlen(z) == s.n && memcmp(s.p, z, s.n) == 0);
}

static bool filter_match(const filter *f, const es_record *r)
{
    return str_is(r->stream, f->stream) && str_is(r->type, f->type) &&
           str_is(r->correlation_id, f->correlation) && str_is(r->actor, f->actor) &&
           (!f->has_from || r->time >= f->from) && (!f->has_to || r->time < f->to);
}

/* ---- ls, show, export, tail ---------------------------------------------------------- */

static int print_stream(void *ctx, const char *stream, uint64_t version)
{
    (void)ctx;
    printf("%-60s %llu\n", stream, (unsigned long long)version);
    return 0;
}

static int list(const cmd_common *c, const char *domain, size_t limit)
{
    es_store *st = cmd_open_log(c, domain, "guild events");
    if (!st)
        return 2;
    guild_status s = es_list_streams(st, NULL, limit, print_stream, NULL);
    es_store_close(st);
    return s == GUILD_OK ? 0 : 2;
}

/* What the record callbacks of show, export and tail share. */
typedef struct emit {
    const filter *f;
    bool human;
    uint64_t scanned, printed, limit;
    uint64_t total;
    ev_progress *p;
} emit;

/* A provenance field for a person: "-" when empty. */
static int dash_n(es_str s)
{
    return s.n ? (int)s.n : 1;
}

static const char *dash_p(es_str s)
{
    return s.n ? s.p : "-";
}

static void print_human(const es_record *r)
{
    char when[40];
    json_t *j = record_json(r);
    json_t *d = json_object_get(j, "data");
    char *data = json_dumps(d, JSON_LINE | JSON_ENCODE_ANY | guild_json_reals(d));
    printf("#%llu  %.*s (schema %u)  position %llu  %s\n", (unsigned long long)r->version,
           (int)r->type.n, r->type.p, r->schema, (unsigned long long)r->position,
           guild_time_format(r->time, when, sizeof when));
    printf("    id %.*s  actor %.*s  command %.*s  correlation %.*s  causation %.*s\n",
           (int)r->id.n, r->id.p, dash_n(r->actor), dash_p(r->actor), dash_n(r->command_id),
           dash_p(r->command_id), dash_n(r->correlation_id), dash_p(r->correlation_id),
           dash_n(r->causation_id), dash_p(r->causation_id));
    json_t *raw = json_object_get(j, "data_msgpack");
    printf("    %s%s\n", raw ? "undecodable msgpack " : "", raw ? json_string_value(raw) : data);
    free(data);
    json_decref(j);
}

static int emit_record(void *ctx, const es_record *rec)
{
    emit *e = ctx;
    e->scanned++;
    if (e->p && e->scanned % PROGRESS_EVERY == 0)
        ev_show_progress(e->p, e->scanned, e->total);
    if (e->f && !filter_match(e->f, rec))
        return 0;
    if (e->human) {
        print_human(rec);
    } else {
        json_t *j = record_json(rec);
        ev_print_json_line(j);
        json_decref(j);
    }
    e->printed++;
    return e->limit && e->printed >= e->limit;
}

/* Reads the log from position `from` (or, when `stream` is given, that
 * stream from version `from`) to its end, page by page; *next receives where
 * to go on. */
static guild_status emit_all(es_store *st, const char *stream, emit *e, uint64_t from,
                             uint64_t *next)
{
    for (;;) {
        uint64_t before = e->scanned, at = from;
        guild_status s = stream ? es_read_stream(st, stream, from, PAGE, emit_record, e, &at)
                                : es_read_log(st, from, PAGE, emit_record, e, &at);
        if (s != GUILD_OK)
            return s;
        from = at;
        if (next)
            *next = from;
        if (e->scanned == before || (e->limit && e->printed >= e->limit))
            return GUILD_OK;
    }
}

static int show(const cmd_common *c, const char *domain, const char *stream, bool as_json)
{
    es_store *st = cmd_open_log(c, domain, "guild events");
    if (!st)
        return 2;
    filter f = {.stream = stream};
    emit e = {.f = &f, .human = !as_json};
    guild_status s = emit_all(st, stream, &e, 1, NULL);
    es_store_close(st);
    if (s != GUILD_OK) {
        fprintf(stderr, "guild events show: %s\n", guild_status_code(s));
        return 2;
    }
    if (e.printed == 0) {
        fprintf(stderr, "guild events show: %s has no stream %s\n", domain, stream);
        return 1;
    }
    if (!as_json)
        printf("%s: %llu event%s\n", stream, (unsigned long long)e.printed,
               e.printed == 1 ? "" : "s");
    return 0;
}

static int export(const cmd_common *c, const char *domain, int argc, char **argv)
{
    static const char *const flags[] = {"--quiet", NULL};
    filter f;
    if (!ev_opts_ok(argc, argv, 3, filter_opts, flags) || !filter_parse(&f, argc, argv))
        return 2;
    es_store *st = cmd_open_log(c, domain, "guild events");
    if (!st)
        return 2;
    /* Progress only when the lines go elsewhere than the terminal. */
    ev_progress p = {isatty(2) && !isatty(1), guild_mono_ns(), "exporting: events read"};
    emit e = {.f = &f, .p = &p};
    es_log_head(st, &e.total, NULL);
    guild_status s = emit_all(st, f.stream, &e, 1, NULL);
    es_store_close(st);
    ev_progress_end(&p);
    fflush(stdout);
    if (s != GUILD_OK) {
        fprintf(stderr, "guild events export: the store could not be read (%s)\n",
                guild_status_code(s));
        return 2;
    }
    if (!cmd_flag(argc, argv, "--quiet"))
        fprintf(stderr, "%s: exported %llu of %llu events in %.2f s\n", domain,
                (unsigned long long)e.printed, (unsigned long long)e.total,
                ev_seconds_since(p.started));
    return 0;
}

static volatile sig_atomic_t g_stop;

static void on_stop_signal(int sig)
{
    (void)sig;
    g_stop = 1;
}

static int tail(const cmd_common *c, const char *domain, int argc, char **argv)
{
    static const char *const with_value[] = {
        "--stream",      "--type",  "--from-position", "--from",     "--to",
        "--correlation", "--actor", "--limit",         "--interval", NULL};
    static const char *const flags[] = {NULL};
    filter f;
    uint64_t from = 0, limit = 0, interval = TAIL_INTERVAL_MS;
    const char *fp = cmd_opt(argc, argv, "--from-position"), *lim = cmd_opt(argc, argv, "--limit"),
               *iv = cmd_opt(argc, argv, "--interval");
    if (!ev_opts_ok(argc, argv, 3, with_value, flags) || !filter_parse(&f, argc, argv))
        return 2;
    if ((fp && !cmd_parse_u64(fp, &from)) || (lim && !cmd_parse_u64(lim, &limit)) ||
        (iv && (!cmd_parse_u64(iv, &interval) || interval == 0))) {
        fprintf(stderr, "guild events tail: --from-position and --limit take whole numbers "
                        "(0: from the start, no limit), --interval a positive one\n");
        return 2;
    }
    es_store *st = cmd_open_log(c, domain, "guild events");
    if (!st)
        return 2;
    if (!fp) { /* only what commits from now on */
        es_log_head(st, &from, NULL);
        from++;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    /* A stream filter still follows the log: new events are found there,
     * in commit order. */
    emit e = {.f = &f, .limit = limit};
    guild_status s = GUILD_OK;
    while (!g_stop && s == GUILD_OK && !(limit && e.printed >= limit)) {
        uint64_t before = e.scanned;
        s = emit_all(st, NULL, &e, from, &from);
        fflush(stdout);
        if (e.scanned == before && !(limit && e.printed >= limit)) {
            struct timespec ts = {(time_t)(interval / 1000), (long)(interval % 1000) * 1000000};
            nanosleep(&ts, NULL);
        }
    }
    es_store_close(st);
    if (s != GUILD_OK) {
        fprintf(stderr, "guild events tail: the store could not be read (%s)\n",
                guild_status_code(s));
        return 2;
    }
    return 0;
}

/* ---- key and verify -------------------------------------------------------------- */

static int key(const cmd_common *c, const char *domain, bool as_json)
{
    char path[1100];
    bus_checkpoint_key_path(c->data, domain, path, sizeof path);
    bus_checkpoint_key k;
    guild_error err = {0};
    guild_status s = bus_checkpoint_key_load(path, false, &k, &err);
    if (s == GUILD_NOT_FOUND) {
        fprintf(stderr,
                "guild events key: no checkpoint key at %s yet: `guild serve %s` makes one "
                "when it first starts\n",
                path, domain);
        return 1;
    }
    if (s != GUILD_OK) {
        fprintf(stderr, "guild events key: %s\n", err.message);
        return 2;
    }
    char pk[2 * crypto_sign_PUBLICKEYBYTES + 1];
    ev_hex(k.pk, sizeof k.pk, pk);
    if (as_json) {
        json_t *out = json_pack("{s:s, s:s, s:s, s:s}", "domain", domain, "public_key", pk,
                                "key_id", k.key_id, "path", path);
        ev_print_json_line(out);
        json_decref(out);
    } else {
        printf("%s\n", pk);
        if (isatty(2))
            fprintf(stderr, "key id %s, from %s\n", k.key_id, path);
    }
    bus_checkpoint_key_clear(&k);
    return 0;
}

/* The public keys signatures are checked against, and where they came from. */
typedef struct trust {
    guild_jwt_keyring ring;
    bool pinned;
    char source[1300];
} trust;

static bool trust_load(trust *t, const cmd_common *c, const char *domain, int argc, char **argv)
{
    memset(t, 0, sizeof *t);
    guild_jwt_keyring_init(&t->ring);
    for (int i = 3; i + 1 < argc; i++) {
        if (strcmp(argv[i], "--pubkey") != 0)
            continue;
        unsigned char pk[crypto_sign_PUBLICKEYBYTES];
        if (!bus_checkpoint_pubkey_parse(argv[++i], pk)) {
            fprintf(stderr, "guild events verify: --pubkey takes 64 hex digits, as `guild "
                            "events key` prints them\n");
            return false;
        }
        if (guild_jwt_keyring_add(&t->ring, NULL, pk) != GUILD_OK) {
            fprintf(stderr, "guild events verify: at most %d keys\n", GUILD_JWT_MAX_KEYS);
            return false;
        }
        t->pinned = true;
    }
    if (t->pinned) {
        snprintf(t->source, sizeof t->source, "the pinned key%s (--pubkey)",
                 t->ring.count > 1 ? "s" : "");
        return true;
    }
    char path[1100];
    bus_checkpoint_key_path(c->data, domain, path, sizeof path);
    bus_checkpoint_key k;
    guild_error err = {0};
    if (bus_checkpoint_key_load(path, false, &k, &err) == GUILD_OK) {
        guild_jwt_keyring_add(&t->ring, NULL, k.pk);
        bus_checkpoint_key_clear(&k);
        snprintf(t->source, sizeof t->source,
                 "the key file %s (not pinned: whoever can rewrite the store may have replaced "
                 "it too; pin the key with --pubkey)",
                 path);
    } else {
        snprintf(t->source, sizeof t->source, "no public key: %s; pass --pubkey", err.message);
    }
    return true;
}

/* A position and hash recorded earlier, outside the machine. */
typedef struct anchor {
    bool given, ok;
    uint64_t position;
    uint8_t hash[ES_HASH_LEN];
    char what[160];
} anchor;

static bool anchor_parse(anchor *a, const char *s)
{
    memset(a, 0, sizeof *a);
    a->ok = true;
    if (!s)
        return true;
    const char *colon = strchr(s, ':');
    char pos[32];
    size_t n = 0;
    if (!colon || (size_t)(colon - s) >= sizeof pos)
        return false;
    memcpy(pos, s, (size_t)(colon - s));
    pos[colon - s] = '\0';
    a->given = true;
    return cmd_parse_u64(pos, &a->position) && a->position > 0 && strlen(colon + 1) == 64 &&
           sodium_hex2bin(a->hash, ES_HASH_LEN, colon + 1, 64, NULL, &n, NULL) == 0 &&
           n == ES_HASH_LEN;
}

typedef struct probe {
    bool found;
    uint64_t position;
    uint8_t hash[ES_HASH_LEN];
} probe;

static int probe_copy(void *ctx, const es_record *rec)
{
    probe *p = ctx;
    p->found = true;
    p->position = rec->position;
    memcpy(p->hash, rec->hash, ES_HASH_LEN);
    return 1;
}

static guild_status anchor_check(es_store *st, anchor *a)
{
    if (!a->given)
        return GUILD_OK;
    probe p = {0};
    uint64_t next = 0;
    guild_status s = es_read_log(st, a->position, 1, probe_copy, &p, &next);
    if (s != GUILD_OK)
        return s;
    a->ok = p.found && next == a->position + 1 && p.position == a->position &&
            sodium_memcmp(p.hash, a->hash, ES_HASH_LEN) == 0;
    if (!a->ok && (!p.found || next != a->position + 1))
        snprintf(a->what, sizeof a->what, "the log has no record at position %llu",
                 (unsigned long long)a->position);
    else if (!a->ok)
        snprintf(a->what, sizeof a->what, "the record at position %llu has another hash",
                 (unsigned long long)a->position);
    return GUILD_OK;
}

/* Everything verify found, for either form of output. */
typedef struct verdict {
    const char *domain;
    es_verify_report chain;
    bus_checkpoint_report sigs;
    bus_snapshot_report snaps;
    const trust *trust;
    anchor anchor;
    double seconds;
} verdict;

static json_t *signatures_json(const verdict *v)
{
    const bus_checkpoint_report *r = &v->sigs;
    json_t *keys = json_array();
    for (size_t i = 0; i < v->trust->ring.count; i++)
        json_array_append_new(keys, json_string(v->trust->ring.keys[i].kid));
    json_t *o = json_pack("{s:I, s:I, s:b, s:b, s:s, s:o}", "found", (json_int_t)r->found,
                          "verified", (json_int_t)r->verified, "intact", r->intact, "keys_checked",
                          r->keys_checked, "key_source",
                          v->trust->pinned  ? "pinned"
                          : r->keys_checked ? "key_file"
                                            : "none",
                          "key_ids", keys);
    if (r->verified) {
        char h[2 * ES_HASH_LEN + 1], when[40];
        ev_hex(r->last_hash, ES_HASH_LEN, h);
        json_object_set_new(o, "last",
                            json_pack("{s:I, s:s, s:I, s:s, s:s}", "position",
                                      (json_int_t)r->last_position, "hash", h, "time",
                                      (json_int_t)r->last_time, "time_utc",
                                      guild_time_format(r->last_time, when, sizeof when), "key_id",
                                      r->last_key_id));
        json_object_set_new(
            o, "unsigned_after",
            json_integer((json_int_t)(v->chain.last_position > r->last_position
                                          ? v->chain.last_position - r->last_position
                                          : 0)));
    }
    if (!r->intact)
        json_object_set_new(o, "break",
                            json_pack("{s:I, s:s, s:s}", "position", (json_int_t)r->break_position,
                                      "key_id", r->break_key_id, "what", r->what));
    return o;
}

static json_t *snapshots_json(const bus_snapshot_report *r)
{
    json_t *o =
        json_pack("{s:I, s:I, s:I, s:b}", "found", (json_int_t)r->found, "checked",
                  (json_int_t)r->checked, "unknown", (json_int_t)r->unknown, "intact", r->intact);
    if (!r->intact)
        json_object_set_new(o, "break",
                            json_pack("{s:s, s:I, s:s}", "stream", r->stream, "version",
                                      (json_int_t)r->version, "what", r->what));
    return o;
}

static void verdict_json(const verdict *v, bool intact)
{
    const es_verify_report *c = &v->chain;
    json_t *out = json_pack("{s:s, s:b, s:b, s:I, s:I, s:f}", "domain", v->domain, "intact", intact,
                            "chain_intact", c->intact, "checked", (json_int_t)c->checked,
                            "last_position", (json_int_t)c->last_position, "seconds", v->seconds);
    if (!c->intact)
        json_object_set_new(out, "break",
                            json_pack("{s:I, s:s, s:s}", "position", (json_int_t)c->break_position,
                                      "stream", c->stream, "what", c->what));
    json_object_set_new(out, "signatures", signatures_json(v));
    json_object_set_new(out, "snapshots", snapshots_json(&v->snaps));
    if (v->anchor.given)
        json_object_set_new(out, "anchor",
                            json_pack("{s:I, s:b, s:s}", "position", (json_int_t)v->anchor.position,
                                      "ok", v->anchor.ok, "what", v->anchor.what));
    ev_print_json_line(out);
    json_decref(out);
}

static void signatures_text(const verdict *v)
{
    const bus_checkpoint_report *r = &v->sigs;
    const char *d = v->domain;
    char when[40];
    if (r->found == 0 && !r->intact) {
        printf("%s: signatures BROKEN: %s\n", d, r->what);
    } else if (r->found == 0) {
        printf("%s: no signed checkpoints in the store (a service signs its head every %d s "
               "and when it stops)\n",
               d, BUS_CHECKPOINT_INTERVAL_MS / 1000);
    } else if (!r->intact) {
        printf("%s: signatures BROKEN at position %llu: %s (%llu signed checkpoint%s before it "
               "check out; checked with %s)\n",
               d, (unsigned long long)r->break_position, r->what, (unsigned long long)r->verified,
               r->verified == 1 ? "" : "s", v->trust->source);
    } else if (!r->keys_checked) {
        printf("%s: %llu signed checkpoint%s match the log, but the signatures were NOT "
               "checked: %s\n",
               d, (unsigned long long)r->found, r->found == 1 ? "" : "s", v->trust->source);
    } else {
        printf("%s: signatures intact — %llu signed checkpoint%s verified with %s; the last signs "
               "position %llu at %s (key %s)",
               d, (unsigned long long)r->verified, r->verified == 1 ? "" : "s", v->trust->source,
               (unsigned long long)r->last_position,
               guild_time_format(r->last_time, when, sizeof when), r->last_key_id);
        if (v->chain.last_position > r->last_position)
            printf(", %llu events after it are not signed yet",
                   (unsigned long long)(v->chain.last_position - r->last_position));
        printf("\n");
    }
}

static void snapshots_text(const verdict *v)
{
    const bus_snapshot_report *r = &v->snaps;
    if (!r->intact)
        printf("%s: snapshot BROKEN for stream %s at version %llu: %s (%llu checked before it)\n",
               v->domain, r->stream, (unsigned long long)r->version, r->what,
               (unsigned long long)r->checked);
    else if (r->found == 0)
        printf("%s: no snapshots in the store\n", v->domain);
    else
        printf("%s: snapshots intact — %llu checked against the events they stand for%s\n",
               v->domain, (unsigned long long)r->checked,
               r->unknown
                   ? " (the others are of streams whose aggregate has no snapshots here: unused)"
                   : "");
}

static void verdict_text(const verdict *v)
{
    const es_verify_report *c = &v->chain;
    if (c->intact)
        printf("%s: chain intact — %llu events checked up to position %llu in %.2f s\n", v->domain,
               (unsigned long long)c->checked, (unsigned long long)c->last_position, v->seconds);
    else
        printf("%s: chain BROKEN at position %llu%s%s: %s (%llu events before it check out)\n",
               v->domain, (unsigned long long)c->break_position, c->stream[0] ? ", stream " : "",
               c->stream, c->what, (unsigned long long)c->checked);
    signatures_text(v);
    snapshots_text(v);
    if (v->anchor.given && v->anchor.ok)
        printf("%s: anchor at position %llu matches\n", v->domain,
               (unsigned long long)v->anchor.position);
    else if (v->anchor.given)
        printf("%s: anchor BROKEN: %s\n", v->domain, v->anchor.what);
}

static int verify(const cmd_common *c, const char *domain, int argc, char **argv)
{
    static const char *const with_value[] = {"--pubkey", "--anchor", NULL};
    static const char *const flags[] = {"--json", NULL};
    if (!ev_opts_ok(argc, argv, 3, with_value, flags))
        return 2;
    bool as_json = cmd_flag(argc, argv, "--json");
    trust t;
    verdict v = {.domain = domain, .trust = &t};
    if (!trust_load(&t, c, domain, argc, argv))
        return 2;
    if (!anchor_parse(&v.anchor, cmd_opt(argc, argv, "--anchor"))) {
        fprintf(stderr, "guild events verify: --anchor takes POSITION:HASH (64 hex digits)\n");
        return 2;
    }
    es_store *st = cmd_open_log(c, domain, "guild events");
    if (!st)
        return 2;
    ev_progress p = {isatty(2) && !as_json, guild_mono_ns(), "verifying the chain: events"};
    guild_status s = es_verify(st, &v.chain, ev_show_progress, &p);
    p.what = "checking signed checkpoints";
    if (s == GUILD_OK)
        s = bus_checkpoint_check(st, domain, t.ring.count ? &t.ring : NULL, &v.sigs,
                                 ev_show_progress, &p);
    if (s == GUILD_OK)
        s = anchor_check(st, &v.anchor);
    p.what = "checking snapshots against their events";
    if (s == GUILD_OK)
        s = bus_snapshots_check(st, domain, &v.snaps, ev_show_progress, &p);
    v.seconds = ev_seconds_since(p.started);
    es_store_close(st);
    ev_progress_end(&p);
    if (s != GUILD_OK) {
        fprintf(stderr, "guild events verify: the store could not be read (%s)\n",
                guild_status_code(s));
        return 2;
    }
    if (t.pinned && v.sigs.found == 0 && v.chain.last_position > 0) {
        /* Whoever can write the store can delete signatures, only not make
         * new ones: an auditor who pins a key expects to find some. */
        v.sigs.intact = false;
        snprintf(v.sigs.what, sizeof v.sigs.what,
                 "the store holds no signed checkpoint though a key is pinned: signatures may "
                 "have been removed");
    }
    bool intact = v.chain.intact && v.sigs.intact && v.anchor.ok && v.snaps.intact;
    if (as_json)
        verdict_json(&v, intact);
    else
        verdict_text(&v);
    return intact ? 0 : 1;
}

/* ---- dispatch ------------------------------------------------------------------------ */

static int usage(void)
{
    fprintf(
        stderr,
        "usage: guild events ls <domain> [--limit N]\n"
        "       guild events show <domain> <stream> [--json]\n"
        "       guild events export <domain> [--stream S] [--type T] [--from TIME] [--to TIME]\n"
        "                           [--correlation ID] [--actor ID] [--quiet]\n"
        "       guild events tail <domain> [--from-position P] [--interval MS] [--limit N]\n"
        "                         [the filters of export]\n"
        "       guild events key <domain> [--json]\n"
        "       guild events verify <domain> [--pubkey HEX]... [--anchor POSITION:HASH] [--json]\n"
        "       guild events replay <domain> --into DIR [--max-diffs N] [--json]\n"
        "every one takes --data DIR; TIME is RFC 3339 or Unix nanoseconds\n");
    return 2;
}

int cmd_events(int argc, char **argv)
{
    cmd_common c;
    if ((argc = cmd_common_parse(&c, argc, argv)) < 0)
        return 2;
    if (argc < 3 || strncmp(argv[2], "--", 2) == 0)
        return usage();
    const char *verb = argv[1], *domain = argv[2];
    static const char *const none[] = {NULL};
    static const char *const json_flag[] = {"--json", NULL};
    static const char *const limit_opt[] = {"--limit", NULL};
    if (strcmp(verb, "verify") == 0)
        return verify(&c, domain, argc, argv);
    if (strcmp(verb, "export") == 0)
        return export(&c, domain, argc, argv);
    if (strcmp(verb, "tail") == 0)
        return tail(&c, domain, argc, argv);
    if (strcmp(verb, "replay") == 0)
        return ev_replay(&c, domain, argc, argv);
    if (strcmp(verb, "key") == 0)
        return ev_opts_ok(argc, argv, 3, none, json_flag)
                   ? key(&c, domain, cmd_flag(argc, argv, "--json"))
                   : 2;
    if (strcmp(verb, "show") == 0) {
        if (argc < 4 || strncmp(argv[3], "--", 2) == 0 ||
            !ev_opts_ok(argc, argv, 4, none, json_flag))
            return usage();
        return show(&c, domain, argv[3], cmd_flag(argc, argv, "--json"));
    }
    if (strcmp(verb, "ls") == 0) {
        if (!ev_opts_ok(argc, argv, 3, limit_opt, none))
            return 2;
        const char *lim = cmd_opt(argc, argv, "--limit");
        uint64_t limit = SIZE_MAX;
        if (lim && (!cmd_parse_u64(lim, &limit) || limit == 0 || limit > SIZE_MAX)) {
            fprintf(stderr, "guild events ls: --limit takes a positive integer\n");
            return 2;
        }
        return list(&c, domain, (size_t)limit);
    }
    fprintf(stderr, "guild events: unknown subcommand %s\n", verb);
    return usage();
}
