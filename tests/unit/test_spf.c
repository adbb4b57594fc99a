/* SPF check_host() against in-memory zones: every mechanism, qualifiers,
 * nested includes, redirect, the 10-lookup and 2-void limits, macros,
 * multiple records, DNS failures, and the record-editing helper. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "check.h"
#include "herald/spf.h"
#include "memdns.h"

#define T DNSQ_TXT
static const struct zrec zone1[] = {
    {"all.test", T, "v=spf1 -all", 0},
    {"ip.test", T, "v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 -all", 0},
    {"a.test", T, "v=spf1 a -all", 0},
    {"a.test", DNSQ_A, "192.0.2.10", 0},
    {"acidr.test", T, "v=spf1 a:host.acidr.test/24//64 ~all", 0},
    {"host.acidr.test", DNSQ_A, "198.51.100.1", 0},
    {"host.acidr.test", DNSQ_AAAA, "2001:db8:1:2::1", 0},
    {"mx.test", T, "v=spf1 mx -all", 0},
    {"mx.test", DNSQ_MX, "mx1.mx.test", 10},
    {"mx.test", DNSQ_MX, "mx2.mx.test", 20},
    {"mx1.mx.test", DNSQ_A, "203.0.113.1", 0},
    {"mx2.mx.test", DNSQ_A, "203.0.113.2", 0},
    {"ptr.test", T, "v=spf1 ptr -all", 0},
    {"7.2.0.192.in-addr.arpa", DNSQ_PTR, "mail.ptr.test", 0},
    {"mail.ptr.test", DNSQ_A, "192.0.2.7", 0},
    {"8.2.0.192.in-addr.arpa", DNSQ_PTR, "liar.ptr.test", 0}, /* no forward match */
    {"liar.ptr.test", DNSQ_A, "192.0.2.99", 0},
    {"ex.test", T, "v=spf1 exists:%{ir}.%{l1r+-}._spf.%{d} -all", 0},
    {"1.2.0.192.alice._spf.ex.test", DNSQ_A, "127.0.0.2", 0},
    {"inc.test", T, "v=spf1 include:inc1.test ?all", 0},
    {"inc1.test", T, "v=spf1 include:inc2.test -all", 0},
    {"inc2.test", T, "v=spf1 ip4:10.0.0.0/8 -all", 0},
    {"incnone.test", T, "v=spf1 include:nospf.test -all", 0},
    {"nospf.test", DNSQ_A, "192.0.2.1", 0},
    {"red.test", T, "v=spf1 redirect=inc2.test", 0},
    {"redmiss.test", T, "v=spf1 redirect=nospf.test", 0},
    {"two.test", T, "v=spf1 -all", 0},
    {"two.test", T, "v=spf1 +all", 0},
    {"other.test", T, "google-site-verification=abc", 0},
    {"bad.test", T, "v=spf1 ip4:300.1.1.1 -all", 0},
    {"badmech.test", T, "v=spf1 foo:bar -all", 0},
    {"fail.test", -1, NULL, 0},
    {"incfail.test", T, "v=spf1 include:fail.test -all", 0},
    {"soft.test", T, "v=spf1 ~all", 0},
    {"neutral.test", T, "v=spf1 ip4:10.0.0.1", 0},
    {"mod.test", T, "v=spf1 exp=explain.%{d} foo=bar ?all", 0},
    {"void.test", T, "v=spf1 a:n1.void.test a:n2.void.test a:n3.void.test +all", 0},
    {"void2.test", T, "v=spf1 a:n1.void.test a:n2.void.test +all", 0},
    {"lim.test", T,
     "v=spf1 a:l1.test a:l2.test a:l3.test a:l4.test a:l5.test a:l6.test a:l7.test a:l8.test "
     "a:l9.test a:l10.test a:l11.test -all",
     0},
    {"lim10.test", T,
     "v=spf1 a:l1.test a:l2.test a:l3.test a:l4.test a:l5.test a:l6.test a:l7.test a:l8.test "
     "a:l9.test a:l10.test +all",
     0},
    {"loop.test", T, "v=spf1 include:loop.test -all", 0},
    {"sender.test", T, "v=spf1 exists:%{l}.%{o}.users.test -all", 0},
    {"bob.sender.test.users.test", DNSQ_A, "127.0.0.2", 0},
};

