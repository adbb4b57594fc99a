/* The delivery state machine (engine/delivery.h): the transitions the
 * stages make are legal and nothing else is; every walk through it ends in
 * DONE exactly once, and only DONE gives the delivery back to the pool. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "herald/core.h"
#include "engine/delivery.h"

/* Written out from the stage files, not from delivery.c's table: which
 * function moves a delivery from which state to which. */
struct edge {
    enum delivery_state from, to;
    const char *by;
};

static const struct edge expected[] = {
    {DS_FREE, DS_DECODING, "delivery_new"},
    /* intake: a readable job goes to admission; a bad one, a cancel entry
     * or a future send_at gets its note at once. */
    {DS_DECODING, DS_ADMITTING, "admit_send"},
    {DS_DECODING, DS_NOTING, "notes_reject / notes_cancel / notes_defer (send_at)"},
    /* The verdict: OK routes (DNS, or a static route straight to the
     * gate, which queues or sends); WAIT, CANCELLED, DUPLICATE and
     * SUPPRESSED write a note. */
    {DS_ADMITTING, DS_ROUTING, "route_dispatch (dns)"},
    {DS_ADMITTING, DS_QUEUED, "route_dispatch -> route_submit -> gate_submit (hold queue)"},
    {DS_ADMITTING, DS_SENDING, "route_dispatch -> route_submit -> send_now"},
    {DS_ADMITTING, DS_NOTING, "on_verdict / on_wait / outcome_local_fail"},
    {DS_ROUTING, DS_QUEUED, "on_mx / on_relay -> route_submit -> gate_submit"},
    {DS_ROUTING, DS_SENDING, "on_mx / on_relay -> route_submit -> send_now"},
    {DS_ROUTING, DS_NOTING, "on_mx bounce / outcome_local_fail / gate park"},
    {DS_QUEUED, DS_SENDING, "the hold queue's timer -> send_now"},
    {DS_QUEUED, DS_NOTING, "gate_reload recall / build rejected"},
    /* outcome_apply: a failover goes through the gate again. */
    {DS_SENDING, DS_QUEUED, "outcome_apply failover -> gate_submit"},
    {DS_SENDING, DS_SENDING, "outcome_apply failover -> send_now"},
    {DS_SENDING, DS_NOTING, "outcome_apply note"},
    {DS_NOTING, DS_NOTE_PARKED, "park_note (connection lost, NOSCRIPT)"},
    {DS_NOTE_PARKED, DS_NOTING, "notes_resend_parked -> note_send"},
    /* delivery_exit from every live state: the note answered (NOTING),
     * the note could not be formatted, or the entry is left pending
     * (shutdown, Redis away, admission failed) from wherever it was. */
    {DS_DECODING, DS_DONE, "delivery_exit"},
    {DS_ADMITTING, DS_DONE, "delivery_exit"},
    {DS_ROUTING, DS_DONE, "delivery_exit"},
    {DS_QUEUED, DS_DONE, "delivery_exit"},
    {DS_SENDING, DS_DONE, "delivery_exit"},
    {DS_NOTING, DS_DONE, "delivery_exit"},
    {DS_NOTE_PARKED, DS_DONE, "delivery_exit"},
    {DS_DONE, DS_FREE, "delivery_destroy (delivery_reap)"},
};

static bool expected_ok(enum delivery_state from, enum delivery_state to)
{
    for (size_t i = 0; i < HERALD_ARRAY_LEN(expected); i++)
        if (expected[i].from == from && expected[i].to == to) return true;
    return false;
}

static void test_table(void)
{
    for (int f = 0; f < DS_COUNT; f++)
        for (int t = 0; t < DS_COUNT; t++) {
            bool want = expected_ok(f, t);
            bool got = delivery_transition_ok(f, t);
            if (want != got)
                fprintf(stderr, "%s -> %s: delivery_transition_ok says %d, the stages %d\n",
                        delivery_state_name(f), delivery_state_name(t), got, want);
            CHECK_EQ_INT(got, want);
        }
    /* Out of range is never legal. */
    CHECK(!delivery_transition_ok(DS_COUNT, DS_DONE));
    CHECK(!delivery_transition_ok(DS_DONE, DS_COUNT));
    CHECK(!delivery_transition_ok((enum delivery_state) - 1, DS_FREE));
    CHECK(!delivery_transition_ok(DS_DECODING, (enum delivery_state)1000));
}

