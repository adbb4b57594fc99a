/* job_parse rejections (field + reason), defaults and time parsing;
 * job_build exact bytes for a fixed message, wire invariants (CRLF only,
 * lines <= 998, one terminator), and an independent MIME check with
 * Python's email package. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "herald/job.h"

static char *acme_domains[] = {"acme.test", "Acme-Mail.test"};
static struct cfg_tenant tenants[] = {
    {.name = "acme",
     .from = "reminders@acme.test",
     .from_name = "Acme Clinic",
     .domains = {acme_domains, 2}},
    {.name = "beta", .from = "noreply@beta.test", .reply_to = "help@beta.test"},
};
static struct config cfg = {
    .tenants = tenants,
    .n_tenants = 2,
    .engine = {.max_field_bytes = 4096, .max_message_bytes = 1 << 20},
};

#define NOW_MS 1795341600000LL /* 2026-11-22T10:00:00Z, a Sunday */

/* Fixed randomness: 0x00, 0x01, ... so Message-ID and boundary are known. */
static int fake_random(void *buf, size_t len)
{
    for (size_t i = 0; i < len; i++)
        ((unsigned char *)buf)[i] = (unsigned char)i;
    return 0;
}

/* Parse a NULL-terminated list of name, value strings. */
static int parse_list(struct job *j, const char *const *kv, struct job_error *err)
{
    const char *names[64], *values[64];
    size_t n = 0;
    for (; kv[2 * n]; n++) {
        names[n] = kv[2 * n];
        values[n] = kv[2 * n + 1];
    }
    return job_parse(j, "1795341600000-7", n, names, NULL, values, NULL, &cfg, err);
}

#define PARSE(j, err, ...) parse_list((j), (const char *const[]){__VA_ARGS__, NULL}, (err))

struct reject_case {
    const char *const *kv;
    const char *field;
    const char *reason;
};

#define KV(...) ((const char *const[]){__VA_ARGS__, NULL})

static const struct reject_case rejects[] = {
    {KV("tenant", "acme", "subject", "s", "text", "t"), "to", "missing"},
    {KV("to", "a@b.test", "subject", "s", "text", "t"), "tenant", "missing"},
    {KV("tenant", "nope", "to", "a@b.test", "subject", "s", "text", "t"), "tenant",
     "unknown tenant 'nope'"},
    {KV("tenant", "ac me", "to", "a@b.test", "subject", "s", "text", "t"), "tenant",
     "invalid tenant name"},
    {KV("tenant", "acme", "to", "a@b.test", "subject", "hi\r\nBcc: x@evil.test", "text", "t"),
     "subject", "contains CR or LF"},
    {KV("tenant", "acme", "to", "a@b.test", "subject", "hi\rthere", "text", "t"), "subject",
     "contains CR or LF"},
    {KV("tenant", "acme", "to", "a@b.test", "from_name", "Evil\nBcc: x", "subject", "s", "text",
        "t"),
     "from_name", "contains CR or LF"},
    {KV("tenant", "acme", "to", "a@b.test\n", "subject", "s", "text", "t"), "to",
     "contains CR or LF"},
    {KV("tenant", "acme", "to", "not-an-address", "subject", "s", "text", "t"), "to", "missing @"},
    {KV("tenant", "acme", "to", "a@b.test", "subject", "s", "text", "t", "priority", "urgent"),
     "priority", "high, normal or bulk"},
    {KV("tenant", "acme", "to", "a@b.test", "from", "x@evil.test", "subject", "s", "text", "t"),
     "from", "domain 'evil.test' is not one of tenant acme's domains"},
    {KV("tenant", "acme", "to", "a@b.test", "from", "bad address@acme.test", "subject", "s", "text",
        "t"),
     "from", "invalid address"},
    {KV("tenant", "acme", "to", "a@b.test", "reply_to", "nope", "subject", "s", "text", "t"),
     "reply_to", "invalid address"},
    {KV("tenant", "acme", "to", "a@b.test", "template", "reminder"), "template",
     "template jobs are not supported yet"},
    {KV("tenant", "acme", "to", "a@b.test", "raw", "Subject: x\r\n\r\nbody"), "raw",
     "raw jobs are not supported yet"},
    {KV("tenant", "acme", "to", "a@b.test", "subject", "s"), "text",
     "subject needs text and/or html"},
    {KV("tenant", "acme", "to", "a@b.test", "text", "body"), "subject", "missing"},
    {KV("tenant", "acme", "to", "a@b.test"), "subject", "no content"},
    {KV("tenant", "acme", "to", "a@b.test", "subject", "s", "text", "t", "template", "x"), "",
     "more than one kind of content"},
    {KV("tenant", "acme", "to", "a@b.test", "subject", "s", "text", "t", "send_at", "tomorrow"),
     "send_at", "RFC 3339"},
    {KV("tenant", "acme", "to", "a@b.test", "subject", "s", "text", "t", "expires_at",
        "2026-02-30T10:00:00Z"),
     "expires_at", "RFC 3339"},
    {KV("tenant", "acme", "to", "a@b.test", "subject", "s", "text", "t", "expires_at",
        "2026-11-22T10:00:00"),
     "expires_at", "RFC 3339"},
    {KV("tenant", "acme", "to", "a@b.test", "subject", "s", "text", "t", "attempt", "-1"),
     "attempt", "not a count"},
    {KV("tenant", "acme", "to", "a@b.test", "subject", "s", "text", "t", "to", "c@d.test"), "to",
     "given more than once"},
    {KV("tenant", "acme", "to", "a@b.test", "subject", "s", "text", "t", "unsubscribe",
        "https://x.test/u?a b"),
     "unsubscribe", "invalid character"},
};

