/* What an attempt's result means for the job (outcome.h), with the clock
 * and the rng passed in: the retry schedule and its jitter, and each
 * decision outcome_decide makes. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "herald/core.h"
#include "engine/outcome.h"

#define NOW 1733140000000LL /* any wall-clock ms */
#define MIN 60000LL

static int64_t schedule[] = {1 * MIN, 5 * MIN, 15 * MIN, 60 * MIN};
static struct cfg_delivery dc = {
    .retry_ms = schedule, .n_retry = HERALD_ARRAY_LEN(schedule), .max_age_ms = 2 * 24 * 60 * MIN};

static struct smtp_result result(enum smtp_outcome o, enum smtp_stage st, int code)
{
    struct smtp_result r;
    memset(&r, 0, sizeof r);
    r.outcome = o;
    r.stage = st;
    r.code = code;
    snprintf(r.reply, sizeof r.reply, "%d test reply", code);
    return r;
}

/* Due time of the attempt after `attempt` with a fresh rng from seed. */
static int64_t due_of(const struct cfg_delivery *c, uint32_t attempt, bool grey, uint64_t seed)
{
    uint64_t rng = seed;
    return outcome_retry_due(c, attempt, grey, NOW, &rng);
}

/* The step and a jitter of at most a tenth of it. */
static bool within(int64_t due, int64_t step)
{
    return due >= NOW + step && due <= NOW + step + step / 10;
}

static void test_schedule(void)
{
    for (uint64_t seed = 1; seed <= 50; seed++) {
        CHECK(within(due_of(&dc, 1, false, seed), 1 * MIN));
        CHECK(within(due_of(&dc, 2, false, seed), 5 * MIN));
        CHECK(within(due_of(&dc, 3, false, seed), 15 * MIN));
        CHECK(within(due_of(&dc, 4, false, seed), 60 * MIN));
        /* Past the schedule its last step repeats. */
        CHECK(within(due_of(&dc, 5, false, seed), 60 * MIN));
        CHECK(within(due_of(&dc, 1000, false, seed), 60 * MIN));
        CHECK(within(due_of(&dc, UINT32_MAX, false, seed), 60 * MIN));
        /* Attempt 0 (never counted) takes the first step. */
        CHECK(within(due_of(&dc, 0, false, seed), 1 * MIN));
        /* Greylisting always takes the first step. */
        CHECK(within(due_of(&dc, 1, true, seed), 1 * MIN));
        CHECK(within(due_of(&dc, 3, true, seed), 1 * MIN));
        CHECK(within(due_of(&dc, 1000, true, seed), 1 * MIN));
    }
    /* No schedule: a minute. */
    struct cfg_delivery none = {.retry_ms = NULL, .n_retry = 0};
    CHECK(within(due_of(&none, 1, false, 7), 1 * MIN));
    CHECK(within(due_of(&none, 9, false, 7), 1 * MIN));
    /* One step only: it is every step. */
    int64_t one[] = {7 * MIN};
    struct cfg_delivery single = {.retry_ms = one, .n_retry = 1};
    CHECK(within(due_of(&single, 1, false, 7), 7 * MIN));
    CHECK(within(due_of(&single, 6, false, 7), 7 * MIN));
}

