/* herald status: what every running process says of itself (published by
 * its worker 0 under <prefix>status:<consumer>) plus the queue as Redis
 * sees it, per egress IP x provider and per tenant. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "herald/core.h"
#include "engine/suspend.h"
#include "herald/keys.h"

static const char status_usage[] =
    "usage: herald status -c FILE [--json]\n"
    "\n"
    "Per egress IP x provider: the configured limit, the reputation factor and\n"
    "the limit it gives, the measured rate, open connections and any\n"
    "suspension. Per tenant: jobs waiting in the stream, in the retry/scheduled\n"
    "set, in flight, the delivery rate and the outcome counts since start.\n"
    "Reads what running engines publish every second; a process that stopped\n"
    "disappears within 5 seconds.\n"
    "\n"
    "  -c, --config FILE   the engine's config (for Redis and key names)\n"
    "      --json          one JSON document instead of tables\n";

/* Counts, per tenant, the jobs in the retry set and the stream entries the
 * group has not read yet; bounded so a huge backlog cannot stall Redis. */
static const char backlog_script[] =
    "local limit = tonumber(ARGV[2]) "
    "local retry, stream = {}, {} "
    "local truncated = false "
    "local ids = redis.call('ZRANGE', KEYS[1], 0, limit - 1) "
    "if #ids >= limit then truncated = true end "
    "for _, k in ipairs(ids) do "
    "  local t = redis.call('HGET', k, 'tenant') or '-' "
    "  retry[t] = (retry[t] or 0) + 1 "
    "end "
    "local ok, entries = pcall(redis.call, 'XRANGE', KEYS[2], '(' .. ARGV[1], '+', 'COUNT', limit) "
    "if ok then "
    "  if #entries >= limit then truncated = true end "
    "  for _, e in ipairs(entries) do "
    "    local f, t = e[2], '-' "
    "    for i = 1, #f, 2 do if f[i] == 'tenant' then t = f[i + 1] end end "
    "    stream[t] = (stream[t] or 0) + 1 "
    "  end "
    "end "
    "return cjson.encode({retry = retry, stream = stream, truncated = truncated})";

#define BACKLOG_LIMIT "100000"

static long long reply_int(redisReply *r)
{
    return r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
}

/* The group's last-delivered id, pending count and lag from XINFO GROUPS. */
static void group_info(redisContext *c, const struct config *cfg, json_t *queue, char *last_id,
                       size_t last_len)
{
    snprintf(last_id, last_len, "0-0");
    redisReply *r = redisCommand(c, "XINFO GROUPS %s", cfg->redis.jobs);
    if (!r)
        return;
    for (size_t g = 0; r->type == REDIS_REPLY_ARRAY && g < r->elements; g++) {
        redisReply *e = r->element[g];
        if (e->type != REDIS_REPLY_ARRAY)
            continue;
        bool ours = false;
        long long pending = -1, lag = -1;
        char last[64] = "0-0";
        for (size_t k = 0; k + 1 < e->elements; k += 2) {
            redisReply *n = e->element[k], *v = e->element[k + 1];
            if (n->type != REDIS_REPLY_STRING)
                continue;
            if (strcmp(n->str, "name") == 0 && v->type == REDIS_REPLY_STRING)
                ours = strcmp(v->str, cfg->redis.group) == 0;
            else if (strcmp(n->str, "pending") == 0)
                pending = reply_int(v);
            else if (strcmp(n->str, "lag") == 0)
                lag = reply_int(v);
            else if (strcmp(n->str, "last-delivered-id") == 0 && v->type == REDIS_REPLY_STRING)
                snprintf(last, sizeof last, "%s", v->str);
        }
        if (ours) {
            json_object_set_new(queue, "pending", json_integer(pending));
            if (lag >= 0)
                json_object_set_new(queue, "unread", json_integer(lag));
            snprintf(last_id, last_len, "%s", last);
        }
    }
    freeReplyObject(r);
}

