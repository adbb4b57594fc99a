/* What `herald status` shows of a running process: worker 0 publishes it
 * about once a second as one JSON document under <prefix>status:<consumer>
 * (expiring, so a dead process disappears), refreshes the queue gauges the
 * metrics endpoint serves, and persists the reputation of every egress IP x
 * provider pair so a restart does not forget what the receivers said. */
#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "herald/engine.h"
#include "status.h"
#include "worker.h"

#define STATUS_EVERY_MS 1000
#define PERSIST_EVERY_MS 5000
#define STATUS_TTL_MS 5000
#define RATE_SLOTS 11 /* rates are measured over the last 10 publications (~10 s) */

struct status_state {
    int64_t last_ms, last_persist_ms;
    size_t n_pairs;
    /* ring of snapshots: time, and per pair / per tenant row the counter */
    int64_t at[RATE_SLOTS];
    uint64_t *pair_sent;                          /* n_pairs x RATE_SLOTS */
    uint64_t tenant_done[STATS_MAX_ROWS][RATE_SLOTS];
    unsigned head, filled;
    double *pair_rate; /* messages per second over the window */
    double tenant_rate[STATS_MAX_ROWS];
    bool restored, restoring;
};

void status_free(struct worker *w)
{
    if (!w->status)
        return;
    free(w->status->pair_sent);
    free(w->status->pair_rate);
    free(w->status);
    w->status = NULL;
}

/* Take a snapshot into the ring; rates compare it with the oldest one. */
static void update_rates(struct worker *w, struct status_state *st, int64_t now)
{
    struct throttle_table *t = w->sh->throttle;
    unsigned cur = st->head, old = st->filled < RATE_SLOTS ? 0 : (st->head + 1) % RATE_SLOTS;
    st->at[cur] = now;
    double dt = st->filled ? (double)(now - st->at[old]) / 1000.0 : 0;
    /* Per-site pairs appear as sites are met: grow the rings (new ones
     * start at zero, so their first rate reads high for one window). */
    size_t n = throttle_pair_count(t);
    if (n > st->n_pairs) {
        uint64_t *ps = realloc(st->pair_sent, n * RATE_SLOTS * sizeof *ps);
        double *pr = ps ? realloc(st->pair_rate, n * sizeof *pr) : NULL;
        if (ps)
            st->pair_sent = ps;
        if (pr) {
            st->pair_rate = pr;
            for (size_t i = st->n_pairs; i < n; i++) {
                uint64_t sent = atomic_load(&throttle_pair_at(t, i)->sent);
                for (unsigned k = 0; k < RATE_SLOTS; k++)
                    ps[i * RATE_SLOTS + k] = sent;
                pr[i] = 0;
            }
            st->n_pairs = n;
        }
    }
    for (size_t i = 0; i < st->n_pairs; i++) {
        uint64_t *ring = &st->pair_sent[i * RATE_SLOTS];
        ring[cur] = atomic_load(&throttle_pair_at(t, i)->sent);
        st->pair_rate[i] = dt > 0 ? (double)(ring[cur] - ring[old]) / dt : 0;
    }
    struct stats_table *tt = &w->sh->stats.tenants;
    for (size_t i = 0; i < STATS_MAX_ROWS; i++) {
        uint64_t *ring = st->tenant_done[i];
        ring[cur] = atomic_load(&tt->rows[i].events[ST_DELIVERED]);
        st->tenant_rate[i] = dt > 0 ? (double)(ring[cur] - ring[old]) / dt : 0;
    }
    st->head = (st->head + 1) % RATE_SLOTS;
    if (st->filled < RATE_SLOTS)
        st->filled++;
    st->last_ms = now;
}

static double per_min(const struct cfg_rate *r)
{
    return r->window_s ? (double)r->count * 60.0 / (double)r->window_s : 0;
}

