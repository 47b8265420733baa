/*
 * talent_int.h — inside the talent domain only: the profile state that
 * profile.c evolves and talent.c decides on. Nothing outside domain/talent/
 * includes this; others use talent.h.
 */
#ifndef GUILD_DOMAIN_TALENT_TALENT_INT_H
#define GUILD_DOMAIN_TALENT_TALENT_INT_H

#include "domain/talent/talent.h"

/* The free texts of a profile, in the order of talent__text_names. */
enum talent_text { TALENT_HEADLINE, TALENT_BIO, TALENT_LOCATION, TALENT_TIMEZONE, TALENT_TEXTS };

/* Field names of the free texts, NULL-terminated. */
extern const char *const talent__text_names[TALENT_TEXTS + 1];

typedef struct talent_certification {
    char *name, *issuer, *issued_on;
    char *expires_on; /* NULL: does not expire */
} talent_certification;

typedef struct talent_price {
    char currency[4];
    int64_t hourly_rate; /* minor units */
    int64_t since;       /* Unix ns, the time of its rate_set */
} talent_price;

typedef struct talent_reservation {
    char *id;
    int hours;
} talent_reservation;

struct talent_profile {
    bool exists, archived;
    char *talent_id, *user_id; /* NULL until created */
    char *text[TALENT_TEXTS];  /* NULL until created */
    talent_skill *skills;      /* n_skills, in order added */
    size_t n_skills;
    talent_certification *certs; /* n_certs, in order added */
    size_t n_certs;
    talent_price *prices;    /* the pricing history, oldest first; */
    size_t n_prices;         /* the last one is the current rate */
    talent_reservation *res; /* n_res */
    size_t n_res;
    int hours;                      /* per week, offered */
    int reserved;                   /* sum of res[].hours */
    int64_t created_at, updated_at; /* Unix ns */
};

/* ASCII case-insensitive comparison: how skills and certifications match. */
int talent__name_cmp(const char *a, const char *b);

/* Look-ups by name or id; NULL when absent. */
const talent_certification *talent__certification_find(const talent_profile *p, const char *name);
const talent_reservation *talent__reservation_find(const talent_profile *p, const char *id);

#endif
