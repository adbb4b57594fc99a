/* Growable byte buffer. Growth doubles so appends are amortised O(1). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald/core.h"

void hbuf_init(struct hbuf *b)
{
    b->data = NULL;
    b->len = 0;
    b->cap = 0;
}

void hbuf_free(struct hbuf *b)
{
    free(b->data);
    hbuf_init(b);
}

void hbuf_reset(struct hbuf *b)
{
    b->len = 0;
    if (b->cap)
        b->data[0] = '\0';
}

int hbuf_reserve(struct hbuf *b, size_t extra)
{
    if (extra > SIZE_MAX / 2 - b->len)
        return -ENOMEM;
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->data, cap);
    if (!p)
        return -ENOMEM;
    b->data = p;
    b->cap = cap;
    return 0;
}

int hbuf_append(struct hbuf *b, const void *p, size_t n)
{
    int rc = hbuf_reserve(b, n);
    if (rc)
        return rc;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int hbuf_append_str(struct hbuf *b, const char *s)
{
    return hbuf_append(b, s, strlen(s));
}

int hbuf_append_char(struct hbuf *b, char c)
{
    return hbuf_append(b, &c, 1);
}

int hbuf_vappendf(struct hbuf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0)
        return -EINVAL;
    int rc = hbuf_reserve(b, (size_t)n);
    if (rc)
        return rc;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int hbuf_appendf(struct hbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int rc = hbuf_vappendf(b, fmt, ap);
    va_end(ap);
    return rc;
}

void hbuf_consume(struct hbuf *b, size_t n)
{
    if (n >= b->len) {
        hbuf_reset(b);
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
    b->data[b->len] = '\0';
}

static const char b64_chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int hbuf_append_base64(struct hbuf *b, const void *p, size_t n)
{
    const unsigned char *s = p;
    int rc = hbuf_reserve(b, (n + 2) / 3 * 4);
    if (rc) return rc;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)s[i] << 16;
        if (i + 1 < n) v |= (uint32_t)s[i + 1] << 8;
        if (i + 2 < n) v |= s[i + 2];
        char q[4] = {b64_chars[(v >> 18) & 63], b64_chars[(v >> 12) & 63],
                     i + 1 < n ? b64_chars[(v >> 6) & 63] : '=', i + 2 < n ? b64_chars[v & 63] : '='};
        if ((rc = hbuf_append(b, q, 4))) return rc;
    }
    return 0;
}
