/* smtpd: the server side of one SMTP connection as a pure byte machine,
 * for herald-sink (bench/sink) and the inbound listener of `herald run`
 * (src/inbound).
 *
 * The owner feeds whatever bytes arrived (any split, any amount of pipelining)
 * and sends whatever the session appended to `out`. The session does no I/O,
 * reads no clock and draws its randomness from its own seeded generator, so a
 * unit test can script a client byte for byte and get the same replies every
 * time. Memory is bounded: one command line (SMTPD_LINE_MAX), the recipient
 * list kept for the record line, and the body only when keep_body is set (and
 * then at most max_size bytes).
 *
 * STARTTLS (RFC 3207) is the owner's half and the session's half: the session
 * answers 220, returns SMTPD_EV_STARTTLS and from then on swallows every byte
 * fed to it (a client that pipelines commands after STARTTLS must not get
 * them run inside the TLS session it has not negotiated yet, CVE-2011-0411);
 * the owner runs the handshake on the bytes that arrive next and calls
 * smtpd_session_tls_ready, after which the client starts again with EHLO. */
#ifndef HERALD_SMTPD_H
#define HERALD_SMTPD_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald/core.h"

#define SMTPD_LINE_MAX  4096 /* longest command line, CRLF included */
#define SMTPD_ADDR_MAX  512  /* longest path kept for MAIL FROM / RCPT TO */
#define SMTPD_RCPTS_MAX 1000 /* recipients per transaction */

enum smtpd_fail_at { SMTPD_FAIL_AT_DATA, SMTPD_FAIL_AT_RCPT };

/* A receiver's own hidden rate limit (--limit-rate): beyond `per_sec`
 * messages in one wall-clock second, MAIL gets a 421 and the connection is
 * closed, until `until_ms` (monotonic; 0 = for ever). Shared by the sink's
 * threads: the current second and its count are packed in one atomic. */
struct smtpd_limiter {
    uint32_t per_sec;
    int64_t until_ms;
    _Atomic uint64_t slot; /* second << 32 | count */
    _Atomic uint64_t refused;
};
bool smtpd_limiter_over(struct smtpd_limiter *l, int64_t now_ms);

/* What the whole sink was told on its command line; shared read-only. */
struct smtpd_policy {
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
    enum smtpd_fail_at fail_at;
    struct smtpd_limiter *limiter; /* NULL: no limit */
    const char *limit_text;       /* the 421 reply line, without CRLF */
    /* The owner's recipient check (NULL: every recipient): false answers
     * 550 5.1.1, so the listener is never an open relay. */
    bool (*accept_rcpt)(void *arg, const char *addr, size_t len);
    void *rcpt_arg;
};

enum smtpd_state {
    SMTPD_COMMAND,
    SMTPD_BODY,
    SMTPD_STARTTLS, /* 220 sent; input is discarded until smtpd_session_tls_ready */
    SMTPD_DONE,
    SMTPD_STATE_COUNT
};

/* Where the body scanner stands relative to the CRLF "." CRLF terminator. */
enum smtpd_body_at { BODY_BOL, BODY_MID, BODY_CR, BODY_DOT, BODY_DOT_CR };

/* Returned by smtpd_session_feed: why it stopped consuming. */
enum smtpd_event {
    SMTPD_EV_NEED_MORE, /* every byte consumed; feed more */
    SMTPD_EV_MESSAGE,   /* a message was accepted (250 appended) */
    SMTPD_EV_TEMPFAIL,  /* a transaction was refused with 451 */
    SMTPD_EV_PERMFAIL,  /* a transaction was refused with 550 */
    SMTPD_EV_DROP,      /* close the connection now, abruptly, without sending */
    SMTPD_EV_CLOSE,     /* flush `out`, then close (QUIT, or a fatal protocol error) */
    SMTPD_EV_STARTTLS,  /* send `out` in clear, then what arrives next is a TLS handshake */
};

struct smtpd_session {
    const struct smtpd_policy *policy;
    enum smtpd_state state;
    uint64_t rng;      /* xorshift64* state */
    uint64_t conn_id;  /* for the "queued as" id */
    uint32_t n_queued; /* messages accepted on this connection */
    bool have_helo;
    bool have_mail;
    bool tls_active;      /* the owner completed a handshake: no second STARTTLS */
    uint64_t n_discarded; /* bytes pipelined after STARTTLS, dropped unread */
    /* Fate of the current transaction, drawn at MAIL so runs are reproducible. */
    enum smtpd_event fate; /* SMTPD_EV_MESSAGE, _TEMPFAIL, _PERMFAIL */
    bool fate_drop;
    bool fate_counted; /* a rcpt-time failure was already reported */
    uint32_t n_rcpts;  /* accepted recipients */
    enum smtpd_body_at body_at;
    uint64_t body_len; /* un-stuffed body bytes of the current message */

    struct hbuf out;   /* replies owed to the client, in order */
    struct hbuf line;  /* a command line split across feeds */
    struct hbuf from;  /* reverse-path of the current transaction */
    struct hbuf rcpts; /* accepted forward-paths, comma separated (bounded) */
    struct hbuf body;  /* un-stuffed body, only when policy->keep_body */
};

/* Prepare a session and append the 220 banner to s->out. seed picks the
 * failure/drop draws; the same seed and input give the same replies. */
void smtpd_session_init(struct smtpd_session *s, const struct smtpd_policy *policy, uint64_t seed,
                       uint64_t conn_id);
void smtpd_session_free(struct smtpd_session *s);

/* Consume bytes from data[0..len) until something the owner must act on.
 * *used is set to the bytes consumed (all of them for SMTPD_EV_NEED_MORE). After
 * SMTPD_EV_MESSAGE the accepted message is in from/rcpts/body_len (and body),
 * valid until the next feed. After SMTPD_EV_DROP or SMTPD_EV_CLOSE further input
 * is swallowed unread. Never fails: protocol faults become replies. */
enum smtpd_event smtpd_session_feed(struct smtpd_session *s, const char *data, size_t len,
                                  size_t *used);

/* The owner finished the TLS handshake that SMTPD_EV_STARTTLS asked for: the
 * session starts over as after the banner (no HELO, no transaction, and
 * STARTTLS no longer offered). Ignored in any other state. */
void smtpd_session_tls_ready(struct smtpd_session *s);

/* The owner could not take the message SMTPD_EV_MESSAGE just reported
 * (the listener could not record it): its 250, the last reply in out and
 * not yet sent (at or past out[sent]), becomes 451 4.3.0 so the client
 * tries again. False when there is no such reply. */
bool smtpd_session_retract(struct smtpd_session *s, size_t sent);

/* Text for an event or state, for logs and tests. */
const char *smtpd_event_name(enum smtpd_event ev);
const char *smtpd_state_name(enum smtpd_state st);

#endif