static char *status_document(struct worker *w, struct status_state *st)
{
    const struct config *cfg = w->cfg;
    struct engine_shared *sh = w->sh;
    struct throttle_table *t = sh->throttle;
    json_t *doc = json_object();
    json_object_set_new(doc, "consumer", json_string(cfg->engine.consumer ? cfg->engine.consumer : ""));
    json_object_set_new(doc, "pid", json_integer(getpid()));
    json_object_set_new(doc, "at", json_integer(clock_wall_ms()));
    json_object_set_new(doc, "started_at", json_integer(sh->started_wall_ms));
    json_object_set_new(doc, "generation", json_integer(w->gen->number));
    json_object_set_new(doc, "workers", json_integer(sh->n_workers));

    json_t *pairs = json_array();
    int64_t wall = clock_wall_ms();
    for (size_t i = 0; i < st->n_pairs; i++) {
            struct throttle_pair *p = throttle_pair_at(t, i);
            const struct cfg_provider *prov = config_provider(cfg, p->provider);
            uint64_t sent = atomic_load(&p->sent);
            int open = atomic_load(&p->open_conns);
            int64_t susp = atomic_load(&p->suspended_until_ms);
            /* An unused pair (the "" address when pools name IPs) is noise. */
            if (sent == 0 && open == 0 && susp <= wall && throttle_factor(p) >= cfg->reputation.max &&
                (!p->ip[0] || !(prov && prov->rate.count)))
                continue;
            json_t *o = json_object();
            json_object_set_new(o, "ip", json_string(p->ip[0] ? p->ip : "-"));
            json_object_set_new(o, "provider", json_string(p->provider));
            if (p->site[0])
                json_object_set_new(o, "site", json_string(p->site));
            double lim = prov ? per_min(&prov->rate) : 0;
            json_object_set_new(o, "limit_per_min", json_real(lim));
            json_object_set_new(o, "factor", json_real(throttle_factor(p)));
            json_object_set_new(o, "effective_per_min", json_real(lim * throttle_factor(p)));
            json_object_set_new(o, "rate_per_min", json_real(st->pair_rate[i] * 60.0));
            uint32_t conns = prov && prov->connections ? prov->connections : 10;
            json_object_set_new(o, "connections_limit", json_integer(throttle_scale(p, conns)));
            json_object_set_new(o, "open_connections", json_integer(open));
            json_object_set_new(o, "suspended_until", json_integer(susp > wall ? susp : 0));
            json_object_set_new(o, "sent", json_integer((json_int_t)sent));
            json_object_set_new(o, "throttle_signals",
                                json_integer((json_int_t)atomic_load(&p->signals)));
            json_object_set_new(o, "parked_by_rate",
                                json_integer((json_int_t)atomic_load(&p->deferred_by_rate)));
            /* The shaping decision on this path: waiting in memory for its
             * slots now, and parked so far by reason. */
            json_object_set_new(o, "waiting", json_integer((json_int_t)atomic_load(&p->waiting)));
            json_t *why = json_object();
            for (int r = SHAPE_R_NONE + 1; r < SHAPE_R_COUNT; r++) {
                uint64_t nr = atomic_load(&p->parked[r]);
                if (nr)
                    json_object_set_new(why, shape_reason_name((enum shape_reason)r),
                                        json_integer((json_int_t)nr));
            }
            json_object_set_new(o, "parked", why);
            json_array_append_new(pairs, o);
        }
    json_object_set_new(doc, "pairs", pairs);

    json_t *warm = json_array();
    int64_t day = wall / 86400000;
    for (size_t i = 0; i < cfg->n_warmup; i++) {
        const char *ip = cfg->warmup[i].ip;
        int64_t day_no = 0;
        int64_t cap = config_warmup_cap(cfg, ip, day, &day_no);
        json_t *o = json_object();
        json_object_set_new(o, "ip", json_string(ip));
        json_object_set_new(o, "day", json_integer(day_no));
        json_object_set_new(o, "days_in_schedule", json_integer((json_int_t)cfg->warmup[i].n_schedule));
        json_object_set_new(o, "cap_today", cap >= 0 ? json_integer(cap) : json_null());
        json_object_set_new(o, "sent_today", json_integer(throttle_ip_today(t, ip, day)));
        json_array_append_new(warm, o);
    }
    json_object_set_new(doc, "warmup", warm);

    json_t *tenants = json_array();
    struct stats_table *tt = &sh->stats.tenants;
    for (size_t i = 0; i < STATS_MAX_ROWS; i++) {
        struct stats_row *r = &tt->rows[i];
        if (!atomic_load(&r->used))
            continue;
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(r->name));
        json_object_set_new(o, "in_flight", json_integer(atomic_load(&r->in_flight)));
        json_object_set_new(o, "rate_per_min", json_real(st->tenant_rate[i] * 60.0));
        for (int e = 0; e < ST_EVENTS; e++)
            json_object_set_new(o, stats_event_names[e],
                                json_integer((json_int_t)atomic_load(&r->events[e])));
        json_array_append_new(tenants, o);
    }
    json_object_set_new(doc, "tenants", tenants);
    char *text = json_dumps(doc, JSON_COMPACT);
    json_decref(doc);
    return text;
}

