/* Shared path limits (lease.h). */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "herald/keys.h"
#include "lease.h"
#include "worker.h"

#define GRANT_TTL_MS 5000
#define GRANT_EVERY_MS 1000

static void on_lease(struct redis_client *c, redisReply *r, void *arg)
{
    (void)c;
    struct throttle_pair *p = arg;
    atomic_store(&p->lease_pending, false);
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 4 ||
        r->element[0]->type != REDIS_REPLY_INTEGER || r->element[1]->type != REDIS_REPLY_INTEGER ||
        r->element[2]->type != REDIS_REPLY_INTEGER || r->element[3]->type != REDIS_REPLY_INTEGER) {
        /* Redis away or our scripts missing (the notes connection reloads
         * them): ask again shortly. */
        atomic_store(&p->lease_retry_ms, clock_mono_ms() + 100);
        return;
    }
    long long granted = r->element[0]->integer, wait = r->element[1]->integer;
    long long conns = r->element[2]->integer;
    if (granted > 0)
        atomic_fetch_add(&p->lease_left, granted);
    else if (wait > 0)
        atomic_store(&p->lease_retry_ms, clock_mono_ms() + wait);
    if (conns >= 0) {
        atomic_store(&p->conn_grant, (int)conns);
        atomic_store(&p->conn_refresh_ms, clock_mono_ms());
    }
    /* One factor for the path across processes: follow the lowest down
     * (each process climbs back on its own clean intervals, and publishes
     * that with its next call). */
    long long shared = r->element[3]->integer;
    int64_t f = atomic_load(&p->factor_ppm);
    while (shared > 0 && shared < f && !atomic_compare_exchange_weak(&p->factor_ppm, &f, shared)) {
    }
}

/* About 100 ms of the path's rate. */
static int64_t block_of(const struct cfg_provider *prov, double factor)
{
    double per_s = (double)prov->rate.count / (double)prov->rate.window_s * factor;
    int64_t k = (int64_t)(per_s / 10.0);
    return k < 1 ? 1 : k > 1000 ? 1000 : k;
}

/* One script call for slots (want > 0) and/or a connection grant. */
static void ask(struct worker *w, struct throttle_pair *p, const struct cfg_provider *prov,
                int64_t want, uint32_t conn_limit)
{
    bool expect = false;
    if (!atomic_compare_exchange_strong(&p->lease_pending, &expect, true))
        return; /* one call per path at a time, for the whole process */
    char rkey[KEYS_MAX], ckey[KEYS_MAX], qkey[KEYS_MAX], now[24], T[24], tau[24], wantb[24],
        lim[16], ttl[16], open[16], factor[24];
    keys_path_rate(&w->sh->keys, p->ip, p->group, rkey, sizeof rkey);
    keys_path_conns(&w->sh->keys, p->ip, p->group, ckey, sizeof ckey);
    keys_path_reputation(&w->sh->keys, p->ip, p->group, qkey, sizeof qkey);
    snprintf(factor, sizeof factor, "%" PRId64, (int64_t)atomic_load(&p->factor_ppm));
    int64_t T_us = 1, tau_us = 0;
    if (want > 0 && prov && prov->rate.count)
        throttle_gcra_params(p, &prov->rate, &T_us, &tau_us);
    snprintf(now, sizeof now, "%" PRId64, clock_wall_ms());
    snprintf(T, sizeof T, "%" PRId64, T_us);
    snprintf(tau, sizeof tau, "%" PRId64, tau_us);
    snprintf(wantb, sizeof wantb, "%" PRId64, want);
    snprintf(lim, sizeof lim, "%" PRIu32, conn_limit);
    snprintf(ttl, sizeof ttl, "%d", GRANT_TTL_MS);
    snprintf(open, sizeof open, "%d", atomic_load(&p->open_conns));
    /* This process's name in the grants: the consumer prefix and the pid,
     * so two processes that share a config (and a consumer prefix) still
     * count apart. */
    char me[200];
    snprintf(me, sizeof me, "%s:%ld", w->cfg->engine.consumer, (long)getpid());
    const char *argv[] = {"EVALSHA", w->sh->sha_lease, "3", rkey, ckey, qkey, now, T, tau,
                          wantb, me, lim, ttl, open, factor};
    if (redis_client_command_argv(&w->notes, on_lease, p, (int)HERALD_ARRAY_LEN(argv), argv,
                                  NULL) < 0) {
        atomic_store(&p->lease_pending, false);
        atomic_store(&p->lease_retry_ms, clock_mono_ms() + 100);
    }
}

static uint32_t conn_limit_of(const struct throttle_pair *p, const struct cfg_provider *prov)
{
    return throttle_scale(p, prov ? prov->connections : 10);
}

bool lease_take(struct worker *w, struct throttle_pair *p, const struct cfg_provider *prov,
                int64_t now_mono_ms, int64_t *wait_ms)
{
    atomic_store(&p->used_ms, now_mono_ms);
    int64_t block = block_of(prov, throttle_factor(p));
    int64_t left = atomic_fetch_sub(&p->lease_left, 1);
    bool got = left > 0;
    if (!got)
        atomic_fetch_add(&p->lease_left, 1);
    /* Ask for the next block before this one runs out. */
    if (left - 1 < block / 2 + 1 && now_mono_ms >= atomic_load(&p->lease_retry_ms))
        ask(w, p, prov, block, conn_limit_of(p, prov));
    if (!got) {
        int64_t until = atomic_load(&p->lease_retry_ms) - now_mono_ms;
        *wait_ms = until > 2 ? until : 2;
    }
    return got;
}

void lease_untake(struct throttle_pair *p)
{
    atomic_fetch_add(&p->lease_left, 1);
}

uint32_t lease_connections(struct worker *w, struct throttle_pair *p,
                           const struct cfg_provider *prov, uint32_t limit)
{
    atomic_store(&p->used_ms, clock_mono_ms());
    int grant = atomic_load(&p->conn_grant);
    if (grant < 0) {
        ask(w, p, prov, 0, limit);
        return 1;
    }
    return (uint32_t)grant < limit ? (uint32_t)grant : limit;
}

void lease_tick(struct worker *w, int64_t now)
{
    struct throttle_table *t = w->sh->throttle;
    for (size_t i = 0, n = throttle_pair_count(t); i < n; i++) {
        struct throttle_pair *p = throttle_pair_at(t, i);
        int64_t used = atomic_load(&p->used_ms);
        if (!used || now - used > 60000 || atomic_load(&p->conn_grant) < 0)
            continue;
        if (now - atomic_load(&p->conn_refresh_ms) < GRANT_EVERY_MS)
            continue;
        const struct cfg_provider *prov = config_provider(w->cfg, p->provider);
        ask(w, p, prov, 0, conn_limit_of(p, prov));
    }
}
