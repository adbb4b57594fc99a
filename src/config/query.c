/* Lookups on a loaded snapshot, and the check-config report. */
#include <inttypes.h>
#include <string.h>
#include <strings.h>

#include "herald/config.h"

const struct cfg_tenant *config_tenant(const struct config *cfg, const char *name)
{
    for (size_t i = 0; name && i < cfg->n_tenants; i++)
        if (strcmp(cfg->tenants[i].name, name) == 0)
            return &cfg->tenants[i];
    return NULL;
}

const struct cfg_egress_pool *config_egress(const struct config *cfg, const char *name)
{
    for (size_t i = 0; name && i < cfg->n_egress; i++)
        if (strcmp(cfg->egress[i].name, name) == 0)
            return &cfg->egress[i];
    return NULL;
}

const struct cfg_provider *config_provider(const struct config *cfg, const char *name)
{
    for (size_t i = 0; name && i < cfg->n_providers; i++)
        if (strcmp(cfg->providers[i].name, name) == 0)
            return &cfg->providers[i];
    return NULL;
}

const struct cfg_route *config_route(const struct config *cfg, const char *domain)
{
    if (!domain)
        return NULL;
    size_t dl = strlen(domain);
    const struct cfg_route *best = NULL, *star = NULL;
    size_t best_len = 0;
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const struct cfg_route *r = &cfg->routes[i];
        const char *p = r->pattern;
        if (strcmp(p, "*") == 0) {
            star = r;
        } else if (strncmp(p, "*.", 2) == 0) {
            size_t sl = strlen(p + 1); /* ".suffix" */
            if (dl > sl && strcasecmp(domain + dl - sl, p + 1) == 0 && sl > best_len) {
                best = r;
                best_len = sl;
            }
        } else if (strcasecmp(p, domain) == 0) {
            return r;
        }
    }
    return best ? best : star;
}

static const char *tls_name(enum cfg_tls_policy p)
{
    switch (p) {
    case CFG_TLS_OPPORTUNISTIC:
        return "opportunistic";
    case CFG_TLS_REQUIRED:
        return "required";
    case CFG_TLS_VERIFY:
        return "verify";
    default:
        return "(inherit)";
    }
}

static void print_rate(FILE *out, const struct cfg_rate *r)
{
    if (!r->count) {
        fputs("unlimited", out);
        return;
    }
    const char *unit = r->window_s == 1 ? "s" : r->window_s == 60 ? "m"
                                            : r->window_s == 3600 ? "h" : "d";
    fprintf(out, "%" PRIu32 "/%s", r->count, unit);
}

static void print_ms(FILE *out, int64_t ms)
{
    if (ms % 86400000 == 0)
        fprintf(out, "%" PRId64 "d", ms / 86400000);
    else if (ms % 3600000 == 0)
        fprintf(out, "%" PRId64 "h", ms / 3600000);
    else if (ms % 60000 == 0)
        fprintf(out, "%" PRId64 "m", ms / 60000);
    else if (ms % 1000 == 0)
        fprintf(out, "%" PRId64 "s", ms / 1000);
    else
        fprintf(out, "%" PRId64 "ms", ms);
}

