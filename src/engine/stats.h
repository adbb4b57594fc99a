/* Internal to the engine: process-wide counters the workers bump as notes
 * are written, read by the status publisher and the metrics endpoint. All
 * lock-free on the hot path; a row for a new tenant or provider is added
 * under a mutex once. */
#ifndef HERALD_ENGINE_STATS_H
#define HERALD_ENGINE_STATS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald/inbound.h"

enum stats_event {
    ST_DELIVERED = 0,
    ST_DEFERRED,
    ST_BOUNCED,
    ST_REJECTED,
    ST_EXPIRED,
    ST_SUPPRESSED,
    ST_DUPLICATE,
    ST_CANCELLED,
    ST_EVENTS
};
extern const char *const stats_event_names[ST_EVENTS];
/* -1 for a name that is not an event. */
int stats_event_of(const char *name);

#define STATS_MAX_ROWS 256
#define STATS_LATENCY_BUCKETS 14

struct stats_row {
    _Atomic bool used;
    char name[72];
    _Atomic int64_t in_flight;              /* tenants: jobs held by this process */
    _Atomic uint64_t events[ST_EVENTS];
    _Atomic uint64_t tls, plain;            /* providers: delivered over TLS or not */
    _Atomic uint64_t unsubscribes;          /* tenants: one-click unsubscribes taken */
    _Atomic uint64_t late_bounces, complaints; /* tenants: noted by the inbound listener */
};

struct stats_table {
    pthread_mutex_t lock;
    struct stats_row rows[STATS_MAX_ROWS];
};

struct engine_stats {
    struct stats_table tenants, providers;
    /* enqueue -> delivered latency, cumulative buckets (le seconds) */
    _Atomic uint64_t latency_le[STATS_LATENCY_BUCKETS];
    _Atomic uint64_t latency_count;
    _Atomic uint64_t latency_sum_ms;
    /* refreshed from Redis by worker 0 about once a second (-1 unknown) */
    _Atomic int64_t stream_len, stream_lag, stream_pending, retry_len;
    /* reports the inbound listener took, by what they came to */
    _Atomic uint64_t inbound[INB_OUTCOME_COUNT];
};
extern const double stats_latency_bounds_s[STATS_LATENCY_BUCKETS];

void stats_init(struct engine_stats *s);
void stats_destroy(struct engine_stats *s);
/* The row named `name`, created on first use; when the table is full, a
 * shared row named "other". Never NULL. */
struct stats_row *stats_row(struct stats_table *t, const char *name);
/* The row a job's tenant is counted under: its own when cfg names that
 * tenant, else the one shared row STATS_UNKNOWN_TENANT. Tenant names come
 * from producers; only the config may add rows. */
#define STATS_UNKNOWN_TENANT "-"
struct config;
struct stats_row *stats_tenant_row(struct stats_table *t, const struct config *cfg,
                                   const char *name);
void stats_latency(struct engine_stats *s, int64_t ms);

#endif
