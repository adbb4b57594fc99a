/* Session transcript tests: scripted server bytes in, the exact client bytes
 * (s->out) and each message's result out. The fake owner drains s->out after
 * every feed, as the engine does once bytes are handed to the transport. */
#include <errno.h>
#include <stdlib.h>

#include "check.h"
#include "herald/smtp.h"

#define BODY "Subject: hi\r\n\r\nhello\r\n.\r\n"
#define NOW  1000

struct fake {
    struct smtp_msg msgs[8];
    int n_msgs;
    int next;    /* next message next_msg hands out */
    int n_pulls; /* next_msg calls */
    int done[8]; /* msg_done calls per message */
    struct smtp_result res[8];
    int order[8]; /* message index per msg_done, in call order */
    int n_done;
};

static struct smtp_msg *fake_next(void *owner)
{
    struct fake *f = owner;
    f->n_pulls++;
    if (f->next >= f->n_msgs) return NULL;
    return &f->msgs[f->next++];
}

static void fake_done(void *owner, struct smtp_msg *m, const struct smtp_result *res)
{
    struct fake *f = owner;
    int i = (int)(m - f->msgs);
    f->done[i]++;
    f->res[i] = *res;
    f->order[f->n_done++] = i;
}

static const struct smtp_session_ops fake_ops = {fake_next, fake_done};
static const struct smtp_timeouts tmo = {300000, 60000, 180000, 600000};

static void fake_init(struct fake *f, int n_msgs)
{
    memset(f, 0, sizeof *f);
    static const char *const rcpts[] = {"b0@y.test", "b1@y.test", "b2@y.test", "b3@y.test",
                                        "b4@y.test", "b5@y.test", "b6@y.test", "b7@y.test"};
    f->n_msgs = n_msgs;
    for (int i = 0; i < n_msgs; i++) {
        f->msgs[i].mail_from = "a@x.test";
        f->msgs[i].rcpt = rcpts[i];
        f->msgs[i].data = BODY;
        f->msgs[i].data_len = strlen(BODY);
    }
}

/* Every message handed out got exactly one result. */
static void check_exactly_once(const struct fake *f)
{
    for (int i = 0; i < f->next; i++)
        CHECK_EQ_INT(f->done[i], 1);
    for (int i = f->next; i < f->n_msgs; i++)
        CHECK_EQ_INT(f->done[i], 0);
}

/* What the client sent since the last call; drains s->out. */
static char sent_buf[8192];
static const char *sent(struct smtp_session *s)
{
    snprintf(sent_buf, sizeof sent_buf, "%.*s", (int)s->out.len, s->out.data ? s->out.data : "");
    hbuf_consume(&s->out, s->out.len);
    return sent_buf;
}

static int feed(struct smtp_session *s, const char *server)
{
    return smtp_session_recv(s, server, strlen(server), NOW);
}

/* Server says `server`; client must answer exactly `client`. */
#define STEP(s, server, client)                                                                    \
    do {                                                                                           \
        feed((s), (server));                                                                       \
        CHECK_EQ_STR(sent(s), (client));                                                           \
    } while (0)

#define MAIL_A  "MAIL FROM:<a@x.test>\r\n"
#define RCPT(n) "RCPT TO:<b" #n "@y.test>\r\n"

static void start(struct smtp_session *s, struct fake *f, uint32_t max_msgs, const char *ehlo)
{
    smtp_session_init(s, &fake_ops, f, "mta.test", &tmo, max_msgs, NOW);
    CHECK_EQ_INT(s->state, SMTP_S_BANNER);
    CHECK_EQ_INT(s->deadline_ms, NOW + tmo.banner_ms);
    CHECK_EQ_STR(sent(s), "");
    STEP(s, "220 mx.y.test ESMTP\r\n", "EHLO mta.test\r\n");
    CHECK_EQ_INT(s->state, SMTP_S_EHLO);
    CHECK_EQ_INT(s->deadline_ms, NOW + tmo.command_ms);
    feed(s, ehlo);
}

static void test_plain_delivery(void)
{
    struct fake f;
    struct smtp_session s;
    fake_init(&f, 1);
    start(&s, &f, 0, "250-mx.y.test\r\n250 8BITMIME\r\n");
    CHECK_EQ_STR(sent(&s), MAIL_A);
    CHECK(s.ever_ready);
    CHECK(s.caps.eightbitmime && !s.caps.pipelining);
    STEP(&s, "250 2.1.0 ok\r\n", RCPT(0));
    STEP(&s, "250 2.1.5 ok\r\n", "DATA\r\n");
    CHECK_EQ_INT(s.state, SMTP_S_DATA);
    STEP(&s, "354 go ahead\r\n", BODY);
    CHECK_EQ_INT(s.state, SMTP_S_BODY);
    CHECK_EQ_INT(s.deadline_ms, NOW + tmo.data_end_ms);
    CHECK_EQ_INT(f.n_done, 0);
    STEP(&s, "250 2.0.0 Ok: queued as ABC\r\n", "");
    CHECK_EQ_INT(f.done[0], 1);
    CHECK_EQ_INT(f.res[0].outcome, SMTP_OUT_OK);
    CHECK_EQ_INT(f.res[0].stage, SMTP_STAGE_BODY);
    CHECK_EQ_INT(f.res[0].code, 250);
    CHECK_EQ_STR(f.res[0].enhanced, "2.0.0");
    CHECK_EQ_STR(f.res[0].reply, "2.0.0 Ok: queued as ABC");
    CHECK_EQ_INT(s.state, SMTP_S_READY);
    CHECK_EQ_INT(s.deadline_ms, 0);
    CHECK_EQ_INT(s.n_msgs, 1);
    smtp_session_quit(&s, NOW);
    CHECK_EQ_STR(sent(&s), "QUIT\r\n");
    CHECK_EQ_INT(s.state, SMTP_S_QUIT);
    CHECK_EQ_INT(feed(&s, "221 2.0.0 bye\r\n"), 0);
    CHECK(smtp_session_is_closed(&s));
    CHECK(!s.has_error);
    check_exactly_once(&f);
    smtp_session_free(&s);
}

