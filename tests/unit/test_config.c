/* Config loader tests: a full config round-trips with defaults applied; each
 * bad config fails with the exact "file:line:col: message"; the duration,
 * rate and size parsers by table; route precedence. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "herald/config.h"
#include "herald/core.h"
#include "herald/job.h"

/* What `herald check-config` prints for cfg (malloc'd), or NULL. */
static char *effective_text(const struct config *cfg)
{
    char *text = NULL;
    size_t text_len = 0;
    FILE *mem = open_memstream(&text, &text_len);
    if (!mem)
        return NULL;
    config_print_effective(cfg, mem);
    fclose(mem);
    return text;
}

static struct config *load(const char *yaml, char *err, size_t errlen)
{
    struct config *cfg = NULL;
    int rc = config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, errlen);
    if (rc != 0) {
        CHECK(cfg == NULL);
        return NULL;
    }
    return cfg;
}

static const char full_yaml[] =
    "redis:\n"
    "  url: rediss://u:pw@redis.example.net:6380/2\n"
    "  jobs: q:jobs\n"
    "  group: g\n"
    "  events: q:events\n"
    "  prefix: 'q:'\n"
    "  password_env: REDIS_PW\n"
    "engine:\n"
    "  workers: 3\n"
    "  ehlo: mta1.example.net\n"
    "  consumer: box1\n"
    "  batch: 64\n"
    "  max_inflight: 500\n"
    "  claim_idle: 2m\n"
    "  shutdown_grace: 10s\n"
    "  max_field_bytes: 64KiB\n"
    "  max_message_bytes: 2M\n"
    "egress:\n"
    "  default: [127.0.0.1]\n"
    "  bulk: { ips: ['::1', 127.0.0.2], ehlo: bulk.example.net }\n"
    "dns:\n"
    "  servers: ['127.0.0.1:5353', '[::1]:53', 10.0.0.1]\n"
    "routes:\n"
    "  '*.test': '127.0.0.1:2525'\n"
    "  'Exact.Test': '[::1]:2526'\n"
    "  '*.deep.test': relay.example.net\n"
    "tenants:\n"
    "  acme:\n"
    "    from: reminders@acme.test\n"
    "    from_name: Acme Clinic\n"
    "    reply_to: desk@acme.test\n"
    "    domains: [Acme.test, mail.acme.test]\n"
    "    dkim: { selector: s1, key: /etc/herald/acme.pem, algorithm: ed25519-sha256 }\n"
    "    relay: { host: smtp.acme.test, tls: tls, user: u, password_file: /run/pw }\n"
    "    tls: required\n"
    "    egress: bulk\n"
    "    rate: 100/m\n"
    "    weight: 5\n"
    "    max_age: 6h\n"
    "  bravo:\n"
    "    from: noreply@bravo.test\n"
    "delivery:\n"
    "  port: 2525\n"
    "  tls: verify\n"
    "  ca_file: /etc/ssl/certs/ca-certificates.crt\n"
    "  retry: [30s, 5m, 1h]\n"
    "  max_age: 1d\n"
    "  timeouts: { connect: 5s, banner: 1m, command: 2m, data_block: 3m, data_end: 4m, "
    "idle: 250ms }\n"
    "providers:\n"
    "  google: { mx: ['*.google.com', '*.googlemail.com'], connections: 20, rate: 3600/h,\n"
    "            messages_per_connection: 50, tls: verify }\n"
    "  yahoo:\n"
    "recipients: { limit: [3/h, 10/d], policy: drop, exempt: [high, bulk] }\n";

