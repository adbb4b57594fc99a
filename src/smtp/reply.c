/* SMTP reply parser (RFC 5321 4.2): resumable at any byte, bounded memory.
 * Lines are collected into a fixed buffer; whatever a line holds beyond
 * SMTP_LINE_MAX is counted and skipped, so a hostile peer can make us read
 * but never make us store. */
#include <string.h>

#include "herald/smtp.h"

static void reply_clear(struct smtp_reply *r)
{
    r->code = 0;
    r->enhanced[0] = '\0';
    r->text[0] = '\0';
    r->text_len = 0;
    r->n_lines = 0;
    r->truncated = false;
}

static void line_clear(struct smtp_reply_parser *p)
{
    p->line_len = 0;
    p->line_overflow = false;
    p->line_dropped = 0;
    p->cr_last = false;
}

void smtp_reply_parser_init(struct smtp_reply_parser *p)
{
    line_clear(p);
    p->in_reply = false;
    p->code = 0;
    reply_clear(&p->cur);
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static void line_take(struct smtp_reply_parser *p, const char *s, size_t n)
{
    if (n == 0) return;
    size_t room = SMTP_LINE_MAX - p->line_len;
    size_t k = n < room ? n : room;
    memcpy(p->line + p->line_len, s, k);
    p->line_len += k;
    if (n > k) {
        p->line_overflow = true;
        size_t extra = n - k;
        p->line_dropped = p->line_dropped > SIZE_MAX - extra ? SIZE_MAX : p->line_dropped + extra;
    }
    p->cr_last = s[n - 1] == '\r';
}

/* Checks what is known of the "NNN[ -]" prefix before the line ends, so
 * binary garbage is refused at once instead of at the next LF. A CR may sit
 * in the fourth place of "NNN\r" until the LF arrives. */
static bool prefix_plausible(const struct smtp_reply_parser *p)
{
    const char *l = p->line;
    if (p->line_len >= 1 && (l[0] < '2' || l[0] > '5')) return false;
    if (p->line_len >= 2 && !is_digit(l[1])) return false;
    if (p->line_len >= 3 && !is_digit(l[2])) return false;
    if (p->line_len >= 4 && l[3] != ' ' && l[3] != '-' && l[3] != '\r') return false;
    if (p->line_len >= 4 && p->in_reply &&
        (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0') != p->code)
        return false;
    return true;
}

/* "class.subject.detail" at the start of t: class one digit equal to the
 * reply's class, subject and detail 1-3 digits, then end or a space. */
static void parse_enhanced(const char *t, size_t n, int code, char out[16])
{
    out[0] = '\0';
    size_t i = 0;
    if (n < 5 || t[0] != (char)('0' + code / 100) || t[1] != '.') return;
    i = 2;
    for (int part = 0; part < 2; part++) {
        size_t start = i;
        while (i < n && is_digit(t[i]) && i - start < 4)
            i++;
        if (i == start || i - start > 3) return;
        if (part == 0) {
            if (i >= n || t[i] != '.') return;
            i++;
        }
    }
    if (i < n && t[i] != ' ') return;
    memcpy(out, t, i);
    out[i] = '\0';
}

static void text_append(struct smtp_reply *r, const char *s, size_t n)
{
    size_t room = SMTP_REPLY_TEXT_MAX - 1 - r->text_len;
    if (n > room) {
        n = room;
        r->truncated = true;
    }
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        r->text[r->text_len++] = (c < 0x20 && c != '\t') || c == 0x7f ? '?' : (char)c;
    }
    r->text[r->text_len] = '\0';
}

/* A whole line is in p->line: validate it and add it to the reply.
 * Returns 1 when it was the last line, 0 when more lines follow. */
static int line_end(struct smtp_reply_parser *p)
{
    if (p->cr_last) {
        if (p->line_dropped > 0)
            p->line_dropped--;
        else
            p->line_len--;
    }
    const char *l = p->line;
    size_t n = p->line_len;
    if (n < 3 || l[0] < '2' || l[0] > '5' || !is_digit(l[1]) || !is_digit(l[2]))
        return -HERR_PROTOCOL;
    char sep = n == 3 ? ' ' : l[3];
    if (sep != ' ' && sep != '-') return -HERR_PROTOCOL;
    int code = (l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0');
    if (p->in_reply && code != p->code) return -HERR_PROTOCOL;
    struct smtp_reply *r = &p->cur;
    if (++r->n_lines > SMTP_REPLY_LINES_MAX) return -HERR_PROTOCOL;
    const char *text = n > 4 ? l + 4 : "";
    size_t text_len = n > 4 ? n - 4 : 0;
    if (r->n_lines == 1) {
        r->code = code;
        parse_enhanced(text, text_len, code, r->enhanced);
    } else if (r->text_len < SMTP_REPLY_TEXT_MAX - 1) {
        r->text[r->text_len++] = '\n';
        r->text[r->text_len] = '\0';
    } else {
        r->truncated = true;
    }
    text_append(r, text, text_len);
    if (p->line_dropped > 0) r->truncated = true;
    p->code = code;
    line_clear(p);
    if (sep == '-') {
        p->in_reply = true;
        return 0;
    }
    return 1;
}

int smtp_reply_parse(struct smtp_reply_parser *p, const char *buf, size_t len, size_t *consumed,
                     struct smtp_reply *out)
{
    size_t i = 0;
    while (i < len) {
        const char *nl = memchr(buf + i, '\n', len - i);
        size_t chunk = nl ? (size_t)(nl - (buf + i)) : len - i;
        line_take(p, buf + i, chunk);
        i += chunk;
        if (!prefix_plausible(p) || p->line_dropped > SMTP_LINE_GIVE_UP - SMTP_LINE_MAX) {
            *consumed = i;
            smtp_reply_parser_init(p);
            return -HERR_PROTOCOL;
        }
        if (!nl) break;
        i++;
        int rc = line_end(p);
        if (rc < 0) {
            *consumed = i;
            smtp_reply_parser_init(p);
            return rc;
        }
        if (rc == 1) {
            *out = p->cur;
            *consumed = i;
            p->in_reply = false;
            p->code = 0;
            reply_clear(&p->cur);
            return 1;
        }
    }
    *consumed = i;
    return 0;
}
