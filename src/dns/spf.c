/* SPF check_host() (RFC 7208). A record is parsed whole before any term is
 * evaluated, because a syntax error anywhere makes the result permerror
 * (4.6). Evaluation then walks the terms left to right; each include or
 * redirect recurses with the same counters, so the lookup and void limits
 * hold across the whole tree and the recursion is bounded by them. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "herald/spf.h"

static const char *const result_names[SPF_RESULT_COUNT] = {
    "none", "neutral", "pass", "fail", "softfail", "temperror", "permerror",
};

const char *spf_result_name(enum spf_result r)
{
    return (unsigned)r < SPF_RESULT_COUNT ? result_names[r] : "?";
}

/* ---- syntax ---- */

bool spf_is_record(const char *txt, size_t len)
{
    return len >= 6 && strncasecmp(txt, "v=spf1", 6) == 0 && (len == 6 || txt[6] == ' ');
}

static bool is_name_char(char c)
{
    return isalnum((unsigned char)c) || c == '-' || c == '_' || c == '.';
}

/* Reads "/N" at the end of [p, *end) when N <= max; moves *end back. */
static int trailing_cidr(const char *p, const char **end, unsigned max, unsigned *out, bool dbl)
{
    const char *e = *end, *d = e;
    while (d > p && isdigit((unsigned char)d[-1])) d--;
    if (d == e || d == p || d[-1] != '/') return 0;
    if (dbl && (d - 1 == p || d[-2] != '/')) return 0;
    if (!dbl && d - 1 > p && d[-2] == '/') return 0; /* "//N" belongs to cidr6 */
    if (e - d > 3 || (e - d > 1 && d[0] == '0')) return -HERR_MALFORMED;
    unsigned v = 0;
    for (const char *x = d; x < e; x++) v = v * 10 + (unsigned)(*x - '0');
    if (v > max) return -HERR_MALFORMED;
    *out = v;
    *end = d - (dbl ? 2 : 1);
    return 0;
}

static const struct {
    const char *name;
    enum spf_term_kind kind;
} mech_names[] = {
    {"all", SPF_T_ALL}, {"include", SPF_T_INCLUDE}, {"a", SPF_T_A},
    {"mx", SPF_T_MX},   {"ptr", SPF_T_PTR},         {"ip4", SPF_T_IP4},
    {"ip6", SPF_T_IP6}, {"exists", SPF_T_EXISTS},
};

static int fail(char *err, size_t errlen, const char *t, size_t n, const char *why)
{
    snprintf(err, errlen, "%s in term '%.*s'", why, (int)(n > 80 ? 80 : n), t);
    return -HERR_MALFORMED;
}

