/* throttle: per path (egress IP x provider, or x destination site) rate
 * limits (GCRA) scaled by a reputation factor that adapts to the receivers'
 * replies. The table is process-wide and shared by the workers through
 * atomics; what other processes sending from the same IP must share
 * (slots, connections, factor, warm-up counts) they share through Redis
 * (engine/lease.c and the warm-up flush in engine/status.c). */
#ifndef HERALD_THROTTLE_H
#define HERALD_THROTTLE_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "herald/config.h"
#include "herald/shape.h"

#define THROTTLE_PARK_SLOTS 16

struct throttle_pair {
    char ip[INET6_ADDRSTRLEN]; /* "" = the kernel's choice */
    char provider[72];
    /* A per-site pair (the provider's limits for one destination site):
     * the site's label (its first exchanger, "+N" for more) and identity;
     * "" and 0 for a pair pooled over the provider. */
    char site[96];
    uint64_t site_hash;
    char group[200]; /* the pool's connection group: provider, or provider@site#hash */
    _Atomic int64_t tat_us;         /* GCRA: theoretical arrival time */
    _Atomic int64_t factor_ppm;     /* reputation factor x 1e6 */
    _Atomic int64_t suspended_until_ms; /* wall clock */
    _Atomic int64_t last_signal_ms, last_change_ms; /* monotonic */
    _Atomic uint64_t sent, signals, deferred_by_rate;
    atomic_int open_conns; /* counted by the pools of every worker */
    /* What the shaping decision did on this path (shape.h), for status:
     * messages waiting in memory for its slots now, and parked so far by
     * reason (enum shape_reason). */
    _Atomic int64_t waiting;
    _Atomic uint64_t parked[SHAPE_R_COUNT];
    /* Wall us: due time of the last message parked because the path was
     * congested (shape_conn_park_due_us spaces the next one after it). */
    _Atomic int64_t conn_park_us;
    /* Wall us: due time of the last message parked per class (tenant x
     * priority) for the path's rate or the class's share, shared by the
     * workers, so returns are spaced at the class's share of the whole
     * path whichever worker parks them (throttle_park_*). Slots by a hash
     * of the class key; classes that collide share one schedule. */
    _Atomic uint64_t park_key[THROTTLE_PARK_SLOTS];
    _Atomic int64_t park_due[THROTTLE_PARK_SLOTS];
    /* Shared with the other processes sending from this IP (engine/lease.c):
     * send slots leased in blocks from the path's GCRA in Redis, and this
     * process's grant of the path's connections (-1: none yet). */
    _Atomic int64_t lease_left;
    atomic_bool lease_pending;
    _Atomic int64_t lease_retry_ms;  /* monotonic: Redis said wait until then */
    atomic_int conn_grant;
    /* Monotonic ms when a worker's pool last had messages for the path and
     * no connection, the process-wide grant being taken by the others: an
     * idle connection of another worker gives its slot back (pool.c). */
    _Atomic int64_t conn_wanted_ms;
    _Atomic int64_t conn_refresh_ms; /* monotonic: when the grant was last renewed */
    _Atomic int64_t used_ms;         /* monotonic: last message on the path */
    /* Back-off state (throttle_signal, throttle_tick; monotonic ms). */
    _Atomic int64_t rate_micro_per_s;   /* the unscaled rate throttle_take saw, x 1e6 */
    _Atomic int64_t window_start_ms;    /* the window replies are counted in */
    _Atomic int64_t settle_until_ms;    /* replies before this are not judged */
    _Atomic uint64_t win_replies, win_signals;
    _Atomic int64_t clean_steps;        /* increases since the last signal */
};

/* Messages an egress IP sent on one UTC day (warm-up caps). */
struct throttle_ipday {
    _Atomic int64_t day;     /* days since the epoch */
    _Atomic int64_t sent;    /* by this process today */
    _Atomic int64_t flushed; /* of `sent`, already added to the shared count in Redis */
    _Atomic int64_t others;  /* the shared count less what this process added */
    atomic_bool known;       /* the shared count has been read once */
};

struct throttle_sites;

