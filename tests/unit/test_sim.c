/* The simulator (src/sim/) driven through its API with built configs and
 * traffic, in virtual time: the shaping properties the engine promises,
 * checked in milliseconds.
 * (1) 600/m per egress IP, 2 IPs, 4000 jobs: each IP delivers 10/s +-5%
 *     in steady state;
 * (2) a receiver's hidden limit of 20/s, herald told 200/s: after 30 s,
 *     421s under 20% of accepted and accepted >= 80% of 20/s;
 * (3) fair share: tenant B's 10 jobs behind 50,000 of tenant A are
 *     delivered within a few virtual seconds;
 * (4) destination sites: a stuck exchanger stalls only its own domains,
 *     domains on one exchanger share its limits;
 * with 1, 2 and 4 workers where it matters, plus retries and max_age, the
 * egress round robin, the traffic parser's errors, determinism for a seed
 * and a million jobs. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "herald/config.h"
#include "herald/core.h"
#include "herald/sim.h"

static struct config *load(const char *yaml)
{
    struct config *cfg = NULL;
    char err[512];
    if (config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof err) < 0) {
        fprintf(stderr, "config: %s\n", err);
        exit(1);
    }
    return cfg;
}

static void traffic(struct sim_traffic *t, const char *text)
{
    sim_traffic_init(t);
    unsigned line = 0;
    for (const char *p = text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char err[256];
        int rc = sim_traffic_parse_line(t, p, len, ++line, err, sizeof err);
        if (rc < 0) {
            fprintf(stderr, "traffic line %u: %s\n", line, err);
            exit(1);
        }
        p += len + (nl ? 1 : 0);
    }
}

static struct sim_result *run_workers(const struct config *cfg, const struct sim_traffic *t,
                                      uint32_t workers)
{
    struct sim_options o = {.seed = 7, .start_wall_ms = 1796083200000LL, .workers = workers};
    struct sim_result *r = NULL;
    char err[256];
    int rc = sim_run(cfg, t, &o, &r, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "sim_run: %s\n", err);
        exit(1);
    }
    return r;
}

/* One worker unless a test says otherwise: "auto" would make the results
 * depend on the machine's CPU count. */
static struct sim_result *run(const struct config *cfg, const struct sim_traffic *t)
{
    return run_workers(cfg, t, 1);
}

static const struct sim_stats *find(const struct sim_result *r, enum sim_entity k, const char *name)
{
    for (size_t i = 0; i < r->n[k]; i++)
        if (strcmp(r->ent[k][i].name, name) == 0) return &r->ent[k][i];
    fprintf(stderr, "no entity %s\n", name);
    exit(1);
}

static void test_rate_per_ip(uint32_t workers, uint64_t jobs)
{
    struct config *cfg = load("egress:\n  default: [192.0.2.1, 192.0.2.2]\n"
                              "tenants:\n  acme:\n    from: r@acme.test\n"
                              "providers:\n  google:\n    mx: ['*.google.com']\n"
                              "    connections: 20\n    rate: 600/m\n");
    struct sim_traffic t;
    char text[512];
    snprintf(text, sizeof text,
             "{\"site\": \"gmail.com\", \"mx\": [\"gmail-smtp-in.l.google.com\"], "
             "\"latency_ms\": 80}\n"
             "{\"t\": 0, \"tenant\": \"acme\", \"domain\": \"gmail.com\", \"count\": %llu}\n",
             (unsigned long long)jobs);
    traffic(&t, text);
    struct sim_result *r = run_workers(cfg, &t, workers);
    const struct sim_stats *a = find(r, SIM_E_IP, "192.0.2.1"), *b = find(r, SIM_E_IP, "192.0.2.2");
    printf("rate per IP, %u worker(s), %llu jobs: %s %.3f/s (peak %.1f), %s %.3f/s (peak %.1f); "
           "done at %.1f s\n",
           workers, (unsigned long long)jobs, a->name, a->steady_per_s, a->peak_per_s, b->name,
           b->steady_per_s, b->peak_per_s, (double)r->end_ms / 1000);
    CHECK_EQ_INT(r->pending, 0);
    CHECK_EQ_INT(r->workers, workers);
    CHECK_EQ_INT(a->delivered + b->delivered, jobs);
    CHECK(a->steady_per_s > 9.5 && a->steady_per_s < 10.5);
    CHECK(b->steady_per_s > 9.5 && b->steady_per_s < 10.5);
    /* also over any 20 s stretch of the middle, from the series */
    double mid = sim_rate(a, SIM_S_DELIVERED, 50, 70);
    CHECK(mid > 9.5 && mid < 10.5);
    /* at 20/s in all */
    double expect_ms = (double)jobs / 20 * 1000;
    CHECK(r->end_ms > 0.95 * expect_ms && r->end_ms < 1.075 * expect_ms);
    sim_result_free(r);
    sim_traffic_free(&t);
    config_free(cfg);
}

