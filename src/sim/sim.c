/* The simulator's event loop (sim.h). The engine's workers
 * (engine.workers of them, or --workers): each reads the stream in batches
 * while it holds fewer than engine.max_inflight jobs, as intake.c does; a
 * job is routed (round robin over its tenant's egress pool, skipping
 * addresses suspended or at their warm-up cap, as route.c does) to a path:
 * egress IP x provider, or egress IP x destination site when the
 * provider's limits are per site (the default provider's are); then it
 * goes through the gate exactly as src/engine/gate.c does it: the same
 * shape_input (throttle_shape_rate), shape_decide / shape_decide_head,
 * throttle_take, the worker's own fair queue with the same class keys and
 * weights, parks to a retry set that a mover empties into the stream
 * every 250 ms. A message that goes takes one of the path's connections
 * (throttle_scale of the provider's limit, shared by the workers: a
 * worker's freed connection serves its own backlog at once, another
 * worker's at the next tick, as the pool's slot hand-over does) for the
 * site's latency; the reply is classified with classify_reply and
 * throttle_classify, fed to throttle_signal, and a 4xx is decided by
 * outcome_decide (retry schedule, jitter, max_age). throttle_tick runs
 * every 200 ms, with the engine's recall of rate-parked jobs when a
 * factor rises.
 *
 * Time is in virtual ms from 0; the monotonic clock the throttle sees is
 * MONO_BASE_MS + t and the wall clock start_wall_ms + t. Jobs live in one
 * array sized by the traffic's total; lists and queues link indices, so
 * nothing is allocated per job. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "herald/core.h"
#include "herald/engine.h"
#include "herald/fairq.h"
#include "herald/job.h"
#include "herald/sim.h"
#include "herald/throttle.h"
#include "engine/outcome.h"
#include "sim/simint.h"

#define TICK_MS       200 /* the worker tick: throttle_tick (worker.c) */
#define MOVER_MS      250 /* the retry mover (intake.c) */
#define RECALL_GAP_MS 5000
#define HORIZON_S     10.0 /* gate.c HOLD_HORIZON_S */
#define MONO_BASE_MS  1000000
#define DAY_MS        (86400LL * 1000)

/* ---------- statistics ---------- */

static int grow_series(struct sim_stats *st, size_t sec)
{
    if (sec < st->n_sec) return 0;
    if (sec >= st->cap_sec) {
        size_t cap = st->cap_sec ? st->cap_sec : 256;
        while (cap <= sec)
            cap *= 2;
        for (int k = 0; k < SIM_S_COUNT; k++) {
            uint32_t *p = realloc(st->series[k], cap * sizeof *p);
            if (!p) return -ENOMEM;
            memset(p + st->cap_sec, 0, (cap - st->cap_sec) * sizeof *p);
            st->series[k] = p;
        }
        st->cap_sec = cap;
    }
    st->n_sec = sec + 1;
    return 0;
}

/* The entities a job counts for: its site, its tenant, and its egress IP
 * once it has a path. */
static size_t ents(struct sim *s, const struct sjob *j, struct sim_stats **out)
{
    size_t n = 0;
    out[n++] = &s->r->ent[SIM_E_SITE][j->site];
    out[n++] = &s->r->ent[SIM_E_TENANT][j->tenant];
    if (j->path != NONE) out[n++] = &s->r->ent[SIM_E_IP][j->path / s->stride];
    return n;
}

static void count_series(struct sim *s, const struct sjob *j, enum sim_series k)
{
    struct sim_stats *e[3];
    size_t n = ents(s, j, e);
    size_t sec = (size_t)(s->now / 1000);
    for (size_t i = 0; i < n; i++)
        if (grow_series(e[i], sec) == 0) e[i]->series[k][sec]++;
}

/* ---------- the job's end ---------- */

static void end_job(struct sim *s, uint32_t idx, bool delivered, bool expired)
{
    struct sjob *j = &s->jobs[idx];
    struct sim_stats *e[3];
    size_t n = ents(s, j, e);
    j->flags |= JF_ENDED;
    s->ended++;
    s->sites[j->site].pending--;
    for (size_t i = 0; i < n; i++) {
        if (delivered) {
            e[i]->delivered++;
            if (e[i]->first_ms < 0) e[i]->first_ms = s->now;
            e[i]->last_ms = s->now;
        } else if (expired) {
            e[i]->expired++;
        } else {
            e[i]->bounced++;
        }
    }
    if (delivered) {
        j->flags |= JF_DELIVERED;
        j->lat_ms = s->now - j->enq_ms;
        count_series(s, j, SIM_S_DELIVERED);
    }
}

