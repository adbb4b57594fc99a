/* A client TLS connection over two memory BIOs. OpenSSL never sees a file
 * descriptor: records come in through tls_conn_feed and leave through
 * tls_conn_take_output, so the ring moves ciphertext exactly as it moves
 * plaintext, and a slow peer can never block a worker inside SSL_*. */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>

#include "herald/tls.h"

static void set_error(struct tls_conn *t, const char *what)
{
    char detail[200] = "";
    long vr = t->ssl ? SSL_get_verify_result(t->ssl) : X509_V_OK;
    unsigned long e = ERR_peek_last_error();
    if (vr != X509_V_OK && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED) {
        snprintf(detail, sizeof detail, "certificate verify failed: %s",
                 X509_verify_cert_error_string(vr));
    } else if (e) {
        const char *reason = ERR_reason_error_string(e);
        snprintf(detail, sizeof detail, "%s", reason ? reason : "error");
        if (!reason) ERR_error_string_n(e, detail, sizeof detail);
    } else {
        snprintf(detail, sizeof detail, "connection closed or unexpected data");
    }
    snprintf(t->error, sizeof t->error, "%s: %s", what, detail);
    ERR_clear_error();
}

static bool is_ip_literal(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

/* The SSL object and its two memory BIOs, for either side. */
static int conn_new(struct tls_conn *t, SSL_CTX *ctx)
{
    memset(t, 0, sizeof *t);
    ERR_clear_error();
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
        SSL_free(t->ssl);
        memset(t, 0, sizeof *t);
        snprintf(t->error, sizeof t->error, "out of memory setting up TLS");
        ERR_clear_error();
        return -ENOMEM;
    }
    /* An empty input BIO means "wait for more", not end of stream. */
    BIO_set_mem_eof_return(t->rbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio);
    return 0;
}

int tls_conn_init_server(struct tls_conn *t, SSL_CTX *ctx)
{
    int rc = conn_new(t, ctx);
    if (rc < 0) return rc;
    SSL_set_accept_state(t->ssl);
    return 0;
}

int tls_conn_init(struct tls_conn *t, SSL_CTX *ctx, const char *host, enum tls_verify verify,
                  SSL_SESSION *resume)
{
    int rc = conn_new(t, ctx);
    if (rc < 0) return rc;
    SSL_set_connect_state(t->ssl);
    t->verify = verify == TLS_VERIFY_PEER;
    if (host && host[0]) {
        /* The name is checked during verification either way, so the
         * result can be reported even when the policy does not enforce it. */
        if (is_ip_literal(host)) {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), host);
        } else {
            SSL_set_tlsext_host_name(t->ssl, host);
            SSL_set1_host(t->ssl, host);
        }
    }
    SSL_set_verify(t->ssl, t->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (resume) SSL_set_session(t->ssl, resume);
    return 0;
}

void tls_conn_free(struct tls_conn *t)
{
    if (t->ssl) SSL_free(t->ssl); /* frees both BIOs */
    memset(t, 0, sizeof *t);
}

int tls_conn_feed(struct tls_conn *t, const void *data, size_t len)
{
    while (len > 0) {
        int chunk = len > INT_MAX ? INT_MAX : (int)len;
        int n = BIO_write(t->rbio, data, chunk);
        if (n <= 0) return -ENOMEM;
        data = (const char *)data + n;
        len -= (size_t)n;
    }
    return 0;
}