static int parse_term(const char *t, size_t n, struct spf_term *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    out->text = t;
    out->text_len = n;
    out->cidr4 = 32;
    out->cidr6 = 128;
    out->qualifier = '+';
    const char *p = t, *end = t + n;
    /* Modifier: name "=" macro-string, where name starts with a letter. */
    const char *eq = memchr(t, '=', n);
    const char *colon = memchr(t, ':', n), *slash = memchr(t, '/', n);
    if (eq && isalpha((unsigned char)t[0]) && (!colon || eq < colon) && (!slash || eq < slash)) {
        for (const char *x = t; x < eq; x++)
            if (!is_name_char(*x)) return fail(err, errlen, t, n, "bad modifier name");
        size_t nl = (size_t)(eq - t);
        if (nl == 8 && strncasecmp(t, "redirect", 8) == 0) out->kind = SPF_T_REDIRECT;
        else if (nl == 3 && strncasecmp(t, "exp", 3) == 0) out->kind = SPF_T_EXP;
        else out->kind = SPF_T_UNKNOWN_MOD;
        out->spec = eq + 1;
        out->spec_len = (size_t)(end - eq - 1);
        if (out->kind != SPF_T_UNKNOWN_MOD && out->spec_len == 0)
            return fail(err, errlen, t, n, "empty domain");
        return 0;
    }
    if (*p == '+' || *p == '-' || *p == '~' || *p == '?') out->qualifier = *p++;
    const char *name = p;
    while (p < end && isalnum((unsigned char)*p)) p++;
    size_t nl = (size_t)(p - name);
    size_t i;
    for (i = 0; i < HERALD_ARRAY_LEN(mech_names); i++)
        if (strlen(mech_names[i].name) == nl && strncasecmp(name, mech_names[i].name, nl) == 0)
            break;
    if (i == HERALD_ARRAY_LEN(mech_names)) return fail(err, errlen, t, n, "unknown mechanism");
    out->kind = mech_names[i].kind;
    const char *rest = p;
    switch (out->kind) {
    case SPF_T_ALL:
        if (rest != end) return fail(err, errlen, t, n, "'all' takes no argument");
        return 0;
    case SPF_T_INCLUDE:
    case SPF_T_EXISTS:
        if (rest == end || *rest != ':' || rest + 1 == end)
            return fail(err, errlen, t, n, "missing domain");
        out->spec = rest + 1;
        out->spec_len = (size_t)(end - rest - 1);
        return 0;
    case SPF_T_A:
    case SPF_T_MX:
    case SPF_T_PTR: {
        const char *e = end;
        if (out->kind != SPF_T_PTR) {
            if (trailing_cidr(rest, &e, 128, &out->cidr6, true) < 0 ||
                trailing_cidr(rest, &e, 32, &out->cidr4, false) < 0)
                return fail(err, errlen, t, n, "bad prefix length");
        }
        if (e == rest) return 0;
        if (*rest != ':' || rest + 1 == e) return fail(err, errlen, t, n, "bad argument");
        out->spec = rest + 1;
        out->spec_len = (size_t)(e - rest - 1);
        return 0;
    }
    case SPF_T_IP4:
    case SPF_T_IP6: {
        if (rest == end || *rest != ':') return fail(err, errlen, t, n, "missing address");
        rest++;
        const char *e = end;
        bool v4 = out->kind == SPF_T_IP4;
        if (trailing_cidr(rest, &e, v4 ? 32 : 128, v4 ? &out->cidr4 : &out->cidr6, false) < 0)
            return fail(err, errlen, t, n, "bad prefix length");
        char addr[64];
        if (e == rest || (size_t)(e - rest) >= sizeof addr)
            return fail(err, errlen, t, n, "bad address");
        memcpy(addr, rest, (size_t)(e - rest));
        addr[e - rest] = '\0';
        if (inet_pton(v4 ? AF_INET : AF_INET6, addr, out->ip) != 1)
            return fail(err, errlen, t, n, "bad address");
        return 0;
    }
    default:
        return fail(err, errlen, t, n, "unknown mechanism");
    }
}

int spf_record_parse(const char *txt, size_t len, struct spf_record *out, char *err,
                     size_t errlen)
{
    out->n = 0;
    out->redirect = out->exp = NULL;
    if (!spf_is_record(txt, len)) {
        snprintf(err, errlen, "not an SPF record (no v=spf1)");
        return -HERR_MALFORMED;
    }
    const char *p = txt + 6, *end = txt + len;
    for (;;) {
        while (p < end && *p == ' ') p++;
        if (p == end) break;
        const char *t = p;
        while (p < end && *p != ' ') p++;
        for (const char *x = t; x < p; x++)
            if ((unsigned char)*x < 0x21 || (unsigned char)*x > 0x7e) {
                snprintf(err, errlen, "control or non-ASCII character in the record");
                return -HERR_MALFORMED;
            }
        if (out->n == SPF_TERMS_MAX) {
            snprintf(err, errlen, "more than %d terms", SPF_TERMS_MAX);
            return -HERR_MALFORMED;
        }
        struct spf_term *term = &out->terms[out->n];
        int rc = parse_term(t, (size_t)(p - t), term, err, errlen);
        if (rc < 0) return rc;
        if (term->spec && term->kind != SPF_T_UNKNOWN_MOD &&
            spf_macro_expand(term->spec, term->spec_len, NULL, NULL, term->kind == SPF_T_EXP,
                             NULL) < 0)
            return fail(err, errlen, t, (size_t)(p - t), "bad macro");
        if (term->kind == SPF_T_REDIRECT || term->kind == SPF_T_EXP) {
            const struct spf_term **slot = term->kind == SPF_T_REDIRECT ? &out->redirect : &out->exp;
            if (*slot) return fail(err, errlen, t, (size_t)(p - t), "repeated modifier");
            *slot = term;
        }
        out->n++;
    }
    return 0;
}

