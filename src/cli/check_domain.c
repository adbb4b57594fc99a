/* `herald check-domain`: what support staff run when a clinic says "my
 * clients don't get the reminders". It asks DNS, through the configured
 * resolver, the questions receivers ask about a sending domain — MX, SPF
 * for each egress IP herald would use, the tenant's DKIM key, DMARC and
 * whether herald's mail aligns, PTR/FCrDNS and DNSBL listings of the egress
 * IPs — and prints each as PASS / WARN / FAIL with a reason and the fix.
 * Blocking DNS is fine here: this is the CLI, not an engine thread. */
#include <arpa/inet.h>
#include <ctype.h>
#include <getopt.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "cli.h"
#include "herald/dnsq.h"
#include "herald/spf.h"

static const char usage[] =
    "usage: herald check-domain DOMAIN -c FILE [--tenant T] [--json] [--timeout SECS]\n"
    "\n"
    "Check what receivers check about a sending domain, through the configured\n"
    "resolver (dns.servers, else the system's): MX, SPF for each egress IP of the\n"
    "tenant's pool, the tenant's DKIM record against herald's key, DMARC policy and\n"
    "whether herald's mail aligns, PTR/FCrDNS of the egress IPs and their DNSBL\n"
    "listings (dnsbl: in the config). Each check prints PASS, WARN or FAIL, a\n"
    "reason and, when something is wrong, the fix (often the exact DNS record).\n"
    "\n"
    "  --tenant T   the tenant whose pool, DKIM key and from_fallback to use\n"
    "               (default: the tenant that lists DOMAIN in its domains)\n"
    "  --json       one JSON object: {domain, tenant, result, checks: [{name,\n"
    "               verdict, reason, fix}]}\n"
    "\n"
    "Exit status: 0 when nothing FAILs, 1 otherwise, 2 for usage or config errors.\n";

enum verdict { V_PASS, V_WARN, V_FAIL };
static const char *const verdict_names[] = {"PASS", "WARN", "FAIL"};

struct checker {
    const struct config *cfg;
    const struct cfg_tenant *tenant;
    const struct cfg_egress_pool *pool;
    const char *domain;
    struct dnsq_sync *dns;
    bool json;
    json_t *checks;
    int n_fail, n_warn;
    /* For DMARC: what the earlier checks found. */
    bool spf_all_pass;
    bool dkim_ok;
};

