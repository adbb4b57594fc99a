/* The one-click unsubscribe request parser (herald/unsub.h). Strict on
 * purpose: the endpoint faces the internet (behind a TLS terminator) and
 * serves exactly two requests, so anything unexpected is refused rather
 * than interpreted. */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "herald/unsub.h"

static bool token_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_';
}

/* The end of the header block (the index after its empty line), or 0. */
static size_t head_end(const char *buf, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (buf[i] != '\n') continue;
        if (i + 1 < len && buf[i + 1] == '\n') return i + 2;
        if (i + 2 < len && buf[i + 1] == '\r' && buf[i + 2] == '\n') return i + 3;
    }
    return 0;
}

static int refuse(struct unsub_request *out, int status)
{
    out->status = status;
    return 0;
}

/* The request line: METHOD SP /u/<token>[?query] SP HTTP/1.x. */
static int request_line(const char *p, size_t n, struct unsub_request *out)
{
    static const struct {
        const char *name;
        enum unsub_method m;
    } methods[] = {{"GET ", UNSUB_GET}, {"HEAD ", UNSUB_HEAD}, {"POST ", UNSUB_POST}};
    size_t i = 0;
    bool known = false;
    for (size_t k = 0; k < sizeof methods / sizeof methods[0] && !known; k++) {
        size_t ml = strlen(methods[k].name);
        if (n >= ml && memcmp(p, methods[k].name, ml) == 0) {
            out->method = methods[k].m;
            i = ml;
            known = true;
        }
    }
    const char *sp1 = memchr(p, ' ', n);
    if (!sp1) return refuse(out, 400);
    const char *sp2 = memchr(sp1 + 1, ' ', n - (size_t)(sp1 + 1 - p));
    if (!sp2) return refuse(out, 400);
    const char *ver = sp2 + 1;
    size_t vlen = n - (size_t)(ver - p);
    if (memchr(ver, ' ', vlen)) return refuse(out, 400);
    if (vlen != 8 || memcmp(ver, "HTTP/1.", 7) != 0)
        return refuse(out, vlen >= 5 && memcmp(ver, "HTTP/", 5) == 0 ? 505 : 400);
    if (ver[7] != '0' && ver[7] != '1') return refuse(out, 505);
    out->http10 = ver[7] == '0';
    if (!known) return refuse(out, 405);
    const char *t = p + i;
    size_t tlen = (size_t)(sp2 - t);
    if (memchr(t, ' ', tlen)) return refuse(out, 400);
    const char *q = memchr(t, '?', tlen);
    if (q) tlen = (size_t)(q - t);
    if (tlen < 4 || memcmp(t, "/u/", 3) != 0) return refuse(out, 404);
    t += 3;
    tlen -= 3;
    if (tlen > FB_UNSUB_TOKEN_MAX) return refuse(out, 404);
    for (size_t k = 0; k < tlen; k++)
        if (!token_char((unsigned char)t[k])) return refuse(out, 404);
    out->token = t;
    out->token_len = tlen;
    return 0;
}

/* The header fields between the request line and the empty line: only
 * Content-Length and Transfer-Encoding matter. *clen is -1 when absent. */
static int fields(const char *p, const char *end, long *clen, struct unsub_request *out)
{
    *clen = -1;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        if (!nl) nl = end;
        size_t n = (size_t)(nl - p);
        if (n && p[n - 1] == '\r') n--;
        if (n == 0) break;
        if (*p == ' ' || *p == '\t') return refuse(out, 400); /* obsolete folding */
        const char *colon = memchr(p, ':', n);
        if (!colon || colon == p) return refuse(out, 400);
        size_t name_len = (size_t)(colon - p);
        for (size_t k = 0; k < name_len; k++)
            if ((unsigned char)p[k] <= ' ' || (unsigned char)p[k] >= 0x7f) return refuse(out, 400);
        const char *v = colon + 1, *ve = p + n;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        if (name_len == 17 && strncasecmp(p, "Transfer-Encoding", 17) == 0)
            return refuse(out, 400); /* one request, one length: no chunking to smuggle in */
        if (name_len == 14 && strncasecmp(p, "Content-Length", 14) == 0) {
            if (*clen >= 0 || v == ve) return refuse(out, 400);
            long x = 0;
            for (const char *d = v; d < ve; d++) {
                if (*d < '0' || *d > '9') return refuse(out, 400);
                if (x > UNSUB_BODY_MAX) continue; /* big; keep it bounded */
                x = x * 10 + (*d - '0');
            }
            *clen = x;
        }
        p = nl + 1;
    }
    return 0;
}

static bool body_ok(const char *b, size_t n)
{
    size_t want = sizeof UNSUB_ONE_CLICK_BODY - 1;
    if (n < want || memcmp(b, UNSUB_ONE_CLICK_BODY, want) != 0) return false;
    b += want;
    n -= want;
    return n == 0 || (n == 1 && b[0] == '\n') || (n == 2 && b[0] == '\r' && b[1] == '\n');
}

int unsub_request_parse(const char *buf, size_t len, struct unsub_request *out)
{
    memset(out, 0, sizeof *out);
    size_t hend = head_end(buf, len < UNSUB_HEAD_MAX ? len : UNSUB_HEAD_MAX);
    if (!hend) {
        if (len >= UNSUB_HEAD_MAX) {
            out->used = len;
            return refuse(out, 431);
        }
        return -EAGAIN;
    }
    out->used = hend;
    const char *nl = memchr(buf, '\n', hend);
    size_t rl = (size_t)(nl - buf);
    if (rl && buf[rl - 1] == '\r') rl--;
    int rc = request_line(buf, rl, out);
    if (rc || out->status) return rc;
    long clen;
    if ((rc = fields(nl + 1, buf + hend, &clen, out)) || out->status) return rc;
    if (out->method != UNSUB_POST) return 0; /* a GET's body, if any, is not read */
    if (clen < 0) return refuse(out, 411);
    if (clen > UNSUB_BODY_MAX) return refuse(out, 413);
    if (len - hend < (size_t)clen) return -EAGAIN;
    out->used = hend + (size_t)clen;
    if (!body_ok(buf + hend, (size_t)clen)) return refuse(out, 400);
    return 0;
}
