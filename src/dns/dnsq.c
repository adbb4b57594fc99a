/* dnsq: answer sets, reverse names, and a blocking c-ares channel for code
 * that may wait (the CLI; the engine's main thread before workers start).
 * c-ares' own reply parsers do the decoding here: TXT, PTR and MX answers
 * are not needed on the delivery path, whose parser (answer.c) stays small. */
#include <ares.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "herald/core.h"
#include "herald/dns.h"
#include "herald/dnsq.h"

void dnsq_rrset_init(struct dnsq_rrset *s)
{
    memset(s, 0, sizeof *s);
}

int dnsq_rrset_add_text(struct dnsq_rrset *s, const char *p, size_t n, uint16_t pref)
{
    if (s->n == DNSQ_RRSET_MAX) return 0;
    char *t = malloc(n + 1);
    if (!t) return -ENOMEM;
    memcpy(t, p, n);
    t[n] = '\0';
    s->pref[s->n] = pref;
    s->text[s->n++] = t;
    return 0;
}

int dnsq_rrset_add_addr(struct dnsq_rrset *s, const unsigned char *a, size_t n)
{
    if (s->n == DNSQ_RRSET_MAX) return 0;
    memset(s->addr[s->n], 0, 16);
    memcpy(s->addr[s->n], a, n > 16 ? 16 : n);
    s->text[s->n++] = NULL;
    return 0;
}

void dnsq_rrset_clear(struct dnsq_rrset *s)
{
    for (size_t i = 0; i < s->n; i++) free(s->text[i]);
    memset(s, 0, sizeof *s);
}

const char *dnsq_rc_name(enum dnsq_rc rc)
{
    switch (rc) {
    case DNSQ_OK: return "ok";
    case DNSQ_NXDOMAIN: return "nxdomain";
    case DNSQ_NODATA: return "nodata";
    case DNSQ_SERVFAIL: return "servfail";
    }
    return "?";
}

const char *dnsq_type_name(enum dnsq_type t)
{
    static const char *const names[DNSQ_TYPE_COUNT] = {"A", "AAAA", "TXT", "MX", "PTR"};
    return (unsigned)t < DNSQ_TYPE_COUNT ? names[t] : "?";
}

int dnsq_reverse_name(int family, const unsigned char *a, const char *zone, char *out,
                      size_t outlen)
{
    int n;
    if (family == AF_INET) {
        n = snprintf(out, outlen, "%u.%u.%u.%u.%s", a[3], a[2], a[1], a[0],
                     zone ? zone : "in-addr.arpa");
    } else {
        static const char hex[] = "0123456789abcdef";
        char nib[65];
        for (int i = 0; i < 16; i++) {
            nib[4 * i] = hex[a[15 - i] & 15];
            nib[4 * i + 1] = '.';
            nib[4 * i + 2] = hex[a[15 - i] >> 4];
            nib[4 * i + 3] = '.';
        }
        nib[64] = '\0';
        n = snprintf(out, outlen, "%s%s", nib, zone ? zone : "ip6.arpa");
    }
    return n < 0 || (size_t)n >= outlen ? -HERR_TOO_LONG : 0;
}

/* ---- blocking channel ---- */

struct dnsq_sync {
    ares_channel channel;
    int64_t timeout_ms;
};

int dnsq_sync_new(struct dnsq_sync **out, const char *const *servers, size_t n_servers,
                  int64_t timeout_ms, char *err, size_t errlen)
{
    *out = NULL;
    struct dnsq_sync *q = calloc(1, sizeof *q);
    if (!q) return -ENOMEM;
    q->timeout_ms = timeout_ms > 0 ? timeout_ms : 5000;
    struct ares_options o;
    memset(&o, 0, sizeof o);
    o.timeout = (int)(q->timeout_ms / 2 > 0 ? q->timeout_ms / 2 : 1);
    o.tries = 2;
    int rc = ares_init_options(&q->channel, &o, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "resolver: %s", ares_strerror(rc));
        free(q);
        return -HERR_DNS;
    }
    if (dns_channel_servers(q->channel, servers, n_servers, err, errlen) < 0) {
        ares_destroy(q->channel);
        free(q);
        return -HERR_CONFIG;
    }
    *out = q;
    return 0;
}

