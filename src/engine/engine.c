/* `herald run`: builds the shared read-only state (config, resolved routes,
 * script digests), starts one worker per configured thread, and turns
 * SIGTERM/SIGINT into a drain. Signals are taken by sigtimedwait on the main
 * thread so no handler ever runs inside a worker. */
#include <errno.h>
#include <netdb.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "herald/dnsq.h"
#include "herald/engine.h"
#include "worker.h"

static void sha1_hex(const char *text, char out[41])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(text, strlen(text), md, &len, EVP_sha1(), NULL);
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < len && i < 20; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[40] = '\0';
}

static int resolve_host(const char *host, uint16_t port, struct pool_target *t, const char **why)
{
    char portstr[8];
    snprintf(portstr, sizeof portstr, "%u", port);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0 || !res) {
        *why = gai_strerror(rc);
        return -HERR_CONFIG;
    }
    snprintf(t->host, sizeof t->host, "%s", host);
    memcpy(&t->sa, res->ai_addr, res->ai_addrlen);
    t->sa_len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

/* Static routes are resolved once, here, on the main thread: workers never
 * call the blocking resolver. */
static int resolve_routes(struct engine_shared *sh)
{
    const struct config *cfg = sh->cfg;
    sh->routes = calloc(cfg->n_routes ? cfg->n_routes : 1, sizeof *sh->routes);
    if (!sh->routes)
        return -ENOMEM;
    for (size_t i = 0; i < cfg->n_routes; i++) {
        const struct cfg_route *r = &cfg->routes[i];
        struct engine_route *er = &sh->routes[sh->n_routes];
        const char *why = "";
        if (resolve_host(r->host, r->port ? r->port : cfg->delivery.port, &er->target, &why) < 0) {
            log_event(LOG_ERROR, "event=route_unresolved route=%s host=%s reason=\"%s\"",
                      r->pattern, r->host, why);
            return -HERR_CONFIG;
        }
        er->route = r;
        er->provider = config_provider_for_host(cfg, r->host);
        sh->n_routes++;
    }
    return 0;
}

/* Tenant relays: address and credentials are fixed for the run, so they
 * are looked up here once (blocking is fine on the main thread). */
static int resolve_relays(struct engine_shared *sh)
{
    const struct config *cfg = sh->cfg;
    sh->relays = calloc(cfg->n_tenants ? cfg->n_tenants : 1, sizeof *sh->relays);
    if (!sh->relays)
        return -ENOMEM;
    for (size_t i = 0; i < cfg->n_tenants; i++) {
        const struct cfg_relay *r = &cfg->tenants[i].relay;
        struct engine_relay *er = &sh->relays[i];
        if (!r->host)
            continue;
        uint16_t port = r->port                           ? r->port
                        : r->tls == CFG_RELAY_TLS_IMPLICIT ? 465
                        : r->tls == CFG_RELAY_TLS_NONE     ? 25
                                                           : 587;
        const char *why = "";
        if (resolve_host(r->host, port, &er->target, &why) < 0) {
            log_event(LOG_ERROR, "event=relay_unresolved tenant=%s host=%s reason=\"%s\"",
                      cfg->tenants[i].name, r->host, why);
            return -HERR_CONFIG;
        }
        er->tls_mode = r->tls == CFG_RELAY_TLS_IMPLICIT ? SMTP_TLS_ACTIVE
                       : r->tls == CFG_RELAY_TLS_NONE   ? SMTP_TLS_OFF
                                                        : SMTP_TLS_MUST;
        if (r->user) {
            snprintf(er->user, sizeof er->user, "%s", r->user);
            int rc = config_read_secret(r->password_file, r->password_env, er->pass, sizeof er->pass);
            if (rc < 0) {
                log_event(LOG_ERROR, "event=relay_secret_unreadable tenant=%s source=%s reason=\"%s\"",
                          cfg->tenants[i].name, r->password_env ? r->password_env : r->password_file,
                          herald_strerror(rc));
                return -HERR_CONFIG;
            }
            er->auth.user = er->user;
            er->auth.pass = er->pass;
            er->auth.allow_plaintext = r->allow_plaintext_auth;
        }
        er->configured = true;
    }
    return 0;
}

/* SPF half of From alignment (herald/align.h): evaluated here, on the main
 * thread, with a blocking channel, before the workers start and then every
 * sender.spf_recheck from the signal loop — never on a worker thread.
 * Returns the monotonic time of the next evaluation, 0 for never. */
static int64_t refresh_alignment(struct engine_shared *sh, struct dnsq_sync **dns)
{
    const struct config *cfg = sh->cfg;
    if (!align_table_needs_dns(sh->align)) return 0;
    if (!*dns) {
        char err[300];
        if (dnsq_sync_new(dns, (const char *const *)cfg->dns.servers.items, cfg->dns.servers.n,
                          5000, err, sizeof err) < 0) {
            log_event(LOG_WARN, "event=alignment_dns_unavailable reason=\"%s\"", err);
            return clock_mono_ms() + 60000;
        }
    }
    return clock_mono_ms() + align_table_refresh(sh->align, dnsq_sync_lookup, *dns);
}