static void test_jitter(void)
{
    /* The same seed and inputs give the same due time and the same next
     * rng state; the rng moves on. */
    uint64_t a = 42, b = 42;
    int64_t da = outcome_retry_due(&dc, 2, false, NOW, &a);
    int64_t db = outcome_retry_due(&dc, 2, false, NOW, &b);
    CHECK_EQ_INT(da, db);
    CHECK(a == b);
    CHECK(a != 42);
    /* Two seeds, same inputs: different times (jobs deferred together do
     * not return together). */
    CHECK(due_of(&dc, 2, false, 1) != due_of(&dc, 2, false, 2));
    /* Successive calls on one rng differ too. */
    uint64_t r = 9;
    int64_t d1 = outcome_retry_due(&dc, 2, false, NOW, &r);
    int64_t d2 = outcome_retry_due(&dc, 2, false, NOW, &r);
    CHECK(d1 != d2);
    /* Over many seeds the jitter stays in [0, step/10] and uses that
     * range: both ends are approached and many values occur. */
    int64_t step = 5 * MIN, lo = step, hi = -1;
    size_t distinct = 0;
    static unsigned char seen[5 * 60000 / 10 + 1];
    memset(seen, 0, sizeof seen);
    for (uint64_t seed = 0; seed < 20000; seed++) {
        int64_t j = due_of(&dc, 2, false, seed * 0x9e3779b97f4a7c15ULL) - NOW - step;
        CHECK(j >= 0 && j <= step / 10);
        if (j < 0 || j > step / 10) continue;
        if (j < lo) lo = j;
        if (j > hi) hi = j;
        if (!seen[j]) {
            seen[j] = 1;
            distinct++;
        }
    }
    CHECK(lo < step / 100);
    CHECK(hi > step / 10 - step / 100);
    CHECK(distinct > 5000);
    /* A step under ten ms has no jitter at all. */
    int64_t tiny[] = {9};
    struct cfg_delivery t = {.retry_ms = tiny, .n_retry = 1};
    for (uint64_t seed = 0; seed < 100; seed++)
        CHECK_EQ_INT(due_of(&t, 1, false, seed), NOW + 9);
    /* The rng itself: deterministic, 31 bits, not stuck. */
    uint64_t x = 5, y = 5;
    uint64_t prev = outcome_rng_next(&x);
    CHECK(prev == outcome_rng_next(&y));
    for (int i = 0; i < 1000; i++) {
        uint64_t v = outcome_rng_next(&x);
        CHECK(v < (1ULL << 31));
        CHECK(v != prev);
        prev = v;
    }
}

/* A base input: attempt 1, no expiry, enqueued just now, more targets. */
static struct outcome_in in_of(const struct smtp_result *res, const char *cat)
{
    struct outcome_in in = {
        .res = res,
        .category = cat,
        .attempt = 1,
        .expires_at_ms = 0,
        .enqueued_ms = NOW,
        .max_age_ms = dc.max_age_ms,
        .more_targets = true,
        .draining = false,
    };
    return in;
}

static struct outcome decide(const struct outcome_in *in, uint64_t seed)
{
    struct outcome oc;
    memset(&oc, 0x5a, sizeof oc);
    uint64_t rng = seed;
    outcome_decide(&dc, in, NOW, &rng, &oc);
    return oc;
}

static void test_decide_delivered_bounced(void)
{
    struct smtp_result ok = result(SMTP_OUT_OK, SMTP_STAGE_BODY, 250);
    struct outcome_in in = in_of(&ok, "other");
    struct outcome oc = decide(&in, 1);
    CHECK_EQ_INT(oc.kind, OC_DELIVERED);
    CHECK(!oc.suppress);
    CHECK_EQ_INT(oc.due_ms, 0);
    in.attempt = 99;
    in.expires_at_ms = NOW - 1; /* delivered is delivered, whatever the clock says */
    in.draining = true;
    CHECK_EQ_INT(decide(&in, 1).kind, OC_DELIVERED);

    struct smtp_result r550 = result(SMTP_OUT_PERMFAIL, SMTP_STAGE_RCPT, 550);
    in = in_of(&r550, "bad-mailbox");
    oc = decide(&in, 1);
    CHECK_EQ_INT(oc.kind, OC_BOUNCED);
    CHECK(oc.suppress);
    in.category = "bad-domain";
    oc = decide(&in, 1);
    CHECK_EQ_INT(oc.kind, OC_BOUNCED);
    CHECK(oc.suppress);
    const char *keep[] = {"policy", "spam-block", "quota", "other", "greylist", ""};
    for (size_t i = 0; i < HERALD_ARRAY_LEN(keep); i++) {
        in.category = keep[i];
        oc = decide(&in, 1);
        CHECK_EQ_INT(oc.kind, OC_BOUNCED);
        CHECK(!oc.suppress); /* the mailbox exists: only a message was refused */
    }
    /* A 5xx inside the transaction bounces even with more exchangers left
     * and when draining. */
    in.category = "policy";
    in.more_targets = true;
    in.draining = true;
    CHECK_EQ_INT(decide(&in, 1).kind, OC_BOUNCED);
    struct smtp_result body554 = result(SMTP_OUT_PERMFAIL, SMTP_STAGE_BODY, 554);
    in = in_of(&body554, "spam-block");
    CHECK_EQ_INT(decide(&in, 1).kind, OC_BOUNCED);
}

