/* Case notes (notes.h): every note a job gets is built here and written by
 * one of the scripts in scripts.c, in the same step as the job's
 * acknowledgement, so a job is never acked without its note nor noted
 * twice (XACK's return is the guard). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald/engine.h"
#include "herald/keys.h"
#include "notes.h"
#include "stats.h"
#include "worker.h"

static const char *const event_names[EV_COUNT] = {
    [EV_DELIVERED] = "delivered",   [EV_DEFERRED] = "deferred",     [EV_BOUNCED] = "bounced",
    [EV_EXPIRED] = "expired",       [EV_SUPPRESSED] = "suppressed", [EV_REJECTED] = "rejected",
    [EV_DUPLICATE] = "duplicate",   [EV_CANCELLED] = "cancelled",
};

const char *note_event_name(enum note_event ev)
{
    return (unsigned)ev < EV_COUNT ? event_names[ev] : "?";
}

static void note_add_len(struct note *n, const char *name, const char *value, size_t len)
{
    if (!value || n->argc + 2 > NOTE_MAX_ITEMS)
        return;
    n->argv[n->argc] = name;
    n->lens[n->argc++] = strlen(name);
    n->argv[n->argc] = value;
    n->lens[n->argc++] = len;
}

void note_add(struct note *n, const char *name, const char *value)
{
    if (value)
        note_add_len(n, name, value, strlen(value));
}

void note_add_int(struct note *n, const char *name, int64_t v)
{
    if (n->n_nums >= (int)HERALD_ARRAY_LEN(n->nums))
        return;
    char *buf = n->nums[n->n_nums++];
    snprintf(buf, sizeof n->nums[0], "%" PRId64, v);
    note_add(n, name, buf);
}

void note_begin(struct note *n, const struct delivery *d, enum note_event ev, int64_t now)
{
    const struct job *j = &d->job;
    memset(n, 0, sizeof *n);
    n->ev = ev;
    note_add(n, "event", note_event_name(ev));
    note_add(n, "job", delivery_job_id(d));
    note_add(n, "tenant", j->tenant);
    note_add(n, "ref", j->ref);
    note_add(n, "to", j->to);
    if (j->cancel) {
        /* A control entry is not a delivery: no attempt, no latency. */
        note_add(n, "cancel", j->cancel);
        note_add_int(n, "at", now);
        note_add(n, "entry", j->stream_id);
        return;
    }
    note_add_int(n, "attempt", j->attempt ? j->attempt : 1);
    note_add_int(n, "at", now);
    if (j->enqueued_ms > 0)
        note_add_int(n, "latency_ms", now - j->enqueued_ms);
    note_add(n, "entry", j->stream_id);
    note_add(n, "alignment", d->alignment);
    if (j->suggestion)
        note_add(n, "suggestion", j->suggestion);
    if (j->replaces && d->verdict.replaced[0]) {
        note_add(n, "replaces", j->replaces);
        note_add(n, "replaced", d->verdict.replaced);
    }
}

void note_smtp(struct note *n, const struct config *cfg, const struct smtp_result *res,
               const struct pool_conn_info *info, const char *message_id)
{
    if (res) {
        if (res->code)
            note_add_int(n, "code", res->code);
        if (res->enhanced[0])
            note_add(n, "enhanced", res->enhanced);
        if (res->reply[0])
            note_add(n, "reply", res->reply);
        const char *cat = classify_reply(cfg, res);
        if (cat[0])
            note_add(n, "category", cat);
        if (res->outcome != SMTP_OUT_OK)
            note_add(n, "stage", smtp_stage_name(res->stage));
    }
    if (info) {
        if (info->mx && info->mx[0])
            note_add(n, "mx", info->mx);
        if (info->remote_ip && info->remote_ip[0])
            note_add(n, "remote_ip", info->remote_ip);
        if (info->local_ip && info->local_ip[0])
            note_add(n, "local_ip", info->local_ip);
        if (info->tls)
            note_add(n, "tls", info->tls);
        if (info->tls_note)
            note_add(n, "tls_note", info->tls_note);
    }
    if (message_id && message_id[0])
        note_add(n, "message_id", message_id);
}

