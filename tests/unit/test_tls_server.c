/* The server side of the memory-BIO TLS layer (what herald-sink's STARTTLS
 * runs on), against herald's own client side, with no socket: each side's
 * output is the other's input. A key and a self-signed certificate are made
 * in the test and written to a temp dir. Checks the context's refusals (a
 * missing file, a key that is not the certificate's), handshakes at TLS 1.3
 * and 1.2, plaintext both ways, and garbage instead of a ClientHello. */
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdlib.h>
#include <unistd.h>

#include "check.h"
#include "herald/tls.h"

static char dir[] = "/tmp/herald-tls-server-XXXXXX";
static char cert_path[128], key_path[128], other_key_path[128];

static int write_key(const char *path, EVP_PKEY *key)
{
    FILE *f = fopen(path, "w");
    int ok = f && PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    if (f) fclose(f);
    return ok ? 0 : -1;
}

static int make_files(void)
{
    if (!mkdtemp(dir)) return -1;
    snprintf(cert_path, sizeof cert_path, "%s/cert.pem", dir);
    snprintf(key_path, sizeof key_path, "%s/key.pem", dir);
    snprintf(other_key_path, sizeof other_key_path, "%s/other.pem", dir);
    EVP_PKEY *key = EVP_EC_gen("P-256"), *other = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!key || !other || !x) return -1;
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"sink.test", -1, -1,
                               0);
    X509_set_issuer_name(x, name);
    int rc = X509_sign(x, key, EVP_sha256()) > 0 ? 0 : -1;
    FILE *f = fopen(cert_path, "w");
    if (rc == 0 && (!f || !PEM_write_X509(f, x))) rc = -1;
    if (f) fclose(f);
    if (rc == 0) rc = write_key(key_path, key);
    if (rc == 0) rc = write_key(other_key_path, other);
    X509_free(x);
    EVP_PKEY_free(key);
    EVP_PKEY_free(other);
    return rc;
}

static void test_ctx_refusals(void)
{
    char err[512];
    SSL_CTX *ctx = (SSL_CTX *)1;
    CHECK_EQ_INT(tls_server_ctx_new("/nonexistent/cert.pem", key_path, &ctx, err, sizeof err),
                 -HERR_TLS);
    CHECK(ctx == NULL);
    CHECK(strstr(err, "loading certificate /nonexistent/cert.pem") != NULL);
    CHECK_EQ_INT(tls_server_ctx_new(cert_path, other_key_path, &ctx, err, sizeof err), -HERR_TLS);
    CHECK(strstr(err, other_key_path) != NULL && strstr(err, "mismatch") != NULL);
    CHECK_EQ_INT(tls_server_ctx_new(key_path, key_path, &ctx, err, sizeof err), -HERR_TLS);
}

/* Move each side's pending records to the other until neither has any.
 * Returns the server's last handshake result. */
static int shuttle(struct tls_conn *cli, struct tls_conn *srv)
{
    struct hbuf wire;
    hbuf_init(&wire);
    int srv_rc = -EAGAIN;
    for (int round = 0; round < 10; round++) {
        hbuf_reset(&wire);
        (void)tls_pump_handshake(cli, &wire);
        if (wire.len) CHECK_EQ_INT(tls_conn_feed(srv, wire.data, wire.len), 0);
        hbuf_reset(&wire);
        srv_rc = tls_pump_handshake(srv, &wire);
        if (wire.len) CHECK_EQ_INT(tls_conn_feed(cli, wire.data, wire.len), 0);
        if (cli->done && srv->done) break;
    }
    hbuf_free(&wire);
    return srv_rc;
}

/* One plaintext message from `from` to `to` through a records buffer. */
static void send_plain(struct tls_conn *from, struct tls_conn *to, const char *msg)
{
    struct hbuf wire;
    hbuf_init(&wire);
    CHECK_EQ_INT(tls_pump_write(from, msg, strlen(msg), &wire), 0);
    CHECK(wire.len > strlen(msg)); /* records, not the text */
    CHECK(memmem(wire.data, wire.len, msg, strlen(msg)) == NULL);
    CHECK_EQ_INT(tls_conn_feed(to, wire.data, wire.len), 0);
    char buf[256];
    hbuf_reset(&wire);
    int n = tls_pump_read(to, buf, sizeof buf - 1, &wire);
    CHECK_EQ_INT(n, (int)strlen(msg));
    buf[n > 0 ? n : 0] = '\0';
    CHECK_EQ_STR(buf, msg);
    hbuf_free(&wire);
}

