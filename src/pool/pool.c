/* Per-worker SMTP connection pools. A destination (egress IP x target
 * address) owns a FIFO of messages and a list of connections; connections
 * pull from the FIFO whenever their session becomes ready, so reuse is
 * natural and no connection is handed work it cannot start.
 *
 * Sockets, SENDs, RECVs and TLS are the transport's (src/net/): the pool
 * sees plaintext. Lifetime: a connection is freed only from the
 * transport's on_quiet, once no ring operation references it. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "internal.h"

#define POOL_RBUF 16384

static void on_timer(struct ring_timer *t);

static void idle_add(struct pool_conn *c)
{
    if (c->on_idle)
        return;
    struct pool *p = c->p;
    c->on_idle = true;
    c->idle_prev = NULL;
    c->idle_next = p->idle_conns;
    if (p->idle_conns)
        p->idle_conns->idle_prev = c;
    p->idle_conns = c;
}

static void idle_remove(struct pool_conn *c)
{
    if (!c->on_idle)
        return;
    struct pool *p = c->p;
    if (c->idle_prev)
        c->idle_prev->idle_next = c->idle_next;
    else
        p->idle_conns = c->idle_next;
    if (c->idle_next)
        c->idle_next->idle_prev = c->idle_prev;
    c->on_idle = false;
    c->idle_prev = c->idle_next = NULL;
}
static void dest_dispatch(struct pool *p, struct pool_dest *d);
static void group_dispatch(struct pool *p, struct pool_group *g);
static void uncount_connecting(struct pool_conn *c);
static const struct xport_ops conn_xops;


int pool_init(struct pool *p, struct ring *r, pool_done_fn done, void *done_arg)
{
    memset(p, 0, sizeof *p);
    p->ring = r;
    p->done = done;
    p->done_arg = done_arg;
    p->dest_idle_ms = POOL_DEST_IDLE_MS;
    tls_session_cache_init(&p->tls_cache, 1024);
    p->tls_fallback_ms = 3600 * 1000;
    if (pool_map_init(&p->dests) < 0 || pool_map_init(&p->groups) < 0) {
        pool_map_free(&p->dests);
        return -ENOMEM;
    }
    return 0;
}

void pool_set_tls(struct pool *p, SSL_CTX *ctx)
{
    p->tls_ctx = ctx;
}

static int q_push(struct pool_dest *d, struct smtp_msg *m, int64_t now_ms)
{
    if (d->q_len == d->q_cap) {
        size_t cap = d->q_cap ? d->q_cap * 2 : 64;
        struct smtp_msg **nq = malloc(cap * sizeof *nq);
        if (!nq)
            return -ENOMEM;
        for (size_t i = 0; i < d->q_len; i++)
            nq[i] = d->q[(d->q_head + i) % d->q_cap];
        free(d->q);
        d->q = nq;
        d->q_cap = cap;
        d->q_head = 0;
    }
    d->q[(d->q_head + d->q_len) % d->q_cap] = m;
    d->q_len++;
    m->queued_ms = now_ms;
    return 0;
}

static struct smtp_msg *q_pop(struct pool_dest *d)
{
    if (d->q_len == 0)
        return NULL;
    struct smtp_msg *m = d->q[d->q_head];
    d->q_head = (d->q_head + 1) % d->q_cap;
    d->q_len--;
    return m;
}

/* --- session callbacks --- */

/* More connections open on the destination's shared counter than the
 * process may hold now (its grant shrank: another process joined). */
static bool over_shared_cap(const struct pool_dest *d)
{
    if (!d->lim.shared_max || !d->lim.open_counter)
        return false;
    int cap = atomic_load(d->lim.shared_max);
    return atomic_load(d->lim.open_counter) > (cap < 0 ? 1 : cap);
}

static uint32_t fair_share(const struct pool_dest *d)
{
    uint32_t max = d->lim.max_conns ? d->lim.max_conns : 1;
    return d->lim.fair_conns && d->lim.fair_conns < max ? d->lim.fair_conns : max;
}

/* Another worker's pool asked for a slot of this path within the last
 * second (it has mail and less than its share of the connections). */
