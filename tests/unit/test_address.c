/* addr_check: tables of mailboxes that must pass and must fail, with the
 * SMTPUTF8 flag and the reason; the typo distance rules. (IDNA and the
 * normalised forms: test_idna.c.) */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "herald/job.h"

struct good {
    const char *addr;
    bool utf8;
};

static const struct good good[] = {
    {"a@b", false},
    {"user@example.com", false},
    {"first.last@sub.example.co.uk", false},
    {"x+tag@example.test", false},
    {"!#$%&'*+-/=?^_`{|}~@example.com", false},
    {"\"quoted\"@example.com", false},
    {"\"with space\"@example.com", false},
    {"\"a@b\"@example.com", false},
    {"\"esc\\\"aped\\\\\"@example.com", false},
    {"\"a..b\"@example.com", false},
    {"user@[192.0.2.1]", false},
    {"user@[IPv6:2001:db8::1]", false},
    {"user@xn--bcher-kva.example", false},
    {"user@a-b.c-d", false},
    {"user@EXAMPLE.COM", false},
    {"1234567890123456789012345678901234567890123456789012345678901234@example.com", false},
    {"j\xc3\xbcrgen@example.de", true},
    {"\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\x85\xac\xe5\x8f\xb8", true},
    {"user@b\xc3\xbc"
     "cher.example",
     true},
    {"\"j\xc3\xbcrgen\"@example.de", true},
};

struct bad {
    const char *addr;
    size_t len; /* 0: strlen */
    const char *why;
};

static const struct bad bad[] = {
    {"", 0, "empty address"},
    {"plainaddress", 0, "missing @"},
    {"@example.com", 0, "empty local part"},
    {"user@", 0, "empty domain"},
    {".user@example.com", 0, "starts with a dot"},
    {"user.@example.com", 0, "ends with a dot"},
    {"a..b@example.com", 0, "'..'"},
    {"a b@example.com", 0, "space in local part"},
    {"a\tb@example.com", 0, "control character"},
    {"a\r\nb@example.com", 0, "control character"},
    {"a@b@example.com", 0, "invalid character in domain"},
    {"user@example.com.", 0, "ends with a dot"},
    {"user@.example.com", 0, "empty domain label"},
    {"user@example..com", 0, "empty domain label"},
    {"user@-example.com", 0, "'-'"},
    {"user@example-.com", 0, "'-'"},
    {"user@exa_mple.com", 0, "invalid character in domain"},
    {"user@exa mple.com", 0, "space in domain"},
    {"user@example.com\n", 0, "control character in domain"},
    {"\"unterminated@example.com", 0, "unterminated"},
    {"\"q\"x@example.com", 0, "text after quoted"},
    {"\"a\nb\"@example.com", 0, "control character"},
    {"user@[1.2.3]", 0, "bad address literal"},
    {"user@[1.2.3.256]", 0, "bad address literal"},
    {"user@[01.2.3.4]", 0, "bad address literal"},
    {"user@[IPv6:zz::1]", 0, "bad IPv6"},
    {"user@[1.2.3.4", 0, "unterminated address literal"},
    {"user@[tag:stuff]", 0, "bad address literal"},
    {"12345678901234567890123456789012345678901234567890123456789012345@example.com", 0,
     "local part too long"},
    {"user@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.com", 0,
     "label too long"},
    {"j\xc3(rgen@example.de", 0, "invalid UTF-8"},
    {"\xc0\xafuser@example.de", 0, "invalid UTF-8"},
    {"\xed\xa0\x80@example.de", 0, "invalid UTF-8"},
    {"user@b\xff.example", 0, "invalid UTF-8"},
    {"a\0b@example.com", 15, "control character"},
    {"user@example.com\0", 17, "control character in domain"},
    {"user@[IPv6:28::\0001]", 18, "bad IPv6"}, /* found by fuzz_address */
};

