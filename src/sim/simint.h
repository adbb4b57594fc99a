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
    int64_t enq_ms, due_ms, expires_at_ms, lat_ms;
    uint32_t next, path;
    uint16_t tenant, site, attempt;
    uint8_t prio, flags, reply;
};

struct rent {
    int64_t due_ms;
    uint32_t job;
};

/* A throttle pair's worker-side state: the hold queue and the pool. */
struct spath {
    struct throttle_pair *pair;
    const struct cfg_provider *prov;
    struct fairq q;
    bool armed, used;
    int64_t timer_at;
    uint32_t in_flight, pool_head, pool_tail;
    double factor_min;
};

struct window {
    int64_t start_ms;
    uint32_t count;
};

struct ssite {
    const struct sim_site *b;
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
    uint32_t held;
    struct spath *paths;
    size_t n_paths;
    struct ssite *sites;
    size_t n_sites;
    uint32_t *dom_site;   /* traffic name index -> site */
    uint64_t *gen_done;   /* jobs emitted per traffic line */
    uint16_t *gen_tenant; /* config tenant index per traffic line */
    uint16_t **tips;      /* per config tenant: its pool's table IP indices */
    size_t *n_tips;
    uint32_t egress_rr;
    char (*keys)[3][96];         /* fair queue class keys per tenant x priority */
    struct throttle_pair *tgcra; /* tenants' own rates (admission) */
    bool recall_wanted;
    int64_t next_recall;
    struct sim_result *r;
};

int sim_loop(struct sim *s, int64_t max_ms);

#endif
