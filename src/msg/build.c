/* Message building: a parsed job -> the exact DATA payload. Headers are
 * generated here (never copied from the job), bodies go out as
 * quoted-printable, and the result passes through the dot-stuffer once, so
 * the line-ending and smuggling guarantees hold whatever the job held. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

#include "herald/align.h"
#include "herald/dkim.h"
#include "herald/job.h"
#include "msg/msg.h"

#define MSGID_RANDOM_BYTES    16
#define BOUNDARY_RANDOM_BYTES 12
#define MSGID_DOMAIN_MAX      120 /* fits message_id[160] with the 32 hex chars */

static job_random_fn random_fn;

void job_set_random(job_random_fn fn)
{
    random_fn = fn;
}

static int fill_random(void *buf, size_t len)
{
    if (random_fn) return random_fn(buf, len);
    size_t got = 0;
    while (got < len) {
        ssize_t n = getrandom((char *)buf + got, len - got, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return -errno;
        }
        got += (size_t)n;
    }
    return 0;
}

static int random_hex(char *out, size_t n_bytes)
{
    static const char hex[] = "0123456789abcdef";
    unsigned char raw[32];
    if (n_bytes > sizeof raw) return -EINVAL;
    int rc = fill_random(raw, n_bytes);
    if (rc) return rc;
    for (size_t i = 0; i < n_bytes; i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[2 * n_bytes] = '\0';
    return 0;
}

static bool is_hostname(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > MSGID_DOMAIN_MAX) return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '.'))
            return false;
    }
    return true;
}

/* The Message-ID's right-hand side: the configured name when it is a plain
 * host name, else the From domain, else a reserved name. */
static const char *msgid_rhs(const char *msgid_domain, const char *from)
{
    if (is_hostname(msgid_domain)) return msgid_domain;
    const char *at = from ? strrchr(from, '@') : NULL;
    if (at && is_hostname(at + 1)) return at + 1;
    return "herald.invalid";
}

static bool header_safe(const char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f) return false;
    return true;
}

static int append_address_header(struct hbuf *h, const char *name, const char *display,
                                 const char *addr)
{
    int rc = hbuf_appendf(h, "%s: ", name);
    if (rc) return rc;
    if (display && display[0]) {
        if ((rc = msg_append_phrase(h, display, strlen(display), strlen(name) + 2))) return rc;
        rc = hbuf_appendf(h, " <%s>\r\n", addr);
    } else {
        rc = hbuf_appendf(h, "%s\r\n", addr);
    }
    return rc;
}

/* List-Unsubscribe: herald's signed one-click link first (when the tenant
 * has one), then every comma-separated item of the job's own field, each in
 * angle brackets, one item per line (items were bounded by job_parse). The
 * one-click header goes with it only when there is an https URL to POST to
 * (RFC 8058). */
