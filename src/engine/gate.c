/* The gate (gate.h): where a message on a chosen path waits for its turn. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald/fairq.h"
#include "herald/shape.h"
#include "herald/throttle.h"
#include "delivery.h"
#include "gate.h"
#include "lease.h"
#include "notes.h"
#include "outcome.h"
#include "verp.h"
#include "worker.h"

#define DAY_MS (86400LL * 1000)
/* How much of a pair's queue a worker keeps in memory: about this many
 * seconds of sending; the rest waits in the retry set (no attempt used). */
#define HOLD_HORIZON_S 10.0

/* One per throttle pair this worker has sent through: the messages waiting
 * for that pair's slots, served by weighted fair share (tenant weight x
 * priority weight), one timer for the next slot. */
struct hold_queue {
    struct worker *w;
    struct throttle_pair *pair;
    struct fairq q;
    struct ring_timer timer;
    struct hold_queue *next;
};

bool gate_warmup_full(struct worker *w, const char *ip, int64_t wall)
{
    if (!w->cfg->n_warmup)
        return false;
    int64_t cap = config_warmup_cap(w->cfg, ip, wall / DAY_MS, NULL);
    /* Not heard yet (the first second after a start): not known to be
     * full, so routing keeps its share of the mail; the gate then holds
     * each of those for a second until the count is heard (gather). Taken
     * as full, every message of the start went to the other addresses. */
    if (cap >= 0 && !throttle_ip_known(w->sh->throttle, ip))
        return false;
    return cap >= 0 && throttle_ip_today(w->sh->throttle, ip, wall / DAY_MS) >= cap;
}

static const char *domain_of(const char *addr)
{
    const char *at = addr ? strrchr(addr, '@') : NULL;
    return at ? at + 1 : "localhost";
}

/* base_url (<= 256) + "/u/" + token. */
#define ONECLICK_URL_MAX (256 + 3 + FB_UNSUB_TOKEN_MAX + 1)

/* The signed one-click link for a tenant that asks for it: names the
 * tenant, the recipient key (what suppression is keyed by) and today. A
 * recipient the token cannot carry gets no link (the job's own
 * `unsubscribe` field, if any, still goes out). */
static const char *oneclick_link(struct worker *w, const struct cfg_tenant *tenant,
                                 const struct job *j, char *out, size_t cap)
{
    const struct cfg_unsubscribe *u = &w->cfg->unsubscribe;
    if (!tenant || !tenant->one_click_unsubscribe || !w->sh->unsub_keys_loaded || !u->base_url ||
        !j->to_key || !j->tenant)
        return NULL;
    char tok[FB_UNSUB_TOKEN_MAX + 1];
    if (fb_unsub_encode(&w->sh->unsub_keys, j->tenant, j->to_key, fb_day_of_ms(clock_wall_ms()),
                        tok, sizeof tok) < 0) {
        log_event(LOG_WARN, "event=unsubscribe_link_skipped tenant=%s to=%s reason=%s",
                  LOG_VALUE(j->tenant), LOG_VALUE(j->to_key),
                  LOG_VALUE("the recipient cannot be carried in a token"));
        return NULL;
    }
    int n = snprintf(out, cap, "%s/u/%s", u->base_url, tok);
    return n > 0 && (size_t)n < cap ? out : NULL;
}

/* Build the message now that it goes: duplicates, suppressed, cancelled
 * and rate-parked jobs are never rendered or signed. A retry keeps the
 * Message-ID of its first attempt, so a receiver that took an earlier
 * attempt after all can tell it is the same message. */
static int build(struct delivery *d)
{
    struct worker *w = d->w;
    struct job *j = &d->job;
    if (d->built)
        return 0;
    const char *mid = delivery_job_field(j, "message_id");
    if (mid && msg_id_acceptable(mid))
        snprintf(j->message_id, sizeof j->message_id, "%s", mid);
    struct job_error err = {{0}, {0}};
    const struct cfg_tenant *tenant = config_tenant(w->cfg, j->tenant);
    char oneclick[ONECLICK_URL_MAX];
    j->oneclick_url = oneclick_link(w, tenant, j, oneclick, sizeof oneclick);
    int brc = job_build(j, tenant, domain_of(j->from), clock_wall_ms(),
                        w->cfg->engine.max_message_bytes, &err);
    j->oneclick_url = NULL; /* it pointed at this frame */
    if (brc < 0) {
        notes_reject(d, &err);
        return -HERR_MALFORMED;
    }
    /* The envelope: IDN domains as A-labels; only a UTF-8 local part needs
     * SMTPUTF8 (decided by job_parse). */
    d->msg.mail_from = j->mail_from ? j->mail_from : j->from ? j->from : "";
    const char *verp = verp_return_path(d, tenant, clock_wall_ms());
    if (verp)
        d->msg.mail_from = verp;
    d->msg.rcpt = j->rcpt ? j->rcpt : j->to;
    d->msg.data = j->wire.data;
    d->msg.data_len = j->wire.len;
    d->msg.needs_smtputf8 = j->needs_smtputf8;
    d->msg.owner_data = d;
    d->built = true;
    return 0;
}