struct throttle_table {
    struct throttle_pair *pairs;
    struct throttle_ipday *ipday; /* one per ips[] entry */
    size_t n_ips, n_providers;
    char (*ips)[INET6_ADDRSTRLEN];
    char (*providers)[72];
    struct throttle_sites *sites; /* per-site pairs, made as sites are met */
    _Atomic int64_t start_factor_ppm; /* a new pair's factor (reputation.max) */
};

/* Per-site pairs a process keeps at most; past it a new site shares its
 * provider's pooled pair (and a warning is logged once). */
#define THROTTLE_MAX_SITES 16384

/* One pair per (egress IP of any pool, plus "") x provider of cfg, with the
 * factor at cfg->reputation.max. */
int throttle_table_new(const struct config *cfg, struct throttle_table **out);
void throttle_table_free(struct throttle_table *t);
/* NULL when ip or provider is not in the table. */
struct throttle_pair *throttle_pair_get(struct throttle_table *t, const char *ip,
                                        const char *provider);

/* The pair of (ip, provider) for one destination site, made on first use
 * with the factor at its start value; shared by every worker (a mutex
 * guards the map, the pair itself is atomics). NULL when ip or provider is
 * unknown; the pooled pair when the map is full. */
struct throttle_pair *throttle_site_pair(struct throttle_table *t, const char *ip,
                                         const char *provider, uint64_t site_hash,
                                         const char *site_label);
/* Every pair, pooled and per-site, by index 0 .. count-1; indexes are
 * stable (per-site pairs are only ever appended). Safe from any thread. */
size_t throttle_pair_count(const struct throttle_table *t);
struct throttle_pair *throttle_pair_at(struct throttle_table *t, size_t i);

/* The identity and label of a destination site from its exchangers' names
 * in preference order (case-blind, order-blind: the same MX set is the
 * same site). */
uint64_t throttle_site_hash(const char *const *names, size_t n);
void throttle_site_label(const char *const *names, size_t n, char *out, size_t cap);

/* Reserve the next send slot under `rate` (scaled by the pair's factor):
 * returns the wait in microseconds (0: send now). A wait longer than
 * horizon_us is not reserved and comes back negated, so the caller can park
 * the message elsewhere and ask again later. A rate with count 0 never
 * waits. The burst allowed after an idle spell is factor x 1 s of the
 * scaled rate (one second's worth at factor 1, at least one message), so a
 * pair that was backed off does not greet the receiver with a spike. The
 * pair remembers `rate` so the back-off can keep to reputation.min_rate. */
int64_t throttle_take(struct throttle_pair *p, const struct cfg_rate *rate, int64_t now_us,
                      int64_t horizon_us);

/* The GCRA parameters of `rate` scaled by the pair's factor: emission
 * interval and burst tolerance, in microseconds. */
void throttle_gcra_params(const struct throttle_pair *p, const struct cfg_rate *rate,
                          int64_t *T_us, int64_t *tau_us);

/* How long until the next slot under `rate` would be free, without
 * reserving it (0: free now). */
int64_t throttle_peek(const struct throttle_pair *p, const struct cfg_rate *rate, int64_t now_us);

/* Warm-up bookkeeping per egress IP and UTC day (days since the epoch):
 * what it sent today, count one more, and take a persisted count back at
 * start (the larger of it and what is counted already). */
int64_t throttle_ip_today(struct throttle_table *t, const char *ip, int64_t day);
void throttle_ip_count(struct throttle_table *t, const char *ip, int64_t day);
/* The day's count is shared by every process sending from the IP: take
 * what this process sent since its last flush (to add to the shared count
 * in Redis), and learn the shared total that addition produced. Today's
 * count is then what this process sent plus what the others did. */
int64_t throttle_ip_unflushed(struct throttle_table *t, const char *ip, int64_t day);
void throttle_ip_shared(struct throttle_table *t, const char *ip, int64_t day, int64_t total);
/* Whether the shared count of the IP is known yet (a process that has not
 * heard it must not spend a cap the others may have used up). */
bool throttle_ip_known(struct throttle_table *t, const char *ip);

