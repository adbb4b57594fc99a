/* herald-sink: an io_uring SMTP sink for benches and tests.
 *
 * main parses options, opens the listening sockets, starts one ring worker per
 * thread (bench/sink/server.c), then sleeps in sigtimedwait: every second it
 * rewrites --stats, on SIGTERM/SIGINT it stops the workers, writes the final
 * stats and exits 0. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "sink.h"

static struct sink sink;

static void usage(FILE *f)
{
    fputs("usage: herald-sink --listen ADDR:PORT [--listen ...] [--threads N]\n"
          "         [--latency-ms N] [--tempfail RATIO] [--permfail RATIO]\n"
          "         [--fail-at rcpt|data] [--drop RATIO] [--no-pipelining]\n"
          "         [--max-size BYTES] [--stats FILE] [--record FILE] [--save-dir DIR]\n"
          "         [--banner TEXT] [--seed N]\n"
          "         [--limit-rate N [--limit-for MS] [--limit-text \"421 ...\"]]\n"
          "         [--tls-cert FILE --tls-key FILE [--tls-required]]\n"
          "--limit-rate: above N messages a second, MAIL gets 421 and the connection\n"
          "closes (a receiver's hidden limit), for the first MS milliseconds or always.\n"
          "--tls-cert/--tls-key (PEM): offer STARTTLS; --tls-required: 530 to MAIL before it.\n"
          "ADDR is IPv4 or [IPv6]; PORT 0 picks a free port (printed when ready).\n",
          f);
}

/* ---- stats --------------------------------------------------------------- */

struct sink_ip *sink_stats_open(struct sink_stats *st, const char *ip)
{
    pthread_mutex_lock(&st->ip_lock);
    struct sink_ip *e = NULL;
    for (size_t i = 0; i < st->n_ips && !e; i++)
        if (strcmp(st->ips[i].ip, ip) == 0) e = &st->ips[i];
    if (!e) {
        size_t i = st->n_ips < SINK_IPS_MAX ? st->n_ips++ : SINK_IPS_MAX - 1;
        e = &st->ips[i];
        if (i == SINK_IPS_MAX - 1)
            snprintf(e->ip, sizeof e->ip, "other");
        else
            snprintf(e->ip, sizeof e->ip, "%s", ip);
    }
    st->connections++;
    if (++st->open > st->max_concurrent) st->max_concurrent = st->open;
    if (++e->open > e->max_open) e->max_open = e->open;
    pthread_mutex_unlock(&st->ip_lock);
    return e;
}

void sink_stats_close(struct sink_stats *st, struct sink_ip *ip)
{
    pthread_mutex_lock(&st->ip_lock);
    st->open--;
    ip->open--;
    pthread_mutex_unlock(&st->ip_lock);
}

/* Write the stats JSON to a temp file and rename it over --stats, so a reader
 * never sees half an object. */
static void stats_write(const char *path)
{
    struct sink_stats *st = &sink.stats;
    struct hbuf b;
    hbuf_init(&b);
    (void)hbuf_appendf(&b,
                       "{\"messages\": %llu, \"tempfail\": %llu, \"permfail\": %llu, "
                       "\"dropped\": %llu, ",
                       (unsigned long long)atomic_load(&st->messages),
                       (unsigned long long)atomic_load(&st->tempfail),
                       (unsigned long long)atomic_load(&st->permfail),
                       (unsigned long long)atomic_load(&st->dropped));
    (void)hbuf_appendf(&b, "\"rate_refused\": %llu, \"at_ms\": %lld, ",
                       (unsigned long long)atomic_load(&sink.limiter.refused),
                       (long long)clock_wall_ms());
    (void)hbuf_appendf(&b, "\"tls_connections\": %llu, \"tls_failed\": %llu, ",
                       (unsigned long long)atomic_load(&st->tls_connections),
                       (unsigned long long)atomic_load(&st->tls_failed));
    pthread_mutex_lock(&st->ip_lock);
    (void)hbuf_appendf(&b,
                       "\"connections\": %llu, \"max_concurrent\": %lld, \"open\": %lld, "
                       "\"bytes\": %llu, \"by_ip\": {",
                       (unsigned long long)st->connections, (long long)st->max_concurrent,
                       (long long)st->open, (unsigned long long)atomic_load(&st->bytes));
    for (size_t i = 0; i < st->n_ips; i++)
        (void)hbuf_appendf(&b, "%s\"%s\": %llu", i ? ", " : "", st->ips[i].ip,
                           (unsigned long long)atomic_load(&st->ips[i].messages));
    (void)hbuf_append_str(&b, "}, \"by_ip_max_concurrent\": {");
    for (size_t i = 0; i < st->n_ips; i++)
        (void)hbuf_appendf(&b, "%s\"%s\": %lld", i ? ", " : "", st->ips[i].ip,
                           (long long)st->ips[i].max_open);
    pthread_mutex_unlock(&st->ip_lock);
    (void)hbuf_append_str(&b, "}}\n");

    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    FILE *f = fopen(tmp, "w");
    if (!f || fwrite(b.data, 1, b.len, f) != b.len || fclose(f) != 0 || rename(tmp, path) < 0)
        log_event(LOG_WARN, "event=stats_write_failed path=%s err=\"%s\"", path, strerror(errno));
    hbuf_free(&b);
}

