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
#include "sites.h"

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
    atomic_store(&t->start_factor_ppm, start > 0 ? start : 1000000);
    if (throttle_sites_new(t) < 0) goto oom;
    for (size_t i = 0; i < t->n_ips; i++)
        for (size_t k = 0; k < t->n_providers; k++) {
            struct throttle_pair *p = &t->pairs[i * t->n_providers + k];
            snprintf(p->ip, sizeof p->ip, "%s", t->ips[i]);
            snprintf(p->provider, sizeof p->provider, "%s", t->providers[k]);
            snprintf(p->group, sizeof p->group, "%s", t->providers[k]);
            atomic_store(&p->factor_ppm, start > 0 ? start : 1000000);
            atomic_store(&p->conn_grant, -1);
        }
    *out = t;
    return 0;
oom:
    throttle_table_free(t);
    return -ENOMEM;
}

void throttle_table_retime(struct throttle_table *t, const struct config *cfg, int64_t now_us)
{
    for (size_t i = 0, n = throttle_pair_count(t); i < n; i++) {
        struct throttle_pair *p = throttle_pair_at(t, i);
        const struct cfg_provider *prov = config_provider(cfg, p->provider);
        if (!prov || !prov->rate.count || !prov->rate.window_s) {
            atomic_store(&p->tat_us, 0);
            continue;
        }
        /* The next slot at most one new interval from now (tat - tau), and
         * a pair that was sending keeps its place: no fresh burst. */
        int64_t T, tau;
        throttle_gcra_params(p, &prov->rate, &T, &tau);
        int64_t cap = now_us + tau + T;
        int64_t tat = atomic_load(&p->tat_us);
        while (tat > cap && !atomic_compare_exchange_weak(&p->tat_us, &tat, cap)) {
        }
    }
}

/* The day's counter, restarted when the (UTC) day has changed. */
static struct throttle_ipday *ipday_at(struct throttle_table *t, const char *ip, int64_t day)
{
    size_t i = ip_index(t, ip ? ip : "");
    if (i == SIZE_MAX) return NULL;
    struct throttle_ipday *d = &t->ipday[i];
    int64_t was = atomic_load(&d->day);
    if (was != day && atomic_compare_exchange_strong(&d->day, &was, day)) {
        atomic_store(&d->sent, 0);
        atomic_store(&d->flushed, 0);
        atomic_store(&d->others, 0);
    }
    return d;
}

int64_t throttle_ip_today(struct throttle_table *t, const char *ip, int64_t day)
{
    struct throttle_ipday *d = ipday_at(t, ip, day);
    return d ? atomic_load(&d->sent) + atomic_load(&d->others) : 0;
}

void throttle_ip_count(struct throttle_table *t, const char *ip, int64_t day)
{
    struct throttle_ipday *d = ipday_at(t, ip, day);
    if (d) atomic_fetch_add(&d->sent, 1);
}

int64_t throttle_ip_unflushed(struct throttle_table *t, const char *ip, int64_t day)
{
    struct throttle_ipday *d = ipday_at(t, ip, day);
    if (!d) return 0;
    int64_t sent = atomic_load(&d->sent);
    return sent - atomic_exchange(&d->flushed, sent);
}

void throttle_ip_shared(struct throttle_table *t, const char *ip, int64_t day, int64_t total)
{
    struct throttle_ipday *d = ipday_at(t, ip, day);
    if (!d) return;
    int64_t others = total - atomic_load(&d->flushed);
    atomic_store(&d->others, others > 0 ? others : 0);
    atomic_store(&d->known, true);
}

bool throttle_ip_known(struct throttle_table *t, const char *ip)
{
    size_t i = ip_index(t, ip ? ip : "");
    return i == SIZE_MAX || atomic_load(&t->ipday[i].known);
}

