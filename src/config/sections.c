/* One reader per top-level config section. load.c calls them in dependency
 * order (delivery before routes, egress before tenants), so each can check
 * references as it goes. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <strings.h>

#include "config/loader.h"

#define RETRY_MAX_STEPS      32
#define RECIPIENT_LIMITS_MAX 16

static int str_is(const struct ynode *v, const char *s)
{
    return v && v->type == YNODE_SCALAR && strcmp(v->str, s) == 0;
}

/* ---- redis ---- */

/* The scheme only; the rest is parsed (and the host resolved) when herald
 * connects. unix:// is refused by name: the engine's Redis client and its
 * status and multi-process code speak TCP, and a plain "bad URL" would
 * leave the operator guessing. A refused URL is shown with its password
 * masked. */
static int redis_url_check(struct loader *L, const struct ynode *v, const char *url)
{
    if (strncmp(url, "redis://", 8) == 0 || strncmp(url, "rediss://", 9) == 0) return 0;
    if (strncmp(url, "unix://", 7) == 0)
        return loader_fail(L, v, "unix:// Redis URLs are not supported; use redis://host:port");
    char masked[128], q[160];
    config_url_masked(url, masked, sizeof masked);
    log_quote(q, sizeof q, masked, strlen(masked));
    return loader_fail(L, v, "expected a redis:// or rediss:// URL, got '%s'", q);
}

struct redis_ctx {
    struct cfg_redis *r;
    const struct ynode *password_env;
};

static int redis_key(struct loader *L, const char *key, const struct ynode *k,
                     const struct ynode *v, void *obj)
{
    struct redis_ctx *c = obj;
    struct cfg_redis *r = c->r;
    (void)k;
    if (strcmp(key, "url") == 0) {
        int rc = loader_str(L, v, &r->url);
        if (rc || ynode_is_null(v)) return rc;
        return redis_url_check(L, v, r->url);
    }
    if (strcmp(key, "jobs") == 0) return loader_str(L, v, &r->jobs);
    if (strcmp(key, "group") == 0) return loader_str(L, v, &r->group);
    if (strcmp(key, "events") == 0) return loader_str(L, v, &r->events);
    if (strcmp(key, "prefix") == 0) return loader_str(L, v, &r->prefix);
    if (strcmp(key, "password_file") == 0) {
        r->password_file_line = v->line;
        r->password_file_col = v->col;
        return loader_str(L, v, &r->password_file);
    }
    if (strcmp(key, "password_env") == 0) {
        c->password_env = v;
        return loader_str(L, v, &r->password_env);
    }
    if (strcmp(key, "ca_file") == 0) return loader_str(L, v, &r->ca_file);
    if (strcmp(key, "cert_file") == 0) return loader_str(L, v, &r->cert_file);
    if (strcmp(key, "key_file") == 0) return loader_str(L, v, &r->key_file);
    if (strcmp(key, "connect_timeout") == 0)
        return loader_duration(L, v, 100, &r->connect_timeout_ms);
    if (strcmp(key, "command_timeout") == 0)
        return loader_duration(L, v, 2000, &r->command_timeout_ms);
    if (strcmp(key, "events_max_age") == 0) /* 0: keep every note */
        return loader_duration(L, v, 0, &r->events_max_age_ms);
    return LOADER_UNKNOWN_KEY;
}

int loader_redis(struct loader *L, const struct ynode *k, const struct ynode *v)
{
    struct redis_ctx c = {&L->cfg->redis, NULL};
    (void)k;
    int rc = loader_walk(L, v, "redis", redis_key, &c);
    if (rc == 0 && c.r->password_file && c.r->password_env)
        return loader_fail(L, c.password_env,
                           "set password_file or password_env in redis, "
                           "not both");
    return rc;
}

/* ---- engine ---- */

