/* Dates for jobs and headers, without the C library's local-time state:
 * send_at / expires_at parsing and the RFC 5322 Date header. */
#include <stdbool.h>
#include <stdio.h>

#include "msg/msg.h"

/* Days since 1970-01-01 of a proleptic Gregorian date (era arithmetic, valid
 * for any year we accept). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

static bool is_leap(unsigned y)
{
    return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static unsigned days_in_month(unsigned y, unsigned m)
{
    static const unsigned char dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    return m == 2 && is_leap(y) ? 29 : dim[m - 1];
}

/* Read exactly n digits at s[*i]. */
static bool digits(const char *s, size_t len, size_t *i, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t k = 0; k < n; k++) {
        if (*i >= len || s[*i] < '0' || s[*i] > '9') return false;
        v = v * 10 + (unsigned)(s[(*i)++] - '0');
    }
    *out = v;
    return true;
}

static bool expect(const char *s, size_t len, size_t *i, char c)
{
    if (*i >= len || s[*i] != c) return false;
    (*i)++;
    return true;
}

static int parse_rfc3339(const char *s, size_t len, int64_t *out_ms)
{
    size_t i = 0;
    unsigned y, mo, d, h, mi, sec, ms = 0;
    if (!digits(s, len, &i, 4, &y) || !expect(s, len, &i, '-') || !digits(s, len, &i, 2, &mo) ||
        !expect(s, len, &i, '-') || !digits(s, len, &i, 2, &d))
        return -HERR_MALFORMED;
    if (i >= len || (s[i] != 'T' && s[i] != 't' && s[i] != ' ')) return -HERR_MALFORMED;
    i++;
    if (!digits(s, len, &i, 2, &h) || !expect(s, len, &i, ':') || !digits(s, len, &i, 2, &mi) ||
        !expect(s, len, &i, ':') || !digits(s, len, &i, 2, &sec))
        return -HERR_MALFORMED;
    if (i < len && s[i] == '.') {
        i++;
        size_t start = i;
        unsigned scale = 100;
        while (i < len && s[i] >= '0' && s[i] <= '9' && i - start < 9) {
            ms += (unsigned)(s[i] - '0') * scale;
            scale /= 10;
            i++;
        }
        if (i == start) return -HERR_MALFORMED;
    }
    if (mo < 1 || mo > 12 || d < 1 || d > days_in_month(y, mo) || h > 23 || mi > 59 || sec > 60)
        return -HERR_MALFORMED;
    if (sec == 60) /* leap second: the next second is as good for scheduling */
        sec = 59, ms = 999;
    int64_t offset_min = 0;
    if (i < len && (s[i] == 'Z' || s[i] == 'z')) {
        i++;
    } else if (i < len && (s[i] == '+' || s[i] == '-')) {
        int sign = s[i++] == '-' ? -1 : 1;
        unsigned oh, om;
        if (!digits(s, len, &i, 2, &oh) || !expect(s, len, &i, ':') ||
            !digits(s, len, &i, 2, &om) || oh > 23 || om > 59)
            return -HERR_MALFORMED;
        offset_min = sign * (int64_t)(oh * 60 + om);
    } else {
        return -HERR_MALFORMED;
    }
    if (i != len) return -HERR_MALFORMED;
    int64_t secs = days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + sec - offset_min * 60;
    if (secs < 0) return -HERR_MALFORMED;
    *out_ms = secs * 1000 + ms;
    return 0;
}

int msg_parse_time_ms(const char *s, size_t len, int64_t *out_ms)
{
    if (len == 0) return -HERR_MALFORMED;
    size_t i = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9')
        i++;
    if (i == len) {
        if (len > 15) /* > year 33000: a typo (µs, ns), not a date */
            return -HERR_MALFORMED;
        int64_t v = 0;
        for (size_t k = 0; k < len; k++)
            v = v * 10 + (s[k] - '0');
        *out_ms = v;
        return 0;
    }
    return parse_rfc3339(s, len, out_ms);
}

void msg_format_date(char *out, size_t outlen, int64_t wall_ms)
{
    static const char wday[7][4] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
    static const char mon[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                    "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    int64_t secs = wall_ms >= 0 ? wall_ms / 1000 : 0;
    int64_t days = secs / 86400, rem = secs % 86400;
    /* Inverse of days_from_civil. */
    int64_t z = days + 719468;
    int64_t era = z / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t y = (int64_t)yoe + era * 400;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    y += m <= 2;
    snprintf(out, outlen, "%s, %02u %s %04lld %02u:%02u:%02u +0000", wday[days % 7], d, mon[m - 1],
             (long long)y, (unsigned)(rem / 3600), (unsigned)(rem / 60 % 60), (unsigned)(rem % 60));
}
