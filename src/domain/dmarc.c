/* DMARC (RFC 7489): find the policy record — at _dmarc.<From domain>, else
 * at _dmarc.<organisational domain> from the Public Suffix List — and
 * decide whether herald's mail aligns under its adkim=/aspf=: an
 * authenticated identifier (a DKIM d= whose record matched, the envelope
 * domain when SPF passes for every egress IP) that equals the From domain
 * (strict) or shares its organisational domain (relaxed). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "domain/dcheck.h"
#include "herald/align.h"

static bool is_dmarc(const char *txt)
{
    return strncasecmp(txt, "v=DMARC1", 8) == 0 &&
           (txt[8] == ';' || txt[8] == ' ' || txt[8] == '\t' || txt[8] == '\0');
}

/* 1 found (rec, at filled), 0 none, -1 a lookup failed (reported). */
static int find_policy(struct dcheck_state *c, const char *orgd, char *rec, size_t rec_len,
                       char *at, size_t at_len, bool *from_org)
{
    for (int pass = 0; pass < 2; pass++) {
        const char *d = pass == 0 ? c->domain : orgd;
        if (pass == 1 && strcasecmp(d, c->domain) == 0) break;
        char name[300];
        snprintf(name, sizeof name, "_dmarc.%s", d);
        struct dnsq_rrset s;
        enum dnsq_rc rc = dcheck_ask(c, DNSQ_TXT, name, &s);
        if (rc == DNSQ_SERVFAIL) {
            dcheck_report(c, DCHECK_DMARC, DCHECK_FAIL, "check the domain's name servers",
                          "TXT lookup for %s failed (server failure or timeout)", name);
            dnsq_rrset_clear(&s);
            return -1;
        }
        bool found = false;
        for (size_t i = 0; rc == DNSQ_OK && i < s.n && !found; i++)
            if (is_dmarc(s.text[i])) {
                snprintf(rec, rec_len, "%s", s.text[i]);
                snprintf(at, at_len, "%s", name);
                *from_org = pass == 1;
                found = true;
            }
        dnsq_rrset_clear(&s);
        if (found) return 1;
    }
    return 0;
}

/* The first matching DKIM d= aligned under the mode, or NULL. */
static const char *aligned_dkim(const struct dcheck_state *c, bool strict)
{
    for (size_t i = 0; i < c->n_dkim_ok; i++)
        if (align_is_aligned(c->domain, c->dkim_ok[i], strict)) return c->dkim_ok[i];
    return NULL;
}

static void report_unaligned(struct dcheck_state *c, const char *at, const char *modes,
                             const char *policy, bool enforcing)
{
    char fix[600];
    snprintf(fix, sizeof fix,
             "make herald's mail align: publish the DKIM record above (herald signs with "
             "d=%s) or authorise the egress IPs in SPF (see spf)",
             c->domain);
    enum cfg_from_fallback fb = c->tenant ? c->tenant->from_fallback : CFG_FROM_SEND;
    const char *sender = c->cfg->sender.address ? c->cfg->sender.address : "sender.address";
    if (fb == CFG_FROM_REWRITE)
        dcheck_report(c, DCHECK_DMARC, DCHECK_WARN, fix,
                      "%s (%s): herald's mail does not align, so from_fallback: rewrite sends "
                      "it From %s with the tenant's address in Reply-To",
                      at, modes, sender);
    else if (fb == CFG_FROM_REFUSE)
        dcheck_report(c, DCHECK_DMARC, DCHECK_FAIL, fix,
                      "%s (%s): herald's mail does not align and from_fallback: refuse "
                      "rejects it (unaligned-from)",
                      at, modes);
    else if (enforcing)
        dcheck_report(c, DCHECK_DMARC, DCHECK_FAIL, fix,
                      "%s (%s): herald's mail does not align (no valid DKIM, SPF not "
                      "passing); receivers will %s it",
                      at, modes, strcasecmp(policy, "reject") == 0 ? "reject" : "quarantine");
    else
        dcheck_report(c, DCHECK_DMARC, DCHECK_WARN, fix,
                      "%s (%s): herald's mail does not align; receivers may still treat it as "
                      "spam",
                      at, modes);
}

