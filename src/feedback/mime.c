/* The MIME reading the report parser needs, and no more: header fields of
 * one block (folded, CRLF or LF, names case-blind), Content-Type with its
 * boundary and report-type parameters, base64 and quoted-printable bodies,
 * multipart splitting, enhanced status codes and addr-specs in field
 * values. Each function reads only the bytes it is given and writes only
 * into its fixed output. */
#include <string.h>
#include <strings.h>

#include "feedback/fb.h"
#include "herald/job.h"
#include "msg/msg.h"

static bool is_wsp(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static const char *line_end(const char *p, const char *end)
{
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    return nl ? nl : end;
}

/* Line [l, *le) without its break; returns the start of the next line. */
static const char *next_line(const char *l, const char *end, const char **le)
{
    const char *e = line_end(l, end);
    *le = e > l && e[-1] == '\r' ? e - 1 : e;
    return e < end ? e + 1 : e;
}

void fb_hdr_begin(struct fb_hdr_iter *it, const char *p, size_t n)
{
    memset(it, 0, sizeof *it);
    it->p = it->start = p;
    it->end = p + n;
}

int fb_hdr_next(struct fb_hdr_iter *it, struct fb_field *f)
{
    while (!it->done && it->p < it->end) {
        const char *l = it->p, *le;
        const char *q = next_line(l, it->end, &le);
        if (le == l) {
            it->p = q;
            it->done = true;
            return 0;
        }
        if (*l == ' ' || *l == '\t') { /* a continuation with no field */
            it->p = q;
            continue;
        }
        const char *c = l;
        while (c < le && *c != ':' && (unsigned char)*c > ' ' && (unsigned char)*c < 0x7f)
            c++;
        const char *name_end = c;
        while (c < le && (*c == ' ' || *c == '\t')) /* obsolete "Name :" */
            c++;
        bool ok = c < le && *c == ':' && name_end > l;
        const char *vend = le;
        while (q < it->end && (*q == ' ' || *q == '\t'))
            q = next_line(q, it->end, &vend);
        it->p = q;
        if (!ok) continue;
        if ((size_t)(l - it->start) >= FB_HEADER_MAX || it->n_fields >= FB_FIELDS_MAX) {
            it->limited = true;
            continue;
        }
        it->n_fields++;
        f->name = l;
        f->name_len = (size_t)(name_end - l);
        f->value = c + 1;
        f->value_len = (size_t)(vend - f->value);
        return 1;
    }
    it->done = true;
    return 0;
}

bool fb_name_is(const struct fb_field *f, const char *name)
{
    return strlen(name) == f->name_len && strncasecmp(f->name, name, f->name_len) == 0;
}

size_t fb_clean(char *out, size_t cap, const char *v, size_t n, bool *trunc)
{
    const unsigned char *u = (const unsigned char *)v;
    size_t o = 0;
    bool space = false;
    for (size_t i = 0; i < n;) {
        unsigned char c = u[i];
        if (is_wsp((char)c)) {
            space = o > 0;
            i++;
            continue;
        }
        if (c < 0x20 || c == 0x7f) {
            i++;
            continue;
        }
        const char *src = v + i;
        size_t k = 1, adv = 1;
        if (c >= 0x80) {
            k = adv = msg_utf8_seq_len(u + i, n - i);
            if (k == 2 && c == 0xc2 && u[i + 1] < 0xa0) { /* C1 control */
                i += 2;
                continue;
            }
            if (k == 0) {
                src = "?";
                k = adv = 1;
            }
        }
        if (o + k + (space ? 1 : 0) + 1 > cap) {
            if (trunc) *trunc = true;
            break;
        }
        if (space) out[o++] = ' ';
        space = false;
        memcpy(out + o, src, k);
        o += k;
        i += adv;
    }
    out[o] = '\0';
    return o;
}

void fb_lower(char *s)
{
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z') *s = (char)(*s - 'A' + 'a');
}

/* ---- Content-Type ---------------------------------------------------------- */

struct cursor {
    const char *p, *e;
};

static void skip_cfws(struct cursor *c)
{
    for (;;) {
        while (c->p < c->e && is_wsp(*c->p))
            c->p++;
        if (c->p >= c->e || *c->p != '(') return;
        unsigned depth = 0;
        while (c->p < c->e) {
            char ch = *c->p++;
            if (ch == '\\' && c->p < c->e) {
                c->p++;
            } else if (ch == '(') {
                depth++;
            } else if (ch == ')' && --depth == 0) {
                break;
            }
        }
    }
}

static bool is_tchar(char c)
{
    return (unsigned char)c > ' ' && (unsigned char)c < 0x7f && !strchr("()<>@,;:\\\"/[]?=", c);
}

/* A token or (when quoted_ok) a quoted-string into out; false when there
 * is neither or it does not fit (the input is consumed either way). */
static bool read_word(struct cursor *c, bool quoted_ok, char *out, size_t cap)
{
    size_t o = 0;
    bool fits = true;
    if (quoted_ok && c->p < c->e && *c->p == '"') {
        c->p++;
        while (c->p < c->e && *c->p != '"') {
            char ch = *c->p++;
            if (ch == '\\' && c->p < c->e) ch = *c->p++;
            if (ch == '\r' || ch == '\n') continue; /* folding inside the quotes */
            if (o + 1 < cap)
                out[o++] = ch;
            else
                fits = false;
        }
        if (c->p < c->e) c->p++;
        out[o] = '\0';
        return fits && o > 0;
    }
    while (c->p < c->e && is_tchar(*c->p)) {
        if (o + 1 < cap)
            out[o++] = *c->p;
        else
            fits = false;
        c->p++;
    }
    out[o] = '\0';
    return fits && o > 0;
}

void fb_ctype_parse(const char *v, size_t n, struct fb_ctype *ct)
{
    memset(ct, 0, sizeof *ct);
    struct cursor c = {v, v + n};
    skip_cfws(&c);
    bool ok = read_word(&c, false, ct->type, sizeof ct->type);
    skip_cfws(&c);
    if (ok && c.p < c.e && *c.p == '/') {
        c.p++;
        skip_cfws(&c);
        ok = read_word(&c, false, ct->sub, sizeof ct->sub);
    } else {
        ok = false;
    }
    if (!ok) {
        /* RFC 2045 5.2: a Content-Type that cannot be read is text/plain. */
        memcpy(ct->type, "text", 5);
        memcpy(ct->sub, "plain", 6);
    }
    fb_lower(ct->type);
    fb_lower(ct->sub);
    for (unsigned guard = 0; c.p < c.e && guard < 64; guard++) {
        while (c.p < c.e && *c.p != ';') /* junk up to the next parameter */
            c.p++;
        if (c.p >= c.e) break;
        c.p++;
        skip_cfws(&c);
        char name[32], val[FB_BOUNDARY_MAX + 1];
        if (!read_word(&c, false, name, sizeof name)) continue;
        skip_cfws(&c);
        if (c.p >= c.e || *c.p != '=') continue;
        c.p++;
        skip_cfws(&c);
        if (!read_word(&c, true, val, sizeof val)) continue;
        fb_lower(name);
        if (strcmp(name, "boundary") == 0 && !ct->boundary[0]) {
            memcpy(ct->boundary, val, strlen(val) + 1);
        } else if (strcmp(name, "report-type") == 0 && !ct->report_type[0] &&
                   strlen(val) < sizeof ct->report_type) {
            memcpy(ct->report_type, val, strlen(val) + 1);
            fb_lower(ct->report_type);
        }
    }
}

enum fb_cte fb_cte_parse(const char *v, size_t n)
{
    char buf[40];
    fb_clean(buf, sizeof buf, v, n, NULL);
    fb_lower(buf);
    if (strcmp(buf, "base64") == 0) return FB_CTE_BASE64;
    if (strcmp(buf, "quoted-printable") == 0) return FB_CTE_QP;
    return FB_CTE_IDENTITY;
}

/* ---- transfer encodings ---------------------------------------------------- */

static int b64_value(char c)
{
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
}

size_t fb_decode(enum fb_cte cte, const char *p, size_t n, char *out, size_t cap, bool *trunc)
{
    size_t o = 0;
    if (cte == FB_CTE_IDENTITY) {
        o = n < cap ? n : cap;
        memcpy(out, p, o);
        if (o < n) *trunc = true;
        return o;
    }
    if (cte == FB_CTE_BASE64) {
        uint32_t acc = 0;
        int bits = 0;
        for (size_t i = 0; i < n && p[i] != '='; i++) {
            int v = b64_value(p[i]);
            if (v < 0) continue; /* line breaks, and junk RFC 2045 says to ignore */
            acc = acc << 6 | (uint32_t)v;
            bits += 6;
            if (bits >= 8) {
                bits -= 8;
                if (o == cap) {
                    *trunc = true;
                    break;
                }
                out[o++] = (char)(acc >> bits);
            }
        }
        return o;
    }
    for (size_t i = 0; i < n;) {
        char c = p[i];
        size_t adv = 1;
        if (c == '=') {
            int h = i + 2 < n ? hex_value(p[i + 1]) : -1, l = i + 2 < n ? hex_value(p[i + 2]) : -1;
            if (h >= 0 && l >= 0) {
                c = (char)(h << 4 | l);
                adv = 3;
            } else {
                /* A soft break: '=', optional blanks, then the line break. */
                size_t j = i + 1;
                while (j < n && (p[j] == ' ' || p[j] == '\t'))
                    j++;
                if (j < n && p[j] == '\r') j++;
                if (j >= n || p[j] == '\n') {
                    i = j < n ? j + 1 : j;
                    continue;
                }
            }
        }
        if (o == cap) {
            *trunc = true;
            break;
        }
        out[o++] = c;
        i += adv;
    }
    return o;
}

/* ---- multipart --------------------------------------------------------------- */

void fb_multipart_begin(struct fb_multipart *m, const char *body, size_t n, const char *boundary)
{
    memset(m, 0, sizeof *m);
    m->p = body;
    m->end = body + n;
    m->boundary = boundary;
    m->boundary_len = strlen(boundary);
}

/* 1 for "--boundary", 2 for "--boundary--", then only blanks (transport
 * padding); 0 otherwise, so an inner boundary that merely starts with an
 * outer one is not taken for it. */
static int delimiter(const struct fb_multipart *m, const char *l, const char *le)
{
    size_t ln = (size_t)(le - l), bl = m->boundary_len;
    if (ln < 2 + bl || l[0] != '-' || l[1] != '-' || memcmp(l + 2, m->boundary, bl) != 0) return 0;
    size_t i = 2 + bl;
    int kind = 1;
    if (i + 1 < ln && l[i] == '-' && l[i + 1] == '-') {
        kind = 2;
        i += 2;
    }
    for (; i < ln; i++)
        if (l[i] != ' ' && l[i] != '\t') return 0;
    return kind;
}

static const char *find_delimiter(const struct fb_multipart *m, const char *p, int *kind,
                                  const char **after)
{
    while (p < m->end) {
        const char *le, *q = next_line(p, m->end, &le);
        int k = delimiter(m, p, le);
        if (k) {
            *kind = k;
            *after = q;
            return p;
        }
        p = q;
    }
    return NULL;
}

int fb_multipart_next(struct fb_multipart *m, const char **part, size_t *len)
{
    int kind = 0;
    const char *after = NULL;
    if (m->finished || m->boundary_len == 0) return 0;
    if (!m->started) {
        m->started = true;
        const char *d = find_delimiter(m, m->p, &kind, &after);
        if (!d || kind == 2) {
            m->broken = !d;
            m->finished = true;
            return 0;
        }
        m->p = after;
    }
    const char *start = m->p;
    const char *d = find_delimiter(m, start, &kind, &after);
    if (!d) {
        m->broken = true;
        m->finished = true;
        *part = start;
        *len = (size_t)(m->end - start);
        return 1;
    }
    const char *pe = d; /* the break before the delimiter belongs to it */
    if (pe > start && pe[-1] == '\n') pe--;
    if (pe > start && pe[-1] == '\r') pe--;
    *part = start;
    *len = (size_t)(pe - start);
    if (kind == 2)
        m->finished = true;
    else
        m->p = after;
    return 1;
}

/* ---- values ----------------------------------------------------------------- */

static size_t digits(const char *s, size_t i, size_t n)
{
    size_t k = 0;
    while (i + k < n && is_digit(s[i + k]) && k < 4)
        k++;
    return k;
}

bool fb_find_status(const char *s, size_t n, bool at_start, char *out)
{
    out[0] = '\0';
    for (size_t i = 0; i < n && (!at_start || i == 0); i++) {
        if (s[i] != '2' && s[i] != '4' && s[i] != '5') continue;
        if (i > 0 && (is_digit(s[i - 1]) || s[i - 1] == '.')) continue;
        size_t j = i + 1;
        if (j >= n || s[j] != '.') continue;
        size_t d = digits(s, ++j, n);
        if (d < 1 || d > 3) continue;
        j += d;
        if (j >= n || s[j] != '.') continue;
        d = digits(s, ++j, n);
        if (d < 1 || d > 3) continue;
        j += d;
        if (j < n && (is_digit(s[j]) || (s[j] == '.' && j + 1 < n && is_digit(s[j + 1]))))
            continue; /* an IP address or a version number */
        memcpy(out, s + i, j - i);
        out[j - i] = '\0';
        return true;
    }
    return false;
}

bool fb_take_addr(const char *v, size_t n, char *out, size_t cap)
{
    char buf[FB_VALUE_MAX];
    bool trunc = false;
    out[0] = '\0';
    size_t len = fb_clean(buf, sizeof buf, v, n, &trunc);
    if (trunc) return false;
    size_t s = 0, e = 0;
    bool quoted = false, angle = false;
    unsigned depth = 0;
    for (size_t i = 0; i < len && !angle; i++) {
        char c = buf[i];
        if (quoted || depth) {
            if (c == '\\')
                i++;
            else if (quoted && c == '"')
                quoted = false;
            else if (depth && c == '(')
                depth++;
            else if (depth && c == ')')
                depth--;
        } else if (c == '"') {
            quoted = true;
        } else if (c == '(') {
            depth = 1;
        } else if (c == '<') {
            const char *gt = memchr(buf + i + 1, '>', len - i - 1);
            if (!gt) return false;
            s = i + 1;
            e = (size_t)(gt - buf);
            angle = true;
        }
    }
    if (!angle) {
        while (e < len && buf[e] != ' ' && buf[e] != ',' && buf[e] != '(' && buf[e] != ';')
            e++;
    }
    while (s < e && buf[s] == ' ')
        s++;
    while (e > s && buf[e - 1] == ' ')
        e--;
    if (e == s || e - s >= cap) return false;
    if (addr_check(buf + s, e - s, NULL, NULL) != 0) return false;
    memcpy(out, buf + s, e - s);
    out[e - s] = '\0';
    return true;
}

/* One "=?charset?B|Q?text?=" at v[0..n): decoded into out, its length
 * returned through *used; false when v does not start a complete one. */
static bool encoded_word(const char *v, size_t n, char *out, size_t cap, size_t *olen, size_t *used)
{
    if (n < 8 || v[0] != '=' || v[1] != '?') return false;
    const char *q1 = memchr(v + 2, '?', n - 2);
    if (!q1 || (size_t)(q1 - v) + 3 >= n || q1[2] != '?') return false;
    char enc = q1[1];
    const char *text = q1 + 3, *end = NULL;
    for (const char *p = text; p + 1 < v + n; p++) {
        if (*p == '?' && p[1] == '=') {
            end = p;
            break;
        }
        if (*p == ' ' || *p == '\t' || *p == '\r' || *p == '\n') return false;
    }
    if (!end) return false;
    size_t tl = (size_t)(end - text);
    bool trunc = false;
    if (enc == 'B' || enc == 'b') {
        *olen = fb_decode(FB_CTE_BASE64, text, tl, out, cap, &trunc);
    } else if (enc == 'Q' || enc == 'q') {
        size_t o = 0;
        for (size_t i = 0; i < tl && o < cap; i++) {
            int h, l;
            if (text[i] == '_') {
                out[o++] = ' ';
            } else if (text[i] == '=' && i + 2 < tl && (h = hex_value(text[i + 1])) >= 0 &&
                       (l = hex_value(text[i + 2])) >= 0) {
                out[o++] = (char)(h << 4 | l);
                i += 2;
            } else {
                out[o++] = text[i];
            }
        }
        *olen = o;
    } else {
        return false;
    }
    *used = (size_t)(end + 2 - v);
    return true;
}

size_t fb_decode_words(const char *v, size_t n, char *out, size_t cap)
{
    size_t o = 0, i = 0;
    if (cap == 0) return 0;
    while (i < n && o + 1 < cap) {
        size_t olen = 0, used = 0;
        if (v[i] == '=' && encoded_word(v + i, n - i, out + o, cap - 1 - o, &olen, &used)) {
            o += olen;
            i += used;
            /* Blanks between two encoded words are not part of the text. */
            size_t j = i;
            while (j < n && is_wsp(v[j]))
                j++;
            if (j + 1 < n && v[j] == '=' && v[j + 1] == '?') i = j;
            continue;
        }
        out[o++] = v[i++];
    }
    out[o] = '\0';
    return o;
}