static bool slot_wanted(const struct pool_dest *d, int64_t now)
{
    _Atomic int64_t *want = d->lim.slot_wanted_ms;
    int64_t at = want ? atomic_load(want) : 0;
    return at > 0 && now - at < 1000;
}

/* While another worker asks, a pool holding more than its share of the
 * group retires connections after their message, down to its share, and
 * opens none above it: the workers with mail end up with a share each,
 * instead of one worker keeping every connection busy while the others'
 * mail waits in memory. */
static bool gives_slot_back(const struct pool_conn *c)
{
    return c->d->g->n_conns > fair_share(c->d) && slot_wanted(c->d, c->p->ring->now_ms);
}

static struct smtp_msg *conn_next_msg(void *owner)
{
    struct pool_conn *c = owner;
    c->was_ready = true;
    /* Until its session is ready (banner, EHLO, TLS, AUTH done) a connection
     * counts as on its way, so a queued message does not open a second one. */
    uncount_connecting(c);
    if (c->p->closing || c->closing)
        return NULL;
    if (over_shared_cap(c->d)) {
        c->retire = true; /* the process holds more than its grant: give one back */
        return NULL;
    }
    if (gives_slot_back(c)) {
        c->retire = true; /* another worker has mail and less than its share */
        return NULL;
    }
    struct smtp_msg *m = q_pop(c->d);
    if (m)
        idle_remove(c);
    return m;
}

static void conn_info(struct pool_conn *c, struct pool_conn_info *info)
{
    info->mx = c->d->target.host;
    info->remote_ip = c->remote_ip;
    info->local_ip = c->local_ip;
    info->tls = xport_tls_ready(&c->x) ? c->tls_desc : "none";
    info->tls_note = c->d->tls_fallback_until > c->p->ring->now_ms ? c->d->tls_fallback_why : NULL;
}

static void conn_msg_done(void *owner, struct smtp_msg *msg, const struct smtp_result *res)
{
    struct pool_conn *c = owner;
    struct pool_conn_info info;
    conn_info(c, &info);
    c->p->done(c->p->done_arg, msg, res, &info);
}

static const struct smtp_session_ops conn_ops = {
    .next_msg = conn_next_msg,
    .msg_done = conn_msg_done,
};

/* --- connection I/O --- */

static void uncount_connecting(struct pool_conn *c)
{
    if (c->counted_connecting) {
        c->counted_connecting = false;
        c->d->n_connecting--;
        /* One fewer on its way: pool_tick may open another for what waits. */
        if (c->d->q_len > c->d->n_connecting && c->d->lim.shared_max)
            pool_dest_starve(c->p, c->d);
    }
}

static void conn_close(struct pool_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    idle_remove(c);
    ring_timer_cancel(c->p->ring, &c->timer);
    xport_close(&c->x); /* reap_conn runs from its on_quiet */
}

/* The connection is over: keep the session's error as the reason when no
 * message got through yet, then close. */
static void conn_lost(struct pool_conn *c)
{
    if (!c->was_ready) {
        c->fail = c->s.error;
        c->has_fail = true;
    }
    conn_close(c);
}

static void conn_fail_early(struct pool_conn *c, enum smtp_stage stage, const char *fmt, int err)
{
    c->has_fail = true;
    memset(&c->fail, 0, sizeof c->fail);
    c->fail.outcome = SMTP_OUT_NETFAIL;
    c->fail.stage = stage;
    c->fail.err = err < 0 ? err : -err;
    char ip[INET6_ADDRSTRLEN];
    sockaddr_ip(&c->d->target.sa, ip, sizeof ip);
    snprintf(c->fail.reply, sizeof c->fail.reply, fmt, c->d->target.host, ip,
             sockaddr_port(&c->d->target.sa), herald_strerror(err));
    conn_close(c);
}

static const char *xport_reason(struct pool_conn *c, int err)
{
    if (err == -HERR_TLS)
        return tls_conn_error(&c->x.tls);
    return err == -ENOMEM ? "out of memory" : herald_strerror(err);
}

