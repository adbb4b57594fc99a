/* Intake (intake.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admit.h"
#include "delivery.h"
#include "intake.h"
#include "notes.h"
#include "stats.h"
#include "worker.h"

/* DESIGN "From alignment": may rewrite From/Reply-To before the message
 * is built; -HERR_MALFORMED (err filled) when the tenant refuses it. */
static int decide_alignment(struct delivery *d, const struct cfg_tenant *tenant,
                            struct job_error *err)
{
    enum align_outcome o = align_decide(d->w->gen->align, tenant, &d->job);
    d->alignment = align_outcome_name(o);
    if (o == ALIGN_REWRITTEN)
        d->job.mail_from = NULL; /* the envelope follows the rewritten From */
    if (o != ALIGN_REFUSED)
        return 0;
    snprintf(err->field, sizeof err->field, "from");
    snprintf(err->reason, sizeof err->reason, "unaligned-from");
    return -HERR_MALFORMED;
}

/* Decode the entry's fields into d->job. */
static int decode(struct delivery *d, const char *id, const redisReply *fields,
                  struct job_error *err)
{
    enum { STACK_FIELDS = 64 };
    size_t n = fields->elements / 2;
    const char *names_s[STACK_FIELDS], *values_s[STACK_FIELDS];
    size_t nlens_s[STACK_FIELDS], vlens_s[STACK_FIELDS];
    const char **names = names_s, **values = values_s;
    size_t *nlens = nlens_s, *vlens = vlens_s;
    if (n > STACK_FIELDS) {
        names = calloc(n, sizeof *names);
        values = calloc(n, sizeof *values);
        nlens = calloc(n, sizeof *nlens);
        vlens = calloc(n, sizeof *vlens);
    }
    int rc = -ENOMEM;
    if (names && values && nlens && vlens) {
        size_t k = 0;
        for (size_t i = 0; i + 1 < fields->elements; i += 2) {
            const redisReply *f = fields->element[i], *v = fields->element[i + 1];
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                continue;
            names[k] = f->str;
            nlens[k] = f->len;
            values[k] = v->str;
            vlens[k] = v->len;
            k++;
        }
        rc = job_parse(&d->job, id, k, names, nlens, values, vlens, d->w->cfg, err);
    }
    if (n > STACK_FIELDS) {
        free(names);
        free(values);
        free(nlens);
        free(vlens);
    }
    if (rc == -ENOMEM) {
        snprintf(err->reason, sizeof err->reason, "out of memory decoding the job");
        rc = -HERR_MALFORMED;
    }
    return rc;
}

/* A decoded entry: cancel, expiry, schedule, alignment, then admission. */
static void entry_go(struct delivery *d)
{
    struct worker *w = d->w;
    struct job_error err = {{0}, {0}};
    struct job *j = &d->job;
    d->tenant_row = stats_tenant_row(&w->sh->stats.tenants, w->cfg, j->tenant);
    atomic_fetch_add(&d->tenant_row->in_flight, 1);
    if (j->cancel) {
        /* The admissions of earlier entries of this read go first: a
         * cancel must meet the state its target's admission writes, as it
         * did when each admission was its own call. */
        admit_flush(w);
        notes_cancel(d);
        return;
    }
    int64_t now = clock_wall_ms();
    if (j->expires_at_ms > 0 && now >= j->expires_at_ms) {
        struct note note;
        note_begin(&note, d, EV_EXPIRED, now);
        note_add(&note, "reason", j->attempt > 1 || delivery_job_field(j, "admitted")
                                      ? "expires_at passed while it waited"
                                      : "expires_at passed before the first attempt");
        notes_terminal(d, &note, false);
        return;
    }
    if (j->send_at_ms > now + 1000) {
        /* Scheduled: park it in the retry set, keeping its attempt count.
         * A first copy claims its id first (admission), so a second copy
         * (the platform retrying its XADD) is a duplicate now, a cancel that
         * came first ends it now, and `replaces` applies now: scheduled
         * copies that never claimed the id could each be sent, one of them
         * after the other was cancelled. */
        if (j->attempt <= 1 && !delivery_job_field(j, "admitted")) {
            d->schedule_only = true;
            admit_send(d);
            return;
        }
        notes_defer(d, j->send_at_ms, j->attempt > 0 ? j->attempt - 1 : 0, PARK_SCHEDULED, NULL);
        return;
    }
    const struct cfg_tenant *tenant = config_tenant(w->cfg, j->tenant);
    if (tenant && w->gen->align && decide_alignment(d, tenant, &err) < 0) {
        notes_reject(d, &err);
        return;
    }
    admit_send(d);
}

