/* YAML -> struct config. libyaml builds the document; this file walks it
 * with one small function per section. Every node carries its position, so
 * every error is "file:line:col: message" pointing at the key or value at
 * fault. All memory comes from the snapshot's arena: config_free is one call. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <yaml.h>

#include "herald/config.h"

struct ctx {
    const char *file;
    yaml_document_t *doc;
    struct config *cfg;
    char *err;
    size_t errlen;
    bool failed;
};

__attribute__((format(printf, 3, 4))) static int fail(struct ctx *c, const yaml_node_t *n,
                                                      const char *fmt, ...)
{
    if (c->failed)
        return -HERR_CONFIG;
    c->failed = true;
    int off = snprintf(c->err, c->errlen, "%s:%zu:%zu: ", c->file,
                       n ? n->start_mark.line + 1 : 1, n ? n->start_mark.column + 1 : 1);
    if (off < 0 || (size_t)off >= c->errlen)
        return -HERR_CONFIG;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + off, c->errlen - (size_t)off, fmt, ap);
    va_end(ap);
    return -HERR_CONFIG;
}

static yaml_node_t *node(struct ctx *c, int id)
{
    return yaml_document_get_node(c->doc, id);
}

static const char *scalar(const yaml_node_t *n)
{
    return n && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static char *cdup(struct ctx *c, const char *s)
{
    return arena_strndup(&c->cfg->mem, s, strlen(s));
}

/* Walk a mapping: for each key, call fn; duplicate keys are an error. */
typedef int (*pair_fn)(struct ctx *c, const char *where, yaml_node_t *key, const char *k,
                       yaml_node_t *val, void *arg);

static int each_pair(struct ctx *c, const char *where, yaml_node_t *map, pair_fn fn, void *arg)
{
    if (!map || map->type != YAML_MAPPING_NODE)
        return fail(c, map, "%s must be a mapping", where);
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node(c, p->key), *v = node(c, p->value);
        const char *ks = scalar(k);
        if (!ks)
            return fail(c, k, "keys in %s must be plain strings", where);
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++)
            if (strcmp(scalar(node(c, q->key)) ? scalar(node(c, q->key)) : "", ks) == 0)
                return fail(c, k, "duplicate key '%s' in %s", ks, where);
        int rc = fn(c, where, k, ks, v, arg);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int unknown(struct ctx *c, const char *where, yaml_node_t *key, const char *k)
{
    return fail(c, key, "unknown key '%s' in %s", k, where);
}

/* ---- typed values ---- */

static int get_str(struct ctx *c, yaml_node_t *v, const char *what, char **out)
{
    const char *s = scalar(v);
    if (!s)
        return fail(c, v, "%s must be a string", what);
    *out = cdup(c, s);
    return *out ? 0 : -ENOMEM;
}

static int get_uint(struct ctx *c, yaml_node_t *v, const char *what, uint64_t min, uint64_t max,
                    uint64_t *out)
{
    const char *s = scalar(v);
    char *end;
    if (!s || !isdigit((unsigned char)s[0]))
        return fail(c, v, "%s must be a whole number, got '%s'", what, s ? s : "(not a scalar)");
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || *end || x < min || x > max)
        return fail(c, v, "%s must be a whole number from %llu to %llu, got '%s'", what,
                    (unsigned long long)min, (unsigned long long)max, s);
    *out = x;
    return 0;
}

static int get_u32(struct ctx *c, yaml_node_t *v, const char *what, uint32_t min, uint32_t max,
                   uint32_t *out)
{
    uint64_t x;
    int rc = get_uint(c, v, what, min, max, &x);
    if (rc == 0)
        *out = (uint32_t)x;
    return rc;
}

static int get_duration(struct ctx *c, yaml_node_t *v, const char *what, int64_t *out)
{
    const char *s = scalar(v);
    if (!s || config_parse_duration(s, out) < 0)
        return fail(c, v, "%s: expected a duration like 30s, 5m, 2h or 2d, got '%s'", what,
                    s ? s : "(not a scalar)");
    return 0;
}

static int get_rate(struct ctx *c, yaml_node_t *v, const char *what, struct cfg_rate *out)
{
    const char *s = scalar(v);
    if (!s || config_parse_rate(s, out) < 0)
        return fail(c, v, "%s: expected a rate like 3600/h, 60/m or 5/s, got '%s'", what,
                    s ? s : "(not a scalar)");
    return 0;
}

