/* dcheck_run and what every check shares: the result list, DNS questions,
 * the tag-list reader, and the MX check (it needs nothing else). */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "domain/dcheck.h"

static const char *const verdict_names[DCHECK_VERDICT_COUNT] = {"PASS", "WARN", "FAIL"};
static const char *const kind_names[DCHECK_KIND_COUNT] = {"mx",    "spf", "dkim",
                                                          "dmarc", "ptr", "dnsbl"};

const char *dcheck_verdict_name(enum dcheck_verdict v)
{
    return (unsigned)v < DCHECK_VERDICT_COUNT ? verdict_names[v] : "?";
}

const char *dcheck_kind_name(enum dcheck_kind k)
{
    return (unsigned)k < DCHECK_KIND_COUNT ? kind_names[k] : "?";
}

void dcheck_report(struct dcheck_state *c, enum dcheck_kind kind, enum dcheck_verdict v,
                   const char *fix, const char *fmt, ...)
{
    struct dcheck_result *r = c->res;
    if (c->err) return;
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        struct dcheck_item *items = realloc(r->items, cap * sizeof *items);
        if (!items) goto oom;
        r->items = items;
        r->cap = cap;
    }
    struct dcheck_item *it = &r->items[r->n];
    *it = (struct dcheck_item){.kind = kind, .verdict = v};
    va_list ap;
    va_start(ap, fmt);
    int n = vasprintf(&it->reason, fmt, ap);
    va_end(ap);
    if (n < 0) goto oom;
    if (fix && !(it->fix = strdup(fix))) {
        free(it->reason);
        goto oom;
    }
    r->n++;
    r->n_fail += v == DCHECK_FAIL;
    r->n_warn += v == DCHECK_WARN;
    return;
oom:
    c->err = -ENOMEM;
}

enum dnsq_rc dcheck_ask(struct dcheck_state *c, enum dnsq_type t, const char *name,
                        struct dnsq_rrset *out)
{
    dnsq_rrset_init(out);
    return c->rq->lookup(c->rq->ctx, t, name, out);
}

bool dcheck_resolves(struct dcheck_state *c, const char *name, int want_family,
                     const unsigned char *want, char *first, size_t first_len)
{
    bool any = false, found = false;
    for (int pass = 0; pass < 2; pass++) {
        struct dnsq_rrset s;
        int family = pass == 0 ? AF_INET : AF_INET6;
        if (dcheck_ask(c, pass == 0 ? DNSQ_A : DNSQ_AAAA, name, &s) == DNSQ_OK) {
            for (size_t i = 0; i < s.n; i++) {
                if (!any && first) inet_ntop(family, s.addr[i], first, (socklen_t)first_len);
                any = true;
                if (want && want_family == family &&
                    memcmp(s.addr[i], want, family == AF_INET ? 4 : 16) == 0)
                    found = true;
            }
        }
        dnsq_rrset_clear(&s);
    }
    return want ? found : any;
}

bool dcheck_tag(const char *rec, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *p = rec;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ';')
            p++;
        const char *k = p;
        while (*p && *p != '=' && *p != ';')
            p++;
        const char *ke = p;
        while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t'))
            ke--;
        if (*p != '=') continue;
        p++;
        const char *v = p;
        while (*p && *p != ';')
            p++;
        if ((size_t)(ke - k) == nl && strncasecmp(k, name, nl) == 0) {
            size_t o = 0;
            for (const char *x = v; x < p && o + 1 < outlen; x++)
                if (!isspace((unsigned char)*x)) out[o++] = *x;
            if (outlen) out[o] = '\0';
            return true;
        }
    }
    return false;
}

int dcheck_parse_ip(const char *s, int *family, unsigned char *ip)
{
    if (inet_pton(AF_INET, s, ip) == 1) {
        *family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, s, ip) == 1) {
        *family = AF_INET6;
        return 0;
    }
    return -EINVAL;
}

/* ---- MX ---- */