/* Whether the job's state says the mover put exactly this entry back (or
 * it was admitted as this entry and is read again after a crash, or it
 * was cancelled, which ends it whatever it carries). */
static bool state_vouches(const char *st, const char *entry)
{
    if (!st) return false;
    if (strncmp(st, "cancelled:", 10) == 0) return true;
    const char *rest = strncmp(st, "moved:", 6) == 0     ? st + 6
                       : strncmp(st, "sending:", 8) == 0 ? st + 8
                                                         : NULL;
    return rest && strcmp(rest, entry) == 0;
}

static void on_vouch(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct delivery *d = arg;
    if (!reply || reply->type == REDIS_REPLY_ERROR) {
        /* Redis went away or refused: the entry stays pending and is read
         * again; nothing was decided. */
        if (reply)
            log_event(LOG_WARN, "event=vouch_failed entry=%s reason=%s", d->job.stream_id,
                      LOG_VALUE(reply->str));
        delivery_exit(d, DX_LEFT);
        return;
    }
    const char *st = reply->type == REDIS_REPLY_STRING ? reply->str : NULL;
    if (state_vouches(st, d->job.stream_id)) {
        struct worker *w = d->w;
        entry_go(d);
        admit_flush(w);
        return;
    }
    struct job_error err = {{0}, {0}};
    const char *f = job_herald_field(&d->job);
    snprintf(err.field, sizeof err.field, "%s", f ? f : "");
    snprintf(err.reason, sizeof err.reason,
             "%s is written by herald on its own retries; a producer cannot set it", f ? f : "?");
    log_event(LOG_WARN, "event=herald_field_refused job=%s entry=%s field=%s",
              LOG_VALUE(delivery_job_id(d)), d->job.stream_id, LOG_VALUE(f ? f : "?"));
    notes_reject(d, &err);
}

/* One stream entry: decode and check it, then admission, or note why not.
 * An entry that carries fields herald writes for itself is taken only if
 * the job's state vouches for it (one GET; only retried and scheduled
 * copies pay it). The message itself is built only once the gate lets it
 * go (gate.c). */
static void handle_entry(struct worker *w, const char *id, const redisReply *fields)
{
    struct delivery *d = delivery_new(w);
    if (!d) {
        log_event(LOG_ERROR, "event=oom entry=%s", id);
        return;
    }
    snprintf(d->job.stream_id, sizeof d->job.stream_id, "%s", id);
    struct job_error err = {{0}, {0}};
    if (decode(d, id, fields, &err) < 0) {
        notes_reject(d, &err);
        return;
    }
    if (!job_herald_field(&d->job)) {
        entry_go(d);
        return;
    }
    char stkey[KEYS_MAX];
    if (keys_state(&w->sh->keys, d->job.tenant, d->job.id, stkey, sizeof stkey) < 0) {
        snprintf(err.field, sizeof err.field, "id");
        snprintf(err.reason, sizeof err.reason, "tenant and id make a Redis key too long");
        notes_reject(d, &err);
        return;
    }
    const char *argv[] = {"GET", stkey};
    if (redis_client_command_argv(&w->notes, on_vouch, d, 2, argv, NULL) < 0)
        delivery_exit(d, DX_LEFT);
}

/* Each element: [id, [field, value, ...]] (fields nil when the entry was
 * deleted while pending). */
static void handle_entries(struct worker *w, const redisReply *entries, char *last_id,
                           size_t last_cap)
{
    for (size_t i = 0; i < entries->elements; i++) {
        const redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        const char *id = e->element[0]->str;
        if (last_id)
            snprintf(last_id, last_cap, "%s", id);
        const redisReply *fields = e->element[1];
        if (fields->type != REDIS_REPLY_ARRAY) {
            /* Deleted while pending: nothing to send; just clear it. */
            redis_client_commandf(&w->notes, NULL, NULL, "XACK %s %s %s", w->cfg->redis.jobs,
                                  w->cfg->redis.group, id);
            continue;
        }
        handle_entry(w, id, fields);
    }
    /* The entries of this read that went to admission: one script call. */
    admit_flush(w);
}