static int get_bool(struct ctx *c, yaml_node_t *v, const char *what, bool *out)
{
    const char *s = scalar(v);
    if (s && (strcmp(s, "true") == 0 || strcmp(s, "yes") == 0 || strcmp(s, "on") == 0)) {
        *out = true;
        return 0;
    }
    if (s && (strcmp(s, "false") == 0 || strcmp(s, "no") == 0 || strcmp(s, "off") == 0)) {
        *out = false;
        return 0;
    }
    return fail(c, v, "%s must be true or false, got '%s'", what, s ? s : "(not a scalar)");
}

static int get_tls(struct ctx *c, yaml_node_t *v, const char *what, enum cfg_tls_policy *out)
{
    const char *s = scalar(v);
    if (s && strcmp(s, "opportunistic") == 0)
        *out = CFG_TLS_OPPORTUNISTIC;
    else if (s && strcmp(s, "required") == 0)
        *out = CFG_TLS_REQUIRED;
    else if (s && strcmp(s, "verify") == 0)
        *out = CFG_TLS_VERIFY;
    else
        return fail(c, v, "%s must be opportunistic, required or verify, got '%s'", what,
                    s ? s : "(not a scalar)");
    return 0;
}

static int get_strlist(struct ctx *c, yaml_node_t *v, const char *what, struct cfg_strlist *out)
{
    if (scalar(v)) { /* a single string is a list of one */
        out->items = arena_alloc(&c->cfg->mem, sizeof(char *));
        if (!out->items)
            return -ENOMEM;
        out->n = 1;
        return get_str(c, v, what, &out->items[0]);
    }
    if (!v || v->type != YAML_SEQUENCE_NODE)
        return fail(c, v, "%s must be a list", what);
    size_t n = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    out->items = arena_alloc(&c->cfg->mem, (n ? n : 1) * sizeof(char *));
    if (!out->items)
        return -ENOMEM;
    out->n = 0;
    for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top;
         it++) {
        int rc = get_str(c, node(c, *it), what, &out->items[out->n]);
        if (rc < 0)
            return rc;
        out->n++;
    }
    return 0;
}

static bool is_ip(const char *s)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, s, buf) == 1 || inet_pton(AF_INET6, s, buf) == 1;
}

/* ---- sections ---- */

static int redis_key(struct ctx *c, const char *where, yaml_node_t *key, const char *k,
                     yaml_node_t *v, void *arg)
{
    struct cfg_redis *r = arg;
    if (strcmp(k, "url") == 0) {
        int rc = get_str(c, v, "redis.url", &r->url);
        if (rc == 0 && strncmp(r->url, "redis://", 8) != 0 && strncmp(r->url, "rediss://", 9) != 0)
            return fail(c, v, "redis.url must start with redis:// or rediss://");
        return rc;
    }
    if (strcmp(k, "jobs") == 0)
        return get_str(c, v, "redis.jobs", &r->jobs);
    if (strcmp(k, "group") == 0)
        return get_str(c, v, "redis.group", &r->group);
    if (strcmp(k, "events") == 0)
        return get_str(c, v, "redis.events", &r->events);
    if (strcmp(k, "prefix") == 0)
        return get_str(c, v, "redis.prefix", &r->prefix);
    if (strcmp(k, "password_file") == 0)
        return get_str(c, v, "redis.password_file", &r->password_file);
    if (strcmp(k, "password_env") == 0)
        return get_str(c, v, "redis.password_env", &r->password_env);
    return unknown(c, where, key, k);
}

