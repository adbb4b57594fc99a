/* herald events: read case notes back, filtered, as a table or JSON Lines. */
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "herald/core.h"
#include "msg/msg.h"

static const char events_usage[] =
    "usage: herald events -c FILE [--follow] [--tenant T] [--to ADDR] [--job ID]\n"
    "                     [--event NAME] [--since WHEN] [--until WHEN] [--json] [--count N]\n"
    "\n"
    "Prints case notes oldest first. --follow keeps waiting for new ones.\n"
    "--json writes one JSON object per note (all fields, plus 'id').\n"
    "With --to (a recipient's history, e.g. for a support ticket) each note is\n"
    "a block: date and time, event, attempt, recipient and its domain, the\n"
    "server (MX, its IP, our IP, TLS) and the remote reply.\n"
    "WHEN: 2026-11-22, 2026-11-22T09:00:00Z (RFC 3339), unix ms, or an age\n"
    "such as 30m, 12h, 7d (that long ago). Only that part of the stream is read.\n";

struct filter {
    const char *tenant, *to, *job, *event;
    bool json, history;
};

static const char *field(redisReply *fields, const char *name)
{
    for (size_t i = 0; i + 1 < fields->elements; i += 2)
        if (fields->element[i]->type == REDIS_REPLY_STRING &&
            strcmp(fields->element[i]->str, name) == 0)
            return fields->element[i + 1]->str;
    return NULL;
}

static bool match(redisReply *fields, const char *name, const char *want)
{
    if (!want)
        return true;
    const char *v = field(fields, name);
    return v && strcasecmp(v, want) == 0;
}

/* A note field as it may go to a terminal (cli_term_safe), copied into a,
 * or NULL when absent. Notes hold remote servers' replies and producers' job
 * ids: raw, an ESC in them would drive the operator's terminal. */
static const char *shown(redisReply *fields, const char *name, struct arena *a)
{
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        redisReply *k = fields->element[i], *v = fields->element[i + 1];
        if (k->type != REDIS_REPLY_STRING || strcmp(k->str, name) != 0) continue;
        if (v->type != REDIS_REPLY_STRING) return NULL;
        size_t cap = v->len * 4 + 4; /* \xHH per byte, never truncated */
        char *out = arena_alloc(a, cap);
        return out ? cli_term_safe(out, cap, v->str, v->len) : "?";
    }
    return NULL;
}

static void print_history(redisReply *fields, const char *when, struct arena *a)
{
    const char *to = shown(fields, "to", a);
    const char *at_sign = to ? strrchr(to, '@') : NULL;
    printf("%s  %-10s attempt %s\n", when, shown(fields, "event", a) ?: "?",
           shown(fields, "attempt", a) ?: "-");
    printf("  recipient  %s (domain %s)  tenant %s  job %s", to ? to : "-",
           at_sign ? at_sign + 1 : "-", shown(fields, "tenant", a) ?: "-",
           shown(fields, "job", a) ?: "-");
    const char *ref = shown(fields, "ref", a);
    if (ref) printf("  ref %s", ref);
    putchar('\n');
    const char *mx = shown(fields, "mx", a), *remote_ip = shown(fields, "remote_ip", a);
    if (mx || remote_ip) {
        printf("  server     %s [%s] from %s, TLS %s", mx ? mx : "-", remote_ip ? remote_ip : "-",
               shown(fields, "local_ip", a) ?: "-", shown(fields, "tls", a) ?: "-");
        const char *tls_note = shown(fields, "tls_note", a);
        if (tls_note) printf(" (%s)", tls_note);
        putchar('\n');
    }
    const char *code = shown(fields, "code", a), *reply = shown(fields, "reply", a);
    if (reply) printf("  reply      %s%s%s\n", code ? code : "", code ? " " : "", reply);
    const char *reason = shown(fields, "reason", a), *fld = shown(fields, "field", a);
    if (reason) printf("  reason     %s%s%s\n", fld ? fld : "", fld ? ": " : "", reason);
    const char *category = shown(fields, "category", a);
    if (category) printf("  category   %s\n", category);
    const char *next = field(fields, "next_attempt_at");
    if (next) {
        char nt[40];
        cli_format_ms(strtoll(next, NULL, 10), nt, sizeof nt);
        printf("  next try   %s\n", nt);
    }
    const char *message_id = shown(fields, "message_id", a);
    if (message_id) printf("  message-id <%s>\n", message_id);
    putchar('\n');
}