/* ---- queue gauges ---- */

static void on_xlen(struct redis_client *c, redisReply *r, void *arg)
{
    (void)c;
    struct worker *w = arg;
    if (r && r->type == REDIS_REPLY_INTEGER)
        atomic_store(&w->sh->stats.stream_len, r->integer);
}

static void on_zcard(struct redis_client *c, redisReply *r, void *arg)
{
    (void)c;
    struct worker *w = arg;
    if (r && r->type == REDIS_REPLY_INTEGER)
        atomic_store(&w->sh->stats.retry_len, r->integer);
}

/* XINFO GROUPS: an array of flat name/value arrays (RESP2). */
static void on_groups(struct redis_client *c, redisReply *r, void *arg)
{
    (void)c;
    struct worker *w = arg;
    if (!r || r->type != REDIS_REPLY_ARRAY)
        return;
    for (size_t g = 0; g < r->elements; g++) {
        redisReply *e = r->element[g];
        if (e->type != REDIS_REPLY_ARRAY)
            continue;
        bool ours = false;
        long long pending = -1, lag = -1;
        for (size_t k = 0; k + 1 < e->elements; k += 2) {
            redisReply *n = e->element[k], *v = e->element[k + 1];
            if (n->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(n->str, "name") == 0 && v->type == REDIS_REPLY_STRING)
                ours = strcmp(v->str, w->cfg->redis.group) == 0;
            else if (strcmp(n->str, "pending") == 0 && v->type == REDIS_REPLY_INTEGER)
                pending = v->integer;
            else if (strcmp(n->str, "lag") == 0 && v->type == REDIS_REPLY_INTEGER)
                lag = v->integer;
        }
        if (ours) {
            atomic_store(&w->sh->stats.stream_pending, pending);
            atomic_store(&w->sh->stats.stream_lag, lag);
        }
    }
}

/* ---- reputation persistence ---- */

static void reputation_key(const struct worker *w, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s", w->sh->keys.reputation);
}

/* Warm-up counts are shared by every process sending from an IP: each adds
 * what it sent since its last flush to the IP's count for the day, in one
 * script call that starts the count again on a new day, and learns the
 * total. KEYS: the warm-up hash. ARGV: ip, day, what to add. */
static const char warmup_script[] =
    "local v = redis.call('HGET', KEYS[1], ARGV[1]) "
    "local d, n = nil, 0 "
    "if v then local a, b = string.match(v, '^(%d+) (%d+)$') d = tonumber(a) n = tonumber(b) or 0 end "
    "if d ~= tonumber(ARGV[2]) then n = 0 end "
    "n = n + tonumber(ARGV[3]) "
    "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. ' ' .. n) "
    "return n";

struct warm_flush {
    struct worker *w;
    size_t i; /* warm-up entry */
    int64_t day;
    bool first; /* at start: say what was restored */
};

