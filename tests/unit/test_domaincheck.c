/* check-domain's checks (herald/domaincheck.h) against an in-memory DNS:
 * MX present / absent / null, SPF for the egress IPs, the DKIM record
 * against a key generated here (its p= computed here with OpenSSL, not by
 * herald), DMARC found at the organisational domain from the Public Suffix
 * List, and adkim= / aspf= strictness changing the verdict. Also the
 * organisational-domain and alignment primitives of herald/align.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>

#include "check.h"
#include "herald/align.h"
#include "herald/config.h"
#include "herald/domaincheck.h"
#include "memdns.h"

#define T    DNSQ_TXT
#define FROM "mail.clinic.co.uk"

static char dir[] = "/tmp/herald-dcheck-XXXXXX";
static char key_path[300];
static char rec_good[200];  /* the DKIM record of the tenant's key */
static char rec_other[200]; /* a record for some other key */

/* ---- the zone a scenario answers from ---- */

static struct zrec recs[64];
static struct zone zone;

static void z_reset(void)
{
    zone = (struct zone){.recs = recs};
}

static void z_add(const char *name, int type, const char *value, uint16_t pref)
{
    if (zone.n < HERALD_ARRAY_LEN(recs)) recs[zone.n++] = (struct zrec){name, type, value, pref};
}

/* A domain that gets everything right for the default pool. */
static void z_base(void)
{
    z_reset();
    z_add(FROM, DNSQ_MX, "mx.clinic.co.uk", 10);
    z_add("mx.clinic.co.uk", DNSQ_A, "198.51.100.25", 0);
    z_add(FROM, T, "v=spf1 ip4:192.0.2.10 ip4:192.0.2.11 -all", 0);
    z_add("10.2.0.192.in-addr.arpa", DNSQ_PTR, "mta.herald.test", 0);
    z_add("11.2.0.192.in-addr.arpa", DNSQ_PTR, "mta.herald.test", 0);
    z_add("mta.herald.test", DNSQ_A, "192.0.2.10", 0);
    z_add("mta.herald.test", DNSQ_A, "192.0.2.11", 0);
}

/* ---- config and key ---- */

static struct config *cfg;

static void make_key(EVP_PKEY **out, char *rec, size_t rec_len)
{
    EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    unsigned char raw[32];
    size_t n = sizeof raw;
    unsigned char b64[64];
    CHECK(pk && EVP_PKEY_get_raw_public_key(pk, raw, &n) == 1 && n == 32);
    EVP_EncodeBlock(b64, raw, (int)n);
    snprintf(rec, rec_len, "v=DKIM1; k=ed25519; p=%s", b64);
    *out = pk;
}

