/*
 * events_replay.c — `guild events replay <domain> --into DIR`: rebuilds the
 * domain's read models from the log into DIR and compares each with the
 * live one, by digest and then key by key (events.c has the other verbs).
 */
#include "events.h"

#include "common/alloc.h"
#include "common/clock.h"
#include "eventstore/es.h"
#include "projections/projector.h"

#include <errno.h>
#include <jansson.h>
#include <lmdb.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_DIFFS 20 /* differing keys replay lists by default */

/* Progress of a replay, shown through the same line as verify's. */
typedef struct replay_progress_ctx {
    ev_progress *p;
    uint64_t total;
} replay_progress_ctx;

static int replay_progress(void *ctx, uint64_t position, const prj_batch_stats *batch,
                           size_t events, double apply_seconds)
{
    replay_progress_ctx *rp = ctx;
    (void)batch, (void)events, (void)apply_seconds;
    ev_show_progress(rp->p, position, rp->total);
    return 0;
}

/* Entries of the live and the rebuilt model that differ. */
typedef struct diffs {
    uint64_t compared, count;
    size_t max;
    json_t *list; /* [{db, key, what}], the first `max` */
} diffs;

/* A key for a person: printable ASCII as it is, other bytes as \xNN. */
static void key_text(const MDB_val *k, char *out, size_t size)
{
    const unsigned char *p = k->mv_data;
    size_t o = 0, i = 0;
    for (; i < k->mv_size && o + 8 < size; i++) {
        if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
            out[o++] = (char)p[i];
        else
            o += (size_t)snprintf(out + o, size - o, "\\x%02x", p[i]);
    }
    snprintf(out + o, size - o, "%s", i < k->mv_size ? "…" : "");
}

static void diff_add(diffs *d, const char *db, const MDB_val *k, const char *what)
{
    d->count++;
    if (json_array_size(d->list) >= d->max)
        return;
    char text[300];
    key_text(k, text, sizeof text);
    json_array_append_new(d->list,
                          json_pack("{s:s, s:s, s:s}", "db", db, "key", text, "what", what));
}

/* Walks one named database of both environments together, in key order. */
static int diff_db(MDB_txn *lt, MDB_txn *bt, const char *db, diffs *d)
{
    MDB_dbi ld, bd;
    MDB_cursor *lc = NULL, *bc = NULL;
    MDB_val lk, lv, bk, bv;
    int lr = MDB_NOTFOUND, br = MDB_NOTFOUND;
    if (mdb_dbi_open(lt, db, 0, &ld) == 0 && mdb_cursor_open(lt, ld, &lc) == 0)
        lr = mdb_cursor_get(lc, &lk, &lv, MDB_FIRST);
    if (mdb_dbi_open(bt, db, 0, &bd) == 0 && mdb_cursor_open(bt, bd, &bc) == 0)
        br = mdb_cursor_get(bc, &bk, &bv, MDB_FIRST);
    while (lr == 0 || br == 0) {
        int cmp = lr ? 1 : br ? -1 : mdb_cmp(lt, ld, &lk, &bk);
        d->compared++;
        if (cmp < 0) {
            diff_add(d, db, &lk, "only in the live model");
        } else if (cmp > 0) {
            diff_add(d, db, &bk, "only in the rebuilt model");
        } else if (lv.mv_size != bv.mv_size || memcmp(lv.mv_data, bv.mv_data, lv.mv_size) != 0) {
            diff_add(d, db, &lk, "value differs");
        }
        if (cmp <= 0)
            lr = mdb_cursor_get(lc, &lk, &lv, MDB_NEXT);
        if (cmp >= 0)
            br = mdb_cursor_get(bc, &bk, &bv, MDB_NEXT);
    }
    if (lc)
        mdb_cursor_close(lc);
    if (bc)
        mdb_cursor_close(bc);
    return lr != MDB_NOTFOUND ? lr : br != MDB_NOTFOUND ? br : 0;
}

