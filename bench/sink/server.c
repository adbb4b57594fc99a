/* herald-sink ring worker: one io_uring per thread, multishot accept on the
 * thread's own SO_REUSEPORT listening sockets, multishot recv into a provided
 * buffer ring, one send in flight per connection, and io_uring timeouts for
 * --latency-ms. Bytes go straight from the provided buffer into the pure
 * session (bench/sink/session.c), which copies only partial command lines, so
 * a buffer is handed back to the kernel as soon as its CQE is handled.
 *
 * STARTTLS: the session answers 220 and the connection gets a server-side
 * tls_conn over two memory BIOs (src/tls/). Ciphertext from the same recv
 * completions goes into its read BIO, SSL_read's plaintext into the same
 * session, replies through SSL_write, and the write BIO's records are sent
 * like plaintext replies were. Handshake records leave at once; replies keep
 * their --latency-ms. A TLS error ends that connection only.
 *
 * Lifetime rule: a connection is freed only after the CQE batch that marked
 * it closing, and only when no submitted request still points at it
 * (n_inflight == 0); closing cancels its recv and timer to get there. */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "sink.h"

#define RING_ENTRIES       1024
#define BUF_GROUP          1
#define BUF_COUNT          512         /* power of two */
#define BUF_SIZE           (16 * 1024) /* 8 MB of receive buffers per thread */
#define MARKS_MAX          8
#define RECORD_FLUSH_BYTES (64 * 1024)
#define RECORD_FLUSH_MS    500
#define TICK_MS            100 /* how often a worker looks at sink->stop */

/* user_data = object pointer | op; objects are 8-byte aligned. 0 is ignored
 * (cancel requests and other fire-and-forget completions). */
enum op { OP_IGNORE = 0, OP_ACCEPT, OP_RECV, OP_SEND, OP_TIMER, OP_MASK = 7 };

struct worker;

struct listener {
    struct worker *w;
    int fd;
} __attribute__((aligned(8)));

/* Replies become sendable at `due_ms` (--latency-ms) up to offset `end` of out. */
struct mark {
    int64_t due_ms;
    size_t end;
};

struct conn {
    struct worker *w;
    struct conn *next, *prev;
    int fd;
    int n_inflight;
    bool recv_armed, send_armed, timer_armed;
    bool closing, close_after_flush;
    struct sink_ip *ip;
    struct smtpd_session sess;
    /* sess.out[0..n_ready) may be sent now; marks cover what is still delayed. */
    size_t n_ready;
    struct mark marks[MARKS_MAX];
    unsigned n_marks;
    struct hbuf wire; /* bytes owned by the in-flight send; never realloc'd under it */
    size_t wire_off;
    struct tls_conn *tls; /* from STARTTLS on; plaintext connections have none */
    size_t n_plain;       /* sess.out[0..n_plain) predates STARTTLS: it goes out in clear */
    struct hbuf tls_out;  /* records owed to the client behind the send in flight */
    struct __kernel_timespec timer_ts;
} __attribute__((aligned(8)));

struct worker {
    struct sink *sink;
    unsigned index;
    struct io_uring ring;
    struct io_uring_buf_ring *br;
    size_t br_len;
    char *bufs;
    struct listener listeners[SINK_LISTEN_MAX];
    struct conn *conns; /* all live connections */
    struct conn *reap;  /* closing, freed after the CQE batch */
    uint64_t n_accepted;
    struct hbuf record;
    int64_t record_flushed_ms;
    bool save_warned;
    char plain[BUF_SIZE]; /* SSL_read's output, fed to a session at once */
};

static uint64_t ud(const void *obj, enum op op)
{
    return (uint64_t)(uintptr_t)obj | (uint64_t)op;
}

/* An SQE, submitting what is queued if the SQ is full. Never NULL: a ring
 * that cannot take a single SQE after a submit is a broken invariant. */
static struct io_uring_sqe *sqe_get(struct worker *w)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
    while (!sqe) {
        int rc = io_uring_submit(&w->ring);
        if (rc < 0 && rc != -EINTR && rc != -EAGAIN && rc != -EBUSY) {
            log_event(LOG_ERROR, "event=ring_submit_failed err=\"%s\"", herald_strerror(rc));
            abort();
        }
        sqe = io_uring_get_sqe(&w->ring);
    }
    return sqe;
}

static void arm_accept(struct listener *l)
{
    struct io_uring_sqe *sqe = sqe_get(l->w);
    io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud(l, OP_ACCEPT));
}

