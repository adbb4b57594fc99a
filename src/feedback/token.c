/* Signed tokens: VERP return-path tokens (base32, fit a dot-atom local part
 * a receiver may fold to lower case) and one-click unsubscribe tokens
 * (base64url, for a URL path). Layouts in docs/feedback.md.
 *
 * Decoders are strict about shape: exact lengths, canonical trailing bits,
 * lengths inside the payload that add up to the whole. A token has one
 * spelling (up to letter case for VERP), so a cache or a log keyed on it
 * cannot be fooled by a second one. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "herald/feedback.h"

#define KIND_VERP  0x01
#define KIND_UNSUB 0x02

#define VERP_BODY 13 /* kind, ref, attempt, day */
#define VERP_MAC  10
#define VERP_RAW  (VERP_BODY + VERP_MAC)

#define UNSUB_MAC     16
#define UNSUB_RAW_MAX (1 + 2 + 1 + FB_TENANT_MAX + 1 + FB_ADDR_MAX + UNSUB_MAC)

static const char b32_alpha[] = "abcdefghijklmnopqrstuvwxyz234567";
static const char b64u_alpha[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static int mac(const uint8_t key[32], const uint8_t *p, size_t n, uint8_t out[32])
{
    unsigned int olen = 0;
    if (!HMAC(EVP_sha256(), key, 32, p, n, out, &olen) || olen != 32) return -EIO;
    return 0;
}

int fb_keys_derive(const uint8_t secret[FB_SECRET_LEN], struct fb_keys *out)
{
    static const char verp_label[] = "herald-verp-v1", unsub_label[] = "herald-unsub-v1";
    int rc = mac(secret, (const uint8_t *)verp_label, sizeof verp_label - 1, out->verp);
    if (!rc) rc = mac(secret, (const uint8_t *)unsub_label, sizeof unsub_label - 1, out->unsub);
    if (rc) memset(out, 0, sizeof *out);
    return rc;
}

uint64_t fb_job_ref(const char *tenant, const char *id)
{
    uint8_t md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    uint64_t ref = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    /* The NUL between the two keeps ("ab","c") and ("a","bc") apart. */
    if (c && EVP_DigestInit_ex(c, EVP_sha256(), NULL) &&
        EVP_DigestUpdate(c, tenant, strlen(tenant) + 1) && EVP_DigestUpdate(c, id, strlen(id)) &&
        EVP_DigestFinal_ex(c, md, &mdlen) && mdlen >= 8) {
        for (int i = 0; i < 8; i++)
            ref = ref << 8 | md[i];
    }
    EVP_MD_CTX_free(c);
    return ref;
}

uint16_t fb_day_of_ms(int64_t wall_ms)
{
    if (wall_ms < 0) return 0;
    return (uint16_t)(wall_ms / 86400000);
}

/* Issued `day`, checked on `now_day`: too old, or more than a day ahead
 * (clocks of two hosts of one deployment may straddle midnight). */
static int check_age(uint16_t day, uint16_t now_day, uint16_t max_age_days)
{
    if ((int)day > (int)now_day + 1) return -HERR_FUTURE;
    if ((int)now_day - (int)day > (int)max_age_days) return -HERR_EXPIRED;
    return 0;
}

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

/* ---- VERP ------------------------------------------------------------------ */

int fb_verp_encode(const struct fb_keys *keys, uint64_t ref, uint16_t attempt, uint16_t day,
                   char *out, size_t cap)
{
    if (cap < FB_VERP_TOKEN_LEN + 1) return -ENOSPC;
    uint8_t raw[VERP_RAW], md[32];
    raw[0] = KIND_VERP;
    for (int i = 0; i < 8; i++)
        raw[1 + i] = (uint8_t)(ref >> (56 - 8 * i));
    put16(raw + 9, attempt);
    put16(raw + 11, day);
    int rc = mac(keys->verp, raw, VERP_BODY, md);
    if (rc) return rc;
    memcpy(raw + VERP_BODY, md, VERP_MAC);
    /* 184 bits in 37 five-bit groups; the last group's low bit is 0. */
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < VERP_RAW; i++) {
        acc = acc << 8 | raw[i];
        bits += 8;
        while (bits >= 5) {
            out[o++] = b32_alpha[(acc >> (bits - 5)) & 31];
            bits -= 5;
        }
    }
    if (bits) out[o++] = b32_alpha[(acc << (5 - bits)) & 31];
    out[o] = '\0';
    return 0;
}

