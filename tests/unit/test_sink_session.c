/* herald-sink's server-side SMTP session, driven by scripted client bytes:
 * pipelining, body terminators split across feeds, dot-unstuffing, sequence
 * errors, bounds, and seeded failure injection. The session lives in bench/,
 * outside heraldcore, so it is compiled into this test directly. */
#include "herald/smtpd.h"

#include "check.h"

/* What a scripted client saw: events in order (one letter each) and the last
 * accepted message. */
struct seen {
    char events[256];
    size_t n_events;
    char from[SMTPD_ADDR_MAX + 1];
    char rcpts[1024];
    char body[4096];
    size_t body_len;
};

static const char event_letter[] = {
    [SMTPD_EV_NEED_MORE] = '-', [SMTPD_EV_MESSAGE] = 'M', [SMTPD_EV_TEMPFAIL] = 'T',
    [SMTPD_EV_PERMFAIL] = 'P',  [SMTPD_EV_DROP] = 'D',    [SMTPD_EV_CLOSE] = 'C',
    [SMTPD_EV_STARTTLS] = 'S',
};

/* Feed in[0..len) to s in pieces of at most chunk bytes, as a ring would. */
static void feed(struct smtpd_session *s, const char *in, size_t len, size_t chunk,
                 struct seen *seen)
{
    for (size_t off = 0; off < len;) {
        size_t n = len - off < chunk ? len - off : chunk;
        const char *p = in + off;
        size_t left = n;
        while (left) {
            size_t used;
            enum smtpd_event ev = smtpd_session_feed(s, p, left, &used);
            CHECK(used <= left);
            p += used;
            left -= used;
            if (ev == SMTPD_EV_NEED_MORE) {
                CHECK_EQ_INT(left, 0);
                continue;
            }
            if (seen->n_events + 1 < sizeof seen->events)
                seen->events[seen->n_events++] = event_letter[ev];
            if (ev == SMTPD_EV_MESSAGE) {
                snprintf(seen->from, sizeof seen->from, "%s", s->from.data ? s->from.data : "");
                snprintf(seen->rcpts, sizeof seen->rcpts, "%s", s->rcpts.data ? s->rcpts.data : "");
                seen->body_len = s->body_len;
                size_t bl = s->body.len < sizeof seen->body - 1 ? s->body.len : 0;
                if (bl) memcpy(seen->body, s->body.data, bl);
                seen->body[bl] = '\0';
            }
        }
        off += n;
    }
}

static void feed_str(struct smtpd_session *s, const char *in, struct seen *seen)
{
    feed(s, in, strlen(in), 1000, seen);
}

static struct smtpd_policy base_policy(void)
{
    return (struct smtpd_policy){
        .banner = "sink.test ESMTP",
        .hostname = "sink.test",
        .pipelining = true,
        .keep_body = true,
        .max_size = 1000,
        .fail_at = SMTPD_FAIL_AT_DATA,
    };
}

static const char pipelined[] = "EHLO c.test\r\n"
                                "MAIL FROM:<a@x.test> SIZE=100\r\n"
                                "RCPT TO:<b@y.test>\r\n"
                                "RCPT TO:<c@y.test>\r\n"
                                "DATA\r\n"
                                "Subject: t\r\n"
                                "\r\n"
                                "..leading dot\r\n"
                                ".\r\n"
                                "QUIT\r\n";

static const char pipelined_replies[] = "220 sink.test ESMTP\r\n"
                                        "250-sink.test\r\n"
                                        "250-PIPELINING\r\n"
                                        "250-8BITMIME\r\n"
                                        "250-SIZE 1000\r\n"
                                        "250-SMTPUTF8\r\n"
                                        "250 ENHANCEDSTATUSCODES\r\n"
                                        "250 2.1.0 Ok\r\n"
                                        "250 2.1.5 Ok\r\n"
                                        "250 2.1.5 Ok\r\n"
                                        "354 End data with <CR><LF>.<CR><LF>\r\n"
                                        "250 2.0.0 Ok: queued as 7.1\r\n"
                                        "221 2.0.0 Bye\r\n";

