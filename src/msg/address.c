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

/* The forms are built from one parse so routing (the domain), the envelope
 * and the keys can never disagree about which mailbox a job is for. The
 * local part keeps its case on the wire (RFC 5321 2.4: only the receiving
 * host may interpret it) but the key folds ASCII capitals, because a
 * suppression entry for "Anna@x" must also stop mail to "anna@x". UTF-8 in
 * the local part is left as given in the key: folding it would need a
 * Unicode case table and receivers do not agree on one. */
int addr_normalize(const char *addr, size_t len, struct addr_norm *out, const char **why)
{
    memset(out, 0, sizeof *out);
    bool utf8 = false;
    int rc = addr_check(addr, len, &utf8, why);
    if (rc) return rc;
    const char *at = memrchr(addr, '@', len);
    size_t local_len = (size_t)(at - addr), dlen = len - local_len - 1;
    char domain[ADDR_NORM_MAX];
    if (at[1] == '[') {
        /* The literal's tag and IPv6 hex digits are case-blind. */
        memcpy(domain, at + 1, dlen);
        domain[dlen] = '\0';
        for (size_t i = 0; i < dlen; i++)
            if (domain[i] >= 'A' && domain[i] <= 'Z') domain[i] = (char)(domain[i] - 'A' + 'a');
    } else if ((rc = idna_domain_to_ascii(at + 1, dlen, domain, sizeof domain, why))) {
        return rc;
    }
    dlen = strlen(domain);
    if (local_len + 1 + dlen > ADDR_MAX)
        return bad(why, "address too long once the domain is in A-labels");
    memcpy(out->wire, addr, local_len);
    out->wire[local_len] = '@';
    memcpy(out->wire + local_len + 1, domain, dlen + 1);
    memcpy(out->key, out->wire, local_len + dlen + 2);
    for (size_t i = 0; i < local_len; i++)
        if (out->key[i] >= 'A' && out->key[i] <= 'Z') out->key[i] = (char)(out->key[i] - 'A' + 'a');
    out->local_len = local_len;
    /* addr_check's flag also counts a UTF-8 domain, which the A-labels
     * have just taken care of. */
    for (size_t i = 0; utf8 && i < local_len; i++)
        if ((unsigned char)addr[i] >= 0x80) out->needs_smtputf8 = true;
    if (why) *why = NULL;
    return 0;
}