static int append_unsubscribe(struct hbuf *h, const char *oneclick, const char *v)
{
    int rc = hbuf_append_str(h, "List-Unsubscribe:");
    if (rc) return rc;
    bool https = false, first = true;
    if (oneclick) {
        if ((rc = hbuf_appendf(h, " <%s>", oneclick))) return rc;
        https = strncasecmp(oneclick, "https://", 8) == 0;
        first = false;
    }
    size_t len = v ? strlen(v) : 0, i = 0, start, end;
    while (v && msg_list_next(v, len, &i, &start, &end)) {
        if (end - start >= 8 && strncasecmp(v + start, "https://", 8) == 0) https = true;
        if ((rc =
                 hbuf_appendf(h, "%s <%.*s>", first ? "" : ",\r\n", (int)(end - start), v + start)))
            return rc;
        first = false;
    }
    if ((rc = hbuf_append(h, "\r\n", 2))) return rc;
    if (https) rc = hbuf_append_str(h, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n");
    return rc;
}

/* Part headers, blank line and encoded body: quoted-printable for mostly
 * ASCII text (readable in raw form), base64 when most of it is 8-bit. */
static int append_part(struct hbuf *h, const char *subtype, const char *body)
{
    size_t len = strlen(body);
    bool b64 = msg_prefers_base64(body, len);
    int rc = hbuf_appendf(h,
                          "Content-Type: text/%s; charset=utf-8\r\n"
                          "Content-Transfer-Encoding: %s\r\n\r\n",
                          subtype, b64 ? "base64" : "quoted-printable");
    if (rc) return rc;
    return b64 ? msg_append_base64_text(h, body, len) : msg_append_qp(h, body, len);
}

static int append_body(struct hbuf *h, const struct job *j)
{
    int rc;
    if (!j->text || !j->html) return append_part(h, j->text ? "plain" : "html", j->text ? j->text : j->html);
    /* "=_" never occurs in quoted-printable output ('=' is always followed
     * by hex digits or a line break) nor in base64 (no '_'), so the
     * boundary cannot collide. */
    char boundary[2 * BOUNDARY_RANDOM_BYTES + 16];
    char rnd[2 * BOUNDARY_RANDOM_BYTES + 1];
    if ((rc = random_hex(rnd, BOUNDARY_RANDOM_BYTES))) return rc;
    snprintf(boundary, sizeof boundary, "=_herald_%s", rnd);
    if ((rc = hbuf_appendf(h, "Content-Type: multipart/alternative; boundary=\"%s\"\r\n\r\n",
                           boundary)))
        return rc;
    const char *bodies[2] = {j->text, j->html};
    const char *types[2] = {"plain", "html"};
    for (int p = 0; p < 2; p++) {
        if ((rc = hbuf_appendf(h, "--%s\r\n", boundary)) ||
            (rc = append_part(h, types[p], bodies[p])))
            return rc;
        /* The CRLF before the next delimiter belongs to the delimiter, so
         * the body's own last line break survives. */
        if ((rc = hbuf_append(h, "\r\n", 2))) return rc;
    }
    return hbuf_appendf(h, "--%s--\r\n", boundary);
}

bool msg_id_acceptable(const char *id)
{
    size_t n = strlen(id), at = 0;
    if (n < 3 || n >= sizeof(((struct job *)0)->message_id))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c <= ' ' || c >= 0x7f || c == '<' || c == '>' || c == '"' || c == '\\')
            return false;
        at += c == '@';
    }
    return at == 1 && id[0] != '@' && id[n - 1] != '@';
}

/* Keeps a Message-ID set before the build (a retry's first one). */
static int new_message_id(struct job *j, const char *msgid_domain, const char *from)
{
    if (j->message_id[0])
        return 0;
    char rnd[2 * MSGID_RANDOM_BYTES + 1];
    int rc = random_hex(rnd, MSGID_RANDOM_BYTES);
    if (rc) return rc;
    snprintf(j->message_id, sizeof j->message_id, "%s@%s", rnd, msgid_rhs(msgid_domain, from));
    return 0;
}

/* Append s with every line break (CR, LF, CRLF) as CRLF, as the receiver
 * will read it: what is signed must be what arrives, and the signer must
 * find the header's end where raw_check found it. */
static int append_crlf(struct hbuf *m, const char *s, size_t n)
{
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '\r' && s[i] != '\n') continue;
        int rc = hbuf_append(m, s + run, i - run);
        if (rc == 0) rc = hbuf_append(m, "\r\n", 2);
        if (rc) return rc;
        if (s[i] == '\r' && i + 1 < n && s[i + 1] == '\n') i++;
        run = i + 1;
    }
    return hbuf_append(m, s + run, n - run);
}

/* raw: the caller's message after Date and Message-ID when it lacks them,
 * with CRLF line ends and a header that ends in an empty line. With
 * from_fallback: rewrite applied, its From field names sender.address and
 * the original From goes to Reply-To unless it has one: the note says
 * `rewritten`, so the header the receiver aligns on must say so too. The
 * rest was checked by raw_check. */