static int env_open_ro(const char *dir, MDB_env **env, MDB_txn **txn)
{
    int rc = mdb_env_create(env);
    if (rc)
        return rc;
    mdb_env_set_maxdbs(*env, 32);
    if ((rc = mdb_env_open(*env, dir, MDB_RDONLY | MDB_NOTLS, 0644)) == 0 &&
        (rc = mdb_txn_begin(*env, NULL, MDB_RDONLY, txn)) == 0)
        return 0;
    mdb_env_close(*env);
    *env = NULL;
    return rc;
}

/* Reads both models straight from their LMDB files, one snapshot each. */
static int diff_models(const char *live_dir, const char *built_dir, const prj_model *m, diffs *d)
{
    MDB_env *le = NULL, *be = NULL;
    MDB_txn *lt = NULL, *bt = NULL;
    int rc = env_open_ro(live_dir, &le, &lt);
    if (rc == 0)
        rc = env_open_ro(built_dir, &be, &bt);
    for (const char *const *db = m->dbs; rc == 0 && db && *db; db++)
        rc = diff_db(lt, bt, *db, d);
    if (lt)
        mdb_txn_abort(lt);
    if (bt)
        mdb_txn_abort(bt);
    if (le)
        mdb_env_close(le);
    if (be)
        mdb_env_close(be);
    return rc;
}

typedef struct model_report {
    const prj_model *m;
    char live_dir[1100], dir[1100];
    bool live;
    uint64_t head, live_pos, live_pos_after, built_pos;
    uint8_t live_digest[PRJ_DIGEST_LEN], built_digest[PRJ_DIGEST_LEN];
    bool compared, moved, equal;
    diffs d;
    double seconds;
} model_report;

/* Position and digest of a model's environment as prj_store keeps them. */
static bool model_snapshot(const char *dir, const prj_model *m, uint64_t *pos,
                           uint8_t digest[PRJ_DIGEST_LEN])
{
    prj_store *s = NULL;
    guild_error err = {0};
    if (prj_store_open(dir, m, &s, &err) != GUILD_OK) {
        fprintf(stderr, "guild events replay: %s\n", err.message);
        return false;
    }
    prj_store_snapshot(s, pos, digest);
    prj_store_close(s);
    return true;
}

