#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "herald/redis.h"

int cli_load_config(const char *path, struct config **out)
{
    if (!path) {
        fprintf(stderr, "herald: -c FILE is required (see --help)\n");
        return 2;
    }
    char err[512];
    if (config_load(path, out, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    return 0;
}

redisContext *cli_redis_connect(const struct config *cfg)
{
    struct redis_addr addr;
    const char *why = "";
    if (redis_addr_from_config(cfg, &addr, &why) < 0) {
        char url[512];
        fprintf(stderr, "herald: redis.url '%s': %s\n",
                config_url_masked(cfg->redis.url, url, sizeof url), why);
        return NULL;
    }
    struct timeval tv = {5, 0};
    redisContext *c = NULL;
    if (addr.tls) {
        int fd;
        if (cli_tls_tunnel(&addr, cfg, &fd) < 0)
            return NULL;
        c = redisConnectFd(fd);
    } else {
        c = redisConnectWithTimeout(addr.host, addr.port, tv);
    }
    if (!c || c->err) {
        fprintf(stderr, "herald: cannot connect to redis at %s:%u: %s\n", addr.host, addr.port,
                c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisReply *r = NULL;
    if (addr.password[0]) {
        r = addr.user[0] ? redisCommand(c, "AUTH %s %s", addr.user, addr.password)
                         : redisCommand(c, "AUTH %s", addr.password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "herald: redis AUTH failed: %s\n", r ? r->str : c->errstr);
            if (r)
                freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    if (addr.db) {
        r = redisCommand(c, "SELECT %d", addr.db);
        if (r)
            freeReplyObject(r);
    }
    return c;
}

int cli_open(const char *path, struct config **cfg, redisContext **redis)
{
    int rc = cli_load_config(path, cfg);
    if (rc)
        return rc;
    *redis = cli_redis_connect(*cfg);
    if (!*redis) {
        config_free(*cfg);
        *cfg = NULL;
        return 1;
    }
    return 0;
}

void cli_format_ms(long long ms, char *out, size_t outlen)
{
    time_t s = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&s, &tm);
    snprintf(out, outlen, "%04d-%02d-%02d %02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
             tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int)(ms % 1000));
}
