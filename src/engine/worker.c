/* A worker: one thread, one ring, two Redis connections (intake blocks in
 * XREADGROUP, notes carries the pipelined note scripts) and its own SMTP
 * pools. Every job it reads is held in `held` until the script that writes
 * its note (and acknowledges it) has answered; a job whose note could not be
 * written stays pending in Redis and is claimed again later. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "herald/engine.h"
#include "herald/fairq.h"
#include "status.h"
#include "worker.h"

#define TICK_MS 200
#define DAY_MS (86400LL * 1000)
#define NOTE_MAX_ITEMS 96

struct delivery {
    struct job job;
    struct smtp_msg msg;
    struct worker *w;
    struct delivery *prev, *next;
    bool noting; /* note script sent: no further claim refresh needed */
    struct hbuf note_cmd;          /* the formatted script call, kept until it is answered */
    struct delivery *unwritten_next; /* on w->unwritten while Redis is unreachable */
    char replaced_result[32]; /* what admission did to the job this one `replaces` */
    const char *alignment;    /* align_outcome_name(): how From alignment was handled */
    bool claimed;             /* this copy's entry claimed the job id (idempotency) */
    bool admitted;            /* admission said ok: caps and rates are counted */
    bool rate_parked;         /* parked by a rate limit: a reload may call it back early */
    uint32_t lease_req;       /* tenant-rate slots asked for with this admission (> 1: a block) */
    struct stats_row *tenant_row; /* counted in its in_flight while held */
    struct pool_target *targets; /* MX addresses in the order to try them */
    size_t n_targets, target_i;
    /* Waiting for a send slot of its pair: queued on `queued_on` (fair
     * share by tenant and priority), with everything pool_submit needs. */
    struct throttle_pair *pair;
    struct hold_queue *queued_on;
    struct fairq_node qnode;
    struct pool_target hold_target;
    struct pool_limits hold_lim;
    const char *hold_ip, *hold_ehlo;
};

/* One per throttle pair this worker has sent through: the messages waiting
 * for that pair's slots, served by weighted fair share (tenant weight x
 * priority weight), one timer for the next slot. */
struct hold_queue {
    struct worker *w;
    struct throttle_pair *pair;
    struct fairq q;
    struct ring_timer timer;
    struct hold_queue *next;
};

/* ---------- held jobs ---------- */

static struct delivery *delivery_new(struct worker *w)
{
    struct delivery *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    job_init(&d->job);
    d->w = w;
    fairq_node_init(&d->qnode);
    d->next = w->held;
    if (w->held)
        w->held->prev = d;
    w->held = d;
    w->inflight++;
    return d;
}

static void intake_read(struct worker *w);

static void delivery_release(struct delivery *d)
{
    struct worker *w = d->w;
    if (d->prev)
        d->prev->next = d->next;
    else
        w->held = d->next;
    if (d->next)
        d->next->prev = d->prev;
    if (d->queued_on)
        fairq_remove(&d->queued_on->q, &d->qnode);
    if (d->tenant_row)
        atomic_fetch_sub(&d->tenant_row->in_flight, 1);
    job_clear(&d->job);
    hbuf_free(&d->note_cmd);
    free(d->targets);
    free(d);
    w->inflight--;
    intake_read(w);
}

/* ---------- case notes ---------- */

struct note {
    const char *argv[NOTE_MAX_ITEMS];
    size_t lens[NOTE_MAX_ITEMS];
    int argc;
    char nums[12][24];
    int n_nums;
};

static void note_add_len(struct note *n, const char *name, const char *value, size_t len)
{
    if (!value || n->argc + 2 > NOTE_MAX_ITEMS)
        return;
    n->argv[n->argc] = name;
    n->lens[n->argc++] = strlen(name);
    n->argv[n->argc] = value;
    n->lens[n->argc++] = len;
}

static void note_add(struct note *n, const char *name, const char *value)
{
    if (value)
        note_add_len(n, name, value, strlen(value));
}

static void note_add_int(struct note *n, const char *name, int64_t v)
{
    if (n->n_nums >= (int)HERALD_ARRAY_LEN(n->nums))
        return;
    char *buf = n->nums[n->n_nums++];
    snprintf(buf, sizeof n->nums[0], "%" PRId64, v);
    note_add(n, name, buf);
}

/* Fields every note carries: who, which attempt, when, how long since enqueue. */
static void note_common(struct note *n, struct delivery *d, const char *event, int64_t now)
{
    struct job *j = &d->job;
    note_add(n, "event", event);
    note_add(n, "job", j->id ? j->id : j->stream_id);
    note_add(n, "tenant", j->tenant);
    note_add(n, "ref", j->ref);
    note_add(n, "to", j->to);
    note_add_int(n, "attempt", j->attempt ? j->attempt : 1);
    note_add_int(n, "at", now);
    if (j->enqueued_ms > 0)
        note_add_int(n, "latency_ms", now - j->enqueued_ms);
    note_add(n, "entry", j->stream_id);
    note_add(n, "alignment", d->alignment);
    if (j->suggestion)
        note_add(n, "suggestion", j->suggestion);
    if (j->replaces && d->replaced_result[0]) {
        note_add(n, "replaces", j->replaces);
        note_add(n, "replaced", d->replaced_result);
    }
}

