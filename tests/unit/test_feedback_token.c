/* VERP and unsubscribe tokens (src/feedback/token.c): round trips, each
 * error code, case folding, tokens of one kind presented as the other,
 * truncated and extended tokens, expiry and future dates. Forged payloads
 * are built here with the test's own encoders and HMAC, so the decoder's
 * checks are reached one at a time. */
#include <errno.h>
#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "check.h"
#include "herald/feedback.h"
#include "herald/job.h"

static struct fb_keys keys, other_keys;

static void b32(const uint8_t *p, size_t n, char *out)
{
    static const char a[] = "abcdefghijklmnopqrstuvwxyz234567";
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        acc = acc << 8 | p[i];
        for (bits += 8; bits >= 5; bits -= 5)
            out[o++] = a[(acc >> (bits - 5)) & 31];
    }
    if (bits) out[o++] = a[(acc << (5 - bits)) & 31];
    out[o] = '\0';
}

static void b64u(const uint8_t *p, size_t n, char *out)
{
    static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        acc = acc << 8 | p[i];
        for (bits += 8; bits >= 6; bits -= 6)
            out[o++] = a[(acc >> (bits - 6)) & 63];
    }
    if (bits) out[o++] = a[(acc << (6 - bits)) & 63];
    out[o] = '\0';
}

static void hmac(const uint8_t key[32], const uint8_t *p, size_t n, uint8_t out[32])
{
    unsigned int l = 0;
    HMAC(EVP_sha256(), key, 32, p, n, out, &l);
}

/* A VERP-shaped token: kind byte, ref 1, attempt 2, day, MAC under key. */
static void forge_verp(const uint8_t key[32], uint8_t kind, uint16_t day, char *out)
{
    uint8_t raw[23] = {kind, 0, 0, 0, 0, 0, 0, 0, 1, 0, 2, (uint8_t)(day >> 8), (uint8_t)day};
    uint8_t md[32];
    hmac(key, raw, 13, md);
    memcpy(raw + 13, md, 10);
    b32(raw, 23, out);
}

/* An unsubscribe-shaped token with arbitrary tenant and rcpt bytes. */
static void forge_unsub(const uint8_t key[32], uint8_t kind, const char *tenant, size_t tl,
                        const char *rcpt, size_t rl, uint16_t day, char *out)
{
    uint8_t raw[400], md[32];
    size_t n = 0;
    raw[n++] = kind;
    raw[n++] = (uint8_t)(day >> 8);
    raw[n++] = (uint8_t)day;
    raw[n++] = (uint8_t)tl;
    memcpy(raw + n, tenant, tl);
    n += tl;
    raw[n++] = (uint8_t)rl;
    memcpy(raw + n, rcpt, rl);
    n += rl;
    hmac(key, raw, n, md);
    memcpy(raw + n, md, 16);
    b64u(raw, n + 16, out);
}

static int verp(const char *tok, uint16_t now, uint16_t max_age)
{
    return fb_verp_decode(&keys, tok, strlen(tok), now, max_age, NULL, NULL, NULL);
}

static int unsub(const char *tok, uint16_t now, uint16_t max_age, struct fb_unsub *u)
{
    return fb_unsub_decode(&keys, tok, strlen(tok), now, max_age, u);
}

static void test_keys(void)
{
    uint8_t secret[FB_SECRET_LEN], secret2[FB_SECRET_LEN];
    for (int i = 0; i < FB_SECRET_LEN; i++) {
        secret[i] = (uint8_t)(i * 7 + 1);
        secret2[i] = (uint8_t)(i * 7 + 2);
    }
    CHECK_EQ_INT(fb_keys_derive(secret, &keys), 0);
    CHECK_EQ_INT(fb_keys_derive(secret2, &other_keys), 0);
    CHECK(memcmp(keys.verp, keys.unsub, 32) != 0);
    CHECK(memcmp(keys.verp, secret, 32) != 0);
    /* HMAC-SHA256(secret, label), as docs/feedback.md says. */
    uint8_t md[32];
    hmac(secret, (const uint8_t *)"herald-verp-v1", 14, md);
    CHECK(memcmp(md, keys.verp, 32) == 0);
    hmac(secret, (const uint8_t *)"herald-unsub-v1", 15, md);
    CHECK(memcmp(md, keys.unsub, 32) == 0);

    /* sha256("clinic-7\0job-42")[0..8), computed with Python's hashlib. */
    CHECK(fb_job_ref("clinic-7", "job-42") == 0x1495bfdb98371dbdull);
    CHECK(fb_job_ref("clinic-7", "job-4") != fb_job_ref("clinic-7", "job-42"));
    CHECK(fb_job_ref("ab", "c") != fb_job_ref("a", "bc"));

    CHECK_EQ_INT(fb_day_of_ms(0), 0);
    CHECK_EQ_INT(fb_day_of_ms(86400000LL * 20790 + 5), 20790);
    CHECK_EQ_INT(fb_day_of_ms(-1), 0);
}