static void send_now(struct delivery *d)
{
    struct worker *w = d->w;
    if (build(d) < 0)
        return; /* rejected */
    if (w->cfg->n_warmup)
        throttle_ip_count(w->sh->throttle, d->ip, clock_wall_ms() / DAY_MS);
    delivery_set_state(d, DS_SENDING);
    if (pool_submit(&w->pool, &d->target, d->ip, d->ehlo, &d->lim, &d->msg) < 0)
        outcome_local_fail(d, "out of memory queueing the message");
}

/* ---------- the path's state, for the one decision (shape.h) ---------- */

/* The class of a message in its pair's fair queue. */
struct klass {
    char key[96];
    double weight;
};

static void klass_of(const struct delivery *d, struct klass *k)
{
    const struct cfg_tenant *tenant = config_tenant(d->w->cfg, d->job.tenant);
    k->weight = throttle_class_weight(tenant ? tenant->weight : 1, (int)d->job.priority);
    snprintf(k->key, sizeof k->key, "%s/%d", d->job.tenant ? d->job.tenant : "-",
             (int)d->job.priority);
}

/* Everything the decision needs about a pair now. hq NULL: the path has no
 * rate (nothing waits in memory for it). */
static void gather(struct worker *w, struct throttle_pair *pair, const struct cfg_provider *prov,
                   struct hold_queue *hq, const struct klass *k, struct shape_input *in)
{
    memset(in, 0, sizeof *in);
    in->now_wall_ms = clock_wall_ms();
    in->now_mono_ms = clock_mono_ms();
    in->suspended_until_ms = atomic_load(&pair->suspended_until_ms);
    in->warmup_cap = -1;
    if (w->cfg->n_warmup) {
        int64_t day = in->now_wall_ms / DAY_MS;
        in->warmup_cap = config_warmup_cap(w->cfg, pair->ip, day, NULL);
        in->warmup_sent = throttle_ip_today(w->sh->throttle, pair->ip, day);
        in->warmup_retry_ms = (day + 1) * DAY_MS + (int64_t)(outcome_rng_next(&w->rng) % 60000);
        if (in->warmup_cap >= 0 && !throttle_ip_known(w->sh->throttle, pair->ip)) {
            /* Until the day's shared count is heard (at start), the cap
             * counts as reached; ask again in a second. */
            in->warmup_sent = in->warmup_cap;
            in->warmup_retry_ms = in->now_wall_ms + 1000;
        }
    }
    /* The rate part, and the class's share of the in-memory horizon, in
     * one pure helper that `herald simulate` calls too. */
    throttle_shape_rate(in, pair, prov ? &prov->rate : NULL, hq ? &hq->q : NULL,
                        k ? k->key : NULL, k ? k->weight : 0, HOLD_HORIZON_S,
                        w->cfg->engine.max_inflight, w->inflight);
    if (!in->rated)
        return;
    /* A message admitted by the rate must leave soon: when no connection
     * can take it (another process holds the path's connections, or
     * another worker of this one does while this worker's pool already
     * has a backlog for the path), it waits here rather than pile up in
     * the pool and leave later in a burst the receiver never agreed to. */
    size_t backlog = 0;
    uint32_t conns = 0;
    pool_group_backlog(&w->pool, pair->ip, pair->group, &backlog, &conns, NULL);
    in->no_connection = atomic_load(&pair->conn_grant) == 0 || backlog > 4 * (size_t)conns + 4;
}

/* A verdict of PARK: back to the retry set, with a note when it is news to
 * the platform (a suspension), counted per pair and reason. */
