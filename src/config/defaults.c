/* Every config default, written down once. docs/config.md lists the same
 * values in its defaults table; keep the two together.
 *
 * Two passes: config_defaults_init before parsing (plain values, so a key
 * written as `key:` or `~` keeps its default) and config_defaults_finish
 * after it (strings, lists, the fallback pool and provider, and values that
 * inherit another setting). After both, a reader of struct config needs no
 * fallback of its own. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config/loader.h"

#define SECOND_MS ((int64_t)1000)
#define MINUTE_MS (60 * SECOND_MS)
#define HOUR_MS   (60 * MINUTE_MS)
#define DAY_MS    (24 * HOUR_MS)

/* delivery.retry: waits after a temporary failure; the last repeats. */
static const int64_t retry_default_ms[] = {1 * MINUTE_MS, 5 * MINUTE_MS, 15 * MINUTE_MS,
                                           1 * HOUR_MS, 4 * HOUR_MS};

void config_defaults_init(struct config *cfg)
{
    struct cfg_engine *e = &cfg->engine;
    e->workers_auto = true; /* resolved to the CPU count in finish */
    e->batch = 256;
    e->max_inflight = 2000;
    struct cfg_inbound *in = &cfg->inbound;
    in->max_message_bytes = 1u << 20;
    in->max_connections = 64;
    in->timeout_ms = 60 * 1000;
    in->index_ttl_ms = 30 * DAY_MS;
    in->rate_per_s = 50;
    in->complaint_min_delivered = 1000;
    in->complaint_suspend_ms = DAY_MS;
    e->claim_idle_ms = 1 * MINUTE_MS;
    e->idempotency_window_ms = 7 * DAY_MS;
    e->shutdown_grace_ms = 30 * SECOND_MS;
    e->max_field_bytes = 1u << 20;
    e->max_message_bytes = 10u << 20;
    e->max_reply_bytes = 512u << 20;
    cfg->redis.connect_timeout_ms = 5 * SECOND_MS;
    cfg->redis.command_timeout_ms = 15 * SECOND_MS;
    cfg->redis.events_max_age_ms = 30 * DAY_MS;
    e->forget_consumers_ms = DAY_MS;

    struct cfg_delivery *d = &cfg->delivery;
    d->port = 25;
    d->tls = CFG_TLS_OPPORTUNISTIC;
    d->max_age_ms = 2 * DAY_MS;
    d->timeouts.connect_ms = 30 * SECOND_MS;
    d->timeouts.banner_ms = 5 * MINUTE_MS;
    d->timeouts.command_ms = 5 * MINUTE_MS;
    d->timeouts.data_block_ms = 3 * MINUTE_MS;
    d->timeouts.data_end_ms = 10 * MINUTE_MS;
    d->timeouts.idle_ms = 30 * SECOND_MS;

    struct cfg_reputation *rep = &cfg->reputation;
    rep->min = 0.0; /* the floor is min_rate */
    rep->max = 1.0;
    rep->increase = 0.05;
    rep->decrease = 0.85;
    rep->interval_ms = 30 * SECOND_MS;
    rep->min_rate = (struct cfg_rate){.count = 6, .window_s = 60};
    rep->window_ms = SECOND_MS;

    cfg->sender.spf_recheck_ms = 15 * MINUTE_MS;
    cfg->recipients.over_limit = CFG_RCPT_DEFER;
    cfg->addresses.typo_policy = CFG_TYPO_WARN;
}

/* rate (count 0: no cap) and tls (CFG_TLS_UNSET: inherit) stay zero: those
 * zeros are settings, not gaps. */
void config_provider_defaults(struct cfg_provider *p)
{
    p->connections = 10;
    p->messages_per_connection = 100;
}

/* rate and tls as for providers; max_age and egress inherit in finish, once
 * delivery and the pools are known. */
void config_tenant_defaults(struct cfg_tenant *t)
{
    t->weight = 1;
    t->from_fallback = CFG_FROM_SEND;
}