/* A JSON string of v: jansson refuses to dump invalid UTF-8 (the whole
 * note would vanish), so each byte that is not part of valid UTF-8 becomes
 * U+FFFD. */
static json_t *json_value(const redisReply *v, struct hbuf *tmp)
{
    const unsigned char *u = (const unsigned char *)v->str;
    hbuf_reset(tmp);
    for (size_t i = 0; i < v->len;) {
        size_t k = msg_utf8_seq_len(u + i, v->len - i);
        int rc = k ? hbuf_append(tmp, u + i, k) : hbuf_append(tmp, "\xef\xbf\xbd", 3);
        if (rc < 0) return NULL;
        i += k ? k : 1;
    }
    return json_stringn_nocheck(tmp->data ? tmp->data : "", tmp->len);
}

static void print_json(const char *id, redisReply *fields)
{
    json_t *o = json_object();
    struct hbuf tmp;
    hbuf_init(&tmp);
    json_object_set_new(o, "id", json_string(id));
    for (size_t i = 0; i + 1 < fields->elements; i += 2) {
        redisReply *k = fields->element[i], *v = fields->element[i + 1];
        if (k->type == REDIS_REPLY_STRING && v->type == REDIS_REPLY_STRING)
            json_object_set_new(o, k->str, json_value(v, &tmp));
    }
    hbuf_free(&tmp);
    /* JSON_ENSURE_ASCII writes every control byte as \u00XX but DEL; the
     * output is ASCII, so a raw DEL can only be inside a string. */
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    for (char *p = s; p && *p; p++) {
        if (*p == 0x7f)
            fputs("\\u007f", stdout);
        else
            putchar(*p);
    }
    if (s) putchar('\n');
    free(s);
    json_decref(o);
}

static void print_row(redisReply *fields, const char *when, struct arena *a)
{
    const char *code = shown(fields, "code", a);
    const char *reply = shown(fields, "reply", a);
    const char *reason = shown(fields, "reason", a);
    const char *fld = shown(fields, "field", a);
    const char *mx = shown(fields, "mx", a);
    char detail[400];
    if (reply)
        snprintf(detail, sizeof detail, "%s%s%s", code ? code : "", code ? " " : "", reply);
    else if (reason)
        snprintf(detail, sizeof detail, "%s%s%s", fld ? fld : "", fld ? ": " : "", reason);
    else
        snprintf(detail, sizeof detail, "-");
    printf("%-24s %-10s %-16s %-20s %-32s %-4s %-20s %s\n", when, shown(fields, "event", a) ?: "?",
           shown(fields, "tenant", a) ?: "-", shown(fields, "job", a) ?: "-",
           shown(fields, "to", a) ?: "-", shown(fields, "attempt", a) ?: "-", mx ? mx : "-",
           detail);
}

static void print_note(const char *id, redisReply *fields, const struct filter *flt)
{
    if (!match(fields, "tenant", flt->tenant) || !match(fields, "to", flt->to) ||
        !match(fields, "job", flt->job) || !match(fields, "event", flt->event))
        return;
    if (flt->json) {
        print_json(id, fields);
        return;
    }
    const char *at = field(fields, "at");
    char when[40] = "-";
    if (at) cli_format_ms(strtoll(at, NULL, 10), when, sizeof when);
    struct arena a;
    arena_init(&a);
    if (flt->history)
        print_history(fields, when, &a);
    else
        print_row(fields, when, &a);
    arena_free(&a);
}

static int print_range(redisReply *r, const struct filter *flt, char *last, size_t lastlen)
{
    int n = 0;
    for (size_t i = 0; i < r->elements; i++) {
        redisReply *e = r->element[i];
        if (e->type != REDIS_REPLY_ARRAY || e->elements < 2 ||
            e->element[1]->type != REDIS_REPLY_ARRAY)
            continue;
        snprintf(last, lastlen, "%s", e->element[0]->str);
        print_note(e->element[0]->str, e->element[1], flt);
        n++;
    }
    return n;
}

