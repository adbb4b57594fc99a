/* Internal to src/sim/: the simulator's state, shared by the event loop
 * (sim.c) and its setup and summing up (run.c). */
#ifndef HERALD_SIM_SIMINT_H
#define HERALD_SIM_SIMINT_H

#include <stdbool.h>
#include <stdint.h>

#include "herald/fairq.h"
#include "herald/sim.h"
#include "herald/smtp.h"
#include "herald/throttle.h"

#define NONE UINT32_MAX

enum ev_kind { EV_ARRIVE, EV_QUEUE, EV_DONE, EV_TICK, EV_MOVER, EV_SECOND };

struct ev {
    int64_t at;
    uint64_t seq;
    uint32_t kind, idx;
};

enum { JF_THROTTLED = 1, JF_ENDED = 2, JF_DELIVERED = 4 };
enum reply_kind { REPLY_OK = 0, REPLY_LIMIT, REPLY_TEMPFAIL, REPLY_BOUNCE };

struct sjob {
    struct fairq_node qnode;
    int64_t enq_ms, pool_ms, expires_at_ms, lat_ms;
    uint32_t next, path;
    uint16_t tenant, site, attempt, worker;
    uint8_t prio, flags, reply;
};

struct rent {
    int64_t due_ms;
    uint32_t job;
};

/* A throttle pair the run sends through: pooled (egress IP x provider),
 * or egress IP x site for a provider whose limits are per site (as
 * route.c's path_pair picks). Its connections are the process's, whichever
 * worker uses them. Made when first routed to. */
struct spath {
    struct throttle_pair *pair;
    const struct cfg_provider *prov;
    uint32_t in_flight; /* connections busy, all workers */
    bool used;
    double factor_min;
};

/* One worker's part of a path: its hold queue (gate.c's hold_queue) and
 * the messages its pool holds until a connection is free. */
struct squeue {
    struct fairq q;
    bool armed;
    int64_t timer_at;
    uint32_t pool_head, pool_tail, pool_len;
    uint32_t in_flight; /* this worker's busy connections of the path */
};

struct sworker {
    uint32_t held, egress_rr;
};

struct window {
    int64_t start_ms;
    uint32_t count;
};

struct ssite {
    const struct sim_site *b;
    uint64_t hash;     /* throttle_site_hash of its exchangers */
    char label[128];   /* throttle_site_label */
    uint32_t slot;     /* the first site with the same exchangers (one pair) */
    const struct cfg_provider *prov;
    size_t prov_idx;
    struct window *win; /* one per table IP (scope ip) or one */
    struct smtp_result res[4];
    int64_t pending;
};

struct sim {
    const struct config *cfg;
    const struct sim_traffic *t;
    struct throttle_table *table;
    int64_t now, start_wall;
    uint64_t rng, recv_rng, seq, events;
    struct ev *ev;
    size_t n_ev, cap_ev;
    struct sjob *jobs;
    uint32_t n_jobs;
    uint64_t ended;
    struct rent *rs; /* the retry set, a min-heap by due time */
    size_t n_rs, cap_rs;
    uint32_t stream_head, stream_tail;
    struct spath *paths; /* n_ips x stride: providers, then sites */
    size_t n_paths, stride;
    struct squeue *queues; /* n_paths x n_workers */
    uint32_t *used;        /* paths in the order first used */
    size_t n_used;
    struct sworker *workers;
    uint32_t n_workers, intake_rr;
    struct ssite *sites;
    size_t n_sites;
    uint32_t *dom_site;   /* traffic name index -> site */
    uint64_t *gen_done;   /* jobs emitted per traffic line */
    uint16_t *gen_tenant; /* config tenant index per traffic line */
    uint16_t **tips;      /* per config tenant: its pool's table IP indices */
    size_t *n_tips;
    char (*keys)[3][96];         /* fair queue class keys per tenant x priority */
    struct throttle_pair *tgcra; /* tenants' own rates (admission) */
    bool recall_wanted;
    int64_t next_recall;
    struct sim_result *r;
};

int sim_loop(struct sim *s, int64_t max_ms);

/* heap.c: events by time (ties in push order), the retry set by due time. */
int sim_ev_push(struct sim *s, int64_t at, uint32_t kind, uint32_t idx);
struct ev sim_ev_pop(struct sim *s);
int sim_rs_push(struct sim *s, uint32_t job, int64_t due);
void sim_rs_down(struct rent *h, size_t n, size_t i);

#endif