static int build_raw(struct hbuf *m, struct job *j, const char *msgid_domain, int64_t now_wall_ms)
{
    struct raw_info info;
    char why[160];
    if (raw_check(j->raw, j->raw_len, &info, why, sizeof why)) return -HERR_MALFORMED;
    int rc;
    if (!info.has_date) {
        char date[48];
        msg_format_date(date, sizeof date, now_wall_ms);
        if ((rc = hbuf_appendf(m, "Date: %s\r\n", date))) return rc;
    }
    if (info.has_message_id) {
        /* Theirs stays, even when it is not one we can read back. */
        if (raw_message_id(info.msgid_value, info.msgid_len, j->message_id,
                           sizeof j->message_id))
            j->message_id[0] = '\0';
    } else if ((rc = new_message_id(j, msgid_domain, j->mail_from ? j->mail_from : j->from)) ||
               (rc = hbuf_appendf(m, "Message-ID: <%s>\r\n", j->message_id))) {
        return rc;
    }
    const char *hdr_end = j->raw + info.header_len;
    const char *copy_from = j->raw;
    if (j->from_rewritten) {
        if (!j->from || !header_safe(j->from)) return -HERR_MALFORMED;
        const char *fv = info.from_value, *fe = info.from_value + info.from_len;
        if ((rc = append_crlf(m, j->raw, (size_t)(fv - j->raw))) ||
            (rc = hbuf_appendf(m, " <%s>\r\n", j->from)))
            return rc;
        if (!info.has_reply_to) {
            if ((rc = hbuf_append_str(m, "Reply-To:")) || (rc = append_crlf(m, fv, info.from_len)))
                return rc;
            if (m->len < 2 || memcmp(m->data + m->len - 2, "\r\n", 2) != 0)
                if ((rc = hbuf_append(m, "\r\n", 2))) return rc; /* From was the last line */
        }
        copy_from = fe;
    }
    /* The header up to its last field, then the empty line, then the body. */
    const char *fields_end = hdr_end;
    while (fields_end > copy_from && (fields_end[-1] == '\r' || fields_end[-1] == '\n'))
        fields_end--;
    if (fields_end > copy_from) {
        if ((rc = append_crlf(m, copy_from, (size_t)(fields_end - copy_from))) ||
            (rc = hbuf_append(m, "\r\n", 2)))
            return rc;
    }
    if ((rc = hbuf_append(m, "\r\n", 2))) return rc;
    return append_crlf(m, hdr_end, j->raw_len - info.header_len);
}

static int build_message(struct hbuf *m, struct job *j, const struct cfg_tenant *tenant,
                         const char *msgid_domain, int64_t now_wall_ms)
{
    if (j->kind == JOB_KIND_RAW && j->raw) return build_raw(m, j, msgid_domain, now_wall_ms);
    const char *from = j->mail_from ? j->mail_from : j->from ? j->from : tenant ? tenant->from : NULL;
    const char *to = j->rcpt ? j->rcpt : j->to;
    if (!from || !to || !j->subject || (!j->text && !j->html)) return -HERR_MALFORMED;
    /* Addresses go into headers verbatim; job values were checked by
     * job_parse, but tenant defaults come from config. */
    if (!header_safe(from) || !header_safe(to) || (j->reply_to && !header_safe(j->reply_to)))
        return -HERR_MALFORMED;
    char date[48];
    msg_format_date(date, sizeof date, now_wall_ms);
    int rc = new_message_id(j, msgid_domain, from);
    if (rc) return rc;

    if ((rc = hbuf_appendf(m, "Date: %s\r\n", date)) ||
        (rc = append_address_header(m, "From", j->from_name, from)) ||
        (rc = append_address_header(m, "To", NULL, to)))
        return rc;
    if (j->reply_to && (rc = append_address_header(m, "Reply-To", NULL, j->reply_to))) return rc;
    if ((rc = hbuf_append_str(m, "Subject: ")) ||
        (rc = msg_append_header_text(m, j->subject, strlen(j->subject), 9)) ||
        (rc = hbuf_appendf(m, "\r\nMessage-ID: <%s>\r\nMIME-Version: 1.0\r\n", j->message_id)))
        return rc;
    if ((j->unsubscribe || j->oneclick_url) &&
        (rc = append_unsubscribe(m, j->oneclick_url, j->unsubscribe)))
        return rc;
    return append_body(m, j);
}

/* One signature per configured key; d= defaults to the From domain so the
 * signature aligns with From (DMARC). A key not loaded (a config read with
 * config_load_string and no config_load_keys) fails the build rather than
 * sending unsigned mail the operator asked to have signed. */
