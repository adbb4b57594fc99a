/* DKIM: relaxed canonicalisation against hand-computed vectors (RFC 6376
 * 3.4.6 among them), key file checks (permissions, type, size, PEM forms),
 * config_load_keys positions, the shape of the signature field (tags,
 * h= with the extra From, folding within 78 columns) and a signature that
 * verifies against the public key with OpenSSL, over canonical data built
 * here by hand rather than by the module. The independent verifiers
 * (python3-dkim, OpenDKIM) run in tests/integration/test_dkim.py. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "check.h"
#include "herald/config.h"
#include "herald/dkim.h"
#include "herald/job.h"

static char dir[] = "/tmp/herald-dkim-XXXXXX";

static void check_header(const char *in, const char *want)
{
    struct hbuf b;
    hbuf_init(&b);
    CHECK_EQ_INT(dkim_canon_header(&b, in, strlen(in)), 0);
    CHECK_EQ_STR(b.data ? b.data : "", want);
    hbuf_free(&b);
}

static void check_body(const char *in, size_t len, const char *want)
{
    struct hbuf b;
    hbuf_init(&b);
    CHECK_EQ_INT(dkim_canon_body(&b, in, len), 0);
    CHECK_EQ_INT(b.len, strlen(want));
    CHECK_EQ_STR(b.data ? b.data : "", want);
    hbuf_free(&b);
}

static void test_canon(void)
{
    /* RFC 6376 3.4.6: "A: X", "B : Y<HTAB>" folded "<HTAB>Z<SP><SP>". */
    check_header("A: X\r\n", "a:X\r\n");
    check_header("B : Y\t\r\n\tZ  \r\n", "b:Y Z\r\n");
    /* and its body " C \r\nD \t E\r\n\r\n\r\n" */
    const char *rfc_body = " C \r\nD \t E\r\n\r\n\r\n";
    check_body(rfc_body, strlen(rfc_body), " C\r\nD E\r\n");

    check_header("SUBJect:   AbC  dEf\t", "subject:AbC dEf\r\n");
    check_header("To:\r\n  <a@b.test>", "to:<a@b.test>\r\n");
    check_header("X-Empty:", "x-empty:\r\n");
    check_header("X-Empty:   \r\n", "x-empty:\r\n");
    check_header("List-Unsubscribe: <https://u.test/x>,\r\n <mailto:u@u.test>\r\n",
                 "list-unsubscribe:<https://u.test/x>, <mailto:u@u.test>\r\n");
    check_header("Subject: =?utf-8?q?a?=\r\n =?utf-8?q?b?=",
                 "subject:=?utf-8?q?a?= =?utf-8?q?b?=\r\n");

    check_body("", 0, "");
    check_body("\r\n", 2, "");
    check_body("\r\n\r\n \t \r\n", 9, "");
    check_body("abc", 3, "abc\r\n");
    check_body("abc  \t", 6, "abc\r\n");
    check_body("a\r\n\r\nb\r\n\r\n", 10, "a\r\n\r\nb\r\n");
    check_body("a\r\n \r\nb", 7, "a\r\n\r\nb\r\n");
    check_body("\tlead\t \ttab", 11, " lead tab\r\n");
    /* bare LF and CR are line breaks, as the dot-stuffer makes them */
    check_body("a\nb\rc\r\r\nd\n\n", 11, "a\r\nb\r\nc\r\n\r\nd\r\n");
    check_body(".dot\r\n..two\r\n", 13, ".dot\r\n..two\r\n");
    /* a long line goes through the 4 KiB sink in pieces */
    static char longl[10001];
    memset(longl, 'x', 10000);
    longl[2000] = ' ';
    longl[2001] = ' ';
    struct hbuf b;
    hbuf_init(&b);
    CHECK_EQ_INT(dkim_canon_body(&b, longl, 10000), 0);
    CHECK_EQ_INT(b.len, 10000 - 1 + 2);
    CHECK(b.len > 2001 && b.data[2000] == ' ' && b.data[2001] == 'x');
    hbuf_free(&b);
}

