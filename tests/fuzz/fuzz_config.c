/* Any bytes through the config loader: either a config or an error message
 * in file:line:col form, never a crash or a leak. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "herald/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct config *cfg = NULL;
    char err[512];
    int rc = config_load_string("f.yaml", (const char *)data, size, &cfg, err, sizeof err);
    if (rc == 0) {
        if (!config_provider(cfg, "default") || !config_egress(cfg, "default"))
            abort();
        config_free(cfg);
    } else if (strncmp(err, "f.yaml:", 7) != 0) {
        abort();
    }
    return 0;
}
