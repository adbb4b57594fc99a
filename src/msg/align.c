/* From alignment: a table of (tenant, domain) -> "SPF passes for all egress
 * IPs", written by the main thread, read by workers with relaxed atomics
 * (a message decided on a just-stale answer is harmless: the next refresh
 * is minutes away anyway), and the per-message decision. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
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

/* A DKIM key whose d= is this From domain: one without `domain` signs as
 * the From domain, one with it only for that domain. */
static bool signs_for(const struct cfg_tenant *tn, const char *from_domain)
{
    for (size_t i = 0; i < tn->n_dkim; i++)
        if (!tn->dkim[i].domain || strcasecmp(tn->dkim[i].domain, from_domain) == 0)
            return true;
    return false;
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
            e->check = !signs_for(tn, e->domain) && tn->from_fallback != CFG_FROM_SEND &&
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

/* SPF for every egress IP: 1 all pass, 0 some do not, -1 could not tell. */
static int spf_all_pass(const struct align_table *t, const struct align_entry *e,
                        dnsq_lookup_fn lookup, void *ctx)
{
    const struct cfg_egress_pool *pool = pool_of(t->cfg, e->tenant);
    const char *at = strrchr(e->tenant->from, '@');
    char sender[320];
    if (at && strcasecmp(at + 1, e->domain) == 0)
        snprintf(sender, sizeof sender, "%s", e->tenant->from);
    else
        snprintf(sender, sizeof sender, "postmaster@%s", e->domain);
    int verdict = 1;
    for (size_t i = 0; i < pool->ips.n; i++) {
        struct spf_request rq = {.domain = e->domain,
                                 .sender = sender,
                                 .helo = pool->ehlo,
                                 .lookup = lookup,
                                 .ctx = ctx};
        const char *ip = pool->ips.items[i];
        if (inet_pton(AF_INET, ip, rq.ip) == 1) rq.family = AF_INET;
        else if (inet_pton(AF_INET6, ip, rq.ip) == 1) rq.family = AF_INET6;
        else continue;
        struct spf_verdict v;
        if (spf_check_host(&rq, &v) < 0) return -1;
        char why[400];
        log_event(v.result == SPF_PASS ? LOG_DEBUG : LOG_INFO,
                  "event=spf_checked tenant=%s domain=%s ip=%s result=%s why=\"%s\"",
                  e->tenant->name, e->domain, ip, spf_result_name(v.result),
                  log_quote(why, sizeof why, v.explanation, strlen(v.explanation)));
        if (v.result == SPF_TEMPERROR) verdict = verdict == 1 ? -1 : verdict;
        else if (v.result != SPF_PASS) verdict = 0;
    }
    return verdict;
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

enum align_outcome align_decide(const struct align_table *t, const struct cfg_tenant *tenant,
                                struct job *j)
{
    const char *domain = domain_of(j->from);
    if (signs_for(tenant, domain)) return ALIGN_DKIM;
    if (tenant->from_fallback == CFG_FROM_SEND) return ALIGN_SENT_UNCHECKED;
    size_t ti = (size_t)(tenant - t->cfg->tenants);
    if (ti < t->cfg->n_tenants)
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
    return ALIGN_REWRITTEN;
}
