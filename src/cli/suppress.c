/* herald suppress: the per-tenant and global suppression lists that hard
 * bounces feed and that admission checks before any connection. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "herald/keys.h"
#include "herald/job.h"

static const char suppress_usage[] =
    "usage: herald suppress list   -c FILE (--tenant T | --global)\n"
    "       herald suppress add    -c FILE (--tenant T | --global) ADDR...\n"
    "       herald suppress remove -c FILE (--tenant T | --global) ADDR...\n"
    "\n"
    "Jobs to a suppressed recipient end with a `suppressed` case note and no\n"
    "connection. Hard bounces (unknown mailbox or domain) add the recipient to\n"
    "the tenant's list automatically. Addresses are stored as jobs look them\n"
    "up: the domain as lower-case A-labels (IDNA2008), the local part with ASCII\n"
    "capitals folded (Anna@Example.TEST and anna@example.test are one entry).\n";

/* The entry for arg as jobs look it up (addr_normalize's key), and the form
 * older versions stored. An argument that does not normalise (only possible
 * for remove) is used in the older form for both, so a stray entry can
 * still be removed. */
static void entry_forms(const char *arg, char key[ADDR_NORM_MAX], char legacy[ADDR_NORM_MAX])
{
    size_t n = 0;
    for (; arg[n] && n + 1 < ADDR_NORM_MAX; n++)
        legacy[n] = (char)((arg[n] >= 'A' && arg[n] <= 'Z') ? arg[n] + 32 : arg[n]);
    legacy[n] = '\0';
    struct addr_norm a;
    if (addr_normalize(arg, strlen(arg), &a, NULL) == 0)
        memcpy(key, a.key, sizeof a.key);
    else
        memcpy(key, legacy, ADDR_NORM_MAX);
}

int cli_suppress(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"tenant", required_argument, NULL, 't'},
                                         {"global", no_argument, NULL, 'g'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = NULL, *tenant = NULL;
    bool global = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:t:gh", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': path = optarg; break;
        case 't': tenant = optarg; break;
        case 'g': global = true; break;
        case 'h': fputs(suppress_usage, stdout); return 0;
        default: fputs(suppress_usage, stderr); return 2;
        }
    }
    if (optind >= argc || (!tenant == !global)) {
        fputs(suppress_usage, stderr);
        return 2;
    }
    const char *verb = argv[optind++];
    bool list = strcmp(verb, "list") == 0, add = strcmp(verb, "add") == 0,
         del = strcmp(verb, "remove") == 0;
    if (!list && !add && !del) {
        fprintf(stderr, "herald suppress: unknown action '%s'\n", verb);
        return 2;
    }
    if ((add || del) && optind >= argc) {
        fprintf(stderr, "herald suppress %s: give at least one address\n", verb);
        return 2;
    }
    for (int i = optind; add && i < argc; i++) {
        struct addr_norm a;
        const char *why = NULL;
        int nrc = addr_normalize(argv[i], strlen(argv[i]), &a, &why);
        if (nrc < 0) {
            fprintf(stderr, "herald suppress: '%s' is not %s (%s)\n", argv[i],
                    nrc == -EILSEQ ? "a valid IDNA2008 domain" : "an address",
                    why ? why : "malformed");
            return 2;
        }
    }
    struct config *cfg = NULL;
    redisContext *c = NULL;
    int rc = cli_open(path, &cfg, &c);
    if (rc)
        return rc;
    if (tenant && !config_tenant(cfg, tenant)) {
        fprintf(stderr, "herald suppress: no tenant '%s' in %s\n", tenant, path);
        redisFree(c);
        config_free(cfg);
        return 2;
    }
    char key[KEYS_MAX];
    struct keys keys;
    keys_init(&keys, cfg->redis.prefix);
    keys_suppress(&keys, global ? NULL : tenant, key, sizeof key);
    if (list) {
        redisReply *r = redisCommand(c, "SMEMBERS %s", key);
        if (!r || r->type != REDIS_REPLY_ARRAY) {
            fprintf(stderr, "herald suppress: %s\n", r && r->str ? r->str : c->errstr);
            rc = 1;
        } else {
            for (size_t i = 0; i < r->elements; i++)
                puts(r->element[i]->str);
        }
        if (r)
            freeReplyObject(r);
    }
    for (int i = optind; !list && i < argc; i++) {
        char addr[ADDR_NORM_MAX], legacy[ADDR_NORM_MAX];
        entry_forms(argv[i], addr, legacy);
        /* Entries written before addresses were normalised hold the address
         * with only ASCII lower-cased (U-labels kept): remove those too. */
        bool both = del && strcmp(addr, legacy) != 0;
        redisReply *r = both ? redisCommand(c, "SREM %s %s %s", key, addr, legacy)
                             : redisCommand(c, add ? "SADD %s %s" : "SREM %s %s", key, addr);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "herald suppress: %s\n", r && r->str ? r->str : c->errstr);
            rc = 1;
        } else {
            printf("%s %s\n", r->integer ? (add ? "added" : "removed")
                                         : (add ? "already listed" : "not listed"),
                   addr);
        }
        if (r)
            freeReplyObject(r);
    }
    redisFree(c);
    config_free(cfg);
    return rc;
}
