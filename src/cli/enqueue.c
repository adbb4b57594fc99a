/* herald enqueue: one job from flags, or many from JSON Lines on stdin.
 * XADDs are pipelined in batches so bulk loads cost few round trips. */
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "herald/core.h"
#include "herald/job.h"

static const char enqueue_usage[] =
    "usage: herald enqueue -c FILE --tenant T --to ADDR [--subject S] [--text T]\n"
    "                      [--html H] [--ref R] [--id ID] [--from ADDR] [--from-name N]\n"
    "                      [--reply-to ADDR] [--priority high|normal|bulk]\n"
    "                      [--send-at WHEN] [--expires-at WHEN] [--unsubscribe URL]\n"
    "                      [--field NAME=VALUE]...\n"
    "       herald enqueue -c FILE [--jsonl] < jobs.jsonl\n"
    "\n"
    "With flags, adds one job and prints its stream id. Without --to (or with\n"
    "--jsonl), reads one JSON object of job fields per line from stdin, e.g.\n"
    "  {\"tenant\":\"acme\",\"to\":\"pat@example.com\",\"subject\":\"Reminder\",\"text\":\"...\"}\n"
    "(\"var\": {...} becomes var.NAME fields), prints 'enqueued N', reports bad\n"
    "lines as 'stdin:LINE: reason' and exits 1 if any line was bad.\n";

#define BATCH 1000
#define MAX_FIELDS 128

struct fields {
    const char *argv[MAX_FIELDS * 2 + 4];
    size_t lens[MAX_FIELDS * 2 + 4];
    int argc;
    char *owned[MAX_FIELDS * 2];
    int n_owned;
};

static int fields_add(struct fields *f, const char *name, size_t nlen, const char *value,
                      size_t vlen)
{
    if (f->argc + 2 > (int)HERALD_ARRAY_LEN(f->argv))
        return -1;
    f->argv[f->argc] = name;
    f->lens[f->argc++] = nlen;
    f->argv[f->argc] = value;
    f->lens[f->argc++] = vlen;
    return 0;
}

static char *fields_own(struct fields *f, char *s)
{
    if (s && f->n_owned < (int)HERALD_ARRAY_LEN(f->owned))
        f->owned[f->n_owned++] = s;
    return s;
}

static void fields_reset(struct fields *f, const struct config *cfg)
{
    for (int i = 0; i < f->n_owned; i++)
        free(f->owned[i]);
    f->n_owned = 0;
    f->argc = 0;
    f->argv[f->argc] = "XADD";
    f->lens[f->argc++] = 4;
    f->argv[f->argc] = cfg->redis.jobs;
    f->lens[f->argc++] = strlen(cfg->redis.jobs);
    f->argv[f->argc] = "*";
    f->lens[f->argc++] = 1;
}

static int add_json_value(struct fields *f, const char *name, json_t *v, const char **why)
{
    char *s = NULL;
    if (json_is_string(v))
        return fields_add(f, name, strlen(name), json_string_value(v), json_string_length(v));
    if (json_is_integer(v)) {
        if (asprintf(&s, "%lld", (long long)json_integer_value(v)) < 0)
            return -1;
    } else if (json_is_real(v)) {
        if (asprintf(&s, "%.17g", json_real_value(v)) < 0)
            return -1;
    } else if (json_is_boolean(v)) {
        s = strdup(json_is_true(v) ? "true" : "false");
    } else if (json_is_null(v)) {
        return 0;
    } else {
        *why = "values must be strings, numbers or booleans (only \"var\" may be an object)";
        return -1;
    }
    if (!fields_own(f, s))
        return -1;
    return fields_add(f, name, strlen(name), s, strlen(s));
}

/* herald writes these on its own copies of a job (job.h); the engine
 * rejects an entry a producer wrote with them, so refuse them here with
 * the reason instead of enqueueing a job that cannot go. */