static void test_typo(void)
{
    const char *const *list = typo_default_domains;
    size_t n = 0;
    while (list[n])
        n++;
    static const char *const v[][2] = {
        {"gnail.com", "gmail.com"},     {"gmial.com", "gmail.com"},   {"gmai.com", "gmail.com"},
        {"gmaill.com", "gmail.com"},    {"hotmial.com", "hotmail.com"},
        {"yaho.com", "yahoo.com"},      {"outlok.com", "outlook.com"}, {"icluod.com", "icloud.com"},
        {"gxm.de", "gmx.de"},           {"googlemali.com", "googlemail.com"},
        {"gogolemial.com", "googlemail.com"}, /* two edits, long name */
        {"gmail.com", NULL},            {"clinic.test", NULL},        {"gmx.net", NULL},
        {"mail.com", NULL},             {"ymail.com", NULL},          {"gmial.co.uk", NULL},
        {"hmail.de", NULL},             {"web.com", NULL},            {"", NULL},
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(v); i++) {
        const char *got = typo_suggest(v[i][0], list, n);
        if (v[i][1])
            CHECK_EQ_STR(got, v[i][1]);
        else if (got)
            fprintf(stderr, "%s: unexpected suggestion %s\n", v[i][0], got);
        if (!v[i][1]) CHECK(got == NULL);
    }
    static const char *const custom[] = {"clinic.test"};
    CHECK_EQ_STR(typo_suggest("clinc.test", custom, 1), "clinic.test");
    CHECK(typo_suggest("gmial.com", custom, 1) == NULL);
}

int main(void)
{
    test_typo();
    for (size_t i = 0; i < HERALD_ARRAY_LEN(good); i++) {
        bool utf8 = !good[i].utf8;
        const char *why = "unset";
        int rc = addr_check(good[i].addr, strlen(good[i].addr), &utf8, &why);
        if (rc != 0) fprintf(stderr, "should pass: '%s' (%s)\n", good[i].addr, why);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_INT(utf8, good[i].utf8);
    }
    for (size_t i = 0; i < HERALD_ARRAY_LEN(bad); i++) {
        const char *why = NULL;
        bool utf8;
        size_t len = bad[i].len ? bad[i].len : strlen(bad[i].addr);
        int rc = addr_check(bad[i].addr, len, &utf8, &why);
        if (rc == 0 || !why || !strstr(why, bad[i].why))
            fprintf(stderr, "should fail with '%s': '%s' (got %d, %s)\n", bad[i].why, bad[i].addr,
                    rc, why ? why : "(null)");
        CHECK_EQ_INT(rc, -HERR_MALFORMED);
        CHECK(why && strstr(why, bad[i].why));
    }

    /* Length limits: 254 total, 255 domain, 63 per label. */
    char buf[400];
    memset(buf, 'a', sizeof buf);
    buf[0] = 'u';
    buf[1] = '@';
    for (size_t i = 2 + 63; i < 254; i += 64)
        buf[i] = '.';
    const char *why = NULL;
    CHECK_EQ_INT(addr_check(buf, 254, NULL, &why), 0);
    CHECK_EQ_INT(addr_check(buf, 255, NULL, &why), -HERR_MALFORMED);
    CHECK(why && strstr(why, "address too long"));
    CHECK_EQ_INT(addr_check(NULL, 0, NULL, NULL), -HERR_MALFORMED);

    /* addr_check is syntax only: a well-formed UTF-8 domain that IDNA2008
     * refuses passes it, and addr_normalize (what jobs and `herald
     * suppress` use) refuses it as -EILSEQ. */
    static const char *const idna_bad[] = {
        "user@\xe2\x98\x83.example",      /* U+2603, disallowed */
        "user@\xcc\x81" "abc.example",     /* leading combining mark */
        "user@a\xd7\x90.example",          /* bidi rule */
        "user@xn--zz.example",             /* not Punycode */
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(idna_bad); i++) {
        struct addr_norm a;
        size_t n = strlen(idna_bad[i]);
        CHECK_EQ_INT(addr_check(idna_bad[i], n, NULL, NULL), 0);
        why = NULL;
        CHECK_EQ_INT(addr_normalize(idna_bad[i], n, &a, &why), -EILSEQ);
        CHECK(why != NULL);
    }
    return check_report("test_address");
}
