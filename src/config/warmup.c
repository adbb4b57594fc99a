/* The `warmup:` section: new egress IPs start with a per-day cap that grows
 * along a schedule, because receivers judge an address with no history by
 * how gently it starts.
 *
 *   warmup:
 *     "192.0.2.10": { start: 2026-11-20, schedule: [50, 100, 250, 500, 1000] }
 *
 * Day 1 is the start date (UTC); past the schedule the address has no cap.
 * The address must belong to an egress pool. */
#include <stdlib.h>
#include <string.h>

#include "config/loader.h"
#include "herald/config.h"

struct warm_ctx {
    struct cfg_warmup *w;
    bool have_start, have_schedule;
};

/* "YYYY-MM-DD" -> days since 1970-01-01. */
static int parse_day(const char *s, int64_t *out)
{
    int64_t ms;
    char full[40];
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-')
        return -1;
    snprintf(full, sizeof full, "%sT00:00:00Z", s);
    if (config_parse_time_ms(full, &ms) < 0)
        return -1;
    *out = ms / 86400000;
    return 0;
}

static int warm_key(struct loader *L, const char *key, const struct ynode *k, const struct ynode *v,
                    void *obj)
{
    struct warm_ctx *c = obj;
    (void)k;
    if (strcmp(key, "start") == 0) {
        if (v->type != YNODE_SCALAR || parse_day(v->str, &c->w->start_day) < 0)
            return loader_fail(L, v, "warmup start: expected a date YYYY-MM-DD");
        c->have_start = true;
        return 0;
    }
    if (strcmp(key, "schedule") == 0) {
        if (v->type != YNODE_SEQ || v->n_children == 0 || v->n_children > 366)
            return loader_fail(L, v, "warmup schedule: expected a list of 1..366 daily caps");
        c->w->schedule = calloc(v->n_children, sizeof *c->w->schedule);
        if (!c->w->schedule)
            return loader_oom(L);
        for (const struct ynode *it = v->child; it; it = it->next) {
            int rc = loader_u32(L, it, 1, 100000000, &c->w->schedule[c->w->n_schedule]);
            if (rc)
                return rc;
            c->w->n_schedule++;
        }
        c->have_schedule = true;
        return 0;
    }
    return LOADER_UNKNOWN_KEY;
}

static bool in_a_pool(const struct config *cfg, const char *ip)
{
    for (size_t p = 0; p < cfg->n_egress; p++)
        for (size_t i = 0; i < cfg->egress[p].ips.n; i++)
            if (strcmp(cfg->egress[p].ips.items[i], ip) == 0)
                return true;
    return false;
}

int loader_warmup(struct loader *L, const struct ynode *k, const struct ynode *v)
{
    struct config *cfg = L->cfg;
    (void)k;
    if (ynode_is_null(v))
        return 0;
    int rc = loader_check_map(L, v, "warmup");
    if (rc)
        return rc;
    cfg->warmup = calloc(v->n_children / 2 + 1, sizeof *cfg->warmup);
    if (!cfg->warmup)
        return loader_oom(L);
    for (const struct ynode *key = v->child; key && key->next; key = key->next->next) {
        const struct ynode *val = key->next;
        if (!in_a_pool(cfg, key->str))
            return loader_fail(L, key, "warmup: %s is not in any egress pool", key->str);
        struct cfg_warmup *w = &cfg->warmup[cfg->n_warmup++];
        if (!(w->ip = strdup(key->str)))
            return loader_oom(L);
        struct warm_ctx c = {w, false, false};
        if ((rc = loader_walk(L, val, "warmup", warm_key, &c)))
            return rc;
        if (!c.have_start)
            return loader_fail(L, val, "missing required key 'start' in warmup.%s", w->ip);
        if (!c.have_schedule)
            return loader_fail(L, val, "missing required key 'schedule' in warmup.%s", w->ip);
    }
    return 0;
}

void config_warmup_free(struct config *cfg)
{
    for (size_t i = 0; i < cfg->n_warmup; i++) {
        free(cfg->warmup[i].ip);
        free(cfg->warmup[i].schedule);
    }
    free(cfg->warmup);
}

int64_t config_warmup_cap(const struct config *cfg, const char *ip, int64_t day, int64_t *day_no)
{
    for (size_t i = 0; i < cfg->n_warmup; i++) {
        const struct cfg_warmup *w = &cfg->warmup[i];
        if (strcmp(w->ip, ip) != 0)
            continue;
        int64_t n = day - w->start_day; /* 0 on the start date */
        if (n < 0)
            n = 0;
        if (day_no)
            *day_no = n + 1;
        return (size_t)n < w->n_schedule ? (int64_t)w->schedule[n] : -1;
    }
    return -1;
}