void throttle_table_free(struct throttle_table *t)
{
    if (!t) return;
    throttle_sites_free(t);
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

/* GCRA with reservation: a message may go at max(now, tat - tau); taking
 * the slot moves tat on by one emission interval T. tau lets a burst of
 * factor x 1 s of the scaled rate through (capped at one second's worth),
 * so the burst shrinks with the rate when the pair is backed off. */
void throttle_gcra_params(const struct throttle_pair *p, const struct cfg_rate *rate,
                          int64_t *T_out, int64_t *tau_out)
{
    double f = throttle_factor(p);
    double per_s = (double)rate->count / (double)rate->window_s * f;
    if (per_s <= 0) per_s = 1e-6;
    int64_t T = (int64_t)(1e6 / per_s);
    if (T < 1) T = 1;
    double burst = per_s * (f < 1.0 ? f : 1.0);
    if (burst < 1.0) burst = 1.0;
    *T_out = T;
    *tau_out = (int64_t)((burst - 1.0) * (double)T);
}

int64_t throttle_peek(const struct throttle_pair *p, const struct cfg_rate *rate, int64_t now_us)
{
    if (!p || rate->count == 0 || rate->window_s == 0) return 0;
    int64_t T, tau;
    throttle_gcra_params(p, rate, &T, &tau);
    int64_t tat = atomic_load(&p->tat_us);
    int64_t at = tat - tau > now_us ? tat - tau : now_us;
    return at - now_us;
}

int64_t throttle_take(struct throttle_pair *p, const struct cfg_rate *rate, int64_t now_us,
                      int64_t horizon_us)
{
    if (!p || rate->count == 0 || rate->window_s == 0) return 0;
    /* The back-off's floor is an absolute rate: it needs the unscaled one. */
    int64_t conf_micro = (int64_t)llround((double)rate->count / (double)rate->window_s * 1e6);
    if (atomic_load_explicit(&p->rate_micro_per_s, memory_order_relaxed) != conf_micro)
        atomic_store(&p->rate_micro_per_s, conf_micro);
    int64_t T, tau;
    throttle_gcra_params(p, rate, &T, &tau);
    int64_t tat = atomic_load(&p->tat_us);
    for (;;) {
        int64_t at = tat - tau > now_us ? tat - tau : now_us;
        int64_t wait = at - now_us;
        if (wait > horizon_us) return -wait;
        int64_t next = (tat > at ? tat : at) + T;
        if (atomic_compare_exchange_weak(&p->tat_us, &tat, next)) return wait;
    }
}

/* The floor as a factor: min, or min_rate over the rate the pair was last
 * asked to keep, whichever is larger; never above max. A pair without a
 * rate (connections only) keeps at least 1% of them. */
static int64_t floor_ppm(const struct throttle_pair *p, const struct cfg_reputation *rep)
{
    double lo = rep->min;
    int64_t micro = atomic_load_explicit(&p->rate_micro_per_s, memory_order_relaxed);
    if (micro <= 0) {
        if (lo < 0.01) lo = 0.01;
    } else if (rep->min_rate.count && rep->min_rate.window_s) {
        double want = (double)rep->min_rate.count / (double)rep->min_rate.window_s;
        double f = want / ((double)micro / 1e6);
        if (f > lo) lo = f;
    }
    if (lo > rep->max) lo = rep->max;
    int64_t ppm = (int64_t)llround(lo * 1e6);
    return ppm < 1 ? 1 : ppm;
}

double throttle_floor(const struct throttle_pair *p, const struct cfg_reputation *rep)
{
    return (double)floor_ppm(p, rep) / 1e6;
}

/* Replies of fewer than this many in a window are too few to trust their
 * share: such a window cuts at most to decrease / 2. */
#define JUDGE_MIN_REPLIES 10

/* Multiplicative decrease, once per window with signals, to decrease x
 * what the receiver took: the accepted share of the replies (1 - share),
 * or the accepted replies per second over the rate herald was sending at,
 * whichever is larger. When herald sent at r and the receiver took L,
 * both say L / r (the second also when a burst or a queue of retries made
 * herald send faster than r), so the new rate is about decrease x L: just
 * under the receiver's limit in one step, however far above it herald was.
 * The share alone decides for a pair without a rate, and a window of few
 * replies cuts at most by half. */
static void decrease(struct throttle_pair *p, const struct cfg_reputation *rep, uint64_t n,
                     uint64_t b, int64_t elapsed_ms, int64_t now_ms)
{
    if (n < b) n = b;
    double share = (double)b / (double)n;
    if (n < JUDGE_MIN_REPLIES && share > 0.5) share = 0.5;
    double took = 1.0 - share;
    int64_t f = atomic_load(&p->factor_ppm);
    int64_t micro = atomic_load_explicit(&p->rate_micro_per_s, memory_order_relaxed);
    if (micro > 0 && f > 0 && elapsed_ms > 0 && n >= JUDGE_MIN_REPLIES) {
        double sending_per_s = (double)micro / 1e6 * (double)f / 1e6;
        double accepted_per_s = (double)(n - b) * 1000.0 / (double)elapsed_ms;
        if (accepted_per_s / sending_per_s > took) took = accepted_per_s / sending_per_s;
        if (took > 1.0) took = 1.0;
    }
    int64_t lo = floor_ppm(p, rep);
    int64_t nf = (int64_t)llround((double)f * rep->decrease * took);
    if (nf < lo) nf = lo;
    if (nf > f) nf = f; /* a floor above the factor is for throttle_tick to lift */
    atomic_store(&p->factor_ppm, nf);
    atomic_store(&p->last_change_ms, now_ms);
    atomic_store(&p->settle_until_ms, now_ms + rep->window_ms);
    atomic_store(&p->clean_steps, 0);
    if (nf != f)
        log_event(LOG_WARN,
                  "event=reputation_backoff ip=%s provider=%s factor=%.4f was=%.4f replies=%llu "
                  "signals=%llu",
                  p->ip[0] ? p->ip : "-", p->provider, (double)nf / 1e6, (double)f / 1e6,
                  (unsigned long long)n, (unsigned long long)b);
}

/* Close the current window when it is over (one caller wins the CAS) and
 * decide on what it held. */
static void judge(struct throttle_pair *p, const struct cfg_reputation *rep, int64_t now_ms)
{
    int64_t ws = atomic_load(&p->window_start_ms);
    if (ws == 0) {
        atomic_compare_exchange_strong(&p->window_start_ms, &ws, now_ms);
        return;
    }
    if (now_ms - ws < rep->window_ms) return;
    if (!atomic_compare_exchange_strong(&p->window_start_ms, &ws, now_ms)) return;
    uint64_t n = atomic_exchange(&p->win_replies, 0);
    uint64_t b = atomic_exchange(&p->win_signals, 0);
    if (b > 0) decrease(p, rep, n, b, now_ms - ws, now_ms);
}

void throttle_signal(struct throttle_pair *p, const struct cfg_reputation *rep,
                     enum throttle_signal_kind kind, int64_t suspend_ms, int64_t now_ms,
                     int64_t now_wall_ms)
{
    if (!p) return;
    if (kind == THROTTLE_OK) {
        atomic_fetch_add(&p->sent, 1);
    } else {
        atomic_fetch_add(&p->signals, 1);
        atomic_store(&p->last_signal_ms, now_ms);
        atomic_store(&p->clean_steps, 0);
    }
    if (kind == THROTTLE_SUSPEND) {
        int64_t until = now_wall_ms + suspend_ms;
        int64_t cur = atomic_load(&p->suspended_until_ms);
        while (cur < until && !atomic_compare_exchange_weak(&p->suspended_until_ms, &cur, until)) {
        }
        log_event(LOG_WARN, "event=reputation_suspend ip=%s provider=%s until=%lld",
                  p->ip[0] ? p->ip : "-", p->provider, (long long)until);
    }
    judge(p, rep, now_ms);
    if (now_ms < atomic_load(&p->settle_until_ms)) return;
    atomic_fetch_add(&p->win_replies, 1);
    if (kind != THROTTLE_OK) atomic_fetch_add(&p->win_signals, 1);
}

/* Increase: after each clean interval the factor grows by `increase` of
 * itself, the step doubling with each further clean interval (5%, 10%,
 * 20%, ... with the default): careful probing just after a back-off, and
 * back to full rate in a handful of intervals once the receiver relents,
 * from any depth (the steps are relative, so a floor of a few a minute
 * comes back as fast as 10% of the rate does). */
#define MAX_DOUBLINGS 10

bool throttle_tick(struct throttle_pair *p, const struct cfg_reputation *rep, int64_t now_ms)
{
    judge(p, rep, now_ms);
    int64_t hi = (int64_t)llround(rep->max * 1e6);
    int64_t lo = floor_ppm(p, rep);
    int64_t f = atomic_load(&p->factor_ppm);
    if (f < lo && atomic_compare_exchange_strong(&p->factor_ppm, &f, lo)) f = lo;
    if (f >= hi || rep->increase <= 0) return false;
    int64_t last_sig = atomic_load(&p->last_signal_ms);
    int64_t last = atomic_load(&p->last_change_ms);
    if (now_ms - last_sig < rep->interval_ms || now_ms - last < rep->interval_ms) return false;
    if (!atomic_compare_exchange_strong(&p->last_change_ms, &last, now_ms)) return false;
    int64_t k = atomic_fetch_add(&p->clean_steps, 1);
    if (k > MAX_DOUBLINGS) k = MAX_DOUBLINGS;
    int64_t nf = (int64_t)llround((double)f * (1.0 + rep->increase * (double)(1LL << k)));
    if (nf <= f) nf = f + 1;
    atomic_store(&p->factor_ppm, nf > hi ? hi : nf);
    log_event(LOG_DEBUG, "event=reputation_increase ip=%s provider=%s factor=%.4f",
              p->ip[0] ? p->ip : "-", p->provider, (double)(nf > hi ? hi : nf) / 1e6);
    return true;
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
