/* The server side of an SMTP connection (smtpd.h): commands, pipelining,
 * DATA body scanning with dot-unstuffing, STARTTLS's half, the owner's
 * recipient check, and herald-sink's seeded failure/drop injection. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "herald/smtpd.h"

static const char *const event_names[] = {
    [SMTPD_EV_NEED_MORE] = "need-more", [SMTPD_EV_MESSAGE] = "message",
    [SMTPD_EV_TEMPFAIL] = "tempfail",   [SMTPD_EV_PERMFAIL] = "permfail",
    [SMTPD_EV_DROP] = "drop",           [SMTPD_EV_CLOSE] = "close",
    [SMTPD_EV_STARTTLS] = "starttls",
};

static const char *const state_names[SMTPD_STATE_COUNT] = {
    [SMTPD_COMMAND] = "command",
    [SMTPD_BODY] = "body",
    [SMTPD_STARTTLS] = "starttls",
    [SMTPD_DONE] = "done",
};

const char *smtpd_event_name(enum smtpd_event ev)
{
    if ((unsigned)ev < HERALD_ARRAY_LEN(event_names) && event_names[ev]) return event_names[ev];
    return "?";
}

const char *smtpd_state_name(enum smtpd_state st)
{
    if ((unsigned)st < SMTPD_STATE_COUNT) return state_names[st];
    return "?";
}

static uint64_t splitmix64(uint64_t x)
{
    x += 0x9E3779B97F4A7C15ull;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
    return x ^ (x >> 31);
}

/* Uniform in [0, 1) from xorshift64*. */
static double rand01(struct smtpd_session *s)
{
    uint64_t x = s->rng;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    s->rng = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) * 0x1.0p-53;
}

static void reply(struct smtpd_session *s, const char *text)
{
    (void)hbuf_append_str(&s->out, text);
    (void)hbuf_append(&s->out, "\r\n", 2);
}

void smtpd_session_init(struct smtpd_session *s, const struct smtpd_policy *policy, uint64_t seed,
                       uint64_t conn_id)
{
    memset(s, 0, sizeof *s);
    s->policy = policy;
    s->state = SMTPD_COMMAND;
    s->conn_id = conn_id;
    s->rng = splitmix64(seed ^ splitmix64(conn_id));
    if (s->rng == 0) s->rng = 1;
    hbuf_init(&s->out);
    hbuf_init(&s->line);
    hbuf_init(&s->from);
    hbuf_init(&s->rcpts);
    hbuf_init(&s->body);
    (void)hbuf_appendf(&s->out, "220 %s\r\n", policy->banner);
}

void smtpd_session_free(struct smtpd_session *s)
{
    hbuf_free(&s->out);
    hbuf_free(&s->line);
    hbuf_free(&s->from);
    hbuf_free(&s->rcpts);
    hbuf_free(&s->body);
}

static void txn_reset(struct smtpd_session *s)
{
    s->have_mail = false;
    s->n_rcpts = 0;
    s->fate_counted = false;
}

/* True if the n bytes at p start with the ASCII word w, any case. */
static bool starts_with_ci(const char *p, size_t n, const char *w)
{
    size_t wl = strlen(w);
    return n >= wl && strncasecmp(p, w, wl) == 0;
}

/* Parse "<path> [params]" (or a bare path, leniently) after "FROM:" or "TO:".
 * Sets *addr and *addr_len to the path without brackets and *rest to the
 * parameters. Returns false on a syntax error. */
static bool parse_path(const char *p, size_t n, const char **addr, size_t *addr_len,
                       const char **rest, size_t *rest_len)
{
    while (n && *p == ' ') {
        p++;
        n--;
    }
    if (n == 0) return false;
    const char *end;
    if (*p == '<') {
        end = memchr(p, '>', n);
        if (!end) return false;
        *addr = p + 1;
        *addr_len = (size_t)(end - p - 1);
        end++;
    } else {
        end = memchr(p, ' ', n);
        if (!end) end = p + n;
        *addr = p;
        *addr_len = (size_t)(end - p);
    }
    *rest = end;
    *rest_len = n - (size_t)(end - p);
    return true;
}