/* The whole conversation in one buffer, then at every chunk size down to one
 * byte: the transcript and the message must not depend on how TCP split it. */
static void test_pipelined_any_split(void)
{
    struct smtpd_policy pol = base_policy();
    for (size_t chunk = sizeof pipelined; chunk >= 1; chunk--) {
        struct smtpd_session s;
        struct seen seen = {0};
        smtpd_session_init(&s, &pol, 42, 7);
        feed(&s, pipelined, sizeof pipelined - 1, chunk, &seen);
        CHECK_EQ_STR(s.out.data, pipelined_replies);
        CHECK_EQ_STR(seen.events, "MC");
        CHECK_EQ_STR(seen.from, "a@x.test");
        CHECK_EQ_STR(seen.rcpts, "b@y.test,c@y.test");
        CHECK_EQ_STR(seen.body, "Subject: t\r\n\r\n.leading dot\r\n");
        CHECK_EQ_INT(seen.body_len, strlen("Subject: t\r\n\r\n.leading dot\r\n"));
        smtpd_session_free(&s);
    }
}

/* Every two-way split of a body around its terminator. */
static void test_terminator_split(void)
{
    struct smtpd_policy pol = base_policy();
    static const char body[] = "line one\r\n.\r\nnot yet\r\n..\r\n.\r\n";
    /* The first ".\r\n" ends the body; the rest is read as commands. */
    for (size_t cut = 0; cut <= sizeof body - 1; cut++) {
        struct smtpd_session s;
        struct seen seen = {0};
        smtpd_session_init(&s, &pol, 1, 1);
        feed_str(&s, "HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<r@t>\r\nDATA\r\n", &seen);
        feed(&s, body, cut, 1000, &seen);
        feed(&s, body + cut, sizeof body - 1 - cut, 1000, &seen);
        CHECK_EQ_STR(seen.events, "M");
        CHECK_EQ_STR(seen.body, "line one\r\n");
        CHECK_EQ_STR(seen.from, "");
        CHECK(strstr(s.out.data, "500 5.5.1") != NULL);
        smtpd_session_free(&s);
    }
}

/* Only CRLF.CRLF ends DATA: bare LF or CR variants are content (no smuggling),
 * and a dot-stuffed terminator-lookalike is un-stuffed. */
static void test_no_smuggling_and_unstuffing(void)
{
    struct smtpd_policy pol = base_policy();
    static const char in[] = "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@t>\r\nDATA\r\n"
                             "a\n.\nb\r.\rc\n.\r\nd\r\n..\r\n.x\r\n\r\n.\r\n";
    static const char want[] = "a\n.\nb\r.\rc\n.\r\nd\r\n.\r\nx\r\n\r\n";
    for (size_t chunk = 1; chunk <= 8; chunk++) {
        struct smtpd_session s;
        struct seen seen = {0};
        smtpd_session_init(&s, &pol, 1, 1);
        feed(&s, in, sizeof in - 1, chunk, &seen);
        CHECK_EQ_STR(seen.events, "M");
        CHECK_EQ_STR(seen.body, want);
        CHECK_EQ_INT(seen.body_len, sizeof want - 1);
        smtpd_session_free(&s);
    }
}

static void test_empty_body_and_two_messages(void)
{
    struct smtpd_policy pol = base_policy();
    struct smtpd_session s;
    struct seen seen = {0};
    smtpd_session_init(&s, &pol, 1, 0xAB);
    static const char in[] = "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@t>\r\nDATA\r\n.\r\n"
                             "MAIL FROM:<a2@b>\r\nRCPT TO:<r2@t>\r\nDATA\r\nx\r\n.\r\n";
    feed(&s, in, sizeof in - 1, 5, &seen);
    CHECK_EQ_STR(seen.events, "MM");
    CHECK_EQ_STR(seen.from, "a2@b");
    CHECK_EQ_STR(seen.body, "x\r\n");
    CHECK(strstr(s.out.data, "queued as AB.1\r\n") != NULL);
    CHECK(strstr(s.out.data, "queued as AB.2\r\n") != NULL);
    smtpd_session_free(&s);
}

