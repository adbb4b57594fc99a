#include "stats.h"

#include <stdio.h>
#include <string.h>

#include "herald/config.h"

const char *const stats_event_names[ST_EVENTS] = {
    [ST_DELIVERED] = "delivered", [ST_DEFERRED] = "deferred",     [ST_BOUNCED] = "bounced",
    [ST_REJECTED] = "rejected",   [ST_EXPIRED] = "expired",       [ST_SUPPRESSED] = "suppressed",
    [ST_DUPLICATE] = "duplicate", [ST_CANCELLED] = "cancelled",
};

/* From "a reminder left at once" to "a day late": where reminders' latency
 * actually falls, with throttled and retried mail in the upper buckets. */
const double stats_latency_bounds_s[STATS_LATENCY_BUCKETS] = {
    0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 86400,
};

int stats_event_of(const char *name)
{
    for (int i = 0; i < ST_EVENTS; i++)
        if (strcmp(name, stats_event_names[i]) == 0)
            return i;
    return -1;
}

static void table_init(struct stats_table *t)
{
    memset(t, 0, sizeof *t);
    pthread_mutex_init(&t->lock, NULL);
}

void stats_init(struct engine_stats *s)
{
    memset(s, 0, sizeof *s);
    table_init(&s->tenants);
    table_init(&s->providers);
    atomic_store(&s->stream_len, -1);
    atomic_store(&s->stream_lag, -1);
    atomic_store(&s->stream_pending, -1);
    atomic_store(&s->retry_len, -1);
}

void stats_destroy(struct engine_stats *s)
{
    pthread_mutex_destroy(&s->tenants.lock);
    pthread_mutex_destroy(&s->providers.lock);
}

static uint64_t hash_name(const char *s)
{
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

/* Open addressing; rows are never removed, so a lookup that meets an unused
 * slot knows the name is absent. `used` is published after the name. */
static struct stats_row *find(struct stats_table *t, const char *name, size_t *free_slot)
{
    size_t start = (size_t)(hash_name(name) % STATS_MAX_ROWS);
    for (size_t k = 0; k < STATS_MAX_ROWS; k++) {
        struct stats_row *r = &t->rows[(start + k) % STATS_MAX_ROWS];
        if (!atomic_load_explicit(&r->used, memory_order_acquire)) {
            if (free_slot)
                *free_slot = (start + k) % STATS_MAX_ROWS;
            return NULL;
        }
        if (strcmp(r->name, name) == 0)
            return r;
    }
    if (free_slot)
        *free_slot = SIZE_MAX;
    return NULL;
}

struct stats_row *stats_row(struct stats_table *t, const char *name)
{
    if (!name || !name[0])
        name = "-";
    struct stats_row *r = find(t, name, NULL);
    if (r)
        return r;
    pthread_mutex_lock(&t->lock);
    size_t slot = SIZE_MAX;
    r = find(t, name, &slot);
    /* Keep the last slots for "other" so a flood of names cannot leave the
     * table without room for it. */
    size_t n_used = 0;
    for (size_t i = 0; i < STATS_MAX_ROWS; i++)
        n_used += atomic_load(&t->rows[i].used) ? 1 : 0;
    if (!r && (slot == SIZE_MAX || n_used >= STATS_MAX_ROWS - 1) && strcmp(name, "other") != 0) {
        pthread_mutex_unlock(&t->lock);
        return stats_row(t, "other");
    }
    if (!r && slot != SIZE_MAX) {
        r = &t->rows[slot];
        snprintf(r->name, sizeof r->name, "%s", name);
        atomic_store_explicit(&r->used, true, memory_order_release);
    }
    pthread_mutex_unlock(&t->lock);
    return r ? r : &t->rows[0];
}

struct stats_row *stats_tenant_row(struct stats_table *t, const struct config *cfg,
                                   const char *name)
{
    bool known = name && config_tenant(cfg, name);
    return stats_row(t, known ? name : STATS_UNKNOWN_TENANT);
}

void stats_latency(struct engine_stats *s, int64_t ms)
{
    if (ms < 0)
        ms = 0;
    for (size_t i = 0; i < STATS_LATENCY_BUCKETS; i++)
        if ((double)ms <= stats_latency_bounds_s[i] * 1000.0)
            atomic_fetch_add(&s->latency_le[i], 1);
    atomic_fetch_add(&s->latency_count, 1);
    atomic_fetch_add(&s->latency_sum_ms, (uint64_t)ms);
}
