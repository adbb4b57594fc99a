/* smtp: reply parser, EHLO capabilities and the client session state machine.
 * Nothing here does I/O: the session consumes received bytes, produces bytes
 * to send in `out`, and reports each message's result through callbacks, so
 * it can be driven by the ring in production and by a script in tests. */
#ifndef HERALD_SMTP_H
#define HERALD_SMTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald/core.h"

#define SMTP_LINE_MAX        1024 /* longest reply line kept; longer is truncated, not buffered */
/* RFC 5321 allows 512 octets; real servers send longer lines, but a line past
 * this is not a reply and waiting for its end only feeds a hostile peer. */
#define SMTP_LINE_GIVE_UP    (64 * 1024)
#define SMTP_REPLY_TEXT_MAX  2048 /* all lines of one reply, '\n'-joined, truncated beyond */
#define SMTP_REPLY_LINES_MAX 128  /* more lines than this is a hostile peer: malformed */

/* One complete (possibly multiline) reply. */
struct smtp_reply {
    int code;                       /* 200..599: the parser refuses anything else */
    char enhanced[16];              /* "2.0.0" when present on the first line, else "" */
    char text[SMTP_REPLY_TEXT_MAX]; /* line texts after "NNN-"/"NNN ", joined by '\n' */
    size_t text_len;
    unsigned n_lines;
    bool truncated;
};

/* Incremental reply parser: feed any byte split; no allocation. A line
 * longer than SMTP_LINE_MAX keeps its first SMTP_LINE_MAX bytes and the rest
 * is counted and skipped, so a peer that never sends LF costs no memory; past
 * SMTP_LINE_GIVE_UP bytes the line is a protocol error. */
struct smtp_reply_parser {
    char line[SMTP_LINE_MAX];
    size_t line_len;
    bool line_overflow;
    size_t line_dropped; /* bytes of this line past SMTP_LINE_MAX (saturating) */
    bool cr_last;        /* the last byte of this line so far was CR */
    bool in_reply;       /* seen a "NNN-" continuation line */
    int code;
    struct smtp_reply cur;
};

void smtp_reply_parser_init(struct smtp_reply_parser *p);
/* Consume bytes from buf until one reply completes or input ends.
 * Returns 1 with *out filled when a reply completed (*consumed says how far),
 * 0 when all input was consumed without completing a reply,
 * -HERR_PROTOCOL when the input is not SMTP (code outside 200..599, mixed
 * codes in a multiline reply, too many lines, empty line); the parser is then
 * reset. Lines end in CRLF or bare LF. `enhanced` is set only when the first
 * line's text starts with class.subject.detail whose class matches the code;
 * `text` keeps it. Control bytes in text become '?', so text is a C string. */
int smtp_reply_parse(struct smtp_reply_parser *p, const char *buf, size_t len, size_t *consumed,
                     struct smtp_reply *out);

/* EHLO capabilities. */
struct smtp_caps {
    bool pipelining, starttls, eightbitmime, smtputf8, chunking, enhancedstatuscodes;
    bool size;
    uint64_t size_max; /* 0 = no limit announced */
    bool auth_plain, auth_login;
};
/* Fill caps (reset first) from a 2xx EHLO reply: every line after the first
 * (the greeting) is one keyword, matched case-insensitively. */
void smtp_caps_parse(struct smtp_caps *caps, const struct smtp_reply *ehlo_reply);

enum smtp_state {
    SMTP_S_INIT = 0, /* not started */
    SMTP_S_BANNER,   /* waiting for 220 */
    SMTP_S_EHLO,
    SMTP_S_HELO,
    SMTP_S_STARTTLS, /* STARTTLS sent, waiting for 220 */
    SMTP_S_TLS,      /* the owner runs the TLS handshake, then smtp_session_tls_done */
    SMTP_S_AUTH,     /* AUTH PLAIN/LOGIN exchange */
    SMTP_S_READY, /* idle, may take a message */
    SMTP_S_MAIL,  /* MAIL FROM sent (with PIPELINING: MAIL+RCPT+DATA sent) */
    SMTP_S_RCPT,
    SMTP_S_DATA, /* waiting for 354 */
    SMTP_S_BODY, /* body sent, waiting for final reply */
    SMTP_S_RSET,
    SMTP_S_QUIT,
    SMTP_S_CLOSED, /* finished; the owner closes the socket */
    SMTP_STATE_COUNT
};
const char *smtp_state_name(enum smtp_state s);

