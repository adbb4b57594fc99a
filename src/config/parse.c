/* Scalar value parsers for the config: durations, rates, sizes and listen
 * addresses. Pure functions of their input, so they are tested by
 * table and shared with anything else that reads these spellings. */
#include <ctype.h>
#include <stdint.h>
#include <string.h>
#include <stdlib.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "herald/config.h"
#include "herald/core.h"
#include "msg/msg.h"

/* A century is far beyond any sensible timeout or age and keeps every sum
 * below INT64_MAX without further checks. */
#define DURATION_MAX_MS ((int64_t)100 * 366 * 86400 * 1000)

/* Reads a run of decimal digits into *out. Returns the number of digits read
 * (0 when none), or -1 when the value exceeds limit. */
static int read_digits(const char *s, uint64_t limit, uint64_t *out)
{
    uint64_t v = 0;
    int n = 0;
    while (isdigit((unsigned char)s[n])) {
        uint64_t d = (uint64_t)(s[n] - '0');
        if (v > (limit - d) / 10) return -1;
        v = v * 10 + d;
        n++;
    }
    *out = v;
    return n;
}

/* Accepts "250ms", "30s", "5m", "2h", "2d", compounds such as "1h30m", and a
 * bare integer meaning seconds. */
int config_parse_duration(const char *s, int64_t *out_ms)
{
    if (!s || !*s) return -HERR_MALFORMED;
    uint64_t v;
    int n = read_digits(s, (uint64_t)DURATION_MAX_MS, &v);
    if (n < 0) return -HERR_MALFORMED;
    if (n > 0 && s[n] == '\0') {
        if (v > (uint64_t)(DURATION_MAX_MS / 1000)) return -HERR_MALFORMED;
        *out_ms = (int64_t)v * 1000;
        return 0;
    }
    int64_t total = 0;
    const char *p = s;
    while (*p) {
        n = read_digits(p, (uint64_t)DURATION_MAX_MS, &v);
        if (n <= 0) return -HERR_MALFORMED;
        p += n;
        int64_t unit_ms;
        if (p[0] == 'm' && p[1] == 's') {
            unit_ms = 1;
            p += 2;
        } else if (*p == 's') {
            unit_ms = 1000;
            p++;
        } else if (*p == 'm') {
            unit_ms = 60 * 1000;
            p++;
        } else if (*p == 'h') {
            unit_ms = 3600 * 1000;
            p++;
        } else if (*p == 'd') {
            unit_ms = 86400 * 1000;
            p++;
        } else {
            return -HERR_MALFORMED;
        }
        if (v > (uint64_t)(DURATION_MAX_MS / unit_ms)) return -HERR_MALFORMED;
        total += (int64_t)v * unit_ms;
        if (total > DURATION_MAX_MS) return -HERR_MALFORMED;
    }
    *out_ms = total;
    return 0;
}

static const struct {
    const char *word;
    uint32_t seconds;
} rate_units[] = {
    {"s", 1},    {"sec", 1},   {"second", 1},  {"m", 60},    {"min", 60},    {"minute", 60},
    {"h", 3600}, {"hr", 3600}, {"hour", 3600}, {"d", 86400}, {"day", 86400},
};

/* "COUNT/UNIT" with UNIT a word from rate_units, or "COUNT/DURATION" such as
 * "100/10m" for windows that are not one unit long. The window must be whole
 * seconds; a zero count is refused because count 0 means "unset". */
int config_parse_rate(const char *s, struct cfg_rate *out)
{
    if (!s) return -HERR_MALFORMED;
    uint64_t count;
    int n = read_digits(s, UINT32_MAX, &count);
    if (n <= 0 || s[n] != '/' || count == 0) return -HERR_MALFORMED;
    const char *unit = s + n + 1;
    if (isdigit((unsigned char)*unit)) {
        int64_t ms;
        if (config_parse_duration(unit, &ms) < 0 || ms < 1000 || ms % 1000 != 0 ||
            ms / 1000 > UINT32_MAX)
            return -HERR_MALFORMED;
        out->count = (uint32_t)count;
        out->window_s = (uint32_t)(ms / 1000);
        return 0;
    }
    for (size_t i = 0; i < HERALD_ARRAY_LEN(rate_units); i++) {
        if (strcmp(unit, rate_units[i].word) == 0) {
            out->count = (uint32_t)count;
            out->window_s = rate_units[i].seconds;
            return 0;
        }
    }
    return -HERR_MALFORMED;
}

int config_parse_size(const char *s, uint64_t *out_bytes)
{
    if (!s) return -HERR_MALFORMED;
    uint64_t v;
    int n = read_digits(s, UINT64_MAX, &v);
    if (n <= 0) return -HERR_MALFORMED;
    const char *suf = s + n;
    unsigned shift = 0;
    if (*suf == 'k' || *suf == 'K')
        shift = 10;
    else if (*suf == 'm' || *suf == 'M')
        shift = 20;
    else if (*suf == 'g' || *suf == 'G')
        shift = 30;
    if (shift) {
        suf++;
        if (*suf == 'i') suf++;
    }
    if (*suf == 'b' || *suf == 'B') suf++;
    if (*suf != '\0') return -HERR_MALFORMED;
    if (shift && v > (UINT64_MAX >> shift)) return -HERR_MALFORMED;
    *out_bytes = v << shift;
    return 0;
}

int config_parse_listen(const char *s, struct sockaddr_storage *sa, unsigned *len)
{
    if (!s)
        return -HERR_MALFORMED;
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon;
    size_t hl;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || end[1] != ':')
            return -HERR_MALFORMED;
        hl = (size_t)(end - s - 1);
        if (hl >= sizeof host)
            return -HERR_MALFORMED;
        memcpy(host, s + 1, hl);
        colon = end + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon)
            return -HERR_MALFORMED;
        hl = (size_t)(colon - s);
        if (hl >= sizeof host)
            return -HERR_MALFORMED;
        memcpy(host, s, hl);
    }
    host[hl] = '\0';
    char *end;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end || port < 1 || port > 65535)
        return -HERR_MALFORMED;
    memset(sa, 0, sizeof *sa);
    struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)port);
        *len = sizeof *v4;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)port);
        *len = sizeof *v6;
        return 0;
    }
    return -HERR_MALFORMED;
}

int config_parse_time_ms(const char *s, int64_t *out_ms)
{
    return msg_parse_time_ms(s, strlen(s), out_ms);
}
