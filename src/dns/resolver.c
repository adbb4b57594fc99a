/* The per-worker resolver: c-ares does the protocol (retries, server
 * rotation, TCP fallback); its sockets are watched with one-shot
 * IORING_OP_POLL_ADD on the worker's ring and its timeouts with a ring
 * timer, so resolution never blocks or polls outside the ring.
 *
 * Route lookups go in two steps, each cached by TTL: domain -> exchangers
 * (MX), then exchanger -> addresses (A and AAAA). Concurrent requests for the
 * same names share the queries: a request waits on the `waiting` list and
 * every completed query re-checks that list in one pass, in arrival order
 * (requests only wait for cold names; a pass is O(waiting), not the
 * O(waiting^2) of restarting after every answer). */
#include <arpa/inet.h>
#include <ares.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "herald/core.h"
#include "herald/dns.h"

#define WATCH_MAX      32
#define CACHE_BUCKETS  1024
#define CACHE_MAX      20000
#define TTL_FLOOR_MS   5000
#define TTL_CAP_MS     3600000
#define NEG_TTL_MS     300000 /* NXDOMAIN, no data, null MX */
#define FAIL_TTL_MS    30000  /* server failure: ask again soon, not every message */

enum { QCLASS_IN = 1, QTYPE_A = 1, QTYPE_MX = 15, QTYPE_AAAA = 28 };

/* One socket c-ares asked us to watch. Slots are reused only once no poll
 * is in flight, because the kernel may still complete one for a socket that
 * c-ares has closed meanwhile. */
struct watch {
    struct dns_resolver *r;
    struct ring_op op;
    int fd;
    bool read, write; /* what c-ares wants */
    bool in_use;      /* c-ares still owns this socket */
    bool polling;     /* a POLL_ADD is in flight */
    unsigned mask;    /* the mask of that poll */
};

enum entry_kind { ENTRY_MX, ENTRY_HOST };

struct entry {
    struct entry *next;
    enum entry_kind kind;
    char name[256];
    int64_t expires_ms;
    bool pending;
    int outstanding; /* queries not answered yet (A + AAAA) */
    enum dns_status status;
    char reason[160];
    uint32_t min_ttl;
    /* MX */
    bool implicit;
    size_t n_mx;
    struct { char name[256]; uint16_t pref; } mx[DNS_MAX_MX];
    /* host */
    size_t n_addrs;
    struct { int family; unsigned char a[16]; } addrs[DNS_MAX_ADDRS];
};

struct request {
    struct request *next;
    char domain[256];
    uint16_t port;
    bool host_only; /* dns_resolve_host: the name's own addresses, no MX */
    dns_route_fn cb;
    void *arg;
};

struct dns_resolver {
    struct ring *ring;
    ares_channel channel;
    struct watch watches[WATCH_MAX];
    struct ring_timer timer;
    struct entry *buckets[CACHE_BUCKETS];
    size_t n_entries;
    struct request *waiting, *waiting_tail; /* oldest first */
    uint64_t rng;
    struct dns_stats stats;
    bool closing;
    bool in_check;    /* re-entrancy guard for check_waiting */
    bool check_again; /* an entry completed during a pass: make another */
};

static void arm_timer(struct dns_resolver *r);
static void check_waiting(struct dns_resolver *r);

/* ---- sockets through the ring ---- */

static void poll_arm(struct watch *w)
{
    if (w->polling || !w->in_use || (!w->read && !w->write)) return;
    w->mask = (w->read ? POLLIN : 0) | (w->write ? POLLOUT : 0);
    struct io_uring_sqe *sqe = ring_sqe(w->r->ring, &w->op);
    io_uring_prep_poll_add(sqe, w->fd, w->mask);
    w->polling = true;
}

static void on_poll(struct ring_op *op, int res, uint32_t flags)
{
    (void)flags;
    struct watch *w = HERALD_CONTAINER_OF(op, struct watch, op);
    struct dns_resolver *r = w->r;
    w->polling = false;
    if (!w->in_use || r->closing) return;
    if (res < 0 && res != -ECANCELED) res = POLLIN | POLLERR; /* let c-ares see the error */
    if (res < 0) {
        poll_arm(w);
        return;
    }
    ares_socket_t rfd = (res & (POLLIN | POLLERR | POLLHUP)) ? w->fd : ARES_SOCKET_BAD;
    ares_socket_t wfd = (res & (POLLOUT | POLLERR | POLLHUP)) ? w->fd : ARES_SOCKET_BAD;
    ares_process_fd(r->channel, rfd, wfd);
    poll_arm(w); /* still watched: c-ares clears in_use through sock_state */
    arm_timer(r);
}

