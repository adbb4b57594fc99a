/* The shaping decision (include/herald/shape.h). The order of the checks
 * is the order of their cost to the receiver and to us: a suspended path
 * or a capped IP parks at once; a path with a free slot and nobody queued
 * goes; otherwise the message queues for its slot, unless its class has
 * its share of the in-memory horizon already, then it parks until about
 * when its turn would come. */
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

int64_t shape_park_due(const struct shape_input *in)
{
    double gap_ms = in->class_per_s > 0 ? 1000.0 / in->class_per_s : 60000;
    int64_t first = in->now_wall_ms + in->horizon_ms / 2;
    int64_t next = in->class_last_park_ms > 0 ? in->class_last_park_ms + (int64_t)gap_ms : 0;
    int64_t due = next > first ? next : first;
    return due > in->now_wall_ms + MAX_PARK_MS ? in->now_wall_ms + MAX_PARK_MS : due;
}

static bool path_closed(const struct shape_input *in, struct shape_verdict *out)
{
    if (in->suspended_until_ms > in->now_wall_ms) {
        *out = (struct shape_verdict){SHAPE_PARK, SHAPE_R_SUSPENDED, in->suspended_until_ms};
        return true;
    }
    if (in->warmup_cap >= 0 && in->warmup_sent >= in->warmup_cap) {
        *out = (struct shape_verdict){SHAPE_PARK, SHAPE_R_WARMUP, in->warmup_retry_ms};
        return true;
    }
    return false;
}

void shape_decide(const struct shape_input *in, struct shape_verdict *out)
{
    if (path_closed(in, out))
        return;
    if (in->rated && in->no_connection) {
        *out = (struct shape_verdict){SHAPE_WAIT, SHAPE_R_CONNECTIONS, in->now_mono_ms + 10};
        return;
    }
    if (!in->rated || (in->queued == 0 && in->rate_wait_ms <= 0)) {
        *out = (struct shape_verdict){SHAPE_GO, SHAPE_R_NONE, 0};
        return;
    }
    enum shape_reason why = in->class_share < 1.0 ? SHAPE_R_TENANT_SHARE : SHAPE_R_RATE;
    if ((double)in->class_queued >= in->class_cap) {
        *out = (struct shape_verdict){SHAPE_PARK, why, shape_park_due(in)};
        return;
    }
    *out = (struct shape_verdict){SHAPE_WAIT, why, in->now_mono_ms + in->rate_wait_ms};
}

void shape_decide_head(const struct shape_input *in, struct shape_verdict *out)
{
    if (path_closed(in, out))
        return;
    if (in->rated && in->no_connection) {
        *out = (struct shape_verdict){SHAPE_WAIT, SHAPE_R_CONNECTIONS, in->now_mono_ms + 10};
        return;
    }
    if (in->rated && in->rate_wait_ms > 0) {
        *out = (struct shape_verdict){SHAPE_WAIT, SHAPE_R_RATE, in->now_mono_ms + in->rate_wait_ms};
        return;
    }
    *out = (struct shape_verdict){SHAPE_GO, SHAPE_R_NONE, 0};
}

void shape_from_admission(bool recipient_cap, int64_t wait_ms, int64_t now_wall_ms,
                          struct shape_verdict *out)
{
    *out = (struct shape_verdict){SHAPE_PARK,
                                  recipient_cap ? SHAPE_R_RECIPIENT_CAP : SHAPE_R_TENANT_RATE,
                                  now_wall_ms + (wait_ms > 0 ? wait_ms : 0)};
}
