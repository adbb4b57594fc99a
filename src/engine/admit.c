/* Admission (admit.h): the script call that decides, before any
 * connection, whether a job may go now. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald/keys.h"
#include "herald/shape.h"
#include "admit.h"
#include "delivery.h"
#include "notes.h"
#include "route.h"
#include "worker.h"

/* Per job: KEYS and KEYS + ARGV in the admission script's call. */
#define ADMIT_KEYS 10
#define ADMIT_ARGS 19
/* Jobs per script call: a read batch (engine.batch, 256 by default) in one
 * call, bounded so that one call stays a few milliseconds of Redis time. */
#define ADMIT_BATCH_MAX 256
/* The batch call's buffer is kept for the next batch up to this size. */
#define ADMIT_CMD_KEEP (1024 * 1024)

/* Copy s, non-empty, into out when it fits: an entry id cut short would
 * name another entry. */
static bool copy_rest(char *out, size_t cap, const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n >= cap)
        return false;
    memcpy(out, s, n + 1);
    return true;
}

/* Wait times are plain decimal milliseconds from the script. At most 15
 * digits (about 31,000 years) so that now + wait cannot overflow. */
#define WAIT_MAX_DIGITS 15

static int parse(const char *r, struct admit_verdict *v)
{
    if (!r)
        return -HERR_MALFORMED;
    if (strcmp(r, "ok") == 0) {
        v->kind = ADMIT_OK;
    } else if (strncmp(r, "ok;replaced=", 12) == 0) {
        if (!copy_rest(v->replaced, sizeof v->replaced, r + 12))
            return -HERR_MALFORMED;
        v->kind = ADMIT_OK;
    } else if (strncmp(r, "wait:", 5) == 0) {
        const char *p = r + 5;
        int64_t ms = 0;
        size_t digits = 0;
        for (; *p >= '0' && *p <= '9'; p++, digits++)
            if (digits < WAIT_MAX_DIGITS)
                ms = ms * 10 + (*p - '0');
        if (digits == 0 || digits > WAIT_MAX_DIGITS || *p != ':')
            return -HERR_MALFORMED;
        if (strcmp(p + 1, "recipient-cap") == 0)
            v->limit = ADMIT_LIMIT_RECIPIENT_CAP;
        else if (strcmp(p + 1, "tenant-rate") == 0)
            v->limit = ADMIT_LIMIT_TENANT_RATE;
        else
            return -HERR_MALFORMED;
        v->kind = ADMIT_WAIT;
        v->wait_ms = ms;
    } else if (strncmp(r, "cancelled:", 10) == 0) {
        if (!copy_rest(v->by, sizeof v->by, r + 10))
            return -HERR_MALFORMED;
        v->kind = ADMIT_CANCELLED;
    } else if (strncmp(r, "duplicate:", 10) == 0) {
        if (!copy_rest(v->by, sizeof v->by, r + 10))
            return -HERR_MALFORMED;
        v->kind = ADMIT_DUPLICATE;
    } else if (strcmp(r, "suppressed:tenant") == 0 || strcmp(r, "suppressed:global") == 0) {
        v->kind = ADMIT_SUPPRESSED;
        v->global = r[11] == 'g';
    } else {
        return -HERR_MALFORMED;
    }
    return 0;
}

int admit_parse(const char *r, struct admit_verdict *v)
{
    memset(v, 0, sizeof *v);
    int rc = parse(r, v);
    if (rc < 0)
        memset(v, 0, sizeof *v); /* nothing half-filled from a refused reply */
    return rc;
}

/* ---------- tenant-rate leases ---------- */

static struct tenant_lease *lease_of(struct worker *w, const char *tenant)
{
    for (unsigned i = 0; i < w->n_leases; i++)
        if (strcmp(w->leases[i].tenant, tenant) == 0)
            return &w->leases[i];
    if (w->n_leases >= HERALD_ARRAY_LEN(w->leases) || strlen(tenant) >= sizeof w->leases[0].tenant)
        return NULL; /* many tenants with rates: they pay per message */
    struct tenant_lease *l = &w->leases[w->n_leases++];
    memset(l, 0, sizeof *l);
    snprintf(l->tenant, sizeof l->tenant, "%s", tenant);
    return l;
}

/* About 100 ms of the tenant's rate, spread over the workers. */
static uint32_t lease_size(const struct worker *w, const struct cfg_rate *r)
{
    double per_s = r->window_s ? (double)r->count / (double)r->window_s : 0;
    double k = per_s / 10.0 / (double)(w->sh->n_workers ? w->sh->n_workers : 1);
    if (k > 1000)
        k = 1000;
    return k < 1 ? 1 : (uint32_t)k;
}