/* ---------- the gate (src/engine/gate.c on virtual time) ---------- */

static int64_t wall(const struct sim *s)
{
    return s->start_wall + s->now;
}

static int64_t mono(const struct sim *s)
{
    return MONO_BASE_MS + s->now;
}

static const struct cfg_tenant *tenant_of(const struct sim *s, const struct sjob *j)
{
    return &s->cfg->tenants[j->tenant];
}

static int64_t warmup_today(struct sim *s, const char *ip, int64_t day, int64_t *sent)
{
    *sent = throttle_ip_today(s->table, ip, day);
    return config_warmup_cap(s->cfg, ip, day, NULL);
}

static void gather(struct sim *s, struct spath *p, struct squeue *q, uint32_t worker,
                   const char *key, double weight, struct shape_input *in)
{
    memset(in, 0, sizeof *in);
    in->now_wall_ms = wall(s);
    in->now_mono_ms = mono(s);
    in->suspended_until_ms = atomic_load(&p->pair->suspended_until_ms);
    in->warmup_cap = -1;
    if (s->cfg->n_warmup) {
        int64_t day = in->now_wall_ms / DAY_MS;
        in->warmup_cap = warmup_today(s, p->pair->ip, day, &in->warmup_sent);
        in->warmup_retry_ms = (day + 1) * DAY_MS + (int64_t)(outcome_rng_next(&s->rng) % 60000);
    }
    bool rated = p->prov && p->prov->rate.count;
    throttle_shape_rate(in, p->pair, p->prov ? &p->prov->rate : NULL, rated ? &q->q : NULL, key,
                        weight, HORIZON_S, s->cfg->engine.max_inflight, s->workers[worker].held);
    if (in->rated) in->no_connection = q->pool_len > 4 * (size_t)q->in_flight + 4;
}

static void park(struct sim *s, uint32_t idx, const struct shape_verdict *v, struct squeue *q,
                 const char *key)
{
    struct sjob *j = &s->jobs[idx];
    struct sim_stats *e[3];
    size_t n = ents(s, j, e);
    for (size_t i = 0; i < n; i++)
        e[i]->parked[v->reason]++;
    if (v->reason == SHAPE_R_CONNECTIONS) {
        struct throttle_pair *pair = s->paths[j->path].pair;
        if (v->park_us > atomic_load(&pair->conn_park_us))
            atomic_store(&pair->conn_park_us, v->park_us);
    }
    if ((v->reason == SHAPE_R_RATE || v->reason == SHAPE_R_TENANT_SHARE ||
         v->reason == SHAPE_R_CONNECTIONS) &&
        q && key)
        throttle_park_note(s->paths[j->path].pair, key, v->park_us);
    /* PARK_WAIT (suspension, admission) is not recalled; PARK_THROTTLED is. */
    if (v->reason == SHAPE_R_SUSPENDED || v->reason == SHAPE_R_TENANT_RATE)
        j->flags &= (uint8_t)~JF_THROTTLED;
    else
        j->flags |= JF_THROTTLED;
    s->workers[j->worker].held--;
    sim_rs_push(s, idx, v->until_ms - s->start_wall);
}

static void receiver_answer(struct sim *s, struct sjob *j)
{
    struct ssite *st = &s->sites[j->site];
    const struct sim_site *b = st->b;
    j->reply = REPLY_OK;
    if (b->limit_per_s > 0) {
        struct window *w = &st->win[b->scope == SIM_SCOPE_IP ? j->path / s->stride : 0];
        double len = b->limit_per_s >= 1 ? 1000 : 1000 / b->limit_per_s;
        double allowed = b->limit_per_s >= 1 ? floor(b->limit_per_s) : 1;
        if (s->now - w->start_ms >= (int64_t)len) {
            w->start_ms = s->now - (s->now % (int64_t)len);
            w->count = 0;
        }
        if (w->count + 1 > allowed) {
            j->reply = REPLY_LIMIT;
            return;
        }
        w->count++;
    }
    double r = (double)(outcome_rng_next(&s->recv_rng) & 0x7fffffff) / 2147483648.0;
    if (r < b->bounce)
        j->reply = REPLY_BOUNCE;
    else if (r < b->bounce + b->tempfail)
        j->reply = REPLY_TEMPFAIL;
}

