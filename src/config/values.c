/* Typed readers and validators for config values: each accepts one ytree
 * node, checks it, and reports a positioned error naming what was expected
 * and what was found. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/loader.h"

int loader_fail(struct loader *L, const struct ynode *at, const char *fmt, ...)
{
    if (L->errlen == 0 || L->err[0] != '\0') return -HERR_CONFIG;
    int n = snprintf(L->err, L->errlen, "%s:%d:%d: ", L->name, at ? at->line : 1, at ? at->col : 1);
    if (n > 0 && (size_t)n < L->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(L->err + n, L->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return -HERR_CONFIG;
}

int loader_oom(struct loader *L)
{
    if (L->errlen && L->err[0] == '\0') snprintf(L->err, L->errlen, "%s: out of memory", L->name);
    return -ENOMEM;
}

const char *loader_show(const struct ynode *n, char *buf, size_t len)
{
    if (!n || n->type == YNODE_SCALAR) {
        char q[64];
        log_quote(q, sizeof q, n ? n->str : "", n ? n->len : 0);
        snprintf(buf, len, "'%s'", q);
    } else {
        snprintf(buf, len, "%s", n->type == YNODE_SEQ ? "a list" : "a mapping");
    }
    return buf;
}

const char *loader_in(const char *where, char *buf, size_t len)
{
    if (!where || !*where)
        snprintf(buf, len, "at top level");
    else
        snprintf(buf, len, "in %s", where);
    return buf;
}

void loader_lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

static int key_cmp(const void *a, const void *b)
{
    const struct ynode *x = *(const struct ynode *const *)a, *y = *(const struct ynode *const *)b;
    int c = strcmp(x->str, y->str);
    if (c) return c;
    if (x->line != y->line) return x->line < y->line ? -1 : 1;
    return x->col < y->col ? -1 : x->col > y->col;
}

static bool before(const struct ynode *a, const struct ynode *b)
{
    return a->line < b->line || (a->line == b->line && a->col < b->col);
}

/* Duplicates are found by sorting the keys, so a mapping with many
 * tenants costs n log n rather than n^2; the reported duplicate is the one
 * that appears first in the file. */
int loader_check_map(struct loader *L, const struct ynode *m, const char *where)
{
    char tmp[160], in[200];
    if (m->type != YNODE_MAP)
        return loader_fail(L, m, "expected a mapping %s, got %s", loader_in(where, in, sizeof in),
                           loader_show(m, tmp, sizeof tmp));
    size_t n = m->n_children / 2;
    if (n == 0) return 0;
    const struct ynode **keys = malloc(n * sizeof(*keys));
    if (!keys) return loader_oom(L);
    size_t i = 0;
    for (const struct ynode *k = m->child; k && k->next; k = k->next->next) {
        if (k->type != YNODE_SCALAR) {
            free(keys);
            return loader_fail(L, k, "expected a plain key %s, got %s",
                               loader_in(where, in, sizeof in), loader_show(k, tmp, sizeof tmp));
        }
        if (strlen(k->str) != k->len) {
            free(keys);
            return loader_fail(L, k, "NUL byte in key %s", loader_in(where, in, sizeof in));
        }
        keys[i++] = k;
    }
    qsort(keys, i, sizeof(*keys), key_cmp);
    const struct ynode *dup = NULL, *first = NULL;
    /* Within a run of equal keys the sort puts the first occurrence first and
     * the earliest repeat second. */
    for (size_t j = 0; j + 1 < i; j++) {
        bool run_start = j == 0 || strcmp(keys[j - 1]->str, keys[j]->str) != 0;
        if (run_start && strcmp(keys[j]->str, keys[j + 1]->str) == 0 &&
            (!dup || before(keys[j + 1], dup))) {
            dup = keys[j + 1];
            first = keys[j];
        }
    }
    int rc = 0;
    if (dup)
        rc = loader_fail(L, dup, "duplicate key %s %s (first at line %d)",
                         loader_show(dup, tmp, sizeof tmp), loader_in(where, in, sizeof in),
                         first->line);
    free(keys);
    return rc;
}