static void test_rejects(void)
{
    for (size_t i = 0; i < HERALD_ARRAY_LEN(rejects); i++) {
        struct job j;
        struct job_error err;
        job_init(&j);
        int rc = parse_list(&j, rejects[i].kv, &err);
        if (rc != -HERR_MALFORMED || strcmp(err.field, rejects[i].field) != 0 ||
            !strstr(err.reason, rejects[i].reason))
            fprintf(stderr, "case %zu: rc=%d field='%s' reason='%s', want '%s' '%s'\n", i, rc,
                    err.field, err.reason, rejects[i].field, rejects[i].reason);
        CHECK_EQ_INT(rc, -HERR_MALFORMED);
        CHECK_EQ_STR(err.field, rejects[i].field);
        CHECK(strstr(err.reason, rejects[i].reason) != NULL);
        CHECK(j.id != NULL); /* a rejection note can always name the job */
        job_clear(&j);
    }
}

/* Values with NUL bytes and oversize values need explicit lengths. */
static void test_binary_rejects(void)
{
    struct job j;
    struct job_error err;
    job_init(&j);
    const char *names[] = {"tenant", "to", "subject", "text", "ref", "id"};
    const char *values[] = {"acme", "a@b.test", "hi\0there", "t", "appt-42", "job-1"};
    size_t name_lens[] = {6, 2, 7, 4, 3, 2};
    size_t value_lens[] = {4, 8, 8, 1, 7, 5};
    CHECK_EQ_INT(job_parse(&j, "1-1", 6, names, name_lens, values, value_lens, &cfg, &err),
                 -HERR_MALFORMED);
    CHECK_EQ_STR(err.field, "subject");
    CHECK_EQ_STR(err.reason, "contains NUL");
    CHECK_EQ_STR(j.id, "job-1");
    CHECK_EQ_STR(j.ref, "appt-42");
    CHECK_EQ_STR(j.tenant, "acme");

    values[2] = "hi";
    value_lens[2] = 2;
    values[3] = "body\0more";
    value_lens[3] = 9;
    CHECK_EQ_INT(job_parse(&j, "1-1", 6, names, name_lens, values, value_lens, &cfg, &err),
                 -HERR_MALFORMED);
    CHECK_EQ_STR(err.field, "text");
    CHECK_EQ_STR(err.reason, "contains NUL");

    char *big = malloc(5000);
    memset(big, 'x', 5000);
    values[3] = big;
    value_lens[3] = 5000;
    CHECK_EQ_INT(job_parse(&j, "1-1", 6, names, name_lens, values, value_lens, &cfg, &err),
                 -HERR_MALFORMED);
    CHECK_EQ_STR(err.field, "text");
    CHECK_EQ_STR(err.reason, "too large (5000 bytes, limit engine.max_field_bytes = 4096)");
    CHECK_EQ_STR(j.id, "job-1"); /* salvaged for the note */
    free(big);

    /* too many fields */
    static const char *many_n[JOB_MAX_FIELDS + 1], *many_v[JOB_MAX_FIELDS + 1];
    for (size_t i = 0; i <= JOB_MAX_FIELDS; i++)
        many_n[i] = many_v[i] = "x";
    CHECK_EQ_INT(job_parse(&j, "1-1", JOB_MAX_FIELDS + 1, many_n, NULL, many_v, NULL, &cfg, &err),
                 -HERR_MALFORMED);
    CHECK(strstr(err.reason, "too many fields") != NULL);
    CHECK_EQ_STR(j.id, "1-1");
    job_clear(&j);
}

