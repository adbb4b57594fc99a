/* A report that reached the listener (inbound.h): parse it, find its job,
 * note what it says. The job is found by the VERP token (the envelope
 * recipient first, then any token the report carries), verified with the
 * deployment's key, else by the original's Message-ID; its details come
 * from the index written when the message went (src/engine/verp.c). The
 * note and the suppression are one script call (inbound_script_note),
 * once per job and kind. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald/engine.h"
#include "herald/feedback.h"
#include "herald/keys.h"
#include "inbound/inb.h"

static const char *const outcome_names[INB_OUTCOME_COUNT] = {
    [INB_NOTED_BOUNCE] = "bounced",  [INB_NOTED_COMPLAINT] = "complained",
    [INB_ALREADY] = "already-noted", [INB_SOFT] = "soft",
    [INB_AUTOREPLY] = "autoreply",   [INB_UNMATCHED] = "unmatched",
    [INB_UNKNOWN] = "unknown",       [INB_FAILED] = "failed",
};

const char *inbound_outcome_name(enum inbound_outcome o)
{
    return (unsigned)o < INB_OUTCOME_COUNT ? outcome_names[o] : "?";
}

static const char *const feedback_names[FB_FEEDBACK_COUNT] = {
    [FB_FEEDBACK_NONE] = "abuse", /* no Feedback-Type: a complaint all the same */
    [FB_FEEDBACK_ABUSE] = "abuse", [FB_FEEDBACK_FRAUD] = "fraud",
    [FB_FEEDBACK_VIRUS] = "virus", [FB_FEEDBACK_OTHER] = "other",
    [FB_FEEDBACK_NOT_SPAM] = "not-spam", [FB_FEEDBACK_AUTH_FAILURE] = "auth-failure",
};

/* The job a verified token names. */
static bool token_ref(const struct inb_ctx *c, const char *tok, uint16_t today, uint64_t *ref)
{
    uint16_t max_days = (uint16_t)(c->index_ttl_ms / 86400000 + 1);
    return fb_verp_decode(&c->keys, tok, strlen(tok), today, max_days, ref, NULL, NULL) == 0;
}

static bool msgid_ref(struct inb_ctx *c, const char *mid, uint64_t *ref)
{
    if (!mid || !mid[0])
        return false;
    char key[KEYS_MAX];
    keys_verp_msgid(&c->K, mid, key, sizeof key);
    redisReply *r = redisCommand(c->rc, "GET %s", key);
    bool ok = r && r->type == REDIS_REPLY_STRING && r->len == 16;
    if (ok) {
        char *end;
        *ref = strtoull(r->str, &end, 16);
        ok = end == r->str + 16;
    }
    if (r)
        freeReplyObject(r);
    return ok;
}

/* The indexed details of the job: fields into job, false when unknown. */
static bool lookup(struct inb_ctx *c, uint64_t ref, struct inb_job *job)
{
    char key[KEYS_MAX];
    keys_verp(&c->K, ref, key, sizeof key);
    redisReply *r = redisCommand(c->rc, "HGETALL %s", key);
    if (!r) {
        job->redis_failed = true;
        return false;
    }
    memset(job, 0, sizeof *job);
    for (size_t i = 0; r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        const char *f = r->element[i]->str, *v = r->element[i + 1]->str;
        if (!f || !v)
            continue;
        char *dst = strcmp(f, "tenant") == 0       ? job->tenant
                    : strcmp(f, "id") == 0         ? job->id
                    : strcmp(f, "ref") == 0        ? job->ref
                    : strcmp(f, "to") == 0         ? job->to
                    : strcmp(f, "message_id") == 0 ? job->message_id
                    : strcmp(f, "attempt") == 0    ? job->attempt
                                                   : NULL;
        if (dst)
            snprintf(dst, INB_FIELD_MAX, "%s", v);
    }
    freeReplyObject(r);
    return job->tenant[0] && job->id[0];
}

/* The first hard failure of a DSN or text bounce. */
static const struct fb_rcpt *hard_failure(const struct fb_report *rep)
{
    for (size_t i = 0; i < rep->n_rcpts; i++)
        if (fb_is_hard(&rep->rcpts[i]))
            return &rep->rcpts[i];
    return NULL;
}

/* "550 5.1.1 ..." -> "550"; else the class of the enhanced status. */
static void reply_code(const struct fb_rcpt *r, char out[4])
{
    const char *d = r->diagnostic;
    if (d[0] >= '2' && d[0] <= '5' && d[1] >= '0' && d[1] <= '9' && d[2] >= '0' && d[2] <= '9' &&
        (d[3] == ' ' || d[3] == '-' || d[3] == '\0')) {
        memcpy(out, d, 3);
        out[3] = '\0';
        return;
    }
    snprintf(out, 4, "%c50", r->status[0] ? r->status[0] : '5');
}

struct note_args {
    const char *argv[48];
    size_t n;
};

static void add(struct note_args *a, const char *k, const char *v)
{
    if (v && v[0] && a->n + 2 <= HERALD_ARRAY_LEN(a->argv)) {
        a->argv[a->n++] = k;
        a->argv[a->n++] = v;
    }
}

/* What every note after the 250 says of its job. */
static void job_fields(struct note_args *f, const char *event, const struct inb_job *job,
                       const char *at)
{
    add(f, "event", event);
    add(f, "job", job->id);
    add(f, "tenant", job->tenant);
    add(f, "ref", job->ref);
    add(f, "to", job->to);
    add(f, "attempt", job->attempt);
    add(f, "at", at);
    add(f, "after_delivery", "true");
}

/* The note and the suppression in one step; INB_ALREADY when the job's
 * report of this kind was noted before. */