static int engine_key(struct ctx *c, const char *where, yaml_node_t *key, const char *k,
                      yaml_node_t *v, void *arg)
{
    struct cfg_engine *e = arg;
    if (strcmp(k, "workers") == 0) {
        if (scalar(v) && strcmp(scalar(v), "auto") == 0) {
            e->workers = 0;
            return 0;
        }
        return get_u32(c, v, "engine.workers (or auto)", 1, 256, &e->workers);
    }
    if (strcmp(k, "ehlo") == 0)
        return get_str(c, v, "engine.ehlo", &e->ehlo);
    if (strcmp(k, "consumer") == 0)
        return get_str(c, v, "engine.consumer", &e->consumer);
    if (strcmp(k, "batch") == 0)
        return get_u32(c, v, "engine.batch", 1, 100000, &e->batch);
    if (strcmp(k, "max_inflight") == 0)
        return get_u32(c, v, "engine.max_inflight", 1, 10000000, &e->max_inflight);
    if (strcmp(k, "claim_idle") == 0)
        return get_duration(c, v, "engine.claim_idle", &e->claim_idle_ms);
    if (strcmp(k, "shutdown_grace") == 0)
        return get_duration(c, v, "engine.shutdown_grace", &e->shutdown_grace_ms);
    if (strcmp(k, "max_field_bytes") == 0)
        return get_u32(c, v, "engine.max_field_bytes", 64, 1u << 30, &e->max_field_bytes);
    if (strcmp(k, "max_message_bytes") == 0)
        return get_u32(c, v, "engine.max_message_bytes", 1024, 1u << 30, &e->max_message_bytes);
    return unknown(c, where, key, k);
}

static int egress_pool_key(struct ctx *c, const char *where, yaml_node_t *key, const char *k,
                           yaml_node_t *v, void *arg)
{
    struct cfg_egress_pool *p = arg;
    if (strcmp(k, "ips") == 0)
        return get_strlist(c, v, "egress ips", &p->ips);
    if (strcmp(k, "ehlo") == 0)
        return get_str(c, v, "egress ehlo", &p->ehlo);
    return unknown(c, where, key, k);
}

static int egress_entry(struct ctx *c, const char *where, yaml_node_t *key, const char *k,
                        yaml_node_t *v, void *arg)
{
    (void)where;
    (void)key;
    (void)arg;
    struct cfg_egress_pool *p = &c->cfg->egress[c->cfg->n_egress++];
    p->name = cdup(c, k);
    char w[160];
    snprintf(w, sizeof w, "egress.%s", k);
    int rc = v && v->type == YAML_MAPPING_NODE ? each_pair(c, w, v, egress_pool_key, p)
                                               : get_strlist(c, v, w, &p->ips);
    if (rc < 0)
        return rc;
    for (size_t i = 0; i < p->ips.n; i++)
        if (!is_ip(p->ips.items[i]))
            return fail(c, v, "%s: '%s' is not an IPv4 or IPv6 address", w, p->ips.items[i]);
    return 0;
}

static size_t map_len(const yaml_node_t *n)
{
    return n && n->type == YAML_MAPPING_NODE
               ? (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start)
               : 0;
}

static int dns_key(struct ctx *c, const char *where, yaml_node_t *key, const char *k,
                   yaml_node_t *v, void *arg)
{
    struct cfg_dns *d = arg;
    if (strcmp(k, "servers") == 0)
        return get_strlist(c, v, "dns.servers", &d->servers);
    return unknown(c, where, key, k);
}

/* "host:port", "host", "[v6]:port" */
static int parse_hostport(struct ctx *c, yaml_node_t *v, const char *what, char **host,
                          uint16_t *port)
{
    const char *s = scalar(v);
    if (!s || !*s)
        return fail(c, v, "%s must be host:port", what);
    const char *h = s, *hend, *p = NULL;
    if (*s == '[') {
        h = s + 1;
        hend = strchr(h, ']');
        if (!hend || (hend[1] && hend[1] != ':'))
            return fail(c, v, "%s: bad [IPv6]:port '%s'", what, s);
        if (hend[1] == ':')
            p = hend + 2;
    } else {
        hend = strrchr(s, ':');
        if (hend && strchr(s, ':') != hend)
            return fail(c, v, "%s: write IPv6 addresses as [addr]:port, got '%s'", what, s);
        if (hend)
            p = hend + 1;
        else
            hend = s + strlen(s);
    }
    if (hend == h)
        return fail(c, v, "%s: missing host in '%s'", what, s);
    *host = arena_strndup(&c->cfg->mem, h, (size_t)(hend - h));
    *port = 0;
    if (p) {
        char *end;
        long x = strtol(p, &end, 10);
        if (!*p || *end || x < 1 || x > 65535)
            return fail(c, v, "%s: port must be 1..65535 in '%s'", what, s);
        *port = (uint16_t)x;
    }
    return *host ? 0 : -ENOMEM;
}

