/* Scalar syntaxes used across the config: durations and rates. */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "herald/config.h"

int config_parse_duration(const char *s, int64_t *out_ms)
{
    if (!s || !isdigit((unsigned char)s[0]))
        return -HERR_MALFORMED;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || v < 0)
        return -HERR_MALFORMED;
    int64_t mult;
    if (*end == '\0' || strcmp(end, "s") == 0)
        mult = 1000;
    else if (strcmp(end, "ms") == 0)
        mult = 1;
    else if (strcmp(end, "m") == 0 || strcmp(end, "min") == 0)
        mult = 60 * 1000;
    else if (strcmp(end, "h") == 0)
        mult = 3600 * 1000;
    else if (strcmp(end, "d") == 0)
        mult = 86400 * 1000;
    else
        return -HERR_MALFORMED;
    if (v > INT64_MAX / mult)
        return -HERR_MALFORMED;
    *out_ms = v * mult;
    return 0;
}

int config_parse_rate(const char *s, struct cfg_rate *out)
{
    if (!s || !isdigit((unsigned char)s[0]))
        return -HERR_MALFORMED;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || v == 0 || v > UINT32_MAX || *end != '/')
        return -HERR_MALFORMED;
    const char *unit = end + 1;
    static const struct {
        const char *name;
        uint32_t secs;
    } units[] = {{"s", 1},        {"sec", 1},     {"second", 1}, {"m", 60},     {"min", 60},
                 {"minute", 60},  {"h", 3600},    {"hour", 3600}, {"d", 86400}, {"day", 86400}};
    for (size_t i = 0; i < HERALD_ARRAY_LEN(units); i++)
        if (strcmp(unit, units[i].name) == 0) {
            out->count = (uint32_t)v;
            out->window_s = units[i].secs;
            return 0;
        }
    return -HERR_MALFORMED;
}
