/* Operator suspensions (`herald suspend`): a Redis hash, <prefix>suspend,
 * field "<kind>=<value>" (kind tenant, provider, site, ip or domain), value
 * "<until_ms> <set_at_ms> <reason>" (until 0: until resumed). Worker 0
 * reads it every second and publishes it to the process; each worker keeps
 * its own copy, so the check on every message takes no lock. */
#ifndef HERALD_ENGINE_SUSPEND_H
#define HERALD_ENGINE_SUSPEND_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SUSP_MAX 64
/* A suspension without an expiry parks for this long, then looks again. */
#define SUSP_RECHECK_MS 30000

enum susp_kind { SUSP_TENANT, SUSP_PROVIDER, SUSP_SITE, SUSP_IP, SUSP_DOMAIN, SUSP_KINDS };

struct susp_entry {
    enum susp_kind kind;
    char value[256];
    int64_t until_ms; /* wall; 0: until resumed */
    char reason[160];
};

struct susp_table {
    struct susp_entry e[SUSP_MAX];
    size_t n;
};

/* One hash field and value; 0, or -1 when it is not a suspension. Pure. */
int susp_parse(const char *field, const char *value, struct susp_entry *out);
const char *susp_kind_name(enum susp_kind k);
int susp_kind_of(const char *name); /* -1 unknown */

/* What a message on this path matches (NULL values match nothing): the
 * entry, or NULL; *until_ms the wall time to park it until. */
struct susp_path {
    const char *tenant, *provider, *site, *ip, *domain;
};
const struct susp_entry *susp_match(const struct susp_table *t, const struct susp_path *p,
                                    int64_t now_wall_ms, int64_t *until_ms);

/* The process-wide copy worker 0 publishes. */
struct susp_shared {
    pthread_mutex_t lock;
    struct susp_table table;
    atomic_uint gen;
};

#endif