/* Limits changed (cfg is the new config): no slot reserved under the old
 * rates lies further ahead than the next one under the new, so a raised
 * limit governs at once; a pair that was sending keeps its place instead
 * of getting a fresh burst of one second's worth. */
void throttle_table_retime(struct throttle_table *t, const struct config *cfg, int64_t now_us);

enum throttle_signal_kind {
    THROTTLE_OK = 0,   /* a message went through */
    THROTTLE_BACKOFF,  /* 421, 4.7.x, rate-limit wording, refused or reset connection */
    THROTTLE_SUSPEND,  /* a configured pattern: stop for suspend_ms */
};
/* Feed one outcome (any reply, delivered or not; BACKOFF and SUSPEND are
 * throttle signals). Replies are counted per reputation.window; when a
 * window that saw signals ends, the factor is multiplied once by
 *     decrease x (1 - share)      share = signals / replies in the window
 * (share at most 0.5 when the window held fewer than 10 replies), never
 * below the floor: max(min, min_rate / rate). The window after a decrease
 * is not judged: its replies answer messages sent at the old rate.
 * SUSPEND also stops the pair until now_wall_ms + suspend_ms. */
void throttle_signal(struct throttle_pair *p, const struct cfg_reputation *rep,
                     enum throttle_signal_kind kind, int64_t suspend_ms, int64_t now_ms,
                     int64_t now_wall_ms);
/* Call periodically (a few times a second): judges a window that ended
 * without further replies, lifts the factor to the floor, and after each
 * clean interval (no signal for reputation.interval) multiplies it by
 * 1 + increase x 2^k, k counting the increases since the last signal.
 * True when it raised the factor (jobs parked at the lower rate may come
 * back sooner). */
bool throttle_tick(struct throttle_pair *p, const struct cfg_reputation *rep, int64_t now_ms);
double throttle_factor(const struct throttle_pair *p);
/* The lowest factor the back-off goes to for this pair. */
double throttle_floor(const struct throttle_pair *p, const struct cfg_reputation *rep);
/* A limit scaled by the factor, at least 1. */
uint32_t throttle_scale(const struct throttle_pair *p, uint32_t limit);

/* Which signal a reply is: the configured rules first (first match wins),
 * then the built-in ones. *suspend_ms is set for THROTTLE_SUSPEND. */
enum throttle_signal_kind throttle_classify(const struct cfg_reputation *rep, int code,
                                            const char *enhanced, const char *text,
                                            bool connect_failure, const char *category,
                                            int64_t *suspend_ms);


/* ---------- a path's rate state for the shaping decision ---------- */

struct fairq;

/* The weight of a priority lane (an enum job_priority) under a binding
 * limit: high 4, normal 2, bulk 1, times the tenant's weight. */
double throttle_class_weight(uint32_t tenant_weight, int priority);

/* Fill the rate part of a path's shape_input from plain state: the pair,
 * the provider's rate (NULL or count 0: unrated), the pair's in-memory
 * fair queue (NULL: nothing waits in memory for it, so unrated), the
 * message's class (key NULL: the head of the queue, no class fields), how
 * many seconds of sending the in-memory queue may hold, the holder's
 * max_inflight and what it holds now. Reads in->now_mono_ms; sets horizon_ms, rated,
 * rate_wait_ms, queued and the class fields, nothing else. Pure: the gate
 * and `herald simulate` call the same code. */
/* The path's schedule of parked returns per class: the due time (wall
 * us) of its last parked message (0: none), note a new one (the schedule only moves
 * later), and forget them all (a reload or a recall: the jobs come back
 * to be spaced again). */
int64_t throttle_park_last(const struct throttle_pair *p, const char *class_key);
void throttle_park_note(struct throttle_pair *p, const char *class_key, int64_t due_us);
void throttle_park_forget(struct throttle_pair *p);

void throttle_shape_rate(struct shape_input *in, const struct throttle_pair *pair,
                         const struct cfg_rate *rate, struct fairq *q, const char *class_key,
                         double class_weight, double horizon_s, uint32_t max_inflight,
                         uint32_t held);

#endif