/* Makes <into>/<model> empty, refusing to touch the live model. */
static bool target_prepare(model_report *r)
{
    char a[PATH_MAX], b[PATH_MAX], path[1200];
    mkdir(r->dir, 0755);
    if (realpath(r->dir, a) && realpath(r->live_dir, b) && strcmp(a, b) == 0) {
        fprintf(stderr, "guild events replay: %s is the live model; replay somewhere else\n",
                r->dir);
        return false;
    }
    snprintf(path, sizeof path, "%s/data.mdb", r->dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/lock.mdb", r->dir);
    unlink(path);
    return true;
}

static guild_status model_rebuild(es_store *log, model_report *r, uint64_t stop_at, ev_progress *p)
{
    prj_store *target = NULL;
    guild_error err = {0};
    if (prj_store_open(r->dir, r->m, &target, &err) != GUILD_OK) {
        fprintf(stderr, "guild events replay: %s\n", err.message);
        return GUILD_IO;
    }
    replay_progress_ctx rp = {p, stop_at};
    /* stop_at 0: an empty log or model, nothing to replay */
    guild_status s =
        stop_at ? prj_store_replay(target, log, stop_at, 0, replay_progress, &rp) : GUILD_OK;
    prj_store_snapshot(target, &r->built_pos, r->built_digest);
    prj_store_close(target);
    return s;
}

/* Rebuilds one model up to the live model's position (or the log's end
 * when there is none) and compares the two. 0, or 2 when it cannot run. */
static int replay_model(const cmd_common *c, es_store *log, const char *into, model_report *r,
                        bool tty)
{
    snprintf(r->dir, sizeof r->dir, "%s/%s", into, r->m->name);
    prj_model_dir(c->data, r->m->name, r->live_dir, sizeof r->live_dir);
    if (!target_prepare(r))
        return 2;
    char path[1200];
    snprintf(path, sizeof path, "%s/data.mdb", r->live_dir);
    r->live = access(path, F_OK) == 0;
    if (r->live && !model_snapshot(r->live_dir, r->m, &r->live_pos, r->live_digest))
        return 2;
    es_log_head(log, &r->head, NULL);
    /* Compared at the live model's position: a model still catching up is
     * not a difference. */
    uint64_t stop_at = r->live && r->live_pos < r->head ? r->live_pos : r->head;
    char what[160];
    snprintf(what, sizeof what, "replaying %s: events", r->m->name);
    ev_progress p = {tty, guild_mono_ns(), what};
    guild_status s = model_rebuild(log, r, stop_at, &p);
    ev_progress_end(&p);
    r->seconds = ev_seconds_since(p.started);
    if (s != GUILD_OK) {
        fprintf(stderr, "guild events replay: %s: %s\n", r->m->name, guild_status_code(s));
        return 2;
    }
    if (!r->live)
        return 0;
    r->compared = r->built_pos == r->live_pos;
    if (r->compared) {
        int rc = diff_models(r->live_dir, r->dir, r->m, &r->d);
        uint8_t ignored[PRJ_DIGEST_LEN];
        if (rc || !model_snapshot(r->live_dir, r->m, &r->live_pos_after, ignored)) {
            fprintf(stderr, "guild events replay: cannot compare %s: %s\n", r->m->name,
                    rc ? mdb_strerror(rc) : "the live model cannot be read");
            return 2;
        }
        r->moved = r->live_pos_after != r->live_pos;
    }
    /* The digests decide; the walk also catches a live model changed
     * behind its digest's back, unless the projector moved on meanwhile. */
    r->equal = r->compared && sodium_memcmp(r->live_digest, r->built_digest, PRJ_DIGEST_LEN) == 0 &&
               (r->moved || r->d.count == 0);
    return 0;
}

static json_t *model_json(const model_report *r)
{
    char ld[2 * PRJ_DIGEST_LEN + 1], bd[2 * PRJ_DIGEST_LEN + 1];
    ev_hex(r->live_digest, PRJ_DIGEST_LEN, ld);
    ev_hex(r->built_digest, PRJ_DIGEST_LEN, bd);
    json_t *o = json_pack("{s:s, s:s, s:s, s:b, s:I, s:I, s:s, s:f}", "model", r->m->name, "dir",
                          r->dir, "live_dir", r->live_dir, "live", r->live, "log_head",
                          (json_int_t)r->head, "rebuilt_position", (json_int_t)r->built_pos,
                          "rebuilt_digest", bd, "seconds", r->seconds);
    if (r->live) {
        json_object_set_new(o, "live_position", json_integer((json_int_t)r->live_pos));
        json_object_set_new(o, "live_digest", json_string(ld));
        json_object_set_new(o, "positions_differ", json_boolean(!r->compared));
    }
    if (r->compared) {
        json_object_set_new(o, "compared_entries", json_integer((json_int_t)r->d.compared));
        json_object_set_new(
            o, "differences",
            json_pack("{s:I, s:O}", "count", (json_int_t)r->d.count, "keys", r->d.list));
        if (r->moved)
            json_object_set_new(o, "live_moved_to", json_integer((json_int_t)r->live_pos_after));
    }
    json_object_set_new(o, "equal", json_boolean(r->equal));
    return o;
}

static void model_text(const model_report *r)
{
    const char *name = r->m->name;
    double secs = r->seconds;
    printf("%s: replayed %llu events into %s in %.2f s (%.0f events/s)\n", name,
           (unsigned long long)r->built_pos, r->dir, secs,
           secs > 0 ? (double)r->built_pos / secs : 0.0);
    char ld[2 * PRJ_DIGEST_LEN + 1], bd[2 * PRJ_DIGEST_LEN + 1];
    ev_hex(r->live_digest, PRJ_DIGEST_LEN, ld);
    ev_hex(r->built_digest, PRJ_DIGEST_LEN, bd);
    if (!r->live) {
        printf("%s: no live model at %s: nothing to compare\n", name, r->live_dir);
        return;
    }
    if (!r->compared) {
        printf("%s: positions differ: the live model is at position %llu but the log ends at "
               "%llu — it holds events the log does not\n",
               name, (unsigned long long)r->live_pos, (unsigned long long)r->head);
        return;
    }
    if (r->equal) {
        printf("%s: at position %llu the rebuilt model is EQUAL to the live one (digest %.16s…, "
               "%llu entries compared)\n",
               name, (unsigned long long)r->built_pos, bd, (unsigned long long)r->d.compared);
    } else {
        bool same_digest = strcmp(ld, bd) == 0;
        printf("%s: at position %llu the rebuilt model DIFFERS from the live one (%s%.16s… %s "
               "%.16s…)\n",
               name, (unsigned long long)r->built_pos, same_digest ? "same digest " : "digest ", bd,
               same_digest ? "=" : "≠", ld);
        if (same_digest)
            printf("%s: the live model's content does not match its own digest: it was changed "
                   "outside the projector\n",
                   name);
    }
    if (r->d.count)
        printf("%s: %llu entries differ%s:\n", name, (unsigned long long)r->d.count,
               r->moved ? " (the live model moved on during the comparison: some may be events "
                          "applied since)"
                        : "");
    size_t i;
    json_t *e;
    json_array_foreach(r->d.list, i, e)
    {
        printf("  %-14s %-50s %s\n", json_string_value(json_object_get(e, "db")),
               json_string_value(json_object_get(e, "key")),
               json_string_value(json_object_get(e, "what")));
    }
    if (r->d.count > json_array_size(r->d.list))
        printf("  … and %llu more (--max-diffs N lists more)\n",
               (unsigned long long)(r->d.count - json_array_size(r->d.list)));
}

int ev_replay(const cmd_common *c, const char *domain, int argc, char **argv)
{
    static const char *const with_value[] = {"--into", "--max-diffs", NULL};
    static const char *const flags[] = {"--json", NULL};
    if (!ev_opts_ok(argc, argv, 3, with_value, flags))
        return 2;
    const char *into = cmd_opt(argc, argv, "--into"), *md = cmd_opt(argc, argv, "--max-diffs");
    uint64_t max = MAX_DIFFS;
    bool as_json = cmd_flag(argc, argv, "--json");
    if (!into || (md && !cmd_parse_u64(md, &max))) {
        fprintf(stderr,
                "usage: guild events replay <domain> --into DIR [--max-diffs N] [--json]\n");
        return 2;
    }
    size_t n = 0;
    for (const prj_model *const *m = prj_models(); *m; m++)
        n += strcmp((*m)->domain, domain) == 0;
    if (n == 0) {
        fprintf(stderr, "guild events replay: no read model is built from %s's events\n", domain);
        return 2;
    }
    if (mkdir(into, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "guild events replay: cannot create %s: %s\n", into, strerror(errno));
        return 2;
    }
    es_store *log = cmd_open_log(c, domain, "guild events");
    if (!log)
        return 2;
    int rc = 0;
    json_t *models = json_array();
    for (const prj_model *const *m = prj_models(); *m && rc < 2; m++) {
        if (strcmp((*m)->domain, domain) != 0)
            continue;
        model_report r = {.m = *m, .d = {.max = (size_t)max, .list = json_array()}};
        int mrc = replay_model(c, log, into, &r, isatty(2) && !as_json);
        rc = mrc ? mrc : r.equal ? rc : 1;
        if (mrc == 0 && as_json)
            json_array_append_new(models, model_json(&r));
        else if (mrc == 0)
            model_text(&r);
        json_decref(r.d.list);
    }
    uint64_t head = 0;
    es_log_head(log, &head, NULL);
    es_store_close(log);
    if (as_json && rc < 2) {
        json_t *out = json_pack("{s:s, s:s, s:I, s:b, s:o}", "domain", domain, "into", into,
                                "log_head", (json_int_t)head, "equal", rc == 0, "models", models);
        ev_print_json_line(out);
        json_decref(out);
    } else {
        json_decref(models);
    }
    return rc;
}