static void on_read(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct worker *w = arg;
    w->reading = false;
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        log_event(LOG_ERROR, "event=intake_error reason=%s", LOG_VALUE(reply->str));
        if (strncmp(reply->str, "NOGROUP", 7) == 0)
            w->group_ready = false;
        w->intake_retry_at = w->ring.now_ms + 1000;
        /* While Redis refuses everything (BUSY, ...) no claim is refreshed
         * either: claim nothing until entries can have been refreshed again,
         * or we would take jobs whose parked notes are about to be written. */
        if (notes_transient_error(reply))
            worker_hold_claims(w, WORKER_CLAIM_HOLD_MS(w->cfg));
        return;
    }
    size_t got = 0;
    if (reply->type == REDIS_REPLY_ARRAY) {
        for (size_t s = 0; s < reply->elements; s++) {
            const redisReply *st = reply->element[s];
            if (st->type != REDIS_REPLY_ARRAY || st->elements < 2 ||
                st->element[1]->type != REDIS_REPLY_ARRAY)
                continue;
            got += st->element[1]->elements;
            handle_entries(w, st->element[1], w->pel_done ? NULL : w->pel_cursor,
                           sizeof w->pel_cursor);
        }
    }
    if (!w->pel_done && got == 0) {
        w->pel_done = true;
        log_event(LOG_INFO, "event=intake_live worker=%u consumer=%s", w->idx, w->consumer);
    }
    intake_read(w);
}

void intake_read(struct worker *w)
{
    if (w->reading || w->draining || !w->group_ready || !redis_client_up(&w->intake))
        return;
    uint32_t max = w->cfg->engine.max_inflight, batch = w->cfg->engine.batch;
    if (w->inflight >= max)
        return;
    uint32_t room = max - w->inflight;
    /* Wait for a worthwhile batch rather than trickling one entry per trip. */
    if (room < batch / 4 && w->inflight > 0)
        return;
    uint32_t count = room < batch ? room : batch;
    if (w->small_reads > 0) {
        w->small_reads--;
        count = 1;
    }
    int rc;
    if (!w->pel_done)
        rc = redis_client_commandf(&w->intake, on_read, w,
                                   "XREADGROUP GROUP %s %s COUNT %u STREAMS %s %s",
                                   w->cfg->redis.group, w->consumer, count, w->cfg->redis.jobs,
                                   w->pel_cursor);
    else
        rc = redis_client_commandf(&w->intake, on_read, w,
                                   "XREADGROUP GROUP %s %s COUNT %u BLOCK 1000 STREAMS %s >",
                                   w->cfg->redis.group, w->consumer, count, w->cfg->redis.jobs);
    if (rc == 0)
        w->reading = true;
}

static void on_group(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct worker *w = arg;
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) != 0) {
        log_event(LOG_ERROR, "event=group_create_failed reason=%s", LOG_VALUE(reply->str));
        w->intake_retry_at = w->ring.now_ms + 2000;
        if (notes_transient_error(reply))
            worker_hold_claims(w, WORKER_CLAIM_HOLD_MS(w->cfg));
        return;
    }
    w->group_ready = true;
    intake_read(w);
}

void intake_ensure_group(struct worker *w)
{
    /* Start at 0, not $: entries enqueued before the first start are jobs too. */
    redis_client_commandf(&w->intake, on_group, w, "XGROUP CREATE %s %s 0 MKSTREAM",
                          w->cfg->redis.jobs, w->cfg->redis.group);
}

static void on_claim(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct worker *w = arg;
    w->claiming = false;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2)
        return;
    const redisReply *cursor = reply->element[0];
    if (cursor->type == REDIS_REPLY_STRING)
        snprintf(w->claim_cursor, sizeof w->claim_cursor, "%s", cursor->str);
    const redisReply *entries = reply->element[1];
    if (entries->type == REDIS_REPLY_ARRAY && entries->elements > 0) {
        log_event(LOG_INFO, "event=claimed worker=%u entries=%zu", w->idx, entries->elements);
        handle_entries(w, entries, NULL, 0);
    }
    if (strcmp(w->claim_cursor, "0-0") != 0)
        w->next_claim_ms = w->ring.now_ms; /* more to scan */
}