static void report(struct checker *c, const char *name, enum verdict v, const char *fix,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void report(struct checker *c, const char *name, enum verdict v, const char *fix,
                   const char *fmt, ...)
{
    char reason[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(reason, sizeof reason, fmt, ap);
    va_end(ap);
    if (v == V_FAIL) c->n_fail++;
    if (v == V_WARN) c->n_warn++;
    if (c->json) {
        json_t *o = json_pack("{s:s, s:s, s:s}", "name", name, "verdict", verdict_names[v],
                              "reason", reason);
        if (o && fix) json_object_set_new(o, "fix", json_string(fix));
        if (o) json_array_append_new(c->checks, o);
        return;
    }
    printf("%-10s %s  %s\n", name, verdict_names[v], reason);
    if (fix) {
        /* Multi-line fixes keep the indentation so records stay readable. */
        const char *p = fix;
        bool first = true;
        while (*p) {
            const char *nl = strchr(p, '\n');
            size_t n = nl ? (size_t)(nl - p) : strlen(p);
            printf("           %s %.*s\n", first ? "fix:" : "    ", (int)n, p);
            first = false;
            p += n + (nl ? 1 : 0);
        }
    }
    fflush(stdout);
}

static enum dnsq_rc ask(struct checker *c, enum dnsq_type t, const char *name,
                        struct dnsq_rrset *out)
{
    dnsq_rrset_init(out);
    return dnsq_sync_lookup(c->dns, t, name, out);
}

/* Does name have an address (A or AAAA)? want: also must include it. */
static bool resolves(struct checker *c, const char *name, int want_family,
                     const unsigned char *want, char *first, size_t first_len)
{
    bool any = false, found = false;
    for (int pass = 0; pass < 2; pass++) {
        struct dnsq_rrset s;
        enum dnsq_type t = pass == 0 ? DNSQ_A : DNSQ_AAAA;
        if (ask(c, t, name, &s) == DNSQ_OK) {
            for (size_t i = 0; i < s.n; i++) {
                if (!any && first)
                    inet_ntop(pass == 0 ? AF_INET : AF_INET6, s.addr[i], first,
                              (socklen_t)first_len);
                any = true;
                if (want && want_family == (pass == 0 ? AF_INET : AF_INET6) &&
                    memcmp(s.addr[i], want, pass == 0 ? 4 : 16) == 0)
                    found = true;
            }
        }
        dnsq_rrset_clear(&s);
    }
    return want ? found : any;
}

/* ---- MX ---- */

static void check_mx(struct checker *c)
{
    struct dnsq_rrset s;
    enum dnsq_rc rc = ask(c, DNSQ_MX, c->domain, &s);
    char fix[512], addr[INET6_ADDRSTRLEN];
    if (rc == DNSQ_SERVFAIL) {
        report(c, "mx", V_FAIL, "check the domain's name servers; receivers see the same failure",
               "MX lookup for %s failed (server failure or timeout)", c->domain);
    } else if (rc == DNSQ_NXDOMAIN) {
        report(c, "mx", V_FAIL, "register the domain or correct the tenant's From address",
               "%s does not exist (NXDOMAIN): receivers reject mail from it", c->domain);
    } else if (rc == DNSQ_NODATA) {
        if (resolves(c, c->domain, 0, NULL, addr, sizeof addr)) {
            snprintf(fix, sizeof fix, "publish an MX record, e.g. %s MX 10 mail.%s", c->domain,
                     c->domain);
            report(c, "mx", V_WARN, fix,
                   "no MX record; replies go to the domain's address %s (implicit MX)", addr);
        } else {
            snprintf(fix, sizeof fix, "publish an MX record for %s so replies and bounces arrive",
                     c->domain);
            report(c, "mx", V_FAIL, fix,
                   "no MX and no address record: nobody can reply to mail from %s", c->domain);
        }
    } else if (s.n == 1 && s.text[0][0] == '\0') {
        report(c, "mx", V_WARN,
               "if clients should be able to reply, replace the null MX with a real one "
               "(or set the tenant's reply_to to a mailbox elsewhere)",
               "null MX (RFC 7505): %s accepts no mail, so replies to reminders bounce",
               c->domain);
    } else {
        char list[600] = "";
        size_t used = 0, good = 0;
        for (size_t i = 0; i < s.n; i++) {
            if (!s.text[i][0]) continue;
            bool ok = resolves(c, s.text[i], 0, NULL, addr, sizeof addr);
            good += ok;
            int w = snprintf(list + used, sizeof list - used, "%s%s(%u)%s%s%s", used ? " " : "",
                             s.text[i], s.pref[i], ok ? " [" : " [no address", ok ? addr : "",
                             "]");
            if (w > 0 && (size_t)w < sizeof list - used) used += (size_t)w;
        }
        if (good)
            report(c, "mx", V_PASS, NULL, "%s", list);
        else
            report(c, "mx", V_FAIL, "add A/AAAA records for the exchangers",
                   "no exchanger has an address: %s", list);
    }
    dnsq_rrset_clear(&s);
}

/* ---- SPF ---- */

static int parse_ip(const char *s, int *family, unsigned char *ip)
{
    if (inet_pton(AF_INET, s, ip) == 1) {
        *family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, s, ip) == 1) {
        *family = AF_INET6;
        return 0;
    }
    return -1;
}

static const char *ehlo_name(const struct checker *c)
{
    return c->pool->ehlo;
}

static void check_spf(struct checker *c)
{
    if (!c->pool || c->pool->ips.n == 0) {
        report(c, "spf", V_WARN,
               "list the pool's source addresses under egress: so they can be checked",
               "egress pool '%s' has no IPs: the kernel picks the source address, so SPF "
               "cannot be checked",
               c->pool ? c->pool->name : "default");
        return;
    }
    char sender[320];
    const char *from = c->tenant ? c->tenant->from : NULL;
    const char *at = from ? strrchr(from, '@') : NULL;
    if (at && strcasecmp(at + 1, c->domain) == 0)
        snprintf(sender, sizeof sender, "%s", from);
    else
        snprintf(sender, sizeof sender, "postmaster@%s", c->domain);
    struct hbuf passed, failed, missing, why;
    hbuf_init(&passed);
    hbuf_init(&failed);
    hbuf_init(&missing);
    hbuf_init(&why);
    enum spf_result worst = SPF_PASS;
    char record[512] = "", worst_why[320] = "";
    size_t n_pass = 0;
    for (size_t i = 0; i < c->pool->ips.n; i++) {
        const char *ipt = c->pool->ips.items[i];
        struct spf_request rq = {.domain = c->domain, .sender = sender, .helo = ehlo_name(c),
                                 .lookup = dnsq_sync_lookup, .ctx = c->dns};
        if (parse_ip(ipt, &rq.family, rq.ip) < 0) continue;
        struct spf_verdict v;
        if (spf_check_host(&rq, &v) < 0) continue;
        snprintf(record, sizeof record, "%s", v.record);
        if (v.result == SPF_PASS) {
            n_pass++;
            hbuf_appendf(&passed, "%s%s", passed.len ? " " : "", ipt);
            continue;
        }
        hbuf_appendf(&failed, "%s%s: %s (%s)", failed.len ? "; " : "", ipt,
                     spf_result_name(v.result), v.explanation);
        hbuf_appendf(&missing, "%s%s:%s", missing.len ? " " : "",
                     rq.family == AF_INET ? "ip4" : "ip6", ipt);
        /* Errors outrank plain misses: they need a different fix. */
        int rank = v.result == SPF_PERMERROR ? 3 : v.result == SPF_TEMPERROR ? 2
                   : v.result == SPF_NONE    ? 1
                                             : 0;
        int worst_rank = worst == SPF_PERMERROR ? 3 : worst == SPF_TEMPERROR ? 2
                         : worst == SPF_NONE    ? 1
                                                : worst == SPF_PASS ? -1 : 0;
        if (rank > worst_rank) {
            worst = v.result;
            snprintf(worst_why, sizeof worst_why, "%s", v.explanation);
        }
    }
    c->spf_all_pass = n_pass == c->pool->ips.n;
    char fix[1400];
    if (c->spf_all_pass) {
        report(c, "spf", V_PASS, NULL, "all egress IPs pass for %s: %s", c->domain, passed.data);
    } else if (worst == SPF_NONE) {
        snprintf(fix, sizeof fix, "publish a TXT record at %s:\n\"v=spf1 %s -all\"", c->domain,
                 missing.data);
        report(c, "spf", V_FAIL, fix, "%s", worst_why);
    } else if (worst == SPF_PERMERROR) {
        snprintf(fix, sizeof fix,
                 "correct the SPF record of %s: %s (with many includes, replace some by the "
                 "ip4:/ip6: ranges they stand for)",
                 c->domain, worst_why);
        report(c, "spf", V_FAIL, fix, "permerror: %s", failed.data);
    } else if (worst == SPF_TEMPERROR) {
        report(c, "spf", V_FAIL, "check the name servers of the domains named in the record",
               "temperror: %s", failed.data);
    } else {
        struct hbuf rec;
        hbuf_init(&rec);
        spf_record_insert(record, missing.data, &rec);
        snprintf(fix, sizeof fix,
                 "add \"%s\" to the SPF record of %s, before the final all:\n\"%s\"",
                 missing.data, c->domain, rec.data ? rec.data : "");
        hbuf_free(&rec);
        report(c, "spf", V_FAIL, fix, "%zu of %zu egress IPs not authorised: %s%s%s", 
               c->pool->ips.n - n_pass, c->pool->ips.n, failed.data,
               passed.len ? "; passing: " : "", passed.len ? passed.data : "");
    }
    hbuf_free(&passed);
    hbuf_free(&failed);
    hbuf_free(&missing);
    hbuf_free(&why);
}

/* ---- DKIM ---- */

/* The p= value herald's key implies: base64 of the DER SubjectPublicKeyInfo
 * for RSA, of the raw 32-byte key for Ed25519 (RFC 8463). */
static int public_key_b64(const char *path, bool ed25519, struct hbuf *out, char *err,
                          size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "cannot open %s", path);
        return -1;
    }
    EVP_PKEY *pk = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!pk) {
        snprintf(err, errlen, "%s is not a PEM private key", path);
        return -1;
    }
    int rc = -1;
    int id = EVP_PKEY_get_base_id(pk);
    if (ed25519 != (id == EVP_PKEY_ED25519)) {
        snprintf(err, errlen, "%s is not an %s key", path, ed25519 ? "Ed25519" : "RSA");
    } else if (ed25519) {
        unsigned char raw[32];
        size_t n = sizeof raw;
        if (EVP_PKEY_get_raw_public_key(pk, raw, &n) == 1 && n == 32)
            rc = hbuf_append_base64(out, raw, n);
    } else {
        unsigned char *der = NULL;
        int n = i2d_PUBKEY(pk, &der);
        if (n > 0) rc = hbuf_append_base64(out, der, (size_t)n);
        OPENSSL_free(der);
    }
    if (rc < 0 && !err[0]) snprintf(err, errlen, "cannot derive the public key of %s", path);
    EVP_PKEY_free(pk);
    return rc < 0 ? -1 : 0;
}