/* ---- macros (RFC 7208 7) ---- */

static bool is_delim(char c)
{
    return c == '.' || c == '-' || c == '+' || c == ',' || c == '/' || c == '_' || c == '=';
}

static int append_urlenc(struct hbuf *out, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        int rc = isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~'
                     ? hbuf_append_char(out, (char)c)
                     : hbuf_appendf(out, "%%%02X", c);
        if (rc < 0) return rc;
    }
    return 0;
}

static void ip_text(const struct spf_request *rq, bool dotted_nibbles, char *out, size_t n)
{
    if (rq->family == AF_INET) {
        snprintf(out, n, "%u.%u.%u.%u", rq->ip[0], rq->ip[1], rq->ip[2], rq->ip[3]);
        return;
    }
    if (!dotted_nibbles) {
        inet_ntop(AF_INET6, rq->ip, out, (socklen_t)n);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (int i = 0; i < 16 && o + 4 < n; i++) {
        out[o++] = hex[rq->ip[i] >> 4];
        out[o++] = '.';
        out[o++] = hex[rq->ip[i] & 15];
        out[o++] = '.';
    }
    out[o ? o - 1 : 0] = '\0';
}

/* The value of macro letter c (lower case) for this request. */
static int macro_value(char c, const struct spf_request *rq, const char *domain, struct hbuf *v)
{
    const char *sender = rq->sender && *rq->sender ? rq->sender : NULL;
    const char *at = sender ? strrchr(sender, '@') : NULL;
    char ip[80];
    switch (c) {
    case 's':
        if (sender && at && at > sender) return hbuf_append_str(v, sender);
        return hbuf_appendf(v, "postmaster@%s", at ? at + 1 : sender ? sender : rq->domain);
    case 'l':
        if (at && at > sender) return hbuf_append(v, sender, (size_t)(at - sender));
        return hbuf_append_str(v, "postmaster");
    case 'o':
        return hbuf_append_str(v, at ? at + 1 : sender ? sender : rq->domain);
    case 'd':
        return hbuf_append_str(v, domain);
    case 'i':
        ip_text(rq, true, ip, sizeof ip);
        return hbuf_append_str(v, ip);
    case 'c':
        ip_text(rq, false, ip, sizeof ip);
        return hbuf_append_str(v, ip);
    case 'p':
        /* RFC 7208 5.5/7.3: "SHOULD NOT" be used; validating it costs
         * lookups outside the limits, and "unknown" is a permitted value. */
        return hbuf_append_str(v, "unknown");
    case 'v':
        return hbuf_append_str(v, rq->family == AF_INET ? "in-addr" : "ip6");
    case 'h':
        return hbuf_append_str(v, rq->helo && *rq->helo ? rq->helo : rq->domain);
    case 'r':
        return hbuf_append_str(v, "unknown");
    case 't':
        return hbuf_append_str(v, "0");
    default:
        return -HERR_MALFORMED;
    }
}

/* Apply transformers: split on delims, optionally reverse, keep the
 * rightmost `keep` parts (0 = all), join with '.'. */
static int transform(const char *val, size_t n, const char *delims, size_t n_delims, bool rev,
                     unsigned keep, bool urlenc, struct hbuf *out)
{
    enum { MAXP = 128 };
    const char *ps[MAXP];
    size_t pl[MAXP], np = 0;
    const char *start = val;
    for (size_t i = 0; i <= n; i++) {
        bool split = i == n;
        if (!split) {
            if (n_delims == 0) split = val[i] == '.';
            else split = memchr(delims, val[i], n_delims) != NULL;
        }
        if (!split) continue;
        if (np == MAXP) return -HERR_MALFORMED;
        ps[np] = start;
        pl[np++] = (size_t)(val + i - start);
        start = val + i + 1;
    }
    if (rev)
        for (size_t i = 0; i < np / 2; i++) {
            const char *t = ps[i];
            size_t l = pl[i];
            ps[i] = ps[np - 1 - i];
            pl[i] = pl[np - 1 - i];
            ps[np - 1 - i] = t;
            pl[np - 1 - i] = l;
        }
    size_t from = keep && keep < np ? np - keep : 0;
    for (size_t i = from; i < np; i++) {
        int rc = i > from ? hbuf_append_char(out, '.') : 0;
        if (rc == 0) rc = urlenc ? append_urlenc(out, ps[i], pl[i]) : hbuf_append(out, ps[i], pl[i]);
        if (rc < 0) return rc;
    }
    return 0;
}

int spf_macro_expand(const char *spec, size_t len, const struct spf_request *rq,
                     const char *domain, bool explain, struct hbuf *out)
{
    struct hbuf val;
    hbuf_init(&val);
    int rc = 0;
    for (size_t i = 0; i < len && rc == 0; i++) {
        char c = spec[i];
        if (c != '%') {
            if ((unsigned char)c < 0x21 || (unsigned char)c > 0x7e) {
                if (!(explain && c == ' ')) rc = -HERR_MALFORMED;
            }
            if (rc == 0 && out) rc = hbuf_append_char(out, c);
            continue;
        }
        if (++i == len) {
            rc = -HERR_MALFORMED;
            break;
        }
        c = spec[i];
        if (c == '%' || c == '_' || c == '-') {
            if (out) rc = hbuf_append_str(out, c == '%' ? "%" : c == '_' ? " " : "%20");
            continue;
        }
        if (c != '{' || ++i == len) {
            rc = -HERR_MALFORMED;
            break;
        }
        char letter = spec[i++];
        char lower = (char)tolower((unsigned char)letter);
        if (!strchr("slodiphv", lower) && !(explain && strchr("crt", lower))) {
            rc = -HERR_MALFORMED;
            break;
        }
        unsigned keep = 0;
        size_t nd = 0;
        while (i < len && isdigit((unsigned char)spec[i])) {
            keep = keep * 10 + (unsigned)(spec[i++] - '0');
            if (keep > 1000) keep = 1000;
            nd++;
        }
        if (nd && keep == 0) { /* 7.3: the digit transformer must be nonzero */
            rc = -HERR_MALFORMED;
            break;
        }
        bool rev = false;
        if (i < len && (spec[i] == 'r' || spec[i] == 'R')) {
            rev = true;
            i++;
        }
        const char *delims = spec + i;
        while (i < len && is_delim(spec[i])) i++;
        size_t n_delims = (size_t)(spec + i - delims);
        if (i == len || spec[i] != '}') {
            rc = -HERR_MALFORMED;
            break;
        }
        if (!out) continue;
        hbuf_reset(&val);
        rc = macro_value(lower, rq, domain, &val);
        if (rc == 0)
            rc = transform(val.data ? val.data : "", val.len, delims, n_delims, rev, keep,
                           letter != lower, out);
    }
    hbuf_free(&val);
    if (rc < 0 || !out || explain) return rc;
    /* 7.3: a domain longer than 253 loses labels on the left. */
    while (out->len > 253) {
        char *dot = memchr(out->data, '.', out->len);
        if (!dot) return -HERR_MALFORMED;
        hbuf_consume(out, (size_t)(dot - out->data) + 1);
    }
    return 0;
}

/* ---- evaluation ---- */

struct eval {
    const struct spf_request *rq;
    unsigned n_lookups, n_void;
    char *why;
    size_t why_len;
};

static void say(struct eval *ev, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct eval *ev, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ev->why, ev->why_len, fmt, ap);
    va_end(ap);
}