static struct squeue *queue_of(struct sim *s, uint32_t path, uint32_t worker);

static void start_send(struct sim *s, uint32_t idx, struct spath *p)
{
    struct sjob *j = &s->jobs[idx];
    p->in_flight++;
    queue_of(s, j->path, j->worker)->in_flight++;
    receiver_answer(s, j);
    sim_ev_push(s, s->now + s->sites[j->site].b->latency_ms, EV_DONE, idx);
}

static uint32_t conn_limit(const struct spath *p)
{
    return throttle_scale(p->pair, p->prov ? p->prov->connections : 10);
}

static struct squeue *queue_of(struct sim *s, uint32_t path, uint32_t worker)
{
    return &s->queues[(size_t)path * s->n_workers + worker];
}

/* A worker's share of the path's connections when every worker has mail
 * for it (route.c's fair_conns). */
static uint32_t fair_conns(const struct sim *s, const struct spath *p)
{
    return (conn_limit(p) + s->n_workers - 1) / s->n_workers;
}

/* Another worker has mail waiting for the path and less than its share
 * (its pool asks for a slot: pool.c's slot_wanted). */
static bool others_want(struct sim *s, uint32_t path, uint32_t worker)
{
    uint32_t fair = fair_conns(s, &s->paths[path]);
    for (uint32_t w = 0; w < s->n_workers; w++) {
        const struct squeue *q = queue_of(s, path, w);
        if (w != worker && q->pool_len > 0 && q->in_flight < fair) return true;
    }
    return false;
}

/* A free connection of the path takes the worker's oldest message waiting
 * for one, unless the worker holds its share while another asks: then
 * the slot is left for that one (pool.c's gives_slot_back; it takes it at
 * the next tick, as a retired connection's slot is taken by the asking
 * pool's pool_tick). */
static void serve_pool(struct sim *s, uint32_t path, uint32_t worker)
{
    struct spath *p = &s->paths[path];
    struct squeue *q = queue_of(s, path, worker);
    while (q->pool_head != NONE && p->in_flight < conn_limit(p)) {
        if (q->in_flight >= fair_conns(s, p) && others_want(s, path, worker)) return;
        uint32_t next = q->pool_head;
        q->pool_head = s->jobs[next].next;
        if (q->pool_head == NONE) q->pool_tail = NONE;
        q->pool_len--;
        start_send(s, next, p);
    }
}

static void send_now(struct sim *s, uint32_t idx)
{
    struct sjob *j = &s->jobs[idx];
    struct spath *p = &s->paths[j->path];
    if (s->cfg->n_warmup) throttle_ip_count(s->table, p->pair->ip, wall(s) / DAY_MS);
    struct squeue *q = queue_of(s, j->path, j->worker);
    if (p->in_flight < conn_limit(p) && q->pool_head == NONE &&
        !(q->in_flight >= fair_conns(s, p) && others_want(s, j->path, j->worker))) {
        start_send(s, idx, p);
        return;
    }
    struct sim_stats *e[3];
    size_t n = ents(s, j, e);
    for (size_t i = 0; i < n; i++)
        e[i]->waits[SHAPE_R_CONNECTIONS]++;
    j->next = NONE;
    j->pool_ms = s->now;
    q->pool_len++;
    if (q->pool_tail != NONE)
        s->jobs[q->pool_tail].next = idx;
    else
        q->pool_head = idx;
    q->pool_tail = idx;
}

static void arm(struct sim *s, uint32_t path, uint32_t worker, int64_t at)
{
    struct squeue *q = queue_of(s, path, worker);
    q->armed = true;
    q->timer_at = at < s->now ? s->now : at;
    sim_ev_push(s, q->timer_at, EV_QUEUE, path * s->n_workers + worker);
}

