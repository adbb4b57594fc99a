/* Redis connection over the ring. Commands are formatted by hiredis and
 * queued on the transport (src/net/), which keeps one SEND in flight and
 * puts everything queued meanwhile in the next one (that is what pipelines
 * notes across messages); its RECV feeds hiredis' reader. Replies arrive in
 * command order, so callbacks are a FIFO. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "herald/redis.h"
#include "replies.h"

#define REDIS_RBUF 65536

static void on_connected(void *owner);
static void on_tls_ready(void *owner);
static void on_data(void *owner, const char *p, size_t n);
static void on_closed(void *owner, int err, enum xport_op op);
static void on_quiet(void *owner);
static void on_reply_timer(struct ring_timer *t);

static const struct xport_ops client_xops = {
    .on_connected = on_connected,
    .on_tls_ready = on_tls_ready,
    .on_data = on_data,
    .on_closed = on_closed,
    .on_quiet = on_quiet,
};

int redis_client_init(struct redis_client *c, struct ring *r, const struct redis_addr *addr,
                      const char *name, redis_state_fn on_state, void *state_arg)
{
    memset(c, 0, sizeof *c);
    c->ring = r;
    c->addr = addr;
    c->name = name;
    c->on_state = on_state;
    c->state_arg = state_arg;
    ring_timer_init(&c->reply_timer, on_reply_timer);
    return xport_init(&c->x, r, &client_xops, c, REDIS_RBUF);
}

void redis_client_set_timeouts(struct redis_client *c, int64_t connect_ms, int64_t reply_ms)
{
    c->connect_timeout_ms = connect_ms;
    c->reply_timeout_ms = reply_ms;
    c->x.keepalive = true;
}

/* Replies are owed and nothing at all has come for reply_timeout_ms: the
 * server is gone or black-holed (a dead link, a paused VM). */
static void on_reply_timer(struct ring_timer *t)
{
    struct redis_client *c = HERALD_CONTAINER_OF(t, struct redis_client, reply_timer);
    if ((c->state != REDIS_C_CONNECTING && c->state != REDIS_C_UP) || c->q_len == 0)
        return;
    int64_t due = c->waiting_since_ms + c->reply_timeout_ms;
    if (c->ring->now_ms < due) {
        ring_timer_arm(c->ring, &c->reply_timer, due);
        return;
    }
    log_event(LOG_WARN, "event=redis_timeout conn=%s host=%s waited_ms=%lld owed=%zu",
              c->name, c->addr->host, (long long)(c->ring->now_ms - c->waiting_since_ms),
              c->q_len);
    redis_client_close(c, -HERR_TIMEOUT);
}

void redis_client_set_max_reply(struct redis_client *c, size_t max)
{
    c->max_reply = max;
}

void redis_client_free(struct redis_client *c)
{
    if (c->ring)
        ring_timer_cancel(c->ring, &c->reply_timer);
    if (c->reader)
        redisReaderFree(c->reader);
    c->reader = NULL;
    reply_store_free(&c->replies);
    xport_free(&c->x);
    free(c->q);
    c->q = NULL;
}

static int q_push(struct redis_client *c, redis_reply_fn fn, void *arg)
{
    if (c->q_len == c->q_cap) {
        size_t cap = c->q_cap ? c->q_cap * 2 : 256;
        struct redis_pending *nq = malloc(cap * sizeof *nq);
        if (!nq)
            return -ENOMEM;
        for (size_t i = 0; i < c->q_len; i++)
            nq[i] = c->q[(c->q_head + i) % c->q_cap];
        free(c->q);
        c->q = nq;
        c->q_cap = cap;
        c->q_head = 0;
    }
    c->q[(c->q_head + c->q_len) % c->q_cap] = (struct redis_pending){fn, arg};
    if (c->q_len++ == 0 && c->reply_timeout_ms > 0) {
        c->waiting_since_ms = c->ring->now_ms;
        if (!ring_timer_armed(&c->reply_timer))
            ring_timer_arm(c->ring, &c->reply_timer, c->waiting_since_ms + c->reply_timeout_ms);
    }
    return 0;
}

static bool q_pop(struct redis_client *c, struct redis_pending *out)
{
    if (c->q_len == 0)
        return false;
    *out = c->q[c->q_head];
    c->q_head = (c->q_head + 1) % c->q_cap;
    c->q_len--;
    return true;
}

void redis_client_set_tls(struct redis_client *c, SSL_CTX *ctx)
{
    c->tls_ctx = ctx;
}

