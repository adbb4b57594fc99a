/* Internal to the engine: what a delivery attempt's result means for the
 * job. The decisions are pure functions of the result, the job's clock
 * fields, the config, `now` and an rng state, so tests can drive them
 * without a server or a clock; outcome_apply turns a decision into the
 * note and the next step. */
#ifndef HERALD_ENGINE_OUTCOME_H
#define HERALD_ENGINE_OUTCOME_H

#include <stdbool.h>
#include <stdint.h>

#include "herald/config.h"
#include "herald/pool.h"
#include "herald/smtp.h"

enum outcome_kind {
    OC_DELIVERED, /* 250: terminal `delivered` */
    OC_BOUNCED,   /* 5xx, or a permanent routing failure: terminal `bounced` */
    OC_FAILOVER,  /* the exchanger never took part: try the next address first */
    OC_RETRY,     /* 4xx or a network fault: `deferred`, back at due_ms */
    OC_EXPIRED,   /* the next attempt would fall after expires_at */
    OC_GAVE_UP,   /* the next attempt would pass the tenant's max age: `bounced` */
};

struct outcome_in {
    const struct smtp_result *res;
    const char *category;  /* classify_reply(res) */
    uint32_t attempt;      /* this attempt, 1-based */
    int64_t expires_at_ms; /* 0: none */
    int64_t enqueued_ms;   /* 0: unknown */
    int64_t max_age_ms;    /* the tenant's, else delivery.max_age */
    bool more_targets;     /* another address of the route is left to try */
    bool draining;         /* shutting down: no failover */
};

struct outcome {
    enum outcome_kind kind;
    int64_t due_ms; /* RETRY: the next attempt (wall clock) */
    bool suppress;  /* BOUNCED: the address goes on the tenant's suppression list */
};

/* Next value of a worker's rng (a 64-bit LCG: jitter, not secrets). */
uint64_t outcome_rng_next(uint64_t *rng);
/* When the attempt after `attempt` failures may run: the retry schedule's
 * step for it (its last step repeats; greylisting always takes the first),
 * plus up to 10% jitter so jobs deferred together do not return together. */
int64_t outcome_retry_due(const struct cfg_delivery *dc, uint32_t attempt, bool greylist,
                          int64_t now_ms, uint64_t *rng);
/* Whether a failed result happened before any transaction (connect,
 * banner, EHLO, TLS): such a failure moves on to the next address. */
bool outcome_connection_level(const struct smtp_result *res);
void outcome_decide(const struct cfg_delivery *dc, const struct outcome_in *in, int64_t now_ms,
                    uint64_t *rng, struct outcome *out);

struct delivery;
/* The pool's completion callback (pool_init): res NULL means the message
 * was never attempted (the pool is closing) and the entry stays pending. */
void outcome_pool_done(void *arg, struct smtp_msg *msg, const struct smtp_result *res,
                       const struct pool_conn_info *info);
/* A result produced by herald itself (no route, DNS failure, out of
 * memory, no egress address): decided and noted like a server's. */
void outcome_apply(struct delivery *d, const struct smtp_result *res,
                   const struct pool_conn_info *info);
/* A local temporary failure before any connection: retry later. */
void outcome_local_fail(struct delivery *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
