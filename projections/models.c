/* models.c — the read models this build knows. */
#include "projections/models.h"

#include <string.h>

static const prj_model *const all_models[] = {
#define GUILD_MODEL_ROW(sym) &sym,
    GUILD_MODELS(GUILD_MODEL_ROW)
#undef GUILD_MODEL_ROW
        NULL,
};

const prj_model *const *prj_models(void)
{
    return all_models;
}

const prj_model *prj_model_find(const char *name)
{
    for (const prj_model *const *m = all_models; *m; m++)
        if (strcmp((*m)->name, name) == 0)
            return *m;
    return NULL;
}

const prj_query *prj_query_find(const prj_model *m, const char *name)
{
    for (const prj_query *q = m->queries; q && q->name; q++)
        if (strcmp(q->name, name) == 0)
            return q;
    return NULL;
}