/* Only DONE goes to FREE, DONE goes nowhere else, FREE only starts one. */
static void test_exit_shape(void)
{
    for (int s = 0; s < DS_COUNT; s++) {
        CHECK_EQ_INT(delivery_transition_ok(s, DS_FREE), s == DS_DONE);
        CHECK_EQ_INT(delivery_transition_ok(DS_DONE, s), s == DS_FREE);
        CHECK_EQ_INT(delivery_transition_ok(DS_FREE, s), s == DS_DECODING);
        /* Every live state can leave (DX_LEFT from wherever it is). */
        if (s != DS_FREE && s != DS_DONE) CHECK(delivery_transition_ok(s, DS_DONE));
        /* Nothing goes back to before admission. */
        if (s != DS_FREE) CHECK(!delivery_transition_ok(s, DS_DECODING));
    }
}

static uint64_t rng_next(uint64_t *r)
{
    *r = *r * 6364136223846793005ULL + 1442695040888963407ULL;
    return *r >> 33;
}

#define WALKS     100000
#define MAX_STEPS 10000

/* Random walks of a delivery from delivery_new until it is back in the
 * pool, each step one of the legal moves (asked of
 * delivery_transition_ok): every walk passes DONE exactly once, only from
 * DONE does it go back to FREE, and every transition the stages make is
 * taken somewhere. */
static void test_walks(void)
{
    uint64_t rng = 0x5eed;
    static unsigned long used[DS_COUNT][DS_COUNT];
    memset(used, 0, sizeof used);
    unsigned long stuck = 0, unfinished = 0, not_once = 0, freed_live = 0;
    for (int w = 0; w < WALKS; w++) {
        enum delivery_state s = DS_FREE;
        int dones = 0, steps = 0;
        do {
            enum delivery_state next[DS_COUNT];
            int n = 0;
            for (int t = 0; t < DS_COUNT; t++)
                if (delivery_transition_ok(s, t)) next[n++] = t;
            if (n == 0) {
                stuck++;
                break;
            }
            enum delivery_state to = next[rng_next(&rng) % (uint64_t)n];
            /* Leaving is one move among the others; make it rarer so the
             * walks also go the long way round. */
            if (to == DS_DONE && n > 1 && rng_next(&rng) % 4 != 0)
                to = next[rng_next(&rng) % (uint64_t)n];
            if (to == DS_FREE && s != DS_DONE) freed_live++; /* given back without its one exit */
            used[s][to]++;
            dones += to == DS_DONE;
            s = to;
        } while (s != DS_FREE && ++steps < MAX_STEPS);
        if (s != DS_FREE)
            unfinished++;
        else if (dones != 1)
            not_once++;
    }
    CHECK_EQ_INT(stuck, 0);
    CHECK_EQ_INT(unfinished, 0);
    CHECK_EQ_INT(not_once, 0);
    CHECK_EQ_INT(freed_live, 0);
    CHECK_EQ_INT(used[DS_FREE][DS_DECODING], WALKS);
    CHECK_EQ_INT(used[DS_DONE][DS_FREE], WALKS);
    /* Every transition the stages make was walked. */
    for (size_t i = 0; i < HERALD_ARRAY_LEN(expected); i++) {
        if (!used[expected[i].from][expected[i].to])
            fprintf(stderr, "never walked: %s -> %s (%s)\n", delivery_state_name(expected[i].from),
                    delivery_state_name(expected[i].to), expected[i].by);
        CHECK(used[expected[i].from][expected[i].to] > 0);
    }
}

static void test_names(void)
{
    for (int s = 0; s < DS_COUNT; s++) {
        const char *n = delivery_state_name(s);
        CHECK(n != NULL);
        CHECK(n && n[0] != '\0' && strcmp(n, "?") != 0);
        for (int t = 0; t < s; t++) /* and each its own */
            CHECK(n && strcmp(n, delivery_state_name(t)) != 0);
    }
    CHECK_EQ_STR(delivery_state_name(DS_COUNT), "?");
    CHECK_EQ_STR(delivery_state_name((enum delivery_state) - 1), "?");
    CHECK_EQ_STR(delivery_state_name(DS_DONE), "done");
    CHECK_EQ_STR(delivery_state_name(DS_NOTE_PARKED), "note_parked");
}

int main(void)
{
    test_table();
    test_exit_shape();
    test_walks();
    test_names();
    return check_report("test_delivery_fsm");
}
