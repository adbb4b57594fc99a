/* The simulator's event loop (sim.h). One virtual worker: intake reads the
 * stream while it holds fewer than engine.max_inflight jobs, a job is
 * routed (round robin over its tenant's egress pool, skipping addresses
 * suspended or at their warm-up cap, as route.c does), then goes through
 * the gate exactly as src/engine/gate.c does it: the same shape_input
 * (throttle_shape_rate), shape_decide / shape_decide_head, throttle_take,
 * the fair queue with the same class keys and weights, parks to a retry
 * set that a mover empties into the stream every 250 ms. A message that
 * goes takes one of the pair's connections (throttle_scale of the
 * provider's limit) for the site's latency; the reply is classified with
 * classify_reply and throttle_classify, fed to throttle_signal, and a 4xx
 * is decided by outcome_decide (retry schedule, jitter, max_age).
 * throttle_tick runs every 200 ms, with the engine's recall of rate-parked
 * jobs when a factor rises.
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

/* ---------- heaps ---------- */

static bool ev_less(const struct ev *a, const struct ev *b)
{
    return a->at < b->at || (a->at == b->at && a->seq < b->seq);
}

static int ev_push(struct sim *s, int64_t at, uint32_t kind, uint32_t idx)
{
    if (s->n_ev == s->cap_ev) {
        size_t cap = s->cap_ev ? s->cap_ev * 2 : 1024;
        struct ev *e = realloc(s->ev, cap * sizeof *e);
        if (!e) return -ENOMEM;
        s->ev = e;
        s->cap_ev = cap;
    }
    struct ev x = {at < s->now ? s->now : at, s->seq++, kind, idx};
    size_t i = s->n_ev++;
    while (i > 0 && ev_less(&x, &s->ev[(i - 1) / 2])) {
        s->ev[i] = s->ev[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->ev[i] = x;
    return 0;
}

static struct ev ev_pop(struct sim *s)
{
    struct ev top = s->ev[0], last = s->ev[--s->n_ev];
    size_t i = 0, n = s->n_ev;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && ev_less(&s->ev[c + 1], &s->ev[c])) c++;
        if (!ev_less(&s->ev[c], &last)) break;
        s->ev[i] = s->ev[c];
        i = c;
    }
    if (n) s->ev[i] = last;
    return top;
}

static bool rs_less(const struct rent *a, const struct rent *b)
{
    return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->job < b->job);
}

static void rs_down(struct rent *h, size_t n, size_t i)
{
    struct rent x = h[i];
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n) break;
        if (c + 1 < n && rs_less(&h[c + 1], &h[c])) c++;
        if (!rs_less(&h[c], &x)) break;
        h[i] = h[c];
        i = c;
    }
    h[i] = x;
}

static int rs_push(struct sim *s, uint32_t job, int64_t due)
{
    if (s->n_rs == s->cap_rs) {
        size_t cap = s->cap_rs ? s->cap_rs * 2 : 1024;
        struct rent *h = realloc(s->rs, cap * sizeof *h);
        if (!h) return -ENOMEM;
        s->rs = h;
        s->cap_rs = cap;
    }
    struct rent x = {due, job};
    size_t i = s->n_rs++;
    while (i > 0 && rs_less(&x, &s->rs[(i - 1) / 2])) {
        s->rs[i] = s->rs[(i - 1) / 2];
        i = (i - 1) / 2;
    }
    s->rs[i] = x;
    return 0;
}

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
    if (j->path != NONE) out[n++] = &s->r->ent[SIM_E_IP][j->path / s->table->n_providers];
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

static void gather(struct sim *s, struct spath *p, const char *key, double weight,
                   struct shape_input *in)
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
    throttle_shape_rate(in, p->pair, p->prov ? &p->prov->rate : NULL, rated ? &p->q : NULL, key,
                        weight, HORIZON_S, s->cfg->engine.max_inflight);
}

static void park(struct sim *s, uint32_t idx, const struct shape_verdict *v, struct spath *p,
                 const char *key)
{
    struct sjob *j = &s->jobs[idx];
    struct sim_stats *e[3];
    size_t n = ents(s, j, e);
    for (size_t i = 0; i < n; i++)
        e[i]->parked[v->reason]++;
    if ((v->reason == SHAPE_R_RATE || v->reason == SHAPE_R_TENANT_SHARE) && p && key) {
        struct fairq_class *c = fairq_class_get(&p->q, key);
        if (c) c->owner_ms = v->until_ms;
    }
    /* PARK_WAIT (suspension, admission) is not recalled; PARK_THROTTLED is. */
    if (v->reason == SHAPE_R_SUSPENDED || v->reason == SHAPE_R_TENANT_RATE)
        j->flags &= (uint8_t)~JF_THROTTLED;
    else
        j->flags |= JF_THROTTLED;
    s->held--;
    rs_push(s, idx, v->until_ms - s->start_wall);
}

