/* Bounces that are only prose: qmail ("Hi. This is the qmail-send
 * program"), Exim ("This message was created automatically by mail
 * delivery software") and the many MTAs that write a paragraph, a failed
 * address, an SMTP reply and then a copy of the message. The scan reads
 * the explanation (up to the copy) for the recipient, the reply line and
 * an enhanced status code, and points at the quoted header block after it.
 * It guesses; the caller decides from the marks whether to believe it. */
#include <string.h>
#include <strings.h>

#include "feedback/fb.h"
#include "herald/job.h"

/* Case-blind search for a lower-case needle; the first byte is compared
 * inline, since a full compare at every position made this scan most of
 * the parse time. */
static bool has(const char *l, size_t n, const char *needle)
{
    size_t k = strlen(needle);
    char first = needle[0];
    for (size_t i = 0; i + k <= n; i++) {
        char c = l[i] >= 'A' && l[i] <= 'Z' ? (char)(l[i] - 'A' + 'a') : l[i];
        if (c == first && strncasecmp(l + i + 1, needle + 1, k - 1) == 0) return true;
    }
    return false;
}

static bool has_any(const char *l, size_t n, const char *const *needles)
{
    for (; *needles; needles++)
        if (has(l, n, *needles)) return true;
    return false;
}

static const char *const copy_marks[] = {
    "below this line is a copy of the message",
    "this is a copy of the message",
    "original message follows",
    "original message headers",
    "header of the original message",
    "headers of the original message",
    "message headers follow",
    NULL,
};

static const char *const daemon_marks[] = {
    "this is the mail system at host",
    "could not be delivered",
    "couldn't be delivered",
    "delivery has failed",
    "delivery to the following recipient",
    "undeliverable",
    "undelivered mail",
    "permanent error",
    "unable to deliver",
    NULL,
};

static const char *const temporary_marks[] = {
    "temporary",
    "temporarily",
    "delayed",
    "will keep trying",
    "still trying",
    "will retry",
    "not yet been delivered",
    NULL,
};