uint16_t config_relay_default_port(enum cfg_relay_tls tls)
{
    switch (tls) {
    case CFG_RELAY_TLS_IMPLICIT:
        return 465;
    case CFG_RELAY_TLS_NONE:
        return 25;
    case CFG_RELAY_TLS_STARTTLS:
        break;
    }
    return 587;
}

static int default_str(char **slot, const char *value)
{
    if (*slot) return 0;
    *slot = strdup(value);
    return *slot ? 0 : -ENOMEM;
}

static int add_default_pool(struct config *cfg)
{
    if (config_egress(cfg, "default")) return 0;
    struct cfg_egress_pool *p = realloc(cfg->egress, (cfg->n_egress + 1) * sizeof(*cfg->egress));
    if (!p) return -ENOMEM;
    cfg->egress = p;
    memset(&p[cfg->n_egress], 0, sizeof(*p));
    if (!(p[cfg->n_egress].name = strdup("default"))) return -ENOMEM;
    cfg->n_egress++;
    return 0;
}

static int add_default_provider(struct config *cfg)
{
    if (config_provider(cfg, "default")) return 0;
    struct cfg_provider *p =
        realloc(cfg->providers, (cfg->n_providers + 1) * sizeof(*cfg->providers));
    if (!p) return -ENOMEM;
    cfg->providers = p;
    memset(&p[cfg->n_providers], 0, sizeof(*p));
    config_provider_defaults(&p[cfg->n_providers]);
    if (!(p[cfg->n_providers].name = strdup("default"))) return -ENOMEM;
    cfg->n_providers++;
    return 0;
}

/* Returns 0 or -ENOMEM; nothing here can be a config error. */
int config_defaults_finish(struct config *cfg)
{
    char host[256];
    if (gethostname(host, sizeof host) != 0 || host[0] == '\0')
        snprintf(host, sizeof host, "localhost");
    host[sizeof host - 1] = '\0';

    struct cfg_engine *e = &cfg->engine;
    if (e->workers_auto) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        e->workers = n < 1 ? 1 : n > 256 ? 256 : (uint32_t)n;
    }
    struct cfg_redis *r = &cfg->redis;
    if (default_str(&r->url, "redis://127.0.0.1:6379/0") || default_str(&r->jobs, "herald:jobs") ||
        default_str(&r->group, "herald") || default_str(&r->events, "herald:events") ||
        default_str(&r->prefix, "herald:") || default_str(&e->ehlo, host) ||
        default_str(&e->consumer, host))
        return -ENOMEM;

    free(cfg->recipients.policy);
    cfg->recipients.policy = strdup(config_rcpt_policy_name(cfg->recipients.over_limit));
    if (!cfg->recipients.policy) return -ENOMEM;

    if (loader_addresses_defaults(&cfg->addresses)) return -ENOMEM;
    if (!cfg->delivery.retry_ms) {
        cfg->delivery.retry_ms = malloc(sizeof retry_default_ms);
        if (!cfg->delivery.retry_ms) return -ENOMEM;
        memcpy(cfg->delivery.retry_ms, retry_default_ms, sizeof retry_default_ms);
        cfg->delivery.n_retry = HERALD_ARRAY_LEN(retry_default_ms);
    }

    /* The engine relies on both fallbacks existing. */
    if (add_default_pool(cfg) || add_default_provider(cfg)) return -ENOMEM;
    for (size_t i = 0; i < cfg->n_providers; i++) {
        struct cfg_provider *p = &cfg->providers[i];
        if (!p->per_site_given) p->per_site = strcmp(p->name, "default") == 0;
    }
    for (size_t i = 0; i < cfg->n_egress; i++)
        if (default_str(&cfg->egress[i].ehlo, e->ehlo)) return -ENOMEM;

    for (size_t i = 0; i < cfg->n_tenants; i++) {
        struct cfg_tenant *t = &cfg->tenants[i];
        if (t->max_age_ms == 0) t->max_age_ms = cfg->delivery.max_age_ms;
        if (default_str(&t->egress, "default")) return -ENOMEM;
    }
    return 0;
}
