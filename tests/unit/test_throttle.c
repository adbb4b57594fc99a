/* The back-off (throttle_take / throttle_signal / throttle_tick) against a
 * simulated receiver with a hidden limit, in virtual time: herald is told
 * 200/s, the receiver takes 20 messages per wall-clock second and answers
 * 421 to the rest (like herald-sink --limit-rate 20). Asserted: within 30 s
 * refusals are under 20% of accepted messages and herald gets at least 80%
 * of the hidden limit through; once the limit is lifted the rate climbs
 * back to full within a few minutes; the floor reputation.min_rate holds;
 * the GCRA burst shrinks with the factor. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "herald/config.h"
#include "herald/throttle.h"

#define SIM_S_MAX  900
#define LATENCY_MS 3 /* each way */
#define FLIGHT_MAX 4096

struct flight {
    int64_t reply_ms;
    bool ok;
};

struct sim {
    struct throttle_pair p;
    struct cfg_rate rate;
    struct cfg_reputation rep;
    int limit_per_s; /* 0: no limit */
    bool refuse_all;
    int64_t limit_until_ms; /* 0: for ever */
    int64_t win_sec;
    int win_count;
    struct flight fl[FLIGHT_MAX];
    size_t fl_head, fl_len;
    int accepted[SIM_S_MAX], refused[SIM_S_MAX];
    double factor_at[SIM_S_MAX];
    int64_t now_ms;
};

static struct config *load_rep(const char *rep_yaml)
{
    char yaml[512], err[256] = "";
    snprintf(yaml, sizeof yaml, "reputation: %s\n", rep_yaml ? rep_yaml : "{}");
    struct config *cfg = NULL;
    if (config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof err) < 0) {
        fprintf(stderr, "config: %s\n", err);
        return NULL;
    }
    return cfg;
}

static void sim_init(struct sim *s, const struct config *cfg, int limit_per_s)
{
    memset(s, 0, sizeof *s);
    s->rate = (struct cfg_rate){.count = 200, .window_s = 1};
    s->rep = cfg->reputation;
    s->limit_per_s = limit_per_s;
    atomic_store(&s->p.factor_ppm, (int64_t)llround(cfg->reputation.max * 1e6));
    snprintf(s->p.provider, sizeof s->p.provider, "sim");
    s->now_ms = 1000000; /* monotonic clocks do not start at 0 */
}

/* The receiver: fixed windows of one second, like herald-sink. */
static bool receiver_takes(struct sim *s, int64_t at_ms)
{
    if (s->refuse_all) return false;
    if (s->limit_per_s == 0 || (s->limit_until_ms && at_ms >= s->limit_until_ms)) return true;
    int64_t sec = at_ms / 1000;
    if (sec != s->win_sec) {
        s->win_sec = sec;
        s->win_count = 0;
    }
    if (s->win_count >= s->limit_per_s) return false;
    s->win_count++;
    return true;
}

/* Run from now for `seconds` of virtual time with an endless queue,
 * recording per second (from t0) what the receiver accepted and refused. */
static void sim_run(struct sim *s, int64_t t0_ms, int seconds)
{
    int64_t end = s->now_ms + (int64_t)seconds * 1000;
    for (; s->now_ms < end; s->now_ms++) {
        int64_t now = s->now_ms;
        int idx = (int)((now - t0_ms) / 1000);
        while (s->fl_len && s->fl[s->fl_head].reply_ms <= now) {
            struct flight *f = &s->fl[s->fl_head];
            throttle_signal(&s->p, &s->rep, f->ok ? THROTTLE_OK : THROTTLE_BACKOFF, 0, now, now);
            s->fl_head = (s->fl_head + 1) % FLIGHT_MAX;
            s->fl_len--;
        }
        if (now % 200 == 0) throttle_tick(&s->p, &s->rep, now);
        while (s->fl_len < FLIGHT_MAX && throttle_take(&s->p, &s->rate, now * 1000, 0) == 0) {
            bool ok = receiver_takes(s, now + LATENCY_MS);
            if (idx >= 0 && idx < SIM_S_MAX) {
                if (ok)
                    s->accepted[idx]++;
                else
                    s->refused[idx]++;
            }
            struct flight *f = &s->fl[(s->fl_head + s->fl_len) % FLIGHT_MAX];
            f->reply_ms = now + 2 * LATENCY_MS;
            f->ok = ok;
            s->fl_len++;
        }
        if (idx >= 0 && idx < SIM_S_MAX) s->factor_at[idx] = throttle_factor(&s->p);
    }
}

struct window_stats {
    double accepted_per_s, refused_share;
};