int loader_walk(struct loader *L, const struct ynode *m, const char *where, loader_key_fn fn,
                void *obj)
{
    if (ynode_is_null(m)) return 0;
    int rc = loader_check_map(L, m, where);
    if (rc) return rc;
    for (const struct ynode *k = m->child; k && k->next; k = k->next->next) {
        rc = fn(L, k->str, k, k->next, obj);
        if (rc == LOADER_UNKNOWN_KEY) {
            char tmp[160], in[200];
            return loader_fail(L, k, "unknown key %s %s", loader_show(k, tmp, sizeof tmp),
                               loader_in(where, in, sizeof in));
        }
        if (rc) return rc;
    }
    return 0;
}

/* Common gate for scalar readers: rejects non-scalars and embedded NULs.
 * Returns 1 when v is null (keep the default), 0 to go on, or an error. */
static int scalar(struct loader *L, const struct ynode *v, const char *expected)
{
    char tmp[160];
    if (ynode_is_null(v)) return 1;
    if (v->type != YNODE_SCALAR || strlen(v->str) != v->len)
        return loader_fail(L, v, "expected %s, got %s", expected, loader_show(v, tmp, sizeof tmp));
    return 0;
}

int loader_str(struct loader *L, const struct ynode *v, char **out)
{
    int rc = scalar(L, v, "a string");
    if (rc) return rc > 0 ? 0 : rc;
    if (v->len == 0) return loader_fail(L, v, "expected a non-empty string");
    /* Config strings end up in headers, commands and log lines: one line. */
    for (size_t i = 0; i < v->len; i++) {
        unsigned char c = (unsigned char)v->str[i];
        if (c < 0x20 || c == 0x7f) {
            char tmp[160];
            return loader_fail(L, v, "control character in %s", loader_show(v, tmp, sizeof tmp));
        }
    }
    char *s = strdup(v->str);
    if (!s) return loader_oom(L);
    free(*out);
    *out = s;
    return 0;
}

int loader_uint(struct loader *L, const struct ynode *v, uint64_t min, uint64_t max, uint64_t *out)
{
    char expected[96], tmp[160];
    snprintf(expected, sizeof expected, "an integer from %llu to %llu", (unsigned long long)min,
             (unsigned long long)max);
    int rc = scalar(L, v, expected);
    if (rc) return rc > 0 ? 0 : rc;
    uint64_t x = 0;
    const char *s = v->str;
    bool ok = isdigit((unsigned char)*s);
    for (; ok && *s; s++) {
        if (!isdigit((unsigned char)*s) || x > (UINT64_MAX - 9) / 10)
            ok = false;
        else
            x = x * 10 + (uint64_t)(*s - '0');
    }
    if (!ok || x < min || x > max)
        return loader_fail(L, v, "expected %s, got %s", expected, loader_show(v, tmp, sizeof tmp));
    *out = x;
    return 0;
}

int loader_u32(struct loader *L, const struct ynode *v, uint32_t min, uint32_t max, uint32_t *out)
{
    uint64_t x = *out;
    int rc = loader_uint(L, v, min, max, &x);
    if (rc == 0) *out = (uint32_t)x;
    return rc;
}

int loader_port(struct loader *L, const struct ynode *v, uint16_t *out)
{
    uint64_t x = *out;
    int rc = loader_uint(L, v, 1, 65535, &x);
    if (rc == 0) *out = (uint16_t)x;
    return rc;
}

int loader_bool(struct loader *L, const struct ynode *v, bool *out)
{
    static const char *const yes[] = {"true", "True", "TRUE", "yes", "Yes", "YES", "on", "On"};
    static const char *const no[] = {"false", "False", "FALSE", "no", "No", "NO", "off", "Off"};
    int rc = scalar(L, v, "true or false");
    if (rc) return rc > 0 ? 0 : rc;
    for (size_t i = 0; i < HERALD_ARRAY_LEN(yes); i++) {
        if (strcmp(v->str, yes[i]) == 0) {
            *out = true;
            return 0;
        }
        if (strcmp(v->str, no[i]) == 0) {
            *out = false;
            return 0;
        }
    }
    char tmp[160];
    return loader_fail(L, v, "expected true or false, got %s", loader_show(v, tmp, sizeof tmp));
}

