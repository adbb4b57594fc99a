/* The order a route's exchangers and addresses are tried in (dns.h): pure,
 * so the resolver's answers and the unit tests share one definition. */
#include <sys/socket.h>

#include "herald/dns.h"

void dns_mx_order(const uint16_t *prefs, size_t n, uint64_t *rng, size_t *order_out)
{
    /* Stable insertion sort by preference: n is at most a handful. */
    for (size_t i = 0; i < n; i++) {
        size_t at = i;
        while (at > 0 && prefs[order_out[at - 1]] > prefs[i]) {
            order_out[at] = order_out[at - 1];
            at--;
        }
        order_out[at] = i;
    }
    /* A Fisher-Yates shuffle inside each run of equal preferences. */
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && prefs[order_out[j]] == prefs[order_out[i]])
            j++;
        for (size_t k = j - 1; k > i; k--) {
            *rng = *rng * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t pick = i + (size_t)((*rng >> 33) % (k - i + 1));
            size_t t = order_out[k];
            order_out[k] = order_out[pick];
            order_out[pick] = t;
        }
        i = j;
    }
}

size_t dns_addr_order(const int *families, size_t n, size_t *order_out)
{
    size_t o = 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t a = 0; a < n; a++)
            if ((families[a] == AF_INET) == (pass == 0)) order_out[o++] = a;
    return o;
}