static void note_smtp(struct note *n, const struct config *cfg, const struct smtp_result *res,
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

/* Park a note Redis did not answer: it is sent again as soon as the notes
 * connection is back. The script is idempotent (XACK guards it), so a note
 * whose first call did run is not written twice, and the job is not
 * delivered again the way a reclaimed entry would be. */
static void park_note(struct delivery *d)
{
    struct worker *w = d->w;
    d->noting = false; /* keep refreshing its claim meanwhile */
    d->unwritten_next = w->unwritten;
    w->unwritten = d;
}

/* Errors that say "this Redis has not got our scripts (yet)", not "this
 * job is bad": the server restarted (its script cache is empty, or it is
 * still loading its AOF), failed over, or was SCRIPT FLUSHed. */
static bool scripts_missing(const redisReply *reply)
{
    return reply && reply->type == REDIS_REPLY_ERROR &&
           (strncmp(reply->str, "NOSCRIPT", 8) == 0 || strncmp(reply->str, "LOADING", 7) == 0);
}

/* Drop the notes connection so that reconnecting loads the scripts again
 * (notes_connect) and re-sends every parked note. */
static void notes_reload(struct worker *w, const char *why)
{
    log_event(LOG_WARN, "event=notes_reconnect worker=%u reason=\"%.200s\"", w->idx, why);
    redis_client_close(&w->notes, -HERR_REDIS);
}

static void on_note_written(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct delivery *d = arg;
    if (scripts_missing(reply)) {
        /* Not written: keep the note (the job must not be delivered again)
         * and send it once the scripts are back. */
        park_note(d);
        notes_reload(d->w, reply->str);
        return;
    }
    if (!reply) {
        log_event(LOG_WARN, "event=note_parked job=%s entry=%s reason=\"redis connection lost; "
                            "the note is sent again on reconnect\"",
                  d->job.id ? d->job.id : "-", d->job.stream_id);
        park_note(d);
        return;
    } else if (reply->type == REDIS_REPLY_ERROR) {
        log_event(LOG_ERROR, "event=note_failed job=%s entry=%s reason=\"%.300s\"",
                  d->job.id ? d->job.id : "-", d->job.stream_id, reply->str);
    } else if (reply->type == REDIS_REPLY_INTEGER && reply->integer == 0) {
        log_event(LOG_INFO, "event=note_skipped job=%s entry=%s reason=\"already acknowledged by "
                            "another consumer\"",
                  d->job.id ? d->job.id : "-", d->job.stream_id);
    }
    delivery_release(d);
}

static const char *note_get(const struct note *n, const char *name)
{
    for (int i = 0; i + 1 < n->argc; i += 2)
        if (strcmp(n->argv[i], name) == 0)
            return n->argv[i + 1];
    return NULL;
}

/* Process-wide counters behind `herald status` and the metrics endpoint. */
static void stats_count(struct delivery *d, const char *event, const struct note *n)
{
    struct engine_stats *st = &d->w->sh->stats;
    int ev = stats_event_of(event);
    if (ev < 0)
        return;
    struct stats_row *t = stats_row(&st->tenants, d->job.tenant);
    atomic_fetch_add(&t->events[ev], 1);
    struct stats_row *p = stats_row(&st->providers, d->pair ? d->pair->provider : "-");
    atomic_fetch_add(&p->events[ev], 1);
    if (ev == ST_DELIVERED && n) {
        const char *tls = note_get(n, "tls");
        atomic_fetch_add(tls && strcmp(tls, "none") != 0 ? &p->tls : &p->plain, 1);
        const char *lat = note_get(n, "latency_ms");
        if (lat)
            stats_latency(st, strtoll(lat, NULL, 10));
    }
}

static void count_event(struct worker *w, const char *event)
{
    if (strcmp(event, "delivered") == 0)
        w->n_delivered++;
    else if (strcmp(event, "deferred") == 0)
        w->n_deferred++;
    else if (strcmp(event, "bounced") == 0)
        w->n_bounced++;
    else if (strcmp(event, "rejected") == 0)
        w->n_rejected++;
    else
        w->n_other++;
}

/* Format the script call once, keep it with the job, and send it (or park
 * it until the notes connection is back). */
static void send_note(struct delivery *d, int argc, const char **argv, const size_t *lens)
{
    char *cmd = NULL;
    int len = redisFormatCommandArgv(&cmd, argc, argv, lens);
    hbuf_reset(&d->note_cmd);
    if (len < 0 || hbuf_append(&d->note_cmd, cmd, (size_t)len) < 0) {
        redisFreeCommand(cmd);
        log_event(LOG_ERROR, "event=note_unwritten job=%s entry=%s reason=\"out of memory\"",
                  d->job.id ? d->job.id : "-", d->job.stream_id);
        delivery_release(d);
        return;
    }
    redisFreeCommand(cmd);
    d->noting = true;
    if (redis_client_command_raw(&d->w->notes, on_note_written, d, d->note_cmd.data,
                                 d->note_cmd.len) < 0)
        park_note(d);
}

static void resend_parked_notes(struct worker *w)
{
    struct delivery *list = w->unwritten;
    w->unwritten = NULL;
    size_t n = 0;
    while (list) {
        struct delivery *d = list;
        list = d->unwritten_next;
        d->noting = true;
        if (redis_client_command_raw(&w->notes, on_note_written, d, d->note_cmd.data,
                                     d->note_cmd.len) < 0)
            park_note(d);
        n++;
    }
    if (n)
        log_event(LOG_INFO, "event=notes_resent worker=%u count=%zu", w->idx, n);
}

/* Lower-cased recipient: suppression lists match addresses case-blind. */
static void lower_addr(const char *to, char *out, size_t cap)
{
    size_t i = 0;
    for (; to && to[i] && i + 1 < cap; i++)
        out[i] = (char)((to[i] >= 'A' && to[i] <= 'Z') ? to[i] + 32 : to[i]);
    out[i] = '\0';
}

static int64_t id_window_ms(const struct worker *w)
{
    return w->cfg->engine.idempotency_window_ms > 0 ? w->cfg->engine.idempotency_window_ms
                                                    : 7LL * 86400 * 1000;
}

/* The per-id state key that cancels and replacements read (scripts.c). */
static void state_key(const struct worker *w, const char *tenant, const char *id, char *out,
                      size_t cap)
{
    snprintf(out, cap, "%sstate:%s:%s", w->sh->prefix, tenant ? tenant : "-", id ? id : "-");
}

static void suppress_key(const struct worker *w, const char *tenant, char *out, size_t cap)
{
    if (tenant)
        snprintf(out, cap, "%ssuppress:%s", w->sh->prefix, tenant);
    else
        snprintf(out, cap, "%ssuppress", w->sh->prefix);
}

/* Terminal note + XACK + XDEL in one script call; with suppress, the
 * recipient joins the tenant's suppression list in the same step. */
static void write_terminal_ex(struct delivery *d, struct note *n, bool suppress)
{
    struct worker *w = d->w;
    const struct config *cfg = w->cfg;
    const char *argv[NOTE_MAX_ITEMS + 8];
    size_t lens[NOTE_MAX_ITEMS + 8];
    int argc = 0;
    char skey[320], addr[320] = "", stkey[640], state[48] = "", window[24];
    suppress_key(w, d->job.tenant ? d->job.tenant : "-", skey, sizeof skey);
    if (suppress)
        lower_addr(d->job.to, addr, sizeof addr);
    state_key(w, d->job.tenant, d->job.id ? d->job.id : d->job.stream_id, stkey, sizeof stkey);
    /* A duplicate or a rejected entry must not overwrite the state of the
     * job that owns the id. */
    const char *event = n->argv[1];
    if (strcmp(event, "duplicate") != 0 && strcmp(event, "rejected") != 0)
        snprintf(state, sizeof state, "done:%s", event);
    snprintf(window, sizeof window, "%" PRId64, id_window_ms(w));
#define PUSH(s)                                                                                    \
    do {                                                                                           \
        argv[argc] = (s);                                                                          \
        lens[argc++] = strlen(s);                                                                  \
    } while (0)
    PUSH("EVALSHA");
    PUSH(w->sh->sha_terminal);
    PUSH("5");
    PUSH(cfg->redis.jobs);
    PUSH(cfg->redis.events);
    PUSH(skey);
    PUSH(stkey);
    PUSH(w->sh->stats_key);
    PUSH(cfg->redis.group);
    PUSH(d->job.stream_id);
    PUSH(addr);
    PUSH(state);
    PUSH(window);
#undef PUSH
    for (int i = 0; i < n->argc; i++) {
        argv[argc] = n->argv[i];
        lens[argc++] = n->lens[i];
    }
    count_event(w, n->argv[1]);
    stats_count(d, n->argv[1], n);
    send_note(d, argc, argv, lens);
}

static void write_terminal(struct delivery *d, struct note *n)
{
    write_terminal_ex(d, n, false);
}

/* Job fields as they must look when the job comes back from the retry set:
 * the original fields, with id, attempt and enqueued_at made explicit. */
/* A raw job field by name (internal fields like `admitted` are not parsed
 * into struct job). */
static const char *job_raw(const struct job *j, const char *name)
{
    for (size_t i = 0; i < j->n_fields; i++)
        if (strcmp(j->names[i], name) == 0)
            return j->values[i];
    return NULL;
}

static int job_items(struct delivery *d, uint32_t attempt_done, const char **argv, size_t *lens,
                     int max, char *numbuf1, char *numbuf2)
{
    struct job *j = &d->job;
    int argc = 0;
    /* Once admitted, the job carries the entry that claimed its id, so its
     * later copies pass the idempotency check and are not counted against
     * recipient caps and tenant rates again. */
    const char *admitted = job_raw(j, "admitted");
    if (!admitted && d->claimed)
        admitted = j->stream_id;
    if (admitted) {
        argv[argc] = "admitted";
        lens[argc++] = 8;
        argv[argc] = admitted;
        lens[argc++] = strlen(admitted);
    }
    if (job_raw(j, "counted") || d->admitted) {
        argv[argc] = "counted";
        lens[argc++] = 7;
        argv[argc] = "1";
        lens[argc++] = 1;
    }
    if (j->message_id[0]) {
        argv[argc] = "message_id";
        lens[argc++] = 10;
        argv[argc] = j->message_id;
        lens[argc++] = strlen(j->message_id);
    }
    if (d->rate_parked) {
        argv[argc] = "throttled";
        lens[argc++] = 9;
        argv[argc] = "1";
        lens[argc++] = 1;
    }
    for (size_t i = 0; i < j->n_fields && argc + 2 <= max - 8; i++) {
        const char *name = j->names[i];
        if (strcmp(name, "attempt") == 0 || strcmp(name, "enqueued_at") == 0 ||
            strcmp(name, "id") == 0 || strcmp(name, "admitted") == 0 ||
            strcmp(name, "counted") == 0 || strcmp(name, "throttled") == 0 ||
            strcmp(name, "message_id") == 0)
            continue;
        argv[argc] = name;
        lens[argc++] = strlen(name);
        argv[argc] = j->values[i];
        lens[argc++] = j->value_lens[i];
    }
    const char *id = j->id ? j->id : j->stream_id;
    argv[argc] = "id";
    lens[argc++] = 2;
    argv[argc] = id;
    lens[argc++] = strlen(id);
    snprintf(numbuf1, 24, "%" PRIu32, attempt_done);
    argv[argc] = "attempt";
    lens[argc++] = 7;
    argv[argc] = numbuf1;
    lens[argc++] = strlen(numbuf1);
    snprintf(numbuf2, 24, "%" PRId64, j->enqueued_ms);
    argv[argc] = "enqueued_at";
    lens[argc++] = 11;
    argv[argc] = numbuf2;
    lens[argc++] = strlen(numbuf2);
    return argc;
}

/* Acknowledge the entry and park the job in the retry set until due_ms,
 * optionally with a (non-terminal) note, in one script call. */
static void write_defer(struct delivery *d, int64_t due_ms, uint32_t attempt_done, struct note *n)
{
    struct worker *w = d->w;
    const struct config *cfg = w->cfg;
    enum { MAXA = 512 };
    const char **argv = malloc(sizeof(char *) * MAXA);
    size_t *lens = malloc(sizeof(size_t) * MAXA);
    if (!argv || !lens) {
        free(argv);
        free(lens);
        delivery_release(d);
        return;
    }
    char due[24], count[24], key[320], num1[24], num2[24], stkey[640], window[24];
    snprintf(due, sizeof due, "%" PRId64, due_ms);
    snprintf(key, sizeof key, "%s%s", w->sh->job_key_prefix, d->job.stream_id);
    state_key(w, d->job.tenant, d->job.id ? d->job.id : d->job.stream_id, stkey, sizeof stkey);
    snprintf(window, sizeof window, "%" PRId64, id_window_ms(w));
    int argc = 0;
    const char *head[] = {"EVALSHA", w->sh->sha_defer, "5", cfg->redis.jobs, cfg->redis.events,
                          w->sh->retry_key, stkey, w->sh->stats_key, cfg->redis.group, d->job.stream_id, due, key,
                          window};
    for (size_t i = 0; i < HERALD_ARRAY_LEN(head); i++) {
        argv[argc] = head[i];
        lens[argc++] = strlen(head[i]);
    }
    int count_at = argc++;
    int nj = job_items(d, attempt_done, argv + argc, lens + argc, MAXA - argc - NOTE_MAX_ITEMS,
                       num1, num2);
    argc += nj;
    snprintf(count, sizeof count, "%d", nj);
    argv[count_at] = count;
    lens[count_at] = strlen(count);
    if (n) {
        for (int i = 0; i < n->argc; i++) {
            argv[argc] = n->argv[i];
            lens[argc++] = n->lens[i];
        }
        count_event(w, n->argv[1]);
        stats_count(d, n->argv[1], n);
    }
    send_note(d, argc, argv, lens);
    free(argv);
    free(lens);
}

/* Back to the retry set without counting an attempt: throttles, recipient
 * caps and suspensions delay a message, they do not fail it. */
static void park(struct delivery *d, int64_t due_wall_ms, struct note *n)
{
    struct job *j = &d->job;
    /* A job that cannot go before it expires waits for its expiry and then
     * gets its `expired` note, like any job that comes back too late. */
    if (j->expires_at_ms > 0 && due_wall_ms >= j->expires_at_ms)
        due_wall_ms = j->expires_at_ms;
    write_defer(d, due_wall_ms, j->attempt > 0 ? j->attempt - 1 : 0, n);
}

static void reject(struct delivery *d, const struct job_error *err)
{
    struct note n = {0};
    int64_t now = clock_wall_ms();
    note_common(&n, d, "rejected", now);
    if (err->field[0])
        note_add(&n, "field", err->field);
    note_add(&n, "reason", err->reason);
    char reason[256];
    log_event(LOG_INFO, "event=rejected entry=%s field=%s reason=\"%s\"", d->job.stream_id,
              err->field[0] ? err->field : "-",
              log_quote(reason, sizeof reason, err->reason, strlen(err->reason)));
    write_terminal(d, &n);
}

/* DESIGN "From alignment": may rewrite From/Reply-To before the message
 * is built; -HERR_MALFORMED (err filled) when the tenant refuses it. */
static int decide_alignment(struct delivery *d, const struct cfg_tenant *tenant,
                            struct job_error *err)
{
    enum align_outcome o = align_decide(d->w->gen->align, tenant, &d->job);
    d->alignment = align_outcome_name(o);
    if (o == ALIGN_REWRITTEN)
        d->job.mail_from = NULL; /* the envelope follows the rewritten From */
    if (o != ALIGN_REFUSED) return 0;
    snprintf(err->field, sizeof err->field, "from");
    snprintf(err->reason, sizeof err->reason, "unaligned-from");
    return -HERR_MALFORMED;
}

static int64_t tenant_max_age(const struct config *cfg, const char *tenant)
{
    const struct cfg_tenant *t = tenant ? config_tenant(cfg, tenant) : NULL;
    if (t && t->max_age_ms > 0)
        return t->max_age_ms;
    return cfg->delivery.max_age_ms > 0 ? cfg->delivery.max_age_ms : 2LL * 86400 * 1000;
}

/* 4xx or a network fault: schedule the next attempt, or end the job when
 * the next attempt would fall after its expiry or the tenant's max age. */
static void retry_or_give_up(struct delivery *d, const struct smtp_result *res,
                             const struct pool_conn_info *info)
{
    struct worker *w = d->w;
    const struct config *cfg = w->cfg;
    struct job *j = &d->job;
    int64_t now = clock_wall_ms();
    int64_t step = 60000;
    if (cfg->delivery.n_retry > 0) {
        size_t i = j->attempt > 0 ? j->attempt - 1 : 0;
        if (i >= cfg->delivery.n_retry)
            i = cfg->delivery.n_retry - 1;
        /* Greylisting asks for a prompt retry: always the short step. */
        if (strcmp(classify_reply(cfg, res), "greylist") == 0)
            i = 0;
        step = cfg->delivery.retry_ms[i];
    }
    /* Up to +10% jitter so jobs deferred together do not return together. */
    w->rng = w->rng * 6364136223846793005ULL + 1442695040888963407ULL;
    int64_t due = now + step + (int64_t)((w->rng >> 33) % (uint64_t)(step / 10 + 1));
    struct note n = {0};
    if (j->expires_at_ms > 0 && due >= j->expires_at_ms) {
        note_common(&n, d, "expired", now);
        note_smtp(&n, d->w->cfg, res, info, j->message_id);
        note_add(&n, "reason", "the next attempt would fall after expires_at");
        write_terminal(d, &n);
        return;
    }
    if (j->enqueued_ms > 0 && due - j->enqueued_ms > tenant_max_age(cfg, j->tenant)) {
        struct smtp_result last = *res;
        char prefix[64];
        int pl = snprintf(prefix, sizeof prefix, "gave up after %" PRIu32 " attempts: ", j->attempt);
        size_t keep = sizeof last.reply - (size_t)pl - 1;
        memcpy(last.reply, prefix, (size_t)pl);
        memcpy(last.reply + pl, res->reply, strnlen(res->reply, keep));
        last.reply[pl + strnlen(res->reply, keep)] = '\0';
        note_common(&n, d, "bounced", now);
        note_smtp(&n, d->w->cfg, &last, info, j->message_id);
        write_terminal(d, &n);
        return;
    }
    note_common(&n, d, "deferred", now);
    note_smtp(&n, d->w->cfg, res, info, j->message_id);
    note_add_int(&n, "next_attempt_at", due);
    write_defer(d, due, j->attempt, &n);
}

/* ---------- delivery results from the pool ---------- */

static void submit_to(struct delivery *d, const struct pool_target *target);

static void on_delivery_done(void *arg, struct smtp_msg *msg, const struct smtp_result *res,
                             const struct pool_conn_info *info)
{
    (void)arg;
    struct delivery *d = msg->owner_data;
    if (!res) {
        /* Never attempted (shutting down): leave the entry pending. */
        delivery_release(d);
        return;
    }
    /* The exchanger never took part in a transaction (refused, timed out,
     * 4xx/5xx greeting, EHLO or TLS refused): the next address, then the
     * next MX, before this attempt counts as failed. */
    bool conn_level = res->stage == SMTP_STAGE_CONNECT || res->stage == SMTP_STAGE_BANNER ||
                      res->stage == SMTP_STAGE_EHLO || res->stage == SMTP_STAGE_TLS;
    if (conn_level && res->outcome != SMTP_OUT_OK && d->targets && info &&
        d->target_i + 1 < d->n_targets && !d->w->draining) {
        char q[160];
        log_event(LOG_INFO, "event=mx_failover job=%s mx=%s ip=%s next=%s reason=\"%s\"",
                  d->job.id, info->mx ? info->mx : "-", info->remote_ip ? info->remote_ip : "-",
                  d->targets[d->target_i + 1].host,
                  log_quote(q, sizeof q, res->reply, strlen(res->reply)));
        d->target_i++;
        submit_to(d, &d->targets[d->target_i]);
        return;
    }
    if (d->pair) {
        int64_t suspend_ms = 0;
        enum throttle_signal_kind sig =
            res->outcome == SMTP_OUT_OK
                ? THROTTLE_OK
                : throttle_classify(&d->w->cfg->reputation, res->code, res->enhanced, res->reply,
                                    res->stage == SMTP_STAGE_CONNECT, classify_reply(d->w->cfg, res),
                                    &suspend_ms);
        throttle_signal(d->pair, &d->w->cfg->reputation, sig, suspend_ms, d->w->ring.now_ms,
                        clock_wall_ms());
    }
    char reply[200];
    log_quote(reply, sizeof reply, res->reply, strlen(res->reply));
    if (res->outcome == SMTP_OUT_OK) {
        struct note n = {0};
        note_common(&n, d, "delivered", clock_wall_ms());
        note_smtp(&n, d->w->cfg, res, info, d->job.message_id);
        log_event(LOG_DEBUG, "event=delivered job=%s to=%s mx=%s code=%d", d->job.id, d->job.to,
                  info ? info->mx : "-", res->code);
        write_terminal(d, &n);
    } else if (res->outcome == SMTP_OUT_PERMFAIL) {
        struct note n = {0};
        note_common(&n, d, "bounced", clock_wall_ms());
        note_smtp(&n, d->w->cfg, res, info, d->job.message_id);
        /* A mailbox or domain that does not exist will not start to: later
         * jobs to it end `suppressed` without a connection. */
        const char *cat = classify_reply(d->w->cfg, res);
        bool hard = strcmp(cat, "bad-mailbox") == 0 || strcmp(cat, "bad-domain") == 0;
        if (hard)
            note_add(&n, "suppressed", "added");
        log_event(LOG_INFO, "event=bounced job=%s to=%s mx=%s code=%d reply=\"%s\"", d->job.id,
                  d->job.to, info ? info->mx : "-", res->code, reply);
        write_terminal_ex(d, &n, hard);
    } else {
        log_event(LOG_INFO, "event=deferred job=%s to=%s mx=%s code=%d reply=\"%s\"", d->job.id,
                  d->job.to, info ? info->mx : "-", res->code, reply);
        retry_or_give_up(d, res, info);
    }
}

/* ---------- routing (static routes; MX lookup plugs in here) ---------- */

static const struct engine_route *route_for(struct worker *w, const char *domain)
{
    const struct cfg_route *r = config_route(w->cfg, domain);
    if (!r)
        return NULL;
    for (size_t i = 0; i < w->gen->n_routes; i++)
        if (w->gen->routes[i].route == r)
            return &w->gen->routes[i];
    return NULL;
}

static const struct engine_relay *relay_of(const struct worker *w, const struct cfg_tenant *t)
{
    if (!t)
        return NULL;
    /* t may belong to the config a held job started under: find the tenant
     * of that name in the current generation. */
    const struct cfg_tenant *cur = t;
    if (t < w->cfg->tenants || t >= w->cfg->tenants + w->cfg->n_tenants)
        cur = config_tenant(w->cfg, t->name);
    if (!cur)
        return NULL;
    const struct engine_relay *r = &w->gen->relays[cur - w->cfg->tenants];
    return r->configured ? r : NULL;
}

static void park(struct delivery *d, int64_t due_wall_ms, struct note *n);

/* Whether an egress IP is at its warm-up cap for today. */
static bool warmup_full(struct worker *w, const char *ip, int64_t wall)
{
    if (!w->cfg->n_warmup)
        return false;
    int64_t cap = config_warmup_cap(w->cfg, ip, wall / DAY_MS, NULL);
    return cap >= 0 && throttle_ip_today(w->sh->throttle, ip, wall / DAY_MS) >= cap;
}

/* Weights of the priority lanes: under a binding limit high gets four
 * slots for every one of bulk (and two of normal), and bulk still moves. */
static double prio_weight(enum job_priority p)
{
    return p == JOB_PRIO_HIGH ? 4.0 : p == JOB_PRIO_BULK ? 1.0 : 2.0;
}

/* How much of a pair's queue a worker keeps in memory: about this many
 * seconds of sending; the rest waits in the retry set (no attempt used). */
#define HOLD_HORIZON_S 10.0

static void send_now(struct delivery *d)
{
    struct worker *w = d->w;
    if (w->cfg->n_warmup)
        throttle_ip_count(w->sh->throttle, d->hold_ip, clock_wall_ms() / DAY_MS);
    if (pool_submit(&w->pool, &d->hold_target, d->hold_ip, d->hold_ehlo, &d->hold_lim, &d->msg) <
        0) {
        struct smtp_result res = {.outcome = SMTP_OUT_NETFAIL, .stage = SMTP_STAGE_CONNECT};
        snprintf(res.reply, sizeof res.reply, "out of memory queueing the message");
        retry_or_give_up(d, &res, NULL);
    }
}

static void park_suspended(struct delivery *d, struct throttle_pair *pair, int64_t until,
                           int64_t wall)
{
    struct note n = {0};
    note_common(&n, d, "deferred", wall);
    char why[200];
    snprintf(why, sizeof why, "provider %s suspended for egress %s by a reputation rule",
             pair->provider, pair->ip[0] ? pair->ip : "-");
    note_add(&n, "reason", why);
    note_add(&n, "category", "rate-limit");
    note_add_int(&n, "next_attempt_at", until);
    park(d, until, &n);
}

static double pair_rate_per_s(const struct throttle_pair *pair, const struct cfg_provider *prov)
{
    if (!prov || !prov->rate.count || !prov->rate.window_s)
        return 0;
    return (double)prov->rate.count / (double)prov->rate.window_s * throttle_factor(pair);
}

/* The queue's timer: hand out every slot the pair has now, by fair share,
 * then sleep until the next one. */
static void on_queue_due(struct ring_timer *t)
{
    struct hold_queue *hq = HERALD_CONTAINER_OF(t, struct hold_queue, timer);
    struct worker *w = hq->w;
    struct throttle_pair *pair = hq->pair;
    while (fairq_len(&hq->q) > 0) {
        int64_t wall = clock_wall_ms();
        int64_t until = atomic_load(&pair->suspended_until_ms);
        bool warm = warmup_full(w, pair->ip, wall);
        const struct cfg_provider *prov = config_provider(w->cfg, pair->provider);
        int64_t wait = 0;
        if (until > wall || warm || !prov || !prov->rate.count)
            wait = 0;
        else
            wait = throttle_take(pair, &prov->rate, clock_mono_ms() * 1000, 0);
        if (wait < 0) {
            int64_t ms = (-wait + 999) / 1000;
            ring_timer_arm(&w->ring, &hq->timer, w->ring.now_ms + (ms > 0 ? ms : 1));
            return;
        }
        struct delivery *d = HERALD_CONTAINER_OF(fairq_pop(&hq->q), struct delivery, qnode);
        d->queued_on = NULL;
        if (until > wall) {
            park_suspended(d, pair, until, wall);
        } else if (warm) {
            /* Its address reached today's warm-up cap meanwhile: back to the
             * retry set, to be routed again (another address, or tomorrow). */
            d->rate_parked = true;
            park(d, wall + 1000, NULL);
        } else {
            d->hold_lim.max_conns = throttle_scale(pair, d->hold_lim.max_conns);
            send_now(d);
        }
    }
}

static struct hold_queue *hold_queue_of(struct worker *w, struct throttle_pair *pair)
{
    for (struct hold_queue *hq = w->queues; hq; hq = hq->next)
        if (hq->pair == pair)
            return hq;
    struct hold_queue *hq = calloc(1, sizeof *hq);
    if (!hq)
        return NULL;
    hq->w = w;
    hq->pair = pair;
    fairq_init(&hq->q);
    ring_timer_init(&hq->timer, on_queue_due);
    hq->next = w->queues;
    w->queues = hq;
    return hq;
}

void worker_queues_free(struct worker *w)
{
    for (struct hold_queue *hq = w->queues, *next; hq; hq = next) {
        next = hq->next;
        if (w->ring_live)
            ring_timer_cancel(&w->ring, &hq->timer);
        fairq_free(&hq->q);
        free(hq);
    }
    w->queues = NULL;
}

/* Jobs a rate limit parked in the retry set were given the slot times of
 * the old limits: a reload brings them back now, to be priced again. The
 * set's members are the jobs' hash keys. */
static const char recall_script[] =
    "local now = tonumber(ARGV[1]) "
    "local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. now, '+inf') "
    "local n = 0 "
    "for _, id in ipairs(ids) do "
    "  if redis.call('HGET', id, 'throttled') == '1' then "
    "    redis.call('ZADD', KEYS[1], 'XX', now, id) n = n + 1 "
    "  end "
    "end "
    "return n";

static void on_recalled(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct worker *w = arg;
    if (reply && reply->type == REDIS_REPLY_INTEGER)
        log_event(LOG_INFO, "event=reload_recalled worker=%u parked=%lld", w->idx,
                  (long long)reply->integer);
    else
        log_event(LOG_WARN, "event=reload_recall_failed worker=%u reason=\"%.200s\"", w->idx,
                  reply && reply->type == REDIS_REPLY_ERROR ? reply->str : "no reply");
}

static void recall_parked(struct worker *w)
{
    char now[24];
    snprintf(now, sizeof now, "%" PRId64, clock_wall_ms());
    const char *argv[] = {"EVAL", recall_script, "1", w->sh->retry_key, now};
    size_t lens[HERALD_ARRAY_LEN(argv)];
    for (size_t i = 0; i < HERALD_ARRAY_LEN(argv); i++)
        lens[i] = strlen(argv[i]);
    if (redis_client_command_argv(&w->notes, on_recalled, w, (int)HERALD_ARRAY_LEN(argv), argv,
                                  lens) < 0)
        log_event(LOG_WARN, "event=reload_recall_failed worker=%u reason=\"redis unavailable\"",
                  w->idx);
}

/* A reload changed the limits (the main thread reset the pairs' slots):
 * every queue takes its next slots under the new rates at once. */
static void retime_holds(struct worker *w)
{
    for (struct hold_queue *hq = w->queues; hq; hq = hq->next)
        if (fairq_len(&hq->q) > 0)
            ring_timer_arm(&w->ring, &hq->timer, w->ring.now_ms);
}

/* The pair's rate and suspension: true when the message does not go now
 * (it waits on its timer for a reserved slot, or is parked in the retry set
 * until the pair can take it). */
static bool throttle_gate(struct delivery *d, struct throttle_pair *pair,
                          const struct cfg_provider *prov, const struct pool_target *target,
                          const struct pool_limits *lim, const char *ip, const char *ehlo)
{
    struct worker *w = d->w;
    int64_t wall = clock_wall_ms();
    if (warmup_full(w, pair->ip, wall)) {
        /* Every address of the pool that could take it is at its warm-up
         * cap: wait for the next UTC day without using an attempt. */
        atomic_fetch_add(&pair->deferred_by_rate, 1);
        d->rate_parked = true;
        park(d, (wall / DAY_MS + 1) * DAY_MS + (int64_t)(w->rng++ % 60000), NULL);
        return true;
    }
    int64_t until = atomic_load(&pair->suspended_until_ms);
    if (until > wall) {
        park_suspended(d, pair, until, wall);
        return true;
    }
    if (!prov || prov->rate.count == 0)
        return false;
    struct hold_queue *hq = hold_queue_of(w, pair);
    if (!hq) /* out of memory: send, the rate is best effort then */
        return false;
    if (fairq_len(&hq->q) == 0 && throttle_take(pair, &prov->rate, clock_mono_ms() * 1000, 0) == 0)
        return false;
    /* Fair share: the class (tenant x priority) may keep its share of the
     * in-memory horizon; beyond it the job waits in the retry set for about
     * as long as its turn would take, without using an attempt. */
    const struct cfg_tenant *tenant = config_tenant(w->cfg, d->job.tenant);
    double weight = (tenant && tenant->weight ? tenant->weight : 1) * prio_weight(d->job.priority);
    char key[96];
    snprintf(key, sizeof key, "%s/%d", d->job.tenant ? d->job.tenant : "-", (int)d->job.priority);
    double per_s = pair_rate_per_s(pair, prov) / (double)(w->sh->n_workers ? w->sh->n_workers : 1);
    double share = fairq_share(&hq->q, key, weight);
    double cap = HOLD_HORIZON_S * per_s * share;
    if (cap < 4)
        cap = 4;
    size_t mine = fairq_class_len(&hq->q, key);
    if ((double)mine >= cap) {
        double turn_s = per_s > 0 ? (double)(mine + 1) / (per_s * share) : 60;
        if (turn_s > 3600)
            turn_s = 3600;
        atomic_fetch_add(&pair->deferred_by_rate, 1);
        d->rate_parked = true;
        park(d, wall + (int64_t)(turn_s * 1000), NULL);
        return true;
    }
    d->hold_target = *target;
    d->hold_lim = *lim;
    d->hold_ip = ip;
    d->hold_ehlo = ehlo;
    if (fairq_push(&hq->q, &d->qnode, key, weight) < 0)
        return false;
    d->queued_on = hq;
    if (!ring_timer_armed(&hq->timer))
        ring_timer_arm(&w->ring, &hq->timer, w->ring.now_ms);
    return true;
}

/* Queue the message for one target (a relay, a static route or one address
 * of one exchanger) with the limits and security of its provider. */
static bool egress_may_send(struct worker *w, const char *ip, const struct cfg_provider *prov)
{
    int64_t wall = clock_wall_ms();
    struct throttle_pair *p = throttle_pair_get(w->sh->throttle, ip, prov ? prov->name : NULL);
    if (p && atomic_load(&p->suspended_until_ms) > wall)
        return false;
    return !warmup_full(w, ip, wall);
}

static void submit_to(struct delivery *d, const struct pool_target *target)
{
    struct worker *w = d->w;
    const struct config *cfg = w->cfg;
    struct job *j = &d->job;
    const struct cfg_tenant *tenant = config_tenant(cfg, j->tenant);
    const struct engine_relay *relay = relay_of(w, tenant);
    const char *pool_name = tenant && tenant->egress ? tenant->egress : "default";
    const struct cfg_egress_pool *eg = config_egress(cfg, pool_name);
    /* An egress address of the target's family, round robin over the pool;
     * a pool without one cannot reach this target (the mail must not leave
     * from an address outside the pool). */
    const struct cfg_provider *prov = config_provider_for_host(cfg, target->host);
    const char *ip = "";
    if (eg && eg->ips.n > 0) {
        ip = NULL;
        /* Round robin over the addresses that may send to this provider now
         * (not suspended, warm-up cap not reached); when none may, the first
         * of the right family, whose gate then parks the message. */
        size_t pick = SIZE_MAX, first = SIZE_MAX;
        for (size_t k = 0; k < eg->ips.n && pick == SIZE_MAX; k++) {
            const char *cand = eg->ips.items[(w->egress_rr + k) % eg->ips.n];
            if ((strchr(cand, ':') != NULL) != (target->sa.ss_family == AF_INET6))
                continue;
            if (first == SIZE_MAX)
                first = k;
            if (egress_may_send(w, cand, prov))
                pick = k;
        }
        if (pick == SIZE_MAX)
            pick = first;
        if (pick != SIZE_MAX) {
            ip = eg->ips.items[(w->egress_rr + pick) % eg->ips.n];
            w->egress_rr += (uint32_t)pick + 1;
        }
        if (!ip) {
            struct smtp_result res = {.outcome = SMTP_OUT_NETFAIL, .stage = SMTP_STAGE_CONNECT};
            snprintf(res.reply, sizeof res.reply, "egress pool %s has no %s address for %s",
                     pool_name, target->sa.ss_family == AF_INET6 ? "IPv6" : "IPv4", target->host);
            struct pool_conn_info info = {.mx = target->host, .tls = "none"};
            d->msg.owner_data = d;
            on_delivery_done(w, &d->msg, &res, &info);
            return;
        }
    }
    const char *ehlo = eg && eg->ehlo ? eg->ehlo : cfg->engine.ehlo;

    struct pool_limits lim = {0};
    /* TLS: the stricter of the tenant's and the provider's policy, else
     * delivery.tls; a relay uses its own tls setting (STARTTLS required,
     * implicit, or none) and AUTHs with the tenant's credentials. */
    enum cfg_tls_policy pol = tenant ? tenant->tls : CFG_TLS_UNSET;
    if (prov && prov->tls > pol)
        pol = prov->tls;
    if (pol == CFG_TLS_UNSET)
        pol = cfg->delivery.tls ? cfg->delivery.tls : CFG_TLS_OPPORTUNISTIC;
    lim.tls_mode = pol == CFG_TLS_OPPORTUNISTIC ? SMTP_TLS_TRY : SMTP_TLS_MUST;
    lim.tls_verify = pol == CFG_TLS_VERIFY;
    if (relay) {
        lim.tls_mode = relay->tls_mode;
        lim.auth = relay->auth.user ? &relay->auth : NULL;
    }
    struct throttle_pair *pair = throttle_pair_get(w->sh->throttle, ip, prov ? prov->name : NULL);
    d->pair = pair;
    uint32_t conns = prov && prov->connections ? prov->connections : 10;
    if (pair)
        conns = throttle_scale(pair, conns);
    lim.max_conns = (conns + w->sh->n_workers - 1) / w->sh->n_workers;
    lim.group = prov ? prov->name : NULL;
    lim.open_counter = pair ? &pair->open_conns : NULL;
    lim.max_msgs_per_conn = prov ? prov->messages_per_connection : 100;
    const struct cfg_timeouts *t = &cfg->delivery.timeouts;
    lim.connect_timeout_ms = t->connect_ms ? t->connect_ms : 30000;
    lim.idle_timeout_ms = t->idle_ms ? t->idle_ms : 30000;
    lim.smtp.banner_ms = t->banner_ms ? t->banner_ms : 300000;
    lim.smtp.command_ms = t->command_ms ? t->command_ms : 300000;
    lim.smtp.data_block_ms = t->data_block_ms ? t->data_block_ms : 180000;
    lim.smtp.data_end_ms = t->data_end_ms ? t->data_end_ms : 600000;

    /* The envelope forms: IDN domains as A-labels; only a UTF-8 local part
     * needs SMTPUTF8 (decided by job_parse). */
    d->msg.mail_from = j->mail_from ? j->mail_from : j->from ? j->from : "";
    d->msg.rcpt = j->rcpt ? j->rcpt : j->to;
    d->msg.data = j->wire.data;
    d->msg.data_len = j->wire.len;
    d->msg.needs_smtputf8 = j->needs_smtputf8;
    d->msg.owner_data = d;
    if (pair && throttle_gate(d, pair, prov, target, &lim, ip, ehlo))
        return; /* queued for its slot, or parked in the retry set */
    d->hold_target = *target;
    d->hold_lim = lim;
    d->hold_ip = ip;
    d->hold_ehlo = ehlo;
    send_now(d);
}

/* MX lookup finished: bounce for a domain that cannot take mail, defer on
 * a lookup failure, else try the exchangers' addresses in order. */
static void on_route(void *arg, const struct dns_route *route)
{
    struct delivery *d = arg;
    struct worker *w = d->w;
    if (w->dns_closing) {
        delivery_release(d); /* shutting down: the entry stays pending */
        return;
    }
    if (route->status == DNS_NXDOMAIN || route->status == DNS_NULL_MX) {
        struct smtp_result res = {.outcome = SMTP_OUT_PERMFAIL, .stage = SMTP_STAGE_CONNECT};
        bool null_mx = route->status == DNS_NULL_MX;
        res.code = null_mx ? 556 : 550;
        snprintf(res.enhanced, sizeof res.enhanced, "%s", null_mx ? "5.1.10" : "5.1.2");
        snprintf(res.reply, sizeof res.reply, "%s %s", res.enhanced, route->reason);
        d->msg.owner_data = d;
        on_delivery_done(w, &d->msg, &res, NULL);
        return;
    }
    if (route->status != DNS_OK) {
        struct smtp_result res = {.outcome = SMTP_OUT_NETFAIL, .stage = SMTP_STAGE_CONNECT};
        snprintf(res.reply, sizeof res.reply, "DNS: %s", route->reason);
        retry_or_give_up(d, &res, NULL);
        return;
    }
    size_t n = 0;
    for (size_t i = 0; i < route->n_hosts; i++)
        n += route->hosts[i].n_addrs;
    free(d->targets);
    d->targets = calloc(n ? n : 1, sizeof *d->targets);
    if (!d->targets) {
        struct smtp_result res = {.outcome = SMTP_OUT_NETFAIL, .stage = SMTP_STAGE_CONNECT};
        snprintf(res.reply, sizeof res.reply, "out of memory routing the message");
        retry_or_give_up(d, &res, NULL);
        return;
    }
    d->n_targets = 0;
    for (size_t i = 0; i < route->n_hosts; i++)
        for (size_t k = 0; k < route->hosts[i].n_addrs; k++) {
            struct pool_target *t = &d->targets[d->n_targets++];
            snprintf(t->host, sizeof t->host, "%s", route->hosts[i].name);
            t->sa = route->hosts[i].addrs[k];
            t->sa_len = route->hosts[i].addr_lens[k];
        }
    d->target_i = 0;
    submit_to(d, &d->targets[0]);
}

/* Relay, else static route, else MX. */
static void dispatch(struct delivery *d)
{
    struct worker *w = d->w;
    const struct config *cfg = w->cfg;
    struct job *j = &d->job;
    const struct engine_relay *relay = relay_of(w, config_tenant(cfg, j->tenant));
    if (relay) {
        submit_to(d, &relay->target);
        return;
    }
    const struct engine_route *route = route_for(w, j->to_domain);
    if (route) {
        submit_to(d, &route->target);
        return;
    }
    if (!w->dns) {
        struct smtp_result res = {.outcome = SMTP_OUT_NETFAIL, .stage = SMTP_STAGE_CONNECT};
        snprintf(res.reply, sizeof res.reply, "no route for domain %s and no resolver",
                 j->to_domain);
        retry_or_give_up(d, &res, NULL);
        return;
    }
    if (dns_resolve_route(w->dns, j->to_domain, cfg->delivery.port ? cfg->delivery.port : 25,
                          on_route, d) < 0) {
        struct smtp_result res = {.outcome = SMTP_OUT_NETFAIL, .stage = SMTP_STAGE_CONNECT};
        snprintf(res.reply, sizeof res.reply, "out of memory resolving %s", j->to_domain);
        retry_or_give_up(d, &res, NULL);
    }
}

static struct tenant_lease *lease_of(struct worker *w, const char *tenant);

static void on_admitted(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct delivery *d = arg;
    bool ok = reply && (reply->type == REDIS_REPLY_STRING || reply->type == REDIS_REPLY_STATUS) &&
              strncmp(reply->str, "ok", 2) == 0;
    if (d->lease_req > 1 && !ok) {
        /* The block was not granted: the next admission asks again. */
        struct tenant_lease *l = lease_of(d->w, d->job.tenant);
        if (l)
            l->pending = false;
        d->lease_req = 0;
    }
    if (!reply || scripts_missing(reply)) {
        /* Redis went away: the entry stays pending and is taken up again. */
        struct worker *w = d->w;
        delivery_release(d);
        if (reply)
            notes_reload(w, reply->str);
        return;
    }
    if (reply->type != REDIS_REPLY_STRING && reply->type != REDIS_REPLY_STATUS) {
        log_event(LOG_ERROR, "event=admit_failed job=%s entry=%s reason=\"%.300s\"",
                  d->job.id ? d->job.id : "-", d->job.stream_id,
                  reply->type == REDIS_REPLY_ERROR ? reply->str : "unexpected reply");
        delivery_release(d);
        return;
    }
    if (strncmp(reply->str, "ok", 2) == 0) {
        d->admitted = d->claimed = true;
        if (d->lease_req > 1) {
            struct tenant_lease *l = lease_of(d->w, d->job.tenant);
            if (l) {
                l->pending = false;
                l->left = d->lease_req - 1; /* one paid for this job */
                l->until_ms = d->w->ring.now_ms + 1000;
            }
            d->lease_req = 0;
        }
        const char *rp = strstr(reply->str, ";replaced=");
        if (rp)
            snprintf(d->replaced_result, sizeof d->replaced_result, "%s", rp + 10);
        dispatch(d);
        return;
    }
    struct note n = {0};
    char reason[160];
    if (strncmp(reply->str, "wait:", 5) == 0) {
        d->claimed = true;
        /* A recipient cap or the tenant's rate: back to the retry set until
         * the window allows it (not an attempt), or `suppressed` under the
         * recipient policy `drop`. */
        int64_t ms = strtoll(reply->str + 5, NULL, 10);
        const char *what = strchr(reply->str + 5, ':');
        what = what ? what + 1 : "limit";
        const struct cfg_recipients *rc = &d->w->cfg->recipients;
        if (strcmp(what, "recipient-cap") == 0 && rc->policy && strcmp(rc->policy, "drop") == 0) {
            note_common(&n, d, "suppressed", clock_wall_ms());
            note_add(&n, "reason", "recipient-cap");
            write_terminal(d, &n);
            return;
        }
        int64_t now = clock_wall_ms();
        note_common(&n, d, "deferred", now);
        snprintf(reason, sizeof reason, "%s: held until the limit allows it",
                 strcmp(what, "recipient-cap") == 0 ? "recipient cap reached" : "tenant rate");
        note_add(&n, "reason", reason);
        note_add(&n, "category", strcmp(what, "recipient-cap") == 0 ? "recipient-cap" : "rate-limit");
        int64_t due = now + ms;
        if (d->job.expires_at_ms > 0 && due > d->job.expires_at_ms)
            due = d->job.expires_at_ms;
        note_add_int(&n, "next_attempt_at", due);
        park(d, now + ms, &n);
        return;
    }
    if (strncmp(reply->str, "cancelled:", 10) == 0) {
        note_common(&n, d, "cancelled", clock_wall_ms());
        snprintf(reason, sizeof reason, "cancelled by entry %.48s", reply->str + 10);
        note_add(&n, "reason", reason);
        note_add(&n, "cancelled_by", reply->str + 10);
    } else if (strncmp(reply->str, "duplicate:", 10) == 0) {
        note_common(&n, d, "duplicate", clock_wall_ms());
        snprintf(reason, sizeof reason, "tenant %s already has job id %s (entry %.48s)",
                 d->job.tenant, d->job.id, reply->str + 10);
        note_add(&n, "reason", reason);
        note_add(&n, "first_entry", reply->str + 10);
    } else {
        bool global = strcmp(reply->str, "suppressed:global") == 0;
        note_common(&n, d, "suppressed", clock_wall_ms());
        note_add(&n, "reason", global ? "recipient is on the global suppression list"
                                      : "recipient is on the tenant's suppression list");
        note_add(&n, "list", global ? "global" : "tenant");
    }
    write_terminal(d, &n);
}

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

/* Cancellation, idempotency, `replaces` and suppression lists, in one
 * script call per attempt just before it may take a connection. Retries
 * (attempt > 1) skip the idempotency check and `replaces`: their first
 * attempt did both. */
static void admit(struct delivery *d)
{
    struct worker *w = d->w;
    struct job *j = &d->job;
    char idem[512], skey[320], gkey[320], addr[320], window[24], stkey[640], tkey[640], now[24];
    snprintf(idem, sizeof idem, "%sidem:%s:%s", w->sh->prefix, j->tenant, j->id);
    suppress_key(w, j->tenant, skey, sizeof skey);
    suppress_key(w, NULL, gkey, sizeof gkey);
    lower_addr(j->to, addr, sizeof addr);
    state_key(w, j->tenant, j->id, stkey, sizeof stkey);
    state_key(w, j->tenant, j->replaces ? j->replaces : j->id, tkey, sizeof tkey);
    snprintf(window, sizeof window, "%" PRId64, id_window_ms(w));
    snprintf(now, sizeof now, "%" PRId64, clock_wall_ms());
    const char *admitted = job_raw(j, "admitted");
    bool first = j->attempt <= 1 && !admitted;
    bool count = !job_raw(j, "counted");
    /* Recipient caps (across tenants: they protect the person) and the
     * tenant's rate, as "count window_ms" pairs; counted once per job. */
    char caps[256] = "", trate[48] = "", rkey[400], tkeyr[320];
    size_t used = 0;
    const struct cfg_recipients *rc = &w->cfg->recipients;
    int64_t now_ms = clock_wall_ms();
    for (size_t i = 0; count && i < rc->n_limits; i++) {
        /* The window's hash needs its expiry set once per slot per worker. */
        int x = 1;
        if (i < HERALD_ARRAY_LEN(w->rcap_expiry_slot) && rc->limits[i].window_s) {
            int64_t slot = now_ms / ((int64_t)rc->limits[i].window_s * 1000);
            x = w->rcap_expiry_slot[i] != slot + 1;
            w->rcap_expiry_slot[i] = slot + 1;
        }
        int k = snprintf(caps + used, sizeof caps - used, "%s%u %u %d", used ? " " : "",
                         rc->limits[i].count, rc->limits[i].window_s, x);
        if (k < 0 || (size_t)k >= sizeof caps - used)
            break;
        used += (size_t)k;
    }
    const struct cfg_tenant *tn = config_tenant(w->cfg, j->tenant);
    d->lease_req = 0;
    if (count && tn && tn->rate.count) {
        struct tenant_lease *l = lease_of(w, j->tenant);
        if (l && l->left > 0 && l->until_ms > w->ring.now_ms) {
            l->left--; /* paid from this worker's block */
        } else {
            uint32_t k = 1;
            if (l && !l->pending) {
                k = lease_size(w, &tn->rate);
                l->pending = k > 1;
            }
            d->lease_req = k;
            snprintf(trate, sizeof trate, "%u %u %u", tn->rate.count, tn->rate.window_s, k);
        }
    }
    snprintf(rkey, sizeof rkey, "%srcap", w->sh->prefix);
    snprintf(tkeyr, sizeof tkeyr, "%strate:%s", w->sh->prefix, j->tenant);
    const char *argv[] = {"EVALSHA", w->sh->sha_admit, "10", idem, skey, gkey, stkey, tkey,
                          w->sh->retry_key, w->cfg->redis.events, rkey, tkeyr, w->sh->stats_key,
                          admitted ? admitted : j->stream_id, window, addr,
                          first || (j->attempt <= 1 && admitted) ? "1" : "0",
                          first && j->replaces ? j->replaces : "", now, caps, trate};
    size_t lens[HERALD_ARRAY_LEN(argv)];
    for (size_t i = 0; i < HERALD_ARRAY_LEN(argv); i++)
        lens[i] = strlen(argv[i]);
    if (redis_client_command_argv(&w->notes, on_admitted, d, (int)HERALD_ARRAY_LEN(argv), argv,
                                  lens) < 0)
        delivery_release(d);
}

/* A `cancel` control entry: end the target job if it has not been sent,
 * and note on this entry what happened (scripts.c: `result`). */
static void write_cancel(struct delivery *d)
{
    struct worker *w = d->w;
    const struct config *cfg = w->cfg;
    struct job *j = &d->job;
    char tkey[640], window[24], now[24];
    state_key(w, j->tenant, j->cancel, tkey, sizeof tkey);
    snprintf(window, sizeof window, "%" PRId64, id_window_ms(w));
    int64_t t = clock_wall_ms();
    snprintf(now, sizeof now, "%" PRId64, t);
    struct note n = {0};
    note_add(&n, "event", "cancelled");
    note_add(&n, "job", j->id ? j->id : j->stream_id);
    note_add(&n, "tenant", j->tenant);
    note_add(&n, "ref", j->ref);
    note_add(&n, "to", j->to);
    note_add(&n, "cancel", j->cancel);
    note_add_int(&n, "at", t);
    note_add(&n, "entry", j->stream_id);
    const char *argv[NOTE_MAX_ITEMS + 12];
    size_t lens[NOTE_MAX_ITEMS + 12];
    const char *head[] = {"EVALSHA",        w->sh->sha_cancel, "5",          cfg->redis.jobs,
                          cfg->redis.events, tkey,           w->sh->retry_key, w->sh->stats_key,
                          cfg->redis.group, j->stream_id,    window,           now};
    int argc = 0;
    for (size_t i = 0; i < HERALD_ARRAY_LEN(head); i++) {
        argv[argc] = head[i];
        lens[argc++] = strlen(head[i]);
    }
    for (int i = 0; i < n.argc; i++) {
        argv[argc] = n.argv[i];
        lens[argc++] = n.lens[i];
    }
    log_event(LOG_INFO, "event=cancel entry=%s tenant=%s target=%s", j->stream_id, j->tenant,
              j->cancel);
    count_event(w, "cancelled");
    stats_count(d, "cancelled", NULL);
    send_note(d, argc, argv, lens);
}

static const char *domain_of(const char *addr)
{
    const char *at = addr ? strrchr(addr, '@') : NULL;
    return at ? at + 1 : "localhost";
}

/* One stream entry: decode, check, build, then route it or note why not. */
static void handle_entry(struct worker *w, const char *id, redisReply *fields)
{
    struct delivery *d = delivery_new(w);
    if (!d) {
        log_event(LOG_ERROR, "event=oom entry=%s", id);
        return;
    }
    snprintf(d->job.stream_id, sizeof d->job.stream_id, "%s", id);
    struct job_error err = {{0}, {0}};
    size_t n = fields->elements / 2;
    const char **names = calloc(n ? n : 1, sizeof *names);
    const char **values = calloc(n ? n : 1, sizeof *values);
    size_t *nlens = calloc(n ? n : 1, sizeof *nlens);
    size_t *vlens = calloc(n ? n : 1, sizeof *vlens);
    int rc = -ENOMEM;
    if (names && values && nlens && vlens) {
        size_t k = 0;
        for (size_t i = 0; i + 1 < fields->elements; i += 2) {
            redisReply *f = fields->element[i], *v = fields->element[i + 1];
            if (f->type != REDIS_REPLY_STRING || v->type != REDIS_REPLY_STRING)
                continue;
            names[k] = f->str;
            nlens[k] = f->len;
            values[k] = v->str;
            vlens[k] = v->len;
            k++;
        }
        rc = job_parse(&d->job, id, k, names, nlens, values, vlens, w->cfg, &err);
    }
    free(names);
    free(values);
    free(nlens);
    free(vlens);
    if (rc == -ENOMEM) {
        snprintf(err.reason, sizeof err.reason, "out of memory decoding the job");
        rc = -HERR_MALFORMED;
    }
    if (rc < 0) {
        reject(d, &err);
        return;
    }
    struct job *j = &d->job;
    d->tenant_row = stats_row(&w->sh->stats.tenants, j->tenant);
    atomic_fetch_add(&d->tenant_row->in_flight, 1);
    if (j->cancel) {
        write_cancel(d);
        return;
    }
    int64_t now = clock_wall_ms();
    if (j->expires_at_ms > 0 && now >= j->expires_at_ms) {
        struct note note = {0};
        note_common(&note, d, "expired", now);
        note_add(&note, "reason", j->attempt > 1 || job_raw(j, "admitted") ? "expires_at passed while it waited" : "expires_at passed before the first attempt");
        write_terminal(d, &note);
        return;
    }
    if (j->send_at_ms > now + 1000) {
        /* Scheduled: park it in the retry set, keeping its attempt count. */
        write_defer(d, j->send_at_ms, j->attempt > 0 ? j->attempt - 1 : 0, NULL);
        return;
    }
    const struct cfg_tenant *tenant = config_tenant(w->cfg, j->tenant);
    if (tenant && w->gen->align && decide_alignment(d, tenant, &err) < 0) {
        reject(d, &err);
        return;
    }
    uint32_t max_msg = w->cfg->engine.max_message_bytes ? w->cfg->engine.max_message_bytes
                                                        : 10u * 1024 * 1024;
    /* A retry keeps the Message-ID of its first attempt, so a receiver
     * that took an earlier attempt after all can tell it is the same. */
    const char *mid = job_raw(j, "message_id");
    if (mid && msg_id_acceptable(mid))
        snprintf(j->message_id, sizeof j->message_id, "%s", mid);
    if (job_build(j, tenant, domain_of(j->from), now, max_msg, &err) < 0) {
        reject(d, &err);
        return;
    }
    admit(d);
}

/* Each element: [id, [field, value, ...]] (fields nil when the entry was
 * deleted while pending). */
static void handle_entries(struct worker *w, redisReply *entries, char *last_id, size_t last_cap)
{
    for (size_t i = 0; i < entries->elements; i++) {
        redisReply *e = entries->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
            e->element[0]->type != REDIS_REPLY_STRING)
            continue;
        const char *id = e->element[0]->str;
        if (last_id)
            snprintf(last_id, last_cap, "%s", id);
        redisReply *fields = e->element[1];
        if (fields->type != REDIS_REPLY_ARRAY) {
            /* Deleted while pending: nothing to send; just clear it. */
            redis_client_commandf(&w->notes, NULL, NULL, "XACK %s %s %s", w->cfg->redis.jobs,
                                  w->cfg->redis.group, id);
            continue;
        }
        handle_entry(w, id, fields);
    }
}

