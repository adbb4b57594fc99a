/* dns: MX routing through c-ares, its sockets polled through the worker's
 * ring (IORING_OP_POLL_ADD), answers cached by TTL. One resolver per worker
 * thread, no locks. */
#ifndef HERALD_DNS_H
#define HERALD_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "herald/ring.h"

#define DNS_MAX_MX    8 /* exchangers kept per domain, lowest preference first */
#define DNS_MAX_ADDRS 4 /* addresses kept per exchanger */

enum dns_status {
    DNS_OK = 0,
    DNS_NXDOMAIN = -1,   /* the domain does not exist: bounce 5.1.2 */
    DNS_NULL_MX = -2,    /* RFC 7505 "MX 0 .": the domain takes no mail: bounce 5.1.10 */
    DNS_TEMPFAIL = -3,   /* SERVFAIL, timeout, refused: defer */
    DNS_NO_ADDRESS = -4, /* exchangers exist but none has an address: defer */
};

struct dns_mx_host {
    char name[256];
    uint16_t pref;
    size_t n_addrs;
    struct sockaddr_storage addrs[DNS_MAX_ADDRS]; /* port already set */
    socklen_t addr_lens[DNS_MAX_ADDRS];
};

struct dns_route {
    enum dns_status status;
    bool implicit; /* no MX records: the domain's own address (RFC 5321 5.1) */
    size_t n_hosts;
    struct dns_mx_host hosts[DNS_MAX_MX];
    char reason[200]; /* for notes when status != DNS_OK */
};

/* Called once per request. It may run inside dns_resolve_route itself when
 * the answer is cached; route is only valid during the call. */
typedef void (*dns_route_fn)(void *arg, const struct dns_route *route);

struct dns_resolver;

/* servers: "ip", "ip:port" or "[v6]:port"; none: the system's resolv.conf.
 * Returns 0 or a negative code with err filled. */
/* Point a c-ares channel at dns.servers ("ip" or "ip:port"; none: keep the
 * system's resolv.conf). 0, or -HERR_CONFIG with err filled. */
struct ares_channeldata;
int dns_channel_servers(struct ares_channeldata *channel, const char *const *servers,
                        size_t n_servers, char *err, size_t errlen);

int dns_resolver_new(struct dns_resolver **out, struct ring *ring, const char *const *servers,
                     size_t n_servers, char *err, size_t errlen);
/* Requests still waiting get DNS_TEMPFAIL ("resolver closed"). Runs the
 * ring until the resolver's polls have completed, so call it at shutdown,
 * outside any completion handler. */
void dns_resolver_free(struct dns_resolver *r);

/* Exchangers for mail to `domain`, preference order with equal preferences
 * shuffled per call, each with its addresses on `port`. */
int dns_resolve_route(struct dns_resolver *r, const char *domain, uint16_t port, dns_route_fn cb,
                      void *arg);
/* The same for one host's own addresses (a relay or smarthost: A/AAAA by
 * their TTL, no MX): the route has that one host, or status != DNS_OK. An
 * address literal is answered at once. */
int dns_resolve_host(struct dns_resolver *r, const char *host, uint16_t port, dns_route_fn cb,
                     void *arg);

/* Counters for tests and status. */
struct dns_stats {
    uint64_t queries;   /* sent to a server */
    uint64_t cache_hits;
    uint64_t waiting_checks; /* waiting requests looked at again after a query completed */
};
void dns_resolver_stats(const struct dns_resolver *r, struct dns_stats *out);

/* ---- the order routes are tried in (pure; exported for tests) ---- */

/* Fill order_out[0..n) with indexes into prefs: ascending preference, and
 * a uniformly random order among equal preferences (RFC 5321 5.1: spread
 * the load) drawn from *rng, a 64-bit LCG state that is advanced. The same
 * prefs and rng state give the same order. */
void dns_mx_order(const uint16_t *prefs, size_t n, uint64_t *rng, size_t *order_out);
/* Fill order_out with indexes into families (AF_INET, AF_INET6): IPv4
 * first, then the rest, each in its given order, whichever answer came
 * first. Returns n. */
size_t dns_addr_order(const int *families, size_t n, size_t *order_out);

/* ---- wire answers (exported for tests and fuzzing) ---- */

#define DNS_ANSWER_MAX 32

struct dns_rr {
    uint16_t type; /* 1 A, 28 AAAA, 15 MX, 5 CNAME */
    uint32_t ttl;
    uint16_t pref;       /* MX */
    char name[256];      /* MX exchange (no trailing dot; "" for the root) */
    unsigned char addr[16];
};

struct dns_answer {
    int rcode;
    size_t n;
    struct dns_rr rr[DNS_ANSWER_MAX];
};

/* Parse a DNS response's answer section (names decompressed with loop
 * protection). Returns 0, or -HERR_MALFORMED for anything truncated or
 * inconsistent. Records of other types are skipped; more than
 * DNS_ANSWER_MAX are ignored. */
int dns_answer_parse(const unsigned char *msg, size_t len, struct dns_answer *out);

#endif