static void on_warm_flushed(struct redis_client *c, redisReply *r, void *arg)
{
    (void)c;
    struct warm_flush *f = arg;
    const struct config *cfg = f->w->cfg;
    if (r && r->type == REDIS_REPLY_INTEGER && f->i < cfg->n_warmup) {
        const char *ip = cfg->warmup[f->i].ip;
        throttle_ip_shared(f->w->sh->throttle, ip, f->day, r->integer);
        if (f->first && r->integer > 0)
            log_event(LOG_INFO, "event=warmup_restored ip=%s sent_today=%lld", ip,
                      (long long)r->integer);
    } else {
        log_event(LOG_WARN, "event=warmup_flush_failed reason=%s",
                  LOG_VALUE(r && r->type == REDIS_REPLY_ERROR ? r->str : "no reply"));
    }
    free(f);
}

static void flush_warmup(struct worker *w, bool first)
{
    const struct config *cfg = w->cfg;
    struct throttle_table *t = w->sh->throttle;
    int64_t day = clock_wall_ms() / 86400000;
    for (size_t i = 0; i < cfg->n_warmup; i++) {
        struct warm_flush *f = calloc(1, sizeof *f);
        if (!f)
            return;
        int64_t add = throttle_ip_unflushed(t, cfg->warmup[i].ip, day);
        *f = (struct warm_flush){w, i, day, first};
        char dayb[24], addb[24];
        snprintf(dayb, sizeof dayb, "%" PRId64, day);
        snprintf(addb, sizeof addb, "%" PRId64, add);
        const char *argv[] = {"EVAL", warmup_script, "1", w->sh->keys.warmup,
                              cfg->warmup[i].ip, dayb, addb};
        if (redis_client_command_argv(&w->notes, on_warm_flushed, f, (int)HERALD_ARRAY_LEN(argv),
                                      argv, NULL) < 0)
            free(f);
    }
}

static void persist(struct worker *w)
{
    struct throttle_table *t = w->sh->throttle;
    size_t n = throttle_pair_count(t);
    const char **argv = calloc(2 + 2 * n, sizeof *argv);
    char(*fields)[INET6_ADDRSTRLEN + 200] = calloc(n ? n : 1, sizeof *fields);
    char(*values)[80] = calloc(n ? n : 1, sizeof *values);
    if (!argv || !fields || !values)
        goto out;
    char key[320];
    reputation_key(w, key, sizeof key);
    int argc = 0;
    argv[argc++] = "HSET";
    argv[argc++] = key;
    int64_t wall = clock_wall_ms();
    for (size_t i = 0; i < n; i++) {
        struct throttle_pair *p = throttle_pair_at(t, i);
        /* A per-site pair: ip|provider|site hash|site label. */
        if (p->site_hash)
            snprintf(fields[i], sizeof fields[i], "%s|%s|%016llx|%s", p->ip, p->provider,
                     (unsigned long long)p->site_hash, p->site);
        else
            snprintf(fields[i], sizeof fields[i], "%s|%s", p->ip, p->provider);
        snprintf(values[i], sizeof values[i], "%" PRId64 " %" PRId64 " %" PRId64,
                 (int64_t)atomic_load(&p->factor_ppm), (int64_t)atomic_load(&p->suspended_until_ms),
                 wall);
        argv[argc++] = fields[i];
        argv[argc++] = values[i];
    }
    if (n)
        redis_client_command_argv(&w->notes, NULL, NULL, argc, argv, NULL);
out:
    free(argv);
    free(fields);
    free(values);
}

