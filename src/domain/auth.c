/* The records that authenticate herald's mail: SPF for each egress IP and
 * the DKIM record of each key the tenant signs with. The SPF evaluation
 * and the identities (envelope sender, d=, public key) are the engine's
 * own (herald/align.h, herald/dkim.h), so this reports what herald does. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "domain/dcheck.h"
#include "herald/align.h"
#include "herald/dkim.h"
#include "herald/spf.h"

/* ---- SPF ---- */

/* Errors outrank plain misses: they need a different fix. */
static int spf_rank(enum spf_result r)
{
    switch (r) {
    case SPF_PASS:
        return -1;
    case SPF_NONE:
        return 1;
    case SPF_TEMPERROR:
        return 2;
    case SPF_PERMERROR:
        return 3;
    default:
        return 0;
    }
}

struct spf_tally {
    struct hbuf passed, failed, missing;
    size_t n_ips, n_pass;
    enum spf_result worst;
    char worst_why[320];
    char record[512];
    int err;
};

static void tally_ip(void *arg, const char *ip, int family, const struct spf_verdict *v)
{
    struct spf_tally *t = arg;
    int rc = 0;
    t->n_ips++;
    snprintf(t->record, sizeof t->record, "%s", v->record);
    if (v->result == SPF_PASS) {
        t->n_pass++;
        rc = hbuf_appendf(&t->passed, "%s%s", t->passed.len ? " " : "", ip);
    } else {
        rc = hbuf_appendf(&t->failed, "%s%s: %s (%s)", t->failed.len ? "; " : "", ip,
                          spf_result_name(v->result), v->explanation);
        if (rc == 0)
            rc = hbuf_appendf(&t->missing, "%s%s:%s", t->missing.len ? " " : "",
                              family == AF_INET ? "ip4" : "ip6", ip);
        if (spf_rank(v->result) > spf_rank(t->worst)) {
            t->worst = v->result;
            snprintf(t->worst_why, sizeof t->worst_why, "%s", v->explanation);
        }
    }
    if (rc && !t->err) t->err = rc;
}

static void spf_report_failure(struct dcheck_state *c, struct spf_tally *t)
{
    const char *d = c->env_domain;
    struct hbuf fix;
    hbuf_init(&fix);
    if (t->worst == SPF_NONE) {
        hbuf_appendf(&fix, "publish a TXT record at %s:\n\"v=spf1 %s -all\"", d, t->missing.data);
        dcheck_report(c, DCHECK_SPF, DCHECK_FAIL, fix.data, "%s", t->worst_why);
    } else if (t->worst == SPF_PERMERROR) {
        hbuf_appendf(&fix,
                     "correct the SPF record of %s: %s (with many includes, replace some by "
                     "the ip4:/ip6: ranges they stand for)",
                     d, t->worst_why);
        dcheck_report(c, DCHECK_SPF, DCHECK_FAIL, fix.data, "permerror: %s", t->failed.data);
    } else if (t->worst == SPF_TEMPERROR) {
        dcheck_report(c, DCHECK_SPF, DCHECK_FAIL,
                      "check the name servers of the domains named in the record", "temperror: %s",
                      t->failed.data);
    } else {
        struct hbuf rec;
        hbuf_init(&rec);
        if (spf_record_insert(t->record, t->missing.data, &rec) < 0) c->err = -ENOMEM;
        hbuf_appendf(&fix, "add \"%s\" to the SPF record of %s, before the final all:\n\"%s\"",
                     t->missing.data, d, rec.data ? rec.data : "");
        hbuf_free(&rec);
        dcheck_report(c, DCHECK_SPF, DCHECK_FAIL, fix.data,
                      "%zu of %zu egress IPs not authorised: %s%s%s", t->n_ips - t->n_pass,
                      t->n_ips, t->failed.data, t->passed.len ? "; passing: " : "",
                      t->passed.len ? t->passed.data : "");
    }
    if (!fix.data) c->err = -ENOMEM;
    hbuf_free(&fix);
}

void dcheck_spf(struct dcheck_state *c)
{
    if (!c->pool || c->pool->ips.n == 0) {
        dcheck_report(c, DCHECK_SPF, DCHECK_WARN,
                      "list the pool's source addresses under egress: so they can be checked",
                      "egress pool '%s' has no IPs: the kernel picks the source address, so "
                      "SPF cannot be checked",
                      c->pool ? c->pool->name : "default");
        return;
    }
    char sender[320];
    align_envelope_sender(c->tenant, c->env_domain, sender, sizeof sender);
    struct spf_tally t = {.worst = SPF_PASS};
    hbuf_init(&t.passed);
    hbuf_init(&t.failed);
    hbuf_init(&t.missing);
    int rc = align_spf_pool(c->cfg, c->pool, c->env_domain, sender, c->rq->lookup, c->rq->ctx,
                            tally_ip, &t);
    if (rc < 0 || t.err) {
        c->err = rc < 0 ? rc : t.err;
    } else if (t.n_ips == 0) {
        dcheck_report(c, DCHECK_SPF, DCHECK_WARN, "correct the addresses under egress:",
                      "egress pool '%s' has no usable IP address", c->pool->name);
    } else if (t.n_pass == t.n_ips) {
        c->spf_all_pass = true;
        dcheck_report(c, DCHECK_SPF, DCHECK_PASS, NULL, "all egress IPs pass for %s: %s",
                      c->env_domain, t.passed.data);
    } else {
        spf_report_failure(c, &t);
    }
    hbuf_free(&t.passed);
    hbuf_free(&t.failed);
    hbuf_free(&t.missing);
}

/* ---- DKIM ---- */

