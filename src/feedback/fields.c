/* The machine-readable parts of reports: message/delivery-status (RFC 3464
 * section 2: one per-message block, then one block per recipient, blocks
 * separated by empty lines) and message/feedback-report (RFC 5965 section
 * 3.1). Unknown fields are ignored; known ones are cleaned, bounded and,
 * where they name an address, host or code, validated. */
#include <arpa/inet.h>
#include <string.h>
#include <strings.h>

#include "feedback/fb.h"

/* The value after "type;" (RFC 3464 address-type, MTA-name-type,
 * diagnostic-type), or the whole value when it has no ';'. */
static void after_type(const struct fb_field *f, const char **v, size_t *n, bool *typed,
                       const char *want_type)
{
    const char *semi = memchr(f->value, ';', f->value_len);
    *typed = true;
    if (!semi) {
        *v = f->value;
        *n = f->value_len;
        return;
    }
    if (want_type) {
        char t[32];
        fb_clean(t, sizeof t, f->value, (size_t)(semi - f->value), NULL);
        *typed = strcasecmp(t, want_type) == 0;
    }
    *v = semi + 1;
    *n = f->value_len - (size_t)(semi + 1 - f->value);
}

static void take_text(char *out, size_t cap, const char *v, size_t n, unsigned *flags)
{
    bool trunc = false;
    fb_clean(out, cap, v, n, &trunc);
    if (trunc) *flags |= FB_F_TRUNCATED;
}

/* An MTA name: the first word after "dns;", a trailing dot dropped. */
static void take_host(char *out, size_t cap, const struct fb_field *f, unsigned *flags)
{
    const char *v;
    size_t n;
    bool typed;
    after_type(f, &v, &n, &typed, NULL);
    char buf[FB_VALUE_MAX];
    bool trunc = false;
    fb_clean(buf, sizeof buf, v, n, &trunc);
    size_t k = strcspn(buf, " (;");
    if (k && buf[k - 1] == '.') k--;
    if (k >= cap) {
        k = 0;
        *flags |= FB_F_TRUNCATED;
    }
    memcpy(out, buf, k);
    out[k] = '\0';
}

static void take_rcpt_addr(char *out, const struct fb_field *f)
{
    const char *v;
    size_t n;
    bool typed;
    after_type(f, &v, &n, &typed, "rfc822");
    if (typed) fb_take_addr(v, n, out, FB_ADDR_MAX + 1);
}

static enum fb_action action_of(const struct fb_field *f)
{
    static const char *const names[FB_ACTION_COUNT] = {
        [FB_ACTION_FAILED] = "failed",       [FB_ACTION_DELAYED] = "delayed",
        [FB_ACTION_DELIVERED] = "delivered", [FB_ACTION_RELAYED] = "relayed",
        [FB_ACTION_EXPANDED] = "expanded",
    };
    char buf[32];
    fb_clean(buf, sizeof buf, f->value, f->value_len, NULL);
    buf[strcspn(buf, " (;")] = '\0';
    for (int a = 1; a < FB_ACTION_COUNT; a++)
        if (strcasecmp(buf, names[a]) == 0) return (enum fb_action)a;
    return FB_ACTION_NONE;
}

static bool rcpt_empty(const struct fb_rcpt *r)
{
    return !r->action && !r->status[0] && !r->final_recipient[0] && !r->original_recipient[0] &&
           !r->diagnostic[0] && !r->remote_mta[0];
}

