/* Job decoding: a stream entry's field list -> a validated struct job, or a
 * rejection naming the field and the reason. Every value is copied into the
 * job's arena first, so nothing points back into the reader's buffers. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "herald/job.h"
#include "herald/template.h"
#include "msg/msg.h"

#define TENANT_NAME_MAX 64
#define SALVAGE_MAX     256 /* id/ref/tenant/to copied for a rejection note */
#define ATTEMPT_MAX     100000

enum jf {
    JF_TENANT,
    JF_TO,
    JF_ID,
    JF_REF,
    JF_FROM,
    JF_FROM_NAME,
    JF_REPLY_TO,
    JF_SUBJECT,
    JF_TEXT,
    JF_HTML,
    JF_TEMPLATE,
    JF_RAW,
    JF_SEND_AT,
    JF_EXPIRES_AT,
    JF_UNSUBSCRIBE,
    JF_PRIORITY,
    JF_REPLACES,
    JF_CANCEL,
    JF_ATTEMPT,
    JF_ENQUEUED_AT,
    JF_COUNT
};

/* header: the value ends up in a header line or a note field, so CR, LF and
 * NUL would let a job inject headers or break the note. */
static const struct {
    const char *name;
    bool header;
} field_defs[JF_COUNT] = {
    [JF_TENANT] = {"tenant", true},
    [JF_TO] = {"to", true},
    [JF_ID] = {"id", true},
    [JF_REF] = {"ref", true},
    [JF_FROM] = {"from", true},
    [JF_FROM_NAME] = {"from_name", true},
    [JF_REPLY_TO] = {"reply_to", true},
    [JF_SUBJECT] = {"subject", true},
    [JF_TEXT] = {"text", false},
    [JF_HTML] = {"html", false},
    [JF_TEMPLATE] = {"template", true},
    [JF_RAW] = {"raw", false},
    [JF_SEND_AT] = {"send_at", true},
    [JF_EXPIRES_AT] = {"expires_at", true},
    [JF_UNSUBSCRIBE] = {"unsubscribe", true},
    [JF_PRIORITY] = {"priority", true},
    [JF_REPLACES] = {"replaces", true},
    [JF_CANCEL] = {"cancel", true},
    [JF_ATTEMPT] = {"attempt", true},
    [JF_ENQUEUED_AT] = {"enqueued_at", true},
};

/* The values of the known fields, after copying; len 0 means absent. */
struct known {
    const char *v[JF_COUNT];
    size_t len[JF_COUNT];
};

const char *const job_herald_fields[] = {"attempt",   "enqueued_at", "admitted",   "counted",
                                         "throttled", "message_id",  "via_provider", "via_site"};
const size_t job_n_herald_fields = sizeof job_herald_fields / sizeof job_herald_fields[0];

const char *job_herald_field(const struct job *j)
{
    for (size_t i = 0; i < j->n_fields; i++)
        for (size_t k = 0; k < job_n_herald_fields; k++)
            if (strcmp(j->names[i], job_herald_fields[k]) == 0) return job_herald_fields[k];
    return NULL;
}

void job_init(struct job *j)
{
    memset(j, 0, sizeof *j);
    hbuf_init(&j->wire);
    arena_init(&j->arena);
    j->attempt = 1;
}

void job_clear(struct job *j)
{
    arena_free(&j->arena);
    hbuf_free(&j->wire);
    job_init(j);
}

/* Buffers up to this size survive job_recycle; a huge message's do not,
 * so a pooled delivery does not pin them. */
#define JOB_KEEP_BYTES (256 * 1024)

static void keep_or_free(struct hbuf *b)
{
    if (b->cap > JOB_KEEP_BYTES)
        hbuf_free(b);
    else
        hbuf_reset(b);
}

void job_recycle(struct job *j)
{
    struct hbuf wire = j->wire;
    struct arena arena = j->arena;
    arena_reset(&arena);
    keep_or_free(&wire);
    job_init(j);
    j->wire = wire;
    j->arena = arena;
}

