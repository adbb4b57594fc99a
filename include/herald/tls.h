/* tls: OpenSSL driven through memory BIOs. Nothing here touches a socket:
 * the owner feeds ciphertext it received, takes ciphertext to send, and
 * reads/writes plaintext, so TLS bytes travel through the ring like any
 * other. One client SSL_CTX per process (shared read-only by the workers);
 * one session cache per worker (no locks). */
#ifndef HERALD_TLS_H
#define HERALD_TLS_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald/core.h"

struct tls_ctx_opts {
    const char *ca_file;   /* NULL: OpenSSL's default verify paths */
    const char *cert_file; /* client certificate (Redis mutual TLS); NULL: none */
    const char *key_file;
};

/* A client context: TLS 1.2 minimum. Returns 0 or -HERR_TLS with err set. */
int tls_ctx_new(const struct tls_ctx_opts *o, SSL_CTX **out, char *err, size_t errlen);
/* A server context presenting cert_file (PEM, leaf first, chain after) with
 * key_file: TLS 1.2 and 1.3, no client certificates asked for, resumption by
 * tickets only (no shared session cache, so threads never contend on it).
 * Shareable by threads. Returns 0 or -HERR_TLS with err naming the file. */
int tls_server_ctx_new(const char *cert_file, const char *key_file, SSL_CTX **out, char *err,
                       size_t errlen);

enum tls_verify {
    TLS_VERIFY_NONE = 0, /* encrypt whatever the certificate (opportunistic) */
    TLS_VERIFY_PEER,     /* chain to a trusted CA and the host name must match */
};

struct tls_conn {
    SSL *ssl;
    BIO *rbio, *wbio; /* owned by ssl */
    bool done;        /* handshake finished */
    bool verify;
    char error[256];
};

/* Prepare a client connection to `host` (SNI when it is a name; the name
 * checked under TLS_VERIFY_PEER). `resume` (may be NULL) is offered for
 * resumption; the connection takes its own reference. */
int tls_conn_init(struct tls_conn *t, SSL_CTX *ctx, const char *host, enum tls_verify verify,
                  SSL_SESSION *resume);
/* Prepare the server side of an accepted connection (the handshake waits
 * for the client's first flight). */
int tls_conn_init_server(struct tls_conn *t, SSL_CTX *ctx);
void tls_conn_free(struct tls_conn *t);

/* Ciphertext from the peer. */
int tls_conn_feed(struct tls_conn *t, const void *data, size_t len);
/* Advance the handshake: 0 done, -EAGAIN needs more input (send pending
 * output first), -HERR_TLS failed (reason in tls_conn_error). */
int tls_conn_handshake(struct tls_conn *t);
/* Plaintext out: > 0 bytes read, 0 nothing available yet, -HERR_CLOSED on
 * the peer's close_notify, -HERR_TLS on a TLS error. */
int tls_conn_read(struct tls_conn *t, void *buf, size_t cap);
/* Encrypt all of plain; the records join the pending output. */
int tls_conn_write(struct tls_conn *t, const void *plain, size_t len);
/* Move all pending ciphertext (handshake records too) onto out. */
int tls_conn_take_output(struct tls_conn *t, struct hbuf *out);
bool tls_conn_has_output(const struct tls_conn *t);
/* Queue a close_notify. */
void tls_conn_shutdown(struct tls_conn *t);

/* The pump: one call into OpenSSL, then everything it produced moved onto
 * `wire` for the caller to send. Reads produce output too (alerts, key
 * updates), so every entry point drains; callers never pair the two by
 * hand. Return codes are those of the underlying tls_conn_* call, or
 * -ENOMEM when the output could not be taken. */
int tls_pump_handshake(struct tls_conn *t, struct hbuf *wire);
int tls_pump_read(struct tls_conn *t, void *buf, size_t cap, struct hbuf *wire);
int tls_pump_write(struct tls_conn *t, const void *plain, size_t len, struct hbuf *wire);

const char *tls_conn_error(const struct tls_conn *t);
/* "TLSv1.3/TLS_AES_256_GCM_SHA384" once the handshake is done. */
void tls_conn_describe(const struct tls_conn *t, char *buf, size_t n);
bool tls_conn_reused(const struct tls_conn *t);
/* Did the chain verify (to the CA) and the name match? Asked even when the
 * policy did not require it, for notes and `smtp-test`. why: the reason. */
bool tls_conn_verified(const struct tls_conn *t, const char **why);
/* One line on the peer certificate: subject, issuer, expiry, DNS names. */
void tls_conn_peer_summary(const struct tls_conn *t, char *buf, size_t n);
/* The session to keep for resumption (a new reference, or NULL when the
 * server gave nothing resumable yet: TLS 1.3 tickets arrive after the
 * handshake, with the first records read). */
SSL_SESSION *tls_conn_session(const struct tls_conn *t);

/* Per-worker cache of client sessions keyed by destination. */
struct tls_cache_entry;
struct tls_session_cache {
    struct tls_cache_entry *entries;
    size_t n, cap;
    uint64_t tick;
};
void tls_session_cache_init(struct tls_session_cache *c, size_t cap);
/* A session to offer for key (still owned by the cache), or NULL. */
SSL_SESSION *tls_session_cache_get(struct tls_session_cache *c, const char *key);
/* Keep sess for key (takes the reference); the least recently used entry
 * goes when the cache is full. */
void tls_session_cache_put(struct tls_session_cache *c, const char *key, SSL_SESSION *sess);
void tls_session_cache_free(struct tls_session_cache *c);

#endif