static json_t *collect(redisContext *c, const struct config *cfg)
{
    struct keys schema;
    keys_init(&schema, cfg->redis.prefix);
    json_t *doc = json_object();
    json_t *procs = json_array();
    const char *pattern = schema.status_glob;
    char cursor[32] = "0";
    for (int rounds = 0; rounds < 10000; rounds++) {
        redisReply *r = redisCommand(c, "SCAN %s MATCH %s COUNT 200", cursor, pattern);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            if (r)
                freeReplyObject(r);
            break;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str ? r->element[0]->str : "0");
        redisReply *keys = r->element[1];
        for (size_t i = 0; keys->type == REDIS_REPLY_ARRAY && i < keys->elements; i++) {
            redisReply *v = redisCommand(c, "GET %b", keys->element[i]->str,
                                         (size_t)keys->element[i]->len);
            if (v && v->type == REDIS_REPLY_STRING) {
                json_t *p = json_loadb(v->str, v->len, 0, NULL);
                if (p)
                    json_array_append_new(procs, p);
            }
            if (v)
                freeReplyObject(v);
        }
        freeReplyObject(r);
        if (strcmp(cursor, "0") == 0)
            break;
    }
    json_object_set_new(doc, "processes", procs);

    json_t *queue = json_object();
    redisReply *r = redisCommand(c, "XLEN %s", cfg->redis.jobs);
    json_object_set_new(queue, "stream", json_integer(reply_int(r)));
    if (r)
        freeReplyObject(r);
    r = redisCommand(c, "ZCARD %s", schema.retry);
    json_object_set_new(queue, "retry", json_integer(reply_int(r)));
    if (r)
        freeReplyObject(r);
    char last_id[64];
    group_info(c, cfg, queue, last_id, sizeof last_id);
    json_object_set_new(doc, "queue", queue);

    /* Per tenant: waiting (stream, retry) from Redis, the rest summed over
     * the processes. */
    json_t *tenants = json_object();
    r = redisCommand(c, "EVAL %s 2 %s %s %s %s", backlog_script, schema.retry, cfg->redis.jobs,
                     last_id, BACKLOG_LIMIT);
    json_t *backlog = r && r->type == REDIS_REPLY_STRING ? json_loadb(r->str, r->len, 0, NULL) : NULL;
    if (r)
        freeReplyObject(r);
    const char *kinds[] = {"stream", "retry"};
    for (size_t k = 0; backlog && k < 2; k++) {
        json_t *m = json_object_get(backlog, kinds[k]);
        const char *name;
        json_t *v;
        json_object_foreach(m, name, v)
        {
            json_t *t = json_object_get(tenants, name);
            if (!t) {
                t = json_object();
                json_object_set_new(tenants, name, t);
            }
            json_object_set_new(t, k == 0 ? "queued" : "waiting_retry",
                                json_integer(json_integer_value(v)));
        }
    }
    if (backlog && json_is_true(json_object_get(backlog, "truncated")))
        json_object_set_new(doc, "backlog_truncated_at", json_integer(atoll(BACKLOG_LIMIT)));
    json_decref(backlog);
    size_t pi;
    json_t *p;
    json_array_foreach(procs, pi, p)
    {
        size_t ti;
        json_t *pt;
        json_array_foreach(json_object_get(p, "tenants"), ti, pt)
        {
            const char *name = json_string_value(json_object_get(pt, "name"));
            if (!name)
                continue;
            json_t *t = json_object_get(tenants, name);
            if (!t) {
                t = json_object();
                json_object_set_new(tenants, name, t);
            }
            const char *key;
            json_t *v;
            json_object_foreach(pt, key, v)
            {
                if (strcmp(key, "name") == 0 || !json_is_number(v))
                    continue;
                json_t *old = json_object_get(t, key);
                double sum = (old ? json_number_value(old) : 0) + json_number_value(v);
                json_object_set_new(t, key, json_is_integer(v) && (!old || json_is_integer(old))
                                                ? json_integer((json_int_t)sum)
                                                : json_real(sum));
            }
        }
    }
    json_object_set_new(doc, "tenants", tenants);
    return doc;
}

static long long jint(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return v ? (long long)json_number_value(v) : 0;
}

static double jnum(json_t *o, const char *k)
{
    json_t *v = json_object_get(o, k);
    return v ? json_number_value(v) : 0;
}

/* Operator suspensions (herald suspend) still in force. */
static json_t *collect_suspensions(redisContext *c, const struct config *cfg)
{
    json_t *arr = json_array();
    struct keys k;
    char key[KEYS_MAX];
    keys_init(&k, cfg->redis.prefix);
    keys_suspend(&k, key, sizeof key);
    redisReply *r = redisCommand(c, "HGETALL %s", key);
    int64_t now = clock_wall_ms();
    for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i + 1 < r->elements; i += 2) {
        struct susp_entry e;
        if (susp_parse(r->element[i]->str, r->element[i + 1]->str, &e) < 0) continue;
        if (e.until_ms && e.until_ms <= now) continue;
        json_t *o = json_object();
        json_object_set_new(o, "kind", json_string(susp_kind_name(e.kind)));
        json_object_set_new(o, "value", json_string(e.value));
        json_object_set_new(o, "until", json_integer(e.until_ms));
        json_object_set_new(o, "reason", json_string(e.reason));
        json_array_append_new(arr, o);
    }
    if (r) freeReplyObject(r);
    return arr;
}

