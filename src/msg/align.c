/* From alignment: a table of (tenant, domain) -> "SPF passes for all egress
 * IPs", written by the main thread, read by workers with relaxed atomics
 * (a message decided on a just-stale answer is harmless: the next refresh
 * is minutes away anyway), and the per-message decision. Also the DMARC
 * vocabulary `herald check-domain` shares with it: organisational domain,
 * identifier alignment, the d= and envelope sender herald uses, SPF per
 * egress IP — so the CLI and the engine cannot disagree about them. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <libpsl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "herald/align.h"
#include "herald/core.h"
#include "herald/spf.h"

#define RETRY_AFTER_TEMPERROR_MS 60000

static const char *const outcome_names[ALIGN_OUTCOME_COUNT] = {
    "aligned-dkim", "aligned-spf", "rewritten", "sent-unchecked", "refused",
};

const char *align_outcome_name(enum align_outcome o)
{
    return (unsigned)o < ALIGN_OUTCOME_COUNT ? outcome_names[o] : "?";
}

struct align_entry {
    const struct cfg_tenant *tenant;
    const char *domain;
    bool check; /* SPF matters for this entry */
    atomic_bool spf_pass;
};

struct align_table {
    const struct config *cfg;
    size_t n;
    struct align_entry *e;
    size_t *first; /* per tenant index: its first entry */
};

static const struct cfg_egress_pool *pool_of(const struct config *cfg, const struct cfg_tenant *t)
{
    return config_egress(cfg, t->egress);
}

/* ---- organisational domains (libpsl) ---- */

static const psl_ctx_t *psl;
static pthread_once_t psl_once = PTHREAD_ONCE_INIT;

/* Loaded once and kept for the life of the process: the list is immutable
 * and every lookup after the first is a read. psl_latest(NULL) reads the
 * distribution's file and keeps the built-in list when that is newer or
 * the file is missing. */
static void psl_load(void)
{
    psl = psl_latest(NULL);
    if (!psl) psl = psl_builtin();
}

const char *align_org_domain(const char *domain)
{
    char low[256];
    size_t n = strlen(domain);
    if (n == 0 || n >= sizeof low) return domain;
    for (size_t i = 0; i <= n; i++) low[i] = (char)tolower((unsigned char)domain[i]);
    pthread_once(&psl_once, psl_load);
    const char *reg = psl ? psl_registrable_domain(psl, low) : NULL;
    /* NULL: domain is itself a public suffix (or the list is unusable);
     * then it is its own organisational domain. */
    return reg ? domain + (reg - low) : domain;
}

bool align_is_aligned(const char *from_domain, const char *id_domain, bool strict)
{
    if (strcasecmp(from_domain, id_domain) == 0) return true;
    return !strict && strcasecmp(align_org_domain(from_domain), align_org_domain(id_domain)) == 0;
}

const char *align_dkim_domain(const struct cfg_dkim *d, const char *from_domain)
{
    return d->domain ? d->domain : from_domain;
}

bool align_signs_for(const struct cfg_tenant *t, const char *from_domain)
{
    for (size_t i = 0; t && i < t->n_dkim; i++)
        if (strcasecmp(align_dkim_domain(&t->dkim[i], from_domain), from_domain) == 0)
            return true;
    return false;
}

void align_envelope_sender(const struct cfg_tenant *t, const char *domain, char *out,
                           size_t outlen)
{
    const char *at = t && t->from ? strrchr(t->from, '@') : NULL;
    if (at && strcasecmp(at + 1, domain) == 0)
        snprintf(out, outlen, "%s", t->from);
    else
        snprintf(out, outlen, "postmaster@%s", domain);
}

int align_spf_pool(const struct config *cfg, const struct cfg_egress_pool *pool,
                   const char *domain, const char *sender, dnsq_lookup_fn lookup, void *ctx,
                   align_spf_fn fn, void *arg)
{
    int n = 0;
    for (size_t i = 0; pool && i < pool->ips.n; i++) {
        struct spf_request rq = {.domain = domain, .sender = sender,
                                 .helo = config_egress_ehlo(cfg, pool),
                                 .lookup = lookup, .ctx = ctx};
        const char *ip = pool->ips.items[i];
        if (inet_pton(AF_INET, ip, rq.ip) == 1) rq.family = AF_INET;
        else if (inet_pton(AF_INET6, ip, rq.ip) == 1) rq.family = AF_INET6;
        else continue;
        struct spf_verdict v;
        int rc = spf_check_host(&rq, &v);
        if (rc < 0) return rc;
        fn(arg, ip, rq.family, &v);
        n++;
    }
    return n;
}

int align_table_new(const struct config *cfg, struct align_table **out)
{
    *out = NULL;
    struct align_table *t = calloc(1, sizeof *t);
    if (!t) return -ENOMEM;
    t->cfg = cfg;
    for (size_t i = 0; i < cfg->n_tenants; i++) t->n += cfg->tenants[i].domains.n;
    t->e = calloc(t->n ? t->n : 1, sizeof *t->e);
    t->first = calloc(cfg->n_tenants ? cfg->n_tenants : 1, sizeof *t->first);
    if (!t->e || !t->first) {
        align_table_free(t);
        return -ENOMEM;
    }
    size_t k = 0;
    for (size_t i = 0; i < cfg->n_tenants; i++) {
        const struct cfg_tenant *tn = &cfg->tenants[i];
        const struct cfg_egress_pool *pool = pool_of(cfg, tn);
        t->first[i] = k;
        for (size_t d = 0; d < tn->domains.n; d++, k++) {
            struct align_entry *e = &t->e[k];
            e->tenant = tn;
            e->domain = tn->domains.items[d];
            /* Lookups only where the answer changes what herald does. */
            e->check = !align_signs_for(tn, e->domain) && tn->from_fallback != CFG_FROM_SEND &&
                       pool && pool->ips.n > 0;
            atomic_init(&e->spf_pass, false);
        }
    }
    *out = t;
    return 0;
}

