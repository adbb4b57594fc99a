/* The inbound listener (inbound.h): one thread, one poll loop over the
 * listening sockets and up to inbound.max_connections sessions, each the
 * pure SMTP machine of smtpd.h. Everything a peer can make it do is
 * bounded: a command line (SMTPD_LINE_MAX), a message
 * (inbound.max_message_bytes, 552 beyond), the connections (421 beyond),
 * messages a second over all peers (inbound.rate, 421 beyond), and time
 * without a byte (inbound.timeout). A peer that misbehaves costs its own
 * connection; a report that cannot be noted (Redis away) is answered 451
 * so the sender tries again later. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "herald/core.h"
#include "herald/inbound.h"
#include "herald/smtpd.h"
#include "inbound/inb.h"

#define MAX_LISTEN 8
#define RECV_CHUNK 16384

struct iconn {
    int fd;
    struct smtpd_session s;
    int64_t last_ms;
    size_t out_off; /* of s.out, already sent */
    bool closing;   /* flush out, then close */
    char peer[64];
};

struct inbound {
    pthread_t thread;
    bool started;
    atomic_bool stop;
    int wake[2];
    int lfd[MAX_LISTEN];
    size_t n_lfd;
    struct smtpd_policy policy;
    struct smtpd_limiter limiter;
    struct iconn *conns;
    uint32_t max_conns;
    int64_t timeout_ms;
    char **domains;
    size_t n_domains;
    struct inb_ctx ctx;
    uint64_t counts[INB_OUTCOME_COUNT];
    _Atomic uint64_t *shared_counts; /* the metrics' copy, or NULL */
    inbound_noted_fn noted;
    void *noted_arg;
};

/* RCPT: a VERP address, or postmaster/abuse/fbl, at a return domain. The
 * token is checked for shape here and for its MAC when the report is
 * handled; a made-up one is refused there, and noted nowhere. */
static bool accept_rcpt(void *arg, const char *addr, size_t len)
{
    struct inbound *in = arg;
    const char *at = memrchr(addr, '@', len);
    if (!at || at == addr)
        return false;
    size_t local = (size_t)(at - addr), dlen = len - local - 1;
    bool ours = false;
    for (size_t i = 0; i < in->n_domains && !ours; i++)
        ours = strlen(in->domains[i]) == dlen && strncasecmp(in->domains[i], at + 1, dlen) == 0;
    if (!ours)
        return false;
    static const char *const roles[] = {"postmaster", "abuse", "fbl"};
    for (size_t i = 0; i < HERALD_ARRAY_LEN(roles); i++)
        if (strlen(roles[i]) == local && strncasecmp(roles[i], addr, local) == 0)
            return true;
    return local == FB_VERP_LOCAL_LEN && strncasecmp(addr, FB_VERP_PREFIX, 2) == 0;
}

static int listen_on(const char *spec, char *err, size_t errlen)
{
    struct sockaddr_storage sa;
    unsigned len;
    if (config_parse_listen(spec, &sa, &len) < 0) {
        snprintf(err, errlen, "inbound.listen: bad address %s", spec);
        return -HERR_CONFIG;
    }
    int fd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&sa, len) < 0 || listen(fd, 64) < 0) {
        int e = errno;
        snprintf(err, errlen, "inbound.listen %s: %s", spec, strerror(e));
        if (fd >= 0)
            close(fd);
        return -e;
    }
    return fd;
}

static void conn_close(struct iconn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    smtpd_session_free(&c->s);
    c->fd = -1;
}

static bool redis_ready(struct inbound *in)
{
    if (in->ctx.rc && in->ctx.rc->err) {
        redisFree(in->ctx.rc);
        in->ctx.rc = NULL;
    }
    if (in->ctx.rc)
        return true;
    char why[256];
    in->ctx.rc = redis_sync_connect(&in->ctx.addr, 5000, why, sizeof why);
    if (!in->ctx.rc)
        log_event(LOG_WARN, "event=inbound_redis_unavailable reason=%s", LOG_VALUE(why));
    return in->ctx.rc != NULL;
}

/* The message the session just accepted (its 250 is in out). One whose
 * note could not be written gets 451 instead, so it comes again. */
