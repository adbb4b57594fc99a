/* The one-click unsubscribe endpoint (`unsubscribe.listen`, RFC 8058): one
 * plain thread, never a worker, serving
 *   GET  /u/<token>  a small page whose form POSTs (mail scanners fetch
 *                    links: a GET never unsubscribes)
 *   POST /u/<token>  body List-Unsubscribe=One-Click: the token's recipient
 *                    goes on its tenant's suppression list and one
 *                    `unsubscribed` note is written (a repeat writes none)
 * Built like the metrics endpoint: a poll loop over a listening socket, a
 * wake pipe and UNSUB_MAX_CONNS clients, each with a deadline, so a slow
 * or hostile client holds one slot for a few seconds and never the thread.
 * The Redis write is one blocking EVAL on this thread's own connection
 * (bounded by a timeout): clicks are rare, and a stalled Redis delays
 * clicks, never deliveries. Plain HTTP: TLS is the terminator's job. */
#include "unsub.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "herald/core.h"
#include "herald/engine.h"
#include "herald/job.h"
#include "herald/keys.h"
#include "herald/unsub.h"
#include "stats.h"
#include "worker.h"

#define UNSUB_MAX_CONNS        64
#define UNSUB_REQUEST_MS       3000
#define UNSUB_RESPONSE_MS      5000
#define UNSUB_ACCEPT_PAUSE_MS  100
#define UNSUB_REDIS_TIMEOUT_MS 2000
#define UNSUB_REDIS_RETRY_MS   1000
#define DAY_MS                 ((int64_t)86400000)

struct unsub_conn {
    int fd; /* -1: the slot is free */
    bool writing;
    uint64_t seq;
    int64_t deadline_ms;
    size_t got, sent;
    char peer[INET6_ADDRSTRLEN];
    struct hbuf out;
    char req[UNSUB_REQUEST_MAX + 1];
};

struct unsub_server {
    int fd;
    int wake[2];
    pthread_t thread;
    struct engine_shared *sh;
    struct fb_keys keys;
    redisContext *redis;
    int64_t redis_retry_ms; /* no reconnect before this (monotonic) */
    int64_t accept_paused_until_ms;
    uint64_t n_accepted;
    struct unsub_conn conns[UNSUB_MAX_CONNS];
};

static void conn_close(struct unsub_conn *c)
{
    close(c->fd);
    c->fd = -1;
    hbuf_free(&c->out);
}

static const char *status_text(int code)
{
    switch (code) {
    case 200:
        return "OK";
    case 400:
        return "Bad Request";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 410:
        return "Gone";
    case 411:
        return "Length Required";
    case 413:
        return "Content Too Large";
    case 431:
        return "Request Header Fields Too Large";
    case 503:
        return "Service Unavailable";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Internal Server Error";
    }
}

/* One whole response, Connection: close (one request per connection). */
static int respond(struct unsub_conn *c, int code, bool head_only, const char *type,
                   const char *body)
{
    size_t n = strlen(body);
    int rc = hbuf_appendf(&c->out,
                          "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                          "Cache-Control: no-store\r\n%sConnection: close\r\n\r\n",
                          code, status_text(code), type, n,
                          code == 405   ? "Allow: GET, HEAD, POST\r\n"
                          : code == 503 ? "Retry-After: 5\r\n"
                                        : "");
    if (rc == 0 && !head_only) rc = hbuf_append(&c->out, body, n);
    return rc;
}

static int respond_text(struct unsub_conn *c, int code, bool head_only, const char *text)
{
    return respond(c, code, head_only, "text/plain; charset=utf-8", text);
}

/* The confirmation page: no script, no external resource, a form that
 * posts the RFC 8058 body to the same URL. The token is base64url, safe
 * in an attribute as is. */