static enum spf_result check_host(struct eval *ev, const char *domain, int depth,
                                  struct spf_verdict *top);

static bool valid_domain(const char *d)
{
    size_t n = strlen(d), label = 0;
    if (n == 0 || n > 253 || !strchr(d, '.')) return false;
    for (size_t i = 0; i < n; i++) {
        if (d[i] == '.') {
            if (label == 0 && i + 1 != n) return false;
            label = 0;
        } else if (++label > 63 || (unsigned char)d[i] <= 0x20) {
            return false;
        }
    }
    return true;
}

static bool prefix_match(const unsigned char *a, const unsigned char *b, unsigned bits)
{
    unsigned bytes = bits / 8, rem = bits % 8;
    if (memcmp(a, b, bytes) != 0) return false;
    if (rem == 0) return true;
    unsigned char mask = (unsigned char)(0xff << (8 - rem));
    return (a[bytes] & mask) == (b[bytes] & mask);
}

/* Counts a DNS-costing term; false (and permerror explained) past the limit. */
static bool count_lookup(struct eval *ev, const struct spf_term *t, const char *domain)
{
    if (++ev->n_lookups <= SPF_MAX_LOOKUPS) return true;
    say(ev, "more than %d DNS lookups (RFC 7208 4.6.4), at '%.*s' in the record of %s",
        SPF_MAX_LOOKUPS, (int)t->text_len, t->text, domain);
    return false;
}