/* Hand what the session produced to the transport, which sends it (through
 * TLS when on) one SEND at a time. */
static void conn_flush(struct pool_conn *c)
{
    if (c->closing || !c->session_live || c->s.out.len == 0)
        return;
    int rc = xport_send_buf(&c->x, &c->s.out);
    if (rc < 0) {
        hbuf_reset(&c->s.out);
        smtp_session_fail(&c->s, rc, xport_reason(c, rc));
        conn_lost(c);
    }
}

static SSL_CTX *conn_tls_ctx(const struct pool_conn *c)
{
    return c->d->lim.tls_ctx ? c->d->lim.tls_ctx : c->p->tls_ctx;
}

static void conn_tls_start(struct pool_conn *c)
{
    struct pool *p = c->p;
    SSL_SESSION *resume = tls_session_cache_get(&p->tls_cache, c->d->key);
    int rc = -ENOTSUP;
    SSL_CTX *ctx = conn_tls_ctx(c);
    if (ctx) {
        struct xport_tls_opts o = {
            .ctx = ctx,
            .host = c->d->target.host,
            .verify = c->d->lim.tls_verify ? TLS_VERIFY_PEER : TLS_VERIFY_NONE,
            .resume = resume,
            .save_to = &p->tls_cache,
            .save_key = c->d->key,
        };
        rc = xport_start_tls(&c->x, &o);
    }
    if (rc < 0) {
        const char *why = ctx ? tls_conn_error(&c->x.tls) : "TLS is not configured";
        if (smtp_session_wants_tls(&c->s))
            smtp_session_tls_done(&c->s, rc, why, p->ring->now_ms);
        else
            smtp_session_fail(&c->s, rc, why);
        return;
    }
    log_event(LOG_DEBUG, "event=tls_start dest=%s offer_session=%d", c->d->key, resume ? 1 : 0);
}

/* While a reply is owed: the session's deadline, or sooner the moment a
 * send has made no progress for data_block_ms (RFC 5321 4.5.3.2: a peer
 * that stops reading must not hold the connection for the whole data_end). */
static int64_t conn_send_stall_at(const struct pool_conn *c)
{
    int64_t block = c->s.timeouts.data_block_ms;
    if (block <= 0 || !xport_send_pending(&c->x))
        return 0;
    return c->x.send_progress_ms + block;
}

static void conn_arm_deadline(struct pool_conn *c)
{
    int64_t at = c->s.deadline_ms, stall = conn_send_stall_at(c);
    if (stall > 0 && (at <= 0 || stall < at))
        at = stall;
    if (at > 0)
        ring_timer_arm(c->p->ring, &c->timer, at);
}

/* After every session step: send what it produced, close when it ended,
 * and keep exactly one timer armed for what it waits on. */
static void conn_after(struct pool_conn *c)
{
    if (c->closing)
        return;
    if (smtp_session_wants_tls(&c->s) && !xport_tls_started(&c->x))
        conn_tls_start(c);
    if (smtp_session_is_closed(&c->s) && c->s.out.len == 0 && xport_is_drained(&c->x)) {
        conn_lost(c);
        return;
    }
    conn_flush(c);
    if (c->closing)
        return;
    struct ring *r = c->p->ring;
    if (smtp_session_is_idle(&c->s)) {
        if (c->p->closing || c->retire) {
            smtp_session_quit(&c->s, r->now_ms);
            conn_flush(c);
            if (c->closing)
                return;
            ring_timer_arm(r, &c->timer, c->s.deadline_ms);
        } else {
            idle_add(c);
            ring_timer_arm(r, &c->timer, r->now_ms + c->d->lim.idle_timeout_ms);
        }
    } else if (smtp_session_is_closed(&c->s)) {
        /* Waiting for the last bytes (QUIT) to leave; bound it anyway. */
        ring_timer_arm(r, &c->timer, r->now_ms + 5000);
    } else {
        conn_arm_deadline(c);
    }
}