/* The value of tag `name` in a "k=v; k=v" list, whitespace removed. */
static bool tag_value(const char *rec, const char *name, char *out, size_t outlen)
{
    size_t nl = strlen(name);
    const char *p = rec;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ';') p++;
        const char *k = p;
        while (*p && *p != '=' && *p != ';') p++;
        const char *ke = p;
        while (ke > k && (ke[-1] == ' ' || ke[-1] == '\t')) ke--;
        if (*p != '=') continue;
        p++;
        const char *v = p;
        while (*p && *p != ';') p++;
        if ((size_t)(ke - k) == nl && strncasecmp(k, name, nl) == 0) {
            size_t o = 0;
            for (const char *x = v; x < p && o + 1 < outlen; x++)
                if (!isspace((unsigned char)*x)) out[o++] = *x;
            out[o] = '\0';
            return true;
        }
    }
    return false;
}

/* A DKIM record as a zone-file value: ≤255-byte strings (RFC 1035 3.3). */
static void dkim_record_text(const char *name, bool ed25519, const char *p, struct hbuf *out)
{
    char rec[4096];
    snprintf(rec, sizeof rec, "v=DKIM1; k=%s; p=%s", ed25519 ? "ed25519" : "rsa", p);
    hbuf_appendf(out, "publish a TXT record at %s:\n", name);
    size_t n = strlen(rec);
    for (size_t i = 0; i < n; i += 255)
        hbuf_appendf(out, "%s\"%.*s\"", i ? " " : "", (int)(n - i > 255 ? 255 : n - i), rec + i);
}