static void park(struct delivery *d, const struct shape_verdict *v, struct hold_queue *hq,
                 const struct klass *k)
{
    struct throttle_pair *pair = d->pair;
    if ((unsigned)v->reason < SHAPE_R_COUNT)
        atomic_fetch_add(&pair->parked[v->reason], 1);
    if (v->reason == SHAPE_R_SUSPENDED) {
        struct note n;
        note_begin(&n, d, EV_DEFERRED, clock_wall_ms());
        char why[200];
        snprintf(why, sizeof why, "provider %s suspended for egress %s by a reputation rule",
                 pair->provider, pair->ip[0] ? pair->ip : "-");
        note_add(&n, "reason", why);
        note_add(&n, "category", "rate-limit");
        note_add_int(&n, "next_attempt_at", v->until_ms);
        notes_park(d, v->until_ms, PARK_WAIT, &n);
        return;
    }
    if (v->reason == SHAPE_R_CONNECTIONS) {
        int64_t cur = atomic_load(&pair->conn_park_us);
        while (cur < v->park_us &&
               !atomic_compare_exchange_weak(&pair->conn_park_us, &cur, v->park_us)) {
        }
    }
    if (v->reason == SHAPE_R_RATE || v->reason == SHAPE_R_TENANT_SHARE)
        atomic_fetch_add(&pair->deferred_by_rate, 1);
    if ((v->reason == SHAPE_R_RATE || v->reason == SHAPE_R_TENANT_SHARE ||
         v->reason == SHAPE_R_CONNECTIONS) &&
        hq && k)
        throttle_park_note(pair, k->key, v->park_us);
    notes_park(d, v->until_ms, PARK_THROTTLED, NULL);
}

/* A verdict of GO on a rated path: take the slot, from the block of the
 * path's shared rate this process holds (lease.c: every process sending
 * from the IP draws on one GCRA in Redis) and from the path's local GCRA
 * (which spreads a block's slots out instead of sending them in a burst).
 * Either may say not yet (another worker or process was first, or the
 * next block is on its way): the verdict becomes WAIT. */
static void take_slot(struct worker *w, struct throttle_pair *pair,
                      const struct cfg_provider *prov, const struct shape_input *in,
                      struct shape_verdict *v)
{
    int64_t wait_ms = 0;
    if (!lease_take(w, pair, prov, in->now_mono_ms, &wait_ms)) {
        *v = (struct shape_verdict){SHAPE_WAIT, SHAPE_R_RATE, in->now_mono_ms + wait_ms, 0};
        return;
    }
    int64_t us = throttle_take(pair, &prov->rate, in->now_mono_ms * 1000, 0);
    if (us != 0) {
        lease_untake(pair);
        int64_t ms = (us < 0 ? -us : us) / 1000 + 1;
        *v = (struct shape_verdict){SHAPE_WAIT, SHAPE_R_RATE, in->now_mono_ms + ms, 0};
    }
}

static bool operator_suspended(struct delivery *d);

/* ---------- congested paths give mail back ---------- */

static void conn_input(const struct pool_backlog *b, int64_t last_park_us, struct shape_input *in)
{
    memset(in, 0, sizeof *in);
    in->now_wall_ms = clock_wall_ms();
    in->now_mono_ms = clock_mono_ms();
    in->conn_backlog = b->queued;
    in->conn_open = b->conns;
    in->conn_oldest_wait_ms = b->oldest_wait_ms;
    in->conn_limit = b->max_conns;
    in->conn_last_park_us = last_park_us;
}

static size_t shed_ask(void *arg, const struct pool_backlog *b)
{
    (void)arg;
    struct shape_input in;
    conn_input(b, 0, &in);
    return shape_conn_excess(&in);
}

static void shed_take(void *arg, struct smtp_msg *m, const struct pool_backlog *b)
{
    (void)arg;
    struct delivery *d = m->owner_data;
    struct shape_input in;
    conn_input(b, d->pair ? atomic_load(&d->pair->conn_park_us) : 0, &in);
    int64_t due_us = shape_conn_park_due_us(&in);
    struct shape_verdict v = {SHAPE_PARK, SHAPE_R_CONNECTIONS, (due_us + 999) / 1000, due_us};
    if (d->pair) {
        park(d, &v, NULL, NULL);
        return;
    }
    notes_park(d, v.until_ms, PARK_THROTTLED, NULL);
}

/* Mail read before its path was seen to be congested (a tarpit, an
 * exchanger slower than its connections allow for) goes back to the retry
 * set, beyond the few per connection the pool keeps: otherwise it holds
 * the worker's max_inflight and intake stops reading for every other
 * site. Checked every tick. */
void gate_shed(struct worker *w)
{
    pool_shed(&w->pool, shed_ask, shed_take, w);
}

/* The queue's timer: hand out every slot the pair has now, by fair share,
 * then sleep until the next one. */
