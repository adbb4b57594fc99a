/* SMTP client session: one enum, one function that changes state (enter),
 * one that decides the next state from a complete reply (on_reply).
 *
 * enter() is the entry action: it logs the transition, arms the state's
 * deadline and queues the state's command (unless PIPELINING already queued
 * it). on_reply() consumes the reply owed for the current state and returns
 * the next state. Chained transitions (a result, then RSET or the next
 * message, then a local refusal, then the next...) run in pull()'s loop, not
 * by recursion.
 *
 * Invariant: a message handed out by next_msg is in s->msg until its result
 * is known, and finish_msg() is the only place that calls msg_done, clearing
 * s->msg first; so each message gets exactly one result whatever the peer
 * does. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "herald/smtp.h"

static enum smtp_stage stage_of(enum smtp_state st)
{
    switch (st) {
    case SMTP_S_INIT:
        return SMTP_STAGE_CONNECT;
    case SMTP_S_BANNER:
        return SMTP_STAGE_BANNER;
    case SMTP_S_EHLO:
    case SMTP_S_HELO:
        return SMTP_STAGE_EHLO;
    case SMTP_S_STARTTLS:
    case SMTP_S_TLS:
        return SMTP_STAGE_TLS;
    case SMTP_S_AUTH:
        return SMTP_STAGE_AUTH;
    case SMTP_S_MAIL:
        return SMTP_STAGE_MAIL;
    case SMTP_S_RCPT:
        return SMTP_STAGE_RCPT;
    case SMTP_S_DATA:
        return SMTP_STAGE_DATA;
    case SMTP_S_BODY:
        return SMTP_STAGE_BODY;
    case SMTP_S_RSET:
        return SMTP_STAGE_RSET;
    case SMTP_S_QUIT:
    case SMTP_S_CLOSED:
        return SMTP_STAGE_QUIT;
    case SMTP_S_READY:
    default:
        return SMTP_STAGE_IDLE;
    }
}

static int64_t state_timeout_ms(const struct smtp_session *s, enum smtp_state st)
{
    switch (st) {
    case SMTP_S_BANNER:
        return s->timeouts.banner_ms;
    case SMTP_S_EHLO:
    case SMTP_S_HELO:
    case SMTP_S_STARTTLS:
    case SMTP_S_TLS: /* the owner's handshake is bounded like a command */
    case SMTP_S_AUTH:
    case SMTP_S_MAIL:
    case SMTP_S_RCPT:
    case SMTP_S_DATA:
    case SMTP_S_RSET:
    case SMTP_S_QUIT:
        return s->timeouts.command_ms;
    case SMTP_S_BODY:
        return s->timeouts.data_end_ms;
    default:
        return 0;
    }
}

/* ---- results ---------------------------------------------------------- */

static void bounded_copy(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src);
}

/* The reply as one readable line for a case note: lines joined by "; ",
 * bounded by the result's buffer, "..." when anything was cut. */
static void reply_summary(char *dst, size_t cap, const struct smtp_reply *r)
{
    size_t o = 0;
    bool cut = r->truncated;
    for (size_t i = 0; i < r->text_len; i++) {
        const char *piece = r->text[i] == '\n' ? "; " : NULL;
        size_t n = piece ? 2 : 1;
        if (o + n + 4 > cap) {
            cut = true;
            break;
        }
        if (piece) {
            memcpy(dst + o, piece, n);
        } else {
            dst[o] = r->text[i];
        }
        o += n;
    }
    if (cut && o + 4 <= cap) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = '\0';
}

static void result_from_reply(struct smtp_result *res, const struct smtp_reply *r,
                              enum smtp_stage stage)
{
    res->outcome = smtp_outcome_of(r->code);
    res->stage = stage;
    res->err = 0;
    res->code = r->code;
    bounded_copy(res->enhanced, sizeof res->enhanced, r->enhanced);
    reply_summary(res->reply, sizeof res->reply, r);
}

__attribute__((format(printf, 6, 7))) static void
result_local(struct smtp_result *res, enum smtp_outcome outcome, enum smtp_stage stage, int code,
             const char *enhanced, const char *fmt, ...)
{
    res->outcome = outcome;
    res->stage = stage;
    res->code = code;
    res->err = 0;
    bounded_copy(res->enhanced, sizeof res->enhanced, enhanced);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(res->reply, sizeof res->reply, fmt, ap);
    va_end(ap);
}