static void test_parse_ok(void)
{
    struct job j;
    struct job_error err;
    job_init(&j);
    int rc = PARSE(&j, &err, "tenant", "acme", "to", "Patient@Example.TEST", "subject", "Hi",
                   "text", "Body", "var.name", "Ann", "x-unknown", "kept");
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(j.tenant, "acme");
    CHECK_EQ_STR(j.to, "Patient@Example.TEST");
    CHECK_EQ_STR(j.to_domain, "example.test");
    CHECK_EQ_STR(j.id, "1795341600000-7");
    CHECK_EQ_STR(j.stream_id, "1795341600000-7");
    CHECK_EQ_STR(j.from, "reminders@acme.test");
    CHECK_EQ_STR(j.from_name, "Acme Clinic");
    CHECK(j.reply_to == NULL);
    CHECK(j.html == NULL);
    CHECK_EQ_INT(j.priority, JOB_PRIO_NORMAL);
    CHECK_EQ_INT(j.attempt, 1);
    CHECK_EQ_INT(j.enqueued_ms, 1795341600000LL);
    CHECK_EQ_INT(j.send_at_ms, 0);
    CHECK_EQ_INT(j.expires_at_ms, 0);
    CHECK(!j.needs_smtputf8);
    CHECK_EQ_INT(j.n_fields, 6);
    CHECK_EQ_STR(j.names[4], "var.name");
    CHECK_EQ_STR(j.values[5], "kept");
    CHECK_EQ_INT(j.value_lens[5], 4);

    /* explicit everything, retry fields, RFC 3339 with offset */
    rc = PARSE(&j, &err, "tenant", "acme", "to", "j\xc3\xbcrgen@example.test", "id", "appt-1",
               "ref", "client-9", "from", "desk@ACME-MAIL.test", "from_name", "Front Desk",
               "reply_to", "help@acme.test", "subject", "s", "html", "<p>x</p>", "priority", "high",
               "send_at", "2026-11-22T10:00:00.250+01:30", "expires_at", "1795341600000", "attempt",
               "3", "enqueued_at", "1700000000000", "unsubscribe",
               "https://acme.test/u?id=1, <mailto:u@acme.test>", "replaces", "appt-0");
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(j.id, "appt-1");
    CHECK_EQ_STR(j.ref, "client-9");
    CHECK_EQ_STR(j.from, "desk@ACME-MAIL.test");
    CHECK_EQ_STR(j.from_name, "Front Desk");
    CHECK_EQ_STR(j.reply_to, "help@acme.test");
    CHECK_EQ_STR(j.replaces, "appt-0");
    CHECK_EQ_INT(j.priority, JOB_PRIO_HIGH);
    CHECK_EQ_INT(j.send_at_ms, 1795336200250LL);
    CHECK_EQ_INT(j.expires_at_ms, 1795341600000LL);
    CHECK_EQ_INT(j.attempt, 4);
    CHECK_EQ_INT(j.enqueued_ms, 1700000000000LL);
    CHECK(j.needs_smtputf8);

    rc = PARSE(&j, &err, "tenant", "beta", "to", "a@b.test", "subject", "s", "text", "t", "send_at",
               "2024-02-29t23:59:59-05:00", "priority", "bulk", "from_name", "");
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT(j.send_at_ms, 1709269199000LL);
    CHECK_EQ_INT(j.priority, JOB_PRIO_BULK);
    CHECK_EQ_STR(j.reply_to, "help@beta.test");
    CHECK(j.from_name == NULL); /* empty = absent; beta has no default */

    /* a cancel entry is a control entry: no to, no content */
    rc = PARSE(&j, &err, "tenant", "acme", "cancel", "appt-1");
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_STR(j.cancel, "appt-1");
    CHECK(j.to == NULL);
    job_clear(&j);
}

