/* registry.c — the domains this build of guild serves. */
#include "domain/registry.h"

#include <string.h>

static const dom_domain *const all_domains[] = {
#define GUILD_DOMAIN_ROW(sym) &sym,
    GUILD_DOMAINS(GUILD_DOMAIN_ROW)
#undef GUILD_DOMAIN_ROW
        NULL,
};

const dom_domain *const *dom_domains(void)
{
    return all_domains;
}

const dom_domain *dom_domain_find(const char *name)
{
    for (const dom_domain *const *d = all_domains; *d; d++)
        if (strcmp((*d)->name, name) == 0)
            return *d;
    return NULL;
}
