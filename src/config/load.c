/* config_load: file -> ytree -> struct config, with defaults applied
 * (defaults.c) and every cross-reference checked. The result is immutable; a reload builds a
 * new one. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/loader.h"
#include "herald/dkim.h"

/* A config is a few KiB; anything this large is a mistake, and the bound
 * keeps a stray path (a log, /dev/zero) from eating memory. */
#define CONFIG_MAX_BYTES (4u << 20)

static const char *const top_keys[] = {"redis",   "engine",   "egress",    "dns",       "routes",
                                       "tenants", "delivery", "providers", "recipients",
                                       "reputation", "bounce_rules", "sender", "dnsbl", "metrics",
                                       "warmup", "addresses", "inbound", "unsubscribe"};

/* Sections in the order they are read: later ones refer to earlier ones
 * (routes default to delivery.port, tenants name egress pools). */
static const struct {
    const char *key;
    int (*read)(struct loader *L, const struct ynode *k, const struct ynode *v);
} sections[] = {
    {"redis", loader_redis},           {"engine", loader_engine},
    {"sender", loader_sender},         {"dnsbl", loader_dnsbl},
    {"unsubscribe", loader_unsubscribe}, /* before tenants: one_click_unsubscribe needs it */
    {"egress", loader_egress},         {"dns", loader_dns},
    {"delivery", loader_delivery},     {"providers", loader_providers},
    {"recipients", loader_recipients}, {"routes", loader_routes},
    {"inbound", loader_inbound}, /* before tenants: return_path needs its secret */
    {"tenants", loader_tenants},       {"reputation", loader_reputation},
    {"bounce_rules", loader_bounce_rules}, {"metrics", loader_metrics},
    {"warmup", loader_warmup},             {"addresses", loader_addresses},
};

static const struct ynode *map_get(const struct ynode *m, const char *key, const struct ynode **k)
{
    for (const struct ynode *it = m->child; it && it->next; it = it->next->next) {
        if (strcmp(it->str, key) == 0) {
            *k = it;
            return it->next;
        }
    }
    return NULL;
}

static int read_root(struct loader *L, const struct ynode *root)
{
    int rc = loader_check_map(L, root, "");
    if (rc) return rc;
    for (const struct ynode *k = root->child; k && k->next; k = k->next->next) {
        bool known = false;
        for (size_t i = 0; i < HERALD_ARRAY_LEN(top_keys) && !known; i++)
            known = strcmp(k->str, top_keys[i]) == 0;
        if (!known) {
            char tmp[160];
            return loader_fail(L, k, "unknown key %s at top level",
                               loader_show(k, tmp, sizeof tmp));
        }
    }
    for (size_t i = 0; i < HERALD_ARRAY_LEN(sections); i++) {
        const struct ynode *k = NULL, *v = map_get(root, sections[i].key, &k);
        if (v && (rc = sections[i].read(L, k, v))) return rc;
    }
    return 0;
}

int config_load_string(const char *name, const char *yaml, size_t len, struct config **out,
                       char *err, size_t errlen)
{
    struct arena arena;
    struct ynode *root = NULL;
    struct loader L = {.name = name ? name : "<config>", .err = err, .errlen = errlen};
    *out = NULL;
    if (errlen) err[0] = '\0';
    arena_init(&arena);
    int rc = ytree_parse(&arena, L.name, yaml ? yaml : "", yaml ? len : 0, &root, err, errlen);
    if (rc) {
        if (rc == -ENOMEM) loader_oom(&L);
        arena_free(&arena);
        return rc;
    }
    struct config *cfg = calloc(1, sizeof(*cfg));
    if (!cfg) {
        arena_free(&arena);
        return loader_oom(&L);
    }
    L.cfg = cfg;
    config_defaults_init(cfg);
    if (!(cfg->path = strdup(L.name))) rc = loader_oom(&L);
    if (rc == 0 && root && !ynode_is_null(root)) rc = read_root(&L, root);
    if (rc == 0 && (rc = config_defaults_finish(cfg)) != 0) loader_oom(&L);
    arena_free(&arena);
    if (rc) {
        config_free(cfg);
        return rc;
    }
    *out = cfg;
    return 0;
}

