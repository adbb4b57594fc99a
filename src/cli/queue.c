/* herald queue: what is waiting, across every process, read from Redis
 * (the mailq/postsuper of herald). Jobs wait in two places: the retry set
 * (deferred, scheduled, rate-parked, held: a hash per job, scored by when
 * it is due) and the job stream (not read yet, or read and in flight).
 * Actions work on the retry set, where a job is not being worked on:
 * retry (due now), hold (never due until released), release, bounce (a
 * terminal note by the operator), cancel (the usual control entry). */
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "herald/core.h"
#include "herald/engine.h"
#include "herald/keys.h"

static const char queue_usage[] =
    "usage: herald queue list    [-c FILE] [FILTERS] [--limit N] [--json]\n"
    "       herald queue show    [-c FILE] --tenant T --id ID\n"
    "       herald queue retry   [-c FILE] FILTERS | --all\n"
    "       herald queue hold    [-c FILE] FILTERS | --all  [--reason TEXT]\n"
    "       herald queue release [-c FILE] FILTERS | --all\n"
    "       herald queue bounce  [-c FILE] FILTERS | --all  --reason TEXT\n"
    "       herald queue cancel  [-c FILE] FILTERS | --all\n"
    "\n"
    "FILTERS: --tenant T, --domain D (recipient domain), --provider P and\n"
    "--site S (where the job's last attempt went: only jobs that were routed),\n"
    "--state S (scheduled, retrying, parked, held; list also unread and\n"
    "inflight), --older-than DUR (enqueued longer ago), --id ID.\n"
    "\n"
    "retry brings deferred and rate-parked jobs forward now (after an outage\n"
    "nobody should wait for the next step of the schedule); scheduled jobs keep\n"
    "their send_at. hold keeps jobs out of delivery until release. bounce ends\n"
    "them with a `bounced` note (category operator, your reason). cancel adds a\n"
    "cancel control entry per job (a `cancelled` note each). Actions need a\n"
    "filter or --all, and touch only jobs in the retry set: a job in the stream\n"
    "is being read or delivered right now.\n";

/* Far beyond any real due time: the mover never takes it. */
#define HELD_SCORE 253402300799000.0

struct filter {
    const char *tenant, *domain, *state, *id, *provider, *site;
    int64_t older_than_ms; /* 0: any age */
    bool all;
};

struct qjob {
    char key[KEYS_MAX]; /* the retry hash, or the stream entry id */
    const char *state;
    double due_ms;
    redisReply *fields; /* field/value array (owned by the reply it came in) */
};

static const char *fget(const redisReply *f, const char *name)
{
    for (size_t i = 0; f && f->type == REDIS_REPLY_ARRAY && i + 1 < f->elements; i += 2)
        if (f->element[i]->type == REDIS_REPLY_STRING && strcmp(f->element[i]->str, name) == 0 &&
            f->element[i + 1]->type == REDIS_REPLY_STRING)
            return f->element[i + 1]->str;
    return NULL;
}

/* A value for the terminal: control bytes shown escaped (cli_term_safe). */
static const char *term_safe(const char *s, char *buf, size_t cap)
{
    return cli_term_safe(buf, cap, s, strlen(s));
}

static const char *retry_state(const redisReply *f)
{
    const char *held = fget(f, "held"), *thr = fget(f, "throttled"), *att = fget(f, "attempt");
    if (held && strcmp(held, "1") == 0) return "held";
    if (thr && strcmp(thr, "1") == 0) return "parked";
    if (!att || strcmp(att, "0") == 0) return "scheduled";
    return "retrying";
}

static bool matches(const struct filter *fl, const char *state, const redisReply *f, int64_t now)
{
    const char *tenant = fget(f, "tenant"), *to = fget(f, "to"), *id = fget(f, "id");
    if (fl->tenant && (!tenant || strcmp(tenant, fl->tenant) != 0)) return false;
    if (fl->id && (!id || strcmp(id, fl->id) != 0)) return false;
    if (fl->state && strcmp(state, fl->state) != 0) return false;
    /* Known once a job has been routed: its last attempt's path. */
    const char *prov = fget(f, "via_provider"), *site = fget(f, "via_site");
    if (fl->provider && (!prov || strcmp(prov, fl->provider) != 0)) return false;
    if (fl->site && (!site || strcasecmp(site, fl->site) != 0)) return false;
    if (fl->domain) {
        const char *at = to ? strrchr(to, '@') : NULL;
        if (!at || strcasecmp(at + 1, fl->domain) != 0) return false;
    }
    if (fl->older_than_ms > 0) {
        const char *enq = fget(f, "enqueued_at");
        long long e = enq ? atoll(enq) : 0;
        if (e <= 0 || now - e < fl->older_than_ms) return false;
    }
    return true;
}

