/* The `tenants:` section: each tenant's From identity, DKIM signatures,
 * relay, limits and templates, with the cross-field rules checked once all
 * of a tenant's keys are read. Egress pools and sender.address are read
 * before this (load.c), so references to them are checked here. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "config/loader.h"

struct tenant_ctx {
    struct cfg_tenant *t;
    char where[96];
    const struct ynode *from, *egress, *relay_k;
    const struct ynode *relay_user, *relay_pw_env;
    const struct ynode *relay_tls_key; /* ca_file or insecure_skip_verify */
};

static int dkim_key(struct loader *L, const char *key, const struct ynode *k, const struct ynode *v,
                    void *obj)
{
    struct cfg_dkim *d = obj;
    char tmp[160];
    if (strcmp(key, "selector") == 0) {
        int rc = loader_str(L, v, &d->selector);
        if (rc == 0 && d->selector && loader_check_domain(d->selector))
            return loader_fail(L, v, "expected a DKIM selector like s1, got %s",
                               loader_show(v, tmp, sizeof tmp));
        return rc;
    }
    if (strcmp(key, "key") == 0) {
        d->key_line = v->line;
        d->key_col = v->col;
        return loader_str(L, v, &d->key);
    }
    if (strcmp(key, "algorithm") == 0) {
        int alg = -1;
        int rc = loader_enum(L, k, v, &cfg_enum_dkim_alg, &alg);
        if (rc || alg < 0) return rc;
        free(d->algorithm);
        if (!(d->algorithm = strdup(cfg_enum_name(&cfg_enum_dkim_alg, alg)))) return loader_oom(L);
        d->algorithm_given = true;
        return 0;
    }
    if (strcmp(key, "domain") == 0) {
        int rc = loader_str(L, v, &d->domain);
        if (rc == 0 && d->domain && loader_check_domain(d->domain))
            return loader_fail(L, v, "expected a domain name, got %s",
                               loader_show(v, tmp, sizeof tmp));
        if (d->domain) loader_lower(d->domain);
        return rc;
    }
    if (strcmp(key, "expire") == 0) return loader_duration(L, v, 1000, &d->expire_ms);
    return LOADER_UNKNOWN_KEY;
}

/* `dkim:` is one mapping (one signature) or a list of them (dual signing,
 * e.g. an RSA and an Ed25519 signature on every message). */
static int read_dkim(struct loader *L, const struct ynode *k, const struct ynode *v,
                     const char *where, struct cfg_tenant *t)
{
    char tmp[160];
    size_t n = 1;
    if (v->type == YNODE_SEQ) {
        n = 0;
        for (const struct ynode *c = v->child; c; c = c->next)
            n++;
        if (n == 0) return loader_fail(L, k, "expected one or more DKIM signatures in %s", where);
        if (n > 8) return loader_fail(L, v, "more than 8 DKIM signatures in %s", where);
    } else if (v->type != YNODE_MAP) {
        return loader_fail(L, v, "expected a mapping or a list of mappings in %s, got %s", where,
                           loader_show(v, tmp, sizeof tmp));
    }
    if (!(t->dkim = calloc(n, sizeof(*t->dkim)))) return loader_oom(L);
    const struct ynode *item = v->type == YNODE_SEQ ? v->child : v;
    for (size_t i = 0; i < n; i++, item = item->next) {
        struct cfg_dkim *d = &t->dkim[t->n_dkim++];
        char w[160];
        if (v->type == YNODE_SEQ)
            snprintf(w, sizeof w, "%s[%zu]", where, i);
        else
            snprintf(w, sizeof w, "%s", where);
        if (item->type != YNODE_MAP)
            return loader_fail(L, item, "expected a mapping in %s, got %s", w,
                               loader_show(item, tmp, sizeof tmp));
        int rc = loader_walk(L, item, w, dkim_key, d);
        if (rc) return rc;
        if (!d->selector || !d->key)
            return loader_fail(L, v->type == YNODE_SEQ ? item : k,
                               "missing required key '%s' in %s", d->selector ? "key" : "selector",
                               w);
        for (size_t j = 0; j + 1 < t->n_dkim; j++) {
            const struct cfg_dkim *o = &t->dkim[j];
            bool same_domain = (!o->domain && !d->domain) ||
                               (o->domain && d->domain && strcmp(o->domain, d->domain) == 0);
            if (same_domain && strcasecmp(o->selector, d->selector) == 0)
                return loader_fail(L, item,
                                   "two DKIM signatures with selector '%s' for the same "
                                   "domain in %s",
                                   d->selector, where);
        }
    }
    return 0;
}

