/* Reply parser and EHLO capability tests: a table of inputs fed whole and
 * split at every byte position, plus the bounds (overlong lines, endless
 * multiline replies). */
#include <stdlib.h>

#include "check.h"
#include "herald/smtp.h"

struct reply_case {
    const char *name;
    const char *in;
    int rc; /* 1 complete, 0 incomplete, <0 error */
    int code;
    const char *enhanced;
    const char *text;
    unsigned n_lines;
};

static const struct reply_case cases[] = {
    {"single", "250 OK\r\n", 1, 250, "", "OK", 1},
    {"bare LF", "250 OK\n", 1, 250, "", "OK", 1},
    {"code alone", "250\r\n", 1, 250, "", "", 1},
    {"code and space", "354 \r\n", 1, 354, "", "", 1},
    {"multiline", "250-mx.test hello\r\n250-PIPELINING\r\n250 SIZE 1000\r\n", 1, 250, "",
     "mx.test hello\nPIPELINING\nSIZE 1000", 3},
    {"multiline mixed endings", "250-a\n250-b\r\n250 c\n", 1, 250, "", "a\nb\nc", 3},
    {"multiline code alone last", "250-a\r\n250\r\n", 1, 250, "", "a\n", 2},
    {"enhanced", "250 2.0.0 Ok: queued as 1234\r\n", 1, 250, "2.0.0", "2.0.0 Ok: queued as 1234",
     1},
    {"enhanced 3 digit parts", "550 5.123.456 no\r\n", 1, 550, "5.123.456", "5.123.456 no", 1},
    {"enhanced alone", "451 4.7.1\r\n", 1, 451, "4.7.1", "4.7.1", 1},
    {"enhanced class mismatch", "550 4.7.1 odd\r\n", 1, 550, "", "4.7.1 odd", 1},
    {"enhanced part too long", "550 5.1234.1 x\r\n", 1, 550, "", "5.1234.1 x", 1},
    {"enhanced no detail", "550 5.1 x\r\n", 1, 550, "", "5.1 x", 1},
    {"enhanced glued", "550 5.1.1x\r\n", 1, 550, "", "5.1.1x", 1},
    {"enhanced multiline first only", "550-5.1.1 a\r\n550 5.1.1 b\r\n", 1, 550, "5.1.1",
     "5.1.1 a\n5.1.1 b", 2},
    {"control bytes masked",
     "250 a\tb\x01"
     "c\r\n",
     1, 250, "", "a\tb?c", 1},
    {"bare CR inside", "250 a\rb\r\n", 1, 250, "", "a?b", 1},
    {"incomplete line", "250 OK", 0, 0, "", "", 0},
    {"incomplete multiline", "250-a\r\n250-b\r\n", 0, 0, "", "", 0},
    {"mixed codes", "250-a\r\n251 b\r\n", -HERR_PROTOCOL, 0, "", "", 0},
    {"1xx", "150 hi\r\n", -HERR_PROTOCOL, 0, "", "", 0},
    {"6xx", "600 hi\r\n", -HERR_PROTOCOL, 0, "", "", 0},
    {"bad separator", "250_OK\r\n", -HERR_PROTOCOL, 0, "", "", 0},
    {"short", "25\r\n", -HERR_PROTOCOL, 0, "", "", 0},
    {"empty line", "\r\n", -HERR_PROTOCOL, 0, "", "", 0},
    {"garbage", "HTTP/1.1 400 Bad Request\r\n", -HERR_PROTOCOL, 0, "", "", 0},
    {"binary", "\x16\x03\x01\x02\x00", -HERR_PROTOCOL, 0, "", "", 0},
    {"letters in code", "2a0 x\r\n", -HERR_PROTOCOL, 0, "", "", 0},
};

