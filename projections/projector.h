/*
 * projector.h — the projector process: keeps read models current from
 * JetStream and answers their queries.
 *
 * For each model: a pull consumer `prj_<model>_<8 hex>_<n>` (one per model
 * and data directory; n counts its starts in this process) on the domain's
 * stream, created afresh from the model's checkpoint + 1 at each start,
 * after a gap, a failed batch, a stall and a swap (deleting the one before
 * and any an earlier process left), and deleted on stop; each fetched batch
 * is applied in one LMDB transaction with the checkpoint (prj_store_apply),
 * then acknowledged (ack-all on the last). Only a gapless run after the
 * checkpoint is applied, so each event takes effect exactly once whatever
 * is killed when. Queries arrive on guild.qry.<domain>.<query> (queue group
 * guild.<domain>.query); one sent with Guild-Consistency
 * "<domain>:<position>" waits until the model has applied that position, up
 * to its deadline (Guild-Timeout in ms, default 2000), else answers
 * `unavailable`. Control requests on
 * guild.ctl.project.<model>.{retry,swap,status} serve the `guild project`
 * tools.
 */
#ifndef GUILD_PROJECTIONS_PROJECTOR_H
#define GUILD_PROJECTIONS_PROJECTOR_H

#include "common/status.h"
#include "projections/prj.h"

typedef struct prj_projector prj_projector;

typedef struct prj_projector_options {
    const char *data_dir; /* models live in <data>/projections/<model> */
    const char *nats_url;
    const char *const *models; /* NULL-terminated names; NULL = all */
    int connect_wait_ms;
} prj_projector_options;

guild_status prj_projector_start(const prj_projector_options *opt, prj_projector **out,
                                 guild_error *err);
void prj_projector_stop(prj_projector *p);

/* <data>/projections/<model> into out. */
void prj_model_dir(const char *data_dir, const char *model, char *out, size_t size);

#endif
