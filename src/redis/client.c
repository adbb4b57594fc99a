/* Redis connection over the ring. Commands are formatted by hiredis into
 * `out`; one SEND at a time drains it (everything queued meanwhile goes in
 * the next SEND, which is what pipelines notes across messages); one RECV is
 * always armed and feeds hiredis' reader. Replies arrive in command order, so
 * callbacks are a FIFO. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <netinet/tcp.h>

#include "herald/redis.h"

#define REDIS_RBUF 65536

static void on_connect(struct ring_op *op, int res, uint32_t flags);
static void on_send(struct ring_op *op, int res, uint32_t flags);
static void on_recv(struct ring_op *op, int res, uint32_t flags);
static void finish_close(struct ring_deferred *d);

int redis_client_init(struct redis_client *c, struct ring *r, const struct redis_addr *addr,
                      const char *name, redis_state_fn on_state, void *state_arg)
{
    memset(c, 0, sizeof *c);
    c->ring = r;
    c->addr = addr;
    c->name = name;
    c->fd = -1;
    c->on_state = on_state;
    c->state_arg = state_arg;
    c->op_connect.fn = on_connect;
    c->op_send.fn = on_send;
    c->op_recv.fn = on_recv;
    hbuf_init(&c->out);
    hbuf_init(&c->sending);
    hbuf_init(&c->cout);
    c->rbuf = malloc(REDIS_RBUF);
    c->rbuf_cap = REDIS_RBUF;
    return c->rbuf ? 0 : -ENOMEM;
}

void redis_client_set_max_reply(struct redis_client *c, size_t max)
{
    c->max_reply = max;
}

void redis_client_free(struct redis_client *c)
{
    if (c->reader)
        redisReaderFree(c->reader);
    c->reader = NULL;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    hbuf_free(&c->out);
    hbuf_free(&c->sending);
    hbuf_free(&c->cout);
    if (c->tls_on)
        tls_conn_free(&c->tls);
    c->tls_on = false;
    free(c->q);
    c->q = NULL;
    free(c->rbuf);
    c->rbuf = NULL;
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
    c->q_len++;
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

static void flush(struct redis_client *c)
{
    if (c->state != REDIS_C_UP)
        return;
    struct hbuf *src = &c->out;
    if (c->tls_on) {
        /* Nothing in plaintext before the handshake is done. */
        if (c->tls_ready && c->out.len > 0) {
            if (tls_conn_write(&c->tls, c->out.data, c->out.len) < 0) {
                redis_client_close(c, -HERR_TLS);
                return;
            }
            hbuf_reset(&c->out);
        }
        if (tls_conn_take_output(&c->tls, &c->cout) < 0) {
            redis_client_close(c, -ENOMEM);
            return;
        }
        src = &c->cout;
    }
    if (c->send_inflight || src->len == 0)
        return;
    /* Swap instead of copying: the SEND owns `sending` until it completes. */
    struct hbuf tmp = c->sending;
    c->sending = *src;
    *src = tmp;
    hbuf_reset(src);
    c->sent = 0;
    ring_send(c->ring, &c->op_send, c->fd, c->sending.data, c->sending.len);
    c->send_inflight = true;
}

static void arm_recv(struct redis_client *c)
{
    if (c->state != REDIS_C_UP || c->recv_inflight)
        return;
    struct io_uring_sqe *sqe = ring_sqe(c->ring, &c->op_recv);
    io_uring_prep_recv(sqe, c->fd, c->rbuf, c->rbuf_cap, 0);
    c->recv_inflight = true;
}

