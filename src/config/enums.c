/* The words of every enum-valued config key, one table each. The loader
 * parses with them and check-config prints with them, so a spelling can
 * never be accepted under one name and shown under another. */
#include <stdio.h>
#include <string.h>

#include "config/loader.h"
#include "herald/dkim.h"
#include "herald/job.h"

#define ENUM_TABLE(ident, ...)                                                                     \
    static const struct cfg_enum_name ident##_names[] = {__VA_ARGS__};                             \
    const struct cfg_enum ident = {ident##_names, HERALD_ARRAY_LEN(ident##_names)}

/* CFG_TLS_UNSET has no spelling: it is what an absent key leaves. */
ENUM_TABLE(cfg_enum_tls_policy, {"opportunistic", CFG_TLS_OPPORTUNISTIC},
           {"required", CFG_TLS_REQUIRED}, {"verify", CFG_TLS_VERIFY});
ENUM_TABLE(cfg_enum_relay_tls, {"starttls", CFG_RELAY_TLS_STARTTLS},
           {"tls", CFG_RELAY_TLS_IMPLICIT}, {"none", CFG_RELAY_TLS_NONE});
ENUM_TABLE(cfg_enum_from_fallback, {"send", CFG_FROM_SEND}, {"rewrite", CFG_FROM_REWRITE},
           {"refuse", CFG_FROM_REFUSE});
ENUM_TABLE(cfg_enum_dkim_alg, {"rsa-sha256", DKIM_ALG_RSA_SHA256},
           {"ed25519-sha256", DKIM_ALG_ED25519_SHA256});
ENUM_TABLE(cfg_enum_rcpt_policy, {"defer", CFG_RCPT_DEFER}, {"drop", CFG_RCPT_DROP});
/* A job's `priority` field (job.h), as recipients.exempt names it. */
ENUM_TABLE(cfg_enum_priority, {"high", JOB_PRIO_HIGH}, {"normal", JOB_PRIO_NORMAL},
           {"bulk", JOB_PRIO_BULK});
ENUM_TABLE(cfg_enum_typo_policy, {"warn", CFG_TYPO_WARN}, {"reject", CFG_TYPO_REJECT},
           {"off", CFG_TYPO_OFF});
/* "suspend" takes a duration after it (reputation.c reads that part). */
ENUM_TABLE(cfg_enum_rep_action, {"backoff", CFG_REP_BACKOFF}, {"ignore", CFG_REP_IGNORE},
           {"suspend", CFG_REP_SUSPEND});

const char *cfg_enum_name(const struct cfg_enum *e, int value)
{
    for (size_t i = 0; i < e->n; i++)
        if (e->names[i].value == value) return e->names[i].name;
    return NULL;
}

int cfg_enum_value(const struct cfg_enum *e, const char *name, int *out)
{
    for (size_t i = 0; name && i < e->n; i++) {
        if (strcmp(e->names[i].name, name) == 0) {
            *out = e->names[i].value;
            return 0;
        }
    }
    return -HERR_MALFORMED;
}

const char *cfg_enum_expected(const struct cfg_enum *e, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < e->n && used < len; i++) {
        const char *sep = i == 0 ? "" : i + 1 == e->n ? " or " : ", ";
        int w = snprintf(buf + used, len - used, "%s%s", sep, e->names[i].name);
        if (w < 0) break;
        used += (size_t)w;
    }
    return buf;
}

int loader_enum(struct loader *L, const struct ynode *k, const struct ynode *v,
                const struct cfg_enum *e, int *out)
{
    if (ynode_is_null(v)) return 0;
    if (v->type == YNODE_SCALAR && strlen(v->str) == v->len && cfg_enum_value(e, v->str, out) == 0)
        return 0;
    char tmp[160], expected[160];
    return loader_fail(L, v, "unknown value %s for %s (expected %s)",
                       loader_show(v, tmp, sizeof tmp), k ? k->str : "this key",
                       cfg_enum_expected(e, expected, sizeof expected));
}

const char *config_tls_policy_name(enum cfg_tls_policy p)
{
    const char *s = cfg_enum_name(&cfg_enum_tls_policy, (int)p);
    return s ? s : "inherit";
}

const char *config_relay_tls_name(enum cfg_relay_tls t)
{
    const char *s = cfg_enum_name(&cfg_enum_relay_tls, (int)t);
    return s ? s : "?";
}

const char *config_from_fallback_name(enum cfg_from_fallback f)
{
    const char *s = cfg_enum_name(&cfg_enum_from_fallback, (int)f);
    return s ? s : "?";
}

const char *config_rcpt_policy_name(enum cfg_rcpt_policy p)
{
    const char *s = cfg_enum_name(&cfg_enum_rcpt_policy, (int)p);
    return s ? s : "?";
}

const char *config_typo_policy_name(enum cfg_typo_policy p)
{
    const char *s = cfg_enum_name(&cfg_enum_typo_policy, (int)p);
    return s ? s : "?";
}

const char *config_rep_action_name(enum cfg_rep_action a)
{
    const char *s = cfg_enum_name(&cfg_enum_rep_action, (int)a);
    return s ? s : "?";
}