static struct window_stats sim_window(const struct sim *s, int from_s, int to_s)
{
    long acc = 0, ref = 0;
    for (int i = from_s; i < to_s && i < SIM_S_MAX; i++) {
        acc += s->accepted[i];
        ref += s->refused[i];
    }
    struct window_stats w = {(double)acc / (to_s - from_s), acc ? (double)ref / (double)acc : 1.0};
    return w;
}

/* 60 virtual seconds against the hidden 20/s, with the given reputation. */
static void check_converges(const char *rep_yaml)
{
    struct config *cfg = load_rep(rep_yaml);
    CHECK(cfg != NULL);
    if (!cfg) return;
    static struct sim s;
    sim_init(&s, cfg, 20);
    int64_t t0 = s.now_ms;
    sim_run(&s, t0, 60);
    struct window_stats a = sim_window(&s, 20, 30), b = sim_window(&s, 30, 60);
    struct window_stats first = sim_window(&s, 0, 5);
    printf("reputation %s: 0-5 s %.1f/s accepted, 421s %.0f%%; 20-30 s %.1f/s, %.1f%%; "
           "30-60 s %.1f/s, %.1f%%; factor %.3f\n",
           rep_yaml ? rep_yaml : "{}", first.accepted_per_s, first.refused_share * 100,
           a.accepted_per_s, a.refused_share * 100, b.accepted_per_s, b.refused_share * 100,
           throttle_factor(&s.p));
    CHECK(a.refused_share < 0.20);
    CHECK(a.accepted_per_s >= 16.0);
    CHECK(b.refused_share < 0.20);
    CHECK(b.accepted_per_s >= 16.0);
    CHECK(a.accepted_per_s <= 20.0 && b.accepted_per_s <= 20.0);
    config_free(cfg);
}

/* The limit holds for 40 s, then the receiver takes everything: seconds
 * from the lift until herald sends at 150/s or more (of 200/s). */
static int recovery_s(const char *rep_yaml, int run_s)
{
    struct config *cfg = load_rep(rep_yaml);
    CHECK(cfg != NULL);
    if (!cfg) return -1;
    static struct sim s;
    sim_init(&s, cfg, 20);
    int64_t t0 = s.now_ms;
    s.limit_until_ms = t0 + 40000;
    sim_run(&s, t0, run_s);
    int back = -1;
    for (int i = 40; i < run_s && back < 0; i++)
        if (s.accepted[i] >= 150) back = i - 40;
    int last = s.accepted[run_s - 1];
    printf("reputation %s: limit lifted at 40 s, >= 150/s after %d s, full rate at the end: "
           "%d/s (factor %.2f)\n",
           rep_yaml ? rep_yaml : "{}", back, last, throttle_factor(&s.p));
    CHECK(last >= 190);
    config_free(cfg);
    return back;
}

static void test_recovery_defaults(void)
{
    /* With the defaults (interval 30s, +5% doubling) "a few minutes". */
    int back = recovery_s(NULL, 400);
    CHECK(back >= 0 && back <= 300);
}

static void test_recovery_short_interval(void)
{
    /* The integration test's reputation: interval 2s, so 15x faster. */
    int back = recovery_s("{ interval: 2s }", 120);
    CHECK(back >= 0 && back <= 30);
}

/* A receiver that refuses everything: the factor goes down to the floor,
 * min_rate / rate, and herald still sends at about min_rate. */
static void test_floor_min_rate(void)
{
    struct config *cfg = load_rep("{ min_rate: 6/m }");
    CHECK(cfg != NULL);
    if (!cfg) return;
    static struct sim s;
    sim_init(&s, cfg, 0);
    s.refuse_all = true;
    int64_t t0 = s.now_ms;
    sim_run(&s, t0, 600);
    double floor = throttle_floor(&s.p, &s.rep);
    CHECK(fabs(floor - 6.0 / 60.0 / 200.0) < 1e-6);
    CHECK(llabs(atomic_load(&s.p.factor_ppm) - (int64_t)llround(floor * 1e6)) <= 1);
    long sent = 0;
    for (int i = 300; i < 600; i++)
        sent += s.refused[i] + s.accepted[i];
    printf("refused everything: factor %.6f (floor %.6f), %ld sent over the last 5 min\n",
           throttle_factor(&s.p), floor, sent);
    CHECK(sent >= 25 && sent <= 35); /* 6/m over 5 minutes */
    config_free(cfg);

    /* The larger of the two: min 0.1 keeps 10% of the rate. */
    cfg = load_rep("{ min: 0.1, min_rate: 6/m }");
    CHECK(cfg != NULL);
    if (!cfg) return;
    CHECK(fabs(throttle_floor(&s.p, &cfg->reputation) - 0.1) < 1e-9);
    config_free(cfg);
    /* A pair that never had a rate keeps 1% (connections only). */
    struct throttle_pair fresh;
    memset(&fresh, 0, sizeof fresh);
    cfg = load_rep(NULL);
    if (cfg) {
        CHECK(fabs(throttle_floor(&fresh, &cfg->reputation) - 0.01) < 1e-9);
        config_free(cfg);
    }
}

