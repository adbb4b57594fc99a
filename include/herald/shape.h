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
    int64_t park_us;  /* PARK on a schedule of returns: its place, wall us (0: none) */
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
    int64_t class_last_park_us; /* wall us: the class's last parked return (0: none) */
    int64_t horizon_ms;         /* how much sending the in-memory queue holds */
    bool no_connection;         /* the path may open none now (other processes hold them) */
    /* The connections, on every path (rated or not): this worker's
     * messages waiting for one of the path's connections, how long the
     * oldest of them has waited, how many the path may have open, and the
     * due time of the path's last message parked for connections. */
    size_t conn_backlog;
    int64_t conn_oldest_wait_ms;
    uint32_t conn_open;  /* this worker's connections of the path, open or opening */
    uint32_t conn_limit; /* 0: not known (not checked) */
    int64_t conn_last_park_us; /* wall us */
};

/* A path is congested when its connections do not keep up: it has some
 * open (none at all is another worker or process holding them, which the
 * pool's hand-over and the grants deal with), the oldest of its messages
 * waiting for one has waited longer than this, and more wait than a few
 * per connection. */
#define SHAPE_CONN_SLOW_MS 2000

/* The decision for a message arriving at the path. */
void shape_decide(const struct shape_input *in, struct shape_verdict *out);
/* The same for the message at the head of the path's queue when its
 * timer fires (its class's turn has come: no share check). */
void shape_decide_head(const struct shape_input *in, struct shape_verdict *out);
/* When a message parked for the horizon should come back (wall ms): one
 * class service interval after the class's last one, and not before half
 * a horizon from now, so returns arrive spread out while the queue still
 * has work, never all at once after it ran dry. */
int64_t shape_park_due(const struct shape_input *in);
/* The same in wall microseconds: the schedule's resolution (at 2000/s a
 * class's returns are half a millisecond apart). */
int64_t shape_park_due_us(const struct shape_input *in);
/* A congested path (shape_conn_congested) keeps a few messages per
 * connection in memory: how many of those waiting for a connection go
 * back to the retry set (the worker asks the pool every tick), and when
 * each should come back: spaced at the pool's drain rate (backlog over
 * the oldest's wait, by Little's law, measured not assumed), the first
 * about when what stays in memory will have drained, none later than
 * 4 x the present wait. */
bool shape_conn_congested(const struct shape_input *in);
size_t shape_conn_excess(const struct shape_input *in);
int64_t shape_conn_park_due_us(const struct shape_input *in);

/* Admission's WAIT as a shaping verdict (PARK until now + wait). */
void shape_from_admission(bool recipient_cap, int64_t wait_ms, int64_t now_wall_ms,
                          struct shape_verdict *out);

#endif