static void add_l(struct zone *z, struct zrec *buf, size_t *n)
{
    for (int i = 1; i <= 11; i++) {
        static char names[11][16];
        snprintf(names[i - 1], sizeof names[i - 1], "l%d.test", i);
        buf[(*n)++] = (struct zrec){names[i - 1], DNSQ_A, "198.51.100.200", 0};
    }
    z->recs = buf;
    z->n = *n;
}

static enum spf_result run(struct zone *z, const char *ip, const char *domain, const char *sender,
                           struct spf_verdict *v)
{
    struct spf_request rq = {.domain = domain, .sender = sender, .helo = "mta.test",
                             .lookup = zone_lookup, .ctx = z};
    if (strchr(ip, ':')) {
        rq.family = AF_INET6;
        inet_pton(AF_INET6, ip, rq.ip);
    } else {
        rq.family = AF_INET;
        inet_pton(AF_INET, ip, rq.ip);
    }
    CHECK_EQ_INT(spf_check_host(&rq, v), 0);
    return v->result;
}

static void expect(struct zone *z, const char *ip, const char *domain, enum spf_result want,
                   const char *why_has)
{
    struct spf_verdict v;
    enum spf_result got = run(z, ip, domain, "alice@mx.test", &v);
    CHECK_EQ_STR(spf_result_name(got), spf_result_name(want));
    if (why_has && !strstr(v.explanation, why_has)) {
        check_failures++;
        fprintf(stderr, "%s/%s: explanation \"%s\" lacks \"%s\"\n", domain, ip, v.explanation,
                why_has);
    }
    if (got != want) fprintf(stderr, "  (%s for %s: %s)\n", domain, ip, v.explanation);
}

static void test_check_host(void)
{
    static struct zrec buf[HERALD_ARRAY_LEN(zone1) + 16];
    size_t n = HERALD_ARRAY_LEN(zone1);
    memcpy(buf, zone1, sizeof zone1);
    struct zone z = {0};
    add_l(&z, buf, &n);

    expect(&z, "192.0.2.1", "all.test", SPF_FAIL, "matched '-all' in the record of all.test");
    expect(&z, "192.0.2.55", "ip.test", SPF_PASS, "ip4:192.0.2.0/24");
    expect(&z, "192.0.3.55", "ip.test", SPF_FAIL, "-all");
    expect(&z, "2001:db8:ffff::1", "ip.test", SPF_PASS, "ip6:2001:db8::/32");
    expect(&z, "2001:db9::1", "ip.test", SPF_FAIL, NULL);
    expect(&z, "192.0.2.10", "a.test", SPF_PASS, "matched 'a'");
    expect(&z, "192.0.2.11", "a.test", SPF_FAIL, NULL);
    expect(&z, "198.51.100.77", "acidr.test", SPF_PASS, "/24//64");
    expect(&z, "198.51.101.77", "acidr.test", SPF_SOFTFAIL, "~all");
    expect(&z, "2001:db8:1:2:ffff::9", "acidr.test", SPF_PASS, NULL);
    expect(&z, "2001:db8:1:3::9", "acidr.test", SPF_SOFTFAIL, NULL);
    expect(&z, "203.0.113.2", "mx.test", SPF_PASS, "matched 'mx'");
    expect(&z, "203.0.113.3", "mx.test", SPF_FAIL, NULL);
    expect(&z, "192.0.2.7", "ptr.test", SPF_PASS, "matched 'ptr'");
    expect(&z, "192.0.2.8", "ptr.test", SPF_FAIL, NULL); /* PTR does not forward-confirm */
    expect(&z, "192.0.2.1", "ex.test", SPF_PASS, "exists:");
    expect(&z, "192.0.2.2", "ex.test", SPF_FAIL, NULL);
    expect(&z, "10.1.2.3", "inc.test", SPF_PASS, "via 'include:inc1.test' in the record of inc.test");
    expect(&z, "11.1.2.3", "inc.test", SPF_NEUTRAL, "?all");
    expect(&z, "10.1.2.3", "incnone.test", SPF_PERMERROR, "has no SPF record");
    expect(&z, "10.1.2.3", "red.test", SPF_PASS, "ip4:10.0.0.0/8");
    expect(&z, "11.1.2.3", "red.test", SPF_FAIL, NULL);
    expect(&z, "10.1.2.3", "redmiss.test", SPF_PERMERROR, "redirect=nospf.test");
    expect(&z, "10.1.2.3", "two.test", SPF_PERMERROR, "2 SPF records");
    expect(&z, "10.1.2.3", "other.test", SPF_NONE, "no SPF record");
    expect(&z, "10.1.2.3", "nosuch.test", SPF_NONE, NULL);
    expect(&z, "10.1.2.3", "bad.test", SPF_PERMERROR, "bad address");
    expect(&z, "10.1.2.3", "badmech.test", SPF_PERMERROR, "unknown mechanism");
    expect(&z, "10.1.2.3", "fail.test", SPF_TEMPERROR, "failed");
    expect(&z, "10.1.2.3", "incfail.test", SPF_TEMPERROR, "failed");
    expect(&z, "10.1.2.3", "soft.test", SPF_SOFTFAIL, NULL);
    expect(&z, "10.1.2.3", "neutral.test", SPF_NEUTRAL, "default neutral");
    expect(&z, "10.1.2.3", "mod.test", SPF_NEUTRAL, "?all");
    expect(&z, "10.1.2.3", "void.test", SPF_PERMERROR, "void DNS lookups");
    expect(&z, "10.1.2.3", "void2.test", SPF_PASS, NULL);
    expect(&z, "10.1.2.3", "lim.test", SPF_PERMERROR, "more than 10 DNS lookups");
    expect(&z, "10.1.2.3", "lim10.test", SPF_PASS, NULL);
    expect(&z, "10.1.2.3", "loop.test", SPF_PERMERROR, "more than 10 DNS lookups");
    expect(&z, "10.1.2.3", "not_a_domain", SPF_NONE, "not a valid domain");

    struct spf_verdict v;
    CHECK_EQ_INT(run(&z, "10.0.0.1", "sender.test", "bob@sender.test", &v), SPF_PASS);
    CHECK_EQ_INT(run(&z, "10.0.0.1", "sender.test", "carol@sender.test", &v), SPF_FAIL);
    /* No sender: the local part is postmaster. */
    CHECK_EQ_INT(run(&z, "10.0.0.1", "sender.test", "", &v), SPF_FAIL);
    CHECK_EQ_STR(v.record, "v=spf1 exists:%{l}.%{o}.users.test -all");
    run(&z, "10.1.2.3", "inc.test", NULL, &v);
    CHECK_EQ_INT(v.n_lookups, 2);
}

