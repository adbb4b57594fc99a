/* The process-wide throttle table. Its shape is fixed when built (egress IPs
 * x providers from the config), so lookups need no lock and each pair's
 * state is a handful of atomics updated with compare-and-swap. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald/core.h"
#include "herald/throttle.h"

static size_t ip_index(const struct throttle_table *t, const char *ip)
{
    for (size_t i = 0; i < t->n_ips; i++)
        if (strcmp(t->ips[i], ip) == 0) return i;
    return SIZE_MAX;
}

int throttle_table_new(const struct config *cfg, struct throttle_table **out)
{
    *out = NULL;
    struct throttle_table *t = calloc(1, sizeof *t);
    if (!t) return -ENOMEM;
    size_t max_ips = 1;
    for (size_t i = 0; i < cfg->n_egress; i++) max_ips += cfg->egress[i].ips.n;
    t->ips = calloc(max_ips, sizeof *t->ips);
    t->providers = calloc(cfg->n_providers ? cfg->n_providers : 1, sizeof *t->providers);
    if (!t->ips || !t->providers) goto oom;
    t->n_ips = 1; /* "" */
    for (size_t i = 0; i < cfg->n_egress; i++)
        for (size_t k = 0; k < cfg->egress[i].ips.n; k++)
            if (ip_index(t, cfg->egress[i].ips.items[k]) == SIZE_MAX)
                snprintf(t->ips[t->n_ips++], sizeof t->ips[0], "%s", cfg->egress[i].ips.items[k]);
    for (size_t i = 0; i < cfg->n_providers; i++)
        snprintf(t->providers[t->n_providers++], sizeof t->providers[0], "%s",
                 cfg->providers[i].name);
    t->pairs = calloc(t->n_ips * (t->n_providers ? t->n_providers : 1), sizeof *t->pairs);
    t->ipday = calloc(t->n_ips, sizeof *t->ipday);
    if (!t->pairs || !t->ipday) goto oom;
    int64_t start = (int64_t)llround(cfg->reputation.max * 1e6);
    for (size_t i = 0; i < t->n_ips; i++)
        for (size_t k = 0; k < t->n_providers; k++) {
            struct throttle_pair *p = &t->pairs[i * t->n_providers + k];
            snprintf(p->ip, sizeof p->ip, "%s", t->ips[i]);
            snprintf(p->provider, sizeof p->provider, "%s", t->providers[k]);
            atomic_store(&p->factor_ppm, start > 0 ? start : 1000000);
        }
    *out = t;
    return 0;
oom:
    throttle_table_free(t);
    return -ENOMEM;
}

void throttle_table_reset_slots(struct throttle_table *t)
{
    for (size_t i = 0; i < t->n_ips * t->n_providers; i++)
        atomic_store(&t->pairs[i].tat_us, 0);
}

/* The day's counter, restarted when the (UTC) day has changed. */
static struct throttle_ipday *ipday_at(struct throttle_table *t, const char *ip, int64_t day)
{
    size_t i = ip_index(t, ip ? ip : "");
    if (i == SIZE_MAX) return NULL;
    struct throttle_ipday *d = &t->ipday[i];
    int64_t was = atomic_load(&d->day);
    if (was != day && atomic_compare_exchange_strong(&d->day, &was, day))
        atomic_store(&d->sent, 0);
    return d;
}

int64_t throttle_ip_today(struct throttle_table *t, const char *ip, int64_t day)
{
    struct throttle_ipday *d = ipday_at(t, ip, day);
    return d ? atomic_load(&d->sent) : 0;
}

void throttle_ip_count(struct throttle_table *t, const char *ip, int64_t day)
{
    struct throttle_ipday *d = ipday_at(t, ip, day);
    if (d) atomic_fetch_add(&d->sent, 1);
}

void throttle_ip_restore(struct throttle_table *t, const char *ip, int64_t day, int64_t sent)
{
    struct throttle_ipday *d = ipday_at(t, ip, day);
    if (d && sent > atomic_load(&d->sent)) atomic_store(&d->sent, sent);
}

void throttle_table_free(struct throttle_table *t)
{
    if (!t) return;
    free(t->ipday);
    free(t->pairs);
    free(t->ips);
    free(t->providers);
    free(t);
}

struct throttle_pair *throttle_pair_get(struct throttle_table *t, const char *ip,
                                        const char *provider)
{
    if (!t || !provider) return NULL;
    size_t i = ip_index(t, ip ? ip : "");
    if (i == SIZE_MAX) return NULL;
    for (size_t k = 0; k < t->n_providers; k++)
        if (strcmp(t->providers[k], provider) == 0) return &t->pairs[i * t->n_providers + k];
    return NULL;
}

double throttle_factor(const struct throttle_pair *p)
{
    return (double)atomic_load(&p->factor_ppm) / 1e6;
}

uint32_t throttle_scale(const struct throttle_pair *p, uint32_t limit)
{
    double v = (double)limit * throttle_factor(p);
    return v < 1.0 ? 1 : (uint32_t)llround(v);
}

/* GCRA with reservation: a message may go at max(now, tat - tau), where tau
 * lets a burst of about one second through; taking the slot moves tat on
 * by one emission interval T. */
/* GCRA parameters of a rate scaled by the pair's factor: the emission
 * interval T and the burst tolerance tau (one second's worth), in us. */