static const char *transcript(const struct smtpd_policy *pol, const char *in, struct seen *seen)
{
    static char out[8192];
    struct smtpd_session s;
    smtpd_session_init(&s, pol, 1, 1);
    feed(&s, in, strlen(in), 3, seen);
    snprintf(out, sizeof out, "%s", s.out.data + strlen("220 sink.test ESMTP\r\n"));
    smtpd_session_free(&s);
    return out;
}

static void test_sequence_errors_and_rset(void)
{
    struct smtpd_policy pol = base_policy();
    struct seen seen = {0};
    CHECK_EQ_STR(transcript(&pol,
                            "MAIL FROM:<a@b>\r\nHELO c\r\nRCPT TO:<r@t>\r\nDATA\r\n"
                            "MAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\nDATA\r\nRSET\r\n"
                            "RCPT TO:<r@t>\r\nNOOP\r\nVRFY x\r\nHELLO\r\n\r\nMAIL TO:<x>\r\n"
                            "MAIL FROM:<a@b>\r\nRCPT TO:<>\r\nDATA x\r\nEHLO\r\nquit\r\n",
                            &seen),
                 "503 5.5.1 Error: send HELO/EHLO first\r\n"
                 "250 sink.test\r\n"
                 "503 5.5.1 Error: need MAIL command\r\n"
                 "503 5.5.1 Error: need MAIL command\r\n"
                 "250 2.1.0 Ok\r\n"
                 "503 5.5.1 Error: nested MAIL command\r\n"
                 "554 5.5.1 Error: no valid recipients\r\n"
                 "250 2.0.0 Ok\r\n"
                 "503 5.5.1 Error: need MAIL command\r\n"
                 "250 2.0.0 Ok\r\n"
                 "500 5.5.1 Error: command not recognized\r\n"
                 "500 5.5.1 Error: command not recognized\r\n"
                 "500 5.5.1 Error: command not recognized\r\n"
                 "501 5.5.4 Syntax: MAIL FROM:<address>\r\n"
                 "250 2.1.0 Ok\r\n"
                 "501 5.5.4 Syntax: RCPT TO:<address>\r\n"
                 "501 5.5.4 Syntax: DATA\r\n"
                 "501 5.5.4 Syntax: EHLO hostname\r\n"
                 "221 2.0.0 Bye\r\n");
    CHECK_EQ_STR(seen.events, "C");
}

static void test_no_pipelining_and_size(void)
{
    struct smtpd_policy pol = base_policy();
    pol.pipelining = false;
    pol.keep_body = false;
    pol.max_size = 10;
    struct seen seen = {0};
    const char *t = transcript(&pol,
                               "EHLO c\r\nMAIL FROM:<a@b> SIZE=11\r\nMAIL FROM:<a@b> size=10\r\n"
                               "RCPT TO:<r@t>\r\nDATA\r\n0123456789\r\n.\r\n",
                               &seen);
    CHECK(strstr(t, "PIPELINING") == NULL);
    CHECK(strstr(t, "250-SIZE 10\r\n") != NULL);
    CHECK(strstr(t, "552 5.3.4 Message size exceeds fixed limit\r\n250 2.1.0 Ok\r\n") != NULL);
    CHECK(strstr(t, "552 5.3.4 Error: message size exceeds fixed limit\r\n") != NULL);
    CHECK_EQ_STR(seen.events, "");
}

/* A line over SMTPD_LINE_MAX gets 500 and close, whether it came whole or in
 * pieces, and the session buffers no more than the limit meanwhile. */
