/* Checks on a caller-supplied complete message (`raw` jobs). herald does
 * not generate these headers, so it has to be sure the bytes are a message
 * an MTA will take as one: field syntax, line lengths, 7-bit content, one
 * From. Line endings may be CRLF, LF or CR here; the builder normalises. */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "herald/job.h"

#define LINE_MAX_OCTETS 998

static int bad(char *why, size_t cap, size_t line, const char *fmt, const char *arg)
{
    char msg[192];
    snprintf(msg, sizeof msg, fmt, arg ? arg : "");
    if (line)
        snprintf(why, cap, "line %zu: %s", line, msg);
    else
        snprintf(why, cap, "%s", msg);
    return -HERR_MALFORMED;
}

static bool name_is(const char *s, size_t n, const char *name)
{
    return strlen(name) == n && strncasecmp(s, name, n) == 0;
}

/* Length of the line break at s[i] (0 when none). */
static size_t line_break(const char *s, size_t i, size_t len)
{
    if (s[i] == '\n') return 1;
    if (s[i] == '\r') return i + 1 < len && s[i + 1] == '\n' ? 2 : 1;
    return 0;
}

int raw_check(const char *msg, size_t len, struct raw_info *info, char *why, size_t why_cap)
{
    memset(info, 0, sizeof *info);
    if (len == 0) return bad(why, why_cap, 0, "empty message", NULL);
    size_t i = 0, line = 0;
    bool in_header = true, have_field = false;
    const char **cur_value = NULL;
    size_t *cur_len = NULL;
    while (i < len) {
        line++;
        size_t start = i;
        while (i < len && msg[i] != '\r' && msg[i] != '\n') {
            if (msg[i] == '\0') return bad(why, why_cap, line, "contains NUL", NULL);
            if ((unsigned char)msg[i] >= 0x80)
                return bad(why, why_cap, line,
                           in_header ? "non-ASCII byte in a header (use RFC 2047 encoded words)"
                                     : "non-ASCII byte in the body (encode the part as "
                                       "quoted-printable or base64)",
                           NULL);
            i++;
        }
        size_t n = i - start;
        if (n > LINE_MAX_OCTETS)
            return bad(why, why_cap, line, "longer than 998 octets", NULL);
        size_t brk = i < len ? line_break(msg, i, len) : 0;
        i += brk;
        if (!in_header) continue;
        const char *l = msg + start;
        if (n == 0) {
            if (!have_field) return bad(why, why_cap, line, "no header fields", NULL);
            in_header = false;
            info->header_len = i;
            continue;
        }
        if (l[0] == ' ' || l[0] == '\t') {
            if (!have_field)
                return bad(why, why_cap, line, "continuation line before any header field",
                           NULL);
            if (cur_value) *cur_len = (size_t)(msg + i - *cur_value);
            continue;
        }
        size_t c = 0;
        while (c < n && l[c] != ':') {
            unsigned char ch = (unsigned char)l[c];
            if (ch <= 32 || ch >= 127)
                return bad(why, why_cap, line,
                           c == 0 ? "not a header field" : "invalid character in header field "
                                                           "name (or missing colon)",
                           NULL);
            c++;
        }
        if (c == n) return bad(why, why_cap, line, "header field without a colon", NULL);
        if (c == 0) return bad(why, why_cap, line, "empty header field name", NULL);
        have_field = true;
        cur_value = NULL;
        const char *once = NULL;
        if (name_is(l, c, "From")) {
            if (info->has_from) once = "From";
            info->has_from = true;
            cur_value = &info->from_value;
            cur_len = &info->from_len;
        } else if (name_is(l, c, "Message-ID")) {
            if (info->has_message_id) once = "Message-ID";
            info->has_message_id = true;
            cur_value = &info->msgid_value;
            cur_len = &info->msgid_len;
        } else if (name_is(l, c, "Date")) {
            if (info->has_date) once = "Date";
            info->has_date = true;
        } else if (name_is(l, c, "Sender")) {
            if (info->has_sender) once = "Sender";
            info->has_sender = true;
            cur_value = &info->sender_value;
            cur_len = &info->sender_len;
        } else if (name_is(l, c, "Reply-To")) {
            info->has_reply_to = true;
        } else if (name_is(l, c, "To")) {
            info->has_to = true;
        } else if (name_is(l, c, "Subject")) {
            if (info->has_subject) once = "Subject";
            info->has_subject = true;
        }
        if (once) return bad(why, why_cap, line, "more than one %s header", once);
        if (cur_value) {
            *cur_value = l + c + 1;
            *cur_len = (size_t)(msg + i - *cur_value);
        }
    }
    if (in_header) {
        if (!have_field) return bad(why, why_cap, 0, "no header fields", NULL);
        info->header_len = len;
    }
    if (!info->has_from) return bad(why, why_cap, 0, "no From header", NULL);
    return 0;
}

