/* Shared by the files of src/domain/: one run's state and the helpers each
 * check uses. Not a public interface (see herald/domaincheck.h). */
#ifndef HERALD_DOMAIN_DCHECK_H
#define HERALD_DOMAIN_DCHECK_H

#include <stdbool.h>
#include <stddef.h>

#include "herald/domaincheck.h"

#define DCHECK_MAX_DKIM 8 /* the config loader's limit on signatures per tenant */

struct dcheck_state {
    const struct dcheck_request *rq;
    const struct config *cfg;
    const struct cfg_tenant *tenant;
    const struct cfg_egress_pool *pool;
    const char *domain;     /* From */
    const char *env_domain; /* envelope */
    const char *ehlo;
    struct dcheck_result *res;
    int err; /* first -ENOMEM; later reports are dropped */
    /* What the earlier checks found, for DMARC. */
    bool spf_all_pass;
    const char *dkim_ok[DCHECK_MAX_DKIM]; /* d= of each key whose record matches */
    size_t n_dkim_ok;
};

void dcheck_report(struct dcheck_state *c, enum dcheck_kind kind, enum dcheck_verdict v,
                   const char *fix, const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* One question; out is initialised here and must be cleared by the caller. */
enum dnsq_rc dcheck_ask(struct dcheck_state *c, enum dnsq_type t, const char *name,
                        struct dnsq_rrset *out);

/* Whether name has an A or AAAA record; with want, whether one of them is
 * want (of want_family). first, when given, gets the first address. */
bool dcheck_resolves(struct dcheck_state *c, const char *name, int want_family,
                     const unsigned char *want, char *first, size_t first_len);

/* The value of tag `name` in a "k=v; k=v" record (DKIM, DMARC), whitespace
 * removed, truncated to outlen - 1. */
bool dcheck_tag(const char *rec, const char *name, char *out, size_t outlen);

int dcheck_parse_ip(const char *s, int *family, unsigned char *ip);

void dcheck_mx(struct dcheck_state *c);
void dcheck_spf(struct dcheck_state *c);
void dcheck_dkim(struct dcheck_state *c);
void dcheck_dmarc(struct dcheck_state *c);
void dcheck_egress(struct dcheck_state *c);

#endif
