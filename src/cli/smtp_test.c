/* `herald smtp-test`: the "test" button for a tenant's relay or for direct
 * delivery to a domain. It drives the same session state machine and TLS
 * layer as the engine, one step at a time over a blocking socket (this is a
 * CLI, not an engine thread), and prints each step with PASS or FAIL. */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <netdb.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cli.h"
#include "herald/dns.h"
#include "herald/job.h"
#include "herald/smtp.h"
#include "herald/tls.h"

static const char usage[] =
    "usage: herald smtp-test -c FILE --tenant T [--to ADDR] [--domain D] [--timeout SECS]\n"
    "\n"
    "Connect the way the engine would for tenant T (its relay, else a static\n"
    "route or the MX of --domain / the --to address's domain), and show each\n"
    "step: connection, banner, EHLO capabilities, TLS and certificate, AUTH,\n"
    "and with --to one real test message. Exit 0 when every step passed.\n";

struct tester {
    struct smtp_session s;
    struct smtp_msg msg;
    bool msg_given, msg_done, msg_ok;
    bool want_msg;
    struct smtp_result res;
    int fd;
    struct tls_conn tls;
    bool tls_on;
    int failures;
};

static void step(struct tester *t, const char *name, bool ok, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void step(struct tester *t, const char *name, bool ok, const char *fmt, ...)
{
    char text[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    printf("%-10s %s  %s\n", name, ok ? "PASS" : "FAIL", text);
    fflush(stdout);
    if (!ok) t->failures++;
}

static struct smtp_msg *next_msg(void *owner)
{
    struct tester *t = owner;
    if (!t->want_msg || t->msg_given) return NULL;
    t->msg_given = true;
    return &t->msg;
}

static void msg_done(void *owner, struct smtp_msg *m, const struct smtp_result *res)
{
    (void)m;
    struct tester *t = owner;
    t->msg_done = true;
    t->msg_ok = res->outcome == SMTP_OUT_OK;
    t->res = *res;
}

static const struct smtp_session_ops ops = {next_msg, msg_done};

static int send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Send what the session (or the TLS layer) has produced. */
static int flush(struct tester *t)
{
    if (!t->tls_on) {
        int rc = send_all(t->fd, t->s.out.data, t->s.out.len);
        hbuf_reset(&t->s.out);
        return rc;
    }
    if (t->s.out.len && t->tls.done) {
        if (tls_conn_write(&t->tls, t->s.out.data, t->s.out.len) < 0) return -HERR_TLS;
        hbuf_reset(&t->s.out);
    }
    struct hbuf c;
    hbuf_init(&c);
    int rc = tls_conn_take_output(&t->tls, &c);
    if (!rc) rc = send_all(t->fd, c.data, c.len);
    hbuf_free(&c);
    return rc;
}

static void caps_line(const struct smtp_caps *c, char *out, size_t n)
{
    snprintf(out, n, "%s%s%s%s%s%s%s", c->pipelining ? "PIPELINING " : "",
             c->starttls ? "STARTTLS " : "", c->eightbitmime ? "8BITMIME " : "",
             c->smtputf8 ? "SMTPUTF8 " : "", c->size ? "SIZE " : "",
             c->auth_plain ? "AUTH-PLAIN " : "", c->auth_login ? "AUTH-LOGIN " : "");
}

static int handshake(struct tester *t, SSL_CTX *ctx, const char *host, bool verify)
{
    if (tls_conn_init(&t->tls, ctx, host, verify ? TLS_VERIFY_PEER : TLS_VERIFY_NONE, NULL) < 0)
        return -ENOMEM;
    t->tls_on = true;
    char buf[16384];
    for (;;) {
        int rc = tls_conn_handshake(&t->tls);
        if (flush(t) < 0) return -EIO;
        if (rc == 0) return 0;
        if (rc != -EAGAIN) return rc;
        ssize_t n = recv(t->fd, buf, sizeof buf, 0);
        if (n <= 0) {
            snprintf(t->tls.error, sizeof t->tls.error, "connection closed during the handshake");
            return -HERR_TLS;
        }
        tls_conn_feed(&t->tls, buf, (size_t)n);
    }
}

static void report_tls(struct tester *t, bool verify)
{
    char desc[96], peer[512];
    tls_conn_describe(&t->tls, desc, sizeof desc);
    tls_conn_peer_summary(&t->tls, peer, sizeof peer);
    const char *why = "";
    bool ok = tls_conn_verified(&t->tls, &why);
    step(t, "tls", true, "%s%s", desc, tls_conn_reused(&t->tls) ? " (resumed)" : "");
    step(t, "cert", ok || !verify, "%s verified=%s%s%s", peer, ok ? "yes" : "no", ok ? "" : " ",
         ok ? "" : why);
}

/* Run the session to its end, printing each step as it completes. */
static void converse(struct tester *t, SSL_CTX *ctx, const char *host, bool verify)
{
    char buf[16384], caps[160];
    enum smtp_state prev = t->s.state;
    while (!smtp_session_is_closed(&t->s)) {
        if (flush(t) < 0) {
            smtp_session_fail(&t->s, -EIO, "send failed");
            break;
        }
        if (smtp_session_wants_tls(&t->s)) {
            int rc = handshake(t, ctx, host, verify);
            if (rc == 0) report_tls(t, verify);
            smtp_session_tls_done(&t->s, rc, rc ? tls_conn_error(&t->tls) : NULL, 0);
            if (rc) step(t, "tls", false, "%s", tls_conn_error(&t->tls));
            prev = t->s.state;
            continue;
        }
        ssize_t n = recv(t->fd, buf, sizeof buf, 0);
        if (n <= 0) {
            smtp_session_fail(&t->s, n < 0 ? -errno : -HERR_CLOSED,
                              n < 0 ? "timed out waiting for the server" : "connection closed");
            break;
        }
        if (t->tls_on) {
            tls_conn_feed(&t->tls, buf, (size_t)n);
            int r;
            while ((r = tls_conn_read(&t->tls, buf, sizeof buf)) > 0)
                smtp_session_recv(&t->s, buf, (size_t)r, 0);
        } else {
            smtp_session_recv(&t->s, buf, (size_t)n, 0);
        }
        enum smtp_state now = t->s.state;
        const struct smtp_reply *r = &t->s.reply;
        char first[300];
        snprintf(first, sizeof first, "%d %.*s", r->code, (int)strcspn(r->text, "\n"), r->text);
        if (prev == SMTP_S_BANNER && now != SMTP_S_BANNER)
            step(t, "banner", r->code / 100 == 2, "%s", first);
        if ((prev == SMTP_S_EHLO || prev == SMTP_S_HELO) && now != prev && r->code / 100 == 2) {
            caps_line(&t->s.caps, caps, sizeof caps);
            step(t, prev == SMTP_S_EHLO ? "ehlo" : "helo", true, "%s%s",
                 t->s.tls_active ? "(over TLS) " : "", caps);
        }
        if (prev == SMTP_S_STARTTLS && now != prev)
            step(t, "starttls", r->code / 100 == 2, "%s", first);
        if (prev == SMTP_S_AUTH && now != SMTP_S_AUTH)
            step(t, "auth", t->s.authenticated, "%s", first);
        if (t->msg_done) {
            step(t, "send", t->msg_ok, "%d %s", t->res.code, t->res.reply);
            t->msg_done = false;
        }
        if (smtp_session_is_idle(&t->s)) smtp_session_quit(&t->s, 0);
        prev = now;
    }
    if (t->s.has_error) step(t, smtp_stage_name(t->s.error.stage), false, "%s", t->s.error.reply);
    if (t->msg_done) step(t, "send", t->msg_ok, "%d %s", t->res.code, t->res.reply);
}

struct route_wait {
    bool done;
    struct dns_route route;
};

static void on_route(void *arg, const struct dns_route *route)
{
    struct route_wait *w = arg;
    w->route = *route;
    w->done = true;
}

#define MAX_TARGETS (DNS_MAX_MX * DNS_MAX_ADDRS)

struct target {
    char host[256];
    struct sockaddr_storage sa;
    socklen_t len;
};

/* The destinations the engine would use, in the order it would try them:
 * the relay, a static route, else every address of every MX. */
static int pick_targets(struct tester *t, const struct config *cfg,
                        const struct cfg_tenant *tenant, const char *domain, struct target *out,
                        size_t *n_out)
{
    *n_out = 0;
    const char *name = NULL;
    uint16_t port = cfg->delivery.port;
    if (tenant->relay.host) {
        name = tenant->relay.host;
        port = tenant->relay.port;
        step(t, "route", true, "relay %s:%u for tenant %s", name, port, tenant->name);
    } else if (domain && config_route(cfg, domain)) {
        const struct cfg_route *r = config_route(cfg, domain);
        name = r->host;
        port = r->port;
        step(t, "route", true, "static route %s -> %s:%u", r->pattern, name, port);
    }
    if (name) {
        char ports[8];
        snprintf(ports, sizeof ports, "%u", port);
        struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
        int rc = getaddrinfo(name, ports, &hints, &res);
        if (rc || !res) {
            step(t, "resolve", false, "%s: %s", name, gai_strerror(rc));
            return -1;
        }
        for (struct addrinfo *ai = res; ai && *n_out < MAX_TARGETS; ai = ai->ai_next) {
            struct target *x = &out[(*n_out)++];
            snprintf(x->host, sizeof x->host, "%s", name);
            memcpy(&x->sa, ai->ai_addr, ai->ai_addrlen);
            x->len = ai->ai_addrlen;
        }
        freeaddrinfo(res);
        return 0;
    }
    if (!domain) {
        step(t, "route", false, "no relay for tenant %s: give --to or --domain", tenant->name);
        return -1;
    }
    struct ring ring;
    if (ring_init(&ring, 64) < 0) {
        step(t, "resolve", false, "io_uring unavailable");
        return -1;
    }
    struct dns_resolver *dns = NULL;
    char err[256];
    struct route_wait w = {0};
    if (dns_resolver_new(&dns, &ring, (const char *const *)cfg->dns.servers.items,
                         cfg->dns.servers.n, err, sizeof err) < 0) {
        step(t, "resolve", false, "%s", err);
        ring_exit(&ring);
        return -1;
    }
    dns_resolve_route(dns, domain, port, on_route, &w);
    for (int i = 0; i < 300 && !w.done; i++) ring_run_once(&ring, 100);
    dns_resolver_free(dns);
    ring_exit(&ring);
    if (!w.done || w.route.status != DNS_OK) {
        step(t, "mx", false, "%s", w.done ? w.route.reason : "no answer in 30 s");
        return -1;
    }
    char list[512] = "";
    size_t used = 0;
    for (size_t i = 0; i < w.route.n_hosts; i++) {
        int n = snprintf(list + used, sizeof list - used, "%s%s(%u)", i ? " " : "",
                         w.route.hosts[i].name, w.route.hosts[i].pref);
        if (n < 0 || (size_t)n >= sizeof list - used) break;
        used += (size_t)n;
        for (size_t a = 0; a < w.route.hosts[i].n_addrs && *n_out < MAX_TARGETS; a++) {
            struct target *x = &out[(*n_out)++];
            snprintf(x->host, sizeof x->host, "%s", w.route.hosts[i].name);
            x->sa = w.route.hosts[i].addrs[a];
            x->len = w.route.hosts[i].addr_lens[a];
        }
    }
    step(t, "mx", true, "%s%s", w.route.implicit ? "implicit: " : "", list);
    return 0;
}

static void describe_addr(const struct sockaddr_storage *sa, char *ip, size_t n, unsigned *port)
{
    const void *addr = sa->ss_family == AF_INET
                           ? (const void *)&((const struct sockaddr_in *)sa)->sin_addr
                           : (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
    inet_ntop(sa->ss_family, addr, ip, (socklen_t)n);
    *port = ntohs(sa->ss_family == AF_INET ? ((const struct sockaddr_in *)sa)->sin_port
                                           : ((const struct sockaddr_in6 *)sa)->sin6_port);
}

/* Connect to the first target that answers; a failed one is shown and the
 * next tried, as the engine fails over. Returns its index or -1. */
static int connect_first(struct tester *t, const struct target *tg, size_t n, long timeout_s)
{
    for (size_t i = 0; i < n; i++) {
        char ip[INET6_ADDRSTRLEN] = "";
        unsigned port = 0;
        describe_addr(&tg[i].sa, ip, sizeof ip, &port);
        int fd = socket(tg[i].sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct timeval tv = {timeout_s, 0};
        if (fd >= 0) {
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
            setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        }
        if (fd < 0 || connect(fd, (const struct sockaddr *)&tg[i].sa, tg[i].len) < 0) {
            step(t, "connect", false, "%s [%s]:%u: %s", tg[i].host, ip, port, strerror(errno));
            if (fd >= 0) close(fd);
            continue;
        }
        /* A failed address that another one replaced is not a failure of the whole test. */
        t->failures = 0;
        step(t, "connect", true, "%s [%s]:%u", tg[i].host, ip, port);
        t->fd = fd;
        return (int)i;
    }
    return -1;
}

static int build_message(const struct config *cfg, const struct cfg_tenant *tenant,
                         const char *to, struct job *j)
{
    const char *names[] = {"tenant", "to", "subject", "text"};
    const char *values[] = {tenant->name, to, "herald smtp-test",
                            "This is a test message sent by herald smtp-test.\n"};
    size_t nl[4], vl[4];
    for (int i = 0; i < 4; i++) {
        nl[i] = strlen(names[i]);
        vl[i] = strlen(values[i]);
    }
    struct job_error err = {{0}, {0}};
    if (job_parse(j, "0-1", 4, names, nl, values, vl, cfg, &err) < 0 ||
        job_build(j, tenant, strrchr(tenant->from, '@') + 1, clock_wall_ms(), 1 << 20, &err) < 0) {
        fprintf(stderr, "herald smtp-test: %s: %s\n", err.field, err.reason);
        return -1;
    }
    return 0;
}

int cli_smtp_test(int argc, char **argv)
{
    static const struct option opts[] = {{"config", required_argument, NULL, 'c'},
                                         {"tenant", required_argument, NULL, 't'},
                                         {"to", required_argument, NULL, 'o'},
                                         {"domain", required_argument, NULL, 'd'},
                                         {"timeout", required_argument, NULL, 'w'},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    const char *path = NULL, *tname = NULL, *to = NULL, *domain = NULL;
    long timeout_s = 30;
    int ch;
    optind = 1;
    while ((ch = getopt_long(argc, argv, "c:t:h", opts, NULL)) != -1) {
        switch (ch) {
        case 'c': path = optarg; break;
        case 't': tname = optarg; break;
        case 'o': to = optarg; break;
        case 'd': domain = optarg; break;
        case 'w': timeout_s = strtol(optarg, NULL, 10); break;
        case 'h': fputs(usage, stdout); return 0;
        default: fputs(usage, stderr); return 2;
        }
    }
    if (!tname || timeout_s <= 0) {
        fputs(usage, stderr);
        return 2;
    }
    struct config *cfg = NULL;
    int rc = cli_load_config(path, &cfg);
    if (rc) return rc;
    const struct cfg_tenant *tenant = config_tenant(cfg, tname);
    if (!tenant) {
        fprintf(stderr, "herald smtp-test: unknown tenant '%s'\n", tname);
        config_free(cfg);
        return 2;
    }
    if (!domain && to && strrchr(to, '@')) domain = strrchr(to, '@') + 1;

    struct tester t;
    memset(&t, 0, sizeof t);
    t.fd = -1;
    struct job job;
    job_init(&job);
    SSL_CTX *ctx = NULL;
    char err[256], host[256];
    int exit_code = 1;
    if (to && build_message(cfg, tenant, to, &job) < 0) {
        exit_code = 2;
        goto out;
    }
    struct tls_ctx_opts topts = {.ca_file = cfg->delivery.ca_file};
    if (tls_ctx_new(&topts, &ctx, err, sizeof err) < 0) {
        step(&t, "tls", false, "%s", err);
        goto out;
    }
    struct target *targets = calloc(MAX_TARGETS, sizeof *targets);
    size_t n_targets = 0;
    int which = -1;
    if (targets && pick_targets(&t, cfg, tenant, domain, targets, &n_targets) == 0)
        which = connect_first(&t, targets, n_targets, timeout_s);
    if (which >= 0) snprintf(host, sizeof host, "%s", targets[which].host);
    free(targets);
    if (which < 0) goto out;

    /* The same policy the engine applies (see dispatch in the worker). */
    const struct cfg_provider *prov = config_provider_for_host(cfg, host);
    enum cfg_tls_policy pol = config_tls_policy(cfg, tenant, prov);
    enum smtp_tls_mode mode = pol == CFG_TLS_OPPORTUNISTIC ? SMTP_TLS_TRY : SMTP_TLS_MUST;
    bool verify = pol == CFG_TLS_VERIFY;
    struct smtp_auth auth = {0};
    char pass[512] = "";
    if (tenant->relay.host) {
        const struct cfg_relay *r = &tenant->relay;
        mode = r->tls == CFG_RELAY_TLS_IMPLICIT ? SMTP_TLS_ACTIVE
               : r->tls == CFG_RELAY_TLS_NONE   ? SMTP_TLS_OFF
                                                : SMTP_TLS_MUST;
        /* A relay's certificate is checked as the engine checks it (route.c). */
        verify = mode != SMTP_TLS_OFF && !r->insecure_skip_verify;
        if (r->ca_file) {
            SSL_CTX_free(ctx);
            ctx = NULL;
            struct tls_ctx_opts ro = {.ca_file = r->ca_file};
            if (tls_ctx_new(&ro, &ctx, err, sizeof err) < 0) {
                step(&t, "tls", false, "relay ca_file %s: %s", r->ca_file, err);
                goto out;
            }
        }
        if (r->user) {
            if (config_read_secret(r->password_file, r->password_env, pass, sizeof pass) < 0) {
                step(&t, "auth", false, "cannot read the relay password (%s)",
                     r->password_env ? r->password_env : r->password_file);
                goto out;
            }
            auth.user = r->user;
            auth.pass = pass;
            auth.allow_plaintext = r->allow_plaintext_auth;
            auth.allow_unverified = r->insecure_skip_verify;
        }
    }
    struct smtp_timeouts tmo = {timeout_s * 1000, timeout_s * 1000, timeout_s * 1000,
                                timeout_s * 1000};
    smtp_session_init(&t.s, &ops, &t, cfg->engine.ehlo, &tmo, 1, 0);
    smtp_session_set_security(&t.s, mode, verify, &auth);
    if (to) {
        t.want_msg = true;
        t.msg.mail_from = job.mail_from ? job.mail_from : tenant->from;
        t.msg.rcpt = job.rcpt ? job.rcpt : job.to;
        t.msg.needs_smtputf8 = job.needs_smtputf8;
        t.msg.data = job.wire.data;
        t.msg.data_len = job.wire.len;
    }
    if (mode == SMTP_TLS_ACTIVE) {
        if (handshake(&t, ctx, host, verify) == 0) {
            report_tls(&t, verify);
        } else {
            step(&t, "tls", false, "%s", tls_conn_error(&t.tls));
            goto out_session;
        }
    }
    converse(&t, ctx, host, verify);
    if (!t.s.tls_active && mode != SMTP_TLS_OFF)
        printf("%-10s %s  %s\n", "tls", "INFO", "connection was not encrypted");
    exit_code = t.failures ? 1 : 0;
out_session:
    smtp_session_free(&t.s);
out:
    if (t.failures && exit_code == 0) exit_code = 1;
    printf("%s\n", t.failures ? "result: FAIL" : "result: PASS");
    explicit_bzero(pass, sizeof pass);
    if (t.tls_on) tls_conn_free(&t.tls);
    if (t.fd >= 0) close(t.fd);
    SSL_CTX_free(ctx);
    job_clear(&job);
    config_free(cfg);
    return exit_code;
}