static void receiver_answer(struct sim *s, struct sjob *j)
{
    struct ssite *st = &s->sites[j->site];
    const struct sim_site *b = st->b;
    j->reply = REPLY_OK;
    if (b->limit_per_s > 0) {
        struct window *w = &st->win[b->scope == SIM_SCOPE_IP ? j->path / s->table->n_providers : 0];
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

static void start_send(struct sim *s, uint32_t idx, struct spath *p)
{
    struct sjob *j = &s->jobs[idx];
    p->in_flight++;
    receiver_answer(s, j);
    ev_push(s, s->now + s->sites[j->site].b->latency_ms, EV_DONE, idx);
}

static uint32_t conn_limit(const struct spath *p)
{
    return throttle_scale(p->pair, p->prov ? p->prov->connections : 10);
}

static void send_now(struct sim *s, uint32_t idx, struct spath *p)
{
    struct sjob *j = &s->jobs[idx];
    if (s->cfg->n_warmup) throttle_ip_count(s->table, p->pair->ip, wall(s) / DAY_MS);
    if (p->in_flight < conn_limit(p)) {
        start_send(s, idx, p);
        return;
    }
    struct sim_stats *e[3];
    size_t n = ents(s, j, e);
    for (size_t i = 0; i < n; i++)
        e[i]->waits[SHAPE_R_CONNECTIONS]++;
    j->next = NONE;
    if (p->pool_tail != NONE)
        s->jobs[p->pool_tail].next = idx;
    else
        p->pool_head = idx;
    p->pool_tail = idx;
}

static void arm(struct sim *s, struct spath *p, int64_t at)
{
    p->armed = true;
    p->timer_at = at < s->now ? s->now : at;
    ev_push(s, p->timer_at, EV_QUEUE, (uint32_t)(p - s->paths));
}

static void gate_submit(struct sim *s, uint32_t idx, struct spath *p)
{
    struct sjob *j = &s->jobs[idx];
    const char *key = s->keys[j->tenant][j->prio];
    double weight = throttle_class_weight(tenant_of(s, j)->weight, j->prio);
    struct shape_input in;
    gather(s, p, key, weight, &in);
    struct shape_verdict v;
    shape_decide(&in, &v);
    if (v.kind == SHAPE_GO && in.rated &&
        throttle_take(p->pair, &p->prov->rate, in.now_mono_ms * 1000, 0) != 0)
        v.kind = SHAPE_WAIT;
    if (v.kind == SHAPE_GO) {
        send_now(s, idx, p);
        return;
    }
    if (v.kind == SHAPE_PARK) {
        park(s, idx, &v, p, key);
        return;
    }
    struct sim_stats *e[3];
    size_t n = ents(s, j, e);
    for (size_t i = 0; i < n; i++)
        e[i]->waits[v.reason]++;
    if (fairq_push(&p->q, &j->qnode, key, weight) < 0) {
        send_now(s, idx, p);
        return;
    }
    if (!p->armed) arm(s, p, s->now);
}

static void on_queue_due(struct sim *s, struct spath *p)
{
    p->armed = false;
    while (fairq_len(&p->q) > 0) {
        struct shape_input in;
        gather(s, p, NULL, 0, &in);
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
            arm(s, p, at > s->now ? at : s->now + 1);
            return;
        }
        struct sjob *j = HERALD_CONTAINER_OF(fairq_pop(&p->q), struct sjob, qnode);
        uint32_t idx = (uint32_t)(j - s->jobs);
        if (v.kind == SHAPE_PARK)
            park(s, idx, &v, NULL, NULL);
        else
            send_now(s, idx, p);
    }
}

/* ---------- route, admission, intake ---------- */

static bool egress_may_send(struct sim *s, size_t ip, size_t prov)
{
    struct throttle_pair *pair = &s->table->pairs[ip * s->table->n_providers + prov];
    if (atomic_load(&pair->suspended_until_ms) > wall(s)) return false;
    if (!s->cfg->n_warmup) return true;
    int64_t sent, cap = warmup_today(s, pair->ip, wall(s) / DAY_MS, &sent);
    return cap < 0 || sent < cap;
}

static struct spath *route(struct sim *s, struct sjob *j)
{
    size_t prov = s->sites[j->site].prov_idx;
    size_t n = s->n_tips[j->tenant], ip = 0;
    if (n) {
        size_t pick = 0;
        bool found = false;
        for (size_t k = 0; k < n && !found; k++)
            if (egress_may_send(s, s->tips[j->tenant][(s->egress_rr + k) % n], prov)) {
                pick = k;
                found = true;
            }
        s->egress_rr += (uint32_t)pick + 1;
        ip = s->tips[j->tenant][(s->egress_rr - 1) % n];
    }
    j->path = (uint32_t)(ip * s->table->n_providers + prov);
    struct spath *p = &s->paths[j->path];
    p->used = true;
    return p;
}

/* A job read from the stream: expired, over its tenant's rate (admission),
 * or routed and gated. */
static void attempt(struct sim *s, uint32_t idx)
{
    struct sjob *j = &s->jobs[idx];
    s->held++;
    if (j->expires_at_ms && s->now >= j->expires_at_ms) {
        s->held--;
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
    gate_submit(s, idx, route(s, j));
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

static void intake(struct sim *s)
{
    while (s->stream_head != NONE && s->held < s->cfg->engine.max_inflight) {
        uint32_t idx = s->stream_head;
        s->stream_head = s->jobs[idx].next;
        if (s->stream_head == NONE) s->stream_tail = NONE;
        attempt(s, idx);
    }
}

/* ---------- events ---------- */

static void on_done(struct sim *s, uint32_t idx)
{
    struct sjob *j = &s->jobs[idx];
    struct spath *p = &s->paths[j->path];
    struct ssite *st = &s->sites[j->site];
    const struct config *cfg = s->cfg;
    p->in_flight--;
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
            s->held--;
            rs_push(s, idx, oc.due_ms - s->start_wall);
        } else {
            end_job(s, idx, false, true);
        }
    }
    if (j->flags & JF_ENDED) s->held--;
    while (p->pool_head != NONE && p->in_flight < conn_limit(p)) {
        uint32_t next = p->pool_head;
        p->pool_head = s->jobs[next].next;
        if (p->pool_head == NONE) p->pool_tail = NONE;
        start_send(s, next, p);
    }
}

/* The engine's gate_recall: class return times forgotten, rate-parked jobs
 * due now. */
static void recall(struct sim *s)
{
    for (size_t i = 0; i < s->n_paths; i++)
        for (struct fairq_class *c = s->paths[i].q.classes; c; c = c->next)
            c->owner_ms = 0;
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
            rs_down(s->rs, s->n_rs, i);
}

static void on_tick(struct sim *s)
{
    bool raised = false;
    for (size_t i = 0; i < s->n_paths; i++) {
        if (!s->paths[i].used) continue;
        raised |= throttle_tick(s->paths[i].pair, &s->cfg->reputation, mono(s));
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
        if (s->n_rs) rs_down(s->rs, s->n_rs, 0);
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
            ev_push(s, at, EV_ARRIVE, g);
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
        if (ev_push(s, s->t->jobs[g].t_ms, EV_ARRIVE, (uint32_t)g) < 0) return -ENOMEM;
    ev_push(s, TICK_MS, EV_TICK, 0);
    ev_push(s, MOVER_MS, EV_MOVER, 0);
    ev_push(s, 1000, EV_SECOND, 0);
    while (s->n_ev) {
        if (generators_done(s) && s->ended == s->t->total) break;
        struct ev e = ev_pop(s);
        if (e.at > max_ms) break;
        s->now = e.at;
        s->events++;
        switch (e.kind) {
        case EV_ARRIVE:
            on_arrive(s, e.idx);
            break;
        case EV_QUEUE:
            if (s->paths[e.idx].armed && s->paths[e.idx].timer_at == e.at)
                on_queue_due(s, &s->paths[e.idx]);
            break;
        case EV_DONE:
            on_done(s, e.idx);
            break;
        case EV_TICK:
            on_tick(s);
            ev_push(s, s->now + TICK_MS, EV_TICK, 0);
            break;
        case EV_MOVER:
            on_mover(s);
            ev_push(s, s->now + MOVER_MS, EV_MOVER, 0);
            break;
        case EV_SECOND:
            on_second(s);
            ev_push(s, s->now + 1000, EV_SECOND, 0);
            break;
        }
        intake(s);
        if (s->n_ev == s->cap_ev && s->cap_ev > ((size_t)1 << 30)) return -ENOMEM;
    }
    return 0;
}
