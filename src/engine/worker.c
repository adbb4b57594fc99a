/* A worker: one thread, one ring, two Redis connections (intake blocks in
 * XREADGROUP, notes carries admission and the pipelined note scripts) and
 * its own SMTP pools. This file keeps the thread, its periodic tick, the
 * Redis connections' state and the drain; a job's way through the stages
 * is in intake.c, admit.c, route.c, gate.c, outcome.c and notes.c, in that
 * order (docs/design.md, "A job's path"). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald/engine.h"
#include "admit.h"
#include "delivery.h"
#include "gate.h"
#include "housekeep.h"
#include "intake.h"
#include "lease.h"
#include "notes.h"
#include "outcome.h"
#include "status.h"
#include "worker.h"

#define TICK_MS 200

_Static_assert(EV_COUNT <= HERALD_ARRAY_LEN(((struct worker *)0)->n_events),
               "worker.n_events holds every note event");

/* Reconnect delay: 100 ms doubling to 5 s, reset on success. */
static void backoff(int64_t *delay_ms, int64_t *retry_at, int64_t now)
{
    *delay_ms = *delay_ms ? *delay_ms * 2 : 100;
    if (*delay_ms > 5000)
        *delay_ms = 5000;
    *retry_at = now + *delay_ms;
}

static void on_intake_state(struct redis_client *c, bool up, int err, void *arg)
{
    (void)c;
    struct worker *w = arg;
    atomic_store(&w->intake_up, up);
    if (up) {
        w->intake_backoff_ms = 0;
        log_event(LOG_INFO, "event=redis_connected worker=%u conn=intake", w->idx);
        intake_ensure_group(w);
        return;
    }
    w->reading = false;
    w->group_ready = false;
    /* A batch too large to read: take entries one at a time for a while,
     * so the ones that fit get through (they are pending under this
     * consumer and are claimed again after claim_idle). */
    if (err == -HERR_TOO_LONG)
        w->small_reads = 2 * w->cfg->engine.batch;
    backoff(&w->intake_backoff_ms, &w->intake_retry_at, w->ring.now_ms);
    if (err == 0)
        return; /* we closed it */
    log_event(LOG_WARN,
              "event=redis_disconnected worker=%u conn=intake reason=\"%s\" retry_ms=%" PRId64,
              w->idx, herald_strerror(err), w->intake_backoff_ms);
}

void worker_hold_claims(struct worker *w, int64_t for_ms)
{
    int64_t until = w->ring.now_ms + for_ms;
    int64_t cur = atomic_load(&w->sh->claims_held_until_ms);
    while (cur < until && !atomic_compare_exchange_weak(&w->sh->claims_held_until_ms, &cur, until))
        ;
}

static void on_notes_state(struct redis_client *c, bool up, int err, void *arg)
{
    (void)c;
    struct worker *w = arg;
    atomic_store(&w->notes_up, up);
    if (up) {
        w->notes_backoff_ms = 0;
        log_event(LOG_INFO, "event=redis_connected worker=%u conn=notes", w->idx);
        notes_resend_parked(w);
        status_on_connected(w);
        /* Let every worker re-send its parked notes and refresh its claims
         * before anyone claims entries that merely look idle because Redis
         * was away. */
        worker_hold_claims(w, WORKER_CLAIM_HOLD_MS(w->cfg));
        return;
    }
    w->claiming = false;
    w->moving = false;
    if (err == -HERR_TOO_LONG)
        w->small_reads = 2 * w->cfg->engine.batch;
    backoff(&w->notes_backoff_ms, &w->notes_retry_at, w->ring.now_ms);
    if (err == 0)
        return; /* we closed it */
    log_event(LOG_WARN,
              "event=redis_disconnected worker=%u conn=notes reason=\"%s\" retry_ms=%" PRId64,
              w->idx, herald_strerror(err), w->notes_backoff_ms);
}

/* A SCRIPT LOAD refused (Redis still loading its AOF after a restart):
 * without the scripts every note would fail, so reconnect and load again. */
static void on_script_loaded(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct worker *w = arg;
    if (reply && reply->type == REDIS_REPLY_ERROR && w->notes.state == REDIS_C_UP)
        notes_reload(w, reply->str);
}