static void gcra_params(const struct throttle_pair *p, const struct cfg_rate *rate, int64_t *T_out,
                        int64_t *tau_out)
{
    double per_s = (double)rate->count / (double)rate->window_s * throttle_factor(p);
    if (per_s <= 0) per_s = 1e-6;
    int64_t T = (int64_t)(1e6 / per_s);
    if (T < 1) T = 1;
    double burst = per_s < 1.0 ? 1.0 : per_s;
    *T_out = T;
    *tau_out = (int64_t)((burst - 1.0) * (double)T);
}

int64_t throttle_peek(const struct throttle_pair *p, const struct cfg_rate *rate, int64_t now_us)
{
    if (!p || rate->count == 0 || rate->window_s == 0) return 0;
    int64_t T, tau;
    gcra_params(p, rate, &T, &tau);
    int64_t tat = atomic_load(&p->tat_us);
    int64_t at = tat - tau > now_us ? tat - tau : now_us;
    return at - now_us;
}

int64_t throttle_take(struct throttle_pair *p, const struct cfg_rate *rate, int64_t now_us,
                      int64_t horizon_us)
{
    if (!p || rate->count == 0 || rate->window_s == 0) return 0;
    int64_t T, tau;
    gcra_params(p, rate, &T, &tau);
    int64_t tat = atomic_load(&p->tat_us);
    for (;;) {
        int64_t at = tat - tau > now_us ? tat - tau : now_us;
        int64_t wait = at - now_us;
        if (wait > horizon_us) return -wait;
        int64_t next = (tat > at ? tat : at) + T;
        if (atomic_compare_exchange_weak(&p->tat_us, &tat, next)) return wait;
    }
}

void throttle_signal(struct throttle_pair *p, const struct cfg_reputation *rep,
                     enum throttle_signal_kind kind, int64_t suspend_ms, int64_t now_ms,
                     int64_t now_wall_ms)
{
    if (!p) return;
    if (kind == THROTTLE_OK) {
        atomic_fetch_add(&p->sent, 1);
        return;
    }
    atomic_fetch_add(&p->signals, 1);
    atomic_store(&p->last_signal_ms, now_ms);
    if (kind == THROTTLE_SUSPEND) {
        int64_t until = now_wall_ms + suspend_ms;
        int64_t cur = atomic_load(&p->suspended_until_ms);
        while (cur < until && !atomic_compare_exchange_weak(&p->suspended_until_ms, &cur, until)) {
        }
    }
    int64_t last = atomic_load(&p->last_change_ms);
    if (last != 0 && now_ms - last < 1000) return;
    if (!atomic_compare_exchange_strong(&p->last_change_ms, &last, now_ms)) return;
    int64_t f = atomic_load(&p->factor_ppm);
    int64_t lo = (int64_t)llround(rep->min * 1e6);
    int64_t nf = (int64_t)llround((double)f * rep->decrease);
    atomic_store(&p->factor_ppm, nf < lo ? lo : nf);
    log_event(LOG_WARN, "event=reputation_backoff ip=%s provider=%s factor=%.3f%s", p->ip[0] ? p->ip : "-",
              p->provider, (double)(nf < lo ? lo : nf) / 1e6,
              kind == THROTTLE_SUSPEND ? " suspended=1" : "");
}

void throttle_tick(struct throttle_pair *p, const struct cfg_reputation *rep, int64_t now_ms)
{
    int64_t hi = (int64_t)llround(rep->max * 1e6);
    int64_t f = atomic_load(&p->factor_ppm);
    if (f >= hi) return;
    int64_t last_sig = atomic_load(&p->last_signal_ms);
    int64_t last = atomic_load(&p->last_change_ms);
    if (now_ms - last_sig < rep->interval_ms || now_ms - last < rep->interval_ms) return;
    if (!atomic_compare_exchange_strong(&p->last_change_ms, &last, now_ms)) return;
    int64_t nf = f + (int64_t)llround(rep->increase * 1e6);
    atomic_store(&p->factor_ppm, nf > hi ? hi : nf);
}

enum throttle_signal_kind throttle_classify(const struct cfg_reputation *rep, int code,
                                            const char *enhanced, const char *text,
                                            bool connect_failure, const char *category,
                                            int64_t *suspend_ms)
{
    for (size_t i = 0; text && i < rep->n_rules; i++) {
        const struct cfg_rep_rule *r = &rep->rules[i];
        if (!r->compiled || regexec(&r->re, text, 0, NULL, 0) != 0) continue;
        if (r->action == CFG_REP_IGNORE) return THROTTLE_OK;
        if (r->action == CFG_REP_SUSPEND) {
            *suspend_ms = r->suspend_ms;
            return THROTTLE_SUSPEND;
        }
        return THROTTLE_BACKOFF;
    }
    if (category && strcmp(category, "greylist") == 0) return THROTTLE_OK;
    if (code == 421 || (enhanced && strncmp(enhanced, "4.7.", 4) == 0)) return THROTTLE_BACKOFF;
    if (category && strcmp(category, "rate-limit") == 0) return THROTTLE_BACKOFF;
    if (connect_failure && text &&
        (strstr(text, "refused") || strstr(text, "reset") || strstr(text, "Connection reset")))
        return THROTTLE_BACKOFF;
    return THROTTLE_OK;
}