static void sock_state(void *data, ares_socket_t fd, int readable, int writable)
{
    struct dns_resolver *r = data;
    struct watch *w = NULL, *free_slot = NULL;
    for (int i = 0; i < WATCH_MAX; i++) {
        struct watch *x = &r->watches[i];
        if (x->in_use && x->fd == fd) w = x;
        else if (!x->in_use && !x->polling && !free_slot) free_slot = x;
    }
    if (!readable && !writable) {
        if (w) {
            /* c-ares closes the socket next; its number may be reused
             * before this cancel runs, so cancel the poll, not the fd. */
            w->in_use = false;
            if (w->polling) ring_cancel_op(r->ring, &w->op);
        }
        return;
    }
    if (!w) {
        if (!free_slot) {
            log_event(LOG_ERROR, "event=dns_watch_full fd=%d", fd);
            return; /* the query times out; c-ares retries it */
        }
        w = free_slot;
        w->fd = fd;
        w->in_use = true;
    }
    w->read = readable;
    w->write = writable;
    unsigned want = (readable ? POLLIN : 0) | (writable ? POLLOUT : 0);
    if (w->polling && want != w->mask) ring_cancel_op(r->ring, &w->op); /* re-armed on completion */
    poll_arm(w);
}

static void on_timer(struct ring_timer *t)
{
    struct dns_resolver *r = HERALD_CONTAINER_OF(t, struct dns_resolver, timer);
    ares_process_fd(r->channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
    arm_timer(r);
}

static void arm_timer(struct dns_resolver *r)
{
    if (r->closing) return;
    struct timeval tv;
    struct timeval *tvp = ares_timeout(r->channel, NULL, &tv);
    if (!tvp) {
        ring_timer_cancel(r->ring, &r->timer);
        return;
    }
    int64_t ms = (int64_t)tvp->tv_sec * 1000 + tvp->tv_usec / 1000 + 1;
    ring_timer_arm(r->ring, &r->timer, r->ring->now_ms + ms);
}

/* ---- cache ---- */

static uint64_t hash_name(enum entry_kind k, const char *s)
{
    uint64_t h = 1469598103934665603ull ^ (uint64_t)k;
    for (; *s; s++) h = (h ^ (unsigned char)(*s | 0x20)) * 1099511628211ull;
    return h;
}

static struct entry *cache_find(struct dns_resolver *r, enum entry_kind k, const char *name)
{
    for (struct entry *e = r->buckets[hash_name(k, name) % CACHE_BUCKETS]; e; e = e->next)
        if (e->kind == k && strcasecmp(e->name, name) == 0) return e;
    return NULL;
}

static void cache_sweep(struct dns_resolver *r)
{
    for (size_t b = 0; b < CACHE_BUCKETS; b++)
        for (struct entry **pp = &r->buckets[b]; *pp;) {
            struct entry *e = *pp;
            if (!e->pending && e->expires_ms <= r->ring->now_ms) {
                *pp = e->next;
                free(e);
                r->n_entries--;
            } else {
                pp = &e->next;
            }
        }
}

static struct entry *cache_add(struct dns_resolver *r, enum entry_kind k, const char *name)
{
    if (r->n_entries >= CACHE_MAX) cache_sweep(r);
    struct entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->kind = k;
    snprintf(e->name, sizeof e->name, "%s", name);
    size_t b = hash_name(k, name) % CACHE_BUCKETS;
    e->next = r->buckets[b];
    r->buckets[b] = e;
    r->n_entries++;
    return e;
}

static bool fresh(const struct dns_resolver *r, const struct entry *e)
{
    return e && !e->pending && e->expires_ms > r->ring->now_ms;
}

static int64_t ttl_ms(uint32_t ttl_s)
{
    int64_t ms = (int64_t)ttl_s * 1000;
    return ms < TTL_FLOOR_MS ? TTL_FLOOR_MS : ms > TTL_CAP_MS ? TTL_CAP_MS : ms;
}

/* ---- queries ---- */

struct query {
    struct dns_resolver *r;
    char name[256];
    enum entry_kind kind;
    int type;
};

static void fail_entry(struct entry *e, int status, const char *what)
{
    if (status == ARES_ENOTFOUND) {
        e->status = DNS_NXDOMAIN;
        snprintf(e->reason, sizeof e->reason, "%.120s does not exist (NXDOMAIN)", e->name);
    } else {
        e->status = DNS_TEMPFAIL;
        snprintf(e->reason, sizeof e->reason, "%s lookup for %.80s failed: %.40s", what, e->name,
                 ares_strerror(status));
    }
}

static void finish_entry(struct dns_resolver *r, struct entry *e)
{
    if (--e->outstanding > 0) return;
    e->pending = false;
    int64_t ttl = e->status == DNS_TEMPFAIL ? FAIL_TTL_MS
                  : e->status != DNS_OK      ? NEG_TTL_MS
                  : e->kind == ENTRY_HOST && e->n_addrs == 0 ? NEG_TTL_MS
                                                             : ttl_ms(e->min_ttl);
    e->expires_ms = r->ring->now_ms + ttl;
    check_waiting(r);
}

static void on_answer(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
    (void)timeouts;
    struct query *q = arg;
    struct dns_resolver *r = q->r;
    struct entry *e = cache_find(r, q->kind, q->name);
    if (!e || !e->pending || status == ARES_EDESTRUCTION) {
        free(q);
        return;
    }
    struct dns_answer *ans = NULL;
    if (status == ARES_SUCCESS) {
        ans = malloc(sizeof *ans);
        if (!ans || dns_answer_parse(abuf, (size_t)alen, ans) < 0) status = ARES_EBADRESP;
    }
    if (q->kind == ENTRY_MX) {
        if (status == ARES_ENODATA) {
            e->implicit = true; /* no MX: the domain is its own exchanger */
            e->n_mx = 1;
            snprintf(e->mx[0].name, sizeof e->mx[0].name, "%s", e->name);
            e->min_ttl = NEG_TTL_MS / 1000;
        } else if (status != ARES_SUCCESS) {
            fail_entry(e, status, "MX");
        } else {
            uint32_t min_ttl = UINT32_MAX;
            for (size_t i = 0; i < ans->n; i++) {
                struct dns_rr *rr = &ans->rr[i];
                if (rr->type != 15) continue;
                if (rr->ttl < min_ttl) min_ttl = rr->ttl;
                if (rr->name[0] == '\0') {
                    e->status = DNS_NULL_MX; /* RFC 7505: MX 0 . */
                    snprintf(e->reason, sizeof e->reason,
                             "%.120s accepts no mail (null MX, RFC 7505)", e->name);
                    continue;
                }
                /* Keep the DNS_MAX_MX most preferred. */
                size_t at = e->n_mx;
                if (at == DNS_MAX_MX) {
                    if (rr->pref >= e->mx[at - 1].pref) continue;
                    at--;
                } else {
                    e->n_mx++;
                }
                while (at > 0 && e->mx[at - 1].pref > rr->pref) {
                    e->mx[at] = e->mx[at - 1];
                    at--;
                }
                e->mx[at].pref = rr->pref;
                snprintf(e->mx[at].name, sizeof e->mx[at].name, "%s", rr->name);
            }
            if (e->status == DNS_NULL_MX) e->n_mx = 0;
            if (e->n_mx == 0 && e->status == DNS_OK) {
                e->implicit = true;
                e->n_mx = 1;
                snprintf(e->mx[0].name, sizeof e->mx[0].name, "%s", e->name);
            }
            e->min_ttl = min_ttl == UINT32_MAX ? 0 : min_ttl;
        }
    } else {
        if (status == ARES_SUCCESS) {
            for (size_t i = 0; i < ans->n && e->n_addrs < DNS_MAX_ADDRS; i++) {
                struct dns_rr *rr = &ans->rr[i];
                if (rr->type != (q->type == QTYPE_A ? 1 : 28)) continue;
                e->addrs[e->n_addrs].family = rr->type == 1 ? AF_INET : AF_INET6;
                memcpy(e->addrs[e->n_addrs].a, rr->addr, 16);
                e->n_addrs++;
                if (e->min_ttl == 0 || rr->ttl < e->min_ttl) e->min_ttl = rr->ttl;
            }
        } else if (status != ARES_ENODATA && status != ARES_ENOTFOUND && e->n_addrs == 0) {
            fail_entry(e, status, q->type == QTYPE_A ? "A" : "AAAA");
        }
    }
    free(ans);
    free(q);
    finish_entry(r, e);
}

static int send_query(struct dns_resolver *r, struct entry *e, int type)
{
    struct query *q = calloc(1, sizeof *q);
    if (!q) return -ENOMEM;
    q->r = r;
    q->kind = e->kind;
    q->type = type;
    snprintf(q->name, sizeof q->name, "%s", e->name);
    e->outstanding++;
    r->stats.queries++;
    ares_query(r->channel, e->name, QCLASS_IN, type, on_answer, q);
    arm_timer(r);
    return 0;
}

static void start_entry(struct dns_resolver *r, struct entry *e)
{
    e->pending = true;
    e->status = DNS_OK;
    e->reason[0] = '\0';
    e->min_ttl = 0;
    e->implicit = false;
    e->n_mx = 0;
    e->n_addrs = 0;
    e->outstanding = 1; /* held until both queries are sent */
    if (e->kind == ENTRY_MX) {
        send_query(r, e, QTYPE_MX);
    } else {
        send_query(r, e, QTYPE_A);
        send_query(r, e, QTYPE_AAAA);
    }
    finish_entry(r, e);
}

/* The entry for name, started if missing or stale. */
static struct entry *need(struct dns_resolver *r, enum entry_kind k, const char *name)
{
    struct entry *e = cache_find(r, k, name);
    if (!e) e = cache_add(r, k, name);
    if (!e) return NULL;
    if (!e->pending && e->expires_ms <= r->ring->now_ms) start_entry(r, e);
    return e;
}

/* ---- requests ---- */

static void set_port(struct sockaddr_storage *ss, socklen_t *len, int family,
                     const unsigned char *a, uint16_t port)
{
    memset(ss, 0, sizeof *ss);
    if (family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(port);
        memcpy(&s4->sin_addr, a, 4);
        *len = sizeof *s4;
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(port);
        memcpy(&s6->sin6_addr, a, 16);
        *len = sizeof *s6;
    }
}

/* One exchanger's addresses into out, IPv4 first, then IPv6: a fixed order
 * whatever answer came first. */
static void fill_host(struct dns_mx_host *out, const char *name, uint16_t pref,
                      const struct entry *h, uint16_t port)
{
    snprintf(out->name, sizeof out->name, "%s", name);
    out->pref = pref;
    int families[DNS_MAX_ADDRS];
    size_t order[DNS_MAX_ADDRS];
    for (size_t a = 0; a < h->n_addrs; a++)
        families[a] = h->addrs[a].family;
    out->n_addrs = dns_addr_order(families, h->n_addrs, order);
    for (size_t k = 0; k < out->n_addrs; k++)
        set_port(&out->addrs[k], &out->addr_lens[k], h->addrs[order[k]].family,
                 h->addrs[order[k]].a, port);
}

/* A relay or smarthost: the host's own A/AAAA records, by their TTL. */
static bool try_answer_host(struct dns_resolver *r, struct request *q)
{
    struct entry *h = need(r, ENTRY_HOST, q->domain);
    if (!h || h->pending) return false;
    struct dns_route route;
    memset(&route, 0, sizeof route);
    if (h->n_addrs == 0) {
        route.status = h->status != DNS_OK ? h->status : DNS_NO_ADDRESS;
        snprintf(route.reason, sizeof route.reason, "%.60s has no address (%.100s)", q->domain,
                 h->reason[0] ? h->reason : "no A or AAAA record");
    } else {
        fill_host(&route.hosts[route.n_hosts++], q->domain, 0, h, q->port);
    }
    q->cb(q->arg, &route);
    return true;
}

/* Answer the request if every name it needs is known: returns false while
 * something is still being looked up (and starts what is missing). */
static bool try_answer(struct dns_resolver *r, struct request *q)
{
    if (q->host_only) return try_answer_host(r, q);
    struct entry *mx = need(r, ENTRY_MX, q->domain);
    if (!mx) return false;
    if (mx->pending) return false;
    struct dns_route route;
    memset(&route, 0, sizeof route);
    route.implicit = mx->implicit;
    if (mx->status != DNS_OK) {
        route.status = mx->status;
        snprintf(route.reason, sizeof route.reason, "%s", mx->reason);
        q->cb(q->arg, &route);
        return true;
    }
    bool ready = true;
    struct entry *hosts[DNS_MAX_MX];
    for (size_t i = 0; i < mx->n_mx; i++) {
        hosts[i] = need(r, ENTRY_HOST, mx->mx[i].name);
        if (!hosts[i] || hosts[i]->pending) ready = false;
    }
    if (!ready) return false;
    /* Preference order; a random order among equal preferences spreads the
     * load as RFC 5321 5.1 asks. */
    uint16_t prefs[DNS_MAX_MX];
    size_t order[DNS_MAX_MX];
    for (size_t i = 0; i < mx->n_mx; i++)
        prefs[i] = mx->mx[i].pref;
    dns_mx_order(prefs, mx->n_mx, &r->rng, order);
    const char *last_reason = "";
    for (size_t oi = 0; oi < mx->n_mx; oi++) {
        size_t i = order[oi];
        struct entry *h = hosts[i];
        if (h->n_addrs == 0) {
            last_reason = h->reason[0] ? h->reason : "no address";
            continue;
        }
        fill_host(&route.hosts[route.n_hosts++], mx->mx[i].name, mx->mx[i].pref, h, q->port);
    }
    if (route.n_hosts == 0) {
        route.status = DNS_NO_ADDRESS;
        snprintf(route.reason, sizeof route.reason, "no mail exchanger of %.60s has an address (%.100s)",
                 q->domain, last_reason);
    }
    q->cb(q->arg, &route);
    return true;
}

static void check_waiting(struct dns_resolver *r)
{
    if (r->in_check) {
        r->check_again = true; /* answered synchronously inside a callback */
        return;
    }
    r->in_check = true;
    do {
        r->check_again = false;
        struct request *prev = NULL;
        struct request **pp = &r->waiting;
        while (*pp) {
            struct request *q = *pp;
            r->stats.waiting_checks++;
            if (!try_answer(r, q)) {
                prev = q;
                pp = &q->next;
                continue;
            }
            /* Its callback may have queued more behind it: q->next is
             * read only now. */
            *pp = q->next;
            if (r->waiting_tail == q) r->waiting_tail = prev;
            free(q);
        }
    } while (r->check_again);
    r->in_check = false;
}

static int resolve(struct dns_resolver *r, const char *domain, uint16_t port, bool host_only,
                   dns_route_fn cb, void *arg)
{
    struct request *q = calloc(1, sizeof *q);
    if (!q) return -ENOMEM;
    size_t n = strlen(domain);
    if (n > 0 && domain[n - 1] == '.') n--;
    if (n == 0 || n > 253) {
        free(q);
        struct dns_route route = {.status = DNS_NXDOMAIN};
        snprintf(route.reason, sizeof route.reason, "invalid domain name");
        cb(arg, &route);
        return 0;
    }
    snprintf(q->domain, sizeof q->domain, "%.*s", (int)n, domain);
    q->port = port;
    q->host_only = host_only;
    q->cb = cb;
    q->arg = arg;
    struct entry *first = cache_find(r, host_only ? ENTRY_HOST : ENTRY_MX, q->domain);
    if (fresh(r, first)) r->stats.cache_hits++;
    bool saved = r->in_check;
    r->in_check = true; /* answers that arrive synchronously wait for us */
    bool done = try_answer(r, q);
    r->in_check = saved;
    if (done) {
        free(q);
    } else {
        /* First come, first answered: a batch to a new domain goes out in
         * the order it was read. */
        if (r->waiting_tail) r->waiting_tail->next = q;
        else r->waiting = q;
        r->waiting_tail = q;
    }
    /* Only a query answered synchronously meanwhile (c-ares' own cache or
     * hosts file) can have made others answerable: a pass for every new
     * request would make a burst of W requests cost W^2 looks. */
    if (!saved && r->check_again) check_waiting(r);
    return 0;
}

int dns_resolve_route(struct dns_resolver *r, const char *domain, uint16_t port, dns_route_fn cb,
                      void *arg)
{
    return resolve(r, domain, port, false, cb, arg);
}

int dns_resolve_host(struct dns_resolver *r, const char *host, uint16_t port, dns_route_fn cb,
                     void *arg)
{
    /* An address literal needs no lookup. */
    struct dns_route route;
    memset(&route, 0, sizeof route);
    struct dns_mx_host *h = &route.hosts[0];
    unsigned char a[16];
    int family = inet_pton(AF_INET, host, a) == 1 ? AF_INET
                 : inet_pton(AF_INET6, host, a) == 1 ? AF_INET6
                                                     : 0;
    if (family) {
        snprintf(h->name, sizeof h->name, "%s", host);
        set_port(&h->addrs[0], &h->addr_lens[0], family, a, port);
        h->n_addrs = 1;
        route.n_hosts = 1;
        cb(arg, &route);
        return 0;
    }
    return resolve(r, host, port, true, cb, arg);
}

void dns_resolver_stats(const struct dns_resolver *r, struct dns_stats *out)
{
    *out = r->stats;
}

int dns_channel_servers(struct ares_channeldata *channel, const char *const *servers,
                        size_t n_servers, char *err, size_t errlen)
{
    if (n_servers == 0)
        return 0; /* the system's resolv.conf */
    char csv[1024] = "";
    size_t used = 0;
    for (size_t i = 0; i < n_servers; i++) {
        int w = snprintf(csv + used, sizeof csv - used, "%s%s", i ? "," : "", servers[i]);
        if (w < 0 || (size_t)w >= sizeof csv - used)
            break;
        used += (size_t)w;
    }
    int rc = ares_set_servers_ports_csv(channel, csv);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "dns.servers '%s': %s", csv, ares_strerror(rc));
        return -HERR_CONFIG;
    }
    return 0;
}

