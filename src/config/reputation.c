/* The `reputation:` section: how each egress IP x provider pair scales its
 * limits from the receivers' replies, and which reply texts mean what.
 * Patterns are compiled here, once, so classification per reply is only a
 * regexec. */
#include <stdlib.h>
#include <string.h>

#include "config/loader.h"

static int read_double(struct loader *L, const struct ynode *v, double lo, double hi, double *out)
{
    if (ynode_is_null(v)) return 0;
    char tmp[160];
    if (v->type != YNODE_SCALAR)
        return loader_fail(L, v, "expected a number, got %s", loader_show(v, tmp, sizeof tmp));
    char *end = NULL;
    double d = strtod(v->str, &end);
    if (!end || end == v->str || *end || !(d >= lo && d <= hi))
        return loader_fail(L, v, "expected a number from %g to %g, got %s", lo, hi,
                           loader_show(v, tmp, sizeof tmp));
    *out = d;
    return 0;
}

struct rule_ctx {
    struct cfg_rep_rule *r;
    const struct ynode *match, *action;
};

static int rule_key(struct loader *L, const char *key, const struct ynode *k,
                    const struct ynode *v, void *obj)
{
    struct rule_ctx *c = obj;
    (void)k;
    if (strcmp(key, "match") == 0) {
        c->match = v;
        return loader_str(L, v, &c->r->match);
    }
    if (strcmp(key, "action") == 0) {
        c->action = v;
        char tmp[160];
        /* The action word from its table; only suspend takes an argument. */
        char word[16] = "";
        const char *arg = NULL;
        if (v->type == YNODE_SCALAR) {
            size_t n = strcspn(v->str, " ");
            if (n < sizeof word) {
                memcpy(word, v->str, n);
                word[n] = '\0';
                arg = v->str[n] ? v->str + n + 1 : NULL;
            }
        }
        int x;
        if (cfg_enum_value(&cfg_enum_rep_action, word, &x) != 0 ||
            (x == CFG_REP_SUSPEND) != (arg != NULL))
            return loader_fail(L, v, "expected backoff, ignore or 'suspend DURATION', got %s",
                               loader_show(v, tmp, sizeof tmp));
        c->r->action = (enum cfg_rep_action)x;
        if (x == CFG_REP_SUSPEND &&
            (config_parse_duration(arg, &c->r->suspend_ms) < 0 || c->r->suspend_ms < 1000))
            return loader_fail(L, v, "expected 'suspend DURATION' (at least 1s), got %s",
                               loader_show(v, tmp, sizeof tmp));
        return 0;
    }
    return LOADER_UNKNOWN_KEY;
}

static int rep_key(struct loader *L, const char *key, const struct ynode *k, const struct ynode *v,
                   void *obj)
{
    struct cfg_reputation *r = obj;
    (void)k;
    if (strcmp(key, "min") == 0) return read_double(L, v, 0.0, 1.0, &r->min);
    if (strcmp(key, "min_rate") == 0) return loader_rate(L, v, &r->min_rate);
    if (strcmp(key, "window") == 0) return loader_duration(L, v, 100, &r->window_ms);
    if (strcmp(key, "max") == 0) return read_double(L, v, 0.1, 10.0, &r->max);
    if (strcmp(key, "increase") == 0) return read_double(L, v, 0.0, 1.0, &r->increase);
    if (strcmp(key, "decrease") == 0) return read_double(L, v, 0.01, 1.0, &r->decrease);
    if (strcmp(key, "interval") == 0) return loader_duration(L, v, 1000, &r->interval_ms);
    if (strcmp(key, "rules") != 0) return LOADER_UNKNOWN_KEY;
    if (ynode_is_null(v)) return 0;
    char tmp[160];
    if (v->type != YNODE_SEQ)
        return loader_fail(L, v, "expected a list of {match, action}, got %s",
                           loader_show(v, tmp, sizeof tmp));
    r->rules = calloc(v->n_children ? v->n_children : 1, sizeof *r->rules);
    if (!r->rules) return loader_oom(L);
    for (const struct ynode *it = v->child; it; it = it->next) {
        struct cfg_rep_rule *rule = &r->rules[r->n_rules++];
        struct rule_ctx c = {rule, NULL, NULL};
        int rc = loader_walk(L, it, "reputation.rules", rule_key, &c);
        if (rc) return rc;
        if (!c.match) return loader_fail(L, it, "missing required key 'match' in reputation.rules");
        if (!c.action)
            return loader_fail(L, it, "missing required key 'action' in reputation.rules");
        int e = regcomp(&rule->re, rule->match, REG_EXTENDED | REG_ICASE | REG_NOSUB);
        if (e) {
            char why[128];
            regerror(e, &rule->re, why, sizeof why);
            return loader_fail(L, c.match, "bad regular expression: %s", why);
        }
        rule->compiled = true;
    }
    return 0;
}

int loader_reputation(struct loader *L, const struct ynode *k, const struct ynode *v)
{
    (void)k;
    struct cfg_reputation *r = &L->cfg->reputation;
    int rc = loader_walk(L, v, "reputation", rep_key, r);
    if (rc == 0 && r->min > r->max)
        return loader_fail(L, v, "reputation.min (%g) is above reputation.max (%g)", r->min,
                           r->max);
    return rc;
}

void config_reputation_free(struct cfg_reputation *r)
{
    for (size_t i = 0; i < r->n_rules; i++) {
        if (r->rules[i].compiled) regfree(&r->rules[i].re);
        free(r->rules[i].match);
    }
    free(r->rules);
    r->rules = NULL;
    r->n_rules = 0;
}
