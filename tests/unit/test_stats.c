/* Process-wide counter rows (engine/stats.c): a configured tenant has a
 * row of its own, any other name a producer sends shares one, so a flood
 * of invented tenant names adds one row, not one per name; a table full of
 * other names (providers) ends in the shared "other" row. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "engine/stats.h"
#include "herald/config.h"

static size_t rows_used(struct stats_table *t)
{
    size_t n = 0;
    for (size_t i = 0; i < STATS_MAX_ROWS; i++)
        n += atomic_load(&t->rows[i].used) ? 1 : 0;
    return n;
}

static void tenant_rows(const struct config *cfg)
{
    static struct engine_stats st;
    stats_init(&st);
    struct stats_row *acme = stats_tenant_row(&st.tenants, cfg, "acme");
    CHECK_EQ_STR(acme->name, "acme");
    CHECK(stats_tenant_row(&st.tenants, cfg, "acme") == acme);
    CHECK_EQ_STR(stats_tenant_row(&st.tenants, cfg, "beta")->name, "beta");
    struct stats_row *unknown = stats_tenant_row(&st.tenants, cfg, "nobody");
    CHECK_EQ_STR(unknown->name, STATS_UNKNOWN_TENANT);
    CHECK(stats_tenant_row(&st.tenants, cfg, NULL) == unknown);
    CHECK(stats_tenant_row(&st.tenants, cfg, "") == unknown);
    CHECK(stats_tenant_row(&st.tenants, cfg, "ACME") == unknown); /* names are exact */
    char name[32];
    for (int i = 0; i < 5000; i++) {
        snprintf(name, sizeof name, "rnd%08x", (unsigned)rand());
        if (stats_tenant_row(&st.tenants, cfg, name) != unknown)
            CHECK(!"an unknown tenant got a row of its own");
    }
    CHECK_EQ_INT(rows_used(&st.tenants), 3);
    stats_destroy(&st);
}

static void table_full(void)
{
    static struct engine_stats st;
    stats_init(&st);
    char name[32];
    for (int i = 0; i < 2 * STATS_MAX_ROWS; i++) {
        snprintf(name, sizeof name, "p%d", i);
        CHECK(stats_row(&st.providers, name) != NULL);
    }
    CHECK(rows_used(&st.providers) <= STATS_MAX_ROWS);
    CHECK_EQ_STR(stats_row(&st.providers, "p9999")->name, "other");
    stats_destroy(&st);
}

int main(void)
{
    char err[512] = "";
    struct config *cfg = NULL;
    const char *yaml = "tenants:\n"
                       "  acme: { from: reminders@acme.test }\n"
                       "  beta: { from: desk@beta.test }\n";
    CHECK_EQ_INT(config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof err), 0);
    CHECK_EQ_STR(err, "");
    if (cfg)
        tenant_rows(cfg);
    config_free(cfg);
    table_full();
    return check_report("test_stats");
}
