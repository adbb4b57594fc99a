/* RFC 3492 Punycode encoder and the domain -> A-label conversion the
 * envelope needs: SMTP servers without SMTPUTF8 only take ASCII domains, and
 * DNS only ever holds A-labels, so an IDN recipient domain is converted once
 * at intake and used for routing, RCPT TO and the To header. */
#include <errno.h>
#include <string.h>

#include "herald/job.h"
#include "msg/msg.h"

#define PC_BASE         36
#define PC_TMIN         1
#define PC_TMAX         26
#define PC_SKEW         38
#define PC_DAMP         700
#define PC_INITIAL_BIAS 72
#define PC_INITIAL_N    128
#define LABEL_MAX       63
#define DOMAIN_MAX      253
#define LABEL_CPS_MAX   64 /* more code points can never fit in 63 octets */

static uint32_t adapt(uint32_t delta, uint32_t n_points, bool first)
{
    delta = first ? delta / PC_DAMP : delta / 2;
    delta += delta / n_points;
    uint32_t k = 0;
    while (delta > ((PC_BASE - PC_TMIN) * PC_TMAX) / 2) {
        delta /= PC_BASE - PC_TMIN;
        k += PC_BASE;
    }
    return k + (PC_BASE - PC_TMIN + 1) * delta / (delta + PC_SKEW);
}

static char digit(uint32_t d)
{
    return (char)(d < 26 ? 'a' + d : '0' + (d - 26));
}

int punycode_encode(const uint32_t *cps, size_t n_cps, char *out, size_t cap, size_t *out_len)
{
    size_t o = 0;
#define PUT(c)                                                                                     \
    do {                                                                                           \
        if (o + 1 >= cap) return -HERR_TOO_LONG;                                                   \
        out[o++] = (c);                                                                            \
    } while (0)
    size_t n_basic = 0;
    for (size_t i = 0; i < n_cps; i++)
        if (cps[i] < 0x80) {
            PUT((char)cps[i]);
            n_basic++;
        }
    if (n_basic > 0) PUT('-');
    uint32_t n = PC_INITIAL_N, bias = PC_INITIAL_BIAS;
    uint64_t delta = 0;
    size_t h = n_basic;
    while (h < n_cps) {
        uint32_t m = UINT32_MAX;
        for (size_t i = 0; i < n_cps; i++)
            if (cps[i] >= n && cps[i] < m) m = cps[i];
        delta += (uint64_t)(m - n) * (h + 1);
        if (delta > UINT32_MAX) return -HERR_TOO_LONG;
        n = m;
        for (size_t i = 0; i < n_cps; i++) {
            if (cps[i] < n && ++delta > UINT32_MAX) return -HERR_TOO_LONG;
            if (cps[i] != n) continue;
            uint64_t q = delta;
            for (uint32_t k = PC_BASE;; k += PC_BASE) {
                uint32_t t = k <= bias ? PC_TMIN : k >= bias + PC_TMAX ? PC_TMAX : k - bias;
                if (q < t) break;
                PUT(digit(t + (uint32_t)((q - t) % (PC_BASE - t))));
                q = (q - t) / (PC_BASE - t);
            }
            PUT(digit((uint32_t)q));
            bias = adapt((uint32_t)delta, (uint32_t)(h + 1), h == n_basic);
            delta = 0;
            h++;
        }
        delta++;
        n++;
    }
#undef PUT
    out[o] = '\0';
    if (out_len) *out_len = o;
    return 0;
}

static uint32_t decode_cp(const unsigned char *s, size_t k)
{
    if (k == 1) return s[0];
    uint32_t cp = s[0] & (0xff >> (k + 1));
    for (size_t i = 1; i < k; i++)
        cp = (cp << 6) | (s[i] & 0x3f);
    return cp;
}

/* IDNA2008 wants NFC and UTS 46 case folding; herald only folds ASCII and
 * Latin-1 capitals (the common case for typed-in addresses) and documents
 * that other labels must already be lower-case NFC. */
static uint32_t fold(uint32_t cp)
{
    if (cp >= 'A' && cp <= 'Z') return cp + 32;
    if (cp >= 0xc0 && cp <= 0xde && cp != 0xd7) return cp + 32;
    return cp;
}

int addr_domain_to_ascii(const char *d, size_t len, char *out, size_t cap, const char **why)
{
    size_t o = 0, i = 0;
    if (cap == 0) return -HERR_TOO_LONG;
    while (i < len) {
        size_t start = i;
        while (i < len && d[i] != '.')
            i++;
        uint32_t cps[LABEL_CPS_MAX];
        size_t n = 0;
        bool ascii = true;
        for (size_t p = start; p < i;) {
            size_t k = msg_utf8_seq_len((const unsigned char *)d + p, i - p);
            if (!k) {
                if (why) *why = "invalid UTF-8 in domain";
                return -HERR_MALFORMED;
            }
            if (n == LABEL_CPS_MAX) {
                if (why) *why = "domain label too long";
                return -HERR_MALFORMED;
            }
            cps[n] = fold(decode_cp((const unsigned char *)d + p, k));
            ascii &= cps[n] < 0x80;
            n++;
            p += k;
        }
        char label[LABEL_MAX + 2];
        size_t label_len = 0;
        if (ascii) {
            for (size_t p = 0; p < n && label_len <= LABEL_MAX; p++)
                label[label_len++] = (char)cps[p];
        } else {
            memcpy(label, "xn--", 4);
            int rc = punycode_encode(cps, n, label + 4, sizeof label - 4, &label_len);
            label_len += 4;
            if (rc) label_len = LABEL_MAX + 1;
        }
        if (label_len > LABEL_MAX) {
            if (why) *why = "domain label too long once converted to an A-label";
            return -HERR_MALFORMED;
        }
        if (o + label_len + 2 > cap || o + label_len > DOMAIN_MAX) {
            if (why) *why = "domain too long once converted to A-labels";
            return -HERR_TOO_LONG;
        }
        memcpy(out + o, label, label_len);
        o += label_len;
        if (i < len) out[o++] = '.';
        i++;
    }
    out[o] = '\0';
    return 0;
}
