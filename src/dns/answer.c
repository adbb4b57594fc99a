/* A bounded reader for DNS responses (RFC 1035 4.1): only what routing
 * needs, the answer section's A, AAAA, MX and CNAME records with their TTLs
 * (c-ares' own MX parser drops the TTL). Every offset is checked against
 * the message length; compression pointers may only point backwards, which
 * also makes loops impossible. */
#include <string.h>

#include "herald/core.h"
#include "herald/dns.h"

static int rd16(const unsigned char *m, size_t len, size_t off, uint16_t *v)
{
    if (off + 2 > len) return -HERR_MALFORMED;
    *v = (uint16_t)(m[off] << 8 | m[off + 1]);
    return 0;
}

/* Read the name at *off into out (dotted, no trailing dot, "" for root);
 * *off moves past the name as stored at that place. */
static int read_name(const unsigned char *m, size_t len, size_t *off, char *out, size_t cap)
{
    size_t pos = *off, o = 0, end = 0;
    bool jumped = false;
    unsigned hops = 0;
    for (;;) {
        if (pos >= len) return -HERR_MALFORMED;
        unsigned char l = m[pos];
        if ((l & 0xc0) == 0xc0) {
            if (pos + 1 >= len) return -HERR_MALFORMED;
            size_t target = (size_t)(l & 0x3f) << 8 | m[pos + 1];
            if (target >= pos || ++hops > 64) return -HERR_MALFORMED;
            if (!jumped) end = pos + 2;
            jumped = true;
            pos = target;
            continue;
        }
        if (l & 0xc0) return -HERR_MALFORMED; /* reserved label types */
        pos++;
        if (l == 0) break;
        if (pos + l > len) return -HERR_MALFORMED;
        if (o + l + 2 > cap) return -HERR_MALFORMED; /* longer than a name can be */
        if (o) out[o++] = '.';
        for (unsigned i = 0; i < l; i++) {
            unsigned char c = m[pos + i];
            /* Names go into logs and SMTP targets: no control bytes. */
            if (c <= 0x20 || c == 0x7f || c == '.') return -HERR_MALFORMED;
            out[o++] = (char)c;
        }
        pos += l;
    }
    out[o] = '\0';
    *off = jumped ? end : pos;
    return 0;
}

int dns_answer_parse(const unsigned char *m, size_t len, struct dns_answer *out)
{
    memset(out, 0, sizeof *out);
    if (len < 12) return -HERR_MALFORMED;
    out->rcode = m[3] & 0x0f;
    uint16_t qd, an;
    rd16(m, len, 4, &qd);
    rd16(m, len, 6, &an);
    size_t off = 12;
    char name[256];
    for (unsigned i = 0; i < qd; i++) {
        if (read_name(m, len, &off, name, sizeof name) < 0) return -HERR_MALFORMED;
        if (off + 4 > len) return -HERR_MALFORMED;
        off += 4;
    }
    for (unsigned i = 0; i < an; i++) {
        if (read_name(m, len, &off, name, sizeof name) < 0) return -HERR_MALFORMED;
        uint16_t type, klass, rdlen, hi, lo;
        if (rd16(m, len, off, &type) || rd16(m, len, off + 2, &klass) ||
            rd16(m, len, off + 4, &hi) || rd16(m, len, off + 6, &lo) ||
            rd16(m, len, off + 8, &rdlen))
            return -HERR_MALFORMED;
        off += 10;
        if (off + rdlen > len) return -HERR_MALFORMED;
        size_t rd = off;
        off += rdlen;
        if (klass != 1 || out->n >= DNS_ANSWER_MAX) continue;
        struct dns_rr *rr = &out->rr[out->n];
        memset(rr, 0, sizeof *rr);
        rr->type = type;
        rr->ttl = (uint32_t)hi << 16 | lo;
        if (rr->ttl > 0x7fffffff) rr->ttl = 0; /* RFC 2181 8: treat as zero */
        if (type == 1) {
            if (rdlen != 4) return -HERR_MALFORMED;
            memcpy(rr->addr, m + rd, 4);
        } else if (type == 28) {
            if (rdlen != 16) return -HERR_MALFORMED;
            memcpy(rr->addr, m + rd, 16);
        } else if (type == 15) {
            if (rdlen < 3 || rd16(m, len, rd, &rr->pref)) return -HERR_MALFORMED;
            size_t noff = rd + 2;
            if (read_name(m, rd + rdlen, &noff, rr->name, sizeof rr->name) < 0)
                return -HERR_MALFORMED;
        } else if (type == 5) {
            size_t noff = rd;
            if (read_name(m, rd + rdlen, &noff, rr->name, sizeof rr->name) < 0)
                return -HERR_MALFORMED;
        } else {
            continue;
        }
        out->n++;
    }
    return 0;
}