static void arm_recv(struct conn *c)
{
    struct io_uring_sqe *sqe = sqe_get(c->w);
    io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = BUF_GROUP;
    io_uring_sqe_set_data64(sqe, ud(c, OP_RECV));
    c->recv_armed = true;
    c->n_inflight++;
}

static void arm_timer(struct conn *c, int64_t delay_ms)
{
    if (delay_ms < 0) delay_ms = 0;
    c->timer_ts.tv_sec = delay_ms / 1000;
    c->timer_ts.tv_nsec = (delay_ms % 1000) * 1000000;
    struct io_uring_sqe *sqe = sqe_get(c->w);
    io_uring_prep_timeout(sqe, &c->timer_ts, 0, 0);
    io_uring_sqe_set_data64(sqe, ud(c, OP_TIMER));
    c->timer_armed = true;
    c->n_inflight++;
}

static void cancel(struct worker *w, uint64_t target, bool is_timer)
{
    struct io_uring_sqe *sqe = sqe_get(w);
    if (is_timer)
        io_uring_prep_timeout_remove(sqe, target, 0);
    else
        io_uring_prep_cancel64(sqe, target, 0);
    io_uring_sqe_set_data64(sqe, OP_IGNORE);
}

/* Start closing c. abrupt sends RST (SO_LINGER 0) instead of FIN: that is
 * what --drop means, and what we do to a peer that broke the connection. */
static void conn_close(struct conn *c, bool abrupt)
{
    if (c->closing) return;
    c->closing = true;
    sink_stats_close(&c->w->sink->stats, c->ip);
    if (abrupt) {
        struct linger lg = {.l_onoff = 1, .l_linger = 0};
        (void)setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
    if (c->recv_armed) cancel(c->w, ud(c, OP_RECV), false);
    if (c->timer_armed) cancel(c->w, ud(c, OP_TIMER), true);
    if (c->send_armed && abrupt) cancel(c->w, ud(c, OP_SEND), false);
    /* Unlink now, reap after the batch once nothing points at c. */
    if (c->prev)
        c->prev->next = c->next;
    else
        c->w->conns = c->next;
    if (c->next) c->next->prev = c->prev;
    c->next = c->w->reap;
    c->prev = NULL;
    c->w->reap = c;
}

static void conn_free(struct conn *c)
{
    close(c->fd);
    smtpd_session_free(&c->sess);
    hbuf_free(&c->wire);
    if (c->tls) {
        tls_conn_free(c->tls);
        free(c->tls);
    }
    hbuf_free(&c->tls_out);
    free(c);
}

/* Take the first n ready reply bytes out of sess.out: onto wire as they
 * are, or encrypted onto tls_out. */
static int take_ready(struct conn *c, size_t n, bool encrypt)
{
    int rc = encrypt ? tls_pump_write(c->tls, c->sess.out.data, n, &c->tls_out)
                     : hbuf_append(&c->wire, c->sess.out.data, n);
    if (rc < 0) return rc;
    hbuf_consume(&c->sess.out, n);
    for (unsigned i = 0; i < c->n_marks; i++)
        c->marks[i].end -= n;
    c->n_ready -= n;
    return 0;
}

/* Hand what may go now to the kernel if no send is in flight; closes the
 * connection once a QUIT (or fatal error) reply has gone out. Replies from
 * before STARTTLS (its 220 last) leave in clear and before any record. */
static void try_send(struct conn *c)
{
    if (c->closing || c->send_armed) return;
    hbuf_reset(&c->wire);
    int rc = 0;
    if (c->n_plain) {
        size_t n = c->n_ready < c->n_plain ? c->n_ready : c->n_plain;
        if (n) rc = take_ready(c, n, false);
        c->n_plain -= rc == 0 ? n : 0;
    } else if (c->tls) {
        if (c->n_ready) rc = take_ready(c, c->n_ready, true);
        if (rc == 0 && c->tls_out.len) {
            struct hbuf empty = c->wire;
            c->wire = c->tls_out;
            c->tls_out = empty;
        }
    } else if (c->n_ready) {
        rc = take_ready(c, c->n_ready, false);
    }
    if (rc < 0) {
        conn_close(c, true);
        return;
    }
    if (c->wire.len == 0) {
        if (c->close_after_flush && c->n_marks == 0 && c->n_ready == 0 && c->tls_out.len == 0)
            conn_close(c, false);
        return;
    }
    c->wire_off = 0;
    struct io_uring_sqe *sqe = sqe_get(c->w);
    io_uring_prep_send(sqe, c->fd, c->wire.data, c->wire.len, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud(c, OP_SEND));
    c->send_armed = true;
    c->n_inflight++;
}

/* New replies were appended to sess.out: send them now, or after
 * --latency-ms measured from when their command arrived. */
static void output_produced(struct conn *c)
{
    size_t accounted = c->n_marks ? c->marks[c->n_marks - 1].end : c->n_ready;
    size_t total = c->sess.out.len;
    if (total == accounted) return;
    unsigned latency_ms = c->w->sink->latency_ms;
    if (latency_ms == 0) {
        c->n_ready = total;
        try_send(c);
        return;
    }
    int64_t due = clock_mono_ms() + latency_ms;
    if (c->n_marks == MARKS_MAX) {
        /* A client pipelining this hard gets the earlier batch a bit later
         * rather than any batch early. */
        c->marks[c->n_marks - 1].due_ms = due;
        c->marks[c->n_marks - 1].end = total;
    } else {
        c->marks[c->n_marks++] = (struct mark){.due_ms = due, .end = total};
    }
    if (!c->timer_armed) arm_timer(c, latency_ms);
}

static void on_timer(struct conn *c)
{
    if (c->closing) return;
    int64_t now = clock_mono_ms();
    unsigned n = 0;
    while (n < c->n_marks && c->marks[n].due_ms <= now)
        n++;
    if (n) {
        c->n_ready = c->marks[n - 1].end;
        memmove(c->marks, c->marks + n, (c->n_marks - n) * sizeof c->marks[0]);
        c->n_marks -= n;
    }
    if (c->n_marks) arm_timer(c, c->marks[0].due_ms - now);
    try_send(c);
}

/* Append s to b with spaces and control bytes replaced, so a record line
 * always has exactly five space-separated fields. */
static void append_field(struct hbuf *b, const char *s, size_t n)
{
    if (n == 0) {
        (void)hbuf_append_str(b, "<>");
        return;
    }
    if (hbuf_reserve(b, n) < 0) return;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        b->data[b->len++] = (ch <= ' ' || ch == 0x7f) ? '?' : (char)ch;
    }
    b->data[b->len] = '\0';
}

