/* Setting up a simulation from a config and a traffic file, and summing up
 * its numbers (sim.h). The event loop itself is in sim.c. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "herald/core.h"
#include "herald/job.h"
#include "herald/sim.h"
#include "sim/simint.h"

#define DEFAULT_MAX_MS (30LL * 86400 * 1000)

static const struct sim_site default_behaviour = {
    .latency_ms = 100,
    .reply = (char *)"421 4.7.0 Try again later",
    .tempfail_reply = (char *)"451 4.3.0 Temporary failure, try again",
    .bounce_reply = (char *)"550 5.1.1 User unknown",
};

/* "421 4.7.0 Try again later" -> code, enhanced code, text. */
static void reply_result(struct smtp_result *res, const char *line)
{
    memset(res, 0, sizeof *res);
    res->code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
    res->outcome = line[0] == '5' ? SMTP_OUT_PERMFAIL : SMTP_OUT_TEMPFAIL;
    res->stage = SMTP_STAGE_MAIL;
    const char *text = line[3] ? line + 4 : "";
    snprintf(res->reply, sizeof res->reply, "%s", text);
    size_t n = strcspn(text, " ");
    int dots = 0;
    bool ok = n > 0 && n < sizeof res->enhanced && text[0] == line[0];
    for (size_t i = 0; ok && i < n; i++) {
        if (text[i] == '.')
            dots++;
        else if (text[i] < '0' || text[i] > '9')
            ok = false;
    }
    if (ok && dots == 2) memcpy(res->enhanced, text, n);
}

static int add_site(struct sim *s, const struct sim_site *b, const char *name, size_t *cap)
{
    if (s->n_sites == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        struct ssite *ns = realloc(s->sites, nc * sizeof *ns);
        struct sim_stats *ne = realloc(s->r->ent[SIM_E_SITE], nc * sizeof *ne);
        if (ns) s->sites = ns;
        if (ne) s->r->ent[SIM_E_SITE] = ne;
        if (!ns || !ne) return -ENOMEM;
        *cap = nc;
    }
    struct ssite *st = &s->sites[s->n_sites];
    struct sim_stats *e = &s->r->ent[SIM_E_SITE][s->n_sites];
    memset(st, 0, sizeof *st);
    memset(e, 0, sizeof *e);
    s->n_sites++;
    s->r->n[SIM_E_SITE] = s->n_sites;
    snprintf(e->name, sizeof e->name, "%s", name);
    st->b = b;
    st->prov = config_provider_for_host(s->cfg, b->n_mx ? b->mx[0] : name);
    st->prov_idx = st->prov ? (size_t)(st->prov - s->cfg->providers) : 0;
    /* The site is its exchangers (a domain without MX records: itself). */
    const char *implicit[1] = {name};
    const char *const *names = b->n_mx ? (const char *const *)b->mx : implicit;
    size_t n_names = b->n_mx ? b->n_mx : 1;
    st->hash = throttle_site_hash(names, n_names);
    throttle_site_label(names, n_names, st->label, sizeof st->label);
    st->slot = (uint32_t)(s->n_sites - 1);
    for (size_t i = 0; i + 1 < s->n_sites; i++)
        if (s->sites[i].hash == st->hash) {
            st->slot = s->sites[i].slot;
            break;
        }
    st->win = calloc(s->table->n_ips, sizeof *st->win);
    if (!st->win) return -ENOMEM;
    st->res[REPLY_OK].outcome = SMTP_OUT_OK;
    st->res[REPLY_OK].code = 250;
    reply_result(&st->res[REPLY_LIMIT], b->reply);
    reply_result(&st->res[REPLY_TEMPFAIL], b->tempfail_reply);
    reply_result(&st->res[REPLY_BOUNCE], b->bounce_reply);
    return 0;
}

/* Sites: every site line but "*", then one per domain of the jobs that
 * has none (behaving as "*" says, or as a plain receiver). */