/* ---------- intake ---------- */

static void on_read(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct worker *w = arg;
    w->reading = false;
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR) {
        log_event(LOG_ERROR, "event=intake_error reason=\"%.300s\"", reply->str);
        if (strncmp(reply->str, "NOGROUP", 7) == 0)
            w->group_ready = false;
        w->intake_retry_at = w->ring.now_ms + 1000;
        return;
    }
    size_t got = 0;
    if (reply->type == REDIS_REPLY_ARRAY) {
        for (size_t s = 0; s < reply->elements; s++) {
            redisReply *st = reply->element[s];
            if (st->type != REDIS_REPLY_ARRAY || st->elements < 2 ||
                st->element[1]->type != REDIS_REPLY_ARRAY)
                continue;
            got += st->element[1]->elements;
            handle_entries(w, st->element[1], w->pel_done ? NULL : w->pel_cursor,
                           sizeof w->pel_cursor);
        }
    }
    if (!w->pel_done && got == 0) {
        w->pel_done = true;
        log_event(LOG_INFO, "event=intake_live worker=%u consumer=%s", w->idx, w->consumer);
    }
    intake_read(w);
}

static void intake_read(struct worker *w)
{
    if (w->reading || w->draining || !w->group_ready || !redis_client_up(&w->intake))
        return;
    uint32_t max = w->cfg->engine.max_inflight ? w->cfg->engine.max_inflight : 2000;
    uint32_t batch = w->cfg->engine.batch ? w->cfg->engine.batch : 256;
    if (w->inflight >= max)
        return;
    uint32_t room = max - w->inflight;
    /* Wait for a worthwhile batch rather than trickling one entry per trip. */
    if (room < batch / 4 && w->inflight > 0)
        return;
    uint32_t count = room < batch ? room : batch;
    if (w->small_reads > 0) {
        w->small_reads--;
        count = 1;
    }
    int rc;
    if (!w->pel_done)
        rc = redis_client_commandf(&w->intake, on_read, w, "XREADGROUP GROUP %s %s COUNT %u STREAMS %s %s",
                                   w->cfg->redis.group, w->consumer, count, w->cfg->redis.jobs,
                                   w->pel_cursor);
    else
        rc = redis_client_commandf(&w->intake, on_read, w,
                                   "XREADGROUP GROUP %s %s COUNT %u BLOCK 1000 STREAMS %s >",
                                   w->cfg->redis.group, w->consumer, count, w->cfg->redis.jobs);
    if (rc == 0)
        w->reading = true;
}