static void test_full(void)
{
    char err[256] = "";
    struct config *cfg = load(full_yaml, err, sizeof err);
    CHECK_EQ_STR(err, "");
    CHECK(cfg != NULL);
    if (!cfg) return;
    CHECK_EQ_STR(cfg->path, "t.yaml");
    CHECK_EQ_STR(cfg->redis.url, "rediss://u:pw@redis.example.net:6380/2");
    CHECK_EQ_STR(cfg->redis.jobs, "q:jobs");
    CHECK_EQ_STR(cfg->redis.group, "g");
    CHECK_EQ_STR(cfg->redis.events, "q:events");
    CHECK_EQ_STR(cfg->redis.prefix, "q:");
    CHECK(cfg->redis.password_file == NULL);
    CHECK_EQ_STR(cfg->redis.password_env, "REDIS_PW");

    const struct cfg_engine *e = &cfg->engine;
    CHECK_EQ_INT(e->workers, 3);
    CHECK(!e->workers_auto);
    CHECK_EQ_STR(e->ehlo, "mta1.example.net");
    CHECK_EQ_STR(e->consumer, "box1");
    CHECK_EQ_INT(e->batch, 64);
    CHECK_EQ_INT(e->max_inflight, 500);
    CHECK_EQ_INT(e->claim_idle_ms, 120000);
    CHECK_EQ_INT(e->shutdown_grace_ms, 10000);
    CHECK_EQ_INT(e->max_field_bytes, 65536);
    CHECK_EQ_INT(e->max_message_bytes, 2 << 20);

    CHECK_EQ_INT(cfg->n_egress, 2);
    const struct cfg_egress_pool *p = config_egress(cfg, "default");
    CHECK(p && p->ips.n == 1 && strcmp(p->ips.items[0], "127.0.0.1") == 0);
    if (p) CHECK_EQ_STR(p->ehlo, "mta1.example.net"); /* engine.ehlo, filled at load */
    CHECK(config_egress(cfg, NULL) == p);
    p = config_egress(cfg, "bulk");
    CHECK(p && p->ips.n == 2);
    if (p && p->ips.n == 2) {
        CHECK_EQ_STR(p->ips.items[0], "::1");
        CHECK_EQ_STR(p->ips.items[1], "127.0.0.2");
        CHECK_EQ_STR(p->ehlo, "bulk.example.net");
    }
    CHECK(config_egress(cfg, "nope") == NULL);
    CHECK_EQ_INT(cfg->dns.servers.n, 3);

    CHECK_EQ_INT(cfg->n_routes, 3);
    const struct cfg_route *r = config_route(cfg, "exact.test");
    CHECK(r && strcmp(r->host, "::1") == 0 && r->port == 2526);
    r = config_route(cfg, "x.deep.test");
    CHECK(r && strcmp(r->host, "relay.example.net") == 0 && r->port == 2525); /* delivery.port */

    CHECK_EQ_INT(cfg->n_tenants, 2);
    const struct cfg_tenant *t = config_tenant(cfg, "acme");
    CHECK(t != NULL);
    if (t) {
        CHECK_EQ_STR(t->from, "reminders@acme.test");
        CHECK_EQ_STR(t->from_name, "Acme Clinic");
        CHECK_EQ_STR(t->reply_to, "desk@acme.test");
        CHECK_EQ_INT(t->domains.n, 2);
        CHECK_EQ_STR(t->domains.items[0], "acme.test"); /* folded to lower case */
        CHECK_EQ_INT(t->n_dkim, 1);
        CHECK_EQ_STR(t->dkim[0].selector, "s1");
        CHECK_EQ_STR(t->dkim[0].key, "/etc/herald/acme.pem");
        CHECK_EQ_STR(t->dkim[0].algorithm, "ed25519-sha256");
        CHECK(t->dkim[0].domain == NULL && t->dkim[0].expire_ms == 0 && !t->dkim[0].loaded);
        CHECK_EQ_STR(t->relay.host, "smtp.acme.test");
        CHECK_EQ_INT(t->relay.port, 465); /* implicit TLS default */
        CHECK_EQ_INT(t->relay.tls, CFG_RELAY_TLS_IMPLICIT);
        CHECK_EQ_STR(t->relay.user, "u");
        CHECK_EQ_STR(t->relay.password_file, "/run/pw");
        CHECK(!t->relay.allow_plaintext_auth);
        CHECK_EQ_INT(t->tls, CFG_TLS_REQUIRED);
        CHECK_EQ_STR(t->egress, "bulk");
        CHECK_EQ_INT(t->rate.count, 100);
        CHECK_EQ_INT(t->rate.window_s, 60);
        CHECK_EQ_INT(t->weight, 5);
        CHECK_EQ_INT(t->max_age_ms, 6 * 3600000LL);
    }
    t = config_tenant(cfg, "bravo");
    CHECK(t != NULL);
    if (t) {
        CHECK_EQ_INT(t->domains.n, 1);
        CHECK_EQ_STR(t->domains.items[0], "bravo.test");
        CHECK(t->n_dkim == 0 && t->relay.host == NULL);
        CHECK_EQ_STR(t->egress, "default");
        CHECK_EQ_INT(t->tls, CFG_TLS_UNSET); /* inherits: not filled */
        CHECK_EQ_INT(t->weight, 1);
        CHECK_EQ_INT(t->rate.count, 0);        /* no cap: not filled */
        CHECK_EQ_INT(t->max_age_ms, 86400000); /* delivery.max_age */
        CHECK_EQ_INT(t->from_fallback, CFG_FROM_SEND);
    }
    CHECK(config_tenant(cfg, "charlie") == NULL);
    CHECK(config_tenant(cfg, "ACME") == NULL);

    const struct cfg_delivery *d = &cfg->delivery;
    CHECK_EQ_INT(d->port, 2525);
    CHECK_EQ_INT(d->tls, CFG_TLS_VERIFY);
    CHECK_EQ_STR(d->ca_file, "/etc/ssl/certs/ca-certificates.crt");
    CHECK_EQ_INT(d->n_retry, 3);
    if (d->n_retry == 3) {
        CHECK_EQ_INT(d->retry_ms[0], 30000);
        CHECK_EQ_INT(d->retry_ms[2], 3600000);
    }
    CHECK_EQ_INT(d->max_age_ms, 86400000);
    CHECK_EQ_INT(d->timeouts.connect_ms, 5000);
    CHECK_EQ_INT(d->timeouts.banner_ms, 60000);
    CHECK_EQ_INT(d->timeouts.command_ms, 120000);
    CHECK_EQ_INT(d->timeouts.data_block_ms, 180000);
    CHECK_EQ_INT(d->timeouts.data_end_ms, 240000);
    CHECK_EQ_INT(d->timeouts.idle_ms, 250);

    CHECK_EQ_INT(cfg->n_providers, 3); /* google, yahoo, added default */
    const struct cfg_provider *pr = config_provider(cfg, "google");
    CHECK(pr != NULL);
    if (pr) {
        CHECK_EQ_INT(pr->mx.n, 2);
        CHECK_EQ_STR(pr->mx.items[1], "*.googlemail.com");
        CHECK_EQ_INT(pr->connections, 20);
        CHECK_EQ_INT(pr->rate.count, 3600);
        CHECK_EQ_INT(pr->rate.window_s, 3600);
        CHECK_EQ_INT(pr->messages_per_connection, 50);
        CHECK_EQ_INT(pr->tls, CFG_TLS_VERIFY);
    }
    pr = config_provider(cfg, "yahoo"); /* null value: all defaults */
    CHECK(pr && pr->connections == 10 && pr->messages_per_connection == 100 &&
          pr->mx.n == 0);
    pr = config_provider(cfg, "default");
    CHECK(pr && pr->connections == 10 && pr->messages_per_connection == 100);

    CHECK_EQ_INT(cfg->recipients.n_limits, 2);
    if (cfg->recipients.n_limits == 2) {
        CHECK_EQ_INT(cfg->recipients.limits[0].count, 3);
        CHECK_EQ_INT(cfg->recipients.limits[0].window_s, 3600);
        CHECK_EQ_INT(cfg->recipients.limits[1].count, 10);
        CHECK_EQ_INT(cfg->recipients.limits[1].window_s, 86400);
    }
    CHECK_EQ_STR(cfg->recipients.policy, "drop");
    CHECK_EQ_INT(cfg->recipients.exempt_mask, (1u << JOB_PRIO_HIGH) | (1u << JOB_PRIO_BULK));

    /* The summary shows everything an operator tunes, and no secrets. */
    char *text = effective_text(cfg);
    CHECK(text != NULL);
    if (text) {
        CHECK(strstr(text, "rediss://u:***@redis.example.net") != NULL);
        CHECK(strstr(text, "pw@") == NULL);
        CHECK(strstr(text, "30s, 5m, 1h") != NULL);
        CHECK(strstr(text, "20 connections per IP, rate 3600/h") != NULL);
        CHECK(strstr(text, "data_end 4m, idle 250ms") != NULL);
        CHECK(strstr(text, "Acme Clinic <reminders@acme.test>") != NULL);
        CHECK(strstr(text, "env $REDIS_PW") != NULL);
        free(text);
    }
    config_free(cfg);
}

static void test_defaults(void)
{
    char err[256] = "";
    struct config *cfg = load("", err, sizeof err);
    CHECK(cfg != NULL);
    if (!cfg) return;
    CHECK_EQ_STR(cfg->redis.url, "redis://127.0.0.1:6379/0");
    CHECK_EQ_STR(cfg->redis.jobs, "herald:jobs");
    CHECK_EQ_STR(cfg->redis.group, "herald");
    CHECK_EQ_STR(cfg->redis.events, "herald:events");
    CHECK_EQ_STR(cfg->redis.prefix, "herald:");
    CHECK(cfg->engine.workers_auto);
    CHECK(cfg->engine.workers >= 1 && cfg->engine.workers <= 256);
    CHECK(cfg->engine.ehlo && cfg->engine.ehlo[0]);
    CHECK(cfg->engine.consumer && cfg->engine.consumer[0]);
    CHECK_EQ_INT(cfg->engine.batch, 256);
    CHECK_EQ_INT(cfg->engine.max_inflight, 2000);
    CHECK_EQ_INT(cfg->engine.claim_idle_ms, 60000);
    CHECK_EQ_INT(cfg->engine.shutdown_grace_ms, 30000);
    CHECK_EQ_INT(cfg->engine.max_field_bytes, 1 << 20);
    CHECK_EQ_INT(cfg->engine.max_message_bytes, 10 << 20);
    CHECK_EQ_INT(cfg->n_egress, 1);
    CHECK_EQ_STR(cfg->egress[0].name, "default");
    CHECK_EQ_INT(cfg->egress[0].ips.n, 0);
    CHECK_EQ_INT(cfg->dns.servers.n, 0);
    CHECK_EQ_INT(cfg->n_routes, 0);
    CHECK(config_route(cfg, "x.test") == NULL);
    CHECK_EQ_INT(cfg->n_tenants, 0);
    CHECK_EQ_INT(cfg->delivery.port, 25);
    CHECK_EQ_INT(cfg->delivery.tls, CFG_TLS_OPPORTUNISTIC);
    CHECK(cfg->delivery.ca_file == NULL);
    CHECK_EQ_INT(cfg->delivery.n_retry, 5);
    if (cfg->delivery.n_retry == 5) {
        CHECK_EQ_INT(cfg->delivery.retry_ms[0], 60000);
        CHECK_EQ_INT(cfg->delivery.retry_ms[4], 4 * 3600000);
    }
    CHECK_EQ_INT(cfg->delivery.max_age_ms, 2 * 86400000LL);
    CHECK_EQ_INT(cfg->delivery.timeouts.connect_ms, 30000);
    CHECK_EQ_INT(cfg->delivery.timeouts.banner_ms, 300000);
    CHECK_EQ_INT(cfg->delivery.timeouts.command_ms, 300000);
    CHECK_EQ_INT(cfg->delivery.timeouts.data_block_ms, 180000);
    CHECK_EQ_INT(cfg->delivery.timeouts.data_end_ms, 600000);
    CHECK_EQ_INT(cfg->delivery.timeouts.idle_ms, 30000);
    CHECK_EQ_INT(cfg->n_providers, 1);
    const struct cfg_provider *pr = config_provider(cfg, NULL);
    CHECK(pr && strcmp(pr->name, "default") == 0 && pr->connections == 10 &&
          pr->messages_per_connection == 100);
    CHECK_EQ_INT(cfg->recipients.n_limits, 0);
    CHECK_EQ_INT(cfg->recipients.exempt_mask, 0);
    CHECK_EQ_STR(cfg->recipients.policy, "defer");
    config_free(cfg);

    /* Null sections and values mean "use the defaults". */
    cfg = load("redis:\nengine: ~\nroutes:\ntenants: {}\ndelivery: { port: null }\n", err,
               sizeof err);
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK_EQ_INT(cfg->delivery.port, 25);
        config_free(cfg);
    }
    /* Dotless domains (test setups) are fine; so is a scalar where a list goes. */
    cfg = load("tenants: { l: { from: x@localhost, domains: LocalHost } }\n", err, sizeof err);
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK_EQ_STR(cfg->tenants[0].domains.items[0], "localhost");
        config_free(cfg);
    }
    cfg = load("engine: { workers: auto }\ndelivery: { retry: 10m }\nrecipients: { limit: 5/d }\n",
               err, sizeof err);
    CHECK(cfg != NULL);
    if (cfg) {
        CHECK(cfg->engine.workers_auto);
        CHECK(cfg->engine.workers == (uint32_t)sysconf(_SC_NPROCESSORS_ONLN) ||
              cfg->engine.workers == 256);
        CHECK_EQ_INT(cfg->delivery.n_retry, 1);
        CHECK_EQ_INT(cfg->recipients.n_limits, 1);
        config_free(cfg);
    }
}