static int route_entry(struct ctx *c, const char *where, yaml_node_t *key, const char *k,
                       yaml_node_t *v, void *arg)
{
    (void)where;
    (void)arg;
    if (!*k || (k[0] == '*' && k[1] && k[1] != '.') || strchr(k + 1, '*'))
        return fail(c, key, "route pattern must be a domain, *.suffix or *, got '%s'", k);
    struct cfg_route *r = &c->cfg->routes[c->cfg->n_routes++];
    r->pattern = cdup(c, k);
    char w[300];
    snprintf(w, sizeof w, "routes.%s", k);
    return parse_hostport(c, v, w, &r->host, &r->port);
}

static int dkim_key(struct ctx *c, const char *where, yaml_node_t *key, const char *k,
                    yaml_node_t *v, void *arg)
{
    struct cfg_dkim *d = arg;
    if (strcmp(k, "selector") == 0)
        return get_str(c, v, "dkim.selector", &d->selector);
    if (strcmp(k, "key") == 0)
        return get_str(c, v, "dkim.key", &d->key);
    if (strcmp(k, "algorithm") == 0) {
        int rc = get_str(c, v, "dkim.algorithm", &d->algorithm);
        if (rc == 0 && strcmp(d->algorithm, "rsa-sha256") != 0 &&
            strcmp(d->algorithm, "ed25519-sha256") != 0)
            return fail(c, v, "dkim.algorithm must be rsa-sha256 or ed25519-sha256");
        return rc;
    }
    return unknown(c, where, key, k);
}

static int relay_key(struct ctx *c, const char *where, yaml_node_t *key, const char *k,
                     yaml_node_t *v, void *arg)
{
    struct cfg_relay *r = arg;
    if (strcmp(k, "host") == 0)
        return get_str(c, v, "relay.host", &r->host);
    if (strcmp(k, "port") == 0) {
        uint32_t p = 0;
        int rc = get_u32(c, v, "relay.port", 1, 65535, &p);
        r->port = (uint16_t)p;
        return rc;
    }
    if (strcmp(k, "tls") == 0) {
        const char *s = scalar(v);
        if (s && strcmp(s, "starttls") == 0)
            r->tls = CFG_RELAY_TLS_STARTTLS;
        else if (s && strcmp(s, "tls") == 0)
            r->tls = CFG_RELAY_TLS_IMPLICIT;
        else if (s && strcmp(s, "none") == 0)
            r->tls = CFG_RELAY_TLS_NONE;
        else
            return fail(c, v, "relay.tls must be starttls, tls or none, got '%s'", s ? s : "");
        return 0;
    }
    if (strcmp(k, "user") == 0)
        return get_str(c, v, "relay.user", &r->user);
    if (strcmp(k, "password_file") == 0)
        return get_str(c, v, "relay.password_file", &r->password_file);
    if (strcmp(k, "password_env") == 0)
        return get_str(c, v, "relay.password_env", &r->password_env);
    if (strcmp(k, "allow_plaintext_auth") == 0)
        return get_bool(c, v, "relay.allow_plaintext_auth", &r->allow_plaintext_auth);
    if (strcmp(k, "password") == 0)
        return fail(c, key, "relay.password must not be inline; use password_file or "
                            "password_env");
    return unknown(c, where, key, k);
}

static int tenant_key(struct ctx *c, const char *where, yaml_node_t *key, const char *k,
                      yaml_node_t *v, void *arg)
{
    struct cfg_tenant *t = arg;
    char w[200];
    if (strcmp(k, "from") == 0) {
        int rc = get_str(c, v, "from", &t->from);
        if (rc == 0) {
            const char *at = strrchr(t->from, '@');
            if (!at || at == t->from || !at[1] || strpbrk(t->from, " \t\r\n<>"))
                return fail(c, v, "from must be an address like reminders@example.com, got '%s'",
                            t->from);
        }
        return rc;
    }
    if (strcmp(k, "from_name") == 0)
        return get_str(c, v, "from_name", &t->from_name);
    if (strcmp(k, "reply_to") == 0)
        return get_str(c, v, "reply_to", &t->reply_to);
    if (strcmp(k, "domains") == 0)
        return get_strlist(c, v, "domains", &t->domains);
    if (strcmp(k, "dkim") == 0) {
        snprintf(w, sizeof w, "%s.dkim", where);
        return each_pair(c, w, v, dkim_key, &t->dkim);
    }
    if (strcmp(k, "relay") == 0) {
        snprintf(w, sizeof w, "%s.relay", where);
        int rc = each_pair(c, w, v, relay_key, &t->relay);
        if (rc == 0 && !t->relay.host)
            return fail(c, v, "%s needs a host", w);
        return rc;
    }
    if (strcmp(k, "tls") == 0)
        return get_tls(c, v, "tls", &t->tls);
    if (strcmp(k, "egress") == 0)
        return get_str(c, v, "egress", &t->egress);
    if (strcmp(k, "rate") == 0)
        return get_rate(c, v, "rate", &t->rate);
    if (strcmp(k, "weight") == 0)
        return get_u32(c, v, "weight", 1, 1000000, &t->weight);
    if (strcmp(k, "max_age") == 0)
        return get_duration(c, v, "max_age", &t->max_age_ms);
    return unknown(c, where, key, k);
}

