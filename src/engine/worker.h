/* Internal to the engine: one worker thread's state. */
#ifndef HERALD_ENGINE_WORKER_H
#define HERALD_ENGINE_WORKER_H

#include <pthread.h>
#include <stdatomic.h>

#include "herald/align.h"
#include "herald/config.h"
#include "herald/dns.h"
#include "herald/feedback.h"
#include "herald/throttle.h"
#include "herald/job.h"
#include "herald/keys.h"
#include "herald/pool.h"
#include "herald/redis.h"
#include "herald/ring.h"
#include "delivery.h"
#include "stats.h"
#include "suspend.h"

struct engine_route {
    const struct cfg_route *route;
    struct pool_target target;
    const struct cfg_provider *provider;
};

/* A tenant's own SMTP server: its secret read at load; its host is
 * resolved by each worker's resolver when a message goes (route.c). */
struct engine_relay {
    bool configured;
    char host[256];
    uint16_t port;
    enum smtp_tls_mode tls_mode;
    bool verify;      /* false only with insecure_skip_verify */
    SSL_CTX *tls_ctx; /* relay.ca_file's, owned here; NULL: the shared one */
    struct smtp_auth auth; /* points into user/pass */
    char user[256];
    char pass[512];
};

/* One loaded config and what was resolved from it. SIGHUP publishes a new
 * generation; workers switch at their next tick. A generation is counted
 * by every worker that runs on it and every delivery read under it (their
 * paths point into its config); the main thread frees one that is no
 * longer current once its count is zero (engine_gen_sweep). */
struct engine_gen {
    struct config *cfg;
    struct engine_route *routes;
    size_t n_routes;
    struct engine_relay *relays; /* one per cfg->tenants entry, same index */
    struct align_table *align;   /* From alignment per tenant domain (main thread writes) */
    unsigned number;             /* 1 at start, +1 per applied reload */
    struct fb_keys verp;         /* from inbound.secret_file: signs VERP return paths */
    bool verp_ok;
    atomic_uint refs;            /* workers and deliveries using it */
    struct engine_gen *prev;
};

/* Shared, read-only after start (except the atomics). */
struct engine_shared {
    _Atomic(struct engine_gen *) gen;
    struct redis_addr redis;
    SSL_CTX *tls_ctx;             /* client TLS for SMTP */
    SSL_CTX *redis_tls_ctx;       /* rediss:// only */
    struct throttle_table *throttle; /* per egress IP x provider, shared by the workers */
    unsigned n_workers;
    char sha_terminal[41], sha_defer[41], sha_mover[41], sha_admit[41], sha_cancel[41];
    char sha_lease[41];
    struct keys keys;      /* the Redis key schema for redis.prefix */
    struct fb_keys unsub_keys; /* from unsubscribe.secret_file, read once at start */
    bool unsub_keys_loaded;
    atomic_bool stop;
    atomic_int failed;
    /* No worker claims (XAUTOCLAIM) before this (monotonic ms): Redis
     * refused writes or went away, so no claim was refreshed meanwhile and
     * every entry in flight looks idle, including the ones another worker
     * of this process is about to write the note of. */
    _Atomic int64_t claims_held_until_ms;
    struct worker *workers;       /* all of them, for the metrics thread (engine.c) */
    unsigned n_started;           /* how many run */
    atomic_int last_reload;       /* -1 none yet, 0 refused, 1 applied */
    struct susp_shared susp;      /* operator suspensions, published by worker 0 */
    _Atomic int64_t last_reload_wall_ms;
    struct engine_stats stats;
    struct dnsq_sync *align_dns;  /* main thread: SPF lookups for alignment */
    int64_t next_align_ms;        /* main thread: next alignment refresh (0 never) */
    int64_t started_wall_ms;
    pthread_mutex_t gen_lock;     /* taking a reference to the current generation vs freeing old ones */
};

/* A counted reference to the current generation (any thread), and its
 * release. */
struct engine_gen *engine_gen_acquire(struct engine_shared *sh);
static inline void engine_gen_release(struct engine_gen *g)
{
    if (g)
        atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel);
}