static void test_verp_round_trip(void)
{
    const uint64_t refs[] = {0, 1, 0x1495bfdb98371dbdull, UINT64_MAX};
    const uint16_t attempts[] = {0, 1, 300, 65535};
    for (size_t i = 0; i < HERALD_ARRAY_LEN(refs); i++) {
        char tok[FB_VERP_TOKEN_LEN + 1];
        CHECK_EQ_INT(fb_verp_encode(&keys, refs[i], attempts[i], 20790, tok, sizeof tok), 0);
        CHECK_EQ_INT(strlen(tok), FB_VERP_TOKEN_LEN);
        for (size_t k = 0; tok[k]; k++)
            CHECK((tok[k] >= 'a' && tok[k] <= 'z') || (tok[k] >= '2' && tok[k] <= '7'));
        uint64_t ref = 7;
        uint16_t attempt = 7, day = 7;
        CHECK_EQ_INT(fb_verp_decode(&keys, tok, strlen(tok), 20790, 30, &ref, &attempt, &day), 0);
        CHECK(ref == refs[i]);
        CHECK_EQ_INT(attempt, attempts[i]);
        CHECK_EQ_INT(day, 20790);

        /* b+<token>@domain is an address herald itself accepts, far under
         * the 64-octet local-part limit. */
        char addr[128];
        snprintf(addr, sizeof addr, "b+%s@bounce.herald.test", tok);
        CHECK_EQ_INT(addr_check(addr, strlen(addr), NULL, NULL), 0);
        CHECK(strlen(tok) + 2 < 64);
        ref = 0;
        CHECK_EQ_INT(fb_verp_from_address(&keys, addr, strlen(addr), 20790, 30, &ref, NULL, NULL),
                     0);
        CHECK(ref == refs[i]);

        /* Receivers may fold the local part: upper case decodes too, with
         * or without the prefix. */
        char upper[128];
        for (size_t k = 0; k <= strlen(addr); k++)
            upper[k] = (addr[k] >= 'a' && addr[k] <= 'z') ? (char)(addr[k] - 32) : addr[k];
        char angled[140];
        snprintf(angled, sizeof angled, "<%s>", upper);
        CHECK_EQ_INT(
            fb_verp_from_address(&keys, angled, strlen(angled), 20790, 30, NULL, NULL, NULL), 0);
        CHECK_EQ_INT(fb_verp_decode(&keys, upper, FB_VERP_LOCAL_LEN, 20790, 30, NULL, NULL, NULL),
                     0);
        CHECK_EQ_INT(
            fb_verp_decode(&keys, upper + 2, FB_VERP_TOKEN_LEN, 20790, 30, NULL, NULL, NULL), 0);
    }
    char small[FB_VERP_TOKEN_LEN];
    CHECK_EQ_INT(fb_verp_encode(&keys, 1, 1, 1, small, sizeof small), -ENOSPC);
}