static void check_one_dkim(struct checker *c, const struct cfg_dkim *dk);

/* Every key the tenant signs this domain with (dual signing: each one). */
static void check_dkim(struct checker *c)
{
    const struct cfg_tenant *t = c->tenant;
    size_t checked = 0;
    for (size_t i = 0; t && i < t->n_dkim; i++) {
        const struct cfg_dkim *dk = &t->dkim[i];
        if (dk->domain && strcasecmp(dk->domain, c->domain) != 0)
            continue;
        check_one_dkim(c, dk);
        checked++;
    }
    if (checked == 0)
        report(c, "dkim", V_WARN,
               "configure tenants.<name>.dkim {selector, key} and publish the record "
               "check-domain then prints",
               "%s: herald does not sign mail for %s (no DKIM key configured)",
               t ? t->name : "no tenant", c->domain);
}

static void check_one_dkim(struct checker *c, const struct cfg_dkim *dk)
{
    const struct cfg_dkim *tk = dk;
    bool ed = tk->algorithm && strncmp(tk->algorithm, "ed25519", 7) == 0;
    char name[320], err[300] = "";
    snprintf(name, sizeof name, "%s._domainkey.%s", tk->selector, c->domain);
    struct hbuf want, fix;
    hbuf_init(&want);
    hbuf_init(&fix);
    if (public_key_b64(tk->key, ed, &want, err, sizeof err) < 0) {
        report(c, "dkim", V_FAIL, "correct tenants.<name>.dkim.key", "%s", err);
        goto out;
    }
    dkim_record_text(name, ed, want.data, &fix);
    struct dnsq_rrset s;
    enum dnsq_rc rc = ask(c, DNSQ_TXT, name, &s);
    const char *rec = NULL;
    for (size_t i = 0; rc == DNSQ_OK && i < s.n && !rec; i++) {
        char tmp[16];
        if (tag_value(s.text[i], "p", tmp, 2) || tag_value(s.text[i], "v", tmp, sizeof tmp))
            rec = s.text[i];
    }
    if (rc == DNSQ_SERVFAIL) {
        report(c, "dkim", V_FAIL, "check the domain's name servers",
               "TXT lookup for %s failed (server failure or timeout)", name);
    } else if (!rec) {
        report(c, "dkim", V_FAIL, fix.data, "no DKIM record at %s: receivers cannot verify "
               "herald's signatures", name);
    } else {
        char v[32] = "", k[32] = "rsa";
        char *p = malloc(strlen(rec) + 1);
        if (!p) goto clear;
        bool has_p = tag_value(rec, "p", p, strlen(rec) + 1);
        tag_value(rec, "v", v, sizeof v);
        tag_value(rec, "k", k, sizeof k);
        if (v[0] && strcmp(v, "DKIM1") != 0)
            report(c, "dkim", V_FAIL, fix.data, "%s: v=%s, expected v=DKIM1", name, v);
        else if (!has_p)
            report(c, "dkim", V_FAIL, fix.data, "%s has no p= tag", name);
        else if (!p[0])
            report(c, "dkim", V_FAIL, fix.data, "%s has an empty p=: the key is revoked", name);
        else if (strcasecmp(k, ed ? "ed25519" : "rsa") != 0)
            report(c, "dkim", V_FAIL, fix.data, "%s has k=%s, herald signs with %s", name, k,
                   tk->algorithm);
        else if (strcmp(p, want.data) != 0)
            report(c, "dkim", V_FAIL, fix.data,
                   "the key published at %s differs from the key herald signs with (%s)", name,
                   tk->key);
        else {
            c->dkim_ok = true;
            report(c, "dkim", V_PASS, NULL, "%s matches %s (%s)", name, tk->key,
                   tk->algorithm);
        }
        free(p);
    }
clear:
    dnsq_rrset_clear(&s);
out:
    hbuf_free(&want);
    hbuf_free(&fix);
}