static void test_decide_failover(void)
{
    /* 421 at the banner: the exchanger never took part. */
    struct smtp_result r421 = result(SMTP_OUT_TEMPFAIL, SMTP_STAGE_BANNER, 421);
    struct outcome_in in = in_of(&r421, "other");
    CHECK_EQ_INT(decide(&in, 1).kind, OC_FAILOVER);
    in.more_targets = false;
    struct outcome oc = decide(&in, 1);
    CHECK_EQ_INT(oc.kind, OC_RETRY);
    CHECK(within(oc.due_ms, 1 * MIN));
    /* Draining: no new connection to the next exchanger. */
    in.more_targets = true;
    in.draining = true;
    oc = decide(&in, 1);
    CHECK_EQ_INT(oc.kind, OC_RETRY);
    CHECK(within(oc.due_ms, 1 * MIN));

    /* Every pre-transaction stage fails over, whatever the failure. */
    const enum smtp_stage pre[] = {SMTP_STAGE_CONNECT, SMTP_STAGE_BANNER, SMTP_STAGE_EHLO,
                                   SMTP_STAGE_TLS};
    const enum smtp_outcome bad[] = {SMTP_OUT_TEMPFAIL, SMTP_OUT_PERMFAIL, SMTP_OUT_NETFAIL};
    for (size_t s = 0; s < HERALD_ARRAY_LEN(pre); s++)
        for (size_t o = 0; o < HERALD_ARRAY_LEN(bad); o++) {
            struct smtp_result r = result(bad[o], pre[s], bad[o] == SMTP_OUT_NETFAIL ? 0 : 554);
            CHECK(outcome_connection_level(&r));
            struct outcome_in i2 = in_of(&r, "other");
            CHECK_EQ_INT(decide(&i2, 1).kind, OC_FAILOVER);
        }
    /* A 554 banner with no exchanger left bounces. */
    struct smtp_result b554 = result(SMTP_OUT_PERMFAIL, SMTP_STAGE_BANNER, 554);
    in = in_of(&b554, "policy");
    in.more_targets = false;
    CHECK_EQ_INT(decide(&in, 1).kind, OC_BOUNCED);

    /* Inside the transaction (AUTH onwards) nothing fails over: the server
     * took part and answered for this message. */
    const enum smtp_stage txn[] = {SMTP_STAGE_AUTH, SMTP_STAGE_MAIL, SMTP_STAGE_RCPT,
                                   SMTP_STAGE_DATA, SMTP_STAGE_BODY, SMTP_STAGE_RSET,
                                   SMTP_STAGE_IDLE, SMTP_STAGE_QUIT};
    for (size_t s = 0; s < HERALD_ARRAY_LEN(txn); s++) {
        struct smtp_result r = result(SMTP_OUT_TEMPFAIL, txn[s], 451);
        CHECK(!outcome_connection_level(&r));
        struct outcome_in i2 = in_of(&r, "other");
        oc = decide(&i2, 1);
        CHECK_EQ_INT(oc.kind, OC_RETRY);
        CHECK(within(oc.due_ms, 1 * MIN));
        r.outcome = SMTP_OUT_NETFAIL; /* a drop mid-DATA: retry, not the next MX */
        CHECK_EQ_INT(decide(&i2, 1).kind, OC_RETRY);
    }
    /* A success is never "connection level". */
    for (int s = 0; s < SMTP_STAGE_COUNT; s++) {
        struct smtp_result r = result(SMTP_OUT_OK, (enum smtp_stage)s, 250);
        CHECK(!outcome_connection_level(&r));
    }
}

