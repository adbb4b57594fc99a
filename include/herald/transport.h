/* transport: one stream connection on the ring — connect (optionally from a
 * source address), RECV/SEND, optional client TLS over memory BIOs — for
 * every protocol client of the engine (SMTP pool, Redis). The owner sees
 * plaintext both ways whether TLS is on or not: it queues bytes with
 * xport_send and gets them back through on_data.
 *
 * Lifetime: the kernel owns the receive buffer, the send buffer and the
 * embedded ring ops while an operation is in flight, so a transport that
 * is closing waits until none is; then it closes the fd and calls
 * on_quiet from a deferred ring callback. That is the only point where the
 * owner may free the object that embeds the transport (or connect again).
 *
 * Callbacks run from ring completions, timers and deferred work, never
 * from inside an xport_* call the owner made. They may call any xport_*
 * function on this transport except xport_free. */
#ifndef HERALD_TRANSPORT_H
#define HERALD_TRANSPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "herald/core.h"
#include "herald/ring.h"
#include "herald/tls.h"

enum xport_state {
    XPORT_IDLE = 0,   /* no socket */
    XPORT_CONNECTING, /* CONNECT in flight */
    XPORT_UP,         /* connected; TLS may still be in its handshake */
    XPORT_CLOSING,    /* stopped; waiting for the kernel to give back what it holds */
};

/* Which part of the transport found the failure reported by on_closed, so
 * the owner can word it (a refused connect, a reset during RECV, a
 * certificate the handshake refused, a close_notify). */
enum xport_op {
    XPORT_OP_CONNECT = 0, /* connect failed or timed out (-HERR_TIMEOUT) */
    XPORT_OP_RECV,        /* RECV failed; -HERR_CLOSED: the peer closed */
    XPORT_OP_SEND,        /* SEND failed */
    XPORT_OP_HANDSHAKE,   /* TLS handshake refused: reason in tls_conn_error(&x->tls) */
    XPORT_OP_TLS,         /* TLS record layer: -HERR_CLOSED on close_notify, -HERR_TLS, -ENOMEM */
    XPORT_OP_COUNT
};

struct xport_ops {
    /* The TCP connection is up. RECV is armed and queued bytes go out after
     * this returns, so starting TLS here still encrypts them. */
    void (*on_connected)(void *owner);
    /* The TLS handshake finished; queued plaintext has been encrypted and
     * handed on. */
    void (*on_tls_ready)(void *owner);
    /* Optional (NULL: not wanted): a SEND completed and nothing else is
     * queued, for an owner that closes once its last bytes have left. */
    void (*on_sent)(void *owner);
    /* Plaintext from the peer (decrypted when TLS is on). p is valid only
     * during the call. */
    void (*on_data)(void *owner, const char *p, size_t n);
    /* The transport stopped by itself: peer closed, an I/O or TLS error, a
     * connect that failed or timed out. Called once, at once (state is
     * already CLOSING, pending output dropped); on_quiet follows later.
     * Not called for the owner's own xport_close. */
    void (*on_closed)(void *owner, int err, enum xport_op op);
    /* Closed and quiet: no operation in flight, fd closed, state IDLE. */
    void (*on_quiet)(void *owner);
};

struct xport_tls_opts {
    SSL_CTX *ctx;
    const char *host; /* SNI, and the name checked under TLS_VERIFY_PEER */
    enum tls_verify verify;
    SSL_SESSION *resume; /* offered for resumption (still the caller's), or NULL */
    /* Where to keep the first resumable session this connection sees (a
     * TLS 1.3 ticket arrives after the handshake), under save_key; NULL:
     * not kept. Both must outlive the transport. */
    struct tls_session_cache *save_to;
    const char *save_key;
};

struct xport {
    struct ring *ring;
    const struct xport_ops *ops;
    void *owner;
    enum xport_state state;
    int fd;
    bool bind_failed; /* the last xport_connect failed binding the source address */
    bool reading;     /* the owner still wants on_data */
    bool keepalive;   /* TCP keepalive probes on the next connect (a peer that vanished) */
    struct ring_op op_connect, op_send, op_recv;
    bool connect_inflight, send_inflight, recv_inflight;
    struct ring_timer connect_timer;
    struct ring_deferred finish;
    char *rbuf; /* the RECV's buffer; the kernel's while recv_inflight */
    size_t rbuf_cap;
    struct hbuf out;     /* plaintext queued by the owner, not yet on the wire */
    struct hbuf wire;    /* TLS records waiting for the SEND in flight */
    struct hbuf sending; /* the kernel's while send_inflight */
    size_t sent;
    int64_t send_progress_ms; /* ring time a SEND last started or moved bytes */
    struct tls_conn tls; /* valid while tls_on, kept after close for the owner's notes */
    bool tls_on, tls_ready, tls_saved;
    struct tls_session_cache *tls_save_to;
    const char *tls_save_key;
};

