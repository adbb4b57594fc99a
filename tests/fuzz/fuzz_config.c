/* Fuzz target: any byte string through the config loader must yield either a
 * config or a positioned error, never a crash or a leak. A loaded config is
 * also printed and queried, so those paths see fuzzed data too. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "herald/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *cfg = NULL;
    char err[512];
    int rc = config_load_string("fuzz.yaml", (const char *)data, size, &cfg, err, sizeof err);
    if (rc == 0) {
        FILE *null = fopen("/dev/null", "w");
        if (null) {
            config_print_effective(cfg, null);
            fclose(null);
        }
        (void)config_route(cfg, "a.b.test");
        (void)config_route(cfg, "EXAMPLE.test.");
        (void)config_tenant(cfg, "acme");
        if (!config_egress(cfg, "default") || !config_provider(cfg, "default")) __builtin_trap();
        config_free(cfg);
    } else if (strncmp(err, "fuzz.yaml:", 10) != 0 && strstr(err, "out of memory") == NULL) {
        __builtin_trap(); /* every error names the file */
    }
    return 0;
}
