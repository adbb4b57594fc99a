/* addr_check on arbitrary bytes: never crashes, and whatever it accepts is
 * free of the bytes that could break an SMTP command or a header line. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "herald/job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bool utf8 = false;
    const char *why = NULL;
    int rc = addr_check((const char *)data, size, &utf8, &why);
    if (rc == 0) {
        if (size > 254 || !memchr(data, '@', size)) abort();
        bool ascii = true;
        for (size_t i = 0; i < size; i++) {
            if (data[i] < 0x20 || data[i] == 0x7f) abort();
            if (data[i] >= 0x80) ascii = false;
        }
        if (ascii == utf8) abort();
    } else if (rc != -HERR_MALFORMED || !why) {
        abort();
    }
    return 0;
}
