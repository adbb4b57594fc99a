/* Domain -> A-labels with libidn2 (IDNA2008, UTS #46 non-transitional
 * mapping). SMTP servers without SMTPUTF8 only take ASCII domains and DNS
 * only holds A-labels, so an IDN domain is converted once at intake and that
 * one form is used for routing, RCPT TO, the headers and every key.
 *
 * Why non-transitional and no transitional fallback: transitional processing
 * maps the deviation characters away (ß -> ss, ς -> σ, ZWJ/ZWNJ deleted), so
 * mail for straße.de would silently go to strasse.de, a different domain
 * with a different owner; libidn2's transitional mode also skips the bidi
 * and CONTEXTJ checks. A name that only passes transitionally is refused
 * and the sender can resend with the A-label it means. */
#include <errno.h>
#include <idn2.h>
#include <string.h>
#include <strings.h>

#include "herald/job.h"

#define LABEL_MAX  63
#define DOMAIN_MAX 253 /* RFC 1035 255 octets on the wire, minus length bytes */

static bool label_needs_idna(const char *l, size_t n)
{
    if (n >= 4 && strncasecmp(l, "xn--", 4) == 0) return true;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)l[i] >= 0x80) return true;
    return false;
}

/* UTS #46 mapping can produce bytes that were not in the input (U+FF3F
 * maps to '_', U+3002 to '.'), so what libidn2 hands back is checked again
 * as LDH labels before it is trusted on the wire. */
static bool ldh_labels(const char *s, size_t n)
{
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && s[i] != '.') {
            char c = s[i];
            if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
            continue;
        }
        if (i == start || i - start > LABEL_MAX || s[start] == '-' || s[i - 1] == '-') return false;
        start = i + 1;
    }
    return true;
}

static int put(char *out, size_t cap, size_t *o, const char *s, size_t n, const char **why)
{
    if (*o + n + 1 > cap || *o + n > DOMAIN_MAX) {
        if (why) *why = "domain too long once converted to A-labels";
        return -HERR_TOO_LONG;
    }
    memcpy(out + *o, s, n);
    *o += n;
    out[*o] = '\0';
    return 0;
}

/* Labels go through libidn2 one at a time so that an ASCII label that is
 * not an A-label (an ordinary host name, even one IDNA2008 calls reserved,
 * such as "ab--cd") is only lower-cased: herald must not refuse a domain
 * that DNS and every MTA accept. libidn2 checks the bidi rule per label
 * anyway, so nothing is lost by splitting. */
int idna_domain_to_ascii(const char *d, size_t len, char *out, size_t cap, const char **why)
{
    if (why) *why = NULL;
    if (cap == 0) return -HERR_TOO_LONG;
    out[0] = '\0';
    if (len == 0 || memchr(d, '\0', len)) {
        if (why) *why = len ? "NUL in domain" : "empty domain";
        return -HERR_MALFORMED;
    }
    size_t o = 0, i = 0;
    while (i <= len) {
        size_t start = i;
        while (i < len && d[i] != '.')
            i++;
        size_t n = i - start;
        if (start > 0 && put(out, cap, &o, ".", 1, why)) return -HERR_TOO_LONG;
        if (!label_needs_idna(d + start, n)) {
            char low[LABEL_MAX];
            if (n > LABEL_MAX) {
                if (why) *why = "domain label too long";
                return -HERR_TOO_LONG;
            }
            for (size_t k = 0; k < n; k++) {
                char c = d[start + k];
                low[k] = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
            }
            if (put(out, cap, &o, low, n, why)) return -HERR_TOO_LONG;
        } else {
            char in[256]; /* addr_check holds a whole domain to 255 octets */
            if (n >= sizeof in) {
                if (why) *why = "domain label too long";
                return -HERR_TOO_LONG;
            }
            memcpy(in, d + start, n);
            in[n] = '\0';
            char *a = NULL;
            int rc = idn2_to_ascii_8z(in, &a, IDN2_NFC_INPUT | IDN2_NONTRANSITIONAL);
            if (rc == IDN2_MALLOC) return -ENOMEM;
            /* libidn2 words these after its own buffers; say what it means. */
            if (rc == IDN2_PUNYCODE_BIG_OUTPUT || rc == IDN2_TOO_BIG_LABEL ||
                rc == IDN2_TOO_BIG_DOMAIN) {
                idn2_free(a);
                if (why) *why = "domain label too long once converted to an A-label";
                return -HERR_TOO_LONG;
            }
            if (rc != IDN2_OK) {
                idn2_free(a);
                if (why) *why = idn2_strerror(rc);
                return -EILSEQ;
            }
            size_t an = strlen(a);
            if (!ldh_labels(a, an)) {
                idn2_free(a);
                if (why) *why = "label maps to characters not allowed in a host name";
                return -EILSEQ;
            }
            rc = put(out, cap, &o, a, an, why);
            idn2_free(a);
            if (rc) return rc;
        }
        i++;
    }
    if (!ldh_labels(out, o)) {
        if (why) *why = "not a host name (letters, digits and '-' in labels of 1-63)";
        return -HERR_MALFORMED;
    }
    return 0;
}