static bool herald_only(const char *name)
{
    for (size_t i = 0; i < job_n_herald_fields; i++)
        if (strcmp(name, job_herald_fields[i]) == 0) return true;
    return false;
}

static int json_to_fields(json_t *obj, struct fields *f, const char **why)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v)
    {
        if (strcmp(key, "var") == 0 && json_is_object(v)) {
            const char *vk;
            json_t *vv;
            json_object_foreach(v, vk, vv)
            {
                char *name = NULL;
                if (asprintf(&name, "var.%s", vk) < 0 || !fields_own(f, name))
                    return -1;
                if (add_json_value(f, name, vv, why) < 0)
                    return -1;
            }
            continue;
        }
        if (herald_only(key)) {
            *why = "a field herald writes for itself (attempt, enqueued_at, admitted, counted, "
                   "throttled, message_id) cannot be enqueued";
            return -1;
        }
        if (add_json_value(f, key, v, why) < 0)
            return -1;
    }
    if (f->argc == 3) {
        *why = "empty object";
        return -1;
    }
    return 0;
}

static int drain_replies(redisContext *c, int n, long *ok, long *failed)
{
    for (int i = 0; i < n; i++) {
        redisReply *r = NULL;
        if (redisGetReply(c, (void **)&r) != REDIS_OK || !r) {
            fprintf(stderr, "herald enqueue: redis: %s\n", c->errstr);
            return -1;
        }
        if (r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "herald enqueue: redis rejected a job: %s\n", r->str);
            (*failed)++;
        } else {
            (*ok)++;
        }
        freeReplyObject(r);
    }
    return 0;
}

static int enqueue_jsonl(redisContext *c, const struct config *cfg)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0, ok = 0, failed = 0, bad = 0;
    int pending = 0;
    struct fields f = {0};
    while ((len = getline(&line, &cap, stdin)) != -1) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
            line[--len] = '\0';
        if (len == 0)
            continue;
        json_error_t jerr;
        json_t *obj = json_loadb(line, (size_t)len, JSON_REJECT_DUPLICATES, &jerr);
        if (!obj || !json_is_object(obj)) {
            fprintf(stderr, "stdin:%ld:%d: %s\n", lineno, obj ? 1 : jerr.column,
                    obj ? "expected a JSON object" : jerr.text);
            json_decref(obj);
            bad++;
            continue;
        }
        fields_reset(&f, cfg);
        const char *why = "out of memory or too many fields";
        if (json_to_fields(obj, &f, &why) < 0) {
            fprintf(stderr, "stdin:%ld:1: %s\n", lineno, why);
            bad++;
        } else if (redisAppendCommandArgv(c, f.argc, f.argv, f.lens) != REDIS_OK) {
            fprintf(stderr, "herald enqueue: %s\n", c->errstr);
            json_decref(obj);
            break;
        } else {
            pending++;
        }
        json_decref(obj);
        if (pending >= BATCH) {
            if (drain_replies(c, pending, &ok, &failed) < 0)
                break;
            pending = 0;
        }
    }
    if (pending)
        drain_replies(c, pending, &ok, &failed);
    fields_reset(&f, cfg);
    free(line);
    printf("enqueued %ld\n", ok);
    if (bad || failed)
        fprintf(stderr, "herald enqueue: %ld bad line(s), %ld refused by redis\n", bad, failed);
    return (bad || failed) ? 1 : 0;
}

