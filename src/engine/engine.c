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
#include "herald/inbound.h"
#include "herald/service.h"
#include "metrics.h"
#include "unsub.h"
#include "status.h"
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
static int resolve_routes(struct engine_gen *sh)
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

/* Tenant relays: the credentials are read here, at load; the host is
 * resolved by the workers' resolver when a message goes (route.c), so a
 * relay name that does not resolve yet defers its tenant's mail instead
 * of stopping the engine, and dns.servers applies to relays too. */
static int load_relays(struct engine_gen *sh)
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
        snprintf(er->host, sizeof er->host, "%s", r->host);
        er->port = r->port; /* the loader's default follows r->tls */
        er->tls_mode = r->tls == CFG_RELAY_TLS_IMPLICIT ? SMTP_TLS_ACTIVE
                       : r->tls == CFG_RELAY_TLS_NONE   ? SMTP_TLS_OFF
                                                        : SMTP_TLS_MUST;
        er->verify = !r->insecure_skip_verify;
        if (r->ca_file) {
            char err[256];
            struct tls_ctx_opts o = {.ca_file = r->ca_file};
            if (tls_ctx_new(&o, &er->tls_ctx, err, sizeof err) < 0) {
                log_event(LOG_ERROR, "event=relay_ca_unreadable tenant=%s ca_file=%s reason=\"%s\"",
                          cfg->tenants[i].name, r->ca_file, err);
                return -HERR_CONFIG;
            }
        }
        if (r->insecure_skip_verify)
            log_event(LOG_WARN,
                      "event=relay_tls_unverified tenant=%s relay=%s reason=\"insecure_skip_verify: "
                      "the relay's certificate is not checked; whoever answers for it gets the "
                      "credentials\"",
                      cfg->tenants[i].name, r->host);
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
            er->auth.allow_unverified = r->insecure_skip_verify;
        }
        er->configured = true;
    }
    return 0;
}

static void gen_free(struct engine_gen *g)
{
    if (!g)
        return;
    free(g->routes);
    align_table_free(g->align);
    if (g->relays) {
        for (size_t i = 0; i < g->cfg->n_tenants; i++)
            SSL_CTX_free(g->relays[i].tls_ctx);
        explicit_bzero(g->relays, g->cfg->n_tenants * sizeof *g->relays);
        free(g->relays);
    }
    explicit_bzero(&g->verp, sizeof g->verp);
    config_free(g->cfg);
    free(g);
}

struct engine_gen *engine_gen_acquire(struct engine_shared *sh)
{
    pthread_mutex_lock(&sh->gen_lock);
    struct engine_gen *g = atomic_load_explicit(&sh->gen, memory_order_acquire);
    atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
    pthread_mutex_unlock(&sh->gen_lock);
    return g;
}

/* Free every generation that is no longer current and that nothing uses.
 * A count cannot rise again once it is zero: references are only taken to
 * the current generation, under gen_lock. */
static void gen_sweep(struct engine_shared *sh)
{
    pthread_mutex_lock(&sh->gen_lock);
    struct engine_gen *cur = atomic_load(&sh->gen);
    for (struct engine_gen **pp = &cur->prev; *pp;) {
        struct engine_gen *g = *pp;
        if (atomic_load_explicit(&g->refs, memory_order_acquire) == 0) {
            *pp = g->prev;
            log_event(LOG_INFO, "event=generation_freed generation=%u", g->number);
            gen_free(g);
        } else {
            pp = &g->prev;
        }
    }
    pthread_mutex_unlock(&sh->gen_lock);
}

/* Takes cfg (freed on failure). */
/* The VERP signing keys (inbound.secret_file), when any tenant has a
 * return_path or this process listens for reports. */
static int load_verp(struct engine_gen *g)
{
    const struct cfg_inbound *in = &g->cfg->inbound;
    if (!in->secret_file)
        return 0;
    char why[400];
    int rc = fb_secret_load(in->secret_file, &g->verp, why, sizeof why);
    if (rc < 0) {
        log_event(LOG_ERROR, "event=inbound_secret_unreadable file=%s reason=%s",
                  LOG_VALUE(in->secret_file), LOG_VALUE(why));
        return -HERR_CONFIG;
    }
    g->verp_ok = true;
    return 0;
}