static int conn_open(struct pool *p, struct pool_dest *d)
{
    struct pool_conn *c = calloc(1, sizeof *c);
    if (!c)
        return -ENOMEM;
    if (xport_init(&c->x, p->ring, &conn_xops, c, POOL_RBUF) < 0) {
        xport_free(&c->x);
        free(c);
        return -ENOMEM;
    }
    c->p = p;
    c->d = d;
    ring_timer_init(&c->timer, on_timer);
    sockaddr_ip(&d->target.sa, c->remote_ip, sizeof c->remote_ip);
    c->next = d->conns;
    d->conns = c;
    d->n_conns++;
    d->g->n_conns++;
    d->n_connecting++;
    c->counted_connecting = true;
    p->n_conns++;
    /* Counted by the caller's reservation (reserve_slot). */
    c->open_counter = d->lim.open_counter;
    const struct sockaddr *src = d->egress_len ? (const struct sockaddr *)&d->egress_sa : NULL;
    int rc = xport_connect(&c->x, (const struct sockaddr *)&d->target.sa, d->target.sa_len, src,
                           d->egress_len, d->lim.connect_timeout_ms);
    if (rc < 0)
        conn_fail_early(c, SMTP_STAGE_CONNECT,
                        c->x.bind_failed ? "bind for %s [%s]:%u failed: %s"
                                         : "connect to %s [%s]:%u failed: %s",
                        rc);
    return 0;
}

/* --- transport callbacks --- */

static void conn_on_connected(void *owner)
{
    struct pool_conn *c = owner;
    struct sockaddr_storage local;
    socklen_t len = sizeof local;
    if (getsockname(c->x.fd, (struct sockaddr *)&local, &len) == 0)
        sockaddr_ip(&local, c->local_ip, sizeof c->local_ip);
    smtp_session_init(&c->s, &conn_ops, c, c->d->ehlo, &c->d->lim.smtp,
                      c->d->lim.max_msgs_per_conn, c->p->ring->now_ms);
    enum smtp_tls_mode mode = c->d->lim.tls_mode;
    if (mode == SMTP_TLS_TRY && (!conn_tls_ctx(c) || c->d->tls_fallback_until > c->p->ring->now_ms))
        mode = SMTP_TLS_OFF;
    smtp_session_set_security(&c->s, mode, c->d->lim.tls_verify, c->d->lim.auth);
    c->session_live = true;
    if (mode == SMTP_TLS_ACTIVE)
        conn_tls_start(c);
    conn_after(c);
}

static void conn_on_tls_ready(void *owner)
{
    struct pool_conn *c = owner;
    tls_conn_describe(&c->x.tls, c->tls_desc, sizeof c->tls_desc);
    log_event(LOG_DEBUG, "event=tls_established dest=%s tls=%s resumed=%d", c->d->key,
              c->tls_desc, tls_conn_reused(&c->x.tls) ? 1 : 0);
    if (smtp_session_wants_tls(&c->s))
        smtp_session_tls_done(&c->s, 0, NULL, c->p->ring->now_ms);
    conn_after(c);
}

static void conn_on_data(void *owner, const char *p, size_t n)
{
    struct pool_conn *c = owner;
    smtp_session_recv(&c->s, p, n, c->p->ring->now_ms);
    conn_after(c);
    /* Once the session has ended nothing it could still receive matters. */
    if (!c->closing && smtp_session_is_closed(&c->s))
        xport_read_stop(&c->x);
}

static void conn_on_sent(void *owner)
{
    struct pool_conn *c = owner;
    if (c->session_live)
        conn_after(c);
}

/* The transport stopped by itself: word the failure as the session's, by
 * where it happened. */