static void auth_reply(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)arg;
    if (reply && reply->type == REDIS_REPLY_ERROR) {
        log_event(LOG_ERROR, "event=redis_auth_failed conn=%s reason=\"%.200s\"", c->name,
                  reply->str);
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
    if (c->tls_on)
        tls_conn_free(&c->tls);
    c->tls_on = c->tls_ready = false;
    hbuf_reset(&c->cout);
    int fd = socket(c->addr->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->fd = fd;
    if (c->reader)
        redisReaderFree(c->reader);
    c->reader = redisReaderCreate();
    if (!c->reader)
        return -ENOMEM;
    c->reply_bytes = 0;
    hbuf_reset(&c->out);
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
    struct io_uring_sqe *sqe = ring_sqe(c->ring, &c->op_connect);
    io_uring_prep_connect(sqe, fd, (const struct sockaddr *)&c->addr->sa, c->addr->sa_len);
    c->connect_inflight = true;
    return 0;
}

static int queue_formatted(struct redis_client *c, redis_reply_fn fn, void *arg, const char *cmd,
                           int len)
{
    if (len < 0)
        return -ENOMEM;
    size_t mark = c->out.len;
    int rc = hbuf_append(&c->out, cmd, (size_t)len);
    if (rc == 0) {
        rc = q_push(c, fn, arg);
        if (rc)
            c->out.len = mark; /* no callback slot: do not send the command either */
    }
    if (rc == 0)
        flush(c);
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

static void maybe_finish(struct redis_client *c)
{
    if (c->state == REDIS_C_CLOSING && !redis_client_busy(c))
        ring_defer(c->ring, &c->finish, finish_close);
}

static void finish_close(struct ring_deferred *d)
{
    struct redis_client *c = HERALD_CONTAINER_OF(d, struct redis_client, finish);
    if (c->state != REDIS_C_CLOSING || redis_client_busy(c))
        return;
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = REDIS_C_IDLE;
    if (c->on_state)
        c->on_state(c, false, c->close_err, c->state_arg);
}

void redis_client_close(struct redis_client *c, int err)
{
    if (c->state == REDIS_C_IDLE || c->state == REDIS_C_CLOSING)
        return;
    c->state = REDIS_C_CLOSING;
    c->close_err = err;
    if (c->fd >= 0 && redis_client_busy(c))
        ring_cancel_fd(c->ring, c->fd);
    hbuf_reset(&c->out);
    /* Every command ever queued gets exactly one callback: NULL now. */
    struct redis_pending p;
    while (q_pop(c, &p))
        if (p.fn)
            p.fn(c, NULL, p.arg);
    maybe_finish(c);
}

static void on_connect(struct ring_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct redis_client *c = HERALD_CONTAINER_OF(op, struct redis_client, op_connect);
    c->connect_inflight = false;
    if (c->state != REDIS_C_CONNECTING) {
        maybe_finish(c);
        return;
    }
    if (res < 0) {
        redis_client_close(c, res);
        return;
    }
    c->state = REDIS_C_UP;
    if (c->addr->tls) {
        if (tls_conn_init(&c->tls, c->tls_ctx, c->addr->host, TLS_VERIFY_PEER, NULL) < 0) {
            redis_client_close(c, -ENOMEM);
            return;
        }
        c->tls_on = true;
        arm_recv(c);
        tls_conn_handshake(&c->tls); /* the ClientHello */
        flush(c);
        return;
    }
    arm_recv(c);
    flush(c);
    if (c->on_state)
        c->on_state(c, true, 0, c->state_arg);
}

static int feed_reader(struct redis_client *c, const char *p, size_t n);

/* Ciphertext arrived: finish the handshake, then decrypt into the reader. */
static int tls_input(struct redis_client *c, const char *p, size_t n)
{
    if (tls_conn_feed(&c->tls, p, n) < 0)
        return -ENOMEM;
    if (!c->tls_ready) {
        int rc = tls_conn_handshake(&c->tls);
        if (rc == -EAGAIN) {
            flush(c);
            return 0;
        }
        if (rc < 0) {
            log_event(LOG_ERROR, "event=redis_tls_failed conn=%s host=%s reason=\"%s\"", c->name,
                      c->addr->host, tls_conn_error(&c->tls));
            return -HERR_TLS;
        }
        c->tls_ready = true;
        flush(c);
        if (c->on_state)
            c->on_state(c, true, 0, c->state_arg);
        if (c->state != REDIS_C_UP)
            return 0;
    }
    char plain[16384];
    for (;;) {
        int r = tls_conn_read(&c->tls, plain, sizeof plain);
        if (r == 0)
            break;
        if (r < 0)
            return r;
        int rc = feed_reader(c, plain, (size_t)r);
        if (rc || c->state != REDIS_C_UP)
            return rc;
    }
    flush(c);
    return 0;
}

static void on_send(struct ring_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct redis_client *c = HERALD_CONTAINER_OF(op, struct redis_client, op_send);
    c->send_inflight = false;
    if (c->state != REDIS_C_UP) {
        maybe_finish(c);
        return;
    }
    if (res <= 0) {
        redis_client_close(c, res < 0 ? res : -HERR_CLOSED);
        return;
    }
    if (ring_send_continue(c->ring, &c->op_send, c->fd, c->sending.data, c->sending.len,
                           &c->sent, res)) {
        c->send_inflight = true;
        return;
    }
    hbuf_reset(&c->sending);
    flush(c);
}

static void on_recv(struct ring_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct redis_client *c = HERALD_CONTAINER_OF(op, struct redis_client, op_recv);
    c->recv_inflight = false;
    if (c->state != REDIS_C_UP) {
        maybe_finish(c);
        return;
    }
    if (res <= 0) {
        redis_client_close(c, res < 0 ? res : -HERR_CLOSED);
        return;
    }
    ring_mark_filled(c->rbuf, (size_t)res);
    int rc = c->tls_on ? tls_input(c, c->rbuf, (size_t)res) : feed_reader(c, c->rbuf, (size_t)res);
    if (rc < 0) {
        redis_client_close(c, rc);
        return;
    }
    if (c->state == REDIS_C_UP)
        arm_recv(c);
}

/* Hand plaintext to hiredis and run the callbacks of complete replies.
 * Returns 0, or a negative code after which the caller closes. */
static int feed_reader(struct redis_client *c, const char *p, size_t n)
{
    c->reply_bytes += n;
    if (redisReaderFeed(c->reader, p, n) != REDIS_OK)
        return -HERR_PROTOCOL;
    for (;;) {
        void *reply = NULL;
        if (redisReaderGetReply(c->reader, &reply) != REDIS_OK) {
            log_event(LOG_ERROR, "event=redis_protocol_error conn=%s reason=\"%s\"", c->name,
                      c->reader->errstr);
            return -HERR_PROTOCOL;
        }
        if (!reply)
            break;
        /* What is left unparsed belongs to the replies that follow. */
        c->reply_bytes = c->reader->len - c->reader->pos;
        struct redis_pending pend;
        if (!q_pop(c, &pend)) {
            /* A reply nobody asked for: the peer is not a Redis we understand. */
            freeReplyObject(reply);
            return -HERR_PROTOCOL;
        }
        if (pend.fn) /* fire and forget */
            pend.fn(c, reply, pend.arg);
        freeReplyObject(reply);
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