/* The inbound listener noted a late bounce or a complaint for a tenant:
 * the per-tenant counters the metrics show. */
static void inbound_noted(void *arg, const char *tenant, enum inbound_outcome o)
{
    struct engine_shared *sh = arg;
    const struct engine_gen *g = atomic_load(&sh->gen);
    struct stats_row *r = stats_tenant_row(&sh->stats.tenants, g->cfg, tenant);
    if (r)
        atomic_fetch_add(o == INB_NOTED_BOUNCE ? &r->late_bounces : &r->complaints, 1);
}

static struct engine_gen *gen_new(struct config *cfg, unsigned number)
{
    struct engine_gen *g = calloc(1, sizeof *g);
    if (!g) {
        config_free(cfg);
        return NULL;
    }
    g->cfg = cfg;
    g->number = number;
    if (resolve_routes(g) < 0 || load_relays(g) < 0 || align_table_new(cfg, &g->align) < 0 ||
        load_verp(g) < 0) {
        gen_free(g);
        return NULL;
    }
    return g;
}

static bool str_differs(const char *a, const char *b)
{
    return (a == NULL) != (b == NULL) || (a && strcmp(a, b) != 0);
}

static bool strlist_differs(const struct cfg_strlist *a, const struct cfg_strlist *b)
{
    if (a->n != b->n)
        return true;
    for (size_t i = 0; i < a->n; i++)
        if (strcmp(a->items[i], b->items[i]) != 0)
            return true;
    return false;
}

/* Settings the running engine is built on (connections, threads, the
 * throttle table's IPs and providers): a reload that changes one is refused
 * with its name, the old config stays. Everything else applies live. */
static const char *restart_only_change(const struct config *a, const struct config *b)
{
    if (str_differs(a->redis.url, b->redis.url) || str_differs(a->redis.jobs, b->redis.jobs) ||
        str_differs(a->redis.group, b->redis.group) ||
        str_differs(a->redis.events, b->redis.events) ||
        str_differs(a->redis.prefix, b->redis.prefix) ||
        str_differs(a->redis.password_file, b->redis.password_file) ||
        str_differs(a->redis.password_env, b->redis.password_env) ||
        str_differs(a->redis.ca_file, b->redis.ca_file) ||
        str_differs(a->redis.cert_file, b->redis.cert_file) ||
        str_differs(a->redis.key_file, b->redis.key_file))
        return "redis";
    if (a->engine.workers != b->engine.workers || a->engine.workers_auto != b->engine.workers_auto)
        return "engine.workers";
    if (str_differs(a->engine.consumer, b->engine.consumer))
        return "engine.consumer";
    if (a->n_egress != b->n_egress)
        return "egress";
    for (size_t i = 0; i < a->n_egress; i++)
        if (strcmp(a->egress[i].name, b->egress[i].name) != 0 ||
            strlist_differs(&a->egress[i].ips, &b->egress[i].ips))
            return "egress";
    if (a->n_providers != b->n_providers)
        return "providers (names)";
    for (size_t i = 0; i < a->n_providers; i++)
        if (strcmp(a->providers[i].name, b->providers[i].name) != 0)
            return "providers (names)";
    if (strlist_differs(&a->dns.servers, &b->dns.servers))
        return "dns.servers";
    if (str_differs(a->delivery.ca_file, b->delivery.ca_file))
        return "delivery.ca_file";
    if (str_differs(a->metrics.listen, b->metrics.listen))
        return "metrics.listen";
    if (str_differs(a->metrics.token_file, b->metrics.token_file))
        return "metrics.token_file";
    if (str_differs(a->unsubscribe.listen, b->unsubscribe.listen))
        return "unsubscribe.listen";
    if (str_differs(a->unsubscribe.secret_file, b->unsubscribe.secret_file))
        return "unsubscribe.secret_file";
    return NULL;
}

/* SPF half of From alignment (herald/align.h): evaluated here, on the main
 * thread, with a blocking channel, before the workers start, then every
 * sender.spf_recheck from the signal loop, and for a reloaded config before
 * it is published — never on a worker thread. Returns the monotonic time of
 * the next evaluation, 0 for never. */