struct delivery;
struct status_state;
struct hold_queue;

struct worker {
    unsigned idx;
    pthread_t thread;
    struct engine_shared *sh;
    const struct config *cfg; /* gen->cfg */
    struct engine_gen *gen;   /* the generation this worker runs on */
    struct ring ring;
    struct redis_client intake, notes;
    struct pool pool;
    struct dns_resolver *dns; /* NULL when it could not be set up (static routes still work) */
    bool dns_closing;
    char consumer[160];
    struct delivery *held; /* every job this worker holds, until its note is written */
    struct delivery *unwritten; /* notes waiting for the notes connection to come back */
    /* Admissions asked for since the last admit_flush, in order (linked by
     * admit_next), and the buffer their one script call is built in. */
    struct delivery *admit_head, *admit_tail;
    unsigned n_admit;
    struct hbuf admit_cmd;
    int64_t notes_resend_ms;    /* re-send parked notes then (a transient Redis error); 0 none */
    struct delivery *reap;      /* left through delivery_exit; freed by delivery_reap */
    struct delivery *free_deliveries; /* the typed pool's free list */
    uint32_t n_free_deliveries;
    uint32_t inflight;
    bool ring_live;
    bool group_ready, reading, pel_done, draining;
    atomic_bool done; /* read by the main thread */
    char pel_cursor[48];
    char claim_cursor[48];
    struct ring_timer tick;
    int64_t intake_retry_at, notes_retry_at, intake_backoff_ms, notes_backoff_ms;
    int64_t next_claim_ms, next_refresh_ms, next_mover_ms, drain_deadline_ms;
    int64_t next_trim_ms, next_forget_ms; /* worker 0: housekeep.c */
    /* Read by the metrics thread: deliveries per state (written by this
     * worker only), and whether its Redis connections are up. */
    _Atomic int64_t n_in_state[DS_COUNT];
    struct susp_table susp; /* this worker's copy of sh->susp */
    unsigned susp_gen;
    int64_t next_susp_ms;   /* worker 0: next read of the suspend hash */
    atomic_bool intake_up, notes_up;
    bool claiming, moving;
    bool pool_aborted;      /* drain: busy connections closed outright */
    bool recall_wanted;     /* worker 0: a factor rose; recall throttled jobs */
    int64_t next_recall_ms;
    /* A recall walks the retry set in chunks (gate.c): where it is. */
    bool recall_busy, recall_again;
    int64_t recall_now_ms;  /* wall ms the walk started: its range is (now, +inf] */
    long long recall_offset, recall_total;
    uint32_t small_reads; /* after a reply over max_reply_bytes: read one entry at a time */
    uint32_t egress_rr;
    uint64_t rng; /* retry jitter; seeded per worker */
    uint64_t n_events[8]; /* notes written, by enum note_event (notes.h) */
    struct status_state *status; /* worker 0: what `herald status` reads */
    struct hold_queue *queues;   /* messages waiting for a throttle pair's slots */
    /* Tenant-rate slots taken from Redis in blocks (a lease of ~100 ms of
     * the rate) and spent here, so a tenant rate costs Redis one update
     * per block instead of one per message. */
    struct tenant_lease {
        char tenant[72];
        uint32_t left;
        int64_t until_ms; /* ring clock; unused slots lapse */
        bool pending;     /* a block is being asked for */
    } leases[32];
    unsigned n_leases;
};

int worker_init(struct worker *w, unsigned idx, struct engine_shared *sh);
/* Redis refused a write for now or went away: hold every worker's claims
 * until `for_ms` from now (kept if already later). */
void worker_hold_claims(struct worker *w, int64_t for_ms);
/* After a transient refusal (notes_transient_error) seen anywhere: long
 * enough for the claims to be refreshed and the parked notes re-sent. */
#define WORKER_CLAIM_HOLD_MS(cfg) ((cfg)->engine.claim_idle_ms + 2 * NOTES_RESEND_MS)
void *worker_main(void *arg);
void worker_free(struct worker *w);

#endif
