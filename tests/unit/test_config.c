/* Config loading: defaults applied to a good file, and each kind of mistake
 * reported as name:line:col: message at the right place. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "herald/config.h"

static struct config *load(const char *yaml, char *err, size_t errlen)
{
    struct config *cfg = NULL;
    if (config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, errlen) < 0)
        return NULL;
    return cfg;
}

static void good_config(void)
{
    const char *y = "redis:\n"
                    "  url: redis://127.0.0.1:6390/2\n"
                    "engine:\n"
                    "  workers: 3\n"
                    "  ehlo: mta1.example.net\n"
                    "  claim_idle: 90s\n"
                    "egress:\n"
                    "  default: [127.0.0.1, \"::1\"]\n"
                    "  warm: { ips: [127.0.0.2], ehlo: warm.example.net }\n"
                    "routes:\n"
                    "  \"*.test\": \"127.0.0.1:2525\"\n"
                    "  \"a.b.test\": \"[::1]:2526\"\n"
                    "  \"*\": \"localhost\"\n"
                    "tenants:\n"
                    "  acme:\n"
                    "    from: reminders@acme.test\n"
                    "    egress: warm\n"
                    "    relay: { host: smtp.acme.test, tls: tls, user: u, password_file: /x }\n"
                    "delivery:\n"
                    "  retry: [1m, 5m]\n"
                    "  timeouts: { connect: 10s, idle: 250ms }\n"
                    "providers:\n"
                    "  google: { mx: [\"*.google.com\"], connections: 20, rate: 3600/h }\n"
                    "recipients: { limit: [3/h, 10/d] }\n";
    char err[256] = "";
    struct config *cfg = load(y, err, sizeof err);
    CHECK(cfg != NULL);
    if (!cfg) {
        fprintf(stderr, "unexpected error: %s\n", err);
        return;
    }
    CHECK_EQ_STR(cfg->redis.url, "redis://127.0.0.1:6390/2");
    CHECK_EQ_STR(cfg->redis.jobs, "herald:jobs");
    CHECK_EQ_STR(cfg->redis.events, "herald:events");
    CHECK_EQ_INT(cfg->engine.workers, 3);
    CHECK_EQ_INT(cfg->engine.claim_idle_ms, 90000);
    CHECK_EQ_INT(cfg->engine.batch, 256);
    CHECK_EQ_INT(cfg->n_egress, 2);
    CHECK_EQ_INT(config_egress(cfg, "default")->ips.n, 2);
    CHECK_EQ_STR(config_egress(cfg, "warm")->ehlo, "warm.example.net");
    const struct cfg_tenant *t = config_tenant(cfg, "acme");
    CHECK(t != NULL);
    if (t) {
        CHECK_EQ_STR(t->domains.items[0], "acme.test");
        CHECK_EQ_INT(t->relay.port, 465);
        CHECK_EQ_INT(t->weight, 1);
    }
    CHECK(config_tenant(cfg, "nobody") == NULL);
    CHECK_EQ_STR(config_route(cfg, "x.test")->host, "127.0.0.1");
    CHECK_EQ_INT(config_route(cfg, "x.test")->port, 2525);
    CHECK_EQ_STR(config_route(cfg, "A.B.TEST")->host, "::1");
    CHECK_EQ_STR(config_route(cfg, "test")->host, "localhost");
    CHECK_EQ_STR(config_route(cfg, "example.com")->pattern, "*");
    CHECK_EQ_INT(cfg->delivery.n_retry, 2);
    CHECK_EQ_INT(cfg->delivery.retry_ms[1], 300000);
    CHECK_EQ_INT(cfg->delivery.port, 25);
    CHECK_EQ_INT(cfg->delivery.timeouts.idle_ms, 250);
    CHECK_EQ_INT(cfg->delivery.timeouts.banner_ms, 300000);
    CHECK_EQ_INT(cfg->delivery.max_age_ms, 2LL * 86400 * 1000);
    const struct cfg_provider *g = config_provider(cfg, "google");
    CHECK(g && g->connections == 20 && g->rate.count == 3600 && g->rate.window_s == 3600);
    CHECK(g && g->messages_per_connection == 100);
    CHECK(config_provider(cfg, "default") != NULL);
    CHECK_EQ_INT(cfg->recipients.n_limits, 2);
    CHECK_EQ_STR(cfg->recipients.policy, "defer");
    config_free(cfg);
}

static const struct {
    const char *yaml;
    const char *error;
} bad[] = {
    {"redis:\n  url: redis://x\n  jbos: q\n", "t.yaml:3:3: unknown key 'jbos' in redis"},
    {"tenants:\n  acme:\n    from: a@b.test\n    form: x\n",
     "t.yaml:4:5: unknown key 'form' in tenants.acme"},
    {"colour: blue\n", "t.yaml:1:1: unknown key 'colour' in the top level"},
    {"engine:\n  claim_idle: soon\n",
     "t.yaml:2:15: engine.claim_idle: expected a duration like 30s, 5m, 2h or 2d, got 'soon'"},
    {"providers:\n  x: { rate: 10/fortnight }\n",
     "t.yaml:2:14: rate: expected a rate like 3600/h, 60/m or 5/s, got '10/fortnight'"},
    {"delivery:\n  tls: maybe\n",
     "t.yaml:2:8: delivery.tls must be opportunistic, required or verify, got 'maybe'"},
    {"tenants:\n  acme:\n    from_name: Acme\n", "t.yaml:2:3: tenant 'acme' needs a from address"},
    {"routes:\n  \"*\": \"host:99999\"\n", "t.yaml:2:8: routes.*: port must be 1..65535 in 'host:99999'"},
    {"redis:\n  url: redis://a\n  url: redis://b\n", "t.yaml:3:3: duplicate key 'url' in redis"},
    {"engine: [1, 2\n", "t.yaml:2:1: did not find expected ',' or ']' while parsing a flow sequence"},
    {"tenants:\n  acme: { from: a@b.test, egress: nowhere }\n",
     "t.yaml:1:1: tenants.acme.egress: no egress pool named 'nowhere'"},
    {"engine:\n  workers: 0\n",
     "t.yaml:2:12: engine.workers (or auto) must be a whole number from 1 to 256, got '0'"},
    {"egress:\n  default: [10.0.0.300]\n",
     "t.yaml:2:12: egress.default: '10.0.0.300' is not an IPv4 or IPv6 address"},
    {"tenants:\n  \"bad name\": { from: a@b.test }\n",
     "t.yaml:2:3: tenant name 'bad name' must be 1-64 of A-Z a-z 0-9 _ . -"},
    {"tenants:\n  acme: { from: a@b.test, relay: { host: h, password: p } }\n",
     "t.yaml:2:45: relay.password must not be inline; use password_file or password_env"},
};

int main(void)
{
    good_config();
    for (size_t i = 0; i < HERALD_ARRAY_LEN(bad); i++) {
        char err[256] = "";
        struct config *cfg = load(bad[i].yaml, err, sizeof err);
        CHECK(cfg == NULL);
        config_free(cfg);
        CHECK_EQ_STR(err, bad[i].error);
    }
    int64_t ms;
    struct cfg_rate r;
    CHECK(config_parse_duration("250ms", &ms) == 0 && ms == 250);
    CHECK(config_parse_duration("2d", &ms) == 0 && ms == 172800000);
    CHECK(config_parse_duration("15", &ms) == 0 && ms == 15000);
    CHECK(config_parse_duration("-1s", &ms) < 0);
    CHECK(config_parse_duration("5 m", &ms) < 0);
    CHECK(config_parse_rate("60/m", &r) == 0 && r.count == 60 && r.window_s == 60);
    CHECK(config_parse_rate("5/s", &r) == 0 && r.window_s == 1);
    CHECK(config_parse_rate("0/s", &r) < 0);
    CHECK(config_parse_rate("5", &r) < 0);
    return check_report("test_config");
}