static void on_group(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct worker *w = arg;
    if (!reply)
        return;
    if (reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "BUSYGROUP", 9) != 0) {
        log_event(LOG_ERROR, "event=group_create_failed reason=\"%.300s\"", reply->str);
        w->intake_retry_at = w->ring.now_ms + 2000;
        return;
    }
    w->group_ready = true;
    intake_read(w);
}

static void ensure_group(struct worker *w)
{
    /* Start at 0, not $: entries enqueued before the first start are jobs too. */
    redis_client_commandf(&w->intake, on_group, w, "XGROUP CREATE %s %s 0 MKSTREAM",
                          w->cfg->redis.jobs, w->cfg->redis.group);
}

static void on_claim(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct worker *w = arg;
    w->claiming = false;
    if (!reply || reply->type != REDIS_REPLY_ARRAY || reply->elements < 2)
        return;
    redisReply *cursor = reply->element[0];
    if (cursor->type == REDIS_REPLY_STRING)
        snprintf(w->claim_cursor, sizeof w->claim_cursor, "%s", cursor->str);
    redisReply *entries = reply->element[1];
    if (entries->type == REDIS_REPLY_ARRAY && entries->elements > 0) {
        log_event(LOG_INFO, "event=claimed worker=%u entries=%zu", w->idx, entries->elements);
        handle_entries(w, entries, NULL, 0);
    }
    if (strcmp(w->claim_cursor, "0-0") != 0)
        w->next_claim_ms = w->ring.now_ms; /* more to scan */
}

