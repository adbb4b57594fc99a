/* The `inbound:` section and tenants' `return_path` (src/config/inbound.c,
 * tenants.c): defaults, every key, and the errors that keep a listener
 * from being an open relay or unable to check what it signed. */
#include <stdio.h>
#include <string.h>

#include "check.h"
#include "herald/config.h"

static struct config *load(const char *yaml, char *err, size_t errlen)
{
    struct config *cfg = NULL;
    err[0] = '\0';
    if (config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, errlen) < 0) return NULL;
    return cfg;
}

static void test_defaults(void)
{
    char err[512];
    struct config *cfg = load("tenants:\n  a:\n    from: r@a.test\n", err, sizeof err);
    CHECK(cfg != NULL);
    if (!cfg) return;
    CHECK_EQ_INT(cfg->inbound.listen.n, 0);
    CHECK_EQ_INT(cfg->inbound.max_message_bytes, 1u << 20);
    CHECK_EQ_INT(cfg->inbound.max_connections, 64);
    CHECK_EQ_INT(cfg->inbound.timeout_ms, 60000);
    CHECK_EQ_INT(cfg->inbound.index_ttl_ms, 30LL * 86400 * 1000);
    CHECK_EQ_INT(cfg->inbound.rate_per_s, 50);
    CHECK(cfg->tenants[0].return_path == NULL);
    config_free(cfg);
}

static void test_keys(void)
{
    char err[512];
    struct config *cfg = load("inbound:\n  listen: ['127.0.0.1:2526', '[::1]:2526']\n"
                              "  domains: [Bounces.Platform.Test]\n"
                              "  secret_file: /etc/herald/inbound.secret\n"
                              "  max_message_bytes: 2MB\n  max_connections: 10\n"
                              "  timeout: 30s\n  index_ttl: 7d\n  rate: 5\n"
                              "tenants:\n  a:\n    from: r@a.test\n"
                              "    return_path: Bounces.Platform.Test\n",
                              err, sizeof err);
    CHECK(cfg != NULL);
    if (!cfg) {
        fprintf(stderr, "%s\n", err);
        return;
    }
    CHECK_EQ_INT(cfg->inbound.listen.n, 2);
    CHECK_EQ_INT(cfg->inbound.domains.n, 1);
    CHECK_EQ_STR(cfg->inbound.domains.items[0], "bounces.platform.test");
    CHECK_EQ_STR(cfg->inbound.secret_file, "/etc/herald/inbound.secret");
    CHECK_EQ_INT(cfg->inbound.max_message_bytes, 2u << 20);
    CHECK_EQ_INT(cfg->inbound.max_connections, 10);
    CHECK_EQ_INT(cfg->inbound.timeout_ms, 30000);
    CHECK_EQ_INT(cfg->inbound.index_ttl_ms, 7LL * 86400 * 1000);
    CHECK_EQ_INT(cfg->inbound.rate_per_s, 5);
    CHECK_EQ_STR(cfg->tenants[0].return_path, "bounces.platform.test");
    config_free(cfg);
}

static void bad(const char *yaml, const char *want)
{
    char err[512];
    struct config *cfg = load(yaml, err, sizeof err);
    CHECK(cfg == NULL);
    config_free(cfg);
    if (!strstr(err, want)) fprintf(stderr, "error was: %s\n", err);
    CHECK(strstr(err, want) != NULL);
    CHECK(strncmp(err, "t.yaml:", 7) == 0); /* file:line:col: message */
}

static void test_errors(void)
{
    bad("inbound:\n  listen: ['127.0.0.1:2526']\n  secret_file: /x\n", "needs inbound.domains");
    bad("inbound:\n  listen: ['127.0.0.1:2526']\n  domains: [b.test]\n",
        "needs inbound.secret_file");
    bad("inbound:\n  listen: ['nowhere']\n  domains: [b.test]\n  secret_file: /x\n",
        "IP:PORT");
    bad("inbound:\n  domains: ['not a domain']\n", "expected a domain name");
    bad("inbound:\n  relay: yes\n", "unknown key");
    bad("tenants:\n  a:\n    from: r@a.test\n    return_path: b.test\n",
        "return_path needs inbound.secret_file");
    bad("inbound:\n  secret_file: /x\ntenants:\n  a:\n    from: r@a.test\n"
        "    return_path: 'no such domain'\n",
        "return_path: expected a domain");
    bad("inbound:\n  max_connections: 0\n", "from 1 to 10000");
}

int main(void)
{
    test_defaults();
    test_keys();
    test_errors();
    return check_report("test_config_inbound");
}