/* Every default is in the struct after a load, so nothing that reads the
 * config needs a fallback; the zeros that mean something stay zero. */
static void test_defaults_filled(void)
{
    char err[256] = "";
    struct config *cfg = load("tenants:\n  acme: { from: a@acme.test }\n"
                              "providers:\n  yahoo: { mx: ['*.yahoodns.net'] }\n",
                              err, sizeof err);
    CHECK_EQ_STR(err, "");
    CHECK(cfg != NULL);
    if (!cfg) return;
    CHECK_EQ_INT(cfg->delivery.timeouts.connect_ms, 30000);
    CHECK_EQ_INT(cfg->delivery.n_retry, 5);
    CHECK_EQ_STR(cfg->redis.prefix, "herald:");
    CHECK_EQ_INT(cfg->engine.idempotency_window_ms, 7 * 86400000LL);
    CHECK_EQ_INT(cfg->engine.max_reply_bytes, 512u << 20);
    CHECK_EQ_INT(cfg->sender.spf_recheck_ms, 15 * 60000);
    CHECK(cfg->reputation.min == 0.0 && cfg->reputation.max == 1.0 &&
          cfg->reputation.increase == 0.05 && cfg->reputation.decrease == 0.85);
    CHECK_EQ_INT(cfg->reputation.interval_ms, 30000);
    CHECK_EQ_INT(cfg->reputation.window_ms, 1000);
    CHECK_EQ_INT(cfg->reputation.min_rate.count, 6);
    CHECK_EQ_INT(cfg->reputation.min_rate.window_s, 60);
    CHECK_EQ_INT(cfg->recipients.over_limit, CFG_RCPT_DEFER);
    CHECK_EQ_STR(cfg->recipients.policy, "defer");
    CHECK_EQ_INT(cfg->addresses.typo_policy, CFG_TYPO_WARN);
    CHECK(cfg->addresses.typo_domains.n > 10);
    const struct cfg_egress_pool *pool = config_egress(cfg, "default");
    CHECK(pool && pool->ehlo && strcmp(pool->ehlo, cfg->engine.ehlo) == 0);
    const struct cfg_tenant *t = config_tenant(cfg, "acme");
    CHECK(t != NULL);
    if (t) {
        CHECK_EQ_STR(t->egress, "default");
        CHECK_EQ_INT(t->max_age_ms, 2 * 86400000LL);
        CHECK_EQ_INT(t->weight, 1);
        CHECK_EQ_INT(t->tls, CFG_TLS_UNSET);
        CHECK_EQ_INT(t->rate.count, 0);
    }
    /* A configured provider and the added "default" get the same values. */
    const struct cfg_provider *y = config_provider(cfg, "yahoo"), *d = config_provider(cfg, NULL);
    CHECK(y && d && d != y);
    if (y && d) {
        CHECK(y->connections == 10 && d->connections == 10);
        CHECK(y->messages_per_connection == 100 && d->messages_per_connection == 100);
        CHECK(y->rate.count == 0 && y->tls == CFG_TLS_UNSET);
    }

    /* check-config prints the effective values, words from the same tables. */
    char *text = effective_text(cfg);
    CHECK(text != NULL);
    if (text) {
        CHECK(strstr(text, "policy          defer\n") != NULL);
        CHECK(strstr(text, "exempt          none\n") != NULL);
        CHECK(strstr(text, "tls             opportunistic (delivery.tls)\n") != NULL);
        CHECK(strstr(text, "egress          default\n") != NULL);
        CHECK(strstr(text, "max_age 2d\n") != NULL);
        CHECK(strstr(text, "typo_policy warn") != NULL);
        CHECK(strstr(text, "timeouts        connect 30s, banner 5m, command 5m, data_block 3m, "
                           "data_end 10m, idle 30s\n") != NULL);
        CHECK(strstr(text, "retry           1m, 5m, 15m, 1h, 4h") != NULL);
        free(text);
    }
    config_free(cfg);

    /* The enum word tables parse and print the same spellings. */
    cfg = load("recipients: { policy: drop }\naddresses: { typo_policy: 'off' }\n"
               "reputation: { rules: [{ match: x, action: ignore }, { match: y, action: "
               "'suspend 30m' }] }\n",
               err, sizeof err);
    CHECK_EQ_STR(err, "");
    if (cfg) {
        CHECK_EQ_INT(cfg->recipients.over_limit, CFG_RCPT_DROP);
        CHECK_EQ_STR(cfg->recipients.policy, "drop");
        CHECK_EQ_STR(config_rcpt_policy_name(cfg->recipients.over_limit), "drop");
        CHECK_EQ_INT(cfg->addresses.typo_policy, CFG_TYPO_OFF);
        CHECK(cfg->reputation.n_rules == 2 && cfg->reputation.rules[0].action == CFG_REP_IGNORE &&
              cfg->reputation.rules[1].action == CFG_REP_SUSPEND &&
              cfg->reputation.rules[1].suspend_ms == 1800000);
        config_free(cfg);
    }
    /* The back-off floor as a rate, the judging window, and min 0. */
    cfg = load("reputation: { min: 0, min_rate: 2/m, window: 500ms }\n", err, sizeof err);
    CHECK_EQ_STR(err, "");
    if (cfg) {
        CHECK(cfg->reputation.min == 0.0);
        CHECK_EQ_INT(cfg->reputation.min_rate.count, 2);
        CHECK_EQ_INT(cfg->reputation.min_rate.window_s, 60);
        CHECK_EQ_INT(cfg->reputation.window_ms, 500);
        config_free(cfg);
    }
    CHECK_EQ_STR(config_tls_policy_name(CFG_TLS_UNSET), "inherit");
    CHECK_EQ_STR(config_tls_policy_name(CFG_TLS_VERIFY), "verify");
    CHECK_EQ_STR(config_relay_tls_name(CFG_RELAY_TLS_IMPLICIT), "tls");
    CHECK_EQ_STR(config_from_fallback_name(CFG_FROM_REFUSE), "refuse");
    CHECK_EQ_STR(config_rep_action_name(CFG_REP_BACKOFF), "backoff");
    CHECK_EQ_STR(config_typo_policy_name((enum cfg_typo_policy)99), "?");
}