static const char *note_get(const struct note *n, const char *name)
{
    for (int i = 0; i + 1 < n->argc; i += 2)
        if (strcmp(n->argv[i], name) == 0)
            return n->argv[i + 1];
    return NULL;
}

/* Process-wide counters behind `herald status` and the metrics endpoint,
 * and this worker's own for its exit line. */
static void count_note(struct delivery *d, const struct note *n)
{
    struct worker *w = d->w;
    w->n_events[n->ev]++;
    struct engine_stats *st = &w->sh->stats;
    int ev = stats_event_of(note_event_name(n->ev));
    if (ev < 0)
        return;
    struct stats_row *t = stats_tenant_row(&st->tenants, w->cfg, d->job.tenant);
    atomic_fetch_add(&t->events[ev], 1);
    struct stats_row *p = stats_row(&st->providers, d->pair ? d->pair->provider : "-");
    atomic_fetch_add(&p->events[ev], 1);
    if (n->ev == EV_DELIVERED) {
        const char *tls = note_get(n, "tls");
        atomic_fetch_add(tls && strcmp(tls, "none") != 0 ? &p->tls : &p->plain, 1);
        const char *lat = note_get(n, "latency_ms");
        if (lat)
            stats_latency(st, strtoll(lat, NULL, 10));
    }
}

/* ---------- sending, parking and re-sending script calls ---------- */

bool notes_scripts_missing(const redisReply *reply)
{
    /* "This Redis has not got our scripts (yet)", not "this job is bad":
     * restarted (empty script cache, or still loading its AOF), failed
     * over, or SCRIPT FLUSHed. */
    return reply && reply->type == REDIS_REPLY_ERROR &&
           (strncmp(reply->str, "NOSCRIPT", 8) == 0 || strncmp(reply->str, "LOADING", 7) == 0);
}

bool notes_transient_error(const redisReply *reply)
{
    /* Redis refused the call for now, not the job: out of memory under
     * noeviction, a replica after a failover, a script running too long,
     * persistence failing, a cluster in transition. Releasing the job on
     * these would have it reclaimed and delivered again. */
    static const char *const prefixes[] = {"OOM",         "READONLY", "BUSY",
                                           "MASTERDOWN",  "TRYAGAIN", "CLUSTERDOWN",
                                           "MISCONF",     "NOREPLICAS",
                                           "UNBLOCKED"}; /* a blocked read when the primary
                                                          * became a replica */
    if (!reply || reply->type != REDIS_REPLY_ERROR)
        return false;
    for (size_t i = 0; i < HERALD_ARRAY_LEN(prefixes); i++)
        if (strncmp(reply->str, prefixes[i], strlen(prefixes[i])) == 0)
            return true;
    return false;
}

void notes_resend_due(struct worker *w, int64_t now)
{
    if (w->unwritten && w->notes_resend_ms && now >= w->notes_resend_ms &&
        redis_client_up(&w->notes)) {
        w->notes_resend_ms = 0;
        notes_resend_parked(w);
    }
}

void notes_reload(struct worker *w, const char *why)
{
    log_event(LOG_WARN, "event=notes_reconnect worker=%u reason=%s", w->idx, LOG_VALUE(why));
    redis_client_close(&w->notes, -HERR_REDIS);
}

/* Park a note Redis did not answer: it is sent again as soon as the notes
 * connection is back. The scripts are idempotent (XACK guards them), so a
 * note whose first call did run is not written twice, and the job is not
 * delivered again the way a reclaimed entry would be. */
static void park_note(struct delivery *d)
{
    struct worker *w = d->w;
    delivery_set_state(d, DS_NOTE_PARKED);
    d->parked_next = w->unwritten;
    w->unwritten = d;
}

