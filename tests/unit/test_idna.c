/* idna_domain_to_ascii and addr_normalize: IDNA2008 through libidn2 with
 * non-transitional mapping, what is refused and why, and the one
 * normalised form (wire + key) every recipient lookup uses. */
#include <errno.h>
#include <string.h>

#include "check.h"
#include "herald/job.h"

static void test_domains(void)
{
    static const char *const v[][2] = {
        {"b\xc3\xbc" "cher.example", "xn--bcher-kva.example"},
        /* uppercase non-ASCII folded by the UTS #46 mapping */
        {"B\xc3\x9c" "CHER.example", "xn--bcher-kva.example"},
        {"B\xc3\x9c" "CHER.Example", "xn--bcher-kva.example"},
        /* non-transitional: ß is kept, not turned into "ss" */
        {"stra\xc3\x9f" "e.de", "xn--strae-oqa.de"},
        /* decomposed u + combining diaeresis: NFC first */
        {"bu\xcc\x88" "cher.example", "xn--bcher-kva.example"},
        {"mail.m\xc3\xbc" "nchen.de", "mail.xn--mnchen-3ya.de"},
        /* Greek, lower and upper case; final sigma kept (non-transitional) */
        {"\xcf\x80\xce\xb1\xcf\x81\xce\xac\xce\xb4\xce\xb5\xce\xb9\xce\xb3\xce\xbc\xce\xb1.gr",
         "xn--hxajbheg2az3al.gr"},
        {"\xce\xa0\xce\x91\xce\xa1\xce\x86\xce\x94\xce\x95\xce\x99\xce\x93\xce\x9c\xce\x91.gr",
         "xn--hxajbheg2az3al.gr"},
        {"\xcf\x82.gr", "xn--3xa.gr"},
        /* Cyrillic, IDN TLD too */
        {"\xd0\xbf\xd1\x80\xd0\xb8\xd0\xbc\xd0\xb5\xd1\x80.\xd1\x80\xd1\x84", "xn--e1afmkfd.xn--p1ai"},
        /* CJK */
        {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e.jp", "xn--wgv71a119e.jp"},
        /* Arabic (right-to-left, satisfies the bidi rule) */
        {"\xd8\xa7\xd8\xae\xd8\xaa\xd8\xa8\xd8\xa7\xd8\xb1.example", "xn--mgbachtv.example"},
        /* full-width Latin maps to ASCII */
        {"\xef\xbc\xa5\xef\xbc\xb8.example", "ex.example"},
        /* A-labels pass (checked, lower-cased) */
        {"xn--bcher-kva.example", "xn--bcher-kva.example"},
        {"XN--BCHER-KVA.Example", "xn--bcher-kva.example"},
        {"xn--strae-oqa.de", "xn--strae-oqa.de"},
        /* ASCII: lower-cased, otherwise untouched, even IDNA-reserved "ab--" */
        {"example.test", "example.test"},
        {"MAIL.Example.TEST", "mail.example.test"},
        {"ab--cd.example", "ab--cd.example"},
        {"a-b.c-d", "a-b.c-d"},
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(v); i++) {
        char out[256];
        const char *why = "unset";
        int rc = idna_domain_to_ascii(v[i][0], strlen(v[i][0]), out, sizeof out, &why);
        if (rc) fprintf(stderr, "should convert: '%s' (%d, %s)\n", v[i][0], rc, why);
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_STR(out, v[i][1]);
        CHECK(why == NULL);
    }
}

static void test_refused(void)
{
    static const struct {
        const char *d;
        int rc;
        const char *why; /* substring */
    } v[] = {
        /* a label starting with a combining mark (U+0301) */
        {"\xcc\x81" "abc.example", -EILSEQ, "leading combining"},
        /* bidi rule: Latin then Hebrew; Hebrew then digit then Latin */
        {"a\xd7\x90.example", -EILSEQ, "bi-directional"},
        {"\xd7\x90" "1a.example", -EILSEQ, "bi-directional"},
        /* ZWJ outside the contexts CONTEXTJ allows */
        {"a\xe2\x80\x8d" "b.example", -EILSEQ, "context-j"},
        /* symbols IDNA2008 disallows (snowman, emoji), as U-label and A-label */
        {"\xe2\x98\x83.example", -EILSEQ, "disallowed"},
        {"\xf0\x9f\x92\xa9.la", -EILSEQ, "disallowed"},
        {"xn--ls8h.la", -EILSEQ, "disallowed"},
        /* broken A-labels */
        {"xn--zz.example", -EILSEQ, "punycode"},
        {"xn--.example", -EILSEQ, "punycode"},
        /* U+FF3F maps to '_', which no host name may hold */
        {"a\xef\xbc\xbf" "b.example", -EILSEQ, "host name"},
        /* ASCII rules still apply */
        {"exa_mple.test", -HERR_MALFORMED, "host name"},
        {"-a.test", -HERR_MALFORMED, "host name"},
        {"a..test", -HERR_MALFORMED, "host name"},
        {"", -HERR_MALFORMED, "empty"},
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(v); i++) {
        char out[256];
        const char *why = NULL;
        int rc = idna_domain_to_ascii(v[i].d, strlen(v[i].d), out, sizeof out, &why);
        if (rc != v[i].rc || !why || !strstr(why, v[i].why))
            fprintf(stderr, "should refuse with %d '%s': '%s' (got %d, %s)\n", v[i].rc, v[i].why,
                    v[i].d, rc, why ? why : "(null)");
        CHECK_EQ_INT(rc, v[i].rc);
        CHECK(why && strstr(why, v[i].why));
    }

    /* Over-long labels: 64 ASCII octets, and 62 x U+00FC (124 octets of
     * UTF-8, well over 63 octets once Punycode-encoded). */
    char d[300] = "";
    memset(d, 'a', 64);
    memcpy(d + 64, ".test", 6);
    char out[256];
    const char *why = NULL;
    CHECK_EQ_INT(idna_domain_to_ascii(d, strlen(d), out, sizeof out, &why), -HERR_TOO_LONG);
    CHECK(why && strstr(why, "too long"));
    for (int i = 0; i < 62; i++)
        memcpy(d + 2 * i, "\xc3\xbc", 2);
    memcpy(d + 124, ".test", 6);
    CHECK_EQ_INT(idna_domain_to_ascii(d, strlen(d), out, sizeof out, &why), -HERR_TOO_LONG);
    CHECK(why && strstr(why, "A-label"));

    /* A domain that fits as U-labels (242 octets) but not as A-labels:
     * each "a" x 50 + U+00FC label grows from 52 to 58 octets. */
    size_t o = 0;
    for (int l = 0; l < 4; l++, o += 53)
        memcpy((char *)memset(d + o, 'a', 50) + 50, "\xc3\xbc.", 3);
    memset(d + o, 'b', 30);
    d[o + 30] = '\0';
    CHECK_EQ_INT(strlen(d), 242);
    CHECK_EQ_INT(idna_domain_to_ascii(d, strlen(d), out, sizeof out, &why), -HERR_TOO_LONG);
    CHECK(why && strstr(why, "A-labels"));

    /* The output buffer bounds the result. */
    char small[8];
    CHECK_EQ_INT(idna_domain_to_ascii("example.test", 12, small, sizeof small, &why),
                 -HERR_TOO_LONG);
    CHECK_EQ_INT(idna_domain_to_ascii("a\0b.test", 8, out, sizeof out, &why), -HERR_MALFORMED);
}

static void test_normalize(void)
{
    static const char *const v[][3] = {
        /* given, wire, key */
        {"Anna@B\xc3\x9c" "CHER.example", "Anna@xn--bcher-kva.example",
         "anna@xn--bcher-kva.example"},
        {"anna@b\xc3\xbc" "cher.example", "anna@xn--bcher-kva.example",
         "anna@xn--bcher-kva.example"},
        {"Pat.Smith@Example.TEST", "Pat.Smith@example.test", "pat.smith@example.test"},
        {"user@[IPv6:2001:DB8::1]", "user@[ipv6:2001:db8::1]", "user@[ipv6:2001:db8::1]"},
        {"\"Q R\"@Example.test", "\"Q R\"@example.test", "\"q r\"@example.test"},
        /* UTF-8 local part: kept as given in both forms */
        {"J\xc3\x9crgen@Example.test", "J\xc3\x9crgen@example.test", "j\xc3\x9crgen@example.test"},
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(v); i++) {
        struct addr_norm a;
        const char *why = "unset";
        CHECK_EQ_INT(addr_normalize(v[i][0], strlen(v[i][0]), &a, &why), 0);
        CHECK_EQ_STR(a.wire, v[i][1]);
        CHECK_EQ_STR(a.key, v[i][2]);
        CHECK(a.wire[a.local_len] == '@');
        CHECK(why == NULL);
    }
    struct addr_norm a;
    const char *why = NULL;
    CHECK_EQ_INT(addr_normalize("pat@b\xc3\xbc" "cher.example", 18, &a, &why), 0);
    CHECK(!a.needs_smtputf8); /* an IDN domain alone needs no SMTPUTF8 */
    CHECK_EQ_INT(addr_normalize("j\xc3\xbcrgen@example.test", 18, &a, &why), 0);
    CHECK(a.needs_smtputf8);

    /* Syntax errors come from addr_check, IDNA errors as -EILSEQ. */
    CHECK_EQ_INT(addr_normalize("no-at.example", 13, &a, &why), -HERR_MALFORMED);
    CHECK(why && strstr(why, "missing @"));
    CHECK_EQ_INT(addr_normalize("x@\xe2\x98\x83.example", 13, &a, &why), -EILSEQ);
    CHECK(why && strstr(why, "disallowed"));

    /* A 254-octet address whose A-label form is 272 octets: refused,
     * RCPT TO could not carry it. */
    char addr[300];
    memset(addr, 'l', 64);
    addr[64] = '@';
    size_t o = 65;
    for (int l = 0; l < 3; l++, o += 53)
        memcpy((char *)memset(addr + o, 'a', 50) + 50, "\xc3\xbc.", 3);
    memset(addr + o, 'c', 30);
    o += 30;
    addr[o] = '\0';
    CHECK_EQ_INT(o, 254);
    CHECK_EQ_INT(addr_check(addr, o, NULL, NULL), 0);
    CHECK_EQ_INT(addr_normalize(addr, o, &a, &why), -HERR_MALFORMED);
    CHECK(why && strstr(why, "A-labels"));
}

int main(void)
{
    test_domains();
    test_refused();
    test_normalize();
    return check_report("test_idna");
}
