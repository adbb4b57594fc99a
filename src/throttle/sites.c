/* Per-site throttle pairs (throttle.h). A destination site is the set of
 * exchangers a domain's MX records name: every small domain hosted on the
 * same exchangers shares one site, a domain with its own MX gets its own.
 * Providers marked per_site (the default provider by default) keep their
 * limits per egress IP x site, so one stuck or 421-ing site never holds
 * the connections or the rate of another.
 *
 * The pairs are made as sites are met and live as long as the table: an
 * append-only array of pointers (published by a release store of the
 * count, so readers need no lock) and an open-addressing index guarded by
 * a mutex for lookups and inserts. */
#include <ctype.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald/core.h"
#include "herald/throttle.h"
#include "sites.h"

#define INDEX_SLOTS (THROTTLE_MAX_SITES * 2) /* power of two, load <= 1/2 */

struct throttle_sites {
    pthread_mutex_t lock;
    struct throttle_pair *pairs[THROTTLE_MAX_SITES];
    _Atomic size_t n;
    int32_t index[INDEX_SLOTS]; /* pairs[] position + 1; 0 empty */
    bool warned_full;
};

/* FNV-1a over the sorted, lower-cased names. */
uint64_t throttle_site_hash(const char *const *names, size_t n)
{
    const char *sorted[32];
    size_t m = n < 32 ? n : 32;
    for (size_t i = 0; i < m; i++) sorted[i] = names[i];
    for (size_t i = 1; i < m; i++)
        for (size_t j = i; j > 0 && strcasecmp(sorted[j - 1], sorted[j]) > 0; j--) {
            const char *t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    uint64_t h = 1469598103934665603ULL;
    for (size_t i = 0; i < m; i++) {
        for (const char *c = sorted[i]; *c; c++) {
            h ^= (unsigned char)tolower((unsigned char)*c);
            h *= 1099511628211ULL;
        }
        h ^= ',';
        h *= 1099511628211ULL;
    }
    return h ? h : 1;
}

void throttle_site_label(const char *const *names, size_t n, char *out, size_t cap)
{
    if (n == 0)
        snprintf(out, cap, "-");
    else if (n == 1)
        snprintf(out, cap, "%s", names[0]);
    else
        snprintf(out, cap, "%s+%zu", names[0], n - 1);
}

int throttle_sites_new(struct throttle_table *t)
{
    struct throttle_sites *s = calloc(1, sizeof *s);
    if (!s)
        return -1;
    pthread_mutex_init(&s->lock, NULL);
    t->sites = s;
    return 0;
}

void throttle_sites_free(struct throttle_table *t)
{
    struct throttle_sites *s = t->sites;
    if (!s)
        return;
    size_t n = atomic_load(&s->n);
    for (size_t i = 0; i < n; i++)
        free(s->pairs[i]);
    pthread_mutex_destroy(&s->lock);
    free(s);
    t->sites = NULL;
}

static uint64_t key_hash(const char *ip, const char *provider, uint64_t site)
{
    uint64_t h = site * 0x9e3779b97f4a7c15ULL;
    for (const char *c = ip; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ULL;
    h ^= '|';
    for (const char *c = provider; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ULL;
    return h;
}

struct throttle_pair *throttle_site_pair(struct throttle_table *t, const char *ip,
                                         const char *provider, uint64_t site_hash,
                                         const char *site_label)
{
    struct throttle_pair *pooled = throttle_pair_get(t, ip, provider);
    struct throttle_sites *s = t->sites;
    if (!pooled || !s || site_hash == 0)
        return pooled;
    uint64_t h = key_hash(ip, provider, site_hash);
    pthread_mutex_lock(&s->lock);
    size_t slot = (size_t)h & (INDEX_SLOTS - 1);
    struct throttle_pair *found = NULL;
    for (;; slot = (slot + 1) & (INDEX_SLOTS - 1)) {
        int32_t at = s->index[slot];
        if (at == 0)
            break;
        struct throttle_pair *p = s->pairs[at - 1];
        if (p->site_hash == site_hash && strcmp(p->ip, pooled->ip) == 0 &&
            strcmp(p->provider, pooled->provider) == 0) {
            found = p;
            break;
        }
    }
    if (!found) {
        size_t n = atomic_load_explicit(&s->n, memory_order_relaxed);
        struct throttle_pair *p = n < THROTTLE_MAX_SITES ? calloc(1, sizeof *p) : NULL;
        if (!p) {
            if (!s->warned_full)
                log_event(LOG_WARN, "event=sites_full max=%d reason=\"new destination sites share "
                                    "their provider's pooled limits\"",
                          THROTTLE_MAX_SITES);
            s->warned_full = true;
            pthread_mutex_unlock(&s->lock);
            return pooled;
        }
        snprintf(p->ip, sizeof p->ip, "%s", pooled->ip);
        snprintf(p->provider, sizeof p->provider, "%s", pooled->provider);
        snprintf(p->site, sizeof p->site, "%s", site_label ? site_label : "-");
        p->site_hash = site_hash;
        snprintf(p->group, sizeof p->group, "%s@%.96s#%016llx", p->provider, p->site,
                 (unsigned long long)site_hash);
        /* A new site starts where its provider's pooled pair was configured
         * to start, not where another site's reputation has gone. */
        atomic_store(&p->factor_ppm, atomic_load(&t->start_factor_ppm));
        atomic_store(&p->conn_grant, -1);
        s->pairs[n] = p;
        s->index[slot] = (int32_t)(n + 1);
        atomic_store_explicit(&s->n, n + 1, memory_order_release);
        found = p;
    }
    pthread_mutex_unlock(&s->lock);
    return found;
}

size_t throttle_pair_count(const struct throttle_table *t)
{
    size_t fixed = t->n_ips * t->n_providers;
    return fixed + (t->sites ? atomic_load_explicit(&t->sites->n, memory_order_acquire) : 0);
}

struct throttle_pair *throttle_pair_at(struct throttle_table *t, size_t i)
{
    size_t fixed = t->n_ips * t->n_providers;
    if (i < fixed)
        return &t->pairs[i];
    i -= fixed;
    if (!t->sites || i >= atomic_load_explicit(&t->sites->n, memory_order_acquire))
        return NULL;
    return t->sites->pairs[i];
}
