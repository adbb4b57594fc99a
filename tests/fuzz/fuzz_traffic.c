/* The traffic parser of `herald simulate` (src/sim/traffic.c) under
 * arbitrary bytes, split into lines. Every line is accepted or refused
 * with a reason; what is accepted is consistent (counts add up, names
 * resolve, replies carry their codes). A small accepted traffic is then
 * simulated for up to an hour of virtual time against a fixed config:
 * every job ends exactly once or is still pending. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "herald/config.h"
#include "herald/core.h"
#include "herald/sim.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char yaml[] = "egress:\n  default: [192.0.2.1, 192.0.2.2]\n"
                           "tenants:\n  acme:\n    from: r@acme.test\n  b:\n    from: r@b.test\n"
                           "providers:\n  google:\n    mx: ['*.google.com']\n    rate: 20/s\n"
                           "  default:\n    rate: 50/s\n"
                           "reputation:\n  interval: 2s\n";

static struct config *cfg;

static void check(const struct sim_traffic *t)
{
    uint64_t total = 0;
    for (size_t i = 0; i < t->n_jobs; i++) {
        const struct sim_jobs *j = &t->jobs[i];
        if (j->count == 0 || j->tenant >= t->n_names || j->domain >= t->n_names) abort();
        if (j->t_ms < 0 || j->over_ms < 0 || j->priority < 0 || j->priority > 2) abort();
        total += j->count;
    }
    if (total != t->total || total > SIM_MAX_JOBS) abort();
    for (size_t i = 0; i < t->n_sites; i++) {
        const struct sim_site *s = &t->sites[i];
        if (!s->name || !s->reply || s->reply[0] != '4' || s->tempfail_reply[0] != '4' ||
            s->bounce_reply[0] != '5' || s->n_mx > SIM_MAX_MX)
            abort();
        if (s->tempfail < 0 || s->bounce < 0 || s->tempfail + s->bounce > 1) abort();
    }
    for (size_t i = 0; i < t->n_names; i++)
        if (t->site_of[i] != SIZE_MAX && t->site_of[i] >= t->n_sites) abort();
}

static void simulate(const struct sim_traffic *t)
{
    struct sim_options o = {.seed = 3, .start_wall_ms = 1796083200000LL, .max_ms = 3600 * 1000};
    struct sim_result *r = NULL;
    char err[256];
    int rc = sim_run(cfg, t, &o, &r, err, sizeof err);
    if (rc == -HERR_CONFIG) {
        if (!strstr(err, "tenant")) abort();
        return;
    }
    if (rc < 0 || !r) abort();
    uint64_t ended = 0, jobs = 0;
    for (size_t i = 0; i < r->n[SIM_E_TENANT]; i++) {
        const struct sim_stats *s = &r->ent[SIM_E_TENANT][i];
        ended += s->delivered + s->bounced + s->expired;
        jobs += s->jobs;
        if (s->delivered && (s->p50_ms < 0 || s->p50_ms > s->p99_ms || s->p99_ms > s->max_ms))
            abort();
    }
    if (jobs > r->jobs || ended + r->pending != r->jobs) abort();
    sim_result_free(r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cfg) {
        char err[256];
        log_min_level = LOG_ERROR;
        if (config_load_string("fuzz.yaml", yaml, strlen(yaml), &cfg, err, sizeof err) < 0) abort();
    }
    struct sim_traffic t;
    sim_traffic_init(&t);
    const char *p = (const char *)data, *end = p + size;
    unsigned line = 0;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t len = (size_t)((nl ? nl : end) - p);
        char err[256] = "";
        int rc = sim_traffic_parse_line(&t, p, len, ++line, err, sizeof err);
        if (rc != 0 && (rc != -HERR_MALFORMED || !err[0])) abort();
        p += len + 1;
    }
    check(&t);
    if (t.total > 0 && t.total <= 300) simulate(&t);
    sim_traffic_free(&t);
    return 0;
}