static void expand(const char *spec, const char *ip, const char *want)
{
    struct spf_request rq = {.domain = "email.example.com", .sender = "strong-bad@email.example.com",
                             .helo = "mx.example.org"};
    rq.family = strchr(ip, ':') ? AF_INET6 : AF_INET;
    inet_pton(rq.family, ip, rq.ip);
    struct hbuf out;
    hbuf_init(&out);
    int rc = spf_macro_expand(spec, strlen(spec), &rq, "email.example.com", false, &out);
    if (!want) {
        CHECK(rc < 0);
    } else {
        CHECK_EQ_INT(rc, 0);
        CHECK_EQ_STR(out.data ? out.data : "", want);
    }
    hbuf_free(&out);
}

/* The examples of RFC 7208 7.4. */
static void test_macros(void)
{
    expand("%{s}", "192.0.2.3", "strong-bad@email.example.com");
    expand("%{o}", "192.0.2.3", "email.example.com");
    expand("%{d}", "192.0.2.3", "email.example.com");
    expand("%{d4}", "192.0.2.3", "email.example.com");
    expand("%{d3}", "192.0.2.3", "email.example.com");
    expand("%{d2}", "192.0.2.3", "example.com");
    expand("%{d1}", "192.0.2.3", "com");
    expand("%{dr}", "192.0.2.3", "com.example.email");
    expand("%{d2r}", "192.0.2.3", "example.email");
    expand("%{l}", "192.0.2.3", "strong-bad");
    expand("%{l-}", "192.0.2.3", "strong.bad");
    expand("%{lr}", "192.0.2.3", "strong-bad");
    expand("%{lr-}", "192.0.2.3", "bad.strong");
    expand("%{l1r-}", "192.0.2.3", "strong");
    expand("%{ir}.%{v}._spf.%{d2}", "192.0.2.3", "3.2.0.192.in-addr._spf.example.com");
    expand("%{lr-}.lp._spf.%{d2}", "192.0.2.3", "bad.strong.lp._spf.example.com");
    expand("%{lr-}.lp.%{ir}.%{v}._spf.%{d2}", "192.0.2.3",
           "bad.strong.lp.3.2.0.192.in-addr._spf.example.com");
    expand("%{ir}.%{v}.%{l1r-}.lp._spf.%{d2}", "192.0.2.3",
           "3.2.0.192.in-addr.strong.lp._spf.example.com");
    expand("%{d2}.trusted-domains.example.net", "192.0.2.3",
           "example.com.trusted-domains.example.net");
    expand("%{ir}.%{v}._spf.%{d2}", "2001:db8::cb01",
           "1.0.b.c.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6._spf.example.com");
    expand("%{h}", "192.0.2.3", "mx.example.org");
    expand("%%%_%-", "192.0.2.3", "% %20");
    expand("%{L}", "192.0.2.3", "strong-bad");
    expand("%{d0}", "192.0.2.3", NULL);
    expand("%{x}", "192.0.2.3", NULL);
    expand("%{d", "192.0.2.3", NULL);
    expand("%d", "192.0.2.3", NULL);
    expand("50%", "192.0.2.3", NULL);
    expand("%{c}", "192.0.2.3", NULL); /* only in exp= */
}