static void gate_submit(struct sim *s, uint32_t idx)
{
    struct sjob *j = &s->jobs[idx];
    struct spath *p = &s->paths[j->path];
    struct squeue *q = queue_of(s, j->path, j->worker);
    const char *key = s->keys[j->tenant][j->prio];
    double weight = throttle_class_weight(tenant_of(s, j)->weight, j->prio);
    struct shape_input in;
    gather(s, p, q, j->worker, key, weight, &in);
    struct shape_verdict v;
    shape_decide(&in, &v);
    if (v.kind == SHAPE_GO && in.rated &&
        throttle_take(p->pair, &p->prov->rate, in.now_mono_ms * 1000, 0) != 0)
        v.kind = SHAPE_WAIT;
    if (v.kind == SHAPE_GO) {
        send_now(s, idx);
        return;
    }
    if (v.kind == SHAPE_PARK) {
        park(s, idx, &v, q, key);
        return;
    }
    struct sim_stats *e[3];
    size_t n = ents(s, j, e);
    for (size_t i = 0; i < n; i++)
        e[i]->waits[v.reason]++;
    if (fairq_push(&q->q, &j->qnode, key, weight) < 0) {
        send_now(s, idx);
        return;
    }
    if (!q->armed) arm(s, j->path, j->worker, s->now);
}

static void on_queue_due(struct sim *s, uint32_t path, uint32_t worker)
{
    struct spath *p = &s->paths[path];
    struct squeue *q = queue_of(s, path, worker);
    q->armed = false;
    while (fairq_len(&q->q) > 0) {
        struct shape_input in;
        gather(s, p, q, worker, NULL, 0, &in);
        in.warmup_retry_ms = in.now_wall_ms + 1000;
        struct shape_verdict v;
        shape_decide_head(&in, &v);
        if (v.kind == SHAPE_GO && in.rated &&
            throttle_take(p->pair, &p->prov->rate, in.now_mono_ms * 1000, 0) != 0) {
            v.kind = SHAPE_WAIT;
            v.until_ms = in.now_mono_ms + 1;
        }
        if (v.kind == SHAPE_WAIT) {
            int64_t at = s->now + (v.until_ms - in.now_mono_ms);
            arm(s, path, worker, at > s->now ? at : s->now + 1);
            return;
        }
        struct sjob *j = HERALD_CONTAINER_OF(fairq_pop(&q->q), struct sjob, qnode);
        uint32_t idx = (uint32_t)(j - s->jobs);
        if (v.kind == SHAPE_PARK)
            park(s, idx, &v, NULL, NULL);
        else
            send_now(s, idx);
    }
}

/* ---------- route, admission, intake ---------- */

/* The path of a site from an egress IP (route.c's path_pair): the site's
 * own pair when its provider's limits are per site, else the provider's
 * pooled one. */
static uint32_t path_of(struct sim *s, size_t ip, size_t site)
{
    struct throttle_table *tt = s->table;
    const struct ssite *st = &s->sites[site];
    bool per_site = st->prov && st->prov->per_site;
    size_t slot = per_site ? tt->n_providers + st->slot : st->prov_idx;
    uint32_t idx = (uint32_t)(ip * s->stride + slot);
    struct spath *p = &s->paths[idx];
    if (p->pair) return idx;
    struct throttle_pair *pooled = &tt->pairs[ip * tt->n_providers + st->prov_idx];
    p->pair = per_site ? throttle_site_pair(tt, tt->ips[ip], st->prov->name, st->hash, st->label)
                       : pooled;
    if (!p->pair) p->pair = pooled;
    p->prov = &s->cfg->providers[st->prov_idx];
    p->factor_min = throttle_factor(p->pair);
    for (uint32_t w = 0; w < s->n_workers; w++) {
        struct squeue *q = queue_of(s, idx, w);
        fairq_init(&q->q);
        q->pool_head = q->pool_tail = NONE;
    }
    return idx;
}

static void mark_used(struct sim *s, uint32_t path)
{
    if (s->paths[path].used) return;
    s->paths[path].used = true;
    s->used[s->n_used++] = path;
}

static bool egress_may_send(struct sim *s, size_t ip, size_t site)
{
    struct throttle_pair *pair = s->paths[path_of(s, ip, site)].pair;
    if (atomic_load(&pair->suspended_until_ms) > wall(s)) return false;
    if (!s->cfg->n_warmup) return true;
    int64_t sent, cap = warmup_today(s, pair->ip, wall(s) / DAY_MS, &sent);
    return cap < 0 || sent < cap;
}