static void conn_on_closed(void *owner, int err, enum xport_op op)
{
    struct pool_conn *c = owner;
    if (c->closing)
        return;
    if (op == XPORT_OP_CONNECT) {
        conn_fail_early(c, SMTP_STAGE_CONNECT, "connect to %s [%s]:%u failed: %s", err);
        return;
    }
    char why[640];
    switch (op) {
    case XPORT_OP_RECV:
        snprintf(why, sizeof why, "%s in state %s",
                 err == -HERR_CLOSED ? "connection closed by server" : herald_strerror(err),
                 smtp_state_name(c->s.state));
        if (!smtp_session_is_closed(&c->s))
            smtp_session_fail(&c->s, err, why);
        break;
    case XPORT_OP_SEND:
        smtp_session_fail(&c->s, err, "send failed");
        break;
    case XPORT_OP_HANDSHAKE:
        snprintf(why, sizeof why, "%s (%s [%s])", tls_conn_error(&c->x.tls), c->d->target.host,
                 c->remote_ip);
        if (smtp_session_wants_tls(&c->s)) {
            smtp_session_tls_done(&c->s, -HERR_TLS, why, c->p->ring->now_ms);
        } else {
            smtp_session_fail(&c->s, -HERR_TLS, why);
            c->s.error.stage = SMTP_STAGE_TLS; /* implicit TLS: it never got to the banner */
        }
        break;
    default:
        smtp_session_fail(&c->s, err, err == -HERR_CLOSED ? "TLS closed by server"
                                                          : xport_reason(c, err));
        break;
    }
    /* Nothing more will arrive: drop whatever is unsent. */
    hbuf_reset(&c->s.out);
    conn_lost(c);
}

static void on_timer(struct ring_timer *t)
{
    struct pool_conn *c = HERALD_CONTAINER_OF(t, struct pool_conn, timer);
    if (c->closing || !c->session_live)
        return; /* the connect deadline is the transport's */
    struct ring *r = c->p->ring;
    if (smtp_session_is_idle(&c->s)) {
        smtp_session_quit(&c->s, r->now_ms);
        conn_after(c);
        return;
    }
    if (smtp_session_is_closed(&c->s)) {
        conn_close(c);
        return;
    }
    char why[96];
    int64_t stall = conn_send_stall_at(c);
    if (stall > 0 && r->now_ms >= stall) {
        snprintf(why, sizeof why, "timed out sending in state %s (no progress for %llds)",
                 smtp_state_name(c->s.state), (long long)(c->s.timeouts.data_block_ms / 1000));
    } else if (c->s.deadline_ms <= 0 || r->now_ms < c->s.deadline_ms) {
        conn_arm_deadline(c); /* the send moved on since the timer was armed */
        return;
    } else {
        snprintf(why, sizeof why, "timed out in state %s", smtp_state_name(c->s.state));
    }
    smtp_session_fail(&c->s, -HERR_TIMEOUT, why);
    hbuf_reset(&c->s.out);
    conn_lost(c);
}

/* A destination with no usable connection left fails its queue with the
 * last connection's reason, so messages go to retry instead of waiting. */
static void dest_fail_queue(struct pool *p, struct pool_dest *d, const struct smtp_result *why)
{
    struct pool_conn_info info = {.mx = d->target.host, .remote_ip = "", .local_ip = "",
                                  .tls = "none"};
    char ip[INET6_ADDRSTRLEN];
    sockaddr_ip(&d->target.sa, ip, sizeof ip);
    info.remote_ip = ip;
    struct smtp_msg *m;
    while ((m = q_pop(d)) != NULL)
        p->done(p->done_arg, m, why, &info);
}

/* The transport is quiet (its fd closed, nothing in flight): account the
 * connection out, free it, and let its destination's group move on. */