static void print_suspensions(json_t *doc)
{
    json_t *s = json_object_get(doc, "suspensions");
    if (json_array_size(s) == 0) return;
    printf("suspended by an operator:\n");
    size_t i;
    json_t *o;
    json_array_foreach(s, i, o)
    {
        char until[48] = "until resumed", safe[400];
        long long u = (long long)json_integer_value(json_object_get(o, "until"));
        if (u) cli_format_ms(u, until, sizeof until);
        const char *reason = json_string_value(json_object_get(o, "reason"));
        printf("  %-9s %-32s %-26s %s\n", json_string_value(json_object_get(o, "kind")),
               json_string_value(json_object_get(o, "value")), until,
               cli_term_safe(safe, sizeof safe, reason ? reason : "", reason ? strlen(reason) : 0));
    }
}

static void print_tables(json_t *doc)
{
    print_suspensions(doc);
    json_t *procs = json_object_get(doc, "processes");
    json_t *q = json_object_get(doc, "queue");
    printf("processes: %zu running\n", json_array_size(procs));
    printf("queue: %lld in the stream (%lld not yet read, %lld being worked), %lld waiting for a "
           "retry or send_at\n",
           jint(q, "stream"), json_object_get(q, "unread") ? jint(q, "unread") : -1,
           jint(q, "pending"), jint(q, "retry"));
    if (json_object_get(doc, "backlog_truncated_at"))
        printf("(per-tenant backlog counted over the first %lld entries)\n",
               jint(doc, "backlog_truncated_at"));

    printf("\n%-20s %-26s %-14s %9s %6s %9s %9s %7s %7s %s\n", "process", "egress IP",
           "provider", "limit/min", "factor", "effective", "rate/min", "conns", "waiting",
           "suspended until / parked by reason");
    size_t pi;
    json_t *p;
    json_array_foreach(procs, pi, p)
    {
        const char *consumer = json_string_value(json_object_get(p, "consumer"));
        size_t i;
        json_t *pair;
        json_array_foreach(json_object_get(p, "pairs"), i, pair)
        {
            char lim[16] = "-", eff[16] = "-", susp[40] = "-", conns[24];
            if (jnum(pair, "limit_per_min") > 0) {
                snprintf(lim, sizeof lim, "%.0f", jnum(pair, "limit_per_min"));
                snprintf(eff, sizeof eff, "%.0f", jnum(pair, "effective_per_min"));
            }
            if (jint(pair, "suspended_until") > 0)
                cli_format_ms(jint(pair, "suspended_until"), susp, sizeof susp);
            snprintf(conns, sizeof conns, "%lld/%lld", jint(pair, "open_connections"),
                     jint(pair, "connections_limit"));
            /* Why messages on this path did not go at once (shape.h). */
            char why[160] = "";
            size_t wl = 0;
            const char *rk;
            json_t *rv;
            json_object_foreach(json_object_get(pair, "parked"), rk, rv)
            {
                int k = snprintf(why + wl, sizeof why - wl, "%s%s=%lld", wl ? " " : "", rk,
                                 (long long)json_integer_value(rv));
                if (k < 0 || (size_t)k >= sizeof why - wl)
                    break;
                wl += (size_t)k;
            }
            printf("%-20.20s %-26.26s %-14.14s %9s %6.2f %9s %9.1f %7s %7lld %s%s%s\n",
                   consumer ? consumer : "-",
                   json_string_value(json_object_get(pair, "ip")) ?: "-",
                   json_string_value(json_object_get(pair, "provider")) ?: "-", lim,
                   jnum(pair, "factor"), eff, jnum(pair, "rate_per_min"), conns,
                   jint(pair, "waiting"), susp, why[0] ? " " : "", why);
        }
    }

    bool warm_header = false;
    json_array_foreach(procs, pi, p)
    {
        size_t i;
        json_t *wu;
        json_array_foreach(json_object_get(p, "warmup"), i, wu)
        {
            if (!warm_header) {
                printf("\n%-20s %-26s %9s %10s %10s\n", "process", "warming up", "day",
                       "cap today", "sent today");
                warm_header = true;
            }
            char cap[24] = "none";
            if (json_is_integer(json_object_get(wu, "cap_today")))
                snprintf(cap, sizeof cap, "%lld", jint(wu, "cap_today"));
            char day[32];
            snprintf(day, sizeof day, "%lld/%lld", jint(wu, "day"), jint(wu, "days_in_schedule"));
            printf("%-20.20s %-26.26s %9s %10s %10lld\n",
                   json_string_value(json_object_get(p, "consumer")) ?: "-",
                   json_string_value(json_object_get(wu, "ip")) ?: "-", day, cap,
                   jint(wu, "sent_today"));
        }
    }

    printf("\n%-20s %8s %8s %9s %9s %10s %9s %8s %9s %8s\n", "tenant", "queued", "retry",
           "in flight", "rate/min", "delivered", "deferred", "bounced", "rejected", "other");
    const char *name;
    json_t *t;
    json_object_foreach(json_object_get(doc, "tenants"), name, t)
    {
        long long other = jint(t, "expired") + jint(t, "suppressed") + jint(t, "duplicate") +
                          jint(t, "cancelled");
        printf("%-20.20s %8lld %8lld %9lld %9.1f %10lld %9lld %8lld %9lld %8lld\n", name,
               jint(t, "queued"), jint(t, "waiting_retry"), jint(t, "in_flight"),
               jnum(t, "rate_per_min"), jint(t, "delivered"), jint(t, "deferred"),
               jint(t, "bounced"), jint(t, "rejected"), other);
    }
}