static int engine_key(struct loader *L, const char *key, const struct ynode *k,
                      const struct ynode *v, void *obj)
{
    struct cfg_engine *e = obj;
    (void)k;
    if (strcmp(key, "workers") == 0) {
        if (str_is(v, "auto")) {
            e->workers_auto = true;
            return 0;
        }
        if (ynode_is_null(v)) return 0;
        unsigned long n = 0;
        size_t i = 0;
        if (v->type == YNODE_SCALAR)
            for (; isdigit((unsigned char)v->str[i]) && i < 4; i++)
                n = n * 10 + (unsigned long)(v->str[i] - '0');
        if (v->type != YNODE_SCALAR || i == 0 || i != v->len || n < 1 || n > 256) {
            char tmp[160];
            return loader_fail(L, v, "expected auto or an integer from 1 to 256, got %s",
                               loader_show(v, tmp, sizeof tmp));
        }
        e->workers_auto = false;
        e->workers = (uint32_t)n;
        return 0;
    }
    if (strcmp(key, "ehlo") == 0) {
        int rc = loader_str(L, v, &e->ehlo);
        if (rc == 0 && e->ehlo && loader_check_host(e->ehlo)) {
            char tmp[160];
            return loader_fail(L, v, "expected a host name, got %s",
                               loader_show(v, tmp, sizeof tmp));
        }
        return rc;
    }
    if (strcmp(key, "consumer") == 0) return loader_str(L, v, &e->consumer);
    if (strcmp(key, "batch") == 0) return loader_u32(L, v, 1, 100000, &e->batch);
    if (strcmp(key, "max_inflight") == 0) return loader_u32(L, v, 1, 10000000, &e->max_inflight);
    if (strcmp(key, "claim_idle") == 0) return loader_duration(L, v, 1000, &e->claim_idle_ms);
    if (strcmp(key, "idempotency_window") == 0)
        return loader_duration(L, v, 1000, &e->idempotency_window_ms);
    if (strcmp(key, "shutdown_grace") == 0) return loader_duration(L, v, 0, &e->shutdown_grace_ms);
    if (strcmp(key, "forget_consumers") == 0) /* 0: never */
        return loader_duration(L, v, 0, &e->forget_consumers_ms);
    if (strcmp(key, "max_field_bytes") == 0)
        return loader_size(L, v, 1024, 1u << 30, &e->max_field_bytes);
    if (strcmp(key, "max_message_bytes") == 0)
        return loader_size(L, v, 1024, 1u << 30, &e->max_message_bytes);
    if (strcmp(key, "max_reply_bytes") == 0)
        return loader_size(L, v, 64u << 10, 1u << 31, &e->max_reply_bytes);
    return LOADER_UNKNOWN_KEY;
}

int loader_engine(struct loader *L, const struct ynode *k, const struct ynode *v)
{
    (void)k;
    return loader_walk(L, v, "engine", engine_key, &L->cfg->engine);
}

/* ---- egress ---- */

static int pool_key(struct loader *L, const char *key, const struct ynode *k, const struct ynode *v,
                    void *obj)
{
    struct cfg_egress_pool *p = obj;
    (void)k;
    if (strcmp(key, "ips") == 0) return loader_strlist(L, v, loader_check_ip, true, &p->ips);
    if (strcmp(key, "ehlo") == 0) {
        int rc = loader_str(L, v, &p->ehlo);
        if (rc == 0 && p->ehlo && loader_check_host(p->ehlo)) {
            char tmp[160];
            return loader_fail(L, v, "expected a host name, got %s",
                               loader_show(v, tmp, sizeof tmp));
        }
        return rc;
    }
    return LOADER_UNKNOWN_KEY;
}

int loader_egress(struct loader *L, const struct ynode *k, const struct ynode *v)
{
    struct config *cfg = L->cfg;
    if (ynode_is_null(v)) return 0;
    int rc = loader_check_map(L, v, "egress");
    if (rc) return rc;
    cfg->egress = calloc(v->n_children / 2 + 1, sizeof(*cfg->egress));
    if (!cfg->egress) return loader_oom(L);
    bool have_default = false;
    for (const struct ynode *key = v->child; key && key->next; key = key->next->next) {
        const struct ynode *val = key->next;
        if ((rc = loader_name_key(L, key, "egress pool"))) return rc;
        struct cfg_egress_pool *p = &cfg->egress[cfg->n_egress++];
        if (!(p->name = strdup(key->str))) return loader_oom(L);
        if (strcmp(p->name, "default") == 0) have_default = true;
        if (val->type == YNODE_MAP) {
            char where[96];
            snprintf(where, sizeof where, "egress.%s", p->name);
            rc = loader_walk(L, val, where, pool_key, p);
        } else {
            rc = loader_strlist(L, val, loader_check_ip, true, &p->ips);
        }
        if (rc) return rc;
    }
    if (!have_default) return loader_fail(L, k, "egress has no pool named 'default'");
    return 0;
}