static int setup(void)
{
    if (!mkdtemp(dir)) return -1;
    EVP_PKEY *good, *other;
    make_key(&good, rec_good, sizeof rec_good);
    make_key(&other, rec_other, sizeof rec_other);
    EVP_PKEY_free(other);
    snprintf(key_path, sizeof key_path, "%s/s1.pem", dir);
    FILE *f = fopen(key_path, "w");
    if (!f) return -1;
    PEM_write_PKCS8PrivateKey(f, good, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    EVP_PKEY_free(good);
    chmod(key_path, 0600);

    /* exact: d= the From domain; org: d= the organisational domain;
     * org_rw: the same with from_fallback rewrite; nokey: no DKIM. */
    char yaml[2048], err[512];
    snprintf(
        yaml, sizeof yaml,
        "engine: { ehlo: mta.herald.test }\n"
        "egress: { default: [192.0.2.10, 192.0.2.11] }\n"
        "sender: { address: notify@platform.test }\n"
        "tenants:\n"
        "  exact:\n"
        "    from: desk@" FROM "\n"
        "    dkim: { selector: s1, key: %s, algorithm: ed25519-sha256 }\n"
        "  org:\n"
        "    from: desk@" FROM "\n"
        "    dkim: { selector: s1, key: %s, algorithm: ed25519-sha256, domain: clinic.co.uk }\n"
        "  org_rw:\n"
        "    from: desk@" FROM "\n"
        "    from_fallback: rewrite\n"
        "    dkim: { selector: s1, key: %s, algorithm: ed25519-sha256, domain: clinic.co.uk }\n"
        "  nokey:\n"
        "    from: desk@" FROM "\n",
        key_path, key_path, key_path);
    if (config_load_string("t.yaml", yaml, strlen(yaml), &cfg, err, sizeof err) < 0 ||
        config_load_keys(cfg, err, sizeof err) < 0) {
        fprintf(stderr, "config: %s\n", err);
        return -1;
    }
    return 0;
}

static struct dcheck_result res;

/* Run every check for FROM as tenant (envelope NULL: herald's own). */
static void run(const char *tenant, const char *envelope)
{
    dcheck_result_free(&res);
    struct dcheck_request rq = {.cfg = cfg,
                                .tenant = config_tenant(cfg, tenant),
                                .domain = FROM,
                                .envelope_domain = envelope,
                                .lookup = zone_lookup,
                                .ctx = &zone};
    CHECK(rq.tenant != NULL);
    CHECK_EQ_INT(dcheck_run(&rq, &res), 0);
}

static const struct dcheck_item *item(enum dcheck_kind k)
{
    for (size_t i = 0; i < res.n; i++)
        if (res.items[i].kind == k) return &res.items[i];
    return NULL;
}

static int verdict(enum dcheck_kind k)
{
    const struct dcheck_item *it = item(k);
    return it ? (int)it->verdict : -1;
}

static bool reason_has(enum dcheck_kind k, const char *s)
{
    const struct dcheck_item *it = item(k);
    return it && strstr(it->reason, s) != NULL;
}

static bool fix_has(enum dcheck_kind k, const char *s)
{
    const struct dcheck_item *it = item(k);
    return it && it->fix && strstr(it->fix, s) != NULL;
}

/* ---- tests ---- */

static void test_primitives(void)
{
    CHECK_EQ_STR(align_org_domain("mail.clinic.co.uk"), "clinic.co.uk");
    CHECK_EQ_STR(align_org_domain("clinic.co.uk"), "clinic.co.uk");
    CHECK_EQ_STR(align_org_domain("co.uk"), "co.uk");
    CHECK_EQ_STR(align_org_domain("a.b.example.com"), "example.com");
    CHECK_EQ_STR(align_org_domain("MAIL.Clinic.CO.UK"), "Clinic.CO.UK");
    CHECK_EQ_STR(align_org_domain("good.test"), "good.test");
    CHECK_EQ_STR(align_org_domain("localhost"), "localhost");
    /* The last-two-labels shortcut made every .co.uk domain one org. */
    CHECK(!align_is_aligned("clinic.co.uk", "other.co.uk", false));
    CHECK(align_is_aligned(FROM, "clinic.co.uk", false));
    CHECK(!align_is_aligned(FROM, "clinic.co.uk", true));
    CHECK(align_is_aligned(FROM, "MAIL.clinic.co.uk", true));
}

static void test_mx(void)
{
    z_base();
    run("exact", NULL);
    CHECK_EQ_INT(verdict(DCHECK_MX), DCHECK_PASS);
    CHECK(reason_has(DCHECK_MX, "mx.clinic.co.uk(10) [198.51.100.25]"));

    /* no MX, an address: implicit MX */
    z_reset();
    z_add(FROM, DNSQ_A, "198.51.100.26", 0);
    run("exact", NULL);
    CHECK_EQ_INT(verdict(DCHECK_MX), DCHECK_WARN);
    CHECK(reason_has(DCHECK_MX, "implicit MX"));

    /* no MX, no address (the name exists: it has a TXT) */
    z_reset();
    z_add(FROM, T, "v=spf1 -all", 0);
    run("exact", NULL);
    CHECK_EQ_INT(verdict(DCHECK_MX), DCHECK_FAIL);
    CHECK(reason_has(DCHECK_MX, "no MX and no address"));

    z_reset();
    run("exact", NULL);
    CHECK_EQ_INT(verdict(DCHECK_MX), DCHECK_FAIL);
    CHECK(reason_has(DCHECK_MX, "NXDOMAIN"));

    z_reset();
    z_add(FROM, DNSQ_MX, "", 0);
    run("exact", NULL);
    CHECK_EQ_INT(verdict(DCHECK_MX), DCHECK_WARN);
    CHECK(reason_has(DCHECK_MX, "null MX"));
}

static void test_spf(void)
{
    z_base();
    run("exact", NULL);
    CHECK_EQ_INT(verdict(DCHECK_SPF), DCHECK_PASS);
    CHECK(reason_has(DCHECK_SPF, "192.0.2.10 192.0.2.11"));

    z_base();
    recs[2].value = "v=spf1 ip4:192.0.2.10 -all";
    run("exact", NULL);
    CHECK_EQ_INT(verdict(DCHECK_SPF), DCHECK_FAIL);
    CHECK(reason_has(DCHECK_SPF, "1 of 2 egress IPs not authorised"));
    CHECK(fix_has(DCHECK_SPF, "\"v=spf1 ip4:192.0.2.10 ip4:192.0.2.11 -all\""));

    z_base();
    recs[2].value = "not spf";
    run("exact", NULL);
    CHECK_EQ_INT(verdict(DCHECK_SPF), DCHECK_FAIL);
    CHECK(fix_has(DCHECK_SPF, "\"v=spf1 ip4:192.0.2.10 ip4:192.0.2.11 -all\""));
}

static void test_dkim(void)
{
    z_base();
    z_add("s1._domainkey." FROM, T, rec_good, 0);
    run("exact", NULL);
    CHECK_EQ_INT(verdict(DCHECK_DKIM), DCHECK_PASS);
    CHECK(reason_has(DCHECK_DKIM, "s1._domainkey." FROM " matches"));

    z_base();
    z_add("s1._domainkey." FROM, T, rec_other, 0);
    run("exact", NULL);
    CHECK_EQ_INT(verdict(DCHECK_DKIM), DCHECK_FAIL);
    CHECK(reason_has(DCHECK_DKIM, "differs from the key herald signs with"));
    CHECK(fix_has(DCHECK_DKIM, rec_good));

    z_base();
    run("exact", NULL);
    CHECK_EQ_INT(verdict(DCHECK_DKIM), DCHECK_FAIL);
    CHECK(reason_has(DCHECK_DKIM, "no DKIM record at s1._domainkey." FROM));
    CHECK(fix_has(DCHECK_DKIM, rec_good));

    /* A key with domain: is looked up under that d=. */
    z_base();
    z_add("s1._domainkey.clinic.co.uk", T, rec_good, 0);
    run("org", NULL);
    CHECK_EQ_INT(verdict(DCHECK_DKIM), DCHECK_PASS);

    run("nokey", NULL);
    CHECK_EQ_INT(verdict(DCHECK_DKIM), DCHECK_WARN);
}

static void test_dmarc_org_domain(void)
{
    /* Only at the organisational domain: found there via the PSL. */
    z_base();
    z_add("_dmarc.clinic.co.uk", T, "v=DMARC1; p=reject", 0);
    z_add("_dmarc.co.uk", T, "v=DMARC1; p=none; adkim=s", 0);
    run("nokey", NULL);
    CHECK_EQ_STR(res.dmarc_name, "_dmarc.clinic.co.uk");
    CHECK(reason_has(DCHECK_DMARC, "_dmarc.clinic.co.uk (p=reject"));
    CHECK_EQ_INT(verdict(DCHECK_DMARC), DCHECK_PASS); /* SPF passes, envelope = From */

    /* Never at the public suffix. */
    z_base();
    z_add("_dmarc.co.uk", T, "v=DMARC1; p=reject", 0);
    run("nokey", NULL);
    CHECK_EQ_STR(res.dmarc_name, "");
    CHECK_EQ_INT(verdict(DCHECK_DMARC), DCHECK_WARN);
    CHECK(reason_has(DCHECK_DMARC, "no DMARC record at _dmarc." FROM " or _dmarc.clinic.co.uk"));

    /* The domain's own record wins over the organisational one. */
    z_base();
    z_add("_dmarc." FROM, T, "v=DMARC1; p=none", 0);
    z_add("_dmarc.clinic.co.uk", T, "v=DMARC1; p=reject", 0);
    run("nokey", NULL);
    CHECK_EQ_STR(res.dmarc_name, "_dmarc." FROM);
}

/* DKIM is the only way to align here: SPF does not pass. */
static void z_dkim_only(const char *dmarc)
{
    z_base();
    recs[2].value = "v=spf1 -all";
    z_add("s1._domainkey.clinic.co.uk", T, rec_good, 0);
    z_add("s1._domainkey." FROM, T, rec_good, 0);
    z_add("_dmarc.clinic.co.uk", T, dmarc, 0);
}

static void test_adkim(void)
{
    /* d=clinic.co.uk, From mail.clinic.co.uk */
    z_dkim_only("v=DMARC1; p=reject; adkim=r");
    run("org", NULL);
    CHECK(res.aligned_dkim);
    CHECK_EQ_INT(verdict(DCHECK_DMARC), DCHECK_PASS);
    CHECK(reason_has(DCHECK_DMARC, "aligns via DKIM (d=clinic.co.uk"));

    z_dkim_only("v=DMARC1; p=reject; adkim=s");
    run("org", NULL);
    CHECK(!res.aligned_dkim);
    CHECK_EQ_INT(verdict(DCHECK_DMARC), DCHECK_FAIL);
    CHECK(reason_has(DCHECK_DMARC, "adkim=s"));

    /* d= the From domain aligns in both modes. */
    z_dkim_only("v=DMARC1; p=reject; adkim=s");
    run("exact", NULL);
    CHECK(res.aligned_dkim);
    CHECK_EQ_INT(verdict(DCHECK_DMARC), DCHECK_PASS);

    /* Relaxed alignment the engine does not trust: from_fallback rewrite
     * would still rewrite, and check-domain says so. */
    z_dkim_only("v=DMARC1; p=reject; adkim=r");
    run("org_rw", NULL);
    CHECK(res.aligned_dkim);
    CHECK_EQ_INT(verdict(DCHECK_DMARC), DCHECK_WARN);
    CHECK(reason_has(DCHECK_DMARC, "rewrite its From"));
}

static void test_aspf(void)
{
    /* The envelope in a subdomain of the From's organisational domain. */
    z_base();
    z_add("bounce.clinic.co.uk", T, "v=spf1 ip4:192.0.2.0/24 -all", 0);
    z_add("bounce.other.test", T, "v=spf1 ip4:192.0.2.0/24 -all", 0);
    z_add("_dmarc.clinic.co.uk", T, "v=DMARC1; p=reject; aspf=r", 0);
    run("nokey", "bounce.clinic.co.uk");
    CHECK_EQ_INT(verdict(DCHECK_SPF), DCHECK_PASS);
    CHECK(reason_has(DCHECK_SPF, "for bounce.clinic.co.uk"));
    CHECK(res.aligned_spf);
    CHECK_EQ_INT(verdict(DCHECK_DMARC), DCHECK_PASS);

    run("nokey", "bounce.other.test");
    CHECK_EQ_INT(verdict(DCHECK_SPF), DCHECK_PASS);
    CHECK(!res.aligned_spf);
    CHECK_EQ_INT(verdict(DCHECK_DMARC), DCHECK_FAIL);

    recs[zone.n - 1].value = "v=DMARC1; p=reject; aspf=s";
    run("nokey", "bounce.clinic.co.uk");
    CHECK(!res.aligned_spf);
    CHECK_EQ_INT(verdict(DCHECK_DMARC), DCHECK_FAIL);
    CHECK(reason_has(DCHECK_DMARC, "aspf=s"));

    /* herald's own envelope is the From address: strict holds. */
    run("nokey", NULL);
    CHECK(res.aligned_spf);
    CHECK_EQ_INT(verdict(DCHECK_DMARC), DCHECK_PASS);
}

static void test_egress(void)
{
    z_base();
    run("exact", NULL);
    size_t n_ptr = 0;
    for (size_t i = 0; i < res.n; i++)
        if (res.items[i].kind == DCHECK_PTR) {
            n_ptr++;
            CHECK_EQ_INT(res.items[i].verdict, DCHECK_PASS);
        }
    CHECK_EQ_INT(n_ptr, 2);
    CHECK(item(DCHECK_DNSBL) == NULL);                      /* no dnsbl: zones configured */
    CHECK_EQ_INT(dcheck_result_verdict(&res), DCHECK_FAIL); /* no DKIM record */
    CHECK_EQ_INT(res.n_fail, 1);
}

int main(void)
{
    if (setup() < 0) {
        fprintf(stderr, "test_domaincheck: setup failed\n");
        return 1;
    }
    test_primitives();
    test_mx();
    test_spf();
    test_dkim();
    test_dmarc_org_domain();
    test_adkim();
    test_aspf();
    test_egress();
    dcheck_result_free(&res);
    config_free(cfg);
    unlink(key_path);
    rmdir(dir);
    return check_report("test_domaincheck");
}
