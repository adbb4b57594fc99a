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
static struct cfg_template acme_templates[] = {
    {.name = "reminder",
     .subject = "Reminder: {{ what }} on {{day}}",
     .text = "Hello {{name}},\nyour {{what}} is on {{ day }}.\n\\{{not a var}}\n",
     .html = "<p>Hello {{name}}, your {{what}} is on {{day}}.</p>"},
    {.name = "textonly", .subject = "Hi", .text = "{{body}}"},
};
static struct cfg_tenant tenants[] = {
    {.name = "acme",
     .from = "reminders@acme.test",
     .from_name = "Acme Clinic",
     .domains = {acme_domains, 2},
     .templates = acme_templates,
     .n_templates = 2},
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
    {KV("tenant", "acme", "to", "a@b.test", "template", "nosuch"), "template",
     "tenant acme has no template 'nosuch'"},
    {KV("tenant", "beta", "to", "a@b.test", "template", "reminder"), "template",
     "tenant beta has no template 'reminder'"},
    {KV("tenant", "acme", "to", "a@b.test", "template", "reminder", "var.name", "Ann", "var.day",
        "Monday"),
     "var.what", "template 'reminder' uses {{what}} but the job has no var.what"},
    {KV("tenant", "acme", "to", "a@b.test", "template", "reminder", "var.name", "Ann", "var.day",
        "Mon\r\nBcc: x@evil.test", "var.what", "visit"),
     "var.day", "contains CR or LF (used in the subject of template 'reminder')"},
    {KV("tenant", "acme", "to", "a@b.test", "template", "reminder", "subject", "s"), "",
     "more than one kind of content"},
    {KV("tenant", "acme", "to", "a@b.test", "raw", "Subject: x\r\n\r\nbody"), "raw",
     "no From header"},
    {KV("tenant", "acme", "to", "a@b.test", "raw", "From: a@acme.test\r\nBad Header: x\r\n\r\nb"),
     "raw", "line 2: invalid character in header field name"},
    {KV("tenant", "acme", "to", "a@b.test", "raw", "From: a@acme.test\nNoColon\n\nb"), "raw",
     "line 2: header field without a colon"},
    {KV("tenant", "acme", "to", "a@b.test", "raw", " folded: x\nFrom: a@acme.test\n\nb"), "raw",
     "line 1: continuation line before any header field"},
    {KV("tenant", "acme", "to", "a@b.test", "raw", "From: a@acme.test\nFrom: b@acme.test\n\nb"),
     "raw", "line 2: more than one From header"},
    {KV("tenant", "acme", "to", "a@b.test", "raw", "From: a@evil.test\n\nb"), "raw",
     "From domain 'evil.test' is not one of the tenant's domains (tenant acme)"},
    /* Another mailbox ahead of the tenant's: the old last-'<' reading took
     * it as acme.test. */
    {KV("tenant", "acme", "to", "a@b.test", "raw",
        "From: ceo@victim.example, <x@acme.test>\n\nb"),
     "raw", "From domain 'victim.example' is not one"},
    {KV("tenant", "acme", "to", "a@b.test", "raw",
        "From: \"x@acme.test\" <ceo@victim.example>\n\nb"),
     "raw", "From domain 'victim.example' is not one"},
    {KV("tenant", "acme", "to", "a@b.test", "raw",
        "From: ceo@victim.example (<x@acme.test>)\n\nb"),
     "raw", "From domain 'victim.example' is not one"},
    {KV("tenant", "acme", "to", "a@b.test", "raw", "From: a@acme.test, b@acme.test\n\nb"),
     "raw", "several mailboxes; add a Sender"},
    {KV("tenant", "acme", "to", "a@b.test", "raw",
        "From: a@acme.test, b@acme.test\nSender: ops@victim.example\n\nb"),
     "raw", "Sender domain 'victim.example' is not one"},
    {KV("tenant", "acme", "to", "a@b.test", "raw", "From: Desk: a@acme.test;\n\nb"), "raw",
     "holds a group"},
    {KV("tenant", "acme", "to", "a@b.test", "raw", "From: Front Desk\n\nb"), "raw",
     "not an RFC 5322 address list"},
    {KV("tenant", "acme", "to", "a@b.test", "raw", "From: <a@acme.test\n\nb"), "raw",
     "not an RFC 5322 address list"},
    {KV("tenant", "acme", "to", "a@b.test", "raw", "From: a@acme.test\nSubject: caf\xc3\xa9\n\nb"),
     "raw", "line 2: non-ASCII byte in a header"},
    {KV("tenant", "acme", "to", "a@b.test", "raw", "\r\n\r\nbody"), "raw",
     "line 1: no header fields"},
    {KV("tenant", "acme", "to", "a@gmial.com", "subject", "s", "text", "t", "raw", "x"), "",
     "more than one kind of content"},
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
    /* IDNA2008: the domain of `to` (and of reply_to) must be a valid name */
    {KV("tenant", "acme", "to", "a@\xcc\x81" "abc.test", "subject", "s", "text", "t"), "to",
     "domain is not a valid IDNA2008 name: string contains a forbidden leading combining "
     "character"},
    {KV("tenant", "acme", "to", "a@a\xd7\x90.test", "subject", "s", "text", "t"), "to",
     "domain is not a valid IDNA2008 name: string has forbidden bi-directional properties"},
    {KV("tenant", "acme", "to", "a@\xe2\x98\x83.test", "subject", "s", "text", "t"), "to",
     "domain is not a valid IDNA2008 name: string contains a disallowed character"},
    {KV("tenant", "acme", "to", "a@xn--zz.test", "subject", "s", "text", "t"), "to",
     "domain is not a valid IDNA2008 name: "},
    {KV("tenant", "acme", "to", "a@b.test", "reply_to", "r@\xe2\x98\x83.test", "subject", "s",
        "text", "t"),
     "reply_to", "domain is not a valid IDNA2008 name: "},
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

/* An id over 256 bytes was silently replaced by the stream id. */
static void test_long_id(void)
{
    struct job j;
    struct job_error err;
    job_init(&j);
    char id[300];
    memset(id, 'a', sizeof id - 1);
    id[sizeof id - 1] = '\0';
    int rc = PARSE(&j, &err, "tenant", "acme", "to", "a@b.test", "subject", "s", "text", "t",
                   "id", id);
    CHECK_EQ_INT(rc, -HERR_MALFORMED);
    CHECK_EQ_STR(err.field, "id");
    CHECK(strstr(err.reason, "too long") != NULL);
    CHECK_EQ_STR(j.id, "1795341600000-7");
    /* replaces and cancel name an id: the same bound. */
    rc = PARSE(&j, &err, "tenant", "acme", "to", "a@b.test", "subject", "s", "text", "t",
               "replaces", id);
    CHECK_EQ_INT(rc, -HERR_MALFORMED);
    CHECK_EQ_STR(err.field, "replaces");
    rc = PARSE(&j, &err, "tenant", "acme", "cancel", id);
    CHECK_EQ_INT(rc, -HERR_MALFORMED);
    CHECK_EQ_STR(err.field, "cancel");
    job_clear(&j);
    id[256] = '\0';
    rc = PARSE(&j, &err, "tenant", "acme", "to", "a@b.test", "subject", "s", "text", "t", "id", id);
    CHECK_EQ_INT(rc, 0);
    CHECK_EQ_INT((int)strlen(j.id), 256);
    job_clear(&j);
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
    CHECK_EQ_STR(j.rcpt, "Patient@example.test"); /* the local part keeps its case */
    CHECK_EQ_STR(j.to_key, "patient@example.test");
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

    /* herald's one-click link (set by the caller) goes first, before the
     * job's own items, and brings List-Unsubscribe-Post even when the job
     * gave only a mailto; alone it makes the header by itself. */
    CHECK_EQ_INT(PARSE(&j, &err, "tenant", "beta", "to", "b@example.test", "subject", "S",
                       "text", "x", "unsubscribe", "mailto:u@beta.test"),
                 0);
    j.oneclick_url = "https://u.beta.test/u/AbC_-1";
    CHECK_EQ_INT(job_build(&j, &tenants[1], NULL, NOW_MS, 0, &err), 0);
    CHECK(strstr(j.wire.data, "\r\nMIME-Version: 1.0\r\n"
                              "List-Unsubscribe: <https://u.beta.test/u/AbC_-1>,\r\n"
                              " <mailto:u@beta.test>\r\n"
                              "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
                              "Content-Type: ") != NULL);
    CHECK_EQ_INT(PARSE(&j, &err, "tenant", "beta", "to", "b@example.test", "subject", "S",
                       "text", "x"),
                 0);
    j.oneclick_url = "https://u.beta.test/u/AbC_-1";
    CHECK_EQ_INT(job_build(&j, &tenants[1], NULL, NOW_MS, 0, &err), 0);
    CHECK(strstr(j.wire.data, "\r\nList-Unsubscribe: <https://u.beta.test/u/AbC_-1>\r\n"
                              "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
                              "Content-Type: ") != NULL);
    j.oneclick_url = NULL;

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

/* Build the job and let Python's email package decode it; the expected
 * decoded values are given separately (templates render them). */
static void mime_check_job(const char *const *kv, const char *subject, const char *from_name,
                           const char *text, const char *html)
{
    struct job j;
    struct job_error err;
    job_init(&j);
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

static void mime_roundtrip(const char *subject, const char *from_name, const char *text,
                           const char *html)
{
    const char *kv[16];
    size_t n = 0;
    kv[n++] = "tenant", kv[n++] = "acme", kv[n++] = "to", kv[n++] = "ann@example.test";
    kv[n++] = "subject", kv[n++] = subject;
    if (from_name) kv[n++] = "from_name", kv[n++] = from_name;
    if (text) kv[n++] = "text", kv[n++] = text;
    if (html) kv[n++] = "html", kv[n++] = html;
    kv[n] = NULL;
    mime_check_job(kv, subject, from_name, text, html);
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

    /* a 3000-character line without a single space, in subject and bodies */
    char *word = malloc(3001);
    for (int i = 0; i < 3000; i++)
        word[i] = (char)('a' + i % 26);
    word[3000] = 0;
    mime_roundtrip(word, NULL, word, word);
    /* mostly non-ASCII: goes out as base64, and must decode the same */
    mime_roundtrip("\xd0\x9d\xd0\xb0\xd0\xbf\xd0\xbe\xd0\xbc\xd0\xb8\xd0\xbd\xd0\xb0\xd0\xbd\xd0\xb8\xd0\xb5",
                   "\xd0\x9a\xd0\xbb\xd0\xb8\xd0\xbd\xd0\xb8\xd0\xba\xd0\xb0",
                   "\xd0\x97\xd0\xb4\xd1\x80\xd0\xb0\xd0\xb2\xd1\x81\xd1\x82\xd0\xb2\xd1\x83\xd0\xb9\xd1\x82\xd0\xb5,\n"
                   ".\n\xd0\xb4\xd0\xbe \xd0\xb2\xd1\x81\xd1\x82\xd1\x80\xd0\xb5\xd1\x87\xd0\xb8\n",
                   "<p>\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c\xe4\xbd\xa0\xe5\xa5\xbd</p>");
    /* ASCII display names with specials, quoted or not */
    mime_roundtrip("s", "O'Brien, Pat (front desk) <x>", "t", NULL);
    mime_roundtrip("s", "Dr. A. Smith", "t", NULL);
    mime_roundtrip("s", "back\\slash \"q\"", "t", NULL);

    /* template output: vars with HTML specials and non-ASCII */
    const char *kv[] = {"tenant", "acme", "to", "ann@example.test", "template", "reminder",
                        "var.name", "Ann & <Bob> \"B\" O'Neil", "var.what",
                        "d\xc3\xa9j\xc3\xa0-vu check", "var.day", word, NULL};
    char *subject = malloc(4000), *text = malloc(8000), *html = malloc(8000);
    snprintf(subject, 4000, "Reminder: d\xc3\xa9j\xc3\xa0-vu check on %s", word);
    snprintf(text, 8000,
             "Hello Ann & <Bob> \"B\" O'Neil,\nyour d\xc3\xa9j\xc3\xa0-vu check is on %s.\n{{not a "
             "var}}\n",
             word);
    snprintf(html, 8000,
             "<p>Hello Ann &amp; &lt;Bob&gt; &quot;B&quot; O&#39;Neil, your d\xc3\xa9j\xc3\xa0-vu "
             "check is on %s.</p>",
             word);
    mime_check_job(kv, subject, NULL, text, html);
    free(subject);
    free(text);
    free(html);
    free(word);
}

static void test_transfer_encoding(void)
{
    struct job j;
    struct job_error err;
    job_init(&j);
    CHECK_EQ_INT(PARSE(&j, &err, "tenant", "acme", "to", "a@b.test", "subject", "s", "text",
                       "\xe4\xbd\xa0\xe5\xa5\xbd\xe4\xb8\x96\xe7\x95\x8c\n", "html", "<p>caf\xc3\xa9 au lait</p>"),
                 0);
    CHECK_EQ_INT(job_build(&j, &tenants[0], NULL, NOW_MS, 0, &err), 0);
    const char *b64 = strstr(j.wire.data, "Content-Transfer-Encoding: base64\r\n\r\n");
    const char *qp = strstr(j.wire.data, "Content-Transfer-Encoding: quoted-printable\r\n\r\n");
    CHECK(b64 != NULL && qp != NULL && b64 < qp);
    if (b64) CHECK(strncmp(b64 + 37, "5L2g5aW95LiW55WMDQo=\r\n", 22) == 0);
    job_clear(&j);
}

static void test_template(void)
{
    struct job j;
    struct job_error err;
    job_init(&j);
    CHECK_EQ_INT(PARSE(&j, &err, "tenant", "acme", "to", "a@b.test", "template", "reminder",
                       "var.name", "<Ann & Co>", "var.what", "visit", "var.day", "Mon 'x'"),
                 0);
    CHECK_EQ_INT(j.kind, JOB_KIND_TEMPLATE);
    CHECK_EQ_STR(j.template_name, "reminder");
    CHECK_EQ_STR(j.subject, "Reminder: visit on Mon 'x'");
    CHECK_EQ_STR(j.text, "Hello <Ann & Co>,\nyour visit is on Mon 'x'.\n{{not a var}}\n");
    CHECK_EQ_STR(j.html, "<p>Hello &lt;Ann &amp; Co&gt;, your visit is on Mon &#39;x&#39;.</p>");
    CHECK_EQ_INT(job_build(&j, &tenants[0], "mta1.example.net", NOW_MS, 0, &err), 0);
    check_wire(&j.wire);

    /* an empty var is a value; LF in a text-only var is fine */
    CHECK_EQ_INT(PARSE(&j, &err, "tenant", "acme", "to", "a@b.test", "template", "textonly",
                       "var.body", "line1\nline2"),
                 0);
    CHECK_EQ_STR(j.text, "line1\nline2");
    CHECK(j.html == NULL);

    /* NUL in a var */
    const char *names[] = {"tenant", "to", "template", "var.body"};
    const char *values[] = {"acme", "a@b.test", "textonly", "a\0b"};
    size_t nl[] = {6, 2, 8, 8}, vl[] = {4, 8, 8, 3};
    CHECK_EQ_INT(job_parse(&j, "1-1", 4, names, nl, values, vl, &cfg, &err), -HERR_MALFORMED);
    CHECK_EQ_STR(err.field, "var.body");
    CHECK_EQ_STR(err.reason, "contains NUL");
    job_clear(&j);
}

static void test_raw(void)
{
    struct job j;
    struct job_error err;
    job_init(&j);
    /* LF endings, no Date or Message-ID, smuggling attempts in the body */
    const char *raw = "From: Acme <reminders@acme.test>\nTo: a@b.test\nSubject: folded\n  "
                      "subject\n\nline\n.\nbare\rcr\r\n.\r\n..x\n.";
    CHECK_EQ_INT(PARSE(&j, &err, "tenant", "acme", "to", "a@b.test", "raw", raw), 0);
    CHECK_EQ_INT(j.kind, JOB_KIND_RAW);
    CHECK_EQ_INT(job_build(&j, &tenants[0], "mta1.example.net", NOW_MS, 0, &err), 0);
    check_wire(&j.wire);
    const char *want = "Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
                       "Message-ID: <000102030405060708090a0b0c0d0e0f@mta1.example.net>\r\n"
                       "From: Acme <reminders@acme.test>\r\nTo: a@b.test\r\n"
                       "Subject: folded\r\n  subject\r\n\r\n"
                       "line\r\n..\r\nbare\r\ncr\r\n..\r\n...x\r\n..\r\n.\r\n";
    CHECK_EQ_STR(j.wire.data, want);
    CHECK_EQ_STR(j.message_id, "000102030405060708090a0b0c0d0e0f@mta1.example.net");

    /* their Date and Message-ID stay; headers only: the header is ended
     * with an empty line (the signer needs one, and it is a valid message) */
    CHECK_EQ_INT(PARSE(&j, &err, "tenant", "acme", "to", "a@b.test", "raw",
                       "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <abc@acme.test>\r\n"
                       "From: r@acme.test"),
                 0);
    CHECK_EQ_INT(job_build(&j, &tenants[0], "mta1.example.net", NOW_MS, 0, &err), 0);
    CHECK_EQ_STR(j.wire.data, "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: "
                              "<abc@acme.test>\r\nFrom: r@acme.test\r\n\r\n.\r\n");
    CHECK_EQ_STR(j.message_id, "abc@acme.test");

    /* 998 octets is the limit, in the body too */
    char *big = malloc(1200);
    int n = snprintf(big, 1200, "From: r@acme.test\n\n");
    memset(big + n, 'x', 998);
    big[n + 998] = 0;
    CHECK_EQ_INT(PARSE(&j, &err, "tenant", "acme", "to", "a@b.test", "raw", big), 0);
    big[n + 998] = 'y';
    big[n + 999] = 0;
    CHECK_EQ_INT(PARSE(&j, &err, "tenant", "acme", "to", "a@b.test", "raw", big), -HERR_MALFORMED);
    CHECK_EQ_STR(err.field, "raw");
    CHECK_EQ_STR(err.reason, "line 3: longer than 998 octets");
    free(big);

    /* NUL, and the job's own fields are still checked */
    const char *names[] = {"tenant", "to", "raw"};
    const char *values[] = {"acme", "a@b.test", "From: r@acme.test\n\nx\0y"};
    size_t nl[] = {6, 2, 3}, vl[] = {4, 8, 23};
    CHECK_EQ_INT(job_parse(&j, "1-1", 3, names, nl, values, vl, &cfg, &err), -HERR_MALFORMED);
    CHECK_EQ_STR(err.field, "raw");
    CHECK_EQ_STR(err.reason, "line 3: contains NUL");
    CHECK_EQ_INT(PARSE(&j, &err, "tenant", "acme", "to", "a@b.test\nRCPT TO:<x@evil.test>", "raw",
                       "From: r@acme.test\n\nx"),
                 -HERR_MALFORMED);
    CHECK_EQ_STR(err.field, "to");
    job_clear(&j);
}

static void test_idn_and_typo(void)
{
    struct job j;
    struct job_error err;
    job_init(&j);
    CHECK_EQ_INT(PARSE(&j, &err, "tenant", "acme", "to", "pat@B\xc3\xbc" "cher.Example", "subject",
                       "s", "text", "t"),
                 0);
    CHECK_EQ_STR(j.to, "pat@B\xc3\xbc" "cher.Example");
    CHECK_EQ_STR(j.rcpt, "pat@xn--bcher-kva.example");
    CHECK_EQ_STR(j.to_domain, "xn--bcher-kva.example");
    CHECK_EQ_STR(j.to_key, "pat@xn--bcher-kva.example");
    CHECK(!j.needs_smtputf8);
    CHECK_EQ_INT(job_build(&j, &tenants[0], NULL, NOW_MS, 0, &err), 0);
    CHECK(strstr(j.wire.data, "\r\nTo: pat@xn--bcher-kva.example\r\n") != NULL);
    CHECK(j.suggestion == NULL);

    /* One normalisation for routing, envelope and key: the same person
     * written two ways gets one key (what suppression and caps use). */
    static const char *const same[][3] = {
        /* to, rcpt, to_key */
        {"Anna@B\xc3\x9c" "CHER.example", "Anna@xn--bcher-kva.example",
         "anna@xn--bcher-kva.example"},
        {"anna@b\xc3\xbc" "cher.example", "anna@xn--bcher-kva.example",
         "anna@xn--bcher-kva.example"},
        {"anna@xn--bcher-kva.EXAMPLE", "anna@xn--bcher-kva.example",
         "anna@xn--bcher-kva.example"},
        {"anna@bu\xcc\x88" "cher.example", "anna@xn--bcher-kva.example",
         "anna@xn--bcher-kva.example"}, /* NFD input */
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(same); i++) {
        CHECK_EQ_INT(PARSE(&j, &err, "tenant", "acme", "to", same[i][0], "subject", "s", "text",
                           "t"),
                     0);
        CHECK_EQ_STR(j.to, same[i][0]);
        CHECK_EQ_STR(j.rcpt, same[i][1]);
        CHECK_EQ_STR(j.to_key, same[i][2]);
        CHECK_EQ_STR(j.to_domain, "xn--bcher-kva.example");
        CHECK(j.to_domain == j.rcpt + 5); /* the same string, not a second conversion */
    }
    /* Non-transitional: ß stays, the mail goes to straße.de, not strasse.de. */
    CHECK_EQ_INT(PARSE(&j, &err, "tenant", "acme", "to", "x@Stra\xc3\x9f" "e.de", "subject", "s",
                       "text", "t"),
                 0);
    CHECK_EQ_STR(j.to_domain, "xn--strae-oqa.de");
    CHECK_EQ_STR(j.to_key, "x@xn--strae-oqa.de");

    /* A rejected job still names its recipient as given. */
    CHECK_EQ_INT(PARSE(&j, &err, "tenant", "acme", "to", "pat@\xe2\x98\x83.example", "subject",
                       "s", "text", "t"),
                 -HERR_MALFORMED);
    CHECK_EQ_STR(err.field, "to");
    CHECK_EQ_STR(j.to, "pat@\xe2\x98\x83.example");
    CHECK(j.to_key == NULL);

    /* A cancel entry's `to` goes through the same normalisation. */
    CHECK_EQ_INT(PARSE(&j, &err, "tenant", "acme", "to", "Anna@B\xc3\x9c" "CHER.example",
                       "cancel", "appt-1"),
                 0);
    CHECK_EQ_STR(j.to_key, "anna@xn--bcher-kva.example");

    /* The sender too: a tenant default From whose domain fails IDNA2008
     * rejects the job with field `from`. */
    static char *bad_domains[] = {"\xe2\x98\x83.test"};
    struct cfg_tenant bad_tenant = {.name = "snow",
                                    .from = "n@\xe2\x98\x83.test",
                                    .domains = {bad_domains, 1}};
    struct config bad_cfg = cfg;
    bad_cfg.tenants = &bad_tenant;
    bad_cfg.n_tenants = 1;
    const char *bn[] = {"tenant", "to", "subject", "text"};
    const char *bv[] = {"snow", "a@b.test", "s", "t"};
    CHECK_EQ_INT(job_parse(&j, "1-1", 4, bn, NULL, bv, NULL, &bad_cfg, &err), -HERR_MALFORMED);
    CHECK_EQ_STR(err.field, "from");
    CHECK_EQ_STR(err.reason,
                 "domain is not a valid IDNA2008 name: string contains a disallowed character");

    CHECK_EQ_INT(PARSE(&j, &err, "tenant", "acme", "to", "j\xc3\xbcrgen@example.test", "subject",
                       "s", "text", "t"),
                 0);
    CHECK(j.needs_smtputf8);
    CHECK_EQ_STR(j.rcpt, "j\xc3\xbcrgen@example.test");
    CHECK_EQ_STR(j.to_key, "j\xc3\xbcrgen@example.test");

    static const char *const typos[][2] = {
        {"pat@gnail.com", "pat@gmail.com"},     {"pat@gmial.com", "pat@gmail.com"},
        {"pat@hotmial.com", "pat@hotmail.com"}, {"pat@yaho.com", "pat@yahoo.com"},
        {"pat@outlok.com", "pat@outlook.com"},  {"Pat@GMIAL.COM", "Pat@gmail.com"},
        {"pat@googlemial.co", "pat@googlemail.com"},
        {"pat@gmail.com", NULL},                {"pat@clinic.test", NULL},
        {"pat@mail.com", NULL},                 {"pat@ymail.com", NULL},
        {"pat@example.com", NULL},
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(typos); i++) {
        CHECK_EQ_INT(PARSE(&j, &err, "tenant", "acme", "to", typos[i][0], "subject", "s", "text",
                           "t"),
                     0);
        if (typos[i][1])
            CHECK_EQ_STR(j.suggestion, typos[i][1]);
        else
            CHECK(j.suggestion == NULL);
        CHECK_EQ_STR(j.to, typos[i][0]); /* never rewritten */
    }
    struct config strict = cfg;
    strict.addresses.typo_policy = CFG_TYPO_REJECT;
    const char *names[] = {"tenant", "to", "subject", "text"};
    const char *values[] = {"acme", "pat@gmial.com", "s", "t"};
    CHECK_EQ_INT(job_parse(&j, "1-1", 4, names, NULL, values, NULL, &strict, &err),
                 -HERR_MALFORMED);
    CHECK_EQ_STR(err.field, "to");
    CHECK_EQ_STR(err.reason, "did you mean pat@gmail.com?");
    strict.addresses.typo_policy = CFG_TYPO_OFF;
    CHECK_EQ_INT(job_parse(&j, "1-1", 4, names, NULL, values, NULL, &strict, &err), 0);
    CHECK(j.suggestion == NULL);
    job_clear(&j);
}

static void test_msg_id_acceptable(void)
{
    CHECK(msg_id_acceptable("31967af5f10c149bd97bb660afb5d785@acme.test"));
    CHECK(!msg_id_acceptable("no-at-sign"));
    CHECK(!msg_id_acceptable("two@@ats"));
    CHECK(!msg_id_acceptable("a@b\r\nBcc: x@evil.test"));
    CHECK(!msg_id_acceptable("<a@b>"));
    CHECK(!msg_id_acceptable("sp ace@b"));
    CHECK(!msg_id_acceptable("@b"));
    CHECK(!msg_id_acceptable(""));
}

/* A recycled job decodes and builds the same bytes into the memory it
 * kept: the arena chunk and the wire buffer are reused, not reallocated. */
static void test_recycle(void)
{
    struct job j;
    struct job_error err;
    job_init(&j);
    struct hbuf first;
    hbuf_init(&first);
    for (int round = 0; round < 3; round++) {
        CHECK_EQ_INT(PARSE(&j, &err, "tenant", "acme", "to", "ann@example.test", "subject",
                           "Your appointment", "text", "Hello Ann,\n.\nSee you.\n"),
                     0);
        CHECK_EQ_INT(job_build(&j, &tenants[0], "mta1.example.net", NOW_MS, 0, &err), 0);
        CHECK_EQ_STR(j.to, "ann@example.test");
        if (round == 0) {
            CHECK_EQ_INT(hbuf_append(&first, j.wire.data, j.wire.len), 0);
        } else {
            CHECK_EQ_INT(j.wire.len, first.len);
            CHECK(j.wire.len == first.len && memcmp(j.wire.data, first.data, first.len) == 0);
        }
        const void *chunk = j.arena.head;
        const char *wire = j.wire.data;
        CHECK(chunk != NULL && wire != NULL);
        job_recycle(&j);
        CHECK(j.arena.head == chunk);
        CHECK(j.wire.data == wire);
        CHECK_EQ_INT(j.wire.len, 0);
        CHECK(j.to == NULL && j.n_fields == 0 && j.attempt == 1);
    }
    job_clear(&j);
    CHECK(j.arena.head == NULL && j.wire.data == NULL);
    job_build_thread_done();
    hbuf_free(&first);
}

int main(void)
{
    test_msg_id_acceptable();
    job_set_random(fake_random);
    test_rejects();
    test_long_id();
    test_binary_rejects();
    test_parse_ok();
    test_build_exact();
    test_mime();
    test_transfer_encoding();
    test_template();
    test_raw();
    test_idn_and_typo();
    test_recycle();
    return check_report("test_job");
}