/* Which command a result answers: the note reports it. */
enum smtp_stage {
    SMTP_STAGE_CONNECT = 0,
    SMTP_STAGE_BANNER,
    SMTP_STAGE_EHLO,
    SMTP_STAGE_TLS,  /* STARTTLS refused or missing under a policy, handshake failed */
    SMTP_STAGE_AUTH, /* credentials refused, or not sent (no TLS, no mechanism) */
    SMTP_STAGE_MAIL,
    SMTP_STAGE_RCPT,
    SMTP_STAGE_DATA,
    SMTP_STAGE_BODY,
    SMTP_STAGE_RSET, /* session errors only: RSET refused */
    SMTP_STAGE_IDLE, /* session errors only: dropped while READY */
    SMTP_STAGE_QUIT,
    SMTP_STAGE_COUNT
};
const char *smtp_stage_name(enum smtp_stage s);

enum smtp_outcome {
    SMTP_OUT_OK = 0,   /* 2xx after the body */
    SMTP_OUT_TEMPFAIL, /* 4xx */
    SMTP_OUT_PERMFAIL, /* 5xx */
    SMTP_OUT_NETFAIL,  /* connection error, timeout, protocol violation */
};

struct smtp_result {
    enum smtp_outcome outcome;
    enum smtp_stage stage;
    int code; /* 0 for NETFAIL */
    char enhanced[16];
    char reply[512]; /* remote text (first lines), or local reason for NETFAIL */
    /* NETFAIL: the fault behind it as a negative errno or -HERR_* (e.g.
     * -ECONNREFUSED, -HERR_TIMEOUT, -HERR_TLS, -HERR_PROTOCOL), so the
     * category comes from what failed, never from the reply text; 0 when
     * unknown. */
    int err;
};

/* A message handed to the session. Owned by the caller until msg_done. */
struct smtp_msg {
    const char *mail_from; /* envelope sender, no brackets ("" for null sender) */
    const char *rcpt;      /* one recipient */
    const char *data;      /* dot-stuffed payload ending "\r\n.\r\n" */
    size_t data_len;
    bool needs_smtputf8;
    void *owner_data;
    int64_t queued_ms; /* the pool's: when it began waiting for a connection */
};

/* Callbacks run synchronously inside session functions and must not call
 * back into the session (recv/kick/quit/fail/free): the session pulls the
 * next message itself after each result. */
struct smtp_session_ops {
    /* The session is READY: return the next message to send on this
     * connection, or NULL to stay idle. Called synchronously from session
     * functions. A message the session refuses locally (SIZE over the
     * server's limit, SMTPUTF8 not offered, unsafe address or payload) gets
     * its msg_done at once and next_msg is asked again. */
    struct smtp_msg *(*next_msg)(void *owner);
    /* Final result for a message. Called exactly once per message handed out
     * (also when the connection fails). */
    void (*msg_done)(void *owner, struct smtp_msg *msg, const struct smtp_result *res);
};

/* Per-state reply deadlines; <= 0 means none. BANNER: banner_ms; EHLO, HELO,
 * MAIL, RCPT, DATA (waiting for 354), RSET, QUIT: command_ms; BODY (waiting
 * for the final reply, counted from the 354): data_end_ms. READY has no
 * deadline: the owner runs the idle timer. data_block_ms is for the owner's
 * sends of the body. */
struct smtp_timeouts {
    int64_t banner_ms, command_ms, data_block_ms, data_end_ms;
};

/* What the session does about TLS once the server has said EHLO. */
enum smtp_tls_mode {
    SMTP_TLS_OFF = 0, /* never STARTTLS (plain policy, or a retry after a failed handshake) */
    SMTP_TLS_TRY,     /* STARTTLS when offered, plaintext otherwise */
    SMTP_TLS_MUST,    /* STARTTLS or give up with stage TLS */
    SMTP_TLS_ACTIVE,  /* the transport is TLS already (implicit TLS, port 465) */
};

/* Relay credentials. The strings must outlive the session. */
struct smtp_auth {
    const char *user;
    const char *pass;
    bool allow_plaintext; /* send them without TLS (only if the tenant says so) */
    bool allow_unverified; /* send them over TLS whose certificate was not verified
                              (insecure_skip_verify: a private relay without a CA) */
};

#define SMTP_OWED_MAX 4 /* commands in flight: MAIL+RCPT+DATA when pipelining */

struct smtp_session {
    enum smtp_state state;
    struct smtp_reply_parser parser;
    struct smtp_reply reply; /* last complete reply */
    struct smtp_caps caps;
    struct hbuf out; /* bytes the owner must send, in order */
    const struct smtp_session_ops *ops;
    void *owner;
    char ehlo_name[256];
    struct smtp_timeouts timeouts;
    int64_t deadline_ms;        /* owner enforces: past it, call smtp_session_fail */
    struct smtp_msg *msg;       /* message in the current transaction, not yet reported */
    unsigned replies_owed;      /* replies still expected for commands already queued */
    bool txn_failed;            /* the transaction failed: RSET before next MAIL */
    struct smtp_result pending; /* that failure (already reported via msg_done) */
    bool has_pending;
    uint32_t n_msgs;   /* transactions ended on this connection (any result) */
    uint32_t max_msgs; /* 0 = unlimited; QUIT after this many */
    bool quit_requested;

