/* pool: per-worker SMTP connections grouped by destination (egress IP x
 * host:port). Messages queue per destination and are pulled by connections
 * as they become ready, so a connection is reused for as many messages as
 * its limits allow. */
#ifndef HERALD_POOL_H
#define HERALD_POOL_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "herald/ring.h"
#include "herald/smtp.h"
#include "herald/tls.h"

/* Where a message went, for its case note. */
struct pool_conn_info {
    const char *mx;        /* destination host name as routed */
    const char *remote_ip;
    const char *local_ip;
    const char *tls;       /* "none" or "TLSv1.3/..." */
    const char *tls_note;  /* why TLS was not used although wanted (fallback), or NULL */
};

/* Called once per submitted message with its final SMTP result, or with
 * res == NULL when the message was never attempted (pool closing): the owner
 * hands it back untouched. Must not
 * call back into the pool for the same destination synchronously. */
typedef void (*pool_done_fn)(void *arg, struct smtp_msg *msg, const struct smtp_result *res,
                             const struct pool_conn_info *info);

/* A resolved destination: what a route or (later) an MX lookup yields. */
struct pool_target {
    char host[256];
    struct sockaddr_storage sa;
    socklen_t sa_len;
};

struct pool_limits {
    /* Connections open at once, this worker, for the destination and for
     * its whole group: destinations sharing `group` (egress IP x provider)
     * share max_conns, so a provider's limit holds across its MX hosts. */
    uint32_t max_conns;
    const char *group;           /* NULL: the destination is its own group */
    uint32_t max_msgs_per_conn;  /* 0 = unlimited */
    enum smtp_tls_mode tls_mode; /* OFF, TRY (opportunistic), MUST, ACTIVE (implicit TLS) */
    bool tls_verify;             /* chain and host name must verify */
    SSL_CTX *tls_ctx;            /* trust for this destination (a relay's ca_file); NULL: the pool's */
    const struct smtp_auth *auth; /* relay credentials (outlive the pool), or NULL */
    atomic_int *open_counter;     /* counts this destination's open connections, or NULL */
    /* With open_counter: how many connections the whole process (every
     * worker's pool) may have open on it at once, read when a connection
     * is about to open (it may change meanwhile; < 0 counts as 1); a
     * connection opens only after reserving one. NULL: no such cap. */
    const atomic_int *shared_max;
    /* With shared_max: set (monotonic ms) by a pool that has messages and
     * fewer than fair_conns connections of the group because the others
     * hold the process's slots; another pool then gives one back: an idle
     * connection QUITs, or, when that pool holds more than fair_conns, a
     * busy one retires after its message. NULL: none. */
    _Atomic int64_t *slot_wanted_ms;
    uint32_t fair_conns; /* a worker's share when every worker has mail; 0: max_conns */
    int64_t connect_timeout_ms;
    int64_t idle_timeout_ms;
    struct smtp_timeouts smtp;
};

struct pool_dest;
struct pool_group;
struct pool_map_node;
struct pool_map {
    struct pool_map_node **b;
    size_t nb, n; /* buckets (a power of two), nodes */
};

/* A destination with nothing queued and no connection is freed after this
 * long (it is made again, at the cost of one allocation, when mail for it
 * comes back). */
#define POOL_DEST_IDLE_MS (60 * 1000)

struct pool {
    struct ring *ring;
    pool_done_fn done;
    void *done_arg;
    struct pool_map dests;  /* struct pool_dest by key (src/pool/dest.c) */
    struct pool_map groups; /* struct pool_group by key */
    size_t n_dests;
    size_t n_evicted;       /* destinations freed after being idle dest_idle_ms */
    int64_t dest_idle_ms;   /* default POOL_DEST_IDLE_MS */
    struct pool_dest *idle_head, *idle_tail; /* idle destinations, oldest first */
    struct pool_dest *starved; /* waiting for a process-wide slot (pool_tick) */
    struct pool_conn *idle_conns; /* connections with nothing to do, newest first */
    uint32_t n_conns;     /* open or connecting, all destinations */
    bool closing;
    SSL_CTX *tls_ctx;     /* NULL: TLS unavailable, every destination is plaintext */
    struct tls_session_cache tls_cache;
    int64_t tls_fallback_ms; /* how long a host whose handshake failed is tried without TLS */
};

int pool_init(struct pool *p, struct ring *r, pool_done_fn done, void *done_arg);
/* TLS for the pool's connections (ctx stays owned by the caller). */
void pool_set_tls(struct pool *p, SSL_CTX *ctx);
/* Queue msg for target from egress_ip ("" = no bind) with ehlo_name. */
int pool_submit(struct pool *p, const struct pool_target *target, const char *egress_ip,
                const char *ehlo_name, const struct pool_limits *lim, struct smtp_msg *msg);
/* Stop: QUIT idle connections now, and others as they become idle; queued
 * messages that have not started are handed back (done with res == NULL). */
void pool_close_all(struct pool *p);
/* Stop now: close every connection, whatever it is doing (a peer that
 * stalls mid-greeting must not outlive the drain); messages on them end
 * with a network failure, queued ones are handed back. */
void pool_abort_all(struct pool *p);
/* Periodically (the owner's tick): destinations with messages waiting for
 * a connection try again, for a process-wide slot another worker's pool
 * has given back. */
void pool_tick(struct pool *p);
/* Messages waiting in this pool for a connection of the group (egress IP x
 * pool_limits.group), the group's open connections, and how long the
 * oldest of those messages has waited (0 when none waits; NULL: not
 * wanted). */
void pool_group_backlog(const struct pool *p, const char *egress_ip, const char *group,
                        size_t *queued, uint32_t *conns, int64_t *oldest_wait_ms);
/* Congested destinations give mail back. For each destination with
 * messages waiting for a connection, `ask` says how many of the newest to
 * take off its queue (the caller's shaping decision, from the backlog,
 * the oldest one's wait and the limits), and `take` gets each of them
 * (the caller parks it). */
struct pool_backlog {
    size_t queued;
    int64_t oldest_wait_ms;
    uint32_t conns, max_conns;
};
typedef size_t (*pool_shed_ask)(void *arg, const struct pool_backlog *b);
typedef void (*pool_shed_take)(void *arg, struct smtp_msg *m, const struct pool_backlog *b);
void pool_shed(struct pool *p, pool_shed_ask ask, pool_shed_take take, void *arg);
/* True once no connection is open or in flight (safe to free). */
bool pool_is_quiet(const struct pool *p);
void pool_free(struct pool *p);

#endif