/* ---- DMARC ---- */

/* The organisational domain, simplified to the last two labels (no Public
 * Suffix List: "example.co.uk" comes out as "co.uk", documented). */
static const char *org_domain(const char *d)
{
    const char *last = strrchr(d, '.');
    if (!last) return d;
    const char *p = last;
    while (p > d && p[-1] != '.') p--;
    return p;
}

static bool aligned(const char *a, const char *b, bool strict)
{
    if (strcasecmp(a, b) == 0) return true;
    return !strict && strcasecmp(org_domain(a), org_domain(b)) == 0;
}

static void check_dmarc(struct checker *c)
{
    char name[300], rec[1024] = "", at[300];
    const char *orgd = org_domain(c->domain);
    bool found = false, from_org = false;
    for (int pass = 0; pass < 2 && !found; pass++) {
        const char *d = pass == 0 ? c->domain : orgd;
        if (pass == 1 && strcasecmp(d, c->domain) == 0) break;
        snprintf(name, sizeof name, "_dmarc.%s", d);
        struct dnsq_rrset s;
        enum dnsq_rc rc = ask(c, DNSQ_TXT, name, &s);
        if (rc == DNSQ_SERVFAIL) {
            report(c, "dmarc", V_FAIL, "check the domain's name servers",
                   "TXT lookup for %s failed (server failure or timeout)", name);
            dnsq_rrset_clear(&s);
            return;
        }
        for (size_t i = 0; rc == DNSQ_OK && i < s.n && !found; i++)
            if (strncasecmp(s.text[i], "v=DMARC1", 8) == 0 &&
                (s.text[i][8] == ';' || s.text[i][8] == ' ' || s.text[i][8] == '\0')) {
                snprintf(rec, sizeof rec, "%s", s.text[i]);
                snprintf(at, sizeof at, "%s", name);
                found = true;
                from_org = pass == 1;
            }
        dnsq_rrset_clear(&s);
    }
    char fix[600];
    if (!found) {
        snprintf(fix, sizeof fix,
                 "publish a TXT record at _dmarc.%s:\n\"v=DMARC1; p=none\" (add rua=mailto:... "
                 "for reports; tighten p= once mail aligns)",
                 c->domain);
        report(c, "dmarc", V_WARN, fix, "no DMARC record at _dmarc.%s%s%s", c->domain,
               strcasecmp(orgd, c->domain) ? " or _dmarc." : "",
               strcasecmp(orgd, c->domain) ? orgd : "");
        return;
    }
    char p[32] = "", sp[32] = "", adkim[8] = "r", aspf[8] = "r";
    tag_value(rec, "p", p, sizeof p);
    tag_value(rec, "sp", sp, sizeof sp);
    tag_value(rec, "adkim", adkim, sizeof adkim);
    tag_value(rec, "aspf", aspf, sizeof aspf);
    const char *policy = from_org && sp[0] ? sp : p;
    bool enforcing = strcasecmp(policy, "reject") == 0 || strcasecmp(policy, "quarantine") == 0;
    if (!enforcing && strcasecmp(policy, "none") != 0) {
        report(c, "dmarc", V_FAIL, "set p= to none, quarantine or reject",
               "%s: invalid policy p=%s", at, policy[0] ? policy : "(missing)");
        return;
    }
    /* herald signs with d= the From domain and uses the From address as
     * the envelope sender, so both identifiers are the checked domain. */
    const char *dkim_d = c->domain, *env = c->domain;
    bool by_dkim = c->dkim_ok && aligned(dkim_d, c->domain, adkim[0] == 's');
    bool by_spf = c->spf_all_pass && aligned(env, c->domain, aspf[0] == 's');
    char modes[64];
    snprintf(modes, sizeof modes, "p=%s adkim=%s aspf=%s", policy, adkim[0] == 's' ? "s" : "r",
             aspf[0] == 's' ? "s" : "r");
    if (by_dkim || by_spf) {
        report(c, "dmarc", V_PASS, NULL, "%s (%s): herald's mail aligns via %s (d=%s, "
               "envelope %s)", at, modes, by_dkim && by_spf ? "DKIM and SPF" : by_dkim ? "DKIM" : "SPF",
               dkim_d, env);
        return;
    }
    enum cfg_from_fallback fb = c->tenant ? c->tenant->from_fallback : CFG_FROM_SEND;
    snprintf(fix, sizeof fix,
             "make herald's mail align: publish the DKIM record above (herald signs with d=%s) "
             "or authorise the egress IPs in SPF (see spf)",
             c->domain);
    if (fb == CFG_FROM_REWRITE)
        report(c, "dmarc", V_WARN, fix,
               "%s (%s): herald's mail does not align, so from_fallback: rewrite sends it From "
               "%s with the tenant's address in Reply-To",
               at, modes, c->cfg->sender.address ? c->cfg->sender.address : "sender.address");
    else if (fb == CFG_FROM_REFUSE)
        report(c, "dmarc", V_FAIL, fix,
               "%s (%s): herald's mail does not align and from_fallback: refuse rejects it "
               "(unaligned-from)",
               at, modes);
    else if (enforcing)
        report(c, "dmarc", V_FAIL, fix,
               "%s (%s): herald's mail does not align (no valid DKIM, SPF not passing); "
               "receivers will %s it",
               at, modes, strcasecmp(policy, "reject") == 0 ? "reject" : "quarantine");
    else
        report(c, "dmarc", V_WARN, fix,
               "%s (%s): herald's mail does not align; receivers may still treat it as spam",
               at, modes);
}