    /* Why the session ended, when it ended on an error rather than a QUIT we
     * chose: banner refused (stage BANNER), EHLO and HELO refused (EHLO), 421
     * (TEMPFAIL, stage of the command it answered), protocol violation,
     * timeout or network error (NETFAIL, via smtp_session_fail), RSET
     * refused. Set once (the first cause wins), valid when has_error. With
     * ever_ready false the destination never accepted us, so the owner may
     * defer other messages queued for it; with ever_ready true it is a fault
     * of this connection only. Messages in flight already got their own
     * msg_done; this is for the ones not yet handed out. */
    struct smtp_result error;
    bool has_error;
    int err;         /* -errno / -HERR_* matching error, 0 if none */
    bool ever_ready; /* reached READY at least once */

    /* Replies owed, in order: each entry is the offset in the stream of bytes
     * ever appended to `out` where its command ends. A reply whose command is
     * still (partly) in `out` answers nothing we sent: protocol violation. */
    uint64_t out_appended;
    uint64_t owed_end[SMTP_OWED_MAX];
    unsigned n_owed;
    enum smtp_tls_mode tls_mode;
    bool tls_active;        /* STARTTLS completed, or implicit TLS */
    bool tls_verifies;      /* the owner's TLS checks the certificate against the name */
    struct smtp_auth auth;  /* user NULL: no AUTH */
    bool auth_login;        /* AUTH LOGIN rather than PLAIN */
    unsigned auth_step;     /* LOGIN: 0 command sent, 1 user sent, 2 password sent */
    bool authenticated;
    bool in_callback; /* inside ops: public entry points refuse to re-enter */
    bool out_failed;  /* appending to out failed (ENOMEM): session is failed */
};

/* Prepare a session on a freshly connected socket; it waits for the banner. */
void smtp_session_init(struct smtp_session *s, const struct smtp_session_ops *ops, void *owner,
                       const char *ehlo_name, const struct smtp_timeouts *t, uint32_t max_msgs,
                       int64_t now_ms);
/* TLS and AUTH for this connection; call right after init, before any
 * bytes are fed. `verifies`: the owner's TLS handshake fails unless the
 * certificate chains to a trusted CA and names the host (credentials go
 * only over such TLS unless auth->allow_unverified). auth may be NULL. */
void smtp_session_set_security(struct smtp_session *s, enum smtp_tls_mode mode, bool verifies,
                               const struct smtp_auth *auth);
/* True while the session waits for the owner's TLS handshake (after the
 * server's 220 to STARTTLS). Bytes that arrived with that 220 have already
 * been refused: they would be plaintext injected ahead of the handshake. */
static inline bool smtp_session_wants_tls(const struct smtp_session *s)
{
    return s->state == SMTP_S_TLS;
}
/* The owner finished the handshake: err 0 (the session says EHLO again,
 * now over TLS; from then on the owner feeds decrypted bytes) or a negative
 * code with a reason (the session ends with stage TLS; the owner may retry
 * the host without STARTTLS under an opportunistic policy). */
void smtp_session_tls_done(struct smtp_session *s, int err, const char *reason, int64_t now_ms);
/* Releases `out`. A message still in flight gets NETFAIL first, so freeing
 * a live session never loses a msg_done. */
void smtp_session_free(struct smtp_session *s);

/* Feed received bytes (any split, several replies at once); advances the
 * state machine, may append to s->out and call ops. The owner must
 * hbuf_consume() from s->out what it has handed to the transport before
 * feeding the bytes that answer it (s->out may be reallocated by any session
 * call, so a pending SEND must point at the owner's copy, not into it). Returns 0 while alive or
 * after a clean QUIT, or s->err when the session ended on an error (all messages already reported
 * through msg_done; the owner closes). */
int smtp_session_recv(struct smtp_session *s, const char *buf, size_t len, int64_t now_ms);
/* Owner has a new message for an idle session: pulls it via next_msg. */
void smtp_session_kick(struct smtp_session *s, int64_t now_ms);
/* Connection lost, deadline passed, or send failed: reports NETFAIL for the
 * message in flight (if any) with `reason`, state becomes CLOSED. */
void smtp_session_fail(struct smtp_session *s, int err, const char *reason);
/* Graceful close: from READY sends QUIT now; in a transaction, QUIT follows
 * when it ends; before READY, QUIT follows EHLO. */
void smtp_session_quit(struct smtp_session *s, int64_t now_ms);
static inline bool smtp_session_is_idle(const struct smtp_session *s)
{
    return s->state == SMTP_S_READY;
}
static inline bool smtp_session_is_closed(const struct smtp_session *s)
{
    return s->state == SMTP_S_CLOSED;
}

/* Map a reply code to an outcome: 2xx OK, 4xx TEMPFAIL, 5xx PERMFAIL. */
enum smtp_outcome smtp_outcome_of(int code);

#endif