static void print_job(const struct qjob *q, bool json, int64_t now)
{
    const redisReply *f = q->fields;
    const char *id = fget(f, "id"), *tenant = fget(f, "tenant"), *to = fget(f, "to");
    const char *att = fget(f, "attempt");
    if (json) {
        json_t *o = json_object();
        json_object_set_new(o, "state", json_string(q->state));
        json_object_set_new(o, "key", json_string(q->key));
        if (q->due_ms > 0 && q->due_ms < HELD_SCORE)
            json_object_set_new(o, "due_at", json_integer((json_int_t)q->due_ms));
        for (size_t i = 0; f && i + 1 < f->elements; i += 2)
            if (strncmp(f->element[i]->str, "var.", 4) != 0 &&
                strcmp(f->element[i]->str, "text") != 0 && strcmp(f->element[i]->str, "html") != 0 &&
                strcmp(f->element[i]->str, "raw") != 0)
                json_object_set_new(o, f->element[i]->str, json_string(f->element[i + 1]->str));
        char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (s) puts(s);
        free(s);
        json_decref(o);
        return;
    }
    char due[48] = "-";
    if (q->due_ms >= HELD_SCORE)
        snprintf(due, sizeof due, "held");
    else if (q->due_ms > 0)
        snprintf(due, sizeof due, "%s%llds", q->due_ms <= (double)now ? "now " : "in ",
                 q->due_ms <= (double)now ? 0LL : (long long)((q->due_ms - (double)now) / 1000));
    char ct[256];
    printf("%-10s %-16s %-24s %-32s attempt %-3s due %s\n", q->state,
           term_safe(tenant ? tenant : "-", ct, sizeof ct), id ? id : "-", to ? to : "-",
           att ? att : "0", due);
}

/* The retry set's members that match, oldest due first. Each qjob's fields
 * point into *replies (freed by the caller). */
static int scan_retry(redisContext *c, const struct keys *K,
                      const struct filter *fl, size_t limit, struct qjob **out, size_t *n_out,
                      redisReply **replies, size_t *n_replies)
{
    int64_t now = clock_wall_ms();
    size_t cap = 0, n = 0;
    struct qjob *qs = NULL;
    long long start = 0;
    enum { CHUNK = 500 };
    for (;;) {
        redisReply *r = redisCommand(c, "ZRANGE %s %lld %lld WITHSCORES", K->retry, start,
                                     start + CHUNK - 1);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "herald queue: redis: %s\n", r ? r->str : c->errstr);
            if (r) freeReplyObject(r);
            free(qs);
            return -1;
        }
        size_t got = r->elements / 2;
        for (size_t i = 0; i < got; i++)
            redisAppendCommand(c, "HGETALL %s", r->element[2 * i]->str);
        for (size_t i = 0; i < got; i++) {
            redisReply *h = NULL;
            if (redisGetReply(c, (void **)&h) != REDIS_OK || !h) break;
            const char *state = retry_state(h);
            if (h->type != REDIS_REPLY_ARRAY || h->elements == 0 || !matches(fl, state, h, now) ||
                n >= limit) {
                freeReplyObject(h);
                continue;
            }
            if (n == cap) {
                cap = cap ? cap * 2 : 64;
                struct qjob *nq = realloc(qs, cap * sizeof *nq);
                if (!nq) {
                    freeReplyObject(h);
                    break;
                }
                qs = nq;
            }
            struct qjob *q = &qs[n++];
            snprintf(q->key, sizeof q->key, "%s", r->element[2 * i]->str);
            q->state = state;
            q->due_ms = atof(r->element[2 * i + 1]->str);
            q->fields = h;
            replies[(*n_replies)++] = h; /* the caller frees them */
        }
        freeReplyObject(r);
        if (got < CHUNK || n >= limit) break;
        start += CHUNK;
    }
    *out = qs;
    *n_out = n;
    return 0;
}

/* Stream entries: unread (after the group's last delivered id) and in
 * flight (the group's PEL), for list only. */