/* Copy of a header value with line breaks removed (unfolding) and blanks
 * trimmed; false when it does not fit. */
static bool unfold(const char *v, size_t n, char *out, size_t cap)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (v[i] == '\r' || v[i] == '\n') continue;
        if (o + 1 >= cap) return false;
        out[o++] = v[i];
    }
    while (o && (out[o - 1] == ' ' || out[o - 1] == '\t'))
        o--;
    out[o] = '\0';
    size_t s = 0;
    while (out[s] == ' ' || out[s] == '\t')
        s++;
    memmove(out, out + s, o - s + 1);
    return true;
}

int raw_from_domain(const struct raw_info *info, bool (*allowed)(const char *domain, void *arg),
                    void *arg, char *out, size_t cap, char *why, size_t why_cap)
{
    struct addrlist from, sender;
    if (addrlist_parse(info->from_value, info->from_len, &from))
        return bad(why, why_cap, 0, "From header is not an RFC 5322 address list", NULL);
    if (from.n_groups)
        return bad(why, why_cap, 0, "From header holds a group; it must list mailboxes", NULL);
    if (from.n_mailboxes > ADDRLIST_KEEP)
        return bad(why, why_cap, 0, "From header lists more than 8 mailboxes", NULL);
    for (size_t i = 0; i < from.n_mailboxes; i++)
        if (!allowed(from.domains[i], arg))
            return bad(why, why_cap, 0, "From domain '%.64s' is not one of the tenant's domains",
                       from.domains[i]);
    if (info->has_sender) {
        if (addrlist_parse(info->sender_value, info->sender_len, &sender) || sender.n_groups ||
            sender.n_mailboxes != 1)
            return bad(why, why_cap, 0, "Sender header is not one mailbox", NULL);
        if (!allowed(sender.domains[0], arg))
            return bad(why, why_cap, 0,
                       "Sender domain '%.64s' is not one of the tenant's domains",
                       sender.domains[0]);
    } else if (from.n_mailboxes > 1) {
        return bad(why, why_cap, 0,
                   "From header lists several mailboxes; add a Sender header with the tenant's "
                   "address%s",
                   "");
    }
    size_t dl = strlen(from.domains[0]);
    if (dl + 1 > cap) return bad(why, why_cap, 0, "From domain too long", NULL);
    memcpy(out, from.domains[0], dl + 1);
    return 0;
}

int raw_message_id(const char *v, size_t n, char *out, size_t cap)
{
    char buf[1024];
    if (!unfold(v, n, buf, sizeof buf)) return -HERR_TOO_LONG;
    char *lt = strchr(buf, '<'), *gt = lt ? strchr(lt, '>') : NULL;
    if (!lt || !gt || gt == lt + 1) return -HERR_MALFORMED;
    size_t idl = (size_t)(gt - lt - 1);
    if (idl + 1 > cap) return -HERR_TOO_LONG;
    memcpy(out, lt + 1, idl);
    out[idl] = '\0';
    return 0;
}