static const struct {
    const char *yaml;
    const char *err;
} bad[] = {
    /* unknown keys, reported where they are */
    {"foo: 1\n", "t.yaml:1:1: unknown key 'foo' at top level"},
    {"engine:\n  workers: 2\n  workerz: 2\n", "t.yaml:3:3: unknown key 'workerz' in engine"},
    {"tenants:\n  acme:\n    from: a@acme.test\n    bogus: 1\n",
     "t.yaml:4:5: unknown key 'bogus' in tenants.acme"},
    {"tenants:\n  acme:\n    from: a@acme.test\n    relay: { host: h, prt: 1 }\n",
     "t.yaml:4:23: unknown key 'prt' in tenants.acme.relay"},
    {"delivery:\n  timeouts: { conect: 1s }\n",
     "t.yaml:2:15: unknown key 'conect' in delivery.timeouts"},
    {"egress:\n  default: { ipz: [] }\n", "t.yaml:2:14: unknown key 'ipz' in egress.default"},
    {"providers:\n  g: { mx: [], conns: 1 }\n", "t.yaml:2:16: unknown key 'conns' in providers.g"},
    /* wrong types and values */
    {"delivery:\n  max_age: abc\n", "t.yaml:2:12: expected a duration like 30s, got 'abc'"},
    {"delivery:\n  retry: [1m, 5x]\n", "t.yaml:2:15: expected a duration like 30s, got '5x'"},
    {"delivery:\n  timeouts: { idle: 0 }\n",
     "t.yaml:2:21: expected a duration of at least 1ms, got '0'"},
    {"delivery:\n  retry: []\n", "t.yaml:2:10: retry needs at least one step"},
    {"delivery:\n  max_age: [1d]\n", "t.yaml:2:12: expected a duration like 30s, got a list"},
    {"providers:\n  g: { rate: 10/x }\n", "t.yaml:2:14: expected a rate like 3600/h, got '10/x'"},
    {"recipients: { limit: [3/h, 0/d] }\n", "t.yaml:1:28: expected a rate like 3600/h, got '0/d'"},
    {"recipients: { limit: [3/h, 1001/d] }\n",
     "t.yaml:1:28: a recipient cap counts at most 1000 sends, got '1001/d'"},
    {"recipients:\n  limit: 3/h\n  exempt: [high, urgent]\n",
     "t.yaml:3:18: unknown value 'urgent' for exempt (expected high, normal or bulk)"},
    {"recipients: { exempt: { high: 1 } }\n",
     "t.yaml:1:23: expected a list of priorities like [high], got a mapping"},
    {"providers:\n  g: { recipients_per_message: 2 }\n",
     "t.yaml:2:8: unknown key 'recipients_per_message' in providers.g"},
    {"recipients: { policy: bounce }\n",
     "t.yaml:1:23: unknown value 'bounce' for policy (expected defer or drop)"},
    {"delivery:\n  tls: maybe\n",
     "t.yaml:2:8: unknown value 'maybe' for tls (expected opportunistic, required or verify)"},
    {"tenants:\n  a: { from: x@a.test, tls: yes }\n",
     "t.yaml:2:29: unknown value 'yes' for tls (expected opportunistic, required or verify)"},
    {"tenants:\n  a: { from: x@a.test, relay: { host: h, tls: ssl } }\n",
     "t.yaml:2:47: unknown value 'ssl' for tls (expected starttls, tls or none)"},
    {"tenants:\n  a: { from: x@a.test, from_fallback: [send] }\n",
     "t.yaml:2:39: unknown value a list for from_fallback (expected send, rewrite or refuse)"},
    {"providers:\n  g: { tls: Verify }\n",
     "t.yaml:2:13: unknown value 'Verify' for tls (expected opportunistic, required or verify)"},
    {"delivery:\n  port: 70000\n", "t.yaml:2:9: expected an integer from 1 to 65535, got '70000'"},
    {"delivery:\n  port: 0\n", "t.yaml:2:9: expected an integer from 1 to 65535, got '0'"},
    {"engine:\n  workers: 0\n", "t.yaml:2:12: expected auto or an integer from 1 to 256, got '0'"},
    {"engine:\n  workers: 257\n",
     "t.yaml:2:12: expected auto or an integer from 1 to 256, got '257'"},
    {"reputation: { rules: [{ match: x, action: suspend }] }\n",
     "t.yaml:1:43: expected backoff, ignore or 'suspend DURATION', got 'suspend'"},
    {"reputation: { rules: [{ match: x, action: backoff now }] }\n",
     "t.yaml:1:43: expected backoff, ignore or 'suspend DURATION', got 'backoff now'"},
    {"reputation: { rules: [{ match: x, action: suspend 0s }] }\n",
     "t.yaml:1:43: expected 'suspend DURATION' (at least 1s), got 'suspend 0s'"},
    {"reputation: { min_rate: fast }\n", "t.yaml:1:25: expected a rate like 3600/h, got 'fast'"},
    {"reputation: { window: 10ms }\n",
     "t.yaml:1:23: expected a duration of at least 100ms, got '10ms'"},
    {"engine:\n  max_field_bytes: 12q\n", "t.yaml:2:20: expected a size like 1MiB, got '12q'"},
    {"engine:\n  ehlo: 'bad host'\n", "t.yaml:2:9: expected a host name, got 'bad host'"},
    {"redis:\n  url: http://x\n",
     "t.yaml:2:8: expected a redis:// or rediss:// URL, got 'http://x'"},
    {"redis:\n  url: 'http://u:secret@x'\n",
     "t.yaml:2:8: expected a redis:// or rediss:// URL, got 'http://u:***@x'"},
    {"redis:\n  url: unix:///run/redis/redis.sock\n",
     "t.yaml:2:8: unix:// Redis URLs are not supported; use redis://host:port"},
    {"redis: { password_file: f, password_env: E }\n",
     "t.yaml:1:42: set password_file or password_env in redis, not both"},
    {"engine: []\n", "t.yaml:1:9: expected a mapping in engine, got a list"},
    {"- 1\n", "t.yaml:1:1: expected a mapping at top level, got a list"},
    /* tenants */
    {"tenants:\n  acme:\n    from_name: Acme\n",
     "t.yaml:2:3: missing required key 'from' in tenants.acme"},
    {"tenants:\n  acme:\n", "t.yaml:2:3: missing required key 'from' in tenants.acme"},
    {"tenants:\n  acme: { from: acme.test }\n",
     "t.yaml:2:17: expected an address like user@example.test, got 'acme.test'"},
    {"tenants:\n  acme: { from: a@acme.test, domains: [other.test] }\n",
     "t.yaml:2:17: from domain 'acme.test' is not in tenants.acme.domains"},
    {"tenants:\n  'bad name': { from: a@acme.test }\n",
     "t.yaml:2:3: invalid tenant name 'bad name': expected a name of 1-64 characters from "
     "A-Z a-z 0-9 _ . -"},
    {"tenants:\n  acme: { from: a@acme.test, egress: nope }\n",
     "t.yaml:2:38: unknown egress pool 'nope'"},
    {"tenants:\n  acme: { from: a@acme.test, dkim: { selector: s1 } }\n",
     "t.yaml:2:30: missing required key 'key' in tenants.acme.dkim"},
    {"tenants:\n  acme: { from: a@acme.test, dkim: { key: k, algorithm: md5 } }\n",
     "t.yaml:2:57: unknown value 'md5' for algorithm (expected rsa-sha256 or ed25519-sha256)"},
    {"tenants:\n  acme:\n    from: a@acme.test\n    dkim:\n      - { selector: s1, key: k }\n"
     "      - { selector: s2 }\n",
     "t.yaml:6:9: missing required key 'key' in tenants.acme.dkim[1]"},
    {"tenants:\n  acme:\n    from: a@acme.test\n    dkim:\n      - { selector: s1, key: k }\n"
     "      - { selector: s1, key: k2 }\n",
     "t.yaml:6:9: two DKIM signatures with selector 's1' for the same domain in tenants.acme.dkim"},
    {"tenants:\n  acme: { from: a@acme.test, dkim: [] }\n",
     "t.yaml:2:30: expected one or more DKIM signatures in tenants.acme.dkim"},
    {"tenants:\n  acme: { from: a@acme.test, dkim: s1 }\n",
     "t.yaml:2:36: expected a mapping or a list of mappings in tenants.acme.dkim, got 's1'"},
    {"tenants:\n  acme: { from: a@acme.test, dkim: { selector: s1, key: k, domain: 'a b' } }\n",
     "t.yaml:2:68: expected a domain name, got 'a b'"},
    {"tenants:\n  acme: { from: a@acme.test, dkim: { selector: s1, key: k, expire: soon } }\n",
     "t.yaml:2:68: expected a duration like 30s, got 'soon'"},
    {"tenants:\n  acme: { from: a@acme.test, dkim: { selector: s1, key: k, x: 1 } }\n",
     "t.yaml:2:60: unknown key 'x' in tenants.acme.dkim"},
    {"tenants:\n  acme: { from: a@acme.test, relay: { port: 25 } }\n",
     "t.yaml:2:30: missing required key 'host' in tenants.acme.relay"},
    {"tenants:\n  acme: { from: a@acme.test, relay: { host: h, user: u } }\n",
     "t.yaml:2:54: relay user needs password_file or password_env in tenants.acme.relay"},
    {"tenants:\n  a: { from: x@a.test, relay: { host: h, tls: none, user: u, password_env: P } "
     "}\n",
     "t.yaml:2:24: relay with tls: none would send the password in clear; set "
     "allow_plaintext_auth: true in tenants.a.relay to allow it"},
    {"tenants:\n  a: { from: x@a.test, domains: ['::1'] }\n",
     "t.yaml:2:34: expected a domain name, got '::1'"},
    {"tenants:\n  a: { from: x@a.test, weight: 0 }\n",
     "t.yaml:2:32: expected an integer from 1 to 1000, got '0'"},
    {"tenants:\n  a: { from: \"x@a.test\\n\" }\n",
     "t.yaml:2:14: control character in 'x@a.test\\x0a'"},
    /* routes */
    {"routes:\n  '*.test': '127.0.0.1:99999'\n",
     "t.yaml:2:13: expected host:port like 127.0.0.1:2525 or [::1]:2525, got "
     "'127.0.0.1:99999'"},
    {"routes:\n  '*.test': '[::1:25'\n",
     "t.yaml:2:13: expected host:port like 127.0.0.1:2525 or [::1]:2525, got '[::1:25'"},
    {"routes:\n  '*.test': { host: x }\n",
     "t.yaml:2:13: expected host:port like 127.0.0.1:2525, got a mapping"},
    {"routes:\n  'a*.test': x\n",
     "t.yaml:2:3: expected a domain, *.domain or * as route pattern, got 'a*.test'"},
    {"routes:\n  A.test: x\n  a.test: y\n",
     "t.yaml:3:3: duplicate route 'a.test' (case does not matter)"},
    {"routes:\n  '*': x\n  b.test: x\n  '*.C': x\n  B.TEST: y\n  '*.c': y\n",
     "t.yaml:5:3: duplicate route 'B.TEST' (case does not matter)"},
    /* egress */
    {"egress:\n  bulk: [1.2.3.4]\n", "t.yaml:1:1: egress has no pool named 'default'"},
    {"egress:\n  default: [1.2.3.999]\n", "t.yaml:2:13: expected an IP address, got '1.2.3.999'"},
    {"dns:\n  servers: ['1.2.3.4:0']\n",
     "t.yaml:2:13: expected a server like 127.0.0.1:53 or [::1]:53, got '1.2.3.4:0'"},
    /* duplicate keys */
    {"redis:\n  jobs: a\n  jobs: b\n",
     "t.yaml:3:3: duplicate key 'jobs' in redis (first at line 2)"},
    {"tenants:\n  a: { from: x@a.test }\n  b: { from: x@a.test }\n  a: { from: y@a.test }\n",
     "t.yaml:4:3: duplicate key 'a' in tenants (first at line 2)"},
    {"engine: {}\nengine: {}\n",
     "t.yaml:2:1: duplicate key 'engine' at top level (first at line 1)"},
    /* malformed YAML */
    {"engine: [\n", "t.yaml:2:1: did not find expected node content (while parsing a flow node "
                    "at line 2)"},
    {"a: b: c\n", "t.yaml:1:5: mapping values are not allowed in this context"},
    {"engine:\n  batch: 1\n bad: 2\n",
     "t.yaml:3:2: did not find expected key (while parsing a block mapping at line 1)"},
    {"a: \"\\0\"\n", "t.yaml:1:1: unknown key 'a' at top level"},
    {"redis: { jobs: \"a\\0b\" }\n", "t.yaml:1:16: expected a string, got 'a\\x00b'"},
    {"x: &a 1\ny: *a\n", "t.yaml:2:4: aliases (*a) are not supported"},
    {"---\nredis: {}\n---\nengine: {}\n", "t.yaml:3:1: only one YAML document is allowed"},
    {"redis: \x01\n", "t.yaml:1:8: control characters are not allowed"},
    /* bounce_rules */
    {"bounce_rules:\n  - { match: \"(unclosed\", category: policy }\n",
     "t.yaml:2:14: bad regular expression in bounce_rules[0]: Unmatched ( or \\("},
    {"bounce_rules:\n  - { match: x, category: policy }\n  - { match: y, category: nope }\n",
     "t.yaml:3:27: expected a category (bad-mailbox, bad-domain, policy, spam-block, quota, "
     "greylist, rate-limit, network, tls, timeout, protocol, other), got 'nope'"},
    {"bounce_rules:\n  - { match: x, code: 5.x, category: policy }\n",
     "t.yaml:2:23: expected an enhanced status code prefix like 5.7.1 or 5.7, got '5.x'"},
    {"bounce_rules:\n  - { category: policy }\n",
     "t.yaml:2:5: missing required key 'match' in bounce_rules[0]"},
    {"bounce_rules:\n  - { match: x }\n",
     "t.yaml:2:5: missing required key 'category' in bounce_rules[0]"},
    {"bounce_rules:\n  - { match: x, category: tls, when: 1 }\n",
     "t.yaml:2:32: unknown key 'when' in bounce_rules[0]"},
    {"bounce_rules: { match: x }\n",
     "t.yaml:1:15: expected a list of {match, code, category} rules"},
    {"engine: { max_reply_bytes: 1K }\n",
     "t.yaml:1:28: expected a size from 65536 to 2147483648 bytes, got '1K'"},
};