static void on_note_written(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct delivery *d = arg;
    if (notes_scripts_missing(reply)) {
        park_note(d);
        notes_reload(d->w, reply->str);
        return;
    }
    if (!reply) {
        log_event(LOG_WARN,
                  "event=note_parked job=%s entry=%s reason=\"redis connection lost; "
                  "the note is sent again on reconnect\"",
                  LOG_VALUE(delivery_job_id(d)), d->job.stream_id);
        park_note(d);
        return;
    }
    if (notes_transient_error(reply)) {
        /* Parked and sent again in a second, with the claim still
         * refreshed, so no other consumer takes the job meanwhile. */
        struct worker *w = d->w;
        log_event(LOG_WARN, "event=note_parked job=%s entry=%s reason=%s retry_ms=%d",
                  LOG_VALUE(delivery_job_id(d)), d->job.stream_id, LOG_VALUE(reply->str),
                  NOTES_RESEND_MS);
        park_note(d);
        if (!w->notes_resend_ms)
            w->notes_resend_ms = w->ring.now_ms + NOTES_RESEND_MS;
        worker_hold_claims(w, WORKER_CLAIM_HOLD_MS(w->cfg));
        return;
    }
    if (reply->type == REDIS_REPLY_ERROR)
        log_event(LOG_ERROR, "event=note_failed job=%s entry=%s reason=%s",
                  LOG_VALUE(delivery_job_id(d)), d->job.stream_id, LOG_VALUE(reply->str));
    else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0)
        log_event(LOG_INFO,
                  "event=note_skipped job=%s entry=%s reason=\"already acknowledged by "
                  "another consumer\"",
                  LOG_VALUE(delivery_job_id(d)), d->job.stream_id);
    delivery_exit(d, DX_NOTED);
}

static void note_send(struct delivery *d)
{
    delivery_set_state(d, DS_NOTING);
    if (redis_client_command_raw(&d->w->notes, on_note_written, d, d->note_cmd.data,
                                 d->note_cmd.len) < 0)
        park_note(d);
}

/* Format the script call once, keep it with the job, and send it (or park
 * it until the notes connection is back). */
static void note_call(struct delivery *d, int argc, const char **argv, const size_t *lens)
{
    hbuf_reset(&d->note_cmd);
    if (redis_format_append(&d->note_cmd, argc, argv, lens) < 0) {
        log_event(LOG_ERROR, "event=note_unwritten job=%s entry=%s reason=\"out of memory\"",
                  LOG_VALUE(delivery_job_id(d)), d->job.stream_id);
        delivery_exit(d, DX_UNWRITTEN);
        return;
    }
    note_send(d);
}

void notes_resend_parked(struct worker *w)
{
    struct delivery *list = w->unwritten;
    w->unwritten = NULL;
    size_t n = 0;
    while (list) {
        struct delivery *d = list;
        list = d->parked_next;
        d->parked_next = NULL;
        note_send(d);
        n++;
    }
    if (n)
        log_event(LOG_INFO, "event=notes_resent worker=%u count=%zu", w->idx, n);
}

/* ---------- the script calls ---------- */

/* An argv under construction: the script's head, then items. */
struct call {
    const char **argv;
    size_t *lens;
    int argc, max;
};

static void call_push(struct call *c, const char *s)
{
    if (c->argc < c->max) {
        c->argv[c->argc] = s;
        c->lens[c->argc++] = strlen(s);
    }
}

static void call_push_note(struct call *c, const struct note *n)
{
    for (int i = 0; i < n->argc && c->argc < c->max; i++) {
        c->argv[c->argc] = n->argv[i];
        c->lens[c->argc++] = n->lens[i];
    }
}

static void state_key_of(const struct delivery *d, const char *id, char *out, size_t cap)
{
    keys_state(&d->w->sh->keys, d->job.tenant, id, out, cap);
}

void notes_terminal(struct delivery *d, struct note *n, bool suppress)
{
    struct worker *w = d->w;
    const struct config *cfg = w->cfg;
    const char *argv[NOTE_MAX_ITEMS + 16];
    size_t lens[NOTE_MAX_ITEMS + 16];
    struct call c = {argv, lens, 0, (int)HERALD_ARRAY_LEN(argv)};
    char skey[KEYS_MAX], sikey[KEYS_MAX], stkey[KEYS_MAX], state[48] = "", window[24];
    keys_suppress(&w->sh->keys, d->job.tenant ? d->job.tenant : "-", skey, sizeof skey);
    keys_suppress_info(&w->sh->keys, d->job.tenant ? d->job.tenant : "-", sikey, sizeof sikey);
    state_key_of(d, delivery_job_id(d), stkey, sizeof stkey);
    /* A duplicate, or an entry rejected before it claimed the id, must not
     * overwrite the state of the job that owns the id; one rejected when
     * its message was built (after admission) owns it and ends it. */
    bool owns_id = n->ev != EV_DUPLICATE && (n->ev != EV_REJECTED || admit_claimed(&d->verdict));
    if (owns_id)
        snprintf(state, sizeof state, "done:%s", note_event_name(n->ev));
    snprintf(window, sizeof window, "%" PRId64, cfg->engine.idempotency_window_ms);
    call_push(&c, "EVALSHA");
    call_push(&c, w->sh->sha_terminal);
    call_push(&c, "6");
    call_push(&c, cfg->redis.jobs);
    call_push(&c, cfg->redis.events);
    call_push(&c, skey);
    call_push(&c, stkey);
    call_push(&c, w->sh->keys.stats);
    call_push(&c, sikey);
    call_push(&c, cfg->redis.group);
    call_push(&c, d->job.stream_id);
    call_push(&c, suppress && d->job.to_key ? d->job.to_key : "");
    call_push(&c, state);
    call_push(&c, window);
    call_push_note(&c, n);
    count_note(d, n);
    note_call(d, c.argc, argv, lens);
}

