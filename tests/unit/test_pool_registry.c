/* The pool's registry of destinations and groups: found by key however
 * many there are (the table grows: 100,000 destinations keep chains short),
 * idle ones freed after dest_idle_ms with the groups they leave empty, busy
 * ones and ones in a TLS fallback kept. Lookup cost is printed, at 1,000
 * and at 100,000 destinations, for the record; it is not asserted. */
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "check.h"
#include "pool/internal.h"

static void done(void *arg, struct smtp_msg *m, const struct smtp_result *r,
                 const struct pool_conn_info *i)
{
    (void)arg, (void)m, (void)r, (void)i;
}

static void target(struct pool_target *t, unsigned i)
{
    memset(t, 0, sizeof *t);
    snprintf(t->host, sizeof t->host, "mx%u.site%u.test", i % 3, i);
    struct sockaddr_in *s = (struct sockaddr_in *)&t->sa;
    s->sin_family = AF_INET;
    s->sin_port = htons(25);
    s->sin_addr.s_addr = htonl(0x7f000001u + (i & 0xffff));
    t->sa_len = sizeof *s;
}

static struct pool_dest *get(struct pool *p, unsigned i)
{
    struct pool_target t;
    target(&t, i);
    char group[64];
    snprintf(group, sizeof group, "site%u", i / 2); /* two destinations per group */
    struct pool_limits lim = {.max_conns = 2, .group = group};
    return pool_dest_get(p, &t, "127.0.0.2", "mta.test", &lim);
}

static size_t longest_chain(const struct pool_map *m)
{
    size_t longest = 0;
    for (size_t i = 0; i < m->nb; i++) {
        size_t n = 0;
        for (const struct pool_map_node *x = m->b[i]; x; x = x->next)
            n++;
        if (n > longest) longest = n;
    }
    return longest;
}

static double ns_per_lookup(struct pool *p, unsigned n_dests)
{
    enum { LOOKUPS = 200000 };
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (unsigned k = 0; k < LOOKUPS; k++)
        if (!get(p, (k * 2654435761u) % n_dests)) CHECK(0);
    clock_gettime(CLOCK_MONOTONIC, &b);
    return ((double)(b.tv_sec - a.tv_sec) * 1e9 + (double)(b.tv_nsec - a.tv_nsec)) / LOOKUPS;
}

static void test_many(void)
{
    enum { N = 100000 };
    struct ring r;
    memset(&r, 0, sizeof r);
    r.now_ms = 1000;
    struct pool p;
    CHECK_EQ_INT(pool_init(&p, &r, done, NULL), 0);
    for (unsigned i = 0; i < 1000; i++)
        CHECK(get(&p, i) != NULL);
    double small = ns_per_lookup(&p, 1000);
    for (unsigned i = 1000; i < N; i++)
        CHECK(get(&p, i) != NULL);
    CHECK_EQ_INT(p.n_dests, N);
    CHECK_EQ_INT(p.dests.n, N);
    CHECK_EQ_INT(p.groups.n, N / 2);
    CHECK(p.dests.nb >= N);
    CHECK(longest_chain(&p.dests) <= 12);
    double big = ns_per_lookup(&p, N);
    printf("lookup: %.0f ns at 1,000 destinations, %.0f ns at 100,000 (%zu buckets, longest "
           "chain %zu)\n",
           small, big, p.dests.nb, longest_chain(&p.dests));
    /* The same key is the same destination. */
    CHECK(get(&p, 4242) == get(&p, 4242));

    /* All idle now but two: one still in use, one in a TLS fallback. */
    struct pool_dest *busy = get(&p, 7), *fallback = get(&p, 8);
    for (unsigned i = 0; i < N; i++)
        pool_dest_idle(&p, get(&p, i));
    pool_dest_busy(&p, busy);
    fallback->tls_fallback_until = r.now_ms + 10 * p.dest_idle_ms;
    r.now_ms += p.dest_idle_ms - 1;
    pool_tick(&p);
    CHECK_EQ_INT(p.n_dests, N); /* not idle long enough yet */
    r.now_ms += 1;
    pool_tick(&p);
    CHECK_EQ_INT(p.n_dests, 2);
    CHECK_EQ_INT(p.n_evicted, N - 2);
    CHECK_EQ_INT(p.groups.n, 2); /* site3 (7) and site4 (8): the rest left empty and went */
    CHECK(get(&p, 7) == busy);
    /* The fallback destination goes once its fallback has passed and it has
     * been idle long enough after it. */
    r.now_ms = fallback->tls_fallback_until + p.dest_idle_ms;
    pool_tick(&p);
    CHECK_EQ_INT(p.n_dests, 1);
    CHECK_EQ_INT(p.groups.n, 1);
    /* A destination made again after eviction is a fresh one that works. */
    struct pool_dest *again = get(&p, 9);
    CHECK(again != NULL);
    CHECK_EQ_INT(p.n_dests, 2);
    pool_free(&p);
}

int main(void)
{
    test_many();
    return check_report("test_pool_registry");
}