static int parse_all(struct smtp_reply_parser *p, const char *in, size_t len, struct smtp_reply *r,
                     size_t *used_total)
{
    size_t used = 0;
    int rc = smtp_reply_parse(p, in, len, &used, r);
    *used_total = used;
    return rc;
}

/* Feed [0,cut) then [cut,len): the result must not depend on the split. */
static int parse_split(const char *in, size_t len, size_t cut, struct smtp_reply *r)
{
    struct smtp_reply_parser p;
    smtp_reply_parser_init(&p);
    size_t used = 0;
    int rc = smtp_reply_parse(&p, in, cut, &used, r);
    if (rc != 0) return rc;
    if (used != cut) return 99;
    return smtp_reply_parse(&p, in + cut, len - cut, &used, r);
}

static void test_table(void)
{
    for (size_t i = 0; i < HERALD_ARRAY_LEN(cases); i++) {
        const struct reply_case *c = &cases[i];
        size_t len = strlen(c->in);
        struct smtp_reply_parser p;
        struct smtp_reply r;
        memset(&r, 0, sizeof r);
        smtp_reply_parser_init(&p);
        size_t used = 0;
        int rc = parse_all(&p, c->in, len, &r, &used);
        if (rc != c->rc) fprintf(stderr, "case '%s'\n", c->name);
        CHECK_EQ_INT(rc, c->rc);
        if (rc == 1) {
            CHECK_EQ_INT(used, len);
            CHECK_EQ_INT(r.code, c->code);
            CHECK_EQ_STR(r.enhanced, c->enhanced);
            CHECK_EQ_STR(r.text, c->text);
            CHECK_EQ_INT(r.text_len, strlen(c->text));
            CHECK_EQ_INT(r.n_lines, c->n_lines);
            CHECK(!r.truncated);
        }
        if (rc == 0) CHECK_EQ_INT(used, len);
        /* Every split position gives the same answer (errors may come early). */
        for (size_t cut = 0; cut <= len; cut++) {
            struct smtp_reply r2;
            memset(&r2, 0, sizeof r2);
            int rc2 = parse_split(c->in, len, cut, &r2);
            if (c->rc < 0) {
                CHECK(rc2 < 0);
                continue;
            }
            CHECK_EQ_INT(rc2, c->rc);
            if (rc2 == 1) {
                CHECK_EQ_INT(r2.code, c->code);
                CHECK_EQ_STR(r2.text, c->text);
                CHECK_EQ_STR(r2.enhanced, c->enhanced);
            }
        }
    }
}

static void test_byte_at_a_time_two_replies(void)
{
    const char *in = "220-mx.test ESMTP\r\n220 ready\r\n250-mx\n250 8BITMIME\n";
    struct smtp_reply_parser p;
    struct smtp_reply r;
    smtp_reply_parser_init(&p);
    int got = 0;
    for (size_t i = 0; in[i]; i++) {
        size_t used = 0;
        int rc = smtp_reply_parse(&p, in + i, 1, &used, &r);
        CHECK(rc >= 0);
        CHECK_EQ_INT(used, 1);
        if (rc == 1) {
            got++;
            if (got == 1) {
                CHECK_EQ_INT(r.code, 220);
                CHECK_EQ_STR(r.text, "mx.test ESMTP\nready");
            } else {
                CHECK_EQ_INT(r.code, 250);
                CHECK_EQ_STR(r.text, "mx\n8BITMIME");
            }
        }
    }
    CHECK_EQ_INT(got, 2);
}

static void test_two_replies_one_buffer(void)
{
    const char *in = "250 a\r\n354 go\r\n";
    struct smtp_reply_parser p;
    struct smtp_reply r;
    smtp_reply_parser_init(&p);
    size_t used = 0;
    CHECK_EQ_INT(smtp_reply_parse(&p, in, strlen(in), &used, &r), 1);
    CHECK_EQ_INT(used, 7);
    CHECK_EQ_INT(r.code, 250);
    size_t used2 = 0;
    CHECK_EQ_INT(smtp_reply_parse(&p, in + used, strlen(in) - used, &used2, &r), 1);
    CHECK_EQ_INT(r.code, 354);
    CHECK_EQ_STR(r.text, "go");
}