static int64_t refresh_alignment(struct engine_shared *sh, struct engine_gen *g)
{
    const struct config *cfg = g->cfg;
    if (!g->align || !align_table_needs_dns(g->align)) return 0;
    if (!sh->align_dns) {
        char err[300];
        if (dnsq_sync_new(&sh->align_dns, (const char *const *)cfg->dns.servers.items,
                          cfg->dns.servers.n, 5000, err, sizeof err) < 0) {
            log_event(LOG_WARN, "event=alignment_dns_unavailable reason=\"%s\"", err);
            return clock_mono_ms() + 60000;
        }
    }
    return clock_mono_ms() + align_table_refresh(g->align, dnsq_sync_lookup, sh->align_dns);
}

/* SIGHUP: load, check, resolve, publish. Any failure keeps the running
 * config and says why in one log line (and in the service manager's
 * STATUS, through `why`). Returns whether the new config applies. */
static bool reload(struct engine_shared *sh, const char *path, char *why, size_t why_len)
{
    char err[512];
    struct config *cfg = NULL;
    if (config_load(path, &cfg, err, sizeof err) < 0) {
        log_event(LOG_ERROR, "event=reload_refused reason=%s action=kept_running_config",
                  LOG_VALUE(err));
        snprintf(why, why_len, "%s", err);
        return false;
    }
    struct engine_gen *cur = atomic_load(&sh->gen);
    const char *what = restart_only_change(cur->cfg, cfg);
    if (what) {
        log_event(LOG_ERROR,
                  "event=reload_refused reason=\"%s changed; that needs a restart\" "
                  "action=kept_running_config",
                  what);
        snprintf(why, why_len, "%s changed; that needs a restart", what);
        config_free(cfg);
        return false;
    }
    struct engine_gen *g = gen_new(cfg, cur->number + 1);
    if (!g) {
        log_event(LOG_ERROR, "event=reload_refused reason=\"routes or relays did not resolve\" "
                             "action=kept_running_config");
        snprintf(why, why_len, "routes or relays did not resolve");
        return false;
    }
    g->prev = cur;
    sh->next_align_ms = refresh_alignment(sh, g);
    /* Slots reserved ahead under the old rates are pulled in to the new
     * ones; a saturated pair keeps its spacing (no fresh burst). */
    throttle_table_retime(sh->throttle, g->cfg, clock_mono_ms() * 1000);
    atomic_store_explicit(&sh->gen, g, memory_order_release);
    log_event(LOG_INFO, "event=reloaded generation=%u path=%s", g->number, path);
    snprintf(why, why_len, "generation %u", g->number);
    return true;
}

/* The one-click unsubscribe keys, once at start: the links the workers
 * sign and the listener verifies must agree, so a reload may not change
 * the secret (reload_refusal). */
static int unsub_keys_load(const struct config *cfg, struct engine_shared *sh, char *err,
                           size_t errlen)
{
    if (!cfg->unsubscribe.secret_file) return 0;
    unsigned char secret[32];
    char why[400];
    int rc = config_unsub_secret(cfg, secret, why, sizeof why);
    if (rc == 0 && fb_keys_derive(secret, &sh->unsub_keys) < 0) {
        snprintf(why, sizeof why, "unsubscribe: cannot derive the token keys");
        rc = -EIO;
    }
    explicit_bzero(secret, sizeof secret);
    if (rc < 0) {
        snprintf(err, errlen, "%s: %s", cfg->path, why);
        return rc;
    }
    sh->unsub_keys_loaded = true;
    return 0;
}