static char *write_pem(const char *name, EVP_PKEY *pk, mode_t mode)
{
    static char paths[16][256];
    static int n;
    char *path = paths[n++ % 16];
    snprintf(path, 256, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return path;
    if (!pk)
        fputs("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n", f);
    else
        PEM_write_PKCS8PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    chmod(path, mode);
    return path;
}

/* PKCS#1 "RSA PRIVATE KEY" wants the traditional writer. */
static char *write_rsa_pkcs1(const char *name, EVP_PKEY *pk)
{
    static char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f) return path;
    BIO *bio = BIO_new_fp(f, BIO_NOCLOSE);
    if (bio) PEM_write_bio_PrivateKey_traditional(bio, pk, NULL, NULL, 0, NULL, NULL);
    BIO_free(bio);
    fclose(f);
    chmod(path, 0600);
    return path;
}

static EVP_PKEY *rsa2048, *rsa512, *ed;

static void test_keys(void)
{
    struct dkim_key *k = NULL;
    char why[400];
    const char *p = write_pem("rsa.pem", rsa2048, 0600);
    CHECK_EQ_INT(dkim_key_load(p, DKIM_ALG_RSA_SHA256, &k, why, sizeof why), 0);
    CHECK(k && dkim_key_bits(k) == 2048 && dkim_key_alg(k) == DKIM_ALG_RSA_SHA256);
    struct hbuf txt;
    hbuf_init(&txt);
    CHECK_EQ_INT(dkim_key_txt(k, &txt), 0);
    CHECK(txt.data && strncmp(txt.data, "v=DKIM1; k=rsa; p=MIIBIjAN", 26) == 0);
    hbuf_free(&txt);
    dkim_key_free(k);

    p = write_rsa_pkcs1("rsa1.pem", rsa2048);
    FILE *f = fopen(p, "r");
    char line[64] = "";
    if (f) {
        CHECK(fgets(line, sizeof line, f) != NULL);
        fclose(f);
    }
    CHECK_EQ_STR(line, "-----BEGIN RSA PRIVATE KEY-----\n");
    CHECK_EQ_INT(dkim_key_load(p, DKIM_ALG_RSA_SHA256, &k, why, sizeof why), 0);
    dkim_key_free(k);

    p = write_pem("ed.pem", ed, 0400);
    CHECK_EQ_INT(dkim_key_load(p, DKIM_ALG_ED25519_SHA256, &k, why, sizeof why), 0);
    hbuf_init(&txt);
    CHECK(k && dkim_key_txt(k, &txt) == 0 && txt.len == strlen("v=DKIM1; k=ed25519; p=") + 44);
    hbuf_free(&txt);
    dkim_key_free(k);

    /* refusals */
    CHECK_EQ_INT(dkim_key_load(p, DKIM_ALG_RSA_SHA256, &k, why, sizeof why), -HERR_CONFIG);
    CHECK(strstr(why, "is an Ed25519 key, algorithm rsa-sha256 needs an RSA key") != NULL);
    CHECK(k == NULL);
    p = write_pem("rsa-as-ed.pem", rsa2048, 0600);
    CHECK_EQ_INT(dkim_key_load(p, DKIM_ALG_ED25519_SHA256, &k, why, sizeof why), -HERR_CONFIG);
    CHECK(strstr(why, "is an RSA key, algorithm ed25519-sha256 needs an Ed25519 key") != NULL);
    mode_t loose[] = {0640, 0604, 0620, 0602, 0660, 0644};
    for (size_t i = 0; i < HERALD_ARRAY_LEN(loose); i++) {
        p = write_pem("loose.pem", rsa2048, loose[i]);
        CHECK_EQ_INT(dkim_key_load(p, DKIM_ALG_RSA_SHA256, &k, why, sizeof why), -HERR_CONFIG);
        CHECK(strstr(why, "accessible to group or others") != NULL);
    }
    p = write_pem("small.pem", rsa512, 0600);
    CHECK_EQ_INT(dkim_key_load(p, DKIM_ALG_RSA_SHA256, &k, why, sizeof why), -HERR_CONFIG);
    CHECK(strstr(why, "has 512 bits; RSA keys need at least 1024") != NULL);
    p = write_pem("junk.pem", NULL, 0600);
    CHECK_EQ_INT(dkim_key_load(p, DKIM_ALG_RSA_SHA256, &k, why, sizeof why), -HERR_CONFIG);
    CHECK(strstr(why, "is not a PEM private key") != NULL);
    char missing[300];
    snprintf(missing, sizeof missing, "%s/none.pem", dir);
    CHECK_EQ_INT(dkim_key_load(missing, DKIM_ALG_RSA_SHA256, &k, why, sizeof why), -ENOENT);
    CHECK(strstr(why, "cannot open DKIM key") != NULL);
    CHECK_EQ_INT(dkim_key_load(dir, DKIM_ALG_RSA_SHA256, &k, why, sizeof why), -HERR_CONFIG);
    CHECK(strstr(why, "not a regular file") != NULL);
}