static void reap_conn_body(struct pool_conn *c, struct pool *p, struct pool_dest *d)
{
    if (c->session_live && !smtp_session_is_closed(&c->s))
        smtp_session_fail(&c->s, -HERR_CLOSED, "connection closed");
    idle_remove(c);
    uncount_connecting(c);
    for (struct pool_conn **pp = &d->conns; *pp; pp = &(*pp)->next)
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    d->n_conns--;
    d->g->n_conns--;
    p->n_conns--;
    if (c->open_counter)
        atomic_fetch_sub(c->open_counter, 1);
    bool failed_early = !c->was_ready && c->has_fail;
    struct smtp_result why = c->fail;
    bool tls_broke = failed_early && why.stage == SMTP_STAGE_TLS &&
                     why.outcome == SMTP_OUT_NETFAIL && d->lim.tls_mode == SMTP_TLS_TRY;
    if (c->session_live)
        smtp_session_free(&c->s);
    xport_free(&c->x);
    free(c);

    if (tls_broke && !p->closing && d->tls_fallback_until <= p->ring->now_ms) {
        /* Opportunistic: a broken TLS stack should not stop the mail; try
         * this host once more without STARTTLS and keep doing so for a while. */
        d->tls_fallback_until = p->ring->now_ms + p->tls_fallback_ms;
        snprintf(d->tls_fallback_why, sizeof d->tls_fallback_why,
                 "STARTTLS failed (%.180s); retried without TLS", why.reply);
        log_event(LOG_WARN, "event=tls_fallback dest=%s reason=%s", LOG_VALUE(d->key),
                  LOG_VALUE(why.reply));
        group_dispatch(p, d->g);
        return;
    }

    if (p->closing) {
        while (d->q_len)
            p->done(p->done_arg, q_pop(d), NULL, NULL);
        return;
    }
    if (failed_early) {
        bool other_ready = false;
        for (struct pool_conn *o = d->conns; o; o = o->next)
            if (o->was_ready && !o->closing)
                other_ready = true;
        if (!other_ready) {
            log_event(LOG_WARN, "event=destination_failed dest=%s reason=%s queued=%zu",
                      LOG_VALUE(d->key), LOG_VALUE(why.reply), d->q_len);
            dest_fail_queue(p, d, &why);
        }
    }
    group_dispatch(p, d->g);
}

static void reap_conn(void *owner)
{
    struct pool_conn *c = owner;
    struct pool *p = c->p;
    struct pool_dest *d = c->d;
    reap_conn_body(c, p, d);
    if (!p->closing && d->q_len == 0 && d->n_conns == 0)
        pool_dest_idle(p, d); /* freed by pool_tick once idle long enough */
}

static const struct xport_ops conn_xops = {
    .on_connected = conn_on_connected,
    .on_tls_ready = conn_on_tls_ready,
    .on_sent = conn_on_sent,
    .on_data = conn_on_data,
    .on_closed = conn_on_closed,
    .on_quiet = reap_conn,
};

/* Count one more open connection on the destination's shared counter,
 * unless that would pass the process-wide cap (shared by every worker's
 * pool: compare-and-swap, so two workers cannot both take the last). */
static bool reserve_slot(const struct pool_dest *d)
{
    atomic_int *ctr = d->lim.open_counter;
    if (!ctr)
        return true;
    int cur = atomic_load(ctr);
    for (;;) {
        int cap = d->lim.shared_max ? atomic_load(d->lim.shared_max) : INT32_MAX;
        if (cur >= (cap < 0 ? 1 : cap))
            return false;
        if (atomic_compare_exchange_weak(ctr, &cur, cur + 1))
            return true;
    }
}

static void dest_dispatch(struct pool *p, struct pool_dest *d)
{
    for (struct pool_conn *c = d->conns; c && d->q_len; c = c->next) {
        if (!c->closing && c->session_live && smtp_session_is_idle(&c->s)) {
            smtp_session_kick(&c->s, p->ring->now_ms);
            conn_after(c);
        }
    }
    uint32_t max = d->lim.max_conns ? d->lim.max_conns : 1;
    struct pool_group *g = d->g;
    bool refused = false;
    bool yield = slot_wanted(d, p->ring->now_ms);
    while (d->q_len > d->n_connecting && d->n_conns < max && g->n_conns < max && !p->closing &&
           !(yield && g->n_conns >= fair_share(d))) {
        if (!reserve_slot(d)) {
            refused = true;
            break;
        }
        if (conn_open(p, d) < 0) {
            if (d->lim.open_counter)
                atomic_fetch_sub(d->lim.open_counter, 1);
            break;
        }
    }
    /* Messages and less than a share of the group's connections, the
     * process's slots all taken by other workers: ask for one (an idle
     * connection there gives it back, or a busy one of a worker holding
     * more than its share retires after its message). */
    if (refused && g->n_conns < fair_share(d) && d->lim.slot_wanted_ms)
        atomic_store(d->lim.slot_wanted_ms, p->ring->now_ms);
    if (d->q_len > d->n_connecting && d->lim.shared_max && !p->closing)
        pool_dest_starve(p, d); /* pool_tick tries again for a slot given back */
    /* The group is full and this destination has nothing to send on: an
     * idle connection of another destination gives up its slot (its QUIT
     * ends in reap_conn, which dispatches the group again). */
    if (d->q_len > 0 && d->n_conns == 0 && g->n_conns >= max && !p->closing) {
        for (struct pool_dest *o = g->dests; o; o = o->g_next)
            for (struct pool_conn *c = o->conns; c; c = c->next)
                if (o != d && !c->closing && c->session_live && smtp_session_is_idle(&c->s)) {
                    smtp_session_quit(&c->s, p->ring->now_ms);
                    conn_after(c);
                    return;
                }
    }
}

