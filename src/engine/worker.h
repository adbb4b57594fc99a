/* Internal to the engine: one worker thread's state. */
#ifndef HERALD_ENGINE_WORKER_H
#define HERALD_ENGINE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>

#include "herald/align.h"
#include "herald/config.h"
#include "herald/dns.h"
#include "herald/throttle.h"
#include "herald/job.h"
#include "herald/pool.h"
#include "herald/redis.h"
#include "herald/ring.h"

struct engine_route {
    const struct cfg_route *route;
    struct pool_target target;
    const struct cfg_provider *provider;
};

/* A tenant's own SMTP server: resolved and its secret read at start. */
struct engine_relay {
    bool configured;
    struct pool_target target;
    enum smtp_tls_mode tls_mode;
    struct smtp_auth auth; /* points into user/pass */
    char user[256];
    char pass[512];
};

/* Shared, read-only after start (except the atomics). */
struct engine_shared {
    const struct config *cfg;
    struct redis_addr redis;
    struct engine_route *routes;
    size_t n_routes;
    struct engine_relay *relays; /* one per cfg->tenants entry, same index */
    SSL_CTX *tls_ctx;             /* client TLS for SMTP */
    SSL_CTX *redis_tls_ctx;       /* rediss:// only */
    struct throttle_table *throttle; /* per egress IP x provider, shared by the workers */
    struct align_table *align;       /* From alignment per tenant domain (main thread writes) */
    unsigned n_workers;
    char sha_terminal[41], sha_defer[41], sha_mover[41], sha_admit[41], sha_cancel[41];
    char retry_key[256];   /* zset of deferred/scheduled jobs */
    char job_key_prefix[256];
    const char *prefix;    /* redis.prefix, for per-tenant keys */
    atomic_bool stop;
    atomic_int failed;
};

struct delivery;

struct worker {
    unsigned idx;
    pthread_t thread;
    struct engine_shared *sh;
    const struct config *cfg;
    struct ring ring;
    struct redis_client intake, notes;
    struct pool pool;
    struct dns_resolver *dns; /* NULL when it could not be set up (static routes still work) */
    bool dns_closing;
    char consumer[160];
    struct delivery *held; /* every job this worker holds, until its note is written */
    struct delivery *unwritten; /* notes waiting for the notes connection to come back */
    uint32_t inflight;
    bool ring_live;
    bool group_ready, reading, pel_done, draining, done;
    char pel_cursor[48];
    char claim_cursor[48];
    struct ring_timer tick;
    int64_t intake_retry_at, notes_retry_at, intake_backoff_ms, notes_backoff_ms;
    int64_t next_claim_ms, next_refresh_ms, next_mover_ms, drain_deadline_ms;
    bool claiming, moving;
    uint32_t small_reads; /* after a reply over max_reply_bytes: read one entry at a time */
    uint32_t egress_rr;
    uint64_t rng; /* retry jitter; seeded per worker */
    uint64_t n_delivered, n_deferred, n_bounced, n_rejected, n_other;
};

int worker_init(struct worker *w, unsigned idx, struct engine_shared *sh);
void *worker_main(void *arg);

#endif