/* The job's fields as they must look when it comes back from the retry
 * set: the original fields, with id, attempt and enqueued_at explicit and
 * what admission decided carried along. */
static void push_job_items(struct call *c, const struct delivery *d, uint32_t attempt_done,
                           char *num1, char *num2)
{
    const struct job *j = &d->job;
    /* Once claimed, the job carries the entry that claimed its id, so its
     * later copies pass the idempotency check, and once counted they are
     * not counted against recipient caps and tenant rates again. */
    const char *admitted = delivery_job_field(j, "admitted");
    if (!admitted && admit_claimed(&d->verdict))
        admitted = j->stream_id;
    if (admitted) {
        call_push(c, "admitted");
        call_push(c, admitted);
    }
    if (delivery_job_field(j, "counted") || (d->verdict.kind == ADMIT_OK && !d->schedule_only)) {
        call_push(c, "counted");
        call_push(c, "1");
    }
    if (j->message_id[0]) {
        call_push(c, "message_id");
        call_push(c, j->message_id);
    }
    if (d->parked_as == PARK_THROTTLED) {
        call_push(c, "throttled");
        call_push(c, "1");
    }
    /* Where its last attempt went, for `herald queue --provider/--site`. */
    if (d->pair) {
        call_push(c, "via_provider");
        call_push(c, d->pair->provider);
    }
    if (d->site[0]) {
        call_push(c, "via_site");
        call_push(c, d->site);
    }
    for (size_t i = 0; i < j->n_fields && c->argc + 2 <= c->max - 8; i++) {
        const char *name = j->names[i];
        bool skip = strcmp(name, "id") == 0;
        for (size_t k = 0; k < job_n_herald_fields && !skip; k++)
            skip = strcmp(name, job_herald_fields[k]) == 0;
        if (skip)
            continue;
        c->argv[c->argc] = name;
        c->lens[c->argc++] = strlen(name);
        c->argv[c->argc] = j->values[i];
        c->lens[c->argc++] = j->value_lens[i];
    }
    call_push(c, "id");
    call_push(c, delivery_job_id(d));
    snprintf(num1, 24, "%" PRIu32, attempt_done);
    call_push(c, "attempt");
    call_push(c, num1);
    snprintf(num2, 24, "%" PRId64, j->enqueued_ms);
    call_push(c, "enqueued_at");
    call_push(c, num2);
}

