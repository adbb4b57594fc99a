/* dcheck: what receivers check about a sending domain, as `herald
 * check-domain` reports it — MX, SPF for each egress IP of the tenant's
 * pool, the tenant's DKIM records against the keys herald signs with,
 * DMARC (found at the domain or its organisational domain under the
 * Public Suffix List) and whether herald's mail aligns under the record's
 * adkim=/aspf=, PTR/FCrDNS and DNSBL listings of the egress IPs.
 *
 * The checks only ask DNS, through a dnsq_lookup_fn, and return results;
 * they print nothing, so the CLI decides the format and tests drive them
 * with an in-memory table. Blocking when the lookup blocks: CLI and tests
 * only, never a worker thread. */
#ifndef HERALD_DOMAINCHECK_H
#define HERALD_DOMAINCHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "herald/config.h"
#include "herald/dnsq.h"

enum dcheck_verdict { DCHECK_PASS = 0, DCHECK_WARN, DCHECK_FAIL, DCHECK_VERDICT_COUNT };

/* In the order dcheck_run reports them; ptr and dnsbl once per egress IP. */
enum dcheck_kind {
    DCHECK_MX = 0,
    DCHECK_SPF,
    DCHECK_DKIM, /* once per key the tenant signs with */
    DCHECK_DMARC,
    DCHECK_PTR,
    DCHECK_DNSBL, /* only with dnsbl: zones configured */
    DCHECK_KIND_COUNT
};

const char *dcheck_verdict_name(enum dcheck_verdict v); /* "PASS" "WARN" "FAIL" */
const char *dcheck_kind_name(enum dcheck_kind k);       /* "mx" "spf" ... */

/* One check's outcome. reason is one line; fix, when something is wrong,
 * what to change — often the exact DNS record, lines separated by '\n'. */
struct dcheck_item {
    enum dcheck_kind kind;
    enum dcheck_verdict verdict;
    char *reason;
    char *fix; /* NULL when there is nothing to fix */
};

struct dcheck_result {
    struct dcheck_item *items;
    size_t n, cap;
    size_t n_fail, n_warn;
    /* What the DMARC evaluation found, for callers that want more than
     * the text: where the record was ("" when none), and through which
     * identifier herald's mail aligns under its adkim=/aspf=. */
    char dmarc_name[300];
    bool aligned_dkim, aligned_spf;
};

struct dcheck_request {
    const struct config *cfg;
    const struct cfg_tenant *tenant; /* NULL: no tenant (default pool, no DKIM) */
    const char *domain;              /* the From domain: lower case, no final dot */
    /* The envelope (MAIL FROM) domain. NULL: the From domain, which is what
     * herald sends (the envelope sender is the From address, rewritten
     * together with it). Set to ask about another, e.g. a relay that
     * rewrites the envelope; SPF is then evaluated for this domain. */
    const char *envelope_domain;
    dnsq_lookup_fn lookup;
    void *ctx;
};

/* Run every check. out is initialised here; free it with
 * dcheck_result_free whatever the return. 0, or -ENOMEM (the result then
 * holds the checks made until then). */
int dcheck_run(const struct dcheck_request *rq, struct dcheck_result *out);
void dcheck_result_free(struct dcheck_result *r);
/* FAIL if any check failed, else WARN if any warned, else PASS. */
enum dcheck_verdict dcheck_result_verdict(const struct dcheck_result *r);

/* The tenant that lists domain among its domains (case-insensitive), NULL
 * when none does. */
const struct cfg_tenant *dcheck_tenant_for(const struct config *cfg, const char *domain);

#endif