static void test_bounce_rules(void)
{
    char err[512] = "";
    struct config *cfg = load("bounce_rules:\n"
                              "  - match: \"account (is )?disabled\"\n"
                              "    category: bad-mailbox\n"
                              "  - { match: \"^.*\", code: \"5.7\", category: policy }\n"
                              "engine: { max_reply_bytes: 64MiB }\n",
                              err, sizeof err);
    CHECK_EQ_STR(err, "");
    CHECK(cfg != NULL);
    if (!cfg) return;
    CHECK_EQ_INT(cfg->n_bounce_rules, 2);
    CHECK_EQ_STR(cfg->bounce_rules[0].match, "account (is )?disabled");
    CHECK(cfg->bounce_rules[0].code == NULL);
    CHECK_EQ_STR(cfg->bounce_rules[0].category, "bad-mailbox");
    CHECK(cfg->bounce_rules[0].compiled);
    CHECK_EQ_STR(cfg->bounce_rules[1].code, "5.7");
    CHECK_EQ_STR(cfg->bounce_rules[1].category, "policy");
    CHECK_EQ_INT(cfg->engine.max_reply_bytes, 64u << 20);
    config_free(cfg);
}

static void test_alignment_keys(void)
{
    char err[512] = "";
    struct config *cfg = load("sender: { address: notify@platform.test, spf_recheck: 5m }\n"
                              "dnsbl: [BL.example.test, bl2.example.test]\n"
                              "tenants:\n"
                              "  a: { from: x@a.test, from_fallback: rewrite }\n"
                              "  b: { from: x@b.test, from_fallback: refuse }\n"
                              "  c: { from: x@c.test }\n",
                              err, sizeof err);
    CHECK_EQ_STR(err, "");
    CHECK(cfg != NULL);
    if (!cfg) return;
    CHECK_EQ_STR(cfg->sender.address, "notify@platform.test");
    CHECK_EQ_INT(cfg->sender.spf_recheck_ms, 300000);
    CHECK_EQ_INT(cfg->dnsbl.n, 2);
    CHECK_EQ_STR(cfg->dnsbl.items[0], "bl.example.test");
    CHECK_EQ_INT(config_tenant(cfg, "a")->from_fallback, CFG_FROM_REWRITE);
    CHECK_EQ_INT(config_tenant(cfg, "b")->from_fallback, CFG_FROM_REFUSE);
    CHECK_EQ_INT(config_tenant(cfg, "c")->from_fallback, CFG_FROM_SEND);
    config_free(cfg);
    /* rewrite needs somewhere to rewrite to. */
    const char *y = "tenants:\n  a: { from: x@a.test, from_fallback: rewrite }\n";
    cfg = NULL;
    CHECK_EQ_INT(config_load_string("t.yaml", y, strlen(y), &cfg, err, sizeof err), -HERR_CONFIG);
    CHECK(strstr(err, "sender.address") != NULL);
    y = "tenants:\n  a: { from: x@a.test, from_fallback: maybe }\n";
    CHECK_EQ_INT(config_load_string("t.yaml", y, strlen(y), &cfg, err, sizeof err), -HERR_CONFIG);
    CHECK(strstr(err, "expected send, rewrite or refuse") != NULL);
}

