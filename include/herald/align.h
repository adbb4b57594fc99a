/* align: can herald make a tenant's From domain pass DMARC, and what to do
 * with a message when it cannot (tenants.*.from_fallback).
 *
 * A From domain aligns when the tenant has a DKIM key (herald signs with
 * d= the From domain) or when SPF passes for every egress IP of the
 * tenant's pool (the envelope sender is the From address). The SPF half
 * needs DNS: the table is evaluated on the engine's main thread before the
 * workers start and again every sender.spf_recheck; workers only read it
 * (atomics), so deciding a message costs no I/O and no lock. */
#ifndef HERALD_ALIGN_H
#define HERALD_ALIGN_H

#include <stdbool.h>
#include <stdint.h>

#include "herald/config.h"
#include "herald/dnsq.h"
#include "herald/job.h"
#include "herald/spf.h"

enum align_outcome {
    ALIGN_DKIM = 0,        /* "aligned-dkim" */
    ALIGN_SPF,             /* "aligned-spf" */
    ALIGN_REWRITTEN,       /* "rewritten": From is sender.address, tenant address in Reply-To */
    ALIGN_SENT_UNCHECKED,  /* "sent-unchecked": from_fallback send and no DKIM key; SPF is not
                              looked up, the message goes as is */
    ALIGN_REFUSED,         /* "refused": from_fallback refuse -> rejected, unaligned-from */
    ALIGN_OUTCOME_COUNT
};

const char *align_outcome_name(enum align_outcome o);

struct align_table;

/* One entry per tenant x domain. 0 or -ENOMEM. */
int align_table_new(const struct config *cfg, struct align_table **out);
void align_table_free(struct align_table *t);
/* Whether any entry needs SPF (a tenant without DKIM whose from_fallback is
 * rewrite or refuse, with egress IPs): if not, refresh makes no lookups. */
bool align_table_needs_dns(const struct align_table *t);
/* Evaluate SPF for the entries that need it. Blocking DNS: main thread
 * only. A temperror keeps the last answer (unaligned at start). Returns
 * the delay in ms until the next refresh is due. */
int64_t align_table_refresh(struct align_table *t, dnsq_lookup_fn lookup, void *ctx);

/* Decide for one parsed job of `tenant` (worker threads; no I/O). For
 * ALIGN_REWRITTEN it points j->from at sender.address, keeps the display
 * name and moves the tenant's address into Reply-To unless one is set. */
enum align_outcome align_decide(const struct align_table *t, const struct cfg_tenant *tenant,
                                struct job *j);

/* ---- the pieces shared with `herald check-domain` (herald/domaincheck.h) ---- */

/* The organisational domain of `domain` (RFC 7489 3.2): the registrable
 * domain under the Public Suffix List, "clinic.co.uk" for
 * "mail.clinic.co.uk". Returns a pointer into domain (always a suffix of
 * it); domain itself when it is a public suffix, a single label or too
 * long. Case-insensitive, no trailing dot. The list is libpsl's view of
 * the system file (/usr/share/publicsuffix, kept current by the
 * `publicsuffix` package) or its built-in copy, whichever is newer, loaded
 * once; safe on any thread. */
const char *align_org_domain(const char *domain);

/* DMARC identifier alignment of id_domain (a DKIM d= or the envelope
 * domain) with the From domain: strict = equal, relaxed = the same
 * organisational domain. */
bool align_is_aligned(const char *from_domain, const char *id_domain, bool strict);

/* The d= herald signs with when key d signs mail From from_domain. */
const char *align_dkim_domain(const struct cfg_dkim *d, const char *from_domain);

/* Whether one of the tenant's keys signs from_domain with d= exactly that
 * domain: what align_decide counts as aligned-dkim (it does not know the
 * receiver's adkim=, so it trusts only the alignment that holds in both). */
bool align_signs_for(const struct cfg_tenant *t, const char *from_domain);

/* The envelope sender SPF is evaluated for, mail From `domain`: the
 * tenant's From address when it is in domain, else postmaster@domain (the
 * local part only matters to %{l} macros). t may be NULL. */
void align_envelope_sender(const struct cfg_tenant *t, const char *domain, char *out,
                           size_t outlen);

/* Called once per egress IP with its SPF verdict. */
typedef void (*align_spf_fn)(void *arg, const char *ip, int family, const struct spf_verdict *v);

/* Evaluate SPF of `domain` for `sender` from each IP of pool (unparsable
 * entries are skipped; the config loader refuses them anyway), EHLO the
 * pool's. Blocking when lookup is. Returns the number of IPs evaluated, or
 * -ENOMEM (fn may have run for the IPs before). */
int align_spf_pool(const struct config *cfg, const struct cfg_egress_pool *pool,
                   const char *domain, const char *sender, dnsq_lookup_fn lookup, void *ctx,
                   align_spf_fn fn, void *arg);

#endif
