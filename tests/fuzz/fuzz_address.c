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
        /* The envelope form of the domain is ASCII, or refused cleanly. */
        const char *at = memrchr(data, '@', size);
        char out[256];
        const char *dwhy = NULL;
        size_t dlen = size - (size_t)((const uint8_t *)at + 1 - data);
        if (at[1] != '[') {
            int drc = addr_domain_to_ascii(at + 1, dlen, out, sizeof out, &dwhy);
            if (drc == 0) {
                for (const char *p = out; *p; p++)
                    if ((unsigned char)*p >= 0x80 || *p == '@') abort();
            } else if ((drc != -HERR_MALFORMED && drc != -HERR_TOO_LONG) || !dwhy) {
                abort();
            }
        }
    } else if (rc != -HERR_MALFORMED || !why) {
        abort();
    }
    return 0;
}