/* Wire invariants every built message must meet. */
static void check_wire(const struct hbuf *w)
{
    CHECK(w->len >= 5 && memcmp(w->data + w->len - 5, "\r\n.\r\n", 5) == 0);
    const char *first = strstr(w->data, "\r\n.\r\n");
    CHECK(first == w->data + w->len - 5);
    CHECK(memcmp(w->data, ".\r\n", 3) != 0);
    size_t col = 0;
    for (size_t i = 0; i < w->len; i++) {
        if (w->data[i] == '\r') {
            CHECK(i + 1 < w->len && w->data[i + 1] == '\n');
            CHECK(col <= 998);
            col = 0;
            i++;
            continue;
        }
        CHECK(w->data[i] != '\n');
        CHECK(w->data[i] != '\0');
        col++;
    }
    CHECK_EQ_INT(col, 0);
}

static void test_build_exact(void)
{
    struct job j;
    struct job_error err;
    job_init(&j);
    CHECK_EQ_INT(PARSE(&j, &err, "tenant", "acme", "to", "ann@example.test", "subject",
                       "Your appointment", "text", "Hello Ann,\n.\nSee you at 10:00.\n", "html",
                       "<p>Hello Ann</p>", "unsubscribe", "https://acme.test/u?id=1"),
                 0);
    CHECK_EQ_INT(job_build(&j, &tenants[0], "mta1.example.net", NOW_MS, 0, &err), 0);
    const char *want = "Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
                       "From: Acme Clinic <reminders@acme.test>\r\n"
                       "To: ann@example.test\r\n"
                       "Subject: Your appointment\r\n"
                       "Message-ID: <000102030405060708090a0b0c0d0e0f@mta1.example.net>\r\n"
                       "MIME-Version: 1.0\r\n"
                       "List-Unsubscribe: <https://acme.test/u?id=1>\r\n"
                       "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
                       "Content-Type: multipart/alternative; "
                       "boundary=\"=_herald_000102030405060708090a0b\"\r\n"
                       "\r\n"
                       "--=_herald_000102030405060708090a0b\r\n"
                       "Content-Type: text/plain; charset=utf-8\r\n"
                       "Content-Transfer-Encoding: quoted-printable\r\n"
                       "\r\n"
                       "Hello Ann,\r\n"
                       "..\r\n"
                       "See you at 10:00.\r\n"
                       "\r\n"
                       "--=_herald_000102030405060708090a0b\r\n"
                       "Content-Type: text/html; charset=utf-8\r\n"
                       "Content-Transfer-Encoding: quoted-printable\r\n"
                       "\r\n"
                       "<p>Hello Ann</p>\r\n"
                       "--=_herald_000102030405060708090a0b--\r\n"
                       ".\r\n";
    CHECK_EQ_STR(j.wire.data, want);
    CHECK_EQ_STR(j.message_id, "000102030405060708090a0b0c0d0e0f@mta1.example.net");
    check_wire(&j.wire);

    /* single part, reply-to, name with specials, mailto-only unsubscribe */
    CHECK_EQ_INT(PARSE(&j, &err, "tenant", "beta", "to", "b@example.test", "subject", "S",
                       "from_name", "Dr. Who, \"MD\"", "text", "x", "unsubscribe",
                       "mailto:u@beta.test"),
                 0);
    CHECK_EQ_INT(job_build(&j, &tenants[1], NULL, NOW_MS, 0, &err), 0);
    want = "Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
           "From: \"Dr. Who, \\\"MD\\\"\" <noreply@beta.test>\r\n"
           "To: b@example.test\r\n"
           "Reply-To: help@beta.test\r\n"
           "Subject: S\r\n"
           "Message-ID: <000102030405060708090a0b0c0d0e0f@beta.test>\r\n"
           "MIME-Version: 1.0\r\n"
           "List-Unsubscribe: <mailto:u@beta.test>\r\n"
           "Content-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: quoted-printable\r\n"
           "\r\n"
           "x\r\n"
           ".\r\n";
    CHECK_EQ_STR(j.wire.data, want);

    /* too large */
    CHECK_EQ_INT(job_build(&j, &tenants[1], NULL, NOW_MS, 100, &err), -HERR_TOO_LONG);
    CHECK_EQ_STR(err.field, "");
    CHECK(strstr(err.reason, "message too large (") && strstr(err.reason, "limit 100)"));
    CHECK_EQ_INT(j.wire.len, 0);

    /* a cancel entry has nothing to build */
    CHECK_EQ_INT(PARSE(&j, &err, "tenant", "acme", "cancel", "x"), 0);
    CHECK_EQ_INT(job_build(&j, &tenants[0], NULL, NOW_MS, 0, &err), -HERR_MALFORMED);
    job_clear(&j);
}