static int relay_key(struct loader *L, const char *key, const struct ynode *k,
                     const struct ynode *v, void *obj)
{
    struct tenant_ctx *c = obj;
    struct cfg_relay *r = &c->t->relay;
    char tmp[160];
    if (strcmp(key, "host") == 0) {
        int rc = loader_str(L, v, &r->host);
        if (rc == 0 && r->host && loader_check_host(r->host))
            return loader_fail(L, v, "expected a host name, got %s",
                               loader_show(v, tmp, sizeof tmp));
        return rc;
    }
    if (strcmp(key, "port") == 0) return loader_port(L, v, &r->port);
    if (strcmp(key, "tls") == 0) {
        int x = (int)r->tls;
        int rc = loader_enum(L, k, v, &cfg_enum_relay_tls, &x);
        r->tls = (enum cfg_relay_tls)x;
        return rc;
    }
    if (strcmp(key, "user") == 0) {
        c->relay_user = v;
        return loader_str(L, v, &r->user);
    }
    if (strcmp(key, "password_file") == 0) {
        r->password_file_line = v->line;
        r->password_file_col = v->col;
        return loader_str(L, v, &r->password_file);
    }
    if (strcmp(key, "password_env") == 0) {
        c->relay_pw_env = v;
        return loader_str(L, v, &r->password_env);
    }
    if (strcmp(key, "allow_plaintext_auth") == 0)
        return loader_bool(L, v, &r->allow_plaintext_auth);
    if (strcmp(key, "ca_file") == 0) {
        c->relay_tls_key = k;
        return loader_str(L, v, &r->ca_file);
    }
    if (strcmp(key, "insecure_skip_verify") == 0) {
        c->relay_tls_key = k;
        return loader_bool(L, v, &r->insecure_skip_verify);
    }
    return LOADER_UNKNOWN_KEY;
}

static int tenant_key(struct loader *L, const char *key, const struct ynode *k,
                      const struct ynode *v, void *obj)
{
    struct tenant_ctx *c = obj;
    struct cfg_tenant *t = c->t;
    char tmp[160];
    if (strcmp(key, "from") == 0) {
        c->from = v;
        int rc = loader_str(L, v, &t->from);
        if (rc == 0 && t->from && loader_check_address(t->from))
            return loader_fail(L, v, "expected %s, got %s", loader_check_address(t->from),
                               loader_show(v, tmp, sizeof tmp));
        return rc;
    }
    if (strcmp(key, "from_name") == 0) return loader_str(L, v, &t->from_name);
    if (strcmp(key, "reply_to") == 0) {
        int rc = loader_str(L, v, &t->reply_to);
        if (rc == 0 && t->reply_to && loader_check_address(t->reply_to))
            return loader_fail(L, v, "expected %s, got %s", loader_check_address(t->reply_to),
                               loader_show(v, tmp, sizeof tmp));
        return rc;
    }
    if (strcmp(key, "domains") == 0)
        return loader_strlist(L, v, loader_check_domain, true, &t->domains);
    if (strcmp(key, "dkim") == 0) {
        char where[128];
        if (ynode_is_null(v)) return 0;
        snprintf(where, sizeof where, "%s.dkim", c->where);
        return read_dkim(L, k, v, where, t);
    }
    if (strcmp(key, "relay") == 0) {
        char where[128];
        c->relay_k = ynode_is_null(v) ? NULL : k;
        snprintf(where, sizeof where, "%s.relay", c->where);
        return loader_walk(L, v, where, relay_key, c);
    }
    if (strcmp(key, "tls") == 0) return loader_tls(L, k, v, &t->tls);
    if (strcmp(key, "egress") == 0) {
        int rc = loader_str(L, v, &t->egress);
        /* Without an egress section "default" is the kernel's choice of source. */
        bool implicit = t->egress && L->cfg->n_egress == 0 && strcmp(t->egress, "default") == 0;
        if (rc == 0 && t->egress && !implicit && !config_egress(L->cfg, t->egress))
            return loader_fail(L, v, "unknown egress pool %s", loader_show(v, tmp, sizeof tmp));
        return rc;
    }
    if (strcmp(key, "return_path") == 0) {
        int rc = loader_str(L, v, &t->return_path);
        if (rc == 0 && t->return_path && loader_check_domain(t->return_path))
            return loader_fail(L, v, "return_path: expected a domain name, got %s",
                               loader_show(v, tmp, sizeof tmp));
        if (rc == 0 && t->return_path && !L->cfg->inbound.secret_file)
            return loader_fail(L, v, "return_path needs inbound.secret_file: the secret its "
                                     "VERP addresses are signed with");
        for (char *p = t->return_path; rc == 0 && p && *p; p++)
            if (*p >= 'A' && *p <= 'Z') *p = (char)(*p + 32);
        return rc;
    }
    if (strcmp(key, "rate") == 0) return loader_rate(L, v, &t->rate);
    if (strcmp(key, "weight") == 0) return loader_u32(L, v, 1, 1000, &t->weight);
    if (strcmp(key, "max_age") == 0) return loader_duration(L, v, 1000, &t->max_age_ms);
    if (strcmp(key, "one_click_unsubscribe") == 0) {
        int rc = loader_bool(L, v, &t->one_click_unsubscribe);
        const struct cfg_unsubscribe *u = &L->cfg->unsubscribe;
        if (rc == 0 && t->one_click_unsubscribe && (!u->base_url || !u->secret_file))
            return loader_fail(L, v,
                               "one_click_unsubscribe: true needs unsubscribe.base_url and "
                               "unsubscribe.secret_file");
        return rc;
    }
    if (strcmp(key, "from_fallback") == 0) {
        int x = (int)t->from_fallback;
        int rc = loader_enum(L, k, v, &cfg_enum_from_fallback, &x);
        if (rc) return rc;
        t->from_fallback = (enum cfg_from_fallback)x;
        if (t->from_fallback == CFG_FROM_REWRITE && !L->cfg->sender.address)
            return loader_fail(L, v,
                               "from_fallback: rewrite needs the platform address sender.address");
        return 0;
    }
    if (strcmp(key, "templates") == 0) return loader_templates(L, v, c->where, t);
    return LOADER_UNKNOWN_KEY;
}