int cli_enqueue(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},  {"tenant", required_argument, NULL, 't'},
        {"to", required_argument, NULL, 'T'},      {"subject", required_argument, NULL, 's'},
        {"text", required_argument, NULL, 'x'},    {"html", required_argument, NULL, 'H'},
        {"ref", required_argument, NULL, 'r'},     {"id", required_argument, NULL, 'i'},
        {"from", required_argument, NULL, 'f'},    {"from-name", required_argument, NULL, 'n'},
        {"reply-to", required_argument, NULL, 'R'}, {"priority", required_argument, NULL, 'p'},
        {"send-at", required_argument, NULL, 'S'}, {"expires-at", required_argument, NULL, 'E'},
        {"unsubscribe", required_argument, NULL, 'u'}, {"field", required_argument, NULL, 'F'},
        {"jsonl", no_argument, NULL, 'j'},         {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    static const struct {
        int opt;
        const char *field;
    } map[] = {{'t', "tenant"},   {'T', "to"},          {'s', "subject"},  {'x', "text"},
               {'H', "html"},     {'r', "ref"},         {'i', "id"},       {'f', "from"},
               {'n', "from_name"}, {'R', "reply_to"},   {'p', "priority"}, {'S', "send_at"},
               {'E', "expires_at"}, {'u', "unsubscribe"}};
    const char *path = NULL;
    bool jsonl = false, any_flag = false;
    struct fields f = {0};
    const char *pairs[MAX_FIELDS][2];
    size_t n_pairs = 0;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:h", opts, NULL)) != -1) {
        if (ch == 'c') {
            path = optarg;
        } else if (ch == 'h') {
            fputs(enqueue_usage, stdout);
            return 0;
        } else if (ch == 'j') {
            jsonl = true;
        } else if (ch == 'F') {
            char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg) {
                fprintf(stderr, "herald enqueue: --field wants NAME=VALUE, got '%s'\n", optarg);
                return 2;
            }
            *eq = '\0';
            if (herald_only(optarg)) {
                fprintf(stderr,
                        "herald enqueue: --field %s: herald writes this field for itself on "
                        "retries; a producer cannot set it\n",
                        optarg);
                return 2;
            }
            if (n_pairs < MAX_FIELDS) {
                pairs[n_pairs][0] = optarg;
                pairs[n_pairs++][1] = eq + 1;
            }
            any_flag = true;
        } else {
            bool found = false;
            for (size_t i = 0; i < HERALD_ARRAY_LEN(map); i++)
                if (map[i].opt == ch && n_pairs < MAX_FIELDS) {
                    pairs[n_pairs][0] = map[i].field;
                    pairs[n_pairs++][1] = optarg;
                    found = true;
                }
            if (!found) {
                fputs(enqueue_usage, stderr);
                return 2;
            }
            any_flag = true;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "herald enqueue: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (any_flag && jsonl) {
        fprintf(stderr, "herald enqueue: use either job flags or --jsonl, not both\n");
        return 2;
    }
    if (any_flag) {
        bool has_tenant = false, has_to = false;
        for (size_t i = 0; i < n_pairs; i++) {
            has_tenant |= strcmp(pairs[i][0], "tenant") == 0;
            has_to |= strcmp(pairs[i][0], "to") == 0;
        }
        if (!has_tenant || !has_to) {
            fprintf(stderr, "herald enqueue: a job needs --tenant and --to (or use --jsonl)\n");
            return 2;
        }
    }
    if (!any_flag && isatty(STDIN_FILENO) && !jsonl) {
        fputs(enqueue_usage, stderr);
        return 2;
    }
    struct config *cfg = NULL;
    redisContext *c = NULL;
    int rc = cli_open(path, &cfg, &c);
    if (rc)
        return rc;
    if (!any_flag) {
        rc = enqueue_jsonl(c, cfg);
    } else {
        fields_reset(&f, cfg);
        for (size_t i = 0; i < n_pairs; i++)
            fields_add(&f, pairs[i][0], strlen(pairs[i][0]), pairs[i][1], strlen(pairs[i][1]));
        redisReply *r = redisCommandArgv(c, f.argc, f.argv, f.lens);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "herald enqueue: %s\n", r ? r->str : c->errstr);
            rc = 1;
        } else {
            printf("%s\n", r->str);
        }
        if (r)
            freeReplyObject(r);
    }
    redisFree(c);
    config_free(cfg);
    return rc;
}