/* ---- egress IPs: PTR / FCrDNS, DNSBL ---- */

static void check_ptr(struct checker *c, const char *ipt, int family, const unsigned char *ip)
{
    char rev[128], fix[600];
    const char *ehlo = ehlo_name(c);
    dnsq_reverse_name(family, ip, NULL, rev, sizeof rev);
    struct dnsq_rrset s;
    enum dnsq_rc rc = ask(c, DNSQ_PTR, rev, &s);
    snprintf(fix, sizeof fix, "ask whoever runs %s to set its PTR to %s", ipt, ehlo);
    if (rc == DNSQ_SERVFAIL) {
        report(c, "ptr", V_FAIL, fix, "%s: PTR lookup for %s failed", ipt, rev);
    } else if (rc != DNSQ_OK) {
        report(c, "ptr", V_FAIL, fix,
               "%s has no PTR record: many receivers refuse mail from such addresses", ipt);
    } else {
        const char *name = s.text[0];
        for (size_t i = 0; i < s.n; i++)
            if (resolves(c, s.text[i], family, ip, NULL, 0)) {
                name = s.text[i];
                goto confirmed;
            }
        snprintf(fix, sizeof fix, "add an address record %s -> %s (or correct the PTR)", name,
                 ipt);
        report(c, "ptr", V_FAIL, fix, "%s: PTR %s does not resolve back to %s (no FCrDNS)", ipt,
               name, ipt);
        goto out;
    confirmed:
        if (strcasecmp(name, ehlo) != 0) {
            snprintf(fix, sizeof fix, "set the pool's ehlo: to %s, or the PTR of %s to %s", name,
                     ipt, ehlo);
            report(c, "ptr", V_WARN, fix, "%s: PTR %s (forward-confirmed) differs from EHLO %s",
                   ipt, name, ehlo);
        } else {
            report(c, "ptr", V_PASS, NULL, "%s: PTR %s, forward-confirmed, matches EHLO", ipt,
                   name);
        }
    }
out:
    dnsq_rrset_clear(&s);
}