static void test_parse(void)
{
    struct spf_record r;
    char err[160];
    const char *ok[] = {
        "v=spf1",
        "v=spf1 -all",
        "V=SPF1 +A mx/24 Ptr:x.test ip4:1.2.3.4/32 ip6:::1/128 exists:%{i}.x.test ?all",
        "v=spf1 a:x.test//64 a//48 mx:y.test/0//0 redirect=z.test exp=e.%{d}",
        "v=spf1  include:a.test   ~all  ",
        "v=spf1 unknown-mod=whatever",
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(ok); i++) {
        int rc = spf_record_parse(ok[i], strlen(ok[i]), &r, err, sizeof err);
        if (rc != 0) fprintf(stderr, "should parse: %s (%s)\n", ok[i], err);
        CHECK_EQ_INT(rc, 0);
    }
    const char *bad[] = {
        "v=spf10", "v=spf1 ip4:1.2.3.4/33", "v=spf1 ip6:::1/129", "v=spf1 a/33",
        "v=spf1 a//129", "v=spf1 include", "v=spf1 include:", "v=spf1 all:x",
        "v=spf1 redirect=a.test redirect=b.test", "v=spf1 exp=a exp=b", "v=spf1 ip4:1.2.3",
        "v=spf1 exists:%{z}", "v=spf1 ~", "v=spf1 a:%", "v=spf1 mx/01",
    };
    for (size_t i = 0; i < HERALD_ARRAY_LEN(bad); i++) {
        int rc = spf_record_parse(bad[i], strlen(bad[i]), &r, err, sizeof err);
        if (rc == 0) fprintf(stderr, "should not parse: %s\n", bad[i]);
        CHECK(rc < 0);
    }
    const char *rec = "v=spf1 a:h.test/24//64 mx ip6:2001:db8::/32";
    CHECK_EQ_INT(spf_record_parse(rec, strlen(rec), &r, err, sizeof err), 0);
    CHECK_EQ_INT(r.n, 3);
    CHECK_EQ_INT(r.terms[0].cidr4, 24);
    CHECK_EQ_INT(r.terms[0].cidr6, 64);
    CHECK_EQ_INT(r.terms[0].spec_len, 6);
    CHECK_EQ_INT(r.terms[1].cidr4, 32);
    CHECK_EQ_INT(r.terms[2].cidr6, 32);
}

static void test_insert(void)
{
    struct hbuf b;
    hbuf_init(&b);
    CHECK_EQ_INT(spf_record_insert("v=spf1 mx include:x.test ~all", "ip4:127.0.0.1", &b), 0);
    CHECK_EQ_STR(b.data, "v=spf1 mx include:x.test ip4:127.0.0.1 ~all");
    spf_record_insert("v=spf1 a redirect=_spf.x.test", "ip4:127.0.0.1", &b);
    CHECK_EQ_STR(b.data, "v=spf1 a ip4:127.0.0.1 redirect=_spf.x.test");
    spf_record_insert("v=spf1 a ", "ip4:127.0.0.1", &b);
    CHECK_EQ_STR(b.data, "v=spf1 a ip4:127.0.0.1");
    hbuf_free(&b);
}

int main(void)
{
    test_parse();
    test_macros();
    test_check_host();
    test_insert();
    return check_report("test_spf");
}