/* Destination sites: a domain with its own MX gets its own copy of the
 * default provider's limits, so an exchanger that holds every connection
 * it is given stalls only its own domains; two domains on the same
 * exchangers share one site and its limits. With the default provider
 * pooled (per_site: false) the stuck site holds the other one up: the
 * check can fail. */
static void test_sites(bool per_site, uint32_t workers)
{
    char yaml[512];
    snprintf(yaml, sizeof yaml,
             "egress:\n  default: [192.0.2.1]\n"
             "tenants:\n  acme:\n    from: r@acme.test\n"
             "providers:\n  default:\n    connections: 4\n    rate: 10/s\n"
             "    per_site: %s\n",
             per_site ? "true" : "false");
    struct config *cfg = load(yaml);
    struct sim_traffic t;
    traffic(&t, "{\"site\": \"stuck.test\", \"mx\": [\"mx.stuck.test\"], \"latency_ms\": 60000}\n"
                "{\"site\": \"small.test\", \"mx\": [\"mx.small.test\"], \"latency_ms\": 50}\n"
                "{\"site\": \"one.test\", \"mx\": [\"mx.hoster.test\"], \"latency_ms\": 50}\n"
                "{\"site\": \"two.test\", \"mx\": [\"mx.hoster.test\"], \"latency_ms\": 50}\n"
                "{\"t\": 0, \"tenant\": \"acme\", \"domain\": \"stuck.test\", \"count\": 40}\n"
                "{\"t\": 1, \"tenant\": \"acme\", \"domain\": \"small.test\", \"count\": 20}\n"
                "{\"t\": 1, \"tenant\": \"acme\", \"domain\": \"one.test\", \"count\": 300}\n"
                "{\"t\": 1, \"tenant\": \"acme\", \"domain\": \"two.test\", \"count\": 300}\n");
    struct sim_result *r = run_workers(cfg, &t, workers);
    const struct sim_stats *small = find(r, SIM_E_SITE, "small.test");
    const struct sim_stats *one = find(r, SIM_E_SITE, "one.test");
    const struct sim_stats *two = find(r, SIM_E_SITE, "two.test");
    const struct sim_stats *stuck = find(r, SIM_E_SITE, "stuck.test");
    /* one.test and two.test: 600 jobs through one 10/s site, 20 s of work */
    int64_t hoster_done = one->last_ms > two->last_ms ? one->last_ms : two->last_ms;
    printf("sites (per_site %s, %u worker(s)): small.test max %lld ms; one+two.test done at %.1f s "
           "(p50 %.1f / %.1f s); stuck.test %llu delivered; %zu paths\n",
           per_site ? "on" : "off", workers, (long long)small->max_ms,
           (double)hoster_done / 1000, (double)one->p50_ms / 1000, (double)two->p50_ms / 1000,
           (unsigned long long)stuck->delivered, r->n_paths);
    CHECK_EQ_INT(small->delivered, 20);
    CHECK_EQ_INT(stuck->delivered, 40);
    if (per_site) {
        /* its own connections and 10/s: 20 jobs in about 2 s */
        CHECK(small->max_ms < 4000);
        /* one.test and two.test share a site: 600 at 10/s, not 20/s */
        CHECK(hoster_done > 55000 && hoster_done < 66000);
        CHECK_EQ_INT(r->n_paths, 3);
        bool labelled = false;
        for (size_t i = 0; i < r->n_paths; i++)
            labelled |= strcmp(r->paths[i].site, "mx.hoster.test") == 0;
        CHECK(labelled);
    } else {
        /* the stuck exchanger holds the 4 pooled connections for a minute */
        CHECK(small->max_ms > 15000);
        CHECK_EQ_INT(r->n_paths, 1);
    }
    sim_result_free(r);
    sim_traffic_free(&t);
    config_free(cfg);
}

