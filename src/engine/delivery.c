/* The delivery object: its typed pool, its state machine and its one exit
 * (delivery.h). */
#include <stdlib.h>
#include <string.h>

#include "delivery.h"
#include "gate.h"
#include "intake.h"
#include "stats.h"
#include "worker.h"

static const char *const state_names[DS_COUNT] = {
    [DS_FREE] = "free",         [DS_DECODING] = "decoding", [DS_ADMITTING] = "admitting",
    [DS_ROUTING] = "routing",   [DS_QUEUED] = "queued",     [DS_SENDING] = "sending",
    [DS_NOTING] = "noting",     [DS_NOTE_PARKED] = "note_parked", [DS_DONE] = "done",
};

const char *delivery_state_name(enum delivery_state s)
{
    return (unsigned)s < DS_COUNT ? state_names[s] : "?";
}

/* Rows: from; bits: the states it may move to. Every live state may go to
 * DONE: shutdown, a lost Redis connection or a failed admission leaves the
 * entry pending in Redis from wherever the job was. */
#define B(s) (1u << (s))
static const unsigned legal[DS_COUNT] = {
    [DS_FREE] = B(DS_DECODING),
    [DS_DECODING] = B(DS_ADMITTING) | B(DS_NOTING) | B(DS_DONE),
    [DS_ADMITTING] = B(DS_ROUTING) | B(DS_QUEUED) | B(DS_SENDING) | B(DS_NOTING) | B(DS_DONE),
    [DS_ROUTING] = B(DS_QUEUED) | B(DS_SENDING) | B(DS_NOTING) | B(DS_DONE),
    [DS_QUEUED] = B(DS_SENDING) | B(DS_NOTING) | B(DS_DONE),
    /* SENDING -> QUEUED/SENDING: failover to the next exchanger goes
     * through the gate again. */
    [DS_SENDING] = B(DS_QUEUED) | B(DS_SENDING) | B(DS_NOTING) | B(DS_DONE),
    [DS_NOTING] = B(DS_NOTE_PARKED) | B(DS_DONE),
    [DS_NOTE_PARKED] = B(DS_NOTING) | B(DS_DONE),
    [DS_DONE] = B(DS_FREE),
};
#undef B

bool delivery_transition_ok(enum delivery_state from, enum delivery_state to)
{
    if ((unsigned)from >= DS_COUNT || (unsigned)to >= DS_COUNT)
        return false;
    return (legal[from] >> to) & 1u;
}

void delivery_set_state(struct delivery *d, enum delivery_state to)
{
    if (!delivery_transition_ok(d->state, to)) {
        log_event(
            LOG_ERROR, "event=bug reason=\"illegal delivery transition\" job=%s from=%s to=%s",
            LOG_VALUE(delivery_job_id(d)), delivery_state_name(d->state), delivery_state_name(to));
#ifndef NDEBUG
        abort();
#endif
    }
    if (log_min_level <= LOG_TRACE)
        log_event(LOG_TRACE, "event=delivery_state job=%s entry=%s from=%s to=%s",
                  LOG_VALUE(delivery_job_id(d)), d->job.stream_id, delivery_state_name(d->state),
                  delivery_state_name(to));
    /* One writer per counter (this worker): a relaxed load and store. */
    _Atomic int64_t *n = d->w->n_in_state;
    if (d->state != DS_FREE)
        atomic_store_explicit(&n[d->state], atomic_load_explicit(&n[d->state], memory_order_relaxed) - 1,
                              memory_order_relaxed);
    if (to != DS_FREE)
        atomic_store_explicit(&n[to], atomic_load_explicit(&n[to], memory_order_relaxed) + 1,
                              memory_order_relaxed);
    d->state = to;
}

/* Freed deliveries are kept for reuse up to this many per worker: enough
 * for a full in-flight window without a calloc per job in steady state. */
#define FREE_KEEP 4096

