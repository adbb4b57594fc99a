/* One stream connection on the ring, plaintext or TLS. At most one RECV and
 * one SEND are in flight; each is tracked so a closing transport waits for
 * the kernel to give its buffers back before the fd is closed and the owner
 * hears on_quiet (lesson: never free while a submitted SQE still points at
 * the object). TLS never touches the socket: RECV completions feed the
 * memory BIO, and the pump's output joins `wire` for the next SEND. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "herald/transport.h"

/* Plaintext taken out of OpenSSL per read; a record holds at most 16 KiB. */
#define XPORT_PLAIN_CHUNK 16384

static void on_connect(struct ring_op *op, int res, uint32_t flags);
static void on_send(struct ring_op *op, int res, uint32_t flags);
static void on_recv(struct ring_op *op, int res, uint32_t flags);
static void on_connect_timeout(struct ring_timer *t);
static void finish(struct ring_deferred *d);

int xport_init(struct xport *x, struct ring *r, const struct xport_ops *ops, void *owner,
               size_t rbuf_cap)
{
    memset(x, 0, sizeof *x);
    x->ring = r;
    x->ops = ops;
    x->owner = owner;
    x->fd = -1;
    x->op_connect.fn = on_connect;
    x->op_send.fn = on_send;
    x->op_recv.fn = on_recv;
    ring_timer_init(&x->connect_timer, on_connect_timeout);
    hbuf_init(&x->out);
    hbuf_init(&x->wire);
    hbuf_init(&x->sending);
    x->rbuf = malloc(rbuf_cap);
    x->rbuf_cap = rbuf_cap;
    return x->rbuf ? 0 : -ENOMEM;
}

static void tls_drop(struct xport *x)
{
    if (x->tls_on) tls_conn_free(&x->tls);
    x->tls_on = x->tls_ready = x->tls_saved = false;
    x->tls_save_to = NULL;
    x->tls_save_key = NULL;
}

void xport_free(struct xport *x)
{
    if (x->ring) /* NULL: never initialised, nothing to cancel */
        ring_timer_cancel(x->ring, &x->connect_timer);
    if (x->fd >= 0) close(x->fd);
    x->fd = -1;
    tls_drop(x);
    hbuf_free(&x->out);
    hbuf_free(&x->wire);
    hbuf_free(&x->sending);
    free(x->rbuf);
    x->rbuf = NULL;
}

/* Deferred, so a closing transport is never finished from inside one of
 * its own completion handlers; the last completion re-queues it. */
static void maybe_finish(struct xport *x)
{
    if (x->state == XPORT_CLOSING && xport_is_quiet(x)) ring_defer(x->ring, &x->finish, finish);
}

static void finish(struct ring_deferred *d)
{
    struct xport *x = HERALD_CONTAINER_OF(d, struct xport, finish);
    if (x->state != XPORT_CLOSING || !xport_is_quiet(x)) return;
    if (x->fd >= 0) close(x->fd);
    x->fd = -1;
    x->state = XPORT_IDLE;
    /* The owner may free x here: nothing below may touch it. */
    x->ops->on_quiet(x->owner);
}

static void begin_close(struct xport *x)
{
    x->state = XPORT_CLOSING;
    x->reading = false;
    ring_timer_cancel(x->ring, &x->connect_timer);
    if (x->fd >= 0 && !xport_is_quiet(x)) ring_cancel_fd(x->ring, x->fd);
    /* Nothing more will leave: the SEND in flight keeps `sending` until
     * its completion, the rest is dropped now. */
    hbuf_reset(&x->out);
    hbuf_reset(&x->wire);
    maybe_finish(x);
}

void xport_close(struct xport *x)
{
    if (x->state == XPORT_CLOSING) return;
    begin_close(x);
}

/* A failure the transport found itself: stop, then tell the owner. */
static void fail(struct xport *x, int err, enum xport_op op)
{
    if (x->state == XPORT_CLOSING) return;
    begin_close(x);
    x->ops->on_closed(x->owner, err, op);
}

