/* A path's rate state as the shaping decision sees it (throttle.h,
 * throttle_shape_rate): the one copy of how the in-memory horizon is
 * shared among the classes of a pair's queue. */
#include <string.h>

#include "herald/fairq.h"
#include "herald/job.h"
#include "herald/throttle.h"

double throttle_class_weight(uint32_t tenant_weight, int priority)
{
    double lane = priority == JOB_PRIO_HIGH ? 4.0 : priority == JOB_PRIO_BULK ? 1.0 : 2.0;
    return (tenant_weight ? tenant_weight : 1) * lane;
}

void throttle_shape_rate(struct shape_input *in, const struct throttle_pair *pair,
                         const struct cfg_rate *rate, struct fairq *q, const char *class_key,
                         double class_weight, double horizon_s, uint32_t max_inflight)
{
    in->horizon_ms = (int64_t)(horizon_s * 1000);
    in->rated = q && rate && rate->count && rate->window_s;
    if (!in->rated) return;
    int64_t wait_us = throttle_peek(pair, rate, in->now_mono_ms * 1000);
    in->rate_wait_ms = (wait_us + 999) / 1000;
    in->queued = fairq_len(q);
    if (!class_key) return;
    /* The class may keep its share of the in-memory horizon, counted at the
     * pair's whole rate (the slots are shared by the workers and taken by
     * whichever has work, so the worker that read most of a backlog keeps
     * it), and never more than half of what the worker may hold, so intake
     * keeps reading past a backlog: a newly active class must be seen to
     * get its share. Beyond that it waits in the retry set. */
    double per_s = (double)rate->count / (double)rate->window_s * throttle_factor(pair);
    in->class_share = fairq_share(q, class_key, class_weight);
    double cap = horizon_s * per_s;
    if (cap > max_inflight / 2.0) cap = max_inflight / 2.0;
    cap *= in->class_share;
    in->class_cap = cap < 4 ? 4 : cap;
    in->class_queued = fairq_class_len(q, class_key);
    in->class_per_s = per_s * in->class_share;
    struct fairq_class *c = fairq_class_get(q, class_key);
    in->class_last_park_ms = c ? c->owner_ms : 0;
}