int engine_run(const struct engine_opts *opts)
{
    char err[512];
    struct config *cfg = NULL;
    int rc = config_load(opts->config_path, &cfg, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    struct engine_shared *sh = calloc(1, sizeof *sh);
    if (!sh) {
        config_free(cfg);
        return 1;
    }
    sh->cfg = cfg;
    const char *why = "";
    if (redis_addr_from_config(cfg, &sh->redis, &why) < 0) {
        fprintf(stderr, "%s: redis: %s\n", opts->config_path, why);
        config_free(cfg);
        free(sh);
        return 2;
    }
    if (resolve_routes(sh) < 0 || resolve_relays(sh) < 0) {
        config_free(cfg);
        free(sh->routes);
        free(sh->relays);
        free(sh);
        return 2;
    }
    if (sh->redis.tls) {
        struct tls_ctx_opts ropts = {.ca_file = cfg->redis.ca_file,
                                     .cert_file = cfg->redis.cert_file,
                                     .key_file = cfg->redis.key_file};
        if (tls_ctx_new(&ropts, &sh->redis_tls_ctx, err, sizeof err) < 0) {
            fprintf(stderr, "%s: redis TLS: %s\n", opts->config_path, err);
            config_free(cfg);
            free(sh->routes);
            free(sh->relays);
            free(sh);
            return 2;
        }
    }
    if (throttle_table_new(cfg, &sh->throttle) < 0 || align_table_new(cfg, &sh->align) < 0) {
        fprintf(stderr, "herald: out of memory\n");
        return 1;
    }
    struct dnsq_sync *align_dns = NULL;
    int64_t next_align_ms = refresh_alignment(sh, &align_dns);
    struct tls_ctx_opts topts = {.ca_file = cfg->delivery.ca_file};
    if (tls_ctx_new(&topts, &sh->tls_ctx, err, sizeof err) < 0) {
        fprintf(stderr, "%s: delivery.ca_file: %s\n", opts->config_path, err);
        SSL_CTX_free(sh->redis_tls_ctx);
        config_free(cfg);
        free(sh->routes);
        free(sh->relays);
        free(sh);
        return 2;
    }
    sha1_hex(notes_script_terminal, sh->sha_terminal);
    sha1_hex(notes_script_defer, sh->sha_defer);
    sha1_hex(notes_script_mover, sh->sha_mover);
    sha1_hex(notes_script_admit, sh->sha_admit);
    sha1_hex(notes_script_cancel, sh->sha_cancel);
    const char *prefix = cfg->redis.prefix ? cfg->redis.prefix : "herald:";
    snprintf(sh->retry_key, sizeof sh->retry_key, "%sretry", prefix);
    snprintf(sh->job_key_prefix, sizeof sh->job_key_prefix, "%sjob:", prefix);
    sh->prefix = prefix;

    unsigned n = cfg->engine.workers;
    if (n == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (unsigned)cpus : 1;
    }
    sh->n_workers = n;

    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, NULL);

    struct worker *workers = calloc(n, sizeof *workers);
    unsigned started = 0, n_init = 0;
    int exit_code = 0;
    for (unsigned i = 0; workers && i < n; i++) {
        rc = worker_init(&workers[i], i, sh);
        if (rc < 0) {
            fprintf(stderr, "herald: cannot start worker %u: %s%s\n", i, herald_strerror(rc),
                    (rc == -ENOSYS || rc == -EPERM) ? " (io_uring unavailable or disabled)" : "");
            exit_code = 1;
            break;
        }
        n_init++;
        if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) != 0) {
            exit_code = 1;
            break;
        }
        started++;
    }
    if (started == n)
        log_event(LOG_INFO, "event=started workers=%u consumer=%s redis=%s:%u jobs=%s events=%s",
                  n, cfg->engine.consumer, sh->redis.host, sh->redis.port, cfg->redis.jobs,
                  cfg->redis.events);
    else
        atomic_store(&sh->stop, true);

    int n_signals = 0;
    while (started > 0) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            n_signals++;
            log_event(LOG_INFO, "event=signal signal=%s action=drain", sig == SIGTERM ? "TERM" : "INT");
            atomic_store(&sh->stop, true);
            if (n_signals >= 3) {
                log_event(LOG_WARN, "event=forced_exit reason=\"third signal\"");
                _exit(1);
            }
        } else if (sig == SIGHUP) {
            log_event(LOG_WARN, "event=reload_unsupported reason=\"SIGHUP reload is not in this "
                                "build; restart to apply config changes\"");
        }
        if (atomic_load(&sh->failed))
            atomic_store(&sh->stop, true);
        if (next_align_ms && !atomic_load(&sh->stop) && clock_mono_ms() >= next_align_ms)
            next_align_ms = refresh_alignment(sh, &align_dns);
        bool all_done = true;
        for (unsigned i = 0; i < started; i++)
            if (!workers[i].done)
                all_done = false;
        if (all_done && atomic_load(&sh->stop))
            break;
        if (all_done)
            break;
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(workers[i].thread, NULL);
    for (unsigned i = 0; workers && i < n_init; i++) {
        redis_client_free(&workers[i].intake);
        redis_client_free(&workers[i].notes);
        pool_free(&workers[i].pool);
        if (workers[i].ring_live)
            ring_exit(&workers[i].ring);
    }
    if (atomic_load(&sh->failed))
        exit_code = 1;
    free(workers);
    free(sh->routes);
    SSL_CTX_free(sh->tls_ctx);
    SSL_CTX_free(sh->redis_tls_ctx);
    throttle_table_free(sh->throttle);
    align_table_free(sh->align);
    dnsq_sync_free(align_dns);
    if (sh->relays) {
        explicit_bzero(sh->relays, cfg->n_tenants * sizeof *sh->relays);
        free(sh->relays);
    }
    free(sh);
    config_free(cfg);
    log_event(LOG_INFO, "event=stopped exit=%d", exit_code);
    return exit_code;
}
