/* `herald check-domain`: what support staff run when a clinic says "my
 * clients don't get the reminders". The checks themselves live in
 * src/domain/ (herald/domaincheck.h); this file parses the arguments,
 * loads the config, opens the configured resolver and prints the results
 * as text or JSON. Blocking DNS is fine here: this is the CLI, not an
 * engine thread. */
#include <ctype.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "herald/core.h"
#include "herald/dnsq.h"
#include "herald/domaincheck.h"

static const char usage[] =
    "usage: herald check-domain DOMAIN -c FILE [--tenant T] [--json] [--timeout SECS]\n"
    "\n"
    "Check what receivers check about a sending domain, through the configured\n"
    "resolver (dns.servers, else the system's): MX, SPF for each egress IP of the\n"
    "tenant's pool, the tenant's DKIM record against herald's key, DMARC policy and\n"
    "whether herald's mail aligns, PTR/FCrDNS of the egress IPs and their DNSBL\n"
    "listings (dnsbl: in the config). Each check prints PASS, WARN or FAIL, a\n"
    "reason and, when something is wrong, the fix (often the exact DNS record).\n"
    "\n"
    "  --tenant T   the tenant whose pool, DKIM key and from_fallback to use\n"
    "               (default: the tenant that lists DOMAIN in its domains)\n"
    "  --json       one JSON object: {domain, tenant, result, checks: [{name,\n"
    "               verdict, reason, fix}]}\n"
    "\n"
    "Exit status: 0 when nothing FAILs, 1 otherwise, 2 for usage or config errors.\n";

static void print_item(const struct dcheck_item *it)
{
    printf("%-10s %s  %s\n", dcheck_kind_name(it->kind), dcheck_verdict_name(it->verdict),
           it->reason);
    /* Multi-line fixes keep the indentation so records stay readable. */
    bool first = true;
    for (const char *p = it->fix; p && *p;) {
        const char *nl = strchr(p, '\n');
        size_t n = nl ? (size_t)(nl - p) : strlen(p);
        printf("           %s %.*s\n", first ? "fix:" : "    ", (int)n, p);
        first = false;
        p += n + (nl ? 1 : 0);
    }
}

static void print_json(const char *domain, const struct cfg_tenant *tenant,
                       const struct dcheck_result *r)
{
    json_t *checks = json_array();
    for (size_t i = 0; checks && i < r->n; i++) {
        const struct dcheck_item *it = &r->items[i];
        json_t *o = json_pack("{s:s, s:s, s:s}", "name", dcheck_kind_name(it->kind), "verdict",
                              dcheck_verdict_name(it->verdict), "reason", it->reason);
        if (o && it->fix) json_object_set_new(o, "fix", json_string(it->fix));
        if (o) json_array_append_new(checks, o);
    }
    json_t *top = json_pack("{s:s, s:s?, s:s, s:i, s:i, s:o}", "domain", domain, "tenant",
                            tenant ? tenant->name : NULL, "result",
                            dcheck_verdict_name(dcheck_result_verdict(r)), "failed", (int)r->n_fail,
                            "warnings", (int)r->n_warn, "checks", checks);
    char *s = top ? json_dumps(top, JSON_INDENT(2)) : NULL;
    if (s) puts(s);
    free(s);
    json_decref(top);
}

int cli_check_domain(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'}, {"tenant", required_argument, NULL, 't'},
        {"json", no_argument, NULL, 'j'},         {"timeout", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0},
    };
    const char *path = NULL, *tenant_name = NULL;
    bool json = false;
    long timeout_s = 5;
    int o;
    optind = 1;
    while ((o = getopt_long(argc, argv, "c:t:jT:h", opts, NULL)) != -1) {
        switch (o) {
        case 'c':
            path = optarg;
            break;
        case 't':
            tenant_name = optarg;
            break;
        case 'j':
            json = true;
            break;
        case 'T': {
            char *end;
            timeout_s = strtol(optarg, &end, 10);
            if (*end || timeout_s < 1 || timeout_s > 300) {
                fprintf(stderr, "herald check-domain: --timeout wants 1..300 seconds\n");
                return 2;
            }
            break;
        }
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        fputs(usage, stderr);
        return 2;
    }
    char domain[256];
    snprintf(domain, sizeof domain, "%s", argv[optind]);
    size_t dl = strlen(domain);
    if (dl && domain[dl - 1] == '.') domain[--dl] = '\0';
    for (size_t i = 0; i < dl; i++)
        domain[i] = (char)tolower((unsigned char)domain[i]);
    if (dl == 0 || !strchr(domain, '.') ||
        strspn(domain, "abcdefghijklmnopqrstuvwxyz0123456789-._") != dl) {
        fprintf(stderr, "herald check-domain: '%s' is not a domain name\n", argv[optind]);
        return 2;
    }
    struct config *cfg = NULL;
    int rc = cli_load_config(path, &cfg);
    if (rc) return rc;
    const struct cfg_tenant *tenant = NULL;
    if (tenant_name) {
        tenant = config_tenant(cfg, tenant_name);
        if (!tenant) {
            fprintf(stderr, "herald check-domain: unknown tenant '%s'\n", tenant_name);
            config_free(cfg);
            return 2;
        }
    } else {
        tenant = dcheck_tenant_for(cfg, domain);
    }
    const struct cfg_egress_pool *pool = config_egress(cfg, tenant ? tenant->egress : NULL);
    struct dnsq_sync *dns;
    char err[300];
    if (dnsq_sync_new(&dns, (const char *const *)cfg->dns.servers.items, cfg->dns.servers.n,
                      timeout_s * 1000, err, sizeof err) < 0) {
        fprintf(stderr, "herald check-domain: %s\n", err);
        config_free(cfg);
        return 2;
    }
    if (!json) {
        printf("check-domain %s: tenant %s, egress pool %s", domain,
               tenant ? tenant->name : "(none)", pool ? pool->name : "default");
        for (size_t i = 0; pool && i < pool->ips.n; i++)
            printf("%s%s", i ? " " : " [", pool->ips.items[i]);
        printf("%s, EHLO %s\n", pool && pool->ips.n ? "]" : "", config_egress_ehlo(cfg, pool));
        fflush(stdout);
    }
    struct dcheck_request rq = {
        .cfg = cfg, .tenant = tenant, .domain = domain, .lookup = dnsq_sync_lookup, .ctx = dns,
        /* With a return_path the envelope is the platform's: SPF is checked there. */
        .envelope_domain = tenant && tenant->return_path ? tenant->return_path : NULL};
    struct dcheck_result res;
    rc = dcheck_run(&rq, &res);
    if (rc < 0) {
        fprintf(stderr, "herald check-domain: %s\n", herald_strerror(rc));
    } else if (json) {
        print_json(domain, tenant, &res);
    } else {
        for (size_t i = 0; i < res.n; i++)
            print_item(&res.items[i]);
        printf("result: %s (%zu failed, %zu warnings)\n",
               dcheck_verdict_name(dcheck_result_verdict(&res)), res.n_fail, res.n_warn);
    }
    int status = rc < 0 ? 2 : res.n_fail ? 1 : 0;
    dcheck_result_free(&res);
    dnsq_sync_free(dns);
    config_free(cfg);
    return status;
}
