/* fb_parse on the samples in tests/data/feedback/ (written for herald: a
 * Postfix DSN hard and delayed, Exim, qmail and sendmail-like text
 * bounces, Exchange- and Gmail-like DSNs, Yahoo-, JMRP- and AOL-like ARF
 * reports, an RFC 3834 auto-reply, a subject-only vacation message,
 * base64/QP parts, a DSN without its original, malformed ones) and on
 * hostile messages built here: giant headers, thousands of parts or
 * recipients, every prefix of a report. Each sample is loaded into a
 * buffer of exactly its size, so a read past the end shows under ASan. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "feedback/fb.h"
#include "herald/feedback.h"

#define T1 "aekjlp63ta3r3piaafitmcofrdkxhev2vsik6" /* clinic-7 job-42 attempt 1 */
#define T2 "ae6cxxkft45khcqaajitm4zl3ahw3cyso7are" /* clinic-7 job-43 attempt 2 */
#define T3 "agpgpcjvrzap7fqaafitk6a2xai7mi4stuz6y" /* dental.north r-9001 */

static char *load(const char *name, size_t *len)
{
    char path[256];
    snprintf(path, sizeof path, "tests/data/feedback/%s", name);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "cannot open %s (run from the source root)\n", path);
        check_failures++;
        *len = 0;
        return NULL;
    }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc(n > 0 ? (size_t)n : 1);
    *len = fread(b, 1, (size_t)n, f);
    fclose(f);
    return b;
}

static struct fb_report rep; /* ~9 KiB: not on the stack of each test */

static int parse_file(const char *name, const struct fb_envelope *env)
{
    size_t n;
    char *m = load(name, &n);
    if (!m) {
        memset(&rep, 0, sizeof rep);
        return -1;
    }
    int rc = fb_parse(m, n, env, &rep);
    free(m);
    return rc;
}

static int parse_mem(const char *s, size_t n, const struct fb_envelope *env)
{
    char *m = malloc(n ? n : 1);
    memcpy(m, s, n);
    int rc = fb_parse(m, n, env, &rep);
    free(m);
    return rc;
}

/* No field may hold a control byte: notes and logs take them as they are. */
static void check_clean(const char *s)
{
    for (; *s; s++)
        CHECK((unsigned char)*s >= 0x20 && *s != 0x7f);
}

static void check_report_clean(void)
{
    check_clean(rep.reporting_mta);
    check_clean(rep.arrival_date);
    check_clean(rep.orig_message_id);
    check_clean(rep.arf.user_agent);
    for (size_t i = 0; i < rep.n_rcpts; i++) {
        check_clean(rep.rcpts[i].diagnostic);
        check_clean(rep.rcpts[i].remote_mta);
    }
    CHECK(rep.n_rcpts <= FB_RCPTS_MAX);
    CHECK(rep.n_verp <= FB_VERP_KEEP);
}

