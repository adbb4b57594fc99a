/* The token decoders on arbitrary bytes, and round trips of values taken
 * from the input. Decoding answers 0 or one of the four token errors;
 * whatever encodes decodes to the same values; a token changed in one
 * character (other than its letter case) never verifies. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "herald/feedback.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool token_err(int rc)
{
    return rc == -HERR_MALFORMED || rc == -HERR_BAD_MAC || rc == -HERR_EXPIRED ||
           rc == -HERR_FUTURE;
}

static const struct fb_keys *keys(void)
{
    static struct fb_keys k;
    static bool ready;
    if (!ready) {
        uint8_t secret[FB_SECRET_LEN];
        for (int i = 0; i < FB_SECRET_LEN; i++)
            secret[i] = (uint8_t)(i * 7 + 1);
        if (fb_keys_derive(secret, &k)) abort();
        ready = true;
    }
    return &k;
}

static uint64_t take(const uint8_t **p, size_t *n, unsigned bytes)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < bytes; i++) {
        v = v << 8 | (*n ? **p : 0);
        if (*n) {
            (*p)++;
            (*n)--;
        }
    }
    return v;
}

static void verp_round_trip(const uint8_t *p, size_t n)
{
    uint64_t ref = take(&p, &n, 8);
    uint16_t attempt = (uint16_t)take(&p, &n, 2), day = (uint16_t)take(&p, &n, 2);
    size_t pos = take(&p, &n, 1) % FB_VERP_TOKEN_LEN;
    char c = (char)take(&p, &n, 1);
    char tok[FB_VERP_TOKEN_LEN + 1];
    if (fb_verp_encode(keys(), ref, attempt, day, tok, sizeof tok)) abort();
    uint64_t r2;
    uint16_t a2, d2;
    if (fb_verp_decode(keys(), tok, strlen(tok), day, 0, &r2, &a2, &d2) || r2 != ref ||
        a2 != attempt || d2 != day)
        abort();
    char orig = tok[pos];
    tok[pos] = c;
    int rc = fb_verp_decode(keys(), tok, strlen(tok), day, 0, NULL, NULL, NULL);
    char lc = c >= 'A' && c <= 'Z' ? (char)(c - 'A' + 'a') : c;
    if (lc != orig && c != '\0' && rc == 0) abort();
    if (rc != 0 && !token_err(rc)) abort();
}

static void unsub_round_trip(const uint8_t *p, size_t n)
{
    static const char tchars[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-";
    uint16_t day = (uint16_t)take(&p, &n, 2);
    size_t tl = take(&p, &n, 1) % 70, rl = take(&p, &n, 2) % 300;
    char tenant[80], rcpt[320];
    for (size_t i = 0; i < tl; i++)
        tenant[i] = tchars[take(&p, &n, 1) % (sizeof tchars - 1)];
    tenant[tl] = '\0';
    for (size_t i = 0; i < rl; i++) {
        char c = (char)take(&p, &n, 1);
        rcpt[i] = c ? c : '@';
    }
    rcpt[rl] = '\0';
    char tok[FB_UNSUB_TOKEN_MAX + 1];
    int rc = fb_unsub_encode(keys(), tenant, rcpt, day, tok, sizeof tok);
    if (rc == -22 /* EINVAL */) return;
    if (rc) abort();
    struct fb_unsub u;
    if (fb_unsub_decode(keys(), tok, strlen(tok), day, 0, &u) || strcmp(u.tenant, tenant) ||
        strcmp(u.rcpt, rcpt) || u.day != day)
        abort();
    size_t pos = take(&p, &n, 2) % strlen(tok);
    char c = (char)take(&p, &n, 1);
    if (c == tok[pos] || c == '\0') return;
    tok[pos] = c;
    rc = fb_unsub_decode(keys(), tok, strlen(tok), day, 0, &u);
    if (rc == 0 || !token_err(rc)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0) return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    char *copy = malloc(n ? n : 1);
    if (!copy) return 0;
    memcpy(copy, s, n);
    uint16_t now = (uint16_t)(data[0] * 97);
    int rc;
    switch (data[0] % 4) {
    case 0:
        rc = fb_verp_decode(keys(), copy, n, now, 30, NULL, NULL, NULL);
        if (rc != 0 && !token_err(rc)) abort();
        rc = fb_verp_from_address(keys(), copy, n, now, 30, NULL, NULL, NULL);
        if (rc != 0 && !token_err(rc)) abort();
        break;
    case 1: {
        struct fb_unsub u;
        rc = fb_unsub_decode(keys(), copy, n, now, 30, &u);
        if (rc != 0 && !token_err(rc)) abort();
        if (rc != 0 && (u.tenant[0] || u.rcpt[0])) abort();
        break;
    }
    case 2:
        verp_round_trip(data + 1, n);
        break;
    default:
        unsub_round_trip(data + 1, n);
        break;
    }
    free(copy);
    return 0;
}