/* The record to publish as a zone-file value: TXT strings hold at most
 * 255 bytes (RFC 1035 3.3), so a 2048-bit key needs two. */
static int publish_fix(const char *name, const char *rec, struct hbuf *out)
{
    int rc = hbuf_appendf(out, "publish a TXT record at %s:\n", name);
    size_t n = strlen(rec);
    for (size_t i = 0; rc == 0 && i < n; i += 255)
        rc = hbuf_appendf(out, "%s\"%.*s\"", i ? " " : "", (int)(n - i > 255 ? 255 : n - i),
                          rec + i);
    return rc;
}

/* The published record for name, if any: the first TXT that looks like
 * DKIM (has p= or v=). */
static const char *find_record(const struct dnsq_rrset *s)
{
    for (size_t i = 0; i < s->n; i++) {
        char tmp[16];
        if (dcheck_tag(s->text[i], "p", tmp, 2) || dcheck_tag(s->text[i], "v", tmp, sizeof tmp))
            return s->text[i];
    }
    return NULL;
}

/* Compare the record at name with `want` (dkim_key_txt's "v=DKIM1; k=..;
 * p=.."). Returns true when it matches. */
static bool compare_record(struct dcheck_state *c, const struct cfg_dkim *dk, const char *name,
                           const char *rec, const char *want, const char *fix)
{
    const char *want_p = strstr(want, "p=");
    char want_k[32] = "";
    dcheck_tag(want, "k", want_k, sizeof want_k);
    size_t len = strlen(rec) + 1;
    char *p = malloc(len);
    if (!p) {
        c->err = -ENOMEM;
        return false;
    }
    char v[32] = "", k[32] = "rsa"; /* k= defaults to rsa (RFC 6376 3.6.1) */
    bool has_p = dcheck_tag(rec, "p", p, len);
    dcheck_tag(rec, "v", v, sizeof v);
    dcheck_tag(rec, "k", k, sizeof k);
    bool ok = false;
    if (v[0] && strcmp(v, "DKIM1") != 0)
        dcheck_report(c, DCHECK_DKIM, DCHECK_FAIL, fix, "%s: v=%s, expected v=DKIM1", name, v);
    else if (!has_p)
        dcheck_report(c, DCHECK_DKIM, DCHECK_FAIL, fix, "%s has no p= tag", name);
    else if (!p[0])
        dcheck_report(c, DCHECK_DKIM, DCHECK_FAIL, fix, "%s has an empty p=: the key is revoked",
                      name);
    else if (strcasecmp(k, want_k) != 0)
        dcheck_report(c, DCHECK_DKIM, DCHECK_FAIL, fix, "%s has k=%s, herald signs with %s", name,
                      k, dk->algorithm);
    else if (!want_p || strcmp(p, want_p + 2) != 0)
        dcheck_report(c, DCHECK_DKIM, DCHECK_FAIL, fix,
                      "the key published at %s differs from the key herald signs with (%s)", name,
                      dk->key);
    else
        ok = true;
    free(p);
    return ok;
}

static void check_key(struct dcheck_state *c, const struct cfg_dkim *dk)
{
    const char *d = align_dkim_domain(dk, c->domain);
    char name[320];
    snprintf(name, sizeof name, "%s._domainkey.%s", dk->selector, d);
    if (!dk->loaded) {
        /* config_load loads every key; only a config built without
         * config_load_keys gets here. */
        dcheck_report(c, DCHECK_DKIM, DCHECK_FAIL, "correct tenants.<name>.dkim.key",
                      "key %s is not loaded", dk->key);
        return;
    }
    struct hbuf want, fix;
    hbuf_init(&want);
    hbuf_init(&fix);
    if (dkim_key_txt(dk->loaded, &want) < 0 || publish_fix(name, want.data, &fix) < 0) {
        c->err = -ENOMEM;
        goto out;
    }
    struct dnsq_rrset s;
    enum dnsq_rc rc = dcheck_ask(c, DNSQ_TXT, name, &s);
    const char *rec = rc == DNSQ_OK ? find_record(&s) : NULL;
    if (rc == DNSQ_SERVFAIL) {
        dcheck_report(c, DCHECK_DKIM, DCHECK_FAIL, "check the domain's name servers",
                      "TXT lookup for %s failed (server failure or timeout)", name);
    } else if (!rec) {
        dcheck_report(c, DCHECK_DKIM, DCHECK_FAIL, fix.data,
                      "no DKIM record at %s: receivers cannot verify herald's signatures", name);
    } else if (compare_record(c, dk, name, rec, want.data, fix.data)) {
        if (c->n_dkim_ok < DCHECK_MAX_DKIM) c->dkim_ok[c->n_dkim_ok++] = d;
        dcheck_report(c, DCHECK_DKIM, DCHECK_PASS, NULL, "%s matches %s (%s)", name, dk->key,
                      dk->algorithm);
    }
    dnsq_rrset_clear(&s);
out:
    hbuf_free(&want);
    hbuf_free(&fix);
}

/* herald signs every message of the tenant with every key (dual signing),
 * d= the key's domain or the From domain, so each is checked where its
 * record lives; DMARC then decides which of them align. */
void dcheck_dkim(struct dcheck_state *c)
{
    const struct cfg_tenant *t = c->tenant;
    for (size_t i = 0; t && i < t->n_dkim; i++)
        check_key(c, &t->dkim[i]);
    if (!t || t->n_dkim == 0)
        dcheck_report(c, DCHECK_DKIM, DCHECK_WARN,
                      "configure tenants.<name>.dkim {selector, key} and publish the record "
                      "check-domain then prints",
                      "%s: herald does not sign mail for %s (no DKIM key configured)",
                      t ? t->name : "no tenant", c->domain);
}
