/* The shaping decision (include/herald/shape.h). The order of the checks
 * is the order of their cost to the receiver and to us: a suspended path
 * or a capped IP parks at once; a path with a free slot and nobody queued
 * goes; otherwise the message queues for its slot, unless its class has
 * its share of the in-memory horizon already, then it parks until about
 * when its turn would come. What a congested path (its connections do not
 * keep up: a tarpit, a slow exchanger) holds beyond a few messages per
 * connection goes back to the retry set on the worker's tick
 * (shape_conn_excess), so one site's backlog never fills a worker's memory
 * while other sites' connections stand idle. */
#include "herald/shape.h"

static const char *const reason_names[SHAPE_R_COUNT] = {
    [SHAPE_R_NONE] = "none",
    [SHAPE_R_SUSPENDED] = "suspended",
    [SHAPE_R_WARMUP] = "warmup",
    [SHAPE_R_RATE] = "rate",
    [SHAPE_R_TENANT_SHARE] = "tenant-share",
    [SHAPE_R_CONNECTIONS] = "connections",
    [SHAPE_R_RECIPIENT_CAP] = "recipient-cap",
    [SHAPE_R_TENANT_RATE] = "tenant-rate",
};

const char *shape_reason_name(enum shape_reason r)
{
    return (unsigned)r < SHAPE_R_COUNT ? reason_names[r] : "?";
}

#define MAX_PARK_MS (3600LL * 1000)

int64_t shape_park_due_us(const struct shape_input *in)
{
    int64_t now_us = in->now_wall_ms * 1000;
    int64_t gap_us = in->class_per_s > 0 ? (int64_t)(1e6 / in->class_per_s) : 60000000;
    if (gap_us < 1)
        gap_us = 1;
    int64_t first = now_us + in->horizon_ms * 500;
    int64_t next = in->class_last_park_us > 0 ? in->class_last_park_us + gap_us : 0;
    int64_t due = next > first ? next : first;
    return due > now_us + MAX_PARK_MS * 1000 ? now_us + MAX_PARK_MS * 1000 : due;
}

int64_t shape_park_due(const struct shape_input *in)
{
    return (shape_park_due_us(in) + 999) / 1000;
}

/* A PARK verdict on a schedule of returns. */
static void park_at(struct shape_verdict *out, enum shape_reason why, int64_t due_us)
{
    *out = (struct shape_verdict){SHAPE_PARK, why, (due_us + 999) / 1000, due_us};
}

bool shape_conn_congested(const struct shape_input *in)
{
    return in->conn_limit > 0 && in->conn_open > 0 &&
           in->conn_oldest_wait_ms > SHAPE_CONN_SLOW_MS &&
           in->conn_backlog >= 4 * (size_t)in->conn_limit + 4;
}

size_t shape_conn_excess(const struct shape_input *in)
{
    if (!shape_conn_congested(in))
        return 0;
    return in->conn_backlog - (4 * (size_t)in->conn_limit + 4);
}

int64_t shape_conn_park_due_us(const struct shape_input *in)
{
    int64_t now_us = in->now_wall_ms * 1000;
    int64_t gap_us = in->conn_backlog ? in->conn_oldest_wait_ms * 1000 / (int64_t)in->conn_backlog
                                      : 1000000;
    if (gap_us < 1)
        gap_us = 1;
    int64_t first = now_us + in->conn_oldest_wait_ms * 500;
    int64_t next = in->conn_last_park_us > 0 ? in->conn_last_park_us + gap_us : 0;
    int64_t due = next > first ? next : first;
    /* The drain estimate is only as good as the wait it is made from (a
     * path that just got its connections back has a long wait and a short
     * queue): never schedule further out than 4 x the present wait, so a
     * wrong estimate costs a second park, not an hour of idle connections. */
    int64_t latest = now_us + (4 * in->conn_oldest_wait_ms + 1000) * 1000;
    if (latest > now_us + MAX_PARK_MS * 1000)
        latest = now_us + MAX_PARK_MS * 1000;
    return due > latest ? latest : due;
}

static bool path_closed(const struct shape_input *in, struct shape_verdict *out)
{
    if (in->suspended_until_ms > in->now_wall_ms) {
        *out = (struct shape_verdict){SHAPE_PARK, SHAPE_R_SUSPENDED, in->suspended_until_ms, 0};
        return true;
    }
    if (in->warmup_cap >= 0 && in->warmup_sent >= in->warmup_cap) {
        *out = (struct shape_verdict){SHAPE_PARK, SHAPE_R_WARMUP, in->warmup_retry_ms, 0};
        return true;
    }
    return false;
}

void shape_decide(const struct shape_input *in, struct shape_verdict *out)
{
    if (path_closed(in, out))
        return;
    if (in->rated && in->no_connection) {
        /* The connections, not the rate, hold the path back: its class
         * still keeps no more than its share of the horizon in memory. */
        if ((double)in->class_queued >= in->class_cap && in->class_cap > 0)
            park_at(out, SHAPE_R_CONNECTIONS, shape_park_due_us(in));
        else
            *out = (struct shape_verdict){SHAPE_WAIT, SHAPE_R_CONNECTIONS, in->now_mono_ms + 10, 0};
        return;
    }
    if (!in->rated || (in->queued == 0 && in->rate_wait_ms <= 0)) {
        *out = (struct shape_verdict){SHAPE_GO, SHAPE_R_NONE, 0, 0};
        return;
    }
    enum shape_reason why = in->class_share < 1.0 ? SHAPE_R_TENANT_SHARE : SHAPE_R_RATE;
    if ((double)in->class_queued >= in->class_cap) {
        park_at(out, why, shape_park_due_us(in));
        return;
    }
    *out = (struct shape_verdict){SHAPE_WAIT, why, in->now_mono_ms + in->rate_wait_ms, 0};
}

void shape_decide_head(const struct shape_input *in, struct shape_verdict *out)
{
    if (path_closed(in, out))
        return;
    if (in->rated && in->no_connection) {
        *out = (struct shape_verdict){SHAPE_WAIT, SHAPE_R_CONNECTIONS, in->now_mono_ms + 10, 0};
        return;
    }
    if (in->rated && in->rate_wait_ms > 0) {
        *out = (struct shape_verdict){SHAPE_WAIT, SHAPE_R_RATE, in->now_mono_ms + in->rate_wait_ms, 0};
        return;
    }
    *out = (struct shape_verdict){SHAPE_GO, SHAPE_R_NONE, 0, 0};
}

void shape_from_admission(bool recipient_cap, int64_t wait_ms, int64_t now_wall_ms,
                          struct shape_verdict *out)
{
    *out = (struct shape_verdict){SHAPE_PARK,
                                  recipient_cap ? SHAPE_R_RECIPIENT_CAP : SHAPE_R_TENANT_RATE,
                                  now_wall_ms + (wait_ms > 0 ? wait_ms : 0), 0};
}
