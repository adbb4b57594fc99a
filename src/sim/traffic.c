/* The traffic file of `herald simulate` (sim.h): JSON Lines, each a batch
 * of jobs or a receiving site's behaviour. Input from outside: every field
 * is checked for type and range, unknown keys are refused (a typo should
 * not silently simulate something else), and memory grows only with the
 * number of lines (names are interned). Fuzzed by tests/fuzz/fuzz_traffic.c. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald/core.h"
#include "herald/job.h"
#include "herald/sim.h"

#define MAX_LINE    (64 * 1024)
#define MAX_SECONDS (366.0 * 86400)

void sim_traffic_init(struct sim_traffic *t)
{
    memset(t, 0, sizeof *t);
    t->default_site = -1;
}

static void site_free(struct sim_site *s)
{
    free(s->name);
    for (size_t i = 0; i < s->n_mx; i++)
        free(s->mx[i]);
    free(s->reply);
    free(s->tempfail_reply);
    free(s->bounce_reply);
}

void sim_traffic_free(struct sim_traffic *t)
{
    for (size_t i = 0; i < t->n_sites; i++)
        site_free(&t->sites[i]);
    for (size_t i = 0; i < t->n_names; i++)
        free(t->names[i]);
    free(t->sites);
    free(t->jobs);
    free(t->names);
    free(t->hash);
    free(t->site_of);
    sim_traffic_init(t);
}

const char *sim_traffic_name(const struct sim_traffic *t, uint32_t idx)
{
    return idx < t->n_names ? t->names[idx] : "?";
}

static uint32_t fnv(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)(*s >= 'A' && *s <= 'Z' ? *s + 32 : *s)) * 16777619u;
    return h;
}

static int rehash(struct sim_traffic *t, size_t cap)
{
    uint32_t *h = calloc(cap, sizeof *h);
    if (!h) return -ENOMEM;
    for (size_t i = 0; i < t->n_names; i++) {
        size_t k = fnv(t->names[i]) & (cap - 1);
        while (h[k])
            k = (k + 1) & (cap - 1);
        h[k] = (uint32_t)i + 1;
    }
    free(t->hash);
    t->hash = h;
    t->hash_cap = cap;
    return 0;
}

/* The index of a name (case-insensitive), added when new. */
static int intern(struct sim_traffic *t, const char *s, uint32_t *out)
{
    if (t->hash_cap == 0 || (t->n_names + 1) * 2 > t->hash_cap)
        if (rehash(t, t->hash_cap ? t->hash_cap * 2 : 64) < 0) return -ENOMEM;
    size_t k = fnv(s) & (t->hash_cap - 1);
    while (t->hash[k]) {
        if (strcasecmp(t->names[t->hash[k] - 1], s) == 0) {
            *out = t->hash[k] - 1;
            return 0;
        }
        k = (k + 1) & (t->hash_cap - 1);
    }
    if (t->n_names == t->cap_names) {
        size_t cap = t->cap_names ? t->cap_names * 2 : 32;
        char **n = realloc(t->names, cap * sizeof *n);
        size_t *so = realloc(t->site_of, cap * sizeof *so);
        if (n) t->names = n;
        if (so) t->site_of = so;
        if (!n || !so) return -ENOMEM;
        t->cap_names = cap;
    }
    char *copy = strdup(s);
    if (!copy) return -ENOMEM;
    t->names[t->n_names] = copy;
    t->site_of[t->n_names] = SIZE_MAX;
    t->hash[k] = (uint32_t)t->n_names + 1;
    *out = (uint32_t)t->n_names++;
    return 0;
}

static int fail(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -HERR_MALFORMED;
}

/* A number in [lo, hi], or `dflt` when absent. */
static int get_num(json_t *o, const char *key, double lo, double hi, double dflt, double *out,
                   char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    if (!v) {
        *out = dflt;
        return 0;
    }
    if (!json_is_number(v)) return fail(err, errlen, "\"%s\" must be a number", key);
    double d = json_number_value(v);
    if (!isfinite(d) || d < lo || d > hi)
        return fail(err, errlen, "\"%s\" must be between %g and %g", key, lo, hi);
    *out = d;
    return 0;
}