static bool list_has(const struct cfg_strlist *l, const char *s)
{
    for (size_t i = 0; i < l->n; i++)
        if (strcasecmp(l->items[i], s) == 0) return true;
    return false;
}

/* Cross-field rules for one tenant, checked once all its keys are read. */
static int tenant_finish(struct loader *L, const struct ynode *key, struct tenant_ctx *c)
{
    struct cfg_tenant *t = c->t;
    if (!t->from) return loader_fail(L, key, "missing required key 'from' in %s", c->where);
    const char *domain = strrchr(t->from, '@') + 1;
    if (t->domains.n == 0) {
        if (!(t->domains.items = calloc(1, sizeof(char *))) ||
            !(t->domains.items[0] = strdup(domain)))
            return loader_oom(L);
        t->domains.n = 1;
        loader_lower(t->domains.items[0]);
    } else if (!list_has(&t->domains, domain)) {
        return loader_fail(L, c->from, "from domain '%s' is not in %s.domains", domain, c->where);
    }
    if (c->relay_k) {
        struct cfg_relay *r = &t->relay;
        if (!r->host)
            return loader_fail(L, c->relay_k, "missing required key 'host' in %s.relay", c->where);
        if (r->port == 0) r->port = config_relay_default_port(r->tls);
        bool has_pw = r->password_file || r->password_env;
        if (r->password_file && r->password_env)
            return loader_fail(L, c->relay_pw_env,
                               "set password_file or password_env in %s.relay, not both", c->where);
        if (r->user && !has_pw)
            return loader_fail(L, c->relay_user,
                               "relay user needs password_file or password_env in %s.relay",
                               c->where);
        if (!r->user && has_pw)
            return loader_fail(L, c->relay_k, "missing required key 'user' in %s.relay", c->where);
        if (r->user && r->tls == CFG_RELAY_TLS_NONE && !r->allow_plaintext_auth)
            return loader_fail(L, c->relay_k,
                               "relay with tls: none would send the password in clear; set "
                               "allow_plaintext_auth: true in %s.relay to allow it",
                               c->where);
        if (r->tls == CFG_RELAY_TLS_NONE && c->relay_tls_key)
            return loader_fail(L, c->relay_tls_key,
                               "%s.relay has tls: none, so there is no certificate to verify",
                               c->where);
        if (r->insecure_skip_verify && r->ca_file)
            return loader_fail(L, c->relay_tls_key,
                               "set ca_file or insecure_skip_verify in %s.relay, not both",
                               c->where);
    }
    return 0;
}

static int tenant_cmp(const void *a, const void *b)
{
    const struct cfg_tenant *x = a, *y = b;
    return strcmp(x->name, y->name);
}

int loader_tenants(struct loader *L, const struct ynode *k, const struct ynode *v)
{
    struct config *cfg = L->cfg;
    (void)k;
    if (ynode_is_null(v)) return 0;
    int rc = loader_check_map(L, v, "tenants");
    if (rc) return rc;
    size_t n = v->n_children / 2;
    if (n == 0) return 0;
    if (!(cfg->tenants = calloc(n, sizeof(*cfg->tenants)))) return loader_oom(L);
    for (const struct ynode *key = v->child; key && key->next; key = key->next->next) {
        if ((rc = loader_name_key(L, key, "tenant"))) return rc;
        struct cfg_tenant *t = &cfg->tenants[cfg->n_tenants++];
        config_tenant_defaults(t);
        if (!(t->name = strdup(key->str))) return loader_oom(L);
        struct tenant_ctx c = {.t = t};
        snprintf(c.where, sizeof c.where, "tenants.%s", t->name);
        if ((rc = loader_walk(L, key->next, c.where, tenant_key, &c))) return rc;
        if ((rc = tenant_finish(L, key, &c))) return rc;
    }
    /* Sorted so config_tenant can binary-search: a job lookup per message. */
    qsort(cfg->tenants, cfg->n_tenants, sizeof(*cfg->tenants), tenant_cmp);
    return 0;
}
