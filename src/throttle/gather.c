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

static uint64_t class_hash(const char *key)
{
    uint64_t h = 1469598103934665603ULL;
    for (const char *c = key; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211ULL;
    return h ? h : 1;
}

/* The slot of a class: its own, else a free one it claims, else (all
 * taken by others) the one its hash names, shared. */
static size_t park_slot(struct throttle_pair *p, uint64_t h, bool claim)
{
    size_t home = (size_t)(h % THROTTLE_PARK_SLOTS);
    for (size_t i = 0; i < THROTTLE_PARK_SLOTS; i++) {
        size_t k = (home + i) % THROTTLE_PARK_SLOTS;
        uint64_t cur = atomic_load(&p->park_key[k]);
        if (cur == h)
            return k;
        if (cur == 0) {
            if (!claim)
                return THROTTLE_PARK_SLOTS;
            uint64_t zero = 0;
            if (atomic_compare_exchange_strong(&p->park_key[k], &zero, h) || zero == h)
                return k;
        }
    }
    return home;
}

int64_t throttle_park_last(const struct throttle_pair *p, const char *class_key)
{
    size_t k = park_slot((struct throttle_pair *)p, class_hash(class_key), false);
    return k < THROTTLE_PARK_SLOTS ? atomic_load(&p->park_due[k]) : 0;
}

void throttle_park_note(struct throttle_pair *p, const char *class_key, int64_t due_us)
{
    size_t k = park_slot(p, class_hash(class_key), true);
    int64_t cur = atomic_load(&p->park_due[k]);
    while (cur < due_us && !atomic_compare_exchange_weak(&p->park_due[k], &cur, due_us)) {
    }
}

void throttle_park_forget(struct throttle_pair *p)
{
    for (size_t k = 0; k < THROTTLE_PARK_SLOTS; k++)
        atomic_store(&p->park_due[k], 0);
}

void throttle_shape_rate(struct shape_input *in, const struct throttle_pair *pair,
                         const struct cfg_rate *rate, struct fairq *q, const char *class_key,
                         double class_weight, double horizon_s, uint32_t max_inflight,
                         uint32_t held)
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
     * get its share. Beyond that it waits in the retry set. `held`: the
     * jobs the worker holds now, on every path. */
    double per_s = (double)rate->count / (double)rate->window_s * throttle_factor(pair);
    in->class_share = fairq_share(q, class_key, class_weight);
    double cap = horizon_s * per_s;
    if (cap > max_inflight / 2.0) cap = max_inflight / 2.0;
    /* ... and grows by at most half of what the worker has free below
     * three quarters of its max_inflight: with many paths backlogged at
     * once (every site short of connections), their queues together must
     * still leave intake room to read past them. */
    double keep = max_inflight * 0.75; /* a quarter stays free for intake */
    double grow = held < keep ? (keep - held) / 2.0 : 0;
    if (cap > (double)in->queued + grow) cap = (double)in->queued + grow;
    cap *= in->class_share;
    in->class_cap = cap < 4 ? 4 : cap;
    in->class_queued = fairq_class_len(q, class_key);
    /* Parked messages come back spaced at the class's share of the whole
     * path, on one schedule per class shared by the workers: a schedule
     * per worker at the whole rate brought W workers' overflow back W
     * times too fast, to be parked again (a storm under a deep backlog),
     * and one at a worker's part of the rate too slowly when one worker
     * parked it all (two processes of two workers at 10/s: 6.2/s). */
    in->class_per_s = per_s * in->class_share;
    in->class_last_park_us = throttle_park_last(pair, class_key);
}
