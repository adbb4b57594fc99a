/* redis:// URL parsing and address resolution (main thread only). */
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "herald/config.h"
#include "herald/redis.h"

static int copy_part(char *dst, size_t cap, const char *s, size_t n)
{
    if (n >= cap)
        return -1;
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

int redis_addr_parse(const char *url, struct redis_addr *out, const char **why)
{
    memset(out, 0, sizeof *out);
    out->port = 6379;
    const char *p = url;
    if (strncmp(p, "redis://", 8) == 0) {
        p += 8;
    } else if (strncmp(p, "rediss://", 9) == 0) {
        p += 9;
        out->tls = true;
    } else if (strncmp(p, "unix://", 7) == 0) {
        *why = "unix:// Redis URLs are not supported; use redis://host:port";
        return -HERR_MALFORMED;
    } else {
        *why = "URL must start with redis:// or rediss://";
        return -HERR_MALFORMED;
    }
    /* Only digits may follow the host, so the userinfo ends at the last '@':
     * a password may hold '@' or '/' (config_url_masked reads it the same). */
    const char *at = strrchr(p, '@');
    if (at) {
        const char *colon = memchr(p, ':', (size_t)(at - p));
        if (colon) {
            if (copy_part(out->user, sizeof out->user, p, (size_t)(colon - p)) ||
                copy_part(out->password, sizeof out->password, colon + 1,
                          (size_t)(at - colon - 1))) {
                *why = "user or password too long";
                return -HERR_MALFORMED;
            }
        } else if (copy_part(out->user, sizeof out->user, p, (size_t)(at - p))) {
            /* "user@host": an ACL user whose password comes from
             * password_file / password_env, never from the URL. */
            *why = "user too long";
            return -HERR_MALFORMED;
        }
        p = at + 1;
    }
    const char *end = p + strcspn(p, "/");
    const char *host = p, *host_end, *port_s = NULL;
    if (*p == '[') {
        host = p + 1;
        host_end = memchr(host, ']', (size_t)(end - host));
        if (!host_end) {
            *why = "unterminated [IPv6] host";
            return -HERR_MALFORMED;
        }
        if (host_end + 1 < end && host_end[1] == ':')
            port_s = host_end + 2;
    } else {
        host_end = memchr(p, ':', (size_t)(end - p));
        if (host_end)
            port_s = host_end + 1;
        else
            host_end = end;
    }
    if (host_end == host || copy_part(out->host, sizeof out->host, host, (size_t)(host_end - host))) {
        *why = "missing or overlong host";
        return -HERR_MALFORMED;
    }
    if (port_s) {
        char *e;
        long port = strtol(port_s, &e, 10);
        if (e != end || port < 1 || port > 65535) {
            *why = "port must be 1..65535";
            return -HERR_MALFORMED;
        }
        out->port = (uint16_t)port;
    }
    if (*end == '/' && end[1]) {
        char *e;
        long db = strtol(end + 1, &e, 10);
        if (*e || db < 0 || db > 1000000) {
            *why = "database must be a number";
            return -HERR_MALFORMED;
        }
        out->db = (int)db;
    }
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_family = AF_UNSPEC};
    struct addrinfo *res = NULL;
    char port_buf[8];
    snprintf(port_buf, sizeof port_buf, "%u", out->port);
    if (getaddrinfo(out->host, port_buf, &hints, &res) != 0 || !res) {
        *why = "cannot resolve host";
        return -HERR_CONFIG;
    }
    memcpy(&out->sa, res->ai_addr, res->ai_addrlen);
    out->sa_len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

int redis_addr_from_config(const struct config *cfg, struct redis_addr *out, const char **why)
{
    int rc = redis_addr_parse(cfg->redis.url, out, why);
    if (rc < 0 || out->password[0])
        return rc;
    /* The URL named no password: password_file / password_env supply it. */
    if (config_read_secret(cfg->redis.password_file, cfg->redis.password_env, out->password,
                           sizeof out->password) < 0) {
        *why = cfg->redis.password_env ? "redis.password_env names an unset variable"
                                       : "cannot read redis.password_file";
        return -HERR_CONFIG;
    }
    return 0;
}
