/* EHLO capabilities (RFC 5321 4.1.1.1): one keyword per line after the
 * greeting, case-insensitive, parameters separated by spaces. Unknown
 * keywords are ignored; nothing here trusts the line to be well formed. */
#include <string.h>
#include <strings.h>

#include "herald/smtp.h"

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

static bool word_is(const char *w, size_t n, const char *kw)
{
    return strlen(kw) == n && strncasecmp(w, kw, n) == 0;
}

/* SIZE's parameter: decimal, saturating; absent, zero or junk = no limit. */
static uint64_t parse_size(const char *p, const char *end)
{
    uint64_t v = 0;
    while (p < end && is_space(*p))
        p++;
    for (; p < end && *p >= '0' && *p <= '9'; p++) {
        unsigned d = (unsigned)(*p - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
    }
    if (p < end && !is_space(*p)) return 0;
    return v;
}

static void parse_auth(struct smtp_caps *caps, const char *p, const char *end)
{
    while (p < end) {
        while (p < end && is_space(*p))
            p++;
        const char *w = p;
        while (p < end && !is_space(*p))
            p++;
        if (word_is(w, (size_t)(p - w), "PLAIN"))
            caps->auth_plain = true;
        else if (word_is(w, (size_t)(p - w), "LOGIN"))
            caps->auth_login = true;
    }
}

static void parse_line(struct smtp_caps *caps, const char *p, const char *end)
{
    while (p < end && is_space(*p))
        p++;
    const char *w = p;
    /* "AUTH=PLAIN LOGIN" is the pre-RFC 2554 spelling some servers still send. */
    while (p < end && !is_space(*p) && *p != '=')
        p++;
    size_t n = (size_t)(p - w);
    if (p < end) p++;
    if (word_is(w, n, "PIPELINING"))
        caps->pipelining = true;
    else if (word_is(w, n, "STARTTLS"))
        caps->starttls = true;
    else if (word_is(w, n, "8BITMIME"))
        caps->eightbitmime = true;
    else if (word_is(w, n, "SMTPUTF8"))
        caps->smtputf8 = true;
    else if (word_is(w, n, "CHUNKING"))
        caps->chunking = true;
    else if (word_is(w, n, "ENHANCEDSTATUSCODES"))
        caps->enhancedstatuscodes = true;
    else if (word_is(w, n, "SIZE")) {
        caps->size = true;
        caps->size_max = parse_size(p, end);
    } else if (word_is(w, n, "AUTH"))
        parse_auth(caps, p, end);
}

void smtp_caps_parse(struct smtp_caps *caps, const struct smtp_reply *ehlo_reply)
{
    memset(caps, 0, sizeof *caps);
    const char *p = ehlo_reply->text;
    const char *end = p + ehlo_reply->text_len;
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl) return;
    p = nl + 1;
    while (p < end) {
        nl = memchr(p, '\n', (size_t)(end - p));
        const char *line_end = nl ? nl : end;
        parse_line(caps, p, line_end);
        p = nl ? nl + 1 : end;
    }
}