int dns_resolver_new(struct dns_resolver **out, struct ring *ring, const char *const *servers,
                     size_t n_servers, char *err, size_t errlen)
{
    *out = NULL;
    struct dns_resolver *r = calloc(1, sizeof *r);
    if (!r) return -ENOMEM;
    r->ring = ring;
    r->rng = (uint64_t)clock_wall_ms() ^ (uint64_t)(uintptr_t)r;
    ring_timer_init(&r->timer, on_timer);
    for (int i = 0; i < WATCH_MAX; i++) {
        r->watches[i].r = r;
        r->watches[i].op.fn = on_poll;
        r->watches[i].fd = -1;
    }
    struct ares_options o;
    memset(&o, 0, sizeof o);
    o.sock_state_cb = sock_state;
    o.sock_state_cb_data = r;
    o.timeout = 2000;
    o.tries = 3;
    int optmask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES;
    int rc = ares_init_options(&r->channel, &o, optmask);
    if (rc != ARES_SUCCESS) {
        snprintf(err, errlen, "resolver: %s", ares_strerror(rc));
        free(r);
        return -HERR_DNS;
    }
    if (dns_channel_servers(r->channel, servers, n_servers, err, errlen) < 0) {
        ares_destroy(r->channel);
        free(r);
        return -HERR_CONFIG;
    }
    *out = r;
    return 0;
}