void dcheck_mx(struct dcheck_state *c)
{
    struct dnsq_rrset s;
    enum dnsq_rc rc = dcheck_ask(c, DNSQ_MX, c->domain, &s);
    char fix[600], addr[INET6_ADDRSTRLEN];
    if (rc == DNSQ_SERVFAIL) {
        dcheck_report(c, DCHECK_MX, DCHECK_FAIL,
                      "check the domain's name servers; receivers see the same failure",
                      "MX lookup for %s failed (server failure or timeout)", c->domain);
    } else if (rc == DNSQ_NXDOMAIN) {
        dcheck_report(c, DCHECK_MX, DCHECK_FAIL,
                      "register the domain or correct the tenant's From address",
                      "%s does not exist (NXDOMAIN): receivers reject mail from it", c->domain);
    } else if (rc == DNSQ_NODATA) {
        if (dcheck_resolves(c, c->domain, 0, NULL, addr, sizeof addr)) {
            snprintf(fix, sizeof fix, "publish an MX record, e.g. %s MX 10 mail.%s", c->domain,
                     c->domain);
            dcheck_report(c, DCHECK_MX, DCHECK_WARN, fix,
                          "no MX record; replies go to the domain's address %s (implicit MX)",
                          addr);
        } else {
            snprintf(fix, sizeof fix, "publish an MX record for %s so replies and bounces arrive",
                     c->domain);
            dcheck_report(c, DCHECK_MX, DCHECK_FAIL, fix,
                          "no MX and no address record: nobody can reply to mail from %s",
                          c->domain);
        }
    } else if (s.n == 1 && s.text[0][0] == '\0') {
        dcheck_report(c, DCHECK_MX, DCHECK_WARN,
                      "if clients should be able to reply, replace the null MX with a real one "
                      "(or set the tenant's reply_to to a mailbox elsewhere)",
                      "null MX (RFC 7505): %s accepts no mail, so replies to reminders bounce",
                      c->domain);
    } else {
        char list[600] = "";
        size_t used = 0, good = 0;
        for (size_t i = 0; i < s.n; i++) {
            if (!s.text[i][0]) continue;
            bool ok = dcheck_resolves(c, s.text[i], 0, NULL, addr, sizeof addr);
            good += ok;
            int w = snprintf(list + used, sizeof list - used, "%s%s(%u)%s%s%s", used ? " " : "",
                             s.text[i], s.pref[i], ok ? " [" : " [no address", ok ? addr : "", "]");
            if (w > 0 && (size_t)w < sizeof list - used) used += (size_t)w;
        }
        if (good)
            dcheck_report(c, DCHECK_MX, DCHECK_PASS, NULL, "%s", list);
        else
            dcheck_report(c, DCHECK_MX, DCHECK_FAIL, "add A/AAAA records for the exchangers",
                          "no exchanger has an address: %s", list);
    }
    dnsq_rrset_clear(&s);
}

/* ---- the run ---- */

int dcheck_run(const struct dcheck_request *rq, struct dcheck_result *out)
{
    *out = (struct dcheck_result){0};
    const struct cfg_tenant *t = rq->tenant;
    struct dcheck_state c = {
        .rq = rq,
        .cfg = rq->cfg,
        .tenant = t,
        .pool = config_egress(rq->cfg, t ? t->egress : NULL),
        .domain = rq->domain,
        .env_domain = rq->envelope_domain ? rq->envelope_domain : rq->domain,
        .res = out,
    };
    c.ehlo = config_egress_ehlo(rq->cfg, c.pool);
    /* Order matters: DMARC reads what SPF and DKIM found. */
    dcheck_mx(&c);
    dcheck_spf(&c);
    dcheck_dkim(&c);
    dcheck_dmarc(&c);
    dcheck_egress(&c);
    return c.err;
}

void dcheck_result_free(struct dcheck_result *r)
{
    for (size_t i = 0; i < r->n; i++) {
        free(r->items[i].reason);
        free(r->items[i].fix);
    }
    free(r->items);
    *r = (struct dcheck_result){0};
}

enum dcheck_verdict dcheck_result_verdict(const struct dcheck_result *r)
{
    return r->n_fail ? DCHECK_FAIL : r->n_warn ? DCHECK_WARN : DCHECK_PASS;
}

const struct cfg_tenant *dcheck_tenant_for(const struct config *cfg, const char *domain)
{
    for (size_t i = 0; i < cfg->n_tenants; i++)
        for (size_t d = 0; d < cfg->tenants[i].domains.n; d++)
            if (strcasecmp(cfg->tenants[i].domains.items[d], domain) == 0) return &cfg->tenants[i];
    return NULL;
}
