/* Lookups on a loaded config. Tenants and routes are sorted at load time so
 * the per-message lookups are binary searches; pools and providers are few. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "herald/config.h"
#include "herald/core.h"

static int tenant_key_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct cfg_tenant *)elem)->name);
}

const struct cfg_tenant *config_tenant(const struct config *cfg, const char *name)
{
    if (!cfg || !name || cfg->n_tenants == 0) return NULL;
    return bsearch(name, cfg->tenants, cfg->n_tenants, sizeof(*cfg->tenants), tenant_key_cmp);
}

const struct cfg_egress_pool *config_egress(const struct config *cfg, const char *name)
{
    if (!cfg) return NULL;
    if (!name) name = "default";
    for (size_t i = 0; i < cfg->n_egress; i++)
        if (strcmp(cfg->egress[i].name, name) == 0) return &cfg->egress[i];
    return NULL;
}

const char *config_egress_ehlo(const struct config *cfg, const struct cfg_egress_pool *pool)
{
    return pool && pool->ehlo ? pool->ehlo : cfg->engine.ehlo;
}

const struct cfg_provider *config_provider(const struct config *cfg, const char *name)
{
    if (!cfg) return NULL;
    if (!name) name = "default";
    for (size_t i = 0; i < cfg->n_providers; i++)
        if (strcmp(cfg->providers[i].name, name) == 0) return &cfg->providers[i];
    return NULL;
}

static bool host_matches(const char *pattern, const char *host)
{
    if (strncmp(pattern, "*.", 2) == 0) {
        size_t pl = strlen(pattern + 1), hl = strlen(host);
        return hl > pl && strncasecmp(host + hl - pl, pattern + 1, pl) == 0;
    }
    return strcasecmp(pattern, host) == 0;
}

const struct cfg_provider *config_provider_for_host(const struct config *cfg, const char *host)
{
    if (!cfg) return NULL;
    char h[256];
    size_t n = host ? strlen(host) : 0;
    if (n > 0 && host[n - 1] == '.') n--; /* MX targets may carry the root dot */
    if (n >= sizeof h) n = sizeof h - 1;
    memcpy(h, host ? host : "", n);
    h[n] = '\0';
    for (size_t i = 0; i < cfg->n_providers; i++)
        for (size_t k = 0; k < cfg->providers[i].mx.n; k++)
            if (host_matches(cfg->providers[i].mx.items[k], h)) return &cfg->providers[i];
    return config_provider(cfg, "default");
}

static int route_key_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const struct cfg_route *)elem)->pattern);
}

static const struct cfg_route *route_find(const struct config *cfg, const char *pattern)
{
    return bsearch(pattern, cfg->routes, cfg->n_routes, sizeof(*cfg->routes), route_key_cmp);
}

/* Patterns are stored lower case, so the domain is folded once into a
 * buffer with a spare byte in front: "*.suffix" candidates are then made in
 * place by writing '*' just before each dot, scanning left to right so the
 * longest suffix is tried first. A trailing root dot is ignored. */
const struct cfg_route *config_route(const struct config *cfg, const char *domain)
{
    if (!cfg || !domain || cfg->n_routes == 0) return NULL;
    size_t len = strlen(domain);
    if (len > 0 && domain[len - 1] == '.') len--;
    char buf[256];
    if (len > 0 && len < sizeof buf - 1) {
        buf[0] = '*';
        for (size_t i = 0; i < len; i++)
            buf[i + 1] = (char)tolower((unsigned char)domain[i]);
        buf[len + 1] = '\0';
        const struct cfg_route *r = route_find(cfg, buf + 1);
        if (r) return r;
        for (size_t i = 1; i <= len; i++) {
            if (buf[i] != '.') continue;
            buf[i - 1] = '*';
            if ((r = route_find(cfg, buf + i - 1))) return r;
        }
    }
    return route_find(cfg, "*");
}

enum cfg_tls_policy config_tls_policy(const struct config *cfg, const struct cfg_tenant *tenant,
                                      const struct cfg_provider *prov)
{
    enum cfg_tls_policy pol = cfg->delivery.tls;
    if (tenant && tenant->tls > pol) pol = tenant->tls;
    if (prov && prov->tls > pol) pol = prov->tls;
    return pol == CFG_TLS_UNSET ? CFG_TLS_OPPORTUNISTIC : pol;
}

int config_read_secret(const char *file, const char *env, char *out, size_t outlen)
{
    out[0] = '\0';
    if (env) {
        const char *v = getenv(env);
        if (!v) return -ENOENT;
        if (strlen(v) >= outlen) return -HERR_TOO_LONG;
        snprintf(out, outlen, "%s", v);
        return 0;
    }
    if (!file) return 0;
    char why[64]; /* config_load_keys already said why, with the file:line:col */
    int fd = secret_file_open(file, "password file", why, sizeof why);
    if (fd < 0) return fd;
    FILE *f = fdopen(fd, "r");
    if (!f) {
        close(fd);
        return -ENOMEM;
    }
    if (fgets(out, (int)outlen, f)) out[strcspn(out, "\r\n")] = '\0';
    fclose(f);
    return 0;
}