static void route(struct sim *s, struct sjob *j)
{
    struct sworker *w = &s->workers[j->worker];
    size_t n = s->n_tips[j->tenant], ip = 0;
    if (n) {
        size_t pick = 0;
        bool found = false;
        for (size_t k = 0; k < n && !found; k++)
            if (egress_may_send(s, s->tips[j->tenant][(w->egress_rr + k) % n], j->site)) {
                pick = k;
                found = true;
            }
        w->egress_rr += (uint32_t)pick + 1;
        ip = s->tips[j->tenant][(w->egress_rr - 1) % n];
    }
    j->path = path_of(s, ip, j->site);
    mark_used(s, j->path);
}

/* A job a worker read from the stream: expired, over its tenant's rate
 * (admission), or routed and gated. */
static void attempt(struct sim *s, uint32_t idx, uint32_t worker)
{
    struct sjob *j = &s->jobs[idx];
    j->worker = (uint16_t)worker;
    s->workers[worker].held++;
    if (j->expires_at_ms && s->now >= j->expires_at_ms) {
        s->workers[worker].held--;
        end_job(s, idx, false, true);
        return;
    }
    const struct cfg_tenant *t = tenant_of(s, j);
    if (t->rate.count && j->attempt == 1 && !(j->flags & JF_THROTTLED)) {
        int64_t w = throttle_take(&s->tgcra[j->tenant], &t->rate, mono(s) * 1000, 0);
        if (w != 0) {
            struct shape_verdict v;
            shape_from_admission(false, (-w + 999) / 1000, wall(s), &v);
            park(s, idx, &v, NULL, NULL);
            return;
        }
    }
    route(s, j);
    gate_submit(s, idx);
}

static void stream_append(struct sim *s, uint32_t idx)
{
    s->jobs[idx].next = NONE;
    if (s->stream_tail != NONE)
        s->jobs[s->stream_tail].next = idx;
    else
        s->stream_head = idx;
    s->stream_tail = idx;
}

/* The workers take turns reading the stream, each a batch of up to
 * engine.batch while it holds fewer than engine.max_inflight, and not for
 * a sliver of room when it holds work (intake_read). */
static void intake(struct sim *s)
{
    uint32_t max = s->cfg->engine.max_inflight;
    uint32_t batch = s->cfg->engine.batch ? s->cfg->engine.batch : 256;
    for (uint32_t k = 0; k < s->n_workers && s->stream_head != NONE; k++) {
        uint32_t wk = (s->intake_rr + k) % s->n_workers;
        struct sworker *w = &s->workers[wk];
        if (w->held >= max) continue;
        uint32_t room = max - w->held;
        if (room < batch / 4 && w->held > 0) continue;
        for (uint32_t count = room < batch ? room : batch; count && s->stream_head != NONE;
             count--) {
            uint32_t idx = s->stream_head;
            s->stream_head = s->jobs[idx].next;
            if (s->stream_head == NONE) s->stream_tail = NONE;
            attempt(s, idx, wk);
        }
    }
    s->intake_rr++;
}

/* ---------- events ---------- */

