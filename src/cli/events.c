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

static void print_history(redisReply *fields, const char *when)
{
    const char *to = field(fields, "to");
    const char *at_sign = to ? strrchr(to, '@') : NULL;
    printf("%s  %-10s attempt %s\n", when, field(fields, "event") ?: "?",
           field(fields, "attempt") ?: "-");
    printf("  recipient  %s (domain %s)  tenant %s  job %s", to ? to : "-",
           at_sign ? at_sign + 1 : "-", field(fields, "tenant") ?: "-", field(fields, "job") ?: "-");
    if (field(fields, "ref"))
        printf("  ref %s", field(fields, "ref"));
    putchar('\n');
    const char *mx = field(fields, "mx");
    if (mx || field(fields, "remote_ip")) {
        printf("  server     %s [%s] from %s, TLS %s", mx ? mx : "-",
               field(fields, "remote_ip") ?: "-", field(fields, "local_ip") ?: "-",
               field(fields, "tls") ?: "-");
        if (field(fields, "tls_note"))
            printf(" (%s)", field(fields, "tls_note"));
        putchar('\n');
    }
    const char *code = field(fields, "code"), *reply = field(fields, "reply");
    if (reply) {
        char q[700];
        printf("  reply      %s%s%s\n", code ? code : "", code ? " " : "",
               log_quote(q, sizeof q, reply, strlen(reply)));
    }
    const char *reason = field(fields, "reason");
    if (reason)
        printf("  reason     %s%s%s\n", field(fields, "field") ?: "",
               field(fields, "field") ? ": " : "", reason);
    if (field(fields, "category"))
        printf("  category   %s\n", field(fields, "category"));
    const char *next = field(fields, "next_attempt_at");
    if (next) {
        char nt[40];
        cli_format_ms(strtoll(next, NULL, 10), nt, sizeof nt);
        printf("  next try   %s\n", nt);
    }
    if (field(fields, "message_id"))
        printf("  message-id <%s>\n", field(fields, "message_id"));
    putchar('\n');
}

static void print_note(const char *id, redisReply *fields, const struct filter *flt)
{
    if (!match(fields, "tenant", flt->tenant) || !match(fields, "to", flt->to) ||
        !match(fields, "job", flt->job) || !match(fields, "event", flt->event))
        return;
    if (flt->json) {
        json_t *o = json_object();
        json_object_set_new(o, "id", json_string(id));
        for (size_t i = 0; i + 1 < fields->elements; i += 2) {
            redisReply *k = fields->element[i], *v = fields->element[i + 1];
            json_object_set_new(o, k->str, json_stringn_nocheck(v->str, v->len));
        }
        char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
        if (s)
            puts(s);
        free(s);
        json_decref(o);
        return;
    }
    const char *at = field(fields, "at");
    char when[40] = "-";
    if (at)
        cli_format_ms(strtoll(at, NULL, 10), when, sizeof when);
    if (flt->history) {
        print_history(fields, when);
        return;
    }
    const char *code = field(fields, "code");
    const char *reply = field(fields, "reply");
    const char *reason = field(fields, "reason");
    const char *fld = field(fields, "field");
    const char *mx = field(fields, "mx");
    char detail[400];
    if (reply)
        snprintf(detail, sizeof detail, "%s%s%s", code ? code : "", code ? " " : "", reply);
    else if (reason)
        snprintf(detail, sizeof detail, "%s%s%s", fld ? fld : "", fld ? ": " : "", reason);
    else
        snprintf(detail, sizeof detail, "-");
    char quoted[400];
    log_quote(quoted, sizeof quoted, detail, strlen(detail));
    printf("%-24s %-10s %-16s %-20s %-32s %-4s %-20s %s\n", when, field(fields, "event") ?: "?",
           field(fields, "tenant") ?: "-", field(fields, "job") ?: "-", field(fields, "to") ?: "-",
           field(fields, "attempt") ?: "-", mx ? mx : "-", quoted);
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