enum mres { M_NO, M_YES, M_TEMP, M_PERM };

/* A DNS answer that was void: counted; M_PERM past the limit. */
static enum mres void_lookup(struct eval *ev, const char *name)
{
    if (++ev->n_void <= SPF_MAX_VOID) return M_NO;
    say(ev, "more than %d void DNS lookups (RFC 7208 4.6.4), the last for %s", SPF_MAX_VOID,
        name);
    return M_PERM;
}

static enum mres dns_failed(struct eval *ev, enum dnsq_type type, const char *name)
{
    say(ev, "DNS %s lookup for %s failed (server failure or timeout)", dnsq_type_name(type),
        name);
    return M_TEMP;
}

/* Is ip among name's addresses (A or AAAA as the client's family)?
 * void_counts: whether an empty answer is a void lookup. */
static enum mres addr_match(struct eval *ev, const char *name, unsigned cidr4, unsigned cidr6,
                            bool void_counts)
{
    const struct spf_request *rq = ev->rq;
    enum dnsq_type type = rq->family == AF_INET ? DNSQ_A : DNSQ_AAAA;
    struct dnsq_rrset set;
    dnsq_rrset_init(&set);
    enum dnsq_rc rc = rq->lookup(rq->ctx, type, name, &set);
    enum mres m = M_NO;
    if (rc == DNSQ_SERVFAIL) m = dns_failed(ev, type, name);
    else if (rc != DNSQ_OK || set.n == 0) m = void_counts ? void_lookup(ev, name) : M_NO;
    else
        for (size_t i = 0; i < set.n && m == M_NO; i++)
            if (prefix_match(set.addr[i], rq->ip, rq->family == AF_INET ? cidr4 : cidr6))
                m = M_YES;
    dnsq_rrset_clear(&set);
    return m;
}