static void list_stream(redisContext *c, const struct config *cfg, const struct filter *fl,
                        size_t limit, bool json, size_t *shown)
{
    int64_t now = clock_wall_ms();
    redisReply *g = redisCommand(c, "XINFO GROUPS %s", cfg->redis.jobs);
    const char *last = "0-0";
    for (size_t i = 0; g && g->type == REDIS_REPLY_ARRAY && i < g->elements; i++) {
        const char *name = fget(g->element[i], "name");
        if (name && strcmp(name, cfg->redis.group) == 0) {
            const char *l = fget(g->element[i], "last-delivered-id");
            if (l) last = l;
        }
    }
    char after[80];
    snprintf(after, sizeof after, "(%s", last);
    if (!fl->state || strcmp(fl->state, "unread") == 0) {
        redisReply *r = redisCommand(c, "XRANGE %s %s + COUNT %zu", cfg->redis.jobs, after,
                                     limit);
        for (size_t i = 0; r && r->type == REDIS_REPLY_ARRAY && i < r->elements && *shown < limit;
             i++) {
            struct qjob q = {.state = "unread", .fields = r->element[i]->element[1]};
            snprintf(q.key, sizeof q.key, "%s", r->element[i]->element[0]->str);
            if (matches(fl, "unread", q.fields, now)) {
                print_job(&q, json, now);
                (*shown)++;
            }
        }
        if (r) freeReplyObject(r);
    }
    if (!fl->state || strcmp(fl->state, "inflight") == 0) {
        redisReply *p = redisCommand(c, "XPENDING %s %s - + %zu", cfg->redis.jobs, cfg->redis.group,
                                     limit);
        for (size_t i = 0; p && p->type == REDIS_REPLY_ARRAY && i < p->elements && *shown < limit;
             i++) {
            const char *eid = p->element[i]->element[0]->str;
            redisReply *e = redisCommand(c, "XRANGE %s %s %s", cfg->redis.jobs, eid, eid);
            if (e && e->type == REDIS_REPLY_ARRAY && e->elements == 1) {
                struct qjob q = {.state = "inflight", .fields = e->element[0]->element[1]};
                snprintf(q.key, sizeof q.key, "%s", eid);
                if (matches(fl, "inflight", q.fields, now)) {
                    print_job(&q, json, now);
                    (*shown)++;
                }
            }
            if (e) freeReplyObject(e);
        }
        if (p) freeReplyObject(p);
    }
    if (g) freeReplyObject(g);
}

static int act(redisContext *c, const struct config *cfg, const struct keys *K,
               const char *action, const struct qjob *q, const char *reason)
{
    const char *tenant = fget(q->fields, "tenant"), *id = fget(q->fields, "id");
    char now[24];
    snprintf(now, sizeof now, "%" PRId64, clock_wall_ms());
    redisReply *r = NULL;
    if (strcmp(action, "retry") == 0) {
        if (strcmp(q->state, "retrying") != 0 && strcmp(q->state, "parked") != 0) return 0;
        r = redisCommand(c, "ZADD %s XX CH %s %s", K->retry, now, q->key);
    } else if (strcmp(action, "hold") == 0) {
        if (strcmp(q->state, "held") == 0) return 0;
        r = redisCommand(c, "ZADD %s XX CH %.0f %s", K->retry, HELD_SCORE, q->key);
        if (r && r->type == REDIS_REPLY_INTEGER && r->integer == 1) {
            freeReplyObject(r);
            r = redisCommand(c, "HSET %s held 1 held_reason %s", q->key, reason ? reason : "");
            if (r) freeReplyObject(r);
            return 1;
        }
    } else if (strcmp(action, "release") == 0) {
        if (strcmp(q->state, "held") != 0) return 0;
        r = redisCommand(c, "HDEL %s held held_reason", q->key);
        if (r) freeReplyObject(r);
        r = redisCommand(c, "ZADD %s XX CH %s %s", K->retry, now, q->key);
    } else if (strcmp(action, "bounce") == 0) {
        char stkey[KEYS_MAX], window[24];
        keys_state(K, tenant, id, stkey, sizeof stkey);
        snprintf(window, sizeof window, "%" PRId64, cfg->engine.idempotency_window_ms);
        r = redisCommand(c, "EVAL %s 5 %s %s %s %s %s %s %s %s", notes_script_operator_bounce,
                         K->retry, q->key, cfg->redis.events, stkey, K->stats, now, reason,
                         window);
    } else if (strcmp(action, "cancel") == 0) {
        if (!tenant || !id) return 0;
        r = redisCommand(c, "XADD %s * tenant %s cancel %s", cfg->redis.jobs, tenant, id);
        int ok = r && r->type == REDIS_REPLY_STRING;
        if (r) freeReplyObject(r);
        return ok ? 1 : -1;
    }
    if (!r || r->type == REDIS_REPLY_ERROR) {
        fprintf(stderr, "herald queue %s %s: redis: %s\n", action, q->key, r ? r->str : c->errstr);
        if (r) freeReplyObject(r);
        return -1;
    }
    int done = r->type == REDIS_REPLY_INTEGER && r->integer > 0;
    freeReplyObject(r);
    return done; /* 0: the mover took it meanwhile, or it was not in that state */
}