/* ---- dns ---- */

static int dns_key(struct loader *L, const char *key, const struct ynode *k, const struct ynode *v,
                   void *obj)
{
    struct cfg_dns *d = obj;
    (void)k;
    if (strcmp(key, "servers") == 0)
        return loader_strlist(L, v, loader_check_dns_server, true, &d->servers);
    return LOADER_UNKNOWN_KEY;
}

int loader_dns(struct loader *L, const struct ynode *k, const struct ynode *v)
{
    (void)k;
    return loader_walk(L, v, "dns", dns_key, &L->cfg->dns);
}

static int metrics_key(struct loader *L, const char *key, const struct ynode *k,
                       const struct ynode *v, void *obj)
{
    struct cfg_metrics *m = obj;
    (void)k;
    /* Only the path: the token is read when the endpoint starts, like the
     * other secrets, so check-config does not need to be able to read it. */
    if (strcmp(key, "token_file") == 0)
        return loader_str(L, v, &m->token_file);
    if (strcmp(key, "listen") != 0)
        return LOADER_UNKNOWN_KEY;
    int rc = loader_str(L, v, &m->listen);
    if (rc)
        return rc;
    struct sockaddr_storage sa;
    unsigned len;
    if (config_parse_listen(m->listen, &sa, &len) < 0)
        return loader_fail(L, v, "metrics.listen: expected IP:PORT or [IPv6]:PORT, got '%s'",
                           m->listen);
    return 0;
}

int loader_metrics(struct loader *L, const struct ynode *k, const struct ynode *v)
{
    (void)k;
    return loader_walk(L, v, "metrics", metrics_key, &L->cfg->metrics);
}

/* ---- sender, dnsbl ---- */

static int sender_key(struct loader *L, const char *key, const struct ynode *k,
                      const struct ynode *v, void *obj)
{
    struct cfg_sender *s = obj;
    char tmp[160];
    (void)k;
    if (strcmp(key, "address") == 0) {
        int rc = loader_str(L, v, &s->address);
        if (rc == 0 && s->address && loader_check_address(s->address))
            return loader_fail(L, v, "expected %s, got %s", loader_check_address(s->address),
                               loader_show(v, tmp, sizeof tmp));
        return rc;
    }
    if (strcmp(key, "spf_recheck") == 0) return loader_duration(L, v, 1000, &s->spf_recheck_ms);
    return LOADER_UNKNOWN_KEY;
}

int loader_sender(struct loader *L, const struct ynode *k, const struct ynode *v)
{
    (void)k;
    return loader_walk(L, v, "sender", sender_key, &L->cfg->sender);
}

int loader_dnsbl(struct loader *L, const struct ynode *k, const struct ynode *v)
{
    (void)k;
    return loader_strlist(L, v, loader_check_domain, true, &L->cfg->dnsbl);
}

/* ---- delivery ---- */

static int timeouts_key(struct loader *L, const char *key, const struct ynode *k,
                        const struct ynode *v, void *obj)
{
    struct cfg_timeouts *t = obj;
    (void)k;
    if (strcmp(key, "connect") == 0) return loader_duration(L, v, 1, &t->connect_ms);
    if (strcmp(key, "banner") == 0) return loader_duration(L, v, 1, &t->banner_ms);
    if (strcmp(key, "command") == 0) return loader_duration(L, v, 1, &t->command_ms);
    if (strcmp(key, "data_block") == 0) return loader_duration(L, v, 1, &t->data_block_ms);
    if (strcmp(key, "data_end") == 0) return loader_duration(L, v, 1, &t->data_end_ms);
    if (strcmp(key, "idle") == 0) return loader_duration(L, v, 1, &t->idle_ms);
    return LOADER_UNKNOWN_KEY;
}