static int target_name(struct eval *ev, const struct spf_term *t, const char *domain,
                       struct hbuf *out, enum mres *m)
{
    hbuf_reset(out);
    if (!t->spec) return hbuf_append_str(out, domain);
    int rc = spf_macro_expand(t->spec, t->spec_len, ev->rq, domain, false, out);
    if (rc == -ENOMEM) return rc;
    if (rc < 0 || !out->data || !valid_domain(out->data)) {
        say(ev, "'%.*s' in the record of %s does not expand to a valid domain",
            (int)t->text_len, t->text, domain);
        *m = M_PERM;
        return 1;
    }
    return 0;
}

static enum mres eval_mx(struct eval *ev, const struct spf_term *t, const char *target)
{
    struct dnsq_rrset set;
    dnsq_rrset_init(&set);
    enum dnsq_rc rc = ev->rq->lookup(ev->rq->ctx, DNSQ_MX, target, &set);
    enum mres m = M_NO;
    if (rc == DNSQ_SERVFAIL) m = dns_failed(ev, DNSQ_MX, target);
    else if (rc != DNSQ_OK || set.n == 0) m = void_lookup(ev, target);
    else if (set.n > SPF_MAX_NAMES) {
        say(ev, "%s has more than %d MX records (RFC 7208 4.6.4)", target, SPF_MAX_NAMES);
        m = M_PERM;
    } else
        for (size_t i = 0; i < set.n && m == M_NO; i++)
            if (set.text[i][0]) m = addr_match(ev, set.text[i], t->cidr4, t->cidr6, false);
    dnsq_rrset_clear(&set);
    return m;
}

static bool name_within(const char *name, const char *target)
{
    size_t n = strlen(name), tl = strlen(target);
    if (n > 0 && name[n - 1] == '.') n--;
    if (n == tl) return strncasecmp(name, target, n) == 0;
    return n > tl && name[n - tl - 1] == '.' && strncasecmp(name + n - tl, target, tl) == 0;
}

/* 5.5: the client's validated names (PTR names whose addresses include
 * the client) ending in target. DNS errors here make the term not match. */
static enum mres eval_ptr(struct eval *ev, const char *target)
{
    const struct spf_request *rq = ev->rq;
    char rev[128];
    if (dnsq_reverse_name(rq->family, rq->ip, NULL, rev, sizeof rev) < 0) return M_NO;
    struct dnsq_rrset set;
    dnsq_rrset_init(&set);
    enum dnsq_rc rc = rq->lookup(rq->ctx, DNSQ_PTR, rev, &set);
    enum mres m = M_NO;
    if (rc == DNSQ_NXDOMAIN || rc == DNSQ_NODATA) m = void_lookup(ev, rev);
    else if (rc == DNSQ_OK)
        for (size_t i = 0; i < set.n && i < SPF_MAX_NAMES && m == M_NO; i++) {
            if (!name_within(set.text[i], target)) continue;
            enum mres a = addr_match(ev, set.text[i], 32, 128, false);
            if (a == M_YES) m = M_YES;
        }
    dnsq_rrset_clear(&set);
    return m;
}

static enum mres eval_exists(struct eval *ev, const char *target)
{
    struct dnsq_rrset set;
    dnsq_rrset_init(&set);
    enum dnsq_rc rc = ev->rq->lookup(ev->rq->ctx, DNSQ_A, target, &set);
    enum mres m = M_YES;
    if (rc == DNSQ_SERVFAIL) m = dns_failed(ev, DNSQ_A, target);
    else if (rc != DNSQ_OK || set.n == 0) m = void_lookup(ev, target);
    dnsq_rrset_clear(&set);
    return m;
}