static void on_ignore(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    (void)reply;
    (void)arg;
}

static void on_moved(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct worker *w = arg;
    w->moving = false;
    if (scripts_missing(reply))
        notes_reload(w, reply->str);
    else if (reply && reply->type == REDIS_REPLY_ERROR)
        log_event(LOG_ERROR, "event=retry_mover_failed reason=\"%.300s\"", reply->str);
}

/* Keep the entries this worker holds from looking idle, so no other
 * consumer's XAUTOCLAIM takes a job we are still delivering. */
static void refresh_claims(struct worker *w)
{
    enum { CHUNK = 500 };
    const char *argv[CHUNK + 8];
    size_t lens[CHUNK + 8];
    struct delivery *d = w->held;
    while (d) {
        int argc = 0;
        const char *head[] = {"XCLAIM", w->cfg->redis.jobs, w->cfg->redis.group, w->consumer, "0"};
        for (size_t i = 0; i < HERALD_ARRAY_LEN(head); i++) {
            argv[argc] = head[i];
            lens[argc++] = strlen(head[i]);
        }
        int ids = 0;
        for (; d && ids < CHUNK; d = d->next) {
            if (d->noting)
                continue;
            argv[argc] = d->job.stream_id;
            lens[argc++] = strlen(d->job.stream_id);
            ids++;
        }
        argv[argc] = "JUSTID";
        lens[argc++] = 6;
        if (ids > 0)
            redis_client_command_argv(&w->notes, on_ignore, NULL, argc, argv, lens);
    }
}