int tls_conn_handshake(struct tls_conn *t)
{
    if (t->done) return 0;
    ERR_clear_error();
    int rc = SSL_do_handshake(t->ssl);
    if (rc == 1) {
        t->done = true;
        return 0;
    }
    int e = SSL_get_error(t->ssl, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return -EAGAIN;
    set_error(t, "handshake");
    return -HERR_TLS;
}

int tls_conn_read(struct tls_conn *t, void *buf, size_t cap)
{
    ERR_clear_error();
    int n = SSL_read(t->ssl, buf, cap > INT_MAX ? INT_MAX : (int)cap);
    if (n > 0) return n;
    int e = SSL_get_error(t->ssl, n);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return 0;
    if (e == SSL_ERROR_ZERO_RETURN) return -HERR_CLOSED;
    set_error(t, "read");
    return -HERR_TLS;
}

int tls_conn_write(struct tls_conn *t, const void *plain, size_t len)
{
    while (len > 0) {
        ERR_clear_error();
        int chunk = len > 1 << 20 ? 1 << 20 : (int)len;
        int n = SSL_write(t->ssl, plain, chunk);
        if (n <= 0) {
            set_error(t, "write");
            return -HERR_TLS;
        }
        plain = (const char *)plain + n;
        len -= (size_t)n;
    }
    return 0;
}

int tls_conn_take_output(struct tls_conn *t, struct hbuf *out)
{
    size_t pending;
    while ((pending = BIO_ctrl_pending(t->wbio)) > 0) {
        int rc = hbuf_reserve(out, pending);
        if (rc) return rc;
        int n = BIO_read(t->wbio, out->data + out->len, (int)pending);
        if (n <= 0) break;
        out->len += (size_t)n;
        out->data[out->len] = '\0';
    }
    return 0;
}

bool tls_conn_has_output(const struct tls_conn *t)
{
    return t->wbio && BIO_ctrl_pending(t->wbio) > 0;
}

void tls_conn_shutdown(struct tls_conn *t)
{
    if (t->ssl && t->done) {
        ERR_clear_error();
        SSL_shutdown(t->ssl);
        ERR_clear_error();
    }
}

const char *tls_conn_error(const struct tls_conn *t)
{
    return t->error[0] ? t->error : "TLS failure";
}

void tls_conn_describe(const struct tls_conn *t, char *buf, size_t n)
{
    if (!t->ssl || !t->done) {
        snprintf(buf, n, "none");
        return;
    }
    snprintf(buf, n, "%s/%s", SSL_get_version(t->ssl), SSL_get_cipher_name(t->ssl));
}

bool tls_conn_reused(const struct tls_conn *t)
{
    return t->ssl && t->done && SSL_session_reused(t->ssl);
}

bool tls_conn_verified(const struct tls_conn *t, const char **why)
{
    if (!t->ssl || !t->done || !SSL_get0_peer_certificate(t->ssl)) {
        if (why) *why = "no peer certificate";
        return false;
    }
    long vr = SSL_get_verify_result(t->ssl);
    if (why) *why = vr == X509_V_OK ? "ok" : X509_verify_cert_error_string(vr);
    return vr == X509_V_OK;
}

static void name_cn(X509_NAME *name, char *buf, int n)
{
    buf[0] = '\0';
    if (name && X509_NAME_get_text_by_NID(name, NID_commonName, buf, n) < 0) buf[0] = '\0';
}

void tls_conn_peer_summary(const struct tls_conn *t, char *buf, size_t n)
{
    X509 *cert = t->ssl ? SSL_get0_peer_certificate(t->ssl) : NULL;
    if (!cert) {
        snprintf(buf, n, "no certificate");
        return;
    }
    char subject[128], issuer[128], expiry[64] = "?", names[256] = "";
    name_cn(X509_get_subject_name(cert), subject, sizeof subject);
    name_cn(X509_get_issuer_name(cert), issuer, sizeof issuer);
    BIO *mem = BIO_new(BIO_s_mem());
    if (mem && ASN1_TIME_print(mem, X509_get0_notAfter(cert))) {
        int len = BIO_read(mem, expiry, sizeof expiry - 1);
        expiry[len > 0 ? len : 0] = '\0';
    }
    BIO_free(mem);
    GENERAL_NAMES *sans = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    size_t used = 0;
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_DNS) continue;
        const char *dns = (const char *)ASN1_STRING_get0_data(g->d.dNSName);
        int w = snprintf(names + used, sizeof names - used, "%s%s", used ? "," : "", dns);
        if (w < 0 || (size_t)w >= sizeof names - used) break;
        used += (size_t)w;
    }
    GENERAL_NAMES_free(sans);
    snprintf(buf, n, "subject=\"%s\" issuer=\"%s\" not_after=\"%s\" names=\"%s\"", subject, issuer,
             expiry, names);
}

SSL_SESSION *tls_conn_session(const struct tls_conn *t)
{
    if (!t->ssl || !t->done) return NULL;
    SSL_SESSION *s = SSL_get1_session(t->ssl);
    /* A TLS 1.3 session is only worth keeping once a ticket came with it;
     * before that, offering it would just cost a full handshake. */
    bool usable = s && SSL_SESSION_is_resumable(s) &&
                  (SSL_SESSION_get_protocol_version(s) != TLS1_3_VERSION ||
                   SSL_SESSION_has_ticket(s));
    if (!usable) {
        SSL_SESSION_free(s);
        return NULL;
    }
    /* A copy: OpenSSL marks the connection's own session object
     * not-resumable when the connection ends without close_notify (as SMTP
     * connections usually do after QUIT), which would spoil the cache. */
    SSL_SESSION *copy = SSL_SESSION_dup(s);
    SSL_SESSION_free(s);
    return copy;
}