static void call_done(struct smtp_session *s, struct smtp_msg *m, const struct smtp_result *res)
{
    s->in_callback = true;
    s->ops->msg_done(s->owner, m, res);
    s->in_callback = false;
}

/* The only path to msg_done for a message that reached the wire. */
static void finish_msg(struct smtp_session *s, const struct smtp_result *res)
{
    struct smtp_msg *m = s->msg;
    if (!m) return;
    s->msg = NULL;
    call_done(s, m, res);
}

static void record_error(struct smtp_session *s, int err, const struct smtp_result *res)
{
    if (s->has_error) return;
    s->error = *res;
    s->has_error = true;
    s->err = err;
    if (log_min_level <= LOG_DEBUG)
        log_event(LOG_DEBUG, "event=smtp_session_error stage=%s code=%d reply=%s",
                  smtp_stage_name(res->stage), res->code, LOG_VALUE(res->reply));
}

/* ---- output ----------------------------------------------------------- */

static void out_raw(struct smtp_session *s, const char *p, size_t n)
{
    if (s->out_failed) return;
    if (hbuf_append(&s->out, p, n) < 0) {
        s->out_failed = true;
        return;
    }
    s->out_appended += n;
}

/* Queue one command and remember that a reply is owed for it. */
__attribute__((format(printf, 2, 3))) static void send_cmd(struct smtp_session *s, const char *fmt,
                                                           ...)
{
    if (s->out_failed) return;
    size_t before = s->out.len;
    va_list ap;
    va_start(ap, fmt);
    int rc = hbuf_vappendf(&s->out, fmt, ap);
    va_end(ap);
    if (rc < 0 || s->n_owed >= SMTP_OWED_MAX) {
        s->out_failed = true;
        return;
    }
    s->out_appended += s->out.len - before;
    s->owed_end[s->n_owed++] = s->out_appended;
}

/* AUTH PLAIN with the initial response (RFC 4954), or the next line of
 * AUTH LOGIN. Credentials are base64 on the wire and never logged. */
static void send_auth(struct smtp_session *s)
{
    if (s->out_failed) return;
    struct hbuf line;
    hbuf_init(&line);
    const char *user = s->auth.user, *pass = s->auth.pass ? s->auth.pass : "";
    int rc = 0;
    if (!s->auth_login) {
        struct hbuf raw;
        hbuf_init(&raw);
        rc = hbuf_append_char(&raw, '\0');
        if (!rc) rc = hbuf_append_str(&raw, user);
        if (!rc) rc = hbuf_append_char(&raw, '\0');
        if (!rc) rc = hbuf_append_str(&raw, pass);
        if (!rc) rc = hbuf_append_str(&line, "AUTH PLAIN ");
        if (!rc) rc = hbuf_append_base64(&line, raw.data, raw.len);
        if (raw.data) explicit_bzero(raw.data, raw.cap);
        hbuf_free(&raw);
    } else if (s->auth_step == 0) {
        rc = hbuf_append_str(&line, "AUTH LOGIN");
    } else {
        const char *v = s->auth_step == 1 ? user : pass;
        rc = hbuf_append_base64(&line, v, strlen(v));
    }
    if (!rc) send_cmd(s, "%s\r\n", line.data);
    else s->out_failed = true;
    if (line.data) explicit_bzero(line.data, line.cap);
    hbuf_free(&line);
}

/* The message's size as RFC 1870 counts it: the payload without its
 * terminating ".\r\n" (stuffing dots still counted: a small overestimate
 * the RFC allows, and it saves a scan of the body). */
static size_t message_octets(const struct smtp_msg *m)
{
    return m->data_len >= 3 ? m->data_len - 3 : m->data_len;
}

static void send_mail(struct smtp_session *s)
{
    const struct smtp_msg *m = s->msg;
    char size_param[32] = "";
    if (s->caps.size) snprintf(size_param, sizeof size_param, " SIZE=%zu", message_octets(m));
    bool utf8 = m->needs_smtputf8 && s->caps.smtputf8;
    send_cmd(s, "MAIL FROM:<%s>%s%s\r\n", m->mail_from ? m->mail_from : "", size_param,
             utf8 ? " SMTPUTF8" : "");
}