void dnsq_sync_free(struct dnsq_sync *q)
{
    if (!q) return;
    ares_destroy(q->channel);
    free(q);
}

struct pending {
    bool done;
    enum dnsq_type type;
    enum dnsq_rc rc;
    struct dnsq_rrset *out;
};

static enum dnsq_rc status_rc(int status)
{
    return status == ARES_ENOTFOUND ? DNSQ_NXDOMAIN
           : status == ARES_ENODATA ? DNSQ_NODATA
                                    : DNSQ_SERVFAIL;
}

static int decode_txt(const unsigned char *abuf, int alen, struct dnsq_rrset *out)
{
    struct ares_txt_ext *txt = NULL;
    int st = ares_parse_txt_reply_ext(abuf, alen, &txt);
    if (st != ARES_SUCCESS) return st;
    /* A record's character-strings are joined without separators (RFC
     * 7208 3.3); record_start marks the first string of each record. */
    struct hbuf rec;
    hbuf_init(&rec);
    int rc = 0;
    bool open = false;
    for (struct ares_txt_ext *t = txt; t && rc == 0; t = t->next) {
        if (t->record_start && open) {
            rc = dnsq_rrset_add_text(out, rec.data ? rec.data : "", rec.len, 0);
            hbuf_reset(&rec);
        }
        open = true;
        if (rc == 0) rc = hbuf_append(&rec, t->txt, t->length);
    }
    if (open && rc == 0) rc = dnsq_rrset_add_text(out, rec.data ? rec.data : "", rec.len, 0);
    hbuf_free(&rec);
    ares_free_data(txt);
    return rc < 0 ? ARES_ENOMEM : ARES_SUCCESS;
}

static int decode(const unsigned char *abuf, int alen, enum dnsq_type type,
                  struct dnsq_rrset *out)
{
    if (type == DNSQ_TXT) return decode_txt(abuf, alen, out);
    if (type == DNSQ_MX) {
        struct ares_mx_reply *mx = NULL;
        int st = ares_parse_mx_reply(abuf, alen, &mx);
        if (st != ARES_SUCCESS) return st;
        for (struct ares_mx_reply *m = mx; m && st == ARES_SUCCESS; m = m->next) {
            const char *h = m->host;
            size_t n = strlen(h);
            if (n && h[n - 1] == '.') n--;
            if (dnsq_rrset_add_text(out, h, n, m->priority) < 0) st = ARES_ENOMEM;
        }
        ares_free_data(mx);
        return st;
    }
    if (type == DNSQ_PTR) {
        struct hostent *he = NULL;
        unsigned char dummy[16] = {0};
        int st = ares_parse_ptr_reply(abuf, alen, dummy, 4, AF_INET, &he);
        if (st != ARES_SUCCESS) return st;
        if (he->h_name && dnsq_rrset_add_text(out, he->h_name, strlen(he->h_name), 0) < 0)
            st = ARES_ENOMEM;
        for (char **a = he->h_aliases; a && *a && st == ARES_SUCCESS; a++)
            if (dnsq_rrset_add_text(out, *a, strlen(*a), 0) < 0) st = ARES_ENOMEM;
        ares_free_hostent(he);
        return st;
    }
    if (type == DNSQ_A) {
        struct ares_addrttl ttls[DNSQ_RRSET_MAX];
        int n = DNSQ_RRSET_MAX;
        int st = ares_parse_a_reply(abuf, alen, NULL, ttls, &n);
        if (st != ARES_SUCCESS) return st;
        for (int i = 0; i < n; i++) {
            dnsq_rrset_add_addr(out, (const unsigned char *)&ttls[i].ipaddr, 4);
            if (out->ttl == 0 || (uint32_t)ttls[i].ttl < out->ttl) out->ttl = (uint32_t)ttls[i].ttl;
        }
        return n > 0 ? ARES_SUCCESS : ARES_ENODATA;
    }
    struct ares_addr6ttl ttls[DNSQ_RRSET_MAX];
    int n = DNSQ_RRSET_MAX;
    int st = ares_parse_aaaa_reply(abuf, alen, NULL, ttls, &n);
    if (st != ARES_SUCCESS) return st;
    for (int i = 0; i < n; i++) {
        dnsq_rrset_add_addr(out, (const unsigned char *)&ttls[i].ip6addr, 16);
        if (out->ttl == 0 || (uint32_t)ttls[i].ttl < out->ttl) out->ttl = (uint32_t)ttls[i].ttl;
    }
    return n > 0 ? ARES_SUCCESS : ARES_ENODATA;
}

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    struct pending *p = arg;
    p->done = true;
    if (status == ARES_SUCCESS) status = decode(abuf, alen, p->type, p->out);
    if (status == ARES_SUCCESS && p->out->n == 0) status = ARES_ENODATA;
    p->rc = status == ARES_SUCCESS ? DNSQ_OK : status_rc(status);
    if (p->rc != DNSQ_OK) dnsq_rrset_clear(p->out);
}