static void test_metrics_keys(void)
{
    char err[512] = "";
    struct config *cfg = load("metrics: { listen: 127.0.0.1:9464, token_file: /run/h/metrics.token }\n",
                              err, sizeof err);
    CHECK_EQ_STR(err, "");
    CHECK(cfg != NULL);
    if (!cfg) return;
    CHECK_EQ_STR(cfg->metrics.listen, "127.0.0.1:9464");
    CHECK_EQ_STR(cfg->metrics.token_file, "/run/h/metrics.token");
    char *text = effective_text(cfg);
    CHECK(text && strstr(text, "metrics: http://127.0.0.1:9464/metrics (bearer token: file "
                               "/run/h/metrics.token)"));
    free(text);
    config_free(cfg);
}

static void test_unsubscribe_keys(void)
{
    char err[512] = "";
    struct config *cfg =
        load("unsubscribe: { listen: 127.0.0.1:8025, base_url: \"https://u.example.net/\", "
             "secret_file: /run/h/unsub.key, max_age: 30d }\n"
             "tenants:\n  a: { from: x@a.test, one_click_unsubscribe: true }\n"
             "  b: { from: x@b.test }\n",
             err, sizeof err);
    CHECK_EQ_STR(err, "");
    CHECK(cfg != NULL);
    if (!cfg) return;
    CHECK_EQ_STR(cfg->unsubscribe.listen, "127.0.0.1:8025");
    CHECK_EQ_STR(cfg->unsubscribe.base_url, "https://u.example.net"); /* '/' dropped */
    CHECK_EQ_INT(cfg->unsubscribe.max_age_ms, 30 * 86400000LL);
    CHECK(config_tenant(cfg, "a")->one_click_unsubscribe);
    CHECK(!config_tenant(cfg, "b")->one_click_unsubscribe);
    config_free(cfg);
    cfg = load("unsubscribe: { base_url: \"https://u.example.net\", secret_file: /k }\n", err,
               sizeof err);
    CHECK(cfg && cfg->unsubscribe.max_age_ms == 90 * 86400000LL && !cfg->unsubscribe.listen);
    config_free(cfg);
    static const struct {
        const char *yaml, *msg;
    } bad_unsub[] = {
        {"tenants:\n  a: { from: x@a.test, one_click_unsubscribe: true }\n",
         "t.yaml:2:47: one_click_unsubscribe: true needs unsubscribe.base_url"},
        {"unsubscribe: { base_url: \"http://u.example.net\", secret_file: /k }\n",
         "t.yaml:1:26: unsubscribe.base_url: expected an https:// URL"},
        {"unsubscribe: { base_url: \"https://u.ex ample\", secret_file: /k }\n",
         "expected a URL without spaces"},
        {"unsubscribe: { listen: 127.0.0.1:8025, secret_file: /k }\n",
         "t.yaml:1:1: unsubscribe.listen needs unsubscribe.secret_file and unsubscribe.base_url"},
        {"unsubscribe: { listen: localhost:80, base_url: \"https://u.x\", secret_file: /k }\n",
         "unsubscribe.listen: expected IP:PORT"},
        {"unsubscribe: { base_url: \"https://u.x\", secret_file: /k, max_age: 1h }\n",
         "expected a duration of at least 86400000ms"},
        {"unsubscribe: { base_url: \"https://u.x\", secret_file: /k, max_age: 4000d }\n",
         "unsubscribe.max_age: at most 3650d"},
        {"unsubscribe: { base_url: \"https://u.x\", secret: /k }\n", "unknown key 'secret'"},
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(bad_unsub); i++) {
        struct config *c = NULL;
        err[0] = '\0';
        int rc = config_load_string("t.yaml", bad_unsub[i].yaml, strlen(bad_unsub[i].yaml), &c, err,
                                    sizeof err);
        CHECK_EQ_INT(rc, -HERR_CONFIG);
        if (!strstr(err, bad_unsub[i].msg)) fprintf(stderr, "case %zu: got '%s'\n", i, err);
        CHECK(strstr(err, bad_unsub[i].msg) != NULL);
        config_free(c);
    }
}

static void test_bad(void)
{
    for (size_t i = 0; i < HERALD_ARRAY_LEN(bad); i++) {
        char err[512] = "";
        struct config *cfg = NULL;
        int rc =
            config_load_string("t.yaml", bad[i].yaml, strlen(bad[i].yaml), &cfg, err, sizeof err);
        CHECK_EQ_INT(rc, -HERR_CONFIG);
        CHECK(cfg == NULL);
        if (strcmp(err, bad[i].err) != 0) fprintf(stderr, "bad[%zu]:\n", i);
        CHECK_EQ_STR(err, bad[i].err);
        config_free(cfg);
    }
    /* A tiny error buffer truncates but never overflows. */
    char tiny[8];
    struct config *cfg = NULL;
    CHECK_EQ_INT(config_load_string("t.yaml", "foo: 1", 6, &cfg, tiny, sizeof tiny), -HERR_CONFIG);
    CHECK_EQ_STR(tiny, "t.yaml:");
}

