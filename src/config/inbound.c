/* The `inbound:` section (config.h, struct cfg_inbound): where reports
 * that come back after the 250 are accepted, and the secret that signs
 * the VERP return paths tenants with `return_path` send with. Read before
 * the tenants, so a tenant's return_path can insist on the secret. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "config/loader.h"
#include "config/ytree.h"

static const char *check_listen(const char *s)
{
    struct sockaddr_storage sa;
    unsigned len;
    return config_parse_listen(s, &sa, &len) < 0 ? "expected IP:PORT or [IPv6]:PORT" : NULL;
}

/* "0.3%" or 0.003: a share of deliveries, above 0 and at most 1. */
static int read_share(struct loader *L, const struct ynode *v, double *out)
{
    char tmp[160];
    if (v->type != YNODE_SCALAR)
        return loader_fail(L, v, "expected a share like 0.3%%, got %s",
                           loader_show(v, tmp, sizeof tmp));
    char *end = NULL;
    double d = strtod(v->str, &end);
    if (end && *end == '%' && end[1] == '\0') {
        d /= 100;
        end++;
    }
    if (!end || end == v->str || *end || !(d > 0 && d <= 1))
        return loader_fail(L, v, "expected a share like 0.3%% (above 0, at most 100%%), got %s",
                           loader_show(v, tmp, sizeof tmp));
    *out = d;
    return 0;
}

static int inbound_key(struct loader *L, const char *key, const struct ynode *k,
                       const struct ynode *v, void *obj)
{
    struct cfg_inbound *in = obj;
    (void)k;
    if (strcmp(key, "listen") == 0)
        return loader_strlist(L, v, check_listen, false, &in->listen);
    if (strcmp(key, "domains") == 0)
        return loader_strlist(L, v, loader_check_domain, true, &in->domains);
    if (strcmp(key, "secret_file") == 0) {
        /* The path only: the secret is read when the engine starts, like
         * the other secrets (config_load_keys checks the file's mode). */
        in->secret_file_line = v->line;
        in->secret_file_col = v->col;
        return loader_str(L, v, &in->secret_file);
    }
    if (strcmp(key, "max_message_bytes") == 0)
        return loader_size(L, v, 4096, 64u << 20, &in->max_message_bytes);
    if (strcmp(key, "max_connections") == 0)
        return loader_u32(L, v, 1, 10000, &in->max_connections);
    if (strcmp(key, "timeout") == 0)
        return loader_duration(L, v, 1000, &in->timeout_ms);
    if (strcmp(key, "index_ttl") == 0)
        return loader_duration(L, v, 60 * 1000, &in->index_ttl_ms);
    if (strcmp(key, "rate") == 0)
        return loader_u32(L, v, 1, 100000, &in->rate_per_s);
    if (strcmp(key, "complaint_rate") == 0)
        return read_share(L, v, &in->complaint_rate);
    if (strcmp(key, "complaint_min_delivered") == 0)
        return loader_u32(L, v, 1, 100000000, &in->complaint_min_delivered);
    if (strcmp(key, "complaint_suspend") == 0)
        return loader_duration(L, v, 60 * 1000, &in->complaint_suspend_ms);
    return LOADER_UNKNOWN_KEY;
}

int loader_inbound(struct loader *L, const struct ynode *k, const struct ynode *v)
{
    struct cfg_inbound *in = &L->cfg->inbound;
    int rc = loader_walk(L, v, "inbound", inbound_key, in);
    if (rc)
        return rc;
    if (in->listen.n && in->domains.n == 0)
        return loader_fail(L, k, "inbound.listen needs inbound.domains: the return domains it "
                                 "accepts mail for (it is never an open relay)");
    if (in->listen.n && !in->secret_file)
        return loader_fail(L, k, "inbound.listen needs inbound.secret_file: the secret the "
                                 "VERP return paths are signed with");
    return 0;
}