enum dnsq_rc dnsq_sync_lookup(void *ctx, enum dnsq_type type, const char *name,
                              struct dnsq_rrset *out)
{
    static const int qtypes[DNSQ_TYPE_COUNT] = {1, 28, 16, 15, 12};
    struct dnsq_sync *q = ctx;
    struct pending p = {.type = type, .rc = DNSQ_SERVFAIL, .out = out};
    if ((unsigned)type >= DNSQ_TYPE_COUNT) return DNSQ_SERVFAIL;
    ares_query(q->channel, name, 1 /* IN */, qtypes[type], on_answer, &p);
    int64_t deadline = clock_mono_ms() + q->timeout_ms * 2;
    while (!p.done) {
        ares_socket_t socks[ARES_GETSOCK_MAXNUM];
        /* c-ares' ARES_GETSOCK_WRITABLE shifts a signed 1 into the sign
         * bit for the last slot; test the bits unsigned. */
        unsigned bits = (unsigned)ares_getsock(q->channel, socks, ARES_GETSOCK_MAXNUM);
        struct pollfd fds[ARES_GETSOCK_MAXNUM];
        nfds_t nfds = 0;
        for (int i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
            short ev = (short)((bits & (1u << i) ? POLLIN : 0) |
                               (bits & (1u << (i + ARES_GETSOCK_MAXNUM)) ? POLLOUT : 0));
            if (!ev) continue;
            fds[nfds].fd = socks[i];
            fds[nfds].events = ev;
            fds[nfds++].revents = 0;
        }
        struct timeval tv, *tvp = ares_timeout(q->channel, NULL, &tv);
        int wait_ms = tvp ? (int)(tvp->tv_sec * 1000 + tvp->tv_usec / 1000) + 1 : 100;
        if (clock_mono_ms() > deadline) {
            ares_cancel(q->channel); /* runs on_answer with ARES_ECANCELLED */
            break;
        }
        int n = poll(fds, nfds, wait_ms);
        if (n < 0 && errno != EINTR) {
            ares_cancel(q->channel);
            break;
        }
        if (n <= 0) {
            ares_process_fd(q->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
            continue;
        }
        for (nfds_t i = 0; i < nfds; i++) {
            if (!fds[i].revents) continue;
            ares_socket_t r = fds[i].revents & (POLLIN | POLLERR | POLLHUP) ? fds[i].fd
                                                                             : ARES_SOCKET_BAD;
            ares_socket_t w = fds[i].revents & (POLLOUT | POLLERR) ? fds[i].fd : ARES_SOCKET_BAD;
            ares_process_fd(q->channel, r, w);
        }
    }
    return p.done ? p.rc : DNSQ_SERVFAIL;
}