void notes_defer(struct delivery *d, int64_t due_ms, uint32_t attempt_done, enum park_reason why,
                 struct note *n)
{
    struct worker *w = d->w;
    const struct config *cfg = w->cfg;
    /* Sized to the job: every field it carries (at most JOB_MAX_FIELDS,
     * job.c) must come back from the retry set, plus the script's head,
     * herald's own fields and the note. */
    const size_t MAXA = 2 * d->job.n_fields + 32 + NOTE_MAX_ITEMS;
    const char **argv = malloc(sizeof(char *) * MAXA);
    size_t *lens = malloc(sizeof(size_t) * MAXA);
    if (!argv || !lens) {
        free(argv);
        free(lens);
        log_event(LOG_ERROR, "event=note_unwritten job=%s entry=%s reason=\"out of memory\"",
                  LOG_VALUE(delivery_job_id(d)), d->job.stream_id);
        delivery_exit(d, DX_UNWRITTEN);
        return;
    }
    d->parked_as = why;
    struct call c = {argv, lens, 0, (int)MAXA};
    char due[24], count[24], key[KEYS_MAX], num1[24], num2[24], stkey[KEYS_MAX], window[24];
    snprintf(due, sizeof due, "%" PRId64, due_ms);
    keys_job(&w->sh->keys, d->job.stream_id, key, sizeof key);
    state_key_of(d, delivery_job_id(d), stkey, sizeof stkey);
    snprintf(window, sizeof window, "%" PRId64, cfg->engine.idempotency_window_ms);
    const char *head[] = {"EVALSHA",         w->sh->sha_defer, "5", cfg->redis.jobs,
                          cfg->redis.events, w->sh->keys.retry, stkey, w->sh->keys.stats,
                          cfg->redis.group,  d->job.stream_id, due, key, window};
    for (size_t i = 0; i < HERALD_ARRAY_LEN(head); i++)
        call_push(&c, head[i]);
    int count_at = c.argc;
    call_push(&c, "");
    int before = c.argc;
    c.max = (int)MAXA - NOTE_MAX_ITEMS;
    push_job_items(&c, d, attempt_done, num1, num2);
    c.max = (int)MAXA;
    snprintf(count, sizeof count, "%d", c.argc - before);
    argv[count_at] = count;
    lens[count_at] = strlen(count);
    if (n) {
        call_push_note(&c, n);
        count_note(d, n);
    }
    note_call(d, c.argc, argv, lens);
    free(argv);
    free(lens);
}

void notes_park(struct delivery *d, int64_t due_wall_ms, enum park_reason why, struct note *n)
{
    const struct job *j = &d->job;
    /* A job that cannot go before it expires waits for its expiry and then
     * gets its `expired` note, like any job that comes back too late. */
    if (j->expires_at_ms > 0 && due_wall_ms >= j->expires_at_ms)
        due_wall_ms = j->expires_at_ms;
    notes_defer(d, due_wall_ms, j->attempt > 0 ? j->attempt - 1 : 0, why, n);
}

void notes_reject(struct delivery *d, const struct job_error *err)
{
    struct note n;
    note_begin(&n, d, EV_REJECTED, clock_wall_ms());
    if (err->field[0])
        note_add(&n, "field", err->field);
    note_add(&n, "reason", err->reason);
    log_event(LOG_INFO, "event=rejected job=%s entry=%s field=%s reason=%s",
              LOG_VALUE(delivery_job_id(d)), d->job.stream_id,
              LOG_VALUE(err->field[0] ? err->field : "-"), LOG_VALUE(err->reason));
    notes_terminal(d, &n, false);
}

void notes_cancel(struct delivery *d)
{
    struct worker *w = d->w;
    const struct config *cfg = w->cfg;
    struct job *j = &d->job;
    char tkey[KEYS_MAX], window[24], now[24];
    state_key_of(d, j->cancel, tkey, sizeof tkey);
    snprintf(window, sizeof window, "%" PRId64, cfg->engine.idempotency_window_ms);
    int64_t t = clock_wall_ms();
    snprintf(now, sizeof now, "%" PRId64, t);
    struct note n;
    note_begin(&n, d, EV_CANCELLED, t);
    const char *argv[NOTE_MAX_ITEMS + 16];
    size_t lens[NOTE_MAX_ITEMS + 16];
    struct call c = {argv, lens, 0, (int)HERALD_ARRAY_LEN(argv)};
    const char *head[] = {"EVALSHA",        w->sh->sha_cancel, "5",  cfg->redis.jobs,
                          cfg->redis.events, tkey, w->sh->keys.retry, w->sh->keys.stats,
                          cfg->redis.group, j->stream_id,      window, now};
    for (size_t i = 0; i < HERALD_ARRAY_LEN(head); i++)
        call_push(&c, head[i]);
    call_push_note(&c, &n);
    log_event(LOG_INFO, "event=cancel entry=%s tenant=%s target=%s", j->stream_id,
              LOG_VALUE(j->tenant), LOG_VALUE(j->cancel));
    count_note(d, &n);
    note_call(d, c.argc, argv, lens);
}