/* Memory is shared by every path a worker holds mail for: with three
 * sites short of connections (their rates allow more than their
 * connections carry) and more backlog than two workers may hold, each
 * site still runs at what its connections carry, at once, not one after
 * the other in stream order; and a tarpit with more mail than a worker may
 * hold does not fill the workers' memory while another site waits. */
static void test_memory_pressure(void)
{
    struct config *cfg = load("egress:\n  default: [192.0.2.1, 192.0.2.2]\n"
                              "tenants:\n  a:\n    from: r@a.test\n  b:\n    from: r@b.test\n"
                              "providers:\n  google:\n    mx: ['*.google.com']\n"
                              "    connections: 50\n    rate: 2000/s\n"
                              "  default:\n    connections: 20\n    rate: 500/s\n");
    struct sim_traffic t;
    traffic(&t, "{\"site\": \"gmail.com\", \"mx\": [\"gmail-smtp-in.l.google.com\"], "
                "\"latency_ms\": 40}\n"
                "{\"site\": \"*\", \"latency_ms\": 60}\n"
                "{\"t\": 0, \"tenant\": \"b\", \"domain\": \"example.org\", \"count\": 40000}\n"
                "{\"t\": 0, \"tenant\": \"b\", \"domain\": \"example.net\", \"count\": 40000}\n"
                "{\"t\": 0, \"tenant\": \"a\", \"domain\": \"gmail.com\", \"count\": 100000}\n");
    struct sim_result *r = run_workers(cfg, &t, 2);
    const struct sim_stats *g = find(r, SIM_E_SITE, "gmail.com");
    const struct sim_stats *o = find(r, SIM_E_SITE, "example.org");
    const struct sim_stats *n = find(r, SIM_E_SITE, "example.net");
    /* what the connections carry: 2 IPs x 50 / 40 ms and 2 x 20 / 60 ms */
    double g_rate = sim_rate(g, SIM_S_DELIVERED, 5, 35), o_rate = sim_rate(o, SIM_S_DELIVERED, 5, 35),
           n_rate = sim_rate(n, SIM_S_DELIVERED, 5, 35);
    uint64_t parks = 0;
    for (int k = 0; k < SHAPE_R_COUNT; k++)
        parks += g->parked[k] + o->parked[k] + n->parked[k];
    printf("memory pressure, 2 workers: 5-35 s gmail %.0f/s (of 2500), example.org %.0f/s, "
           "example.net %.0f/s (of 667); %.2f parks per job; done at %.1f s\n",
           g_rate, o_rate, n_rate, (double)parks / 180000, (double)r->end_ms / 1000);
    CHECK(g_rate > 0.9 * 2500);
    CHECK(o_rate > 0.9 * 666.7 && n_rate > 0.9 * 666.7);
    CHECK(parks < 3 * 180000); /* parked and brought back, not churned */
    CHECK_EQ_INT(r->pending, 0);
    sim_result_free(r);
    sim_traffic_free(&t);
    config_free(cfg);

    /* The tarpit: 6,000 messages to an exchanger that holds each
     * connection for a minute, then 20 to a plain site. */
    cfg = load("egress:\n  default: [192.0.2.1]\n"
               "tenants:\n  acme:\n    from: r@acme.test\n"
               "providers:\n  default:\n    connections: 10\n");
    traffic(&t, "{\"site\": \"tarpit.test\", \"mx\": [\"mx.tarpit.test\"], \"latency_ms\": 60000}\n"
                "{\"site\": \"small.test\", \"mx\": [\"mx.small.test\"], \"latency_ms\": 50}\n"
                "{\"t\": 0, \"tenant\": \"acme\", \"domain\": \"tarpit.test\", \"count\": 6000}\n"
                "{\"t\": 5, \"tenant\": \"acme\", \"domain\": \"small.test\", \"count\": 20}\n");
    r = run_workers(cfg, &t, 2);
    const struct sim_stats *small = find(r, SIM_E_SITE, "small.test");
    const struct sim_stats *tar = find(r, SIM_E_SITE, "tarpit.test");
    printf("tarpit with 6000 queued, 2 workers: small.test max %lld ms; tarpit parked for "
           "connections %llu times\n",
           (long long)small->max_ms, (unsigned long long)tar->parked[SHAPE_R_CONNECTIONS]);
    CHECK_EQ_INT(small->delivered, 20);
    CHECK(small->max_ms < 3000);
    CHECK(tar->parked[SHAPE_R_CONNECTIONS] > 0);
    sim_result_free(r);
    sim_traffic_free(&t);
    config_free(cfg);
}