static bool valid_tenant_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)s[i]) && s[i] != '_' && s[i] != '.' && s[i] != '-')
            return false;
    return true;
}

static int tenant_entry(struct ctx *c, const char *where, yaml_node_t *key, const char *k,
                        yaml_node_t *v, void *arg)
{
    (void)where;
    (void)arg;
    if (!valid_tenant_name(k))
        return fail(c, key, "tenant name '%s' must be 1-64 of A-Z a-z 0-9 _ . -", k);
    struct cfg_tenant *t = &c->cfg->tenants[c->cfg->n_tenants++];
    t->name = cdup(c, k);
    t->weight = 1;
    char w[100];
    snprintf(w, sizeof w, "tenants.%s", k);
    int rc = each_pair(c, w, v, tenant_key, t);
    if (rc < 0)
        return rc;
    if (!t->from)
        return fail(c, key, "tenant '%s' needs a from address", k);
    if (t->domains.n == 0) {
        t->domains.items = arena_alloc(&c->cfg->mem, sizeof(char *));
        if (!t->domains.items)
            return -ENOMEM;
        t->domains.items[0] = cdup(c, strrchr(t->from, '@') + 1);
        t->domains.n = 1;
    }
    if (t->relay.host && !t->relay.port)
        t->relay.port = t->relay.tls == CFG_RELAY_TLS_IMPLICIT ? 465 : 587;
    return 0;
}

static int timeouts_key(struct ctx *c, const char *where, yaml_node_t *key, const char *k,
                        yaml_node_t *v, void *arg)
{
    struct cfg_timeouts *t = arg;
    static const struct {
        const char *name;
        size_t off;
    } keys[] = {{"connect", offsetof(struct cfg_timeouts, connect_ms)},
                {"banner", offsetof(struct cfg_timeouts, banner_ms)},
                {"command", offsetof(struct cfg_timeouts, command_ms)},
                {"data_block", offsetof(struct cfg_timeouts, data_block_ms)},
                {"data_end", offsetof(struct cfg_timeouts, data_end_ms)},
                {"idle", offsetof(struct cfg_timeouts, idle_ms)}};
    for (size_t i = 0; i < HERALD_ARRAY_LEN(keys); i++)
        if (strcmp(k, keys[i].name) == 0) {
            int64_t *dst = (int64_t *)((char *)t + keys[i].off);
            int rc = get_duration(c, v, k, dst);
            if (rc == 0 && *dst == 0)
                return fail(c, v, "timeout %s must be more than 0", k);
            return rc;
        }
    return unknown(c, where, key, k);
}