/* A non-empty string without control characters, at most max bytes. */
static int get_str(json_t *o, const char *key, bool required, size_t max, const char **out,
                   char *err, size_t errlen)
{
    json_t *v = json_object_get(o, key);
    *out = NULL;
    if (!v) {
        if (required) return fail(err, errlen, "\"%s\" is required", key);
        return 0;
    }
    if (!json_is_string(v)) return fail(err, errlen, "\"%s\" must be a string", key);
    const char *s = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n > max || strlen(s) != n)
        return fail(err, errlen, "\"%s\" must be 1 to %zu characters", key, max);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return fail(err, errlen, "\"%s\" holds a control character", key);
    *out = s;
    return 0;
}

static int check_keys(json_t *o, const char *const *allowed, char *err, size_t errlen)
{
    const char *key;
    json_t *v;
    json_object_foreach(o, key, v)
    {
        (void)v;
        bool ok = false;
        for (size_t i = 0; allowed[i] && !ok; i++)
            ok = strcmp(allowed[i], key) == 0;
        if (!ok) return fail(err, errlen, "unknown key \"%.40s\"", key);
    }
    return 0;
}

static const char *const job_keys[] = {"t",     "tenant", "domain",  "priority",
                                       "count", "over",   "expires", NULL};
static const char *const site_keys[] = {
    "site",   "mx",         "domains", "limit_per_s",    "limit_scope",  "tempfail",
    "bounce", "latency_ms", "reply",   "tempfail_reply", "bounce_reply", NULL};

static int parse_jobs(struct sim_traffic *t, json_t *o, unsigned lineno, char *err, size_t errlen)
{
    int rc = check_keys(o, job_keys, err, errlen);
    const char *tenant = NULL, *domain = NULL, *prio = NULL;
    double at = -1, count = 1, over = 0, expires = 0;
    if (rc < 0 || (rc = get_num(o, "t", 0, MAX_SECONDS, -1, &at, err, errlen)) < 0 ||
        (rc = get_str(o, "tenant", true, 64, &tenant, err, errlen)) < 0 ||
        (rc = get_str(o, "domain", true, 253, &domain, err, errlen)) < 0 ||
        (rc = get_str(o, "priority", false, 16, &prio, err, errlen)) < 0 ||
        (rc = get_num(o, "count", 1, SIM_MAX_JOBS, 1, &count, err, errlen)) < 0 ||
        (rc = get_num(o, "over", 0, MAX_SECONDS, 0, &over, err, errlen)) < 0 ||
        (rc = get_num(o, "expires", 0, MAX_SECONDS, 0, &expires, err, errlen)) < 0)
        return rc;
    if (at < 0) return fail(err, errlen, "\"t\" is required");
    if (count != floor(count)) return fail(err, errlen, "\"count\" must be a whole number");
    if (t->total + (uint64_t)count > SIM_MAX_JOBS)
        return fail(err, errlen, "more than %u jobs in the traffic", SIM_MAX_JOBS);
    int p = JOB_PRIO_NORMAL;
    if (prio && strcmp(prio, "high") == 0)
        p = JOB_PRIO_HIGH;
    else if (prio && strcmp(prio, "bulk") == 0)
        p = JOB_PRIO_BULK;
    else if (prio && strcmp(prio, "normal") != 0)
        return fail(err, errlen, "\"priority\" must be high, normal or bulk");
    if (t->n_jobs == t->cap_jobs) {
        size_t cap = t->cap_jobs ? t->cap_jobs * 2 : 16;
        struct sim_jobs *j = realloc(t->jobs, cap * sizeof *j);
        if (!j) return -ENOMEM;
        t->jobs = j;
        t->cap_jobs = cap;
    }
    struct sim_jobs *j = &t->jobs[t->n_jobs];
    memset(j, 0, sizeof *j);
    if (intern(t, tenant, &j->tenant) < 0 || intern(t, domain, &j->domain) < 0) return -ENOMEM;
    j->t_ms = llround(at * 1000);
    j->over_ms = llround(over * 1000);
    j->expires_ms = llround(expires * 1000);
    j->count = (uint64_t)count;
    j->priority = p;
    j->line = lineno;
    t->total += j->count;
    t->n_jobs++;
    return 0;
}