/* What came back after the 250 today (UTC), per configured tenant, from
 * the day counters the note scripts keep: late bounces, complaints (and
 * their share of the day's deliveries) and unsubscribes. */
static json_t *collect_after_250(redisContext *c, const struct config *cfg)
{
    struct keys K;
    keys_init(&K, cfg->redis.prefix);
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    json_t *out = json_object();
    for (size_t i = 0; i < cfg->n_tenants; i++) {
        char key[KEYS_MAX];
        keys_stats_day(&K, cfg->tenants[i].name, tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                       key, sizeof key);
        redisReply *r = redisCommand(c, "HGETALL %s", key);
        long long dl = 0, lb = 0, cp = 0, un = 0;
        for (size_t k = 0; r && r->type == REDIS_REPLY_ARRAY && k + 1 < r->elements; k += 2) {
            const char *f = r->element[k]->str, *bar = f ? strchr(f, '|') : NULL;
            if (!bar || !r->element[k + 1]->str)
                continue;
            long long n = atoll(r->element[k + 1]->str);
            size_t len = (size_t)(bar - f);
            if (len == 9 && strncmp(f, "delivered", 9) == 0) dl += n;
            else if (len == 12 && strncmp(f, "late_bounced", 12) == 0) lb += n;
            else if (len == 10 && strncmp(f, "complained", 10) == 0) cp += n;
            else if (len == 12 && strncmp(f, "unsubscribed", 12) == 0) un += n;
        }
        if (r)
            freeReplyObject(r);
        json_t *t = json_object();
        json_object_set_new(t, "delivered", json_integer(dl));
        json_object_set_new(t, "late_bounced", json_integer(lb));
        json_object_set_new(t, "complained", json_integer(cp));
        json_object_set_new(t, "unsubscribed", json_integer(un));
        json_object_set_new(t, "complaint_rate", json_real(dl ? (double)cp / (double)dl : 0));
        json_object_set_new(out, cfg->tenants[i].name, t);
    }
    return out;
}

static void print_after_250(json_t *doc)
{
    json_t *a = json_object_get(doc, "after_250_today");
    const char *name;
    json_t *t;
    bool any = false;
    json_object_foreach(a, name, t) any |= jint(t, "late_bounced") || jint(t, "complained") ||
                                           jint(t, "unsubscribed");
    if (!any)
        return;
    printf("\n%-20s %10s %12s %10s %10s %12s\n", "after the 250 today", "delivered",
           "late bounce", "complaints", "rate", "unsubscribed");
    json_object_foreach(a, name, t)
        printf("%-20.20s %10lld %12lld %10lld %9.3f%% %12lld\n", name, jint(t, "delivered"),
               jint(t, "late_bounced"), jint(t, "complained"), 100 * jnum(t, "complaint_rate"),
               jint(t, "unsubscribed"));
}

int cli_status(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"json", no_argument, NULL, 'j'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = NULL;
    bool as_json = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': path = optarg; break;
        case 'j': as_json = true; break;
        case 'h': fputs(status_usage, stdout); return 0;
        default: fputs(status_usage, stderr); return 2;
        }
    }
    if (optind < argc) {
        fputs(status_usage, stderr);
        return 2;
    }
    struct config *cfg = NULL;
    redisContext *c = NULL;
    int rc = cli_open(path, &cfg, &c);
    if (rc)
        return rc;
    json_t *doc = collect(c, cfg);
    json_object_set_new(doc, "suspensions", collect_suspensions(c, cfg));
    json_object_set_new(doc, "after_250_today", collect_after_250(c, cfg));
    if (as_json) {
        char *s = json_dumps(doc, JSON_INDENT(2) | JSON_SORT_KEYS);
        if (s) {
            puts(s);
            free(s);
        }
    } else {
        print_tables(doc);
        print_after_250(doc);
    }
    json_decref(doc);
    redisFree(c);
    config_free(cfg);
    return 0;
}
