/* fb_parse: one received message to one struct fb_report. The walk visits
 * the MIME tree (bounded depth and part count), reads the first
 * delivery-status, feedback-report, returned original and up to two plain
 * text parts it meets, and collects VERP tokens from everything it reads.
 * The kind is decided once, at the end, from what was found:
 *   a report type or report part  -> DSN / ARF
 *   a bounce text mark, or a daemon sender with a failed address -> BOUNCE_TEXT
 *   an RFC 3834 or common out-of-office mark -> AUTOREPLY
 * (bounces carry Auto-Submitted: auto-replied too, so that mark comes last). */
#include <errno.h>
#include <string.h>
#include <strings.h>

#include "feedback/fb.h"
#include "herald/job.h"

struct walk {
    struct fb_report *out;
    unsigned n_parts, n_text;
    bool have_dsn, have_arf, daemon_sender;
    char failed_rcpt[FB_ADDR_MAX + 1]; /* X-Failed-Recipients (Exim, Gmail) */
    char report_type[40];
    struct fb_dsn_extra dsn;
    struct fb_text text; /* the first text part that looks like a bounce */
    bool have_text;
    char scratch[FB_SCRATCH];
};

static void entity(struct walk *w, const char *p, size_t n, unsigned depth);

/* ---- VERP tokens -------------------------------------------------------------- */

static bool is_b32(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '2' && c <= '7');
}