static void test_config_keys(void)
{
    char yaml[2048], path[300], err[512];
    const char *good = write_pem("cfg-rsa.pem", rsa2048, 0600);
    const char *bad = write_pem("cfg-loose.pem", ed, 0644);
    snprintf(yaml, sizeof yaml,
             "tenants:\n"
             "  acme:\n"
             "    from: a@acme.test\n"
             "    dkim:\n"
             "      - { selector: s1, key: %s }\n"
             "      - { selector: s2, algorithm: ed25519-sha256, key: %s }\n",
             good, bad);
    snprintf(path, sizeof path, "%s/t.yaml", dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(yaml, f);
        fclose(f);
    }
    struct config *cfg = NULL;
    CHECK_EQ_INT(config_load(path, &cfg, err, sizeof err), -HERR_CONFIG);
    CHECK(cfg == NULL);
    char want[600];
    snprintf(want, sizeof want,
             "%s:6:57: DKIM key %s is accessible to group or others (mode 0644); chmod 600 it",
             path, bad);
    CHECK_EQ_STR(err, want);

    chmod(bad, 0600);
    CHECK_EQ_INT(config_load(path, &cfg, err, sizeof err), 0);
    if (cfg) {
        const struct cfg_tenant *t = config_tenant(cfg, "acme");
        CHECK(t && t->n_dkim == 2 && t->dkim[0].loaded && t->dkim[1].loaded);
        CHECK(t && dkim_key_alg(t->dkim[1].loaded) == DKIM_ALG_ED25519_SHA256);
        config_free(cfg);
    }
    /* config_load_string reads no files; config_load_keys does. */
    CHECK_EQ_INT(config_load_string(path, yaml, strlen(yaml), &cfg, err, sizeof err), 0);
    if (cfg) {
        CHECK(!cfg->tenants[0].dkim[0].loaded);
        CHECK_EQ_INT(config_load_keys(cfg, err, sizeof err), 0);
        CHECK(cfg->tenants[0].dkim[0].loaded != NULL);
        config_free(cfg);
    }
}

/* Writes yaml to DIR/name and loads it with config_load (keys included). */
static int load_file(const char *name, const char *yaml, struct config **cfg, char *path,
                     size_t pathlen, char *err, size_t errlen)
{
    snprintf(path, pathlen, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(yaml, f);
        fclose(f);
    }
    return config_load(path, cfg, err, errlen);
}

/* A key without `algorithm:` signs with its own type's algorithm; one that
 * is written must match the key, and a mismatch points at the key value. */