/* A SEND is in flight: bytes wait for the peer to take them (its window
 * may be shut: delivery.timeouts.data_block bounds how long without progress). */
static inline bool xport_send_pending(const struct xport *x)
{
    return x->send_inflight;
}

/* Set up an idle transport with a receive buffer of rbuf_cap bytes.
 * Returns 0 or -ENOMEM. */
int xport_init(struct xport *x, struct ring *r, const struct xport_ops *ops, void *owner,
               size_t rbuf_cap);
/* Free buffers and TLS; only while IDLE (never connected, or after
 * on_quiet). */
void xport_free(struct xport *x);

/* Connect to peer, from source when given (the egress IP: the port is
 * left to connect() so many connections can share one address), with a
 * deadline of timeout_ms (0: none). Returns 0 (on_connected or on_closed
 * follows) or -errno when no socket could be set up: the transport stays
 * IDLE and bind_failed says whether binding source was the step that
 * failed. Only from IDLE (-EALREADY otherwise). Any earlier TLS state is
 * dropped. */
int xport_connect(struct xport *x, const struct sockaddr *peer, socklen_t peer_len,
                  const struct sockaddr *source, socklen_t source_len, int64_t timeout_ms);

/* Start a client TLS session on the connection (right after connect for
 * implicit TLS, after the peer agreed for STARTTLS). From now on queued
 * plaintext waits for the handshake and then goes encrypted — including
 * bytes queued earlier that had not yet been handed to the kernel. The
 * ClientHello is sent at once; on_tls_ready or on_closed(XPORT_OP_HANDSHAKE)
 * follows. Returns 0, -EALREADY, -ENOTCONN, or -ENOMEM / -HERR_TLS when TLS
 * could not be set up (reason in tls_conn_error(&x->tls)): the owner then
 * closes the transport; no plaintext leaves it any more. */
int xport_start_tls(struct xport *x, const struct xport_tls_opts *o);

/* Queue plaintext for the peer (copied). Accepted while CONNECTING or UP;
 * it leaves when the connection (and TLS, if started) is ready, in order,
 * with one SEND in flight at a time: what is queued meanwhile goes in the
 * next SEND. Returns 0; -ENOTCONN when IDLE or CLOSING; -ENOMEM when it
 * could not be queued (nothing changed); or, when handing it on failed
 * (-HERR_TLS, -ENOMEM), the error after the transport closed itself
 * (xport_is_closing then tells the two -ENOMEM apart; no on_closed). */
int xport_send(struct xport *x, const void *p, size_t n);
/* The same for a whole buffer, which is left empty: its memory may be
 * swapped in instead of copied, so it must be an hbuf the owner keeps
 * using only through hbuf_* calls. */
int xport_send_buf(struct xport *x, struct hbuf *b);

/* No more on_data and no further RECV: the owner's protocol has ended and
 * it only waits for its last bytes to leave. */
void xport_read_stop(struct xport *x);

/* Stop: cancel what is in flight, drop unsent output; on_quiet follows
 * once nothing is in flight (also when nothing was open). No-op while
 * already CLOSING. */
void xport_close(struct xport *x);

static inline bool xport_is_quiet(const struct xport *x)
{
    return !x->connect_inflight && !x->send_inflight && !x->recv_inflight;
}
static inline bool xport_is_closing(const struct xport *x)
{
    return x->state == XPORT_CLOSING;
}
/* Everything queued has been handed to the kernel and acknowledged sent. */
static inline bool xport_is_drained(const struct xport *x)
{
    return x->out.len == 0 && x->wire.len == 0 && !x->send_inflight;
}
static inline bool xport_tls_started(const struct xport *x)
{
    return x->tls_on;
}
/* TLS is on and its handshake finished. */
static inline bool xport_tls_ready(const struct xport *x)
{
    return x->tls_on && x->tls_ready;
}

#endif