static void on_queue_due(struct ring_timer *t)
{
    struct hold_queue *hq = HERALD_CONTAINER_OF(t, struct hold_queue, timer);
    struct worker *w = hq->w;
    struct throttle_pair *pair = hq->pair;
    while (fairq_len(&hq->q) > 0) {
        const struct cfg_provider *prov = config_provider(w->cfg, pair->provider);
        struct shape_input in;
        gather(w, pair, prov, hq, NULL, &in);
        /* Its address reached today's warm-up cap while it waited: back to
         * the retry set at once, to be routed again (another address of
         * the pool, or tomorrow). */
        in.warmup_retry_ms = in.now_wall_ms + 1000;
        struct shape_verdict v;
        shape_decide_head(&in, &v);
        if (v.kind == SHAPE_GO && in.rated)
            take_slot(w, pair, prov, &in, &v);
        if (v.kind == SHAPE_WAIT) {
            int64_t at = w->ring.now_ms + (v.until_ms - in.now_mono_ms);
            ring_timer_arm(&w->ring, &hq->timer, at > w->ring.now_ms ? at : w->ring.now_ms + 1);
            return;
        }
        struct delivery *d = HERALD_CONTAINER_OF(fairq_pop(&hq->q), struct delivery, qnode);
        d->queued_on = NULL;
        atomic_fetch_sub(&pair->waiting, 1);
        if (v.kind == SHAPE_PARK) {
            park(d, &v, NULL, NULL);
        } else if (!operator_suspended(d)) {
            send_now(d);
        }
    }
}

static struct hold_queue *hold_queue_of(struct worker *w, struct throttle_pair *pair)
{
    for (struct hold_queue *hq = w->queues; hq; hq = hq->next)
        if (hq->pair == pair)
            return hq;
    struct hold_queue *hq = calloc(1, sizeof *hq);
    if (!hq)
        return NULL;
    hq->w = w;
    hq->pair = pair;
    fairq_init(&hq->q);
    ring_timer_init(&hq->timer, on_queue_due);
    hq->next = w->queues;
    w->queues = hq;
    return hq;
}

void gate_dequeue(struct delivery *d)
{
    if (d->queued_on) {
        fairq_remove(&d->queued_on->q, &d->qnode);
        atomic_fetch_sub(&d->queued_on->pair->waiting, 1);
    }
    d->queued_on = NULL;
}

void gate_free(struct worker *w)
{
    for (struct hold_queue *hq = w->queues, *next; hq; hq = next) {
        next = hq->next;
        if (w->ring_live)
            ring_timer_cancel(&w->ring, &hq->timer);
        fairq_free(&hq->q);
        free(hq);
    }
    w->queues = NULL;
}

/* An operator suspended this message's tenant, provider, site, egress IP
 * or recipient domain (herald suspend): back to the retry set with a note
 * saying so, until the suspension ends (or for SUSP_RECHECK_MS, then it
 * looks again). True when parked. */
static bool operator_suspended(struct delivery *d)
{
    struct worker *w = d->w;
    if (w->susp.n == 0)
        return false;
    struct susp_path p = {.tenant = d->job.tenant, .domain = d->job.to_domain,
                          .site = d->site[0] ? d->site : NULL};
    if (d->pair) {
        p.provider = d->pair->provider;
        p.ip = d->pair->ip[0] ? d->pair->ip : NULL;
    }
    int64_t now = clock_wall_ms(), until = 0;
    const struct susp_entry *e = susp_match(&w->susp, &p, now, &until);
    if (!e)
        return false;
    if (d->pair)
        atomic_fetch_add(&d->pair->parked[SHAPE_R_SUSPENDED], 1);
    struct note n;
    note_begin(&n, d, EV_DEFERRED, now);
    char why[480];
    snprintf(why, sizeof why, "%s %s suspended by an operator: %s", susp_kind_name(e->kind),
             e->value, e->reason[0] ? e->reason : "(no reason given)");
    note_add(&n, "reason", why);
    note_add(&n, "category", "suspended");
    note_add_int(&n, "next_attempt_at", until);
    notes_park(d, until, PARK_WAIT, &n);
    return true;
}

void gate_submit(struct delivery *d, const struct cfg_provider *prov)
{
    struct worker *w = d->w;
    struct throttle_pair *pair = d->pair;
    if (operator_suspended(d))
        return;
    if (!pair) {
        send_now(d);
        return;
    }
    bool rated = prov && prov->rate.count;
    struct hold_queue *hq = rated ? hold_queue_of(w, pair) : NULL; /* NULL on OOM: unrated */
    struct klass k;
    klass_of(d, &k);
    struct shape_input in;
    gather(w, pair, prov, hq, &k, &in);
    struct shape_verdict v;
    shape_decide(&in, &v);
    if (v.kind == SHAPE_GO && in.rated)
        take_slot(w, pair, prov, &in, &v);
    switch (v.kind) {
    case SHAPE_GO:
        send_now(d);
        return;
    case SHAPE_PARK:
        park(d, &v, hq, &k);
        return;
    case SHAPE_WAIT:
        break;
    }
    if (fairq_push(&hq->q, &d->qnode, k.key, k.weight) < 0) {
        send_now(d); /* out of memory: the rate is best effort then */
        return;
    }
    delivery_set_state(d, DS_QUEUED);
    d->queued_on = hq;
    atomic_fetch_add(&pair->waiting, 1);
    if (!ring_timer_armed(&hq->timer))
        ring_timer_arm(&w->ring, &hq->timer, w->ring.now_ms);
}