static int b32_value(char c)
{
    if (c >= 'a' && c <= 'z') return c - 'a';
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= '2' && c <= '7') return c - '2' + 26;
    return -1;
}

int fb_verp_decode(const struct fb_keys *keys, const char *local, size_t len, uint16_t now_day,
                   uint16_t max_age_days, uint64_t *ref, uint16_t *attempt, uint16_t *day)
{
    size_t plen = sizeof FB_VERP_PREFIX - 1;
    if (len == FB_VERP_LOCAL_LEN && strncasecmp(local, FB_VERP_PREFIX, plen) == 0) {
        local += plen;
        len -= plen;
    }
    if (len != FB_VERP_TOKEN_LEN) return -HERR_MALFORMED;
    uint8_t raw[VERP_RAW], md[32];
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b32_value(local[i]);
        if (v < 0) return -HERR_MALFORMED;
        acc = acc << 5 | (uint32_t)v;
        bits += 5;
        if (bits >= 8) {
            raw[o++] = (uint8_t)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    /* One bit left over; it must be 0, or the token has two spellings. */
    if (bits != 1 || (acc & 1) || o != VERP_RAW) return -HERR_MALFORMED;
    if (raw[0] != KIND_VERP) return -HERR_MALFORMED;
    int rc = mac(keys->verp, raw, VERP_BODY, md);
    if (rc) return rc;
    if (CRYPTO_memcmp(md, raw + VERP_BODY, VERP_MAC) != 0) return -HERR_BAD_MAC;
    uint16_t d = get16(raw + 11);
    if ((rc = check_age(d, now_day, max_age_days))) return rc;
    if (ref) {
        uint64_t r = 0;
        for (int i = 0; i < 8; i++)
            r = r << 8 | raw[1 + i];
        *ref = r;
    }
    if (attempt) *attempt = get16(raw + 9);
    if (day) *day = d;
    return 0;
}

int fb_verp_from_address(const struct fb_keys *keys, const char *addr, size_t len, uint16_t now_day,
                         uint16_t max_age_days, uint64_t *ref, uint16_t *attempt, uint16_t *day)
{
    if (len >= 2 && addr[0] == '<' && addr[len - 1] == '>') {
        addr++;
        len -= 2;
    }
    const char *at = memchr(addr, '@', len);
    if (!at || at + 1 == addr + len) return -HERR_MALFORMED;
    size_t local = (size_t)(at - addr), plen = sizeof FB_VERP_PREFIX - 1;
    if (local != FB_VERP_LOCAL_LEN || strncasecmp(addr, FB_VERP_PREFIX, plen) != 0)
        return -HERR_MALFORMED;
    return fb_verp_decode(keys, addr + plen, local - plen, now_day, max_age_days, ref, attempt,
                          day);
}

/* ---- unsubscribe ----------------------------------------------------------- */

static bool tenant_ok(const char *t, size_t n)
{
    if (n == 0 || n > FB_TENANT_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

/* What a suppression entry may be keyed on: no control byte (NUL
 * included), no space, an '@' that is neither first nor last. */
static bool rcpt_ok(const char *r, size_t n)
{
    if (n < 3 || n > FB_ADDR_MAX) return false;
    bool at = false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)r[i];
        if (c <= ' ' || c == 0x7f) return false;
        if (c == '@' && i > 0 && i + 1 < n) at = true;
    }
    return at;
}

int fb_unsub_encode(const struct fb_keys *keys, const char *tenant, const char *rcpt, uint16_t day,
                    char *out, size_t cap)
{
    size_t tl = strnlen(tenant, FB_TENANT_MAX + 1), rl = strnlen(rcpt, FB_ADDR_MAX + 1);
    if (!tenant_ok(tenant, tl) || !rcpt_ok(rcpt, rl)) return -EINVAL;
    uint8_t raw[UNSUB_RAW_MAX], md[32];
    size_t n = 0;
    raw[n++] = KIND_UNSUB;
    put16(raw + n, day);
    n += 2;
    raw[n++] = (uint8_t)tl;
    memcpy(raw + n, tenant, tl);
    n += tl;
    raw[n++] = (uint8_t)rl;
    memcpy(raw + n, rcpt, rl);
    n += rl;
    int rc = mac(keys->unsub, raw, n, md);
    if (rc) return rc;
    memcpy(raw + n, md, UNSUB_MAC);
    n += UNSUB_MAC;
    size_t need = (n * 8 + 5) / 6;
    if (cap < need + 1) return -ENOSPC;
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < n; i++) {
        acc = acc << 8 | raw[i];
        bits += 8;
        while (bits >= 6) {
            out[o++] = b64u_alpha[(acc >> (bits - 6)) & 63];
            bits -= 6;
        }
    }
    if (bits) out[o++] = b64u_alpha[(acc << (6 - bits)) & 63];
    out[o] = '\0';
    return 0;
}

