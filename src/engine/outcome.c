/* Outcomes (outcome.h): from an attempt's result to the job's note and
 * next step. */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "herald/engine.h"
#include "herald/throttle.h"
#include "delivery.h"
#include "notes.h"
#include "outcome.h"
#include "route.h"
#include "worker.h"

uint64_t outcome_rng_next(uint64_t *rng)
{
    *rng = *rng * 6364136223846793005ULL + 1442695040888963407ULL;
    return *rng >> 33;
}

int64_t outcome_retry_due(const struct cfg_delivery *dc, uint32_t attempt, bool greylist,
                          int64_t now_ms, uint64_t *rng)
{
    int64_t step = 60000;
    if (dc->n_retry > 0) {
        size_t i = attempt > 0 ? attempt - 1 : 0;
        if (i >= dc->n_retry)
            i = dc->n_retry - 1;
        if (greylist) /* greylisting asks for a prompt retry */
            i = 0;
        step = dc->retry_ms[i];
    }
    return now_ms + step + (int64_t)(outcome_rng_next(rng) % (uint64_t)(step / 10 + 1));
}

bool outcome_connection_level(const struct smtp_result *res)
{
    return res->outcome != SMTP_OUT_OK &&
           (res->stage == SMTP_STAGE_CONNECT || res->stage == SMTP_STAGE_BANNER ||
            res->stage == SMTP_STAGE_EHLO || res->stage == SMTP_STAGE_TLS);
}

void outcome_decide(const struct cfg_delivery *dc, const struct outcome_in *in, int64_t now_ms,
                    uint64_t *rng, struct outcome *out)
{
    const struct smtp_result *res = in->res;
    memset(out, 0, sizeof *out);
    if (res->outcome == SMTP_OUT_OK) {
        out->kind = OC_DELIVERED;
        return;
    }
    if (outcome_connection_level(res) && in->more_targets && !in->draining) {
        out->kind = OC_FAILOVER;
        return;
    }
    if (res->outcome == SMTP_OUT_PERMFAIL) {
        out->kind = OC_BOUNCED;
        /* A mailbox or domain that does not exist will not start to: later
         * jobs to it end `suppressed` without a connection. */
        out->suppress = strcmp(in->category, "bad-mailbox") == 0 ||
                        strcmp(in->category, "bad-domain") == 0;
        return;
    }
    int64_t due = outcome_retry_due(dc, in->attempt, strcmp(in->category, "greylist") == 0,
                                    now_ms, rng);
    if (in->expires_at_ms > 0 && due >= in->expires_at_ms)
        out->kind = OC_EXPIRED;
    else if (in->enqueued_ms > 0 && due - in->enqueued_ms > in->max_age_ms)
        out->kind = OC_GAVE_UP;
    else
        out->kind = OC_RETRY;
    out->due_ms = due;
}

/* ---------- applying a decision ---------- */

static int64_t tenant_max_age(const struct config *cfg, const char *tenant)
{
    const struct cfg_tenant *t = tenant ? config_tenant(cfg, tenant) : NULL;
    return t ? t->max_age_ms : cfg->delivery.max_age_ms;
}

/* Reputation learns from every attempt that reached a decision, with two
 * exceptions that keep one hostile or broken domain from shaping anyone
 * else's mail. A connection that failed before any reply (refused, reset,
 * timed out) says something about the receiver only once it has accepted
 * mail from us: from a site with no history it is a dead or tarpitted
 * exchanger, not a reputation verdict, so it feeds nothing (not even a
 * clean reply). And a site that should have had its own pair but shares
 * its provider's pooled one (the site map is full) feeds nothing either:
 * its signals would shape every other site in the pool. */
static bool reputation_signal_counts(const struct delivery *d, const struct smtp_result *res)
{
    if (d->site_hash && d->pair->site_hash == 0) {
        const struct cfg_provider *prov = config_provider(d->w->cfg, d->pair->provider);
        if (prov && prov->per_site)
            return false;
    }
    if (res->outcome == SMTP_OUT_NETFAIL && res->code == 0 && res->stage <= SMTP_STAGE_BANNER &&
        atomic_load(&d->pair->sent) == 0)
        return false;
    return true;
}

static void feed_reputation(struct delivery *d, const struct smtp_result *res)
{
    struct worker *w = d->w;
    if (!d->pair || !reputation_signal_counts(d, res))
        return;
    int64_t suspend_ms = 0;
    enum throttle_signal_kind sig =
        res->outcome == SMTP_OUT_OK
            ? THROTTLE_OK
            : throttle_classify(&w->cfg->reputation, res->code, res->enhanced, res->reply,
                                res->stage == SMTP_STAGE_CONNECT, classify_reply(w->cfg, res),
                                &suspend_ms);
    throttle_signal(d->pair, &w->cfg->reputation, sig, suspend_ms, w->ring.now_ms,
                    clock_wall_ms());
}

