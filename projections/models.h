/* models.h — one row per read model this build serves. */
#ifndef GUILD_PROJECTIONS_MODELS_H
#define GUILD_PROJECTIONS_MODELS_H

#include "projections/prj.h"

extern const prj_model prj_identity_model;
extern const prj_model prj_talent_model;

#define GUILD_MODELS(X) X(prj_identity_model) X(prj_talent_model)

#endif
