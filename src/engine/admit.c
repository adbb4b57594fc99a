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

static void on_admitted(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct delivery *d = arg;
    struct worker *w = d->w;
    bool text = reply && (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS);
    struct admit_verdict v;
    int rc = text ? admit_parse(reply->str, &v) : -HERR_MALFORMED;
    lease_settle(d, rc == 0 && v.kind == ADMIT_OK);
    if (!reply || notes_scripts_missing(reply)) {
        /* Redis went away: the entry stays pending and is taken up again. */
        delivery_exit(d, DX_LEFT);
        if (reply)
            notes_reload(w, reply->str);
        return;
    }
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
    const char *argv[] = {"EVALSHA", w->sh->sha_admit, "10", idem, skey, gkey, stkey, tkey,
                          K->retry, w->cfg->redis.events, K->rcap, tkeyr, K->stats,
                          admitted ? admitted : j->stream_id, window, addr,
                          first || (j->attempt <= 1 && admitted) ? "1" : "0",
                          first && j->replaces ? j->replaces : "", now, caps, trate,
                          d->schedule_only ? "scheduling" : ""};
    delivery_set_state(d, DS_ADMITTING);
    if (redis_client_command_argv(&w->notes, on_admitted, d, (int)HERALD_ARRAY_LEN(argv), argv,
                                  NULL) < 0) {
        lease_settle(d, false);
        delivery_exit(d, DX_LEFT);
    }
}