static int delivery_key(struct ctx *c, const char *where, yaml_node_t *key, const char *k,
                        yaml_node_t *v, void *arg)
{
    struct cfg_delivery *d = arg;
    if (strcmp(k, "port") == 0) {
        uint32_t p = 0;
        int rc = get_u32(c, v, "delivery.port", 1, 65535, &p);
        d->port = (uint16_t)p;
        return rc;
    }
    if (strcmp(k, "tls") == 0)
        return get_tls(c, v, "delivery.tls", &d->tls);
    if (strcmp(k, "ca_file") == 0)
        return get_str(c, v, "delivery.ca_file", &d->ca_file);
    if (strcmp(k, "max_age") == 0)
        return get_duration(c, v, "delivery.max_age", &d->max_age_ms);
    if (strcmp(k, "timeouts") == 0)
        return each_pair(c, "delivery.timeouts", v, timeouts_key, &d->timeouts);
    if (strcmp(k, "retry") == 0) {
        struct cfg_strlist steps = {0};
        int rc = get_strlist(c, v, "delivery.retry", &steps);
        if (rc < 0)
            return rc;
        if (steps.n == 0)
            return fail(c, v, "delivery.retry needs at least one step");
        d->retry_ms = arena_alloc(&c->cfg->mem, steps.n * sizeof(int64_t));
        if (!d->retry_ms)
            return -ENOMEM;
        for (size_t i = 0; i < steps.n; i++)
            if (config_parse_duration(steps.items[i], &d->retry_ms[i]) < 0 || d->retry_ms[i] == 0)
                return fail(c, v, "delivery.retry: expected durations like 1m, got '%s'",
                            steps.items[i]);
        d->n_retry = steps.n;
        return 0;
    }
    return unknown(c, where, key, k);
}

static int provider_key(struct ctx *c, const char *where, yaml_node_t *key, const char *k,
                        yaml_node_t *v, void *arg)
{
    struct cfg_provider *p = arg;
    if (strcmp(k, "mx") == 0)
        return get_strlist(c, v, "mx", &p->mx);
    if (strcmp(k, "connections") == 0)
        return get_u32(c, v, "connections", 1, 100000, &p->connections);
    if (strcmp(k, "rate") == 0)
        return get_rate(c, v, "rate", &p->rate);
    if (strcmp(k, "messages_per_connection") == 0)
        return get_u32(c, v, "messages_per_connection", 1, 100000000,
                       &p->messages_per_connection);
    if (strcmp(k, "recipients_per_message") == 0)
        return get_u32(c, v, "recipients_per_message", 1, 1000, &p->recipients_per_message);
    if (strcmp(k, "tls") == 0)
        return get_tls(c, v, "tls", &p->tls);
    return unknown(c, where, key, k);
}

static int provider_entry(struct ctx *c, const char *where, yaml_node_t *key, const char *k,
                          yaml_node_t *v, void *arg)
{
    (void)where;
    (void)key;
    (void)arg;
    struct cfg_provider *p = &c->cfg->providers[c->cfg->n_providers++];
    p->name = cdup(c, k);
    char w[160];
    snprintf(w, sizeof w, "providers.%s", k);
    return each_pair(c, w, v, provider_key, p);
}

static int recipients_key(struct ctx *c, const char *where, yaml_node_t *key, const char *k,
                          yaml_node_t *v, void *arg)
{
    struct cfg_recipients *r = arg;
    if (strcmp(k, "limit") == 0) {
        struct cfg_strlist l = {0};
        int rc = get_strlist(c, v, "recipients.limit", &l);
        if (rc < 0)
            return rc;
        r->limits = arena_alloc(&c->cfg->mem, (l.n ? l.n : 1) * sizeof *r->limits);
        if (!r->limits)
            return -ENOMEM;
        for (size_t i = 0; i < l.n; i++)
            if (config_parse_rate(l.items[i], &r->limits[i]) < 0)
                return fail(c, v, "recipients.limit: expected rates like 3/h, got '%s'",
                            l.items[i]);
        r->n_limits = l.n;
        return 0;
    }
    if (strcmp(k, "policy") == 0) {
        int rc = get_str(c, v, "recipients.policy", &r->policy);
        if (rc == 0 && strcmp(r->policy, "defer") != 0 && strcmp(r->policy, "drop") != 0)
            return fail(c, v, "recipients.policy must be defer or drop, got '%s'", r->policy);
        return rc;
    }
    return unknown(c, where, key, k);
}

