/* loader: state and helpers shared by the files that turn a ytree into a
 * struct config. Internal to src/config/. */
#ifndef HERALD_CONFIG_LOADER_H
#define HERALD_CONFIG_LOADER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/ytree.h"
#include "herald/config.h"

struct loader {
    const char *name; /* file name used in messages */
    char *err;
    size_t errlen;
    struct config *cfg;
};

/* Returned by a key handler for a key it does not know. */
#define LOADER_UNKNOWN_KEY 1

/* Handles one key of a mapping: 0, LOADER_UNKNOWN_KEY or a negative error. */
typedef int (*loader_key_fn)(struct loader *L, const char *key, const struct ynode *k,
                             const struct ynode *v, void *obj);

/* Writes "name:line:col: message" for node at (the first error wins) and
 * returns -HERR_CONFIG. */
int loader_fail(struct loader *L, const struct ynode *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
int loader_oom(struct loader *L);
/* Short description of a node for messages: 'text' (escaped, truncated), a
 * list, or a mapping. */
const char *loader_show(const struct ynode *n, char *buf, size_t len);

/* Checks that m is a mapping with scalar keys and no duplicates; where names
 * it in messages ("tenants.acme", "" for the top level). */
int loader_check_map(struct loader *L, const struct ynode *m, const char *where);
/* loader_check_map, then fn for each key in document order. Null is an
 * empty mapping. */
int loader_walk(struct loader *L, const struct ynode *m, const char *where, loader_key_fn fn,
                void *obj);
/* "in tenants.acme" or "at top level". */
const char *loader_in(const char *where, char *buf, size_t len);

/* Value readers. A null value leaves *out untouched (the default stays). */
int loader_str(struct loader *L, const struct ynode *v, char **out);
int loader_uint(struct loader *L, const struct ynode *v, uint64_t min, uint64_t max, uint64_t *out);
int loader_u32(struct loader *L, const struct ynode *v, uint32_t min, uint32_t max, uint32_t *out);
int loader_port(struct loader *L, const struct ynode *v, uint16_t *out);
int loader_bool(struct loader *L, const struct ynode *v, bool *out);
/* Durations below min_ms are refused. */
int loader_duration(struct loader *L, const struct ynode *v, int64_t min_ms, int64_t *out);
int loader_rate(struct loader *L, const struct ynode *v, struct cfg_rate *out);
int loader_size(struct loader *L, const struct ynode *v, uint32_t min, uint32_t max, uint32_t *out);
int loader_tls(struct loader *L, const struct ynode *k, const struct ynode *v,
               enum cfg_tls_policy *out);

/* Enum-valued keys (enums.c): the words a key accepts and the value each
 * stands for. The same table parses the file and names values in output. */
struct cfg_enum_name {
    const char *name;
    int value;
};
struct cfg_enum {
    const struct cfg_enum_name *names;
    size_t n;
};
extern const struct cfg_enum cfg_enum_tls_policy, cfg_enum_relay_tls, cfg_enum_from_fallback,
    cfg_enum_dkim_alg, cfg_enum_rcpt_policy, cfg_enum_typo_policy, cfg_enum_rep_action,
    cfg_enum_priority;
/* The word for value, or NULL when the table has none. */
const char *cfg_enum_name(const struct cfg_enum *e, int value);
/* name -> *out; -HERR_MALFORMED when the table has no such word. */
int cfg_enum_value(const struct cfg_enum *e, const char *name, int *out);
/* "a, b or c" into buf. */
const char *cfg_enum_expected(const struct cfg_enum *e, char *buf, size_t len);
/* Reads v (the value of key k) through e into *out; a null value leaves *out
 * alone. Anything else is "unknown value 'x' for KEY (expected a, b or c)". */
int loader_enum(struct loader *L, const struct ynode *k, const struct ynode *v,
                const struct cfg_enum *e, int *out);

/* Defaults (defaults.c), the one place each is written down.
 * config_defaults_init runs before parsing, so a key given a null value
 * keeps its default; config_defaults_finish runs after every section is
 * read and fills what depends on other settings or needs allocating.
 * The per-object ones run when a provider or tenant is created. */
void config_defaults_init(struct config *cfg);
int config_defaults_finish(struct config *cfg);
void config_provider_defaults(struct cfg_provider *p);
void config_tenant_defaults(struct cfg_tenant *t);
uint16_t config_relay_default_port(enum cfg_relay_tls tls);

/* Checks a user-chosen name (tenant, pool, provider) used as a key; what
 * names it in the message. */
int loader_name_key(struct loader *L, const struct ynode *key, const char *what);

/* Item validators: NULL when s is acceptable, else what was expected. */
typedef const char *(*loader_check_fn)(const char *s);
const char *loader_check_ip(const char *s);
const char *loader_check_host(const char *s);   /* name or IP literal */
const char *loader_check_domain(const char *s); /* name only */
const char *loader_check_pattern(const char *s);
const char *loader_check_dns_server(const char *s);
const char *loader_check_address(const char *s);
const char *loader_check_name(const char *s);

/* A list of scalars (a single scalar counts as a one-item list), each passed
 * through check; lower folds items to lower case. Replaces *out. */
int loader_strlist(struct loader *L, const struct ynode *v, loader_check_fn check, bool lower,
                   struct cfg_strlist *out);
void loader_strlist_free(struct cfg_strlist *l);

/* Sections (sections.c; tenants in tenants.c). k is the section's key node. */
int loader_redis(struct loader *L, const struct ynode *k, const struct ynode *v);
int loader_engine(struct loader *L, const struct ynode *k, const struct ynode *v);
int loader_egress(struct loader *L, const struct ynode *k, const struct ynode *v);
int loader_dns(struct loader *L, const struct ynode *k, const struct ynode *v);
int loader_metrics(struct loader *L, const struct ynode *k, const struct ynode *v);
int loader_inbound(struct loader *L, const struct ynode *k, const struct ynode *v);
int loader_unsubscribe(struct loader *L, const struct ynode *k, const struct ynode *v);
int loader_warmup(struct loader *L, const struct ynode *k, const struct ynode *v);
int loader_sender(struct loader *L, const struct ynode *k, const struct ynode *v);
int loader_dnsbl(struct loader *L, const struct ynode *k, const struct ynode *v);
int loader_delivery(struct loader *L, const struct ynode *k, const struct ynode *v);
int loader_providers(struct loader *L, const struct ynode *k, const struct ynode *v);
int loader_recipients(struct loader *L, const struct ynode *k, const struct ynode *v);
int loader_routes(struct loader *L, const struct ynode *k, const struct ynode *v);
int loader_tenants(struct loader *L, const struct ynode *k, const struct ynode *v);
int loader_reputation(struct loader *L, const struct ynode *k, const struct ynode *v);
int loader_bounce_rules(struct loader *L, const struct ynode *k, const struct ynode *v);

int loader_addresses(struct loader *L, const struct ynode *k, const struct ynode *v);
int loader_addresses_defaults(struct cfg_addresses *a);
/* tenants.NAME.templates (templates.c): reads the template files. */
int loader_templates(struct loader *L, const struct ynode *v, const char *tenant_where,
                     struct cfg_tenant *t);
void loader_templates_free(struct cfg_tenant *t);

void loader_lower(char *s);

#endif
