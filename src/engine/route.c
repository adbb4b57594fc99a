/* Routing (route.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald/throttle.h"
#include "delivery.h"
#include "gate.h"
#include "lease.h"
#include "outcome.h"
#include "route.h"
#include "worker.h"

static const struct engine_route *route_for(const struct worker *w, const char *domain)
{
    const struct cfg_route *r = config_route(w->cfg, domain);
    if (!r)
        return NULL;
    for (size_t i = 0; i < w->gen->n_routes; i++)
        if (w->gen->routes[i].route == r)
            return &w->gen->routes[i];
    return NULL;
}

static const struct engine_relay *route_relay_of(const struct worker *w, const char *tenant_name)
{
    const struct cfg_tenant *t = tenant_name ? config_tenant(w->cfg, tenant_name) : NULL;
    if (!t)
        return NULL;
    const struct engine_relay *r = &w->gen->relays[t - w->cfg->tenants];
    return r->configured ? r : NULL;
}

/* The destination site: the exchangers the route names, in preference
 * order (one host for a relay or a static route). */
static void set_site(struct delivery *d, const char *const *names, size_t n)
{
    d->site_hash = throttle_site_hash(names, n);
    throttle_site_label(names, n, d->site, sizeof d->site);
}

/* The throttle pair of a path: per egress IP x site for a provider whose
 * limits are per site, else pooled over the provider. */
static struct throttle_pair *path_pair(struct worker *w, const struct delivery *d, const char *ip,
                                       const struct cfg_provider *prov)
{
    if (prov && prov->per_site && d->site_hash)
        return throttle_site_pair(w->sh->throttle, ip, prov->name, d->site_hash, d->site);
    return throttle_pair_get(w->sh->throttle, ip, prov ? prov->name : NULL);
}

/* Whether an egress IP may send on the path now (not suspended, warm-up
 * cap not reached). */
static bool egress_may_send(struct worker *w, const struct delivery *d, const char *ip,
                            const struct cfg_provider *prov)
{
    int64_t wall = clock_wall_ms();
    struct throttle_pair *p = path_pair(w, d, ip, prov);
    if (p && atomic_load(&p->suspended_until_ms) > wall)
        return false;
    return !gate_warmup_full(w, ip, wall);
}

/* An egress address of the target's family, round robin over the pool's
 * addresses that may send now; when none may, the first of the right
 * family, whose gate then parks the message. NULL when the pool has no
 * address of that family: the mail must not leave from outside the pool.
 * "" when the pool is empty (the kernel picks the source). */
static const char *choose_egress(struct worker *w, const struct delivery *d,
                                 const struct cfg_egress_pool *eg,
                                 const struct pool_target *target,
                                 const struct cfg_provider *prov)
{
    if (!eg || eg->ips.n == 0)
        return "";
    size_t pick = SIZE_MAX, first = SIZE_MAX;
    for (size_t k = 0; k < eg->ips.n && pick == SIZE_MAX; k++) {
        const char *cand = eg->ips.items[(w->egress_rr + k) % eg->ips.n];
        if ((strchr(cand, ':') != NULL) != (target->sa.ss_family == AF_INET6))
            continue;
        if (first == SIZE_MAX)
            first = k;
        if (egress_may_send(w, d, cand, prov))
            pick = k;
    }
    if (pick == SIZE_MAX)
        pick = first;
    if (pick == SIZE_MAX)
        return NULL;
    w->egress_rr += (uint32_t)pick + 1;
    return eg->ips.items[(w->egress_rr - 1) % eg->ips.n];
}

/* TLS: the strictest of delivery.tls, the tenant's and the provider's
 * policy. A relay uses its own tls setting (STARTTLS required, implicit, or
 * none), verifies the relay's certificate (the credentials go nowhere
 * else) unless the tenant opted out, and AUTHs with the tenant's
 * credentials. */