int xport_connect(struct xport *x, const struct sockaddr *peer, socklen_t peer_len,
                  const struct sockaddr *source, socklen_t source_len, int64_t timeout_ms)
{
    if (x->state != XPORT_IDLE) return -EALREADY;
    x->bind_failed = false;
    tls_drop(x);
    hbuf_reset(&x->out);
    hbuf_reset(&x->wire);
    int fd = socket(peer->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (x->keepalive) {
        /* A peer gone without a FIN (host down, a NAT that forgot us) is
         * found in about a minute even while we wait for nothing. */
        int idle = 30, intvl = 10, cnt = 3;
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
        setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
    }
    if (source && source_len) {
        /* Let connect() pick the port so many connections share one IP
         * without exhausting ephemeral ports at bind time. */
        setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
        if (bind(fd, source, source_len) < 0) {
            int err = -errno;
            close(fd);
            x->bind_failed = true;
            return err;
        }
    }
    x->fd = fd;
    x->state = XPORT_CONNECTING;
    x->reading = true;
    struct io_uring_sqe *sqe = ring_sqe(x->ring, &x->op_connect);
    io_uring_prep_connect(sqe, fd, peer, peer_len);
    x->connect_inflight = true;
    if (timeout_ms > 0) ring_timer_arm(x->ring, &x->connect_timer, x->ring->now_ms + timeout_ms);
    return 0;
}

static void on_connect_timeout(struct ring_timer *t)
{
    struct xport *x = HERALD_CONTAINER_OF(t, struct xport, connect_timer);
    if (x->state == XPORT_CONNECTING) fail(x, -HERR_TIMEOUT, XPORT_OP_CONNECT);
}

/* Move queued output towards the kernel: plaintext is encrypted once the
 * handshake is done (never before), then one SEND takes everything ready.
 * Returns 0, or the error after which the caller fails the transport. */
static int flush(struct xport *x, enum xport_op *op)
{
    if (x->state != XPORT_UP) return 0;
    struct hbuf *src = &x->out;
    if (x->tls_on) {
        *op = XPORT_OP_TLS;
        if (x->tls_ready && x->out.len > 0) {
            int rc = tls_pump_write(&x->tls, x->out.data, x->out.len, &x->wire);
            hbuf_reset(&x->out);
            if (rc < 0) return rc;
        }
        src = &x->wire;
    }
    if (x->send_inflight || src->len == 0) return 0;
    /* Swap instead of copying: the SEND owns `sending` until it completes. */
    struct hbuf tmp = x->sending;
    x->sending = *src;
    *src = tmp;
    hbuf_reset(src);
    x->sent = 0;
    ring_send(x->ring, &x->op_send, x->fd, x->sending.data, x->sending.len);
    x->send_inflight = true;
    x->send_progress_ms = x->ring->now_ms;
    return 0;
}

/* flush from a completion: a failure is the transport's own. */
static void flush_or_fail(struct xport *x)
{
    enum xport_op op = XPORT_OP_SEND;
    int rc = flush(x, &op);
    if (rc < 0) fail(x, rc, op);
}

static int queued(struct xport *x)
{
    enum xport_op op = XPORT_OP_SEND;
    int rc = flush(x, &op);
    if (rc < 0) begin_close(x); /* the owner hears it from our return code */
    return rc;
}

int xport_send(struct xport *x, const void *p, size_t n)
{
    if (x->state != XPORT_CONNECTING && x->state != XPORT_UP) return -ENOTCONN;
    if (n == 0) return 0;
    int rc = hbuf_append(&x->out, p, n);
    if (rc < 0) return rc;
    return queued(x);
}

int xport_send_buf(struct xport *x, struct hbuf *b)
{
    if (x->state != XPORT_CONNECTING && x->state != XPORT_UP) return -ENOTCONN;
    if (b->len == 0) return 0;
    if (x->out.len == 0) {
        struct hbuf tmp = x->out;
        x->out = *b;
        *b = tmp;
    } else {
        int rc = hbuf_append(&x->out, b->data, b->len);
        if (rc < 0) return rc;
    }
    hbuf_reset(b);
    return queued(x);
}

static void arm_recv(struct xport *x)
{
    if (x->state != XPORT_UP || !x->reading || x->recv_inflight) return;
    struct io_uring_sqe *sqe = ring_sqe(x->ring, &x->op_recv);
    io_uring_prep_recv(sqe, x->fd, x->rbuf, x->rbuf_cap, 0);
    x->recv_inflight = true;
}

void xport_read_stop(struct xport *x)
{
    x->reading = false;
}

static void on_connect(struct ring_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct xport *x = HERALD_CONTAINER_OF(op, struct xport, op_connect);
    x->connect_inflight = false;
    if (x->state != XPORT_CONNECTING) {
        maybe_finish(x);
        return;
    }
    ring_timer_cancel(x->ring, &x->connect_timer);
    if (res < 0) {
        fail(x, res, XPORT_OP_CONNECT);
        return;
    }
    x->state = XPORT_UP;
    x->ops->on_connected(x->owner);
    arm_recv(x);
    flush_or_fail(x);
}

int xport_start_tls(struct xport *x, const struct xport_tls_opts *o)
{
    if (x->tls_on) return -EALREADY;
    if (x->state != XPORT_UP) return -ENOTCONN;
    int rc = tls_conn_init(&x->tls, o->ctx, o->host, o->verify, o->resume);
    if (rc < 0) return rc;
    x->tls_on = true;
    x->tls_ready = x->tls_saved = false;
    x->tls_save_to = o->save_to;
    x->tls_save_key = o->save_key;
    rc = tls_pump_handshake(&x->tls, &x->wire); /* the ClientHello */
    if (rc < 0 && rc != -EAGAIN)
        return rc; /* tls_on stays set: nothing plaintext leaves any more */
    return queued(x);
}

static void keep_session(struct xport *x)
{
    if (x->tls_saved || !x->tls_save_to) return;
    SSL_SESSION *sess = tls_conn_session(&x->tls);
    if (!sess) return;
    tls_session_cache_put(x->tls_save_to, x->tls_save_key, sess);
    x->tls_saved = true;
    log_event(LOG_DEBUG, "event=tls_session_saved dest=%s", x->tls_save_key);
}

/* Ciphertext arrived: advance the handshake, then hand the owner what
 * decrypts. Stops as soon as the owner closed or stopped reading. */
static void tls_input(struct xport *x, const char *p, size_t n)
{
    if (tls_conn_feed(&x->tls, p, n) < 0) {
        fail(x, -ENOMEM, XPORT_OP_TLS);
        return;
    }
    if (!x->tls_ready) {
        int rc = tls_pump_handshake(&x->tls, &x->wire);
        if (rc == -EAGAIN) {
            flush_or_fail(x);
            return;
        }
        if (rc < 0) {
            fail(x, rc, XPORT_OP_HANDSHAKE);
            return;
        }
        x->tls_ready = true;
        flush_or_fail(x);
        if (x->state != XPORT_UP) return;
        x->ops->on_tls_ready(x->owner);
    }
    char plain[XPORT_PLAIN_CHUNK];
    while (x->state == XPORT_UP && x->reading) {
        int r = tls_pump_read(&x->tls, plain, sizeof plain, &x->wire);
        if (r == 0) break;
        if (r < 0) {
            fail(x, r, XPORT_OP_TLS);
            return;
        }
        x->ops->on_data(x->owner, plain, (size_t)r);
    }
    /* TLS 1.3 tickets come after the handshake, in records of their own. */
    keep_session(x);
    flush_or_fail(x);
}

static void on_recv(struct ring_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct xport *x = HERALD_CONTAINER_OF(op, struct xport, op_recv);
    x->recv_inflight = false;
    if (x->state != XPORT_UP) {
        maybe_finish(x);
        return;
    }
    if (res <= 0) {
        fail(x, res < 0 ? res : -HERR_CLOSED, XPORT_OP_RECV);
        return;
    }
    ring_mark_filled(x->rbuf, (size_t)res);
    if (x->tls_on)
        tls_input(x, x->rbuf, (size_t)res);
    else if (x->reading)
        x->ops->on_data(x->owner, x->rbuf, (size_t)res);
    arm_recv(x);
}

static void on_send(struct ring_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct xport *x = HERALD_CONTAINER_OF(op, struct xport, op_send);
    x->send_inflight = false;
    if (x->state != XPORT_UP) {
        maybe_finish(x);
        return;
    }
    if (res <= 0) {
        fail(x, res < 0 ? res : -HERR_CLOSED, XPORT_OP_SEND);
        return;
    }
    x->send_progress_ms = x->ring->now_ms;
    if (ring_send_continue(x->ring, &x->op_send, x->fd, x->sending.data, x->sending.len, &x->sent,
                           res)) {
        x->send_inflight = true;
        return;
    }
    hbuf_reset(&x->sending);
    flush_or_fail(x);
    if (x->state == XPORT_UP && xport_is_drained(x) && x->ops->on_sent) x->ops->on_sent(x->owner);
}
