/* registry.h — one row per domain this build serves. Adding a domain is
 * adding its row here and its folder under domain/. */
#ifndef GUILD_DOMAIN_REGISTRY_H
#define GUILD_DOMAIN_REGISTRY_H

#include "domain/dom.h"

extern const dom_domain dom_identity;
extern const dom_domain dom_talent;

#define GUILD_DOMAINS(X) X(dom_identity) X(dom_talent)

#endif
