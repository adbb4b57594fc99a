/* addrlist_parse on arbitrary bytes: never crashes or reads past the
 * value; what it accepts holds at least one mailbox or group, and every
 * domain it reports is either a bracketed literal or a lower-case dot-atom
 * (no blank, no '@', no comma, no empty label), so a tenant-domain check on
 * it sees exactly one domain. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "herald/job.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_domain(const char *d)
{
    size_t n = strlen(d);
    if (n == 0 || n > 255) abort();
    if (d[0] == '[') {
        if (d[n - 1] != ']') abort();
        return;
    }
    if (d[0] == '.' || d[n - 1] == '.' || strstr(d, "..")) abort();
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)d[i];
        if (c <= ' ' || c >= 0x7f || c == '@' || c == ',' || c == '<' || c == '>' || c == '(' ||
            c == '"' || c == ';' || c == ':' || (c >= 'A' && c <= 'Z'))
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly `size` bytes, so ASan sees any read past the end. */
    char *v = malloc(size ? size : 1);
    if (!v) return 0;
    memcpy(v, data, size);
    struct addrlist l;
    int rc = addrlist_parse(v, size, &l);
    if (rc == 0) {
        if (l.n_mailboxes == 0 && l.n_groups == 0) abort();
        for (size_t i = 0; i < l.n_mailboxes && i < ADDRLIST_KEEP; i++)
            check_domain(l.domains[i]);
    } else if (rc != -HERR_MALFORMED && rc != -HERR_TOO_LONG) {
        abort();
    }
    free(v);
    return 0;
}