/* ---------- connection management and the periodic tick ---------- */

/* Reconnect delay: 100 ms doubling to 5 s, reset on success. */
static void backoff(int64_t *delay_ms, int64_t *retry_at, int64_t now)
{
    *delay_ms = *delay_ms ? *delay_ms * 2 : 100;
    if (*delay_ms > 5000)
        *delay_ms = 5000;
    *retry_at = now + *delay_ms;
}

static void on_intake_state(struct redis_client *c, bool up, int err, void *arg)
{
    (void)c;
    struct worker *w = arg;
    if (up) {
        w->intake_backoff_ms = 0;
        log_event(LOG_INFO, "event=redis_connected worker=%u conn=intake", w->idx);
        ensure_group(w);
        return;
    }
    w->reading = false;
    w->group_ready = false;
    /* A batch too large to read: take entries one at a time for a while,
     * so the ones that fit get through (they are pending under this
     * consumer and are claimed again after claim_idle). */
    if (err == -HERR_TOO_LONG)
        w->small_reads = 2 * (w->cfg->engine.batch ? w->cfg->engine.batch : 256);
    backoff(&w->intake_backoff_ms, &w->intake_retry_at, w->ring.now_ms);
    if (err == 0)
        return; /* we closed it */
    log_event(LOG_WARN, "event=redis_disconnected worker=%u conn=intake reason=\"%s\" retry_ms=%" PRId64,
              w->idx, herald_strerror(err), w->intake_backoff_ms);
}