static void test_verp_errors(void)
{
    char tok[FB_VERP_TOKEN_LEN + 1], t2[64];
    CHECK_EQ_INT(fb_verp_encode(&keys, 42, 3, 1000, tok, sizeof tok), 0);
    CHECK_EQ_INT(verp(tok, 1000, 30), 0);

    /* Truncated and extended. */
    memcpy(t2, tok, FB_VERP_TOKEN_LEN - 1);
    t2[FB_VERP_TOKEN_LEN - 1] = '\0';
    CHECK_EQ_INT(verp(t2, 1000, 30), -HERR_MALFORMED);
    snprintf(t2, sizeof t2, "%sa", tok);
    CHECK_EQ_INT(verp(t2, 1000, 30), -HERR_MALFORMED);
    CHECK_EQ_INT(verp("", 1000, 30), -HERR_MALFORMED);
    /* Outside the alphabet: base32 has no 0, 1, 8, 9 or padding. */
    const char bad_chars[] = "0189=!.+ ";
    for (size_t k = 0; bad_chars[k]; k++) {
        memcpy(t2, tok, sizeof tok);
        t2[5] = bad_chars[k];
        CHECK_EQ_INT(verp(t2, 1000, 30), -HERR_MALFORMED);
    }
    /* The last character carries one unused bit; set, it is a second
     * spelling of the same bytes. */
    memcpy(t2, tok, sizeof tok);
    char *last = &t2[FB_VERP_TOKEN_LEN - 1];
    const char *alpha = "abcdefghijklmnopqrstuvwxyz234567";
    *last = alpha[(strchr(alpha, *last) - alpha) | 1];
    CHECK_EQ_INT(verp(t2, 1000, 30), -HERR_MALFORMED);

    /* One flipped character in the MAC or in the body. */
    memcpy(t2, tok, sizeof tok);
    t2[30] = t2[30] == 'a' ? 'b' : 'a';
    CHECK_EQ_INT(verp(t2, 1000, 30), -HERR_BAD_MAC);
    memcpy(t2, tok, sizeof tok);
    t2[4] = t2[4] == 'a' ? 'b' : 'a';
    CHECK_EQ_INT(verp(t2, 1000, 30), -HERR_BAD_MAC);
    /* Another deployment's key. */
    CHECK_EQ_INT(fb_verp_decode(&other_keys, tok, strlen(tok), 1000, 30, NULL, NULL, NULL),
                 -HERR_BAD_MAC);

    /* Expiry: max_age days old is still good, one more is not. */
    CHECK_EQ_INT(verp(tok, 1030, 30), 0);
    CHECK_EQ_INT(verp(tok, 1031, 30), -HERR_EXPIRED);
    CHECK_EQ_INT(verp(tok, 60000, 30), -HERR_EXPIRED);
    /* A day ahead is clock skew; two days is from the future. */
    CHECK_EQ_INT(verp(tok, 999, 30), 0);
    CHECK_EQ_INT(verp(tok, 998, 30), -HERR_FUTURE);
    CHECK_EQ_INT(verp(tok, 0, 30), -HERR_FUTURE);
    /* Dates are only judged on genuine tokens. */
    memcpy(t2, tok, sizeof tok);
    t2[30] = t2[30] == 'a' ? 'b' : 'a';
    CHECK_EQ_INT(verp(t2, 5000, 30), -HERR_BAD_MAC);

    /* Outputs are untouched on failure. */
    uint64_t ref = 99;
    CHECK_EQ_INT(fb_verp_decode(&keys, tok, strlen(tok), 1031, 30, &ref, NULL, NULL),
                 -HERR_EXPIRED);
    CHECK(ref == 99);

    /* Address forms. */
    char addr[128];
    snprintf(addr, sizeof addr, "c+%s@x.test", tok);
    CHECK_EQ_INT(fb_verp_from_address(&keys, addr, strlen(addr), 1000, 30, NULL, NULL, NULL),
                 -HERR_MALFORMED);
    snprintf(addr, sizeof addr, "%s@x.test", tok);
    CHECK_EQ_INT(fb_verp_from_address(&keys, addr, strlen(addr), 1000, 30, NULL, NULL, NULL),
                 -HERR_MALFORMED);
    snprintf(addr, sizeof addr, "b+%s", tok);
    CHECK_EQ_INT(fb_verp_from_address(&keys, addr, strlen(addr), 1000, 30, NULL, NULL, NULL),
                 -HERR_MALFORMED);
    snprintf(addr, sizeof addr, "b+%s@", tok);
    CHECK_EQ_INT(fb_verp_from_address(&keys, addr, strlen(addr), 1000, 30, NULL, NULL, NULL),
                 -HERR_MALFORMED);
    snprintf(addr, sizeof addr, "b+%sa@x.test", tok);
    CHECK_EQ_INT(fb_verp_from_address(&keys, addr, strlen(addr), 1000, 30, NULL, NULL, NULL),
                 -HERR_MALFORMED);
    CHECK_EQ_INT(fb_verp_from_address(&keys, "", 0, 1000, 30, NULL, NULL, NULL), -HERR_MALFORMED);
}