/* The first failure wins; later checks still run so that the salvage of
 * id/ref/tenant/to is independent of which check failed. */
static int fail(struct job_error *err, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct job_error *err, const char *field, const char *fmt, ...)
{
    if (err->reason[0]) return -HERR_MALFORMED;
    /* Field names may come from the entry: keep them printable. */
    size_t n = 0;
    for (; field[n] && n < sizeof err->field - 1; n++) {
        unsigned char c = (unsigned char)field[n];
        err->field[n] = c > 0x20 && c < 0x7f ? (char)c : '?';
    }
    err->field[n] = '\0';
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->reason, sizeof err->reason, fmt, ap);
    va_end(ap);
    if (!err->reason[0]) snprintf(err->reason, sizeof err->reason, "invalid");
    return -HERR_MALFORMED;
}

static const char *bad_header_byte(const char *v, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (v[i] == '\r' || v[i] == '\n') return "contains CR or LF";
        if (v[i] == '\0') return "contains NUL";
    }
    return NULL;
}

static bool parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
    if (len == 0 || len > 19) return false;
    uint64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9') return false;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max) return false;
    *out = v;
    return true;
}

static bool valid_tenant_name(const char *s, size_t len)
{
    if (len == 0 || len > TENANT_NAME_MAX) return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

static const struct cfg_tenant *find_tenant(const struct config *cfg, const char *name)
{
    if (!cfg) return NULL;
    for (size_t i = 0; i < cfg->n_tenants; i++)
        if (cfg->tenants[i].name && strcmp(cfg->tenants[i].name, name) == 0)
            return &cfg->tenants[i];
    return NULL;
}

static const char *domain_of(const char *addr)
{
    const char *at = strrchr(addr, '@');
    return at ? at + 1 : "";
}

static bool from_domain_allowed(const struct cfg_tenant *t, const char *domain)
{
    if (t->domains.n == 0) return t->from && strcasecmp(domain_of(t->from), domain) == 0;
    for (size_t i = 0; i < t->domains.n; i++)
        if (t->domains.items[i] && strcasecmp(t->domains.items[i], domain) == 0) return true;
    return false;
}

const char *job_header_from_domain(const struct job *j)
{
    if (j->kind == JOB_KIND_RAW && j->header_from_domain) return j->header_from_domain;
    const char *at = j->from ? strrchr(j->from, '@') : NULL;
    return at ? at + 1 : "";
}

static bool tenant_domain_cb(const char *domain, void *arg)
{
    return from_domain_allowed(arg, domain);
}

static int check_address(enum jf f, const struct known *k, struct job_error *err)
{
    bool utf8 = false;
    const char *why = NULL;
    if (addr_check(k->v[f], k->len[f], &utf8, &why))
        return fail(err, field_defs[f].name, "invalid address (%s)", why ? why : "malformed");
    return 0;
}

/* The address as it goes on the wire: the domain in A-labels (so an IDN
 * domain needs nothing from the server), the local part as given. Only a
 * UTF-8 local part makes the message need SMTPUTF8. key, when not NULL,
 * gets the recipient key of the same normalisation. */
static int wire_address(struct job *j, const char *addr, const char *field, const char **out,
                        const char **key, struct job_error *err)
{
    struct addr_norm a;
    const char *why = NULL;
    int rc = addr_normalize(addr, strlen(addr), &a, &why);
    if (rc == -ENOMEM) return rc;
    if (rc == -EILSEQ)
        return fail(err, field, "domain is not a valid IDNA2008 name: %s", why ? why : "invalid");
    if (rc) return fail(err, field, "invalid address (%s)", why ? why : "malformed");
    if (a.needs_smtputf8) j->needs_smtputf8 = true;
    size_t n = strlen(a.wire);
    *out = arena_strndup(&j->arena, a.wire, n);
    if (key) *key = arena_strndup(&j->arena, a.key, n);
    if (!*out || (key && !*key)) return -ENOMEM;
    return 0;
}

/* List-Unsubscribe items: each becomes "<item>", one per folded line, so an
 * item must be printable ASCII without brackets or spaces and short enough
 * to fit a line. */
static int check_unsubscribe(const char *v, size_t len, struct job_error *err)
{
    size_t n_items = 0;
    size_t i = 0, start, end;
    while (msg_list_next(v, len, &i, &start, &end)) {
        if (end - start > 900)
            return fail(err, "unsubscribe", "URL too long (%zu bytes, limit 900)", end - start);
        for (size_t m = start; m < end; m++) {
            unsigned char c = (unsigned char)v[m];
            if (c <= 0x20 || c >= 0x7f || c == '<' || c == '>')
                return fail(err, "unsubscribe", "invalid character in URL");
        }
        if (++n_items > 8) return fail(err, "unsubscribe", "too many URLs (limit 8)");
    }
    if (n_items == 0) return fail(err, "unsubscribe", "no URL");
    return 0;
}

static void stream_id_ms(struct job *j)
{
    const char *dash = strchr(j->stream_id, '-');
    size_t n = dash ? (size_t)(dash - j->stream_id) : strlen(j->stream_id);
    uint64_t v;
    if (parse_u64(j->stream_id, n, INT64_MAX, &v)) j->enqueued_ms = (int64_t)v;
}

/* Lengths arrays may be NULL for NUL-terminated input (tests, tools). */
static size_t field_len(const char *s, const size_t *lens, size_t i)
{
    if (!s) return 0;
    return lens ? lens[i] : strlen(s);
}

/* Copy every field into the arena. Oversized fields are not copied (their
 * raw value is left empty) and make the job fail. */
static int copy_fields(struct job *j, size_t n, const char *const *names, const size_t *name_lens,
                       const char *const *values, const size_t *value_lens, size_t max_field,
                       size_t max_total, struct job_error *err)
{
    j->names = arena_alloc(&j->arena, n * sizeof *j->names + 1);
    j->values = arena_alloc(&j->arena, n * sizeof *j->values + 1);
    j->value_lens = arena_alloc(&j->arena, n * sizeof *j->value_lens + 1);
    if (!j->names || !j->values || !j->value_lens) return -ENOMEM;
    size_t total = 0, copied = 0;
    for (size_t i = 0; i < n; i++) {
        size_t vl = field_len(values[i], value_lens, i);
        total = total + vl < total ? SIZE_MAX : total + vl;
    }
    for (size_t i = 0; i < n; i++) {
        size_t nl = field_len(names[i], name_lens, i);
        size_t vl = field_len(values[i], value_lens, i);
        char shown[48];
        snprintf(shown, sizeof shown, "%.*s", (int)(nl < 40 ? nl : 40), nl ? names[i] : "");
        if (nl > JOB_MAX_NAME_BYTES) {
            fail(err, shown, "field name too long (%zu bytes, limit %d)", nl, JOB_MAX_NAME_BYTES);
            nl = 0;
        }
        j->names[i] = arena_strndup(&j->arena, nl ? names[i] : "", nl);
        if (vl > max_field) {
            fail(err, shown, "too large (%zu bytes, limit engine.max_field_bytes = %zu)", vl,
                 max_field);
            vl = 0;
        } else if (copied + vl > max_total) {
            fail(err, "", "job too large (%zu bytes, limit %zu)", total, max_total);
            vl = 0;
        }
        copied += vl;
        j->values[i] = arena_strndup(&j->arena, vl ? values[i] : "", vl);
        j->value_lens[i] = vl;
        if (!j->names[i] || !j->values[i]) return -ENOMEM;
    }
    j->n_fields = n;
    return 0;
}

/* Map raw fields onto known ones. A known field given twice is an error:
 * consumers might otherwise disagree on which copy counts. */
static void index_fields(const struct job *j, struct known *k, struct job_error *err)
{
    bool seen[JF_COUNT] = {false};
    for (size_t i = 0; i < j->n_fields; i++) {
        for (int f = 0; f < JF_COUNT; f++) {
            if (strcmp(j->names[i], field_defs[f].name) != 0) continue;
            if (seen[f]) fail(err, field_defs[f].name, "given more than once");
            seen[f] = true;
            if (j->value_lens[i]) {
                k->v[f] = j->values[i];
                k->len[f] = j->value_lens[i];
            }
            break;
        }
    }
}

static bool clean_short(const struct known *k, enum jf f)
{
    return k->len[f] && k->len[f] <= SALVAGE_MAX && !bad_header_byte(k->v[f], k->len[f]);
}

/* Identity first: even a rejected job needs a name in its note. */
static void set_identity(struct job *j, const struct known *k)
{
    j->id = clean_short(k, JF_ID) ? k->v[JF_ID]
                                  : arena_strndup(&j->arena, j->stream_id, strlen(j->stream_id));
    if (!j->id) j->id = "";
    if (clean_short(k, JF_REF)) j->ref = k->v[JF_REF];
    if (clean_short(k, JF_TENANT) && valid_tenant_name(k->v[JF_TENANT], k->len[JF_TENANT]))
        j->tenant = k->v[JF_TENANT];
    if (clean_short(k, JF_TO)) j->to = k->v[JF_TO];
}

static int check_content(const struct known *k, struct job_error *err)
{
    bool literal = k->v[JF_SUBJECT] || k->v[JF_TEXT] || k->v[JF_HTML];
    int kinds = literal + !!k->v[JF_TEMPLATE] + !!k->v[JF_RAW];
    if (kinds > 1)
        return fail(err, "", "more than one kind of content (subject+text/html, template, raw)");
    if (k->v[JF_TEMPLATE] || k->v[JF_RAW]) return 0; /* checked once the tenant is known */
    if (!k->v[JF_SUBJECT])
        return fail(err, "subject",
                    literal ? "missing"
                            : "missing (no content: subject+text/html, template or raw)");
    if (!k->v[JF_TEXT] && !k->v[JF_HTML])
        return fail(err, "text", "missing (subject needs text and/or html)");
    for (enum jf f = JF_TEXT; f <= JF_HTML; f++)
        if (k->v[f] && memchr(k->v[f], '\0', k->len[f]))
            return fail(err, field_defs[f].name, "contains NUL");
    return 0;
}

static int check_times(struct job *j, const struct known *k, struct job_error *err)
{
    if (k->v[JF_SEND_AT] && msg_parse_time_ms(k->v[JF_SEND_AT], k->len[JF_SEND_AT], &j->send_at_ms))
        return fail(err, "send_at", "not a unix-ms time or RFC 3339 date-time");
    if (k->v[JF_EXPIRES_AT] &&
        msg_parse_time_ms(k->v[JF_EXPIRES_AT], k->len[JF_EXPIRES_AT], &j->expires_at_ms))
        return fail(err, "expires_at", "not a unix-ms time or RFC 3339 date-time");
    uint64_t v;
    if (k->v[JF_ATTEMPT]) {
        if (!parse_u64(k->v[JF_ATTEMPT], k->len[JF_ATTEMPT], ATTEMPT_MAX, &v))
            return fail(err, "attempt", "not a count");
        j->attempt = (uint32_t)v + 1;
    }
    if (k->v[JF_ENQUEUED_AT]) {
        if (!parse_u64(k->v[JF_ENQUEUED_AT], k->len[JF_ENQUEUED_AT], INT64_MAX, &v))
            return fail(err, "enqueued_at", "not a unix-ms time");
        j->enqueued_ms = (int64_t)v;
    }
    return 0;
}

static int check_priority(struct job *j, const struct known *k, struct job_error *err)
{
    const char *p = k->v[JF_PRIORITY];
    if (!p) return 0;
    if (strcmp(p, "high") == 0)
        j->priority = JOB_PRIO_HIGH;
    else if (strcmp(p, "normal") == 0)
        j->priority = JOB_PRIO_NORMAL;
    else if (strcmp(p, "bulk") == 0)
        j->priority = JOB_PRIO_BULK;
    else
        return fail(err, "priority", "must be high, normal or bulk");
    return 0;
}

static bool has_non_ascii(const char *s)
{
    for (; s && *s; s++)
        if ((unsigned char)*s >= 0x80) return true;
    return false;
}

static int check_sender(struct job *j, const struct cfg_tenant *t, const struct known *k,
                        struct job_error *err)
{
    if (k->v[JF_FROM]) {
        if (check_address(JF_FROM, k, err)) return -HERR_MALFORMED;
        const char *domain = domain_of(k->v[JF_FROM]);
        if (!from_domain_allowed(t, domain))
            return fail(err, "from", "domain '%.64s' is not one of tenant %s's domains", domain,
                        t->name);
        j->from = k->v[JF_FROM];
    } else {
        j->from = t->from;
    }
    if (!j->from) return fail(err, "from", "missing (tenant %s has no default From)", t->name);
    j->from_name = k->v[JF_FROM_NAME] ? k->v[JF_FROM_NAME] : t->from_name;
    if (k->v[JF_REPLY_TO]) {
        if (check_address(JF_REPLY_TO, k, err)) return -HERR_MALFORMED;
        j->reply_to = k->v[JF_REPLY_TO];
    } else {
        j->reply_to = t->reply_to;
    }
    /* Tenant defaults come from the config, not the job, but they go
     * through the same normalisation: it refuses a default whose domain
     * fails IDNA2008 and decides whether the envelope needs SMTPUTF8. */
    int rc = wire_address(j, j->from, "from", &j->mail_from, NULL, err);
    if (rc == 0 && j->reply_to && has_non_ascii(j->reply_to))
        rc = wire_address(j, j->reply_to, "reply_to", &j->reply_to, NULL, err);
    return rc;
}

/* Policy warn: remember the suggestion for the notes; reject: refuse the
 * job. The address itself is never changed. */
static int check_typo(struct job *j, const struct config *cfg, struct job_error *err)
{
    enum cfg_typo_policy policy = cfg ? cfg->addresses.typo_policy : CFG_TYPO_WARN;
    if (policy == CFG_TYPO_OFF) return 0;
    const char *const *list = typo_default_domains;
    size_t n = 0;
    if (cfg && cfg->addresses.typo_domains.items) {
        list = (const char *const *)cfg->addresses.typo_domains.items;
        n = cfg->addresses.typo_domains.n;
    } else {
        while (list[n])
            n++;
    }
    const char *better = typo_suggest(j->to_domain, list, n);
    if (!better) return 0;
    const char *at = strrchr(j->to, '@');
    size_t local_len = (size_t)(at - j->to), bl = strlen(better);
    char *s = arena_alloc(&j->arena, local_len + bl + 2);
    if (!s) return -ENOMEM;
    memcpy(s, j->to, local_len + 1);
    memcpy(s + local_len + 1, better, bl + 1);
    j->suggestion = s;
    if (policy == CFG_TYPO_REJECT) return fail(err, "to", "did you mean %.200s?", s);
    return 0;
}

struct var_ctx {
    const struct job *j;
};

/* var.NAME fields of the job; an empty value counts as given (the caller
 * said so explicitly), unlike an absent one. */
static const char *lookup_var(void *arg, const char *name, size_t name_len, size_t *value_len)
{
    const struct var_ctx *c = arg;
    const struct job *j = c->j;
    for (size_t i = 0; i < j->n_fields; i++) {
        const char *n = j->names[i];
        if (strncmp(n, "var.", 4) == 0 && strlen(n + 4) == name_len &&
            memcmp(n + 4, name, name_len) == 0) {
            *value_len = j->value_lens[i];
            return j->values[i];
        }
    }
    return NULL;
}

static int render_part(struct job *j, const struct cfg_template *tp, const char *src,
                       enum template_escape esc, const char *part, size_t max,
                       const char **out, struct job_error *err)
{
    struct hbuf b;
    hbuf_init(&b);
    struct var_ctx ctx = {j};
    struct template_error te;
    int rc = template_render(src, strlen(src), esc, lookup_var, &ctx, max, &b, &te);
    if (rc == 0) {
        char *s = arena_strndup(&j->arena, b.data ? b.data : "", b.len);
        hbuf_free(&b);
        if (!s) return -ENOMEM;
        *out = s;
        return 0;
    }
    hbuf_free(&b);
    char field[80];
    snprintf(field, sizeof field, "var.%s", te.name);
    switch (rc) {
    case -ENOENT:
        return fail(err, field, "template '%s' uses {{%s}} but the job has no var.%s", tp->name,
                    te.name, te.name);
    case -EILSEQ:
        return fail(err, field, "%s (used in the %s of template '%s')", te.why, part, tp->name);
    case -HERR_TOO_LONG:
        return fail(err, "template", "template '%s' renders to more than %zu bytes", tp->name,
                    max);
    case -HERR_MALFORMED: /* the loader checked the syntax: cannot happen */
        return fail(err, "template", "template '%s' is malformed", tp->name);
    default:
        return rc;
    }
}

static int render_template(struct job *j, const struct cfg_tenant *t, const struct known *k,
                           size_t max, struct job_error *err)
{
    const struct cfg_template *tp = config_template(t, k->v[JF_TEMPLATE]);
    if (!tp)
        return fail(err, "template", "tenant %s has no template '%.64s'", t->name,
                    k->v[JF_TEMPLATE]);
    for (size_t i = 0; i < j->n_fields; i++)
        if (strncmp(j->names[i], "var.", 4) == 0 && memchr(j->values[i], '\0', j->value_lens[i]))
            return fail(err, j->names[i], "contains NUL");
    j->kind = JOB_KIND_TEMPLATE;
    j->template_name = tp->name;
    int rc = render_part(j, tp, tp->subject, TEMPLATE_ESC_HEADER, "subject", max, &j->subject, err);
    if (rc == 0 && tp->text)
        rc = render_part(j, tp, tp->text, TEMPLATE_ESC_NONE, "text", max, &j->text, err);
    if (rc == 0 && tp->html)
        rc = render_part(j, tp, tp->html, TEMPLATE_ESC_HTML, "html", max, &j->html, err);
    return rc;
}

static int check_raw(struct job *j, const struct cfg_tenant *t, const struct known *k,
                     struct job_error *err)
{
    struct raw_info info;
    char why[160];
    if (raw_check(k->v[JF_RAW], k->len[JF_RAW], &info, why, sizeof why))
        return fail(err, "raw", "%s", why);
    char domain[256];
    if (raw_from_domain(&info, tenant_domain_cb, (void *)t, domain, sizeof domain, why,
                        sizeof why))
        return fail(err, "raw", "%s (tenant %s)", why, t->name);
    if (!(j->header_from_domain = arena_strndup(&j->arena, domain, strlen(domain))))
        return -ENOMEM;
    j->kind = JOB_KIND_RAW;
    j->raw = k->v[JF_RAW];
    j->raw_len = k->len[JF_RAW];
    return 0;
}

int job_parse(struct job *j, const char *stream_id, size_t n_fields, const char *const *names,
              const size_t *name_lens, const char *const *values, const size_t *value_lens,
              const struct config *cfg, struct job_error *err)
{
    struct job_error scratch;
    if (!err) err = &scratch;
    err->field[0] = '\0';
    err->reason[0] = '\0';
    job_recycle(j);

    size_t sid_len = stream_id ? strlen(stream_id) : 0;
    if (sid_len >= sizeof j->stream_id)
        fail(err, "", "stream id too long");
    else if (sid_len)
        memcpy(j->stream_id, stream_id, sid_len + 1);
    stream_id_ms(j);

    size_t max_field = cfg && cfg->engine.max_field_bytes ? cfg->engine.max_field_bytes
                                                          : JOB_DEFAULT_MAX_FIELD_BYTES;
    size_t max_total = cfg && cfg->engine.max_message_bytes ? cfg->engine.max_message_bytes
                                                            : JOB_DEFAULT_MAX_MESSAGE_BYTES;
    if (max_total < max_field) max_total = max_field;
    if (n_fields > JOB_MAX_FIELDS) {
        fail(err, "", "too many fields (%zu, limit %d)", n_fields, JOB_MAX_FIELDS);
        n_fields = 0;
    }
    int rc =
        copy_fields(j, n_fields, names, name_lens, values, value_lens, max_field, max_total, err);
    if (rc) return rc;
    struct known k;
    memset(&k, 0, sizeof k);
    index_fields(j, &k, err);
    set_identity(j, &k);
    /* An id too long to key the job's state by is refused, not quietly
     * replaced by the stream id: the platform would never find its note. */
    if (k.len[JF_ID] > SALVAGE_MAX)
        fail(err, "id", "too long (%zu bytes, at most %d); the note carries the entry id",
             k.len[JF_ID], SALVAGE_MAX);
    /* They name another job's id, so the same bound: a longer one would key
     * a state no job has (or a cut-short one, another job's). */
    if (k.len[JF_REPLACES] > SALVAGE_MAX)
        fail(err, "replaces", "too long (%zu bytes, at most %d, like an id)", k.len[JF_REPLACES],
             SALVAGE_MAX);
    if (k.len[JF_CANCEL] > SALVAGE_MAX)
        fail(err, "cancel", "too long (%zu bytes, at most %d, like an id)", k.len[JF_CANCEL],
             SALVAGE_MAX);

    for (enum jf f = 0; f < JF_COUNT; f++) {
        const char *why = field_defs[f].header && k.v[f] ? bad_header_byte(k.v[f], k.len[f]) : NULL;
        if (why) fail(err, field_defs[f].name, "%s", why);
    }
    if (err->reason[0]) return -HERR_MALFORMED;

    if (!k.v[JF_TENANT]) return fail(err, "tenant", "missing");
    if (!valid_tenant_name(k.v[JF_TENANT], k.len[JF_TENANT]))
        return fail(err, "tenant", "invalid tenant name (expected [A-Za-z0-9_.-]{1,64})");
    const struct cfg_tenant *t = find_tenant(cfg, k.v[JF_TENANT]);
    if (!t) return fail(err, "tenant", "unknown tenant '%s'", k.v[JF_TENANT]);

    bool cancel = k.v[JF_CANCEL] != NULL;
    if (k.v[JF_TO]) {
        if ((rc = wire_address(j, k.v[JF_TO], "to", &j->rcpt, &j->to_key, err))) return rc;
        j->to_domain = domain_of(j->rcpt);
        if (!cancel && (rc = check_typo(j, cfg, err))) return rc;
    } else if (!cancel) {
        return fail(err, "to", "missing");
    }
    if (!cancel && check_content(&k, err)) return -HERR_MALFORMED;
    if (check_priority(j, &k, err) || check_times(j, &k, err) || check_sender(j, t, &k, err))
        return -HERR_MALFORMED;
    if (k.v[JF_UNSUBSCRIBE] && check_unsubscribe(k.v[JF_UNSUBSCRIBE], k.len[JF_UNSUBSCRIBE], err))
        return -HERR_MALFORMED;

    j->subject = k.v[JF_SUBJECT];
    j->text = k.v[JF_TEXT];
    j->html = k.v[JF_HTML];
    if (!cancel && k.v[JF_TEMPLATE] && (rc = render_template(j, t, &k, max_total, err))) return rc;
    if (!cancel && k.v[JF_RAW] && (rc = check_raw(j, t, &k, err))) return rc;
    j->unsubscribe = k.v[JF_UNSUBSCRIBE];
    j->replaces = k.v[JF_REPLACES];
    j->cancel = k.v[JF_CANCEL];
    return 0;
}