static void auth_reply(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)arg;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        log_event(LOG_ERROR, "event=redis_auth_failed conn=%s reason=%s", c->name,
                  LOG_VALUE(reply->str));
        redis_client_close(c, -HERR_REDIS);
    }
}

int redis_client_connect(struct redis_client *c)
{
    if (c->state != REDIS_C_IDLE)
        return -EALREADY;
    if (c->addr->tls && !c->tls_ctx) {
        log_event(LOG_ERROR, "event=redis_connect_failed conn=%s reason=\"rediss:// without a "
                             "TLS context\"",
                  c->name);
        return -EPROTONOSUPPORT;
    }
    if (c->reader)
        redisReaderFree(c->reader);
    /* The store is not reset here: a reply handler that reconnects still
     * reads its reply until feed_reader resets the store after it. */
    c->reader = reply_store_reader(&c->replies);
    if (!c->reader)
        return -ENOMEM;
    int rc = xport_connect(&c->x, (const struct sockaddr *)&c->addr->sa, c->addr->sa_len, NULL, 0,
                           c->connect_timeout_ms);
    if (rc < 0)
        return rc;
    c->reply_bytes = 0;
    c->close_err = 0;
    c->state = REDIS_C_CONNECTING;
    /* AUTH and SELECT go first in the byte stream, ahead of any command the
     * owner queues, so they need no separate handshake step. */
    if (c->addr->password[0]) {
        if (c->addr->user[0])
            redis_client_commandf(c, auth_reply, NULL, "AUTH %s %s", c->addr->user,
                                  c->addr->password);
        else
            redis_client_commandf(c, auth_reply, NULL, "AUTH %s", c->addr->password);
    }
    if (c->addr->db)
        redis_client_commandf(c, auth_reply, NULL, "SELECT %d", c->addr->db);
    return 0;
}

static int queue_formatted(struct redis_client *c, redis_reply_fn fn, void *arg, const char *cmd,
                           int len)
{
    if (len < 0)
        return -ENOMEM;
    int rc = q_push(c, fn, arg);
    if (rc)
        return rc;
    rc = xport_send(&c->x, cmd, (size_t)len);
    if (rc < 0 && xport_is_closing(&c->x)) {
        /* Queued, but the transport failed handing it on: the command gets
         * its NULL reply with every other one. */
        redis_client_close(c, rc);
        return 0;
    }
    if (rc < 0)
        c->q_len--; /* not queued: no callback slot either */
    return rc;
}

int redis_client_command_argv(struct redis_client *c, redis_reply_fn fn, void *arg, int argc,
                              const char **argv, const size_t *argvlen)
{
    if (c->state != REDIS_C_UP && c->state != REDIS_C_CONNECTING)
        return -ENOTCONN;
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, argvlen);
    int rc = queue_formatted(c, fn, arg, cmd, len);
    redisFreeCommand(cmd);
    return rc;
}

int redis_client_command_raw(struct redis_client *c, redis_reply_fn fn, void *arg,
                             const char *cmd, size_t len)
{
    if (c->state != REDIS_C_UP && c->state != REDIS_C_CONNECTING)
        return -ENOTCONN;
    if (len > INT32_MAX)
        return -E2BIG;
    return queue_formatted(c, fn, arg, (char *)cmd, (int)len);
}