static void test_handshake(int max_version, const char *want_prefix)
{
    char err[512];
    SSL_CTX *sctx, *cctx;
    CHECK_EQ_INT(tls_server_ctx_new(cert_path, key_path, &sctx, err, sizeof err), 0);
    struct tls_ctx_opts o = {.ca_file = cert_path};
    CHECK_EQ_INT(tls_ctx_new(&o, &cctx, err, sizeof err), 0);
    if (!sctx || !cctx) return;
    if (max_version) SSL_CTX_set_max_proto_version(cctx, max_version);
    struct tls_conn cli, srv;
    CHECK_EQ_INT(tls_conn_init(&cli, cctx, "sink.test", TLS_VERIFY_PEER, NULL), 0);
    CHECK_EQ_INT(tls_conn_init_server(&srv, sctx), 0);
    CHECK_EQ_INT(shuttle(&cli, &srv), 0);
    CHECK(cli.done && srv.done);
    const char *why = NULL;
    CHECK(tls_conn_verified(&cli, &why));
    char desc[128];
    tls_conn_describe(&srv, desc, sizeof desc);
    CHECK(strncmp(desc, want_prefix, strlen(want_prefix)) == 0);
    send_plain(&cli, &srv, "EHLO client.test\r\n");
    send_plain(&srv, &cli, "250-sink.test\r\n250 ENHANCEDSTATUSCODES\r\n");
    send_plain(&cli, &srv, "QUIT\r\n");
    tls_conn_free(&cli);
    tls_conn_free(&srv);
    SSL_CTX_free(sctx);
    SSL_CTX_free(cctx);
}

/* Plaintext where the ClientHello should be: a TLS error with a reason, at
 * once and for good, not a wait for more (OpenSSL sends no alert to a peer
 * that does not speak TLS at all, so the wire may stay empty). */
static void test_garbage(void)
{
    char err[512];
    SSL_CTX *sctx;
    CHECK_EQ_INT(tls_server_ctx_new(cert_path, key_path, &sctx, err, sizeof err), 0);
    if (!sctx) return;
    struct tls_conn srv;
    CHECK_EQ_INT(tls_conn_init_server(&srv, sctx), 0);
    static const char junk[] = "MAIL FROM:<x@y.test>\r\nRCPT TO:<z@y.test>\r\n";
    CHECK_EQ_INT(tls_conn_feed(&srv, junk, sizeof junk - 1), 0);
    struct hbuf wire;
    hbuf_init(&wire);
    CHECK_EQ_INT(tls_pump_handshake(&srv, &wire), -HERR_TLS);
    CHECK(!srv.done);
    CHECK(strncmp(tls_conn_error(&srv), "handshake: ", 11) == 0);
    CHECK(wire.len == 0 || wire.data[0] == 0x15); /* nothing, or an alert record */
    CHECK_EQ_INT(tls_conn_feed(&srv, junk, sizeof junk - 1), 0);
    CHECK_EQ_INT(tls_pump_handshake(&srv, &wire), -HERR_TLS);
    hbuf_free(&wire);
    tls_conn_free(&srv);
    SSL_CTX_free(sctx);
}

int main(void)
{
    if (make_files() < 0) {
        fprintf(stderr, "test_tls_server: cannot make the key and certificate\n");
        return 1;
    }
    test_ctx_refusals();
    test_handshake(0, "TLSv1.3/");
    test_handshake(TLS1_2_VERSION, "TLSv1.2/");
    test_garbage();
    unlink(cert_path);
    unlink(key_path);
    unlink(other_key_path);
    rmdir(dir);
    return check_report("test_tls_server");
}