static int retry_list(struct loader *L, const struct ynode *v, struct cfg_delivery *d)
{
    if (ynode_is_null(v)) return 0;
    if (v->type == YNODE_MAP)
        return loader_fail(L, v, "expected a list of durations, got a mapping");
    const struct ynode *first = v->type == YNODE_SEQ ? v->child : v;
    size_t n = v->type == YNODE_SEQ ? v->n_children : 1;
    if (n == 0) return loader_fail(L, v, "retry needs at least one step");
    if (n > RETRY_MAX_STEPS)
        return loader_fail(L, v, "retry has %zu steps, at most %d are allowed", n, RETRY_MAX_STEPS);
    int64_t *steps = calloc(n, sizeof(*steps));
    if (!steps) return loader_oom(L);
    size_t i = 0;
    for (const struct ynode *it = first; it && i < n; it = it->next) {
        if (ynode_is_null(it)) {
            free(steps);
            return loader_fail(L, it, "empty list item");
        }
        int rc = loader_duration(L, it, 1000, &steps[i++]);
        if (rc) {
            free(steps);
            return rc;
        }
    }
    free(d->retry_ms);
    d->retry_ms = steps;
    d->n_retry = n;
    return 0;
}

static int delivery_key(struct loader *L, const char *key, const struct ynode *k,
                        const struct ynode *v, void *obj)
{
    struct cfg_delivery *d = obj;
    (void)k;
    if (strcmp(key, "port") == 0) return loader_port(L, v, &d->port);
    if (strcmp(key, "tls") == 0) return loader_tls(L, k, v, &d->tls);
    if (strcmp(key, "ca_file") == 0) return loader_str(L, v, &d->ca_file);
    if (strcmp(key, "retry") == 0) return retry_list(L, v, d);
    if (strcmp(key, "max_age") == 0) return loader_duration(L, v, 1000, &d->max_age_ms);
    if (strcmp(key, "timeouts") == 0)
        return loader_walk(L, v, "delivery.timeouts", timeouts_key, &d->timeouts);
    return LOADER_UNKNOWN_KEY;
}

int loader_delivery(struct loader *L, const struct ynode *k, const struct ynode *v)
{
    (void)k;
    return loader_walk(L, v, "delivery", delivery_key, &L->cfg->delivery);
}

/* ---- providers ---- */

static int provider_key(struct loader *L, const char *key, const struct ynode *k,
                        const struct ynode *v, void *obj)
{
    struct cfg_provider *p = obj;
    (void)k;
    if (strcmp(key, "mx") == 0) return loader_strlist(L, v, loader_check_pattern, true, &p->mx);
    if (strcmp(key, "connections") == 0) return loader_u32(L, v, 1, 100000, &p->connections);
    if (strcmp(key, "rate") == 0) return loader_rate(L, v, &p->rate);
    if (strcmp(key, "messages_per_connection") == 0)
        return loader_u32(L, v, 1, 1000000, &p->messages_per_connection);
    if (strcmp(key, "tls") == 0) return loader_tls(L, k, v, &p->tls);
    if (strcmp(key, "per_site") == 0) {
        p->per_site_given = true;
        return loader_bool(L, v, &p->per_site);
    }
    return LOADER_UNKNOWN_KEY;
}

int loader_providers(struct loader *L, const struct ynode *k, const struct ynode *v)
{
    struct config *cfg = L->cfg;
    (void)k;
    if (ynode_is_null(v)) return 0;
    int rc = loader_check_map(L, v, "providers");
    if (rc) return rc;
    /* One spare slot: load.c adds "default" when it is not configured. */
    cfg->providers = calloc(v->n_children / 2 + 1, sizeof(*cfg->providers));
    if (!cfg->providers) return loader_oom(L);
    for (const struct ynode *key = v->child; key && key->next; key = key->next->next) {
        if ((rc = loader_name_key(L, key, "provider"))) return rc;
        struct cfg_provider *p = &cfg->providers[cfg->n_providers++];
        config_provider_defaults(p);
        if (!(p->name = strdup(key->str))) return loader_oom(L);
        char where[96];
        snprintf(where, sizeof where, "providers.%s", p->name);
        if ((rc = loader_walk(L, key->next, where, provider_key, p))) return rc;
    }
    return 0;
}

