/* The Prometheus endpoint (`metrics.listen`): one plain thread, never a
 * worker, answering GET /metrics from the process-wide counters (stats.h),
 * the throttle table and the queue gauges worker 0 refreshes. Scrapes are
 * rare and small; clients are served side by side with deadlines (see "the
 * server" below), so a slow or hostile one costs a slot for a few seconds
 * and cannot hold up a scrape or the shutdown. */
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <dirent.h>

#include "herald/core.h"
#include "herald/version.h"
#include "delivery.h"
#include "worker.h"

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

/* What this process is and how it is doing: build, config generation and
 * reload, Redis connections, deliveries by state (note_parked among them),
 * and the usual process_* series from /proc. All of these are this
 * process's own; the queue gauges above are global (every process exports
 * the same values: aggregate them with max, not sum). */
static void render_process(struct out *b, struct engine_shared *sh, const struct engine_gen *gen)
{
    help(b, "herald_build_info", "gauge", "Version and commit of the running binary (always 1).");
    put(b, "herald_build_info{version=\"%s\",commit=\"%s\"} 1\n", HERALD_VERSION, HERALD_COMMIT);
    help(b, "herald_config_generation", "gauge", "Config generation running (1 at start, +1 per reload).");
    put(b, "herald_config_generation %u\n", gen->number);
    int last = atomic_load(&sh->last_reload);
    if (last >= 0) {
        help(b, "herald_config_last_reload_success", "gauge",
             "1 when the last SIGHUP reload applied, 0 when it was refused.");
        put(b, "herald_config_last_reload_success %d\n", last);
        help(b, "herald_config_last_reload_timestamp_seconds", "gauge", "When the last reload ran.");
        put(b, "herald_config_last_reload_timestamp_seconds %.3f\n",
            (double)atomic_load(&sh->last_reload_wall_ms) / 1000.0);
    }
    help(b, "herald_redis_connections_up", "gauge",
         "Engine connections to Redis that are up, by role (intake, notes).");
    unsigned up_in = 0, up_notes = 0;
    for (unsigned i = 0; sh->workers && i < sh->n_started; i++) {
        up_in += atomic_load(&sh->workers[i].intake_up);
        up_notes += atomic_load(&sh->workers[i].notes_up);
    }
    put(b, "herald_redis_connections_up{role=\"intake\"} %u\n", up_in);
    put(b, "herald_redis_connections_up{role=\"notes\"} %u\n", up_notes);
    help(b, "herald_deliveries", "gauge",
         "Jobs this process holds, by stage (note_parked: its note waits for Redis).");
    for (int s = DS_DECODING; s < DS_COUNT; s++) {
        if (s == DS_DONE) continue;
        long long n = 0;
        for (unsigned i = 0; sh->workers && i < sh->n_started; i++)
            n += (long long)atomic_load_explicit(&sh->workers[i].n_in_state[s],
                                                 memory_order_relaxed);
        put(b, "herald_deliveries{state=\"%s\"} %lld\n", delivery_state_name((enum delivery_state)s),
            n);
    }

    long ticks = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    help(b, "process_start_time_seconds", "gauge", "Start time of the process since the epoch.");
    put(b, "process_start_time_seconds %.3f\n", (double)sh->started_wall_ms / 1000.0);
    FILE *f = fopen("/proc/self/stat", "r");
    char line[1024];
    if (f && fgets(line, sizeof line, f)) {
        /* After the command's closing paren: state is field 3; utime 14,
         * stime 15, rss 24 (in pages). */
        const char *p = strrchr(line, ')');
        unsigned long long ut = 0, stt = 0;
        long long rss = 0;
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d "
                               "%*d %*d %*d %*d %*u %*u %lld",
                        &ut, &stt, &rss) == 3 && ticks > 0) {
            help(b, "process_cpu_seconds_total", "counter", "User and system CPU time spent.");
            put(b, "process_cpu_seconds_total %.2f\n", (double)(ut + stt) / (double)ticks);
            help(b, "process_resident_memory_bytes", "gauge", "Resident memory size.");
            put(b, "process_resident_memory_bytes %lld\n", rss * (long long)page);
        }
    }
    if (f) fclose(f);
    DIR *dir = opendir("/proc/self/fd");
    if (dir) {
        long n = 0;
        for (struct dirent *de; (de = readdir(dir));)
            if (de->d_name[0] != '.') n++;
        closedir(dir);
        help(b, "process_open_fds", "gauge", "Open file descriptors.");
        put(b, "process_open_fds %ld\n", n > 0 ? n - 1 : 0); /* less the one reading it */
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
    for (size_t i = 0; i < STATS_MAX_ROWS; i++) {
        struct stats_row *r = &st->providers.rows[i];
        if (!atomic_load(&r->used))
            continue;
        uint64_t t = atomic_load(&r->tls), p = atomic_load(&r->plain);
        put(b, "herald_delivered_tls_total{provider=\"%s\",tls=\"yes\"} %llu\n",
            esc(r->name, e1, sizeof e1), (unsigned long long)t);
        put(b, "herald_delivered_tls_total{provider=\"%s\",tls=\"no\"} %llu\n",
            esc(r->name, e1, sizeof e1), (unsigned long long)p);
    }

    help(b, "herald_in_flight", "gauge", "Jobs this process holds, by tenant.");
    for (size_t i = 0; i < STATS_MAX_ROWS; i++) {
        struct stats_row *r = &st->tenants.rows[i];
        if (atomic_load(&r->used))
            put(b, "herald_in_flight{tenant=\"%s\"} %lld\n", esc(r->name, e1, sizeof e1),
                (long long)atomic_load(&r->in_flight));
    }

    if (cfg->unsubscribe.listen) {
        help(b, "herald_unsubscribes_total", "counter",
             "One-click unsubscribes this process's endpoint took, by tenant (repeats not "
             "counted).");
        for (size_t i = 0; i < STATS_MAX_ROWS; i++) {
            struct stats_row *r = &st->tenants.rows[i];
            if (atomic_load(&r->used))
                put(b, "herald_unsubscribes_total{tenant=\"%s\"} %llu\n",
                    esc(r->name, e1, sizeof e1), (unsigned long long)atomic_load(&r->unsubscribes));
        }
    }

    if (cfg->inbound.listen.n) {
        /* each family's samples together, as the text format wants */
        help(b, "herald_late_bounces_total", "counter",
             "Bounces after the 250 this process's inbound listener noted, by tenant.");
        for (size_t i = 0; i < STATS_MAX_ROWS; i++) {
            struct stats_row *r = &st->tenants.rows[i];
            if (atomic_load(&r->used))
                put(b, "herald_late_bounces_total{tenant=\"%s\"} %llu\n",
                    esc(r->name, e1, sizeof e1), (unsigned long long)atomic_load(&r->late_bounces));
        }
        help(b, "herald_complaints_total", "counter",
             "Complaints (feedback-loop reports) this process's inbound listener noted, by "
             "tenant.");
        for (size_t i = 0; i < STATS_MAX_ROWS; i++) {
            struct stats_row *r = &st->tenants.rows[i];
            if (atomic_load(&r->used))
                put(b, "herald_complaints_total{tenant=\"%s\"} %llu\n",
                    esc(r->name, e1, sizeof e1), (unsigned long long)atomic_load(&r->complaints));
        }
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
    help(b, "herald_rate_limit_per_second", "gauge",
         "Effective rate limit (configured x factor) of an egress IP x provider pair, in "
         "messages per second; 0 = none.");
    for (size_t i = 0, n = throttle_pair_count(t); i < n; i++) {
        struct throttle_pair *p = throttle_pair_at(t, i);
        const struct cfg_provider *prov = config_provider(cfg, p->provider);
        double lim =
            prov && prov->rate.window_s ? (double)prov->rate.count / (double)prov->rate.window_s : 0;
        put(b, "herald_rate_limit_per_second{ip=\"%s\",provider=\"%s\",site=\"%s\"} %.4f\n",
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

    help(b, "herald_suspended", "gauge",
         "1 while a pair is suspended (a receiver's block wording, or an operator).");
    int64_t wall = clock_wall_ms();
    for (size_t i = 0, n = throttle_pair_count(t); i < n; i++) {
        struct throttle_pair *p = throttle_pair_at(t, i);
        put(b, "herald_suspended{ip=\"%s\",provider=\"%s\",site=\"%s\"} %d\n",
            esc(p->ip[0] ? p->ip : "-", e1, sizeof e1), esc(p->provider, e2, sizeof e2),
            esc(p->site[0] ? p->site : "*", e3, sizeof e3),
            atomic_load(&p->suspended_until_ms) > wall ? 1 : 0);
    }
    help(b, "herald_inbound_reports_total", "counter",
         "Reports the inbound listener took (after the 250), by what they came to.");
    for (int o = 0; o < INB_OUTCOME_COUNT; o++)
        put(b, "herald_inbound_reports_total{outcome=\"%s\"} %llu\n",
            inbound_outcome_name((enum inbound_outcome)o),
            (unsigned long long)atomic_load(&sh->stats.inbound[o]));
    render_process(b, sh, gen);
    engine_gen_release(gen);
    return ob.failed ? -ENOMEM : 0;
}

/* ---- the server ----
 *
 * One poll loop over the listening socket, a wake pipe and up to
 * METRICS_MAX_CONNS clients, all non-blocking. Each client has a deadline:
 * its request within METRICS_REQUEST_MS of the accept, the whole response
 * within METRICS_RESPONSE_MS of the request; past it, the socket is closed.
 * So a client that says nothing, or never reads, holds one slot for a few
 * seconds and never the thread; metrics_stop wakes the loop through the
 * pipe, whatever the clients are doing. */

#define METRICS_MAX_CONNS 32
#define METRICS_REQUEST_MAX 4096
#define METRICS_REQUEST_MS 3000
#define METRICS_RESPONSE_MS 5000
#define METRICS_ACCEPT_PAUSE_MS 100

struct metrics_conn {
    int fd;               /* -1: the slot is free */
    bool writing;         /* the request is read, out is being sent */
    uint64_t seq;         /* accept order, for eviction */
    int64_t deadline_ms;
    size_t got, sent;
    struct hbuf out;
    char req[METRICS_REQUEST_MAX];
};

struct metrics_server {
    int fd;
    int wake[2];          /* metrics_stop writes wake[1]; the loop polls wake[0] */
    pthread_t thread;
    struct engine_shared *sh;
    int64_t accept_paused_until_ms;
    uint64_t n_accepted;
    char token[METRICS_TOKEN_MAX]; /* "" = no token asked */
    size_t token_len;
    struct metrics_conn conns[METRICS_MAX_CONNS];
};

static void conn_close(struct metrics_conn *c)
{
    close(c->fd);
    c->fd = -1;
    hbuf_free(&c->out);
}

static bool request_complete(const struct metrics_conn *c)
{
    return memmem(c->req, c->got, "\r\n\r\n", 4) || memmem(c->req, c->got, "\n\n", 2);
}

static bool is_metrics_path(const char *path)
{
    return strncmp(path, "/metrics ", 9) == 0 || strncmp(path, "/metrics?", 9) == 0 ||
           strncmp(path, "/ ", 2) == 0;
}

static const char *const resp_not_found =
    "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n"
    "Content-Length: 20\r\nConnection: close\r\n\r\ntry GET /metrics\r\n\r\n";
static const char *const resp_not_allowed = "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\n"
                                            "Content-Length: 0\r\nConnection: close\r\n\r\n";
static const char *const resp_too_large =
    "HTTP/1.1 431 Request Header Fields Too Large\r\n"
    "Content-Length: 0\r\nConnection: close\r\n\r\n";
static const char *const resp_unauthorized =
    "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"herald\"\r\n"
    "Content-Length: 0\r\nConnection: close\r\n\r\n";
static const char *const resp_error = "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n"
                                      "Connection: close\r\n\r\n";

/* The credentials of the request's first Authorization field when its
 * scheme is Bearer (the scheme and field name case-insensitive, RFC 6750
 * section 2.1), with *len their length; else NULL. req is NUL-terminated. */
static const char *bearer_credentials(const char *req, size_t *len)
{
    for (const char *line = strchr(req, '\n'); line; line = strchr(line, '\n')) {
        line++;
        if (*line == '\r' || *line == '\n' || *line == '\0')
            return NULL; /* end of the header */
        if (strncasecmp(line, "Authorization:", 14) != 0)
            continue;
        const char *v = line + 14;
        v += strspn(v, " \t");
        if (strncasecmp(v, "Bearer", 6) != 0 || (v[6] != ' ' && v[6] != '\t'))
            return NULL;
        v += 6;
        v += strspn(v, " \t");
        size_t n = strcspn(v, "\r\n");
        while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
            n--;
        *len = n;
        return v;
    }
    return NULL;
}

/* Every byte of the configured token is compared whatever is offered, so
 * the time taken does not tell a guesser how much of a guess was right. */
static bool authorized(const struct metrics_server *m, const char *req)
{
    if (m->token_len == 0)
        return true;
    size_t n = 0;
    const char *p = bearer_credentials(req, &n);
    if (!p)
        return false;
    unsigned char diff = n != m->token_len;
    for (size_t i = 0; i < m->token_len; i++)
        diff |= (unsigned char)(m->token[i] ^ (i < n ? p[i] : 0));
    return diff == 0;
}

static int plain_response(struct metrics_conn *c, int code, const char *body)
{
    return hbuf_appendf(&c->out,
                        "HTTP/1.1 %d %s\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
                        "Connection: close\r\n\r\n%s",
                        code, code == 200 ? "OK" : "Service Unavailable", strlen(body), body);
}

/* Ready: not draining, every worker running with both its Redis
 * connections up. */
static bool engine_ready(struct engine_shared *sh, char *why, size_t cap)
{
    if (atomic_load(&sh->stop)) {
        snprintf(why, cap, "draining\n");
        return false;
    }
    if (!sh->workers || sh->n_started < sh->n_workers) {
        snprintf(why, cap, "starting\n");
        return false;
    }
    for (unsigned i = 0; i < sh->n_started; i++)
        if (!atomic_load(&sh->workers[i].intake_up) || !atomic_load(&sh->workers[i].notes_up)) {
            snprintf(why, cap, "worker %u: redis %s connection down\n", i,
                     atomic_load(&sh->workers[i].intake_up) ? "notes" : "intake");
            return false;
        }
    snprintf(why, cap, "ready\n");
    return true;
}

/* The response to a complete (or over-long) request, into c->out. The
 * token is checked before anything else, so without it every path and
 * method looks the same. */
static int build_response(struct metrics_server *m, struct metrics_conn *c)
{
    if (!request_complete(c))
        return hbuf_append_str(&c->out, resp_too_large);
    c->req[c->got] = '\0';
    /* Liveness and readiness answer without the token: they tell a probe
     * only up or down. */
    if (strncmp(c->req, "GET /healthz", 12) == 0 && (c->req[12] == ' ' || c->req[12] == '?'))
        return plain_response(c, 200, "ok\n");
    if (strncmp(c->req, "GET /readyz", 11) == 0 && (c->req[11] == ' ' || c->req[11] == '?')) {
        char why[160];
        bool ready = engine_ready(m->sh, why, sizeof why);
        return plain_response(c, ready ? 200 : 503, why);
    }
    if (!authorized(m, c->req))
        return hbuf_append_str(&c->out, resp_unauthorized);
    if (strncmp(c->req, "GET ", 4) != 0)
        return hbuf_append_str(&c->out, resp_not_allowed);
    if (!is_metrics_path(c->req + 4))
        return hbuf_append_str(&c->out, resp_not_found);
    struct hbuf body;
    hbuf_init(&body);
    int rc = metrics_render(m->sh, &body);
    if (rc == 0)
        rc = hbuf_appendf(&c->out,
                          "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; "
                          "charset=utf-8\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                          body.len);
    if (rc == 0)
        rc = hbuf_append(&c->out, body.data, body.len);
    hbuf_free(&body);
    if (rc < 0) {
        hbuf_reset(&c->out);
        return hbuf_append_str(&c->out, resp_error);
    }
    return 0;
}

/* Sends what the socket takes now; closes the connection when all is sent
 * or the peer is gone. */
static void conn_write(struct metrics_conn *c)
{
    while (c->sent < c->out.len) {
        ssize_t k = send(c->fd, c->out.data + c->sent, c->out.len - c->sent, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (k <= 0)
            break;
        c->sent += (size_t)k;
    }
    conn_close(c);
}

/* Reads what has arrived; once the headers are in (the body, none for GET,
 * is never read) or the buffer is full, answers. */
static void conn_read(struct metrics_server *m, struct metrics_conn *c, int64_t now_ms)
{
    for (;;) {
        ssize_t k = recv(c->fd, c->req + c->got, sizeof c->req - 1 - c->got, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (k <= 0) {
            conn_close(c);
            return;
        }
        c->got += (size_t)k;
        if (request_complete(c) || c->got == sizeof c->req - 1)
            break;
    }
    if (build_response(m, c) < 0) {
        conn_close(c);
        return;
    }
    c->writing = true;
    c->deadline_ms = now_ms + METRICS_RESPONSE_MS;
    conn_write(c);
}

/* A slot for a new client: a free one, else the one accepted longest ago
 * (a scraper sends its request at once and is answered in milliseconds, so
 * the oldest is the likeliest to be stuck). */
static struct metrics_conn *conn_slot(struct metrics_server *m)
{
    struct metrics_conn *oldest = &m->conns[0];
    for (size_t i = 0; i < METRICS_MAX_CONNS; i++) {
        struct metrics_conn *c = &m->conns[i];
        if (c->fd < 0)
            return c;
        if (c->seq < oldest->seq)
            oldest = c;
    }
    conn_close(oldest);
    return oldest;
}

static void accept_clients(struct metrics_server *m, int64_t now_ms)
{
    for (int n = 0; n < METRICS_MAX_CONNS; n++) {
        int fd = accept4(m->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            /* Out of descriptors or buffers: the listening socket stays
             * readable, so stop polling it for a moment rather than spin. */
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                m->accept_paused_until_ms = now_ms + METRICS_ACCEPT_PAUSE_MS;
            return;
        }
        struct metrics_conn *c = conn_slot(m);
        c->fd = fd;
        c->writing = false;
        c->got = c->sent = 0;
        hbuf_init(&c->out);
        c->seq = ++m->n_accepted;
        c->deadline_ms = now_ms + METRICS_REQUEST_MS;
    }
}

/* Closes clients past their deadline; returns the poll timeout until the
 * next deadline (-1: none). */
static int expire_clients(struct metrics_server *m, int64_t now_ms)
{
    int64_t next = -1;
    for (size_t i = 0; i < METRICS_MAX_CONNS; i++) {
        struct metrics_conn *c = &m->conns[i];
        if (c->fd < 0)
            continue;
        if (now_ms >= c->deadline_ms) {
            conn_close(c);
            continue;
        }
        if (next < 0 || c->deadline_ms - now_ms < next)
            next = c->deadline_ms - now_ms;
    }
    if (m->accept_paused_until_ms > now_ms &&
        (next < 0 || m->accept_paused_until_ms - now_ms < next))
        next = m->accept_paused_until_ms - now_ms;
    return (int)next;
}

static void *metrics_main(void *arg)
{
    struct metrics_server *m = arg;
    struct pollfd pfd[2 + METRICS_MAX_CONNS];
    struct metrics_conn *owner[2 + METRICS_MAX_CONNS];
    for (;;) {
        int64_t now = clock_mono_ms();
        int timeout = expire_clients(m, now);
        nfds_t n = 0;
        pfd[n++] = (struct pollfd){.fd = m->wake[0], .events = POLLIN};
        bool listening = m->accept_paused_until_ms <= now;
        if (listening)
            pfd[n++] = (struct pollfd){.fd = m->fd, .events = POLLIN};
        for (size_t i = 0; i < METRICS_MAX_CONNS; i++) {
            struct metrics_conn *c = &m->conns[i];
            if (c->fd < 0)
                continue;
            owner[n] = c;
            pfd[n++] = (struct pollfd){.fd = c->fd, .events = c->writing ? POLLOUT : POLLIN};
        }
        int rc = poll(pfd, n, timeout);
        if (rc < 0 && errno != EINTR) {
            log_event(LOG_ERROR, "event=metrics_failed reason=\"poll: %s\" action=endpoint_closed",
                      strerror(errno));
            break;
        }
        if (rc <= 0)
            continue;
        if (pfd[0].revents)
            break;
        now = clock_mono_ms();
        for (nfds_t k = listening ? 2 : 1; k < n; k++) {
            if (!pfd[k].revents)
                continue;
            if (owner[k]->writing)
                conn_write(owner[k]);
            else
                conn_read(m, owner[k], now);
        }
        if (listening && pfd[1].revents)
            accept_clients(m, now);
    }
    for (size_t i = 0; i < METRICS_MAX_CONNS; i++)
        if (m->conns[i].fd >= 0)
            conn_close(&m->conns[i]);
    return NULL;
}

static void server_free(struct metrics_server *m)
{
    explicit_bzero(m->token, sizeof m->token);
    if (m->fd >= 0)
        close(m->fd);
    for (int i = 0; i < 2; i++)
        if (m->wake[i] >= 0)
            close(m->wake[i]);
    free(m);
}

int metrics_token_load(const struct cfg_metrics *mc, char *out, char *err, size_t errlen)
{
    out[0] = '\0';
    if (!mc->token_file || !mc->listen)
        return 0;
    int rc = config_read_secret(mc->token_file, NULL, out, METRICS_TOKEN_MAX);
    const char *why = rc < 0 ? herald_strerror(rc) : NULL;
    size_t n = strlen(out);
    if (!why && n == 0)
        why = "its first line is empty";
    /* config_read_secret cuts a longer line to fit: a full buffer may be a
     * truncated token, which would let its prefix in. */
    if (!why && n >= METRICS_TOKEN_MAX - 1)
        why = "the token is too long";
    for (size_t i = 0; !why && i < n; i++)
        if ((unsigned char)out[i] <= ' ' || (unsigned char)out[i] >= 0x7f)
            why = "the token holds a space, control or non-ASCII byte";
    if (!why)
        return 0;
    explicit_bzero(out, METRICS_TOKEN_MAX);
    snprintf(err, errlen, "metrics.token_file %s: %s", mc->token_file, why);
    return rc < 0 ? rc : -HERR_CONFIG;
}

/* Loopback only: 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104. */
static bool is_loopback(const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
    return IN6_IS_ADDR_LOOPBACK(a) || (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
}

int metrics_start(struct engine_shared *sh, const char *listen_on, const char *token,
                  struct metrics_server **out, char *err, size_t errlen)
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
    snprintf(m->token, sizeof m->token, "%s", token ? token : "");
    m->token_len = strlen(m->token);
    m->wake[0] = m->wake[1] = -1;
    for (size_t i = 0; i < METRICS_MAX_CONNS; i++)
        m->conns[i].fd = -1;
    m->fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (m->fd >= 0)
        setsockopt(m->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (m->fd < 0 || bind(m->fd, (struct sockaddr *)&sa, len) < 0 || listen(m->fd, 64) < 0 ||
        pipe2(m->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        int e = errno;
        snprintf(err, errlen, "metrics.listen %s: %s", listen_on, strerror(e));
        server_free(m);
        return -e;
    }
    if (!m->token_len && !is_loopback(&sa))
        log_event(LOG_WARN,
                  "event=metrics_unauthenticated address=%s reason=\"metrics.listen is not a "
                  "loopback address and metrics.token_file is not set: anyone who can reach it "
                  "reads tenant and provider names and volumes\"",
                  listen_on);
    if (pthread_create(&m->thread, NULL, metrics_main, m) != 0) {
        snprintf(err, errlen, "metrics: cannot start its thread");
        server_free(m);
        return -EAGAIN;
    }
    *out = m;
    return 0;
}

void metrics_stop(struct metrics_server *m)
{
    if (!m)
        return;
    /* One byte wakes the loop; the pipe is empty, so it cannot be full. */
    ssize_t k;
    do
        k = write(m->wake[1], "x", 1);
    while (k < 0 && errno == EINTR);
    pthread_join(m->thread, NULL);
    server_free(m);
}