static void test_long_line(void)
{
    struct smtpd_policy pol = base_policy();
    static char in[SMTPD_LINE_MAX + 100];
    memcpy(in, "NOOP ", 5);
    memset(in + 5, 'x', sizeof in - 5);
    for (size_t chunk = 1000; chunk <= sizeof in; chunk += sizeof in - 1000) {
        struct smtpd_session s;
        struct seen seen = {0};
        smtpd_session_init(&s, &pol, 1, 1);
        feed(&s, in, sizeof in, chunk, &seen);
        CHECK_EQ_STR(seen.events, "C");
        CHECK(strstr(s.out.data, "500 5.5.2 Error: line too long\r\n") != NULL);
        CHECK(s.line.len <= SMTPD_LINE_MAX);
        smtpd_session_free(&s);
    }
    /* Exactly at the limit is fine. */
    struct smtpd_session s;
    struct seen seen = {0};
    smtpd_session_init(&s, &pol, 1, 1);
    memset(in + 5, 'x', SMTPD_LINE_MAX - 7);
    memcpy(in + SMTPD_LINE_MAX - 2, "\r\n", 2);
    feed(&s, in, SMTPD_LINE_MAX, 100, &seen);
    CHECK_EQ_STR(seen.events, "");
    CHECK(strstr(s.out.data, "250 2.0.0 Ok\r\n") != NULL);
    smtpd_session_free(&s);
}

/* n transactions with one client script; returns the events string. */
static void run_many(const struct smtpd_policy *pol, uint64_t seed, int n, struct seen *seen,
                     struct hbuf *out)
{
    struct smtpd_session s;
    smtpd_session_init(&s, pol, seed, 3);
    feed(&s, "EHLO c\r\n", 8, 100, seen);
    for (int i = 0; i < n; i++) {
        static const char txn[] = "RSET\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@t>\r\nDATA\r\nhi\r\n.\r\n";
        feed(&s, txn, sizeof txn - 1, 100, seen);
    }
    if (out) (void)hbuf_append(out, s.out.data, s.out.len);
    smtpd_session_free(&s);
}

static size_t count(const char *s, char c)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == c;
    return n;
}

static void test_tempfail_injection(void)
{
    struct smtpd_policy pol = base_policy();
    pol.tempfail_ratio = 0.3;
    pol.permfail_ratio = 0.1;
    struct seen a = {0}, b = {0}, c = {0};
    struct hbuf out;
    hbuf_init(&out);
    run_many(&pol, 1234, 200, &a, &out);
    run_many(&pol, 1234, 200, &b, NULL);
    run_many(&pol, 999, 200, &c, NULL);
    CHECK_EQ_INT(a.n_events, 200);
    CHECK_EQ_STR(a.events, b.events); /* same seed, same fate */
    CHECK(strcmp(a.events, c.events) != 0);
    size_t t = count(a.events, 'T'), p = count(a.events, 'P'), m = count(a.events, 'M');
    CHECK(t > 35 && t < 85);
    CHECK(p > 5 && p < 40);
    CHECK_EQ_INT(t + p + m, 200);
    /* At DATA: the body is read, then refused. */
    CHECK(strstr(out.data, "354 End data") != NULL);
    CHECK(strstr(out.data, "\r\n451 4.3.0 ") != NULL);
    CHECK(strstr(out.data, "\r\n550 5.1.1 ") != NULL);
    hbuf_free(&out);

    /* At RCPT: the same transactions fail, now at RCPT, and DATA finds no
     * recipients. */
    pol.fail_at = SMTPD_FAIL_AT_RCPT;
    struct seen r = {0};
    hbuf_init(&out);
    run_many(&pol, 1234, 200, &r, &out);
    CHECK_EQ_STR(r.events, a.events);
    CHECK(strstr(out.data, "250 2.1.0 Ok\r\n451 4.3.0 ") != NULL);
    CHECK(strstr(out.data, "554 5.5.1 Error: no valid recipients\r\n") != NULL);
    hbuf_free(&out);

    /* Ratio 1 fails everything, ratio 0 nothing. */
    pol.tempfail_ratio = 1.0;
    pol.permfail_ratio = 0.0;
    struct seen all = {0};
    run_many(&pol, 5, 20, &all, NULL);
    CHECK_EQ_INT(count(all.events, 'T'), 20);
}

static void test_drop(void)
{
    struct smtpd_policy pol = base_policy();
    pol.drop_ratio = 1.0;
    struct smtpd_session s;
    struct seen seen = {0};
    smtpd_session_init(&s, &pol, 1, 1);
    feed_str(&s, "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@t>\r\nDATA\r\n", &seen);
    CHECK_EQ_STR(seen.events, "");
    size_t out_len = s.out.len;
    feed(&s, "Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n", 29, 5, &seen);
    CHECK_EQ_STR(seen.events, "D");
    CHECK_EQ_INT(s.out.len, out_len); /* nothing replied after 354 */
    smtpd_session_free(&s);
}