int config_load(const char *path, struct config **out, char *err, size_t errlen)
{
    *out = NULL;
    if (errlen) err[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        snprintf(err, errlen, "%s: %s", path, strerror(e));
        return -e;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size > (off_t)CONFIG_MAX_BYTES) {
        int e = errno;
        if (fstat(fd, &st) == 0 && !S_ISREG(st.st_mode))
            snprintf(err, errlen, "%s: not a regular file", path);
        else if (fstat(fd, &st) == 0)
            snprintf(err, errlen, "%s: larger than %u bytes", path, CONFIG_MAX_BYTES);
        else
            snprintf(err, errlen, "%s: %s", path, strerror(e));
        close(fd);
        return -HERR_CONFIG;
    }
    size_t size = (size_t)st.st_size, got = 0;
    char *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        snprintf(err, errlen, "%s: out of memory", path);
        return -ENOMEM;
    }
    while (got < size) {
        ssize_t n = read(fd, buf + got, size - got);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            int e = errno;
            snprintf(err, errlen, "%s: %s", path, strerror(e));
            free(buf);
            close(fd);
            return -e;
        }
        if (n == 0) break;
        got += (size_t)n;
    }
    close(fd);
    buf[got] = '\0';
    int rc = config_load_string(path, buf, got, out, err, errlen);
    free(buf);
    if (rc == 0 && (rc = config_load_keys(*out, err, errlen)) != 0) {
        config_free(*out);
        *out = NULL;
    }
    return rc;
}

/* Refuses a password file as a DKIM key is refused (secret_file_open),
 * at load time so check-config says so, pointing at the path's value. */
static int check_password_file(const struct config *cfg, const char *path, int line, int col,
                               char *err, size_t errlen)
{
    char why[400];
    if (!path) return 0;
    int fd = secret_file_open(path, "password file", why, sizeof why);
    if (fd < 0) {
        snprintf(err, errlen, "%s:%d:%d: %s", cfg->path, line, col, why);
        return -HERR_CONFIG;
    }
    close(fd);
    return 0;
}

/* The unsubscribe secret is read at load time (it is small), so a file
 * that is too short or too open stops check-config, not the first click. */
static int check_unsub_secret(const struct config *cfg, char *err, size_t errlen)
{
    const struct cfg_unsubscribe *u = &cfg->unsubscribe;
    if (!u->secret_file) return 0;
    unsigned char secret[32];
    char why[400];
    int rc = config_unsub_secret(cfg, secret, why, sizeof why);
    explicit_bzero(secret, sizeof secret);
    if (rc == 0) return 0;
    snprintf(err, errlen, "%s:%d:%d: %s", cfg->path, u->secret_file_line, u->secret_file_col, why);
    return rc == -ENOMEM ? rc : -HERR_CONFIG;
}

static int check_password_files(const struct config *cfg, char *err, size_t errlen)
{
    const struct cfg_redis *r = &cfg->redis;
    int rc = check_password_file(cfg, r->password_file, r->password_file_line, r->password_file_col,
                                 err, errlen);
    if (rc == 0)
        rc = check_password_file(cfg, cfg->inbound.secret_file, cfg->inbound.secret_file_line,
                                 cfg->inbound.secret_file_col, err, errlen);
    for (size_t i = 0; i < cfg->n_tenants && rc == 0; i++) {
        const struct cfg_relay *rl = &cfg->tenants[i].relay;
        rc = check_password_file(cfg, rl->password_file, rl->password_file_line,
                                 rl->password_file_col, err, errlen);
    }
    if (rc == 0) rc = check_unsub_secret(cfg, err, errlen);
    return rc;
}