static int sign_message(struct hbuf *out, const struct job *j, const struct cfg_tenant *tenant,
                        const char *msg, size_t len, int64_t now_wall_ms, struct job_error *err)
{
    struct dkim_sig sigs[8];
    const char *hfd = job_header_from_domain(j);
    const char *from_domain = hfd[0] ? hfd : tenant->from ? strrchr(tenant->from, '@') + 1 : NULL;
    size_t n = tenant->n_dkim < HERALD_ARRAY_LEN(sigs) ? tenant->n_dkim : HERALD_ARRAY_LEN(sigs);
    for (size_t i = 0; i < n; i++) {
        const struct cfg_dkim *d = &tenant->dkim[i];
        if (!d->loaded) {
            snprintf(err->reason, sizeof err->reason, "DKIM key %s is not loaded", d->key);
            return -HERR_CONFIG;
        }
        sigs[i] = (struct dkim_sig){.key = d->loaded,
                                    .domain = align_dkim_domain(d, from_domain),
                                    .selector = d->selector,
                                    .expire_s = d->expire_ms / 1000};
    }
    int rc = dkim_sign(sigs, n, msg, len, now_wall_ms / 1000, out);
    if (rc)
        snprintf(err->reason, sizeof err->reason, "DKIM signing failed: %s",
                 rc == -HERR_MALFORMED ? "message or signing domain unusable"
                                       : herald_strerror(rc));
    return rc;
}

#define BUILD_SCRATCH_KEEP (256 * 1024)
static _Thread_local struct hbuf build_scratch;

void job_build_thread_done(void)
{
    hbuf_free(&build_scratch);
}

int job_build(struct job *j, const struct cfg_tenant *tenant, const char *msgid_domain,
              int64_t now_wall_ms, size_t max_message_bytes, struct job_error *err)
{
    struct job_error scratch;
    if (!err) err = &scratch;
    err->field[0] = '\0';
    err->reason[0] = '\0';
    if (max_message_bytes == 0) max_message_bytes = JOB_DEFAULT_MAX_MESSAGE_BYTES;
    hbuf_reset(&j->wire);

    /* One unstuffed-message buffer per thread, kept from job to job: a
     * buffer per job would be malloc'd per job or held by every pooled
     * delivery. */
    struct hbuf m = build_scratch;
    hbuf_reset(&m);
    int rc = build_message(&m, j, tenant, msgid_domain, now_wall_ms);
    if (rc == 0 && tenant && tenant->n_dkim > 0) {
        /* Signed before dot-stuffing: the signature covers what the
         * receiver reads once it has removed the stuffing. The signature
         * fields go through the stuffer too, though they never start a
         * line with '.'. */
        struct hbuf sigs;
        hbuf_init(&sigs);
        rc = sign_message(&sigs, j, tenant, m.data, m.len, now_wall_ms, err);
        if (rc == 0) rc = msg_append_dotstuffed(&j->wire, sigs.data, sigs.len);
        hbuf_free(&sigs);
    }
    if (rc == 0) rc = msg_append_dotstuffed(&j->wire, m.data ? m.data : "", m.len);
    if (m.cap > BUILD_SCRATCH_KEEP)
        hbuf_free(&m);
    build_scratch = m;
    if (rc == 0 && (j->wire.len < 2 || memcmp(j->wire.data + j->wire.len - 2, "\r\n", 2) != 0))
        rc = hbuf_append(&j->wire, "\r\n", 2);
    if (rc == 0) rc = hbuf_append(&j->wire, ".\r\n", 3);
    if (rc == 0 && j->wire.len > max_message_bytes) {
        snprintf(err->reason, sizeof err->reason, "message too large (%zu bytes, limit %zu)",
                 j->wire.len, max_message_bytes);
        rc = -HERR_TOO_LONG;
    }
    if (rc) {
        if (rc == -HERR_MALFORMED && !err->reason[0])
            snprintf(err->reason, sizeof err->reason, "no message content or bad address");
        else if (!err->reason[0])
            snprintf(err->reason, sizeof err->reason, "%s", herald_strerror(rc));
        hbuf_reset(&j->wire);
    }
    return rc;
}