static void test_decide_retry_expiry_age(void)
{
    struct smtp_result r451 = result(SMTP_OUT_TEMPFAIL, SMTP_STAGE_RCPT, 451);
    struct outcome_in in = in_of(&r451, "other");
    /* The decision's due time is the schedule's, same rng. */
    for (uint32_t a = 1; a <= 6; a++) {
        in.attempt = a;
        struct outcome oc = decide(&in, 77);
        CHECK_EQ_INT(oc.kind, OC_RETRY);
        CHECK_EQ_INT(oc.due_ms, due_of(&dc, a, false, 77));
        CHECK(!oc.suppress);
    }
    /* Greylisting comes back after the first step, whatever the attempt. */
    in.attempt = 4;
    in.category = "greylist";
    CHECK(within(decide(&in, 77).due_ms, 1 * MIN));
    in.category = "other";
    CHECK(within(decide(&in, 77).due_ms, 60 * MIN));

    /* Expiry: the next attempt at or after expires_at ends the job now. */
    in = in_of(&r451, "other");
    int64_t due = due_of(&dc, 1, false, 5);
    in.expires_at_ms = NOW + 30000; /* before even the step */
    CHECK_EQ_INT(decide(&in, 5).kind, OC_EXPIRED);
    in.expires_at_ms = due;
    CHECK_EQ_INT(decide(&in, 5).kind, OC_EXPIRED);
    in.expires_at_ms = due + 1;
    struct outcome oc = decide(&in, 5);
    CHECK_EQ_INT(oc.kind, OC_RETRY);
    CHECK_EQ_INT(oc.due_ms, due);
    in.expires_at_ms = 0; /* none */
    CHECK_EQ_INT(decide(&in, 5).kind, OC_RETRY);
    /* A connection failure with no exchanger left expires the same way. */
    struct smtp_result conn = result(SMTP_OUT_NETFAIL, SMTP_STAGE_CONNECT, 0);
    struct outcome_in ci = in_of(&conn, "other");
    ci.more_targets = false;
    ci.expires_at_ms = NOW + 1000;
    CHECK_EQ_INT(decide(&ci, 5).kind, OC_EXPIRED);

    /* Max age: the next attempt would be later than enqueued + max age. */
    in = in_of(&r451, "other");
    in.enqueued_ms = due - in.max_age_ms; /* exactly at the limit: still goes */
    CHECK_EQ_INT(decide(&in, 5).kind, OC_RETRY);
    in.enqueued_ms = due - in.max_age_ms - 1;
    oc = decide(&in, 5);
    CHECK_EQ_INT(oc.kind, OC_GAVE_UP);
    CHECK(!oc.suppress);
    in.enqueued_ms = NOW - 3 * 24 * 60 * MIN; /* three days old, two allowed */
    CHECK_EQ_INT(decide(&in, 5).kind, OC_GAVE_UP);
    in.enqueued_ms = 0; /* unknown: no age limit */
    CHECK_EQ_INT(decide(&in, 5).kind, OC_RETRY);
    /* Both limits passed: expiry is what the job reports. */
    in.enqueued_ms = NOW - 3 * 24 * 60 * MIN;
    in.expires_at_ms = NOW + 1;
    CHECK_EQ_INT(decide(&in, 5).kind, OC_EXPIRED);
    /* A bounce is a bounce even past both. */
    struct smtp_result r550 = result(SMTP_OUT_PERMFAIL, SMTP_STAGE_RCPT, 550);
    in.res = &r550;
    CHECK_EQ_INT(decide(&in, 5).kind, OC_BOUNCED);
}

int main(void)
{
    test_schedule();
    test_jitter();
    test_decide_delivered_bounced();
    test_decide_failover();
    test_decide_retry_expiry_age();
    return check_report("test_outcome");
}