static enum mres eval_term(struct eval *ev, const struct spf_term *t, const char *domain,
                           int depth, struct hbuf *name)
{
    const struct spf_request *rq = ev->rq;
    enum mres m = M_NO;
    int rc;
    switch (t->kind) {
    case SPF_T_ALL:
        return M_YES;
    case SPF_T_IP4:
    case SPF_T_IP6:
        if ((t->kind == SPF_T_IP4) != (rq->family == AF_INET)) return M_NO;
        return prefix_match(t->ip, rq->ip, t->kind == SPF_T_IP4 ? t->cidr4 : t->cidr6) ? M_YES
                                                                                      : M_NO;
    case SPF_T_INCLUDE:
    case SPF_T_A:
    case SPF_T_MX:
    case SPF_T_PTR:
    case SPF_T_EXISTS:
        break;
    default:
        return M_NO;
    }
    if (!count_lookup(ev, t, domain)) return M_PERM;
    if ((rc = target_name(ev, t, domain, name, &m)) < 0) return M_TEMP; /* OOM */
    if (rc > 0) return m;
    const char *target = name->data;
    switch (t->kind) {
    case SPF_T_A:
        return addr_match(ev, target, t->cidr4, t->cidr6, true);
    case SPF_T_MX:
        return eval_mx(ev, t, target);
    case SPF_T_PTR:
        return eval_ptr(ev, target);
    case SPF_T_EXISTS:
        return eval_exists(ev, target);
    default:
        break;
    }
    /* include (5.2): only pass matches; none and permerror are permerror. */
    char *copy = strdup(target);
    if (!copy) return M_TEMP;
    enum spf_result r = check_host(ev, copy, depth + 1, NULL);
    if (r == SPF_NONE)
        say(ev, "include:%s (in the record of %s) has no SPF record", copy, domain);
    free(copy);
    switch (r) {
    case SPF_PASS:
        return M_YES;
    case SPF_FAIL:
    case SPF_SOFTFAIL:
    case SPF_NEUTRAL:
        return M_NO;
    case SPF_TEMPERROR:
        return M_TEMP;
    default:
        return M_PERM;
    }
}

static enum spf_result qualifier_result(char q)
{
    return q == '-' ? SPF_FAIL : q == '~' ? SPF_SOFTFAIL : q == '?' ? SPF_NEUTRAL : SPF_PASS;
}

/* Fetch domain's one SPF record into *txt (malloc'd). Returns SPF_PASS as
 * "found", else the result to give. */
static enum spf_result fetch_record(struct eval *ev, const char *domain, char **txt)
{
    struct dnsq_rrset set;
    dnsq_rrset_init(&set);
    enum dnsq_rc rc = ev->rq->lookup(ev->rq->ctx, DNSQ_TXT, domain, &set);
    enum spf_result r = SPF_PASS;
    if (rc == DNSQ_SERVFAIL) {
        say(ev, "DNS TXT lookup for %s failed (server failure or timeout)", domain);
        r = SPF_TEMPERROR;
    } else {
        size_t found = 0, at = 0;
        for (size_t i = 0; rc == DNSQ_OK && i < set.n; i++)
            if (spf_is_record(set.text[i], strlen(set.text[i]))) {
                found++;
                at = i;
            }
        if (found == 0) {
            say(ev, "%s has no SPF record", domain);
            r = SPF_NONE;
        } else if (found > 1) {
            say(ev, "%s has %zu SPF records; exactly one is allowed (RFC 7208 4.5)", domain,
                found);
            r = SPF_PERMERROR;
        } else {
            *txt = set.text[at];
            set.text[at] = strdup("");
            if (!set.text[at]) r = SPF_TEMPERROR;
        }
    }
    dnsq_rrset_clear(&set);
    return r;
}