static void test_file(void)
{
    char path[] = "/tmp/herald-test-config-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    static const char body[] = "delivery:\n  port: 2525\n  max_age: nope\n";
    CHECK(write(fd, body, sizeof body - 1) == (ssize_t)(sizeof body - 1));
    close(fd);
    struct config *cfg = NULL;
    char err[512], want[600];
    CHECK_EQ_INT(config_load(path, &cfg, err, sizeof err), -HERR_CONFIG);
    snprintf(want, sizeof want, "%s:3:12: expected a duration like 30s, got 'nope'", path);
    CHECK_EQ_STR(err, want);
    unlink(path);
    CHECK_EQ_INT(config_load(path, &cfg, err, sizeof err), -ENOENT);
    snprintf(want, sizeof want, "%s: No such file or directory", path);
    CHECK_EQ_STR(err, want);
    CHECK(cfg == NULL);
    CHECK_EQ_INT(config_load("/tmp", &cfg, err, sizeof err), -HERR_CONFIG);
    CHECK_EQ_STR(err, "/tmp: not a regular file");

    /* The shipped example loads as it is, key files and templates included,
     * so `herald check-config` passes on it. */
    CHECK_EQ_INT(config_load("config/herald.example.yaml", &cfg, err, sizeof err), 0);
    if (!cfg) fprintf(stderr, "%s\n", err);
    CHECK(cfg && cfg->n_tenants >= 1 && cfg->tenants[0].n_templates >= 1);
    config_free(cfg);
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* Template files are read relative to the config file; problems are
 * config errors with the position of the key that names the file. */
static void test_templates(void)
{
    char dir[] = "/tmp/herald-test-tpl-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    char path[300], cfgpath[300], err[700] = "", want[700];
    snprintf(path, sizeof path, "%s/r.txt", dir);
    write_text(path, "Hello {{ name }}\n");
    snprintf(path, sizeof path, "%s/r.html", dir);
    write_text(path, "<p>Hello {{name}}</p>");
    snprintf(path, sizeof path, "%s/bad.txt", dir);
    write_text(path, "ok\nHello {{ name\n");
    snprintf(cfgpath, sizeof cfgpath, "%s/h.yaml", dir);
    write_text(cfgpath, "tenants:\n"
                        "  acme:\n"
                        "    from: r@acme.test\n"
                        "    templates:\n"
                        "      reminder: { subject: \"Hi {{name}}\", text: r.txt, html: r.html }\n"
                        "      plain: { subject: \"x\", text: r.txt }\n"
                        "addresses:\n"
                        "  typo_policy: reject\n"
                        "  typo_domains: [Gmail.com, clinic.test]\n");
    struct config *cfg = NULL;
    CHECK_EQ_INT(config_load(cfgpath, &cfg, err, sizeof err), 0);
    CHECK_EQ_STR(err, "");
    if (cfg) {
        const struct cfg_tenant *t = config_tenant(cfg, "acme");
        const struct cfg_template *tp = config_template(t, "reminder");
        CHECK(tp != NULL);
        if (tp) {
            CHECK_EQ_STR(tp->subject, "Hi {{name}}");
            CHECK_EQ_STR(tp->text, "Hello {{ name }}\n");
            CHECK_EQ_STR(tp->html, "<p>Hello {{name}}</p>");
        }
        tp = config_template(t, "plain");
        CHECK(tp != NULL && tp->html == NULL);
        CHECK(config_template(t, "nope") == NULL);
        CHECK_EQ_INT(cfg->addresses.typo_policy, CFG_TYPO_REJECT);
        CHECK_EQ_INT(cfg->addresses.typo_domains.n, 2);
        CHECK_EQ_STR(cfg->addresses.typo_domains.items[0], "gmail.com");
        config_free(cfg);
    }

    write_text(cfgpath, "tenants:\n"
                        "  acme:\n"
                        "    from: r@acme.test\n"
                        "    templates:\n"
                        "      reminder:\n"
                        "        subject: s\n"
                        "        text: missing.txt\n");
    CHECK_EQ_INT(config_load(cfgpath, &cfg, err, sizeof err), -HERR_CONFIG);
    snprintf(want, sizeof want,
             "%s:7:15: cannot read text template '%s/missing.txt' of "
             "tenants.acme.templates.reminder: No such file or directory",
             cfgpath, dir);
    CHECK_EQ_STR(err, want);

    write_text(cfgpath, "tenants:\n"
                        "  acme:\n"
                        "    from: r@acme.test\n"
                        "    templates:\n"
                        "      reminder: { subject: s, html: bad.txt }\n");
    CHECK_EQ_INT(config_load(cfgpath, &cfg, err, sizeof err), -HERR_CONFIG);
    snprintf(want, sizeof want,
             "%s:5:37: html template '%s/bad.txt' of tenants.acme.templates.reminder, line 2 "
             "column 7: '{{' not closed by '}}' after the variable name",
             cfgpath, dir);
    CHECK_EQ_STR(err, want);

    static const char *const bad_yaml[][2] = {
        {"tenants: { acme: { from: r@acme.test, templates: { t: { text: r.txt } } } }\n",
         "missing required key 'subject' in tenants.acme.templates.t"},
        {"tenants: { acme: { from: r@acme.test, templates: { t: { subject: s } } } }\n",
         "tenants.acme.templates.t needs text and/or html"},
        {"tenants: { acme: { from: r@acme.test, templates: { t: { subject: \"{{\", text: r.txt "
         "} } } }\n",
         "subject of tenants.acme.templates.t, column 1: '{{' without a variable name"},
        {"tenants: { acme: { from: r@acme.test, templates: { t: { subject: s, txt: r.txt } } } }\n",
         "unknown key 'txt'"},
        {"addresses: { typo_policy: maybe }\n",
         "unknown value 'maybe' for typo_policy (expected warn, reject or off)"},
        {"addresses: { typo_domains: [\"not a domain\"] }\n", "expected a domain name"},
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(bad_yaml); i++) {
        write_text(cfgpath, bad_yaml[i][0]);
        CHECK_EQ_INT(config_load(cfgpath, &cfg, err, sizeof err), -HERR_CONFIG);
        if (!strstr(err, bad_yaml[i][1])) fprintf(stderr, "templates bad[%zu]: %s\n", i, err);
        CHECK(strstr(err, bad_yaml[i][1]) != NULL);
        CHECK(strncmp(err, cfgpath, strlen(cfgpath)) == 0);
    }

    /* defaults: warn, the built-in provider list */
    CHECK_EQ_INT(config_load_string("t.yaml", "", 0, &cfg, err, sizeof err), 0);
    if (cfg) {
        CHECK_EQ_INT(cfg->addresses.typo_policy, CFG_TYPO_WARN);
        CHECK(cfg->addresses.typo_domains.n > 10);
        config_free(cfg);
    }
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    CHECK_EQ_INT(system(cmd), 0);
}

static void test_duration(void)
{
    static const struct {
        const char *s;
        int rc;
        int64_t ms;
    } cases[] = {
        {"250ms", 0, 250},
        {"30s", 0, 30000},
        {"5m", 0, 300000},
        {"2h", 0, 7200000},
        {"2d", 0, 172800000},
        {"45", 0, 45000},
        {"0", 0, 0},
        {"1h30m", 0, 5400000},
        {"1m500ms", 0, 60500},
        {"", -HERR_MALFORMED, 0},
        {"abc", -HERR_MALFORMED, 0},
        {"5", 0, 5000},
        {"5x", -HERR_MALFORMED, 0},
        {"-5s", -HERR_MALFORMED, 0},
        {"5 s", -HERR_MALFORMED, 0},
        {"s", -HERR_MALFORMED, 0},
        {"1.5h", -HERR_MALFORMED, 0},
        {"5m ", -HERR_MALFORMED, 0},
        {"99999999999999999999s", -HERR_MALFORMED, 0},
        {"36600d", 0, 36600LL * 86400000},
        {"36601d", -HERR_MALFORMED, 0},
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(cases); i++) {
        int64_t ms = -1;
        int rc = config_parse_duration(cases[i].s, &ms);
        if (rc != cases[i].rc || (rc == 0 && ms != cases[i].ms))
            fprintf(stderr, "duration '%s'\n", cases[i].s);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc == 0) CHECK_EQ_INT(ms, cases[i].ms);
    }
    CHECK_EQ_INT(config_parse_duration(NULL, &(int64_t){0}), -HERR_MALFORMED);
}

static void test_rate(void)
{
    static const struct {
        const char *s;
        int rc;
        uint32_t count, window_s;
    } cases[] = {
        {"3600/h", 0, 3600, 3600},
        {"60/m", 0, 60, 60},
        {"5/s", 0, 5, 1},
        {"10/d", 0, 10, 86400},
        {"100/hour", 0, 100, 3600},
        {"7/min", 0, 7, 60},
        {"2/day", 0, 2, 86400},
        {"9/sec", 0, 9, 1},
        {"100/10m", 0, 100, 600},
        {"4294967295/s", 0, 4294967295u, 1},
        {"4294967296/s", -HERR_MALFORMED, 0, 0},
        {"0/h", -HERR_MALFORMED, 0, 0},
        {"10/x", -HERR_MALFORMED, 0, 0},
        {"10", -HERR_MALFORMED, 0, 0},
        {"/h", -HERR_MALFORMED, 0, 0},
        {"10/", -HERR_MALFORMED, 0, 0},
        {"10/500ms", -HERR_MALFORMED, 0, 0},
        {"10/1500ms", -HERR_MALFORMED, 0, 0},
        {"10 /h", -HERR_MALFORMED, 0, 0},
        {"", -HERR_MALFORMED, 0, 0},
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(cases); i++) {
        struct cfg_rate r = {0, 0};
        int rc = config_parse_rate(cases[i].s, &r);
        if (rc != cases[i].rc) fprintf(stderr, "rate '%s'\n", cases[i].s);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc == 0) {
            CHECK_EQ_INT(r.count, cases[i].count);
            CHECK_EQ_INT(r.window_s, cases[i].window_s);
        }
    }
}