static void test_kinds_apart(void)
{
    char tok[FB_UNSUB_TOKEN_MAX + 1];
    struct fb_unsub u;

    /* Test forger sanity: with the right key and kind it verifies. */
    forge_verp(keys.verp, 0x01, 1000, tok);
    CHECK_EQ_INT(verp(tok, 1000, 30), 0);
    /* A VERP layout signed with the unsubscribe subkey (or the secret
     * itself) does not verify as VERP. */
    forge_verp(keys.unsub, 0x01, 1000, tok);
    CHECK_EQ_INT(verp(tok, 1000, 30), -HERR_BAD_MAC);
    /* The unsubscribe kind byte in a VERP token is refused before the MAC. */
    forge_verp(keys.verp, 0x02, 1000, tok);
    CHECK_EQ_INT(verp(tok, 1000, 30), -HERR_MALFORMED);

    forge_unsub(keys.unsub, 0x02, "clinic-7", 8, "anna@example.org", 16, 1000, tok);
    CHECK_EQ_INT(unsub(tok, 1000, 30, &u), 0);
    forge_unsub(keys.verp, 0x02, "clinic-7", 8, "anna@example.org", 16, 1000, tok);
    CHECK_EQ_INT(unsub(tok, 1000, 30, &u), -HERR_BAD_MAC);
    forge_unsub(keys.unsub, 0x01, "clinic-7", 8, "anna@example.org", 16, 1000, tok);
    CHECK_EQ_INT(unsub(tok, 1000, 30, &u), -HERR_MALFORMED);

    /* Real tokens of one kind given to the other decoder. */
    char vt[FB_VERP_TOKEN_LEN + 1];
    CHECK_EQ_INT(fb_verp_encode(&keys, 5, 1, 1000, vt, sizeof vt), 0);
    CHECK(unsub(vt, 1000, 30, &u) < 0);
    CHECK_EQ_INT(fb_unsub_encode(&keys, "t", "a@b.c", 1000, tok, sizeof tok), 0);
    CHECK(verp(tok, 1000, 30) < 0);
}

