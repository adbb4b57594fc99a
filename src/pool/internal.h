/* What the pool's two halves share: pool.c runs connections, dest.c keeps
 * the registry of destinations and groups (lookup, idle eviction, the
 * list of destinations waiting for a process-wide slot). */
#ifndef HERALD_POOL_INTERNAL_H
#define HERALD_POOL_INTERNAL_H

#include <arpa/inet.h>
#include <stdatomic.h>

#include "herald/pool.h"
#include "herald/transport.h"
#include "map.h"

struct pool_conn {
    struct pool *p;
    struct pool_dest *d;
    atomic_int *open_counter; /* the owner's count of open connections, or NULL */
    struct xport x;
    struct smtp_session s;
    bool session_live;        /* connected: s is initialised */
    bool retire;              /* QUIT when idle: over the process's share of the path */
    struct ring_timer timer;
    bool closing, was_ready;
    bool counted_connecting; /* included in d->n_connecting */
    struct smtp_result fail; /* why it ended, when it ended before any message */
    bool has_fail;
    char local_ip[INET6_ADDRSTRLEN];
    char remote_ip[INET6_ADDRSTRLEN];
    struct pool_conn *next;
    char tls_desc[96];
    /* On p->idle_conns while its session is idle (pool_tick may give its
     * process-wide slot to another worker that waits for one). */
    struct pool_conn *idle_prev, *idle_next;
    bool on_idle;
};

/* Destinations that share a connection limit. When a slot frees, every
 * destination of the group with queued messages gets a chance at it. */
struct pool_group {
    struct pool_map_node node; /* in p->groups, by key */
    char *key;
    uint32_t n_conns;
    uint32_t max_conns;
    struct pool_dest *dests; /* linked through g_prev/g_next */
};

struct pool_dest {
    struct pool_map_node node; /* in p->dests, by key */
    struct pool_group *g;
    struct pool_dest *g_prev, *g_next; /* the group's destinations */
    char *key;
    struct pool_target target;
    char egress_ip[INET6_ADDRSTRLEN];
    struct sockaddr_storage egress_sa;
    socklen_t egress_len;
    char ehlo[256];
    struct pool_limits lim;
    struct smtp_msg **q;
    size_t q_head, q_len, q_cap;
    struct pool_conn *conns;
    uint32_t n_conns, n_connecting;
    /* The handshake failed under an opportunistic policy: connect without
     * STARTTLS until then, as large MTAs do, and say so in the notes. */
    int64_t tls_fallback_until;
    char tls_fallback_why[240];
    /* Idle (nothing queued, no connection) since idle_since_ms: on the
     * pool's idle list, oldest first, and freed once idle long enough. */
    struct pool_dest *idle_prev, *idle_next;
    bool on_idle;
    int64_t idle_since_ms;
    /* Messages wait for a slot another worker's pool may give back
     * (pool_tick retries these, and only these). */
    struct pool_dest *starved_next;
    bool starved;
};

/* dest.c */
struct pool_dest *pool_dest_get(struct pool *p, const struct pool_target *t,
                                const char *egress_ip, const char *ehlo,
                                const struct pool_limits *lim);
struct pool_group *pool_group_find(const struct pool *p, const char *key);
/* d has nothing queued and no connection: start its idle clock. */
void pool_dest_idle(struct pool *p, struct pool_dest *d);
/* d is in use again (a message for it, a connection opening). */
void pool_dest_busy(struct pool *p, struct pool_dest *d);
/* Free destinations idle for p->dest_idle_ms (and groups left empty). */
void pool_evict_idle(struct pool *p, int64_t now_ms);
void pool_dest_starve(struct pool *p, struct pool_dest *d);
/* Detach the starved list. The walker clears each one's `starved` as it
 * visits it (after saving starved_next), so a dispatch that starves a
 * destination still ahead on the detached list leaves that list intact. */
struct pool_dest *pool_take_starved(struct pool *p);
void pool_registry_free(struct pool *p);

#endif
