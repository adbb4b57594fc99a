/* The resolver's waiting list, against a small DNS server on loopback that
 * answers A/AAAA for *.fast.test and never answers slow.test: 500 requests
 * for slow.test wait ahead of 500 for fast.test. When fast.test's answer
 * comes, the 500 are answered in one pass over the list, in order; before,
 * each answered request restarted the scan from the front, past the 500
 * slow ones (some 250,000 looks). The count of looks is asserted with a
 * wide margin; it does not depend on timing. */
#include <arpa/inet.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "check.h"
#include "herald/dns.h"
#include "herald/ring.h"

enum { N = 500 };

static int srv_fd = -1;
static atomic_bool srv_stop;

/* Answer a query in q[0..n): A -> 127.0.0.1 for fast names, AAAA -> no
 * data, slow names -> nothing at all. */
static void *serve(void *arg)
{
    (void)arg;
    unsigned char q[512], a[600];
    while (!atomic_load(&srv_stop)) {
        struct sockaddr_in from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(srv_fd, q, sizeof q, 0, (struct sockaddr *)&from, &fl);
        if (n < 17) continue;
        char name[256];
        size_t o = 12, w = 0;
        while (o < (size_t)n && q[o] && w + q[o] + 1 < sizeof name) {
            memcpy(name + w, q + o + 1, q[o]);
            w += q[o];
            name[w++] = '.';
            o += q[o] + 1;
        }
        name[w] = '\0';
        if (o + 5 > (size_t)n) continue;
        size_t qend = o + 5;
        unsigned qtype = (unsigned)(q[o + 1] << 8 | q[o + 2]);
        if (!strstr(name, "fast.test")) continue;
        memcpy(a, q, qend);
        a[2] = 0x81; /* QR, RD */
        a[3] = 0x80; /* RA, NOERROR */
        a[6] = 0, a[7] = qtype == 1 ? 1 : 0; /* ANCOUNT */
        a[8] = a[9] = a[10] = a[11] = 0;
        size_t m = qend;
        if (qtype == 1) {
            const unsigned char rr[] = {0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 127, 0, 0, 1};
            memcpy(a + m, rr, sizeof rr);
            m += sizeof rr;
        }
        sendto(srv_fd, a, m, 0, (struct sockaddr *)&from, fl);
    }
    return NULL;
}

static int answered_fast, answered_slow, order_ok = 1, next_fast;

static void on_fast(void *arg, const struct dns_route *route)
{
    int i = (int)(intptr_t)arg;
    if (i != next_fast++) order_ok = 0;
    if (route->status == DNS_OK && route->n_hosts == 1) answered_fast++;
}

static void on_slow(void *arg, const struct dns_route *route)
{
    (void)arg, (void)route;
    answered_slow++;
}

int main(void)
{
    srv_fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {0, 100000};
    setsockopt(srv_fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (bind(srv_fd, (struct sockaddr *)&sa, sizeof sa) < 0) return 77;
    socklen_t sl = sizeof sa;
    getsockname(srv_fd, (struct sockaddr *)&sa, &sl);
    pthread_t th;
    pthread_create(&th, NULL, serve, NULL);

    struct ring ring;
    if (ring_init(&ring, 256) < 0) {
        fprintf(stderr, "test_resolver: io_uring unavailable, skipped\n");
        return 77;
    }
    char server[64];
    snprintf(server, sizeof server, "127.0.0.1:%u", ntohs(sa.sin_port));
    const char *servers[] = {server};
    struct dns_resolver *r = NULL;
    char err[256] = "";
    CHECK_EQ_INT(dns_resolver_new(&r, &ring, servers, 1, err, sizeof err), 0);
    if (!r) return check_report("test_resolver");
    for (int i = 0; i < N; i++)
        dns_resolve_host(r, "slow.test", 25, on_slow, NULL);
    for (int i = 0; i < N; i++)
        dns_resolve_host(r, "mx.fast.test", 25, on_fast, (void *)(intptr_t)i);
    for (int k = 0; k < 2000 && answered_fast < N; k++)
        ring_run_once(&ring, 10);
    CHECK_EQ_INT(answered_fast, N);
    CHECK(order_ok);
    CHECK_EQ_INT(answered_slow, 0);
    struct dns_stats st;
    dns_resolver_stats(r, &st);
    printf("waiting checks: %llu for %d answered behind %d waiting\n",
           (unsigned long long)st.waiting_checks, N, N);
    CHECK(st.waiting_checks < 20 * N);
    dns_resolver_free(r); /* the slow ones end with a temporary failure */
    CHECK_EQ_INT(answered_slow, N);
    ring_exit(&ring);
    atomic_store(&srv_stop, true);
    pthread_join(th, NULL);
    close(srv_fd);
    return check_report("test_resolver");
}
