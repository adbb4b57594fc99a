/* The Redis key schema (include/herald/keys.h). The Lua scripts receive
 * every key they touch from here as KEYS[], except the few they derive
 * from a prefix passed in (the stats day hash, the recipient cap slots),
 * whose shapes are documented next to the prefix in the header. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "herald/keys.h"

static int keyf(char *out, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int keyf(char *out, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out, cap, fmt, ap);
    va_end(ap);
    return n < 0 || (size_t)n >= cap ? -ENAMETOOLONG : 0;
}

int keys_init(struct keys *k, const char *prefix)
{
    memset(k, 0, sizeof *k);
    if (!prefix)
        prefix = "herald:";
    if (keyf(k->prefix, sizeof k->prefix, "%s", prefix) < 0)
        return -ENAMETOOLONG;
    const char *p = k->prefix;
    keyf(k->retry, sizeof k->retry, "%sretry", p);
    keyf(k->job_prefix, sizeof k->job_prefix, "%sjob:", p);
    keyf(k->stats, sizeof k->stats, "%sstats", p);
    keyf(k->rcap, sizeof k->rcap, "%srcap", p);
    keyf(k->suppress, sizeof k->suppress, "%ssuppress", p);
    keyf(k->reputation, sizeof k->reputation, "%sreputation", p);
    keyf(k->warmup, sizeof k->warmup, "%swarmup", p);
    keyf(k->status_glob, sizeof k->status_glob, "%sstatus:*", p);
    return 0;
}

int keys_state(const struct keys *k, const char *tenant, const char *id, char *out, size_t cap)
{
    return keyf(out, cap, "%sstate:%s:%s", k->prefix, tenant ? tenant : "-", id ? id : "-");
}

int keys_idem(const struct keys *k, const char *tenant, const char *id, char *out, size_t cap)
{
    return keyf(out, cap, "%sidem:%s:%s", k->prefix, tenant ? tenant : "-", id ? id : "-");
}

int keys_suppress(const struct keys *k, const char *tenant, char *out, size_t cap)
{
    if (!tenant)
        return keyf(out, cap, "%s", k->suppress);
    return keyf(out, cap, "%ssuppress:%s", k->prefix, tenant);
}

int keys_suppress_info(const struct keys *k, const char *tenant, char *out, size_t cap)
{
    if (!tenant)
        return keyf(out, cap, "%ssuppressinfo", k->prefix);
    return keyf(out, cap, "%ssuppressinfo:%s", k->prefix, tenant);
}

int keys_tenant_rate(const struct keys *k, const char *tenant, char *out, size_t cap)
{
    return keyf(out, cap, "%strate:%s", k->prefix, tenant ? tenant : "-");
}

int keys_suspend(const struct keys *k, char *out, size_t cap)
{
    return keyf(out, cap, "%ssuspend", k->prefix);
}

int keys_verp(const struct keys *k, uint64_t ref, char *out, size_t cap)
{
    return keyf(out, cap, "%sverp:%016llx", k->prefix, (unsigned long long)ref);
}

int keys_verp_msgid(const struct keys *k, const char *message_id, char *out, size_t cap)
{
    return keyf(out, cap, "%sverp:mid:%s", k->prefix, message_id ? message_id : "");
}

int keys_verp_once(const struct keys *k, uint64_t ref, const char *kind, char *out, size_t cap)
{
    return keyf(out, cap, "%sverp:%016llx:%s", k->prefix, (unsigned long long)ref, kind);
}

int keys_job(const struct keys *k, const char *stream_id, char *out, size_t cap)
{
    return keyf(out, cap, "%s%s", k->job_prefix, stream_id);
}

int keys_status(const struct keys *k, const char *consumer, char *out, size_t cap)
{
    return keyf(out, cap, "%sstatus:%s", k->prefix, consumer);
}

int keys_stats_day(const struct keys *k, const char *tenant, int y, int m, int d, char *out,
                   size_t cap)
{
    return keyf(out, cap, "%s:%s:%04d-%02d-%02d", k->stats, tenant, y, m, d);
}

int keys_path_rate(const struct keys *k, const char *ip, const char *group, char *out, size_t cap)
{
    return keyf(out, cap, "%spath:%s|%s", k->prefix, ip && ip[0] ? ip : "-", group);
}

int keys_path_conns(const struct keys *k, const char *ip, const char *group, char *out,
                    size_t cap)
{
    return keyf(out, cap, "%sconns:%s|%s", k->prefix, ip && ip[0] ? ip : "-", group);
}

int keys_path_reputation(const struct keys *k, const char *ip, const char *group, char *out,
                         size_t cap)
{
    return keyf(out, cap, "%srep:%s|%s", k->prefix, ip && ip[0] ? ip : "-", group);
}

int keys_unsub_once(const struct keys *k, const char *tenant, unsigned day, const char *rcpt,
                    char *out, size_t cap)
{
    return keyf(out, cap, "%sunsub:%s:%u:%s", k->prefix, tenant, day, rcpt);
}