static enum inbound_outcome note(struct inb_ctx *c, const struct inb_job *job, uint64_t ref,
                                 const char *kind, const char *why, struct note_args *fields,
                                 enum inbound_outcome done)
{
    char events[KEYS_MAX], once[KEYS_MAX], sset[KEYS_MAX], sinfo[KEYS_MAX], ttl[24];
    char susp[KEYS_MAX], share[32], mind[24], until[24];
    snprintf(events, sizeof events, "%s", c->events);
    keys_verp_once(&c->K, ref, kind, once, sizeof once);
    keys_suppress(&c->K, job->tenant, sset, sizeof sset);
    keys_suppress_info(&c->K, job->tenant, sinfo, sizeof sinfo);
    snprintf(ttl, sizeof ttl, "%" PRId64, c->index_ttl_ms);
    keys_suspend(&c->K, susp, sizeof susp);
    snprintf(share, sizeof share, "%.6f", c->complaint_rate);
    snprintf(mind, sizeof mind, "%u", c->complaint_min_delivered);
    snprintf(until, sizeof until, "%" PRId64, c->now_ms + c->complaint_suspend_ms);
    const char *argv[64];
    size_t n = 0;
    argv[n++] = "EVAL";
    argv[n++] = inbound_script_note;
    argv[n++] = "6";
    argv[n++] = events;
    argv[n++] = once;
    argv[n++] = sset;
    argv[n++] = sinfo;
    argv[n++] = c->K.stats;
    argv[n++] = susp;
    argv[n++] = ttl;
    argv[n++] = job->to;
    argv[n++] = why;
    argv[n++] = kind;
    argv[n++] = share;
    argv[n++] = mind;
    argv[n++] = until;
    for (size_t i = 0; i < fields->n && n < HERALD_ARRAY_LEN(argv); i++)
        argv[n++] = fields->argv[i];
    redisReply *r = redisCommandArgv(c->rc, (int)n, argv, NULL);
    enum inbound_outcome o = !r || r->type != REDIS_REPLY_INTEGER ? INB_FAILED
                             : r->integer >= 1                    ? done
                                                                  : INB_ALREADY;
    if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 2)
        log_event(LOG_WARN,
                  "event=tenant_suspended tenant=%s reason=\"complaint rate over %.2f%% today\" "
                  "until=%s",
                  LOG_VALUE(job->tenant), 100 * c->complaint_rate, until);
    if (r)
        freeReplyObject(r);
    return o;
}

enum inbound_outcome inb_handle(struct inb_ctx *c, const char *mail_from, const char *rcpt,
                                const char *msg, size_t len, int64_t now_ms, char *detail,
                                size_t detail_cap)
{
    static __thread struct fb_report rep; /* large: kept off the listener's stack */
    struct fb_envelope env = {mail_from, rcpt};
    detail[0] = '\0';
    if (fb_parse(msg, len, &env, &rep) < 0 || rep.kind == FB_UNKNOWN)
        return INB_UNKNOWN;
    if (rep.kind == FB_AUTOREPLY) {
        snprintf(detail, detail_cap, "mark=%s", rep.autoreply_mark);
        return INB_AUTOREPLY;
    }
    uint16_t today = fb_day_of_ms(now_ms);
    uint64_t ref = 0;
    bool found = false;
    for (size_t i = 0; i < rep.n_verp && !found; i++)
        found = token_ref(c, rep.verp[i], today, &ref);
    if (!found)
        found = msgid_ref(c, rep.orig_message_id, &ref) || msgid_ref(c, rep.in_reply_to, &ref);
    c->now_ms = now_ms;
    struct inb_job job;
    memset(&job, 0, sizeof job);
    if (!found || !lookup(c, ref, &job))
        return job.redis_failed ? INB_FAILED : INB_UNMATCHED;
    snprintf(detail, detail_cap, "job=%s tenant=%s", job.id, job.tenant);
    snprintf(c->last_tenant, sizeof c->last_tenant, "%s", job.tenant);
    char at[24];
    snprintf(at, sizeof at, "%" PRId64, now_ms);
    struct note_args f = {.n = 0};
    if (rep.kind == FB_ARF) {
        const char *type = feedback_names[rep.arf.feedback_type < FB_FEEDBACK_COUNT
                                              ? rep.arf.feedback_type
                                              : FB_FEEDBACK_OTHER];
        if (rep.arf.feedback_type == FB_FEEDBACK_NOT_SPAM)
            return INB_SOFT; /* the recipient took it back: nothing to hold against them */
        char why[160];
        snprintf(why, sizeof why, "complaint %s", type);
        job_fields(&f, "complained", &job, at);
        add(&f, "feedback_type", type);
        add(&f, "user_agent", rep.arf.user_agent);
        add(&f, "reported_by", rep.arf.reported_domain);
        add(&f, "message_id", job.message_id);
        add(&f, "reason", "the recipient reported the message (feedback loop)");
        return note(c, &job, ref, "complained", why, &f, INB_NOTED_COMPLAINT);
    }
    const struct fb_rcpt *hard = hard_failure(&rep);
    if (!hard)
        return INB_SOFT;
    char code[4], why[FB_DIAG_MAX + 32];
    reply_code(hard, code);
    snprintf(why, sizeof why, "bounce %s", hard->diagnostic[0] ? hard->diagnostic : hard->status);
    job_fields(&f, "bounced", &job, at);
    add(&f, "code", code);
    add(&f, "enhanced", hard->status);
    add(&f, "reply", hard->diagnostic);
    add(&f, "category", "bounce");
    add(&f, "mx", hard->remote_mta[0] ? hard->remote_mta : rep.reporting_mta);
    add(&f, "message_id", job.message_id);
    add(&f, "reason", "the receiving system returned the message after accepting it");
    return note(c, &job, ref, "late_bounced", why, &f, INB_NOTED_BOUNCE);
}