/* Value of the SIZE= parameter among the ESMTP parameters, or 0. */
static uint64_t size_param(const char *p, size_t n)
{
    for (size_t i = 0; i + 5 <= n; i++) {
        if ((i == 0 || p[i - 1] == ' ') && strncasecmp(p + i, "SIZE=", 5) == 0) {
            uint64_t v = 0;
            for (size_t j = i + 5; j < n && p[j] >= '0' && p[j] <= '9'; j++)
                v = v > UINT64_MAX / 10 - 10 ? UINT64_MAX : v * 10 + (uint64_t)(p[j] - '0');
            return v;
        }
    }
    return 0;
}

static void cmd_ehlo(struct smtpd_session *s, bool extended, size_t arg_len)
{
    if (arg_len == 0) {
        reply(s, "501 5.5.4 Syntax: EHLO hostname");
        return;
    }
    txn_reset(s);
    s->have_helo = true;
    const struct smtpd_policy *pol = s->policy;
    if (!extended) {
        (void)hbuf_appendf(&s->out, "250 %s\r\n", pol->hostname);
        return;
    }
    bool offer_tls = pol->starttls && !s->tls_active;
    (void)hbuf_appendf(&s->out,
                       "250-%s\r\n%s250-8BITMIME\r\n250-SIZE %llu\r\n250-SMTPUTF8\r\n"
                       "%s250 ENHANCEDSTATUSCODES\r\n",
                       pol->hostname, pol->pipelining ? "250-PIPELINING\r\n" : "",
                       (unsigned long long)pol->max_size, offer_tls ? "250-STARTTLS\r\n" : "");
}

bool smtpd_limiter_over(struct smtpd_limiter *l, int64_t now_ms)
{
    if (!l || (l->until_ms && now_ms >= l->until_ms)) return false;
    uint64_t sec = (uint64_t)(clock_wall_ms() / 1000);
    uint64_t cur = atomic_load(&l->slot);
    for (;;) {
        uint64_t count = (cur >> 32) == sec ? (cur & 0xffffffffu) + 1 : 1;
        if (count > l->per_sec) {
            atomic_fetch_add(&l->refused, 1);
            return true;
        }
        if (atomic_compare_exchange_weak(&l->slot, &cur, sec << 32 | count)) return false;
    }
}

static enum smtpd_event cmd_mail(struct smtpd_session *s, const char *arg, size_t n)
{
    const char *addr, *rest;
    size_t addr_len, rest_len;
    if (!s->have_helo) {
        reply(s, "503 5.5.1 Error: send HELO/EHLO first");
        return SMTPD_EV_NEED_MORE;
    }
    if (s->have_mail) {
        reply(s, "503 5.5.1 Error: nested MAIL command");
        return SMTPD_EV_NEED_MORE;
    }
    if (s->policy->tls_required && !s->tls_active) {
        reply(s, "530 5.7.0 Must issue a STARTTLS command first");
        return SMTPD_EV_NEED_MORE;
    }
    if (!starts_with_ci(arg, n, "FROM:") ||
        !parse_path(arg + 5, n - 5, &addr, &addr_len, &rest, &rest_len)) {
        reply(s, "501 5.5.4 Syntax: MAIL FROM:<address>");
        return SMTPD_EV_NEED_MORE;
    }
    if (addr_len > SMTPD_ADDR_MAX) {
        reply(s, "501 5.1.7 Sender address too long");
        return SMTPD_EV_NEED_MORE;
    }
    if (size_param(rest, rest_len) > s->policy->max_size) {
        reply(s, "552 5.3.4 Message size exceeds fixed limit");
        return SMTPD_EV_NEED_MORE;
    }
    if (smtpd_limiter_over(s->policy->limiter, clock_mono_ms())) {
        /* Like a large receiver over its limit: 421 and hang up. */
        reply(s, s->policy->limit_text ? s->policy->limit_text
                                       : "421 4.7.0 Too many messages, rate limited; slow down");
        s->state = SMTPD_DONE;
        return SMTPD_EV_CLOSE;
    }
    hbuf_reset(&s->from);
    hbuf_reset(&s->rcpts);
    (void)hbuf_append(&s->from, addr, addr_len);
    s->have_mail = true;
    s->n_rcpts = 0;
    s->fate_counted = false;
    /* Draw both numbers every time so one ratio never shifts the other's
     * sequence: the same seed fails the same transactions whatever is set. */
    double u = rand01(s);
    double d = rand01(s);
    const struct smtpd_policy *pol = s->policy;
    if (u < pol->tempfail_ratio)
        s->fate = SMTPD_EV_TEMPFAIL;
    else if (u < pol->tempfail_ratio + pol->permfail_ratio)
        s->fate = SMTPD_EV_PERMFAIL;
    else
        s->fate = SMTPD_EV_MESSAGE;
    s->fate_drop = d < pol->drop_ratio;
    reply(s, "250 2.1.0 Ok");
    return SMTPD_EV_NEED_MORE;
}