static void on_done(struct sim *s, uint32_t idx)
{
    struct sjob *j = &s->jobs[idx];
    struct spath *p = &s->paths[j->path];
    struct ssite *st = &s->sites[j->site];
    struct sworker *w = &s->workers[j->worker];
    const struct config *cfg = s->cfg;
    p->in_flight--;
    queue_of(s, j->path, j->worker)->in_flight--;
    const struct smtp_result *res = &st->res[j->reply];
    const char *cat = classify_reply(cfg, res);
    int64_t suspend_ms = 0;
    enum throttle_signal_kind sig =
        res->outcome == SMTP_OUT_OK ? THROTTLE_OK
                                    : throttle_classify(&cfg->reputation, res->code, res->enhanced,
                                                        res->reply, false, cat, &suspend_ms);
    throttle_signal(p->pair, &cfg->reputation, sig, suspend_ms, mono(s), wall(s));
    double f = throttle_factor(p->pair);
    if (f < p->factor_min) p->factor_min = f;
    if (sig != THROTTLE_OK) count_series(s, j, SIM_S_SIGNALS);
    struct sim_stats *e[3];
    size_t n = ents(s, j, e);
    if (res->outcome == SMTP_OUT_OK) {
        end_job(s, idx, true, false);
    } else if (res->outcome == SMTP_OUT_PERMFAIL) {
        end_job(s, idx, false, false);
    } else {
        for (size_t i = 0; i < n; i++) {
            e[i]->deferred++;
            e[i]->signals += sig != THROTTLE_OK;
        }
        count_series(s, j, SIM_S_DEFERRED);
        const struct cfg_tenant *t = tenant_of(s, j);
        struct outcome_in in = {
            .res = res,
            .category = cat,
            .attempt = j->attempt,
            .expires_at_ms = j->expires_at_ms ? s->start_wall + j->expires_at_ms : 0,
            .enqueued_ms = s->start_wall + j->enq_ms,
            .max_age_ms = t->max_age_ms ? t->max_age_ms : cfg->delivery.max_age_ms,
        };
        struct outcome oc;
        outcome_decide(&cfg->delivery, &in, wall(s), &s->rng, &oc);
        if (oc.kind == OC_RETRY) {
            j->attempt++;
            j->flags &= (uint8_t)~JF_THROTTLED;
            w->held--;
            sim_rs_push(s, idx, oc.due_ms - s->start_wall);
        } else {
            end_job(s, idx, false, true);
        }
    }
    if (j->flags & JF_ENDED) w->held--;
    serve_pool(s, j->path, j->worker);
}

/* gate_shed: a congested path's pool gives back what it holds beyond a
 * few messages per connection, newest first. */
static void shed(struct sim *s, uint32_t path, uint32_t worker)
{
    struct squeue *q = queue_of(s, path, worker);
    if (q->pool_head == NONE) return;
    struct shape_input in;
    memset(&in, 0, sizeof in);
    in.now_wall_ms = wall(s);
    in.now_mono_ms = mono(s);
    in.conn_backlog = q->pool_len;
    in.conn_open = q->in_flight;
    in.conn_oldest_wait_ms = s->now - s->jobs[q->pool_head].pool_ms;
    in.conn_limit = conn_limit(&s->paths[path]);
    size_t excess = shape_conn_excess(&in);
    if (excess == 0) return;
    size_t keep = q->pool_len - excess;
    uint32_t last = q->pool_head;
    for (size_t i = 1; i < keep; i++)
        last = s->jobs[last].next;
    uint32_t cut = keep ? s->jobs[last].next : q->pool_head;
    if (keep) {
        s->jobs[last].next = NONE;
        q->pool_tail = last;
    } else {
        q->pool_head = q->pool_tail = NONE;
    }
    q->pool_len = (uint32_t)keep;
    while (cut != NONE) {
        uint32_t next = s->jobs[cut].next;
        in.conn_last_park_us = atomic_load(&s->paths[path].pair->conn_park_us);
        int64_t due_us = shape_conn_park_due_us(&in);
        struct shape_verdict v = {SHAPE_PARK, SHAPE_R_CONNECTIONS, (due_us + 999) / 1000, due_us};
        park(s, cut, &v, NULL, NULL);
        cut = next;
    }
}

/* The engine's gate_recall: class return times forgotten, rate-parked jobs
 * due now. */
static void recall(struct sim *s)
{
    for (size_t i = 0; i < s->n_used; i++)
        throttle_park_forget(s->paths[s->used[i]].pair);
    bool changed = false;
    s->r->recalls++;
    for (size_t i = 0; i < s->n_rs; i++)
        if (s->rs[i].due_ms > s->now && (s->jobs[s->rs[i].job].flags & JF_THROTTLED)) {
            s->rs[i].due_ms = s->now;
            s->r->recalled++;
            changed = true;
        }
    if (changed)
        for (size_t i = s->n_rs / 2; i-- > 0;)
            sim_rs_down(s->rs, s->n_rs, i);
}

