/* herald suppress: the per-tenant and global suppression lists that hard
 * bounces feed and that admission checks before any connection. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "herald/core.h"
#include "herald/keys.h"
#include "herald/job.h"

static const char suppress_usage[] =
    "usage: herald suppress list   [-c FILE] (--tenant T | --global)\n"
    "       herald suppress add    [-c FILE] (--tenant T | --global) [--reason TEXT] ADDR...\n"
    "       herald suppress remove [-c FILE] (--tenant T | --global) ADDR...\n"
    "       herald suppress check  [-c FILE] [--tenant T] ADDR...\n"
    "       herald suppress export [-c FILE] (--tenant T | --global) > list.csv\n"
    "       herald suppress import [-c FILE] (--tenant T | --global) FILE.csv\n"
    "\n"
    "Jobs to a suppressed recipient end with a `suppressed` case note and no\n"
    "connection. Hard bounces (unknown mailbox or domain) add the recipient to\n"
    "the tenant's list automatically, with the bounce's reply as the reason.\n"
    "Each entry keeps when it was added, by what (bounce, operator, import) and\n"
    "why; list prints them (tab-separated, read page by page, however long the\n"
    "list), export as CSV (address,added_at,source,reason), import reads that\n"
    "CSV back (only `address` is required). check says whether an address is\n"
    "suppressed for the tenant and globally, and why. Addresses are stored as\n"
    "jobs look them up: the domain as lower-case A-labels (IDNA2008), the local\n"
    "part with ASCII capitals folded (Anna@Example.TEST and anna@example.test\n"
    "are one entry).\n";

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

/* "<ms> <source> <reason>" -> its parts (source and reason may be empty). */
static void split_info(const char *v, long long *ms, char *source, size_t scap, const char **reason)
{
    *ms = 0;
    source[0] = '\0';
    *reason = "";
    if (!v) return;
    char *end;
    *ms = strtoll(v, &end, 10);
    while (*end == ' ') end++;
    size_t n = strcspn(end, " ");
    snprintf(source, scap, "%.*s", (int)n, end);
    *reason = end[n] ? end + n + 1 : "";
}

static void csv_field(FILE *out, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, out);
        return;
    }
    fputc('"', out);
    for (; *s; s++) {
        if (*s == '"') fputc('"', out);
        fputc(*s, out);
    }
    fputc('"', out);
}

/* Every member, SSCAN page by page (a list of millions is never held at
 * once), with its info from one pipelined HMGET per page. */
static int list_or_export(redisContext *c, const char *key, const char *info, bool csv)
{
    char cursor[32] = "0";
    if (csv) puts("address,added_at,source,reason");
    do {
        redisReply *r = redisCommand(c, "SSCAN %s %s COUNT 1000", key, cursor);
        if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 2) {
            fprintf(stderr, "herald suppress: %s\n", r && r->str ? r->str : c->errstr);
            if (r) freeReplyObject(r);
            return 1;
        }
        snprintf(cursor, sizeof cursor, "%s", r->element[0]->str);
        redisReply *m = r->element[1];
        for (size_t i = 0; i < m->elements; i++)
            redisAppendCommand(c, "HGET %s %s", info, m->element[i]->str);
        for (size_t i = 0; i < m->elements; i++) {
            redisReply *v = NULL;
            if (redisGetReply(c, (void **)&v) != REDIS_OK) break;
            long long ms;
            char source[32], when[40] = "";
            const char *reason;
            split_info(v && v->type == REDIS_REPLY_STRING ? v->str : NULL, &ms, source,
                       sizeof source, &reason);
            if (csv) {
                csv_field(stdout, m->element[i]->str);
                printf(",%lld,", ms);
                csv_field(stdout, source);
                fputc(',', stdout);
                csv_field(stdout, reason);
                fputc('\n', stdout);
            } else {
                if (ms > 0) cli_format_ms(ms, when, sizeof when);
                char safe[600];
                printf("%s\t%s\t%s\t%s\n", m->element[i]->str, ms ? when : "-",
                       source[0] ? source : "-",
                       cli_term_safe(safe, sizeof safe, reason, strlen(reason)));
            }
            if (v) freeReplyObject(v);
        }
        freeReplyObject(r);
    } while (strcmp(cursor, "0") != 0);
    return 0;
}

/* One CSV record's fields (RFC 4180: quotes doubled inside quoted fields;
 * records do not span lines here). Returns the count, up to max. */
static int csv_split(char *line, char **fields, int max)
{
    int n = 0;
    char *p = line;
    while (n < max) {
        char *out = p;
        fields[n++] = p;
        if (*p == '"') {
            char *w = p;
            p++;
            for (;;) {
                if (!*p) break;
                if (*p == '"' && p[1] == '"') {
                    *w++ = '"';
                    p += 2;
                } else if (*p == '"') {
                    p++;
                    break;
                } else {
                    *w++ = *p++;
                }
            }
            while (*p && *p != ',') p++;
            *w = '\0';
            fields[n - 1] = out;
        } else {
            while (*p && *p != ',') p++;
        }
        if (!*p) {
            *p = '\0';
            break;
        }
        *p++ = '\0';
    }
    return n;
}