static void check_dnsbl(struct checker *c, const char *ipt, int family, const unsigned char *ip)
{
    const struct cfg_strlist *zones = &c->cfg->dnsbl;
    if (zones->n == 0) return;
    struct hbuf listed, unknown;
    hbuf_init(&listed);
    hbuf_init(&unknown);
    for (size_t z = 0; z < zones->n; z++) {
        char q[400];
        if (dnsq_reverse_name(family, ip, zones->items[z], q, sizeof q) < 0) continue;
        struct dnsq_rrset s;
        enum dnsq_rc rc = ask(c, DNSQ_A, q, &s);
        if (rc == DNSQ_OK) {
            char code[INET_ADDRSTRLEN];
            inet_ntop(AF_INET, s.addr[0], code, sizeof code);
            hbuf_appendf(&listed, "%s%s (%s", listed.len ? "; " : "", zones->items[z], code);
            struct dnsq_rrset t;
            if (ask(c, DNSQ_TXT, q, &t) == DNSQ_OK) hbuf_appendf(&listed, ": %s", t.text[0]);
            dnsq_rrset_clear(&t);
            hbuf_append_char(&listed, ')');
        } else if (rc == DNSQ_SERVFAIL) {
            hbuf_appendf(&unknown, "%s%s", unknown.len ? ", " : "", zones->items[z]);
        }
        dnsq_rrset_clear(&s);
    }
    if (listed.len) {
        char fix[300];
        snprintf(fix, sizeof fix,
                 "find why (the reason above, the list's lookup page), fix the cause, then ask "
                 "the list's operator to delist %s; meanwhile take it out of the egress pool",
                 ipt);
        report(c, "dnsbl", V_FAIL, fix, "%s is listed: %s", ipt, listed.data);
    } else if (unknown.len) {
        report(c, "dnsbl", V_WARN, "check the resolver can reach the lists' servers",
               "%s: could not query %s", ipt, unknown.data);
    } else {
        report(c, "dnsbl", V_PASS, NULL, "%s is not listed on %zu list(s)", ipt, zones->n);
    }
    hbuf_free(&listed);
    hbuf_free(&unknown);
}

static void check_egress(struct checker *c)
{
    if (!c->pool || c->pool->ips.n == 0) return; /* said under spf */
    for (size_t i = 0; i < c->pool->ips.n; i++) {
        int family;
        unsigned char ip[16];
        if (parse_ip(c->pool->ips.items[i], &family, ip) < 0) continue;
        check_ptr(c, c->pool->ips.items[i], family, ip);
        check_dnsbl(c, c->pool->ips.items[i], family, ip);
    }
}

