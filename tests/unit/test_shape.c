/* The shaping decision (src/throttle/shape.c), with time passed in: every
 * limit's verdict and reason, their order, and the spacing of parked
 * returns. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "herald/shape.h"

#define NOW_WALL 1700000000000LL
#define NOW_MONO 5000000LL

/* A rated path with a free slot and nothing waiting. */
static struct shape_input base(void)
{
    struct shape_input in;
    memset(&in, 0, sizeof in);
    in.now_wall_ms = NOW_WALL;
    in.now_mono_ms = NOW_MONO;
    in.warmup_cap = -1;
    in.rated = true;
    in.class_cap = 100;
    in.class_share = 1.0;
    in.class_per_s = 10;
    in.horizon_ms = 10000;
    return in;
}

static void decide(const struct shape_input *in, struct shape_verdict *v)
{
    memset(v, 0xa5, sizeof *v);
    shape_decide(in, v);
}

static void test_go(void)
{
    struct shape_input in = base();
    struct shape_verdict v;
    decide(&in, &v);
    CHECK_EQ_INT(v.kind, SHAPE_GO);
    CHECK_EQ_INT(v.reason, SHAPE_R_NONE);
    /* No rate: go whatever waits. */
    in.rated = false;
    in.queued = 50;
    in.rate_wait_ms = 900;
    decide(&in, &v);
    CHECK_EQ_INT(v.kind, SHAPE_GO);
}

static void test_rate(void)
{
    struct shape_input in = base();
    struct shape_verdict v;
    in.rate_wait_ms = 250;
    decide(&in, &v);
    CHECK_EQ_INT(v.kind, SHAPE_WAIT);
    CHECK_EQ_INT(v.reason, SHAPE_R_RATE);
    CHECK_EQ_INT(v.until_ms, NOW_MONO + 250);
    /* A free slot but others queued first: wait behind them (FIFO by share). */
    in.rate_wait_ms = 0;
    in.queued = 3;
    in.class_queued = 3;
    decide(&in, &v);
    CHECK_EQ_INT(v.kind, SHAPE_WAIT);
    /* Other classes are owed the slots: the reason says so. */
    in.class_share = 0.5;
    decide(&in, &v);
    CHECK_EQ_INT(v.reason, SHAPE_R_TENANT_SHARE);
}

static void test_park_over_share(void)
{
    struct shape_input in = base();
    struct shape_verdict v;
    in.rate_wait_ms = 100;
    in.queued = 100;
    in.class_queued = 100; /* == cap */
    decide(&in, &v);
    CHECK_EQ_INT(v.kind, SHAPE_PARK);
    CHECK_EQ_INT(v.reason, SHAPE_R_RATE);
    /* First return half a horizon from now. */
    CHECK_EQ_INT(v.until_ms, NOW_WALL + 5000);
    /* The next ones one class interval (1/10 s) after the last. */
    in.class_last_park_us = v.park_us;
    decide(&in, &v);
    CHECK_EQ_INT(v.until_ms, NOW_WALL + 5100);
    in.class_last_park_us = v.park_us;
    in.class_per_s = 2; /* a smaller share: wider spacing */
    decide(&in, &v);
    CHECK_EQ_INT(v.until_ms, NOW_WALL + 5600);
    /* A stale last return (in the past) starts again at half a horizon. */
    in.class_last_park_us = (NOW_WALL - 60000) * 1000;
    decide(&in, &v);
    CHECK_EQ_INT(v.until_ms, NOW_WALL + 5000);
    /* Never more than an hour away. */
    in.class_last_park_us = (NOW_WALL + 7200 * 1000LL) * 1000;
    decide(&in, &v);
    CHECK_EQ_INT(v.until_ms, NOW_WALL + 3600 * 1000LL);
    /* Under the cap: it waits in memory. */
    in.class_queued = 99;
    decide(&in, &v);
    CHECK_EQ_INT(v.kind, SHAPE_WAIT);
}

/* Returns spaced at the class's rate hold that rate for a long backlog:
 * parking 1000 messages at 10/s spreads them over 100 s, one 100 ms apart. */
static void test_park_spacing_holds_rate(void)
{
    struct shape_input in = base();
    in.rate_wait_ms = 100;
    in.class_queued = 100;
    int64_t first = 0, last = 0;
    for (int i = 0; i < 1000; i++) {
        struct shape_verdict v;
        decide(&in, &v);
        CHECK_EQ_INT(v.kind, SHAPE_PARK);
        if (i == 0)
            first = v.until_ms;
        CHECK(v.until_ms >= last);
        last = v.until_ms;
        in.class_last_park_us = v.park_us;
    }
    CHECK_EQ_INT(last - first, 999 * 100);
}

/* The connections: a path whose oldest message has waited longer than
 * SHAPE_CONN_SLOW_MS for one, with more than 4 per connection (+4)
 * waiting and some connections open, gives back the surplus (rated or
 * not), spaced at the pool's measured drain. Arrivals are not parked by
 * it: the surplus goes on the next tick. */
