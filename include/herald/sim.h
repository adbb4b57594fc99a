/* sim: `herald simulate`. Replays a traffic file (jobs arriving, and how
 * each receiving site behaves) through herald's own shaping code on
 * virtual time: the egress choice, the throttle pairs (GCRA, reputation
 * back-off), shape_decide, the fair queue, the connection limit, the
 * retry schedule and max_age, all with the clock passed in. No sockets,
 * no Redis, no sleeping: a discrete-event loop over a binary heap, so a
 * day of traffic runs in seconds and the unit tests check shaping
 * properties in milliseconds.
 *
 * The traffic file is JSON Lines (docs/operations.md, "Trying a config
 * before a reload"):
 *   {"t": 0, "tenant": "acme", "domain": "gmail.com", "priority": "normal",
 *    "count": 1000, "over": 60, "expires": 3600}
 *   {"site": "gmail.com", "mx": ["gmail-smtp-in.l.google.com"],
 *    "domains": ["googlemail.com"], "limit_per_s": 20, "limit_scope": "site",
 *    "tempfail": 0.02, "bounce": 0, "latency_ms": 80,
 *    "reply": "421 4.7.0 Try again later"}
 * Empty lines and lines starting with '#' are skipped. */
#ifndef HERALD_SIM_H
#define HERALD_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "herald/config.h"
#include "herald/shape.h"

/* ---------- the traffic (src/sim/traffic.c) ---------- */

#define SIM_MAX_MX   8
#define SIM_MAX_JOBS (50u * 1000 * 1000) /* jobs in one traffic file */

/* `count` jobs of one tenant to one domain, enqueued evenly over
 * [t_ms, t_ms + over_ms). */
struct sim_jobs {
    int64_t t_ms, over_ms;
    int64_t expires_ms; /* expires_at this long after enqueue; 0: none */
    uint64_t count;
    uint32_t tenant, domain; /* indices into sim_traffic's names */
    int priority;            /* enum job_priority */
    unsigned line;
};

enum sim_scope { SIM_SCOPE_SITE = 0, SIM_SCOPE_IP };

/* How one receiving site answers. A site is the set of exchangers its
 * `mx` names; the first MX host picks the config's provider. */
struct sim_site {
    char *name;
    char *mx[SIM_MAX_MX];
    size_t n_mx;
    double limit_per_s;      /* hidden limit (fixed 1 s windows); 0: none */
    enum sim_scope scope;    /* the limit counts per site or per egress IP */
    double tempfail, bounce; /* shares of random 4xx and 5xx replies */
    int64_t latency_ms;      /* a connection is busy this long per message */
    char *reply;             /* the answer above the limit */
    char *tempfail_reply, *bounce_reply;
    unsigned line; /* 0: made up for a domain without a site line */
};

struct sim_traffic {
    struct sim_jobs *jobs;
    size_t n_jobs, cap_jobs;
    uint64_t total; /* sum of counts */
    struct sim_site *sites;
    size_t n_sites, cap_sites;
    /* Interned names: tenants and domains share one table. */
    char **names;
    size_t n_names, cap_names;
    uint32_t *hash; /* open addressing: index + 1, 0 empty */
    size_t hash_cap;
    /* domain name index -> site index (SIZE_MAX: none yet), by name index */
    size_t *site_of;
    int default_site; /* index of the "*" site, or -1 */
};

void sim_traffic_init(struct sim_traffic *t);
void sim_traffic_free(struct sim_traffic *t);
/* One line (without its newline). 0; -HERR_MALFORMED with the reason in
 * err ("message", no position: the caller adds file:line); -ENOMEM. */
int sim_traffic_parse_line(struct sim_traffic *t, const char *line, size_t len, unsigned lineno,
                           char *err, size_t errlen);
/* Every line of f; errors as "name:line: message". */
int sim_traffic_read(struct sim_traffic *t, FILE *f, const char *name, char *err, size_t errlen);
const char *sim_traffic_name(const struct sim_traffic *t, uint32_t idx);

/* ---------- the run (src/sim/sim.c) ---------- */

struct sim_options {
    uint64_t seed;         /* receiver randomness and retry jitter; 0 -> 1 */
    int64_t start_wall_ms; /* virtual wall clock at t=0 (warm-up days) */
    int64_t max_ms;        /* stop after this much virtual time; 0: 30 days */
    uint32_t workers;      /* the engine's workers; 0: engine.workers of the config */
};

enum sim_entity { SIM_E_SITE = 0, SIM_E_IP, SIM_E_TENANT, SIM_E_COUNT };

/* Per-second series (index = virtual second). */
enum sim_series {
    SIM_S_DELIVERED = 0, /* 250s */
    SIM_S_DEFERRED,      /* 4xx replies, throttle signals included */
    SIM_S_SIGNALS,       /* replies throttle_classify calls BACKOFF or SUSPEND */
    SIM_S_DEPTH,         /* jobs not yet ended, at the end of the second */
    SIM_S_COUNT
};

struct sim_stats {
    char name[128];
    uint64_t jobs, delivered, deferred, signals, bounced, expired;
    uint64_t waits[SHAPE_R_COUNT];  /* in memory (rate, tenant-share, connections) */
    uint64_t parked[SHAPE_R_COUNT]; /* to the retry set, by reason */
    int64_t first_ms, last_ms;      /* first and last delivery (-1: none) */
    int64_t p50_ms, p99_ms, max_ms; /* enqueue -> delivery */
    double steady_per_s;            /* delivered per second, middle 80% of [first, last] */
    double peak_per_s;              /* best 10 s bucket */
    uint32_t *series[SIM_S_COUNT];
    size_t n_sec, cap_sec;
};

/* A throttle pair the run used: egress IP x provider, or egress IP x
 * destination site (`site` set) for a provider whose limits are per site. */
struct sim_path {
    char ip[64], provider[72], site[128];
    double factor_min, factor_end;
    uint64_t sent, signals;
};

struct sim_result {
    struct sim_stats *ent[SIM_E_COUNT];
    size_t n[SIM_E_COUNT];
    struct sim_path *paths;
    size_t n_paths;
    uint32_t workers; /* the engine workers simulated */
    uint64_t jobs, pending; /* pending: not ended when the run stopped */
    uint64_t events;
    /* The engine's recalls of rate-parked jobs (a factor rose) and the
     * jobs they brought back to be priced again. */
    uint64_t recalls, recalled;
    int64_t end_ms; /* virtual time of the last event */
    double wall_s;
};

/* Run the traffic against cfg. 0, -HERR_CONFIG (a traffic line names a
 * tenant the config lacks: "line N: ..." in err) or -ENOMEM. */
int sim_run(const struct config *cfg, const struct sim_traffic *t, const struct sim_options *o,
            struct sim_result **out, char *err, size_t errlen);
void sim_result_free(struct sim_result *r);
/* Deliveries per second of an entity over [from_s, to_s) virtual seconds. */
double sim_rate(const struct sim_stats *s, enum sim_series k, int64_t from_s, int64_t to_s);
uint64_t sim_sum(const struct sim_stats *s, enum sim_series k, int64_t from_s, int64_t to_s);

/* ---------- reporting (src/sim/report.c) ---------- */

void sim_report_text(const struct sim_result *r, FILE *out);
/* One JSON document; 0 or -ENOMEM. */
int sim_report_json(const struct sim_result *r, FILE *out);
/* A gnuplot data file (per site: time, rate, depth per 10 s) and script
 * drawing `png`. 0 or -errno. */
int sim_report_plot_files(const struct sim_result *r, const char *data_path,
                          const char *script_path, const char *png_path);

#endif