static void on_message(struct inbound *in, struct iconn *c)
{
    struct smtpd_session *s = &c->s;
    char from[SMTPD_ADDR_MAX + 1], rcpt[SMTPD_ADDR_MAX + 1];
    snprintf(from, sizeof from, "%.*s", (int)s->from.len, s->from.data ? s->from.data : "");
    /* the first VERP recipient names the job; else the first one */
    const char *r = s->rcpts.data ? s->rcpts.data : "";
    size_t rl = s->rcpts.len;
    const char *pick = r;
    size_t pick_len = memchr(r, ',', rl) ? (size_t)((const char *)memchr(r, ',', rl) - r) : rl;
    for (const char *p = r; p < r + rl;) {
        const char *comma = memchr(p, ',', (size_t)(r + rl - p));
        size_t n = comma ? (size_t)(comma - p) : (size_t)(r + rl - p);
        if (n > 2 && strncasecmp(p, FB_VERP_PREFIX, 2) == 0) {
            pick = p;
            pick_len = n;
            break;
        }
        p += n + 1;
    }
    snprintf(rcpt, sizeof rcpt, "%.*s", (int)pick_len, pick);
    enum inbound_outcome o = INB_FAILED;
    char detail[600] = "";
    if (redis_ready(in))
        o = inb_handle(&in->ctx, from, rcpt, s->body.data ? s->body.data : "", s->body.len,
                       clock_wall_ms(), detail, sizeof detail);
    in->counts[o]++;
    if (in->shared_counts)
        atomic_fetch_add(&in->shared_counts[o], 1);
    if (in->noted && (o == INB_NOTED_BOUNCE || o == INB_NOTED_COMPLAINT))
        in->noted(in->noted_arg, in->ctx.last_tenant, o);
    log_event(o == INB_FAILED ? LOG_WARN : LOG_INFO,
              "event=inbound_report outcome=%s peer=%s mail_from=%s rcpt=%s bytes=%zu %s",
              inbound_outcome_name(o), c->peer, LOG_VALUE(from), LOG_VALUE(rcpt), s->body.len,
              detail);
    if (o == INB_FAILED)
        (void)smtpd_session_retract(s, c->out_off);
}