static void on_notes_state(struct redis_client *c, bool up, int err, void *arg)
{
    struct worker *w = arg;
    if (up) {
        w->notes_backoff_ms = 0;
        log_event(LOG_INFO, "event=redis_connected worker=%u conn=notes", w->idx);
        resend_parked_notes(w);
        status_on_connected(w);
        /* Let every worker re-send its parked notes before anyone claims
         * entries that merely look idle because Redis was away. */
        int64_t hold = w->ring.now_ms + 2000;
        if (w->next_claim_ms < hold)
            w->next_claim_ms = hold;
        return;
    }
    (void)c;
    w->claiming = false;
    w->moving = false;
    if (err == -HERR_TOO_LONG)
        w->small_reads = 2 * (w->cfg->engine.batch ? w->cfg->engine.batch : 256);
    backoff(&w->notes_backoff_ms, &w->notes_retry_at, w->ring.now_ms);
    if (err == 0)
        return; /* we closed it */
    log_event(LOG_WARN, "event=redis_disconnected worker=%u conn=notes reason=\"%s\" retry_ms=%" PRId64,
              w->idx, herald_strerror(err), w->notes_backoff_ms);
}

/* A SCRIPT LOAD refused (Redis still loading its AOF after a restart):
 * without the scripts every note would fail, so reconnect and load again. */
