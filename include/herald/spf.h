/* spf: RFC 7208 check_host() — does `domain` authorise `ip` to send mail
 * for `sender`? DNS goes through a dnsq_lookup_fn, so the evaluator is pure
 * logic: tests give it an in-memory table, the CLI and engine start-up a
 * blocking c-ares channel.
 *
 * Limits as in RFC 7208 4.6.4: at most 10 terms that cost a DNS lookup
 * (include, a, mx, ptr, exists, redirect), at most 10 names per mx or ptr,
 * at most 2 void lookups (NXDOMAIN or no data); beyond: permerror. */
#ifndef HERALD_SPF_H
#define HERALD_SPF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald/core.h"
#include "herald/dnsq.h"

enum spf_result {
    SPF_NONE = 0,
    SPF_NEUTRAL,
    SPF_PASS,
    SPF_FAIL,
    SPF_SOFTFAIL,
    SPF_TEMPERROR,
    SPF_PERMERROR,
    SPF_RESULT_COUNT
};

#define SPF_MAX_LOOKUPS 10
#define SPF_MAX_VOID    2
#define SPF_MAX_NAMES   10 /* MX exchangers / PTR names examined per term */

struct spf_request {
    int family;              /* AF_INET or AF_INET6 */
    unsigned char ip[16];    /* first 4 bytes for IPv4 */
    const char *domain;      /* the domain whose record is evaluated */
    const char *sender;      /* MAIL FROM (local@domain); NULL/"" = postmaster@domain */
    const char *helo;        /* for %{h}; NULL = domain */
    dnsq_lookup_fn lookup;
    void *ctx;
};

struct spf_verdict {
    enum spf_result result;
    char explanation[320]; /* the matching term and where, or why it errored */
    char record[512];      /* the top-level domain's SPF record, "" when none */
    unsigned n_lookups;    /* DNS-costing terms evaluated */
    unsigned n_void;
};

/* Evaluate. Returns 0 with *out filled, or -ENOMEM. Never reads a clock. */
int spf_check_host(const struct spf_request *rq, struct spf_verdict *out);

const char *spf_result_name(enum spf_result r);

/* ---- record syntax (exported for tests and fuzzing) ---- */

enum spf_term_kind {
    SPF_T_ALL,
    SPF_T_INCLUDE,
    SPF_T_A,
    SPF_T_MX,
    SPF_T_PTR,
    SPF_T_IP4,
    SPF_T_IP6,
    SPF_T_EXISTS,
    SPF_T_REDIRECT, /* modifiers from here */
    SPF_T_EXP,
    SPF_T_UNKNOWN_MOD, /* ignored, as 6 asks */
};

struct spf_term {
    enum spf_term_kind kind;
    char qualifier;        /* '+', '-', '~', '?' (mechanisms) */
    const char *text;      /* the whole term as written, inside the record */
    size_t text_len;
    const char *spec;      /* domain-spec (unexpanded macro-string) or NULL */
    size_t spec_len;
    unsigned char ip[16];  /* ip4 / ip6 */
    unsigned cidr4, cidr6; /* prefix lengths: defaults 32 / 128 */
};

#define SPF_TERMS_MAX 128

struct spf_record {
    size_t n;
    struct spf_term terms[SPF_TERMS_MAX];
    const struct spf_term *redirect, *exp; /* NULL when absent */
};

/* True when txt is an SPF version 1 record ("v=spf1" alone or followed by
 * a space, case-insensitive). */
bool spf_is_record(const char *txt, size_t len);
/* Parse a whole record (starting with v=spf1). Terms point into txt, which
 * must outlive out. 0, or -HERR_MALFORMED with a reason in err. */
int spf_record_parse(const char *txt, size_t len, struct spf_record *out, char *err,
                     size_t errlen);
/* Check a macro-string's syntax (rq NULL) or expand it for domain into
 * out, RFC 7208 7. explain: also allow %{c} %{r} %{t} (exp= text).
 * 0, -HERR_MALFORMED or -ENOMEM. */
int spf_macro_expand(const char *spec, size_t len, const struct spf_request *rq,
                     const char *domain, bool explain, struct hbuf *out);

/* A record with `mechs` ("ip4:192.0.2.1 ip4:192.0.2.2") added where an
 * operator should add them: before the final "all" (or a redirect=), else
 * at the end. 0 or -ENOMEM. */
int spf_record_insert(const char *record, const char *mechs, struct hbuf *out);

#endif