/* A date, an RFC 3339 time, unix ms, or an age ("90m", "12h", "7d"). */
static int parse_when(const char *s, int64_t *out)
{
    size_t n = strlen(s);
    if (n >= 2 && strchr("smhd", s[n - 1]) && strspn(s, "0123456789") == n - 1) {
        int64_t ms = 0;
        if (config_parse_duration(s, &ms) < 0)
            return -1;
        *out = clock_wall_ms() - ms;
        return 0;
    }
    if (n == 10 && s[4] == '-' && s[7] == '-') {
        char full[32];
        snprintf(full, sizeof full, "%sT00:00:00Z", s);
        return msg_parse_time_ms(full, strlen(full), out) < 0 ? -1 : 0;
    }
    return msg_parse_time_ms(s, n, out) < 0 ? -1 : 0;
}

int cli_events(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"follow", no_argument, NULL, 'f'},
        {"tenant", required_argument, NULL, 't'}, {"to", required_argument, NULL, 'T'},
        {"job", required_argument, NULL, 'j'},    {"event", required_argument, NULL, 'e'},
        {"json", no_argument, NULL, 'J'},         {"count", required_argument, NULL, 'n'},
        {"since", required_argument, NULL, 'S'},  {"until", required_argument, NULL, 'U'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *path = NULL;
    bool follow = false;
    long max = -1;
    struct filter flt = {0};
    int64_t since = -1, until = -1;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:fh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': path = optarg; break;
        case 'f': follow = true; break;
        case 't': flt.tenant = optarg; break;
        case 'T': flt.to = optarg; break;
        case 'j': flt.job = optarg; break;
        case 'e': flt.event = optarg; break;
        case 'J': flt.json = true; break;
        case 'S':
        case 'U':
            if (parse_when(optarg, ch == 'S' ? &since : &until) < 0) {
                fprintf(stderr, "herald events: --%s: cannot read '%s' as a time (2026-11-22, "
                                "RFC 3339, unix ms, or an age like 2h)\n",
                        ch == 'S' ? "since" : "until", optarg);
                return 2;
            }
            break;
        case 'n': {
            char *end;
            max = strtol(optarg, &end, 10);
            if (*end || max < 0) {
                fprintf(stderr, "herald events: --count wants a number\n");
                return 2;
            }
            break;
        }
        case 'h': fputs(events_usage, stdout); return 0;
        default: fputs(events_usage, stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "herald events: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    struct config *cfg = NULL;
    redisContext *c = NULL;
    int rc = cli_open(path, &cfg, &c);
    if (rc)
        return rc;
    signal(SIGPIPE, SIG_DFL);
    flt.history = flt.to && !flt.json;
    if (!flt.json && !flt.history)
        printf("%-24s %-10s %-16s %-20s %-32s %-4s %-20s %s\n", "at", "event", "tenant", "job",
               "to", "try", "mx", "detail");
    /* Stream ids start with the note's time in ms: a time window is an id
     * range, so only that part of the stream is read. */
    char last[64] = "-", end[32] = "+", start[32] = "-";
    if (since >= 0)
        snprintf(start, sizeof start, "%lld", (long long)since);
    if (until >= 0)
        snprintf(end, sizeof end, "%lld", (long long)until);
    bool first = true;
    long shown = 0;
    rc = 0;
    for (;;) {
        redisReply *r;
        if (first)
            r = redisCommand(c, "XRANGE %s %s %s COUNT 1000", cfg->redis.events, start, end);
        else
            r = redisCommand(c, "XRANGE %s (%s %s COUNT 1000", cfg->redis.events, last, end);
        first = false;
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "herald events: %s\n", r && r->str ? r->str : c->errstr);
            rc = 1;
            if (r)
                freeReplyObject(r);
            break;
        }
        int n = print_range(r, &flt, last, sizeof last);
        freeReplyObject(r);
        shown += n;
        if (n == 0 || (max >= 0 && shown >= max))
            break;
    }
    while (follow && rc == 0) {
        fflush(stdout);
        redisReply *r = redisCommand(c, "XREAD COUNT 1000 BLOCK 5000 STREAMS %s %s",
                                     cfg->redis.events, strcmp(last, "-") == 0 ? "0" : last);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "herald events: %s\n", r && r->str ? r->str : c->errstr);
            rc = 1;
            if (r)
                freeReplyObject(r);
            break;
        }
        if (r->type == REDIS_REPLY_ARRAY)
            for (size_t s = 0; s < r->elements; s++)
                if (r->element[s]->elements >= 2)
                    print_range(r->element[s]->element[1], &flt, last, sizeof last);
        freeReplyObject(r);
    }
    redisFree(c);
    config_free(cfg);
    return rc;
}