/* ---- options ------------------------------------------------------------- */

struct listen_addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

/* "1.2.3.4:25" or "[::1]:25". */
static int parse_listen(const char *arg, struct listen_addr *out)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(arg, ':');
    if (!colon || (size_t)(colon - arg) >= sizeof host) return -EINVAL;
    const char *h = arg;
    size_t hl = (size_t)(colon - arg);
    bool v6 = hl >= 2 && h[0] == '[' && h[hl - 1] == ']';
    if (v6) {
        h++;
        hl -= 2;
    }
    memcpy(host, h, hl);
    host[hl] = '\0';
    char *end;
    errno = 0;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (errno || *end || end == colon + 1 || port > 65535) return -EINVAL;
    memset(out, 0, sizeof *out);
    if (v6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&out->ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons((uint16_t)port);
        if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) return -EINVAL;
        out->len = sizeof *a;
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&out->ss;
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1) return -EINVAL;
        out->len = sizeof *a;
    }
    return 0;
}

static bool parse_ratio(const char *s, double *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || !(v >= 0.0 && v <= 1.0)) return false;
    *out = v;
    return true;
}

static bool parse_u64(const char *s, uint64_t max, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || end == s || s[0] == '-' || v > max) return false;
    *out = v;
    return true;
}

/* ---- listening sockets ----------------------------------------------------- */

/* Every thread gets its own listening socket on the same address with
 * SO_REUSEPORT and the kernel spreads new connections across them by
 * 4-tuple hash. That keeps accept shared-nothing (no hand-off of fds between
 * rings, no lock, no thundering herd); the cost, an uneven spread with very
 * few connections, does not matter for a bench that opens many. */
