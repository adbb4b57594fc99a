/* The Prometheus endpoint (`metrics.listen`): one plain thread, never a
 * worker, answering GET /metrics from the process-wide counters (stats.h),
 * the throttle table and the queue gauges worker 0 refreshes. Scrapes are
 * rare and small; a client that does not send its request within two
 * seconds is dropped, so a slow or hostile scraper costs one socket. */
#include "metrics.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "herald/core.h"
#include "worker.h"

struct metrics_server {
    int fd;
    pthread_t thread;
    struct engine_shared *sh;
    atomic_bool stop;
};

/* ---- text building ---- */

struct out {
    struct hbuf *b;
    bool failed;
};

static void put(struct out *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void put(struct out *b, const char *fmt, ...)
{
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0 && hbuf_append(b->b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1) < 0)
        b->failed = true;
}

/* Label values: backslash, double quote and newline escaped. */
static const char *esc(const char *s, char *out, size_t outlen)
{
    size_t o = 0;
    for (; *s && o + 3 < outlen; s++) {
        if (*s == '\\' || *s == '"') {
            out[o++] = '\\';
            out[o++] = *s;
        } else if (*s == '\n') {
            out[o++] = '\\';
            out[o++] = 'n';
        } else {
            out[o++] = *s;
        }
    }
    out[o] = '\0';
    return out;
}

static void help(struct out *b, const char *name, const char *type, const char *text)
{
    put(b, "# HELP %s %s\n# TYPE %s %s\n", name, text, name, type);
}

static void rows_by_event(struct out *b, struct stats_table *t, const char *metric,
                          const char *label)
{
    char e[160];
    for (size_t i = 0; i < STATS_MAX_ROWS; i++) {
        struct stats_row *r = &t->rows[i];
        if (!atomic_load(&r->used))
            continue;
        for (int ev = 0; ev < ST_EVENTS; ev++)
            put(b, "%s{%s=\"%s\",event=\"%s\"} %llu\n", metric, label, esc(r->name, e, sizeof e),
                stats_event_names[ev], (unsigned long long)atomic_load(&r->events[ev]));
    }
}