static enum smtpd_event cmd_rcpt(struct smtpd_session *s, const char *arg, size_t n)
{
    const char *addr, *rest;
    size_t addr_len, rest_len;
    if (!s->have_mail) {
        reply(s, "503 5.5.1 Error: need MAIL command");
        return SMTPD_EV_NEED_MORE;
    }
    if (!starts_with_ci(arg, n, "TO:") ||
        !parse_path(arg + 3, n - 3, &addr, &addr_len, &rest, &rest_len) || addr_len == 0) {
        reply(s, "501 5.5.4 Syntax: RCPT TO:<address>");
        return SMTPD_EV_NEED_MORE;
    }
    if (addr_len > SMTPD_ADDR_MAX) {
        reply(s, "501 5.1.3 Recipient address too long");
        return SMTPD_EV_NEED_MORE;
    }
    if (s->n_rcpts >= SMTPD_RCPTS_MAX) {
        reply(s, "452 4.5.3 Error: too many recipients");
        return SMTPD_EV_NEED_MORE;
    }
    if (s->policy->accept_rcpt && !s->policy->accept_rcpt(s->policy->rcpt_arg, addr, addr_len)) {
        reply(s, "550 5.1.1 Error: no such recipient here");
        return SMTPD_EV_NEED_MORE;
    }
    if (s->policy->fail_at == SMTPD_FAIL_AT_RCPT && s->fate != SMTPD_EV_MESSAGE) {
        bool temp = s->fate == SMTPD_EV_TEMPFAIL;
        reply(s, temp ? "451 4.3.0 Error: temporary failure (injected)"
                      : "550 5.1.1 Error: recipient rejected (injected)");
        if (s->fate_counted) return SMTPD_EV_NEED_MORE;
        s->fate_counted = true;
        return s->fate;
    }
    if (s->rcpts.len) (void)hbuf_append_char(&s->rcpts, ',');
    (void)hbuf_append(&s->rcpts, addr, addr_len);
    s->n_rcpts++;
    reply(s, "250 2.1.5 Ok");
    return SMTPD_EV_NEED_MORE;
}

static void cmd_data(struct smtpd_session *s, size_t arg_len)
{
    if (arg_len) {
        reply(s, "501 5.5.4 Syntax: DATA");
        return;
    }
    if (!s->have_mail) {
        reply(s, "503 5.5.1 Error: need MAIL command");
        return;
    }
    if (s->n_rcpts == 0) {
        reply(s, "554 5.5.1 Error: no valid recipients");
        return;
    }
    s->state = SMTPD_BODY;
    s->body_at = BODY_BOL;
    s->body_len = 0;
    hbuf_reset(&s->body);
    reply(s, "354 End data with <CR><LF>.<CR><LF>");
}