static bool is_local_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-/=?^_`{|}~.", c));
}

static void verp_add(struct walk *w, const char *tok)
{
    struct fb_report *o = w->out;
    char t[FB_VERP_TOKEN_LEN + 1];
    for (size_t i = 0; i < FB_VERP_TOKEN_LEN; i++)
        t[i] = tok[i] >= 'A' && tok[i] <= 'Z' ? (char)(tok[i] - 'A' + 'a') : tok[i];
    t[FB_VERP_TOKEN_LEN] = '\0';
    for (size_t i = 0; i < o->n_verp; i++)
        if (memcmp(o->verp[i], t, sizeof t) == 0) return;
    if (o->n_verp == FB_VERP_KEEP) {
        o->flags |= FB_F_TRUNCATED;
        return;
    }
    memcpy(o->verp[o->n_verp++], t, sizeof t);
}

/* Every "b+<37 base32>@" in s[0..n) that starts a local part. */
static void verp_scan(struct walk *w, const char *s, size_t n)
{
    const size_t need = FB_VERP_LOCAL_LEN + 1;
    for (size_t i = 0; i + need <= n; i++) {
        if ((s[i] != 'b' && s[i] != 'B') || s[i + 1] != '+') continue;
        if (i > 0 && is_local_char(s[i - 1])) continue;
        size_t k = 0;
        while (k < FB_VERP_TOKEN_LEN && is_b32(s[i + 2 + k]))
            k++;
        if (k == FB_VERP_TOKEN_LEN && s[i + 2 + k] == '@') verp_add(w, s + i + 2);
    }
}

/* ---- the returned original ------------------------------------------------------ */

/* The msg-id in a Message-ID or In-Reply-To value, without brackets,
 * when it has no blank, control byte or further bracket. */
static void take_msgid(char *out, const struct fb_field *f)
{
    char id[FB_MSGID_MAX + 1];
    if (raw_message_id(f->value, f->value_len, id, sizeof id) == 0 &&
        strcspn(id, " \t\r\n<>") == strlen(id))
        fb_clean(out, FB_MSGID_MAX + 1, id, strlen(id), NULL);
}

static void original(struct walk *w, const char *p, size_t n)
{
    struct fb_report *o = w->out;
    if (o->has_original) return;
    struct fb_hdr_iter it;
    struct fb_field f;
    fb_hdr_begin(&it, p, n);
    while (fb_hdr_next(&it, &f)) {
        o->has_original = true;
        if (fb_name_is(&f, "Message-ID") && !o->orig_message_id[0]) {
            take_msgid(o->orig_message_id, &f);
        } else if (fb_name_is(&f, "Return-Path") && !o->orig_return_path[0]) {
            fb_take_addr(f.value, f.value_len, o->orig_return_path, sizeof o->orig_return_path);
        } else if (fb_name_is(&f, "To") && !o->orig_to[0]) {
            fb_take_addr(f.value, f.value_len, o->orig_to, sizeof o->orig_to);
        }
    }
    if (it.limited) o->flags |= FB_F_LIMIT;
    verp_scan(w, p, (size_t)(it.p - p));
}

/* ---- parts ------------------------------------------------------------------------ */

static bool is_original_type(const struct fb_ctype *ct)
{
    if (strcmp(ct->type, "message") == 0)
        return strcmp(ct->sub, "rfc822") == 0 || strcmp(ct->sub, "global") == 0 ||
               strcmp(ct->sub, "rfc822-headers") == 0 || strcmp(ct->sub, "global-headers") == 0;
    return strcmp(ct->type, "text") == 0 &&
           (strcmp(ct->sub, "rfc822-headers") == 0 || strcmp(ct->sub, "rfc822-header") == 0);
}

/* The bytes of a leaf part, decoded into the scratch buffer when it has a
 * transfer encoding (each leaf is finished before the next is decoded). */
static const char *leaf(struct walk *w, enum fb_cte cte, const char *p, size_t *n)
{
    if (cte == FB_CTE_IDENTITY) return p;
    bool trunc = false;
    *n = fb_decode(cte, p, *n, w->scratch, sizeof w->scratch, &trunc);
    if (trunc) w->out->flags |= FB_F_LIMIT;
    return w->scratch;
}

static void content(struct walk *w, const struct fb_ctype *ct, enum fb_cte cte, const char *p,
                    size_t n, unsigned depth)
{
    struct fb_report *o = w->out;
    if (strcmp(ct->type, "multipart") == 0) {
        /* The type says what the message is even when its parts cannot
         * be read. */
        if (strcmp(ct->sub, "report") == 0 && !w->report_type[0])
            memcpy(w->report_type, ct->report_type, sizeof w->report_type);
        if (!ct->boundary[0]) {
            o->flags |= FB_F_MIME_BROKEN;
            return;
        }
        if (depth + 1 >= FB_DEPTH_MAX) {
            o->flags |= FB_F_LIMIT;
            return;
        }
        struct fb_multipart m;
        const char *part;
        size_t len;
        fb_multipart_begin(&m, p, n, ct->boundary);
        while (fb_multipart_next(&m, &part, &len)) {
            if (++w->n_parts > FB_PARTS_MAX) {
                o->flags |= FB_F_LIMIT;
                break;
            }
            entity(w, part, len, depth + 1);
        }
        if (m.broken) o->flags |= FB_F_MIME_BROKEN;
        return;
    }
    if (strcmp(ct->type, "message") == 0 && (strcmp(ct->sub, "delivery-status") == 0 ||
                                             strcmp(ct->sub, "global-delivery-status") == 0)) {
        if (w->have_dsn) return;
        w->have_dsn = true;
        p = leaf(w, cte, p, &n);
        fb_dsn_fields(o, p, n, &w->dsn);
        verp_scan(w, p, n);
        /* An ENVID herald set is the bare token (no prefix, no '@'). */
        if (strlen(w->dsn.envid) == FB_VERP_TOKEN_LEN) {
            bool all = true;
            for (size_t i = 0; all && i < FB_VERP_TOKEN_LEN; i++)
                all = is_b32(w->dsn.envid[i]);
            if (all) verp_add(w, w->dsn.envid);
        }
        return;
    }
    if (strcmp(ct->type, "message") == 0 && strcmp(ct->sub, "feedback-report") == 0) {
        if (w->have_arf) return;
        w->have_arf = true;
        p = leaf(w, cte, p, &n);
        fb_arf_fields(o, p, n);
        verp_scan(w, p, n);
        return;
    }
    if (is_original_type(ct)) {
        if (o->has_original) return;
        p = leaf(w, cte, p, &n);
        original(w, p, n);
        return;
    }
    if (strcmp(ct->type, "text") == 0 && strcmp(ct->sub, "plain") == 0 && w->n_text < 2) {
        w->n_text++;
        p = leaf(w, cte, p, &n);
        struct fb_text t;
        unsigned flags = 0;
        fb_text_scan(p, n, &t, &flags);
        if (!w->have_text && (t.rcpt[0] || t.status[0] || t.qmail || t.exim)) {
            w->text = t;
            w->have_text = true;
            o->flags |= flags;
        }
        size_t scan = t.orig ? (size_t)(t.orig - p) : n;
        verp_scan(w, p, scan < FB_TEXT_MAX ? scan : FB_TEXT_MAX);
        /* The quoted original lives in the scratch buffer or the message:
         * read it now, before another part reuses the buffer. */
        if (t.orig && !o->has_original) original(w, t.orig, t.orig_len);
        w->text.orig = NULL;
    }
}

/* A header block and its body; depth 0 is the message itself. */
static void entity(struct walk *w, const char *p, size_t n, unsigned depth)
{
    struct fb_hdr_iter it;
    struct fb_field f;
    struct fb_ctype ct;
    enum fb_cte cte = FB_CTE_IDENTITY;
    bool have_ct = false;
    fb_hdr_begin(&it, p, n);
    while (fb_hdr_next(&it, &f)) {
        if (fb_name_is(&f, "Content-Type") && !have_ct) {
            fb_ctype_parse(f.value, f.value_len, &ct);
            have_ct = true;
        } else if (fb_name_is(&f, "Content-Transfer-Encoding")) {
            cte = fb_cte_parse(f.value, f.value_len);
        }
    }
    if (it.limited) w->out->flags |= FB_F_LIMIT;
    if (!have_ct) fb_ctype_parse("text/plain", 10, &ct);
    content(w, &ct, cte, it.p, (size_t)(it.end - it.p), depth);
}

/* ---- the message's own header ------------------------------------------------------- */

/* Subject starts of out-of-office replies, lower case (UTF-8 as is):
 * English first, then what the large European locales of Outlook and
 * Gmail write. */
static const char *const ooo_subjects[] = {
    "out of office",
    "out of the office",
    "automatic reply",
    "auto:",
    "autoreply",
    "auto-reply",
    "auto reply",
    "auto response",
    "auto-response",
    "autoresponse",
    "away from the office",
    "on vacation",
    "vacation reply",
    "automatische antwort",
    "abwesenheitsnotiz",
    "r\xc3\xa9ponse automatique",
    "risposta automatica",
    "respuesta autom\xc3\xa1tica",
    "automatisch antwoord",
    "resposta autom\xc3\xa1tica",
    NULL,
};

static void mark(struct walk *w, const char *m)
{
    if (!w->out->autoreply_mark[0]) memcpy(w->out->autoreply_mark, m, strlen(m) + 1);
}

static void top_field(struct walk *w, const struct fb_field *f)
{
    char v[FB_VALUE_MAX];
    if (fb_name_is(f, "From")) {
        char a[FB_ADDR_MAX + 1];
        fb_clean(v, sizeof v, f->value, f->value_len, NULL);
        fb_lower(v);
        if (fb_take_addr(f->value, f->value_len, a, sizeof a)) {
            fb_lower(a);
            if (strncmp(a, "mailer-daemon@", 14) == 0 || strncmp(a, "postmaster@", 11) == 0)
                w->daemon_sender = true;
        } else if (strstr(v, "mailer-daemon")) { /* "MAILER-DAEMON" without a domain */
            w->daemon_sender = true;
        }
    } else if (fb_name_is(f, "In-Reply-To")) {
        if (!w->out->in_reply_to[0]) take_msgid(w->out->in_reply_to, f);
    } else if (fb_name_is(f, "X-Failed-Recipients")) {
        if (!w->failed_rcpt[0])
            fb_take_addr(f->value, f->value_len, w->failed_rcpt, sizeof w->failed_rcpt);
    } else if (fb_name_is(f, "Return-Path")) {
        fb_clean(v, sizeof v, f->value, f->value_len, NULL);
        if (strcmp(v, "<>") == 0) w->daemon_sender = true;
    } else if (fb_name_is(f, "Auto-Submitted")) {
        fb_clean(v, sizeof v, f->value, f->value_len, NULL);
        fb_lower(v);
        v[strcspn(v, " ;(")] = '\0';
        if (strcmp(v, "auto-replied") == 0) mark(w, "auto-submitted");
    } else if (fb_name_is(f, "X-Autoreply") || fb_name_is(f, "X-Autorespond")) {
        fb_clean(v, sizeof v, f->value, f->value_len, NULL);
        fb_lower(v);
        if (strcmp(v, "no") != 0 && strcmp(v, "false") != 0 && strcmp(v, "0") != 0)
            mark(w, fb_name_is(f, "X-Autoreply") ? "x-autoreply" : "x-autorespond");
    } else if (fb_name_is(f, "Precedence")) {
        fb_clean(v, sizeof v, f->value, f->value_len, NULL);
        fb_lower(v);
        if (strcmp(v, "auto_reply") == 0) mark(w, "precedence");
    } else if (fb_name_is(f, "Subject")) {
        char d[FB_VALUE_MAX];
        size_t dn = fb_decode_words(f->value, f->value_len, d, sizeof d);
        fb_clean(v, sizeof v, d, dn, NULL);
        fb_lower(v);
        for (const char *const *s = ooo_subjects; *s; s++)
            if (strncmp(v, *s, strlen(*s)) == 0) {
                mark(w, "subject");
                break;
            }
    }
}

static bool starts_with_field(const char *p, size_t n)
{
    size_t c = 0;
    while (c < n && p[c] != ':' && (unsigned char)p[c] > ' ' && (unsigned char)p[c] < 0x7f)
        c++;
    return c > 0 && c < n && p[c] == ':';
}

static void classify(struct walk *w)
{
    struct fb_report *o = w->out;
    /* The MTA's own header beats a guess from its prose. */
    const char *rcpt = w->failed_rcpt[0] ? w->failed_rcpt : w->text.rcpt;
    bool dsn_type = strcmp(w->report_type, "delivery-status") == 0 ||
                    strcmp(w->report_type, "global-delivery-status") == 0;
    if (dsn_type || w->have_dsn) {
        o->kind = FB_DSN;
    } else if (strcmp(w->report_type, "feedback-report") == 0 || w->have_arf) {
        o->kind = FB_ARF;
    } else if (w->have_text &&
               (w->text.qmail || w->text.exim ||
                (w->daemon_sender && rcpt[0] && (w->text.status[0] || w->text.daemon_words)))) {
        o->kind = FB_BOUNCE_TEXT;
    } else if (o->autoreply_mark[0]) {
        o->kind = FB_AUTOREPLY;
        return;
    } else {
        o->kind = FB_UNKNOWN;
        return;
    }
    if (!o->orig_message_id[0] && w->dsn.msgid[0])
        memcpy(o->orig_message_id, w->dsn.msgid, strlen(w->dsn.msgid) + 1);
    /* A text bounce, or a DSN whose status part was lost: one entry from
     * the prose. */
    if (o->kind != FB_ARF && o->n_rcpts == 0 && rcpt[0]) {
        struct fb_rcpt *r = &o->rcpts[0];
        memset(r, 0, sizeof *r);
        memcpy(r->final_recipient, rcpt, strlen(rcpt) + 1);
        memcpy(r->status, w->text.status, strlen(w->text.status) + 1);
        memcpy(r->diagnostic, w->text.diag, strlen(w->text.diag) + 1);
        bool temp =
            r->status[0] == '4' || (!r->status[0] && w->text.temporary && !w->text.permanent);
        r->action = temp ? FB_ACTION_DELAYED : FB_ACTION_FAILED;
        o->n_rcpts = 1;
    }
    if (o->kind != FB_AUTOREPLY) o->autoreply_mark[0] = '\0';
}

int fb_parse(const char *msg, size_t len, const struct fb_envelope *env, struct fb_report *out)
{
    if (!out || (!msg && len)) return -EINVAL;
    memset(out, 0, sizeof *out);
    if (!starts_with_field(msg, len)) {
        out->flags |= FB_F_NO_HEADER;
        return -HERR_MALFORMED;
    }
    struct walk w;
    memset(&w, 0, offsetof(struct walk, scratch));
    w.out = out;
    if (env && env->rcpt_to) verp_scan(&w, env->rcpt_to, strlen(env->rcpt_to));
    if (env && env->mail_from && !env->mail_from[0]) w.daemon_sender = true;

    struct fb_hdr_iter it;
    struct fb_field f;
    fb_hdr_begin(&it, msg, len);
    while (fb_hdr_next(&it, &f))
        top_field(&w, &f);
    verp_scan(&w, msg, (size_t)(it.p - msg));
    entity(&w, msg, len, 0);
    classify(&w);
    return 0;
}

bool fb_is_hard(const struct fb_rcpt *r)
{
    return r->action == FB_ACTION_FAILED && r->status[0] == '5';
}

const char *fb_kind_name(enum fb_kind k)
{
    static const char *const names[FB_KIND_COUNT] = {
        [FB_UNKNOWN] = "unknown",
        [FB_DSN] = "dsn",
        [FB_ARF] = "arf",
        [FB_AUTOREPLY] = "autoreply",
        [FB_BOUNCE_TEXT] = "bounce_text",
    };
    return (unsigned)k < FB_KIND_COUNT ? names[k] : "unknown";
}

const char *fb_action_name(enum fb_action a)
{
    static const char *const names[FB_ACTION_COUNT] = {
        [FB_ACTION_NONE] = "none",       [FB_ACTION_FAILED] = "failed",
        [FB_ACTION_DELAYED] = "delayed", [FB_ACTION_DELIVERED] = "delivered",
        [FB_ACTION_RELAYED] = "relayed", [FB_ACTION_EXPANDED] = "expanded",
    };
    return (unsigned)a < FB_ACTION_COUNT ? names[a] : "none";
}

const char *fb_feedback_type_name(enum fb_feedback_type t)
{
    static const char *const names[FB_FEEDBACK_COUNT] = {
        [FB_FEEDBACK_NONE] = "none",
        [FB_FEEDBACK_ABUSE] = "abuse",
        [FB_FEEDBACK_FRAUD] = "fraud",
        [FB_FEEDBACK_VIRUS] = "virus",
        [FB_FEEDBACK_OTHER] = "other",
        [FB_FEEDBACK_NOT_SPAM] = "not-spam",
        [FB_FEEDBACK_AUTH_FAILURE] = "auth-failure",
    };
    return (unsigned)t < FB_FEEDBACK_COUNT ? names[t] : "none";
}