static void record_flush(struct worker *w)
{
    size_t off = 0;
    while (off < w->record.len) {
        ssize_t n = write(w->sink->record_fd, w->record.data + off, w->record.len - off);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            log_event(LOG_WARN, "event=record_write_failed err=\"%s\"", strerror(errno));
            break;
        }
        off += (size_t)n;
    }
    hbuf_reset(&w->record);
    w->record_flushed_ms = clock_mono_ms();
}

/* --save-dir is for byte-exactness tests, not benches: a plain blocking write
 * on the worker thread keeps it simple. */
static void save_body(struct worker *w, const struct smtpd_session *s)
{
    uint64_t n = atomic_fetch_add(&w->sink->stats.n_saved, 1) + 1;
    char path[4096];
    snprintf(path, sizeof path, "%s/%llu.eml", w->sink->save_dir, (unsigned long long)n);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    size_t off = 0;
    while (fd >= 0 && off < s->body.len) {
        ssize_t k = write(fd, s->body.data + off, s->body.len - off);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) break;
        off += (size_t)k;
    }
    if ((fd < 0 || off < s->body.len) && !w->save_warned) {
        w->save_warned = true;
        log_event(LOG_WARN, "event=save_failed path=%s err=\"%s\"", path, strerror(errno));
    }
    if (fd >= 0) close(fd);
}

static void on_message(struct conn *c)
{
    struct worker *w = c->w;
    struct sink *sk = w->sink;
    const struct smtpd_session *s = &c->sess;
    atomic_fetch_add_explicit(&sk->stats.messages, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&sk->stats.bytes, s->body_len, memory_order_relaxed);
    atomic_fetch_add_explicit(&c->ip->messages, 1, memory_order_relaxed);
    if (sk->record_fd >= 0) {
        (void)hbuf_appendf(&w->record, "%lld %s %llu ", (long long)clock_wall_ms(), c->ip->ip,
                           (unsigned long long)s->body_len);
        append_field(&w->record, s->from.data, s->from.len);
        (void)hbuf_append_char(&w->record, ' ');
        append_field(&w->record, s->rcpts.data, s->rcpts.len);
        (void)hbuf_append_char(&w->record, '\n');
        if (w->record.len >= RECORD_FLUSH_BYTES) record_flush(w);
    }
    if (sk->save_dir) save_body(w, s);
}