static void test_overlong_line(void)
{
    /* 60 KB line: kept to SMTP_LINE_MAX, the rest skipped, truncated set. */
    size_t n = 60000;
    char *in = malloc(n + 16);
    memcpy(in, "550 ", 4);
    memset(in + 4, 'x', n - 4);
    memcpy(in + n, "\r\n", 3);
    struct smtp_reply_parser p;
    struct smtp_reply r;
    smtp_reply_parser_init(&p);
    size_t off = 0;
    int rc = 0;
    while (off < n + 2 && rc == 0) {
        size_t chunk = n + 2 - off < 777 ? n + 2 - off : 777, used = 0;
        rc = smtp_reply_parse(&p, in + off, chunk, &used, &r);
        off += used;
    }
    CHECK_EQ_INT(rc, 1);
    CHECK_EQ_INT(off, n + 2);
    CHECK_EQ_INT(r.code, 550);
    CHECK(r.truncated);
    CHECK_EQ_INT(r.text_len, SMTP_LINE_MAX - 4);

    /* A line of exactly SMTP_LINE_MAX bytes plus CRLF is not truncated. */
    memset(in + 4, 'y', SMTP_LINE_MAX - 4);
    memcpy(in + SMTP_LINE_MAX, "\r\n", 2);
    smtp_reply_parser_init(&p);
    size_t used = 0;
    CHECK_EQ_INT(smtp_reply_parse(&p, in, SMTP_LINE_MAX + 2, &used, &r), 1);
    CHECK(!r.truncated);
    CHECK_EQ_INT(r.text_len, SMTP_LINE_MAX - 4);
    free(in);

    /* A 1 MB line with no end is refused once it passes SMTP_LINE_GIVE_UP,
     * whatever the chunking. */
    n = 1 << 20;
    in = malloc(n);
    memcpy(in, "250-", 4);
    memset(in + 4, 'A', n - 4);
    smtp_reply_parser_init(&p);
    off = 0;
    rc = 0;
    while (off < n && rc == 0) {
        size_t chunk = n - off < 4096 ? n - off : 4096;
        used = 0;
        rc = smtp_reply_parse(&p, in + off, chunk, &used, &r);
        off += used;
    }
    CHECK_EQ_INT(rc, -HERR_PROTOCOL);
    CHECK(off <= SMTP_LINE_GIVE_UP + 4096);
    free(in);
}

static void test_text_bound(void)
{
    /* 10 lines of ~1000 bytes: text stays within SMTP_REPLY_TEXT_MAX. */
    struct smtp_reply_parser p;
    struct smtp_reply r;
    smtp_reply_parser_init(&p);
    char line[1100];
    int rc = 0;
    for (int i = 0; i < 10 && rc == 0; i++) {
        memcpy(line, i == 9 ? "250 " : "250-", 4);
        memset(line + 4, 'a' + i, 1000);
        memcpy(line + 1004, "\r\n", 2);
        size_t used = 0;
        rc = smtp_reply_parse(&p, line, 1006, &used, &r);
    }
    CHECK_EQ_INT(rc, 1);
    CHECK(r.truncated);
    CHECK_EQ_INT(r.text_len, SMTP_REPLY_TEXT_MAX - 1);
    CHECK_EQ_INT(strlen(r.text), r.text_len);
    CHECK_EQ_INT(r.n_lines, 10);
}

