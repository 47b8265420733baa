/*
 * schema.c — the one validator behind every command table.
 *
 * Checks a decoded body against a {NULL}-terminated array of dom_field and
 * names the first field that fails, with a message a client can show.
 */
#include "domain/dom.h"

#include "common/uuid.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define DEFAULT_STRING_MAX 1000
#define DEFAULT_ITEM_MAX 200

/* ISO 4217 active codes. */
static const char *const currencies[] = {
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SYP", "SZL", "THB", "TJS",
    "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VES",
    "VND", "VUV", "WST", "XAF", "XCD", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWL", NULL};

static guild_status fail(guild_error *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static guild_status fail(guild_error *err, const char *field, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return guild_error_field(err, GUILD_VALIDATION_FAILED, field, "%s", msg);
}

static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    return n;
}

static bool has_control(const char *s, bool allow_newlines)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c < 0x20 && !(allow_newlines && (c == '\n' || c == '\t' || c == '\r')))
            return true;
        if (c == 0x7f)
            return true;
    }
    return false;
}

static bool email_ok(const char *s)
{
    size_t n = strlen(s);
    const char *at = strchr(s, '@');
    if (n < 3 || n > 254 || !at || at == s || strchr(at + 1, '@'))
        return false;
    const char *dot = strrchr(at, '.');
    if (!dot || dot == at + 1 || dot[1] == '\0')
        return false;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == '"' || *p == '<' || *p == '>' || *p == ',')
            return false;
    return true;
}

static bool digits(const char *s, int n)
{
    for (int i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static int num(const char *s, int n)
{
    int v = 0;
    for (int i = 0; i < n; i++)
        v = v * 10 + (s[i] - '0');
    return v;
}

/* RFC 3339 full-date, optionally followed by T time and offset. */
static bool date_ok(const char *s)
{
    static const int mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (strlen(s) < 10 || !digits(s, 4) || s[4] != '-' || !digits(s + 5, 2) || s[7] != '-' ||
        !digits(s + 8, 2))
        return false;
    int y = num(s, 4), m = num(s + 5, 2), d = num(s + 8, 2);
    if (m < 1 || m > 12 || d < 1 || d > mdays[m - 1])
        return false;
    if (m == 2 && d == 29 && !((y % 4 == 0 && y % 100 != 0) || y % 400 == 0))
        return false;
    const char *t = s + 10;
    if (*t == '\0')
        return true;
    if ((*t != 'T' && *t != 't') || !digits(t + 1, 2) || t[3] != ':' || !digits(t + 4, 2) ||
        t[6] != ':' || !digits(t + 7, 2))
        return false;
    if (num(t + 1, 2) > 23 || num(t + 4, 2) > 59 || num(t + 7, 2) > 60)
        return false;
    t += 9;
    if (*t == '.') {
        t++;
        if (!digits(t, 1))
            return false;
        while (*t >= '0' && *t <= '9')
            t++;
    }
    if ((*t == 'Z' || *t == 'z') && t[1] == '\0')
        return true;
    return (*t == '+' || *t == '-') && digits(t + 1, 2) && t[3] == ':' && digits(t + 4, 2) &&
           t[6] == '\0';
}

static bool name_ok(const char *s)
{
    if (!(*s >= 'a' && *s <= 'z') && *s != '*')
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || strchr("_:.*-", *s)))
            return false;
    return true;
}

static bool in_list(const char *s, const char *const *list)
{
    for (; list && *list; list++)
        if (strcmp(s, *list) == 0)
            return true;
    return false;
}

static guild_status check_string(const dom_field *f, const char *path, const json_t *v,
                                 guild_error *err)
{
    const char *s = json_string_value(v);
    if (!s)
        return fail(err, path, "%s must be a string", path);
    size_t n = utf8_chars(s);
    int64_t max = f->max ? f->max : DEFAULT_STRING_MAX;
    if (f->type == DOM_PASSWORD) {
        const char *why = dom_password_problem(s);
        return why ? fail(err, path, "%s", why) : GUILD_OK;
    }
    if ((int64_t)n < f->min || (int64_t)n > max)
        return fail(err, path, "%s must have %lld to %lld characters", path, (long long)f->min,
                    (long long)max);
    if (f->required && n == 0)
        return fail(err, path, "%s must not be empty", path);
    if (has_control(s, f->type == DOM_TEXT))
        return fail(err, path, "%s must not hold control characters", path);
    switch (f->type) {
    case DOM_UUID:
        if (!guild_uuid_valid(s, (unsigned)strlen(s)))
            return fail(err, path, "%s must be a lower-case UUID", path);
        break;
    case DOM_EMAIL:
        if (!email_ok(s))
            return fail(err, path, "%s must be an e-mail address", path);
        break;
    case DOM_DATE:
        if (!date_ok(s))
            return fail(err, path, "%s must be an RFC 3339 date", path);
        break;
    case DOM_CURRENCY:
        if (!in_list(s, currencies))
            return fail(err, path, "%s must be an ISO 4217 currency code", path);
        break;
    case DOM_ENUM:
        if (!in_list(s, f->values))
            return fail(err, path, "%s has a value that is not allowed", path);
        break;
    case DOM_NAME:
        if (!name_ok(s))
            return fail(err, path, "%s must be lower case: letters, digits and _ : . - *", path);
        break;
    default:
        break;
    }
    return GUILD_OK;
}