#define EHLO_PIPE                                                                                  \
    "250-mx.y.test\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250 ENHANCEDSTATUSCODES\r\n"
#define GROUP(n) "MAIL FROM:<a@x.test> SIZE=22\r\n" RCPT(n) "DATA\r\n"

static void test_pipelined_three(void)
{
    struct fake f;
    struct smtp_session s;
    fake_init(&f, 3);
    start(&s, &f, 0, EHLO_PIPE);
    CHECK(s.caps.pipelining && s.caps.size && s.caps.enhancedstatuscodes);
    CHECK_EQ_INT(s.caps.size_max, 1000000);
    CHECK_EQ_STR(sent(&s), GROUP(0));
    CHECK_EQ_INT(s.replies_owed, 3);
    STEP(&s, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n", BODY);
    STEP(&s, "250 2.0.0 one\r\n", GROUP(1));
    STEP(&s, "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n", BODY);
    STEP(&s, "250 2.0.0 two\r\n", GROUP(2));
    /* Replies split across feeds, and the MAIL reply alone. */
    STEP(&s, "250 2.1.0 ok\r\n", "");
    CHECK_EQ_INT(s.state, SMTP_S_RCPT);
    STEP(&s, "250 2.1.5 ok\r\n35", "");
    STEP(&s, "4 go\r\n", BODY);
    STEP(&s, "250 2.0.0 three\r\n", "");
    CHECK_EQ_INT(f.n_done, 3);
    for (int i = 0; i < 3; i++)
        CHECK_EQ_INT(f.res[i].outcome, SMTP_OUT_OK);
    CHECK_EQ_STR(f.res[2].reply, "2.0.0 three");
    CHECK_EQ_INT(s.n_msgs, 3);
    CHECK_EQ_INT(s.state, SMTP_S_READY);
    check_exactly_once(&f);
    smtp_session_free(&s);
}

static void test_helo_fallback(void)
{
    struct fake f;
    struct smtp_session s;
    fake_init(&f, 1);
    start(&s, &f, 0, "502 5.5.2 command not recognized\r\n");
    CHECK_EQ_STR(sent(&s), "HELO mta.test\r\n");
    CHECK_EQ_INT(s.state, SMTP_S_HELO);
    STEP(&s, "250 mx.y.test\r\n", MAIL_A);
    CHECK(!s.caps.pipelining && !s.caps.size);
    STEP(&s, "250 ok\r\n", RCPT(0));
    STEP(&s, "250 ok\r\n", "DATA\r\n");
    STEP(&s, "354 go\r\n", BODY);
    STEP(&s, "250 ok\r\n", "");
    CHECK_EQ_INT(f.res[0].outcome, SMTP_OUT_OK);
    check_exactly_once(&f);
    smtp_session_free(&s);

    /* HELO refused too: QUIT, error at stage EHLO, nothing pulled. */
    fake_init(&f, 1);
    start(&s, &f, 0, "502 no\r\n");
    CHECK_EQ_STR(sent(&s), "HELO mta.test\r\n");
    STEP(&s, "550 5.7.1 not you\r\n", "QUIT\r\n");
    CHECK(s.has_error);
    CHECK_EQ_INT(s.error.stage, SMTP_STAGE_EHLO);
    CHECK_EQ_INT(s.error.code, 550);
    CHECK_EQ_INT(s.error.outcome, SMTP_OUT_PERMFAIL);
    CHECK(!s.ever_ready);
    CHECK_EQ_INT(feed(&s, "221 bye\r\n"), -ECONNREFUSED);
    CHECK(smtp_session_is_closed(&s));
    CHECK_EQ_INT(f.n_pulls, 0);
    smtp_session_free(&s);
}

static void test_banner_554(void)
{
    struct fake f;
    struct smtp_session s;
    fake_init(&f, 1);
    smtp_session_init(&s, &fake_ops, &f, "mta.test", &tmo, 0, NOW);
    STEP(&s, "554 5.7.1 mx.y.test no SMTP service here\r\n", "QUIT\r\n");
    CHECK_EQ_INT(s.state, SMTP_S_QUIT);
    CHECK(s.has_error);
    CHECK_EQ_INT(s.error.outcome, SMTP_OUT_PERMFAIL);
    CHECK_EQ_INT(s.error.stage, SMTP_STAGE_BANNER);
    CHECK_EQ_INT(s.error.code, 554);
    CHECK_EQ_STR(s.error.enhanced, "5.7.1");
    CHECK_EQ_STR(s.error.reply, "5.7.1 mx.y.test no SMTP service here");
    CHECK(!s.ever_ready);
    /* The peer closes without 221: still a clean end of our QUIT, and the
     * banner error stays the recorded cause. */
    smtp_session_fail(&s, -HERR_CLOSED, NULL);
    CHECK(smtp_session_is_closed(&s));
    CHECK_EQ_INT(s.error.code, 554);
    CHECK_EQ_INT(f.n_pulls, 0);
    smtp_session_free(&s);
}

static void test_rcpt_550_pipelined(void)
{
    struct fake f;
    struct smtp_session s;
    fake_init(&f, 3);
    start(&s, &f, 0, EHLO_PIPE);
    CHECK_EQ_STR(sent(&s), GROUP(0));
    STEP(&s, "250 2.1.0 ok\r\n550-5.1.1 no such user\r\n550 5.1.1 try again never\r\n", "");
    /* The first failure decides at once; the DATA reply is still owed. */
    CHECK_EQ_INT(f.done[0], 1);
    CHECK_EQ_INT(f.res[0].outcome, SMTP_OUT_PERMFAIL);
    CHECK_EQ_INT(f.res[0].stage, SMTP_STAGE_RCPT);
    CHECK_EQ_INT(f.res[0].code, 550);
    CHECK_EQ_STR(f.res[0].enhanced, "5.1.1");
    CHECK_EQ_STR(f.res[0].reply, "5.1.1 no such user; 5.1.1 try again never");
    CHECK_EQ_INT(s.state, SMTP_S_DATA);
    STEP(&s, "554 5.5.1 no valid recipients\r\n", "RSET\r\n");
    CHECK_EQ_INT(f.res[0].code, 550);
    STEP(&s, "250 2.0.0 ok\r\n", GROUP(1));
    /* This time DATA is accepted although RCPT failed: an empty message
     * closes the transaction, its reply is read, then RSET. */
    STEP(&s, "250 ok\r\n450 4.2.0 greylisted\r\n354 go\r\n", ".\r\n");
    CHECK_EQ_INT(f.res[1].outcome, SMTP_OUT_TEMPFAIL);
    CHECK_EQ_INT(f.res[1].stage, SMTP_STAGE_RCPT);
    STEP(&s, "554 5.5.1 no recipients\r\n", "RSET\r\n");
    STEP(&s, "250 ok\r\n", GROUP(2));
    STEP(&s, "250 ok\r\n250 ok\r\n354 go\r\n", BODY);
    STEP(&s, "250 2.0.0 queued\r\n", "");
    CHECK_EQ_INT(f.res[2].outcome, SMTP_OUT_OK);
    CHECK_EQ_INT(f.n_done, 3);
    CHECK_EQ_INT(s.n_msgs, 3);
    check_exactly_once(&f);
    smtp_session_free(&s);
}

static void test_mail_fail_plain(void)
{
    struct fake f;
    struct smtp_session s;
    fake_init(&f, 2);
    start(&s, &f, 0, "250 mx\r\n");
    CHECK_EQ_STR(sent(&s), MAIL_A);
    STEP(&s, "451 4.3.0 try later\r\n", "RSET\r\n");
    CHECK_EQ_INT(f.res[0].outcome, SMTP_OUT_TEMPFAIL);
    CHECK_EQ_INT(f.res[0].stage, SMTP_STAGE_MAIL);
    STEP(&s, "250 ok\r\n", MAIL_A);
    STEP(&s, "250 ok\r\n", RCPT(1));
    STEP(&s, "250 ok\r\n", "DATA\r\n");
    STEP(&s, "554 5.3.0 no\r\n", "RSET\r\n");
    CHECK_EQ_INT(f.res[1].outcome, SMTP_OUT_PERMFAIL);
    CHECK_EQ_INT(f.res[1].stage, SMTP_STAGE_DATA);
    STEP(&s, "250 ok\r\n", "");
    CHECK_EQ_INT(s.state, SMTP_S_READY);
    check_exactly_once(&f);
    smtp_session_free(&s);
}

static void test_451_end_of_data(void)
{
    struct fake f;
    struct smtp_session s;
    fake_init(&f, 2);
    start(&s, &f, 0, EHLO_PIPE);
    CHECK_EQ_STR(sent(&s), GROUP(0));
    STEP(&s, "250 ok\r\n250 ok\r\n354 go\r\n", BODY);
    STEP(&s, "451 4.7.1 Please try again later\r\n", "RSET\r\n");
    CHECK_EQ_INT(f.res[0].outcome, SMTP_OUT_TEMPFAIL);
    CHECK_EQ_INT(f.res[0].stage, SMTP_STAGE_BODY);
    CHECK_EQ_INT(f.res[0].code, 451);
    CHECK_EQ_STR(f.res[0].enhanced, "4.7.1");
    STEP(&s, "250 ok\r\n", GROUP(1));
    STEP(&s, "250 ok\r\n250 ok\r\n354 go\r\n", BODY);
    STEP(&s, "250 ok\r\n", "");
    CHECK_EQ_INT(f.res[1].outcome, SMTP_OUT_OK);
    check_exactly_once(&f);
    smtp_session_free(&s);
}

static void test_421(void)
{
    struct fake f;
    struct smtp_session s;
    fake_init(&f, 2);
    start(&s, &f, 0, "250 mx\r\n");
    CHECK_EQ_STR(sent(&s), MAIL_A);
    STEP(&s, "250 ok\r\n", RCPT(0));
    CHECK_EQ_INT(feed(&s, "421 4.7.0 too many errors, closing\r\n"), -HERR_CLOSED);
    CHECK_EQ_STR(sent(&s), ""); /* no QUIT into a closing connection */
    CHECK(smtp_session_is_closed(&s));
    CHECK_EQ_INT(f.res[0].outcome, SMTP_OUT_TEMPFAIL);
    CHECK_EQ_INT(f.res[0].stage, SMTP_STAGE_RCPT);
    CHECK_EQ_INT(f.res[0].code, 421);
    CHECK(s.has_error);
    CHECK_EQ_INT(s.error.code, 421);
    CHECK(s.ever_ready);
    CHECK_EQ_INT(f.next, 1); /* the second message was never handed out */
    check_exactly_once(&f);
    smtp_session_free(&s);

    /* 421 on an idle connection (server's idle timeout): no message, error. */
    fake_init(&f, 0);
    start(&s, &f, 0, "250 mx\r\n");
    CHECK_EQ_INT(s.state, SMTP_S_READY);
    CHECK_EQ_INT(feed(&s, "421 4.4.2 idle timeout\r\n"), -HERR_CLOSED);
    CHECK(smtp_session_is_closed(&s));
    CHECK_EQ_INT(s.error.stage, SMTP_STAGE_IDLE);
    smtp_session_free(&s);
}

static void test_fail_mid_body(void)
{
    struct fake f;
    struct smtp_session s;
    fake_init(&f, 2);
    start(&s, &f, 0, EHLO_PIPE);
    CHECK_EQ_STR(sent(&s), GROUP(0));
    STEP(&s, "250 ok\r\n250 ok\r\n354 go\r\n", BODY);
    /* The whole body went out, then the connection dropped: deferred. */
    smtp_session_fail(&s, -ECONNRESET, "connection reset by peer");
    CHECK(smtp_session_is_closed(&s));
    CHECK_EQ_INT(f.res[0].outcome, SMTP_OUT_NETFAIL);
    CHECK_EQ_INT(f.res[0].stage, SMTP_STAGE_BODY);
    CHECK_EQ_INT(f.res[0].code, 0);
    CHECK_EQ_STR(f.res[0].reply, "connection reset by peer");
    CHECK(s.has_error);
    CHECK_EQ_INT(s.err, -ECONNRESET);
    CHECK_EQ_INT(s.deadline_ms, 0);
    /* Idempotent, and later bytes are ignored. */
    smtp_session_fail(&s, -HERR_TIMEOUT, "again");
    CHECK_EQ_INT(feed(&s, "250 ok\r\n"), -ECONNRESET);
    CHECK_EQ_INT(f.done[0], 1);
    check_exactly_once(&f);
    smtp_session_free(&s);

    /* Banner timeout: no message, error NETFAIL at BANNER. */
    fake_init(&f, 1);
    smtp_session_init(&s, &fake_ops, &f, "mta.test", &tmo, 0, NOW);
    smtp_session_fail(&s, -HERR_TIMEOUT, "timeout waiting for banner");
    CHECK_EQ_INT(s.error.outcome, SMTP_OUT_NETFAIL);
    CHECK_EQ_INT(s.error.stage, SMTP_STAGE_BANNER);
    CHECK_EQ_INT(f.n_pulls, 0);
    smtp_session_free(&s);

    /* Freeing a session with a message in flight still reports it. */
    fake_init(&f, 1);
    start(&s, &f, 0, "250 mx\r\n");
    CHECK_EQ_STR(sent(&s), MAIL_A);
    smtp_session_free(&s);
    CHECK_EQ_INT(f.res[0].outcome, SMTP_OUT_NETFAIL);
    CHECK_EQ_INT(f.res[0].stage, SMTP_STAGE_MAIL);
    check_exactly_once(&f);
}

static void test_protocol_violations(void)
{
    struct fake f;
    struct smtp_session s;

    /* Banner and a reply to EHLO in one buffer: EHLO was not sent yet. */
    fake_init(&f, 1);
    smtp_session_init(&s, &fake_ops, &f, "mta.test", &tmo, 0, NOW);
    CHECK_EQ_INT(feed(&s, "220 hi\r\n250 early\r\n"), -HERR_PROTOCOL);
    CHECK(smtp_session_is_closed(&s));
    CHECK_EQ_INT(s.error.outcome, SMTP_OUT_NETFAIL);
    CHECK(strncmp(s.error.reply, "protocol violation", 18) == 0);
    smtp_session_free(&s);

    /* Bytes while READY. */
    fake_init(&f, 0);
    start(&s, &f, 0, "250 mx\r\n");
    CHECK_EQ_INT(feed(&s, "250 unsolicited\r\n"), -HERR_PROTOCOL);
    CHECK(smtp_session_is_closed(&s));
    smtp_session_free(&s);

    /* 354 to MAIL: impossible class; message NETFAIL at MAIL. */
    fake_init(&f, 2);
    start(&s, &f, 0, "250 mx\r\n");
    CHECK_EQ_STR(sent(&s), MAIL_A);
    CHECK_EQ_INT(feed(&s, "354 go\r\n"), -HERR_PROTOCOL);
    CHECK_EQ_INT(f.res[0].outcome, SMTP_OUT_NETFAIL);
    CHECK_EQ_INT(f.res[0].stage, SMTP_STAGE_MAIL);
    CHECK_EQ_STR(f.res[0].reply, "protocol violation: unexpected reply to MAIL (got 354 go)");
    CHECK_EQ_STR(sent(&s), "");
    check_exactly_once(&f);
    smtp_session_free(&s);

    /* Garbage in the middle of a pipelined group. */
    fake_init(&f, 1);
    start(&s, &f, 0, EHLO_PIPE);
    CHECK_EQ_STR(sent(&s), GROUP(0));
    CHECK_EQ_INT(feed(&s, "250 ok\r\nHTTP/1.0 200 OK\r\n"), -HERR_PROTOCOL);
    CHECK_EQ_INT(f.res[0].outcome, SMTP_OUT_NETFAIL);
    CHECK_EQ_INT(f.res[0].stage, SMTP_STAGE_RCPT);
    CHECK_EQ_STR(f.res[0].reply, "protocol violation: malformed reply");
    check_exactly_once(&f);
    smtp_session_free(&s);

    /* A reply while the body is still unsent in out (not 421). */
    fake_init(&f, 1);
    start(&s, &f, 0, "250 mx\r\n");
    STEP(&s, "", MAIL_A);
    STEP(&s, "250 ok\r\n", RCPT(0));
    STEP(&s, "250 ok\r\n", "DATA\r\n");
    CHECK_EQ_INT(feed(&s, "354 go\r\n250 too early\r\n"), -HERR_PROTOCOL);
    CHECK_EQ_INT(f.res[0].outcome, SMTP_OUT_NETFAIL);
    CHECK_EQ_INT(f.res[0].stage, SMTP_STAGE_BODY);
    smtp_session_free(&s);
}

static void test_local_refusals(void)
{
    struct fake f;
    struct smtp_session s;
    fake_init(&f, 4);
    f.msgs[1].needs_smtputf8 = true;
    f.msgs[1].data = ".\r\n"; /* under the SIZE limit */
    f.msgs[1].data_len = 3;
    f.msgs[2].rcpt = "evil@y.test>\r\nRCPT TO:<other@z.test";
    static const char smuggled[] = "a\r\n.\r\nMAIL FROM:<x>\r\n\r\n.\r\n";
    f.msgs[3].data = smuggled;
    f.msgs[3].data_len = strlen(smuggled);
    start(&s, &f, 0, "250-mx\r\n250-PIPELINING\r\n250 SIZE 20\r\n");
    /* Nothing was sent; each message was refused locally in one pull loop. */
    CHECK_EQ_STR(sent(&s), "");
    CHECK_EQ_INT(f.n_done, 4);
    CHECK_EQ_INT(f.res[0].outcome, SMTP_OUT_PERMFAIL);
    CHECK_EQ_INT(f.res[0].code, 552);
    CHECK_EQ_STR(f.res[0].enhanced, "5.3.4");
    CHECK_EQ_STR(f.res[0].reply, "message size 22 exceeds the server's SIZE limit 20");
    CHECK_EQ_INT(f.res[1].code, 553);
    CHECK_EQ_STR(f.res[1].enhanced, "5.6.7");
    CHECK_EQ_INT(f.res[2].outcome, SMTP_OUT_PERMFAIL);
    CHECK_EQ_INT(f.res[2].stage, SMTP_STAGE_RCPT);
    CHECK_EQ_INT(f.res[3].outcome, SMTP_OUT_PERMFAIL);
    CHECK_EQ_INT(f.res[3].stage, SMTP_STAGE_DATA);
    CHECK_EQ_INT(s.state, SMTP_S_READY);
    CHECK_EQ_INT(s.n_msgs, 0);
    check_exactly_once(&f);
    smtp_session_free(&s);

    /* SMTPUTF8 offered: the parameter goes on MAIL FROM. */
    fake_init(&f, 1);
    f.msgs[0].needs_smtputf8 = true;
    f.msgs[0].rcpt = "j\xc3\xb6rg@y.test";
    start(&s, &f, 0, "250-mx\r\n250 SMTPUTF8\r\n");
    CHECK_EQ_STR(sent(&s), "MAIL FROM:<a@x.test> SMTPUTF8\r\n");
    STEP(&s, "250 ok\r\n", "RCPT TO:<j\xc3\xb6rg@y.test>\r\n");
    smtp_session_free(&s);
    CHECK_EQ_INT(f.res[0].outcome, SMTP_OUT_NETFAIL);
}

static void test_max_msgs(void)
{
    struct fake f;
    struct smtp_session s;
    fake_init(&f, 3);
    start(&s, &f, 2, EHLO_PIPE);
    CHECK_EQ_STR(sent(&s), GROUP(0));
    STEP(&s, "250 ok\r\n250 ok\r\n354 go\r\n", BODY);
    STEP(&s, "250 ok\r\n", GROUP(1));
    STEP(&s, "250 ok\r\n250 ok\r\n354 go\r\n", BODY);
    STEP(&s, "250 ok\r\n", "QUIT\r\n");
    CHECK_EQ_INT(f.next, 2);
    CHECK_EQ_INT(s.state, SMTP_S_QUIT);
    CHECK_EQ_INT(feed(&s, "221 bye\r\n"), 0);
    CHECK(smtp_session_is_closed(&s));
    CHECK(!s.has_error);
    check_exactly_once(&f);
    smtp_session_free(&s);

    /* quit requested mid-transaction: QUIT after the message, no RSET. */
    fake_init(&f, 2);
    start(&s, &f, 0, EHLO_PIPE);
    CHECK_EQ_STR(sent(&s), GROUP(0));
    smtp_session_quit(&s, NOW);
    CHECK_EQ_STR(sent(&s), "");
    STEP(&s, "250 ok\r\n550 no\r\n554 no\r\n", "QUIT\r\n");
    CHECK_EQ_INT(feed(&s, "221 bye\r\n"), 0);
    check_exactly_once(&f);
    smtp_session_free(&s);
}

/* The same pipelined conversation, one server byte at a time. */
static void test_byte_at_a_time(void)
{
    static const char *const server[] = {
        "220-mx.y.test ESMTP\r\n220 welcome\r\n",
        EHLO_PIPE,
        "250 2.1.0 ok\r\n250 2.1.5 ok\r\n354 go\r\n",
        "250 2.0.0 one\r\n",
        "250 ok\r\n250 ok\r\n354 go\r\n",
        "250 2.0.0 two\r\n",
        "221 bye\r\n",
    };
    static const char expect[] = "EHLO mta.test\r\n" GROUP(0) BODY GROUP(1) BODY "QUIT\r\n";
    struct fake f;
    struct smtp_session s;
    fake_init(&f, 2);
    smtp_session_init(&s, &fake_ops, &f, "mta.test", &tmo, 2, NOW);
    struct hbuf wire;
    hbuf_init(&wire);
    for (size_t i = 0; i < HERALD_ARRAY_LEN(server); i++) {
        for (const char *p = server[i]; *p; p++) {
            CHECK_EQ_INT(smtp_session_recv(&s, p, 1, NOW), 0);
            hbuf_append(&wire, s.out.data ? s.out.data : "", s.out.len);
            hbuf_consume(&s.out, s.out.len);
        }
    }
    CHECK_EQ_STR(wire.data, expect);
    CHECK(smtp_session_is_closed(&s));
    CHECK(!s.has_error);
    CHECK_EQ_INT(f.res[0].outcome, SMTP_OUT_OK);
    CHECK_EQ_INT(f.res[1].outcome, SMTP_OUT_OK);
    CHECK_EQ_STR(f.res[1].reply, "2.0.0 two");
    check_exactly_once(&f);
    hbuf_free(&wire);
    smtp_session_free(&s);
}

/* A message handed out while idle, via kick. */
static void test_kick(void)
{
    struct fake f;
    struct smtp_session s;
    fake_init(&f, 1);
    f.n_msgs = 0;
    start(&s, &f, 0, "250 mx\r\n");
    CHECK_EQ_STR(sent(&s), "");
    CHECK(smtp_session_is_idle(&s));
    f.n_msgs = 1;
    smtp_session_kick(&s, NOW + 5);
    CHECK_EQ_STR(sent(&s), MAIL_A);
    CHECK_EQ_INT(s.deadline_ms, NOW + 5 + tmo.command_ms);
    smtp_session_free(&s);
    check_exactly_once(&f);
}

/* Start a session with a TLS mode, whether that TLS verifies the
 * certificate, and optional credentials, up to EHLO sent. */
static void start_tls_sec(struct smtp_session *s, struct fake *f, enum smtp_tls_mode mode,
                          bool verifies, const struct smtp_auth *auth)
{
    smtp_session_init(s, &fake_ops, f, "mta.test", &tmo, 0, NOW);
    smtp_session_set_security(s, mode, verifies, auth);
    STEP(s, "220 mx.y.test ESMTP\r\n", "EHLO mta.test\r\n");
}

static void start_sec(struct smtp_session *s, struct fake *f, enum smtp_tls_mode mode,
                      const struct smtp_auth *auth)
{
    start_tls_sec(s, f, mode, true, auth);
}

static void test_starttls(void)
{
    struct fake f;
    struct smtp_session s;
    fake_init(&f, 1);
    start_sec(&s, &f, SMTP_TLS_TRY, NULL);
    STEP(&s, "250-mx.y.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n", "STARTTLS\r\n");
    CHECK_EQ_INT(s.state, SMTP_S_STARTTLS);
    feed(&s, "220 2.0.0 Ready to start TLS\r\n");
    CHECK(smtp_session_wants_tls(&s));
    CHECK_EQ_STR(sent(&s), "");
    CHECK_EQ_INT(f.n_pulls, 0);
    smtp_session_tls_done(&s, 0, NULL, NOW);
    CHECK(s.tls_active);
    CHECK(!s.caps.pipelining); /* forgotten until the new EHLO says so */
    CHECK_EQ_STR(sent(&s), "EHLO mta.test\r\n");
    STEP(&s, "250-mx.y.test\r\n250 PIPELINING\r\n",
         MAIL_A RCPT(0) "DATA\r\n"); /* no second STARTTLS */
    smtp_session_free(&s);
    check_exactly_once(&f);
}

static void test_starttls_injection(void)
{
    /* A command reply smuggled in the same packet as the 220 to STARTTLS
     * would otherwise be read as if it came over TLS. */
    struct fake f;
    struct smtp_session s;
    fake_init(&f, 1);
    start_sec(&s, &f, SMTP_TLS_TRY, NULL);
    STEP(&s, "250-mx.y.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n", "STARTTLS\r\n");
    feed(&s, "220 2.0.0 Ready\r\n250 2.1.0 injected\r\n");
    CHECK(smtp_session_is_closed(&s));
    CHECK(s.has_error);
    CHECK(strstr(s.error.reply, "after the reply to STARTTLS") != NULL);
    CHECK_EQ_INT(f.n_pulls, 0);
    smtp_session_free(&s);
}

static void test_starttls_policies(void)
{
    struct fake f;
    struct smtp_session s;
    /* Required but not offered: nothing is sent, the session ends with stage tls. */
    fake_init(&f, 1);
    start_sec(&s, &f, SMTP_TLS_MUST, NULL);
    STEP(&s, "250-mx.y.test\r\n250 8BITMIME\r\n", "QUIT\r\n");
    CHECK(s.has_error);
    CHECK_EQ_INT(s.error.stage, SMTP_STAGE_TLS);
    CHECK_EQ_INT(s.error.outcome, SMTP_OUT_TEMPFAIL);
    CHECK(strstr(s.error.reply, "STARTTLS") != NULL);
    CHECK(!s.ever_ready);
    CHECK_EQ_INT(f.n_pulls, 0);
    smtp_session_free(&s);

    /* Opportunistic, offered but refused: carry on in plaintext. */
    fake_init(&f, 1);
    start_sec(&s, &f, SMTP_TLS_TRY, NULL);
    STEP(&s, "250-mx.y.test\r\n250 STARTTLS\r\n", "STARTTLS\r\n");
    STEP(&s, "454 4.7.0 TLS not available\r\n", MAIL_A);
    CHECK(!s.tls_active && !s.has_error);
    smtp_session_free(&s);
    check_exactly_once(&f);

    /* Required and refused: the server's reply is the reason. */
    fake_init(&f, 1);
    start_sec(&s, &f, SMTP_TLS_MUST, NULL);
    STEP(&s, "250-mx.y.test\r\n250 STARTTLS\r\n", "STARTTLS\r\n");
    STEP(&s, "454 4.7.0 TLS not available\r\n", "QUIT\r\n");
    CHECK_EQ_INT(s.error.stage, SMTP_STAGE_TLS);
    CHECK_EQ_INT(s.error.code, 454);
    smtp_session_free(&s);

    /* Off: STARTTLS offered but never used. */
    fake_init(&f, 1);
    start_sec(&s, &f, SMTP_TLS_OFF, NULL);
    STEP(&s, "250-mx.y.test\r\n250 STARTTLS\r\n", MAIL_A);
    smtp_session_free(&s);
    check_exactly_once(&f);

    /* Plaintext riding on the 220: refused, never treated as a reply. */
    fake_init(&f, 1);
    start_sec(&s, &f, SMTP_TLS_TRY, NULL);
    STEP(&s, "250-mx.y.test\r\n250 STARTTLS\r\n", "STARTTLS\r\n");
    int rc = feed(&s, "220 go\r\n250 injected\r\n");
    CHECK(rc < 0);
    CHECK(smtp_session_is_closed(&s));
    CHECK(strstr(s.error.reply, "STARTTLS") != NULL);
    smtp_session_free(&s);

    /* Handshake failure: stage tls, closed without QUIT. */
    fake_init(&f, 1);
    start_sec(&s, &f, SMTP_TLS_TRY, NULL);
    STEP(&s, "250-mx.y.test\r\n250 STARTTLS\r\n", "STARTTLS\r\n");
    feed(&s, "220 ready\r\n");
    smtp_session_tls_done(&s, -EPROTO, "certificate has expired", NOW);
    CHECK(smtp_session_is_closed(&s));
    CHECK_EQ_INT(s.error.stage, SMTP_STAGE_TLS);
    CHECK(strstr(s.error.reply, "certificate has expired") != NULL);
    CHECK_EQ_STR(sent(&s), "");
    smtp_session_free(&s);
    CHECK_EQ_INT(f.n_done, 0);
}

static void test_auth(void)
{
    struct fake f;
    struct smtp_session s;
    const struct smtp_auth cred = {.user = "u", .pass = "p"};
    /* PLAIN with the initial response, after TLS. */
    fake_init(&f, 1);
    start_sec(&s, &f, SMTP_TLS_ACTIVE, &cred);
    STEP(&s, "250-mx.y.test\r\n250 AUTH LOGIN PLAIN\r\n", "AUTH PLAIN AHUAcA==\r\n");
    CHECK_EQ_INT(s.state, SMTP_S_AUTH);
    STEP(&s, "235 2.7.0 Authentication successful\r\n", MAIL_A);
    CHECK(s.authenticated);
    smtp_session_free(&s);
    check_exactly_once(&f);

    /* LOGIN when PLAIN is not offered. */
    fake_init(&f, 1);
    start_sec(&s, &f, SMTP_TLS_ACTIVE, &cred);
    STEP(&s, "250-mx.y.test\r\n250 AUTH=LOGIN\r\n", "AUTH LOGIN\r\n");
    STEP(&s, "334 VXNlcm5hbWU6\r\n", "dQ==\r\n");
    STEP(&s, "334 UGFzc3dvcmQ6\r\n", "cA==\r\n");
    STEP(&s, "235 ok\r\n", MAIL_A);
    smtp_session_free(&s);
    check_exactly_once(&f);

    /* Wrong password: deferred with the server's words, stage auth. */
    fake_init(&f, 1);
    start_sec(&s, &f, SMTP_TLS_ACTIVE, &cred);
    STEP(&s, "250-mx.y.test\r\n250 AUTH PLAIN\r\n", "AUTH PLAIN AHUAcA==\r\n");
    STEP(&s, "535 5.7.8 Authentication credentials invalid\r\n", "QUIT\r\n");
    CHECK_EQ_INT(s.error.stage, SMTP_STAGE_AUTH);
    CHECK_EQ_INT(s.error.outcome, SMTP_OUT_TEMPFAIL);
    CHECK_EQ_INT(s.error.code, 535);
    CHECK(strstr(s.error.reply, "credentials invalid") != NULL);
    CHECK_EQ_INT(f.n_pulls, 0);
    smtp_session_free(&s);

    /* No TLS: credentials are not sent unless allowed. */
    fake_init(&f, 1);
    start_sec(&s, &f, SMTP_TLS_TRY, &cred);
    STEP(&s, "250-mx.y.test\r\n250 AUTH PLAIN\r\n", "QUIT\r\n");
    CHECK_EQ_INT(s.error.stage, SMTP_STAGE_AUTH);
    CHECK(strstr(s.error.reply, "not encrypted") != NULL);
    smtp_session_free(&s);
    const struct smtp_auth loose = {.user = "u", .pass = "p", .allow_plaintext = true};
    fake_init(&f, 1);
    start_sec(&s, &f, SMTP_TLS_TRY, &loose);
    STEP(&s, "250-mx.y.test\r\n250 AUTH PLAIN\r\n", "AUTH PLAIN AHUAcA==\r\n");
    smtp_session_free(&s);

    /* Encrypted but unverified (a man in the middle could present any
     * certificate): no AUTH line at all, after STARTTLS or implicit TLS,
     * unless the tenant opted out for a private relay. */
    fake_init(&f, 1);
    start_tls_sec(&s, &f, SMTP_TLS_ACTIVE, false, &cred);
    STEP(&s, "250-mx.y.test\r\n250 AUTH PLAIN\r\n", "QUIT\r\n");
    CHECK_EQ_INT(s.error.stage, SMTP_STAGE_AUTH);
    CHECK_EQ_INT(s.error.outcome, SMTP_OUT_TEMPFAIL);
    CHECK(strstr(s.error.reply, "not verified") != NULL);
    CHECK(!s.authenticated);
    smtp_session_free(&s);
    fake_init(&f, 1);
    start_tls_sec(&s, &f, SMTP_TLS_MUST, false, &cred);
    STEP(&s, "250-mx.y.test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n", "STARTTLS\r\n");
    STEP(&s, "220 go ahead\r\n", "");
    smtp_session_tls_done(&s, 0, NULL, NOW);
    CHECK_EQ_STR(sent(&s), "EHLO mta.test\r\n");
    STEP(&s, "250-mx.y.test\r\n250 AUTH PLAIN\r\n", "QUIT\r\n");
    CHECK(strstr(s.error.reply, "not verified") != NULL);
    smtp_session_free(&s);
    const struct smtp_auth skip = {.user = "u", .pass = "p", .allow_unverified = true};
    fake_init(&f, 1);
    start_tls_sec(&s, &f, SMTP_TLS_ACTIVE, false, &skip);
    STEP(&s, "250-mx.y.test\r\n250 AUTH PLAIN\r\n", "AUTH PLAIN AHUAcA==\r\n");
    smtp_session_free(&s);

    /* No mechanism we speak. */
    fake_init(&f, 1);
    start_sec(&s, &f, SMTP_TLS_ACTIVE, &cred);
    STEP(&s, "250-mx.y.test\r\n250 AUTH CRAM-MD5\r\n", "QUIT\r\n");
    CHECK(strstr(s.error.reply, "neither") != NULL);
    smtp_session_free(&s);
}

int main(void)
{
    test_plain_delivery();
    test_pipelined_three();
    test_helo_fallback();
    test_banner_554();
    test_rcpt_550_pipelined();
    test_mail_fail_plain();
    test_451_end_of_data();
    test_421();
    test_fail_mid_body();
    test_protocol_violations();
    test_local_refusals();
    test_max_msgs();
    test_byte_at_a_time();
    test_kick();
    test_starttls();
    test_starttls_injection();
    test_starttls_policies();
    test_auth();
    return check_report("test_session");
}