static void send_rcpt(struct smtp_session *s)
{
    send_cmd(s, "RCPT TO:<%s>\r\n", s->msg->rcpt);
}

static void send_body(struct smtp_session *s)
{
    /* DATA was accepted although the transaction already failed (a
     * pipelined MAIL or RCPT was refused): end it with an empty message. */
    if (s->msg && !s->txn_failed)
        out_raw(s, s->msg->data, s->msg->data_len);
    else
        out_raw(s, ".\r\n", 3);
    if (s->out_failed || s->n_owed >= SMTP_OWED_MAX) {
        s->out_failed = true;
        return;
    }
    s->owed_end[s->n_owed++] = s->out_appended;
}

/* ---- transitions ------------------------------------------------------ */

/* The one place that changes state: entry actions for `to`. */
static void enter(struct smtp_session *s, enum smtp_state to, int64_t now_ms)
{
    log_event(LOG_TRACE, "event=smtp_state from=%s to=%s", smtp_state_name(s->state),
              smtp_state_name(to));
    s->state = to;
    int64_t t = state_timeout_ms(s, to);
    s->deadline_ms = t > 0 ? now_ms + t : 0;
    switch (to) {
    case SMTP_S_EHLO:
        send_cmd(s, "EHLO %s\r\n", s->ehlo_name);
        break;
    case SMTP_S_HELO:
        send_cmd(s, "HELO %s\r\n", s->ehlo_name);
        break;
    case SMTP_S_STARTTLS:
        send_cmd(s, "STARTTLS\r\n");
        break;
    case SMTP_S_AUTH:
        if (s->n_owed == 0) send_auth(s); /* LOGIN's later lines are queued by on_reply */
        break;
    case SMTP_S_READY:
        s->ever_ready = true;
        s->txn_failed = false;
        s->has_pending = false;
        break;
    case SMTP_S_MAIL:
        send_mail(s);
        if (s->caps.pipelining) {
            send_rcpt(s);
            send_cmd(s, "DATA\r\n");
        }
        break;
    case SMTP_S_RCPT:
        if (s->n_owed == 0) send_rcpt(s);
        break;
    case SMTP_S_DATA:
        if (s->n_owed == 0) send_cmd(s, "DATA\r\n");
        break;
    case SMTP_S_BODY:
        send_body(s);
        break;
    case SMTP_S_RSET:
        send_cmd(s, "RSET\r\n");
        break;
    case SMTP_S_QUIT:
        send_cmd(s, "QUIT\r\n");
        break;
    case SMTP_S_CLOSED:
        s->n_owed = 0;
        break;
    default:
        break;
    }
    s->replies_owed = s->n_owed;
}

static bool quit_due(const struct smtp_session *s)
{
    return s->quit_requested || (s->max_msgs && s->n_msgs >= s->max_msgs);
}

/* Bytes that would let an address break out of <...> or the command line. */
static bool has_unsafe_byte(const char *p, bool *eight_bit)
{
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c < 0x20 || c == 0x7f || c == '<' || c == '>') return true;
        if (c >= 0x80) *eight_bit = true;
    }
    return false;
}

/* Messages this session must not put on the wire: the caller's bugs
 * (addresses that would inject commands, a payload that would end DATA
 * early or never) and what the server told us it won't take. */