void config_print_effective(const struct config *cfg, FILE *out)
{
    fprintf(out, "redis: url=%s jobs=%s group=%s events=%s prefix=%s\n", cfg->redis.url,
            cfg->redis.jobs, cfg->redis.group, cfg->redis.events, cfg->redis.prefix);
    const struct cfg_engine *e = &cfg->engine;
    fprintf(out, "engine: workers=%" PRIu32 " ehlo=%s consumer=%s batch=%" PRIu32
                 " max_inflight=%" PRIu32 " claim_idle=",
            e->workers, e->ehlo, e->consumer, e->batch, e->max_inflight);
    print_ms(out, e->claim_idle_ms);
    fputs(" shutdown_grace=", out);
    print_ms(out, e->shutdown_grace_ms);
    fprintf(out, " max_field_bytes=%" PRIu32 " max_message_bytes=%" PRIu32 "\n",
            e->max_field_bytes, e->max_message_bytes);
    for (size_t i = 0; i < cfg->n_egress; i++) {
        const struct cfg_egress_pool *p = &cfg->egress[i];
        fprintf(out, "egress %s:", p->name);
        if (!p->ips.n)
            fputs(" (kernel-chosen source address)", out);
        for (size_t k = 0; k < p->ips.n; k++)
            fprintf(out, " %s", p->ips.items[k]);
        if (p->ehlo)
            fprintf(out, " ehlo=%s", p->ehlo);
        fputc('\n', out);
    }
    for (size_t i = 0; i < cfg->n_routes; i++)
        fprintf(out, "route %s -> %s:%u\n", cfg->routes[i].pattern, cfg->routes[i].host,
                cfg->routes[i].port ? cfg->routes[i].port : cfg->delivery.port);
    for (size_t i = 0; i < cfg->n_tenants; i++) {
        const struct cfg_tenant *t = &cfg->tenants[i];
        fprintf(out, "tenant %s: from=%s domains=", t->name, t->from);
        for (size_t k = 0; k < t->domains.n; k++)
            fprintf(out, "%s%s", k ? "," : "", t->domains.items[k]);
        fprintf(out, " egress=%s tls=%s weight=%" PRIu32 " rate=", t->egress ? t->egress : "default",
                tls_name(t->tls ? t->tls : cfg->delivery.tls), t->weight);
        print_rate(out, &t->rate);
        fputs(" max_age=", out);
        print_ms(out, t->max_age_ms ? t->max_age_ms : cfg->delivery.max_age_ms);
        if (t->relay.host)
            fprintf(out, " relay=%s:%u", t->relay.host, t->relay.port);
        if (t->dkim.selector)
            fprintf(out, " dkim=%s", t->dkim.selector);
        fputc('\n', out);
    }
    const struct cfg_delivery *d = &cfg->delivery;
    fprintf(out, "delivery: port=%u tls=%s retry=", d->port, tls_name(d->tls));
    for (size_t i = 0; i < d->n_retry; i++) {
        if (i)
            fputc(',', out);
        print_ms(out, d->retry_ms[i]);
    }
    fputs(" max_age=", out);
    print_ms(out, d->max_age_ms);
    fputs("\ntimeouts: connect=", out);
    print_ms(out, d->timeouts.connect_ms);
    fputs(" banner=", out);
    print_ms(out, d->timeouts.banner_ms);
    fputs(" command=", out);
    print_ms(out, d->timeouts.command_ms);
    fputs(" data_block=", out);
    print_ms(out, d->timeouts.data_block_ms);
    fputs(" data_end=", out);
    print_ms(out, d->timeouts.data_end_ms);
    fputs(" idle=", out);
    print_ms(out, d->timeouts.idle_ms);
    fputc('\n', out);
    for (size_t i = 0; i < cfg->n_providers; i++) {
        const struct cfg_provider *p = &cfg->providers[i];
        fprintf(out, "provider %s: connections=%" PRIu32 " messages_per_connection=%" PRIu32
                     " recipients_per_message=%" PRIu32 " rate=",
                p->name, p->connections, p->messages_per_connection, p->recipients_per_message);
        print_rate(out, &p->rate);
        fprintf(out, " tls=%s mx=", tls_name(p->tls ? p->tls : d->tls));
        if (!p->mx.n)
            fputs("(any)", out);
        for (size_t k = 0; k < p->mx.n; k++)
            fprintf(out, "%s%s", k ? "," : "", p->mx.items[k]);
        fputc('\n', out);
    }
    if (cfg->recipients.n_limits) {
        fputs("recipients: limit=", out);
        for (size_t i = 0; i < cfg->recipients.n_limits; i++) {
            if (i)
                fputc(',', out);
            print_rate(out, &cfg->recipients.limits[i]);
        }
        fprintf(out, " policy=%s\n", cfg->recipients.policy);
    }
}