void dcheck_dmarc(struct dcheck_state *c)
{
    char rec[1024] = "", at[300] = "";
    const char *orgd = align_org_domain(c->domain);
    bool from_org = false;
    int found = find_policy(c, orgd, rec, sizeof rec, at, sizeof at, &from_org);
    if (found < 0) return;
    if (found == 0) {
        char fix[600];
        snprintf(fix, sizeof fix,
                 "publish a TXT record at _dmarc.%s:\n\"v=DMARC1; p=none\" (add "
                 "rua=mailto:... for reports; tighten p= once mail aligns)",
                 c->domain);
        bool two = strcasecmp(orgd, c->domain) != 0;
        dcheck_report(c, DCHECK_DMARC, DCHECK_WARN, fix, "no DMARC record at _dmarc.%s%s%s",
                      c->domain, two ? " or _dmarc." : "", two ? orgd : "");
        return;
    }
    snprintf(c->res->dmarc_name, sizeof c->res->dmarc_name, "%s", at);
    char p[32] = "", sp[32] = "", adkim[8] = "r", aspf[8] = "r";
    dcheck_tag(rec, "p", p, sizeof p);
    dcheck_tag(rec, "sp", sp, sizeof sp);
    dcheck_tag(rec, "adkim", adkim, sizeof adkim);
    dcheck_tag(rec, "aspf", aspf, sizeof aspf);
    /* sp= governs subdomains of the domain that published it. */
    const char *policy = from_org && sp[0] ? sp : p;
    bool enforcing = strcasecmp(policy, "reject") == 0 || strcasecmp(policy, "quarantine") == 0;
    if (!enforcing && strcasecmp(policy, "none") != 0) {
        dcheck_report(c, DCHECK_DMARC, DCHECK_FAIL, "set p= to none, quarantine or reject",
                      "%s: invalid policy p=%s", at, policy[0] ? policy : "(missing)");
        return;
    }
    bool dkim_strict = adkim[0] == 's' || adkim[0] == 'S';
    bool spf_strict = aspf[0] == 's' || aspf[0] == 'S';
    const char *by_d = aligned_dkim(c, dkim_strict);
    bool by_spf = c->spf_all_pass && align_is_aligned(c->domain, c->env_domain, spf_strict);
    c->res->aligned_dkim = by_d != NULL;
    c->res->aligned_spf = by_spf;
    char modes[96];
    snprintf(modes, sizeof modes, "p=%s adkim=%s aspf=%s", policy, dkim_strict ? "s" : "r",
             spf_strict ? "s" : "r");
    if (!by_d && !by_spf) {
        report_unaligned(c, at, modes, policy, enforcing);
        return;
    }
    const char *via = by_d && by_spf ? "DKIM and SPF" : by_d ? "DKIM" : "SPF";
    const char *d_shown = by_d ? by_d : c->n_dkim_ok ? c->dkim_ok[0] : "none";
    enum cfg_from_fallback fb = c->tenant ? c->tenant->from_fallback : CFG_FROM_SEND;
    /* The engine decides without the receiver's record, so it trusts only
     * alignment that holds in strict mode too; tell support staff when
     * that makes herald rewrite or refuse mail receivers would accept. */
    bool engine_aligned = align_signs_for(c->tenant, c->domain) ||
                          (c->spf_all_pass && strcasecmp(c->env_domain, c->domain) == 0);
    if (!engine_aligned && fb != CFG_FROM_SEND) {
        char fix[400];
        snprintf(fix, sizeof fix,
                 "sign with d=%s (drop the key's domain: or set it to %s), or authorise the "
                 "egress IPs in SPF",
                 c->domain, c->domain);
        dcheck_report(c, DCHECK_DMARC, fb == CFG_FROM_REFUSE ? DCHECK_FAIL : DCHECK_WARN, fix,
                      "%s (%s): receivers see herald's mail aligned via %s (d=%s, envelope "
                      "%s), but from_fallback: %s counts only identifiers equal to the From "
                      "domain and will %s",
                      at, modes, via, d_shown, c->env_domain, config_from_fallback_name(fb),
                      fb == CFG_FROM_REFUSE ? "refuse it" : "rewrite its From");
        return;
    }
    dcheck_report(c, DCHECK_DMARC, DCHECK_PASS, NULL,
                  "%s (%s): herald's mail aligns via %s (d=%s, envelope %s)", at, modes, via,
                  d_shown, c->env_domain);
}