static void test_congested(void)
{
    struct shape_input in = base();
    struct shape_verdict v;
    in.rated = false;
    in.conn_open = 5;
    in.conn_limit = 5;
    in.conn_backlog = 24;
    in.conn_oldest_wait_ms = 60000;
    CHECK(shape_conn_congested(&in));
    CHECK_EQ_INT(shape_conn_excess(&in), 0);
    decide(&in, &v);
    CHECK_EQ_INT(v.kind, SHAPE_GO);
    /* half the oldest's wait from now */
    CHECK_EQ_INT(shape_conn_park_due_us(&in), (NOW_WALL + 30000) * 1000);
    /* the next one the drain interval (60 s / 24 waiting) later */
    in.conn_last_park_us = (NOW_WALL + 30000) * 1000;
    CHECK_EQ_INT(shape_conn_park_due_us(&in), (NOW_WALL + 30000 + 2500) * 1000);
    /* a bigger backlog: the surplus goes back */
    in.conn_backlog = 100;
    CHECK_EQ_INT(shape_conn_excess(&in), 76);
    /* not slow yet, or few waiting: not congested */
    in.conn_oldest_wait_ms = SHAPE_CONN_SLOW_MS;
    CHECK(!shape_conn_congested(&in));
    CHECK_EQ_INT(shape_conn_excess(&in), 0);
    in.conn_oldest_wait_ms = 60000;
    in.conn_backlog = 23;
    CHECK(!shape_conn_congested(&in));
    /* no connection of its own: another worker or process holds them */
    in.conn_backlog = 1000;
    in.conn_open = 0;
    CHECK_EQ_INT(shape_conn_excess(&in), 0);
    in.conn_open = 5;
    /* a wait made from a path just back: never further than 4 x the wait */
    in.conn_backlog = 24;
    in.conn_oldest_wait_ms = 5000;
    in.conn_last_park_us = (NOW_WALL + 60000) * 1000;
    CHECK_EQ_INT(shape_conn_park_due_us(&in), (NOW_WALL + 21000) * 1000);
    /* limit unknown: not checked */
    in.conn_backlog = 1000;
    in.conn_limit = 0;
    CHECK_EQ_INT(shape_conn_excess(&in), 0);
}

/* A rated path whose connections hold it back (no_connection) still keeps
 * its class to its share in memory: beyond, it parks. */
static void test_no_connection_cap(void)
{
    struct shape_input in = base();
    struct shape_verdict v;
    in.no_connection = true;
    in.class_queued = 99;
    decide(&in, &v);
    CHECK_EQ_INT(v.kind, SHAPE_WAIT);
    CHECK_EQ_INT(v.reason, SHAPE_R_CONNECTIONS);
    in.class_queued = 100;
    decide(&in, &v);
    CHECK_EQ_INT(v.kind, SHAPE_PARK);
    CHECK_EQ_INT(v.reason, SHAPE_R_CONNECTIONS);
}

static void test_order(void)
{
    struct shape_input in = base();
    struct shape_verdict v;
    /* Suspension before everything, with its end as the return time. */
    in.suspended_until_ms = NOW_WALL + 30000;
    in.warmup_cap = 10;
    in.warmup_sent = 10;
    in.warmup_retry_ms = NOW_WALL + 86400000LL;
    in.rate_wait_ms = 100;
    decide(&in, &v);
    CHECK_EQ_INT(v.kind, SHAPE_PARK);
    CHECK_EQ_INT(v.reason, SHAPE_R_SUSPENDED);
    CHECK_EQ_INT(v.until_ms, NOW_WALL + 30000);
    /* A suspension that has ended is no reason. */
    in.suspended_until_ms = NOW_WALL;
    decide(&in, &v);
    CHECK_EQ_INT(v.reason, SHAPE_R_WARMUP);
    CHECK_EQ_INT(v.until_ms, NOW_WALL + 86400000LL);
    /* Under the warm-up cap: the rate decides. */
    in.warmup_sent = 9;
    decide(&in, &v);
    CHECK_EQ_INT(v.kind, SHAPE_WAIT);
    CHECK_EQ_INT(v.reason, SHAPE_R_RATE);
    /* A cap of 0 (day 0 of a schedule) closes the IP. */
    in.warmup_cap = 0;
    in.warmup_sent = 0;
    decide(&in, &v);
    CHECK_EQ_INT(v.reason, SHAPE_R_WARMUP);
}

static void test_head(void)
{
    struct shape_input in = base();
    struct shape_verdict v;
    /* The head of the queue has its turn: no share check, only the slot. */
    in.queued = 500;
    in.class_queued = 500;
    in.class_cap = 4;
    shape_decide_head(&in, &v);
    CHECK_EQ_INT(v.kind, SHAPE_GO);
    in.rate_wait_ms = 40;
    shape_decide_head(&in, &v);
    CHECK_EQ_INT(v.kind, SHAPE_WAIT);
    CHECK_EQ_INT(v.until_ms, NOW_MONO + 40);
    in.suspended_until_ms = NOW_WALL + 1;
    shape_decide_head(&in, &v);
    CHECK_EQ_INT(v.kind, SHAPE_PARK);
    CHECK_EQ_INT(v.reason, SHAPE_R_SUSPENDED);
}

static void test_admission(void)
{
    struct shape_verdict v;
    shape_from_admission(true, 1234, NOW_WALL, &v);
    CHECK_EQ_INT(v.kind, SHAPE_PARK);
    CHECK_EQ_INT(v.reason, SHAPE_R_RECIPIENT_CAP);
    CHECK_EQ_INT(v.until_ms, NOW_WALL + 1234);
    shape_from_admission(false, -5, NOW_WALL, &v);
    CHECK_EQ_INT(v.reason, SHAPE_R_TENANT_RATE);
    CHECK_EQ_INT(v.until_ms, NOW_WALL);
}

static void test_names(void)
{
    for (int r = 0; r < SHAPE_R_COUNT; r++)
        CHECK(strcmp(shape_reason_name((enum shape_reason)r), "?") != 0);
    CHECK_EQ_STR(shape_reason_name(SHAPE_R_COUNT), "?");
    CHECK_EQ_STR(shape_reason_name(SHAPE_R_TENANT_SHARE), "tenant-share");
}

int main(void)
{
    test_go();
    test_rate();
    test_park_over_share();
    test_park_spacing_holds_rate();
    test_congested();
    test_no_connection_cap();
    test_order();
    test_head();
    test_admission();
    test_names();
    return check_failures ? 1 : 0;
}