int loader_duration(struct loader *L, const struct ynode *v, int64_t min_ms, int64_t *out)
{
    char tmp[160];
    int rc = scalar(L, v, "a duration like 30s");
    if (rc) return rc > 0 ? 0 : rc;
    int64_t ms;
    if (config_parse_duration(v->str, &ms) < 0)
        return loader_fail(L, v, "expected a duration like 30s, got %s",
                           loader_show(v, tmp, sizeof tmp));
    if (ms < min_ms)
        return loader_fail(L, v, "expected a duration of at least %lldms, got %s",
                           (long long)min_ms, loader_show(v, tmp, sizeof tmp));
    *out = ms;
    return 0;
}

int loader_rate(struct loader *L, const struct ynode *v, struct cfg_rate *out)
{
    char tmp[160];
    int rc = scalar(L, v, "a rate like 3600/h");
    if (rc) return rc > 0 ? 0 : rc;
    if (config_parse_rate(v->str, out) < 0)
        return loader_fail(L, v, "expected a rate like 3600/h, got %s",
                           loader_show(v, tmp, sizeof tmp));
    return 0;
}

int loader_size(struct loader *L, const struct ynode *v, uint32_t min, uint32_t max, uint32_t *out)
{
    char tmp[160];
    int rc = scalar(L, v, "a size like 1MiB");
    if (rc) return rc > 0 ? 0 : rc;
    uint64_t n;
    if (config_parse_size(v->str, &n) < 0)
        return loader_fail(L, v, "expected a size like 1MiB, got %s",
                           loader_show(v, tmp, sizeof tmp));
    if (n < min || n > max)
        return loader_fail(L, v, "expected a size from %u to %u bytes, got %s", min, max,
                           loader_show(v, tmp, sizeof tmp));
    *out = (uint32_t)n;
    return 0;
}

int loader_tls(struct loader *L, const struct ynode *k, const struct ynode *v,
               enum cfg_tls_policy *out)
{
    int x = (int)*out;
    int rc = loader_enum(L, k, v, &cfg_enum_tls_policy, &x);
    *out = (enum cfg_tls_policy)x;
    return rc;
}

int loader_name_key(struct loader *L, const struct ynode *key, const char *what)
{
    const char *expected = loader_check_name(key->str);
    if (expected) {
        char tmp[160];
        return loader_fail(L, key, "invalid %s name %s: expected %s", what,
                           loader_show(key, tmp, sizeof tmp), expected);
    }
    return 0;
}

const char *loader_check_ip(const char *s)
{
    unsigned char addr[16];
    if (inet_pton(AF_INET, s, addr) == 1 || inet_pton(AF_INET6, s, addr) == 1) return NULL;
    return "an IP address";
}

/* Letters, digits, '-' and '_' in dot-separated labels of 1..63 bytes, at
 * most 253 in all; one trailing dot is tolerated. IP literals pass too. */
const char *loader_check_host(const char *s)
{
    size_t len = strlen(s), label = 0;
    if (len == 0 || len > 254 || (len == 254 && s[253] != '.') || s[0] == '.') return "a host name";
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '.') {
            if (label == 0) return "a host name";
            label = 0;
        } else if (isalnum(c) || c == '-' || c == '_') {
            if (++label > 63) return "a host name";
        } else if (c == ':' && loader_check_ip(s) == NULL) {
            return NULL;
        } else {
            return "a host name";
        }
    }
    return NULL;
}

const char *loader_check_domain(const char *s)
{
    if (loader_check_host(s) || strchr(s, ':')) return "a domain name";
    return NULL;
}