static enum smtpd_event cmd_starttls(struct smtpd_session *s, size_t arg_len)
{
    if (arg_len) {
        reply(s, "501 5.5.4 Syntax: STARTTLS");
        return SMTPD_EV_NEED_MORE;
    }
    if (s->tls_active) {
        reply(s, "503 5.5.1 Error: TLS already active");
        return SMTPD_EV_NEED_MORE;
    }
    if (s->have_mail) {
        reply(s, "503 5.5.1 Error: MAIL transaction in progress");
        return SMTPD_EV_NEED_MORE;
    }
    reply(s, "220 2.0.0 ready");
    txn_reset(s);
    s->have_helo = false;
    s->state = SMTPD_STARTTLS;
    return SMTPD_EV_STARTTLS;
}

void smtpd_session_tls_ready(struct smtpd_session *s)
{
    if (s->state != SMTPD_STARTTLS) return;
    s->state = SMTPD_COMMAND;
    s->tls_active = true;
    s->have_helo = false;
    txn_reset(s);
    hbuf_reset(&s->line);
}

/* One complete command line (n bytes, ending in LF). */
static enum smtpd_event command(struct smtpd_session *s, const char *p, size_t n)
{
    n--; /* the LF */
    if (n && p[n - 1] == '\r') n--;
    size_t verb_len = 0;
    while (verb_len < n && p[verb_len] != ' ')
        verb_len++;
    const char *arg = p + verb_len;
    size_t arg_len = n - verb_len;
    while (arg_len && *arg == ' ') {
        arg++;
        arg_len--;
    }
    while (arg_len && arg[arg_len - 1] == ' ')
        arg_len--;

    if (verb_len == 8 && s->policy->starttls && strncasecmp(p, "STARTTLS", 8) == 0)
        return cmd_starttls(s, arg_len);
    if (verb_len != 4) {
        reply(s, "500 5.5.1 Error: command not recognized");
        return SMTPD_EV_NEED_MORE;
    }
    if (strncasecmp(p, "EHLO", 4) == 0 || strncasecmp(p, "HELO", 4) == 0) {
        cmd_ehlo(s, p[0] == 'E' || p[0] == 'e', arg_len);
    } else if (strncasecmp(p, "MAIL", 4) == 0) {
        return cmd_mail(s, arg, arg_len);
    } else if (strncasecmp(p, "RCPT", 4) == 0) {
        return cmd_rcpt(s, arg, arg_len);
    } else if (strncasecmp(p, "DATA", 4) == 0) {
        cmd_data(s, arg_len);
    } else if (strncasecmp(p, "RSET", 4) == 0) {
        txn_reset(s);
        reply(s, "250 2.0.0 Ok");
    } else if (strncasecmp(p, "NOOP", 4) == 0) {
        reply(s, "250 2.0.0 Ok");
    } else if (strncasecmp(p, "QUIT", 4) == 0) {
        reply(s, "221 2.0.0 Bye");
        s->state = SMTPD_DONE;
        return SMTPD_EV_CLOSE;
    } else {
        reply(s, "500 5.5.1 Error: command not recognized");
    }
    return SMTPD_EV_NEED_MORE;
}

/* Take bytes up to and including one LF; a line split across feeds is
 * gathered in s->line, which never grows past SMTPD_LINE_MAX. */
static size_t feed_command(struct smtpd_session *s, const char *p, size_t n, enum smtpd_event *ev)
{
    const char *nl = memchr(p, '\n', n);
    size_t take = nl ? (size_t)(nl - p) + 1 : n;
    if (s->line.len + take > SMTPD_LINE_MAX) {
        reply(s, "500 5.5.2 Error: line too long");
        s->state = SMTPD_DONE;
        *ev = SMTPD_EV_CLOSE;
        return take;
    }
    if (!nl) {
        (void)hbuf_append(&s->line, p, take);
        return take;
    }
    if (s->line.len == 0) {
        *ev = command(s, p, take);
        return take;
    }
    (void)hbuf_append(&s->line, p, take);
    *ev = command(s, s->line.data, s->line.len);
    hbuf_reset(&s->line);
    return take;
}

static void emit(struct smtpd_session *s, const char *p, size_t n)
{
    s->body_len += n;
    if (s->policy->keep_body && s->body_len <= s->policy->max_size)
        (void)hbuf_append(&s->body, p, n);
}