static bool refuse_locally(const struct smtp_session *s, const struct smtp_msg *m,
                           struct smtp_result *res)
{
    bool eight_bit = m->needs_smtputf8;
    const char *from = m->mail_from ? m->mail_from : "";
    if (strlen(from) > 512 || has_unsafe_byte(from, &eight_bit)) {
        result_local(res, SMTP_OUT_PERMFAIL, SMTP_STAGE_MAIL, 553, "5.1.7",
                     "local: unsafe envelope sender");
        return true;
    }
    if (!m->rcpt || !m->rcpt[0] || strlen(m->rcpt) > 512 || has_unsafe_byte(m->rcpt, &eight_bit)) {
        result_local(res, SMTP_OUT_PERMFAIL, SMTP_STAGE_RCPT, 553, "5.1.3",
                     "local: unsafe recipient address");
        return true;
    }
    /* Exactly one end-of-data, at the end: anything else would desync the
     * replies from the commands, or smuggle a second message. */
    static const char eod[] = "\r\n.\r\n";
    bool one_eod = false;
    if (m->data && m->data_len == 3)
        one_eod = memcmp(m->data, ".\r\n", 3) == 0;
    else if (m->data && m->data_len >= 5)
        one_eod = memcmp(m->data + m->data_len - 5, eod, 5) == 0 &&
                  memcmp(m->data, ".\r\n", 3) != 0 &&
                  memmem(m->data, m->data_len - 1, eod, 5) == NULL;
    if (!one_eod) {
        result_local(res, SMTP_OUT_PERMFAIL, SMTP_STAGE_DATA, 554, "5.6.0",
                     "local: payload is not one dot-stuffed message ending in CRLF.CRLF");
        return true;
    }
    if (s->caps.size && s->caps.size_max > 0 && message_octets(m) > s->caps.size_max) {
        result_local(res, SMTP_OUT_PERMFAIL, SMTP_STAGE_MAIL, 552, "5.3.4",
                     "message size %zu exceeds the server's SIZE limit %llu", message_octets(m),
                     (unsigned long long)s->caps.size_max);
        return true;
    }
    if (eight_bit && !s->caps.smtputf8) {
        /* A UTF-8 recipient mailbox cannot be reached through this server
         * at all: that is the mailbox's problem (RFC 6531 3.7.4.1). */
        bool rcpt_8bit = false;
        has_unsafe_byte(m->rcpt, &rcpt_8bit);
        result_local(res, SMTP_OUT_PERMFAIL, rcpt_8bit ? SMTP_STAGE_RCPT : SMTP_STAGE_MAIL, 553,
                     "5.6.7",
                     rcpt_8bit ? "local: recipient mailbox is non-ASCII and the server does not "
                                 "offer SMTPUTF8"
                               : "message needs SMTPUTF8, which the server does not offer");
        return true;
    }
    return false;
}

/* READY: start the next transaction, or QUIT when this connection has done
 * its share. Locally refused messages are reported and the loop asks again. */
static void pull(struct smtp_session *s, int64_t now_ms)
{
    while (s->state == SMTP_S_READY && !s->out_failed) {
        if (quit_due(s)) {
            enter(s, SMTP_S_QUIT, now_ms);
            return;
        }
        s->in_callback = true;
        struct smtp_msg *m = s->ops->next_msg(s->owner);
        s->in_callback = false;
        if (!m) return;
        struct smtp_result res;
        if (refuse_locally(s, m, &res)) {
            call_done(s, m, &res);
            continue;
        }
        s->msg = m;
        s->txn_failed = false;
        s->has_pending = false;
        enter(s, SMTP_S_MAIL, now_ms);
    }
}

/* ---- replies ---------------------------------------------------------- */

static enum smtp_state violation(struct smtp_session *s, const char *why)
{
    struct smtp_result res;
    const struct smtp_reply *r = &s->reply;
    char first[96];
    size_t n = strcspn(r->text, "\n");
    snprintf(first, sizeof first, "%.*s", (int)(n < 80 ? n : 80), r->text);
    if (r->code)
        result_local(&res, SMTP_OUT_NETFAIL, stage_of(s->state), 0, "",
                     "protocol violation: %s (got %d %s)", why, r->code, first);
    else
        result_local(&res, SMTP_OUT_NETFAIL, stage_of(s->state), 0, "", "protocol violation: %s",
                     why);
    res.err = -HERR_PROTOCOL;
    finish_msg(s, &res);
    /* After our QUIT the peer may say anything: nothing is lost. */
    if (s->state != SMTP_S_QUIT) record_error(s, -HERR_PROTOCOL, &res);
    return SMTP_S_CLOSED;
}

static void txn_fail(struct smtp_session *s, const struct smtp_reply *r, enum smtp_stage stage)
{
    if (s->txn_failed) return; /* the first failure in a pipelined group decides */
    struct smtp_result res;
    result_from_reply(&res, r, stage);
    s->txn_failed = true;
    s->pending = res;
    s->has_pending = true;
    finish_msg(s, &res);
}

/* A transaction ended (its last owed reply consumed). */
static enum smtp_state end_txn(struct smtp_session *s)
{
    s->n_msgs++;
    if (quit_due(s)) return SMTP_S_QUIT;
    return s->txn_failed ? SMTP_S_RSET : SMTP_S_READY;
}

/* Refusal of the connection itself (banner, EHLO+HELO, RSET): say QUIT
 * politely and remember why. */