static void write_file(const char *dir, const char *name, const char *data)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(data, 1, strlen(data), f);
    fclose(f);
}

/* Build the message and let Python's email package decode it. */
static void mime_roundtrip(const char *subject, const char *from_name, const char *text,
                           const char *html)
{
    struct job j;
    struct job_error err;
    job_init(&j);
    const char *kv[16];
    size_t n = 0;
    kv[n++] = "tenant", kv[n++] = "acme", kv[n++] = "to", kv[n++] = "ann@example.test";
    kv[n++] = "subject", kv[n++] = subject;
    if (from_name) kv[n++] = "from_name", kv[n++] = from_name;
    if (text) kv[n++] = "text", kv[n++] = text;
    if (html) kv[n++] = "html", kv[n++] = html;
    kv[n] = NULL;
    int rc = parse_list(&j, kv, &err);
    CHECK_EQ_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "parse: %s: %s\n", err.field, err.reason);
        job_clear(&j);
        return;
    }
    CHECK_EQ_INT(job_build(&j, &tenants[0], "mta1.example.net", NOW_MS, 0, &err), 0);
    check_wire(&j.wire);

    char dir[] = "/tmp/herald-test-job-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    write_file(dir, "wire", j.wire.data);
    write_file(dir, "subject", subject);
    write_file(dir, "from", "reminders@acme.test");
    write_file(dir, "from_name", from_name ? from_name : "Acme Clinic");
    if (text) write_file(dir, "text", text);
    if (html) write_file(dir, "html", html);
    char cmd[700];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/data/check_mime.py %s", dir);
    int st = system(cmd);
    if (st != 0)
        fprintf(stderr, "check_mime failed for subject '%.40s' (message kept in %s)\n", subject,
                dir);
    CHECK_EQ_INT(st, 0);
    if (st == 0) {
        snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
        CHECK_EQ_INT(system(cmd), 0);
    }
    job_clear(&j);
}

static void test_mime(void)
{
    if (access("/usr/bin/python3", X_OK) != 0) {
        fprintf(stderr, "no /usr/bin/python3: MIME round trip not run\n");
        CHECK(0);
        return;
    }
    mime_roundtrip("Your appointment", NULL, "Hello\nsee you", NULL);
    mime_roundtrip("Rendez-vous confirm\xc3\xa9 \xe2\x80\x94 Caf\xc3\xa9 M\xc3\xbcller",
                   "Cl\xc3\xad"
                   "nica Sa\xc3\xba"
                   "de",
                   "Bonjour \xc3\xa9t\xc3\xa9\n.\n..\nfin\n",
                   "<p>\xc3\xa9t\xc3\xa9 = summer</p>\r\n.");
    mime_roundtrip("\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x98\x80 "
                   "\xe9\xa2\x84\xe7\xba\xa6\xe6\x8f\x90\xe9\x86\x92\xe9\xa2\x84\xe7\xba\xa6"
                   "\xe6\x8f\x90\xe9\x86\x92\xe9\xa2\x84\xe7\xba\xa6\xe6\x8f\x90\xe9\x86\x92"
                   "\xe9\xa2\x84\xe7\xba\xa6\xe6\x8f\x90\xe9\x86\x92\xe9\xa2\x84\xe7\xba\xa6",
                   "\xe5\xbc\xa0\xe5\x8c\xbb\xe7\x94\x9f (clinic)", NULL,
                   "<html>\r\n<body>line\rnext   \r\n</body></html>");
    mime_roundtrip("Dots . and \"quotes\" and =?not?Q?encoded?= and a long tail that keeps "
                   "going well past the seventy-eight column soft limit for header lines",
                   "A \"quoted\" name; with <specials>", "trailing spaces   \nand tabs\t\n",
                   "<b>x</b>");
    /* long lines in both bodies */
    char *longtext = malloc(4001);
    for (int i = 0; i < 4000; i++)
        longtext[i] = "abc \xc3\xa9=."[i % 8];
    longtext[4000] = 0;
    longtext[3999] = 0x7a;
    mime_roundtrip("long", NULL, longtext, longtext);
    free(longtext);
}

int main(void)
{
    job_set_random(fake_random);
    test_rejects();
    test_binary_rejects();
    test_parse_ok();
    test_build_exact();
    test_mime();
    return check_report("test_job");
}
