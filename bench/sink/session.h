/* sink session: the server side of one SMTP connection as a pure byte machine.
 *
 * The owner feeds whatever bytes arrived (any split, any amount of pipelining)
 * and sends whatever the session appended to `out`. The session does no I/O,
 * reads no clock and draws its randomness from its own seeded generator, so a
 * unit test can script a client byte for byte and get the same replies every
 * time. Memory is bounded: one command line (SINK_LINE_MAX), the recipient
 * list kept for the record line, and the body only when keep_body is set (and
 * then at most max_size bytes).
 *
 * STARTTLS (RFC 3207) is the owner's half and the session's half: the session
 * answers 220, returns SINK_EV_STARTTLS and from then on swallows every byte
 * fed to it (a client that pipelines commands after STARTTLS must not get
 * them run inside the TLS session it has not negotiated yet, CVE-2011-0411);
 * the owner runs the handshake on the bytes that arrive next and calls
 * sink_session_tls_ready, after which the client starts again with EHLO. */
#ifndef HERALD_SINK_SESSION_H
#define HERALD_SINK_SESSION_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald/core.h"

#define SINK_LINE_MAX  4096 /* longest command line, CRLF included */
#define SINK_ADDR_MAX  512  /* longest path kept for MAIL FROM / RCPT TO */
#define SINK_RCPTS_MAX 1000 /* recipients per transaction */

enum sink_fail_at { SINK_FAIL_AT_DATA, SINK_FAIL_AT_RCPT };

/* A receiver's own hidden rate limit (--limit-rate): beyond `per_sec`
 * messages in one wall-clock second, MAIL gets a 421 and the connection is
 * closed, until `until_ms` (monotonic; 0 = for ever). Shared by the sink's
 * threads: the current second and its count are packed in one atomic. */
struct sink_limiter {
    uint32_t per_sec;
    int64_t until_ms;
    _Atomic uint64_t slot; /* second << 32 | count */
    _Atomic uint64_t refused;
};
bool sink_limiter_over(struct sink_limiter *l, int64_t now_ms);

/* What the whole sink was told on its command line; shared read-only. */
struct sink_policy {
    const char *banner;   /* text after "220 " */
    const char *hostname; /* first word of the EHLO reply */
    bool pipelining;      /* advertise PIPELINING (pipelined input is always accepted) */
    bool keep_body;       /* collect the un-stuffed body (for --save-dir) */
    bool starttls;        /* advertise and accept STARTTLS (the owner has a TLS context) */
    bool tls_required;    /* MAIL before STARTTLS gets 530 5.7.0 */
    uint64_t max_size;    /* bytes; larger messages get 552 */
    double tempfail_ratio;
    double permfail_ratio;
    double drop_ratio;
    enum sink_fail_at fail_at;
    struct sink_limiter *limiter; /* NULL: no limit */
    const char *limit_text;       /* the 421 reply line, without CRLF */
};

enum sink_state {
    SINK_COMMAND,
    SINK_BODY,
    SINK_STARTTLS, /* 220 sent; input is discarded until sink_session_tls_ready */
    SINK_DONE,
    SINK_STATE_COUNT
};

/* Where the body scanner stands relative to the CRLF "." CRLF terminator. */
enum sink_body_at { BODY_BOL, BODY_MID, BODY_CR, BODY_DOT, BODY_DOT_CR };

/* Returned by sink_session_feed: why it stopped consuming. */
enum sink_event {
    SINK_EV_NEED_MORE, /* every byte consumed; feed more */
    SINK_EV_MESSAGE,   /* a message was accepted (250 appended) */
    SINK_EV_TEMPFAIL,  /* a transaction was refused with 451 */
    SINK_EV_PERMFAIL,  /* a transaction was refused with 550 */
    SINK_EV_DROP,      /* close the connection now, abruptly, without sending */
    SINK_EV_CLOSE,     /* flush `out`, then close (QUIT, or a fatal protocol error) */
    SINK_EV_STARTTLS,  /* send `out` in clear, then what arrives next is a TLS handshake */
};

struct sink_session {
    const struct sink_policy *policy;
    enum sink_state state;
    uint64_t rng;      /* xorshift64* state */
    uint64_t conn_id;  /* for the "queued as" id */
    uint32_t n_queued; /* messages accepted on this connection */
    bool have_helo;
    bool have_mail;
    bool tls_active;      /* the owner completed a handshake: no second STARTTLS */
    uint64_t n_discarded; /* bytes pipelined after STARTTLS, dropped unread */
    /* Fate of the current transaction, drawn at MAIL so runs are reproducible. */
    enum sink_event fate; /* SINK_EV_MESSAGE, _TEMPFAIL, _PERMFAIL */
    bool fate_drop;
    bool fate_counted; /* a rcpt-time failure was already reported */
    uint32_t n_rcpts;  /* accepted recipients */
    enum sink_body_at body_at;
    uint64_t body_len; /* un-stuffed body bytes of the current message */

    struct hbuf out;   /* replies owed to the client, in order */
    struct hbuf line;  /* a command line split across feeds */
    struct hbuf from;  /* reverse-path of the current transaction */
    struct hbuf rcpts; /* accepted forward-paths, comma separated (bounded) */
    struct hbuf body;  /* un-stuffed body, only when policy->keep_body */
};

/* Prepare a session and append the 220 banner to s->out. seed picks the
 * failure/drop draws; the same seed and input give the same replies. */
void sink_session_init(struct sink_session *s, const struct sink_policy *policy, uint64_t seed,
                       uint64_t conn_id);
void sink_session_free(struct sink_session *s);

/* Consume bytes from data[0..len) until something the owner must act on.
 * *used is set to the bytes consumed (all of them for SINK_EV_NEED_MORE). After
 * SINK_EV_MESSAGE the accepted message is in from/rcpts/body_len (and body),
 * valid until the next feed. After SINK_EV_DROP or SINK_EV_CLOSE further input
 * is swallowed unread. Never fails: protocol faults become replies. */
enum sink_event sink_session_feed(struct sink_session *s, const char *data, size_t len,
                                  size_t *used);

/* The owner finished the TLS handshake that SINK_EV_STARTTLS asked for: the
 * session starts over as after the banner (no HELO, no transaction, and
 * STARTTLS no longer offered). Ignored in any other state. */
void sink_session_tls_ready(struct sink_session *s);

/* Text for an event or state, for logs and tests. */
const char *sink_event_name(enum sink_event ev);
const char *sink_state_name(enum sink_state st);

#endif