static void tls_policy(const struct config *cfg, const struct cfg_tenant *tenant,
                       const struct cfg_provider *prov, const struct engine_relay *relay,
                       struct pool_limits *lim)
{
    enum cfg_tls_policy pol = config_tls_policy(cfg, tenant, prov);
    lim->tls_mode = pol == CFG_TLS_OPPORTUNISTIC ? SMTP_TLS_TRY : SMTP_TLS_MUST;
    lim->tls_verify = pol == CFG_TLS_VERIFY;
    if (relay) {
        lim->tls_mode = relay->tls_mode;
        lim->tls_verify = relay->tls_mode != SMTP_TLS_OFF && relay->verify;
        lim->tls_ctx = relay->tls_ctx;
        lim->auth = relay->auth.user ? &relay->auth : NULL;
    }
}

void route_submit(struct delivery *d, const struct pool_target *target)
{
    struct worker *w = d->w;
    const struct config *cfg = w->cfg;
    struct job *j = &d->job;
    const struct cfg_tenant *tenant = config_tenant(cfg, j->tenant);
    const struct engine_relay *relay = route_relay_of(w, j->tenant);
    const char *pool_name = tenant && tenant->egress ? tenant->egress : "default";
    const struct cfg_egress_pool *eg = config_egress(cfg, pool_name);
    const struct cfg_provider *prov = config_provider_for_host(cfg, target->host);
    const char *ip = choose_egress(w, d, eg, target, prov);
    if (!ip) {
        struct smtp_result res = {.outcome = SMTP_OUT_NETFAIL, .stage = SMTP_STAGE_CONNECT};
        snprintf(res.reply, sizeof res.reply, "egress pool %s has no %s address for %s",
                 pool_name, target->sa.ss_family == AF_INET6 ? "IPv6" : "IPv4", target->host);
        struct pool_conn_info info = {.mx = target->host, .tls = "none"};
        outcome_apply(d, &res, &info);
        return;
    }
    struct pool_limits lim = {0};
    tls_policy(cfg, tenant, prov, relay, &lim);
    struct throttle_pair *pair = path_pair(w, d, ip, prov);
    uint32_t conns = prov ? prov->connections : 10;
    if (pair)
        conns = throttle_scale(pair, conns);
    /* The path's connections are shared by every process sending from the
     * IP (its grant, lease.c) and, within the process, by its workers: any
     * worker may open up to the whole grant, the shared count keeps their
     * sum under it, and a worker left without one asks the others to hand
     * back an idle one (pool.c). A fixed split starved a worker whenever
     * the grant was smaller than the number of workers. */
    uint32_t mine = pair ? lease_connections(w, pair, prov, conns) : conns;
    if (!mine)
        mine = 1;
    lim.max_conns = pair ? mine : (mine + w->sh->n_workers - 1) / w->sh->n_workers;
    lim.shared_max = pair ? &pair->conn_grant : NULL;
    lim.slot_wanted_ms = pair ? &pair->conn_wanted_ms : NULL;
    lim.fair_conns = (mine + w->sh->n_workers - 1) / w->sh->n_workers;
    /* The pool shares the connection limit among the path's destinations
     * (its exchangers' addresses): per site, or over the provider. */
    lim.group = pair ? pair->group : prov ? prov->name : NULL;
    lim.open_counter = pair ? &pair->open_conns : NULL;
    lim.max_msgs_per_conn = prov ? prov->messages_per_connection : 100;
    const struct cfg_timeouts *t = &cfg->delivery.timeouts;
    lim.connect_timeout_ms = t->connect_ms;
    lim.idle_timeout_ms = t->idle_ms;
    lim.smtp.banner_ms = t->banner_ms;
    lim.smtp.command_ms = t->command_ms;
    lim.smtp.data_block_ms = t->data_block_ms;
    lim.smtp.data_end_ms = t->data_end_ms;

    d->pair = pair;
    d->target = *target;
    d->lim = lim;
    d->ip = ip;
    d->ehlo = eg ? eg->ehlo : cfg->engine.ehlo;
    gate_submit(d, prov);
}

