/* Punycode (RFC 3492 sample strings and common IDN names), domain -> A-label
 * conversion and its limits, and the typo distance rules. */
#include <string.h>

#include "check.h"
#include "herald/job.h"

/* UTF-8 -> code points, for feeding punycode_encode. */
static size_t cps_of(const char *s, uint32_t *out, size_t cap)
{
    size_t n = 0;
    const unsigned char *u = (const unsigned char *)s;
    while (*u && n < cap) {
        uint32_t cp;
        int k = *u < 0x80 ? 1 : *u < 0xe0 ? 2 : *u < 0xf0 ? 3 : 4;
        cp = k == 1 ? *u : (uint32_t)(*u & (0xff >> (k + 1)));
        for (int i = 1; i < k; i++)
            cp = (cp << 6) | (u[i] & 0x3f);
        out[n++] = cp;
        u += k;
    }
    return n;
}

static void test_vectors(void)
{
    static const char *const v[][2] = {
        {"b\xc3\xbc" "cher", "bcher-kva"},
        {"m\xc3\xbc" "nchen", "mnchen-3ya"},
        {"\xc3\xbc", "tda"},
        {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e", "wgv71a119e"},
        {"\xd0\xbf\xd1\x80\xd0\xb8\xd0\xbc\xd0\xb5\xd1\x80", "e1afmkfd"},
        /* RFC 3492 7.1 (A) Arabic (Egyptian) and (B) Chinese (simplified) */
        {"\xd9\x84\xd9\x8a\xd9\x87\xd9\x85\xd8\xa7\xd8\xa8\xd8\xaa\xd9\x83\xd9\x84\xd9\x85\xd9\x88"
         "\xd8\xb4\xd8\xb9\xd8\xb1\xd8\xa8\xd9\x8a\xd8\x9f",
         "egbpdaj6bu4bxfgehfvwxn"},
        {"\xe4\xbb\x96\xe4\xbb\xac\xe4\xb8\xba\xe4\xbb\x80\xe4\xb9\x88\xe4\xb8\x8d\xe8\xaf\xb4\xe4"
         "\xb8\xad\xe6\x96\x87",
         "ihqwcrb4cv8a8dqg056pqjye"},
        /* (C) Czech, mixed case kept by the bare encoder */
        {"Pro\xc4\x8dprost\xc4\x9bnemluv\xc3\xad\xc4\x8d" "esky", "Proprostnemluvesky-uyb24dma41a"},
        {"abc-\xc3\xbc-def", "abc--def-95a"},
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(v); i++) {
        uint32_t cps[64];
        size_t n = cps_of(v[i][0], cps, 64);
        char out[128];
        size_t len = 0;
        CHECK_EQ_INT(punycode_encode(cps, n, out, sizeof out, &len), 0);
        CHECK_EQ_STR(out, v[i][1]);
        CHECK_EQ_INT(len, strlen(v[i][1]));
    }
    uint32_t cps[8];
    size_t n = cps_of("b\xc3\xbc" "cher", cps, 8);
    char small[5];
    CHECK_EQ_INT(punycode_encode(cps, n, small, sizeof small, NULL), -HERR_TOO_LONG);
}

static void test_domains(void)
{
    static const char *const v[][2] = {
        {"b\xc3\xbc" "cher.example", "xn--bcher-kva.example"},
        {"B\xc3\x9c" "CHER.Example", "xn--bcher-kva.example"}, /* Latin-1 capitals folded */
        {"mail.m\xc3\xbc" "nchen.de", "mail.xn--mnchen-3ya.de"},
        {"example.test", "example.test"},
        {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e.jp", "xn--wgv71a119e.jp"},
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(v); i++) {
        char out[256];
        const char *why = NULL;
        CHECK_EQ_INT(addr_domain_to_ascii(v[i][0], strlen(v[i][0]), out, sizeof out, &why), 0);
        CHECK_EQ_STR(out, v[i][1]);
    }
    /* 62 x U+00FC fits in 63 code points but not in a 63-octet A-label */
    char long_label[160] = "";
    for (int i = 0; i < 62; i++)
        strcat(long_label, "\xc3\xbc");
    strcat(long_label, ".test");
    char out[256];
    const char *why = NULL;
    CHECK_EQ_INT(addr_domain_to_ascii(long_label, strlen(long_label), out, sizeof out, &why),
                 -HERR_MALFORMED);
    CHECK(why && strstr(why, "A-label"));
    CHECK_EQ_INT(addr_domain_to_ascii("a\xff.test", 7, out, sizeof out, &why), -HERR_MALFORMED);
}

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
    test_vectors();
    test_domains();
    test_typo();
    return check_report("test_punycode");
}