/* ---- recipients ---- */

/* recipients.exempt: a priority or a list of them ([high]). */
static int exempt_list(struct loader *L, const struct ynode *k, const struct ynode *v,
                       struct cfg_recipients *r)
{
    r->exempt_mask = 0;
    if (ynode_is_null(v)) return 0;
    if (v->type == YNODE_MAP)
        return loader_fail(L, v, "expected a list of priorities like [high], got a mapping");
    const struct ynode *first = v->type == YNODE_SEQ ? v->child : v;
    size_t n = v->type == YNODE_SEQ ? v->n_children : 1;
    size_t i = 0;
    for (const struct ynode *it = first; it && i < n; it = it->next, i++) {
        if (ynode_is_null(it)) return loader_fail(L, it, "empty list item");
        int prio = -1;
        int rc = loader_enum(L, k, it, &cfg_enum_priority, &prio);
        if (rc) return rc;
        r->exempt_mask |= 1u << prio;
    }
    return 0;
}

static int recipients_key(struct loader *L, const char *key, const struct ynode *k,
                          const struct ynode *v, void *obj)
{
    struct cfg_recipients *r = obj;
    (void)k;
    if (strcmp(key, "limit") == 0) {
        if (ynode_is_null(v)) return 0;
        if (v->type == YNODE_MAP)
            return loader_fail(L, v, "expected a list of rates like [3/h, 10/d], got a mapping");
        const struct ynode *first = v->type == YNODE_SEQ ? v->child : v;
        size_t n = v->type == YNODE_SEQ ? v->n_children : 1;
        if (n > RECIPIENT_LIMITS_MAX)
            return loader_fail(L, v, "at most %d recipient limits are allowed",
                               RECIPIENT_LIMITS_MAX);
        free(r->limits);
        r->limits = NULL;
        r->n_limits = 0;
        if (n == 0) return 0;
        if (!(r->limits = calloc(n, sizeof(*r->limits)))) return loader_oom(L);
        for (const struct ynode *it = first; it && r->n_limits < n; it = it->next) {
            if (ynode_is_null(it)) return loader_fail(L, it, "empty list item");
            int rc = loader_rate(L, it, &r->limits[r->n_limits]);
            if (rc) return rc;
            char tmp[160];
            if (r->limits[r->n_limits].count > CFG_RECIPIENT_CAP_MAX)
                return loader_fail(L, it, "a recipient cap counts at most %d sends, got %s",
                                   CFG_RECIPIENT_CAP_MAX, loader_show(it, tmp, sizeof tmp));
            r->n_limits++;
        }
        return 0;
    }
    if (strcmp(key, "exempt") == 0) return exempt_list(L, k, v, r);
    if (strcmp(key, "policy") == 0) {
        int x = (int)r->over_limit;
        int rc = loader_enum(L, k, v, &cfg_enum_rcpt_policy, &x);
        r->over_limit = (enum cfg_rcpt_policy)x;
        return rc;
    }
    return LOADER_UNKNOWN_KEY;
}

int loader_recipients(struct loader *L, const struct ynode *k, const struct ynode *v)
{
    (void)k;
    return loader_walk(L, v, "recipients", recipients_key, &L->cfg->recipients);
}

/* ---- routes ---- */

/* "host:port", "host", "[v6]:port", "[v6]" or a bare IPv6 literal; the port
 * defaults to def_port. On success *host is allocated. */