/* Without a TLS context STARTTLS is neither offered nor known: the plaintext
 * transcript stays what it always was. */
static void test_starttls_not_offered(void)
{
    struct smtpd_policy pol = base_policy();
    struct seen seen = {0};
    const char *t = transcript(&pol, "EHLO c\r\nSTARTTLS\r\nMAIL FROM:<a@b>\r\n", &seen);
    CHECK(strstr(t, "STARTTLS") == NULL);
    CHECK(strstr(t, "250 ENHANCEDSTATUSCODES\r\n500 5.5.1 Error: command not recognized\r\n"
                    "250 2.1.0 Ok\r\n") != NULL);
    CHECK_EQ_STR(seen.events, "");
}

static const char tls_ehlo[] = "250-sink.test\r\n"
                               "250-PIPELINING\r\n"
                               "250-8BITMIME\r\n"
                               "250-SIZE 1000\r\n"
                               "250-SMTPUTF8\r\n"
                               "250-STARTTLS\r\n"
                               "250 ENHANCEDSTATUSCODES\r\n";

/* STARTTLS at every split: 220, then everything the client pipelined behind
 * it is dropped unread, however it was cut; after the handshake the session
 * starts over (EHLO needed, STARTTLS no longer offered nor accepted). */
static void test_starttls_reset_and_discard(void)
{
    struct smtpd_policy pol = base_policy();
    pol.starttls = true;
    static const char before[] = "EHLO c\r\nSTARTTLS now\r\nMAIL FROM:<a@b>\r\nSTARTTLS\r\n"
                                 "RSET\r\nstarttls\r\n"
                                 "MAIL FROM:<evil@x>\r\nRCPT TO:<r@t>\r\nDATA\r\nx\r\n.\r\n";
    static const char injected[] = "MAIL FROM:<evil@x>\r\nRCPT TO:<r@t>\r\nDATA\r\nx\r\n.\r\n";
    static const char after[] = "MAIL FROM:<a@b>\r\nEHLO c2\r\nSTARTTLS\r\n"
                                "MAIL FROM:<a@b>\r\nRCPT TO:<r@t>\r\nDATA\r\nok\r\n.\r\nQUIT\r\n";
    char want[2048];
    snprintf(want, sizeof want,
             "220 sink.test ESMTP\r\n%s"
             "501 5.5.4 Syntax: STARTTLS\r\n"
             "250 2.1.0 Ok\r\n"
             "503 5.5.1 Error: MAIL transaction in progress\r\n"
             "250 2.0.0 Ok\r\n"
             "220 2.0.0 ready\r\n"
             /* after the handshake */
             "503 5.5.1 Error: send HELO/EHLO first\r\n"
             "250-sink.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250-SIZE 1000\r\n"
             "250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n"
             "503 5.5.1 Error: TLS already active\r\n"
             "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
             "250 2.0.0 Ok: queued as 1.1\r\n"
             "221 2.0.0 Bye\r\n",
             tls_ehlo);
    for (size_t chunk = sizeof before; chunk >= 1; chunk--) {
        struct smtpd_session s;
        struct seen seen = {0};
        smtpd_session_init(&s, &pol, 1, 1);
        feed(&s, before, sizeof before - 1, chunk, &seen);
        CHECK_EQ_INT(s.state, SMTPD_STARTTLS);
        CHECK_EQ_STR(seen.events, "S");
        /* More plaintext before the handshake: also dropped. */
        feed(&s, injected, sizeof injected - 1, chunk, &seen);
        CHECK_EQ_INT(s.n_discarded, 2 * (sizeof injected - 1));
        smtpd_session_tls_ready(&s);
        CHECK_EQ_INT(s.state, SMTPD_COMMAND);
        feed(&s, after, sizeof after - 1, chunk, &seen);
        CHECK_EQ_STR(seen.events, "SMC");
        CHECK_EQ_STR(seen.from, "a@b");
        CHECK_EQ_STR(s.out.data, want);
        smtpd_session_free(&s);
    }
}