static int setup_sites(struct sim *s)
{
    const struct sim_traffic *t = s->t;
    size_t cap = 0;
    size_t *sim_of = calloc(t->n_sites + 1, sizeof *sim_of);
    s->dom_site = malloc((t->n_names + 1) * sizeof *s->dom_site);
    if (!sim_of || !s->dom_site) {
        free(sim_of);
        return -ENOMEM;
    }
    int rc = 0;
    for (size_t i = 0; i < t->n_sites && rc == 0; i++)
        if ((int)i != t->default_site) {
            sim_of[i] = s->n_sites;
            rc = add_site(s, &t->sites[i], t->sites[i].name, &cap);
        }
    for (size_t i = 0; i < t->n_names; i++)
        s->dom_site[i] = t->site_of[i] != SIZE_MAX ? (uint32_t)sim_of[t->site_of[i]] : NONE;
    const struct sim_site *dflt =
        t->default_site >= 0 ? &t->sites[t->default_site] : &default_behaviour;
    for (size_t g = 0; g < t->n_jobs && rc == 0; g++) {
        uint32_t d = t->jobs[g].domain;
        if (s->dom_site[d] != NONE) continue;
        s->dom_site[d] = (uint32_t)s->n_sites;
        rc = add_site(s, dflt, t->names[d], &cap);
    }
    free(sim_of);
    return rc;
}

static size_t table_ip(const struct throttle_table *tt, const char *ip)
{
    for (size_t i = 0; i < tt->n_ips; i++)
        if (strcmp(tt->ips[i], ip) == 0) return i;
    return 0;
}

static int setup_tenants(struct sim *s, char *err, size_t errlen)
{
    const struct config *cfg = s->cfg;
    for (size_t g = 0; g < s->t->n_jobs; g++) {
        const char *name = sim_traffic_name(s->t, s->t->jobs[g].tenant);
        const struct cfg_tenant *t = config_tenant(cfg, name);
        if (!t) {
            snprintf(err, errlen, "line %u: tenant \"%.64s\" is not in the config",
                     s->t->jobs[g].line, name);
            return -HERR_CONFIG;
        }
        s->gen_tenant[g] = (uint16_t)(t - cfg->tenants);
    }
    size_t n = cfg->n_tenants ? cfg->n_tenants : 1;
    s->tips = calloc(n, sizeof *s->tips);
    s->n_tips = calloc(n, sizeof *s->n_tips);
    s->keys = calloc(n, sizeof *s->keys);
    s->tgcra = calloc(n, sizeof *s->tgcra);
    s->r->ent[SIM_E_TENANT] = calloc(n, sizeof(struct sim_stats));
    if (!s->tips || !s->n_tips || !s->keys || !s->tgcra || !s->r->ent[SIM_E_TENANT]) return -ENOMEM;
    s->r->n[SIM_E_TENANT] = cfg->n_tenants;
    for (size_t i = 0; i < cfg->n_tenants; i++) {
        const struct cfg_tenant *t = &cfg->tenants[i];
        snprintf(s->r->ent[SIM_E_TENANT][i].name, sizeof s->r->ent[0][0].name, "%s", t->name);
        /* the gate's class keys: tenant/priority */
        for (int p = 0; p < 3; p++)
            snprintf(s->keys[i][p], sizeof s->keys[i][p], "%s/%d", t->name, p);
        atomic_store(&s->tgcra[i].factor_ppm, 1000000);
        const struct cfg_egress_pool *eg = config_egress(cfg, t->egress ? t->egress : "default");
        if (!eg || eg->ips.n == 0) continue;
        s->tips[i] = calloc(eg->ips.n, sizeof **s->tips);
        if (!s->tips[i]) return -ENOMEM;
        for (size_t k = 0; k < eg->ips.n; k++)
            s->tips[i][k] = (uint16_t)table_ip(s->table, eg->ips.items[k]);
        s->n_tips[i] = eg->ips.n;
    }
    return 0;
}

static int setup_paths(struct sim *s)
{
    struct throttle_table *tt = s->table;
    s->stride = tt->n_providers + s->n_sites;
    s->n_paths = tt->n_ips * s->stride;
    if (s->n_paths * s->n_workers > UINT32_MAX - 1) return -ENOMEM;
    s->paths = calloc(s->n_paths ? s->n_paths : 1, sizeof *s->paths);
    s->queues = calloc(s->n_paths * s->n_workers + 1, sizeof *s->queues);
    s->used = calloc(s->n_paths + 1, sizeof *s->used);
    s->workers = calloc(s->n_workers, sizeof *s->workers);
    if (!s->paths || !s->queues || !s->used || !s->workers) return -ENOMEM;
    return 0;
}