/* The admission asked for a block of slots: keep what was granted. */
static void lease_settle(struct delivery *d, bool granted)
{
    if (d->lease_req <= 1)
        return;
    struct tenant_lease *l = lease_of(d->w, d->job.tenant);
    if (l) {
        l->pending = false;
        if (granted) {
            l->left = d->lease_req - 1; /* one paid for this job */
            l->until_ms = d->w->ring.now_ms + 1000;
        }
    }
    d->lease_req = 0;
}

/* ---------- acting on the verdict ---------- */

static void on_wait(struct delivery *d)
{
    const struct admit_verdict *v = &d->verdict;
    bool cap = v->limit == ADMIT_LIMIT_RECIPIENT_CAP;
    struct note n;
    int64_t now = clock_wall_ms();
    if (cap && d->w->cfg->recipients.over_limit == CFG_RCPT_DROP) {
        note_begin(&n, d, EV_SUPPRESSED, now);
        note_add(&n, "reason", "recipient-cap");
        notes_terminal(d, &n, false);
        return;
    }
    /* Back to the retry set until the window allows it (not an attempt). */
    note_begin(&n, d, EV_DEFERRED, now);
    note_add(&n, "reason", cap ? "recipient cap reached: held until the limit allows it"
                               : "tenant rate: held until the limit allows it");
    note_add(&n, "category", cap ? "recipient-cap" : "rate-limit");
    struct shape_verdict sv;
    shape_from_admission(cap, v->wait_ms, now, &sv);
    int64_t due = sv.until_ms;
    if (d->job.expires_at_ms > 0 && due > d->job.expires_at_ms)
        due = d->job.expires_at_ms;
    note_add_int(&n, "next_attempt_at", due);
    notes_park(d, sv.until_ms, PARK_WAIT, &n);
}

static void on_verdict(struct delivery *d)
{
    const struct admit_verdict *v = &d->verdict;
    struct note n;
    char reason[160];
    int64_t now = clock_wall_ms();
    if (d->schedule_only && (v->kind == ADMIT_OK || v->kind == ADMIT_WAIT)) {
        /* The id is this job's now: park it until its send_at. */
        notes_defer(d, d->job.send_at_ms, d->job.attempt > 0 ? d->job.attempt - 1 : 0,
                    PARK_SCHEDULED, NULL);
        return;
    }
    switch (v->kind) {
    case ADMIT_OK:
        route_dispatch(d);
        return;
    case ADMIT_WAIT:
        on_wait(d);
        return;
    case ADMIT_CANCELLED:
        note_begin(&n, d, EV_CANCELLED, now);
        snprintf(reason, sizeof reason, "cancelled by entry %s", v->by);
        note_add(&n, "reason", reason);
        note_add(&n, "cancelled_by", v->by);
        break;
    case ADMIT_DUPLICATE:
        note_begin(&n, d, EV_DUPLICATE, now);
        snprintf(reason, sizeof reason, "tenant %s already has job id %s (entry %s)",
                 d->job.tenant, d->job.id, v->by);
        note_add(&n, "reason", reason);
        note_add(&n, "first_entry", v->by);
        break;
    case ADMIT_SUPPRESSED:
        note_begin(&n, d, EV_SUPPRESSED, now);
        note_add(&n, "reason", v->global ? "recipient is on the global suppression list"
                                         : "recipient is on the tenant's suppression list");
        note_add(&n, "list", v->global ? "global" : "tenant");
        break;
    case ADMIT_NONE:
        return;
    }
    notes_terminal(d, &n, false);
}

/* One job's part of the batch reply: its verdict text, or an error reply
 * for it alone (the script caught an error in this job's admission). */
static void admitted_one(struct delivery *d, const redisReply *reply)
{
    bool text = reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS;
    struct admit_verdict v;
    int rc = text ? admit_parse(reply->str, &v) : -HERR_MALFORMED;
    lease_settle(d, rc == 0 && v.kind == ADMIT_OK);
    if (rc < 0) {
        log_event(LOG_ERROR, "event=admit_failed job=%s entry=%s reason=%s",
                  LOG_VALUE(delivery_job_id(d)), d->job.stream_id,
                  LOG_VALUE(reply->type == REDIS_REPLY_ERROR ? reply->str
                            : text                           ? "unknown admission reply"
                                                             : "unexpected reply"));
        delivery_exit(d, DX_LEFT);
        return;
    }
    d->verdict = v;
    on_verdict(d);
}