/* The addresses of a lookup, in the order to try them. */
static int take_targets(struct delivery *d, const struct dns_route *route)
{
    size_t n = 0;
    for (size_t i = 0; i < route->n_hosts; i++)
        n += route->hosts[i].n_addrs;
    free(d->targets);
    d->targets = calloc(n ? n : 1, sizeof *d->targets);
    d->n_targets = d->target_i = 0;
    if (!d->targets)
        return -ENOMEM;
    for (size_t i = 0; i < route->n_hosts; i++)
        for (size_t k = 0; k < route->hosts[i].n_addrs; k++) {
            struct pool_target *t = &d->targets[d->n_targets++];
            snprintf(t->host, sizeof t->host, "%s", route->hosts[i].name);
            t->sa = route->hosts[i].addrs[k];
            t->sa_len = route->hosts[i].addr_lens[k];
        }
    return d->n_targets ? 0 : -HERR_DNS;
}

/* MX lookup finished: bounce for a domain that cannot take mail, defer on
 * a lookup failure, else try the exchangers' addresses in order. */
static void on_mx(void *arg, const struct dns_route *route)
{
    struct delivery *d = arg;
    if (d->w->dns_closing) {
        delivery_exit(d, DX_LEFT); /* shutting down: the entry stays pending */
        return;
    }
    if (route->status == DNS_NXDOMAIN || route->status == DNS_NULL_MX) {
        struct smtp_result res = {.outcome = SMTP_OUT_PERMFAIL, .stage = SMTP_STAGE_CONNECT};
        bool null_mx = route->status == DNS_NULL_MX;
        res.code = null_mx ? 556 : 550;
        snprintf(res.enhanced, sizeof res.enhanced, "%s", null_mx ? "5.1.10" : "5.1.2");
        snprintf(res.reply, sizeof res.reply, "%s %s", res.enhanced, route->reason);
        outcome_apply(d, &res, NULL);
        return;
    }
    if (route->status != DNS_OK) {
        outcome_local_fail(d, "DNS: %s", route->reason);
        return;
    }
    if (take_targets(d, route) < 0) {
        outcome_local_fail(d, "out of memory routing the message");
        return;
    }
    const char *names[DNS_MAX_MX];
    for (size_t i = 0; i < route->n_hosts; i++)
        names[i] = route->hosts[i].name;
    set_site(d, names, route->n_hosts);
    route_submit(d, &d->targets[0]);
}

/* The relay's own addresses: any failure to find them is the operator's
 * to fix, never the recipient's, so the job waits (deferred), not bounced. */
static void on_relay(void *arg, const struct dns_route *route)
{
    struct delivery *d = arg;
    if (d->w->dns_closing) {
        delivery_exit(d, DX_LEFT);
        return;
    }
    if (route->status != DNS_OK) {
        outcome_local_fail(d, "relay: %s", route->reason);
        return;
    }
    int rc = take_targets(d, route);
    if (rc < 0) {
        outcome_local_fail(d, "relay: %s", herald_strerror(rc));
        return;
    }
    const char *name = route->hosts[0].name;
    set_site(d, &name, 1);
    route_submit(d, &d->targets[0]);
}

void route_dispatch(struct delivery *d)
{
    struct worker *w = d->w;
    struct job *j = &d->job;
    const struct engine_relay *relay = route_relay_of(w, j->tenant);
    const struct engine_route *route = relay ? NULL : route_for(w, j->to_domain);
    if (route) {
        const char *name = route->target.host;
        set_site(d, &name, 1);
        route_submit(d, &route->target);
        return;
    }
    if (!w->dns) {
        outcome_local_fail(d, "no route for %s and no resolver", relay ? relay->host : j->to_domain);
        return;
    }
    delivery_set_state(d, DS_ROUTING);
    int rc = relay ? dns_resolve_host(w->dns, relay->host, relay->port, on_relay, d)
                   : dns_resolve_route(w->dns, j->to_domain, w->cfg->delivery.port, on_mx, d);
    if (rc < 0)
        outcome_local_fail(d, "out of memory resolving %s", relay ? relay->host : j->to_domain);
}