static void test_config_alg_from_key(void)
{
    char yaml[1024], path[300], err[512], want[800];
    const char *edp = write_pem("auto-ed.pem", ed, 0600);
    const char *rsap = write_pem("auto-rsa.pem", rsa2048, 0600);
    struct config *cfg = NULL;

    snprintf(yaml, sizeof yaml,
             "tenants:\n  acme:\n    from: a@acme.test\n"
             "    dkim: { selector: s1, key: %s }\n",
             edp);
    CHECK_EQ_INT(load_file("auto-ed.yaml", yaml, &cfg, path, sizeof path, err, sizeof err), 0);
    if (cfg) {
        const struct cfg_dkim *d = &cfg->tenants[0].dkim[0];
        CHECK(d->loaded && dkim_key_alg(d->loaded) == DKIM_ALG_ED25519_SHA256);
        CHECK_EQ_STR(d->algorithm, "ed25519-sha256");
        CHECK(!d->algorithm_given);
        config_free(cfg);
    } else {
        fprintf(stderr, "%s\n", err);
    }

    snprintf(yaml, sizeof yaml,
             "tenants:\n  acme:\n    from: a@acme.test\n"
             "    dkim: { selector: s1, key: %s }\n",
             rsap);
    CHECK_EQ_INT(load_file("auto-rsa.yaml", yaml, &cfg, path, sizeof path, err, sizeof err), 0);
    if (cfg) {
        const struct cfg_dkim *d = &cfg->tenants[0].dkim[0];
        CHECK(d->loaded && dkim_key_alg(d->loaded) == DKIM_ALG_RSA_SHA256);
        CHECK_EQ_STR(d->algorithm, "rsa-sha256");
        config_free(cfg);
    }

    /* Without the key files (config_load_string) the algorithm is not known
     * yet; config_load_keys fills it in. */
    snprintf(yaml, sizeof yaml,
             "tenants:\n  acme:\n    from: a@acme.test\n"
             "    dkim: { selector: s1, key: %s }\n",
             edp);
    CHECK_EQ_INT(config_load_string("s.yaml", yaml, strlen(yaml), &cfg, err, sizeof err), 0);
    if (cfg) {
        CHECK(cfg->tenants[0].dkim[0].algorithm == NULL);
        CHECK_EQ_INT(config_load_keys(cfg, err, sizeof err), 0);
        CHECK_EQ_STR(cfg->tenants[0].dkim[0].algorithm, "ed25519-sha256");
        config_free(cfg);
    }

    /* Written and contradicting the key: refused at the key's position. */
    snprintf(yaml, sizeof yaml,
             "tenants:\n  acme:\n    from: a@acme.test\n"
             "    dkim: { selector: s1, algorithm: rsa-sha256, key: %s }\n",
             edp);
    CHECK_EQ_INT(load_file("mismatch.yaml", yaml, &cfg, path, sizeof path, err, sizeof err),
                 -HERR_CONFIG);
    CHECK(cfg == NULL);
    snprintf(want, sizeof want,
             "%s:4:55: DKIM key %s is an Ed25519 key, algorithm rsa-sha256 needs an RSA key", path,
             edp);
    CHECK_EQ_STR(err, want);

    /* Written and matching: accepted and kept as written. */
    snprintf(yaml, sizeof yaml,
             "tenants:\n  acme:\n    from: a@acme.test\n"
             "    dkim: { selector: s1, algorithm: ed25519-sha256, key: %s }\n",
             edp);
    CHECK_EQ_INT(load_file("match.yaml", yaml, &cfg, path, sizeof path, err, sizeof err), 0);
    if (cfg) {
        CHECK(cfg->tenants[0].dkim[0].algorithm_given);
        CHECK(dkim_key_alg(cfg->tenants[0].dkim[0].loaded) == DKIM_ALG_ED25519_SHA256);
        config_free(cfg);
    }

    /* A key DKIM has no algorithm for is refused even without `algorithm:`. */
    EVP_PKEY *ec = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
    CHECK(ec != NULL);
    if (ec) {
        struct dkim_key *k = NULL;
        char why[400];
        const char *ecp = write_pem("auto-ec.pem", ec, 0600);
        CHECK_EQ_INT(dkim_key_load_any(ecp, &k, why, sizeof why), -HERR_CONFIG);
        CHECK(k == NULL && strstr(why, "is an EC key; DKIM signs with RSA") != NULL);
        CHECK_EQ_INT(dkim_key_load_any(edp, &k, why, sizeof why), 0);
        CHECK(k && dkim_key_alg(k) == DKIM_ALG_ED25519_SHA256);
        dkim_key_free(k);
        EVP_PKEY_free(ec);
    }
}