static int add_one(redisContext *c, const char *key, const char *info, const char *addr,
                   const char *source, const char *reason, long long at, bool quiet)
{
    char v[600];
    snprintf(v, sizeof v, "%lld %s %s", at, source, reason ? reason : "");
    redisAppendCommand(c, "SADD %s %s", key, addr);
    redisAppendCommand(c, "HSET %s %s %s", info, addr, v);
    redisReply *a = NULL, *b = NULL;
    int ok = redisGetReply(c, (void **)&a) == REDIS_OK && redisGetReply(c, (void **)&b) == REDIS_OK &&
             a && a->type == REDIS_REPLY_INTEGER;
    if (ok && !quiet)
        printf("%s %s%s\n", a->integer ? "added" : "already listed", addr,
               a->integer ? "" : " (its reason updated)");
    if (!ok) fprintf(stderr, "herald suppress: %s\n", a && a->str ? a->str : c->errstr);
    int added = ok ? (int)a->integer : -1;
    if (a) freeReplyObject(a);
    if (b) freeReplyObject(b);
    return added;
}

static int import_csv(redisContext *c, const char *key, const char *info, const char *file)
{
    FILE *f = strcmp(file, "-") == 0 ? stdin : fopen(file, "r");
    if (!f) {
        fprintf(stderr, "herald suppress import: %s: %s\n", file, strerror(errno));
        return 1;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long lineno = 0, added = 0, bad = 0;
    int col_addr = 0, col_at = -1, col_src = -1, col_reason = -1;
    long long now = clock_wall_ms();
    while ((len = getline(&line, &cap, f)) != -1) {
        lineno++;
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        char *fld[16];
        int n = csv_split(line, fld, 16);
        if (lineno == 1 && strcasecmp(fld[0], "address") == 0) {
            for (int i = 0; i < n; i++) {
                if (strcasecmp(fld[i], "added_at") == 0) col_at = i;
                else if (strcasecmp(fld[i], "source") == 0) col_src = i;
                else if (strcasecmp(fld[i], "reason") == 0) col_reason = i;
                else if (strcasecmp(fld[i], "address") == 0) col_addr = i;
            }
            continue;
        }
        if (col_addr >= n) {
            fprintf(stderr, "%s:%ld:1: no address column\n", file, lineno);
            bad++;
            continue;
        }
        struct addr_norm a;
        const char *why = NULL;
        if (addr_normalize(fld[col_addr], strlen(fld[col_addr]), &a, &why) < 0) {
            fprintf(stderr, "%s:%ld:1: '%s' is not an address (%s)\n", file, lineno, fld[col_addr],
                    why ? why : "malformed");
            bad++;
            continue;
        }
        long long at = col_at >= 0 && col_at < n ? atoll(fld[col_at]) : 0;
        const char *src = col_src >= 0 && col_src < n && fld[col_src][0] ? fld[col_src] : "import";
        const char *reason = col_reason >= 0 && col_reason < n ? fld[col_reason] : "";
        if (strpbrk(src, " \t") || strpbrk(reason, "\r\n")) {
            fprintf(stderr, "%s:%ld:1: source must be one word\n", file, lineno);
            bad++;
            continue;
        }
        int r = add_one(c, key, info, a.key, src, reason, at > 0 ? at : now, true);
        if (r < 0) {
            bad++;
            break;
        }
        added += r;
    }
    free(line);
    if (f != stdin) fclose(f);
    printf("imported %ld new address(es)%s\n", added, bad ? ", some lines refused" : "");
    return bad ? 1 : 0;
}

/* Whether each address is suppressed, for the tenant and globally. */
static int check(redisContext *c, const struct keys *K, const char *tenant, char **addrs, int n)
{
    int listed = 0;
    for (int i = 0; i < n; i++) {
        char addr[ADDR_NORM_MAX], legacy[ADDR_NORM_MAX];
        entry_forms(addrs[i], addr, legacy);
        for (int g = tenant ? 0 : 1; g < 2; g++) {
            char key[KEYS_MAX], info[KEYS_MAX];
            keys_suppress(K, g ? NULL : tenant, key, sizeof key);
            keys_suppress_info(K, g ? NULL : tenant, info, sizeof info);
            redisReply *r = redisCommand(c, "SISMEMBER %s %s", key, addr);
            bool in = r && r->type == REDIS_REPLY_INTEGER && r->integer == 1;
            if (r) freeReplyObject(r);
            if (!in) {
                printf("%s: not suppressed %s\n", addr, g ? "globally" : "for the tenant");
                continue;
            }
            listed++;
            r = redisCommand(c, "HGET %s %s", info, addr);
            long long ms;
            char source[32], when[40] = "-", safe[600];
            const char *reason;
            split_info(r && r->type == REDIS_REPLY_STRING ? r->str : NULL, &ms, source,
                       sizeof source, &reason);
            if (ms > 0) cli_format_ms(ms, when, sizeof when);
            printf("%s: SUPPRESSED %s since %s by %s: %s\n", addr,
                   g ? "globally" : "for the tenant", when, source[0] ? source : "-",
                   cli_term_safe(safe, sizeof safe, reason, strlen(reason)));
            if (r) freeReplyObject(r);
        }
    }
    return listed ? 1 : 0; /* exit 1 when any is suppressed, like grep */
}

int cli_suppress(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"tenant", required_argument, NULL, 't'},
                                         {"global", no_argument, NULL, 'g'},
                                         {"reason", required_argument, NULL, 'r'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = NULL, *tenant = NULL, *reason = NULL;
    bool global = false;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:t:gr:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': path = optarg; break;
        case 't': tenant = optarg; break;
        case 'g': global = true; break;
        case 'r': reason = optarg; break;
        case 'h': fputs(suppress_usage, stdout); return 0;
        default: fputs(suppress_usage, stderr); return 2;
        }
    }
    if (optind >= argc) {
        fputs(suppress_usage, stderr);
        return 2;
    }
    const char *verb = argv[optind++];
    static const char *const verbs[] = {"list", "add", "remove", "check", "export", "import"};
    bool known = false;
    for (size_t i = 0; i < HERALD_ARRAY_LEN(verbs); i++)
        known |= strcmp(verb, verbs[i]) == 0;
    if (!known) {
        fprintf(stderr, "herald suppress: unknown action '%s'\n", verb);
        return 2;
    }
    bool is_check = strcmp(verb, "check") == 0;
    if ((!is_check && !tenant == !global) || (is_check && global)) {
        fputs(suppress_usage, stderr);
        return 2;
    }
    bool needs_args = strcmp(verb, "add") == 0 || strcmp(verb, "remove") == 0 || is_check;
    if (needs_args && optind >= argc) {
        fprintf(stderr, "herald suppress %s: give at least one address\n", verb);
        return 2;
    }
    if (strcmp(verb, "import") == 0 && optind + 1 != argc) {
        fprintf(stderr, "herald suppress import: give one CSV file (or - for stdin)\n");
        return 2;
    }
    if (reason && strpbrk(reason, "\r\n")) {
        fprintf(stderr, "herald suppress: --reason must be one line\n");
        return 2;
    }
    for (int i = optind; strcmp(verb, "add") == 0 && i < argc; i++) {
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
        fprintf(stderr, "herald suppress: no tenant '%s' in the config\n", tenant);
        redisFree(c);
        config_free(cfg);
        return 2;
    }
    char key[KEYS_MAX], info[KEYS_MAX];
    struct keys keys;
    keys_init(&keys, cfg->redis.prefix);
    keys_suppress(&keys, global ? NULL : tenant, key, sizeof key);
    keys_suppress_info(&keys, global ? NULL : tenant, info, sizeof info);
    if (strcmp(verb, "list") == 0 || strcmp(verb, "export") == 0) {
        rc = list_or_export(c, key, info, strcmp(verb, "export") == 0);
    } else if (strcmp(verb, "import") == 0) {
        rc = import_csv(c, key, info, argv[optind]);
    } else if (is_check) {
        rc = check(c, &keys, tenant, argv + optind, argc - optind);
    } else if (strcmp(verb, "add") == 0) {
        for (int i = optind; i < argc; i++) {
            char addr[ADDR_NORM_MAX], legacy[ADDR_NORM_MAX];
            entry_forms(argv[i], addr, legacy);
            if (add_one(c, key, info, addr, "operator", reason, clock_wall_ms(), false) < 0)
                rc = 1;
        }
    } else {
        for (int i = optind; i < argc; i++) {
            char addr[ADDR_NORM_MAX], legacy[ADDR_NORM_MAX];
            entry_forms(argv[i], addr, legacy);
            /* Entries written before addresses were normalised hold the
             * address with only ASCII lower-cased (U-labels kept): remove
             * those too. */
            bool both = strcmp(addr, legacy) != 0;
            redisReply *r = both ? redisCommand(c, "SREM %s %s %s", key, addr, legacy)
                                 : redisCommand(c, "SREM %s %s", key, addr);
            redisReply *h = redisCommand(c, "HDEL %s %s %s", info, addr, legacy);
            if (!r || r->type == REDIS_REPLY_ERROR) {
                fprintf(stderr, "herald suppress: %s\n", r && r->str ? r->str : c->errstr);
                rc = 1;
            } else {
                printf("%s %s\n", r->integer ? "removed" : "not listed", addr);
            }
            if (r) freeReplyObject(r);
            if (h) freeReplyObject(h);
        }
    }
    redisFree(c);
    config_free(cfg);
    return rc;
}
