/* An in-memory dnsq_lookup_fn for unit tests: a table of records answers
 * as a server would (OK, NODATA for a name with other types only,
 * NXDOMAIN, SERVFAIL), so code that asks DNS through herald/dnsq.h runs
 * without a network. */
#ifndef HERALD_TEST_MEMDNS_H
#define HERALD_TEST_MEMDNS_H

#include <arpa/inet.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "herald/dnsq.h"

/* One record: name, type, value. A name listed with type SERVFAIL fails
 * every question; a name with records of other types answers NODATA. */
struct zrec {
    const char *name;
    int type; /* enum dnsq_type, or -1 for SERVFAIL */
    const char *value;
    uint16_t pref;
};

struct zone {
    const struct zrec *recs;
    size_t n;
    unsigned queries;
};

static enum dnsq_rc zone_lookup(void *ctx, enum dnsq_type type, const char *name,
                                struct dnsq_rrset *out)
{
    struct zone *z = ctx;
    z->queries++;
    bool exists = false;
    for (size_t i = 0; i < z->n; i++) {
        const struct zrec *r = &z->recs[i];
        if (strcasecmp(r->name, name) != 0) continue;
        if (r->type == -1) return DNSQ_SERVFAIL;
        exists = true;
        if (r->type != (int)type) continue;
        if (type == DNSQ_A || type == DNSQ_AAAA) {
            unsigned char a[16];
            inet_pton(type == DNSQ_A ? AF_INET : AF_INET6, r->value, a);
            dnsq_rrset_add_addr(out, a, type == DNSQ_A ? 4 : 16);
        } else {
            dnsq_rrset_add_text(out, r->value, strlen(r->value), r->pref);
        }
    }
    if (out->n) return DNSQ_OK;
    return exists ? DNSQ_NODATA : DNSQ_NXDOMAIN;
}

#endif