/* top: filled with the record when this is the requested domain. */
static enum spf_result check_host(struct eval *ev, const char *domain, int depth,
                                  struct spf_verdict *top)
{
    if (!valid_domain(domain)) {
        say(ev, "'%s' is not a valid domain name", domain);
        return SPF_NONE;
    }
    char *txt = NULL;
    enum spf_result r = fetch_record(ev, domain, &txt);
    if (r != SPF_PASS) return r;
    if (top) snprintf(top->record, sizeof top->record, "%s", txt);
    struct spf_record *rec = malloc(sizeof *rec);
    struct hbuf name;
    hbuf_init(&name);
    char err[160];
    if (!rec) {
        say(ev, "out of memory");
        r = SPF_TEMPERROR;
        goto out;
    }
    if (spf_record_parse(txt, strlen(txt), rec, err, sizeof err) < 0) {
        say(ev, "the SPF record of %s is invalid: %s", domain, err);
        r = SPF_PERMERROR;
        goto out;
    }
    for (size_t i = 0; i < rec->n; i++) {
        const struct spf_term *t = &rec->terms[i];
        if (t->kind >= SPF_T_REDIRECT) continue;
        enum mres m = eval_term(ev, t, domain, depth, &name);
        if (m == M_TEMP) {
            r = SPF_TEMPERROR;
            goto out;
        }
        if (m == M_PERM) {
            r = SPF_PERMERROR;
            goto out;
        }
        if (m == M_YES) {
            r = qualifier_result(t->qualifier);
            if (t->kind == SPF_T_INCLUDE) {
                size_t l = strlen(ev->why);
                snprintf(ev->why + l, ev->why_len - l, ", via '%.*s' in the record of %s",
                         (int)t->text_len, t->text, domain);
            } else {
                say(ev, "matched '%.*s' in the record of %s", (int)t->text_len, t->text, domain);
            }
            goto out;
        }
    }
    if (rec->redirect) {
        const struct spf_term *t = rec->redirect;
        if (!count_lookup(ev, t, domain)) {
            r = SPF_PERMERROR;
            goto out;
        }
        enum mres m = M_NO;
        int rc = target_name(ev, t, domain, &name, &m);
        if (rc != 0) {
            r = rc < 0 ? SPF_TEMPERROR : SPF_PERMERROR;
            goto out;
        }
        r = check_host(ev, name.data, depth + 1, NULL);
        if (r == SPF_NONE) {
            say(ev, "redirect=%s (in the record of %s) has no SPF record", name.data, domain);
            r = SPF_PERMERROR;
        }
        goto out;
    }
    say(ev, "no mechanism in the record of %s matched (default neutral)", domain);
    r = SPF_NEUTRAL;
out:
    hbuf_free(&name);
    free(rec);
    free(txt);
    return r;
}

int spf_check_host(const struct spf_request *rq, struct spf_verdict *out)
{
    memset(out, 0, sizeof *out);
    struct eval ev = {.rq = rq, .why = out->explanation, .why_len = sizeof out->explanation};
    char domain[256];
    size_t n = strlen(rq->domain);
    if (n > 0 && rq->domain[n - 1] == '.') n--;
    snprintf(domain, sizeof domain, "%.*s", (int)(n > 253 ? 254 : n), rq->domain);
    out->result = check_host(&ev, domain, 0, out);
    out->n_lookups = ev.n_lookups;
    out->n_void = ev.n_void;
    return 0;
}

/* ---- editing a record for an operator ---- */

int spf_record_insert(const char *record, const char *mechs, struct hbuf *out)
{
    hbuf_reset(out);
    /* Insert before the last all / redirect= term, the point after which
     * nothing else is looked at. */
    const char *at = NULL, *p = record;
    while (*p) {
        while (*p == ' ') p++;
        const char *t = p;
        while (*p && *p != ' ') p++;
        size_t n = (size_t)(p - t);
        const char *name = t;
        if (n > 0 && strchr("+-~?", *name)) name++, n--;
        if ((n == 3 && strncasecmp(name, "all", 3) == 0) ||
            (n > 9 && strncasecmp(name, "redirect=", 9) == 0))
            at = t;
    }
    size_t len = strlen(record);
    while (len > 0 && record[len - 1] == ' ') len--;
    int rc;
    if (at)
        rc = hbuf_appendf(out, "%.*s%s %s", (int)(at - record), record, mechs, at);
    else
        rc = hbuf_appendf(out, "%.*s %s", (int)len, record, mechs);
    return rc;
}
