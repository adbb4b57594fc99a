/* inbound: the listener inside `herald run` for what comes back after the
 * 250 (src/inbound/). SMTP for the return domains only (never an open
 * relay: RCPT must be a valid VERP address or postmaster/abuse/fbl at one
 * of inbound.domains), with limits on size, lines, connections, rate and
 * idle time; each accepted report is parsed (feedback.h), matched to its
 * job by the VERP token or the original Message-ID, and turned into a
 * note: a late hard bounce is `bounced` with `after_delivery`, a
 * complaint `complained`, both putting the address on the tenant's
 * suppression list; auto-replies and anything unrecognised are logged and
 * counted. One thread, a poll loop, a blocking Redis connection. */
#ifndef HERALD_INBOUND_H
#define HERALD_INBOUND_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "herald/config.h"
#include "herald/feedback.h"
#include "herald/keys.h"
#include "herald/redis.h"

struct inbound;

/* What a report came to, for logs and tests. */
enum inbound_outcome {
    INB_NOTED_BOUNCE,    /* a late hard bounce: note and suppression */
    INB_NOTED_COMPLAINT, /* a complaint: note and suppression */
    INB_ALREADY,         /* noted before (a second DSN for the same job) */
    INB_SOFT,            /* a delay or soft failure: logged only */
    INB_AUTOREPLY,       /* an auto-reply: logged only */
    INB_UNMATCHED,       /* no valid token and no known Message-ID */
    INB_UNKNOWN,         /* not a report herald understands */
    INB_FAILED,          /* Redis refused or went away */
    INB_OUTCOME_COUNT
};
const char *inbound_outcome_name(enum inbound_outcome o);

/* Start listening on every inbound.listen address (none: nothing starts,
 * *out NULL). The config is copied; a reload does not change a running
 * listener. 0, or -errno / -HERR_CONFIG with err set. */
/* Told of every report the listener noted for a tenant (the engine's
 * per-tenant counters); any thread-safe function, or NULL. */
typedef void (*inbound_noted_fn)(void *arg, const char *tenant, enum inbound_outcome o);
int inbound_start(const struct config *cfg, const struct redis_addr *redis,
                  const struct fb_keys *keys, const struct keys *K,
                  _Atomic uint64_t *counts /* INB_OUTCOME_COUNT of them, or NULL */,
                  inbound_noted_fn noted, void *noted_arg, struct inbound **out, char *err,
                  size_t errlen);
void inbound_stop(struct inbound *in);

#endif