static void conn_send(struct iconn *c)
{
    struct hbuf *o = &c->s.out;
    while (c->out_off < o->len) {
        ssize_t n = send(c->fd, o->data + c->out_off, o->len - c->out_off,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (n <= 0) {
            conn_close(c);
            return;
        }
        c->out_off += (size_t)n;
    }
    o->len = 0;
    c->out_off = 0;
    if (c->closing)
        conn_close(c);
}

static void conn_read(struct inbound *in, struct iconn *c, int64_t now)
{
    char buf[RECV_CHUNK];
    ssize_t n = recv(c->fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(c);
        return;
    }
    c->last_ms = now;
    size_t off = 0;
    while (off < (size_t)n && c->fd >= 0 && !c->closing) {
        size_t used = 0;
        enum smtpd_event ev = smtpd_session_feed(&c->s, buf + off, (size_t)n - off, &used);
        off += used;
        if (ev == SMTPD_EV_MESSAGE) {
            on_message(in, c);
        } else if (ev == SMTPD_EV_DROP) {
            conn_close(c);
            return;
        } else if (ev == SMTPD_EV_CLOSE) {
            c->closing = true;
        } else if (ev == SMTPD_EV_NEED_MORE) {
            break;
        }
    }
    conn_send(c);
}

static void accept_one(struct inbound *in, int lfd, int64_t now)
{
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    int fd = accept4(lfd, (struct sockaddr *)&sa, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return;
    struct iconn *c = NULL;
    for (uint32_t i = 0; i < in->max_conns && !c; i++)
        if (in->conns[i].fd < 0)
            c = &in->conns[i];
    if (!c) {
        static const char busy[] = "421 4.7.0 Too many connections, try again later\r\n";
        (void)send(fd, busy, sizeof busy - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        close(fd);
        return;
    }
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->last_ms = now;
    if (!sockaddr_ip(&sa, c->peer, sizeof c->peer))
        snprintf(c->peer, sizeof c->peer, "-");
    smtpd_session_init(&c->s, &in->policy, (uint64_t)now, (uint64_t)fd);
    conn_send(c);
}

static void *run(void *arg)
{
    struct inbound *in = arg;
    struct pollfd *pfd = calloc(in->n_lfd + 1 + in->max_conns, sizeof *pfd);
    uint32_t *which = calloc(in->max_conns + 1, sizeof *which);
    if (!pfd || !which) {
        log_event(LOG_ERROR, "event=inbound_stopped reason=\"out of memory\"");
        free(pfd);
        free(which);
        return NULL;
    }
    while (!atomic_load(&in->stop)) {
        size_t n = 0;
        pfd[n++] = (struct pollfd){.fd = in->wake[0], .events = POLLIN};
        for (size_t i = 0; i < in->n_lfd; i++)
            pfd[n++] = (struct pollfd){.fd = in->lfd[i], .events = POLLIN};
        size_t first_conn = n, nc = 0;
        for (uint32_t i = 0; i < in->max_conns; i++) {
            struct iconn *c = &in->conns[i];
            if (c->fd < 0)
                continue;
            short ev = POLLIN;
            if (c->out_off < c->s.out.len)
                ev |= POLLOUT;
            which[nc++] = i;
            pfd[n++] = (struct pollfd){.fd = c->fd, .events = ev};
        }
        int rc = poll(pfd, n, 1000);
        int64_t now = clock_mono_ms();
        if (rc < 0 && errno != EINTR)
            break;
        for (size_t k = 0; k < nc; k++) {
            struct iconn *c = &in->conns[which[k]];
            short re = pfd[first_conn + k].revents;
            if (c->fd >= 0 && (re & POLLOUT))
                conn_send(c);
            if (c->fd >= 0 && (re & (POLLIN | POLLHUP | POLLERR)))
                conn_read(in, c, now);
            if (c->fd >= 0 && now - c->last_ms > in->timeout_ms) {
                log_event(LOG_INFO, "event=inbound_timeout peer=%s", c->peer);
                conn_close(c);
            }
        }
        for (size_t i = 0; i < in->n_lfd; i++)
            if (pfd[1 + i].revents & POLLIN)
                accept_one(in, in->lfd[i], now);
    }
    free(pfd);
    free(which);
    return NULL;
}

static void free_all(struct inbound *in)
{
    for (uint32_t i = 0; in->conns && i < in->max_conns; i++)
        if (in->conns[i].fd >= 0)
            conn_close(&in->conns[i]);
    for (size_t i = 0; i < in->n_lfd; i++)
        close(in->lfd[i]);
    for (int i = 0; i < 2; i++)
        if (in->wake[i] >= 0)
            close(in->wake[i]);
    for (size_t i = 0; i < in->n_domains; i++)
        free(in->domains[i]);
    free(in->domains);
    free(in->conns);
    if (in->ctx.rc)
        redisFree(in->ctx.rc);
    explicit_bzero(&in->ctx.keys, sizeof in->ctx.keys);
    free(in);
}

int inbound_start(const struct config *cfg, const struct redis_addr *redis,
                  const struct fb_keys *keys, const struct keys *K,
                  _Atomic uint64_t *counts, inbound_noted_fn noted, void *noted_arg,
                  struct inbound **out, char *err, size_t errlen)
{
    const struct cfg_inbound *ic = &cfg->inbound;
    *out = NULL;
    if (ic->listen.n == 0)
        return 0;
    struct inbound *in = calloc(1, sizeof *in);
    if (!in)
        return -ENOMEM;
    in->wake[0] = in->wake[1] = -1;
    in->max_conns = ic->max_connections;
    in->timeout_ms = ic->timeout_ms;
    in->conns = calloc(in->max_conns, sizeof *in->conns);
    in->domains = calloc(ic->domains.n ? ic->domains.n : 1, sizeof *in->domains);
    if (!in->conns || !in->domains || pipe2(in->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        free_all(in);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < in->max_conns; i++)
        in->conns[i].fd = -1;
    for (size_t i = 0; i < ic->domains.n; i++)
        if ((in->domains[in->n_domains] = strdup(ic->domains.items[i])))
            in->n_domains++;
    in->shared_counts = counts;
    in->noted = noted;
    in->noted_arg = noted_arg;
    in->ctx.addr = *redis;
    in->ctx.keys = *keys;
    in->ctx.K = *K;
    in->ctx.index_ttl_ms = ic->index_ttl_ms;
    in->ctx.complaint_rate = ic->complaint_rate;
    in->ctx.complaint_min_delivered = ic->complaint_min_delivered;
    in->ctx.complaint_suspend_ms = ic->complaint_suspend_ms;
    snprintf(in->ctx.events, sizeof in->ctx.events, "%s", cfg->redis.events);
    in->limiter.per_sec = ic->rate_per_s;
    in->policy = (struct smtpd_policy){
        .banner = "herald inbound ESMTP (reports only)",
        .hostname = ic->domains.n ? ic->domains.items[0] : "localhost",
        .pipelining = true,
        .keep_body = true,
        .max_size = ic->max_message_bytes,
        .limiter = &in->limiter,
        .limit_text = "421 4.7.0 Too many messages, try again later",
        .accept_rcpt = accept_rcpt,
        .rcpt_arg = in,
    };
    for (size_t i = 0; i < ic->listen.n && i < MAX_LISTEN; i++) {
        int fd = listen_on(ic->listen.items[i], err, errlen);
        if (fd < 0) {
            free_all(in);
            return fd;
        }
        in->lfd[in->n_lfd++] = fd;
    }
    if (pthread_create(&in->thread, NULL, run, in) != 0) {
        snprintf(err, errlen, "inbound: cannot start its thread");
        free_all(in);
        return -EAGAIN;
    }
    in->started = true;
    for (size_t i = 0; i < in->n_lfd; i++)
        log_event(LOG_INFO, "event=inbound_listening addr=%s domains=%zu", ic->listen.items[i],
                  in->n_domains);
    *out = in;
    return 0;
}

void inbound_stop(struct inbound *in)
{
    if (!in)
        return;
    atomic_store(&in->stop, true);
    if (in->wake[1] >= 0)
        (void)!write(in->wake[1], "x", 1);
    if (in->started)
        pthread_join(in->thread, NULL);
    log_event(LOG_INFO,
              "event=inbound_stopped bounced=%llu complained=%llu already=%llu soft=%llu "
              "autoreply=%llu unmatched=%llu unknown=%llu failed=%llu",
              (unsigned long long)in->counts[INB_NOTED_BOUNCE],
              (unsigned long long)in->counts[INB_NOTED_COMPLAINT],
              (unsigned long long)in->counts[INB_ALREADY], (unsigned long long)in->counts[INB_SOFT],
              (unsigned long long)in->counts[INB_AUTOREPLY],
              (unsigned long long)in->counts[INB_UNMATCHED],
              (unsigned long long)in->counts[INB_UNKNOWN],
              (unsigned long long)in->counts[INB_FAILED]);
    free_all(in);
}