static int dup_opt(const char *s, const char *dflt, char **out)
{
    *out = strdup(s ? s : dflt);
    return *out ? 0 : -ENOMEM;
}

/* A reply must start with a 4xx (or 5xx for bounce_reply) code. */
static int check_reply(const char *s, char first, const char *key, char *err, size_t errlen)
{
    if (s && !(s[0] == first && s[1] >= '0' && s[1] <= '9' && s[2] >= '0' && s[2] <= '9' &&
               (s[3] == ' ' || s[3] == 0)))
        return fail(err, errlen, "\"%s\" must start with a %cxx code", key, first);
    return 0;
}

static int parse_site(struct sim_traffic *t, json_t *o, unsigned lineno, char *err, size_t errlen)
{
    int rc = check_keys(o, site_keys, err, errlen);
    const char *name = NULL, *scope = NULL, *reply = NULL, *treply = NULL, *breply = NULL;
    double limit = 0, tempfail = 0, bounce = 0, latency = 100;
    if (rc < 0 || (rc = get_str(o, "site", true, 253, &name, err, errlen)) < 0 ||
        (rc = get_num(o, "limit_per_s", 0, 1e7, 0, &limit, err, errlen)) < 0 ||
        (rc = get_str(o, "limit_scope", false, 8, &scope, err, errlen)) < 0 ||
        (rc = get_num(o, "tempfail", 0, 1, 0, &tempfail, err, errlen)) < 0 ||
        (rc = get_num(o, "bounce", 0, 1, 0, &bounce, err, errlen)) < 0 ||
        (rc = get_num(o, "latency_ms", 0, 600000, 100, &latency, err, errlen)) < 0 ||
        (rc = get_str(o, "reply", false, 400, &reply, err, errlen)) < 0 ||
        (rc = get_str(o, "tempfail_reply", false, 400, &treply, err, errlen)) < 0 ||
        (rc = get_str(o, "bounce_reply", false, 400, &breply, err, errlen)) < 0 ||
        (rc = check_reply(reply, '4', "reply", err, errlen)) < 0 ||
        (rc = check_reply(treply, '4', "tempfail_reply", err, errlen)) < 0 ||
        (rc = check_reply(breply, '5', "bounce_reply", err, errlen)) < 0)
        return rc;
    if (tempfail + bounce > 1)
        return fail(err, errlen, "\"tempfail\" and \"bounce\" add up to more than 1");
    enum sim_scope sc = SIM_SCOPE_SITE;
    if (scope && strcmp(scope, "ip") == 0)
        sc = SIM_SCOPE_IP;
    else if (scope && strcmp(scope, "site") != 0)
        return fail(err, errlen, "\"limit_scope\" must be site or ip");
    json_t *mx = json_object_get(o, "mx"), *doms = json_object_get(o, "domains");
    if (mx && (!json_is_array(mx) || json_array_size(mx) == 0 || json_array_size(mx) > SIM_MAX_MX))
        return fail(err, errlen, "\"mx\" must be a list of 1 to %d host names", SIM_MAX_MX);
    if (doms && (!json_is_array(doms) || json_array_size(doms) > 1000))
        return fail(err, errlen, "\"domains\" must be a list of at most 1000 names");
    bool is_default = strcmp(name, "*") == 0;
    if (is_default && t->default_site >= 0) return fail(err, errlen, "a second \"*\" site");
    size_t idx = t->n_sites;
    /* Check every name before anything is kept. */
    for (size_t i = 0; doms && i < json_array_size(doms); i++) {
        json_t *d = json_array_get(doms, i);
        if (!json_is_string(d) || json_string_length(d) == 0 || json_string_length(d) > 253 ||
            strlen(json_string_value(d)) != json_string_length(d))
            return fail(err, errlen, "\"domains\" must hold domain names");
    }
    for (size_t i = 0; mx && i < json_array_size(mx); i++) {
        json_t *d = json_array_get(mx, i);
        if (!json_is_string(d) || json_string_length(d) == 0 || json_string_length(d) > 253 ||
            strlen(json_string_value(d)) != json_string_length(d))
            return fail(err, errlen, "\"mx\" must hold host names");
    }
    uint32_t ni;
    if (!is_default) {
        if (intern(t, name, &ni) < 0) return -ENOMEM;
        if (t->site_of[ni] != SIZE_MAX)
            return fail(err, errlen, "domain \"%.80s\" already has a site", name);
        for (size_t i = 0; doms && i < json_array_size(doms); i++) {
            uint32_t di;
            if (intern(t, json_string_value(json_array_get(doms, i)), &di) < 0) return -ENOMEM;
            if (t->site_of[di] != SIZE_MAX && t->site_of[di] != idx)
                return fail(err, errlen, "domain \"%.80s\" already has a site", t->names[di]);
        }
    }
    if (t->n_sites == t->cap_sites) {
        size_t cap = t->cap_sites ? t->cap_sites * 2 : 8;
        struct sim_site *s = realloc(t->sites, cap * sizeof *s);
        if (!s) return -ENOMEM;
        t->sites = s;
        t->cap_sites = cap;
    }
    struct sim_site *s = &t->sites[idx];
    memset(s, 0, sizeof *s);
    s->limit_per_s = limit;
    s->scope = sc;
    s->tempfail = tempfail;
    s->bounce = bounce;
    s->latency_ms = llround(latency);
    s->line = lineno;
    t->n_sites++; /* from here site_free owns what is set */
    if (dup_opt(name, NULL, &s->name) < 0 ||
        dup_opt(reply, "421 4.7.0 Try again later", &s->reply) < 0 ||
        dup_opt(treply, "451 4.3.0 Temporary failure, try again", &s->tempfail_reply) < 0 ||
        dup_opt(breply, "550 5.1.1 User unknown", &s->bounce_reply) < 0)
        return -ENOMEM;
    for (size_t i = 0; mx && i < json_array_size(mx); i++) {
        if (!(s->mx[i] = strdup(json_string_value(json_array_get(mx, i))))) return -ENOMEM;
        s->n_mx++;
    }
    if (is_default) {
        t->default_site = (int)idx;
        return 0;
    }
    t->site_of[ni] = idx;
    for (size_t i = 0; doms && i < json_array_size(doms); i++) {
        uint32_t di;
        if (intern(t, json_string_value(json_array_get(doms, i)), &di) < 0) return -ENOMEM;
        t->site_of[di] = idx;
    }
    return 0;
}