static void notes_connect(struct worker *w)
{
    if (redis_client_connect(&w->notes) < 0) {
        w->notes_retry_at = w->ring.now_ms + 1000;
        return;
    }
    /* Loaded ahead of any EVALSHA on the same connection. */
    const char *const scripts[] = {notes_script_terminal, notes_script_defer, notes_script_mover,
                                   notes_script_admit, notes_script_cancel, notes_script_lease};
    for (size_t i = 0; i < HERALD_ARRAY_LEN(scripts); i++)
        redis_client_commandf(&w->notes, on_script_loaded, w, "SCRIPT LOAD %s", scripts[i]);
}

/* Switch to a newly published config generation. */
static void apply_generation(struct worker *w)
{
    if (atomic_load_explicit(&w->sh->gen, memory_order_acquire) == w->gen)
        return;
    struct engine_gen *g = engine_gen_acquire(w->sh);
    engine_gen_release(w->gen);
    w->gen = g;
    w->cfg = g->cfg;
    log_event(LOG_INFO, "event=config_applied worker=%u generation=%u", w->idx, g->number);
    gate_reload(w);
}

/* Drain: stop reading, let what is held finish within the grace period,
 * then close the pools. True once the worker may stop. */
static bool drain(struct worker *w, int64_t now)
{
    if (!w->draining) {
        if (!atomic_load(&w->sh->stop))
            return false;
        w->draining = true;
        w->drain_deadline_ms = now + w->cfg->engine.shutdown_grace_ms;
        log_event(LOG_INFO, "event=draining worker=%u held=%u", w->idx, w->inflight);
    }
    if (w->inflight > 0 && now < w->drain_deadline_ms)
        return false;
    if (!w->pool.closing)
        pool_close_all(&w->pool);
    /* Connections still busy a second past the grace (a stalled peer) are
     * closed outright, so nothing outlives the drain. */
    if (now >= w->drain_deadline_ms + 1000 && !w->pool_aborted) {
        w->pool_aborted = true;
        pool_abort_all(&w->pool);
    }
    return pool_is_quiet(&w->pool) || now >= w->drain_deadline_ms + 5000;
}

static void on_tick(struct ring_timer *t)
{
    struct worker *w = HERALD_CONTAINER_OF(t, struct worker, tick);
    int64_t now = w->ring.now_ms;
    apply_generation(w);
    const struct config *cfg = w->cfg;
    status_tick(w, now);
    if (drain(w, now)) {
        atomic_store(&w->done, true);
        return;
    }
    /* Reputation recovers additively after clean intervals: one worker
     * walks the (small, fixed) table for everyone. */
    if (w->idx == 0 && w->sh->throttle) {
        struct throttle_table *tt = w->sh->throttle;
        bool raised = false;
        for (size_t i = 0, n = throttle_pair_count(tt); i < n; i++)
            raised |= throttle_tick(throttle_pair_at(tt, i), &cfg->reputation, now);
        /* Jobs parked while a pair was backed off were spaced at its lower
         * rate: once it climbs, call them back to be spaced again (at
         * most every few seconds: the recall walks the retry set). */
        if (raised)
            w->recall_wanted = true;
        if (w->recall_wanted && now >= w->next_recall_ms) {
            w->recall_wanted = false;
            w->next_recall_ms = now + 5000;
            gate_recall(w);
        }
    }
    if (w->intake.state == REDIS_C_IDLE && now >= w->intake_retry_at && !w->draining)
        redis_client_connect(&w->intake);
    if (w->notes.state == REDIS_C_IDLE && now >= w->notes_retry_at)
        notes_connect(w);
    if (redis_client_up(&w->intake) && !w->group_ready && now >= w->intake_retry_at &&
        !w->draining)
        intake_ensure_group(w);
    intake_read(w);
    intake_tick(w, now);
    housekeep_tick(w, now);
    notes_resend_due(w, now);
    gate_shed(w);
    pool_tick(&w->pool);
    if (w->idx == 0 && w->sh->throttle && redis_client_up(&w->notes))
        lease_tick(w, clock_mono_ms());
    ring_timer_arm(&w->ring, &w->tick, now + TICK_MS);
}