int config_load_keys(struct config *cfg, char *err, size_t errlen)
{
    int prc = check_password_files(cfg, err, errlen);
    if (prc) return prc;
    for (size_t i = 0; i < cfg->n_tenants; i++) {
        struct cfg_tenant *t = &cfg->tenants[i];
        for (size_t k = 0; k < t->n_dkim; k++) {
            struct cfg_dkim *d = &t->dkim[k];
            enum dkim_alg alg;
            char why[400];
            if (d->loaded) continue;
            /* Without `algorithm:` the key says how it signs; with one, a
             * key of the other type is refused. */
            int rc = d->algorithm_given && dkim_alg_parse(d->algorithm, &alg) == 0
                         ? dkim_key_load(d->key, alg, &d->loaded, why, sizeof why)
                         : dkim_key_load_any(d->key, &d->loaded, why, sizeof why);
            if (rc == 0 && !d->algorithm_given) {
                free(d->algorithm);
                if (!(d->algorithm = strdup(dkim_alg_name(dkim_key_alg(d->loaded))))) rc = -ENOMEM;
            }
            if (rc == -ENOMEM) {
                snprintf(err, errlen, "%s: out of memory", cfg->path);
                return rc;
            }
            if (rc) {
                snprintf(err, errlen, "%s:%d:%d: %s", cfg->path, d->key_line, d->key_col, why);
                return -HERR_CONFIG;
            }
        }
    }
    return 0;
}

void config_free(struct config *cfg)
{
    if (!cfg) return;
    config_reputation_free(&cfg->reputation);
    free(cfg->path);
    struct cfg_redis *r = &cfg->redis;
    free(r->url);
    free(r->jobs);
    free(r->group);
    free(r->events);
    free(r->prefix);
    free(r->password_file);
    free(r->ca_file);
    free(r->cert_file);
    free(r->key_file);
    free(r->password_env);
    free(cfg->engine.ehlo);
    free(cfg->engine.consumer);
    for (size_t i = 0; i < cfg->n_egress; i++) {
        free(cfg->egress[i].name);
        loader_strlist_free(&cfg->egress[i].ips);
        free(cfg->egress[i].ehlo);
    }
    free(cfg->egress);
    loader_strlist_free(&cfg->dns.servers);
    free(cfg->metrics.listen);
    free(cfg->metrics.token_file);
    loader_strlist_free(&cfg->inbound.listen);
    loader_strlist_free(&cfg->inbound.domains);
    free(cfg->inbound.secret_file);
    free(cfg->unsubscribe.listen);
    free(cfg->unsubscribe.base_url);
    free(cfg->unsubscribe.secret_file);
    config_warmup_free(cfg);
    for (size_t i = 0; i < cfg->n_routes; i++) {
        free(cfg->routes[i].pattern);
        free(cfg->routes[i].host);
    }
    free(cfg->routes);
    for (size_t i = 0; i < cfg->n_tenants; i++) {
        struct cfg_tenant *t = &cfg->tenants[i];
        free(t->name);
        free(t->from);
        free(t->from_name);
        free(t->reply_to);
        loader_strlist_free(&t->domains);
        for (size_t k = 0; k < t->n_dkim; k++) {
            free(t->dkim[k].selector);
            free(t->dkim[k].key);
            free(t->dkim[k].algorithm);
            free(t->dkim[k].domain);
            dkim_key_free(t->dkim[k].loaded);
        }
        free(t->dkim);
        free(t->relay.host);
        free(t->relay.user);
        free(t->relay.password_file);
        free(t->relay.password_env);
        free(t->relay.ca_file);
        free(t->egress);
        free(t->return_path);
        loader_templates_free(t);
    }
    loader_strlist_free(&cfg->addresses.typo_domains);
    free(cfg->tenants);
    free(cfg->delivery.ca_file);
    free(cfg->delivery.retry_ms);
    for (size_t i = 0; i < cfg->n_providers; i++) {
        free(cfg->providers[i].name);
        loader_strlist_free(&cfg->providers[i].mx);
    }
    free(cfg->providers);
    free(cfg->recipients.limits);
    free(cfg->recipients.policy);
    for (size_t i = 0; i < cfg->n_bounce_rules; i++) {
        struct cfg_bounce_rule *b = &cfg->bounce_rules[i];
        free(b->match);
        free(b->code);
        if (b->compiled) regfree(&b->re);
    }
    free(cfg->bounce_rules);
    free(cfg->sender.address);
    loader_strlist_free(&cfg->dnsbl);
    free(cfg);
}
