/* A blocking Redis connection for threads without a ring (the inbound
 * listener): connect with a timeout, AUTH and SELECT as redis.url says,
 * every command bounded by the same timeout. Plain TCP only: a rediss://
 * URL is refused with a reason (the engine's ring client and the CLI's
 * tunnel carry TLS). */
#include <stdio.h>
#include <sys/time.h>

#include "herald/redis.h"

redisContext *redis_sync_connect(const struct redis_addr *addr, int timeout_ms, char *why,
                                 size_t whylen)
{
    if (addr->tls) {
        snprintf(why, whylen, "rediss:// is not supported by this connection");
        return NULL;
    }
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    redisContext *c = redisConnectWithTimeout(addr->host, addr->port, tv);
    if (!c || c->err) {
        snprintf(why, whylen, "cannot connect to %s:%u: %s", addr->host, addr->port,
                 c ? c->errstr : "out of memory");
        if (c)
            redisFree(c);
        return NULL;
    }
    redisSetTimeout(c, tv);
    redisReply *r = NULL;
    if (addr->password[0]) {
        r = addr->user[0] ? redisCommand(c, "AUTH %s %s", addr->user, addr->password)
                          : redisCommand(c, "AUTH %s", addr->password);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(why, whylen, "AUTH failed: %s", r ? r->str : c->errstr);
            if (r)
                freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    if (addr->db) {
        r = redisCommand(c, "SELECT %d", addr->db);
        if (!r || r->type == REDIS_REPLY_ERROR) {
            snprintf(why, whylen, "SELECT %d failed", addr->db);
            if (r)
                freeReplyObject(r);
            redisFree(c);
            return NULL;
        }
        freeReplyObject(r);
    }
    return c;
}