/* A claim refresh Redis refused leaves our entries looking idle. */
static void on_refreshed(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct worker *w = arg;
    if (notes_transient_error(reply))
        worker_hold_claims(w, WORKER_CLAIM_HOLD_MS(w->cfg));
}

static void on_moved(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct worker *w = arg;
    w->moving = false;
    if (notes_scripts_missing(reply))
        notes_reload(w, reply->str);
    else if (reply && reply->type == REDIS_REPLY_ERROR)
        log_event(LOG_ERROR, "event=retry_mover_failed reason=%s", LOG_VALUE(reply->str));
}

/* Keep the entries this worker holds from looking idle, so no other
 * consumer's XAUTOCLAIM takes a job we are still delivering. A job whose
 * note script is on its way needs no refresh: the script acks it. */
static void refresh_claims(struct worker *w)
{
    enum { CHUNK = 500 };
    const char *argv[CHUNK + 8];
    size_t lens[CHUNK + 8];
    const struct delivery *d = w->held;
    while (d) {
        int argc = 0;
        const char *head[] = {"XCLAIM", w->cfg->redis.jobs, w->cfg->redis.group, w->consumer, "0"};
        for (size_t i = 0; i < HERALD_ARRAY_LEN(head); i++) {
            argv[argc] = head[i];
            lens[argc++] = strlen(head[i]);
        }
        int ids = 0;
        for (; d && ids < CHUNK; d = d->next) {
            if (d->state == DS_NOTING)
                continue;
            argv[argc] = d->job.stream_id;
            lens[argc++] = strlen(d->job.stream_id);
            ids++;
        }
        argv[argc] = "JUSTID";
        lens[argc++] = 6;
        if (ids > 0)
            redis_client_command_argv(&w->notes, on_refreshed, w, argc, argv, lens);
    }
}

void intake_tick(struct worker *w, int64_t now)
{
    const struct config *cfg = w->cfg;
    if (!redis_client_up(&w->notes))
        return;
    int64_t idle = cfg->engine.claim_idle_ms;
    /* Draining still refreshes the claims of what is in flight: a
     * shutdown_grace longer than claim_idle must not let another process
     * claim, and send again, a job this one is still delivering. */
    if (now >= w->next_refresh_ms) {
        refresh_claims(w);
        w->next_refresh_ms = now + (idle / 3 > 500 ? idle / 3 : 500);
    }
    if (w->draining)
        return;
    if (w->pel_done && !w->claiming && now >= w->next_claim_ms &&
        now >= atomic_load(&w->sh->claims_held_until_ms)) {
        uint32_t max = cfg->engine.max_inflight;
        uint32_t room = max > w->inflight ? max - w->inflight : 0;
        if (room > 0) {
            uint32_t count = room < 100 ? room : 100;
            if (w->small_reads > 0)
                count = 1;
            if (redis_client_commandf(&w->notes, on_claim, w,
                                      "XAUTOCLAIM %s %s %s %lld %s COUNT %u", cfg->redis.jobs,
                                      cfg->redis.group, w->consumer, (long long)idle,
                                      w->claim_cursor, count) == 0)
                w->claiming = true;
        }
        w->next_claim_ms = now + (idle / 2 > 1000 ? idle / 2 : 1000);
    }
    if (w->idx == 0 && !w->moving && now >= w->next_mover_ms) {
        char nowbuf[24];
        snprintf(nowbuf, sizeof nowbuf, "%" PRId64, clock_wall_ms());
        if (redis_client_commandf(&w->notes, on_moved, w, "EVALSHA %s 2 %s %s %s 500 %s %lld",
                                  w->sh->sha_mover, w->sh->keys.retry, cfg->redis.jobs,
                                  nowbuf, w->sh->keys.prefix,
                                  (long long)cfg->engine.idempotency_window_ms) == 0)
            w->moving = true;
        w->next_mover_ms = now + 250;
    }
}