static int setup(struct sim *s, char *err, size_t errlen)
{
    const struct config *cfg = s->cfg;
    int rc = throttle_table_new(cfg, &s->table);
    if (rc < 0) return rc;
    struct throttle_table *tt = s->table;
    s->r->ent[SIM_E_IP] = calloc(tt->n_ips, sizeof(struct sim_stats));
    s->jobs = malloc((s->t->total ? s->t->total : 1) * sizeof *s->jobs);
    s->gen_done = calloc(s->t->n_jobs + 1, sizeof *s->gen_done);
    s->gen_tenant = calloc(s->t->n_jobs + 1, sizeof *s->gen_tenant);
    if (!s->r->ent[SIM_E_IP] || !s->jobs || !s->gen_done || !s->gen_tenant) return -ENOMEM;
    s->r->n[SIM_E_IP] = tt->n_ips;
    for (size_t i = 0; i < tt->n_ips; i++)
        snprintf(s->r->ent[SIM_E_IP][i].name, sizeof s->r->ent[0][0].name, "%s",
                 tt->ips[i][0] ? tt->ips[i] : "-");
    if ((rc = setup_tenants(s, err, errlen)) < 0 || (rc = setup_sites(s)) < 0 ||
        (rc = setup_paths(s)) < 0)
        return rc;
    for (size_t k = 0; k < SIM_E_COUNT; k++)
        for (size_t i = 0; i < s->r->n[k]; i++)
            s->r->ent[k][i].first_ms = s->r->ent[k][i].last_ms = -1;
    s->stream_head = s->stream_tail = NONE;
    return 0;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

/* Percentiles of enqueue -> delivery per entity of one kind, by a
 * counting sort of the delivered jobs into one array. */
static int percentiles(struct sim *s, enum sim_entity k)
{
    size_t n = s->r->n[k];
    size_t *off = calloc(n + 1, sizeof *off);
    int64_t *lat = malloc((s->n_jobs ? s->n_jobs : 1) * sizeof *lat);
    if (!off || !lat) {
        free(off);
        free(lat);
        return -ENOMEM;
    }
    for (size_t i = 0; i < n; i++)
        off[i + 1] = off[i] + s->r->ent[k][i].delivered;
    for (uint32_t i = 0; i < s->n_jobs; i++) {
        const struct sjob *j = &s->jobs[i];
        if (!(j->flags & JF_DELIVERED)) continue;
        size_t e = k == SIM_E_SITE     ? j->site
                   : k == SIM_E_TENANT ? j->tenant
                                       : j->path / s->stride;
        lat[off[e]++] = j->lat_ms;
    }
    for (size_t i = 0, start = 0; i < n; i++) {
        struct sim_stats *st = &s->r->ent[k][i];
        size_t m = st->delivered;
        if (m) {
            int64_t *a = lat + start;
            qsort(a, m, sizeof *a, cmp_i64);
            st->p50_ms = a[(m - 1) / 2];
            st->p99_ms = a[(size_t)ceil(0.99 * (double)m) - 1];
            st->max_ms = a[m - 1];
        }
        start += m;
    }
    free(off);
    free(lat);
    return 0;
}

uint64_t sim_sum(const struct sim_stats *s, enum sim_series k, int64_t from_s, int64_t to_s)
{
    uint64_t n = 0;
    for (int64_t i = from_s < 0 ? 0 : from_s; i < to_s && (size_t)i < s->n_sec; i++)
        n += s->series[k][i];
    return n;
}

double sim_rate(const struct sim_stats *s, enum sim_series k, int64_t from_s, int64_t to_s)
{
    return to_s > from_s ? (double)sim_sum(s, k, from_s, to_s) / (double)(to_s - from_s) : 0;
}

static void rates(struct sim_stats *st)
{
    if (st->first_ms < 0) return;
    int64_t span = st->last_ms - st->first_ms;
    int64_t from = st->first_ms + span / 10, to = st->last_ms - span / 10;
    int64_t from_s = from / 1000, to_s = to / 1000;
    if (to_s - from_s < 2) {
        st->steady_per_s = (double)st->delivered / (span > 1000 ? (double)span / 1000 : 1.0);
    } else {
        /* whole seconds inside the middle stretch */
        st->steady_per_s = sim_rate(st, SIM_S_DELIVERED, from_s + 1, to_s);
    }
    for (size_t b = 0; b * 10 < st->n_sec; b++) {
        double r = (double)sim_sum(st, SIM_S_DELIVERED, (int64_t)b * 10, (int64_t)b * 10 + 10) / 10;
        if (r > st->peak_per_s) st->peak_per_s = r;
    }
}

static int finish(struct sim *s)
{
    struct sim_result *r = s->r;
    r->jobs = s->t->total;
    r->pending = s->t->total - s->ended;
    r->events = s->events;
    r->end_ms = s->now;
    for (int k = 0; k < SIM_E_COUNT; k++) {
        if (percentiles(s, (enum sim_entity)k) < 0) return -ENOMEM;
        for (size_t i = 0; i < r->n[k]; i++)
            rates(&r->ent[k][i]);
    }
    r->paths = calloc(s->n_used ? s->n_used : 1, sizeof *r->paths);
    if (!r->paths) return -ENOMEM;
    r->workers = s->n_workers;
    for (size_t i = 0; i < s->n_used; i++) {
        const struct spath *p = &s->paths[s->used[i]];
        struct sim_path *o = &r->paths[r->n_paths++];
        snprintf(o->ip, sizeof o->ip, "%s", p->pair->ip[0] ? p->pair->ip : "-");
        snprintf(o->provider, sizeof o->provider, "%s", p->pair->provider);
        snprintf(o->site, sizeof o->site, "%s", p->pair->site_hash ? p->pair->site : "");
        o->factor_min = p->factor_min;
        o->factor_end = throttle_factor(p->pair);
        o->sent = atomic_load(&p->pair->sent);
        o->signals = atomic_load(&p->pair->signals);
    }
    return 0;
}

static void teardown(struct sim *s)
{
    for (size_t i = 0; i < s->n_used; i++)
        for (uint32_t w = 0; w < s->n_workers; w++)
            fairq_free(&s->queues[(size_t)s->used[i] * s->n_workers + w].q);
    for (size_t i = 0; i < s->n_sites; i++)
        free(s->sites[i].win);
    for (size_t i = 0; s->tips && i < s->cfg->n_tenants; i++)
        free(s->tips[i]);
    free(s->tips);
    free(s->n_tips);
    free(s->keys);
    free(s->tgcra);
    free(s->sites);
    free(s->dom_site);
    free(s->gen_done);
    free(s->gen_tenant);
    free(s->paths);
    free(s->queues);
    free(s->used);
    free(s->workers);
    free(s->jobs);
    free(s->ev);
    free(s->rs);
    throttle_table_free(s->table);
}

int sim_run(const struct config *cfg, const struct sim_traffic *t, const struct sim_options *o,
            struct sim_result **out, char *err, size_t errlen)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    *out = NULL;
    struct sim s;
    memset(&s, 0, sizeof s);
    s.cfg = cfg;
    s.t = t;
    s.rng = o && o->seed ? o->seed : 1;
    s.recv_rng = s.rng ^ 0x9e3779b97f4a7c15ULL;
    s.start_wall = o ? o->start_wall_ms : 0;
    s.n_workers = o && o->workers ? o->workers : cfg->engine.workers;
    if (s.n_workers == 0) s.n_workers = 1;
    s.r = calloc(1, sizeof *s.r);
    if (!s.r) return -ENOMEM;
    if (t->total > UINT32_MAX - 1 || cfg->n_tenants > UINT16_MAX || s.n_workers > 1024) {
        snprintf(err, errlen, "too many jobs, tenants or workers");
        free(s.r);
        return -HERR_CONFIG;
    }
    int rc = setup(&s, err, errlen);
    if (rc == 0 && s.n_sites > UINT16_MAX) rc = -ENOMEM;
    if (rc == 0) rc = sim_loop(&s, o && o->max_ms > 0 ? o->max_ms : DEFAULT_MAX_MS);
    if (rc == 0) rc = finish(&s);
    teardown(&s);
    if (rc < 0) {
        if (rc == -ENOMEM) snprintf(err, errlen, "out of memory");
        sim_result_free(s.r);
        return rc;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    s.r->wall_s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    *out = s.r;
    return 0;
}

void sim_result_free(struct sim_result *r)
{
    if (!r) return;
    for (int k = 0; k < SIM_E_COUNT; k++) {
        for (size_t i = 0; r->ent[k] && i < r->n[k]; i++)
            for (int m = 0; m < SIM_S_COUNT; m++)
                free(r->ent[k][i].series[m]);
        free(r->ent[k]);
    }
    free(r->paths);
    free(r);
}
