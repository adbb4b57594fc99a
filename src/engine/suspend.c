#include "suspend.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static const char *const kind_names[SUSP_KINDS] = {"tenant", "provider", "site", "ip", "domain"};

const char *susp_kind_name(enum susp_kind k)
{
    return (unsigned)k < SUSP_KINDS ? kind_names[k] : "?";
}

int susp_kind_of(const char *name)
{
    for (int k = 0; k < SUSP_KINDS; k++)
        if (strcmp(name, kind_names[k]) == 0) return k;
    return -1;
}

int susp_parse(const char *field, const char *value, struct susp_entry *out)
{
    memset(out, 0, sizeof *out);
    const char *eq = strchr(field, '=');
    if (!eq || eq == field || !eq[1]) return -1;
    char kind[16];
    size_t kl = (size_t)(eq - field);
    if (kl >= sizeof kind) return -1;
    memcpy(kind, field, kl);
    kind[kl] = '\0';
    int k = susp_kind_of(kind);
    if (k < 0 || strlen(eq + 1) >= sizeof out->value) return -1;
    out->kind = (enum susp_kind)k;
    snprintf(out->value, sizeof out->value, "%s", eq + 1);
    char *end;
    long long until = strtoll(value, &end, 10);
    if (end == value || until < 0) return -1;
    out->until_ms = until;
    /* "<until> <set_at> <reason>": the reason is the rest after two numbers. */
    const char *p = end;
    while (*p == ' ') p++;
    strtoll(p, &end, 10);
    p = end;
    while (*p == ' ') p++;
    snprintf(out->reason, sizeof out->reason, "%s", p);
    return 0;
}

static bool same(enum susp_kind k, const char *a, const char *b)
{
    if (!a || !b) return false;
    /* Names of hosts and domains are case-blind; tenants are not. */
    return k == SUSP_TENANT ? strcmp(a, b) == 0 : strcasecmp(a, b) == 0;
}

const struct susp_entry *susp_match(const struct susp_table *t, const struct susp_path *p,
                                    int64_t now_wall_ms, int64_t *until_ms)
{
    const char *vals[SUSP_KINDS] = {p->tenant, p->provider, p->site, p->ip, p->domain};
    const struct susp_entry *hit = NULL;
    int64_t until = 0;
    for (size_t i = 0; i < t->n; i++) {
        const struct susp_entry *e = &t->e[i];
        if (e->until_ms && e->until_ms <= now_wall_ms) continue; /* expired */
        if (!same(e->kind, e->value, vals[e->kind])) continue;
        int64_t u = e->until_ms ? e->until_ms : now_wall_ms + SUSP_RECHECK_MS;
        if (u > now_wall_ms + SUSP_RECHECK_MS) u = now_wall_ms + SUSP_RECHECK_MS;
        if (!hit || u > until) {
            hit = e;
            until = u;
        }
    }
    if (hit && until_ms) *until_ms = until;
    return hit;
}
