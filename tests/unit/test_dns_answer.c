/* DNS answer parsing: hand-built responses with compression, null MX,
 * CNAME chains, and the malformed shapes a hostile server could send. */
#include <arpa/inet.h>

#include "check.h"
#include "herald/core.h"
#include "herald/dns.h"

struct msg {
    unsigned char b[1024];
    size_t n;
};

static void put(struct msg *m, const void *p, size_t n)
{
    memcpy(m->b + m->n, p, n);
    m->n += n;
}
static void put16(struct msg *m, unsigned v)
{
    unsigned char x[2] = {(unsigned char)(v >> 8), (unsigned char)v};
    put(m, x, 2);
}
static void put32(struct msg *m, uint32_t v)
{
    put16(m, v >> 16);
    put16(m, v & 0xffff);
}
/* "a.b.c" as labels; NULL = root. */
static void put_name(struct msg *m, const char *name)
{
    while (name && *name) {
        const char *dot = strchr(name, '.');
        size_t l = dot ? (size_t)(dot - name) : strlen(name);
        unsigned char len = (unsigned char)l;
        put(m, &len, 1);
        put(m, name, l);
        name += l + (dot ? 1 : 0);
    }
    put(m, "", 1);
}
static void header(struct msg *m, int rcode, unsigned qd, unsigned an)
{
    m->n = 0;
    put16(m, 0x1234);
    put16(m, 0x8180 | rcode);
    put16(m, qd);
    put16(m, an);
    put16(m, 0);
    put16(m, 0);
}
static void rr_head(struct msg *m, unsigned type, uint32_t ttl, unsigned rdlen)
{
    put16(m, 0xc00c); /* owner: the question name */
    put16(m, type);
    put16(m, 1);
    put32(m, ttl);
    put16(m, rdlen);
}

static void test_mx(void)
{
    struct msg m;
    header(&m, 0, 1, 3);
    put_name(&m, "example.test");
    put16(&m, 15);
    put16(&m, 1);
    rr_head(&m, 15, 300, 2 + 6);
    put16(&m, 20);
    unsigned char lab[] = {3, 'm', 'x', '2', 0xc0, 0x0c}; /* mx2.example.test */
    put(&m, lab, sizeof lab);
    rr_head(&m, 15, 60, 2 + 6);
    put16(&m, 10);
    unsigned char lab1[] = {3, 'm', 'x', '1', 0xc0, 0x0c};
    put(&m, lab1, sizeof lab1);
    rr_head(&m, 1, 120, 4);
    put(&m, "\x7f\x00\x00\x03", 4);
    struct dns_answer a;
    CHECK_EQ_INT(dns_answer_parse(m.b, m.n, &a), 0);
    CHECK_EQ_INT(a.n, 3);
    CHECK_EQ_INT(a.rr[0].type, 15);
    CHECK_EQ_INT(a.rr[0].pref, 20);
    CHECK_EQ_STR(a.rr[0].name, "mx2.example.test");
    CHECK_EQ_INT(a.rr[0].ttl, 300);
    CHECK_EQ_STR(a.rr[1].name, "mx1.example.test");
    CHECK_EQ_INT(a.rr[1].ttl, 60);
    CHECK_EQ_INT(a.rr[2].type, 1);
    CHECK_EQ_INT(a.rr[2].addr[3], 3);

    /* Every truncation of a valid message is refused, never read past. */
    for (size_t cut = 0; cut < m.n; cut++) {
        int rc = dns_answer_parse(m.b, cut, &a);
        CHECK(rc == -HERR_MALFORMED);
    }
}

static void test_null_mx_and_loops(void)
{
    struct msg m;
    header(&m, 0, 1, 1);
    put_name(&m, "nullmx.test");
    put16(&m, 15);
    put16(&m, 1);
    rr_head(&m, 15, 3600, 3);
    put16(&m, 0);
    put(&m, "", 1);
    struct dns_answer a;
    CHECK_EQ_INT(dns_answer_parse(m.b, m.n, &a), 0);
    CHECK_EQ_INT(a.n, 1);
    CHECK_EQ_STR(a.rr[0].name, "");
    CHECK_EQ_INT(a.rr[0].pref, 0);

    /* A pointer to itself, and one pointing forward: both refused. */
    header(&m, 0, 1, 0);
    put16(&m, 0xc00c);
    put16(&m, 15);
    put16(&m, 1);
    CHECK_EQ_INT(dns_answer_parse(m.b, m.n, &a), -HERR_MALFORMED);
    header(&m, 0, 1, 0);
    put16(&m, 0xc020);
    put16(&m, 15);
    put16(&m, 1);
    CHECK_EQ_INT(dns_answer_parse(m.b, m.n, &a), -HERR_MALFORMED);

    /* A control byte in a label, an A record of the wrong length. */
    header(&m, 0, 1, 0);
    unsigned char bad[] = {3, 'a', '\n', 'b', 0, 0, 15, 0, 1};
    put(&m, bad, sizeof bad);
    CHECK_EQ_INT(dns_answer_parse(m.b, m.n, &a), -HERR_MALFORMED);
    header(&m, 0, 1, 1);
    put_name(&m, "x.test");
    put16(&m, 1);
    put16(&m, 1);
    rr_head(&m, 1, 1, 3);
    put(&m, "abc", 3);
    CHECK_EQ_INT(dns_answer_parse(m.b, m.n, &a), -HERR_MALFORMED);
}

static void test_cname_and_rcode(void)
{
    struct msg m;
    header(&m, 3, 1, 0); /* NXDOMAIN */
    put_name(&m, "gone.test");
    put16(&m, 15);
    put16(&m, 1);
    struct dns_answer a;
    CHECK_EQ_INT(dns_answer_parse(m.b, m.n, &a), 0);
    CHECK_EQ_INT(a.rcode, 3);
    CHECK_EQ_INT(a.n, 0);

    header(&m, 0, 1, 2);
    put_name(&m, "www.test");
    put16(&m, 28);
    put16(&m, 1);
    rr_head(&m, 5, 30, 6);
    unsigned char target[] = {4, 'h', 'o', 's', 't', 0};
    put(&m, target, sizeof target);
    rr_head(&m, 28, 0x80000000u, 16); /* TTL with the top bit set counts as 0 */
    put(&m, "\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1", 16);
    CHECK_EQ_INT(dns_answer_parse(m.b, m.n, &a), 0);
    CHECK_EQ_INT(a.n, 2);
    CHECK_EQ_INT(a.rr[0].type, 5);
    CHECK_EQ_STR(a.rr[0].name, "host");
    CHECK_EQ_INT(a.rr[1].type, 28);
    CHECK_EQ_INT(a.rr[1].ttl, 0);
    CHECK_EQ_INT(a.rr[1].addr[15], 1);
}

int main(void)
{
    test_mx();
    test_null_mx_and_loops();
    test_cname_and_rcode();
    return check_report("test_dns_answer");
}