static void on_tick(struct sim *s)
{
    bool raised = false;
    for (size_t i = 0; i < s->n_used; i++) {
        uint32_t path = s->used[i];
        raised |= throttle_tick(s->paths[path].pair, &s->cfg->reputation, mono(s));
        /* A connection another worker left idle is handed over within a
         * tick (pool_tick's slot hand-over). */
        for (uint32_t w = 0; w < s->n_workers; w++) {
            shed(s, path, w);
            serve_pool(s, path, w);
        }
    }
    if (raised) s->recall_wanted = true;
    if (s->recall_wanted && s->now >= s->next_recall) {
        s->recall_wanted = false;
        s->next_recall = s->now + RECALL_GAP_MS;
        recall(s);
    }
}

static void on_mover(struct sim *s)
{
    while (s->n_rs && s->rs[0].due_ms <= s->now) {
        uint32_t idx = s->rs[0].job;
        s->rs[0] = s->rs[--s->n_rs];
        if (s->n_rs) sim_rs_down(s->rs, s->n_rs, 0);
        stream_append(s, idx);
    }
}

static void on_second(struct sim *s)
{
    size_t sec = (size_t)(s->now / 1000) - 1;
    for (size_t i = 0; i < s->n_sites; i++) {
        struct sim_stats *st = &s->r->ent[SIM_E_SITE][i];
        if (grow_series(st, sec) == 0) st->series[SIM_S_DEPTH][sec] = (uint32_t)s->sites[i].pending;
    }
}

/* Emit the jobs of traffic line g due by now; re-arm for the next one. */
static void on_arrive(struct sim *s, uint32_t g)
{
    const struct sim_jobs *l = &s->t->jobs[g];
    while (s->gen_done[g] < l->count) {
        uint64_t k = s->gen_done[g];
        int64_t at = l->t_ms + (int64_t)((double)l->over_ms * (double)k / (double)l->count);
        if (at > s->now) {
            sim_ev_push(s, at, EV_ARRIVE, g);
            return;
        }
        uint32_t idx = s->n_jobs++;
        struct sjob *j = &s->jobs[idx];
        memset(j, 0, sizeof *j);
        fairq_node_init(&j->qnode);
        j->enq_ms = s->now;
        j->expires_at_ms = l->expires_ms ? s->now + l->expires_ms : 0;
        j->path = NONE;
        j->tenant = s->gen_tenant[g];
        j->site = (uint16_t)s->dom_site[l->domain];
        j->attempt = 1;
        j->prio = (uint8_t)l->priority;
        s->sites[j->site].pending++;
        s->r->ent[SIM_E_SITE][j->site].jobs++;
        s->r->ent[SIM_E_TENANT][j->tenant].jobs++;
        stream_append(s, idx);
        s->gen_done[g]++;
    }
}

static bool generators_done(const struct sim *s)
{
    return s->n_jobs == s->t->total;
}

int sim_loop(struct sim *s, int64_t max_ms)
{
    for (size_t g = 0; g < s->t->n_jobs; g++)
        if (sim_ev_push(s, s->t->jobs[g].t_ms, EV_ARRIVE, (uint32_t)g) < 0) return -ENOMEM;
    sim_ev_push(s, TICK_MS, EV_TICK, 0);
    sim_ev_push(s, MOVER_MS, EV_MOVER, 0);
    sim_ev_push(s, 1000, EV_SECOND, 0);
    while (s->n_ev) {
        if (generators_done(s) && s->ended == s->t->total) break;
        struct ev e = sim_ev_pop(s);
        if (e.at > max_ms) break;
        s->now = e.at;
        s->events++;
        switch (e.kind) {
        case EV_ARRIVE:
            on_arrive(s, e.idx);
            break;
        case EV_QUEUE:
            if (s->queues[e.idx].armed && s->queues[e.idx].timer_at == e.at)
                on_queue_due(s, e.idx / s->n_workers, e.idx % s->n_workers);
            break;
        case EV_DONE:
            on_done(s, e.idx);
            break;
        case EV_TICK:
            on_tick(s);
            sim_ev_push(s, s->now + TICK_MS, EV_TICK, 0);
            break;
        case EV_MOVER:
            on_mover(s);
            sim_ev_push(s, s->now + MOVER_MS, EV_MOVER, 0);
            break;
        case EV_SECOND:
            on_second(s);
            sim_ev_push(s, s->now + 1000, EV_SECOND, 0);
            break;
        }
        intake(s);
        if (s->n_ev == s->cap_ev && s->cap_ev > ((size_t)1 << 30)) return -ENOMEM;
    }
    return 0;
}
