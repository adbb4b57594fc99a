/* herald cancel: the front for a `cancel` control entry (an appointment
 * called off), so nobody has to remember the field names; --wait reads the
 * control entry's own note and says what happened to the job. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "herald/core.h"

static const char cancel_usage[] =
    "usage: herald cancel [-c FILE] --tenant T --id ID [--wait SECS]\n"
    "\n"
    "Cancel a job by the id the platform gave it: adds a control entry\n"
    "(tenant T, cancel ID) to the job stream. A job not yet sent ends with a\n"
    "`cancelled` note; one already on its way to the mail server may still be\n"
    "delivered, but is never attempted again. The control entry's own note\n"
    "says which (result: cancelled, not-seen, in-flight, already-delivered,\n"
    "...); --wait SECS waits that long for it and prints the result.\n"
    "Exit 0 when added (and, with --wait, when the note came), 1 when the note\n"
    "did not come in time or Redis refused, 2 for usage errors.\n";

/* The control entry's note: event cancelled, cancel ID, tenant T, written
 * after `from` (the control entry's stream id: notes come after it). */
static int wait_note(redisContext *c, const struct config *cfg, const char *tenant,
                     const char *id, const char *from, int secs)
{
    char last[64];
    snprintf(last, sizeof last, "%s", from);
    int64_t deadline = clock_mono_ms() + (int64_t)secs * 1000;
    while (clock_mono_ms() < deadline) {
        redisReply *r = redisCommand(c, "XREAD COUNT 500 BLOCK 500 STREAMS %s %s",
                                     cfg->redis.events, last);
        if (!r) {
            fprintf(stderr, "herald cancel: redis: %s\n", c->errstr);
            return 1;
        }
        if (r->type == REDIS_REPLY_ARRAY && r->elements == 1 &&
            r->element[0]->type == REDIS_REPLY_ARRAY && r->element[0]->elements == 2) {
            redisReply *entries = r->element[0]->element[1];
            for (size_t i = 0; i < entries->elements; i++) {
                redisReply *e = entries->element[i];
                if (e->type != REDIS_REPLY_ARRAY || e->elements != 2) continue;
                snprintf(last, sizeof last, "%s", e->element[0]->str);
                const char *ev = NULL, *tn = NULL, *target = NULL, *result = NULL;
                redisReply *f = e->element[1];
                for (size_t k = 0; f->type == REDIS_REPLY_ARRAY && k + 1 < f->elements; k += 2) {
                    const char *name = f->element[k]->str, *val = f->element[k + 1]->str;
                    if (strcmp(name, "event") == 0) ev = val;
                    else if (strcmp(name, "tenant") == 0) tn = val;
                    else if (strcmp(name, "cancel") == 0) target = val;
                    else if (strcmp(name, "result") == 0) result = val;
                }
                if (ev && tn && target && strcmp(ev, "cancelled") == 0 &&
                    strcmp(tn, tenant) == 0 && strcmp(target, id) == 0) {
                    printf("result: %s\n", result ? result : "-");
                    freeReplyObject(r);
                    return 0;
                }
            }
        }
        freeReplyObject(r);
    }
    fprintf(stderr, "herald cancel: no note for the control entry within %d s (is an engine "
                    "running?)\n",
            secs);
    return 1;
}

int cli_cancel(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"tenant", required_argument, NULL, 't'},
                                         {"id", required_argument, NULL, 'i'},
                                         {"wait", required_argument, NULL, 'w'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = NULL, *tenant = NULL, *id = NULL;
    int wait_s = -1, ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:t:i:w:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': path = optarg; break;
        case 't': tenant = optarg; break;
        case 'i': id = optarg; break;
        case 'w': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 0 || v > 3600) {
                fprintf(stderr, "herald cancel: --wait wants seconds (0..3600), got '%s'\n", optarg);
                return 2;
            }
            wait_s = (int)v;
            break;
        }
        case 'h': fputs(cancel_usage, stdout); return 0;
        default: fputs(cancel_usage, stderr); return 2;
        }
    }
    if (!tenant || !id || !id[0] || optind < argc) {
        fputs(cancel_usage, stderr);
        return 2;
    }
    struct config *cfg = NULL;
    redisContext *c = NULL;
    int rc = cli_open(path, &cfg, &c);
    if (rc) return rc;
    if (!config_tenant(cfg, tenant)) {
        fprintf(stderr, "herald cancel: tenant '%s' is not in the config\n", tenant);
        redisFree(c);
        config_free(cfg);
        return 2;
    }
    redisReply *r = redisCommand(c, "XADD %s * tenant %s cancel %s", cfg->redis.jobs, tenant, id);
    if (!r || r->type != REDIS_REPLY_STRING) {
        fprintf(stderr, "herald cancel: redis: %s\n",
                r && r->type == REDIS_REPLY_ERROR ? r->str : c->errstr);
        if (r) freeReplyObject(r);
        redisFree(c);
        config_free(cfg);
        return 1;
    }
    printf("control entry %s: cancel %s for tenant %s\n", r->str, id, tenant);
    char entry[64];
    snprintf(entry, sizeof entry, "%s", r->str);
    freeReplyObject(r);
    /* Notes for this entry are written after it was added: read from its
     * time on (an id made of its milliseconds). */
    char from[64];
    snprintf(from, sizeof from, "%.*s-0", (int)strcspn(entry, "-"), entry);
    rc = wait_s >= 0 ? wait_note(c, cfg, tenant, id, from, wait_s) : 0;
    redisFree(c);
    config_free(cfg);
    return rc;
}