static void on_script_loaded(struct redis_client *c, redisReply *reply, void *arg)
{
    (void)c;
    struct worker *w = arg;
    if (reply && reply->type == REDIS_REPLY_ERROR && w->notes.state == REDIS_C_UP)
        notes_reload(w, reply->str);
}

static void notes_connect(struct worker *w)
{
    if (redis_client_connect(&w->notes) == 0) {
        /* Loaded ahead of any EVALSHA on the same connection. */
        redis_client_commandf(&w->notes, on_script_loaded, w, "SCRIPT LOAD %s",
                              notes_script_terminal);
        redis_client_commandf(&w->notes, on_script_loaded, w, "SCRIPT LOAD %s",
                              notes_script_defer);
        redis_client_commandf(&w->notes, on_script_loaded, w, "SCRIPT LOAD %s",
                              notes_script_mover);
        redis_client_commandf(&w->notes, on_script_loaded, w, "SCRIPT LOAD %s",
                              notes_script_admit);
        redis_client_commandf(&w->notes, on_script_loaded, w, "SCRIPT LOAD %s",
                              notes_script_cancel);
    } else {
        w->notes_retry_at = w->ring.now_ms + 1000;
    }
}

static void on_tick(struct ring_timer *t)
{
    struct worker *w = HERALD_CONTAINER_OF(t, struct worker, tick);
    int64_t now = w->ring.now_ms;
    struct engine_gen *g = atomic_load_explicit(&w->sh->gen, memory_order_acquire);
    if (g != w->gen) {
        w->gen = g;
        w->cfg = g->cfg;
        log_event(LOG_INFO, "event=config_applied worker=%u generation=%u", w->idx, g->number);
        retime_holds(w);
        if (w->idx == 0)
            recall_parked(w);
    }
    const struct config *cfg = w->cfg;
    status_tick(w, now);

    if (atomic_load(&w->sh->stop) && !w->draining) {
        w->draining = true;
        int64_t grace = cfg->engine.shutdown_grace_ms ? cfg->engine.shutdown_grace_ms : 30000;
        w->drain_deadline_ms = now + grace;
        log_event(LOG_INFO, "event=draining worker=%u held=%u", w->idx, w->inflight);
    }
    if (w->draining) {
        if (w->inflight == 0 || now >= w->drain_deadline_ms) {
            if (!w->pool.closing)
                pool_close_all(&w->pool);
            if (pool_is_quiet(&w->pool) || now >= w->drain_deadline_ms + 5000) {
                w->done = true;
                return;
            }
        }
    }

    /* Reputation recovers additively after clean intervals: one worker
     * walks the (small, fixed) table for everyone. */
    if (w->idx == 0 && w->sh->throttle) {
        struct throttle_table *tt = w->sh->throttle;
        for (size_t i = 0; i < tt->n_ips * tt->n_providers; i++)
            throttle_tick(&tt->pairs[i], &cfg->reputation, now);
    }

    if (w->intake.state == REDIS_C_IDLE && now >= w->intake_retry_at && !w->draining)
        redis_client_connect(&w->intake);
    if (w->notes.state == REDIS_C_IDLE && now >= w->notes_retry_at)
        notes_connect(w);
    if (redis_client_up(&w->intake) && !w->group_ready && now >= w->intake_retry_at &&
        !w->draining)
        ensure_group(w);
    intake_read(w);

    if (redis_client_up(&w->notes) && !w->draining) {
        int64_t idle = cfg->engine.claim_idle_ms ? cfg->engine.claim_idle_ms : 60000;
        if (w->pel_done && !w->claiming && now >= w->next_claim_ms) {
            uint32_t max = cfg->engine.max_inflight ? cfg->engine.max_inflight : 2000;
            uint32_t room = max > w->inflight ? max - w->inflight : 0;
            if (room > 0) {
                uint32_t count = room < 100 ? room : 100;
                if (w->small_reads > 0)
                    count = 1;
                if (redis_client_commandf(&w->notes, on_claim, w,
                                          "XAUTOCLAIM %s %s %s %lld %s COUNT %u", cfg->redis.jobs,
                                          cfg->redis.group, w->consumer, (long long)idle,
                                          w->claim_cursor, count) == 0)
                    w->claiming = true;
            }
            w->next_claim_ms = now + (idle / 2 > 1000 ? idle / 2 : 1000);
        }
        if (now >= w->next_refresh_ms) {
            refresh_claims(w);
            w->next_refresh_ms = now + (idle / 3 > 500 ? idle / 3 : 500);
        }
        if (w->idx == 0 && !w->moving && now >= w->next_mover_ms) {
            char nowbuf[24];
            snprintf(nowbuf, sizeof nowbuf, "%" PRId64, clock_wall_ms());
            if (redis_client_commandf(&w->notes, on_moved, w, "EVALSHA %s 2 %s %s %s 500",
                                      w->sh->sha_mover, w->sh->retry_key, cfg->redis.jobs,
                                      nowbuf) == 0)
                w->moving = true;
            w->next_mover_ms = now + 250;
        }
    }
    ring_timer_arm(&w->ring, &w->tick, now + TICK_MS);
}

int worker_init(struct worker *w, unsigned idx, struct engine_shared *sh)
{
    memset(w, 0, sizeof *w);
    w->idx = idx;
    w->sh = sh;
    w->gen = atomic_load(&sh->gen);
    w->cfg = w->gen->cfg;
    snprintf(w->consumer, sizeof w->consumer, "%s-%u", w->cfg->engine.consumer, idx);
    w->rng = (uint64_t)clock_wall_ms() ^ ((uint64_t)idx << 32) ^ (uint64_t)(uintptr_t)w;
    snprintf(w->pel_cursor, sizeof w->pel_cursor, "0");
    snprintf(w->claim_cursor, sizeof w->claim_cursor, "0-0");
    /* The ring itself is created on the worker's own thread (worker_main):
     * a single-issuer ring belongs to the thread that made it. */
    int rc = redis_client_init(&w->intake, &w->ring, &sh->redis, "intake", on_intake_state, w);
    if (rc == 0)
        rc = redis_client_init(&w->notes, &w->ring, &sh->redis, "notes", on_notes_state, w);
    if (rc == 0)
        rc = pool_init(&w->pool, &w->ring, on_delivery_done, w);
    if (rc == 0) {
        pool_set_tls(&w->pool, sh->tls_ctx);
        redis_client_set_tls(&w->intake, sh->redis_tls_ctx);
        redis_client_set_tls(&w->notes, sh->redis_tls_ctx);
    }
    size_t max_reply = w->cfg->engine.max_reply_bytes ? w->cfg->engine.max_reply_bytes
                                                      : (size_t)512 << 20;
    redis_client_set_max_reply(&w->intake, max_reply);
    redis_client_set_max_reply(&w->notes, max_reply);
    ring_timer_init(&w->tick, on_tick);
    if (rc == 0)
        rc = status_init(w);
    return rc;
}

void *worker_main(void *arg)
{
    struct worker *w = arg;
    int rc0 = ring_init(&w->ring, 4096);
    if (rc0 < 0) {
        log_event(LOG_ERROR, "event=ring_failed worker=%u reason=\"io_uring setup failed: %s\"",
                  w->idx, herald_strerror(rc0));
        atomic_store(&w->sh->failed, 1);
        w->done = true;
        return NULL;
    }
    w->ring_live = true;
    const struct cfg_dns *dc = &w->cfg->dns;
    char derr[256];
    if (dns_resolver_new(&w->dns, &w->ring, (const char *const *)dc->servers.items, dc->servers.n,
                         derr, sizeof derr) < 0)
        log_event(LOG_ERROR, "event=dns_unavailable worker=%u reason=\"%s\"", w->idx, derr);
    redis_client_connect(&w->intake);
    notes_connect(w);
    ring_timer_arm(&w->ring, &w->tick, w->ring.now_ms + TICK_MS);
    while (!w->done) {
        int rc = ring_run_once(&w->ring, TICK_MS);
        if (rc < 0) {
            log_event(LOG_ERROR, "event=ring_failed worker=%u reason=\"%s\"", w->idx,
                      herald_strerror(rc));
            atomic_store(&w->sh->failed, 1);
            break;
        }
    }
    /* Hand back whatever is still held (pending in Redis) and close down. */
    redis_client_close(&w->intake, 0);
    redis_client_close(&w->notes, 0);
    for (int i = 0; i < 50 && (redis_client_busy(&w->intake) || redis_client_busy(&w->notes) ||
                               !pool_is_quiet(&w->pool));
         i++)
        ring_run_once(&w->ring, 20);
    w->dns_closing = true;
    dns_resolver_free(w->dns);
    w->dns = NULL;
    while (w->held) {
        struct delivery *d = w->held;
        w->held = d->next;
        job_clear(&d->job);
        hbuf_free(&d->note_cmd);
        free(d->targets);
        free(d);
    }
    log_event(LOG_INFO,
              "event=worker_stopped worker=%u delivered=%" PRIu64 " deferred=%" PRIu64
              " bounced=%" PRIu64 " rejected=%" PRIu64 " other=%" PRIu64,
              w->idx, w->n_delivered, w->n_deferred, w->n_bounced, w->n_rejected, w->n_other);
    return NULL;
}
