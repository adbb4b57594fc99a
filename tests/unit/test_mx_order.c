/* The order a route is tried in (dns_mx_order, dns_addr_order): exchangers
 * by ascending preference, a fair shuffle among equal ones from the rng
 * passed in, and within a host IPv4 before IPv6. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "check.h"
#include "herald/core.h"
#include "herald/dns.h"

static bool is_permutation(const size_t *order, size_t n)
{
    bool seen[64] = {false};
    for (size_t i = 0; i < n; i++) {
        if (order[i] >= n || seen[order[i]]) return false;
        seen[order[i]] = true;
    }
    return true;
}

static bool prefs_ascend(const uint16_t *prefs, const size_t *order, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if (prefs[order[i - 1]] > prefs[order[i]]) return false;
    return true;
}

static void test_ascending(void)
{
    const uint16_t prefs[] = {30, 10, 20};
    for (uint64_t seed = 0; seed < 100; seed++) {
        uint64_t rng = seed;
        size_t order[3];
        dns_mx_order(prefs, 3, &rng, order);
        CHECK_EQ_INT(order[0], 1);
        CHECK_EQ_INT(order[1], 2);
        CHECK_EQ_INT(order[2], 0);
    }
    /* DNS_MAX_MX distinct preferences in reverse, 0 and 65535 included. */
    uint16_t rev[DNS_MAX_MX];
    for (size_t i = 0; i < DNS_MAX_MX; i++)
        rev[i] = (uint16_t)(i == 0 ? 65535 : (DNS_MAX_MX - 1 - i) * 10);
    uint64_t rng = 3;
    size_t order[DNS_MAX_MX];
    dns_mx_order(rev, DNS_MAX_MX, &rng, order);
    for (size_t i = 0; i < DNS_MAX_MX; i++)
        CHECK_EQ_INT(order[i], i == DNS_MAX_MX - 1 ? 0 : DNS_MAX_MX - 1 - i);
    /* Random preferences (many ties among few values): always a
     * permutation in ascending preference. */
    uint64_t gen = 11;
    for (int round = 0; round < 20000; round++) {
        gen = gen * 6364136223846793005ULL + 1442695040888963407ULL;
        size_t n = 1 + (size_t)((gen >> 33) % DNS_MAX_MX);
        uint16_t p[DNS_MAX_MX];
        for (size_t i = 0; i < n; i++) {
            gen = gen * 6364136223846793005ULL + 1442695040888963407ULL;
            p[i] = (uint16_t)((gen >> 33) % 4 * 5);
        }
        size_t o[DNS_MAX_MX];
        rng = gen;
        dns_mx_order(p, n, &rng, o);
        CHECK(is_permutation(o, n));
        CHECK(prefs_ascend(p, o, n));
    }
}

static int perm_index3(const size_t *o)
{
    /* 0..5 for the six orders of {0,1,2}. */
    static const size_t perms[6][3] = {{0, 1, 2}, {0, 2, 1}, {1, 0, 2},
                                       {1, 2, 0}, {2, 0, 1}, {2, 1, 0}};
    for (int i = 0; i < 6; i++)
        if (memcmp(perms[i], o, sizeof perms[i]) == 0) return i;
    return -1;
}

static void test_equal_shuffled(void)
{
    const uint16_t prefs[] = {10, 10, 10};
    int count[6] = {0};
    const int seeds = 6000;
    for (int seed = 0; seed < seeds; seed++) {
        uint64_t rng = (uint64_t)seed * 0x9e3779b97f4a7c15ULL;
        size_t order[3];
        dns_mx_order(prefs, 3, &rng, order);
        int k = perm_index3(order);
        CHECK(k >= 0);
        if (k >= 0) count[k]++;
    }
    /* Every order occurs, each about a sixth of the time. */
    for (int i = 0; i < 6; i++) {
        if (count[i] < seeds / 6 * 8 / 10 || count[i] > seeds / 6 * 12 / 10)
            fprintf(stderr, "order %d seen %d times of %d\n", i, count[i], seeds);
        CHECK(count[i] >= seeds / 6 * 8 / 10);
        CHECK(count[i] <= seeds / 6 * 12 / 10);
    }
    /* One resolver's rng across calls: the order changes from call to call. */
    uint64_t rng = 1;
    int seen[6] = {0};
    for (int call = 0; call < 600; call++) {
        size_t order[3];
        dns_mx_order(prefs, 3, &rng, order);
        int k = perm_index3(order);
        if (k >= 0) seen[k]++;
    }
    for (int i = 0; i < 6; i++)
        CHECK(seen[i] > 0);

    /* Ties shuffle only among themselves: {10, 20, 10, 20}. */
    const uint16_t two[] = {10, 20, 10, 20};
    int first0 = 0, third1 = 0;
    for (int seed = 0; seed < 1000; seed++) {
        uint64_t r = (uint64_t)seed * 0x9e3779b97f4a7c15ULL;
        size_t o[4];
        dns_mx_order(two, 4, &r, o);
        CHECK((o[0] == 0 && o[1] == 2) || (o[0] == 2 && o[1] == 0));
        CHECK((o[2] == 1 && o[3] == 3) || (o[2] == 3 && o[3] == 1));
        first0 += o[0] == 0;
        third1 += o[2] == 1;
    }
    CHECK(first0 > 400 && first0 < 600);
    CHECK(third1 > 400 && third1 < 600);
}