static guild_status check_field(const dom_field *f, const char *path, const json_t *v,
                                guild_error *err);

static guild_status check_list(const dom_field *f, const char *path, const json_t *v,
                               guild_error *err)
{
    if (!json_is_array(v))
        return fail(err, path, "%s must be an array", path);
    int64_t n = (int64_t)json_array_size(v);
    int64_t max = f->max ? f->max : 100;
    if (n < f->min || n > max)
        return fail(err, path, "%s must have %lld to %lld items", path, (long long)f->min,
                    (long long)max);
    dom_field item = {.name = f->name,
                      .type = f->type == DOM_NAME_LIST ? DOM_NAME : DOM_STRING,
                      .required = true,
                      .min = 1,
                      .max = f->item_max ? f->item_max : DEFAULT_ITEM_MAX};
    size_t i;
    json_t *x;
    json_array_foreach(v, i, x)
    {
        char sub[128];
        snprintf(sub, sizeof sub, "%s[%zu]", path, i);
        guild_status s;
        if (f->type == DOM_OBJECT_LIST) {
            if (!json_is_object(x))
                return fail(err, sub, "%s must be an object", sub);
            for (const dom_field *g = f->items; g && g->name; g++) {
                char leaf[192];
                snprintf(leaf, sizeof leaf, "%s.%s", sub, g->name);
                json_t *gv = json_object_get(x, g->name);
                if (!gv || json_is_null(gv)) {
                    if (g->required)
                        return fail(err, leaf, "%s is required", leaf);
                    continue;
                }
                if ((s = check_field(g, leaf, gv, err)) != GUILD_OK)
                    return s;
            }
            const char *key;
            json_t *kv;
            json_object_foreach((json_t *)x, key, kv)
            {
                bool known = false;
                for (const dom_field *g = f->items; g && g->name && !known; g++)
                    known = strcmp(g->name, key) == 0;
                if (!known)
                    return fail(err, sub, "%s has an unknown field", sub);
            }
        } else if ((s = check_field(&item, sub, x, err)) != GUILD_OK) {
            return s;
        }
    }
    return GUILD_OK;
}

static guild_status check_field(const dom_field *f, const char *path, const json_t *v,
                                guild_error *err)
{
    switch (f->type) {
    case DOM_INT: {
        if (!json_is_integer(v))
            return fail(err, path, "%s must be an integer", path);
        int64_t x = (int64_t)json_integer_value(v);
        if ((f->min || f->max) && (x < f->min || x > f->max))
            return fail(err, path, "%s must be an integer from %lld to %lld", path,
                        (long long)f->min, (long long)f->max);
        return GUILD_OK;
    }
    case DOM_BOOL:
        return json_is_boolean(v) ? GUILD_OK : fail(err, path, "%s must be true or false", path);
    case DOM_STRING_LIST:
    case DOM_NAME_LIST:
    case DOM_OBJECT_LIST:
        return check_list(f, path, v, err);
    case DOM_ANY:
        return GUILD_OK;
    default:
        return check_string(f, path, v, err);
    }
}

guild_status dom_validate(const dom_field *fields, const json_t *body, guild_error *err)
{
    if (!json_is_object(body))
        return guild_error_set(err, GUILD_INVALID_REQUEST, 0, "the body must be a map");
    for (const dom_field *f = fields; f && f->name; f++) {
        json_t *v = json_object_get(body, f->name);
        if (!v || json_is_null(v)) {
            if (f->required)
                return fail(err, f->name, "%s is required", f->name);
            continue;
        }
        guild_status s = check_field(f, f->name, v, err);
        if (s != GUILD_OK)
            return s;
    }
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v)
    {
        bool known = false;
        for (const dom_field *f = fields; f && f->name && !known; f++)
            known = strcmp(f->name, key) == 0;
        if (!known)
            return guild_error_field(err, GUILD_VALIDATION_FAILED, key, "unknown field %.64s", key);
    }
    return GUILD_OK;
}
