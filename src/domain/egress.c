/* What receivers look up about the connecting address: its PTR, whether
 * that name resolves back to it (FCrDNS) and equals the EHLO name, and
 * whether it is listed on the DNSBLs named in dnsbl:. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "domain/dcheck.h"
#include "herald/core.h"

static void check_ptr(struct dcheck_state *c, const char *ipt, int family, const unsigned char *ip)
{
    char rev[128], fix[600];
    if (dnsq_reverse_name(family, ip, NULL, rev, sizeof rev) < 0) return;
    struct dnsq_rrset s;
    enum dnsq_rc rc = dcheck_ask(c, DNSQ_PTR, rev, &s);
    snprintf(fix, sizeof fix, "ask whoever runs %s to set its PTR to %s", ipt, c->ehlo);
    if (rc == DNSQ_SERVFAIL) {
        dcheck_report(c, DCHECK_PTR, DCHECK_FAIL, fix, "%s: PTR lookup for %s failed", ipt, rev);
    } else if (rc != DNSQ_OK) {
        dcheck_report(c, DCHECK_PTR, DCHECK_FAIL, fix,
                      "%s has no PTR record: many receivers refuse mail from such addresses", ipt);
    } else {
        const char *name = NULL;
        for (size_t i = 0; i < s.n && !name; i++)
            if (dcheck_resolves(c, s.text[i], family, ip, NULL, 0)) name = s.text[i];
        if (!name) {
            snprintf(fix, sizeof fix, "add an address record %s -> %s (or correct the PTR)",
                     s.text[0], ipt);
            dcheck_report(c, DCHECK_PTR, DCHECK_FAIL, fix,
                          "%s: PTR %s does not resolve back to %s (no FCrDNS)", ipt, s.text[0],
                          ipt);
        } else if (strcasecmp(name, c->ehlo) != 0) {
            snprintf(fix, sizeof fix, "set the pool's ehlo: to %s, or the PTR of %s to %s", name,
                     ipt, c->ehlo);
            dcheck_report(c, DCHECK_PTR, DCHECK_WARN, fix,
                          "%s: PTR %s (forward-confirmed) differs from EHLO %s", ipt, name,
                          c->ehlo);
        } else {
            dcheck_report(c, DCHECK_PTR, DCHECK_PASS, NULL,
                          "%s: PTR %s, forward-confirmed, matches EHLO", ipt, name);
        }
    }
    dnsq_rrset_clear(&s);
}

static void check_dnsbl(struct dcheck_state *c, const char *ipt, int family,
                        const unsigned char *ip)
{
    const struct cfg_strlist *zones = &c->cfg->dnsbl;
    if (zones->n == 0) return;
    struct hbuf listed, unknown;
    hbuf_init(&listed);
    hbuf_init(&unknown);
    int rc = 0;
    for (size_t z = 0; z < zones->n && rc == 0; z++) {
        char q[400];
        if (dnsq_reverse_name(family, ip, zones->items[z], q, sizeof q) < 0) continue;
        struct dnsq_rrset s;
        enum dnsq_rc qrc = dcheck_ask(c, DNSQ_A, q, &s);
        if (qrc == DNSQ_OK) {
            char code[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, s.addr[0], code, sizeof code);
            rc = hbuf_appendf(&listed, "%s%s (%s", listed.len ? "; " : "", zones->items[z], code);
            /* The list's TXT, when it has one, says why and where to delist. */
            struct dnsq_rrset t;
            if (rc == 0 && dcheck_ask(c, DNSQ_TXT, q, &t) == DNSQ_OK)
                rc = hbuf_appendf(&listed, ": %s", t.text[0]);
            dnsq_rrset_clear(&t);
            if (rc == 0) rc = hbuf_append_char(&listed, ')');
        } else if (qrc == DNSQ_SERVFAIL) {
            rc = hbuf_appendf(&unknown, "%s%s", unknown.len ? ", " : "", zones->items[z]);
        }
        dnsq_rrset_clear(&s);
    }
    if (rc) {
        c->err = rc;
    } else if (listed.len) {
        char fix[300];
        snprintf(fix, sizeof fix,
                 "find why (the reason above, the list's lookup page), fix the cause, then "
                 "ask the list's operator to delist %s; meanwhile take it out of the egress "
                 "pool",
                 ipt);
        dcheck_report(c, DCHECK_DNSBL, DCHECK_FAIL, fix, "%s is listed: %s", ipt, listed.data);
    } else if (unknown.len) {
        dcheck_report(c, DCHECK_DNSBL, DCHECK_WARN,
                      "check the resolver can reach the lists' servers", "%s: could not query %s",
                      ipt, unknown.data);
    } else {
        dcheck_report(c, DCHECK_DNSBL, DCHECK_PASS, NULL, "%s is not listed on %zu list(s)", ipt,
                      zones->n);
    }
    hbuf_free(&listed);
    hbuf_free(&unknown);
}

void dcheck_egress(struct dcheck_state *c)
{
    if (!c->pool) return; /* said under spf */
    for (size_t i = 0; i < c->pool->ips.n; i++) {
        int family;
        unsigned char ip[16];
        if (dcheck_parse_ip(c->pool->ips.items[i], &family, ip) < 0) continue;
        check_ptr(c, c->pool->ips.items[i], family, ip);
        check_dnsbl(c, c->pool->ips.items[i], family, ip);
    }
}