/* A TLS error (or a peer that sent no TLS at all) ends this connection
 * only: the alert OpenSSL queued goes out, then the socket closes. */
static void tls_fail(struct conn *c, const char *stage)
{
    atomic_fetch_add_explicit(&c->w->sink->stats.tls_failed, 1, memory_order_relaxed);
    log_event(LOG_INFO, "event=tls_failed conn=%llX ip=%s stage=%s err=%s",
              (unsigned long long)c->sess.conn_id, c->ip->ip, stage,
              LOG_VALUE(tls_conn_error(c->tls)));
    c->close_after_flush = true;
}

/* The session said 220 to STARTTLS: whatever arrives from the next recv on
 * is the client's handshake. */
static void start_tls(struct conn *c)
{
    struct tls_conn *t = malloc(sizeof *t);
    if (!t || tls_conn_init_server(t, c->w->sink->tls_ctx) < 0) {
        free(t);
        log_event(LOG_WARN, "event=tls_setup_failed conn=%llX err=\"out of memory\"",
                  (unsigned long long)c->sess.conn_id);
        conn_close(c, true);
        return;
    }
    c->tls = t;
    c->n_plain = c->sess.out.len;
}

/* Plaintext from the client (off the wire, or out of SSL_read) into the
 * session, until all of it is used or the connection is on its way out. */
static void feed_session(struct conn *c, const char *p, size_t n)
{
    struct sink_stats *st = &c->w->sink->stats;
    while (n && !c->closing && !c->close_after_flush) {
        size_t used;
        enum smtpd_event ev = smtpd_session_feed(&c->sess, p, n, &used);
        p += used;
        n -= used;
        switch (ev) {
        case SMTPD_EV_NEED_MORE:
            break;
        case SMTPD_EV_MESSAGE:
            on_message(c);
            break;
        case SMTPD_EV_TEMPFAIL:
            atomic_fetch_add_explicit(&st->tempfail, 1, memory_order_relaxed);
            break;
        case SMTPD_EV_PERMFAIL:
            atomic_fetch_add_explicit(&st->permfail, 1, memory_order_relaxed);
            break;
        case SMTPD_EV_DROP:
            atomic_fetch_add_explicit(&st->dropped, 1, memory_order_relaxed);
            conn_close(c, true);
            return;
        case SMTPD_EV_CLOSE:
            c->close_after_flush = true;
            break;
        case SMTPD_EV_STARTTLS:
            start_tls(c); /* the rest of this buffer the session discards */
            break;
        }
    }
}

/* Ciphertext: through the handshake, then record by record into the session.
 * Every call into OpenSSL drains what it wrote onto tls_out. */
static void tls_input(struct conn *c, const char *p, size_t n)
{
    struct tls_conn *t = c->tls;
    if (tls_conn_feed(t, p, n) < 0) {
        conn_close(c, true);
        return;
    }
    if (!t->done) {
        int rc = tls_pump_handshake(t, &c->tls_out);
        if (rc == -EAGAIN) return;
        if (rc < 0) {
            tls_fail(c, "handshake");
            return;
        }
        atomic_fetch_add_explicit(&c->w->sink->stats.tls_connections, 1, memory_order_relaxed);
        smtpd_session_tls_ready(&c->sess);
    }
    while (!c->closing && !c->close_after_flush) {
        int k = tls_pump_read(t, c->w->plain, sizeof c->w->plain, &c->tls_out);
        if (k > 0) {
            feed_session(c, c->w->plain, (size_t)k);
            continue;
        }
        if (k == -HERR_CLOSED)
            c->close_after_flush = true; /* close_notify */
        else if (k < 0)
            tls_fail(c, "read");
        break;
    }
}

static void on_data(struct conn *c, const char *p, size_t n)
{
    if (!c->tls) {
        feed_session(c, p, n);
        output_produced(c);
        return;
    }
    if (!c->closing && !c->close_after_flush) tls_input(c, p, n);
    output_produced(c);
    try_send(c); /* handshake records wait for no timer */
}

/* "::ffff:127.0.0.1" → "127.0.0.1": tests bind IPv4 egress addresses and
 * expect to see them as such whichever family the listener has. */