/* A million jobs simulate in seconds (the issue asks under 10 s; timed
 * here only loosely, the bench prints the figure). */
static void test_million(void)
{
    struct config *cfg = load("egress:\n  default: [192.0.2.1, 192.0.2.2]\n"
                              "tenants:\n  a:\n    from: r@a.test\n  b:\n    from: r@b.test\n"
                              "providers:\n  google:\n    mx: ['*.google.com']\n"
                              "    connections: 50\n    rate: 2000/s\n"
                              "  default:\n    connections: 20\n    rate: 500/s\n");
    struct sim_traffic t;
    traffic(&t, "{\"site\": \"gmail.com\", \"mx\": [\"gmail-smtp-in.l.google.com\"], "
                "\"latency_ms\": 40, \"tempfail\": 0.01}\n"
                "{\"site\": \"*\", \"latency_ms\": 60}\n"
                "{\"t\": 0, \"tenant\": \"a\", \"domain\": \"gmail.com\", \"count\": 600000, "
                "\"over\": 60}\n"
                "{\"t\": 0, \"tenant\": \"b\", \"domain\": \"example.org\", \"count\": 200000}\n"
                "{\"t\": 0, \"tenant\": \"b\", \"domain\": \"example.net\", \"count\": 200000}\n");
    struct sim_result *r = run_workers(cfg, &t, 2);
    printf("a million jobs: %llu pending, %.1f s of virtual time in %.2f s of real time\n",
           (unsigned long long)r->pending, (double)r->end_ms / 1000, r->wall_s);
    CHECK_EQ_INT(r->pending, 0);
    CHECK_EQ_INT(r->jobs, 1000000);
    sim_result_free(r);
    sim_traffic_free(&t);
    config_free(cfg);
}

static void test_hidden_limit(void)
{
    struct config *cfg = load("egress:\n  default: [192.0.2.1]\n"
                              "tenants:\n  acme:\n    from: r@acme.test\n"
                              "providers:\n  sink:\n    mx: [mx.sink.test]\n"
                              "    connections: 50\n    rate: 200/s\n");
    struct sim_traffic t;
    traffic(&t, "{\"site\": \"sink.test\", \"mx\": [\"mx.sink.test\"], \"limit_per_s\": 20, "
                "\"latency_ms\": 20}\n"
                "{\"t\": 0, \"tenant\": \"acme\", \"domain\": \"sink.test\", \"count\": 5000}\n");
    struct sim_result *r = run(cfg, &t);
    const struct sim_stats *s = find(r, SIM_E_SITE, "sink.test");
    uint64_t ok = sim_sum(s, SIM_S_DELIVERED, 30, 150),
             refused = sim_sum(s, SIM_S_SIGNALS, 30, 150);
    double rate = (double)ok / 120;
    printf("hidden limit 20/s at 200/s: 30-150 s accepted %.2f/s, 421s %llu = %.1f%% of accepted; "
           "first 30 s: %llu accepted, %llu 421s; factor min %.3f end %.3f\n",
           rate, (unsigned long long)refused, 100.0 * (double)refused / (double)ok,
           (unsigned long long)sim_sum(s, SIM_S_DELIVERED, 0, 30),
           (unsigned long long)sim_sum(s, SIM_S_SIGNALS, 0, 30), r->paths[0].factor_min,
           r->paths[0].factor_end);
    CHECK(rate >= 16.0);
    CHECK(rate <= 20.0);
    CHECK((double)refused < 0.2 * (double)ok);
    CHECK_EQ_INT(s->delivered, 5000);
    sim_result_free(r);
    sim_traffic_free(&t);
    config_free(cfg);
}