static int show(redisContext *c, const struct config *cfg, const struct keys *K,
                const char *tenant, const char *id)
{
    char stkey[KEYS_MAX];
    keys_state(K, tenant, id, stkey, sizeof stkey);
    redisReply *st = redisCommand(c, "GET %s", stkey);
    const char *s = st && st->type == REDIS_REPLY_STRING ? st->str : NULL;
    printf("job        %s (tenant %s)\nstate      %s\n", id, tenant, s ? s : "unknown (never seen, "
                                                                            "or older than the "
                                                                            "idempotency window)");
    if (s && strncmp(s, "retry:", 6) == 0) {
        redisReply *sc = redisCommand(c, "ZSCORE %s %s", K->retry, s + 6);
        if (sc && sc->type == REDIS_REPLY_STRING) {
            double due = atof(sc->str);
            char when[40];
            if (due >= HELD_SCORE)
                printf("next       held by an operator\n");
            else {
                cli_format_ms((long long)due, when, sizeof when);
                printf("next       attempt at %s\n", when);
            }
        }
        if (sc) freeReplyObject(sc);
        redisReply *h = redisCommand(c, "HGETALL %s", s + 6);
        for (size_t i = 0; h && h->type == REDIS_REPLY_ARRAY && i + 1 < h->elements; i += 2) {
            char v[300];
            printf("  %-16s %s\n", h->element[i]->str,
                   term_safe(h->element[i + 1]->str, v, sizeof v));
        }
        if (h) freeReplyObject(h);
    }
    if (st) freeReplyObject(st);
    /* Its story: the notes of this job, oldest first (the latest 20,000
     * notes are looked at). */
    redisReply *ev = redisCommand(c, "XREVRANGE %s + - COUNT 20000", cfg->redis.events);
    printf("notes:\n");
    size_t shown = 0;
    for (size_t i = ev && ev->type == REDIS_REPLY_ARRAY ? ev->elements : 0; i-- > 0;) {
        redisReply *f = ev->element[i]->element[1];
        const char *j = fget(f, "job"), *t = fget(f, "tenant");
        if (!j || !t || strcmp(j, id) != 0 || strcmp(t, tenant) != 0) continue;
        const char *at = fget(f, "at");
        char when[40], rep[400];
        cli_format_ms(at ? atoll(at) : 0, when, sizeof when);
        const char *reply = fget(f, "reply") ? fget(f, "reply") : fget(f, "reason");
        printf("  %s %-10s attempt %-3s %s %s\n", when, fget(f, "event"),
               fget(f, "attempt") ? fget(f, "attempt") : "-",
               fget(f, "mx") ? fget(f, "mx") : "",
               term_safe(reply ? reply : "", rep, sizeof rep));
        shown++;
    }
    if (!shown) printf("  (none)\n");
    if (ev) freeReplyObject(ev);
    return 0;
}