int worker_init(struct worker *w, unsigned idx, struct engine_shared *sh)
{
    memset(w, 0, sizeof *w);
    w->idx = idx;
    w->sh = sh;
    w->gen = engine_gen_acquire(sh);
    w->cfg = w->gen->cfg;
    snprintf(w->consumer, sizeof w->consumer, "%s-%u", w->cfg->engine.consumer, idx);
    w->rng = (uint64_t)clock_wall_ms() ^ ((uint64_t)idx << 32) ^ (uint64_t)(uintptr_t)w;
    snprintf(w->pel_cursor, sizeof w->pel_cursor, "0");
    snprintf(w->claim_cursor, sizeof w->claim_cursor, "0-0");
    /* The ring itself is created on the worker's own thread (worker_main):
     * a single-issuer ring belongs to the thread that made it. */
    int rc = redis_client_init(&w->intake, &w->ring, &sh->redis, "intake", on_intake_state, w);
    if (rc == 0)
        rc = redis_client_init(&w->notes, &w->ring, &sh->redis, "notes", on_notes_state, w);
    if (rc == 0)
        rc = pool_init(&w->pool, &w->ring, outcome_pool_done, w);
    if (rc == 0) {
        pool_set_tls(&w->pool, sh->tls_ctx);
        redis_client_set_tls(&w->intake, sh->redis_tls_ctx);
        redis_client_set_tls(&w->notes, sh->redis_tls_ctx);
    }
    redis_client_set_max_reply(&w->intake, w->cfg->engine.max_reply_bytes);
    redis_client_set_timeouts(&w->intake, w->cfg->redis.connect_timeout_ms,
                              w->cfg->redis.command_timeout_ms);
    redis_client_set_timeouts(&w->notes, w->cfg->redis.connect_timeout_ms,
                              w->cfg->redis.command_timeout_ms);
    redis_client_set_max_reply(&w->notes, w->cfg->engine.max_reply_bytes);
    ring_timer_init(&w->tick, on_tick);
    if (rc == 0)
        rc = status_init(w);
    return rc;
}

void *worker_main(void *arg)
{
    struct worker *w = arg;
    int rc0 = ring_init(&w->ring, 4096);
    if (rc0 < 0) {
        log_event(LOG_ERROR, "event=ring_failed worker=%u reason=\"io_uring setup failed: %s\"",
                  w->idx, herald_strerror(rc0));
        atomic_store(&w->sh->failed, 1);
        atomic_store(&w->done, true);
        return NULL;
    }
    w->ring_live = true;
    const struct cfg_dns *dc = &w->cfg->dns;
    char derr[256];
    if (dns_resolver_new(&w->dns, &w->ring, (const char *const *)dc->servers.items, dc->servers.n,
                         derr, sizeof derr) < 0)
        log_event(LOG_ERROR, "event=dns_unavailable worker=%u reason=\"%s\"", w->idx, derr);
    redis_client_connect(&w->intake);
    notes_connect(w);
    ring_timer_arm(&w->ring, &w->tick, w->ring.now_ms + TICK_MS);
    while (!atomic_load(&w->done)) {
        int rc = ring_run_once(&w->ring, TICK_MS);
        delivery_reap(w);
        if (rc < 0) {
            log_event(LOG_ERROR, "event=ring_failed worker=%u reason=\"%s\"", w->idx,
                      herald_strerror(rc));
            atomic_store(&w->sh->failed, 1);
            break;
        }
    }
    /* Hand back whatever is still held (pending in Redis) and close down. */
    redis_client_close(&w->intake, 0);
    redis_client_close(&w->notes, 0);
    for (int i = 0; i < 50 && (redis_client_busy(&w->intake) || redis_client_busy(&w->notes) ||
                               !pool_is_quiet(&w->pool));
         i++) {
        ring_run_once(&w->ring, 20);
        delivery_reap(w);
    }
    w->dns_closing = true;
    dns_resolver_free(w->dns);
    w->dns = NULL;
    delivery_free_all(w);
    admit_free(w);
    job_build_thread_done();
    const uint64_t *n = w->n_events;
    log_event(LOG_INFO,
              "event=worker_stopped worker=%u delivered=%" PRIu64 " deferred=%" PRIu64
              " bounced=%" PRIu64 " rejected=%" PRIu64 " other=%" PRIu64,
              w->idx, n[EV_DELIVERED], n[EV_DEFERRED], n[EV_BOUNCED], n[EV_REJECTED],
              n[EV_EXPIRED] + n[EV_SUPPRESSED] + n[EV_DUPLICATE] + n[EV_CANCELLED]);
    return NULL;
}

void worker_free(struct worker *w)
{
    gate_free(w);
    engine_gen_release(w->gen);
    w->gen = NULL;
}