/* Jobs a rate limit parked in the retry set were given the slot times of
 * the old limits: a reload brings them back now, to be priced again. The
 * set's members are the jobs' hash keys. One call looks at RECALL_CHUNK
 * members from an offset into (walk start, +inf] and returns {recalled,
 * looked at}: a recalled member's score becomes the walk's start, out of
 * the range, so the next chunk starts after the ones kept. Walking a large
 * set in one call would hold Redis (BUSY for every other client) for as
 * long as it takes. A member removed ahead of the offset meanwhile (moved,
 * cancelled) lets the walk skip one: that job returns at its old time.
 * A job an operator holds (herald queue hold) stays held. */
#define RECALL_CHUNK 500
static const char recall_script[] =
    "local now = tonumber(ARGV[1]) "
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. ARGV[1], '+inf', 'LIMIT', "
    "tonumber(ARGV[2]), tonumber(ARGV[3])) "
    "local n = 0 "
    "for _, id in ipairs(ids) do "
    "  local f = redis.call('HMGET', id, 'throttled', 'held') "
    "  if f[1] == '1' and f[2] ~= '1' then "
    "    redis.call('ZADD', KEYS[1], 'XX', now, id) n = n + 1 "
    "  end "
    "end "
    "return {n, #ids}";

static void recall_chunk(struct worker *w);

static void recall_done(struct worker *w)
{
    w->recall_busy = false;
    if (w->recall_again) {
        w->recall_again = false;
        gate_recall(w);
    }
}

static void on_recalled(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct worker *w = arg;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_INTEGER ||
        reply->element[1]->type != REDIS_REPLY_INTEGER) {
        log_event(LOG_WARN, "event=parked_recall_failed worker=%u recalled=%lld reason=%s", w->idx,
                  w->recall_total,
                  LOG_VALUE(reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "no reply"));
        recall_done(w);
        return;
    }
    long long recalled = reply->element[0]->integer, seen = reply->element[1]->integer;
    w->recall_total += recalled;
    w->recall_offset += seen - recalled;
    if (seen == RECALL_CHUNK) {
        recall_chunk(w);
        return;
    }
    log_event(LOG_INFO, "event=parked_recalled worker=%u parked=%lld", w->idx, w->recall_total);
    recall_done(w);
}

static void recall_chunk(struct worker *w)
{
    char now[24], off[24], chunk[16];
    snprintf(now, sizeof now, "%" PRId64, w->recall_now_ms);
    snprintf(off, sizeof off, "%lld", w->recall_offset);
    snprintf(chunk, sizeof chunk, "%d", RECALL_CHUNK);
    const char *argv[] = {"EVAL", recall_script, "1", w->sh->keys.retry, now, off, chunk};
    if (redis_client_command_argv(&w->notes, on_recalled, w, (int)HERALD_ARRAY_LEN(argv), argv,
                                  NULL) < 0) {
        log_event(LOG_WARN, "event=parked_recall_failed worker=%u reason=\"redis unavailable\"",
                  w->idx);
        w->recall_busy = false;
    }
}

void gate_reload(struct worker *w)
{
    for (struct hold_queue *hq = w->queues; hq; hq = hq->next) {
        /* Return times were spaced at the old rates; worker 0's recall
         * below forgets them and brings the parked jobs back to be spaced
         * again. */
        if (fairq_len(&hq->q) > 0)
            ring_timer_arm(&w->ring, &hq->timer, w->ring.now_ms);
    }
    if (w->idx == 0)
        gate_recall(w);
}

void gate_recall(struct worker *w)
{
    struct throttle_table *tt = w->sh->throttle;
    for (size_t i = 0, n = tt ? throttle_pair_count(tt) : 0; i < n; i++)
        throttle_park_forget(throttle_pair_at(tt, i));
    if (w->recall_busy) {
        w->recall_again = true; /* after this walk, from the start */
        return;
    }
    w->recall_busy = true;
    w->recall_now_ms = clock_wall_ms();
    w->recall_offset = 0;
    w->recall_total = 0;
    recall_chunk(w);
}
