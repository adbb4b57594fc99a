/* What a pool holds for its groups (pool.h): the backlog the shaping
 * decision reads, and the mail a congested destination gives back. */
#include <stdio.h>

#include "herald/core.h"
#include "internal.h"

void pool_group_backlog(const struct pool *p, const char *egress_ip, const char *group,
                        size_t *queued, uint32_t *conns, int64_t *oldest_wait_ms)
{
    char gkey[1024];
    snprintf(gkey, sizeof gkey, "%s|%s", egress_ip, group);
    *queued = 0;
    *conns = 0;
    if (oldest_wait_ms)
        *oldest_wait_ms = 0;
    const struct pool_group *g = pool_group_find(p, gkey);
    if (!g)
        return;
    for (const struct pool_dest *d = g->dests; d; d = d->g_next) {
        *queued += d->q_len;
        if (d->q_len && oldest_wait_ms) {
            int64_t waited = p->ring->now_ms - d->q[d->q_head]->queued_ms;
            if (waited > *oldest_wait_ms)
                *oldest_wait_ms = waited;
        }
    }
    *conns = g->n_conns;
}

void pool_shed(struct pool *p, pool_shed_ask ask, pool_shed_take take, void *arg)
{
    if (p->closing)
        return;
    int64_t now = p->ring->now_ms;
    POOL_MAP_EACH(&p->dests, n, tmp)
    {
        struct pool_dest *d = HERALD_CONTAINER_OF(n, struct pool_dest, node);
        if (d->q_len == 0)
            continue;
        struct pool_backlog b = {d->q_len, now - d->q[d->q_head]->queued_ms, d->n_conns,
                                 d->lim.max_conns ? d->lim.max_conns : 1};
        size_t k = ask(arg, &b);
        if (k > d->q_len)
            k = d->q_len;
        if (k)
            log_event(LOG_INFO,
                      "event=path_congested egress=%s dest=%s queued=%zu oldest_wait_ms=%lld "
                      "connections=%u parked=%zu",
                      d->egress_ip[0] ? d->egress_ip : "-", LOG_VALUE(d->key), b.queued,
                      (long long)b.oldest_wait_ms, d->n_conns, k);
        for (; k > 0; k--) {
            /* the newest first: the oldest keep their turn */
            size_t at = (d->q_head + d->q_len - 1) % d->q_cap;
            struct smtp_msg *m = d->q[at];
            d->q_len--;
            take(arg, m, &b);
        }
    }
}