static void test_postfix(void)
{
    CHECK_EQ_INT(parse_file("postfix_hard.eml", NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_DSN);
    CHECK_EQ_INT(rep.flags, 0);
    CHECK_EQ_STR(rep.reporting_mta, "mx1.receiver.test");
    CHECK_EQ_STR(rep.arrival_date, "Thu, 3 Dec 2026 09:14:05 +0000 (UTC)");
    CHECK_EQ_INT(rep.n_rcpts, 1);
    const struct fb_rcpt *r = &rep.rcpts[0];
    CHECK_EQ_INT(r->action, FB_ACTION_FAILED);
    CHECK_EQ_STR(r->status, "5.1.1");
    CHECK_EQ_STR(r->final_recipient, "nobody@receiver.test");
    CHECK_EQ_STR(r->original_recipient, "Nobody@receiver.test");
    CHECK_EQ_STR(r->remote_mta, "mbox.receiver.test");
    /* Unfolded: the continuation line joined with one space. */
    CHECK_EQ_STR(r->diagnostic, "550 5.1.1 <nobody@receiver.test>: Recipient address rejected: "
                                "User unknown in local recipient table");
    CHECK(fb_is_hard(r));
    CHECK(rep.has_original);
    CHECK_EQ_STR(rep.orig_message_id, "job-42.1764753245@clinic7.test");
    CHECK_EQ_STR(rep.orig_return_path, "b+" T1 "@bounce.herald.test");
    CHECK_EQ_STR(rep.orig_to, "nobody@receiver.test");
    CHECK_EQ_INT(rep.n_verp, 1);
    CHECK_EQ_STR(rep.verp[0], T1);
    CHECK_EQ_STR(rep.autoreply_mark, ""); /* it has Auto-Submitted, but it is a DSN */

    CHECK_EQ_INT(parse_file("postfix_delayed.eml", NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_DSN);
    CHECK_EQ_INT(rep.n_rcpts, 1);
    r = &rep.rcpts[0];
    CHECK_EQ_INT(r->action, FB_ACTION_DELAYED);
    CHECK_EQ_STR(r->status, "4.4.1");
    CHECK_EQ_STR(r->final_recipient, "slow@far.test");
    CHECK_EQ_STR(r->diagnostic, "connect to mx.far.test[203.0.113.9]:25: Connection timed out");
    CHECK(!fb_is_hard(r));
    CHECK(rep.has_original); /* text/rfc822-headers */
    CHECK_EQ_STR(rep.orig_message_id, "job-42.1764753245@clinic7.test");
    CHECK_EQ_STR(rep.orig_to, "slow@far.test");
    CHECK_EQ_STR(rep.verp[0], T1);
    check_report_clean();
}

/* The same report with CRLF line ends reads the same. */
static void test_crlf(void)
{
    size_t n;
    char *m = load("postfix_hard.eml", &n);
    if (!m) return;
    char *c = malloc(2 * n);
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (m[i] == '\n') c[o++] = '\r';
        c[o++] = m[i];
    }
    struct fb_report lf;
    CHECK_EQ_INT(fb_parse(m, n, NULL, &lf), 0);
    CHECK_EQ_INT(parse_mem(c, o, NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_DSN);
    CHECK_EQ_STR(rep.rcpts[0].diagnostic, lf.rcpts[0].diagnostic);
    CHECK_EQ_STR(rep.rcpts[0].final_recipient, "nobody@receiver.test");
    CHECK_EQ_STR(rep.orig_message_id, lf.orig_message_id);
    CHECK(memcmp(&rep, &lf, sizeof rep) == 0);

    /* Every prefix of the report: no crash, no read past the end, and
     * never more than the whole message yields. */
    for (size_t k = 0; k <= n; k++) {
        parse_mem(m, k, NULL);
        CHECK(rep.n_rcpts <= 1);
        if (k < 200) CHECK(rep.kind != FB_DSN || rep.n_rcpts == 0);
    }
    free(c);
    free(m);
}

static void test_text_bounces(void)
{
    CHECK_EQ_INT(parse_file("exim_text.eml", NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_BOUNCE_TEXT);
    CHECK_EQ_INT(rep.n_rcpts, 1);
    CHECK_EQ_STR(rep.rcpts[0].final_recipient, "gone@isp-customer.test");
    CHECK_EQ_STR(rep.rcpts[0].status, "5.1.1");
    CHECK_EQ_INT(rep.rcpts[0].action, FB_ACTION_FAILED);
    CHECK(fb_is_hard(&rep.rcpts[0]));
    CHECK_EQ_STR(rep.rcpts[0].diagnostic,
                 "550 5.1.1 <gone@isp-customer.test>: Recipient address rejected: User unknown");
    CHECK(rep.has_original);
    CHECK_EQ_STR(rep.orig_message_id, "job-43.1764753600@clinic7.test");
    CHECK_EQ_STR(rep.orig_return_path, "b+" T2 "@bounce.herald.test");
    CHECK_EQ_INT(rep.n_verp, 1);
    CHECK_EQ_STR(rep.verp[0], T2);

    CHECK_EQ_INT(parse_file("qmail_text.eml", NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_BOUNCE_TEXT);
    CHECK_EQ_STR(rep.rcpts[0].final_recipient, "nobody@oldhost.test");
    CHECK_EQ_STR(rep.rcpts[0].status, "5.1.1");
    CHECK_EQ_STR(rep.rcpts[0].diagnostic, "Sorry, no mailbox here by that name. (#5.1.1)");
    CHECK(fb_is_hard(&rep.rcpts[0]));
    CHECK_EQ_STR(rep.orig_message_id, "job-42.1764753245@clinic7.test");
    CHECK_EQ_STR(rep.orig_to, "nobody@oldhost.test");
    CHECK_EQ_STR(rep.verp[0], T1);

    /* sendmail-like: no known mark, but a null sender, a failed address
     * and an enhanced status code. */
    CHECK_EQ_INT(parse_file("generic_text.eml", NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_BOUNCE_TEXT);
    CHECK_EQ_STR(rep.rcpts[0].final_recipient, "full@legacy.test");
    CHECK_EQ_STR(rep.rcpts[0].status, "5.2.2");
    CHECK_EQ_STR(rep.rcpts[0].diagnostic, "550 5.2.2 <full@legacy.test>... User unknown");
    CHECK_EQ_STR(rep.orig_message_id, "job-43.1764753600@clinic7.test");
    CHECK_EQ_STR(rep.verp[0], T2);
    check_report_clean();

    /* The same body from an ordinary sender is not a bounce. */
    const char *fake = "From: someone@home.test\nSubject: about your mail\n\n"
                       "550 5.1.1 <victim@example.test>: I say this address is gone\n";
    CHECK_EQ_INT(parse_mem(fake, strlen(fake), NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_UNKNOWN);
    CHECK_EQ_INT(rep.n_rcpts, 0);
    /* ...unless the envelope says it came from the null sender. */
    struct fb_envelope env = {.mail_from = ""};
    CHECK_EQ_INT(parse_mem(fake, strlen(fake), &env), 0);
    CHECK_EQ_INT(rep.kind, FB_BOUNCE_TEXT);
    CHECK_EQ_STR(rep.rcpts[0].final_recipient, "victim@example.test");

    /* X-Failed-Recipients names the address when the prose names others
     * first. */
    const char *xfr = "From: Mail Delivery System <Mailer-Daemon@mx.test>\n"
                      "X-Failed-Recipients: right@dest.test, other@dest.test\n"
                      "Subject: Mail delivery failed\n\nYour mail for boss@corp.test via "
                      "alias@corp.test failed.\n550 5.7.1 rejected by policy\n";
    CHECK_EQ_INT(parse_mem(xfr, strlen(xfr), NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_BOUNCE_TEXT);
    CHECK_EQ_STR(rep.rcpts[0].final_recipient, "right@dest.test");
    CHECK_EQ_STR(rep.rcpts[0].status, "5.7.1");

    /* A temporary failure in prose is delayed, not failed. */
    const char *temp = "From: MAILER-DAEMON@relay.test\nSubject: Warning: could not send\n\n"
                       "Your message to <later@slow.test> has not yet been delivered.\n"
                       "451 4.3.0 Temporary lookup failure; will keep trying\n";
    CHECK_EQ_INT(parse_mem(temp, strlen(temp), NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_BOUNCE_TEXT);
    CHECK_EQ_INT(rep.rcpts[0].action, FB_ACTION_DELAYED);
    CHECK_EQ_STR(rep.rcpts[0].status, "4.3.0");
    CHECK(!fb_is_hard(&rep.rcpts[0]));
}

static void test_big_providers_dsn(void)
{
    CHECK_EQ_INT(parse_file("exchange_dsn.eml", NULL), 0); /* CRLF */
    CHECK_EQ_INT(rep.kind, FB_DSN);
    CHECK_EQ_STR(rep.reporting_mta, "AM9PR01MB1234.eurprd01.prod.outlook.test");
    CHECK_EQ_INT(rep.n_rcpts, 1);
    CHECK_EQ_STR(rep.rcpts[0].status, "5.1.10");
    CHECK_EQ_STR(rep.rcpts[0].final_recipient, "Missing.User@contoso.test");
    CHECK_EQ_STR(rep.rcpts[0].diagnostic, "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient "
                                          "not found by SMTP address lookup");
    CHECK(fb_is_hard(&rep.rcpts[0]));
    CHECK_EQ_STR(rep.orig_message_id, "r-9001.1764754800@dental-north.test");
    CHECK_EQ_STR(rep.orig_to, "Missing.User@contoso.test"); /* display name with a comma */
    CHECK_EQ_STR(rep.in_reply_to, "r-9001.1764754800@dental-north.test");
    /* The report's To: is upper case, the original's Return-Path lower:
     * one token. */
    CHECK_EQ_INT(rep.n_verp, 1);
    CHECK_EQ_STR(rep.verp[0], T3);

    CHECK_EQ_INT(parse_file("gmail_dsn.eml", NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_DSN);
    CHECK_EQ_STR(rep.reporting_mta, "googlemail.test");
    CHECK_EQ_STR(rep.rcpts[0].final_recipient, "no.such.person@gmail.test");
    CHECK_EQ_STR(rep.rcpts[0].status, "5.1.1");
    CHECK_EQ_STR(rep.rcpts[0].remote_mta, "gmail-smtp-in.l.google.test");
    CHECK(strncmp(rep.rcpts[0].diagnostic, "550-5.1.1 The email account", 27) == 0);
    CHECK(strlen(rep.rcpts[0].diagnostic) <= FB_DIAG_MAX);
    CHECK_EQ_STR(rep.orig_message_id, "job-42.1764753245@clinic7.test");
    CHECK_EQ_STR(rep.verp[0], T1);
    CHECK_EQ_INT(rep.flags, 0);
    check_report_clean();
}

static void test_arf(void)
{
    CHECK_EQ_INT(parse_file("arf_yahoo.eml", NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_ARF);
    CHECK_EQ_INT(rep.arf.feedback_type, FB_FEEDBACK_ABUSE);
    CHECK_EQ_STR(rep.arf.user_agent, "Yahoo!-Mail-Feedback/2.0");
    CHECK_EQ_STR(rep.arf.version, "0.1");
    CHECK_EQ_STR(rep.arf.original_mail_from, "b+" T1 "@bounce.herald.test");
    CHECK_EQ_STR(rep.arf.original_rcpt_to, "annoyed.reader@yahoo.test");
    CHECK_EQ_STR(rep.arf.arrival_date, "Thu, 3 Dec 2026 09:14:05 +0000"); /* Received-Date */
    CHECK_EQ_STR(rep.arf.source_ip, "198.51.100.7");
    CHECK_EQ_STR(rep.arf.reported_domain, "clinic7.test");
    CHECK_EQ_STR(rep.orig_message_id, "job-42.1764753245@clinic7.test");
    CHECK_EQ_STR(rep.orig_to, "annoyed.reader@yahoo.test");
    CHECK_EQ_INT(rep.n_rcpts, 0);
    CHECK_EQ_STR(rep.verp[0], T1);

    CHECK_EQ_INT(parse_file("arf_jmrp.eml", NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_ARF);
    CHECK_EQ_INT(rep.arf.feedback_type, FB_FEEDBACK_ABUSE);
    CHECK_EQ_STR(rep.arf.user_agent, "Microsoft Junk Mail Reporting Program");
    CHECK_EQ_STR(rep.arf.original_mail_from, "b+" T2 "@bounce.herald.test");
    CHECK_EQ_STR(rep.arf.original_rcpt_to, "someone@outlook.test");
    CHECK_EQ_STR(rep.arf.source_ip, "2001:db8:10::8");
    CHECK_EQ_STR(rep.arf.arrival_date, "Thu, 03 Dec 2026 09:55:00 -0800");
    CHECK_EQ_STR(rep.arf.reported_domain, "");
    CHECK(rep.has_original);
    CHECK_EQ_STR(rep.orig_message_id, "job-43.1764753600@clinic7.test");
    CHECK_EQ_STR(rep.orig_return_path, "b+" T2 "@bounce.herald.test"); /* no brackets */
    CHECK_EQ_INT(rep.n_verp, 1);
    CHECK_EQ_STR(rep.verp[0], T2);

    CHECK_EQ_INT(parse_file("arf_aol.eml", NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_ARF);
    CHECK_EQ_STR(rep.arf.user_agent, "AOL SComp");
    CHECK_EQ_STR(rep.arf.version, "1");
    CHECK_EQ_STR(rep.arf.original_mail_from, "b+" T3 "@bounce.herald.test");
    CHECK_EQ_STR(rep.arf.reported_domain, "dental-north.test");
    CHECK(rep.has_original); /* text/rfc822-headers */
    CHECK_EQ_STR(rep.orig_message_id, "r-9001.1764754800@dental-north.test");
    CHECK_EQ_STR(rep.verp[0], T3);
    check_report_clean();

    /* Feedback types, an unknown one, a bad Source-IP and domain. */
    static const struct {
        const char *v;
        enum fb_feedback_type t;
    } types[] = {
        {"abuse", FB_FEEDBACK_ABUSE},       {"Fraud", FB_FEEDBACK_FRAUD},
        {"virus", FB_FEEDBACK_VIRUS},       {"other", FB_FEEDBACK_OTHER},
        {"not-spam", FB_FEEDBACK_NOT_SPAM}, {"auth-failure", FB_FEEDBACK_AUTH_FAILURE},
        {"opt-out", FB_FEEDBACK_OTHER},     {"", FB_FEEDBACK_NONE},
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(types); i++) {
        char m[512];
        int n = snprintf(m, sizeof m,
                         "From: fbl@isp.test\nContent-Type: multipart/report; "
                         "report-type=feedback-report; boundary=x\n\n--x\n"
                         "Content-Type: message/feedback-report\n\nFeedback-Type: %s\n"
                         "Source-IP: 999.1.1.1\nReported-Domain: bad domain..test\n\n--x--\n",
                         types[i].v);
        CHECK_EQ_INT(parse_mem(m, (size_t)n, NULL), 0);
        CHECK_EQ_INT(rep.kind, FB_ARF);
        CHECK_EQ_INT(rep.arf.feedback_type, types[i].t);
        CHECK_EQ_STR(rep.arf.source_ip, "");
        CHECK_EQ_STR(rep.arf.reported_domain, "");
    }
}

static void test_autoreplies(void)
{
    CHECK_EQ_INT(parse_file("autoreply_rfc3834.eml", NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_AUTOREPLY);
    CHECK_EQ_STR(rep.autoreply_mark, "auto-submitted");
    CHECK_EQ_INT(rep.n_rcpts, 0);
    CHECK_EQ_STR(rep.in_reply_to, "job-42.1764753245@clinic7.test");
    CHECK(!rep.has_original);
    CHECK_EQ_STR(rep.verp[0], T1); /* from its To: */

    CHECK_EQ_INT(parse_file("vacation_subject.eml", NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_AUTOREPLY);
    CHECK_EQ_STR(rep.autoreply_mark, "subject");
    CHECK_EQ_INT(rep.n_verp, 0);

    CHECK_EQ_INT(parse_file("human_reply.eml", NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_UNKNOWN);
    CHECK_EQ_INT(rep.n_rcpts, 0);

    static const struct {
        const char *header, *mark;
    } marks[] = {
        {"X-Autoreply: yes", "x-autoreply"},
        {"X-Autorespond: Vacation", "x-autorespond"},
        {"Precedence: auto_reply", "precedence"},
        {"Subject: Out of Office: until Monday", "subject"},
        {"Subject: AUTO: away", "subject"},
        {"Auto-Submitted: auto-replied", "auto-submitted"},
        {"Auto-Submitted: no", NULL},
        {"Auto-Submitted: auto-generated", NULL},
        {"X-Autoreply: no", NULL},
        {"Precedence: bulk", NULL},
        {"Subject: Re: out of office supplies", NULL},
        {"Subject: =?UTF-8?Q?Automatische_Antwort:_Termin?=", "subject"},
        {"Subject: =?utf-8?B?UsOpcG9uc2UgYXV0b21hdGlxdWUgOiBSZW5kZXotdm91cw==?=", "subject"},
        {"Subject: =?utf-8?q?Automatic?= =?utf-8?q?_reply?=", "subject"},
        {"Subject: =?utf-8?q?Automatic?= reply", "subject"},
        {"Subject: =?utf-8?x?Automatic_reply?=", NULL},
        {"Subject: =?utf-8?q?Automatic_reply", NULL},
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(marks); i++) {
        char m[256];
        int n = snprintf(m, sizeof m, "From: a@b.test\n%s\n\nhello\n", marks[i].header);
        CHECK_EQ_INT(parse_mem(m, (size_t)n, NULL), 0);
        CHECK_EQ_INT(rep.kind, marks[i].mark ? FB_AUTOREPLY : FB_UNKNOWN);
        CHECK_EQ_STR(rep.autoreply_mark, marks[i].mark ? marks[i].mark : "");
    }
}

static void test_encoded_and_lost(void)
{
    CHECK_EQ_INT(parse_file("dsn_base64.eml", NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_DSN);
    CHECK_EQ_STR(rep.reporting_mta, "gw.encoded.test");
    CHECK_EQ_INT(rep.n_rcpts, 2);
    CHECK_EQ_STR(rep.rcpts[0].final_recipient, "quota@encoded.test");
    CHECK_EQ_STR(rep.rcpts[0].status, "5.2.2");
    CHECK_EQ_STR(rep.rcpts[0].remote_mta, "store.encoded.test");
    CHECK(fb_is_hard(&rep.rcpts[0]));
    CHECK_EQ_STR(rep.rcpts[1].final_recipient, "later@encoded.test");
    CHECK_EQ_INT(rep.rcpts[1].action, FB_ACTION_DELAYED);
    CHECK_EQ_STR(rep.rcpts[1].status, "4.2.2");
    CHECK(!fb_is_hard(&rep.rcpts[1]));
    CHECK_EQ_STR(rep.orig_message_id, "job-43.1764753600@clinic7.test");
    CHECK_EQ_STR(rep.orig_to, "quota@encoded.test");
    CHECK_EQ_STR(rep.verp[0], T2);

    /* The original is gone; the token is only in the envelope. */
    struct fb_envelope env = {.mail_from = "", .rcpt_to = "b+" T3 "@bounce.herald.test"};
    CHECK_EQ_INT(parse_file("dsn_no_original.eml", &env), 0);
    CHECK_EQ_INT(rep.kind, FB_DSN);
    CHECK(!rep.has_original);
    CHECK_EQ_STR(rep.orig_message_id, "");
    CHECK_EQ_INT(rep.n_rcpts, 1);
    CHECK_EQ_STR(rep.rcpts[0].final_recipient, "away@lossy.test");
    CHECK_EQ_STR(rep.rcpts[0].status, "5.1.2");
    CHECK_EQ_INT(rep.n_verp, 1);
    CHECK_EQ_STR(rep.verp[0], T3);
    CHECK_EQ_STR(rep.in_reply_to, "");
    /* Upper-cased by a relay on the way: the same token. */
    env.rcpt_to = "B+AGPGPCJVRZAP7FQAAFITK6A2XAI7MI4STUZ6Y@BOUNCE.HERALD.TEST";
    CHECK_EQ_INT(parse_file("dsn_no_original.eml", &env), 0);
    CHECK_EQ_STR(rep.verp[0], T3);
    /* No token anywhere. */
    CHECK_EQ_INT(parse_file("dsn_no_original.eml", NULL), 0);
    CHECK_EQ_INT(rep.n_verp, 0);

    /* The token herald may set as ENVID comes back bare. */
    const char *envid = "From: MAILER-DAEMON@x.test\nContent-Type: multipart/report; "
                        "report-type=delivery-status; boundary=e\n\n--e\nContent-Type: "
                        "message/delivery-status\n\nOriginal-Envelope-Id: " T2 "\n"
                        "Reporting-MTA: dns; x.test\n\nFinal-Recipient: rfc822; a@x.test\n"
                        "Action: failed\nStatus: 5.1.1\n\n--e--\n";
    CHECK_EQ_INT(parse_mem(envid, strlen(envid), NULL), 0);
    CHECK_EQ_INT(rep.n_verp, 1);
    CHECK_EQ_STR(rep.verp[0], T2);
}

/* The token a report carries maps back to the job that sent it. */
static void test_token_to_job(void)
{
    uint8_t secret[FB_SECRET_LEN];
    for (int i = 0; i < FB_SECRET_LEN; i++)
        secret[i] = (uint8_t)(i * 7 + 1);
    struct fb_keys keys;
    CHECK_EQ_INT(fb_keys_derive(secret, &keys), 0);
    CHECK_EQ_INT(parse_file("postfix_hard.eml", NULL), 0);
    uint64_t ref = 0;
    uint16_t attempt = 0, day = 0;
    CHECK_EQ_INT(
        fb_verp_decode(&keys, rep.verp[0], strlen(rep.verp[0]), 20790, 30, &ref, &attempt, &day),
        0);
    CHECK(ref == fb_job_ref("clinic-7", "job-42"));
    CHECK_EQ_INT(attempt, 1);
    CHECK_EQ_INT(day, 20790);
    CHECK_EQ_INT(parse_file("arf_aol.eml", NULL), 0);
    CHECK_EQ_INT(
        fb_verp_decode(&keys, rep.verp[0], strlen(rep.verp[0]), 20790, 30, &ref, NULL, NULL), 0);
    CHECK(ref == fb_job_ref("dental.north", "r-9001"));
}

static void test_malformed(void)
{
    CHECK_EQ_INT(parse_file("unterminated.eml", NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_DSN);
    CHECK(rep.flags & FB_F_MIME_BROKEN);
    CHECK_EQ_STR(rep.rcpts[0].final_recipient, "broken@cut.test");
    CHECK_EQ_STR(rep.rcpts[0].status, "5.0.0");
    CHECK_EQ_STR(rep.orig_message_id, "job-42.1764753245@clinic7.test");

    /* 1,000 levels: the walk stops at FB_DEPTH_MAX and says so. */
    CHECK_EQ_INT(parse_file("deep_nesting.eml", NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_UNKNOWN);
    CHECK(rep.flags & FB_F_LIMIT);
    CHECK_EQ_INT(rep.n_rcpts, 0);

    /* Message-IDs with blanks or stray brackets are not kept. */
    const char *ids = "From: MAILER-DAEMON@x.test\nIn-Reply-To: <c d@x.test>\n"
                      "Content-Type: multipart/report; report-type=delivery-status; "
                      "boundary=i\n\n--i\nContent-Type: text/rfc822-headers\n\n"
                      "Message-ID: <a<b@x.test>\nTo: t@x.test\n\n--i--\n";
    CHECK_EQ_INT(parse_mem(ids, strlen(ids), NULL), 0);
    CHECK(rep.has_original);
    CHECK_EQ_STR(rep.orig_to, "t@x.test");
    CHECK_EQ_STR(rep.orig_message_id, "");
    CHECK_EQ_STR(rep.in_reply_to, "");

    /* Not a message. */
    CHECK_EQ_INT(parse_mem("", 0, NULL), -HERR_MALFORMED);
    CHECK(rep.flags & FB_F_NO_HEADER);
    CHECK_EQ_INT(parse_mem("\nbody", 5, NULL), -HERR_MALFORMED);
    CHECK_EQ_INT(parse_mem(" folded: x\n", 11, NULL), -HERR_MALFORMED);
    CHECK_EQ_INT(parse_mem("no colon here\n", 14, NULL), -HERR_MALFORMED);
    CHECK_EQ_INT(fb_parse(NULL, 0, NULL, &rep), -HERR_MALFORMED);
    CHECK_EQ_INT(parse_mem("a:", 2, NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_UNKNOWN);

    /* A multipart without a boundary, and one whose boundary never opens. */
    const char *nob = "From: x@y.test\nContent-Type: multipart/report; "
                      "report-type=delivery-status\n\nbody\n";
    CHECK_EQ_INT(parse_mem(nob, strlen(nob), NULL), 0);
    CHECK_EQ_INT(rep.kind, FB_DSN);
    CHECK(rep.flags & FB_F_MIME_BROKEN);
    CHECK_EQ_INT(rep.n_rcpts, 0);
    const char *noopen = "From: x@y.test\nContent-Type: multipart/mixed; boundary=zz\n\n"
                         "--z\n--zzz\n--zz-x\nnothing here\n";
    CHECK_EQ_INT(parse_mem(noopen, strlen(noopen), NULL), 0);
    CHECK(rep.flags & FB_F_MIME_BROKEN);
}

static char *repeat(const char *head, const char *unit, size_t times, const char *tail, size_t *len)
{
    size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
    char *m = malloc(hl + ul * times + tl);
    memcpy(m, head, hl);
    for (size_t i = 0; i < times; i++)
        memcpy(m + hl + i * ul, unit, ul);
    memcpy(m + hl + ul * times, tail, tl);
    *len = hl + ul * times + tl;
    return m;
}

#define DSN_CT "Content-Type: multipart/report; report-type=delivery-status; boundary=g\n"
#define DSN_BODY                                                                                   \
    "\n--g\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; g.test\n\n"               \
    "Final-Recipient: rfc822; giant@g.test\nAction: failed\nStatus: 5.1.1\n\n--g--\n"

static void test_giant(void)
{
    size_t n;
    /* A 1 MiB Subject before Content-Type: the type is past what is read. */
    char *m = repeat("From: x@y.test\nSubject: ", "a", 1 << 20, "\n" DSN_CT DSN_BODY, &n);
    CHECK_EQ_INT(fb_parse(m, n, NULL, &rep), 0);
    CHECK_EQ_INT(rep.kind, FB_UNKNOWN);
    CHECK(rep.flags & FB_F_LIMIT);
    free(m);
    /* Content-Type first, then 100,000 fields: still a DSN, flagged. */
    m = repeat("From: x@y.test\n" DSN_CT, "X-Junk: 1\n", 100000, DSN_BODY, &n);
    CHECK_EQ_INT(fb_parse(m, n, NULL, &rep), 0);
    CHECK_EQ_INT(rep.kind, FB_DSN);
    CHECK(rep.flags & FB_F_LIMIT);
    CHECK_EQ_STR(rep.rcpts[0].final_recipient, "giant@g.test");
    free(m);
    /* One field folded over 200,000 lines, and a huge diagnostic. */
    m = repeat("From: x@y.test\n" DSN_CT "X-Folded: a", "\n b", 200000, DSN_BODY, &n);
    CHECK_EQ_INT(fb_parse(m, n, NULL, &rep), 0);
    CHECK_EQ_INT(rep.kind, FB_DSN);
    free(m);
    m = repeat("From: x@y.test\n" DSN_CT "\n--g\nContent-Type: message/delivery-status\n\n"
               "Reporting-MTA: dns; g.test\n\nFinal-Recipient: rfc822; a@g.test\n"
               "Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 \x01\x1b[31m",
               "long words\n ", 10000, "end\n\n--g--\n", &n);
    CHECK_EQ_INT(fb_parse(m, n, NULL, &rep), 0);
    CHECK(rep.flags & FB_F_TRUNCATED);
    CHECK(strlen(rep.rcpts[0].diagnostic) <= FB_DIAG_MAX);
    CHECK(strncmp(rep.rcpts[0].diagnostic, "550 [31mlong words long", 23) == 0);
    check_report_clean();
    free(m);
    /* 20 recipients: 8 kept, the rest counted as more. */
    m = repeat("From: x@y.test\n" DSN_CT "\n--g\nContent-Type: message/delivery-status\n\n"
               "Reporting-MTA: dns; g.test\n",
               "\nFinal-Recipient: rfc822; r@g.test\nAction: failed\nStatus: 5.1.1\n", 20,
               "\n--g--\n", &n);
    CHECK_EQ_INT(fb_parse(m, n, NULL, &rep), 0);
    CHECK_EQ_INT(rep.n_rcpts, FB_RCPTS_MAX);
    CHECK(rep.flags & FB_F_RCPTS_MORE);
    free(m);
    /* 5,000 parts: the walk stops at FB_PARTS_MAX. */
    m = repeat("From: x@y.test\nContent-Type: multipart/mixed; boundary=p\n\n",
               "--p\nContent-Type: text/html\n\nx\n", 5000, "--p--\n", &n);
    CHECK_EQ_INT(fb_parse(m, n, NULL, &rep), 0);
    CHECK(rep.flags & FB_F_LIMIT);
    free(m);
    /* A base64 part larger than the scratch buffer. */
    m = repeat("From: x@y.test\n" DSN_CT "\n--g\nContent-Type: message/delivery-status\n"
               "Content-Transfer-Encoding: base64\n\n",
               "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFB\n",
               1000, "--g--\n", &n);
    CHECK_EQ_INT(fb_parse(m, n, NULL, &rep), 0);
    CHECK(rep.flags & FB_F_LIMIT);
    free(m);
}

static void test_mime_helpers(void)
{
    struct fb_ctype ct;
    const char *v = " Multipart/Report (a comment) ;\r\n\treport-type=\"Delivery-Status\";"
                    " BOUNDARY=\"a \\\"q\\\" b\"; charset=x";
    fb_ctype_parse(v, strlen(v), &ct);
    CHECK_EQ_STR(ct.type, "multipart");
    CHECK_EQ_STR(ct.sub, "report");
    CHECK_EQ_STR(ct.report_type, "delivery-status");
    CHECK_EQ_STR(ct.boundary, "a \"q\" b");
    fb_ctype_parse("garbage", 7, &ct);
    CHECK_EQ_STR(ct.type, "text");
    CHECK_EQ_STR(ct.sub, "plain");

    char out[64];
    bool trunc = false;
    size_t n = fb_decode(FB_CTE_BASE64, "aGVs\r\nbG8=", 10, out, sizeof out, &trunc);
    CHECK_EQ_INT(n, 5);
    CHECK(memcmp(out, "hello", 5) == 0);
    n = fb_decode(FB_CTE_QP, "a=3Db=\r\nc= \nd=zz=4", 18, out, sizeof out, &trunc);
    CHECK_EQ_INT(n, 10); /* "=zz" and a final "=4" are not escapes: kept */
    CHECK(memcmp(out, "a=bcd=zz=4", 10) == 0);
    CHECK(!trunc);
    n = fb_decode(FB_CTE_BASE64, "aGVsbG8=", 8, out, 3, &trunc);
    CHECK_EQ_INT(n, 3);
    CHECK(trunc);

    /* An inner boundary that starts with the outer one is not the outer. */
    const char *body = "pre\n--ab\nA\n--abc\nnot a delimiter\n--ab  \nB\n--ab--\nepilogue";
    struct fb_multipart m;
    const char *p;
    size_t len;
    fb_multipart_begin(&m, body, strlen(body), "ab");
    CHECK_EQ_INT(fb_multipart_next(&m, &p, &len), 1);
    CHECK(len == 23 && memcmp(p, "A\n--abc\nnot a delimiter", 23) == 0);
    CHECK_EQ_INT(fb_multipart_next(&m, &p, &len), 1);
    CHECK(len == 1 && p[0] == 'B');
    CHECK_EQ_INT(fb_multipart_next(&m, &p, &len), 0);
    CHECK(!m.broken);

    char st[FB_STATUS_MAX + 1];
    CHECK(fb_find_status("Status: 5.1.1", strlen("Status: 5.1.1"), false, st));
    CHECK_EQ_STR(st, "5.1.1");
    CHECK(fb_find_status("5.123.456 x", strlen("5.123.456 x"), true, st));
    CHECK_EQ_STR(st, "5.123.456");
    CHECK(!fb_find_status("5.1234.1", strlen("5.1234.1"), true, st));
    CHECK(!fb_find_status("6.1.1", strlen("6.1.1"), true, st));
    CHECK(!fb_find_status("from 5.1.1.9 relay", strlen("from 5.1.1.9 relay"), false, st));
    CHECK(!fb_find_status("5.1", strlen("5.1"), true, st));
    CHECK(!fb_find_status("v15.1.1", strlen("v15.1.1"), false, st));

    char a[FB_ADDR_MAX + 1];
    CHECK(fb_take_addr(" \"Doe, <J>\" <j.doe@x.test> ", strlen(" \"Doe, <J>\" <j.doe@x.test> "), a,
                       sizeof a));
    CHECK_EQ_STR(a, "j.doe@x.test");
    CHECK(fb_take_addr("j@x.test (Jo <x@evil.test>)", strlen("j@x.test (Jo <x@evil.test>)"), a,
                       sizeof a));
    CHECK_EQ_STR(a, "j@x.test");
    CHECK(!fb_take_addr("<>", strlen("<>"), a, sizeof a));
    CHECK(!fb_take_addr("<a b@x.test>", strlen("<a b@x.test>"), a, sizeof a));
    CHECK(!fb_take_addr("<j@x.test", strlen("<j@x.test"), a, sizeof a));
    CHECK(
        !fb_take_addr("undisclosed-recipients:;", strlen("undisclosed-recipients:;"), a, sizeof a));
    CHECK_EQ_STR(a, "");

    char w[64];
    const char *ew = "=?ISO-8859-1?Q?a=3Fb_c?=  =?utf-8?B?ZA==?= e =?bad";
    fb_decode_words(ew, strlen(ew), w, sizeof w);
    CHECK_EQ_STR(w, "a?b cd e =?bad");
    fb_decode_words(ew, strlen(ew), w, 4);
    CHECK_EQ_STR(w, "a?b");

    char c[16];
    trunc = false;
    const char *dirty = "  a\r\n\t b\x01\xff \xc2\x85 caf\xc3\xa9  ";
    fb_clean(c, sizeof c, dirty, strlen(dirty), &trunc);
    CHECK_EQ_STR(c, "a b? caf\xc3\xa9");
    CHECK(!trunc);
    fb_clean(c, 4, "abcdef", 6, &trunc);
    CHECK_EQ_STR(c, "abc");
    CHECK(trunc);
}

int main(void)
{
    test_postfix();
    test_crlf();
    test_text_bounces();
    test_big_providers_dsn();
    test_arf();
    test_autoreplies();
    test_encoded_and_lost();
    test_token_to_job();
    test_malformed();
    test_giant();
    test_mime_helpers();
    return check_report("test_feedback_report");
}