void dns_resolver_free(struct dns_resolver *r)
{
    if (!r) return;
    /* Polls in flight point at our watches: cancel them while their
     * sockets are still open and let the completions arrive before the
     * memory goes (this runs once, at shutdown, so pumping the ring is fine). */
    r->closing = true;
    for (int i = 0; i < WATCH_MAX; i++)
        if (r->watches[i].polling) ring_cancel_op(r->ring, &r->watches[i].op);
    for (int n = 0; n < 50; n++) {
        bool busy = false;
        for (int i = 0; i < WATCH_MAX; i++) busy |= r->watches[i].polling;
        if (!busy) break;
        ring_run_once(r->ring, 20);
    }
    /* Fails the queries in flight (ARES_EDESTRUCTION: ignored above). */
    ares_destroy(r->channel);
    ring_timer_cancel(r->ring, &r->timer);
    r->waiting_tail = NULL;
    while (r->waiting) {
        struct request *q = r->waiting;
        r->waiting = q->next;
        struct dns_route route = {.status = DNS_TEMPFAIL};
        snprintf(route.reason, sizeof route.reason, "resolver closed");
        q->cb(q->arg, &route);
        free(q);
    }
    for (size_t b = 0; b < CACHE_BUCKETS; b++)
        while (r->buckets[b]) {
            struct entry *e = r->buckets[b];
            r->buckets[b] = e->next;
            free(e);
        }
    free(r);
}