int sim_traffic_parse_line(struct sim_traffic *t, const char *line, size_t len, unsigned lineno,
                           char *err, size_t errlen)
{
    size_t i = 0;
    while (i < len && (line[i] == ' ' || line[i] == '\t' || line[i] == '\r'))
        i++;
    if (i == len || line[i] == '#') return 0;
    if (len > MAX_LINE) return fail(err, errlen, "line longer than %d bytes", MAX_LINE);
    json_error_t jerr;
    json_t *o = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!o) return fail(err, errlen, "not JSON: %s", jerr.text);
    int rc;
    if (!json_is_object(o))
        rc = fail(err, errlen, "a line must be a JSON object");
    else if (json_object_get(o, "site"))
        rc = parse_site(t, o, lineno, err, errlen);
    else if (json_object_get(o, "tenant") || json_object_get(o, "domain"))
        rc = parse_jobs(t, o, lineno, err, errlen);
    else
        rc = fail(err, errlen, "neither jobs (\"tenant\", \"domain\") nor a \"site\"");
    json_decref(o);
    return rc;
}

int sim_traffic_read(struct sim_traffic *t, FILE *f, const char *name, char *err, size_t errlen)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t n;
    unsigned lineno = 0;
    int rc = 0;
    char why[256];
    while ((n = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t len = (size_t)n;
        if (len && line[len - 1] == '\n') len--;
        rc = sim_traffic_parse_line(t, line, len, lineno, why, sizeof why);
        if (rc == -ENOMEM) snprintf(why, sizeof why, "out of memory");
        if (rc < 0) {
            snprintf(err, errlen, "%s:%u: %s", name, lineno, why);
            break;
        }
    }
    if (rc == 0 && ferror(f)) {
        snprintf(err, errlen, "%s: read error", name);
        rc = -EIO;
    }
    free(line);
    return rc;
}