/* Decimal digits of v into buf (no terminator); returns how many. */
static size_t put_decimal(char *buf, size_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

int redis_format_append(struct hbuf *out, int argc, const char **argv, const size_t *argvlen)
{
    if (argc < 0)
        return -EINVAL;
    char head[32];
    size_t k = 0;
    head[k++] = '*';
    k += put_decimal(head + k, (size_t)argc);
    head[k++] = '\r';
    head[k++] = '\n';
    if (hbuf_append(out, head, k) < 0)
        return -ENOMEM;
    for (int i = 0; i < argc; i++)
        if (redis_format_bulk(out, argv[i], argvlen ? argvlen[i] : strlen(argv[i])) < 0)
            return -ENOMEM;
    return 0;
}

int redis_format_bulk(struct hbuf *out, const char *p, size_t n)
{
    char head[32];
    size_t k = 0;
    head[k++] = '$';
    k += put_decimal(head + k, n);
    head[k++] = '\r';
    head[k++] = '\n';
    if (n > SIZE_MAX / 2 || hbuf_reserve(out, k + n + 2) < 0)
        return -ENOMEM;
    memcpy(out->data + out->len, head, k);
    if (n)
        memcpy(out->data + out->len + k, p, n);
    memcpy(out->data + out->len + k + n, "\r\n", 2);
    out->len += k + n + 2;
    out->data[out->len] = '\0';
    return 0;
}

int redis_client_commandf(struct redis_client *c, redis_reply_fn fn, void *arg, const char *fmt,
                          ...)
{
    if (c->state != REDIS_C_UP && c->state != REDIS_C_CONNECTING)
        return -ENOTCONN;
    char *cmd = NULL;
    va_list ap;
    va_start(ap, fmt);
    int len = redisvFormatCommand(&cmd, fmt, ap);
    va_end(ap);
    int rc = queue_formatted(c, fn, arg, cmd, len);
    redisFreeCommand(cmd);
    return rc;
}

void redis_client_close(struct redis_client *c, int err)
{
    if (c->state == REDIS_C_IDLE || c->state == REDIS_C_CLOSING)
        return;
    c->state = REDIS_C_CLOSING;
    c->close_err = err;
    ring_timer_cancel(c->ring, &c->reply_timer);
    xport_close(&c->x);
    /* Every command ever queued gets exactly one callback: NULL now. */
    struct redis_pending p;
    while (q_pop(c, &p))
        if (p.fn)
            p.fn(c, NULL, p.arg);
}

/* The transport gave everything back: only now may the owner reconnect or
 * free the client. */
static void on_quiet(void *owner)
{
    struct redis_client *c = owner;
    if (c->state != REDIS_C_CLOSING)
        return;
    c->state = REDIS_C_IDLE;
    if (c->on_state)
        c->on_state(c, false, c->close_err, c->state_arg);
}

static void on_closed(void *owner, int err, enum xport_op op)
{
    struct redis_client *c = owner;
    if (op == XPORT_OP_HANDSHAKE) {
        log_event(LOG_ERROR, "event=redis_tls_failed conn=%s host=%s reason=%s", c->name,
                  c->addr->host, LOG_VALUE(tls_conn_error(&c->x.tls)));
        err = -HERR_TLS;
    }
    redis_client_close(c, err);
}

static void on_connected(void *owner)
{
    struct redis_client *c = owner;
    c->state = REDIS_C_UP;
    if (c->addr->tls) {
        struct xport_tls_opts o = {.ctx = c->tls_ctx, .host = c->addr->host,
                                   .verify = TLS_VERIFY_PEER};
        int rc = xport_start_tls(&c->x, &o);
        if (rc < 0)
            redis_client_close(c, rc);
        return;
    }
    if (c->on_state)
        c->on_state(c, true, 0, c->state_arg);
}

static void on_tls_ready(void *owner)
{
    struct redis_client *c = owner;
    if (c->on_state)
        c->on_state(c, true, 0, c->state_arg);
}

/* Hand plaintext to hiredis and run the callbacks of complete replies. */
static int feed_reader(struct redis_client *c, const char *p, size_t n)
{
    c->reply_bytes += n;
    if (redisReaderFeed(c->reader, p, n) != REDIS_OK)
        return -HERR_PROTOCOL;
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
            log_event(LOG_ERROR, "event=redis_protocol_error conn=%s reason=%s", c->name,
                      LOG_VALUE(c->reader->errstr));
            return -HERR_PROTOCOL;
        }
        if (!reply)
            break;
        /* What is left unparsed belongs to the replies that follow. */
        c->reply_bytes = c->reader->len - c->reader->pos;
        c->waiting_since_ms = c->ring->now_ms; /* it answers: the clock starts again */
        struct redis_pending pend;
        if (!q_pop(c, &pend)) {
            /* A reply nobody asked for: the peer is not a Redis we understand. */
            reply_store_reset(&c->replies);
            return -HERR_PROTOCOL;
        }
        if (pend.fn) /* fire and forget */
            pend.fn(c, reply, pend.arg);
        /* No half-built reply exists between two GetReply calls. */
        reply_store_reset(&c->replies);
        if (c->state != REDIS_C_UP)
            return 0;
    }
    if (c->max_reply && c->reply_bytes > c->max_reply) {
        log_event(LOG_ERROR, "event=redis_reply_too_large conn=%s bytes=%zu limit=%zu "
                             "reason=\"reply over engine.max_reply_bytes; reconnecting\"",
                  c->name, c->reply_bytes, c->max_reply);
        return -HERR_TOO_LONG;
    }
    return 0;
}

static void on_data(void *owner, const char *p, size_t n)
{
    struct redis_client *c = owner;
    if (c->state != REDIS_C_UP)
        return;
    int rc = feed_reader(c, p, n);
    if (rc < 0)
        redis_client_close(c, rc);
}
