/* The pool's registry: destinations (egress IP x target address x security
 * settings) and the groups that share a connection limit, found by key in
 * O(1) however many there are, and freed once idle for a while, so the
 * long tail of recipient domains costs neither memory nor CPU forever. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct pool_group *pool_group_find(const struct pool *p, const char *key)
{
    struct pool_map_node *n = pool_map_find(&p->groups, key, pool_map_hash(key));
    return n ? HERALD_CONTAINER_OF(n, struct pool_group, node) : NULL;
}

static struct pool_group *group_get(struct pool *p, const char *key)
{
    struct pool_group *g = pool_group_find(p, key);
    if (g) return g;
    g = calloc(1, sizeof *g);
    if (!g || !(g->key = strdup(key))) {
        free(g);
        return NULL;
    }
    g->node.key = g->key;
    g->node.hash = pool_map_hash(key);
    pool_map_insert(&p->groups, &g->node);
    return g;
}

static void group_unlink(struct pool *p, struct pool_dest *d)
{
    struct pool_group *g = d->g;
    if (d->g_prev) d->g_prev->g_next = d->g_next;
    else g->dests = d->g_next;
    if (d->g_next) d->g_next->g_prev = d->g_prev;
    if (!g->dests && g->n_conns == 0) {
        pool_map_remove(&p->groups, &g->node);
        free(g->key);
        free(g);
    }
}

static void set_egress(struct pool_dest *d, const char *egress_ip)
{
    snprintf(d->egress_ip, sizeof d->egress_ip, "%s", egress_ip);
    if (!egress_ip[0]) return;
    struct sockaddr_in *s4 = (struct sockaddr_in *)&d->egress_sa;
    struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&d->egress_sa;
    if (inet_pton(AF_INET, egress_ip, &s4->sin_addr) == 1) {
        s4->sin_family = AF_INET;
        d->egress_len = sizeof *s4;
    } else if (inet_pton(AF_INET6, egress_ip, &s6->sin6_addr) == 1) {
        s6->sin6_family = AF_INET6;
        d->egress_len = sizeof *s6;
    }
}

struct pool_dest *pool_dest_get(struct pool *p, const struct pool_target *t,
                                const char *egress_ip, const char *ehlo,
                                const struct pool_limits *lim)
{
    char ip[INET6_ADDRSTRLEN];
    sockaddr_ip(&t->sa, ip, sizeof ip);
    char key[512];
    /* Security settings are part of the identity: a relay connection that
     * authenticated with one tenant's credentials must never carry another
     * tenant's mail, even under the same user name (the credentials object
     * is per tenant, so its address tells them apart). */
    snprintf(key, sizeof key, "%s|%s|%s|%u|t%d%d%p|%s@%p", egress_ip, t->host, ip,
             sockaddr_port(&t->sa), (int)lim->tls_mode, lim->tls_verify ? 1 : 0,
             (void *)lim->tls_ctx, lim->auth && lim->auth->user ? lim->auth->user : "",
             (const void *)lim->auth);
    uint64_t h = pool_map_hash(key);
    struct pool_map_node *n = pool_map_find(&p->dests, key, h);
    if (n) {
        struct pool_dest *d = HERALD_CONTAINER_OF(n, struct pool_dest, node);
        d->lim = *lim; /* limits follow the current config */
        d->g->max_conns = lim->max_conns;
        return d;
    }
    char gkey[1024];
    snprintf(gkey, sizeof gkey, "%s|%s", egress_ip, lim->group ? lim->group : key);
    struct pool_group *g = group_get(p, gkey);
    if (!g) return NULL;
    struct pool_dest *d = calloc(1, sizeof *d);
    if (!d || !(d->key = strdup(key))) {
        free(d);
        if (!g->dests && g->n_conns == 0) {
            pool_map_remove(&p->groups, &g->node);
            free(g->key);
            free(g);
        }
        return NULL;
    }
    d->g = g;
    g->max_conns = lim->max_conns;
    d->g_next = g->dests;
    if (g->dests) g->dests->g_prev = d;
    g->dests = d;
    d->target = *t;
    set_egress(d, egress_ip);
    snprintf(d->ehlo, sizeof d->ehlo, "%s", ehlo);
    d->lim = *lim;
    d->node.key = d->key;
    d->node.hash = h;
    pool_map_insert(&p->dests, &d->node);
    p->n_dests++;
    return d;
}

void pool_dest_idle(struct pool *p, struct pool_dest *d)
{
    if (d->on_idle || d->q_len || d->n_conns) return;
    d->on_idle = true;
    d->idle_since_ms = p->ring ? p->ring->now_ms : 0;
    d->idle_next = NULL;
    d->idle_prev = p->idle_tail;
    if (p->idle_tail) p->idle_tail->idle_next = d;
    else p->idle_head = d;
    p->idle_tail = d;
}

void pool_dest_busy(struct pool *p, struct pool_dest *d)
{
    if (!d->on_idle) return;
    d->on_idle = false;
    if (d->idle_prev) d->idle_prev->idle_next = d->idle_next;
    else p->idle_head = d->idle_next;
    if (d->idle_next) d->idle_next->idle_prev = d->idle_prev;
    else p->idle_tail = d->idle_prev;
    d->idle_prev = d->idle_next = NULL;
}

static void dest_free(struct pool *p, struct pool_dest *d)
{
    pool_map_remove(&p->dests, &d->node);
    p->n_dests--;
    group_unlink(p, d);
    free(d->q);
    free(d->key);
    free(d);
}

void pool_evict_idle(struct pool *p, int64_t now_ms)
{
    /* Oldest first: stop at the first that has not been idle long enough. */
    while (p->idle_head && now_ms - p->idle_head->idle_since_ms >= p->dest_idle_ms) {
        struct pool_dest *d = p->idle_head;
        pool_dest_busy(p, d);
        if (d->tls_fallback_until > now_ms) {
            /* Forgetting it would try the broken TLS stack again. */
            pool_dest_idle(p, d);
            d->idle_since_ms = d->tls_fallback_until - p->dest_idle_ms;
            if (p->idle_head == d) break; /* alone on the list: next tick */
            continue;
        }
        dest_free(p, d);
        p->n_evicted++;
    }
}

void pool_dest_starve(struct pool *p, struct pool_dest *d)
{
    if (d->starved) return;
    d->starved = true;
    d->starved_next = p->starved;
    p->starved = d;
}

struct pool_dest *pool_take_starved(struct pool *p)
{
    struct pool_dest *list = p->starved;
    p->starved = NULL;
    return list;
}

void pool_registry_free(struct pool *p)
{
    POOL_MAP_EACH(&p->dests, n, tmp)
    {
        struct pool_dest *d = HERALD_CONTAINER_OF(n, struct pool_dest, node);
        free(d->q);
        free(d->key);
        free(d);
    }
    POOL_MAP_EACH(&p->groups, n, tmp)
    {
        struct pool_group *g = HERALD_CONTAINER_OF(n, struct pool_group, node);
        free(g->key);
        free(g);
    }
    pool_map_free(&p->dests);
    pool_map_free(&p->groups);
    p->idle_head = p->idle_tail = NULL;
    p->starved = NULL;
    p->n_dests = 0;
}