static int top_key(struct ctx *c, const char *where, yaml_node_t *key, const char *k,
                   yaml_node_t *v, void *arg)
{
    (void)arg;
    struct config *cfg = c->cfg;
    if (strcmp(k, "redis") == 0)
        return each_pair(c, "redis", v, redis_key, &cfg->redis);
    if (strcmp(k, "engine") == 0)
        return each_pair(c, "engine", v, engine_key, &cfg->engine);
    if (strcmp(k, "egress") == 0) {
        size_t n = map_len(v);
        cfg->egress = arena_alloc(&cfg->mem, (n + 1) * sizeof *cfg->egress);
        if (!cfg->egress)
            return -ENOMEM;
        memset(cfg->egress, 0, (n + 1) * sizeof *cfg->egress);
        return each_pair(c, "egress", v, egress_entry, NULL);
    }
    if (strcmp(k, "dns") == 0)
        return each_pair(c, "dns", v, dns_key, &cfg->dns);
    if (strcmp(k, "routes") == 0) {
        size_t n = map_len(v);
        cfg->routes = arena_alloc(&cfg->mem, (n ? n : 1) * sizeof *cfg->routes);
        if (!cfg->routes)
            return -ENOMEM;
        memset(cfg->routes, 0, (n ? n : 1) * sizeof *cfg->routes);
        return each_pair(c, "routes", v, route_entry, NULL);
    }
    if (strcmp(k, "tenants") == 0) {
        size_t n = map_len(v);
        cfg->tenants = arena_alloc(&cfg->mem, (n ? n : 1) * sizeof *cfg->tenants);
        if (!cfg->tenants)
            return -ENOMEM;
        memset(cfg->tenants, 0, (n ? n : 1) * sizeof *cfg->tenants);
        return each_pair(c, "tenants", v, tenant_entry, NULL);
    }
    if (strcmp(k, "delivery") == 0)
        return each_pair(c, "delivery", v, delivery_key, &cfg->delivery);
    if (strcmp(k, "providers") == 0) {
        size_t n = map_len(v);
        cfg->providers = arena_alloc(&cfg->mem, (n + 1) * sizeof *cfg->providers);
        if (!cfg->providers)
            return -ENOMEM;
        memset(cfg->providers, 0, (n + 1) * sizeof *cfg->providers);
        return each_pair(c, "providers", v, provider_entry, NULL);
    }
    if (strcmp(k, "recipients") == 0)
        return each_pair(c, "recipients", v, recipients_key, &cfg->recipients);
    return unknown(c, where, key, k);
}

/* ---- defaults and cross-checks ---- */

static char *default_str(struct ctx *c, char *cur, const char *def)
{
    return cur ? cur : cdup(c, def);
}

static int finish(struct ctx *c, yaml_node_t *root)
{
    struct config *cfg = c->cfg;
    char host[256] = "localhost";
    gethostname(host, sizeof host - 1);
    struct cfg_redis *r = &cfg->redis;
    r->url = default_str(c, r->url, "redis://127.0.0.1:6379/0");
    r->jobs = default_str(c, r->jobs, "herald:jobs");
    r->group = default_str(c, r->group, "herald");
    r->events = default_str(c, r->events, "herald:events");
    r->prefix = default_str(c, r->prefix, "herald:");
    struct cfg_engine *e = &cfg->engine;
    if (e->workers == 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        e->workers = n > 0 ? (uint32_t)(n > 256 ? 256 : n) : 1;
    }
    e->ehlo = default_str(c, e->ehlo, host);
    e->consumer = default_str(c, e->consumer, host);
    if (!e->batch)
        e->batch = 256;
    if (!e->max_inflight)
        e->max_inflight = 2000;
    if (!e->claim_idle_ms)
        e->claim_idle_ms = 60000;
    if (!e->shutdown_grace_ms)
        e->shutdown_grace_ms = 30000;
    if (!e->max_field_bytes)
        e->max_field_bytes = 1u << 20;
    if (!e->max_message_bytes)
        e->max_message_bytes = 10u << 20;

    if (!cfg->egress) {
        cfg->egress = arena_alloc(&cfg->mem, sizeof *cfg->egress);
        if (!cfg->egress)
            return -ENOMEM;
        memset(cfg->egress, 0, sizeof *cfg->egress);
    }
    if (!config_egress(cfg, "default")) {
        /* No "default" pool: connections use the kernel's source address. */
        struct cfg_egress_pool *p = &cfg->egress[cfg->n_egress++];
        p->name = cdup(c, "default");
    }
    for (size_t i = 0; i < cfg->n_tenants; i++) {
        struct cfg_tenant *t = &cfg->tenants[i];
        if (t->egress && !config_egress(cfg, t->egress))
            return fail(c, root, "tenants.%s.egress: no egress pool named '%s'", t->name,
                        t->egress);
    }

    struct cfg_delivery *d = &cfg->delivery;
    if (!d->port)
        d->port = 25;
    if (d->tls == CFG_TLS_UNSET)
        d->tls = CFG_TLS_OPPORTUNISTIC;
    if (!d->n_retry) {
        static const int64_t steps[] = {60000, 300000, 900000, 3600000, 14400000};
        d->retry_ms = arena_alloc(&cfg->mem, sizeof steps);
        if (!d->retry_ms)
            return -ENOMEM;
        memcpy(d->retry_ms, steps, sizeof steps);
        d->n_retry = HERALD_ARRAY_LEN(steps);
    }
    if (!d->max_age_ms)
        d->max_age_ms = 2LL * 86400 * 1000;
    struct cfg_timeouts *t = &d->timeouts;
    if (!t->connect_ms)
        t->connect_ms = 30000;
    if (!t->banner_ms)
        t->banner_ms = 300000;
    if (!t->command_ms)
        t->command_ms = 300000;
    if (!t->data_block_ms)
        t->data_block_ms = 180000;
    if (!t->data_end_ms)
        t->data_end_ms = 600000;
    if (!t->idle_ms)
        t->idle_ms = 30000;

    if (!cfg->providers) {
        cfg->providers = arena_alloc(&cfg->mem, sizeof *cfg->providers);
        if (!cfg->providers)
            return -ENOMEM;
        memset(cfg->providers, 0, sizeof *cfg->providers);
    }
    if (!config_provider(cfg, "default")) {
        struct cfg_provider *p = &cfg->providers[cfg->n_providers++];
        p->name = cdup(c, "default");
    }
    for (size_t i = 0; i < cfg->n_providers; i++) {
        struct cfg_provider *p = &cfg->providers[i];
        if (!p->connections)
            p->connections = 10;
        if (!p->messages_per_connection)
            p->messages_per_connection = 100;
        if (!p->recipients_per_message)
            p->recipients_per_message = 1;
    }
    cfg->recipients.policy = default_str(c, cfg->recipients.policy, "defer");
    return 0;
}