static void on_restore(struct redis_client *c, redisReply *r, void *arg)
{
    (void)c;
    struct worker *w = arg;
    struct status_state *st = w->status;
    if (st)
        st->restoring = false;
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        log_event(LOG_WARN, "event=reputation_restore_failed reason=%s",
                  LOG_VALUE(r && r->type == REDIS_REPLY_ERROR ? r->str : "no reply"));
        return;
    }
    if (st)
        st->restored = true;
    const struct cfg_reputation *rep = &w->cfg->reputation;
    int64_t wall = clock_wall_ms();
    int restored = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        redisReply *f = r->element[i], *v = r->element[i + 1];
        if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
            continue;
        /* ip|provider, or ip|provider|site hash|site label */
        char ip[INET6_ADDRSTRLEN], prov[72], label[96] = "";
        unsigned long long site = 0;
        const char *b1 = strchr(f->str, '|');
        if (!b1 || (size_t)(b1 - f->str) >= sizeof ip)
            continue;
        snprintf(ip, sizeof ip, "%.*s", (int)(b1 - f->str), f->str);
        const char *b2 = strchr(b1 + 1, '|');
        size_t plen = b2 ? (size_t)(b2 - b1 - 1) : strlen(b1 + 1);
        if (plen >= sizeof prov)
            continue;
        snprintf(prov, sizeof prov, "%.*s", (int)plen, b1 + 1);
        if (b2 && sscanf(b2 + 1, "%16llx|%95s", &site, label) != 2)
            continue;
        struct throttle_pair *p =
            site ? throttle_site_pair(w->sh->throttle, ip, prov, site, label)
                 : throttle_pair_get(w->sh->throttle, ip, prov);
        if (site && p && p->site_hash != site)
            continue; /* the site map is full: don't touch the pooled pair */
        long long ppm = 0, until = 0, at = 0;
        if (!p || sscanf(v->str, "%lld %lld %lld", &ppm, &until, &at) != 3)
            continue;
        double f_ = (double)ppm / 1e6;
        if (f_ < rep->min)
            f_ = rep->min;
        if (f_ > rep->max)
            f_ = rep->max;
        atomic_store(&p->factor_ppm, (int64_t)(f_ * 1e6));
        if (until > wall)
            atomic_store(&p->suspended_until_ms, until);
        restored++;
    }
    log_event(LOG_INFO, "event=reputation_restored pairs=%d", restored);
}

void status_on_connected(struct worker *w)
{
    if (w->idx != 0 || !w->status || w->status->restored || w->status->restoring)
        return;
    char key[320];
    reputation_key(w, key, sizeof key);
    if (redis_client_commandf(&w->notes, on_restore, w, "HGETALL %s", key) == 0)
        w->status->restoring = true;
    if (w->cfg->n_warmup)
        flush_warmup(w, true);
}

int status_init(struct worker *w)
{
    if (w->idx != 0)
        return 0;
    struct status_state *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    struct throttle_table *t = w->sh->throttle;
    st->n_pairs = throttle_pair_count(t);
    st->pair_sent = calloc((st->n_pairs ? st->n_pairs : 1) * RATE_SLOTS, sizeof *st->pair_sent);
    st->pair_rate = calloc(st->n_pairs ? st->n_pairs : 1, sizeof *st->pair_rate);
    w->status = st;
    if (!st->pair_sent || !st->pair_rate) {
        status_free(w);
        return -ENOMEM;
    }
    return 0;
}

void status_tick(struct worker *w, int64_t now)
{
    struct status_state *st = w->status;
    if (!st || (st->last_ms && now - st->last_ms < STATUS_EVERY_MS))
        return;
    update_rates(w, st, now);
    if (!redis_client_up(&w->notes))
        return;
    const struct config *cfg = w->cfg;
    redis_client_commandf(&w->notes, on_xlen, w, "XLEN %s", cfg->redis.jobs);
    redis_client_commandf(&w->notes, on_zcard, w, "ZCARD %s", w->sh->keys.retry);
    redis_client_commandf(&w->notes, on_groups, w, "XINFO GROUPS %s", cfg->redis.jobs);
    char *doc = status_document(w, st);
    if (doc) {
        char key[KEYS_MAX];
        keys_status(&w->sh->keys, cfg->engine.consumer ? cfg->engine.consumer : "", key,
                    sizeof key);
        redis_client_commandf(&w->notes, NULL, NULL, "SET %s %s PX %d", key, doc, STATUS_TTL_MS);
        free(doc);
    }
    /* Warm-up counts every second: processes sharing a warming IP overshoot
     * its day's cap by at most about a second of their sending. */
    if (st->restored)
        flush_warmup(w, false);
    if (st->restored && now - st->last_persist_ms >= PERSIST_EVERY_MS) {
        persist(w);
        st->last_persist_ms = now;
    }
}
