/* rediss:// for the CLI. The CLI talks to Redis through hiredis' blocking
 * API, whose Debian build has no TLS; instead hiredis gets one end of a
 * socketpair and a thread carries the bytes through herald's own TLS layer
 * to the server. The handshake runs before the thread starts, so a bad
 * certificate is reported as a plain error. At exit the thread is stopped
 * and joined and everything freed (one tunnel per process: the CLI opens
 * one Redis connection). */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "herald/redis.h"
#include "herald/tls.h"

struct tunnel {
    int net, local;
    SSL_CTX *ctx;
    struct tls_conn tls;
};

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Send what the pump left on out (it drains OpenSSL after every call). */
static int send_wire(struct tunnel *t, struct hbuf *out)
{
    int rc = out->len ? send_all(t->net, out->data, out->len) : 0;
    hbuf_reset(out);
    return rc;
}

static struct tunnel *g_tunnel;
static pthread_t g_thread;

static void tunnel_free(struct tunnel *t)
{
    if (t->tls.ssl) tls_conn_free(&t->tls);
    if (t->net >= 0) close(t->net);
    if (t->local >= 0) close(t->local);
    SSL_CTX_free(t->ctx);
    free(t);
}

static void tunnel_atexit(void)
{
    if (!g_tunnel) return;
    shutdown(g_tunnel->local, SHUT_RDWR); /* wakes the pump: its recv sees the end */
    pthread_join(g_thread, NULL);
    tunnel_free(g_tunnel);
    g_tunnel = NULL;
}

static void *pump(void *arg)
{
    struct tunnel *t = arg;
    char buf[16384];
    struct hbuf out;
    hbuf_init(&out);
    struct pollfd p[2] = {{.fd = t->local, .events = POLLIN}, {.fd = t->net, .events = POLLIN}};
    for (;;) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (p[0].revents) {
            ssize_t n = recv(t->local, buf, sizeof buf, 0);
            if (n <= 0 || tls_pump_write(&t->tls, buf, (size_t)n, &out) < 0 ||
                send_wire(t, &out) < 0)
                break;
        }
        if (p[1].revents) {
            ssize_t n = recv(t->net, buf, sizeof buf, 0);
            if (n <= 0 || tls_conn_feed(&t->tls, buf, (size_t)n) < 0) break;
            int r;
            while ((r = tls_pump_read(&t->tls, buf, sizeof buf, &out)) > 0)
                if (send_all(t->local, buf, (size_t)r) < 0) goto out;
            if (r < 0 || send_wire(t, &out) < 0) break;
        }
    }
out:
    hbuf_free(&out);
    shutdown(t->local, SHUT_RDWR);
    return NULL;
}

int cli_tls_tunnel(const struct redis_addr *addr, const struct config *cfg, int *fd_out)
{
    if (g_tunnel) return -EBUSY;
    struct tunnel *t = calloc(1, sizeof *t);
    if (!t) return -ENOMEM;
    t->net = t->local = -1;
    char err[256];
    struct tls_ctx_opts o = {.ca_file = cfg->redis.ca_file, .cert_file = cfg->redis.cert_file,
                             .key_file = cfg->redis.key_file};
    if (tls_ctx_new(&o, &t->ctx, err, sizeof err) < 0) {
        fprintf(stderr, "herald: redis TLS: %s\n", err);
        tunnel_free(t);
        return -1;
    }
    t->net = socket(addr->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {5, 0};
    setsockopt(t->net, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (t->net < 0 || connect(t->net, (const struct sockaddr *)&addr->sa, addr->sa_len) < 0) {
        fprintf(stderr, "herald: cannot connect to redis at %s:%u: %s\n", addr->host, addr->port,
                strerror(errno));
        goto fail;
    }
    if (tls_conn_init(&t->tls, t->ctx, addr->host, TLS_VERIFY_PEER, NULL) < 0) goto fail;
    char buf[16384];
    struct hbuf out;
    hbuf_init(&out);
    for (;;) {
        int rc = tls_pump_handshake(&t->tls, &out);
        if (send_wire(t, &out) < 0 || (rc != 0 && rc != -EAGAIN)) {
            hbuf_free(&out);
            goto fail_tls;
        }
        if (rc == 0) break;
        setsockopt(t->net, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        ssize_t n = recv(t->net, buf, sizeof buf, 0);
        if (n <= 0) {
            hbuf_free(&out);
            goto fail_tls;
        }
        tls_conn_feed(&t->tls, buf, (size_t)n);
    }
    hbuf_free(&out);
    struct timeval none = {0, 0};
    setsockopt(t->net, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) goto fail;
    t->local = sp[1];
    if (pthread_create(&g_thread, NULL, pump, t) != 0) {
        close(sp[0]);
        goto fail;
    }
    g_tunnel = t;
    atexit(tunnel_atexit);
    *fd_out = sp[0];
    return 0;
fail_tls:
    fprintf(stderr, "herald: redis TLS with %s:%u failed: %s\n", addr->host, addr->port,
            tls_conn_error(&t->tls));
fail:
    tunnel_free(t);
    return -1;
}