/* The batch call's reply: an array of one verdict per job, in the order
 * they were sent. Anything else (Redis gone, NOSCRIPT, BUSY, an error for
 * the whole call, an array of the wrong size) decided nothing for any of
 * them: every job leaves pending, as a failed single call left its one. */
static void on_admitted(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct delivery *d = arg;
    struct worker *w = d->w;
    size_t n = 0;
    for (const struct delivery *e = d; e; e = e->admit_next)
        n++;
    bool whole = reply && reply->type == REDIS_REPLY_ARRAY && reply->elements == n;
    bool missing = reply && notes_scripts_missing(reply);
    const char *why = !reply || whole || missing ? NULL
                      : reply->type == REDIS_REPLY_ERROR ? reply->str
                                                         : "unexpected admission reply";
    for (size_t i = 0; d; i++) {
        struct delivery *next = d->admit_next;
        d->admit_next = NULL;
        if (whole) {
            admitted_one(d, reply->element[i]);
        } else {
            lease_settle(d, false);
            if (why)
                log_event(LOG_ERROR, "event=admit_failed job=%s entry=%s reason=%s",
                          LOG_VALUE(delivery_job_id(d)), d->job.stream_id, LOG_VALUE(why));
            delivery_exit(d, DX_LEFT);
        }
        d = next;
    }
    if (missing)
        notes_reload(w, reply->str);
}

/* Recipient caps (across tenants: they protect the person) as
 * "count window_s" pairs, all checked against the recipient's one log of
 * counted sends. A job whose priority recipients.exempt lists gets none:
 * it is neither held nor counted. */
static void caps_arg(const struct config *cfg, const struct job *j, char *caps, size_t cap)
{
    const struct cfg_recipients *rc = &cfg->recipients;
    size_t used = 0;
    caps[0] = '\0';
    if (rc->exempt_mask & (1u << j->priority))
        return;
    for (size_t i = 0; i < rc->n_limits; i++) {
        int k = snprintf(caps + used, cap - used, "%s%u %u", used ? " " : "",
                         rc->limits[i].count, rc->limits[i].window_s);
        if (k < 0 || (size_t)k >= cap - used)
            break;
        used += (size_t)k;
    }
}

/* The tenant's rate, "count window_s k" taking k slots at once: a block
 * when this worker starts a lease, "" when paid from the lease it holds. */
static void rate_arg(struct delivery *d, char *trate, size_t cap)
{
    struct worker *w = d->w;
    const struct cfg_tenant *tn = config_tenant(w->cfg, d->job.tenant);
    trate[0] = '\0';
    d->lease_req = 0;
    if (!tn || !tn->rate.count)
        return;
    struct tenant_lease *l = lease_of(w, d->job.tenant);
    if (l && l->left > 0 && l->until_ms > w->ring.now_ms) {
        l->left--;
        return;
    }
    uint32_t k = 1;
    if (l && !l->pending) {
        k = lease_size(w, &tn->rate);
        l->pending = k > 1;
    }
    d->lease_req = k;
    snprintf(trate, cap, "%u %u %u", tn->rate.count, tn->rate.window_s, k);
}

/* The RESP header of the batch call: EVALSHA, the script, numkeys. */
static int batch_head(struct hbuf *out, const char *sha, unsigned n)
{
    char argc[16], nkeys[16];
    int a = snprintf(argc, sizeof argc, "*%u\r\n", 3 + n * ADMIT_ARGS);
    int k = snprintf(nkeys, sizeof nkeys, "%u", n * ADMIT_KEYS);
    if (hbuf_append(out, argc, (size_t)a) < 0 || redis_format_bulk(out, "EVALSHA", 7) < 0 ||
        redis_format_bulk(out, sha, strlen(sha)) < 0 ||
        redis_format_bulk(out, nkeys, (size_t)k) < 0)
        return -ENOMEM;
    return 0;
}

