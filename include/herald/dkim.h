/* dkim: DKIM signatures (RFC 6376) with rsa-sha256 and ed25519-sha256
 * (RFC 8463), relaxed/relaxed canonicalisation. Keys are loaded once (at
 * config load) and shared read-only by every worker; signing keeps its
 * OpenSSL contexts per thread, so dkim_sign may run on any number of
 * threads at once. */
#ifndef HERALD_DKIM_H
#define HERALD_DKIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "herald/core.h"

enum dkim_alg { DKIM_ALG_RSA_SHA256 = 0, DKIM_ALG_ED25519_SHA256, DKIM_ALG_COUNT };

/* A loaded private key and the algorithm it signs with. Immutable. */
struct dkim_key;

/* "rsa-sha256" / "ed25519-sha256" -> alg; -HERR_MALFORMED otherwise. */
int dkim_alg_parse(const char *name, enum dkim_alg *out);
const char *dkim_alg_name(enum dkim_alg alg);

/* Load a PEM private key (PKCS#8 "PRIVATE KEY" or PKCS#1 "RSA PRIVATE KEY")
 * for alg. Refused, with a one-line reason in why: a file group or others
 * may read or write (mode & 077), not a regular file, unreadable, not PEM,
 * encrypted, the wrong key type for alg, RSA under 1024 bits. Returns 0 and
 * *out (free with dkim_key_free), or -errno / -HERR_CONFIG. */
int dkim_key_load(const char *path, enum dkim_alg alg, struct dkim_key **out, char *why,
                  size_t whylen);
/* The same checks, with the algorithm taken from the key: rsa-sha256 for
 * an RSA key, ed25519-sha256 for an Ed25519 key (any other type is
 * refused). For a config key without `algorithm:`. */
int dkim_key_load_any(const char *path, struct dkim_key **out, char *why, size_t whylen);
void dkim_key_free(struct dkim_key *key);
enum dkim_alg dkim_key_alg(const struct dkim_key *key);
/* Modulus size for RSA, 256 for Ed25519. */
int dkim_key_bits(const struct dkim_key *key);
/* The DNS TXT record value to publish: "v=DKIM1; k=rsa; p=<base64>". */
int dkim_key_txt(const struct dkim_key *key, struct hbuf *out);

/* One signature to add. */
struct dkim_sig {
    const struct dkim_key *key;
    const char *domain;   /* d= */
    const char *selector; /* s= */
    int64_t expire_s;     /* > 0: x= t + expire_s */
};

/* Sign msg: a complete message (header, empty line, body) with CRLF line
 * ends as the receiver will see it, before dot-stuffing. Bare CR and LF in
 * the body count as line breaks, as the dot-stuffer turns them into CRLF.
 * Appends one folded "DKIM-Signature: ...\r\n" field per sig to out, in
 * order; they go in front of the message. now_s feeds t=. Returns 0,
 * -HERR_MALFORMED (no header/body separator, bad sig), -ENOMEM or -HERR_TLS
 * (OpenSSL refused; its error queue is cleared). */
int dkim_sign(const struct dkim_sig *sigs, size_t n_sigs, const char *msg, size_t len,
              int64_t now_s, struct hbuf *out);

/* --- canonicalisation, exported for tests --- */

/* Relaxed header canonicalisation (RFC 6376 3.4.2) of one field as it
 * appears in the message, "Name: value" with any folding, with or without
 * its final CRLF; appends "name:value\r\n". */
int dkim_canon_header(struct hbuf *out, const char *field, size_t len);

/* Relaxed body canonicalisation (RFC 6376 3.4.4) of a whole body. */
int dkim_canon_body(struct hbuf *out, const char *body, size_t len);

/* The header fields signed when present, lower case; "from" is listed once
 * more in h= so a From added in transit breaks the signature. */
extern const char *const dkim_signed_headers[];
extern const size_t dkim_n_signed_headers;

#endif