static enum smtpd_event end_of_data(struct smtpd_session *s)
{
    enum smtpd_event ev = SMTPD_EV_NEED_MORE;
    s->state = SMTPD_COMMAND;
    if (s->body_len > s->policy->max_size) {
        reply(s, "552 5.3.4 Error: message size exceeds fixed limit");
    } else if (s->fate == SMTPD_EV_TEMPFAIL) {
        reply(s, "451 4.3.0 Error: temporary failure (injected)");
        ev = SMTPD_EV_TEMPFAIL;
    } else if (s->fate == SMTPD_EV_PERMFAIL) {
        reply(s, "550 5.1.1 Error: recipient rejected (injected)");
        ev = SMTPD_EV_PERMFAIL;
    } else {
        s->n_queued++;
        (void)hbuf_appendf(&s->out, "250 2.0.0 Ok: queued as %llX.%u\r\n",
                           (unsigned long long)s->conn_id, s->n_queued);
        ev = SMTPD_EV_MESSAGE;
    }
    /* from/rcpts/body stay readable for the owner until the next MAIL. */
    s->have_mail = false;
    s->n_rcpts = 0;
    return ev;
}

/* Scan body bytes for CRLF "." CRLF, un-stuffing leading dots. Only CRLF ends
 * a line: a bare LF or CR is content, so "\n.\n" can never end DATA early. */
static size_t feed_body(struct smtpd_session *s, const char *p, size_t n, enum smtpd_event *ev)
{
    if (s->fate_drop) {
        s->state = SMTPD_DONE;
        *ev = SMTPD_EV_DROP;
        return n;
    }
    size_t i = 0;
    while (i < n) {
        switch (s->body_at) {
        case BODY_MID: {
            const char *cr = memchr(p + i, '\r', n - i);
            size_t run = cr ? (size_t)(cr - (p + i)) : n - i;
            emit(s, p + i, run);
            i += run;
            if (cr) {
                s->body_at = BODY_CR;
                i++;
            }
            break;
        }
        case BODY_CR:
            if (p[i] == '\n') {
                emit(s, "\r\n", 2);
                s->body_at = BODY_BOL;
                i++;
            } else {
                emit(s, "\r", 1);
                s->body_at = BODY_MID;
            }
            break;
        case BODY_BOL:
            if (p[i] == '.') {
                s->body_at = BODY_DOT;
                i++;
            } else {
                s->body_at = BODY_MID;
            }
            break;
        case BODY_DOT: /* the leading dot is dropped whatever follows */
            if (p[i] == '\r') {
                s->body_at = BODY_DOT_CR;
                i++;
            } else {
                s->body_at = BODY_MID;
            }
            break;
        case BODY_DOT_CR:
            if (p[i] == '\n') {
                *ev = end_of_data(s);
                return i + 1;
            }
            emit(s, "\r", 1);
            s->body_at = BODY_MID;
            break;
        }
    }
    return i;
}

enum smtpd_event smtpd_session_feed(struct smtpd_session *s, const char *data, size_t len,
                                  size_t *used)
{
    enum smtpd_event ev = SMTPD_EV_NEED_MORE;
    size_t off = 0;
    while (off < len && ev == SMTPD_EV_NEED_MORE) {
        if (s->state == SMTPD_DONE) {
            off = len; /* after QUIT or a drop, input is ignored */
            break;
        }
        if (s->state == SMTPD_STARTTLS) {
            s->n_discarded += len - off;
            off = len;
            break;
        }
        if (s->state == SMTPD_BODY)
            off += feed_body(s, data + off, len - off, &ev);
        else
            off += feed_command(s, data + off, len - off, &ev);
    }
    *used = off;
    return ev;
}

bool smtpd_session_retract(struct smtpd_session *s, size_t sent)
{
    size_t end = s->out.len, start = end >= 2 ? end - 2 : 0;
    while (start > sent && s->out.data[start - 1] != '\n')
        start--;
    if (start < sent || end - start < 3 || memcmp(s->out.data + start, "250", 3) != 0)
        return false;
    s->out.len = start;
    reply(s, "451 4.3.0 Try again later");
    return true;
}