static void test_fair_share(void)
{
    struct config *cfg = load("egress:\n  default: [192.0.2.1]\n"
                              "tenants:\n  a:\n    from: r@a.test\n  b:\n    from: r@b.test\n"
                              "providers:\n  default:\n    connections: 50\n    rate: 300/s\n");
    struct sim_traffic t;
    traffic(&t, "{\"site\": \"*\", \"latency_ms\": 50}\n"
                "{\"t\": 0, \"tenant\": \"a\", \"domain\": \"example.org\", \"count\": 50000}\n"
                "{\"t\": 5, \"tenant\": \"b\", \"domain\": \"example.org\", \"count\": 10}\n");
    struct sim_result *r = run(cfg, &t);
    const struct sim_stats *a = find(r, SIM_E_TENANT, "a"), *b = find(r, SIM_E_TENANT, "b");
    printf(
        "fair share: b's 10 behind a's 50000 at 300/s: b p50 %lld ms, max %lld ms; a p50 %.1f s, "
        "a parked for share/rate %llu; done at %.1f s\n",
        (long long)b->p50_ms, (long long)b->max_ms, (double)a->p50_ms / 1000,
        (unsigned long long)(a->parked[SHAPE_R_RATE] + a->parked[SHAPE_R_TENANT_SHARE]),
        (double)r->end_ms / 1000);
    CHECK_EQ_INT(b->delivered, 10);
    CHECK(b->max_ms < 3000);
    CHECK_EQ_INT(a->delivered, 50000);
    CHECK(a->steady_per_s > 280 && a->steady_per_s < 310);
    sim_result_free(r);
    sim_traffic_free(&t);
    config_free(cfg);
}

/* Random 4xx come back on the retry schedule; a site that never accepts
 * ends every job expired after max_age. */
static void test_retries_and_expiry(void)
{
    struct config *cfg = load("tenants:\n  acme:\n    from: r@acme.test\n    max_age: 30m\n"
                              "delivery:\n  retry: [1m, 5m]\n");
    struct sim_traffic t;
    traffic(&t, "{\"site\": \"flaky.test\", \"tempfail\": 0.3}\n"
                "{\"site\": \"dead.test\", \"tempfail\": 1}\n"
                "{\"t\": 0, \"tenant\": \"acme\", \"domain\": \"flaky.test\", \"count\": 1000, "
                "\"over\": 10}\n"
                "{\"t\": 0, \"tenant\": \"acme\", \"domain\": \"dead.test\", \"count\": 20}\n");
    struct sim_result *r = run(cfg, &t);
    const struct sim_stats *f = find(r, SIM_E_SITE, "flaky.test");
    const struct sim_stats *d = find(r, SIM_E_SITE, "dead.test");
    printf("retries: flaky %llu delivered, %llu deferred, p99 %.0f s; dead %llu expired, %llu "
           "deferred\n",
           (unsigned long long)f->delivered, (unsigned long long)f->deferred,
           (double)f->p99_ms / 1000, (unsigned long long)d->expired,
           (unsigned long long)d->deferred);
    CHECK_EQ_INT(f->delivered, 1000);
    CHECK(f->deferred > 300 && f->deferred < 560); /* 0.3 + 0.09 + ... of 1000 */
    CHECK(f->p99_ms >= 60000);                     /* some waited the first step */
    CHECK_EQ_INT(d->expired, 20);
    CHECK_EQ_INT(d->delivered, 0);
    /* 1m, 5m, 5m, ... until the next would pass 30m: 7 attempts each */
    CHECK(d->deferred >= 20 * 5 && d->deferred <= 20 * 8);
    CHECK_EQ_INT(r->pending, 0);
    sim_result_free(r);
    sim_traffic_free(&t);
    config_free(cfg);
}

static void test_determinism(void)
{
    struct config *cfg = load("egress:\n  default: [192.0.2.1, 192.0.2.2, 192.0.2.3]\n"
                              "tenants:\n  acme:\n    from: r@acme.test\n"
                              "providers:\n  default:\n    rate: 50/s\n");
    struct sim_traffic t;
    traffic(&t, "{\"site\": \"*\", \"tempfail\": 0.1, \"limit_per_s\": 40, \"limit_scope\": "
                "\"ip\"}\n"
                "{\"t\": 0, \"tenant\": \"acme\", \"domain\": \"x.test\", \"count\": 3000, "
                "\"over\": 20}\n");
    struct sim_result *r1 = run(cfg, &t), *r2 = run(cfg, &t);
    for (int k = 0; k < SIM_E_COUNT; k++)
        for (size_t i = 0; i < r1->n[k]; i++) {
            CHECK_EQ_INT(r1->ent[k][i].delivered, r2->ent[k][i].delivered);
            CHECK_EQ_INT(r1->ent[k][i].deferred, r2->ent[k][i].deferred);
            CHECK_EQ_INT(r1->ent[k][i].p99_ms, r2->ent[k][i].p99_ms);
        }
    CHECK_EQ_INT(r1->end_ms, r2->end_ms);
    /* three IPs share the work round robin */
    for (size_t i = 1; i < r1->n[SIM_E_IP]; i++)
        CHECK(r1->ent[SIM_E_IP][i].delivered > 900 && r1->ent[SIM_E_IP][i].delivered < 1100);
    sim_result_free(r1);
    sim_result_free(r2);
    sim_traffic_free(&t);
    config_free(cfg);
}