static void peer_ip(int fd, char *out, size_t outlen)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    snprintf(out, outlen, "unknown");
    if (getpeername(fd, (struct sockaddr *)&ss, &len) < 0) return;
    if (ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, out, (socklen_t)outlen);
    } else if (ss.ss_family == AF_INET6) {
        struct in6_addr *a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a))
            inet_ntop(AF_INET, &a->s6_addr[12], out, (socklen_t)outlen);
        else
            inet_ntop(AF_INET6, a, out, (socklen_t)outlen);
    }
}

static void conn_open(struct worker *w, int fd)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    char ip[INET6_ADDRSTRLEN];
    peer_ip(fd, ip, sizeof ip);
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->w = w;
    c->fd = fd;
    c->ip = sink_stats_open(&w->sink->stats, ip);
    hbuf_init(&c->wire);
    hbuf_init(&c->tls_out);
    uint64_t conn_id = ((uint64_t)w->index << 40) | ++w->n_accepted;
    smtpd_session_init(&c->sess, &w->sink->policy, w->sink->seed, conn_id);
    c->next = w->conns;
    if (w->conns) w->conns->prev = c;
    w->conns = c;
    arm_recv(c);
    output_produced(c); /* the banner */
}

static void on_accept(struct listener *l, struct io_uring_cqe *cqe)
{
    if (cqe->res >= 0)
        conn_open(l->w, cqe->res);
    else if (cqe->res != -ECANCELED)
        log_event(LOG_WARN, "event=accept_failed err=\"%s\"", herald_strerror(cqe->res));
    if (!(cqe->flags & IORING_CQE_F_MORE) && !atomic_load(&l->w->sink->stop)) arm_accept(l);
}

static void buf_return(struct worker *w, unsigned bid)
{
    io_uring_buf_ring_add(w->br, w->bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(BUF_COUNT), 0);
    io_uring_buf_ring_advance(w->br, 1);
}

static void on_recv(struct conn *c, struct io_uring_cqe *cqe)
{
    struct worker *w = c->w;
    bool more = cqe->flags & IORING_CQE_F_MORE;
    if (!more) {
        c->recv_armed = false;
        c->n_inflight--;
    }
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        unsigned bid = cqe->flags >> IORING_CQE_BUFFER_SHIFT;
        if (cqe->res > 0 && !c->closing)
            on_data(c, w->bufs + (size_t)bid * BUF_SIZE, (size_t)cqe->res);
        buf_return(w, bid);
    }
    if (c->closing) return;
    if (cqe->res == 0) {
        conn_close(c, false);
    } else if (cqe->res < 0 && cqe->res != -ENOBUFS) {
        conn_close(c, true);
    } else if (!more && !c->closing) {
        arm_recv(c); /* ran out of provided buffers, or the kernel ended the multishot */
    }
}

static void on_send(struct conn *c, struct io_uring_cqe *cqe)
{
    c->send_armed = false;
    c->n_inflight--;
    if (c->closing) return;
    if (cqe->res < 0) {
        conn_close(c, true);
        return;
    }
    c->wire_off += (size_t)cqe->res;
    if (c->wire_off < c->wire.len) {
        struct io_uring_sqe *sqe = sqe_get(c->w);
        io_uring_prep_send(sqe, c->fd, c->wire.data + c->wire_off, c->wire.len - c->wire_off,
                           MSG_NOSIGNAL);
        io_uring_sqe_set_data64(sqe, ud(c, OP_SEND));
        c->send_armed = true;
        c->n_inflight++;
        return;
    }
    try_send(c);
}

static void dispatch(struct worker *w, struct io_uring_cqe *cqe)
{
    uint64_t data = io_uring_cqe_get_data64(cqe);
    void *obj = (void *)(uintptr_t)(data & ~(uint64_t)OP_MASK);
    switch ((enum op)(data & OP_MASK)) {
    case OP_ACCEPT:
        on_accept(obj, cqe);
        break;
    case OP_RECV:
        on_recv(obj, cqe);
        break;
    case OP_SEND:
        on_send(obj, cqe);
        break;
    case OP_TIMER: {
        struct conn *c = obj;
        c->timer_armed = false;
        c->n_inflight--;
        on_timer(c);
        break;
    }
    default:
        break;
    }
    (void)w;
}

static void reap(struct worker *w)
{
    struct conn **pp = &w->reap;
    while (*pp) {
        struct conn *c = *pp;
        if (c->n_inflight == 0) {
            *pp = c->next;
            conn_free(c);
        } else {
            pp = &c->next;
        }
    }
}