static int listen_on(const struct listen_addr *a)
{
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0 ||
        (a->ss.ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0) ||
        bind(fd, (const struct sockaddr *)&a->ss, a->len) < 0 || listen(fd, 4096) < 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

static void addr_name(const struct sockaddr_storage *ss, char *out, size_t outlen)
{
    char host[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
        snprintf(out, outlen, "[%s]:%u", host, ntohs(a->sin6_port));
    } else {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
        snprintf(out, outlen, "%s:%u", host, ntohs(a->sin_port));
    }
}

/* Thread 0's socket fixes the port (PORT 0 asks the kernel for one); the
 * other threads then join that exact port. */
static int open_listeners(struct listen_addr *addrs, char names[][64])
{
    for (unsigned l = 0; l < sink.n_listen; l++) {
        for (unsigned t = 0; t < sink.n_threads; t++) {
            int fd = listen_on(&addrs[l]);
            if (fd < 0) return fd;
            sink.listen_fds[t][l] = fd;
            if (t == 0) {
                addrs[l].len = sizeof addrs[l].ss;
                getsockname(fd, (struct sockaddr *)&addrs[l].ss, &addrs[l].len);
                addr_name(&addrs[l].ss, names[l], sizeof names[l]);
            }
        }
    }
    return 0;
}

static void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

int main(int argc, char **argv)
{
    enum {
        OPT_LISTEN = 256,
        OPT_THREADS,
        OPT_LATENCY,
        OPT_TEMPFAIL,
        OPT_PERMFAIL,
        OPT_FAIL_AT,
        OPT_DROP,
        OPT_NO_PIPELINING,
        OPT_MAX_SIZE,
        OPT_STATS,
        OPT_RECORD,
        OPT_SAVE_DIR,
        OPT_BANNER,
        OPT_SEED,
        OPT_LIMIT_RATE,
        OPT_LIMIT_FOR,
        OPT_LIMIT_TEXT,
        OPT_TLS_CERT,
        OPT_TLS_KEY,
        OPT_TLS_REQUIRED,
        OPT_HELP
    };
    static const struct option opts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"latency-ms", required_argument, NULL, OPT_LATENCY},
        {"tempfail", required_argument, NULL, OPT_TEMPFAIL},
        {"permfail", required_argument, NULL, OPT_PERMFAIL},
        {"fail-at", required_argument, NULL, OPT_FAIL_AT},
        {"drop", required_argument, NULL, OPT_DROP},
        {"no-pipelining", no_argument, NULL, OPT_NO_PIPELINING},
        {"max-size", required_argument, NULL, OPT_MAX_SIZE},
        {"stats", required_argument, NULL, OPT_STATS},
        {"record", required_argument, NULL, OPT_RECORD},
        {"save-dir", required_argument, NULL, OPT_SAVE_DIR},
        {"banner", required_argument, NULL, OPT_BANNER},
        {"seed", required_argument, NULL, OPT_SEED},
        {"limit-rate", required_argument, NULL, OPT_LIMIT_RATE},
        {"limit-for", required_argument, NULL, OPT_LIMIT_FOR},
        {"limit-text", required_argument, NULL, OPT_LIMIT_TEXT},
        {"tls-cert", required_argument, NULL, OPT_TLS_CERT},
        {"tls-key", required_argument, NULL, OPT_TLS_KEY},
        {"tls-required", no_argument, NULL, OPT_TLS_REQUIRED},
        {"help", no_argument, NULL, OPT_HELP},
        {NULL, 0, NULL, 0},
    };
    struct listen_addr addrs[SINK_LISTEN_MAX];
    const char *record_path = NULL;
    const char *tls_cert = NULL, *tls_key = NULL;
    uint64_t v;

    sink.policy = (struct smtpd_policy){
        .banner = "herald-sink ESMTP",
        .hostname = "herald-sink",
        .pipelining = true,
        .max_size = 50ull * 1000 * 1000,
        .fail_at = SMTPD_FAIL_AT_DATA,
    };
    sink.n_threads = 1;
    sink.seed = 1;
    sink.record_fd = -1;

    int opt;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        bool ok = true;
        switch (opt) {
        case OPT_LISTEN:
            ok =
                sink.n_listen < SINK_LISTEN_MAX && parse_listen(optarg, &addrs[sink.n_listen]) == 0;
            sink.n_listen += ok;
            break;
        case OPT_THREADS:
            ok = parse_u64(optarg, SINK_THREADS_MAX, &v) && v > 0;
            sink.n_threads = (unsigned)v;
            break;
        case OPT_LATENCY:
            ok = parse_u64(optarg, 3600 * 1000, &v);
            sink.latency_ms = (unsigned)v;
            break;
        case OPT_TEMPFAIL:
            ok = parse_ratio(optarg, &sink.policy.tempfail_ratio);
            break;
        case OPT_PERMFAIL:
            ok = parse_ratio(optarg, &sink.policy.permfail_ratio);
            break;
        case OPT_DROP:
            ok = parse_ratio(optarg, &sink.policy.drop_ratio);
            break;
        case OPT_FAIL_AT:
            ok = strcmp(optarg, "rcpt") == 0 || strcmp(optarg, "data") == 0;
            sink.policy.fail_at = optarg[0] == 'r' ? SMTPD_FAIL_AT_RCPT : SMTPD_FAIL_AT_DATA;
            break;
        case OPT_NO_PIPELINING:
            sink.policy.pipelining = false;
            break;
        case OPT_MAX_SIZE:
            ok = parse_u64(optarg, UINT64_MAX, &sink.policy.max_size);
            break;
        case OPT_STATS:
            sink.stats_path = optarg;
            break;
        case OPT_RECORD:
            record_path = optarg;
            break;
        case OPT_SAVE_DIR:
            sink.save_dir = optarg;
            sink.policy.keep_body = true;
            break;
        case OPT_BANNER:
            ok = strpbrk(optarg, "\r\n") == NULL;
            sink.policy.banner = optarg;
            break;
        case OPT_SEED:
            ok = parse_u64(optarg, UINT64_MAX, &sink.seed);
            break;
        case OPT_LIMIT_RATE:
            ok = parse_u64(optarg, 1000000, &v) && v > 0;
            sink.limiter.per_sec = (uint32_t)v;
            sink.policy.limiter = &sink.limiter;
            break;
        case OPT_LIMIT_FOR:
            ok = parse_u64(optarg, 86400 * 1000, &v);
            sink.limiter.until_ms = clock_mono_ms() + (int64_t)v;
            break;
        case OPT_LIMIT_TEXT:
            ok = strpbrk(optarg, "\r\n") == NULL && strncmp(optarg, "421 ", 4) == 0;
            sink.policy.limit_text = optarg;
            break;
        case OPT_TLS_CERT:
            tls_cert = optarg;
            break;
        case OPT_TLS_KEY:
            tls_key = optarg;
            break;
        case OPT_TLS_REQUIRED:
            sink.policy.tls_required = true;
            break;
        case OPT_HELP:
            usage(stdout);
            return 0;
        default:
            ok = false;
            break;
        }
        if (!ok) {
            if (opt != '?')
                fprintf(stderr, "herald-sink: bad value for --%s: %s\n",
                        opts[opt - OPT_LISTEN].name, optarg ? optarg : "");
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc || sink.n_listen == 0 ||
        sink.policy.tempfail_ratio + sink.policy.permfail_ratio > 1.0) {
        fputs(sink.n_listen ? "herald-sink: tempfail + permfail must be <= 1\n"
                            : "herald-sink: need at least one --listen\n",
              stderr);
        usage(stderr);
        return 2;
    }
    if (!tls_cert != !tls_key || (sink.policy.tls_required && !tls_cert)) {
        fputs(tls_cert || tls_key ? "herald-sink: --tls-cert and --tls-key go together\n"
                                  : "herald-sink: --tls-required needs --tls-cert and --tls-key\n",
              stderr);
        usage(stderr);
        return 2;
    }
    if (tls_cert) {
        char err[512];
        if (tls_server_ctx_new(tls_cert, tls_key, &sink.tls_ctx, err, sizeof err) < 0) {
            fprintf(stderr, "herald-sink: %s\n", err);
            return 2;
        }
        sink.policy.starttls = true;
    }

    /* Workers inherit this mask; only main takes the signals, by sigtimedwait. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    raise_nofile();

    if (record_path) {
        sink.record_fd =
            open(record_path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644);
        if (sink.record_fd < 0) {
            fprintf(stderr, "herald-sink: %s: %s\n", record_path, strerror(errno));
            return 1;
        }
    }
    char names[SINK_LISTEN_MAX][64];
    int rc = open_listeners(addrs, names);
    if (rc < 0) {
        fprintf(stderr, "herald-sink: listen: %s\n", herald_strerror(rc));
        return 1;
    }

    pthread_mutex_init(&sink.stats.ip_lock, NULL);
    pthread_mutex_init(&sink.ready_lock, NULL);
    pthread_cond_init(&sink.ready_cond, NULL);
    pthread_t threads[SINK_THREADS_MAX];
    struct sink_worker_arg args[SINK_THREADS_MAX];
    unsigned n_started = 0;
    for (unsigned t = 0; t < sink.n_threads; t++) {
        args[t] = (struct sink_worker_arg){.sink = &sink, .index = t};
        if (pthread_create(&threads[t], NULL, sink_worker_main, &args[t]) != 0) break;
        n_started++;
    }
    pthread_mutex_lock(&sink.ready_lock);
    while (sink.n_ready < n_started)
        pthread_cond_wait(&sink.ready_cond, &sink.ready_lock);
    rc = sink.ready_err;
    pthread_mutex_unlock(&sink.ready_lock);

    int status = 0;
    if (rc < 0 || n_started < sink.n_threads) {
        fprintf(stderr, "herald-sink: worker set-up failed: %s\n",
                herald_strerror(rc < 0 ? rc : -EAGAIN));
        status = 1;
    } else {
        for (unsigned l = 0; l < sink.n_listen; l++)
            printf("herald-sink listening on %s\n", names[l]);
        fflush(stdout);
        const char *tls = "off";
        if (sink.tls_ctx) tls = sink.policy.tls_required ? "required" : "starttls";
        log_event(LOG_INFO, "event=sink_ready threads=%u latency_ms=%u seed=%llu tls=%s",
                  sink.n_threads, sink.latency_ms, (unsigned long long)sink.seed, tls);
        for (;;) {
            struct timespec one_s = {.tv_sec = 1, .tv_nsec = 0};
            int sig = sigtimedwait(&sigs, NULL, &one_s);
            if (sig == SIGTERM || sig == SIGINT) break;
            if (sink.stats_path) stats_write(sink.stats_path);
        }
    }

    atomic_store(&sink.stop, true);
    for (unsigned t = 0; t < n_started; t++)
        pthread_join(threads[t], NULL);
    if (sink.stats_path) stats_write(sink.stats_path);
    if (sink.record_fd >= 0) close(sink.record_fd);
    SSL_CTX_free(sink.tls_ctx);
    for (unsigned t = 0; t < sink.n_threads; t++)
        for (unsigned l = 0; l < sink.n_listen; l++)
            if (sink.listen_fds[t][l] > 0) close(sink.listen_fds[t][l]);
    return status;
}