/* The field's tag value (unfolded, FWS removed), or "" when absent. */
static void tag_of(const char *field, const char *tag, char *out, size_t outlen)
{
    char flat[4096];
    size_t n = 0;
    for (const char *p = strchr(field, ':') + 1; *p && n + 1 < sizeof flat; p++)
        if (*p != '\r' && *p != '\n' && *p != ' ' && *p != '\t') flat[n++] = *p;
    flat[n] = '\0';
    out[0] = '\0';
    char key[16];
    snprintf(key, sizeof key, "%s=", tag);
    for (char *s = flat; s && *s; s = strchr(s, ';') ? strchr(s, ';') + 1 : NULL) {
        if (strncmp(s, key, strlen(key)) == 0) {
            const char *v = s + strlen(key);
            size_t len = strcspn(v, ";");
            snprintf(out, outlen, "%.*s", (int)len, v);
            return;
        }
    }
}

static void b64dec(const char *in, unsigned char *out, size_t *len)
{
    int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)strlen(in));
    size_t pad = 0;
    for (size_t l = strlen(in); l > 0 && in[l - 1] == '='; l--) pad++;
    *len = n < 0 ? 0 : (size_t)n - pad;
}

static const char MSG[] =
    "Date: Sun, 22 Nov 2026 10:00:00 +0000\r\n"
    "From: Acme <reminders@acme.test>\r\n"
    "To: sam@example.test\r\n"
    "Subject: Hi  there\r\n"
    "Message-ID: <x@acme.test>\r\n"
    "MIME-Version: 1.0\r\n"
    "List-Unsubscribe: <https://u.test/1>\r\n"
    "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "X-Not-Signed: 1\r\n"
    "\r\n"
    "Hello  \r\n.dot\r\n\r\n";

/* Canonical header data written out by hand for MSG and the h= order. */
static const char CANON_HDRS[] = "from:Acme <reminders@acme.test>\r\n"
                                 "to:sam@example.test\r\n"
                                 "subject:Hi there\r\n"
                                 "date:Sun, 22 Nov 2026 10:00:00 +0000\r\n"
                                 "message-id:<x@acme.test>\r\n"
                                 "mime-version:1.0\r\n"
                                 "content-type:text/plain; charset=utf-8\r\n"
                                 "list-unsubscribe:<https://u.test/1>\r\n"
                                 "list-unsubscribe-post:List-Unsubscribe=One-Click\r\n";

static bool verify(EVP_PKEY *pub, const char *field, size_t field_len)
{
    char b[2048], bh[128];
    tag_of(field, "b", b, sizeof b);
    tag_of(field, "bh", bh, sizeof bh);
    /* the field with b= emptied, canonicalised by hand: this field is
     * folded only with CRLF + one SP, so unfolding is dropping the CRLFs */
    char data[8192];
    size_t n = (size_t)snprintf(data, sizeof data, "%s", CANON_HDRS);
    const char *bpos = strstr(field, "b=");
    while (bpos && bpos[-1] != ' ') bpos = strstr(bpos + 1, "b=");
    if (!bpos) return false;
    n += (size_t)snprintf(data + n, sizeof data - n, "dkim-signature:");
    for (const char *p = field + strlen("DKIM-Signature: "); p < bpos + 2; p++)
        if (*p != '\r' && *p != '\n') data[n++] = *p;
    (void)field_len;
    unsigned char sig[1024], body_md[32], want_md[64];
    size_t sig_len, want_len;
    b64dec(b, sig, &sig_len);
    b64dec(bh, want_md, &want_len);
    const char *canon_body = "Hello\r\n.dot\r\n";
    unsigned int md_len = 0;
    EVP_Digest(canon_body, strlen(canon_body), body_md, &md_len, EVP_sha256(), NULL);
    if (want_len != 32 || memcmp(body_md, want_md, 32) != 0) {
        fprintf(stderr, "body hash mismatch\n");
        return false;
    }
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok;
    if (EVP_PKEY_get_base_id(pub) == EVP_PKEY_ED25519) {
        unsigned char h[32];
        EVP_Digest(data, n, h, &md_len, EVP_sha256(), NULL);
        ok = EVP_DigestVerifyInit(ctx, NULL, NULL, NULL, pub) == 1 &&
             EVP_DigestVerify(ctx, sig, sig_len, h, 32) == 1;
    } else {
        ok = EVP_DigestVerifyInit(ctx, NULL, EVP_sha256(), NULL, pub) == 1 &&
             EVP_DigestVerify(ctx, sig, sig_len, (unsigned char *)data, n) == 1;
    }
    EVP_MD_CTX_free(ctx);
    return ok;
}