static int respond_page(struct unsub_conn *c, bool head_only, const char *token, size_t len)
{
    char page[1024 + FB_UNSUB_TOKEN_MAX];
    snprintf(page, sizeof page,
             "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>Unsubscribe</title>"
             "<meta name=\"robots\" content=\"noindex\"></head>\n<body>\n"
             "<p>Stop these emails to this address?</p>\n"
             "<form method=\"post\" action=\"/u/%.*s\">"
             "<input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\">"
             "<button type=\"submit\">Unsubscribe</button></form>\n</body></html>\n",
             (int)len, token);
    return respond(c, 200, head_only, "text/html; charset=utf-8", page);
}

static void redis_drop(struct unsub_server *u)
{
    if (u->redis) redisFree(u->redis);
    u->redis = NULL;
}

/* This thread's Redis connection, made (again) when needed; NULL while
 * Redis is unreachable (a retry waits UNSUB_REDIS_RETRY_MS). */
static redisContext *redis_get(struct unsub_server *u)
{
    if (u->redis) return u->redis;
    int64_t now = clock_mono_ms();
    if (now < u->redis_retry_ms) return NULL;
    u->redis_retry_ms = now + UNSUB_REDIS_RETRY_MS;
    const struct redis_addr *a = &u->sh->redis;
    struct timeval tv = {UNSUB_REDIS_TIMEOUT_MS / 1000, (UNSUB_REDIS_TIMEOUT_MS % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(a->host, a->port, tv);
    const char *why = !c ? "out of memory" : c->err ? c->errstr : NULL;
    if (!why && redisSetTimeout(c, tv) != REDIS_OK) why = "cannot set a timeout";
    redisReply *r = NULL;
    if (!why && a->password[0]) {
        r = a->user[0] ? redisCommand(c, "AUTH %s %s", a->user, a->password)
                       : redisCommand(c, "AUTH %s", a->password);
        if (!r || r->type == REDIS_REPLY_ERROR) why = "AUTH refused";
    }
    if (r) freeReplyObject(r);
    r = NULL;
    if (!why && a->db) {
        r = redisCommand(c, "SELECT %d", a->db);
        if (!r || r->type == REDIS_REPLY_ERROR) why = "SELECT refused";
        if (r) freeReplyObject(r);
    }
    if (why) {
        log_event(LOG_WARN, "event=unsubscribe_redis_down host=%s port=%u reason=%s", a->host,
                  a->port, LOG_VALUE(why));
        if (c) redisFree(c);
        return NULL;
    }
    u->redis = c;
    return c;
}

/* The suppression entry and the note in one script. 1 taken now, 0 taken
 * before (no second note), negative when Redis failed. */
static int record(struct unsub_server *u, const struct config *cfg, const struct fb_unsub *t,
                  const char *rcpt_key, const char *peer, int64_t now_ms)
{
    redisContext *c = redis_get(u);
    if (!c) return -EAGAIN;
    const struct keys *K = &u->sh->keys;
    char skey[KEYS_MAX], sikey[KEYS_MAX], once[KEYS_MAX + FB_ADDR_MAX], at[24], ttl[24];
    keys_suppress(K, t->tenant, skey, sizeof skey);
    keys_suppress_info(K, t->tenant, sikey, sizeof sikey);
    keys_unsub_once(K, t->tenant, t->day, rcpt_key, once, sizeof once);
    snprintf(at, sizeof at, "%" PRId64, now_ms);
    /* The once-key outlives every token of that day, plus a day of skew. */
    snprintf(ttl, sizeof ttl, "%" PRId64, cfg->unsubscribe.max_age_ms + 2 * DAY_MS);
    const char *argv[] = {"EVAL",
                          notes_script_unsubscribe,
                          "5",
                          skey,
                          sikey,
                          cfg->redis.events,
                          K->stats,
                          once,
                          rcpt_key,
                          at,
                          ttl,
                          "event",
                          "unsubscribed",
                          "tenant",
                          t->tenant,
                          "to",
                          rcpt_key,
                          "at",
                          at,
                          "reason",
                          "one-click unsubscribe",
                          "source",
                          "list-unsubscribe-post",
                          "client_ip",
                          peer};
    redisReply *r = redisCommandArgv(c, (int)HERALD_ARRAY_LEN(argv), argv, NULL);
    int rc;
    if (!r) {
        log_event(LOG_WARN, "event=unsubscribe_redis_down reason=%s", LOG_VALUE(c->errstr));
        redis_drop(u);
        return -EIO;
    }
    if (r->type == REDIS_REPLY_INTEGER) {
        rc = r->integer == 1 ? 1 : 0;
    } else {
        log_event(LOG_WARN, "event=unsubscribe_redis_error reason=%s",
                  LOG_VALUE(r->type == REDIS_REPLY_ERROR ? r->str : "unexpected reply"));
        rc = -EIO;
    }
    freeReplyObject(r);
    return rc;
}

static const char *method_name(enum unsub_method m)
{
    return m == UNSUB_POST ? "POST" : m == UNSUB_HEAD ? "HEAD" : "GET";
}

/* The response to a complete (or refused) request, into c->out, and its
 * log line. */
static int handle(struct unsub_server *u, struct unsub_conn *c, const struct unsub_request *rq)
{
    bool head = rq->method == UNSUB_HEAD;
    if (rq->status) {
        log_event(LOG_INFO, "event=unsubscribe peer=%s status=%d result=refused", c->peer,
                  rq->status);
        return respond_text(c, rq->status, false,
                            rq->status == 404 ? "No such page.\n" : "Bad request.\n");
    }
    struct engine_gen *gen = engine_gen_acquire(u->sh);
    const struct config *cfg = gen->cfg;
    int64_t now = clock_wall_ms();
    struct fb_unsub t;
    uint16_t max_days = (uint16_t)(cfg->unsubscribe.max_age_ms / DAY_MS);
    int rc = fb_unsub_decode(&u->keys, rq->token, rq->token_len, fb_day_of_ms(now), max_days, &t);
    const char *result = NULL;
    int code = 200;
    struct addr_norm an;
    if (rc == -HERR_EXPIRED) {
        code = 410;
        result = "expired";
    } else if (rc < 0) {
        code = 404;
        result = rc == -HERR_BAD_MAC ? "bad_mac" : rc == -HERR_FUTURE ? "future" : "malformed";
    } else if (!config_tenant(cfg, t.tenant)) {
        code = 404;
        result = "unknown_tenant";
    } else if (addr_normalize(t.rcpt, strlen(t.rcpt), &an, NULL) < 0) {
        code = 404;
        result = "bad_recipient";
    }
    if (code == 200 && rq->method != UNSUB_POST) {
        result = "page";
        rc = respond_page(c, head, rq->token, rq->token_len);
    } else if (code == 200) {
        int taken = record(u, cfg, &t, an.key, c->peer, now);
        if (taken < 0) {
            code = 503;
            result = "redis_down";
            rc = respond_text(c, 503, false, "Please try again in a moment.\n");
        } else {
            result = taken ? "unsubscribed" : "already";
            if (taken)
                atomic_fetch_add(
                    &stats_tenant_row(&u->sh->stats.tenants, cfg, t.tenant)->unsubscribes, 1);
            rc = respond_text(c, 200, false, "You are unsubscribed.\n");
        }
    } else {
        rc = respond_text(c, code, head,
                          code == 410 ? "This link has expired.\n" : "Unknown or damaged link.\n");
    }
    if (code == 200 || code == 503)
        log_event(
            LOG_INFO, "event=unsubscribe peer=%s method=%s status=%d result=%s tenant=%s to=%s",
            c->peer, method_name(rq->method), code, result, LOG_VALUE(t.tenant), LOG_VALUE(t.rcpt));
    else
        log_event(LOG_INFO, "event=unsubscribe peer=%s method=%s status=%d result=%s", c->peer,
                  method_name(rq->method), code, result);
    engine_gen_release(gen);
    return rc;
}

static void conn_write(struct unsub_conn *c)
{
    while (c->sent < c->out.len) {
        ssize_t k = send(c->fd, c->out.data + c->sent, c->out.len - c->sent, MSG_NOSIGNAL);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (k <= 0) break;
        c->sent += (size_t)k;
    }
    /* Half-close first so the client reads the whole response before the
     * close, even if it sent more than was read. */
    shutdown(c->fd, SHUT_WR);
    conn_close(c);
}

static void conn_read(struct unsub_server *u, struct unsub_conn *c, int64_t now_ms)
{
    struct unsub_request rq;
    int rc = -EAGAIN;
    for (;;) {
        ssize_t k = recv(c->fd, c->req + c->got, sizeof c->req - 1 - c->got, 0);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (k <= 0) {
            conn_close(c);
            return;
        }
        c->got += (size_t)k;
        rc = unsub_request_parse(c->req, c->got, &rq);
        if (rc != -EAGAIN) break;
        if (c->got == sizeof c->req - 1) {
            /* The parser answers before this; a safety net. */
            conn_close(c);
            return;
        }
    }
    if (handle(u, c, &rq) < 0) {
        conn_close(c);
        return;
    }
    c->writing = true;
    c->deadline_ms = now_ms + UNSUB_RESPONSE_MS;
    conn_write(c);
}

/* A free slot, else the one accepted longest ago (a real client sends its
 * request at once, so the oldest is the likeliest to be stuck). */
static struct unsub_conn *conn_slot(struct unsub_server *u)
{
    struct unsub_conn *oldest = &u->conns[0];
    for (size_t i = 0; i < UNSUB_MAX_CONNS; i++) {
        struct unsub_conn *c = &u->conns[i];
        if (c->fd < 0) return c;
        if (c->seq < oldest->seq) oldest = c;
    }
    log_event(LOG_WARN, "event=unsubscribe_slot_evicted peer=%s reason=\"all slots busy\"",
              oldest->peer);
    conn_close(oldest);
    return oldest;
}

static void peer_name(const struct sockaddr_storage *sa, char *out, size_t cap)
{
    if (!sockaddr_ip(sa, out, cap)) snprintf(out, cap, "-");
}

static void accept_clients(struct unsub_server *u, int64_t now_ms)
{
    for (int n = 0; n < UNSUB_MAX_CONNS; n++) {
        struct sockaddr_storage sa;
        socklen_t sl = sizeof sa;
        int fd = accept4(u->fd, (struct sockaddr *)&sa, &sl, SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                u->accept_paused_until_ms = now_ms + UNSUB_ACCEPT_PAUSE_MS;
            return;
        }
        struct unsub_conn *c = conn_slot(u);
        c->fd = fd;
        c->writing = false;
        c->got = c->sent = 0;
        hbuf_init(&c->out);
        c->seq = ++u->n_accepted;
        c->deadline_ms = now_ms + UNSUB_REQUEST_MS;
        peer_name(&sa, c->peer, sizeof c->peer);
    }
}

static int expire_clients(struct unsub_server *u, int64_t now_ms)
{
    int64_t next = -1;
    for (size_t i = 0; i < UNSUB_MAX_CONNS; i++) {
        struct unsub_conn *c = &u->conns[i];
        if (c->fd < 0) continue;
        if (now_ms >= c->deadline_ms) {
            if (!c->writing)
                log_event(LOG_INFO, "event=unsubscribe peer=%s status=408 result=timeout got=%zu",
                          c->peer, c->got);
            conn_close(c);
            continue;
        }
        if (next < 0 || c->deadline_ms - now_ms < next) next = c->deadline_ms - now_ms;
    }
    if (u->accept_paused_until_ms > now_ms &&
        (next < 0 || u->accept_paused_until_ms - now_ms < next))
        next = u->accept_paused_until_ms - now_ms;
    return (int)next;
}

static void *unsub_main(void *arg)
{
    struct unsub_server *u = arg;
    struct pollfd pfd[2 + UNSUB_MAX_CONNS];
    struct unsub_conn *owner[2 + UNSUB_MAX_CONNS];
    for (;;) {
        int64_t now = clock_mono_ms();
        int timeout = expire_clients(u, now);
        nfds_t n = 0;
        pfd[n++] = (struct pollfd){.fd = u->wake[0], .events = POLLIN};
        bool listening = u->accept_paused_until_ms <= now;
        if (listening) pfd[n++] = (struct pollfd){.fd = u->fd, .events = POLLIN};
        for (size_t i = 0; i < UNSUB_MAX_CONNS; i++) {
            struct unsub_conn *c = &u->conns[i];
            if (c->fd < 0) continue;
            owner[n] = c;
            pfd[n++] = (struct pollfd){.fd = c->fd, .events = c->writing ? POLLOUT : POLLIN};
        }
        int rc = poll(pfd, n, timeout);
        if (rc < 0 && errno != EINTR) {
            log_event(LOG_ERROR,
                      "event=unsubscribe_failed reason=\"poll: %s\" action=endpoint_closed",
                      strerror(errno));
            break;
        }
        if (rc <= 0) continue;
        if (pfd[0].revents) break;
        now = clock_mono_ms();
        for (nfds_t k = listening ? 2 : 1; k < n; k++) {
            if (!pfd[k].revents) continue;
            if (owner[k]->writing)
                conn_write(owner[k]);
            else
                conn_read(u, owner[k], now);
        }
        if (listening && pfd[1].revents) accept_clients(u, now);
    }
    for (size_t i = 0; i < UNSUB_MAX_CONNS; i++)
        if (u->conns[i].fd >= 0) conn_close(&u->conns[i]);
    redis_drop(u);
    return NULL;
}

static void server_free(struct unsub_server *u)
{
    explicit_bzero(&u->keys, sizeof u->keys);
    if (u->fd >= 0) close(u->fd);
    for (int i = 0; i < 2; i++)
        if (u->wake[i] >= 0) close(u->wake[i]);
    free(u);
}

int unsub_start(struct engine_shared *sh, const char *listen_on, const struct fb_keys *keys,
                struct unsub_server **out, char *err, size_t errlen)
{
    *out = NULL;
    if (sh->redis.tls) {
        snprintf(err, errlen, "unsubscribe.listen: the endpoint does not speak rediss:// yet");
        return -HERR_CONFIG;
    }
    struct sockaddr_storage sa;
    unsigned len = 0;
    if (config_parse_listen(listen_on, &sa, &len) < 0) {
        snprintf(err, errlen, "unsubscribe.listen: cannot read '%s'", listen_on);
        return -HERR_CONFIG;
    }
    struct unsub_server *u = calloc(1, sizeof *u);
    if (!u) return -ENOMEM;
    u->sh = sh;
    u->keys = *keys;
    u->wake[0] = u->wake[1] = -1;
    for (size_t i = 0; i < UNSUB_MAX_CONNS; i++)
        u->conns[i].fd = -1;
    u->fd = socket(sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (u->fd >= 0) setsockopt(u->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (u->fd < 0 || bind(u->fd, (struct sockaddr *)&sa, len) < 0 || listen(u->fd, 128) < 0 ||
        pipe2(u->wake, O_CLOEXEC | O_NONBLOCK) < 0) {
        int e = errno;
        snprintf(err, errlen, "unsubscribe.listen %s: %s", listen_on, strerror(e));
        server_free(u);
        return -e;
    }
    if (pthread_create(&u->thread, NULL, unsub_main, u) != 0) {
        snprintf(err, errlen, "unsubscribe: cannot start its thread");
        server_free(u);
        return -EAGAIN;
    }
    *out = u;
    return 0;
}

void unsub_stop(struct unsub_server *u)
{
    if (!u) return;
    ssize_t k;
    do
        k = write(u->wake[1], "x", 1);
    while (k < 0 && errno == EINTR);
    pthread_join(u->thread, NULL);
    server_free(u);
}
