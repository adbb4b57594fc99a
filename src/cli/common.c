#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "herald/redis.h"
#include "msg/msg.h"

const char *cli_config_path(const char *given)
{
    if (given) return given;
    const char *env = getenv("HERALD_CONFIG");
    return env && env[0] ? env : CLI_DEFAULT_CONFIG;
}

int cli_load_config(const char *path, struct config **out)
{
    const char *given = path;
    path = cli_config_path(path);
    char err[512];
    if (config_load(path, out, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        if (!given)
            fprintf(stderr, "herald: no -c FILE given: the config is $HERALD_CONFIG, else %s\n",
                    CLI_DEFAULT_CONFIG);
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

/* A byte the terminal would act on: C0 controls and DEL, the UTF-8 form
 * of a C1 control (U+0080..U+009F, CSI among them), or a byte that is not
 * part of valid UTF-8 (a Latin-1 terminal reads 0x9b as CSI). */
static size_t term_plain_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x20 || s[0] == 0x7f || s[0] == '\\') return 0;
    size_t k = msg_utf8_seq_len(s, n);
    if (k == 2 && s[0] == 0xc2 && s[1] < 0xa0) return 0;
    return k;
}

/* The piece shown for the bytes at s: into esc when escaped. Sets *used to
 * the input bytes it stands for and returns its length. */
static size_t term_piece(const unsigned char *s, size_t n, char esc[4], const char **piece,
                         size_t *used)
{
    static const char hex[] = "0123456789abcdef";
    size_t k = term_plain_len(s, n);
    if (k) {
        *piece = (const char *)s;
        *used = k;
        return k;
    }
    esc[0] = '\\';
    esc[1] = s[0] == '\\' ? '\\' : 'x';
    esc[2] = hex[s[0] >> 4];
    esc[3] = hex[s[0] & 15];
    *piece = esc;
    *used = 1;
    return s[0] == '\\' ? 2 : 4;
}

const char *cli_term_safe(char *out, size_t outlen, const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    char esc[4];
    const char *piece;
    size_t used, need = 0, o = 0;
    if (outlen < 4) {
        if (outlen) out[0] = '\0';
        return out;
    }
    for (size_t i = 0; i < n; i += used)
        need += term_piece(u + i, n - i, esc, &piece, &used);
    /* What does not fit ends in "...", so keep room for it. */
    size_t room = need < outlen ? outlen - 1 : outlen - 4;
    for (size_t i = 0; i < n; i += used) {
        size_t len = term_piece(u + i, n - i, esc, &piece, &used);
        if (o + len > room) break;
        memcpy(out + o, piece, len);
        o += len;
    }
    if (need >= outlen) {
        memcpy(out + o, "...", 3);
        o += 3;
    }
    out[o] = '\0';
    return out;
}