struct delivery *delivery_new(struct worker *w)
{
    struct delivery *d = w->free_deliveries;
    if (d) {
        /* The job's buffers and the note buffer were recycled, not freed
         * (delivery_destroy): carry them over the wipe. */
        struct job job = d->job;
        struct hbuf note_cmd = d->note_cmd, admit_req = d->admit_req;
        w->free_deliveries = d->next;
        w->n_free_deliveries--;
        memset(d, 0, sizeof *d);
        d->job = job;
        d->note_cmd = note_cmd;
        d->admit_req = admit_req;
    } else {
        d = calloc(1, sizeof *d);
        if (!d)
            return NULL;
        job_init(&d->job);
        hbuf_init(&d->note_cmd);
        hbuf_init(&d->admit_req);
    }
    d->state = DS_FREE;
    d->w = w;
    d->gen = w->gen;
    atomic_fetch_add_explicit(&d->gen->refs, 1, memory_order_relaxed);
    fairq_node_init(&d->qnode);
    delivery_set_state(d, DS_DECODING);
    d->next = w->held;
    if (w->held)
        w->held->prev = d;
    w->held = d;
    w->inflight++;
    return d;
}

static void unlink_held(struct delivery *d)
{
    struct worker *w = d->w;
    if (d->prev)
        d->prev->next = d->next;
    else
        w->held = d->next;
    if (d->next)
        d->next->prev = d->prev;
    d->prev = d->next = NULL;
}

void delivery_exit(struct delivery *d, enum delivery_exit_why why)
{
    struct worker *w = d->w;
    if (d->state == DS_QUEUED)
        gate_dequeue(d);
    if (d->state == DS_NOTE_PARKED) {
        for (struct delivery **p = &w->unwritten; *p; p = &(*p)->parked_next)
            if (*p == d) {
                *p = d->parked_next;
                break;
            }
    }
    if (why == DX_LEFT && log_min_level <= LOG_DEBUG)
        log_event(LOG_DEBUG, "event=delivery_left job=%s entry=%s state=%s",
                  LOG_VALUE(delivery_job_id(d)), d->job.stream_id, delivery_state_name(d->state));
    delivery_set_state(d, DS_DONE);
    unlink_held(d);
    if (d->tenant_row) {
        atomic_fetch_sub(&d->tenant_row->in_flight, 1);
        d->tenant_row = NULL;
    }
    w->inflight--;
    d->parked_next = w->reap;
    w->reap = d;
}

/* A note command kept for the next job up to this size (a few KiB each). */
#define NOTE_CMD_KEEP (64 * 1024)

static void delivery_free(struct delivery *d)
{
    job_clear(&d->job);
    hbuf_free(&d->note_cmd);
    hbuf_free(&d->admit_req);
    free(d);
}

static void delivery_destroy(struct worker *w, struct delivery *d)
{
    free(d->targets);
    d->targets = NULL;
    engine_gen_release(d->gen);
    d->gen = NULL;
    delivery_set_state(d, DS_FREE);
    if (w->n_free_deliveries < FREE_KEEP) {
        job_recycle(&d->job);
        if (d->note_cmd.cap > NOTE_CMD_KEEP)
            hbuf_free(&d->note_cmd);
        hbuf_reset(&d->note_cmd);
        if (d->admit_req.cap > NOTE_CMD_KEEP)
            hbuf_free(&d->admit_req);
        hbuf_reset(&d->admit_req);
        d->next = w->free_deliveries;
        w->free_deliveries = d;
        w->n_free_deliveries++;
    } else {
        delivery_free(d);
    }
}

void delivery_reap(struct worker *w)
{
    if (!w->reap)
        return;
    while (w->reap) {
        struct delivery *d = w->reap;
        w->reap = d->parked_next;
        delivery_destroy(w, d);
    }
    intake_read(w);
}

void delivery_free_all(struct worker *w)
{
    while (w->held)
        delivery_exit(w->held, DX_LEFT);
    while (w->reap) {
        struct delivery *d = w->reap;
        w->reap = d->parked_next;
        delivery_destroy(w, d);
    }
    while (w->free_deliveries) {
        struct delivery *d = w->free_deliveries;
        w->free_deliveries = d->next;
        delivery_free(d);
    }
    w->n_free_deliveries = 0;
}

const char *delivery_job_field(const struct job *j, const char *name)
{
    for (size_t i = 0; i < j->n_fields; i++)
        if (strcmp(j->names[i], name) == 0)
            return j->values[i];
    return NULL;
}