/* --tls-required: no MAIL before the handshake; the rest is as before. */
static void test_tls_required(void)
{
    struct smtpd_policy pol = base_policy();
    pol.starttls = true;
    pol.tls_required = true;
    struct smtpd_session s;
    struct seen seen = {0};
    smtpd_session_init(&s, &pol, 1, 1);
    smtpd_session_tls_ready(&s); /* not asked for: ignored */
    CHECK(!s.tls_active);
    feed_str(&s, "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@t>\r\nNOOP\r\nSTARTTLS\r\n", &seen);
    CHECK(strstr(s.out.data, "250 ENHANCEDSTATUSCODES\r\n"
                             "530 5.7.0 Must issue a STARTTLS command first\r\n"
                             "503 5.5.1 Error: need MAIL command\r\n"
                             "250 2.0.0 Ok\r\n220 2.0.0 ready\r\n") != NULL);
    smtpd_session_tls_ready(&s);
    hbuf_reset(&s.out);
    feed_str(&s, "EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<r@t>\r\nDATA\r\nx\r\n.\r\n", &seen);
    CHECK_EQ_STR(seen.events, "SM");
    CHECK(strstr(s.out.data, "530") == NULL);
    CHECK_EQ_STR(smtpd_state_name(s.state), "command");
    CHECK_EQ_STR(smtpd_event_name(SMTPD_EV_STARTTLS), "starttls");
    smtpd_session_free(&s);
}

/* The owner's recipient check answers 550; a message the owner cannot
 * record has its 250 turned into 451 (the inbound listener, Redis away). */
static bool only_ours(void *arg, const char *addr, size_t len)
{
    (void)arg;
    return len > 10 && memcmp(addr + len - 10, "@ours.test", 10) == 0;
}

static void test_owner_rcpt_and_retract(void)
{
    struct smtpd_policy pol = base_policy();
    pol.accept_rcpt = only_ours;
    struct seen seen = {0};
    const char *t = transcript(&pol,
                               "EHLO c.test\r\nMAIL FROM:<>\r\nRCPT TO:<x@elsewhere.test>\r\n"
                               "RCPT TO:<b@ours.test>\r\nDATA\r\nhi\r\n.\r\n",
                               &seen);
    CHECK(strstr(t, "550 5.1.1 Error: no such recipient here\r\n250 2.1.5 Ok") != NULL);
    CHECK_EQ_STR(seen.rcpts, "b@ours.test");
    /* the 250 for the message is the last reply: it can be taken back */
    struct smtpd_session s;
    smtpd_session_init(&s, &pol, 1, 1);
    struct seen seen2 = {0};
    feed_str(&s, "EHLO c.test\r\nMAIL FROM:<>\r\nRCPT TO:<b@ours.test>\r\nDATA\r\nhi\r\n.\r\n",
             &seen2);
    CHECK_EQ_STR(seen2.events, "M");
    size_t before = s.out.len;
    CHECK(smtpd_session_retract(&s, 0));
    CHECK(s.out.len > 0 && s.out.len <= before + 8);
    CHECK(s.out.len >= 27 &&
          memcmp(s.out.data + s.out.len - 27, "451 4.3.0 Try again later\r\n", 27) == 0);
    CHECK(strstr(s.out.data, "250 2.0.0") == NULL);
    /* a reply already sent is not taken back */
    CHECK(!smtpd_session_retract(&s, s.out.len));
    smtpd_session_free(&s);
}

int main(void)
{
    test_pipelined_any_split();
    test_terminator_split();
    test_no_smuggling_and_unstuffing();
    test_empty_body_and_two_messages();
    test_sequence_errors_and_rset();
    test_no_pipelining_and_size();
    test_long_line();
    test_tempfail_injection();
    test_drop();
    test_starttls_not_offered();
    test_starttls_reset_and_discard();
    test_tls_required();
    test_owner_rcpt_and_retract();
    return check_report("test_sink_session");
}