void outcome_apply(struct delivery *d, const struct smtp_result *res,
                   const struct pool_conn_info *info)
{
    struct worker *w = d->w;
    const struct config *cfg = w->cfg;
    struct job *j = &d->job;
    const char *cat = classify_reply(cfg, res);
    struct outcome_in in = {
        .res = res,
        .category = cat,
        .attempt = j->attempt,
        .expires_at_ms = j->expires_at_ms,
        .enqueued_ms = j->enqueued_ms,
        .max_age_ms = tenant_max_age(cfg, j->tenant),
        .more_targets = d->targets && info && d->target_i + 1 < d->n_targets,
        .draining = w->draining,
    };
    int64_t now = clock_wall_ms();
    struct outcome oc;
    outcome_decide(&cfg->delivery, &in, now, &w->rng, &oc);
    const char *mx = info && info->mx ? info->mx : "-";
    if (oc.kind == OC_FAILOVER) {
        log_event(LOG_INFO, "event=mx_failover job=%s mx=%s ip=%s next=%s reason=%s",
                  LOG_VALUE(delivery_job_id(d)), LOG_VALUE(mx),
                  info->remote_ip ? info->remote_ip : "-",
                  LOG_VALUE(d->targets[d->target_i + 1].host), LOG_VALUE(res->reply));
        d->target_i++;
        route_submit(d, &d->targets[d->target_i]);
        return;
    }
    feed_reputation(d, res);
    struct note n;
    switch (oc.kind) {
    case OC_DELIVERED:
        note_begin(&n, d, EV_DELIVERED, now);
        note_smtp(&n, cfg, res, info, j->message_id);
        if (log_min_level <= LOG_DEBUG)
            log_event(LOG_DEBUG, "event=delivered job=%s to=%s mx=%s code=%d",
                      LOG_VALUE(delivery_job_id(d)), LOG_VALUE(j->to), LOG_VALUE(mx), res->code);
        notes_terminal(d, &n, false);
        return;
    case OC_BOUNCED:
        note_begin(&n, d, EV_BOUNCED, now);
        note_smtp(&n, cfg, res, info, j->message_id);
        if (oc.suppress)
            note_add(&n, "suppressed", "added");
        log_event(LOG_INFO, "event=bounced job=%s to=%s mx=%s code=%d reply=%s",
                  LOG_VALUE(delivery_job_id(d)), LOG_VALUE(j->to), LOG_VALUE(mx), res->code,
                  LOG_VALUE(res->reply));
        notes_terminal(d, &n, oc.suppress);
        return;
    case OC_EXPIRED:
        note_begin(&n, d, EV_EXPIRED, now);
        note_smtp(&n, cfg, res, info, j->message_id);
        note_add(&n, "reason", "the next attempt would fall after expires_at");
        notes_terminal(d, &n, false);
        return;
    case OC_GAVE_UP: {
        struct smtp_result last = *res;
        int pl = snprintf(last.reply, sizeof last.reply, "gave up after %" PRIu32 " attempts: %.460s",
                          j->attempt, res->reply);
        (void)pl;
        note_begin(&n, d, EV_BOUNCED, now);
        note_smtp(&n, cfg, &last, info, j->message_id);
        notes_terminal(d, &n, false);
        return;
    }
    case OC_RETRY:
    case OC_FAILOVER:
        break;
    }
    log_event(LOG_INFO, "event=deferred job=%s to=%s mx=%s code=%d reply=%s",
              LOG_VALUE(delivery_job_id(d)), LOG_VALUE(j->to), LOG_VALUE(mx), res->code,
              LOG_VALUE(res->reply));
    note_begin(&n, d, EV_DEFERRED, now);
    note_smtp(&n, cfg, res, info, j->message_id);
    note_add_int(&n, "next_attempt_at", oc.due_ms);
    notes_defer(d, oc.due_ms, j->attempt, PARK_RETRY, &n);
}

void outcome_pool_done(void *arg, struct smtp_msg *msg, const struct smtp_result *res,
                       const struct pool_conn_info *info)
{
    (void)arg;
    struct delivery *d = msg->owner_data;
    if (!res) {
        delivery_exit(d, DX_LEFT); /* never attempted (shutting down): still pending */
        return;
    }
    outcome_apply(d, res, info);
}

void outcome_local_fail(struct delivery *d, const char *fmt, ...)
{
    struct smtp_result res = {.outcome = SMTP_OUT_NETFAIL, .stage = SMTP_STAGE_CONNECT};
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res.reply, sizeof res.reply, fmt, ap);
    va_end(ap);
    outcome_apply(d, &res, NULL);
}
