/* Any bytes as a DNS response: the parser must refuse or parse, never read
 * out of bounds, and what it returns must be well formed. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "herald/dns.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct dns_answer a;
    if (dns_answer_parse(data, size, &a) == 0) {
        if (a.n > DNS_ANSWER_MAX) abort();
        for (size_t i = 0; i < a.n; i++)
            if (strnlen(a.rr[i].name, sizeof a.rr[i].name) >= sizeof a.rr[i].name) abort();
    }
    return 0;
}