static const char *parse_hostport(const char *s, uint16_t def_port, char **host, uint16_t *port)
{
    static const char expected[] = "host:port like 127.0.0.1:2525 or [::1]:2525";
    const char *h = s, *p = NULL;
    size_t hlen;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end) return expected;
        h = s + 1;
        hlen = (size_t)(end - h);
        if (end[1] == ':')
            p = end + 2;
        else if (end[1] != '\0')
            return expected;
    } else {
        const char *colon = strchr(s, ':');
        if (colon && strchr(colon + 1, ':')) {
            hlen = strlen(s); /* bare IPv6 literal */
        } else if (colon) {
            hlen = (size_t)(colon - s);
            p = colon + 1;
        } else {
            hlen = strlen(s);
        }
    }
    if (hlen == 0 || hlen > 253) return expected;
    char buf[256];
    memcpy(buf, h, hlen);
    buf[hlen] = '\0';
    if (s[0] == '[' || strchr(buf, ':')) {
        if (loader_check_ip(buf) || !strchr(buf, ':')) return expected;
    } else if (loader_check_host(buf)) {
        return expected;
    }
    unsigned long pn = def_port;
    if (p) {
        size_t n = 0;
        pn = 0;
        for (; isdigit((unsigned char)p[n]) && n < 6; n++)
            pn = pn * 10 + (unsigned long)(p[n] - '0');
        if (n == 0 || p[n] != '\0' || pn < 1 || pn > 65535) return expected;
    }
    if (!(*host = strdup(buf))) return NULL;
    loader_lower(*host);
    *port = (uint16_t)pn;
    return NULL;
}

static int route_cmp(const void *a, const void *b)
{
    const struct cfg_route *x = a, *y = b;
    return strcmp(x->pattern, y->pattern);
}

/* Keys differing only in case are the same route, which the YAML-level
 * duplicate check cannot see. With the routes sorted, a second sighting of a
 * pattern while walking the keys in document order is the one to report. */
