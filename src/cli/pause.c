/* herald suspend / resume: stop sending for a tenant, a provider, a
 * destination site, an egress IP or a recipient domain, with a reason and
 * an optional expiry, across every engine (they read it within a second),
 * and start again. Messages meanwhile are parked with a note saying who
 * suspended what and why. */
#include <getopt.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "engine/suspend.h"
#include "herald/keys.h"
#include "herald/core.h"

static const char suspend_usage[] =
    "usage: herald suspend [-c FILE] (--tenant T | --provider P | --site S | --ip IP |\n"
    "                      --domain D) --reason TEXT [--for DURATION]\n"
    "       herald resume  [-c FILE] (--tenant T | --provider P | --site S | --ip IP |\n"
    "                      --domain D)\n"
    "       herald suspend [-c FILE] --list\n"
    "\n"
    "Running engines stop sending what matches within a second: messages are\n"
    "parked (a `deferred` note, category suspended, with your reason) and look\n"
    "again every 30 s or when the suspension expires. --for 2h ends it by\n"
    "itself; without it, it lasts until `herald resume`. A message already\n"
    "handed to a mail server is not called back.\n";

static int key_of(const struct config *cfg, char *out, size_t cap)
{
    struct keys k;
    if (keys_init(&k, cfg->redis.prefix) < 0) return -1;
    return keys_suspend(&k, out, cap);
}

static int list(redisContext *c, const struct config *cfg)
{
    char key[600];
    key_of(cfg, key, sizeof key);
    redisReply *r = redisCommand(c, "HGETALL %s", key);
    if (!r || r->type != REDIS_REPLY_ARRAY) {
        fprintf(stderr, "herald suspend: redis: %s\n", r ? r->str : c->errstr);
        if (r) freeReplyObject(r);
        return 1;
    }
    int64_t now = clock_wall_ms();
    size_t shown = 0;
    for (size_t i = 0; i + 1 < r->elements; i += 2) {
        struct susp_entry e;
        if (susp_parse(r->element[i]->str, r->element[i + 1]->str, &e) < 0) continue;
        char until[48] = "until resumed", safe[400];
        if (e.until_ms && e.until_ms <= now) continue; /* expired */
        if (e.until_ms) cli_format_ms(e.until_ms, until, sizeof until);
        printf("%-9s %-32s %-26s %s\n", susp_kind_name(e.kind), e.value, until,
               cli_term_safe(safe, sizeof safe, e.reason, strlen(e.reason)));
        shown++;
    }
    if (!shown) printf("no suspensions\n");
    freeReplyObject(r);
    return 0;
}

static int run(int argc, char **argv, bool resume)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"tenant", required_argument, NULL, 't'},
        {"provider", required_argument, NULL, 'p'}, {"site", required_argument, NULL, 's'},
        {"ip", required_argument, NULL, 'i'}, {"domain", required_argument, NULL, 'd'},
        {"reason", required_argument, NULL, 'r'}, {"for", required_argument, NULL, 'f'},
        {"list", no_argument, NULL, 'l'}, {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *path = NULL, *reason = NULL, *value = NULL;
    int kind = -1, ch, n_kinds = 0;
    int64_t for_ms = 0;
    bool do_list = false;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:t:p:s:i:d:r:f:lh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': path = optarg; break;
        case 't': kind = SUSP_TENANT, value = optarg, n_kinds++; break;
        case 'p': kind = SUSP_PROVIDER, value = optarg, n_kinds++; break;
        case 's': kind = SUSP_SITE, value = optarg, n_kinds++; break;
        case 'i': kind = SUSP_IP, value = optarg, n_kinds++; break;
        case 'd': kind = SUSP_DOMAIN, value = optarg, n_kinds++; break;
        case 'r': reason = optarg; break;
        case 'l': do_list = true; break;
        case 'f':
            if (config_parse_duration(optarg, &for_ms) < 0 || for_ms <= 0) {
                fprintf(stderr, "herald suspend: --for wants a duration (30m, 2h, 1d)\n");
                return 2;
            }
            break;
        case 'h': fputs(suspend_usage, stdout); return 0;
        default: fputs(suspend_usage, stderr); return 2;
        }
    }
    bool ok = optind == argc && (do_list ? n_kinds == 0 && !resume
                                         : n_kinds == 1 && (resume || (reason && reason[0])));
    if (ok && value && (strlen(value) >= 256 || strchr(value, '\n'))) ok = false;
    if (ok && reason && (strlen(reason) >= 160 || strpbrk(reason, "\r\n"))) {
        fprintf(stderr, "herald suspend: --reason: one line, under 160 bytes\n");
        return 2;
    }
    if (!ok) {
        fputs(suspend_usage, stderr);
        return 2;
    }
    struct config *cfg = NULL;
    redisContext *c = NULL;
    int rc = cli_open(path, &cfg, &c);
    if (rc) return rc;
    if (do_list) {
        rc = list(c, cfg);
    } else {
        char key[600], field[300];
        key_of(cfg, key, sizeof key);
        snprintf(field, sizeof field, "%s=%s", susp_kind_name((enum susp_kind)kind), value);
        redisReply *r;
        if (resume) {
            r = redisCommand(c, "HDEL %s %s", key, field);
        } else {
            int64_t now = clock_wall_ms();
            char v[400];
            snprintf(v, sizeof v, "%" PRId64 " %" PRId64 " %s", for_ms ? now + for_ms : 0, now,
                     reason);
            r = redisCommand(c, "HSET %s %s %s", key, field, v);
        }
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "herald %s: redis: %s\n", resume ? "resume" : "suspend",
                    r ? r->str : c->errstr);
            rc = 1;
        } else if (resume) {
            printf(r->integer ? "resumed %s %s\n" : "%s %s was not suspended\n",
                   susp_kind_name((enum susp_kind)kind), value);
        } else {
            printf("suspended %s %s%s\n", susp_kind_name((enum susp_kind)kind), value,
                   for_ms ? " (expires by itself)" : " until herald resume");
        }
        if (r) freeReplyObject(r);
    }
    redisFree(c);
    config_free(cfg);
    return rc;
}

int cli_suspend(int argc, char **argv)
{
    return run(argc, argv, false);
}

int cli_resume(int argc, char **argv)
{
    return run(argc, argv, true);
}
