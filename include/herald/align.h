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

#endif