static int check_route_dups(struct loader *L, const struct ynode *map)
{
    struct config *cfg = L->cfg;
    bool any = false;
    for (size_t i = 0; i + 1 < cfg->n_routes && !any; i++)
        any = strcmp(cfg->routes[i].pattern, cfg->routes[i + 1].pattern) == 0;
    if (!any) return 0;
    bool *seen = calloc(cfg->n_routes, sizeof(*seen));
    if (!seen) return loader_oom(L);
    int rc = 0;
    for (const struct ynode *key = map->child; key && key->next && !rc; key = key->next->next) {
        size_t lo = 0, hi = cfg->n_routes;
        while (lo < hi) { /* first route whose pattern is >= key, ignoring case */
            size_t mid = lo + (hi - lo) / 2;
            if (strcasecmp(cfg->routes[mid].pattern, key->str) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < cfg->n_routes && strcasecmp(cfg->routes[lo].pattern, key->str) == 0) {
            if (seen[lo]) {
                char tmp[160];
                rc = loader_fail(L, key, "duplicate route %s (case does not matter)",
                                 loader_show(key, tmp, sizeof tmp));
            }
            seen[lo] = true;
        }
    }
    free(seen);
    return rc;
}

int loader_routes(struct loader *L, const struct ynode *k, const struct ynode *v)
{
    struct config *cfg = L->cfg;
    char tmp[160];
    (void)k;
    if (ynode_is_null(v)) return 0;
    int rc = loader_check_map(L, v, "routes");
    if (rc) return rc;
    size_t n = v->n_children / 2;
    if (n == 0) return 0;
    if (!(cfg->routes = calloc(n, sizeof(*cfg->routes)))) return loader_oom(L);
    for (const struct ynode *key = v->child; key && key->next; key = key->next->next) {
        const struct ynode *val = key->next;
        struct cfg_route *r = &cfg->routes[cfg->n_routes];
        if (!(r->pattern = strdup(key->str))) return loader_oom(L);
        cfg->n_routes++;
        loader_lower(r->pattern);
        const char *expected = loader_check_pattern(r->pattern);
        if (expected)
            return loader_fail(L, key, "expected %s as route pattern, got %s", expected,
                               loader_show(key, tmp, sizeof tmp));
        if (ynode_is_null(val) || val->type != YNODE_SCALAR || strlen(val->str) != val->len)
            return loader_fail(L, val, "expected host:port like 127.0.0.1:2525, got %s",
                               loader_show(val, tmp, sizeof tmp));
        expected = parse_hostport(val->str, cfg->delivery.port, &r->host, &r->port);
        if (expected)
            return loader_fail(L, val, "expected %s, got %s", expected,
                               loader_show(val, tmp, sizeof tmp));
        if (!r->host) return loader_oom(L);
    }
    qsort(cfg->routes, cfg->n_routes, sizeof(*cfg->routes), route_cmp);
    return check_route_dups(L, v);
}

/* ---- bounce_rules ---- */

static const char *const bounce_categories[] = {
    "bad-mailbox", "bad-domain", "policy",  "spam-block", "quota", "greylist",
    "rate-limit",  "network",    "tls",     "timeout",    "protocol", "other",
};

/* An enhanced-code prefix: "5", "5.7" or "5.7.1" (class 2, 4 or 5). */
static bool enhanced_prefix_ok(const char *s)
{
    if (!(s[0] == '2' || s[0] == '4' || s[0] == '5')) return false;
    s++;
    for (int part = 0; *s && part < 2; part++) {
        if (*s++ != '.') return false;
        int digits = 0;
        while (isdigit((unsigned char)*s) && digits < 3) {
            s++;
            digits++;
        }
        if (digits == 0) return false;
    }
    return *s == '\0';
}

struct bounce_ctx {
    struct cfg_bounce_rule *rule;
    const struct ynode *match;
};

static int bounce_rule_key(struct loader *L, const char *key, const struct ynode *k,
                           const struct ynode *v, void *obj)
{
    struct bounce_ctx *c = obj;
    struct cfg_bounce_rule *b = c->rule;
    char tmp[160];
    (void)k;
    if (strcmp(key, "match") == 0) {
        c->match = v;
        return loader_str(L, v, &b->match);
    }
    if (strcmp(key, "code") == 0) {
        int rc = loader_str(L, v, &b->code);
        if (rc || !b->code) return rc;
        if (!enhanced_prefix_ok(b->code))
            return loader_fail(L, v, "expected an enhanced status code prefix like 5.7.1 or 5.7, "
                                     "got %s",
                               loader_show(v, tmp, sizeof tmp));
        return 0;
    }
    if (strcmp(key, "category") == 0) {
        if (ynode_is_null(v)) return 0;
        if (v->type == YNODE_SCALAR)
            for (size_t i = 0; i < HERALD_ARRAY_LEN(bounce_categories); i++)
                if (strcmp(v->str, bounce_categories[i]) == 0) {
                    b->category = bounce_categories[i];
                    return 0;
                }
        return loader_fail(L, v,
                           "expected a category (bad-mailbox, bad-domain, policy, spam-block, "
                           "quota, greylist, rate-limit, network, tls, timeout, protocol, "
                           "other), got %s",
                           loader_show(v, tmp, sizeof tmp));
    }
    return LOADER_UNKNOWN_KEY;
}

/* A list of { match, code, category }. Each regex is compiled here, once:
 * classification only runs regexec. */
int loader_bounce_rules(struct loader *L, const struct ynode *k, const struct ynode *v)
{
    struct config *cfg = L->cfg;
    if (ynode_is_null(v)) return 0;
    if (v->type != YNODE_SEQ)
        return loader_fail(L, v, "expected a list of {match, code, category} rules");
    if (v->n_children > 1000) return loader_fail(L, v, "at most 1000 bounce rules are allowed");
    if (v->n_children == 0) return 0;
    if (!(cfg->bounce_rules = calloc(v->n_children, sizeof(*cfg->bounce_rules))))
        return loader_oom(L);
    int idx = 0;
    for (const struct ynode *it = v->child; it; it = it->next, idx++) {
        struct cfg_bounce_rule *b = &cfg->bounce_rules[cfg->n_bounce_rules++];
        if (it->type != YNODE_MAP)
            return loader_fail(L, it, "expected a rule like {match: \"regex\", category: "
                                      "policy}");
        char where[48];
        snprintf(where, sizeof where, "bounce_rules[%d]", idx);
        struct bounce_ctx c = {b, NULL};
        int rc = loader_walk(L, it, where, bounce_rule_key, &c);
        if (rc) return rc;
        if (!b->match) return loader_fail(L, it, "missing required key 'match' in %s", where);
        if (!b->category)
            return loader_fail(L, it, "missing required key 'category' in %s", where);
        int err = regcomp(&b->re, b->match, REG_EXTENDED | REG_ICASE | REG_NOSUB);
        if (err) {
            char msg[160];
            regerror(err, &b->re, msg, sizeof msg);
            return loader_fail(L, c.match, "bad regular expression in %s: %s", where, msg);
        }
        b->compiled = true;
    }
    (void)k;
    return 0;
}