int metrics_render(struct engine_shared *sh, struct hbuf *hb)
{
    struct out ob = {.b = hb}, *b = &ob;
    struct engine_stats *st = &sh->stats;
    struct engine_gen *gen = engine_gen_acquire(sh);
    const struct config *cfg = gen->cfg;
    char e1[160], e2[160], e3[200];

    help(b, "herald_notes_total", "counter", "Case notes written, by tenant and event.");
    rows_by_event(b, &st->tenants, "herald_notes_total", "tenant");
    help(b, "herald_provider_notes_total", "counter",
         "Case notes written, by receiving provider and event.");
    rows_by_event(b, &st->providers, "herald_provider_notes_total", "provider");

    help(b, "herald_delivered_tls_total", "counter",
         "Delivered messages by provider and whether the connection used TLS.");
    uint64_t tls_all = 0, plain_all = 0;
    for (size_t i = 0; i < STATS_MAX_ROWS; i++) {
        struct stats_row *r = &st->providers.rows[i];
        if (!atomic_load(&r->used))
            continue;
        uint64_t t = atomic_load(&r->tls), p = atomic_load(&r->plain);
        tls_all += t;
        plain_all += p;
        put(b, "herald_delivered_tls_total{provider=\"%s\",tls=\"yes\"} %llu\n",
            esc(r->name, e1, sizeof e1), (unsigned long long)t);
        put(b, "herald_delivered_tls_total{provider=\"%s\",tls=\"no\"} %llu\n",
            esc(r->name, e1, sizeof e1), (unsigned long long)p);
    }
    help(b, "herald_tls_share", "gauge", "Share of delivered messages sent over TLS (0..1).");
    put(b, "herald_tls_share %.4f\n",
        tls_all + plain_all ? (double)tls_all / (double)(tls_all + plain_all) : 0.0);

    help(b, "herald_in_flight", "gauge", "Jobs this process holds, by tenant.");
    for (size_t i = 0; i < STATS_MAX_ROWS; i++) {
        struct stats_row *r = &st->tenants.rows[i];
        if (atomic_load(&r->used))
            put(b, "herald_in_flight{tenant=\"%s\"} %lld\n", esc(r->name, e1, sizeof e1),
                (long long)atomic_load(&r->in_flight));
    }

    struct {
        const char *name, *text;
        _Atomic int64_t *v;
    } gauges[] = {
        {"herald_queue_entries", "Entries in the jobs stream.", &st->stream_len},
        {"herald_queue_unread", "Stream entries the consumer group has not read yet.",
         &st->stream_lag},
        {"herald_queue_pending", "Stream entries read and not yet acknowledged.",
         &st->stream_pending},
        {"herald_retry_backlog", "Jobs waiting in the retry/scheduled set.", &st->retry_len},
    };
    for (size_t i = 0; i < sizeof gauges / sizeof gauges[0]; i++) {
        int64_t v = atomic_load(gauges[i].v);
        if (v < 0)
            continue; /* not known yet */
        help(b, gauges[i].name, "gauge", gauges[i].text);
        put(b, "%s %lld\n", gauges[i].name, (long long)v);
    }

    struct throttle_table *t = sh->throttle;
    help(b, "herald_connections_open", "gauge", "Open SMTP connections, by egress IP and provider.");
    for (size_t i = 0, n = throttle_pair_count(t); i < n; i++) {
        struct throttle_pair *p = throttle_pair_at(t, i);
        put(b, "herald_connections_open{ip=\"%s\",provider=\"%s\",site=\"%s\"} %d\n",
            esc(p->ip[0] ? p->ip : "-", e1, sizeof e1), esc(p->provider, e2, sizeof e2),
            esc(p->site[0] ? p->site : "*", e3, sizeof e3),
            atomic_load(&p->open_conns));
    }
    help(b, "herald_reputation_factor", "gauge",
         "Reputation factor scaling the limits of an egress IP x provider pair.");
    for (size_t i = 0, n = throttle_pair_count(t); i < n; i++) {
        struct throttle_pair *p = throttle_pair_at(t, i);
        put(b, "herald_reputation_factor{ip=\"%s\",provider=\"%s\",site=\"%s\"} %.4f\n",
            esc(p->ip[0] ? p->ip : "-", e1, sizeof e1), esc(p->provider, e2, sizeof e2),
            esc(p->site[0] ? p->site : "*", e3, sizeof e3),
            throttle_factor(p));
    }
    help(b, "herald_rate_limit_per_minute", "gauge",
         "Effective rate limit (configured x factor) of an egress IP x provider pair; 0 = none.");
    for (size_t i = 0, n = throttle_pair_count(t); i < n; i++) {
        struct throttle_pair *p = throttle_pair_at(t, i);
        const struct cfg_provider *prov = config_provider(cfg, p->provider);
        double lim = prov && prov->rate.window_s
                         ? (double)prov->rate.count * 60.0 / (double)prov->rate.window_s
                         : 0;
        put(b, "herald_rate_limit_per_minute{ip=\"%s\",provider=\"%s\",site=\"%s\"} %.2f\n",
            esc(p->ip[0] ? p->ip : "-", e1, sizeof e1), esc(p->provider, e2, sizeof e2),
            esc(p->site[0] ? p->site : "*", e3, sizeof e3),
            lim * throttle_factor(p));
    }
    help(b, "herald_sent_total", "counter", "Messages sent, by egress IP and provider.");
    for (size_t i = 0, n = throttle_pair_count(t); i < n; i++) {
        struct throttle_pair *p = throttle_pair_at(t, i);
        put(b, "herald_sent_total{ip=\"%s\",provider=\"%s\",site=\"%s\"} %llu\n",
            esc(p->ip[0] ? p->ip : "-", e1, sizeof e1), esc(p->provider, e2, sizeof e2),
            esc(p->site[0] ? p->site : "*", e3, sizeof e3),
            (unsigned long long)atomic_load(&p->sent));
    }

    help(b, "herald_delivery_latency_seconds", "histogram",
         "Enqueue-to-delivered latency of delivered messages.");
    for (size_t i = 0; i < STATS_LATENCY_BUCKETS; i++)
        put(b, "herald_delivery_latency_seconds_bucket{le=\"%g\"} %llu\n",
            stats_latency_bounds_s[i], (unsigned long long)atomic_load(&st->latency_le[i]));
    uint64_t count = atomic_load(&st->latency_count);
    put(b, "herald_delivery_latency_seconds_bucket{le=\"+Inf\"} %llu\n", (unsigned long long)count);
    put(b, "herald_delivery_latency_seconds_sum %.3f\n",
        (double)atomic_load(&st->latency_sum_ms) / 1000.0);
    put(b, "herald_delivery_latency_seconds_count %llu\n", (unsigned long long)count);
    engine_gen_release(gen);
    return ob.failed ? -ENOMEM : 0;
}