static enum smtp_state refuse_session(struct smtp_session *s, enum smtp_stage stage)
{
    struct smtp_result res;
    result_from_reply(&res, &s->reply, stage);
    record_error(s, -ECONNREFUSED, &res);
    return SMTP_S_QUIT;
}

/* The connection cannot meet the TLS or AUTH requirements: no message can
 * go over it. TEMPFAIL so the jobs wait for the operator (or the server)
 * to fix it rather than bounce. */
static enum smtp_state refuse_security(struct smtp_session *s, enum smtp_stage stage,
                                       const struct smtp_reply *r, const char *why)
{
    struct smtp_result res;
    if (r) {
        result_from_reply(&res, r, stage);
        res.outcome = SMTP_OUT_TEMPFAIL;
    } else {
        result_local(&res, SMTP_OUT_TEMPFAIL, stage, 0, "", "%s", why);
    }
    record_error(s, stage == SMTP_STAGE_AUTH ? -EACCES : -HERR_PROTOCOL, &res);
    return SMTP_S_QUIT;
}

/* After a successful EHLO/HELO: STARTTLS, then AUTH, then READY. */
static enum smtp_state after_hello(struct smtp_session *s)
{
    if (!s->tls_active && s->caps.starttls &&
        (s->tls_mode == SMTP_TLS_TRY || s->tls_mode == SMTP_TLS_MUST))
        return SMTP_S_STARTTLS;
    if (!s->tls_active && s->tls_mode == SMTP_TLS_MUST)
        return refuse_security(s, SMTP_STAGE_TLS, NULL,
                               "TLS is required but the server does not offer STARTTLS");
    if (s->auth.user && !s->authenticated) {
        if (!s->tls_active && !s->auth.allow_plaintext)
            return refuse_security(s, SMTP_STAGE_AUTH, NULL,
                                   "credentials not sent: the connection is not encrypted "
                                   "(allow_plaintext_auth is off)");
        /* Encryption alone does not keep the password from whoever sits
         * between us and the relay: only a verified certificate does. */
        if (s->tls_active && !s->tls_verifies && !s->auth.allow_unverified)
            return refuse_security(s, SMTP_STAGE_AUTH, NULL,
                                   "credentials not sent: the server's certificate is not "
                                   "verified (set the relay's ca_file, or insecure_skip_verify "
                                   "for a private relay without a CA)");
        if (!s->caps.auth_plain && !s->caps.auth_login)
            return refuse_security(s, SMTP_STAGE_AUTH, NULL,
                                   "the server offers neither AUTH PLAIN nor AUTH LOGIN");
        s->auth_login = !s->caps.auth_plain;
        s->auth_step = 0;
        return SMTP_S_AUTH;
    }
    return SMTP_S_READY;
}

/* Given the complete reply in s->reply, decide the next state. */
static enum smtp_state on_reply(struct smtp_session *s)
{
    const struct smtp_reply *r = &s->reply;
    int cls = r->code / 100;

    /* 421: the server is going away now (RFC 5321 3.8), whatever we asked,
     * including nothing (an idle timeout). Don't QUIT into a closing socket. */
    if (r->code == 421 && s->state != SMTP_S_QUIT) {
        struct smtp_result res;
        result_from_reply(&res, r, stage_of(s->state));
        finish_msg(s, &res);
        record_error(s, -HERR_CLOSED, &res);
        return SMTP_S_CLOSED;
    }

    if (s->n_owed == 0) return violation(s, "reply when none was owed");
    uint64_t sent = s->out_appended - s->out.len;
    if (s->owed_end[0] > sent) return violation(s, "reply before the command was sent");
    memmove(s->owed_end, s->owed_end + 1, (s->n_owed - 1) * sizeof s->owed_end[0]);
    s->n_owed--;
    s->replies_owed = s->n_owed;