static void test_deterministic(void)
{
    const uint16_t prefs[] = {5, 5, 5, 5, 9, 9, 9, 1};
    uint64_t a = 0xfeed, b = 0xfeed;
    size_t oa[8], ob[8];
    dns_mx_order(prefs, 8, &a, oa);
    dns_mx_order(prefs, 8, &b, ob);
    CHECK(memcmp(oa, ob, sizeof oa) == 0);
    CHECK(a == b);          /* the rng moved on the same way */
    CHECK(a != 0xfeed);     /* and did move: the next call shuffles anew */
    CHECK_EQ_INT(oa[0], 7); /* preference 1 */
    /* A different seed gives a different order of these eight somewhere. */
    bool differs = false;
    for (uint64_t s = 1; s < 20 && !differs; s++) {
        uint64_t c = 0xfeed + s;
        size_t oc[8];
        dns_mx_order(prefs, 8, &c, oc);
        differs = memcmp(oa, oc, sizeof oa) != 0;
    }
    CHECK(differs);
}

static void test_sizes(void)
{
    /* One host. */
    const uint16_t one[] = {10};
    uint64_t rng = 99;
    size_t order[DNS_MAX_MX];
    order[0] = 12345;
    dns_mx_order(one, 1, &rng, order);
    CHECK_EQ_INT(order[0], 0);
    /* None: nothing written. */
    order[0] = 12345;
    dns_mx_order(one, 0, &rng, order);
    CHECK_EQ_INT(order[0], 12345);
    /* DNS_MAX_MX equal preferences: each host comes first for some seed. */
    uint16_t eq[DNS_MAX_MX];
    for (size_t i = 0; i < DNS_MAX_MX; i++)
        eq[i] = 0;
    int firsts[DNS_MAX_MX] = {0}, lasts[DNS_MAX_MX] = {0};
    for (int seed = 0; seed < 4000; seed++) {
        rng = (uint64_t)seed * 0x9e3779b97f4a7c15ULL;
        dns_mx_order(eq, DNS_MAX_MX, &rng, order);
        CHECK(is_permutation(order, DNS_MAX_MX));
        firsts[order[0]]++;
        lasts[order[DNS_MAX_MX - 1]]++;
    }
    for (size_t i = 0; i < DNS_MAX_MX; i++) {
        CHECK(firsts[i] > 4000 / DNS_MAX_MX / 2);
        CHECK(lasts[i] > 4000 / DNS_MAX_MX / 2);
    }
}

static void test_addr_order(void)
{
    size_t o[DNS_MAX_ADDRS];
    const int mixed[] = {AF_INET6, AF_INET, AF_INET6, AF_INET};
    CHECK_EQ_INT(dns_addr_order(mixed, 4, o), 4);
    CHECK_EQ_INT(o[0], 1);
    CHECK_EQ_INT(o[1], 3);
    CHECK_EQ_INT(o[2], 0);
    CHECK_EQ_INT(o[3], 2);
    const int v6[] = {AF_INET6, AF_INET6};
    CHECK_EQ_INT(dns_addr_order(v6, 2, o), 2);
    CHECK_EQ_INT(o[0], 0);
    CHECK_EQ_INT(o[1], 1);
    const int v4[] = {AF_INET, AF_INET, AF_INET};
    CHECK_EQ_INT(dns_addr_order(v4, 3, o), 3);
    CHECK_EQ_INT(o[0], 0);
    CHECK_EQ_INT(o[1], 1);
    CHECK_EQ_INT(o[2], 2);
    const int v6first[] = {AF_INET6, AF_INET};
    CHECK_EQ_INT(dns_addr_order(v6first, 2, o), 2);
    CHECK_EQ_INT(o[0], 1);
    CHECK_EQ_INT(o[1], 0);
    CHECK_EQ_INT(dns_addr_order(v4, 0, o), 0);
}

int main(void)
{
    test_ascending();
    test_equal_shuffled();
    test_deterministic();
    test_sizes();
    test_addr_order();
    return check_report("test_mx_order");
}