static void test_sign(void)
{
    char why[400];
    struct dkim_key *kr = NULL, *ke = NULL;
    CHECK_EQ_INT(dkim_key_load(write_pem("s-rsa.pem", rsa2048, 0600), DKIM_ALG_RSA_SHA256,
                               &kr, why, sizeof why),
                 0);
    CHECK_EQ_INT(dkim_key_load(write_pem("s-ed.pem", ed, 0600), DKIM_ALG_ED25519_SHA256,
                               &ke, why, sizeof why),
                 0);
    if (!kr || !ke) return;
    struct dkim_sig sigs[2] = {
        {.key = kr, .domain = "acme.test", .selector = "s1", .expire_s = 7 * 86400},
        {.key = ke, .domain = "acme.test", .selector = "e1"},
    };
    struct hbuf out;
    hbuf_init(&out);
    CHECK_EQ_INT(dkim_sign(sigs, 2, MSG, strlen(MSG), 1795341600, &out), 0);
    const char *second = out.data ? strstr(out.data + 1, "DKIM-Signature:") : NULL;
    CHECK(out.data && strncmp(out.data, "DKIM-Signature: v=1; a=rsa-sha256;", 34) == 0);
    CHECK(second && strncmp(second, "DKIM-Signature: v=1; a=ed25519-sha256;", 38) == 0);
    if (!second) return;
    /* every line within 78 columns, continuation lines start with SP */
    size_t col = 0;
    for (const char *p = out.data; *p; p++) {
        if (*p == '\r') {
            CHECK(p[1] == '\n');
            CHECK(col <= 78);
            if (p[2] && p[2] != 'D') CHECK(p[2] == ' ');
            col = 0;
            p++;
            continue;
        }
        col++;
    }
    char v[2048];
    size_t first_len = (size_t)(second - out.data);
    char *f1 = strndup(out.data, first_len);
    tag_of(f1, "h", v, sizeof v);
    CHECK_EQ_STR(v, "from:to:subject:date:message-id:mime-version:content-type:list-unsubscribe:"
                    "list-unsubscribe-post:from");
    tag_of(f1, "c", v, sizeof v);
    CHECK_EQ_STR(v, "relaxed/relaxed");
    tag_of(f1, "t", v, sizeof v);
    CHECK_EQ_STR(v, "1795341600");
    tag_of(f1, "x", v, sizeof v);
    CHECK_EQ_STR(v, "1795946400");
    tag_of(f1, "d", v, sizeof v);
    CHECK_EQ_STR(v, "acme.test");
    tag_of(second, "x", v, sizeof v);
    CHECK_EQ_STR(v, "");
    tag_of(second, "s", v, sizeof v);
    CHECK_EQ_STR(v, "e1");
    CHECK(verify(rsa2048, f1, first_len));
    CHECK(verify(ed, second, strlen(second)));
    /* the same check must fail on a flipped signature byte */
    char *bad = strdup(second);
    char *b = strstr(bad, " b=") + 3;
    *b = *b == 'A' ? 'B' : 'A';
    CHECK(!verify(ed, bad, strlen(bad)));
    free(bad);
    free(f1);

    /* Ed25519 and PKCS#1 v1.5 are deterministic: same input, same bytes. */
    struct hbuf again;
    hbuf_init(&again);
    CHECK_EQ_INT(dkim_sign(sigs, 2, MSG, strlen(MSG), 1795341600, &again), 0);
    CHECK(again.len == out.len && memcmp(again.data, out.data, out.len) == 0);
    hbuf_free(&again);

    /* bad input leaves out as it was */
    size_t before = out.len;
    CHECK_EQ_INT(dkim_sign(sigs, 1, "From: a@b\r\nno separator", 24, 1, &out), -HERR_MALFORMED);
    CHECK_EQ_INT(dkim_sign(sigs, 1, "To: a@b\r\n\r\nbody", 16, 1, &out), -HERR_MALFORMED);
    struct dkim_sig badd = {.key = kr, .domain = "acme test", .selector = "s1"};
    CHECK_EQ_INT(dkim_sign(&badd, 1, MSG, strlen(MSG), 1, &out), -HERR_MALFORMED);
    CHECK_EQ_INT(out.len, before);
    hbuf_free(&out);
    dkim_key_free(kr);
    dkim_key_free(ke);
}

