/* Internal to the engine: one job on its way through a worker, from the
 * stream entry it was read from to the script that writes its note.
 *
 * A delivery is in exactly one state at a time; the state says which
 * stage owns it and what reply or completion it waits for:
 *
 *   DECODING ─► ADMITTING ─► ROUTING ─► QUEUED ─► SENDING ─► NOTING ─► DONE
 *        │            │           │         │         │  ▲      │ ▲
 *        └────────────┴───────────┴─────────┴─────────┘  │      ▼ │
 *                         (a note to write)              │   NOTE_PARKED
 *                                                        └ (next exchanger)
 *
 * DONE is the one exit (delivery_exit): the delivery is unlinked from the
 * worker's held list at once and freed after the handler that ended it has
 * returned (delivery_reap, once per loop iteration), so no caller up the
 * stack is left holding a freed pointer. */
#ifndef HERALD_ENGINE_DELIVERY_H
#define HERALD_ENGINE_DELIVERY_H

#include <stdbool.h>
#include <stdint.h>

#include "herald/core.h"
#include "herald/fairq.h"
#include "herald/job.h"
#include "herald/pool.h"
#include "herald/smtp.h"
#include "admit.h"

struct worker;
struct hold_queue;
struct throttle_pair;
struct stats_row;

enum delivery_state {
    DS_FREE,        /* in the pool's free list */
    DS_DECODING,    /* read from the stream: being decoded and checked */
    DS_ADMITTING,   /* the admission script was sent; its reply is owed */
    DS_ROUTING,     /* an MX or relay address lookup is in flight */
    DS_QUEUED,      /* waiting in a hold queue for its pair's send slot */
    DS_SENDING,     /* handed to the SMTP pool; its result is owed */
    DS_NOTING,      /* the note script was sent; its reply is owed */
    DS_NOTE_PARKED, /* the note waits for the notes connection to come back */
    DS_DONE,        /* left through delivery_exit; freed after the handler returns */
    DS_COUNT
};

/* Why a delivery left without a note: the entry stays pending in Redis and
 * is read again (by this consumer's PEL pass or another's XAUTOCLAIM). */
enum delivery_exit_why {
    DX_NOTED,     /* its note script answered */
    DX_UNWRITTEN, /* the note could not be formatted (out of memory) */
    DX_LEFT,      /* shutting down, Redis away or admission failed: still pending */
};

/* Why a job goes back to the retry set; THROTTLED ones a reload may recall
 * early (their due time was priced at the old limits). */
enum park_reason {
    PARK_SCHEDULED, /* send_at in the future */
    PARK_RETRY,     /* an attempt failed temporarily (counts the attempt) */
    PARK_WAIT,      /* recipient cap, tenant rate or suspension (no attempt used) */
    PARK_THROTTLED, /* provider rate, fair share or warm-up (no attempt used) */
};

struct delivery {
    enum delivery_state state;
    struct job job;
    struct smtp_msg msg;
    struct worker *w;
    struct engine_gen *gen;        /* the config it was read under (counted) */
    struct delivery *prev, *next;  /* on w->held while not DONE; free list while FREE */
    struct delivery *parked_next;  /* on w->unwritten while NOTE_PARKED; w->reap while DONE */
    struct hbuf note_cmd;          /* the formatted script call, kept until it is answered */
    struct admit_verdict verdict;  /* admission's answer (kind ADMIT_NONE before it) */
    /* Its admission's KEYS then ARGV as RESP bulk strings (keys: the first
     * admit_keys_len bytes), until the batch call is built (admit.c). */
    struct hbuf admit_req;
    size_t admit_keys_len;
    struct delivery *admit_next;   /* the next job of its admission batch */
    uint32_t lease_req;            /* tenant-rate slots asked for with the admission */
    const char *alignment;         /* align_outcome_name(): how From alignment was handled */
    bool built;                    /* job.wire holds the signed message */
    char return_path[320];         /* MAIL FROM b+<token>@<return_path> (verp.c) */
    /* A job with a future send_at, admitted only to claim its id, apply
     * `replaces` and meet an early cancel before it is scheduled: no caps
     * or rates are counted (that happens when it is due). */
    bool schedule_only;
    enum park_reason parked_as;    /* how the last defer parked it (for the retry hash) */
    struct stats_row *tenant_row;  /* counted in its in_flight while held */
    uint64_t site_hash;            /* the destination site (its exchangers), route.c */
    char site[96];                 /* its label, for status and logs */
    struct pool_target *targets;   /* addresses in the order to try them */
    size_t n_targets, target_i;
    /* The path chosen by route.c, kept while QUEUED for the send. */
    struct throttle_pair *pair;
    struct hold_queue *queued_on;
    struct fairq_node qnode;
    struct pool_target target;
    struct pool_limits lim;
    const char *ip, *ehlo;
};

const char *delivery_state_name(enum delivery_state s);
/* Whether the state machine allows from -> to (pure; unit-tested). */
bool delivery_transition_ok(enum delivery_state from, enum delivery_state to);
/* The one place a delivery changes state: checks the transition (an illegal
 * one is a bug: logged at error and aborted in debug builds) and logs it
 * at trace level. */
void delivery_set_state(struct delivery *d, enum delivery_state to);

/* A delivery for a freshly read entry, linked on w->held (DECODING), or
 * NULL when out of memory. */
struct delivery *delivery_new(struct worker *w);
/* The one exit. Unlinks d from whatever holds it, marks it DONE and queues
 * it for delivery_reap; d must not be touched by the caller afterwards. */
void delivery_exit(struct delivery *d, enum delivery_exit_why why);
/* Free what left since the last call (from the worker loop, outside every
 * handler) and let intake read more. */
void delivery_reap(struct worker *w);
/* Shutdown: every delivery still held leaves (pending in Redis) and the
 * free list is emptied. */
void delivery_free_all(struct worker *w);

/* The job's id for logs and notes: the caller's, else its stream entry. */
static inline const char *delivery_job_id(const struct delivery *d)
{
    return d->job.id ? d->job.id : d->job.stream_id;
}

/* A raw field of the job's stream entry by name (internal fields such as
 * `admitted` are not parsed into struct job), or NULL. */
const char *delivery_job_field(const struct job *j, const char *name);

#endif