static int load_document(struct ctx *c, yaml_parser_t *parser)
{
    yaml_document_t doc;
    if (!yaml_parser_load(parser, &doc)) {
        yaml_mark_t m = parser->problem_mark;
        snprintf(c->err, c->errlen, "%s:%zu:%zu: %s%s%s", c->file, m.line + 1, m.column + 1,
                 parser->problem ? parser->problem : "invalid YAML",
                 parser->context ? " " : "", parser->context ? parser->context : "");
        return -HERR_CONFIG;
    }
    c->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    int rc = 0;
    if (root) {
        rc = each_pair(c, "the top level", root, top_key, NULL);
    }
    if (rc == 0)
        rc = finish(c, root);
    yaml_document_delete(&doc);
    c->doc = NULL;
    if (rc == -ENOMEM && !c->failed)
        snprintf(c->err, c->errlen, "%s: out of memory", c->file);
    return rc < 0 ? (c->failed ? -HERR_CONFIG : rc) : 0;
}

int config_load_string(const char *name, const char *yaml, size_t len, struct config **out,
                       char *err, size_t errlen)
{
    struct config *cfg = calloc(1, sizeof *cfg);
    if (!cfg)
        return -ENOMEM;
    arena_init(&cfg->mem);
    struct ctx c = {.file = name, .cfg = cfg, .err = err, .errlen = errlen};
    if (errlen)
        err[0] = '\0';
    cfg->path = cdup(&c, name);
    yaml_parser_t parser;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    int rc = load_document(&c, &parser);
    yaml_parser_delete(&parser);
    if (rc < 0) {
        config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int config_load(const char *path, struct config **out, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        snprintf(err, errlen, "%s:1:1: cannot open: %s", path, strerror(e));
        return -e;
    }
    struct hbuf b;
    hbuf_init(&b);
    char chunk[8192];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        if (hbuf_append(&b, chunk, n) < 0)
            break;
    fclose(f);
    int rc = config_load_string(path, b.data ? b.data : "", b.len, out, err, errlen);
    hbuf_free(&b);
    return rc;
}

void config_free(struct config *cfg)
{
    if (!cfg)
        return;
    arena_free(&cfg->mem);
    free(cfg);
}