const char *loader_check_pattern(const char *s)
{
    static const char expected[] = "a domain, *.domain or *";
    if (strcmp(s, "*") == 0) return NULL;
    if (s[0] == '*') {
        if (s[1] != '.' || loader_check_domain(s + 2)) return expected;
        return NULL;
    }
    return loader_check_domain(s) ? expected : NULL;
}

/* "ip", "ip:port" for IPv4, "[ip6]:port" or a bare IPv6 literal. */
const char *loader_check_dns_server(const char *s)
{
    static const char expected[] = "a server like 127.0.0.1:53 or [::1]:53";
    char host[64];
    const char *port = NULL;
    if (loader_check_ip(s) == NULL) return NULL;
    if (s[0] == '[') {
        const char *end = strchr(s, ']');
        if (!end || (size_t)(end - s - 1) >= sizeof host || end[1] != ':') return expected;
        memcpy(host, s + 1, (size_t)(end - s - 1));
        host[end - s - 1] = '\0';
        port = end + 2;
    } else {
        const char *colon = strchr(s, ':');
        if (!colon || (size_t)(colon - s) >= sizeof host) return expected;
        memcpy(host, s, (size_t)(colon - s));
        host[colon - s] = '\0';
        port = colon + 1;
    }
    if (loader_check_ip(host)) return expected;
    unsigned long p = 0;
    size_t n = 0;
    for (; isdigit((unsigned char)port[n]) && n < 6; n++)
        p = p * 10 + (unsigned long)(port[n] - '0');
    if (n == 0 || port[n] != '\0' || p < 1 || p > 65535) return expected;
    return NULL;
}

/* A plain ASCII mailbox local@domain. Quoted local parts and UTF-8 are not
 * accepted for a tenant's own addresses: they must work everywhere. */
const char *loader_check_address(const char *s)
{
    static const char expected[] = "an address like user@example.test";
    const char *at = strrchr(s, '@');
    if (!at || at == s || at - s > 64) return expected;
    for (const char *p = s; p < at; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f || strchr("<>()[]\\,;:\"@", c)) return expected;
    }
    if (s[0] == '.' || at[-1] == '.' || strstr(s, "..")) return expected;
    if (loader_check_domain(at + 1)) return expected;
    return NULL;
}

/* Tenant, pool and provider names: [A-Za-z0-9_.-]{1,64}. */
const char *loader_check_name(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++) {
        unsigned char c = (unsigned char)s[n];
        if (!isalnum(c) && c != '_' && c != '.' && c != '-')
            return "a name of 1-64 characters from A-Z a-z 0-9 _ . -";
    }
    if (n == 0 || n > 64) return "a name of 1-64 characters from A-Z a-z 0-9 _ . -";
    return NULL;
}

void loader_strlist_free(struct cfg_strlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->items[i]);
    free(l->items);
    l->items = NULL;
    l->n = 0;
}

int loader_strlist(struct loader *L, const struct ynode *v, loader_check_fn check, bool lower,
                   struct cfg_strlist *out)
{
    if (ynode_is_null(v)) return 0;
    char tmp[160];
    if (v->type == YNODE_MAP) return loader_fail(L, v, "expected a list, got a mapping");
    const struct ynode *first = v->type == YNODE_SEQ ? v->child : v;
    size_t n = v->type == YNODE_SEQ ? v->n_children : 1;
    loader_strlist_free(out);
    if (n == 0) return 0;
    out->items = calloc(n, sizeof(*out->items));
    if (!out->items) return loader_oom(L);
    for (const struct ynode *it = first; it && out->n < n; it = it->next) {
        char *s = NULL;
        if (ynode_is_null(it)) return loader_fail(L, it, "empty list item");
        int rc = loader_str(L, it, &s);
        if (rc) return rc;
        out->items[out->n++] = s;
        if (lower) loader_lower(s);
        const char *expected = check ? check(s) : NULL;
        if (expected)
            return loader_fail(L, it, "expected %s, got %s", expected,
                               loader_show(it, tmp, sizeof tmp));
    }
    return 0;
}