static void test_traffic_errors(void)
{
    static const struct {
        const char *line, *want;
    } cases[] = {
        {"{\"t\": 0, \"tenant\": \"a\"}", "\"domain\" is required"},
        {"{\"tenant\": \"a\", \"domain\": \"d\"}", "\"t\" is required"},
        {"{\"t\": -1, \"tenant\": \"a\", \"domain\": \"d\"}", "\"t\" must be between"},
        {"{\"t\": 0, \"tenant\": \"a\", \"domain\": \"d\", \"count\": 1.5}", "whole number"},
        {"{\"t\": 0, \"tenant\": \"a\", \"domain\": \"d\", \"priority\": \"urgent\"}",
         "\"priority\" must be"},
        {"{\"t\": 0, \"tenant\": \"a\", \"domain\": \"d\", \"cuont\": 3}", "unknown key \"cuont\""},
        {"{\"site\": \"s\", \"tempfail\": 2}", "\"tempfail\" must be between"},
        {"{\"site\": \"s\", \"reply\": \"250 ok\"}", "\"reply\" must start with a 4xx"},
        {"{\"site\": \"s\", \"mx\": []}", "\"mx\" must be a list"},
        {"{\"site\": \"s\", \"limit_scope\": \"world\"}", "\"limit_scope\" must be"},
        {"[1, 2]", "a line must be a JSON object"},
        {"{\"t\": 0", "not JSON"},
        {"{\"x\": 1}", "neither jobs"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sim_traffic t;
        sim_traffic_init(&t);
        char err[256] = "";
        int rc =
            sim_traffic_parse_line(&t, cases[i].line, strlen(cases[i].line), 1, err, sizeof err);
        CHECK_EQ_INT(rc, -HERR_MALFORMED);
        if (!strstr(err, cases[i].want))
            fprintf(stderr, "case %zu: error '%s', wanted '%s'\n", i, err, cases[i].want);
        CHECK(strstr(err, cases[i].want) != NULL);
        sim_traffic_free(&t);
    }
    /* a site named twice, a domain claimed by two sites */
    struct sim_traffic t;
    sim_traffic_init(&t);
    char err[256];
    const char *a = "{\"site\": \"s.test\", \"domains\": [\"d.test\"]}";
    const char *b = "{\"site\": \"o.test\", \"domains\": [\"D.test\"]}";
    CHECK_EQ_INT(sim_traffic_parse_line(&t, a, strlen(a), 1, err, sizeof err), 0);
    CHECK_EQ_INT(sim_traffic_parse_line(&t, b, strlen(b), 2, err, sizeof err), -HERR_MALFORMED);
    CHECK(strstr(err, "already has a site") != NULL);
    CHECK_EQ_INT(sim_traffic_parse_line(&t, "  # note", 8, 3, err, sizeof err), 0);
    sim_traffic_free(&t);
    /* a tenant the config lacks: sim_run refuses, naming the line */
    struct config *cfg = load("tenants:\n  acme:\n    from: r@acme.test\n");
    traffic(&t, "\n{\"t\": 0, \"tenant\": \"nobody\", \"domain\": \"x.test\"}\n");
    struct sim_options o = {.seed = 1};
    struct sim_result *r = NULL;
    CHECK_EQ_INT(sim_run(cfg, &t, &o, &r, err, sizeof err), -HERR_CONFIG);
    CHECK(strstr(err, "line 2: tenant \"nobody\"") != NULL);
    CHECK(r == NULL);
    sim_traffic_free(&t);
    config_free(cfg);
}

int main(void)
{
    log_min_level = LOG_ERROR;
    test_traffic_errors();
    test_rate_per_ip(1, 4000);
    test_rate_per_ip(2, 4000);
    test_rate_per_ip(4, 4000);
    test_rate_per_ip(4, 100000);
    test_sites(true, 1);
    test_sites(true, 2);
    test_sites(false, 1);
    test_memory_pressure();
    test_million();
    test_hidden_limit();
    test_fair_share();
    test_retries_and_expiry();
    test_determinism();
    return check_report("test_sim");
}