static int fixed_random(void *buf, size_t len)
{
    memset(buf, 0x5a, len);
    return 0;
}

/* job_build with a signing tenant: the signature fields come first, the
 * body is still dot-stuffed after them, and an unloaded key fails. */
static void test_job_build(void)
{
    char why[400];
    struct dkim_key *k = NULL;
    CHECK_EQ_INT(dkim_key_load(write_pem("j-ed.pem", ed, 0600), DKIM_ALG_ED25519_SHA256,
                               &k, why, sizeof why),
                 0);
    struct cfg_dkim d = {.selector = "e1", .key = "j-ed.pem", .algorithm = "ed25519-sha256",
                         .loaded = k};
    struct cfg_tenant t = {.name = "acme", .from = "reminders@acme.test", .dkim = &d, .n_dkim = 1};
    struct job j;
    job_init(&j);
    job_set_random(fixed_random);
    j.to = "sam@example.test";
    j.subject = "Hi";
    j.text = ".leading dot\n";
    j.unsubscribe = "https://u.test/1";
    struct job_error err;
    CHECK_EQ_INT(job_build(&j, &t, "mta.test", 1795341600000LL, 0, &err), 0);
    CHECK(j.wire.data && strncmp(j.wire.data, "DKIM-Signature: v=1; a=ed25519-sha256;", 38) == 0);
    CHECK(j.wire.data && strstr(j.wire.data, " d=acme.test;") != NULL);
    CHECK(j.wire.data && strstr(j.wire.data, "\r\n..leading dot\r\n") != NULL);
    CHECK(j.wire.data && strstr(j.wire.data, "\r\nList-Unsubscribe-Post: "
                                             "List-Unsubscribe=One-Click\r\n") != NULL);
    char h[512];
    tag_of(j.wire.data, "h", h, sizeof h);
    CHECK(strstr(h, ":list-unsubscribe:list-unsubscribe-post:from") != NULL);
    d.loaded = NULL;
    CHECK_EQ_INT(job_build(&j, &t, "mta.test", 1795341600000LL, 0, &err), -HERR_CONFIG);
    CHECK(strstr(err.reason, "DKIM key j-ed.pem is not loaded") != NULL);
    job_set_random(NULL);
    job_clear(&j);
    dkim_key_free(k);
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    rsa2048 = EVP_RSA_gen(2048);
    rsa512 = EVP_RSA_gen(512);
    ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
    if (!rsa2048 || !rsa512 || !ed) {
        fprintf(stderr, "key generation failed\n");
        return 1;
    }
    test_canon();
    test_keys();
    test_config_keys();
    test_config_alg_from_key();
    test_sign();
    test_job_build();
    EVP_PKEY_free(rsa2048);
    EVP_PKEY_free(rsa512);
    EVP_PKEY_free(ed);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "could not remove %s\n", dir);
    return check_report("test_dkim");
}