void fb_dsn_fields(struct fb_report *out, const char *p, size_t n, struct fb_dsn_extra *x)
{
    struct fb_hdr_iter it;
    struct fb_field f;
    fb_hdr_begin(&it, p, n);
    /* Per-message block. */
    while (fb_hdr_next(&it, &f)) {
        if (fb_name_is(&f, "Reporting-MTA")) {
            take_host(out->reporting_mta, sizeof out->reporting_mta, &f, &out->flags);
        } else if (fb_name_is(&f, "Arrival-Date")) {
            take_text(out->arrival_date, sizeof out->arrival_date, f.value, f.value_len,
                      &out->flags);
        } else if (fb_name_is(&f, "Original-Envelope-Id")) {
            fb_clean(x->envid, sizeof x->envid, f.value, f.value_len, NULL);
        } else if (fb_name_is(&f, "X-Original-Message-ID")) {
            char buf[FB_VALUE_MAX];
            fb_clean(buf, sizeof buf, f.value, f.value_len, NULL);
            char *lt = strchr(buf, '<'), *gt = lt ? strchr(lt, '>') : NULL;
            size_t idl = gt ? (size_t)(gt - lt - 1) : 0;
            if (idl > 0 && idl <= FB_MSGID_MAX && !memchr(lt + 1, ' ', idl) &&
                !memchr(lt + 1, '<', idl)) {
                memcpy(x->msgid, lt + 1, idl);
                x->msgid[idl] = '\0';
            }
        }
    }
    if (it.limited) out->flags |= FB_F_LIMIT;
    /* Per-recipient blocks. A second Final-Recipient (or Original-) also
     * starts an entry, in case a sender put blanks, not an empty line,
     * between blocks. */
    struct fb_rcpt cur;
    memset(&cur, 0, sizeof cur);
    size_t seen = 0;
    for (unsigned blocks = 0; it.p < it.end; blocks++) {
        if (blocks == FB_BLOCKS_MAX) {
            out->flags |= FB_F_LIMIT;
            break;
        }
        fb_hdr_begin(&it, it.p, (size_t)(it.end - it.p));
        for (;;) {
            int more = fb_hdr_next(&it, &f);
            bool starts =
                more && ((fb_name_is(&f, "Final-Recipient") && cur.final_recipient[0]) ||
                         (fb_name_is(&f, "Original-Recipient") && cur.original_recipient[0]));
            if (!more || starts) {
                if (!rcpt_empty(&cur)) {
                    if (seen < FB_RCPTS_MAX)
                        out->rcpts[seen] = cur;
                    else
                        out->flags |= FB_F_RCPTS_MORE;
                    seen++;
                }
                memset(&cur, 0, sizeof cur);
                if (!more) break;
            }
            if (fb_name_is(&f, "Final-Recipient")) {
                take_rcpt_addr(cur.final_recipient, &f);
            } else if (fb_name_is(&f, "Original-Recipient")) {
                take_rcpt_addr(cur.original_recipient, &f);
            } else if (fb_name_is(&f, "Action")) {
                cur.action = action_of(&f);
            } else if (fb_name_is(&f, "Status")) {
                char buf[64];
                fb_clean(buf, sizeof buf, f.value, f.value_len, NULL);
                fb_find_status(buf, strlen(buf), true, cur.status);
            } else if (fb_name_is(&f, "Remote-MTA")) {
                take_host(cur.remote_mta, sizeof cur.remote_mta, &f, &out->flags);
            } else if (fb_name_is(&f, "Diagnostic-Code")) {
                const char *v;
                size_t vn;
                bool typed;
                after_type(&f, &v, &vn, &typed, NULL);
                take_text(cur.diagnostic, sizeof cur.diagnostic, v, vn, &out->flags);
            }
        }
        if (it.limited) out->flags |= FB_F_LIMIT;
    }
    out->n_rcpts = seen < FB_RCPTS_MAX ? seen : FB_RCPTS_MAX;
    /* A Status field missing or unreadable: the diagnostic often has it. */
    for (size_t i = 0; i < out->n_rcpts; i++) {
        struct fb_rcpt *r = &out->rcpts[i];
        if (!r->status[0]) fb_find_status(r->diagnostic, strlen(r->diagnostic), false, r->status);
    }
}

static enum fb_feedback_type feedback_type_of(const struct fb_field *f)
{
    char buf[32];
    fb_clean(buf, sizeof buf, f->value, f->value_len, NULL);
    buf[strcspn(buf, " (;")] = '\0';
    for (int t = 1; t < FB_FEEDBACK_COUNT; t++)
        if (strcasecmp(buf, fb_feedback_type_name((enum fb_feedback_type)t)) == 0)
            return (enum fb_feedback_type)t;
    return buf[0] ? FB_FEEDBACK_OTHER : FB_FEEDBACK_NONE;
}

static bool is_ldh_domain(const char *d)
{
    size_t n = strlen(d);
    if (n == 0 || n > 253 || d[0] == '.' || d[0] == '-' || d[n - 1] == '-') return false;
    for (size_t i = 0; i < n; i++) {
        char c = d[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.'))
            return false;
        if (c == '.' && d[i + 1] == '.') return false;
    }
    return true;
}

void fb_arf_fields(struct fb_report *out, const char *p, size_t n)
{
    struct fb_arf *a = &out->arf;
    struct fb_hdr_iter it;
    struct fb_field f;
    fb_hdr_begin(&it, p, n);
    while (fb_hdr_next(&it, &f)) {
        if (fb_name_is(&f, "Feedback-Type")) {
            a->feedback_type = feedback_type_of(&f);
        } else if (fb_name_is(&f, "User-Agent")) {
            take_text(a->user_agent, sizeof a->user_agent, f.value, f.value_len, &out->flags);
        } else if (fb_name_is(&f, "Version")) {
            take_text(a->version, sizeof a->version, f.value, f.value_len, &out->flags);
        } else if (fb_name_is(&f, "Original-Mail-From")) {
            fb_take_addr(f.value, f.value_len, a->original_mail_from, sizeof a->original_mail_from);
        } else if (fb_name_is(&f, "Original-Rcpt-To")) {
            if (!a->original_rcpt_to[0])
                fb_take_addr(f.value, f.value_len, a->original_rcpt_to, sizeof a->original_rcpt_to);
        } else if (fb_name_is(&f, "Arrival-Date") || fb_name_is(&f, "Received-Date")) {
            if (!a->arrival_date[0])
                take_text(a->arrival_date, sizeof a->arrival_date, f.value, f.value_len,
                          &out->flags);
        } else if (fb_name_is(&f, "Source-IP")) {
            char buf[64];
            struct in6_addr ip6;
            fb_clean(buf, sizeof buf, f.value, f.value_len, NULL);
            buf[strcspn(buf, " (;")] = '\0';
            if (inet_pton(AF_INET, buf, &ip6) == 1 || inet_pton(AF_INET6, buf, &ip6) == 1)
                memcpy(a->source_ip, buf, strlen(buf) + 1);
        } else if (fb_name_is(&f, "Reported-Domain")) {
            char buf[FB_HOST_MAX + 1];
            bool trunc = false;
            fb_clean(buf, sizeof buf, f.value, f.value_len, &trunc);
            if (!trunc && !a->reported_domain[0] && is_ldh_domain(buf))
                memcpy(a->reported_domain, buf, strlen(buf) + 1);
        }
    }
    if (it.limited) out->flags |= FB_F_LIMIT;
}