/* After an idle spell a pair at factor 1 may send one second's worth at
 * once; at factor 0.1 a tenth of that of the scaled rate (20/s x 0.1 = 2). */
static void test_burst_shrinks(void)
{
    struct cfg_rate rate = {.count = 200, .window_s = 1};
    const double factors[] = {1.0, 0.5, 0.1, 0.01};
    const int want[] = {200, 50, 2, 1};
    for (size_t i = 0; i < sizeof factors / sizeof factors[0]; i++) {
        struct throttle_pair p;
        memset(&p, 0, sizeof p);
        atomic_store(&p.factor_ppm, (int64_t)llround(factors[i] * 1e6));
        int64_t now_us = 5000000000LL;
        int n = 0;
        while (n < 1000 && throttle_take(&p, &rate, now_us, 0) == 0)
            n++;
        CHECK(abs(n - want[i]) <= 1);
        if (abs(n - want[i]) > 1)
            fprintf(stderr, "factor %.2f: burst %d, want %d\n", factors[i], n, want[i]);
        CHECK_EQ_INT(atomic_load(&p.rate_micro_per_s), 200000000);
    }
}

/* A window of few replies cuts at most to decrease / 2; many replies with
 * a small share cut gently; one decrease per window, none while settling. */
static void test_decrease_rules(void)
{
    struct config *cfg = load_rep("{ decrease: 0.8 }");
    CHECK(cfg != NULL);
    if (!cfg) return;
    const struct cfg_reputation *rep = &cfg->reputation;
    struct throttle_pair p;
    memset(&p, 0, sizeof p);
    atomic_store(&p.factor_ppm, 1000000);
    /* 10000/s: the 95 accepted a second below are a smaller part of it
     * than the share (95%), so the share decides */
    atomic_store(&p.rate_micro_per_s, 10000000000LL);
    int64_t t = 1000000;
    throttle_signal(&p, rep, THROTTLE_BACKOFF, 0, t, t); /* opens the window */
    throttle_signal(&p, rep, THROTTLE_BACKOFF, 0, t + 10, t);
    throttle_tick(&p, rep, t + 1000); /* one reply of one: share capped at 0.5 */
    CHECK_EQ_INT(atomic_load(&p.factor_ppm), 400000);
    /* Settling: the next window is not judged. */
    for (int i = 0; i < 50; i++)
        throttle_signal(&p, rep, THROTTLE_BACKOFF, 0, t + 1100 + i, t);
    throttle_tick(&p, rep, t + 2000);
    CHECK_EQ_INT(atomic_load(&p.factor_ppm), 400000);
    /* 100 replies, 5 signals: x 0.8 x 0.95. */
    for (int i = 0; i < 100; i++)
        throttle_signal(&p, rep, i < 5 ? THROTTLE_BACKOFF : THROTTLE_OK, 0, t + 2100 + i, t);
    throttle_tick(&p, rep, t + 3000);
    CHECK_EQ_INT(atomic_load(&p.factor_ppm), 304000);
    /* Clean intervals: +5%, +10%, +20% of itself. */
    int64_t clean = t + 3000 + rep->interval_ms;
    throttle_tick(&p, rep, clean);
    CHECK_EQ_INT(atomic_load(&p.factor_ppm), 319200);
    throttle_tick(&p, rep, clean + rep->interval_ms / 2); /* not yet */
    CHECK_EQ_INT(atomic_load(&p.factor_ppm), 319200);
    throttle_tick(&p, rep, clean + rep->interval_ms);
    CHECK_EQ_INT(atomic_load(&p.factor_ppm), 351120);
    throttle_tick(&p, rep, clean + 2 * rep->interval_ms);
    CHECK_EQ_INT(atomic_load(&p.factor_ppm), 421344);
    /* A signal restarts the doubling. */
    throttle_signal(&p, rep, THROTTLE_OK, 0, clean + 2 * rep->interval_ms + 10, t);
    throttle_signal(&p, rep, THROTTLE_BACKOFF, 0, clean + 2 * rep->interval_ms + 20, t);
    CHECK_EQ_INT(atomic_load(&p.clean_steps), 0);
    config_free(cfg);
}

int main(void)
{
    check_converges(NULL);
    check_converges("{ interval: 2s }");
    check_converges("{ interval: 5s }");
    test_recovery_defaults();
    test_recovery_short_interval();
    test_floor_min_rate();
    test_burst_shrinks();
    test_decrease_rules();
    return check_report("test_throttle");
}
