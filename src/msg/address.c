/* RFC 5321 mailbox syntax (with the RFC 6531 UTF-8 extension). The check is
 * a single bounded pass; nothing is allocated except a small stack copy of an
 * IPv6 literal for inet_pton. */
#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "herald/job.h"
#include "msg/msg.h"

#define ADDR_MAX   254
#define LOCAL_MAX  64
#define DOMAIN_MAX 255
#define LABEL_MAX  63

static int bad(const char **why, const char *reason)
{
    if (why) *why = reason;
    return -HERR_MALFORMED;
}

static bool is_atext(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

static bool is_ldh(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-';
}

/* A non-ASCII byte at s[i]: a valid UTF-8 sequence that is not a C1
 * control. Returns its length, or 0. */
static size_t utf8_char(const char *s, size_t i, size_t len)
{
    const unsigned char *u = (const unsigned char *)s + i;
    size_t k = msg_utf8_seq_len(u, len - i);
    if (k == 2 && u[0] == 0xc2 && u[1] < 0xa0) return 0;
    return k;
}

/* Dot-atom local part ending at '@'. Returns the index of '@' or -1. */
static long parse_dot_atom(const char *a, size_t len, bool *utf8, const char **why)
{
    size_t i = 0;
    bool prev_dot = true; /* a leading dot is as bad as ".." */
    while (i < len && a[i] != '@') {
        unsigned char c = (unsigned char)a[i];
        if (c == '.') {
            if (prev_dot) {
                bad(why, i == 0 ? "local part starts with a dot" : "local part has '..'");
                return -1;
            }
            prev_dot = true;
            i++;
            continue;
        }
        prev_dot = false;
        if (c >= 0x80) {
            size_t k = utf8_char(a, i, len);
            if (!k) {
                bad(why, "invalid UTF-8 in local part");
                return -1;
            }
            *utf8 = true;
            i += k;
            continue;
        }
        if (!is_atext(c)) {
            bad(why, c == ' '                ? "space in local part"
                     : c < 0x20 || c == 0x7f ? "control character in local part"
                                             : "invalid character in local part");
            return -1;
        }
        i++;
    }
    if (i == len) {
        bad(why, "missing @");
        return -1;
    }
    if (i == 0) {
        bad(why, "empty local part");
        return -1;
    }
    if (prev_dot) {
        bad(why, "local part ends with a dot");
        return -1;
    }
    return (long)i;
}

/* Quoted-string local part: qtextSMTP and quoted-pairSMTP, UTF-8 allowed. */
static long parse_quoted(const char *a, size_t len, bool *utf8, const char **why)
{
    size_t i = 1;
    while (i < len && a[i] != '"') {
        unsigned char c = (unsigned char)a[i];
        if (c == '\\') {
            if (i + 1 >= len || (unsigned char)a[i + 1] < 0x20 || (unsigned char)a[i + 1] > 0x7e) {
                bad(why, "bad quoted pair in local part");
                return -1;
            }
            i += 2;
            continue;
        }
        if (c >= 0x80) {
            size_t k = utf8_char(a, i, len);
            if (!k) {
                bad(why, "invalid UTF-8 in local part");
                return -1;
            }
            *utf8 = true;
            i += k;
            continue;
        }
        if (c < 0x20 || c == 0x7f) {
            bad(why, "control character in local part");
            return -1;
        }
        i++;
    }
    if (i >= len) {
        bad(why, "unterminated quoted local part");
        return -1;
    }
    i++; /* closing quote */
    if (i >= len || a[i] != '@') {
        bad(why, i >= len ? "missing @" : "text after quoted local part");
        return -1;
    }
    return (long)i;
}

static bool is_ipv4(const char *s, size_t len)
{
    size_t i = 0;
    for (int part = 0; part < 4; part++) {
        if (part > 0) {
            if (i >= len || s[i] != '.') return false;
            i++;
        }
        size_t start = i;
        unsigned v = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9' && i - start < 3)
            v = v * 10 + (unsigned)(s[i++] - '0');
        if (i == start || v > 255 || (i - start > 1 && s[start] == '0')) return false;
    }
    return i == len;
}

static int check_literal(const char *d, size_t len, const char **why)
{
    if (len < 3 || d[len - 1] != ']') return bad(why, "unterminated address literal");
    const char *in = d + 1;
    size_t n = len - 2;
    if (n > 5 && strncasecmp(in, "IPv6:", 5) == 0) {
        char tmp[64];
        if (n - 5 >= sizeof tmp) return bad(why, "bad IPv6 address literal");
        for (size_t i = 5; i < n; i++)
            if (!strchr("0123456789abcdefABCDEF:.", in[i]) || in[i] == '\0')
                return bad(why, "bad IPv6 address literal");
        memcpy(tmp, in + 5, n - 5);
        tmp[n - 5] = '\0';
        struct in6_addr a6;
        if (inet_pton(AF_INET6, tmp, &a6) != 1) return bad(why, "bad IPv6 address literal");
        return 0;
    }
    if (!is_ipv4(in, n)) return bad(why, "bad address literal");
    return 0;
}

static int check_domain(const char *d, size_t len, bool *utf8, const char **why)
{
    if (len == 0) return bad(why, "empty domain");
    if (d[0] == '[') return check_literal(d, len, why);
    if (len > DOMAIN_MAX) return bad(why, "domain too long");
    size_t i = 0;
    while (i <= len) {
        size_t start = i;
        while (i < len && d[i] != '.') {
            unsigned char c = (unsigned char)d[i];
            if (c >= 0x80) {
                size_t k = utf8_char(d, i, len);
                if (!k) return bad(why, "invalid UTF-8 in domain");
                *utf8 = true;
                i += k;
            } else if (is_ldh(c)) {
                i++;
            } else {
                return bad(why, c == ' '                ? "space in domain"
                                : c < 0x20 || c == 0x7f ? "control character in domain"
                                                        : "invalid character in domain");
            }
        }
        if (i == start)
            return bad(why, i == len && i > 0 ? "domain ends with a dot" : "empty domain label");
        if (i - start > LABEL_MAX) return bad(why, "domain label too long");
        if (d[start] == '-' || d[i - 1] == '-')
            return bad(why, "domain label starts or ends with '-'");
        i++; /* past '.' or the end */
    }
    return 0;
}

int addr_check(const char *addr, size_t len, bool *needs_smtputf8, const char **why)
{
    bool utf8 = false;
    if (needs_smtputf8) *needs_smtputf8 = false;
    if (!addr || len == 0) return bad(why, "empty address");
    if (len > ADDR_MAX) return bad(why, "address too long");
    long at = addr[0] == '"' ? parse_quoted(addr, len, &utf8, why)
                             : parse_dot_atom(addr, len, &utf8, why);
    if (at < 0) return -HERR_MALFORMED;
    if ((size_t)at > LOCAL_MAX) return bad(why, "local part too long");
    int rc = check_domain(addr + at + 1, len - (size_t)at - 1, &utf8, why);
    if (rc) return rc;
    if (needs_smtputf8) *needs_smtputf8 = utf8;
    if (why) *why = NULL;
    return 0;
}
