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

#define SMTP_LINE_MAX 1024   /* longest reply line kept; longer is truncated, not buffered */
#define SMTP_REPLY_TEXT_MAX 2048 /* all lines of one reply, '\n'-joined, truncated beyond */
#define SMTP_REPLY_LINES_MAX 128 /* more lines than this is a hostile peer: malformed */

/* One complete (possibly multiline) reply. */
struct smtp_reply {
    int code;            /* 100..599 */
    char enhanced[16];   /* "2.0.0" when present on the first line, else "" */
    char text[SMTP_REPLY_TEXT_MAX]; /* line texts after "NNN-"/"NNN ", joined by '\n' */
    size_t text_len;
    unsigned n_lines;
    bool truncated;
};

/* Incremental reply parser: feed any byte split; no allocation. */
struct smtp_reply_parser {
    char line[SMTP_LINE_MAX];
    size_t line_len;
    bool line_overflow;
    bool in_reply;     /* seen a "NNN-" continuation line */
    int code;
    struct smtp_reply cur;
};

void smtp_reply_parser_init(struct smtp_reply_parser *p);
/* Consume bytes from buf until one reply completes or input ends.
 * Returns 1 with *out filled when a reply completed (*consumed says how far),
 * 0 when all input was consumed without completing a reply,
 * -HERR_PROTOCOL when the input is not SMTP (bad code, mixed codes in a
 * multiline reply, too many lines). */
int smtp_reply_parse(struct smtp_reply_parser *p, const char *buf, size_t len, size_t *consumed,
                     struct smtp_reply *out);

/* EHLO capabilities. */
struct smtp_caps {
    bool pipelining, starttls, eightbitmime, smtputf8, chunking, enhancedstatuscodes;
    bool size;
    uint64_t size_max; /* 0 = no limit announced */
    bool auth_plain, auth_login;
};
void smtp_caps_parse(struct smtp_caps *caps, const struct smtp_reply *ehlo_reply);

enum smtp_state {
    SMTP_S_INIT = 0,   /* not started */
    SMTP_S_BANNER,     /* waiting for 220 */
    SMTP_S_EHLO,
    SMTP_S_HELO,
    SMTP_S_READY,      /* idle, may take a message */
    SMTP_S_MAIL,       /* MAIL FROM sent (with PIPELINING: MAIL+RCPT+DATA sent) */
    SMTP_S_RCPT,
    SMTP_S_DATA,       /* waiting for 354 */
    SMTP_S_BODY,       /* body sent, waiting for final reply */
    SMTP_S_RSET,
    SMTP_S_QUIT,
    SMTP_S_CLOSED,     /* finished; the owner closes the socket */
    SMTP_STATE_COUNT
};
const char *smtp_state_name(enum smtp_state s);

/* Which command a result answers: the note reports it. */
enum smtp_stage {
    SMTP_STAGE_CONNECT = 0,
    SMTP_STAGE_BANNER,
    SMTP_STAGE_EHLO,
    SMTP_STAGE_MAIL,
    SMTP_STAGE_RCPT,
    SMTP_STAGE_DATA,
    SMTP_STAGE_BODY,
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
    int code;            /* 0 for NETFAIL */
    char enhanced[16];
    char reply[512];     /* remote text (first lines), or local reason for NETFAIL */
};

/* A message handed to the session. Owned by the caller until msg_done. */
struct smtp_msg {
    const char *mail_from;   /* envelope sender, no brackets ("" for null sender) */
    const char *rcpt;        /* one recipient */
    const char *data;        /* dot-stuffed payload ending "\r\n.\r\n" */
    size_t data_len;
    bool needs_smtputf8;
    void *owner_data;
};

struct smtp_session_ops {
    /* The session is READY: return the next message to send on this
     * connection, or NULL to stay idle. Called synchronously from session
     * functions. */
    struct smtp_msg *(*next_msg)(void *owner);
    /* Final result for a message. Called exactly once per message handed out
     * (also when the connection fails). */
    void (*msg_done)(void *owner, struct smtp_msg *msg, const struct smtp_result *res);
};

struct smtp_timeouts {
    int64_t banner_ms, command_ms, data_block_ms, data_end_ms;
};

struct smtp_session {
    enum smtp_state state;
    struct smtp_reply_parser parser;
    struct smtp_reply reply;      /* last complete reply */
    struct smtp_caps caps;
    struct hbuf out;              /* bytes the owner must send, in order */
    const struct smtp_session_ops *ops;
    void *owner;
    char ehlo_name[256];
    struct smtp_timeouts timeouts;
    int64_t deadline_ms;          /* owner enforces: past it, call smtp_session_fail */
    struct smtp_msg *msg;         /* message in the current transaction */
    unsigned replies_owed;        /* pipelined replies still expected */
    bool txn_failed;              /* a pipelined step failed: RSET before next MAIL */
    struct smtp_result pending;   /* first failure within a pipelined group */
    bool has_pending;
    uint32_t n_msgs;              /* messages completed on this connection */
    uint32_t max_msgs;            /* 0 = unlimited; QUIT after this many */
    bool quit_requested;
};

/* Prepare a session on a freshly connected socket; it waits for the banner. */
void smtp_session_init(struct smtp_session *s, const struct smtp_session_ops *ops, void *owner,
                       const char *ehlo_name, const struct smtp_timeouts *t, uint32_t max_msgs,
                       int64_t now_ms);
void smtp_session_free(struct smtp_session *s);

/* Feed received bytes; advances the state machine, may append to s->out and
 * call ops. Returns 0, or a negative error when the session is dead (all
 * messages already reported through msg_done; the owner closes). */
int smtp_session_recv(struct smtp_session *s, const char *buf, size_t len, int64_t now_ms);
/* Owner has a new message for an idle session: pulls it via next_msg. */
void smtp_session_kick(struct smtp_session *s, int64_t now_ms);
/* Connection lost, deadline passed, or send failed: reports NETFAIL for the
 * message in flight (if any) with `reason`, state becomes CLOSED. */
void smtp_session_fail(struct smtp_session *s, int err, const char *reason);
/* Graceful close from READY: sends QUIT. */
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