    switch (s->state) {
    case SMTP_S_BANNER:
        if (cls == 2) return SMTP_S_EHLO;
        if (cls == 3) return violation(s, "unexpected banner");
        return refuse_session(s, SMTP_STAGE_BANNER);

    case SMTP_S_EHLO:
        if (cls == 2) {
            smtp_caps_parse(&s->caps, r);
            return after_hello(s);
        }
        if (cls == 5) return SMTP_S_HELO; /* an RFC 821 server, or EHLO disabled */
        if (cls == 3) return violation(s, "unexpected reply to EHLO");
        return refuse_session(s, SMTP_STAGE_EHLO);

    case SMTP_S_HELO:
        if (cls == 2) {
            memset(&s->caps, 0, sizeof s->caps);
            return after_hello(s);
        }
        if (cls == 3) return violation(s, "unexpected reply to HELO");
        return refuse_session(s, SMTP_STAGE_EHLO);

    case SMTP_S_STARTTLS:
        if (cls == 2) return SMTP_S_TLS;
        if (cls == 3) return violation(s, "unexpected reply to STARTTLS");
        if (s->tls_mode == SMTP_TLS_MUST)
            return refuse_security(s, SMTP_STAGE_TLS, r, NULL);
        s->tls_mode = SMTP_TLS_OFF; /* offered but refused: carry on in plaintext */
        return after_hello(s);

    case SMTP_S_AUTH:
        if (cls == 2) {
            s->authenticated = true;
            return SMTP_S_READY;
        }
        if (cls == 3 && s->auth_login && s->auth_step < 2) {
            s->auth_step++;
            send_auth(s);
            return SMTP_S_AUTH;
        }
        if (cls == 3) return violation(s, "unexpected challenge to AUTH");
        return refuse_security(s, SMTP_STAGE_AUTH, r, NULL);

    case SMTP_S_MAIL:
    case SMTP_S_RCPT: {
        bool mail = s->state == SMTP_S_MAIL;
        if (cls == 3)
            return violation(s, mail ? "unexpected reply to MAIL" : "unexpected reply to RCPT");
        if (cls != 2) txn_fail(s, r, mail ? SMTP_STAGE_MAIL : SMTP_STAGE_RCPT);
        /* Without pipelining a failure ends the transaction here; with it,
         * the replies to the commands already sent must still be read. */
        if (s->txn_failed && s->n_owed == 0) return end_txn(s);
        return mail ? SMTP_S_RCPT : SMTP_S_DATA;
    }

    case SMTP_S_DATA:
        if (cls == 3) return SMTP_S_BODY;
        if (cls == 2) return violation(s, "unexpected reply to DATA");
        txn_fail(s, r, SMTP_STAGE_DATA);
        return end_txn(s);

    case SMTP_S_BODY:
        if (cls == 3) return violation(s, "unexpected reply after the message");
        if (cls != 2) txn_fail(s, r, SMTP_STAGE_BODY);
        if (s->msg) {
            struct smtp_result res;
            result_from_reply(&res, r, SMTP_STAGE_BODY);
            finish_msg(s, &res);
        }
        return end_txn(s);

    case SMTP_S_RSET:
        if (cls == 2) return SMTP_S_READY;
        if (cls == 3) return violation(s, "unexpected reply to RSET");
        return refuse_session(s, SMTP_STAGE_RSET);

    case SMTP_S_QUIT:
        return SMTP_S_CLOSED;

    default:
        return violation(s, "reply when none was owed");
    }
}

/* ---- public ----------------------------------------------------------- */

void smtp_session_init(struct smtp_session *s, const struct smtp_session_ops *ops, void *owner,
                       const char *ehlo_name, const struct smtp_timeouts *t, uint32_t max_msgs,
                       int64_t now_ms)
{
    memset(s, 0, sizeof *s);
    s->state = SMTP_S_INIT;
    smtp_reply_parser_init(&s->parser);
    hbuf_init(&s->out);
    s->ops = ops;
    s->owner = owner;
    /* The name goes on the wire: keep only a plain token of it. */
    size_t n = 0;
    if (ehlo_name) n = strcspn(ehlo_name, " \t\r\n<>");
    if (n >= sizeof s->ehlo_name) n = sizeof s->ehlo_name - 1;
    if (n == 0)
        bounded_copy(s->ehlo_name, sizeof s->ehlo_name, "localhost");
    else {
        memcpy(s->ehlo_name, ehlo_name, n);
        s->ehlo_name[n] = '\0';
    }
    s->timeouts = *t;
    s->max_msgs = max_msgs;
    s->owed_end[s->n_owed++] = 0; /* the banner */
    enter(s, SMTP_S_BANNER, now_ms);
}

static int end_rc(const struct smtp_session *s)
{
    return s->state == SMTP_S_CLOSED && s->has_error ? s->err : 0;
}