static void test_size(void)
{
    static const struct {
        const char *s;
        int rc;
        uint64_t bytes;
    } cases[] = {
        {"65536", 0, 65536},
        {"512k", 0, 512 << 10},
        {"1MiB", 0, 1 << 20},
        {"10M", 0, 10 << 20},
        {"1G", 0, 1 << 30},
        {"2KB", 0, 2048},
        {"7b", 0, 7},
        {"", -HERR_MALFORMED, 0},
        {"1T", -HERR_MALFORMED, 0},
        {"k", -HERR_MALFORMED, 0},
        {"1 M", -HERR_MALFORMED, 0},
        {"99999999999999999999", -HERR_MALFORMED, 0},
        {"17179869184G", -HERR_MALFORMED, 0},
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(cases); i++) {
        uint64_t b = 0;
        int rc = config_parse_size(cases[i].s, &b);
        if (rc != cases[i].rc) fprintf(stderr, "size '%s'\n", cases[i].s);
        CHECK_EQ_INT(rc, cases[i].rc);
        if (rc == 0) CHECK_EQ_INT(b, cases[i].bytes);
    }
}

static void test_route(void)
{
    char err[256] = "";
    struct config *cfg = load("routes:\n"
                              "  '*': 'fallback.example:1'\n"
                              "  '*.test': 'star-test.example:2'\n"
                              "  '*.b.test': 'star-b-test.example:3'\n"
                              "  'b.test': 'b-test.example:4'\n"
                              "  'x.b.test': '[2001:db8::1]:5'\n"
                              "  '*.TEST2': '::1'\n",
                              err, sizeof err);
    CHECK_EQ_STR(err, "");
    if (!cfg) return;
    static const struct {
        const char *domain;
        const char *host;
    } cases[] = {
        {"b.test", "b-test.example"},        /* exact beats *.test */
        {"B.TEST", "b-test.example"},        /* case-insensitive */
        {"b.test.", "b-test.example"},       /* root dot ignored */
        {"x.b.test", "2001:db8::1"},         /* exact beats *.b.test */
        {"y.b.test", "star-b-test.example"}, /* longest suffix wins */
        {"z.y.b.test", "star-b-test.example"},
        {"a.test", "star-test.example"},
        {"test", "fallback.example"}, /* *.test does not match test itself */
        {"other.example", "fallback.example"},
        {"a.test2", "::1"},
        {"", "fallback.example"},
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(cases); i++) {
        const struct cfg_route *r = config_route(cfg, cases[i].domain);
        CHECK(r != NULL);
        if (r && strcmp(r->host, cases[i].host) != 0)
            fprintf(stderr, "route '%s'\n", cases[i].domain);
        if (r) CHECK_EQ_STR(r->host, cases[i].host);
    }
    const struct cfg_route *r = config_route(cfg, "a.test2");
    CHECK(r && r->port == 25);
    config_free(cfg);

    cfg = load("routes: { '*.test': 'h:1' }\n", err, sizeof err);
    if (cfg) {
        CHECK(config_route(cfg, "test") == NULL);
        CHECK(config_route(cfg, "example.org") == NULL);
        CHECK(config_route(cfg, "a.TEST") != NULL);
        config_free(cfg);
    }
}

static void test_provider_for_host(void)
{
    char err[256] = "";
    struct config *cfg = load("providers:\n"
                              "  google: { mx: ['*.google.com', '*.googlemail.com'], connections: 20 }\n"
                              "  yahoo: { mx: ['*.yahoodns.net', 'mx.yahoo.test'] }\n"
                              "  default: { connections: 3 }\n",
                              err, sizeof err);
    CHECK_EQ_STR(err, "");
    if (!cfg) return;
    CHECK_EQ_STR(config_provider_for_host(cfg, "aspmx.l.google.com")->name, "google");
    CHECK_EQ_STR(config_provider_for_host(cfg, "ALT1.ASPMX.L.GOOGLE.COM.")->name, "google");
    CHECK_EQ_STR(config_provider_for_host(cfg, "gmail-smtp-in.l.googlemail.com")->name, "google");
    CHECK_EQ_STR(config_provider_for_host(cfg, "google.com")->name, "default");
    CHECK_EQ_STR(config_provider_for_host(cfg, "notgoogle.com")->name, "default");
    CHECK_EQ_STR(config_provider_for_host(cfg, "mta7.am0.yahoodns.net")->name, "yahoo");
    CHECK_EQ_STR(config_provider_for_host(cfg, "mx.yahoo.test")->name, "yahoo");
    CHECK_EQ_STR(config_provider_for_host(cfg, "x.mx.yahoo.test")->name, "default");
    CHECK_EQ_INT(config_provider_for_host(cfg, "mx.example.org")->connections, 3);
    config_free(cfg);
}

/* delivery.tls is a floor: a tenant or provider may tighten it, never
 * loosen it; the strictest of the three applies. */
static void test_tls_policy(void)
{
    char err[256] = "";
    struct config *cfg = load("delivery: { tls: verify }\n"
                              "providers:\n"
                              "  google: { mx: ['*.google.com'], tls: opportunistic }\n"
                              "tenants:\n"
                              "  loose: { from: a@loose.test, tls: opportunistic }\n"
                              "  plain: { from: a@plain.test }\n",
                              err, sizeof err);
    CHECK_EQ_STR(err, "");
    if (!cfg) return;
    const struct cfg_provider *g = config_provider_for_host(cfg, "mx.google.com");
    const struct cfg_provider *d = config_provider_for_host(cfg, "mx.other.test");
    const struct cfg_tenant *loose = config_tenant(cfg, "loose"), *plain = config_tenant(cfg, "plain");
    CHECK_EQ_INT(config_tls_policy(cfg, loose, d), CFG_TLS_VERIFY);
    CHECK_EQ_INT(config_tls_policy(cfg, loose, g), CFG_TLS_VERIFY);
    CHECK_EQ_INT(config_tls_policy(cfg, plain, NULL), CFG_TLS_VERIFY);
    CHECK_EQ_INT(config_tls_policy(cfg, NULL, NULL), CFG_TLS_VERIFY);
    char *text = effective_text(cfg);
    CHECK(text && strstr(text, "verify (delivery.tls; opportunistic is looser)"));
    free(text);
    config_free(cfg);

    cfg = load("providers:\n"
               "  google: { mx: ['*.google.com'], tls: required }\n"
               "tenants:\n"
               "  strict: { from: a@strict.test, tls: verify }\n"
               "  plain: { from: a@plain.test }\n",
               err, sizeof err);
    CHECK_EQ_STR(err, "");
    if (!cfg) return;
    g = config_provider_for_host(cfg, "mx.google.com");
    d = config_provider_for_host(cfg, "mx.other.test");
    plain = config_tenant(cfg, "plain");
    CHECK_EQ_INT(config_tls_policy(cfg, plain, d), CFG_TLS_OPPORTUNISTIC);
    CHECK_EQ_INT(config_tls_policy(cfg, plain, g), CFG_TLS_REQUIRED);
    CHECK_EQ_INT(config_tls_policy(cfg, config_tenant(cfg, "strict"), g), CFG_TLS_VERIFY);
    config_free(cfg);
}

int main(void)
{
    test_tls_policy();
    test_provider_for_host();
    test_full();
    test_defaults();
    test_defaults_filled();
    test_bad();
    test_bounce_rules();
    test_alignment_keys();
    test_metrics_keys();
    test_unsubscribe_keys();
    test_file();
    test_templates();
    test_duration();
    test_rate();
    test_size();
    test_route();
    return check_report("test_config");
}