int engine_run(const struct engine_opts *opts)
{
    /* A SIGHUP while starting (loading keys, SPF lookups for alignment)
     * would end the process by its default action: hold it until the main
     * loop, which takes it as a reload. SIGTERM may still end a start. */
    sigset_t hup;
    sigemptyset(&hup);
    sigaddset(&hup, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &hup, NULL);
    char err[512];
    struct config *cfg = NULL;
    int rc = config_load(opts->config_path, &cfg, err, sizeof err);
    if (rc < 0) {
        fprintf(stderr, "%s\n", err);
        return 2;
    }
    char metrics_token[METRICS_TOKEN_MAX];
    if (metrics_token_load(&cfg->metrics, metrics_token, err, sizeof err) < 0) {
        fprintf(stderr, "%s: %s\n", opts->config_path, err);
        config_free(cfg);
        return 2;
    }
    struct engine_shared *sh = calloc(1, sizeof *sh);
    if (!sh) {
        config_free(cfg);
        return 1;
    }
    pthread_mutex_init(&sh->gen_lock, NULL);
    atomic_store(&sh->last_reload, -1);
    pthread_mutex_init(&sh->susp.lock, NULL);
    const char *why = "";
    if (redis_addr_from_config(cfg, &sh->redis, &why) < 0) {
        fprintf(stderr, "%s: redis: %s\n", opts->config_path, why);
        config_free(cfg);
        free(sh);
        return 2;
    }
    stats_init(&sh->stats);
    sh->started_wall_ms = clock_wall_ms();
    if (unsub_keys_load(cfg, sh, err, sizeof err) < 0) {
        fprintf(stderr, "%s\n", err);
        config_free(cfg);
        free(sh);
        return 2;
    }
    struct engine_gen *gen0 = gen_new(cfg, 1);
    if (!gen0) {
        free(sh);
        return 2;
    }
    atomic_store(&sh->gen, gen0);
    if (sh->redis.tls) {
        struct tls_ctx_opts ropts = {.ca_file = cfg->redis.ca_file,
                                     .cert_file = cfg->redis.cert_file,
                                     .key_file = cfg->redis.key_file};
        if (tls_ctx_new(&ropts, &sh->redis_tls_ctx, err, sizeof err) < 0) {
            fprintf(stderr, "%s: redis TLS: %s\n", opts->config_path, err);
            gen_free(gen0);
            free(sh);
            return 2;
        }
    }
    if (throttle_table_new(cfg, &sh->throttle) < 0) {
        fprintf(stderr, "herald: out of memory\n");
        return 1;
    }
    sh->next_align_ms = refresh_alignment(sh, gen0);
    struct tls_ctx_opts topts = {.ca_file = cfg->delivery.ca_file};
    if (tls_ctx_new(&topts, &sh->tls_ctx, err, sizeof err) < 0) {
        fprintf(stderr, "%s: delivery.ca_file: %s\n", opts->config_path, err);
        SSL_CTX_free(sh->redis_tls_ctx);
        gen_free(gen0);
        free(sh);
        return 2;
    }
    sha1_hex(notes_script_terminal, sh->sha_terminal);
    sha1_hex(notes_script_defer, sh->sha_defer);
    sha1_hex(notes_script_mover, sh->sha_mover);
    sha1_hex(notes_script_admit, sh->sha_admit);
    sha1_hex(notes_script_cancel, sh->sha_cancel);
    sha1_hex(notes_script_lease, sh->sha_lease);
    keys_init(&sh->keys, cfg->redis.prefix);

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
    if (started == n) {
        log_event(LOG_INFO, "event=started workers=%u consumer=%s redis=%s:%u jobs=%s events=%s",
                  n, cfg->engine.consumer, sh->redis.host, sh->redis.port, cfg->redis.jobs,
                  cfg->redis.events);
    } else {
        atomic_store(&sh->stop, true);
    }
    sh->workers = workers; /* before the metrics thread reads them */
    sh->n_started = started;
    struct metrics_server *metrics = NULL;
    if (started == n && cfg->metrics.listen) {
        if (metrics_start(sh, cfg->metrics.listen, metrics_token, &metrics, err, sizeof err) < 0) {
            log_event(LOG_ERROR, "event=metrics_failed reason=\"%s\"", err);
            fprintf(stderr, "herald: %s\n", err);
            exit_code = 1;
            atomic_store(&sh->stop, true);
        } else {
            log_event(LOG_INFO, "event=metrics_listening address=%s token=%s",
                      cfg->metrics.listen, metrics_token[0] ? "required" : "none");
        }
    }
    explicit_bzero(metrics_token, sizeof metrics_token);
    struct inbound *inbound = NULL;
    if (started == n && cfg->inbound.listen.n) {
        const struct engine_gen *g0 = atomic_load(&sh->gen);
        if (inbound_start(cfg, &sh->redis, &g0->verp, &sh->keys, sh->stats.inbound, inbound_noted,
                          sh, &inbound, err, sizeof err) < 0) {
            log_event(LOG_ERROR, "event=inbound_failed reason=%s", LOG_VALUE(err));
            fprintf(stderr, "herald: %s\n", err);
            exit_code = 1;
            atomic_store(&sh->stop, true);
        }
    }
    struct unsub_server *unsub = NULL;
    if (started == n && !atomic_load(&sh->stop) && cfg->unsubscribe.listen) {
        int urc = unsub_start(sh, cfg->unsubscribe.listen, &sh->unsub_keys, &unsub, err, sizeof err);
        if (urc < 0) {
            log_event(LOG_ERROR, "event=unsubscribe_failed reason=%s", LOG_VALUE(err));
            fprintf(stderr, "herald: %s\n", err);
            exit_code = 1;
            atomic_store(&sh->stop, true);
        } else {
            log_event(LOG_INFO, "event=unsubscribe_listening address=%s base_url=%s",
                      cfg->unsubscribe.listen, LOG_VALUE(cfg->unsubscribe.base_url));
        }
    }

    if (started == n && !atomic_load(&sh->stop))
        service_notifyf("READY=1\nSTATUS=running: %u workers, consumer %s, jobs %s", n,
                        cfg->engine.consumer, cfg->redis.jobs);
    int n_signals = 0;
    while (started > 0) {
        struct timespec ts = {.tv_sec = 0, .tv_nsec = 200 * 1000000};
        int sig = sigtimedwait(&set, NULL, &ts);
        if (sig == SIGTERM || sig == SIGINT) {
            n_signals++;
            log_event(LOG_INFO, "event=signal signal=%s action=drain", sig == SIGTERM ? "TERM" : "INT");
            if (n_signals == 1)
                service_notify("STOPPING=1\nSTATUS=draining: finishing in-flight jobs");
            atomic_store(&sh->stop, true);
            if (n_signals >= 3) {
                log_event(LOG_WARN, "event=forced_exit reason=\"third signal\"");
                _exit(1);
            }
        } else if (sig == SIGHUP) {
            struct timespec mono;
            clock_gettime(CLOCK_MONOTONIC, &mono);
            service_notifyf("RELOADING=1\nMONOTONIC_USEC=%llu",
                            (unsigned long long)mono.tv_sec * 1000000ull +
                                (unsigned long long)mono.tv_nsec / 1000);
            char outcome[512];
            bool ok = reload(sh, opts->config_path, outcome, sizeof outcome);
            atomic_store(&sh->last_reload, ok ? 1 : 0);
            atomic_store(&sh->last_reload_wall_ms, clock_wall_ms());
            service_notifyf("READY=1\nSTATUS=%s: %.400s", ok ? "running, reloaded" :
                            "running the previous config; reload refused", outcome);
        }
        if (atomic_load(&sh->failed))
            atomic_store(&sh->stop, true);
        if (sh->next_align_ms && !atomic_load(&sh->stop) && clock_mono_ms() >= sh->next_align_ms)
            sh->next_align_ms = refresh_alignment(sh, atomic_load(&sh->gen));
        gen_sweep(sh);
        bool all_done = true;
        for (unsigned i = 0; i < started; i++)
            if (!atomic_load(&workers[i].done))
                all_done = false;
        if (all_done && atomic_load(&sh->stop))
            break;
        if (all_done)
            break;
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(workers[i].thread, NULL);
    metrics_stop(metrics);
    inbound_stop(inbound);
    unsub_stop(unsub);
    for (unsigned i = 0; workers && i < n_init; i++) {
        redis_client_free(&workers[i].intake);
        redis_client_free(&workers[i].notes);
        pool_free(&workers[i].pool);
        worker_free(&workers[i]);
        status_free(&workers[i]);
        if (workers[i].ring_live)
            ring_exit(&workers[i].ring);
    }
    if (atomic_load(&sh->failed))
        exit_code = 1;
    free(workers);
    SSL_CTX_free(sh->tls_ctx);
    SSL_CTX_free(sh->redis_tls_ctx);
    throttle_table_free(sh->throttle);
    for (struct engine_gen *g = atomic_load(&sh->gen), *prev; g; g = prev) {
        prev = g->prev;
        gen_free(g);
    }
    dnsq_sync_free(sh->align_dns);
    stats_destroy(&sh->stats);
    pthread_mutex_destroy(&sh->gen_lock);
    pthread_mutex_destroy(&sh->susp.lock);
    free(sh);
    log_event(LOG_INFO, "event=stopped exit=%d", exit_code);
    return exit_code;
}
