/* addr_check and addr_normalize on arbitrary bytes: never crash, whatever
 * addr_check accepts is free of the bytes that could break an SMTP command
 * or a header line, and a normalised address is one the envelope can carry:
 * an ASCII, lower-case domain, the local part kept, the key differing from
 * the wire form only by ASCII case in the local part. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "herald/job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_normalized(const uint8_t *data, size_t size, bool utf8)
{
    struct addr_norm a;
    const char *why = NULL;
    int rc = addr_normalize((const char *)data, size, &a, &why);
    if (rc != 0) {
        if ((rc != -HERR_MALFORMED && rc != -HERR_TOO_LONG && rc != -EILSEQ) || !why) abort();
        return;
    }
    size_t n = strlen(a.wire);
    if (n > 254 || strlen(a.key) != n || a.wire[a.local_len] != '@') abort();
    bool local_utf8 = false;
    for (size_t i = 0; i < a.local_len; i++)
        local_utf8 |= (unsigned char)a.wire[i] >= 0x80;
    if (a.needs_smtputf8 != local_utf8 || (local_utf8 && !utf8)) abort();
    if (memcmp(a.wire, data, a.local_len + 1) != 0) abort();
    for (size_t i = 0; i < n; i++) {
        unsigned char w = (unsigned char)a.wire[i], k = (unsigned char)a.key[i];
        if (w < 0x20 || w == 0x7f) abort();
        if (i > a.local_len && (w >= 0x80 || (w >= 'A' && w <= 'Z') || w == '@')) abort();
        if (w != k && !(i < a.local_len && w >= 'A' && w <= 'Z' && k == w + 32)) abort();
    }
}

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
        check_normalized(data, size, utf8);
    } else if (rc != -HERR_MALFORMED || !why) {
        abort();
    }
    return 0;
}