static const struct cfg_tenant *tenant_for(const struct config *cfg, const char *domain)
{
    for (size_t i = 0; i < cfg->n_tenants; i++)
        for (size_t d = 0; d < cfg->tenants[i].domains.n; d++)
            if (strcasecmp(cfg->tenants[i].domains.items[d], domain) == 0)
                return &cfg->tenants[i];
    return NULL;
}

int cli_check_domain(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"tenant", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},         {"timeout", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *tenant_name = NULL;
    bool json = false;
    long timeout_s = 5;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "c:t:jT:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': path = optarg; break;
        case 't': tenant_name = optarg; break;
        case 'j': json = true; break;
        case 'T': {
            char *end;
            timeout_s = strtol(optarg, &end, 10);
            if (*end || timeout_s < 1 || timeout_s > 300) {
                fprintf(stderr, "herald check-domain: --timeout wants 1..300 seconds\n");
                return 2;
            }
            break;
        }
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (optind != argc - 1) {
        fputs(usage, stderr);
        return 2;
    }
    char domain[256];
    snprintf(domain, sizeof domain, "%s", argv[optind]);
    size_t dl = strlen(domain);
    if (dl && domain[dl - 1] == '.') domain[--dl] = '\0';
    for (size_t i = 0; i < dl; i++) domain[i] = (char)tolower((unsigned char)domain[i]);
    if (dl == 0 || !strchr(domain, '.') || strspn(domain, "abcdefghijklmnopqrstuvwxyz0123456789-._")
                                               != dl) {
        fprintf(stderr, "herald check-domain: '%s' is not a domain name\n", argv[optind]);
        return 2;
    }
    struct config *cfg = NULL;
    int rc = cli_load_config(path, &cfg);
    if (rc) return rc;
    struct checker c = {.cfg = cfg, .domain = domain, .json = json};
    if (tenant_name) {
        c.tenant = config_tenant(cfg, tenant_name);
        if (!c.tenant) {
            fprintf(stderr, "herald check-domain: unknown tenant '%s'\n", tenant_name);
            config_free(cfg);
            return 2;
        }
    } else {
        c.tenant = tenant_for(cfg, domain);
    }
    c.pool = config_egress(cfg, c.tenant ? c.tenant->egress : "default");
    char err[300];
    if (dnsq_sync_new(&c.dns, (const char *const *)cfg->dns.servers.items, cfg->dns.servers.n,
                      timeout_s * 1000, err, sizeof err) < 0) {
        fprintf(stderr, "herald check-domain: %s\n", err);
        config_free(cfg);
        return 2;
    }
    if (json) {
        c.checks = json_array();
    } else {
        printf("check-domain %s: tenant %s, egress pool %s", domain,
               c.tenant ? c.tenant->name : "(none)", c.pool ? c.pool->name : "default");
        for (size_t i = 0; c.pool && i < c.pool->ips.n; i++)
            printf("%s%s", i ? " " : " [", c.pool->ips.items[i]);
        printf("%s, EHLO %s\n", c.pool && c.pool->ips.n ? "]" : "", ehlo_name(&c));
    }
    check_mx(&c);
    check_spf(&c);
    check_dkim(&c);
    check_dmarc(&c);
    check_egress(&c);
    const char *result = c.n_fail ? "FAIL" : c.n_warn ? "WARN" : "PASS";
    if (json) {
        json_t *top = json_pack("{s:s, s:s?, s:s, s:i, s:i, s:o}", "domain", domain, "tenant",
                                c.tenant ? c.tenant->name : NULL, "result", result, "failed",
                                c.n_fail, "warnings", c.n_warn, "checks", c.checks);
        char *s = top ? json_dumps(top, JSON_INDENT(2)) : NULL;
        if (s) puts(s);
        free(s);
        json_decref(top);
    } else {
        printf("result: %s (%d failed, %d warnings)\n", result, c.n_fail, c.n_warn);
    }
    dnsq_sync_free(c.dns);
    config_free(cfg);
    return c.n_fail ? 1 : 0;
}