static void test_too_many_lines(void)
{
    struct smtp_reply_parser p;
    struct smtp_reply r;
    smtp_reply_parser_init(&p);
    int rc = 0;
    int i;
    for (i = 0; i < 200 && rc == 0; i++) {
        size_t used = 0;
        rc = smtp_reply_parse(&p, "250-x\r\n", 7, &used, &r);
    }
    CHECK_EQ_INT(rc, -HERR_PROTOCOL);
    CHECK_EQ_INT(i, SMTP_REPLY_LINES_MAX + 1);

    /* Exactly the maximum is fine. */
    smtp_reply_parser_init(&p);
    rc = 0;
    for (i = 0; i < SMTP_REPLY_LINES_MAX && rc == 0; i++) {
        size_t used = 0;
        const char *l = i == SMTP_REPLY_LINES_MAX - 1 ? "250 x\r\n" : "250-x\r\n";
        rc = smtp_reply_parse(&p, l, 7, &used, &r);
    }
    CHECK_EQ_INT(rc, 1);
    CHECK_EQ_INT(r.n_lines, SMTP_REPLY_LINES_MAX);
}

static void test_reset_after_error(void)
{
    struct smtp_reply_parser p;
    struct smtp_reply r;
    smtp_reply_parser_init(&p);
    size_t used = 0;
    CHECK(smtp_reply_parse(&p, "xyz\r\n", 5, &used, &r) < 0);
    CHECK_EQ_INT(smtp_reply_parse(&p, "250 ok\r\n", 8, &used, &r), 1);
    CHECK_EQ_INT(r.code, 250);
}

static struct smtp_caps caps_of(const char *in)
{
    struct smtp_reply_parser p;
    struct smtp_reply r;
    struct smtp_caps c;
    smtp_reply_parser_init(&p);
    size_t used = 0;
    memset(&r, 0, sizeof r);
    CHECK_EQ_INT(smtp_reply_parse(&p, in, strlen(in), &used, &r), 1);
    memset(&c, 0xff, sizeof c);
    smtp_caps_parse(&c, &r);
    return c;
}

static void test_caps(void)
{
    struct smtp_caps c = caps_of("250-mx.test Hello PIPELINING SIZE\r\n"
                                 "250-pipelining\r\n"
                                 "250-SIZE 10240000\r\n"
                                 "250-8bitmime\r\n"
                                 "250-SmtpUtf8\r\n"
                                 "250-CHUNKING\r\n"
                                 "250-ENHANCEDSTATUSCODES\r\n"
                                 "250-STARTTLS\r\n"
                                 "250 AUTH LOGIN CRAM-MD5 PLAIN\r\n");
    CHECK(c.pipelining && c.size && c.eightbitmime && c.smtputf8 && c.chunking);
    CHECK(c.enhancedstatuscodes && c.starttls && c.auth_plain && c.auth_login);
    CHECK_EQ_INT(c.size_max, 10240000);

    /* The greeting line is not a capability. */
    c = caps_of("250 PIPELINING\r\n");
    CHECK(!c.pipelining && !c.size && !c.auth_plain);

    c = caps_of("250-mx\r\n250-AUTH=PLAIN\r\n250-SIZE\r\n250 PIPELININGX\r\n");
    CHECK(c.auth_plain && !c.auth_login);
    CHECK(c.size);
    CHECK_EQ_INT(c.size_max, 0);
    CHECK(!c.pipelining);

    c = caps_of("250-mx\r\n250-SIZE 99999999999999999999999\r\n250-SIZE9\r\n250 AUTH\r\n");
    CHECK(c.size);
    CHECK(c.size_max == UINT64_MAX); /* saturated; "SIZE9" is another keyword */
    CHECK(!c.auth_plain && !c.auth_login);

    c = caps_of("250-mx\r\n250 SIZE 12x\r\n");
    CHECK(c.size);
    CHECK_EQ_INT(c.size_max, 0);
}

int main(void)
{
    test_table();
    test_byte_at_a_time_two_replies();
    test_two_replies_one_buffer();
    test_overlong_line();
    test_text_bound();
    test_too_many_lines();
    test_reset_after_error();
    test_caps();
    return check_report("test_reply");
}