void admit_flush(struct worker *w)
{
    struct delivery *head = w->admit_head;
    unsigned n = w->n_admit;
    w->admit_head = w->admit_tail = NULL;
    w->n_admit = 0;
    if (!head)
        return;
    /* KEYS of every job, then ARGV of every job, each in the batch's order:
     * the script walks them ADMIT_KEYS and ADMIT_ARGS at a time. */
    struct hbuf *cmd = &w->admit_cmd;
    hbuf_reset(cmd);
    int rc = batch_head(cmd, w->sh->sha_admit, n);
    for (const struct delivery *d = head; rc == 0 && d; d = d->admit_next)
        rc = hbuf_append(cmd, d->admit_req.data, d->admit_keys_len);
    for (const struct delivery *d = head; rc == 0 && d; d = d->admit_next)
        rc = hbuf_append(cmd, d->admit_req.data + d->admit_keys_len,
                         d->admit_req.len - d->admit_keys_len);
    if (rc == 0)
        rc = redis_client_command_raw(&w->notes, on_admitted, head, cmd->data, cmd->len);
    if (cmd->cap > ADMIT_CMD_KEEP)
        hbuf_free(cmd);
    if (rc == 0)
        return;
    if (rc == -ENOMEM)
        log_event(LOG_ERROR, "event=admit_failed jobs=%u reason=\"out of memory\"", n);
    while (head) {
        struct delivery *next = head->admit_next;
        head->admit_next = NULL;
        lease_settle(head, false);
        delivery_exit(head, DX_LEFT);
        head = next;
    }
}

void admit_free(struct worker *w)
{
    w->admit_head = w->admit_tail = NULL;
    w->n_admit = 0;
    hbuf_free(&w->admit_cmd);
}

/* Retries (attempt > 1) skip the idempotency check and `replaces`: their
 * first attempt did both; a copy already counted is not counted again. */
void admit_send(struct delivery *d)
{
    struct worker *w = d->w;
    const struct keys *K = &w->sh->keys;
    struct job *j = &d->job;
    char idem[KEYS_MAX], skey[KEYS_MAX], gkey[KEYS_MAX], window[24];
    char stkey[KEYS_MAX], tkey[KEYS_MAX], now[24], tkeyr[KEYS_MAX];
    char caps[256] = "", trate[48] = "";
    keys_idem(K, j->tenant, j->id, idem, sizeof idem);
    keys_suppress(K, j->tenant, skey, sizeof skey);
    keys_suppress(K, NULL, gkey, sizeof gkey);
    /* Suppression and recipient caps know the person by one normalised
     * key (job_parse), whatever spelling the platform used. */
    const char *addr = j->to_key ? j->to_key : "";
    keys_state(K, j->tenant, j->id, stkey, sizeof stkey);
    keys_state(K, j->tenant, j->replaces ? j->replaces : j->id, tkey, sizeof tkey);
    keys_tenant_rate(K, j->tenant, tkeyr, sizeof tkeyr);
    snprintf(window, sizeof window, "%" PRId64, w->cfg->engine.idempotency_window_ms);
    int64_t now_ms = clock_wall_ms();
    snprintf(now, sizeof now, "%" PRId64, now_ms);
    const char *admitted = delivery_job_field(j, "admitted");
    bool first = j->attempt <= 1 && !admitted;
    if (!delivery_job_field(j, "counted") && !d->schedule_only) {
        caps_arg(w->cfg, j, caps, sizeof caps);
        rate_arg(d, trate, sizeof trate);
    }
    const char *keys[ADMIT_KEYS] = {idem, skey, gkey, stkey, tkey, K->retry,
                                    w->cfg->redis.events, K->rcap, tkeyr, K->stats};
    const char *args[ADMIT_ARGS - ADMIT_KEYS] = {
        admitted ? admitted : j->stream_id, window, addr,
        first || (j->attempt <= 1 && admitted) ? "1" : "0",
        first && j->replaces ? j->replaces : "", now, caps, trate,
        d->schedule_only ? "scheduling" : ""};
    delivery_set_state(d, DS_ADMITTING);
    struct hbuf *req = &d->admit_req;
    hbuf_reset(req);
    int rc = 0;
    for (size_t i = 0; rc == 0 && i < ADMIT_KEYS; i++)
        rc = redis_format_bulk(req, keys[i], strlen(keys[i]));
    d->admit_keys_len = req->len;
    for (size_t i = 0; rc == 0 && i < HERALD_ARRAY_LEN(args); i++)
        rc = redis_format_bulk(req, args[i], strlen(args[i]));
    if (rc < 0) {
        log_event(LOG_ERROR, "event=admit_failed job=%s entry=%s reason=\"out of memory\"",
                  LOG_VALUE(delivery_job_id(d)), j->stream_id);
        lease_settle(d, false);
        delivery_exit(d, DX_LEFT);
        return;
    }
    d->admit_next = NULL;
    if (w->admit_tail)
        w->admit_tail->admit_next = d;
    else
        w->admit_head = d;
    w->admit_tail = d;
    if (++w->n_admit >= ADMIT_BATCH_MAX)
        admit_flush(w);
}