static void check_out(struct smtp_session *s)
{
    if (s->out_failed && s->state != SMTP_S_CLOSED)
        smtp_session_fail(s, -ENOMEM, "out of memory queueing a command");
}

int smtp_session_recv(struct smtp_session *s, const char *buf, size_t len, int64_t now_ms)
{
    if (s->in_callback) return -EBUSY;
    size_t off = 0;
    while (off < len && s->state != SMTP_S_CLOSED) {
        if (s->state == SMTP_S_TLS) {
            /* Plaintext after the 220 to STARTTLS would be read as if it
             * came over TLS (command injection, CVE-2011-0411 style). */
            s->reply.code = 0;
            s->reply.text[0] = '\0';
            s->reply.text_len = 0;
            enter(s, violation(s, "data after the reply to STARTTLS"), now_ms);
            break;
        }
        size_t used = 0;
        int rc = smtp_reply_parse(&s->parser, buf + off, len - off, &used, &s->reply);
        off += used;
        if (rc == 0) break;
        enum smtp_state next;
        if (rc < 0) {
            s->reply.code = 0;
            s->reply.text[0] = '\0';
            s->reply.text_len = 0;
            next = violation(s, "malformed reply");
        } else {
            next = on_reply(s);
        }
        enter(s, next, now_ms);
        if (next == SMTP_S_READY) pull(s, now_ms);
        check_out(s);
    }
    return end_rc(s);
}

void smtp_session_kick(struct smtp_session *s, int64_t now_ms)
{
    if (s->in_callback || s->state != SMTP_S_READY) return;
    pull(s, now_ms);
    check_out(s);
}

void smtp_session_fail(struct smtp_session *s, int err, const char *reason)
{
    if (s->state == SMTP_S_CLOSED) return;
    struct smtp_result res;
    result_local(&res, SMTP_OUT_NETFAIL, stage_of(s->state), 0, "", "%s",
                 reason && reason[0] ? reason : herald_strerror(err));
    res.err = err < 0 ? err : err > 0 ? -err : -ECONNABORTED;
    finish_msg(s, &res);
    if (s->state != SMTP_S_QUIT)
        record_error(s, err < 0 ? err : err > 0 ? -err : -ECONNABORTED, &res);
    enter(s, SMTP_S_CLOSED, 0);
}

void smtp_session_set_security(struct smtp_session *s, enum smtp_tls_mode mode, bool verifies,
                               const struct smtp_auth *auth)
{
    s->tls_mode = mode;
    s->tls_verifies = verifies;
    s->tls_active = mode == SMTP_TLS_ACTIVE;
    if (auth && auth->user && auth->user[0])
        s->auth = *auth;
    else
        memset(&s->auth, 0, sizeof s->auth);
}

void smtp_session_tls_done(struct smtp_session *s, int err, const char *reason, int64_t now_ms)
{
    if (s->in_callback || s->state != SMTP_S_TLS) return;
    if (err) {
        struct smtp_result res;
        result_local(&res, SMTP_OUT_NETFAIL, SMTP_STAGE_TLS, 0, "", "TLS handshake failed: %s",
                     reason && reason[0] ? reason : herald_strerror(err));
        res.err = -HERR_TLS;
        record_error(s, err, &res);
        enter(s, SMTP_S_CLOSED, now_ms); /* no QUIT: the stream is neither plaintext nor TLS */
        return;
    }
    s->tls_active = true;
    /* RFC 3207: forget everything learnt before TLS and say EHLO again. */
    memset(&s->caps, 0, sizeof s->caps);
    smtp_reply_parser_init(&s->parser);
    enter(s, SMTP_S_EHLO, now_ms);
    check_out(s);
}

void smtp_session_quit(struct smtp_session *s, int64_t now_ms)
{
    if (s->state == SMTP_S_CLOSED) return;
    s->quit_requested = true;
    if (s->in_callback || s->state != SMTP_S_READY) return;
    enter(s, SMTP_S_QUIT, now_ms);
    check_out(s);
}

void smtp_session_free(struct smtp_session *s)
{
    if (s->state != SMTP_S_CLOSED && s->state != SMTP_S_INIT)
        smtp_session_fail(s, -ECANCELED, "session closed by owner");
    hbuf_free(&s->out);
}
