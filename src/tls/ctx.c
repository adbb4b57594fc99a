/* The SSL_CTXs: created once per process; SSL_CTX is safe to share between
 * threads for creating connections. The client one serves the engine, the
 * server one herald-sink's STARTTLS. */
#include <openssl/err.h>
#include <stdio.h>

#include "herald/tls.h"

static int fail(SSL_CTX *ctx, char *err, size_t errlen, const char *what, const char *file)
{
    unsigned long e = ERR_get_error();
    char detail[160] = "";
    if (e) ERR_error_string_n(e, detail, sizeof detail);
    snprintf(err, errlen, "%s%s%s: %s", what, file ? " " : "", file ? file : "",
             detail[0] ? detail : "failed");
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return -HERR_TLS;
}

int tls_ctx_new(const struct tls_ctx_opts *o, SSL_CTX **out, char *err, size_t errlen)
{
    *out = NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) return fail(NULL, err, errlen, "creating the TLS context", NULL);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* Idle pooled connections should not each hold 2 x 16 KB of buffers. */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Sessions are kept by herald's own per-worker cache, keyed by
     * destination; OpenSSL's internal store would be shared and locked. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    if (o && o->ca_file) {
        if (SSL_CTX_load_verify_locations(ctx, o->ca_file, NULL) != 1)
            return fail(ctx, err, errlen, "loading CA file", o->ca_file);
    } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
        return fail(ctx, err, errlen, "loading the system CA store", NULL);
    }
    if (o && o->cert_file) {
        if (SSL_CTX_use_certificate_chain_file(ctx, o->cert_file) != 1)
            return fail(ctx, err, errlen, "loading client certificate", o->cert_file);
        const char *key = o->key_file ? o->key_file : o->cert_file;
        if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1)
            return fail(ctx, err, errlen, "loading client key", key);
        if (SSL_CTX_check_private_key(ctx) != 1)
            return fail(ctx, err, errlen, "client key does not match certificate", key);
    }
    *out = ctx;
    return 0;
}

int tls_server_ctx_new(const char *cert_file, const char *key_file, SSL_CTX **out, char *err,
                       size_t errlen)
{
    *out = NULL;
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) return fail(NULL, err, errlen, "creating the TLS context", NULL);
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Tickets carry the session to the client, so nothing is stored here:
     * OpenSSL's server cache is one locked table for every thread. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1);
    /* A client renegotiating over and over makes the server do handshakes
     * for free; nothing SMTP needs. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_file) != 1)
        return fail(ctx, err, errlen, "loading certificate", cert_file);
    if (SSL_CTX_use_PrivateKey_file(ctx, key_file, SSL_FILETYPE_PEM) != 1)
        return fail(ctx, err, errlen, "loading key", key_file);
    if (SSL_CTX_check_private_key(ctx) != 1)
        return fail(ctx, err, errlen, "key does not match certificate", key_file);
    *out = ctx;
    return 0;
}