void align_table_free(struct align_table *t)
{
    if (!t) return;
    free(t->e);
    free(t->first);
    free(t);
}

bool align_table_needs_dns(const struct align_table *t)
{
    for (size_t i = 0; i < t->n; i++)
        if (t->e[i].check) return true;
    return false;
}

struct spf_tally {
    const struct align_entry *e;
    int verdict; /* 1 all pass, 0 some do not, -1 could not tell */
};

static void tally_ip(void *arg, const char *ip, int family, const struct spf_verdict *v)
{
    (void)family;
    struct spf_tally *t = arg;
    log_event(v->result == SPF_PASS ? LOG_DEBUG : LOG_INFO,
              "event=spf_checked tenant=%s domain=%s ip=%s result=%s why=%s", t->e->tenant->name,
              t->e->domain, ip, spf_result_name(v->result), LOG_VALUE(v->explanation));
    if (v->result == SPF_TEMPERROR) t->verdict = t->verdict == 1 ? -1 : t->verdict;
    else if (v->result != SPF_PASS) t->verdict = 0;
}

/* SPF for every egress IP: 1 all pass, 0 some do not, -1 could not tell. */
static int spf_all_pass(const struct align_table *t, const struct align_entry *e,
                        dnsq_lookup_fn lookup, void *ctx)
{
    char sender[320];
    align_envelope_sender(e->tenant, e->domain, sender, sizeof sender);
    struct spf_tally tally = {.e = e, .verdict = 1};
    if (align_spf_pool(t->cfg, pool_of(t->cfg, e->tenant), e->domain, sender, lookup, ctx,
                       tally_ip, &tally) < 0)
        return -1;
    return tally.verdict;
}

int64_t align_table_refresh(struct align_table *t, dnsq_lookup_fn lookup, void *ctx)
{
    int64_t next = t->cfg->sender.spf_recheck_ms;
    for (size_t i = 0; i < t->n; i++) {
        struct align_entry *e = &t->e[i];
        if (!e->check) continue;
        int r = spf_all_pass(t, e, lookup, ctx);
        bool before = atomic_load_explicit(&e->spf_pass, memory_order_relaxed);
        if (r < 0) {
            if (next > RETRY_AFTER_TEMPERROR_MS) next = RETRY_AFTER_TEMPERROR_MS;
        } else {
            atomic_store_explicit(&e->spf_pass, r == 1, memory_order_relaxed);
        }
        bool now = r < 0 ? before : r == 1;
        log_event(LOG_INFO, "event=alignment tenant=%s domain=%s spf=%s aligned=%s fallback=%s",
                  e->tenant->name, e->domain, r < 0 ? "temperror" : r ? "pass" : "fail",
                  now ? "spf" : "no", config_from_fallback_name(e->tenant->from_fallback));
    }
    return next;
}

static const char *domain_of(const char *addr)
{
    const char *at = addr ? strrchr(addr, '@') : NULL;
    return at ? at + 1 : "";
}

static bool same_or_below(const char *sub, const char *domain)
{
    size_t ls = strlen(sub), ld = strlen(domain);
    return ls >= ld && strcasecmp(sub + ls - ld, domain) == 0 &&
           (ls == ld || sub[ls - ld - 1] == '.');
}

enum align_outcome align_decide(const struct align_table *t, const struct cfg_tenant *tenant,
                                struct job *j)
{
    const char *domain = job_header_from_domain(j);
    if (align_signs_for(tenant, domain)) return ALIGN_DKIM;
    if (tenant->from_fallback == CFG_FROM_SEND) return ALIGN_SENT_UNCHECKED;
    size_t ti = (size_t)(tenant - t->cfg->tenants);
    /* With a return_path the envelope is the platform's domain: SPF
     * aligns only when that is the From domain or below it (relaxed). */
    bool spf_here = !tenant->return_path || same_or_below(tenant->return_path, domain);
    if (ti < t->cfg->n_tenants && spf_here)
        for (size_t d = 0; d < tenant->domains.n; d++) {
            const struct align_entry *e = &t->e[t->first[ti] + d];
            if (strcasecmp(e->domain, domain) == 0 &&
                atomic_load_explicit(&e->spf_pass, memory_order_relaxed))
                return ALIGN_SPF;
        }
    if (tenant->from_fallback == CFG_FROM_REFUSE) return ALIGN_REFUSED;
    /* Rewrite: the tenant's address stays reachable through Reply-To. */
    if (!j->reply_to) j->reply_to = j->from;
    j->from = t->cfg->sender.address;
    j->from_rewritten = true;
    /* A raw message's From field is rewritten when it is built (build.c). */
    if (j->kind == JOB_KIND_RAW) j->header_from_domain = domain_of(j->from);
    return ALIGN_REWRITTEN;
}