/* Prefer the cheapest task-work mode the kernel offers; fall back for older ones. */
static int ring_init(struct worker *w)
{
    static const unsigned flag_sets[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int rc = -EINVAL;
    for (size_t i = 0; i < HERALD_ARRAY_LEN(flag_sets); i++) {
        struct io_uring_params p = {.flags = flag_sets[i] | IORING_SETUP_CQSIZE,
                                    .cq_entries = RING_ENTRIES * 8};
        rc = io_uring_queue_init_params(RING_ENTRIES, &w->ring, &p);
        if (rc == 0) break;
    }
    if (rc < 0) return rc;

    w->br_len = BUF_COUNT * sizeof(struct io_uring_buf);
    void *mem = mmap(NULL, w->br_len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (mem == MAP_FAILED) return -errno;
    w->br = mem;
    struct io_uring_buf_reg reg = {
        .ring_addr = (uintptr_t)mem, .ring_entries = BUF_COUNT, .bgid = BUF_GROUP};
    rc = io_uring_register_buf_ring(&w->ring, &reg, 0);
    if (rc < 0) return rc;
    w->bufs = malloc((size_t)BUF_COUNT * BUF_SIZE);
    if (!w->bufs) return -ENOMEM;
    io_uring_buf_ring_init(w->br);
    for (unsigned i = 0; i < BUF_COUNT; i++)
        io_uring_buf_ring_add(w->br, w->bufs + (size_t)i * BUF_SIZE, BUF_SIZE, (unsigned short)i,
                              io_uring_buf_ring_mask(BUF_COUNT), (int)i);
    io_uring_buf_ring_advance(w->br, BUF_COUNT);
    return 0;
}

static void report_ready(struct sink *sk, int rc)
{
    pthread_mutex_lock(&sk->ready_lock);
    sk->n_ready++;
    if (rc < 0 && sk->ready_err == 0) sk->ready_err = rc;
    pthread_cond_signal(&sk->ready_cond);
    pthread_mutex_unlock(&sk->ready_lock);
}

static void loop(struct worker *w)
{
    struct sink *sk = w->sink;
    struct __kernel_timespec tick = {.tv_sec = 0, .tv_nsec = TICK_MS * 1000000L};
    while (!atomic_load_explicit(&sk->stop, memory_order_relaxed)) {
        struct io_uring_cqe *cqe;
        int rc = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &tick, NULL);
        if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY) {
            log_event(LOG_ERROR, "event=ring_wait_failed err=\"%s\"", herald_strerror(rc));
            break;
        }
        unsigned head, n = 0;
        io_uring_for_each_cqe(&w->ring, head, cqe)
        {
            dispatch(w, cqe);
            n++;
        }
        io_uring_cq_advance(&w->ring, n);
        reap(w);
        if (w->record.len && clock_mono_ms() - w->record_flushed_ms >= RECORD_FLUSH_MS)
            record_flush(w);
    }
}

void *sink_worker_main(void *arg)
{
    struct sink_worker_arg *a = arg;
    struct worker *w = calloc(1, sizeof *w);
    if (!w) {
        report_ready(a->sink, -ENOMEM);
        return NULL;
    }
    w->sink = a->sink;
    w->index = a->index;
    hbuf_init(&w->record);
    w->record_flushed_ms = clock_mono_ms();
    int rc = ring_init(w);
    if (rc == 0) {
        for (unsigned l = 0; l < w->sink->n_listen; l++) {
            w->listeners[l].w = w;
            w->listeners[l].fd = w->sink->listen_fds[w->index][l];
            arm_accept(&w->listeners[l]);
        }
        rc = io_uring_submit(&w->ring);
        rc = rc < 0 ? rc : 0;
    }
    if (rc < 0)
        log_event(LOG_ERROR, "event=ring_setup_failed thread=%u err=\"%s\"", w->index,
                  herald_strerror(rc));
    report_ready(w->sink, rc);
    if (rc == 0) loop(w);

    if (w->sink->record_fd >= 0 && w->record.len) record_flush(w);
    /* Tearing the ring down cancels every request, so nothing points at a
     * connection any more and all of them can go. */
    if (w->ring.ring_fd > 0) io_uring_queue_exit(&w->ring);
    while (w->conns) {
        struct conn *c = w->conns;
        w->conns = c->next;
        conn_free(c);
    }
    while (w->reap) {
        struct conn *c = w->reap;
        w->reap = c->next;
        conn_free(c);
    }
    if (w->br) munmap(w->br, w->br_len);
    free(w->bufs);
    hbuf_free(&w->record);
    free(w);
    return NULL;
}
