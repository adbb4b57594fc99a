/* shape: the one decision of traffic shaping. For a message on a path
 * (egress IP x provider or site), given everything the path's limits say
 * right now, decide: go now, wait in memory for the path's next slot, or
 * park in the retry set until a given time, and why. Pure: the caller
 * gathers the state (throttle pair, warm-up count, hold queue) and passes
 * the clock in; nothing here reads a clock, takes a lock or does I/O, so
 * the engine, `herald simulate` and the tests run the same code. */
#ifndef HERALD_SHAPE_H
#define HERALD_SHAPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum shape_kind {
    SHAPE_GO,   /* send now (the caller takes the slot) */
    SHAPE_WAIT, /* wait in memory for the path's next slot */
    SHAPE_PARK, /* back to the retry set until `until_ms` (wall), no attempt used */
};

/* Why a message does not go now. The first ones are decided here; the
 * last two are admission's (Redis, shared by every process) and reach the
 * same vocabulary through shape_from_admission. */
enum shape_reason {
    SHAPE_R_NONE,
    SHAPE_R_SUSPENDED,     /* a reputation rule suspended the path */
    SHAPE_R_WARMUP,        /* the egress IP reached today's warm-up cap */
    SHAPE_R_RATE,          /* the path's rate: its next slot is not yet due */
    SHAPE_R_TENANT_SHARE,  /* other tenants or lanes are owed the path's slots first */
    SHAPE_R_CONNECTIONS,   /* every connection the path may open is busy (the pool) */
    SHAPE_R_RECIPIENT_CAP, /* the recipient's cap (admission) */
    SHAPE_R_TENANT_RATE,   /* the tenant's own rate (admission) */
    SHAPE_R_COUNT
};
const char *shape_reason_name(enum shape_reason r);

struct shape_verdict {
    enum shape_kind kind;
    enum shape_reason reason;
    int64_t until_ms; /* PARK: wall clock; WAIT: an estimate, monotonic */
};

/* What one path's limits say now, for one message. */
struct shape_input {
    int64_t now_wall_ms, now_mono_ms;
    int64_t suspended_until_ms; /* wall; <= now: not suspended */
    int64_t warmup_cap;         /* today's cap for the egress IP; < 0: none */
    int64_t warmup_sent;        /* sent today from it */
    int64_t warmup_retry_ms;    /* PARK time for a capped IP (next UTC day + jitter) */
    bool rated;                 /* the path has a rate */
    int64_t rate_wait_ms;       /* how long until its next slot (0: one is free) */
    size_t queued;              /* messages already waiting in memory for the path */
    /* The message's class (tenant x priority) in the path's fair queue. */
    size_t class_queued;        /* of `queued`, its class's */
    double class_cap;           /* how many of its class may wait in memory */
    double class_share;         /* its class's share of the path's slots, (0, 1] */
    double class_per_s;         /* that share as a rate */
    int64_t class_last_park_ms; /* due time of the class's last parked message (0: none) */
    int64_t horizon_ms;         /* how much sending the in-memory queue holds */
    bool no_connection;         /* the path may open none now (other processes hold them) */
};

/* The decision for a message arriving at the path. */
void shape_decide(const struct shape_input *in, struct shape_verdict *out);
/* The same for the message at the head of the path's queue when its
 * timer fires (its class's turn has come: no share check). */
void shape_decide_head(const struct shape_input *in, struct shape_verdict *out);
/* When a message parked for the horizon should come back: one class
 * service interval after the class's last one, and not before half a
 * horizon from now, so returns arrive spread out while the queue still
 * has work, never all at once after it ran dry. */
int64_t shape_park_due(const struct shape_input *in);

/* Admission's WAIT as a shaping verdict (PARK until now + wait). */
void shape_from_admission(bool recipient_cap, int64_t wait_ms, int64_t now_wall_ms,
                          struct shape_verdict *out);

#endif