static int b64u_value(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '-') return 62;
    if (c == '_') return 63;
    return -1;
}

int fb_unsub_decode(const struct fb_keys *keys, const char *token, size_t len, uint16_t now_day,
                    uint16_t max_age_days, struct fb_unsub *out)
{
    memset(out, 0, sizeof *out);
    if (len == 0 || len > FB_UNSUB_TOKEN_MAX || len % 4 == 1) return -HERR_MALFORMED;
    uint8_t raw[UNSUB_RAW_MAX], md[32];
    size_t n = 0;
    uint32_t acc = 0;
    int bits = 0;
    for (size_t i = 0; i < len; i++) {
        int v = b64u_value(token[i]);
        if (v < 0) return -HERR_MALFORMED;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            raw[n++] = (uint8_t)(acc >> (bits - 8));
            bits -= 8;
        }
    }
    /* Leftover bits (2 or 4) must be zero: one spelling per token. */
    if (bits && (acc & ((1u << bits) - 1))) return -HERR_MALFORMED;
    /* kind, day, tenant length, >= 1 tenant byte, rcpt length, >= 3, MAC */
    if (n < 1 + 2 + 1 + 1 + 1 + 3 + UNSUB_MAC || raw[0] != KIND_UNSUB) return -HERR_MALFORMED;
    size_t tl = raw[3];
    if (4 + tl + 1 > n - UNSUB_MAC) return -HERR_MALFORMED;
    size_t rl = raw[4 + tl];
    size_t body = 4 + tl + 1 + rl;
    if (body + UNSUB_MAC != n) return -HERR_MALFORMED;
    int rc = mac(keys->unsub, raw, body, md);
    if (rc) return rc;
    if (CRYPTO_memcmp(md, raw + body, UNSUB_MAC) != 0) return -HERR_BAD_MAC;
    const char *tenant = (const char *)raw + 4, *rcpt = (const char *)raw + 4 + tl + 1;
    /* Signed by us, yet checked as if it were not: a key leak or an old
     * encoder must not put a control byte into a suppression key. */
    if (!tenant_ok(tenant, tl) || !rcpt_ok(rcpt, rl)) return -HERR_MALFORMED;
    uint16_t d = get16(raw + 1);
    if ((rc = check_age(d, now_day, max_age_days))) return rc;
    memcpy(out->tenant, tenant, tl);
    memcpy(out->rcpt, rcpt, rl);
    out->day = d;
    return 0;
}