static void group_dispatch(struct pool *p, struct pool_group *g)
{
    for (struct pool_dest *d = g->dests; d; d = d->g_next)
        if (d->q_len > 0) dest_dispatch(p, d);
}

int pool_submit(struct pool *p, const struct pool_target *target, const char *egress_ip,
                const char *ehlo_name, const struct pool_limits *lim, struct smtp_msg *msg)
{
    struct pool_dest *d = pool_dest_get(p, target, egress_ip ? egress_ip : "", ehlo_name, lim);
    if (!d)
        return -ENOMEM;
    pool_dest_busy(p, d);
    int rc = q_push(d, msg, p->ring->now_ms);
    if (rc)
        return rc;
    dest_dispatch(p, d);
    return 0;
}

void pool_tick(struct pool *p)
{
    if (p->closing)
        return;
    struct pool_dest *next;
    for (struct pool_dest *d = pool_take_starved(p); d; d = next) {
        next = d->starved_next;
        d->starved = false;
        if (d->q_len > d->n_connecting && d->lim.shared_max)
            dest_dispatch(p, d);
    }
    /* Another worker waits for a slot of a path this pool holds idle:
     * give it back (QUIT; the slot frees when the connection is reaped). */
    int64_t now = p->ring->now_ms;
    struct pool_conn *cn;
    for (struct pool_conn *c = p->idle_conns; c; c = cn) {
        cn = c->idle_next;
        _Atomic int64_t *want = c->d->lim.slot_wanted_ms;
        if (!want || c->closing || !c->session_live || !smtp_session_is_idle(&c->s) ||
            c->d->q_len > 0)
            continue;
        int64_t at = atomic_load(want);
        if (at > 0 && now - at < 1000) {
            idle_remove(c);
            smtp_session_quit(&c->s, now);
            conn_after(c);
        }
    }
    pool_evict_idle(p, p->ring->now_ms);
}

void pool_close_all(struct pool *p)
{
    p->closing = true;
    POOL_MAP_EACH(&p->dests, n, tmp)
    {
        struct pool_dest *d = HERALD_CONTAINER_OF(n, struct pool_dest, node);
        while (d->q_len)
            p->done(p->done_arg, q_pop(d), NULL, NULL);
        for (struct pool_conn *c = d->conns; c; c = c->next) {
            if (c->closing)
                continue;
            if (!c->session_live)
                conn_close(c);
            else if (smtp_session_is_idle(&c->s))
                conn_after(c);
        }
    }
}

void pool_abort_all(struct pool *p)
{
    p->closing = true;
    POOL_MAP_EACH(&p->dests, n, tmp)
    {
        struct pool_dest *d = HERALD_CONTAINER_OF(n, struct pool_dest, node);
        while (d->q_len)
            p->done(p->done_arg, q_pop(d), NULL, NULL);
        for (struct pool_conn *c = d->conns; c; c = c->next)
            if (!c->closing) {
                if (c->session_live && !smtp_session_is_closed(&c->s))
                    smtp_session_fail(&c->s, -ECANCELED, "shutting down");
                conn_close(c);
            }
    }
}

bool pool_is_quiet(const struct pool *p)
{
    return p->n_conns == 0;
}

void pool_free(struct pool *p)
{
    pool_registry_free(p);
    tls_session_cache_free(&p->tls_cache);
}