/* ---- the server ---- */

static void send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
        if (k <= 0)
            return;
        p += k;
        n -= (size_t)k;
    }
}

static void serve_one(struct metrics_server *m, int fd)
{
    char req[4096];
    size_t got = 0;
    /* The request line and headers, within 2 s and 4 KiB; the body (none
     * for GET) is not read. */
    int64_t deadline = clock_mono_ms() + 2000;
    while (got < sizeof req - 1 && !memmem(req, got, "\r\n\r\n", 4) &&
           !memmem(req, got, "\n\n", 2)) {
        int64_t left = deadline - clock_mono_ms();
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&pfd, 1, (int)left) <= 0)
            return;
        ssize_t k = recv(fd, req + got, sizeof req - 1 - got, 0);
        if (k <= 0)
            return;
        got += (size_t)k;
    }
    req[got] = '\0';
    bool get = strncmp(req, "GET ", 4) == 0;
    const char *path = req + 4;
    bool metrics = get && (strncmp(path, "/metrics ", 9) == 0 || strncmp(path, "/metrics?", 9) == 0 ||
                           strncmp(path, "/ ", 2) == 0);
    if (!metrics) {
        const char *nf = get ? "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 20\r\nConnection: close\r\n\r\ntry GET /metrics\r\n\r\n"
                             : "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\n"
                               "Content-Length: 0\r\nConnection: close\r\n\r\n";
        send_all(fd, nf, strlen(nf));
        return;
    }
    struct hbuf body;
    hbuf_init(&body);
    if (metrics_render(m->sh, &body) < 0) {
        const char *err = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                          "Connection: close\r\n\r\n";
        send_all(fd, err, strlen(err));
        hbuf_free(&body);
        return;
    }
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                     body.len);
    send_all(fd, head, (size_t)n);
    send_all(fd, body.data, body.len);
    hbuf_free(&body);
}

static void *metrics_main(void *arg)
{
    struct metrics_server *m = arg;
    while (!atomic_load(&m->stop)) {
        struct pollfd pfd = {.fd = m->fd, .events = POLLIN};
        if (poll(&pfd, 1, 200) <= 0)
            continue;
        int c = accept4(m->fd, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        serve_one(m, c);
        close(c);
    }
    return NULL;
}

int metrics_start(struct engine_shared *sh, const char *listen_on, struct metrics_server **out,
                  char *err, size_t errlen)
{
    *out = NULL;
    struct sockaddr_storage sa;
    unsigned len = 0;
    if (config_parse_listen(listen_on, &sa, &len) < 0) {
        snprintf(err, errlen, "metrics.listen: cannot read '%s'", listen_on);
        return -HERR_CONFIG;
    }
    struct metrics_server *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    m->sh = sh;
    m->fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (m->fd >= 0)
        setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (m->fd < 0 || bind(m->fd, (struct sockaddr *)&sa, len) < 0 || listen(m->fd, 16) < 0) {
        int e = errno;
        snprintf(err, errlen, "metrics.listen %s: %s", listen_on, strerror(e));
        if (m->fd >= 0)
            close(m->fd);
        free(m);
        return -e;
    }
    if (pthread_create(&m->thread, NULL, metrics_main, m) != 0) {
        snprintf(err, errlen, "metrics: cannot start its thread");
        close(m->fd);
        free(m);
        return -EAGAIN;
    }
    *out = m;
    return 0;
}

void metrics_stop(struct metrics_server *m)
{
    if (!m)
        return;
    atomic_store(&m->stop, true);
    pthread_join(m->thread, NULL);
    close(m->fd);
    free(m);
}
