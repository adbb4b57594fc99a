/* dnsq: one DNS question, one answer set — the small interface the SPF
 * evaluator and `herald check-domain` ask their questions through, so the
 * evaluator can be tested against an in-memory table and run for real over
 * a blocking c-ares channel.
 *
 * The blocking channel (dnsq_sync) waits in poll(): it is for the CLI and
 * for engine start-up code on the main thread, never for worker threads,
 * whose DNS goes through their ring (herald/dns.h). */
#ifndef HERALD_DNSQ_H
#define HERALD_DNSQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum dnsq_type { DNSQ_A, DNSQ_AAAA, DNSQ_TXT, DNSQ_MX, DNSQ_PTR, DNSQ_TYPE_COUNT };

enum dnsq_rc {
    DNSQ_OK = 0,   /* at least one record of the type */
    DNSQ_NXDOMAIN, /* the name does not exist */
    DNSQ_NODATA,   /* the name exists, no record of this type */
    DNSQ_SERVFAIL, /* server failure, timeout, refused, garbled answer */
};

#define DNSQ_RRSET_MAX 32

/* The records of one answer. text[i] (malloc'd, NUL-terminated) is a TXT
 * record's strings joined, an MX exchange ("" for the null MX) or a PTR
 * name; addr[i] an A (first 4 bytes) or AAAA address; pref[i] an MX
 * preference. Records beyond DNSQ_RRSET_MAX are dropped. */
struct dnsq_rrset {
    size_t n;
    char *text[DNSQ_RRSET_MAX];
    unsigned char addr[DNSQ_RRSET_MAX][16];
    uint16_t pref[DNSQ_RRSET_MAX];
    uint32_t ttl; /* smallest TTL seen; 0 when the answer did not say */
};

void dnsq_rrset_init(struct dnsq_rrset *s);
/* Append one record; -ENOMEM, or 0 (also when the set is full: dropped). */
int dnsq_rrset_add_text(struct dnsq_rrset *s, const char *p, size_t n, uint16_t pref);
int dnsq_rrset_add_addr(struct dnsq_rrset *s, const unsigned char *a, size_t n);
/* Frees the texts; the set is empty and reusable afterwards. */
void dnsq_rrset_clear(struct dnsq_rrset *s);

/* Answer `name` (no trailing dot) for `type` into out (empty on entry).
 * May block; must fill out only on DNSQ_OK. */
typedef enum dnsq_rc (*dnsq_lookup_fn)(void *ctx, enum dnsq_type type, const char *name,
                                       struct dnsq_rrset *out);

const char *dnsq_rc_name(enum dnsq_rc rc);
const char *dnsq_type_name(enum dnsq_type t);

/* "1.2.0.192.in-addr.arpa" / nibble "ip6.arpa" name for an address, with
 * an optional zone suffix instead of the arpa one (DNSBL queries). */
int dnsq_reverse_name(int family, const unsigned char *addr, const char *zone, char *out,
                      size_t outlen);

/* ---- blocking channel over c-ares ---- */

struct dnsq_sync;

/* servers as in dns.servers ("ip", "ip:port", "[v6]:port"); none: the
 * system resolver. timeout_ms bounds each question. 0 or -HERR_CONFIG /
 * -HERR_DNS / -ENOMEM with err filled. */
int dnsq_sync_new(struct dnsq_sync **out, const char *const *servers, size_t n_servers,
                  int64_t timeout_ms, char *err, size_t errlen);
void dnsq_sync_free(struct dnsq_sync *q);
/* A dnsq_lookup_fn; ctx is the struct dnsq_sync. */
enum dnsq_rc dnsq_sync_lookup(void *ctx, enum dnsq_type type, const char *name,
                              struct dnsq_rrset *out);

#endif