static bool is_atext(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-/=?^_`{|}~", c));
}

static bool is_domain_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.';
}

/* Addresses a bounce names that are not the failed recipient. */
static bool is_system_local(const char *a, size_t local)
{
    if ((local == 13 && strncasecmp(a, "mailer-daemon", 13) == 0) ||
        (local == 10 && strncasecmp(a, "postmaster", 10) == 0))
        return true;
    return local == FB_VERP_LOCAL_LEN && strncasecmp(a, FB_VERP_PREFIX, 2) == 0;
}

/* The first plausible recipient address in the line. */
static bool addr_in_line(const char *l, size_t n, char *out)
{
    for (size_t k = 0; k < n; k++) {
        if (l[k] != '@') continue;
        size_t a = k, b = k + 1;
        while (a > 0 && (is_atext(l[a - 1]) || l[a - 1] == '.') && k - a < 64)
            a--;
        while (b < n && is_domain_char(l[b]) && b - k < 256)
            b++;
        while (b > k + 1 && l[b - 1] == '.')
            b--;
        while (a < k && l[a] == '.')
            a++;
        if (a == k || b == k + 1 || b - a > FB_ADDR_MAX) continue;
        if (is_system_local(l + a, k - a)) continue;
        if (addr_check(l + a, b - a, NULL, NULL) != 0) continue;
        memcpy(out, l + a, b - a);
        out[b - a] = '\0';
        return true;
    }
    return false;
}

/* A 4.x.x or 5.x.x code in the line (a 2.x.x one is not a failure). */
static bool failure_status(const char *l, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        if (l[i] != '4' && l[i] != '5') continue;
        if (i > 0 && ((l[i - 1] >= '0' && l[i - 1] <= '9') || l[i - 1] == '.')) continue;
        if (fb_find_status(l + i, n - i, true, out)) return true;
    }
    out[0] = '\0';
    return false;
}

/* "550 ...", "550-..." or "550 5.1.1 ..." after blanks. */
static bool is_reply_line(const char *l, size_t n)
{
    while (n && (*l == ' ' || *l == '\t')) {
        l++;
        n--;
    }
    return n >= 4 && (l[0] == '4' || l[0] == '5') && l[1] >= '0' && l[1] <= '9' && l[2] >= '0' &&
           l[2] <= '9' && (l[3] == ' ' || l[3] == '-');
}

static bool is_header_line(const char *l, size_t n)
{
    size_t c = 0;
    while (c < n && ((l[c] >= 'a' && l[c] <= 'z') || (l[c] >= 'A' && l[c] <= 'Z') ||
                     (l[c] >= '0' && l[c] <= '9') || l[c] == '-'))
        c++;
    return c > 0 && c < n && l[c] == ':';
}

static bool starts_ci(const char *l, size_t n, const char *w)
{
    size_t k = strlen(w);
    return n >= k && strncasecmp(l, w, k) == 0;
}

static const char *next_line(const char *l, const char *end, size_t *len)
{
    const char *nl = memchr(l, '\n', (size_t)(end - l));
    const char *e = nl ? nl : end;
    *len = (size_t)(e - l) - (e > l && e[-1] == '\r' ? 1 : 0);
    return nl ? nl + 1 : end;
}

void fb_text_scan(const char *p, size_t n, struct fb_text *t, unsigned *flags)
{
    memset(t, 0, sizeof *t);
    if (n > FB_TEXT_MAX) n = FB_TEXT_MAX; /* the explanation comes first */
    const char *end = p + n;
    char reply[FB_DIAG_MAX + 1] = "";
    int rcpt_rank = 0; /* 3: RCPT TO:<x>, 2: qmail's "<x>:", 1: any address */
    bool pending_diag = false, copy_seen = false, prev_blank = true;
    unsigned after_copy = 0;
    for (const char *l = p; l < end;) {
        size_t ln;
        const char *q = next_line(l, end, &ln);
        if (copy_seen) {
            /* The quoted header block: the first field line soon after
             * the marker. */
            if (is_header_line(l, ln)) {
                t->orig = l;
                t->orig_len = (size_t)(end - l);
                break;
            }
            if (++after_copy > 20) break;
            l = q;
            continue;
        }
        if (prev_blank && (starts_ci(l, ln, "Return-Path:") || starts_ci(l, ln, "Received:"))) {
            t->orig = l;
            t->orig_len = (size_t)(end - l);
            break;
        }
        if (has(l, ln, "this is the qmail-send program")) t->qmail = true;
        if (has(l, ln, "created automatically by mail delivery software")) t->exim = true;
        if (has_any(l, ln, daemon_marks)) t->daemon_words = true;
        if (has(l, ln, "permanent")) t->permanent = true;
        if (has_any(l, ln, temporary_marks)) t->temporary = true;
        if (has_any(l, ln, copy_marks)) {
            copy_seen = true;
            l = q;
            continue;
        }
        bool blank = true;
        for (size_t i = 0; i < ln && blank; i++)
            blank = l[i] == ' ' || l[i] == '\t';
        const char *rt = NULL;
        for (size_t i = 0; i + 9 <= ln && !rt; i++)
            if ((l[i] == 'R' || l[i] == 'r') && strncasecmp(l + i, "RCPT TO:<", 9) == 0)
                rt = l + i + 9;
        if (rt && rcpt_rank < 3) {
            const char *gt = memchr(rt, '>', (size_t)(l + ln - rt));
            char a[FB_ADDR_MAX + 1];
            if (gt && fb_take_addr(rt - 1, (size_t)(gt - rt + 2), a, sizeof a)) {
                memcpy(t->rcpt, a, strlen(a) + 1);
                rcpt_rank = 3;
            }
        }
        if (has(l, ln, "smtp error from remote")) {
            pending_diag = true;
        } else if (ln > 3 && l[0] == '<' && l[ln - 1] == ':' && l[ln - 2] == '>') {
            char a[FB_ADDR_MAX + 1];
            if (rcpt_rank < 2 && fb_take_addr(l, ln - 1, a, sizeof a)) {
                memcpy(t->rcpt, a, strlen(a) + 1);
                rcpt_rank = 2;
            }
            pending_diag = true;
        } else if (pending_diag && !blank) {
            if (!t->diag[0]) {
                bool trunc = false;
                fb_clean(t->diag, sizeof t->diag, l, ln, &trunc);
                if (trunc) *flags |= FB_F_TRUNCATED;
            }
            pending_diag = false;
        }
        if (!reply[0] && is_reply_line(l, ln)) fb_clean(reply, sizeof reply, l, ln, NULL);
        if (!t->status[0]) failure_status(l, ln, t->status);
        if (rcpt_rank < 1 && addr_in_line(l, ln, t->rcpt)) rcpt_rank = 1;
        prev_blank = blank;
        l = q;
    }
    if (!t->diag[0] && reply[0]) memcpy(t->diag, reply, strlen(reply) + 1);
    /* The code in the reply itself beats one from the prose around it. */
    char s[FB_STATUS_MAX + 1];
    if (t->diag[0] && failure_status(t->diag, strlen(t->diag), s))
        memcpy(t->status, s, strlen(s) + 1);
}