static void test_unsub(void)
{
    char tok[FB_UNSUB_TOKEN_MAX + 1], t2[FB_UNSUB_TOKEN_MAX + 8];
    struct fb_unsub u;
    CHECK_EQ_INT(
        fb_unsub_encode(&keys, "clinic-7", "Anna.Berg+x@Example.ORG", 20790, tok, sizeof tok), 0);
    for (size_t k = 0; tok[k]; k++)
        CHECK(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", tok[k]));
    CHECK_EQ_INT(unsub(tok, 20790, 365, &u), 0);
    CHECK_EQ_STR(u.tenant, "clinic-7");
    CHECK_EQ_STR(u.rcpt, "Anna.Berg+x@Example.ORG");
    CHECK_EQ_INT(u.day, 20790);

    /* The largest token fits FB_UNSUB_TOKEN_MAX. */
    char tenant[FB_TENANT_MAX + 1], rcpt[FB_ADDR_MAX + 1];
    memset(tenant, 'T', FB_TENANT_MAX);
    tenant[FB_TENANT_MAX] = '\0';
    memset(rcpt, 'r', FB_ADDR_MAX);
    rcpt[60] = '@';
    rcpt[FB_ADDR_MAX] = '\0';
    CHECK_EQ_INT(fb_unsub_encode(&keys, tenant, rcpt, 7, tok, sizeof tok), 0);
    CHECK_EQ_INT(strlen(tok), FB_UNSUB_TOKEN_MAX);
    CHECK_EQ_INT(unsub(tok, 7, 0, &u), 0);
    CHECK_EQ_STR(u.rcpt, rcpt);
    CHECK_EQ_INT(fb_unsub_encode(&keys, tenant, rcpt, 7, t2, FB_UNSUB_TOKEN_MAX), -ENOSPC);

    /* Encode refuses what decode would. */
    const char *bad_tenants[] = {"", "a b", "a/b", "caf\xc3\xa9", "a\nb"};
    for (size_t i = 0; i < HERALD_ARRAY_LEN(bad_tenants); i++)
        CHECK_EQ_INT(fb_unsub_encode(&keys, bad_tenants[i], "a@b.c", 7, t2, sizeof t2), -EINVAL);
    char long_tenant[FB_TENANT_MAX + 2];
    memset(long_tenant, 'a', FB_TENANT_MAX + 1);
    long_tenant[FB_TENANT_MAX + 1] = '\0';
    CHECK_EQ_INT(fb_unsub_encode(&keys, long_tenant, "a@b.c", 7, t2, sizeof t2), -EINVAL);
    const char *bad_rcpts[] = {"", "ab.c", "@b.c", "a@", "a b@c.d", "a@b\r\n.c", "a\x7f@b.c"};
    for (size_t i = 0; i < HERALD_ARRAY_LEN(bad_rcpts); i++)
        CHECK_EQ_INT(fb_unsub_encode(&keys, "t", bad_rcpts[i], 7, t2, sizeof t2), -EINVAL);
    char long_rcpt[FB_ADDR_MAX + 2];
    memset(long_rcpt, 'a', FB_ADDR_MAX + 1);
    long_rcpt[3] = '@';
    long_rcpt[FB_ADDR_MAX + 1] = '\0';
    CHECK_EQ_INT(fb_unsub_encode(&keys, "t", long_rcpt, 7, t2, sizeof t2), -EINVAL);

    /* Signed, yet naming what encode refuses: still refused. */
    forge_unsub(keys.unsub, 0x02, "t", 1, "a b@c.d", 7, 1000, t2);
    CHECK_EQ_INT(unsub(t2, 1000, 30, &u), -HERR_MALFORMED);
    forge_unsub(keys.unsub, 0x02, "t", 1, "a\0@c.d", 6, 1000, t2);
    CHECK_EQ_INT(unsub(t2, 1000, 30, &u), -HERR_MALFORMED);
    forge_unsub(keys.unsub, 0x02, "t", 1, "abc.d", 5, 1000, t2);
    CHECK_EQ_INT(unsub(t2, 1000, 30, &u), -HERR_MALFORMED);
    forge_unsub(keys.unsub, 0x02, "t;x", 3, "a@c.d", 5, 1000, t2);
    CHECK_EQ_INT(unsub(t2, 1000, 30, &u), -HERR_MALFORMED);
    CHECK_EQ_STR(u.tenant, "");

    /* Truncated, extended, bad alphabet, non-canonical tail, padding. */
    CHECK_EQ_INT(fb_unsub_encode(&keys, "clinic-7", "anna@example.org", 1000, tok, sizeof tok), 0);
    size_t n = strlen(tok);
    CHECK_EQ_INT(unsub(tok, 1000, 30, &u), 0);
    for (size_t cut = 1; cut <= 5; cut++) {
        memcpy(t2, tok, n - cut);
        t2[n - cut] = '\0';
        CHECK(unsub(t2, 1000, 30, &u) == -HERR_MALFORMED ||
              unsub(t2, 1000, 30, &u) == -HERR_BAD_MAC);
    }
    memcpy(t2, tok, n - 4);
    t2[n - 4] = '\0';
    CHECK_EQ_INT(unsub(t2, 1000, 30, &u), -HERR_MALFORMED);
    snprintf(t2, sizeof t2, "%sAAAA", tok);
    CHECK_EQ_INT(unsub(t2, 1000, 30, &u), -HERR_MALFORMED);
    snprintf(t2, sizeof t2, "%s=", tok);
    CHECK_EQ_INT(unsub(t2, 1000, 30, &u), -HERR_MALFORMED);
    memcpy(t2, tok, n + 1);
    t2[3] = '+'; /* standard base64, not base64url */
    CHECK_EQ_INT(unsub(t2, 1000, 30, &u), -HERR_MALFORMED);
    CHECK_EQ_INT(unsub("", 1000, 30, &u), -HERR_MALFORMED);
    if (n % 4 != 0) {
        memcpy(t2, tok, n + 1);
        const char *a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        t2[n - 1] = a[(strchr(a, t2[n - 1]) - a) | 1];
        CHECK_EQ_INT(unsub(t2, 1000, 30, &u), -HERR_MALFORMED);
    }
    char big[FB_UNSUB_TOKEN_MAX + 5];
    memset(big, 'A', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_EQ_INT(unsub(big, 1000, 30, &u), -HERR_MALFORMED);

    /* MAC, other key, dates. */
    memcpy(t2, tok, n + 1);
    t2[n - 3] = t2[n - 3] == 'A' ? 'B' : 'A';
    CHECK_EQ_INT(unsub(t2, 1000, 30, &u), -HERR_BAD_MAC);
    memcpy(t2, tok, n + 1);
    t2[8] = t2[8] == 'A' ? 'B' : 'A'; /* in the tenant */
    CHECK_EQ_INT(unsub(t2, 1000, 30, &u), -HERR_BAD_MAC);
    CHECK_EQ_INT(fb_unsub_decode(&other_keys, tok, n, 1000, 30, &u), -HERR_BAD_MAC);
    CHECK_EQ_INT(unsub(tok, 1030, 30, &u), 0);
    CHECK_EQ_INT(unsub(tok, 1031, 30, &u), -HERR_EXPIRED);
    CHECK_EQ_STR(u.rcpt, "");
    CHECK_EQ_INT(unsub(tok, 999, 30, &u), 0);
    CHECK_EQ_INT(unsub(tok, 998, 30, &u), -HERR_FUTURE);
}

int main(void)
{
    test_keys();
    test_verp_round_trip();
    test_verp_errors();
    test_kinds_apart();
    test_unsub();
    return check_report("test_feedback_token");
}