int cli_queue(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"tenant", required_argument, NULL, 't'},
        {"domain", required_argument, NULL, 'd'}, {"state", required_argument, NULL, 's'},
        {"older-than", required_argument, NULL, 'o'}, {"id", required_argument, NULL, 'i'},
        {"limit", required_argument, NULL, 'n'}, {"reason", required_argument, NULL, 'r'},
        {"all", no_argument, NULL, 'a'}, {"json", no_argument, NULL, 'j'},
        {"provider", required_argument, NULL, 'P'}, {"site", required_argument, NULL, 'S'},
        {"help", no_argument, NULL, 'h'}, {NULL, 0, NULL, 0}};
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(queue_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    const char *action = argv[1];
    static const char *const actions[] = {"list", "show", "retry", "hold", "release", "bounce",
                                          "cancel"};
    bool known = false;
    for (size_t i = 0; i < HERALD_ARRAY_LEN(actions); i++)
        known |= strcmp(action, actions[i]) == 0;
    if (!known) {
        fprintf(stderr, "herald queue: unknown action '%s'\n\n%s", action, queue_usage);
        return 2;
    }
    struct filter fl = {0};
    const char *path = NULL, *reason = NULL;
    size_t limit = 1000;
    bool json = false;
    int ch;
    optind = 2;
    while ((ch = getopt_long(argc, argv, "c:t:d:s:o:i:n:r:ajhP:S:", opts, NULL)) != -1) {
        switch (ch) {
        case 'P': fl.provider = optarg; break;
        case 'S': fl.site = optarg; break;
        case 'c': path = optarg; break;
        case 't': fl.tenant = optarg; break;
        case 'd': fl.domain = optarg; break;
        case 's': fl.state = optarg; break;
        case 'i': fl.id = optarg; break;
        case 'r': reason = optarg; break;
        case 'a': fl.all = true; break;
        case 'j': json = true; break;
        case 'n': limit = (size_t)strtoul(optarg, NULL, 10); break;
        case 'o':
            if (config_parse_duration(optarg, &fl.older_than_ms) < 0) {
                fprintf(stderr, "herald queue: --older-than wants a duration (30m, 2h, 1d)\n");
                return 2;
            }
            break;
        case 'h': fputs(queue_usage, stdout); return 0;
        default: fputs(queue_usage, stderr); return 2;
        }
    }
    static const char *const states[] = {"scheduled", "retrying", "parked", "held", "unread",
                                         "inflight"};
    bool state_ok = !fl.state;
    for (size_t i = 0; fl.state && i < HERALD_ARRAY_LEN(states); i++)
        state_ok |= strcmp(fl.state, states[i]) == 0;
    bool acting = strcmp(action, "list") != 0 && strcmp(action, "show") != 0;
    if (!state_ok || optind < argc || limit == 0 ||
        (strcmp(action, "show") == 0 && (!fl.tenant || !fl.id)) ||
        (acting && !fl.all && !fl.tenant && !fl.domain && !fl.state && !fl.id && !fl.older_than_ms &&
         !fl.provider && !fl.site) ||
        (strcmp(action, "bounce") == 0 && !reason)) {
        fputs(queue_usage, stderr);
        return 2;
    }
    struct config *cfg = NULL;
    redisContext *c = NULL;
    int rc = cli_open(path, &cfg, &c);
    if (rc) return rc;
    struct keys K;
    keys_init(&K, cfg->redis.prefix);
    if (strcmp(action, "show") == 0) {
        rc = show(c, cfg, &K, fl.tenant, fl.id);
    } else {
        /* An action takes every match, up to a bound that keeps one run's
         * memory in check (run it again for more). */
        if (acting) limit = 100000;
        redisReply **replies = calloc(limit, sizeof *replies);
        size_t n_replies = 0, n = 0;
        struct qjob *qs = NULL;
        if (!replies || scan_retry(c, &K, &fl, limit, &qs, &n, replies, &n_replies) < 0) {
            rc = 1;
        } else if (!acting) {
            int64_t now = clock_wall_ms();
            for (size_t i = 0; i < n; i++)
                print_job(&qs[i], json, now);
            size_t shown = n;
            list_stream(c, cfg, &fl, limit, json, &shown);
            if (!json) fprintf(stderr, "%zu job(s)\n", shown);
        } else {
            size_t done = 0, failed = 0;
            for (size_t i = 0; i < n; i++) {
                int r = act(c, cfg, &K, action, &qs[i], reason);
                if (r > 0) done++;
                if (r < 0) failed++;
            }
            printf("%s: %zu job(s)%s\n", action, done,
                   n > done + failed ? " (the others were not in a state it applies to, or "
                                       "moved meanwhile)"
                                     : "");
            if (failed) rc = 1;
        }
        for (size_t i = 0; i < n_replies; i++)
            freeReplyObject(replies[i]);
        free(replies);
        free(qs);
    }
    redisFree(c);
    config_free(cfg);
    return rc;
}
