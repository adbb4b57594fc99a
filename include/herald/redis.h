/* redis: a Redis connection whose bytes travel through the worker's ring.
 * hiredis formats commands and parses replies; nothing here blocks. */
#ifndef HERALD_REDIS_H
#define HERALD_REDIS_H

#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "herald/core.h"
#include "herald/ring.h"
#include "herald/tls.h"
#include "herald/transport.h"

/* Parsed redis:// URL. */
struct redis_addr {
    char host[256];
    uint16_t port;
    int db;
    char user[128];
    char password[256];
    bool tls; /* rediss:// */
    struct sockaddr_storage sa;
    socklen_t sa_len;
};

/* Parse "redis://[user[:password]@]host[:port][/db]". Resolves host with
 * getaddrinfo, so call it from the main thread, never from a worker.
 * Returns 0 or -HERR_MALFORMED / -HERR_CONFIG with why. */
int redis_addr_parse(const char *url, struct redis_addr *out, const char **why);
/* A blocking connection (src/redis/sync.c): plain TCP, AUTH and SELECT
 * done, commands bounded by timeout_ms. NULL with the reason in why. */
redisContext *redis_sync_connect(const struct redis_addr *addr, int timeout_ms, char *why,
                                 size_t whylen);

/* redis_addr_parse(cfg->redis.url) plus the password from
 * redis.password_env or redis.password_file when the URL carries none. */
struct config;
int redis_addr_from_config(const struct config *cfg, struct redis_addr *out, const char **why);

struct redis_client;
/* reply is NULL when the connection failed before a reply arrived. The
 * reply is freed after the callback returns. */
typedef void (*redis_reply_fn)(struct redis_client *c, redisReply *reply, void *arg);
/* Connection state changes: up == true once connected (AUTH/SELECT sent),
 * false when the connection is lost (all pending callbacks already ran). */
typedef void (*redis_state_fn)(struct redis_client *c, bool up, int err, void *arg);

struct redis_pending {
    redis_reply_fn fn;
    void *arg;
};

enum redis_client_state {
    REDIS_C_IDLE = 0,
    REDIS_C_CONNECTING,
    REDIS_C_UP,
    REDIS_C_CLOSING,
};

/* Where a connection's reply objects live (src/redis/replies.c): blocks
 * reused from one reply to the next. */
struct reply_block;
struct reply_store {
    struct reply_block *head, *cur;
};

struct redis_client {
    struct ring *ring;
    const struct redis_addr *addr;
    const char *name; /* for logs: "intake", "notes" */
    enum redis_client_state state;
    /* Socket, send queue and, for rediss://, the TLS session: commands
     * queued before the handshake finished go out encrypted after it, and
     * the client counts as up (on_state fires) only then. */
    struct xport x;
    redisReader *reader;
    struct reply_store replies; /* the reader's objects, reset after each reply */
    struct redis_pending *q; /* callbacks for commands written, FIFO */
    size_t q_head, q_len, q_cap;
    int close_err;
    size_t max_reply;   /* 0: unbounded; else a reply growing past it costs the connection */
    size_t reply_bytes; /* bytes received of the reply being read */
    redis_state_fn on_state;
    void *state_arg;
    SSL_CTX *tls_ctx;
    int64_t connect_timeout_ms; /* 0: none */
    int64_t reply_timeout_ms;   /* 0: none; see redis_client_set_timeouts */
    int64_t waiting_since_ms;   /* ring time of the last reply (or the first command owed) */
    struct ring_timer reply_timer;
};

int redis_client_init(struct redis_client *c, struct ring *r, const struct redis_addr *addr,
                      const char *name, redis_state_fn on_state, void *state_arg);
/* TLS context for rediss:// (owned by the caller; the server's chain and
 * name are always verified). */
void redis_client_set_tls(struct redis_client *c, SSL_CTX *ctx);
/* Start connecting; on_state(up=true) when done. */
int redis_client_connect(struct redis_client *c);
/* Queue a command; fn (NULL: fire and forget) runs with the reply, or with
 * NULL on connection loss. argvlen NULL: every argument is a C string
 * (its strlen).
 * Commands are pipelined: many may be queued before any reply arrives. */
int redis_client_command_argv(struct redis_client *c, redis_reply_fn fn, void *arg, int argc,
                              const char **argv, const size_t *argvlen);
/* Queue an already formatted command (RESP bytes, copied). */
int redis_client_command_raw(struct redis_client *c, redis_reply_fn fn, void *arg,
                             const char *cmd, size_t len);
/* Append argv as one RESP command (what redisFormatCommandArgv makes)
 * to out, without a malloc of its own: callers keep out for the next
 * command. 0, or -ENOMEM (out then holds a partial command). */
int redis_format_append(struct hbuf *out, int argc, const char **argv, const size_t *argvlen);
/* One argument of such a command ("$<n>\r\n<bytes>\r\n"), for callers
 * that put a command's arguments together from several places. */
int redis_format_bulk(struct hbuf *out, const char *p, size_t n);
int redis_client_commandf(struct redis_client *c, redis_reply_fn fn, void *arg, const char *fmt,
                          ...);
/* Bound the reply being read: once more than max bytes of one reply have
 * arrived, the connection is closed with -HERR_TOO_LONG (every pending
 * callback gets NULL) so one huge reply cannot exhaust memory (the bytes
 * bound the element count too: every element costs at least 3 bytes on the
 * wire). 0 lifts the bound. */
void redis_client_set_max_reply(struct redis_client *c, size_t max);
/* connect: TCP connect bound; reply: while any reply is owed, the longest
 * Redis may send nothing at all before the connection is closed with
 * -HERR_TIMEOUT (every pending callback gets NULL; the owner reconnects).
 * It must exceed any BLOCK the owner asks for. 0 for none. Also turns on
 * TCP keepalive. */
void redis_client_set_timeouts(struct redis_client *c, int64_t connect_ms, int64_t reply_ms);
/* Drop the connection: pending callbacks get NULL, then on_state(false). */
void redis_client_close(struct redis_client *c, int err);
/* Free resources; only when no operation is in flight (state IDLE). */
void redis_client_free(struct redis_client *c);
static inline bool redis_client_up(const struct redis_client *c)
{
    return c->state == REDIS_C_UP;
}
static inline bool redis_client_busy(const struct redis_client *c)
{
    return !xport_is_quiet(&c->x);
}

#endif
